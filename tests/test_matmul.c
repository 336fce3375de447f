/* Matrix products: matmul in every layout, and linear. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static tg_tensor *param(uint64_t seed, int ndim, const int64_t *shape, const char *name) {
    tg_tensor *t = tg_tensor_named(tg_test_rand(seed, -1, 1, ndim, shape), name);
    return tg_tensor_requires_grad(t, true);
}

/* The stored shape of an operand whose logical matrix is rows x cols. */
static tg_tensor *operand(uint64_t seed, int64_t batch, int64_t rows, int64_t cols, bool trans,
                          const char *name) {
    const int64_t r = trans ? cols : rows, c = trans ? rows : cols;
    return batch ? param(seed, TG_SHAPE(batch, r, c), name) : param(seed, TG_SHAPE(r, c), name);
}

/* Element (i, j) of the logical matrix of operand t in batch b. */
static double logical(const tg_tensor *t, int64_t b, int64_t i, int64_t j, bool trans) {
    const int64_t r = t->shape[t->ndim - 2], c = t->shape[t->ndim - 1];
    const tg_real *M = t->data + (t->ndim == 3 ? b * r * c : 0);
    return (double)(trans ? M[j * c + i] : M[i * c + j]);
}

/* C = op(A)·op(B) by the definition, in double. */
static double *naive_matmul(const tg_tensor *a, const tg_tensor *b, bool ta, bool tb, int64_t batch,
                            int64_t m, int64_t n, int64_t k) {
    double *c = calloc((size_t)(batch * m * n), sizeof *c);
    for (int64_t q = 0; q < batch; q++)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0;
                for (int64_t p = 0; p < k; p++)
                    s += logical(a, q, i, p, ta) * logical(b, q, p, j, tb);
                c[(q * m + i) * n + j] = s;
            }
    return c;
}

/* ---- forward values ---- */

static void test_matmul_small(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *a = tg_tensor_from_array(TG_SHAPE(2, 3), (const tg_real[]){1, 2, 3, 4, 5, 6});
    tg_tensor *b = tg_tensor_from_array(TG_SHAPE(3, 2), (const tg_real[]){7, 8, 9, 10, 11, 12});
    tg_tensor *c = tg_matmul(tape, a, b);
    const tg_real want[] = {58, 64, 139, 154};
    assert_int_equal(c->ndim, 2);
    assert_int_equal(c->shape[0], 2);
    assert_int_equal(c->shape[1], 2);
    assert_memory_equal(c->data, want, sizeof want);
    /* aᵀ·aᵀᵀ... : aᵀ (3, 2) times bᵀ (2, 3) */
    tg_tensor *d = tg_matmul_t(tape, a, b, true, true);
    const tg_real want_d[] = {1 * 7 + 4 * 8, 1 * 9 + 4 * 10, 1 * 11 + 4 * 12,
                              2 * 7 + 5 * 8, 2 * 9 + 5 * 10, 2 * 11 + 5 * 12,
                              3 * 7 + 6 * 8, 3 * 9 + 6 * 10, 3 * 11 + 6 * 12};
    assert_int_equal(d->shape[0], 3);
    assert_memory_equal(d->data, want_d, sizeof want_d);
    assert_false(d->requires_grad);
    assert_int_equal(tg_tape_node_count(tape), 0);
    tg_tape_free(tape);
    tg_tensor_free(a), tg_tensor_free(b);
}

/* batch_a / batch_b: 0 for a 2-D operand, else the batch size. */
typedef struct {
    int64_t batch_a, batch_b, m, n, k;
} mm_case;

static const mm_case cases[] = {
    {0, 0, 3, 4, 5},   {2, 2, 3, 4, 5},    {3, 0, 4, 2, 3},     {0, 3, 2, 5, 4},
    {0, 0, 1, 1, 1},   {2, 0, 1, 6, 3},    {0, 0, 67, 45, 131}, {5, 5, 33, 17, 40},
    {7, 0, 20, 30, 9}, {0, 4, 20, 11, 30}, {2, 2, 0, 3, 4},     {2, 0, 3, 4, 0},
};

