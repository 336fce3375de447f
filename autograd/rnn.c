/* Fused recurrent ops: one tape node per cell step (tg_cell_step_fused) or per layer and
 * direction over a whole sequence (tg_rnn_sequence_fused), forward and backward side by side.
 * This file holds the driver every cell kind shares, and the plain RNN (tanh / relu) cell;
 * the GRU gates live in rnn_gru.c and the LSTM gates in rnn_lstm.c.
 *
 * Forward (per layer and direction):
 *     gi = X·W_ihᵀ                          all T steps in ONE GEMM, X = (T·B, I)
 *     for each step t (t = 0..T-1, or T-1..0 in reverse):
 *         gh = h_{t-1}·W_hhᵀ                ONE GEMM (B, G·H)
 *         h_t (, c_t) = gates(gi_t + b_ih, gh + b_hh, h_{t-1} (, c_{t-1}))   ONE kernel
 *
 * Backward (backpropagation through time). h_t feeds two consumers: the output at t and
 * step t+1 (in processing order), so its gradient is the sum
 *     dh_t = dL/doutput_t + dL/dh_t (through step t+1)        (+ dL/dh_n at the last step)
 * Walking the steps in reverse, each step turns dh_t (and dc_t) into the gradients of its
 * gate pre-activations da_t (one kernel, derived per cell kind) and then
 *     dh_{t-1} = (direct terms) + da_h,t·W_hh                 ONE GEMM (B, H)
 * Every weight gradient is a sum over steps of an outer product, so with the da_t of all
 * steps stacked into DA (T·B, G·H):
 *     dW_ih += DAᵀ·X      dx += DA·W_ih      dW_hh += DA_hᵀ·H_prev      (three GEMMs)
 *     db_ih += Σ_rows DA  db_hh += Σ_rows DA_h
 * where H_prev (T·B, H) stacks h_{t-1} of every step (contiguous, see rnn_internal.h).
 * An LSTM with projections (rnn_lstm.c) has one more GEMM per step, h_t = m_t·W_hrᵀ, and
 * one more over all steps in the backward, dW_hr += DHᵀ·M; its states h have P features
 * where the other cells' have H (r->P; W_hh is (G·H, P)).
 *
 * GRU and LSTM sequences (T >= 2) take the products with a weight from the weight packed
 * ONCE per run (tg_gemm_pack_b: W_hhᵀ for the forward steps, W_hh for the backward steps,
 * W_ihᵀ, W_ih) with tg_gemm_prepacked, which reads the other operand in place: tg_gemm would
 * pack W_hh again at every step. The weight gradients are tg_gemm's.
 *
 * Memory: DA is written over gi (the forward's input projections, which the backward never
 * reads); the GRU keeps of DA_h only its n block; what only one pass uses (the packed
 * weights, the work tiles, gi without a backward to come) goes back to the arena when that
 * pass is done. Threads: with packed weights and a batch of at least a register tile per
 * thread, one parallel region per pass, each thread its batch rows through every step with
 * no barrier (the rows are independent sequences; see "one parallel region per sequence");
 * otherwise a forward step splits the hidden units (each thread: the product for its units,
 * then their gates) and a backward step the batch rows. The whole-sequence products split
 * rows of the result. Every element is computed by one thread in a fixed order, so results
 * do not depend on the thread count. */
#include "rnn_internal.h"

#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

int tg_cell_gate_count(tg_cell_kind kind) {
    switch (kind) {
    case TG_CELL_RNN_TANH:
    case TG_CELL_RNN_RELU:
        return 1;
    case TG_CELL_GRU:
    case TG_CELL_GRU_CHO:
        return 3;
    case TG_CELL_LSTM:
        return 4;
    }
    tg_fail("tg_cell_gate_count: unknown cell kind %d", (int)kind);
}

const char *tg_cell_kind_name(tg_cell_kind kind) {
    switch (kind) {
    case TG_CELL_RNN_TANH:
        return "rnn_tanh";
    case TG_CELL_RNN_RELU:
        return "rnn_relu";
    case TG_CELL_GRU:
        return "gru";
    case TG_CELL_GRU_CHO:
        return "gru_cho";
    case TG_CELL_LSTM:
        return "lstm";
    }
    return "?";
}

/* `op`: the public function given the kind, for the message. */
static const rnn_cell_impl *impl_of(const char *op, tg_cell_kind kind) {
    switch (kind) {
    case TG_CELL_RNN_TANH:
        return &tg_rnn_impl_tanh;
    case TG_CELL_RNN_RELU:
        return &tg_rnn_impl_relu;
    case TG_CELL_GRU:
        return &tg_rnn_impl_gru;
    case TG_CELL_GRU_CHO:
        return &tg_rnn_impl_gru_cho;
    case TG_CELL_LSTM:
        return &tg_rnn_impl_lstm;
    }
    tg_fail("%s: unknown cell kind %d", op, (int)kind);
}

