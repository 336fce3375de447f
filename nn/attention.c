/* The attention modules, MultiheadAttention and additive attention: their parameters, and
 * forwards composed of ops (the fused attention ops they call are in autograd/attention.c). */
#include "tapegrad/attention.h"

#include <math.h>
#include <stdlib.h>

/* PyTorch's MultiheadAttention has no extra repr; its out_proj prints under the class name
 * PyTorch gives it. */
static const tg_module_type mha_type = {"MultiheadAttention", NULL, NULL};
static const tg_module_type additive_type = {"AdditiveAttention", NULL, NULL};
static const tg_module_type out_proj_type = {"NonDynamicallyQuantizableLinear", NULL,
                                             tg_linear_extra_repr};

tg_mha *tg_mha_new(int64_t embed_dim, int64_t num_heads, tg_real dropout, bool bias,
                   bool batch_first) {
    if (embed_dim <= 0 || num_heads <= 0 || embed_dim % num_heads != 0)
        tg_fail("tg_mha_new: embed_dim (%lld) must be a positive multiple of num_heads (%lld)",
                (long long)embed_dim, (long long)num_heads);
    if (!(dropout >= 0 && dropout <= 1))
        tg_fail("tg_mha_new: dropout must be in [0, 1], got %g", (double)dropout);
    tg_mha *m = tg_xcalloc(1, sizeof *m);
    m->embed_dim = embed_dim;
    m->num_heads = num_heads;
    m->head_dim = embed_dim / num_heads;
    m->dropout = dropout;
    m->batch_first = batch_first;
    /* PyTorch's draw order: out_proj (a Linear: weight, then bias, later zeroed) is built
     * first; only then is the packed in_proj_weight drawn, xavier-uniform over (3E, E). */
    m->out_proj = tg_linear_new(embed_dim, embed_dim, bias);
    m->out_proj->module.type = &out_proj_type; /* a Linear under PyTorch's class name */
    m->in_proj_weight =
        tg_tensor_requires_grad(tg_tensor_new(TG_SHAPE(3 * embed_dim, embed_dim)), true);
    tg_init_xavier_uniform(m->in_proj_weight, 1.0, NULL);
    tg_module_init(&m->module, &mha_type);
    tg_module_add_param(&m->module, "in_proj_weight", m->in_proj_weight);
    if (bias) {
        m->in_proj_bias = tg_tensor_requires_grad(tg_tensor_zeros(TG_SHAPE(3 * embed_dim)), true);
        tg_module_add_param(&m->module, "in_proj_bias", m->in_proj_bias);
        tg_tensor_fill(m->out_proj->bias, 0);
    }
    tg_module_add_child(&m->module, "out_proj", &m->out_proj->module);
    return m;
}

tg_tensor *tg_square_subsequent_mask(int64_t size) {
    tg_tensor *mask = tg_tensor_zeros(TG_SHAPE(size, size));
    for (int64_t i = 0; i < size; i++)
        for (int64_t j = i + 1; j < size; j++) mask->data[i * size + j] = -INFINITY;
    return mask;
}

/* Rows [block·E, (block+count)·E) of the packed projection (W_q, W_k, W_v) and its bias:
 * x·Wᵀ + b for `count` consecutive blocks at once. */
static tg_tensor *project(tg_mha *m, tg_tape *t, tg_tensor *x, int block, int count) {
    const int64_t E = m->embed_dim;
    if (block == 0 && count == 3) return tg_linear(t, x, m->in_proj_weight, m->in_proj_bias);
    tg_tensor *w = tg_slice(t, m->in_proj_weight, 0, block * E, count * E);
    tg_tensor *b = m->in_proj_bias ? tg_slice(t, m->in_proj_bias, 0, block * E, count * E) : NULL;
    return tg_linear(t, x, w, b);
}

/* (L, N, E) seq-first or (N, L, E) batch-first -> (N·heads, L, head_dim), head j of batch n
 * at index n·heads + j as in PyTorch. */
static tg_tensor *split_heads(const tg_mha *m, tg_tape *t, tg_tensor *x) {
    const int64_t h = m->num_heads, d = m->head_dim;
    const int64_t a = x->shape[0], b = x->shape[1]; /* (L, N) or (N, L) */
    tg_tensor *x4 = tg_reshape(t, x, TG_SHAPE(a, b, h, d));
    const int seq_first[] = {1, 2, 0, 3}, batch_first[] = {0, 2, 1, 3};
    tg_tensor *p = tg_permute(t, x4, m->batch_first ? batch_first : seq_first); /* (N, h, L, d) */
    return tg_reshape(t, p, TG_SHAPE(p->shape[0] * h, p->shape[2], d));
}

