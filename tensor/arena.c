/* A chained-block bump allocator; see arena.h for why it coalesces on reset. */
#include "tapegrad/arena.h"

#include <stdlib.h>
#include <string.h>
#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#define ARENA_MMAP 1
#endif

/* Blocks from this size on are mapped from the system directly. malloc would hand a freed
 * block back to the system only if it sits at the top of its heap: glibc serves blocks
 * below its mmap threshold from the heap, and raises that threshold to the size of each
 * mapped block freed (up to 32 MB), so after the first step's growth and rewinds the
 * blocks the reset frees stayed resident next to the one block that replaces them (18 MB
 * of a 86 MB inference run). A mapping is given back the moment it is freed. */
#define MAP_MIN ((size_t)1 << 20)

typedef struct arena_block {
    struct arena_block *next; /* the block chained before this one */
    size_t size, used;
    unsigned char *base; /* TG_ARENA_ALIGN-aligned */
} arena_block;

struct tg_arena {
    arena_block *head; /* the block allocations come from; older blocks follow */
    size_t used_total, peak;
    uint64_t mallocs;
    uint32_t generation; /* resets so far */
};

/* size bytes, TG_ARENA_ALIGN-aligned (a mapping is page-aligned); NULL when out of memory. */
static void *block_memory(size_t size) {
#ifdef ARENA_MMAP
    if (size >= MAP_MIN) {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
#endif
    void *p = NULL;
    return posix_memalign(&p, TG_ARENA_ALIGN, size) == 0 ? p : NULL;
}

/* A block that a larger one follows keeps its pages past `used` (touched by scratch since
 * rewound) out of use until the reset: they go back to the system now, so a growing first
 * step holds no more memory than it uses. */
static void block_drop_tail(arena_block *b) {
#ifdef ARENA_MMAP
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), from = (b->used + page - 1) & ~(page - 1);
    if (b->size >= MAP_MIN && from < b->size)
        madvise(b->base + from, b->size - from, MADV_DONTNEED);
#else
    (void)b;
#endif
}

/* `function`: the public function that needs the block, for the message. */
static arena_block *block_new(const char *function, tg_arena *arena, size_t size) {
    arena_block *b = malloc(sizeof *b);
    void *base = b ? block_memory(size) : NULL;
    if (!base) {
        free(b);
        tg_fail("%s: out of memory allocating an arena block of %zu bytes", function, size);
    }
    arena->mallocs += 2; /* the two allocations of a block, mapped or not */
    b->next = NULL;
    b->size = size;
    b->used = 0;
    b->base = base;
    return b;
}

static void block_free(arena_block *b) {
#ifdef ARENA_MMAP
    if (b->size >= MAP_MIN)
        munmap(b->base, b->size);
    else
#endif
        free(b->base);
    free(b);
}

tg_arena *tg_arena_new(size_t first_block_bytes) {
    tg_arena *arena = tg_xcalloc(1, sizeof *arena);
    arena->head =
        block_new("tg_arena_new", arena, first_block_bytes ? first_block_bytes : (size_t)1 << 20);
    return arena;
}

void tg_arena_free(tg_arena *arena) {
    if (!arena) return;
    for (arena_block *b = arena->head, *next; b; b = next) {
        next = b->next;
        block_free(b);
    }
    free(arena);
}

void *tg_arena_alloc(tg_arena *arena, size_t bytes) {
    TG_CHECK_ARG(arena);
    const size_t need = (bytes + TG_ARENA_ALIGN - 1) & ~(size_t)(TG_ARENA_ALIGN - 1);
    if (need < bytes) tg_fail("tg_arena_alloc: allocation of %zu bytes overflows", bytes);
    arena_block *b = arena->head;
    if (b->size - b->used < need) {
        block_drop_tail(b);
        size_t size = b->size * 2;
        while (size < need) size *= 2;
        b = block_new("tg_arena_alloc", arena, size);
        b->next = arena->head;
        arena->head = b;
    }
    void *p = b->base + b->used;
    b->used += need;
    arena->used_total += need;
    if (arena->used_total > arena->peak) arena->peak = arena->used_total;
    return p;
}

void *tg_arena_calloc(tg_arena *arena, size_t bytes) {
    TG_CHECK_ARG(arena);
    void *p = tg_arena_alloc(arena, bytes);
    memset(p, 0, bytes);
    return p;
}

void tg_arena_reset(tg_arena *arena) {
    TG_CHECK_ARG(arena);
    arena->generation++;
    /* Several blocks, or one too small for the peak (blocks given back by a rewind): one
     * block of the peak holds a whole step, every allocation aligned as it was. */
    if (arena->head->next || arena->head->size < arena->peak) {
        for (arena_block *b = arena->head, *next; b; b = next) {
            next = b->next;
            block_free(b);
        }
        arena->head = block_new("tg_arena_reset", arena, arena->peak);
    }
    arena->head->used = 0;
    arena->used_total = 0;
}

tg_arena_mark tg_arena_get_mark(const tg_arena *arena) {
    TG_CHECK_ARG(arena);
    return (tg_arena_mark){arena->head, arena->head->used, arena->used_total};
}

void tg_arena_rewind(tg_arena *arena, tg_arena_mark m) {
    TG_CHECK_ARG(arena);
    while (arena->head != m.block) {
        if (!arena->head->next)
            tg_fail("tg_arena_rewind: rewind to a mark of another arena or before a reset");
        arena_block *b = arena->head;
        arena->head = b->next;
        block_free(b);
    }
    arena->head->used = m.used;
    arena->used_total = m.total;
}

size_t tg_arena_used(const tg_arena *arena) {
    TG_CHECK_ARG(arena);
    return arena->used_total;
}

size_t tg_arena_peak(const tg_arena *arena) {
    TG_CHECK_ARG(arena);
    return arena->peak;
}

size_t tg_arena_capacity(const tg_arena *arena) {
    TG_CHECK_ARG(arena);
    size_t total = 0;
    for (const arena_block *b = arena->head; b; b = b->next) total += b->size;
    return total;
}

uint64_t tg_arena_malloc_count(const tg_arena *arena) {
    TG_CHECK_ARG(arena);
    return arena->mallocs;
}

uint32_t tg_arena_generation(const tg_arena *arena) {
    TG_CHECK_ARG(arena);
    return arena->generation;
}
