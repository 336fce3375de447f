/* examples/rnn_classifier.c — a recurrent layer and a Linear on its last state, the model
 * the gate-picture programs (and the browser page, web/) train on their recall tasks, and
 * the vanishing-gradient task's batches (see common.h). Besides the library it needs only
 * the C library, so the page's WebAssembly build compiles it too. */
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

ex_recall_batch ex_recall_first_batch(tg_tape *tape, tg_rng *rng, int64_t T, int64_t B,
                                      int64_t vocab, int64_t classes) {
    ex_recall_batch b = {tg_tape_tensor_zeros(tape, TG_SHAPE(T, B, vocab)),
                         tg_tape_index(tape, TG_SHAPE(B))};
    for (int64_t i = 0; i < B; i++) {
        const int32_t first = (int32_t)(tg_rng_next_u32(rng) % (uint32_t)classes);
        b.y->data[i] = first;
        for (int64_t t = 0; t < T; t++) {
            const uint32_t tok = t == 0 ? (uint32_t)first : tg_rng_next_u32(rng) % (uint32_t)vocab;
            b.x->data[(t * B + i) * vocab + tok] = 1;
        }
    }
    return b;
}

int64_t ex_argmax(const tg_real *values, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (values[i] > values[best]) best = i;
    return best;
}

int64_t ex_count_correct(const tg_tensor *logits, const tg_index *labels) {
    const int64_t rows = logits->shape[0], classes = logits->shape[1];
    int64_t right = 0;
    for (int64_t i = 0; i < rows; i++)
        right += ex_argmax(logits->data + i * classes, classes) == labels->data[i];
    return right;
}
