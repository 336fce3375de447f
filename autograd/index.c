/* Indexing: embedding lookup, gather, index_select, and index tensors turned into real ones
 * (one-hot, masks, values). */
#include <string.h>

#include "tapegrad/kernels.h"
#include "tapegrad/ops.h"

/* Elements below which threads are not worth starting (below it, the loops pass
 * tg_parallel_for a grain of the whole range: one serial call). */
#define PARALLEL_MIN_ELEMS ((int64_t)1 << 16)
/* Columns per task of the weight-gradient scatter. */
#define COLUMN_BLOCK 64

/* Rows gathered (forward) or scattered into dW (backward, by column blocks). */
typedef struct embed_ctx {
    const int32_t *ids;
    const tg_real *src;
    tg_real *dst;
    int64_t n, E, pad;
} embed_ctx;

static void scatter_blocks(int64_t begin, int64_t end, void *p) {
    const embed_ctx *c = p;
    const int64_t E = c->E;
    for (int64_t b = begin; b < end; b++) {
        const int64_t e0 = b * COLUMN_BLOCK, e1 = e0 + COLUMN_BLOCK < E ? e0 + COLUMN_BLOCK : E;
        for (int64_t i = 0; i < c->n; i++) {
            if (c->ids[i] == c->pad) continue;
            tg_real *restrict g = c->dst + (int64_t)c->ids[i] * E;
            const tg_real *restrict d = c->src + i * E;
            for (int64_t e = e0; e < e1; e++) g[e] += d[e];
        }
    }
}

/* y[i, :] = W[ids[i], :].  dL/dW[v, :] = sum over positions i with ids[i] = v of dy[i, :],
 * except for the padding row, which gets nothing. The ids are added in their order, so a
 * row's sum is the same whatever the thread count; threads split the columns. */
static void embedding_backward(tg_tape *tape, tg_node *node) {
    const tg_tensor *W = node->in[0], *y = node->out[0];
    tg_real *dW = tg_tape_grad(tape, node->in[0]);
    if (!dW) return;
    const int64_t n = node->iarg[0], E = W->shape[1];
    embed_ctx c = {node->saved, y->grad, dW, n, E, node->iarg[1]};
    const int64_t blocks = (E + COLUMN_BLOCK - 1) / COLUMN_BLOCK;
    tg_parallel_for(blocks, n * E >= PARALLEL_MIN_ELEMS ? 1 : blocks, scatter_blocks, &c);
}

static void gather_rows(int64_t begin, int64_t end, void *p) {
    const embed_ctx *c = p;
    for (int64_t i = begin; i < end; i++)
        memcpy(c->dst + i * c->E, c->src + (int64_t)c->ids[i] * c->E,
               (size_t)c->E * sizeof(tg_real));
}

/* Writes "[1, 2]" (the multi-index of flat position `pos` in ids) into buf. */
static void format_position(const tg_index *ids, int64_t pos, char *buf, size_t len) {
    int64_t idx[TG_MAX_DIMS];
    for (int d = ids->ndim - 1; d >= 0; d--) {
        idx[d] = ids->shape[d] ? pos % ids->shape[d] : 0;
        pos = ids->shape[d] ? pos / ids->shape[d] : 0;
    }
    size_t used = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < ids->ndim && used < len; d++)
        used += (size_t)snprintf(buf + used, len - used, d ? ", %lld" : "%lld", (long long)idx[d]);
    if (used < len) snprintf(buf + used, len - used, "]");
}

