/* The fused output layer tg_linear_cross_entropy: the same loss as tg_linear followed by
 * tg_cross_entropy_ex (bits) and the same gradients (to rounding) at every chunk size, every
 * reduction, ignored rows and no bias; bit-identical at 1 and 2 threads; gradchecks; error
 * messages; PyTorch parity (tests/fixturegen/ops_linear_ce.py). */
#include "harness.h"

#include <tapegrad/kernels.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

static tg_tensor *param(uint64_t seed, tg_real lo, tg_real hi, int ndim, const int64_t *shape) {
    return tg_tensor_requires_grad(tg_test_rand(seed, lo, hi, ndim, shape), true);
}

/* Targets in [0, V), every `ignore_every`-th (from the second) set to `ignore` (0: none). */
static tg_index *targets(uint64_t seed, int ndim, const int64_t *shape, int64_t V, int ignore_every,
                         int32_t ignore) {
    tg_index *y = tg_index_new(ndim, shape);
    uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    for (int64_t k = 0; k < y->numel; k++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        y->data[k] = (int32_t)((s >> 33) % (uint64_t)V);
        if (ignore_every && k % ignore_every == 1) y->data[k] = ignore;
    }
    return y;
}

typedef struct layer {
    tg_tensor *x, *W, *b;
    tg_index *y;
} layer;

/* x (T, B, in), W (V, in), b (V) or none, targets (T, B) with some ignored. */
static layer layer_new(uint64_t seed, int64_t T, int64_t B, int64_t in, int64_t V, bool bias) {
    return (layer){param(seed, -1, 1, TG_SHAPE(T, B, in)), param(seed + 1, -1, 1, TG_SHAPE(V, in)),
                   bias ? param(seed + 2, -1, 1, TG_SHAPE(V)) : NULL,
                   targets(seed + 3, TG_SHAPE(T, B), V, 4, -100)};
}

static void layer_free(layer *l) {
    tg_tensor_free(l->x), tg_tensor_free(l->W), tg_tensor_free(l->b);
    tg_index_free(l->y);
}

static void zero_grads(layer *l) {
    tg_tensor_zero_grad(l->x), tg_tensor_zero_grad(l->W);
    if (l->b) tg_tensor_zero_grad(l->b);
}

typedef struct result {
    tg_tensor *loss, *dx, *dW, *db;
} result;

static tg_tensor *copy_grad(const tg_tensor *t) {
    if (!t) return NULL;
    tg_tensor *c = tg_tensor_new(t->ndim, t->shape);
    memcpy(c->data, t->grad, (size_t)t->numel * sizeof(tg_real));
    return c;
}

/* Forward and backward (seed: the output's shape filled with `up`), fused with `chunk` rows
 * (chunk < 0: the unfused pair tg_linear + tg_cross_entropy_ex). An upstream gradient of 1
 * (reduction mean or sum) takes the gradient the forward computed; any other recomputes. */
static result run_seeded(layer *l, const tg_loss_options *o, int64_t chunk, tg_real up) {
    zero_grads(l);
    tg_tape *t = tg_tape_new();
    tg_tensor *loss;
    if (chunk < 0) {
        tg_tensor *logits = tg_linear(t, l->x, l->W, l->b);
        tg_tensor *flat = tg_reshape(t, logits, TG_SHAPE(-1, l->W->shape[0]));
        tg_index *y = tg_tape_index(t, 1, (int64_t[]){l->y->numel});
        memcpy(y->data, l->y->data, (size_t)l->y->numel * sizeof(int32_t));
        loss = tg_cross_entropy_ex(t, flat, y, o);
    } else {
        tg_index *y = tg_tape_index(t, 1, (int64_t[]){l->y->numel});
        memcpy(y->data, l->y->data, (size_t)l->y->numel * sizeof(int32_t));
        loss = tg_linear_cross_entropy_chunked(t, l->x, l->W, l->b, y, o, chunk);
    }
    tg_tensor *seed = tg_tensor_full(loss->ndim, loss->shape, up);
    tg_tape_backward_with(t, loss, seed->data);
    result r = {tg_tensor_new(loss->ndim, loss->shape), copy_grad(l->x), copy_grad(l->W),
                copy_grad(l->b)};
    memcpy(r.loss->data, loss->data, (size_t)loss->numel * sizeof(tg_real));
    tg_tensor_free(seed);
    tg_tape_free(t);
    return r;
}

