/* The tape: recording nodes, the reverse walk, and the listing. The tensors it makes and
 * the entry checks of their lifetimes are in tape_lifetime.c. */
#include "tape_internal.h"

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

tg_tape *tg_tape_new(void) {
    tg_tape *tape = tg_xcalloc(1, sizeof *tape);
    tape->arena = tg_arena_new((size_t)1 << 20);
    tape->grads = tg_arena_new((size_t)1 << 20);
    tape->generation = tg_arena_generation(tape->arena);
    tape->recording = true;
    return tape;
}

void tg_tape_free(tg_tape *tape) {
    if (!tape) return;
    arrfree(tape->nodes);
    tg_arena_free(tape->arena);
    tg_arena_free(tape->grads);
    tg_tape_headers_free(tape);
    free(tape);
}

void tg_tape_reset(tg_tape *tape) {
    TG_CHECK_ARG(tape);
    arrsetlen(tape->nodes, 0);
    tg_arena_reset(tape->arena);
    tg_arena_reset(tape->grads);
    tape->spares = NULL;
    tape->generation = tg_arena_generation(tape->arena);
    tg_tape_headers_next_generation(tape);
}

size_t tg_tape_capacity(const tg_tape *tape) {
    TG_CHECK_ARG(tape);
    return tg_arena_capacity(tape->arena) + tg_arena_capacity(tape->grads) +
           (size_t)arrcap(tape->nodes) * sizeof(tg_node) + tg_tape_headers_bytes(tape);
}

uint64_t tg_tape_malloc_count(const tg_tape *tape) {
    TG_CHECK_ARG(tape);
    return tg_arena_malloc_count(tape->arena) + tg_arena_malloc_count(tape->grads) +
           tape->node_mallocs + tape->header_mallocs;
}

void tg_tape_set_recording(tg_tape *tape, bool on) {
    TG_CHECK_ARG(tape);
    tape->recording = on;
}

bool tg_tape_is_recording(const tg_tape *tape) {
    TG_CHECK_ARG(tape);
    return tape->recording;
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
        tg_fail("tg_tape_node: index %zu out of range (the tape has %zu nodes)", i,
                (size_t)arrlen(tape->nodes));
    return &tape->nodes[i];
}

void *tg_tape_alloc(tg_tape *tape, size_t bytes) {
    TG_CHECK_ARG(tape);
    return tg_arena_alloc(tape->arena, bytes);
}

/* An input an op did not check on entry, of an earlier generation or another tape. */
static _Noreturn void fail_unchecked_input(const tg_tape *tape, const char *op, int i,
                                           const tg_tensor *x) {
    char argument[128];
    snprintf(argument, sizeof argument, "in[%d] of op '%.64s'", i, op);
    tg_tape_check_input(tape, "tg_tape_record", argument, x);
    abort(); /* not reached: the check stops */
}

tg_tensor *tg_tape_tensor_full(tg_tape *tape, int ndim, const int64_t *shape, tg_real value) {
    TG_CHECK_ARG(tape);
    tg_tensor *t = tg_tape_tensor(tape, ndim, shape);
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = value;
    return t;
}

tg_index *tg_tape_index_zeros(tg_tape *tape, int ndim, const int64_t *shape) {
    TG_CHECK_ARG(tape);
    tg_index *ix = tg_tape_index(tape, ndim, shape);
    if (ix->numel) memset(ix->data, 0, (size_t)ix->numel * sizeof(int32_t));
    return ix;
}

