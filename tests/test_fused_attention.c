/* The fused attention ops and the counter-based dropout masks:
 *  - MultiheadAttention's fused core (need_weights = false) against the composite path
 *    (need_weights = true), outputs and every gradient, masks and dropout included;
 *  - forward values of the fused core computed by hand, and float64 gradchecks;
 *  - the op tg_mha_attention itself: packed and separate inputs at column offsets, against
 *    plain loops, gradchecks and error messages;
 *  - tg_additive_attention_core against the same attention built from single ops;
 *  - dropout masks: identical at 1 and 2 threads, independent between calls. */
#include "harness.h"

#include <tapegrad/kernels.h>

#include <math.h>
#include <string.h>

#ifdef TG_DOUBLE
#define TIGHT 1e-12
#else
#define TIGHT 2e-6
#endif

static tg_tensor *leaf(uint64_t seed, int ndim, const int64_t *shape) {
    return tg_tensor_requires_grad(tg_test_rand(seed, -1, 1, ndim, shape), true);
}

static void zero_grads(tg_tensor *const *ts, int n, const tg_params *p) {
    for (int i = 0; i < n; i++) tg_tensor_zero_grad(ts[i]);
    for (size_t i = 0; i < p->count; i++) tg_tensor_zero_grad(p->tensors[i]);
}

/* Copies of the gradients of ts and of the parameters, in that order. */
static tg_real *save_grads(tg_tensor *const *ts, int n, const tg_params *p, int64_t *count) {
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += ts[i]->numel;
    for (size_t i = 0; i < p->count; i++) total += p->tensors[i]->numel;
    tg_real *g = calloc((size_t)total, sizeof *g), *at = g;
    for (int i = 0; i < n; i++, at += ts[i - 1]->numel)
        if (ts[i]->grad) memcpy(at, ts[i]->grad, (size_t)ts[i]->numel * sizeof *g);
    for (size_t i = 0; i < p->count; i++, at += p->tensors[i - 1]->numel)
        if (p->tensors[i]->grad)
            memcpy(at, p->tensors[i]->grad, (size_t)p->tensors[i]->numel * sizeof *g);
    *count = total;
    return g;
}

/* Output and gradients of loss = Σ out ⊙ w for one path (need_weights selects it); the
 * default generator is reseeded first, so dropout draws the same key on both paths. */
static tg_real *run_mha(tg_mha *m, tg_tensor *q, tg_tensor *k, tg_tensor *v,
                        const tg_mha_masks *masks, bool need_weights, tg_tensor *w,
                        int64_t *count) {
    tg_tensor *ins[3] = {q, k, v};
    zero_grads(ins, 3, tg_module_params(&m->module));
    tg_manual_seed(99);
    tg_tape *tape = tg_tape_new();
    tg_mha_output o = tg_mha_forward(m, tape, q, k, v, masks, need_weights);
    tg_tape_backward(tape, tg_sum(tape, tg_mul(tape, o.output, w)));
    int64_t n;
    tg_real *g = save_grads(ins, 3, tg_module_params(&m->module), &n);
    tg_real *all = malloc((size_t)(n + o.output->numel) * sizeof *all);
    memcpy(all, o.output->data, (size_t)o.output->numel * sizeof *all);
    memcpy(all + o.output->numel, g, (size_t)n * sizeof *all);
    *count = n + o.output->numel;
    free(g);
    tg_tape_free(tape);
    return all;
}

static void compare_paths(const char *what, tg_mha *m, tg_tensor *q, tg_tensor *k, tg_tensor *v,
                          const tg_mha_masks *masks) {
    tg_tensor *w = tg_test_rand(77, -1, 1, TG_SHAPE(q->shape[0], q->shape[1], m->embed_dim));
    int64_t n1, n2;
    tg_real *fused = run_mha(m, q, k, v, masks, false, w, &n1);
    tg_real *composite = run_mha(m, q, k, v, masks, true, w, &n2);
    assert_int_equal(n1, n2);
    tg_test_assert_close(what, fused, composite, n1, TIGHT, TIGHT);
    free(fused), free(composite);
    tg_tensor_free(w);
}

