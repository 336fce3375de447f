/* Fusions of the transformer layers' op chains, one node each, keeping only what the
 * backward needs:
 *   linear_relu_dropout:  y = dropout(relu(x·Wᵀ + b))   (the feed-forward's first half)
 *   dropout_add:          y = x + dropout(r)             (a sublayer's residual)
 * Both give the bits of the chain of single ops (the same arithmetic in the same order, and
 * the same draws from the generator: one dropout key per call, drawn at the dropout), and
 * both recompute the dropout mask from its key in the backward (tensor/vmath.h). */
#include "tensor/vmath.h"

#include "tapegrad/kernels.h"
#include "tapegrad/ops.h"

#include <string.h>

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

/* ---- linear + relu + dropout ----
 * h = x·Wᵀ + b,  r = relu(h),  y = r ⊙ m  (m_i = 1/(1-p) or 0; m = 1 without dropout).
 * Backward: dr = dy ⊙ m, dh = dr where r > 0 (else 0), then the linear's
 *   dx += dh·W,  dW += dhᵀ·x,  db += Σ_rows dh.
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
    const tg_tensor *x = node->in[0], *W = node->in[1], *y = node->out[0];
    const int64_t out = W->shape[0], in = W->shape[1], R = out ? y->numel / out : 0;
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    tg_real *dW = tg_tape_grad(tape, node->in[1]);
    tg_real *db = tg_tape_grad(tape, node->in[2]);
    if (y->numel == 0 || (!dx && !dW && !db)) return;
    lrd_job j = {.key = key_load(node), .drop = node->iarg[3], .y = y->data, .g = y->grad};
    j.dh = tg_tape_alloc(tape, (size_t)y->numel * sizeof(tg_real)); /* scratch */
    tg_parallel_for(y->numel, CHUNK, lrd_backward_range, &j);
    if (dx) tg_gemm(false, false, R, in, out, 1, j.dh, out, W->data, in, 1, dx, in);
    if (dW) tg_gemm(true, false, out, in, R, 1, j.dh, out, x->data, in, 1, dW, in);
    if (db)
        for (int64_t r = 0; r < R; r++) {
            const tg_real *restrict g = j.dh + r * out;
            for (int64_t c = 0; c < out; c++) db[c] += g[c];
        }
}

tg_tensor *tg_linear_relu_dropout(tg_tape *t, tg_tensor *x, tg_tensor *weight, tg_tensor *bias,
                                  tg_real p, bool training, tg_rng *rng) {
    TG_CHECK_OP(t, x, weight);
    TG_CHECK_INPUT_OPT(t, bias);
    char xd[160], wd[160], bd[160];
    const bool w_ok = weight->ndim == 2;
    const int64_t out = w_ok ? weight->shape[0] : -1, in = w_ok ? weight->shape[1] : -1;
    if (!w_ok || x->ndim < 1 || x->shape[x->ndim - 1] != in ||
        (bias && (bias->ndim != 1 || bias->shape[0] != out)))
        tg_fail("tg_linear_relu_dropout: weight %s must be (out_features, in_features), input "
                "%s end in in_features and bias %s be (out_features,)",
                tg_tensor_describe(weight, wd, sizeof wd), tg_tensor_describe(x, xd, sizeof xd),
                bias ? tg_tensor_describe(bias, bd, sizeof bd) : "NULL");
    if (!(p >= 0 && p <= 1))
        tg_fail("tg_linear_relu_dropout: p must be in [0, 1], got %g", (double)p);
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, x->shape, (size_t)x->ndim * sizeof *shape);
    shape[x->ndim - 1] = out;
    tg_tensor *y = tg_tape_tensor(t, x->ndim, shape);
    const int64_t R = out ? y->numel / out : 0;
    if (bias) /* rows start as the bias and the GEMM adds to them, as tg_linear */
        for (int64_t r = 0; r < R; r++)
            memcpy(y->data + r * out, bias->data, (size_t)out * sizeof(tg_real));
    tg_gemm(false, true, R, out, in, 1, x->data, in, weight->data, in, bias ? 1 : 0, y->data, out);
    lrd_job j = {.drop = training && p > 0, .y = y->data};
    if (j.drop) j.key = tg_dropout_key_draw(rng, (double)p);
    tg_parallel_for(y->numel, CHUNK, lrd_forward_range, &j);
    tg_node *node = tg_tape_record(t, "linear_relu_dropout", lrd_backward, 3,
                                   (tg_tensor *[]){x, weight, bias}, 1, (tg_tensor *[]){y});
    if (node) key_save(node, &j.key, j.drop, p);
    return y;
}

