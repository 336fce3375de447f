/* autograd/tape_internal.h — the tape's insides, shared by autograd/tape.c (recording,
 * backward, listing) and autograd/tape_lifetime.c (the tensors it makes, their headers and
 * the entry checks of their lifetimes). Layer: autograd (not installed). */
#ifndef TAPEGRAD_TAPE_INTERNAL_H
#define TAPEGRAD_TAPE_INTERNAL_H

#include "tapegrad/tape.h"

/* Tensor headers, in fixed-size slots out of chunks that are kept across resets (see
 * tape.h, "Lifetimes", for why headers are not in the arena). A pool hands slots out in
 * order and is rewound to its first chunk; chunks double in size as a step needs more. */
typedef union header_slot {
    tg_tensor tensor;
    tg_index index;
} header_slot;

typedef struct header_chunk {
    struct header_chunk *next;
    size_t count;
    header_slot slots[];
} header_chunk;

typedef struct header_pool {
    header_chunk *first, *current; /* current NULL: rewound, the next slot is first's */
    size_t used;                   /* slots of `current` handed out */
    bool made;                     /* a slot was handed out since the last rewind */
} header_pool;

struct tg_tape {
    tg_arena *arena; /* what ops make and save, and (rewound after each node) backward scratch */
    tg_arena *grads; /* gradients of the tape's tensors, recycled through `spares` */
    struct spare_grad *spares; /* tape.c */
    tg_node *nodes;            /* stb_ds dynamic array; keeps its capacity across resets */
    uint64_t node_mallocs;     /* times `nodes` grew */
    header_pool headers[2];    /* this generation's tensor headers, and the previous one's */
    int pool;                  /* the pool of this generation */
    uint64_t header_mallocs;   /* chunks allocated */
    uint32_t generation;       /* = tg_arena_generation(arena), read by every entry check */
    bool recording;
    bool anomaly;              /* anomaly mode: check values and gradients (autograd/anomaly.c) */
    tg_grad_hook_fn grad_hook; /* tg_tape_set_grad_hook, and its context */
    void *grad_hook_ctx;
    tg_node_hook_fn node_hook; /* tg_tape_set_node_hook, and its context */
    void *node_hook_ctx;
};

/* tape_lifetime.c, for tape.c: free both pools; at a reset, keep the headers of the
 * generation that ends and rewind the other pool for the new one; the bytes the pools hold. */
void tg_tape_headers_free(tg_tape *tape);
void tg_tape_headers_next_generation(tg_tape *tape);
size_t tg_tape_headers_bytes(const tg_tape *tape);

#endif
