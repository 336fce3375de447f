/* tapegrad/arena.h — a bump allocator for everything one forward/backward step creates.
 *
 * Allocation is a pointer bump inside a block; when a block is full a new one is chained.
 * tg_arena_reset() frees nothing visible to the user: it makes the memory reusable, and if
 * the step needed several blocks it replaces them by one block as large as all of them,
 * so from the second step on a training loop makes no malloc calls at all. */
#ifndef TAPEGRAD_ARENA_H
#define TAPEGRAD_ARENA_H

#include "tapegrad/base.h"

typedef struct tg_arena tg_arena;

tg_arena *tg_arena_new(size_t first_block_bytes);
void tg_arena_free(tg_arena *arena);
/* 64-byte aligned, uninitialised. Never NULL (fails through tg_fail). */
void *tg_arena_alloc(tg_arena *arena, size_t bytes);
void *tg_arena_calloc(tg_arena *arena, size_t bytes); /* zero-filled */
void tg_arena_reset(tg_arena *arena);
size_t tg_arena_used(const tg_arena *arena);     /* bytes handed out since the last reset */
size_t tg_arena_capacity(const tg_arena *arena); /* bytes held */
/* malloc calls the arena has made since it was created (for the zero-malloc check). */
uint64_t tg_arena_malloc_count(const tg_arena *arena);

#endif
