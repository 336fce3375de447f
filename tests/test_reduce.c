/* Reductions: sum, mean (all / along a dim, keepdim, negative dims), max along a dim with
 * argmax indices. Forward values, accuracy and determinism of large sums, gradchecks,
 * error messages, PyTorch parity. */
#include "harness.h"

#include <tapegrad/kernels.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static tg_tensor *param(uint64_t seed, int ndim, const int64_t *shape, const char *name) {
    tg_tensor *t = tg_test_rand(seed, -1, 1, ndim, shape);
    tg_tensor_set_name(t, name);
    return tg_tensor_requires_grad(t, true);
}

static void assert_shape(const tg_tensor *t, int ndim, const int64_t *shape) {
    char a[96], b[96];
    bool same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same)
        fail_msg("shape %s, want %s", tg_shape_format(t->ndim, t->shape, a, sizeof a),
                 tg_shape_format(ndim, shape, b, sizeof b));
}

/* Naive reference: y[o, i] = Σ_j x[o, j, i] for x seen as (outer, n, inner). */
static void naive_sum(const tg_tensor *x, int dim, double *y) {
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < dim; i++) outer *= x->shape[i];
    for (int i = dim + 1; i < x->ndim; i++) inner *= x->shape[i];
    const int64_t n = x->shape[dim];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            double s = 0;
            for (int64_t j = 0; j < n; j++) s += (double)x->data[(o * n + j) * inner + i];
            y[o * inner + i] = s;
        }
}

/* ---- values ---- */

static void test_sum_mean_all(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_from_array(TG_SHAPE(2, 3), (tg_real[]){1, 2, 3, 4, 5, 6});
    tg_tensor *s = tg_sum(tape, x), *m = tg_mean(tape, x);
    assert_int_equal(s->ndim, 0);
    assert_int_equal(m->ndim, 0);
    assert_true(tg_item(s) == 21);
    assert_true(tg_item(m) == (tg_real)3.5);
    /* the mean of nothing is NaN, the sum 0 (as in PyTorch) */
    tg_tensor *e = tg_tensor_zeros(TG_SHAPE(0, 3));
    assert_true(tg_item(tg_sum(tape, e)) == 0);
    assert_true(isnan(tg_item(tg_mean(tape, e))));
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(e);
}

static void test_sum_mean_dim(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_from_array(TG_SHAPE(2, 3), (tg_real[]){1, 2, 3, 4, 5, 6});
    tg_tensor *y = tg_sum_dim(tape, x, 0, false);
    assert_shape(y, TG_SHAPE(3));
    tg_test_assert_close("sum dim 0", y->data, (tg_real[]){5, 7, 9}, 3, 0, 0);
    y = tg_sum_dim(tape, x, -1, true);
    assert_shape(y, TG_SHAPE(2, 1));
    tg_test_assert_close("sum dim -1", y->data, (tg_real[]){6, 15}, 2, 0, 0);
    y = tg_mean_dim(tape, x, 1, false);
    assert_shape(y, TG_SHAPE(2));
    tg_test_assert_close("mean dim 1", y->data, (tg_real[]){2, 5}, 2, 0, 0);
    y = tg_mean_dim(tape, x, -2, true);
    assert_shape(y, TG_SHAPE(1, 3));
    tg_test_assert_close("mean dim -2", y->data, (tg_real[]){2.5, 3.5, 4.5}, 3, 0, 0);

    /* every dim of a 4-D tensor, with more than one chunk of columns (inner > 64) */
    tg_tensor *z = tg_test_rand(3, -1, 1, TG_SHAPE(3, 5, 2, 70));
    double want[3 * 5 * 2 * 70];
    for (int d = 0; d < 4; d++) {
        naive_sum(z, d, want);
        for (int keep = 0; keep < 2; keep++) {
            y = tg_sum_dim(tape, z, d - 4 * keep, keep); /* negative dims when keepdim */
            assert_int_equal(y->ndim, keep ? 4 : 3);
            assert_int_equal(y->numel, z->numel / z->shape[d]);
            if (keep) assert_int_equal(y->shape[d], 1);
            tg_test_assert_close_f64("sum_dim 4-D", y->data, want, y->numel, TG_TEST_ATOL,
                                     TG_TEST_RTOL);
            y = tg_mean_dim(tape, z, d, keep);
            for (int64_t i = 0; i < y->numel; i++) want[i] /= (double)z->shape[d];
            tg_test_assert_close_f64("mean_dim 4-D", y->data, want, y->numel, TG_TEST_ATOL,
                                     TG_TEST_RTOL);
            for (int64_t i = 0; i < y->numel; i++) want[i] *= (double)z->shape[d];
        }
    }
    /* a 0-dim tensor reduces over dim 0 or -1 to itself, as in PyTorch */
    tg_tensor *c = tg_tensor_full(0, NULL, 7);
    y = tg_sum_dim(tape, c, -1, true);
    assert_int_equal(y->ndim, 0);
    assert_true(tg_item(y) == 7);
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(z), tg_tensor_free(c);
}

