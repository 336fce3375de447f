/* Fused recurrent ops: one tape node per cell step (tg_cell_step_fused) or per layer and
 * direction over a whole sequence (tg_rnn_sequence_fused), forward and backward side by side.
 * This file holds the driver every cell kind shares; the plain RNN (tanh / relu) cell lives
 * in rnn_plain.c, the GRU gates in rnn_gru.c and the LSTM gates in rnn_lstm.c.
 *
 * Forward (per layer and direction), in chunks of C steps (C·B ≈ 256 rows, rnn_chunk_steps):
 *     for each chunk (in processing order):
 *         gi = X_c·W_ihᵀ                    the chunk's steps in ONE GEMM, X_c = (C·B, I)
 *         for each step t of the chunk (t increasing, or decreasing in reverse):
 *             gh = h_{t-1}·W_hhᵀ            ONE GEMM (B, G·H)
 *             h_t (, c_t) = gates(gi_t + b_ih, gh + b_hh, h_{t-1} (, c_{t-1}))   ONE kernel
 * (the projections of all T steps in one GEMM before the loop would be out in memory by the
 * time the later steps' gates read them; a chunk's are still in L2 / L3).
 *
 * Backward (backpropagation through time). h_t feeds two consumers: the output at t and
 * step t+1 (in processing order), so its gradient is the sum
 *     dh_t = dL/doutput_t + dL/dh_t (through step t+1)        (+ dL/dh_n at the last step)
 * Walking the steps in reverse, each step turns dh_t (and dc_t) into the gradients of its
 * gate pre-activations da_t (one kernel, derived per cell kind) and then
 *     dh_{t-1} = (direct terms) + da_h,t·W_hh                 ONE GEMM (B, H)
 * Every weight gradient is a sum over steps of an outer product, so with the da_t of a
 * chunk's steps stacked into DA (C·B, G·H), after the chunk's steps:
 *     dW_ih += DAᵀ·X_c    dx_c += DA·W_ih    dW_hh += DA_hᵀ·H_prev      (three GEMMs)
 *     db_ih += Σ_rows DA  db_hh += Σ_rows DA_h                       (one pass: they share
 *                                                                   all but the GRU's n)
 * where H_prev (C·B, H) stacks h_{t-1} of the chunk's steps (contiguous, rnn_internal.h).
 * The chunks' sums add up in a fixed order (C does not depend on the thread count).
 * An LSTM with projections (rnn_lstm.c) has one more GEMM per step, h_t = m_t·W_hrᵀ, and
 * one more over all steps in the backward, dW_hr += DHᵀ·M; its states h have P features
 * where the other cells' have H (r->P; W_hh is (G·H, P)).
 *
 * GRU and LSTM sequences (T >= 2) take the products with a weight from the weight packed
 * ONCE per run (tg_gemm_pack_b: W_hhᵀ for the forward steps, W_hh for the backward steps,
 * W_ihᵀ, W_ih) with tg_gemm_prepacked, which reads the other operand in place: tg_gemm would
 * pack W_hh again at every step. The weight gradients are tg_gemm's.
 *
 * Memory: only one chunk of gi / DA exists at a time; the GRU keeps of DA_h only its n
 * block; what only one pass uses (the chunk buffer, the packed weights, the work tiles)
 * goes back to the arena when that pass is done. Threads: with packed weights and a batch
 * of at least a register tile per thread, one parallel region per pass (forward) or chunk
 * (backward), each thread its batch rows through every step with no barrier (the rows are
 * independent sequences; see "one parallel region per sequence"); otherwise, or in the
 * forward when W_hh outgrows L2, a forward step splits the hidden units (each thread: the
 * product for its units, then their gates) and a backward step the batch rows. The
 * products over a chunk split rows of the result. Every element is computed by one thread
 * in a fixed order, so results do not depend on the thread count. */
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
static int rnn_row_threads(const rnn_run *r, bool forward) {
    /* a projection's per-step GEMM (lstm_forward, lstm's backward step) spans all rows */
    if (!r->packed || r->w_hr) return 1;
    int64_t threads = tg_get_num_threads();
    if (threads > r->B / r->mr) threads = r->B / r->mr;
    if (rnn_step_grain(r, 2) > 1) threads = 1;
    /* The forward's other split, unit panels, reads only its share of W_hh: better once
     * W_hh outgrows L2 (per CPU: tg_gemm_packed_split_rows). The backward's other split
     * is by rows too, each thread reading all of W_hh, with a fork and a join per step. */
    if (forward && threads > 1 &&
        !tg_gemm_packed_split_rows((size_t)r->G * tg_gemm_packed_size(r->P, r->H), r->B,
                                   (int)threads))
        threads = 1;
    return threads < 2 ? 1 : (int)threads;
}

