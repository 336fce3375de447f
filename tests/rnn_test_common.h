/* What the recurrent suites (test_rnn.c, test_lstm_proj.c) share: outputs flattened for one
 * seed or one gradcheck, a module as a gradcheck function, and a module's run whose output
 * and every gradient land in one array (to hold fused == composite). Functions are static
 * inline: each suite takes what it uses. */
#ifndef TAPEGRAD_TESTS_RNN_TEST_COMMON_H
#define TAPEGRAD_TESTS_RNN_TEST_COMMON_H

#include "harness.h"

#include <stdlib.h>
#include <string.h>

#include <tapegrad/rnn.h>

/* Several outputs flattened into one vector, so that one backward (one seed) or one
 * gradcheck covers them all. NULL entries are skipped. */
static inline tg_tensor *flat_cat(tg_tape *t, tg_tensor *const *xs, int n) {
    tg_tensor *flat[8];
    int k = 0;
    for (int i = 0; i < n; i++)
        if (xs[i]) flat[k++] = tg_reshape(t, xs[i], 1, (int64_t[]){-1});
    return k == 1 ? flat[0] : tg_concat(t, flat, k, 0);
}

static inline tg_tensor *result_flat(tg_tape *t, tg_rnn_result r) {
    return flat_cat(t, (tg_tensor *[]){r.output, r.h_n, r.c_n}, 3);
}

/* A module's forward as a gradcheck function. */
typedef struct mod_ctx {
    tg_recurrent *m;
    tg_tensor *x, *h0, *c0;
} mod_ctx;

static inline tg_tensor *mod_fn(tg_tape *t, tg_tensor *const *in, void *vctx) {
    (void)in; /* the same tensors, reached through the context */
    const mod_ctx *c = vctx;
    return result_flat(t, tg_recurrent_forward(c->m, t, c->x, c->h0, c->c0));
}

typedef struct mod_config {
    int64_t layers;
    bool bidir, batch_first, h0, bias;
} mod_config;

/* fused == composite: the tolerances of outputs and every gradient */
#ifdef TG_DOUBLE
#define FC_ATOL 1e-10
#define FC_RTOL 0
#else
#define FC_ATOL 1e-5
#define FC_RTOL 1e-4
#endif

static inline int64_t append(tg_real *buf, int64_t at, const tg_tensor *t, const tg_real *vals) {
    if (!t) return at;
    for (int64_t i = 0; i < t->numel; i++) buf[at + i] = vals ? vals[i] : 0;
    return at + t->numel;
}

/* Outputs, then the gradients of x, h0, c0 and every parameter, in one array. */
static inline tg_real *collect(tg_tensor *flat, tg_tensor *const *leaves, int n, int64_t *len) {
    int64_t total = flat->numel;
    for (int i = 0; i < n; i++) total += leaves[i] ? leaves[i]->numel : 0;
    tg_real *buf = malloc((size_t)total * sizeof *buf);
    int64_t at = append(buf, 0, flat, flat->data);
    for (int i = 0; i < n; i++) at = append(buf, at, leaves[i], leaves[i] ? leaves[i]->grad : NULL);
    *len = total;
    return buf;
}

/* The leaves of a run: x, h, c (NULL where absent) and every parameter, gradients zeroed. */
enum { MAX_LEAVES = 40 };
static inline int run_leaves(tg_tensor **leaves, tg_tensor *x, tg_tensor *h, tg_tensor *c,
                             const tg_params *params) {
    int n = 0;
    leaves[n++] = x, leaves[n++] = h, leaves[n++] = c;
    for (size_t p = 0; p < params->count; p++) {
        assert_true(n < MAX_LEAVES);
        leaves[n++] = params->tensors[p];
    }
    for (int i = 0; i < n; i++)
        if (leaves[i]) tg_tensor_zero_grad(leaves[i]);
    return n;
}

/* Backward from `flat` with a seeded random upstream gradient, then the output and every
 * leaf's gradient in one buffer (collect); frees the tape. */
static inline tg_real *backward_collect(tg_tape *tape, tg_tensor *flat, tg_tensor *const *leaves,
                                        int n, uint64_t seed, int64_t *len) {
    tg_tensor *g = tg_test_rand(seed, -1, 1, 1, &flat->numel);
    tg_tape_backward_with(tape, flat, g->data);
    tg_real *buf = collect(flat, leaves, n, len);
    tg_tensor_free(g);
    tg_tape_free(tape);
    return buf;
}

/* A module's run (exec fused or composite): the output, then every gradient (collect). */
static inline tg_real *module_run(tg_recurrent *m, tg_rnn_exec exec, tg_tensor *x, tg_tensor *h0,
                                  tg_tensor *c0, uint64_t seed, int64_t *len) {
    tg_tensor *leaves[MAX_LEAVES];
    const int n = run_leaves(leaves, x, h0, c0, tg_module_params(&m->module));
    m->options.exec = exec;
    tg_tape *tape = tg_tape_new();
    tg_manual_seed(seed); /* dropout draws the same masks in both runs */
    tg_tensor *flat = result_flat(tape, tg_recurrent_forward(m, tape, x, h0, c0));
    return backward_collect(tape, flat, leaves, n, seed, len);
}

/* How many nodes of op `op` the tape holds. */
static inline size_t count_ops(const tg_tape *t, const char *op) {
    size_t n = 0;
    for (size_t i = 0; i < tg_tape_node_count(t); i++) n += strcmp(tg_tape_node(t, i)->op, op) == 0;
    return n;
}

#endif
