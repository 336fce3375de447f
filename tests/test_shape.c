/* Shape ops: reshape, transpose, permute, concat, slice, split, select. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static tg_tensor *param(uint64_t seed, int ndim, const int64_t *shape, const char *name) {
    tg_tensor *t = tg_tensor_named(tg_test_rand(seed, -1, 1, ndim, shape), name);
    return tg_tensor_requires_grad(t, true);
}

/* Reference permutation by multi-index: y[i_0..] = x[j] with j's dim perm[k] = i_k. */
static void naive_permute(const tg_tensor *x, const int *perm, tg_real *y) {
    int64_t xs[TG_MAX_DIMS], idx[TG_MAX_DIMS] = {0}, yshape[TG_MAX_DIMS];
    int64_t s = 1;
    for (int d = x->ndim - 1; d >= 0; d--) xs[d] = s, s *= x->shape[d];
    for (int k = 0; k < x->ndim; k++) yshape[k] = x->shape[perm[k]];
    for (int64_t i = 0; i < x->numel; i++) {
        int64_t off = 0;
        for (int k = 0; k < x->ndim; k++) off += idx[k] * xs[perm[k]];
        y[i] = x->data[off];
        for (int k = x->ndim - 1; k >= 0; k--) {
            if (++idx[k] < yshape[k]) break;
            idx[k] = 0;
        }
    }
}

/* ---- reshape ---- */

static void test_reshape(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = param(1, TG_SHAPE(2, 3, 4), "x");
    tg_tensor *y = tg_reshape(tape, x, TG_SHAPE(6, -1));
    assert_int_equal(y->ndim, 2);
    assert_int_equal(y->shape[0], 6);
    assert_int_equal(y->shape[1], 4);
    assert_ptr_equal(y->data, x->data); /* free: same storage */
    assert_true(y->requires_grad);
    tg_tensor *z = tg_reshape(tape, y, TG_SHAPE(24));
    assert_int_equal(z->ndim, 1);
    tg_tensor *s = tg_reshape(tape, tg_select(tape, z, 0, 5), TG_SHAPE(1, 1)); /* () -> (1, 1) */
    assert_int_equal(s->numel, 1);
    assert_true(s->data[0] == x->data[5]);
    tg_tensor *e = tg_reshape(tape, tg_slice(tape, z, 0, 0, 0), TG_SHAPE(0, 7));
    assert_int_equal(e->numel, 0);
    /* backward: the gradient comes back in x's layout */
    tg_tape_backward(tape, s);
    for (int i = 0; i < 24; i++) assert_true(x->grad[i] == (i == 5 ? 1 : 0));
    tg_tape_free(tape);
    tg_tensor_free(x);
}

static void test_reshape_errors(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(2, 3)), "x");
    TG_EXPECT_FAIL(tg_reshape(tape, x, TG_SHAPE(4, 2)), "tg_reshape", "(2, 3) 'x'", "(4, 2)",
                   "6 elements", "8 elements");
    TG_EXPECT_FAIL(tg_reshape(tape, x, TG_SHAPE(4, -1)), "tg_reshape", "(2, 3) 'x'", "(4, -1)");
    TG_EXPECT_FAIL(tg_reshape(tape, x, TG_SHAPE(-1, -1)), "tg_reshape", "only one dim may be -1");
    TG_EXPECT_FAIL(tg_reshape(tape, x, TG_SHAPE(-2, -3)), "tg_reshape", "(-2, -3)");
    tg_tape_free(tape);
    tg_tensor_free(x);
}

/* The output of a bare reshape IS its input's storage, and gradcheck restores a perturbed
 * input before reading the minus-eps output; a copying op after the reshape keeps the
 * check meaningful (it is reshape's backward that is checked, transpose's is checked below). */
static tg_tensor *fn_reshape(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_transpose(t, tg_reshape(t, in[0], TG_SHAPE(3, -1, 2)), 0, 2);
}

static void test_reshape_gradcheck(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_tensor *x = param(2, TG_SHAPE(2, 3, 2), "x");
    tg_test_gradcheck(NULL, fn_reshape, NULL, &x, 1);
    tg_tensor_free(x);
}

/* ---- transpose / permute ---- */

