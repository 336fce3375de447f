/* Shape ops: reshape, unsqueeze, squeeze and flatten (free views), transpose and permute
 * (copies), concat, stack, slice, split, chunk, select, expand, repeat.
 *
 * None of these compute anything: each output element is one input element, so every
 * backward sends the output gradient back to where the element came from (+=, since the
 * input may feed other ops too). */
#include <string.h>

#include "tapegrad/broadcast.h"
#include "tapegrad/kernels.h"
#include "tapegrad/ops.h"

/* Below this many elements a copy is not worth waking threads for (the loops then pass
 * tg_parallel_for a grain of the whole range: one serial call). */
#define PARALLEL_MIN_ELEMS ((int64_t)1 << 16)

/* ---------------------------------------------------------------------------------------- */
/* reshape: y shares x's data; dy has x's layout, so dx += dy elementwise. */

static void reshape_backward(tg_tape *tape, tg_node *node) {
    tg_tensor *y = node->out[0];
    if (tg_tape_grad_move(tape, node->in[0], y)) return; /* dx = dy: no copy */
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    if (!dx) return;
    for (int64_t i = 0; i < y->numel; i++) dx[i] += y->grad[i];
}

/* y: a tensor header of our own over x's data (no copy), recorded as `op`. */
static tg_tensor *view(tg_tape *tape, tg_tensor *x, int ndim, const int64_t *shape,
                       const char *op) {
    tg_tensor *y = tg_tape_tensor_view(tape, x->data, ndim, shape);
    tg_tape_record(tape, op, reshape_backward, 1, (tg_tensor *[]){x}, 1, (tg_tensor *[]){y});
    return y;
}

tg_tensor *tg_reshape(tg_tape *tape, tg_tensor *x, int ndim, const int64_t *shape) {
    TG_CHECK_OP(tape, x);
    if (ndim > 0) TG_CHECK_ARG(shape);
    char xd[160], sd[128];
    if (ndim < 0 || ndim > TG_MAX_DIMS)
        tg_fail("tg_reshape: %d dimensions requested for %s (at most %d)", ndim,
                tg_tensor_describe(x, xd, sizeof xd), TG_MAX_DIMS);
    int infer = -1;
    int64_t known = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == -1 && infer < 0) {
            infer = d;
        } else if (shape[d] < 0) {
            tg_fail("tg_reshape: bad shape %s for %s (only one dim may be -1, none below -1)",
                    tg_shape_format(ndim, shape, sd, sizeof sd),
                    tg_tensor_describe(x, xd, sizeof xd));
        } else {
            known *= shape[d];
        }
    }
    int64_t out_shape[TG_MAX_DIMS];
    if (ndim) memcpy(out_shape, shape, (size_t)ndim * sizeof *shape);
    if (infer >= 0) {
        if (known == 0 || x->numel % known != 0)
            tg_fail("tg_reshape: cannot reshape %s (%lld elements) to %s",
                    tg_tensor_describe(x, xd, sizeof xd), (long long)x->numel,
                    tg_shape_format(ndim, shape, sd, sizeof sd));
        out_shape[infer] = x->numel / known;
    } else if (known != x->numel) {
        tg_fail("tg_reshape: cannot reshape %s (%lld elements) to %s (%lld elements)",
                tg_tensor_describe(x, xd, sizeof xd), (long long)x->numel,
                tg_shape_format(ndim, shape, sd, sizeof sd), (long long)known);
    }

    return view(tape, x, ndim, out_shape, "reshape");
}

/* ---------------------------------------------------------------------------------------- */
/* unsqueeze, squeeze, flatten: reshapes with the shape worked out from dims (free views) */

/* A dim at which a new one may be inserted: [-ndim-1, ndim], as PyTorch's unsqueeze/stack. */
static int insert_dim_normalize(const char *op, const tg_tensor *x, int dim) {
    char xd[160];
    const int nd = x->ndim;
    if (dim < -nd - 1 || dim > nd)
        tg_fail("%s: dim %d out of range for inserting a dim into %s (expected in [%d, %d])", op,
                dim, tg_tensor_describe(x, xd, sizeof xd), -nd - 1, nd);
    if (nd + 1 > TG_MAX_DIMS)
        tg_fail("%s: %s already has %d dims, the most a tensor may have", op,
                tg_tensor_describe(x, xd, sizeof xd), TG_MAX_DIMS);
    return dim < 0 ? dim + nd + 1 : dim;
}