/* Large sums stay accurate (double accumulation) and are the same whichever path sums them. */
static void test_large_sums(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    const int64_t n = 3000000;
    tg_tensor *x = tg_tensor_full(TG_SHAPE(n), (tg_real)0.1);
    /* naive float32 accumulation would be off by about 2 %; here: within float rounding */
    const double want = (double)(tg_real)0.1 * (double)n;
    assert_true(fabs((double)tg_item(tg_sum(tape, x)) - want) <= 1e-6 * want);
    assert_true(fabs((double)tg_item(tg_mean(tape, x)) - (double)(tg_real)0.1) <= 1e-7);
    /* random data: tg_sum (blocks shared between threads) == tg_sum_dim (one row) exactly */
    tg_tensor *r = tg_test_rand(11, -1, 1, TG_SHAPE(n));
    const tg_real a = tg_item(tg_sum(tape, r)), b = tg_item(tg_sum_dim(tape, r, 0, false));
    assert_true(a == b);
    tg_tensor *r2 = tg_test_rand(12, -1, 1, TG_SHAPE(1000, 300));
    double want2[300];
    naive_sum(r2, 0, want2);
    tg_test_assert_close_f64("sum over 1000 rows", tg_sum_dim(tape, r2, 0, false)->data, want2, 300,
                             TG_TEST_ATOL, TG_TEST_RTOL);
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(r), tg_tensor_free(r2);
}

static void test_max_dim(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    /* ties: the first maximal element wins, and gets the whole gradient */
    tg_tensor *x = tg_tensor_requires_grad(
        tg_tensor_from_array(TG_SHAPE(2, 4), (tg_real[]){3, 1, 3, 2, -1, 5, 0, 5}), true);
    tg_index *ix = NULL;
    tg_tensor *y = tg_max_dim(tape, x, 1, false, &ix);
    assert_shape(y, TG_SHAPE(2));
    tg_test_assert_close("max values", y->data, (tg_real[]){3, 5}, 2, 0, 0);
    assert_int_equal(ix->ndim, 1);
    assert_int_equal(ix->data[0], 0);
    assert_int_equal(ix->data[1], 1);
    tg_tape_backward_with(tape, y, (tg_real[]){10, 20});
    tg_test_assert_close("max grad", x->grad, (tg_real[]){10, 0, 0, 0, 0, 20, 0, 0}, 8, 0, 0);

    /* dim 0 with keepdim, indices shaped like the output */
    y = tg_max_dim(tape, x, 0, true, &ix);
    assert_shape(y, TG_SHAPE(1, 4));
    tg_test_assert_close("max dim 0", y->data, (tg_real[]){3, 5, 3, 5}, 4, 0, 0);
    assert_int_equal(ix->ndim, 2);
    const int32_t want_ix[] = {0, 1, 0, 1};
    for (int i = 0; i < 4; i++) assert_int_equal(ix->data[i], want_ix[i]);
    /* no indices requested */
    y = tg_max_dim(tape, x, -1, true, NULL);
    assert_shape(y, TG_SHAPE(2, 1));

    /* NaN counts as the maximum (PyTorch propagates it) */
    tg_tensor *n = tg_tensor_from_array(TG_SHAPE(3), (tg_real[]){1, NAN, 2});
    y = tg_max_dim(tape, n, 0, false, &ix);
    assert_true(isnan(tg_item(y)));
    assert_int_equal(ix->data[0], 1);
    /* -inf everywhere: the max is -inf, index 0 */
    tg_tensor *ni = tg_tensor_full(TG_SHAPE(3), -INFINITY);
    y = tg_max_dim(tape, ni, 0, false, &ix);
    assert_true(isinf(tg_item(y)) && tg_item(y) < 0);
    assert_int_equal(ix->data[0], 0);
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(n), tg_tensor_free(ni);
}

/* Editing the returned indices does not change the gradient (backward keeps its own copy). */
static void test_max_indices_are_a_copy(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x =
        tg_tensor_requires_grad(tg_tensor_from_array(TG_SHAPE(3), (tg_real[]){1, 4, 2}), true);
    tg_index *ix = NULL;
    tg_tensor *y = tg_max_dim(tape, x, 0, false, &ix);
    ix->data[0] = 2;
    tg_tape_backward(tape, y);
    tg_test_assert_close("grad", x->grad, (tg_real[]){0, 1, 0}, 3, 0, 0);
    tg_tape_free(tape);
    tg_tensor_free(x);
}

