/* bench/bench_common.c — timer, arguments, result line, malloc counting, peak RSS
 * (see bench_common.h). */
#include "bench_common.h"

#include <errno.h>
#include <execinfo.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* ------------------------------------------------------------------------------------------
 * malloc counting. An executable's definition of malloc interposes on libc's for every
 * shared object of the process (libtapegrad, libgomp, libc itself), so defining the
 * allocation functions here, forwarding to glibc's own entry points, counts every call.
 * Freeing goes to libc's free untouched (the memory is glibc's). */
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);

static _Atomic uint64_t malloc_calls;

/* BENCH_MALLOC_TRACE=N: the call stacks of the first N malloc-family calls of the timed
 * steps go to stderr at the end (to find who still allocates in a step). */
#define TRACE_MAX   4096
#define TRACE_DEPTH 10
static _Atomic int trace_on;
static _Atomic int trace_count;
static int trace_limit;
static void *trace_frames[TRACE_MAX][TRACE_DEPTH];
static int trace_depth[TRACE_MAX];
static _Thread_local int in_trace;

static inline void count_call(void) {
    atomic_fetch_add_explicit(&malloc_calls, 1, memory_order_relaxed);
    if (atomic_load_explicit(&trace_on, memory_order_relaxed) && !in_trace) {
        const int k = atomic_fetch_add(&trace_count, 1);
        if (k < trace_limit && k < TRACE_MAX) {
            in_trace = 1;
            trace_depth[k] = backtrace(trace_frames[k], TRACE_DEPTH);
            in_trace = 0;
        }
    }
}

static void trace_setup(void) {
    const char *s = getenv("BENCH_MALLOC_TRACE");
    if (!s || atoi(s) <= 0) return;
    trace_limit = atoi(s);
    void *frames[2];
    backtrace(frames, 2); /* loads libgcc's unwinder now, not inside a counted call */
}

static void trace_report(void) {
    const int n = atomic_load(&trace_count);
    for (int k = 0; k < n && k < trace_limit && k < TRACE_MAX; k++) {
        fprintf(stderr, "-- malloc-family call %d of the timed steps:\n", k + 1);
        fflush(stderr);
        backtrace_symbols_fd(trace_frames[k] + 1, trace_depth[k] - 1, 2);
    }
}

void *malloc(size_t size) {
    count_call();
    return __libc_malloc(size);
}

void *calloc(size_t count, size_t size) {
    count_call();
    return __libc_calloc(count, size);
}

void *realloc(void *p, size_t size) {
    count_call();
    return __libc_realloc(p, size);
}

void *memalign(size_t alignment, size_t size);
void *memalign(size_t alignment, size_t size) {
    count_call();
    return __libc_memalign(alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size) {
    count_call();
    return __libc_memalign(alignment, size);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    count_call();
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return EINVAL;
    void *p = __libc_memalign(alignment, size);
    if (!p && size) return ENOMEM;
    *out = p;
    return 0;
}

uint64_t bench_malloc_calls(void) {
    return atomic_load_explicit(&malloc_calls, memory_order_relaxed);
}

/* VmHWM of /proc/self/status: this process's own peak. getrusage's ru_maxrss is not, on
 * Linux: it carries the parent's peak across fork + exec (the Python runner's ~13 MB). */
long bench_peak_rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    if (f) fclose(f);
    if (kb >= 0) return kb;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss; /* kilobytes on Linux */
}

long bench_minor_faults(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return ru.ru_minflt;
}

double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double bench_cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------------------------------
 * arguments */
static const char *common_usage =
    "  --threads N    kernel threads (default 1)\n"
    "  --quick        fewer, shorter rounds (a smoke run)\n"
    "  --inference    forward only, recording off (where the program offers it)\n"
    "  --warmup N     untimed steps first (default 3, quick 2; at least 2)\n"
    "  --rounds N     timed rounds (default 5, quick 2)\n"
    "  --round-s S    target seconds per round (default 1.0, quick 0.2)\n"
    "  --seed N       weights and data (default 0)\n"
    "  --config NAME  which configuration (programs with several)\n";

static void usage_exit(const char *prog, const char *usage, const char *bad) {
    if (bad) fprintf(stderr, "%s: bad or unknown argument '%s'\n", prog, bad);
    fprintf(stderr, "usage: %s [options]\n%s%s", prog, usage ? usage : "", common_usage);
    exit(2);
}