tg_tensor *tg_unsqueeze(tg_tape *tape, tg_tensor *x, int dim) {
    TG_CHECK_OP(tape, x);
    const int d = insert_dim_normalize("tg_unsqueeze", x, dim);
    int64_t shape[TG_MAX_DIMS];
    for (int k = 0, j = 0; k <= x->ndim; k++) shape[k] = k == d ? 1 : x->shape[j++];
    return view(tape, x, x->ndim + 1, shape, "unsqueeze");
}

/* A 0-dim x accepts dim 0 or -1 (PyTorch's rule for dims of scalars). */
tg_tensor *tg_squeeze(tg_tape *tape, tg_tensor *x, int dim) {
    TG_CHECK_OP(tape, x);
    if (x->ndim == 0 && (dim == 0 || dim == -1)) return x;
    const int d = tg_dim_normalize("tg_squeeze", x, dim);
    if (x->shape[d] != 1) return x; /* PyTorch: squeezing a dim of another size does nothing */
    int64_t shape[TG_MAX_DIMS];
    for (int k = 0, j = 0; k < x->ndim; k++)
        if (k != d) shape[j++] = x->shape[k];
    return view(tape, x, x->ndim - 1, shape, "squeeze");
}

tg_tensor *tg_squeeze_all(tg_tape *tape, tg_tensor *x) {
    TG_CHECK_OP(tape, x);
    int64_t shape[TG_MAX_DIMS];
    int nd = 0;
    for (int k = 0; k < x->ndim; k++)
        if (x->shape[k] != 1) shape[nd++] = x->shape[k];
    return nd == x->ndim ? x : view(tape, x, nd, shape, "squeeze");
}

tg_tensor *tg_flatten(tg_tape *tape, tg_tensor *x, int start_dim, int end_dim) {
    TG_CHECK_OP(tape, x);
    if (x->ndim == 0) { /* PyTorch: a scalar flattens to (1,) whatever the dims (0 or -1) */
        if ((start_dim != 0 && start_dim != -1) || (end_dim != 0 && end_dim != -1)) {
            char xd[160];
            tg_fail("tg_flatten: dims %d..%d out of range for the scalar %s (0 or -1)", start_dim,
                    end_dim, tg_tensor_describe(x, xd, sizeof xd));
        }
        return view(tape, x, 1, (const int64_t[]){1}, "flatten");
    }
    const int s = tg_dim_normalize("tg_flatten", x, start_dim);
    const int e = tg_dim_normalize("tg_flatten", x, end_dim);
    if (s > e) {
        char xd[160];
        tg_fail("tg_flatten: start_dim %d comes after end_dim %d in %s", start_dim, end_dim,
                tg_tensor_describe(x, xd, sizeof xd));
    }
    int64_t shape[TG_MAX_DIMS];
    int nd = 0;
    for (int k = 0; k < s; k++) shape[nd++] = x->shape[k];
    shape[nd] = 1;
    for (int k = s; k <= e; k++) shape[nd] *= x->shape[k];
    nd++;
    for (int k = e + 1; k < x->ndim; k++) shape[nd++] = x->shape[k];
    return s == e ? x : view(tape, x, nd, shape, "flatten");
}

/* ---------------------------------------------------------------------------------------- */
/* permute / transpose */

/* dst (contiguous, of shape `shape`) = (or +=) src read through `stride` (one per dst dim).
 * Dims of size 1 are dropped and dims that are contiguous in src merged, so a permutation
 * that moves nothing becomes one straight copy. The last two remaining dims are walked as a
 * matrix, in 32x32 tiles when src is not contiguous along dst's rows. */
#define TILE 32 /* rows (and columns) per tile of a strided copy */

/* The copy after dims are merged: `outer` matrices of R x C, src read through n[]/s[]. */
typedef struct strided_ctx {
    tg_real *dst;
    const tg_real *src;
    int64_t n[TG_MAX_DIMS + 2], s[TG_MAX_DIMS + 2];
    int nd;
    bool add;
} strided_ctx;

