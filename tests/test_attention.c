/* Attention and Transformer modules: PyTorch's init, parity with PyTorch fixtures (outputs and
 * every gradient), float64 gradchecks, forward values and error messages. */
#include "harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A mask stored by the fixture script: bool masks are I64 0/1, float masks F32. */
static tg_tensor *fixture_mask(const tg_fixture *fx, const char *name, bool *is_bool) {
    if (!tg_fixture_has(fx, name)) return NULL;
    const char *bools = tg_fixture_meta(fx, "bool");
    *is_bool = bools && strstr(bools, name);
    if (!*is_bool) return tg_fixture_tensor(fx, name);
    tg_index *ix = tg_fixture_index(fx, name);
    tg_tensor *m = tg_tensor_zeros(ix->ndim, ix->shape);
    for (int64_t i = 0; i < ix->numel; i++) m->data[i] = (tg_real)(ix->data[i] != 0);
    tg_index_free(ix);
    return m;
}

/* loss = Σ out ⊙ gout (+ Σ weights ⊙ gout.weights): backward gives every output its fixture
 * upstream gradient at once. */
static tg_tensor *weighted_sum(tg_tape *t, tg_tensor *y, tg_tensor *g) {
    return tg_sum(t, tg_mul(t, y, g));
}

static tg_tensor *input(const tg_fixture *fx, const char *name) {
    return tg_tensor_requires_grad(tg_fixture_tensor(fx, name), true);
}

static void assert_grad(const tg_fixture *fx, const char *name, const tg_tensor *x) {
    tg_fixture_assert_close(fx, name, x->grad, x->shape, x->ndim, TG_PARITY_ATOL, TG_PARITY_RTOL);
}

/* The list's names joined by commas, as the fixtures' meta "keys" (a static buffer). */
static const char *keys_of(const tg_params *ps) {
    static char buf[512];
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; i < ps->count; i++)
        used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%s", i ? "," : "", ps->names[i]);
    return buf;
}

/* ---- MultiheadAttention ---- */

static void assert_init_matches(const char *case_name, tg_mha *m) {
    tg_fixture *fx = tg_fixture_load(case_name);
    const tg_params *ps = tg_module_params(&m->module);
    assert_string_equal(tg_fixture_meta(fx, "keys"), keys_of(ps));
    for (size_t i = 0; i < ps->count; i++) {
        char name[128];
        snprintf(name, sizeof name, "param.%s", ps->names[i]);
        /* bit for bit; bias_k and bias_v (normal draws) to one float32 ulp, as the float32
         * build passes tg_init_normal a std already rounded to float */
        const bool normal = strncmp(ps->names[i], "bias_", 5) == 0;
        tg_fixture_assert_tensor(fx, name, ps->tensors[i], 0, normal ? 0x1p-23 : 0);
    }
    tg_fixture_free(fx);
    tg_module_free(&m->module);
}

static void test_mha_init_matches_torch(void **state) {
    (void)state;
    tg_manual_seed(0);
    assert_init_matches("init_mha_8_2", tg_mha_new(8, 2, 0, true, false));
    /* separate q, k, v_proj_weight and bias_k, bias_v: their shapes, order and draws */
    tg_mha_options o = tg_mha_defaults(8, 2);
    o.add_bias_kv = true, o.kdim = 6, o.vdim = 5;
    tg_manual_seed(0);
    assert_init_matches("init_mha_8_2_options", tg_mha_new_with(&o));
}

/* With every option, the module prints as PyTorch's (MultiheadAttention has no extra_repr),
 * and its state_dict goes through a checkpoint file into a fresh module of the same options,
 * but not into one with the packed in_proj_weight (a strict load, as load_state_dict). */
static void test_mha_options_repr_and_checkpoint(void **state) {
    (void)state;
    tg_mha_options o = tg_mha_defaults(8, 2);
    o.add_bias_kv = o.add_zero_attn = true, o.kdim = 6, o.vdim = 5;
    tg_manual_seed(1);
    tg_mha *a = tg_mha_new_with(&o);
    char *repr = tg_module_repr(&a->module);
    assert_string_equal(repr, "MultiheadAttention(\n"
                              "  (out_proj): NonDynamicallyQuantizableLinear(in_features=8, "
                              "out_features=8, bias=True)\n)");
    free(repr);
    char dir[] = "/tmp/tg_mha_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/mha.safetensors", dir);
    const tg_params *pa = tg_module_params(&a->module);
    if (tg_params_save(pa, path) != TG_OK) fail_msg("save: %s", tg_error_message());
    tg_manual_seed(2);
    tg_mha *b = tg_mha_new_with(&o);
    tg_params *pb = tg_module_params(&b->module);
    if (tg_params_load(pb, path, false) != TG_OK) fail_msg("load: %s", tg_error_message());
    assert_string_equal(keys_of(pb), "q_proj_weight,k_proj_weight,v_proj_weight,in_proj_bias,"
                                     "bias_k,bias_v,out_proj.weight,out_proj.bias");
    for (size_t i = 0; i < pa->count; i++)
        assert_memory_equal(pa->tensors[i]->data, pb->tensors[i]->data,
                            (size_t)pa->tensors[i]->numel * sizeof(tg_real));
    tg_mha *packed = tg_mha_new(8, 2, 0, true, false);
    assert_int_not_equal(tg_params_load(tg_module_params(&packed->module), path, false), TG_OK);
    remove(path);
    rmdir(dir);
    tg_module_free(&a->module), tg_module_free(&b->module), tg_module_free(&packed->module);
}

static bool meta_flag(const tg_fixture *fx, const char *key, bool absent) {
    const char *v = tg_fixture_meta(fx, key);
    return v ? strcmp(v, "1") == 0 : absent;
}

/* The worst parity error over every MHA case: outputs, input and parameter gradients. */
static tg_parity_tally mha_tally = {TG_PARITY_ATOL, TG_PARITY_RTOL, 0, 0, 0};

static void compare(const tg_fixture *fx, const char *name, const tg_real *got,
                    const tg_tensor *like) {
    tg_parity_tally_compare(&mha_tally, fx, name, like->shape, like->ndim, got);
}

