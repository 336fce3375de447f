/* The seed models (models/<model>.c): default init against PyTorch after the same seed, parity
 * with the tutorials' PyTorch classes (tests/fixturegen/models.py: outputs, every parameter and
 * input gradient, parameter names and order), float64 gradchecks through every parameter
 * on tiny sizes, and error paths. */
#include "harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- comparing with a fixture, keeping the worst error for the summary ---- */

static double worst_abs, worst_ratio;
static char worst_what[160];

static void compare(const tg_fixture *fx, const char *name, const tg_real *got,
                    const int64_t *shape, int ndim) {
    tg_fixture_assert_close(fx, name, got, shape, ndim, TG_PARITY_ATOL, TG_PARITY_RTOL);
    tg_tensor *want = tg_fixture_tensor(fx, name);
    for (int64_t i = 0; i < want->numel; i++) {
        const double w = (double)want->data[i], d = fabs((double)got[i] - w);
        if (!(d > 0)) continue; /* equal, or equal infinities */
        const double ratio = d / (TG_PARITY_ATOL + TG_PARITY_RTOL * fabs(w));
        if (ratio > worst_ratio) {
            worst_ratio = ratio, worst_abs = d;
            snprintf(worst_what, sizeof worst_what, "%s of %s", name, tg_fixture_meta(fx, "case"));
        }
    }
    tg_tensor_free(want);
}

static void compare_tensor(const tg_fixture *fx, const char *name, const tg_tensor *t) {
    compare(fx, name, t->data, t->shape, t->ndim);
}

static void compare_grad(const tg_fixture *fx, const char *name, const tg_tensor *t) {
    assert_non_null(t->grad);
    compare(fx, name, t->grad, t->shape, t->ndim);
}

static void compare_param_grads(const tg_fixture *fx, const tg_params *params) {
    tg_fixture_assert_param_grads(fx, params, TG_PARITY_ATOL, TG_PARITY_RTOL);
    for (size_t i = 0; i < params->count; i++) {
        char name[256];
        snprintf(name, sizeof name, "grad.param.%s", params->names[i]);
        if (params->tensors[i]->grad) compare_grad(fx, name, params->tensors[i]);
    }
}

/* The model was just built after tg_manual_seed(0); the fixture's param.* are PyTorch's
 * default init after torch.manual_seed(0): uniform draws bit for bit, the normal ones
 * (Embedding) to 1e-6. Same keys, same order. Then loads them (a no-op for the values). */
static void assert_default_init(const tg_fixture *fx, tg_params *params) {
    char keys[4096] = "";
    for (size_t i = 0; i < params->count; i++) {
        char name[256];
        snprintf(name, sizeof name, "param.%s", params->names[i]);
        const bool normal = strstr(params->names[i], "embedding.weight") != NULL;
        tg_fixture_assert_tensor(fx, name, params->tensors[i], normal ? 1e-6 : 0, 0);
        strcat(keys, i ? "," : "");
        strcat(keys, params->names[i]);
    }
    assert_string_equal(keys, tg_fixture_meta(fx, "keys"));
}

/* Σ y ⊙ g: back-propagating it gives y the fixture's upstream gradient g. */
static tg_tensor *weighted(tg_tape *t, tg_tensor *y, const tg_tensor *g) {
    assert_true(tg_shape_equal(y, g));
    return tg_sum(t, tg_mul(t, y, (tg_tensor *)g));
}

static tg_tensor *input(const tg_fixture *fx, const char *name) {
    return tg_tensor_requires_grad(tg_fixture_tensor(fx, name), true);
}

/* ---- the GRU sequence classifier, the GRU and LSTM text classifiers ---- */

static void test_gru_seq_classifier_parity(void **state) {
    (void)state;
    tg_fixture *fx = tg_fixture_load("model_gru_seq_classifier");
    tg_manual_seed(0);
    tg_gru_seq_classifier *m = tg_gru_seq_classifier_new(3, 5, 4);
    assert_default_init(fx, tg_module_params(&m->module));
    tg_fixture_load_params(fx, tg_module_params(&m->module));
    tg_tensor *x = input(fx, "in.x"), *gout = tg_fixture_tensor(fx, "gout");
    tg_tape *tape = tg_tape_new();
    tg_tensor *logits = tg_gru_seq_classifier_forward(m, tape, x);
    compare_tensor(fx, "out", logits);
    tg_tape_backward(tape, weighted(tape, logits, gout));
    compare_grad(fx, "grad.x", x);
    compare_param_grads(fx, tg_module_params(&m->module));
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(gout);
    tg_module_free(&m->module);
    tg_fixture_free(fx);
}

/* The text classifiers (GRU or LSTM): token ids (batch, time) -> logits, checked the same
 * way; built after tg_manual_seed(0) as PyTorch's were. */
