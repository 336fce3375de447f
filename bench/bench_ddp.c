/* bench/bench_ddp.c — data-parallel training steps of gru_cls, char_lm and transformer over
 * MPI with tapegrad's dist layer (tapegrad/dist.h); bench/torch_ddp.py is the PyTorch DDP
 * twin, bench/run_dist_bench.py runs both.
 *
 *   mpirun -np 2 --bind-to core build/release/bench/bench_ddp --config gru_cls [--quick]
 *       [--bucket-kb K] [--reduce ordered|mpi] [--progress-us U] [--warmup N] [--rounds N]
 *       [--round-s S]
 *   build/release/bench/bench_ddp --config gru_cls        (one process: the baseline)
 *
 * The models, sizes, data and initialisation of bench_classifier / bench_lm /
 * bench_transformer. The global batch B is the config's batch (64, 32, 32); rank r trains
 * on its contiguous B/N share of every batch of the same global data (rows of the (B, T)
 * tokens; columns of the sequence-first (T, B) ones), with Adam, one thread per rank. One
 * process (no mpirun) trains on all B without the wrapper: the baseline of the scaling
 * efficiency.
 *
 * Every rank runs the same number of steps per round (rank 0's choice from its warm-up);
 * each round starts with a barrier; rank 0 reports:
 *   ms, ms_median   wall-clock ms per synchronised step (forward, backward with the
 *                   buckets' reductions started by the gradient hook, tg_ddp_wait, Adam),
 *                   best and median round;
 *   ms_nosync       the same step with tg_ddp_set_no_sync on (no communication);
 *   wait_ms         time per step spent in tg_ddp_wait, i.e. waiting for what backward did
 *                   not hide, in the synchronised rounds;
 *   allreduce_ms    tg_ddp_wait right after an earlier wait, with no backward in between:
 *                   every bucket starts and completes inside it, nothing is hidden: the
 *                   whole reduction's time (median of several);
 *   hidden          1 - wait_ms / allreduce_ms (in [0, 1]): the share of the reduction's
 *                   time that backward hid;
 *   reduced_before_wait, polls   per step: buckets whose reduction was complete when
 *                   tg_ddp_wait was called, and polls of the reductions from the node hook
 *                   (--progress-us: tg_ddp_options.progress_us, -1 for none);
 *   samples_per_s   B / ms; loss0: the first step's loss over the global batch (the mean of
 *                   the ranks' losses), equal to the one-process loss0 up to rounding. */
#include "bench_common.h"

#include <tapegrad/dist.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NBATCH 4

typedef enum model_kind { GRU_CLS, CHAR_LM, TRANSFORMER } model_kind;

typedef struct ctx {
    model_kind kind;
    tg_module *module;
    tg_gru_classifier *cls;
    tg_gru_lm *lm;
    tg_transformer_model *tf;
    tg_optim *opt;
    tg_tape *tape;
    tg_ddp *ddp; /* NULL in one process */
    tg_index *x[NBATCH], *x2[NBATCH], *y[NBATCH];
    tg_tensor *hidden; /* char_lm: (layers, B/N, H), carried across steps */
    int64_t step, V;
} ctx;

/* The block [r0, r1) x [c0, c1) of `full` seen as a (rows, cols) matrix, as a new index of
 * the given shape: a rank's share of the batch dimension. Frees `full`. */
static tg_index *block(tg_index *full, int64_t cols, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                       int ndim, const int64_t *shape) {
    tg_index *out = tg_index_new(ndim, shape);
    int32_t *at = out->data;
    for (int64_t r = r0; r < r1; r++)
        for (int64_t c = c0; c < c1; c++) *at++ = full->data[r * cols + c];
    tg_index_free(full);
    return out;
}

static double step(ctx *c) {
    const int b = (int)(c->step++ % NBATCH);
    tg_tensor *loss;
    if (c->kind == GRU_CLS) {
        loss =
            tg_cross_entropy(c->tape, tg_gru_classifier_forward(c->cls, c->tape, c->x[b]), c->y[b]);
    } else if (c->kind == CHAR_LM) {
        tg_gru_lm_output out = tg_gru_lm_forward(c->lm, c->tape, c->x[b], c->hidden);
        loss =
            tg_cross_entropy(c->tape, tg_reshape(c->tape, out.logits, TG_SHAPE(-1, c->V)), c->y[b]);
        tg_gru_lm_detach(c->hidden, out.hidden);
    } else {
        tg_tensor *out = tg_transformer_model_forward(c->tf, c->tape, c->x[b], c->x2[b]);
        loss = tg_cross_entropy(c->tape, tg_reshape(c->tape, out, TG_SHAPE(-1, c->V)), c->y[b]);
    }
    tg_tape_backward(c->tape, loss); /* the hook starts the buckets' reductions meanwhile */
    if (c->ddp && !tg_ddp_no_sync(c->ddp)) tg_ddp_wait(c->ddp);
    tg_optim_step(c->opt);
    const double value = tg_item(loss);
    tg_tape_reset(c->tape);
    return value;
}

