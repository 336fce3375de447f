/* tapegrad/attention.h — attention modules: PyTorch's nn.MultiheadAttention and additive
 * (Bahdanau) attention, which own their projections and call the attention ops of
 * tapegrad/attention_ops.h (Luong dot-product attention, which has no parameters, is one
 * of those ops: tg_dot_attention).
 * Layer: nn. */
#ifndef TAPEGRAD_ATTENTION_H
#define TAPEGRAD_ATTENTION_H

#include "tapegrad/attention_ops.h"
#include "tapegrad/nn.h"

/* ---- nn.MultiheadAttention(embed_dim, num_heads, dropout, bias, batch_first) ---- */
typedef struct tg_mha {
    tg_module module;
    int64_t embed_dim, num_heads, head_dim;
    tg_real dropout; /* on the attention weights, in training mode (m->module.training) */
    bool batch_first;
    tg_tensor *in_proj_weight; /* (3E, E): rows [W_q; W_k; W_v] */
    tg_tensor *in_proj_bias;   /* (3E) or NULL */
    tg_linear_layer *out_proj; /* E -> E; keys in_proj_weight, in_proj_bias, out_proj.* */
} tg_mha;

typedef struct tg_mha_output {
    tg_tensor *output;  /* (L, N, E), or (N, L, E) with batch_first */
    tg_tensor *weights; /* (N, L, S) averaged over heads; NULL unless need_weights */
} tg_mha_output;

tg_mha *tg_mha_new(int64_t embed_dim, int64_t num_heads, tg_real dropout, bool bias,
                   bool batch_first);
/* query (L, N, E), key and value (S, N, E) (batch first: (N, L, E), (N, S, E)); masks
 * (tg_mha_masks, tapegrad/attention_ops.h) may be NULL. The weights are the post-dropout
 * ones, as PyTorch returns them. Without need_weights (and masks that need no gradient) the
 * heads run as one fused tape node, tg_mha_attention (scores, masks, softmax, dropout and the
 * weighted sum, reading q, k, v in place from the projections: one product for
 * self-attention, two when key is value); with it, as single ops. Both give the same numbers and,
 * from the same generator state, the same dropout. */
tg_mha_output tg_mha_forward(tg_mha *m, tg_tape *t, tg_tensor *query, tg_tensor *key,
                             tg_tensor *value, const tg_mha_masks *masks, bool need_weights);

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