/* One range of (matrix, tile of 32 rows) tasks. */
static void strided_tiles(int64_t begin, int64_t end, void *p) {
    const strided_ctx *x = p;
    const int nd = x->nd;
    const int64_t *n = x->n, *s = x->s;
    const int64_t R = n[nd - 2], C = n[nd - 1], sr = s[nd - 2], sc = s[nd - 1];
    const int64_t T = TILE, row_tiles = (R + T - 1) / T;
    const bool add = x->add;
    for (int64_t w = begin; w < end; w++) {
        const int64_t o = w / row_tiles, r0 = (w % row_tiles) * T;
        const int64_t r1 = r0 + T < R ? r0 + T : R;
        int64_t base = 0, rest = o; /* src offset of matrix o: once per tile of rows */
        for (int d = nd - 3; d >= 0; d--) {
            base += (rest % n[d]) * s[d];
            rest /= n[d];
        }
        tg_real *D = x->dst + o * R * C;
        const tg_real *S = x->src + base;
        if (sc == 1) {
            for (int64_t r = r0; r < r1; r++) {
                tg_real *restrict d = D + r * C;
                const tg_real *restrict q = S + r * sr;
                if (add)
                    for (int64_t c = 0; c < C; c++) d[c] += q[c];
                else
                    for (int64_t c = 0; c < C; c++) d[c] = q[c];
            }
        } else {
            for (int64_t c0 = 0; c0 < C; c0 += T) {
                const int64_t c1 = c0 + T < C ? c0 + T : C;
                for (int64_t r = r0; r < r1; r++) {
                    tg_real *restrict d = D + r * C;
                    const tg_real *restrict q = S + r * sr;
                    if (add)
                        for (int64_t c = c0; c < c1; c++) d[c] += q[c * sc];
                    else
                        for (int64_t c = c0; c < c1; c++) d[c] = q[c * sc];
                }
            }
        }
    }
}

static void strided_copy(tg_real *restrict dst, const tg_real *restrict src, int ndim,
                         const int64_t *shape, const int64_t *stride, bool add) {
    strided_ctx x = {.dst = dst, .src = src, .add = add};
    int64_t *n = x.n, *s = x.s;
    int nd = 0;
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        numel *= shape[d];
        if (shape[d] == 1) continue;
        if (nd > 0 && s[nd - 1] == stride[d] * shape[d]) {
            n[nd - 1] *= shape[d];
            s[nd - 1] = stride[d];
        } else {
            n[nd] = shape[d];
            s[nd] = stride[d];
            nd++;
        }
    }
    if (numel == 0) return;
    while (nd < 2) { /* pad to a matrix at the front */
        memmove(n + 1, n, (size_t)nd * sizeof *n);
        memmove(s + 1, s, (size_t)nd * sizeof *s);
        n[0] = 1, s[0] = 0;
        nd++;
    }
    x.nd = nd;
    const int64_t tasks = numel / (n[nd - 2] * n[nd - 1]) * ((n[nd - 2] + TILE - 1) / TILE);
    tg_parallel_for(tasks, numel >= PARALLEL_MIN_ELEMS ? 1 : tasks, strided_tiles, &x);
}

static void contiguous_strides(int ndim, const int64_t *shape, int64_t *stride) {
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        stride[d] = s;
        s *= shape[d];
    }
}

/* y = x permuted: y's dim j is x's dim perm[j]. Backward: x's dim perm[j] is y's dim j, so
 * dx += dy read through the inverse permutation. */
static void permute_backward(tg_tape *tape, tg_node *node) {
    const tg_tensor *x = node->in[0], *y = node->out[0];
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    if (!dx) return;
    const int *perm = node->saved;
    int64_t ystride[TG_MAX_DIMS], stride[TG_MAX_DIMS];
    contiguous_strides(y->ndim, y->shape, ystride);
    for (int j = 0; j < y->ndim; j++) stride[perm[j]] = ystride[j];
    strided_copy(dx, y->grad, x->ndim, x->shape, stride, true);
}

static tg_tensor *permute_checked(tg_tape *tape, tg_tensor *x, const int *perm, const char *op) {
    int64_t shape[TG_MAX_DIMS], xstride[TG_MAX_DIMS], stride[TG_MAX_DIMS];
    contiguous_strides(x->ndim, x->shape, xstride);
    for (int j = 0; j < x->ndim; j++) {
        shape[j] = x->shape[perm[j]];
        stride[j] = xstride[perm[j]];
    }
    tg_tensor *y = tg_tape_tensor(tape, x->ndim, shape);
    strided_copy(y->data, x->data, x->ndim, shape, stride, false);
    tg_node *node =
        tg_tape_record(tape, op, permute_backward, 1, (tg_tensor *[]){x}, 1, (tg_tensor *[]){y});
    if (node) {
        int *saved = tg_tape_alloc(tape, (size_t)(x->ndim ? x->ndim : 1) * sizeof *saved);
        if (x->ndim) memcpy(saved, perm, (size_t)x->ndim * sizeof *perm);
        node->saved = saved;
    }
    return y;
}

