/* The module tree: state_dict names from the tree (no tensor renamed), parameter counts,
 * PyTorch 1.13's repr of every built-in module type and of a model, train/eval switching
 * a Transformer's dropout, freeing a whole tree, and a user-defined module. The expected
 * strings and counts were printed by PyTorch 1.13 for the same constructors. */
#include "harness.h"

#include <stdlib.h>
#include <string.h>

static void assert_repr(tg_module *m, const char *want) {
    char *got = tg_module_repr(m);
    assert_string_equal(got, want);
    free(got);
    tg_module_free(m);
}

static void test_repr_of_each_builtin_matches_torch(void **state) {
    (void)state;
    assert_repr(&tg_linear_new(4, 3, true)->module,
                "Linear(in_features=4, out_features=3, bias=True)");
    assert_repr(&tg_linear_new(4, 3, false)->module,
                "Linear(in_features=4, out_features=3, bias=False)");
    assert_repr(&tg_embedding_new(10, 4, TG_NO_PADDING)->module, "Embedding(10, 4)");
    assert_repr(&tg_embedding_new(10, 4, 0)->module, "Embedding(10, 4, padding_idx=0)");
    assert_repr(&tg_layernorm_new(TG_SHAPE(8), (tg_real)1e-5, true)->module,
                "LayerNorm((8,), eps=1e-05, elementwise_affine=True)");
    assert_repr(&tg_layernorm_new(TG_SHAPE(2, 8), (tg_real)1e-6, false)->module,
                "LayerNorm((2, 8), eps=1e-06, elementwise_affine=False)");
    assert_repr(&tg_dropout_new((tg_real)0.1)->module, "Dropout(p=0.1, inplace=False)");
    assert_repr(&tg_dropout_new(0)->module, "Dropout(p=0.0, inplace=False)");

    tg_rnn_options o = tg_rnn_defaults(3, 4);
    assert_repr(&tg_gru_new(o)->base.module, "GRU(3, 4)");
    o.batch_first = true;
    assert_repr(&tg_lstm_new(o)->base.module, "LSTM(3, 4, batch_first=True)");
    o.nonlinearity = TG_RNN_RELU, o.num_layers = 2, o.bias = false, o.dropout = (tg_real)0.5;
    o.bidirectional = true;
    assert_repr(&tg_rnn_new(o)->base.module, "RNN(3, 4, num_layers=2, bias=False, "
                                             "batch_first=True, dropout=0.5, bidirectional=True)");
    tg_cell_options c = tg_cell_defaults(3, 4);
    assert_repr(&tg_gru_cell_new(c)->base.module, "GRUCell(3, 4)");
    assert_repr(&tg_lstm_cell_new(c)->base.module, "LSTMCell(3, 4)");
    c.nonlinearity = TG_RNN_RELU, c.bias = false;
    assert_repr(&tg_rnn_cell_new(c)->base.module, "RNNCell(3, 4, bias=False, nonlinearity=relu)");

    assert_repr(&tg_mha_new(8, 2, (tg_real)0.1, true, true)->module,
                "MultiheadAttention(\n"
                "  (out_proj): NonDynamicallyQuantizableLinear(in_features=8, out_features=8, "
                "bias=True)\n"
                ")");
    tg_transformer_options t = tg_transformer_defaults(8, 2);
    t.dim_feedforward = 16;
    assert_repr(&tg_encoder_layer_new(&t)->module,
                "TransformerEncoderLayer(\n"
                "  (self_attn): MultiheadAttention(\n"
                "    (out_proj): NonDynamicallyQuantizableLinear(in_features=8, out_features=8, "
                "bias=True)\n"
                "  )\n"
                "  (linear1): Linear(in_features=8, out_features=16, bias=True)\n"
                "  (dropout): Dropout(p=0.1, inplace=False)\n"
                "  (linear2): Linear(in_features=16, out_features=8, bias=True)\n"
                "  (norm1): LayerNorm((8,), eps=1e-05, elementwise_affine=True)\n"
                "  (norm2): LayerNorm((8,), eps=1e-05, elementwise_affine=True)\n"
                "  (dropout1): Dropout(p=0.1, inplace=False)\n"
                "  (dropout2): Dropout(p=0.1, inplace=False)\n"
                ")");
}

