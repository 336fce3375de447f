/* tensor/gemm_internal.h — what the GEMM driver (gemm.c) and its micro-kernels
 * (gemm.c's portable one, gemm_avx2.c, gemm_avx512.c) agree on. Not installed.
 *
 * A micro-kernel family is two functions plus the block sizes that suit it:
 *
 *  tile: C[0:mr, 0:nr] (+)= alpha * A[0:mr, 0:kc] * B[0:kc, 0:nr], the register tile.
 *        A element (i, p) is read at a[i*a_rs + p*a_cs]. The packed layout the driver
 *        makes is a_rs = 1, a_cs = MR (a panel of MR rows, one column of MR values per
 *        p, zero-padded past mr); the kernels recognise it and use constant offsets.
 *        B row p is read at b + p*b_rs, NR contiguous values (b_rs = NR when packed, or
 *        the row stride of a row-major B read in place). All NR values must be readable
 *        even when nr < NR (the driver packs a zero-padded edge panel).
 *        b_copy (NULL: none): also store each of the kc rows of NR values read from B at
 *        b_copy + p*NR — packing B on the fly while the first tile of a panel reads it
 *        in place, so the copy costs only stores hidden under the FMAs instead of a
 *        separate pass whose loads wait on L2/L3. Only with the packed A layout.
 *        Write-back: beta == 0 stores alpha*acc (C is not read), otherwise
 *        C = fma(alpha, acc, beta*C) lane by lane. mr <= MR, nr <= NR.
 *
 *  dot:  C[0:mr, 0:nr] (+)= alpha * A * B^T with A rows at a + i*lda and B rows at
 *        b + j*ldb, both contiguous over the whole k: the GEMM-as-dot-products form
 *        used when trans_b and m is small, where packing B would cost more than it
 *        saves. mr <= dot_mr, nr <= dot_nr.
 *
 * Every kernel sums each element's k products in increasing p order into one
 * accumulator lane per element (the dot kernel: lanes over p, then a fixed
 * horizontal sum), so a given element gets the same bits whichever tile, thread or
 * block it lands in. */
#ifndef TAPEGRAD_GEMM_INTERNAL_H
#define TAPEGRAD_GEMM_INTERNAL_H

#include "tapegrad/base.h"

#define TG_INTERNAL __attribute__((visibility("hidden")))

typedef void tg_gemm_tile_fn(int mr, int nr, int64_t kc, const tg_real *a, int64_t a_rs,
                             int64_t a_cs, const tg_real *b, int64_t b_rs, tg_real *b_copy,
                             tg_real alpha, tg_real beta, tg_real *c, int64_t ldc);
typedef void tg_gemm_dot_fn(int mr, int nr, int64_t k, const tg_real *a, int64_t lda,
                            const tg_real *b, int64_t ldb, tg_real alpha, tg_real beta, tg_real *c,
                            int64_t ldc);

/* Packs a full panel of a transposed B: out[p*NR + j] = b[j*ldb + p] for p < kc, j < NR
 * (a transpose; the generic C loop moves one value per instruction). */
typedef void tg_gemm_pack_bt_fn(int64_t kc, const tg_real *b, int64_t ldb, tg_real *out);

/* Packs one panel of a row-major A: out[p*MR + i] = a[i*lda + p] for p < kc, i < h
 * (h <= MR), zero for h <= i < MR (another transpose). May write up to MR values past
 * out + kc*MR: the driver packs panels in increasing order and keeps that much slack
 * after the last one. */
typedef void tg_gemm_pack_a_fn(int h, int64_t kc, const tg_real *a, int64_t lda, tg_real *out);

/* Packs the tiles of a transposed A (stored k x m, op(A) = A^T): for p < kc, the row
 * a + p*lda holds h[0] values of tile 0, then h[1] of tile 1, ...; tile t's values go to
 * out[(t*kc + p)*MR + i] for i < h[t], zero for h[t] <= i < MR. */
typedef void tg_gemm_pack_at_fn(int64_t kc, const tg_real *a, int64_t lda, const int *h, int tiles,
                                tg_real *out);

typedef struct tg_gemm_kernel {
    const char *name;
    int mr, nr;         /* register tile of `tile` */
    int dot_mr, dot_nr; /* tile of `dot` */
    /* cache blocks: A block mc x kc (L2), B panel kc x NR (L1), B block kc x nc (L3) */
    int64_t mc, kc, nc;
    tg_gemm_tile_fn *tile;
    tg_gemm_dot_fn *dot;
    tg_gemm_pack_bt_fn *pack_bt; /* NULL: the generic loop */
    tg_gemm_pack_a_fn *pack_a;   /* NULL: the generic loop */
    tg_gemm_pack_at_fn *pack_at; /* NULL: the generic loop */
} tg_gemm_kernel;

