/* Transformer encoder and decoder layers, stacks and the full model (pytorch-semantics §4). */
#include "tapegrad/transformer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

tg_transformer_options tg_transformer_defaults(int64_t d_model, int64_t nhead) {
    return (tg_transformer_options){.d_model = d_model, .nhead = nhead, .dim_feedforward = 2048,
                                    .dropout = (tg_real)0.1, .activation = TG_ACTIVATION_RELU,
                                    .layer_norm_eps = (tg_real)1e-5};
}

static tg_layernorm *norm_new(const tg_transformer_options *o) {
    return tg_layernorm_new(TG_SHAPE(o->d_model), o->layer_norm_eps, true);
}

/* FF(x) = linear2(dropout(act(linear1(x)))) */
static tg_tensor *feed_forward(tg_linear_layer *linear1, tg_linear_layer *linear2,
                               const tg_transformer_options *o, tg_tape *t, tg_tensor *x) {
    tg_tensor *h = tg_linear_forward(linear1, t, x);
    h = o->activation == TG_ACTIVATION_GELU ? tg_gelu(t, h, TG_GELU_ERF) : tg_relu(t, h);
    h = tg_dropout(t, h, o->dropout, tg_tape_is_training(t), NULL);
    return tg_linear_forward(linear2, t, h);
}

static tg_tensor *dropout(const tg_transformer_options *o, tg_tape *t, tg_tensor *x) {
    return tg_dropout(t, x, o->dropout, tg_tape_is_training(t), NULL);
}

/* ---- encoder layer ---- */

tg_encoder_layer *tg_encoder_layer_new(const tg_transformer_options *opts) {
    tg_encoder_layer *m = tg_xcalloc(1, sizeof *m);
    m->opts = *opts;
    /* children in PyTorch's construction (and RNG draw) order */
    m->self_attn = tg_mha_new(opts->d_model, opts->nhead, opts->dropout, true, opts->batch_first);
    m->linear1 = tg_linear_new(opts->d_model, opts->dim_feedforward, true);
    m->linear2 = tg_linear_new(opts->dim_feedforward, opts->d_model, true);
    m->norm1 = norm_new(opts);
    m->norm2 = norm_new(opts);
    m->params = tg_params_new();
    tg_params_extend(m->params, "self_attn", m->self_attn->params);
    tg_params_extend(m->params, "linear1", m->linear1->params);
    tg_params_extend(m->params, "linear2", m->linear2->params);
    tg_params_extend(m->params, "norm1", m->norm1->params);
    tg_params_extend(m->params, "norm2", m->norm2->params);
    return m;
}

static tg_tensor *self_attention(tg_mha *attn, tg_tape *t, tg_tensor *x, const tg_mha_masks *masks) {
    return tg_mha_forward(attn, t, x, x, x, masks, false).output;
}

tg_tensor *tg_encoder_layer_forward(tg_encoder_layer *m, tg_tape *t, tg_tensor *x,
                                    const tg_mha_masks *src_masks) {
    const tg_transformer_options *o = &m->opts;
    if (o->norm_first) {
        /* x = x + dropout1(SA(norm1(x)));  x = x + dropout2(FF(norm2(x))) */
        x = tg_add(t, x, dropout(o, t, self_attention(m->self_attn, t, tg_layernorm_forward(m->norm1, t, x), src_masks)));
        return tg_add(t, x, dropout(o, t, feed_forward(m->linear1, m->linear2, o, t, tg_layernorm_forward(m->norm2, t, x))));
    }
    /* x = norm1(x + dropout1(SA(x)));  x = norm2(x + dropout2(FF(x))) */
    x = tg_layernorm_forward(m->norm1, t, tg_add(t, x, dropout(o, t, self_attention(m->self_attn, t, x, src_masks))));
    return tg_layernorm_forward(m->norm2, t, tg_add(t, x, dropout(o, t, feed_forward(m->linear1, m->linear2, o, t, x))));
}

void tg_encoder_layer_free(tg_encoder_layer *m) {
    if (!m) return;
    tg_mha_free(m->self_attn);
    tg_linear_free(m->linear1), tg_linear_free(m->linear2);
    tg_layernorm_free(m->norm1), tg_layernorm_free(m->norm2);
    tg_params_free(m->params);
    free(m);
}

/* ---- decoder layer ---- */

