/* Softmax and log-softmax along any dim: stable values ([1000, 1001, 1002]), −inf entries
 * and all −inf rows, non-last dims against a naive reference, gradchecks on dim 0 / 1 / −1,
 * backward through −inf, error messages, PyTorch parity. */
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

/* Naive double reference along dim of x (stable form). */
static void naive_softmax(const tg_tensor *x, int dim, bool log_form, double *y) {
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < dim; i++) outer *= x->shape[i];
    for (int i = dim + 1; i < x->ndim; i++) inner *= x->shape[i];
    const int64_t n = x->shape[dim];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            double m = -INFINITY, s = 0;
            for (int64_t j = 0; j < n; j++) m = fmax(m, (double)x->data[(o * n + j) * inner + i]);
            for (int64_t j = 0; j < n; j++) s += exp((double)x->data[(o * n + j) * inner + i] - m);
            for (int64_t j = 0; j < n; j++) {
                const double v = (double)x->data[(o * n + j) * inner + i] - m;
                y[(o * n + j) * inner + i] = log_form ? v - log(s) : exp(v) / s;
            }
        }
}

static void test_stable_values(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_from_array(TG_SHAPE(3), (tg_real[]){1000, 1001, 1002});
    tg_tensor *y = tg_softmax(tape, x, -1);
    /* e^{-2}, e^{-1}, 1 over their sum */
    tg_test_assert_close_f64(
        "softmax [1000, 1001, 1002]", y->data,
        (double[]){0.09003057317038046, 0.24472847105479767, 0.6652409557748219}, 3, TG_TEST_ATOL,
        TG_TEST_RTOL);
    y = tg_log_softmax(tape, x, 0);
    tg_test_assert_close_f64(
        "log_softmax [1000, 1001, 1002]", y->data,
        (double[]){-2.4076059644443806, -1.4076059644443804, -0.4076059644443803}, 3, TG_TEST_ATOL,
        TG_TEST_RTOL);
    /* very negative values, and rows of a 2-D tensor each summing to 1 */
    tg_tensor *z = tg_test_rand(4, -30, 30, TG_SHAPE(5, 7));
    y = tg_softmax(tape, z, 1);
    for (int r = 0; r < 5; r++) {
        double s = 0;
        for (int c = 0; c < 7; c++) s += (double)y->data[r * 7 + c];
        assert_true(fabs(s - 1) < 1e-6);
    }
    /* a 0-dim tensor: softmax 1, log_softmax 0 */
    tg_tensor *c = tg_tensor_full(0, NULL, 3);
    assert_true(tg_item(tg_softmax(tape, c, 0)) == 1);
    assert_true(tg_item(tg_log_softmax(tape, c, -1)) == 0);
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(z), tg_tensor_free(c);
}

static void test_infinities(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    const tg_real ninf = -INFINITY;
    /* row 0 has a −inf entry, row 1 is all −inf (fully masked) */
    tg_tensor *x = tg_tensor_requires_grad(
        tg_tensor_from_array(TG_SHAPE(2, 3), (tg_real[]){0, ninf, 0, ninf, ninf, ninf}), true);
    tg_tensor *p = tg_softmax(tape, x, -1);
    tg_test_assert_close("softmax, -inf entry", p->data, (tg_real[]){0.5, 0, 0.5}, 3, TG_TEST_ATOL,
                         0);
    for (int i = 3; i < 6; i++) assert_true(isnan(p->data[i]));
    tg_tensor *l = tg_log_softmax(tape, x, 1);
    tg_test_assert_close("log_softmax, -inf entry", l->data,
                         (tg_real[]){-(tg_real)log(2.0), ninf, -(tg_real)log(2.0)}, 3, TG_TEST_ATOL,
                         0);
    for (int i = 3; i < 6; i++) assert_true(isnan(l->data[i]));

    /* backward of row 0: softmax gives the −inf entry no gradient, log_softmax gives it dy */
    tg_tensor *x0 =
        tg_tensor_requires_grad(tg_tensor_from_array(TG_SHAPE(3), (tg_real[]){0, ninf, 0}), true);
    tg_tape_backward_with(tape, tg_softmax(tape, x0, 0), (tg_real[]){1, 2, 3});
    /* dx = y ⊙ (dy − Σ dy⊙y) = [0.5·(1 − 2), 0, 0.5·(3 − 2)] */
    tg_test_assert_close("softmax grad", x0->grad, (tg_real[]){-0.5, 0, 0.5}, 3, TG_TEST_ATOL, 0);
    tg_tensor_zero_grad(x0);
    tg_tape_backward_with(tape, tg_log_softmax(tape, x0, 0), (tg_real[]){1, 2, 3});
    /* dx = dy − softmax·Σdy = [1 − 3, 2 − 0, 3 − 3] */
    tg_test_assert_close("log_softmax grad", x0->grad, (tg_real[]){-2, 2, 0}, 3, TG_TEST_ATOL, 0);
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(x0);
}

/* Every dim of a 3-D tensor (one with more than 64 columns after the softmax dim). */
static void test_any_dim(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_test_rand(5, -5, 5, TG_SHAPE(3, 4, 70));
    static double want[3 * 4 * 70];
    for (int d = 0; d < 3; d++)
        for (int lf = 0; lf < 2; lf++) {
            naive_softmax(x, d, lf, want);
            tg_tensor *y = lf ? tg_log_softmax(tape, x, d - 3) : tg_softmax(tape, x, d);
            tg_test_assert_close_f64(lf ? "log_softmax any dim" : "softmax any dim", y->data, want,
                                     y->numel, TG_TEST_ATOL, TG_TEST_RTOL);
        }
    /* dim 0 of a 2-D tensor equals dim -1 of its transpose */
    tg_tensor *z = tg_test_rand(6, -3, 3, TG_SHAPE(5, 3));
    tg_tensor *a = tg_transpose(tape, tg_softmax(tape, z, 0), 0, 1);
    tg_tensor *b = tg_softmax(tape, tg_transpose(tape, z, 0, 1), -1);
    tg_test_assert_close("dim 0 vs transpose", a->data, b->data, a->numel, TG_TEST_ATOL,
                         TG_TEST_RTOL);
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(z);
}