tg_tensor *tg_embedding(tg_tape *tape, tg_tensor *weight, const tg_index *ids,
                        int64_t padding_idx) {
    TG_CHECK_OP(tape, weight);
    TG_CHECK_INDEX_INPUT(tape, ids);
    char wd[160], sd[96], pd[96];
    if (weight->ndim != 2)
        tg_fail("tg_embedding: weight %s must be 2-D (num_embeddings, embedding_dim)",
                tg_tensor_describe(weight, wd, sizeof wd));
    const int64_t V = weight->shape[0], E = weight->shape[1];
    if (ids->ndim + 1 > TG_MAX_DIMS)
        tg_fail("tg_embedding: ids %s have %d dims; the output would have more than %d",
                tg_shape_format(ids->ndim, ids->shape, sd, sizeof sd), ids->ndim, TG_MAX_DIMS);
    int64_t pad = -1; /* no id equals -1 once the ids are checked */
    if (padding_idx != TG_NO_PADDING) {
        pad = padding_idx < 0 ? padding_idx + V : padding_idx;
        if (pad < 0 || pad >= V)
            tg_fail("tg_embedding: padding_idx %lld is out of range for weight %s "
                    "(num_embeddings %lld)",
                    (long long)padding_idx, tg_tensor_describe(weight, wd, sizeof wd),
                    (long long)V);
    }
    for (int64_t i = 0; i < ids->numel; i++) {
        if (ids->data[i] < 0 || ids->data[i] >= V) {
            format_position(ids, i, pd, sizeof pd);
            tg_fail("tg_embedding: id %d at position %s of ids %s is out of range [0, %lld) "
                    "for weight %s",
                    (int)ids->data[i], pd, tg_shape_format(ids->ndim, ids->shape, sd, sizeof sd),
                    (long long)V, tg_tensor_describe(weight, wd, sizeof wd));
        }
    }

    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, ids->shape, (size_t)ids->ndim * sizeof *shape);
    shape[ids->ndim] = E;
    tg_tensor *y = tg_tape_tensor(tape, ids->ndim + 1, shape);
    const int64_t n = ids->numel;
    const int32_t *id = ids->data;
    embed_ctx c = {id, weight->data, y->data, n, E, pad};
    tg_parallel_for(n, n * E >= PARALLEL_MIN_ELEMS ? 1 : n, gather_rows, &c);

    tg_node *node = tg_tape_record(tape, "embedding", embedding_backward, 1,
                                   (tg_tensor *[]){weight}, 1, (tg_tensor *[]){y});
    if (node) { /* keep our own copy: the caller's ids may change before backward */
        int32_t *saved = tg_tape_alloc(tape, (size_t)(n ? n : 1) * sizeof *saved);
        if (n) memcpy(saved, id, (size_t)n * sizeof *saved);
        node->saved = saved;
        node->iarg[0] = n;
        node->iarg[1] = pad;
    }
    return y;
}

/* ---------------------------------------------------------------------------------------- */
/* gather and index_select. Both keep their own copy of the indices in `saved` (the caller's
 * may change before backward), and both scatter-add in backward in a fixed order. */

/* Copies the ids into the arena (for backward). */
static int32_t *ids_copy(tg_tape *tape, const tg_index *ix) {
    int32_t *saved = tg_tape_alloc(tape, (size_t)(ix->numel ? ix->numel : 1) * sizeof *saved);
    if (ix->numel) memcpy(saved, ix->data, (size_t)ix->numel * sizeof *saved);
    return saved;
}

/* Fails naming `op` if an id is outside [0, n). */
static void ids_check(const char *op, const tg_index *ix, int64_t n, const tg_tensor *x, int dim) {
    char xd[160], sd[96], pd[96];
    for (int64_t i = 0; i < ix->numel; i++)
        if (ix->data[i] < 0 || ix->data[i] >= n) {
            format_position(ix, i, pd, sizeof pd);
            tg_fail("%s: index %d at position %s of index %s is out of range [0, %lld) for dim "
                    "%d of %s",
                    op, (int)ix->data[i], pd, tg_shape_format(ix->ndim, ix->shape, sd, sizeof sd),
                    (long long)n, dim, tg_tensor_describe(x, xd, sizeof xd));
        }
}

/* y[m] = x[m with its coordinate along dim replaced by index[m]], y of index's shape. The
 * output position is decomposed over index's shape to find x's offset. Backward adds dy[m]
 * to that element of x. Threads take slices of the dims before `dim`: x's coordinates in
 * those dims are index's, so two slices never touch the same element of dx, and inside a
 * slice the additions go in position order. */
typedef struct gather_ctx {
    const int32_t *idx;
    const tg_real *src;
    tg_real *dst;
    int ndim, dim;
    int64_t ishape[TG_MAX_DIMS], xstride[TG_MAX_DIMS];
    int64_t per_slice; /* index elements per slice: the product of ishape[dim..] */
    bool scatter;      /* backward: dst (= dx) [x offset] += src (= dy) [position] */
} gather_ctx;

static void gather_slices(int64_t s0, int64_t s1, void *p) {
    const gather_ctx *c = p;
    for (int64_t pos = s0 * c->per_slice; pos < s1 * c->per_slice; pos++) {
        int64_t rest = pos, off = 0;
        for (int d = c->ndim - 1; d >= 0; d--) {
            const int64_t m = rest % c->ishape[d];
            rest /= c->ishape[d];
            off += (d == c->dim ? c->idx[pos] : m) * c->xstride[d];
        }
        if (c->scatter)
            c->dst[off] += c->src[pos];
        else
            c->dst[pos] = c->src[off];
    }
}

/* The context for x (ndim >= 1 here) and an index of the same ndim. */
static gather_ctx gather_setup(const tg_tensor *x, const int64_t *ishape, int ndim, int dim,
                               const int32_t *idx) {
    gather_ctx c = {.idx = idx, .ndim = ndim, .dim = dim, .per_slice = 1};
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        c.ishape[d] = ishape[d];
        c.xstride[d] = s;
        s *= x->ndim ? x->shape[d] : 1;
        if (d >= dim) c.per_slice *= ishape[d];
    }
    return c;
}

