/* tests/dist_train.c — a small data-parallel training run for tests/test_dist.sh, launched
 * with mpirun -np N (or alone: a world of 1). A two-layer classifier (Linear 8->16, tanh,
 * Linear 16->4, cross-entropy) learns a fixed synthetic task with Adam; every rank takes its
 * B/N examples of each global batch from tg_dist_sampler, tg_ddp averages the gradients.
 *
 *   --steps S --batch B --examples N --seed K     the run (B: the global batch)
 *   --reference      rank 0 also trains one process on the whole batch B, step by step, and
 *                    compares losses and parameters after every step (exit 1 past 1e-6
 *                    relative in float32, 1e-12 in float64; params_rel_diff says relative
 *                    to what); prints "max rel diff over S steps ...: loss .. params .."
 *   --reduce mpi     MPI_Iallreduce instead of the ordered reduction
 *   --bucket-bytes N   bucket size (default: tiny, so the model spans several buckets)
 *   --accumulate K   K micro-batches per step, the first K-1 under no_sync (B/K each)
 *   --checkpoint P --save-every K --stop-after K --resume     checkpoints of model, Adam and
 *                    the step, saved by rank 0; a resume may use another number of ranks
 *   --dump P         rank 0 writes the final parameters to P
 *   --compare P      rank 0 compares the final parameters with the dump P (same tolerance)
 *   --verify P       every rank loads checkpoint P and exits: 0 if it is whole
 *   --hidden H       the hidden size (a checkpoint of another H is another model)
 *   --pid-dir D --sleep-ms M     each rank writes D/rank<r>.pid; M ms of sleep per step
 *
 * Exit statuses: 0 done, 1 a comparison or a checkpoint failed, 2 a bad launch. */
#include <tapegrad.h>
#include <tapegrad/dist.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define IN      8
#define CLASSES 4

#ifdef TG_DOUBLE
#define TOLERANCE 1e-12
#else
#define TOLERANCE 1e-6
#endif

typedef struct options {
    int64_t steps, batch, examples, seed, hidden, bucket_bytes, accumulate;
    int64_t save_every, stop_after, sleep_ms;
    bool reference, resume, reduce_mpi;
    const char *checkpoint, *dump, *compare, *verify, *pid_dir;
} options;

typedef struct model {
    tg_module *root;
    tg_linear_layer *fc1, *fc2;
    tg_params *params;
} model;

static const tg_module_type classifier_type = {"Classifier", NULL, NULL};

static model model_new(int64_t hidden, uint64_t seed) {
    tg_manual_seed(seed);
    model m = {.root = tg_module_new(&classifier_type)};
    m.fc1 = tg_linear_new(IN, hidden, true);
    m.fc2 = tg_linear_new(hidden, CLASSES, true);
    tg_module_add_child(m.root, "fc1", &m.fc1->module);
    tg_module_add_child(m.root, "fc2", &m.fc2->module);
    m.params = tg_module_params(m.root);
    return m;
}

/* Example i: features from a hash of (i, j) in [-1, 1), its class from a fixed rule. */
static double feature(int64_t i, int j) {
    uint64_t z = (uint64_t)i * 0x9E3779B97F4A7C15u + (uint64_t)j * 0xBF58476D1CE4E5B9u + 1;
    z = (z ^ (z >> 31)) * 0x94D049BB133111EBu;
    z ^= z >> 29;
    return (double)(z >> 11) / 4503599627370496.0 - 1.0;
}

static int32_t label(int64_t i) {
    const double a = feature(i, 0) + feature(i, 1), b = feature(i, 2) - feature(i, 3);
    return (int32_t)((a > 0) * 2 + (b > 0));
}