static void run_mha_case(const char *case_name) {
    tg_fixture *fx = tg_fixture_load(case_name);
    const bool self = meta_flag(fx, "self_attention", false);
    /* the constructor's options, when the case sets them (PyTorch's defaults otherwise) */
    tg_mha_options o = tg_mha_defaults(8, 2);
    o.batch_first = meta_flag(fx, "batch_first", false);
    o.add_bias_kv = meta_flag(fx, "add_bias_kv", false);
    o.add_zero_attn = meta_flag(fx, "add_zero_attn", false);
    const char *kdim = tg_fixture_meta(fx, "kdim"), *vdim = tg_fixture_meta(fx, "vdim");
    o.kdim = kdim ? atoll(kdim) : 0, o.vdim = vdim ? atoll(vdim) : 0;
    const bool average = meta_flag(fx, "average_attn_weights", true);
    tg_mha *m = tg_mha_new_with(&o);
    tg_params *params = tg_module_params(&m->module);
    tg_fixture_load_params(fx, params);
    tg_tensor *q = input(fx, self ? "in.x" : "in.query");
    tg_tensor *k = self ? q : input(fx, "in.key"), *v = self ? q : input(fx, "in.value");
    tg_mha_masks masks = {0};
    tg_tensor *am = fixture_mask(fx, "in.attn_mask", &masks.attn_mask_is_bool);
    tg_tensor *kpm = fixture_mask(fx, "in.key_padding_mask", &masks.key_padding_mask_is_bool);
    masks.attn_mask = am, masks.key_padding_mask = kpm;
    tg_tensor *g_out = tg_fixture_tensor(fx, "gout.output"),
              *g_w = tg_fixture_tensor(fx, "gout.weights");

    tg_tape *tape = tg_tape_new();
    tg_mha_output out = tg_mha_forward_with(m, tape, q, k, v, &masks, true, average);
    compare(fx, "out.output", out.output->data, out.output);
    compare(fx, "out.weights", out.weights->data, out.weights);
    tg_tensor *loss =
        tg_add(tape, weighted_sum(tape, out.output, g_out), weighted_sum(tape, out.weights, g_w));
    tg_tape_backward(tape, loss);
    if (self)
        compare(fx, "grad.x", q->grad, q);
    else
        compare(fx, "grad.query", q->grad, q), compare(fx, "grad.key", k->grad, k),
            compare(fx, "grad.value", v->grad, v);
    for (size_t i = 0; i < params->count; i++) {
        char name[128];
        snprintf(name, sizeof name, "grad.param.%s", params->names[i]);
        compare(fx, name, params->tensors[i]->grad, params->tensors[i]);
    }
    mha_tally.cases++;

    tg_tape_free(tape);
    tg_tensor_free(q);
    if (!self) tg_tensor_free(k), tg_tensor_free(v);
    tg_tensor_free(am), tg_tensor_free(kpm), tg_tensor_free(g_out), tg_tensor_free(g_w);
    tg_module_free(&m->module);
    tg_fixture_free(fx);
}