static void test_errors(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(2, 3)), "scores");
    TG_EXPECT_FAIL(tg_softmax(tape, x, 2), "tg_softmax", "dim 2", "(2, 3) 'scores'", "[-2, 1]");
    TG_EXPECT_FAIL(tg_log_softmax(tape, x, -3), "tg_log_softmax", "dim -3", "(2, 3) 'scores'");
    tg_tensor *c = tg_tensor_named(tg_tensor_zeros(0, NULL), "c");
    TG_EXPECT_FAIL(tg_softmax(tape, c, 1), "tg_softmax", "dim 1", "() 'c'");
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(c);
}

/* ---- gradchecks ---- */

typedef struct sm_arg {
    int dim;
    bool log_form;
} sm_arg;

static tg_tensor *fn_softmax(tg_tape *t, tg_tensor *const *in, void *ctx) {
    const sm_arg *a = ctx;
    return a->log_form ? tg_log_softmax(t, in[0], a->dim) : tg_softmax(t, in[0], a->dim);
}

static void test_gradcheck(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_tensor *x2 = param(1, TG_SHAPE(3, 5), "x2");
    tg_tensor *x3 = param(2, TG_SHAPE(2, 3, 4), "x3");
    tg_tensor *wide = param(3, TG_SHAPE(2, 2, 67), "wide"); /* two column chunks for dim 1 */
    for (int lf = 0; lf < 2; lf++) {
        const sm_arg a0 = {0, lf}, a1 = {1, lf}, am1 = {-1, lf}, am2 = {-2, lf};
        tg_test_gradcheck(NULL, fn_softmax, (void *)&a0, &x2, 1);
        tg_test_gradcheck(NULL, fn_softmax, (void *)&am1, &x2, 1);
        tg_test_gradcheck(NULL, fn_softmax, (void *)&a0, &x3, 1);
        tg_test_gradcheck(NULL, fn_softmax, (void *)&a1, &x3, 1);
        tg_test_gradcheck(NULL, fn_softmax, (void *)&am1, &x3, 1);
        tg_test_gradcheck(NULL, fn_softmax, (void *)&am2, &wide, 1);
    }
    tg_tensor_free(x2), tg_tensor_free(x3), tg_tensor_free(wide);
}

/* x feeding softmax and log_softmax along different dims, results concatenated. */
static tg_tensor *fn_multi(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    tg_tensor *x = in[0];
    return tg_concat(t, (tg_tensor *[]){tg_softmax(t, x, -1), tg_log_softmax(t, x, 0), x}, 3, 1);
}

static void test_gradcheck_multi_use(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_tensor *x = param(7, TG_SHAPE(3, 4), "x");
    tg_test_gradcheck(NULL, fn_multi, NULL, &x, 1);
    tg_tensor_free(x);
}

/* ---- PyTorch parity: op_{softmax,log_softmax}_{2d,3d} ---- */

static tg_parity_tally tally = {TG_OP_PARITY_ATOL, TG_OP_PARITY_RTOL, 0, 0, 0};

static void parity_case(const char *name, bool log_form) {
    if (!tg_fixture_present(name)) return;
    tg_fixture *fx = tg_fixture_load(name);
    tg_tensor *x = tg_tensor_requires_grad(tg_fixture_tensor(fx, "in.x"), true);
    const char *dim_s = tg_fixture_meta(fx, "dim");
    const int dim = dim_s ? atoi(dim_s) : -1;
    tg_tape *tape = tg_tape_new();
    tg_tensor *y = log_form ? tg_log_softmax(tape, x, dim) : tg_softmax(tape, x, dim);
    tg_parity_tally_compare(&tally, fx, "out", y->shape, y->ndim, y->data);
    tg_tensor *g = tg_fixture_tensor(fx, "gout");
    tg_tape_backward_with(tape, y, g->data);
    tg_parity_tally_compare(&tally, fx, "grad.x", x->shape, x->ndim, x->grad);
    tg_tensor_free(g);
    tg_tape_free(tape);
    tg_tensor_free(x);
    tg_fixture_free(fx);
    tally.cases++;
}

static void test_parity(void **state) {
    (void)state;
    parity_case("op_softmax_2d", false);
    parity_case("op_softmax_3d", false);
    parity_case("op_log_softmax_2d", true);
    parity_case("op_log_softmax_3d", true);
    parity_case("op_softmax_dim0_extra", false);
    parity_case("op_log_softmax_dim1_extra", true);
    parity_case("op_softmax_neginf_extra", false);
    parity_case("op_log_softmax_neginf_extra", true);
    tg_parity_tally_print(&tally);
}

static int report(void **state) {
    (void)state;
    print_message("softmax: %d gradchecks passed\n", tg_test_gradchecks);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stable_values), cmocka_unit_test(test_infinities),
        cmocka_unit_test(test_any_dim),       cmocka_unit_test(test_errors),
        cmocka_unit_test(test_gradcheck),     cmocka_unit_test(test_gradcheck_multi_use),
        cmocka_unit_test(test_parity),
    };
    return cmocka_run_group_tests(tests, NULL, report);
}
