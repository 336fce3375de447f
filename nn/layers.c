/* Linear, Embedding, LayerNorm and Dropout modules: parameters, PyTorch's init, forward. */
#include "tapegrad/nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Python's repr of a float: "0.1", "1e-05", and "0.0" rather than "0". */
static void py_float(char *buf, size_t size, double v) {
    snprintf(buf, size, "%g", v);
    if (!strpbrk(buf, ".eni")) strncat(buf, ".0", size - strlen(buf) - 1);
}

void tg_linear_extra_repr(const tg_module *mod, char *buf, size_t size) {
    const tg_linear_layer *m = (const tg_linear_layer *)mod;
    snprintf(buf, size, "in_features=%lld, out_features=%lld, bias=%s", (long long)m->in_features,
             (long long)m->out_features, m->bias ? "True" : "False");
}
static const tg_module_type linear_type = {"Linear", NULL, tg_linear_extra_repr};

tg_linear_layer *tg_linear_new(int64_t in_features, int64_t out_features, bool bias) {
    if (in_features <= 0 || out_features <= 0)
        tg_fail("tg_linear_new: sizes must be positive (in %lld, out %lld)", (long long)in_features,
                (long long)out_features);
    tg_linear_layer *m = tg_xcalloc(1, sizeof *m);
    m->in_features = in_features;
    m->out_features = out_features;
    tg_module_init(&m->module, &linear_type);
    /* draw order as PyTorch: weight (kaiming_uniform a=√5), then bias U(±1/√in) */
    m->weight = tg_tensor_requires_grad(tg_tensor_new(TG_SHAPE(out_features, in_features)), true);
    tg_init_kaiming_uniform(m->weight, sqrt(5.0), NULL);
    tg_module_add_param(&m->module, "weight", m->weight);
    if (bias) {
        m->bias = tg_tensor_requires_grad(tg_tensor_new(TG_SHAPE(out_features)), true);
        tg_init_uniform_fan(m->bias, in_features, NULL);
        tg_module_add_param(&m->module, "bias", m->bias);
    }
    return m;
}

tg_tensor *tg_linear_forward(tg_linear_layer *m, tg_tape *t, tg_tensor *x) {
    TG_CHECK_ARG(m);
    TG_CHECK_OP(t, x);
    return tg_linear(t, x, m->weight, m->bias);
}

static void embedding_repr(const tg_module *mod, char *buf, size_t size) {
    const tg_embedding_layer *m = (const tg_embedding_layer *)mod;
    const int n = snprintf(buf, size, "%lld, %lld", (long long)m->num_embeddings,
                           (long long)m->embedding_dim);
    if (m->padding_idx != TG_NO_PADDING && n >= 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n, ", padding_idx=%lld", (long long)m->padding_idx);
}
static const tg_module_type embedding_type = {"Embedding", NULL, embedding_repr};

tg_embedding_layer *tg_embedding_new(int64_t num_embeddings, int64_t embedding_dim,
                                     int64_t padding_idx) {
    if (num_embeddings <= 0 || embedding_dim <= 0)
        tg_fail("tg_embedding_new: sizes must be positive (num %lld, dim %lld)",
                (long long)num_embeddings, (long long)embedding_dim);
    if (padding_idx != TG_NO_PADDING) {
        if (padding_idx < -num_embeddings || padding_idx >= num_embeddings)
            tg_fail("tg_embedding_new: padding_idx %lld out of range for %lld embeddings",
                    (long long)padding_idx, (long long)num_embeddings);
        if (padding_idx < 0) padding_idx += num_embeddings;
    }
    tg_embedding_layer *m = tg_xcalloc(1, sizeof *m);
    m->num_embeddings = num_embeddings;
    m->embedding_dim = embedding_dim;
    m->padding_idx = padding_idx;
    tg_module_init(&m->module, &embedding_type);
    m->weight =
        tg_tensor_requires_grad(tg_tensor_new(TG_SHAPE(num_embeddings, embedding_dim)), true);
    tg_init_normal(m->weight, 0, 1, NULL);
    if (padding_idx != TG_NO_PADDING)
        memset(m->weight->data + padding_idx * embedding_dim, 0,
               (size_t)embedding_dim * sizeof(tg_real));
    tg_module_add_param(&m->module, "weight", m->weight);
    return m;
}

tg_tensor *tg_embedding_forward(tg_embedding_layer *m, tg_tape *t, const tg_index *ids) {
    TG_CHECK_ARG(m);
    TG_CHECK_ARG(t);
    TG_CHECK_INDEX_INPUT(t, ids);
    return tg_embedding(t, m->weight, ids, m->padding_idx);
}

static void layernorm_repr(const tg_module *mod, char *buf, size_t size) {
    const tg_layernorm *m = (const tg_layernorm *)mod;
    char shape[128] = "(", eps[32];
    for (int i = 0; i < m->ndim; i++)
        snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", i ? ", " : "",
                 (long long)m->shape[i]);
    strcat(shape, m->ndim == 1 ? ",)" : ")");
    py_float(eps, sizeof eps, (double)m->eps);
    snprintf(buf, size, "%s, eps=%s, elementwise_affine=%s", shape, eps,
             m->weight ? "True" : "False");
}
static const tg_module_type layernorm_type = {"LayerNorm", NULL, layernorm_repr};

tg_layernorm *tg_layernorm_new(int ndim, const int64_t *normalized_shape, tg_real eps,
                               bool elementwise_affine) {
    TG_CHECK_ARG(normalized_shape);
    if (ndim < 1 || ndim > TG_MAX_DIMS)
        tg_fail("tg_layernorm_new: normalized_shape needs 1 to %d dims, got %d", TG_MAX_DIMS, ndim);
    tg_layernorm *m = tg_xcalloc(1, sizeof *m);
    m->ndim = ndim;
    memcpy(m->shape, normalized_shape, (size_t)ndim * sizeof(int64_t));
    m->eps = eps;
    tg_module_init(&m->module, &layernorm_type);
    if (elementwise_affine) {
        m->weight = tg_tensor_requires_grad(tg_tensor_ones(ndim, normalized_shape), true);
        m->bias = tg_tensor_requires_grad(tg_tensor_zeros(ndim, normalized_shape), true);
        tg_module_add_param(&m->module, "weight", m->weight);
        tg_module_add_param(&m->module, "bias", m->bias);
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
        tg_fail("tg_layernorm_forward: input %s does not end with normalized_shape %s",
                tg_tensor_describe(x, desc, sizeof desc),
                tg_shape_format(m->ndim, m->shape, want, sizeof want));
    }
    return tg_layer_norm(t, x, m->ndim, m->weight, m->bias, m->eps);
}

static void dropout_repr(const tg_module *mod, char *buf, size_t size) {
    char p[32];
    py_float(p, sizeof p, (double)((const tg_dropout_layer *)mod)->p);
    snprintf(buf, size, "p=%s, inplace=False", p);
}
static const tg_module_type dropout_type = {"Dropout", NULL, dropout_repr};

tg_dropout_layer *tg_dropout_new(tg_real p) {
    if (!(p >= 0 && p <= 1)) tg_fail("tg_dropout_new: p %g must be in [0, 1]", (double)p);
    tg_dropout_layer *m = tg_xcalloc(1, sizeof *m);
    tg_module_init(&m->module, &dropout_type);
    m->p = p;
    return m;
}

tg_tensor *tg_dropout_forward(const tg_dropout_layer *m, tg_tape *t, tg_tensor *x) {
    TG_CHECK_ARG(m);
    TG_CHECK_OP(t, x);
    return tg_dropout(t, x, m->p, m->module.training, m->rng);
}
