/* Elementwise ops and broadcasting: forward values (hand-computed and special values),
 * float64 gradchecks of every op (broadcast cases, graphs where one tensor feeds several
 * ops), dropout statistics, error messages, and PyTorch parity from fixtures. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------
 * helpers */

static tg_tensor *leaf(tg_tensor *t, const char *name) {
    tg_tensor_set_name(t, name);
    return tg_tensor_requires_grad(t, true);
}

static tg_tensor *rand_leaf(uint64_t seed, double lo, double hi, int ndim, const int64_t *shape,
                            const char *name) {
    return leaf(tg_test_rand(seed, (tg_real)lo, (tg_real)hi, ndim, shape), name);
}

/* Magnitudes in [lo, hi) with signs alternating pseudo-randomly: no zeros, no kinks. */
static tg_tensor *away_leaf(uint64_t seed, double lo, double hi, int ndim, const int64_t *shape,
                            const char *name) {
    tg_tensor *t = rand_leaf(seed, lo, hi, ndim, shape, name);
    for (int64_t i = 0; i < t->numel; i++)
        if ((i * 7 + (int64_t)seed) % 3 == 0) t->data[i] = -t->data[i];
    return t;
}

/* Flat index into x (shape broadcast to out) of the output element `flat`. */
static int64_t bcast_source(const tg_tensor *x, int out_ndim, const int64_t *out_shape,
                            int64_t flat) {
    int64_t src = 0, xstride = 1;
    for (int d = out_ndim - 1; d >= 0; d--) {
        const int64_t i = flat % out_shape[d];
        flat /= out_shape[d];
        const int xd = d - (out_ndim - x->ndim);
        if (xd < 0) continue;
        if (x->shape[xd] != 1) src += i * xstride;
        xstride *= x->shape[xd];
    }
    return src;
}

typedef tg_tensor *(*binary_op)(tg_tape *, tg_tensor *, tg_tensor *);
typedef tg_tensor *(*unary_op)(tg_tape *, tg_tensor *);

static tg_real ref_binary(binary_op op, tg_real a, tg_real b) {
    if (op == tg_add) return a + b;
    if (op == tg_sub) return a - b;
    if (op == tg_mul) return a * b;
    return a / b;
}

static const struct {
    const char *name;
    binary_op op;
} BINARY[] = {{"add", tg_add}, {"sub", tg_sub}, {"mul", tg_mul}, {"div", tg_div}};

/* Shape pairs that broadcast (ndim, shape) x (ndim, shape). */
typedef struct {
    int na;
    int64_t a[4];
    int nb;
    int64_t b[4];
} shape_pair;
static const shape_pair PAIRS[] = {
    {2, {2, 3}, 2, {2, 3}},       /* same */
    {2, {2, 3}, 1, {3}},          /* bias-like trailing vector */
    {1, {3}, 2, {2, 3}},          /* ... on the left */
    {3, {2, 1, 4}, 2, {3, 1}},    /* both broadcast, different ranks */
    {2, {2, 3}, 1, {1}},          /* (1,) scalar */
    {2, {2, 3}, 0, {0}},          /* () scalar */
    {0, {0}, 2, {2, 3}},          /* () scalar on the left */
    {2, {3, 1}, 2, {1, 4}},       /* outer-product shape */
    {3, {4, 1, 3}, 3, {1, 2, 1}}, /* alternating */
    {4, {2, 1, 3, 1}, 2, {1, 2}}, /* 4-D */
};
#define N_PAIRS (int)(sizeof PAIRS / sizeof PAIRS[0])

/* ---------------------------------------------------------------------------------------
 * broadcasting layer */

static void test_broadcast_shapes_and_plans(void **state) {
    (void)state;
    int64_t out[TG_MAX_DIMS];
    int nd = -1, bad = 0;
    assert_true(tg_broadcast_shapes(
        2, (const int[]){3, 2}, (const int64_t *const[]){(int64_t[]){2, 1, 4}, (int64_t[]){3, 1}},
        &nd, out, &bad));
    assert_int_equal(nd, 3);
    assert_true(out[0] == 2 && out[1] == 3 && out[2] == 4);
    assert_false(tg_broadcast_shapes(2, (const int[]){2, 1},
                                     (const int64_t *const[]){(int64_t[]){2, 3}, (int64_t[]){4}},
                                     &nd, out, &bad));
    assert_int_equal(bad, -1);
    assert_false(tg_broadcast_shapes(
        2, (const int[]){3, 3},
        (const int64_t *const[]){(int64_t[]){2, 3, 4}, (int64_t[]){5, 3, 4}}, &nd, out, &bad));
    assert_int_equal(bad, -3);
    /* () with anything; zero-size dims broadcast with 1 only */
    assert_true(tg_broadcast_shapes(
        2, (const int[]){0, 2}, (const int64_t *const[]){NULL, (int64_t[]){0, 3}}, &nd, out, NULL));
    assert_true(nd == 2 && out[0] == 0 && out[1] == 3);
    assert_true(tg_broadcast_fits(TG_SHAPE(3), TG_SHAPE(2, 3)));
    assert_true(tg_broadcast_fits(TG_SHAPE(1, 3), TG_SHAPE(2, 3)));
    assert_false(tg_broadcast_fits(TG_SHAPE(2, 3), TG_SHAPE(3)));
    assert_false(tg_broadcast_fits(TG_SHAPE(2), TG_SHAPE(2, 3)));

    /* plans: the common cases collapse to plain loops */
    tg_bcast p;
    const int64_t s23[] = {2, 3}, s3[] = {3}, s1[] = {1};
    tg_bcast_init(&p, 2, s23, 2, (const int[]){2, 2}, (const int64_t *const[]){s23, s23});
    assert_true(p.ndim == 1 && p.inner == 6 && p.stride[0][0] == 1 && p.stride[1][0] == 1);
    tg_bcast_init(&p, 2, s23, 2, (const int[]){2, 1}, (const int64_t *const[]){s23, s3});
    assert_true(p.ndim == 2 && p.inner == 3 && p.rows == 2);
    assert_true(p.stride[1][0] == 0 && p.stride[1][1] == 1 && p.stride[0][0] == 3);
    tg_bcast_init(&p, 2, s23, 2, (const int[]){2, 1}, (const int64_t *const[]){s23, s1});
    assert_true(p.ndim == 1 && p.inner == 6 && p.stride[1][0] == 0);
    tg_bcast_init(&p, 2, s23, 2, (const int[]){2, 0}, (const int64_t *const[]){s23, NULL});
    assert_true(p.ndim == 1 && p.stride[1][0] == 0);
    /* (B, T, H) against (1, 1, H) and (B, 1, 1): dims merge where the patterns agree */
    const int64_t big[] = {4, 5, 6, 7}, v[] = {1, 1, 6, 7}, w[] = {4, 5, 1, 1};
    tg_bcast_init(&p, 4, big, 2, (const int[]){4, 4}, (const int64_t *const[]){v, w});
    assert_true(p.ndim == 2 && p.size[0] == 20 && p.size[1] == 42);
    /* row iteration visits the right offsets */
    const int64_t s243[] = {2, 4, 3}, s41[] = {4, 1};
    tg_bcast_init(&p, 3, s243, 1, (const int[]){2}, (const int64_t *const[]){s41});
    int64_t idx[TG_MAX_DIMS], off[TG_BCAST_MAX_OPS];
    tg_bcast_row_start(&p, 0, idx, off);
    for (int64_t r = 0; r < p.rows; r++) {
        int64_t idx2[TG_MAX_DIMS], off2[TG_BCAST_MAX_OPS];
        tg_bcast_row_start(&p, r, idx2, off2);
        assert_int_equal(off[0], off2[0]);
        assert_int_equal(off[0], r % 4);
        tg_bcast_row_next(&p, idx, off);
    }
}

