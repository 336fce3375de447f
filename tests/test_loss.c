/* Losses: cross entropy (ignore_index, label smoothing, class weights, every reduction,
 * (N, C) / (C) / (N, C, d1, ...) layouts), NLL, MSE, BCE with logits (pos_weight, element
 * weight, soft targets). Hand-checked values, a naive reference for every option,
 * gradchecks, error messages, PyTorch parity. */
#include "harness.h"

#include <tapegrad/kernels.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static tg_tensor *param(uint64_t seed, tg_real lo, tg_real hi, int ndim, const int64_t *shape,
                        const char *name) {
    tg_tensor *t = tg_test_rand(seed, lo, hi, ndim, shape);
    tg_tensor_set_name(t, name);
    return tg_tensor_requires_grad(t, true);
}

/* Targets in [0, C) from a seed, with every `ignore_every`-th set to ignore (0: none). */
static tg_index *targets(uint64_t seed, int ndim, const int64_t *shape, int64_t C, int ignore_every,
                         int32_t ignore) {
    tg_index *y = tg_index_new(ndim, shape);
    uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    for (int64_t k = 0; k < y->numel; k++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        y->data[k] = (int32_t)((s >> 33) % (uint64_t)C);
        if (ignore_every && k % ignore_every == 1) y->data[k] = ignore;
    }
    return y;
}

/* Naive double cross entropy for logits (N, C, S) (N = 1 for a 1-D input), written
 * as the formula: per-sample losses into ell, the reduced value returned. */
static double naive_ce(const tg_tensor *x, const tg_index *y, const tg_loss_options *o,
                       double *ell) {
    const int64_t C = x->ndim == 1 ? x->shape[0] : x->shape[1], N = x->ndim == 1 ? 1 : x->shape[0];
    const int64_t S = x->numel / (N * C > 0 ? N * C : 1);
    double total = 0, denom = 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t s = 0; s < S; s++) {
            const int64_t k = n * S + s, yk = y->data[k];
            double m = -INFINITY, se = 0;
            for (int64_t c = 0; c < C; c++) m = fmax(m, (double)x->data[(n * C + c) * S + s]);
            for (int64_t c = 0; c < C; c++) se += exp((double)x->data[(n * C + c) * S + s] - m);
            const double lse = m + log(se);
            if (yk == o->ignore_index) {
                ell[k] = 0;
                continue;
            }
            const double wy = o->weight ? (double)o->weight->data[yk] : 1,
                         e = (double)o->label_smoothing;
            double l = (1 - e) * wy * (lse - (double)x->data[(n * C + yk) * S + s]);
            for (int64_t c = 0; c < C; c++)
                l += e / (double)C * (o->weight ? (double)o->weight->data[c] : 1) *
                     (lse - (double)x->data[(n * C + c) * S + s]);
            ell[k] = l;
            total += l;
            denom += wy;
        }
    return o->reduction == TG_REDUCTION_MEAN ? total / denom : total;
}

static void test_cross_entropy_values(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_requires_grad(
        tg_tensor_from_array(TG_SHAPE(2, 3), (tg_real[]){1, 2, 3, 1, 1, 1}), true);
    tg_index *y = tg_index_from_array(TG_SHAPE(2), (int32_t[]){2, 0});
    tg_tensor *loss = tg_cross_entropy(tape, x, y);
    assert_int_equal(loss->ndim, 0);
    assert_int_equal(tg_tape_node_count(tape), 1); /* one fused node */
    /* (log(e + e² + e³) − 3 + log 3) / 2 */
    tg_test_assert_close_f64("ce mean", loss->data, (double[]){0.7531091265562449}, 1, TG_TEST_ATOL,
                             TG_TEST_RTOL);
    tg_tape_backward(tape, loss);
    /* (softmax − onehot) / 2 */
    const double p0 = 0.09003057317038046, p1 = 0.24472847105479767, p2 = 0.6652409557748219;
    tg_test_assert_close_f64(
        "ce grad", x->grad,
        (double[]){p0 / 2, p1 / 2, (p2 - 1) / 2, 1.0 / 6 - 0.5, 1.0 / 6, 1.0 / 6}, 6, TG_TEST_ATOL,
        TG_TEST_RTOL);
    /* reduction none: the targets' shape */
    tg_loss_options o = tg_loss_defaults();
    o.reduction = TG_REDUCTION_NONE;
    loss = tg_cross_entropy_ex(tape, x, y, &o);
    assert_int_equal(loss->ndim, 1);
    assert_int_equal(loss->shape[0], 2);
    tg_test_assert_close_f64("ce none", loss->data,
                             (double[]){0.40760596444438, 1.0986122886681098}, 2, TG_TEST_ATOL,
                             TG_TEST_RTOL);
    /* large logits stay finite */
    tg_tensor *big = tg_tensor_from_array(TG_SHAPE(1, 3), (tg_real[]){1000, 1001, 1002});
    tg_index *y_big = tg_index_from_array(TG_SHAPE(1), (int32_t[]){2});
    loss = tg_cross_entropy(tape, big, y_big);
    tg_test_assert_close_f64("ce large logits", loss->data, (double[]){0.40760596444438}, 1, 1e-4,
                             1e-4);
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(big);
    tg_index_free(y), tg_index_free(y_big);
}