const char *tg_rnn_threads_describe(tg_cell_kind kind, int64_t hidden_size, int64_t batch,
                                    int threads) {
    const int64_t G = tg_cell_gate_count(kind), H = hidden_size;
    const size_t bytes = (size_t)G * tg_gemm_packed_size(H, H);
    if (threads < 2) return "1 thread";
    if (batch * G * H * H < tg_gemm_parallel_min() / 4) /* rnn_step_grain */
        return "1 thread (the step's product is too small for a team)";
    if (kind != TG_CELL_GRU && kind != TG_CELL_LSTM) return "per step: rows";
    return tg_gemm_packed_split_rows(bytes, batch, threads)
               ? "forward: rows (W_hh in L2), backward: rows"
               : "forward: unit panels per step (W_hh outgrows L2), backward: rows";
}

/* ---- chunks of steps ----
 * The input projections gi = x_t·W_ihᵀ are made a chunk of steps at a time, just before
 * the chunk's steps read them (rnn_internal.h), and the backward takes the weight
 * gradients a chunk at a time from the chunk's da. RNN_CHUNK_ROWS rows (C·B) per chunk: a
 * multiple of kc = 256 for power-of-two batches, so that the k blocks of the chunks' dW
 * GEMMs fall where one GEMM over all rows would put them; the buffer, C·B·G·H values
 * (768 KiB for a GRU of H = 256), stays within a 1 MiB L2 with the step's tile. */
#define RNN_CHUNK_ROWS 256
static int64_t rnn_chunk_steps(int64_t T, int64_t B) {
    const int64_t c = RNN_CHUNK_ROWS / B;
    return c < 1 ? 1 : c > T ? T : c;
}

/* Chunk k (0, 1, ...) in the order a pass takes them (the backward walks the forward's
 * order backwards): returns its first time; *n its steps. */
static int64_t chunk_at(const rnn_run *r, int64_t k, bool backward, int64_t *n) {
    const int64_t count = (r->T + r->chunk - 1) / r->chunk;
    const int64_t t0 = (r->reverse != backward ? count - 1 - k : k) * r->chunk;
    *n = r->T - t0 < r->chunk ? r->T - t0 : r->chunk;
    return t0;
}

/* The time of step s (0..n-1) of the chunk from t0 in the pass's order. */
static int64_t step_at(const rnn_run *r, int64_t t0, int64_t n, int64_t s, bool backward) {
    return r->reverse == backward ? t0 + s : t0 + n - 1 - s;
}

/* gi of the chunk's n steps from t0 on batch rows [b0, b1): x_t·W_ihᵀ. All rows: one GEMM
 * over the chunk (its own threads); some rows (a thread of a row region): one product per
 * step, on the calling thread. Each element is one product: the same bits either way. */
static void chunk_inputs(const rnn_run *r, int64_t t0, int64_t n, int64_t b0, int64_t b1) {
    const int64_t B = r->B, I = r->I, GH = r->G * r->H;
    tg_real *gi = rnn_gi(r, t0); /* the chunk's first slot */
    if (b1 - b0 < B) {
        for (int64_t t = t0; t < t0 + n; t++)
            tg_gemm_prepacked(false, b1 - b0, 0, GH, 1, r->x + (t * B + b0) * I, I, r->wi, 0,
                              gi + ((t - t0) * B + b0) * GH, GH);
    } else if (r->packed) { /* X read in place, W_ih packed once */
        packed_product(r->wi, n * B, I, GH, r->x + t0 * B * I, gi, false);
    } else {
        tg_gemm(false, true, n * B, GH, I, 1, r->x + t0 * B * I, I, r->w_ih, I, 0, gi, GH);
    }
}