/* tg_broadcast_sum_to and tg_broadcast_expand against naive index arithmetic. */
static void test_broadcast_sum_to_and_expand(void **state) {
    (void)state;
    for (int k = 0; k < N_PAIRS; k++) {
        const shape_pair *sp = &PAIRS[k];
        int64_t out[TG_MAX_DIMS];
        int nd = 0;
        assert_true(tg_broadcast_shapes(2, (const int[]){sp->na, sp->nb},
                                        (const int64_t *const[]){sp->a, sp->b}, &nd, out, NULL));
        for (int side = 0; side < 2; side++) {
            const int xn = side ? sp->nb : sp->na;
            const int64_t *xs = side ? sp->b : sp->a;
            tg_tensor *x = tg_tensor_new(xn, xs);
            tg_tensor *g = tg_test_rand(10 + (uint64_t)k, -1, 1, nd, out);
            double want[64] = {0};
            for (int64_t i = 0; i < g->numel; i++)
                want[bcast_source(x, nd, out, i)] += (double)g->data[i];
            for (int64_t i = 0; i < x->numel; i++) x->data[i] = (tg_real)0.5; /* accumulates */
            for (int64_t i = 0; i < x->numel; i++) want[i] = 0.5 - want[i];
            tg_broadcast_sum_to(x->data, xn, xs, g->data, nd, out, -1);
            tg_test_assert_close_f64("sum_to", x->data, want, x->numel, 1e-6, 1e-6);

            tg_tensor *e = tg_tensor_new(nd, out);
            for (int64_t i = 0; i < x->numel; i++) x->data[i] = (tg_real)(i + 1);
            tg_broadcast_expand(e->data, nd, out, x->data, xn, xs);
            for (int64_t i = 0; i < e->numel; i++)
                assert_true(e->data[i] == x->data[bcast_source(x, nd, out, i)]);
            tg_tensor_free(e);
            tg_tensor_free(g);
            tg_tensor_free(x);
        }
    }
    /* large reductions (several column blocks, threads) stay exact for integers */
    const int64_t gs[] = {300, 700}, xs[] = {700}, ys[] = {300, 1};
    tg_tensor *g = tg_tensor_new(2, gs);
    for (int64_t i = 0; i < g->numel; i++) g->data[i] = (tg_real)(i % 7);
    tg_tensor *bx = tg_tensor_new(1, xs), *by = tg_tensor_new(2, ys);
    tg_broadcast_sum_to(bx->data, 1, xs, g->data, 2, gs, 1);
    tg_broadcast_sum_to(by->data, 2, ys, g->data, 2, gs, 1);
    for (int64_t c = 0; c < 700; c++) {
        double s = 0;
        for (int64_t r = 0; r < 300; r++) s += (double)((r * 700 + c) % 7);
        assert_true((double)bx->data[c] == s);
    }
    for (int64_t r = 0; r < 300; r++) {
        double s = 0;
        for (int64_t c = 0; c < 700; c++) s += (double)((r * 700 + c) % 7);
        assert_true((double)by->data[r] == s);
    }
    tg_tensor_free(g);
    tg_tensor_free(bx);
    tg_tensor_free(by);
}

/* ---------------------------------------------------------------------------------------
 * forward values */

static void test_binary_forward(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *a = tg_tensor_from_array(TG_SHAPE(2, 3), (tg_real[]){1, 2, 3, 4, 5, 6});
    tg_tensor *b = tg_tensor_from_array(TG_SHAPE(3), (tg_real[]){10, 20, 40});
    tg_tensor *c = tg_tensor_from_array(TG_SHAPE(2, 1), (tg_real[]){2, -1});
    tg_tensor *s = tg_tensor_from_array(0, NULL, (tg_real[]){4});
    tg_tensor *y = tg_add(tape, a, b);
    assert_true(y->ndim == 2 && y->shape[0] == 2 && y->shape[1] == 3);
    tg_test_assert_close("a+b", y->data, (tg_real[]){11, 22, 43, 14, 25, 46}, 6, 0, 0);
    tg_test_assert_close("b-a", tg_sub(tape, b, a)->data, (tg_real[]){9, 18, 37, 6, 15, 34}, 6, 0,
                         0);
    tg_test_assert_close("a*c", tg_mul(tape, a, c)->data, (tg_real[]){2, 4, 6, -4, -5, -6}, 6, 0,
                         0);
    tg_test_assert_close("a/s", tg_div(tape, a, s)->data,
                         (tg_real[]){0.25, 0.5, 0.75, 1, 1.25, 1.5}, 6, 0, 0);
    y = tg_mul(tape, c, b); /* (2,1) x (3,) -> (2,3) */
    tg_test_assert_close("c*b", y->data, (tg_real[]){20, 40, 80, -10, -20, -40}, 6, 0, 0);
    y = tg_sub(tape, s, s); /* () - () -> () */
    assert_true(y->ndim == 0 && y->numel == 1 && y->data[0] == 0);
    /* special values: x/0, 0/0 */
    tg_tensor *z = tg_tensor_from_array(TG_SHAPE(3), (tg_real[]){1, -1, 0});
    tg_tensor *zero = tg_tensor_zeros(TG_SHAPE(1));
    y = tg_div(tape, z, zero);
    assert_true(isinf(y->data[0]) && y->data[0] > 0 && isinf(y->data[1]) && y->data[1] < 0);
    assert_true(isnan(y->data[2]));
    /* zero-size tensors broadcast too */
    tg_tensor *e = tg_tensor_new(TG_SHAPE(0, 3));
    y = tg_add(tape, e, b);
    assert_true(y->ndim == 2 && y->shape[0] == 0 && y->shape[1] == 3 && y->numel == 0);

    /* every broadcast pair and op against naive index arithmetic, small and large */
    for (int k = 0; k < N_PAIRS; k++)
        for (int o = 0; o < 4; o++) {
            const shape_pair *sp = &PAIRS[k];
            tg_tensor *x1 = tg_test_rand(1 + (uint64_t)k, 0.5, 2, sp->na, sp->a);
            tg_tensor *x2 = tg_test_rand(50 + (uint64_t)k, 0.5, 2, sp->nb, sp->b);
            y = BINARY[o].op(tape, x1, x2);
            for (int64_t i = 0; i < y->numel; i++) {
                const tg_real want =
                    ref_binary(BINARY[o].op, x1->data[bcast_source(x1, y->ndim, y->shape, i)],
                               x2->data[bcast_source(x2, y->ndim, y->shape, i)]);
                if (y->data[i] != want)
                    fail_msg("%s pair %d element %lld: %g vs %g", BINARY[o].name, k, (long long)i,
                             (double)y->data[i], (double)want);
            }
            tg_tensor_free(x1);
            tg_tensor_free(x2);
        }
    const int64_t big_a[] = {64, 33, 40}, big_b[] = {33, 1}, big_c[] = {64, 1, 40};
    tg_tensor *ba = tg_test_rand(5, -1, 1, 3, big_a), *bb = tg_test_rand(6, 0.5, 1, 2, big_b);
    tg_tensor *bc = tg_test_rand(7, -1, 1, 3, big_c);
    for (int o = 0; o < 4; o++) {
        tg_tensor *pairs[2][2] = {{ba, bb}, {bc, ba}};
        for (int q = 0; q < 2; q++) {
            y = BINARY[o].op(tape, pairs[q][0], pairs[q][1]);
            for (int64_t i = 0; i < y->numel; i++) {
                const tg_real want = ref_binary(
                    BINARY[o].op, pairs[q][0]->data[bcast_source(pairs[q][0], 3, y->shape, i)],
                    pairs[q][1]->data[bcast_source(pairs[q][1], 3, y->shape, i)]);
                if (y->data[i] != want)
                    fail_msg("large %s case %d element %lld", BINARY[o].name, q, (long long)i);
            }
        }
    }
    tg_tensor *t[] = {a, b, c, s, z, zero, e, ba, bb, bc};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) tg_tensor_free(t[i]);
    tg_tape_free(tape);
}

