/* tensor/gemm_simd.h — the SIMD micro-kernels, written once for every vector width.
 *
 * Included by gemm_avx2.c and gemm_avx512.c, which first define only:
 *   TGK_TARGET            the function attribute that enables the instruction set
 *   TGK_NAME(x)           a unique name for x in that file
 *   TGK_BITS              the vector width in bits (256 or 512): picks the _mm256_* or
 *                         _mm512_* intrinsics, whose names differ only in that number
 *   TGK_MR                rows of the register tile
 *   TGK_LABEL             the kernel's name
 *   (TGK_MC, TGK_KC, TGK_NC: the cache blocks, when not the defaults below)
 * Everything else — the vector vocabulary, the tile and dot kernels, the packing of a
 * transposed B and the kernel table — is this one file, so the two widths cannot drift.
 *
 * The register tile is TGK_MR rows by NR = 2 vectors: per step p of the k loop the kernel
 * loads one row of B (two vectors), broadcasts each of the TGK_MR values of A's column p
 * and does 2*TGK_MR fused multiply-adds into accumulators that stay in registers for the
 * whole kc loop. With AVX2 (16 registers): 6 x 16 floats = 12 accumulators + 2 B vectors +
 * 1 broadcast; with AVX-512 (32 registers): 12 x 32 = 24 + 2 + 1. 12 (24) independent FMA
 * chains hide the FMA latency (4 cycles on 2 pipes needs >= 8 in flight), and each loaded
 * value feeds several FMAs, so the loads (2 + MR per 2*MR FMAs, the broadcasts straight
 * from the packed panel) never limit: the FMA units do. Everything else — packing, cache
 * blocks, threads — exists to feed this loop from L1 at that pace.
 *
 * Each function is written as an always_inline body taking the tile height as a constant,
 * instantiated once per height (switch below), so edge tiles run a loop as tight as the
 * full one and the accumulator arrays become registers. */

#include <immintrin.h>
#include <stdbool.h>

/* Cache blocks: kc x NR B panel in L1 (16 KiB for AVX2 floats, 32 KiB for AVX-512), the
 * mc x kc A block (144 KiB of floats) well inside L2, the kc x nc B block in L3. mc and nc
 * here are only the defaults: gemm_tune.c sets them from this CPU's cache sizes at run
 * time. kc is fixed: it decides the bits (see gemm_tune.c). */
#ifndef TGK_KC
#define TGK_KC 256
#endif
#ifndef TGK_NC
#define TGK_NC 4096
#endif
#ifndef TGK_MC
#ifdef TG_DOUBLE
#define TGK_MC 96
#else
#define TGK_MC 144
#endif
#endif

#ifdef TG_DOUBLE
#define TGK_VL  (TGK_BITS / 64)
#define TGK_SFX pd
#else
#define TGK_VL  (TGK_BITS / 32)
#define TGK_SFX ps
#endif
#define TGK_NR (2 * TGK_VL)

/* The vector type: __m256 / __m256d / __m512 / __m512d. */
#ifdef TG_DOUBLE
#define TGK_VT(bits) TGK_VT2(bits, d)
#else
#define TGK_VT(bits) TGK_VT2(bits, )
#endif
#define TGK_VT2(bits, d) __m##bits##d
typedef TGK_VT(TGK_BITS) tgk_vec;
#define TGK_INLINE static inline __attribute__((always_inline)) TGK_TARGET

/* _mm<bits>_<op>_<ps|pd>: one intrinsic of this width and element type. */
#define TGK_OP3(bits, op, sfx) _mm##bits##_##op##_##sfx
#define TGK_OP2(bits, op, sfx) TGK_OP3(bits, op, sfx)
#define TGK_OP(op)             TGK_OP2(TGK_BITS, op, TGK_SFX)

TGK_INLINE tgk_vec tgk_zero(void) { return TGK_OP(setzero)(); }
TGK_INLINE tgk_vec tgk_load(const tg_real *p) { return TGK_OP(loadu)(p); }
TGK_INLINE void tgk_store(tg_real *p, tgk_vec v) { TGK_OP(storeu)(p, v); }
TGK_INLINE tgk_vec tgk_set1(tg_real x) { return TGK_OP(set1)(x); }
TGK_INLINE tgk_vec tgk_mul(tgk_vec a, tgk_vec b) { return TGK_OP(mul)(a, b); }
/* a*b + c with one rounding */
TGK_INLINE tgk_vec tgk_fma(tgk_vec a, tgk_vec b, tgk_vec c) { return TGK_OP(fmadd)(a, b, c); }
/* The lane sum in a fixed order: halves, then quarters, ... (lane i + lane i + w for
 * w = VL/2, VL/4, ..., 1), the same order at every width, in registers (one per dot
 * product: a sum through memory costs the tiny batch-1 products a third of their time). */
