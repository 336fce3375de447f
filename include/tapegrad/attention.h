/* tapegrad/attention.h — attention modules: PyTorch's nn.MultiheadAttention and additive
 * (Bahdanau) attention, which own their projections and call the attention ops of
 * tapegrad/attention_ops.h (Luong dot-product attention, which has no parameters, is one
 * of those ops: tg_dot_attention).
 * Layer: nn. */
#ifndef TAPEGRAD_ATTENTION_H
#define TAPEGRAD_ATTENTION_H

#include "tapegrad/attention_ops.h"
#include "tapegrad/nn.h"

/* ---- nn.MultiheadAttention(embed_dim, num_heads, dropout, bias, add_bias_kv, add_zero_attn,
 *                            kdim, vdim, batch_first) ---- */
typedef struct tg_mha_options {
    int64_t embed_dim, num_heads;
    tg_real dropout;    /* on the attention weights, in training mode */
    bool bias;          /* in_proj_bias and out_proj.bias */
    bool add_bias_kv;   /* learnt bias_k, bias_v (1, 1, E) appended to the projected key and
                         * value sequences: S -> S + 1 */
    bool add_zero_attn; /* a zero key and value appended after the head split: S -> S + 1 */
    int64_t kdim, vdim; /* features of the key and value inputs; 0 = embed_dim (PyTorch's None) */
    bool batch_first;
} tg_mha_options;

/* PyTorch's defaults: dropout 0, bias, no bias_kv, no zero attention, kdim = vdim = embed_dim,
 * sequence first. */
tg_mha_options tg_mha_defaults(int64_t embed_dim, int64_t num_heads);

/* Parameters under PyTorch's state_dict names and in its order: in_proj_weight, or (when
 * kdim or vdim differs from embed_dim) q_proj_weight, k_proj_weight, v_proj_weight; then
 * in_proj_bias, bias_k, bias_v, out_proj.weight, out_proj.bias (the absent ones skipped). */
typedef struct tg_mha {
    tg_module module;
    int64_t embed_dim, num_heads, head_dim, kdim, vdim;
    tg_real dropout; /* on the attention weights, in training mode (m->module.training) */
    bool batch_first, add_zero_attn;
    tg_tensor *in_proj_weight;  /* (3E, E): rows [W_q; W_k; W_v], or NULL when separate */
    tg_tensor *q_proj_weight;   /* (E, E), only when kdim or vdim differs from E */
    tg_tensor *k_proj_weight;   /* (E, kdim), likewise */
    tg_tensor *v_proj_weight;   /* (E, vdim), likewise */
    tg_tensor *in_proj_bias;    /* (3E): [b_q; b_k; b_v], or NULL */
    tg_tensor *bias_k, *bias_v; /* (1, 1, E) with add_bias_kv, else NULL */
    tg_linear_layer *out_proj;  /* E -> E */
} tg_mha;

typedef struct tg_mha_output {
    tg_tensor *output; /* (L, N, E), or (N, L, E) with batch_first */
    /* NULL unless need_weights; (N, L, S') averaged over the heads, or (N, num_heads, L, S')
     * per head; S' = S plus one for add_bias_kv and one for add_zero_attn */
    tg_tensor *weights;
} tg_mha_output;

/* Draws PyTorch's init from the default generator in its order: out_proj (weight, bias),
 * then in_proj_weight or q, k, v_proj_weight xavier-uniform, then bias_k, bias_v
 * xavier-normal; in_proj_bias and out_proj.bias are zeroed. */
tg_mha *tg_mha_new_with(const tg_mha_options *opts);
/* tg_mha_new_with with the defaults and these five set. */
tg_mha *tg_mha_new(int64_t embed_dim, int64_t num_heads, tg_real dropout, bool bias,
                   bool batch_first);

/* PyTorch's forward(query, key, value, key_padding_mask, need_weights, attn_mask,
 * average_attn_weights). query (L, N, E), key (S, N, kdim), value (S, N, vdim) (batch first:
 * (N, L, E), (N, S, kdim), (N, S, vdim)); masks (tg_mha_masks, tapegrad/attention_ops.h) may
 * be NULL and are shaped for the S keys passed in: with add_bias_kv / add_zero_attn they get
 * a zero column per appended key, as PyTorch pads them. The weights are the post-dropout ones, as
 * PyTorch returns them, averaged over the heads when average_attn_weights. Without
 * need_weights (and masks that need no gradient) the heads run as one fused tape node,
 * tg_mha_attention (scores, masks, softmax, dropout and the weighted sum, reading q, k, v in
 * place from the projections: with the packed weight and no appended key, one product for
 * self-attention, two when key is value); with it, as single ops. Both give the same numbers and,
 * from the same generator state, the same dropout. */
tg_mha_output tg_mha_forward_with(tg_mha *m, tg_tape *t, tg_tensor *query, tg_tensor *key,
                                  tg_tensor *value, const tg_mha_masks *masks, bool need_weights,
                                  bool average_attn_weights);
/* tg_mha_forward_with(..., need_weights, true): PyTorch's default averaged weights. */
tg_mha_output tg_mha_forward(tg_mha *m, tg_tape *t, tg_tensor *query, tg_tensor *key,
                             tg_tensor *value, const tg_mha_masks *masks, bool need_weights);
/* The forward without need_weights up to the output projection: the heads concatenated,
 * (L, N, E) or (N, L, E), for a caller that applies m->out_proj itself (fused with what
 * follows it: tg_linear_dropout_add in the transformer layers). */
tg_tensor *tg_mha_forward_heads(tg_mha *m, tg_tape *t, tg_tensor *query, tg_tensor *key,
                                tg_tensor *value, const tg_mha_masks *masks);

/* The causal mask of nn.Transformer.generate_square_subsequent_mask: (size, size) float,
 * 0 on and below the diagonal, -inf above. A long-lived tensor (tg_tensor_free). */
tg_tensor *tg_square_subsequent_mask(int64_t size);

/* ---- additive (Bahdanau) attention ----
 *   e_t = vᵀ tanh(W_a h_t + U_a s + b_a),  α = softmax_t(e),  context = Σ_t α_t h_t
 * with h_t the encoder states and s the decoder state. W_a carries b_a. */
typedef struct tg_additive_attention {
    tg_module module;     /* keys W_a.weight, W_a.bias, U_a.weight, v.weight */
    tg_linear_layer *W_a; /* enc_dim -> attn_dim, with bias b_a */
    tg_linear_layer *U_a; /* dec_dim -> attn_dim, no bias */
    tg_linear_layer *v;   /* attn_dim -> 1, no bias */
} tg_additive_attention;

tg_additive_attention *tg_additive_attention_new(int64_t enc_dim, int64_t dec_dim,
                                                 int64_t attn_dim);
/* enc (N, T, enc_dim) batch first; s (N, dec_dim). For many decoder steps over the same
 * encoder states, pass enc_proj = the result of tg_additive_attention_project (W_a h_t + b_a,
 * computed once), else NULL. source_mask (N, T) 0/1, 1 = padding to ignore, may be NULL. */
tg_tensor *tg_additive_attention_project(tg_additive_attention *m, tg_tape *t, tg_tensor *enc);
/* Returns the context and weights of tg_additive_attention_core, the op it ends in. */
tg_attention_output tg_additive_attention_forward(tg_additive_attention *m, tg_tape *t,
                                                  tg_tensor *enc, tg_tensor *enc_proj, tg_tensor *s,
                                                  const tg_tensor *source_mask);

#endif
