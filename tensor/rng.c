/* MT19937 and PyTorch's float mappings. */
#include "tapegrad/rng.h"

#include <math.h>

static tg_rng default_rng;
static bool default_seeded = false;

void tg_rng_seed(tg_rng *rng, uint64_t seed) {
    TG_CHECK_ARG(rng);
    /* init_genrand: s[0] = seed, s[i] = 1812433253 * (s[i-1] ^ (s[i-1] >> 30)) + i */
    rng->state[0] = (uint32_t)seed;
    for (int i = 1; i < 624; i++) {
        const uint32_t prev = rng->state[i - 1];
        rng->state[i] = 1812433253u * (prev ^ (prev >> 30)) + (uint32_t)i;
    }
    rng->index = 624;
}

/* Regenerates all 624 words at once (the "twist"). */
static void rng_twist(tg_rng *rng) {
    uint32_t *s = rng->state;
    for (int i = 0; i < 624; i++) {
        const uint32_t y = (s[i] & 0x80000000u) | (s[(i + 1) % 624] & 0x7fffffffu);
        s[i] = s[(i + 397) % 624] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
    }
    rng->index = 0;
}

uint32_t tg_rng_next_u32(tg_rng *rng) {
    TG_CHECK_ARG(rng);
    if (rng->index >= 624) rng_twist(rng);
    uint32_t y = rng->state[rng->index++];
    /* tempering */
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

double tg_rng_uniform01(tg_rng *rng) {
    TG_CHECK_ARG(rng);
    return (double)(tg_rng_next_u32(rng) & 0xFFFFFFu) * (1.0 / 16777216.0);
}

tg_rng *tg_rng_default(void) {
    if (!default_seeded) {
        tg_rng_seed(&default_rng, 67280421310721ull); /* torch's default seed */
        default_seeded = true;
    }
    return &default_rng;
}

void tg_manual_seed(uint64_t seed) {
    tg_rng_seed(&default_rng, seed);
    default_seeded = true;
}

/* PyTorch draws a float32 uniform as fl32(u * (double)fl32(fl32(hi) - fl32(lo)) +
 * (double)fl32(lo)): the range is a float32 subtraction, the product and sum are double, rounded
 * once. */
static tg_real uniform_draw(tg_rng *rng, float lo, float range) {
    const double u = tg_rng_uniform01(rng);
    return (tg_real)(float)(u * (double)range + (double)lo);
}

void tg_init_uniform(tg_tensor *t, tg_real lo, tg_real hi, tg_rng *rng) {
    TG_CHECK_TENSOR(t);
    if (!rng) rng = tg_rng_default();
    const float flo = (float)lo, range = (float)hi - (float)lo;
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = uniform_draw(rng, flo, range);
}

/* Box-Muller over blocks of 16 uniforms (element j pairs with j+8), as torch's vectorised
 * normal_ does for tensors of >= 16 elements; if numel % 16 != 0 the last 16 elements are
 * drawn again and transformed again. Smaller tensors take torch's serial path instead: per two
 * values, two double uniforms of 53 bits, each from a 64-bit word of two draws (the first the
 * high half); the first gives the angle, the second the radius through log1p(-u); the value,
 * computed in double, is rounded to float32 once. (Torch keeps
 * the sine of an odd-sized tensor's last pair for its next small draw; this does not.) */
static void normal_block16(tg_real *d, tg_real mean, tg_real std) {
    for (int j = 0; j < 8; j++) {
        const double u1 = 1.0 - (double)d[j], u2 = (double)d[j + 8];
        const double radius = sqrt(-2.0 * log(u1)), theta = 2.0 * 3.14159265358979323846 * u2;
        d[j] = (tg_real)(radius * cos(theta) * std + mean);
        d[j + 8] = (tg_real)(radius * sin(theta) * std + mean);
    }
}

static double uniform53(tg_rng *rng) {
    const uint64_t hi = tg_rng_next_u32(rng), lo = tg_rng_next_u32(rng);
    return (double)(((hi << 32) | lo) & ((UINT64_C(1) << 53) - 1)) * 0x1p-53;
}

void tg_init_normal(tg_tensor *t, tg_real mean, tg_real std, tg_rng *rng) {
    TG_CHECK_TENSOR(t);
    if (!rng) rng = tg_rng_default();
    const int64_t n = t->numel;
    tg_real *d = t->data;
    if (n >= 16) {
        for (int64_t i = 0; i < n; i++) d[i] = uniform_draw(rng, 0.0f, 1.0f);
        for (int64_t i = 0; i + 16 <= n; i += 16) normal_block16(d + i, mean, std);
        if (n % 16 != 0) {
            for (int64_t i = n - 16; i < n; i++) d[i] = uniform_draw(rng, 0.0f, 1.0f);
            normal_block16(d + n - 16, mean, std);
        }
        return;
    }
    for (int64_t i = 0; i < n; i += 2) {
        const double u1 = uniform53(rng), u2 = uniform53(rng);
        const double radius = sqrt(-2.0 * log1p(-u2)), theta = 2.0 * 3.14159265358979323846 * u1;
        d[i] = (tg_real)(float)(radius * cos(theta) * std + mean);
        if (i + 1 < n) d[i + 1] = (tg_real)(float)(radius * sin(theta) * std + mean);
    }
}
