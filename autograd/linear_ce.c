/* The output layer of a language model as one op: Linear then cross entropy,
 *
 *     loss = F.cross_entropy(F.linear(x, W, b).view(-1, V), y.view(-1), ignore_index, reduction)
 *
 * without ever holding the N × V logits (N = the rows of x, V = the vocabulary). The rows
 * are taken in chunks of R; the chunk's logits Z = X_c·Wᵀ + b live in one R × V buffer.
 *
 * Forward, per chunk: Z by tg_gemm as tg_linear computes it, then each row's m = max_j z_j
 * and ls = log Σ_j exp(z_j − m) as tg_cross_entropy computes them (the same code:
 * loss_internal.h), so the loss has the same bits as the unfused pair's. Kept for backward:
 * m and ls per row (two numbers a row instead of V), and the targets.
 *
 * Backward, per chunk: Z again (the same GEMM: the same bits), then in place
 *     D = ∂ℓ/∂Z = g·(softmax(Z) − onehot(y)),   softmax_j = exp((z_j − m) − ls),
 * with g the row's upstream gradient (0 for ignored rows, 1/Σ v for mean), and
 *     dX_c += D·W,     dW += Dᵀ·X_c,     db += Σ_rows D.
 * dW and db gather the chunks in order; R depends only on V (never on the thread count),
 * so the result is the same at any thread count. Recomputing Z costs one GEMM of the three
 * the unfused backward has, about a third more arithmetic than Linear + cross entropy.
 * Memory: R·V reals for the chunk (the backward reuses the forward's buffer) and 2N for m
 * and ls, instead of 2·N·V (logits and their gradient): bench/bench_lm's 10,000-word model
 * peaks at 232 MB instead of 320. */
#include "autograd/loss_internal.h"
#include "tapegrad/kernels.h"
#include "tapegrad/ops.h"

#include <string.h>

/* The bytes of one chunk's logits: a few MB keeps the GEMMs big (R = 104 rows for a
 * 10,000-word vocabulary in float32) and the memory a small fraction of the model's; 2, 4
 * and 8 MB ran the gru_lm step in the same time. */
#define CHUNK_BYTES ((int64_t)4 << 20)
/* Elements of a chunk below which its row loop stays on one thread. */
#define PARALLEL_MIN 16384

typedef struct lce_saved {
    int64_t N, V, in, R;
    int32_t *y;
    tg_real *m, *ls;
    tg_real *Z; /* the chunk's logits: the forward's buffer, which the backward uses again */
    double denom; /* rows not ignored */
    int64_t ignore;
    tg_reduction red;
} lce_saved;

/* Z (rows r0..r0+n) = X·Wᵀ + b, as tg_linear computes it (rows start as the bias). */
static void chunk_logits(const lce_saved *S, const tg_tensor *x, const tg_tensor *W,
                         const tg_tensor *b, int64_t r0, int64_t n, tg_real *Z) {
    const int64_t V = S->V, in = S->in;
    if (b)
        for (int64_t r = 0; r < n; r++) memcpy(Z + r * V, b->data, (size_t)V * sizeof(tg_real));
    tg_gemm(false, true, n, V, in, 1, x->data + r0 * in, in, W->data, in, b ? 1 : 0, Z, V);
}

typedef struct chunk_ctx {
    const lce_saved *S;
    const tg_tensor *out;
    tg_real *Z;
    int64_t r0;
    double *ell;
} chunk_ctx;

static void forward_rows(int64_t begin, int64_t end, void *p) {
    const chunk_ctx *c = p;
    const lce_saved *S = c->S;
    for (int64_t i = begin; i < end; i++) {
        const int64_t k = c->r0 + i, yk = S->y[k];
        const tg_real *z = c->Z + i * S->V;
        tg_real m;
        double ls;
        ce_sample_lse(z, S->V, 1, &m, &ls);
        S->m[k] = m, S->ls[k] = (tg_real)ls;
        c->ell[k] = yk == S->ignore ? 0 : ((double)m + ls) - (double)z[yk];
    }
}