tg_tensor *tg_permute(tg_tape *tape, tg_tensor *x, const int *perm) {
    TG_CHECK_OP(tape, x);
    if (x->ndim > 0) TG_CHECK_ARG(perm);
    int p[TG_MAX_DIMS];
    bool seen[TG_MAX_DIMS] = {false};
    bool ok = true;
    for (int j = 0; j < x->ndim; j++) {
        p[j] = perm[j] < 0 ? perm[j] + x->ndim : perm[j];
        if (p[j] < 0 || p[j] >= x->ndim || seen[p[j]])
            ok = false;
        else
            seen[p[j]] = true;
    }
    if (!ok) {
        char xd[160], pd[96];
        int len = snprintf(pd, sizeof pd, "(");
        for (int j = 0; j < x->ndim && len > 0 && (size_t)len < sizeof pd; j++)
            len += snprintf(pd + len, sizeof pd - (size_t)len, j ? ", %d" : "%d", perm[j]);
        if (len > 0 && (size_t)len < sizeof pd) snprintf(pd + len, sizeof pd - (size_t)len, ")");
        tg_fail("tg_permute: %s is not a permutation of the %d dims of %s", pd, x->ndim,
                tg_tensor_describe(x, xd, sizeof xd));
    }
    return permute_checked(tape, x, p, "permute");
}

tg_tensor *tg_transpose(tg_tape *tape, tg_tensor *x, int dim0, int dim1) {
    TG_CHECK_OP(tape, x);
    const int d0 = tg_dim_normalize("tg_transpose", x, dim0);
    const int d1 = tg_dim_normalize("tg_transpose", x, dim1);
    int p[TG_MAX_DIMS];
    for (int j = 0; j < x->ndim; j++) p[j] = j;
    p[d0] = d1;
    p[d1] = d0;
    return permute_checked(tape, x, p, "transpose");
}

/* ---------------------------------------------------------------------------------------- */
/* concat, slice, split, select: all move blocks along one dim. Seen from that dim a tensor
 * is `outer` rows of (size along dim) x `inner` elements. */

static int64_t prod(const int64_t *shape, int from, int to) {
    int64_t p = 1;
    for (int d = from; d < to; d++) p *= shape[d];
    return p;
}

/* For each of `outer` rows: dst[o*dst_row + j] (=|+=) src[o*src_row + j], j < len. */
typedef struct row_copy_ctx {
    tg_real *dst;
    const tg_real *src;
    int64_t dst_row, src_row, len;
    bool add;
} row_copy_ctx;

static void row_copy_range(int64_t begin, int64_t end, void *p) {
    const row_copy_ctx *c = p;
    for (int64_t o = begin; o < end; o++) {
        tg_real *restrict d = c->dst + o * c->dst_row;
        const tg_real *restrict s = c->src + o * c->src_row;
        if (c->add)
            for (int64_t j = 0; j < c->len; j++) d[j] += s[j];
        else
            memcpy(d, s, (size_t)c->len * sizeof *d);
    }
}

static void row_copy(tg_real *dst, int64_t dst_row, const tg_real *src, int64_t src_row,
                     int64_t outer, int64_t len, bool add) {
    row_copy_ctx c = {dst, src, dst_row, src_row, len, add};
    tg_parallel_for(outer, outer * len >= PARALLEL_MIN_ELEMS ? 1 : outer, row_copy_range, &c);
}

/* y = concat(x_0, ..., x_{n-1}) along dim: x_i's block of each row sits at offset
 * off_i = inner * (sum of the sizes before it), so dx_i += that block of dy. */
static void concat_backward(tg_tape *tape, tg_node *node) {
    const tg_tensor *y = node->out[0];
    const int dim = (int)node->iarg[0];
    const int64_t outer = prod(y->shape, 0, dim), y_row = y->numel / (outer ? outer : 1);
    int64_t off = 0;
    for (int i = 0; i < node->n_in; i++) {
        const tg_tensor *x = node->in[i];
        const int64_t x_row = x->numel / (outer ? outer : 1);
        tg_real *dx = tg_tape_grad(tape, node->in[i]);
        if (dx && x->numel) row_copy(dx, x_row, y->grad + off, y_row, outer, x_row, true);
        off += x_row;
    }
}

