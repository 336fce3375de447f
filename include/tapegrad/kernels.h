/* tapegrad/kernels.h — plain array kernels of the tensor layer (no tensors, no gradients).
 * Layer: tensor.
 *
 * Every function here works on raw row-major arrays of tg_real. The autograd layer
 * builds its forward and backward passes from them, so one optimisation here speeds
 * every op that uses it. Each family has its own section below. */
#ifndef TAPEGRAD_KERNELS_H
#define TAPEGRAD_KERNELS_H

#include "tapegrad/base.h"

/* ---- threads ----
 * The number of threads the kernels may use (OpenMP). n <= 0 restores the default:
 * OpenMP's own (OMP_NUM_THREADS, else one per core). Without OpenMP it is always 1.
 * Results never depend on it: the kernels split work only where the order of every
 * sum stays the same, so 1 and 2 threads give bit-identical numbers. */
void tg_set_num_threads(int n);
int tg_get_num_threads(void);

/* Runs body(begin, end, ctx) over [0, n): split into one contiguous range per thread when
 * more than one thread is set and n >= 2 * grain, else called once with [0, n) on the
 * calling thread. The serial case never enters an OpenMP region: libgomp allocates a
 * team for every region, even a one-thread one, and a training step must not malloc.
 * The ranges depend only on n and the thread count; a body that writes only its own
 * outputs gives the same bits whatever the split. */
typedef void (*tg_range_fn)(int64_t begin, int64_t end, void *ctx);
void tg_parallel_for(int64_t n, int64_t grain, tg_range_fn body, void *ctx);

/* ---- GEMM ----
 * The single matrix-product entry point of the library. Row-major:
 *
 *     C = alpha * op(A) * op(B) + beta * C
 *
 * C is m x n with row stride ldc; op(A) is m x k: A itself (m x k, row stride lda), or,
 * when trans_a, A is stored k x m and op(A) = A^T; op(B) is k x n: B (k x n, row stride
 * ldb), or, when trans_b, B is stored n x k. Strides may be larger than the widths.
 * beta == 0 makes C write-only (whatever C held, NaN included, does not leak);
 * k == 0 or alpha == 0 give C = beta * C without reading A or B; m == 0 or n == 0 do
 * nothing. C must not overlap A or B.
 *
 * Deterministic: the k-sum of every element is always accumulated in the same order,
 * whatever the thread count. */
void tg_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, tg_real alpha,
             const tg_real *a, int64_t lda, const tg_real *b, int64_t ldb, tg_real beta,
             tg_real *c, int64_t ldc);

/* Which micro-kernel tg_gemm uses: "avx512", "avx2" (AVX2 + FMA) or "portable",
 * picked once at run time from the CPU's features. */
const char *tg_gemm_kernel_name(void);
/* For tests and benchmarks: on = use the portable C kernels whatever the CPU has.
 * Not meant to be toggled while another thread is inside tg_gemm. */
void tg_gemm_force_portable(bool on);

#endif