/* The mean cross-entropy over the examples idx[0..n). */
static tg_tensor *batch_loss(model *m, tg_tape *tape, const int64_t *idx, int64_t n) {
    tg_tensor *x = tg_tape_tensor(tape, TG_SHAPE(n, IN));
    tg_index *y = tg_tape_index(tape, TG_SHAPE(n));
    for (int64_t r = 0; r < n; r++) {
        for (int j = 0; j < IN; j++) x->data[r * IN + j] = (tg_real)feature(idx[r], j);
        y->data[r] = label(idx[r]);
    }
    tg_tensor *h = tg_tanh(tape, tg_linear_forward(m->fc1, tape, x));
    return tg_cross_entropy(tape, tg_linear_forward(m->fc2, tape, h), y);
}

/* How far two parameter lists are apart: over the tensors, the largest
 * max_k |a_k - b_k| / max_k |b_k|, the difference relative to the tensor's scale. (Element by
 * element, |a_k - b_k| / |b_k| is no measure of the sums' rounding: a weight that Adam moves
 * through zero has a tiny |b_k| and a difference of a few ulps of its neighbours.) With
 * `elementwise`, that element-by-element figure instead (0 where both are 0), for the record. */
static double params_rel_diff(const tg_params *a, const tg_params *b, bool elementwise) {
    double worst = 0;
    for (size_t i = 0; i < a->count; i++) {
        double diff = 0, scale = 0;
        for (int64_t k = 0; k < a->tensors[i]->numel; k++) {
            const double x = a->tensors[i]->data[k], y = b->tensors[i]->data[k];
            const double s = fmax(fabs(x), fabs(y));
            if (elementwise && s > 0) worst = fmax(worst, fabs(x - y) / s);
            diff = fmax(diff, fabs(x - y));
            scale = fmax(scale, fabs(y));
        }
        if (!elementwise && scale > 0) worst = fmax(worst, diff / scale);
    }
    return worst;
}

static double rel(double a, double b) {
    const double s = fmax(fabs(a), fabs(b));
    return s > 0 ? fabs(a - b) / s : 0;
}

static int64_t flag_int(const char *v) { return strtoll(v, NULL, 10); }

static options parse(int argc, char **argv) {
    options o = {.steps = 20,
                 .batch = 12,
                 .examples = 60,
                 .seed = 1,
                 .hidden = 16,
                 .bucket_bytes = 200,
                 .accumulate = 1,
                 .save_every = 1};
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        bool used = true;
        if (!strcmp(f, "--steps"))
            o.steps = flag_int(v);
        else if (!strcmp(f, "--batch"))
            o.batch = flag_int(v);
        else if (!strcmp(f, "--examples"))
            o.examples = flag_int(v);
        else if (!strcmp(f, "--seed"))
            o.seed = flag_int(v);
        else if (!strcmp(f, "--hidden"))
            o.hidden = flag_int(v);
        else if (!strcmp(f, "--bucket-bytes"))
            o.bucket_bytes = flag_int(v);
        else if (!strcmp(f, "--accumulate"))
            o.accumulate = flag_int(v);
        else if (!strcmp(f, "--save-every"))
            o.save_every = flag_int(v);
        else if (!strcmp(f, "--stop-after"))
            o.stop_after = flag_int(v);
        else if (!strcmp(f, "--sleep-ms"))
            o.sleep_ms = flag_int(v);
        else if (!strcmp(f, "--checkpoint"))
            o.checkpoint = v;
        else if (!strcmp(f, "--dump"))
            o.dump = v;
        else if (!strcmp(f, "--compare"))
            o.compare = v;
        else if (!strcmp(f, "--verify"))
            o.verify = v;
        else if (!strcmp(f, "--pid-dir"))
            o.pid_dir = v;
        else if (!strcmp(f, "--reduce"))
            o.reduce_mpi = !strcmp(v, "mpi");
        else
            used = false;
        if (used) {
            i++;
            continue;
        }
        if (!strcmp(f, "--reference"))
            o.reference = true;
        else if (!strcmp(f, "--resume"))
            o.resume = true;
        else
            tg_dist_exit(2, "dist_train: unknown flag %s", f);
    }
    return o;
}

