/* The GRU language-model tutorial's model: Embedding, a num_layers GRU (sequence-first), and a
 * Linear to the vocabulary; the hidden state is carried across batches.
 *
 *   class GRU(nn.Module):
 *       def __init__(self, vocab_size, embedding_dim, hidden_dim, num_layers):
 *           self.embedding = nn.Embedding(vocab_size, embedding_dim)
 *           self.gru = nn.GRU(embedding_dim, hidden_dim, num_layers)
 *           self.fc = nn.Linear(hidden_dim, vocab_size)
 *       def forward(self, x, hidden):
 *           embedded = self.embedding(x)
 *           output, hidden = self.gru(embedded, hidden)
 *           output = self.fc(output)
 *           return output, hidden
 *
 *   hidden = torch.zeros(num_layers, batch_size, hidden_dim)
 *   output, hidden = model(x, hidden)
 *   hidden = hidden.detach()          # truncated BPTT: the next batch starts from here */
#include "tapegrad/models.h"

static const tg_module_type gru_lm_type = {"GRULanguageModel", NULL, NULL};

#include <stdlib.h>
#include <string.h>

tg_gru_lm *tg_gru_lm_new(int64_t vocab_size, int64_t embedding_dim, int64_t hidden_dim,
                         int64_t num_layers) {
    tg_gru_lm *m = tg_xcalloc(1, sizeof *m);
    m->embedding = tg_embedding_new(vocab_size, embedding_dim, TG_NO_PADDING);
    tg_rnn_options gru = tg_rnn_defaults(embedding_dim, hidden_dim);
    gru.num_layers = num_layers;
    m->gru = tg_gru_new(gru);
    m->fc = tg_linear_new(hidden_dim, vocab_size, true);
    tg_module_init(&m->module, &gru_lm_type);
    tg_module_add_child(&m->module, "embedding", &m->embedding->module);
    tg_module_add_child(&m->module, "gru", &m->gru->base.module);
    tg_module_add_child(&m->module, "fc", &m->fc->module);
    return m;
}

/* embedded = self.embedding(x); output, hidden = self.gru(embedded, hidden) */
static tg_rnn_result gru_lm_body(tg_gru_lm *m, tg_tape *t, const tg_index *x, tg_tensor *hidden) {
    tg_tensor *embedded = tg_embedding_forward(m->embedding, t, x); /* (T, B, E) */
    return tg_gru_forward(m->gru, t, embedded, hidden);             /* (T, B, H) */
}

tg_gru_lm_output tg_gru_lm_forward(tg_gru_lm *m, tg_tape *t, const tg_index *x, tg_tensor *hidden) {
    TG_CHECK_ARG(m);
    TG_CHECK_ARG(t);
    TG_CHECK_INDEX_INPUT(t, x);
    TG_CHECK_INPUT_OPT(t, hidden);
    tg_rnn_result r = gru_lm_body(m, t, x, hidden);
    /* output = self.fc(output) */
    return (tg_gru_lm_output){tg_linear_forward(m->fc, t, r.output), r.h_n};
}

tg_gru_lm_loss_output tg_gru_lm_loss(tg_gru_lm *m, tg_tape *t, const tg_index *x, tg_tensor *hidden,
                                     const tg_index *targets, const tg_loss_options *opts) {
    TG_CHECK_ARG(m);
    TG_CHECK_ARG(t);
    TG_CHECK_INDEX_INPUT(t, x);
    TG_CHECK_INPUT_OPT(t, hidden);
    TG_CHECK_INDEX_INPUT(t, targets);
    tg_rnn_result r = gru_lm_body(m, t, x, hidden);
    /* F.cross_entropy(self.fc(output).view(-1, V), targets), without the logits */
    tg_tensor *loss =
        tg_linear_cross_entropy(t, r.output, m->fc->weight, m->fc->bias, targets, opts);
    return (tg_gru_lm_loss_output){loss, r.h_n};
}

tg_tensor *tg_gru_lm_init_hidden(const tg_gru_lm *m, int64_t batch) {
    TG_CHECK_ARG(m);
    const tg_rnn_options *o = &m->gru->base.options;
    return tg_tensor_zeros(TG_SHAPE(o->num_layers, batch, o->hidden_size));
}

tg_tensor *tg_gru_lm_detach(tg_tensor *into, const tg_tensor *hidden) {
    TG_CHECK_TENSOR(hidden);
    if (into) TG_CHECK_TENSOR(into);
    if (!into) into = tg_tensor_new(hidden->ndim, hidden->shape);
    if (!into->owned || !tg_shape_equal(into, hidden)) {
        char a[160], b[160];
        tg_fail("tg_gru_lm_detach: `into` %s must be a long-lived tensor shaped like hidden %s",
                tg_tensor_describe(into, a, sizeof a), tg_tensor_describe(hidden, b, sizeof b));
    }
    memmove(into->data, hidden->data, (size_t)hidden->numel * sizeof(tg_real));
    into->requires_grad = false;
    return into;
}
