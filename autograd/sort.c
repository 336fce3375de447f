/* Sorting along a dim: sort and topk, each with its indices.
 *
 * Both are stable: equal values keep their order, so the first of a tie comes first (what
 * torch.sort(stable=True) guarantees, and what torch.topk gives on the CPU). A NaN counts
 * as larger than any number, as in PyTorch: last in an ascending sort, first in a
 * descending one and in topk's largest.
 *
 * x is seen as (outer, n, inner) around the dim; every (o, i) column is sorted on its own
 * (a merge sort of positions, the column's values read in place), and threads split the
 * columns. y[o, k, i] = x[o, p_k, i] for the sorted positions p, so the backward is
 * dx[o, p_k, i] += dy[o, k, i]; the p_k of a column are distinct, so the columns can be
 * scattered in any order. */
#include <math.h>
#include <string.h>

#include "tapegrad/kernels.h"
#include "tapegrad/ops.h"

#define PARALLEL_MIN_ELEMS ((int64_t)1 << 15) /* below it, one serial call */

typedef struct sort_ctx {
    const tg_real *x;
    tg_real *y;
    int32_t *arg, *perm, *tmp; /* perm, tmp: n positions per column (scratch) */
    int64_t n, inner, k;       /* k: how many of each column to keep */
    bool descending;
} sort_ctx;

/* Whether value a goes before value b (strictly: equal values are left in order). */
static inline bool goes_before(tg_real a, tg_real b, bool descending) {
    if (descending) return a > b || (isnan(a) && !isnan(b));
    return a < b || (isnan(b) && !isnan(a));
}

/* Stable bottom-up merge sort of the positions p[0..n) by the values col[p·inner]. */
static int32_t *merge_sort(int32_t *p, int32_t *tmp, int64_t n, const tg_real *col, int64_t inner,
                           bool descending) {
    for (int64_t width = 1; width < n; width *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * width) {
            const int64_t mid = lo + width < n ? lo + width : n;
            const int64_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            int64_t a = lo, b = mid, o = lo;
            while (a < mid && b < hi) /* take from the right run only if strictly before */
                tmp[o++] =
                    goes_before(col[p[b] * inner], col[p[a] * inner], descending) ? p[b++] : p[a++];
            while (a < mid) tmp[o++] = p[a++];
            while (b < hi) tmp[o++] = p[b++];
        }
        int32_t *swap = p;
        p = tmp;
        tmp = swap;
    }
    return p;
}

static void sort_columns(int64_t begin, int64_t end, void *arg) {
    const sort_ctx *c = arg;
    const int64_t n = c->n, inner = c->inner, k = c->k;
    for (int64_t col = begin; col < end; col++) {
        const int64_t o = col / inner, i = col % inner;
        int32_t *p = c->perm + col * n, *tmp = c->tmp + col * n;
        for (int64_t j = 0; j < n; j++) p[j] = (int32_t)j;
        const tg_real *xc = c->x + o * n * inner + i;
        p = merge_sort(p, tmp, n, xc, inner, c->descending);
        for (int64_t j = 0; j < k; j++) {
            c->y[(o * k + j) * inner + i] = xc[p[j] * inner];
            c->arg[(o * k + j) * inner + i] = p[j];
        }
    }
}

/* dx[o, p_j, i] += dy[o, j, i]; iarg: outer, n, inner, k */
static void sort_backward(tg_tape *tape, tg_node *node) {
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    if (!dx) return;
    const int64_t outer = node->iarg[0], n = node->iarg[1], inner = node->iarg[2];
    const int64_t k = node->iarg[3];
    const int32_t *p = node->saved;
    const tg_real *dy = node->out[0]->grad;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < k; j++)
            for (int64_t i = 0; i < inner; i++)
                dx[(o * n + p[(o * k + j) * inner + i]) * inner + i] += dy[(o * k + j) * inner + i];
}

/* The k first of every column of x along dim in the given order; values and indices. */
static tg_tensor *sort_k(tg_tape *t, tg_tensor *x, int dim, int64_t k, bool descending,
                         tg_index **indices, const char *op, const char *node_op) {
    char xd[160];
    int64_t outer = 1, n = 1, inner = 1, shape[TG_MAX_DIMS];
    int d = 0;
    if (x->ndim > 0 || (dim != 0 && dim != -1)) { /* a scalar takes dim 0 or -1 */
        d = tg_dim_normalize(op, x, dim);
        for (int j = 0; j < x->ndim; j++) {
            if (j < d) outer *= x->shape[j];
            if (j > d) inner *= x->shape[j];
            shape[j] = x->shape[j];
        }
        n = x->shape[d];
    }
    const int64_t k_min = x->ndim ? 0 : 1; /* a scalar's output is a scalar: one element */
    if (k < k_min || k > n)
        tg_fail("%s: k = %lld is out of range [%lld, %lld] for dim %d of %s", op, (long long)k,
                (long long)k_min, (long long)n, dim, tg_tensor_describe(x, xd, sizeof xd));
    if (n > INT32_MAX)
        tg_fail("%s: dim %d of %s is longer than an index (int32) can count", op, dim,
                tg_tensor_describe(x, xd, sizeof xd));
    if (x->ndim) shape[d] = k;
    tg_tensor *y = tg_tape_tensor(t, x->ndim, shape);
    tg_index *ix = tg_tape_index(t, x->ndim, shape);
    const int64_t cols = outer * inner;
    const size_t scratch = (size_t)(cols * n) * sizeof(int32_t);
    sort_ctx c = {
        x->data, y->data, ix->data,  tg_tape_alloc(t, scratch), tg_tape_alloc(t, scratch), n,
        inner,   k,       descending};
    tg_parallel_for(cols, x->numel >= PARALLEL_MIN_ELEMS ? 1 : cols, sort_columns, &c);
    tg_node *node =
        tg_tape_record(t, node_op, sort_backward, 1, (tg_tensor *[]){x}, 1, (tg_tensor *[]){y});
    if (node) {
        node->iarg[0] = outer, node->iarg[1] = n, node->iarg[2] = inner, node->iarg[3] = k;
        node->saved = ix->data;
        if (indices) { /* the caller may edit its copy; backward keeps its own */
            node->saved = tg_tape_alloc(t, (size_t)(ix->numel ? ix->numel : 1) * sizeof(int32_t));
            if (ix->numel) memcpy(node->saved, ix->data, (size_t)ix->numel * sizeof(int32_t));
        }
    }
    if (indices) *indices = ix;
    return y;
}

tg_tensor *tg_sort(tg_tape *t, tg_tensor *x, int dim, bool descending, tg_index **indices) {
    TG_CHECK_OP(t, x);
    const int64_t n = x->ndim ? x->shape[tg_dim_normalize("tg_sort", x, dim)] : 1;
    return sort_k(t, x, dim, n, descending, indices, "tg_sort", "sort");
}

tg_tensor *tg_topk(tg_tape *t, tg_tensor *x, int64_t k, int dim, bool largest, tg_index **indices) {
    TG_CHECK_OP(t, x);
    return sort_k(t, x, dim, k, largest, indices, "tg_topk", "topk");
}
