/* Layer norm: hand-checked values, a constant row gives β, a naive reference over one and
 * two normalised dims, gradchecks with and without affine on 2-D and 3-D inputs, error
 * messages, PyTorch parity. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static tg_tensor *param(uint64_t seed, int ndim, const int64_t *shape, const char *name) {
    tg_tensor *t = tg_test_rand(seed, -2, 2, ndim, shape);
    tg_tensor_set_name(t, name);
    return tg_tensor_requires_grad(t, true);
}

/* Naive double reference over rows of M elements. */
static void naive_layer_norm(const tg_tensor *x, int64_t M, const tg_tensor *w, const tg_tensor *b,
                             double eps, double *y) {
    for (int64_t r = 0; r < x->numel / M; r++) {
        const tg_real *xr = x->data + r * M;
        double mu = 0, var = 0;
        for (int64_t j = 0; j < M; j++) mu += (double)xr[j];
        mu /= (double)M;
        for (int64_t j = 0; j < M; j++) var += ((double)xr[j] - mu) * ((double)xr[j] - mu);
        var /= (double)M;
        for (int64_t j = 0; j < M; j++) {
            double v = ((double)xr[j] - mu) / sqrt(var + eps);
            if (w) v *= (double)w->data[j];
            if (b) v += (double)b->data[j];
            y[r * M + j] = v;
        }
    }
}

static void test_values(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    /* [1, 2, 3, 4]: μ = 2.5, σ² = 1.25, eps 0 -> (x − 2.5)/√1.25 */
    tg_tensor *x = tg_tensor_from_array(TG_SHAPE(1, 4), (tg_real[]){1, 2, 3, 4});
    tg_tensor *y = tg_layer_norm(tape, x, 1, NULL, NULL, 0);
    const double s = 1 / sqrt(1.25);
    tg_test_assert_close_f64("layer_norm [1,2,3,4]", y->data,
                             (double[]){-1.5 * s, -0.5 * s, 0.5 * s, 1.5 * s}, 4, TG_TEST_ATOL,
                             TG_TEST_RTOL);
    assert_int_equal(y->ndim, 2);
    /* a constant row gives β (x − μ = 0 exactly) */
    tg_tensor *c = tg_tensor_full(TG_SHAPE(2, 3), 7);
    tg_tensor *w = tg_tensor_from_array(TG_SHAPE(3), (tg_real[]){2, 3, 4});
    tg_tensor *b = tg_tensor_from_array(TG_SHAPE(3), (tg_real[]){0.5, -1, 2});
    y = tg_layer_norm(tape, c, 1, w, b, (tg_real)1e-5);
    tg_test_assert_close("constant rows", y->data, (tg_real[]){0.5, -1, 2, 0.5, -1, 2}, 6, 0, 0);
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(c), tg_tensor_free(w), tg_tensor_free(b);
}

static void test_reference(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    static double want[4 * 3 * 70];
    tg_tensor *x = tg_test_rand(1, -3, 5, TG_SHAPE(4, 3, 70));
    /* over the last dim, affine */
    tg_tensor *w = tg_test_rand(2, 0.5, 1.5, TG_SHAPE(70)),
              *b = tg_test_rand(3, -1, 1, TG_SHAPE(70));
    naive_layer_norm(x, 70, w, b, 1e-5, want);
    tg_tensor *y = tg_layer_norm(tape, x, 1, w, b, (tg_real)1e-5);
    tg_test_assert_close_f64("last dim, affine", y->data, want, y->numel, 10 * TG_TEST_ATOL,
                             10 * TG_TEST_RTOL);
    /* over the last two dims, weight only, then bias only */
    tg_tensor *w2 = tg_test_rand(4, 0.5, 1.5, TG_SHAPE(3, 70)),
              *b2 = tg_test_rand(5, -1, 1, TG_SHAPE(3, 70));
    naive_layer_norm(x, 210, w2, NULL, 1e-3, want);
    y = tg_layer_norm(tape, x, 2, w2, NULL, (tg_real)1e-3);
    tg_test_assert_close_f64("two dims, weight", y->data, want, y->numel, 10 * TG_TEST_ATOL,
                             10 * TG_TEST_RTOL);
    naive_layer_norm(x, 210, NULL, b2, 1e-5, want);
    y = tg_layer_norm(tape, x, 2, NULL, b2, (tg_real)1e-5);
    tg_test_assert_close_f64("two dims, bias", y->data, want, y->numel, 10 * TG_TEST_ATOL,
                             10 * TG_TEST_RTOL);
    /* all dims */
    naive_layer_norm(x, x->numel, NULL, NULL, 1e-5, want);
    y = tg_layer_norm(tape, x, 3, NULL, NULL, (tg_real)1e-5);
    tg_test_assert_close_f64("all dims", y->data, want, y->numel, 10 * TG_TEST_ATOL,
                             10 * TG_TEST_RTOL);
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(w), tg_tensor_free(b), tg_tensor_free(w2), tg_tensor_free(b2);
}