static result run(layer *l, const tg_loss_options *o, int64_t chunk) {
    return run_seeded(l, o, chunk, 1);
}

static void result_free(result *r) {
    tg_tensor_free(r->loss), tg_tensor_free(r->dx), tg_tensor_free(r->dW), tg_tensor_free(r->db);
}

static void assert_same_bits(const tg_tensor *a, const tg_tensor *b) {
    if (!a || !b) {
        assert_true(a == b);
        return;
    }
    assert_int_equal(a->numel, b->numel);
    assert_memory_equal(a->data, b->data, (size_t)a->numel * sizeof(tg_real));
}

static void test_matches_unfused(void **state) {
    (void)state;
    const tg_reduction reds[] = {TG_REDUCTION_MEAN, TG_REDUCTION_SUM, TG_REDUCTION_NONE};
    for (int bias = 0; bias < 2; bias++) {
        layer l = layer_new(10 + (uint64_t)bias, 5, 4, 7, 13, bias);
        for (int r = 0; r < 3; r++) {
            tg_loss_options o = tg_loss_defaults();
            o.reduction = reds[r];
            result want = run(&l, &o, -1);
            /* chunks of 1, 3 (the last one short), 7, all 20 rows, the default */
            const int64_t chunks[] = {1, 3, 7, 20, 0};
            for (int c = 0; c < 5; c++) {
                result got = run(&l, &o, chunks[c]);
                assert_same_bits(got.loss, want.loss); /* same logits, same row sums */
                tg_test_assert_close("dx", got.dx->data, want.dx->data, got.dx->numel, 1e-6, 1e-5);
                tg_test_assert_close("dW", got.dW->data, want.dW->data, got.dW->numel, 1e-6, 1e-5);
                if (bias)
                    tg_test_assert_close("db", got.db->data, want.db->data, got.db->numel, 1e-6,
                                         1e-5);
                else
                    assert_null(got.db);
                result_free(&got);
            }
            result_free(&want);
        }
        layer_free(&l);
    }
}

/* A hand-checked case: one row, x = 0, so the logits are the bias (0, ln 3): the loss is
 * lse − z_y = ln(1 + 3) − ln 3 for y = 1, and db = softmax − onehot = (1/4, 3/4 − 1). */
static void test_values(void **state) {
    (void)state;
    tg_tensor *x = tg_tensor_requires_grad(tg_tensor_zeros(TG_SHAPE(1, 2)), true);
    tg_tensor *W = tg_tensor_requires_grad(tg_tensor_full(TG_SHAPE(2, 2), 0.5), true);
    tg_tensor *b = tg_tensor_requires_grad(tg_tensor_zeros(TG_SHAPE(2)), true);
    b->data[1] = (tg_real)log(3.0);
    tg_index *y = tg_index_new(TG_SHAPE(1));
    y->data[0] = 1;
    tg_tape *t = tg_tape_new();
    tg_tensor *loss = tg_linear_cross_entropy(t, x, W, b, y, NULL);
    assert_int_equal(loss->ndim, 0);
    tg_test_assert_close_f64("loss", loss->data, (double[]){log(4.0) - log(3.0)}, 1, TG_TEST_ATOL,
                             TG_TEST_RTOL);
    tg_tape_backward(t, loss);
    tg_test_assert_close_f64("db", b->grad, (double[]){0.25, -0.25}, 2, TG_TEST_ATOL, TG_TEST_RTOL);
    /* dx = D·W = 0.5·(0.25 − 0.25) = 0 on both columns; dW = Dᵀ·x = 0 */
    tg_test_assert_close_f64("dx", x->grad, (double[]){0, 0}, 2, TG_TEST_ATOL, 0);
    tg_test_assert_close_f64("dW", W->grad, (double[]){0, 0, 0, 0}, 4, 0, 0);
    tg_tape_free(t);
    tg_tensor_free(x), tg_tensor_free(W), tg_tensor_free(b);
    tg_index_free(y);
}

