/* The ops beside the core set that RNN, attention and Transformer code uses: stack,
 * unsqueeze/squeeze/flatten, expand, repeat, chunk/split_sizes, gather, index_select, one_hot and
 * masks from index tensors, argmax/argmin/min_dim, cumsum, sort/topk, clamp, abs, pow, maximum and
 * minimum, triu/tril, sampling, and the arena tensors and indices a step builds. Forward values
 * by hand, float64 gradchecks, error messages, bit-identical results at 1 and 2 threads, and
 * PyTorch parity (tests/fixturegen/ops_extra.py). */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static tg_tensor *param(uint64_t seed, int ndim, const int64_t *shape, const char *name) {
    tg_tensor *t = tg_tensor_named(tg_test_rand(seed, -1, 1, ndim, shape), name);
    return tg_tensor_requires_grad(t, true);
}

static tg_tensor *values(int ndim, const int64_t *shape, const tg_real *v, const char *name) {
    return tg_tensor_requires_grad(tg_tensor_named(tg_tensor_from_array(ndim, shape, v), name),
                                   true);
}

static void assert_shape(const int64_t *got, int got_ndim, int ndim, const int64_t *want) {
    assert_int_equal(got_ndim, ndim);
    for (int d = 0; d < ndim; d++) assert_int_equal(got[d], want[d]);
}
#define ASSERT_SHAPE(t, ...) assert_shape((t)->shape, (t)->ndim, TG_SHAPE(__VA_ARGS__))

/* Backward from y with the seed 1, 2, 3, ... (distinct, so every gradient entry shows where
 * it came from). */
static void backward_counting(tg_tape *tape, tg_tensor *y) {
    tg_real *seed = tg_xmalloc((size_t)(y->numel ? y->numel : 1) * sizeof *seed);
    for (int64_t i = 0; i < y->numel; i++) seed[i] = (tg_real)(i + 1);
    tg_tape_backward_with(tape, y, seed);
    free(seed);
}

static void assert_values(const tg_real *got, const tg_real *want, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (isnan(want[i])) {
            assert_true(isnan(got[i]));
            continue;
        }
        if (got[i] != want[i])
            fail_msg("element %lld: %g, want %g", (long long)i, (double)got[i], (double)want[i]);
    }
}
#define ASSERT_VALUES(got, ...)                                                                    \
    assert_values(got, (const tg_real[]){__VA_ARGS__},                                             \
                  sizeof((const tg_real[]){__VA_ARGS__}) / sizeof(tg_real))

static void assert_ids(const tg_index *ix, const int32_t *want, int64_t n) {
    assert_int_equal(ix->numel, n);
    for (int64_t i = 0; i < n; i++) assert_int_equal(ix->data[i], want[i]);
}
#define ASSERT_IDS(ix, ...)                                                                        \
    assert_ids(ix, (const int32_t[]){__VA_ARGS__},                                                 \
               sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t))

/* ---------------------------------------------------------------------------------------
 * shapes */

static void test_stack_values(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *a = values(TG_SHAPE(2, 2), (const tg_real[]){1, 2, 3, 4}, "a");
    tg_tensor *b = values(TG_SHAPE(2, 2), (const tg_real[]){5, 6, 7, 8}, "b");
    tg_tensor *y0 = tg_stack(tape, (tg_tensor *[]){a, b}, 2, 0);
    ASSERT_SHAPE(y0, 2, 2, 2);
    ASSERT_VALUES(y0->data, 1, 2, 3, 4, 5, 6, 7, 8);
    tg_tensor *y1 = tg_stack(tape, (tg_tensor *[]){a, b}, 2, 1);
    ASSERT_SHAPE(y1, 2, 2, 2);
    ASSERT_VALUES(y1->data, 1, 2, 5, 6, 3, 4, 7, 8);
    tg_tensor *y2 = tg_stack(tape, (tg_tensor *[]){a, b, a}, 3, -1);
    ASSERT_SHAPE(y2, 2, 2, 3);
    ASSERT_VALUES(y2->data, 1, 5, 1, 2, 6, 2, 3, 7, 3, 4, 8, 4);
    /* a used twice receives both gradients: seeds 1..12 at (i, j, k), k = 0 and 2 are a */
    backward_counting(tape, y2);
    ASSERT_VALUES(a->grad, 1 + 3, 4 + 6, 7 + 9, 10 + 12);
    ASSERT_VALUES(b->grad, 2, 5, 8, 11);
    /* scalars stack into a vector */
    tg_tensor *s = tg_tensor_from_array(0, NULL, (const tg_real[]){9});
    tg_tensor *v = tg_stack(tape, (tg_tensor *[]){s, s}, 2, 0);
    ASSERT_SHAPE(v, 2);
    ASSERT_VALUES(v->data, 9, 9);
    tg_tensor_free(s);
    tg_tape_free(tape);
    tg_tensor_free(a), tg_tensor_free(b);
}

static void test_views(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = param(1, TG_SHAPE(2, 1, 3), "x");
    tg_tensor *u = tg_unsqueeze(tape, x, -1);
    ASSERT_SHAPE(u, 2, 1, 3, 1);
    assert_ptr_equal(u->data, x->data); /* free: the same storage */
    ASSERT_SHAPE(tg_unsqueeze(tape, x, 0), 1, 2, 1, 3);
    ASSERT_SHAPE(tg_unsqueeze(tape, x, -4), 1, 2, 1, 3);
    ASSERT_SHAPE(tg_unsqueeze(tape, x, 3), 2, 1, 3, 1);
    ASSERT_SHAPE(tg_squeeze(tape, x, 1), 2, 3);
    ASSERT_SHAPE(tg_squeeze(tape, x, -2), 2, 3);
    assert_ptr_equal(tg_squeeze(tape, x, 0), x); /* size 2: nothing to do, as PyTorch */
    ASSERT_SHAPE(tg_squeeze_all(tape, u), 2, 3);
    tg_tensor *ones = tg_tape_tensor_zeros(tape, TG_SHAPE(1, 1));
    assert_int_equal(tg_squeeze_all(tape, ones)->ndim, 0);
    tg_tensor *f = tg_flatten(tape, u, 1, -1);
    ASSERT_SHAPE(f, 2, 3);
    ASSERT_SHAPE(tg_flatten(tape, u, 0, -1), 6);
    ASSERT_SHAPE(tg_flatten(tape, u, 0, 1), 2, 3, 1);
    assert_ptr_equal(tg_flatten(tape, u, 2, 2), u);
    tg_tensor *scalar = tg_tape_tensor_zeros(tape, 0, NULL);
    ASSERT_SHAPE(tg_flatten(tape, scalar, 0, -1), 1);
    assert_ptr_equal(tg_squeeze(tape, scalar, 0), scalar);
    ASSERT_SHAPE(tg_unsqueeze(tape, scalar, 0), 1);
    /* the nodes are named after the op, and the gradient comes back in x's layout */
    tg_tensor *y = tg_mul_scalar(tape, tg_flatten(tape, tg_unsqueeze(tape, x, 0), 0, 2), 2);
    assert_string_equal(tg_tape_node(tape, tg_tape_node_count(tape) - 3)->op, "unsqueeze");
    assert_string_equal(tg_tape_node(tape, tg_tape_node_count(tape) - 2)->op, "flatten");
    backward_counting(tape, y);
    ASSERT_VALUES(x->grad, 2, 4, 6, 8, 10, 12);
    tg_tape_free(tape);
    tg_tensor_free(x);
}

static void test_expand_values(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = values(TG_SHAPE(2, 1), (const tg_real[]){1, 2}, "x");
    tg_tensor *y = tg_expand(tape, x, TG_SHAPE(3, -1, 2));
    ASSERT_SHAPE(y, 3, 2, 2);
    ASSERT_VALUES(y->data, 1, 1, 2, 2, 1, 1, 2, 2, 1, 1, 2, 2);
    backward_counting(tape, y); /* x[0] gets seeds 1,2,5,6,9,10; x[1] 3,4,7,8,11,12 */
    ASSERT_VALUES(x->grad, 33, 45);
    tg_tensor *same = tg_expand(tape, x, TG_SHAPE(2, 1));
    ASSERT_SHAPE(same, 2, 1);
    assert_true(same->data != x->data);                     /* a copy, unlike a view */
    ASSERT_SHAPE(tg_expand(tape, x, TG_SHAPE(2, 0)), 2, 0); /* 1 -> 0 is a broadcast too */
    tg_tape_free(tape);
    tg_tensor_free(x);
}

static void test_repeat_values(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_requires_grad(tg_tensor_arange(0, 6, 1), true);
    tg_tensor *X = tg_reshape(tape, x, TG_SHAPE(2, 3));
    tg_tensor *y = tg_repeat(tape, X, TG_SHAPE(2, 1, 2)); /* a new leading dim */
    ASSERT_SHAPE(y, 2, 2, 6);
    ASSERT_VALUES(y->data, 0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5, 0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5);
    tg_tape_backward_with(tape, y, (const tg_real[]){1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                                                     1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2});
    ASSERT_VALUES(x->grad, 4, 4, 4, 4, 4, 5); /* four copies each; the last got a 2 */
    tg_tensor *s = tg_tape_tensor_full(tape, 0, NULL, 3);
    ASSERT_SHAPE(tg_repeat(tape, s, TG_SHAPE(2, 2)), 2, 2);
    assert_int_equal(tg_repeat(tape, s, 0, NULL)->ndim, 0);
    ASSERT_SHAPE(tg_repeat(tape, X, TG_SHAPE(0, 2)), 0, 6);
    tg_tape_free(tape);
    tg_tensor_free(x);
}