/* ---------------------------------------------------------------------------------------
 * The plain RNN cell:  h_t = act(a),  a = gi_t + b_ih + h_{t-1}·W_hhᵀ + b_hh
 * ------------------------------------------------------------------------------------- */
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

/* ---------------------------------------------------------------------------------------
 * The products from weights packed once per run (rnn_internal.h)
 * ------------------------------------------------------------------------------------- */
/* op(W) (k x n; trans: W stored n x k, row stride ldw) packed into the tape's arena. */
static tg_gemm_packed *pack_weight(tg_tape *tape, const tg_real *w, int64_t ldw, bool trans,
                                   int64_t k, int64_t n) {
    const size_t size = tg_gemm_packed_size(k, n);
    return tg_gemm_pack_b(trans, k, n, w, ldw, tg_tape_alloc(tape, size), size);
}

/* A whole-sequence product C (+)= A·op(W), m = T·B rows, A (m x k) and C (m x n)
 * contiguous, from the packed op(W); the rows are split between the threads (each
 * element computed by one thread: the same bits at any count). */
typedef struct rnn_product {
    const tg_gemm_packed *w;
    int64_t k, n;
    const tg_real *a;
    tg_real *c;
    bool add;
} rnn_product;

static void product_rows(int64_t i0, int64_t i1, void *ctx) {
    const rnn_product *p = ctx;
    tg_gemm_prepacked(false, i1 - i0, 0, p->n, 1, p->a + i0 * p->k, p->k, p->w, p->add,
                      p->c + i0 * p->n, p->n);
}

static void packed_product(const tg_gemm_packed *w, int64_t m, int64_t k, int64_t n,
                           const tg_real *a, tg_real *c, bool add) {
    rnn_product p = {w, k, n, a, c, add};
    tg_parallel_for(m, m * n * k >= ((int64_t)1 << 20) ? 48 : m, product_rows, &p);
}

/* gh = h_prev·W_hhᵀ for batch rows [b0, b1) and unit panel q (units [q·nr, q·nr + nr)) of
 * every gate block, into those rows of tile (B, G·nr): gate block g at columns
 * [g·nr, g·nr + nr). h_prev is (B, P). */
static void rnn_step_product(const rnn_run *r, int64_t q, int64_t b0, int64_t b1,
                             const tg_real *h_prev, tg_real *tile) {
    const int64_t H = r->H, G = r->G, nr = r->nr, j1 = (q + 1) * nr < H ? (q + 1) * nr : H;
    for (int64_t g = 0; g < G; g++)
        tg_gemm_prepacked(false, b1 - b0, q * nr, j1, 1, h_prev + b0 * r->P, r->P, r->wf[g], 0,
                          tile + b0 * G * nr + g * nr, G * nr);
}

void rnn_step_product_back(const rnn_run *r, int64_t b0, int64_t b1, const tg_real *da_h,
                           tg_real *dh_prev, bool add) {
    const int64_t P = r->P, GH = r->G * r->H;
    tg_gemm_prepacked(false, b1 - b0, 0, P, 1, da_h + b0 * GH, GH, r->wb, add, dh_prev + b0 * P, P);
}

/* Packed: batch rows [b0, b1) and unit panels [q0, q1), each panel its product (all gate
 * blocks) then its gates. One (B, G·nr) tile for all the panels of a call, the first
 * panel's slot of work: it stays in L1 from product to gates to the next panel. */
static void gated_block(const rnn_run *r, int64_t t, rnn_gates_fn *gates, int64_t b0, int64_t b1,
                        int64_t q0, int64_t q1) {
    const int64_t B = r->B, H = r->H, G = r->G, nr = r->nr;
    const tg_real *h_prev = rnn_h(r, rnn_prev_slot(r, t));
    tg_real *tile = r->work + q0 * B * G * nr;
    for (int64_t q = q0; q < q1; q++) {
        rnn_step_product(r, q, b0, b1, h_prev, tile);
        gates(r, t, b0, b1, q * nr, H - q * nr < nr ? H - q * nr : nr, tile, nr, G * nr);
    }
}

static void gated_panels(int64_t q0, int64_t q1, void *ctx) {
    const rnn_step_ctx *c = ctx;
    gated_block(c->r, c->t, c->gates, 0, c->r->B, q0, q1);
}

static void gated_rows(int64_t b0, int64_t b1, void *ctx) {
    const rnn_step_ctx *c = ctx;
    c->gates(c->r, c->t, b0, b1, 0, c->r->H, c->r->work, c->r->H, c->r->G * c->r->H);
}

