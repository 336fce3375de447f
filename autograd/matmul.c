/* Matrix products: matmul (2-D, batched 3-D, a shared 2-D operand, either operand read
 * transposed) and linear. Every product goes through tg_gemm.
 *
 * Notation: op(A) = A, or Aᵀ when trans_a (the transpose of the last two dims, never
 * copied: tg_gemm reads the stored matrix the other way). For C = op(A)·op(B):
 *     d op(A) = dC·op(B)ᵀ        d op(B) = op(A)ᵀ·dC
 * and when A is stored transposed its gradient is the transpose of that:
 *     dA = (dC·op(B)ᵀ)ᵀ = op(B)·dCᵀ          (trans_a)
 *     dB = (op(A)ᵀ·dC)ᵀ = dCᵀ·op(A)          (trans_b)
 * All gradients are accumulated (beta = 1): a tensor used twice receives both. */
#include <string.h>

#include "autograd/linear_internal.h"
#include "tapegrad/kernels.h"
#include "tapegrad/ops.h"

/* The geometry of one product, from the stored shapes. */
typedef struct {
    int64_t batch; /* 1 for 2-D x 2-D */
    int64_t m, n, k;
    bool ta, tb;
    bool a_batched, b_batched; /* 3-D operand; a 2-D one is shared by the batch */
} mm_dims;

static mm_dims mm_geometry(const tg_tensor *a, const tg_tensor *b, bool ta, bool tb) {
    mm_dims g = {.ta = ta, .tb = tb, .a_batched = a->ndim == 3, .b_batched = b->ndim == 3};
    const int64_t ar = a->shape[a->ndim - 2], ac = a->shape[a->ndim - 1];
    const int64_t br = b->shape[b->ndim - 2], bc = b->shape[b->ndim - 1];
    g.m = ta ? ac : ar;
    g.k = ta ? ar : ac;
    g.n = tb ? br : bc;
    g.batch = g.a_batched ? a->shape[0] : g.b_batched ? b->shape[0] : 1;
    return g;
}

/* ---------------------------------------------------------------------------------------- */
/* matmul */

static void matmul_backward(tg_tape *tape, tg_node *node) {
    const tg_tensor *a = node->in[0], *b = node->in[1], *c = node->out[0];
    const mm_dims g = mm_geometry(a, b, node->iarg[0], node->iarg[1]);
    const int64_t m = g.m, n = g.n, k = g.k;
    const int64_t lda = g.ta ? m : k, ldb = g.tb ? k : n; /* stored row lengths */
    const int64_t sa = g.a_batched ? m * k : 0, sb = g.b_batched ? k * n : 0, sc = m * n;
    const tg_real *A = a->data, *B = b->data, *dC = c->grad;
    tg_real *dA = tg_tape_grad(tape, node->in[0]);
    tg_real *dB = tg_tape_grad(tape, node->in[1]);

    if (dA) {
        if (!g.ta && g.a_batched && !g.b_batched) {
            /* every A_b meets the same B: (batch·m, k) += (batch·m, n)·op(B)ᵀ in one GEMM */
            tg_gemm(false, !g.tb, g.batch * m, k, n, 1, dC, n, B, ldb, 1, dA, lda);
        } else {
            /* dA_b += dC_b·op(B_b)ᵀ, or op(B_b)·dC_bᵀ if A is stored transposed; a shared
             * A (sa = 0) sums over the batch, in batch order */
            for (int64_t i = 0; i < g.batch; i++) {
                if (!g.ta)
                    tg_gemm(false, !g.tb, m, k, n, 1, dC + i * sc, n, B + i * sb, ldb, 1,
                            dA + i * sa, lda);
                else
                    tg_gemm(g.tb, true, k, m, n, 1, B + i * sb, ldb, dC + i * sc, n, 1, dA + i * sa,
                            lda);
            }
        }
    }
    if (dB) {
        if (!g.ta && g.a_batched && !g.b_batched) {
            /* shared B: its gradient sums over the batch, i.e. over the rows of the
             * (batch·m, k) view of A: one GEMM with batch·m as the inner dimension */
            if (!g.tb)
                tg_gemm(true, false, k, n, g.batch * m, 1, A, k, dC, n, 1, dB, ldb);
            else
                tg_gemm(true, false, n, k, g.batch * m, 1, dC, n, A, k, 1, dB, ldb);
        } else {
            for (int64_t i = 0; i < g.batch; i++) {
                if (!g.tb)
                    tg_gemm(!g.ta, false, k, n, m, 1, A + i * sa, lda, dC + i * sc, n, 1,
                            dB + i * sb, ldb);
                else
                    tg_gemm(true, g.ta, n, k, m, 1, dC + i * sc, n, A + i * sa, lda, 1, dB + i * sb,
                            ldb);
            }
        }
    }
}

