/* The fused transformer-layer ops tg_linear_relu_dropout and tg_linear_dropout_add: the
 * values and gradients of the chains of single ops they replace (tg_linear, tg_relu,
 * tg_dropout, tg_add, with the same generator), hand-computed values, bit-identical results at 1
 * and 2 threads, float64 gradchecks, error messages and PyTorch parity
 * (tests/fixturegen/ops_fused.py). */
#include "harness.h"

#include <tapegrad/kernels.h>

#include <string.h>

static tg_tensor *leaf(uint64_t seed, int ndim, const int64_t *shape) {
    return tg_tensor_requires_grad(tg_test_rand(seed, -1, 1, ndim, shape), true);
}

/* every element equal (== : a dropped gradient may be +0 in one and -0 in the other) */
static void assert_equal(const char *what, const tg_real *a, const tg_real *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!(a[i] == b[i]))
            fail_msg("%s: element %lld differs: %.17g vs %.17g", what, (long long)i, (double)a[i],
                     (double)b[i]);
}

typedef struct drop_case {
    double p;
    bool training;
} drop_case;

static const drop_case cases[] = {{0.3, true}, {0.5, false}, {0, true}, {1, true}};

/* y = fused or chained op on (x, W, b) or (x, a, W, b); backward from a fixed upstream gradient;
 * returns y's values and leaves the gradients in the leaves. */
static tg_tensor *lrd_run(bool fused, tg_tensor *const *in, const drop_case *c, tg_tape *t) {
    tg_rng rng;
    tg_rng_seed(&rng, 77);
    if (fused)
        return tg_linear_relu_dropout(t, in[0], in[1], in[2], (tg_real)c->p, c->training, &rng);
    tg_tensor *h = tg_relu(t, tg_linear(t, in[0], in[1], in[2]));
    return tg_dropout(t, h, (tg_real)c->p, c->training, &rng);
}

static tg_tensor *lda_run(bool fused, tg_tensor *const *in, const drop_case *c, tg_tape *t) {
    tg_rng rng;
    tg_rng_seed(&rng, 78);
    if (fused)
        return tg_linear_dropout_add(t, in[0], in[1], in[2], in[3], (tg_real)c->p, c->training,
                                     &rng);
    tg_tensor *h = tg_linear(t, in[1], in[2], in[3]);
    return tg_add(t, in[0], tg_dropout(t, h, (tg_real)c->p, c->training, &rng));
}

typedef tg_tensor *(*run_fn)(bool fused, tg_tensor *const *in, const drop_case *c, tg_tape *t);

/* values and every input gradient of the fused op equal the chain's */
static void check_matches_chain(const char *what, run_fn run, tg_tensor *const *in, int n) {
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        tg_real *want[2][5] = {{0}};
        for (int fused = 0; fused < 2; fused++) {
            tg_tape *t = tg_tape_new();
            for (int i = 0; i < n; i++)
                if (in[i]) tg_tensor_zero_grad(in[i]);
            tg_tensor *y = run(fused, in, &cases[k], t);
            tg_tensor *g = tg_test_rand(5, -1, 1, y->ndim, y->shape);
            want[fused][4] = tg_xmalloc((size_t)y->numel * sizeof(tg_real));
            memcpy(want[fused][4], y->data, (size_t)y->numel * sizeof(tg_real));
            tg_tape_backward_with(t, y, g->data);
            for (int i = 0; i < n; i++) {
                if (!in[i]) continue;
                want[fused][i] = tg_xmalloc((size_t)in[i]->numel * sizeof(tg_real));
                memcpy(want[fused][i], in[i]->grad, (size_t)in[i]->numel * sizeof(tg_real));
            }
            if (fused) assert_equal(what, want[1][4], want[0][4], y->numel);
            tg_tensor_free(g);
            tg_tape_free(t);
        }
        for (int i = 0; i < n; i++)
            if (in[i]) assert_equal(what, want[1][i], want[0][i], in[i]->numel);
        for (int i = 0; i < 5; i++) free(want[0][i]), free(want[1][i]);
    }
}

