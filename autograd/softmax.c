/* Softmax and log-softmax along any dim, in the stable forms (m = max_j x_j):
 *   softmax_i     = exp(x_i − m) / Σ_j exp(x_j − m)
 *   log_softmax_i = x_i − m − log Σ_j exp(x_j − m)
 * A −inf entry gives 0 / −inf; a row that is all −inf gives NaN (as PyTorch does): there
 * m = −inf and x − m is NaN. A NaN anywhere in a row makes the row NaN.
 *
 * x is seen as (outer, n, inner) with n the softmax dim. When inner = 1 (the last dim, the
 * usual case) rows are contiguous; otherwise a task handles COL_CHUNK columns of one outer
 * slice at a time, walking rows j in order so that memory is read contiguously. Sums are
 * in double, in a fixed order; threads split independent rows or column chunks only. */
#include "tapegrad/kernels.h"
#include "tapegrad/ops.h"

#include <math.h>

#ifdef TG_DOUBLE
#define EXP exp
#define LOG log
#else
#define EXP expf
#define LOG logf
#endif

#define COL_CHUNK    64
#define PARALLEL_MIN 16384

static inline tg_real max_nan(tg_real m, tg_real v) { return (v > m || isnan(v)) ? v : m; }

typedef struct softmax_view {
    int64_t outer, n, inner;
} softmax_view;

static softmax_view softmax_view_make(const char *op, const tg_tensor *x, int dim) {
    softmax_view v = {1, 1, 1};
    if (x->ndim == 0 && (dim == 0 || dim == -1)) return v; /* a scalar: softmax 1, log 0 */
    const int d = tg_dim_normalize(op, x, dim);
    for (int i = 0; i < x->ndim; i++) {
        if (i < d)
            v.outer *= x->shape[i];
        else if (i > d)
            v.inner *= x->shape[i];
    }
    v.n = x->shape[d];
    return v;
}

/* One contiguous row of length n. */
static void softmax_row(const tg_real *x, tg_real *y, int64_t n, bool log_form) {
    tg_real m = -INFINITY;
    for (int64_t j = 0; j < n; j++) m = max_nan(m, x[j]);
    double s = 0;
    if (log_form) {
        for (int64_t j = 0; j < n; j++) s += (double)EXP(x[j] - m);
        const tg_real ls = (tg_real)log(s);
        for (int64_t j = 0; j < n; j++) y[j] = (x[j] - m) - ls;
    } else {
        for (int64_t j = 0; j < n; j++) {
            y[j] = EXP(x[j] - m);
            s += (double)y[j];
        }
        const tg_real r = (tg_real)(1.0 / s);
        for (int64_t j = 0; j < n; j++) y[j] *= r;
    }
}

/* Columns [c0, c0+w) of slice o: rows j = 0..n-1 at stride inner. */
static void softmax_cols(const tg_real *x, tg_real *y, int64_t n, int64_t inner, int64_t w,
                         bool log_form) {
    tg_real m[COL_CHUNK];
    double s[COL_CHUNK];
    for (int64_t i = 0; i < w; i++) m[i] = -INFINITY, s[i] = 0;
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < w; i++) m[i] = max_nan(m[i], x[j * inner + i]);
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < w; i++) {
            const tg_real e = EXP(x[j * inner + i] - m[i]);
            s[i] += (double)e;
            if (!log_form) y[j * inner + i] = e;
        }
    if (log_form) {
        tg_real ls[COL_CHUNK];
        for (int64_t i = 0; i < w; i++) ls[i] = (tg_real)log(s[i]);
        for (int64_t j = 0; j < n; j++)
            for (int64_t i = 0; i < w; i++) y[j * inner + i] = (x[j * inner + i] - m[i]) - ls[i];
    } else {
        tg_real r[COL_CHUNK];
        for (int64_t i = 0; i < w; i++) r[i] = (tg_real)(1.0 / s[i]);
        for (int64_t j = 0; j < n; j++)
            for (int64_t i = 0; i < w; i++) y[j * inner + i] *= r[i];
    }
}

/* Backward, with y the output and dy its gradient, along one row / column set:
 *   softmax:     dx_i += y_i·(dy_i − Σ_j dy_j·y_j)        (Jacobian diag(y) − y yᵀ)
 *   log_softmax: dx_i += dy_i − exp(y_i)·Σ_j dy_j          (Jacobian I − 1·softmaxᵀ) */
