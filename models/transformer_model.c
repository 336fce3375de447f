/* The Transformer tutorial's TransformerModel: one Embedding shared by source and target, an
 * encoder stack, a decoder stack and a Linear to the vocabulary; sequence-first, no positional
 * encoding (the tutorial has none).
 *
 *   class TransformerModel(nn.Module):
 *       def __init__(self, vocab_size, d_model, nhead, num_encoder_layers, num_decoder_layers):
 *           self.encoder = nn.TransformerEncoder(
 *               nn.TransformerEncoderLayer(d_model, nhead), num_encoder_layers)
 *           self.decoder = nn.TransformerDecoder(
 *               nn.TransformerDecoderLayer(d_model, nhead), num_decoder_layers)
 *           self.embedding = nn.Embedding(vocab_size, d_model)
 *           self.linear = nn.Linear(d_model, vocab_size)
 *       def forward(self, src, tgt):
 *           # src shape: (src_seq_len, batch_size); tgt shape: (tgt_seq_len, batch_size)
 *           src = self.embedding(src)
 *           tgt = self.embedding(tgt)
 *           src = self.encoder(src)
 *           tgt = self.decoder(tgt, src)
 *           output = self.linear(tgt)
 *           return output
 *
 * One addition to the tutorial's model: the decoder's self-attention takes the causal mask
 * (tgt_mask = nn.Transformer.generate_square_subsequent_mask(tgt.size(0))), without which
 * a decoder trained with teacher forcing sees the tokens it must predict. Clear
 * m->causal for the tutorial's forward as written. */
#include "tapegrad/models.h"

static const tg_module_type transformer_model_type = {"TransformerModel", NULL, NULL};

#include <math.h>
#include <stdlib.h>

tg_transformer_model *tg_transformer_model_new_ex(int64_t vocab_size,
                                                  const tg_transformer_options *opts,
                                                  int num_encoder_layers, int num_decoder_layers) {
    TG_CHECK_ARG(opts);
    if (opts->batch_first)
        tg_fail(
            "tg_transformer_model_new_ex: the model is sequence-first (src (S, N), tgt (T, N)); "
            "batch_first must be false");
    tg_transformer_model *m = tg_xcalloc(1, sizeof *m);
    /* nn.TransformerEncoder(nn.TransformerEncoderLayer(d_model, nhead), num_encoder_layers) */
    m->encoder = tg_transformer_encoder_new(opts, num_encoder_layers, false);
    m->decoder = tg_transformer_decoder_new(opts, num_decoder_layers, false);
    m->embedding = tg_embedding_new(vocab_size, opts->d_model, TG_NO_PADDING);
    m->linear = tg_linear_new(opts->d_model, vocab_size, true);
    m->causal = true;
    tg_module_init(&m->module, &transformer_model_type);
    tg_module_add_child(&m->module, "encoder", &m->encoder->module);
    tg_module_add_child(&m->module, "decoder", &m->decoder->module);
    tg_module_add_child(&m->module, "embedding", &m->embedding->module);
    tg_module_add_child(&m->module, "linear", &m->linear->module);
    return m;
}

tg_transformer_model *tg_transformer_model_new(int64_t vocab_size, int64_t d_model, int64_t nhead,
                                               int num_encoder_layers, int num_decoder_layers) {
    const tg_transformer_options opts = tg_transformer_defaults(d_model, nhead);
    return tg_transformer_model_new_ex(vocab_size, &opts, num_encoder_layers, num_decoder_layers);
}

/* generate_square_subsequent_mask(n) in the tape's arena: 0 on and below the diagonal. */
static tg_tensor *causal_mask(tg_tape *t, int64_t n) {
    tg_tensor *mask = tg_tape_tensor(t, TG_SHAPE(n, n));
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) mask->data[i * n + j] = j > i ? (tg_real)-INFINITY : 0;
    return mask;
}

/* The forward up to the decoder's output (T, N, d_model): everything but self.linear. */
static tg_tensor *transformer_body(const char *fn, tg_transformer_model *m, tg_tape *t,
                                   const tg_index *src, const tg_index *tgt) {
    char a[96], b[96];
    if (src->ndim != 2 || tgt->ndim != 2 || src->shape[1] != tgt->shape[1])
        tg_fail("%s: src %s and tgt %s must be (S, N) and (T, N) token ids with the same batch N",
                fn, tg_shape_format(src->ndim, src->shape, a, sizeof a),
                tg_shape_format(tgt->ndim, tgt->shape, b, sizeof b));
    const tg_mha_masks tgt_masks = {.attn_mask = m->causal ? causal_mask(t, tgt->shape[0]) : NULL};
    /* src = self.embedding(src); tgt = self.embedding(tgt) */
    tg_tensor *x = tg_embedding_forward(m->embedding, t, src); /* (S, N, d_model) */
    tg_tensor *y = tg_embedding_forward(m->embedding, t, tgt); /* (T, N, d_model) */
    /* src = self.encoder(src) */
    x = tg_transformer_encoder_forward(m->encoder, t, x, NULL);
    /* tgt = self.decoder(tgt, src, tgt_mask=tgt_mask) */
    return tg_transformer_decoder_forward(m->decoder, t, y, x, &tgt_masks, NULL);
}

tg_tensor *tg_transformer_model_forward(tg_transformer_model *m, tg_tape *t, const tg_index *src,
                                        const tg_index *tgt) {
    TG_CHECK_ARG(m);
    TG_CHECK_ARG(t);
    TG_CHECK_INDEX_INPUT(t, src);
    TG_CHECK_INDEX_INPUT(t, tgt);
    tg_tensor *y = transformer_body(__func__, m, t, src, tgt);
    /* output = self.linear(tgt) */
    return tg_linear_forward(m->linear, t, y); /* (T, N, vocab) */
}

tg_tensor *tg_transformer_model_loss(tg_transformer_model *m, tg_tape *t, const tg_index *src,
                                     const tg_index *tgt, const tg_index *targets,
                                     const tg_loss_options *opts) {
    TG_CHECK_ARG(m);
    TG_CHECK_ARG(t);
    TG_CHECK_INDEX_INPUT(t, src);
    TG_CHECK_INDEX_INPUT(t, tgt);
    TG_CHECK_INDEX_INPUT(t, targets);
    tg_tensor *y = transformer_body(__func__, m, t, src, tgt);
    /* F.cross_entropy(self.linear(tgt).view(-1, V), targets), without the logits */
    return tg_linear_cross_entropy(t, y, m->linear->weight, m->linear->bias, targets, opts);
}
