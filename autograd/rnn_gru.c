/* The fused GRU cell, forward and backward: PyTorch's form (reset after the hidden matmul)
 * and Cho et al. 2014's (reset before). The driver (rnn.c) does the input projections and
 * the weight gradients, a chunk of steps at a time; here is one step of each.
 *
 * Letters: x_t the input, h_prev = h_{t-1}, gate blocks [r | z | n] of width H in the
 * projections gi = x_t·W_ihᵀ (+ b_ih) and gh = h_prev·W_hhᵀ (+ b_hh). */
#include "rnn_internal.h"

/* =======================================================================================
 * PyTorch's GRU
 *     r = σ(a_r)    a_r = gi_r + b_ir + gh_r + b_hr
 *     z = σ(a_z)    a_z = gi_z + b_iz + gh_z + b_hz
 *     n = tanh(a_n) a_n = gi_n + b_in + r ⊙ hn,    hn = h_prev·W_hnᵀ + b_hn
 *     h = n + z ⊙ (h_prev − n)                     (PyTorch's evaluation order)
 * Saved per step and batch row: [r | z | n | hn]  (4H)
 * ===================================================================================== */
/* Step t for `rows` batch rows and `len` units: the gate kernel. gi, b_ih, b_hh, h_prev, h
 * and a (the rows' saved [r | z | n | hn]) start at the first unit, with gate blocks H apart
 * and rows G3 (gi), H (h_prev, h) and 4H (a) apart; gh (the step's product) has its gate
 * blocks gs and its rows grs apart. The rows are a loop inside the kernel, not a call each:
 * a unit panel's rows are short (nr units), and per call the kernel's dispatch and the
 * broadcasts of its polynomials' constants cost as much as the gates of one such row. */
TG_VEC_KERNEL
static void gru_forward_step(int64_t rows, int64_t len, int64_t H, int64_t gs, int64_t grs,
                             const tg_real *gi0, const tg_real *gh0, const tg_real *b_ih,
                             const tg_real *b_hh, const tg_real *h_prev0, tg_real *h0, tg_real *a) {
    for (int64_t b = 0; b < rows; b++) {
        const tg_real *gi = gi0 + b * 3 * H, *gh = gh0 + b * grs, *h_prev = h_prev0 + b * H;
        tg_real *h = h0 + b * H, *r = a + b * 4 * H, *z = r + H, *n = r + 2 * H, *hn = r + 3 * H;
        if (b + RNN_ROW_AHEAD < rows) {
            rnn_prefetch_blocks(gi + RNN_ROW_AHEAD * 3 * H, 3, H, len, false);
            rnn_prefetch_blocks(r + RNN_ROW_AHEAD * 4 * H, 4, H, len, true);
            rnn_prefetch_blocks(h + RNN_ROW_AHEAD * H, 1, H, len, true);
        }
        TG_SIMD
        for (int64_t j = 0; j < len; j++) {
            r[j] = rnn_sigmoid((gi[j] + b_ih[j]) + (gh[j] + b_hh[j]));
            z[j] = rnn_sigmoid((gi[H + j] + b_ih[H + j]) + (gh[gs + j] + b_hh[H + j]));
            hn[j] = gh[2 * gs + j] + b_hh[2 * H + j];
            n[j] = rnn_tanh((gi[2 * H + j] + b_ih[2 * H + j]) + r[j] * hn[j]);
            h[j] = n[j] + z[j] * (h_prev[j] - n[j]);
        }
    }
}

/* The gate kernel on rows [b0, b1) and units [j0, j0 + len), gh's rows grs apart. */
static void gru_gates(const rnn_run *rr, int64_t t, int64_t b0, int64_t b1, int64_t j0, int64_t len,
                      const tg_real *gh, int64_t gs, int64_t grs) {
    const int64_t H = rr->H, G3 = 3 * H;
    const tg_real *h_prev = rnn_h(rr, rnn_prev_slot(rr, t)), *gi = rnn_gi(rr, t);
    tg_real *h = rnn_h(rr, rnn_cur_slot(rr, t)), *acts = rnn_acts(rr, t);
    gru_forward_step(b1 - b0, len, H, gs, grs, gi + b0 * G3 + j0, gh + b0 * grs, rr->b_ih + j0,
                     rr->b_hh + j0, h_prev + b0 * H + j0, h + b0 * H + j0, acts + b0 * 4 * H + j0);
}

static void gru_forward(const rnn_run *rr, int64_t t) { rnn_forward_gated(rr, t, gru_gates); }

