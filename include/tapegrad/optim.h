/* tapegrad/optim.h — optimizers (SGD, Adam, AdamW), gradient clipping and learning-rate
 * schedulers (StepLR, CosineAnnealingLR), numerically identical to PyTorch 1.13.
 * Layer: nn.
 *
 *   tg_optim *opt = tg_adam_new(params, NULL);               (NULL options: PyTorch's defaults)
 *   for (...) {
 *       ... forward, tg_tape_backward(tape, loss) ...
 *       tg_clip_grad_norm(params, 1.0, 2.0);                  (optional)
 *       tg_optim_step(opt);                                   (updates, then zeroes the grads)
 *       tg_scheduler_step(sched);                             (optional, once per epoch)
 *   }
 *
 * Numbers: every update follows PyTorch's single-tensor (foreach=False) loop in the operation
 * order of its default AVX2 kernels, including their fused multiply-adds: in the float32
 * build a step is bit-identical to PyTorch's when given the same parameters and gradients.
 * (PyTorch run with ATEN_CPU_CAPABILITY=default rounds those products separately and is not
 * matched bit for bit.)
 *
 * Parameters whose grad is NULL (backward never reached them) are skipped, as PyTorch skips
 * grad None; a zeroed gradient is a gradient, as after PyTorch's zero_grad(set_to_none=False).
 *
 * State and checkpoints: all optimizer state lives in long-lived tensors listed by
 * tg_optim_state() under stable names, so tg_params_save/tg_params_load of that list (next
 * to the model's) resumes training bit-identically. The optimizer reads its state back from
 * those tensors at every step; nothing is cached elsewhere. The hyper-parameters other than
 * lr (momentum, betas, eps, ...) are not state: rebuild the optimizer with the same options. */
#ifndef TAPEGRAD_OPTIM_H
#define TAPEGRAD_OPTIM_H

#include "tapegrad/params.h"

typedef struct tg_optim tg_optim;

/* ---- options (plain structs; start from the defaults function and change fields) ---- */

typedef struct tg_sgd_options {
    double lr;           /* required (PyTorch's SGD has no default lr) */
    double momentum;     /* 0 */
    double dampening;    /* 0 */
    double weight_decay; /* 0: L2, wd·p added to the gradient */
    bool nesterov;       /* false; needs momentum > 0 and dampening == 0 */
    bool maximize;       /* false: ascend instead of descend */
} tg_sgd_options;

/* Adam and AdamW share their options; only the meaning of weight_decay differs. */
typedef struct tg_adam_options {
    double lr;           /* 1e-3 */
    double beta1, beta2; /* 0.9, 0.999; each in [0, 1) */
    double eps;          /* 1e-8, added after the bias correction of sqrt(v) */
    double weight_decay; /* Adam: 0, L2 added to the gradient; AdamW: 0.01, decoupled */
    bool amsgrad;        /* false: normalise by the running max of v */
    bool maximize;       /* false */
} tg_adam_options;

tg_sgd_options tg_sgd_defaults(double lr);
tg_adam_options tg_adam_defaults(void);
tg_adam_options tg_adamw_defaults(void); /* as Adam's, with weight_decay 0.01 */

/* Validate options that come from outside the program (command line, config file): TG_OK,
 * or TG_ERR_ARGUMENT with a message (tg_error_message) such as PyTorch's
 * "Invalid learning rate: -1". The constructors run the same check and tg_fail on error. */
tg_status tg_sgd_options_check(const tg_sgd_options *opts);
tg_status tg_adam_options_check(const tg_adam_options *opts);

/* ---- optimizers ----
 * The optimizer remembers the tensors of `params` as they are at construction (later
 * additions to the list are not optimized); the list and its tensors must outlive it.
 * All state is allocated here, zero-filled: a step allocates nothing. `opts` NULL means the
 * defaults (not allowed for SGD, whose lr has no default). */
tg_optim *tg_sgd_new(const tg_params *params, const tg_sgd_options *opts);
tg_optim *tg_adam_new(const tg_params *params, const tg_adam_options *opts);
tg_optim *tg_adamw_new(const tg_params *params, const tg_adam_options *opts);
void tg_optim_free(tg_optim *opt); /* frees its state tensors too; NULL is fine */

