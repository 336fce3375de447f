/* Softmax and log-softmax along any dim, in the stable forms (m = max_j x_j):
 *   softmax_i     = exp(x_i − m) / Σ_j exp(x_j − m)
 *   log_softmax_i = x_i − m − log Σ_j exp(x_j − m)
 * A −inf entry gives 0 / −inf; a row that is all −inf gives NaN (as PyTorch does): there
 * m = −inf and x − m is NaN. A NaN anywhere in a row makes the row NaN.
 *
 * x is seen as (outer, n, inner) with n the softmax dim. When inner = 1 (the last dim, the
 * usual case) rows are contiguous; otherwise a task handles COL_CHUNK columns of one outer
 * slice at a time, walking rows j in order so that memory is read contiguously. Sums are
 * in double, in a fixed order; threads split independent rows or column chunks only.
 * exp is tensor/vmath.h's (SIMD in float32, libm in float64). */
#include "tensor/vmath.h"

#include "tapegrad/kernels.h"
#include "tapegrad/ops.h"

#include <math.h>

#define EXP tg_vexp

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

/* One contiguous row of length n (softmax: tensor/vmath.h's row kernel). */
static void softmax_row(const tg_real *x, tg_real *y, int64_t n, bool log_form) {
    if (!log_form) {
        tg_vsoftmax_row(x, y, n);
        return;
    }
    tg_real m = -INFINITY;
    for (int64_t j = 0; j < n; j++) m = max_nan(m, x[j]);
    for (int64_t j = 0; j < n; j++) y[j] = EXP(x[j] - m);
    double s = 0;
    for (int64_t j = 0; j < n; j++) s += (double)y[j];
    const tg_real ls = (tg_real)log(s);
    for (int64_t j = 0; j < n; j++) y[j] = (x[j] - m) - ls;
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
    if (!log_form) {
        tg_vsoftmax_row_backward(y, dy, dx, n, true);
        return;
    }
    double s = 0;
    for (int64_t j = 0; j < n; j++) s += (double)dy[j];
    const tg_real sr = (tg_real)s;
    for (int64_t j = 0; j < n; j++) dx[j] += dy[j] - EXP(y[j]) * sr;
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

/* One softmax job: rows (inner = 1) or column chunks of COL_CHUNK, [begin, end). */
typedef struct softmax_job {
    const tg_real *x, *y, *dy;
    tg_real *out;
    int64_t n, inner, chunks;
    bool log_form;
} softmax_job;

TG_VEC_KERNEL static void forward_range(int64_t begin, int64_t end, void *ctx) {
    const softmax_job *j = ctx;
    const int64_t n = j->n, inner = j->inner;
    for (int64_t task = begin; task < end; task++) {
        if (inner == 1) {
            softmax_row(j->x + task * n, j->out + task * n, n, j->log_form);
            continue;
        }
        const int64_t o = task / j->chunks, c0 = (task % j->chunks) * COL_CHUNK;
        const int64_t w = inner - c0 < COL_CHUNK ? inner - c0 : COL_CHUNK, at = o * n * inner + c0;
        softmax_cols(j->x + at, j->out + at, n, inner, w, j->log_form);
    }
}

TG_VEC_KERNEL static void backward_range(int64_t begin, int64_t end, void *ctx) {
    const softmax_job *j = ctx;
    const int64_t n = j->n, inner = j->inner;
    for (int64_t task = begin; task < end; task++) {
        if (inner == 1) {
            softmax_row_backward(j->y + task * n, j->dy + task * n, j->out + task * n, n,
                                 j->log_form);
            continue;
        }
        const int64_t o = task / j->chunks, c0 = (task % j->chunks) * COL_CHUNK;
        const int64_t w = inner - c0 < COL_CHUNK ? inner - c0 : COL_CHUNK, at = o * n * inner + c0;
        softmax_cols_backward(j->y + at, j->dy + at, j->out + at, n, inner, w, j->log_form);
    }
}

/* Runs body over the tasks of a view: outer rows, or outer × column chunks. */
static void softmax_run(tg_range_fn body, softmax_job *job, int64_t outer, int64_t numel) {
    job->chunks = (job->inner + COL_CHUNK - 1) / COL_CHUNK;
    const int64_t tasks = job->inner == 1 ? outer : outer * job->chunks;
    tg_parallel_for(tasks, numel >= PARALLEL_MIN ? 1 : tasks, body, job);
}

static void softmax_backward(tg_tape *tape, tg_node *node) {
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    if (!dx) return;
    const tg_tensor *y = node->out[0];
    softmax_job job = {.y = y->data,
                       .dy = y->grad,
                       .out = dx,
                       .n = node->iarg[1],
                       .inner = node->iarg[2],
                       .log_form = node->iarg[3]};
    softmax_run(backward_range, &job, node->iarg[0], y->numel);
}

static tg_tensor *softmax_any(tg_tape *tape, tg_tensor *x, int dim, bool log_form) {
    const softmax_view v = softmax_view_make(log_form ? "tg_log_softmax" : "tg_softmax", x, dim);
    tg_tensor *y = tg_tape_tensor_like(tape, x);
    softmax_job job = {
        .x = x->data, .out = y->data, .n = v.n, .inner = v.inner, .log_form = log_form};
    softmax_run(forward_range, &job, v.outer, x->numel);
    tg_node *node = tg_tape_record(tape, log_form ? "log_softmax" : "softmax", softmax_backward, 1,
                                   (tg_tensor *[]){x}, 1, (tg_tensor *[]){y});
    if (node)
        node->iarg[0] = v.outer, node->iarg[1] = v.n, node->iarg[2] = v.inner,
        node->iarg[3] = log_form;
    return y;
}

tg_tensor *tg_softmax(tg_tape *t, tg_tensor *x, int dim) {
    TG_CHECK_OP(t, x);
    return softmax_any(t, x, dim, false);
}

tg_tensor *tg_log_softmax(tg_tape *t, tg_tensor *x, int dim) {
    TG_CHECK_OP(t, x);
    return softmax_any(t, x, dim, true);
}