/* Every option and layout against the naive formula. */
static void test_cross_entropy_options(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x2 = tg_test_rand(1, -3, 3, TG_SHAPE(7, 5));
    tg_tensor *x1 = tg_test_rand(2, -3, 3, TG_SHAPE(5));
    tg_tensor *x4 = tg_test_rand(3, -3, 3, TG_SHAPE(3, 5, 2, 4));
    tg_tensor *w = tg_test_rand(4, 0.2, 2, TG_SHAPE(5));
    tg_index *y2 = targets(5, TG_SHAPE(7), 5, 3, -100), *y1 = targets(6, 0, NULL, 5, 0, -100);
    tg_index *y4 = targets(7, TG_SHAPE(3, 2, 4), 5, 4, 3); /* ignore_index 3 */
    struct {
        tg_tensor *x;
        tg_index *y;
        int64_t ignore;
    } cases[] = {{x2, y2, -100}, {x1, y1, -100}, {x4, y4, 3}};
    double ell[64];
    for (int c = 0; c < 3; c++)
        for (int red = 0; red < 3; red++)
            for (int ls = 0; ls < 2; ls++)
                for (int wt = 0; wt < 2; wt++) {
                    tg_loss_options o = tg_loss_defaults();
                    o.reduction = (tg_reduction)red;
                    o.ignore_index = cases[c].ignore;
                    o.label_smoothing = ls ? (tg_real)0.25 : 0;
                    o.weight = wt ? w : NULL;
                    const double want = naive_ce(cases[c].x, cases[c].y, &o, ell);
                    tg_tensor *loss = tg_cross_entropy_ex(tape, cases[c].x, cases[c].y, &o);
                    if (o.reduction == TG_REDUCTION_NONE) {
                        assert_int_equal(loss->ndim, cases[c].y->ndim);
                        tg_test_assert_close_f64("ce none vs naive", loss->data, ell, loss->numel,
                                                 TG_TEST_ATOL, TG_TEST_RTOL);
                    } else {
                        assert_int_equal(loss->ndim, 0);
                        tg_test_assert_close_f64("ce vs naive", loss->data, &want, 1, TG_TEST_ATOL,
                                                 TG_TEST_RTOL);
                    }
                    /* NLL on log_softmax equals cross entropy without smoothing */
                    if (!ls) {
                        const int cdim = cases[c].x->ndim == 1 ? 0 : 1;
                        tg_tensor *nll = tg_nll_loss_ex(
                            tape, tg_log_softmax(tape, cases[c].x, cdim), cases[c].y, &o);
                        tg_test_assert_close("nll(log_softmax) == ce", nll->data, loss->data,
                                             loss->numel, TG_TEST_ATOL, TG_TEST_RTOL);
                    }
                }
    tg_tape_free(tape);
    tg_tensor_free(x1), tg_tensor_free(x2), tg_tensor_free(x4), tg_tensor_free(w);
    tg_index_free(y1), tg_index_free(y2), tg_index_free(y4);
}

