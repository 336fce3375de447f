/* Indexing: embedding lookup. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_embedding_values(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *w = tg_tensor_requires_grad(tg_tensor_arange(0, 12, 1), true); /* (12,) */
    tg_tensor *W = tg_reshape(tape, w, TG_SHAPE(4, 3));                       /* rows v*3.. */
    tg_index *ids = tg_index_from_array(TG_SHAPE(2, 3), (const int32_t[]){3, 0, 3, 1, 1, 2});
    tg_tensor *y = tg_embedding(tape, W, ids, TG_NO_PADDING);
    assert_int_equal(y->ndim, 3);
    assert_int_equal(y->shape[0], 2);
    assert_int_equal(y->shape[1], 3);
    assert_int_equal(y->shape[2], 3);
    for (int i = 0; i < 6; i++)
        for (int e = 0; e < 3; e++) assert_true(y->data[i * 3 + e] == ids->data[i] * 3 + e);
    /* scatter-add: row 3 used twice, row 1 twice, row 2 once, row 0 once */
    tg_real seed[18];
    for (int i = 0; i < 18; i++) seed[i] = (tg_real)(i + 1);
    tg_tape_backward_with(tape, y, seed);
    const tg_real want[12] = {4, 5, 6, 10 + 13, 11 + 14, 12 + 15, 16, 17, 18, 1 + 7, 2 + 8, 3 + 9};
    assert_memory_equal(w->grad, want, sizeof want);
    /* the ids may change after the forward: backward uses the ids of the forward */
    tg_tape_reset(tape);
    tg_tensor_zero_grad(w);
    W = tg_reshape(tape, w, TG_SHAPE(4, 3));
    y = tg_embedding(tape, W, ids, 1); /* padding row 1 */
    for (int i = 0; i < 6; i++) ids->data[i] = 0;
    tg_tape_backward_with(tape, y, seed);
    const tg_real want_pad[12] = {4, 5, 6, 0, 0, 0, 16, 17, 18, 1 + 7, 2 + 8, 3 + 9};
    assert_memory_equal(w->grad, want_pad, sizeof want_pad);
    /* 1-D ids, a 0-d id, and no recording */
    tg_tape_reset(tape);
    W = tg_reshape(tape, w, TG_SHAPE(4, 3));
    tg_index *one = tg_index_from_array(0, NULL, (const int32_t[]){2});
    tg_tensor *r = tg_embedding(tape, W, one, TG_NO_PADDING);
    assert_int_equal(r->ndim, 1);
    assert_true(r->data[0] == 6 && r->data[2] == 8);
    tg_tape_set_recording(tape, false);
    size_t nodes = tg_tape_node_count(tape);
    r = tg_embedding(tape, W, one, TG_NO_PADDING);
    assert_int_equal(tg_tape_node_count(tape), nodes);
    assert_false(r->requires_grad);
    tg_index_free(one), tg_index_free(ids);
    tg_tape_free(tape);
    tg_tensor_free(w);
}

/* Many ids and a wide embedding: the parallel column-block path equals a plain loop. */
static void test_embedding_large(void **state) {
    (void)state;
    const int64_t V = 50, E = 300, N = 700;
    tg_tensor *W = tg_tensor_requires_grad(tg_test_rand(1, -1, 1, TG_SHAPE(V, E)), true);
    tg_index *ids = tg_index_new(TG_SHAPE(N));
    for (int64_t i = 0; i < N; i++) ids->data[i] = (int32_t)((i * 7919) % V);
    tg_tape *tape = tg_tape_new();
    tg_tensor *y = tg_embedding(tape, W, ids, -3); /* padding row V - 3 */
    tg_tensor *g = tg_test_rand(2, -1, 1, TG_SHAPE(N, E));
    tg_tape_backward_with(tape, y, g->data);
    tg_real *want = calloc((size_t)(V * E), sizeof *want);
    for (int64_t i = 0; i < N; i++) {
        assert_memory_equal(y->data + i * E, W->data + ids->data[i] * E, (size_t)E * sizeof *want);
        if (ids->data[i] == V - 3) continue;
        for (int64_t e = 0; e < E; e++) want[ids->data[i] * E + e] += g->data[i * E + e];
    }
    assert_memory_equal(W->grad, want, (size_t)(V * E) * sizeof *want); /* same order: exact */
    free(want);
    tg_tape_free(tape);
    tg_index_free(ids);
    tg_tensor_free(W), tg_tensor_free(g);
}