/* With a constant upstream gradient, dx is 0 (the output's row sum does not depend on x
 * when there is no weight), and dβ counts the rows. */
static void test_backward_identities(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_requires_grad(tg_test_rand(8, -2, 2, TG_SHAPE(3, 4)), true);
    tg_tensor *b = tg_tensor_requires_grad(tg_tensor_zeros(TG_SHAPE(4)), true);
    tg_tensor *y = tg_layer_norm(tape, x, 1, NULL, b, (tg_real)1e-5);
    tg_real ones[12];
    for (int i = 0; i < 12; i++) ones[i] = 1;
    tg_tape_backward_with(tape, y, ones);
    tg_test_assert_close("dx", x->grad, (tg_real[12]){0}, 12, 1e-6, 0);
    tg_test_assert_close("dbeta", b->grad, (tg_real[]){3, 3, 3, 3}, 4, 0, 0);
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(b);
}

static void test_errors(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(2, 3, 4)), "h");
    tg_tensor *w = tg_tensor_named(tg_tensor_ones(TG_SHAPE(3)), "ln.weight");
    tg_tensor *b = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(3, 4)), "ln.bias");
    TG_EXPECT_FAIL(tg_layer_norm(tape, x, 1, w, NULL, (tg_real)1e-5), "tg_layer_norm", "weight",
                   "(3,) 'ln.weight'", "(4,)", "(2, 3, 4) 'h'");
    TG_EXPECT_FAIL(tg_layer_norm(tape, x, 1, NULL, b, (tg_real)1e-5), "tg_layer_norm", "bias",
                   "(3, 4) 'ln.bias'", "(4,)");
    TG_EXPECT_FAIL(tg_layer_norm(tape, x, 2, w, b, (tg_real)1e-5), "tg_layer_norm", "weight",
                   "(3, 4)", "last 2 dims");
    TG_EXPECT_FAIL(tg_layer_norm(tape, x, 0, NULL, NULL, (tg_real)1e-5), "tg_layer_norm",
                   "norm_ndim 0", "(2, 3, 4) 'h'");
    TG_EXPECT_FAIL(tg_layer_norm(tape, x, 4, NULL, NULL, (tg_real)1e-5), "tg_layer_norm",
                   "norm_ndim 4");
    TG_EXPECT_FAIL(tg_layer_norm(tape, x, 1, NULL, NULL, -1), "tg_layer_norm", "eps");
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(w), tg_tensor_free(b);
}

/* ---- gradchecks: inputs {x, weight or NULL, bias or NULL} ---- */

static tg_tensor *fn_ln(tg_tape *t, tg_tensor *const *in, void *ctx) {
    const int norm_ndim = *(const int *)ctx;
    return tg_layer_norm(t, in[0], norm_ndim, in[1], in[2], (tg_real)1e-5);
}

/* gradcheck wants real tensors: the NULL slots are passed through ctx-free wrappers */
static tg_tensor *fn_ln_noaffine(tg_tape *t, tg_tensor *const *in, void *ctx) {
    return tg_layer_norm(t, in[0], *(const int *)ctx, NULL, NULL, (tg_real)1e-5);
}
static tg_tensor *fn_ln_weight_only(tg_tape *t, tg_tensor *const *in, void *ctx) {
    return tg_layer_norm(t, in[0], *(const int *)ctx, in[1], NULL, (tg_real)1e-5);
}
static tg_tensor *fn_ln_bias_only(tg_tape *t, tg_tensor *const *in, void *ctx) {
    return tg_layer_norm(t, in[0], *(const int *)ctx, NULL, in[1], (tg_real)1e-5);
}