static void test_fused_mha_matches_composite(void **state) {
    (void)state;
    tg_tensor *causal = tg_square_subsequent_mask(5);
    tg_tensor *kpm = tg_tensor_from_array(
        TG_SHAPE(3, 6), (tg_real[]){0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0});
    tg_tensor *per_head = tg_test_rand(5, -2, 0, TG_SHAPE(3 * 2, 5, 6));
    for (int bf = 0; bf < 2; bf++)
        for (int drop = 0; drop < 2; drop++) {
            tg_manual_seed(3);
            tg_mha *m = tg_mha_new(8, 2, drop ? (tg_real)0.25 : 0, true, bf);
            const int64_t xs[3] = {bf ? 3 : 5, bf ? 5 : 3, 8}, ms[3] = {bf ? 3 : 6, bf ? 6 : 3, 8};
            tg_tensor *x = leaf(1, 3, xs), *mem = leaf(2, 3, ms), *val = leaf(3, 3, ms);
            const tg_mha_masks self = {.attn_mask = causal};
            const tg_mha_masks cross = {
                .attn_mask = per_head, .key_padding_mask = kpm, .key_padding_mask_is_bool = true};
            compare_paths("self-attention, causal", m, x, x, x, &self);
            compare_paths("cross-attention, per-head mask and padding", m, x, mem, mem, &cross);
            compare_paths("separate key and value", m, x, mem, val, NULL);
            tg_tensor_free(x), tg_tensor_free(mem), tg_tensor_free(val);
            tg_module_free(&m->module);
        }
    tg_tensor_free(causal), tg_tensor_free(kpm), tg_tensor_free(per_head);
}

/* With one head and a causal mask, query 0 sees key 0 only: its output is
 * out_proj(W_v x_0 + b_v), whatever the other positions hold. */
static void test_fused_mha_forward_values(void **state) {
    (void)state;
    tg_manual_seed(4);
    tg_mha *m = tg_mha_new(4, 1, 0, true, false);
    for (int64_t i = 0; i < 12; i++) m->in_proj_bias->data[i] = (tg_real)(0.1 * (double)i);
    tg_tensor *x = tg_test_rand(6, -1, 1, TG_SHAPE(3, 1, 4));
    tg_tensor *causal = tg_square_subsequent_mask(3);
    tg_tape *tape = tg_tape_new();
    const tg_mha_masks masks = {.attn_mask = causal};
    tg_tensor *y = tg_mha_forward(m, tape, x, x, x, &masks, false).output;
    double vx[4], want[4];
    for (int i = 0; i < 4; i++) {
        vx[i] = (double)m->in_proj_bias->data[8 + i];
        for (int j = 0; j < 4; j++)
            vx[i] += (double)m->in_proj_weight->data[(8 + i) * 4 + j] * (double)x->data[j];
    }
    for (int i = 0; i < 4; i++) {
        want[i] = (double)m->out_proj->bias->data[i];
        for (int j = 0; j < 4; j++) want[i] += (double)m->out_proj->weight->data[i * 4 + j] * vx[j];
    }
    tg_test_assert_close_f64("query 0", y->data, want, 4, TG_TEST_ATOL, TG_TEST_RTOL);
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(causal);
    tg_module_free(&m->module);
}

typedef struct {
    tg_mha *m;
    tg_mha_masks masks;
    bool self;
} fused_ctx;

static tg_tensor *fused_fn(tg_tape *t, tg_tensor *const *in, void *ctx) {
    fused_ctx *c = ctx;
    tg_manual_seed(5); /* the same dropout key at every evaluation */
    tg_tensor *kv = c->self ? in[0] : in[1];
    tg_tensor *o = tg_mha_forward(c->m, t, in[0], kv, kv, &c->masks, false).output;
    return tg_sum(t, tg_mul(t, o, o));
}

