/* Reductions: sum and mean (of everything, or along one dim), max and min along a dim,
 * argmax and argmin, and the cumulative sum along a dim.
 *
 * Summation order is fixed, whatever the thread count: a contiguous run is summed in blocks
 * of SUM_BLOCK elements, each block with 8 interleaved double partial sums combined in a
 * fixed order, and the blocks' totals added in order. Strided sums (along a dim that is not
 * the last) keep one double accumulator per output column. Threads only ever split
 * independent outputs (or independent blocks whose totals are combined afterwards in order),
 * so results are bit-identical with 1 or 64 threads. */
#include "tapegrad/kernels.h"
#include "tapegrad/ops.h"

#include <math.h>
#include <string.h>

#define SUM_BLOCK    4096  /* elements per block of a contiguous sum */
#define COL_CHUNK    64    /* output columns per task of a strided sum */
#define PARALLEL_MIN 32768 /* elements below which threads are not worth starting */
/* (below it, the loops pass tg_parallel_for a grain of the whole range: one serial call) */

/* Σ x[0..n), n <= SUM_BLOCK, in double with 8 lanes (vectorisable, fixed order). */
static double sum_block(const tg_real *x, int64_t n) {
    double lane[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) lane[k] += (double)x[i + k];
    for (int k = 0; i < n; i++, k++) lane[k] += (double)x[i];
    return ((lane[0] + lane[4]) + (lane[1] + lane[5])) +
           ((lane[2] + lane[6]) + (lane[3] + lane[7]));
}

/* Σ x[0..n): the blocks' sums added in order. */
static double sum_contiguous(const tg_real *x, int64_t n) {
    double total = 0;
    for (int64_t b = 0; b < n; b += SUM_BLOCK)
        total += sum_block(x + b, n - b < SUM_BLOCK ? n - b : SUM_BLOCK);
    return total;
}

/* ---- sum and mean of all elements -> shape () ----
 * y = s·Σ x (s = 1 or 1/numel);  dx_i += s·dy */
static void sum_all_backward(tg_tape *tape, tg_node *node) {
    tg_tensor *x = node->in[0];
    tg_real *dx = tg_tape_grad(tape, x);
    if (!dx) return;
    const tg_real g = (tg_real)((double)node->out[0]->grad[0] * node->farg[0]);
    for (int64_t i = 0; i < x->numel; i++) dx[i] += g;
}

/* Block sums of a contiguous run, one range of blocks per thread. */
typedef struct blocks_ctx {
    const tg_real *x;
    int64_t n;
    double *part;
} blocks_ctx;

static void block_sums(int64_t begin, int64_t end, void *p) {
    const blocks_ctx *c = p;
    for (int64_t b = begin; b < end; b++) {
        const int64_t lo = b * SUM_BLOCK, len = c->n - lo < SUM_BLOCK ? c->n - lo : SUM_BLOCK;
        c->part[b] = sum_block(c->x + lo, len);
    }
}

static tg_tensor *sum_all(tg_tape *tape, tg_tensor *x, bool mean) {
    const int64_t n = x->numel, blocks = (n + SUM_BLOCK - 1) / SUM_BLOCK;
    double total = 0;
    if (blocks <= 1) {
        total = sum_block(x->data, n);
    } else {
        /* Same arithmetic as sum_contiguous, the blocks shared between threads. */
        blocks_ctx c = {x->data, n, tg_tape_alloc(tape, (size_t)blocks * sizeof(double))};
        tg_parallel_for(blocks, n >= PARALLEL_MIN ? 1 : blocks, block_sums, &c);
        for (int64_t b = 0; b < blocks; b++) total += c.part[b];
    }
    const double scale = mean ? 1.0 / (double)n : 1.0; /* mean of nothing: 0·inf = NaN */
    tg_tensor *y = tg_tape_tensor(tape, 0, NULL);
    y->data[0] = (tg_real)(mean ? (n ? total / (double)n : NAN) : total);
    tg_node *node = tg_tape_record(tape, mean ? "mean" : "sum", sum_all_backward, 1,
                                   (tg_tensor *[]){x}, 1, (tg_tensor *[]){y});
    if (node) node->farg[0] = scale;
    return y;
}

tg_tensor *tg_sum(tg_tape *t, tg_tensor *x) {
    TG_CHECK_OP(t, x);
    return sum_all(t, x, false);
}

tg_tensor *tg_mean(tg_tape *t, tg_tensor *x) {
    TG_CHECK_OP(t, x);
    return sum_all(t, x, true);
}

