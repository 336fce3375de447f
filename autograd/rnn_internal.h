/* autograd/rnn_internal.h — what the fused recurrent ops share (not installed).
 *
 * A fused run of one layer in one direction over T steps keeps, in the tape's arena:
 *   hs    (T+1, B, P)   the states h, in time order with one extra slot for h0:
 *                       forward  h0 at slot 0, h_t at slot t+1
 *                       reverse  h0 at slot T, h_t at slot t
 *                       so the output sequence is slots [1..T] or [0..T-1], and the
 *                       previous states of all steps, in time order, are the other T
 *                       slots — both contiguous: the output is a view, and dW_hh is
 *                       one GEMM per chunk of steps.
 *   cs    (T+1, B, H)   LSTM cell states, same layout
 *   acts  (T, B, S·H)   the activations the backward needs (gates, ...), S per cell kind
 * and, only while a pass runs, the input projections of one chunk of steps:
 *   gi    (C, B, G·H)   x_t·W_ihᵀ for the C steps of a chunk (times [c·C, c·C + C)), one
 *                       GEMM just before the chunk's steps (biases are added by the gate
 *                       kernels): the gate kernels find them in L2 / L3, where the
 *                       projections of all T steps, made before the loop, were out in
 *                       memory by the time a step read them. Step t's are at slot t mod C.
 * P is H but for an LSTM with projections (PyTorch's proj_size), whose h_t = m_t·W_hrᵀ
 * has P features: its acts hold m_t = o_t ⊙ tanh(c_t) too (S = 5), so that M (T·B, H),
 * rows 5·H apart, is one GEMM operand for dW_hr, and its backward keeps the dh_t of
 * every step (dhs, (T, B, P)) for the same GEMM.
 * The backward walks the same chunks in the other order: each chunk's steps write their
 * pre-activation gradients da (C, B, G·H) into the chunk buffer, then dW_ih, dx, dW_hh
 * and the biases take the chunk as GEMMs over its C·B rows. What only one pass uses
 * (packed weights, the work tile, the chunk buffer) is given back to the arena when it
 * ends. The chunk's steps C come from the batch alone (rnn_chunk_steps), never from the
 * thread count, so the sums over chunks have the same bits at any count. */
#ifndef TAPEGRAD_RNN_INTERNAL_H
#define TAPEGRAD_RNN_INTERNAL_H

#include <math.h>
#include <string.h>

#include "tapegrad/kernels.h"
#include "tapegrad/rnn_ops.h"

/* Gate kernels split the batch rows between threads above this many elements (each
 * element is computed by exactly one thread: results do not depend on the thread count). */
#define RNN_PAR_MIN ((int64_t)1 << 14)

/* The activations of the gate kernels: tensor/vmath.h's (libm in float64, branch-free
 * SIMD-friendly polynomials in float32, within about 2 ulp as PyTorch's own). The gate
 * kernels (forward: one batch row each, where the sigmoids and tanhs are; backward: a
 * range of rows) and the bias sums are its TG_VEC_KERNELs, their loops TG_SIMD. */
#include "tensor/vmath.h"
static inline tg_real rnn_sigmoid(tg_real a) { return tg_vsigmoid(a); }
static inline tg_real rnn_tanh(tg_real a) { return tg_vtanh(a); }

/* The forward gate kernels read a unit panel's columns of gi (written by the chunk's input
 * GEMM some steps before) and of the LSTM's c_{t-1} (written a step before, but a whole
 * W_hh ago), and write the step's activations and states (last touched a whole pass ago);
 * all of them out in L3 or memory. On a core whose L2 the packed W_hh of the step's product
 * fills (1 MiB for an LSTM of H = 256: all of Zen 4's or Zen 5's L2), a prefetch issued
 * before the product is evicted again by it. So the kernels ask for the lines of the row
 * RNN_ROW_AHEAD rows ahead as they go: len values from p, count blocks `stride` apart. */
#define RNN_ROW_AHEAD 4
static inline void rnn_prefetch_blocks(const tg_real *p, int64_t count, int64_t stride, int64_t len,
                                       bool write) {
#if defined(__GNUC__)
    const int64_t line = 64 / (int64_t)sizeof(tg_real);
    for (int64_t g = 0; g < count; g++)
        for (int64_t j = 0; j < len; j += line) {
            if (write)
                __builtin_prefetch(p + g * stride + j, 1, 3);
            else
                __builtin_prefetch(p + g * stride + j, 0, 3);
        }
#else
    (void)p, (void)count, (void)stride, (void)len, (void)write;
#endif
}

/* ---- the step products from W_hh packed once per run (autograd/rnn.c) ----
 * tg_gemm packs its operands on every call, and a step's product is small enough (B rows)
 * that packing W_hh each time costs about as much as the product itself. So a sequence run
 * packs W_hh once (tg_gemm_pack_b, into the tape's arena) and every step's product reads
 * it with tg_gemm_prepacked, which gives the same bits whatever rows or unit panels a
 * thread takes. */
