/* Transformer encoder and decoder layers, stacks and the full model. */
#include "tapegrad/transformer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

tg_transformer_options tg_transformer_defaults(int64_t d_model, int64_t nhead) {
    return (tg_transformer_options){.d_model = d_model,
                                    .nhead = nhead,
                                    .dim_feedforward = 2048,
                                    .dropout = (tg_real)0.1,
                                    .activation = TG_ACTIVATION_RELU,
                                    .layer_norm_eps = (tg_real)1e-5};
}

static tg_layernorm *norm_new(const tg_transformer_options *o) {
    return tg_layernorm_new(TG_SHAPE(o->d_model), o->layer_norm_eps, true);
}

/* What one sublayer applies: attention (self when mem is NULL) or the feed-forward. */
typedef struct sublayer_fn {
    tg_mha *attn;
    tg_tensor *mem;
    const tg_mha_masks *masks;
    tg_linear_layer *linear1, *linear2; /* feed-forward when attn is NULL */
} sublayer_fn;

/* SA(x) = attn(x, x, x), CA(x) = attn(x, mem, mem), FF(x) = linear2(dropout(act(linear1(x)))) */
static tg_tensor *sublayer_apply(const sublayer_fn *f, const tg_transformer_options *o, tg_tape *t,
                                 tg_tensor *x) {
    if (f->attn) {
        tg_tensor *kv = f->mem ? f->mem : x;
        return tg_mha_forward(f->attn, t, x, kv, kv, f->masks, false).output;
    }
    tg_tensor *h = tg_linear_forward(f->linear1, t, x);
    h = o->activation == TG_ACTIVATION_GELU ? tg_gelu(t, h, TG_GELU_ERF) : tg_relu(t, h);
    h = tg_dropout(t, h, o->dropout, tg_tape_is_training(t), NULL);
    return tg_linear_forward(f->linear2, t, h);
}

/* One sublayer with its residual and norm: post-norm  norm(x + dropout(f(x))),
 * pre-norm  x + dropout(f(norm(x))). */
static tg_tensor *sublayer(const tg_transformer_options *o, tg_tape *t, tg_layernorm *norm,
                           tg_tensor *x, const sublayer_fn *f) {
    const bool train = tg_tape_is_training(t);
    if (o->norm_first)
        return tg_add(t, x,
                      tg_dropout(t, sublayer_apply(f, o, t, tg_layernorm_forward(norm, t, x)),
                                 o->dropout, train, NULL));
    return tg_layernorm_forward(
        norm, t, tg_add(t, x, tg_dropout(t, sublayer_apply(f, o, t, x), o->dropout, train, NULL)));
}

/* ---- encoder layer ---- */

