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

/* Rows per chunk of tg_gru_attention_loss's output layer: 128 rows of a 1000-word vocabulary
 * hold 0.5 MB of logits (the default chunk, ~4 MB, is nearly all 1280 rows of the benchmark's
 * batch and saves little over the logits themselves); 128 and 256 rows ran the benchmark's
 * step in the same time. */
#define LOSS_CHUNK_ROWS 128

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

/* One decoder step from the embedded input y (N, E); updates *s and returns the context, the
 * rest of fc's input torch.cat([s, context], dim=1), which the caller assembles for all
 * steps at once. */
static tg_tensor *step(tg_gru_attention *m, tg_tape *t, tg_tensor *y, tg_tensor **s,
                       const encoded *e, tg_tensor **alpha) {
    /* context, alpha = self.attention(enc, s) */
    tg_attention_output a =
        tg_additive_attention_forward(m->attention, t, e->enc, e->enc_proj, *s, NULL);
    /* s = self.decoder(torch.cat([y, context], dim=1), s) */
    *s = tg_gru_cell_forward(m->decoder, t, tg_concat(t, (tg_tensor *[]){y, a.context}, 2, 1), *s);
    *alpha = a.weights;
    /* return self.fc(torch.cat([s, context], dim=1)), s, alpha  (the cat and fc: the caller) */
    return a.context;
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

/* The teacher-forced decoder: fc's inputs torch.cat([s_i, context_i], dim=1) of every step
 * stacked (N, T, 2·hidden), and the attention weights stacked (N, T, S). */
typedef struct decoded {
    tg_tensor *fc_in, *weights;
} decoded;

static decoded decode(tg_gru_attention *m, tg_tape *t, const tg_index *src, const tg_index *tgt_in,
                      const char *op) {
    if (!m) tg_fail_null_argument(op, "m"); /* the entry checks, in the caller's name */
    if (!t) tg_fail_null_argument(op, "t");
    tg_tape_check_index(t, op, "src", src);
    tg_tape_check_index(t, op, "tgt_in", tgt_in);
    check_src(op, src, tgt_in);
    const int64_t T = tgt_in->shape[1];
    encoded e = encode(m, t, src);
    /* y = self.tgt_embedding(tgt_in) */
    tg_tensor *y = tg_embedding_forward(m->tgt_embedding, t, tgt_in); /* (N, T, E) */
    /* [s_0, context_0, s_1, context_1, ...]: the stacked torch.cat([s, context], dim=1) of
     * every step is their one concat along dim 1 viewed (N, T, 2·hidden), one copy instead of
     * a cat per step and a stack */
    tg_tensor **fc_in = tg_tape_alloc(t, (size_t)(2 * T) * sizeof *fc_in);
    tg_tensor **weights = tg_tape_alloc(t, (size_t)T * sizeof *weights);
    /* for i in range(tgt_in.size(1)): out, s, alpha = self.step(y[:, i], s, enc) */
    for (int64_t i = 0; i < T; i++) {
        fc_in[2 * i + 1] = step(m, t, tg_select(t, y, 1, i), &e.s, &e, &weights[i]);
        fc_in[2 * i] = e.s;
    }
    const int64_t N = src->shape[0];
    return (decoded){tg_reshape(t, stack1(t, fc_in, 2 * T), TG_SHAPE(N, T, -1)),
                     stack1(t, weights, T)};
}

tg_gru_attention_output tg_gru_attention_forward(tg_gru_attention *m, tg_tape *t,
                                                 const tg_index *src, const tg_index *tgt_in) {
    decoded d = decode(m, t, src, tgt_in, __func__);
    /* return torch.stack(logits, 1), torch.stack(weights, 1): fc applied once to the stacked
     * (N, T, 2·hidden) inputs, the same numbers as T products of N rows, in one GEMM */
    return (tg_gru_attention_output){tg_linear_forward(m->fc, t, d.fc_in), d.weights};
}

tg_gru_attention_loss_output tg_gru_attention_loss(tg_gru_attention *m, tg_tape *t,
                                                   const tg_index *src, const tg_index *tgt_in,
                                                   const tg_index *targets,
                                                   const tg_loss_options *opts) {
    decoded d = decode(m, t, src, tgt_in, __func__);
    /* F.cross_entropy(logits.view(-1, V), targets.view(-1)), without the logits */
    tg_tensor *fc_in = tg_reshape(t, d.fc_in, TG_SHAPE(-1, d.fc_in->shape[2]));
    tg_tensor *loss = tg_linear_cross_entropy_chunked(t, fc_in, m->fc->weight, m->fc->bias, targets,
                                                      opts, LOSS_CHUNK_ROWS);
    return (tg_gru_attention_loss_output){loss, d.weights};
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
        tg_tensor *c =
            step(m, t, tg_embedding_forward(m->tgt_embedding, t, y), &e.s, &e, &alphas[i]);
        /* out = self.fc(torch.cat([s, context], dim=1)) */
        tg_tensor *logits =
            tg_linear_forward(m->fc, t, tg_concat(t, (tg_tensor *[]){e.s, c}, 2, 1));
        tg_max_dim(t, logits, 1, false, &y); /* y = out.argmax(dim=1) */
        for (int64_t n = 0; n < N; n++) tokens->data[n * max_len + i] = y->data[n];
    }
    if (weights) *weights = stack1(t, alphas, max_len);
    return tokens;
}