static void test_transpose_values(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    const tg_real v[] = {1, 2, 3, 4, 5, 6};
    tg_tensor *a = tg_tensor_from_array(TG_SHAPE(2, 3), v);
    tg_tensor *at = tg_transpose(tape, a, 0, -1);
    const tg_real want[] = {1, 4, 2, 5, 3, 6};
    assert_int_equal(at->shape[0], 3);
    assert_int_equal(at->shape[1], 2);
    assert_memory_equal(at->data, want, sizeof want);
    assert_false(at->requires_grad);
    assert_int_equal(tg_tape_node_count(tape), 0);
    /* 3-D, every pair of dims, sizes that cross the 32x32 tiles and the threading threshold */
    const int64_t shapes[][3] = {{2, 3, 4}, {3, 70, 45}, {4, 130, 150}, {1, 5, 1}};
    for (size_t c = 0; c < sizeof shapes / sizeof *shapes; c++) {
        tg_tensor *x = tg_test_rand(10 + c, -1, 1, 3, shapes[c]);
        for (int d0 = 0; d0 < 3; d0++)
            for (int d1 = 0; d1 < 3; d1++) {
                int perm[3] = {0, 1, 2};
                perm[d0] = d1, perm[d1] = d0;
                tg_tensor *y = tg_transpose(tape, x, d0, d1);
                tg_real *ref = tg_xmalloc((size_t)x->numel * sizeof *ref);
                naive_permute(x, perm, ref);
                for (int k = 0; k < 3; k++) assert_int_equal(y->shape[k], x->shape[perm[k]]);
                assert_memory_equal(y->data, ref, (size_t)x->numel * sizeof *ref);
                free(ref);
            }
        tg_tensor_free(x);
        tg_tape_reset(tape);
    }
    tg_tape_free(tape);
    tg_tensor_free(a);
}

static void test_permute_values(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_test_rand(3, -1, 1, TG_SHAPE(3, 1, 4, 5));
    const int perms[][4] = {{0, 1, 2, 3}, {3, 2, 1, 0}, {2, 0, 3, 1}, {1, 3, 0, 2}, {0, 2, 1, 3}};
    for (size_t p = 0; p < sizeof perms / sizeof *perms; p++) {
        tg_tensor *y = tg_permute(tape, x, perms[p]);
        tg_real ref[60];
        naive_permute(x, perms[p], ref);
        assert_memory_equal(y->data, ref, sizeof ref);
    }
    /* negative dims are counted from the end, as in PyTorch */
    tg_tensor *y = tg_permute(tape, x, (const int[]){-1, 0, 1, 2});
    assert_int_equal(y->shape[0], 5);
    assert_int_equal(y->shape[3], 4);
    tg_tape_free(tape);
    tg_tensor_free(x);
}

static void test_permute_errors(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(2, 3, 4)), "x");
    TG_EXPECT_FAIL(tg_permute(tape, x, (const int[]){1, 1, 0}), "tg_permute", "(1, 1, 0)",
                   "not a permutation", "(2, 3, 4) 'x'");
    TG_EXPECT_FAIL(tg_permute(tape, x, (const int[]){0, 1, 3}), "tg_permute", "(0, 1, 3)");
    TG_EXPECT_FAIL(tg_transpose(tape, x, 0, 3), "tg_transpose", "dim 3", "(2, 3, 4) 'x'");
    tg_tape_free(tape);
    tg_tensor_free(x);
}

static tg_tensor *fn_transpose(tg_tape *t, tg_tensor *const *in, void *ctx) {
    const int *d = ctx;
    return tg_transpose(t, in[0], d[0], d[1]);
}

static tg_tensor *fn_permute(tg_tape *t, tg_tensor *const *in, void *ctx) {
    return tg_permute(t, in[0], ctx);
}

static void test_transpose_permute_gradcheck(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_tensor *x = param(4, TG_SHAPE(2, 3, 4), "x");
    tg_test_gradcheck(NULL, fn_transpose, (int[]){0, 2}, &x, 1);
    tg_test_gradcheck(NULL, fn_transpose, (int[]){-1, -2}, &x, 1);
    tg_test_gradcheck(NULL, fn_permute, (int[]){2, 0, 1}, &x, 1);
    tg_test_gradcheck(NULL, fn_permute, (int[]){1, 2, 0}, &x, 1);
    tg_tensor_free(x);
}

