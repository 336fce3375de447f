/* The data-parallel wrapper: buckets of gradients, all-reduced while backward runs, averaged
 * at tg_ddp_wait. The scheme and the deterministic reduction are described in tapegrad/dist.h. */
#include "dist_internal.h"

#include <stdlib.h>
#include <string.h>

typedef enum bucket_state {
    BUCKET_WAITING, /* some of its parameters' gradients are not final yet */
    BUCKET_GATHER,  /* ORDERED: the all-to-all of the chunks is in flight */
    BUCKET_SCATTER, /* ORDERED: the all-gather of the summed chunks; MPI: the all-reduce */
    BUCKET_REDUCED, /* every rank's sum is in the buffer */
} bucket_state;

typedef struct bucket {
    size_t *entries; /* list entries, in the order they fill the buffer */
    size_t n_entries;
    int pending; /* entries whose gradient is not final yet in this step */
    int64_t numel;
    tg_real *buffer;      /* the gradients, then their sum over the ranks */
    tg_real *chunks;      /* ORDERED: every rank's copy of this rank's chunk, rank after rank */
    int *counts, *displs; /* chunk r: counts[r] values at buffer + displs[r] */
    int *recv_counts, *recv_displs; /* counts[me] values from each rank, rank after rank */
    bucket_state state;
    MPI_Request request;
} bucket;

/* A parameter's address and its list entry. */
typedef struct param_ref {
    uintptr_t address;
    size_t entry;
} param_ref;

struct tg_ddp {
    tg_params *params;
    tg_tape *tape;
    tg_ddp_options opts;
    /* Copies of MPI_COMM_WORLD, so the buckets' collectives keep to themselves: one for the
     * first phase (the all-to-all, or MPI's all-reduce), one for the all-gathers. Every rank
     * must issue the collectives of a communicator in the same order: the first phases start
     * in bucket order, and so do the second (a bucket's waits for the bucket before it),
     * whatever order the first phases complete in on each rank. */
    MPI_Comm comm, comm_share;
    int rank, world;
    bucket *buckets;
    size_t n_buckets, next_start; /* buckets start in order: the next one to start */
    size_t next_done;             /* buckets before it are reduced (<= next_start) */
    double progress_s, next_poll; /* the node hook polls at most every progress_s seconds */
    size_t *bucket_of;            /* list entry -> bucket (SIZE_MAX: no gradient) */
    bool *ready;                  /* list entry -> its gradient is final in this step */
    param_ref *by_address;        /* the parameters by address, to find the hook's leaf */
    size_t *final_order;          /* list entries in the order the hook reported them, this step */
    size_t n_final;
    bool rebuilt; /* the buckets follow the order of a step's backward (see tg_ddp_wait) */
    bool no_sync;
    bool started; /* a bucket of this step has started */
    tg_ddp_stats stats;
};

/* ---- finding a parameter from the hook's tensor ---- */

static int by_address(const void *pa, const void *pb) {
    const uintptr_t a = ((const param_ref *)pa)->address, b = ((const param_ref *)pb)->address;
    return (a > b) - (a < b);
}

/* The list entry of `t`, or SIZE_MAX if it is not one of the wrapper's parameters. */
static size_t entry_of(const tg_ddp *d, const tg_tensor *t) {
    const param_ref key = {(uintptr_t)t, 0};
    const param_ref *found =
        bsearch(&key, d->by_address, d->params->count, sizeof *d->by_address, by_address);
    return found ? found->entry : SIZE_MAX;
}

/* ---- one bucket's reduction ---- */

static void bucket_copy_in(const tg_ddp *d, bucket *b) {
    tg_real *at = b->buffer;
    for (size_t k = 0; k < b->n_entries; k++) {
        const tg_tensor *t = d->params->tensors[b->entries[k]];
        const size_t bytes = (size_t)t->numel * sizeof(tg_real);
        if (t->grad)
            memcpy(at, t->grad, bytes);
        else
            memset(at, 0, bytes);
        at += t->numel;
    }
}

