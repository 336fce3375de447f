/* The LSTM text classifier of the LSTM/GRU classification tutorial: its Keras model
 *
 *   model = tf.keras.Sequential([
 *     tf.keras.layers.Embedding(input_dim=vocab_size, output_dim=embedding_dim),
 *     tf.keras.layers.LSTM(units=128),                  # returns the last step
 *     tf.keras.layers.Dense(units=num_classes, activation='softmax')])
 *
 * written as the PyTorch twin of the tutorial's GRUModel (the softmax is in the loss):
 *
 *   class LSTMModel(nn.Module):
 *       def __init__(self, vocab_size, embedding_dim, hidden_size, num_classes):
 *           self.embedding = nn.Embedding(vocab_size, embedding_dim)
 *           self.lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True)
 *           self.fc = nn.Linear(hidden_size, num_classes)
 *       def forward(self, x):
 *           x = self.embedding(x)
 *           x, _ = self.lstm(x)
 *           x = self.fc(x[:, -1, :])
 *           return x */
#include "tapegrad/models.h"

static const tg_module_type lstm_classifier_type = {"LSTMClassifier", NULL, NULL};

#include <stdlib.h>

tg_lstm_classifier *tg_lstm_classifier_new(int64_t vocab_size, int64_t embedding_dim,
                                           int64_t hidden_size, int64_t num_classes) {
    tg_lstm_classifier *m = tg_xcalloc(1, sizeof *m);
    m->embedding = tg_embedding_new(vocab_size, embedding_dim, TG_NO_PADDING);
    tg_rnn_options lstm = tg_rnn_defaults(embedding_dim, hidden_size);
    lstm.batch_first = true;
    m->lstm = tg_lstm_new(lstm);
    m->fc = tg_linear_new(hidden_size, num_classes, true);
    tg_module_init(&m->module, &lstm_classifier_type);
    tg_module_add_child(&m->module, "embedding", &m->embedding->module);
    tg_module_add_child(&m->module, "lstm", &m->lstm->base.module);
    tg_module_add_child(&m->module, "fc", &m->fc->module);
    return m;
}

tg_tensor *tg_lstm_classifier_forward(tg_lstm_classifier *m, tg_tape *t, const tg_index *tokens) {
    TG_CHECK_ARG(m);
    TG_CHECK_ARG(t);
    TG_CHECK_INDEX_INPUT(t, tokens);
    /* x = self.embedding(x) */
    tg_tensor *x = tg_embedding_forward(m->embedding, t, tokens); /* (B, T, E) */
    /* x, _ = self.lstm(x) */
    x = tg_lstm_forward(m->lstm, t, x, NULL, NULL).output; /* (B, T, H) */
    /* x = self.fc(x[:, -1, :]) */
    return tg_linear_forward(m->fc, t, tg_select(t, x, 1, -1)); /* (B, C) */
}