static void test_model_repr_count_and_names(void **state) {
    (void)state;
    tg_gru_classifier *m = tg_gru_classifier_new(5000, 128, 256, 10);
    assert_int_equal(tg_module_numel(&m->module), 939018); /* sum(p.numel()) in PyTorch */
    /* a parameter is named by its module; listing the tree renames none */
    tg_params *p = tg_module_params(&m->module);
    assert_ptr_equal(tg_module_params(&m->module), p); /* the same list on every call */
    assert_string_equal(p->names[1], "gru.weight_ih_l0");
    assert_ptr_equal(p->tensors[1], m->gru->base.weights[0].w_ih);
    for (size_t i = 0; i < p->count; i++) {
        const char *dot = strrchr(p->names[i], '.');
        assert_string_equal(p->tensors[i]->name, dot + 1); /* "weight_ih_l0", not "gru...." */
    }
    assert_int_equal(tg_params_numel(p), 939018);
    assert_repr(&m->module, "GRUClassifier(\n"
                            "  (embedding): Embedding(5000, 128)\n"
                            "  (gru): GRU(128, 256, batch_first=True)\n"
                            "  (fc): Linear(in_features=256, out_features=10, bias=True)\n"
                            ")");

    /* a model with nested modules: the keys of GRUAttention(7, 9, 4, 5, 3).state_dict() */
    static const char *const keys[] = {"src_embedding.weight",
                                       "encoder.weight_ih_l0",
                                       "encoder.weight_hh_l0",
                                       "encoder.bias_ih_l0",
                                       "encoder.bias_hh_l0",
                                       "tgt_embedding.weight",
                                       "attention.W_a.weight",
                                       "attention.W_a.bias",
                                       "attention.U_a.weight",
                                       "attention.v.weight",
                                       "decoder.weight_ih",
                                       "decoder.weight_hh",
                                       "decoder.bias_ih",
                                       "decoder.bias_hh",
                                       "fc.weight",
                                       "fc.bias"};
    tg_gru_attention *a = tg_gru_attention_new(7, 9, 4, 5, 3);
    p = tg_module_params(&a->module);
    assert_int_equal(p->count, sizeof keys / sizeof *keys);
    for (size_t i = 0; i < p->count; i++) assert_string_equal(p->names[i], keys[i]);
    assert_int_equal(tg_module_numel(&a->module), 604);
    tg_module_free(&a->module);

    tg_transformer_options t = tg_transformer_defaults(8, 2);
    t.dim_feedforward = 16;
    tg_transformer *tr = tg_transformer_new(&t, 1, 1);
    assert_int_equal(tg_module_numel(&tr->module), 1536);
    assert_non_null(tg_params_find(tg_module_params(&tr->module),
                                   "decoder.layers.0.multihead_attn.out_proj.bias"));
    tg_module_free(&tr->module);
}

/* eval: the same output twice, equal to the model built with dropout 0 (the same draws:
 * dropout draws nothing at construction); train: dropout changes it. */
static void test_train_eval_switches_transformer_dropout(void **state) {
    (void)state;
    tg_transformer_options o = tg_transformer_defaults(8, 2);
    o.dim_feedforward = 16, o.dropout = (tg_real)0.5;
    tg_manual_seed(3);
    tg_transformer_model *m = tg_transformer_model_new_ex(7, &o, 2, 2);
    o.dropout = 0;
    tg_manual_seed(3);
    tg_transformer_model *ref = tg_transformer_model_new_ex(7, &o, 2, 2);
    tg_index *src = tg_index_from_array(TG_SHAPE(3, 2), (int32_t[]){1, 4, 0, 3, 3, 2});
    tg_index *tgt = tg_index_from_array(TG_SHAPE(2, 2), (int32_t[]){0, 5, 2, 1});
    tg_tape *tape = tg_tape_new();
    const int64_t n = 2 * 2 * 7;

    tg_module_eval(&m->module);
    assert_false(m->encoder->layers[1]->self_attn->module.training); /* reached every node */
    const tg_tensor *e1 = tg_transformer_model_forward(m, tape, src, tgt);
    const tg_tensor *e2 = tg_transformer_model_forward(m, tape, src, tgt);
    const tg_tensor *r = tg_transformer_model_forward(ref, tape, src, tgt);
    tg_test_assert_close("eval twice", e1->data, e2->data, n, 0, 0);
    tg_test_assert_close("eval = dropout 0", e1->data, r->data, n, 0, 0);

    tg_module_train(&m->module, true);
    const tg_tensor *tr = tg_transformer_model_forward(m, tape, src, tgt);
    bool differs = false;
    for (int64_t i = 0; i < n; i++) differs |= tr->data[i] != e1->data[i];
    assert_true(differs);

    tg_tape_free(tape);
    tg_index_free(src), tg_index_free(tgt);
    tg_module_free(&m->module), tg_module_free(&ref->module);
}