/* Starts the bucket's reduction (or, in a world of one, has nothing to do). */
static void bucket_start(tg_ddp *d, bucket *b) {
    bucket_copy_in(d, b);
    if (d->world == 1) {
        b->state = BUCKET_REDUCED;
    } else if (d->opts.reduce == TG_DIST_REDUCE_MPI) {
        MPI_Iallreduce(MPI_IN_PLACE, b->buffer, (int)b->numel, TG_MPI_REAL, MPI_SUM, d->comm,
                       &b->request);
        b->state = BUCKET_SCATTER;
    } else {
        MPI_Ialltoallv(b->buffer, b->counts, b->displs, TG_MPI_REAL, b->chunks, b->recv_counts,
                       b->recv_displs, TG_MPI_REAL, d->comm, &b->request);
        b->state = BUCKET_GATHER;
    }
    d->started = true;
}

/* ORDERED, once the all-to-all is done: this rank's chunk summed in rank order, then shared. */
static void bucket_sum_and_share(tg_ddp *d, bucket *b) {
    const int n = b->counts[d->rank];
    tg_real *out = b->buffer + b->displs[d->rank];
    for (int j = 0; j < n; j++) {
        tg_real s = b->chunks[j];
        for (int r = 1; r < d->world; r++) s += b->chunks[(size_t)r * (size_t)n + (size_t)j];
        out[j] = s;
    }
    MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, b->buffer, b->counts, b->displs,
                    TG_MPI_REAL, d->comm_share, &b->request);
    b->state = BUCKET_SCATTER;
}

/* Moves the bucket's reduction on: with `block`, until it is done; otherwise as far as it
 * goes without waiting (MPI's non-blocking collectives progress inside MPI calls). Called for
 * the buckets in order, and never for one whose predecessor is still in its first phase. */
static void bucket_advance(tg_ddp *d, bucket *b, bool block) {
    while (b->state == BUCKET_GATHER || b->state == BUCKET_SCATTER) {
        int done = 0;
        if (block)
            MPI_Wait(&b->request, MPI_STATUS_IGNORE), done = 1;
        else
            MPI_Test(&b->request, &done, MPI_STATUS_IGNORE);
        if (!done) return;
        if (b->state == BUCKET_GATHER)
            bucket_sum_and_share(d, b);
        else
            b->state = BUCKET_REDUCED;
    }
}

/* The average over the ranks back into the parameters' gradients. */
static void bucket_copy_out(const tg_ddp *d, const bucket *b) {
    const tg_real n = (tg_real)d->world;
    const tg_real *at = b->buffer;
    for (size_t k = 0; k < b->n_entries; k++) {
        tg_tensor *t = d->params->tensors[b->entries[k]];
        if (!t->grad) t->grad = tg_xcalloc((size_t)t->numel, sizeof(tg_real));
        for (int64_t i = 0; i < t->numel; i++) t->grad[i] = at[i] / n;
        at += t->numel;
    }
}

/* ---- the hooks and the step ---- */

static void buckets_rebuild(tg_ddp *d); /* with the building, below */

/* Moves the started buckets on as far as they go without waiting: each all-to-all that is
 * done gets its sums and its all-gather at once. One MPI_Test is usually all it takes, since
 * any MPI call drives every request in flight; it stops at the first bucket still in its
 * first phase, as the second phases must start in bucket order. */
static void advance_started(tg_ddp *d) {
    while (d->next_done < d->next_start) {
        bucket *b = &d->buckets[d->next_done];
        bucket_advance(d, b, false);
        if (b->state != BUCKET_REDUCED) return;
        d->next_done++;
    }
}

static void start_ready_buckets(tg_ddp *d, bool from_hook) {
    while (d->next_start < d->n_buckets && d->buckets[d->next_start].pending == 0) {
        bucket_start(d, &d->buckets[d->next_start++]);
        if (from_hook)
            d->stats.started_in_backward++;
        else
            d->stats.started_at_wait++;
    }
}

