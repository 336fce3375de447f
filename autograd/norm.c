/* Layer norm, fused into one node.
 *
 * x is seen as R rows of M elements (M = the product of the last norm_ndim dims). Per row:
 *   μ = (1/M) Σ x_j,  σ² = (1/M) Σ (x_j − μ)²  (biased),  r = 1/sqrt(σ² + eps),
 *   x̂_j = (x_j − μ)·r,  y_j = x̂_j·γ_j + β_j   (γ = 1, β = 0 when weight/bias are NULL).
 * Forward keeps μ and r per row; backward recomputes x̂ from them. The row sums run in
 * float64, in TG_VLANES interleaved lanes combined in lane order (a fixed order, whatever
 * the thread count, that vectorises). */
#include "tensor/vmath.h"

#include "tapegrad/kernels.h"
#include "tapegrad/ops.h"

#include <math.h>

#define COL_CHUNK 64
/* Elements below which threads are not worth starting (below it, the loops pass
 * tg_parallel_for a grain of the whole range: one serial call). */
#define PARALLEL_MIN 16384

typedef struct norm_saved {
    tg_real *mu, *r;
} norm_saved;

/* What a range of rows (forward, dx) or of column chunks (dγ, dβ) reads and writes. */
typedef struct norm_ctx {
    const tg_real *x, *dy, *gamma, *beta;
    tg_real *y, *dx, *dgamma, *dbeta;
    norm_saved *sv;
    int64_t R, M; /* rows, and elements per row */
    double eps;
} norm_ctx;

/* Σ_j x_j and Σ_j (x_j − mean)² of a row with the mean taken from the first sum. */
static inline void row_moments(const tg_real *restrict x, int64_t M, double *mean, double *ss) {
    enum { L = TG_VLANES };
    double s[L] = {0}, q[L] = {0};
    int64_t j = 0;
    for (; j + L <= M; j += L)
        for (int l = 0; l < L; l++) s[l] += (double)x[j + l];
    for (int l = 0; j + l < M; l++) s[l] += (double)x[j + l];
    const double m = tg_vlanes_total(s) / (double)M;
    for (j = 0; j + L <= M; j += L)
        for (int l = 0; l < L; l++) q[l] += ((double)x[j + l] - m) * ((double)x[j + l] - m);
    for (int l = 0; j + l < M; l++) q[l] += ((double)x[j + l] - m) * ((double)x[j + l] - m);
    *mean = m, *ss = tg_vlanes_total(q);
}

/* Σ_j g_j and Σ_j g_j x̂_j of a row, g = dy ⊙ γ (γ NULL: 1), x̂ = (x − μ)·r. */
static inline void row_grad_sums(const tg_real *restrict x, const tg_real *restrict dy,
                                 const tg_real *restrict gamma, tg_real mu, tg_real r, int64_t M,
                                 double *sg, double *sgx) {
    enum { L = TG_VLANES };
    double a[L] = {0}, b[L] = {0};
    int64_t j = 0;
    for (; j + L <= M; j += L)
        for (int l = 0; l < L; l++) {
            const tg_real g = gamma ? dy[j + l] * gamma[j + l] : dy[j + l];
            a[l] += (double)g;
            b[l] += (double)g * (double)((x[j + l] - mu) * r);
        }
    for (int l = 0; j + l < M; l++) {
        const tg_real g = gamma ? dy[j + l] * gamma[j + l] : dy[j + l];
        a[l] += (double)g;
        b[l] += (double)g * (double)((x[j + l] - mu) * r);
    }
    *sg = tg_vlanes_total(a), *sgx = tg_vlanes_total(b);
}

TG_VEC_KERNEL static void dx_rows(int64_t begin, int64_t end, void *p) {
    const norm_ctx *c = p;
    const int64_t M = c->M;
    for (int64_t row = begin; row < end; row++) {
        const tg_real *restrict xr = c->x + row * M, *restrict dyr = c->dy + row * M;
        const tg_real mu = c->sv->mu[row], r = c->sv->r[row];
        double sg, sgx;
        row_grad_sums(xr, dyr, c->gamma, mu, r, M, &sg, &sgx);
        const tg_real a = (tg_real)(sg / (double)M), b = (tg_real)(sgx / (double)M);
        tg_real *dxr = c->dx + row * M;
        for (int64_t j = 0; j < M; j++) {
            const tg_real g = c->gamma ? dyr[j] * c->gamma[j] : dyr[j];
            dxr[j] += r * (g - a - (xr[j] - mu) * r * b);
        }
    }
}

/* column sums over all R rows (in order), COL_CHUNK columns per task */
TG_VEC_KERNEL static void affine_grad_chunks(int64_t begin, int64_t end, void *p) {
    const norm_ctx *c = p;
    const int64_t M = c->M, R = c->R;
    for (int64_t k = begin; k < end; k++) {
        const int64_t c0 = k * COL_CHUNK, w = M - c0 < COL_CHUNK ? M - c0 : COL_CHUNK;
        double sgx[COL_CHUNK] = {0}, sg[COL_CHUNK] = {0};
        for (int64_t row = 0; row < R; row++) {
            const tg_real *xr = c->x + row * M + c0, *dyr = c->dy + row * M + c0;
            const tg_real mu = c->sv->mu[row], r = c->sv->r[row];
            for (int64_t j = 0; j < w; j++) {
                sgx[j] += (double)dyr[j] * (double)((xr[j] - mu) * r);
                sg[j] += (double)dyr[j];
            }
        }
        for (int64_t j = 0; j < w; j++) {
            if (c->dgamma) c->dgamma[c0 + j] += (tg_real)sgx[j];
            if (c->dbeta) c->dbeta[c0 + j] += (tg_real)sg[j];
        }
    }
}

