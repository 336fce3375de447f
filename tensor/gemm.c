/* tensor/gemm.c — the GEMM driver: C = alpha * op(A) * op(B) + beta * C, row-major.
 *
 * How a fast GEMM works, and how this one is laid out
 * ----------------------------------------------------
 * A matrix product does m*n*k multiply-adds on only m*k + k*n + m*n numbers, so every
 * number can be reused many times; speed is about arranging that reuse so the FMA units
 * never wait for memory. The work is cut in five nested loops (the scheme of Goto's
 * GotoBLAS and of BLIS), each sized for one level of the memory hierarchy:
 *
 *   for jc over n in steps of nc          B block  kc x nc  lives in L3
 *     for pc over k in steps of kc        (pack B block into NR-wide panels)
 *       for ic over m in steps of mc      A block  mc x kc  lives in L2
 *                                         (pack A block into MR-tall panels)
 *         for jr over nc in steps of NR   B panel  kc x NR  lives in L1
 *           for ir over mc in steps of MR A panel  kc x MR  streams from L2
 *             micro-kernel: C[MR x NR] += A panel * B panel, accumulators in registers
 *
 * Packing copies a block into exactly the order the micro-kernel reads it: consecutive,
 * aligned, zero-padded to whole panels, whatever the strides and transposes of the
 * caller's matrices. That costs one pass over the block and pays for itself when the
 * block is then read many times (the A block n/NR times, the B block m/MR times); it
 * also makes all four transpose cases one case for the micro-kernel.
 *
 * Small or thin products are different: a 1 x 96 x 32 product in an RNN step does 3072
 * multiply-adds, less than the cost of packing. So:
 *   - tiny products read A and B in place, with no copy: the micro-kernel just steps
 *     through B's rows with B's own stride and picks A's values with A's strides;
 *   - when C has few rows (one A block: the batch-sized products of recurrent layers,
 *     m = 32..144), the k blocks go outermost so A is packed once per k block, and B is
 *     never packed as a block: a row-major B is copied into a kc x NR panel by the first
 *     row tile that reads it in place (the copy rides on that tile's loads), a
 *     transposed B is transposed one panel at a time; either way the panel stays in L1
 *     for the other row tiles;
 *   - when B is transposed (C = A B^T, the forward of a linear layer) and A has few
 *     rows, each C element is a dot product of two contiguous rows, and the dot
 *     kernel computes them with no packing at all.
 * The packings that transpose (row-major A into MR-tall panels, B^T into NR-wide ones)
 * are 8 x 8 register transposes in the SIMD kernels' files.
 *
 * Threads (OpenMP) split the rows or the columns of C into disjoint ranges, one per
 * thread, each running the loops above on its own range with its own packing buffers.
 * The k loop is never split, and the k blocks start at 0, kc, 2kc... whatever the range,
 * so every element of C is summed in the same order at any thread count: results are
 * bit-identical at 1 and 2 threads. Products below about a million multiply-adds run on
 * the calling thread (starting a team would cost more than it saves).
 *
 * Packing buffers are per thread (_Thread_local), 64-byte aligned, allocated on first use
 * and only ever grown, so after the first calls a GEMM does no malloc. */
#ifdef TG_USE_CBLAS
#include <cblas.h>
#ifdef TG_DOUBLE
#define TG_CBLAS_GEMM cblas_dgemm
#else
#define TG_CBLAS_GEMM cblas_sgemm
#endif
#endif
#include "tapegrad/kernels.h"

#include "gemm_internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- the portable micro-kernels (any C compiler, any CPU) ----
 * Plain loops over a 4 x 8 tile of accumulators in a local array; the compiler keeps
 * them in registers and may vectorize the j loop with the baseline instruction set.
 * They also serve as an independent check of the SIMD kernels in the tests. */
#define TG_PORT_MR 4
#define TG_PORT_NR 8

