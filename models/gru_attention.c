/* The GRU + additive-attention tutorial as a seq2seq model: a GRU encoder, its additive attention
 *     e_t = vᵀ tanh(W_a h_t + U_a s_{t−1} + b_a),  α = softmax(e),  c = Σ_t α_t h_t
 * and a GRU decoder stepped one token at a time (teacher forcing, or greedy).
 *
 *   class GRUAttention(nn.Module):
 *       def __init__(self, src_vocab, tgt_vocab, embedding_dim, hidden_size, attn_dim):
 *           self.src_embedding = nn.Embedding(src_vocab, embedding_dim)
 *           self.encoder = nn.GRU(embedding_dim, hidden_size, batch_first=True)
 *           self.tgt_embedding = nn.Embedding(tgt_vocab, embedding_dim)
 *           self.attention = AdditiveAttention(hidden_size, hidden_size, attn_dim)
 *           self.decoder = nn.GRUCell(embedding_dim + hidden_size, hidden_size)
 *           self.fc = nn.Linear(2 * hidden_size, tgt_vocab)
 *       def step(self, y, s, enc):
 *           context, alpha = self.attention(enc, s)
 *           s = self.decoder(torch.cat([y, context], dim=1), s)
 *           return self.fc(torch.cat([s, context], dim=1)), s, alpha
 *       def forward(self, src, tgt_in):
 *           enc, h = self.encoder(self.src_embedding(src))
 *           s = h[0]
 *           y = self.tgt_embedding(tgt_in)
 *           logits, weights = [], []
 *           for i in range(tgt_in.size(1)):
 *               out, s, alpha = self.step(y[:, i], s, enc)
 *               logits.append(out); weights.append(alpha)
 *           return torch.stack(logits, 1), torch.stack(weights, 1)
 * (tests/fixturegen/models.py holds the class, AdditiveAttention and greedy()). */
#include "tapegrad/models.h"

static const tg_module_type gru_attention_type = {"GRUAttention", NULL, NULL};

#include <stdlib.h>

tg_gru_attention *tg_gru_attention_new(int64_t src_vocab, int64_t tgt_vocab, int64_t embedding_dim,
                                       int64_t hidden_size, int64_t attn_dim) {
    tg_gru_attention *m = tg_xcalloc(1, sizeof *m);
    m->src_embedding = tg_embedding_new(src_vocab, embedding_dim, TG_NO_PADDING);
    tg_rnn_options encoder = tg_rnn_defaults(embedding_dim, hidden_size);
    encoder.batch_first = true;
    m->encoder = tg_gru_new(encoder);
    m->tgt_embedding = tg_embedding_new(tgt_vocab, embedding_dim, TG_NO_PADDING);
    m->attention = tg_additive_attention_new(hidden_size, hidden_size, attn_dim);
    m->decoder = tg_gru_cell_new(tg_cell_defaults(embedding_dim + hidden_size, hidden_size));
    m->fc = tg_linear_new(2 * hidden_size, tgt_vocab, true);
    tg_module_init(&m->module, &gru_attention_type);
    tg_module_add_child(&m->module, "src_embedding", &m->src_embedding->module);
    tg_module_add_child(&m->module, "encoder", &m->encoder->base.module);
    tg_module_add_child(&m->module, "tgt_embedding", &m->tgt_embedding->module);
    tg_module_add_child(&m->module, "attention", &m->attention->module);
    tg_module_add_child(&m->module, "decoder", &m->decoder->base.module);
    tg_module_add_child(&m->module, "fc", &m->fc->module);
    return m;
}

/* The encoder's states and the projections W_a h_t + b_a, computed once per sequence. */
typedef struct encoded {
    tg_tensor *enc, *enc_proj, *s;
} encoded;

static encoded encode(tg_gru_attention *m, tg_tape *t, const tg_index *src) {
    /* enc, h = self.encoder(self.src_embedding(src)) */
    tg_rnn_result r =
        tg_gru_forward(m->encoder, t, tg_embedding_forward(m->src_embedding, t, src), NULL);
    /* s = h[0] */
    return (encoded){r.output, tg_additive_attention_project(m->attention, t, r.output),
                     tg_select(t, r.h_n, 0, 0)};
}

/* One decoder step from the embedded input y (N, E); updates *s, returns the input of fc,
 * torch.cat([s, context], dim=1) (N, 2·hidden). */