static void gather_run(gather_ctx *c, int64_t numel) {
    const int64_t slices = c->per_slice ? numel / c->per_slice : 0;
    tg_parallel_for(slices, numel >= PARALLEL_MIN_ELEMS ? 1 : slices, gather_slices, c);
}

static void gather_backward(tg_tape *tape, tg_node *node) {
    const tg_tensor *x = node->in[0], *y = node->out[0];
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    if (!dx) return;
    const int nd = y->ndim ? y->ndim : 1;
    gather_ctx c = gather_setup(x, y->ndim ? y->shape : (const int64_t[]){1}, nd,
                                (int)node->iarg[0], node->saved);
    c.src = y->grad, c.dst = dx, c.scatter = true;
    gather_run(&c, y->numel);
}

tg_tensor *tg_gather(tg_tape *tape, tg_tensor *x, int dim, const tg_index *index) {
    TG_CHECK_OP(tape, x);
    TG_CHECK_INDEX_INPUT(tape, index);
    char xd[160], sd[96];
    /* a scalar x takes dim 0 or -1 and a scalar index, as in PyTorch */
    const int d =
        x->ndim == 0 && (dim == 0 || dim == -1) ? 0 : tg_dim_normalize("tg_gather", x, dim);
    bool ok = index->ndim == x->ndim;
    for (int k = 0; ok && k < x->ndim; k++) ok = k == d || index->shape[k] <= x->shape[k];
    if (!ok)
        tg_fail("tg_gather: index %s does not fit %s along dim %d (same number of dims, and no "
                "larger in the other dims)",
                tg_shape_format(index->ndim, index->shape, sd, sizeof sd),
                tg_tensor_describe(x, xd, sizeof xd), dim);
    ids_check("tg_gather", index, x->ndim ? x->shape[d] : 1, x, dim);
    tg_tensor *y = tg_tape_tensor(tape, index->ndim, index->shape);
    gather_ctx c = gather_setup(x, x->ndim ? index->shape : (const int64_t[]){1},
                                x->ndim ? x->ndim : 1, d, index->data);
    c.src = x->data, c.dst = y->data;
    gather_run(&c, y->numel);
    tg_node *node = tg_tape_record(tape, "gather", gather_backward, 1, (tg_tensor *[]){x}, 1,
                                   (tg_tensor *[]){y});
    if (node) node->saved = ids_copy(tape, index), node->iarg[0] = d;
    return y;
}

/* y[o, k, i] = x[o, index[k], i] with x seen as (outer, n, inner) around dim. Backward:
 * dx[o, index[k], :] += dy[o, k, :] for k in order; tasks are (o, block of columns), which
 * never share an element of dx. iarg: outer, n, inner, K. */
typedef struct select_ctx {
    const int32_t *idx;
    const tg_real *src;
    tg_real *dst;
    int64_t n, inner, K, blocks;
} select_ctx;

static void select_rows(int64_t begin, int64_t end, void *p) {
    const select_ctx *c = p;
    for (int64_t r = begin; r < end; r++) { /* r = o·K + k */
        const int64_t o = r / c->K, k = r % c->K;
        memcpy(c->dst + r * c->inner, c->src + (o * c->n + c->idx[k]) * c->inner,
               (size_t)c->inner * sizeof(tg_real));
    }
}

static void select_scatter(int64_t begin, int64_t end, void *p) {
    const select_ctx *c = p;
    for (int64_t t = begin; t < end; t++) {
        const int64_t o = t / c->blocks, e0 = (t % c->blocks) * COLUMN_BLOCK;
        const int64_t e1 = e0 + COLUMN_BLOCK < c->inner ? e0 + COLUMN_BLOCK : c->inner;
        for (int64_t k = 0; k < c->K; k++) {
            tg_real *restrict g = c->dst + (o * c->n + c->idx[k]) * c->inner;
            const tg_real *restrict d = c->src + (o * c->K + k) * c->inner;
            for (int64_t e = e0; e < e1; e++) g[e] += d[e];
        }
    }
}

static void index_select_backward(tg_tape *tape, tg_node *node) {
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    if (!dx) return;
    const int64_t outer = node->iarg[0], inner = node->iarg[2];
    select_ctx c = {node->saved,
                    node->out[0]->grad,
                    dx,
                    node->iarg[1],
                    inner,
                    node->iarg[3],
                    (inner + COLUMN_BLOCK - 1) / COLUMN_BLOCK};
    const int64_t tasks = outer * c.blocks;
    tg_parallel_for(tasks, outer * c.K * inner >= PARALLEL_MIN_ELEMS ? 1 : tasks, select_scatter,
                    &c);
}