static void tg_gemm_portable_tile(int mr, int nr, int64_t kc, const tg_real *a, int64_t a_rs,
                                  int64_t a_cs, const tg_real *b, int64_t b_rs, tg_real *b_copy,
                                  tg_real alpha, tg_real beta, tg_real *c, int64_t ldc) {
    tg_real acc[TG_PORT_MR][TG_PORT_NR];
    memset(acc, 0, sizeof acc);
    for (int64_t p = 0; p < kc; p++) {
        const tg_real *bp = b + p * b_rs;
        if (b_copy) memcpy(b_copy + p * TG_PORT_NR, bp, sizeof(tg_real) * TG_PORT_NR);
        for (int i = 0; i < mr; i++) {
            const tg_real ai = a[i * a_rs + p * a_cs];
            for (int j = 0; j < TG_PORT_NR; j++) acc[i][j] += ai * bp[j];
        }
    }
    for (int i = 0; i < mr; i++) {
        tg_real *ci = c + i * ldc;
        if (beta == 0)
            for (int j = 0; j < nr; j++) ci[j] = alpha * acc[i][j];
        else
            for (int j = 0; j < nr; j++) ci[j] = alpha * acc[i][j] + beta * ci[j];
    }
}

static void tg_gemm_portable_dot(int mr, int nr, int64_t k, const tg_real *a, int64_t lda,
                                 const tg_real *b, int64_t ldb, tg_real alpha, tg_real beta,
                                 tg_real *c, int64_t ldc) {
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            const tg_real *ai = a + i * lda, *bj = b + j * ldb;
            tg_real s = 0;
            for (int64_t p = 0; p < k; p++) s += ai[p] * bj[p];
            tg_real *cij = c + i * ldc + j;
            *cij = beta == 0 ? alpha * s : alpha * s + beta * *cij;
        }
}

static const tg_gemm_kernel tg_gemm_portable = {
    .name = "portable",
    .mr = TG_PORT_MR,
    .nr = TG_PORT_NR,
    .dot_mr = 1,
    .dot_nr = 1,
    .mc = 128,
    .kc = 256,
    .nc = 2048,
    .tile = tg_gemm_portable_tile,
    .dot = tg_gemm_portable_dot,
    .pack_bt = NULL,
    .pack_a = NULL,
    .pack_at = NULL,
};

/* ---- which kernel ---- */

static atomic_bool tg_gemm_portable_forced = false;
/* tg_gemm_select's choice; NULL: the tuned one (gemm_tune.c) */
static _Atomic(const tg_gemm_kernel *) tg_gemm_selected = NULL;

const tg_gemm_kernel *tg_gemm_kernel_current(void) {
    if (atomic_load_explicit(&tg_gemm_portable_forced, memory_order_relaxed))
        return &tg_gemm_portable;
    const tg_gemm_kernel *k = atomic_load_explicit(&tg_gemm_selected, memory_order_acquire);
    if (k) return k;
    k = tg_gemm_tuned_kernel();
    return k ? k : &tg_gemm_portable;
}

const char *tg_gemm_kernel_name(void) {
#ifdef TG_USE_CBLAS
    if (!atomic_load(&tg_gemm_portable_forced)) return "openblas";
#endif
    return tg_gemm_kernel_current()->name;
}

const char *tg_gemm_config_describe(void) {
#ifdef TG_USE_CBLAS
    if (!atomic_load(&tg_gemm_portable_forced)) return "openblas";
#endif
    const char *d = tg_gemm_tuned_describe(tg_gemm_kernel_current());
    return d ? d : "portable tile 4x8 kc=256 mc=128 nc=2048";
}

bool tg_gemm_select(const char *choice) {
    const tg_gemm_kernel *k = NULL;
    if (choice && strcmp(choice, "portable") == 0)
        k = &tg_gemm_portable;
    else if (choice && !(k = tg_gemm_tuned_choice(choice)))
        return false;
    atomic_store_explicit(&tg_gemm_selected, k, memory_order_release);
    return true;
}

void tg_gemm_force_portable(bool on) { atomic_store(&tg_gemm_portable_forced, on); }

