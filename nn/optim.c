/* Optimizers (SGD, Adam, AdamW) and gradient clipping, matching PyTorch 1.13 bit for bit in
 * float32.
 *
 * How the numbers match. PyTorch keeps hyper-parameters as doubles and rounds each one to the
 * tensor's type where it meets a tensor; every tensor op rounds its result. Its default CPU
 * kernels (AVX2) compute `x + alpha·y` (add with alpha, addcmul) as one fused multiply-add,
 * i.e. a single rounding, which fmaf() reproduces exactly. Each line below therefore rounds
 * where PyTorch's op sequence rounds: hyper-parameters are converted with (tg_real), every
 * intermediate is a tg_real variable, and FMA marks PyTorch's fused steps. No other fusion
 * may happen behind our back: the project compiles as ISO C11, where GCC does not contract
 * a*b+c on its own, and the pragmas below keep it so for builds in GNU mode with FMA enabled
 * (which would otherwise change bits; clang honours its pragma except under
 * -ffp-contract=fast, and by default contracts only within one expression, while no expression
 * here has a product feeding a sum). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#elif defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include "tapegrad/optim.h"
#include "tapegrad/kernels.h" /* tg_parallel_for */
#include "tapegrad/tape.h"    /* tg_tensor_zero_grad */

#include "real3.h" /* the lr as three reals */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef TG_DOUBLE
#define FMA(a, b, c) fma((a), (b), (c))
#define SQRT(x)      sqrt(x)
#define POW(x, y)    pow((x), (y))
#else
#define FMA(a, b, c) fmaf((a), (b), (c))
#define SQRT(x)      sqrtf(x)
#define POW(x, y)    powf((x), (y))
#endif

typedef enum optim_kind { OPTIM_SGD, OPTIM_ADAM, OPTIM_ADAMW } optim_kind;

struct tg_optim {
    optim_kind kind;
    tg_sgd_options sgd;   /* kind == OPTIM_SGD (its lr field is unused: see lr below) */
    tg_adam_options adam; /* Adam, AdamW (same) */
    size_t count;
    tg_tensor **params; /* borrowed, as the list held them at construction */
    /* State: owned tensors, listed in `state` (the only place the values live). */
    tg_tensor *lr;      /* (3,): the lr as an exact sum of three reals */
    tg_tensor **step;   /* per parameter, shape () */
    tg_tensor **buf;    /* SGD momentum_buffer, Adam exp_avg (NULL entries if unused) */
    tg_tensor **sq;     /* Adam exp_avg_sq */
    tg_tensor **max_sq; /* Adam max_exp_avg_sq (amsgrad) */
    tg_params *state;
    /* The fused pass over all parameters: where each starts in the concatenation of all
     * (count + 1 offsets), and what a step computes for it (see "updates"). */
    int64_t *offset;
    struct param_step *per_param;
};

/* What one step does to one parameter, decided before the pass over the elements: whether
 * it is updated at all (it has a gradient), SGD's first-step flag, Adam's bias-corrected
 * step size and sqrt(1 - β2^t). */
struct param_step {
    bool active, first;
    tg_real neg_step_size, bc2_sqrt;
};

/* ---- options ---- */

tg_sgd_options tg_sgd_defaults(double lr) {
    return (tg_sgd_options){.lr = lr,
                            .momentum = 0,
                            .dampening = 0,
                            .weight_decay = 0,
                            .nesterov = false,
                            .maximize = false};
}

tg_adam_options tg_adam_defaults(void) {
    return (tg_adam_options){.lr = 1e-3,
                             .beta1 = 0.9,
                             .beta2 = 0.999,
                             .eps = 1e-8,
                             .weight_decay = 0,
                             .amsgrad = false,
                             .maximize = false};
}

tg_adam_options tg_adamw_defaults(void) {
    tg_adam_options o = tg_adam_defaults();
    o.weight_decay = 1e-2;
    return o;
}

/* What is wrong with the options, PyTorch's words, written into why (NULL: nothing). The
 * checks and the constructors put the name of the function called in front.
 * !(x >= 0) also rejects NaN. */