static void test_chunk_split_values(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_requires_grad(tg_tensor_arange(0, 10, 1), true); /* (10,) */
    tg_tensor *X = tg_reshape(tape, x, TG_SHAPE(2, 5));
    tg_tensor *out[8];
    assert_int_equal(tg_chunk(tape, X, 3, 1, out, 8), 3);
    ASSERT_SHAPE(out[0], 2, 2);
    ASSERT_SHAPE(out[2], 2, 1);
    ASSERT_VALUES(out[1]->data, 2, 3, 7, 8);
    ASSERT_VALUES(out[2]->data, 4, 9);
    assert_int_equal(tg_chunk(tape, X, 4, 1, out, 8), 3);  /* 5 in 4: sizes 2, 2, 1 */
    assert_int_equal(tg_chunk(tape, X, 10, 1, out, 8), 5); /* more chunks than elements */
    /* backward with one chunk unused: its part of dx stays 0 */
    assert_int_equal(tg_chunk(tape, X, 2, 1, out, 8), 2); /* sizes 3, 2 */
    backward_counting(tape, out[1]);
    ASSERT_VALUES(x->grad, 0, 0, 0, 1, 2, 0, 0, 0, 3, 4);
    tg_tape_reset(tape);
    tg_tensor_zero_grad(x);
    X = tg_reshape(tape, x, TG_SHAPE(5, 2));
    assert_int_equal(tg_split_sizes(tape, X, (const int64_t[]){1, 0, 4}, 3, 0, out), 3);
    ASSERT_SHAPE(out[0], 1, 2);
    ASSERT_SHAPE(out[1], 0, 2);
    ASSERT_SHAPE(out[2], 4, 2);
    ASSERT_VALUES(out[2]->data, 2, 3, 4, 5, 6, 7, 8, 9);
    tg_tensor *both = tg_concat(tape, (tg_tensor *[]){out[2], out[0]}, 2, 0);
    backward_counting(tape, both);
    ASSERT_VALUES(x->grad, 9, 10, 1, 2, 3, 4, 5, 6, 7, 8);
    /* a dim of size 0: chunk gives `chunks` empty chunks, as torch.chunk */
    tg_tensor *e = tg_tape_tensor(tape, TG_SHAPE(3, 0));
    assert_int_equal(tg_chunk(tape, e, 4, 1, out, 8), 4);
    ASSERT_SHAPE(out[3], 3, 0);
    tg_tape_free(tape);
    tg_tensor_free(x);
}

/* ---------------------------------------------------------------------------------------
 * indexing */

static void test_gather_index_select_values(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_requires_grad(tg_tensor_arange(0, 12, 1), true);
    tg_tensor *X = tg_reshape(tape, x, TG_SHAPE(3, 4)); /* x[i][j] = 4i + j */
    tg_index *ix = tg_tape_index(tape, TG_SHAPE(3, 2));
    memcpy(ix->data, (const int32_t[]){3, 3, 0, 1, 2, 0}, sizeof(int32_t[6]));
    tg_tensor *g = tg_gather(tape, X, 1, ix);
    ASSERT_SHAPE(g, 3, 2);
    ASSERT_VALUES(g->data, 3, 3, 4, 5, 10, 8);
    backward_counting(tape, g); /* x[0][3] gets 1 + 2 */
    ASSERT_VALUES(x->grad, 0, 0, 0, 3, 3, 4, 0, 0, 6, 0, 5, 0);
    tg_tape_reset(tape);
    tg_tensor_zero_grad(x);
    X = tg_reshape(tape, x, TG_SHAPE(3, 4));
    tg_index *rows = tg_tape_index(tape, TG_SHAPE(1, 3)); /* dim 0, index smaller than x */
    memcpy(rows->data, (const int32_t[]){2, 0, 2}, sizeof(int32_t[3]));
    ASSERT_VALUES(tg_gather(tape, X, 0, rows)->data, 8, 1, 10);
    tg_index *sel = tg_tape_index_zeros(tape, TG_SHAPE(3));
    sel->data[0] = 3, sel->data[2] = 3;
    tg_tensor *s = tg_index_select(tape, X, 1, sel);
    ASSERT_SHAPE(s, 3, 3);
    ASSERT_VALUES(s->data, 3, 0, 3, 7, 4, 7, 11, 8, 11);
    backward_counting(tape, s);
    ASSERT_VALUES(x->grad, 2, 0, 0, 4, 5, 0, 0, 10, 8, 0, 0, 16);
    tg_index *one = tg_tape_index(tape, 0, NULL);
    one->data[0] = 1;
    tg_tensor *r = tg_index_select(tape, X, 0, one);
    ASSERT_SHAPE(r, 1, 4);
    ASSERT_VALUES(r->data, 4, 5, 6, 7);
    /* the ids may change after the forward: backward uses those of the forward */
    tg_tape_reset(tape);
    tg_tensor_zero_grad(x);
    X = tg_reshape(tape, x, TG_SHAPE(3, 4));
    tg_index *mutable_ids = tg_index_from_array(TG_SHAPE(2), (const int32_t[]){2, 2});
    tg_tensor *m = tg_index_select(tape, X, 0, mutable_ids);
    mutable_ids->data[0] = mutable_ids->data[1] = 0;
    backward_counting(tape, m);
    ASSERT_VALUES(x->grad, 0, 0, 0, 0, 0, 0, 0, 0, 6, 8, 10, 12);
    tg_index_free(mutable_ids);
    tg_tape_free(tape);
    tg_tensor_free(x);
}

static void test_one_hot_and_masks(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_index *ids = tg_index_from_array(TG_SHAPE(2, 2), (const int32_t[]){0, 3, 3, 1});
    tg_tensor *oh = tg_one_hot(tape, ids, 4);
    ASSERT_SHAPE(oh, 2, 2, 4);
    ASSERT_VALUES(oh->data, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0);
    ASSERT_SHAPE(tg_one_hot(tape, ids, -1), 2, 2, 4);
    ASSERT_SHAPE(tg_one_hot(tape, ids, 6), 2, 2, 6);
    assert_false(oh->requires_grad);
    tg_tensor *pad = tg_index_eq(tape, ids, 3);
    ASSERT_SHAPE(pad, 2, 2);
    ASSERT_VALUES(pad->data, 0, 1, 1, 0);
    ASSERT_VALUES(tg_index_to_tensor(tape, ids)->data, 0, 3, 3, 1);
    /* a padding mask from ids, broadcast over the queries of attention scores */
    tg_tensor *scores = param(3, TG_SHAPE(2, 3, 2), "scores");
    tg_tensor *masked = tg_masked_fill(tape, scores, tg_unsqueeze(tape, pad, 1), -1e9);
    for (int n = 0; n < 2; n++)
        for (int q = 0; q < 3; q++)
            for (int k = 0; k < 2; k++) {
                const tg_real got = masked->data[(n * 3 + q) * 2 + k];
                assert_true(ids->data[n * 2 + k] == 3 ? got == (tg_real)-1e9
                                                      : got == scores->data[(n * 3 + q) * 2 + k]);
            }
    tg_tensor_free(scores);
    tg_index_free(ids);
    tg_tape_free(tape);
}

/* ---------------------------------------------------------------------------------------
 * reductions and sorting */

static void test_argmax_argmin_values(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x =
        tg_tensor_from_array(TG_SHAPE(2, 5), (const tg_real[]){1, 3, 3, NAN, 0, 2, 2, 1, 1, 5});
    ASSERT_IDS(tg_argmax(tape, x, 1, false), 3, 4); /* a NaN counts as the max */
    ASSERT_IDS(tg_argmin(tape, x, 1, false), 3, 2); /* ... and as the min */
    ASSERT_IDS(tg_argmax(tape, x, 0, false), 1, 0, 0, 0, 1);
    ASSERT_IDS(tg_argmin(tape, x, 0, false), 0, 1, 1, 0, 0);
    tg_tensor *t = tg_tensor_from_array(TG_SHAPE(2, 4), (const tg_real[]){1, 3, 3, 1, 2, 2, 1, 1});
    tg_index *a = tg_argmax(tape, t, -1, true);
    ASSERT_SHAPE(a, 2, 1);
    ASSERT_IDS(a, 1, 0); /* ties: the first */
    ASSERT_IDS(tg_argmin(tape, t, -1, false), 0, 2);
    tg_tensor *s = tg_tensor_from_array(0, NULL, (const tg_real[]){4});
    assert_int_equal(tg_argmax(tape, s, 0, false)->ndim, 0);
    /* min_dim: values, indices, and the gradient to the first minimum */
    tg_tensor_requires_grad(t, true);
    tg_index *ix = NULL;
    tg_tensor *m = tg_min_dim(tape, t, 1, false, &ix);
    ASSERT_VALUES(m->data, 1, 1);
    ASSERT_IDS(ix, 0, 2);
    backward_counting(tape, m);
    ASSERT_VALUES(t->grad, 1, 0, 0, 0, 0, 0, 2, 0);
    tg_tensor_free(x), tg_tensor_free(t), tg_tensor_free(s);
    tg_tape_free(tape);
}

static void test_cumsum_values(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = values(TG_SHAPE(2, 3), (const tg_real[]){1, 2, 3, 4, 5, 6}, "x");
    tg_tensor *c1 = tg_cumsum(tape, x, 1);
    ASSERT_VALUES(c1->data, 1, 3, 6, 4, 9, 15);
    ASSERT_VALUES(tg_cumsum(tape, x, 0)->data, 1, 2, 3, 5, 7, 9);
    backward_counting(tape, c1); /* dx_j = Σ_{j' >= j} dy_j' */
    ASSERT_VALUES(x->grad, 6, 5, 3, 15, 11, 6);
    tg_tape_free(tape);
    tg_tensor_free(x);
}

