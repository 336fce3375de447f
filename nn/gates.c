/* Gates over time: the record of a composite GRU/LSTM's gate activations and ‖dL/dh_t‖ at
 * every step (the pictures of them are in the separate library tapegrad-viz:
 * examples/gate_pictures.h).
 *
 * The gates are the named intermediates the composite cells leave on the tape ("z_3" is
 * the update gate at step 3); the gradients are the retained grads of the named h_t (c_t),
 * read after backward. A norm per step says how much of the loss's gradient reaches it:
 * the vanishing gradient of a tanh RNN, or the gates holding it up, in numbers. */
#include "tapegrad/gates.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

tg_gate_trace *tg_gate_trace_new(tg_cell_kind kind, int64_t steps, int64_t hidden,
                                 int64_t batch_row) {
    if (steps < 1 || hidden < 1 || batch_row < -1)
        tg_fail("tg_gate_trace_new: steps %lld and hidden %lld must be positive, batch_row %lld "
                "a row index or -1",
                (long long)steps, (long long)hidden, (long long)batch_row);
    tg_gate_trace *tr = tg_xcalloc(1, sizeof *tr);
    tr->kind = kind, tr->steps = steps, tr->hidden = hidden, tr->batch_row = batch_row;
    switch (kind) {
    case TG_CELL_GRU:
    case TG_CELL_GRU_CHO:
        tr->n_gates = 2, tr->gate_names[0] = "z", tr->gate_names[1] = "r";
        break;
    case TG_CELL_LSTM:
        tr->n_gates = 3, tr->gate_names[0] = "i", tr->gate_names[1] = "f", tr->gate_names[2] = "o";
        break;
    case TG_CELL_RNN_TANH:
    case TG_CELL_RNN_RELU:
        tr->n_gates = 0;
        break;
    default:
        tg_fail("tg_gate_trace_new: unknown cell kind %d", (int)kind);
    }
    tr->gates =
        tg_xcalloc((size_t)((tr->n_gates ? tr->n_gates : 1) * hidden * steps), sizeof(double));
    tr->grad_norm = tg_xmalloc((size_t)steps * sizeof(double));
    tr->grad = tg_xcalloc((size_t)(hidden * steps), sizeof(double));
    tr->h = tg_xcalloc((size_t)steps, sizeof *tr->h);
    if (kind == TG_CELL_LSTM) {
        tr->cell_grad_norm = tg_xmalloc((size_t)steps * sizeof(double));
        tr->c = tg_xcalloc((size_t)steps, sizeof *tr->c);
    }
    for (int64_t t = 0; t < steps; t++) {
        tr->grad_norm[t] = NAN;
        if (tr->cell_grad_norm) tr->cell_grad_norm[t] = NAN;
    }
    return tr;
}

void tg_gate_trace_free(tg_gate_trace *tr) {
    if (!tr) return;
    free(tr->gates), free(tr->grad_norm), free(tr->cell_grad_norm), free(tr->grad);
    free(tr->h), free(tr->c);
    free(tr);
}

/* The tensor "<gate>_<t><suffix>" of the tape, checked to be (B, hidden) with the traced row. */
static tg_tensor *find_step(const tg_gate_trace *tr, const tg_tape *tape, const char *gate,
                            int64_t t, const char *suffix) {
    char name[TG_NAME_MAX], d[160];
    snprintf(name, sizeof name, "%s_%lld%s", gate, (long long)t, suffix ? suffix : "");
    tg_tensor *x = tg_rnn_find_named(tape, name);
    if (!x)
        tg_fail("tg_gate_trace_capture: the tape has no tensor named '%s' (trace a composite "
                "forward: tg_rnn_sequence_composite or options.exec = TG_RNN_COMPOSITE; is the "
                "suffix right?)",
                name);
    if (x->ndim != 2 || x->shape[1] != tr->hidden || x->shape[0] <= tr->batch_row)
        tg_fail("tg_gate_trace_capture: '%s' is %s, expected (batch, %lld) with batch > %lld", name,
                tg_tensor_describe(x, d, sizeof d), (long long)tr->hidden,
                (long long)tr->batch_row);
    return x;
}

void tg_gate_trace_capture(tg_gate_trace *tr, const tg_tape *tape, const char *suffix) {
    TG_CHECK_ARG(tr);
    TG_CHECK_ARG(tape);
    const int64_t T = tr->steps, Hd = tr->hidden;
    for (int64_t t = 0; t < T; t++) {
        for (int g = 0; g < tr->n_gates; g++) {
            const tg_tensor *x = find_step(tr, tape, tr->gate_names[g], t, suffix);
            const int64_t B = x->shape[0];
            for (int64_t j = 0; j < Hd; j++) {
                double v = 0;
                if (tr->batch_row >= 0)
                    v = (double)x->data[tr->batch_row * Hd + j];
                else {
                    for (int64_t b = 0; b < B; b++) v += (double)x->data[b * Hd + j];
                    v /= (double)B;
                }
                tr->gates[((int64_t)g * Hd + j) * T + t] = v;
            }
        }
        tr->h[t] = find_step(tr, tape, "h", t, suffix);
        tg_tensor_retain_grad(tr->h[t]);
        if (tr->c) {
            tr->c[t] = find_step(tr, tape, "c", t, suffix);
            tg_tensor_retain_grad(tr->c[t]);
        }
        tr->grad_norm[t] = NAN;
        if (tr->cell_grad_norm) tr->cell_grad_norm[t] = NAN;
    }
}

/* ‖g‖ over the traced row (or all rows); per-unit root sums of squares into `unit` if given. */
static double grad_norm_of(const tg_gate_trace *tr, const tg_tensor *x, double *unit, int64_t t) {
    const int64_t Hd = tr->hidden, B = x->shape[0];
    const int64_t b0 = tr->batch_row >= 0 ? tr->batch_row : 0;
    const int64_t b1 = tr->batch_row >= 0 ? tr->batch_row + 1 : B;
    double total = 0;
    for (int64_t j = 0; j < Hd; j++) {
        double ss = 0;
        if (x->grad)
            for (int64_t b = b0; b < b1; b++)
                ss += (double)x->grad[b * Hd + j] * (double)x->grad[b * Hd + j];
        if (unit) unit[j * tr->steps + t] = sqrt(ss);
        total += ss;
    }
    return sqrt(total);
}

void tg_gate_trace_read_grads(tg_gate_trace *tr) {
    TG_CHECK_ARG(tr);
    for (int64_t t = 0; t < tr->steps; t++) {
        if (!tr->h[t])
            tg_fail("tg_gate_trace_read_grads: step %lld was not captured (call "
                    "tg_gate_trace_capture after the forward, before backward)",
                    (long long)t);
        /* the captured tensors live until the tape's reset: read them before it */
        tg_tensor_check(__func__, "tr", tr->h[t]);
        if (tr->c) tg_tensor_check(__func__, "tr", tr->c[t]);
        tr->grad_norm[t] = grad_norm_of(tr, tr->h[t], tr->grad, t);
        if (tr->c) tr->cell_grad_norm[t] = grad_norm_of(tr, tr->c[t], NULL, t);
    }
}