static void test_fused_mha_gradcheck(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_manual_seed(12);
    tg_tensor *x = leaf(1, TG_SHAPE(2, 3, 4));
    tg_tensor *causal = tg_square_subsequent_mask(3);
    tg_tensor *kpm = tg_tensor_from_array(TG_SHAPE(2, 3), (tg_real[]){0, 0, 1, 0, 1, 0});
    fused_ctx self = {tg_mha_new(4, 2, (tg_real)0.3, true, true), {.attn_mask = causal}, true};
    tg_test_gradcheck_params("fused self-attention, dropout 0.3", fused_fn, &self,
                             (tg_tensor *[]){x}, 1, tg_module_params(&self.m->module));
    fused_ctx cross = {tg_mha_new(4, 2, 0, true, true),
                       {.key_padding_mask = kpm, .key_padding_mask_is_bool = true},
                       false};
    tg_tensor *xs = leaf(3, TG_SHAPE(2, 3, 4));
    tg_tensor *ms = leaf(4, TG_SHAPE(2, 3, 4));
    tg_test_gradcheck_params("fused cross-attention, padding", fused_fn, &cross,
                             (tg_tensor *[]){xs, ms}, 2, tg_module_params(&cross.m->module));
    tg_module_free(&self.m->module), tg_module_free(&cross.m->module);
    tg_tensor_free(x), tg_tensor_free(xs), tg_tensor_free(ms);
    tg_tensor_free(causal), tg_tensor_free(kpm);
}

/* ---- the op itself: tg_mha_attention on packed and on separate inputs ---- */

/* The op's output in double with plain loops: o[n, l, head j] = softmax_s(q·k/√d + masks) v,
 * positions at [l·N + n] seq-first, [n·L + l] batch-first, features from each offset. */
static void mha_attention_ref(const tg_tensor *q, const tg_tensor *k, const tg_tensor *v,
                              const tg_mha_layout *ly, const tg_mha_masks *masks, double *out) {
    const bool bf = ly->batch_first;
    const int64_t N = q->shape[bf ? 0 : 1], L = q->shape[bf ? 1 : 0], S = k->shape[bf ? 1 : 0];
    const int64_t h = ly->num_heads, d = ly->head_dim, E = h * d;
    const tg_tensor *am = masks ? masks->attn_mask : NULL;
    const tg_tensor *kpm = masks ? masks->key_padding_mask : NULL;
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < h; j++)
            for (int64_t l = 0; l < L; l++) {
                const int64_t ql = bf ? n * L + l : l * N + n;
                double sc[16], mx = -INFINITY, sum = 0;
                for (int64_t s = 0; s < S; s++) {
                    const int64_t ks = bf ? n * S + s : s * N + n;
                    double dot = 0;
                    for (int64_t c = 0; c < d; c++)
                        dot += (double)q->data[ql * q->shape[2] + ly->offsets[0] + j * d + c] *
                               (double)k->data[ks * k->shape[2] + ly->offsets[1] + j * d + c];
                    sc[s] = dot / sqrt((double)d);
                    if (am) sc[s] += (double)am->data[l * S + s];
                    if (kpm && masks->key_padding_mask_is_bool && kpm->data[n * S + s] != 0)
                        sc[s] = -INFINITY;
                    if (sc[s] > mx) mx = sc[s];
                }
                for (int64_t s = 0; s < S; s++) sum += sc[s] = exp(sc[s] - mx);
                for (int64_t c = 0; c < d; c++) {
                    double o = 0;
                    for (int64_t s = 0; s < S; s++) {
                        const int64_t vs = bf ? n * S + s : s * N + n;
                        o += sc[s] / sum *
                             (double)v->data[vs * v->shape[2] + ly->offsets[2] + j * d + c];
                    }
                    out[ql * E + j * d + c] = o;
                }
            }
}

typedef struct {
    tg_mha_layout layout;
    tg_mha_masks masks;
    bool packed; /* q, k and v are in[0] */
} op_ctx;

static tg_tensor *op_fn(tg_tape *t, tg_tensor *const *in, void *ctx) {
    const op_ctx *c = ctx;
    tg_tensor *k = c->packed ? in[0] : in[1], *v = c->packed ? in[0] : in[2];
    tg_tensor *o = tg_mha_attention(t, in[0], k, v, &c->layout, &c->masks, 0);
    return tg_sum(t, tg_mul(t, o, o));
}