/* ---- per-thread packing buffers ---- */

typedef struct tg_gemm_scratch {
    tg_real *a, *b;
    size_t a_cap, b_cap; /* in elements */
} tg_gemm_scratch;

static _Thread_local tg_gemm_scratch tg_gemm_buffers;

/* A buffer of at least n elements, 64-byte aligned; reallocated only to grow. */
static tg_real *tg_gemm_scratch_reserve(tg_real **buf, size_t *cap, size_t n) {
    if (n > *cap) {
        free(*buf);
        const size_t bytes = (n * sizeof(tg_real) + 4095) & ~(size_t)4095;
        *buf = aligned_alloc(64, bytes);
        if (!*buf) tg_fail("tg_gemm: out of memory allocating %zu bytes of packing buffer", bytes);
        *cap = bytes / sizeof(tg_real);
    }
    return *buf;
}

/* op(A)(i, p) and op(B)(p, j) as strides: element at base + i*rs + p*cs. */
static inline int64_t tg_gemm_a_rs(const tg_gemm_call *g) { return g->trans_a ? 1 : g->lda; }
static inline int64_t tg_gemm_a_cs(const tg_gemm_call *g) { return g->trans_a ? g->lda : 1; }

/* The row tiles of a block of mc rows: as few tiles as MR allows, their heights as even
 * as possible (32 rows with MR = 6: 6 6 5 5 5 5, not 6 6 6 6 6 2), so that no tile is so
 * short that its few FMA chains leave the FMA units waiting: a tile of h rows keeps 2h
 * independent accumulators, and 2 pipes x 4 cycles of latency need 8 in flight (a
 * 2-row tile runs at half speed). Which tile a row lands in does not change its bits:
 * rows never mix. Returns the tile count; heights in h. */
int tg_gemm_row_tiles(int64_t mc, int mr, int *h, int max_tiles) {
    const int tiles = (int)((mc + mr - 1) / mr);
    const int base = (int)(mc / tiles), extra = (int)(mc % tiles);
    for (int t = 0; t < tiles && t < max_tiles; t++) h[t] = base + (t < extra);
    return tiles;
}

#define TG_PACK_AHEAD 4 /* rows of a k-major operand requested ahead of the copy */

/* Packs op(A)[i0 : i0+mc, p0 : p0+kc] as panels of MR rows (tile heights h): panel t holds
 * kc columns of MR values, zero-padded below its height. */
static void tg_gemm_pack_a(const tg_gemm_call *g, int64_t i0, int64_t p0, int64_t kc, const int *h,
                           int tiles, tg_real *out) {
    const int mr = g->kern->mr;
    if (g->trans_a) {
        /* A stored k x m: row p of A holds the block's values for that p contiguously.
         * Read each row segment once, in order, and deal it out to the panels: reading it
         * panel by panel instead walks kc rows (each on its own page when lda is a few KiB)
         * once per panel with every load a miss. The segment a few rows ahead is
         * requested explicitly (the prefetchers start afresh on each page). The SIMD
         * kernels do it with masked vector moves (pack_at). */
        if (g->kern->pack_at) {
            g->kern->pack_at(kc, g->a + p0 * g->lda + i0, g->lda, h, tiles, out);
            return;
        }
        int64_t mc = 0;
        for (int t = 0; t < tiles; t++) mc += h[t];
        for (int64_t p = 0; p < kc; p++) {
            const tg_real *src = g->a + (p0 + p) * g->lda + i0;
            if (p + TG_PACK_AHEAD < kc)
                for (int64_t j = 0; j < mc; j += 64 / (int64_t)sizeof(tg_real))
                    __builtin_prefetch(src + TG_PACK_AHEAD * g->lda + j, 0, 3);
            for (int t = 0; t < tiles; t++) {
                tg_real *dst = out + ((int64_t)t * kc + p) * mr;
                const int ht = h[t];
                for (int i = 0; i < ht; i++) dst[i] = src[i];
                for (int i = ht; i < mr; i++) dst[i] = 0;
                src += ht;
            }
        }
        return;
    }
    int64_t row = i0;
    for (int t = 0; t < tiles; t++) {
        tg_real *panel = out + (int64_t)t * kc * mr;
        const int ht = h[t];
        if (g->kern->pack_a) {
            g->kern->pack_a(ht, kc, g->a + row * g->lda + p0, g->lda, panel);
        } else {
            /* A row-major: each of the ht rows is contiguous over p. */
            for (int i = 0; i < ht; i++) {
                const tg_real *src = g->a + (row + i) * g->lda + p0;
                for (int64_t p = 0; p < kc; p++) panel[p * mr + i] = src[p];
            }
            if (ht < mr)
                for (int64_t p = 0; p < kc; p++)
                    for (int i = ht; i < mr; i++) panel[p * mr + i] = 0;
        }
        row += ht;
    }
}