static const char *sgd_options_problem(const tg_sgd_options *o, char *why, size_t n) {
    if (!o)
        snprintf(why, n, "no options given (lr is required)");
    else if (!(o->lr >= 0))
        snprintf(why, n, "Invalid learning rate: %g", o->lr);
    else if (!(o->momentum >= 0))
        snprintf(why, n, "Invalid momentum value: %g", o->momentum);
    else if (!isfinite(o->dampening))
        snprintf(why, n, "Invalid dampening value: %g", o->dampening);
    else if (!(o->weight_decay >= 0))
        snprintf(why, n, "Invalid weight_decay value: %g", o->weight_decay);
    else if (o->nesterov && (o->momentum <= 0 || o->dampening != 0))
        snprintf(why, n,
                 "Nesterov momentum requires a momentum and zero dampening (momentum %g, "
                 "dampening %g)",
                 o->momentum, o->dampening);
    else
        return NULL;
    return why;
}

/* NULL options are Adam's defaults: nothing wrong. */
static const char *adam_options_problem(const tg_adam_options *o, char *why, size_t n) {
    if (!o) return NULL;
    if (!(o->lr >= 0))
        snprintf(why, n, "Invalid learning rate: %g", o->lr);
    else if (!(o->eps >= 0))
        snprintf(why, n, "Invalid epsilon value: %g", o->eps);
    else if (!(o->beta1 >= 0 && o->beta1 < 1))
        snprintf(why, n, "Invalid beta parameter at index 0: %g", o->beta1);
    else if (!(o->beta2 >= 0 && o->beta2 < 1))
        snprintf(why, n, "Invalid beta parameter at index 1: %g", o->beta2);
    else if (!(o->weight_decay >= 0))
        snprintf(why, n, "Invalid weight_decay value: %g", o->weight_decay);
    else
        return NULL;
    return why;
}

tg_status tg_sgd_options_check(const tg_sgd_options *o) {
    char why[160];
    const char *problem = sgd_options_problem(o, why, sizeof why);
    return problem ? tg_status_set(TG_ERR_ARGUMENT, "%s: %s", __func__, problem) : TG_OK;
}

tg_status tg_adam_options_check(const tg_adam_options *o) {
    char why[160];
    const char *problem = adam_options_problem(o, why, sizeof why);
    return problem ? tg_status_set(TG_ERR_ARGUMENT, "%s: %s", __func__, problem) : TG_OK;
}

/* ---- construction ---- */

static tg_tensor *state_tensor(tg_optim *opt, const char *what, const char *param_name,
                               const tg_tensor *like) {
    static const int64_t scalar_shape[1] = {1}; /* unused: 0 dims */
    tg_tensor *t =
        like ? tg_tensor_zeros(like->ndim, like->shape) : tg_tensor_zeros(0, scalar_shape);
    char name[512];
    snprintf(name, sizeof name, "optim.%s.%s", what, param_name);
    if (like)
        tg_params_add(opt->state, name, t);
    else /* the step: a count, which tg_params_load checks as such */
        tg_params_add_count(opt->state, name, t);
    return t;
}

static tg_optim *optim_new(optim_kind kind, const tg_params *params, const char *fn) {
    if (!params) tg_fail("%s: params is NULL", fn);
    /* validate before allocating (a replaced error handler may longjmp out of tg_fail) */
    for (size_t i = 0; i < params->count; i++)
        for (size_t j = 0; j < i; j++)
            if (params->tensors[j] == params->tensors[i])
                tg_fail("%s: parameter '%s' appears twice in the list (also as '%s'): it would "
                        "be updated twice per step",
                        fn, params->names[i], params->names[j]);
    tg_optim *opt = tg_xcalloc(1, sizeof *opt);
    opt->kind = kind;
    opt->count = params->count;
    const size_t n = opt->count ? opt->count : 1;
    opt->params = tg_xcalloc(n, sizeof *opt->params);
    opt->step = tg_xcalloc(n, sizeof *opt->step);
    opt->buf = tg_xcalloc(n, sizeof *opt->buf);
    opt->sq = tg_xcalloc(n, sizeof *opt->sq);
    opt->max_sq = tg_xcalloc(n, sizeof *opt->max_sq);
    opt->offset = tg_xcalloc(n + 1, sizeof *opt->offset);
    opt->per_param = tg_xcalloc(n, sizeof *opt->per_param);
    for (size_t i = 0; i < opt->count; i++) {
        opt->params[i] = params->tensors[i];
        opt->offset[i + 1] = opt->offset[i] + params->tensors[i]->numel;
    }
    opt->state = tg_params_new();
    opt->lr = tg_tensor_zeros(TG_SHAPE(3));
    tg_params_add(opt->state, "optim.lr", opt->lr);
    return opt;
}