static void test_mha_attention_op(void **state) {
    (void)state;
    /* packed self-attention, seq-first: (L 3, N 2, 3E) with E = 2 heads · 2, causal mask */
    tg_tensor *x = leaf(21, TG_SHAPE(3, 2, 12));
    tg_tensor *causal = tg_square_subsequent_mask(3);
    op_ctx packed = {{2, 2, {0, 4, 8}, false}, {.attn_mask = causal}, true};
    /* separate, batch-first, the heads' columns at offsets 1, 0, 2 of wider rows, padding */
    tg_tensor *q = leaf(22, TG_SHAPE(2, 3, 5)), *k = leaf(23, TG_SHAPE(2, 4, 4));
    tg_tensor *v = leaf(24, TG_SHAPE(2, 4, 6));
    tg_tensor *kpm = tg_tensor_from_array(TG_SHAPE(2, 4), (tg_real[]){0, 0, 1, 0, 1, 0, 0, 0});
    op_ctx sep = {{2, 2, {1, 0, 2}, true},
                  {.key_padding_mask = kpm, .key_padding_mask_is_bool = true},
                  false};
    tg_tape *tape = tg_tape_new();
    double want[2 * 3 * 4];
    tg_tensor *o = tg_mha_attention(tape, x, x, x, &packed.layout, &packed.masks, 0);
    mha_attention_ref(x, x, x, &packed.layout, &packed.masks, want);
    tg_test_assert_close_f64("packed", o->data, want, 24, TG_TEST_ATOL, TG_TEST_RTOL);
    o = tg_mha_attention(tape, q, k, v, &sep.layout, &sep.masks, 0);
    mha_attention_ref(q, k, v, &sep.layout, &sep.masks, want);
    tg_test_assert_close_f64("separate", o->data, want, 24, TG_TEST_ATOL, TG_TEST_RTOL);
    assert_string_equal(tg_tape_node(tape, tg_tape_node_count(tape) - 1)->op, "mha_attention");
    if (sizeof(tg_real) == sizeof(double)) { /* central differences need float64 */
        tg_test_gradcheck("mha_attention packed", op_fn, &packed, (tg_tensor *[]){x}, 1);
        tg_test_gradcheck("mha_attention separate", op_fn, &sep, (tg_tensor *[]){q, k, v}, 3);
    }
    /* errors name the op and what does not fit */
    tg_mha_layout bad = packed.layout;
    bad.offsets[2] = 9;
    TG_EXPECT_FAIL(tg_mha_attention(tape, x, x, x, &bad, NULL, 0), "tg_mha_attention", "(3, 2, 12)",
                   "4 features from offsets 0, 4, 9");
    TG_EXPECT_FAIL(tg_mha_attention(tape, q, k, v, &packed.layout, NULL, 0), "tg_mha_attention",
                   "agree on the batch");
    const tg_mha_masks wrong = {.attn_mask = causal};
    TG_EXPECT_FAIL(tg_mha_attention(tape, q, k, v, &sep.layout, &wrong, 0),
                   "tg_mha_attention: attn_mask (3, 3)", "must be (3, 4) or (4, 3, 4)");
    TG_EXPECT_FAIL(tg_mha_attention(tape, x, x, x, &packed.layout, NULL, (tg_real)1.5),
                   "tg_mha_attention", "dropout");
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(causal), tg_tensor_free(q), tg_tensor_free(k);
    tg_tensor_free(v), tg_tensor_free(kpm);
}

/* ---- additive attention: the fused core against single ops ---- */

static tg_attention_output additive_composite(tg_tape *t, tg_tensor *enc, tg_tensor *proj,
                                              tg_tensor *u, tg_tensor *v, const tg_tensor *mask) {
    const int64_t N = enc->shape[0], T = enc->shape[1], A = v->numel;
    tg_tensor *th = tg_tanh(t, tg_add(t, proj, tg_reshape(t, u, TG_SHAPE(N, 1, A))));
    tg_tensor *e =
        tg_reshape(t, tg_matmul(t, th, tg_reshape(t, v, TG_SHAPE(A, 1))), TG_SHAPE(N, T));
    if (mask) e = tg_masked_fill(t, e, mask, -INFINITY);
    tg_tensor *alpha = tg_softmax(t, e, -1);
    tg_tensor *c = tg_matmul(t, tg_reshape(t, alpha, TG_SHAPE(N, 1, T)), enc);
    return (tg_attention_output){tg_reshape(t, c, TG_SHAPE(N, enc->shape[2])), alpha};
}

