/* examples/distributed.c — the training programs under mpirun -np N (see common.h,
 * "processes"). Built with the dist layer when the build found MPI (EX_HAVE_DIST); without
 * it, the same calls describe a single process. */
#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef EX_HAVE_DIST
#include <tapegrad/dist.h>

static void finalize_at_exit(void) { tg_dist_finalize(); }

/* Whether a launcher (mpirun, srun) started this process: it says so in the environment.
 * Alone, MPI is not started at all: a singleton MPI_Init would spawn a helper daemon and need
 * shared-memory files, a second of start-up for nothing. */
static bool launched(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

void ex_dist_start(void) {
    if (tg_dist_is_initialized() || !launched()) return;
    if (tg_dist_init(NULL, NULL) != TG_OK) {
        fprintf(stderr, "cannot start MPI: %s\n", tg_error_message());
        exit(1);
    }
    atexit(finalize_at_exit); /* every exit, also exit(2) on a bad flag, ends MPI */
    /* one voice: the other ranks' standard output (banner, progress, results) goes nowhere;
     * their errors still reach stderr, each with its rank */
    if (tg_dist_rank() != 0 && !freopen("/dev/null", "w", stdout)) exit(1);
}

int ex_rank(void) { return tg_dist_rank(); }
int ex_world(void) { return tg_dist_world_size(); }

void ex_dist_sum(double *values, int n) {
    if (tg_dist_world_size() > 1) tg_dist_sum(values, n);
}

void *ex_dist_wrap(tg_params *params, tg_tape *tape) {
    return tg_dist_world_size() > 1 ? tg_ddp_new(params, tape, NULL) : NULL;
}

void ex_dist_wait(void *wrapper) {
    if (wrapper) tg_ddp_wait(wrapper);
}

void ex_dist_unwrap(void *wrapper) { tg_ddp_free(wrapper); }

tg_status ex_dist_save(const tg_params *state, const char *path, const tg_save_options *opts) {
    return tg_dist_world_size() > 1 ? tg_dist_params_save(state, path, opts)
                                    : tg_params_save_with(state, path, opts);
}

tg_status ex_dist_load(tg_params *state, const char *path, const tg_load_options *opts) {
    return tg_dist_world_size() > 1 ? tg_dist_params_load(state, path, opts)
                                    : tg_params_load_with(state, path, opts);
}

#else /* a single process */

void ex_dist_start(void) {}
int ex_rank(void) { return 0; }
int ex_world(void) { return 1; }
void ex_dist_sum(double *values, int n) { (void)values, (void)n; }
void *ex_dist_wrap(tg_params *params, tg_tape *tape) {
    (void)params, (void)tape;
    return NULL;
}
void ex_dist_wait(void *wrapper) { (void)wrapper; }
void ex_dist_unwrap(void *wrapper) { (void)wrapper; }
tg_status ex_dist_save(const tg_params *state, const char *path, const tg_save_options *opts) {
    return tg_params_save_with(state, path, opts);
}
tg_status ex_dist_load(tg_params *state, const char *path, const tg_load_options *opts) {
    return tg_params_load_with(state, path, opts);
}

#endif

const char *ex_rank_prefix(void) {
    static char prefix[48];
    if (ex_world() == 1) return "";
    snprintf(prefix, sizeof prefix, "[rank %d/%d] ", ex_rank(), ex_world());
    return prefix;
}

void ex_index_rows(const tg_index *all, int64_t first, tg_index *part) {
    const int64_t row = all->shape[0] ? all->numel / all->shape[0] : 0;
    memcpy(part->data, all->data + first * row, (size_t)part->numel * sizeof *part->data);
}

void ex_index_columns(const tg_index *all, int64_t batch, int64_t first, tg_index *part,
                      int64_t local) {
    for (int64_t t = 0; t < part->numel / local; t++)
        memcpy(part->data + t * local, all->data + t * batch + first,
               (size_t)local * sizeof *part->data);
}

int64_t ex_local_batch(int64_t batch, int64_t *first) {
    const int world = ex_world();
    if (batch % world != 0)
        ex_usage_error(ex_program(),
                       "--batch %lld does not divide among %d processes: give a "
                       "multiple of %d",
                       (long long)batch, world, world);
    const int64_t local = batch / world;
    if (first) *first = ex_rank() * local;
    return local;
}
