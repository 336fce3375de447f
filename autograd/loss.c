/* Losses, each one fused node: cross entropy (log-softmax + pick + reduction), NLL, MSE and
 * binary cross entropy on logits. Semantics follow PyTorch 1.13.
 *
 * Class-index losses see the input as (N, C, S): N samples, C classes at stride S, and S
 * positions per sample (S = d1·d2·… for (N, C, d1, …) inputs, 1 otherwise). Sample k = n·S + s
 * is also the flat index of its target. With v_k = [y_k ≠ ignore_index], class weights w
 * (all 1 by default) and per-sample losses ℓ_k, the reductions are
 *   none: ℓ (shape of the targets),  sum: Σ ℓ_k,  mean: Σ ℓ_k / Σ v_k·w[y_k]
 * (a weighted mean; NaN when every target is ignored). Sums are in double, in order. */
#include "tapegrad/broadcast.h"
#include "tapegrad/kernels.h"
#include "tapegrad/ops.h"
#include "autograd/loss_internal.h"
#include "tensor/vmath.h" /* tg_vexp: SIMD exp in float32, libm's in float64 */

#include <math.h>
#include <stdio.h>
#include <string.h>

#ifdef TG_DOUBLE
#define LOG log
#else
#define LOG logf
#endif

/* Elements below which threads are not worth starting (below it, the loops pass
 * tg_parallel_for a grain of the whole range: one serial call). */
#define PARALLEL_MIN 16384

tg_loss_options tg_loss_defaults(void) {
    return (tg_loss_options){.reduction = TG_REDUCTION_MEAN, .ignore_index = -100};
}

/* ==== class-index losses: cross entropy and NLL ==== */

typedef struct class_loss {
    int64_t N, C, S;
    int32_t *y;      /* targets (a copy: the caller may reuse its tg_index) */
    tg_real *w;      /* class weights (a copy), or NULL */
    tg_real *m, *ls; /* cross entropy, per sample: max_c x_c and log Σ_c exp(x_c − m) */
    double W;        /* Σ_c w_c */
    double denom;    /* Σ_k v_k·w[y_k] */
    double eps;      /* label smoothing */
    int64_t ignore;
    tg_reduction red;
} class_loss;

static void class_loss_check(const char *op, const tg_tensor *x, const tg_index *y,
                             const tg_loss_options *o, bool smoothing_allowed) {
    char dx[160], s1[96], s2[96];
    check_reduction(op, o->reduction);
    if (x->ndim < 1)
        tg_fail("%s: input %s must have shape (N, C), (C) or (N, C, d1, ...)", op,
                tg_tensor_describe(x, dx, sizeof dx));
    /* expected target shape: (), (N) or (N, d1, ...) */
    int64_t want[TG_MAX_DIMS];
    const int want_ndim = x->ndim - 1;
    if (x->ndim >= 2) want[0] = x->shape[0];
    for (int i = 2; i < x->ndim; i++) want[i - 1] = x->shape[i];
    bool fits = y->ndim == want_ndim;
    for (int i = 0; fits && i < want_ndim; i++) fits = y->shape[i] == want[i];
    if (!fits)
        tg_fail("%s: targets of shape %s do not fit input %s: expected targets of shape %s", op,
                tg_shape_format(y->ndim, y->shape, s1, sizeof s1),
                tg_tensor_describe(x, dx, sizeof dx),
                tg_shape_format(want_ndim, want, s2, sizeof s2));
    const int64_t C = x->ndim == 1 ? x->shape[0] : x->shape[1];
    if (o->weight && (o->weight->ndim != 1 || o->weight->shape[0] != C)) {
        char dw[160];
        tg_fail("%s: class weight %s must have shape (%lld,), one per class of input %s", op,
                tg_tensor_describe(o->weight, dw, sizeof dw), (long long)C,
                tg_tensor_describe(x, dx, sizeof dx));
    }
    if (o->pos_weight) tg_fail("%s: pos_weight applies to tg_bce_with_logits only", op);
    if (!smoothing_allowed && o->label_smoothing != 0)
        tg_fail("%s: label_smoothing applies to tg_cross_entropy only (got %g)", op,
                (double)o->label_smoothing);
    if (!(o->label_smoothing >= 0 && o->label_smoothing <= 1))
        tg_fail("%s: label_smoothing %g must be in [0, 1]", op, (double)o->label_smoothing);
    for (int64_t k = 0; k < y->numel; k++) {
        const int64_t c = y->data[k];
        if (c == o->ignore_index || (c >= 0 && c < C)) continue;
        /* position of target k as a multi-index into the targets */
        char pos[160] = "";
        size_t used = 0;
        int64_t rest = k;
        int64_t idx[TG_MAX_DIMS];
        for (int i = y->ndim - 1; i >= 0; i--) idx[i] = rest % y->shape[i], rest /= y->shape[i];
        for (int i = 0; i < y->ndim && used < sizeof pos; i++)
            used += (size_t)snprintf(pos + used, sizeof pos - used, i ? ", %lld" : "%lld",
                                     (long long)idx[i]);
        tg_fail("%s: target %lld at position [%s] of targets %s is out of range: expected a "
                "class in [0, %lld) (C = %lld) or ignore_index %lld (input %s)",
                op, (long long)c, pos, tg_shape_format(y->ndim, y->shape, s1, sizeof s1),
                (long long)C, (long long)C, (long long)o->ignore_index,
                tg_tensor_describe(x, dx, sizeof dx));
    }
}