static void test_additive_core_matches_ops(void **state) {
    (void)state;
    tg_tensor *enc = leaf(1, TG_SHAPE(3, 7, 5)), *proj = leaf(2, TG_SHAPE(3, 7, 6));
    tg_tensor *u = leaf(3, TG_SHAPE(3, 6)), *v = leaf(4, TG_SHAPE(1, 6));
    tg_tensor *mask = tg_tensor_zeros(TG_SHAPE(3, 7));
    mask->data[6] = mask->data[7 + 2] = 1;
    tg_tensor *gc = tg_test_rand(5, -1, 1, TG_SHAPE(3, 5)),
              *ga = tg_test_rand(6, -1, 1, TG_SHAPE(3, 7));
    tg_tensor *ins[4] = {enc, proj, u, v};
    const tg_params none = {0};
    for (int masked = 0; masked < 2; masked++) {
        tg_real *got[2];
        tg_real *out[2];
        int64_t n = 0;
        for (int path = 0; path < 2; path++) {
            zero_grads(ins, 4, &none);
            tg_tape *tape = tg_tape_new();
            const tg_tensor *mk = masked ? mask : NULL;
            tg_attention_output o = path ? additive_composite(tape, enc, proj, u, v, mk)
                                         : tg_additive_attention_core(tape, enc, proj, u, v, mk);
            out[path] = malloc(36 * sizeof(tg_real));
            memcpy(out[path], o.context->data, 15 * sizeof(tg_real));
            memcpy(out[path] + 15, o.weights->data, 21 * sizeof(tg_real));
            tg_tape_backward(tape, tg_add(tape, tg_sum(tape, tg_mul(tape, o.context, gc)),
                                          tg_sum(tape, tg_mul(tape, o.weights, ga))));
            got[path] = save_grads(ins, 4, &none, &n);
            tg_tape_free(tape);
        }
        tg_test_assert_close("additive forward", out[0], out[1], 36, TIGHT, TIGHT);
        tg_test_assert_close("additive gradients", got[0], got[1], n, TIGHT, TIGHT);
        if (masked) assert_true(out[0][15 + 6] == 0 && out[0][15 + 7 + 2] == 0);
        for (int p = 0; p < 2; p++) free(got[p]), free(out[p]);
    }
    tg_tensor_free(enc), tg_tensor_free(proj), tg_tensor_free(u), tg_tensor_free(v);
    tg_tensor_free(mask), tg_tensor_free(gc), tg_tensor_free(ga);
}

/* An attention width of two tiles of the kernels' th buffer (512 + 88) and enough rows to be
 * split between threads: the single ops' values and gradients (float64), and the same bits
 * at 1 and 2 threads (the backward computes th again and sums dv over rows in order). */
static void test_additive_core_wide_threads(void **state) {
    (void)state;
    enum { N = 16, T = 9, H = 5, A = 600 };
    tg_tensor *enc = leaf(11, TG_SHAPE(N, T, H)), *proj = leaf(12, TG_SHAPE(N, T, A));
    tg_tensor *u = leaf(13, TG_SHAPE(N, A)), *v = leaf(14, TG_SHAPE(A));
    tg_tensor *gc = tg_test_rand(15, -1, 1, TG_SHAPE(N, H)),
              *ga = tg_test_rand(16, -1, 1, TG_SHAPE(N, T));
    tg_tensor *ins[4] = {enc, proj, u, v};
    const tg_params none = {0};
    tg_real *got[3], *out[3];
    int64_t n = 0;
    for (int run = 0; run < 3; run++) { /* fused at 1 and 2 threads, then the single ops */
        tg_set_num_threads(run == 1 ? 2 : 1);
        zero_grads(ins, 4, &none);
        tg_tape *tape = tg_tape_new();
        tg_attention_output o = run < 2 ? tg_additive_attention_core(tape, enc, proj, u, v, NULL)
                                        : additive_composite(tape, enc, proj, u, v, NULL);
        out[run] = malloc((N * H + N * T) * sizeof(tg_real));
        memcpy(out[run], o.context->data, N * H * sizeof(tg_real));
        memcpy(out[run] + N * H, o.weights->data, N * T * sizeof(tg_real));
        tg_tape_backward(tape, tg_add(tape, tg_sum(tape, tg_mul(tape, o.context, gc)),
                                      tg_sum(tape, tg_mul(tape, o.weights, ga))));
        got[run] = save_grads(ins, 4, &none, &n);
        tg_tape_free(tape);
    }
    tg_set_num_threads(0);
    assert_memory_equal(out[0], out[1], (N * H + N * T) * sizeof(tg_real));
    assert_memory_equal(got[0], got[1], (size_t)n * sizeof(tg_real));
    /* in float32 dv's 144-term sums round differently from the matmul's (1e-5 apart): the
     * values are compared in float64, where the paths agree to 1e-12 */
    if (sizeof(tg_real) == sizeof(double)) {
        tg_test_assert_close("additive forward, wide", out[0], out[2], N * H + N * T, TIGHT, TIGHT);
        tg_test_assert_close("additive gradients, wide", got[0], got[2], n, TIGHT, TIGHT);
    }
    for (int r = 0; r < 3; r++) free(got[r]), free(out[r]);
    tg_tensor_free(enc), tg_tensor_free(proj), tg_tensor_free(u), tg_tensor_free(v);
    tg_tensor_free(gc), tg_tensor_free(ga);
}

