/* tapegrad/attention_ops.h — the attention ops, no parameters of their own: the fused
 * scaled-dot-product attention of all heads behind nn.MultiheadAttention, the fused additive
 * (Bahdanau) attention core, and Luong dot-product attention. The modules that own the
 * projections around them are in tapegrad/attention.h.
 * Layer: autograd.
 *
 * Forward and hand-written backward of the fused ops, with their derivations, are in
 * autograd/attention.c. */
#ifndef TAPEGRAD_ATTENTION_OPS_H
#define TAPEGRAD_ATTENTION_OPS_H

#include "tapegrad/ops.h"

/* Masks, all optional (NULL). A bool mask holds 0/1 values in a tg_tensor (1 = not allowed,
 * becomes -inf); a float mask is added to the scores.
 *   attn_mask: (L, S), or (N·num_heads, L, S) indexed by n·num_heads + head.
 *   key_padding_mask: (N, S); 1 (bool) marks a key to ignore, float is added. */
typedef struct tg_mha_masks {
    const tg_tensor *attn_mask;
    bool attn_mask_is_bool;
    const tg_tensor *key_padding_mask;
    bool key_padding_mask_is_bool;
} tg_mha_masks;

/* Checks the masks (may be NULL) against N batches of num_heads heads, L queries and S keys,
 * failing with a message that names `op`. */
void tg_mha_masks_check(const char *op, const tg_mha_masks *masks, int64_t N, int64_t num_heads,
                        int64_t L, int64_t S);

/* Where the heads of q, k and v are. A position's features are rows of width W (the last
 * dim); its E = num_heads·head_dim attention features are the E columns from offset on, head j
 * at columns [offset + j·head_dim, offset + (j+1)·head_dim). So q, k and v may be one packed
 * projection (L, N, 3E) with offsets 0, E, 2E, read in place without copies. */
typedef struct tg_mha_layout {
    int64_t num_heads, head_dim;
    int64_t offsets[3]; /* of q, k, v */
    bool batch_first;   /* (N, L, W) instead of (L, N, W) */
} tg_mha_layout;

/* Scaled dot-product attention of every head, one tape node "mha_attention": for batch n and
 * head j, o = dropout(softmax(q kᵀ/√head_dim + masks)) v. q (L, N, Wq), k and v (S, N, Wk),
 * (S, N, Wv) (batch first: (N, L, Wq), ...). Returns the heads concatenated, (L, N, E) or
 * (N, L, E). `dropout` acts on the attention weights (the module passes 0 in eval), a mask drawn
 * from the default generator. masks may be NULL; they get no gradient (tg_mha_forward runs single
 * ops instead when one needs it). */
tg_tensor *tg_mha_attention(tg_tape *t, tg_tensor *q, tg_tensor *k, tg_tensor *v,
                            const tg_mha_layout *layout, const tg_mha_masks *masks,
                            tg_real dropout);

typedef struct tg_attention_output {
    tg_tensor *context; /* (N, enc_dim) for additive; (N, Tq, dim) for Luong */
    tg_tensor *weights; /* (N, T) for additive; (N, Tq, Tv) for Luong */
} tg_attention_output;

/* Additive attention from the projections on, one tape node "additive_attention":
 *   e_t = v·tanh(enc_proj_t + u) (−inf where source_mask is 1),  α = softmax_t(e),
 *   context = Σ_t α_t enc_t.
 * enc (N, T, enc_dim), enc_proj (N, T, A), u (N, A), v (A) or (1, A), source_mask (N, T)
 * 0/1 or NULL; returns the context (N, enc_dim) and the weights (N, T), both
 * differentiable. */
tg_attention_output tg_additive_attention_core(tg_tape *t, tg_tensor *enc, tg_tensor *enc_proj,
                                               tg_tensor *u, tg_tensor *v,
                                               const tg_tensor *source_mask);

/* Luong dot-product attention (Keras Attention, use_scale=False), from single ops:
 *   scores = query · keyᵀ, weights = softmax over Tv, context = weights · value
 * query (N, Tq, dim), value (N, Tv, dim), key = value when NULL. */
tg_attention_output tg_dot_attention(tg_tape *t, tg_tensor *query, tg_tensor *value,
                                     tg_tensor *key);

#endif