/* Packs op(B)[p0 : p0+kc, j0 : j0+nr] (nr <= NR) into one kc x NR panel, zero-padded. */
void tg_gemm_pack_b_panel(const tg_gemm_call *g, int64_t p0, int64_t kc, int64_t j0, int nr,
                          tg_real *out) {
    const int NR = g->kern->nr;
    if (!g->trans_b) {
        for (int64_t p = 0; p < kc; p++) {
            const tg_real *src = g->b + (p0 + p) * g->ldb + j0;
            tg_real *dst = out + p * NR;
            for (int j = 0; j < nr; j++) dst[j] = src[j];
            for (int j = nr; j < NR; j++) dst[j] = 0;
        }
    } else if (nr == NR && g->kern->pack_bt) {
        g->kern->pack_bt(kc, g->b + j0 * g->ldb + p0, g->ldb, out);
    } else {
        /* B stored n x k: column j of op(B) is row j0 + j of B, contiguous over p.
         * Read each row once, write it down the panel with stride NR (the panel,
         * kc x NR, stays in L1 while it is filled). */
        for (int j = 0; j < nr; j++) {
            const tg_real *src = g->b + (j0 + j) * g->ldb + p0;
            for (int64_t p = 0; p < kc; p++) out[p * NR + j] = src[p];
        }
        if (nr < NR)
            for (int64_t p = 0; p < kc; p++)
                for (int j = nr; j < NR; j++) out[p * NR + j] = 0;
    }
}

/* Packs op(B)[p0 : p0+kc, j0 : j0+nc] as consecutive kc x NR panels. Row-major B is read
 * row by row (for each p, the whole nc-wide segment, spread over the panels): contiguous
 * reads that the hardware prefetchers follow. Reading it panel by panel instead (64 bytes
 * from each of kc rows, then the next 64) puts every read on a new page when the row
 * stride is a few KiB, and the prefetchers stop at page boundaries. Transposed B is read
 * panel by panel: its rows are already contiguous over p. */
static void tg_gemm_pack_b_block(const tg_gemm_call *g, int64_t p0, int64_t kc, int64_t j0,
                                 int64_t nc, tg_real *out) {
    const int NR = g->kern->nr;
    const int64_t full = nc / NR, last = nc - full * NR;
    if (g->trans_b) {
        for (int64_t q = 0; q < full; q++)
            tg_gemm_pack_b_panel(g, p0, kc, j0 + q * NR, NR, out + q * kc * NR);
    } else {
        /* NR as a constant where it is one, so that each copy is a few vector moves.
         * Each row segment is usually on its own page, where the hardware prefetchers
         * start afresh, so the segment a few rows ahead is requested explicitly. */
#define TG_PACK_ROWS(W)                                                                            \
    for (int64_t p = 0; p < kc; p++) {                                                             \
        const tg_real *src = g->b + (p0 + p) * g->ldb + j0;                                        \
        if (p + TG_PACK_AHEAD < kc)                                                                \
            for (int64_t j = 0; j < nc; j += 64 / (int64_t)sizeof(tg_real))                        \
                __builtin_prefetch(src + TG_PACK_AHEAD * g->ldb + j, 0, 3);                        \
        tg_real *dst = out + p * (W);                                                              \
        for (int64_t q = 0; q < full; q++)                                                         \
            memcpy(dst + q * kc * (W), src + q * (W), (size_t)(W) * sizeof(tg_real));              \
    }
        if (NR == 8) {
            TG_PACK_ROWS(8)
        } else if (NR == 16) {
            TG_PACK_ROWS(16)
        } else if (NR == 32) {
            TG_PACK_ROWS(32)
        } else {
            TG_PACK_ROWS(NR)
        }
#undef TG_PACK_ROWS
    }
    if (last) tg_gemm_pack_b_panel(g, p0, kc, j0 + full * NR, (int)last, out + full * kc * NR);
}

