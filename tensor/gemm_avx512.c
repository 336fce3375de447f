/* tensor/gemm_avx512.c — the AVX-512F micro-kernels (512-bit vectors).
 *
 * Same scheme as gemm_avx2.c with twice the width and twice the registers (32 zmm):
 * tile 12 x 32 floats (12 x 16 doubles) = 24 accumulators + 2 B vectors + 1 broadcast.
 * The B panel per p is a whole 64-byte cache line per vector, so kc = 256 keeps one
 * packed panel at 32 KiB (floats); the A block stays near a third of a 1-2 MiB L2.
 * Selected at run time only when __builtin_cpu_supports("avx512f"). */
#include "gemm_internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>
#include <stdbool.h>

#define TGK_TARGET __attribute__((target("avx512f")))
#define TGK_NAME(x) tg_gemm_avx512_##x
#define TGK_MR 12

#ifdef TG_DOUBLE
#define TGK_VL 8
typedef __m512d tgk_vec;
static inline TGK_TARGET tgk_vec tgk_zero(void) { return _mm512_setzero_pd(); }
static inline TGK_TARGET tgk_vec tgk_load(const double *p) { return _mm512_loadu_pd(p); }
static inline TGK_TARGET void tgk_store(double *p, tgk_vec v) { _mm512_storeu_pd(p, v); }
static inline TGK_TARGET tgk_vec tgk_set1(double x) { return _mm512_set1_pd(x); }
static inline TGK_TARGET tgk_vec tgk_mul(tgk_vec a, tgk_vec b) { return _mm512_mul_pd(a, b); }
static inline TGK_TARGET tgk_vec tgk_fma(tgk_vec a, tgk_vec b, tgk_vec c) {
    return _mm512_fmadd_pd(a, b, c);
}
static inline TGK_TARGET double tgk_hsum(tgk_vec v) {
    /* fixed order: halves, then quarters, then pairs */
    __m256d h = _mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1));
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
}
#else
#define TGK_VL 16
typedef __m512 tgk_vec;
static inline TGK_TARGET tgk_vec tgk_zero(void) { return _mm512_setzero_ps(); }
static inline TGK_TARGET tgk_vec tgk_load(const float *p) { return _mm512_loadu_ps(p); }
static inline TGK_TARGET void tgk_store(float *p, tgk_vec v) { _mm512_storeu_ps(p, v); }
static inline TGK_TARGET tgk_vec tgk_set1(float x) { return _mm512_set1_ps(x); }
static inline TGK_TARGET tgk_vec tgk_mul(tgk_vec a, tgk_vec b) { return _mm512_mul_ps(a, b); }
static inline TGK_TARGET tgk_vec tgk_fma(tgk_vec a, tgk_vec b, tgk_vec c) {
    return _mm512_fmadd_ps(a, b, c);
}
static inline TGK_TARGET float tgk_hsum(tgk_vec v) {
    /* fixed order: halves (in 256-bit pieces via the pd view), then as in AVX2 */
    const __m512d vd = _mm512_castps_pd(v);
    __m256 h = _mm256_add_ps(_mm256_castpd_ps(_mm512_castpd512_pd256(vd)),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(vd, 1)));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

#include "gemm_simd.h"

static const tg_gemm_kernel avx512_kernel = {
    .name = "avx512",
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
    .pack_bt = NULL, /* the generic loop */
};

const tg_gemm_kernel *tg_gemm_kernel_avx512_get(void) { return &avx512_kernel; }

#else

const tg_gemm_kernel *tg_gemm_kernel_avx512_get(void) { return NULL; }

#endif
