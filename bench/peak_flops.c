/* bench/peak_flops.c — the machine's fp32 FMA peak on one core, measured, so that the
 * benchmark table's "% of peak" is this machine's and not a number from a data sheet.
 *
 * Independent chains of vector FMAs (more chains than the FMA latency x the FMA units, so
 * the units never wait on a result), with the widest vectors the CPU has: 512-bit where
 * AVX-512F is there, else 256-bit AVX2 + FMA. Prints one line: "peak_gflops <value> <isa>".
 * The best of several rounds counts (a loaded machine can only make a round slower). */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

enum { CHAINS = 16, ITERATIONS = 20000000 / CHAINS };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Each returns the flops done: CHAINS x lanes x 2 per iteration. */
__attribute__((target("avx512f"))) static double fma_avx512(float *sink) {
    __m512 acc[CHAINS];
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_set1_ps((float)c);
    for (long i = 0; i < ITERATIONS; i++)
#pragma GCC unroll 16 /* the chains must live in registers, whatever the -O level */
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
    __m512 s = acc[0];
    for (int c = 1; c < CHAINS; c++) s = _mm512_add_ps(s, acc[c]);
    *sink = _mm512_reduce_add_ps(s);
    return 2.0 * 16 * CHAINS * (double)ITERATIONS;
}

__attribute__((target("avx2,fma"))) static double fma_avx2(float *sink) {
    __m256 acc[CHAINS];
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_set1_ps((float)c);
    for (long i = 0; i < ITERATIONS; i++)
#pragma GCC unroll 16
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
    __m256 s = acc[0];
    for (int c = 1; c < CHAINS; c++) s = _mm256_add_ps(s, acc[c]);
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    *sink = lanes[0] + lanes[7];
    return 2.0 * 8 * CHAINS * (double)ITERATIONS;
}

int main(void) {
    __builtin_cpu_init();
    const int wide = __builtin_cpu_supports("avx512f");
    if (!wide && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) {
        printf("peak_gflops 0 none\n"); /* no FMA vectors: the table shows no % of peak */
        return 0;
    }
    double best = 0;
    float sink = 0;
    for (int round = 0; round < 7; round++) {
        const double t0 = now();
        const double flops = wide ? fma_avx512(&sink) : fma_avx2(&sink);
        const double gflops = flops / (now() - t0) * 1e-9;
        if (gflops > best) best = gflops;
    }
    printf("peak_gflops %.1f %s (sink %g)\n", best, wide ? "avx512" : "avx2", (double)sink);
    return 0;
}