/* Columns per B block when the rows fit in one A block (m <= mc) and the product is
 * tiny enough to read A or B in place (the other few-rows products pack B panel by
 * panel, see tg_gemm_blocked): every B panel is used by that one A block only, so a
 * small block that stays in L1/L2 is enough. */
#ifndef TG_GEMM_NC_THIN
#define TG_GEMM_NC_THIN 256
#endif

/* B for one k block and one column block: the whole block packed (reused by every A
 * block), or (tiny products) read in place with only a ragged last panel packed. */
static const tg_real *tg_gemm_b_block(const tg_gemm_call *g, int64_t pc, int64_t kc, int64_t jc,
                                      int64_t nc) {
    const int NR = g->kern->nr;
    tg_gemm_scratch *s = &tg_gemm_buffers;
    const int64_t panels = (nc + NR - 1) / NR;
    tg_real *bpack;
    if (g->direct_b) {
        bpack = tg_gemm_scratch_reserve(&s->b, &s->b_cap, (size_t)(kc * NR));
        const int last = (int)(nc - (panels - 1) * NR);
        if (last < NR) tg_gemm_pack_b_panel(g, pc, kc, jc + (panels - 1) * NR, last, bpack);
    } else {
        bpack = tg_gemm_scratch_reserve(&s->b, &s->b_cap, (size_t)(panels * kc * NR));
        tg_gemm_pack_b_block(g, pc, kc, jc, nc, bpack);
    }
    return bpack;
}

/* The two register-tile loops: the B block (k block pc, columns jc..jc+nc, from
 * tg_gemm_b_block) against the A rows ic.. in `tiles` tiles of the given heights, packed
 * at apack (NULL: A read in place). beta is the k block's: the caller's on the first,
 * 1 on the later ones (they add to what the first left).
 * fly (with a packed A and row-major B only): B is not packed beforehand; instead each
 * panel's first tile reads B in place and copies it to fly (kc x NR, stays in L1), where
 * the panel's other tiles read it (see b_copy in gemm_internal.h). bpack is unused. */