typedef struct rnn_run {
    tg_cell_kind kind;
    int64_t T, B, I, H, G; /* steps, batch, input size, hidden size, gate count */
    int64_t P;             /* features of h: H, or proj_size with a projection */
    bool reverse;
    const tg_real *w_ih, *w_hh;   /* (G·H, I), (G·H, P) */
    const tg_real *w_hr;          /* (P, H), or NULL without a projection (LSTM only) */
    const tg_real *b_ih, *b_hh;   /* (G·H); zeros when the layer has no bias */
    const tg_real *x;             /* the input (T, B, I) */
    tg_real *gi, *hs, *cs, *acts; /* gi: one chunk's input projections, or its da */
    int64_t chunk;                /* C: steps per chunk of gi (rnn_chunk_steps) */
    int64_t S;                    /* activations kept per batch row, in units of H */
    int64_t act_stride;           /* elements of acts per step; 0 = one slot reused (inference) */
    tg_real *work;                /* (B, G·H) scratch for the hidden GEMM(s); packed: one
                                   * (B, G·nr) tile per unit panel (forward and backward each
                                   * take their own); an LSTM's backward with a projection
                                   * holds a step's dm (B, H) in it */
    int out_seq, out_h, out_c;    /* positions of output, h_n, c_n among the node's outputs */
    /* Packed step products (GRU, LSTM over T >= 2 steps); false: the steps use tg_gemm. */
    bool packed;
    int64_t nr;            /* a unit panel: the packed operands' width (tg_gemm_packed_width) */
    int64_t mr;            /* the packed operands' tile rows (tg_gemm_packed_tile_rows) */
    int64_t panels;        /* ⌈H / nr⌉ */
    tg_gemm_packed *wf[4]; /* forward: W_hhᵀ of gate block g (H x H), one per block */
    tg_gemm_packed *wb;    /* backward: W_hh (G·H x H); set by the backward */
    tg_gemm_packed *wi;    /* W_ihᵀ (forward) or W_ih (backward), packed for the chunks */
    tg_real *dhn;          /* GRU backward: the n block of da_h of a chunk's steps (C, B, H) */
    tg_real *dhs;          /* LSTM backward with a projection: dL/dh_t of every step (T, B, P) */
} rnn_run;

/* A cell kind's forward gate kernel for step t on batch rows [b0, b1) and hidden units
 * [j0, j0 + len), from the step's product gh = h_prev·W_hhᵀ: gh's gate blocks are gs
 * apart and its rows grs apart. */
typedef void rnn_gates_fn(const rnn_run *r, int64_t t, int64_t b0, int64_t b1, int64_t j0,
                          int64_t len, const tg_real *gh, int64_t gs, int64_t grs);

/* Context of the per-step parallel loops (tg_parallel_for bodies). */
typedef struct rnn_step_ctx {
    const rnn_run *r;
    int64_t t;
    const tg_real *dh;
    tg_real *dc, *da_i, *da_h, *dh_prev;
    bool relu;           /* the plain RNN's activation */
    rnn_gates_fn *gates; /* rnn_forward_gated */
} rnn_step_ctx;

/* Forward step t of a cell with one hidden product (GRU, LSTM): gh = h_prev·W_hhᵀ, all gate
 * blocks, then the gates. Packed: each thread takes whole unit panels, its product and
 * its gates; else one tg_gemm, then the gates split by rows. */
void rnn_forward_gated(const rnn_run *r, int64_t t, rnn_gates_fn *gates);
/* Backward step t: `rows` (the gates on a range of batch rows of ctx, and with packed
 * weights those rows of dh_prev (+)= da_h·W_hh) split by rows; then, not packed,
 * dh_prev (+)= da_h·W_hh with one tg_gemm (add: dh_prev already holds the direct terms). */
void rnn_backward_gated(const rnn_run *r, rnn_step_ctx *ctx, tg_range_fn rows, bool add);
/* dh_prev[b0:b1] (+)= da_h[b0:b1]·W_hh, all P columns, from the packed W_hh (wb). */
void rnn_step_product_back(const rnn_run *r, int64_t b0, int64_t b1, const tg_real *da_h,
                           tg_real *dh_prev, bool add);
/* The grain for tg_parallel_for over a step's batch rows (gate kernels only): one thread
 * below RNN_PAR_MIN elements. */
static inline int64_t rnn_row_grain(int64_t B, int64_t H) { return B * H >= RNN_PAR_MIN ? 1 : B; }
/* The grain for a step's packed product and gates, over n pieces (panels or rows):
 * one thread when the product is small (a quarter of tg_gemm's per-CPU threshold: no
 * packing to share, the team's start is the whole overhead). */
static inline int64_t rnn_step_grain(const rnn_run *r, int64_t n) {
    return r->B * r->G * r->H * r->P >= tg_gemm_parallel_min() / 4 ? 1 : n;
}

