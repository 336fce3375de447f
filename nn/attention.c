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

tg_mha_options tg_mha_defaults(int64_t embed_dim, int64_t num_heads) {
    return (tg_mha_options){.embed_dim = embed_dim, .num_heads = num_heads, .bias = true};
}

/* A long-lived (rows, cols) parameter, drawn xavier-uniform. */
static tg_tensor *xavier_uniform_param(int64_t rows, int64_t cols) {
    tg_tensor *w = tg_tensor_requires_grad(tg_tensor_new(TG_SHAPE(rows, cols)), true);
    tg_init_xavier_uniform(w, 1.0, NULL);
    return w;
}

/* A (1, 1, E) parameter drawn with xavier_normal_: torch's fans of a 3-D tensor are
 * fan_in = size(1)·E and fan_out = size(0)·E (the trailing dims are the receptive field), so
 * std = sqrt(2/(E + E)). */
static tg_tensor *xavier_normal_bias(int64_t E) {
    tg_tensor *b = tg_tensor_requires_grad(tg_tensor_new(TG_SHAPE(1, 1, E)), true);
    tg_init_normal(b, 0, (tg_real)sqrt(2.0 / (double)(E + E)), NULL);
    return b;
}

tg_mha *tg_mha_new_with(const tg_mha_options *opts) {
    TG_CHECK_ARG(opts);
    const int64_t E = opts->embed_dim, heads = opts->num_heads;
    if (E <= 0 || heads <= 0 || E % heads != 0)
        tg_fail("tg_mha_new_with: embed_dim (%lld) must be a positive multiple of num_heads (%lld)",
                (long long)E, (long long)heads);
    if (!(opts->dropout >= 0 && opts->dropout <= 1))
        tg_fail("tg_mha_new_with: dropout must be in [0, 1], got %g", (double)opts->dropout);
    if (opts->kdim < 0 || opts->vdim < 0)
        tg_fail("tg_mha_new_with: kdim (%lld) and vdim (%lld) must be positive, or 0 for embed_dim",
                (long long)opts->kdim, (long long)opts->vdim);
    tg_mha *m = tg_xcalloc(1, sizeof *m);
    m->embed_dim = E;
    m->num_heads = heads;
    m->head_dim = E / heads;
    m->kdim = opts->kdim ? opts->kdim : E;
    m->vdim = opts->vdim ? opts->vdim : E;
    m->dropout = opts->dropout;
    m->batch_first = opts->batch_first;
    m->add_zero_attn = opts->add_zero_attn;
    /* PyTorch's draw order: out_proj (a Linear: weight, then bias, later zeroed) is built in
     * the constructor; _reset_parameters then draws the projection weights (the packed
     * (3E, E) one, or W_q, W_k, W_v in that order) and last bias_k, bias_v. */
    m->out_proj = tg_linear_new(E, E, opts->bias);
    m->out_proj->module.type = &out_proj_type; /* a Linear under PyTorch's class name */
    tg_module_init(&m->module, &mha_type);
    if (m->kdim == E && m->vdim == E) {
        m->in_proj_weight = xavier_uniform_param(3 * E, E);
    } else {
        m->q_proj_weight = xavier_uniform_param(E, E);
        m->k_proj_weight = xavier_uniform_param(E, m->kdim);
        m->v_proj_weight = xavier_uniform_param(E, m->vdim);
    }
    if (opts->bias) {
        m->in_proj_bias = tg_tensor_requires_grad(tg_tensor_zeros(TG_SHAPE(3 * E)), true);
        tg_tensor_fill(m->out_proj->bias, 0);
    }
    if (opts->add_bias_kv) {
        m->bias_k = xavier_normal_bias(E);
        m->bias_v = xavier_normal_bias(E);
    }
    /* registration order = state_dict order; the absent ones (NULL) are not registered */
    const char *names[] = {"in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight",
                           "in_proj_bias",   "bias_k",        "bias_v"};
    tg_tensor *params[] = {m->in_proj_weight, m->q_proj_weight, m->k_proj_weight, m->v_proj_weight,
                           m->in_proj_bias,   m->bias_k,        m->bias_v};
    for (size_t i = 0; i < sizeof params / sizeof *params; i++)
        tg_module_add_param(&m->module, names[i], params[i]);
    tg_module_add_child(&m->module, "out_proj", &m->out_proj->module);
    return m;
}

