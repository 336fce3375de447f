/* tapegrad/transformer.h — nn.TransformerEncoderLayer / DecoderLayer, their stacks, the
 * full nn.Transformer, and the sinusoidal positional encoding. Layer: nn. */
#ifndef TAPEGRAD_TRANSFORMER_H
#define TAPEGRAD_TRANSFORMER_H

#include "tapegrad/attention.h"

typedef enum tg_activation { TG_ACTIVATION_RELU, TG_ACTIVATION_GELU } tg_activation;

typedef struct tg_transformer_options {
    int64_t d_model, nhead, dim_feedforward;
    tg_real dropout;
    tg_activation activation;
    tg_real layer_norm_eps;
    bool batch_first;
    bool norm_first; /* pre-norm; PyTorch's default is post-norm (false) */
} tg_transformer_options;

/* PyTorch's defaults: dim_feedforward 2048, dropout 0.1, relu, eps 1e-5, seq-first, post-norm. */
tg_transformer_options tg_transformer_defaults(int64_t d_model, int64_t nhead);

/* The layers' children in PyTorch's order (its repr and state_dict): self_attn,
 * [multihead_attn,] linear1, dropout, linear2, norm1, norm2, [norm3,] dropout1, dropout2,
 * [dropout3]. Each dropout reads its own module's training flag. */
typedef struct tg_encoder_layer {
    tg_module module;
    tg_transformer_options opts;
    tg_mha *self_attn;
    tg_linear_layer *linear1, *linear2;
    tg_layernorm *norm1, *norm2;
    tg_dropout_layer *dropout, *dropout1, *dropout2;
} tg_encoder_layer;

typedef struct tg_decoder_layer {
    tg_module module;
    tg_transformer_options opts;
    tg_mha *self_attn, *multihead_attn;
    tg_linear_layer *linear1, *linear2;
    tg_layernorm *norm1, *norm2, *norm3;
    tg_dropout_layer *dropout, *dropout1, *dropout2, *dropout3;
} tg_decoder_layer;

tg_encoder_layer *tg_encoder_layer_new(const tg_transformer_options *opts);
tg_tensor *tg_encoder_layer_forward(tg_encoder_layer *m, tg_tape *t, tg_tensor *src,
                                    const tg_mha_masks *src_masks);

tg_decoder_layer *tg_decoder_layer_new(const tg_transformer_options *opts);
tg_tensor *tg_decoder_layer_forward(tg_decoder_layer *m, tg_tape *t, tg_tensor *tgt,
                                    tg_tensor *memory, const tg_mha_masks *tgt_masks,
                                    const tg_mha_masks *memory_masks);

/* Stacks: like PyTorch, every layer starts as a copy of the first (identical weights);
 * children "layers" (a ModuleList: keys "layers.{i}.*") and, with final_norm, "norm". */
typedef struct tg_transformer_encoder {
    tg_module module;
    int num_layers;
    tg_encoder_layer **layers; /* the ModuleList's children, for the forward */
    tg_layernorm *norm;        /* or NULL */
} tg_transformer_encoder;

typedef struct tg_transformer_decoder {
    tg_module module;
    int num_layers;
    tg_decoder_layer **layers;
    tg_layernorm *norm;
} tg_transformer_decoder;

tg_transformer_encoder *tg_transformer_encoder_new(const tg_transformer_options *opts,
                                                   int num_layers, bool final_norm);
tg_tensor *tg_transformer_encoder_forward(tg_transformer_encoder *m, tg_tape *t, tg_tensor *src,
                                          const tg_mha_masks *src_masks);

tg_transformer_decoder *tg_transformer_decoder_new(const tg_transformer_options *opts,
                                                   int num_layers, bool final_norm);
tg_tensor *tg_transformer_decoder_forward(tg_transformer_decoder *m, tg_tape *t, tg_tensor *tgt,
                                          tg_tensor *memory, const tg_mha_masks *tgt_masks,
                                          const tg_mha_masks *memory_masks);

/* nn.Transformer: encoder and decoder stacks, each with a final LayerNorm, and
 * xavier_uniform_ on every parameter of 2 or more dims after construction.
 * Keys "encoder.*", "decoder.*". */
typedef struct tg_transformer {
    tg_module module;
    tg_transformer_encoder *encoder;
    tg_transformer_decoder *decoder;
} tg_transformer;

tg_transformer *tg_transformer_new(const tg_transformer_options *opts, int num_encoder_layers,
                                   int num_decoder_layers);
/* memory = encoder(src, src_masks); decoder(tgt, memory, tgt_masks, memory_masks). */
tg_tensor *tg_transformer_forward(tg_transformer *m, tg_tape *t, tg_tensor *src, tg_tensor *tgt,
                                  const tg_mha_masks *src_masks, const tg_mha_masks *tgt_masks,
                                  const tg_mha_masks *memory_masks);

/* The PyTorch tutorial's sinusoidal table, (max_len, d_model) float, long-lived:
 * PE[pos, 2i] = sin(pos·ω_i), PE[pos, 2i+1] = cos(pos·ω_i), ω_i = exp(2i·(−ln 10000 / d)),
 * in the tutorial's float32 arithmetic. d_model must be even. */
tg_tensor *tg_positional_encoding(int64_t max_len, int64_t d_model);

#endif