tg_encoder_layer *tg_encoder_layer_new(const tg_transformer_options *opts) {
    TG_CHECK_ARG(opts);
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

tg_tensor *tg_encoder_layer_forward(tg_encoder_layer *m, tg_tape *t, tg_tensor *src,
                                    const tg_mha_masks *src_masks) {
    TG_CHECK_ARG(m);
    TG_CHECK_OP(t, src);
    tg_tensor *x = src;
    /* x = sublayer1(x, SA);  x = sublayer2(x, FF) */
    x = sublayer(&m->opts, t, m->norm1, x,
                 &(sublayer_fn){.attn = m->self_attn, .masks = src_masks});
    return sublayer(&m->opts, t, m->norm2, x,
                    &(sublayer_fn){.linear1 = m->linear1, .linear2 = m->linear2});
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
    TG_CHECK_ARG(opts);
    tg_decoder_layer *m = tg_xcalloc(1, sizeof *m);
    m->opts = *opts;
    m->self_attn = tg_mha_new(opts->d_model, opts->nhead, opts->dropout, true, opts->batch_first);
    m->multihead_attn =
        tg_mha_new(opts->d_model, opts->nhead, opts->dropout, true, opts->batch_first);
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

tg_tensor *tg_decoder_layer_forward(tg_decoder_layer *m, tg_tape *t, tg_tensor *tgt,
                                    tg_tensor *memory, const tg_mha_masks *tgt_masks,
                                    const tg_mha_masks *memory_masks) {
    TG_CHECK_ARG(m);
    TG_CHECK_OP(t, tgt, memory);
    tg_tensor *x = tgt, *mem = memory;
    /* x = sublayer1(x, SA);  x = sublayer2(x, CA with the memory);  x = sublayer3(x, FF)
     * (pre-norm normalises x, never the memory) */
    x = sublayer(&m->opts, t, m->norm1, x,
                 &(sublayer_fn){.attn = m->self_attn, .masks = tgt_masks});
    x = sublayer(&m->opts, t, m->norm2, x,
                 &(sublayer_fn){.attn = m->multihead_attn, .mem = mem, .masks = memory_masks});
    return sublayer(&m->opts, t, m->norm3, x,
                    &(sublayer_fn){.linear1 = m->linear1, .linear2 = m->linear2});
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
    for (size_t i = 0; i < from->count; i++)
        tg_tensor_copy_from(to->tensors[i], from->tensors[i]->data);
}

static void add_layer_params(tg_params *all, int i, const tg_params *layer) {
    char prefix[32];
    snprintf(prefix, sizeof prefix, "layers.%d", i);
    tg_params_extend(all, prefix, layer);
}

/* Builds num_layers layers with make(opts), each a copy of the first (the copies must not
 * consume random draws: the generator is saved and restored around them), and collects
 * their parameters as "layers.{i}.*" and, with final_norm, "norm.*". Returns the layers. */
static void *stack_new(const char *who, const tg_transformer_options *opts, int num_layers,
                       bool final_norm, void *(*make)(const tg_transformer_options *),
                       tg_params *(*params_of)(void *), tg_layernorm **norm, tg_params **all) {
    if (num_layers < 1) tg_fail("%s: num_layers must be >= 1, got %d", who, num_layers);
    void **layers = tg_xcalloc((size_t)num_layers, sizeof *layers);
    *all = tg_params_new();
    for (int i = 0; i < num_layers; i++) {
        const tg_rng saved = *tg_rng_default();
        layers[i] = make(opts);
        if (i > 0) {
            *tg_rng_default() = saved;
            copy_values(params_of(layers[0]), params_of(layers[i]));
        }
        add_layer_params(*all, i, params_of(layers[i]));
    }
    if (final_norm) {
        *norm = norm_new(opts);
        tg_params_extend(*all, "norm", (*norm)->params);
    }
    return layers;
}

static void *make_encoder_layer(const tg_transformer_options *o) { return tg_encoder_layer_new(o); }
static void *make_decoder_layer(const tg_transformer_options *o) { return tg_decoder_layer_new(o); }
static tg_params *encoder_layer_params(void *m) { return ((tg_encoder_layer *)m)->params; }
static tg_params *decoder_layer_params(void *m) { return ((tg_decoder_layer *)m)->params; }

tg_transformer_encoder *tg_transformer_encoder_new(const tg_transformer_options *opts,
                                                   int num_layers, bool final_norm) {
    TG_CHECK_ARG(opts);
    tg_transformer_encoder *m = tg_xcalloc(1, sizeof *m);
    m->layers = stack_new("transformer_encoder_new", opts, m->num_layers = num_layers, final_norm,
                          make_encoder_layer, encoder_layer_params, &m->norm, &m->params);
    return m;
}

tg_tensor *tg_transformer_encoder_forward(tg_transformer_encoder *m, tg_tape *t, tg_tensor *src,
                                          const tg_mha_masks *src_masks) {
    TG_CHECK_ARG(m);
    TG_CHECK_OP(t, src);
    tg_tensor *x = src;
    for (int i = 0; i < m->num_layers; i++)
        x = tg_encoder_layer_forward(m->layers[i], t, x, src_masks);
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
    TG_CHECK_ARG(opts);
    tg_transformer_decoder *m = tg_xcalloc(1, sizeof *m);
    m->layers = stack_new("transformer_decoder_new", opts, m->num_layers = num_layers, final_norm,
                          make_decoder_layer, decoder_layer_params, &m->norm, &m->params);
    return m;
}

tg_tensor *tg_transformer_decoder_forward(tg_transformer_decoder *m, tg_tape *t, tg_tensor *tgt,
                                          tg_tensor *memory, const tg_mha_masks *tgt_masks,
                                          const tg_mha_masks *memory_masks) {
    TG_CHECK_ARG(m);
    TG_CHECK_OP(t, tgt, memory);
    tg_tensor *x = tgt;
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
    TG_CHECK_ARG(opts);
    tg_transformer *m = tg_xcalloc(1, sizeof *m);
    m->encoder = tg_transformer_encoder_new(opts, num_encoder_layers, true);
    m->decoder = tg_transformer_decoder_new(opts, num_decoder_layers, true);
    m->params = tg_params_new();
    tg_params_extend(m->params, "encoder", m->encoder->params);
    tg_params_extend(m->params, "decoder", m->decoder->params);
    /* _reset_parameters: xavier_uniform_ on every parameter with more than one dim, in order */
    for (size_t i = 0; i < m->params->count; i++)
        if (m->params->tensors[i]->ndim > 1)
            tg_init_xavier_uniform(m->params->tensors[i], 1.0, NULL);
    return m;
}

tg_tensor *tg_transformer_forward(tg_transformer *m, tg_tape *t, tg_tensor *src, tg_tensor *tgt,
                                  const tg_mha_masks *src_masks, const tg_mha_masks *tgt_masks,
                                  const tg_mha_masks *memory_masks) {
    TG_CHECK_ARG(m);
    TG_CHECK_OP(t, src, tgt);
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
