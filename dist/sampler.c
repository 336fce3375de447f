/* The sharded sampler (PyTorch's DistributedSampler, by global batches): see tapegrad/dist.h.
 * Pure arithmetic, no communication: every rank computes the same orders by itself. */
#include "tapegrad/dist.h"

#include <stdlib.h>

struct tg_dist_sampler {
    tg_dist_sampler_options o;
    int64_t local_batch, batches_per_epoch;
    int64_t epoch;  /* the epoch whose order `order` holds, -1: none yet */
    int64_t *order; /* num_examples indices */
};

/* splitmix64: a 64-bit generator made of integer arithmetic only, so the orders are the same
 * on every machine and in both precisions. */
static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

/* A uniform integer in [0, n), n >= 1, without modulo bias (rejection of the short tail). */
static uint64_t below(uint64_t *state, uint64_t n) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = splitmix64(state);
    while (x >= limit);
    return x % n;
}

/* Epoch e's order: the identity, or a Fisher-Yates shuffle of it drawn from (seed, e). */
static void order_for(tg_dist_sampler *s, int64_t epoch) {
    if (s->epoch == epoch) return;
    const int64_t n = s->o.num_examples;
    for (int64_t i = 0; i < n; i++) s->order[i] = i;
    if (!s->o.no_shuffle) {
        uint64_t state = s->o.seed ^ ((uint64_t)epoch * 0xD1B54A32D192ED03u);
        (void)splitmix64(&state);
        for (int64_t i = n - 1; i > 0; i--) {
            const int64_t j = (int64_t)below(&state, (uint64_t)i + 1);
            const int64_t t = s->order[i];
            s->order[i] = s->order[j];
            s->order[j] = t;
        }
    }
    s->epoch = epoch;
}

tg_dist_sampler *tg_dist_sampler_new(const tg_dist_sampler_options *opts) {
    if (!opts) {
        tg_status_null_argument(__func__, "opts");
        return NULL;
    }
    tg_dist_sampler_options o = *opts;
    if (o.world == 0) o.rank = tg_dist_rank(), o.world = tg_dist_world_size();
    if (o.world < 1 || o.rank < 0 || o.rank >= o.world) {
        tg_status_set(TG_ERR_ARGUMENT, "tg_dist_sampler_new: rank %d of a world of %d", o.rank,
                      o.world);
        return NULL;
    }
    if (o.num_examples <= 0) {
        tg_status_set(TG_ERR_ARGUMENT, "tg_dist_sampler_new: %lld examples: nothing to sample",
                      (long long)o.num_examples);
        return NULL;
    }
    if (o.global_batch <= 0 || o.global_batch % o.world != 0) {
        tg_status_set(TG_ERR_ARGUMENT,
                      "global batch %lld does not divide among %d processes: use a multiple of %d",
                      (long long)o.global_batch, o.world, o.world);
        return NULL;
    }
    if (o.drop_last && o.num_examples < o.global_batch) {
        tg_status_set(TG_ERR_ARGUMENT,
                      "tg_dist_sampler_new: drop_last with %lld examples and a global batch of "
                      "%lld leaves no batch",
                      (long long)o.num_examples, (long long)o.global_batch);
        return NULL;
    }
    tg_dist_sampler *s = tg_xcalloc(1, sizeof *s);
    s->o = o;
    s->local_batch = o.global_batch / o.world;
    s->batches_per_epoch = o.drop_last ? o.num_examples / o.global_batch
                                       : (o.num_examples + o.global_batch - 1) / o.global_batch;
    s->epoch = -1;
    s->order = tg_xmalloc((size_t)o.num_examples * sizeof *s->order);
    return s;
}

void tg_dist_sampler_free(tg_dist_sampler *s) {
    if (!s) return;
    free(s->order);
    free(s);
}

int64_t tg_dist_sampler_local_batch(const tg_dist_sampler *s) {
    TG_CHECK_ARG(s);
    return s->local_batch;
}

int64_t tg_dist_sampler_batches_per_epoch(const tg_dist_sampler *s) {
    TG_CHECK_ARG(s);
    return s->batches_per_epoch;
}

void tg_dist_sampler_position(const tg_dist_sampler *s, int64_t step, int64_t *epoch,
                              int64_t *batch) {
    TG_CHECK_ARG(s);
    if (step < 0) tg_fail("tg_dist_sampler_position: step %lld", (long long)step);
    if (epoch) *epoch = step / s->batches_per_epoch;
    if (batch) *batch = step % s->batches_per_epoch;
}

/* The example at position p of the epoch's padded order: past the end, the padding starts
 * over from the beginning (p % n, also when the batch is larger than the data). */
static int64_t at(const tg_dist_sampler *s, int64_t p) { return s->order[p % s->o.num_examples]; }

void tg_dist_sampler_indices(tg_dist_sampler *s, int64_t step, int64_t *out) {
    TG_CHECK_ARG(out);
    int64_t epoch = 0, batch = 0;
    tg_dist_sampler_position(s, step, &epoch, &batch);
    order_for(s, epoch);
    const int64_t base = batch * s->o.global_batch + s->o.rank;
    for (int64_t j = 0; j < s->local_batch; j++) out[j] = at(s, base + j * s->o.world);
}

void tg_dist_sampler_global_indices(tg_dist_sampler *s, int64_t step, int64_t *out) {
    TG_CHECK_ARG(out);
    int64_t epoch = 0, batch = 0;
    tg_dist_sampler_position(s, step, &epoch, &batch);
    order_for(s, epoch);
    for (int64_t j = 0; j < s->o.global_batch; j++) out[j] = at(s, batch * s->o.global_batch + j);
}