static class_loss *class_loss_make(tg_tape *t, const tg_tensor *x, const tg_index *y,
                                   const tg_loss_options *o) {
    class_loss *L = tg_tape_alloc(t, sizeof *L);
    memset(L, 0, sizeof *L);
    L->C = x->ndim == 1 ? x->shape[0] : x->shape[1];
    L->N = x->ndim == 1 ? 1 : x->shape[0];
    L->S = 1;
    for (int i = 2; i < x->ndim; i++) L->S *= x->shape[i];
    L->y = tg_tape_alloc(t, (size_t)(y->numel + 1) * sizeof(int32_t));
    memcpy(L->y, y->data, (size_t)y->numel * sizeof(int32_t));
    L->W = (double)L->C;
    if (o->weight) {
        L->w = tg_tape_alloc(t, (size_t)L->C * sizeof(tg_real));
        memcpy(L->w, o->weight->data, (size_t)L->C * sizeof(tg_real));
        L->W = 0;
        for (int64_t c = 0; c < L->C; c++) L->W += (double)L->w[c];
    }
    L->eps = (double)o->label_smoothing;
    L->ignore = o->ignore_index;
    L->red = o->reduction;
    for (int64_t k = 0; k < y->numel; k++)
        if (L->y[k] != L->ignore) L->denom += L->w ? (double)L->w[L->y[k]] : 1.0;
    return L;
}

static inline double weight_of(const class_loss *L, int64_t c) {
    return L->w ? (double)L->w[c] : 1.0;
}

/* Cross entropy with lp_c = x_c − lse (lse = m + log Σ exp(x_c − m)), ε = label smoothing:
 *   ℓ_k = v_k·[ (1−ε)·w_y·(−lp_y) + (ε/C)·Σ_c w_c·(−lp_c) ].
 * With p = softmax(x) and ∂(−lp_c)/∂x_j = p_j − δ_cj:
 *   ∂ℓ_k/∂x_j = v_k·[ p_j·((1−ε)·w_y + (ε/C)·W) − (1−ε)·w_y·δ_yj − (ε/C)·w_j ],  W = Σ_c w_c,
 * i.e. softmax minus the smoothed one-hot when there are no weights. */
/* dx += a·p − b_c − [c = y]·d along one sample, p_c = exp((x_c − m) − log Σ); stride S
 * (inlined twice: S = 1, the contiguous rows of (N, C), and any S). */