static void token_classifier_parity(bool lstm) {
    tg_fixture *fx = tg_fixture_load(lstm ? "model_lstm_classifier" : "model_gru_classifier");
    tg_manual_seed(0);
    tg_lstm_classifier *lc = lstm ? tg_lstm_classifier_new(11, 4, 5, 3) : NULL;
    tg_gru_classifier *gc = lstm ? NULL : tg_gru_classifier_new(11, 4, 5, 3);
    tg_params *params = lstm ? tg_module_params(&lc->module) : tg_module_params(&gc->module);
    assert_default_init(fx, params);
    tg_fixture_load_params(fx, params);
    tg_index *tokens = tg_fixture_index(fx, "in.x");
    tg_tensor *gout = tg_fixture_tensor(fx, "gout");
    tg_tape *tape = tg_tape_new();
    tg_tensor *logits = lstm ? tg_lstm_classifier_forward(lc, tape, tokens)
                             : tg_gru_classifier_forward(gc, tape, tokens);
    compare_tensor(fx, "out", logits);
    tg_tape_backward(tape, weighted(tape, logits, gout));
    compare_param_grads(fx, params);
    tg_tape_free(tape);
    tg_index_free(tokens), tg_tensor_free(gout);
    if (lc) tg_module_free(&lc->module);
    if (gc) tg_module_free(&gc->module);
    tg_fixture_free(fx);
}

static void test_gru_classifier_parity(void **state) {
    (void)state;
    token_classifier_parity(false);
}

static void test_lstm_classifier_parity(void **state) {
    (void)state;
    token_classifier_parity(true);
}

/* ---- the step-by-step GRU: three steps, one call each, the hidden carried ---- */

static void run_stepwise_case(const char *case_name, int64_t batch) {
    tg_fixture *fx = tg_fixture_load(case_name);
    tg_manual_seed(0);
    tg_gru_stepwise *m = tg_gru_stepwise_new(4, 5, 3);
    assert_default_init(fx, tg_module_params(&m->module));
    tg_fixture_load_params(fx, tg_module_params(&m->module));
    tg_tensor *x = input(fx, "in.x"); /* (steps, batch, input_size) */
    const bool given_h0 = tg_fixture_has(fx, "in.h0");
    tg_tensor *h0 = given_h0 ? input(fx, "in.h0") : tg_gru_stepwise_init_hidden(m, batch);
    tg_tensor *g_out = tg_fixture_tensor(fx, "gout.output"),
              *g_hid = tg_fixture_tensor(fx, "gout.hidden");
    tg_tape *tape = tg_tape_new();
    tg_tensor *hidden = h0, *outs[3];
    for (int64_t i = 0; i < 3; i++) {
        /* output, hidden = gru(x[i], hidden) */
        tg_gru_stepwise_output o =
            tg_gru_stepwise_forward(m, tape, tg_select(tape, x, 0, i), hidden);
        assert_int_equal(o.output->ndim, 2);
        outs[i] = o.output, hidden = o.hidden;
    }
    tg_tensor *output = tg_reshape(tape, tg_concat(tape, outs, 3, 0), TG_SHAPE(3, batch, 3));
    compare_tensor(fx, "out.output", output);
    compare_tensor(fx, "out.hidden", hidden);
    tg_tape_backward(tape,
                     tg_add(tape, weighted(tape, output, g_out), weighted(tape, hidden, g_hid)));
    compare_grad(fx, "grad.x", x);
    if (given_h0) compare_grad(fx, "grad.h0", h0);
    compare_param_grads(fx, tg_module_params(&m->module));
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(h0), tg_tensor_free(g_out), tg_tensor_free(g_hid);
    tg_module_free(&m->module);
    tg_fixture_free(fx);
}

static void test_gru_stepwise_parity(void **state) {
    (void)state;
    run_stepwise_case("model_gru_stepwise", 1); /* the seed's batch of one, initHidden() */
    run_stepwise_case("model_gru_stepwise_batch2_h0", 2);
}

/* ---- GRU + additive attention: teacher-forced logits, attention weights, greedy decoding ---- */

