/* tapegrad/tape.h — the tape (a Wengert list) and reverse-mode backward.
 * Layer: autograd.
 *
 * Every op takes the tape as its first argument, computes its output in the tape's arena
 * and, when recording is on and any input requires grad, appends a node: the op's name,
 * its inputs, its outputs and the function that maps output gradients to input gradients.
 * Nodes are appended in execution order, which is a topological order, so backward is a
 * single walk over the nodes in reverse. */
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
void tg_tape_free(tg_tape *tape);
/* Forgets every node and recycles the arena: every tensor an op made is gone. Long-lived
 * tensors (parameters) keep their data and their accumulated gradients. */
void tg_tape_reset(tg_tape *tape);

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
 * recycled as soon as the op that made them has run its backward. */
void tg_tape_backward(tg_tape *tape, tg_tensor *loss);
/* Backward from any output with a given seed gradient (same numel as `out`). */
void tg_tape_backward_with(tg_tape *tape, tg_tensor *out, const tg_real *seed);
/* After backward, an intermediate keeps its gradient only if tg_tensor_retain_grad was
 * called on it (leaves always do). Gradients of the last backward; reset clears them. */
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
/* The arena of the tensors ops make (gradients have an arena of their own). */
tg_arena *tg_tape_arena(tg_tape *tape);
void *tg_tape_alloc(tg_tape *tape, size_t bytes);
/* Appends a node if recording and any input requires grad, marks the outputs as requiring
 * grad and returns the node (for `saved`/args); otherwise returns NULL. */
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
 * a custom op that computes values without calling tg_tape_record may call the first. */
void tg_anomaly_check_forward(const tg_tape *tape, const char *op, int n_in, tg_tensor *const *in,
                              int n_out, tg_tensor *const *out);
void tg_anomaly_check_backward(const tg_tape *tape, const tg_node *node, size_t index);

/* ---- pictures ---- */
/* Writes the tape as a Graphviz DOT graph (render with `dot -Tsvg tape.dot -o tape.svg`):
 * one box per op with its output shapes and tensor names and its backward order ("bwd 1"
 * runs first: backward walks the nodes in reverse); parameters (long-lived leaves that
 * require grad) in a cluster of their own, other leaves and constants in their own styles;
 * an edge from each input to the op that reads it. Named intermediates (the gates "z_3",
 * "f_0", ...) are filled, so the gates of a composite RNN step stand out. */
tg_status tg_tape_write_dot(const tg_tape *tape, const char *path);

#endif
