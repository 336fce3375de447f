/* tensor/vmath.h — vector math shared by the elementwise ops, softmax, attention and the
 * fused RNN cells (internal, not installed).
 *
 * A libm call per element (expf, tanhf) stops the compiler from vectorising a loop and
 * costs as much as a small GEMM; these inline versions are branch-free, so a loop over
 * them becomes SIMD code. Sections:
 *   - exp, sigmoid, tanh (float32 polynomials; float64, the gradient-checking build, keeps
 *     libm's exact functions);
 *   - softmax of one contiguous row and its backward, with fixed-order sums;
 *   - the counter-based generator of dropout masks. */
#ifndef TAPEGRAD_VMATH_H
#define TAPEGRAD_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "tapegrad/rng.h"

/* Hot loops over these functions are compiled for AVX-512, AVX2 and the baseline, and the
 * loader picks the CPU's best (float32 only: float64 calls libm anyway). Two floating-point
 * flags, set by the build on the whole library (meson.build), make that pay and keep the
 * bits: -fno-trapping-math lets GCC turn selects (clamps, the two branches of tanh) into
 * SIMD blends, where with trapping math they stay branches and the loops scalar (we never
 * read the floating-point exception flags); -ffp-contract=off keeps a*b+c two roundings in
 * every clone of a kernel, FMA or not, so all CPUs get the same bits. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(TG_DOUBLE)
#define TG_VEC_KERNEL __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TG_VEC_KERNEL
#endif
/* A loop of independent iterations, for the vectoriser: OpenMP's simd directive. */
#ifdef _OPENMP
#define TG_SIMD _Pragma("omp simd")
#else
#define TG_SIMD
#endif

/* ---- exp, sigmoid, tanh ----
 * e^x: x = n·ln2 + r with |r| <= ln2/2 (n rounded by adding 1.5·2^23, which leaves n in
 * the low mantissa bits; ln2 split in two parts so that r is exact), e^r by Cephes'
 * degree-7 polynomial, 2^n made in the exponent bits. Within about 2 ulp for
 * x in [-87.3, 88]; below -87.34 (e^x no longer a normal float, -inf included) it returns
 * 0, between 88 and ln(FLT_MAX) e^88, above that inf (callers: softmax, x <= 0, and
 * sigmoid/tanh, which saturate there anyway: σ(−1000) is exactly 0); NaN gives NaN. */
static inline float tg_vexpf(float x) {
    const float xc = x < -87.33654475f ? -87.33654475f : x > 88.0f ? 88.0f : x;
    const float k = xc * 1.44269504088896341f + 12582912.0f;
    const float n = k - 12582912.0f;
    const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
    const float p = ((((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r +
                        4.1665795894e-2f) *
                           r +
                       1.6666665459e-1f) *
                          r +
                      5.0000001201e-1f) *
                     (r * r)) +
                    r + 1.0f;
    /* k's bits are those of 1.5·2^23 plus n; shifted left by 23, the 1.5·2^23 part falls
     * off the top and (n + 127) << 23 is left: 2^n as a float, for n in [-126, 127]. */
    uint32_t bits;
    memcpy(&bits, &k, sizeof bits);
    bits = (bits + 127u) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    const float y = x > 88.72283935546875f ? INFINITY : p * scale;
    return x < -87.33654475f ? 0.0f : y;
}
static inline float tg_vsigmoidf(float a) { return 1.0f / (1.0f + tg_vexpf(-a)); }
/* tanh: an odd polynomial near 0 (Cephes), where 1 − 2/(e^{2|a|} + 1) would cancel. */
static inline float tg_vtanhf(float a) {
    const float ax = a < 0 ? -a : a, z = a * a;
    const float small =
        ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
          1.33314422036e-1f) *
             z -
         3.33332819422e-1f) *
            z * a +
        a;
    const float big = 1.0f - 2.0f / (tg_vexpf(2.0f * ax) + 1.0f);
    return ax < 0.625f ? small : (a < 0 ? -big : big);
}