static void test_sort_topk_values(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = values(TG_SHAPE(5), (const tg_real[]){3, NAN, 1, 3, -2}, "x");
    tg_index *ix = NULL;
    tg_tensor *asc = tg_sort(tape, x, 0, false, &ix);
    ASSERT_VALUES(asc->data, -2, 1, 3, 3, NAN); /* NaN last ascending */
    ASSERT_IDS(ix, 4, 2, 0, 3, 1);              /* the tie keeps its order */
    tg_tensor *desc = tg_sort(tape, x, -1, true, &ix);
    ASSERT_VALUES(desc->data, NAN, 3, 3, 1, -2); /* NaN first descending */
    ASSERT_IDS(ix, 1, 0, 3, 2, 4);
    tg_tensor *top = tg_topk(tape, x, 2, 0, false, &ix);
    ASSERT_VALUES(top->data, -2, 1);
    ASSERT_IDS(ix, 4, 2);
    backward_counting(tape, top);
    ASSERT_VALUES(x->grad, 0, 0, 2, 0, 1);
    /* along dim 0 of a matrix: every column on its own */
    tg_tensor *m = tg_tensor_from_array(TG_SHAPE(3, 2), (const tg_real[]){5, 0, 4, 2, 6, 1});
    tg_tensor *t2 = tg_topk(tape, m, 2, 0, true, &ix);
    ASSERT_SHAPE(t2, 2, 2);
    ASSERT_VALUES(t2->data, 6, 2, 5, 1);
    ASSERT_IDS(ix, 2, 1, 0, 2);
    ASSERT_SHAPE(tg_topk(tape, m, 0, 1, true, NULL), 3, 0);
    tg_tensor_free(m);
    tg_tape_free(tape);
    tg_tensor_free(x);
}

/* ---------------------------------------------------------------------------------------
 * elementwise */

static void test_clamp_abs_values(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = values(TG_SHAPE(6), (const tg_real[]){-1, 0, 0.5, 1, 2, NAN}, "x");
    tg_tensor *c = tg_clamp(tape, x, 0, 1);
    ASSERT_VALUES(c->data, 0, 0, 0.5, 1, 1, NAN);
    backward_counting(tape, c); /* 1 on the bounds too, 0 outside and at NaN */
    ASSERT_VALUES(x->grad, 0, 2, 3, 4, 0, 0);
    struct {
        tg_real lo, hi;
        tg_real want[6], grad[6];
    } cases[] = {
        {0, INFINITY, {0, 0, 0.5, 1, 2, NAN}, {0, 1, 1, 1, 1, 0}},
        {-INFINITY, 1, {-1, 0, 0.5, 1, 1, NAN}, {1, 1, 1, 1, 0, 0}},
        {2, 1, {1, 1, 1, 1, 1, NAN}, {0, 0, 0, 0, 0, 0}}, /* min > max: max everywhere */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        tg_tape_reset(tape);
        tg_tensor_zero_grad(x);
        tg_tensor *y = tg_clamp(tape, x, cases[k].lo, cases[k].hi);
        assert_values(y->data, cases[k].want, 6);
        tg_tape_backward_with(tape, y, (const tg_real[]){1, 1, 1, 1, 1, 1});
        assert_values(x->grad, cases[k].grad, 6);
    }
    tg_tape_reset(tape);
    tg_tensor_zero_grad(x);
    tg_tensor *a = tg_abs(tape, x);
    ASSERT_VALUES(a->data, 1, 0, 0.5, 1, 2, NAN);
    tg_tape_backward_with(tape, a, (const tg_real[]){1, 1, 1, 1, 1, 1});
    ASSERT_VALUES(x->grad, -1, 0, 1, 1, 1, 0); /* sign(x), 0 at 0 and at NaN */
    tg_tape_free(tape);
    tg_tensor_free(x);
}

static void test_pow_maximum_values(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *a = values(TG_SHAPE(5), (const tg_real[]){0, 0, 2, -2, 4}, "a");
    tg_tensor *b = values(TG_SHAPE(5), (const tg_real[]){0, 2, 3, 2, 0.5}, "b");
    tg_tensor *p = tg_pow(tape, a, b);
    ASSERT_VALUES(p->data, 1, 0, 8, 4, 2);
    tg_tape_backward_with(tape, p, (const tg_real[]){1, 1, 1, 1, 1});
    ASSERT_VALUES(a->grad, 0, 0, 12, -4, 0.25);                  /* 0 where b = 0 */
    assert_true(b->grad[0] == 0 && b->grad[1] == 0);             /* 0 where a = 0, b >= 0 */
    assert_true(fabs((double)b->grad[2] - 8 * log(2.0)) < 1e-5); /* a^b ln a */
    assert_true(isnan(b->grad[3]));                              /* ln of a negative base */
    assert_true(fabs((double)b->grad[4] - 2 * log(4.0)) < 1e-5);
    /* broadcasting: a (2, 1) ** b (3,) */
    tg_tape_reset(tape);
    tg_tensor *c = values(TG_SHAPE(2, 1), (const tg_real[]){2, 3}, "c");
    tg_tensor *e = values(TG_SHAPE(3), (const tg_real[]){0, 1, 2}, "e");
    ASSERT_VALUES(tg_pow(tape, c, e)->data, 1, 2, 4, 1, 3, 9);
    /* maximum / minimum: the winner takes the gradient, a tie halves it, NaN goes to both */
    tg_tape_reset(tape);
    tg_tensor *u = values(TG_SHAPE(5), (const tg_real[]){1, 2, 3, NAN, 5}, "u");
    tg_tensor *v = values(TG_SHAPE(5), (const tg_real[]){1, 3, 2, 1, NAN}, "v");
    tg_tensor *mx = tg_maximum(tape, u, v);
    ASSERT_VALUES(mx->data, 1, 3, 3, NAN, NAN);
    backward_counting(tape, mx);
    ASSERT_VALUES(u->grad, 0.5, 0, 3, 4, 5);
    ASSERT_VALUES(v->grad, 0.5, 2, 0, 4, 5);
    tg_tape_reset(tape);
    tg_tensor_zero_grad(u), tg_tensor_zero_grad(v);
    tg_tensor *mn = tg_minimum(tape, u, v);
    ASSERT_VALUES(mn->data, 1, 2, 2, NAN, NAN);
    backward_counting(tape, mn);
    ASSERT_VALUES(u->grad, 0.5, 2, 0, 4, 5);
    ASSERT_VALUES(v->grad, 0.5, 0, 3, 4, 5);
    tg_tape_free(tape);
    tg_tensor_free(a), tg_tensor_free(b), tg_tensor_free(c), tg_tensor_free(e);
    tg_tensor_free(u), tg_tensor_free(v);
}

