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

/* The stacks hold their layers in an array besides the ModuleList child that owns them. */
static void stack_release(tg_module *m) {
    /* both stack structs start with the module, then num_layers, then layers */
    free(((tg_transformer_encoder *)m)->layers);
}

static const tg_module_type encoder_layer_type = {"TransformerEncoderLayer", NULL, NULL};
static const tg_module_type decoder_layer_type = {"TransformerDecoderLayer", NULL, NULL};
static const tg_module_type encoder_type = {"TransformerEncoder", stack_release, NULL};
static const tg_module_type decoder_type = {"TransformerDecoder", stack_release, NULL};
static const tg_module_type transformer_type = {"Transformer", NULL, NULL};

/* What one sublayer applies: attention (self when mem is NULL) or the feed-forward. */
typedef struct sublayer_fn {
    tg_mha *attn;
    tg_tensor *mem;
    const tg_mha_masks *masks;
    tg_linear_layer *linear1, *linear2; /* feed-forward when attn is NULL */
    const tg_dropout_layer *inner;      /* the feed-forward's dropout */
    const tg_dropout_layer *drop;       /* on the sublayer's output */
} sublayer_fn;

/* The sublayer functions up to their last linear, which `last` is set to:
 *   SA(x) = out_proj(attn(x, x, x)),  CA(x) = out_proj(attn(x, mem, mem)),
 *   FF(x) = linear2(dropout(act(linear1(x)))).
 * With relu, linear1, relu and dropout are one fused op that keeps only its output. */
static tg_tensor *sublayer_apply(const sublayer_fn *f, const tg_transformer_options *o, tg_tape *t,
                                 tg_tensor *x, tg_linear_layer **last) {
    if (f->attn) {
        tg_tensor *kv = f->mem ? f->mem : x;
        *last = f->attn->out_proj;
        return tg_mha_forward_heads(f->attn, t, x, kv, kv, f->masks);
    }
    *last = f->linear2;
    if (o->activation == TG_ACTIVATION_GELU)
        return tg_dropout_forward(f->inner, t,
                                  tg_gelu(t, tg_linear_forward(f->linear1, t, x), TG_GELU_ERF));
    return tg_linear_relu_dropout(t, x, f->linear1->weight, f->linear1->bias, f->inner->p,
                                  f->inner->module.training, f->inner->rng);
}

/* x + dropout(f(in)), the last linear of f fused with the residual: neither its output nor
 * the dropped one is stored. */
static tg_tensor *residual(const sublayer_fn *f, const tg_transformer_options *o, tg_tape *t,
                           tg_tensor *x, tg_tensor *in) {
    tg_linear_layer *last;
    tg_tensor *a = sublayer_apply(f, o, t, in, &last);
    return tg_linear_dropout_add(t, x, a, last->weight, last->bias, f->drop->p,
                                 f->drop->module.training, f->drop->rng);
}

/* One sublayer with its residual and norm: post-norm  norm(x + dropout(f(x))),
 * pre-norm  x + dropout(f(norm(x))). */
static tg_tensor *sublayer(const tg_transformer_options *o, tg_tape *t, tg_layernorm *norm,
                           tg_tensor *x, const sublayer_fn *f) {
    if (o->norm_first) return residual(f, o, t, x, tg_layernorm_forward(norm, t, x));
    return tg_layernorm_forward(norm, t, residual(f, o, t, x, x));
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
    tg_module *mod = &m->module;
    tg_module_init(mod, &encoder_layer_type);
    tg_module_add_child(mod, "self_attn", &m->self_attn->module);
    tg_module_add_child(mod, "linear1", &m->linear1->module);
    tg_module_add_child(mod, "dropout", &(m->dropout = tg_dropout_new(opts->dropout))->module);
    tg_module_add_child(mod, "linear2", &m->linear2->module);
    tg_module_add_child(mod, "norm1", &m->norm1->module);
    tg_module_add_child(mod, "norm2", &m->norm2->module);
    tg_module_add_child(mod, "dropout1", &(m->dropout1 = tg_dropout_new(opts->dropout))->module);
    tg_module_add_child(mod, "dropout2", &(m->dropout2 = tg_dropout_new(opts->dropout))->module);
    return m;
}

