/* tapegrad/dist.h — data-parallel training across processes over MPI, after PyTorch's
 * DistributedDataParallel (DDP). Layer: dist.
 *
 * A library of its own (libtapegrad-dist, float32; libtapegrad64-dist, float64), built when
 * the build finds Open MPI (meson option -Dmpi=auto|enabled|disabled); nothing below it knows
 * MPI. Link it beside libtapegrad:  cc train.c $(pkg-config --cflags --libs tapegrad-dist)
 * and launch with  mpirun -np N ./train ...  (one process per rank; N = 1 without mpirun).
 *
 * The scheme is PyTorch's. Every rank holds a whole copy of the model; tg_ddp_new makes the
 * copies equal by broadcasting rank 0's parameters. Each step every rank runs forward and
 * backward on its own shard of the global batch (tg_dist_sampler: B/N examples of the B of
 * the step); its gradients are averaged over the ranks, so every rank takes the same
 * optimizer step from the same gradients and the copies stay equal:
 *
 *     tg_dist_init(&argc, &argv);
 *     tg_tape *tape = tg_tape_new();
 *     tg_ddp *ddp = tg_ddp_new(tg_module_params(model), tape, NULL); // broadcast from rank 0
 *     tg_dist_sampler *s = tg_dist_sampler_new(&(tg_dist_sampler_options){
 *         .num_examples = n, .global_batch = B, .seed = 1}); // B % world size == 0
 *     int64_t *idx = malloc(tg_dist_sampler_local_batch(s) * sizeof *idx);
 *     for (int64_t step = 0; step < steps; step++) {
 *         tg_dist_sampler_indices(s, step, idx);   // this rank's B/N examples of the step
 *         tg_tensor *loss = ...mean over the B/N examples...;
 *         tg_params_zero_grad(params);
 *         tg_tape_backward(tape, loss);            // buckets start their all-reduce here
 *         tg_ddp_wait(ddp);                        // gradients now averaged over the ranks
 *         tg_optim_step(opt);
 *         tg_tape_reset(tape);
 *     }
 *     tg_ddp_free(ddp);
 *     tg_dist_finalize();
 *
 * Same numbers as one process. With the loss a mean over the rank's B/N examples, the
 * average over the N ranks of these gradients is the gradient of the mean over the B
 * examples of the step: (1/N) sum_r (N/B) sum_{i in shard r} g_i = (1/B) sum_i g_i. So N
 * ranks with B/N each follow, step by step, one process with batch B, up to the rounding of
 * the sums (they add the same terms in another order): tests/test_dist.sh checks 20 Adam
 * steps against one process to 1e-6 relative in float32 and 1e-12 in float64 (the losses, and
 * each parameter tensor's largest difference relative to its largest value; element by
 * element, a weight that crosses zero can differ by more, relative to its tiny self).
 *
 * Buckets and overlap. The parameters are grouped into buckets of about bucket_bytes (25 MiB
 * by default, as PyTorch's bucket_cap_mb), filled in reverse order of the list (the order
 * backward reaches them, roughly: the last layer's gradients are final first) and, from the
 * end of the first step whose backward reported gradients, in the order rank 0's backward
 * made them final (as PyTorch rebuilds its buckets after the first step): in list order one
 * parameter final only at the very end of backward (an embedding) would hold back its bucket
 * and, since buckets start in order, every later one. tg_ddp_new
 * registers a hook on the tape (tg_tape_set_grad_hook): as soon as backward has finished
 * with every parameter of a bucket, the bucket's gradients are copied into its buffer and its
 * non-blocking all-reduce starts, while backward goes on with the earlier layers. Buckets
 * start in bucket order on every rank (a bucket that is ready waits for the ones before
 * it), so all ranks issue the same collectives in the same order, whatever their graphs;
 * a parameter that this step's graph does not reach counts as zero gradient, and its bucket
 * starts at tg_ddp_wait. tg_ddp_wait completes every bucket, divides by the world size and
 * writes the averages back into the parameters' gradients.
 * A non-blocking MPI collective moves only inside MPI calls (Open MPI has no progress thread
 * for it), so the wrapper also sets the tape's node hook (tg_tape_set_node_hook): after a
 * node of backward, while reductions are in flight and progress_us has passed since the last
 * poll, it tests them, and starts a bucket's second phase (below) as soon as its first is
 * done. That keeps each reduction moving while backward computes the layers below it.
 *
 * Deterministic sums. MPI_Iallreduce leaves the order of the additions to the MPI library,
 * and Open MPI picks its algorithm by message size and process count. The default reduction,
 * TG_DIST_REDUCE_ORDERED, fixes it: a bucket of n values is cut into N chunks, chunk r
 * belongs to rank r; a non-blocking all-to-all (MPI_Ialltoallv) gives rank r every rank's
 * copy of chunk r, which it adds in rank order, ((x_0 + x_1) + x_2) + ..., and a
 * non-blocking all-gather (MPI_Iallgatherv) hands every rank every summed chunk. Each value
 * is thus summed by one rank in one fixed order: the result has the same bits on every rank
 * and in every run with the same N, and moves as many bytes as a ring all-reduce (2(N-1)/N
 * of the bucket per rank). TG_DIST_REDUCE_MPI uses MPI_Iallreduce(MPI_SUM) instead, for
 * comparison.
 *
 * Gradient accumulation (PyTorch's no_sync): between tg_ddp_set_no_sync(ddp, true) and
 * tg_ddp_set_no_sync(ddp, false), backward accumulates into the gradients locally without
 * any communication; the first backward after it all-reduces the sum of everything
 * accumulated, and tg_ddp_wait averages it.
 *
 * Failures. MPI errors stop the job (MPI_ERRORS_ARE_FATAL). When a process dies (a crash,
 * kill -9), Open MPI's mpirun ends the others and says which rank it lost ("mpirun noticed
 * that process rank 1 with PID ... exited on signal 9"), with a non-zero exit. Checkpoints
 * are written by rank 0 alone, through a temporary file and a rename (tg_params_save), so a
 * rank dying mid-save leaves the previous checkpoint whole. A launch that cannot work (a
 * global batch the world size does not divide, a checkpoint of another model) is reported
 * by every rank, which all exit non-zero: tg_dist_all agrees on it, tg_dist_exit ends. */