static tg_tensor *step(tg_gru_attention *m, tg_tape *t, tg_tensor *y, tg_tensor **s,
                       const encoded *e, tg_tensor **alpha) {
    /* context, alpha = self.attention(enc, s) */
    tg_attention_output a =
        tg_additive_attention_forward(m->attention, t, e->enc, e->enc_proj, *s, NULL);
    /* s = self.decoder(torch.cat([y, context], dim=1), s) */
    *s = tg_gru_cell_forward(m->decoder, t, tg_concat(t, (tg_tensor *[]){y, a.context}, 2, 1), *s);
    *alpha = a.weights;
    /* return self.fc(torch.cat([s, context], dim=1)), s, alpha  (fc: by the caller) */
    return tg_concat(t, (tg_tensor *[]){*s, a.context}, 2, 1);
}

/* torch.stack(xs, 1) of n tensors (N, K) -> (N, n, K): the rows of a concat along dim 1. */
static tg_tensor *stack1(tg_tape *t, tg_tensor **xs, int64_t n) {
    const int64_t N = xs[0]->shape[0], K = xs[0]->shape[1];
    return tg_reshape(t, tg_concat(t, xs, (int)n, 1), TG_SHAPE(N, n, K));
}

static void check_src(const char *op, const tg_index *src, const tg_index *tgt) {
    char a[96], b[96];
    if (src->ndim != 2 || src->shape[1] < 1 ||
        (tgt && (tgt->ndim != 2 || tgt->shape[1] < 1 || tgt->shape[0] != src->shape[0])))
        tg_fail("%s: src %s and tgt_in %s must be (N, S) and (N, T) token ids, S, T >= 1", op,
                tg_shape_format(src->ndim, src->shape, a, sizeof a),
                tgt ? tg_shape_format(tgt->ndim, tgt->shape, b, sizeof b) : "-");
}

tg_gru_attention_output tg_gru_attention_forward(tg_gru_attention *m, tg_tape *t,
                                                 const tg_index *src, const tg_index *tgt_in) {
    TG_CHECK_ARG(m);
    TG_CHECK_ARG(t);
    TG_CHECK_INDEX_INPUT(t, src);
    TG_CHECK_INDEX_INPUT(t, tgt_in);
    check_src("tg_gru_attention_forward", src, tgt_in);
    const int64_t T = tgt_in->shape[1];
    encoded e = encode(m, t, src);
    /* y = self.tgt_embedding(tgt_in) */
    tg_tensor *y = tg_embedding_forward(m->tgt_embedding, t, tgt_in); /* (N, T, E) */
    tg_tensor **hidden = tg_tape_alloc(t, (size_t)T * sizeof *hidden);
    tg_tensor **weights = tg_tape_alloc(t, (size_t)T * sizeof *weights);
    /* for i in range(tgt_in.size(1)): out, s, alpha = self.step(y[:, i], s, enc) */
    for (int64_t i = 0; i < T; i++)
        hidden[i] = step(m, t, tg_select(t, y, 1, i), &e.s, &e, &weights[i]);
    /* return torch.stack(logits, 1), torch.stack(weights, 1): fc applied once to the stacked
     * (N, T, 2·hidden) inputs, the same numbers as T products of N rows, in one GEMM */
    tg_tensor *logits = tg_linear_forward(m->fc, t, stack1(t, hidden, T));
    return (tg_gru_attention_output){logits, stack1(t, weights, T)};
}

tg_index *tg_gru_attention_greedy(tg_gru_attention *m, tg_tape *t, const tg_index *src, int32_t bos,
                                  int64_t max_len, tg_tensor **weights) {
    TG_CHECK_ARG(m);
    TG_CHECK_ARG(t);
    TG_CHECK_INDEX_INPUT(t, src);
    check_src("tg_gru_attention_greedy", src, NULL);
    if (max_len < 1)
        tg_fail("tg_gru_attention_greedy: max_len %lld must be >= 1", (long long)max_len);
    const int64_t N = src->shape[0];
    encoded e = encode(m, t, src);
    tg_index *tokens = tg_tape_index(t, TG_SHAPE(N, max_len));
    tg_index *y = tg_tape_index(t, TG_SHAPE(N));
    for (int64_t n = 0; n < N; n++) y->data[n] = bos;
    tg_tensor **alphas = tg_tape_alloc(t, (size_t)max_len * sizeof *alphas);
    for (int64_t i = 0; i < max_len; i++) {
        tg_tensor *h =
            step(m, t, tg_embedding_forward(m->tgt_embedding, t, y), &e.s, &e, &alphas[i]);
        tg_tensor *logits = tg_linear_forward(m->fc, t, h);
        tg_max_dim(t, logits, 1, false, &y); /* y = out.argmax(dim=1) */
        for (int64_t n = 0; n < N; n++) tokens->data[n * max_len + i] = y->data[n];
    }
    if (weights) *weights = stack1(t, alphas, max_len);
    return tokens;
}