/* ---- concat ---- */

static void test_concat_values(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *a = tg_tensor_from_array(TG_SHAPE(2, 1), (const tg_real[]){1, 2});
    tg_tensor *b = tg_tensor_from_array(TG_SHAPE(2, 2), (const tg_real[]){3, 4, 5, 6});
    tg_tensor *e = tg_tensor_zeros(TG_SHAPE(2, 0));
    tg_tensor *y = tg_concat(tape, (tg_tensor *[]){a, e, b}, 3, -1);
    assert_int_equal(y->shape[0], 2);
    assert_int_equal(y->shape[1], 3);
    const tg_real want[] = {1, 3, 4, 2, 5, 6};
    assert_memory_equal(y->data, want, sizeof want);
    tg_tensor *z = tg_concat(tape, (tg_tensor *[]){b, b}, 2, 0);
    const tg_real want0[] = {3, 4, 5, 6, 3, 4, 5, 6};
    assert_int_equal(z->shape[0], 4);
    assert_memory_equal(z->data, want0, sizeof want0);
    tg_tape_free(tape);
    tg_tensor_free(a), tg_tensor_free(b), tg_tensor_free(e);
}

static void test_concat_errors(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *a = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(2, 3)), "a");
    tg_tensor *b = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(3, 3)), "b");
    tg_tensor *c = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(2, 3, 1)), "c");
    TG_EXPECT_FAIL(tg_concat(tape, (tg_tensor *[]){a, b}, 2, 1), "tg_concat", "dim 1", "(3, 3) 'b'",
                   "(2, 3) 'a'");
    TG_EXPECT_FAIL(tg_concat(tape, (tg_tensor *[]){a, c}, 2, 0), "tg_concat", "(2, 3, 1) 'c'");
    TG_EXPECT_FAIL(tg_concat(tape, (tg_tensor *[]){a}, 1, 2), "tg_concat", "dim 2");
    TG_EXPECT_FAIL(tg_concat(tape, NULL, 0, 0), "tg_concat", "at least one");
    tg_tape_free(tape);
    tg_tensor_free(a), tg_tensor_free(b), tg_tensor_free(c);
}

static tg_tensor *fn_concat(tg_tape *t, tg_tensor *const *in, void *ctx) {
    return tg_concat(t, in, 3, *(const int *)ctx);
}

static void test_concat_gradcheck(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_tensor *a = param(5, TG_SHAPE(2, 1, 3), "a");
    tg_tensor *b = param(6, TG_SHAPE(2, 2, 3), "b");
    tg_tensor *c = tg_test_rand(7, -1, 1, TG_SHAPE(2, 3, 3)); /* needs no gradient */
    tg_test_gradcheck(NULL, fn_concat, (int[]){1}, (tg_tensor *[]){a, b, c}, 3);
    tg_tensor *p = param(8, TG_SHAPE(2, 3), "p"), *q = param(9, TG_SHAPE(1, 3), "q");
    tg_test_gradcheck(NULL, fn_concat, (int[]){0}, (tg_tensor *[]){p, q, p}, 3); /* p used twice */
    tg_tensor_free(a), tg_tensor_free(b), tg_tensor_free(c), tg_tensor_free(p), tg_tensor_free(q);
}

/* ---- slice / select / split ---- */

static void test_slice_select_values(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_arange(0, 24, 1);
    tg_tensor *x3 = tg_reshape(tape, x, TG_SHAPE(2, 3, 4));
    tg_tensor *s = tg_slice(tape, x3, 1, -2, 2); /* rows 1..2 of each matrix */
    const tg_real want[] = {4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23};
    assert_int_equal(s->shape[1], 2);
    assert_memory_equal(s->data, want, sizeof want);
    tg_tensor *c = tg_slice(tape, x3, -1, 3, 1);
    const tg_real wantc[] = {3, 7, 11, 15, 19, 23};
    assert_memory_equal(c->data, wantc, sizeof wantc);
    tg_tensor *e = tg_slice(tape, x3, 2, 4, 0); /* empty at the end is allowed */
    assert_int_equal(e->numel, 0);
    tg_tensor *l = tg_select(tape, x3, 1, -1); /* (2, 4) */
    assert_int_equal(l->ndim, 2);
    const tg_real wantl[] = {8, 9, 10, 11, 20, 21, 22, 23};
    assert_memory_equal(l->data, wantl, sizeof wantl);
    tg_tensor *m = tg_select(tape, x3, 2, 1); /* (2, 3) */
    const tg_real wantm[] = {1, 5, 9, 13, 17, 21};
    assert_memory_equal(m->data, wantm, sizeof wantm);
    tg_tensor *sc = tg_select(tape, tg_select(tape, m, 0, 1), 0, 2); /* () */
    assert_int_equal(sc->ndim, 0);
    assert_true(tg_item(sc) == 21);
    tg_tape_free(tape);
    tg_tensor_free(x);
}

