/* tapegrad/tape.h — the tape (a Wengert list) and reverse-mode backward.
 * Layer: autograd.
 *
 * Every op takes the tape as its first argument, computes its output in the tape's arena
 * and, when recording is on and any input requires grad, appends a node: the op's name,
 * its inputs, its outputs and the function that maps output gradients to input gradients.
 * Nodes are appended in execution order, which is a topological order, so backward is a
 * single walk over the nodes in reverse.
 *
 * Lifetimes. Every tensor an op makes (and tg_tape_tensor, tg_tape_index) records its tape's
 * arena and the tape's generation, the number of tg_tape_reset calls so far. Every op, every
 * module's forward, backward and the tensor functions (tg_item, tg_tensor_fill, ...) check
 * each tensor argument on entry, in O(1), before reading its data, and stop through tg_fail
 * with the function, the argument, the tensor's shape and name and what happened:
 *   "tg_add: argument 'b', tensor (3,) 'y', was made before tg_tape_reset (generation 3, the
 *    tape is at 4)"                      — a tensor of an earlier step;
 *   "tg_add: argument 'b', tensor (3,) 'y', was made on another tape" — a tensor of tape A
 *    given to an op on tape B (so a graph on B never refers to A's memory, whatever
 *    happens to A later).
 * Long-lived tensors (tg_tensor_new ..., parameters) belong to no tape and pass anywhere.
 * What makes the check reliable: tensor headers do not live in the arena (whose memory the
 * next step reuses at once) but in two header pools that the tape alternates between, one
 * per generation that made tensors; a reset rewinds the pool of the generation before last.
 * So the header of a tensor of the previous step is left as it was, its generation stamp
 * intact, for the whole next step, whatever ops run in it.
 * What is detected:
 *  - a tensor of the previous step (made before the last reset, in the last generation that
 *    made tensors), used at any time before the following reset;
 *  - a tensor of another tape that is still alive (reset or not);
 *  - NULL anywhere a tensor is required.
 * What is not detected:
 *  - a tensor two or more steps old: its header's pool has been rewound and may hold a new
 *    tensor's header at that very address, which then passes for it;
 *  - a tensor of a tape that has been freed (tg_tape_free frees its headers too);
 *  - reading t->data directly: only the library's functions check.
 * The pools keep their memory across resets, as the arena does: from the third step on, a
 * loop that records the same graph each step makes no malloc call. */
#ifndef TAPEGRAD_TAPE_H
#define TAPEGRAD_TAPE_H

#include <stdio.h>

#include "tapegrad/arena.h"
#include "tapegrad/tensor.h"

typedef struct tg_tape tg_tape;
typedef struct tg_node tg_node;

/* Reads node->out[k]->grad (NULL means zero) and accumulates into the inputs' gradients
 * through tg_tape_grad (which returns NULL for inputs that need none). Anything else it
 * takes from the arena (tg_tape_alloc, tg_tape_tensor) is scratch, given back when it
 * returns: a backward keeps nothing of its own for later. */
typedef void (*tg_backward_fn)(tg_tape *tape, tg_node *node);

struct tg_node {
    const char *op; /* "add", "matmul", ... (a string literal) */
    /* its backward has run in a backward that did not retain the graph: another backward
     * through it is a misuse (PyTorch frees the graph then) */
    bool released;
    tg_tensor **in; /* inputs, in the arena */
    int n_in;
    tg_tensor **out; /* outputs, in the arena; most ops have one */
    int n_out;
    tg_backward_fn backward;
    void *saved;     /* op-specific data kept for backward, in the arena */
    int64_t iarg[4]; /* small integer arguments (dims, flags) */
    double farg[2];  /* small real arguments (scalars, eps) */
};

tg_tape *tg_tape_new(void);
void tg_tape_free(tg_tape *tape); /* NULL is fine */
/* Forgets every node and recycles the arena: every tensor an op made is gone (using one
 * afterwards is stopped, see above). Long-lived tensors (parameters) keep their data and
 * their accumulated gradients. */
void tg_tape_reset(tg_tape *tape);
/* The number of resets so far (0 for a new tape): the generation new tensors are stamped
 * with. */
uint32_t tg_tape_generation(const tg_tape *tape);

/* With recording off (inference, torch.no_grad) ops still compute, but append no nodes.
 * Recording is the tape's only mode: training versus evaluation (dropout on or off) is the
 * modules' flag, tg_module_train / tg_module_eval (tapegrad/module.h), as in PyTorch. */
void tg_tape_set_recording(tg_tape *tape, bool on);
bool tg_tape_is_recording(const tg_tape *tape);