static void test_gradcheck(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    int one = 1, two = 2;
    /* 2-D, affine and not */
    tg_tensor *x2 = param(1, TG_SHAPE(3, 5), "x2");
    tg_tensor *w5 = param(2, TG_SHAPE(5), "w5"), *b5 = param(3, TG_SHAPE(5), "b5");
    tg_test_gradcheck(NULL, fn_ln, &one, (tg_tensor *[]){x2, w5, b5}, 3);
    tg_test_gradcheck(NULL, fn_ln_noaffine, &one, (tg_tensor *[]){x2}, 1);
    /* 3-D over the last dim, affine and not; weight only; bias only */
    tg_tensor *x3 = param(4, TG_SHAPE(2, 3, 4), "x3");
    tg_tensor *w4 = param(5, TG_SHAPE(4), "w4"), *b4 = param(6, TG_SHAPE(4), "b4");
    tg_test_gradcheck(NULL, fn_ln, &one, (tg_tensor *[]){x3, w4, b4}, 3);
    tg_test_gradcheck(NULL, fn_ln_noaffine, &one, (tg_tensor *[]){x3}, 1);
    tg_test_gradcheck(NULL, fn_ln_weight_only, &one, (tg_tensor *[]){x3, w4}, 2);
    tg_test_gradcheck(NULL, fn_ln_bias_only, &one, (tg_tensor *[]){x3, b4}, 2);
    /* 3-D over the last two dims (norm_ndim 2), affine and not */
    tg_tensor *w34 = param(7, TG_SHAPE(3, 4), "w34"), *b34 = param(8, TG_SHAPE(3, 4), "b34");
    tg_test_gradcheck(NULL, fn_ln, &two, (tg_tensor *[]){x3, w34, b34}, 3);
    tg_test_gradcheck(NULL, fn_ln_noaffine, &two, (tg_tensor *[]){x3}, 1);
    /* only the affine parameters need a gradient (x is data) */
    tg_tensor_requires_grad(x3, false);
    tg_test_gradcheck(NULL, fn_ln, &one, (tg_tensor *[]){x3, w4, b4}, 3);
    tg_tensor_free(x2), tg_tensor_free(w5), tg_tensor_free(b5), tg_tensor_free(x3);
    tg_tensor_free(w4), tg_tensor_free(b4), tg_tensor_free(w34), tg_tensor_free(b34);
}

/* The same x normalised twice (two layer norms), and its normalised copy normalised again
 * with the weight used as a bias too: x and w each feed several ops. */
static tg_tensor *fn_multi(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    tg_tensor *x = in[0], *w = in[1];
    tg_tensor *a = tg_layer_norm(t, x, 1, w, NULL, (tg_real)1e-5);
    tg_tensor *b = tg_layer_norm(t, a, 1, w, w, (tg_real)1e-5);
    return tg_concat(t, (tg_tensor *[]){a, b, tg_layer_norm(t, x, 2, NULL, NULL, (tg_real)1e-5)}, 3,
                     0);
}

static void test_gradcheck_multi_use(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_tensor *x = param(9, TG_SHAPE(3, 4), "x"), *w = param(10, TG_SHAPE(4), "w");
    tg_test_gradcheck(NULL, fn_multi, NULL, (tg_tensor *[]){x, w}, 2);
    tg_tensor_free(x), tg_tensor_free(w);
}

/* ---- PyTorch parity: op_layer_norm_{2d,3d}, and the extra cases ---- */

static tg_parity_tally tally = {TG_OP_PARITY_ATOL, TG_OP_PARITY_RTOL, 0, 0, 0};

static void compare(const tg_fixture *fx, const char *name, const tg_tensor *like,
                    const tg_real *got) {
    tg_parity_tally_compare(&tally, fx, name, like->shape, like->ndim, got);
}

static void parity_case(const char *name, int norm_ndim) {
    if (!tg_fixture_present(name)) return;
    tg_fixture *fx = tg_fixture_load(name);
    tg_tensor *x = tg_tensor_requires_grad(tg_fixture_tensor(fx, "in.x"), true);
    tg_tensor *w = tg_fixture_has(fx, "in.weight")
                       ? tg_tensor_requires_grad(tg_fixture_tensor(fx, "in.weight"), true)
                       : NULL;
    tg_tensor *b = tg_fixture_has(fx, "in.bias")
                       ? tg_tensor_requires_grad(tg_fixture_tensor(fx, "in.bias"), true)
                       : NULL;
    const char *eps_s = tg_fixture_meta(fx, "eps");
    tg_tape *tape = tg_tape_new();
    tg_tensor *y = tg_layer_norm(tape, x, norm_ndim, w, b, (tg_real)(eps_s ? atof(eps_s) : 1e-5));
    compare(fx, "out", y, y->data);
    tg_tensor *g = tg_fixture_tensor(fx, "gout");
    tg_tape_backward_with(tape, y, g->data);
    compare(fx, "grad.x", x, x->grad);
    if (w) compare(fx, "grad.weight", w, w->grad);
    if (b) compare(fx, "grad.bias", b, b->grad);
    tg_tensor_free(g);
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(w), tg_tensor_free(b);
    tg_fixture_free(fx);
    tally.cases++;
}

static void test_parity(void **state) {
    (void)state;
    parity_case("op_layer_norm_2d", 1);
    parity_case("op_layer_norm_3d", 1);
    parity_case("op_layer_norm_noaffine_extra", 1);
    parity_case("op_layer_norm_2dims_extra", 2);
    tg_parity_tally_print(&tally);
}

static int report(void **state) {
    (void)state;
    print_message("norm: %d gradchecks passed\n", tg_test_gradchecks);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_reference),
        cmocka_unit_test(test_backward_identities),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_gradcheck_multi_use),
        cmocka_unit_test(test_parity),
    };
    return cmocka_run_group_tests(tests, NULL, report);
}