static void test_split_values(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_arange(0, 15, 1);
    tg_tensor *x2 = tg_reshape(tape, x, TG_SHAPE(3, 5));
    tg_tensor *out[4];
    assert_int_equal(tg_split(tape, x2, 2, 1, out, 4), 3);
    assert_int_equal(out[0]->shape[1], 2);
    assert_int_equal(out[2]->shape[1], 1);
    const tg_real w1[] = {2, 3, 7, 8, 12, 13}, w2[] = {4, 9, 14};
    assert_memory_equal(out[1]->data, w1, sizeof w1);
    assert_memory_equal(out[2]->data, w2, sizeof w2);
    assert_int_equal(tg_split(tape, x2, 3, 0, out, 4), 1);
    assert_memory_equal(out[0]->data, x->data, 15 * sizeof(tg_real));
    TG_EXPECT_FAIL(tg_split(tape, x2, 1, 1, out, 4), "tg_split", "5 chunks", "max_out 4");
    TG_EXPECT_FAIL(tg_split(tape, x2, 0, 1, out, 4), "tg_split", "split_size 0");
    tg_tape_free(tape);
    tg_tensor_free(x);
}

static void test_slice_select_errors(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(2, 5)), "h");
    TG_EXPECT_FAIL(tg_slice(tape, x, 1, 3, 3), "tg_slice", "out of range", "dim 1", "size 5",
                   "(2, 5) 'h'");
    TG_EXPECT_FAIL(tg_slice(tape, x, 1, -6, 1), "tg_slice", "[-6, ");
    TG_EXPECT_FAIL(tg_slice(tape, x, 0, 0, -1), "tg_slice", "(2, 5) 'h'");
    TG_EXPECT_FAIL(tg_slice(tape, x, 2, 0, 1), "tg_slice", "dim 2", "(2, 5) 'h'");
    TG_EXPECT_FAIL(tg_select(tape, x, 0, 2), "tg_select", "index 2", "size 2", "(2, 5) 'h'");
    TG_EXPECT_FAIL(tg_select(tape, x, -1, -6), "tg_select", "index -6");
    tg_tape_free(tape);
    tg_tensor_free(x);
}

static tg_tensor *fn_slice(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_slice(t, in[0], 1, -3, 2);
}

static tg_tensor *fn_select(tg_tape *t, tg_tensor *const *in, void *ctx) {
    const int *d = ctx;
    return tg_select(t, in[0], d[0], d[1]);
}

/* Chunks 0 and 2 of 3 used (chunk 2 twice), chunk 1 left unused: its grad stays NULL. */
static tg_tensor *fn_split_partial(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    tg_tensor *c[3];
    tg_split(t, in[0], 2, 0, c, 3);
    return tg_concat(t, (tg_tensor *[]){c[2], c[0], c[2]}, 3, 0);
}

static void test_slice_select_split_gradcheck(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_tensor *x = param(11, TG_SHAPE(2, 5, 3), "x");
    tg_test_gradcheck(NULL, fn_slice, NULL, &x, 1);
    tg_test_gradcheck(NULL, fn_select, (int[]){1, -1}, &x, 1);
    tg_test_gradcheck(NULL, fn_select, (int[]){2, 0}, &x, 1);
    tg_tensor *y = param(12, TG_SHAPE(5, 2), "y");
    tg_test_gradcheck(NULL, fn_split_partial, NULL, &y, 1);
    tg_tensor_free(x), tg_tensor_free(y);
}

/* One tensor feeding several shape ops whose results meet again:
 * out = concat(reshape(transpose(x)), select(x, 0, -1), slice(x, 1, 1, 2) flattened,
 *              split(x)[1] flattened) */
