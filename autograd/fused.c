/* Fusions of the transformer layers' op chains, one node each, keeping only what the
 * backward needs:
 *   linear_relu_dropout:  y = dropout(relu(x·Wᵀ + b))       (the feed-forward's first half)
 *   linear_dropout_add:   y = x + dropout(a·Wᵀ + b)         (a sublayer's last linear and
 *                                                           its residual)
 * Both give the bits of the chain of single ops (the same arithmetic in the same order, and
 * the same draws from the generator: one dropout key per call, drawn at the dropout), and
 * both recompute the dropout mask from its key in the backward (tensor/vmath.h). */
#include "autograd/linear_internal.h"
#include "tensor/vmath.h"

#include "tapegrad/kernels.h"
#include "tapegrad/ops.h"

#define CHUNK ((int64_t)1 << 14)

/* The dropout key of a node: k0, k1, threshold in iarg[0..2], iarg[3] = 1 when dropout is
 * on, p in farg[0] (the scale is recomputed from it as tg_dropout_key_draw does). */
static void key_save(tg_node *node, const tg_dropout_key *key, bool drop, tg_real p) {
    node->iarg[0] = key->k0, node->iarg[1] = key->k1, node->iarg[2] = key->threshold;
    node->iarg[3] = drop;
    node->farg[0] = (double)p;
}
static tg_dropout_key key_load(const tg_node *node) {
    const double keep = 1.0 - node->farg[0];
    return (tg_dropout_key){(uint32_t)node->iarg[0], (uint32_t)node->iarg[1],
                            (int32_t)node->iarg[2], keep == 0 ? 0 : (tg_real)1 / (tg_real)keep};
}

/* The linear part both share (h = x·Wᵀ + b written into y, and its gradients) is tg_linear's:
 * autograd/linear_internal.h. */
static void check_fused_args(const char *op, const tg_tensor *x, const tg_tensor *weight,
                             const tg_tensor *bias, tg_real p) {
    linear_check(op, x, weight, bias);
    if (!(p >= 0 && p <= 1)) tg_fail("%s: p must be in [0, 1], got %g", op, (double)p);
}

/* Some input from in[first] on needs a gradient. */
static bool wants_grad(const tg_node *node, int first) {
    for (int i = first; i < node->n_in; i++)
        if (node->in[i] && node->in[i]->requires_grad) return true;
    return false;
}

/* ---- linear + relu + dropout ----
 * h = x·Wᵀ + b,  r = relu(h),  y = r ⊙ m  (m_i = 1/(1-p) or 0; m = 1 without dropout).
 * Backward: dr = dy ⊙ m, dh = dr where r > 0 (else 0), then the linear's gradients.
 * Only y is kept: y_i > 0 exactly when h_i > 0 and m_i > 0, and where m_i = 0 the chain's
 * dh_i = dy_i·0 is a zero too, so dh_i = (y_i > 0 ? dy_i·m_i : 0) with m recomputed. h and
 * r are never stored: the GEMM writes h into y, which is then overwritten in place. */
typedef struct lrd_job {
    tg_dropout_key key;
    bool drop;
    tg_real *y;       /* forward: h in, y out */
    const tg_real *g; /* backward: dy in, y read, dh out */
    tg_real *dh;
} lrd_job;

TG_VEC_KERNEL static void lrd_forward_range(int64_t i0, int64_t i1, void *ctx) {
    const lrd_job *j = ctx;
    tg_real *restrict y = j->y;
    for (int64_t i = i0; i < i1; i++) y[i] = y[i] < 0 ? (tg_real)0 : y[i]; /* tg_relu's */
    const tg_dropout_key key = j->key;
    for (int64_t p0 = i0; j->drop && p0 < i1;) {
        const int64_t end = tg_dropout_piece_end(p0, i1);
        const uint32_t k1 = tg_dropout_piece_k1(&key, p0);
        for (int64_t i = p0; i < end; i++)
            y[i] = y[i] * tg_dropout_factor_lo(&key, k1, (uint32_t)i);
        p0 = end;
    }
}

TG_VEC_KERNEL static void lrd_backward_range(int64_t i0, int64_t i1, void *ctx) {
    const lrd_job *j = ctx;
    const tg_real *restrict y = j->y, *restrict g = j->g;
    tg_real *restrict dh = j->dh;
    const tg_dropout_key key = j->key;
    if (j->drop)
        for (int64_t p0 = i0; p0 < i1;) {
            const int64_t end = tg_dropout_piece_end(p0, i1);
            const uint32_t k1 = tg_dropout_piece_k1(&key, p0);
            for (int64_t i = p0; i < end; i++)
                dh[i] = y[i] > 0 ? g[i] * tg_dropout_factor_lo(&key, k1, (uint32_t)i) : (tg_real)0;
            p0 = end;
        }
    else
        for (int64_t i = i0; i < i1; i++) dh[i] = y[i] > 0 ? g[i] : (tg_real)0;
}

static void lrd_backward(tg_tape *tape, tg_node *node) {
    const tg_tensor *y = node->out[0];
    if (y->numel == 0 || !wants_grad(node, 0)) return;
    lrd_job j = {.key = key_load(node), .drop = node->iarg[3], .y = y->data, .g = y->grad};
    j.dh = tg_tape_alloc(tape, (size_t)y->numel * sizeof(tg_real)); /* scratch */
    tg_parallel_for(y->numel, CHUNK, lrd_backward_range, &j);
    linear_grads(tape, node->in[0], node->in[1], node->in[2], j.dh);
}