static void test_embedding_errors(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *W = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(5, 4)), "emb.weight");
    tg_index *ids = tg_index_from_array(TG_SHAPE(2, 3), (const int32_t[]){0, 1, 2, 3, 5, 4});
    TG_EXPECT_FAIL(tg_embedding(tape, W, ids, TG_NO_PADDING), "tg_embedding", "id 5",
                   "position [1, 1]", "[0, 5)", "(5, 4) 'emb.weight'", "(2, 3)");
    ids->data[4] = -1;
    TG_EXPECT_FAIL(tg_embedding(tape, W, ids, TG_NO_PADDING), "tg_embedding", "id -1",
                   "position [1, 1]");
    ids->data[4] = 4;
    TG_EXPECT_FAIL(tg_embedding(tape, W, ids, 5), "tg_embedding", "padding_idx 5",
                   "(5, 4) 'emb.weight'");
    TG_EXPECT_FAIL(tg_embedding(tape, W, ids, -6), "tg_embedding", "padding_idx -6");
    tg_tensor *v = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(5)), "v");
    TG_EXPECT_FAIL(tg_embedding(tape, v, ids, TG_NO_PADDING), "tg_embedding", "(5,) 'v'", "2-D");
    assert_int_equal(tg_tape_node_count(tape), 0);
    tg_index_free(ids);
    tg_tape_free(tape);
    tg_tensor_free(W), tg_tensor_free(v);
}

typedef struct {
    const tg_index *ids;
    int64_t pad;
} emb_ctx;

static tg_tensor *fn_embedding(tg_tape *t, tg_tensor *const *in, void *ctx) {
    const emb_ctx *c = ctx;
    return tg_embedding(t, in[0], c->ids, c->pad);
}

/* The weight used twice: out = concat(emb(W, ids), W[0:2] flattened) */
static tg_tensor *fn_embedding_twice(tg_tape *t, tg_tensor *const *in, void *ctx) {
    const emb_ctx *c = ctx;
    tg_tensor *e = tg_reshape(t, tg_embedding(t, in[0], c->ids, c->pad), TG_SHAPE(-1));
    tg_tensor *w = tg_reshape(t, tg_slice(t, in[0], 0, 0, 2), TG_SHAPE(-1));
    return tg_concat(t, (tg_tensor *[]){e, w}, 2, 0);
}

/* With a padding index the output does depend on the padding row but its gradient is 0 by
 * definition (PyTorch's too), so the padding row comes from a tensor that needs no grad:
 * W = concat(rows before it, the padding row, rows after it). */
static tg_tensor *fn_embedding_padded(tg_tape *t, tg_tensor *const *in, void *ctx) {
    const emb_ctx *c = ctx;
    return tg_embedding(t, tg_concat(t, in, 3, 0), c->ids, c->pad);
}