static tg_tensor *fn_multi_use(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    tg_tensor *x = in[0]; /* (3, 4) */
    tg_tensor *parts[2];
    tg_split(t, x, 2, 1, parts, 2);
    tg_tensor *pieces[] = {
        tg_reshape(t, tg_transpose(t, x, 0, 1), TG_SHAPE(-1)),
        tg_select(t, x, 0, -1),
        tg_reshape(t, tg_slice(t, x, 1, 1, 2), TG_SHAPE(6)),
        tg_reshape(t, tg_permute(t, parts[1], (const int[]){1, 0}), TG_SHAPE(6)),
    };
    return tg_concat(t, pieces, 4, 0);
}

static void test_multi_use_gradcheck(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_tensor *x = param(13, TG_SHAPE(3, 4), "x");
    tg_test_gradcheck(NULL, fn_multi_use, NULL, &x, 1);
    /* the accumulated gradient of a sum of everything counts each use of an element */
    tg_tape *tape = tg_tape_new();
    tg_tensor *y = fn_multi_use(tape, &x, NULL);
    tg_real *seed = tg_xmalloc((size_t)y->numel * sizeof *seed);
    for (int64_t i = 0; i < y->numel; i++) seed[i] = 1;
    tg_tensor_zero_grad(x);
    tg_tape_backward_with(tape, y, seed);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) {
            const int uses = 1 + (r == 2) + (c == 1 || c == 2) + (c >= 2);
            assert_true(x->grad[r * 4 + c] == uses);
        }
    free(seed);
    tg_tape_free(tape);
    tg_tensor_free(x);
}

/* ---- PyTorch parity ---- */

/* Runs `op` on the fixture's inputs, compares "out" (or out.<k>) and "grad.<name>". */
typedef int (*parity_fn)(tg_tape *t, tg_tensor *const *in, const tg_fixture *fx, tg_tensor **out);

/* Shape ops move values without arithmetic: float32 fixtures are matched exactly in both
 * builds; the tolerance is only the convention's. */
#define PAR_ATOL 1e-6
#define PAR_RTOL 1e-5

static int meta_int(const tg_fixture *fx, const char *key) {
    const char *v = tg_fixture_meta(fx, key);
    if (!v) fail_msg("fixture lacks metadata %s", key);
    return atoi(v);
}

static void parity(const char *case_name, const char *const *names, int n_in, parity_fn op) {
    tg_fixture *fx = tg_fixture_load(case_name);
    tg_tensor *in[4];
    for (int i = 0; i < n_in; i++) {
        char key[64];
        snprintf(key, sizeof key, "in.%s", names[i]);
        in[i] = tg_tensor_requires_grad(tg_fixture_tensor(fx, key), true);
    }
    tg_tape *tape = tg_tape_new();
    tg_tensor *out[8];
    const int n_out = op(tape, in, fx, out);
    if (n_out == 1) {
        tg_fixture_assert_close(fx, "out", out[0]->data, out[0]->shape, out[0]->ndim, PAR_ATOL,
                                PAR_RTOL);
        tg_tensor *g = tg_fixture_tensor(fx, "gout");
        tg_tape_backward_with(tape, out[0], g->data);
        tg_tensor_free(g);
    } else { /* several outputs: backward through their concatenation of gout.<k> */
        for (int k = 0; k < n_out; k++) {
            char key[32];
            snprintf(key, sizeof key, "out.%d", k);
            tg_fixture_assert_close(fx, key, out[k]->data, out[k]->shape, out[k]->ndim, PAR_ATOL,
                                    PAR_RTOL);
        }
        int64_t total = 0;
        for (int k = 0; k < n_out; k++) total += out[k]->numel;
        tg_tensor *flat[8];
        for (int k = 0; k < n_out; k++) flat[k] = tg_reshape(tape, out[k], TG_SHAPE(-1));
        tg_tensor *all = tg_concat(tape, flat, n_out, 0);
        tg_real *seed = tg_xmalloc((size_t)total * sizeof *seed);
        for (int k = 0, off = 0; k < n_out; k++) {
            char key[32];
            snprintf(key, sizeof key, "gout.%d", k);
            tg_tensor *g = tg_fixture_tensor(fx, key);
            memcpy(seed + off, g->data, (size_t)g->numel * sizeof *seed);
            off += (int)g->numel;
            tg_tensor_free(g);
        }
        tg_tape_backward_with(tape, all, seed);
        free(seed);
    }
    for (int i = 0; i < n_in; i++) {
        char key[64];
        snprintf(key, sizeof key, "grad.%s", names[i]);
        tg_fixture_assert_close(fx, key, in[i]->grad, in[i]->shape, in[i]->ndim, PAR_ATOL,
                                PAR_RTOL);
        tg_tensor_free(in[i]);
    }
    tg_tape_free(tape);
    tg_fixture_free(fx);
}