/* A user's module: a Linear child, a GRU child and a parameter of its own. */
typedef struct seq2seq {
    tg_module module;
    tg_gru *encoder;
    tg_linear_layer *head;
    tg_tensor *scale;
} seq2seq;

static void seq2seq_repr(const tg_module *m, char *buf, size_t size) {
    snprintf(buf, size, "scale=%lld", (long long)((const seq2seq *)m)->scale->numel);
}
static const tg_module_type seq2seq_type = {"Seq2Seq", NULL, seq2seq_repr};

static void test_user_module(void **state) {
    (void)state;
    seq2seq *m = tg_xcalloc(1, sizeof *m);
    tg_module_init(&m->module, &seq2seq_type);
    m->encoder = tg_gru_new(tg_rnn_defaults(3, 4));
    m->head = tg_linear_new(4, 2, false);
    m->scale = tg_tensor_named(tg_tensor_requires_grad(tg_tensor_ones(TG_SHAPE(2)), true), "s");
    tg_module_add_param(&m->module, "scale", m->scale);
    tg_module_add_param(&m->module, "absent", NULL); /* bias=False: skipped, as state_dict does */
    tg_module_add_child(&m->module, "encoder", &m->encoder->base.module);
    tg_module_add_child(&m->module, "head", &m->head->module);

    const tg_params *p = tg_module_params(&m->module);
    static const char *const keys[] = {"scale",
                                       "encoder.weight_ih_l0",
                                       "encoder.weight_hh_l0",
                                       "encoder.bias_ih_l0",
                                       "encoder.bias_hh_l0",
                                       "head.weight"};
    assert_int_equal(p->count, 6);
    for (size_t i = 0; i < p->count; i++) assert_string_equal(p->names[i], keys[i]);
    assert_string_equal(m->scale->name, "s"); /* named by its owner: kept */
    assert_int_equal(tg_module_numel(&m->module), 2 + 36 + 48 + 12 + 12 + 8);
    tg_module_eval(&m->module);
    assert_false(m->encoder->base.module.training);
    assert_false(m->head->module.training);
    assert_repr(&m->module, "Seq2Seq(\n"
                            "  scale=2\n"
                            "  (encoder): GRU(3, 4)\n"
                            "  (head): Linear(in_features=4, out_features=2, bias=False)\n"
                            ")"); /* frees the tree: ASan sees no leak */
}

/* TG_MODULE_ADD stores the child in its field and registers it under the field's name, for a
 * module whose tg_module is its first member and for one whose is its base's. */
static void test_module_add_macro(void **state) {
    (void)state;
    seq2seq *m = tg_xcalloc(1, sizeof *m);
    tg_module_init(&m->module, &seq2seq_type);
    m->scale = tg_tensor_requires_grad(tg_tensor_ones(TG_SHAPE(1)), true);
    tg_module_add_param(&m->module, "scale", m->scale);
    TG_MODULE_ADD(m, encoder, tg_gru_new(tg_rnn_defaults(3, 4)));
    TG_MODULE_ADD(m, head, tg_linear_new(4, 2, false));
    assert_int_equal(m->module.num_children, 2);
    assert_string_equal(m->module.child_names[0], "encoder");
    assert_ptr_equal(m->module.children[0], &m->encoder->base.module);
    assert_string_equal(m->module.child_names[1], "head");
    assert_ptr_equal(m->module.children[1], &m->head->module);
    tg_linear_layer *head = m->head;
    TG_EXPECT_FAIL(TG_MODULE_ADD(m, head, tg_linear_new(4, 2, false)),
                   "tg_module_add_child: module Seq2Seq: 'head' is already a child");
    tg_module_free(&m->head->module); /* the refused one (stored, not registered) */
    m->head = head;
    assert_repr(&m->module, "Seq2Seq(\n"
                            "  scale=1\n"
                            "  (encoder): GRU(3, 4)\n"
                            "  (head): Linear(in_features=4, out_features=2, bias=False)\n"
                            ")");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repr_of_each_builtin_matches_torch),
        cmocka_unit_test(test_model_repr_count_and_names),
        cmocka_unit_test(test_train_eval_switches_transformer_dropout),
        cmocka_unit_test(test_user_module),
        cmocka_unit_test(test_module_add_macro),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