static void test_unary_forward(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_from_array(TG_SHAPE(5), (tg_real[]){-2, -0.5, 0, 1, 3});
    tg_test_assert_close("neg", tg_neg(tape, x)->data, (tg_real[]){2, 0.5, 0, -1, -3}, 5, 0, 0);
    tg_test_assert_close("add_scalar", tg_add_scalar(tape, x, 1.5)->data,
                         (tg_real[]){-0.5, 1, 1.5, 2.5, 4.5}, 5, 0, 0);
    tg_test_assert_close("mul_scalar", tg_mul_scalar(tape, x, -2)->data,
                         (tg_real[]){4, 1, 0, -2, -6}, 5, 0, 0);
    tg_test_assert_close("pow 2", tg_pow_scalar(tape, x, 2)->data, (tg_real[]){4, 0.25, 0, 1, 9}, 5,
                         0, 0);
    tg_test_assert_close("pow 3", tg_pow_scalar(tape, x, 3)->data,
                         (tg_real[]){-8, -0.125, 0, 1, 27}, 5, 0, 0);
    tg_test_assert_close("pow 0", tg_pow_scalar(tape, x, 0)->data, (tg_real[]){1, 1, 1, 1, 1}, 5, 0,
                         0);
    tg_test_assert_close("pow -1", tg_pow_scalar(tape, x, -1)->data,
                         (tg_real[]){-0.5, -2, INFINITY, 1, (tg_real)(1.0 / 3)}, 5, 0, 0);
    tg_tensor *pos = tg_tensor_from_array(TG_SHAPE(4), (tg_real[]){0.25, 1, 4, 2});
    tg_test_assert_close("pow 0.5", tg_pow_scalar(tape, pos, 0.5)->data,
                         (tg_real[]){0.5, 1, 2, (tg_real)M_SQRT2}, 4, TG_TEST_ATOL, TG_TEST_RTOL);
    tg_test_assert_close("pow -0.5", tg_pow_scalar(tape, pos, -0.5)->data,
                         (tg_real[]){2, 1, 0.5, (tg_real)M_SQRT1_2}, 4, TG_TEST_ATOL, TG_TEST_RTOL);
    tg_test_assert_close("pow 1.5", tg_pow_scalar(tape, pos, 1.5)->data,
                         (tg_real[]){0.125, 1, 8, (tg_real)(2 * M_SQRT2)}, 4, TG_TEST_ATOL,
                         TG_TEST_RTOL);
    tg_test_assert_close("sqrt", tg_sqrt(tape, pos)->data, (tg_real[]){0.5, 1, 2, (tg_real)M_SQRT2},
                         4, TG_TEST_ATOL, TG_TEST_RTOL);

    tg_tensor *sp = tg_tensor_from_array(TG_SHAPE(6), (tg_real[]){0, 1, -1, 0, -INFINITY, NAN});
    sp->data[3] = (tg_real)-0.0;
    tg_tensor *e = tg_exp(tape, sp);
    tg_test_assert_close_f64("exp", e->data, (double[]){1, M_E, 1 / M_E, 1, 0, NAN}, 6,
                             TG_TEST_ATOL, TG_TEST_RTOL);
    tg_tensor *lx0 = tg_tensor_from_array(TG_SHAPE(4), (tg_real[]){0, 1, (tg_real)M_E, -1});
    tg_tensor *l = tg_log(tape, lx0);
    assert_true(isinf(l->data[0]) && l->data[0] < 0); /* log(0) = -inf */
    assert_true(l->data[1] == 0 && isnan(l->data[3]));
    tg_test_assert_close("log(e)", &l->data[2], (tg_real[]){1}, 1, TG_TEST_ATOL, TG_TEST_RTOL);
    tg_tensor_free(lx0);

    /* tanh, sigmoid: values, saturation without NaN/inf */
    tg_tensor *big =
        tg_tensor_from_array(TG_SHAPE(8), (tg_real[]){-1000, -100, -20, -1, 0, 1, 100, 1000});
    tg_tensor *th = tg_tanh(tape, big), *sg = tg_sigmoid(tape, big);
    const double want_th[] = {-1, -1, -1, -tanh(1.0), 0, tanh(1.0), 1, 1};
    const double want_sg[] = {0,
                              3.720075976020836e-44,
                              2.0611536181902037e-09,
                              0.2689414213699951,
                              0.5,
                              0.7310585786300049,
                              1,
                              1};
    tg_test_assert_close_f64("tanh", th->data, want_th, 8, TG_TEST_ATOL, TG_TEST_RTOL);
    tg_test_assert_close_f64("sigmoid", sg->data, want_sg, 8, TG_TEST_ATOL, TG_TEST_RTOL);
    for (int i = 0; i < 8; i++) assert_true(isfinite(sg->data[i]) && isfinite(th->data[i]));
    assert_true(sg->data[0] == 0 && sg->data[7] == 1);

    /* relu: NaN passes, -0.0 stays -0.0, as in PyTorch */
    tg_tensor *r = tg_relu(tape, sp);
    assert_true(r->data[0] == 0 && r->data[1] == 1 && r->data[2] == 0 && r->data[4] == 0);
    assert_true(r->data[3] == 0 && signbit(r->data[3]));
    assert_true(isnan(r->data[5]));
    assert_false(signbit(r->data[2])); /* relu(-1) = +0 */

    /* gelu: exact and tanh forms (values from the formulas in float64) */
    tg_tensor *gx = tg_tensor_from_array(TG_SHAPE(5), (tg_real[]){-3, -1, 0, 1, 2.5});
    tg_tensor *ge = tg_gelu(tape, gx, TG_GELU_ERF), *gt = tg_gelu(tape, gx, TG_GELU_TANH);
    double we[5], wt[5];
    for (int i = 0; i < 5; i++) {
        const double v = (double)gx->data[i];
        we[i] = 0.5 * v * (1 + erf(v / sqrt(2.0)));
        wt[i] = 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
    }
    tg_test_assert_close_f64("gelu", ge->data, we, 5, TG_TEST_ATOL, TG_TEST_RTOL);
    tg_test_assert_close_f64("gelu_tanh", gt->data, wt, 5, TG_TEST_ATOL, TG_TEST_RTOL);
    tg_test_assert_close_f64("gelu(1)", &ge->data[3], (double[]){0.8413447460685429}, 1,
                             TG_TEST_ATOL, TG_TEST_RTOL);
    tg_test_assert_close_f64("gelu_tanh(1)", &gt->data[3], (double[]){0.8411919906082768}, 1,
                             TG_TEST_ATOL, TG_TEST_RTOL);

    /* large tensors take the threaded path and give the same values */
    const int64_t n = 100003;
    tg_tensor *lx = tg_test_rand(3, -4, 4, TG_SHAPE(n));
    tg_tensor *ly = tg_tanh(tape, lx);
    tg_tensor *head = tg_tensor_from_array(TG_SHAPE(1000), lx->data);
    assert_memory_equal(tg_tanh(tape, head)->data, ly->data, 1000 * sizeof(tg_real));
    tg_tensor_free(head);
    tg_tensor_free(lx);
    tg_tensor_free(x);
    tg_tensor_free(pos);
    tg_tensor_free(sp);
    tg_tensor_free(big);
    tg_tensor_free(gx);
    tg_tape_free(tape);
}