tg_optim *tg_sgd_new(const tg_params *params, const tg_sgd_options *opts) {
    char why[160];
    const char *problem = sgd_options_problem(opts, why, sizeof why);
    if (problem) tg_fail("%s: %s", __func__, problem);
    tg_optim *opt = optim_new(OPTIM_SGD, params, "tg_sgd_new");
    opt->sgd = *opts;
    real3_set(opt->lr, opts->lr);
    for (size_t i = 0; i < opt->count; i++) {
        const char *name = params->names[i];
        opt->step[i] = state_tensor(opt, "step", name, NULL);
        if (opts->momentum != 0)
            opt->buf[i] = state_tensor(opt, "momentum_buffer", name, opt->params[i]);
    }
    return opt;
}

static tg_optim *adam_new(optim_kind kind, const tg_params *params, const tg_adam_options *opts,
                          const char *fn) {
    char why[160];
    const char *problem = adam_options_problem(opts, why, sizeof why);
    if (problem) tg_fail("%s: %s", fn, problem);
    tg_optim *opt = optim_new(kind, params, fn);
    opt->adam = opts ? *opts : kind == OPTIM_ADAMW ? tg_adamw_defaults() : tg_adam_defaults();
    real3_set(opt->lr, opt->adam.lr);
    for (size_t i = 0; i < opt->count; i++) {
        const char *name = params->names[i];
        opt->step[i] = state_tensor(opt, "step", name, NULL);
        opt->buf[i] = state_tensor(opt, "exp_avg", name, opt->params[i]);
        opt->sq[i] = state_tensor(opt, "exp_avg_sq", name, opt->params[i]);
        if (opt->adam.amsgrad)
            opt->max_sq[i] = state_tensor(opt, "max_exp_avg_sq", name, opt->params[i]);
    }
    return opt;
}

tg_optim *tg_adam_new(const tg_params *params, const tg_adam_options *opts) {
    return adam_new(OPTIM_ADAM, params, opts, "tg_adam_new");
}

tg_optim *tg_adamw_new(const tg_params *params, const tg_adam_options *opts) {
    return adam_new(OPTIM_ADAMW, params, opts, "tg_adamw_new");
}

void tg_optim_free(tg_optim *opt) {
    if (!opt) return;
    for (size_t i = 0; i < opt->state->count; i++) tg_tensor_free(opt->state->tensors[i]);
    tg_params_free(opt->state);
    free(opt->params);
    free(opt->step);
    free(opt->buf);
    free(opt->sq);
    free(opt->max_sq);
    free(opt->offset);
    free(opt->per_param);
    free(opt);
}

/* ---- updates ----
 * fmaf() is exact on every machine, but compiled for baseline x86-64 it is a libm call that
 * emulates the single rounding in software, several times slower than the rest of an update.
 * So each per-tensor loop is an always-inline kernel instantiated twice: with target("fma"),
 * where the compiler turns fmaf() into one instruction, and plain; the first runs when the
 * CPU has FMA (same bits either way: both round once). */
#define KERNEL static inline __attribute__((always_inline))
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__FMA__)
#define OPTIM_FMA_DISPATCH 1
#define TARGET_FMA         __attribute__((target("fma")))
static bool cpu_has_fma(void) { return __builtin_cpu_supports("fma"); }
#endif

/* Instantiates `name`_plain and `name`_fma from the kernel `name`_kernel and a dispatcher
 * `name`, for a kernel returning void with the given parameter list and argument names. */
#ifdef OPTIM_FMA_DISPATCH
#define KERNEL_DISPATCH(name, params, args)                                                        \
    static void name##_plain params { name##_kernel args; }                                        \
    TARGET_FMA static void name##_fma params { name##_kernel args; }                               \
    static void name params {                                                                      \
        if (cpu_has_fma())                                                                         \
            name##_fma args;                                                                       \
        else                                                                                       \
            name##_plain args;                                                                     \
    }
