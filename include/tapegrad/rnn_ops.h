/* tapegrad/rnn_ops.h — the recurrent ops: one step of an RNN (tanh/relu), GRU or LSTM cell,
 * or a whole sequence through one layer in one direction, from weights the caller owns.
 * Layer: autograd.
 *
 * Every cell exists twice:
 *  - composite (autograd/rnn_composite.c): each step built from primitive ops (tg_linear,
 *    tg_split, tg_sigmoid, tg_mul, ...), one tape node per primitive. Readable, and its
 *    intermediates carry names ("r_3", "z_3", "n_3", "h_3"; LSTM "i_3", "f_3", "g_3", "o_3",
 *    "c_3", "h_3") so a program can keep and read dL/dz_t (tg_rnn_find_named +
 *    tg_tensor_retain_grad before backward).
 *  - fused: one tape node per cell step, or one per layer and direction for a whole
 *    sequence, with a hand-written backward (autograd/rnn*.c, where each gate's gradient is
 *    derived in comments). The input projections of all steps are one GEMM; each step is one
 *    GEMM and one gate kernel; the weight gradients are GEMMs over all steps.
 * The tests hold the two equal (float64, 1e-10) for outputs and every gradient. The modules
 * nn.RNN, nn.GRU, nn.LSTM and their cells, which own the weights, are in tapegrad/rnn.h.
 *
 * Gate order in the stacked weights: GRU [r | z | n], LSTM [i | f | g | o], RNN one block.
 * Weights are (G·H, in) and (G·H, H); biases (G·H); a projection is x·Wᵀ + b. An LSTM with
 * projections (PyTorch's proj_size P, 0 < P < H) has weight_hh (4·H, P) and weight_hr
 * (P, H), and its h (states, output) has P features; c keeps H. */
#ifndef TAPEGRAD_RNN_OPS_H
#define TAPEGRAD_RNN_OPS_H

#include "tapegrad/ops.h"

/* ------------------------------------------------------------------------------------------
 * The cell formulas. With gi = x·W_ihᵀ + b_ih and gh = h·W_hhᵀ + b_hh, split in gate blocks:
 *   RNN_TANH / RNN_RELU  h' = act(gi + gh)
 *   GRU (PyTorch, "reset after"; Keras reset_after=True)
 *       r = σ(gi_r + gh_r)   z = σ(gi_z + gh_z)   n = tanh(gi_n + r⊙gh_n)
 *       h' = n + z⊙(h − n)            (= (1−z)⊙n + z⊙h, evaluated as PyTorch does)
 *   GRU_CHO (Cho et al. 2014; Keras reset_after=False): the reset gate scales h BEFORE the
 *       hidden matmul, and the recurrent bias of n is added outside the product:
 *       n = tanh(gi_n + (r⊙h)·W_hnᵀ + b_hn)      r, z and h' as above.
 *       Parameters keep PyTorch's names and shapes (weight_hh's n-block is W_hn, bias_hh's
 *       n-block b_hn); b_hn then acts exactly like a second input bias, so every parameter
 *       is used and a Keras reset_after=False GRU loads as bias_ih = Keras bias, bias_hh = 0.
 *   LSTM  i = σ(.)  f = σ(.)  g = tanh(.)  o = σ(.)  of gi + gh blocks
 *         c' = f⊙c + i⊙g      h' = o⊙tanh(c')
 *   LSTM with projections (w_hr given; Sak et al. 2014, PyTorch's proj_size):
 *         gh = h·W_hhᵀ + b_hh with h of P features, the gates and c' as above, and
 *         h' = (o⊙tanh(c'))·W_hrᵀ       (no bias), so h' has P features and c' has H
 * ---------------------------------------------------------------------------------------- */
typedef enum tg_cell_kind {
    TG_CELL_RNN_TANH,
    TG_CELL_RNN_RELU,
    TG_CELL_GRU,     /* PyTorch's form */
    TG_CELL_GRU_CHO, /* reset before the hidden matmul */
    TG_CELL_LSTM
} tg_cell_kind;

int tg_cell_gate_count(tg_cell_kind kind);        /* 1, 1, 3, 3, 4 */
const char *tg_cell_kind_name(tg_cell_kind kind); /* "rnn_tanh", "gru", "gru_cho", ... */

/* One cell's parameters (borrowed). b_ih and b_hh may be NULL (bias=False); w_hr is NULL
 * but for an LSTM with projections. The state h has w_hh's column count of features:
 * H, or P with a projection. */
