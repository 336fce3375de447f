/* The GRU text classifier of the LSTM/GRU classification tutorial (its GRUModel):
 * Embedding, GRU (batch_first), and a Linear on the last step.
 *
 *   gru_layer = nn.GRU(input_size=embedding_dim, hidden_size=128)   # built before the model
 *   class GRUModel(nn.Module):
 *       def __init__(self, vocab_size, embedding_dim, hidden_size, num_classes):
 *           self.embedding = nn.Embedding(vocab_size, embedding_dim)
 *           self.gru = gru_layer
 *           self.fc = nn.Linear(hidden_size, num_classes)
 *       def forward(self, x):
 *           x = self.embedding(x)
 *           x, _ = self.gru(x)
 *           x = self.fc(x[:, -1, :])
 *           return x
 *
 * The tutorial indexes x[:, -1, :], i.e. (batch, seq): the GRU here is batch_first. It is built
 * first, as the seed's gru_layer is, so the draws follow the seed after tg_manual_seed;
 * the keys keep the attribute order (embedding, gru, fc), as state_dict does. */
#include "tapegrad/models.h"

static const tg_module_type gru_classifier_type = {"GRUClassifier", NULL, NULL};

#include <stdlib.h>

tg_gru_classifier *tg_gru_classifier_new(int64_t vocab_size, int64_t embedding_dim,
                                         int64_t hidden_size, int64_t num_classes) {
    tg_gru_classifier *m = tg_xcalloc(1, sizeof *m);
    tg_rnn_options gru = tg_rnn_defaults(embedding_dim, hidden_size);
    gru.batch_first = true;
    m->gru = tg_gru_new(gru); /* gru_layer, first */
    m->embedding = tg_embedding_new(vocab_size, embedding_dim, TG_NO_PADDING);
    m->fc = tg_linear_new(hidden_size, num_classes, true);
    tg_module_init(&m->module, &gru_classifier_type);
    tg_module_add_child(&m->module, "embedding", &m->embedding->module);
    tg_module_add_child(&m->module, "gru", &m->gru->base.module);
    tg_module_add_child(&m->module, "fc", &m->fc->module);
    return m;
}

tg_tensor *tg_gru_classifier_forward(tg_gru_classifier *m, tg_tape *t, const tg_index *tokens) {
    TG_CHECK_ARG(m);
    TG_CHECK_ARG(t);
    TG_CHECK_INDEX_INPUT(t, tokens);
    /* x = self.embedding(x) */
    tg_tensor *x = tg_embedding_forward(m->embedding, t, tokens); /* (B, T, E) */
    /* x, _ = self.gru(x) */
    x = tg_gru_forward(m->gru, t, x, NULL).output; /* (B, T, H) */
    /* x = self.fc(x[:, -1, :]) */
    return tg_linear_forward(m->fc, t, tg_select(t, x, 1, -1)); /* (B, C) */
}