void tg_gemm_tiles(const tg_gemm_call *g, int64_t pc, int64_t kc, tg_real beta, int64_t jc,
                   int64_t nc, const tg_real *bpack, int64_t ic, const int *heights, int tiles,
                   const tg_real *apack, tg_real *fly) {
    const tg_gemm_kernel *kern = g->kern;
    const int MR = kern->mr, NR = kern->nr;
    const int64_t panels = (nc + NR - 1) / NR;
    const int64_t a_rs = tg_gemm_a_rs(g), a_cs = tg_gemm_a_cs(g);
    for (int64_t q = 0; q < panels; q++) {
        const int nr = (int)(nc - q * NR < NR ? nc - q * NR : NR);
        const tg_real *bq = bpack, *b_first = NULL;
        int64_t b_rs = NR, b_first_rs = NR;
        tg_real *b_copy = NULL;
        if (fly) {
            bq = fly;
            if (nr < NR || g->trans_b) {
                tg_gemm_pack_b_panel(g, pc, kc, jc + q * NR, nr, fly);
            } else {
                b_first = g->b + pc * g->ldb + jc + q * NR;
                b_first_rs = g->ldb;
                b_copy = tiles > 1 ? fly : NULL;
            }
        } else if (!g->direct_b) {
            bq = bpack + q * kc * NR;
        } else if (nr == NR) {
            bq = g->b + pc * g->ldb + jc + q * NR;
            b_rs = g->ldb;
        }
        tg_real *cq = g->c + jc + q * NR;
        int64_t row = ic;
        for (int t = 0; t < tiles; t++) {
            if (apack && t == 0 && b_first)
                kern->tile(heights[t], nr, kc, apack, 1, MR, b_first, b_first_rs, b_copy, g->alpha,
                           beta, cq + row * g->ldc, g->ldc);
            else if (apack)
                kern->tile(heights[t], nr, kc, apack + (int64_t)t * kc * MR, 1, MR, bq, b_rs, NULL,
                           g->alpha, beta, cq + row * g->ldc, g->ldc);
            else
                kern->tile(heights[t], nr, kc, g->a + row * a_rs + pc * a_cs, a_rs, a_cs, bq, b_rs,
                           NULL, g->alpha, beta, cq + row * g->ldc, g->ldc);
            row += heights[t];
        }
    }
}

/* Packs op(A)[ic : ic+mc, pc : pc+kc] into this thread's A buffer (NULL: A is read in
 * place); the tile heights are in heights. */
static const tg_real *tg_gemm_a_block(const tg_gemm_call *g, int64_t ic, int64_t pc, int64_t kc,
                                      const int *heights, int tiles) {
    if (g->direct_a) return NULL;
    tg_gemm_scratch *s = &tg_gemm_buffers;
    tg_real *buf =
        tg_gemm_scratch_reserve(&s->a, &s->a_cap, (size_t)((tiles * kc + 1) * g->kern->mr));
    tg_gemm_pack_a(g, ic, pc, kc, heights, tiles, buf);
    return buf;
}

/* The five loops on C[m0:m1, n0:n1] (see the top of the file). */
static void tg_gemm_blocked(const tg_gemm_call *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    const tg_gemm_kernel *kern = g->kern;
    const int64_t MC = kern->mc, KC = kern->kc;
    int heights[TG_GEMM_MAX_TILES];

    if (m1 - m0 <= MC) {
        /* Few rows, one A block (the batch-sized products of recurrent layers): the k
         * blocks go outermost, so the A block is packed once per k block rather than once
         * per B block (with nc = 256 and n = 2048 that was 8 times: as much work as a
         * fifth of the FMAs), and B blocks are sized for L2 (TG_GEMM_NC_THIN). */
        const int tiles = tg_gemm_row_tiles(m1 - m0, kern->mr, heights, TG_GEMM_MAX_TILES);
        /* No B blocks: row-major B (the backward products dY W and dY^T X) is packed on the
         * fly by the first tile of each panel; a transposed B (the forward x W^T) is
         * transposed one panel at a time into a kc x NR buffer that stays in L1 for the
         * panel's other tiles (a 256-column block went out to L2 and back). */
        const bool fly = !g->direct_b && !g->direct_a;
        tg_gemm_scratch *s = &tg_gemm_buffers;
        for (int64_t pc = 0; pc < g->k; pc += KC) {
            const int64_t kc = g->k - pc < KC ? g->k - pc : KC;
            const tg_real beta = pc == 0 ? g->beta : 1;
            const tg_real *apack = tg_gemm_a_block(g, m0, pc, kc, heights, tiles);
            if (fly) {
                tg_real *panel = tg_gemm_scratch_reserve(&s->b, &s->b_cap, (size_t)(kc * kern->nr));
                tg_gemm_tiles(g, pc, kc, beta, n0, n1 - n0, NULL, m0, heights, tiles, apack, panel);
                continue;
            }
            for (int64_t jc = n0; jc < n1; jc += TG_GEMM_NC_THIN) {
                const int64_t nc = n1 - jc < TG_GEMM_NC_THIN ? n1 - jc : TG_GEMM_NC_THIN;
                const tg_real *bpack = tg_gemm_b_block(g, pc, kc, jc, nc);
                tg_gemm_tiles(g, pc, kc, beta, jc, nc, bpack, m0, heights, tiles, apack, NULL);
            }
        }
        return;
    }

    for (int64_t jc = n0; jc < n1; jc += kern->nc) {
        const int64_t nc = n1 - jc < kern->nc ? n1 - jc : kern->nc;
        for (int64_t pc = 0; pc < g->k; pc += KC) {
            const int64_t kc = g->k - pc < KC ? g->k - pc : KC;
            const tg_real beta = pc == 0 ? g->beta : 1;
            const tg_real *bpack = tg_gemm_b_block(g, pc, kc, jc, nc);
            const int64_t blocks = tg_gemm_row_blocks(m1 - m0, MC);
            for (int64_t bi = 0; bi < blocks; bi++) {
                const int64_t ic = m0 + tg_gemm_row_block_start(m1 - m0, blocks, bi);
                const int64_t mc = m0 + tg_gemm_row_block_start(m1 - m0, blocks, bi + 1) - ic;
                const int tiles = tg_gemm_row_tiles(mc, kern->mr, heights, TG_GEMM_MAX_TILES);
                const tg_real *apack = tg_gemm_a_block(g, ic, pc, kc, heights, tiles);
                tg_gemm_tiles(g, pc, kc, beta, jc, nc, bpack, ic, heights, tiles, apack, NULL);
            }
        }
    }
}