#ifndef TAPEGRAD_DIST_H
#define TAPEGRAD_DIST_H

#include "tapegrad/module.h"
#include "tapegrad/params.h"
#include "tapegrad/tape.h"

/* ---- the processes ---- */

/* Starts MPI (MPI_Init_thread, MPI_THREAD_FUNNELED: only the main thread calls MPI; the
 * library's OpenMP threads never do). argc/argv may be NULL. Run outside mpirun, the process
 * is rank 0 of a world of 1. Calling it again is a no-op. Returns TG_ERR_IO (with a message)
 * if MPI cannot start. */
tg_status tg_dist_init(int *argc, char ***argv);
/* Ends MPI (a barrier first, so no rank leaves while others still talk to it). No-op if
 * tg_dist_init was not called or already finalized. */
void tg_dist_finalize(void);
bool tg_dist_is_initialized(void);
/* This process's rank in [0, world size) and the number of processes. Before tg_dist_init
 * (and after tg_dist_finalize) they are 0 and 1: a single process. */
int tg_dist_rank(void);
int tg_dist_world_size(void);

/* Collective calls: every rank must make the same calls in the same order. */
void tg_dist_barrier(void);
/* Adds each of values[0..n) over the ranks, in rank order (the same bits on every rank and
 * in every run): losses, token counts, correct predictions. */
void tg_dist_sum(double *values, int n);
/* True on every rank if `ok` is true on every rank: agree on whether to go on. */
bool tg_dist_all(bool ok);
/* Copies `params` of rank `root` into every other rank's (values only, not gradients). */
void tg_dist_broadcast_params(const tg_params *params, int root);
/* printf-style message on stderr, prefixed with "[rank r/N] " when N > 1, then
 * tg_dist_finalize and exit(status): for an error every rank has found (after tg_dist_all),
 * so the job ends on every rank with the same status. Not collective beyond the finalize. */
