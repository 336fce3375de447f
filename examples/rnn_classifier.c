/* examples/rnn_classifier.c — a recurrent layer and a Linear on its last state, the model
 * the gate-picture programs train on their recall tasks (see common.h). */
#include "common.h"

ex_rnn_classifier ex_rnn_classifier_new(tg_cell_kind kind, int64_t input, int64_t hidden,
                                        int64_t classes) {
    const tg_rnn_options o = tg_rnn_defaults(input, hidden);
    ex_rnn_classifier m;
    switch (kind) {
    case TG_CELL_RNN_TANH:
        m.rnn = &tg_rnn_new(o)->base;
        break;
    case TG_CELL_GRU:
        m.rnn = &tg_gru_new(o)->base;
        break;
    case TG_CELL_LSTM:
        m.rnn = &tg_lstm_new(o)->base;
        break;
    default:
        tg_fail("ex_rnn_classifier_new: a tanh RNN, a GRU or an LSTM, not %s",
                tg_cell_kind_name(kind));
    }
    m.fc = tg_linear_new(hidden, classes, true);
    static const tg_module_type type = {"RNNClassifier", NULL, NULL};
    m.module = tg_module_new(&type);
    tg_module_add_child(m.module, "rnn", &m.rnn->module);
    tg_module_add_child(m.module, "fc", &m.fc->module);
    m.params = tg_module_params(m.module);
    return m;
}

tg_tensor *ex_rnn_classifier_forward(ex_rnn_classifier *m, tg_tape *tape, tg_tensor *x,
                                     bool composite) {
    m->rnn->options.exec = composite ? TG_RNN_COMPOSITE : TG_RNN_FUSED;
    const tg_rnn_result r = tg_recurrent_forward(m->rnn, tape, x, NULL, NULL);
    return tg_linear_forward(m->fc, tape, tg_select(tape, r.output, 0, -1));
}

void ex_rnn_classifier_free(ex_rnn_classifier *m) { tg_module_free(m->module); }
