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
/* a ** b, both tensors (torch.pow(a, b)). Gradients as PyTorch's: da = b·a^(b-1), 0 where
 * b = 0; db = a^b·ln a, 0 where a = 0 and b >= 0 (NaN for a negative base). For a constant
 * exponent tg_pow_scalar is faster. */
tg_tensor *tg_pow(tg_tape *t, tg_tensor *a, tg_tensor *b);
/* Elementwise max / min (torch.maximum / minimum); a NaN in either operand gives NaN. The
 * gradient goes to the larger (smaller) operand and is split in halves on a tie, as
 * PyTorch's. */
tg_tensor *tg_maximum(tg_tape *t, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_minimum(tg_tape *t, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_neg(tg_tape *t, tg_tensor *x);
tg_tensor *tg_add_scalar(tg_tape *t, tg_tensor *x, tg_real s);
tg_tensor *tg_mul_scalar(tg_tape *t, tg_tensor *x, tg_real s);
tg_tensor *tg_pow_scalar(tg_tape *t, tg_tensor *x, tg_real p); /* dx = p·x^(p-1), 0 if p = 0 */
/* |x|; the gradient is sign(x), 0 at 0, as PyTorch's. */
tg_tensor *tg_abs(tg_tape *t, tg_tensor *x);
/* min(max(x, min), max) (torch.clamp); -INFINITY / INFINITY leave a side open (clamp(min=)
 * alone is tg_clamp(t, x, lo, INFINITY)); min > max gives max everywhere; NaN bounds are
 * refused. The gradient is 1 where min <= x <= max (boundaries included, as PyTorch's), 0
 * elsewhere and at NaN. */
tg_tensor *tg_clamp(tg_tape *t, tg_tensor *x, tg_real min, tg_real max);
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
/* Masks are real tensors, nonzero = true (a NaN too, as bool(nan) in PyTorch). A mask held as
 * an index tensor (a BOOL/U8 safetensors entry read with tg_st_entry_to_index, token ids)
 * becomes one with tg_index_eq, below: e.g. the padding mask ids == pad. */
/* The upper (triu) / lower (tril) triangle of the last two dims: elements with
 * j - i >= diagonal (triu) or j - i <= diagonal (tril) are kept, the rest set to 0; the
 * gradient passes where kept. A causal mask (1 above the diagonal) is
 * tg_triu(t, tg_tape_tensor_full(t, TG_SHAPE(T, T), 1), 1). */
tg_tensor *tg_triu(tg_tape *t, tg_tensor *x, int64_t diagonal);
tg_tensor *tg_tril(tg_tape *t, tg_tensor *x, int64_t diagonal);

/* ---- reductions (autograd/reduce.c) ---- */
tg_tensor *tg_sum(tg_tape *t, tg_tensor *x);  /* all elements -> shape () */
tg_tensor *tg_mean(tg_tape *t, tg_tensor *x);
tg_tensor *tg_sum_dim(tg_tape *t, tg_tensor *x, int dim, bool keepdim);
tg_tensor *tg_mean_dim(tg_tape *t, tg_tensor *x, int dim, bool keepdim);
/* Max (min) along dim; the gradient goes to the first maximal (minimal) element, and a NaN
 * counts as the extreme, as in PyTorch. `indices` (may be NULL) receives the argmax
 * (argmin) as an arena index tensor of the output's shape. */
tg_tensor *tg_max_dim(tg_tape *t, tg_tensor *x, int dim, bool keepdim, tg_index **indices);
tg_tensor *tg_min_dim(tg_tape *t, tg_tensor *x, int dim, bool keepdim, tg_index **indices);
/* torch.argmax / argmin along dim: the first index of the extreme (NaN counts as it), as an
 * arena index tensor; not differentiable. For the whole tensor, flatten it first. */
tg_index *tg_argmax(tg_tape *t, const tg_tensor *x, int dim, bool keepdim);
tg_index *tg_argmin(tg_tape *t, const tg_tensor *x, int dim, bool keepdim);
/* Running sum along dim (torch.cumsum), accumulated in double. */
tg_tensor *tg_cumsum(tg_tape *t, tg_tensor *x, int dim);

/* ---- sorting (autograd/sort.c) ----
 * Stable: equal values keep their order (the first of a tie first); a NaN counts as larger
 * than any number (last ascending, first descending), as in PyTorch. `indices` (may be NULL)
 * receives the positions along dim as an arena index tensor; the gradient goes back to them. */
tg_tensor *tg_sort(tg_tape *t, tg_tensor *x, int dim, bool descending, tg_index **indices);
/* The k largest (largest) or smallest along dim, in order (torch.topk with sorted=True). */
tg_tensor *tg_topk(tg_tape *t, tg_tensor *x, int64_t k, int dim, bool largest, tg_index **indices);

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
/* Reshapes with the shape worked out from dims, free like tg_reshape. unsqueeze inserts a
 * size-1 dim at dim in [-ndim-1, ndim]; squeeze removes dim if its size is 1 (and returns x
 * itself otherwise, as PyTorch does nothing then); squeeze_all removes every size-1 dim;
 * flatten merges the dims start_dim..end_dim into one (a scalar becomes (1,)). Those that
 * change nothing return x itself. */
tg_tensor *tg_unsqueeze(tg_tape *t, tg_tensor *x, int dim);
tg_tensor *tg_squeeze(tg_tape *t, tg_tensor *x, int dim);
tg_tensor *tg_squeeze_all(tg_tape *t, tg_tensor *x);
tg_tensor *tg_flatten(tg_tape *t, tg_tensor *x, int start_dim, int end_dim);
/* x broadcast to `shape` (torch.expand; -1 keeps a size, new dims go in front). Tensors are
 * contiguous, so the result is a copy; its gradient is summed back to x's shape. */
tg_tensor *tg_expand(tg_tape *t, tg_tensor *x, int ndim, const int64_t *shape);
/* x tiled repeats[d] times along each dim d (torch.repeat: n >= x's dims; extra leading
 * counts add dims). The gradient adds up every copy. */
tg_tensor *tg_repeat(tg_tape *t, tg_tensor *x, int n, const int64_t *repeats);
tg_tensor *tg_transpose(tg_tape *t, tg_tensor *x, int dim0, int dim1); /* copies */
tg_tensor *tg_permute(tg_tape *t, tg_tensor *x, const int *perm);      /* copies */
tg_tensor *tg_concat(tg_tape *t, tg_tensor *const *xs, int n, int dim);
/* n tensors of one shape joined along a new dim (torch.stack), dim in [-ndim-1, ndim]. */
tg_tensor *tg_stack(tg_tape *t, tg_tensor *const *xs, int n, int dim);
/* Elements [start, start+length) along dim (torch.narrow); start may be negative. */
tg_tensor *tg_slice(tg_tape *t, tg_tensor *x, int dim, int64_t start, int64_t length);
/* torch.split(x, split_size, dim): chunks of split_size (the last may be smaller) written
 * to out[0..]; returns how many. Fails if there are more than max_out chunks. */
int tg_split(tg_tape *t, tg_tensor *x, int64_t split_size, int dim, tg_tensor **out, int max_out);
/* torch.split(x, [sizes], dim): n chunks of the given sizes (adding up to the dim's size)
 * written to out[0..n); returns n. */
int tg_split_sizes(tg_tape *t, tg_tensor *x, const int64_t *sizes, int n, int dim, tg_tensor **out);
/* torch.chunk(x, chunks, dim): chunks of ceil(size / chunks), so there may be fewer than
 * `chunks` (5 in 4 chunks: 2, 2, 1); written to out[0..]; returns how many. Fails if there
 * are more than max_out. */
int tg_chunk(tg_tape *t, tg_tensor *x, int chunks, int dim, tg_tensor **out, int max_out);
/* x[..., index, ...] along dim, removing that dim; index may be negative (-1 = last). */
tg_tensor *tg_select(tg_tape *t, tg_tensor *x, int dim, int64_t index);

/* ---- indexing (autograd/index.c) ---- */
/* Rows of weight (V, E) gathered by ids -> ids.shape + (E). The gradient is scatter-added
 * to the rows, except to padding_idx (TG_NO_PADDING for none; negative counts from V). */
tg_tensor *tg_embedding(tg_tape *t, tg_tensor *weight, const tg_index *ids, int64_t padding_idx);
/* torch.gather(x, dim, index): y[m] = x[m with its coordinate along dim replaced by
 * index[m]]; y has index's shape. index has x's number of dims and is no larger than x in
 * the others. The gradient is scatter-added. */
tg_tensor *tg_gather(tg_tape *t, tg_tensor *x, int dim, const tg_index *index);
/* torch.index_select(x, dim, index): the slices index[0], index[1], ... of x along dim
 * (index 1-D, repeats allowed); the gradient is scatter-added. */
tg_tensor *tg_index_select(tg_tape *t, tg_tensor *x, int dim, const tg_index *index);
/* Not differentiable: F.one_hot (num_classes -1 infers max + 1) -> ix.shape + (C);
 * ix == value as a 0/1 mask; the values as reals (ix.float()). */
tg_tensor *tg_one_hot(tg_tape *t, const tg_index *ix, int64_t num_classes);
tg_tensor *tg_index_eq(tg_tape *t, const tg_index *ix, int32_t value);
tg_tensor *tg_index_to_tensor(tg_tape *t, const tg_index *ix);

/* ---- sampling, for text generation (autograd/sample.c) ----
 * Draws from categorical distributions over the last dim, with `rng` (NULL = the default
 * generator). Reproducible for a seed on any machine and thread count, but not torch's
 * bits (the distribution is the same, the generator is consumed differently). */
/* torch.multinomial: probs (..., C) are non-negative finite weights (need not sum to 1);
 * returns (..., num_samples) category indices, with or without replacement. */
tg_index *tg_multinomial(tg_tape *t, const tg_tensor *probs, int64_t num_samples, bool replacement,
                         tg_rng *rng);
/* One category per row of logits (..., C), returned as (...): drawn from
 * softmax(logits / temperature) restricted to the top_k largest logits (0 = all; ties at
 * the cut are kept), or the argmax when temperature is 0 (greedy). Logits may be -inf. */
tg_index *tg_sample_logits(tg_tape *t, const tg_tensor *logits, tg_real temperature, int64_t top_k,
                           tg_rng *rng);

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
/* Linear then cross entropy in one op, for an output layer over a large vocabulary:
 * F.cross_entropy(F.linear(x, weight, bias).view(-1, V), targets.view(-1), ...) with x
 * (..., in), weight (V, in), bias (V) or NULL, and one target per row of x (targets of any
 * shape with that many elements; reduction NONE gives the targets' shape). opts: reduction
 * and ignore_index as PyTorch's (NULL: mean, -100); class weights and label smoothing are
 * not supported. The N × V logits are never held: the rows go in chunks of a few MB. When
 * the tape records and an input requires grad (reduction mean or sum), the forward also
 * computes the gradient for a backward that starts at this loss with 1, while each chunk's
 * logits are at hand, into a saved buffer the size of weight (plus x's and bias's); a
 * backward with any other upstream gradient, a second backward through a retained graph,
 * or reduction none computes each chunk's logits again (autograd/linear_ce.c). Both give the
 * same bits. The loss has the bits of tg_linear + tg_cross_entropy_ex; the gradients agree
 * to rounding (dW and db are summed chunk by chunk). */
tg_tensor *tg_linear_cross_entropy(tg_tape *t, tg_tensor *x, tg_tensor *weight, tg_tensor *bias,
                                   const tg_index *targets, const tg_loss_options *opts);
/* The same with the rows per chunk given (chunk_rows <= 0: the default, ~4 MB of logits):
 * fewer rows hold less memory and make smaller GEMMs. The results do not depend on it
 * except for the rounding of dW and db. */
tg_tensor *tg_linear_cross_entropy_chunked(tg_tape *t, tg_tensor *x, tg_tensor *weight,
                                           tg_tensor *bias, const tg_index *targets,
                                           const tg_loss_options *opts, int64_t chunk_rows);
/* Log-probabilities in, same shapes as cross entropy. */
tg_tensor *tg_nll_loss(tg_tape *t, tg_tensor *log_probs, const tg_index *targets);
tg_tensor *tg_nll_loss_ex(tg_tape *t, tg_tensor *log_probs, const tg_index *targets,
                          const tg_loss_options *opts);
tg_tensor *tg_mse_loss(tg_tape *t, tg_tensor *input, tg_tensor *target, tg_reduction reduction);
/* Stable binary cross entropy on logits; targets may be soft (in [0, 1]). */
tg_tensor *tg_bce_with_logits(tg_tape *t, tg_tensor *logits, tg_tensor *targets,
                              const tg_loss_options *opts);

#endif
