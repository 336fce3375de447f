/* tapegrad/gates.h — seeing backprop through gates: what the gates of a GRU or an LSTM do
 * at every time step, how large dL/dh_t is at every step after backward, and pictures of
 * both (PNG heatmaps and line charts with labelled axes, written with stb_image_write).
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
 *   tg_gate_trace_write_heatmap(tr, "gru_gates.png", "GRU gates");
 *   tg_gate_trace_write_grad_chart(tr, "gru_grad.png", "GRU: |dL/dh_t|");
 *
 * The picture writers take plain arrays of doubles, so they draw anything (a loss curve,
 * attention weights); they never stop the program: bad arguments or a failed write return a
 * status with a message (tg_error_message). */
#ifndef TAPEGRAD_GATES_H
#define TAPEGRAD_GATES_H

#include "tapegrad/rnn.h"
#include "tapegrad/tape.h"

/* ------------------------------------------------------------------------------------------
 * Pictures
 * ---------------------------------------------------------------------------------------- */

/* One heatmap panel: `rows` × `cols` values, row-major (values[row·cols + col]). Drawn with
 * row 0 at the top and col 0 at the left; for gates over time, rows are hidden units and
 * cols are time steps. */
typedef struct tg_heatmap_panel {
    const char *title; /* above the panel, or NULL */
    const double *values;
    int64_t rows, cols;
} tg_heatmap_panel;

typedef struct tg_heatmap_options {
    const char *title;       /* above everything, or NULL */
    const char *x_label;     /* under the bottom panel ("time step t") */
    const char *y_label;     /* beside every panel ("hidden unit") */
    const char *scale_label; /* beside the colour bar ("activation") */
    double vmin, vmax;       /* the colour scale; vmin == vmax: the data's range */
} tg_heatmap_options;

/* Panels stacked top to bottom, all with the same number of cols, sharing one colour scale
 * (viridis: dark violet = vmin, yellow = vmax) shown as a labelled bar on the right. */
tg_status tg_heatmap_write_png(const char *path, const tg_heatmap_panel *panels, int n_panels,
                               const tg_heatmap_options *opts);

/* One line of a chart: n points (x[i], y[i]); x NULL means x = 0, 1, ..., n−1. Points whose
 * y is not finite (or not positive on a log scale) are left out, breaking the line. */
typedef struct tg_chart_series {
    const char *label; /* in the legend */
    const double *x, *y;
    int64_t n;
} tg_chart_series;

typedef struct tg_chart_options {
    const char *title, *x_label, *y_label;
    bool log_y;        /* a log10 y axis (gradients that shrink geometrically are straight) */
    int width, height; /* in pixels; 0 = 960 × 600 */
} tg_chart_options;

/* Up to 8 series on one chart, each in its own colour, with a legend, ticks and labels. */
tg_status tg_line_chart_write_png(const char *path, const tg_chart_series *series, int n_series,
                                  const tg_chart_options *opts);

/* ------------------------------------------------------------------------------------------
 * Gate traces
 * ---------------------------------------------------------------------------------------- */
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

/* One panel per gate (units × time, colour scale 0..1). */
tg_status tg_gate_trace_write_heatmap(const tg_gate_trace *tr, const char *path, const char *title);
/* ‖dL/dh_t‖ against t on a log scale (and ‖dL/dc_t‖ for an LSTM). */
tg_status tg_gate_trace_write_grad_chart(const tg_gate_trace *tr, const char *path,
                                         const char *title);

#endif