tg_tensor *tg_linear_relu_dropout(tg_tape *t, tg_tensor *x, tg_tensor *weight, tg_tensor *bias,
                                  tg_real p, bool training, tg_rng *rng) {
    TG_CHECK_OP(t, x, weight);
    TG_CHECK_INPUT_OPT(t, bias);
    check_fused_args("tg_linear_relu_dropout", x, weight, bias, p);
    tg_tensor *y = linear_output(t, x, weight, bias);
    lrd_job j = {.drop = training && p > 0, .y = y->data};
    if (j.drop) j.key = tg_dropout_key_draw(rng, (double)p);
    tg_parallel_for(y->numel, CHUNK, lrd_forward_range, &j);
    tg_node *node = tg_tape_record(t, "linear_relu_dropout", lrd_backward, 3,
                                   (tg_tensor *[]){x, weight, bias}, 1, (tg_tensor *[]){y});
    if (node) key_save(node, &j.key, j.drop, p);
    return y;
}

/* ---- a sublayer's last linear with its residual: y = x + (a·Wᵀ + b) ⊙ m ----
 * Backward: dx += dy,  dh = dy ⊙ m, then the linear's gradients (of a, W, b) from dh.
 * Neither h nor h ⊙ m is stored: the GEMM writes h into y, then y_i = x_i + h_i·m_i in
 * place (tg_add(x, tg_dropout(h))'s arithmetic). */
typedef struct lda_job {
    tg_dropout_key key;
    bool drop;
    const tg_real *x, *g; /* forward: x; backward: dy */
    tg_real *y, *dh;      /* forward: h in, y out; backward: dh out */
} lda_job;

TG_VEC_KERNEL static void lda_forward_range(int64_t i0, int64_t i1, void *ctx) {
    const lda_job *j = ctx;
    const tg_real *restrict x = j->x;
    tg_real *restrict y = j->y;
    const tg_dropout_key key = j->key;
    if (j->drop)
        for (int64_t p0 = i0; p0 < i1;) {
            const int64_t end = tg_dropout_piece_end(p0, i1);
            const uint32_t k1 = tg_dropout_piece_k1(&key, p0);
            for (int64_t i = p0; i < end; i++)
                y[i] = x[i] + y[i] * tg_dropout_factor_lo(&key, k1, (uint32_t)i);
            p0 = end;
        }
    else
        for (int64_t i = i0; i < i1; i++) y[i] = x[i] + y[i];
}

TG_VEC_KERNEL static void lda_dx_range(int64_t i0, int64_t i1, void *ctx) {
    const lda_job *j = ctx;
    const tg_real *restrict g = j->g;
    tg_real *restrict dx = j->y;
    for (int64_t i = i0; i < i1; i++) dx[i] += g[i];
}

TG_VEC_KERNEL static void lda_dh_range(int64_t i0, int64_t i1, void *ctx) {
    const lda_job *j = ctx;
    tg_dropout_apply(&j->key, j->g, j->dh, i0, i1, false);
}

static void lda_backward(tg_tape *tape, tg_node *node) {
    const tg_tensor *y = node->out[0];
    lda_job j = {.key = key_load(node), .drop = node->iarg[3], .g = y->grad};
    if ((j.y = tg_tape_grad(tape, node->in[0]))) tg_parallel_for(y->numel, CHUNK, lda_dx_range, &j);
    if (y->numel == 0 || !wants_grad(node, 1)) return;
    if (j.drop) {
        j.dh = tg_tape_alloc(tape, (size_t)y->numel * sizeof(tg_real)); /* scratch */
        tg_parallel_for(y->numel, CHUNK, lda_dh_range, &j);
    }
    linear_grads(tape, node->in[1], node->in[2], node->in[3], j.drop ? j.dh : j.g);
}

tg_tensor *tg_linear_dropout_add(tg_tape *t, tg_tensor *x, tg_tensor *a, tg_tensor *weight,
                                 tg_tensor *bias, tg_real p, bool training, tg_rng *rng) {
    TG_CHECK_OP(t, x, a, weight);
    TG_CHECK_INPUT_OPT(t, bias);
    check_fused_args("tg_linear_dropout_add", a, weight, bias, p);
    bool same = x->ndim == a->ndim && x->shape[x->ndim - 1] == weight->shape[0];
    for (int i = 0; same && i < x->ndim - 1; i++) same = x->shape[i] == a->shape[i];
    if (!same) {
        char xd[160], ad[160];
        tg_fail("tg_linear_dropout_add: x %s must have the shape of the linear's output (input "
                "%s, out_features %lld)",
                tg_tensor_describe(x, xd, sizeof xd), tg_tensor_describe(a, ad, sizeof ad),
                (long long)weight->shape[0]);
    }
    tg_tensor *y = linear_output(t, a, weight, bias);
    lda_job j = {.drop = training && p > 0, .x = x->data, .y = y->data};
    if (j.drop) j.key = tg_dropout_key_draw(rng, (double)p);
    tg_parallel_for(y->numel, CHUNK, lda_forward_range, &j);
    tg_node *node = tg_tape_record(t, "linear_dropout_add", lda_backward, 4,
                                   (tg_tensor *[]){x, a, weight, bias}, 1, (tg_tensor *[]){y});
    if (node) key_save(node, &j.key, j.drop, p);
    return y;
}