/* Rank 0's value on every rank (a sum in which the others add zero). */
static double from_rank0(double v) {
    double x = tg_dist_rank() == 0 ? v : 0.0;
    tg_dist_sum(&x, 1);
    return x;
}

static int cmp_double(const void *x, const void *y) {
    const double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* Warm-up, then `rounds` rounds of the same number of steps on every rank; ms[] gets the
 * ms per step of each round, sorted; returns the steps per round. */
static int64_t timed_rounds(ctx *c, const bench_args *a, double *ms, double *loss) {
    double last = 0;
    for (int i = 1; i < a->warmup; i++) {
        const double t0 = bench_now();
        step(c);
        last = bench_now() - t0;
    }
    int64_t per_round = (int64_t)from_rank0(ceil(a->round_s / (last > 1e-9 ? last : 1e-9)));
    if (per_round < 1) per_round = 1;
    for (int r = 0; r < a->rounds; r++) {
        tg_dist_barrier(); /* no_sync steps do not synchronise the ranks by themselves */
        const double t0 = bench_now();
        for (int64_t s = 0; s < per_round; s++) *loss = step(c);
        ms[r] = 1e3 * (bench_now() - t0) / (double)per_round;
    }
    qsort(ms, (size_t)a->rounds, sizeof *ms, cmp_double);
    return per_round;
}

/* The whole reduction with nothing to hide it: tg_ddp_wait with no backward before it. The
 * gradients are zero (the optimizer step zeroed them), their average too. */
static double allreduce_ms(ctx *c, int reps) {
    double *t = malloc((size_t)reps * sizeof *t);
    if (!t) abort();
    for (int r = 0; r < reps; r++) {
        tg_dist_barrier();
        const double t0 = bench_now();
        tg_ddp_wait(c->ddp);
        t[r] = 1e3 * (bench_now() - t0);
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    const double median = t[reps / 2];
    free(t);
    return median;
}

static void setup(ctx *c, const bench_args *a, int64_t *global_batch) {
    const char *config = a->config ? a->config : "gru_cls";
    c->kind = strcmp(config, "char_lm") == 0       ? CHAR_LM
              : strcmp(config, "transformer") == 0 ? TRANSFORMER
                                                   : GRU_CLS;
    if (c->kind == GRU_CLS && strcmp(config, "gru_cls") != 0)
        tg_dist_exit(2, "bench_ddp: unknown config '%s' (gru_cls, char_lm, transformer)", config);
    const int64_t B = c->kind == GRU_CLS ? 64 : 32;
    int64_t n;
    if (tg_dist_local_batch(B, &n) != TG_OK) tg_dist_exit(2, "%s", tg_error_message());
    const int64_t r0 = tg_dist_rank() * n, r1 = r0 + n;
    *global_batch = B;
    bench_lcg g = bench_lcg_new(a->seed);
    if (c->kind == GRU_CLS) { /* Embedding(5000, 128) -> GRU(256) -> Linear(10); T 50 */
        const int64_t V = 5000, T = 50;
        c->cls = tg_gru_classifier_new(V, 128, 256, 10);
        c->module = &c->cls->module;
        for (int b = 0; b < NBATCH; b++) {
            c->x[b] = block(bench_random_index(&g, (int32_t)V, TG_SHAPE(B, T)), T, r0, r1, 0, T,
                            TG_SHAPE(n, T));
            c->y[b] = block(bench_random_index(&g, 10, TG_SHAPE(B)), 1, r0, r1, 0, 1, TG_SHAPE(n));
        }
    } else if (c->kind == CHAR_LM) { /* Embedding(65, 64) -> 2-layer GRU(256) -> Linear(65) */
        const int64_t V = 65, T = 64;
        c->V = V;
        c->lm = tg_gru_lm_new(V, 64, 256, 2);
        c->module = &c->lm->module;
        c->hidden = tg_gru_lm_init_hidden(c->lm, n);
        for (int b = 0; b < NBATCH; b++) {
            c->x[b] = block(bench_random_index(&g, (int32_t)V, TG_SHAPE(T, B)), B, 0, T, r0, r1,
                            TG_SHAPE(T, n));
            c->y[b] = block(bench_random_index(&g, (int32_t)V, TG_SHAPE(T * B)), B, 0, T, r0, r1,
                            TG_SHAPE(T * n));
        }
    } else { /* the Transformer tutorial's model: d 128, 4 heads, ff 512, 2 + 2 layers */
        const int64_t V = 1000, S = 32, T = 32;
        c->V = V;
        tg_transformer_options o = tg_transformer_defaults(128, 4);
        o.dim_feedforward = 512;
        o.dropout = (tg_real)0.1;
        c->tf = tg_transformer_model_new_ex(V, &o, 2, 2);
        c->module = &c->tf->module;
        for (int b = 0; b < NBATCH; b++) {
            c->x[b] = block(bench_random_index(&g, (int32_t)V, TG_SHAPE(S, B)), B, 0, S, r0, r1,
                            TG_SHAPE(S, n));
            c->x2[b] = block(bench_random_index(&g, (int32_t)V, TG_SHAPE(T, B)), B, 0, T, r0, r1,
                             TG_SHAPE(T, n));
            c->y[b] = block(bench_random_index(&g, (int32_t)V, TG_SHAPE(T * B)), B, 0, T, r0, r1,
                            TG_SHAPE(T * n));
        }
    }
    c->opt = tg_adam_new(tg_module_params(c->module), NULL);
    c->tape = tg_tape_new();
}

int main(int argc, char **argv) {
    if (tg_dist_init(&argc, &argv) != TG_OK) {
        fprintf(stderr, "bench_ddp: %s\n", tg_error_message());
        return 1;
    }
    static const char *const extra[] = {"--bucket-kb", "--reduce", "--progress-us", NULL};
    bench_args a;
    bench_parse(argc, argv, &a,
                "  --config gru_cls|char_lm|transformer\n"
                "  --bucket-kb K  bucket size (default 25 MiB)\n"
                "  --reduce ordered|mpi\n"
                "  --progress-us U  poll the reductions during backward every U us (-1: never)\n",
                extra);
    const int world = tg_dist_world_size(), rank = tg_dist_rank();
    ctx c = {0};
    int64_t B;
    setup(&c, &a, &B);
    const char *reduce = bench_flag_str(&a, "--reduce", "ordered");
    tg_ddp_options o = {.bucket_bytes = (size_t)bench_flag_int(&a, "--bucket-kb", 0) << 10,
                        .reduce = strcmp(reduce, "mpi") == 0 ? TG_DIST_REDUCE_MPI
                                                             : TG_DIST_REDUCE_ORDERED,
                        .progress_us = atoi(bench_flag_str(&a, "--progress-us", "0"))};
    if (world > 1) c.ddp = tg_ddp_new_module(c.module, c.tape, &o);

    double loss0 = step(&c) / world, loss = 0;
    tg_dist_sum(&loss0, 1);
    double *ms = calloc(2 * (size_t)a.rounds, sizeof *ms);
    if (!ms) abort();
    double *ms_nosync = ms + a.rounds;
    tg_ddp_stats s0 = {0}, s1 = {0};
    if (c.ddp) s0 = tg_ddp_get_stats(c.ddp);
    const int64_t per_round = timed_rounds(&c, &a, ms, &loss);
    char extra_out[512] = "";
    if (c.ddp) {
        s1 = tg_ddp_get_stats(c.ddp);
        const double syncs = (double)(s1.syncs - s0.syncs);
        const double wait = 1e3 * (s1.wait_seconds - s0.wait_seconds) / syncs;
        const double in_bw = (double)(s1.started_in_backward - s0.started_in_backward) / syncs;
        const double early = (double)(s1.reduced_before_wait - s0.reduced_before_wait) / syncs;
        const double polls = (double)(s1.polls - s0.polls) / syncs;
        tg_ddp_set_no_sync(c.ddp, true);
        timed_rounds(&c, &a, ms_nosync, &loss);
        tg_ddp_set_no_sync(c.ddp, false);
        const double whole = allreduce_ms(&c, a.quick ? 5 : 15);
        double hidden = whole > 0 ? 1.0 - wait / whole : 0.0;
        hidden = hidden < 0 ? 0 : hidden > 1 ? 1 : hidden;
        snprintf(extra_out, sizeof extra_out,
                 " ms_nosync=%.4f allreduce_ms=%.4f wait_ms=%.4f exposed_ms=%.4f hidden=%.3f "
                 "buckets=%zu started_in_backward=%.2f reduced_before_wait=%.2f polls=%.1f "
                 "bucket_mb=%g reduce=%s",
                 ms_nosync[0], whole, wait, ms[0] - ms_nosync[0], hidden, s1.buckets, in_bw, early,
                 polls,
                 (double)(o.bucket_bytes ? o.bucket_bytes : TG_DDP_BUCKET_BYTES_DEFAULT) /
                     1048576.0,
                 reduce);
    }
    if (rank == 0) {
        printf("# tapegrad %s, %d process(es) x %d thread, %lld steps per round\n", TG_REAL_NAME,
               world, tg_get_num_threads(), (long long)per_round);
        printf("result config=%s impl=%s world=%d threads=%d ms=%.4f ms_median=%.4f "
               "global_batch=%lld samples_per_s=%.2f params=%lld%s peak_rss_kb=%ld loss0=%.6f "
               "loss=%.6f\n",
               a.config ? a.config : "gru_cls", world > 1 ? "tapegrad_ddp" : "tapegrad", world,
               a.threads, ms[0], ms[a.rounds / 2], (long long)B, (double)B / (ms[0] * 1e-3),
               (long long)tg_params_numel(tg_module_params(c.module)), extra_out,
               bench_peak_rss_kb(), loss0, loss);
        fflush(stdout);
    }
    free(ms);
    tg_ddp_free(c.ddp);
    for (int b = 0; b < NBATCH; b++) {
        tg_index_free(c.x[b]);
        tg_index_free(c.x2[b]);
        tg_index_free(c.y[b]);
    }
    tg_tensor_free(c.hidden);
    tg_tape_free(c.tape);
    tg_optim_free(c.opt);
    tg_module_free(c.module);
    tg_dist_finalize();
    return 0;
}
