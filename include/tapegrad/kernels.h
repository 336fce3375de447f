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
             const tg_real *a, int64_t lda, const tg_real *b, int64_t ldb, tg_real beta, tg_real *c,
             int64_t ldc);

/* ---- GEMM with a pre-packed operand ----
 * For a product whose right operand is used many times (the recurrent weights, multiplied
 * at every step of a sequence): op(B) is packed once, then
 *
 *     C[:, n0:n1] = alpha * op(A) * op(B)[:, n0:n1] + beta * C[:, n0:n1]
 *
 * is taken from it any number of times, with the micro-kernels and the run-time choice of
 * tg_gemm (avx512 / avx2 / portable, tg_gemm_force_portable included: the kernel is fixed
 * when B is packed). What is packed: op(B) (k x n, given as tg_gemm takes B, trans_b
 * included), copied into the kernel's panels; the layout is private to tensor/ and may
 * change with the kernel. The caller gives the memory (no malloc: a tape arena's block
 * does), at least tg_gemm_packed_size(k, n) bytes, any alignment; the packed operand
 * lives there and refers to nothing else, so B may change or go once it is packed.
 *
 * Determinism: every element of C is summed over k in increasing order in one
 * accumulator per k block of the kernel (the blocks added to C in order), exactly as
 * tg_gemm sums it; so tg_gemm_prepacked gives the same bits as tg_gemm on the same
 * operands (except where tg_gemm takes its dot-product form, C = A B^T with at most 8
 * rows, whose sums run in another order, and the -Dblas build, where tg_gemm is
 * OpenBLAS's), and the same bits for a row or column of C
 * whatever rows and columns a call computes: callers split the rows, or the columns at
 * multiples of tg_gemm_packed_width, between threads and get bit-identical results at any
 * thread count (the fused RNN relies on this). */
typedef struct tg_gemm_packed tg_gemm_packed;

/* Bytes of memory tg_gemm_pack_b needs for a k x n op(B) with the current kernel. */
size_t tg_gemm_packed_size(int64_t k, int64_t n);
/* Packs op(B) (k x n: B itself, k x n with row stride ldb, or, when trans_b, B stored
 * n x k) into buf (size bytes; fails if fewer than tg_gemm_packed_size) and returns the
 * packed operand, which lives in buf. Large operands are packed by the library's
 * threads (tg_parallel_for): call it outside a parallel region. */
tg_gemm_packed *tg_gemm_pack_b(bool trans_b, int64_t k, int64_t n, const tg_real *b, int64_t ldb,
                               void *buf, size_t size);
/* The columns of one packed panel: a column range [n0, n1) starts at a multiple of it
 * (n1 may be any column up to n). */
int64_t tg_gemm_packed_width(const tg_gemm_packed *pb);
/* The rows of the register tile of the kernel it was packed for: a product with at least
 * this many rows runs whole tiles (callers splitting rows between threads give each at
 * least this many). */
int64_t tg_gemm_packed_tile_rows(const tg_gemm_packed *pb);
/* C (m x (n1 - n0), row stride ldc; c points at C's column n0) = alpha * op(A) *
 * op(B)[:, n0:n1] + beta * C, with op(A) m x k as in tg_gemm (trans_a: A stored k x m)
 * and op(B) the packed operand. beta == 0: C is write-only. Runs on the calling thread
 * (it may be one of a tg_parallel_for body's). */
void tg_gemm_prepacked(bool trans_a, int64_t m, int64_t n0, int64_t n1, tg_real alpha,
                       const tg_real *a, int64_t lda, const tg_gemm_packed *pb, tg_real beta,
                       tg_real *c, int64_t ldc);

/* Which micro-kernel tg_gemm uses: "avx512", "avx2" (AVX2 + FMA) or "portable",
 * picked once at run time from the CPU's features. */
const char *tg_gemm_kernel_name(void);
/* The choice made for this CPU, for benchmarks' logs: kernel, register tile, cache blocks,
 * thread threshold and what they were chosen from, e.g. "avx512 tile 12x32 kc=256 mc=252
 * nc=4096 threads above 1048576 FMAs (AuthenticAMD family 19h model 11h, zen4: 512-bit
 * split; L1d 32K L2 1024K L3 32M)". The tile, mc, nc and the thread split vary with the
 * CPU; kc does not, so neither do the bits of a kernel's results (tensor/gemm_tune.c).
 * The environment variable TAPEGRAD_GEMM=portable|avx2|avx512 forces a choice. */
const char *tg_gemm_config_describe(void);
/* Multiply-adds below which tg_gemm runs a product on the calling thread (per CPU). */
int64_t tg_gemm_parallel_min(void);
/* Whether `threads` threads that multiply `rows` rows, step after step, by one packed
 * operand of `bytes` bytes should each take whole rows (and read ALL of the operand each
 * time: it must stay in the thread's L2) rather than each a share of its columns (per CPU:
 * L2 size, register tile height). */
bool tg_gemm_packed_split_rows(size_t bytes, int64_t rows, int threads);
/* For tests and benchmarks: use the kernel named ("portable", "avx2", "avx512"; NULL:
 * back to this CPU's choice). False, and no change,
 * when this CPU cannot run it. Operands packed before keep the kernel they were packed
 * for. Not meant to be called while another thread is inside tg_gemm. */
bool tg_gemm_select(const char *choice);
/* For tests and benchmarks: on = use the portable C kernels whatever the CPU has.
 * Not meant to be toggled while another thread is inside tg_gemm. */
void tg_gemm_force_portable(bool on);

#endif
