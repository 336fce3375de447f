/* A chained-block bump allocator; see arena.h for why it coalesces on reset. */
#include "tapegrad/arena.h"

#include <stdlib.h>
#include <string.h>

typedef struct arena_block {
    struct arena_block *next; /* the block chained before this one */
    size_t size, used;
    unsigned char *base; /* TG_ARENA_ALIGN-aligned */
} arena_block;

struct tg_arena {
    arena_block *head; /* the block allocations come from; older blocks follow */
    size_t used_total, peak;
    uint64_t mallocs;
};

static arena_block *block_new(tg_arena *a, size_t size) {
    arena_block *b = malloc(sizeof *b);
    void *base = NULL;
    if (!b || posix_memalign(&base, TG_ARENA_ALIGN, size) != 0) {
        free(b);
        tg_fail("arena: out of memory allocating a block of %zu bytes", size);
    }
    a->mallocs += 2;
    b->next = NULL;
    b->size = size;
    b->used = 0;
    b->base = base;
    return b;
}

static void block_free(arena_block *b) {
    free(b->base);
    free(b);
}

tg_arena *tg_arena_new(size_t first_block_bytes) {
    tg_arena *a = tg_xcalloc(1, sizeof *a);
    a->head = block_new(a, first_block_bytes ? first_block_bytes : (size_t)1 << 20);
    return a;
}

void tg_arena_free(tg_arena *a) {
    if (!a) return;
    for (arena_block *b = a->head, *next; b; b = next) {
        next = b->next;
        block_free(b);
    }
    free(a);
}

void *tg_arena_alloc(tg_arena *a, size_t bytes) {
    const size_t need = (bytes + TG_ARENA_ALIGN - 1) & ~(size_t)(TG_ARENA_ALIGN - 1);
    if (need < bytes) tg_fail("arena: allocation of %zu bytes overflows", bytes);
    arena_block *b = a->head;
    if (b->size - b->used < need) {
        size_t size = b->size * 2;
        while (size < need) size *= 2;
        b = block_new(a, size);
        b->next = a->head;
        a->head = b;
    }
    void *p = b->base + b->used;
    b->used += need;
    a->used_total += need;
    if (a->used_total > a->peak) a->peak = a->used_total;
    return p;
}

void *tg_arena_calloc(tg_arena *a, size_t bytes) {
    void *p = tg_arena_alloc(a, bytes);
    memset(p, 0, bytes);
    return p;
}

void tg_arena_reset(tg_arena *a) {
    /* Several blocks, or one too small for the peak (blocks given back by a rewind): one
     * block of the peak holds a whole step, every allocation aligned as it was. */
    if (a->head->next || a->head->size < a->peak) {
        for (arena_block *b = a->head, *next; b; b = next) {
            next = b->next;
            block_free(b);
        }
        a->head = block_new(a, a->peak);
    }
    a->head->used = 0;
    a->used_total = 0;
}

tg_arena_mark tg_arena_get_mark(const tg_arena *a) {
    return (tg_arena_mark){a->head, a->head->used, a->used_total};
}

void tg_arena_rewind(tg_arena *a, tg_arena_mark m) {
    while (a->head != m.block) {
        if (!a->head->next) tg_fail("arena: rewind to a mark of another arena or before a reset");
        arena_block *b = a->head;
        a->head = b->next;
        block_free(b);
    }
    a->head->used = m.used;
    a->used_total = m.total;
}

size_t tg_arena_used(const tg_arena *a) { return a->used_total; }
size_t tg_arena_peak(const tg_arena *a) { return a->peak; }

size_t tg_arena_capacity(const tg_arena *a) {
    size_t total = 0;
    for (const arena_block *b = a->head; b; b = b->next) total += b->size;
    return total;
}

uint64_t tg_arena_malloc_count(const tg_arena *a) { return a->mallocs; }
