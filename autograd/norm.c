/* Layer norm, fused into one node.
 *
 * x is seen as R rows of M elements (M = the product of the last norm_ndim dims). Per row:
 *   μ = (1/M) Σ x_j,  σ² = (1/M) Σ (x_j − μ)²  (biased),  r = 1/sqrt(σ² + eps),
 *   x̂_j = (x_j − μ)·r,  y_j = x̂_j·γ_j + β_j   (γ = 1, β = 0 when weight/bias are NULL).
 * Forward keeps μ and r per row; backward recomputes x̂ from them. */
#include "tapegrad/kernels.h"
#include "tapegrad/ops.h"

#include <math.h>

#define COL_CHUNK    64
#define PARALLEL_MIN 16384

typedef struct norm_saved {
    tg_real *mu, *r;
} norm_saved;

/* Backward. With ĝ = dy ⊙ γ, and using ∂μ/∂x_k = 1/M, ∂r/∂x_k = −r³(x_k − μ)/M:
 *   dx_k = r·(ĝ_k − mean_j(ĝ_j) − x̂_k·mean_j(ĝ_j x̂_j))
 *   dγ_j = Σ_rows dy_j x̂_j,   dβ_j = Σ_rows dy_j. */
static void layer_norm_backward(tg_tape *tape, tg_node *node) {
    const tg_tensor *x = node->in[0], *gamma = node->in[1];
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    tg_real *dgamma = tg_tape_grad(tape, node->in[1]);
    tg_real *dbeta = tg_tape_grad(tape, node->in[2]);
    const tg_real *dy = node->out[0]->grad;
    const norm_saved *sv = node->saved;
    const int64_t R = node->iarg[0], M = node->iarg[1];

    if (dx) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static)                                                          \
    num_threads(tg_get_num_threads()) if (R * M >= PARALLEL_MIN)
#endif
        for (int64_t row = 0; row < R; row++) {
            const tg_real *xr = x->data + row * M, *dyr = dy + row * M;
            const tg_real mu = sv->mu[row], r = sv->r[row];
            double sg = 0, sgx = 0;
            for (int64_t j = 0; j < M; j++) {
                const tg_real g = gamma ? dyr[j] * gamma->data[j] : dyr[j];
                sg += (double)g;
                sgx += (double)g * (double)((xr[j] - mu) * r);
            }
            const tg_real a = (tg_real)(sg / (double)M), b = (tg_real)(sgx / (double)M);
            tg_real *dxr = dx + row * M;
            for (int64_t j = 0; j < M; j++) {
                const tg_real g = gamma ? dyr[j] * gamma->data[j] : dyr[j];
                dxr[j] += r * (g - a - (xr[j] - mu) * r * b);
            }
        }
    }
    if (dgamma || dbeta) {
        /* column sums over rows, COL_CHUNK columns per task, rows in order */
        const int64_t chunks = (M + COL_CHUNK - 1) / COL_CHUNK;
#ifdef _OPENMP
#pragma omp parallel for schedule(static)                                                          \
    num_threads(tg_get_num_threads()) if (R * M >= PARALLEL_MIN)
#endif
        for (int64_t c = 0; c < chunks; c++) {
            const int64_t c0 = c * COL_CHUNK, w = M - c0 < COL_CHUNK ? M - c0 : COL_CHUNK;
            double sgx[COL_CHUNK] = {0}, sg[COL_CHUNK] = {0};
            for (int64_t row = 0; row < R; row++) {
                const tg_real *xr = x->data + row * M + c0, *dyr = dy + row * M + c0;
                const tg_real mu = sv->mu[row], r = sv->r[row];
                for (int64_t j = 0; j < w; j++) {
                    sgx[j] += (double)dyr[j] * (double)((xr[j] - mu) * r);
                    sg[j] += (double)dyr[j];
                }
            }
            for (int64_t j = 0; j < w; j++) {
                if (dgamma) dgamma[c0 + j] += (tg_real)sgx[j];
                if (dbeta) dbeta[c0 + j] += (tg_real)sg[j];
            }
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

#ifdef _OPENMP
#pragma omp parallel for schedule(static)                                                          \
    num_threads(tg_get_num_threads()) if (x->numel >= PARALLEL_MIN)
#endif
    for (int64_t row = 0; row < R; row++) {
        const tg_real *xr = x->data + row * M;
        double s = 0, ss = 0;
        for (int64_t j = 0; j < M; j++) s += (double)xr[j];
        const double mean = s / (double)M;
        for (int64_t j = 0; j < M; j++) ss += ((double)xr[j] - mean) * ((double)xr[j] - mean);
        const tg_real mu = (tg_real)mean, r = (tg_real)(1.0 / sqrt(ss / (double)M + (double)eps));
        sv->mu[row] = mu, sv->r[row] = r;
        tg_real *yr = y->data + row * M;
        for (int64_t j = 0; j < M; j++) {
            const tg_real xh = (xr[j] - mu) * r;
            yr[j] = gamma ? xh * gamma[j] : xh;
            if (beta) yr[j] += beta[j];
        }
    }
    tg_node *node = tg_tape_record(t, "layer_norm", layer_norm_backward, 3,
                                   (tg_tensor *[]){x, weight, bias}, 1, (tg_tensor *[]){y});
    if (node) {
        node->saved = sv;
        node->iarg[0] = R, node->iarg[1] = M, node->iarg[2] = norm_ndim;
        node->farg[0] = (double)eps;
    }
    return y;
}
