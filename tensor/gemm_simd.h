/* tensor/gemm_simd.h — the SIMD micro-kernels, written once for every vector width.
 *
 * Included by gemm_avx2.c and gemm_avx512.c, which first define:
 *   TGK_TARGET            the function attribute that enables the instruction set
 *   TGK_NAME(x)           a unique name for x in that file
 *   TGK_MR, TGK_VL        rows of the register tile; lanes of one vector of tg_real
 *   tgk_vec               the vector type, and these TGK_TARGET static inline helpers:
 *   tgk_zero() tgk_load(p) tgk_store(p, v) tgk_set1(x) tgk_mul(a, b)
 *   tgk_fma(a, b, c) (a*b + c, one rounding)  tgk_hsum(v) (a fixed-order lane sum)
 *
 * The register tile is TGK_MR rows by NR = 2 vectors: per step p of the k loop the kernel
 * loads one row of B (two vectors), broadcasts each of the TGK_MR values of A's column p
 * and does 2*TGK_MR fused multiply-adds into accumulators that stay in registers for the
 * whole kc loop. With AVX2 (16 registers): 6 x 16 floats = 12 accumulators + 2 B vectors +
 * 1 broadcast. 12 independent FMA chains hide the FMA latency (4 cycles on 2 pipes needs
 * >= 8 in flight), and each loaded value feeds several FMAs, so the loads (2 + 6 per 12
 * FMAs) never limit: the FMA units do. Everything else — packing, cache blocks,
 * threads — exists to feed this loop from L1 at that pace.
 *
 * Each function is written as an always_inline body taking the tile height as a constant,
 * instantiated once per height (switch below), so edge tiles run a loop as tight as the
 * full one and the accumulator arrays become registers. */

#define TGK_NR (2 * TGK_VL)
#define TGK_INLINE static inline __attribute__((always_inline)) TGK_TARGET

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

TGK_INLINE void tgk_tile_body(const int MR_, const bool packed, int nr, int64_t kc,
                              const tg_real *a, int64_t a_rs, int64_t a_cs, const tg_real *b,
                              int64_t b_rs, tg_real alpha, tg_real beta, tg_real *c,
                              int64_t ldc) {
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
        /* A panel: MR values per p, contiguous; offsets are constants. */
#pragma GCC unroll 4
        for (int64_t p = 0; p < kc; p++) {
            const tgk_vec b0 = tgk_load(b), b1 = tgk_load(b + TGK_VL);
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
        /* A read in place (tiny products, not worth packing): any strides. */
        for (int64_t p = 0; p < kc; p++) {
            const tgk_vec b0 = tgk_load(b), b1 = tgk_load(b + TGK_VL);
#pragma GCC unroll 16
            for (int i = 0; i < MR_; i++) {
                const tgk_vec ai = tgk_set1(a[i * a_rs]);
                acc0[i] = tgk_fma(ai, b0, acc0[i]);
                acc1[i] = tgk_fma(ai, b1, acc1[i]);
            }
            a += a_cs;
            b += b_rs;
        }
    }

    const tgk_vec va = tgk_set1(alpha), vb = tgk_set1(beta);
    const bool beta0 = beta == 0, beta1 = beta == 1;
    if (nr == TGK_NR) {
#pragma GCC unroll 16
        for (int i = 0; i < MR_; i++) tgk_row_store(c + i * ldc, acc0[i], acc1[i], va, vb, beta0, beta1);
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

static TGK_TARGET void TGK_NAME(tile)(int mr, int nr, int64_t kc, const tg_real *a, int64_t a_rs,
                                      int64_t a_cs, const tg_real *b, int64_t b_rs,
                                      tg_real alpha, tg_real beta, tg_real *c, int64_t ldc) {
    const bool packed = a_rs == 1 && a_cs == TGK_MR;
#define TGK_TILE_CASE(R)                                                                          \
    case R:                                                                                       \
        if (packed)                                                                               \
            tgk_tile_body(R, true, nr, kc, a, 1, TGK_MR, b, b_rs, alpha, beta, c, ldc);           \
        else                                                                                      \
            tgk_tile_body(R, false, nr, kc, a, a_rs, a_cs, b, b_rs, alpha, beta, c, ldc);         \
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
#if TGK_MR > 12
#error "add cases up to TGK_MR"
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

TGK_INLINE void tgk_dot_body(const int DM, const int DN, int64_t k, const tg_real *a,
                             int64_t lda, const tg_real *b, int64_t ldb, tg_real alpha,
                             tg_real beta, tg_real *c, int64_t ldc) {
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
#define TGK_DOT_CASE(R, N)                                                                        \
    case (R - 1) * TGK_DOT_NR + (N - 1):                                                          \
        tgk_dot_body(R, N, k, a, lda, b, ldb, alpha, beta, c, ldc);                               \
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

#undef TGK_INLINE
