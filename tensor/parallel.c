/* tensor/parallel.c — how many threads the kernels may use, and the one loop splitter.
 *
 * One number for the whole library, read by every kernel that splits its work with
 * OpenMP, through tg_parallel_for (or, in tg_gemm, its own split). Kernels split only
 * over independent outputs, never inside a sum, so this number changes speed, not bits. */
#include "tapegrad/kernels.h"

#include <stdatomic.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* 0 = not set: follow OpenMP's default (OMP_NUM_THREADS, else one per core). */
static atomic_int tg_threads_requested = 0;

void tg_set_num_threads(int n) {
#ifdef _OPENMP
    /* Remember OpenMP's own default before the first change, so that n <= 0 can bring
     * it back for code that uses plain `omp parallel` without a num_threads clause. */
    static atomic_int openmp_default = 0;
    int expected = 0;
    atomic_compare_exchange_strong(&openmp_default, &expected, omp_get_max_threads());
    omp_set_num_threads(n > 0 ? n : atomic_load(&openmp_default));
#endif
    atomic_store(&tg_threads_requested, n > 0 ? n : 0);
}

int tg_get_num_threads(void) {
#ifdef _OPENMP
    const int n = atomic_load(&tg_threads_requested);
    return n > 0 ? n : omp_get_max_threads();
#else
    return 1;
#endif
}

void tg_parallel_for(int64_t n, int64_t grain, tg_range_fn body, void *ctx) {
    if (n <= 0) return;
    TG_CHECK_ARG(body);
    int threads = tg_get_num_threads();
    if (grain < 1) grain = 1;
    if (threads > n / grain) threads = (int)(n / grain);
    if (threads <= 1) {
        body(0, n, ctx);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
    {
        const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t begin = n * t / nt, end = n * (t + 1) / nt;
        if (begin < end) body(begin, end, ctx);
    }
#endif
}