/* ---- residual: y = x + r ⊙ m ----
 * Backward: dx += dy,  dr += dy ⊙ m. The dropped r ⊙ m is never stored. */
typedef struct dadd_job {
    tg_dropout_key key;
    bool drop;
    const tg_real *x, *r;
    tg_real *y;
} dadd_job;

TG_VEC_KERNEL static void dadd_forward_range(int64_t i0, int64_t i1, void *ctx) {
    const dadd_job *j = ctx;
    const tg_real *restrict x = j->x, *restrict r = j->r;
    tg_real *restrict y = j->y;
    const tg_dropout_key key = j->key;
    if (j->drop)
        for (int64_t p0 = i0; p0 < i1;) {
            const int64_t end = tg_dropout_piece_end(p0, i1);
            const uint32_t k1 = tg_dropout_piece_k1(&key, p0);
            for (int64_t i = p0; i < end; i++)
                y[i] = x[i] + r[i] * tg_dropout_factor_lo(&key, k1, (uint32_t)i);
            p0 = end;
        }
    else
        for (int64_t i = i0; i < i1; i++) y[i] = x[i] + r[i];
}

/* dy (in r) accumulated into y: as it is (dx), or dy ⊙ m (dr, with dropout) */
TG_VEC_KERNEL static void dadd_backward_range(int64_t i0, int64_t i1, void *ctx) {
    const dadd_job *j = ctx;
    if (j->drop) {
        tg_dropout_apply(&j->key, j->r, j->y, i0, i1, true);
        return;
    }
    const tg_real *restrict g = j->r;
    tg_real *restrict d = j->y;
    for (int64_t i = i0; i < i1; i++) d[i] += g[i];
}

static void dadd_backward(tg_tape *tape, tg_node *node) {
    const tg_tensor *y = node->out[0];
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    tg_real *dr = tg_tape_grad(tape, node->in[1]);
    dadd_job j = {.key = key_load(node), .r = y->grad};
    if (dx)
        tg_parallel_for(y->numel, CHUNK, dadd_backward_range, &(dadd_job){.r = y->grad, .y = dx});
    if (dr) {
        j.drop = node->iarg[3], j.y = dr;
        tg_parallel_for(y->numel, CHUNK, dadd_backward_range, &j);
    }
}

tg_tensor *tg_dropout_add(tg_tape *t, tg_tensor *x, tg_tensor *r, tg_real p, bool training,
                          tg_rng *rng) {
    TG_CHECK_OP(t, x, r);
    bool same = x->ndim == r->ndim;
    for (int i = 0; same && i < x->ndim; i++) same = x->shape[i] == r->shape[i];
    if (!same) {
        char xd[160], rd[160];
        tg_fail("tg_dropout_add: x %s and r %s must have the same shape",
                tg_tensor_describe(x, xd, sizeof xd), tg_tensor_describe(r, rd, sizeof rd));
    }
    if (!(p >= 0 && p <= 1)) tg_fail("tg_dropout_add: p must be in [0, 1], got %g", (double)p);
    dadd_job j = {.drop = training && p > 0, .x = x->data, .r = r->data};
    if (j.drop) j.key = tg_dropout_key_draw(rng, (double)p);
    tg_tensor *y = tg_tape_tensor_like(t, x);
    j.y = y->data;
    tg_parallel_for(y->numel, CHUNK, dadd_forward_range, &j);
    tg_node *node = tg_tape_record(t, "dropout_add", dadd_backward, 2, (tg_tensor *[]){x, r}, 1,
                                   (tg_tensor *[]){y});
    if (node) key_save(node, &j.key, j.drop, p);
    return y;
}