/* The inverse: (N·heads, L, head_dim) -> (L, N, E) or (N, L, E). */
static tg_tensor *merge_heads(const tg_mha *m, tg_tape *t, tg_tensor *o, int64_t N) {
    const int64_t h = m->num_heads, d = m->head_dim, L = o->shape[1];
    tg_tensor *o4 = tg_reshape(t, o, TG_SHAPE(N, h, L, d));
    const int seq_first[] = {2, 0, 1, 3}, batch_first[] = {0, 2, 1, 3};
    tg_tensor *p = tg_permute(t, o4, m->batch_first ? batch_first : seq_first);
    if (m->batch_first) return tg_reshape(t, p, TG_SHAPE(N, L, h * d));
    return tg_reshape(t, p, TG_SHAPE(L, N, h * d));
}

static void check_input(const tg_mha *m, const char *what, const tg_tensor *x) {
    if (x->ndim != 3 || x->shape[2] != m->embed_dim) {
        char desc[160];
        tg_fail("tg_mha_forward: %s %s must be 3-D %s with last dim embed_dim %lld", what,
                tg_tensor_describe(x, desc, sizeof desc),
                m->batch_first ? "(N, L, E)" : "(L, N, E)", (long long)m->embed_dim);
    }
}

/* scores (N·h, L, S) with both masks applied (checked by tg_mha_masks_check). */
static tg_tensor *apply_masks(const tg_mha *m, tg_tape *t, tg_tensor *scores, int64_t N,
                              const tg_mha_masks *masks) {
    const int64_t h = m->num_heads, L = scores->shape[1], S = scores->shape[2];
    const tg_tensor *am = masks ? masks->attn_mask : NULL;
    if (am)
        scores = masks->attn_mask_is_bool ? tg_masked_fill(t, scores, am, -INFINITY)
                                          : tg_add(t, scores, (tg_tensor *)am);
    const tg_tensor *kpm = masks ? masks->key_padding_mask : NULL;
    if (kpm) {
        /* view the scores as (N, h, L, S) and the mask as (N, 1, 1, S) to broadcast */
        tg_tensor *s4 = tg_reshape(t, scores, TG_SHAPE(N, h, L, S));
        tg_tensor *k4 = tg_reshape(t, (tg_tensor *)kpm, TG_SHAPE(N, 1, 1, S)); /* a view */
        s4 = masks->key_padding_mask_is_bool ? tg_masked_fill(t, s4, k4, -INFINITY)
                                             : tg_add(t, s4, k4);
        scores = tg_reshape(t, s4, TG_SHAPE(N * h, L, S));
    }
    return scores;
}