/* Every target ignored: mean is NaN (0/0) as PyTorch's, sum 0, and no gradient flows. */
static void test_all_ignored(void **state) {
    (void)state;
    layer l = layer_new(30, 2, 3, 4, 5, true);
    for (int64_t k = 0; k < l.y->numel; k++) l.y->data[k] = -100;
    tg_loss_options o = tg_loss_defaults();
    o.reduction = TG_REDUCTION_SUM;
    result r = run(&l, &o, 2);
    assert_true(r.loss->data[0] == 0);
    for (int64_t i = 0; i < r.dW->numel; i++) assert_true(r.dW->data[i] == 0);
    result_free(&r);
    tg_tape *t = tg_tape_new();
    assert_true(isnan(tg_item(tg_linear_cross_entropy(t, l.x, l.W, l.b, l.y, NULL))));
    tg_tape_free(t);
    layer_free(&l);
}

static void test_thread_count_invariance(void **state) {
    (void)state;
    layer l = layer_new(40, 16, 8, 24, 300, true);
    tg_loss_options o = tg_loss_defaults();
    tg_set_num_threads(1);
    result one = run(&l, &o, 40);
    tg_set_num_threads(2);
    result two = run(&l, &o, 40);
    tg_set_num_threads(0);
    assert_same_bits(one.loss, two.loss);
    assert_same_bits(one.dx, two.dx);
    assert_same_bits(one.dW, two.dW);
    assert_same_bits(one.db, two.db);
    result_free(&one), result_free(&two);
    /* the recomputing backward (upstream 2) too */
    tg_set_num_threads(1);
    one = run_seeded(&l, &o, 40, 2);
    tg_set_num_threads(2);
    two = run_seeded(&l, &o, 40, 2);
    tg_set_num_threads(0);
    assert_same_bits(one.dx, two.dx);
    assert_same_bits(one.dW, two.dW);
    assert_same_bits(one.db, two.db);
    result_free(&one), result_free(&two);
    layer_free(&l);
}

static result grads_of(const layer *l) {
    return (result){NULL, copy_grad(l->x), copy_grad(l->W), copy_grad(l->b)};
}

static void assert_same_grads(const result *a, const result *b) {
    assert_same_bits(a->dx, b->dx);
    assert_same_bits(a->dW, b->dW);
    assert_same_bits(a->db, b->db);
}

/* `a` = 2·`b`, bit for bit: scaling by 2 commutes with every rounding of the backward. */
static void assert_twice(const tg_tensor *a, const tg_tensor *b) {
    if (!a || !b) {
        assert_true(a == b);
        return;
    }
    for (int64_t i = 0; i < a->numel; i++) assert_true(a->data[i] == 2 * b->data[i]);
}

/* The gradient the forward computes (a backward from 1) against the backward that computes
 * the logits again: bit for bit, at every chunk size, with and without bias, with ignored
 * rows (-100, and an ignore_index that is a class). A retained graph's second backward
 * recomputes; so do an upstream gradient of 2 (a seed, or a loss scaled by 2, giving twice
 * the bits) and a backward into gradients that already hold something. */