static void test_matmul_values(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const mm_case *cs = &cases[i];
        for (int t = 0; t < 4; t++) {
            const bool ta = t & 1, tb = t & 2;
            tg_tensor *a = operand(100 + i, cs->batch_a, cs->m, cs->k, ta, "a");
            tg_tensor *b = operand(200 + i, cs->batch_b, cs->k, cs->n, tb, "b");
            const int64_t batch = cs->batch_a ? cs->batch_a : cs->batch_b ? cs->batch_b : 1;
            tg_tensor *c = t ? tg_matmul_t(tape, a, b, ta, tb) : tg_matmul(tape, a, b);
            assert_int_equal(c->ndim, cs->batch_a || cs->batch_b ? 3 : 2);
            assert_int_equal(c->shape[c->ndim - 2], cs->m);
            assert_int_equal(c->shape[c->ndim - 1], cs->n);
            double *want = naive_matmul(a, b, ta, tb, batch, cs->m, cs->n, cs->k);
            char what[64];
            snprintf(what, sizeof what, "matmul case %zu ta %d tb %d", i, ta, tb);
            tg_test_assert_close_f64(what, c->data, want, c->numel, TG_TEST_ATOL * 10,
                                     TG_TEST_RTOL * 10);
            free(want);
            tg_tensor_free(a), tg_tensor_free(b);
            tg_tape_reset(tape);
        }
    }
    tg_tape_free(tape);
}

static void test_linear_values(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *W = tg_tensor_from_array(TG_SHAPE(2, 3), (const tg_real[]){1, 0, -1, 2, 1, 0});
    tg_tensor *b = tg_tensor_from_array(TG_SHAPE(2), (const tg_real[]){10, 20});
    tg_tensor *x = tg_tensor_from_array(TG_SHAPE(2, 1, 3), (const tg_real[]){1, 2, 3, 4, 5, 6});
    tg_tensor *y = tg_linear(tape, x, W, b);
    assert_int_equal(y->ndim, 3);
    assert_int_equal(y->shape[2], 2);
    const tg_real want[] = {1 - 3 + 10, 2 + 2 + 20, 4 - 6 + 10, 8 + 5 + 20};
    assert_memory_equal(y->data, want, sizeof want);
    tg_tensor *x1 = tg_tensor_from_array(TG_SHAPE(3), (const tg_real[]){1, 2, 3});
    tg_tensor *y1 = tg_linear(tape, x1, W, NULL); /* 1-D in, 1-D out */
    assert_int_equal(y1->ndim, 1);
    assert_int_equal(y1->shape[0], 2);
    assert_true(y1->data[0] == -2 && y1->data[1] == 4);
    /* bigger, against the definition */
    tg_tensor *X = tg_test_rand(1, -1, 1, TG_SHAPE(4, 9, 37));
    tg_tensor *V = tg_test_rand(2, -1, 1, TG_SHAPE(23, 37));
    tg_tensor *c = tg_test_rand(3, -1, 1, TG_SHAPE(23));
    tg_tensor *Y = tg_linear(tape, X, V, c);
    double *ref = malloc(36 * 23 * sizeof *ref);
    for (int r = 0; r < 36; r++)
        for (int o = 0; o < 23; o++) {
            double s = (double)c->data[o];
            for (int i = 0; i < 37; i++)
                s += (double)X->data[r * 37 + i] * (double)V->data[o * 37 + i];
            ref[r * 23 + o] = s;
        }
    tg_test_assert_close_f64("linear 3-D", Y->data, ref, Y->numel, TG_TEST_ATOL * 10,
                             TG_TEST_RTOL * 10);
    free(ref);
    tg_tape_free(tape);
    tg_tensor_free(W), tg_tensor_free(b), tg_tensor_free(x), tg_tensor_free(x1);
    tg_tensor_free(X), tg_tensor_free(V), tg_tensor_free(c);
}

/* ---- errors ---- */

