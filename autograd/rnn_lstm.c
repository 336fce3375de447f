/* The fused LSTM cell, forward and backward. The driver (rnn.c) does the input projections
 * of all steps and the weight gradients over all steps; here is one step.
 *
 *     i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
 *         with [a_i | a_f | a_g | a_o] = gi + b_ih + gh + b_hh,  gh = h_prev·W_hhᵀ
 *     c = f ⊙ c_prev + i ⊙ g
 *     h = o ⊙ tanh(c)
 * Saved per step and batch row: [i | f | g | o | tanh(c)]  (5H); c itself is in cs. */
#include "rnn_internal.h"

/* Step t for one batch row: the gate kernel (lstm_forward runs the step's GEMM, then this
 * on every row); a = the row's saved [i | f | g | o | tanh(c)]. */
RNN_ROW_KERNEL
static void lstm_forward_step(int64_t H, const tg_real *gi, const tg_real *gh, const tg_real *b_ih,
                              const tg_real *b_hh, const tg_real *c_prev, tg_real *h, tg_real *c,
                              tg_real *a) {
    tg_real *i = a, *f = a + H, *g = a + 2 * H, *o = a + 3 * H, *tc = a + 4 * H;
    RNN_SIMD
    for (int64_t j = 0; j < H; j++) {
        i[j] = rnn_sigmoid((gi[j] + b_ih[j]) + (gh[j] + b_hh[j]));
        f[j] = rnn_sigmoid((gi[H + j] + b_ih[H + j]) + (gh[H + j] + b_hh[H + j]));
        g[j] = rnn_tanh((gi[2 * H + j] + b_ih[2 * H + j]) + (gh[2 * H + j] + b_hh[2 * H + j]));
        o[j] = rnn_sigmoid((gi[3 * H + j] + b_ih[3 * H + j]) + (gh[3 * H + j] + b_hh[3 * H + j]));
        c[j] = f[j] * c_prev[j] + i[j] * g[j];
        tc[j] = rnn_tanh(c[j]);
        h[j] = o[j] * tc[j];
    }
}

static void lstm_forward(const rnn_run *rr, int64_t t) {
    const int64_t B = rr->B, H = rr->H, G4 = 4 * H;
    const int64_t prev = rnn_prev_slot(rr, t), cur = rnn_cur_slot(rr, t);
    const tg_real *h_prev = rnn_h(rr, prev), *c_prev = rnn_c(rr, prev), *gi = rnn_gi(rr, t);
    tg_real *h = rnn_h(rr, cur), *c = rnn_c(rr, cur), *gh = rr->work, *acts = rnn_acts(rr, t);
    /* gh = h_prev·W_hhᵀ for the four blocks: the step's one GEMM */
    tg_gemm(false, true, B, G4, H, 1, h_prev, H, rr->w_hh, H, 0, gh, G4);
    RNN_OMP(omp parallel for schedule(static) if (B * H >= RNN_PAR_MIN))
    for (int64_t b = 0; b < B; b++)
        lstm_forward_step(H, gi + b * G4, gh + b * G4, rr->b_ih, rr->b_hh, c_prev + b * H,
                          h + b * H, c + b * H, acts + b * 5 * H);
}

/* Backward of one step, given dh = dL/dh_t and dc = dL/dc_t from later steps (and c_n):
 *   h = o ⊙ tanh(c):
 *     do  = dh ⊙ tanh(c)
 *     dc += dh ⊙ o ⊙ (1 − tanh²(c))          (c reaches the loss through h and through c_{t+1})
 *   c = f ⊙ c_prev + i ⊙ g:
 *     di = dc ⊙ g,   dg = dc ⊙ i,   df = dc ⊙ c_prev
 *     dc_prev = dc ⊙ f                        (the cell's direct path: only a scaling by f)
 *   the activations:
 *     da_i = di ⊙ i ⊙ (1 − i)     da_f = df ⊙ f ⊙ (1 − f)
 *     da_g = dg ⊙ (1 − g²)         da_o = do ⊙ o ⊙ (1 − o)
 * The four pre-activations are plain sums gi + gh, so both sides share da, and
 *   dh_prev = da · W_hh                       (ONE GEMM; h_prev has no direct path here) */
static void lstm_backward_step(const rnn_run *rr, int64_t t, const tg_real *dh_all, tg_real *dc_all,
                               tg_real *da_all, tg_real *da_h, tg_real *dh_prev_all) {
    (void)da_h;
    const int64_t B = rr->B, H = rr->H, G4 = 4 * H;
    const tg_real *c_prev_all = rnn_c(rr, rnn_prev_slot(rr, t)), *acts_all = rnn_acts(rr, t);
    RNN_OMP(omp parallel for schedule(static) if (B * H >= RNN_PAR_MIN))
    for (int64_t b = 0; b < B; b++) {
        const tg_real *a = acts_all + b * 5 * H, *c_prev = c_prev_all + b * H, *dh = dh_all + b * H;
        const tg_real *i = a, *f = a + H, *g = a + 2 * H, *o = a + 3 * H, *tc = a + 4 * H;
        tg_real *dc = dc_all + b * H, *da = da_all + b * G4;
        RNN_SIMD
        for (int64_t j = 0; j < H; j++) {
            const tg_real d_o = dh[j] * tc[j];
            const tg_real d_c = dc[j] + dh[j] * o[j] * (1 - tc[j] * tc[j]);
            const tg_real d_i = d_c * g[j], d_g = d_c * i[j], d_f = d_c * c_prev[j];
            dc[j] = d_c * f[j]; /* becomes dL/dc_{t-1} */
            da[j] = d_i * i[j] * (1 - i[j]);
            da[H + j] = d_f * f[j] * (1 - f[j]);
            da[2 * H + j] = d_g * (1 - g[j] * g[j]);
            da[3 * H + j] = d_o * o[j] * (1 - o[j]);
        }
    }
    tg_gemm(false, false, B, H, G4, 1, da_all, G4, rr->w_hh, H, 0, dh_prev_all, H);
}

const rnn_cell_impl tg_rnn_impl_lstm = {5, false, lstm_forward, lstm_backward_step, NULL};