static void grad_final(tg_tensor *leaf, void *ctx) {
    tg_ddp *d = ctx;
    if (d->no_sync) return;
    const size_t e = entry_of(d, leaf);
    if (e == SIZE_MAX || d->bucket_of[e] == SIZE_MAX) return;
    if (d->ready[e])
        tg_fail("tg_ddp: parameter '%s' got a second gradient before tg_ddp_wait: one "
                "synchronised backward per step (accumulate under tg_ddp_set_no_sync)",
                d->params->names[e]);
    d->ready[e] = true;
    if (!d->rebuilt) d->final_order[d->n_final++] = e;
    d->buckets[d->bucket_of[e]].pending--;
    start_ready_buckets(d, true);
    advance_started(d);
}

/* After each node of backward: with reductions in flight, and progress_s after the last
 * poll, poll them. Without it a reduction would move only when the next bucket's gradients
 * become final, and its all-gather, which can start only once its all-to-all is seen done,
 * would mostly start at tg_ddp_wait: the reduction would not overlap backward at all. */
static void node_done(const tg_tape *tape, size_t index, void *ctx) {
    (void)tape, (void)index;
    tg_ddp *d = ctx;
    if (d->next_done == d->next_start || d->progress_s < 0) return;
    const double now = MPI_Wtime();
    if (now < d->next_poll) return;
    d->next_poll = now + d->progress_s;
    d->stats.polls++;
    advance_started(d);
}

void tg_ddp_wait(tg_ddp *d) {
    TG_CHECK_ARG(d);
    if (d->no_sync)
        tg_fail("tg_ddp_wait: called with no_sync on: gradients are being accumulated "
                "locally; turn it off and run the step's backward first");
    const double t0 = MPI_Wtime();
    d->stats.reduced_before_wait += d->next_done;
    for (size_t k = d->next_start; k < d->n_buckets; k++) d->buckets[k].pending = 0;
    start_ready_buckets(d, false);
    for (size_t k = 0; k < d->n_buckets; k++) {
        bucket_advance(d, &d->buckets[k], true);
        bucket_copy_out(d, &d->buckets[k]);
    }
    /* the next step */
    for (size_t k = 0; k < d->n_buckets; k++) {
        d->buckets[k].pending = (int)d->buckets[k].n_entries;
        d->buckets[k].state = BUCKET_WAITING;
    }
    memset(d->ready, 0, d->params->count * sizeof *d->ready);
    if (!d->rebuilt) buckets_rebuild(d);
    d->next_start = 0;
    d->next_done = 0;
    d->started = false;
    d->stats.syncs++;
    d->stats.wait_seconds += MPI_Wtime() - t0;
}

/* ---- building and freeing ---- */

static void bucket_init(tg_ddp *d, bucket *b, const size_t *entries, size_t n) {
    b->entries = tg_xmalloc(n * sizeof *b->entries);
    memcpy(b->entries, entries, n * sizeof *entries);
    b->n_entries = n;
    b->pending = (int)n;
    for (size_t k = 0; k < n; k++) b->numel += d->params->tensors[entries[k]]->numel;
    if (b->numel > INT32_MAX)
        tg_fail("tg_ddp_new: parameter '%s' has %lld values, more than an MPI count holds",
                d->params->names[entries[0]], (long long)b->numel);
    b->buffer = tg_xcalloc((size_t)b->numel + 1, sizeof(tg_real));
    const size_t w = (size_t)d->world;
    b->counts = tg_xmalloc(w * sizeof(int));
    b->displs = tg_xmalloc(w * sizeof(int));
    b->recv_counts = tg_xmalloc(w * sizeof(int));
    b->recv_displs = tg_xmalloc(w * sizeof(int));
    int64_t begin = 0, end = 0;
    for (int r = 0; r < d->world; r++) {
        tg_dist_shard_range(b->numel, r, d->world, &begin, &end);
        b->counts[r] = (int)(end - begin);
        b->displs[r] = (int)begin;
    }
    const int mine = b->counts[d->rank];
    for (int r = 0; r < d->world; r++) {
        b->recv_counts[r] = mine;
        b->recv_displs[r] = r * mine;
    }
    b->chunks = tg_xcalloc((size_t)mine * w + 1, sizeof(tg_real));
    b->state = BUCKET_WAITING;
}

