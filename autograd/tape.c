/* The tape: recording nodes, the reverse walk, and the listing. */
#include "tapegrad/tape.h"

/* stb_ds.h's arrsetlen trips -Wtype-limits where it expands (arrsetlen(a, 0) compares
 * an unsigned capacity with 0); the warning is about the macro, not this file. */
#pragma GCC diagnostic ignored "-Wtype-limits"
#include <stb_ds.h>
#include <stdlib.h>
#include <string.h>

/* A gradient buffer given back during backward, waiting for the next gradient of its size.
 * The record lives in the buffer itself (a non-empty buffer is at least TG_ARENA_ALIGN
 * bytes). Spares of one size are a stack; the stacks' tops form the list of sizes. */
typedef struct spare_grad {
    struct spare_grad *next_size; /* the top of the next size's stack */
    struct spare_grad *next;      /* the next spare of this size */
    size_t bytes;                 /* a multiple of TG_ARENA_ALIGN */
} spare_grad;

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
    spare_grad *spares;
    tg_node *nodes;          /* stb_ds dynamic array; keeps its capacity across resets */
    uint64_t node_mallocs;   /* times `nodes` grew */
    header_pool headers[2];  /* this generation's tensor headers, and the previous one's */
    int pool;                /* the pool of this generation */
    uint64_t header_mallocs; /* chunks allocated */
    uint32_t generation;     /* = tg_arena_generation(arena), read by every entry check */
    bool recording;
    bool training;
    bool anomaly; /* anomaly mode: check values and gradients (autograd/anomaly.c) */
};

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

static void header_pool_free(header_pool *p) {
    for (header_chunk *c = p->first, *next; c; c = next) {
        next = c->next;
        free(c);
    }
}

tg_tape *tg_tape_new(void) {
    tg_tape *tape = tg_xcalloc(1, sizeof *tape);
    tape->arena = tg_arena_new((size_t)1 << 20);
    tape->grads = tg_arena_new((size_t)1 << 20);
    tape->generation = tg_arena_generation(tape->arena);
    tape->recording = true;
    tape->training = true;
    return tape;
}

void tg_tape_free(tg_tape *tape) {
    if (!tape) return;
    arrfree(tape->nodes);
    tg_arena_free(tape->arena);
    tg_arena_free(tape->grads);
    header_pool_free(&tape->headers[0]);
    header_pool_free(&tape->headers[1]);
    free(tape);
}

void tg_tape_reset(tg_tape *tape) {
    TG_CHECK_ARG(tape);
    arrsetlen(tape->nodes, 0);
    tg_arena_reset(tape->arena);
    tg_arena_reset(tape->grads);
    tape->spares = NULL;
    tape->generation = tg_arena_generation(tape->arena);
    /* The headers of the generation that ends stay as they are through the next one, so a
     * tensor of it is caught by its stamp; the other pool, older, is rewound for the new
     * one. A generation that made no tensor keeps its pool (it is empty). */
    if (tape->headers[tape->pool].made) {
        tape->pool ^= 1;
        tape->headers[tape->pool].current = NULL;
        tape->headers[tape->pool].used = 0;
        tape->headers[tape->pool].made = false;
    }
}

uint32_t tg_tape_generation(const tg_tape *tape) {
    TG_CHECK_ARG(tape);
    return tape->generation;
}

size_t tg_tape_capacity(const tg_tape *tape) {
    TG_CHECK_ARG(tape);
    size_t headers = 0;
    for (int k = 0; k < 2; k++)
        for (const header_chunk *c = tape->headers[k].first; c; c = c->next)
            headers += sizeof *c + c->count * sizeof(header_slot);
    return tg_arena_capacity(tape->arena) + tg_arena_capacity(tape->grads) +
           (size_t)arrcap(tape->nodes) * sizeof(tg_node) + headers;
}

uint64_t tg_tape_malloc_count(const tg_tape *tape) {
    TG_CHECK_ARG(tape);
    return tg_arena_malloc_count(tape->arena) + tg_arena_malloc_count(tape->grads) +
           tape->node_mallocs + tape->header_mallocs;
}

/* A tensor of another tape: the message names the function, the argument and the tensor. */
static _Noreturn void fail_other_tape(const char *function, const char *argument,
                                      const char *what) {
    tg_fail("%s: argument '%s', %s, was made on another tape: an op takes tensors of its own "
            "tape and long-lived ones; copy it over with tg_tensor_clone",
            function, argument, what);
}