static void test_all_ignored(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_requires_grad(tg_test_rand(1, -1, 1, TG_SHAPE(3, 4)), true);
    tg_index *y = tg_index_from_array(TG_SHAPE(3), (int32_t[]){-100, -100, -100});
    tg_loss_options o = tg_loss_defaults();
    tg_tensor *loss = tg_cross_entropy_ex(tape, x, y, &o);
    assert_true(isnan(tg_item(loss))); /* 0 / 0, as in PyTorch */
    tg_tape_backward(tape, loss);
    tg_test_assert_close("no gradient", x->grad, (tg_real[12]){0}, 12, 0, 0);
    o.reduction = TG_REDUCTION_SUM;
    assert_true(tg_item(tg_cross_entropy_ex(tape, x, y, &o)) == 0);
    assert_true(tg_item(tg_nll_loss_ex(tape, x, y, &o)) == 0);
    o.reduction = TG_REDUCTION_MEAN;
    assert_true(isnan(tg_item(tg_nll_loss_ex(tape, x, y, &o))));
    /* an empty batch: mean NaN, sum 0 */
    tg_tensor *e = tg_tensor_zeros(TG_SHAPE(0, 4));
    tg_index *ye = tg_index_new(TG_SHAPE(0));
    assert_true(isnan(tg_item(tg_cross_entropy(tape, e, ye))));
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(e);
    tg_index_free(y), tg_index_free(ye);
}

static void test_nll_values(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *lp = tg_tensor_requires_grad(
        tg_tensor_from_array(TG_SHAPE(3, 2), (tg_real[]){-0.5, -1, -2, -0.25, -3, -0.125}), true);
    tg_index *y = tg_index_from_array(TG_SHAPE(3), (int32_t[]){1, 0, -100});
    tg_tensor *w = tg_tensor_from_array(TG_SHAPE(2), (tg_real[]){2, 4});
    tg_loss_options o = tg_loss_defaults();
    o.weight = w;
    /* weighted mean: (4·1 + 2·2) / (4 + 2) */
    tg_tensor *loss = tg_nll_loss_ex(tape, lp, y, &o);
    tg_test_assert_close("nll weighted mean", loss->data, (tg_real[]){(tg_real)(8.0 / 6)}, 1,
                         TG_TEST_ATOL, TG_TEST_RTOL);
    tg_tape_backward(tape, loss);
    tg_test_assert_close("nll grad", lp->grad,
                         (tg_real[]){0, (tg_real)(-4.0 / 6), (tg_real)(-2.0 / 6), 0, 0, 0}, 6,
                         TG_TEST_ATOL, TG_TEST_RTOL);
    tg_tape_free(tape);
    tg_tensor_free(lp), tg_tensor_free(w);
    tg_index_free(y);
}

static void test_mse_values(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *a =
        tg_tensor_requires_grad(tg_tensor_from_array(TG_SHAPE(3), (tg_real[]){1, 2, 3}), true);
    tg_tensor *b =
        tg_tensor_requires_grad(tg_tensor_from_array(TG_SHAPE(3), (tg_real[]){1, 0, 5}), true);
    tg_tensor *l = tg_mse_loss(tape, a, b, TG_REDUCTION_MEAN);
    assert_int_equal(l->ndim, 0);
    tg_test_assert_close("mse mean", l->data, (tg_real[]){(tg_real)(8.0 / 3)}, 1, TG_TEST_ATOL,
                         TG_TEST_RTOL);
    tg_tape_backward(tape, l);
    tg_test_assert_close("mse da", a->grad, (tg_real[]){0, (tg_real)(4.0 / 3), (tg_real)(-4.0 / 3)},
                         3, TG_TEST_ATOL, TG_TEST_RTOL);
    tg_test_assert_close("mse db", b->grad, (tg_real[]){0, (tg_real)(-4.0 / 3), (tg_real)(4.0 / 3)},
                         3, TG_TEST_ATOL, TG_TEST_RTOL);
    assert_true(tg_item(tg_mse_loss(tape, a, b, TG_REDUCTION_SUM)) == 8);
    l = tg_mse_loss(tape, a, b, TG_REDUCTION_NONE);
    assert_int_equal(l->ndim, 1);
    tg_test_assert_close("mse none", l->data, (tg_real[]){0, 4, 4}, 3, 0, 0);
    tg_tape_free(tape);
    tg_tensor_free(a), tg_tensor_free(b);
}

/* Naive double BCE with logits (definition, with log σ written via log1p for stability). */
static double naive_bce(double x, double y, double p, double w) {
    const double log_sig = -(fmax(-x, 0) + log1p(exp(-fabs(x)))), log_1msig = log_sig - x;
    return -w * (p * y * log_sig + (1 - y) * log_1msig);
}