#else
#define KERNEL_DISPATCH(name, params, args)                                                        \
    static void name params { name##_kernel args; }
#endif

/* SGD, per element, with g the gradient (negated if maximize):
 *   g = g + wd·p;  buf = g on the first step, else buf = mom·buf + (1-damp)·g;
 *   g = g + mom·buf (nesterov) or buf;  p = p - lr·g.
 * Rounded as PyTorch's ops: add(alpha) is a fused multiply-add, mul_ rounds on its own.
 * Every kernel below zeroes the gradient it has read when `zero` is set (tg_optim_step):
 * the update and zero_grad in one pass over the memory instead of two. */
typedef struct sgd_consts {
    tg_real wd, mom, keep, neg_lr; /* wd, momentum, 1 - dampening, -lr, rounded once */
    bool decay, momentum, nesterov, maximize;
} sgd_consts;

KERNEL void sgd_tensor_kernel(const sgd_consts *c, tg_real *p, tg_real *grad, tg_real *buf,
                              bool first, int64_t n, bool zero) {
    for (int64_t i = 0; i < n; i++) {
        tg_real g = c->maximize ? -grad[i] : grad[i];
        if (zero) grad[i] = 0;
        if (c->decay) g = FMA(c->wd, p[i], g);
        if (c->momentum) {
            if (first) {
                buf[i] = g; /* a copy of g, with no (1 - dampening) factor */
            } else {
                const tg_real decayed = buf[i] * c->mom;
                buf[i] = FMA(c->keep, g, decayed);
            }
            g = c->nesterov ? FMA(c->mom, buf[i], g) : buf[i];
        }
        p[i] = FMA(c->neg_lr, g, p[i]);
    }
}
KERNEL_DISPATCH(sgd_tensor,
                (const sgd_consts *c, tg_real *p, tg_real *grad, tg_real *buf, bool first,
                 int64_t n, bool zero),
                (c, p, grad, buf, first, n, zero))

/* Adam / AdamW, at step t of this parameter:
 *   AdamW: p = p·(1 - lr·wd);   Adam: g = g + wd·p;
 *   m = β1·m + (1-β1)·g;  v = β2·v + (1-β2)·g²;  v̂ = max(v̂, v) with amsgrad, else v;
 *   p = p - lr/(1-β1^t) · m / (sqrt(v̂)/sqrt(1-β2^t) + eps).
 * The bias corrections are computed in double from the (float) step, as PyTorch's Python
 * code does; eps is added after dividing sqrt(v̂) by sqrt(bc2), not before. */
typedef struct adam_consts {
    tg_real wd, decay, b1, one_minus_b1, b2, one_minus_b2, eps; /* rounded once */
    bool decoupled, l2, maximize;
} adam_consts;

KERNEL void adam_tensor_kernel(const adam_consts *c, tg_real neg_step_size, tg_real bc2_sqrt,
                               tg_real *p, tg_real *grad, tg_real *m, tg_real *v, tg_real *vmax,
                               int64_t n, bool zero) {
    for (int64_t i = 0; i < n; i++) {
        tg_real g = c->maximize ? -grad[i] : grad[i];
        if (zero) grad[i] = 0;
        if (c->decoupled)
            p[i] = p[i] * c->decay;
        else if (c->l2)
            g = FMA(c->wd, p[i], g);
        m[i] = FMA(c->one_minus_b1, g, m[i] * c->b1);
        const tg_real scaled_g = c->one_minus_b2 * g; /* addcmul: value·g rounds first */
        v[i] = FMA(scaled_g, g, v[i] * c->b2);
        tg_real vhat = v[i];
        if (vmax) {
            /* torch.maximum propagates NaN */
            vmax[i] = (isnan(vmax[i]) || isnan(v[i])) ? vmax[i] + v[i]
                      : vmax[i] > v[i]                ? vmax[i]
                                                      : v[i];
            vhat = vmax[i];
        }
        const tg_real denom = SQRT(vhat) / bc2_sqrt + c->eps;
        const tg_real delta = neg_step_size * m[i];
        p[i] = p[i] + delta / denom;
    }
}
KERNEL_DISPATCH(adam_tensor,
                (const adam_consts *c, tg_real neg_step_size, tg_real bc2_sqrt, tg_real *p,
                 tg_real *grad, tg_real *m, tg_real *v, tg_real *vmax, int64_t n, bool zero),
                (c, neg_step_size, bc2_sqrt, p, grad, m, v, vmax, n, zero))

/* ---- the pass ----
 * A step first decides, parameter by parameter, what it does (step counts, bias
 * corrections: struct param_step); then one pass goes over the elements of all parameters
 * as if they were one array, split between the threads (tg_parallel_for) at any element:
 * every element's update reads and writes only that element, so the split changes no bit. */
typedef struct pass_ctx {
    tg_optim *opt;
    sgd_consts sgd;
    adam_consts adam;
    bool zero;
} pass_ctx;

/* Elements per thread below which the pass stays on one thread. */
#define PASS_GRAIN 32768

static void pass_range(int64_t begin, int64_t end, void *p) {
    const pass_ctx *c = p;
    const tg_optim *opt = c->opt;
    /* the first parameter that ends after `begin` (binary search on the offsets) */
    size_t lo = 0, hi = opt->count;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (opt->offset[mid + 1] <= begin)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t k = lo; k < opt->count && opt->offset[k] < end; k++) {
        const struct param_step *ps = &opt->per_param[k];
        if (!ps->active) continue;
        const int64_t i0 = (begin > opt->offset[k] ? begin : opt->offset[k]) - opt->offset[k];
        const int64_t i1 = (end < opt->offset[k + 1] ? end : opt->offset[k + 1]) - opt->offset[k];
        tg_tensor *param = opt->params[k];
        tg_real *pd = param->data + i0, *g = param->grad + i0;
        if (opt->kind == OPTIM_SGD) {
            sgd_tensor(&c->sgd, pd, g, opt->buf[k] ? opt->buf[k]->data + i0 : NULL, ps->first,
                       i1 - i0, c->zero);
        } else {
            adam_tensor(&c->adam, ps->neg_step_size, ps->bc2_sqrt, pd, g, opt->buf[k]->data + i0,
                        opt->sq[k]->data + i0, opt->max_sq[k] ? opt->max_sq[k]->data + i0 : NULL,
                        i1 - i0, c->zero);
        }
    }
}