static void test_gru_attention_parity(void **state) {
    (void)state;
    tg_fixture *fx = tg_fixture_load("model_gru_attention");
    tg_manual_seed(0);
    tg_gru_attention *m = tg_gru_attention_new(9, 7, 4, 5, 6);
    assert_default_init(fx, tg_module_params(&m->module));
    tg_fixture_load_params(fx, tg_module_params(&m->module));
    tg_index *src = tg_fixture_index(fx, "in.src"), *tgt_in = tg_fixture_index(fx, "in.tgt_in");
    tg_tensor *g_logits = tg_fixture_tensor(fx, "gout.logits"),
              *g_w = tg_fixture_tensor(fx, "gout.weights");
    tg_tape *tape = tg_tape_new();
    tg_gru_attention_output o = tg_gru_attention_forward(m, tape, src, tgt_in);
    compare_tensor(fx, "out.logits", o.logits);
    compare_tensor(fx, "out.weights", o.weights);
    for (int64_t i = 0; i < 2 * 4; i++) { /* each step's attention is a distribution */
        double total = 0;
        for (int64_t s = 0; s < 6; s++) total += (double)o.weights->data[i * 6 + s];
        assert_true(fabs(total - 1) < 1e-5);
    }
    tg_tape_backward(
        tape, tg_add(tape, weighted(tape, o.logits, g_logits), weighted(tape, o.weights, g_w)));
    compare_param_grads(fx, tg_module_params(&m->module));

    /* greedy decoding: the same tokens as PyTorch's argmax loop, nothing recorded */
    tg_tape_reset(tape);
    tg_tape_set_recording(tape, false);
    tg_tensor *weights = NULL;
    tg_index *tokens = tg_gru_attention_greedy(m, tape, src, 0, 5, &weights);
    assert_int_equal(tg_tape_node_count(tape), 0);
    tg_index *want = tg_fixture_index(fx, "out.greedy");
    assert_int_equal(tokens->ndim, 2);
    assert_int_equal(tokens->shape[0], 2);
    assert_int_equal(tokens->shape[1], 5);
    assert_memory_equal(tokens->data, want->data, 10 * sizeof(int32_t));
    assert_int_equal(weights->shape[1], 5);
    assert_int_equal(weights->shape[2], 6);
    tg_tape_free(tape);
    tg_index_free(src), tg_index_free(tgt_in), tg_index_free(want);
    tg_tensor_free(g_logits), tg_tensor_free(g_w);
    tg_module_free(&m->module);
    tg_fixture_free(fx);
}

/* The fused-loss tests: the parameters' gradients of the logits path, kept (then zeroed) to
 * compare with the fused path's, to rounding. */
static tg_real **take_grads(const tg_params *ps) {
    tg_real **g = calloc(ps->count, sizeof *g);
    for (size_t i = 0; i < ps->count; i++) {
        const tg_tensor *p = ps->tensors[i];
        g[i] = malloc((size_t)p->numel * sizeof(tg_real));
        memcpy(g[i], p->grad, (size_t)p->numel * sizeof(tg_real));
    }
    tg_params_zero_grad(ps);
    return g;
}
static void assert_grads_close(const tg_params *ps, tg_real **want) {
    for (size_t i = 0; i < ps->count; i++) {
        tg_test_assert_close(ps->names[i], ps->tensors[i]->grad, want[i], ps->tensors[i]->numel,
                             TG_TEST_ATOL, 1e-5);
        free(want[i]);
    }
    free(want);
}

/* The tape of a fused loss: it ends in linear_cross_entropy and no node's output holds the
 * `logits` values of the unfused path. */
static void assert_no_logits(const tg_tape *tape, int64_t logits) {
    const size_t nodes = tg_tape_node_count(tape);
    assert_string_equal(tg_tape_node(tape, nodes - 1)->op, "linear_cross_entropy");
    for (size_t i = 0; i < nodes; i++) assert_true(tg_tape_node(tape, i)->out[0]->numel < logits);
}

/* tg_gru_attention_loss (the fused output layer, in chunks of rows: 300 rows here, more
 * than one chunk) against the logits path: the same loss bits, the same weights, the same
 * gradients to rounding. */
static void test_gru_attention_loss_fused(void **state) {
    (void)state;
    enum { V = 50, N = 20, S = 7, T = 15 };
    tg_manual_seed(5);
    tg_gru_attention *m = tg_gru_attention_new(V, V, 6, 8, 5);
    const tg_params *ps = tg_module_params(&m->module);
    tg_index *src = tg_index_new(TG_SHAPE(N, S)), *tgt_in = tg_index_new(TG_SHAPE(N, T)),
             *y = tg_index_new(TG_SHAPE(N * T));
    for (int64_t k = 0; k < N * S; k++) src->data[k] = (int32_t)((k * 13 + 2) % V);
    for (int64_t k = 0; k < N * T; k++)
        tgt_in->data[k] = (int32_t)((k * 37 + 5) % V),
        y->data[k] = k % 7 == 3 ? -100 : (int32_t)((k * 91) % V);
    tg_tape *tape = tg_tape_new();
    tg_gru_attention_output o = tg_gru_attention_forward(m, tape, src, tgt_in);
    tg_tensor *want = tg_cross_entropy(tape, tg_reshape(tape, o.logits, TG_SHAPE(-1, V)), y);
    tg_tape_backward(tape, want);
    const tg_real want_loss = tg_item(want);
    tg_real *want_w = malloc((size_t)o.weights->numel * sizeof(tg_real));
    memcpy(want_w, o.weights->data, (size_t)o.weights->numel * sizeof(tg_real));
    tg_real **want_grads = take_grads(ps);
    tg_tape_reset(tape);
    tg_gru_attention_loss_output f = tg_gru_attention_loss(m, tape, src, tgt_in, y, NULL);
    assert_true(tg_item(f.loss) == want_loss);
    assert_memory_equal(f.weights->data, want_w, (size_t)N * T * S * sizeof(tg_real));
    assert_no_logits(tape, N * T * V);
    tg_tape_backward(tape, f.loss);
    assert_grads_close(ps, want_grads);
    free(want_w);
    tg_tape_free(tape);
    tg_index_free(src), tg_index_free(tgt_in), tg_index_free(y);
    tg_module_free(&m->module);
}

