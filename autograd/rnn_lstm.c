/* The fused LSTM cell, forward and backward. The driver (rnn.c) does the input projections
 * and the weight gradients, a chunk of steps at a time; here is one step.
 *
 *     i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
 *         with [a_i | a_f | a_g | a_o] = gi + b_ih + gh + b_hh,  gh = h_prev·W_hhᵀ
 *     c = f ⊙ c_prev + i ⊙ g
 *     h = o ⊙ tanh(c)
 * Saved per step and batch row: [i | f | g | o]  (4H); c itself is in cs, and the backward
 * takes tanh(c) again from it (one tanh per element costs less than the T·B·H values a
 * saved copy would hold for the whole backward).
 *
 * With projections (PyTorch's proj_size P < H, r->w_hr set) the gate kernel's o ⊙ tanh(c)
 * is not h but m, and one more GEMM per step makes h:
 *     m = o ⊙ tanh(c)          (B, H)     saved after the gates: [i | f | g | o | m]  (5H)
 *     h = m · W_hrᵀ            (B, P)     W_hr (P, H), no bias
 * h (P features) is the state the next step's gh = h·W_hhᵀ reads (W_hh is (4H, P)) and
 * the output; c keeps H. The projection stays in the fused path: the gates do not change
 * (they write m where they wrote h), and the step's GEMM is tg_gemm's like the others. */
#include "rnn_internal.h"

/* Step t for `rows` batch rows and `len` units: the gate kernel. gi, b_ih, b_hh, c_prev, h,
 * c and a (the rows' saved [i | f | g | o], and m with a projection) start at the first
 * unit, with gate blocks H apart and rows 4H (gi), ars (a), hrs (h, or m) and H (c_prev, c)
 * apart; gh (the step's product) has its gate blocks gs and its rows grs apart. The rows loop
 * inside the kernel (as the GRU's). */
TG_VEC_KERNEL
static void lstm_forward_step(int64_t rows, int64_t len, int64_t H, int64_t gs, int64_t grs,
                              int64_t ars, int64_t hrs, const tg_real *gi, const tg_real *gh,
                              const tg_real *b_ih, const tg_real *b_hh, const tg_real *c_prev,
                              tg_real *h, tg_real *c, tg_real *a) {
    for (int64_t b = 0; b < rows; b++) {
        const tg_real *gib = gi + b * 4 * H, *ghb = gh + b * grs, *cp = c_prev + b * H;
        tg_real *hb = h + b * hrs, *cb = c + b * H;
        tg_real *i = a + b * ars, *f = i + H, *g = i + 2 * H, *o = i + 3 * H;
        if (b + RNN_ROW_AHEAD < rows) {
            rnn_prefetch_blocks(gib + RNN_ROW_AHEAD * 4 * H, 4, H, len, false);
            rnn_prefetch_blocks(cp + RNN_ROW_AHEAD * H, 1, H, len, false);
            rnn_prefetch_blocks(i + RNN_ROW_AHEAD * ars, 4, H, len, true);
            rnn_prefetch_blocks(hb + RNN_ROW_AHEAD * hrs, 1, H, len, true);
            rnn_prefetch_blocks(cb + RNN_ROW_AHEAD * H, 1, H, len, true);
        }
        TG_SIMD
        for (int64_t j = 0; j < len; j++) {
            i[j] = rnn_sigmoid((gib[j] + b_ih[j]) + (ghb[j] + b_hh[j]));
            f[j] = rnn_sigmoid((gib[H + j] + b_ih[H + j]) + (ghb[gs + j] + b_hh[H + j]));
            g[j] =
                rnn_tanh((gib[2 * H + j] + b_ih[2 * H + j]) + (ghb[2 * gs + j] + b_hh[2 * H + j]));
            o[j] = rnn_sigmoid((gib[3 * H + j] + b_ih[3 * H + j]) +
                               (ghb[3 * gs + j] + b_hh[3 * H + j]));
            cb[j] = f[j] * cp[j] + i[j] * g[j];
            const tg_real tc = rnn_tanh(cb[j]);
            hb[j] = o[j] * tc;
        }
    }
}

/* The gate kernel on rows [b0, b1) and units [j0, j0 + len), gh's rows grs apart. Its
 * o ⊙ tanh(c) goes to h's slot, or with a projection to m, the last block of the row's
 * saved activations. */
static void lstm_gates(const rnn_run *rr, int64_t t, int64_t b0, int64_t b1, int64_t j0,
                       int64_t len, const tg_real *gh, int64_t gs, int64_t grs) {
    const int64_t H = rr->H, G4 = 4 * H, SH = rr->S * H;
    const int64_t prev = rnn_prev_slot(rr, t), cur = rnn_cur_slot(rr, t);
    const tg_real *c_prev = rnn_c(rr, prev), *gi = rnn_gi(rr, t);
    tg_real *c = rnn_c(rr, cur), *acts = rnn_acts(rr, t);
    tg_real *h = rr->w_hr ? acts + 4 * H : rnn_h(rr, cur);
    const int64_t hrs = rr->w_hr ? SH : H; /* h's (or m's) rows */
    lstm_forward_step(b1 - b0, len, H, gs, grs, SH, hrs, gi + b0 * G4 + j0, gh + b0 * grs,
                      rr->b_ih + j0, rr->b_hh + j0, c_prev + b0 * H + j0, h + b0 * hrs + j0,
                      c + b0 * H + j0, acts + b0 * SH + j0);
}