static inline void ce_sample_backward(const tg_real *x, tg_real *dx, int64_t C, int64_t S,
                                      tg_real m, tg_real ls, tg_real a, const tg_real *w,
                                      tg_real bw) {
    if (w) {
        for (int64_t c = 0; c < C; c++) dx[c * S] += a * tg_vexp((x[c * S] - m) - ls) - bw * w[c];
    } else {
        for (int64_t c = 0; c < C; c++) dx[c * S] += a * tg_vexp((x[c * S] - m) - ls) - bw;
    }
}

/* What a range of cross-entropy samples reads and writes (forward: ell; backward: dx). */
typedef struct ce_ctx {
    const class_loss *L;
    const tg_tensor *x, *out;
    tg_real *dx;
    double *ell;
} ce_ctx;

TG_VEC_KERNEL static void ce_backward_range(int64_t begin, int64_t end, void *p) {
    const ce_ctx *c = p;
    const class_loss *L = c->L;
    const int64_t C = L->C, S = L->S;
    const double e = L->eps, ec = C ? e / (double)C : 0;
    for (int64_t k = begin; k < end; k++) {
        const int64_t yk = L->y[k];
        if (yk == L->ignore) continue;
        const int64_t at = (k / S) * C * S + k % S;
        const double g = (double)upstream(c->out, L->red, L->denom, k), wy = weight_of(L, yk);
        const tg_real a = (tg_real)(g * ((1 - e) * wy + ec * L->W)), bw = (tg_real)(g * ec);
        if (S == 1)
            ce_sample_backward(c->x->data + at, c->dx + at, C, 1, L->m[k], L->ls[k], a, L->w, bw);
        else
            ce_sample_backward(c->x->data + at, c->dx + at, C, S, L->m[k], L->ls[k], a, L->w, bw);
        c->dx[at + yk * S] -= (tg_real)(g * (1 - e) * wy);
    }
}

static void cross_entropy_backward(tg_tape *tape, tg_node *node) {
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    if (!dx) return;
    const class_loss *L = node->saved;
    const int64_t K = L->N * L->S;
    ce_ctx c = {.L = L, .x = node->in[0], .out = node->out[0], .dx = dx};
    tg_parallel_for(K, K * L->C >= PARALLEL_MIN ? 1 : K, ce_backward_range, &c);
}

TG_VEC_KERNEL static void ce_forward_range(int64_t begin, int64_t end, void *p) {
    const ce_ctx *c = p;
    const class_loss *L = c->L;
    const int64_t C = L->C, S = L->S;
    const double e = L->eps, ec = C ? e / (double)C : 0;
    for (int64_t k = begin; k < end; k++) {
        const int64_t n = k / S, s = k % S, yk = L->y[k];
        const tg_real *xk = c->x->data + n * C * S + s;
        tg_real m;
        double ls;
        if (S == 1)
            ce_sample_lse(xk, C, 1, &m, &ls);
        else
            ce_sample_lse(xk, C, S, &m, &ls);
        const double lse = (double)m + ls;
        L->m[k] = m, L->ls[k] = (tg_real)ls;
        if (yk == L->ignore) {
            c->ell[k] = 0;
            continue;
        }
        const double wy = weight_of(L, yk);
        double l = (1 - e) * wy * (lse - (double)xk[yk * S]);
        if (e != 0) { /* Σ_c w_c·(lse − x_c) */
            double sw = 0;
            for (int64_t j = 0; j < C; j++) sw += weight_of(L, j) * (lse - (double)xk[j * S]);
            l += ec * sw;
        }
        c->ell[k] = l;
    }
}