/* ---- the GRU language model: two batches, the second from the detached hidden of the first ----
 */

/* tg_gru_lm_loss (the fused output layer) against the logits path: the same loss bits,
 * the same gradients to rounding, and the same new hidden. */
static void test_gru_lm_loss_fused(void **state) {
    (void)state;
    enum { V = 300, T = 6, B = 4 };
    tg_manual_seed(3);
    tg_gru_lm *m = tg_gru_lm_new(V, 8, 16, 2);
    const tg_params *ps = tg_module_params(&m->module);
    tg_index *x = tg_index_new(TG_SHAPE(T, B)), *y = tg_index_new(TG_SHAPE(T * B));
    for (int64_t k = 0; k < T * B; k++)
        x->data[k] = (int32_t)((k * 37 + 5) % V),
        y->data[k] = k % 7 == 3 ? -100 : (int32_t)((k * 91) % V);
    tg_tape *tape = tg_tape_new();
    tg_gru_lm_output o = tg_gru_lm_forward(m, tape, x, NULL);
    tg_tensor *want = tg_cross_entropy(tape, tg_reshape(tape, o.logits, TG_SHAPE(-1, V)), y);
    tg_tape_backward(tape, want);
    const tg_real want_loss = tg_item(want);
    tg_real **want_grads = take_grads(ps);
    tg_tensor *want_hidden = tg_gru_lm_detach(NULL, o.hidden);
    tg_tape_reset(tape);
    tg_gru_lm_loss_output f = tg_gru_lm_loss(m, tape, x, NULL, y, NULL);
    assert_memory_equal(f.hidden->data, want_hidden->data,
                        (size_t)want_hidden->numel * sizeof(tg_real));
    assert_true(tg_item(f.loss) == want_loss);
    /* the loss is one node, and no tensor on the tape holds T·B·V logits */
    assert_no_logits(tape, T * B * V);
    tg_tape_backward(tape, f.loss);
    assert_grads_close(ps, want_grads);
    tg_tensor_free(want_hidden);
    tg_tape_free(tape);
    tg_index_free(x), tg_index_free(y);
    tg_module_free(&m->module);
}

static void test_gru_lm_parity(void **state) {
    (void)state;
    tg_fixture *fx = tg_fixture_load("model_gru_lm");
    tg_manual_seed(0);
    tg_gru_lm *m = tg_gru_lm_new(7, 4, 5, 2);
    assert_default_init(fx, tg_module_params(&m->module));
    tg_fixture_load_params(fx, tg_module_params(&m->module));
    tg_index *x1 = tg_fixture_index(fx, "in.x1"), *x2 = tg_fixture_index(fx, "in.x2");
    tg_tensor *h0 = input(fx, "in.h0");
    const char *gnames[4] = {"gout.logits1", "gout.hidden1", "gout.logits2", "gout.hidden2"};
    tg_tensor *g[4];
    for (int i = 0; i < 4; i++) g[i] = tg_fixture_tensor(fx, gnames[i]);
    tg_tape *tape = tg_tape_new();
    tg_gru_lm_output o1 = tg_gru_lm_forward(m, tape, x1, h0);
    tg_tensor *hidden = tg_gru_lm_detach(NULL, o1.hidden); /* hidden = hidden.detach() */
    assert_false(hidden->requires_grad);
    assert_memory_equal(hidden->data, o1.hidden->data, (size_t)hidden->numel * sizeof(tg_real));
    tg_gru_lm_output o2 = tg_gru_lm_forward(m, tape, x2, hidden);
    compare_tensor(fx, "out.logits1", o1.logits);
    compare_tensor(fx, "out.hidden1", o1.hidden);
    compare_tensor(fx, "out.logits2", o2.logits);
    compare_tensor(fx, "out.hidden2", o2.hidden);
    tg_tensor *loss =
        tg_add(tape, tg_add(tape, weighted(tape, o1.logits, g[0]), weighted(tape, o1.hidden, g[1])),
               tg_add(tape, weighted(tape, o2.logits, g[2]), weighted(tape, o2.hidden, g[3])));
    tg_tape_backward(tape, loss);
    compare_grad(fx, "grad.h0", h0); /* batch 1 only: the detach cut batch 2 off */
    assert_null(hidden->grad);
    compare_param_grads(fx, tg_module_params(&m->module));

    /* reusing the buffer: no allocation, survives a tape reset */
    tg_tensor *again = tg_gru_lm_detach(hidden, o2.hidden);
    assert_ptr_equal(again, hidden);
    tg_tape_reset(tape);
    compare_tensor(fx, "out.hidden2", hidden);
    tg_tensor *zeros = tg_gru_lm_init_hidden(m, 3);
    assert_int_equal(zeros->ndim, 3);
    assert_int_equal(zeros->shape[0], 2), assert_int_equal(zeros->shape[1], 3),
        assert_int_equal(zeros->shape[2], 5);
    tg_tape_free(tape);
    tg_index_free(x1), tg_index_free(x2);
    tg_tensor_free(h0), tg_tensor_free(hidden), tg_tensor_free(zeros);
    for (int i = 0; i < 4; i++) tg_tensor_free(g[i]);
    tg_module_free(&m->module);
    tg_fixture_free(fx);
}