static void test_eager_matches_recompute(void **state) {
    (void)state;
    for (int bias = 0; bias < 2; bias++)
        for (int ign = 0; ign < 2; ign++) {
            layer l = layer_new(70 + (uint64_t)(2 * bias + ign), 5, 4, 7, 13, bias);
            if (ign) { /* no -100 targets; the first row's class is the ignore_index */
                tg_index_free(l.y);
                l.y = targets(75, TG_SHAPE(5, 4), 13, 0, -100);
            }
            const int32_t ignore = ign ? l.y->data[0] : -100;
            for (int red = 0; red < 2; red++) {
                tg_loss_options o = tg_loss_defaults();
                o.reduction = red ? TG_REDUCTION_SUM : TG_REDUCTION_MEAN;
                o.ignore_index = ignore;
                const int64_t chunks[] = {1, 3, 7, 0};
                for (int c = 0; c < 4; c++) {
                    result eager = run(&l, &o, chunks[c]);
                    /* the same graph twice: the saved gradient, then recomputed */
                    zero_grads(&l);
                    tg_tape *t = tg_tape_new();
                    tg_tensor *loss =
                        tg_linear_cross_entropy_chunked(t, l.x, l.W, l.b, l.y, &o, chunks[c]);
                    const tg_backward_options keep = {.retain_graph = true};
                    tg_tape_backward_ex(t, loss, &keep);
                    result first = grads_of(&l);
                    zero_grads(&l);
                    tg_tape_backward_ex(t, loss, &keep);
                    result second = grads_of(&l);
                    assert_same_grads(&first, &eager);
                    assert_same_grads(&second, &eager);
                    /* a third backward accumulates: into non-zero gradients, recomputed */
                    tg_tape_backward(t, loss);
                    result third = grads_of(&l);
                    /* the same from two fresh graphs: the second one's saved gradient does
                     * not apply (a sum of totals would not have these bits) */
                    zero_grads(&l);
                    for (int k = 0; k < 2; k++) {
                        tg_tape_reset(t);
                        loss =
                            tg_linear_cross_entropy_chunked(t, l.x, l.W, l.b, l.y, &o, chunks[c]);
                        tg_tape_backward(t, loss);
                    }
                    result fresh = grads_of(&l);
                    assert_same_grads(&fresh, &third);
                    /* upstream 2: as a seed, and through loss · 2 */
                    result seeded = run_seeded(&l, &o, chunks[c], 2);
                    assert_twice(seeded.dx, eager.dx);
                    assert_twice(seeded.dW, eager.dW);
                    assert_twice(seeded.db, eager.db);
                    zero_grads(&l);
                    tg_tape_reset(t);
                    loss = tg_linear_cross_entropy_chunked(t, l.x, l.W, l.b, l.y, &o, chunks[c]);
                    tg_tape_backward(t, tg_mul_scalar(t, loss, 2));
                    result scaled = grads_of(&l);
                    assert_same_grads(&scaled, &seeded);
                    tg_tape_free(t);
                    result_free(&eager), result_free(&first), result_free(&second);
                    result_free(&third), result_free(&fresh), result_free(&seeded);
                    result_free(&scaled);
                }
            }
            layer_free(&l);
        }
}

/* Bytes of the tape's arena one forward of the op takes (bias included). */
static size_t forward_bytes(layer *l, bool recording, tg_reduction red) {
    tg_tape *t = tg_tape_new();
    tg_tape_set_recording(t, recording);
    tg_loss_options o = tg_loss_defaults();
    o.reduction = red;
    const size_t before = tg_arena_used(tg_tape_arena(t));
    tg_linear_cross_entropy(t, l->x, l->W, l->b, l->y, &o);
    const size_t bytes = tg_arena_used(tg_tape_arena(t)) - before;
    tg_tape_free(t);
    return bytes;
}

/* The eager gradient costs its three buffers only where a backward from 1 can come: a tape
 * that records, an input that requires grad, a reduced loss. */
static void test_no_grad_forward_saves_no_gradient(void **state) {
    (void)state;
    layer l = layer_new(80, 6, 5, 16, 40, true);
    const size_t grad_bytes = (size_t)(l.x->numel + l.W->numel + l.b->numel) * sizeof(tg_real);
    const size_t no_grad = forward_bytes(&l, false, TG_REDUCTION_MEAN);
    const size_t with_grad = forward_bytes(&l, true, TG_REDUCTION_MEAN);
    assert_true(with_grad >= no_grad + grad_bytes);
    assert_true(forward_bytes(&l, true, TG_REDUCTION_NONE) <
                forward_bytes(&l, false, TG_REDUCTION_NONE) + grad_bytes / 2);
    /* inputs that need no gradient: the same bytes as not recording */
    tg_tensor_requires_grad(l.x, false), tg_tensor_requires_grad(l.W, false);
    tg_tensor_requires_grad(l.b, false);
    assert_int_equal(forward_bytes(&l, true, TG_REDUCTION_MEAN), no_grad);
    /* and only W's (V × in; the node's records and rounding take a few hundred bytes more)
     * when only W requires grad */
    tg_tensor_requires_grad(l.W, true);
    const size_t w_only = forward_bytes(&l, true, TG_REDUCTION_MEAN) - no_grad,
                 w_bytes = (size_t)l.W->numel * sizeof(tg_real);
    assert_in_range(w_only, w_bytes, w_bytes + 512);
    assert_null(l.x->grad), assert_null(l.W->grad), assert_null(l.b->grad);
    layer_free(&l);
}

