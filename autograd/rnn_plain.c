/* The plain RNN cell (tanh or relu), forward and backward. The driver (rnn.c) does the input
 * projections and the weight gradients, a chunk of steps at a time; here is one step.
 *
 *     h_t = act(a),  a = gi_t + b_ih + h_{t-1}·W_hhᵀ + b_hh */
#include "rnn_internal.h"

/* Step t for one batch row: the gate kernel (rnn_forward runs it on every row). */
TG_VEC_KERNEL
static void rnn_forward_step(int64_t H, const tg_real *gi, const tg_real *gh, const tg_real *b_ih,
                             const tg_real *b_hh, tg_real *h, bool relu) {
    TG_SIMD
    for (int64_t j = 0; j < H; j++) {
        const tg_real a = (gi[j] + b_ih[j]) + (gh[j] + b_hh[j]);
        h[j] = relu ? (a > 0 ? a : 0) : rnn_tanh(a);
    }
}

/* The gate kernel on batch rows [b0, b1) (ctx: rnn_step_ctx). */
static void rnn_forward_rows(int64_t b0, int64_t b1, void *ctx) {
    const rnn_step_ctx *c = ctx;
    const rnn_run *r = c->r;
    const int64_t H = r->H;
    const tg_real *gi = rnn_gi(r, c->t), *gh = r->work;
    tg_real *h = rnn_h(r, rnn_cur_slot(r, c->t));
    for (int64_t b = b0; b < b1; b++)
        rnn_forward_step(H, gi + b * H, gh + b * H, r->b_ih, r->b_hh, h + b * H, c->relu);
}

static void rnn_forward(const rnn_run *r, int64_t t, bool relu) {
    const int64_t B = r->B, H = r->H;
    const tg_real *h_prev = rnn_h(r, rnn_prev_slot(r, t));
    tg_gemm(false, true, B, H, H, 1, h_prev, H, r->w_hh, H, 0, r->work, H); /* the step's GEMM */
    rnn_step_ctx c = {.r = r, .t = t, .relu = relu};
    tg_parallel_for(B, rnn_row_grain(B, H), rnn_forward_rows, &c);
}

static void rnn_tanh_forward(const rnn_run *r, int64_t t) { rnn_forward(r, t, false); }
static void rnn_relu_forward(const rnn_run *r, int64_t t) { rnn_forward(r, t, true); }

/* h = tanh(a):  dh/da = 1 − tanh²(a) = 1 − h²,   so  da = dh ⊙ (1 − h²)
 * h = relu(a):  dh/da = 1 where a > 0 (⇔ h > 0), else 0 (PyTorch's choice at a = 0)
 * a = gi + b_ih + h_prev·W_hhᵀ + b_hh:  dh_prev = da·W_hh; the same da feeds both sides. */
static void rnn_backward_step(const rnn_run *r, int64_t t, const tg_real *dh, tg_real *da,
                              tg_real *dh_prev, bool relu) {
    const int64_t B = r->B, H = r->H;
    const tg_real *h = rnn_h(r, rnn_cur_slot(r, t));
    TG_SIMD
    for (int64_t k = 0; k < B * H; k++)
        da[k] = relu ? (h[k] > 0 ? dh[k] : 0) : dh[k] * (1 - h[k] * h[k]);
    tg_gemm(false, false, B, H, H, 1, da, H, r->w_hh, H, 0, dh_prev, H);
}

static void rnn_tanh_backward_step(const rnn_run *r, int64_t t, const tg_real *dh, tg_real *dc,
                                   tg_real *da_i, tg_real *da_h, tg_real *dh_prev) {
    (void)dc, (void)da_h;
    rnn_backward_step(r, t, dh, da_i, dh_prev, false);
}

static void rnn_relu_backward_step(const rnn_run *r, int64_t t, const tg_real *dh, tg_real *dc,
                                   tg_real *da_i, tg_real *da_h, tg_real *dh_prev) {
    (void)dc, (void)da_h;
    rnn_backward_step(r, t, dh, da_i, dh_prev, true);
}

/* h_t itself is all the backward needs, and it is in hs: nothing saved per step. */
const rnn_cell_impl tg_rnn_impl_tanh = {
    0, false, false, rnn_tanh_forward, rnn_tanh_backward_step, NULL, NULL, NULL};
const rnn_cell_impl tg_rnn_impl_relu = {
    0, false, false, rnn_relu_forward, rnn_relu_backward_step, NULL, NULL, NULL};
