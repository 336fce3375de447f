/* The step-by-step GRU tutorial's model: one GRU step per call, a Linear and LogSoftmax,
 * and initHidden.
 *
 *   class GRU(nn.Module):
 *       def __init__(self, input_size, hidden_size, output_size):
 *           self.hidden_size = hidden_size
 *           self.gru = nn.GRU(input_size, hidden_size)
 *           self.fc = nn.Linear(hidden_size, output_size)
 *           self.softmax = nn.LogSoftmax(dim=1)
 *       def forward(self, input, hidden):
 *           output, hidden = self.gru(input.view(1, 1, -1), hidden)
 *           output = self.fc(output.view(1, -1))
 *           output = self.softmax(output)
 *           return output, hidden
 *       def initHidden(self):
 *           return torch.zeros(1, 1, self.hidden_size)
 *
 * The tutorial's batch of one is generalised to N rows: view(1, N, -1) and view(N, -1). */
#include "tapegrad/models.h"

static const tg_module_type gru_stepwise_type = {"GRUStepwise", NULL, NULL};

#include <stdlib.h>

tg_gru_stepwise *tg_gru_stepwise_new(int64_t input_size, int64_t hidden_size, int64_t output_size) {
    tg_gru_stepwise *m = tg_xcalloc(1, sizeof *m);
    m->hidden_size = hidden_size;
    m->gru = tg_gru_new(tg_rnn_defaults(input_size, hidden_size));
    m->fc = tg_linear_new(hidden_size, output_size, true);
    tg_module_init(&m->module, &gru_stepwise_type);
    tg_module_add_child(&m->module, "gru", &m->gru->base.module);
    tg_module_add_child(&m->module, "fc", &m->fc->module);
    return m;
}

tg_gru_stepwise_output tg_gru_stepwise_forward(tg_gru_stepwise *m, tg_tape *t, tg_tensor *input,
                                               tg_tensor *hidden) {
    TG_CHECK_ARG(m);
    TG_CHECK_OP(t, input);
    TG_CHECK_INPUT_OPT(t, hidden);
    const int64_t N = input->ndim > 1 ? input->shape[0] : 1;
    /* output, hidden = self.gru(input.view(1, N, -1), hidden) */
    tg_rnn_result r = tg_gru_forward(m->gru, t, tg_reshape(t, input, TG_SHAPE(1, N, -1)), hidden);
    /* output = self.fc(output.view(N, -1)) */
    tg_tensor *output = tg_linear_forward(m->fc, t, tg_reshape(t, r.output, TG_SHAPE(N, -1)));
    /* output = self.softmax(output) */
    return (tg_gru_stepwise_output){tg_log_softmax(t, output, 1), r.h_n};
}

tg_tensor *tg_gru_stepwise_init_hidden(const tg_gru_stepwise *m, int64_t batch) {
    TG_CHECK_ARG(m);
    return tg_tensor_zeros(TG_SHAPE(1, batch, m->hidden_size)); /* torch.zeros(1, 1, hidden_size) */
}
