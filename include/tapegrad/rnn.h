/* tapegrad/rnn.h — recurrent layers: RNN (tanh/relu), GRU and LSTM, as cells and as
 * multi-layer, optionally bidirectional sequence modules, numerically PyTorch's.
 *
 * Every cell exists twice (pytorch-semantics.md §2, DESIGN.md "RNN cells two ways"):
 *  - composite: each step built from primitive ops (tg_linear, tg_split, tg_sigmoid, tg_mul,
 *    ...), one tape node per primitive. Readable, and its intermediates carry names ("r_3",
 *    "z_3", "n_3", "h_3"; LSTM "i_3", "f_3", "g_3", "o_3", "c_3", "h_3") so a program can
 *    keep and read dL/dz_t (tg_rnn_find_named + tg_tensor_retain_grad before backward).
 *  - fused: one tape node per cell step, or one per layer and direction for a whole
 *    sequence, with a hand-written backward (autograd/rnn*.c, where each gate's gradient is
 *    derived in comments). The input projections of all steps are one GEMM; each step is one
 *    GEMM and one gate kernel; the weight gradients are GEMMs over all steps.
 * The tests hold the two equal (float64, 1e-10) for outputs and every gradient.
 *
 * Gate order in the stacked weights: GRU [r | z | n], LSTM [i | f | g | o], RNN one block.
 * Weights are (G·H, in) and (G·H, H); biases (G·H); a projection is x·Wᵀ + b. */
#ifndef TAPEGRAD_RNN_H
#define TAPEGRAD_RNN_H

#include "tapegrad/ops.h"
#include "tapegrad/params.h"

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

