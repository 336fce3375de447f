/* The output layer of a language model as one op: Linear then cross entropy,
 *
 *     loss = F.cross_entropy(F.linear(x, W, b).view(-1, V), y.view(-1), ignore_index, reduction)
 *
 * without ever holding the N × V logits (N = the rows of x, V = the vocabulary). The rows
 * are taken in chunks of R; the chunk's logits Z = X_c·Wᵀ + b live in one R × V buffer.
 *
 *   forward, per chunk                          backward, per chunk
 *   Z = X_c·Wᵀ + b          (tg_gemm)           D = ∂ℓ/∂Z = g·(softmax(Z) − onehot(y)) in Z
 *   m = max_j z_j, ls = log Σ_j exp(z_j − m)    dX_c += D·W
 *   ℓ = m + ls − z_y                            dW += Dᵀ·X_c,   db += Σ_rows D
 *
 * with softmax_j = exp(z_j − m)·(1/Σ_j exp(z_j − m)) and g the row's upstream gradient: 0 for
 * an ignored row, else ∂loss/∂ℓ times 1/Σ v for mean (v = 1 for the rows not ignored). Z is
 * computed by tg_linear's code and m, ls by the lanes of tg_cross_entropy's (loss_internal.h,
 * tensor/vmath.h), so the loss has the bits of the unfused pair; the exponentials of the sum
 * stay in Z for the softmax (one exp per logit). dW and db gather the chunks in order, and
 * R depends only on V and on whether the forward makes the gradient (CHUNK_BYTES_*), never
 * on the thread count: the gradients are the same at any thread count.
 *
 * The backward needs the chunk's Z, which the forward had and dropped. In a training step
 * the loss is a scalar and backward starts from it with ∂loss/∂loss = 1, so g is known in
 * the forward already. The forward therefore computes the backward column too, while Z is
 * in the buffer, into saved dX (N × in), dW (V × in) and db (V) for the inputs that require
 * grad (and only when the tape records: no-grad and inference forwards save nothing). The
 * backward then adds them to the inputs' gradients (hands dX over when x has no gradient
 * yet): no second Z = X_c·Wᵀ, a third of the op's arithmetic. Same GEMMs, same order, into
 * zeroed buffers: the bits of recomputing. (A recorded forward that no backward follows
 * pays for the gradient; an evaluation runs with recording off.)
 *
 * The backward recomputes Z per chunk (the column on the right, in a scratch R × V buffer)
 * instead when the saved gradient does not apply: an upstream gradient other than exactly 1
 * (a scaled loss, a seed), reduction none, a second backward through a retained graph (the
 * saved one was used), or an input gradient that already holds something (the GEMMs
 * accumulating into it round otherwise than adding a finished sum to it would).
 *
 * Memory: R·V reals for the chunk (scratch, in the forward and in a recomputing backward)
 * and 2N for m and 1/Σ, instead of 2·N·V (logits and their gradient); the eager gradient
 * adds one V × in buffer (dW, the size of the weight) plus N × in for dX, which becomes
 * x's gradient instead of one the backward would allocate (bench/bench_lm's gru_lm, a
 * 10,000-word vocabulary from 512 features: 20 MB for a step a quarter shorter). */
#include "autograd/linear_internal.h"
#include "autograd/loss_internal.h"
#include "tapegrad/kernels.h"
#include "tapegrad/ops.h"

#include <string.h>

/* The bytes of one chunk's logits: a few MB keeps the GEMMs big (R = 104 rows for a
 * 10,000-word vocabulary in float32 at 4 MB) and the memory a small fraction of the
 * model's. Every chunk packs all of W again for its product, so bigger chunks pack less;
 * but a forward that also makes the gradient streams W twice and its gradient once per
 * chunk, and those compete with the chunk for the last-level cache. On bench_lm's gru_lm
 * (Zen 4, 32 MB L3) 8 MB made the forward alone 5–8 % faster than 4 MB at 1 and 2
 * threads, and the training step 3.6 % faster at 1 thread but 3 % slower at 2. */