/* One update of every parameter that has a gradient, then the gradients are zeroed: PyTorch's
 * optimizer.step() followed by optimizer.zero_grad(set_to_none=False), in one pass over the
 * memory. Every element's gradient is zeroed as soon as its update has read it, and the
 * parameters are gone through as one array, split between the library's threads; the bits
 * are those of tg_optim_update followed by tg_optim_zero_grad (two passes) at any thread
 * count. */
void tg_optim_step(tg_optim *opt);
/* Only the update, the gradients are left as they are (for inspection; most code wants
 * tg_optim_step). */
void tg_optim_update(tg_optim *opt);
/* Zeroes the gradient buffers of the optimizer's parameters (those that have one). */
void tg_optim_zero_grad(tg_optim *opt);

double tg_optim_lr(const tg_optim *opt);
void tg_optim_set_lr(tg_optim *opt, double lr);      /* lr >= 0, else tg_fail */
const char *tg_optim_kind_name(const tg_optim *opt); /* "SGD", "Adam" or "AdamW" */

/* The state as a named list of long-lived tensors owned by the optimizer (do not free):
 *   "optim.lr"                    (3,) the current lr, a double stored as the exact sum of
 *                                 three reals (so a float32 checkpoint keeps it exactly);
 *   "optim.step.<param>"          ()   steps that updated <param> (float, as PyTorch's;
 *                                      a count: tg_params_load wants a non-negative integer);
 *                                      for SGD, ≥ 1 also means "the momentum buffer exists"
 *                                      (PyTorch's first step copies the gradient into it);
 *   "optim.momentum_buffer.<param>"    SGD with momentum ≠ 0;
 *   "optim.exp_avg.<param>", "optim.exp_avg_sq.<param>"            Adam, AdamW;
 *   "optim.max_exp_avg_sq.<param>"                                 with amsgrad.
 * Entries follow the parameter order: lr first, then per parameter step and its buffers. */
tg_params *tg_optim_state(tg_optim *opt);

/* ---- gradient clipping (torch.nn.utils.clip_grad_norm_ / clip_grad_value_) ----
 * Parameters without a gradient are skipped. tg_clip_grad_norm computes the norm of the
 * per-tensor norms (norm_type > 0, or INFINITY for the max-abs), multiplies every gradient by
 * min(max_norm / (total + 1e-6), 1) unconditionally, and returns the total before clipping
 * (0 when no parameter has a gradient). NaN/inf gradients are scaled like PyTorch does (no
 * error). tg_clip_grad_value clamps every gradient to [-clip_value, clip_value]. */
double tg_clip_grad_norm(const tg_params *params, double max_norm, double norm_type);
void tg_clip_grad_value(const tg_params *params, double clip_value);

/* ---- learning-rate schedulers (torch.optim.lr_scheduler) ----
 * A scheduler drives its optimizer's lr. Construction records the optimizer's current lr as
 * the base lr and performs step 0 (lr unchanged, last_epoch 0). Call tg_optim_step and then
 * tg_scheduler_step once per epoch. The lr is updated recursively from its current value,
 * as PyTorch does (not from the closed form):
 *   StepLR:            lr <- lr·gamma when last_epoch % step_size == 0;
 *   CosineAnnealingLR: lr_e = eta_min + (lr_{e-1} - eta_min)·(1 + cos(π e/T))/(1 + cos(π (e-1)/T)),
 *                      or lr_{e-1} + (base - eta_min)(1 - cos(π/T))/2 when (e-1-T) % 2T == 0;
 *                      not clamped at T_max (the lr rises again after T_max, period 2·T_max). */
typedef struct tg_scheduler tg_scheduler;

tg_scheduler *tg_step_lr_new(tg_optim *opt, int64_t step_size, double gamma); /* step_size ≥ 1 */
tg_scheduler *tg_cosine_annealing_lr_new(tg_optim *opt, int64_t t_max,
                                         double eta_min); /* t_max ≥ 1 */
void tg_scheduler_step(tg_scheduler *s);
double tg_scheduler_last_lr(const tg_scheduler *s); /* PyTorch's get_last_lr()[0] */
int64_t tg_scheduler_last_epoch(const tg_scheduler *s);
/* "sched.last_epoch" () (a count) and "sched.base_lr" (3,), as for the optimizer's lr. Save
 * and load it together with tg_optim_state (which holds the current lr). */
tg_params *tg_scheduler_state(tg_scheduler *s);
void tg_scheduler_free(tg_scheduler *s); /* NULL is fine */

#endif
