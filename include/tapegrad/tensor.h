/* tapegrad/tensor.h — storage, shapes, creation, printing. Knows nothing of gradients
 * except that a tensor has a slot for one (filled by the autograd layer).
 * Layer: tensor.
 *
 * Tensors are contiguous and row-major. Two kinds of ownership:
 *  - long-lived tensors (parameters, data a program keeps) are made with tg_tensor_new*
 *    and freed with tg_tensor_free;
 *  - everything an op produces lives in the arena of the tape that made it and is
 *    recycled by tg_tape_reset (never free those). Such a tensor records that arena and the
 *    arena's generation (its count of resets) when it was made: the functions here and every
 *    op compare the two, so a tensor used after the reset that recycled it is stopped by name
 *    (what is and is not detected: tapegrad/tape.h). */
#ifndef TAPEGRAD_TENSOR_H
#define TAPEGRAD_TENSOR_H

#include <stdio.h>

#include "tapegrad/base.h"

struct tg_arena;

typedef struct tg_tensor {
    tg_real *data;
    tg_real *grad; /* dL/d(this); NULL until backward reaches it */
    int64_t shape[TG_MAX_DIMS];
    int ndim;
    int64_t numel;
    bool requires_grad;     /* leaf: set by the user; op output: any input requires grad */
    bool retain_grad;       /* an intermediate that keeps its gradient after backward */
    bool owned;             /* long-lived (malloc'd data and grad), freed by tg_tensor_free */
    int32_t node;           /* index of the tape node that produced it, -1 for a leaf */
    uint32_t generation;    /* the arena's generation when the tensor was made */
    struct tg_arena *arena; /* the arena of the tape that made it; NULL when long-lived */
    char name[TG_NAME_MAX]; /* "" or a name shown in messages, tape listings, checkpoints */
} tg_tensor;

/* Integer tensors for token ids and class targets. */
typedef struct tg_index {
    int32_t *data;
    int64_t shape[TG_MAX_DIMS];
    int ndim;
    int64_t numel;
    bool owned;
    uint32_t generation;    /* as for tg_tensor */
    struct tg_arena *arena; /* NULL when long-lived */
} tg_index;

/* ---- entry checks ----
 * Stops through tg_fail, naming `function` and `argument`, when t is NULL or was made in a
 * tape's arena before its last reset ("tg_item: argument 't', tensor (2,) 'y', was made
 * before tg_tape_reset (generation 3, the tape is at 4)"). TG_CHECK_TENSOR(t) names the
 * enclosing function and the argument as written. Ops check more (the tape a tensor belongs
 * to): TG_CHECK_INPUT in tapegrad/tape.h. */
void tg_tensor_check(const char *function, const char *argument, const tg_tensor *t);
void tg_index_check(const char *function, const char *argument, const tg_index *ix);
#define TG_CHECK_TENSOR(t) tg_tensor_check(__func__, #t, t)
#define TG_CHECK_INDEX(ix) tg_index_check(__func__, #ix, ix)

/* ---- long-lived tensors (caller frees with tg_tensor_free) ---- */
tg_tensor *tg_tensor_new(int ndim, const int64_t *shape); /* zero-filled */
tg_tensor *tg_tensor_zeros(int ndim, const int64_t *shape);
tg_tensor *tg_tensor_ones(int ndim, const int64_t *shape);
tg_tensor *tg_tensor_full(int ndim, const int64_t *shape, tg_real value);
tg_tensor *tg_tensor_from_array(int ndim, const int64_t *shape, const tg_real *values);
tg_tensor *tg_tensor_arange(tg_real start, tg_real end, tg_real step); /* [start, end) */
tg_tensor *tg_tensor_clone(const tg_tensor *t);
void tg_tensor_free(tg_tensor *t); /* NULL is fine; an arena tensor is a misuse */

tg_index *tg_index_new(int ndim, const int64_t *shape); /* zero-filled */
tg_index *tg_index_from_array(int ndim, const int64_t *shape, const int32_t *values);
void tg_index_free(tg_index *ix);

/* Shape-literal helper: TG_SHAPE(2, 3) expands to (2, (const int64_t[]){2, 3}). */
#define TG_SHAPE(...)                                                                              \
    (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]) {           \
        __VA_ARGS__                                                                                \
    }

/* ---- shapes ---- */
int64_t tg_shape_numel(int ndim, const int64_t *shape); /* fails on negative dims or overflow */
/* tg_shape_numel for a function that takes a shape: the messages name `function`. */
int64_t tg_shape_check(const char *function, int ndim, const int64_t *shape);
bool tg_shape_equal(const tg_tensor *a, const tg_tensor *b);
int64_t tg_tensor_size(const tg_tensor *t, int dim); /* dim may be negative, as in PyTorch */
int tg_dim_normalize(const char *op, const tg_tensor *t, int dim); /* -1 -> ndim-1, checked */
/* Writes "(2, 3)" into buf; returns buf. */
char *tg_shape_format(int ndim, const int64_t *shape, char *buf, size_t len);
/* Writes "(2, 3) 'name'" (or "(2, 3) <unnamed>") into buf, for error messages. */
char *tg_tensor_describe(const tg_tensor *t, char *buf, size_t len);
void tg_tensor_set_name(tg_tensor *t, const char *name);
tg_tensor *tg_tensor_named(tg_tensor *t, const char *name); /* sets the name, returns t */
tg_tensor *tg_tensor_requires_grad(tg_tensor *t, bool on);  /* returns t */

/* In-place fills (long-lived or arena tensors alike). */
void tg_tensor_fill(tg_tensor *t, tg_real value);
void tg_tensor_copy_from(tg_tensor *dst, const tg_real *values);

/* The single value of a 1-element tensor (fails otherwise). */
tg_real tg_item(const tg_tensor *t);

/* Prints like PyTorch: tensor([[1.0000, 2.0000], ...]) with shape and name. */
void tg_tensor_print(const tg_tensor *t);
void tg_tensor_fprint(FILE *f, const tg_tensor *t);

#endif