/* Buckets over the entries order[0..m) in that order: a bucket is closed when the next
 * parameter would take it past bucket_bytes. */
static void buckets_build(tg_ddp *d, const size_t *order, size_t m) {
    d->buckets = tg_xcalloc(m + 1, sizeof *d->buckets);
    d->n_buckets = 0;
    size_t first = 0, bytes = 0;
    for (size_t j = 0; j < m; j++) {
        const size_t tb = (size_t)d->params->tensors[order[j]]->numel * sizeof(tg_real);
        if (j > first && bytes + tb > d->opts.bucket_bytes) {
            bucket_init(d, &d->buckets[d->n_buckets++], order + first, j - first);
            first = j, bytes = 0;
        }
        bytes += tb;
    }
    if (m > first) bucket_init(d, &d->buckets[d->n_buckets++], order + first, m - first);
    for (size_t k = 0; k < d->n_buckets; k++)
        for (size_t j = 0; j < d->buckets[k].n_entries; j++)
            d->bucket_of[d->buckets[k].entries[j]] = k;
    d->stats.buckets = d->n_buckets;
}

static void buckets_free(tg_ddp *d) {
    for (size_t k = 0; k < d->n_buckets; k++) {
        bucket *b = &d->buckets[k];
        free(b->entries), free(b->buffer), free(b->chunks);
        free(b->counts), free(b->displs), free(b->recv_counts), free(b->recv_displs);
    }
    free(d->buckets);
    d->buckets = NULL, d->n_buckets = 0;
}

/* At the end of the first step whose backward reported gradients: the buckets again, filled
 * in the order rank 0's backward made the gradients final (PyTorch's DDP rebuilds its
 * buckets so after its first step), then the entries it did not report, in the old order.
 * In list order, a bucket could hold a parameter that is final only at the very end of
 * backward (an embedding, listed last or first): the buckets start in order, so none would
 * start before it. Rank 0's order is broadcast, so every rank builds the same buckets.
 * Which rank adds which value changes; the sums do not: every value is still added over the
 * ranks in rank order. Collective, at a tg_ddp_wait. */
static void buckets_rebuild(tg_ddp *d) {
    const size_t n = d->params->count;
    unsigned long long *sent = tg_xmalloc((n + 1) * sizeof *sent);
    unsigned long long m = d->n_final;
    MPI_Bcast(&m, 1, MPI_UNSIGNED_LONG_LONG, 0, d->comm);
    d->n_final = 0;
    if (m == 0 || m > n) { /* no backward yet: look again at the next wait */
        free(sent);
        return;
    }
    for (size_t j = 0; j < m; j++) sent[j] = d->final_order[j];
    MPI_Bcast(sent, (int)m, MPI_UNSIGNED_LONG_LONG, 0, d->comm);
    bool *taken = tg_xcalloc(n + 1, sizeof *taken);
    size_t *order = tg_xmalloc((n + 1) * sizeof *order), k = 0;
    for (size_t j = 0; j < m; j++)
        if (sent[j] < n && d->bucket_of[sent[j]] != SIZE_MAX && !taken[sent[j]])
            taken[sent[j]] = true, order[k++] = (size_t)sent[j];
    for (size_t b = 0; b < d->n_buckets; b++)
        for (size_t j = 0; j < d->buckets[b].n_entries; j++)
            if (!taken[d->buckets[b].entries[j]]) order[k++] = d->buckets[b].entries[j];
    buckets_free(d);
    buckets_build(d, order, k);
    d->rebuilt = true;
    free(order), free(taken), free(sent);
}