static void test_triu_tril_values(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_requires_grad(tg_tensor_arange(1, 13, 1), true);
    tg_tensor *X = tg_reshape(tape, x, TG_SHAPE(3, 4));
    ASSERT_VALUES(tg_triu(tape, X, 0)->data, 1, 2, 3, 4, 0, 6, 7, 8, 0, 0, 11, 12);
    ASSERT_VALUES(tg_triu(tape, X, 2)->data, 0, 0, 3, 4, 0, 0, 0, 8, 0, 0, 0, 0);
    ASSERT_VALUES(tg_triu(tape, X, -1)->data, 1, 2, 3, 4, 5, 6, 7, 8, 0, 10, 11, 12);
    ASSERT_VALUES(tg_tril(tape, X, 0)->data, 1, 0, 0, 0, 5, 6, 0, 0, 9, 10, 11, 0);
    ASSERT_VALUES(tg_tril(tape, X, -2)->data, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0);
    ASSERT_VALUES(tg_tril(tape, X, 1)->data, 1, 2, 0, 0, 5, 6, 7, 0, 9, 10, 11, 12);
    /* diagonals beyond the matrix keep all or nothing */
    ASSERT_VALUES(tg_triu(tape, X, INT64_MIN)->data, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12);
    ASSERT_VALUES(tg_triu(tape, X, INT64_MAX)->data, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    ASSERT_VALUES(tg_tril(tape, X, INT64_MAX)->data, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12);
    ASSERT_VALUES(tg_tril(tape, X, INT64_MIN)->data, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    tg_tensor *u = tg_triu(tape, X, 1);
    backward_counting(tape, u);
    ASSERT_VALUES(x->grad, 0, 2, 3, 4, 0, 0, 7, 8, 0, 0, 0, 12);
    /* the causal mask of the header's recipe, over a batch of matrices */
    tg_tensor *mask = tg_triu(tape, tg_tape_tensor_full(tape, TG_SHAPE(2, 3, 3), 1), 1);
    ASSERT_VALUES(mask->data, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0);
    tg_tape_free(tape);
    tg_tensor_free(x);
}

/* ---------------------------------------------------------------------------------------
 * tensors and indices a step builds in the arena */

/* A training step that builds its token ids, positions and targets on the tape (as a data
 * loader would each step): embedding(ids) + embedding(positions) -> linear -> cross entropy.
 * After the first step the arena has its size: the next steps call malloc no more. */
static void test_index_in_step(void **state) {
    (void)state;
    enum { V = 7, E = 4, T = 5, STEPS = 6 };
    tg_tensor *tok = param(10, TG_SHAPE(V, E), "tok");
    tg_tensor *pos = param(11, TG_SHAPE(T, E), "pos");
    tg_tensor *W = param(12, TG_SHAPE(V, E), "W");
    tg_tensor *const ps[] = {tok, pos, W};
    tg_tape *tape = tg_tape_new();
    uint64_t mallocs = 0;
    double first = 0, last = 0;
    for (int step = 0; step < STEPS; step++) {
        tg_tape_reset(tape);
        tg_index *ids = tg_tape_index(tape, TG_SHAPE(T)); /* uninitialised: filled here */
        tg_index *targets = tg_tape_index_zeros(tape, TG_SHAPE(T));
        for (int i = 0; i < T; i++) ids->data[i] = (i * 3 + 1) % V;
        for (int i = 0; i + 1 < T; i++) targets->data[i] = ids->data[i + 1];
        tg_index *positions = tg_tape_index_arange(tape, 0, T);
        ASSERT_IDS(positions, 0, 1, 2, 3, 4);
        tg_tensor *h = tg_add(tape, tg_embedding(tape, tok, ids, TG_NO_PADDING),
                              tg_embedding(tape, pos, positions, TG_NO_PADDING));
        tg_tensor *loss = tg_cross_entropy(tape, tg_linear(tape, h, W, NULL), targets);
        for (int k = 0; k < 3; k++) tg_tensor_zero_grad(ps[k]);
        tg_tape_backward(tape, loss);
        for (int k = 0; k < 3; k++) /* plain SGD */
            for (int64_t i = 0; i < ps[k]->numel; i++) ps[k]->data[i] -= 0.5f * ps[k]->grad[i];
        if (step == 0) first = (double)tg_item(loss);
        last = (double)tg_item(loss);
        if (step == 1) mallocs = tg_tape_malloc_count(tape);
        if (step > 1) assert_int_equal(tg_tape_malloc_count(tape), mallocs);
    }
    assert_true(last < first); /* it learns: the ids and targets were what they should be */
    /* arange of nothing, and a full tensor */
    assert_int_equal(tg_tape_index_arange(tape, 3, 3)->numel, 0);
    assert_int_equal(tg_tape_index_arange(tape, 5, 2)->numel, 0);
    ASSERT_IDS(tg_tape_index_arange(tape, -2, 1), -2, -1, 0);
    tg_tensor *full = tg_tape_tensor_full(tape, TG_SHAPE(2, 2), 0.5);
    ASSERT_VALUES(full->data, 0.5, 0.5, 0.5, 0.5);
    assert_false(full->requires_grad);
    tg_tape_free(tape);
    for (int k = 0; k < 3; k++) tg_tensor_free(ps[k]);
}

/* Every new op in one step, repeated: from the second step on the tape calls malloc no more
 * (sort's scratch, sampling's weights, the saved ids all come from the arena). */
static void test_no_malloc_after_first_step(void **state) {
    (void)state;
    tg_tensor *w = param(20, TG_SHAPE(4, 6), "w");
    tg_tape *tape = tg_tape_new();
    tg_rng rng;
    tg_rng_seed(&rng, 5);
    uint64_t mallocs = 0;
    for (int step = 0; step < 4; step++) {
        tg_tape_reset(tape);
        tg_tensor *out[4];
        tg_index *ids = tg_tape_index_arange(tape, 0, 4);
        tg_tensor *x = tg_index_select(tape, w, 0, ids);
        tg_chunk(tape, x, 2, 1, out, 4);
        tg_tensor *s = tg_stack(tape, (tg_tensor *[]){out[0], out[1]}, 2, 0);        /* 2,4,3 */
        tg_tensor *v = tg_sort(tape, tg_cumsum(tape, s, 2), 2, true, NULL);          /* 2,4,3 */
        tg_tensor *k = tg_topk(tape, tg_flatten(tape, v, 1, 2), 5, 1, true, NULL);   /* 2,5 */
        tg_tensor *r = tg_repeat(tape, tg_unsqueeze(tape, k, 0), TG_SHAPE(3, 1, 1)); /* 3,2,5 */
        tg_tensor *e =
            tg_expand(tape, tg_clamp(tape, tg_abs(tape, r), 0.1, 0.9), TG_SHAPE(2, 3, 2, 5));
        tg_tensor *m = tg_maximum(tape, tg_triu(tape, e, 1), tg_pow(tape, e, e));
        tg_index *am = tg_argmax(tape, m, -1, true);
        tg_tensor *g = tg_gather(tape, m, 3, am);
        tg_tensor *oh =
            tg_one_hot(tape, tg_multinomial(tape, tg_squeeze_all(tape, g), 2, true, &rng), 6);
        tg_sample_logits(tape, tg_squeeze_all(tape, g), 0.8f, 2, &rng);
        tg_tensor *loss = tg_add(tape, tg_sum(tape, g), tg_mean(tape, oh));
        tg_tensor_zero_grad(w);
        tg_tape_backward(tape, loss);
        if (step == 1) mallocs = tg_tape_malloc_count(tape);
        if (step > 1) assert_int_equal(tg_tape_malloc_count(tape), mallocs);
    }
    tg_tape_free(tape);
    tg_tensor_free(w);
}

/* ---------------------------------------------------------------------------------------
 * sampling */

/* Draws `n` samples from probs (C) into counts[C]. */
static void count_draws(tg_tape *tape, const tg_tensor *probs, int64_t n, bool replacement,
                        tg_rng *rng, int64_t *counts) {
    const int64_t C = probs->shape[probs->ndim - 1];
    memset(counts, 0, (size_t)C * sizeof *counts);
    tg_index *s = tg_multinomial(tape, probs, n, replacement, rng);
    assert_int_equal(s->numel, n);
    for (int64_t i = 0; i < n; i++) {
        assert_true(s->data[i] >= 0 && s->data[i] < C);
        counts[s->data[i]]++;
    }
}

/* Pearson's chi-square of counts against probabilities p (summing to 1), over the categories
 * of positive p; those of zero p must have no count. */
static double chi_square(const int64_t *counts, const double *p, int64_t C, int64_t n) {
    double chi = 0;
    for (int64_t j = 0; j < C; j++) {
        if (p[j] == 0) {
            assert_int_equal(counts[j], 0);
            continue;
        }
        const double e = p[j] * (double)n, d = (double)counts[j] - e;
        chi += d * d / e;
    }
    return chi;
}

static void test_multinomial(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    /* unnormalised weights with a zero: p = (0.1, 0.2, 0, 0.3, 0.4) */
    tg_tensor *w = tg_tensor_from_array(TG_SHAPE(5), (const tg_real[]){1, 2, 0, 3, 4});
    const double p[5] = {0.1, 0.2, 0, 0.3, 0.4};
    int64_t counts[5];
    tg_rng rng;
    tg_rng_seed(&rng, 123);
    const int64_t n = 40000;
    count_draws(tape, w, n, true, &rng, counts);
    /* 3 degrees of freedom: P(chi² > 16.27) = 0.001 */
    const double chi = chi_square(counts, p, 5, n);
    print_message("multinomial: chi-square %.2f over 4 categories, %lld draws\n", chi,
                  (long long)n);
    assert_true(chi < 16.27);
    /* the same seed gives the same draws; another seed other ones */
    tg_rng a, b, c;
    tg_rng_seed(&a, 7), tg_rng_seed(&b, 7), tg_rng_seed(&c, 8);
    tg_index *sa = tg_multinomial(tape, w, 64, true, &a);
    tg_index *sb = tg_multinomial(tape, w, 64, true, &b);
    tg_index *sc = tg_multinomial(tape, w, 64, true, &c);
    assert_memory_equal(sa->data, sb->data, 64 * sizeof(int32_t));
    assert_memory_not_equal(sa->data, sc->data, 64 * sizeof(int32_t));
    /* rows of a batch, (2, 3) -> (2, 4); a one-hot row always gives its category */
    tg_tensor *rows = tg_tensor_from_array(TG_SHAPE(2, 3), (const tg_real[]){0, 0, 1, 1, 1, 1});
    tg_index *s2 = tg_multinomial(tape, rows, 4, true, &rng);
    ASSERT_SHAPE(s2, 2, 4);
    for (int i = 0; i < 4; i++) assert_int_equal(s2->data[i], 2);
    /* without replacement: distinct categories, never one of weight 0 */
    for (int trial = 0; trial < 200; trial++) {
        tg_index *s = tg_multinomial(tape, w, 4, false, &rng);
        bool seen[5] = {false};
        for (int i = 0; i < 4; i++) {
            assert_int_not_equal(s->data[i], 2);
            assert_false(seen[s->data[i]]);
            seen[s->data[i]] = true;
        }
    }
    /* the first draw without replacement follows p; the second skips the first */
    int64_t firsts[5] = {0};
    for (int trial = 0; trial < 20000; trial++)
        firsts[tg_multinomial(tape, w, 2, false, &rng)->data[0]]++;
    assert_true(chi_square(firsts, p, 5, 20000) < 16.27);
    tg_tensor_free(w), tg_tensor_free(rows);
    tg_tape_free(tape);
}

static void test_sample_logits(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    const tg_real l[5] = {1.0f, 2.0f, -INFINITY, 0.5f, 2.0f};
    tg_tensor *logits = tg_tensor_from_array(TG_SHAPE(1, 5), l);
    tg_rng rng;
    tg_rng_seed(&rng, 99);
    /* greedy: the first maximum; top_k = 1 is greedy too */
    tg_index *g = tg_sample_logits(tape, logits, 0, 0, &rng);
    ASSERT_SHAPE(g, 1);
    assert_int_equal(g->data[0], 1);
    for (int i = 0; i < 50; i++) {
        const int32_t s = tg_sample_logits(tape, logits, 1, 1, &rng)->data[0];
        assert_true(s == 1 || s == 4); /* ties at the cut are kept */
    }
    /* temperature T: p ∝ exp(l / T); with top_k = 3 only 2.0, 2.0 and 1.0 remain */
    const double temps[2] = {0.7, 2.0};
    for (int k = 0; k < 2; k++) {
        for (int top = 0; top <= 3; top += 3) {
            double p[5], total = 0;
            for (int j = 0; j < 5; j++) {
                const bool kept = top == 0 ? true : (l[j] >= 1.0f);
                p[j] = kept && isfinite((double)l[j]) ? exp((double)l[j] / temps[k]) : 0;
                total += p[j];
            }
            for (int j = 0; j < 5; j++) p[j] /= total;
            int64_t counts[5] = {0};
            const int64_t n = 30000;
            for (int64_t i = 0; i < n; i++)
                counts[tg_sample_logits(tape, logits, (tg_real)temps[k], top, &rng)->data[0]]++;
            const double chi = chi_square(counts, p, 5, n);
            print_message("sample_logits T=%.1f top_k=%d: chi-square %.2f\n", temps[k], top, chi);
            assert_true(chi < 16.27); /* at most 3 degrees of freedom, p = 0.001 */
            tg_tape_reset(tape);
        }
    }
    /* reproducible for a seed; rows drawn in order, shape (...) of the leading dims */
    tg_tensor *batch = tg_test_rand(5, -2, 2, TG_SHAPE(2, 3, 11));
    tg_rng a, b;
    tg_rng_seed(&a, 1), tg_rng_seed(&b, 1);
    tg_index *sa = tg_sample_logits(tape, batch, 1, 0, &a);
    tg_index *sb = tg_sample_logits(tape, batch, 1, 0, &b);
    ASSERT_SHAPE(sa, 2, 3);
    assert_memory_equal(sa->data, sb->data, 6 * sizeof(int32_t));
    /* NULL draws from the default generator, seeded by tg_manual_seed */
    tg_manual_seed(3);
    tg_index *d1 = tg_sample_logits(tape, batch, 1, 0, NULL);
    tg_manual_seed(3);
    tg_index *d2 = tg_sample_logits(tape, batch, 1, 0, NULL);
    assert_memory_equal(d1->data, d2->data, 6 * sizeof(int32_t));
    tg_tensor_free(batch), tg_tensor_free(logits);
    tg_tape_free(tape);
}

/* ---------------------------------------------------------------------------------------
 * float64 gradchecks */

typedef enum gop {
    G_STACK,
    G_VIEWS,
    G_EXPAND,
    G_REPEAT,
    G_CHUNK,
    G_SPLIT_SIZES,
    G_GATHER1,
    G_GATHER0,
    G_INDEX_SELECT0,
    G_INDEX_SELECT1,
    G_MIN_DIM,
    G_CUMSUM0,
    G_CUMSUM1,
    G_SORT,
    G_TOPK,
    G_CLAMP,
    G_CLAMP_MIN,
    G_ABS,
    G_POW,
    G_MAXIMUM,
    G_MINIMUM,
    G_TRIU,
    G_TRIL,
} gop;

typedef struct gcase {
    const char *what;
    gop op;
    int n_in;
    int ndim[2];
    int64_t shape[2][4];
    tg_real lo, hi; /* input ranges (kept away from kinks: bounds, 0, ties) */
    const tg_index *ix;
} gcase;

static tg_tensor *fn_op(tg_tape *t, tg_tensor *const *in, void *ctx) {
    const gcase *c = ctx;
    tg_tensor *x = in[0], *out[4];
    switch (c->op) {
    case G_STACK:
        return tg_stack(t, (tg_tensor *[]){in[0], in[1], in[0]}, 3, 1);
    case G_VIEWS: /* views share storage: a copying op after them keeps gradcheck honest */
        return tg_mul_scalar(
            t, tg_flatten(t, tg_unsqueeze(t, tg_squeeze_all(t, tg_squeeze(t, x, 1)), 0), 0, 1), 3);
    case G_EXPAND:
        return tg_expand(t, x, TG_SHAPE(4, -1, 5, -1));
    case G_REPEAT:
        return tg_repeat(t, x, TG_SHAPE(2, 1, 3, 2));
    case G_CHUNK:
        tg_chunk(t, x, 2, 1, out, 4);
        return tg_concat(t, (tg_tensor *[]){out[1], tg_mul_scalar(t, out[0], 2)}, 2, 1);
    case G_SPLIT_SIZES: /* the middle chunk unused */
        tg_split_sizes(t, x, (const int64_t[]){1, 3, 2}, 3, 0, out);
        return tg_concat(t, (tg_tensor *[]){out[2], out[0]}, 2, 0);
    case G_GATHER1:
        return tg_gather(t, x, 1, c->ix);
    case G_GATHER0:
        return tg_gather(t, x, 0, c->ix);
    case G_INDEX_SELECT0:
        return tg_index_select(t, x, 0, c->ix);
    case G_INDEX_SELECT1:
        return tg_index_select(t, x, 1, c->ix);
    case G_MIN_DIM:
        return tg_min_dim(t, x, 1, true, NULL);
    case G_CUMSUM0:
        return tg_cumsum(t, x, 0);
    case G_CUMSUM1:
        return tg_cumsum(t, x, -1);
    case G_SORT:
        return tg_sort(t, x, 1, true, NULL);
    case G_TOPK:
        return tg_topk(t, x, 2, 0, false, NULL);
    case G_CLAMP:
        return tg_clamp(t, x, -0.5, 0.5);
    case G_CLAMP_MIN:
        return tg_clamp(t, x, 0.1, INFINITY);
    case G_ABS:
        return tg_abs(t, x);
    case G_POW:
        return tg_pow(t, in[0], in[1]);
    case G_MAXIMUM:
        return tg_maximum(t, in[0], in[1]);
    case G_MINIMUM:
        return tg_minimum(t, in[0], in[1]);
    case G_TRIU:
        return tg_triu(t, x, 1);
    case G_TRIL:
        return tg_tril(t, x, -1);
    }
    return NULL;
}

static void test_gradchecks(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_index *i32 = tg_index_from_array(TG_SHAPE(3, 2), (const int32_t[]){3, 3, 0, 1, 2, 0});
    tg_index *i12 = tg_index_from_array(TG_SHAPE(1, 2), (const int32_t[]){2, 0});
    tg_index *sel = tg_index_from_array(TG_SHAPE(4), (const int32_t[]){3, 0, 3, 1});
    const gcase cases[] = {
        {"stack", G_STACK, 2, {2, 2}, {{2, 3}, {2, 3}}, -1, 1, NULL},
        {"unsqueeze/squeeze/flatten", G_VIEWS, 1, {3}, {{2, 1, 3}}, -1, 1, NULL},
        {"expand", G_EXPAND, 1, {3}, {{2, 1, 3}}, -1, 1, NULL},
        {"repeat", G_REPEAT, 1, {3}, {{2, 1, 3}}, -1, 1, NULL},
        {"chunk", G_CHUNK, 1, {2}, {{3, 5}}, -1, 1, NULL},
        {"split_sizes", G_SPLIT_SIZES, 1, {2}, {{6, 2}}, -1, 1, NULL},
        {"gather dim 1", G_GATHER1, 1, {2}, {{3, 4}}, -1, 1, i32},
        {"gather dim 0", G_GATHER0, 1, {2}, {{3, 4}}, -1, 1, i12},
        {"index_select dim 0", G_INDEX_SELECT0, 1, {2}, {{4, 3}}, -1, 1, sel},
        {"index_select dim 1", G_INDEX_SELECT1, 1, {3}, {{2, 4, 2}}, -1, 1, sel},
        {"min_dim", G_MIN_DIM, 1, {2}, {{3, 4}}, -1, 1, NULL},
        {"cumsum dim 0", G_CUMSUM0, 1, {3}, {{3, 2, 2}}, -1, 1, NULL},
        {"cumsum dim -1", G_CUMSUM1, 1, {2}, {{2, 5}}, -1, 1, NULL},
        {"sort", G_SORT, 1, {2}, {{3, 4}}, -1, 1, NULL},
        {"topk", G_TOPK, 1, {2}, {{4, 3}}, -1, 1, NULL},
        {"clamp", G_CLAMP, 1, {2}, {{4, 5}}, -1, 1, NULL},
        {"clamp min", G_CLAMP_MIN, 1, {2}, {{4, 5}}, -1, 1, NULL},
        {"abs", G_ABS, 1, {2}, {{4, 5}}, -1, 1, NULL},
        {"pow", G_POW, 2, {2, 2}, {{3, 1}, {1, 4}}, 0.5, 2, NULL},
        {"maximum", G_MAXIMUM, 2, {2, 2}, {{3, 1}, {1, 4}}, -1, 1, NULL},
        {"minimum", G_MINIMUM, 2, {2, 2}, {{3, 4}, {3, 4}}, -1, 1, NULL},
        {"triu", G_TRIU, 1, {3}, {{2, 3, 4}}, -1, 1, NULL},
        {"tril", G_TRIL, 1, {2}, {{4, 3}}, -1, 1, NULL},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const gcase *c = &cases[k];
        tg_tensor *in[2] = {NULL, NULL};
        for (int i = 0; i < c->n_in; i++)
            in[i] = tg_tensor_requires_grad(
                tg_test_rand(100 + 10 * k + (size_t)i, c->lo, c->hi, c->ndim[i], c->shape[i]),
                true);
        if (c->op == G_POW) /* exponents of both signs */
            for (int64_t j = 0; j < in[1]->numel; j++) in[1]->data[j] = in[1]->data[j] * 2 - 2.5;
        tg_test_gradcheck(c->what, fn_op, (void *)c, in, c->n_in);
        for (int i = 0; i < c->n_in; i++) tg_tensor_free(in[i]);
    }
    tg_index_free(i32), tg_index_free(i12), tg_index_free(sel);
}

/* ---------------------------------------------------------------------------------------
 * error messages: the op, the shapes and the names; nothing recorded */

static void test_errors(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x =
        tg_tensor_requires_grad(tg_tensor_named(tg_tensor_zeros(TG_SHAPE(2, 3)), "x"), true);
    tg_tensor *y = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(3, 2)), "y");
    tg_tensor *v = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(4)), "v");
    tg_tensor *six = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(1, 1, 1, 1, 1, 2)), "six");
    tg_tensor *out[4];
    TG_EXPECT_FAIL(tg_stack(tape, (tg_tensor *[]){x, y}, 2, 0), "tg_stack", "tensor 1",
                   "(3, 2) 'y'", "(2, 3) 'x'");
    TG_EXPECT_FAIL(tg_stack(tape, (tg_tensor *[]){x}, 0, 0), "tg_stack", "at least one");
    TG_EXPECT_FAIL(tg_stack(tape, (tg_tensor *[]){x}, 1, 3), "tg_stack", "dim 3", "[-3, 2]");
    TG_EXPECT_FAIL(tg_unsqueeze(tape, x, -4), "tg_unsqueeze", "dim -4", "(2, 3) 'x'");
    TG_EXPECT_FAIL(tg_unsqueeze(tape, six, 0), "tg_unsqueeze", "'six'", "6 dims");
    TG_EXPECT_FAIL(tg_squeeze(tape, x, 2), "tg_squeeze", "dim 2", "(2, 3) 'x'");
    TG_EXPECT_FAIL(tg_flatten(tape, x, 1, 0), "tg_flatten", "start_dim 1", "end_dim 0", "'x'");
    TG_EXPECT_FAIL(tg_flatten(tape, x, 0, 2), "tg_flatten", "dim 2");
    TG_EXPECT_FAIL(tg_expand(tape, x, TG_SHAPE(2, 4)), "tg_expand", "(2, 3) 'x'", "(2, 4)");
    TG_EXPECT_FAIL(tg_expand(tape, x, TG_SHAPE(3)), "tg_expand", "(2, 3) 'x'", "(3,)");
    TG_EXPECT_FAIL(tg_expand(tape, x, TG_SHAPE(-1, 2, 3)), "tg_expand", "new leading dim");
    TG_EXPECT_FAIL(tg_repeat(tape, x, TG_SHAPE(2)), "tg_repeat", "repeats (2,)", "(2, 3) 'x'");
    TG_EXPECT_FAIL(tg_repeat(tape, x, TG_SHAPE(2, -1)), "tg_repeat", "(2, -1)");
    TG_EXPECT_FAIL(tg_chunk(tape, x, 0, 1, out, 4), "tg_chunk", "chunks 0", "'x'");
    TG_EXPECT_FAIL(tg_chunk(tape, x, 3, 1, out, 2), "tg_chunk", "3 chunks", "max_out 2");
    TG_EXPECT_FAIL(tg_split_sizes(tape, x, (const int64_t[]){2, 2}, 2, 1, out), "tg_split_sizes",
                   "size 2 (chunk 1)", "add up to 3", "(2, 3) 'x'");
    TG_EXPECT_FAIL(tg_split_sizes(tape, x, (const int64_t[]){1, 1}, 2, 1, out), "tg_split_sizes",
                   "add up to 2, not to 3");
    TG_EXPECT_FAIL(tg_split_sizes(tape, x, (const int64_t[]){-1, 4}, 2, 1, out), "size -1");
    tg_index *ix = tg_index_from_array(TG_SHAPE(2, 2), (const int32_t[]){0, 1, 3, 0});
    TG_EXPECT_FAIL(tg_gather(tape, x, 1, ix), "tg_gather", "index 3", "position [1, 0]", "[0, 3)",
                   "(2, 3) 'x'");
    tg_index *big = tg_index_new(TG_SHAPE(3, 1));
    TG_EXPECT_FAIL(tg_gather(tape, x, 1, big), "tg_gather", "index (3, 1)", "(2, 3) 'x'");
    tg_index *flat = tg_index_new(TG_SHAPE(2));
    TG_EXPECT_FAIL(tg_gather(tape, x, 0, flat), "tg_gather", "index (2,)");
    TG_EXPECT_FAIL(tg_index_select(tape, x, 0, ix), "tg_index_select", "1-D", "(2, 2)");
    flat->data[1] = -1;
    TG_EXPECT_FAIL(tg_index_select(tape, x, 0, flat), "tg_index_select", "index -1", "position [1]",
                   "[0, 2)");
    TG_EXPECT_FAIL(tg_one_hot(tape, ix, 3), "tg_one_hot", "class 3", "[0, 3)");
    TG_EXPECT_FAIL(tg_one_hot(tape, ix, -2), "tg_one_hot", "num_classes -2");
    tg_index *none = tg_index_new(TG_SHAPE(0));
    TG_EXPECT_FAIL(tg_one_hot(tape, none, -1), "tg_one_hot", "infer");
    tg_tensor *empty = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(2, 0)), "empty");
    TG_EXPECT_FAIL(tg_argmax(tape, empty, 1, false), "tg_argmax", "size 0", "(2, 0) 'empty'");
    TG_EXPECT_FAIL(tg_argmin(tape, x, 2, false), "tg_argmin", "dim 2", "(2, 3) 'x'");
    TG_EXPECT_FAIL(tg_min_dim(tape, empty, 1, false, NULL), "tg_min_dim", "min", "size 0");
    TG_EXPECT_FAIL(tg_cumsum(tape, x, -3), "tg_cumsum", "dim -3");
    TG_EXPECT_FAIL(tg_topk(tape, x, 4, 1, true, NULL), "tg_topk", "k = 4", "[0, 3]", "'x'");
    TG_EXPECT_FAIL(tg_topk(tape, x, -1, 1, true, NULL), "tg_topk", "k = -1");
    TG_EXPECT_FAIL(tg_sort(tape, x, 2, false, NULL), "tg_sort", "dim 2");
    tg_tensor *scalar = tg_tensor_named(tg_tensor_zeros(0, NULL), "scalar");
    TG_EXPECT_FAIL(tg_topk(tape, scalar, 0, 0, true, NULL), "tg_topk", "k = 0", "[1, 1]");
    tg_tensor_free(scalar);
    TG_EXPECT_FAIL(tg_clamp(tape, x, NAN, 1), "tg_clamp", "NaN", "(2, 3) 'x'");
    TG_EXPECT_FAIL(tg_pow(tape, x, y), "tg_pow", "(2, 3) 'x'", "(3, 2) 'y'");
    TG_EXPECT_FAIL(tg_maximum(tape, x, v), "tg_maximum", "(2, 3) 'x'", "(4,) 'v'");
    TG_EXPECT_FAIL(tg_minimum(tape, v, x), "tg_minimum", "(4,) 'v'");
    TG_EXPECT_FAIL(tg_triu(tape, v, 0), "tg_triu", "(4,) 'v'", "at least 2 dims");
    TG_EXPECT_FAIL(tg_tril(tape, v, 0), "tg_tril", "(4,) 'v'");
    /* sampling */
    tg_tensor *p =
        tg_tensor_named(tg_tensor_from_array(TG_SHAPE(2, 2), (const tg_real[]){1, 0, 0, 0}), "p");
    TG_EXPECT_FAIL(tg_multinomial(tape, p, 1, true, NULL), "tg_multinomial", "row 1", "(2, 2) 'p'",
                   "0 categories of positive weight");
    p->data[2] = 1;
    TG_EXPECT_FAIL(tg_multinomial(tape, p, 2, false, NULL), "tg_multinomial", "row 0",
                   "1 categories", "without replacement");
    TG_EXPECT_FAIL(tg_multinomial(tape, p, 3, false, NULL), "tg_multinomial", "3 samples",
                   "2 categories");
    TG_EXPECT_FAIL(tg_multinomial(tape, p, 0, true, NULL), "tg_multinomial", "0 samples");
    p->data[3] = -0.5;
    TG_EXPECT_FAIL(tg_multinomial(tape, p, 1, true, NULL), "tg_multinomial", "row 1", "-0.5",
                   "non-negative");
    p->data[3] = NAN;
    TG_EXPECT_FAIL(tg_multinomial(tape, p, 1, true, NULL), "tg_multinomial", "finite");
    TG_EXPECT_FAIL(tg_sample_logits(tape, p, 1, 0, NULL), "tg_sample_logits", "row 1", "nan");
    p->data[3] = INFINITY;
    TG_EXPECT_FAIL(tg_sample_logits(tape, p, 1, 0, NULL), "tg_sample_logits", "+inf");
    p->data[2] = p->data[3] = -INFINITY;
    TG_EXPECT_FAIL(tg_sample_logits(tape, p, 1, 0, NULL), "tg_sample_logits", "row 1",
                   "no finite logit");
    TG_EXPECT_FAIL(tg_sample_logits(tape, x, -1, 0, NULL), "tg_sample_logits", "temperature -1");
    TG_EXPECT_FAIL(tg_sample_logits(tape, x, 1, -2, NULL), "tg_sample_logits", "top_k -2");
    tg_tensor *s = tg_tensor_named(tg_tensor_zeros(0, NULL), "s");
    TG_EXPECT_FAIL(tg_sample_logits(tape, s, 1, 0, NULL), "tg_sample_logits", "'s'",
                   "at least one dim");
    assert_int_equal(tg_tape_node_count(tape), 0);
    tg_index_free(ix), tg_index_free(big), tg_index_free(flat), tg_index_free(none);
    tg_tensor_free(x), tg_tensor_free(y), tg_tensor_free(v), tg_tensor_free(six);
    tg_tensor_free(empty), tg_tensor_free(p), tg_tensor_free(s);
    tg_tape_free(tape);
}

