/* tapegrad/arena.h — a bump allocator for everything one forward/backward step creates.
 * Layer: tensor.
 *
 * Allocation is a pointer bump inside a block; when a block is full a new one is chained.
 * tg_arena_reset() frees nothing visible to the user: it makes the memory reusable, and if
 * the step needed several blocks it replaces them by one block as large as the most the
 * arena ever held at once (its peak), so from the second step on a training loop makes no
 * malloc calls at all, and the block is no larger than a step needs. A mark and a rewind
 * give back, in the middle of a step, everything allocated since the mark (scratch memory). */
#ifndef TAPEGRAD_ARENA_H
#define TAPEGRAD_ARENA_H

#include "tapegrad/base.h"

/* Every allocation starts on a multiple of this and takes a multiple of it. */
#define TG_ARENA_ALIGN 64

typedef struct tg_arena tg_arena;

/* Where the arena stands, to rewind to (see tg_arena_rewind). */
typedef struct tg_arena_mark {
    const void *block;
    size_t used, total;
} tg_arena_mark;

tg_arena *tg_arena_new(size_t first_block_bytes);
void tg_arena_free(tg_arena *arena);
/* 64-byte aligned, uninitialised. Never NULL (fails through tg_fail). Every function here
 * but tg_arena_free (NULL is fine) requires a non-NULL arena. */
void *tg_arena_alloc(tg_arena *arena, size_t bytes);
void *tg_arena_calloc(tg_arena *arena, size_t bytes); /* zero-filled */
void tg_arena_reset(tg_arena *arena);
tg_arena_mark tg_arena_get_mark(const tg_arena *arena);
/* Frees (for reuse) everything allocated since `mark` was taken; blocks chained since then
 * go back to the system, but the peak remembers them, so the next reset sizes for them. */
void tg_arena_rewind(tg_arena *arena, tg_arena_mark mark);
size_t tg_arena_used(const tg_arena *arena);     /* bytes handed out since the last reset */
size_t tg_arena_peak(const tg_arena *arena);     /* the most bytes ever in use at once */
size_t tg_arena_capacity(const tg_arena *arena); /* bytes held */
/* malloc calls the arena has made since it was created (for the zero-malloc check). */
uint64_t tg_arena_malloc_count(const tg_arena *arena);
/* How many times the arena was reset (0 when new). A tensor made in the arena records the
 * generation it was made in, so that one used after a reset is told from a live one. */
uint32_t tg_arena_generation(const tg_arena *arena);

#endif