/* Bytes the tape holds (its arenas and node list), and the malloc calls it has made: after
 * the first step of a loop that records the same graph each step, the count stays put. */
size_t tg_tape_capacity(const tg_tape *tape);
uint64_t tg_tape_malloc_count(const tg_tape *tape);

/* Backward from a one-element loss (seed gradient 1). Gradients of intermediates are
 * recycled as soon as the op that made them has run its backward.
 * A backward releases the graph it went through, as PyTorch's does: a second backward that
 * reaches a node the first went through is a misuse (tg_fail), unless every backward but
 * the last passes retain_graph. With it, the gradients of the second backward add to those
 * of the first in every leaf (parameters), as in PyTorch. */
void tg_tape_backward(tg_tape *tape, tg_tensor *loss);
/* Backward from any output with a given seed gradient (same numel as `out`). */
void tg_tape_backward_with(tg_tape *tape, tg_tensor *out, const tg_real *seed);
typedef struct tg_backward_options {
    const tg_real *seed; /* the gradient of `out`, out->numel values; NULL: 1 (one element) */
    bool retain_graph;   /* keep the graph for another backward (PyTorch's retain_graph) */
    /* Called after each node's backward, in backward order, with the node's index: a look
     * at the gradients as they add up (what a debugger or a step-by-step picture shows).
     * The node's outputs still hold their gradients and its inputs their sums so far; an
     * intermediate's gradient outlives this call only if it was retained
     * (tg_tensor_retain_grad). NULL: none. */
    void (*after_node)(const tg_tape *tape, size_t index, void *ctx);
    void *ctx; /* handed to after_node */
} tg_backward_options;
/* Both of the above, and more: opts NULL = {NULL, false}, i.e. tg_tape_backward. */
void tg_tape_backward_ex(tg_tape *tape, tg_tensor *out, const tg_backward_options *opts);
/* A gradient hook: fn(leaf, ctx) is called during every backward on this tape, once for
 * each leaf (a tensor no node of the tape produced: a parameter, or a tape tensor the user
 * set requires_grad on) that requires grad and is an input of a node the backward walks
 * through, as soon as its gradient is final for this backward: right after the walk has
 * passed the first node (in recording order) that reads it, since no node before that one
 * can add to it. Leaves are reported in the order the walk finishes them (for a node, in
 * the order of its inputs). The walk covers every node recorded up to `out`'s, so a leaf
 * they read is reported even if `out` does not depend on it (its gradient is then left as
 * it was); a leaf read only by nodes recorded after `out` is not. `out` itself, if it is a
 * leaf, is reported first. The hook may read and change leaf->grad (NULL: none yet) and
 * do work of its own (start a communication); it must not record on this tape or run a
 * backward. Data-parallel training starts a bucket's all-reduce from it while backward goes
 * on (tapegrad/dist.h). One hook per tape: setting one replaces the previous; fn NULL removes
 * it. Without a hook, backward does no extra work. */
typedef void (*tg_grad_hook_fn)(tg_tensor *leaf, void *ctx);
void tg_tape_set_grad_hook(tg_tape *tape, tg_grad_hook_fn fn, void *ctx);
/* A node hook: fn(tape, index, ctx) is called during every backward on this tape (whichever
 * of the calls above runs it) after each node whose backward ran, with the node's index, once
 * the gradient hooks of the leaves that node finished have run: a regular beat through the
 * whole backward, for work that has to be moved on while backward computes (a non-blocking
 * communication advances only when its library is called: data-parallel training polls its
 * in-flight reductions from it, tapegrad/dist.h). The same rules as the gradient hook's: it
 * must not record on this tape or run a backward; one per tape, setting one replaces the
 * previous, fn NULL removes it. It is called once per node, however small, so one that
 * costs more than a few nanoseconds should look at a clock and return early. tg_backward_
 * options.after_node (for one call) runs right after the node's backward, before this. */
typedef void (*tg_node_hook_fn)(const tg_tape *tape, size_t index, void *ctx);
void tg_tape_set_node_hook(tg_tape *tape, tg_node_hook_fn fn, void *ctx);

/* After backward, an intermediate keeps its gradient only if tg_tensor_retain_grad was
 * called on it (leaves always do). It holds the gradient of the last backward (PyTorch
 * would add up those of backward calls through a retained graph); reset clears it. */
void tg_tensor_retain_grad(tg_tensor *t);

/* Zeroes the gradient of a long-lived tensor (no-op if it has none). */
void tg_tensor_zero_grad(tg_tensor *t);

/* Writes one line per node: index, op, output shape and name, inputs (shape, name,
 * [param] for long-lived tensors). */
