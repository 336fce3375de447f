/* Indexing: embedding lookup (rows of a weight gathered by integer ids). */
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