typedef struct tg_cell_weights {
    tg_tensor *w_ih; /* (G·H, in) */
    tg_tensor *w_hh; /* (G·H, H), with a projection (4·H, P) */
    tg_tensor *b_ih; /* (G·H) or NULL */
    tg_tensor *b_hh; /* (G·H) or NULL */
    tg_tensor *w_hr; /* (P, H), 0 < P < H: LSTM with projections only; else NULL */
} tg_cell_weights;

/* A cell's new state: h, and c for LSTM (NULL otherwise). */
typedef struct tg_rnn_state {
    tg_tensor *h, *c;
} tg_rnn_state;

/* What a sequence layer returns: the output sequence and the final states (c_n LSTM only). */
typedef struct tg_rnn_result {
    tg_tensor *output, *h_n, *c_n;
} tg_rnn_result;

/* Checks the weights' shapes against each other, failing with a message that names `op`,
 * and returns the hidden size H. */
int64_t tg_cell_weights_check(const char *op, tg_cell_kind kind, const tg_cell_weights *w);
/* Checks x (x_ndim 2: (B, in); 3: (T, B, in), T >= 1) and the states h ((B, P) with a
 * projection, else (B, H)) and c ((B, H); LSTM only), either NULL, against the weights. */
void tg_cell_inputs_check(const char *op, tg_cell_kind kind, const tg_cell_weights *w,
                          const tg_tensor *x, int x_ndim, const tg_tensor *h, const tg_tensor *c);

/* The entry check of the recurrent ops (and modules): the tape, w, w->w_ih, w->w_hh and x
 * must not be NULL; every tensor given (biases, w_hr and states may be NULL) must be of tape
 * t and its generation, or long-lived (tapegrad/tape.h). `state_names` names h and c in
 * messages ("h", "c" for a step, "h0", "c0" for a sequence). */
void tg_cell_entry_check(const tg_tape *t, const char *op, const tg_cell_weights *w,
                         const tg_tensor *x, const tg_tensor *h, const tg_tensor *c,
                         const char *const state_names[2]);

/* ---- fused ops (autograd/rnn.c, rnn_gru.c, rnn_lstm.c) ----
 * One step: x (B, in), h (B, H) or NULL (zeros), c (B, H) or NULL (LSTM only). One node.
 * With a projection (w->w_hr) h, h0, the output and h_n have P features instead of H. */
tg_rnn_state tg_cell_step_fused(tg_tape *t, tg_cell_kind kind, const tg_cell_weights *w,
                                tg_tensor *x, tg_tensor *h, tg_tensor *c);
/* A whole sequence through one layer in one direction: x (T, B, in) sequence-first,
 * h0/c0 (B, H) or NULL. output (T, B, H) holds h_t at position t; `reverse` runs from
 * t = T−1 down to 0 (its output at t has consumed x_{T−1} .. x_t). One node. */
tg_rnn_result tg_rnn_sequence_fused(tg_tape *t, tg_cell_kind kind, const tg_cell_weights *w,
                                    tg_tensor *x, tg_tensor *h0, tg_tensor *c0, bool reverse);
/* How tg_rnn_sequence_fused splits a layer of that kind, hidden size (no projection) and
 * batch between `threads` threads on this CPU, for benchmarks' logs. */
const char *tg_rnn_threads_describe(tg_cell_kind kind, int64_t hidden_size, int64_t batch,
                                    int threads);

/* ---- composite path (autograd/rnn_composite.c): the same, from primitive ops ----
 * `tag` names the step's intermediates "<gate>_<tag>" ("z_3"); NULL names them "<gate>". */
tg_rnn_state tg_cell_step_composite(tg_tape *t, tg_cell_kind kind, const tg_cell_weights *w,
                                    tg_tensor *x, tg_tensor *h, tg_tensor *c, const char *tag);
/* Steps named "<gate>_<t><suffix>" (suffix e.g. "" or "_l1_reverse"; NULL = ""). */
tg_rnn_result tg_rnn_sequence_composite(tg_tape *t, tg_cell_kind kind, const tg_cell_weights *w,
                                        tg_tensor *x, tg_tensor *h0, tg_tensor *c0, bool reverse,
                                        const char *suffix);

/* The most recent tensor recorded on the tape under `name` (an op output), or NULL. */
tg_tensor *tg_rnn_find_named(const tg_tape *t, const char *name);

#endif