/* Backward of one step, given dh = dL/dh_t:
 *   h = (1 − z)⊙n + z⊙h_prev
 *     dn = dh ⊙ (1 − z)
 *     dz = dh ⊙ (h_prev − n)
 *     dh_prev += dh ⊙ z                      (the direct path, the "highway" of the GRU)
 *   n = tanh(a_n):        da_n = dn ⊙ (1 − n²)
 *   a_n = gi_n + b_in + r ⊙ hn:
 *     dr  = da_n ⊙ hn                         (hn = h_prev·W_hnᵀ + b_hn, saved)
 *     dhn = da_n ⊙ r                          (the n block on the hidden side)
 *   r = σ(a_r):           da_r = dr ⊙ r ⊙ (1 − r)          (σ' = σ(1 − σ))
 *   z = σ(a_z):           da_z = dz ⊙ z ⊙ (1 − z)
 * Input side  (gi, b_ih):  da_i = [da_r | da_z | da_n]
 * Hidden side (gh, b_hh):  da_h = [da_r | da_z | dhn]   — differs only in the n block,
 *                          so only dhn is kept for every step (the driver's dhn)
 *   dh_prev += da_h · W_hh                    (ONE GEMM, all three blocks)
 * (so the chunk's dW_hh and db_hh read da_i but in its n block, where they read dhn)
 * gru_backward_rows does it on a range of batch rows: the gates, then (packed) those rows
 * of dh_prev += da_h·W_hh — rows are independent, so a thread needs no other's da_h. */
TG_VEC_KERNEL
static void gru_backward_rows(int64_t b0, int64_t b1, void *ctx) {
    const rnn_step_ctx *c = ctx;
    const rnn_run *rr = c->r;
    const int64_t H = rr->H;
    for (int64_t b = b0; b < b1; b++) {
        const rnn_row w = rnn_row_at(c, b);
        const tg_real *r = w.acts, *z = r + H, *n = r + 2 * H, *hn = r + 3 * H;
        const tg_real *h_prev = w.h_prev, *dh = w.dh;
        tg_real *da_i = w.da_i, *da_h = w.da_h, *dh_prev = w.dh_prev;
        tg_real *dhn = rr->dhn + (c->t % rr->chunk * rr->B + b) * H; /* for dW_hn, db_hn */
        TG_SIMD
        for (int64_t j = 0; j < H; j++) {
            const tg_real dn = dh[j] * (1 - z[j]);
            const tg_real dz = dh[j] * (h_prev[j] - n[j]);
            const tg_real da_n = dn * (1 - n[j] * n[j]);
            const tg_real dr = da_n * hn[j];
            const tg_real da_r = dr * r[j] * (1 - r[j]);
            const tg_real da_z = dz * z[j] * (1 - z[j]);
            da_i[j] = da_r, da_i[H + j] = da_z, da_i[2 * H + j] = da_n;
            da_h[j] = da_r, da_h[H + j] = da_z, da_h[2 * H + j] = da_n * r[j];
            dhn[j] = da_h[2 * H + j];
            dh_prev[j] = dh[j] * z[j];
        }
    }
    if (rr->packed) rnn_step_product_back(rr, b0, b1, c->da_h, c->dh_prev, true);
}

static void gru_backward_step(const rnn_run *rr, int64_t t, const tg_real *dh_all, tg_real *dc,
                              tg_real *da_i_all, tg_real *da_h_all, tg_real *dh_prev_all) {
    rnn_step_ctx c = {rr, t, dh_all, dc, da_i_all, da_h_all, dh_prev_all, false, NULL};
    rnn_backward_gated(rr, &c, gru_backward_rows, true);
}

const rnn_cell_impl tg_rnn_impl_gru = {
    4, true, true, gru_forward, gru_backward_step, NULL, gru_gates, gru_backward_rows};

/* =======================================================================================
 * Cho et al. 2014 (Keras reset_after=False): the reset gate scales h_prev before W_hn
 *     r = σ(a_r), z = σ(a_z)                       as above
 *     n = tanh(a_n)   a_n = gi_n + b_in + (r ⊙ h_prev)·W_hnᵀ + b_hn
 *     h = n + z ⊙ (h_prev − n)
 * n needs r first, so a step takes two GEMMs: h_prev·W_h[rz]ᵀ, then (r⊙h_prev)·W_hnᵀ.
 * Saved per step and batch row: [r | z | n | rh]  with rh = r ⊙ h_prev  (4H)
 * ===================================================================================== */
/* Step t for one batch row, in two kernels around the second GEMM (gru_cho_forward):
 * r, z and rh = r⊙h_prev first, then the candidate n and h; a = the row's saved
 * [r | z | n | rh]. */