/* ---------------------------------------------------------------------------------------
 * gradchecks */

typedef struct {
    binary_op op;
} binary_ctx;

static tg_tensor *gc_binary(tg_tape *t, tg_tensor *const *in, void *ctx) {
    return ((binary_ctx *)ctx)->op(t, in[0], in[1]);
}

static void test_gradcheck_binary(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    char what[128];
    for (int o = 0; o < 4; o++)
        for (int k = 0; k < N_PAIRS; k++) {
            const shape_pair *sp = &PAIRS[k];
            tg_tensor *a = rand_leaf(100 + (uint64_t)k, -2, 2, sp->na, sp->a, "a");
            tg_tensor *b = BINARY[o].op == tg_div
                               ? away_leaf(200 + (uint64_t)k, 0.5, 2, sp->nb, sp->b, "b")
                               : rand_leaf(200 + (uint64_t)k, -2, 2, sp->nb, sp->b, "b");
            binary_ctx ctx = {BINARY[o].op};
            snprintf(what, sizeof what, "%s pair %d", BINARY[o].name, k);
            tg_test_gradcheck(what, gc_binary, &ctx, (tg_tensor *[]){a, b}, 2);
            tg_tensor_free(a);
            tg_tensor_free(b);
        }
    /* only one side requires grad; the same tensor on both sides */
    tg_tensor *a = rand_leaf(1, -2, 2, TG_SHAPE(2, 3), "a");
    tg_tensor *b = tg_tensor_named(tg_test_rand(2, 0.5, 2, TG_SHAPE(3)), "b");
    tg_tensor *a2 = rand_leaf(3, 0.5, 2, TG_SHAPE(2, 3), "a2");
    for (int o = 0; o < 4; o++) {
        binary_ctx ctx = {BINARY[o].op};
        tg_test_gradcheck("a op const", gc_binary, &ctx, (tg_tensor *[]){a, b}, 2);
        tg_test_gradcheck("const op a", gc_binary, &ctx, (tg_tensor *[]){b, a2}, 2);
    }
    tg_tensor_free(a2);
    tg_tensor_requires_grad(b, true);
    for (int o = 0; o < 4; o++) {
        binary_ctx ctx = {BINARY[o].op};
        tg_test_gradcheck("b op b", gc_binary, &ctx, (tg_tensor *[]){b, b}, 2);
    }
    tg_tensor_free(a);
    tg_tensor_free(b);
}

typedef struct {
    int which;
    tg_real s;
} unary_ctx;

enum {
    U_NEG,
    U_ADDS,
    U_MULS,
    U_POW,
    U_EXP,
    U_LOG,
    U_SQRT,
    U_TANH,
    U_SIGMOID,
    U_RELU,
    U_GELU,
    U_GELU_TANH
};

static tg_tensor *gc_unary(tg_tape *t, tg_tensor *const *in, void *ctx) {
    const unary_ctx *c = ctx;
    tg_tensor *x = in[0];
    switch (c->which) {
    case U_NEG:
        return tg_neg(t, x);
    case U_ADDS:
        return tg_add_scalar(t, x, c->s);
    case U_MULS:
        return tg_mul_scalar(t, x, c->s);
    case U_POW:
        return tg_pow_scalar(t, x, c->s);
    case U_EXP:
        return tg_exp(t, x);
    case U_LOG:
        return tg_log(t, x);
    case U_SQRT:
        return tg_sqrt(t, x);
    case U_TANH:
        return tg_tanh(t, x);
    case U_SIGMOID:
        return tg_sigmoid(t, x);
    case U_RELU:
        return tg_relu(t, x);
    case U_GELU:
        return tg_gelu(t, x, TG_GELU_ERF);
    default:
        return tg_gelu(t, x, TG_GELU_TANH);
    }
}

static void test_gradcheck_unary(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    const struct {
        const char *name;
        unary_ctx ctx;
        double lo, hi;
        bool signs; /* alternate signs (away from zero) */
    } cases[] = {
        {"neg", {U_NEG, 0}, -2, 2, false},
        {"add_scalar", {U_ADDS, 2.5}, -2, 2, false},
        {"mul_scalar", {U_MULS, -1.5}, -2, 2, false},
        {"pow 2", {U_POW, 2}, -2, 2, false},
        {"pow 3", {U_POW, 3}, -2, 2, false},
        {"pow 0.5", {U_POW, 0.5}, 0.3, 2, false},
        {"pow -0.5", {U_POW, -0.5}, 0.3, 2, false},
        {"pow -1", {U_POW, -1}, 0.3, 2, true},
        {"pow -2", {U_POW, -2}, 0.3, 2, true},
        {"pow 2.5", {U_POW, 2.5}, 0.3, 2, false},
        {"pow 0", {U_POW, 0}, -2, 2, false},
        {"pow 1", {U_POW, 1}, -2, 2, false},
        {"exp", {U_EXP, 0}, -2, 2, false},
        {"log", {U_LOG, 0}, 0.2, 3, false},
        {"sqrt", {U_SQRT, 0}, 0.2, 3, false},
        {"tanh", {U_TANH, 0}, -3, 3, false},
        {"sigmoid", {U_SIGMOID, 0}, -5, 5, false},
        {"relu", {U_RELU, 0}, 0.05, 2, true},
        {"gelu", {U_GELU, 0}, -3, 3, false},
        {"gelu_tanh", {U_GELU_TANH, 0}, -3, 3, false},
    };
    const int64_t shapes[][3] = {{3, 4, 0}, {2, 3, 2}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int s = 0; s < 2; s++) {
            const int nd = s == 0 ? 2 : 3;
            tg_tensor *x = cases[c].signs
                               ? away_leaf(300 + c, cases[c].lo, cases[c].hi, nd, shapes[s], "x")
                               : rand_leaf(300 + c, cases[c].lo, cases[c].hi, nd, shapes[s], "x");
            unary_ctx ctx = cases[c].ctx;
            tg_test_gradcheck(cases[c].name, gc_unary, &ctx, (tg_tensor *[]){x}, 1);
            tg_tensor_free(x);
        }
    /* a () scalar input */
    tg_tensor *x = leaf(tg_tensor_from_array(0, NULL, (tg_real[]){0.7}), "x");
    for (int w = U_NEG; w <= U_GELU_TANH; w++) {
        unary_ctx ctx = {w, 2};
        tg_test_gradcheck("scalar input", gc_unary, &ctx, (tg_tensor *[]){x}, 1);
    }
    tg_tensor_free(x);
}

