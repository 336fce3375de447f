/* Elementwise ops: binary arithmetic with broadcasting (add, sub, mul, div, pow, maximum,
 * minimum), scalar ops, activations, abs, clamp, dropout, masked fill, where, triu and tril.
 * Each forward sits next to its backward.
 *
 * Binary ops run over a broadcast plan (tapegrad/broadcast.h): rows of plain loops in
 * which each operand is either contiguous or a repeated scalar. A broadcast input's
 * gradient is computed in the output's shape and summed back with tg_broadcast_sum_to. */
#include "tensor/vmath.h"

#include "tapegrad/broadcast.h"
#include "tapegrad/kernels.h"
#include "tapegrad/ops.h"

#include <math.h>
#include <string.h>

/* Below PAR_MIN elements a loop runs on one thread (tg_parallel_for with grain CHUNK);
 * parallel loops split independent outputs, so results do not depend on the thread count. */
#define PAR_MIN ((int64_t)1 << 15)
#define CHUNK   ((int64_t)1 << 14)

/* The libm function for tg_real: RF(exp) is exp in float64 builds, expf in float32. */
#ifdef TG_DOUBLE
#define RF(f) f
#else
#define RF(fn) fn##f
#endif

/* ---------------------------------------------------------------------------------------
 * Row kernels: y[i] (=|+=) E(a[i], b[i]) over n elements, where a and b each have stride
 * 1 or 0 (a broadcast scalar). One function per expression, so every loop is plain. */
typedef void (*row_fn)(const tg_real *restrict a, int64_t sa, const tg_real *restrict b, int64_t sb,
                       tg_real *restrict y, int64_t n, tg_real s, bool acc);

#define ROW_LOOP(A, B)                                                                             \
    do {                                                                                           \
        if (acc) {                                                                                 \
            TG_SIMD                                                                                \
            for (int64_t i = 0; i < n; i++) y[i] += EXPR(A, B);                                    \
        } else {                                                                                   \
            TG_SIMD                                                                                \
            for (int64_t i = 0; i < n; i++) y[i] = EXPR(A, B);                                     \
        }                                                                                          \
    } while (0)

#define DEFINE_ROW(name)                                                                           \
    static void name(const tg_real *restrict a, int64_t sa, const tg_real *restrict b, int64_t sb, \
                     tg_real *restrict y, int64_t n, tg_real s, bool acc) {                        \
        (void)s;                                                                                   \
        if (sa && sb)                                                                              \
            ROW_LOOP(a[i], b[i]);                                                                  \
        else if (sa) {                                                                             \
            const tg_real bv = b[0];                                                               \
            ROW_LOOP(a[i], bv);                                                                    \
        } else if (sb) {                                                                           \
            const tg_real av = a[0];                                                               \
            ROW_LOOP(av, b[i]);                                                                    \
        } else {                                                                                   \
            const tg_real av = a[0], bv = b[0];                                                    \
            ROW_LOOP(av, bv);                                                                      \
        }                                                                                          \
    }

#define EXPR(u, v) ((u) + (v))
DEFINE_ROW(row_add)
#undef EXPR
#define EXPR(u, v) ((u) - (v))
DEFINE_ROW(row_sub)
#undef EXPR
#define EXPR(u, v) ((u) * (v))
DEFINE_ROW(row_mul)
#undef EXPR
#define EXPR(u, v) (-((u) * (v)))
DEFINE_ROW(row_neg_mul)
#undef EXPR
#define EXPR(u, v) ((u) / (v))
DEFINE_ROW(row_div)
#undef EXPR
#define EXPR(u, v) ((v) != 0 ? (u) : (tg_real)0) /* keep u where the mask is set */
DEFINE_ROW(row_keep)
#undef EXPR
#define EXPR(u, v) ((v) != 0 ? (tg_real)0 : (u)) /* keep u where the mask is clear */
DEFINE_ROW(row_drop)
#undef EXPR
#define EXPR(u, v) ((v) != 0 ? s : (u)) /* masked fill with s */
DEFINE_ROW(row_fill)
#undef EXPR
#define EXPR(u, v) RF(pow)(u, v)
DEFINE_ROW(row_pow)
#undef EXPR
/* ∂(u^v)/∂u = v·u^(v-1), 0 where v = 0 (PyTorch's pow_backward_self) */
#define EXPR(u, v) ((v) == 0 ? (tg_real)0 : (v)*RF(pow)(u, (v)-1))
DEFINE_ROW(row_pow_dbase)
#undef EXPR
/* ∂(u^v)/∂v = u^v·ln u, 0 where u = 0 and v >= 0 (PyTorch's pow_backward_exponent) */
#define EXPR(u, v) ((u) == 0 && (v) >= 0 ? (tg_real)0 : RF(pow)(u, v) * RF(log)(u))
DEFINE_ROW(row_pow_dexp)
#undef EXPR
/* NaN-propagating max / min: a NaN in either operand wins */
#define EXPR(u, v) ((u) > (v) || (u) != (u) ? (u) : (v))
DEFINE_ROW(row_maximum)
#undef EXPR
#define EXPR(u, v) ((u) < (v) || (u) != (u) ? (u) : (v))
DEFINE_ROW(row_minimum)
#undef EXPR
/* The share of the gradient of u in max/min(u, v): half on a tie, none where u loses */
#define EXPR(u, v) ((u) == (v) ? (tg_real)0.5 : (u) < (v) ? (tg_real)0 : (tg_real)1)
DEFINE_ROW(row_share_unless_lt)
#undef EXPR
#define EXPR(u, v) ((u) == (v) ? (tg_real)0.5 : (u) > (v) ? (tg_real)0 : (tg_real)1)
DEFINE_ROW(row_share_unless_gt)
#undef EXPR
#define EXPR(u, v) ((v) != 0 ? (u) * (v) : (tg_real)0) /* u scaled by v; exactly 0 where v is */
DEFINE_ROW(row_mul_keep)
#undef EXPR