static void sgd_prepare(tg_optim *opt, double lr, pass_ctx *c) {
    const tg_sgd_options *o = &opt->sgd;
    c->sgd = (sgd_consts){.wd = (tg_real)o->weight_decay,
                          .mom = (tg_real)o->momentum,
                          .keep = (tg_real)(1.0 - o->dampening),
                          .neg_lr = (tg_real)(-lr),
                          .decay = o->weight_decay != 0,
                          .momentum = o->momentum != 0,
                          .nesterov = o->nesterov,
                          .maximize = o->maximize};
    for (size_t k = 0; k < opt->count; k++) {
        struct param_step *ps = &opt->per_param[k];
        ps->active = opt->params[k]->grad != NULL;
        if (!ps->active) continue;
        tg_real *step = opt->step[k]->data;
        ps->first = !(*step > 0); /* no momentum buffer yet */
        *step += 1;
    }
}

static void adam_prepare(tg_optim *opt, double lr, pass_ctx *c) {
    const tg_adam_options *o = &opt->adam;
    c->adam = (adam_consts){.wd = (tg_real)o->weight_decay,
                            .decay = (tg_real)(1.0 - lr * o->weight_decay),
                            .b1 = (tg_real)o->beta1,
                            .one_minus_b1 = (tg_real)(1.0 - o->beta1),
                            .b2 = (tg_real)o->beta2,
                            .one_minus_b2 = (tg_real)(1.0 - o->beta2),
                            .eps = (tg_real)o->eps,
                            .decoupled = opt->kind == OPTIM_ADAMW,
                            .l2 = o->weight_decay != 0,
                            .maximize = o->maximize};
    for (size_t k = 0; k < opt->count; k++) {
        struct param_step *ps = &opt->per_param[k];
        ps->active = opt->params[k]->grad != NULL;
        if (!ps->active) continue;
        tg_real *step_t = opt->step[k]->data;
        *step_t += 1; /* a float tensor in PyTorch too: same rounding beyond 2^24 */
        const double step = (double)*step_t;
        const double bc1 = 1.0 - pow(o->beta1, step);
        const double bc2 = 1.0 - pow(o->beta2, step);
        ps->neg_step_size = (tg_real)(-(lr / bc1));
        ps->bc2_sqrt = (tg_real)sqrt(bc2);
    }
}

