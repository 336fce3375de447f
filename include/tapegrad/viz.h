/* tapegrad/viz.h — pictures as PNG files: heatmaps with a colour bar, line charts with
 * labelled axes and a legend, and the two pictures of gates over time. No plotting library
 * and no Python: the pixels are drawn in memory and written with Debian's stb. Layer: viz.
 *
 * This is the separate library tapegrad-viz, not part of libtapegrad (the umbrella header
 * <tapegrad.h> does not include it). It takes plain arrays of doubles, so it draws anything
 * (a loss curve, attention weights), and needs only the tensor layer's status codes and
 * allocation; the same archive serves the float32 and the float64 library:
 *   cc prog.c $(pkg-config --cflags --libs tapegrad-viz)       (it requires tapegrad)
 * To draw a gate trace of tapegrad/gates.h, include examples/gate_pictures.h.
 *
 * The writers never stop the program: bad arguments or a failed write return a status
 * with a message (tg_error_message). */
#ifndef TAPEGRAD_VIZ_H
#define TAPEGRAD_VIZ_H

#include <stdbool.h>
#include <stdint.h>

#include "tapegrad/base.h"

/* ------------------------------------------------------------------------------------------
 * Heatmaps
 * ---------------------------------------------------------------------------------------- */

/* One heatmap panel: `rows` × `cols` values, row-major (values[row·cols + col]). Drawn with
 * row 0 at the top and col 0 at the left; for gates over time, rows are hidden units and
 * cols are time steps. A value that is not finite is drawn grey. */
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

/* Panels stacked top to bottom, 1 to 16 of them, all with the same number of cols (1 to
 * 4096) and 1 to 4096 rows, sharing one colour scale (viridis: dark violet = vmin,
 * yellow = vmax) shown as a labelled bar on the right. opts may be NULL. */
tg_status tg_heatmap_write_png(const char *path, const tg_heatmap_panel *panels, int n_panels,
                               const tg_heatmap_options *opts);

/* ------------------------------------------------------------------------------------------
 * Line charts
 * ---------------------------------------------------------------------------------------- */

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

/* Up to 8 series on one chart, each in its own colour, with a legend, ticks and labels.
 * opts may be NULL. */
tg_status tg_line_chart_write_png(const char *path, const tg_chart_series *series, int n_series,
                                  const tg_chart_options *opts);

/* ------------------------------------------------------------------------------------------
 * Gates over time
 * ---------------------------------------------------------------------------------------- */

/* The activations of a recurrent layer's gates at every step, as a gate trace records them:
 * gate g of unit j at step t is values[(g·units + j)·steps + t]. */
typedef struct tg_gate_activations {
    int n_gates;              /* 1 to 16 */
    const char *const *names; /* n_gates names: "z", "r" (GRU), "i", "f", "o" (LSTM) get
                               * a title that says what the gate does; others are shown as
                               * they are */
    const double *values;
    int64_t units, steps;
    bool batch_mean; /* the values are means over a batch (the colour bar says so) */
} tg_gate_activations;

/* One panel per gate, units × time, on the colour scale 0 .. 1 of a sigmoid. */
tg_status tg_gate_heatmap_write_png(const char *path, const tg_gate_activations *gates,
                                    const char *title);

/* ‖dL/dh_t‖ against t on a log scale, and ‖dL/dc_t‖ beside it when cell_norm is not NULL
 * (an LSTM's cell); `steps` values each. Steps whose norm is 0 or NaN are left out. */
tg_status tg_grad_chart_write_png(const char *path, const double *hidden_norm,
                                  const double *cell_norm, int64_t steps, const char *title);

#endif