/* ---------------------------------------------------------------------------------------
 * the same bits at 1 and 2 threads, on sizes large enough for the loops to split */

typedef struct det_run {
    tg_real *y, *dx, *dx2; /* malloc'd copies of the output and of the inputs' gradients */
    int64_t ny;
} det_run;

static det_run det_once(int threads, gop op, tg_tensor *x, tg_tensor *x2, const tg_index *ix) {
    tg_set_num_threads(threads);
    tg_tape *tape = tg_tape_new();
    tg_tensor_zero_grad(x);
    if (x2) tg_tensor_zero_grad(x2);
    gcase c = {.op = op, .ix = ix};
    tg_tensor *y = fn_op(tape, (tg_tensor *[]){x, x2}, &c);
    tg_tensor *g = tg_test_rand(77, -1, 1, y->ndim, y->shape);
    tg_tape_backward_with(tape, y, g->data);
    det_run r = {tg_xmalloc((size_t)y->numel * sizeof(tg_real)),
                 tg_xmalloc((size_t)x->numel * sizeof(tg_real)),
                 x2 ? tg_xmalloc((size_t)x2->numel * sizeof(tg_real)) : NULL, y->numel};
    memcpy(r.y, y->data, (size_t)y->numel * sizeof(tg_real));
    memcpy(r.dx, x->grad, (size_t)x->numel * sizeof(tg_real));
    if (x2) memcpy(r.dx2, x2->grad, (size_t)x2->numel * sizeof(tg_real));
    tg_tensor_free(g);
    tg_tape_free(tape);
    tg_set_num_threads(0);
    return r;
}