tg_decoder_layer *tg_decoder_layer_new(const tg_transformer_options *opts) {
    tg_decoder_layer *m = tg_xcalloc(1, sizeof *m);
    m->opts = *opts;
    m->self_attn = tg_mha_new(opts->d_model, opts->nhead, opts->dropout, true, opts->batch_first);
    m->multihead_attn = tg_mha_new(opts->d_model, opts->nhead, opts->dropout, true, opts->batch_first);
    m->linear1 = tg_linear_new(opts->d_model, opts->dim_feedforward, true);
    m->linear2 = tg_linear_new(opts->dim_feedforward, opts->d_model, true);
    m->norm1 = norm_new(opts);
    m->norm2 = norm_new(opts);
    m->norm3 = norm_new(opts);
    m->params = tg_params_new();
    tg_params_extend(m->params, "self_attn", m->self_attn->params);
    tg_params_extend(m->params, "multihead_attn", m->multihead_attn->params);
    tg_params_extend(m->params, "linear1", m->linear1->params);
    tg_params_extend(m->params, "linear2", m->linear2->params);
    tg_params_extend(m->params, "norm1", m->norm1->params);
    tg_params_extend(m->params, "norm2", m->norm2->params);
    tg_params_extend(m->params, "norm3", m->norm3->params);
    return m;
}

static tg_tensor *cross_attention(tg_mha *attn, tg_tape *t, tg_tensor *x, tg_tensor *mem,
                                  const tg_mha_masks *masks) {
    return tg_mha_forward(attn, t, x, mem, mem, masks, false).output;
}

tg_tensor *tg_decoder_layer_forward(tg_decoder_layer *m, tg_tape *t, tg_tensor *x,
                                    tg_tensor *mem, const tg_mha_masks *tgt_masks,
                                    const tg_mha_masks *memory_masks) {
    const tg_transformer_options *o = &m->opts;
    if (o->norm_first) {
        /* x = x + dropout1(SA(norm1(x)));  x = x + dropout2(CA(norm2(x), mem));
         * x = x + dropout3(FF(norm3(x)))  — the memory itself is not normalised */
        x = tg_add(t, x, dropout(o, t, self_attention(m->self_attn, t, tg_layernorm_forward(m->norm1, t, x), tgt_masks)));
        x = tg_add(t, x, dropout(o, t, cross_attention(m->multihead_attn, t, tg_layernorm_forward(m->norm2, t, x), mem, memory_masks)));
        return tg_add(t, x, dropout(o, t, feed_forward(m->linear1, m->linear2, o, t, tg_layernorm_forward(m->norm3, t, x))));
    }
    /* x = norm1(x + dropout1(SA(x)));  x = norm2(x + dropout2(CA(x, mem)));
     * x = norm3(x + dropout3(FF(x))) */
    x = tg_layernorm_forward(m->norm1, t, tg_add(t, x, dropout(o, t, self_attention(m->self_attn, t, x, tgt_masks))));
    x = tg_layernorm_forward(m->norm2, t, tg_add(t, x, dropout(o, t, cross_attention(m->multihead_attn, t, x, mem, memory_masks))));
    return tg_layernorm_forward(m->norm3, t, tg_add(t, x, dropout(o, t, feed_forward(m->linear1, m->linear2, o, t, x))));
}

void tg_decoder_layer_free(tg_decoder_layer *m) {
    if (!m) return;
    tg_mha_free(m->self_attn), tg_mha_free(m->multihead_attn);
    tg_linear_free(m->linear1), tg_linear_free(m->linear2);
    tg_layernorm_free(m->norm1), tg_layernorm_free(m->norm2), tg_layernorm_free(m->norm3);
    tg_params_free(m->params);
    free(m);
}

/* ---- stacks ---- */

/* PyTorch deep-copies the given layer: every layer starts with the first one's values. */
static void copy_values(const tg_params *from, tg_params *to) {
    for (size_t i = 0; i < from->count; i++) tg_tensor_copy_from(to->tensors[i], from->tensors[i]->data);
}

static void add_layer_params(tg_params *all, int i, const tg_params *layer) {
    char prefix[32];
    snprintf(prefix, sizeof prefix, "layers.%d", i);
    tg_params_extend(all, prefix, layer);
}

tg_transformer_encoder *tg_transformer_encoder_new(const tg_transformer_options *opts,
                                                   int num_layers, bool final_norm) {
    if (num_layers < 1) tg_fail("transformer_encoder_new: num_layers must be >= 1, got %d", num_layers);
    tg_transformer_encoder *m = tg_xcalloc(1, sizeof *m);
    m->num_layers = num_layers;
    m->layers = tg_xcalloc((size_t)num_layers, sizeof *m->layers);
    m->params = tg_params_new();
    for (int i = 0; i < num_layers; i++) {
        /* the copies must not consume random draws: save and restore the generator */
        const tg_rng saved = *tg_rng_default();
        m->layers[i] = tg_encoder_layer_new(opts);
        if (i > 0) {
            *tg_rng_default() = saved;
            copy_values(m->layers[0]->params, m->layers[i]->params);
        }
        add_layer_params(m->params, i, m->layers[i]->params);
    }
    if (final_norm) {
        m->norm = norm_new(opts);
        tg_params_extend(m->params, "norm", m->norm->params);
    }
    return m;
}

tg_tensor *tg_transformer_encoder_forward(tg_transformer_encoder *m, tg_tape *t, tg_tensor *x,
                                          const tg_mha_masks *src_masks) {
    for (int i = 0; i < m->num_layers; i++) x = tg_encoder_layer_forward(m->layers[i], t, x, src_masks);
    return m->norm ? tg_layernorm_forward(m->norm, t, x) : x;
}

