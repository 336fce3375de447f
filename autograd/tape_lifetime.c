/* The tensors a tape makes and the entry checks of their lifetimes (tapegrad/tape.h,
 * "Lifetimes"): headers in two alternating pools, stamped with the tape's arena and
 * generation, and the checks that compare the stamps. */
#include "tape_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static header_slot *header_take(tg_tape *tape) {
    header_pool *p = &tape->headers[tape->pool];
    if (!p->current || p->used == p->current->count) {
        header_chunk *next = p->current ? p->current->next : p->first;
        if (!next) {
            const size_t count = p->current ? 2 * p->current->count : 64;
            next = tg_xmalloc(sizeof *next + count * sizeof(header_slot));
            next->next = NULL;
            next->count = count;
            if (p->current)
                p->current->next = next;
            else
                p->first = next;
            tape->header_mallocs++;
        }
        p->current = next;
        p->used = 0;
    }
    p->made = true;
    header_slot *slot = &p->current->slots[p->used++];
    memset(slot, 0, sizeof *slot);
    return slot;
}

void tg_tape_headers_free(tg_tape *tape) {
    for (int k = 0; k < 2; k++)
        for (header_chunk *c = tape->headers[k].first, *next; c; c = next) {
            next = c->next;
            free(c);
        }
}

/* The headers of the generation that ends stay as they are through the next one, so a
 * tensor of it is caught by its stamp; the other pool, older, is rewound for the new one. A
 * generation that made no tensor keeps its pool (it is empty). */
void tg_tape_headers_next_generation(tg_tape *tape) {
    if (!tape->headers[tape->pool].made) return;
    tape->pool ^= 1;
    tape->headers[tape->pool] = (header_pool){.first = tape->headers[tape->pool].first};
}

size_t tg_tape_headers_bytes(const tg_tape *tape) {
    size_t bytes = 0;
    for (int k = 0; k < 2; k++)
        for (const header_chunk *c = tape->headers[k].first; c; c = c->next)
            bytes += sizeof *c + c->count * sizeof(header_slot);
    return bytes;
}

uint32_t tg_tape_generation(const tg_tape *tape) {
    TG_CHECK_ARG(tape);
    return tape->generation;
}

/* A stamped header of the given shape; `function` names the caller in messages. */
static tg_tensor *tensor_header(tg_tape *tape, const char *function, int ndim,
                                const int64_t *shape) {
    if (!tape) tg_fail_null_argument(function, "tape");
    const int64_t numel = tg_shape_check(function, ndim, shape);
    if ((uint64_t)numel > SIZE_MAX / sizeof(tg_real)) tg_fail("%s: tensor too large", function);
    tg_tensor *t = &header_take(tape)->tensor;
    if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof(int64_t));
    t->ndim = ndim;
    t->numel = numel;
    t->node = -1;
    t->arena = tape->arena;
    t->generation = tape->generation;
    return t;
}

tg_tensor *tg_tape_tensor(tg_tape *tape, int ndim, const int64_t *shape) {
    tg_tensor *t = tensor_header(tape, __func__, ndim, shape);
    t->data = tg_arena_alloc(tape->arena, (size_t)t->numel * sizeof(tg_real));
    return t;
}

tg_tensor *tg_tape_tensor_view(tg_tape *tape, tg_real *data, int ndim, const int64_t *shape) {
    tg_tensor *t = tensor_header(tape, __func__, ndim, shape);
    if (t->numel > 0 && !data) tg_fail_null_argument(__func__, "data");
    t->data = data;
    return t;
}

tg_tensor *tg_tape_tensor_zeros(tg_tape *tape, int ndim, const int64_t *shape) {
    tg_tensor *t = tg_tape_tensor(tape, ndim, shape);
    if (t->numel) memset(t->data, 0, (size_t)t->numel * sizeof(tg_real));
    return t;
}

tg_tensor *tg_tape_tensor_like(tg_tape *tape, const tg_tensor *t) {
    TG_CHECK_ARG(t);
    return tg_tape_tensor(tape, t->ndim, t->shape);
}