/* ---- the Transformer tutorial's TransformerModel ---- */

static tg_transformer_model *small_transformer(int64_t vocab, int64_t d_model, int64_t ff,
                                               int layers) {
    tg_transformer_options o = tg_transformer_defaults(d_model, 2);
    o.dim_feedforward = ff;
    o.dropout = 0;
    return tg_transformer_model_new_ex(vocab, &o, layers, layers);
}

/* tg_transformer_model_loss (the fused output layer) against the logits path: the same loss
 * bits and the same gradients to rounding, without a T·N·V tensor on the tape. */
static void test_transformer_loss_fused(void **state) {
    (void)state;
    enum { V = 50, S = 5, T = 4, N = 3 };
    tg_manual_seed(4);
    tg_transformer_model *m = small_transformer(V, 8, 16, 1);
    const tg_params *ps = tg_module_params(&m->module);
    tg_index *src = tg_index_new(TG_SHAPE(S, N)), *tgt = tg_index_new(TG_SHAPE(T, N));
    tg_index *y = tg_index_new(TG_SHAPE(T * N));
    for (int64_t k = 0; k < S * N; k++) src->data[k] = (int32_t)((k * 37 + 5) % V);
    for (int64_t k = 0; k < T * N; k++)
        tgt->data[k] = (int32_t)((k * 13 + 1) % V), y->data[k] = (int32_t)((k * 91) % V);
    tg_tape *tape = tg_tape_new();
    tg_tensor *logits = tg_transformer_model_forward(m, tape, src, tgt);
    tg_tensor *want = tg_cross_entropy(tape, tg_reshape(tape, logits, TG_SHAPE(-1, V)), y);
    tg_tape_backward(tape, want);
    const tg_real want_loss = tg_item(want);
    tg_real **want_grads = take_grads(ps);
    tg_tape_reset(tape);
    tg_tensor *loss = tg_transformer_model_loss(m, tape, src, tgt, y, NULL);
    assert_true(tg_item(loss) == want_loss);
    assert_no_logits(tape, T * N * V);
    tg_tape_backward(tape, loss);
    assert_grads_close(ps, want_grads);
    tg_tape_free(tape);
    tg_index_free(src), tg_index_free(tgt), tg_index_free(y);
    tg_module_free(&m->module);
}

static void run_transformer_case(const char *case_name, bool default_init) {
    tg_fixture *fx = tg_fixture_load(case_name);
    tg_manual_seed(0);
    tg_transformer_model *m = small_transformer(7, 8, 16, 2);
    if (default_init) assert_default_init(fx, tg_module_params(&m->module));
    tg_fixture_load_params(fx, tg_module_params(&m->module));
    tg_index *src = tg_fixture_index(fx, "in.src"), *tgt = tg_fixture_index(fx, "in.tgt");
    tg_tensor *gout = tg_fixture_tensor(fx, "gout");
    tg_tape *tape = tg_tape_new();
    tg_tensor *logits = tg_transformer_model_forward(m, tape, src, tgt);
    compare_tensor(fx, "out", logits);
    tg_tape_backward(tape, weighted(tape, logits, gout));
    compare_param_grads(fx, tg_module_params(&m->module));
    tg_tape_free(tape);
    tg_index_free(src), tg_index_free(tgt), tg_tensor_free(gout);
    tg_module_free(&m->module);
    tg_fixture_free(fx);
}

static void test_transformer_parity(void **state) {
    (void)state;
    run_transformer_case("model_transformer", true);
    run_transformer_case("model_transformer_perturbed", false); /* every layer different */
}