void rnn_forward_gated(const rnn_run *r, int64_t t, rnn_gates_fn *gates) {
    const int64_t B = r->B, H = r->H, P = r->P, GH = r->G * H;
    rnn_step_ctx c = {.r = r, .t = t, .gates = gates};
    if (r->packed) { /* each thread: its unit panels, product and gates, no barrier between */
        tg_parallel_for(r->panels, rnn_step_grain(r, r->panels), gated_panels, &c);
        return;
    }
    /* gh = h_prev·W_hhᵀ for all the gate blocks at once: the step's one GEMM */
    tg_gemm(false, true, B, GH, P, 1, rnn_h(r, rnn_prev_slot(r, t)), P, r->w_hh, P, 0, r->work, GH);
    tg_parallel_for(B, rnn_row_grain(B, H), gated_rows, &c);
}

void rnn_backward_gated(const rnn_run *r, rnn_step_ctx *ctx, tg_range_fn rows, bool add) {
    const int64_t B = r->B, H = r->H, P = r->P, GH = r->G * H;
    tg_parallel_for(B, r->packed ? rnn_step_grain(r, B) : rnn_row_grain(B, H), rows, ctx);
    if (!r->packed)
        tg_gemm(false, false, B, P, GH, 1, ctx->da_h, GH, r->w_hh, P, add, ctx->dh_prev, P);
}

/* ---- one parallel region per sequence ----
 * The batch rows of a recurrent layer are independent sequences: row b of h_t needs only
 * row b of h_{t-1} (times all of W_hh), and in the backward row b of dh_{t-1} only row b
 * of da_t. So threads that each take whole rows can run every step of the sequence with
 * no barrier between steps — one region per pass instead of a fork and a join per step
 * (two per step on a busy machine are where 2 threads lost to 1: a descheduled thread
 * holds the other at every join). The price: each thread reads all of the packed W_hh
 * every step (the unit-panel split, the per-step fallback, reads only its share), from L2
 * or, when the weights outgrow it, from L3; a step's product does B/threads·G·H·H
 * multiply-adds per G·H·H·4 bytes streamed, which at 16 or more rows per thread is over
 * 16 FMAs per byte: the FMA units, not the L3 (32 bytes a cycle on Zen 4 and 5), set the
 * pace on either core, at 16 or 32 FMA lanes a cycle.
 * Each thread needs full register tiles to keep its FMA chains busy, so rows are split
 * only when every thread gets at least a tile's height (the packed kernel's, per CPU:
 * tg_gemm_packed_tile_rows) and the step's product is above the per-CPU threshold for a
 * team; otherwise the per-step split (forward: unit panels, backward: rows). Either way
 * every element is computed by one thread in a fixed order: the same bits at any count. */
static int rnn_row_threads(const rnn_run *r) {
    /* a projection's per-step GEMM (lstm_forward, lstm's backward step) spans all rows */
    if (!r->packed || r->w_hr) return 1;
    int64_t threads = tg_get_num_threads();
    if (threads > r->B / r->mr) threads = r->B / r->mr;
    if (rnn_step_grain(r, 2) > 1) threads = 1;
    return threads < 2 ? 1 : (int)threads;
}

/* The forward steps of a packed run, `threads` threads over the rows. */
static void rnn_forward_rows_region(const rnn_run *r, const rnn_cell_impl *impl, int threads) {
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
    {
        const int64_t th = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t b0 = r->B * th / nt, b1 = r->B * (th + 1) / nt;
        for (int64_t s = 0; s < r->T; s++)
            gated_block(r, r->reverse ? r->T - 1 - s : s, impl->gates, b0, b1, 0, r->panels);
    }
#else
    (void)threads;
    for (int64_t s = 0; s < r->T; s++)
        gated_block(r, r->reverse ? r->T - 1 - s : s, impl->gates, 0, r->B, 0, r->panels);
#endif
}

/* The backward steps of a packed run on rows [b0, b1): dh += the output's gradient, the
 * cell's row kernel, dh_{t-1} becomes dh (each thread swaps its own pointers; all swap T
 * times). da_h: the cell's (B, G·H) tile (separate_da_h) or NULL (da_h is da_i). */
static void rnn_backward_row_steps(const rnn_run *r, const rnn_cell_impl *impl, int64_t b0,
                                   int64_t b1, const tg_real *dout, tg_real *dh, tg_real *dh_prev,
                                   tg_real *dc, tg_real *da_i, tg_real *da_h) {
    const int64_t T = r->T, B = r->B, H = r->H, GH = r->G * H, BH = B * H;
    for (int64_t s = 0; s < T; s++) {
        const int64_t t = r->reverse ? s : T - 1 - s;
        if (dout)
            for (int64_t k = b0 * H; k < b1 * H; k++) dh[k] += dout[t * BH + k];
        tg_real *da_t = da_i + t * B * GH;
        rnn_step_ctx c = {r, t, dh, dc, da_t, da_h ? da_h : da_t, dh_prev, false, NULL};
        impl->backward_rows(b0, b1, &c);
        tg_real *tmp = dh;
        dh = dh_prev, dh_prev = tmp;
    }
}