tg_mha *tg_mha_new(int64_t embed_dim, int64_t num_heads, tg_real dropout, bool bias,
                   bool batch_first) {
    tg_mha_options o = tg_mha_defaults(embed_dim, num_heads);
    o.dropout = dropout, o.bias = bias, o.batch_first = batch_first;
    return tg_mha_new_with(&o);
}

tg_tensor *tg_square_subsequent_mask(int64_t size) {
    tg_tensor *mask = tg_tensor_zeros(TG_SHAPE(size, size));
    for (int64_t i = 0; i < size; i++)
        for (int64_t j = i + 1; j < size; j++) mask->data[i * size + j] = -INFINITY;
    return mask;
}

/* The projection x·Wᵀ + b of q (block 0), k (1) or v (2). With the packed in_proj_weight,
 * `count` consecutive blocks at once (rows [block·E, (block+count)·E) of W and b); the
 * separate q, k, v_proj_weight take one block at a time, with their third of in_proj_bias. */
static tg_tensor *project(tg_mha *m, tg_tape *t, tg_tensor *x, int block, int count) {
    const int64_t E = m->embed_dim;
    tg_tensor *b = m->in_proj_bias;
    if (b && count != 3) b = tg_slice(t, b, 0, block * E, count * E);
    if (!m->in_proj_weight) {
        tg_tensor *const w[3] = {m->q_proj_weight, m->k_proj_weight, m->v_proj_weight};
        return tg_linear(t, x, w[block], b);
    }
    tg_tensor *w = m->in_proj_weight;
    if (count != 3) w = tg_slice(t, w, 0, block * E, count * E);
    return tg_linear(t, x, w, b);
}

/* How many keys the module appends to every source sequence: bias_k / bias_v, then the zero
 * key and value of add_zero_attn. */
static int64_t appended_keys(const tg_mha *m) {
    return (m->bias_k ? 1 : 0) + (m->add_zero_attn ? 1 : 0);
}

/* Appends the appended keys to a projected key or value sequence, (S, N, E) or (N, S, E),
 * in PyTorch's order: bias (1, 1, E) broadcast over the batch (add_bias_kv), then zeros
 * (add_zero_attn). PyTorch appends the zeros per head after the head split; a zero
 * position of all E features is the same thing, so both are appended here, before it. */
static tg_tensor *append_keys(const tg_mha *m, tg_tape *t, tg_tensor *x, tg_tensor *bias,
                              int64_t N) {
    const int64_t E = m->embed_dim;
    const int seq = m->batch_first ? 1 : 0;
    const int64_t one[3] = {m->batch_first ? N : 1, m->batch_first ? 1 : N, E};
    tg_tensor *parts[3] = {x};
    int n = 1;
    if (bias) parts[n++] = tg_expand(t, bias, 3, one);
    if (m->add_zero_attn) parts[n++] = tg_tape_tensor_zeros(t, 3, one);
    return n == 1 ? x : tg_concat(t, parts, n, seq);
}

/* A mask with `extra` zero columns after its last (source) dim: PyTorch pads attn_mask and
 * key_padding_mask with F.pad(mask, (0, 1)) per appended key (0 = allowed, for a bool mask
 * too). */