tg_ddp *tg_ddp_new(tg_params *params, tg_tape *tape, const tg_ddp_options *opts) {
    tg_dist_require(__func__);
    TG_CHECK_ARG(params);
    TG_CHECK_ARG(tape);
    tg_ddp *d = tg_xcalloc(1, sizeof *d);
    d->params = params;
    d->tape = tape;
    d->opts = opts ? *opts : (tg_ddp_options){0};
    if (!d->opts.bucket_bytes) d->opts.bucket_bytes = TG_DDP_BUCKET_BYTES_DEFAULT;
    if (d->opts.reduce != TG_DIST_REDUCE_ORDERED && d->opts.reduce != TG_DIST_REDUCE_MPI)
        tg_fail("tg_ddp_new: unknown reduction %d", (int)d->opts.reduce);
    MPI_Comm_dup(MPI_COMM_WORLD, &d->comm);
    MPI_Comm_dup(MPI_COMM_WORLD, &d->comm_share);
    MPI_Comm_rank(d->comm, &d->rank);
    MPI_Comm_size(d->comm, &d->world);
    if (!d->opts.no_broadcast) tg_dist_broadcast_params(params, 0);

    const size_t n = params->count;
    d->bucket_of = tg_xmalloc((n + 1) * sizeof *d->bucket_of);
    d->ready = tg_xcalloc(n + 1, sizeof *d->ready);
    d->by_address = tg_xmalloc((n + 1) * sizeof *d->by_address);
    for (size_t i = 0; i < n; i++) {
        d->bucket_of[i] = SIZE_MAX;
        d->by_address[i] = (param_ref){(uintptr_t)params->tensors[i], i};
    }
    qsort(d->by_address, n, sizeof *d->by_address, by_address);

    /* Until a backward shows the order, buckets over the list in reverse (the order backward
     * finishes the layers, roughly). */
    size_t *order = tg_xmalloc((n + 1) * sizeof *order), m = 0;
    for (size_t i = n; i-- > 0;)
        if (params->tensors[i]->requires_grad) order[m++] = i;
    d->final_order = tg_xmalloc((n + 1) * sizeof *d->final_order);
    buckets_build(d, order, m);
    free(order);
    for (size_t k = 0; k < d->n_buckets; k++) d->stats.params += d->buckets[k].numel;
    d->progress_s = d->opts.progress_us == 0 ? TG_DDP_PROGRESS_US_DEFAULT * 1e-6
                                             : (double)d->opts.progress_us * 1e-6;
    tg_tape_set_grad_hook(tape, grad_final, d);
    tg_tape_set_node_hook(tape, node_done, d);
    return d;
}

tg_ddp *tg_ddp_new_module(tg_module *module, tg_tape *tape, const tg_ddp_options *opts) {
    TG_CHECK_ARG(module);
    return tg_ddp_new(tg_module_params(module), tape, opts);
}

void tg_ddp_free(tg_ddp *d) {
    if (!d) return;
    if (d->started && !d->no_sync) tg_ddp_wait(d);
    tg_tape_set_grad_hook(d->tape, NULL, NULL);
    tg_tape_set_node_hook(d->tape, NULL, NULL);
    buckets_free(d);
    free(d->bucket_of), free(d->ready), free(d->by_address), free(d->final_order);
    MPI_Comm_free(&d->comm);
    MPI_Comm_free(&d->comm_share);
    free(d);
}

void tg_ddp_set_no_sync(tg_ddp *d, bool on) {
    TG_CHECK_ARG(d);
    d->no_sync = on;
}

bool tg_ddp_no_sync(const tg_ddp *d) {
    TG_CHECK_ARG(d);
    return d->no_sync;
}

tg_ddp_stats tg_ddp_get_stats(const tg_ddp *d) {
    TG_CHECK_ARG(d);
    return d->stats;
}

const size_t *tg_ddp_bucket_entries(const tg_ddp *d, size_t b, size_t *count) {
    TG_CHECK_ARG(d);
    TG_CHECK_ARG(count);
    if (b >= d->n_buckets) tg_fail("tg_ddp_bucket_entries: bucket %zu of %zu", b, d->n_buckets);
    *count = d->buckets[b].n_entries;
    return d->buckets[b].entries;
}