static void test_thread_counts(void **state) {
    (void)state;
    const int64_t N = 300;
    tg_tensor *x = tg_tensor_requires_grad(tg_test_rand(1, -1, 1, TG_SHAPE(N, N)), true);
    tg_tensor *x2 = tg_tensor_requires_grad(tg_test_rand(2, -1, 1, TG_SHAPE(N, N)), true);
    tg_tensor *base = tg_tensor_requires_grad(tg_test_rand(3, 0.5, 2, TG_SHAPE(N, N)), true);
    tg_tensor *narrow =
        tg_tensor_requires_grad(tg_test_rand(4, -1, 1, TG_SHAPE(120, 1, 100)), true);
    tg_index *gi = tg_index_new(TG_SHAPE(N, N));
    for (int64_t i = 0; i < gi->numel; i++) gi->data[i] = (int32_t)((i * 7919) % N);
    tg_index *si = tg_index_new(TG_SHAPE(2 * N));
    for (int64_t i = 0; i < si->numel; i++) si->data[i] = (int32_t)((i * 31) % N);
    const struct {
        gop op;
        tg_tensor *a, *b;
        const tg_index *ix;
    } ops[] = {
        {G_GATHER1, x, NULL, gi},       {G_GATHER0, x, NULL, gi},   {G_INDEX_SELECT0, x, NULL, si},
        {G_INDEX_SELECT1, x, NULL, si}, {G_CUMSUM0, x, NULL, NULL}, {G_CUMSUM1, x, NULL, NULL},
        {G_SORT, x, NULL, NULL},        {G_TOPK, x, NULL, NULL},    {G_MIN_DIM, x, NULL, NULL},
        {G_CLAMP, x, NULL, NULL},       {G_ABS, x, NULL, NULL},     {G_TRIU, x, NULL, NULL},
        {G_MAXIMUM, x, x2, NULL},       {G_POW, base, x2, NULL},    {G_EXPAND, narrow, NULL, NULL},
        {G_REPEAT, narrow, NULL, NULL}, {G_STACK, x, x2, NULL},
    };
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        det_run r1 = det_once(1, ops[k].op, ops[k].a, ops[k].b, ops[k].ix);
        det_run r2 = det_once(2, ops[k].op, ops[k].a, ops[k].b, ops[k].ix);
        assert_memory_equal(r1.y, r2.y, (size_t)r1.ny * sizeof(tg_real));
        assert_memory_equal(r1.dx, r2.dx, (size_t)ops[k].a->numel * sizeof(tg_real));
        if (ops[k].b)
            assert_memory_equal(r1.dx2, r2.dx2, (size_t)ops[k].b->numel * sizeof(tg_real));
        free(r1.y), free(r1.dx), free(r1.dx2), free(r2.y), free(r2.dx), free(r2.dx2);
    }
    tg_tensor_free(x), tg_tensor_free(x2), tg_tensor_free(base), tg_tensor_free(narrow);
    tg_index_free(gi), tg_index_free(si);
}

