/* tapegrad/rnn.h — recurrent modules: nn.RNN (tanh/relu), nn.GRU and nn.LSTM, multi-layer
 * and optionally bidirectional, and the cells nn.RNNCell, nn.GRUCell, nn.LSTMCell,
 * numerically PyTorch's. They own their parameters (PyTorch's names and initialisation) and
 * run the recurrent ops of tapegrad/rnn_ops.h, fused or composite (options.exec).
 * Layer: nn. */
#ifndef TAPEGRAD_RNN_H
#define TAPEGRAD_RNN_H

#include "tapegrad/module.h"
#include "tapegrad/rnn_ops.h"

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
    int64_t proj_size;                /* LSTM only: 0 < P < hidden_size projects h to P
                                       * features (h = W_hr·(o⊙tanh c)); default 0: none */
    tg_rnn_nonlinearity nonlinearity; /* RNN only; default tanh */
    bool reset_after;                 /* GRU only; default true = PyTorch; false = Cho 2014 */
    tg_rnn_exec exec;                 /* default fused */
} tg_rnn_options;

/* PyTorch's defaults for the given sizes; change fields from there. */
tg_rnn_options tg_rnn_defaults(int64_t input_size, int64_t hidden_size);

/* What the three modules share: options and parameters, the kind saying which cell.
 * Each module is its own type around it, so that a GRU passed to tg_lstm_forward is a
 * compile error; code that picks the kind at run time holds &m->base and calls
 * tg_recurrent_forward. Its first member is the module ("RNN", "GRU", "LSTM"): a model adds
 * &m->gru->base.module as its child, tg_module_free(&m->base.module) frees the module. */
typedef struct tg_recurrent {
    tg_module module;
    tg_cell_kind kind;
    tg_rnn_options options;
    int64_t num_directions;   /* D = 2 if bidirectional */
    tg_cell_weights *weights; /* num_layers·D entries, index layer·D + direction; the module's
                               * parameters weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0,
                               * (proj_size: weight_hr_l0), ..._reverse */
} tg_recurrent;

typedef struct tg_rnn {
    tg_recurrent base;
} tg_rnn;
typedef struct tg_gru {
    tg_recurrent base;
} tg_gru;
typedef struct tg_lstm {
    tg_recurrent base;
} tg_lstm;

/* Parameters are drawn U(±1/√H) from the default generator in registration order, as
 * PyTorch does (bit-exact after the same tg_manual_seed). With proj_size P (LSTM only,
 * 0 <= P < hidden_size) weight_hh_l<k> is (4·H, P) and weight_hr_l<k> (P, H) follows each
 * layer's and direction's biases; layers after the first take D·P input features. */
tg_rnn *tg_rnn_new(tg_rnn_options options);
tg_gru *tg_gru_new(tg_rnn_options options);
tg_lstm *tg_lstm_new(tg_rnn_options options);

/* x: (L, N, in), (N, L, in) with batch_first, or unbatched (L, in). h0 / c0: (D·layers, N, H)
 * whatever batch_first is (unbatched: (D·layers, H)), or NULL for zeros.
 * output: (L, N, D·H) (batch_first (N, L, D·H)), features [forward | reverse];
 * h_n, c_n: (D·layers, N, H), index layer·D + direction. With proj_size P, h0, h_n and
 * the output have P features where this says H (output D·P); c0 and c_n keep H.
 * Dropout between layers is active when the module is in training mode (tg_module_train). */
tg_rnn_result tg_rnn_forward(tg_rnn *m, tg_tape *t, tg_tensor *x, tg_tensor *h0);
tg_rnn_result tg_gru_forward(tg_gru *m, tg_tape *t, tg_tensor *x, tg_tensor *h0);
tg_rnn_result tg_lstm_forward(tg_lstm *m, tg_tape *t, tg_tensor *x, tg_tensor *h0, tg_tensor *c0);
/* The forward of whichever module m is the base of; c0 must be NULL unless it is an LSTM. */
tg_rnn_result tg_recurrent_forward(tg_recurrent *m, tg_tape *t, tg_tensor *x, tg_tensor *h0,
                                   tg_tensor *c0);

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

/* What the three cells share; each cell is its own type around it, as for the modules, and
 * its first member is the module ("RNNCell", "GRUCell", "LSTMCell"). */
typedef struct tg_cell {
    tg_module module;
    tg_cell_kind kind;
    tg_cell_options options;
    tg_tensor *weight_ih, *weight_hh, *bias_ih, *bias_hh; /* biases NULL without bias */
} tg_cell;

typedef struct tg_rnn_cell {
    tg_cell base;
} tg_rnn_cell;
typedef struct tg_gru_cell {
    tg_cell base;
} tg_gru_cell;
typedef struct tg_lstm_cell {
    tg_cell base;
} tg_lstm_cell;

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
/* The step of whichever cell m is the base of; c must be NULL unless it is an LSTM cell. */
tg_rnn_state tg_cell_forward(tg_cell *m, tg_tape *t, tg_tensor *x, tg_tensor *h, tg_tensor *c);

#endif