static void rnn_backward_rows_region(const rnn_run *r, const rnn_cell_impl *impl, int threads,
                                     const tg_real *dout, tg_real *dh, tg_real *dh_prev,
                                     tg_real *dc, tg_real *da_i, tg_real *da_h) {
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
    {
        const int64_t th = omp_get_thread_num(), nt = omp_get_num_threads();
        rnn_backward_row_steps(r, impl, r->B * th / nt, r->B * (th + 1) / nt, dout, dh, dh_prev, dc,
                               da_i, da_h);
    }
#else
    (void)threads;
    rnn_backward_row_steps(r, impl, 0, r->B, dout, dh, dh_prev, dc, da_i, da_h);
#endif
}

/* ---------------------------------------------------------------------------------------
 * Validation
 * ------------------------------------------------------------------------------------- */
static void check_matrix(const char *op, tg_cell_kind kind, const char *what, const tg_tensor *t,
                         int64_t rows, int64_t cols) {
    char d[160];
    if (!t) tg_fail("%s: %s %s is missing", op, tg_cell_kind_name(kind), what);
    if (t->ndim != 2 || t->shape[0] != rows || (cols >= 0 && t->shape[1] != cols))
        tg_fail("%s: %s %s %s should have shape (%lld, %lld)", op, tg_cell_kind_name(kind), what,
                tg_tensor_describe(t, d, sizeof d), (long long)rows,
                (long long)(cols >= 0 ? cols : t->shape[1]));
}

static void check_vector(const char *op, tg_cell_kind kind, const char *what, const tg_tensor *t,
                         int64_t n) {
    char d[160];
    if (t && (t->ndim != 1 || t->shape[0] != n))
        tg_fail("%s: %s %s %s should have shape (%lld)", op, tg_cell_kind_name(kind), what,
                tg_tensor_describe(t, d, sizeof d), (long long)n);
}

/* Checks the weights against each other and returns H. */
int64_t tg_cell_weights_check(const char *op, tg_cell_kind kind, const tg_cell_weights *w) {
    char d[160], dr[160];
    impl_of(op, kind); /* a kind out of the enum stops here, under the caller's name */
    const int64_t G = tg_cell_gate_count(kind);
    const char *k = tg_cell_kind_name(kind);
    if (!w || !w->w_ih || !w->w_hh) tg_fail("%s: %s weight_ih and weight_hh are required", op, k);
    if (w->w_hr && kind != TG_CELL_LSTM)
        tg_fail("%s: weight_hr (a projection, proj_size) is only for LSTM, not %s", op, k);
    if (w->w_hh->ndim != 2 || w->w_hh->shape[0] % G != 0 || w->w_hh->shape[0] / G < 1 ||
        (!w->w_hr && w->w_hh->shape[1] != w->w_hh->shape[0] / G))
        tg_fail("%s: %s weight_hh %s should have shape (%lld·H, %s)", op, k,
                tg_tensor_describe(w->w_hh, d, sizeof d), (long long)G,
                w->w_hr ? "proj_size" : "H");
    const int64_t H = w->w_hh->shape[0] / G;
    if (w->w_hr &&
        (w->w_hr->ndim != 2 || w->w_hr->shape[1] != H || w->w_hr->shape[0] != w->w_hh->shape[1] ||
         w->w_hr->shape[0] >= H || w->w_hr->shape[0] < 1))
        tg_fail("%s: %s weight_hr %s should have shape (proj_size, H) = (%lld, %lld) for "
                "weight_hh %s, with 0 < proj_size < H",
                op, k, tg_tensor_describe(w->w_hr, dr, sizeof dr), (long long)w->w_hh->shape[1],
                (long long)H, tg_tensor_describe(w->w_hh, d, sizeof d));
    check_matrix(op, kind, "weight_ih", w->w_ih, G * H, -1);
    check_vector(op, kind, "bias_ih", w->b_ih, G * H);
    check_vector(op, kind, "bias_hh", w->b_hh, G * H);
    return H;
}

/* `size` names the state's features in the message: "hidden_size" or "proj_size". */
static void check_state(const char *op, tg_cell_kind kind, const char *what, const tg_tensor *s,
                        int64_t B, int64_t H, const char *size) {
    char d[160];
    if (s && (s->ndim != 2 || s->shape[0] != B || s->shape[1] != H))
        tg_fail("%s: %s %s %s should have shape (%lld, %lld) (batch, %s)", op,
                tg_cell_kind_name(kind), what, tg_tensor_describe(s, d, sizeof d), (long long)B,
                (long long)H, size);
}