/* The causal mask: changing the last target token changes no earlier position's logits. */
static void test_transformer_is_causal(void **state) {
    (void)state;
    tg_manual_seed(3);
    tg_transformer_model *m = small_transformer(7, 8, 16, 1);
    tg_index *src = tg_index_from_array(TG_SHAPE(3, 1), (int32_t[]){1, 2, 3});
    tg_index *a = tg_index_from_array(TG_SHAPE(4, 1), (int32_t[]){0, 4, 5, 6});
    tg_index *b = tg_index_from_array(TG_SHAPE(4, 1), (int32_t[]){0, 4, 5, 2});
    tg_tape *tape = tg_tape_new();
    tg_tensor *ya = tg_transformer_model_forward(m, tape, src, a);
    tg_tensor *yb = tg_transformer_model_forward(m, tape, src, b);
    assert_memory_equal(ya->data, yb->data, 3 * 7 * sizeof(tg_real));
    assert_true(memcmp(ya->data + 21, yb->data + 21, 7 * sizeof(tg_real)) != 0);
    m->causal = false; /* the seed's forward as written: every position sees the last token */
    yb = tg_transformer_model_forward(m, tape, src, b);
    tg_tensor *yc = tg_transformer_model_forward(m, tape, src, a);
    assert_true(memcmp(yc->data, yb->data, 7 * sizeof(tg_real)) != 0);
    tg_tape_free(tape);
    tg_index_free(src), tg_index_free(a), tg_index_free(b);
    tg_module_free(&m->module);
}

/* The seed's default sizes: feed-forward 2048, dropout 0.1. */
static void test_transformer_defaults(void **state) {
    (void)state;
    tg_transformer_model *m = tg_transformer_model_new(10, 8, 2, 1, 1);
    assert_int_equal(m->encoder->layers[0]->linear1->out_features, 2048);
    assert_true(fabs((double)m->decoder->layers[0]->opts.dropout - 0.1) < 1e-7);
    assert_null(m->encoder->norm);
    assert_null(m->decoder->norm);
    assert_string_equal(
        tg_module_params(&m->module)->names[tg_module_params(&m->module)->count - 3],
        "embedding.weight");
    tg_module_free(&m->module);
}

static void test_parity_summary(void **state) {
    (void)state;
    print_message("worst parity error: %.3g absolute, %.3g of the tolerance (%s)\n", worst_abs,
                  worst_ratio, worst_what);
}

/* ---- gradchecks (float64): tiny sizes, every parameter, float inputs too ---- */

/* Σ y² of a model output: every output element weighs in, differently. */
static tg_tensor *sum_squares(tg_tape *t, tg_tensor *y) { return tg_sum(t, tg_mul(t, y, y)); }

typedef struct model_ctx {
    void *m;
    const tg_index *a, *b;
} model_ctx;

static tg_tensor *seq_classifier_fn(tg_tape *t, tg_tensor *const *in, void *ctx) {
    return sum_squares(t, tg_gru_seq_classifier_forward(((model_ctx *)ctx)->m, t, in[0]));
}
static tg_tensor *gru_classifier_fn(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)in;
    const model_ctx *c = ctx;
    return sum_squares(t, tg_gru_classifier_forward(c->m, t, c->a));
}
static tg_tensor *lstm_classifier_fn(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)in;
    const model_ctx *c = ctx;
    return sum_squares(t, tg_lstm_classifier_forward(c->m, t, c->a));
}
static tg_tensor *stepwise_fn(tg_tape *t, tg_tensor *const *in, void *ctx) {
    tg_gru_stepwise_output o1 =
        tg_gru_stepwise_forward(((model_ctx *)ctx)->m, t, tg_select(t, in[0], 0, 0), in[1]);
    tg_gru_stepwise_output o2 =
        tg_gru_stepwise_forward(((model_ctx *)ctx)->m, t, tg_select(t, in[0], 0, 1), o1.hidden);
    return tg_add(t, tg_add(t, sum_squares(t, o1.output), sum_squares(t, o2.output)),
                  sum_squares(t, o2.hidden));
}
static tg_tensor *attention_fn(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)in;
    const model_ctx *c = ctx;
    tg_gru_attention_output o = tg_gru_attention_forward(c->m, t, c->a, c->b);
    return tg_add(t, sum_squares(t, o.logits), sum_squares(t, o.weights));
}
static tg_tensor *lm_fn(tg_tape *t, tg_tensor *const *in, void *ctx) {
    const model_ctx *c = ctx;
    tg_gru_lm_output o = tg_gru_lm_forward(c->m, t, c->a, in[0]);
    return tg_add(t, sum_squares(t, o.logits), sum_squares(t, o.hidden));
}
static tg_tensor *transformer_fn(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)in;
    const model_ctx *c = ctx;
    return sum_squares(t, tg_transformer_model_forward(c->m, t, c->a, c->b));
}

