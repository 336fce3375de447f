/* tapegrad/ops.h — the differentiable ops. Each takes the tape first, returns a new tensor
 * in the tape's arena, and records a node when an input requires grad. Inputs are never
 * modified. Misuse (shapes that do not fit, dims or indices out of range) stops through
 * the error handler with a message naming the op, the shapes and the tensor names; so does
 * a NULL tensor or tape, or a tensor made before the tape's last reset or on another tape
 * (checked on entry, before anything is read: tapegrad/tape.h). A NULL is accepted only
 * where it is documented (a bias, rng, indices, options: "may be NULL", "NULL = ...").
 * Each family's forward and backward live side by side in autograd/<family>.c.
 * Layer: autograd. */
#ifndef TAPEGRAD_OPS_H
#define TAPEGRAD_OPS_H

#include "tapegrad/rng.h"
#include "tapegrad/tape.h"

/* "no padding index" for tg_embedding (PyTorch's padding_idx=None) */
#define TG_NO_PADDING INT64_MIN

/* ---- elementwise (autograd/elementwise.c) ----
 * Binary ops broadcast as NumPy/PyTorch do; each input's gradient is summed back to its
 * own shape. */
tg_tensor *tg_add(tg_tape *t, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_sub(tg_tape *t, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_mul(tg_tape *t, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_div(tg_tape *t, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_neg(tg_tape *t, tg_tensor *x);
tg_tensor *tg_add_scalar(tg_tape *t, tg_tensor *x, tg_real s);
tg_tensor *tg_mul_scalar(tg_tape *t, tg_tensor *x, tg_real s);
tg_tensor *tg_pow_scalar(tg_tape *t, tg_tensor *x, tg_real p);
tg_tensor *tg_exp(tg_tape *t, tg_tensor *x);
tg_tensor *tg_log(tg_tape *t, tg_tensor *x);
tg_tensor *tg_sqrt(tg_tape *t, tg_tensor *x);
tg_tensor *tg_tanh(tg_tape *t, tg_tensor *x);
tg_tensor *tg_sigmoid(tg_tape *t, tg_tensor *x);
tg_tensor *tg_relu(tg_tape *t, tg_tensor *x);
typedef enum tg_gelu_approximate { TG_GELU_ERF, TG_GELU_TANH } tg_gelu_approximate;
tg_tensor *tg_gelu(tg_tape *t, tg_tensor *x, tg_gelu_approximate approximate);
/* Inverted dropout: in training each element is zeroed with probability p and the others
 * scaled by 1/(1-p); out of training (eval) it returns x itself. rng NULL = default. */
tg_tensor *tg_dropout(tg_tape *t, tg_tensor *x, tg_real p, bool training, tg_rng *rng);
/* out = mask ? value : x with x and mask (nonzero = true) broadcast together, as
 * torch.masked_fill; x's gradient is summed back to its shape; no grad to mask. */
tg_tensor *tg_masked_fill(tg_tape *t, tg_tensor *x, const tg_tensor *mask, tg_real value);
/* out = cond ? a : b with cond, a, b broadcast together; no grad to cond. */
tg_tensor *tg_where(tg_tape *t, const tg_tensor *cond, tg_tensor *a, tg_tensor *b);

/* ---- reductions (autograd/reduce.c) ---- */
tg_tensor *tg_sum(tg_tape *t, tg_tensor *x);  /* all elements -> shape () */
tg_tensor *tg_mean(tg_tape *t, tg_tensor *x);
tg_tensor *tg_sum_dim(tg_tape *t, tg_tensor *x, int dim, bool keepdim);
tg_tensor *tg_mean_dim(tg_tape *t, tg_tensor *x, int dim, bool keepdim);
/* Max along dim; the gradient goes to the first maximal element. `indices` (may be NULL)
 * receives the argmax as an arena index tensor of the output's shape. */
tg_tensor *tg_max_dim(tg_tape *t, tg_tensor *x, int dim, bool keepdim, tg_index **indices);

/* ---- softmax (autograd/softmax.c): numerically stable, along any dim (usually -1) ---- */
tg_tensor *tg_softmax(tg_tape *t, tg_tensor *x, int dim);
tg_tensor *tg_log_softmax(tg_tape *t, tg_tensor *x, int dim);

/* ---- matrix products (autograd/matmul.c); every product goes through tg_gemm ----
 * 2-D (m,k)x(k,n), or batched 3-D (B,m,k)x(B,k,n); a 3-D operand times a 2-D one treats
 * the 2-D one as shared by the whole batch. trans_a / trans_b use the operand transposed
 * in its last two dims without copying it. */
tg_tensor *tg_matmul(tg_tape *t, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_matmul_t(tg_tape *t, tg_tensor *a, tg_tensor *b, bool trans_a, bool trans_b);
/* y = x·Wᵀ + b over any leading dims of x (PyTorch's F.linear); bias may be NULL. */
tg_tensor *tg_linear(tg_tape *t, tg_tensor *x, tg_tensor *weight, tg_tensor *bias);

/* ---- shapes (autograd/shape.c) ---- */
/* Same data, new shape (one dim may be -1). Free: no copy. */
tg_tensor *tg_reshape(tg_tape *t, tg_tensor *x, int ndim, const int64_t *shape);
tg_tensor *tg_transpose(tg_tape *t, tg_tensor *x, int dim0, int dim1); /* copies */
tg_tensor *tg_permute(tg_tape *t, tg_tensor *x, const int *perm);      /* copies */
tg_tensor *tg_concat(tg_tape *t, tg_tensor *const *xs, int n, int dim);
/* Elements [start, start+length) along dim (torch.narrow); start may be negative. */
tg_tensor *tg_slice(tg_tape *t, tg_tensor *x, int dim, int64_t start, int64_t length);
/* torch.split(x, split_size, dim): chunks of split_size (the last may be smaller) written
 * to out[0..]; returns how many. Fails if there are more than max_out chunks. */
int tg_split(tg_tape *t, tg_tensor *x, int64_t split_size, int dim, tg_tensor **out, int max_out);
/* x[..., index, ...] along dim, removing that dim; index may be negative (-1 = last). */
tg_tensor *tg_select(tg_tape *t, tg_tensor *x, int dim, int64_t index);

/* ---- indexing (autograd/index.c) ---- */
/* Rows of weight (V, E) gathered by ids -> ids.shape + (E). The gradient is scatter-added
 * to the rows, except to padding_idx (TG_NO_PADDING for none; negative counts from V). */
tg_tensor *tg_embedding(tg_tape *t, tg_tensor *weight, const tg_index *ids, int64_t padding_idx);

/* ---- normalisation (autograd/norm.c) ---- */
/* Layer norm over the last norm_ndim dims: (x - mean) / sqrt(var + eps) * weight + bias,
 * biased variance; weight and bias (shape = those dims) may be NULL. */
tg_tensor *tg_layer_norm(tg_tape *t, tg_tensor *x, int norm_ndim, tg_tensor *weight,
                         tg_tensor *bias, tg_real eps);

/* ---- losses (autograd/loss.c) ---- */
typedef enum tg_reduction { TG_REDUCTION_MEAN, TG_REDUCTION_SUM, TG_REDUCTION_NONE } tg_reduction;
typedef struct tg_loss_options {
    tg_reduction reduction;   /* default MEAN */
    int64_t ignore_index;     /* default -100: targets equal to it count for nothing */
    tg_real label_smoothing;  /* cross entropy only; default 0 */
    const tg_tensor *weight;  /* per-class weights (C), or NULL; for BCE an element weight
                                 broadcast to the input; no gradient */
    const tg_tensor *pos_weight; /* BCE with logits only, broadcast along the last dim */
} tg_loss_options;
/* PyTorch's defaults: mean, ignore_index -100, no smoothing, no weights. An `opts` of NULL
 * below means these. */
tg_loss_options tg_loss_defaults(void);
/* Logits (N, C), (C), or (N, C, d1, ...) with class-index targets (N), (), (N, d1, ...). */
tg_tensor *tg_cross_entropy(tg_tape *t, tg_tensor *logits, const tg_index *targets);
tg_tensor *tg_cross_entropy_ex(tg_tape *t, tg_tensor *logits, const tg_index *targets,
                               const tg_loss_options *opts);
/* Log-probabilities in, same shapes as cross entropy. */
tg_tensor *tg_nll_loss(tg_tape *t, tg_tensor *log_probs, const tg_index *targets);
tg_tensor *tg_nll_loss_ex(tg_tape *t, tg_tensor *log_probs, const tg_index *targets,
                          const tg_loss_options *opts);
tg_tensor *tg_mse_loss(tg_tape *t, tg_tensor *input, tg_tensor *target, tg_reduction reduction);
/* Stable binary cross entropy on logits; targets may be soft (in [0, 1]). */
tg_tensor *tg_bce_with_logits(tg_tape *t, tg_tensor *logits, tg_tensor *targets,
                              const tg_loss_options *opts);

#endif