#ifdef TG_DOUBLE
static inline tg_real tg_vexp(tg_real x) { return exp(x); }
static inline tg_real tg_vsigmoid(tg_real a) { return 1 / (1 + exp(-a)); }
static inline tg_real tg_vtanh(tg_real a) { return tanh(a); }
#else
static inline tg_real tg_vexp(tg_real x) { return tg_vexpf(x); }
static inline tg_real tg_vsigmoid(tg_real a) { return tg_vsigmoidf(a); }
static inline tg_real tg_vtanh(tg_real a) { return tg_vtanhf(a); }
#endif

/* ---- softmax of one row ----
 * y = exp(x − m) / Σ exp(x − m), m = max x. The max and the sum run in TG_VLANES
 * interleaved lanes (lane l takes j ≡ l mod TG_VLANES), combined in lane order: a fixed
 * order that depends only on n, so results do not depend on threads, and the loops
 * vectorise. The sum is in double. A NaN makes the row NaN; an all −inf row gives NaN
 * (m = −inf, x − m = NaN), as PyTorch. */
#define TG_VLANES 8

/* max_j x[j·stride] over n > 0 elements, NaN when one of them is NaN, in lanes. */
static inline tg_real tg_vmax_row(const tg_real *restrict x, int64_t n, int64_t stride) {
    tg_real mx[TG_VLANES];
    int nan[TG_VLANES];
    for (int l = 0; l < TG_VLANES; l++) mx[l] = -INFINITY, nan[l] = 0;
    int64_t j = 0;
    for (; j + TG_VLANES <= n; j += TG_VLANES)
        for (int l = 0; l < TG_VLANES; l++) {
            const tg_real v = x[(j + l) * stride];
            mx[l] = v > mx[l] ? v : mx[l];
            nan[l] |= v != v;
        }
    for (int l = 0; j + l < n; l++) {
        const tg_real v = x[(j + l) * stride];
        mx[l] = v > mx[l] ? v : mx[l];
        nan[l] |= v != v;
    }
    tg_real m = mx[0];
    int any_nan = nan[0];
    for (int l = 1; l < TG_VLANES; l++) m = mx[l] > m ? mx[l] : m, any_nan |= nan[l];
    return any_nan ? NAN : m;
}

/* The lanes' partial sums added in lane order. */
static inline double tg_vlanes_total(const double s[TG_VLANES]) {
    double total = s[0];
    for (int l = 1; l < TG_VLANES; l++) total += s[l];
    return total;
}

/* y = exp(x − m) and Σ y in double, in lanes; y may be x itself. */
static inline double tg_vexp_sum_row(const tg_real *x, tg_real *y, int64_t n, tg_real m) {
    for (int64_t i = 0; i < n; i++) y[i] = tg_vexp(x[i] - m);
    double s[TG_VLANES] = {0};
    int64_t j = 0;
    for (; j + TG_VLANES <= n; j += TG_VLANES)
        for (int l = 0; l < TG_VLANES; l++) s[l] += (double)y[j + l];
    for (int l = 0; j + l < n; l++) s[l] += (double)y[j + l];
    return tg_vlanes_total(s);
}

static inline void tg_vsoftmax_row(const tg_real *restrict x, tg_real *restrict y, int64_t n) {
    const tg_real r = (tg_real)(1.0 / tg_vexp_sum_row(x, y, n, tg_vmax_row(x, n, 1)));
    for (int64_t i = 0; i < n; i++) y[i] *= r;
}

/* dx (+)= y ⊙ (dy − Σ_j dy_j·y_j): the softmax Jacobian diag(y) − y yᵀ applied to dy.
 * acc = false overwrites dx. Same lane order as the forward. */
static inline void tg_vsoftmax_row_backward(const tg_real *restrict y, const tg_real *restrict dy,
                                            tg_real *restrict dx, int64_t n, bool acc) {
    double s[TG_VLANES] = {0};
    int64_t j = 0;
    for (; j + TG_VLANES <= n; j += TG_VLANES)
        for (int l = 0; l < TG_VLANES; l++) s[l] += (double)dy[j + l] * (double)y[j + l];
    for (int l = 0; j + l < n; l++) s[l] += (double)dy[j + l] * (double)y[j + l];
    const tg_real sr = (tg_real)tg_vlanes_total(s);
    if (acc)
        for (int64_t i = 0; i < n; i++) dx[i] += y[i] * (dy[i] - sr);
    else
        for (int64_t i = 0; i < n; i++) dx[i] = y[i] * (dy[i] - sr);
}