static const tg_tensor *pad_mask(tg_tape *t, const tg_tensor *mask, int64_t extra) {
    if (!mask || extra == 0) return mask;
    int64_t shape[3];
    for (int i = 0; i < mask->ndim; i++) shape[i] = mask->shape[i];
    shape[mask->ndim - 1] = extra;
    tg_tensor *parts[2] = {(tg_tensor *)mask, tg_tape_tensor_zeros(t, mask->ndim, shape)};
    return tg_concat(t, parts, 2, mask->ndim - 1);
}

/* q, k and v as the attention reads them, keys appended. pack lets self-attention (and
 * key = value) share one product with the packed weight: then several of q, k, v are the
 * same tensor, their heads at the column offsets written to off (else all 0). */
static void project_all(tg_mha *m, tg_tape *t, tg_tensor *query, tg_tensor *key, tg_tensor *value,
                        int64_t N, bool pack, tg_tensor *qkv[3], int64_t off[3]) {
    const int64_t E = m->embed_dim;
    off[0] = off[1] = off[2] = 0;
    pack = pack && m->in_proj_weight && appended_keys(m) == 0;
    if (pack && query == key && key == value) {
        qkv[0] = qkv[1] = qkv[2] = project(m, t, query, 0, 3);
        off[1] = E, off[2] = 2 * E;
        return;
    }
    qkv[0] = project(m, t, query, 0, 1);
    if (pack && key == value) {
        qkv[1] = qkv[2] = project(m, t, key, 1, 2);
        off[2] = E;
        return;
    }
    qkv[1] = append_keys(m, t, project(m, t, key, 1, 1), m->bias_k, N);
    qkv[2] = append_keys(m, t, project(m, t, value, 2, 1), m->bias_v, N);
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

/* x is 3-D with `dim` features last (name: "embed_dim", "kdim", "vdim"). */
static void check_input(const char *what, const tg_tensor *x, const char *layout, const char *name,
                        int64_t dim) {
    if (x->ndim != 3 || x->shape[2] != dim) {
        char desc[160];
        tg_fail("tg_mha_forward: %s %s must be 3-D %s with last dim %s %lld", what,
                tg_tensor_describe(x, desc, sizeof desc), layout, name, (long long)dim);
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

/* The forward of every entry point up to the out_proj: the heads concatenated, (L, N, E) or
 * (N, L, E), and with need_weights the weights into *weights (fn, the one called, names the
 * argument errors). */
static tg_tensor *mha_heads(const char *fn, tg_mha *m, tg_tape *t, tg_tensor *query, tg_tensor *key,
                            tg_tensor *value, const tg_mha_masks *masks, bool need_weights,
                            bool average_attn_weights, tg_tensor **weights) {
    if (!m) tg_fail_null_argument(fn, "m");
    tg_tape_check_op(t, fn, "t", "query, key, value", 3,
                     (const tg_tensor *const[]){query, key, value});
    if (masks && masks->attn_mask) tg_tape_check_input(t, fn, "masks->attn_mask", masks->attn_mask);
    if (masks && masks->key_padding_mask)
        tg_tape_check_input(t, fn, "masks->key_padding_mask", masks->key_padding_mask);
    const char *q_layout = m->batch_first ? "(N, L, E)" : "(L, N, E)";
    check_input("query", query, q_layout, "embed_dim", m->embed_dim);
    check_input("key", key, m->batch_first ? "(N, S, kdim)" : "(S, N, kdim)", "kdim", m->kdim);
    check_input("value", value, m->batch_first ? "(N, S, vdim)" : "(S, N, vdim)", "vdim", m->vdim);
    const int bdim = m->batch_first ? 0 : 1;
    const int64_t N = query->shape[bdim];
    if (key->shape[bdim] != N || value->shape[bdim] != N ||
        key->shape[1 - bdim] != value->shape[1 - bdim]) {
        char q[160], k[160], v[160];
        tg_fail("tg_mha_forward: query %s, key %s and value %s disagree on batch or source length",
                tg_tensor_describe(query, q, sizeof q), tg_tensor_describe(key, k, sizeof k),
                tg_tensor_describe(value, v, sizeof v));
    }
    const int64_t L = query->shape[1 - bdim], S = key->shape[1 - bdim];
    tg_mha_masks_check("tg_mha_forward", masks, N, m->num_heads, L, S);
    const bool mask_grad =
        masks && ((masks->attn_mask && masks->attn_mask->requires_grad) ||
                  (masks->key_padding_mask && masks->key_padding_mask->requires_grad));
    /* the masks, with a zero column per appended key */
    const int64_t extra = appended_keys(m);
    tg_mha_masks padded = masks ? *masks : (tg_mha_masks){0};
    padded.attn_mask = pad_mask(t, padded.attn_mask, extra);
    padded.key_padding_mask = pad_mask(t, padded.key_padding_mask, extra);
    const tg_real p_drop = m->module.training ? m->dropout : 0;

    tg_tensor *qkv[3];
    int64_t off[3];
    const bool fused = !need_weights && !mask_grad;
    project_all(m, t, query, key, value, N, fused, qkv, off);
    if (fused) {
        const tg_mha_layout layout = {
            m->num_heads, m->head_dim, {off[0], off[1], off[2]}, m->batch_first};
        return tg_mha_attention(t, qkv[0], qkv[1], qkv[2], &layout, &padded, p_drop);
    }
    /* The composite path (the weights are wanted, or a mask needs a gradient): q, k, v split
     * into heads; scores = (q / √d)·kᵀ + mask;  A = softmax over the source positions */
    tg_tensor *q = split_heads(m, t, qkv[0]), *k = split_heads(m, t, qkv[1]);
    tg_tensor *v = split_heads(m, t, qkv[2]);
    q = tg_mul_scalar(t, q, (tg_real)(1.0 / sqrt((double)m->head_dim)));
    tg_tensor *scores = apply_masks(m, t, tg_matmul_t(t, q, k, false, true), N, &padded);
    tg_tensor *A = tg_softmax(t, scores, -1);
    A = tg_dropout(t, A, m->dropout, m->module.training, NULL);
    tg_tensor *o = merge_heads(m, t, tg_matmul(t, A, v), N); /* the heads concatenated */
    if (need_weights) {
        *weights = tg_reshape(t, A, TG_SHAPE(N, m->num_heads, A->shape[1], A->shape[2]));
        if (average_attn_weights) *weights = tg_mean_dim(t, *weights, 1, false); /* (N, L, S) */
    }
    return o;
}

/* The heads, then the output projection. */
static tg_mha_output mha_forward(const char *fn, tg_mha *m, tg_tape *t, tg_tensor *query,
                                 tg_tensor *key, tg_tensor *value, const tg_mha_masks *masks,
                                 bool need_weights, bool average_attn_weights) {
    tg_mha_output out = {0};
    tg_tensor *o = mha_heads(fn, m, t, query, key, value, masks, need_weights, average_attn_weights,
                             &out.weights);
    out.output = tg_linear_forward(m->out_proj, t, o);
    return out;
}

tg_tensor *tg_mha_forward_heads(tg_mha *m, tg_tape *t, tg_tensor *query, tg_tensor *key,
                                tg_tensor *value, const tg_mha_masks *masks) {
    return mha_heads(__func__, m, t, query, key, value, masks, false, false, NULL);
}

tg_mha_output tg_mha_forward_with(tg_mha *m, tg_tape *t, tg_tensor *query, tg_tensor *key,
                                  tg_tensor *value, const tg_mha_masks *masks, bool need_weights,
                                  bool average_attn_weights) {
    return mha_forward(__func__, m, t, query, key, value, masks, need_weights,
                       average_attn_weights);
}

tg_mha_output tg_mha_forward(tg_mha *m, tg_tape *t, tg_tensor *query, tg_tensor *key,
                             tg_tensor *value, const tg_mha_masks *masks, bool need_weights) {
    return mha_forward(__func__, m, t, query, key, value, masks, need_weights, true);
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