static void test_mha_parity(void **state) {
    (void)state;
    const char *cases[] = {"mod_mha",
                           "mod_mha_batch_first",
                           "mod_mha_self",
                           "mod_mha_self_causal",
                           "mod_mha_key_padding",
                           "mod_mha_self_causal_kpm_batch_first",
                           "mod_mha_bool_mask",
                           "mod_mha_per_head_mask",
                           "mod_mha_per_head_bool_mask",
                           "mod_mha_float_key_padding",
                           "mod_mha_kdim_vdim",
                           "mod_mha_per_head_weights",
                           "mod_mha_bias_kv_masks",
                           "mod_mha_zero_attn",
                           "mod_mha_all_options_batch_first"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_mha_case(cases[i]);
    tg_parity_tally_print(&mha_tally);
}

/* ---- Transformer layers, stacks, the full model ---- */

static tg_transformer_options options_from(const tg_fixture *fx) {
    tg_transformer_options o = tg_transformer_defaults(8, 2);
    o.dim_feedforward = 16;
    o.dropout = 0;
    o.activation = strcmp(tg_fixture_meta(fx, "activation"), "gelu") == 0 ? TG_ACTIVATION_GELU
                                                                          : TG_ACTIVATION_RELU;
    o.norm_first = strcmp(tg_fixture_meta(fx, "norm_first"), "1") == 0;
    const char *bf = tg_fixture_meta(fx, "batch_first");
    o.batch_first = bf && strcmp(bf, "1") == 0;
    return o;
}

enum kind { ENCODER_LAYER, DECODER_LAYER, ENCODER_STACK, DECODER_STACK, TRANSFORMER };

static void run_transformer_case(const char *case_name, enum kind kind) {
    tg_fixture *fx = tg_fixture_load(case_name);
    const tg_transformer_options o = options_from(fx);
    const char *fn = tg_fixture_meta(fx, "final_norm"); /* the stacks' */
    const bool final_norm = fn && strcmp(fn, "1") == 0;
    void *m = NULL;
    tg_params *params = NULL;
    // one line per kind
    // clang-format off
    switch (kind) {
    case ENCODER_LAYER: params = tg_module_params(m = tg_encoder_layer_new(&o)); break;
    case DECODER_LAYER: params = tg_module_params(m = tg_decoder_layer_new(&o)); break;
    case ENCODER_STACK: params = tg_module_params(m = tg_transformer_encoder_new(&o, 2, final_norm)); break;
    case DECODER_STACK: params = tg_module_params(m = tg_transformer_decoder_new(&o, 2, final_norm)); break;
    case TRANSFORMER: params = tg_module_params(m = tg_transformer_new(&o, 2, 2)); break;
    }
    // clang-format on
    tg_fixture_load_params(fx, params);
    const bool has_src = tg_fixture_has(fx, "in.src"), has_tgt = tg_fixture_has(fx, "in.tgt");
    tg_tensor *src = has_src ? input(fx, "in.src") : NULL;
    tg_tensor *tgt = has_tgt ? input(fx, "in.tgt") : NULL;
    tg_tensor *memory = tg_fixture_has(fx, "in.memory") ? input(fx, "in.memory") : NULL;
    tg_mha_masks src_masks = {0}, tgt_masks = {0}, mem_masks = {0};
    tg_tensor *src_mask = fixture_mask(fx, "in.src_mask", &src_masks.attn_mask_is_bool);
    tg_tensor *src_kpm =
        fixture_mask(fx, "in.src_key_padding_mask", &src_masks.key_padding_mask_is_bool);
    tg_tensor *tgt_mask = fixture_mask(fx, "in.tgt_mask", &tgt_masks.attn_mask_is_bool);
    tg_tensor *mem_kpm =
        fixture_mask(fx, "in.memory_key_padding_mask", &mem_masks.key_padding_mask_is_bool);
    src_masks.attn_mask = src_mask, src_masks.key_padding_mask = src_kpm;
    tgt_masks.attn_mask = tgt_mask, mem_masks.key_padding_mask = mem_kpm;
    tg_tensor *gout = tg_fixture_tensor(fx, "gout");

    tg_tape *tape = tg_tape_new();
    tg_tensor *y = NULL;
    // one line per kind
    // clang-format off
    switch (kind) {
    case ENCODER_LAYER: y = tg_encoder_layer_forward(m, tape, src, &src_masks); break;
    case DECODER_LAYER: y = tg_decoder_layer_forward(m, tape, tgt, memory, &tgt_masks, &mem_masks); break;
    case ENCODER_STACK: y = tg_transformer_encoder_forward(m, tape, src, &src_masks); break;
    case DECODER_STACK: y = tg_transformer_decoder_forward(m, tape, tgt, memory, &tgt_masks, &mem_masks); break;
    case TRANSFORMER: y = tg_transformer_forward(m, tape, src, tgt, &src_masks, &tgt_masks, &mem_masks); break;
    }
    // clang-format on
    tg_fixture_assert_tensor(fx, "out", y, TG_PARITY_ATOL, TG_PARITY_RTOL);
    tg_tape_backward_with(tape, y, gout->data);
    if (src) assert_grad(fx, "grad.src", src);
    if (tgt) assert_grad(fx, "grad.tgt", tgt);
    if (memory) assert_grad(fx, "grad.memory", memory);
    tg_fixture_assert_param_grads(fx, params, TG_PARITY_ATOL, TG_PARITY_RTOL);

    tg_tape_free(tape);
    tg_tensor_free(src), tg_tensor_free(tgt), tg_tensor_free(memory), tg_tensor_free(gout);
    tg_tensor_free(src_mask), tg_tensor_free(src_kpm), tg_tensor_free(tgt_mask),
        tg_tensor_free(mem_kpm);
    tg_module_free(m);
    tg_fixture_free(fx);
}

static void test_encoder_layer_parity(void **state) {
    (void)state;
    const char *cases[] = {"mod_encoder_layer_relu_postnorm", "mod_encoder_layer_relu_prenorm",
                           "mod_encoder_layer_gelu_postnorm", "mod_encoder_layer_gelu_prenorm",
                           "mod_encoder_layer_masks_batch_first"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        run_transformer_case(cases[i], ENCODER_LAYER);
}

static void test_decoder_layer_parity(void **state) {
    (void)state;
    const char *cases[] = {"mod_decoder_layer_relu_postnorm", "mod_decoder_layer_relu_prenorm",
                           "mod_decoder_layer_gelu_postnorm", "mod_decoder_layer_gelu_prenorm",
                           "mod_decoder_layer_mem_kpm_batch_first"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        run_transformer_case(cases[i], DECODER_LAYER);
}

static void test_stacks_and_transformer_parity(void **state) {
    (void)state;
    run_transformer_case("mod_encoder_stack_l2_norm", ENCODER_STACK);
    run_transformer_case("mod_decoder_stack_l2_nonorm", DECODER_STACK);
    run_transformer_case("mod_decoder_stack_l2_norm", DECODER_STACK);
    run_transformer_case("mod_transformer", TRANSFORMER);
    run_transformer_case("mod_transformer_prenorm_gelu_batch_first", TRANSFORMER);
}

static void test_stack_layers_start_identical(void **state) {
    (void)state;
    tg_transformer_options o = tg_transformer_defaults(8, 2);
    o.dim_feedforward = 16;
    tg_manual_seed(1);
    tg_transformer_encoder *enc = tg_transformer_encoder_new(&o, 3, false);
    const tg_params *l0 = tg_module_params(&enc->layers[0]->module),
                    *l2 = tg_module_params(&enc->layers[2]->module);
    for (size_t i = 0; i < l0->count; i++)
        assert_memory_equal(l0->tensors[i]->data, l2->tensors[i]->data,
                            (size_t)l0->tensors[i]->numel * sizeof(tg_real));
    assert_string_equal(tg_module_params(&enc->module)->names[12],
                        "layers.1.self_attn.in_proj_weight");
    /* the copies draw nothing: the next draw equals the one after building a single layer */
    const uint32_t after_stack = tg_rng_next_u32(tg_rng_default());
    tg_manual_seed(1);
    tg_encoder_layer *one = tg_encoder_layer_new(&o);
    assert_int_equal(tg_rng_next_u32(tg_rng_default()), after_stack);
    tg_module_free(&one->module);
    tg_module_free(&enc->module);
}

/* ---- forward values ---- */

static void test_causal_mask_and_positional_encoding(void **state) {
    (void)state;
    tg_tensor *mask = tg_square_subsequent_mask(3);
    const tg_real inf = (tg_real)INFINITY;
    const tg_real want[] = {0, -inf, -inf, 0, 0, -inf, 0, 0, 0};
    tg_test_assert_close("mask", mask->data, want, 9, 0, 0);
    tg_tensor *pe = tg_positional_encoding(4, 6);
    /* PE[pos, 2i] = sin(pos·10000^(-2i/d)), PE[pos, 2i+1] = cos(...) */
    for (int pos = 0; pos < 4; pos++)
        for (int i = 0; i < 3; i++) {
            const double w = pow(10000.0, -2.0 * i / 6.0);
            assert_true(fabs((double)pe->data[pos * 6 + 2 * i] - sin(pos * w)) < 1e-6);
            assert_true(fabs((double)pe->data[pos * 6 + 2 * i + 1] - cos(pos * w)) < 1e-6);
        }
    TG_EXPECT_FAIL(tg_positional_encoding(4, 5), "positional_encoding", "even");
    tg_tensor_free(mask), tg_tensor_free(pe);
}

/* additive attention against the formula computed by hand, in double */
static void test_additive_attention_values(void **state) {
    (void)state;
    tg_manual_seed(7);
    tg_additive_attention *att = tg_additive_attention_new(3, 2, 4);
    tg_tensor *enc = tg_test_rand(1, -1, 1, TG_SHAPE(2, 5, 3));
    tg_tensor *s = tg_test_rand(2, -1, 1, TG_SHAPE(2, 2));
    tg_tape *tape = tg_tape_new();
    tg_attention_output out = tg_additive_attention_forward(att, tape, enc, NULL, s, NULL);
    const tg_real *Wa = att->W_a->weight->data, *ba = att->W_a->bias->data;
    const tg_real *Ua = att->U_a->weight->data, *v = att->v->weight->data;
    for (int n = 0; n < 2; n++) {
        double e[5], total = 0, context[3] = {0};
        for (int t = 0; t < 5; t++) {
            e[t] = 0;
            for (int a = 0; a < 4; a++) {
                double pre = ba[a];
                for (int j = 0; j < 3; j++) pre += Wa[a * 3 + j] * enc->data[(n * 5 + t) * 3 + j];
                for (int j = 0; j < 2; j++) pre += Ua[a * 2 + j] * s->data[n * 2 + j];
                e[t] += v[a] * tanh(pre);
            }
            total += exp(e[t]);
        }
        for (int t = 0; t < 5; t++) {
            const double alpha = exp(e[t]) / total;
            assert_true(fabs((double)out.weights->data[n * 5 + t] - alpha) < 1e-6);
            for (int j = 0; j < 3; j++) context[j] += alpha * enc->data[(n * 5 + t) * 3 + j];
        }
        for (int j = 0; j < 3; j++)
            assert_true(fabs((double)out.context->data[n * 3 + j] - context[j]) < 1e-6);
    }
    assert_string_equal(tg_module_params(&att->module)->names[3], "v.weight");
    tg_tape_free(tape);
    tg_tensor_free(enc), tg_tensor_free(s);
    tg_module_free(&att->module);
}

/* Luong dot-product attention (Keras Attention) against the formula, in double: with
 * key = value, and with a separate key (scores from the key, context from the value). */
static void test_dot_attention_values(void **state) {
    (void)state;
    enum { N = 2, TQ = 3, TV = 4, D = 5 };
    tg_tensor *q = tg_test_rand(11, -1, 1, TG_SHAPE(N, TQ, D));
    tg_tensor *v = tg_test_rand(12, -1, 1, TG_SHAPE(N, TV, D));
    tg_tensor *k = tg_test_rand(13, -1, 1, TG_SHAPE(N, TV, D));
    for (int with_key = 0; with_key < 2; with_key++) {
        tg_tape *tape = tg_tape_new();
        const tg_tensor *key = with_key ? k : v;
        tg_attention_output out = tg_dot_attention(tape, q, v, with_key ? k : NULL);
        assert_int_equal(out.weights->ndim, 3), assert_int_equal(out.weights->shape[2], TV);
        assert_int_equal(out.context->ndim, 3), assert_int_equal(out.context->shape[1], TQ);
        for (int n = 0; n < N; n++)
            for (int i = 0; i < TQ; i++) {
                double e[TV], total = 0, context[D] = {0};
                for (int t = 0; t < TV; t++) {
                    e[t] = 0;
                    for (int j = 0; j < D; j++)
                        e[t] += (double)q->data[(n * TQ + i) * D + j] *
                                (double)key->data[(n * TV + t) * D + j];
                    total += exp(e[t]);
                }
                for (int t = 0; t < TV; t++) {
                    const double alpha = exp(e[t]) / total;
                    assert_true(fabs((double)out.weights->data[(n * TQ + i) * TV + t] - alpha) <
                                1e-6);
                    for (int j = 0; j < D; j++)
                        context[j] += alpha * (double)v->data[(n * TV + t) * D + j];
                }
                for (int j = 0; j < D; j++)
                    assert_true(fabs((double)out.context->data[(n * TQ + i) * D + j] - context[j]) <
                                1e-6);
            }
        tg_tape_free(tape);
    }
    tg_tensor_free(q), tg_tensor_free(v), tg_tensor_free(k);
}

/* Dropout on the attention weights (one head, so the returned average is the head's
 * weights): in training each weight is 0 or 1/(1-p) times the eval weight, the same seed
 * gives the same masks, and eval mode is the module without dropout. */
static void test_mha_dropout(void **state) {
    (void)state;
    tg_manual_seed(21);
    tg_mha *m = tg_mha_new(4, 1, (tg_real)0.5, true, false);
    tg_tensor *x = tg_test_rand(1, -1, 1, TG_SHAPE(3, 2, 4)); /* (L, N, E), self-attention */
    tg_tape *eval = tg_tape_new(), *a = tg_tape_new(), *b = tg_tape_new();
    tg_module_eval(&m->module);
    tg_mha_output e = tg_mha_forward(m, eval, x, x, x, NULL, true);
    tg_module_train(&m->module, true);
    tg_manual_seed(5);
    tg_mha_output ta = tg_mha_forward(m, a, x, x, x, NULL, true);
    tg_manual_seed(5);
    tg_mha_output tb = tg_mha_forward(m, b, x, x, x, NULL, true);
    assert_memory_equal(ta.weights->data, tb.weights->data, 18 * sizeof(tg_real));
    assert_memory_equal(ta.output->data, tb.output->data, 24 * sizeof(tg_real));
    int zeros = 0;
    for (int i = 0; i < 18; i++) {
        const tg_real w = ta.weights->data[i];
        if (w == 0)
            zeros++;
        else
            assert_true(fabs((double)w - 2 * (double)e.weights->data[i]) < 1e-6);
    }
    assert_true(zeros > 0 && zeros < 18);
    m->dropout = 0; /* eval mode = no dropout at all */
    tg_tape *none = tg_tape_new();
    tg_mha_output n = tg_mha_forward(m, none, x, x, x, NULL, true);
    assert_memory_equal(n.output->data, e.output->data, 24 * sizeof(tg_real));
    assert_memory_equal(n.weights->data, e.weights->data, 18 * sizeof(tg_real));
    tg_tape_free(eval), tg_tape_free(a), tg_tape_free(b), tg_tape_free(none);
    tg_tensor_free(x);
    tg_module_free(&m->module);
}

/* ---- gradchecks (float64) ---- */

/* A gradcheck input: uniform in [-1, 1) from `seed`, requiring grad. */
static tg_tensor *leaf(uint64_t seed, int ndim, const int64_t *shape) {
    return tg_tensor_requires_grad(tg_test_rand(seed, -1, 1, ndim, shape), true);
}

typedef struct {
    tg_mha *mha;
    tg_mha_masks masks;
} mha_ctx;

static tg_tensor *mha_fn(tg_tape *t, tg_tensor *const *in, void *ctx) {
    mha_ctx *c = ctx;
    tg_mha_output o = tg_mha_forward(c->mha, t, in[0], in[1], in[1], &c->masks, true);
    return tg_add(t, tg_sum(t, tg_mul(t, o.output, o.output)),
                  tg_sum(t, tg_mul(t, o.weights, o.weights)));
}

/* The same with dropout on the weights: the masks drawn from a fixed seed every time. */
static tg_tensor *mha_dropout_fn(tg_tape *t, tg_tensor *const *in, void *ctx) {
    tg_manual_seed(5);
    return mha_fn(t, in, ctx);
}

static tg_tensor *encoder_fn(tg_tape *t, tg_tensor *const *in, void *ctx) {
    return tg_encoder_layer_forward(ctx, t, in[0], NULL);
}

typedef struct {
    tg_decoder_layer *layer;
    tg_mha_masks tgt;
} decoder_ctx;

static tg_tensor *decoder_fn(tg_tape *t, tg_tensor *const *in, void *ctx) {
    decoder_ctx *c = ctx;
    return tg_decoder_layer_forward(c->layer, t, in[0], in[1], &c->tgt, NULL);
}

static tg_tensor *additive_fn(tg_tape *t, tg_tensor *const *in, void *ctx) {
    tg_attention_output o = tg_additive_attention_forward(ctx, t, in[0], NULL, in[1], NULL);
    return tg_add(t, tg_sum(t, tg_mul(t, o.context, o.context)),
                  tg_sum(t, tg_mul(t, o.weights, o.weights)));
}

static tg_tensor *dot_fn(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    tg_attention_output o = tg_dot_attention(t, in[0], in[1], NULL);
    return tg_sum(t, tg_mul(t, o.context, o.context));
}

static void test_gradchecks(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_manual_seed(11);
    tg_tensor *x = leaf(1, TG_SHAPE(3, 2, 4));
    tg_tensor *mem = leaf(2, TG_SHAPE(4, 2, 4));
    tg_tensor *causal = tg_square_subsequent_mask(3);
    tg_tensor *kpm = tg_tensor_from_array(TG_SHAPE(2, 4), (tg_real[]){0, 0, 0, 1, 0, 1, 0, 0});
    /* MHA with a float (3, 4) mask that hides some later keys, and a bool padding mask */
    tg_tensor *mask34 = tg_tensor_zeros(TG_SHAPE(3, 4));
    for (int i = 0; i < 3; i++)
        for (int j = i + 2; j < 4; j++) mask34->data[i * 4 + j] = -INFINITY;
    mha_ctx mc = {
        .mha = tg_mha_new(4, 2, 0, true, false),
        .masks = {.attn_mask = mask34, .key_padding_mask = kpm, .key_padding_mask_is_bool = true}};
    tg_test_gradcheck_params(NULL, mha_fn, &mc, (tg_tensor *[]){x, mem}, 2,
                             tg_module_params(&mc.mha->module));
    mha_ctx md = {.mha = tg_mha_new(4, 2, (tg_real)0.3, true, false)};
    tg_test_gradcheck_params("MHA dropout 0.3", mha_dropout_fn, &md, (tg_tensor *[]){x, mem}, 2,
                             tg_module_params(&md.mha->module));
    tg_module_free(&md.mha->module);

    tg_transformer_options o = tg_transformer_defaults(4, 2);
    o.dim_feedforward = 6, o.dropout = 0, o.activation = TG_ACTIVATION_GELU;
    for (int norm_first = 0; norm_first < 2; norm_first++) {
        o.norm_first = norm_first;
        tg_encoder_layer *enc = tg_encoder_layer_new(&o);
        tg_test_gradcheck_params(NULL, encoder_fn, enc, (tg_tensor *[]){x}, 1,
                                 tg_module_params(&enc->module));
        tg_module_free(&enc->module);
        decoder_ctx dc = {.layer = tg_decoder_layer_new(&o), .tgt = {.attn_mask = causal}};
        tg_test_gradcheck_params(NULL, decoder_fn, &dc, (tg_tensor *[]){x, mem}, 2,
                                 tg_module_params(&dc.layer->module));
        tg_module_free(&dc.layer->module);
    }

    tg_additive_attention *att = tg_additive_attention_new(3, 2, 4);
    tg_tensor *enc_states = leaf(3, TG_SHAPE(2, 5, 3));
    tg_tensor *s = leaf(4, TG_SHAPE(2, 2));
    tg_test_gradcheck_params(NULL, additive_fn, att, (tg_tensor *[]){enc_states, s}, 2,
                             tg_module_params(&att->module));
    tg_tensor *query = leaf(5, TG_SHAPE(2, 3, 4));
    tg_tensor *value = leaf(6, TG_SHAPE(2, 5, 4));
    tg_test_gradcheck_params(NULL, dot_fn, NULL, (tg_tensor *[]){query, value}, 2, NULL);

    tg_module_free(&att->module);
    tg_module_free(&mc.mha->module);
    tg_tensor_free(x), tg_tensor_free(mem), tg_tensor_free(causal), tg_tensor_free(kpm);
    tg_tensor_free(mask34), tg_tensor_free(enc_states), tg_tensor_free(s);
    tg_tensor_free(query), tg_tensor_free(value);
}

/* The stacks and the full model, inputs and every parameter (d_model 4, 2 heads, ff 6, GELU
 * so that no kink is crossed, dropout 0). Every parameter of the stacks is perturbed so that
 * the deep-copied layers differ and the final norms are not the identity. */
typedef struct {
    void *model;
    tg_mha_masks src, tgt, mem;
} stack_ctx;

static tg_tensor *encoder_stack_fn(tg_tape *t, tg_tensor *const *in, void *ctx) {
    stack_ctx *c = ctx;
    return tg_transformer_encoder_forward(c->model, t, in[0], &c->src);
}

static tg_tensor *decoder_stack_fn(tg_tape *t, tg_tensor *const *in, void *ctx) {
    stack_ctx *c = ctx;
    return tg_transformer_decoder_forward(c->model, t, in[0], in[1], &c->tgt, &c->mem);
}

static tg_tensor *transformer_fn(tg_tape *t, tg_tensor *const *in, void *ctx) {
    stack_ctx *c = ctx;
    return tg_transformer_forward(c->model, t, in[0], in[1], &c->src, &c->tgt, &c->mem);
}

static void perturb(const tg_params *ps, uint64_t seed) {
    for (size_t i = 0; i < ps->count; i++) {
        tg_tensor *p = ps->tensors[i];
        tg_tensor *d = tg_test_rand(seed + i, (tg_real)-0.2, (tg_real)0.2, p->ndim, p->shape);
        for (int64_t j = 0; j < p->numel; j++) p->data[j] += d->data[j];
        tg_tensor_free(d);
    }
}

static void test_stack_gradchecks(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_tensor *causal = tg_square_subsequent_mask(3);
    tg_tensor *kpm = tg_tensor_from_array(TG_SHAPE(2, 4), (tg_real[]){0, 0, 0, 1, 0, 1, 0, 0});
    /* (L, N, E) and (S, N, E), and batch first */
    tg_tensor *tgt = leaf(21, TG_SHAPE(3, 2, 4)), *src = leaf(22, TG_SHAPE(4, 2, 4));
    tg_tensor *tgt_bf = leaf(23, TG_SHAPE(2, 3, 4)), *src_bf = leaf(24, TG_SHAPE(2, 4, 4));
    tg_manual_seed(12);
    const tg_mha_masks pad = {.key_padding_mask = kpm, .key_padding_mask_is_bool = true};
    tg_transformer_options o = tg_transformer_defaults(4, 2);
    o.dim_feedforward = 6, o.dropout = 0, o.activation = TG_ACTIVATION_GELU;

    tg_transformer_encoder *enc = tg_transformer_encoder_new(&o, 2, true);
    perturb(tg_module_params(&enc->module), 100);
    stack_ctx ec = {.model = enc, .src = pad};
    tg_test_gradcheck_params("encoder stack, post-norm, final norm, key padding", encoder_stack_fn,
                             &ec, (tg_tensor *[]){src}, 1, tg_module_params(&enc->module));
    tg_module_free(&enc->module);

    o.norm_first = true;
    tg_transformer_decoder *dec = tg_transformer_decoder_new(&o, 2, true);
    perturb(tg_module_params(&dec->module), 200);
    stack_ctx dc = {.model = dec, .tgt = {.attn_mask = causal}, .mem = pad};
    tg_test_gradcheck_params("decoder stack, pre-norm, final norm, causal, memory padding",
                             decoder_stack_fn, &dc, (tg_tensor *[]){tgt, src}, 2,
                             tg_module_params(&dec->module));
    tg_module_free(&dec->module);

    o.norm_first = false;
    tg_transformer *tr = tg_transformer_new(&o, 2, 2);
    stack_ctx tc = {.model = tr, .src = pad, .tgt = {.attn_mask = causal}, .mem = pad};
    tg_test_gradcheck_params("transformer 2+2, post-norm, all masks", transformer_fn, &tc,
                             (tg_tensor *[]){src, tgt}, 2, tg_module_params(&tr->module));
    tg_module_free(&tr->module);

    o.norm_first = true, o.batch_first = true;
    tr = tg_transformer_new(&o, 1, 2);
    stack_ctx tb = {.model = tr, .tgt = {.attn_mask = causal}};
    tg_test_gradcheck_params("transformer 1+2, pre-norm, batch first, causal", transformer_fn, &tb,
                             (tg_tensor *[]){src_bf, tgt_bf}, 2, tg_module_params(&tr->module));
    tg_module_free(&tr->module);

    tg_tensor_free(tgt), tg_tensor_free(src), tg_tensor_free(tgt_bf), tg_tensor_free(src_bf);
    tg_tensor_free(causal), tg_tensor_free(kpm);
}

/* ---- MultiheadAttention's options: forward values and gradchecks ---- */

/* A (len, N, w) sequence, or (N, len, w) batch first, uniform in [-1, 1) from seed. */
static tg_tensor *sequence(uint64_t seed, bool batch_first, int64_t N, int64_t len, int64_t w) {
    const int64_t shape[3] = {batch_first ? N : len, batch_first ? len : N, w};
    return tg_test_rand(seed, -1, 1, 3, shape);
}

/* Row of position p of batch n in a (len, N, w) tensor, or (N, len, w) batch first. */
static int64_t row_of(bool batch_first, int64_t N, int64_t len, int64_t p, int64_t n) {
    return batch_first ? n * len + p : p * N + n;
}

/* y = W x + b for block 0 (q), 1 (k) or 2 (v) of the module's projections, x of `width`. */
static void reference_project(const tg_mha *m, int block, const tg_real *x, int64_t width,
                              double *y) {
    const int64_t E = m->embed_dim;
    const tg_tensor *sep[3] = {m->q_proj_weight, m->k_proj_weight, m->v_proj_weight};
    const tg_real *W =
        m->in_proj_weight ? m->in_proj_weight->data + block * E * E : sep[block]->data;
    for (int64_t i = 0; i < E; i++) {
        y[i] = m->in_proj_bias ? (double)m->in_proj_bias->data[block * E + i] : 0;
        for (int64_t j = 0; j < width; j++) y[i] += (double)W[i * width + j] * (double)x[j];
    }
}

/* MultiheadAttention from its definition, in double, for a float attn_mask (L, S) and a bool
 * key_padding_mask (N, S) (either NULL). For batch n, head j, query l:
 *   q = W_q x_l + b_q;  keys k_s = W_k key_s + b_k (s < S), then bias_k (add_bias_kv), then 0
 *   (add_zero_attn), and the values likewise;
 *   P_s = softmax_s(q_j·k_sj/√d + mask(l, s)), the appended columns unmasked;
 *   o_j = Σ_s P_s v_sj;  out_l = W_o o + b_o.
 * Writes out (the output's layout) and weights (N, heads, L, S'). */
static void mha_reference(const tg_mha *m, const tg_tensor *query, const tg_tensor *key,
                          const tg_tensor *value, const tg_tensor *am, const tg_tensor *kpm,
                          double *out, double *weights) {
    const bool bf = m->batch_first;
    const int64_t E = m->embed_dim, h = m->num_heads, d = m->head_dim;
    const int64_t N = query->shape[bf ? 0 : 1], L = query->shape[bf ? 1 : 0],
                  S = key->shape[bf ? 1 : 0];
    const int64_t S2 = S + (m->bias_k ? 1 : 0) + (m->add_zero_attn ? 1 : 0);
    double *k = calloc((size_t)(S2 * E), sizeof *k), *v = calloc((size_t)(S2 * E), sizeof *v);
    double q[64], o[64], sc[64];
    assert_true(E <= 64 && S2 <= 64);
    for (int64_t n = 0; n < N; n++) {
        for (int64_t s = 0; s < S; s++) {
            reference_project(m, 1, key->data + row_of(bf, N, S, s, n) * m->kdim, m->kdim,
                              k + s * E);
            reference_project(m, 2, value->data + row_of(bf, N, S, s, n) * m->vdim, m->vdim,
                              v + s * E);
        }
        for (int64_t i = 0; i < E; i++) { /* bias_k, bias_v at S; the zero row stays 0 */
            k[S * E + i] = m->bias_k ? (double)m->bias_k->data[i] : 0;
            v[S * E + i] = m->bias_v ? (double)m->bias_v->data[i] : 0;
        }
        for (int64_t l = 0; l < L; l++) {
            reference_project(m, 0, query->data + row_of(bf, N, L, l, n) * E, E, q);
            for (int64_t j = 0; j < h; j++) {
                double mx = -INFINITY, total = 0;
                for (int64_t s = 0; s < S2; s++) {
                    double dot = 0;
                    for (int64_t c = 0; c < d; c++) dot += q[j * d + c] * k[s * E + j * d + c];
                    sc[s] = dot / sqrt((double)d);
                    if (s < S && am) sc[s] += (double)am->data[l * S + s];
                    if (s < S && kpm && kpm->data[n * S + s] != 0) sc[s] = -INFINITY;
                    mx = fmax(mx, sc[s]);
                }
                for (int64_t s = 0; s < S2; s++) total += sc[s] = exp(sc[s] - mx);
                for (int64_t c = 0; c < d; c++) o[j * d + c] = 0;
                for (int64_t s = 0; s < S2; s++) {
                    const double p = sc[s] / total;
                    weights[((n * h + j) * L + l) * S2 + s] = p;
                    for (int64_t c = 0; c < d; c++) o[j * d + c] += p * v[s * E + j * d + c];
                }
            }
            double *y = out + row_of(bf, N, L, l, n) * E;
            for (int64_t i = 0; i < E; i++) {
                y[i] = m->out_proj->bias ? (double)m->out_proj->bias->data[i] : 0;
                for (int64_t c = 0; c < E; c++)
                    y[i] += (double)m->out_proj->weight->data[i * E + c] * o[c];
            }
        }
    }
    free(k), free(v);
}

/* Every option at once (kdim 3, vdim 5, bias_k/bias_v, the zero key), seq-first and batch
 * first, against mha_reference: per-head and averaged weights, and the fused path (no
 * weights) gives the same output. Row 0 of batch 0 has every real key masked (the attn_mask
 * and the padding together): its weights then sit on the appended keys, finite. In training
 * with dropout, both paths draw the same masks from the same generator state. */
static void test_mha_options_values(void **state) {
    (void)state;
    enum { E = 4, H = 2, L = 3, S = 4, N = 2, S2 = S + 2 };
    tg_tensor *am = tg_tensor_zeros(TG_SHAPE(L, S));
    am->data[0 * S + 2] = am->data[0 * S + 3] = am->data[1 * S + 3] = -INFINITY;
    am->data[2 * S + 1] = (tg_real)0.5;
    tg_tensor *kpm = tg_tensor_from_array(TG_SHAPE(N, S), (tg_real[]){1, 1, 0, 0, 0, 0, 0, 1});
    const tg_mha_masks masks = {
        .attn_mask = am, .key_padding_mask = kpm, .key_padding_mask_is_bool = true};
    for (int bf = 0; bf < 2; bf++) {
        tg_mha_options o = tg_mha_defaults(E, H);
        o.kdim = 3, o.vdim = 5, o.add_bias_kv = o.add_zero_attn = true, o.batch_first = bf;
        o.dropout = (tg_real)0.4;
        tg_manual_seed(30);
        tg_mha *m = tg_mha_new_with(&o);
        perturb(tg_module_params(&m->module), 300);
        tg_module_eval(&m->module);
        tg_tensor *q = sequence(31, bf, N, L, E);
        tg_tensor *k = sequence(32, bf, N, S, 3);
        tg_tensor *v = sequence(33, bf, N, S, 5);
        double want_out[L * N * E], want_w[N * H * L * S2], want_avg[N * L * S2];
        mha_reference(m, q, k, v, am, kpm, want_out, want_w);
        for (int n = 0; n < N; n++)
            for (int i = 0; i < L * S2; i++)
                want_avg[n * L * S2 + i] =
                    (want_w[(n * H) * L * S2 + i] + want_w[(n * H + 1) * L * S2 + i]) / H;
#ifdef TG_DOUBLE
        const double tol = 1e-12;
#else
        const double tol = 1e-5;
#endif

        tg_tape *tape = tg_tape_new();
        tg_mha_output heads = tg_mha_forward_with(m, tape, q, k, v, &masks, true, false);
        assert_int_equal(heads.weights->ndim, 4);
        assert_int_equal(heads.weights->shape[1], H), assert_int_equal(heads.weights->shape[3], S2);
        tg_test_assert_close_f64("output", heads.output->data, want_out, L * N * E, tol, tol);
        tg_test_assert_close_f64("per-head weights", heads.weights->data, want_w, N * H * L * S2,
                                 tol, tol);
        tg_mha_output avg = tg_mha_forward(m, tape, q, k, v, &masks, true);
        assert_int_equal(avg.weights->ndim, 3), assert_int_equal(avg.weights->shape[2], S2);
        tg_test_assert_close_f64("averaged weights", avg.weights->data, want_avg, N * L * S2, tol,
                                 tol);
        tg_mha_output fused = tg_mha_forward(m, tape, q, k, v, &masks, false);
        assert_null(fused.weights);
        tg_test_assert_close_f64("fused output", fused.output->data, want_out, L * N * E, tol, tol);

        tg_module_train(&m->module, true);
        tg_manual_seed(8);
        tg_mha_output a = tg_mha_forward_with(m, tape, q, k, v, &masks, true, false);
        tg_manual_seed(8);
        tg_mha_output b = tg_mha_forward(m, tape, q, k, v, &masks, false);
        tg_test_assert_close("dropout: composite and fused", a.output->data, b.output->data,
                             L * N * E, tol, tol);
        int zeros = 0; /* dropout hit some weights, and only as 0 or 1/(1-p) times the eval ones */
        for (int i = 0; i < N * H * L * S2; i++) {
            const double w = (double)a.weights->data[i];
            if (w == 0 && want_w[i] != 0)
                zeros++;
            else
                assert_true(fabs(w - want_w[i] / (1 - 0.4)) <= tol * 10);
        }
        assert_true(zeros > 0);
        tg_tape_free(tape);
        tg_tensor_free(q), tg_tensor_free(k), tg_tensor_free(v);
        tg_module_free(&m->module);
    }
    tg_tensor_free(am), tg_tensor_free(kpm);
}

typedef struct {
    tg_mha *mha;
    tg_mha_masks masks;
    bool need_weights, average;
} mha_options_ctx;

/* Σ out² (+ Σ weights²) with query, key and value distinct inputs; a fixed dropout seed. */
static tg_tensor *mha_options_fn(tg_tape *t, tg_tensor *const *in, void *ctx) {
    mha_options_ctx *c = ctx;
    tg_manual_seed(5);
    tg_mha_output o =
        tg_mha_forward_with(c->mha, t, in[0], in[1], in[2], &c->masks, c->need_weights, c->average);
    tg_tensor *loss = tg_sum(t, tg_mul(t, o.output, o.output));
    if (o.weights) loss = tg_add(t, loss, tg_sum(t, tg_mul(t, o.weights, o.weights)));
    return loss;
}

/* Gradchecks of each option, and of all of them together, with respect to query, key, value
 * and every parameter (perturbed, so that the zero-initialised biases are not zero). E 4,
 * 2 heads, L 3, S 4, N 2. */
static void test_mha_options_gradchecks(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_tensor *mask34 = tg_tensor_zeros(TG_SHAPE(3, 4)); /* float, hides some later keys */
    for (int i = 0; i < 3; i++)
        for (int j = i + 2; j < 4; j++) mask34->data[i * 4 + j] = -INFINITY;
    tg_tensor *bool34 =
        tg_tensor_from_array(TG_SHAPE(3, 4), (tg_real[]){0, 1, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0});
    tg_tensor *per_head = tg_test_rand(40, -1, 1, TG_SHAPE(4, 3, 4)); /* (N·heads, L, S) */
    tg_tensor *kpm = tg_tensor_from_array(TG_SHAPE(2, 4), (tg_real[]){0, 0, 0, 1, 0, 1, 0, 0});
    struct {
        const char *what;
        int64_t kdim, vdim;
        bool bias_kv, zero_attn, batch_first, need_weights, average;
        tg_real dropout;
        tg_mha_masks masks;
    } cases[] = {
        {"MHA kdim 3, vdim 5, float mask, key padding",
         3,
         5,
         false,
         false,
         false,
         true,
         true,
         0,
         {.attn_mask = mask34, .key_padding_mask = kpm, .key_padding_mask_is_bool = true}},
        {"MHA per-head weights, key padding",
         0,
         0,
         false,
         false,
         false,
         true,
         false,
         0,
         {.key_padding_mask = kpm, .key_padding_mask_is_bool = true}},
        {"MHA add_bias_kv, float mask, key padding",
         0,
         0,
         true,
         false,
         false,
         true,
         true,
         0,
         {.attn_mask = mask34, .key_padding_mask = kpm, .key_padding_mask_is_bool = true}},
        {"MHA add_zero_attn, bool masks",
         0,
         0,
         false,
         true,
         false,
         true,
         true,
         0,
         {.attn_mask = bool34,
          .attn_mask_is_bool = true,
          .key_padding_mask = kpm,
          .key_padding_mask_is_bool = true}},
        {"MHA all options, batch first, dropout 0.3, per-head weights",
         3,
         5,
         true,
         true,
         true,
         true,
         false,
         (tg_real)0.3,
         {.attn_mask = per_head, .key_padding_mask = kpm, .key_padding_mask_is_bool = true}},
        {"MHA all options, batch first, dropout 0.3, fused (no weights)",
         3,
         5,
         true,
         true,
         true,
         false,
         true,
         (tg_real)0.3,
         {.attn_mask = per_head, .key_padding_mask = kpm, .key_padding_mask_is_bool = true}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tg_mha_options o = tg_mha_defaults(4, 2);
        o.kdim = cases[i].kdim, o.vdim = cases[i].vdim, o.add_bias_kv = cases[i].bias_kv;
        o.add_zero_attn = cases[i].zero_attn, o.batch_first = cases[i].batch_first;
        o.dropout = cases[i].dropout;
        tg_manual_seed(13);
        mha_options_ctx c = {tg_mha_new_with(&o), cases[i].masks, cases[i].need_weights,
                             cases[i].average};
        perturb(tg_module_params(&c.mha->module), 400 + 10 * i);
        const int64_t kd = c.mha->kdim, vd = c.mha->vdim;
        const bool bf = o.batch_first;
        tg_tensor *q = tg_tensor_requires_grad(sequence(41, bf, 2, 3, 4), true);
        tg_tensor *k = tg_tensor_requires_grad(sequence(42, bf, 2, 4, kd), true);
        tg_tensor *v = tg_tensor_requires_grad(sequence(43, bf, 2, 4, vd), true);
        tg_test_gradcheck_params(cases[i].what, mha_options_fn, &c, (tg_tensor *[]){q, k, v}, 3,
                                 tg_module_params(&c.mha->module));
        tg_tensor_free(q), tg_tensor_free(k), tg_tensor_free(v);
        tg_module_free(&c.mha->module);
    }
    tg_tensor_free(mask34), tg_tensor_free(bool34), tg_tensor_free(per_head), tg_tensor_free(kpm);
}

static void test_errors(void **state) {
    (void)state;
    TG_EXPECT_FAIL(tg_mha_new(8, 3, 0, true, false), "tg_mha_new", "multiple of num_heads");
    tg_mha *m = tg_mha_new(8, 2, 0, true, false);
    tg_tensor *q = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(3, 2, 6)), "q");
    tg_tensor *k = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(4, 2, 8)), "k");
    tg_tensor *bad_mask = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(3, 3)), "mask");
    tg_tape *tape = tg_tape_new();
    TG_EXPECT_FAIL(tg_mha_forward(m, tape, q, k, k, NULL, false), "tg_mha_forward",
                   "query (3, 2, 6) 'q'", "embed_dim 8");
    tg_tensor *q8 = tg_tensor_zeros(TG_SHAPE(3, 2, 8));
    const tg_mha_masks masks = {.attn_mask = bad_mask};
    TG_EXPECT_FAIL(tg_mha_forward(m, tape, q8, k, k, &masks, false), "attn_mask (3, 3) 'mask'",
                   "(3, 4)");
    tg_tape_free(tape);
    tg_tensor_free(q), tg_tensor_free(k), tg_tensor_free(q8), tg_tensor_free(bad_mask);
    tg_module_free(&m->module);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mha_init_matches_torch),
        cmocka_unit_test(test_mha_parity),
        cmocka_unit_test(test_mha_options_repr_and_checkpoint),
        cmocka_unit_test(test_encoder_layer_parity),
        cmocka_unit_test(test_decoder_layer_parity),
        cmocka_unit_test(test_stacks_and_transformer_parity),
        cmocka_unit_test(test_stack_layers_start_identical),
        cmocka_unit_test(test_causal_mask_and_positional_encoding),
        cmocka_unit_test(test_additive_attention_values),
        cmocka_unit_test(test_dot_attention_values),
        cmocka_unit_test(test_mha_dropout),
        cmocka_unit_test(test_gradchecks),
        cmocka_unit_test(test_stack_gradchecks),
        cmocka_unit_test(test_mha_options_values),
        cmocka_unit_test(test_mha_options_gradchecks),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