void tg_cell_inputs_check(const char *op, tg_cell_kind kind, const tg_cell_weights *w,
                          const tg_tensor *x, int x_ndim, const tg_tensor *h, const tg_tensor *c) {
    char d[160], dw[160];
    const int64_t H = tg_cell_weights_check(op, kind, w);
    const char *k = tg_cell_kind_name(kind);
    if (!x || x->ndim != x_ndim)
        tg_fail("%s: %s input %s should be %d-D (%s)", op, k,
                x ? tg_tensor_describe(x, d, sizeof d) : "NULL", x_ndim,
                x_ndim == 3 ? "steps, batch, input_size" : "batch, input_size");
    if (x->shape[x_ndim - 1] != w->w_ih->shape[1])
        tg_fail("%s: %s input %s has %lld features but weight_ih %s expects input_size %lld", op, k,
                tg_tensor_describe(x, d, sizeof d), (long long)x->shape[x_ndim - 1],
                tg_tensor_describe(w->w_ih, dw, sizeof dw), (long long)w->w_ih->shape[1]);
    if (x_ndim == 3 && x->shape[0] < 1)
        tg_fail("%s: %s input %s is an empty sequence", op, k, tg_tensor_describe(x, d, sizeof d));
    if (c && kind != TG_CELL_LSTM) tg_fail("%s: a cell state c is only for LSTM, not %s", op, k);
    const int64_t B = x->shape[x_ndim - 2];
    check_state(op, kind, x_ndim == 3 ? "h0" : "h", h, B, w->w_hh->shape[1],
                w->w_hr ? "proj_size" : "hidden_size");
    check_state(op, kind, x_ndim == 3 ? "c0" : "c", c, B, H, "hidden_size");
}

/* ---------------------------------------------------------------------------------------
 * The shared forward
 * ------------------------------------------------------------------------------------- */
static tg_real *arena_zeros(tg_tape *tape, int64_t n) {
    tg_real *p = tg_tape_alloc(tape, (size_t)(n > 0 ? n : 1) * sizeof(tg_real));
    memset(p, 0, (size_t)(n > 0 ? n : 1) * sizeof(tg_real));
    return p;
}

static rnn_run *run_forward(const char *op, tg_tape *tape, tg_cell_kind kind,
                            const tg_cell_weights *w, const tg_tensor *x, int64_t T, int64_t B,
                            const tg_tensor *h0, const tg_tensor *c0, bool reverse, bool keep) {
    const rnn_cell_impl *impl = impl_of(op, kind);
    rnn_run *r = tg_tape_alloc(tape, sizeof *r);
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->G = tg_cell_gate_count(kind);
    r->T = T, r->B = B, r->I = w->w_ih->shape[1], r->H = w->w_hh->shape[0] / r->G;
    r->P = w->w_hh->shape[1]; /* H, or proj_size */
    r->reverse = reverse;
    const int64_t H = r->H, P = r->P, GH = r->G * H, BH = B * H, BP = B * P;
    r->w_ih = w->w_ih->data, r->w_hh = w->w_hh->data;
    r->w_hr = w->w_hr ? w->w_hr->data : NULL;
    r->b_ih = w->b_ih ? w->b_ih->data : arena_zeros(tape, GH);
    r->b_hh = w->b_hh ? w->b_hh->data : arena_zeros(tape, GH);

    r->packed = impl->packed && T >= 2; /* the products from packed weights (see below) */

    /* What outlives the forward first: the states and the activations the backward reads. */
    const int64_t first = reverse ? T : 0; /* the slot of h0 */
    r->hs = tg_tape_alloc(tape, (size_t)((T + 1) * BP) * sizeof(tg_real));
    if (h0)
        memcpy(rnn_h(r, first), h0->data, (size_t)BP * sizeof(tg_real));
    else
        memset(rnn_h(r, first), 0, (size_t)BP * sizeof(tg_real));
    if (kind == TG_CELL_LSTM) {
        r->cs = tg_tape_alloc(tape, (size_t)((T + 1) * BH) * sizeof(tg_real));
        if (c0)
            memcpy(rnn_c(r, first), c0->data, (size_t)BH * sizeof(tg_real));
        else
            memset(rnn_c(r, first), 0, (size_t)BH * sizeof(tg_real));
    }
    /* without a backward to come, one slot of activations is reused by every step */
    r->S = impl->saved + (r->w_hr ? 1 : 0); /* a projection's input m (rnn_lstm.c) */
    r->act_stride = keep ? r->S * BH : 0;
    r->acts = tg_tape_alloc(tape, (size_t)((keep ? T : 1) * r->S * BH + 1) * sizeof(tg_real));
    /* The input projections outlive the forward only to become the backward's da_i (the
     * backward reads the saved activations, never gi): without a backward they are scratch,
     * given back below with the packed weights and the work tile. */
    tg_arena *arena = tg_tape_arena(tape);
    tg_arena_mark scratch = tg_arena_get_mark(arena);
    r->gi = tg_tape_alloc(tape, (size_t)(T * B * GH + 1) * sizeof(tg_real));
    if (keep) scratch = tg_arena_get_mark(arena);

    /* the input projections of every step: ONE GEMM, (T·B, I)·(G·H, I)ᵀ */
    if (r->packed) /* X read in place, W_ih packed once */
        packed_product(pack_weight(tape, r->w_ih, r->I, true, r->I, GH), T * B, r->I, GH, x->data,
                       r->gi, false);
    else
        tg_gemm(false, true, T * B, GH, r->I, 1, x->data, r->I, r->w_ih, r->I, 0, r->gi, GH);

    /* W_hh packed once for all the steps (a single step: tg_gemm's own packing is as cheap),
     * each gate block's W_hhᵀ on its own, so a unit panel's columns of every block can be
     * taken together (rnn_step_product) */
    int64_t work = B * GH;
    if (r->packed) {
        for (int64_t g = 0; g < r->G; g++)
            r->wf[g] = pack_weight(tape, r->w_hh + g * H * P, P, true, P, H);
        r->nr = tg_gemm_packed_width(r->wf[0]);
        r->mr = tg_gemm_packed_tile_rows(r->wf[0]);
        r->panels = (H + r->nr - 1) / r->nr;
        work = r->panels * B * r->G * r->nr;
    }
    r->work = tg_tape_alloc(tape, (size_t)(work + 1) * sizeof(tg_real));

    const int row_threads = rnn_row_threads(r);
    if (row_threads > 1)
        rnn_forward_rows_region(r, impl, row_threads);
    else
        for (int64_t s = 0; s < T; s++) impl->forward_step(r, reverse ? T - 1 - s : s);
    /* the forward's scratch goes back to the arena: the backward packs what it needs */
    tg_arena_rewind(arena, scratch);
    memset(r->wf, 0, sizeof r->wf);
    r->work = NULL;
    if (!keep) r->gi = NULL;
    r->out_seq = r->out_h = r->out_c = -1;
    return r;
}