/* C[m0:m1, n0:n1] as dot products of rows of A and rows of B (not trans_a, trans_b). */
static void tg_gemm_dots(const tg_gemm_call *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    const int DM = g->kern->dot_mr, DN = g->kern->dot_nr;
    for (int64_t i = m0; i < m1; i += DM) {
        const int mr = (int)(m1 - i < DM ? m1 - i : DM);
        for (int64_t j = n0; j < n1; j += DN) {
            const int nr = (int)(n1 - j < DN ? n1 - j : DN);
            g->kern->dot(mr, nr, g->k, g->a + i * g->lda, g->lda, g->b + j * g->ldb, g->ldb,
                         g->alpha, g->beta, g->c + i * g->ldc + j, g->ldc);
        }
    }
}

/* ---- tuning knobs (measured on a 2-core Zen 3; see bench/bench_gemm.c; the thread
 * threshold is per CPU: tg_gemm_parallel_min, gemm_tune.c) ---- */
/* Below this many multiply-adds nothing is packed (A and row-major B read in place). */
#define TG_GEMM_TINY (1 << 15)
/* With at most this many rows of C, C = A B^T is done as dot products. */
#define TG_GEMM_DOT_MAX_M 8

void tg_gemm_scale(int64_t m, int64_t n, tg_real beta, tg_real *c, int64_t ldc) {
    if (beta == 1) return;
    for (int64_t i = 0; i < m; i++) {
        tg_real *ci = c + i * ldc;
        if (beta == 0)
            for (int64_t j = 0; j < n; j++) ci[j] = 0;
        else
            for (int64_t j = 0; j < n; j++) ci[j] *= beta;
    }
}

static void tg_gemm_run(const tg_gemm_call *g, bool dots, int64_t m0, int64_t m1, int64_t n0,
                        int64_t n1) {
    if (m0 >= m1 || n0 >= n1) return;
    if (dots)
        tg_gemm_dots(g, m0, m1, n0, n1);
    else
        tg_gemm_blocked(g, m0, m1, n0, n1);
}

bool tg_gemm_prologue(const char *fn, bool trans_a, int64_t m, int64_t n, int64_t k, tg_real alpha,
                      int64_t lda, tg_real beta, tg_real *c, int64_t ldc) {
    if (m == 0 || n == 0) return false;
    if (!c) tg_fail_null_argument(fn, "c");
    if (ldc < n) tg_fail("%s: ldc=%lld < n=%lld", fn, (long long)ldc, (long long)n);
    if (k == 0 || alpha == 0) {
        tg_gemm_scale(m, n, beta, c, ldc);
        return false;
    }
    if (lda < (trans_a ? m : k))
        tg_fail("%s: lda=%lld < %lld (trans_a=%d)", fn, (long long)lda,
                (long long)(trans_a ? m : k), (int)trans_a);
    return true;
}