static void test_bce_values(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_from_array(TG_SHAPE(4), (tg_real[]){100, -100, 0, 17});
    tg_tensor *y = tg_tensor_from_array(TG_SHAPE(4), (tg_real[]){1, 1, 0.5, 0});
    tg_loss_options o = tg_loss_defaults();
    o.reduction = TG_REDUCTION_NONE;
    tg_tensor *l = tg_bce_with_logits(tape, x, y, &o);
    /* no inf, no NaN at ±100 (the naive form gives inf in float32) */
    tg_test_assert_close_f64("bce none", l->data,
                             (double[]){0, 100, log(2.0), naive_bce(17, 0, 1, 1)}, 4, TG_TEST_ATOL,
                             TG_TEST_RTOL);
    /* pos_weight (C) broadcast along the last dim, element weight (R, 1) */
    tg_tensor *x2 = tg_test_rand(1, -4, 4, TG_SHAPE(3, 4)),
              *y2 = tg_test_rand(2, 0, 1, TG_SHAPE(3, 4));
    tg_tensor *pw = tg_test_rand(3, 0.5, 3, TG_SHAPE(4)),
              *ew = tg_test_rand(4, 0.2, 2, TG_SHAPE(3, 1));
    double want[12], sum = 0;
    for (int i = 0; i < 12; i++) {
        want[i] = naive_bce((double)x2->data[i], (double)y2->data[i], (double)pw->data[i % 4],
                            (double)ew->data[i / 4]);
        sum += want[i];
    }
    o.pos_weight = pw;
    o.weight = ew;
    l = tg_bce_with_logits(tape, x2, y2, &o);
    tg_test_assert_close_f64("bce pos_weight + weight", l->data, want, 12, 10 * TG_TEST_ATOL,
                             10 * TG_TEST_RTOL);
    o.reduction = TG_REDUCTION_SUM;
    tg_test_assert_close_f64("bce sum", tg_bce_with_logits(tape, x2, y2, &o)->data, &sum, 1,
                             10 * TG_TEST_ATOL, 10 * TG_TEST_RTOL);
    o.reduction = TG_REDUCTION_MEAN;
    sum /= 12;
    tg_test_assert_close_f64("bce mean", tg_bce_with_logits(tape, x2, y2, &o)->data, &sum, 1,
                             10 * TG_TEST_ATOL, 10 * TG_TEST_RTOL);
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(y), tg_tensor_free(x2), tg_tensor_free(y2);
    tg_tensor_free(pw), tg_tensor_free(ew);
}

/* Cross entropy over a layer norm and a softmax along a non-last dim, forward and backward:
 * bit-identical with 1 and 3 threads. Writes the loss, then dx, then dγ. */
static void run_chain(tg_tensor *x, tg_tensor *g, const tg_index *y, tg_real *out) {
    tg_tensor_zero_grad(x), tg_tensor_zero_grad(g);
    tg_tape *tape = tg_tape_new();
    tg_tensor *h = tg_layer_norm(tape, x, 1, g, NULL, (tg_real)1e-5);
    tg_tensor *p = tg_softmax(tape, tg_reshape(tape, h, TG_SHAPE(40, 50, 64)), 0);
    tg_tensor *loss = tg_cross_entropy(tape, tg_reshape(tape, p, TG_SHAPE(2000, 64)), y);
    tg_tape_backward(tape, loss);
    out[0] = tg_item(loss);
    memcpy(out + 1, x->grad, (size_t)x->numel * sizeof(tg_real));
    memcpy(out + 1 + x->numel, g->grad, 64 * sizeof(tg_real));
    tg_tape_free(tape);
}

static void test_thread_count_invariance(void **state) {
    (void)state;
    tg_tensor *x = tg_tensor_requires_grad(tg_test_rand(1, -2, 2, TG_SHAPE(2000, 64)), true);
    tg_tensor *g = tg_tensor_requires_grad(tg_test_rand(2, 0.5, 1.5, TG_SHAPE(64)), true);
    tg_index *y = targets(3, TG_SHAPE(2000), 64, 7, -100);
    static tg_real one[1 + 2000 * 64 + 64], three[1 + 2000 * 64 + 64];
    tg_set_num_threads(1);
    run_chain(x, g, y, one);
    tg_set_num_threads(3);
    run_chain(x, g, y, three);
    tg_set_num_threads(0);
    assert_memory_equal(one, three, sizeof one);
    tg_tensor_free(x), tg_tensor_free(g);
    tg_index_free(y);
}