tg_tensor *tg_index_select(tg_tape *tape, tg_tensor *x, int dim, const tg_index *index) {
    TG_CHECK_OP(tape, x);
    TG_CHECK_INDEX_INPUT(tape, index);
    char xd[160], sd[96];
    const int d = tg_dim_normalize("tg_index_select", x, dim);
    if (index->ndim > 1)
        tg_fail("tg_index_select: index %s must be 1-D (or a scalar) to select along dim %d of %s",
                tg_shape_format(index->ndim, index->shape, sd, sizeof sd), dim,
                tg_tensor_describe(x, xd, sizeof xd));
    ids_check("tg_index_select", index, x->shape[d], x, dim);
    int64_t shape[TG_MAX_DIMS], outer = 1, inner = 1;
    for (int k = 0; k < x->ndim; k++) {
        shape[k] = k == d ? index->numel : x->shape[k];
        if (k < d) outer *= x->shape[k];
        if (k > d) inner *= x->shape[k];
    }
    tg_tensor *y = tg_tape_tensor(tape, x->ndim, shape);
    const int64_t K = index->numel;
    select_ctx c = {index->data, x->data, y->data, x->shape[d], inner, K, 0};
    tg_parallel_for(outer * K, y->numel >= PARALLEL_MIN_ELEMS ? 1 : outer * K, select_rows, &c);
    tg_node *node = tg_tape_record(tape, "index_select", index_select_backward, 1,
                                   (tg_tensor *[]){x}, 1, (tg_tensor *[]){y});
    if (node) {
        node->saved = ids_copy(tape, index);
        node->iarg[0] = outer, node->iarg[1] = x->shape[d], node->iarg[2] = inner;
        node->iarg[3] = K;
    }
    return y;
}

/* ---------------------------------------------------------------------------------------- */
/* From index tensors to real ones (no gradient: indices are not differentiable). */

tg_tensor *tg_one_hot(tg_tape *tape, const tg_index *ix, int64_t num_classes) {
    TG_CHECK_ARG(tape);
    TG_CHECK_INDEX_INPUT(tape, ix);
    char sd[96], pd[96];
    if (ix->ndim + 1 > TG_MAX_DIMS)
        tg_fail("tg_one_hot: index %s has %d dims; the output would have more than %d",
                tg_shape_format(ix->ndim, ix->shape, sd, sizeof sd), ix->ndim, TG_MAX_DIMS);
    int64_t C = num_classes;
    if (num_classes == -1) { /* PyTorch: one more than the largest value */
        if (ix->numel == 0)
            tg_fail("tg_one_hot: cannot infer num_classes from the empty index %s",
                    tg_shape_format(ix->ndim, ix->shape, sd, sizeof sd));
        C = 0;
        for (int64_t i = 0; i < ix->numel; i++)
            C = (int64_t)ix->data[i] + 1 > C ? (int64_t)ix->data[i] + 1 : C;
    } else if (num_classes < 0) {
        tg_fail("tg_one_hot: num_classes %lld must be non-negative, or -1 to infer it",
                (long long)num_classes);
    }
    for (int64_t i = 0; i < ix->numel; i++)
        if (ix->data[i] < 0 || ix->data[i] >= C) {
            format_position(ix, i, pd, sizeof pd);
            tg_fail("tg_one_hot: class %d at position %s of index %s is out of range [0, %lld)",
                    (int)ix->data[i], pd, tg_shape_format(ix->ndim, ix->shape, sd, sizeof sd),
                    (long long)C);
        }
    int64_t shape[TG_MAX_DIMS];
    if (ix->ndim) memcpy(shape, ix->shape, (size_t)ix->ndim * sizeof *shape);
    shape[ix->ndim] = C;
    tg_tensor *y = tg_tape_tensor_zeros(tape, ix->ndim + 1, shape);
    for (int64_t i = 0; i < ix->numel; i++) y->data[i * C + ix->data[i]] = 1;
    return y;
}

tg_tensor *tg_index_eq(tg_tape *tape, const tg_index *ix, int32_t value) {
    TG_CHECK_ARG(tape);
    TG_CHECK_INDEX_INPUT(tape, ix);
    tg_tensor *y = tg_tape_tensor(tape, ix->ndim, ix->shape);
    for (int64_t i = 0; i < ix->numel; i++) y->data[i] = ix->data[i] == value ? 1 : 0;
    return y;
}

tg_tensor *tg_index_to_tensor(tg_tape *tape, const tg_index *ix) {
    TG_CHECK_ARG(tape);
    TG_CHECK_INDEX_INPUT(tape, ix);
    tg_tensor *y = tg_tape_tensor(tape, ix->ndim, ix->shape);
    for (int64_t i = 0; i < ix->numel; i++) y->data[i] = (tg_real)ix->data[i];
    return y;
}