/* Results do not depend on the thread count: bit-identical with 1 and 3 threads. */
static void run_reductions(const tg_tensor *x, tg_real *out) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *xx = (tg_tensor *)x;
    out[0] = tg_item(tg_sum(tape, xx));
    out[1] = tg_item(tg_mean(tape, xx));
    memcpy(out + 2, tg_sum_dim(tape, xx, 0, false)->data, 500 * sizeof(tg_real));
    memcpy(out + 502, tg_mean_dim(tape, xx, 1, false)->data, 300 * sizeof(tg_real));
    memcpy(out + 802, tg_max_dim(tape, xx, 0, false, NULL)->data, 500 * sizeof(tg_real));
    tg_tape_free(tape);
}

static void test_thread_count_invariance(void **state) {
    (void)state;
    tg_tensor *x = tg_test_rand(21, -1, 1, TG_SHAPE(300, 500));
    static tg_real one[1302], three[1302];
    tg_set_num_threads(1);
    run_reductions(x, one);
    tg_set_num_threads(3);
    run_reductions(x, three);
    tg_set_num_threads(0);
    assert_memory_equal(one, three, sizeof one);
    tg_tensor_free(x);
}

static void test_errors(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(2, 3)), "x");
    TG_EXPECT_FAIL(tg_sum_dim(tape, x, 2, false), "tg_sum_dim", "dim 2", "(2, 3) 'x'", "[-2, 1]");
    TG_EXPECT_FAIL(tg_mean_dim(tape, x, -3, true), "tg_mean_dim", "dim -3", "(2, 3) 'x'");
    TG_EXPECT_FAIL(tg_max_dim(tape, x, 5, false, NULL), "tg_max_dim", "dim 5", "'x'");
    tg_tensor *e = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(2, 0)), "empty");
    TG_EXPECT_FAIL(tg_max_dim(tape, e, 1, false, NULL), "tg_max_dim", "size 0", "(2, 0) 'empty'");
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(e);
}

/* ---- gradchecks ---- */

typedef struct dim_arg {
    int dim;
    bool keepdim;
} dim_arg;

static tg_tensor *fn_sum(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_sum(t, in[0]);
}
static tg_tensor *fn_mean(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_mean(t, in[0]);
}
static tg_tensor *fn_sum_dim(tg_tape *t, tg_tensor *const *in, void *ctx) {
    const dim_arg *a = ctx;
    return tg_sum_dim(t, in[0], a->dim, a->keepdim);
}
static tg_tensor *fn_mean_dim(tg_tape *t, tg_tensor *const *in, void *ctx) {
    const dim_arg *a = ctx;
    return tg_mean_dim(t, in[0], a->dim, a->keepdim);
}
static tg_tensor *fn_max_dim(tg_tape *t, tg_tensor *const *in, void *ctx) {
    const dim_arg *a = ctx;
    tg_index *ix;
    return tg_max_dim(t, in[0], a->dim, a->keepdim, &ix);
}

static void test_gradcheck_sum_mean(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_tensor *x = param(1, TG_SHAPE(2, 3, 4), "x");
    tg_test_gradcheck(NULL, fn_sum, NULL, &x, 1);
    tg_test_gradcheck(NULL, fn_mean, NULL, &x, 1);
    const dim_arg args[] = {{0, false}, {1, true}, {2, false}, {-1, true}, {-2, false}, {-3, true}};
    for (size_t i = 0; i < sizeof args / sizeof *args; i++) {
        tg_test_gradcheck(NULL, fn_sum_dim, (void *)&args[i], &x, 1);
        tg_test_gradcheck(NULL, fn_mean_dim, (void *)&args[i], &x, 1);
    }
    tg_tensor_free(x);
}

static void test_gradcheck_max(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    /* distinct values (no ties): a shuffled grid */
    tg_tensor *x = tg_tensor_new(TG_SHAPE(3, 4, 5));
    for (int64_t i = 0; i < x->numel; i++) x->data[i] = (tg_real)((i * 37) % 60) * 0.1 - 3;
    tg_tensor_requires_grad(x, true);
    const dim_arg args[] = {{0, false}, {1, true}, {-1, false}, {2, true}};
    for (size_t i = 0; i < sizeof args / sizeof *args; i++)
        tg_test_gradcheck(NULL, fn_max_dim, (void *)&args[i], &x, 1);
    tg_tensor_free(x);
}