TG_VEC_KERNEL
static void gru_cho_forward_step(int64_t H, const tg_real *gi, const tg_real *gh,
                                 const tg_real *b_ih, const tg_real *b_hh, const tg_real *h_prev,
                                 tg_real *a) {
    tg_real *r = a, *z = a + H, *rh = a + 3 * H;
    TG_SIMD
    for (int64_t j = 0; j < H; j++) {
        r[j] = rnn_sigmoid((gi[j] + b_ih[j]) + (gh[j] + b_hh[j]));
        z[j] = rnn_sigmoid((gi[H + j] + b_ih[H + j]) + (gh[H + j] + b_hh[H + j]));
        rh[j] = r[j] * h_prev[j];
    }
}

TG_VEC_KERNEL
static void gru_cho_candidate_step(int64_t H, const tg_real *gi_n, const tg_real *gh_n,
                                   const tg_real *b_in, const tg_real *b_hn, const tg_real *h_prev,
                                   tg_real *h, tg_real *a) {
    const tg_real *z = a + H;
    tg_real *n = a + 2 * H;
    TG_SIMD
    for (int64_t j = 0; j < H; j++) {
        n[j] = rnn_tanh((gi_n[j] + b_in[j]) + (gh_n[j] + b_hn[j]));
        h[j] = n[j] + z[j] * (h_prev[j] - n[j]);
    }
}

/* The first kernel (r, z, rh) on rows [b0, b1). */
static void gru_cho_forward_rows(int64_t b0, int64_t b1, void *ctx) {
    const rnn_step_ctx *c = ctx;
    const rnn_run *rr = c->r;
    const int64_t H = rr->H, G3 = 3 * H;
    const tg_real *h_prev = rnn_h(rr, rnn_prev_slot(rr, c->t)), *gi = rnn_gi(rr, c->t);
    tg_real *gh = rr->work, *acts = rnn_acts(rr, c->t);
    for (int64_t b = b0; b < b1; b++)
        gru_cho_forward_step(H, gi + b * G3, gh + b * G3, rr->b_ih, rr->b_hh, h_prev + b * H,
                             acts + b * 4 * H);
}

/* The second kernel (n, h) on rows [b0, b1). */
static void gru_cho_candidate_rows(int64_t b0, int64_t b1, void *ctx) {
    const rnn_step_ctx *c = ctx;
    const rnn_run *rr = c->r;
    const int64_t H = rr->H, G3 = 3 * H;
    const tg_real *h_prev = rnn_h(rr, rnn_prev_slot(rr, c->t)), *gi = rnn_gi(rr, c->t);
    tg_real *h = rnn_h(rr, rnn_cur_slot(rr, c->t)), *gh = rr->work, *acts = rnn_acts(rr, c->t);
    for (int64_t b = b0; b < b1; b++)
        gru_cho_candidate_step(H, gi + b * G3 + 2 * H, gh + b * G3 + 2 * H, rr->b_ih + 2 * H,
                               rr->b_hh + 2 * H, h_prev + b * H, h + b * H, acts + b * 4 * H);
}

static void gru_cho_forward(const rnn_run *rr, int64_t t) {
    const int64_t B = rr->B, H = rr->H, G3 = 3 * H;
    const tg_real *h_prev = rnn_h(rr, rnn_prev_slot(rr, t));
    tg_real *gh = rr->work, *acts = rnn_acts(rr, t);
    rnn_step_ctx c = {.r = rr, .t = t};
    /* the r and z blocks of gh: h_prev·W_h[rz]ᵀ, into columns [0, 2H) of work */
    tg_gemm(false, true, B, 2 * H, H, 1, h_prev, H, rr->w_hh, H, 0, gh, G3);
    tg_parallel_for(B, rnn_row_grain(B, H), gru_cho_forward_rows, &c);
    /* the n block: (r⊙h_prev)·W_hnᵀ, into columns [2H, 3H) of work */
    tg_gemm(false, true, B, H, H, 1, acts + 3 * H, 4 * H, rr->w_hh + 2 * H * H, H, 0, gh + 2 * H,
            G3);
    tg_parallel_for(B, rnn_row_grain(B, H), gru_cho_candidate_rows, &c);
}

/* Backward of one step, given dh = dL/dh_t:
 *     dn = dh ⊙ (1 − z),  dz = dh ⊙ (h_prev − n),  dh_prev = dh ⊙ z     (as above)
 *     da_n = dn ⊙ (1 − n²)
 *   a_n = gi_n + b_in + rh·W_hnᵀ + b_hn, rh = r ⊙ h_prev:
 *     drh = da_n · W_hn                        (a GEMM: rh is a matrix operand)
 *     dr  = drh ⊙ h_prev,   dh_prev += drh ⊙ r
 *     da_r = dr ⊙ r ⊙ (1 − r),  da_z = dz ⊙ z ⊙ (1 − z)
 *   dh_prev += [da_r | da_z] · W_h[rz]         (a second GEMM)
 * b_hn sits outside the product, so both sides share da = [da_r | da_z | da_n]; only
 * dW_hn differs: it pairs da_n with rh, not h_prev (weight_hh_grad below). */