TGK_INLINE tg_real tgk_hsum(tgk_vec v) {
#ifdef TG_DOUBLE
#if TGK_BITS == 512
    const __m256d h = _mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1));
#else
    const __m256d h = v;
#endif
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
#else
#if TGK_BITS == 512
    /* the 256-bit halves through the pd view (AVX-512F has no f32x8 extract) */
    const __m512d vd = _mm512_castps_pd(v);
    const __m256 h = _mm256_add_ps(_mm256_castpd_ps(_mm512_castpd512_pd256(vd)),
                                   _mm256_castpd_ps(_mm512_extractf64x4_pd(vd, 1)));
#else
    const __m256 h = v;
#endif
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
#endif
}

/* Writes one tile row: c = alpha*x (beta == 0: C not read) or fma(alpha, x, beta*c)
 * (beta == 1: fma(alpha, x, c), the same bits without the multiply). */
TGK_INLINE void tgk_row_store(tg_real *c, tgk_vec x0, tgk_vec x1, tgk_vec va, tgk_vec vb,
                              bool beta0, bool beta1) {
    if (beta0) {
        tgk_store(c, tgk_mul(va, x0));
        tgk_store(c + TGK_VL, tgk_mul(va, x1));
    } else if (beta1) {
        tgk_store(c, tgk_fma(va, x0, tgk_load(c)));
        tgk_store(c + TGK_VL, tgk_fma(va, x1, tgk_load(c + TGK_VL)));
    } else {
        tgk_store(c, tgk_fma(va, x0, tgk_mul(vb, tgk_load(c))));
        tgk_store(c + TGK_VL, tgk_fma(va, x1, tgk_mul(vb, tgk_load(c + TGK_VL))));
    }
}

/* How many rows of B ahead the copying variant asks for: it reads B in place at the
 * caller's row stride, one or two lines per row, each row on a new page when the stride
 * is a few KiB; 8 rows of 2 x MR FMAs cover an L3 hit. */
#define TGK_B_AHEAD 8