tg_tensor *tg_concat(tg_tape *tape, tg_tensor *const *xs, int n, int dim) {
    char d0[160], di[160];
    TG_CHECK_ARG(tape);
    if (n < 1) tg_fail("tg_concat: needs at least one tensor (got %d)", n);
    TG_CHECK_INPUTS(tape, xs, n);
    const tg_tensor *x0 = xs[0];
    const int d = tg_dim_normalize("tg_concat", x0, dim);
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, x0->shape, (size_t)x0->ndim * sizeof *shape);
    shape[d] = 0;
    for (int i = 0; i < n; i++) {
        const tg_tensor *x = xs[i];
        bool ok = x->ndim == x0->ndim;
        for (int k = 0; ok && k < x0->ndim; k++) ok = k == d || x->shape[k] == x0->shape[k];
        if (!ok)
            tg_fail("tg_concat: along dim %d, tensor %d %s does not fit tensor 0 %s (sizes must "
                    "match in every other dim)",
                    dim, i, tg_tensor_describe(x, di, sizeof di),
                    tg_tensor_describe(x0, d0, sizeof d0));
        shape[d] += x->shape[d];
    }
    tg_tensor *y = tg_tape_tensor(tape, x0->ndim, shape);
    const int64_t outer = prod(shape, 0, d), y_row = y->numel / (outer ? outer : 1);
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        const int64_t x_row = xs[i]->numel / (outer ? outer : 1);
        if (xs[i]->numel) row_copy(y->data + off, y_row, xs[i]->data, x_row, outer, x_row, false);
        off += x_row;
    }
    tg_node *node = tg_tape_record(tape, "concat", concat_backward, n, xs, 1, (tg_tensor *[]){y});
    if (node) node->iarg[0] = d;
    return y;
}

/* y = x[..., start:start+len, ...] along dim (y may have that dim removed: select). Rows of
 * y are contiguous runs of x, so dx's run += dy's row. iarg: dim, start, and for split/chunk
 * the size of every chunk (chunk k starts at start + k·size); split_sizes keeps the starts
 * in `saved` instead. */
static void narrow_backward(tg_tape *tape, tg_node *node) {
    const tg_tensor *x = node->in[0];
    const int dim = (int)node->iarg[0];
    const int64_t start = node->iarg[1];
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    if (!dx) return;
    const int64_t outer = prod(x->shape, 0, dim), inner = prod(x->shape, dim + 1, x->ndim);
    const int64_t x_row = x->shape[dim] * inner;
    for (int k = 0; k < node->n_out; k++) {
        const tg_tensor *y = node->out[k];
        if (!y->grad || !y->numel) continue; /* an unused chunk contributes zero */
        const int64_t y_row = y->numel / outer;
        const int64_t *starts = node->saved; /* split_sizes: each chunk's start */
        const int64_t off = (starts ? starts[k] : start + (int64_t)k * node->iarg[2]) * inner;
        row_copy(dx + off, x_row, y->grad, y_row, outer, y_row, true);
    }
}

/* Copies the run [start, start+len) along dim into a new tensor of ndim/shape. */
static tg_tensor *narrow_copy(tg_tape *tape, const tg_tensor *x, int dim, int64_t start,
                              int64_t len, int ndim, const int64_t *shape) {
    tg_tensor *y = tg_tape_tensor(tape, ndim, shape);
    const int64_t outer = prod(x->shape, 0, dim), inner = prod(x->shape, dim + 1, x->ndim);
    if (y->numel)
        row_copy(y->data, len * inner, x->data + start * inner, x->shape[dim] * inner, outer,
                 len * inner, false);
    return y;
}

tg_tensor *tg_slice(tg_tape *tape, tg_tensor *x, int dim, int64_t start, int64_t length) {
    TG_CHECK_OP(tape, x);
    const int d = tg_dim_normalize("tg_slice", x, dim);
    const int64_t size = x->shape[d];
    const int64_t s = start < 0 ? start + size : start;
    if (s < 0 || s > size || length < 0 || s + length > size) {
        char xd[160];
        tg_fail("tg_slice: [%lld, %lld + %lld) is out of range for dim %d of size %lld of %s",
                (long long)start, (long long)start, (long long)length, dim, (long long)size,
                tg_tensor_describe(x, xd, sizeof xd));
    }
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, x->shape, (size_t)x->ndim * sizeof *shape);
    shape[d] = length;
    tg_tensor *y = narrow_copy(tape, x, d, s, length, x->ndim, shape);
    tg_node *node = tg_tape_record(tape, "slice", narrow_backward, 1, (tg_tensor *[]){x}, 1,
                                   (tg_tensor *[]){y});
    if (node) node->iarg[0] = d, node->iarg[1] = s, node->iarg[2] = 0;
    return y;
}