/* One binary job: a row kernel over a two-operand plan. */
typedef struct bcast_job {
    row_fn f;
    const tg_bcast *p;
    const tg_real *a, *b;
    tg_real *y, s;
    bool acc;
} bcast_job;

/* Elements [i0, i1) of a one-dim plan (one long row). */
static void bcast_flat_range(int64_t i0, int64_t i1, void *ctx) {
    const bcast_job *j = ctx;
    const int64_t sa = j->p->stride[0][0], sb = j->p->stride[1][0];
    j->f(j->a + i0 * sa, sa, j->b + i0 * sb, sb, j->y + i0, i1 - i0, j->s, j->acc);
}

/* Rows [r0, r1) of a plan. */
static void bcast_rows_range(int64_t r0, int64_t r1, void *ctx) {
    const bcast_job *j = ctx;
    const tg_bcast *p = j->p;
    const int64_t inner = p->inner;
    const int64_t sa = p->stride[0][p->ndim - 1], sb = p->stride[1][p->ndim - 1];
    int64_t idx[TG_MAX_DIMS], off[TG_BCAST_MAX_OPS];
    tg_bcast_row_start(p, r0, idx, off);
    for (int64_t r = r0; r < r1; r++) {
        j->f(j->a + off[0], sa, j->b + off[1], sb, j->y + r * inner, inner, j->s, j->acc);
        tg_bcast_row_next(p, idx, off);
    }
}

/* Runs a row kernel over a two-operand plan, split between threads for large sizes. */
static void bcast_binary(row_fn f, const tg_bcast *p, const tg_real *a, const tg_real *b,
                         tg_real *y, tg_real s, bool acc) {
    bcast_job job = {f, p, a, b, y, s, acc};
    if (p->ndim == 1) {
        tg_parallel_for(p->numel, CHUNK, bcast_flat_range, &job);
        return;
    }
    const int64_t per = p->inner >= CHUNK ? 1 : CHUNK / p->inner; /* rows per grain */
    tg_parallel_for(p->rows, p->numel >= PAR_MIN ? per : p->rows, bcast_rows_range, &job);
}

/* dx += f(g, w) summed back to x's shape, where g has y's shape and w (data, shape)
 * broadcasts to it. Used by every broadcasting backward. */
static void grad_through(tg_tape *tape, tg_tensor *x, const tg_tensor *y, row_fn f,
                         const tg_real *w, int w_ndim, const int64_t *w_shape) {
    tg_real *dx = tg_tape_grad(tape, x);
    if (!dx) return;
    tg_bcast p;
    tg_bcast_init(&p, y->ndim, y->shape, 2, (const int[]){y->ndim, w_ndim},
                  (const int64_t *const[]){y->shape, w_shape});
    if (x->numel == y->numel) { /* x has y's layout: accumulate in place */
        bcast_binary(f, &p, y->grad, w, dx, 0, true);
        return;
    }
    tg_real *tmp = tg_tape_alloc(tape, (size_t)y->numel * sizeof(tg_real));
    bcast_binary(f, &p, y->grad, w, tmp, 0, false);
    tg_broadcast_sum_to(dx, x->ndim, x->shape, tmp, y->ndim, y->shape, 1);
}

/* dx += alpha * g summed back to x's shape */
static void grad_sum(tg_tape *tape, tg_tensor *x, const tg_tensor *y, tg_real alpha) {
    tg_real *dx = tg_tape_grad(tape, x);
    if (dx) tg_broadcast_sum_to(dx, x->ndim, x->shape, y->grad, y->ndim, y->shape, alpha);
}

/* Forward of a broadcasting binary op: validates, allocates y, runs f over the plan. */
static tg_tensor *binary_forward(tg_tape *tape, const char *name, row_fn f, tg_tensor *a,
                                 tg_tensor *b) {
    const tg_tensor *ops[2] = {a, b};
    int64_t shape[TG_MAX_DIMS];
    const int nd = tg_broadcast_tensors(name, 2, ops, shape);
    tg_tensor *y = tg_tape_tensor(tape, nd, shape);
    tg_bcast p;
    tg_bcast_init_tensors(&p, nd, shape, 2, ops);
    bcast_binary(f, &p, a->data, b->data, y->data, 0, false);
    return y;
}

#define RECORD1(tape, op, bw, x, y)                                                                \
    tg_tape_record(tape, op, bw, 1, (tg_tensor *[]){x}, 1, (tg_tensor *[]){y})
#define RECORD2(tape, op, bw, a, b, y)                                                             \
    tg_tape_record(tape, op, bw, 2, (tg_tensor *[]){a, b}, 1, (tg_tensor *[]){y})

/* ---------------------------------------------------------------------------------------
 * add, sub, mul, div */