void tg_tape_print(const tg_tape *tape, FILE *f);
size_t tg_tape_node_count(const tg_tape *tape);
const tg_node *tg_tape_node(const tg_tape *tape, size_t i);

/* ---- tensors and index tensors inside a step ----
 * What a step builds besides op outputs (inputs of a batch, masks, positions, token ids,
 * targets) can live in the tape's arena like op outputs: no free, no malloc once the first
 * step has sized the arena, and all of it recycled by tg_tape_reset (so never keep these
 * across a reset; long-lived data uses tg_tensor_new* / tg_index_new). None requires grad
 * (a constant of the step); set requires_grad on a tensor to differentiate with respect to
 * it. PyTorch's zeros_like(x) is tg_tape_tensor_zeros(t, x->ndim, x->shape), ones_like
 * tg_tape_tensor_full(t, x->ndim, x->shape, 1), torch.arange(n) for positions
 * tg_tape_index_arange(t, 0, n), a causal mask tg_triu(t, tg_tape_tensor_full(...), 1). */
tg_tensor *tg_tape_tensor(tg_tape *tape, int ndim, const int64_t *shape); /* uninitialised */
tg_tensor *tg_tape_tensor_zeros(tg_tape *tape, int ndim, const int64_t *shape);
tg_tensor *tg_tape_tensor_full(tg_tape *tape, int ndim, const int64_t *shape, tg_real value);
tg_tensor *tg_tape_tensor_like(tg_tape *tape, const tg_tensor *t); /* uninitialised */
/* An index tensor (token ids, targets, positions); its data is uninitialised: fill it. */
tg_index *tg_tape_index(tg_tape *tape, int ndim, const int64_t *shape);
tg_index *tg_tape_index_zeros(tg_tape *tape, int ndim, const int64_t *shape);
/* start, start + 1, ..., end - 1: shape (end - start,) (0 elements if end <= start). */
tg_index *tg_tape_index_arange(tg_tape *tape, int32_t start, int32_t end);

/* ---- for op implementers ---- */
/* Entry checks: every op checks its tape and its tensor arguments first, before it reads
 * anything through them (docs/writing-an-op.md):
 *   TG_CHECK_ARG(t)              the tape, and any pointer that must not be NULL;
 *   TG_CHECK_INPUT(t, x)         a tensor: not NULL, not made before the tape's last reset,
 *                                not made on another tape (long-lived tensors pass);
 *   TG_CHECK_INPUT_OPT(t, bias)  the same for a tensor whose NULL means something;
 *   TG_CHECK_INDEX_INPUT(t, ids) the same for an index tensor.
 * They name the enclosing function (__func__) and the argument as written; the functions
 * take both explicitly (for arrays: "xs[2]"). */
void tg_tape_check_input(const tg_tape *tape, const char *function, const char *argument,
                         const tg_tensor *t);
void tg_tape_check_index(const tg_tape *tape, const char *function, const char *argument,
                         const tg_index *ix);