/* One cell's parameters (borrowed). b_ih and b_hh may be NULL (bias=False). */
typedef struct tg_cell_weights {
    tg_tensor *w_ih; /* (G·H, in) */
    tg_tensor *w_hh; /* (G·H, H) */
    tg_tensor *b_ih; /* (G·H) or NULL */
    tg_tensor *b_hh; /* (G·H) or NULL */
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
/* Checks x (x_ndim 2: (B, in); 3: (T, B, in), T >= 1) and the states h, c ((B, H) or NULL;
 * c only for LSTM) against the weights. */
void tg_cell_inputs_check(const char *op, tg_cell_kind kind, const tg_cell_weights *w,
                          const tg_tensor *x, int x_ndim, const tg_tensor *h, const tg_tensor *c);

/* ---- fused ops (autograd/rnn.c, rnn_gru.c, rnn_lstm.c) ----
 * One step: x (B, in), h (B, H) or NULL (zeros), c (B, H) or NULL (LSTM only). One node. */
tg_rnn_state tg_cell_step_fused(tg_tape *t, tg_cell_kind kind, const tg_cell_weights *w,
                                tg_tensor *x, tg_tensor *h, tg_tensor *c);
/* A whole sequence through one layer in one direction: x (T, B, in) sequence-first,
 * h0/c0 (B, H) or NULL. output (T, B, H) holds h_t at position t; `reverse` runs from
 * t = T−1 down to 0 (its output at t has consumed x_{T−1} .. x_t). One node. */
tg_rnn_result tg_rnn_sequence_fused(tg_tape *t, tg_cell_kind kind, const tg_cell_weights *w,
                                    tg_tensor *x, tg_tensor *h0, tg_tensor *c0, bool reverse);

/* ---- composite path (nn/rnn_composite.c): the same, from primitive ops ----
 * `tag` names the step's intermediates "<gate>_<tag>" ("z_3"); NULL names them "<gate>". */
tg_rnn_state tg_cell_step_composite(tg_tape *t, tg_cell_kind kind, const tg_cell_weights *w,
                                    tg_tensor *x, tg_tensor *h, tg_tensor *c, const char *tag);
/* Steps named "<gate>_<t><suffix>" (suffix e.g. "" or "_l1_reverse"; NULL = ""). */
tg_rnn_result tg_rnn_sequence_composite(tg_tape *t, tg_cell_kind kind, const tg_cell_weights *w,
                                        tg_tensor *x, tg_tensor *h0, tg_tensor *c0, bool reverse,
                                        const char *suffix);

/* The most recent tensor recorded on the tape under `name` (an op output), or NULL. */
tg_tensor *tg_rnn_find_named(const tg_tape *t, const char *name);

/* ------------------------------------------------------------------------------------------
 * Modules: nn.RNN, nn.GRU, nn.LSTM
 * ---------------------------------------------------------------------------------------- */
typedef enum tg_rnn_exec {
    TG_RNN_FUSED = 0, /* default: fused sequence ops */
    TG_RNN_COMPOSITE  /* primitive ops per step, intermediates named */
} tg_rnn_exec;

typedef enum tg_rnn_nonlinearity { TG_RNN_TANH = 0, TG_RNN_RELU } tg_rnn_nonlinearity;

typedef struct tg_rnn_options {
    int64_t input_size, hidden_size;
    int64_t num_layers;               /* default 1 */
    bool bias;                        /* default true */
    bool batch_first;                 /* default false: x is (L, N, in) */
    tg_real dropout;                  /* between layers, in training; default 0 */
    bool bidirectional;               /* default false */
    tg_rnn_nonlinearity nonlinearity; /* RNN only; default tanh */
    bool reset_after;                 /* GRU only; default true = PyTorch; false = Cho 2014 */
    tg_rnn_exec exec;                 /* default fused */
} tg_rnn_options;

/* PyTorch's defaults for the given sizes; change fields from there. */
tg_rnn_options tg_rnn_defaults(int64_t input_size, int64_t hidden_size);

/* One struct serves the three modules (the kind says which). Plain: options + parameters. */
typedef struct tg_recurrent {
    tg_cell_kind kind;
    tg_rnn_options options;
    int64_t num_directions;   /* D = 2 if bidirectional */
    tg_cell_weights *weights; /* num_layers·D entries, index layer·D + direction */
    tg_params *params;        /* weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, ..._reverse */
} tg_recurrent;
typedef tg_recurrent tg_rnn, tg_gru, tg_lstm;

/* Parameters are drawn U(±1/√H) from the default generator in registration order, as
 * PyTorch does (bit-exact after the same tg_manual_seed). */
tg_rnn *tg_rnn_new(tg_rnn_options options);
tg_gru *tg_gru_new(tg_rnn_options options);
tg_lstm *tg_lstm_new(tg_rnn_options options);

/* x: (L, N, in), (N, L, in) with batch_first, or unbatched (L, in). h0 / c0: (D·layers, N, H)
 * whatever batch_first is (unbatched: (D·layers, H)), or NULL for zeros.
 * output: (L, N, D·H) (batch_first (N, L, D·H)), features [forward | reverse];
 * h_n, c_n: (D·layers, N, H), index layer·D + direction. Dropout between layers is active
 * when the tape is in training mode. */
tg_rnn_result tg_rnn_forward(tg_rnn *m, tg_tape *t, tg_tensor *x, tg_tensor *h0);
tg_rnn_result tg_gru_forward(tg_gru *m, tg_tape *t, tg_tensor *x, tg_tensor *h0);
tg_rnn_result tg_lstm_forward(tg_lstm *m, tg_tape *t, tg_tensor *x, tg_tensor *h0, tg_tensor *c0);

tg_params *tg_rnn_params(tg_rnn *m);
tg_params *tg_gru_params(tg_gru *m);
tg_params *tg_lstm_params(tg_lstm *m);
void tg_rnn_free(tg_rnn *m);
void tg_gru_free(tg_gru *m);
void tg_lstm_free(tg_lstm *m);

/* ------------------------------------------------------------------------------------------
 * Cells: nn.RNNCell, nn.GRUCell, nn.LSTMCell (parameters weight_ih, weight_hh, bias_ih, bias_hh)
 * ---------------------------------------------------------------------------------------- */
typedef struct tg_cell_options {
    int64_t input_size, hidden_size;
    bool bias;                        /* default true */
    tg_rnn_nonlinearity nonlinearity; /* RNNCell only */
    bool reset_after;                 /* GRUCell only; default true */
    tg_rnn_exec exec;                 /* default fused */
} tg_cell_options;

tg_cell_options tg_cell_defaults(int64_t input_size, int64_t hidden_size);

typedef struct tg_cell {
    tg_cell_kind kind;
    tg_cell_options options;
    tg_tensor *weight_ih, *weight_hh, *bias_ih, *bias_hh; /* biases NULL without bias */
    tg_params *params;
} tg_cell;
typedef tg_cell tg_rnn_cell, tg_gru_cell, tg_lstm_cell;

tg_rnn_cell *tg_rnn_cell_new(tg_cell_options options);
tg_gru_cell *tg_gru_cell_new(tg_cell_options options);
tg_lstm_cell *tg_lstm_cell_new(tg_cell_options options);

/* x: (N, in) or (in); h, c: (N, H) or (H), or NULL for zeros. Returns h' (LSTM: h' and c'),
 * shaped like the input (batched or not). Composite cells name their intermediates "r", "z",
 * "n", "h" (...); use tg_cell_step_composite for step-indexed names. */
tg_tensor *tg_rnn_cell_forward(tg_rnn_cell *m, tg_tape *t, tg_tensor *x, tg_tensor *h);
tg_tensor *tg_gru_cell_forward(tg_gru_cell *m, tg_tape *t, tg_tensor *x, tg_tensor *h);
tg_rnn_state tg_lstm_cell_forward(tg_lstm_cell *m, tg_tape *t, tg_tensor *x, tg_tensor *h,
                                  tg_tensor *c);

tg_params *tg_rnn_cell_params(tg_rnn_cell *m);
tg_params *tg_gru_cell_params(tg_gru_cell *m);
tg_params *tg_lstm_cell_params(tg_lstm_cell *m);
void tg_rnn_cell_free(tg_rnn_cell *m);
void tg_gru_cell_free(tg_gru_cell *m);
void tg_lstm_cell_free(tg_lstm_cell *m);

#endif