/* D = g·(softmax(Z) − onehot(y)) in place of Z, row by row. */
static void backward_rows(int64_t begin, int64_t end, void *p) {
    const chunk_ctx *c = p;
    const lce_saved *S = c->S;
    const int64_t V = S->V;
    for (int64_t i = begin; i < end; i++) {
        const int64_t k = c->r0 + i, yk = S->y[k];
        tg_real *restrict z = c->Z + i * V;
        if (yk == S->ignore) {
            memset(z, 0, (size_t)V * sizeof(tg_real));
            continue;
        }
        const tg_real g = upstream(c->out, S->red, S->denom, k), m = S->m[k], ls = S->ls[k];
        for (int64_t j = 0; j < V; j++) z[j] = g * tg_vexp((z[j] - m) - ls);
        z[yk] -= g;
    }
}

typedef struct bias_ctx {
    const tg_real *D;
    tg_real *db;
    int64_t n, V;
} bias_ctx;

/* db[j] += Σ_rows D[r][j], rows in order, for the columns [begin, end). */
static void bias_columns(int64_t begin, int64_t end, void *p) {
    const bias_ctx *c = p;
    for (int64_t r = 0; r < c->n; r++) {
        const tg_real *restrict d = c->D + r * c->V;
        for (int64_t j = begin; j < end; j++) c->db[j] += d[j];
    }
}

static void linear_ce_backward(tg_tape *tape, tg_node *node) {
    const tg_tensor *x = node->in[0], *W = node->in[1], *b = node->in[2], *out = node->out[0];
    if (!out->grad) return;
    const lce_saved *S = node->saved;
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    tg_real *dW = tg_tape_grad(tape, node->in[1]);
    tg_real *db = tg_tape_grad(tape, node->in[2]);
    const int64_t V = S->V, in = S->in;
    tg_real *Z = S->Z;
    for (int64_t r0 = 0; r0 < S->N; r0 += S->R) {
        const int64_t n = S->N - r0 < S->R ? S->N - r0 : S->R;
        chunk_logits(S, x, W, b, r0, n, Z);
        chunk_ctx c = {.S = S, .out = out, .Z = Z, .r0 = r0};
        tg_parallel_for(n, n * V >= PARALLEL_MIN ? 1 : n, backward_rows, &c);
        if (dx) tg_gemm(false, false, n, in, V, 1, Z, V, W->data, in, 1, dx + r0 * in, in);
        if (dW) tg_gemm(true, false, V, in, n, 1, Z, V, x->data + r0 * in, in, 1, dW, in);
        if (db) {
            bias_ctx bc = {.D = Z, .db = db, .n = n, .V = V};
            tg_parallel_for(V, n * V >= PARALLEL_MIN ? 64 : V, bias_columns, &bc);
        }
    }
}

static void check_args(const tg_tensor *x, const tg_tensor *W, const tg_tensor *b,
                       const tg_index *y, const tg_loss_options *o) {
    static const char *op = "tg_linear_cross_entropy";
    char xd[160], wd[160], bd[160], yd[96];
    check_reduction(op, o->reduction);
    if (o->weight || o->pos_weight || o->label_smoothing != 0)
        tg_fail("%s: class weights, pos_weight and label_smoothing are not supported (use "
                "tg_linear and tg_cross_entropy_ex)",
                op);
    if (W->ndim != 2 || W->shape[0] < 1)
        tg_fail("%s: weight %s must be 2-D (out_features >= 1, in_features)", op,
                tg_tensor_describe(W, wd, sizeof wd));
    const int64_t V = W->shape[0], in = W->shape[1];
    if (x->ndim < 1 || x->shape[x->ndim - 1] != in)
        tg_fail("%s: input %s does not end in in_features = %lld of weight %s", op,
                tg_tensor_describe(x, xd, sizeof xd), (long long)in,
                tg_tensor_describe(W, wd, sizeof wd));
    if (b && (b->ndim != 1 || b->shape[0] != V))
        tg_fail("%s: bias %s must have shape (%lld,) = (out_features,) of weight %s", op,
                tg_tensor_describe(b, bd, sizeof bd), (long long)V,
                tg_tensor_describe(W, wd, sizeof wd));
    int64_t N = 1; /* the rows: x's leading dims */
    for (int i = 0; i < x->ndim - 1; i++) N *= x->shape[i];
    if (y->numel != N)
        tg_fail("%s: targets of shape %s do not fit input %s: expected one target per row (%lld)",
                op, tg_shape_format(y->ndim, y->shape, yd, sizeof yd),
                tg_tensor_describe(x, xd, sizeof xd), (long long)N);
    for (int64_t k = 0; k < N; k++) {
        const int64_t c = y->data[k];
        if (c != o->ignore_index && (c < 0 || c >= V))
            tg_fail("%s: target %lld at row %lld is out of range: expected a class in [0, %lld) "
                    "or ignore_index %lld",
                    op, (long long)c, (long long)k, (long long)V, (long long)o->ignore_index);
    }
}

