/* tapegrad/broadcast.h — NumPy/PyTorch broadcasting for kernels that combine tensors of
 * different shapes: the broadcast shape (with a clear error), an iteration plan that turns
 * any broadcast into rows of plain contiguous loops, and the reduction that sums a
 * gradient back to an input's shape.
 * Layer: tensor.
 *
 * Rules (as NumPy): shapes are aligned at their last dim; missing leading dims count as 1;
 * two sizes fit if they are equal or one of them is 1. (2, 3) with (3,) gives (2, 3);
 * (2, 1, 4) with (3, 1) gives (2, 3, 4); () fits everything.
 *
 * The plan merges neighbouring dims in which every operand behaves alike (all present, or
 * the same ones broadcast), so that the common cases become one loop:
 *   same shapes            -> 1 dim: one contiguous loop over numel
 *   (2, 3) with (3,)       -> 2 dims: rows of 3; the second operand restarts at each row
 *   (2, 3) with (1,) or () -> 1 dim: the second operand has stride 0 (a scalar)
 * Each operand's stride in the innermost (row) dim is 1 or 0. */
#ifndef TAPEGRAD_BROADCAST_H
#define TAPEGRAD_BROADCAST_H

#include "tapegrad/tensor.h"

/* Largest number of operands a plan describes (tg_where uses 3). */
#define TG_BCAST_MAX_OPS 4

/* The broadcast shape of n shapes. Returns false if they do not broadcast; then *bad_dim
 * (if not NULL) receives the first offending dim counted from the end (-1 = last). */
bool tg_broadcast_shapes(int n, const int *ndims, const int64_t *const *shapes, int *out_ndim,
                         int64_t *out_shape, int *bad_dim);

/* For ops: the broadcast shape of n tensors (n <= TG_BCAST_MAX_OPS), written to out_shape;
 * returns its ndim. On a mismatch it stops through tg_fail with
 *   "<op>: shapes (2, 3) 'x' and (4,) 'b' cannot be broadcast (size 3 vs 4 at dim -1)". */
int tg_broadcast_tensors(const char *op, int n, const tg_tensor *const *ts, int64_t *out_shape);

/* True if `from` broadcasts to exactly `to` (e.g. a mask that must fit a tensor's shape). */
bool tg_broadcast_fits(int from_ndim, const int64_t *from, int to_ndim, const int64_t *to);

/* ---- iteration plan ---- */
typedef struct tg_bcast {
    int n_ops;
    int ndim;                                      /* merged dims, >= 1 */
    int64_t size[TG_MAX_DIMS];                     /* merged sizes, outermost first */
    int64_t stride[TG_BCAST_MAX_OPS][TG_MAX_DIMS]; /* element strides; 0 where broadcast */
    int64_t numel;                                 /* elements of the output */
    int64_t inner;                                 /* size[ndim - 1]: length of a row */
    int64_t rows;                                  /* numel / inner (0 if numel is 0) */
} tg_bcast;

/* Plans the iteration over `out_shape` of n operands whose shapes broadcast to it (fails
 * otherwise). The output is contiguous with out_shape; operand k starts at row r at offset
 * off[k] and steps by stride[k][ndim - 1] (0 or 1) along the row. */
void tg_bcast_init(tg_bcast *p, int out_ndim, const int64_t *out_shape, int n, const int *ndims,
                   const int64_t *const *shapes);
/* Same, with the operands' shapes taken from tensors. */
void tg_bcast_init_tensors(tg_bcast *p, int out_ndim, const int64_t *out_shape, int n,
                           const tg_tensor *const *ts);

/* Positions the odometer `idx` (ndim - 1 entries) and the operands' offsets at row r
 * (divisions: once per chunk of rows, not per row). */
void tg_bcast_row_start(const tg_bcast *p, int64_t r, int64_t *idx, int64_t *off);

/* Steps idx/off from one row to the next (no divisions). */
static inline void tg_bcast_row_next(const tg_bcast *p, int64_t *idx, int64_t *off) {
    for (int d = p->ndim - 2; d >= 0; d--) {
        for (int k = 0; k < p->n_ops; k++) off[k] += p->stride[k][d];
        if (++idx[d] < p->size[d]) return;
        for (int k = 0; k < p->n_ops; k++) off[k] -= p->stride[k][d] * p->size[d];
        idx[d] = 0;
    }
}

/* ---- kernels ---- */

/* dx += alpha * (g summed over the dims in which x was broadcast to g's shape): the
 * gradient of a broadcast input. x's shape must broadcast to g's. Sums are accumulated in
 * double and added once per element of dx (accurate, and the same at any thread count). */
void tg_broadcast_sum_to(tg_real *dx, int x_ndim, const int64_t *x_shape, const tg_real *g,
                         int g_ndim, const int64_t *g_shape, tg_real alpha);

/* y (out_shape, contiguous) = x broadcast to out_shape (x's shape must broadcast to it). */
void tg_broadcast_expand(tg_real *y, int out_ndim, const int64_t *out_shape, const tg_real *x,
                         int x_ndim, const int64_t *x_shape);

#endif