void tg_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, tg_real alpha,
             const tg_real *a, int64_t lda, const tg_real *b, int64_t ldb, tg_real beta, tg_real *c,
             int64_t ldc) {
    if (m < 0 || n < 0 || k < 0)
        tg_fail("tg_gemm: negative size m=%lld n=%lld k=%lld", (long long)m, (long long)n,
                (long long)k);
    if (!tg_gemm_prologue("tg_gemm", trans_a, m, n, k, alpha, lda, beta, c, ldc)) return;
    TG_CHECK_ARG(a);
    TG_CHECK_ARG(b);
    if (ldb < (trans_b ? k : n))
        tg_fail("tg_gemm: ldb=%lld < %lld (trans_b=%d)", (long long)ldb,
                (long long)(trans_b ? k : n), (int)trans_b);

#ifdef TG_USE_CBLAS
    /* The comparison build (-Dblas=enabled): OpenBLAS computes the product, on its own
     * threads, in its own summation order (so not bit-identical across thread counts). */
    if (!atomic_load(&tg_gemm_portable_forced)) {
        TG_CBLAS_GEMM(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                      trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, alpha, a,
                      (int)lda, b, (int)ldb, beta, c, (int)ldc);
        return;
    }
#endif
    tg_gemm_call g = {
        .kern = tg_gemm_kernel_current(),
        .trans_a = trans_a,
        .trans_b = trans_b,
        .m = m,
        .n = n,
        .k = k,
        .alpha = alpha,
        .beta = beta,
        .a = a,
        .b = b,
        .lda = lda,
        .ldb = ldb,
        .ldc = ldc,
        .c = c,
    };
    const double work = (double)m * (double)n * (double)k;
    const bool tiny = work <= TG_GEMM_TINY;
    const bool dots = trans_b && !trans_a && m <= TG_GEMM_DOT_MAX_M;
    g.direct_a = tiny;
    g.direct_b = !trans_b && tiny;

    int threads = work >= (double)tg_gemm_parallel_min() ? tg_get_num_threads() : 1;
#ifndef _OPENMP
    threads = 1;
#endif
    if (threads <= 1) {
        tg_gemm_run(&g, dots, 0, m, 0, n);
        return;
    }

    /* Split C into one range per thread, along the columns when there are at least as
     * many columns as rows (each thread then packs the small A again: cheap) or when the
     * rows are too few to share, else along the rows. Ranges are whole tiles. */
    const int64_t col_unit = dots ? g.kern->dot_nr : g.kern->nr;
    const int64_t row_unit = dots ? g.kern->dot_mr : g.kern->mr;
    const int64_t col_tiles = (n + col_unit - 1) / col_unit;
    const int64_t row_tiles = (m + row_unit - 1) / row_unit;
    const bool split_cols = n >= m || row_tiles < threads || dots || g.direct_b;
    const int64_t units = split_cols ? col_tiles : row_tiles;
    if (units < threads) threads = (int)units;
    if (threads <= 1) {
        tg_gemm_run(&g, dots, 0, m, 0, n);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
    {
        const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t u0 = units * t / nt, u1 = units * (t + 1) / nt;
        if (split_cols) {
            const int64_t j0 = u0 * col_unit, j1 = u1 * col_unit < n ? u1 * col_unit : n;
            tg_gemm_run(&g, dots, 0, m, j0, j1);
        } else {
            const int64_t i0 = u0 * row_unit, i1 = u1 * row_unit < m ? u1 * row_unit : m;
            tg_gemm_run(&g, dots, i0, i1, 0, n);
        }
    }
#endif
}
