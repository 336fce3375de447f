/* autograd/loss_internal.h — what the cross-entropy losses share (internal, not installed):
 * autograd/loss.c (tg_cross_entropy on logits) and autograd/linear_ce.c (the fused output
 * layer, tg_linear_cross_entropy) reduce, take upstream gradients and compute each row's
 * log-sum-exp by the same code, so the two give the same bits for the same logits. */
#ifndef TAPEGRAD_LOSS_INTERNAL_H
#define TAPEGRAD_LOSS_INTERNAL_H

#include "tapegrad/ops.h"
#include "tapegrad/tape.h"
#include "tensor/vmath.h" /* tg_vexp: SIMD exp in float32, libm's in float64 */

#include <math.h>

static inline void check_reduction(const char *op, tg_reduction r) {
    if (r != TG_REDUCTION_MEAN && r != TG_REDUCTION_SUM && r != TG_REDUCTION_NONE)
        tg_fail("%s: unknown reduction %d (expected TG_REDUCTION_MEAN, _SUM or _NONE)", op, (int)r);
}

/* The reduced output: a 0-dim tensor holding Σ ℓ / denom, or ℓ itself (shape out_shape).
 * The sum is in double, in order. */
static inline tg_tensor *reduce_output(tg_tape *t, const double *ell, int64_t n, tg_reduction red,
                                       double denom, int out_ndim, const int64_t *out_shape) {
    if (red == TG_REDUCTION_NONE) {
        tg_tensor *y = tg_tape_tensor(t, out_ndim, out_shape);
        for (int64_t k = 0; k < n; k++) y->data[k] = (tg_real)ell[k];
        return y;
    }
    double total = 0;
    for (int64_t k = 0; k < n; k++) total += ell[k];
    tg_tensor *y = tg_tape_tensor(t, 0, NULL);
    y->data[0] = (tg_real)(red == TG_REDUCTION_MEAN ? total / denom : total);
    return y;
}

/* The upstream gradient of sample k. */
static inline tg_real upstream(const tg_tensor *y, tg_reduction red, double denom, int64_t k) {
    if (red == TG_REDUCTION_NONE) return y->grad[k];
    return red == TG_REDUCTION_MEAN ? (tg_real)((double)y->grad[0] / denom) : y->grad[0];
}

/* m = max_c x_c (NaN wins) and log Σ_c exp(x_c − m) of one sample, stride S. The sum is in
 * double, in TG_VLANES interleaved lanes (as the softmax's): an order fixed by C alone that
 * vectorises, where one running sum would make every add wait for the one before. */
static inline void ce_sample_lse(const tg_real *x, int64_t C, int64_t S, tg_real *m_out,
                                 double *ls_out) {
    const tg_real m = tg_vmax_row(x, C, S);
    double s[TG_VLANES] = {0};
    int64_t c = 0;
    for (; c + TG_VLANES <= C; c += TG_VLANES)
        for (int l = 0; l < TG_VLANES; l++) s[l] += (double)tg_vexp(x[(c + l) * S] - m);
    for (int l = 0; c + l < C; l++) s[l] += (double)tg_vexp(x[(c + l) * S] - m);
    *m_out = m, *ls_out = log(tg_vlanes_total(s));
}

#endif