static int op_cat(tg_tape *t, tg_tensor *const *in, const tg_fixture *fx, tg_tensor **out) {
    out[0] = tg_concat(t, in, 3, meta_int(fx, "dim"));
    return 1;
}

static int op_narrow(tg_tape *t, tg_tensor *const *in, const tg_fixture *fx, tg_tensor **out) {
    out[0] = tg_slice(t, in[0], meta_int(fx, "dim"), meta_int(fx, "start"), meta_int(fx, "length"));
    return 1;
}

static int op_split(tg_tape *t, tg_tensor *const *in, const tg_fixture *fx, tg_tensor **out) {
    return tg_split(t, in[0], meta_int(fx, "split_size"), meta_int(fx, "dim"), out, 8);
}

static int op_transpose(tg_tape *t, tg_tensor *const *in, const tg_fixture *fx, tg_tensor **out) {
    out[0] = tg_transpose(t, in[0], meta_int(fx, "dim0"), meta_int(fx, "dim1"));
    return 1;
}

static int op_permute(tg_tape *t, tg_tensor *const *in, const tg_fixture *fx, tg_tensor **out) {
    (void)fx;
    out[0] = tg_permute(t, in[0], (const int[]){2, 0, 1});
    return 1;
}

static int op_reshape(tg_tape *t, tg_tensor *const *in, const tg_fixture *fx, tg_tensor **out) {
    (void)fx;
    out[0] = tg_reshape(t, in[0], TG_SHAPE(6, 4));
    return 1;
}

static int op_select(tg_tape *t, tg_tensor *const *in, const tg_fixture *fx, tg_tensor **out) {
    out[0] = tg_select(t, in[0], meta_int(fx, "dim"), meta_int(fx, "index"));
    return 1;
}

static void test_parity(void **state) {
    (void)state;
    const char *abc[] = {"a", "b", "c"}, *x[] = {"x"};
    parity("op_cat_dim0", abc, 3, op_cat);
    parity("op_cat_dim1", abc, 3, op_cat);
    parity("op_cat_3d_dim1", abc, 3, op_cat);
    parity("op_narrow_2d_dim0", x, 1, op_narrow);
    parity("op_narrow_2d_dim1", x, 1, op_narrow);
    parity("op_narrow_3d_dim1", x, 1, op_narrow);
    parity("op_split_even_dim0", x, 1, op_split);
    parity("op_split_uneven_dim1", x, 1, op_split);
    parity("op_transpose_2d", x, 1, op_transpose);
    parity("op_transpose_3d_12", x, 1, op_transpose);
    parity("op_permute_3d", x, 1, op_permute);
    parity("op_reshape", x, 1, op_reshape);
    parity("op_select_dim1_last", x, 1, op_select);
    parity("op_select_dim0", x, 1, op_select);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reshape),
        cmocka_unit_test(test_reshape_errors),
        cmocka_unit_test(test_reshape_gradcheck),
        cmocka_unit_test(test_transpose_values),
        cmocka_unit_test(test_permute_values),
        cmocka_unit_test(test_permute_errors),
        cmocka_unit_test(test_transpose_permute_gradcheck),
        cmocka_unit_test(test_concat_values),
        cmocka_unit_test(test_concat_errors),
        cmocka_unit_test(test_concat_gradcheck),
        cmocka_unit_test(test_slice_select_values),
        cmocka_unit_test(test_split_values),
        cmocka_unit_test(test_slice_select_errors),
        cmocka_unit_test(test_slice_select_split_gradcheck),
        cmocka_unit_test(test_multi_use_gradcheck),
        cmocka_unit_test(test_parity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