static void test_gradchecks(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_manual_seed(5);
    tg_index *ids_bt = tg_index_from_array(TG_SHAPE(2, 3), (int32_t[]){1, 4, 0, 3, 3, 2});
    tg_index *ids_b2 = tg_index_from_array(TG_SHAPE(2, 2), (int32_t[]){0, 3, 0, 1});

    tg_gru_seq_classifier *sc = tg_gru_seq_classifier_new(2, 3, 2);
    tg_tensor *x = tg_tensor_requires_grad(tg_test_rand(1, -1, 1, TG_SHAPE(3, 2, 2)), true);
    tg_test_gradcheck_params("gru_seq_classifier", seq_classifier_fn, &(model_ctx){sc, NULL, NULL},
                             (tg_tensor *[]){x}, 1, tg_module_params(&sc->module));

    tg_gru_classifier *gc = tg_gru_classifier_new(5, 2, 3, 2);
    tg_test_gradcheck_params("gru_classifier", gru_classifier_fn, &(model_ctx){gc, ids_bt, NULL},
                             NULL, 0, tg_module_params(&gc->module));
    tg_lstm_classifier *lc = tg_lstm_classifier_new(5, 2, 3, 2);
    tg_test_gradcheck_params("lstm_classifier", lstm_classifier_fn, &(model_ctx){lc, ids_bt, NULL},
                             NULL, 0, tg_module_params(&lc->module));

    tg_gru_stepwise *sw = tg_gru_stepwise_new(2, 3, 2);
    tg_tensor *steps = tg_tensor_requires_grad(tg_test_rand(2, -1, 1, TG_SHAPE(2, 2, 2)), true);
    tg_tensor *h0 = tg_tensor_requires_grad(tg_test_rand(3, -0.5, 0.5, TG_SHAPE(1, 2, 3)), true);
    tg_test_gradcheck_params("gru_stepwise", stepwise_fn, &(model_ctx){sw, NULL, NULL},
                             (tg_tensor *[]){steps, h0}, 2, tg_module_params(&sw->module));

    tg_gru_attention *ga = tg_gru_attention_new(5, 4, 2, 3, 3);
    tg_test_gradcheck_params("gru_attention", attention_fn, &(model_ctx){ga, ids_bt, ids_b2}, NULL,
                             0, tg_module_params(&ga->module));

    tg_gru_lm *lm = tg_gru_lm_new(5, 2, 3, 2);
    tg_tensor *lm_h0 = tg_tensor_requires_grad(tg_test_rand(4, -0.5, 0.5, TG_SHAPE(2, 3, 3)), true);
    tg_test_gradcheck_params("gru_lm", lm_fn, &(model_ctx){lm, ids_bt, NULL},
                             (tg_tensor *[]){lm_h0}, 1, tg_module_params(&lm->module));

    tg_transformer_model *tr = small_transformer(5, 4, 6, 1);
    tg_index *src = tg_index_from_array(TG_SHAPE(3, 2), (int32_t[]){1, 4, 0, 3, 3, 2});
    tg_index *tgt = tg_index_from_array(TG_SHAPE(2, 2), (int32_t[]){0, 0, 2, 1});
    tg_test_gradcheck_params("transformer", transformer_fn, &(model_ctx){tr, src, tgt}, NULL, 0,
                             tg_module_params(&tr->module));

    tg_module_free(&sc->module), tg_module_free(&gc->module), tg_module_free(&lc->module);
    tg_module_free(&sw->module), tg_module_free(&ga->module), tg_module_free(&lm->module);
    tg_module_free(&tr->module);
    tg_tensor_free(x), tg_tensor_free(steps), tg_tensor_free(h0), tg_tensor_free(lm_h0);
    tg_index_free(ids_bt), tg_index_free(ids_b2), tg_index_free(src), tg_index_free(tgt);
}

/* ---- a training step goes downhill (the loop a training script runs) ---- */

static void test_gru_classifier_learns(void **state) {
    (void)state;
    tg_manual_seed(0);
    tg_gru_classifier *m = tg_gru_classifier_new(6, 4, 8, 2);
    /* the label is the first token's parity: it needs memory of the whole sequence */
    tg_index *tokens =
        tg_index_from_array(TG_SHAPE(4, 3), (int32_t[]){1, 0, 2, 2, 5, 5, 3, 1, 1, 4, 0, 3});
    tg_index *labels = tg_index_from_array(TG_SHAPE(4), (int32_t[]){1, 0, 1, 0});
    tg_tape *tape = tg_tape_new();
    tg_params *p = tg_module_params(&m->module);
    double first = 0, last = 0;
    for (int step = 0; step < 30; step++) {
        tg_tensor *loss =
            tg_cross_entropy(tape, tg_gru_classifier_forward(m, tape, tokens), labels);
        tg_params_zero_grad(p);
        tg_tape_backward(tape, loss);
        for (size_t i = 0; i < p->count; i++) /* plain SGD, lr 0.5 */
            for (int64_t j = 0; j < p->tensors[i]->numel; j++)
                p->tensors[i]->data[j] -= (tg_real)0.5 * p->tensors[i]->grad[j];
        if (step == 0) first = (double)tg_item(loss);
        last = (double)tg_item(loss);
        tg_tape_reset(tape);
    }
    assert_true(last < 0.5 * first);
    tg_tape_free(tape);
    tg_index_free(tokens), tg_index_free(labels);
    tg_module_free(&m->module);
}

