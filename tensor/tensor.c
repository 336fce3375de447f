/* Long-lived tensors, shapes, names and printing, and the entry checks of tensors. */
#include "tapegrad/tensor.h"

#include "tapegrad/arena.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A tensor made in an arena before the arena's last reset: the message names the function,
 * the argument and the tensor. Only the header is read (see tape.h for why it is intact). */
static _Noreturn void fail_stale(const char *function, const char *argument, const char *what,
                                 uint32_t generation, uint32_t now) {
    tg_fail("%s: argument '%s', %s, was made before tg_tape_reset (generation %u, the tape is at "
            "%u): what an op makes lives until the next reset of its tape; keep what must outlive "
            "a step in a long-lived tensor (tg_tensor_clone)",
            function, argument, what, generation, now);
}

void tg_tensor_check(const char *function, const char *argument, const tg_tensor *t) {
    if (!t) tg_fail_null_argument(function, argument);
    if (t->arena && t->generation != tg_arena_generation(t->arena)) {
        char desc[160], what[180];
        snprintf(what, sizeof what, "tensor %s", tg_tensor_describe(t, desc, sizeof desc));
        fail_stale(function, argument, what, t->generation, tg_arena_generation(t->arena));
    }
}

void tg_index_check(const char *function, const char *argument, const tg_index *ix) {
    if (!ix) tg_fail_null_argument(function, argument);
    if (ix->arena && ix->generation != tg_arena_generation(ix->arena)) {
        char shape[96], what[120];
        const int nd = ix->ndim >= 0 && ix->ndim <= TG_MAX_DIMS ? ix->ndim : 0;
        snprintf(what, sizeof what, "index tensor %s",
                 tg_shape_format(nd, ix->shape, shape, sizeof shape));
        fail_stale(function, argument, what, ix->generation, tg_arena_generation(ix->arena));
    }
}

int64_t tg_shape_check(const char *function, int ndim, const int64_t *shape) {
    TG_CHECK_ARG(function);
    if (ndim < 0 || ndim > TG_MAX_DIMS)
        tg_fail("%s: shape of %d dimensions (at most %d are supported)", function, ndim,
                TG_MAX_DIMS);
    if (ndim > 0 && !shape) tg_fail_null_argument(function, "shape");
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            tg_fail("%s: dimension %d of the shape is negative (%" PRId64 ")", function, i,
                    shape[i]);
        if (shape[i] != 0 && n > INT64_MAX / shape[i])
            tg_fail("%s: the number of elements of the shape overflows 64 bits", function);
        n *= shape[i];
    }
    return n;
}

int64_t tg_shape_numel(int ndim, const int64_t *shape) {
    return tg_shape_check(__func__, ndim, shape);
}

/* `function` is the public function called, for the message about a NULL shape. */
static tg_tensor *tensor_alloc(const char *function, int ndim, const int64_t *shape) {
    const int64_t numel = tg_shape_check(function, ndim, shape);
    if ((uint64_t)numel > SIZE_MAX / sizeof(tg_real)) tg_fail("%s: tensor too large", function);
    tg_tensor *t = tg_xcalloc(1, sizeof *t);
    if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof(int64_t));
    t->ndim = ndim;
    t->numel = numel;
    t->owned = true;
    t->node = -1;
    t->data = tg_xcalloc((size_t)numel, sizeof(tg_real));
    return t;
}

tg_tensor *tg_tensor_new(int ndim, const int64_t *shape) {
    return tensor_alloc(__func__, ndim, shape);
}

tg_tensor *tg_tensor_zeros(int ndim, const int64_t *shape) {
    return tensor_alloc(__func__, ndim, shape);
}

tg_tensor *tg_tensor_full(int ndim, const int64_t *shape, tg_real value) {
    tg_tensor *t = tensor_alloc(__func__, ndim, shape);
    tg_tensor_fill(t, value);
    return t;
}

tg_tensor *tg_tensor_ones(int ndim, const int64_t *shape) {
    tg_tensor *t = tensor_alloc(__func__, ndim, shape);
    tg_tensor_fill(t, 1);
    return t;
}