/* ---- dropout masks ----
 * Element i of a dropout call is kept when the top 24 bits of a keyed hash of i, read as
 * u in [0, 1) with 24-bit resolution (as PyTorch's float uniforms), satisfy u < 1 − p.
 * The 64-bit key is drawn once per call from the caller's generator, so a seed still
 * fixes every mask, yet each element is a pure function of (key, i): the loops
 * vectorise, any thread can make any range, and the backward recomputes the mask instead
 * of storing it. The hash is two rounds of a 32-bit xorshift-multiply mixer (a bijection
 * of 32-bit words; constants from Wellons' hash-prospector search), the first keyed by
 * the low index bits, the second by the high ones. */
typedef struct tg_dropout_key {
    uint32_t k0, k1;
    int32_t threshold; /* kept iff (hash >> 8) < threshold = ceil((1 − p)·2^24) */
    tg_real scale;     /* 1 / (1 − p) rounded to tg_real, as PyTorch; 0 for p = 1 */
} tg_dropout_key;

static inline uint32_t tg_mix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

/* The key of one call: two draws from rng (NULL = the default generator). */
static inline tg_dropout_key tg_dropout_key_draw(tg_rng *rng, double p) {
    if (!rng) rng = tg_rng_default();
    const double keep = 1.0 - p;
    tg_dropout_key key;
    key.k0 = tg_rng_next_u32(rng);
    key.k1 = tg_rng_next_u32(rng);
    key.threshold = (int32_t)ceil(keep * 16777216.0);
    key.scale = keep == 0 ? 0 : (tg_real)1 / (tg_real)keep;
    return key;
}

/* Loops over [i0, i1) walk it in pieces in which hi = i >> 32 is constant (which keeps them
 * vectorisable): tg_dropout_piece_end gives the end of the piece starting at i0, and
 * tg_dropout_piece_k1 the key word of its elements, for tg_dropout_factor_lo. */
static inline int64_t tg_dropout_piece_end(int64_t i0, int64_t i1) {
    const int64_t block_end = (int64_t)(((uint64_t)i0 >> 32) + 1) << 32;
    return i1 < block_end ? i1 : block_end;
}
static inline uint32_t tg_dropout_piece_k1(const tg_dropout_key *key, int64_t i0) {
    return (uint32_t)((uint64_t)i0 >> 32) ^ key->k1;
}
/* The factor (scale or 0) element i is multiplied by, from the low 32 bits of i and the
 * key word k1 of its piece. */
static inline tg_real tg_dropout_factor_lo(const tg_dropout_key *key, uint32_t k1, uint32_t ilo) {
    const uint32_t h = tg_mix32(tg_mix32(ilo ^ key->k0) + k1);
    return (int32_t)(h >> 8) < key->threshold ? key->scale : (tg_real)0;
}
static inline tg_real tg_dropout_factor(const tg_dropout_key *key, int64_t i) {
    return tg_dropout_factor_lo(key, tg_dropout_piece_k1(key, i), (uint32_t)i);
}

/* out[i] = x[i]·m_i (acc: out[i] += x[i]·m_i) for i in [i0, i1): a dropout forward, or
 * its backward with x = dy. */
static inline void tg_dropout_apply(const tg_dropout_key *key, const tg_real *restrict x,
                                    tg_real *restrict out, int64_t i0, int64_t i1, bool acc) {
    const tg_dropout_key kk = *key;
    while (i0 < i1) {
        const int64_t end = tg_dropout_piece_end(i0, i1);
        const uint32_t k1 = tg_dropout_piece_k1(&kk, i0);
        if (acc)
            for (int64_t i = i0; i < end; i++)
                out[i] += x[i] * tg_dropout_factor_lo(&kk, k1, (uint32_t)i);
        else
            for (int64_t i = i0; i < end; i++)
                out[i] = x[i] * tg_dropout_factor_lo(&kk, k1, (uint32_t)i);
        i0 = end;
    }
}

#endif