static void test_errors(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(2, 3)), "x");
    tg_tensor *w = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(4, 5)), "w");
    tg_tensor *h = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(3, 2, 4)), "h");
    tg_tensor *g = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(2, 4, 5)), "g");
    tg_tensor *q = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(1, 2, 3, 4)), "q");
    TG_EXPECT_FAIL(tg_matmul(tape, x, w), "tg_matmul", "inner dimensions", "(2, 3) 'x'",
                   "(4, 5) 'w'", "3 != 4");
    TG_EXPECT_FAIL(tg_matmul_t(tape, x, w, false, true), "tg_matmul_t", "(2, 3) 'x'",
                   "(4, 5) 'w' transposed", "op(b) is (5, 4)");
    TG_EXPECT_FAIL(tg_matmul_t(tape, h, g, true, false), "tg_matmul_t", "(3, 2, 4) 'h' transposed",
                   "op(a) is (3, 4, 2)", "2 != 4");
    TG_EXPECT_FAIL(tg_matmul(tape, h, g), "tg_matmul", "batch sizes", "(3, 2, 4) 'h'",
                   "(2, 4, 5) 'g'");
    TG_EXPECT_FAIL(tg_matmul(tape, q, w), "tg_matmul", "2-D or 3-D", "(1, 2, 3, 4) 'q'");
    tg_tensor *W = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(5, 4)), "fc.weight");
    tg_tensor *b = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(4)), "fc.bias");
    TG_EXPECT_FAIL(tg_linear(tape, x, W, NULL), "tg_linear", "(2, 3) 'x'", "(5, 4) 'fc.weight'",
                   "in_features = 4");
    TG_EXPECT_FAIL(tg_linear(tape, h, W, b), "tg_linear", "(4,) 'fc.bias'", "(5, 4) 'fc.weight'");
    TG_EXPECT_FAIL(tg_linear(tape, h, b, NULL), "tg_linear", "(4,) 'fc.bias'", "2-D");
    assert_int_equal(tg_tape_node_count(tape), 0);
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(w), tg_tensor_free(h), tg_tensor_free(g);
    tg_tensor_free(q), tg_tensor_free(W), tg_tensor_free(b);
}

/* ---- gradchecks ---- */

typedef struct {
    bool ta, tb;
} trans_ctx;

static tg_tensor *fn_matmul(tg_tape *t, tg_tensor *const *in, void *ctx) {
    const trans_ctx *c = ctx;
    return tg_matmul_t(t, in[0], in[1], c->ta, c->tb);
}

static void test_matmul_gradcheck(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    /* 2-D, batched, 3-D x shared 2-D, shared 2-D x 3-D, each in all four layouts */
    const mm_case kinds[] = {{0, 0, 3, 4, 5}, {2, 2, 3, 2, 4}, {3, 0, 2, 4, 3}, {0, 3, 2, 3, 4}};
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
        for (int t = 0; t < 4; t++) {
            trans_ctx c = {t & 1, t & 2};
            tg_tensor *a = operand(10 + i, kinds[i].batch_a, kinds[i].m, kinds[i].k, c.ta, "a");
            tg_tensor *b = operand(20 + i, kinds[i].batch_b, kinds[i].k, kinds[i].n, c.tb, "b");
            tg_test_gradcheck(NULL, fn_matmul, &c, (tg_tensor *[]){a, b}, 2);
            tg_tensor_requires_grad(a, false); /* one operand without gradient */
            tg_test_gradcheck(NULL, fn_matmul, &c, (tg_tensor *[]){a, b}, 2);
            tg_tensor_free(a), tg_tensor_free(b);
        }
}

/* One tensor feeding several products: A·A + nothing else, A·Aᵀ, Aᵀ·A concatenated */
static tg_tensor *fn_matmul_multi(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    tg_tensor *A = in[0];
    tg_tensor *parts[] = {
        tg_reshape(t, tg_matmul(t, A, A), TG_SHAPE(-1)),
        tg_reshape(t, tg_matmul_t(t, A, A, false, true), TG_SHAPE(-1)),
        tg_reshape(t, tg_matmul_t(t, A, tg_matmul(t, A, A), true, false), TG_SHAPE(-1)),
    };
    return tg_concat(t, parts, 3, 0);
}

static void test_matmul_multi_use_gradcheck(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_tensor *A = param(30, TG_SHAPE(3, 3), "A");
    tg_test_gradcheck(NULL, fn_matmul_multi, NULL, &A, 1);
    tg_tensor_free(A);
}

static tg_tensor *fn_linear(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_linear(t, in[0], in[1], in[2]);
}

