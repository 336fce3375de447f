/* The processes: starting and ending MPI, rank and size, and the small collectives a training
 * loop needs besides the gradients (sums of losses, agreement, broadcasts, checkpoints). */
#include "dist_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rank and size, cached at tg_dist_init: 0 and 1 outside it (a single process). */
static int g_rank = 0, g_world = 1;
static bool g_initialized = false;

tg_status tg_dist_init(int *argc, char ***argv) {
    if (g_initialized) return TG_OK;
    int started = 0, ended = 0;
    MPI_Initialized(&started);
    MPI_Finalized(&ended);
    if (ended) return tg_status_set(TG_ERR_IO, "tg_dist_init: MPI was already finalized");
    if (!started) {
        int provided = 0;
        if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return tg_status_set(TG_ERR_IO, "tg_dist_init: MPI_Init_thread failed");
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_world);
    g_initialized = true;
    return TG_OK;
}

void tg_dist_finalize(void) {
    if (!g_initialized) return;
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Finalize();
    g_initialized = false;
    g_rank = 0;
    g_world = 1;
}

bool tg_dist_is_initialized(void) { return g_initialized; }
int tg_dist_rank(void) { return g_rank; }
int tg_dist_world_size(void) { return g_world; }

void tg_dist_require(const char *function) {
    if (!g_initialized) tg_fail("%s: call tg_dist_init first", function);
}

void tg_dist_barrier(void) {
    tg_dist_require(__func__);
    MPI_Barrier(MPI_COMM_WORLD);
}

void tg_dist_sum(double *values, int n) {
    tg_dist_require(__func__);
    if (n <= 0) return;
    TG_CHECK_ARG(values);
    /* Every rank gets every rank's values and adds them in rank order itself: the same
     * additions in the same order everywhere, whatever algorithm MPI picks. */
    double *all = tg_xmalloc((size_t)n * (size_t)g_world * sizeof *all);
    MPI_Allgather(values, n, MPI_DOUBLE, all, n, MPI_DOUBLE, MPI_COMM_WORLD);
    for (int i = 0; i < n; i++) {
        double s = all[i];
        for (int r = 1; r < g_world; r++) s += all[(size_t)r * (size_t)n + (size_t)i];
        values[i] = s;
    }
    free(all);
}

bool tg_dist_all(bool ok) {
    tg_dist_require(__func__);
    int mine = ok, every = 0;
    MPI_Allreduce(&mine, &every, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    return every != 0;
}

/* MPI_Bcast of n reals, in pieces that fit an int count. */
static void broadcast_reals(tg_real *data, int64_t n, int root) {
    for (int64_t at = 0; at < n; at += TG_DIST_PIECE) {
        const int64_t m = n - at < TG_DIST_PIECE ? n - at : TG_DIST_PIECE;
        MPI_Bcast(data + at, (int)m, TG_MPI_REAL, root, MPI_COMM_WORLD);
    }
}

void tg_dist_broadcast_params(const tg_params *params, int root) {
    tg_dist_require(__func__);
    TG_CHECK_ARG(params);
    if (root < 0 || root >= g_world)
        tg_fail("tg_dist_broadcast_params: root %d is not a rank of a world of %d", root, g_world);
    for (size_t i = 0; i < params->count; i++)
        broadcast_reals(params->tensors[i]->data, params->tensors[i]->numel, root);
}

_Noreturn void tg_dist_exit(int status, const char *fmt, ...) {
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    if (g_world > 1)
        fprintf(stderr, "[rank %d/%d] %s\n", g_rank, g_world, message);
    else
        fprintf(stderr, "%s\n", message);
    fflush(stderr);
    tg_dist_finalize();
    exit(status);
}

tg_status tg_dist_local_batch(int64_t global_batch, int64_t *local) {
    TG_CHECK_ARG_STATUS(local);
    const int world = tg_dist_world_size();
    if (global_batch <= 0 || global_batch % world != 0)
        return tg_status_set(TG_ERR_ARGUMENT,
                             "global batch %lld does not divide among %d processes: use a "
                             "multiple of %d",
                             (long long)global_batch, world, world);
    *local = global_batch / world;
    return TG_OK;
}

void tg_dist_shard_range(int64_t n, int rank, int world, int64_t *begin, int64_t *end) {
    TG_CHECK_ARG(begin);
    TG_CHECK_ARG(end);
    if (n < 0 || world < 1 || rank < 0 || rank >= world)
        tg_fail("tg_dist_shard_range: rank %d of %d over %lld items", rank, world, (long long)n);
    const int64_t each = n / world, extra = n % world;
    *begin = rank * each + (rank < extra ? rank : extra);
    *end = *begin + each + (rank < extra ? 1 : 0);
}

/* ---- checkpoints ---- */

/* A status and its message, as one rank sends them to the others. */
typedef struct status_message {
    int status;
    char text[1000];
} status_message;

static void status_broadcast(status_message *m, int root) {
    MPI_Bcast(m, (int)sizeof *m, MPI_BYTE, root, MPI_COMM_WORLD);
}

tg_status tg_dist_params_save(const tg_params *params, const char *path,
                              const tg_save_options *opts) {
    tg_dist_require(__func__);
    if (!params) return tg_status_null_argument(__func__, "params");
    TG_CHECK_ARG_STATUS(path);
    status_message m = {0};
    if (g_rank == 0) {
        m.status = tg_params_save_with(params, path, opts);
        if (m.status != TG_OK) snprintf(m.text, sizeof m.text, "%s", tg_error_message());
    }
    status_broadcast(&m, 0);
    if (m.status == TG_OK) return TG_OK;
    return tg_status_set((tg_status)m.status, "%s", m.text);
}

/* FNV-1a over the bytes of every parameter: equal values, equal checksums. */
static uint64_t params_checksum(const tg_params *params) {
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < params->count; i++) {
        const unsigned char *b = (const unsigned char *)params->tensors[i]->data;
        const size_t n = (size_t)params->tensors[i]->numel * sizeof(tg_real);
        for (size_t k = 0; k < n; k++) h = (h ^ b[k]) * 1099511628211u;
    }
    return h;
}