#define TG_CHECK_INPUT(tape, t) tg_tape_check_input(tape, __func__, #t, t)
#define TG_CHECK_INPUT_OPT(tape, t)                                                                \
    do {                                                                                           \
        if (t) tg_tape_check_input(tape, __func__, #t, t);                                         \
    } while (0)
#define TG_CHECK_INDEX_INPUT(tape, ix) tg_tape_check_index(tape, __func__, #ix, ix)
/* An array of n tensors, each checked as TG_CHECK_INPUT does and named "xs[i]". */
void tg_tape_check_inputs(const tg_tape *tape, const char *function, const char *argument, int n,
                          const tg_tensor *const *ts);
#define TG_CHECK_INPUTS(tape, xs, n)                                                               \
    tg_tape_check_inputs(tape, __func__, #xs, n, (const tg_tensor *const *)(xs))
/* The usual first line of an op: TG_CHECK_OP(t, a, b) checks the tape (not NULL) and each
 * tensor as TG_CHECK_INPUT does, in one call. The arguments are named as written. */
void tg_tape_check_op(const tg_tape *tape, const char *function, const char *tape_name,
                      const char *names, int n, const tg_tensor *const *ts);
#define TG_CHECK_OP(tape, ...)                                                                     \
    tg_tape_check_op(                                                                              \
        tape, __func__, #tape, #__VA_ARGS__,                                                       \
        (int)(sizeof((const tg_tensor *const[]){__VA_ARGS__}) / sizeof(const tg_tensor *)),        \
        (const tg_tensor *const[]){__VA_ARGS__})
/* The arena of the tensors ops make (gradients have an arena of their own). */
tg_arena *tg_tape_arena(tg_tape *tape);
/* A new tensor over `data` that the op already has (a reshape's input, a run's buffer):
 * no copy. Every tensor an op returns is made by one of the tg_tape_tensor* calls (its
 * header stamped with the tape's generation). */
tg_tensor *tg_tape_tensor_view(tg_tape *tape, tg_real *data, int ndim, const int64_t *shape);
void *tg_tape_alloc(tg_tape *tape, size_t bytes);
/* Appends a node if recording and any input requires grad, marks the outputs as requiring
 * grad and returns the node (for `saved`/args); otherwise returns NULL. Inputs may be NULL
 * (an absent bias); the others must be of this tape and generation (or long-lived), as
 * the op's entry checks made sure. */
tg_node *tg_tape_record(tg_tape *tape, const char *op, tg_backward_fn backward, int n_in,
                        tg_tensor *const *in, int n_out, tg_tensor *const *out);
/* The gradient buffer of `t`, created zero-filled on first use; NULL if t needs no grad. */
tg_real *tg_tape_grad(tg_tape *tape, tg_tensor *t);
/* For a backward whose input gradient is its output's, element for element (reshape): when
 * `to` has no gradient yet and `from`'s is not kept (retain_grad), hands from's buffer over
 * instead of copying it and returns true; false (nothing done) otherwise. Both tape tensors
 * of the same numel; `from` is the node's output, `to` its input. */
bool tg_tape_grad_move(tg_tape *tape, tg_tensor *to, tg_tensor *from);

/* ---- anomaly mode (autograd/anomaly.c) ----
 * With anomaly detection on, the first op that makes a NaN or an Inf stops the program
 * through tg_fail, with the op's name, the tensor names, and its inputs' shapes and value
 * ranges (min, max, NaN and Inf counts):
 *  - forward: every op's outputs are checked as the op hands them to tg_tape_record, which
 *    every op calls once its outputs are computed, whether or not it will record (so ops
 *    whose inputs need no grad, and tapes with recording off, are checked too). A NaN is
 *    always reported. An Inf is reported only when no input held one (infinities that
 *    flow in and out, like an additive −inf attention mask, are not made here), and never
 *    for masked_fill, whose job is to place a given value (−inf masks);
 *  - backward: after each node's backward, the gradients of its inputs are checked; a NaN
 *    or an Inf there names the node whose backward made it.
 * It costs one pass over every output and gradient: a debugging switch, off by default. */
void tg_tape_set_anomaly_detection(tg_tape *tape, bool on);
bool tg_tape_anomaly_detection(const tg_tape *tape);
/* The two checks themselves, called by the tape (tg_tape_record, tg_tape_backward_with);
 * a custom op that computes values without calling tg_tape_record may call the first. The
 * backward check's message starts with `function`, the backward the program called. */
void tg_anomaly_check_forward(const tg_tape *tape, const char *op, int n_in, tg_tensor *const *in,
                              int n_out, tg_tensor *const *out);
void tg_anomaly_check_backward(const tg_tape *tape, const char *function, const tg_node *node,
                               size_t index);

/* ---- pictures ---- */
/* Writes the tape as a Graphviz DOT graph (render with `dot -Tsvg tape.dot -o tape.svg`):
 * one box per op with its output shapes and tensor names and its backward order ("bwd 1"
 * runs first: backward walks the nodes in reverse); parameters (long-lived leaves that
 * require grad) in a cluster of their own, other leaves and constants in their own styles;
 * an edge from each input to the op that reads it. Named intermediates (the gates "z_3",
 * "f_0", ...) are filled, so the gates of a composite RNN step stand out. */
tg_status tg_tape_write_dot(const tg_tape *tape, const char *path);
/* What tg_tape_write_dot_ex adds to the picture: the numbers, for small tensors. */
typedef struct tg_dot_options {
    bool values;       /* each tensor's values under its shape: "= [0.5, -1]" */
    bool grads;        /* and its gradient where it has one after backward: "d [0.1, 0.2]"
                        * (leaves keep theirs; an intermediate only if retained) */
    int64_t max_numel; /* numbers only for tensors of at most this many elements; 0: 12 */
    int digits;        /* significant digits; 0: 4 */
} tg_dot_options;
/* tg_tape_write_dot with numbers on the boxes: opts NULL writes what tg_tape_write_dot does.
 * A picture of a small step (examples/graph.c) then shows what backward computed. */
tg_status tg_tape_write_dot_ex(const tg_tape *tape, const char *path, const tg_dot_options *opts);

#endif
