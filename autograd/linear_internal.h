/* autograd/linear_internal.h — the linear layer's checks, forward and backward (matmul.c),
 * shared with the ops that fuse a linear with what follows it (fused.c, linear_ce.c), so
 * that they have tg_linear's messages and bits. Not installed. */
#ifndef TAPEGRAD_LINEAR_INTERNAL_H
#define TAPEGRAD_LINEAR_INTERNAL_H

#include "tapegrad/tape.h"

/* Fails, in op's name, unless weight is (out, in), x ends in in and bias is NULL or (out,). */
void linear_check(const char *op, const tg_tensor *x, const tg_tensor *weight,
                  const tg_tensor *bias);
/* y (R, out) = x (R, in)·Wᵀ + b: the rows start as the bias and the GEMM adds to them. */
void linear_rows(int64_t R, const tg_real *x, const tg_tensor *weight, const tg_tensor *bias,
                 tg_real *y);
/* A new tape tensor x·Wᵀ + b, x's leading dims then out (no node recorded). */
tg_tensor *linear_output(tg_tape *t, const tg_tensor *x, const tg_tensor *weight,
                         const tg_tensor *bias);
/* From dy (R, out): dx += dy·W, dW += dyᵀ·x (one GEMM over all R rows), db += Σ_rows dy,
 * for those of x, weight, bias that require grad. */
void linear_grads(tg_tape *tape, tg_tensor *x, tg_tensor *weight, tg_tensor *bias,
                  const tg_real *dy);

#endif