/* Slots of hs / cs: the state before step t and the one after it. */
static inline int64_t rnn_prev_slot(const rnn_run *r, int64_t t) { return r->reverse ? t + 1 : t; }
static inline int64_t rnn_cur_slot(const rnn_run *r, int64_t t) { return r->reverse ? t : t + 1; }
static inline tg_real *rnn_h(const rnn_run *r, int64_t slot) { return r->hs + slot * r->B * r->P; }
static inline tg_real *rnn_c(const rnn_run *r, int64_t slot) { return r->cs + slot * r->B * r->H; }
static inline tg_real *rnn_acts(const rnn_run *r, int64_t t) { return r->acts + t * r->act_stride; }
/* Step t's rows of the chunk buffer: its input projections (forward) or da (backward). */
static inline tg_real *rnn_gi(const rnn_run *r, int64_t t) {
    return r->gi + t % r->chunk * r->B * r->G * r->H;
}

/* Batch row b of the backward step in ctx: what a gated cell's row kernel reads (the row's
 * saved activations, its states and dh) and writes (its pre-activation gradients, dh_prev
 * and, LSTM, dc). c_prev and c are NULL without cell states, dc without a dc. dh has H
 * features (with a projection it is dL/dm, m = o⊙tanh(c)); h_prev and dh_prev have P. */
typedef struct rnn_row {
    const tg_real *acts, *h_prev, *dh, *c_prev, *c;
    tg_real *dc, *da_i, *da_h, *dh_prev;
} rnn_row;
static inline rnn_row rnn_row_at(const rnn_step_ctx *ctx, int64_t b) {
    const rnn_run *r = ctx->r;
    const int64_t H = r->H, P = r->P, GH = r->G * H;
    const int64_t prev = rnn_prev_slot(r, ctx->t), cur = rnn_cur_slot(r, ctx->t);
    return (rnn_row){.acts = rnn_acts(r, ctx->t) + b * r->S * H,
                     .h_prev = rnn_h(r, prev) + b * P,
                     .dh = ctx->dh + b * H,
                     .c_prev = r->cs ? rnn_c(r, prev) + b * H : NULL,
                     .c = r->cs ? rnn_c(r, cur) + b * H : NULL,
                     .dc = ctx->dc ? ctx->dc + b * H : NULL,
                     .da_i = ctx->da_i + b * GH,
                     .da_h = ctx->da_h + b * GH,
                     .dh_prev = ctx->dh_prev + b * P};
}

/* What one cell kind supplies to the shared driver (autograd/rnn.c). */
typedef struct rnn_cell_impl {
    int saved;          /* S: activations kept per step, in units of B·H (LSTM with a
                         * projection: one more, m) */
    bool packed;        /* its steps use the packed products (rnn_run.packed) when T >= 2 */
    bool separate_da_h; /* the hidden side's pre-activation gradient differs from the input
                         * side's in its last (n) block (PyTorch GRU: r scales it): the step
                         * writes da_h into a (B, G·H) tile and keeps its n block in dhn */
    /* Step t: from h_prev (and c_prev) and gi_t, the hidden GEMM(s) and the gate kernel
     * write h_t (and c_t) into their slots and the step's activations into acts. */
    void (*forward_step)(const rnn_run *r, int64_t t);
    /* Step t backward: dh = dL/dh_t (B, P); dc = dL/dc_t in, dL/dc_{t-1} out (LSTM).
     * Writes the pre-activation gradients da_i (B, G·H) (input side: gi, b_ih) and
     * da_h (hidden side: the product with W_hh, b_hh; may equal da_i; separate_da_h: a
     * tile every step reuses, its n block also into r->dhn), and
     * dh_prev = dL/dh_{t-1} (B, P), including the GEMM da_h·W_hh. */
    void (*backward_step)(const rnn_run *r, int64_t t, const tg_real *dh, tg_real *dc,
                          tg_real *da_i, tg_real *da_h, tg_real *dh_prev);
    /* dW_hh += Σ_t da_h,tᵀ·(its hidden operand) over the n steps from time t0 (da_h: the
     * chunk's, from its first row); NULL = the usual one GEMM over the chunk's steps with
     * h_{t-1}. (Cho's GRU multiplies W_hn by r⊙h_{t-1}, not h_{t-1}.) */
    void (*weight_hh_grad)(const rnn_run *r, const tg_real *da_h, int64_t t0, int64_t n,
                           tg_real *dw_hh);
    /* Packed cells: the forward gate kernel and the backward row kernel (ctx: rnn_step_ctx;
     * the gates, then those rows of dh_prev (+)= da_h·W_hh), which the driver runs on a
     * range of batch rows through every step in one parallel region (rnn.c). */
    rnn_gates_fn *gates;
    tg_range_fn backward_rows;
} rnn_cell_impl;

extern const rnn_cell_impl tg_rnn_impl_tanh, tg_rnn_impl_relu;   /* autograd/rnn_plain.c */
extern const rnn_cell_impl tg_rnn_impl_gru, tg_rnn_impl_gru_cho; /* autograd/rnn_gru.c */
extern const rnn_cell_impl tg_rnn_impl_lstm;                     /* autograd/rnn_lstm.c */

#endif