tg_tensor *tg_select(tg_tape *tape, tg_tensor *x, int dim, int64_t index) {
    TG_CHECK_OP(tape, x);
    const int d = tg_dim_normalize("tg_select", x, dim);
    const int64_t size = x->shape[d];
    const int64_t i = index < 0 ? index + size : index;
    if (i < 0 || i >= size) {
        char xd[160];
        tg_fail("tg_select: index %lld is out of range for dim %d of size %lld of %s",
                (long long)index, dim, (long long)size, tg_tensor_describe(x, xd, sizeof xd));
    }
    int64_t shape[TG_MAX_DIMS];
    for (int k = 0, j = 0; k < x->ndim; k++)
        if (k != d) shape[j++] = x->shape[k];
    tg_tensor *y = narrow_copy(tape, x, d, i, 1, x->ndim - 1, shape);
    tg_node *node = tg_tape_record(tape, "select", narrow_backward, 1, (tg_tensor *[]){x}, 1,
                                   (tg_tensor *[]){y});
    if (node) node->iarg[0] = d, node->iarg[1] = i, node->iarg[2] = 0;
    return y;
}

/* n chunks of split_size along d written to out (the last may be smaller; every chunk is
 * empty if the dim is), one node with one output per chunk; chunk k starts at k*split_size
 * (iarg[2]). */
static int split_even(tg_tape *tape, tg_tensor *x, int d, int64_t split_size, int64_t n,
                      tg_tensor **out, const char *op) {
    const int64_t size = x->shape[d];
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, x->shape, (size_t)x->ndim * sizeof *shape);
    for (int64_t k = 0; k < n; k++) {
        const int64_t start = k * split_size < size ? k * split_size : size;
        shape[d] = size - start < split_size ? size - start : split_size;
        out[k] = narrow_copy(tape, x, d, start, shape[d], x->ndim, shape);
    }
    tg_node *node = tg_tape_record(tape, op, narrow_backward, 1, (tg_tensor *[]){x}, (int)n, out);
    if (node) node->iarg[0] = d, node->iarg[1] = 0, node->iarg[2] = size ? split_size : 0;
    return (int)n;
}

int tg_split(tg_tape *tape, tg_tensor *x, int64_t split_size, int dim, tg_tensor **out,
             int max_out) {
    TG_CHECK_OP(tape, x);
    TG_CHECK_ARG(out);
    char xd[160];
    const int d = tg_dim_normalize("tg_split", x, dim);
    const int64_t size = x->shape[d];
    if (split_size <= 0)
        tg_fail("tg_split: split_size %lld must be positive (splitting dim %d of %s)",
                (long long)split_size, dim, tg_tensor_describe(x, xd, sizeof xd));
    const int64_t n = size == 0 ? 1 : (size + split_size - 1) / split_size;
    if (n > max_out)
        tg_fail("tg_split: dim %d of %s in chunks of %lld gives %lld chunks, more than max_out %d",
                dim, tg_tensor_describe(x, xd, sizeof xd), (long long)split_size, (long long)n,
                max_out);
    return split_even(tape, x, d, split_size, n, out, "split");
}

/* torch.chunk: chunks of ceil(size / chunks), so there may be fewer than `chunks` (size 5 in 4
 * chunks gives 2, 2, 1); a dim of size 0 gives `chunks` empty chunks. */
int tg_chunk(tg_tape *tape, tg_tensor *x, int chunks, int dim, tg_tensor **out, int max_out) {
    TG_CHECK_OP(tape, x);
    TG_CHECK_ARG(out);
    char xd[160];
    const int d = tg_dim_normalize("tg_chunk", x, dim);
    const int64_t size = x->shape[d];
    if (chunks <= 0)
        tg_fail("tg_chunk: chunks %d must be positive (chunking dim %d of %s)", chunks, dim,
                tg_tensor_describe(x, xd, sizeof xd));
    const int64_t split_size = (size + chunks - 1) / chunks;
    const int64_t n = size == 0 ? chunks : (size + split_size - 1) / split_size;
    if (n > max_out)
        tg_fail("tg_chunk: dim %d of %s in %d chunks gives %lld chunks, more than max_out %d", dim,
                tg_tensor_describe(x, xd, sizeof xd), chunks, (long long)n, max_out);
    return split_even(tape, x, d, split_size, n, out, "chunk");
}