/* ---------------------------------------------------------------------------------------
 * PyTorch parity (tests/fixtures, made by tests/fixturegen/ops_extra.py) */

static tg_parity_tally tally = {TG_OP_PARITY_ATOL, TG_OP_PARITY_RTOL, 0, 0, 0};

/* One case: its inputs (in.*), the outputs to compare, and a loss Σ_k sum(out_k ⊙ gout_k)
 * whose backward gives the gradients PyTorch's joint backward gave. */
typedef struct pcase {
    tg_fixture *fx;
    tg_tape *tape;
    tg_tensor *in[4];
    const char *in_names[4];
    int n_in;
    tg_index *ix[2];
    int n_ix;
    tg_tensor *loss;
    tg_tensor *gouts[4];
    int n_gouts;
} pcase;

static const char *meta(const pcase *p, const char *key) {
    const char *v = tg_fixture_meta(p->fx, key);
    if (!v) fail_msg("fixture: no metadata '%s'", key);
    return v;
}

static tg_tensor *input(pcase *p, const char *name) {
    char key[64];
    snprintf(key, sizeof key, "in.%s", name);
    tg_tensor *t = tg_tensor_requires_grad(tg_fixture_tensor(p->fx, key), true);
    p->in_names[p->n_in] = name;
    return p->in[p->n_in++] = t;
}

static tg_index *index_input(pcase *p, const char *name) {
    char key[64];
    snprintf(key, sizeof key, "in.%s", name);
    return p->ix[p->n_ix++] = tg_fixture_index(p->fx, key);
}

/* Compares y with `key` ("out", "out.values", ...) and adds sum(y ⊙ gout) to the loss. */
static void output(pcase *p, const char *key, tg_tensor *y) {
    char g[64];
    tg_parity_tally_compare(&tally, p->fx, key, y->shape, y->ndim, y->data);
    snprintf(g, sizeof g, "g%s", key);
    tg_tensor *gout = p->gouts[p->n_gouts++] = tg_fixture_tensor(p->fx, g);
    tg_tensor *term = tg_sum(p->tape, tg_mul(p->tape, y, gout));
    p->loss = p->loss ? tg_add(p->tape, p->loss, term) : term;
}

/* An integer output must be PyTorch's exactly. */
static void output_index(pcase *p, const char *key, const tg_index *got) {
    tg_index *want = tg_fixture_index(p->fx, key);
    assert_shape(got->shape, got->ndim, want->ndim, want->shape);
    for (int64_t i = 0; i < want->numel; i++)
        if (got->data[i] != want->data[i])
            fail_msg("'%s'[%lld]: %d, PyTorch %d", key, (long long)i, got->data[i], want->data[i]);
    tg_index_free(want);
}

/* A real output holding integers (one_hot) against PyTorch's I64 entry. */
static void output_counts(pcase *p, const char *key, const tg_tensor *got) {
    tg_index *want = tg_fixture_index(p->fx, key);
    assert_shape(got->shape, got->ndim, want->ndim, want->shape);
    for (int64_t i = 0; i < want->numel; i++) assert_true(got->data[i] == (tg_real)want->data[i]);
    tg_index_free(want);
}

/* "4,-1,5" -> {4, -1, 5}; returns the count */
static int parse_list(const char *s, int64_t *out) {
    int n = 0;
    for (char *end; *s; s = *end ? end + 1 : end) out[n++] = strtoll(s, &end, 10);
    return n;
}

