/* tapegrad/gates.h — seeing backprop through gates: what the gates of a GRU or an LSTM do
 * at every time step, and how large dL/dh_t is at every step after backward.
 * Layer: nn.
 *
 * The trace reads the named intermediates of the composite path (tapegrad/rnn_ops.h: "z_3" is
 * the update gate at step 3), so run the forward composite — tg_rnn_sequence_composite, or a
 * module with options.exec = TG_RNN_COMPOSITE — for the batch you want to look at:
 *
 *   tg_gate_trace *tr = tg_gate_trace_new(TG_CELL_GRU, T, H, -1);  (-1: mean over the batch)
 *   tg_rnn_result r = tg_gru_forward(gru_composite, tape, x, NULL);
 *   ... loss from r ...
 *   tg_gate_trace_capture(tr, tape, "");     copies z_t, r_t; retains dL/dh_t (before backward)
 *   tg_tape_backward(tape, loss);
 *   tg_gate_trace_read_grads(tr);            ‖dL/dh_t‖ for every t (before tg_tape_reset)
 *
 * The trace is plain arrays (below). Pictures of it — heatmaps of the gates, a chart of the
 * gradient norms — come from the separate library tapegrad-viz: examples/gate_pictures.h. */
#ifndef TAPEGRAD_GATES_H
#define TAPEGRAD_GATES_H

#include "tapegrad/rnn.h"
#include "tapegrad/tape.h"

typedef struct tg_gate_trace {
    tg_cell_kind kind;
    int64_t steps, hidden;
    int64_t batch_row;         /* the traced example, or -1 for the whole batch */
    int n_gates;               /* GRU 2 (z, r), LSTM 3 (i, f, o), plain RNN 0 */
    const char *gate_names[3]; /* "z", "r" / "i", "f", "o" */
    double *gates;             /* (n_gates, hidden, steps): gate g of unit j at step t is
                                * gates[(g·hidden + j)·steps + t]; a batch mean for row -1 */
    double *grad_norm;         /* (steps): ‖dL/dh_t‖ (NAN before tg_gate_trace_read_grads);
                                * for row -1 the norm over the whole (batch, hidden) gradient */
    double *cell_grad_norm; /* (steps): ‖dL/dc_t‖ for an LSTM (its cell's highway), else NULL */
    double *grad;           /* (hidden, steps): per unit, sqrt(Σ_batch (dL/dh_t)²), or
                             * the row's |dL/dh_t|; Σ_j grad² = grad_norm² */
    tg_tensor **h, **c;     /* the tape's h_t (and c_t): valid until tg_tape_reset */
} tg_gate_trace;

/* A trace of a `kind` layer (GRU, GRU_CHO, LSTM or a plain RNN) over `steps` steps of width
 * `hidden`; batch_row ≥ 0 follows one example, -1 the whole batch. */
tg_gate_trace *tg_gate_trace_new(tg_cell_kind kind, int64_t steps, int64_t hidden,
                                 int64_t batch_row);
void tg_gate_trace_free(tg_gate_trace *tr); /* NULL is fine */

/* After a composite forward whose steps are named "<gate>_<t><suffix>" (suffix "" or NULL
 * for layer 0 of a module, "_l1", "_reverse", ... otherwise), before backward: copies the
 * gate activations of every step and marks every h_t (and c_t) to keep its gradient.
 * A missing name or a wrong width is a misuse (tg_fail): the forward was not composite. */
void tg_gate_trace_capture(tg_gate_trace *tr, const tg_tape *tape, const char *suffix);
/* After backward, before tg_tape_reset: ‖dL/dh_t‖ (and ‖dL/dc_t‖) for every step. A step
 * backward did not reach has gradient 0. */
void tg_gate_trace_read_grads(tg_gate_trace *tr);

#endif
