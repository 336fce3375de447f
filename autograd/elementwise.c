/* Elementwise ops: binary arithmetic with broadcasting, scalar ops, activations, dropout,
 * masked fill and where. Each forward sits next to its backward.
 *
 * Binary ops run over a broadcast plan (tapegrad/broadcast.h): rows of plain loops in
 * which each operand is either contiguous or a repeated scalar. A broadcast input's
 * gradient is computed in the output's shape and summed back with tg_broadcast_sum_to. */
#include "tapegrad/broadcast.h"
#include "tapegrad/ops.h"

#include <math.h>
#include <string.h>

#ifdef _OPENMP
#define OMP(x) _Pragma(#x)
#else
#define OMP(x)
#endif

/* Below this many elements a loop runs on one thread; parallel loops split independent
 * outputs, so results do not depend on the thread count. */
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
            OMP(omp simd)                                                                          \
            for (int64_t i = 0; i < n; i++) y[i] += EXPR(A, B);                                    \
        } else {                                                                                   \
            OMP(omp simd)                                                                          \
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

/* Runs a row kernel over a two-operand plan, in chunks of rows (threads for large sizes). */
static void bcast_binary(row_fn f, const tg_bcast *p, const tg_real *a, const tg_real *b,
                         tg_real *y, tg_real s, bool acc) {
    const int64_t inner = p->inner;
    const int64_t sa = p->stride[0][p->ndim - 1], sb = p->stride[1][p->ndim - 1];
    if (p->ndim == 1) { /* one long row */
        const int64_t n = p->numel, chunks = n >= PAR_MIN ? (n + CHUNK - 1) / CHUNK : 1;
        const int64_t len = (n + chunks - 1) / chunks;
        OMP(omp parallel for schedule(static) if (chunks > 1))
        for (int64_t c = 0; c < chunks; c++) {
            const int64_t i0 = c * len, m = n - i0 < len ? n - i0 : len;
            f(a + i0 * sa, sa, b + i0 * sb, sb, y + i0, m, s, acc);
        }
        return;
    }
    const int64_t per = inner >= CHUNK ? 1 : CHUNK / inner;
    const int64_t chunks = (p->rows + per - 1) / per;
    OMP(omp parallel for schedule(static) if (chunks > 1 && p->numel >= PAR_MIN))
    for (int64_t c = 0; c < chunks; c++) {
        int64_t idx[TG_MAX_DIMS], off[TG_BCAST_MAX_OPS];
        const int64_t r1 = (c + 1) * per < p->rows ? (c + 1) * per : p->rows;
        tg_bcast_row_start(p, c * per, idx, off);
        for (int64_t r = c * per; r < r1; r++) {
            f(a + off[0], sa, b + off[1], sb, y + r * inner, inner, s, acc);
            tg_bcast_row_next(p, idx, off);
        }
    }
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
    tg_tensor *y = binary_forward(t, "tg_div", row_div, a, b);
    RECORD2(t, "div", div_backward, a, b, y);
    return y;
}

/* ---------------------------------------------------------------------------------------
 * neg and scalar ops */

/* y = -x: dx -= dy */
static void neg_backward(tg_tape *tape, tg_node *node) {
    grad_sum(tape, node->in[0], node->out[0], -1);
}

tg_tensor *tg_neg(tg_tape *t, tg_tensor *x) {
    tg_tensor *y = tg_tape_tensor_like(t, x);
    const tg_real *restrict xd = x->data;
    tg_real *restrict yd = y->data;
    const int64_t n = x->numel;
    OMP(omp parallel for simd schedule(static) if (n >= PAR_MIN))
    for (int64_t i = 0; i < n; i++) yd[i] = -xd[i];
    RECORD1(t, "neg", neg_backward, x, y);
    return y;
}

/* y = x + s: dx += dy */
static void add_scalar_backward(tg_tape *tape, tg_node *node) {
    grad_sum(tape, node->in[0], node->out[0], 1);
}

tg_tensor *tg_add_scalar(tg_tape *t, tg_tensor *x, tg_real s) {
    tg_tensor *y = tg_tape_tensor_like(t, x);
    const tg_real *restrict xd = x->data;
    tg_real *restrict yd = y->data;
    const int64_t n = x->numel;
    OMP(omp parallel for simd schedule(static) if (n >= PAR_MIN))
    for (int64_t i = 0; i < n; i++) yd[i] = xd[i] + s;
    tg_node *node = RECORD1(t, "add_scalar", add_scalar_backward, x, y);
    if (node) node->farg[0] = (double)s;
    return y;
}

/* y = s·x: dx += s·dy */
static void mul_scalar_backward(tg_tape *tape, tg_node *node) {
    tg_real *restrict dx = tg_tape_grad(tape, node->in[0]);
    const tg_tensor *y = node->out[0];
    const tg_real *restrict g = y->grad;
    const tg_real s = (tg_real)node->farg[0];
    const int64_t n = y->numel;
    if (!dx) return;
    OMP(omp parallel for simd schedule(static) if (n >= PAR_MIN))
    for (int64_t i = 0; i < n; i++) dx[i] += g[i] * s;
}

tg_tensor *tg_mul_scalar(tg_tape *t, tg_tensor *x, tg_real s) {
    tg_tensor *y = tg_tape_tensor_like(t, x);
    const tg_real *restrict xd = x->data;
    tg_real *restrict yd = y->data;
    const int64_t n = x->numel;
    OMP(omp parallel for simd schedule(static) if (n >= PAR_MIN))
    for (int64_t i = 0; i < n; i++) yd[i] = xd[i] * s;
    tg_node *node = RECORD1(t, "mul_scalar", mul_scalar_backward, x, y);
    if (node) node->farg[0] = (double)s;
    return y;
}

/* x^p over an array, with PyTorch's special cases (x·x for 2, sqrt for 0.5, ...), each
 * case its own loop. */
#define POW_LOOP(EXPR_OF_XI)                                                                       \
    do {                                                                                           \
        OMP(omp simd)                                                                              \
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
    OMP(omp simd)
    for (int64_t i = 0; i < x->numel; i++) dx[i] += g[i] * (p * d[i]);
}

tg_tensor *tg_pow_scalar(tg_tape *t, tg_tensor *x, tg_real p) {
    tg_tensor *y = tg_tape_tensor_like(t, x);
    pow_array(x->data, y->data, x->numel, p);
    tg_node *node = RECORD1(t, "pow_scalar", pow_scalar_backward, x, y);
    if (node) node->farg[0] = (double)p;
    return y;
}

/* ---------------------------------------------------------------------------------------
 * unary functions. UNARY_FORWARD(y = expr of xi) fills y from x. */
#define UNARY_FORWARD(t, x, y, EXPR_OF_XI)                                                         \
    tg_tensor *y = tg_tape_tensor_like(t, x);                                                      \
    do {                                                                                           \
        const tg_real *restrict xd_ = x->data;                                                     \
        tg_real *restrict yd_ = y->data;                                                           \
        const int64_t n_ = x->numel;                                                               \
        OMP(omp parallel for simd schedule(static) if (n_ >= PAR_MIN))                             \
        for (int64_t i = 0; i < n_; i++) {                                                         \
            const tg_real xi = xd_[i];                                                             \
            yd_[i] = (EXPR_OF_XI);                                                                 \
        }                                                                                          \
    } while (0)

/* UNARY_BACKWARD(dx[i] += expr of gi, xi, yi) inside a backward function. */
#define UNARY_BACKWARD(tape, node, EXPR)                                                           \
    do {                                                                                           \
        tg_real *restrict dx_ = tg_tape_grad(tape, node->in[0]);                                   \
        if (!dx_) return;                                                                          \
        const tg_real *restrict xd_ = node->in[0]->data, *restrict yd_ = node->out[0]->data;       \
        const tg_real *restrict gd_ = node->out[0]->grad;                                          \
        const int64_t n_ = node->out[0]->numel;                                                    \
        OMP(omp parallel for simd schedule(static) if (n_ >= PAR_MIN))                             \
        for (int64_t i = 0; i < n_; i++) {                                                         \
            const tg_real xi = xd_[i], yi = yd_[i], gi = gd_[i];                                   \
            (void)xi, (void)yi;                                                                    \
            dx_[i] += (EXPR);                                                                      \
        }                                                                                          \
    } while (0)

/* y = e^x: dx += dy ⊙ y */
static void exp_backward(tg_tape *tape, tg_node *node) { UNARY_BACKWARD(tape, node, gi * yi); }

tg_tensor *tg_exp(tg_tape *t, tg_tensor *x) {
    UNARY_FORWARD(t, x, y, RF(exp)(xi));
    RECORD1(t, "exp", exp_backward, x, y);
    return y;
}

/* y = ln x: dx += dy / x */
static void log_backward(tg_tape *tape, tg_node *node) { UNARY_BACKWARD(tape, node, gi / xi); }

tg_tensor *tg_log(tg_tape *t, tg_tensor *x) {
    UNARY_FORWARD(t, x, y, RF(log)(xi));
    RECORD1(t, "log", log_backward, x, y);
    return y;
}

/* y = √x: dy/dx = 1 / (2√x), so dx += dy / (2y) */
static void sqrt_backward(tg_tape *tape, tg_node *node) {
    UNARY_BACKWARD(tape, node, gi / (2 * yi));
}

tg_tensor *tg_sqrt(tg_tape *t, tg_tensor *x) {
    UNARY_FORWARD(t, x, y, RF(sqrt)(xi));
    RECORD1(t, "sqrt", sqrt_backward, x, y);
    return y;
}

/* y = tanh x: dy/dx = 1 - tanh² x, so dx += dy ⊙ (1 - y²) */
static void tanh_backward(tg_tape *tape, tg_node *node) {
    UNARY_BACKWARD(tape, node, gi * (1 - yi * yi));
}

tg_tensor *tg_tanh(tg_tape *t, tg_tensor *x) {
    UNARY_FORWARD(t, x, y, RF(tanh)(xi));
    RECORD1(t, "tanh", tanh_backward, x, y);
    return y;
}

/* y = σ(x) = 1 / (1 + e^-x): dy/dx = σ(x)(1 - σ(x)), so dx += dy ⊙ y(1 - y).
 * For x → -∞, e^-x overflows to inf and y = 1/inf = 0; for x → +∞, y = 1: no NaN. */
static void sigmoid_backward(tg_tape *tape, tg_node *node) {
    UNARY_BACKWARD(tape, node, gi * ((1 - yi) * yi));
}

tg_tensor *tg_sigmoid(tg_tape *t, tg_tensor *x) {
    UNARY_FORWARD(t, x, y, 1 / (1 + RF(exp)(-xi)));
    RECORD1(t, "sigmoid", sigmoid_backward, x, y);
    return y;
}

/* y = max(x, 0), written x < 0 ? 0 : x so that NaN and -0.0 pass through as in PyTorch.
 * dx += dy where y > 0 (PyTorch's threshold_backward on the output: 0 where y <= 0). */
static void relu_backward(tg_tape *tape, tg_node *node) {
    UNARY_BACKWARD(tape, node, yi <= 0 ? (tg_real)0 : gi);
}

tg_tensor *tg_relu(tg_tape *t, tg_tensor *x) {
    UNARY_FORWARD(t, x, y, xi < 0 ? (tg_real)0 : xi);
    RECORD1(t, "relu", relu_backward, x, y);
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

static void gelu_erf_backward(tg_tape *tape, tg_node *node) {
    UNARY_BACKWARD(tape, node,
                   gi * ((tg_real)0.5 * (1 + RF(erf)(xi * GELU_ALPHA)) +
                         xi * (GELU_PDF * RF(exp)(xi * xi * (tg_real)-0.5))));
}

static inline tg_real gelu_tanh_grad(tg_real x) {
    const tg_real x2 = x * x, th = RF(tanh)(GELU_BETA * (x + GELU_KAPPA * (x2 * x)));
    const tg_real left = (tg_real)0.5 * x, right = 1 + th;
    const tg_real du = GELU_BETA * (1 + 3 * GELU_KAPPA * x2);
    return (tg_real)0.5 * right + left * (1 - th * th) * du;
}

static void gelu_tanh_backward(tg_tape *tape, tg_node *node) {
    UNARY_BACKWARD(tape, node, gi * gelu_tanh_grad(xi));
}

tg_tensor *tg_gelu(tg_tape *t, tg_tensor *x, tg_gelu_approximate approximate) {
    if (approximate != TG_GELU_ERF && approximate != TG_GELU_TANH)
        tg_fail("tg_gelu: unknown approximation %d (TG_GELU_ERF or TG_GELU_TANH)",
                (int)approximate);
    if (approximate == TG_GELU_ERF) {
        UNARY_FORWARD(t, x, y, xi * (tg_real)0.5 * (1 + RF(erf)(xi * GELU_ALPHA)));
        RECORD1(t, "gelu", gelu_erf_backward, x, y);
        return y;
    }
    UNARY_FORWARD(t, x, y,
                  (tg_real)0.5 * xi *
                      (1 + RF(tanh)(GELU_BETA * (xi + GELU_KAPPA * (xi * xi * xi)))));
    RECORD1(t, "gelu_tanh", gelu_tanh_backward, x, y);
    return y;
}

/* ---------------------------------------------------------------------------------------
 * dropout: y = x ⊙ m with m_i = 1/(1-p) (kept, probability 1-p) or 0; dx += dy ⊙ m.
 * As PyTorch: the scale is 1/(1-p) rounded to the working precision, one uniform draw per
 * element in row-major order decides (kept if u < 1-p), and p = 1 multiplies by zeros. */
static void dropout_backward(tg_tape *tape, tg_node *node) {
    tg_real *restrict dx = tg_tape_grad(tape, node->in[0]);
    const tg_real *restrict m = node->saved, *restrict g = node->out[0]->grad;
    const int64_t n = node->out[0]->numel;
    if (!dx) return;
    OMP(omp simd)
    for (int64_t i = 0; i < n; i++) dx[i] += g[i] * m[i];
}

tg_tensor *tg_dropout(tg_tape *t, tg_tensor *x, tg_real p, bool training, tg_rng *rng) {
    if (!(p >= 0 && p <= 1)) {
        char desc[160];
        tg_fail("tg_dropout: p must be in [0, 1], got %g (input %s)", (double)p,
                tg_tensor_describe(x, desc, sizeof desc));
    }
    if (!training || p == 0) return x;
    if (!rng) rng = tg_rng_default();
    const double keep = 1.0 - (double)p;
    const tg_real scale = keep == 0 ? 0 : (tg_real)1 / (tg_real)keep;
    const int64_t n = x->numel;
    tg_real *m = tg_tape_alloc(t, (size_t)n * sizeof(tg_real));
    if (keep == 0)
        memset(m, 0, (size_t)n * sizeof(tg_real));
    else
        for (int64_t i = 0; i < n; i++) m[i] = tg_rng_uniform01(rng) < keep ? scale : 0;
    tg_tensor *y = tg_tape_tensor_like(t, x);
    for (int64_t i = 0; i < n; i++) y->data[i] = x->data[i] * m[i];
    tg_node *node = RECORD1(t, "dropout", dropout_backward, x, y);
    if (node) {
        node->saved = m;
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