tg_index *tg_tape_index_arange(tg_tape *tape, int32_t start, int32_t end) {
    TG_CHECK_ARG(tape);
    const int64_t n = end > start ? (int64_t)end - start : 0;
    tg_index *ix = tg_tape_index(tape, 1, &n);
    for (int64_t i = 0; i < n; i++) ix->data[i] = (int32_t)(start + i);
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
    bool needed = false;
    for (int i = 0; i < n_in; i++) {
        const tg_tensor *x = in[i];
        if (!x) continue;
        /* the ops checked their inputs on entry; this catches an op that did not */
        if (x->arena && (x->arena != tape->arena || x->generation != tape->generation))
            fail_unchecked_input(tape, op, i, x);
        needed = needed || x->requires_grad;
    }
    /* anomaly mode: every op passes here with its outputs computed, recorded or not */
    if (tape->anomaly) tg_anomaly_check_forward(tape, op, n_in, in, n_out, out);
    if (!tape->recording || !needed) return NULL;

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

void tg_tape_set_grad_hook(tg_tape *tape, tg_grad_hook_fn fn, void *ctx) {
    TG_CHECK_ARG(tape);
    tape->grad_hook = fn;
    tape->grad_hook_ctx = fn ? ctx : NULL;
}

void tg_tape_set_node_hook(tg_tape *tape, tg_node_hook_fn fn, void *ctx) {
    TG_CHECK_ARG(tape);
    tape->node_hook = fn;
    tape->node_hook_ctx = fn ? ctx : NULL;
}

/* A leaf read by node `node` as its input number `slot`. */
typedef struct leaf_use {
    tg_tensor *leaf;
    ptrdiff_t node;
    int slot;
} leaf_use;

/* By leaf, then node and slot ascending: a leaf's first reader comes first. */
static int by_leaf(const void *pa, const void *pb) {
    const leaf_use *a = pa, *b = pb;
    const uintptr_t la = (uintptr_t)a->leaf, lb = (uintptr_t)b->leaf;
    if (la != lb) return la < lb ? -1 : 1;
    if (a->node != b->node) return a->node < b->node ? -1 : 1;
    return (a->slot > b->slot) - (a->slot < b->slot);
}

/* In the walk's order: node descending, then slot ascending. */
static int by_walk(const void *pa, const void *pb) {
    const leaf_use *a = pa, *b = pb;
    if (a->node != b->node) return a->node > b->node ? -1 : 1;
    return (a->slot > b->slot) - (a->slot < b->slot);
}

/* For the gradient hook: each leaf requiring grad that nodes 0..last read, with the first
 * node that reads it, in the order the walk passes them (from the arena; *count of them).
 * The walk goes from `last` down to 0, and only a node that reads a leaf adds to its
 * gradient, so once the walk is past a leaf's first reader its gradient is final. */
static leaf_use *final_leaves(tg_tape *tape, ptrdiff_t last, size_t *count) {
    size_t n = 0;
    for (ptrdiff_t i = 0; i <= last; i++) n += (size_t)tape->nodes[i].n_in;
    leaf_use *uses = tg_arena_alloc(tape->arena, (n ? n : 1) * sizeof *uses);
    n = 0;
    for (ptrdiff_t i = 0; i <= last; i++)
        for (int k = 0; k < tape->nodes[i].n_in; k++) {
            tg_tensor *x = tape->nodes[i].in[k];
            if (x && x->node < 0 && x->requires_grad) uses[n++] = (leaf_use){x, i, k};
        }
    qsort(uses, n, sizeof *uses, by_leaf);
    size_t m = 0;
    for (size_t j = 0; j < n; j++)
        if (m == 0 || uses[m - 1].leaf != uses[j].leaf) uses[m++] = uses[j];
    qsort(uses, m, sizeof *uses, by_walk);
    *count = m;
    return uses;
}

/* The backward of tg_tape_backward, _with and _ex; `function` is the one called. */
static void backward(tg_tape *tape, tg_tensor *out, const tg_backward_options *o,
                     const char *function, const char *argument) {
    const tg_real *seed = o->seed;
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
    const tg_arena_mark before_hook = tg_arena_get_mark(tape->arena);
    size_t n_final = 0, next_final = 0;
    const leaf_use *finals = tape->grad_hook ? final_leaves(tape, last, &n_final) : NULL;
    if (tape->grad_hook && out->node < 0) tape->grad_hook(out, tape->grad_hook_ctx);
    for (ptrdiff_t i = last; i >= 0; i--) {
        tg_node *node = &tape->nodes[i];
        bool any = false;
        for (int k = 0; k < node->n_out; k++) any = any || node->out[k]->grad;
        if (any) {
            if (node->released) fail_released(function, out, i, node);
            /* what the backward allocates from the arena is scratch: gone when it returns */
            const tg_arena_mark scratch = tg_arena_get_mark(tape->arena);
            node->backward(tape, node);
            if (tape->anomaly)
                tg_anomaly_check_backward(tape, function, node, (size_t)i); /* anomaly */
            tg_arena_rewind(tape->arena, scratch);
            node->released = !o->retain_graph;
            if (o->after_node) o->after_node(tape, (size_t)i, o->ctx);
        }
        /* every reader of these outputs has run: their gradients serve the next ones */
        for (int k = 0; k < node->n_out; k++) {
            tg_tensor *o = node->out[k];
            if (o->retain_grad || !o->grad) continue;
            if (!o->owned && o->numel) spare_give(tape, o->grad, grad_bytes(o));
            o->grad = NULL;
        }
        for (; next_final < n_final && finals[next_final].node == i; next_final++)
            tape->grad_hook(finals[next_final].leaf, tape->grad_hook_ctx);
        if (any && tape->node_hook) tape->node_hook(tape, (size_t)i, tape->node_hook_ctx);
    }
    tg_arena_rewind(tape->arena, before_hook);
}

void tg_tape_backward(tg_tape *tape, tg_tensor *loss) {
    backward(tape, loss, &(tg_backward_options){0}, __func__, "loss");
}

void tg_tape_backward_with(tg_tape *tape, tg_tensor *out, const tg_real *seed) {
    TG_CHECK_ARG(seed);
    backward(tape, out, &(tg_backward_options){.seed = seed}, __func__, "out");
}

void tg_tape_backward_ex(tg_tape *tape, tg_tensor *out, const tg_backward_options *opts) {
    backward(tape, out, opts ? opts : &(tg_backward_options){0}, __func__, "out");
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