static void params_restore(const tg_params *params, tg_real *const *saved) {
    for (size_t i = 0; i < params->count; i++)
        memcpy(params->tensors[i]->data, saved[i],
               (size_t)params->tensors[i]->numel * sizeof(tg_real));
}

tg_status tg_dist_params_load(tg_params *params, const char *path, const tg_load_options *opts) {
    tg_dist_require(__func__);
    if (!params) return tg_status_null_argument(__func__, "params");
    TG_CHECK_ARG_STATUS(path);
    /* the values before, to restore if another rank fails (a failed load changes nothing) */
    tg_real **saved = tg_xcalloc(params->count + 1, sizeof *saved);
    for (size_t i = 0; i < params->count; i++) {
        const size_t bytes = (size_t)params->tensors[i]->numel * sizeof(tg_real);
        saved[i] = tg_xmalloc(bytes ? bytes : 1);
        memcpy(saved[i], params->tensors[i]->data, bytes);
    }
    status_message m = {.status = tg_params_load_with(params, path, opts)};
    if (m.status != TG_OK) snprintf(m.text, sizeof m.text, "%s", tg_error_message());

    int *statuses = tg_xmalloc((size_t)g_world * sizeof *statuses);
    MPI_Allgather(&m.status, 1, MPI_INT, statuses, 1, MPI_INT, MPI_COMM_WORLD);
    int failed = -1;
    for (int r = 0; r < g_world && failed < 0; r++)
        if (statuses[r] != TG_OK) failed = r;
    free(statuses);
    tg_status result = TG_OK;
    if (failed >= 0) {
        status_broadcast(&m, failed);
        if (g_world > 1)
            result = tg_status_set((tg_status)m.status, "rank %d: %s", failed, m.text);
        else
            result = tg_status_set((tg_status)m.status, "%s", m.text);
    } else {
        uint64_t mine = params_checksum(params), first = mine;
        MPI_Bcast(&first, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
        const bool same = tg_dist_all(mine == first);
        if (!same)
            result = tg_status_set(TG_ERR_FORMAT,
                                   "tg_dist_params_load: '%.300s' holds other values on some "
                                   "ranks than on rank 0 (different files under one name?)",
                                   path);
    }
    if (result != TG_OK) params_restore(params, saved);
    for (size_t i = 0; i < params->count; i++) free(saved[i]);
    free(saved);
    return result;
}