static void test_matches_chain(void **state) {
    (void)state;
    for (int bias = 0; bias < 2; bias++) {
        tg_tensor *in[3] = {leaf(1, TG_SHAPE(3, 4, 6)), leaf(2, TG_SHAPE(10, 6)),
                            bias ? leaf(3, TG_SHAPE(10)) : NULL};
        check_matches_chain("linear_relu_dropout", lrd_run, in, 3);
        for (int i = 0; i < 3; i++) tg_tensor_free(in[i]);
    }
    for (int bias = 0; bias < 2; bias++) {
        tg_tensor *in[4] = {leaf(4, TG_SHAPE(3, 4, 5)), leaf(5, TG_SHAPE(3, 4, 6)),
                            leaf(6, TG_SHAPE(5, 6)), bias ? leaf(7, TG_SHAPE(5)) : NULL};
        check_matches_chain("linear_dropout_add", lda_run, in, 4);
        for (int i = 0; i < 4; i++) tg_tensor_free(in[i]);
    }
}

/* hand-computed: x = (1, -2), W rows (1, 1), (2, 0.5), (-1, 0), b = (0.5, 0, 0):
 * h = (-0.5, 1, -1), relu = (0, 1, 0); plus a residual r = (1, 2, 3): (0.5, 3, 2).
 * In training with p = 0.5 every output is relu (or h) times 0 or 2 (plus r). */
static void test_values(void **state) {
    (void)state;
    tg_tensor *x = tg_tensor_from_array(TG_SHAPE(1, 2), (tg_real[]){1, -2});
    tg_tensor *W = tg_tensor_from_array(TG_SHAPE(3, 2), (tg_real[]){1, 1, 2, 0.5, -1, 0});
    tg_tensor *b = tg_tensor_from_array(TG_SHAPE(3), (tg_real[]){0.5, 0, 0});
    tg_tensor *r = tg_tensor_from_array(TG_SHAPE(1, 3), (tg_real[]){1, 2, 3});
    tg_tape *t = tg_tape_new();
    tg_tensor *y = tg_linear_relu_dropout(t, x, W, b, 0.5, false, NULL);
    tg_test_assert_close("eval", y->data, (tg_real[]){0, 1, 0}, 3, 0, 0);
    tg_tensor *z = tg_linear_dropout_add(t, r, x, W, b, 0.5, false, NULL);
    tg_test_assert_close("residual eval", z->data, (tg_real[]){0.5, 3, 2}, 3, 0, 0);
    /* 1000 rows of ones: h = (2.5, 2.5, -1) per row */
    tg_tensor *ones = tg_tensor_full(TG_SHAPE(1000, 2), 1),
              *res = tg_tensor_full(TG_SHAPE(1000, 3), 1);
    int kept = 0;
    for (int k = 0; k < 2; k++) {
        tg_rng rng;
        tg_rng_seed(&rng, 9);
        y = k ? tg_linear_dropout_add(t, res, ones, W, b, 0.5, true, &rng)
              : tg_linear_relu_dropout(t, ones, W, b, 0.5, true, &rng);
        for (int64_t i = 0; i < y->numel; i++) {
            const tg_real h = (tg_real[]){2.5, 2.5, -1}[i % 3];
            const tg_real f = k ? h : h < 0 ? 0 : h, base = k ? 1 : 0;
            const bool is_kept = y->data[i] == base + 2 * f && f != 0;
            assert_true(is_kept || y->data[i] == base);
            kept += is_kept;
        }
    }
    assert_in_range(kept, 2200, 2800); /* about half of 2000 + 3000 nonzero */
    y = tg_linear_relu_dropout(t, ones, W, b, 1, true, NULL);
    for (int64_t i = 0; i < y->numel; i++) assert_true(y->data[i] == 0);
    tg_tape_free(t);
    tg_tensor_free(x), tg_tensor_free(W), tg_tensor_free(b), tg_tensor_free(r);
    tg_tensor_free(ones), tg_tensor_free(res);
}