static tg_tensor *fn_linear_nobias(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_linear(t, in[0], in[1], NULL);
}

/* W used as both the input and the weight: linear(W, W, b) = W·Wᵀ + b */
static tg_tensor *fn_linear_self(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_linear(t, in[0], in[0], in[1]);
}

static void test_linear_gradcheck(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_tensor *W = param(40, TG_SHAPE(3, 4), "W"), *b = param(41, TG_SHAPE(3), "b");
    tg_tensor *x2 = param(42, TG_SHAPE(5, 4), "x");
    tg_tensor *x3 = param(43, TG_SHAPE(2, 3, 4), "x");
    tg_tensor *x1 = param(44, TG_SHAPE(4), "x");
    tg_test_gradcheck(NULL, fn_linear, NULL, (tg_tensor *[]){x2, W, b}, 3);
    tg_test_gradcheck(NULL, fn_linear, NULL, (tg_tensor *[]){x3, W, b}, 3);
    tg_test_gradcheck(NULL, fn_linear, NULL, (tg_tensor *[]){x1, W, b}, 3);
    tg_test_gradcheck(NULL, fn_linear_nobias, NULL, (tg_tensor *[]){x3, W}, 2);
    tg_tensor *S = param(45, TG_SHAPE(3, 3), "S");
    tg_test_gradcheck(NULL, fn_linear_self, NULL, (tg_tensor *[]){S, b}, 2);
    tg_tensor_requires_grad(x3, false);
    tg_test_gradcheck(NULL, fn_linear, NULL, (tg_tensor *[]){x3, W, b}, 3);
    tg_tensor_free(W), tg_tensor_free(b), tg_tensor_free(x1), tg_tensor_free(x2);
    tg_tensor_free(x3), tg_tensor_free(S);
}

/* Gradients of the one-GEMM paths (3-D x shared 2-D) equal those of per-batch products. */
static void test_shared_operand_grads(void **state) {
    (void)state;
    const int64_t B = 4, m = 7, k = 9, n = 5;
    for (int t = 0; t < 4; t++) {
        const bool ta = t & 1, tb = t & 2;
        tg_tensor *a = operand(50, B, m, k, ta, "a");
        tg_tensor *b = operand(51, 0, k, n, tb, "b");
        tg_tensor *g = tg_test_rand(52, -1, 1, TG_SHAPE(B, m, n));
        tg_tape *tape = tg_tape_new();
        tg_tape_backward_with(tape, tg_matmul_t(tape, a, b, ta, tb), g->data);
        /* the same through B separate 2-D products */
        tg_tensor *a2 = tg_tensor_requires_grad(tg_tensor_clone(a), true);
        tg_tensor *b2 = tg_tensor_requires_grad(tg_tensor_clone(b), true);
        tg_tape_reset(tape);
        tg_tensor *parts[4];
        for (int64_t i = 0; i < B; i++)
            parts[i] = tg_matmul_t(tape, tg_select(tape, a2, 0, i), b2, ta, tb);
        tg_tensor *c = tg_concat(tape, parts, (int)B, 0);
        tg_tape_backward_with(tape, c, g->data);
        tg_test_assert_close("dA", a->grad, a2->grad, a->numel, TG_TEST_ATOL, TG_TEST_RTOL);
        tg_test_assert_close("dB", b->grad, b2->grad, b->numel, TG_TEST_ATOL, TG_TEST_RTOL);
        tg_tape_free(tape);
        tg_tensor_free(a), tg_tensor_free(b), tg_tensor_free(a2), tg_tensor_free(b2);
        tg_tensor_free(g);
    }
}

/* ---- PyTorch parity ---- */

#ifdef TG_DOUBLE /* float64 against float32 fixtures: float32-level tolerances */
#define PAR_ATOL 1e-5
#define PAR_RTOL 1e-4
#else
#define PAR_ATOL 1e-6
#define PAR_RTOL 1e-5
#endif

