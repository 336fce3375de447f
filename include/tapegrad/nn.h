/* tapegrad/nn.h — PyTorch's initialisers and the simple modules: Linear, Embedding,
 * LayerNorm, Dropout. A module is a struct whose first member is its tg_module
 * (tapegrad/module.h: children, parameters by state_dict name, the training flag), with
 * _new and _forward; tg_module_free(&m->module) frees it, tg_module_params lists its
 * parameters, tg_module_train / tg_module_eval switch its dropout.
 * (Module types carry a _layer suffix where the functional op has the plain name:
 * tg_linear() is F.linear, tg_linear_layer is nn.Linear.)
 * Layer: nn. */
#ifndef TAPEGRAD_NN_H
#define TAPEGRAD_NN_H

#include "tapegrad/ops.h"
#include "tapegrad/module.h"

/* ---- initialisers; rng NULL = the default generator ---- */
/* U(-bound, bound) with bound = 1/sqrt(fan_in): Linear weights (kaiming_uniform, a=√5, which
 * reduces to this bound) and biases, and every RNN parameter (fan = hidden_size). */
void tg_init_uniform_fan(tg_tensor *t, int64_t fan, tg_rng *rng);
/* kaiming_uniform_(a) on a 2-D weight (fan_in = size(1)), PyTorch's bound evaluation order. */
void tg_init_kaiming_uniform(tg_tensor *w, double a, tg_rng *rng);
/* xavier_uniform_(gain) on a 2-D weight: bound = gain·sqrt(6/(fan_in+fan_out)). */
void tg_init_xavier_uniform(tg_tensor *w, double gain, tg_rng *rng);

/* ---- nn.Linear(in, out, bias) ---- */
typedef struct tg_linear_layer {
    tg_module module;
    int64_t in_features, out_features;
    tg_tensor *weight; /* (out, in) */
    tg_tensor *bias;   /* (out) or NULL */
} tg_linear_layer;
tg_linear_layer *tg_linear_new(int64_t in_features, int64_t out_features, bool bias);
tg_tensor *tg_linear_forward(tg_linear_layer *m, tg_tape *t, tg_tensor *x);
/* "in_features=4, out_features=3, bias=True": for a module type that is a Linear by another
 * name (MultiheadAttention's out_proj). */
void tg_linear_extra_repr(const tg_module *m, char *buf, size_t size);

/* ---- nn.Embedding(num, dim, padding_idx) ---- */
typedef struct tg_embedding_layer {
    tg_module module;
    int64_t num_embeddings, embedding_dim;
    int64_t padding_idx; /* normalised to [0, num) or TG_NO_PADDING */
    tg_tensor *weight;   /* (num, dim), N(0, 1), the padding row zeroed */
} tg_embedding_layer;
tg_embedding_layer *tg_embedding_new(int64_t num_embeddings, int64_t embedding_dim,
                                     int64_t padding_idx);
tg_tensor *tg_embedding_forward(tg_embedding_layer *m, tg_tape *t, const tg_index *ids);

/* ---- nn.LayerNorm(normalized_shape, eps, elementwise_affine) ---- */
typedef struct tg_layernorm {
    tg_module module;
    int ndim; /* len(normalized_shape) */
    int64_t shape[TG_MAX_DIMS];
    tg_real eps;
    tg_tensor *weight, *bias; /* ones / zeros, or NULL without affine */
} tg_layernorm;
tg_layernorm *tg_layernorm_new(int ndim, const int64_t *normalized_shape, tg_real eps,
                               bool elementwise_affine);
tg_tensor *tg_layernorm_forward(tg_layernorm *m, tg_tape *t, tg_tensor *x);

/* ---- nn.Dropout(p): active when the module is in training mode (tg_module_train) ----
 * Training mode lives in the modules, as in PyTorch: every dropout (this module, attention
 * weights, between RNN layers, Transformer sublayers) reads its own module's flag. The tape
 * only records or not (tg_tape_set_recording, torch.no_grad). */
typedef struct tg_dropout_layer {
    tg_module module;
    tg_real p;
    tg_rng *rng; /* NULL = the default generator */
} tg_dropout_layer;
tg_dropout_layer *tg_dropout_new(tg_real p);
tg_tensor *tg_dropout_forward(const tg_dropout_layer *m, tg_tape *t, tg_tensor *x);

#endif
