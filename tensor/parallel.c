/* tensor/parallel.c — how many threads the kernels may use, and the one loop splitter.
 *
 * One number for the whole library, read by every kernel that splits its work with
 * OpenMP, through tg_parallel_for (or, in tg_gemm, its own split). Kernels split only
 * over independent outputs, never inside a sum, so this number changes speed, not bits.
 *
 * Why the default adapts to the load. A parallel region ends in a barrier: the thread that
 * finishes first waits for the others, and OpenMP's threads wait by spinning. When other
 * processes keep the CPUs busy, the partner a thread waits for may be descheduled for a
 * whole time slice (milliseconds), while the waiter burns its own slice spinning; a training
 * step runs thousands of regions of a few microseconds, so a run that takes 7 s on an idle
 * 2-core machine took 53 s beside two busy processes. One thread never waits for another,
 * and it gets its fair share of a CPU: so by default each region takes only the CPUs that
 * are free, seen from the scheduler's count of runnable tasks. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT, CLOCK_MONOTONIC_COARSE */
#include "tapegrad/kernels.h"

#include <stdatomic.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef __linux__
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#endif

/* 0 = not set: the adaptive default. */
static atomic_int tg_threads_requested = 0;

#ifdef _OPENMP
/* OpenMP's own default (OMP_NUM_THREADS, else one per core), remembered before our first
 * omp_set_num_threads changes it: the ceiling of the adaptive default. */
static int openmp_default_threads(void) {
    static atomic_int remembered = 0;
    int n = atomic_load(&remembered);
    if (n == 0) {
        int expected = 0;
        atomic_compare_exchange_strong(&remembered, &expected, omp_get_max_threads());
        n = atomic_load(&remembered);
    }
    return n;
}
#endif

#if defined(_OPENMP) && defined(__linux__) /* only a thread team needs the free CPUs */
/* The whole of a small /proc file into buf (NUL-terminated); its length, or -1. */
static ssize_t read_small_file(const char *path, char *buf, size_t size) {
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    const ssize_t got = read(fd, buf, size - 1);
    close(fd);
    if (got < 0) return -1;
    buf[got] = '\0';
    return got;
}

/* Threads of this process that are runnable now (state R in /proc/self/task/<tid>/stat):
 * the caller itself, and OpenMP workers still spinning after a region. */
static int own_runnable_threads(void) {
    DIR *dir = opendir("/proc/self/task");
    if (!dir) return 1;
    int running = 0;
    char path[64], stat[512];
    for (const struct dirent *e; (e = readdir(dir)) != NULL;) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "/proc/self/task/%.20s/stat", e->d_name);
        if (read_small_file(path, stat, sizeof stat) <= 0) continue;
        const char *close_paren = strrchr(stat, ')'); /* the name may hold spaces */
        if (close_paren && close_paren[1] == ' ' && close_paren[2] == 'R') running++;
    }
    closedir(dir);
    return running > 0 ? running : 1;
}

/* CPUs that other processes keep busy now: the runnable tasks of the whole machine (the
 * fourth field of /proc/loadavg, "runnable/total", counted by the scheduler at the moment
 * of the read) less this process's own. 0 when /proc cannot tell. */
static int cpus_busy_elsewhere(void) {
    char buf[128];
    if (read_small_file("/proc/loadavg", buf, sizeof buf) <= 0) return 0;
    double avg[3];
    int runnable = 0;
    if (sscanf(buf, "%lf %lf %lf %d/", &avg[0], &avg[1], &avg[2], &runnable) != 4) return 0;
    const int busy = runnable - own_runnable_threads();
    return busy > 0 ? busy : 0;
}

static int64_t coarse_now_ns(void) {
    struct timespec ts;
#ifdef CLOCK_MONOTONIC_COARSE
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts); /* a few ns through the vDSO */
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* How often the load is looked at. A look costs some 20 us of system calls; at this
 * period that is ~0.1% of the time, and a change of load is followed within 20 ms. */
#define TG_LOAD_PERIOD_NS 20000000

/* The CPUs free for this process, at most `ceiling`, at least 1. Sampled at most once per
 * period (the thread that finds the sample stale takes it; the others use the last one).
 * A CPU counts as busy only when two samples in a row see it busy, so a task that runs
 * for an instant (a kernel worker, a shell) does not halve the speed of an idle machine. */
static int cpus_free(int ceiling) {
    static atomic_llong next_sample = 0;
    static atomic_int last_busy = 0, free_estimate = 0;
    const int64_t now = coarse_now_ns();
    long long due = atomic_load_explicit(&next_sample, memory_order_relaxed);
    if (now >= due && atomic_compare_exchange_strong(&next_sample, &due, now + TG_LOAD_PERIOD_NS)) {
        cpu_set_t allowed;
        const int cpus =
            sched_getaffinity(0, sizeof allowed, &allowed) == 0 ? CPU_COUNT(&allowed) : ceiling;
        const int busy = cpus_busy_elsewhere();
        const int previous = atomic_exchange(&last_busy, busy);
        atomic_store(&free_estimate, cpus - (busy < previous ? busy : previous));
    }
    const int free_cpus = atomic_load(&free_estimate);
    return free_cpus < 1 ? 1 : free_cpus > ceiling ? ceiling : free_cpus;
}
#elif defined(_OPENMP)
static int cpus_free(int ceiling) { return ceiling; }
#endif

void tg_set_num_threads(int n) {
#ifdef _OPENMP
    /* Plain `omp parallel` without a num_threads clause follows this too. */
    omp_set_num_threads(n > 0 ? n : openmp_default_threads());
#endif
    atomic_store(&tg_threads_requested, n > 0 ? n : 0);
}

int tg_get_num_threads(void) {
#ifdef _OPENMP
    const int n = atomic_load(&tg_threads_requested);
    return n > 0 ? n : cpus_free(openmp_default_threads());
#else
    return 1;
#endif
}

void tg_parallel_for(int64_t n, int64_t grain, tg_range_fn body, void *ctx) {
    if (n <= 0) return;
    TG_CHECK_ARG(body);
    if (grain < 1) grain = 1;
    /* One look at the thread count per region, only when there is work to share. */
    int threads = n >= 2 * grain ? tg_get_num_threads() : 1;
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
