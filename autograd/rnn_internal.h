/* autograd/rnn_internal.h — what the fused recurrent ops share (not installed).
 *
 * A fused run of one layer in one direction over T steps keeps, in the tape's arena:
 *   gi    (T, B, G·H)   x_t·W_ihᵀ for every step: ONE GEMM before the loop (biases are
 *                       added by the gate kernels)
 *   hs    (T+1, B, H)   the states, in time order with one extra slot for h0:
 *                       forward  h0 at slot 0, h_t at slot t+1
 *                       reverse  h0 at slot T, h_t at slot t
 *                       so the output sequence is slots [1..T] or [0..T-1], and the
 *                       previous states of all steps, in time order, are the other T
 *                       slots — both contiguous: the output is a view, and dW_hh is
 *                       one GEMM over all steps.
 *   cs    (T+1, B, H)   LSTM cell states, same layout
 *   acts  (T, B, S·H)   the activations the backward needs (gates, ...), S per cell kind
 * The backward writes the pre-activation gradients of all steps, da (T, B, G·H), then
 * takes dW_ih, dx and dW_hh as GEMMs over all T·B rows. */
#ifndef TAPEGRAD_RNN_INTERNAL_H
#define TAPEGRAD_RNN_INTERNAL_H

/* no-trapping-math lets GCC turn the activations' selects (clamps, the two branches of
 * tanh) into SIMD blends; with trapping math they stay branches and the gate loops scalar
 * (we never read the floating-point exception flags). fp-contract=off keeps a*b+c two
 * roundings in every clone of a row kernel (below), so all CPUs get the same bits. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math", "fp-contract=off")
#endif

#include <math.h>
#include <string.h>

#include "tapegrad/kernels.h"
#include "tapegrad/rnn.h"

#ifdef _OPENMP
#define RNN_OMP(x) _Pragma(#x)
#define RNN_SIMD   _Pragma("omp simd")
#else
#define RNN_SIMD
#define RNN_OMP(x)
#endif
/* The forward gate kernels (one batch row each, where the sigmoids and tanhs are) are
 * compiled for AVX-512, AVX2 and the baseline, and the loader picks the CPU's best. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(TG_DOUBLE)
#define RNN_ROW_KERNEL __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define RNN_ROW_KERNEL
#endif
/* Gate kernels split the batch rows between threads above this many elements (each
 * element is computed by exactly one thread: results do not depend on the thread count). */
#define RNN_PAR_MIN ((int64_t)1 << 14)

/* The activations of the gate kernels. float64 (the gradient-checking build) uses libm.
 * float32 uses branch-free versions that the compiler turns into SIMD code inside the
 * gate loops (a libm call per element would cost as much as the step's GEMM); they are
 * within about 2 ulp of the exact values, as PyTorch's own vectorised ones are. */
#ifdef TG_DOUBLE
static inline tg_real rnn_sigmoid(tg_real a) { return 1 / (1 + exp(-a)); }
static inline tg_real rnn_tanh(tg_real a) { return tanh(a); }
#else
/* e^x: x = n·ln2 + r with |r| <= ln2/2 (n rounded by the 1.5·2^23 trick, ln2 split in two
 * parts so that r is exact), e^r by Cephes' degree-7 polynomial, 2^n made in the exponent
 * bits. x is clamped to [-87, 88] so that 2^n stays a normal float. */
static inline float rnn_expf(float x) {
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
    const float p = ((((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r +
                        4.1665795894e-2f) *
                           r +
                       1.6666665459e-1f) *
                          r +
                      5.0000001201e-1f) *
                     (r * r)) +
                    r + 1.0f;
    const uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}