/* y = a + b: da += Σ dy, db += Σ dy (each summed over the dims it was broadcast along) */
static void add_backward(tg_tape *tape, tg_node *node) {
    grad_sum(tape, node->in[0], node->out[0], 1);
    grad_sum(tape, node->in[1], node->out[0], 1);
}

tg_tensor *tg_add(tg_tape *t, tg_tensor *a, tg_tensor *b) {
    TG_CHECK_OP(t, a, b);
    tg_tensor *y = binary_forward(t, "tg_add", row_add, a, b);
    RECORD2(t, "add", add_backward, a, b, y);
    return y;
}

/* y = a - b: da += Σ dy, db -= Σ dy */
static void sub_backward(tg_tape *tape, tg_node *node) {
    grad_sum(tape, node->in[0], node->out[0], 1);
    grad_sum(tape, node->in[1], node->out[0], -1);
}

tg_tensor *tg_sub(tg_tape *t, tg_tensor *a, tg_tensor *b) {
    TG_CHECK_OP(t, a, b);
    tg_tensor *y = binary_forward(t, "tg_sub", row_sub, a, b);
    RECORD2(t, "sub", sub_backward, a, b, y);
    return y;
}

/* y = a ⊙ b: da += Σ dy ⊙ b, db += Σ dy ⊙ a */
static void mul_backward(tg_tape *tape, tg_node *node) {
    tg_tensor *a = node->in[0], *b = node->in[1];
    const tg_tensor *y = node->out[0];
    grad_through(tape, a, y, row_mul, b->data, b->ndim, b->shape);
    grad_through(tape, b, y, row_mul, a->data, a->ndim, a->shape);
}

tg_tensor *tg_mul(tg_tape *t, tg_tensor *a, tg_tensor *b) {
    TG_CHECK_OP(t, a, b);
    tg_tensor *y = binary_forward(t, "tg_mul", row_mul, a, b);
    RECORD2(t, "mul", mul_backward, a, b, y);
    return y;
}

/* y = a / b: da += Σ dy / b; db += Σ -dy ⊙ a / b² = Σ -dy ⊙ (y / b), PyTorch's
 * evaluation order -grad * ((a / b) / b) */
static void div_backward(tg_tape *tape, tg_node *node) {
    tg_tensor *a = node->in[0], *b = node->in[1];
    const tg_tensor *y = node->out[0];
    grad_through(tape, a, y, row_div, b->data, b->ndim, b->shape);
    if (!b->requires_grad) return;
    tg_real *q = tg_tape_alloc(tape, (size_t)y->numel * sizeof(tg_real)); /* q = y / b */
    tg_bcast p;
    tg_bcast_init_tensors(&p, y->ndim, y->shape, 2, (const tg_tensor *[]){y, b});
    bcast_binary(row_div, &p, y->data, b->data, q, 0, false);
    grad_through(tape, b, y, row_neg_mul, q, y->ndim, y->shape);
}

tg_tensor *tg_div(tg_tape *t, tg_tensor *a, tg_tensor *b) {
    TG_CHECK_OP(t, a, b);
    tg_tensor *y = binary_forward(t, "tg_div", row_div, a, b);
    RECORD2(t, "div", div_backward, a, b, y);
    return y;
}

/* ---------------------------------------------------------------------------------------
 * pow (tensor exponent), maximum, minimum */

/* The backward of a binary op whose local derivatives ∂y/∂a and ∂y/∂b are elementwise
 * functions of (a, b): each is computed in y's shape into one scratch row, then
 * d(input) += dy ⊙ local through `mul` (summed back over broadcast dims). */
static void local_grads_backward(tg_tape *tape, tg_node *node, row_fn local_a, row_fn local_b,
                                 row_fn mul) {
    tg_tensor *a = node->in[0], *b = node->in[1];
    const tg_tensor *y = node->out[0];
    tg_bcast p;
    tg_bcast_init_tensors(&p, y->ndim, y->shape, 2, (const tg_tensor *[]){a, b});
    tg_real *local = tg_tape_alloc(tape, (size_t)y->numel * sizeof(tg_real));
    if (a->requires_grad) {
        bcast_binary(local_a, &p, a->data, b->data, local, 0, false);
        grad_through(tape, a, y, mul, local, y->ndim, y->shape);
    }
    if (b->requires_grad) {
        bcast_binary(local_b, &p, a->data, b->data, local, 0, false);
        grad_through(tape, b, y, mul, local, y->ndim, y->shape);
    }
}

/* y = a^b: da += Σ dy ⊙ b·a^(b-1), 0 where b = 0; db += Σ dy ⊙ a^b·ln a, 0 where a = 0 and
 * b >= 0. These are PyTorch's rules: they keep 0^0 and 0^b (b > 0) free of NaN, while a
 * negative base gives db = NaN (ln a), as in PyTorch. a^b is recomputed with the forward's
 * libm call, so a^b·ln a equals PyTorch's result·ln a. */
static void pow_backward(tg_tape *tape, tg_node *node) {
    local_grads_backward(tape, node, row_pow_dbase, row_pow_dexp, row_mul);
}

tg_tensor *tg_pow(tg_tape *t, tg_tensor *a, tg_tensor *b) {
    TG_CHECK_OP(t, a, b);
    tg_tensor *y = binary_forward(t, "tg_pow", row_pow, a, b);
    RECORD2(t, "pow", pow_backward, a, b, y);
    return y;
}