/* large enough that 2 threads split every loop: the same bits */
static void test_thread_count_invariance(void **state) {
    (void)state;
    /* x (256, 32) -> (256, 160) -> (256, 32) plus x */
    tg_tensor *in[4] = {leaf(6, TG_SHAPE(256, 32)), leaf(7, TG_SHAPE(160, 32)),
                        leaf(8, TG_SHAPE(160)), leaf(9, TG_SHAPE(32, 160))};
    const drop_case c = {0.25, true};
    tg_real *first[2] = {0};
    for (int threads = 1; threads <= 2; threads++) {
        tg_set_num_threads(threads);
        tg_tape *t = tg_tape_new();
        tg_tensor_zero_grad(in[0]);
        tg_tensor *y = lrd_run(true, in, &c, t);
        y = lda_run(true, (tg_tensor *[]){in[0], y, in[3], NULL}, &c, t);
        tg_tape_backward(t, tg_sum(t, y));
        if (threads == 1) {
            first[0] = tg_xmalloc((size_t)y->numel * sizeof(tg_real));
            first[1] = tg_xmalloc((size_t)in[0]->numel * sizeof(tg_real));
            memcpy(first[0], y->data, (size_t)y->numel * sizeof(tg_real));
            memcpy(first[1], in[0]->grad, (size_t)in[0]->numel * sizeof(tg_real));
        } else {
            assert_memory_equal(first[0], y->data, (size_t)y->numel * sizeof(tg_real));
            assert_memory_equal(first[1], in[0]->grad, (size_t)in[0]->numel * sizeof(tg_real));
        }
        tg_tape_free(t);
    }
    tg_set_num_threads(0);
    free(first[0]), free(first[1]);
    for (int i = 0; i < 4; i++) tg_tensor_free(in[i]);
}

typedef struct gc_ctx {
    drop_case c;
    bool residual, bias;
} gc_ctx;

static tg_tensor *gc_fused(tg_tape *t, tg_tensor *const *in, void *ctx) {
    const gc_ctx *g = ctx;
    if (g->residual)
        return lda_run(true, (tg_tensor *[]){in[0], in[1], in[2], g->bias ? in[3] : NULL}, &g->c,
                       t);
    return lrd_run(true, (tg_tensor *[]){in[0], in[1], g->bias ? in[2] : NULL}, &g->c, t);
}

static void test_gradcheck(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    /* the inputs keep every pre-activation at least 0.05 from relu's kink */
    tg_tensor *x = tg_tensor_from_array(TG_SHAPE(2, 3), (tg_real[]){0.5, -1, 0.25, 1, 0.5, -0.5});
    tg_tensor *W = tg_tensor_from_array(
        TG_SHAPE(4, 3), (tg_real[]){1, 0.5, -1, -0.5, 1, 0.5, 0.25, 0.25, 1, 1, 1, 1});
    tg_tensor *b = tg_tensor_from_array(TG_SHAPE(4), (tg_real[]){0.1, -0.2, 0.3, 0.2});
    tg_tensor *in[3] = {x, W, b};
    for (int i = 0; i < 3; i++) tg_tensor_requires_grad(in[i], true);
    tg_tensor *r = leaf(9, TG_SHAPE(2, 4));
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        gc_ctx g = {cases[k], false, true};
        tg_test_gradcheck("linear_relu_dropout", gc_fused, &g, in, 3);
        g.bias = false;
        tg_test_gradcheck("linear_relu_dropout, no bias", gc_fused, &g, in, 2);
        g.residual = true;
        tg_test_gradcheck("linear_dropout_add, no bias", gc_fused, &g, (tg_tensor *[]){r, x, W}, 3);
        g.bias = true;
        tg_test_gradcheck("linear_dropout_add", gc_fused, &g, (tg_tensor *[]){r, x, W, b}, 4);
    }
    tg_tensor_free(x), tg_tensor_free(W), tg_tensor_free(b), tg_tensor_free(r);
}