TGK_INLINE void tgk_tile_body(const int MR_, const bool packed, const bool copy, int nr, int64_t kc,
                              const tg_real *a, int64_t a_rs, int64_t a_cs, const tg_real *b,
                              int64_t b_rs, tg_real *b_copy, tg_real alpha, tg_real beta,
                              tg_real *c, int64_t ldc) {
    tgk_vec acc0[TGK_MR], acc1[TGK_MR];
#pragma GCC unroll 16
    for (int i = 0; i < MR_; i++) {
        acc0[i] = acc1[i] = tgk_zero();
        /* Ask for the C tile now: its rows are far apart (ldc) and were last touched a
         * whole k block ago, so they are usually out of L1; the kc loop hides the wait. */
        __builtin_prefetch(c + i * ldc, 1, 3);
        __builtin_prefetch(c + i * ldc + TGK_NR - 1, 1, 3);
    }

    if (packed) {
        /* A panel: MR values per p, contiguous; offsets are constants. With copy, B is
         * read in place and each row also stored to the panel the next tiles read: the
         * packing of B rides on the first tile's loads, its stores hidden by the FMAs. */
#pragma GCC unroll 4
        for (int64_t p = 0; p < kc; p++) {
            const tgk_vec b0 = tgk_load(b), b1 = tgk_load(b + TGK_VL);
            if (copy) {
                __builtin_prefetch(b + TGK_B_AHEAD * b_rs, 0, 3);
                __builtin_prefetch(b + TGK_B_AHEAD * b_rs + TGK_NR - 1, 0, 3);
                tgk_store(b_copy, b0);
                tgk_store(b_copy + TGK_VL, b1);
                b_copy += TGK_NR;
            }
#pragma GCC unroll 16
            for (int i = 0; i < MR_; i++) {
                const tgk_vec ai = tgk_set1(a[i]);
                acc0[i] = tgk_fma(ai, b0, acc0[i]);
                acc1[i] = tgk_fma(ai, b1, acc1[i]);
            }
            a += TGK_MR;
            b += b_rs;
        }
    } else {
        /* A read in place (tiny products, the pre-packed entry's): any strides. The rows go
         * in threes, each three from one pointer (row 3g + r at ag[g] + r*a_rs: the
         * addresses base + a_rs * 4 or 8 of x86), so that the loop needs MR/3 pointers
         * and one stride: a register per row would not fit the 16 general registers and
         * spill inside the loop. */
        const tg_real *ag[(TGK_MR + 2) / 3];
#pragma GCC unroll 4
        for (int g = 0; g < (MR_ + 2) / 3; g++) ag[g] = a + 3 * g * a_rs;
#pragma GCC unroll 2
        for (int64_t p = 0; p < kc; p++) {
            const tgk_vec b0 = tgk_load(b), b1 = tgk_load(b + TGK_VL);
#pragma GCC unroll 16
            for (int i = 0; i < MR_; i++) {
                const tgk_vec ai = tgk_set1(ag[i / 3][(i % 3) * a_rs]);
                acc0[i] = tgk_fma(ai, b0, acc0[i]);
                acc1[i] = tgk_fma(ai, b1, acc1[i]);
            }
#pragma GCC unroll 4
            for (int g = 0; g < (MR_ + 2) / 3; g++) ag[g] += a_cs;
            b += b_rs;
        }
    }

    const tgk_vec va = tgk_set1(alpha), vb = tgk_set1(beta);
    const bool beta0 = beta == 0, beta1 = beta == 1;
    if (nr == TGK_NR) {
#pragma GCC unroll 16
        for (int i = 0; i < MR_; i++)
            tgk_row_store(c + i * ldc, acc0[i], acc1[i], va, vb, beta0, beta1);
    } else {
        /* Right edge: the same vector arithmetic on a copy, then only nr values go back,
         * so an edge element gets exactly the bits it would get inside a full tile. */
        tg_real tmp[TGK_NR] __attribute__((aligned(64)));
#pragma GCC unroll 16
        for (int i = 0; i < MR_; i++) {
            tg_real *ci = c + i * ldc;
            if (!beta0)
                for (int j = 0; j < TGK_NR; j++) tmp[j] = j < nr ? ci[j] : 0;
            tgk_row_store(tmp, acc0[i], acc1[i], va, vb, beta0, beta1);
            for (int j = 0; j < nr; j++) ci[j] = tmp[j];
        }
    }
}

/* One function per tile height, each with the three forms of the k loop; the dispatcher
 * below picks it. Apart, not as one switch in one function: a function that large passes
 * AddressSanitizer's limit of instrumented accesses (7000), beyond which every access of
 * it is checked by a call, and a sanitizer build of the fused layers then runs 7x slower. */
#define TGK_TILE_HEIGHT(R)                                                                         \
    static TGK_TARGET __attribute__((noinline)) void TGK_NAME(tile_##R)(                           \
        int nr, int64_t kc, const tg_real *a, int64_t a_rs, int64_t a_cs, const tg_real *b,        \
        int64_t b_rs, tg_real *b_copy, tg_real alpha, tg_real beta, tg_real *c, int64_t ldc) {     \
        const bool packed = a_rs == 1 && a_cs == TGK_MR;                                           \
        /* (the driver asks for a copy of B only with a packed A) */                               \
        if (packed && b_copy)                                                                      \
            tgk_tile_body(R, true, true, nr, kc, a, 1, TGK_MR, b, b_rs, b_copy, alpha, beta, c,    \
                          ldc);                                                                    \
        else if (packed)                                                                           \
            tgk_tile_body(R, true, false, nr, kc, a, 1, TGK_MR, b, b_rs, NULL, alpha, beta, c,     \
                          ldc);                                                                    \
        else                                                                                       \
            tgk_tile_body(R, false, false, nr, kc, a, a_rs, a_cs, b, b_rs, NULL, alpha, beta, c,   \
                          ldc);                                                                    \
    }
TGK_TILE_HEIGHT(1)
TGK_TILE_HEIGHT(2)
TGK_TILE_HEIGHT(3)
TGK_TILE_HEIGHT(4)
TGK_TILE_HEIGHT(5)
TGK_TILE_HEIGHT(6)
#if TGK_MR > 6
TGK_TILE_HEIGHT(7)
TGK_TILE_HEIGHT(8)
TGK_TILE_HEIGHT(9)
TGK_TILE_HEIGHT(10)
TGK_TILE_HEIGHT(11)
TGK_TILE_HEIGHT(12)
#endif
#if TGK_MR > 12
#error "add heights up to TGK_MR"
#endif
#undef TGK_TILE_HEIGHT