tg_tensor *tg_linear_cross_entropy_chunked(tg_tape *t, tg_tensor *x, tg_tensor *weight,
                                           tg_tensor *bias, const tg_index *targets,
                                           const tg_loss_options *opts, int64_t chunk_rows) {
    TG_CHECK_OP(t, x, weight);
    TG_CHECK_INPUT_OPT(t, bias);
    TG_CHECK_INDEX_INPUT(t, targets);
    const tg_loss_options o = opts ? *opts : tg_loss_defaults();
    check_args(x, weight, bias, targets, &o);

    lce_saved *S = tg_tape_alloc(t, sizeof *S);
    S->V = weight->shape[0], S->in = weight->shape[1], S->N = targets->numel;
    if (chunk_rows <= 0) {
        chunk_rows = CHUNK_BYTES / (S->V * (int64_t)sizeof(tg_real));
        if (chunk_rows < 16) chunk_rows = 16;
    }
    S->R = chunk_rows < S->N ? chunk_rows : S->N > 0 ? S->N : 1;
    S->y = tg_tape_alloc(t, (size_t)(S->N + 1) * sizeof(int32_t));
    memcpy(S->y, targets->data, (size_t)S->N * sizeof(int32_t));
    S->m = tg_tape_alloc(t, (size_t)(S->N + 1) * sizeof(tg_real));
    S->ls = tg_tape_alloc(t, (size_t)(S->N + 1) * sizeof(tg_real));
    S->ignore = o.ignore_index, S->red = o.reduction, S->denom = 0;
    for (int64_t k = 0; k < S->N; k++) S->denom += S->y[k] != S->ignore;

    double *ell = tg_tape_alloc(t, (size_t)(S->N + 1) * sizeof(double));
    tg_real *Z = S->Z = tg_tape_alloc(t, (size_t)(S->R * S->V + 1) * sizeof(tg_real));
    for (int64_t r0 = 0; r0 < S->N; r0 += S->R) {
        const int64_t n = S->N - r0 < S->R ? S->N - r0 : S->R;
        chunk_logits(S, x, weight, bias, r0, n, Z);
        chunk_ctx c = {.S = S, .Z = Z, .r0 = r0, .ell = ell};
        tg_parallel_for(n, n * S->V >= PARALLEL_MIN ? 1 : n, forward_rows, &c);
    }
    tg_tensor *y = reduce_output(t, ell, S->N, S->red, S->denom, targets->ndim, targets->shape);
    tg_node *node = tg_tape_record(t, "linear_cross_entropy", linear_ce_backward, 3,
                                   (tg_tensor *[]){x, weight, bias}, 1, (tg_tensor *[]){y});
    if (node) node->saved = S;
    return y;
}

tg_tensor *tg_linear_cross_entropy(tg_tape *t, tg_tensor *x, tg_tensor *weight, tg_tensor *bias,
                                   const tg_index *targets, const tg_loss_options *opts) {
    TG_CHECK_OP(t, x, weight);
    TG_CHECK_INPUT_OPT(t, bias);
    TG_CHECK_INDEX_INPUT(t, targets);
    return tg_linear_cross_entropy_chunked(t, x, weight, bias, targets, opts, 0);
}