void tg_tape_check_input(const tg_tape *tape, const char *function, const char *argument,
                         const tg_tensor *t) {
    if (!tape) tg_fail_null_argument(function, "tape");
    if (!t) tg_fail_null_argument(function, argument);
    if (t->arena == tape->arena && t->generation == tape->generation) return; /* made here */
    if (!t->arena) return;                                                    /* long-lived */
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
        if (x && (!x->arena || (x->arena == tape->arena && x->generation == tape->generation)))
            continue;
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
        if (x && (!x->arena || (x->arena == tape->arena && x->generation == tape->generation)))
            continue;
        char name[64];
        snprintf(name, sizeof name, "%s[%d]", argument, i);
        tg_tape_check_input(tape, function, name, x);
    }
}

void tg_tape_check_index(const tg_tape *tape, const char *function, const char *argument,
                         const tg_index *ix) {
    if (!tape) tg_fail_null_argument(function, "tape");
    if (!ix) tg_fail_null_argument(function, argument);
    if (!ix->arena || (ix->arena == tape->arena && ix->generation == tape->generation)) return;
    if (ix->arena != tape->arena) fail_other_tape(function, argument, "an index tensor");
    tg_index_check(function, argument, ix);
}

void tg_tape_set_recording(tg_tape *tape, bool on) {
    TG_CHECK_ARG(tape);
    tape->recording = on;
}

bool tg_tape_is_recording(const tg_tape *tape) {
    TG_CHECK_ARG(tape);
    return tape->recording;
}

void tg_tape_set_training(tg_tape *tape, bool on) {
    TG_CHECK_ARG(tape);
    tape->training = on;
}

bool tg_tape_is_training(const tg_tape *tape) {
    TG_CHECK_ARG(tape);
    return tape->training;
}

tg_arena *tg_tape_arena(tg_tape *tape) {
    TG_CHECK_ARG(tape);
    return tape->arena;
}

/* anomaly mode: the flag lives here, the checks in autograd/anomaly.c */
void tg_tape_set_anomaly_detection(tg_tape *tape, bool on) {
    TG_CHECK_ARG(tape);
    tape->anomaly = on;
}

bool tg_tape_anomaly_detection(const tg_tape *tape) {
    TG_CHECK_ARG(tape);
    return tape->anomaly;
}

size_t tg_tape_node_count(const tg_tape *tape) {
    TG_CHECK_ARG(tape);
    return (size_t)arrlen(tape->nodes);
}

const tg_node *tg_tape_node(const tg_tape *tape, size_t i) {
    TG_CHECK_ARG(tape);
    if (i >= (size_t)arrlen(tape->nodes))
        tg_fail("tape_node: index %zu out of range (the tape has %zu nodes)", i,
                (size_t)arrlen(tape->nodes));
    return &tape->nodes[i];
}

void *tg_tape_alloc(tg_tape *tape, size_t bytes) {
    TG_CHECK_ARG(tape);
    return tg_arena_alloc(tape->arena, bytes);
}

/* A stamped header of the given shape; `function` names the caller in messages. */
static tg_tensor *tensor_header(tg_tape *tape, const char *function, int ndim,
                                const int64_t *shape) {
    if (!tape) tg_fail_null_argument(function, "tape");
    if (ndim > 0 && !shape) tg_fail_null_argument(function, "shape");
    const int64_t numel = tg_shape_numel(ndim, shape);
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
    if (ndim > 0) TG_CHECK_ARG(shape);
    const int64_t numel = tg_shape_numel(ndim, shape);
    tg_index *ix = &header_take(tape)->index;
    ix->numel = numel;
    if (ndim) memcpy(ix->shape, shape, (size_t)ndim * sizeof(int64_t));
    ix->ndim = ndim;
    ix->arena = tape->arena;
    ix->generation = tape->generation;
    ix->data = tg_arena_alloc(tape->arena, (size_t)ix->numel * sizeof(int32_t));
    return ix;
}

tg_node *tg_tape_record(tg_tape *tape, const char *op, tg_backward_fn backward, int n_in,
                        tg_tensor *const *in, int n_out, tg_tensor *const *out) {
    TG_CHECK_ARG(tape);
    TG_CHECK_ARG(op);
    TG_CHECK_ARG(backward);
    if (n_in > 0) TG_CHECK_ARG(in);
    if (n_out > 0) TG_CHECK_ARG(out);
    for (int k = 0; k < n_out; k++)
        if (!out[k]) tg_fail("tg_tape_record: output %d of op '%s' is NULL", k, op);
    /* the ops checked their inputs on entry; this catches an op that did not */
    for (int i = 0; i < n_in; i++) {
        const tg_tensor *x = in[i];
        if (x && x->arena && (x->arena != tape->arena || x->generation != tape->generation)) {
            char function[96], argument[32];
            snprintf(function, sizeof function, "%s (op '%s')", __func__, op);
            snprintf(argument, sizeof argument, "in[%d]", i);
            tg_tape_check_input(tape, function, argument, x);
        }
    }
    /* anomaly mode: every op passes here with its outputs computed, recorded or not */
    if (tape->anomaly) tg_anomaly_check_forward(tape, op, n_in, in, n_out, out);
    if (!tape->recording) return NULL;
    bool needed = false;
    for (int i = 0; i < n_in; i++) needed = needed || (in[i] && in[i]->requires_grad);
    if (!needed) return NULL;

    tg_node node = {.op = op, .n_in = n_in, .n_out = n_out, .backward = backward};
    node.in = tg_arena_alloc(tape->arena, (size_t)n_in * sizeof *node.in);
    memcpy(node.in, in, (size_t)n_in * sizeof *node.in);
    node.out = tg_arena_alloc(tape->arena, (size_t)n_out * sizeof *node.out);
    memcpy(node.out, out, (size_t)n_out * sizeof *node.out);
    const int32_t index = (int32_t)arrlen(tape->nodes);
    for (int k = 0; k < n_out; k++) {
        out[k]->requires_grad = true;
        out[k]->node = index;
    }
    const size_t cap = arrcap(tape->nodes);
    arrput(tape->nodes, node);
    if (arrcap(tape->nodes) != cap) tape->node_mallocs++;
    return &tape->nodes[index];
}

