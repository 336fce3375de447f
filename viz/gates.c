/* viz/gates.c — the two pictures of gates over time: the activations of every gate as
 * heatmaps (units × steps), and the gradient norms ‖dL/dh_t‖ (‖dL/dc_t‖) against t.
 *
 * Why a log scale for the gradient: backward through time multiplies dL/dh_t by the
 * Jacobian dh_t/dh_{t-1} once per step. For a tanh RNN that Jacobian is
 * diag(1 − h_t²)·W_hh, whose norm is often below 1, so the gradient that reaches the first
 * steps shrinks geometrically — on a log scale, a straight line down. The GRU has the direct
 * term z_t (dh_prev += dh ⊙ z) and the LSTM the cell's dc_prev = dc ⊙ f: where the gates sit
 * near 1 the gradient passes through unchanged, and the line stays flat. */
#include "tapegrad/viz.h"

#include <string.h>

/* A panel's title: what the gate does, for the names of GRU and LSTM gates. */
static const char *gate_title(const char *g) {
    if (!strcmp(g, "z")) return "z: update gate (1 = keep h_{t-1})";
    if (!strcmp(g, "r")) return "r: reset gate";
    if (!strcmp(g, "i")) return "i: input gate";
    if (!strcmp(g, "f")) return "f: forget gate (1 = keep c_{t-1})";
    if (!strcmp(g, "o")) return "o: output gate";
    return g;
}

tg_status tg_gate_heatmap_write_png(const char *path, const tg_gate_activations *gates,
                                    const char *title) {
    if (!gates || gates->n_gates < 1 || gates->n_gates > 16 || !gates->names)
        return tg_status_set(TG_ERR_ARGUMENT,
                             "tg_gate_heatmap_write_png: needs 1 to 16 gates and their names (a "
                             "plain RNN has no gates to draw)");
    tg_heatmap_panel panels[16];
    for (int g = 0; g < gates->n_gates; g++)
        panels[g] = (tg_heatmap_panel){
            gate_title(gates->names[g]),
            gates->values ? gates->values + (int64_t)g * gates->units * gates->steps : NULL,
            gates->units, gates->steps};
    const tg_heatmap_options o = {title,
                                  "time step t",
                                  "hidden unit",
                                  gates->batch_mean ? "mean activation" : "gate activation",
                                  0,
                                  1};
    return tg_heatmap_write_png(path, panels, gates->n_gates, &o);
}

tg_status tg_grad_chart_write_png(const char *path, const double *hidden_norm,
                                  const double *cell_norm, int64_t steps, const char *title) {
    const tg_chart_series s[2] = {{"|dL/dh_t|", NULL, hidden_norm, steps},
                                  {"|dL/dc_t|", NULL, cell_norm, steps}};
    const tg_chart_options o = {title, "time step t", "gradient norm (log scale)", true, 0, 0};
    return tg_line_chart_write_png(path, s, cell_norm ? 2 : 1, &o);
}
