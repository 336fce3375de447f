/* Linear, Embedding, LayerNorm and Dropout modules: parameters, PyTorch's init, forward. */
#include "tapegrad/nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

tg_linear_layer *tg_linear_new(int64_t in_features, int64_t out_features, bool bias) {
    if (in_features <= 0 || out_features <= 0)
        tg_fail("linear_new: sizes must be positive (in %lld, out %lld)", (long long)in_features,
                (long long)out_features);
    tg_linear_layer *m = tg_xcalloc(1, sizeof *m);
    m->in_features = in_features;
    m->out_features = out_features;
    m->params = tg_params_new();
    /* draw order as PyTorch: weight (kaiming_uniform a=√5), then bias U(±1/√in) */
    m->weight = tg_tensor_requires_grad(tg_tensor_new(TG_SHAPE(out_features, in_features)), true);
    tg_init_kaiming_uniform(m->weight, sqrt(5.0), NULL);
    tg_params_add(m->params, "weight", m->weight);
    if (bias) {
        m->bias = tg_tensor_requires_grad(tg_tensor_new(TG_SHAPE(out_features)), true);
        tg_init_uniform_fan(m->bias, in_features, NULL);
        tg_params_add(m->params, "bias", m->bias);
    }
    return m;
}

tg_tensor *tg_linear_forward(tg_linear_layer *m, tg_tape *t, tg_tensor *x) {
    TG_CHECK_ARG(m);
    TG_CHECK_OP(t, x);
    return tg_linear(t, x, m->weight, m->bias);
}

void tg_linear_free(tg_linear_layer *m) {
    if (!m) return;
    tg_tensor_free(m->weight);
    tg_tensor_free(m->bias);
    tg_params_free(m->params);
    free(m);
}

tg_embedding_layer *tg_embedding_new(int64_t num_embeddings, int64_t embedding_dim,
                                     int64_t padding_idx) {
    if (num_embeddings <= 0 || embedding_dim <= 0)
        tg_fail("embedding_new: sizes must be positive (num %lld, dim %lld)",
                (long long)num_embeddings, (long long)embedding_dim);
    if (padding_idx != TG_NO_PADDING) {
        if (padding_idx < -num_embeddings || padding_idx >= num_embeddings)
            tg_fail("embedding_new: padding_idx %lld out of range for %lld embeddings",
                    (long long)padding_idx, (long long)num_embeddings);
        if (padding_idx < 0) padding_idx += num_embeddings;
    }
    tg_embedding_layer *m = tg_xcalloc(1, sizeof *m);
    m->num_embeddings = num_embeddings;
    m->embedding_dim = embedding_dim;
    m->padding_idx = padding_idx;
    m->params = tg_params_new();
    m->weight =
        tg_tensor_requires_grad(tg_tensor_new(TG_SHAPE(num_embeddings, embedding_dim)), true);
    tg_init_normal(m->weight, 0, 1, NULL);
    if (padding_idx != TG_NO_PADDING)
        memset(m->weight->data + padding_idx * embedding_dim, 0,
               (size_t)embedding_dim * sizeof(tg_real));
    tg_params_add(m->params, "weight", m->weight);
    return m;
}

tg_tensor *tg_embedding_forward(tg_embedding_layer *m, tg_tape *t, const tg_index *ids) {
    TG_CHECK_ARG(m);
    TG_CHECK_ARG(t);
    TG_CHECK_INDEX_INPUT(t, ids);
    return tg_embedding(t, m->weight, ids, m->padding_idx);
}

void tg_embedding_free(tg_embedding_layer *m) {
    if (!m) return;
    tg_tensor_free(m->weight);
    tg_params_free(m->params);
    free(m);
}

tg_layernorm *tg_layernorm_new(int ndim, const int64_t *normalized_shape, tg_real eps,
                               bool elementwise_affine) {
    TG_CHECK_ARG(normalized_shape);
    if (ndim < 1 || ndim > TG_MAX_DIMS)
        tg_fail("layernorm_new: normalized_shape needs 1 to %d dims, got %d", TG_MAX_DIMS, ndim);
    tg_layernorm *m = tg_xcalloc(1, sizeof *m);
    m->ndim = ndim;
    memcpy(m->shape, normalized_shape, (size_t)ndim * sizeof(int64_t));
    m->eps = eps;
    m->params = tg_params_new();
    if (elementwise_affine) {
        m->weight = tg_tensor_requires_grad(tg_tensor_ones(ndim, normalized_shape), true);
        m->bias = tg_tensor_requires_grad(tg_tensor_zeros(ndim, normalized_shape), true);
        tg_params_add(m->params, "weight", m->weight);
        tg_params_add(m->params, "bias", m->bias);
    }
    return m;
}

tg_tensor *tg_layernorm_forward(tg_layernorm *m, tg_tape *t, tg_tensor *x) {
    TG_CHECK_ARG(m);
    TG_CHECK_OP(t, x);
    /* the op checks x's trailing dims against the weight; without affine, check here */
    bool fits = x->ndim >= m->ndim;
    for (int i = 0; fits && i < m->ndim; i++) fits = x->shape[x->ndim - m->ndim + i] == m->shape[i];
    if (!fits) {
        char desc[160], want[96];
        tg_fail("layernorm_forward: input %s does not end with normalized_shape %s",
                tg_tensor_describe(x, desc, sizeof desc),
                tg_shape_format(m->ndim, m->shape, want, sizeof want));
    }
    return tg_layer_norm(t, x, m->ndim, m->weight, m->bias, m->eps);
}

void tg_layernorm_free(tg_layernorm *m) {
    if (!m) return;
    tg_tensor_free(m->weight);
    tg_tensor_free(m->bias);
    tg_params_free(m->params);
    free(m);
}

tg_tensor *tg_dropout_forward(const tg_dropout_layer *m, tg_tape *t, tg_tensor *x) {
    TG_CHECK_ARG(m);
    TG_CHECK_OP(t, x);
    return tg_dropout(t, x, m->p, tg_tape_is_training(t), m->rng);
}