tg_tensor *tg_tensor_from_array(int ndim, const int64_t *shape, const tg_real *values) {
    if (!values && tg_shape_check(__func__, ndim, shape) > 0)
        tg_fail_null_argument(__func__, "values");
    tg_tensor *t = tensor_alloc(__func__, ndim, shape);
    tg_tensor_copy_from(t, values);
    return t;
}

tg_tensor *tg_tensor_arange(tg_real start, tg_real end, tg_real step) {
    if (step == 0 || isnan(step) || isnan(start) || isnan(end))
        tg_fail(
            "tg_tensor_arange: step must be non-zero and bounds finite (start %g, end %g, step %g)",
            (double)start, (double)end, (double)step);
    const double count = ceil(((double)end - (double)start) / (double)step);
    const int64_t n = count > 0 ? (int64_t)count : 0;
    tg_tensor *t = tensor_alloc(__func__, 1, (const int64_t[]){n});
    for (int64_t i = 0; i < n; i++) t->data[i] = (tg_real)((double)start + (double)i * step);
    return t;
}

tg_tensor *tg_tensor_clone(const tg_tensor *t) {
    TG_CHECK_TENSOR(t);
    tg_tensor *c = tg_tensor_from_array(t->ndim, t->shape, t->data);
    c->requires_grad = t->requires_grad;
    memcpy(c->name, t->name, sizeof c->name);
    return c;
}

void tg_tensor_free(tg_tensor *t) {
    if (!t) return;
    if (!t->owned) tg_fail("tg_tensor_free: tensor '%s' belongs to a tape's arena", t->name);
    free(t->data);
    free(t->grad);
    free(t);
}

tg_index *tg_index_new(int ndim, const int64_t *shape) {
    const int64_t numel = tg_shape_check(__func__, ndim, shape);
    tg_index *ix = tg_xcalloc(1, sizeof *ix);
    if (ndim) memcpy(ix->shape, shape, (size_t)ndim * sizeof(int64_t));
    ix->ndim = ndim;
    ix->numel = numel;
    ix->owned = true;
    ix->data = tg_xcalloc((size_t)numel, sizeof(int32_t));
    return ix;
}

tg_index *tg_index_from_array(int ndim, const int64_t *shape, const int32_t *values) {
    if (ndim > 0) TG_CHECK_ARG(shape);
    if (!values && tg_shape_check(__func__, ndim, shape) > 0)
        tg_fail_null_argument(__func__, "values");
    tg_index *ix = tg_index_new(ndim, shape);
    if (ix->numel) memcpy(ix->data, values, (size_t)ix->numel * sizeof(int32_t));
    return ix;
}

void tg_index_free(tg_index *ix) {
    if (!ix) return;
    if (!ix->owned) tg_fail("tg_index_free: index tensor belongs to a tape's arena");
    free(ix->data);
    free(ix);
}