/* ---- along one dim ----
 * x is seen as (outer, n, inner) with n the reduced dim; the output is (outer, inner),
 * shaped with the dim kept as 1 (keepdim) or removed. A 0-dim x accepts dim 0 or -1, as
 * in PyTorch, and reduces over its single element. */
typedef struct reduce_view {
    int64_t outer, n, inner;
    int out_ndim;
    int64_t out_shape[TG_MAX_DIMS];
} reduce_view;

static reduce_view reduce_view_make(const char *op, const tg_tensor *x, int dim, bool keepdim) {
    reduce_view v = {.outer = 1, .n = 1, .inner = 1};
    if (x->ndim == 0 && (dim == 0 || dim == -1)) return v; /* out shape () */
    const int d = tg_dim_normalize(op, x, dim);
    for (int i = 0; i < x->ndim; i++) {
        if (i < d)
            v.outer *= x->shape[i];
        else if (i > d)
            v.inner *= x->shape[i];
        if (i != d)
            v.out_shape[v.out_ndim++] = x->shape[i];
        else if (keepdim)
            v.out_shape[v.out_ndim++] = 1;
    }
    v.n = x->shape[d];
    return v;
}

/* y[o,i] = s·Σ_j x[o,j,i];  dx[o,j,i] += s·dy[o,i] */
static void sum_dim_backward(tg_tape *tape, tg_node *node) {
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    if (!dx) return;
    const int64_t outer = node->iarg[0], n = node->iarg[1], inner = node->iarg[2];
    const tg_real s = (tg_real)node->farg[0];
    const tg_real *dy = node->out[0]->grad;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < n; j++) {
            tg_real *dxr = dx + (o * n + j) * inner;
            const tg_real *dyr = dy + o * inner;
            for (int64_t i = 0; i < inner; i++) dxr[i] += s * dyr[i];
        }
}

/* y = s·Σ_j x[o,j,i] over a range of rows (inner == 1) or of (row, column chunk) tasks. */
typedef struct sum_dim_ctx {
    const tg_real *x;
    tg_real *y;
    int64_t n, inner, chunks;
    double s;
} sum_dim_ctx;

static void sum_rows(int64_t begin, int64_t end, void *p) {
    const sum_dim_ctx *c = p;
    for (int64_t o = begin; o < end; o++)
        c->y[o] = (tg_real)(sum_contiguous(c->x + o * c->n, c->n) * c->s);
}

static void sum_column_chunks(int64_t begin, int64_t end, void *p) {
    const sum_dim_ctx *c = p;
    const int64_t n = c->n, inner = c->inner;
    for (int64_t task = begin; task < end; task++) {
        const int64_t o = task / c->chunks, c0 = (task % c->chunks) * COL_CHUNK;
        const int64_t w = inner - c0 < COL_CHUNK ? inner - c0 : COL_CHUNK;
        double acc[COL_CHUNK] = {0};
        for (int64_t j = 0; j < n; j++) {
            const tg_real *xr = c->x + (o * n + j) * inner + c0;
            for (int64_t i = 0; i < w; i++) acc[i] += (double)xr[i];
        }
        for (int64_t i = 0; i < w; i++) c->y[o * inner + c0 + i] = (tg_real)(acc[i] * c->s);
    }
}

static tg_tensor *sum_dim(tg_tape *tape, tg_tensor *x, int dim, bool keepdim, bool mean) {
    const reduce_view v = reduce_view_make(mean ? "tg_mean_dim" : "tg_sum_dim", x, dim, keepdim);
    tg_tensor *y = tg_tape_tensor(tape, v.out_ndim, v.out_shape);
    const int64_t outer = v.outer, n = v.n, inner = v.inner;
    const double s = mean ? 1.0 / (double)n : 1.0;
    const bool parallel = x->numel >= PARALLEL_MIN;
    /* tasks (inner > 1): (outer row, chunk of COL_CHUNK output columns), each summing over
     * j in order */
    sum_dim_ctx c = {x->data, y->data, n, inner, (inner + COL_CHUNK - 1) / COL_CHUNK, s};
    const int64_t tasks = inner == 1 ? outer : outer * c.chunks;
    tg_parallel_for(tasks, parallel ? 1 : tasks, inner == 1 ? sum_rows : sum_column_chunks, &c);
    tg_node *node = tg_tape_record(tape, mean ? "mean_dim" : "sum_dim", sum_dim_backward, 1,
                                   (tg_tensor *[]){x}, 1, (tg_tensor *[]){y});
    if (node) {
        node->iarg[0] = outer, node->iarg[1] = n, node->iarg[2] = inner;
        node->farg[0] = s;
    }
    return y;
}