int tg_split_sizes(tg_tape *tape, tg_tensor *x, const int64_t *sizes, int n, int dim,
                   tg_tensor **out) {
    TG_CHECK_OP(tape, x);
    TG_CHECK_ARG(sizes);
    TG_CHECK_ARG(out);
    char xd[160];
    const int d = tg_dim_normalize("tg_split_sizes", x, dim);
    if (n < 1) tg_fail("tg_split_sizes: needs at least one size (got %d)", n);
    int64_t total = 0;
    for (int k = 0; k < n; k++) {
        if (sizes[k] < 0 || sizes[k] > x->shape[d] - total)
            tg_fail("tg_split_sizes: size %lld (chunk %d) does not fit: the sizes must be "
                    "non-negative and add up to %lld, dim %d of %s",
                    (long long)sizes[k], k, (long long)x->shape[d], dim,
                    tg_tensor_describe(x, xd, sizeof xd));
        total += sizes[k];
    }
    if (total != x->shape[d])
        tg_fail("tg_split_sizes: the sizes add up to %lld, not to %lld, dim %d of %s",
                (long long)total, (long long)x->shape[d], dim,
                tg_tensor_describe(x, xd, sizeof xd));
    int64_t shape[TG_MAX_DIMS], start = 0;
    memcpy(shape, x->shape, (size_t)x->ndim * sizeof *shape);
    for (int k = 0; k < n; k++) {
        shape[d] = sizes[k];
        out[k] = narrow_copy(tape, x, d, start, sizes[k], x->ndim, shape);
        start += sizes[k];
    }
    tg_node *node = tg_tape_record(tape, "split", narrow_backward, 1, (tg_tensor *[]){x}, n, out);
    if (node) {
        int64_t *starts = tg_tape_alloc(tape, (size_t)n * sizeof *starts);
        for (int k = 0; k < n; k++) starts[k] = k ? starts[k - 1] + sizes[k - 1] : 0;
        node->saved = starts;
        node->iarg[0] = d, node->iarg[1] = 0, node->iarg[2] = 0;
    }
    return n;
}

/* ---------------------------------------------------------------------------------------- */
/* stack and expand */

/* y = stack(x_0, ..., x_{n-1}) along a new dim d: concat of the x_i seen with a size-1 dim at
 * d. Seen from d, every x_i is `outer` rows of x_row elements and y `outer` rows of n·x_row,
 * exactly concat's layout, so concat's backward serves (iarg[0] = d: y's dims before d are
 * x's, hence the same `outer`). */
tg_tensor *tg_stack(tg_tape *tape, tg_tensor *const *xs, int n, int dim) {
    TG_CHECK_ARG(tape);
    TG_CHECK_ARG(xs);
    TG_CHECK_INPUTS(tape, xs, n);
    char d0[160], di[160];
    if (n < 1) tg_fail("tg_stack: needs at least one tensor (got %d)", n);
    const tg_tensor *x0 = xs[0];
    const int d = insert_dim_normalize("tg_stack", x0, dim);
    for (int i = 1; i < n; i++)
        if (!tg_shape_equal(xs[i], x0))
            tg_fail("tg_stack: tensor %d %s differs in shape from tensor 0 %s (stack needs equal "
                    "shapes)",
                    i, tg_tensor_describe(xs[i], di, sizeof di),
                    tg_tensor_describe(x0, d0, sizeof d0));
    int64_t shape[TG_MAX_DIMS];
    for (int k = 0, j = 0; k <= x0->ndim; k++) shape[k] = k == d ? n : x0->shape[j++];
    tg_tensor *y = tg_tape_tensor(tape, x0->ndim + 1, shape);
    const int64_t outer = prod(shape, 0, d), x_row = x0->numel / (outer ? outer : 1);
    for (int i = 0; i < n && x0->numel; i++)
        row_copy(y->data + i * x_row, n * x_row, xs[i]->data, x_row, outer, x_row, false);
    tg_node *node = tg_tape_record(tape, "stack", concat_backward, n, xs, 1, (tg_tensor *[]){y});
    if (node) node->iarg[0] = d;
    return y;
}

/* y = x broadcast to `shape` and materialised (tensors are contiguous); dx += dy summed over
 * the dims in which x was broadcast. */
static void expand_backward(tg_tape *tape, tg_node *node) {
    const tg_tensor *x = node->in[0], *y = node->out[0];
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    if (dx) tg_broadcast_sum_to(dx, x->ndim, x->shape, y->grad, y->ndim, y->shape, 1);
}

tg_tensor *tg_expand(tg_tape *tape, tg_tensor *x, int ndim, const int64_t *shape) {
    TG_CHECK_OP(tape, x);
    if (ndim > 0) TG_CHECK_ARG(shape);
    char xd[160], sd[128];
    const int lead = ndim - x->ndim; /* new leading dims */
    bool ok = ndim <= TG_MAX_DIMS && lead >= 0;
    int64_t out[TG_MAX_DIMS];
    for (int k = 0; ok && k < ndim; k++) {
        const int64_t have = k < lead ? 1 : x->shape[k - lead];
        out[k] = shape[k] == -1 && k >= lead ? have : shape[k];
        ok = out[k] >= 0 && (have == 1 || have == out[k]);
    }
    if (!ok)
        tg_fail("tg_expand: %s cannot be expanded to %s (a size may only grow from 1; -1 keeps "
                "a size, not in a new leading dim)",
                tg_tensor_describe(x, xd, sizeof xd),
                tg_shape_format(ndim < 0 ? 0 : ndim, shape, sd, sizeof sd));
    tg_tensor *y = tg_tape_tensor(tape, ndim, out);
    if (y->numel) tg_broadcast_expand(y->data, ndim, out, x->data, x->ndim, x->shape);
    tg_tape_record(tape, "expand", expand_backward, 1, (tg_tensor *[]){x}, 1, (tg_tensor *[]){y});
    return y;
}