static void optim_pass(tg_optim *opt, bool zero) {
    const double lr = real3_get(opt->lr);
    pass_ctx c = {.opt = opt, .zero = zero};
    if (opt->kind == OPTIM_SGD)
        sgd_prepare(opt, lr, &c);
    else
        adam_prepare(opt, lr, &c);
    tg_parallel_for(opt->offset[opt->count], PASS_GRAIN, pass_range, &c);
}

void tg_optim_update(tg_optim *opt) {
    TG_CHECK_ARG(opt);
    optim_pass(opt, false);
}

void tg_optim_zero_grad(tg_optim *opt) {
    TG_CHECK_ARG(opt);
    for (size_t k = 0; k < opt->count; k++) tg_tensor_zero_grad(opt->params[k]);
}

void tg_optim_step(tg_optim *opt) {
    TG_CHECK_ARG(opt);
    optim_pass(opt, true); /* = tg_optim_update, then tg_optim_zero_grad, in one pass */
}

double tg_optim_lr(const tg_optim *opt) {
    TG_CHECK_ARG(opt);
    return real3_get(opt->lr);
}

void tg_optim_set_lr(tg_optim *opt, double lr) {
    TG_CHECK_ARG(opt);
    if (!(lr >= 0)) tg_fail("tg_optim_set_lr: Invalid learning rate: %g", lr);
    real3_set(opt->lr, lr);
}

const char *tg_optim_kind_name(const tg_optim *opt) {
    TG_CHECK_ARG(opt);
    return opt->kind == OPTIM_SGD ? "SGD" : opt->kind == OPTIM_ADAM ? "Adam" : "AdamW";
}

tg_params *tg_optim_state(tg_optim *opt) {
    TG_CHECK_ARG(opt);
    return opt->state;
}

/* ---- clipping ---- */

/* The p-norm of a vector as PyTorch's CPU kernels compute it. Found by experiment against
 * torch.norm on this machine (tens of thousands of vectors, sizes 1 to 100003, no mismatch):
 *  - p = 2, float32: eight lanes (one AVX2 vector) each accumulate x·x with a fused
 *    multiply-add over the whole vectors; the lanes are summed in order; of the tail (< 8
 *    elements), the first 4 are squared, rounded and added when the tail holds at least 4
 *    (the compiler's 4-wide epilogue), the rest fused one by one; then the square root;
 *  - p = 2, float64: one running fused sum of x·x, then the square root;
 *  - p = 1: a running sum of |x|;  other p: a running sum of |x|^p, then ^(1/p);
 *  - p = inf: max |x|, NaN-propagating.
 * It is written as a stream that knows the length up front, so that the norm of the
 * per-tensor norms needs no array: clipping allocates nothing. */
#ifdef TG_DOUBLE
#define NORM_LANES 1
#define NORM_CHUNK 0
#else
#define NORM_LANES 8
#define NORM_CHUNK 4
#endif

typedef struct norm_acc {
    double p;
    int64_t seen;      /* elements added so far */
    int64_t full;      /* elements covered by whole vectors of NORM_LANES */
    int64_t chunk_end; /* tail elements before this index are squared, rounded, added */
    tg_real lane[NORM_LANES];
    tg_real s; /* the running value (for p = 2, after the lanes are folded) */
} norm_acc;

KERNEL void norm_begin(norm_acc *a, double p, int64_t n) {
    memset(a, 0, sizeof *a);
    a->p = p;
    a->full = n - n % NORM_LANES;
    a->chunk_end = a->full + (NORM_CHUNK > 0 && n - a->full >= NORM_CHUNK ? NORM_CHUNK : 0);
}

KERNEL void norm_fold_lanes(norm_acc *a) {
    a->s = a->lane[0];
    for (int j = 1; j < NORM_LANES; j++) a->s = a->s + a->lane[j];
}