/* ---- error paths ---- */

static void test_errors(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_gru_classifier *gc = tg_gru_classifier_new(11, 4, 5, 3);
    tg_index *bad = tg_index_from_array(TG_SHAPE(1, 3), (int32_t[]){2, 11, 0});
    TG_EXPECT_FAIL(tg_gru_classifier_forward(gc, tape, bad), "tg_embedding", "id 11", "[0, 11)");

    tg_gru_lm *lm = tg_gru_lm_new(7, 4, 5, 2);
    tg_index *x = tg_index_from_array(TG_SHAPE(2, 1), (int32_t[]){1, 2});
    tg_tensor *h1 = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(1, 1, 5)), "hidden");
    TG_EXPECT_FAIL(tg_gru_lm_forward(lm, tape, x, h1), "tg_gru_forward", "h0 (1, 1, 5) 'hidden'",
                   "(2, 1, 5)");
    tg_tensor *h2 = tg_tensor_zeros(TG_SHAPE(2, 2, 5));
    TG_EXPECT_FAIL(tg_gru_lm_detach(h1, h2), "tg_gru_lm_detach", "(1, 1, 5) 'hidden'", "(2, 2, 5)");

    tg_gru_stepwise *sw = tg_gru_stepwise_new(4, 5, 3);
    tg_tensor *in3 = tg_tensor_zeros(TG_SHAPE(2, 3));
    TG_EXPECT_FAIL(tg_gru_stepwise_forward(sw, tape, in3, NULL), "tg_gru_forward", "3 features",
                   "input_size 4");

    tg_gru_attention *ga = tg_gru_attention_new(9, 7, 4, 5, 6);
    tg_index *src = tg_index_from_array(TG_SHAPE(2, 2), (int32_t[]){1, 2, 3, 4});
    tg_index *tgt3 = tg_index_from_array(TG_SHAPE(3, 1), (int32_t[]){1, 2, 3});
    TG_EXPECT_FAIL(tg_gru_attention_forward(ga, tape, src, tgt3), "tg_gru_attention_forward",
                   "(2, 2)", "(3, 1)");
    TG_EXPECT_FAIL(tg_gru_attention_greedy(ga, tape, src, 7, 3, NULL), "tg_embedding", "id 7");
    TG_EXPECT_FAIL(tg_gru_attention_greedy(ga, tape, src, 0, 0, NULL), "tg_gru_attention_greedy",
                   "max_len 0");

    tg_transformer_model *tr = small_transformer(7, 8, 16, 1);
    TG_EXPECT_FAIL(tg_transformer_model_forward(tr, tape, src, tgt3),
                   "tg_transformer_model_forward", "(2, 2)", "(3, 1)");
    tg_transformer_options o = tg_transformer_defaults(8, 2);
    o.batch_first = true;
    TG_EXPECT_FAIL(tg_transformer_model_new_ex(7, &o, 1, 1), "tg_transformer_model_new_ex",
                   "batch_first");

    tg_tape_free(tape);
    tg_module_free(&gc->module), tg_module_free(&lm->module), tg_module_free(&sw->module);
    tg_module_free(&ga->module), tg_module_free(&tr->module);
    tg_index_free(bad), tg_index_free(x), tg_index_free(src), tg_index_free(tgt3);
    tg_tensor_free(h1), tg_tensor_free(h2), tg_tensor_free(in3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gru_seq_classifier_parity),
        cmocka_unit_test(test_gru_classifier_parity),
        cmocka_unit_test(test_lstm_classifier_parity),
        cmocka_unit_test(test_gru_stepwise_parity),
        cmocka_unit_test(test_gru_attention_parity),
        cmocka_unit_test(test_gru_attention_loss_fused),
        cmocka_unit_test(test_gru_lm_parity),
        cmocka_unit_test(test_gru_lm_loss_fused),
        cmocka_unit_test(test_transformer_loss_fused),
        cmocka_unit_test(test_transformer_parity),
        cmocka_unit_test(test_parity_summary),
        cmocka_unit_test(test_transformer_is_causal),
        cmocka_unit_test(test_transformer_defaults),
        cmocka_unit_test(test_gradchecks),
        cmocka_unit_test(test_gru_classifier_learns),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
