/* The GRU sequence classifier of the GRU tutorial (its GRUModel): nn.GRU (sequence-first)
 * and a Linear on the last step.
 *
 *   class GRUModel(nn.Module):
 *       def __init__(self, input_size, hidden_size, output_size):
 *           self.gru = nn.GRU(input_size, hidden_size)
 *           self.fc = nn.Linear(hidden_size, output_size)
 *       def forward(self, x):                    # x: (seq_len, batch_size, input_size)
 *           output, _ = self.gru(x)
 *           output = self.fc(output[-1])
 *           return output                        # (batch_size, output_size) */
#include "tapegrad/models.h"

static const tg_module_type gru_seq_classifier_type = {"GRUSeqModel", NULL, NULL};

#include <stdlib.h>

tg_gru_seq_classifier *tg_gru_seq_classifier_new(int64_t input_size, int64_t hidden_size,
                                                 int64_t output_size) {
    tg_gru_seq_classifier *m = tg_xcalloc(1, sizeof *m);
    m->gru =
        tg_gru_new(tg_rnn_defaults(input_size, hidden_size)); /* nn.GRU(input_size, hidden_size) */
    m->fc = tg_linear_new(hidden_size, output_size, true); /* nn.Linear(hidden_size, output_size) */
    tg_module_init(&m->module, &gru_seq_classifier_type);
    tg_module_add_child(&m->module, "gru", &m->gru->base.module);
    tg_module_add_child(&m->module, "fc", &m->fc->module);
    return m;
}

tg_tensor *tg_gru_seq_classifier_forward(tg_gru_seq_classifier *m, tg_tape *t, tg_tensor *x) {
    TG_CHECK_ARG(m);
    TG_CHECK_OP(t, x);
    /* output, _ = self.gru(x) */
    tg_tensor *output = tg_gru_forward(m->gru, t, x, NULL).output;
    /* output = self.fc(output[-1]) */
    return tg_linear_forward(m->fc, t, tg_select(t, output, 0, -1));
}