tg_mha_output tg_mha_forward(tg_mha *m, tg_tape *t, tg_tensor *query, tg_tensor *key,
                             tg_tensor *value, const tg_mha_masks *masks, bool need_weights) {
    TG_CHECK_ARG(m);
    TG_CHECK_OP(t, query, key, value);
    if (masks) {
        TG_CHECK_INPUT_OPT(t, masks->attn_mask);
        TG_CHECK_INPUT_OPT(t, masks->key_padding_mask);
    }
    check_input(m, "query", query);
    check_input(m, "key", key);
    check_input(m, "value", value);
    const int bdim = m->batch_first ? 0 : 1;
    const int64_t N = query->shape[bdim];
    if (key->shape[bdim] != N || value->shape[bdim] != N ||
        key->shape[1 - bdim] != value->shape[1 - bdim]) {
        char q[160], k[160], v[160];
        tg_fail("tg_mha_forward: query %s, key %s and value %s disagree on batch or source length",
                tg_tensor_describe(query, q, sizeof q), tg_tensor_describe(key, k, sizeof k),
                tg_tensor_describe(value, v, sizeof v));
    }
    const int64_t E = m->embed_dim, L = query->shape[1 - bdim], S = key->shape[1 - bdim];
    tg_mha_masks_check("tg_mha_forward", masks, N, m->num_heads, L, S);
    const bool mask_grad =
        masks && ((masks->attn_mask && masks->attn_mask->requires_grad) ||
                  (masks->key_padding_mask && masks->key_padding_mask->requires_grad));
    if (!need_weights && !mask_grad) {
        /* the fused core; the projections as PyTorch packs them: one product for
         * self-attention, two when key is value */
        tg_tensor *q, *k, *v;
        int64_t off[3] = {0, 0, 0};
        if (query == key && key == value) {
            q = k = v = project(m, t, query, 0, 3);
            off[1] = E, off[2] = 2 * E;
        } else if (key == value) {
            q = project(m, t, query, 0, 1);
            k = v = project(m, t, key, 1, 2);
            off[2] = E;
        } else {
            q = project(m, t, query, 0, 1);
            k = project(m, t, key, 1, 1);
            v = project(m, t, value, 2, 1);
        }
        const tg_mha_layout layout = {
            m->num_heads, m->head_dim, {off[0], off[1], off[2]}, m->batch_first};
        tg_tensor *o =
            tg_mha_attention(t, q, k, v, &layout, masks, m->module.training ? m->dropout : 0);
        return (tg_mha_output){.output = tg_linear_forward(m->out_proj, t, o)};
    }
    /* The composite path (the weights are wanted, or a mask needs a gradient):
     * q = query·W_qᵀ + b_q, k = key·W_kᵀ + b_k, v = value·W_vᵀ + b_v, split into heads */
    tg_tensor *q = split_heads(m, t, project(m, t, query, 0, 1));
    tg_tensor *k = split_heads(m, t, project(m, t, key, 1, 1));
    tg_tensor *v = split_heads(m, t, project(m, t, value, 2, 1));
    /* scores = (q / √d)·kᵀ + mask;  A = softmax over the source positions */
    q = tg_mul_scalar(t, q, (tg_real)(1.0 / sqrt((double)m->head_dim)));
    tg_tensor *scores = apply_masks(m, t, tg_matmul_t(t, q, k, false, true), N, masks);
    tg_tensor *A = tg_softmax(t, scores, -1);
    A = tg_dropout(t, A, m->dropout, m->module.training, NULL);
    /* heads concatenated, then the output projection */
    tg_tensor *o = merge_heads(m, t, tg_matmul(t, A, v), N);
    tg_mha_output out = {.output = tg_linear_forward(m->out_proj, t, o)};
    if (need_weights) {
        tg_tensor *A4 = tg_reshape(t, A, TG_SHAPE(N, m->num_heads, A->shape[1], A->shape[2]));
        out.weights = tg_mean_dim(t, A4, 1, false); /* (N, L, S) */
    }
    return out;
}

/* ---- additive attention ---- */

tg_additive_attention *tg_additive_attention_new(int64_t enc_dim, int64_t dec_dim,
                                                 int64_t attn_dim) {
    tg_additive_attention *m = tg_xcalloc(1, sizeof *m);
    tg_module_init(&m->module, &additive_type);
    m->W_a = tg_linear_new(enc_dim, attn_dim, true);
    m->U_a = tg_linear_new(dec_dim, attn_dim, false);
    m->v = tg_linear_new(attn_dim, 1, false);
    tg_module_add_child(&m->module, "W_a", &m->W_a->module);
    tg_module_add_child(&m->module, "U_a", &m->U_a->module);
    tg_module_add_child(&m->module, "v", &m->v->module);
    return m;
}

tg_tensor *tg_additive_attention_project(tg_additive_attention *m, tg_tape *t, tg_tensor *enc) {
    TG_CHECK_ARG(m);
    TG_CHECK_OP(t, enc);
    return tg_linear_forward(m->W_a, t, enc); /* W_a h_t + b_a for every t: (N, T, attn) */
}

tg_attention_output tg_additive_attention_forward(tg_additive_attention *m, tg_tape *t,
                                                  tg_tensor *enc, tg_tensor *enc_proj, tg_tensor *s,
                                                  const tg_tensor *source_mask) {
    TG_CHECK_ARG(m);
    TG_CHECK_OP(t, enc, s);
    TG_CHECK_INPUT_OPT(t, enc_proj);
    TG_CHECK_INPUT_OPT(t, source_mask);
    char a[160], b[160];
    if (enc->ndim != 3 || s->ndim != 2 || s->shape[0] != enc->shape[0])
        tg_fail("tg_additive_attention_forward: encoder states %s must be (N, T, enc) and the "
                "decoder state %s (N, dec)",
                tg_tensor_describe(enc, a, sizeof a), tg_tensor_describe(s, b, sizeof b));
    if (!enc_proj) enc_proj = tg_additive_attention_project(m, t, enc);
    /* e_t = vᵀ tanh(W_a h_t + U_a s + b_a), α = softmax(e), context = Σ_t α_t h_t */
    return tg_additive_attention_core(t, enc, enc_proj, tg_linear_forward(m->U_a, t, s),
                                      m->v->weight, source_mask);
}