static void matmul_parity(const char *case_name) {
    tg_fixture *fx = tg_fixture_load(case_name);
    tg_tensor *a = tg_tensor_requires_grad(tg_fixture_tensor(fx, "in.a"), true);
    tg_tensor *b = tg_tensor_requires_grad(tg_fixture_tensor(fx, "in.b"), true);
    const char *ta = tg_fixture_meta(fx, "trans_a"), *tb = tg_fixture_meta(fx, "trans_b");
    assert_non_null(ta);
    assert_non_null(tb);
    tg_tape *tape = tg_tape_new();
    tg_tensor *c = tg_matmul_t(tape, a, b, ta[0] == '1', tb[0] == '1');
    tg_fixture_assert_close(fx, "out", c->data, c->shape, c->ndim, PAR_ATOL, PAR_RTOL);
    tg_tensor *g = tg_fixture_tensor(fx, "gout");
    tg_tape_backward_with(tape, c, g->data);
    tg_fixture_assert_close(fx, "grad.a", a->grad, a->shape, a->ndim, PAR_ATOL, PAR_RTOL);
    tg_fixture_assert_close(fx, "grad.b", b->grad, b->shape, b->ndim, PAR_ATOL, PAR_RTOL);
    tg_tape_free(tape);
    tg_tensor_free(a), tg_tensor_free(b), tg_tensor_free(g);
    tg_fixture_free(fx);
}

static void test_matmul_parity(void **state) {
    (void)state;
    const char *names[] = {"op_matmul_2d",          "op_matmul_2d_ta",    "op_matmul_2d_tb",
                           "op_matmul_2d_ta_tb",    "op_matmul_3d",       "op_matmul_3d_ta",
                           "op_matmul_3d_tb",       "op_matmul_3d_ta_tb", "op_matmul_3d_2d",
                           "op_matmul_3d_2d_ta_tb", "op_matmul_2d_3d"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) matmul_parity(names[i]);
}

/* module cases (mod_*) store the weight and bias as param.*, op cases (op_*) as in.* */
static void linear_parity(const char *case_name, const char *w_name, const char *b_name) {
    char key[64];
    tg_fixture *fx = tg_fixture_load(case_name);
    tg_tensor *x = tg_tensor_requires_grad(tg_fixture_tensor(fx, "in.x"), true);
    tg_tensor *W = tg_tensor_requires_grad(tg_fixture_tensor(fx, w_name), true);
    tg_tensor *b = b_name ? tg_tensor_requires_grad(tg_fixture_tensor(fx, b_name), true) : NULL;
    tg_tape *tape = tg_tape_new();
    tg_tensor *y = tg_linear(tape, x, W, b);
    tg_fixture_assert_close(fx, "out", y->data, y->shape, y->ndim, PAR_ATOL, PAR_RTOL);
    tg_tensor *g = tg_fixture_tensor(fx, "gout");
    tg_tape_backward_with(tape, y, g->data);
    tg_fixture_assert_close(fx, "grad.x", x->grad, x->shape, x->ndim, PAR_ATOL, PAR_RTOL);
    snprintf(key, sizeof key, "grad.%s", w_name + (strncmp(w_name, "in.", 3) ? 0 : 3));
    tg_fixture_assert_close(fx, key, W->grad, W->shape, W->ndim, PAR_ATOL, PAR_RTOL);
    if (b) {
        snprintf(key, sizeof key, "grad.%s", b_name + (strncmp(b_name, "in.", 3) ? 0 : 3));
        tg_fixture_assert_close(fx, key, b->grad, b->shape, b->ndim, PAR_ATOL, PAR_RTOL);
    }
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(W), tg_tensor_free(b), tg_tensor_free(g);
    tg_fixture_free(fx);
}

static void test_linear_parity(void **state) {
    (void)state;
    linear_parity("mod_linear", "param.weight", "param.bias");
    linear_parity("mod_linear_3d", "param.weight", "param.bias");
    linear_parity("op_linear_nobias_3d", "in.weight", NULL);
    linear_parity("op_linear_1d", "in.weight", "in.bias");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_small),     cmocka_unit_test(test_matmul_values),
        cmocka_unit_test(test_linear_values),    cmocka_unit_test(test_errors),
        cmocka_unit_test(test_matmul_gradcheck), cmocka_unit_test(test_matmul_multi_use_gradcheck),
        cmocka_unit_test(test_linear_gradcheck), cmocka_unit_test(test_shared_operand_grads),
        cmocka_unit_test(test_matmul_parity),    cmocka_unit_test(test_linear_parity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