/* y = max(a, b) (min: the same with the comparisons turned round). Where a wins, da += dy;
 * where b wins, db += dy; on a tie each gets dy/2 (PyTorch's rule since 1.7: a subgradient
 * that treats both alike). A NaN in either operand makes y NaN and passes dy to both. The
 * shares (1, ½, 0) are computed in y's shape; dy·share is exactly 0 where the share is. */
static void maxmin_backward(tg_tape *tape, tg_node *node, row_fn share_a, row_fn share_b) {
    local_grads_backward(tape, node, share_a, share_b, row_mul_keep);
}

/* maximum: a loses where a < b, b loses where a > b */
static void maximum_backward(tg_tape *tape, tg_node *node) {
    maxmin_backward(tape, node, row_share_unless_lt, row_share_unless_gt);
}

tg_tensor *tg_maximum(tg_tape *t, tg_tensor *a, tg_tensor *b) {
    TG_CHECK_OP(t, a, b);
    tg_tensor *y = binary_forward(t, "tg_maximum", row_maximum, a, b);
    RECORD2(t, "maximum", maximum_backward, a, b, y);
    return y;
}

/* minimum: a loses where a > b, b loses where a < b */
static void minimum_backward(tg_tape *tape, tg_node *node) {
    maxmin_backward(tape, node, row_share_unless_gt, row_share_unless_lt);
}

tg_tensor *tg_minimum(tg_tape *t, tg_tensor *a, tg_tensor *b) {
    TG_CHECK_OP(t, a, b);
    tg_tensor *y = binary_forward(t, "tg_minimum", row_minimum, a, b);
    RECORD2(t, "minimum", minimum_backward, a, b, y);
    return y;
}

/* ---------------------------------------------------------------------------------------
 * neg and scalar ops */

/* An elementwise job: out[i] (=|+=) EXPR over [i0, i1), split between threads for large
 * sizes. x, y and g are an op's input, output and output gradient; s a scalar argument. */
typedef struct unary_job {
    const tg_real *x, *y, *g;
    tg_real *out, s;
} unary_job;

/* DEFINE_UNARY(name, EXPR of xi, s) and DEFINE_UNARY_GRAD(name, EXPR of gi, xi, yi, s)
 * define range kernels name(i0, i1, job) writing, resp. accumulating into, out. */
#define DEFINE_UNARY(name, EXPR)                                                                   \
    TG_VEC_KERNEL static void name(int64_t i0, int64_t i1, void *ctx) {                            \
        const unary_job *j = ctx;                                                                  \
        const tg_real *restrict x = j->x, s = j->s;                                                \
        tg_real *restrict out = j->out;                                                            \
        (void)s;                                                                                   \
        for (int64_t i = i0; i < i1; i++) {                                                        \
            const tg_real xi = x[i];                                                               \
            out[i] = (EXPR);                                                                       \
        }                                                                                          \
    }
#define DEFINE_UNARY_GRAD(name, EXPR)                                                              \
    TG_VEC_KERNEL static void name(int64_t i0, int64_t i1, void *ctx) {                            \
        const unary_job *j = ctx;                                                                  \
        const tg_real *restrict x = j->x, *restrict y = j->y, *restrict g = j->g, s = j->s;        \
        tg_real *restrict out = j->out;                                                            \
        (void)s, (void)x, (void)y;                                                                 \
        for (int64_t i = i0; i < i1; i++) {                                                        \
            const tg_real xi = x[i], yi = y[i], gi = g[i];                                         \
            (void)xi, (void)yi;                                                                    \
            out[i] += (EXPR);                                                                      \
        }                                                                                          \
    }

/* y = f(x) for a new y in the arena */
static tg_tensor *unary_forward(tg_tape *t, tg_tensor *x, tg_range_fn f, tg_real s) {
    tg_tensor *y = tg_tape_tensor_like(t, x);
    unary_job job = {.x = x->data, .out = y->data, .s = s};
    tg_parallel_for(x->numel, CHUNK, f, &job);
    return y;
}

/* dx += f(dy, x, y) for the node's one input */
static void unary_backward(tg_tape *tape, tg_node *node, tg_range_fn f) {
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    if (!dx) return;
    const tg_tensor *y = node->out[0];
    unary_job job = {node->in[0]->data, y->data, y->grad, dx, (tg_real)node->farg[0]};
    tg_parallel_for(y->numel, CHUNK, f, &job);
}

#define RECORD_UNARY(t, op, bw, x, y, s)                                                           \
    do {                                                                                           \
        tg_node *node_ = RECORD1(t, op, bw, x, y);                                                 \
        if (node_) node_->farg[0] = (double)(s);                                                   \
    } while (0)

/* y = -x: dx -= dy */
static void neg_backward(tg_tape *tape, tg_node *node) {
    grad_sum(tape, node->in[0], node->out[0], -1);
}

DEFINE_UNARY(neg_rows, -xi)

tg_tensor *tg_neg(tg_tape *t, tg_tensor *x) {
    TG_CHECK_OP(t, x);
    tg_tensor *y = unary_forward(t, x, neg_rows, 0);
    RECORD1(t, "neg", neg_backward, x, y);
    return y;
}

/* y = x + s: dx += dy */
static void add_scalar_backward(tg_tape *tape, tg_node *node) {
    grad_sum(tape, node->in[0], node->out[0], 1);
}