static size_t grad_bytes(const tg_tensor *t) {
    const size_t bytes = (size_t)t->numel * sizeof(tg_real);
    return (bytes + TG_ARENA_ALIGN - 1) & ~(size_t)(TG_ARENA_ALIGN - 1);
}

/* The spare of exactly `bytes`, else the smallest of at most twice that; NULL if none. */
static void *spare_take(tg_tape *tape, size_t bytes) {
    spare_grad **best = NULL;
    for (spare_grad **p = &tape->spares; *p; p = &(*p)->next_size) {
        const size_t b = (*p)->bytes;
        if (b >= bytes && b / 2 <= bytes && (!best || b < (*best)->bytes)) best = p;
        if (b == bytes) break;
    }
    if (!best) return NULL;
    spare_grad *s = *best;
    if (s->next) {
        s->next->next_size = s->next_size;
        *best = s->next;
    } else {
        *best = s->next_size;
    }
    return s;
}

static void spare_give(tg_tape *tape, void *buffer, size_t bytes) {
    spare_grad *s = buffer, **p = &tape->spares;
    while (*p && (*p)->bytes != bytes) p = &(*p)->next_size;
    s->bytes = bytes;
    s->next = *p;
    s->next_size = *p ? (*p)->next_size : NULL;
    *p = s;
}

tg_real *tg_tape_grad(tg_tape *tape, tg_tensor *t) {
    TG_CHECK_ARG(tape);
    if (!t || !t->requires_grad) return NULL;
    if (!t->grad && t->owned) {
        t->grad = tg_xcalloc((size_t)t->numel, sizeof(tg_real));
    } else if (!t->grad) {
        const size_t bytes = (size_t)t->numel * sizeof(tg_real);
        void *spare = bytes ? spare_take(tape, grad_bytes(t)) : NULL;
        t->grad = spare ? spare : tg_arena_alloc(tape->grads, bytes);
        memset(t->grad, 0, bytes);
    }
    return t->grad;
}

bool tg_tape_grad_move(tg_tape *tape, tg_tensor *to, tg_tensor *from) {
    TG_CHECK_ARG(tape);
    TG_CHECK_ARG(to);
    TG_CHECK_ARG(from);
    if (!to->requires_grad || to->grad || to->owned || from->owned || from->retain_grad ||
        !from->grad || to->numel != from->numel)
        return false;
    to->grad = from->grad;
    from->grad = NULL;
    return true;
}

void tg_tensor_retain_grad(tg_tensor *t) {
    TG_CHECK_TENSOR(t);
    t->retain_grad = true;
}

void tg_tensor_zero_grad(tg_tensor *t) {
    TG_CHECK_TENSOR(t);
    if (t->grad) memset(t->grad, 0, (size_t)t->numel * sizeof(tg_real));
}

/* A second backward through a node whose graph an earlier backward released. */
static _Noreturn void fail_released(const char *function, const tg_tensor *out, ptrdiff_t i,
                                    const tg_node *node) {
    char desc[160];
    tg_fail("%s: the graph of %s was already back-propagated through: node #%td '%s' ran its "
            "backward in an earlier backward, which released the graph; to back-propagate "
            "through a graph more than once, keep it with retain_graph in every backward but the "
            "last: tg_tape_backward_ex(tape, out, &(tg_backward_options){.retain_graph = true})",
            function, tg_tensor_describe(out, desc, sizeof desc), i, node->op);
}