#define CHUNK_BYTES_FORWARD_ONLY  ((int64_t)8 << 20)
#define CHUNK_BYTES_WITH_GRADIENT ((int64_t)4 << 20)
/* Elements of a chunk below which its row loop stays on one thread. */
#define PARALLEL_MIN 16384

typedef struct lce_saved {
    int64_t N, V, in, R;
    int32_t *y;
    tg_real *m, *inv_sum; /* per row: max_j z_j and 1 / Σ_j exp(z_j − m) */
    double denom;         /* rows not ignored */
    int64_t ignore;
    tg_reduction red;
    /* The gradient for ∂loss/∂loss = 1, per input (NULL: not computed), while `eager`. */
    tg_real *grad[3];
    bool eager;
} lce_saved;

typedef struct chunk_ctx {
    const lce_saved *S;
    const tg_tensor *out; /* backward: the output, whose gradient is the upstream one */
    tg_real *Z;
    int64_t r0;
    double *ell; /* forward: the rows' losses */
    bool eager;  /* forward: D in place of Z too, for an upstream gradient of 1 */
} chunk_ctx;

/* D = g·(softmax(z) − onehot(y)) in place of the row z of sample k (g = 0 when ignored),
 * softmax_j = e_j·(1/Σ e) with e_j = exp(z_j − m): the forward's row holds e already (it
 * summed them), a recomputing backward makes e here from the same z: the same bits. */
static inline void row_delta(const chunk_ctx *c, tg_real *restrict z, int64_t k, bool z_is_e) {
    const lce_saved *S = c->S;
    const int64_t V = S->V, yk = S->y[k];
    if (yk == S->ignore) {
        memset(z, 0, (size_t)V * sizeof(tg_real));
        return;
    }
    /* the eager gradient is upstream()'s for a gradient of 1 */
    const tg_real g = c->out                        ? upstream(c->out, S->red, S->denom, k)
                      : S->red == TG_REDUCTION_MEAN ? (tg_real)(1.0 / S->denom)
                                                    : 1;
    const tg_real m = S->m[k], r = g * S->inv_sum[k];
    if (z_is_e)
        for (int64_t j = 0; j < V; j++) z[j] *= r;
    else
        for (int64_t j = 0; j < V; j++) z[j] = tg_vexp(z[j] - m) * r;
    z[yk] -= g;
}

TG_VEC_KERNEL static void forward_rows(int64_t begin, int64_t end, void *p) {
    const chunk_ctx *c = p;
    const lce_saved *S = c->S;
    for (int64_t i = begin; i < end; i++) {
        const int64_t k = c->r0 + i, yk = S->y[k];
        tg_real *z = c->Z + i * S->V;
        /* ce_sample_lse's m and sum (the same lanes), the row keeping e = exp(z − m) */
        const tg_real m = tg_vmax_row(z, S->V, 1), z_y = yk == S->ignore ? 0 : z[yk];
        const double sum = tg_vexp_sum_row(z, z, S->V, m), ls = log(sum);
        S->m[k] = m, S->inv_sum[k] = (tg_real)(1.0 / sum);
        c->ell[k] = yk == S->ignore ? 0 : ((double)m + ls) - (double)z_y;
        if (c->eager) row_delta(c, z, k, true);
    }
}

