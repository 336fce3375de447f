/* bench/allreduce_bw.c — MPI_Allreduce (float sum) time and bandwidth for message sizes from
 * 1 KB to 64 MB: the transport figures the data-parallel cost model (bench/dist_model.py)
 * is calibrated with. Raw MPI, no tapegrad: it measures the wire, not the library.
 *
 *   mpirun -np 2 --bind-to core --mca btl self,vader build/release/bench/allreduce_bw
 *   mpirun -np 2 --bind-to core --mca btl tcp,self   build/release/bench/allreduce_bw
 *       [--min-bytes 1024] [--max-bytes 67108864] [--seconds S] [--quick]
 *
 * For each size (powers of two) it runs a few untimed all-reduces, then as many timed ones as
 * fit in about --seconds (at least 5), each started together (a barrier first, not timed);
 * the time of one is the slowest rank's. Output, rank 0 only, one line per size:
 *
 *   allreduce bytes=1048576 ranks=2 us=812.3 us_median=830.1 algbw_gbs=1.29 busbw_gbs=1.29
 *
 * algbw = bytes / time; busbw = algbw · 2(N-1)/N, the bytes each rank's link carries per
 * second in a ring all-reduce (reduce-scatter then all-gather, each moving (N-1)/N of the
 * buffer through every link), so that busbw compares with the link's own bandwidth whatever
 * N is. The best time (minimum) is the transport's capability; the median is what a training
 * step sees on a shared machine. */
#include <mpi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *x, const void *y) {
    const double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static long long arg_ll(int argc, char **argv, const char *name, long long def) {
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return atoll(argv[i + 1]);
    return def;
}

static double arg_double(int argc, char **argv, const char *name, double def) {
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return atof(argv[i + 1]);
    return def;
}

/* One timed all-reduce, started together on every rank; returns the slowest rank's time. */
static double timed_allreduce(float *buf, int count) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = MPI_Wtime();
    MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    double dt = MPI_Wtime() - t0, slowest;
    MPI_Allreduce(&dt, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return slowest;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, ranks;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    int quick = 0;
    for (int i = 1; i < argc; i++) quick |= strcmp(argv[i], "--quick") == 0;
    const long long min_bytes = arg_ll(argc, argv, "--min-bytes", 1024);
    const long long max_bytes = arg_ll(argc, argv, "--max-bytes", 64LL << 20);
    const double seconds = arg_double(argc, argv, "--seconds", quick ? 0.1 : 0.5);
    if (min_bytes < 4 || max_bytes < min_bytes || max_bytes > (1LL << 33)) {
        if (rank == 0) fprintf(stderr, "allreduce_bw: bad --min-bytes/--max-bytes\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    float *buf = malloc((size_t)max_bytes);
    if (!buf) MPI_Abort(MPI_COMM_WORLD, 1);
    /* every rank the same small values: sums stay finite however many rounds run */
    for (long long i = 0; i < max_bytes / 4; i++) buf[i] = 0.0f;

    enum { MAX_REPS = 1000 };
    static double times[MAX_REPS];
    for (long long bytes = min_bytes; bytes <= max_bytes; bytes *= 2) {
        const int count = (int)(bytes / 4);
        for (int w = 0; w < 3; w++) timed_allreduce(buf, count); /* connections, faults */
        /* Repeat until about --seconds have passed (5..MAX_REPS times). Every rank holds the
         * same slowest-rank times, so every rank takes the same decision to stop. */
        int reps = 0;
        double total = 0;
        while (reps < MAX_REPS && (reps < 5 || total < seconds)) {
            times[reps] = timed_allreduce(buf, count);
            total += times[reps++];
        }
        qsort(times, (size_t)reps, sizeof *times, cmp_double);
        const double best = times[0], median = times[reps / 2];
        const double algbw = (double)bytes / best / 1e9;
        if (rank == 0)
            printf("allreduce bytes=%lld ranks=%d us=%.1f us_median=%.1f algbw_gbs=%.4f "
                   "busbw_gbs=%.4f reps=%d\n",
                   bytes, ranks, best * 1e6, median * 1e6, algbw, algbw * 2.0 * (ranks - 1) / ranks,
                   reps);
        fflush(stdout);
    }
    free(buf);
    MPI_Finalize();
    return 0;
}