/* f(x) = x*x + exp(x): x feeds three op inputs */
static tg_tensor *gc_shared1(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_add(t, tg_mul(t, in[0], in[0]), tg_exp(t, in[0]));
}

/* f(x, b) = sigmoid(x) * tanh(x + b) - relu(x) / (x^2 + 1) * b, b broadcast (3,) */
static tg_tensor *gc_shared2(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    tg_tensor *x = in[0], *b = in[1];
    tg_tensor *u = tg_mul(t, tg_sigmoid(t, x), tg_tanh(t, tg_add(t, x, b)));
    tg_tensor *v = tg_div(t, tg_relu(t, x), tg_add_scalar(t, tg_pow_scalar(t, x, 2), 1));
    return tg_sub(t, u, tg_mul(t, v, b));
}

/* f(a, b) = (a + b) * b with a (2, 3) and b (3,): b is used broadcast twice */
static tg_tensor *gc_shared3(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    tg_tensor *h = tg_add(t, in[0], in[1]);
    return tg_mul(t, tg_gelu(t, h, TG_GELU_ERF),
                  tg_div(t, h, tg_add_scalar(t, tg_exp(t, in[1]), 1)));
}

static void test_gradcheck_shared_graphs(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_tensor *x = away_leaf(7, 0.1, 2, TG_SHAPE(2, 3), "x");
    tg_tensor *b = rand_leaf(8, -1, 1, TG_SHAPE(3), "b");
    tg_test_gradcheck("x*x + exp(x)", gc_shared1, NULL, (tg_tensor *[]){x}, 1);
    tg_test_gradcheck("sigmoid/tanh/relu graph", gc_shared2, NULL, (tg_tensor *[]){x, b}, 2);
    tg_test_gradcheck("(a+b) broadcast twice", gc_shared3, NULL, (tg_tensor *[]){x, b}, 2);

    /* the gradient of x*x + exp(x) by hand: 2x + exp(x), accumulated from three uses */
    tg_tape *tape = tg_tape_new();
    tg_tensor *y = gc_shared1(tape, (tg_tensor *[]){x}, NULL);
    tg_real seed[6] = {1, 1, 1, 1, 1, 1};
    tg_tape_backward_with(tape, y, seed);
    double want[6];
    for (int i = 0; i < 6; i++) want[i] = 2 * (double)x->data[i] + exp((double)x->data[i]);
    tg_test_assert_close_f64("d(x*x+exp x)", x->grad, want, 6, 1e-12, 1e-12);
    tg_tape_free(tape);
    tg_tensor_free(x);
    tg_tensor_free(b);
}

/* ---------------------------------------------------------------------------------------
 * masked_fill and where */

static void test_masked_fill_and_where(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = leaf(tg_tensor_from_array(TG_SHAPE(2, 3), (tg_real[]){1, 2, 3, 4, 5, 6}), "x");
    tg_tensor *m = tg_tensor_from_array(TG_SHAPE(3), (tg_real[]){0, 1, 0});
    tg_tensor *y = tg_masked_fill(tape, x, m, -INFINITY);
    tg_test_assert_close("masked_fill", y->data, (tg_real[]){1, -INFINITY, 3, 4, -INFINITY, 6}, 6,
                         0, 0);
    tg_tape_backward_with(tape, y, (tg_real[]){1, 2, 3, 4, 5, 6});
    tg_test_assert_close("d masked_fill", x->grad, (tg_real[]){1, 0, 3, 4, 0, 6}, 6, 0, 0);
    tg_tensor_zero_grad(x);

    /* a mask that is larger than x: both broadcast (as torch.masked_fill), x's gradient is
     * summed back */
    tg_tensor *m2 =
        tg_tensor_from_array(TG_SHAPE(2, 2, 3), (tg_real[]){1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0});
    y = tg_masked_fill(tape, x, m2, 0.5);
    assert_true(y->ndim == 3 && y->shape[0] == 2);
    tg_test_assert_close("masked_fill up", y->data,
                         (tg_real[]){0.5, 2, 3, 4, 5, 6, 1, 2, 0.5, 4, 5, 6}, 12, 0, 0);
    tg_tape_backward_with(tape, y, (tg_real[]){1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1});
    tg_test_assert_close("d masked_fill up", x->grad, (tg_real[]){1, 2, 1, 2, 2, 2}, 6, 0, 0);
    tg_tensor_zero_grad(x);

    /* where(cond (2,1), a (2,3), b (3,)) */
    tg_tensor *c = tg_tensor_from_array(TG_SHAPE(2, 1), (tg_real[]){1, 0});
    tg_tensor *b = leaf(tg_tensor_from_array(TG_SHAPE(3), (tg_real[]){-1, -2, -3}), "b");
    y = tg_where(tape, c, x, b);
    tg_test_assert_close("where", y->data, (tg_real[]){1, 2, 3, -1, -2, -3}, 6, 0, 0);
    tg_tape_backward_with(tape, y, (tg_real[]){1, 2, 3, 4, 5, 6});
    tg_test_assert_close("d where a", x->grad, (tg_real[]){1, 2, 3, 0, 0, 0}, 6, 0, 0);
    tg_test_assert_close("d where b", b->grad, (tg_real[]){4, 5, 6}, 3, 0, 0);
    /* NaN in the unselected branch does not leak into the output */
    tg_tensor *nan = tg_tensor_full(TG_SHAPE(1), NAN);
    y = tg_where(tape, c, b, nan);
    assert_true(y->data[0] == -1 && isnan(y->data[3]));
    tg_tensor_free(nan);
    tg_tensor_free(x);
    tg_tensor_free(m);
    tg_tensor_free(m2);
    tg_tensor_free(c);
    tg_tensor_free(b);
    tg_tape_free(tape);
}

typedef struct {
    const tg_tensor *mask;
} mask_ctx;

static tg_tensor *gc_masked_fill(tg_tape *t, tg_tensor *const *in, void *ctx) {
    return tg_masked_fill(t, in[0], ((mask_ctx *)ctx)->mask, -3);
}