/* NULL when the compiler could not build them (not x86-64, or no target attribute). */
TG_INTERNAL const tg_gemm_kernel *tg_gemm_avx2_kernel_get(void);
TG_INTERNAL const tg_gemm_kernel *tg_gemm_avx512_kernel_get(void);

/* ---- the per-CPU choice (gemm_tune.c) ---- */
/* This CPU's kernel with its blocks set for its caches (TAPEGRAD_GEMM may force another);
 * NULL: the portable one. Decided once. */
TG_INTERNAL const tg_gemm_kernel *tg_gemm_tuned_kernel(void);
/* The tuned kernel of a choice name ("avx512", "avx2"), NULL when this CPU (or the
 * compiler) has none. */
TG_INTERNAL const tg_gemm_kernel *tg_gemm_tuned_choice(const char *name);
/* "avx512 tile 12x32 ... (the CPU)" for a tuned kernel, NULL for another. */
TG_INTERNAL const char *tg_gemm_tuned_describe(const tg_gemm_kernel *k);

/* ---- what the pre-packed entry (gemm_packed.c) shares with the driver (gemm.c) ---- */

/* The kernel tg_gemm uses now: the CPU's best, or the portable one while forced. */
TG_INTERNAL const tg_gemm_kernel *tg_gemm_kernel_current(void);

/* One call's arguments, shared by the threads and the helpers below. */
typedef struct tg_gemm_call {
    const tg_gemm_kernel *kern;
    bool trans_a, trans_b;
    int64_t m, n, k;
    tg_real alpha, beta;
    const tg_real *a, *b;
    int64_t lda, ldb, ldc;
    tg_real *c;
    bool direct_a; /* read A in place instead of packing it */
    bool direct_b; /* read row-major B in place instead of packing it */
} tg_gemm_call;

#define TG_GEMM_MAX_TILES 512 /* row tiles in one mc block: mc / MR, bounded by mc <= 1024 */

/* Splits mc rows into as few register tiles as MR allows, of heights as even as possible
 * (in h); returns the tile count. */
TG_INTERNAL int tg_gemm_row_tiles(int64_t mc, int mr, int *h, int max_tiles);
/* Row blocks of at most mc rows over m rows, as few as mc allows and of even heights (256
 * rows with mc = 252: 128 + 128, not 252 + 4, whose 4-row tile runs at a third of the
 * speed): block i of `blocks` starts at row m·i / blocks. Rows never mix: the split does
 * not change a bit. */
static inline int64_t tg_gemm_row_blocks(int64_t m, int64_t mc) { return (m + mc - 1) / mc; }
static inline int64_t tg_gemm_row_block_start(int64_t m, int64_t blocks, int64_t i) {
    return m * i / blocks;
}
/* Packs op(B)[p0 : p0+kc, j0 : j0+nr] (nr <= NR) into one kc x NR panel, zero-padded
 * (reads g's kern, trans_b, b, ldb). */
TG_INTERNAL void tg_gemm_pack_b_panel(const tg_gemm_call *g, int64_t p0, int64_t kc, int64_t j0,
                                      int nr, tg_real *out);
/* The register tiles of one k block (pc, kc; beta: the caller's on the first block, 1 on
 * the later ones) over columns jc.. jc+nc of C and the rows ic.. in `tiles` tiles of the
 * given heights. B from bpack (panel q at q*kc*NR), A packed at apack or, NULL, read in
 * place with g's strides; fly: see gemm.c. */
TG_INTERNAL void tg_gemm_tiles(const tg_gemm_call *g, int64_t pc, int64_t kc, tg_real beta,
                               int64_t jc, int64_t nc, const tg_real *bpack, int64_t ic,
                               const int *heights, int tiles, const tg_real *apack, tg_real *fly);
/* C = beta * C on m x n (beta 0: zeros, not 0 * C: NaN does not leak). */
TG_INTERNAL void tg_gemm_scale(int64_t m, int64_t n, tg_real beta, tg_real *c, int64_t ldc);
/* What tg_gemm and tg_gemm_prepacked (fn, in messages) do first: fail on a short ldc or
 * lda, do the empty and the C = beta * C cases (k == 0, alpha == 0); true when a product
 * is left to compute. */
TG_INTERNAL bool tg_gemm_prologue(const char *fn, bool trans_a, int64_t m, int64_t n, int64_t k,
                                  tg_real alpha, int64_t lda, tg_real beta, tg_real *c,
                                  int64_t ldc);

#endif