/* One tensor feeding several reductions: concat(sum_dim, max_dim, mean_dim, sum) of x. */
static tg_tensor *fn_multi(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    tg_tensor *x = in[0];
    tg_tensor *parts[4] = {tg_sum_dim(t, x, 0, false), tg_max_dim(t, x, 0, false, NULL),
                           tg_mean_dim(t, x, -2, false),
                           tg_reshape(t, tg_sum(t, tg_sum_dim(t, x, 1, true)), TG_SHAPE(1))};
    return tg_concat(t, parts, 4, 0);
}

static void test_gradcheck_multi_use(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_tensor *x = param(5, TG_SHAPE(4, 3), "x");
    tg_test_gradcheck(NULL, fn_multi, NULL, &x, 1);
    tg_tensor_free(x);
}

/* ---- PyTorch parity (tests/fixtures/op_*.safetensors) ---- */

static tg_parity_tally tally = {TG_OP_PARITY_ATOL, TG_OP_PARITY_RTOL, 0, 0, 0};

/* case names: op_{sum,mean}_all, op_{sum,mean}_dim{0,1,m1}[_keepdim], op_max_dim{1,m1,0_keepdim} */
static bool parity_case(const char *name) {
    if (!tg_fixture_present(name)) return false;
    tg_fixture *fx = tg_fixture_load(name);
    tg_tensor *x = tg_tensor_requires_grad(tg_fixture_tensor(fx, "in.x"), true);
    const char *op = tg_fixture_meta(fx, "op"), *dim_s = tg_fixture_meta(fx, "dim"),
               *keep_s = tg_fixture_meta(fx, "keepdim");
    assert_non_null(op);
    const bool all = dim_s && strcmp(dim_s, "all") == 0;
    const int dim = dim_s && !all ? atoi(dim_s) : 0;
    const bool keep = keep_s && (strcmp(keep_s, "1") == 0 || strcmp(keep_s, "True") == 0);
    tg_tape *tape = tg_tape_new();
    if (strcmp(op, "max") == 0) {
        tg_index *ix = NULL;
        tg_tensor *v = tg_max_dim(tape, x, dim, keep, &ix);
        tg_parity_tally_compare(&tally, fx, "out.values", v->shape, v->ndim, v->data);
        tg_index *want = tg_fixture_index(fx, "out.indices");
        assert_int_equal(want->numel, ix->numel);
        for (int64_t i = 0; i < ix->numel; i++) assert_int_equal(ix->data[i], want->data[i]);
        tg_index_free(want);
        tg_tensor *g = tg_fixture_tensor(fx, "gout.values");
        tg_tape_backward_with(tape, v, g->data);
        tg_tensor_free(g);
    } else {
        const bool mean = strcmp(op, "mean") == 0;
        tg_tensor *y =
            all ? (mean ? tg_mean(tape, x) : tg_sum(tape, x))
                : (mean ? tg_mean_dim(tape, x, dim, keep) : tg_sum_dim(tape, x, dim, keep));
        tg_parity_tally_compare(&tally, fx, "out", y->shape, y->ndim, y->data);
        tg_tensor *g = tg_fixture_tensor(fx, "gout");
        tg_tape_backward_with(tape, y, g->data);
        tg_tensor_free(g);
    }
    tg_parity_tally_compare(&tally, fx, "grad.x", x->shape, x->ndim, x->grad);
    tg_tape_free(tape);
    tg_tensor_free(x);
    tg_fixture_free(fx);
    tally.cases++;
    return true;
}

static void test_parity(void **state) {
    (void)state;
    const char *ops[] = {"sum", "mean"}, *dims[] = {"0", "1", "m1"};
    char name[64];
    for (int o = 0; o < 2; o++) {
        snprintf(name, sizeof name, "op_%s_all", ops[o]);
        parity_case(name);
        for (int d = 0; d < 3; d++)
            for (int k = 0; k < 2; k++) {
                snprintf(name, sizeof name, "op_%s_dim%s%s", ops[o], dims[d], k ? "_keepdim" : "");
                parity_case(name);
            }
    }
    parity_case("op_max_dim1");
    parity_case("op_max_dimm1");
    parity_case("op_max_dim0_keepdim");
    tg_parity_tally_print(&tally);
}

static int report(void **state) {
    (void)state;
    print_message("reduce: %d gradchecks passed\n", tg_test_gradchecks);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sum_mean_all),
        cmocka_unit_test(test_sum_mean_dim),
        cmocka_unit_test(test_large_sums),
        cmocka_unit_test(test_max_dim),
        cmocka_unit_test(test_max_indices_are_a_copy),
        cmocka_unit_test(test_thread_count_invariance),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_gradcheck_sum_mean),
        cmocka_unit_test(test_gradcheck_max),
        cmocka_unit_test(test_gradcheck_multi_use),
        cmocka_unit_test(test_parity),
    };
    return cmocka_run_group_tests(tests, NULL, report);
}