static tg_tensor *matmul_checked(const char *op, tg_tape *tape, tg_tensor *a, tg_tensor *b, bool ta,
                                 bool tb) {
    char ad[160], bd[160], oa[96], ob[96];
    if ((a->ndim != 2 && a->ndim != 3) || (b->ndim != 2 && b->ndim != 3))
        tg_fail("%s: operands must be 2-D or 3-D; got a %s and b %s", op,
                tg_tensor_describe(a, ad, sizeof ad), tg_tensor_describe(b, bd, sizeof bd));
    const mm_dims g = mm_geometry(a, b, ta, tb);
    const int64_t kb = tb ? b->shape[b->ndim - 1] : b->shape[b->ndim - 2];
    if (g.k != kb) {
        /* the shapes of op(a) and op(b), as the product sees them */
        int64_t sa[3], sb[3];
        memcpy(sa, a->shape, sizeof sa);
        memcpy(sb, b->shape, sizeof sb);
        sa[a->ndim - 2] = g.m, sa[a->ndim - 1] = g.k;
        sb[b->ndim - 2] = kb, sb[b->ndim - 1] = g.n;
        tg_fail("%s: inner dimensions differ: op(a) is %s (a %s%s), op(b) is %s (b %s%s): "
                "%lld != %lld",
                op, tg_shape_format(a->ndim, sa, oa, sizeof oa),
                tg_tensor_describe(a, ad, sizeof ad), ta ? " transposed" : "",
                tg_shape_format(b->ndim, sb, ob, sizeof ob), tg_tensor_describe(b, bd, sizeof bd),
                tb ? " transposed" : "", (long long)g.k, (long long)kb);
    }
    if (g.a_batched && g.b_batched && a->shape[0] != b->shape[0])
        tg_fail("%s: batch sizes differ: a %s has %lld, b %s has %lld", op,
                tg_tensor_describe(a, ad, sizeof ad), (long long)a->shape[0],
                tg_tensor_describe(b, bd, sizeof bd), (long long)b->shape[0]);

    const int64_t m = g.m, n = g.n, k = g.k;
    const int64_t lda = ta ? m : k, ldb = tb ? k : n;
    const int64_t sa = g.a_batched ? m * k : 0, sb = g.b_batched ? k * n : 0;
    tg_tensor *c = g.a_batched || g.b_batched ? tg_tape_tensor(tape, TG_SHAPE(g.batch, m, n))
                                              : tg_tape_tensor(tape, TG_SHAPE(m, n));
    if (!ta && g.a_batched && !g.b_batched) /* (batch·m, k)·op(B): one GEMM */
        tg_gemm(false, tb, g.batch * m, n, k, 1, a->data, lda, b->data, ldb, 0, c->data, n);
    else
        for (int64_t i = 0; i < g.batch; i++)
            tg_gemm(ta, tb, m, n, k, 1, a->data + i * sa, lda, b->data + i * sb, ldb, 0,
                    c->data + i * m * n, n);

    tg_node *node = tg_tape_record(tape, "matmul", matmul_backward, 2, (tg_tensor *[]){a, b}, 1,
                                   (tg_tensor *[]){c});
    if (node) node->iarg[0] = ta, node->iarg[1] = tb;
    return c;
}

tg_tensor *tg_matmul(tg_tape *t, tg_tensor *a, tg_tensor *b) {
    TG_CHECK_OP(t, a, b);
    return matmul_checked("tg_matmul", t, a, b, false, false);
}

