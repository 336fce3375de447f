/* dist/dist_internal.h — what the dist layer's files share (not installed). Layer: dist. */
#ifndef TAPEGRAD_DIST_INTERNAL_H
#define TAPEGRAD_DIST_INTERNAL_H

#include "tapegrad/dist.h"

#include <mpi.h>

/* The MPI type of tg_real in this build. */
#ifdef TG_DOUBLE
#define TG_MPI_REAL MPI_DOUBLE
#else
#define TG_MPI_REAL MPI_FLOAT
#endif

/* MPI counts are ints: calls over more values than that go in pieces of this many. */
#define TG_DIST_PIECE ((int64_t)1 << 30)

/* Stops through tg_fail unless tg_dist_init has run: `function` names the caller. */
void tg_dist_require(const char *function);

#endif