static void softmax_row_backward(const tg_real *y, const tg_real *dy, tg_real *dx, int64_t n,
                                 bool log_form) {
    double s = 0;
    if (log_form) {
        for (int64_t j = 0; j < n; j++) s += (double)dy[j];
        const tg_real sr = (tg_real)s;
        for (int64_t j = 0; j < n; j++) dx[j] += dy[j] - EXP(y[j]) * sr;
    } else {
        for (int64_t j = 0; j < n; j++) s += (double)dy[j] * (double)y[j];
        const tg_real sr = (tg_real)s;
        for (int64_t j = 0; j < n; j++) dx[j] += y[j] * (dy[j] - sr);
    }
}

static void softmax_cols_backward(const tg_real *y, const tg_real *dy, tg_real *dx, int64_t n,
                                  int64_t inner, int64_t w, bool log_form) {
    double s[COL_CHUNK];
    tg_real sr[COL_CHUNK];
    for (int64_t i = 0; i < w; i++) s[i] = 0;
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < w; i++)
            s[i] += log_form ? (double)dy[j * inner + i]
                             : (double)dy[j * inner + i] * (double)y[j * inner + i];
    for (int64_t i = 0; i < w; i++) sr[i] = (tg_real)s[i];
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < w; i++) {
            const int64_t k = j * inner + i;
            dx[k] += log_form ? dy[k] - EXP(y[k]) * sr[i] : y[k] * (dy[k] - sr[i]);
        }
}

static void softmax_backward(tg_tape *tape, tg_node *node) {
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    if (!dx) return;
    const tg_tensor *y = node->out[0];
    const int64_t outer = node->iarg[0], n = node->iarg[1], inner = node->iarg[2];
    const bool log_form = node->iarg[3];
    if (inner == 1) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static)                                                          \
    num_threads(tg_get_num_threads()) if (y->numel >= PARALLEL_MIN)
#endif
        for (int64_t o = 0; o < outer; o++)
            softmax_row_backward(y->data + o * n, y->grad + o * n, dx + o * n, n, log_form);
    } else {
        const int64_t chunks = (inner + COL_CHUNK - 1) / COL_CHUNK;
#ifdef _OPENMP
#pragma omp parallel for schedule(static)                                                          \
    num_threads(tg_get_num_threads()) if (y->numel >= PARALLEL_MIN)
#endif
        for (int64_t task = 0; task < outer * chunks; task++) {
            const int64_t o = task / chunks, c0 = (task % chunks) * COL_CHUNK;
            const int64_t w = inner - c0 < COL_CHUNK ? inner - c0 : COL_CHUNK,
                          at = o * n * inner + c0;
            softmax_cols_backward(y->data + at, y->grad + at, dx + at, n, inner, w, log_form);
        }
    }
}

static tg_tensor *softmax_any(tg_tape *tape, tg_tensor *x, int dim, bool log_form) {
    const softmax_view v = softmax_view_make(log_form ? "tg_log_softmax" : "tg_softmax", x, dim);
    const int64_t outer = v.outer, n = v.n, inner = v.inner;
    tg_tensor *y = tg_tape_tensor_like(tape, x);
    if (inner == 1) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static)                                                          \
    num_threads(tg_get_num_threads()) if (x->numel >= PARALLEL_MIN)
#endif
        for (int64_t o = 0; o < outer; o++)
            softmax_row(x->data + o * n, y->data + o * n, n, log_form);
    } else {
        const int64_t chunks = (inner + COL_CHUNK - 1) / COL_CHUNK;
#ifdef _OPENMP
#pragma omp parallel for schedule(static)                                                          \
    num_threads(tg_get_num_threads()) if (x->numel >= PARALLEL_MIN)
#endif
        for (int64_t task = 0; task < outer * chunks; task++) {
            const int64_t o = task / chunks, c0 = (task % chunks) * COL_CHUNK;
            const int64_t w = inner - c0 < COL_CHUNK ? inner - c0 : COL_CHUNK,
                          at = o * n * inner + c0;
            softmax_cols(x->data + at, y->data + at, n, inner, w, log_form);
        }
    }
    tg_node *node = tg_tape_record(tape, log_form ? "log_softmax" : "softmax", softmax_backward, 1,
                                   (tg_tensor *[]){x}, 1, (tg_tensor *[]){y});
    if (node)
        node->iarg[0] = outer, node->iarg[1] = n, node->iarg[2] = inner, node->iarg[3] = log_form;
    return y;
}

tg_tensor *tg_softmax(tg_tape *t, tg_tensor *x, int dim) { return softmax_any(t, x, dim, false); }
tg_tensor *tg_log_softmax(tg_tape *t, tg_tensor *x, int dim) {
    return softmax_any(t, x, dim, true);
}