static void test_embedding_gradcheck(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_tensor *W = tg_tensor_requires_grad(tg_test_rand(3, -1, 1, TG_SHAPE(6, 3)), true);
    tg_index *ids = tg_index_from_array(TG_SHAPE(2, 4), (const int32_t[]){1, 4, 1, 0, 5, 5, 4, 1});
    tg_test_gradcheck(NULL, fn_embedding, &(emb_ctx){ids, TG_NO_PADDING}, &W, 1); /* repeated ids */
    tg_tensor *top = tg_tensor_requires_grad(tg_test_rand(4, -1, 1, TG_SHAPE(4, 3)), true);
    tg_tensor *pad = tg_test_rand(5, -1, 1, TG_SHAPE(1, 3));
    tg_tensor *bot = tg_tensor_requires_grad(tg_test_rand(6, -1, 1, TG_SHAPE(1, 3)), true);
    tg_tensor *none = tg_tensor_zeros(TG_SHAPE(0, 3));
    tg_test_gradcheck(NULL, fn_embedding_padded, &(emb_ctx){ids, 4}, (tg_tensor *[]){top, pad, bot},
                      3);
    tg_tensor *top5 = tg_tensor_requires_grad(tg_test_rand(7, -1, 1, TG_SHAPE(5, 3)), true);
    tg_test_gradcheck(NULL, fn_embedding_padded, &(emb_ctx){ids, -1},
                      (tg_tensor *[]){top5, pad, none}, 3);
    tg_tensor *rest = tg_tensor_requires_grad(tg_test_rand(8, -1, 1, TG_SHAPE(5, 3)), true);
    tg_test_gradcheck(NULL, fn_embedding_padded, &(emb_ctx){ids, 0},
                      (tg_tensor *[]){none, pad, rest}, 3);
    tg_tensor_free(top), tg_tensor_free(pad), tg_tensor_free(bot), tg_tensor_free(none);
    tg_tensor_free(top5), tg_tensor_free(rest);
    tg_test_gradcheck(NULL, fn_embedding_twice, &(emb_ctx){ids, TG_NO_PADDING}, &W, 1);
    /* the padding row really gets nothing */
    tg_tape *tape = tg_tape_new();
    tg_tensor *y = tg_embedding(tape, W, ids, -1);
    tg_real *seed = tg_xmalloc((size_t)y->numel * sizeof *seed);
    for (int64_t i = 0; i < y->numel; i++) seed[i] = 1;
    tg_tensor_zero_grad(W);
    tg_tape_backward_with(tape, y, seed);
    for (int e = 0; e < 3; e++) {
        assert_true(W->grad[5 * 3 + e] == 0);
        assert_true(W->grad[1 * 3 + e] == 3);
    }
    free(seed);
    tg_tape_free(tape);
    tg_index_free(ids);
    tg_tensor_free(W);
}

/* ---- PyTorch parity ---- */

/* op cases store the weight as in.weight, module cases as param.weight */
static void embedding_parity(const char *case_name, const char *w_name, int64_t pad) {
    char key[64];
    tg_fixture *fx = tg_fixture_load(case_name);
    tg_tensor *W = tg_tensor_requires_grad(tg_fixture_tensor(fx, w_name), true);
    tg_index *ids = tg_fixture_index(fx, "in.ids");
    tg_tape *tape = tg_tape_new();
    tg_tensor *y = tg_embedding(tape, W, ids, pad);
    tg_fixture_assert_close(fx, "out", y->data, y->shape, y->ndim, 0, 0); /* a copy: exact */
    tg_tensor *g = tg_fixture_tensor(fx, "gout");
    tg_tape_backward_with(tape, y, g->data);
    snprintf(key, sizeof key, "grad.%s", w_name + (strncmp(w_name, "in.", 3) ? 0 : 3));
    tg_fixture_assert_close(fx, key, W->grad, W->shape, W->ndim, 1e-6, 1e-5);
    tg_tensor_free(g);
    tg_tape_free(tape);
    tg_index_free(ids);
    tg_tensor_free(W);
    tg_fixture_free(fx);
}

static void test_embedding_parity(void **state) {
    (void)state;
    embedding_parity("op_embedding", "in.weight", TG_NO_PADDING);
    embedding_parity("op_embedding_pad0", "in.weight", 0);
    embedding_parity("op_embedding_padneg", "in.weight", -1);
    embedding_parity("mod_embedding_pad1", "param.weight", 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedding_values), cmocka_unit_test(test_embedding_large),
        cmocka_unit_test(test_embedding_errors), cmocka_unit_test(test_embedding_gradcheck),
        cmocka_unit_test(test_embedding_parity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