void tg_transformer_encoder_free(tg_transformer_encoder *m) {
    if (!m) return;
    for (int i = 0; i < m->num_layers; i++) tg_encoder_layer_free(m->layers[i]);
    free(m->layers);
    tg_layernorm_free(m->norm);
    tg_params_free(m->params);
    free(m);
}

tg_transformer_decoder *tg_transformer_decoder_new(const tg_transformer_options *opts,
                                                   int num_layers, bool final_norm) {
    if (num_layers < 1) tg_fail("transformer_decoder_new: num_layers must be >= 1, got %d", num_layers);
    tg_transformer_decoder *m = tg_xcalloc(1, sizeof *m);
    m->num_layers = num_layers;
    m->layers = tg_xcalloc((size_t)num_layers, sizeof *m->layers);
    m->params = tg_params_new();
    for (int i = 0; i < num_layers; i++) {
        const tg_rng saved = *tg_rng_default();
        m->layers[i] = tg_decoder_layer_new(opts);
        if (i > 0) {
            *tg_rng_default() = saved;
            copy_values(m->layers[0]->params, m->layers[i]->params);
        }
        add_layer_params(m->params, i, m->layers[i]->params);
    }
    if (final_norm) {
        m->norm = norm_new(opts);
        tg_params_extend(m->params, "norm", m->norm->params);
    }
    return m;
}

tg_tensor *tg_transformer_decoder_forward(tg_transformer_decoder *m, tg_tape *t, tg_tensor *x,
                                          tg_tensor *memory, const tg_mha_masks *tgt_masks,
                                          const tg_mha_masks *memory_masks) {
    for (int i = 0; i < m->num_layers; i++)
        x = tg_decoder_layer_forward(m->layers[i], t, x, memory, tgt_masks, memory_masks);
    return m->norm ? tg_layernorm_forward(m->norm, t, x) : x;
}

void tg_transformer_decoder_free(tg_transformer_decoder *m) {
    if (!m) return;
    for (int i = 0; i < m->num_layers; i++) tg_decoder_layer_free(m->layers[i]);
    free(m->layers);
    tg_layernorm_free(m->norm);
    tg_params_free(m->params);
    free(m);
}

/* ---- the full model ---- */

tg_transformer *tg_transformer_new(const tg_transformer_options *opts, int num_encoder_layers,
                                   int num_decoder_layers) {
    tg_transformer *m = tg_xcalloc(1, sizeof *m);
    m->encoder = tg_transformer_encoder_new(opts, num_encoder_layers, true);
    m->decoder = tg_transformer_decoder_new(opts, num_decoder_layers, true);
    m->params = tg_params_new();
    tg_params_extend(m->params, "encoder", m->encoder->params);
    tg_params_extend(m->params, "decoder", m->decoder->params);
    /* _reset_parameters: xavier_uniform_ on every parameter with more than one dim, in order */
    for (size_t i = 0; i < m->params->count; i++)
        if (m->params->tensors[i]->ndim > 1) tg_init_xavier_uniform(m->params->tensors[i], 1.0, NULL);
    return m;
}

tg_tensor *tg_transformer_forward(tg_transformer *m, tg_tape *t, tg_tensor *src, tg_tensor *tgt,
                                  const tg_mha_masks *src_masks, const tg_mha_masks *tgt_masks,
                                  const tg_mha_masks *memory_masks) {
    tg_tensor *memory = tg_transformer_encoder_forward(m->encoder, t, src, src_masks);
    return tg_transformer_decoder_forward(m->decoder, t, tgt, memory, tgt_masks, memory_masks);
}

void tg_transformer_free(tg_transformer *m) {
    if (!m) return;
    tg_transformer_encoder_free(m->encoder);
    tg_transformer_decoder_free(m->decoder);
    tg_params_free(m->params);
    free(m);
}

tg_tensor *tg_positional_encoding(int64_t max_len, int64_t d_model) {
    if (max_len <= 0 || d_model <= 0 || d_model % 2 != 0)
        tg_fail("positional_encoding: max_len (%lld) must be positive and d_model (%lld) even",
                (long long)max_len, (long long)d_model);
    tg_tensor *pe = tg_tensor_zeros(TG_SHAPE(max_len, d_model));
    const float scale = (float)(-log(10000.0) / (double)d_model);
    for (int64_t i = 0; i < d_model / 2; i++) {
        const float omega = expf((float)(2 * i) * scale); /* float32 as the tutorial computes */
        for (int64_t pos = 0; pos < max_len; pos++) {
            const float angle = (float)pos * omega;
            pe->data[pos * d_model + 2 * i] = (tg_real)sinf(angle);
            pe->data[pos * d_model + 2 * i + 1] = (tg_real)cosf(angle);
        }
    }
    return pe;
}