static tg_tensor *gc_where(tg_tape *t, tg_tensor *const *in, void *ctx) {
    return tg_where(t, ((mask_ctx *)ctx)->mask, in[0], in[1]);
}

static void test_gradcheck_masked_fill_where(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_tensor *x = rand_leaf(9, -1, 1, TG_SHAPE(2, 3), "x");
    tg_tensor *v = rand_leaf(10, -1, 1, TG_SHAPE(3), "v");
    tg_tensor *m3 = tg_tensor_from_array(TG_SHAPE(3), (tg_real[]){1, 0, 0});
    tg_tensor *m21 = tg_tensor_from_array(TG_SHAPE(2, 1), (tg_real[]){0, 1});
    tg_tensor *m23 = tg_tensor_from_array(TG_SHAPE(2, 3), (tg_real[]){0, 1, 1, 0, 0, 1});
    tg_tensor *m423 = tg_test_rand(11, 0, 1, TG_SHAPE(4, 2, 3));
    for (int64_t i = 0; i < m423->numel; i++) m423->data[i] = m423->data[i] < 0.5 ? 0 : 1;
    const tg_tensor *masks[] = {m3, m21, m23, m423};
    for (int k = 0; k < 4; k++) {
        mask_ctx ctx = {masks[k]};
        tg_test_gradcheck("masked_fill x", gc_masked_fill, &ctx, (tg_tensor *[]){x}, 1);
        tg_test_gradcheck("masked_fill v", gc_masked_fill, &ctx, (tg_tensor *[]){v}, 1);
        tg_test_gradcheck("where x v", gc_where, &ctx, (tg_tensor *[]){x, v}, 2);
        tg_test_gradcheck("where v x", gc_where, &ctx, (tg_tensor *[]){v, x}, 2);
    }
    tg_tensor *t[] = {x, v, m3, m21, m23, m423};
    for (int i = 0; i < 6; i++) tg_tensor_free(t[i]);
}

/* ---------------------------------------------------------------------------------------
 * dropout */

static void test_dropout_statistics(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    const int64_t n = 200000;
    tg_tensor *x = leaf(tg_test_rand(1, 0.5, 1.5, TG_SHAPE(n)), "x");
    const double ps[] = {0.1, 0.3, 0.5, 0.9};
    for (int k = 0; k < 4; k++) {
        tg_rng rng;
        tg_rng_seed(&rng, 42 + (uint64_t)k);
        tg_tensor *y = tg_dropout(tape, x, (tg_real)ps[k], true, &rng);
        assert_true(y != x);
        /* PyTorch's scale: 1 / (1 - p) rounded to the working precision */
        const tg_real scale = (tg_real)1 / (tg_real)(1.0 - (double)(tg_real)ps[k]);
        int64_t kept = 0;
        for (int64_t i = 0; i < n; i++) {
            if (y->data[i] == 0) continue;
            kept++;
            if (y->data[i] != x->data[i] * scale)
                fail_msg("p %g: element %lld = %.9g, want x * %.9g", ps[k], (long long)i,
                         (double)y->data[i], (double)scale);
        }
        const double frac = (double)kept / (double)n, sd = sqrt(ps[k] * (1 - ps[k]) / (double)n);
        if (fabs(frac - (1 - ps[k])) > 5 * sd)
            fail_msg("p %g: kept fraction %.5f, want %.5f +- %.5f", ps[k], frac, 1 - ps[k], 5 * sd);
        /* backward: dx = dy * mask * scale */
        tg_tensor_zero_grad(x);
        tg_tape_backward_with(tape, y, x->data);
        for (int64_t i = 0; i < n; i += 101)
            assert_true(x->grad[i] == (y->data[i] == 0 ? 0 : x->data[i] * scale));
        tg_tape_reset(tape);
    }
#ifndef TG_DOUBLE
    /* measured in PyTorch: p = 0.3 scales by 1.4285715 */
    assert_true((tg_real)1 / (tg_real)(1.0 - (double)(tg_real)0.3) == 1.4285715f);
#endif
    tg_tensor_free(x);
    tg_tape_free(tape);
}

static void test_dropout_seeds_eval_and_limits(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = leaf(tg_test_rand(2, -1, 1, TG_SHAPE(50, 40)), "x");
    tg_rng r1, r2, r3;
    tg_rng_seed(&r1, 7);
    tg_rng_seed(&r2, 7);
    tg_rng_seed(&r3, 8);
    tg_tensor *a = tg_dropout(tape, x, 0.5, true, &r1), *b = tg_dropout(tape, x, 0.5, true, &r2);
    tg_tensor *c = tg_dropout(tape, x, 0.5, true, &r3);
    assert_memory_equal(a->data, b->data, (size_t)x->numel * sizeof(tg_real));
    assert_true(memcmp(a->data, c->data, (size_t)x->numel * sizeof(tg_real)) != 0);
    /* the generator advances: a second call draws a different mask */
    tg_tensor *d = tg_dropout(tape, x, 0.5, true, &r1);
    assert_true(memcmp(a->data, d->data, (size_t)x->numel * sizeof(tg_real)) != 0);
    /* NULL uses the default generator, seeded by tg_manual_seed */
    tg_manual_seed(7);
    tg_tensor *e = tg_dropout(tape, x, 0.5, true, NULL);
    assert_memory_equal(a->data, e->data, (size_t)x->numel * sizeof(tg_real));

    /* eval and p = 0 return x itself and record nothing */
    const size_t nodes = tg_tape_node_count(tape);
    assert_ptr_equal(tg_dropout(tape, x, 0.5, false, &r1), x);
    assert_ptr_equal(tg_dropout(tape, x, 0, true, &r1), x);
    assert_int_equal(tg_tape_node_count(tape), nodes);
    /* p = 1: zeros, zero gradient */
    tg_tensor *z = tg_dropout(tape, x, 1, true, &r1);
    for (int64_t i = 0; i < x->numel; i++) assert_true(z->data[i] == 0);
    tg_tensor_zero_grad(x);
    tg_tape_backward_with(tape, z, x->data);
    for (int64_t i = 0; i < x->numel; i++) assert_true(x->grad[i] == 0);
    tg_tensor_free(x);
    tg_tape_free(tape);
}

typedef struct {
    double p;
    bool training;
} dropout_ctx;

static tg_tensor *gc_dropout(tg_tape *t, tg_tensor *const *in, void *ctx) {
    const dropout_ctx *c = ctx;
    tg_rng rng;
    tg_rng_seed(&rng, 1234); /* the same mask at every evaluation */
    /* multiplied by w so the output is an op's output even when dropout is the identity */
    return tg_mul(t, tg_dropout(t, in[0], (tg_real)c->p, c->training, &rng), in[1]);
}

static void test_gradcheck_dropout(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_tensor *x = rand_leaf(12, -1, 1, TG_SHAPE(4, 5), "x");
    tg_tensor *w = rand_leaf(13, -1, 1, TG_SHAPE(5), "w");
    const dropout_ctx cases[] = {{0.3, true}, {0.5, true},  {0.9, true},
                                 {0, true},   {0.5, false}, {1, true}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        dropout_ctx ctx = cases[k];
        tg_test_gradcheck("dropout", gc_dropout, &ctx, (tg_tensor *[]){x, w}, 2);
    }
    tg_tensor_free(x);
    tg_tensor_free(w);
}