tg_tensor *tg_sum_dim(tg_tape *t, tg_tensor *x, int dim, bool keepdim) {
    TG_CHECK_OP(t, x);
    return sum_dim(t, x, dim, keepdim, false);
}

tg_tensor *tg_mean_dim(tg_tape *t, tg_tensor *x, int dim, bool keepdim) {
    TG_CHECK_OP(t, x);
    return sum_dim(t, x, dim, keepdim, true);
}

/* ---- max and min along a dim, argmax and argmin ----
 * y[o,i] = x[o, k(o,i), i] with k the first extreme index (a NaN counts as the extreme, for
 * max and min alike, as in PyTorch); dx[o, k(o,i), i] += dy[o,i], nothing to the other
 * elements. */
static void extreme_dim_backward(tg_tape *tape, tg_node *node) {
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    if (!dx) return;
    const int64_t outer = node->iarg[0], n = node->iarg[1], inner = node->iarg[2];
    const int32_t *k = node->saved;
    const tg_real *dy = node->out[0]->grad;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++)
            dx[(o * n + k[o * inner + i]) * inner + i] += dy[o * inner + i];
}

/* v replaces the extreme so far: strictly beyond it (so ties keep the first), or a NaN */
static inline bool beats(tg_real v, tg_real best, bool min) {
    return (min ? v < best : v > best) || (isnan(v) && !isnan(best));
}

/* The extreme and its first index over j, for a range of outer rows. */
typedef struct extreme_ctx {
    const tg_real *x;
    tg_real *y;
    int32_t *arg;
    int64_t n, inner;
    bool min;
} extreme_ctx;

static void extreme_rows(int64_t begin, int64_t end, void *p) {
    const extreme_ctx *c = p;
    const int64_t n = c->n, inner = c->inner;
    for (int64_t o = begin; o < end; o++) {
        tg_real *best = c->y + o * inner;
        int32_t *arg = c->arg + o * inner;
        memcpy(best, c->x + o * n * inner, (size_t)inner * sizeof(tg_real));
        memset(arg, 0, (size_t)inner * sizeof(int32_t));
        for (int64_t j = 1; j < n; j++) {
            const tg_real *xr = c->x + (o * n + j) * inner;
            for (int64_t i = 0; i < inner; i++)
                if (beats(xr[i], best[i], c->min)) best[i] = xr[i], arg[i] = (int32_t)j;
        }
    }
}

/* Values into y (or arena scratch when y is NULL) and indices into a new arena index. */
static tg_index *extreme_dim(tg_tape *t, const tg_tensor *x, int dim, bool keepdim, bool min,
                             const char *op, tg_tensor **values, reduce_view *view) {
    const reduce_view v = reduce_view_make(op, x, dim, keepdim);
    if (v.n == 0) {
        char desc[160];
        tg_fail("%s: cannot take the %s over dim %d of size 0 of tensor %s", op,
                min ? "min" : "max", dim, tg_tensor_describe(x, desc, sizeof desc));
    }
    if (v.n > INT32_MAX) {
        char desc[160];
        tg_fail("%s: dim %d of tensor %s is longer than an index (int32) can count", op, dim,
                tg_tensor_describe(x, desc, sizeof desc));
    }
    tg_real *best;
    if (values) {
        *values = tg_tape_tensor(t, v.out_ndim, v.out_shape);
        best = (*values)->data;
    } else {
        best = tg_tape_alloc(t, (size_t)(v.outer * v.inner) * sizeof(tg_real));
    }
    tg_index *ix = tg_tape_index(t, v.out_ndim, v.out_shape);
    extreme_ctx c = {x->data, best, ix->data, v.n, v.inner, min};
    tg_parallel_for(v.outer, x->numel >= PARALLEL_MIN ? 1 : v.outer, extreme_rows, &c);
    *view = v;
    return ix;
}

static tg_tensor *extreme_dim_op(tg_tape *t, tg_tensor *x, int dim, bool keepdim,
                                 tg_index **indices, bool min) {
    tg_tensor *y;
    reduce_view v;
    tg_index *ix = extreme_dim(t, x, dim, keepdim, min, min ? "tg_min_dim" : "tg_max_dim", &y, &v);
    tg_node *node = tg_tape_record(t, min ? "min_dim" : "max_dim", extreme_dim_backward, 1,
                                   (tg_tensor *[]){x}, 1, (tg_tensor *[]){y});
    if (node) {
        node->iarg[0] = v.outer, node->iarg[1] = v.n, node->iarg[2] = v.inner;
        node->saved = ix->data;
        if (indices) { /* the caller's copy may be edited; backward keeps its own */
            node->saved = tg_tape_alloc(t, (size_t)ix->numel * sizeof(int32_t));
            memcpy(node->saved, ix->data, (size_t)ix->numel * sizeof(int32_t));
        }
    }
    if (indices) *indices = ix;
    return y;
}