static void test_errors(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(2, 5, 3)), "logits");
    tg_index *y = tg_index_new(TG_SHAPE(2, 3));
    y->data[4] = 7; /* position [1, 1] */
    TG_EXPECT_FAIL(tg_cross_entropy(tape, x, y), "tg_cross_entropy", "target 7", "[1, 1]", "C = 5",
                   "(2, 5, 3) 'logits'");
    y->data[4] = -1;
    TG_EXPECT_FAIL(tg_nll_loss(tape, x, y), "tg_nll_loss", "target -1", "[1, 1]", "C = 5");
    y->data[4] = 0;
    tg_index *bad = tg_index_new(TG_SHAPE(2, 4));
    TG_EXPECT_FAIL(tg_cross_entropy(tape, x, bad), "tg_cross_entropy", "targets of shape (2, 4)",
                   "(2, 5, 3) 'logits'", "(2, 3)");
    tg_tensor *x2 = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(4, 3)), "scores");
    tg_index *y3 = tg_index_new(TG_SHAPE(3));
    TG_EXPECT_FAIL(tg_nll_loss(tape, x2, y3), "tg_nll_loss", "(3,)", "(4, 3) 'scores'", "(4,)");
    tg_tensor *w = tg_tensor_named(tg_tensor_ones(TG_SHAPE(4)), "cw");
    tg_loss_options o = tg_loss_defaults();
    o.weight = w;
    TG_EXPECT_FAIL(tg_cross_entropy_ex(tape, x, y, &o), "tg_cross_entropy", "(4,) 'cw'", "(5,)");
    o = tg_loss_defaults();
    o.label_smoothing = (tg_real)1.5;
    TG_EXPECT_FAIL(tg_cross_entropy_ex(tape, x, y, &o), "tg_cross_entropy", "label_smoothing 1.5");
    o.label_smoothing = (tg_real)0.1;
    TG_EXPECT_FAIL(tg_nll_loss_ex(tape, x, y, &o), "tg_nll_loss", "label_smoothing");
    o = tg_loss_defaults();
    o.reduction = (tg_reduction)7;
    TG_EXPECT_FAIL(tg_cross_entropy_ex(tape, x, y, &o), "tg_cross_entropy", "reduction 7");
    tg_tensor *s = tg_tensor_named(tg_tensor_zeros(0, NULL), "s");
    TG_EXPECT_FAIL(tg_cross_entropy(tape, s, y), "tg_cross_entropy", "() 's'", "(N, C)");

    tg_tensor *a = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(2, 3)), "pred");
    tg_tensor *b = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(3, 2)), "target");
    TG_EXPECT_FAIL(tg_mse_loss(tape, a, b, TG_REDUCTION_MEAN), "tg_mse_loss", "(2, 3) 'pred'",
                   "(3, 2) 'target'", "same shape");
    TG_EXPECT_FAIL(tg_bce_with_logits(tape, a, b, NULL), "tg_bce_with_logits", "(2, 3) 'pred'",
                   "(3, 2) 'target'");
    tg_tensor *pw = tg_tensor_named(tg_tensor_ones(TG_SHAPE(2)), "pw");
    o = tg_loss_defaults();
    o.pos_weight = pw;
    TG_EXPECT_FAIL(tg_bce_with_logits(tape, a, a, &o), "tg_bce_with_logits", "pos_weight",
                   "(2,) 'pw'", "(2, 3) 'pred'");
    TG_EXPECT_FAIL(tg_cross_entropy_ex(tape, x, y, &o), "tg_cross_entropy", "pos_weight");
    o = tg_loss_defaults();
    o.weight = pw;
    TG_EXPECT_FAIL(tg_bce_with_logits(tape, a, a, &o), "tg_bce_with_logits", "weight", "(2,) 'pw'");
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(x2), tg_tensor_free(w), tg_tensor_free(s);
    tg_tensor_free(a), tg_tensor_free(b), tg_tensor_free(pw);
    tg_index_free(y), tg_index_free(bad), tg_index_free(y3);
}

/* ---- gradchecks ---- */