/* The entry checks of the losses: the tape, the input, the targets and the option tensors. */
static void loss_entry_check(const char *function, tg_tape *t, const tg_tensor *input,
                             const char *input_name, const tg_index *targets,
                             const tg_loss_options *o) {
    if (!t) tg_fail_null_argument(function, "t");
    tg_tape_check_input(t, function, input_name, input);
    tg_tape_check_index(t, function, "targets", targets);
    if (o && o->weight) tg_tape_check_input(t, function, "opts->weight", o->weight);
    if (o && o->pos_weight) tg_tape_check_input(t, function, "opts->pos_weight", o->pos_weight);
}

tg_tensor *tg_cross_entropy_ex(tg_tape *t, tg_tensor *logits, const tg_index *targets,
                               const tg_loss_options *opts) {
    loss_entry_check(__func__, t, logits, "logits", targets, opts);
    const tg_loss_options o = opts ? *opts : tg_loss_defaults();
    class_loss_check("tg_cross_entropy", logits, targets, &o, true);
    class_loss *L = class_loss_make(t, logits, targets, &o);
    const int64_t C = L->C, K = L->N * L->S;
    L->m = tg_tape_alloc(t, (size_t)(K + 1) * sizeof(tg_real));
    L->ls = tg_tape_alloc(t, (size_t)(K + 1) * sizeof(tg_real));
    double *ell = tg_tape_alloc(t, (size_t)(K + 1) * sizeof(double));
    ce_ctx c = {.L = L, .x = logits, .ell = ell};
    tg_parallel_for(K, K * C >= PARALLEL_MIN ? 1 : K, ce_forward_range, &c);
    tg_tensor *y = reduce_output(t, ell, K, L->red, L->denom, targets->ndim, targets->shape);
    tg_node *node = tg_tape_record(t, "cross_entropy", cross_entropy_backward, 1,
                                   (tg_tensor *[]){logits}, 1, (tg_tensor *[]){y});
    if (node) node->saved = L;
    return y;
}

tg_tensor *tg_cross_entropy(tg_tape *t, tg_tensor *logits, const tg_index *targets) {
    loss_entry_check(__func__, t, logits, "logits", targets, NULL);
    return tg_cross_entropy_ex(t, logits, targets, NULL);
}

/* NLL: ℓ_k = −v_k·w_y·x[n, y_k, s];  dx[n, y_k, s] += −v_k·w_y·g_k */
static void nll_backward(tg_tape *tape, tg_node *node) {
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    if (!dx) return;
    const class_loss *L = node->saved;
    const int64_t C = L->C, S = L->S, K = L->N * S;
    for (int64_t k = 0; k < K; k++) {
        const int64_t yk = L->y[k];
        if (yk == L->ignore) continue;
        const double g = (double)upstream(node->out[0], L->red, L->denom, k);
        dx[(k / S) * C * S + yk * S + k % S] -= (tg_real)(g * weight_of(L, yk));
    }
}

tg_tensor *tg_nll_loss_ex(tg_tape *t, tg_tensor *log_probs, const tg_index *targets,
                          const tg_loss_options *opts) {
    loss_entry_check(__func__, t, log_probs, "log_probs", targets, opts);
    const tg_loss_options o = opts ? *opts : tg_loss_defaults();
    class_loss_check("tg_nll_loss", log_probs, targets, &o, false);
    class_loss *L = class_loss_make(t, log_probs, targets, &o);
    const int64_t C = L->C, S = L->S, K = L->N * S;
    double *ell = tg_tape_alloc(t, (size_t)(K + 1) * sizeof(double));
    for (int64_t k = 0; k < K; k++) {
        const int64_t yk = L->y[k];
        ell[k] = yk == L->ignore ? 0
                                 : -weight_of(L, yk) *
                                       (double)log_probs->data[(k / S) * C * S + yk * S + k % S];
    }
    tg_tensor *y = reduce_output(t, ell, K, L->red, L->denom, targets->ndim, targets->shape);
    tg_node *node = tg_tape_record(t, "nll_loss", nll_backward, 1, (tg_tensor *[]){log_probs}, 1,
                                   (tg_tensor *[]){y});
    if (node) node->saved = L;
    return y;
}

