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
#ifndef XMC
#define XMC 144
#endif
#ifndef XKC
#define XKC 256
#endif

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

static const tg_gemm_kernel avx2_kernel = {
    .name = "avx2",
    .mr = TGK_MR,
    .nr = TGK_NR,
    .dot_mr = TGK_DOT_MR,
    .dot_nr = TGK_DOT_NR,
#ifdef TG_DOUBLE
    .mc = 96,
#else
    .mc = XMC,
#endif
    .kc = XKC,
    .nc = 4096,
    .tile = TGK_NAME(tile),
    .dot = TGK_NAME(dot),
};

const tg_gemm_kernel *tg_gemm_kernel_avx2_get(void) { return &avx2_kernel; }

#else

const tg_gemm_kernel *tg_gemm_kernel_avx2_get(void) { return NULL; }

#endif