static void lstm_forward(const rnn_run *rr, int64_t t) {
    rnn_forward_gated(rr, t, lstm_gates);
    if (!rr->w_hr) return;
    /* the projection: h = m·W_hrᵀ, (B, H)·(H, P), m's rows S·H apart in the activations */
    const int64_t H = rr->H, P = rr->P;
    tg_gemm(false, true, rr->B, P, H, 1, rnn_acts(rr, t) + 4 * H, rr->S * H, rr->w_hr, H, 0,
            rnn_h(rr, rnn_cur_slot(rr, t)), P);
}

/* Backward of one step, given dh = dL/dh_t and dc = dL/dc_t from later steps (and c_n).
 * With a projection, h = m·W_hrᵀ with m = o ⊙ tanh(c) first: h_t (P) reaches the loss
 * through the output at t and through step t+1, both already summed into dh (B, P), and
 * W_hr through every step's h_t, so
 *     dm     = dh · W_hr                          (B, P)·(P, H): ONE GEMM per step
 *     dW_hr += Σ_t dh_tᵀ · m_t                     (P, H): ONE GEMM over all T·B rows,
 *                                                 in the driver, from the dh_t kept in dhs
 * (per column vector, h_t = W_hr·m_t: dL/dm_t = W_hrᵀ·dh_t and dL/dW_hr = Σ_t dh_t·m_tᵀ)
 * and dm takes the place of dh below (without a projection m is h, and dm is dh):
 *   m = o ⊙ tanh(c):
 *     do  = dh ⊙ tanh(c)
 *     dc += dh ⊙ o ⊙ (1 − tanh²(c))          (c reaches the loss through h and through c_{t+1})
 *   c = f ⊙ c_prev + i ⊙ g:
 *     di = dc ⊙ g,   dg = dc ⊙ i,   df = dc ⊙ c_prev
 *     dc_prev = dc ⊙ f                        (the cell's direct path: only a scaling by f)
 *   the activations:
 *     da_i = di ⊙ i ⊙ (1 − i)     da_f = df ⊙ f ⊙ (1 − f)
 *     da_g = dg ⊙ (1 − g²)         da_o = do ⊙ o ⊙ (1 − o)
 * The four pre-activations are plain sums gi + gh, so both sides share da, and
 *   dh_prev = da · W_hh                       (ONE GEMM; h_prev has no direct path here)
 * lstm_backward_rows does it on a range of batch rows: the gates, then (packed) those rows
 * of dh_prev = da·W_hh — rows are independent, so a thread needs no other's da. */
TG_VEC_KERNEL
static void lstm_backward_rows(int64_t b0, int64_t b1, void *ctx) {
    const rnn_step_ctx *cx = ctx;
    const rnn_run *rr = cx->r;
    const int64_t H = rr->H;
    for (int64_t b = b0; b < b1; b++) {
        const rnn_row w = rnn_row_at(cx, b);
        const tg_real *i = w.acts, *f = i + H, *g = i + 2 * H, *o = i + 3 * H;
        const tg_real *c_prev = w.c_prev, *c = w.c, *dh = w.dh;
        tg_real *dc = w.dc, *da = w.da_i;
        TG_SIMD
        for (int64_t j = 0; j < H; j++) {
            const tg_real tc = rnn_tanh(c[j]); /* the forward's, recomputed (not saved) */
            const tg_real d_o = dh[j] * tc;    /* dh: dm with a projection (rnn_row_at) */
            const tg_real d_c = dc[j] + dh[j] * o[j] * (1 - tc * tc);
            const tg_real d_i = d_c * g[j], d_g = d_c * i[j], d_f = d_c * c_prev[j];
            dc[j] = d_c * f[j]; /* becomes dL/dc_{t-1} */
            da[j] = d_i * i[j] * (1 - i[j]);
            da[H + j] = d_f * f[j] * (1 - f[j]);
            da[2 * H + j] = d_g * (1 - g[j] * g[j]);
            da[3 * H + j] = d_o * o[j] * (1 - o[j]);
        }
    }
    if (rr->packed) rnn_step_product_back(rr, b0, b1, cx->da_i, cx->dh_prev, false);
}

static void lstm_backward_step(const rnn_run *rr, int64_t t, const tg_real *dh_all, tg_real *dc_all,
                               tg_real *da_all, tg_real *da_h, tg_real *dh_prev_all) {
    (void)da_h;
    if (rr->w_hr) { /* dm = dh·W_hr into the backward's work tile (B, H); dh kept for dW_hr */
        const int64_t B = rr->B, H = rr->H, P = rr->P;
        memcpy(rr->dhs + t * B * P, dh_all, (size_t)(B * P) * sizeof(tg_real));
        tg_gemm(false, false, B, H, P, 1, dh_all, P, rr->w_hr, H, 0, rr->work, H);
        dh_all = rr->work;
    }
    rnn_step_ctx c = {rr, t, dh_all, dc_all, da_all, da_all, dh_prev_all, false, NULL};
    rnn_backward_gated(rr, &c, lstm_backward_rows, false);
}

const rnn_cell_impl tg_rnn_impl_lstm = {
    4, true, false, lstm_forward, lstm_backward_step, NULL, lstm_gates, lstm_backward_rows};