/* The checkpoint's list: "model.*", "optim.*" and the step count "train.step". */
static tg_params *state_new(model *m, tg_optim *opt, tg_tensor *step) {
    tg_params *s = tg_params_new();
    tg_params_extend(s, "model", m->params);
    tg_params_extend(s, "optim", tg_optim_state(opt));
    tg_params_add_count(s, "train.step", step);
    return s;
}

int main(int argc, char **argv) {
    if (tg_dist_init(&argc, &argv) != TG_OK) {
        fprintf(stderr, "dist_train: %s\n", tg_error_message());
        return 1;
    }
    const options o = parse(argc, argv);
    const int rank = tg_dist_rank(), world = tg_dist_world_size();
    if (o.pid_dir) {
        char path[512];
        snprintf(path, sizeof path, "%s/rank%d.pid", o.pid_dir, rank);
        FILE *f = fopen(path, "w");
        if (f) fprintf(f, "%ld\n", (long)getpid()), fclose(f);
    }
    int64_t local = 0;
    if (tg_dist_local_batch(o.batch, &local) != TG_OK || local % o.accumulate != 0)
        tg_dist_exit(2, "dist_train: %s",
                     local % o.accumulate ? "the accumulation steps do "
                                            "not divide the local batch"
                                          : tg_error_message());

    model m = model_new(o.hidden, (uint64_t)o.seed);
    tg_tape *tape = tg_tape_new();
    tg_optim *opt = tg_adam_new(
        m.params, &(tg_adam_options){.lr = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8});
    tg_tensor *step_count = tg_tensor_new(TG_SHAPE(1));
    tg_params *state = state_new(&m, opt, step_count);

    if (o.verify) {
        const tg_status st = tg_dist_params_load(state, o.verify, NULL);
        if (st != TG_OK)
            tg_dist_exit(1, "dist_train: checkpoint '%s': %s", o.verify, tg_error_message());
        if (rank == 0)
            printf("checkpoint '%s' is whole: step %.0f\n", o.verify, (double)step_count->data[0]);
        tg_params_free(state);
        tg_optim_free(opt);
        tg_tensor_free(step_count);
        tg_tape_free(tape);
        tg_module_free(m.root);
        tg_dist_finalize();
        return 0;
    }
    int64_t start = 0;
    if (o.resume) {
        if (tg_dist_params_load(state, o.checkpoint, NULL) != TG_OK)
            tg_dist_exit(1, "dist_train: cannot resume from '%s': %s", o.checkpoint,
                         tg_error_message());
        start = (int64_t)step_count->data[0];
    }
    tg_ddp *ddp = tg_ddp_new(
        m.params, tape,
        &(tg_ddp_options){.bucket_bytes = (size_t)o.bucket_bytes,
                          .reduce = o.reduce_mpi ? TG_DIST_REDUCE_MPI : TG_DIST_REDUCE_ORDERED,
                          .no_broadcast = o.resume});
    tg_dist_sampler *sampler = tg_dist_sampler_new(&(tg_dist_sampler_options){
        .num_examples = o.examples, .global_batch = o.batch, .seed = (uint64_t)o.seed});
    if (!tg_dist_all(sampler != NULL)) tg_dist_exit(2, "dist_train: %s", tg_error_message());

    /* the single-process reference, on rank 0 only, from the same start */
    model ref = {0};
    tg_optim *ref_opt = NULL;
    tg_tape *ref_tape = NULL;
    int64_t *global = tg_xmalloc((size_t)o.batch * sizeof *global);
    int64_t *mine = tg_xmalloc((size_t)local * sizeof *mine);
    if (o.reference && rank == 0) {
        ref = model_new(o.hidden, (uint64_t)o.seed);
        ref_opt = tg_adam_new(
            ref.params, &(tg_adam_options){.lr = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8});
        ref_tape = tg_tape_new();
    }
    double worst_loss = 0, worst_params = 0, worst_elem = 0;
    const int64_t micro = local / o.accumulate;
    for (int64_t step = start; step < o.steps; step++) {
        tg_dist_sampler_indices(sampler, step, mine);
        double loss = 0;
        for (int64_t k = 0; k < o.accumulate; k++) {
            tg_ddp_set_no_sync(ddp, k + 1 < o.accumulate);
            tg_tensor *l = batch_loss(&m, tape, mine + k * micro, micro);
            /* a mean over the micro-batch, accumulated: the mean over the local batch */
            tg_tensor *scaled = tg_mul_scalar(tape, l, (tg_real)1 / (tg_real)o.accumulate);
            loss += tg_item(scaled);
            tg_tape_backward(tape, scaled);
            tg_tape_reset(tape);
        }
        tg_ddp_wait(ddp);
        tg_optim_step(opt);
        tg_dist_sum(&loss, 1);
        loss /= world;
        if (ref_tape) {
            tg_dist_sampler_global_indices(sampler, step, global);
            tg_tensor *ref_loss = batch_loss(&ref, ref_tape, global, o.batch);
            tg_tape_backward(ref_tape, ref_loss);
            worst_loss = fmax(worst_loss, rel(loss, tg_item(ref_loss)));
            tg_optim_step(ref_opt);
            tg_tape_reset(ref_tape);
            worst_params = fmax(worst_params, params_rel_diff(m.params, ref.params, false));
            worst_elem = fmax(worst_elem, params_rel_diff(m.params, ref.params, true));
        }
        if (rank == 0 && (step + 1) % 5 == 0)
            printf("step %lld loss %.6f\n", (long long)step + 1, loss);
        step_count->data[0] = (tg_real)(step + 1);
        if (o.sleep_ms)
            nanosleep(&(struct timespec){o.sleep_ms / 1000, (o.sleep_ms % 1000) * 1000000L}, NULL);
        const bool stop = o.stop_after && step + 1 == o.stop_after;
        if (o.checkpoint && ((step + 1) % o.save_every == 0 || step + 1 == o.steps || stop)) {
            if (tg_dist_params_save(state, o.checkpoint, NULL) != TG_OK)
                tg_dist_exit(1, "dist_train: saving '%s': %s", o.checkpoint, tg_error_message());
        }
        if (stop) break;
    }
    int status = 0;
    if (ref_tape) {
        printf("max rel diff over %lld steps, %d ranks, " TG_REAL_NAME
               ": loss %.3g params %.3g (element by element: %.3g)\n",
               (long long)o.steps, world, worst_loss, worst_params, worst_elem);
        if (!(worst_loss <= TOLERANCE && worst_params <= TOLERANCE)) status = 1;
    }
    if (rank == 0 && o.dump && tg_params_save(m.params, o.dump) != TG_OK) status = 1;
    if (rank == 0 && o.compare) {
        model other = model_new(o.hidden, (uint64_t)o.seed + 1);
        if (tg_params_load(other.params, o.compare, false) != TG_OK) {
            fprintf(stderr, "dist_train: %s\n", tg_error_message());
            status = 1;
        } else {
            const double d = params_rel_diff(m.params, other.params, false);
            printf("max rel diff to '%s': %.3g\n", o.compare, d);
            if (!(d <= TOLERANCE)) status = 1;
        }
        tg_module_free(other.root);
    }
    tg_ddp_stats stats = tg_ddp_get_stats(ddp);
    if (rank == 0)
        printf("buckets %zu, started in backward %llu, at wait %llu\n", stats.buckets,
               (unsigned long long)stats.started_in_backward,
               (unsigned long long)stats.started_at_wait);
    const bool ok = tg_dist_all(status == 0);
    free(global), free(mine);
    tg_dist_sampler_free(sampler);
    tg_ddp_free(ddp);
    tg_params_free(state);
    tg_optim_free(opt), tg_optim_free(ref_opt);
    tg_tensor_free(step_count);
    tg_tape_free(tape), tg_tape_free(ref_tape);
    tg_module_free(m.root);
    if (ref.root) tg_module_free(ref.root);
    tg_dist_finalize();
    return ok ? 0 : 1;
}