static bool parse_long(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

void bench_parse(int argc, char **argv, bench_args *a, const char *usage,
                 const char *const *extra) {
    memset(a, 0, sizeof *a);
    a->threads = 1;
    a->impl = "tapegrad";
    a->warmup = -1;
    a->rounds = -1;
    a->round_s = -1;
    a->argc = argc;
    a->argv = argv;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        long long v;
        if (strcmp(f, "--quick") == 0) {
            a->quick = true;
        } else if (strcmp(f, "--inference") == 0) {
            a->inference = true;
        } else if (strcmp(f, "--help") == 0) {
            usage_exit(argv[0], usage, NULL);
        } else if (i + 1 >= argc) {
            usage_exit(argv[0], usage, f);
        } else if (strcmp(f, "--threads") == 0) {
            if (!parse_long(argv[++i], 1, 1024, &v)) usage_exit(argv[0], usage, argv[i]);
            a->threads = (int)v;
        } else if (strcmp(f, "--warmup") == 0) {
            if (!parse_long(argv[++i], 2, 1000000, &v)) usage_exit(argv[0], usage, argv[i]);
            a->warmup = (int)v;
        } else if (strcmp(f, "--rounds") == 0) {
            if (!parse_long(argv[++i], 1, 1000000, &v)) usage_exit(argv[0], usage, argv[i]);
            a->rounds = (int)v;
        } else if (strcmp(f, "--seed") == 0) {
            if (!parse_long(argv[++i], 0, INT64_MAX, &v)) usage_exit(argv[0], usage, argv[i]);
            a->seed = (uint64_t)v;
        } else if (strcmp(f, "--round-s") == 0) {
            char *end;
            a->round_s = strtod(argv[++i], &end);
            if (*end || !(a->round_s > 0)) usage_exit(argv[0], usage, argv[i]);
        } else if (strcmp(f, "--config") == 0) {
            a->config = argv[++i];
        } else {
            bool known = false;
            for (int k = 0; extra && extra[k]; k++) known |= strcmp(f, extra[k]) == 0;
            if (!known) usage_exit(argv[0], usage, f);
            i++; /* its value, read by bench_flag_* */
        }
    }
    if (a->warmup < 0) a->warmup = a->quick ? 2 : 3;
    if (a->rounds < 0) a->rounds = a->quick ? 2 : 5;
    if (a->round_s < 0) a->round_s = a->quick ? 0.2 : 1.0;
    tg_set_num_threads(a->threads);
    if (tg_get_num_threads() != a->threads)
        fprintf(stderr, "%s: asked for %d threads, the kernels use %d\n", argv[0], a->threads,
                tg_get_num_threads());
    tg_manual_seed(a->seed);
    trace_setup();
    bench_mem_mark("arguments parsed");
}

static const char *find_flag(const bench_args *a, const char *name) {
    const char *value = NULL;
    for (int i = 1; i + 1 < a->argc; i++)
        if (strcmp(a->argv[i], name) == 0) value = a->argv[++i];
    return value;
}

int64_t bench_flag_int(const bench_args *a, const char *name, int64_t def) {
    const char *s = find_flag(a, name);
    long long v;
    if (!s) return def;
    if (!parse_long(s, 0, INT64_MAX, &v)) usage_exit(a->argv[0], NULL, s);
    return (int64_t)v;
}

const char *bench_flag_str(const bench_args *a, const char *name, const char *def) {
    const char *s = find_flag(a, name);
    return s ? s : def;
}

/* ------------------------------------------------------------------------------------------
 * the timed run */
static tg_tape *watched_tape;

void bench_watch_tape(tg_tape *tape) { watched_tape = tape; }