/* y = x tiled `repeats` times along each dim (torch.repeat; leading repeats beyond x's dims add
 * dims, x then counts as having size 1 there). Seen from the last dim, every row of y is r
 * copies of one row of x (r = the last repeat): the x row is found from the y row's
 * coordinates modulo x's sizes. Backward adds every copy's gradient back, rows in y's order
 * (one serial pass: a fixed order of additions). saved: the x sizes aligned to y's dims. */
typedef struct repeat_ctx {
    const tg_real *src;
    tg_real *dst;
    const int64_t *xs, *ys; /* x's sizes (aligned to y's dims) and y's */
    int nd;
    bool add; /* backward: dst = dx, src = dy */
} repeat_ctx;

/* The offset of the x row that y's row `r` copies. */
static int64_t repeat_source_row(const repeat_ctx *c, int64_t r) {
    int64_t off = 0, stride = c->xs[c->nd - 1];
    for (int d = c->nd - 2; d >= 0; d--) {
        off += (r % c->ys[d]) % c->xs[d] * stride;
        r /= c->ys[d];
        stride *= c->xs[d];
    }
    return off;
}

static void repeat_rows(int64_t begin, int64_t end, void *p) {
    const repeat_ctx *c = p;
    const int64_t w = c->xs[c->nd - 1], yw = c->ys[c->nd - 1];
    for (int64_t r = begin; r < end; r++) {
        const int64_t x_off = repeat_source_row(c, r);
        for (int64_t k = 0; k < yw; k += w) {
            if (c->add)
                for (int64_t j = 0; j < w; j++) c->dst[x_off + j] += c->src[r * yw + k + j];
            else
                memcpy(c->dst + r * yw + k, c->src + x_off, (size_t)w * sizeof(tg_real));
        }
    }
}

static void repeat_backward(tg_tape *tape, tg_node *node) {
    const tg_tensor *y = node->out[0];
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    if (!dx || !y->numel) return;
    if (y->ndim == 0) { /* a scalar repeated by nothing */
        dx[0] += y->grad[0];
        return;
    }
    repeat_ctx c = {y->grad, dx, node->saved, y->shape, y->ndim, true};
    repeat_rows(0, y->numel / y->shape[y->ndim - 1], &c);
}

tg_tensor *tg_repeat(tg_tape *tape, tg_tensor *x, int n, const int64_t *repeats) {
    TG_CHECK_OP(tape, x);
    if (n > 0) TG_CHECK_ARG(repeats);
    char xd[160], rd[128];
    const int lead = n - x->ndim;
    bool ok = lead >= 0 && n <= TG_MAX_DIMS;
    for (int d = 0; ok && d < n; d++) ok = repeats[d] >= 0;
    if (!ok)
        tg_fail("tg_repeat: repeats %s do not fit %s (one non-negative count per dim, at least "
                "as many as its %d dims, at most %d)",
                tg_shape_format(n < 0 ? 0 : n, repeats, rd, sizeof rd),
                tg_tensor_describe(x, xd, sizeof xd), x->ndim, TG_MAX_DIMS);
    int64_t *xs = tg_tape_alloc(tape, (size_t)(n ? n : 1) * sizeof *xs), shape[TG_MAX_DIMS];
    for (int d = 0; d < n; d++) {
        xs[d] = d < lead ? 1 : x->shape[d - lead];
        shape[d] = xs[d] * repeats[d];
    }
    tg_tensor *y = tg_tape_tensor(tape, n, shape);
    if (n == 0 && y->numel) y->data[0] = x->data[0];
    if (n > 0 && y->numel) {
        repeat_ctx c = {x->data, y->data, xs, y->shape, n, false};
        const int64_t rows = y->numel / shape[n - 1];
        tg_parallel_for(rows, y->numel >= PARALLEL_MIN_ELEMS ? 1 : rows, repeat_rows, &c);
    }
    tg_node *node = tg_tape_record(tape, "repeat", repeat_backward, 1, (tg_tensor *[]){x}, 1,
                                   (tg_tensor *[]){y});
    if (node) node->saved = xs;
    return y;
}