tg_tensor *tg_max_dim(tg_tape *t, tg_tensor *x, int dim, bool keepdim, tg_index **indices) {
    TG_CHECK_OP(t, x);
    return extreme_dim_op(t, x, dim, keepdim, indices, false);
}
tg_tensor *tg_min_dim(tg_tape *t, tg_tensor *x, int dim, bool keepdim, tg_index **indices) {
    TG_CHECK_OP(t, x);
    return extreme_dim_op(t, x, dim, keepdim, indices, true);
}

tg_index *tg_argmax(tg_tape *t, const tg_tensor *x, int dim, bool keepdim) {
    TG_CHECK_OP(t, x);
    reduce_view v;
    return extreme_dim(t, x, dim, keepdim, false, "tg_argmax", NULL, &v);
}
tg_index *tg_argmin(tg_tape *t, const tg_tensor *x, int dim, bool keepdim) {
    TG_CHECK_OP(t, x);
    reduce_view v;
    return extreme_dim(t, x, dim, keepdim, true, "tg_argmin", NULL, &v);
}

/* ---- cumulative sum along a dim ----
 * y[o,j,i] = Σ_{j' <= j} x[o,j',i], so dx[o,j,i] = Σ_{j' >= j} dy[o,j',i]: the same running
 * sum taken backwards. Each (o, i) column runs in a double accumulator (PyTorch's CPU kernel
 * accumulates float in double too); tasks are (outer row, chunk of COL_CHUNK columns). */
typedef struct cumsum_ctx {
    const tg_real *src;
    tg_real *dst;
    int64_t n, inner, chunks;
    bool reverse; /* backward: from the end, accumulating into dst */
} cumsum_ctx;

static void cumsum_chunks(int64_t begin, int64_t end, void *p) {
    const cumsum_ctx *c = p;
    const int64_t n = c->n, inner = c->inner;
    for (int64_t task = begin; task < end; task++) {
        const int64_t o = task / c->chunks, c0 = (task % c->chunks) * COL_CHUNK;
        const int64_t w = inner - c0 < COL_CHUNK ? inner - c0 : COL_CHUNK;
        double acc[COL_CHUNK] = {0};
        for (int64_t s = 0; s < n; s++) {
            const int64_t j = c->reverse ? n - 1 - s : s, at = (o * n + j) * inner + c0;
            for (int64_t i = 0; i < w; i++) {
                acc[i] += (double)c->src[at + i];
                if (c->reverse)
                    c->dst[at + i] += (tg_real)acc[i];
                else
                    c->dst[at + i] = (tg_real)acc[i];
            }
        }
    }
}

static void cumsum_run(const tg_real *src, tg_real *dst, const int64_t *iarg, bool reverse) {
    const int64_t outer = iarg[0], n = iarg[1], inner = iarg[2];
    cumsum_ctx c = {src, dst, n, inner, (inner + COL_CHUNK - 1) / COL_CHUNK, reverse};
    const int64_t tasks = outer * c.chunks;
    tg_parallel_for(tasks, outer * n * inner >= PARALLEL_MIN ? 1 : tasks, cumsum_chunks, &c);
}

static void cumsum_backward(tg_tape *tape, tg_node *node) {
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    if (dx) cumsum_run(node->out[0]->grad, dx, node->iarg, true);
}

tg_tensor *tg_cumsum(tg_tape *t, tg_tensor *x, int dim) {
    TG_CHECK_OP(t, x);
    const reduce_view v = reduce_view_make("tg_cumsum", x, dim, true);
    tg_tensor *y = tg_tape_tensor_like(t, x);
    const int64_t iarg[3] = {v.outer, v.n, v.inner};
    cumsum_run(x->data, y->data, iarg, false);
    tg_node *node =
        tg_tape_record(t, "cumsum", cumsum_backward, 1, (tg_tensor *[]){x}, 1, (tg_tensor *[]){y});
    if (node) node->iarg[0] = v.outer, node->iarg[1] = v.n, node->iarg[2] = v.inner;
    return y;
}