typedef struct lce_arg {
    tg_index *y;
    tg_loss_options o;
    int64_t chunk;
    bool bias;
} lce_arg;

static tg_tensor *fn_lce(tg_tape *t, tg_tensor *const *in, void *ctx) {
    const lce_arg *a = ctx;
    return tg_linear_cross_entropy_chunked(t, in[0], in[1], a->bias ? in[2] : NULL, a->y, &a->o,
                                           a->chunk);
}

static void test_gradcheck(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    layer l = layer_new(50, 3, 2, 3, 5, true);
    tg_tensor *in[] = {l.x, l.W, l.b};
    for (int red = 0; red < 3; red++)
        for (int bias = 0; bias < 2; bias++)
            for (int64_t chunk = 1; chunk <= 4; chunk += 3) {
                lce_arg a = {l.y, tg_loss_defaults(), chunk, bias};
                a.o.reduction = (tg_reduction)red;
                tg_test_gradcheck(NULL, fn_lce, &a, in, bias ? 3 : 2);
            }
    tg_index *y = targets(51, TG_SHAPE(3, 2), 5, 0, -100); /* an ignore_index that is a class */
    lce_arg a = {y, tg_loss_defaults(), 2, true};
    a.o.ignore_index = y->data[0];
    tg_test_gradcheck(NULL, fn_lce, &a, in, 3);
    tg_index_free(y);
    layer_free(&l);
}

/* The loss times 3: the op's backward sees an upstream gradient of 3 and recomputes. */
static tg_tensor *fn_lce_scaled(tg_tape *t, tg_tensor *const *in, void *ctx) {
    return tg_mul_scalar(t, fn_lce(t, in, ctx), 3);
}

/* Mean and sum reach the op with a gradient of 1 (the forward's gradient), none and a scaled
 * loss with others (recomputed): both backwards are checked. */
static void test_gradcheck_recompute(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    layer l = layer_new(55, 3, 2, 3, 5, true);
    tg_tensor *in[] = {l.x, l.W, l.b};
    for (int red = 0; red < 2; red++)
        for (int bias = 0; bias < 2; bias++) {
            lce_arg a = {l.y, tg_loss_defaults(), 2, bias};
            a.o.reduction = (tg_reduction)red;
            tg_test_gradcheck(NULL, fn_lce_scaled, &a, in, bias ? 3 : 2);
        }
    layer_free(&l);
}

static void test_errors(void **state) {
    (void)state;
    layer l = layer_new(60, 2, 3, 4, 5, true);
    tg_tape *t = tg_tape_new();
    tg_tensor *W3 = tg_tensor_zeros(TG_SHAPE(5, 3)), *b4 = tg_tensor_zeros(TG_SHAPE(4));
    tg_index *y5 = tg_index_new(TG_SHAPE(5));
    TG_EXPECT_FAIL(tg_linear_cross_entropy(t, l.x, W3, l.b, l.y, NULL), "tg_linear_cross_entropy",
                   "in_features = 3");
    TG_EXPECT_FAIL(tg_linear_cross_entropy(t, l.x, l.W, b4, l.y, NULL), "tg_linear_cross_entropy",
                   "bias (4,)");
    TG_EXPECT_FAIL(tg_linear_cross_entropy(t, l.x, l.W, l.b, y5, NULL), "tg_linear_cross_entropy",
                   "one target per row (6)");
    tg_loss_options o = tg_loss_defaults();
    o.label_smoothing = (tg_real)0.1;
    TG_EXPECT_FAIL(tg_linear_cross_entropy(t, l.x, l.W, l.b, l.y, &o), "tg_linear_cross_entropy",
                   "label_smoothing");
    l.y->data[2] = 5;
    TG_EXPECT_FAIL(tg_linear_cross_entropy(t, l.x, l.W, l.b, l.y, NULL), "tg_linear_cross_entropy",
                   "target 5 at row 2");
    TG_EXPECT_FAIL(tg_linear_cross_entropy(t, l.x, NULL, l.b, l.y, NULL), "tg_linear_cross_entropy",
                   "weight");
    tg_tape_free(t);
    tg_tensor_free(W3), tg_tensor_free(b4);
    tg_index_free(y5);
    layer_free(&l);
}

