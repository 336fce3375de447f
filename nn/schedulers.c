/* Learning-rate schedulers: StepLR and CosineAnnealingLR.
 *
 * Both update the optimizer's lr recursively from its current value, in double, exactly as
 * PyTorch's get_lr() does (its closed forms agree only to ~1e-16). The scheduler's own state
 * (last epoch, base lr) lives in tensors, like the optimizer's, so a checkpoint restores it. */
/* The cosine rule ends in ratio·(lr - eta_min) + eta_min: it must round twice, as Python does,
 * even in builds (GNU mode, FMA enabled) where the compiler would fuse it (see nn/optim.c). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#elif defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include "tapegrad/optim.h"

#include "real3.h" /* base_lr as three reals, as the optimizer's lr */

#include <math.h>
#include <stdlib.h>

typedef enum sched_kind { SCHED_STEP, SCHED_COSINE } sched_kind;

struct tg_scheduler {
    sched_kind kind;
    tg_optim *opt;         /* borrowed */
    int64_t step_size;     /* StepLR */
    double gamma;          /* StepLR */
    int64_t t_max;         /* Cosine */
    double eta_min;        /* Cosine */
    tg_tensor *last_epoch; /* () */
    tg_tensor *base_lr;    /* (3,): a double as three reals, as the optimizer's lr */
    tg_params *state;
};

static tg_scheduler *scheduler_new(sched_kind kind, tg_optim *opt, const char *fn) {
    if (!opt) tg_fail_null_argument(fn, "opt");
    tg_scheduler *s = tg_xcalloc(1, sizeof *s);
    s->kind = kind;
    s->opt = opt;
    static const int64_t scalar_shape[1] = {1}; /* unused: 0 dims */
    s->last_epoch = tg_tensor_zeros(0, scalar_shape);
    s->base_lr = tg_tensor_zeros(TG_SHAPE(3));
    s->state = tg_params_new();
    tg_params_add_count(s->state, "sched.last_epoch", s->last_epoch);
    tg_params_add(s->state, "sched.base_lr", s->base_lr);
    /* PyTorch: initial_lr = the group's lr, then step 0 (last_epoch -1 -> 0, lr unchanged). */
    real3_set(s->base_lr, tg_optim_lr(opt));
    s->last_epoch->data[0] = 0;
    return s;
}

tg_scheduler *tg_step_lr_new(tg_optim *opt, int64_t step_size, double gamma) {
    if (step_size < 1)
        tg_fail("tg_step_lr_new: step_size must be >= 1, got %lld", (long long)step_size);
    if (!isfinite(gamma) || gamma < 0)
        tg_fail("tg_step_lr_new: gamma must be finite and >= 0, got %g", gamma);
    tg_scheduler *s = scheduler_new(SCHED_STEP, opt, "tg_step_lr_new");
    s->step_size = step_size;
    s->gamma = gamma;
    return s;
}

tg_scheduler *tg_cosine_annealing_lr_new(tg_optim *opt, int64_t t_max, double eta_min) {
    if (t_max < 1)
        tg_fail("tg_cosine_annealing_lr_new: T_max must be >= 1, got %lld", (long long)t_max);
    if (!isfinite(eta_min) || eta_min < 0)
        tg_fail("tg_cosine_annealing_lr_new: eta_min must be finite and >= 0, got %g", eta_min);
    tg_scheduler *s = scheduler_new(SCHED_COSINE, opt, "tg_cosine_annealing_lr_new");
    s->t_max = t_max;
    s->eta_min = eta_min;
    return s;
}

/* lr at epoch e from lr at e-1 (e >= 1). */
static double next_lr(const tg_scheduler *s, int64_t e, double lr) {
    if (s->kind == SCHED_STEP) return e % s->step_size == 0 ? lr * s->gamma : lr;
    const double pi = 3.14159265358979323846; /* Python's math.pi */
    const double t = (double)s->t_max, base = real3_get(s->base_lr);
    /* (e - 1 - T) % 2T == 0 in Python's floor modulo: the epochs T+1, 3T+1, ... where the
     * ratio form below would divide by 1 + cos(π·(2k+1)) = 0; PyTorch adds the step instead. */
    int64_t r = (e - 1 - s->t_max) % (2 * s->t_max);
    if (r < 0) r += 2 * s->t_max;
    if (r == 0) return lr + (base - s->eta_min) * (1 - cos(pi / t)) / 2;
    return (1 + cos(pi * (double)e / t)) / (1 + cos(pi * (double)(e - 1) / t)) * (lr - s->eta_min) +
           s->eta_min;
}

void tg_scheduler_step(tg_scheduler *s) {
    TG_CHECK_ARG(s);
    const int64_t e = (int64_t)s->last_epoch->data[0] + 1;
    tg_optim_set_lr(s->opt, next_lr(s, e, tg_optim_lr(s->opt)));
    s->last_epoch->data[0] = (tg_real)e;
}

double tg_scheduler_last_lr(const tg_scheduler *s) {
    TG_CHECK_ARG(s);
    return tg_optim_lr(s->opt);
}

int64_t tg_scheduler_last_epoch(const tg_scheduler *s) {
    TG_CHECK_ARG(s);
    return (int64_t)s->last_epoch->data[0];
}

tg_params *tg_scheduler_state(tg_scheduler *s) {
    TG_CHECK_ARG(s);
    return s->state;
}

void tg_scheduler_free(tg_scheduler *s) {
    if (!s) return;
    tg_tensor_free(s->last_epoch);
    tg_tensor_free(s->base_lr);
    tg_params_free(s->state);
    free(s);
}