tg_tensor *tg_nll_loss(tg_tape *t, tg_tensor *log_probs, const tg_index *targets) {
    loss_entry_check(__func__, t, log_probs, "log_probs", targets, NULL);
    return tg_nll_loss_ex(t, log_probs, targets, NULL);
}

/* ==== MSE: ℓ_i = (a_i − b_i)²;  da_i += 2(a_i − b_i)·g_i,  db_i −= 2(a_i − b_i)·g_i ==== */
static void mse_backward(tg_tape *tape, tg_node *node) {
    tg_tensor *a = node->in[0], *b = node->in[1];
    tg_real *da = tg_tape_grad(tape, a), *db = tg_tape_grad(tape, b);
    const tg_reduction red = (tg_reduction)node->iarg[0];
    const double denom = (double)a->numel;
    for (int64_t i = 0; i < a->numel; i++) {
        const tg_real g = 2 * (a->data[i] - b->data[i]) * upstream(node->out[0], red, denom, i);
        if (da) da[i] += g;
        if (db) db[i] -= g;
    }
}

tg_tensor *tg_mse_loss(tg_tape *t, tg_tensor *input, tg_tensor *target, tg_reduction reduction) {
    TG_CHECK_OP(t, input, target);
    check_reduction("tg_mse_loss", reduction);
    if (!tg_shape_equal(input, target)) {
        char d1[160], d2[160];
        tg_fail("tg_mse_loss: input %s and target %s must have the same shape",
                tg_tensor_describe(input, d1, sizeof d1),
                tg_tensor_describe(target, d2, sizeof d2));
    }
    const int64_t n = input->numel;
    double *ell = tg_tape_alloc(t, (size_t)(n + 1) * sizeof(double));
    for (int64_t i = 0; i < n; i++) {
        const tg_real d = input->data[i] - target->data[i];
        ell[i] = (double)(d * d);
    }
    tg_tensor *y = reduce_output(t, ell, n, reduction, (double)n, input->ndim, input->shape);
    tg_node *node = tg_tape_record(t, "mse_loss", mse_backward, 2, (tg_tensor *[]){input, target},
                                   1, (tg_tensor *[]){y});
    if (node) node->iarg[0] = reduction;
    return y;
}

/* ==== binary cross entropy on logits ====
 * ℓ = −w·[p·y·log σ(x) + (1−y)·log(1−σ(x))], in the stable form with m = max(−x, 0) and
 * L = −log σ(x) = log(exp(−m) + exp(−x−m)) + m (so −log(1−σ(x)) = x + L):
 *   ℓ = w·[(1−y)·x + (1 + (p−1)·y)·L]          (p = 1 without pos_weight)
 * With dL/dx = σ(x) − 1:
 *   ∂ℓ/∂x = w·[(1−y) + (1 + (p−1)·y)·(σ(x) − 1)]   (= w·(σ(x) − y) when p = 1)
 *   ∂ℓ/∂y = w·[−x + (p−1)·L]. */

/* p must broadcast to x's shape (NumPy rules, the result having x's shape). */
static void check_broadcast(const char *what, const tg_tensor *p, const tg_tensor *x) {
    if (!tg_broadcast_fits(p->ndim, p->shape, x->ndim, x->shape)) {
        char dp[160], dx[160];
        tg_fail("tg_bce_with_logits: %s %s cannot be broadcast to the shape of logits %s", what,
                tg_tensor_describe(p, dp, sizeof dp), tg_tensor_describe(x, dx, sizeof dx));
    }
}

/* p's values broadcast to x's shape, one per element of x. */
static tg_real *broadcast_values(tg_tape *t, const tg_tensor *p, const tg_tensor *x) {
    tg_real *out = tg_tape_alloc(t, (size_t)(x->numel + 1) * sizeof(tg_real));
    tg_broadcast_expand(out, x->ndim, x->shape, p->data, p->ndim, p->shape);
    return out;
}

typedef struct bce_saved {
    const tg_real *w, *p;
} bce_saved;