static void parity_case(const char *name) {
    pcase p = {.fx = tg_fixture_load(name), .tape = tg_tape_new()};
    const char *op = meta(&p, "op");
    tg_tensor *out[4], *y;
    tg_index *ix = NULL;
    if (!strcmp(op, "stack")) {
        const int n = atoi(meta(&p, "n"));
        tg_tensor *xs[3] = {input(&p, "a"), input(&p, "b"), n > 2 ? input(&p, "c") : NULL};
        output(&p, "out", tg_stack(p.tape, xs, n, atoi(meta(&p, "dim"))));
    } else if (!strcmp(op, "unsqueeze")) {
        output(&p, "out", tg_unsqueeze(p.tape, input(&p, "x"), atoi(meta(&p, "dim"))));
    } else if (!strcmp(op, "squeeze")) {
        output(&p, "out", tg_squeeze(p.tape, input(&p, "x"), atoi(meta(&p, "dim"))));
    } else if (!strcmp(op, "squeeze_all")) {
        output(&p, "out", tg_squeeze_all(p.tape, input(&p, "x")));
    } else if (!strcmp(op, "flatten")) {
        output(&p, "out",
               tg_flatten(p.tape, input(&p, "x"), atoi(meta(&p, "start_dim")),
                          atoi(meta(&p, "end_dim"))));
    } else if (!strcmp(op, "expand")) {
        int64_t shape[TG_MAX_DIMS];
        const int nd = parse_list(meta(&p, "shape"), shape);
        output(&p, "out", tg_expand(p.tape, input(&p, "x"), nd, shape));
    } else if (!strcmp(op, "repeat")) {
        int64_t repeats[TG_MAX_DIMS];
        const int nr = parse_list(meta(&p, "repeats"), repeats);
        output(&p, "out", tg_repeat(p.tape, input(&p, "x"), nr, repeats));
    } else if (!strcmp(op, "chunk") || !strcmp(op, "split_sizes")) {
        int n;
        if (!strcmp(op, "chunk")) {
            n = tg_chunk(p.tape, input(&p, "x"), atoi(meta(&p, "chunks")), atoi(meta(&p, "dim")),
                         out, 4);
        } else {
            int64_t sizes[4];
            n = parse_list(meta(&p, "sizes"), sizes);
            n = tg_split_sizes(p.tape, input(&p, "x"), sizes, n, atoi(meta(&p, "dim")), out);
        }
        for (int k = 0; k < n; k++) {
            char key[16];
            snprintf(key, sizeof key, "out.%d", k);
            output(&p, key, out[k]);
        }
        char more[16];
        snprintf(more, sizeof more, "out.%d", n);
        assert_false(tg_fixture_has(p.fx, more)); /* as many outputs as PyTorch's */
    } else if (!strcmp(op, "gather")) {
        y = tg_gather(p.tape, input(&p, "x"), atoi(meta(&p, "dim")), index_input(&p, "index"));
        output(&p, "out", y);
    } else if (!strcmp(op, "index_select")) {
        y = tg_index_select(p.tape, input(&p, "x"), atoi(meta(&p, "dim")),
                            index_input(&p, "index"));
        output(&p, "out", y);
    } else if (!strcmp(op, "one_hot")) {
        output_counts(&p, "out",
                      tg_one_hot(p.tape, index_input(&p, "ids"), atoi(meta(&p, "num_classes"))));
    } else if (!strcmp(op, "where_ids_eq")) {
        tg_tensor *cond = tg_index_eq(p.tape, index_input(&p, "ids"), atoi(meta(&p, "value")));
        tg_tensor *a = input(&p, "a");
        output(&p, "out", tg_where(p.tape, cond, a, input(&p, "b")));
    } else if (!strcmp(op, "masked_fill_ids_eq")) {
        tg_tensor *x = input(&p, "x");
        tg_tensor *pad = tg_index_eq(p.tape, index_input(&p, "ids"), atoi(meta(&p, "value")));
        y = tg_masked_fill(p.tape, x, tg_unsqueeze(p.tape, pad, 1),
                           (tg_real)strtod(meta(&p, "fill"), NULL));
        output(&p, "out", y);
    } else if (!strcmp(op, "argmax") || !strcmp(op, "argmin")) {
        tg_tensor *x = tg_fixture_tensor(p.fx, "in.x"); /* no gradient: a constant */
        p.in[p.n_in] = x, p.in_names[p.n_in++] = NULL;
        const int dim = atoi(meta(&p, "dim"));
        const bool keep = atoi(meta(&p, "keepdim"));
        output_index(&p, "out",
                     !strcmp(op, "argmax") ? tg_argmax(p.tape, x, dim, keep)
                                           : tg_argmin(p.tape, x, dim, keep));
    } else if (!strcmp(op, "min_dim") || !strcmp(op, "sort") || !strcmp(op, "topk")) {
        tg_tensor *x = input(&p, "x");
        const int dim = atoi(meta(&p, "dim"));
        if (!strcmp(op, "min_dim"))
            y = tg_min_dim(p.tape, x, dim, atoi(meta(&p, "keepdim")), &ix);
        else if (!strcmp(op, "sort"))
            y = tg_sort(p.tape, x, dim, atoi(meta(&p, "descending")), &ix);
        else
            y = tg_topk(p.tape, x, atoi(meta(&p, "k")), dim, atoi(meta(&p, "largest")), &ix);
        output(&p, "out.values", y);
        output_index(&p, "out.indices", ix);
    } else if (!strcmp(op, "cumsum")) {
        output(&p, "out", tg_cumsum(p.tape, input(&p, "x"), atoi(meta(&p, "dim"))));
    } else if (!strcmp(op, "clamp")) {
        const char *lo = meta(&p, "min"), *hi = meta(&p, "max");
        output(&p, "out",
               tg_clamp(p.tape, input(&p, "x"),
                        strcmp(lo, "none") ? (tg_real)strtod(lo, NULL) : -INFINITY,
                        strcmp(hi, "none") ? (tg_real)strtod(hi, NULL) : INFINITY));
    } else if (!strcmp(op, "pow_scalar")) {
        output(&p, "out",
               tg_pow_scalar(p.tape, input(&p, "x"), (tg_real)strtod(meta(&p, "exponent"), NULL)));
    } else if (!strcmp(op, "abs")) {
        output(&p, "out", tg_abs(p.tape, input(&p, "x")));
    } else if (!strcmp(op, "pow_tensor") || !strcmp(op, "maximum") || !strcmp(op, "minimum")) {
        tg_tensor *a = input(&p, "a"), *b = input(&p, "b");
        y = !strcmp(op, "pow_tensor") ? tg_pow(p.tape, a, b)
            : !strcmp(op, "maximum")  ? tg_maximum(p.tape, a, b)
                                      : tg_minimum(p.tape, a, b);
        output(&p, "out", y);
    } else if (!strcmp(op, "triu") || !strcmp(op, "tril")) {
        const int64_t k = atoll(meta(&p, "diagonal"));
        tg_tensor *x = input(&p, "x");
        output(&p, "out", !strcmp(op, "triu") ? tg_triu(p.tape, x, k) : tg_tril(p.tape, x, k));
    } else {
        fail_msg("fixture %s: unknown op '%s'", name, op);
    }
    if (p.loss) tg_tape_backward(p.tape, p.loss);
    for (int k = 0; k < p.n_in; k++) {
        char key[64];
        if (!p.in_names[k]) continue;
        snprintf(key, sizeof key, "grad.%s", p.in_names[k]);
        tg_tensor *x = p.in[k];
        tg_tensor *zeros = x->grad ? NULL : tg_tensor_zeros(x->ndim, x->shape);
        tg_parity_tally_compare(&tally, p.fx, key, x->shape, x->ndim,
                                x->grad ? x->grad : zeros->data);
        tg_tensor_free(zeros);
    }
    tally.cases++;
    for (int k = 0; k < p.n_in; k++) tg_tensor_free(p.in[k]);
    for (int k = 0; k < p.n_ix; k++) tg_index_free(p.ix[k]);
    for (int k = 0; k < p.n_gouts; k++) tg_tensor_free(p.gouts[k]);
    tg_tape_free(p.tape);
    tg_fixture_free(p.fx);
}

static void test_pytorch_parity(void **state) {
    (void)state;
    static const char *cases[] = {
        "op_stack_dim0",
        "op_stack_dimm1",
        "op_unsqueeze_dimm1",
        "op_squeeze_dim1",
        "op_squeeze_all",
        "op_flatten_1_2",
        "op_expand_2x1x3",
        "op_repeat_2x3",
        "op_repeat_heads",
        "op_chunk_5_in_3",
        "op_split_sizes_dim0",
        "op_gather_dim1",
        "op_gather_dim0_smaller",
        "op_index_select_dim0",
        "op_index_select_dim1",
        "op_one_hot_5",
        "op_one_hot_infer",
        "op_where_pad_mask",
        "op_masked_fill_key_padding",
        "op_argmax_dim1_ties",
        "op_argmin_dim0_keepdim_ties",
        "op_min_dim1",
        "op_cumsum_dim1",
        "op_cumsum_dim0_3d",
        "op_sort_desc_dim1",
        "op_sort_stable_ties_dim0",
        "op_topk_3_dimm1",
        "op_topk_2_smallest_dim0",
        "op_clamp_both",
        "op_clamp_min",
        "op_clamp_max",
        "op_abs_zeros",
        "op_pow_tensor_bcast",
        "op_pow_tensor_special",
        "op_pow_scalar_0_edges",
        "op_pow_scalar_0.5_edges",
        "op_pow_scalar_3_edges",
        "op_pow_scalar_m1_edges",
        "op_maximum_ties_bcast",
        "op_minimum_ties",
        "op_triu_k1",
        "op_tril_km1",
        "op_tril_k0",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) parity_case(cases[i]);
    tg_parity_tally_print(&tally);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stack_values),
        cmocka_unit_test(test_views),
        cmocka_unit_test(test_expand_values),
        cmocka_unit_test(test_repeat_values),
        cmocka_unit_test(test_chunk_split_values),
        cmocka_unit_test(test_gather_index_select_values),
        cmocka_unit_test(test_one_hot_and_masks),
        cmocka_unit_test(test_argmax_argmin_values),
        cmocka_unit_test(test_cumsum_values),
        cmocka_unit_test(test_sort_topk_values),
        cmocka_unit_test(test_clamp_abs_values),
        cmocka_unit_test(test_pow_maximum_values),
        cmocka_unit_test(test_triu_tril_values),
        cmocka_unit_test(test_index_in_step),
        cmocka_unit_test(test_no_malloc_after_first_step),
        cmocka_unit_test(test_multinomial),
        cmocka_unit_test(test_sample_logits),
        cmocka_unit_test(test_gradchecks),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_thread_counts),
        cmocka_unit_test(test_pytorch_parity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