tg_tensor *tg_matmul_t(tg_tape *t, tg_tensor *a, tg_tensor *b, bool trans_a, bool trans_b) {
    TG_CHECK_OP(t, a, b);
    return matmul_checked("tg_matmul_t", t, a, b, trans_a, trans_b);
}

/* ---------------------------------------------------------------------------------------- */
/* linear: the leading dims of x flatten to R rows, so y (R, out) = x (R, in)·Wᵀ + b:
 *     dx = dy·W          dW = dyᵀ·x (one GEMM over all R rows)          db = Σ_rows dy */

void linear_grads(tg_tape *tape, tg_tensor *x, tg_tensor *W, tg_tensor *b, const tg_real *dy) {
    const int64_t out = W->shape[0], in = W->shape[1];
    int64_t R = 1; /* x's leading dims */
    for (int i = 0; i < x->ndim - 1; i++) R *= x->shape[i];
    tg_real *dx = tg_tape_grad(tape, x), *dW = tg_tape_grad(tape, W), *db = tg_tape_grad(tape, b);
    if (out == 0) return;
    if (dx) tg_gemm(false, false, R, in, out, 1, dy, out, W->data, in, 1, dx, in);
    if (dW) tg_gemm(true, false, out, in, R, 1, dy, out, x->data, in, 1, dW, in);
    if (db)
        for (int64_t r = 0; r < R; r++) {
            const tg_real *restrict g = dy + r * out;
            for (int64_t j = 0; j < out; j++) db[j] += g[j];
        }
}

static void linear_backward(tg_tape *tape, tg_node *node) {
    linear_grads(tape, node->in[0], node->in[1], node->in[2], node->out[0]->grad);
}

void linear_check(const char *op, const tg_tensor *x, const tg_tensor *weight,
                  const tg_tensor *bias) {
    char xd[160], wd[160], bd[160];
    if (weight->ndim != 2)
        tg_fail("%s: weight %s must be 2-D (out_features, in_features)", op,
                tg_tensor_describe(weight, wd, sizeof wd));
    const int64_t out = weight->shape[0], in = weight->shape[1];
    if (x->ndim < 1 || x->shape[x->ndim - 1] != in)
        tg_fail("%s: input %s does not end in in_features = %lld of weight %s", op,
                tg_tensor_describe(x, xd, sizeof xd), (long long)in,
                tg_tensor_describe(weight, wd, sizeof wd));
    if (bias && (bias->ndim != 1 || bias->shape[0] != out))
        tg_fail("%s: bias %s must have shape (%lld,) = (out_features,) of weight %s", op,
                tg_tensor_describe(bias, bd, sizeof bd), (long long)out,
                tg_tensor_describe(weight, wd, sizeof wd));
}

void linear_rows(int64_t R, const tg_real *x, const tg_tensor *weight, const tg_tensor *bias,
                 tg_real *y) {
    const int64_t out = weight->shape[0], in = weight->shape[1];
    if (bias)
        for (int64_t r = 0; r < R; r++)
            memcpy(y + r * out, bias->data, (size_t)out * sizeof(tg_real));
    tg_gemm(false, true, R, out, in, 1, x, in, weight->data, in, bias ? 1 : 0, y, out);
}

tg_tensor *linear_output(tg_tape *t, const tg_tensor *x, const tg_tensor *weight,
                         const tg_tensor *bias) {
    const int64_t out = weight->shape[0];
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, x->shape, (size_t)x->ndim * sizeof *shape);
    shape[x->ndim - 1] = out;
    tg_tensor *y = tg_tape_tensor(t, x->ndim, shape);
    linear_rows(out ? y->numel / out : 0, x->data, weight, bias, y->data);
    return y;
}

tg_tensor *tg_linear(tg_tape *tape, tg_tensor *x, tg_tensor *weight, tg_tensor *bias) {
    TG_CHECK_OP(tape, x, weight);
    TG_CHECK_INPUT_OPT(tape, bias);
    linear_check("tg_linear", x, weight, bias);
    tg_tensor *y = linear_output(tape, x, weight, bias);
    tg_tape_record(tape, "linear", linear_backward, 3, (tg_tensor *[]){x, weight, bias}, 1,
                   (tg_tensor *[]){y});
    return y;
}