TG_VEC_KERNEL static void backward_rows(int64_t begin, int64_t end, void *p) {
    const chunk_ctx *c = p;
    for (int64_t i = begin; i < end; i++) row_delta(c, c->Z + i * c->S->V, c->r0 + i, false);
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

/* dX_c += D·W, dW += Dᵀ·X_c, db += Σ_rows D for the chunk of n rows at r0 whose D is in Z
 * (each gradient NULL: not wanted). The forward's eager column and the backward share it. */
static void chunk_grads(const lce_saved *S, const tg_tensor *x, const tg_tensor *W, int64_t r0,
                        int64_t n, const tg_real *Z, tg_real *const grad[3]) {
    const int64_t V = S->V, in = S->in;
    if (grad[0]) tg_gemm(false, false, n, in, V, 1, Z, V, W->data, in, 1, grad[0] + r0 * in, in);
    if (grad[1]) tg_gemm(true, false, V, in, n, 1, Z, V, x->data + r0 * in, in, 1, grad[1], in);
    if (grad[2]) {
        bias_ctx bc = {.D = Z, .db = grad[2], .n = n, .V = V};
        tg_parallel_for(V, n * V >= PARALLEL_MIN ? 64 : V, bias_columns, &bc);
    }
}

static bool all_zero(const tg_real *p, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (p[i] != 0) return false;
    return true;
}

/* The backward from the gradient the forward saved: false (nothing done) if an input's
 * gradient already holds something. A gradient that starts at zero gets the saved one's
 * bits either way: 0 + s = s. x's gradient, when it has none yet, is the saved buffer itself
 * (handed over through a tensor that carries it, as a reshape hands its output's over). */
static bool eager_backward(tg_tape *tape, tg_node *node, lce_saved *S) {
    tg_real *dst[3] = {NULL, NULL, NULL};
    bool move[3] = {false, false, false};
    for (int i = 0; i < 3; i++) {
        tg_tensor *t = node->in[i];
        if (!S->grad[i]) continue;
        move[i] = !t->grad && !t->owned && !t->retain_grad;
        if (move[i]) continue;
        dst[i] = tg_tape_grad(tape, t);
        if (dst[i] && !all_zero(dst[i], t->numel)) return false;
    }
    for (int i = 0; i < 3; i++) {
        tg_tensor *t = node->in[i];
        tg_real *restrict s = S->grad[i];
        if (!s) continue;
        if (move[i]) {
            tg_tensor *carrier = tg_tape_tensor_view(tape, s, t->ndim, t->shape);
            carrier->grad = s;
            if (tg_tape_grad_move(tape, t, carrier)) continue;
            dst[i] = tg_tape_grad(tape, t);
        }
        tg_real *restrict d = dst[i];
        if (d)
            for (int64_t j = 0; j < t->numel; j++) d[j] += s[j];
    }
    S->eager = false; /* used: a second backward recomputes */
    return true;
}

static void linear_ce_backward(tg_tape *tape, tg_node *node) {
    const tg_tensor *x = node->in[0], *W = node->in[1], *b = node->in[2], *out = node->out[0];
    if (!out->grad) return;
    lce_saved *S = node->saved;
    if (S->eager && out->grad[0] == 1 && eager_backward(tape, node, S)) return;
    tg_real *grad[3];
    for (int i = 0; i < 3; i++) grad[i] = tg_tape_grad(tape, node->in[i]);
    const int64_t V = S->V;
    tg_real *Z = tg_tape_alloc(tape, (size_t)(S->R * V + 1) * sizeof(tg_real)); /* scratch */
    for (int64_t r0 = 0; r0 < S->N; r0 += S->R) {
        const int64_t n = S->N - r0 < S->R ? S->N - r0 : S->R;
        linear_rows(n, x->data + r0 * S->in, W, b, Z); /* Z = X_c·Wᵀ + b */
        chunk_ctx c = {.S = S, .out = out, .Z = Z, .r0 = r0};
        tg_parallel_for(n, n * V >= PARALLEL_MIN ? 1 : n, backward_rows, &c);
        chunk_grads(S, x, W, r0, n, Z, grad);
    }
}

static void check_args(const tg_tensor *x, const tg_tensor *W, const tg_tensor *b,
                       const tg_index *y, const tg_loss_options *o) {
    static const char *op = "tg_linear_cross_entropy";
    char xd[160], wd[160], yd[96];
    check_reduction(op, o->reduction);
    if (o->weight || o->pos_weight || o->label_smoothing != 0)
        tg_fail("%s: class weights, pos_weight and label_smoothing are not supported (use "
                "tg_linear and tg_cross_entropy_ex)",
                op);
    if (W->ndim != 2 || W->shape[0] < 1)
        tg_fail("%s: weight %s must be 2-D (out_features >= 1, in_features)", op,
                tg_tensor_describe(W, wd, sizeof wd));
    linear_check(op, x, W, b);
    const int64_t V = W->shape[0];
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
    *S = (lce_saved){.V = weight->shape[0], .in = weight->shape[1], .N = targets->numel};
    S->y = tg_tape_alloc(t, (size_t)(S->N + 1) * sizeof(int32_t));
    memcpy(S->y, targets->data, (size_t)S->N * sizeof(int32_t));
    S->m = tg_tape_alloc(t, (size_t)(S->N + 1) * sizeof(tg_real));
    S->inv_sum = tg_tape_alloc(t, (size_t)(S->N + 1) * sizeof(tg_real));
    S->ignore = o.ignore_index, S->red = o.reduction, S->denom = 0;
    for (int64_t k = 0; k < S->N; k++) S->denom += S->y[k] != S->ignore;

    /* the eager gradient: only where the tape records a node and a backward can start at 1 */
    tg_tensor *const in[3] = {x, weight, bias};
    if (tg_tape_is_recording(t) && S->red != TG_REDUCTION_NONE)
        for (int i = 0; i < 3; i++)
            if (in[i] && in[i]->requires_grad) {
                const size_t bytes = (size_t)in[i]->numel * sizeof(tg_real);
                S->grad[i] = tg_tape_alloc(t, bytes + 1);
                memset(S->grad[i], 0, bytes);
                S->eager = true;
            }
    /* the chunk's rows (a row's loss does not depend on them, the gradients do: they are
     * made at the recording forward's R, eagerly or in the backward) */
    if (chunk_rows <= 0) {
        const int64_t bytes = S->eager ? CHUNK_BYTES_WITH_GRADIENT : CHUNK_BYTES_FORWARD_ONLY;
        chunk_rows = bytes / (S->V * (int64_t)sizeof(tg_real));
        if (chunk_rows < 16) chunk_rows = 16;
    }
    S->R = chunk_rows < S->N ? chunk_rows : S->N > 0 ? S->N : 1;

    double *ell = tg_tape_alloc(t, (size_t)(S->N + 1) * sizeof(double));
    /* the chunk buffer is scratch: given back before the output is made */
    tg_arena *arena = tg_tape_arena(t);
    const tg_arena_mark scratch = tg_arena_get_mark(arena);
    tg_real *Z = tg_arena_alloc(arena, (size_t)(S->R * S->V + 1) * sizeof(tg_real));
    for (int64_t r0 = 0; r0 < S->N; r0 += S->R) {
        const int64_t n = S->N - r0 < S->R ? S->N - r0 : S->R;
        linear_rows(n, x->data + r0 * S->in, weight, bias, Z); /* Z = X_c·Wᵀ + b */
        chunk_ctx c = {.S = S, .Z = Z, .r0 = r0, .ell = ell, .eager = S->eager};
        tg_parallel_for(n, n * S->V >= PARALLEL_MIN ? 1 : n, forward_rows, &c);
        if (S->eager) chunk_grads(S, x, weight, r0, n, Z, S->grad);
    }
    tg_arena_rewind(arena, scratch);
    tg_tensor *y = reduce_output(t, ell, S->N, S->red, S->denom, targets->ndim, targets->shape);
    tg_node *node =
        tg_tape_record(t, "linear_cross_entropy", linear_ce_backward, 3, in, 1, (tg_tensor *[]){y});
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