static TGK_TARGET void TGK_NAME(tile)(int mr, int nr, int64_t kc, const tg_real *a, int64_t a_rs,
                                      int64_t a_cs, const tg_real *b, int64_t b_rs, tg_real *b_copy,
                                      tg_real alpha, tg_real beta, tg_real *c, int64_t ldc) {
#define TGK_TILE_CASE(R)                                                                           \
    case R:                                                                                        \
        TGK_NAME(tile_##R)(nr, kc, a, a_rs, a_cs, b, b_rs, b_copy, alpha, beta, c, ldc);           \
        break;
    switch (mr) {
        TGK_TILE_CASE(1)
        TGK_TILE_CASE(2)
        TGK_TILE_CASE(3)
        TGK_TILE_CASE(4)
        TGK_TILE_CASE(5)
        TGK_TILE_CASE(6)
#if TGK_MR > 6
        TGK_TILE_CASE(7)
        TGK_TILE_CASE(8)
        TGK_TILE_CASE(9)
        TGK_TILE_CASE(10)
        TGK_TILE_CASE(11)
        TGK_TILE_CASE(12)
#endif
    default:
        break;
    }
#undef TGK_TILE_CASE
}

/* ---- dot form: C = A * B^T with both operands contiguous along k ----
 * Tile of DM rows of A by DN rows of B; each (i, j) has one vector accumulator whose
 * lanes hold partial sums over p = lane (mod VL); at the end one fixed-order horizontal
 * sum, then the k % VL leftover products in order. 2 x 4 = 8 chains, 6 loads per 8 FMAs. */
#define TGK_DOT_MR 2
#define TGK_DOT_NR 4

TGK_INLINE void tgk_dot_body(const int DM, const int DN, int64_t k, const tg_real *a, int64_t lda,
                             const tg_real *b, int64_t ldb, tg_real alpha, tg_real beta, tg_real *c,
                             int64_t ldc) {
    tgk_vec acc[TGK_DOT_MR][TGK_DOT_NR];
#pragma GCC unroll 4
    for (int i = 0; i < DM; i++)
#pragma GCC unroll 4
        for (int j = 0; j < DN; j++) acc[i][j] = tgk_zero();
    int64_t p = 0;
    for (; p + TGK_VL <= k; p += TGK_VL) {
        tgk_vec av[TGK_DOT_MR];
#pragma GCC unroll 4
        for (int i = 0; i < DM; i++) av[i] = tgk_load(a + i * lda + p);
#pragma GCC unroll 4
        for (int j = 0; j < DN; j++) {
            const tgk_vec bj = tgk_load(b + j * ldb + p);
#pragma GCC unroll 4
            for (int i = 0; i < DM; i++) acc[i][j] = tgk_fma(av[i], bj, acc[i][j]);
        }
    }
    const bool beta0 = beta == 0;
#pragma GCC unroll 4
    for (int i = 0; i < DM; i++)
#pragma GCC unroll 4
        for (int j = 0; j < DN; j++) {
            tg_real s = tgk_hsum(acc[i][j]);
            for (int64_t q = p; q < k; q++) s += a[i * lda + q] * b[j * ldb + q];
            tg_real *cij = c + i * ldc + j;
            *cij = beta0 ? alpha * s : alpha * s + beta * *cij;
        }
}

static TGK_TARGET void TGK_NAME(dot)(int mr, int nr, int64_t k, const tg_real *a, int64_t lda,
                                     const tg_real *b, int64_t ldb, tg_real alpha, tg_real beta,
                                     tg_real *c, int64_t ldc) {
#define TGK_DOT_CASE(R, N)                                                                         \
    case (R - 1) * TGK_DOT_NR + (N - 1):                                                           \
        tgk_dot_body(R, N, k, a, lda, b, ldb, alpha, beta, c, ldc);                                \
        break;
    switch ((mr - 1) * TGK_DOT_NR + (nr - 1)) {
        TGK_DOT_CASE(1, 1)
        TGK_DOT_CASE(1, 2)
        TGK_DOT_CASE(1, 3)
        TGK_DOT_CASE(1, 4)
        TGK_DOT_CASE(2, 1)
        TGK_DOT_CASE(2, 2)
        TGK_DOT_CASE(2, 3)
        TGK_DOT_CASE(2, 4)
    default:
        break;
    }
#undef TGK_DOT_CASE
}

/* ---- packing by transposes ----
 * Both packings that turn rows into columns — a transposed B into NR-wide panels, a
 * row-major A into MR-tall panels — are done as TB x TB transposes (8 x 8 floats, 4 x 4
 * doubles) in 256-bit registers (AVX-512F includes AVX2's shuffles): TB row loads,
 * 3*TB shuffles and TB stores where a scalar loop needs TB*TB loads and stores. */
/* 256-bit rows of TB values, whatever the kernel's width */
typedef TGK_VT(256) tgk_row;
#define tgk_row_load  TGK_OP2(256, loadu, TGK_SFX)
#define tgk_row_store TGK_OP2(256, storeu, TGK_SFX)
#define tgk_row_zero  TGK_OP2(256, setzero, TGK_SFX)
#ifdef TG_DOUBLE
#define TGK_TB 4
/* r[i] (row i, lanes = columns) becomes r[j] = column j, lanes = rows */
TGK_INLINE void tgk_transpose(__m256d r[4]) {
    const __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
    const __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
    r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}
#else
#define TGK_TB 8
TGK_INLINE void tgk_transpose(__m256 r[8]) {
    /* pairs of rows interleaved, then quadruples, then the 128-bit halves */
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}
#endif

/* out[p*NR + j] = b[j*ldb + p] for p < kc, j < NR (NR is a multiple of TB). This is the
 * whole cost of C = A B^T beyond C = A B: the forward pass of every linear layer. */
static TGK_TARGET void TGK_NAME(pack_bt)(int64_t kc, const tg_real *b, int64_t ldb, tg_real *out) {
    int64_t p = 0;
    for (; p + TGK_TB <= kc; p += TGK_TB)
#pragma GCC unroll 4
        for (int j0 = 0; j0 < TGK_NR; j0 += TGK_TB) {
            tgk_row r[TGK_TB];
#pragma GCC unroll 8
            for (int i = 0; i < TGK_TB; i++) r[i] = tgk_row_load(b + (j0 + i) * ldb + p);
            tgk_transpose(r);
#pragma GCC unroll 8
            for (int i = 0; i < TGK_TB; i++) tgk_row_store(out + (p + i) * TGK_NR + j0, r[i]);
        }
    for (; p < kc; p++)
        for (int j = 0; j < TGK_NR; j++) out[p * TGK_NR + j] = b[j * ldb + p];
}

/* One A panel of a row-major A: out[p*MR + i] = a[i*lda + p] for p < kc, i < h, zero for
 * h <= i < MR. The MR rows go in ceil(MR / TB) transposes per TB columns (rows past h
 * are zero registers, never read). When MR is not a multiple of TB the last transpose's
 * stores run past row MR into the next p's slots, so the stores go in increasing
 * address order (p outer) and each store's overrun is rewritten by the next p; the last
 * p's overrun (under TB values) lands in the next panel, packed after this one, or in
 * the slack the driver keeps after the last panel. */
#define TGK_ROW_BLOCKS ((TGK_MR + TGK_TB - 1) / TGK_TB)
TGK_INLINE void tgk_pack_a_body(const int h, int64_t kc, const tg_real *a, int64_t lda,
                                tg_real *out) {
    int64_t p = 0;
    for (; p + TGK_TB <= kc; p += TGK_TB) {
        tgk_row r[TGK_ROW_BLOCKS][TGK_TB];
#pragma GCC unroll 4
        for (int blk = 0; blk < TGK_ROW_BLOCKS; blk++) {
#pragma GCC unroll 8
            for (int i = 0; i < TGK_TB; i++) {
                const int row = blk * TGK_TB + i;
                r[blk][i] = row < h ? tgk_row_load(a + row * lda + p) : tgk_row_zero();
            }
            tgk_transpose(r[blk]);
        }
#pragma GCC unroll 8
        for (int i = 0; i < TGK_TB; i++)
#pragma GCC unroll 4
            for (int blk = 0; blk < TGK_ROW_BLOCKS; blk++)
                tgk_row_store(out + (p + i) * TGK_MR + blk * TGK_TB, r[blk][i]);
    }
    for (; p < kc; p++)
        for (int i = 0; i < TGK_MR; i++) out[p * TGK_MR + i] = i < h ? a[i * lda + p] : 0;
}

static TGK_TARGET void TGK_NAME(pack_a)(int h, int64_t kc, const tg_real *a, int64_t lda,
                                        tg_real *out) {
    if (h == TGK_MR)
        tgk_pack_a_body(TGK_MR, kc, a, lda, out);
    else
        tgk_pack_a_body(h, kc, a, lda, out); /* edge tiles: the row test per load */
}

/* ---- packing a transposed A ----
 * op(A) = A^T with A stored k x m: row p of A holds a block's values of every tile for
 * that p, contiguous. Each row segment is read once, in order, and dealt out to the
 * panels: tile t's h[t] values go to its panel's slot p as MR values, zero past h[t] —
 * masked vector loads and stores (ceil(MR / VL) of each), where the scalar loop moved
 * one value per instruction. (The weight gradients dW = dY^T X of every layer pack their
 * dY^T so.) Masked loads do not touch the lanes they leave out, so the last tile's read
 * stays inside A. */
#define TGK_AT_VECS  ((TGK_MR + TGK_VL - 1) / TGK_VL)
#define TGK_AT_AHEAD 4 /* rows of A requested ahead of the copy (each on its own page) */
#if TGK_BITS == 512
#ifdef TG_DOUBLE
#define TGK_MASK(n) ((__mmask8)((1u << (n)) - 1))
#else
#define TGK_MASK(n) ((__mmask16)((1u << (n)) - 1))
#endif
TGK_INLINE tgk_vec tgk_load_n(const tg_real *p, int n) {
    return TGK_OP(maskz_loadu)(TGK_MASK(n), p);
}
TGK_INLINE void tgk_store_n(tg_real *p, tgk_vec v, int n) {
    TGK_OP(mask_storeu)(p, TGK_MASK(n), v);
}
#else
/* lanes below n all ones */
TGK_INLINE __m256i tgk_lanes_below(int n) {
#ifdef TG_DOUBLE
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
#else
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
#endif
}
TGK_INLINE tgk_vec tgk_load_n(const tg_real *p, int n) {
    return TGK_OP(maskload)(p, tgk_lanes_below(n));
}
TGK_INLINE void tgk_store_n(tg_real *p, tgk_vec v, int n) {
    TGK_OP(maskstore)(p, tgk_lanes_below(n), v);
}
#endif

static TGK_TARGET void TGK_NAME(pack_at)(int64_t kc, const tg_real *a, int64_t lda, const int *h,
                                         int tiles, tg_real *out) {
    int64_t mc = 0;
    for (int t = 0; t < tiles; t++) mc += h[t];
    for (int64_t p = 0; p < kc; p++) {
        const tg_real *src = a + p * lda;
        if (p + TGK_AT_AHEAD < kc)
            for (int64_t j = 0; j < mc; j += 64 / (int64_t)sizeof(tg_real))
                __builtin_prefetch(src + TGK_AT_AHEAD * lda + j, 0, 3);
        for (int t = 0; t < tiles; t++) {
            tg_real *dst = out + ((int64_t)t * kc + p) * TGK_MR;
            const int ht = h[t];
#pragma GCC unroll 2
            for (int v = 0; v < TGK_AT_VECS; v++) {
                const int left = ht - v * TGK_VL, width = TGK_MR - v * TGK_VL;
                const int n_in = left < 0 ? 0 : left < TGK_VL ? left : TGK_VL;
                tgk_store_n(dst + v * TGK_VL, tgk_load_n(src + v * TGK_VL, n_in),
                            width < TGK_VL ? width : TGK_VL);
            }
            src += ht;
        }
    }
}

static const tg_gemm_kernel TGK_NAME(kernel) = {
    .name = TGK_LABEL,
    .mr = TGK_MR,
    .nr = TGK_NR,
    .dot_mr = TGK_DOT_MR,
    .dot_nr = TGK_DOT_NR,
    .mc = TGK_MC,
    .kc = TGK_KC,
    .nc = TGK_NC,
    .tile = TGK_NAME(tile),
    .dot = TGK_NAME(dot),
    .pack_bt = TGK_NAME(pack_bt),
    .pack_a = TGK_NAME(pack_a),
    .pack_at = TGK_NAME(pack_at),
};

const tg_gemm_kernel *TGK_NAME(kernel_get)(void) { return &TGK_NAME(kernel); }

#undef TGK_INLINE