static void test_errors(void **state) {
    (void)state;
    tg_tape *t = tg_tape_new();
    tg_tensor *x = tg_tensor_zeros(TG_SHAPE(2, 3)), *W = tg_tensor_zeros(TG_SHAPE(4, 5));
    tg_tensor *r = tg_tensor_zeros(TG_SHAPE(3, 2));
    TG_EXPECT_FAIL(tg_linear_relu_dropout(t, x, W, NULL, 0.1, true, NULL), "tg_linear_relu_dropout",
                   "(4, 5)", "(2, 3)");
    TG_EXPECT_FAIL(tg_linear_relu_dropout(t, x, x, NULL, 1.5, true, NULL), "tg_linear_relu_dropout",
                   "p must be in [0, 1]");
    TG_EXPECT_FAIL(tg_linear_dropout_add(t, r, x, x, NULL, 0.1, true, NULL),
                   "tg_linear_dropout_add", "(3, 2)", "shape of the linear's output");
    TG_EXPECT_FAIL(tg_linear_dropout_add(t, x, x, W, NULL, 0.1, true, NULL),
                   "tg_linear_dropout_add", "(4, 5)");
    TG_EXPECT_FAIL(tg_linear_dropout_add(t, x, r, r, NULL, -1, true, NULL), "tg_linear_dropout_add",
                   "p must be");
    tg_tape_free(t);
    tg_tensor_free(x), tg_tensor_free(W), tg_tensor_free(r);
}

/* ---- PyTorch parity (dropout off: PyTorch's masks cannot be matched) ---- */

static tg_parity_tally tally = {TG_OP_PARITY_ATOL, TG_OP_PARITY_RTOL, 0, 0, 0};

static void parity_case(const char *name, bool residual) {
    if (!tg_fixture_present(name)) return;
    tg_fixture *fx = tg_fixture_load(name);
    const char *names[2][4] = {{"x", "weight", "bias", NULL}, {"x", "a", "weight", "bias"}};
    tg_tensor *in[4] = {NULL};
    char key[32];
    for (int i = 0; i < 4; i++) {
        if (!names[residual][i]) continue;
        snprintf(key, sizeof key, "in.%s", names[residual][i]);
        if (tg_fixture_has(fx, key))
            in[i] = tg_tensor_requires_grad(tg_fixture_tensor(fx, key), true);
    }
    tg_tensor *gout = tg_fixture_tensor(fx, "gout");
    tg_tape *t = tg_tape_new();
    const drop_case off = {0.1, false};
    tg_tensor *y = residual ? lda_run(true, in, &off, t) : lrd_run(true, in, &off, t);
    tg_parity_tally_compare(&tally, fx, "out", y->shape, y->ndim, y->data);
    tg_tape_backward_with(t, y, gout->data);
    for (int i = 0; i < 4; i++) {
        if (!in[i]) continue;
        snprintf(key, sizeof key, "grad.%s", names[residual][i]);
        tg_parity_tally_compare(&tally, fx, key, in[i]->shape, in[i]->ndim, in[i]->grad);
        tg_tensor_free(in[i]);
    }
    tg_tape_free(t);
    tg_tensor_free(gout);
    tg_fixture_free(fx);
    tally.cases++;
}

static void test_parity(void **state) {
    (void)state;
    parity_case("op_linear_relu_dropout_bias", false);
    parity_case("op_linear_relu_dropout_nobias", false);
    parity_case("op_linear_dropout_add_bias", true);
    parity_case("op_linear_dropout_add_nobias", true);
    tg_parity_tally_print(&tally);
}

static int report(void **state) {
    (void)state;
    print_message("fused: %d gradchecks passed\n", tg_test_gradchecks);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_chain),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_thread_count_invariance),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_parity),
    };
    return cmocka_run_group_tests(tests, NULL, report);
}
