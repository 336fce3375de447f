/* tensor/gemm_avx2.c — the AVX2 + FMA micro-kernels (256-bit vectors).
 *
 * Compiled for every x86-64 machine: the functions carry target("avx2,fma") so the rest
 * of the library stays baseline x86-64, and gemm.c calls them only after
 * __builtin_cpu_supports says the CPU has both. The kernels themselves are in
 * gemm_simd.h; this file maps its vector vocabulary onto the intrinsics.
 *
 * Tile 6 x 16 floats (float32 build) or 6 x 8 doubles (float64 build): 12 ymm
 * accumulators. Cache blocks for a core with 32 KiB L1d and 512 KiB L2 (Zen 3; fine on
 * Intel parts too): kc = 256 so that one packed B panel (256 x 16 floats = 16 KiB, or
 * 256 x 8 doubles) sits in L1 while A's panel streams; mc so that the packed A block
 * (mc x kc) takes about a third of L2; nc so that the packed B block stays in L3. */
#include "gemm_internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>
#include <stdbool.h>

#define TGK_TARGET __attribute__((target("avx2,fma")))
#define TGK_NAME(x) tg_gemm_avx2_##x
#define TGK_MR 6

#ifdef TG_DOUBLE
#define TGK_VL 4
typedef __m256d tgk_vec;
static inline TGK_TARGET tgk_vec tgk_zero(void) { return _mm256_setzero_pd(); }
static inline TGK_TARGET tgk_vec tgk_load(const double *p) { return _mm256_loadu_pd(p); }
static inline TGK_TARGET void tgk_store(double *p, tgk_vec v) { _mm256_storeu_pd(p, v); }
static inline TGK_TARGET tgk_vec tgk_set1(double x) { return _mm256_set1_pd(x); }
static inline TGK_TARGET tgk_vec tgk_mul(tgk_vec a, tgk_vec b) { return _mm256_mul_pd(a, b); }
static inline TGK_TARGET tgk_vec tgk_fma(tgk_vec a, tgk_vec b, tgk_vec c) {
    return _mm256_fmadd_pd(a, b, c);
}
static inline TGK_TARGET double tgk_hsum(tgk_vec v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
}
#else
#define TGK_VL 8
typedef __m256 tgk_vec;
static inline TGK_TARGET tgk_vec tgk_zero(void) { return _mm256_setzero_ps(); }
static inline TGK_TARGET tgk_vec tgk_load(const float *p) { return _mm256_loadu_ps(p); }
static inline TGK_TARGET void tgk_store(float *p, tgk_vec v) { _mm256_storeu_ps(p, v); }
static inline TGK_TARGET tgk_vec tgk_set1(float x) { return _mm256_set1_ps(x); }
static inline TGK_TARGET tgk_vec tgk_mul(tgk_vec a, tgk_vec b) { return _mm256_mul_ps(a, b); }
static inline TGK_TARGET tgk_vec tgk_fma(tgk_vec a, tgk_vec b, tgk_vec c) {
    return _mm256_fmadd_ps(a, b, c);
}
static inline TGK_TARGET float tgk_hsum(tgk_vec v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

#include "gemm_simd.h"

/* Transposed-B panel packing with in-register transposes: 8 x 8 floats (4 x 4 doubles)
 * per step — 8 row loads, 24 shuffles, 8 stores, where the scalar loop needs 64 loads and
 * 64 stores. This is the whole cost of C = A B^T beyond C = A B, so it matters for the
 * forward pass of every linear layer. */
#ifdef TG_DOUBLE
static TGK_TARGET void tg_gemm_avx2_pack_bt(int64_t kc, const double *b, int64_t ldb,
                                            double *out) {
    int64_t p = 0;
    for (; p + 4 <= kc; p += 4)
        for (int j0 = 0; j0 < TGK_NR; j0 += 4) {
            const double *s = b + j0 * ldb + p;
            const __m256d r0 = _mm256_loadu_pd(s), r1 = _mm256_loadu_pd(s + ldb);
            const __m256d r2 = _mm256_loadu_pd(s + 2 * ldb), r3 = _mm256_loadu_pd(s + 3 * ldb);
            const __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
            const __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
            double *d = out + p * TGK_NR + j0;
            _mm256_storeu_pd(d, _mm256_permute2f128_pd(t0, t2, 0x20));
            _mm256_storeu_pd(d + TGK_NR, _mm256_permute2f128_pd(t1, t3, 0x20));
            _mm256_storeu_pd(d + 2 * TGK_NR, _mm256_permute2f128_pd(t0, t2, 0x31));
            _mm256_storeu_pd(d + 3 * TGK_NR, _mm256_permute2f128_pd(t1, t3, 0x31));
        }
    for (; p < kc; p++)
        for (int j = 0; j < TGK_NR; j++) out[p * TGK_NR + j] = b[j * ldb + p];
}
#else
static TGK_TARGET void tg_gemm_avx2_pack_bt(int64_t kc, const float *b, int64_t ldb,
                                            float *out) {
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8)
        for (int j0 = 0; j0 < TGK_NR; j0 += 8) {
            const float *s = b + j0 * ldb + p;
            __m256 r[8];
            for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(s + i * ldb);
            /* pairs of rows interleaved, then quadruples, then the 128-bit halves */
            const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
            const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
            const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
            const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
            const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *d = out + p * TGK_NR + j0;
            _mm256_storeu_ps(d + 0 * TGK_NR, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(d + 1 * TGK_NR, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(d + 2 * TGK_NR, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(d + 3 * TGK_NR, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(d + 4 * TGK_NR, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(d + 5 * TGK_NR, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(d + 6 * TGK_NR, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(d + 7 * TGK_NR, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
    for (; p < kc; p++)
        for (int j = 0; j < TGK_NR; j++) out[p * TGK_NR + j] = b[j * ldb + p];
}
#endif

static const tg_gemm_kernel avx2_kernel = {
    .name = "avx2",
    .mr = TGK_MR,
    .nr = TGK_NR,
    .dot_mr = TGK_DOT_MR,
    .dot_nr = TGK_DOT_NR,
#ifdef TG_DOUBLE
    .mc = 96,
#else
    .mc = 144,
#endif
    .kc = 256,
    .nc = 4096,
    .tile = TGK_NAME(tile),
    .dot = TGK_NAME(dot),
    .pack_bt = tg_gemm_avx2_pack_bt,
};

const tg_gemm_kernel *tg_gemm_kernel_avx2_get(void) { return &avx2_kernel; }

#else

const tg_gemm_kernel *tg_gemm_kernel_avx2_get(void) { return NULL; }

#endif