typedef struct loss_arg {
    const tg_index *y;
    tg_loss_options o;
} loss_arg;

static tg_tensor *fn_ce(tg_tape *t, tg_tensor *const *in, void *ctx) {
    const loss_arg *a = ctx;
    return tg_cross_entropy_ex(t, in[0], a->y, &a->o);
}
static tg_tensor *fn_nll(tg_tape *t, tg_tensor *const *in, void *ctx) {
    const loss_arg *a = ctx;
    return tg_nll_loss_ex(t, in[0], a->y, &a->o);
}
static tg_tensor *fn_bce(tg_tape *t, tg_tensor *const *in, void *ctx) {
    const loss_arg *a = ctx;
    return tg_bce_with_logits(t, in[0], in[1], &a->o);
}
static tg_tensor *fn_mse(tg_tape *t, tg_tensor *const *in, void *ctx) {
    return tg_mse_loss(t, in[0], in[1], *(const tg_reduction *)ctx);
}

static void test_gradcheck_cross_entropy(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_tensor *x2 = param(1, -2, 2, TG_SHAPE(5, 4), "x2");
    tg_tensor *x1 = param(2, -2, 2, TG_SHAPE(4), "x1");
    tg_tensor *x3 = param(3, -2, 2, TG_SHAPE(2, 4, 3), "x3");
    tg_tensor *w = tg_test_rand(4, 0.2, 2, TG_SHAPE(4));
    tg_index *y2 = targets(5, TG_SHAPE(5), 4, 3, -100), *y1 = targets(6, 0, NULL, 4, 0, -100);
    tg_index *y3 = targets(7, TG_SHAPE(2, 3), 4, 4, -100);
    struct {
        tg_tensor *x;
        tg_index *y;
    } cases[] = {{x2, y2}, {x1, y1}, {x3, y3}};
    for (int c = 0; c < 3; c++)
        for (int red = 0; red < 3; red++)
            for (int ls = 0; ls < 2; ls++)
                for (int wt = 0; wt < 2; wt++) {
                    loss_arg a = {cases[c].y, tg_loss_defaults()};
                    a.o.reduction = (tg_reduction)red;
                    a.o.label_smoothing = ls ? (tg_real)0.2 : 0;
                    a.o.weight = wt ? w : NULL;
                    tg_test_gradcheck(NULL, fn_ce, &a, &cases[c].x, 1);
                    if (!ls) tg_test_gradcheck(NULL, fn_nll, &a, &cases[c].x, 1);
                }
    /* a custom ignore_index that is a valid class */
    tg_index *yc = targets(8, TG_SHAPE(5), 4, 0, -100);
    loss_arg a = {yc, tg_loss_defaults()};
    a.o.ignore_index = yc->data[0];
    a.o.label_smoothing = (tg_real)0.1;
    tg_test_gradcheck(NULL, fn_ce, &a, &x2, 1);
    tg_tensor_free(x1), tg_tensor_free(x2), tg_tensor_free(x3), tg_tensor_free(w);
    tg_index_free(y1), tg_index_free(y2), tg_index_free(y3), tg_index_free(yc);
}

static void test_gradcheck_mse_bce(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_tensor *a = param(1, -2, 2, TG_SHAPE(3, 4), "a"), *b = param(2, -2, 2, TG_SHAPE(3, 4), "b");
    for (int red = 0; red < 3; red++)
        tg_test_gradcheck(NULL, fn_mse, &(tg_reduction){(tg_reduction)red}, (tg_tensor *[]){a, b},
                          2);
    /* BCE: soft targets that get a gradient too; pos_weight and element weight broadcast */
    tg_tensor *x = param(3, -4, 4, TG_SHAPE(2, 3, 4), "x"),
              *y = param(4, 0, 1, TG_SHAPE(2, 3, 4), "y");
    tg_tensor *pw = tg_test_rand(5, 0.5, 3, TG_SHAPE(4)),
              *ew = tg_test_rand(6, 0.2, 2, TG_SHAPE(3, 1));
    for (int red = 0; red < 3; red++)
        for (int variant = 0; variant < 4; variant++) {
            loss_arg la = {NULL, tg_loss_defaults()};
            la.o.reduction = (tg_reduction)red;
            la.o.pos_weight = variant & 1 ? pw : NULL;
            la.o.weight = variant & 2 ? ew : NULL;
            tg_test_gradcheck(NULL, fn_bce, &la, (tg_tensor *[]){x, y}, 2);
        }
    tg_tensor_free(a), tg_tensor_free(b), tg_tensor_free(x), tg_tensor_free(y);
    tg_tensor_free(pw), tg_tensor_free(ew);
}