tg_index *tg_tape_index(tg_tape *tape, int ndim, const int64_t *shape) {
    TG_CHECK_ARG(tape);
    const int64_t numel = tg_shape_check(__func__, ndim, shape);
    tg_index *ix = &header_take(tape)->index;
    ix->numel = numel;
    if (ndim) memcpy(ix->shape, shape, (size_t)ndim * sizeof(int64_t));
    ix->ndim = ndim;
    ix->arena = tape->arena;
    ix->generation = tape->generation;
    ix->data = tg_arena_alloc(tape->arena, (size_t)ix->numel * sizeof(int32_t));
    return ix;
}

/* A tensor of another tape: the message names the function, the argument and the tensor. */
static _Noreturn void fail_other_tape(const char *function, const char *argument,
                                      const char *what) {
    tg_fail("%s: argument '%s', %s, was made on another tape: an op takes tensors of its own "
            "tape and long-lived ones; copy it over with tg_tensor_clone",
            function, argument, what);
}

/* The fast path of every check: made on this tape in this generation, or long-lived. */
static inline bool current_or_long_lived(const tg_tape *tape, const struct tg_arena *arena,
                                         uint32_t generation) {
    return !arena || (arena == tape->arena && generation == tape->generation);
}

void tg_tape_check_input(const tg_tape *tape, const char *function, const char *argument,
                         const tg_tensor *t) {
    if (!tape) tg_fail_null_argument(function, "tape");
    if (!t) tg_fail_null_argument(function, argument);
    if (current_or_long_lived(tape, t->arena, t->generation)) return;
    if (t->arena != tape->arena) {
        char desc[160], what[180];
        snprintf(what, sizeof what, "tensor %s", tg_tensor_describe(t, desc, sizeof desc));
        fail_other_tape(function, argument, what);
    }
    tg_tensor_check(function, argument, t); /* of this tape, an earlier generation: stops */
}

/* The i-th name of "a, b, w->bias": copied into buf. */
static const char *nth_name(const char *names, int i, char *buf, size_t len) {
    for (; i > 0 && names; i--) {
        names = strchr(names, ',');
        if (names) names++;
    }
    if (!names) return "?";
    while (*names == ' ') names++;
    size_t n = strcspn(names, ",");
    while (n > 0 && names[n - 1] == ' ') n--;
    snprintf(buf, len, "%.*s", (int)n, names);
    return buf;
}

void tg_tape_check_op(const tg_tape *tape, const char *function, const char *tape_name,
                      const char *names, int n, const tg_tensor *const *ts) {
    if (!tape) tg_fail_null_argument(function, tape_name);
    for (int i = 0; i < n; i++) {
        const tg_tensor *x = ts[i];
        if (x && current_or_long_lived(tape, x->arena, x->generation)) continue;
        char name[64];
        tg_tape_check_input(tape, function, nth_name(names, i, name, sizeof name), x);
    }
}

void tg_tape_check_inputs(const tg_tape *tape, const char *function, const char *argument, int n,
                          const tg_tensor *const *ts) {
    if (!tape) tg_fail_null_argument(function, "tape");
    if (n > 0 && !ts) tg_fail_null_argument(function, argument);
    for (int i = 0; i < n; i++) {
        const tg_tensor *x = ts[i];
        if (x && current_or_long_lived(tape, x->arena, x->generation)) continue;
        char name[64];
        snprintf(name, sizeof name, "%s[%d]", argument, i);
        tg_tape_check_input(tape, function, name, x);
    }
}

void tg_tape_check_index(const tg_tape *tape, const char *function, const char *argument,
                         const tg_index *ix) {
    if (!tape) tg_fail_null_argument(function, "tape");
    if (!ix) tg_fail_null_argument(function, argument);
    if (current_or_long_lived(tape, ix->arena, ix->generation)) return;
    if (ix->arena != tape->arena) fail_other_tape(function, argument, "an index tensor");
    tg_index_check(function, argument, ix);
}