_Noreturn void tg_dist_exit(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The per-rank share of a global batch: *local = global_batch / world size. TG_ERR_ARGUMENT
 * ("global batch 10 does not divide among 3 processes") when it does not divide evenly or
 * is not positive; the same on every rank, so every rank can stop. */
tg_status tg_dist_local_batch(int64_t global_batch, int64_t *local);
/* Rank `rank`'s contiguous share [*begin, *end) of n items: n/world each, the first n % world
 * ranks one more (a corpus file cut into per-rank parts, say). */
void tg_dist_shard_range(int64_t n, int rank, int world, int64_t *begin, int64_t *end);

/* ---- the data-parallel wrapper (DistributedDataParallel) ---- */

typedef enum tg_dist_reduce {
    TG_DIST_REDUCE_ORDERED = 0, /* all-to-all, rank-order sums, all-gather: deterministic */
    TG_DIST_REDUCE_MPI,         /* MPI_Iallreduce(MPI_SUM): the MPI library's order */
} tg_dist_reduce;

#define TG_DDP_BUCKET_BYTES_DEFAULT ((size_t)25 << 20) /* 25 MiB, PyTorch's bucket_cap_mb */
#define TG_DDP_PROGRESS_US_DEFAULT  20 /* µs between polls of the reductions during backward */

typedef struct tg_ddp_options {
    size_t bucket_bytes;   /* 0: TG_DDP_BUCKET_BYTES_DEFAULT; one parameter larger than this
                              gets a bucket of its own */
    tg_dist_reduce reduce; /* how buckets are summed (TG_DIST_REDUCE_ORDERED by default) */
    bool no_broadcast;     /* skip the broadcast from rank 0 at creation (the parameters are
                              known to be equal already: loaded from one checkpoint) */
    int progress_us;       /* while reductions are in flight, poll them after a node of
                              backward at most this often (µs); 0: TG_DDP_PROGRESS_US_DEFAULT;
                              negative: never (they then move only when another bucket's
                              gradients become final: for comparison) */
} tg_ddp_options;

typedef struct tg_ddp tg_ddp;

/* Wraps `params` (the model's list: it must outlive the wrapper) for data-parallel training
 * with backward on `tape`: broadcasts rank 0's values (unless opts->no_broadcast), builds the
 * buckets over the parameters that require grad, and sets the tape's gradient hook (one
 * wrapper per tape: it replaces any hook set before). Collective. opts NULL: the defaults. */
tg_ddp *tg_ddp_new(tg_params *params, tg_tape *tape, const tg_ddp_options *opts);
/* The same over tg_module_params(module). */
tg_ddp *tg_ddp_new_module(tg_module *module, tg_tape *tape, const tg_ddp_options *opts);
/* Completes what is in flight (as tg_ddp_wait would), removes the tape's hook, frees the
 * wrapper (not the parameters or the tape): free it before the tape. NULL is fine.
 * Collective when a step is pending. */
void tg_ddp_free(tg_ddp *ddp);

/* Gradient accumulation without communication while on (PyTorch's `with ddp.no_sync():`):
 * backward adds into the gradients locally. The next backward with it off all-reduces the
 * sum accumulated since the last tg_ddp_wait. */
void tg_ddp_set_no_sync(tg_ddp *ddp, bool on);
bool tg_ddp_no_sync(const tg_ddp *ddp);

/* Call after backward and before the optimizer step, on every rank: starts the buckets
 * backward did not (parameters the graph did not reach, or no backward at all: their
 * gradients, or zeros, are summed), completes every bucket, and replaces each parameter's
 * gradient by its average over the ranks (allocating it if the parameter had none).
 * Collective. Calling it with no_sync on is a misuse (tg_fail): there is nothing to average
 * yet. A second synchronised backward before tg_ddp_wait is a misuse too. */
void tg_ddp_wait(tg_ddp *ddp);

/* What the wrapper did, for tests and benchmarks. */
typedef struct tg_ddp_stats {
    size_t buckets;               /* number of buckets */
    int64_t params;               /* parameter values covered (sum of numel) */
    uint64_t syncs;               /* tg_ddp_wait calls */
    uint64_t started_in_backward; /* bucket all-reduces started by the hook, during backward */
    uint64_t started_at_wait;     /* bucket all-reduces started by tg_ddp_wait */
    uint64_t reduced_before_wait; /* bucket all-reduces complete when tg_ddp_wait was called:
                                     wholly hidden behind backward */
    uint64_t polls;               /* polls of the reductions from the tape's node hook */
    double wait_seconds;          /* time spent inside tg_ddp_wait */
} tg_ddp_stats;
tg_ddp_stats tg_ddp_get_stats(const tg_ddp *ddp);
/* The list entries of bucket `b` (< stats.buckets), *count of them, in the order they fill
 * its buffer: at first the list's in reverse, from the end of the first step whose backward
 * reported gradients on in the order that backward made them final (see above). Valid until
 * the next tg_ddp_wait. */
const size_t *tg_ddp_bucket_entries(const tg_ddp *ddp, size_t b, size_t *count);

/* ---- sharded sampling (DistributedSampler) ----
 *
 * The examples 0 .. num_examples-1 are visited epoch after epoch. Epoch e's order is a
 * permutation drawn from (seed, e) alone (the identity without shuffle), the same on every
 * rank and for every world size, cut into global batches of global_batch examples; step s is
 * global batch s of the whole run (epoch s / batches_per_epoch). Within global batch s, rank
 * r takes the examples at positions r, r + N, r + 2N, ... (PyTorch's strided shards), B/N of
 * them: the N shards are disjoint and together are the global batch. The global sequence
 * does not depend on N, so a run resumed with another number of ranks goes on with the same
 * global batches; its state is only (epoch, position in global batches) = the step count.
 *
 * The last, partial global batch of an epoch (num_examples % global_batch examples):
 *  - padding (default, PyTorch's drop_last=False): it is filled up with the first examples
 *    of the epoch's order, so every example is visited at least once per epoch and a few
 *    twice. (PyTorch's DistributedSampler pads its list to a multiple of the world size and
 *    leaves a short last batch to the DataLoader; here every step has B examples, which the
 *    equal shards need, so the padding fills the global batch);
 *  - drop_last (PyTorch's drop_last=True): those examples are left out of the epoch, so
 *    every visited example is visited exactly once, and the shuffle leaves out other ones
 *    in the next epoch. With num_examples < global_batch there is no batch: an error. */
typedef struct tg_dist_sampler_options {
    int64_t num_examples; /* > 0 */
    int64_t global_batch; /* B > 0, a multiple of the world size */
    uint64_t seed;        /* the orders are drawn from (seed, epoch) */
    bool no_shuffle;      /* visit 0, 1, 2, ... in every epoch */
    bool drop_last;       /* see above; false: padding */
    int rank, world;      /* world 0: this process's tg_dist_rank / tg_dist_world_size */
} tg_dist_sampler_options;

typedef struct tg_dist_sampler tg_dist_sampler;

/* NULL with tg_error_message set (TG_ERR_ARGUMENT) when the options do not fit: B not a
 * multiple of the world, no examples, drop_last with fewer examples than B. */
tg_dist_sampler *tg_dist_sampler_new(const tg_dist_sampler_options *opts);
void tg_dist_sampler_free(tg_dist_sampler *s);
int64_t tg_dist_sampler_local_batch(const tg_dist_sampler *s);       /* B / N */
int64_t tg_dist_sampler_batches_per_epoch(const tg_dist_sampler *s); /* ceil or floor(n/B) */
/* The epoch of global step `step` and its position in it (global batches into the epoch). */
void tg_dist_sampler_position(const tg_dist_sampler *s, int64_t step, int64_t *epoch,
                              int64_t *batch);
/* This rank's B/N example indices of global step `step` (>= 0), in `out`. */
void tg_dist_sampler_indices(tg_dist_sampler *s, int64_t step, int64_t *out);
/* All B indices of global step `step`, in order (rank r's are out[r], out[r + N], ...): what
 * one process with batch B trains on. */
void tg_dist_sampler_global_indices(tg_dist_sampler *s, int64_t step, int64_t *out);

/* ---- checkpoints ---- */

/* Rank 0 saves `params` to `path` (tg_params_save_with: a temporary file, fsync, rename); every
 * rank returns rank 0's status, with its message. Collective. */
tg_status tg_dist_params_save(const tg_params *params, const char *path,
                              const tg_save_options *opts);
/* Every rank loads `path` into its `params` (tg_params_load_with), then the ranks compare: if
 * any failed, every rank returns that failure, its message prefixed with the first failing
 * rank ("rank 2: ..."), and on every rank whose load succeeded the previous values are
 * restored; if the ranks read different values (different files under one path), every
 * rank returns TG_ERR_FORMAT. Collective. */
tg_status tg_dist_params_load(tg_params *params, const char *path, const tg_load_options *opts);

#endif