/* The backward of tg_tape_backward, _with and _ex; `function` is the one called. */
static void backward(tg_tape *tape, tg_tensor *out, const tg_real *seed, bool retain_graph,
                     const char *function, const char *argument) {
    if (!tape) tg_fail_null_argument(function, "tape");
    tg_tape_check_input(tape, function, argument, out);
    char desc[160];
    if (!out->requires_grad)
        tg_fail("%s: tensor %s does not require grad (no input of its graph does, or "
                "the tape was not recording)",
                function, tg_tensor_describe(out, desc, sizeof desc));
    if (!seed && out->numel != 1)
        tg_fail("%s: %s %s has %lld elements; backward needs a one-element loss or a seed "
                "gradient (tg_tape_backward_with)",
                function, argument, tg_tensor_describe(out, desc, sizeof desc),
                (long long)out->numel);
    /* Arena gradients of intermediates from an earlier backward (retained ones, or those a
     * backward stopped half-way by the error handler left) are dropped: an intermediate's
     * buffer is also the gradient that flows on, so each backward computes fresh ones.
     * Leaves (long-lived or not) accumulate, as in PyTorch. */
    const ptrdiff_t n = arrlen(tape->nodes);
    for (ptrdiff_t i = 0; i < n; i++)
        for (int k = 0; k < tape->nodes[i].n_out; k++) tape->nodes[i].out[k]->grad = NULL;

    tg_real *g = tg_tape_grad(tape, out);
    for (int64_t i = 0; i < out->numel; i++) g[i] += seed ? seed[i] : 1;

    const ptrdiff_t last = out->node >= 0 ? out->node : -1;
    for (ptrdiff_t i = last; i >= 0; i--) {
        tg_node *node = &tape->nodes[i];
        bool any = false;
        for (int k = 0; k < node->n_out; k++) any = any || node->out[k]->grad;
        if (any) {
            if (node->released) fail_released(function, out, i, node);
            /* what the backward allocates from the arena is scratch: gone when it returns */
            const tg_arena_mark scratch = tg_arena_get_mark(tape->arena);
            node->backward(tape, node);
            if (tape->anomaly) tg_anomaly_check_backward(tape, node, (size_t)i); /* anomaly */
            tg_arena_rewind(tape->arena, scratch);
            node->released = !retain_graph;
        }
        /* every reader of these outputs has run: their gradients serve the next ones */
        for (int k = 0; k < node->n_out; k++) {
            tg_tensor *o = node->out[k];
            if (o->retain_grad || !o->grad) continue;
            if (!o->owned && o->numel) spare_give(tape, o->grad, grad_bytes(o));
            o->grad = NULL;
        }
    }
}

void tg_tape_backward(tg_tape *tape, tg_tensor *loss) {
    backward(tape, loss, NULL, false, __func__, "loss");
}

void tg_tape_backward_with(tg_tape *tape, tg_tensor *out, const tg_real *seed) {
    TG_CHECK_ARG(seed);
    backward(tape, out, seed, false, __func__, "out");
}

void tg_tape_backward_ex(tg_tape *tape, tg_tensor *out, const tg_backward_options *opts) {
    const tg_backward_options o = opts ? *opts : (tg_backward_options){0};
    backward(tape, out, o.seed, o.retain_graph, __func__, "out");
}

/* An input is shown with where it comes from: a parameter or other long-lived leaf,
 * an arena leaf, a constant, or the node (#k) that produced it. */
static void print_tensor_ref(FILE *f, const tg_tensor *t, bool as_input) {
    char shape[96];
    tg_shape_format(t->ndim, t->shape, shape, sizeof shape);
    fprintf(f, "%s", shape);
    if (t->name[0]) fprintf(f, " '%s'", t->name);
    if (!as_input) return;
    if (t->node >= 0)
        fprintf(f, " #%d", t->node);
    else if (t->owned && t->requires_grad)
        fputs(" [param]", f);
    else if (t->requires_grad)
        fputs(" [leaf]", f);
    else
        fputs(" [const]", f);
}

void tg_tape_print(const tg_tape *tape, FILE *f) {
    TG_CHECK_ARG(tape);
    TG_CHECK_ARG(f);
    const ptrdiff_t n = arrlen(tape->nodes);
    fprintf(f, "tape: %td node%s, arena %zu bytes in use\n", n, n == 1 ? "" : "s",
            tg_arena_used(tape->arena));
    for (ptrdiff_t i = 0; i < n; i++) {
        const tg_node *node = &tape->nodes[i];
        fprintf(f, "#%-4td %-16s -> ", i, node->op);
        for (int k = 0; k < node->n_out; k++) {
            if (k) fputs(", ", f);
            print_tensor_ref(f, node->out[k], false);
        }
        fputs("  <- ", f);
        for (int k = 0; k < node->n_in; k++) {
            if (k) fputs(", ", f);
            if (node->in[k])
                print_tensor_ref(f, node->in[k], true);
            else
                fputs("-", f);
        }
        fputc('\n', f);
    }
}