/* Backward. With ĝ = dy ⊙ γ, and using ∂μ/∂x_k = 1/M, ∂r/∂x_k = −r³(x_k − μ)/M:
 *   dx_k = r·(ĝ_k − mean_j(ĝ_j) − x̂_k·mean_j(ĝ_j x̂_j))
 *   dγ_j = Σ_rows dy_j x̂_j,   dβ_j = Σ_rows dy_j. */
static void layer_norm_backward(tg_tape *tape, tg_node *node) {
    const tg_tensor *gamma = node->in[1];
    const int64_t R = node->iarg[0], M = node->iarg[1];
    const bool parallel = R * M >= PARALLEL_MIN;
    norm_ctx c = {.x = node->in[0]->data,
                  .dy = node->out[0]->grad,
                  .gamma = gamma ? gamma->data : NULL,
                  .dx = tg_tape_grad(tape, node->in[0]),
                  .dgamma = tg_tape_grad(tape, node->in[1]),
                  .dbeta = tg_tape_grad(tape, node->in[2]),
                  .sv = node->saved,
                  .R = R,
                  .M = M};
    if (c.dx) tg_parallel_for(R, parallel ? 1 : R, dx_rows, &c);
    if (c.dgamma || c.dbeta) {
        const int64_t chunks = (M + COL_CHUNK - 1) / COL_CHUNK;
        tg_parallel_for(chunks, parallel ? 1 : chunks, affine_grad_chunks, &c);
    }
}

TG_VEC_KERNEL static void forward_rows(int64_t begin, int64_t end, void *p) {
    const norm_ctx *c = p;
    const int64_t M = c->M;
    for (int64_t row = begin; row < end; row++) {
        const tg_real *xr = c->x + row * M;
        double mean, ss;
        row_moments(xr, M, &mean, &ss);
        const tg_real mu = (tg_real)mean, r = (tg_real)(1.0 / sqrt(ss / (double)M + c->eps));
        c->sv->mu[row] = mu, c->sv->r[row] = r;
        tg_real *yr = c->y + row * M;
        for (int64_t j = 0; j < M; j++) {
            const tg_real xh = (xr[j] - mu) * r;
            yr[j] = c->gamma ? xh * c->gamma[j] : xh;
            if (c->beta) yr[j] += c->beta[j];
        }
    }
}

static void check_affine(const char *what, const tg_tensor *p, const tg_tensor *x, int norm_ndim) {
    if (!p) return;
    bool ok = p->ndim == norm_ndim;
    for (int i = 0; ok && i < norm_ndim; i++) ok = p->shape[i] == x->shape[x->ndim - norm_ndim + i];
    if (!ok) {
        char dp[160], dx[160], ns[96];
        tg_fail("tg_layer_norm: %s %s does not match the normalised shape %s (the last %d dims "
                "of input %s)",
                what, tg_tensor_describe(p, dp, sizeof dp),
                tg_shape_format(norm_ndim, x->shape + x->ndim - norm_ndim, ns, sizeof ns),
                norm_ndim, tg_tensor_describe(x, dx, sizeof dx));
    }
}

tg_tensor *tg_layer_norm(tg_tape *t, tg_tensor *x, int norm_ndim, tg_tensor *weight,
                         tg_tensor *bias, tg_real eps) {
    TG_CHECK_OP(t, x);
    TG_CHECK_INPUT_OPT(t, weight);
    TG_CHECK_INPUT_OPT(t, bias);
    if (norm_ndim < 1 || norm_ndim > x->ndim) {
        char dx[160];
        tg_fail("tg_layer_norm: norm_ndim %d out of range for input %s (expected 1..%d)", norm_ndim,
                tg_tensor_describe(x, dx, sizeof dx), x->ndim);
    }
    check_affine("weight", weight, x, norm_ndim);
    check_affine("bias", bias, x, norm_ndim);
    if (!(eps >= 0)) tg_fail("tg_layer_norm: eps %g must be >= 0", (double)eps);

    int64_t M = 1;
    for (int i = x->ndim - norm_ndim; i < x->ndim; i++) M *= x->shape[i];
    const int64_t R = M ? x->numel / M : 0;
    tg_tensor *y = tg_tape_tensor_like(t, x);
    norm_saved *sv = tg_tape_alloc(t, sizeof *sv);
    sv->mu = tg_tape_alloc(t, (size_t)(R + 1) * sizeof(tg_real));
    sv->r = tg_tape_alloc(t, (size_t)(R + 1) * sizeof(tg_real));
    const tg_real *gamma = weight ? weight->data : NULL, *beta = bias ? bias->data : NULL;

    norm_ctx c = {.x = x->data,
                  .gamma = gamma,
                  .beta = beta,
                  .y = y->data,
                  .sv = sv,
                  .M = M,
                  .eps = (double)eps};
    tg_parallel_for(R, x->numel >= PARALLEL_MIN ? 1 : R, forward_rows, &c);
    tg_node *node = tg_tape_record(t, "layer_norm", layer_norm_backward, 3,
                                   (tg_tensor *[]){x, weight, bias}, 1, (tg_tensor *[]){y});
    if (node) {
        node->saved = sv;
        node->iarg[0] = R, node->iarg[1] = M, node->iarg[2] = norm_ndim;
        node->farg[0] = (double)eps;
    }
    return y;
}