/* x feeding several losses at once; their values concatenated. */
static tg_tensor *fn_multi(tg_tape *t, tg_tensor *const *in, void *ctx) {
    const tg_index *y = ctx;
    tg_tensor *x = in[0], *z = in[1];
    tg_tensor *parts[4] = {
        tg_reshape(t, tg_cross_entropy(t, x, y), TG_SHAPE(1)),
        tg_reshape(t, tg_nll_loss(t, tg_log_softmax(t, x, -1), y), TG_SHAPE(1)),
        tg_reshape(t, tg_mse_loss(t, x, z, TG_REDUCTION_SUM), TG_SHAPE(1)),
        tg_reshape(t, tg_bce_with_logits(t, z, tg_softmax(t, x, -1), NULL), TG_SHAPE(1)),
    };
    return tg_concat(t, parts, 4, 0);
}

static void test_gradcheck_multi_use(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_tensor *x = param(1, -2, 2, TG_SHAPE(4, 3), "x"), *z = param(2, -2, 2, TG_SHAPE(4, 3), "z");
    tg_index *y = targets(3, TG_SHAPE(4), 3, 0, -100);
    tg_test_gradcheck(NULL, fn_multi, y, (tg_tensor *[]){x, z}, 2);
    tg_tensor_free(x), tg_tensor_free(z);
    tg_index_free(y);
}

/* ---- PyTorch parity ---- */

static tg_parity_tally tally = {TG_OP_PARITY_ATOL, TG_OP_PARITY_RTOL, 0, 0, 0};

static void compare(const tg_fixture *fx, const char *name, const tg_tensor *like,
                    const tg_real *got) {
    tg_parity_tally_compare(&tally, fx, name, like->shape, like->ndim, got);
}

static tg_reduction parse_reduction(const char *s) {
    if (!s || strcmp(s, "mean") == 0) return TG_REDUCTION_MEAN;
    return strcmp(s, "sum") == 0 ? TG_REDUCTION_SUM : TG_REDUCTION_NONE;
}

/* Runs the case's op (from its "op" metadata) with its options; compares out and grads. */
static void parity_case(const char *name) {
    if (!tg_fixture_present(name)) return;
    tg_fixture *fx = tg_fixture_load(name);
    const char *op = tg_fixture_meta(fx, "op");
    assert_non_null(op);
    tg_loss_options o = tg_loss_defaults();
    o.reduction = parse_reduction(tg_fixture_meta(fx, "reduction"));
    const char *ii = tg_fixture_meta(fx, "ignore_index"),
               *ls = tg_fixture_meta(fx, "label_smoothing");
    if (ii) o.ignore_index = atoll(ii);
    if (ls) o.label_smoothing = (tg_real)atof(ls);
    tg_tensor *w = tg_fixture_has(fx, "in.weight") ? tg_fixture_tensor(fx, "in.weight") : NULL;
    tg_tensor *pw =
        tg_fixture_has(fx, "in.pos_weight") ? tg_fixture_tensor(fx, "in.pos_weight") : NULL;
    o.weight = w;
    o.pos_weight = pw;
    tg_tape *tape = tg_tape_new();
    tg_tensor *in0 = NULL, *in1 = NULL, *out = NULL;
    tg_index *y = NULL;
    const char *g0 = NULL, *g1 = NULL;
    if (strcmp(op, "cross_entropy") == 0 || strcmp(op, "log_softmax+nll_loss") == 0) {
        in0 = tg_tensor_requires_grad(tg_fixture_tensor(fx, "in.logits"), true), g0 = "grad.logits";
        y = tg_fixture_index(fx, "in.target");
        out = op[0] == 'c' ? tg_cross_entropy_ex(tape, in0, y, &o)
                           : tg_nll_loss_ex(tape, tg_log_softmax(tape, in0, -1), y, &o);
    } else if (strcmp(op, "nll_loss") == 0) {
        in0 = tg_tensor_requires_grad(tg_fixture_tensor(fx, "in.x"), true), g0 = "grad.x";
        y = tg_fixture_index(fx, "in.target");
        out = tg_nll_loss_ex(tape, in0, y, &o);
    } else if (strcmp(op, "mse_loss") == 0) {
        in0 = tg_tensor_requires_grad(tg_fixture_tensor(fx, "in.a"), true), g0 = "grad.a";
        in1 = tg_tensor_requires_grad(tg_fixture_tensor(fx, "in.b"), true), g1 = "grad.b";
        out = tg_mse_loss(tape, in0, in1, o.reduction);
    } else if (strcmp(op, "binary_cross_entropy_with_logits") == 0) {
        in0 = tg_tensor_requires_grad(tg_fixture_tensor(fx, "in.x"), true), g0 = "grad.x";
        in1 = tg_fixture_tensor(fx, "in.target");
        if (tg_fixture_has(fx, "grad.target"))
            tg_tensor_requires_grad(in1, true), g1 = "grad.target";
        out = tg_bce_with_logits(tape, in0, in1, &o);
    } else {
        fail_msg("parity %s: unknown op %s", name, op);
    }
    compare(fx, "out", out, out->data);
    tg_tensor *g = tg_fixture_tensor(fx, "gout");
    tg_tape_backward_with(tape, out, g->data);
    compare(fx, g0, in0, in0->grad);
    if (g1) compare(fx, g1, in1, in1->grad);
    tg_tensor_free(g);
    tg_tape_free(tape);
    tg_tensor_free(in0), tg_tensor_free(in1), tg_tensor_free(w), tg_tensor_free(pw);
    tg_index_free(y);
    tg_fixture_free(fx);
    tally.cases++;
}

