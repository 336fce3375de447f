/* bench/bench_common.h — what every tapegrad benchmark program shares.
 *
 *   args     --threads N, --quick, --inference, --warmup N, --rounds N, --round-s S,
 *            --seed N, and a few named integer/string flags each program declares;
 *   timing   a training (or inference) step is a callback; bench_run warms up, sizes the
 *            rounds from the warm-up steps, times `rounds` rounds and reports the best
 *            round's wall-clock ms/step (and the median), and the best round's process CPU
 *            time per step (cpu_ms, all threads summed: on a busy shared machine, where
 *            time slicing inflates wall-clock time, cpu_ms / threads is the steadier figure);
 *   mallocs  this file defines malloc/calloc/realloc/aligned_alloc/posix_memalign/memalign
 *            for the whole process (the executable's definitions interpose on libc's for
 *            libtapegrad.so and libgomp too) and counts every call: the result line gives
 *            the calls of the first step and the calls per step of the timed steps;
 *   memory   peak RSS of the process (getrusage ru_maxrss), and the minor page faults per
 *            timed step (memory returned to the system and faulted in again each step);
 *   output   one machine-readable line per run:
 *              result config=gru_cls impl=tapegrad threads=1 ms=93.1 ms_median=93.5 cpu_ms=92.8
 *                     steps=50 flops=5.66e+09 gflops=60.8 mallocs_per_step=0
 *                     first_step_mallocs=12 page_faults_per_step=0 peak_rss_kb=30512
 *                     loss0=2.31 loss=2.28
 *            (bench/torch_models.py prints the same keys for PyTorch; scripts/bench.sh joins
 *            them into the table).
 *
 * FLOPs are the useful ones: 2·m·n·k of every matrix product of the forward pass, and for a
 * training step the two products of its backward (input and weight gradients), i.e. 3× the
 * forward's (every product in these models has both operands requiring grad). Elementwise
 * work, softmax, embeddings and the optimizer are not counted. */
#ifndef TAPEGRAD_BENCH_COMMON_H
#define TAPEGRAD_BENCH_COMMON_H

#include <tapegrad.h>
#include <tapegrad/kernels.h>

#include <stdbool.h>
#include <stdint.h>

typedef struct bench_args {
    int threads;        /* --threads N (default 1) */
    bool quick;         /* --quick: fewer and shorter rounds (a smoke run) */
    bool inference;     /* --inference: forward only, recording off (programs that offer it) */
    int warmup;         /* --warmup N: untimed steps first (>= 2; the first counts mallocs) */
    int rounds;         /* --rounds N: timed rounds */
    double round_s;     /* --round-s S: target duration of one round */
    uint64_t seed;      /* --seed N: weights (tg_manual_seed) and data */
    const char *config; /* --config NAME (programs with several configs) */
    const char *impl;   /* "tapegrad" (set another name after bench_parse: "onednn") */
    int argc;           /* the arguments, for bench_flag_int / bench_flag_str */
    char **argv;
} bench_args;

/* Parses the common flags; `extra` lists the program's own flags ("--hidden", ...), each
 * taking one value, NULL-terminated (may be NULL). Unknown flags print usage and exit 2.
 * Sets the thread count (tg_set_num_threads) and seeds tg_manual_seed(seed). */
void bench_parse(int argc, char **argv, bench_args *a, const char *usage, const char *const *extra);
int64_t bench_flag_int(const bench_args *a, const char *name, int64_t def);
const char *bench_flag_str(const bench_args *a, const char *name, const char *def);

/* One step; returns the loss (or any scalar that depends on the result, so nothing is
 * optimised away). */
typedef double (*bench_step_fn)(void *ctx);

/* Optional: the tape whose arena size the result line reports (arena_mb, after the run). */
void bench_watch_tape(tg_tape *tape);
/* The end of every training step: backward from `loss` and an optimizer step (unless opt is
 * NULL: inference), then the loss's value, and the tape reset for the next step. */
double bench_step_end(tg_tape *tape, tg_tensor *loss, tg_optim *opt);

/* BENCH_MEM=N: the first N steps print, at their marks (before the first step, forward done,
 * backward done, optimizer step done, and wherever a program calls this), the process's
 * resident and peak memory and the watched tape's arena (in use, peak, held) to stderr. */
void bench_mem_mark(const char *where);

/* Times `step` and prints the result line. `flops` = useful FLOPs of one step. */
void bench_run(const char *config, const bench_args *a, double flops, bench_step_fn step,
               void *ctx);

/* ---- helpers ---- */
double bench_now(void);            /* seconds, CLOCK_MONOTONIC */
double bench_cpu_now(void);        /* seconds of CPU time of the process, all threads */
uint64_t bench_malloc_calls(void); /* malloc-family calls since the process started */
long bench_peak_rss_kb(void);
long bench_minor_faults(void); /* minor page faults of the process so far */

/* The data generator shared with bench/torch_models.py (bit-identical there): a 64-bit LCG
 * state; each draw returns (state >> 33) % n. */
typedef struct bench_lcg {
    uint64_t state;
} bench_lcg;
bench_lcg bench_lcg_new(uint64_t seed);
int32_t bench_lcg_below(bench_lcg *g, int32_t n);
/* A long-lived index tensor of the given shape filled with draws below n. */
tg_index *bench_random_index(bench_lcg *g, int32_t n, int ndim, const int64_t *shape);
/* A long-lived tensor filled with draws mapped to [-1, 1) (k/2^20 - 1 of a draw below 2^21),
 * exactly representable, so both sides hold the same values. */
tg_tensor *bench_random_tensor(bench_lcg *g, int ndim, const int64_t *shape);

/* Forward FLOPs of one GRU/LSTM layer over a sequence: 2·T·B·(in + H)·G·H. */
double bench_rnn_layer_flops(int64_t T, int64_t B, int64_t in, int64_t H, int gates);

/* The sizes of a recurrent layer config (gru_cls_layer, lstm_cls_layer, gru_lm_layer0,
 * gru_lm_layer1; NULL = gru_cls_layer), overridable by --input --hidden --batch --seq.
 * Shared by bench_rnn_layer and onednn_rnn so that both time the same layers.
 * Returns false (after a message naming `program`) for an unknown config. */
typedef struct bench_rnn_shape {
    int64_t I, H, B, T;
    bool lstm;
} bench_rnn_shape;
bool bench_rnn_layer_shape(const bench_args *a, const char *program, bench_rnn_shape *s);
/* 2·m·n·k */
double bench_gemm_flops(int64_t m, int64_t n, int64_t k);

#endif
