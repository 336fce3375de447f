/* bench/bench_gemm.c — tg_gemm GFLOP/s on the shapes that matter.
 *
 *   bench_gemm [--threads N] [--portable] [--quick] [--cpu-time] [--only squares|rnn|tiny]
 *              [--shape CASE M N K]...
 *
 * Prints one line per shape:  gemm <case> <m> <n> <k> <GFLOP/s>
 * (the same lines bench_gemm.py prints for torch.mm, which joins the two into a table).
 * case is NN, NT or TN: C = op(A) op(B) with T = that operand stored transposed.
 * Shapes: squares 64..2048 (NN) and the recurrent-layer shapes: m = batch 32 or 64,
 * n = 3H or 4H, k = H for H in 128, 256, 512, in the three transpose cases a
 * recurrent layer's forward (x W^T: NT) and backward (dY W: NN, dY^T X: TN) use,
 * plus the tiny batch-1 products of a GRUCell step. Each figure is the best of
 * several timed rounds (the machine may be shared). --shape (repeatable) times only the
 * given shapes, e.g. --shape NN 64 768 256 (for profiling one case). */
#include <tapegrad/kernels.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Wall-clock time; with --cpu-time the process's CPU time divided by the thread count
 * instead (for a busy shared machine: time-slicing then does not count, caches still do). */
static clockid_t bench_clock = CLOCK_MONOTONIC;
static double bench_clock_div = 1;

static double bench_now(void) {
    struct timespec ts;
    clock_gettime(bench_clock, &ts);
    return ((double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec) / bench_clock_div;
}

static tg_real *bench_matrix(int64_t count, uint64_t *state) {
    tg_real *x = aligned_alloc(64, (size_t)((count * (int64_t)sizeof(tg_real) + 63) / 64 * 64));
    if (!x) {
        fprintf(stderr, "bench_gemm: out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < count; i++) {
        *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (tg_real)((double)(*state >> 40) / (double)(1 << 24) - 0.5);
    }
    return x;
}

/* Best GFLOP/s over `rounds` rounds of about `round_s` seconds each. */
static double bench_shape(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double round_s,
                          int rounds) {
    uint64_t state = 42;
    tg_real *a = bench_matrix(m * k, &state), *b = bench_matrix(k * n, &state);
    tg_real *c = bench_matrix(m * n, &state);
    const int64_t lda = ta ? m : k, ldb = tb ? k : n;
    const double flop = 2.0 * (double)m * (double)n * (double)k;
    /* warm up (packing buffers, caches, thread pool) and size the rounds */
    int64_t reps = 1;
    for (;;) {
        const double t0 = bench_now();
        for (int64_t r = 0; r < reps; r++) tg_gemm(ta, tb, m, n, k, 1, a, lda, b, ldb, 0, c, n);
        const double dt = bench_now() - t0;
        if (dt > 0.02) {
            reps = (int64_t)(reps * round_s / dt) + 1;
            break;
        }
        reps *= 4;
    }
    double best = 0;
    for (int round = 0; round < rounds; round++) {
        const double t0 = bench_now();
        for (int64_t r = 0; r < reps; r++) tg_gemm(ta, tb, m, n, k, 1, a, lda, b, ldb, 0, c, n);
        const double gflops = flop * (double)reps / (bench_now() - t0) / 1e9;
        if (gflops > best) best = gflops;
    }
    free(a);
    free(b);
    free(c);
    return best;
}

static void bench_print(const char *cas, int64_t m, int64_t n, int64_t k, double round_s,
                        int rounds) {
    const bool ta = cas[0] == 'T', tb = cas[1] == 'T';
    const double g = bench_shape(ta, tb, m, n, k, round_s, rounds);
    printf("gemm %s %lld %lld %lld %.2f\n", cas, (long long)m, (long long)n, (long long)k, g);
    fflush(stdout);
}

int main(int argc, char **argv) {
    int threads = 1;
    double round_s = 0.15;
    int rounds = 3;
    const char *only = NULL;
    int n_shapes = 0;
    char **shape_args[16];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--portable") == 0) {
            tg_gemm_force_portable(true);
        } else if (strcmp(argv[i], "--cpu-time") == 0) {
            bench_clock = CLOCK_PROCESS_CPUTIME_ID;
        } else if (strcmp(argv[i], "--quick") == 0) {
            round_s = 0.05;
            rounds = 2;
        } else if (strcmp(argv[i], "--shape") == 0 && i + 4 < argc && n_shapes < 16 &&
                   strlen(argv[i + 1]) == 2) {
            shape_args[n_shapes++] = argv + i + 1;
            i += 4;
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else {
            fprintf(stderr,
                    "usage: %s [--threads N] [--portable] [--quick] [--cpu-time] "
                    "[--only squares|rnn|tiny] [--shape NN|NT|TN|TT M N K]...\n",
                    argv[0]);
            return 2;
        }
    }
    tg_set_num_threads(threads);
    if (bench_clock == CLOCK_PROCESS_CPUTIME_ID) bench_clock_div = tg_get_num_threads();
    printf("# gemm: %s\n", tg_gemm_config_describe()); /* the per-CPU choice */
    printf("# tapegrad tg_gemm %s, kernel %s, threads %d\n", TG_REAL_NAME, tg_gemm_kernel_name(),
           tg_get_num_threads());
    for (int s = 0; s < n_shapes; s++)
        bench_print(shape_args[s][0], atoll(shape_args[s][1]), atoll(shape_args[s][2]),
                    atoll(shape_args[s][3]), round_s, rounds);
    if (n_shapes) return 0;
    if (!only || strcmp(only, "squares") == 0)
        for (int64_t s = 64; s <= 2048; s *= 2) bench_print("NN", s, s, s, round_s, rounds);
    if (!only || strcmp(only, "rnn") == 0) {
        static const char *const cases[] = {"NT", "NN", "TN"};
        for (int64_t batch = 32; batch <= 64; batch *= 2)
            for (int64_t h = 128; h <= 512; h *= 2)
                for (int64_t gates = 3; gates <= 4; gates++)
                    for (int c = 0; c < 3; c++)
                        bench_print(cases[c], batch, gates * h, h, round_s, rounds);
    }
    if (!only || strcmp(only, "tiny") == 0) {
        /* GRUCell(16 -> 32), batch 1: x W_ih^T and h W_hh^T */
        bench_print("NT", 1, 96, 16, round_s, rounds);
        bench_print("NT", 1, 96, 32, round_s, rounds);
        bench_print("NN", 1, 32, 96, round_s, rounds);
        bench_print("TN", 96, 32, 1, round_s, rounds);
    }
    return 0;
}