static void test_parity(void **state) {
    (void)state;
    static const char *const cases[] = {
        "op_cross_entropy_mean",
        "op_cross_entropy_sum",
        "op_cross_entropy_none",
        "op_cross_entropy_ignore_mean",
        "op_cross_entropy_ignore_sum",
        "op_cross_entropy_ignore_none",
        "op_cross_entropy_ls_mean",
        "op_cross_entropy_ls_sum",
        "op_cross_entropy_ls_ignore_mean",
        "op_cross_entropy_weight_mean",
        "op_cross_entropy_weight_ignore_mean",
        "op_cross_entropy_weight_ls_ignore_mean",
        "op_cross_entropy_3d_mean",
        "op_nll_loss_mean",
        "op_nll_loss_sum",
        "op_nll_loss_none",
        "op_nll_loss_ignore_mean",
        "op_nll_loss_weight_ignore_mean",
        "op_log_softmax_nll_loss_mean",
        "op_mse_loss_mean",
        "op_mse_loss_sum",
        "op_mse_loss_none",
        "op_bce_with_logits_mean",
        "op_bce_with_logits_sum",
        "op_bce_with_logits_none",
        "op_bce_with_logits_pos_weight_mean",
        "op_bce_with_logits_soft_mean",
        "op_bce_with_logits_pos_weight_soft_mean",
        /* tests/fixturegen/ops_loss_norm_extra.py */
        "op_cross_entropy_unbatched_extra",
        "op_cross_entropy_4d_weight_ls_mean_extra",
        "op_cross_entropy_4d_weight_ls_sum_extra",
        "op_cross_entropy_4d_weight_ls_none_extra",
        "op_cross_entropy_custom_ignore_extra",
        "op_nll_loss_3d_weight_sum_extra",
        "op_bce_with_logits_weight_pos_weight_mean_extra",
        "op_bce_with_logits_weight_pos_weight_none_extra",
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) parity_case(cases[i]);
    tg_parity_tally_print(&tally);
}

static int report(void **state) {
    (void)state;
    print_message("loss: %d gradchecks passed\n", tg_test_gradchecks);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cross_entropy_values),
        cmocka_unit_test(test_cross_entropy_options),
        cmocka_unit_test(test_all_ignored),
        cmocka_unit_test(test_nll_values),
        cmocka_unit_test(test_mse_values),
        cmocka_unit_test(test_bce_values),
        cmocka_unit_test(test_thread_count_invariance),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_gradcheck_cross_entropy),
        cmocka_unit_test(test_gradcheck_mse_bce),
        cmocka_unit_test(test_gradcheck_multi_use),
        cmocka_unit_test(test_parity),
    };
    return cmocka_run_group_tests(tests, NULL, report);
}