static inline float rnn_sigmoid(float a) { return 1.0f / (1.0f + rnn_expf(-a)); }
/* tanh: an odd polynomial near 0 (Cephes), where 1 − 2/(e^{2|a|} + 1) would cancel. */
static inline float rnn_tanh(float a) {
    const float ax = a < 0 ? -a : a, z = a * a;
    const float small =
        ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
          1.33314422036e-1f) *
             z -
         3.33332819422e-1f) *
            z * a +
        a;
    const float big = 1.0f - 2.0f / (rnn_expf(2.0f * ax) + 1.0f);
    return ax < 0.625f ? small : (a < 0 ? -big : big);
}
#endif

typedef struct rnn_run {
    tg_cell_kind kind;
    int64_t T, B, I, H, G; /* steps, batch, input size, hidden size, gate count */
    bool reverse;
    const tg_real *w_ih, *w_hh; /* (G·H, I), (G·H, H) */
    const tg_real *b_ih, *b_hh; /* (G·H); zeros when the layer has no bias */
    tg_real *gi, *hs, *cs, *acts;
    int64_t act_stride;        /* elements of acts per step; 0 = one slot reused (inference) */
    tg_real *work;             /* (B, G·H) scratch for the hidden GEMM(s) */
    int out_seq, out_h, out_c; /* positions of output, h_n, c_n among the node's outputs */
} rnn_run;

/* Slots of hs / cs: the state before step t and the one after it. */
static inline int64_t rnn_prev_slot(const rnn_run *r, int64_t t) { return r->reverse ? t + 1 : t; }
static inline int64_t rnn_cur_slot(const rnn_run *r, int64_t t) { return r->reverse ? t : t + 1; }
static inline tg_real *rnn_h(const rnn_run *r, int64_t slot) { return r->hs + slot * r->B * r->H; }
static inline tg_real *rnn_c(const rnn_run *r, int64_t slot) { return r->cs + slot * r->B * r->H; }
static inline tg_real *rnn_acts(const rnn_run *r, int64_t t) { return r->acts + t * r->act_stride; }
static inline const tg_real *rnn_gi(const rnn_run *r, int64_t t) {
    return r->gi + t * r->B * r->G * r->H;
}

/* What one cell kind supplies to the shared driver (autograd/rnn.c). */
typedef struct rnn_cell_impl {
    int saved;          /* S: activations kept per step, in units of B·H */
    bool separate_da_h; /* the hidden side's pre-activation gradient differs from the input
                         * side's (PyTorch GRU: r scales the n block), so keep both */
    /* Step t: from h_prev (and c_prev) and gi_t, the hidden GEMM(s) and the gate kernel
     * write h_t (and c_t) into their slots and the step's activations into acts. */
    void (*forward_step)(const rnn_run *r, int64_t t);
    /* Step t backward: dh = dL/dh_t (B, H); dc = dL/dc_t in, dL/dc_{t-1} out (LSTM).
     * Writes the pre-activation gradients da_i (B, G·H) (input side: gi, b_ih) and
     * da_h (hidden side: the product with W_hh, b_hh; may equal da_i), and
     * dh_prev = dL/dh_{t-1} (B, H), including the GEMM da_h·W_hh. */
    void (*backward_step)(const rnn_run *r, int64_t t, const tg_real *dh, tg_real *dc,
                          tg_real *da_i, tg_real *da_h, tg_real *dh_prev);
    /* dW_hh += Σ_t da_h,tᵀ·(its hidden operand); NULL = the usual one GEMM over all steps
     * with h_{t-1}. (Cho's GRU multiplies W_hn by r⊙h_{t-1}, not h_{t-1}.) */
    void (*weight_hh_grad)(const rnn_run *r, const tg_real *da_h, tg_real *dw_hh);
} rnn_cell_impl;

extern const rnn_cell_impl tg_rnn_impl_tanh, tg_rnn_impl_relu;   /* autograd/rnn.c */
extern const rnn_cell_impl tg_rnn_impl_gru, tg_rnn_impl_gru_cho; /* autograd/rnn_gru.c */
extern const rnn_cell_impl tg_rnn_impl_lstm;                     /* autograd/rnn_lstm.c */

#endif