/* The forward steps of a packed run on rows [b0, b1), a chunk's inputs before its steps. */
static void rnn_forward_row_steps(const rnn_run *r, const rnn_cell_impl *impl, int64_t b0,
                                  int64_t b1) {
    for (int64_t k = 0, n; k * r->chunk < r->T; k++) {
        const int64_t t0 = chunk_at(r, k, false, &n);
        chunk_inputs(r, t0, n, b0, b1);
        for (int64_t s = 0; s < n; s++)
            gated_block(r, step_at(r, t0, n, s, false), impl->gates, b0, b1, 0, r->panels);
    }
}

/* The forward steps of a packed run, `threads` threads over the rows. */
static void rnn_forward_rows_region(const rnn_run *r, const rnn_cell_impl *impl, int threads) {
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
    {
        const int64_t th = omp_get_thread_num(), nt = omp_get_num_threads();
        rnn_forward_row_steps(r, impl, r->B * th / nt, r->B * (th + 1) / nt);
    }
#else
    (void)threads;
    rnn_forward_row_steps(r, impl, 0, r->B);
#endif
}

/* The backward steps of the chunk's n steps from t0 on rows [b0, b1): dh += the output's
 * gradient, the cell's row kernel, dh_{t-1} becomes dh (each thread swaps its own
 * pointers; all swap n times). da_h: the cell's (B, G·H) tile (separate_da_h) or NULL
 * (da_h is da_i). */
static void rnn_backward_row_steps(const rnn_run *r, const rnn_cell_impl *impl, int64_t t0,
                                   int64_t n, int64_t b0, int64_t b1, const tg_real *dout,
                                   tg_real *dh, tg_real *dh_prev, tg_real *dc, tg_real *da_h) {
    const int64_t H = r->H, BH = r->B * H;
    for (int64_t s = 0; s < n; s++) {
        const int64_t t = step_at(r, t0, n, s, true);
        if (dout)
            for (int64_t k = b0 * H; k < b1 * H; k++) dh[k] += dout[t * BH + k];
        tg_real *da_t = rnn_gi(r, t);
        rnn_step_ctx c = {r, t, dh, dc, da_t, da_h ? da_h : da_t, dh_prev, false, NULL};
        impl->backward_rows(b0, b1, &c);
        tg_real *tmp = dh;
        dh = dh_prev, dh_prev = tmp;
    }
}