DEFINE_UNARY(add_scalar_rows, xi + s)

tg_tensor *tg_add_scalar(tg_tape *t, tg_tensor *x, tg_real s) {
    TG_CHECK_OP(t, x);
    tg_tensor *y = unary_forward(t, x, add_scalar_rows, s);
    RECORD_UNARY(t, "add_scalar", add_scalar_backward, x, y, s);
    return y;
}

/* y = s·x: dx += s·dy */
DEFINE_UNARY(mul_scalar_rows, xi *s)
DEFINE_UNARY_GRAD(mul_scalar_grad_rows, gi *s)
static void mul_scalar_backward(tg_tape *tape, tg_node *node) {
    unary_backward(tape, node, mul_scalar_grad_rows);
}

tg_tensor *tg_mul_scalar(tg_tape *t, tg_tensor *x, tg_real s) {
    TG_CHECK_OP(t, x);
    tg_tensor *y = unary_forward(t, x, mul_scalar_rows, s);
    RECORD_UNARY(t, "mul_scalar", mul_scalar_backward, x, y, s);
    return y;
}

/* x^p over an array, with PyTorch's special cases (x·x for 2, sqrt for 0.5, ...), each
 * case its own loop. */
#define POW_LOOP(EXPR_OF_XI)                                                                       \
    do {                                                                                           \
        TG_SIMD                                                                                    \
        for (int64_t i = 0; i < n; i++) {                                                          \
            const tg_real xi = x[i];                                                               \
            (void)xi;                                                                              \
            y[i] = (EXPR_OF_XI);                                                                   \
        }                                                                                          \
    } while (0)

static void pow_array(const tg_real *restrict x, tg_real *restrict y, int64_t n, tg_real p) {
    if (p == 1)
        POW_LOOP(xi);
    else if (p == 2)
        POW_LOOP(xi * xi);
    else if (p == 3)
        POW_LOOP(xi * xi * xi);
    else if (p == (tg_real)0.5)
        POW_LOOP(RF(sqrt)(xi));
    else if (p == (tg_real)-0.5)
        POW_LOOP(1 / RF(sqrt)(xi));
    else if (p == -1)
        POW_LOOP(1 / xi);
    else if (p == -2)
        POW_LOOP(1 / (xi * xi));
    else if (p == 0)
        POW_LOOP((tg_real)1);
    else
        POW_LOOP(RF(pow)(xi, p));
}

/* y = x^p: dx += dy ⊙ p·x^(p-1) (nothing for p = 0) */
static void pow_scalar_backward(tg_tape *tape, tg_node *node) {
    tg_tensor *x = node->in[0];
    const tg_tensor *y = node->out[0];
    tg_real *restrict dx = tg_tape_grad(tape, x);
    const tg_real p = (tg_real)node->farg[0];
    if (!dx || p == 0) return;
    tg_real *restrict d = tg_tape_alloc(tape, (size_t)x->numel * sizeof(tg_real));
    pow_array(x->data, d, x->numel, p - 1);
    const tg_real *restrict g = y->grad;
    TG_SIMD
    for (int64_t i = 0; i < x->numel; i++) dx[i] += g[i] * (p * d[i]);
}

tg_tensor *tg_pow_scalar(tg_tape *t, tg_tensor *x, tg_real p) {
    TG_CHECK_OP(t, x);
    tg_tensor *y = tg_tape_tensor_like(t, x);
    pow_array(x->data, y->data, x->numel, p);
    tg_node *node = RECORD1(t, "pow_scalar", pow_scalar_backward, x, y);
    if (node) node->farg[0] = (double)p;
    return y;
}

/* ---------------------------------------------------------------------------------------
 * unary functions: each a forward kernel, a gradient kernel and the op */