/* ---------------------------------------------------------------------------------------
 * recording, names, errors */

static void test_no_grad_and_recording(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *a = tg_test_rand(1, -1, 1, TG_SHAPE(2, 3));
    tg_tensor *b = tg_test_rand(2, -1, 1, TG_SHAPE(3));
    tg_tensor *y = tg_mul(tape, tg_exp(tape, a), b);
    assert_false(y->requires_grad);
    assert_int_equal(tg_tape_node_count(tape), 0);
    tg_tensor_requires_grad(b, true);
    y = tg_add(tape, tg_exp(tape, a), b);
    assert_true(y->requires_grad);
    assert_int_equal(tg_tape_node_count(tape), 1); /* exp(a) needed no node */
    assert_string_equal(tg_tape_node(tape, 0)->op, "add");
    tg_tape_set_recording(tape, false);
    y = tg_sigmoid(tape, tg_add(tape, a, b));
    assert_false(y->requires_grad);
    assert_int_equal(tg_tape_node_count(tape), 1);
    tg_tape_free(tape);
    tg_tensor_free(a);
    tg_tensor_free(b);
}

static void test_error_messages(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(2, 3)), "x");
    tg_tensor *b = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(4)), "b");
    tg_tensor *u = tg_tensor_zeros(TG_SHAPE(3, 2));
    tg_tensor *big = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(5, 2, 3)), "big");
    TG_EXPECT_FAIL(tg_add(tape, x, b), "tg_add", "(2, 3) 'x'", "(4,) 'b'", "cannot be broadcast",
                   "3 vs 4 at dim -1");
    TG_EXPECT_FAIL(tg_sub(tape, b, x), "tg_sub", "(4,) 'b' and (2, 3) 'x'");
    TG_EXPECT_FAIL(tg_mul(tape, x, u), "tg_mul", "(3, 2) <unnamed>", "cannot be broadcast");
    TG_EXPECT_FAIL(tg_div(tape, u, big), "tg_div", "(3, 2) <unnamed> and (5, 2, 3) 'big'",
                   "2 vs 3 at dim -1");
    tg_tensor *m = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(2)), "mask");
    TG_EXPECT_FAIL(tg_masked_fill(tape, x, m, 0), "tg_masked_fill", "(2, 3) 'x'", "(2,) 'mask'",
                   "cannot be broadcast");
    TG_EXPECT_FAIL(tg_where(tape, m, x, x), "tg_where", "(2,) 'mask', (2, 3) 'x' and (2, 3) 'x'");
    TG_EXPECT_FAIL(tg_where(tape, x, x, b), "tg_where", "(4,) 'b'", "3 vs 4");
    TG_EXPECT_FAIL(tg_dropout(tape, x, 1.5, true, NULL), "tg_dropout", "p must be in [0, 1]", "1.5",
                   "(2, 3) 'x'");
    TG_EXPECT_FAIL(tg_dropout(tape, x, -0.1, false, NULL), "tg_dropout", "-0.1");
    TG_EXPECT_FAIL(tg_dropout(tape, x, NAN, true, NULL), "tg_dropout", "nan");
    TG_EXPECT_FAIL(tg_gelu(tape, x, (tg_gelu_approximate)7), "tg_gelu", "7");
    /* nothing was recorded or left behind by the failed calls */
    assert_int_equal(tg_tape_node_count(tape), 0);
    tg_tensor *t[] = {x, b, u, big, m};
    for (int i = 0; i < 5; i++) tg_tensor_free(t[i]);
    tg_tape_free(tape);
}

/* ---------------------------------------------------------------------------------------
 * PyTorch parity (tests/fixtures, made by tests/make_fixtures.py) */

/* the worst element over all cases, as a fraction of the tolerance atol + rtol |want| */
static double parity_worst_ratio = 0, parity_worst_err = 0, parity_worst_want = 0;
static char parity_worst_where[160];
static int parity_cases = 0;

#ifdef TG_DOUBLE
#define PAR_ATOL 1e-6
#define PAR_RTOL 1e-5
#else
#define PAR_ATOL 1e-6
#define PAR_RTOL 1e-5
#endif