/* The first backward kernel on rows [b0, b1): dn, dz, da_n, da_z, the direct dh_prev. */
static void gru_cho_backward_gates(int64_t b0, int64_t b1, void *ctx) {
    const rnn_step_ctx *c = ctx;
    const int64_t H = c->r->H;
    for (int64_t b = b0; b < b1; b++) {
        const rnn_row w = rnn_row_at(c, b);
        const tg_real *z = w.acts + H, *n = w.acts + 2 * H, *h_prev = w.h_prev, *dh = w.dh;
        tg_real *da = w.da_i, *dh_prev = w.dh_prev;
        TG_SIMD
        for (int64_t j = 0; j < H; j++) {
            const tg_real dn = dh[j] * (1 - z[j]);
            const tg_real dz = dh[j] * (h_prev[j] - n[j]);
            da[2 * H + j] = dn * (1 - n[j] * n[j]);
            da[H + j] = dz * z[j] * (1 - z[j]);
            dh_prev[j] = dh[j] * z[j];
        }
    }
}

/* The second backward kernel on rows [b0, b1): through rh = r ⊙ h_prev (drh in work). */
static void gru_cho_backward_reset(int64_t b0, int64_t b1, void *ctx) {
    const rnn_step_ctx *c = ctx;
    const int64_t H = c->r->H;
    for (int64_t b = b0; b < b1; b++) {
        const rnn_row w = rnn_row_at(c, b);
        const tg_real *r = w.acts, *h_prev = w.h_prev, *drh = c->r->work + b * H;
        tg_real *da = w.da_i, *dh_prev = w.dh_prev;
        TG_SIMD
        for (int64_t j = 0; j < H; j++) {
            const tg_real dr = drh[j] * h_prev[j];
            dh_prev[j] += drh[j] * r[j];
            da[j] = dr * r[j] * (1 - r[j]);
        }
    }
}

static void gru_cho_backward_step(const rnn_run *rr, int64_t t, const tg_real *dh_all, tg_real *dc,
                                  tg_real *da_all, tg_real *da_h, tg_real *dh_prev_all) {
    (void)da_h;
    const int64_t B = rr->B, H = rr->H, G3 = 3 * H;
    tg_real *drh_all = rr->work; /* (B, H) scratch */
    rnn_step_ctx c = {rr, t, dh_all, dc, da_all, da_all, dh_prev_all, false, NULL};
    tg_parallel_for(B, rnn_row_grain(B, H), gru_cho_backward_gates, &c);
    /* drh = da_n · W_hn */
    tg_gemm(false, false, B, H, H, 1, da_all + 2 * H, G3, rr->w_hh + 2 * H * H, H, 0, drh_all, H);
    tg_parallel_for(B, rnn_row_grain(B, H), gru_cho_backward_reset, &c);
    /* dh_prev += [da_r | da_z] · W_h[rz] */
    tg_gemm(false, false, B, H, 2 * H, 1, da_all, G3, rr->w_hh, H, 1, dh_prev_all, H);
}

/* dW_h[rz] += [DA_r | DA_z]ᵀ · H_prev   and   dW_hn += DA_nᵀ · RH, over the n steps of a
 * chunk from time t0 (da: the chunk's) */
static void gru_cho_weight_hh_grad(const rnn_run *rr, const tg_real *da, int64_t t0, int64_t n,
                                   tg_real *dw_hh) {
    const int64_t rows = n * rr->B, H = rr->H, G3 = 3 * H;
    const tg_real *h_prev = rnn_h(rr, rnn_prev_slot(rr, t0)); /* times t0.. in order */
    tg_gemm(true, false, 2 * H, H, rows, 1, da, G3, h_prev, H, 1, dw_hh, H);
    /* rh of those steps: column block 3H of acts, rows of stride 4H, steps contiguous */
    tg_gemm(true, false, H, H, rows, 1, da + 2 * H, G3, rnn_acts(rr, t0) + 3 * H, 4 * H, 1,
            dw_hh + 2 * H * H, H);
}

const rnn_cell_impl tg_rnn_impl_gru_cho = {
    4, false, false, gru_cho_forward, gru_cho_backward_step, gru_cho_weight_hh_grad, NULL, NULL};