static tg_tensor *additive_core_fn(tg_tape *t, tg_tensor *const *in, void *ctx) {
    tg_attention_output o = tg_additive_attention_core(t, in[0], in[1], in[2], in[3], ctx);
    return tg_add(t, tg_sum(t, tg_mul(t, o.context, o.context)),
                  tg_sum(t, tg_mul(t, o.weights, o.weights)));
}

static void test_additive_core_gradcheck(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_tensor *enc = leaf(1, TG_SHAPE(2, 4, 3)), *proj = leaf(2, TG_SHAPE(2, 4, 5));
    tg_tensor *u = leaf(3, TG_SHAPE(2, 5)), *v = leaf(4, TG_SHAPE(5));
    tg_tensor *mask = tg_tensor_from_array(TG_SHAPE(2, 4), (tg_real[]){0, 0, 0, 1, 0, 1, 0, 0});
    tg_test_gradcheck("additive core", additive_core_fn, NULL, (tg_tensor *[]){enc, proj, u, v}, 4);
    tg_test_gradcheck("additive core, masked", additive_core_fn, mask,
                      (tg_tensor *[]){enc, proj, u, v}, 4);
    tg_tensor_free(enc), tg_tensor_free(proj), tg_tensor_free(u), tg_tensor_free(v);
    tg_tensor_free(mask);
}

/* ---- dropout masks ---- */

static void test_dropout_threads_and_independence(void **state) {
    (void)state;
    const int64_t n = 1 << 17; /* large enough to be split between threads */
    tg_tensor *x = tg_tensor_ones(TG_SHAPE(n));
    tg_tape *tape = tg_tape_new();
    tg_tensor *y[3];
    for (int k = 0; k < 2; k++) {
        tg_set_num_threads(k + 1);
        tg_rng rng;
        tg_rng_seed(&rng, 21);
        y[k] = tg_dropout(tape, x, (tg_real)0.5, true, &rng);
        if (k == 0) y[2] = tg_dropout(tape, x, (tg_real)0.5, true, &rng); /* the next call */
    }
    tg_set_num_threads(0);
    assert_memory_equal(y[0]->data, y[1]->data, (size_t)n * sizeof(tg_real));
    /* consecutive calls: agreement about 1/2 (p² + (1 − p)²), neighbours uncorrelated */
    int64_t same = 0, runs = 0;
    for (int64_t i = 0; i < n; i++) {
        same += (y[0]->data[i] == 0) == (y[2]->data[i] == 0);
        if (i > 0) runs += (y[0]->data[i] == 0) == (y[0]->data[i - 1] == 0);
    }
    const double sd = sqrt(0.25 / (double)n);
    assert_true(fabs((double)same / (double)n - 0.5) < 5 * sd);
    assert_true(fabs((double)runs / (double)(n - 1) - 0.5) < 5 * sd);
    tg_tape_free(tape);
    tg_tensor_free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fused_mha_matches_composite),
        cmocka_unit_test(test_fused_mha_forward_values),
        cmocka_unit_test(test_fused_mha_gradcheck),
        cmocka_unit_test(test_mha_attention_op),
        cmocka_unit_test(test_additive_core_matches_ops),
        cmocka_unit_test(test_additive_core_gradcheck),
        cmocka_unit_test(test_additive_core_wide_threads),
        cmocka_unit_test(test_dropout_threads_and_independence),
    };
    return cmocka_run_group_tests_name("fused_attention", tests, NULL, NULL);
}