bool tg_shape_equal(const tg_tensor *a, const tg_tensor *b) {
    TG_CHECK_TENSOR(a);
    TG_CHECK_TENSOR(b);
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

int tg_dim_normalize(const char *op, const tg_tensor *t, int dim) {
    TG_CHECK_ARG(op);
    tg_tensor_check(op, "tensor", t);
    const int nd = t->ndim;
    if (dim < -nd || dim >= nd || nd == 0) {
        char desc[160];
        tg_fail("%s: dim %d out of range for tensor %s (expected in [%d, %d])", op, dim,
                tg_tensor_describe(t, desc, sizeof desc), -nd, nd - 1);
    }
    return dim < 0 ? dim + nd : dim;
}

int64_t tg_tensor_size(const tg_tensor *t, int dim) {
    TG_CHECK_TENSOR(t);
    return t->shape[tg_dim_normalize(__func__, t, dim)];
}

char *tg_shape_format(int ndim, const int64_t *shape, char *buf, size_t len) {
    TG_CHECK_ARG(buf);
    if (ndim > 0) TG_CHECK_ARG(shape);
    if (ndim > TG_MAX_DIMS) ndim = TG_MAX_DIMS; /* a damaged header, described in a message */
    size_t used = 0;
    int w = snprintf(buf, len, "(");
    for (int i = 0; i < ndim && w >= 0; i++) {
        used += (size_t)w;
        if (used >= len) break;
        w = snprintf(buf + used, len - used, i ? ", %" PRId64 : "%" PRId64, shape[i]);
    }
    if (w >= 0) used += (size_t)w;
    if (used < len) snprintf(buf + used, len - used, ndim == 1 ? ",)" : ")");
    return buf;
}

char *tg_tensor_describe(const tg_tensor *t, char *buf, size_t len) {
    TG_CHECK_ARG(t);
    TG_CHECK_ARG(buf);
    char shape[96];
    tg_shape_format(t->ndim, t->shape, shape, sizeof shape);
    if (t->name[0])
        snprintf(buf, len, "%s '%.*s'", shape, TG_NAME_MAX - 1, t->name);
    else
        snprintf(buf, len, "%s <unnamed>", shape);
    return buf;
}

void tg_tensor_set_name(tg_tensor *t, const char *name) {
    TG_CHECK_TENSOR(t);
    snprintf(t->name, sizeof t->name, "%s", name ? name : "");
}

tg_tensor *tg_tensor_named(tg_tensor *t, const char *name) {
    TG_CHECK_TENSOR(t);
    tg_tensor_set_name(t, name);
    return t;
}

tg_tensor *tg_tensor_requires_grad(tg_tensor *t, bool on) {
    TG_CHECK_TENSOR(t);
    if (t->node >= 0 && !on)
        tg_fail("tg_tensor_requires_grad: '%s' is the output of an op; only leaves can be changed",
                t->name);
    t->requires_grad = on;
    return t;
}

void tg_tensor_fill(tg_tensor *t, tg_real value) {
    TG_CHECK_TENSOR(t);
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = value;
}

void tg_tensor_copy_from(tg_tensor *dst, const tg_real *values) {
    TG_CHECK_TENSOR(dst);
    if (dst->numel > 0) TG_CHECK_ARG(values);
    if (dst->numel) memcpy(dst->data, values, (size_t)dst->numel * sizeof(tg_real));
}

tg_real tg_item(const tg_tensor *t) {
    TG_CHECK_TENSOR(t);
    if (t->numel != 1) {
        char desc[160];
        tg_fail("tg_item: tensor %s has %" PRId64 " elements, not 1",
                tg_tensor_describe(t, desc, sizeof desc), t->numel);
    }
    return t->data[0];
}

/* Prints nested brackets row by row, PyTorch style, eliding the middle of long dims. */
static void print_level(FILE *f, const tg_tensor *t, int dim, int64_t offset, int indent) {
    const int64_t n = t->shape[dim], edge = 3;
    int64_t stride = 1;
    for (int d = dim + 1; d < t->ndim; d++) stride *= t->shape[d];
    fputc('[', f);
    for (int64_t i = 0; i < n; i++) {
        if (n > 2 * edge + 1 && i == edge) {
            fprintf(f, dim == t->ndim - 1 ? "..., " : "...,\n%*s",
                    dim == t->ndim - 1 ? 0 : indent + 1, "");
            i = n - edge - 1;
            continue;
        }
        if (dim == t->ndim - 1)
            fprintf(f, "% .4f", (double)t->data[offset + i]);
        else
            print_level(f, t, dim + 1, offset + i * stride, indent + 1);
        if (i + 1 < n) {
            if (dim == t->ndim - 1)
                fputs(", ", f);
            else
                fprintf(f, ",\n%*s", indent + 1, "");
        }
    }
    fputc(']', f);
}

void tg_tensor_fprint(FILE *f, const tg_tensor *t) {
    TG_CHECK_ARG(f);
    TG_CHECK_TENSOR(t);
    char shape[96];
    fputs("tensor(", f);
    if (t->ndim == 0)
        fprintf(f, "% .4f", (double)t->data[0]);
    else
        print_level(f, t, 0, 0, 7);
    fprintf(f, ", shape=%s", tg_shape_format(t->ndim, t->shape, shape, sizeof shape));
    if (t->name[0]) fprintf(f, ", name='%s'", t->name);
    if (t->requires_grad) fputs(", requires_grad=True", f);
    fputs(")\n", f);
}

void tg_tensor_print(const tg_tensor *t) {
    TG_CHECK_TENSOR(t);
    tg_tensor_fprint(stdout, t);
}