/* A tensor header over memory the run owns (outputs are views of hs / cs: no copy). */
static tg_tensor *view_of(tg_tape *tape, tg_real *data, int ndim, const int64_t *shape) {
    return tg_tape_tensor_view(tape, data, ndim, shape);
}

static bool needs_grad(tg_tape *tape, tg_tensor *const *in, int n) {
    if (!tg_tape_is_recording(tape)) return false;
    for (int i = 0; i < n; i++)
        if (in[i] && in[i]->requires_grad) return true;
    return false;
}

/* ---------------------------------------------------------------------------------------
 * The shared backward
 * ------------------------------------------------------------------------------------- */
/* db[j] += Σ_rows a[row, j] for the columns [j0, j1) */
TG_VEC_KERNEL
static void column_sums(tg_real *db, const tg_real *a, int64_t rows, int64_t lda, int64_t j0,
                        int64_t j1) {
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = j0; j < j1; j++) db[j] += a[i * lda + j];
}

typedef struct rnn_colsum {
    tg_real *db;
    const tg_real *a;
    int64_t rows, cols, lda;
} rnn_colsum;

/* Column blocks of 64 split between the threads; each column summed in row order. */
static void column_sum_blocks(int64_t u0, int64_t u1, void *ctx) {
    const rnn_colsum *c = ctx;
    column_sums(c->db, c->a, c->rows, c->lda, u0 * 64, u1 * 64 < c->cols ? u1 * 64 : c->cols);
}

/* db[j] += Σ_rows a[row, j] for j < cols, rows lda apart */
static void add_column_sums(tg_real *db, const tg_real *a, int64_t rows, int64_t cols,
                            int64_t lda) {
    rnn_colsum c = {db, a, rows, cols, lda};
    const int64_t units = (cols + 63) / 64;
    tg_parallel_for(units, rows * cols >= ((int64_t)1 << 18) ? 1 : units, column_sum_blocks, &c);
}