/* ---- PyTorch parity: F.linear then F.cross_entropy on (T·B, V) ---- */

static tg_parity_tally tally = {TG_OP_PARITY_ATOL, TG_OP_PARITY_RTOL, 0, 0, 0};

static void parity_case(const char *name) {
    if (!tg_fixture_present(name)) return;
    tg_fixture *fx = tg_fixture_load(name);
    const char *red = tg_fixture_meta(fx, "reduction"), *ii = tg_fixture_meta(fx, "ignore_index");
    assert_non_null(red);
    assert_non_null(ii);
    tg_loss_options o = tg_loss_defaults();
    o.reduction = strcmp(red, "mean") == 0  ? TG_REDUCTION_MEAN
                  : strcmp(red, "sum") == 0 ? TG_REDUCTION_SUM
                                            : TG_REDUCTION_NONE;
    o.ignore_index = atoll(ii);
    tg_tensor *x = tg_tensor_requires_grad(tg_fixture_tensor(fx, "in.x"), true);
    tg_tensor *W = tg_tensor_requires_grad(tg_fixture_tensor(fx, "in.weight"), true);
    tg_tensor *b = tg_fixture_has(fx, "in.bias")
                       ? tg_tensor_requires_grad(tg_fixture_tensor(fx, "in.bias"), true)
                       : NULL;
    tg_index *y = tg_fixture_index(fx, "in.target");
    tg_tensor *gout = tg_fixture_tensor(fx, "gout");
    tg_tape *t = tg_tape_new();
    /* chunks of 5 rows: three chunks, the last one short */
    tg_tensor *out = tg_linear_cross_entropy_chunked(t, x, W, b, y, &o, 5);
    /* PyTorch's none output is (T·B): compare it flat */
    tg_parity_tally_compare(&tally, fx, "out", out->ndim ? (int64_t[]){out->numel} : NULL,
                            out->ndim ? 1 : 0, out->data);
    tg_tape_backward_with(t, out, gout->data);
    tg_parity_tally_compare(&tally, fx, "grad.x", x->shape, x->ndim, x->grad);
    tg_parity_tally_compare(&tally, fx, "grad.weight", W->shape, W->ndim, W->grad);
    if (b) tg_parity_tally_compare(&tally, fx, "grad.bias", b->shape, b->ndim, b->grad);
    tg_tape_free(t);
    tg_tensor_free(x), tg_tensor_free(W), tg_tensor_free(b), tg_tensor_free(gout);
    tg_index_free(y);
    tg_fixture_free(fx);
    tally.cases++;
}

static void test_parity(void **state) {
    (void)state;
    static const char *const cases[] = {
        "op_linear_cross_entropy_mean",
        "op_linear_cross_entropy_sum",
        "op_linear_cross_entropy_none",
        "op_linear_cross_entropy_nobias_mean",
        "op_linear_cross_entropy_custom_ignore_sum",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) parity_case(cases[i]);
    tg_parity_tally_print(&tally);
}

static int report(void **state) {
    (void)state;
    print_message("linear_ce: %d gradchecks passed\n", tg_test_gradchecks);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_unfused),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_all_ignored),
        cmocka_unit_test(test_thread_count_invariance),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_parity),
        cmocka_unit_test(test_eager_matches_recompute),
        cmocka_unit_test(test_no_grad_forward_saves_no_gradient),
        cmocka_unit_test(test_gradcheck_recompute),
    };
    return cmocka_run_group_tests(tests, NULL, report);
}
