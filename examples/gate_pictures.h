/* examples/gate_pictures.h — a gate trace (tapegrad/gates.h, in libtapegrad) drawn with
 * tapegrad-viz (tapegrad/viz.h). The two libraries do not know each other (viz sits on the
 * tensor layer only): these inline functions, compiled into the program that includes this
 * header, hand the trace's arrays to the picture writers. Copy them into a program of your
 * own and link both: cc prog.c $(pkg-config --cflags --libs tapegrad-viz)
 *
 *   tg_gate_trace_read_grads(tr);
 *   ex_gate_trace_write_heatmap(tr, "gru_gates.png", "GRU gates");
 *   ex_gate_trace_write_grad_chart(tr, "gru_grad.png", "GRU: |dL/dh_t|"); */
#ifndef EX_GATE_PICTURES_H
#define EX_GATE_PICTURES_H

#include <tapegrad/gates.h>
#include <tapegrad/viz.h>

/* One panel per gate (units × time, colour scale 0..1). A plain RNN has no gates: a status
 * TG_ERR_ARGUMENT. */
static inline tg_status ex_gate_trace_write_heatmap(const tg_gate_trace *tr, const char *path,
                                                    const char *title) {
    const tg_gate_activations gates = {tr->n_gates, tr->gate_names, tr->gates,
                                       tr->hidden,  tr->steps,      tr->batch_row < 0};
    return tg_gate_heatmap_write_png(path, &gates, title);
}

/* ‖dL/dh_t‖ against t on a log scale (and ‖dL/dc_t‖ for an LSTM), after
 * tg_gate_trace_read_grads. */
static inline tg_status ex_gate_trace_write_grad_chart(const tg_gate_trace *tr, const char *path,
                                                       const char *title) {
    return tg_grad_chart_write_png(path, tr->grad_norm, tr->cell_grad_norm, tr->steps, title);
}

#endif