static bool fixture_exists(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.safetensors", TG_FIXTURES_DIR, name);
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

static void track(const tg_fixture *fx, const char *name, const tg_tensor *got) {
    tg_tensor *want = tg_fixture_tensor(fx, name);
    for (int64_t i = 0; i < want->numel && i < got->numel; i++) {
        const double w = (double)want->data[i], e = fabs((double)got->data[i] - w);
        if (!(e > 0) || isinf(w)) continue; /* equal, equal infinities, or NaN */
        const double ratio = e / (PAR_ATOL + PAR_RTOL * fabs(w));
        if (ratio > parity_worst_ratio) {
            parity_worst_ratio = ratio;
            parity_worst_err = e;
            parity_worst_want = w;
            snprintf(parity_worst_where, sizeof parity_worst_where, "%s '%s'[%lld]",
                     tg_fixture_meta(fx, "case") ? tg_fixture_meta(fx, "case") : "?", name,
                     (long long)i);
        }
    }
    tg_fixture_assert_close(fx, name, got->data, got->shape, got->ndim, PAR_ATOL, PAR_RTOL);
    tg_tensor_free(want);
}

/* A 0/1 mask stored as I64 (bool) or F32, as a tensor of the build's precision. */
static tg_tensor *mask_from_fixture(const tg_fixture *fx, const char *name) {
    const char *bools = tg_fixture_meta(fx, "bool");
    if (!bools || !strstr(bools, name)) return tg_fixture_tensor(fx, name);
    tg_index *ix = tg_fixture_index(fx, name);
    tg_tensor *m = tg_tensor_new(ix->ndim, ix->shape);
    for (int64_t i = 0; i < ix->numel; i++) m->data[i] = ix->data[i] ? 1 : 0;
    tg_index_free(ix);
    return m;
}

/* Runs one case: inputs in.*, out, gout, grad.*. Returns false if the file is absent. */
static bool parity_case(const char *name) {
    if (!fixture_exists(name)) return false;
    tg_fixture *fx = tg_fixture_load(name);
    const char *op = tg_fixture_meta(fx, "op");
    assert_non_null(op);
    tg_tape *tape = tg_tape_new();
    tg_tensor *in[3] = {NULL, NULL, NULL};
    const char *in_names[3] = {NULL, NULL, NULL};
    tg_tensor *y = NULL;
    const binary_op bops[] = {tg_add, tg_sub, tg_mul, tg_div};
    const char *bnames[] = {"add", "sub", "mul", "div"};
    for (int k = 0; k < 4 && !y; k++)
        if (!strcmp(op, bnames[k])) {
            in[0] = leaf(tg_fixture_tensor(fx, "in.a"), "a");
            in[1] = leaf(tg_fixture_tensor(fx, "in.b"), "b");
            in_names[0] = "grad.a";
            in_names[1] = "grad.b";
            y = bops[k](tape, in[0], in[1]);
        }
    const bool then_softmax = !strcmp(op, "masked_fill+softmax"); /* attention's -inf mask */
    if (!y && (!strcmp(op, "masked_fill") || !strcmp(op, "where") || then_softmax)) {
        const bool where = !strcmp(op, "where");
        in[2] = mask_from_fixture(fx, where ? "in.cond" : "in.mask");
        in[0] = leaf(tg_fixture_tensor(fx, where ? "in.a" : "in.x"), "x");
        in_names[0] = where ? "grad.a" : "grad.x";
        if (where) {
            in[1] = leaf(tg_fixture_tensor(fx, "in.b"), "b");
            in_names[1] = "grad.b";
            y = tg_where(tape, in[2], in[0], in[1]);
        } else {
            const char *v = tg_fixture_meta(fx, "value");
            assert_non_null(v);
            y = tg_masked_fill(tape, in[0], in[2], (tg_real)strtod(v, NULL));
            if (then_softmax) y = tg_softmax(tape, y, atoi(tg_fixture_meta(fx, "dim")));
        }
    }
    if (!y) {
        in[0] = leaf(tg_fixture_tensor(fx, "in.x"), "x");
        in_names[0] = "grad.x";
        tg_tensor *x = in[0];
        const char *sc = tg_fixture_meta(fx, "scalar"), *ex = tg_fixture_meta(fx, "exponent");
        const char *ap = tg_fixture_meta(fx, "approximate");
        if (!strcmp(op, "neg"))
            y = tg_neg(tape, x);
        else if (!strcmp(op, "add_scalar"))
            y = tg_add_scalar(tape, x, (tg_real)strtod(sc, NULL));
        else if (!strcmp(op, "mul_scalar"))
            y = tg_mul_scalar(tape, x, (tg_real)strtod(sc, NULL));
        else if (!strcmp(op, "pow"))
            y = tg_pow_scalar(tape, x, (tg_real)strtod(ex, NULL));
        else if (!strcmp(op, "exp"))
            y = tg_exp(tape, x);
        else if (!strcmp(op, "log"))
            y = tg_log(tape, x);
        else if (!strcmp(op, "sqrt"))
            y = tg_sqrt(tape, x);
        else if (!strcmp(op, "tanh"))
            y = tg_tanh(tape, x);
        else if (!strcmp(op, "sigmoid"))
            y = tg_sigmoid(tape, x);
        else if (!strcmp(op, "relu"))
            y = tg_relu(tape, x);
        else if (!strcmp(op, "gelu"))
            y = tg_gelu(tape, x, ap && !strcmp(ap, "tanh") ? TG_GELU_TANH : TG_GELU_ERF);
        else
            fail_msg("fixture %s: unknown op '%s'", name, op);
    }
    track(fx, "out", y);
    tg_tensor *gout = tg_fixture_tensor(fx, "gout");
    assert_int_equal(gout->numel, y->numel);
    tg_tape_backward_with(tape, y, gout->data);
    for (int k = 0; k < 2; k++) {
        if (!in[k]) continue;
        tg_tensor g = *in[k];
        g.data = in[k]->grad;
        track(fx, in_names[k], &g);
    }
    tg_tensor_free(gout);
    for (int k = 0; k < 3; k++) tg_tensor_free(in[k]);
    tg_tape_free(tape);
    tg_fixture_free(fx);
    parity_cases++;
    return true;
}

static void test_pytorch_parity(void **state) {
    (void)state;
    static const char *cases[] = {
        "op_add_same",
        "op_add_2x3_3",
        "op_add_2x1x4_3x1",
        "op_add_2x3_1",
        "op_sub_same",
        "op_sub_2x3_3",
        "op_sub_2x1x4_3x1",
        "op_sub_2x3_1",
        "op_mul_same",
        "op_mul_2x3_3",
        "op_mul_2x1x4_3x1",
        "op_mul_2x3_1",
        "op_div_same",
        "op_div_2x3_3",
        "op_div_2x1x4_3x1",
        "op_div_2x3_1",
        "op_neg",
        "op_add_scalar",
        "op_mul_scalar",
        "op_pow_2",
        "op_pow_3",
        "op_pow_0.5",
        "op_pow_m1",
        "op_exp",
        "op_log",
        "op_sqrt",
        "op_tanh",
        "op_sigmoid",
        "op_relu",
        "op_gelu",
        "op_gelu_tanh",
        /* masks (tests/fixturegen/ops_index.py) */
        "op_masked_fill",
        "op_masked_fill_bcast",
        "op_masked_fill_neginf_softmax",
        "op_where",
        "op_where_bcast",
        /* tests/fixturegen/ops_elementwise_extra.py */
        "op_add_scalar0_2x3_extra",
        "op_sub_2x3_scalar0_extra",
        "op_mul_3x1_1x4_extra",
        "op_div_4x1x3_1x2x1_extra",
        "op_mul_2x1x3x1_4x1x1_extra",
        "op_add_bias_8x25x16_16_extra",
        "op_mul_rows_8x25x16_8x25x1_extra",
        "op_pow_2.5_extra",
        "op_pow_m0.5_extra",
        "op_pow_m2_extra",
        "op_pow_1.5_extra",
        "op_sigmoid_large_extra",
        "op_tanh_large_extra",
        "op_exp_large_extra",
        "op_gelu_wide_extra",
        "op_gelu_tanh_wide_extra",
        "op_where_all_bcast_extra",
        "op_masked_fill_up_extra",
    };
    const int n = (int)(sizeof cases / sizeof cases[0]);
    int missing = 0;
    for (int i = 0; i < n; i++)
        if (!parity_case(cases[i])) {
            if (!missing) print_message("parity: fixture missing: %s", cases[i]);
            missing++;
        }
    print_message("parity: %d of %d cases; worst element %s: |err| %.3g at value %.6g, %.3g of "
                  "the tolerance (atol %g, rtol %g)\n",
                  n - missing, n, parity_worst_where, parity_worst_err, parity_worst_want,
                  parity_worst_ratio, PAR_ATOL, PAR_RTOL);
    if (missing == n) skip();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_broadcast_shapes_and_plans),
        cmocka_unit_test(test_broadcast_sum_to_and_expand),
        cmocka_unit_test(test_binary_forward),
        cmocka_unit_test(test_unary_forward),
        cmocka_unit_test(test_gradcheck_binary),
        cmocka_unit_test(test_gradcheck_unary),
        cmocka_unit_test(test_gradcheck_shared_graphs),
        cmocka_unit_test(test_masked_fill_and_where),
        cmocka_unit_test(test_gradcheck_masked_fill_where),
        cmocka_unit_test(test_dropout_statistics),
        cmocka_unit_test(test_dropout_seeds_eval_and_limits),
        cmocka_unit_test(test_gradcheck_dropout),
        cmocka_unit_test(test_no_grad_and_recording),
        cmocka_unit_test(test_error_messages),
        cmocka_unit_test(test_pytorch_parity),
    };
    return cmocka_run_group_tests_name("elementwise", tests, NULL, NULL);
}