tg_tensor *tg_encoder_layer_forward(tg_encoder_layer *m, tg_tape *t, tg_tensor *src,
                                    const tg_mha_masks *src_masks) {
    TG_CHECK_ARG(m);
    TG_CHECK_OP(t, src);
    tg_tensor *x = src;
    /* x = sublayer1(x, SA);  x = sublayer2(x, FF) */
    x = sublayer(&m->opts, t, m->norm1, x,
                 &(sublayer_fn){.attn = m->self_attn, .masks = src_masks, .drop = m->dropout1});
    return sublayer(&m->opts, t, m->norm2, x,
                    &(sublayer_fn){.linear1 = m->linear1,
                                   .linear2 = m->linear2,
                                   .inner = m->dropout,
                                   .drop = m->dropout2});
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
    tg_module *mod = &m->module;
    tg_module_init(mod, &decoder_layer_type);
    tg_module_add_child(mod, "self_attn", &m->self_attn->module);
    tg_module_add_child(mod, "multihead_attn", &m->multihead_attn->module);
    tg_module_add_child(mod, "linear1", &m->linear1->module);
    tg_module_add_child(mod, "dropout", &(m->dropout = tg_dropout_new(opts->dropout))->module);
    tg_module_add_child(mod, "linear2", &m->linear2->module);
    tg_module_add_child(mod, "norm1", &m->norm1->module);
    tg_module_add_child(mod, "norm2", &m->norm2->module);
    tg_module_add_child(mod, "norm3", &m->norm3->module);
    tg_module_add_child(mod, "dropout1", &(m->dropout1 = tg_dropout_new(opts->dropout))->module);
    tg_module_add_child(mod, "dropout2", &(m->dropout2 = tg_dropout_new(opts->dropout))->module);
    tg_module_add_child(mod, "dropout3", &(m->dropout3 = tg_dropout_new(opts->dropout))->module);
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
                 &(sublayer_fn){.attn = m->self_attn, .masks = tgt_masks, .drop = m->dropout1});
    x = sublayer(
        &m->opts, t, m->norm2, x,
        &(sublayer_fn){
            .attn = m->multihead_attn, .mem = mem, .masks = memory_masks, .drop = m->dropout2});
    return sublayer(&m->opts, t, m->norm3, x,
                    &(sublayer_fn){.linear1 = m->linear1,
                                   .linear2 = m->linear2,
                                   .inner = m->dropout,
                                   .drop = m->dropout3});
}

/* ---- stacks ---- */

/* PyTorch deep-copies the given layer: every layer starts with the first one's values. */
static void copy_values(tg_module *from, tg_module *to) {
    const tg_params *src = tg_module_params(from), *dst = tg_module_params(to);
    for (size_t i = 0; i < src->count; i++)
        tg_tensor_copy_from(dst->tensors[i], src->tensors[i]->data);
}

/* Builds num_layers layers with make(opts) into the ModuleList child "layers", each a copy
 * of the first (the copies must not consume random draws: the generator is saved and
 * restored around them), then, with final_norm, the child "norm". Returns the layers. */
static void *stack_new(const char *fn, tg_module *stack, const tg_module_type *type,
                       const tg_transformer_options *opts, int num_layers, bool final_norm,
                       tg_module *(*make)(const tg_transformer_options *), tg_layernorm **norm) {
    if (num_layers < 1) tg_fail("%s: num_layers must be >= 1, got %d", fn, num_layers);
    tg_module_init(stack, type);
    tg_module *list = tg_module_list_new();
    tg_module_add_child(stack, "layers", list);
    tg_module **layers = tg_xcalloc((size_t)num_layers, sizeof *layers);
    for (int i = 0; i < num_layers; i++) {
        const tg_rng saved = *tg_rng_default();
        layers[i] = make(opts);
        if (i > 0) {
            *tg_rng_default() = saved;
            copy_values(layers[0], layers[i]);
        }
        char name[16];
        snprintf(name, sizeof name, "%d", i);
        tg_module_add_child(list, name, layers[i]);
    }
    if (final_norm) tg_module_add_child(stack, "norm", &(*norm = norm_new(opts))->module);
    return layers;
}

static tg_module *make_encoder_layer(const tg_transformer_options *o) {
    return &tg_encoder_layer_new(o)->module;
}
static tg_module *make_decoder_layer(const tg_transformer_options *o) {
    return &tg_decoder_layer_new(o)->module;
}

tg_transformer_encoder *tg_transformer_encoder_new(const tg_transformer_options *opts,
                                                   int num_layers, bool final_norm) {
    TG_CHECK_ARG(opts);
    tg_transformer_encoder *m = tg_xcalloc(1, sizeof *m);
    m->layers = stack_new(__func__, &m->module, &encoder_type, opts, m->num_layers = num_layers,
                          final_norm, make_encoder_layer, &m->norm);
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

tg_transformer_decoder *tg_transformer_decoder_new(const tg_transformer_options *opts,
                                                   int num_layers, bool final_norm) {
    TG_CHECK_ARG(opts);
    tg_transformer_decoder *m = tg_xcalloc(1, sizeof *m);
    m->layers = stack_new(__func__, &m->module, &decoder_type, opts, m->num_layers = num_layers,
                          final_norm, make_decoder_layer, &m->norm);
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

/* ---- the full model ---- */

tg_transformer *tg_transformer_new(const tg_transformer_options *opts, int num_encoder_layers,
                                   int num_decoder_layers) {
    TG_CHECK_ARG(opts);
    tg_transformer *m = tg_xcalloc(1, sizeof *m);
    tg_module_init(&m->module, &transformer_type);
    m->encoder = tg_transformer_encoder_new(opts, num_encoder_layers, true);
    m->decoder = tg_transformer_decoder_new(opts, num_decoder_layers, true);
    tg_module_add_child(&m->module, "encoder", &m->encoder->module);
    tg_module_add_child(&m->module, "decoder", &m->decoder->module);
    /* _reset_parameters: xavier_uniform_ on every parameter with more than one dim, in order */
    const tg_params *all = tg_module_params(&m->module);
    for (size_t i = 0; i < all->count; i++)
        if (all->tensors[i]->ndim > 1) tg_init_xavier_uniform(all->tensors[i], 1.0, NULL);
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

tg_tensor *tg_positional_encoding(int64_t max_len, int64_t d_model) {
    if (max_len <= 0 || d_model <= 0 || d_model % 2 != 0)
        tg_fail("tg_positional_encoding: max_len (%lld) must be positive and d_model (%lld) even",
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