#define UNARY_OP(fname, opname, FWD, GRAD)                                                         \
    DEFINE_UNARY(fname##_rows, FWD)                                                                \
    DEFINE_UNARY_GRAD(fname##_grad_rows, GRAD)                                                     \
    static void fname##_backward(tg_tape *tape, tg_node *node) {                                   \
        unary_backward(tape, node, fname##_grad_rows);                                             \
    }                                                                                              \
    tg_tensor *tg_##fname(tg_tape *t, tg_tensor *x) {                                              \
        TG_CHECK_OP(t, x);                                                                         \
        tg_tensor *y = unary_forward(t, x, fname##_rows, 0);                                       \
        RECORD1(t, opname, fname##_backward, x, y);                                                \
        return y;                                                                                  \
    }

/* y = e^x: dx += dy ⊙ y (libm: tg_vexp is only for x <= 88) */
UNARY_OP(exp, "exp", RF(exp)(xi), gi *yi)
/* y = ln x: dx += dy / x */
UNARY_OP(log, "log", RF(log)(xi), gi / xi)
/* y = √x: dy/dx = 1 / (2√x), so dx += dy / (2y) */
UNARY_OP(sqrt, "sqrt", RF(sqrt)(xi), gi / (2 * yi))
/* y = tanh x: dy/dx = 1 - tanh² x, so dx += dy ⊙ (1 - y²) */
UNARY_OP(tanh, "tanh", tg_vtanh(xi), gi *(1 - yi * yi))
/* y = σ(x) = 1 / (1 + e^-x): dy/dx = σ(x)(1 - σ(x)), so dx += dy ⊙ y(1 - y).
 * For x → -∞, e^-x saturates and y → 0; for x → +∞, y = 1: no NaN. */
UNARY_OP(sigmoid, "sigmoid", tg_vsigmoid(xi), gi *((1 - yi) * yi))
/* y = max(x, 0), written x < 0 ? 0 : x so that NaN and -0.0 pass through as in PyTorch.
 * dx += dy where y > 0 (PyTorch's threshold_backward on the output: 0 where y <= 0). */
UNARY_OP(relu, "relu", xi < 0 ? (tg_real)0 : xi, yi <= 0 ? (tg_real)0 : gi)

/* y = |x|: dx += dy ⊙ sign(x), with sign(0) = 0 (and 0 for NaN), as PyTorch's sgn */
UNARY_OP(abs, "abs", RF(fabs)(xi), gi *(tg_real)((xi > 0) - (xi < 0)))

/* y = min(max(x, lo), hi): x below lo becomes lo, then anything above hi becomes hi (so with
 * lo > hi every element is hi, as in PyTorch); NaN stays NaN. dx += dy where lo <= x <= hi,
 * boundaries included (PyTorch's clamp_backward), nothing elsewhere nor for NaN. */
typedef struct clamp_job {
    const tg_real *x, *g;
    tg_real *out, lo, hi;
} clamp_job;

TG_VEC_KERNEL static void clamp_rows(int64_t i0, int64_t i1, void *ctx) {
    const clamp_job *j = ctx;
    const tg_real *restrict x = j->x, lo = j->lo, hi = j->hi;
    tg_real *restrict out = j->out;
    for (int64_t i = i0; i < i1; i++) {
        const tg_real v = x[i] < lo ? lo : x[i];
        out[i] = v > hi ? hi : v;
    }
}

TG_VEC_KERNEL static void clamp_grad_rows(int64_t i0, int64_t i1, void *ctx) {
    const clamp_job *j = ctx;
    const tg_real *restrict x = j->x, *restrict g = j->g, lo = j->lo, hi = j->hi;
    tg_real *restrict out = j->out;
    for (int64_t i = i0; i < i1; i++) out[i] += x[i] >= lo && x[i] <= hi ? g[i] : (tg_real)0;
}

static void clamp_backward(tg_tape *tape, tg_node *node) {
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    if (!dx) return;
    const tg_tensor *y = node->out[0];
    clamp_job job = {node->in[0]->data, y->grad, dx, (tg_real)node->farg[0],
                     (tg_real)node->farg[1]};
    tg_parallel_for(y->numel, CHUNK, clamp_grad_rows, &job);
}

tg_tensor *tg_clamp(tg_tape *t, tg_tensor *x, tg_real min, tg_real max) {
    TG_CHECK_OP(t, x);
    if (isnan(min) || isnan(max)) {
        char desc[160];
        tg_fail("tg_clamp: bounds [%g, %g] must not be NaN (input %s; -INFINITY / INFINITY "
                "leave a side open)",
                (double)min, (double)max, tg_tensor_describe(x, desc, sizeof desc));
    }
    tg_tensor *y = tg_tape_tensor_like(t, x);
    clamp_job job = {x->data, NULL, y->data, min, max};
    tg_parallel_for(x->numel, CHUNK, clamp_rows, &job);
    tg_node *node = RECORD1(t, "clamp", clamp_backward, x, y);
    if (node) node->farg[0] = (double)min, node->farg[1] = (double)max;
    return y;
}

/* GELU, exact: y = x·Φ(x), Φ(x) = ½(1 + erf(x/√2)); dy/dx = Φ(x) + x·φ(x) with
 * φ(x) = e^(-x²/2) / √(2π).
 * GELU, tanh form: y = ½x(1 + tanh u), u = β(x + κx³), β = √(2/π), κ = 0.044715;
 * dy/dx = ½(1 + tanh u) + ½x(1 - tanh² u)·β(1 + 3κx²). */
#define GELU_ALPHA ((tg_real)M_SQRT1_2)                      /* 1/√2 */
#define GELU_PDF   ((tg_real)(M_2_SQRTPI * M_SQRT1_2 * 0.5)) /* 1/√(2π) */
#define GELU_BETA  ((tg_real)(M_SQRT2 * M_2_SQRTPI * 0.5))   /* √(2/π) */
#define GELU_KAPPA ((tg_real)0.044715)

DEFINE_UNARY(gelu_erf_rows, xi *(tg_real)0.5 * (1 + RF(erf)(xi * GELU_ALPHA)))
DEFINE_UNARY_GRAD(gelu_erf_grad_rows, gi *((tg_real)0.5 * (1 + RF(erf)(xi * GELU_ALPHA)) +
                                           xi * (GELU_PDF * RF(exp)(xi * xi * (tg_real)-0.5))))
static void gelu_erf_backward(tg_tape *tape, tg_node *node) {
    unary_backward(tape, node, gelu_erf_grad_rows);
}

static inline tg_real gelu_tanh_grad(tg_real x) {
    const tg_real x2 = x * x, th = RF(tanh)(GELU_BETA * (x + GELU_KAPPA * (x2 * x)));
    const tg_real left = (tg_real)0.5 * x, right = 1 + th;
    const tg_real du = GELU_BETA * (1 + 3 * GELU_KAPPA * x2);
    return (tg_real)0.5 * right + left * (1 - th * th) * du;
}

DEFINE_UNARY(gelu_tanh_rows,
             (tg_real)0.5 * xi * (1 + RF(tanh)(GELU_BETA * (xi + GELU_KAPPA * (xi * xi * xi)))))
DEFINE_UNARY_GRAD(gelu_tanh_grad_rows, gi *gelu_tanh_grad(xi))
static void gelu_tanh_backward(tg_tape *tape, tg_node *node) {
    unary_backward(tape, node, gelu_tanh_grad_rows);
}

tg_tensor *tg_gelu(tg_tape *t, tg_tensor *x, tg_gelu_approximate approximate) {
    TG_CHECK_OP(t, x);
    if (approximate != TG_GELU_ERF && approximate != TG_GELU_TANH)
        tg_fail("tg_gelu: unknown approximation %d (TG_GELU_ERF or TG_GELU_TANH)",
                (int)approximate);
    if (approximate == TG_GELU_ERF) {
        tg_tensor *y = unary_forward(t, x, gelu_erf_rows, 0);
        RECORD1(t, "gelu", gelu_erf_backward, x, y);
        return y;
    }
    tg_tensor *y = unary_forward(t, x, gelu_tanh_rows, 0);
    RECORD1(t, "gelu_tanh", gelu_tanh_backward, x, y);
    return y;
}

/* ---------------------------------------------------------------------------------------
 * dropout: y = x ⊙ m with m_i = 1/(1-p) (kept, probability 1-p) or 0; dx += dy ⊙ m.
 * As PyTorch, the scale is 1/(1-p) rounded to the working precision and p = 1 multiplies
 * by zeros. The mask is not PyTorch's (its bits cannot be matched anyway): m_i comes from
 * tensor/vmath.h's counter-based generator, keyed by two draws from rng per call, so it
 * is recomputed in the backward rather than stored, and any thread count gives the same
 * mask. The key is kept in the node: iarg[0], iarg[1] (k0, k1), iarg[2] (threshold). */
typedef struct dropout_job {
    tg_dropout_key key;
    const tg_real *x;
    tg_real *out;
} dropout_job;

TG_VEC_KERNEL static void dropout_rows(int64_t i0, int64_t i1, void *ctx) {
    const dropout_job *j = ctx;
    tg_dropout_apply(&j->key, j->x, j->out, i0, i1, false);
}

TG_VEC_KERNEL static void dropout_grad_rows(int64_t i0, int64_t i1, void *ctx) {
    const dropout_job *j = ctx;
    tg_dropout_apply(&j->key, j->x, j->out, i0, i1, true);
}

static void dropout_backward(tg_tape *tape, tg_node *node) {
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    if (!dx) return;
    const double keep = 1.0 - node->farg[0];
    dropout_job job = {{(uint32_t)node->iarg[0], (uint32_t)node->iarg[1], (int32_t)node->iarg[2],
                        keep == 0 ? 0 : (tg_real)1 / (tg_real)keep},
                       node->out[0]->grad,
                       dx};
    tg_parallel_for(node->out[0]->numel, CHUNK, dropout_grad_rows, &job);
}

tg_tensor *tg_dropout(tg_tape *t, tg_tensor *x, tg_real p, bool training, tg_rng *rng) {
    TG_CHECK_OP(t, x);
    if (!(p >= 0 && p <= 1)) {
        char desc[160];
        tg_fail("tg_dropout: p must be in [0, 1], got %g (input %s)", (double)p,
                tg_tensor_describe(x, desc, sizeof desc));
    }
    if (!training || p == 0) return x;
    dropout_job job = {tg_dropout_key_draw(rng, (double)p), x->data, NULL};
    tg_tensor *y = tg_tape_tensor_like(t, x);
    job.out = y->data;
    tg_parallel_for(x->numel, CHUNK, dropout_rows, &job);
    tg_node *node = RECORD1(t, "dropout", dropout_backward, x, y);
    if (node) {
        node->iarg[0] = job.key.k0, node->iarg[1] = job.key.k1, node->iarg[2] = job.key.threshold;
        node->farg[0] = (double)p;
    }
    return y;
}

/* ---------------------------------------------------------------------------------------
 * masked_fill and where (no gradient to the mask / condition, which is kept in `saved`) */

/* y = mask ? value : x: dx += Σ dy where the mask is clear */
static void masked_fill_backward(tg_tape *tape, tg_node *node) {
    const tg_tensor *mask = node->saved;
    grad_through(tape, node->in[0], node->out[0], row_drop, mask->data, mask->ndim, mask->shape);
}

tg_tensor *tg_masked_fill(tg_tape *t, tg_tensor *x, const tg_tensor *mask, tg_real value) {
    TG_CHECK_OP(t, x, mask);
    const tg_tensor *ops[2] = {x, mask};
    int64_t shape[TG_MAX_DIMS];
    const int nd = tg_broadcast_tensors("tg_masked_fill", 2, ops, shape);
    tg_tensor *y = tg_tape_tensor(t, nd, shape);
    tg_bcast p;
    tg_bcast_init_tensors(&p, nd, shape, 2, ops);
    bcast_binary(row_fill, &p, x->data, mask->data, y->data, value, false);
    tg_node *node = RECORD1(t, "masked_fill", masked_fill_backward, x, y);
    if (node) {
        node->saved = (void *)mask;
        node->farg[0] = (double)value;
    }
    return y;
}

/* y = cond ? a : b: da += Σ dy where cond is set, db += Σ dy where it is clear */
static void where_backward(tg_tape *tape, tg_node *node) {
    const tg_tensor *c = node->saved, *y = node->out[0];
    grad_through(tape, node->in[0], y, row_keep, c->data, c->ndim, c->shape);
    grad_through(tape, node->in[1], y, row_drop, c->data, c->ndim, c->shape);
}

tg_tensor *tg_where(tg_tape *t, const tg_tensor *cond, tg_tensor *a, tg_tensor *b) {
    TG_CHECK_OP(t, cond, a, b);
    const tg_tensor *ops[3] = {cond, a, b};
    int64_t shape[TG_MAX_DIMS];
    const int nd = tg_broadcast_tensors("tg_where", 3, ops, shape);
    tg_tensor *y = tg_tape_tensor(t, nd, shape);
    tg_bcast p;
    tg_bcast_init_tensors(&p, nd, shape, 3, ops);
    const int last = p.ndim - 1;
    const int64_t sc = p.stride[0][last], sa = p.stride[1][last], sb = p.stride[2][last];
    int64_t idx[TG_MAX_DIMS] = {0}, off[TG_BCAST_MAX_OPS] = {0};
    for (int64_t r = 0; r < p.rows; r++) {
        const tg_real *c = cond->data + off[0], *av = a->data + off[1], *bv = b->data + off[2];
        tg_real *out = y->data + r * p.inner;
        for (int64_t i = 0; i < p.inner; i++) out[i] = c[i * sc] != 0 ? av[i * sa] : bv[i * sb];
        tg_bcast_row_next(&p, idx, off);
    }
    tg_node *node = RECORD2(t, "where", where_backward, a, b, y);
    if (node) node->saved = (void *)cond;
    return y;
}

/* ---------------------------------------------------------------------------------------
 * triu / tril over the last two dims: y[..., i, j] = x[..., i, j] where j - i >= k (triu) or
 * j - i <= k (tril), else 0; dx += dy through the same pattern. A row i keeps the columns
 * [i + k, C) (triu) or [0, i + k + 1) (tril). iarg[0] = k, iarg[1] = 1 for triu. */
typedef struct tri_job {
    const tg_real *src;
    tg_real *dst;
    int64_t R, C, k;
    bool upper, acc;
} tri_job;

static void tri_rows(int64_t r0, int64_t r1, void *ctx) {
    const tri_job *j = ctx;
    const int64_t C = j->C;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t i = r % j->R;
        int64_t lo = j->upper ? i + j->k : 0, hi = j->upper ? C : i + j->k + 1;
        lo = lo < 0 ? 0 : lo > C ? C : lo;
        hi = hi < lo ? lo : hi > C ? C : hi;
        const tg_real *restrict s = j->src + r * C;
        tg_real *restrict d = j->dst + r * C;
        if (j->acc) {
            for (int64_t c = lo; c < hi; c++) d[c] += s[c];
            continue;
        }
        for (int64_t c = 0; c < lo; c++) d[c] = 0;
        for (int64_t c = lo; c < hi; c++) d[c] = s[c];
        for (int64_t c = hi; c < C; c++) d[c] = 0;
    }
}

static void tri_apply(const tg_tensor *shape_of, const tg_real *src, tg_real *dst, int64_t k,
                      bool upper, bool acc) {
    const int64_t R = shape_of->shape[shape_of->ndim - 2], C = shape_of->shape[shape_of->ndim - 1];
    const int64_t rows = C ? shape_of->numel / C : 0;
    /* |k| beyond the matrix keeps all or nothing: clamping it keeps i + k from overflowing */
    tri_job job = {src, dst, R, C, k < -R ? -R : k > C ? C : k, upper, acc};
    const int64_t per = C >= CHUNK ? 1 : CHUNK / (C ? C : 1);
    tg_parallel_for(rows, shape_of->numel >= PAR_MIN ? per : rows, tri_rows, &job);
}

static void tri_backward(tg_tape *tape, tg_node *node) {
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    const tg_tensor *y = node->out[0];
    if (dx) tri_apply(y, y->grad, dx, node->iarg[0], node->iarg[1] != 0, true);
}

static tg_tensor *tri(tg_tape *t, tg_tensor *x, int64_t k, bool upper) {
    if (x->ndim < 2) {
        char desc[160];
        tg_fail("%s: input %s must have at least 2 dims (it works on the last two)",
                upper ? "tg_triu" : "tg_tril", tg_tensor_describe(x, desc, sizeof desc));
    }
    tg_tensor *y = tg_tape_tensor_like(t, x);
    tri_apply(x, x->data, y->data, k, upper, false);
    tg_node *node = RECORD1(t, upper ? "triu" : "tril", tri_backward, x, y);
    if (node) node->iarg[0] = k, node->iarg[1] = upper;
    return y;
}

tg_tensor *tg_triu(tg_tape *t, tg_tensor *x, int64_t diagonal) {
    TG_CHECK_OP(t, x);
    return tri(t, x, diagonal, true);
}
tg_tensor *tg_tril(tg_tape *t, tg_tensor *x, int64_t diagonal) {
    TG_CHECK_OP(t, x);
    return tri(t, x, diagonal, false);
}