static void rnn_backward(tg_tape *tape, tg_node *node) {
    rnn_run *r = node->saved;
    const rnn_cell_impl *impl = impl_of("tg_tape_backward", r->kind);
    tg_tensor *x = node->in[0], *h0 = node->in[1], *c0 = node->in[2];
    tg_tensor *w_ih = node->in[3], *w_hh = node->in[4], *b_ih = node->in[5], *b_hh = node->in[6];
    tg_tensor *w_hr = node->in[7];
    const int64_t T = r->T, B = r->B, I = r->I, H = r->H, P = r->P, GH = r->G * H;
    const int64_t BH = B * H, BP = B * P;
    const tg_real *dout = r->out_seq >= 0 ? node->out[r->out_seq]->grad : NULL;
    const tg_real *dh_n = r->out_h >= 0 ? node->out[r->out_h]->grad : NULL;
    const tg_real *dc_n = r->out_c >= 0 ? node->out[r->out_c]->grad : NULL;
    tg_arena *arena = tg_tape_arena(tape);

    /* The steps write da_i over gi: the gates were computed from gi in the forward, and the
     * backward reads only the saved activations and states (a second backward of the same
     * tape overwrites it again, with the same values). */
    tg_real *da_i = r->gi;
    /* GRU: da_h equals da_i but in its last (n) block. Each step writes its whole da_h into
     * one (B, G·H) tile for its product with W_hh, and keeps only the n block of every step
     * (r->dhn, T·B·H) for dW_hh and db_hh: the other blocks are da_i's. */
    const int64_t shared = impl->separate_da_h ? GH - H : GH; /* columns da_h shares with da_i */
    tg_real *da_h = da_i;
    if (impl->separate_da_h) {
        r->dhn = tg_tape_alloc(tape, (size_t)(T * BH + 1) * sizeof(tg_real));
        da_h = tg_tape_alloc(tape, (size_t)(B * GH + 1) * sizeof(tg_real));
    }
    if (r->w_hr) r->dhs = tg_tape_alloc(tape, (size_t)(T * BP) * sizeof(tg_real));
    /* what only the steps use, given back before the weight gradients */
    const tg_arena_mark steps = tg_arena_get_mark(arena);
    tg_real *dh = arena_zeros(tape, BP), *dh_prev = arena_zeros(tape, BP);
    tg_real *dc = r->kind == TG_CELL_LSTM ? arena_zeros(tape, BH) : NULL;
    if (dh_n) memcpy(dh, dh_n, (size_t)BP * sizeof(tg_real));
    if (dc && dc_n) memcpy(dc, dc_n, (size_t)BH * sizeof(tg_real));
    r->work = tg_tape_alloc(tape, (size_t)(B * GH + 1) * sizeof(tg_real)); /* the steps' tile */
    if (r->packed) /* W_hh packed for the steps' products da_h·W_hh */
        r->wb = pack_weight(tape, r->w_hh, P, false, GH, P);

    /* reverse processing order: the last step computed comes first */
    const int row_threads = rnn_row_threads(r);
    if (row_threads > 1) { /* one region, rows through every step */
        rnn_backward_rows_region(r, impl, row_threads, dout, dh, dh_prev, dc, da_i,
                                 impl->separate_da_h ? da_h : NULL);
        if (T % 2) { /* where the steps left dh_{-1} */
            tg_real *tmp = dh;
            dh = dh_prev, dh_prev = tmp;
        }
    } else {
        for (int64_t s = 0; s < T; s++) {
            const int64_t t = r->reverse ? s : T - 1 - s;
            if (dout)
                for (int64_t k = 0; k < BP; k++) dh[k] += dout[t * BP + k];
            tg_real *da_h_t = impl->separate_da_h ? da_h : da_h + t * B * GH;
            impl->backward_step(r, t, dh, dc, da_i + t * B * GH, da_h_t, dh_prev);
            tg_real *tmp = dh; /* dh_{t-1} becomes the next step's dh */
            dh = dh_prev, dh_prev = tmp;
        }
    }
    tg_real *g;
    if ((g = tg_tape_grad(tape, h0)))
        for (int64_t k = 0; k < BP; k++) g[k] += dh[k];
    if ((g = tg_tape_grad(tape, c0)))
        for (int64_t k = 0; k < BH; k++) g[k] += dc[k];
    tg_arena_rewind(arena, steps);
    r->work = NULL, r->wb = NULL;

    /* the gradients that sum over steps, as products over all T·B rows */
    if ((g = tg_tape_grad(tape, w_ih))) /* dW_ih (G·H, I) += DAᵀ·X */
        tg_gemm(true, false, GH, I, T * B, 1, da_i, GH, x->data, I, 1, g, I);
    if ((g = tg_tape_grad(tape, x)) && r->packed) /* dX (T·B, I) += DA·W_ih, DA read in place */
        packed_product(pack_weight(tape, r->w_ih, I, false, GH, I), T * B, GH, I, da_i, g, true);
    else if (g) /* dX (T·B, I) += DA·W_ih */
        tg_gemm(false, false, T * B, I, GH, 1, da_i, GH, r->w_ih, I, 1, g, I);
    if ((g = tg_tape_grad(tape, b_ih))) add_column_sums(g, da_i, T * B, GH, GH);
    /* H_prev = the T slots of hs before each step (rnn_internal.h) */
    const tg_real *h_prev = rnn_h(r, r->reverse ? 1 : 0);
    if ((g = tg_tape_grad(tape, w_hh)) && impl->weight_hh_grad)
        impl->weight_hh_grad(r, da_h, g);
    else if (g) { /* dW_hh (G·H, P) += DA_hᵀ·H_prev, the n block of the GRU from dhn */
        tg_gemm(true, false, shared, P, T * B, 1, da_i, GH, h_prev, P, 1, g, P);
        if (shared < GH)
            tg_gemm(true, false, H, H, T * B, 1, r->dhn, H, h_prev, H, 1, g + shared * H, H);
    }
    if ((g = tg_tape_grad(tape, b_hh))) {
        add_column_sums(g, da_i, T * B, shared, GH);
        if (shared < GH) add_column_sums(g + shared, r->dhn, T * B, H, H);
    }
    /* dW_hr (P, H) += DHᵀ·M over all steps (rnn_lstm.c derives it): M is the m column
     * block of the saved activations, rows S·H apart */
    if ((g = tg_tape_grad(tape, w_hr)))
        tg_gemm(true, false, P, H, T * B, 1, r->dhs, P, r->acts + 4 * H, r->S * H, 1, g, H);
    r->dhn = NULL, r->dhs = NULL;
}