KERNEL void norm_add(norm_acc *a, tg_real x) {
    const tg_real ax = (tg_real)fabs((double)x);
    if (isinf(a->p)) {
        a->s = (isnan(ax) || isnan(a->s)) ? ax + a->s : ax > a->s ? ax : a->s;
    } else if (a->p == 2) {
        if (a->seen < a->full) {
            tg_real *l = &a->lane[a->seen % NORM_LANES];
            *l = FMA(x, x, *l);
        } else {
            if (a->seen == a->full) norm_fold_lanes(a);
            if (a->seen < a->chunk_end) {
                const tg_real sq = x * x;
                a->s = a->s + sq;
            } else {
                a->s = FMA(x, x, a->s);
            }
        }
    } else if (a->p == 1) {
        a->s = a->s + ax;
    } else {
        a->s = a->s + POW(ax, (tg_real)a->p);
    }
    a->seen++;
}

KERNEL tg_real norm_end(norm_acc *a) {
    if (isinf(a->p) || a->p == 1) return a->s;
    if (a->p == 2) {
        if (a->seen == a->full) norm_fold_lanes(a); /* no tail */
        return SQRT(a->s);
    }
    return POW(a->s, (tg_real)1 / (tg_real)a->p);
}

KERNEL void norm_tensor_kernel(const tg_real *x, int64_t n, double p, tg_real *out) {
    norm_acc a;
    norm_begin(&a, p, n);
    for (int64_t i = 0; i < n; i++) norm_add(&a, x[i]);
    *out = norm_end(&a);
}
KERNEL_DISPATCH(norm_tensor, (const tg_real *x, int64_t n, double p, tg_real *out), (x, n, p, out))

double tg_clip_grad_norm(const tg_params *params, double max_norm, double norm_type) {
    TG_CHECK_ARG(params);
    if (!(norm_type > 0))
        tg_fail("tg_clip_grad_norm: norm_type must be > 0 or INFINITY, got %g", norm_type);
    if (isnan(max_norm)) tg_fail("tg_clip_grad_norm: max_norm is NaN");
    int64_t k = 0;
    for (size_t i = 0; i < params->count; i++) k += params->tensors[i]->grad != NULL;
    if (k == 0) return 0;
    /* total = norm(stack(per-tensor norms)); for inf PyTorch takes max(stack(maxima)), the
     * same thing */
    norm_acc total_acc;
    norm_begin(&total_acc, norm_type, k);
    for (size_t i = 0; i < params->count; i++) {
        const tg_tensor *t = params->tensors[i];
        if (!t->grad) continue;
        tg_real norm;
        norm_tensor(t->grad, t->numel, norm_type, &norm);
        norm_add(&total_acc, norm);
    }
    const tg_real total = norm_end(&total_acc);
    /* coef = max_norm / (total + 1e-6), where Python's scalar / tensor is reciprocal(t)·scalar;
     * then clamp(max=1), which keeps NaN; applied to every gradient unconditionally */
    const tg_real shifted = total + (tg_real)1e-6;
    const tg_real recip = (tg_real)1 / shifted;
    tg_real coef = recip * (tg_real)max_norm;
    if (coef > 1) coef = 1;
    for (size_t i = 0; i < params->count; i++) {
        tg_tensor *t = params->tensors[i];
        if (!t->grad) continue;
        for (int64_t j = 0; j < t->numel; j++) t->grad[j] = t->grad[j] * coef;
    }
    return (double)total;
}

void tg_clip_grad_value(const tg_params *params, double clip_value) {
    TG_CHECK_ARG(params);
    if (!(clip_value >= 0))
        tg_fail("tg_clip_grad_value: clip_value must be >= 0, got %g", clip_value);
    const tg_real hi = (tg_real)clip_value, lo = -hi;
    for (size_t i = 0; i < params->count; i++) {
        tg_tensor *t = params->tensors[i];
        if (!t->grad) continue;
        for (int64_t j = 0; j < t->numel; j++) {
            const tg_real g = t->grad[j]; /* NaN stays NaN, as torch.clamp */
            t->grad[j] = g < lo ? lo : g > hi ? hi : g;
        }
    }
}