static int cmp_double(const void *x, const void *y) {
    const double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

void bench_run(const char *config, const bench_args *a, double flops, bench_step_fn step,
               void *ctx) {
    bench_mem_mark("before the first step");
    /* step 1: what a first step allocates (arena blocks, gradient buffers, ...) */
    const uint64_t m0 = bench_malloc_calls();
    const double loss0 = step(ctx);
    const uint64_t first_step_mallocs = bench_malloc_calls() - m0;
    /* the rest of the warm-up; the last step sizes the rounds */
    double last = 0;
    for (int i = 1; i < a->warmup; i++) {
        const double t0 = bench_now();
        step(ctx);
        last = bench_now() - t0;
    }
    int64_t per_round = (int64_t)ceil(a->round_s / (last > 1e-9 ? last : 1e-9));
    if (per_round < 1) per_round = 1;

    double *ms = malloc(2 * (size_t)a->rounds * sizeof *ms);
    if (!ms) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    double *cpu = ms + a->rounds;
    double loss = loss0;
    uint64_t timed_mallocs = 0;
    const long faults0 = bench_minor_faults();
    if (trace_limit > 0) atomic_store(&trace_on, 1);
    for (int r = 0; r < a->rounds; r++) {
        const uint64_t mr = bench_malloc_calls();
        const double c0 = bench_cpu_now(), t0 = bench_now();
        for (int64_t s = 0; s < per_round; s++) loss = step(ctx);
        const double dt = bench_now() - t0, dc = bench_cpu_now() - c0;
        timed_mallocs += bench_malloc_calls() - mr;
        ms[r] = 1e3 * dt / (double)per_round;
        cpu[r] = 1e3 * dc / (double)per_round;
    }
    atomic_store(&trace_on, 0);
    const long timed_faults = bench_minor_faults() - faults0;
    trace_report();
    qsort(ms, (size_t)a->rounds, sizeof *ms, cmp_double);
    qsort(cpu, (size_t)a->rounds, sizeof *cpu, cmp_double);
    const double best = ms[0], median = ms[a->rounds / 2], best_cpu = cpu[0];
    const int64_t steps = per_round * a->rounds;
    free(ms);
    printf("# %s: tapegrad %s, gemm kernel %s, threads %d, %lld steps per round\n", a->impl,
           TG_REAL_NAME, tg_gemm_kernel_name(), tg_get_num_threads(), (long long)per_round);
    printf("result config=%s impl=%s threads=%d ms=%.4f ms_median=%.4f cpu_ms=%.4f "
           "steps=%lld flops=%.6g gflops=%.3f mallocs_per_step=%.3f first_step_mallocs=%llu "
           "page_faults_per_step=%.1f arena_mb=%.1f peak_rss_kb=%ld loss0=%.6f loss=%.6f\n",
           config, a->impl, a->threads, best, median, best_cpu, (long long)steps, flops,
           flops / (best * 1e-3) / 1e9, (double)timed_mallocs / (double)steps,
           (unsigned long long)first_step_mallocs, (double)timed_faults / (double)steps,
           watched_tape ? (double)tg_tape_capacity(watched_tape) / 1048576.0 : -1.0,
           bench_peak_rss_kb(), loss0, loss);
    fflush(stdout);
}

/* ------------------------------------------------------------------------------------------
 * data and FLOPs */
bench_lcg bench_lcg_new(uint64_t seed) {
    bench_lcg g = {seed * 0x9E3779B97F4A7C15ULL + 12345};
    return g;
}

int32_t bench_lcg_below(bench_lcg *g, int32_t n) {
    g->state = g->state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (int32_t)((g->state >> 33) % (uint64_t)n);
}

tg_index *bench_random_index(bench_lcg *g, int32_t n, int ndim, const int64_t *shape) {
    tg_index *ix = tg_index_new(ndim, shape);
    for (int64_t i = 0; i < ix->numel; i++) ix->data[i] = bench_lcg_below(g, n);
    return ix;
}

tg_tensor *bench_random_tensor(bench_lcg *g, int ndim, const int64_t *shape) {
    tg_tensor *t = tg_tensor_new(ndim, shape);
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = (tg_real)((double)bench_lcg_below(g, 1 << 21) / (double)(1 << 20) - 1.0);
    return t;
}

double bench_gemm_flops(int64_t m, int64_t n, int64_t k) {
    return 2.0 * (double)m * (double)n * (double)k;
}

double bench_rnn_layer_flops(int64_t T, int64_t B, int64_t in, int64_t H, int gates) {
    return bench_gemm_flops(T * B, gates * H, in + H);
}

bool bench_rnn_layer_shape(const bench_args *a, const char *program, bench_rnn_shape *s) {
    const char *config = a->config ? a->config : "gru_cls_layer";
    *s = (bench_rnn_shape){.lstm = strcmp(config, "lstm_cls_layer") == 0};
    if (strcmp(config, "gru_cls_layer") == 0 || s->lstm) {
        s->I = 128, s->H = 256, s->B = 64, s->T = 50;
    } else if (strcmp(config, "gru_lm_layer0") == 0) {
        s->I = 300, s->H = 512, s->B = 32, s->T = 35;
    } else if (strcmp(config, "gru_lm_layer1") == 0) {
        s->I = 512, s->H = 512, s->B = 32, s->T = 35;
    } else {
        fprintf(stderr, "%s: unknown config '%s'\n", program, config);
        return false;
    }
    s->I = bench_flag_int(a, "--input", s->I);
    s->H = bench_flag_int(a, "--hidden", s->H);
    s->B = bench_flag_int(a, "--batch", s->B);
    s->T = bench_flag_int(a, "--seq", s->T);
    return true;
}

/* BENCH_MEM=1: where the memory of the first steps goes, on stderr (see bench_mem_mark). */
static int mem_steps = -1;

static long status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    const size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') {
            kb = atol(line + n + 1);
            break;
        }
    if (f) fclose(f);
    return kb;
}

void bench_mem_mark(const char *where) {
    if (mem_steps < 0) {
        const char *s = getenv("BENCH_MEM");
        mem_steps = s ? atoi(s) : 0;
    }
    if (mem_steps <= 0) return;
    fprintf(stderr, "mem %-22s rss_mb=%.1f hwm_mb=%.1f", where, status_kb("VmRSS") / 1024.0,
            status_kb("VmHWM") / 1024.0);
    if (watched_tape) {
        const tg_arena *a = tg_tape_arena(watched_tape);
        fprintf(stderr, " arena_used_mb=%.1f arena_peak_mb=%.1f arena_cap_mb=%.1f tape_cap_mb=%.1f",
                tg_arena_used(a) / 1048576.0, tg_arena_peak(a) / 1048576.0,
                tg_arena_capacity(a) / 1048576.0, tg_tape_capacity(watched_tape) / 1048576.0);
    }
    fputc('\n', stderr);
}

double bench_step_end(tg_tape *tape, tg_tensor *loss, tg_optim *opt) {
    bench_mem_mark("forward done");
    if (opt) {
        tg_tape_backward(tape, loss);
        bench_mem_mark("backward done");
        tg_optim_step(opt);
        bench_mem_mark("optimizer step done");
    }
    if (mem_steps > 0) mem_steps--;
    const double value = tg_item(loss);
    tg_tape_reset(tape);
    return value;
}