/* ---------------------------------------------------------------------------------------
 * The public ops
 * ------------------------------------------------------------------------------------- */
tg_rnn_state tg_cell_step_fused(tg_tape *tape, tg_cell_kind kind, const tg_cell_weights *w,
                                tg_tensor *x, tg_tensor *h, tg_tensor *c) {
    tg_cell_entry_check(tape, __func__, w, x, h, c, (const char *const[]){"h", "c"});
    tg_cell_inputs_check("tg_cell_step_fused", kind, w, x, 2, h, c);
    const int64_t B = x->shape[0];

    tg_tensor *in[8] = {x, h, c, w->w_ih, w->w_hh, w->b_ih, w->b_hh, w->w_hr};
    rnn_run *r =
        run_forward(__func__, tape, kind, w, x, 1, B, h, c, false, needs_grad(tape, in, 8));
    tg_rnn_state st = {view_of(tape, rnn_h(r, 1), 2, (int64_t[]){B, r->P}), NULL};
    if (kind == TG_CELL_LSTM) st.c = view_of(tape, rnn_c(r, 1), 2, (int64_t[]){B, r->H});
    r->out_h = 0;
    r->out_c = st.c ? 1 : -1;
    static const char *const names[] = {"rnn_tanh_cell", "rnn_relu_cell", "gru_cell",
                                        "gru_cho_cell", "lstm_cell"};
    tg_node *node = tg_tape_record(tape, names[kind], rnn_backward, 8, in, st.c ? 2 : 1,
                                   (tg_tensor *[]){st.h, st.c});
    if (node) node->saved = r;
    return st;
}

tg_rnn_result tg_rnn_sequence_fused(tg_tape *tape, tg_cell_kind kind, const tg_cell_weights *w,
                                    tg_tensor *x, tg_tensor *h0, tg_tensor *c0, bool reverse) {
    tg_cell_entry_check(tape, __func__, w, x, h0, c0, (const char *const[]){"h0", "c0"});
    tg_cell_inputs_check("tg_rnn_sequence_fused", kind, w, x, 3, h0, c0);
    const int64_t T = x->shape[0], B = x->shape[1];

    tg_tensor *in[8] = {x, h0, c0, w->w_ih, w->w_hh, w->b_ih, w->b_hh, w->w_hr};
    rnn_run *r =
        run_forward(__func__, tape, kind, w, x, T, B, h0, c0, reverse, needs_grad(tape, in, 8));
    const int64_t last = reverse ? 0 : T, P = r->P; /* the slot of h_n; h's features */
    tg_rnn_result res = {0};
    res.output = view_of(tape, rnn_h(r, reverse ? 0 : 1), 3, (int64_t[]){T, B, P});
    res.h_n = view_of(tape, rnn_h(r, last), 2, (int64_t[]){B, P});
    if (kind == TG_CELL_LSTM) res.c_n = view_of(tape, rnn_c(r, last), 2, (int64_t[]){B, r->H});
    r->out_seq = 0, r->out_h = 1, r->out_c = res.c_n ? 2 : -1;
    static const char *const names[] = {"rnn_tanh_sequence", "rnn_relu_sequence", "gru_sequence",
                                        "gru_cho_sequence", "lstm_sequence"};
    tg_node *node = tg_tape_record(tape, names[kind], rnn_backward, 8, in, res.c_n ? 3 : 2,
                                   (tg_tensor *[]){res.output, res.h_n, res.c_n});
    if (node) node->saved = r;
    return res;
}