static inline tg_real softplus_neg(tg_real x) { /* L = −log σ(x), stable */
    const tg_real m = x < 0 ? -x : 0;
    return LOG(tg_vexp(-m) + tg_vexp(-x - m)) + m;
}

static void bce_backward(tg_tape *tape, tg_node *node) {
    tg_tensor *x = node->in[0], *y = node->in[1];
    tg_real *dx = tg_tape_grad(tape, x), *dy = tg_tape_grad(tape, y);
    const bce_saved *sv = node->saved;
    const tg_reduction red = (tg_reduction)node->iarg[0];
    const double denom = (double)x->numel;
    for (int64_t i = 0; i < x->numel; i++) {
        const tg_real xi = x->data[i], yi = y->data[i];
        tg_real g = upstream(node->out[0], red, denom, i);
        if (sv->w) g *= sv->w[i];
        if (sv->p) {
            const tg_real pi = sv->p[i];
            if (dx) dx[i] += g * ((1 - yi) + (1 + (pi - 1) * yi) * (1 / (1 + tg_vexp(-xi)) - 1));
            if (dy) dy[i] += g * (-xi + (pi - 1) * softplus_neg(xi));
        } else {
            if (dx) dx[i] += g * (1 / (1 + tg_vexp(-xi)) - yi);
            if (dy) dy[i] -= g * xi;
        }
    }
}

tg_tensor *tg_bce_with_logits(tg_tape *t, tg_tensor *logits, tg_tensor *targets,
                              const tg_loss_options *opts) {
    TG_CHECK_OP(t, logits, targets);
    if (opts && opts->weight) tg_tape_check_input(t, __func__, "opts->weight", opts->weight);
    if (opts && opts->pos_weight)
        tg_tape_check_input(t, __func__, "opts->pos_weight", opts->pos_weight);
    const tg_loss_options o = opts ? *opts : tg_loss_defaults();
    check_reduction("tg_bce_with_logits", o.reduction);
    if (!tg_shape_equal(logits, targets)) {
        char d1[160], d2[160];
        tg_fail("tg_bce_with_logits: logits %s and targets %s must have the same shape",
                tg_tensor_describe(logits, d1, sizeof d1),
                tg_tensor_describe(targets, d2, sizeof d2));
    }
    if (o.weight) check_broadcast("weight", o.weight, logits);
    if (o.pos_weight) check_broadcast("pos_weight", o.pos_weight, logits);
    if (o.label_smoothing != 0)
        tg_fail("tg_bce_with_logits: label_smoothing applies to tg_cross_entropy only (got %g)",
                (double)o.label_smoothing);

    bce_saved *sv = tg_tape_alloc(t, sizeof *sv);
    sv->w = o.weight ? broadcast_values(t, o.weight, logits) : NULL;
    sv->p = o.pos_weight ? broadcast_values(t, o.pos_weight, logits) : NULL;
    const int64_t n = logits->numel;
    double *ell = tg_tape_alloc(t, (size_t)(n + 1) * sizeof(double));
    for (int64_t i = 0; i < n; i++) {
        const tg_real x = logits->data[i], y = targets->data[i];
        const tg_real m = x < 0 ? -x : 0, lg = LOG(tg_vexp(-m) + tg_vexp(-x - m));
        tg_real l =
            sv->p ? (1 - y) * x + (1 + (sv->p[i] - 1) * y) * (lg + m) : (1 - y) * x + m + lg;
        if (sv->w) l *= sv->w[i];
        ell[i] = (double)l;
    }
    tg_tensor *y = reduce_output(t, ell, n, o.reduction, (double)n, logits->ndim, logits->shape);
    tg_node *node = tg_tape_record(t, "bce_with_logits", bce_backward, 2,
                                   (tg_tensor *[]){logits, targets}, 1, (tg_tensor *[]){y});
    if (node) {
        node->saved = sv;
        node->iarg[0] = o.reduction;
    }
    return y;
}