static void rnn_backward_rows_region(const rnn_run *r, const rnn_cell_impl *impl, int threads,
                                     int64_t t0, int64_t n, const tg_real *dout, tg_real *dh,
                                     tg_real *dh_prev, tg_real *dc, tg_real *da_h) {
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
    {
        const int64_t th = omp_get_thread_num(), nt = omp_get_num_threads();
        rnn_backward_row_steps(r, impl, t0, n, r->B * th / nt, r->B * (th + 1) / nt, dout, dh,
                               dh_prev, dc, da_h);
    }
#else
    (void)threads;
    rnn_backward_row_steps(r, impl, t0, n, 0, r->B, dout, dh, dh_prev, dc, da_h);
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

    /* What only the steps use, given back below: one chunk's input projections (the
     * backward reads the saved activations, never gi), the packed weights, the work tile. */
    tg_arena *arena = tg_tape_arena(tape);
    const tg_arena_mark scratch = tg_arena_get_mark(arena);
    r->x = x->data;
    r->chunk = rnn_chunk_steps(T, B);
    r->gi = tg_tape_alloc(tape, (size_t)(r->chunk * B * GH + 1) * sizeof(tg_real));

    /* W_ih and W_hh packed once for all the steps (a single step: tg_gemm's own packing is
     * as cheap), each gate block's W_hhᵀ on its own, so a unit panel's columns of every
     * block can be taken together (rnn_step_product) */
    int64_t work = B * GH;
    if (r->packed) {
        r->wi = pack_weight(tape, r->w_ih, r->I, true, r->I, GH);
        for (int64_t g = 0; g < r->G; g++)
            r->wf[g] = pack_weight(tape, r->w_hh + g * H * P, P, true, P, H);
        r->nr = tg_gemm_packed_width(r->wf[0]);
        r->mr = tg_gemm_packed_tile_rows(r->wf[0]);
        r->panels = (H + r->nr - 1) / r->nr;
        work = r->panels * B * r->G * r->nr;
    }
    r->work = tg_tape_alloc(tape, (size_t)(work + 1) * sizeof(tg_real));

    const int row_threads = rnn_row_threads(r, true);
    if (row_threads > 1) {
        rnn_forward_rows_region(r, impl, row_threads);
    } else {
        for (int64_t k = 0, n; k * r->chunk < T; k++) {
            const int64_t t0 = chunk_at(r, k, false, &n);
            chunk_inputs(r, t0, n, 0, B);
            for (int64_t s = 0; s < n; s++) impl->forward_step(r, step_at(r, t0, n, s, false));
        }
    }
    tg_arena_rewind(arena, scratch);
    memset(r->wf, 0, sizeof r->wf);
    r->work = NULL, r->gi = NULL, r->wi = NULL;
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

/* The gradients of the weights, the input and the biases that a chunk's steps contribute
 * (the n steps from t0, their da in the chunk buffer), as products over its n·B rows. */
typedef struct rnn_grads {
    tg_real *w_ih, *x, *w_hh;
    tg_real *bias; /* Σ_rows of da (G·H), then of dhn (H): for b_ih and b_hh; or NULL */
} rnn_grads;

static void chunk_grads(const rnn_run *r, const rnn_cell_impl *impl, int64_t t0, int64_t n,
                        const rnn_grads *g) {
    const int64_t rows = n * r->B, I = r->I, H = r->H, P = r->P, GH = r->G * H;
    const int64_t shared = impl->separate_da_h ? GH - H : GH; /* columns da_h shares with da */
    const tg_real *da = rnn_gi(r, t0), *x = r->x + t0 * r->B * I;
    if (g->w_ih) /* dW_ih (G·H, I) += DAᵀ·X */
        tg_gemm(true, false, GH, I, rows, 1, da, GH, x, I, 1, g->w_ih, I);
    if (g->x && r->packed) /* dX (rows, I) += DA·W_ih, DA read in place */
        packed_product(r->wi, rows, GH, I, da, g->x + t0 * r->B * I, true);
    else if (g->x)
        tg_gemm(false, false, rows, I, GH, 1, da, GH, r->w_ih, I, 1, g->x + t0 * r->B * I, I);
    if (g->bias) { /* one pass over da for both biases (the driver adds them) */
        add_column_sums(g->bias, da, rows, GH, GH);
        if (shared < GH) add_column_sums(g->bias + GH, r->dhn, rows, H, H);
    }
    if (g->w_hh && impl->weight_hh_grad) {
        impl->weight_hh_grad(r, da, t0, n, g->w_hh);
    } else if (g->w_hh) { /* dW_hh (G·H, P) += DA_hᵀ·H_prev, the n block of the GRU from dhn */
        const tg_real *h_prev = rnn_h(r, rnn_prev_slot(r, t0)); /* the chunk's, time order */
        tg_gemm(true, false, shared, P, rows, 1, da, GH, h_prev, P, 1, g->w_hh, P);
        if (shared < GH)
            tg_gemm(true, false, H, H, rows, 1, r->dhn, H, h_prev, H, 1, g->w_hh + shared * H, H);
    }
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

    if (r->w_hr) r->dhs = tg_tape_alloc(tape, (size_t)(T * BP) * sizeof(tg_real));
    /* what only the steps use, given back at the end */
    const tg_arena_mark steps = tg_arena_get_mark(arena);
    /* The steps write their pre-activation gradients da_i into the chunk buffer. GRU: da_h
     * equals da_i but in its last (n) block. Each step writes its whole da_h into one
     * (B, G·H) tile for its product with W_hh, and keeps only the n block of the chunk's
     * steps (r->dhn) for dW_hh and db_hh: the other blocks are da_i's. */
    const int64_t shared = impl->separate_da_h ? GH - H : GH;
    r->gi = tg_tape_alloc(tape, (size_t)(r->chunk * B * GH + 1) * sizeof(tg_real));
    tg_real *da_h = NULL;
    if (impl->separate_da_h) {
        r->dhn = tg_tape_alloc(tape, (size_t)(r->chunk * BH + 1) * sizeof(tg_real));
        da_h = tg_tape_alloc(tape, (size_t)(B * GH + 1) * sizeof(tg_real));
    }
    tg_real *dh = arena_zeros(tape, BP), *dh_prev = arena_zeros(tape, BP);
    tg_real *dc = r->kind == TG_CELL_LSTM ? arena_zeros(tape, BH) : NULL;
    if (dh_n) memcpy(dh, dh_n, (size_t)BP * sizeof(tg_real));
    if (dc && dc_n) memcpy(dc, dc_n, (size_t)BH * sizeof(tg_real));
    r->work = tg_tape_alloc(tape, (size_t)(B * GH + 1) * sizeof(tg_real)); /* the steps' tile */
    rnn_grads g = {tg_tape_grad(tape, w_ih), tg_tape_grad(tape, x), tg_tape_grad(tape, w_hh), NULL};
    tg_real *g_bih = tg_tape_grad(tape, b_ih), *g_bhh = tg_tape_grad(tape, b_hh);
    if (g_bih || g_bhh) g.bias = arena_zeros(tape, GH + H);
    if (r->packed) { /* W_hh for the steps' products da_h·W_hh, W_ih for dX */
        r->wb = pack_weight(tape, r->w_hh, P, false, GH, P);
        if (g.x) r->wi = pack_weight(tape, r->w_ih, I, false, GH, I);
    }

    /* the chunks and their steps in reverse processing order: the last computed first */
    const int row_threads = rnn_row_threads(r, false);
    for (int64_t k = 0, n; k * r->chunk < T; k++) {
        const int64_t t0 = chunk_at(r, k, true, &n);
        if (row_threads > 1) { /* one region per chunk, rows through its steps */
            rnn_backward_rows_region(r, impl, row_threads, t0, n, dout, dh, dh_prev, dc, da_h);
            if (n % 2) { /* where the steps left the next dh */
                tg_real *tmp = dh;
                dh = dh_prev, dh_prev = tmp;
            }
        } else {
            for (int64_t s = 0; s < n; s++) {
                const int64_t t = step_at(r, t0, n, s, true);
                if (dout)
                    for (int64_t q = 0; q < BP; q++) dh[q] += dout[t * BP + q];
                impl->backward_step(r, t, dh, dc, rnn_gi(r, t), da_h ? da_h : rnn_gi(r, t),
                                    dh_prev);
                tg_real *tmp = dh; /* dh_{t-1} becomes the next step's dh */
                dh = dh_prev, dh_prev = tmp;
            }
        }
        chunk_grads(r, impl, t0, n, &g);
    }
    tg_real *gs;
    if ((gs = tg_tape_grad(tape, h0)))
        for (int64_t q = 0; q < BP; q++) gs[q] += dh[q];
    if ((gs = tg_tape_grad(tape, c0)))
        for (int64_t q = 0; q < BH; q++) gs[q] += dc[q];
    for (int64_t j = 0; g.bias && j < GH; j++) { /* the sums of da: both biases but n (GRU) */
        if (g_bih) g_bih[j] += g.bias[j];
        if (g_bhh) g_bhh[j] += j < shared ? g.bias[j] : g.bias[GH + j - shared];
    }
    tg_arena_rewind(arena, steps);
    r->work = NULL, r->wb = NULL, r->wi = NULL, r->gi = NULL, r->dhn = NULL;

    /* dW_hr (P, H) += DHᵀ·M over all steps (rnn_lstm.c derives it): M is the m column
     * block of the saved activations, rows S·H apart */
    if ((gs = tg_tape_grad(tape, w_hr)))
        tg_gemm(true, false, P, H, T * B, 1, r->dhs, P, r->acts + 4 * H, r->S * H, 1, gs, H);
    r->dhs = NULL;
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
