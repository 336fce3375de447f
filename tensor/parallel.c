/* tensor/parallel.c — how many threads the kernels may use.
 *
 * One number for the whole library, read by every kernel that splits its work with
 * OpenMP (`#pragma omp parallel num_threads(tg_get_num_threads())`). Kernels split only
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
