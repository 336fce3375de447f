/* Optimizers, clipping and schedulers: hand-computed steps for every optimizer and option,
 * option errors, state save/restore (through the state tensors and through a checkpoint file)
 * continuing bit-identically, and PyTorch parity on the fixture problem (Linear(4,3) + MSE,
 * 20 steps with clip_grad_norm_(0.5), or clip_grad_value_ in two cases, before each step). */
#include "harness.h"

#include <tapegrad/kernels.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Tight tolerance for hand-computed values: float32 rounding of a few operations. */
#ifdef TG_DOUBLE
#define HAND_TOL 1e-13
#else
#define HAND_TOL 2e-7
#endif

static tg_tensor *make_param(tg_params *ps, const char *name, int n, const tg_real *values) {
    tg_tensor *t = tg_tensor_requires_grad(tg_tensor_from_array(TG_SHAPE(n), values), true);
    tg_params_add(ps, name, t);
    return t;
}

static void set_grad(tg_tensor *t, const tg_real *g) {
    if (!t->grad) t->grad = tg_xcalloc((size_t)t->numel, sizeof(tg_real));
    memcpy(t->grad, g, (size_t)t->numel * sizeof(tg_real));
}

static void free_params(tg_params *ps) {
    for (size_t i = 0; i < ps->count; i++) tg_tensor_free(ps->tensors[i]);
    tg_params_free(ps);
}

static void assert_near(const char *what, const tg_real *got, const double *want, int64_t n) {
    tg_test_assert_close_f64(what, got, want, n, HAND_TOL, HAND_TOL);
}

/* ---------------------------------------------------------------------------------------
 * options and errors */

static void test_defaults(void **state) {
    (void)state;
    const tg_sgd_options s = tg_sgd_defaults(0.5);
    assert_true(s.lr == 0.5 && s.momentum == 0 && s.dampening == 0 && s.weight_decay == 0);
    assert_false(s.nesterov || s.maximize);
    const tg_adam_options a = tg_adam_defaults();
    assert_true(a.lr == 1e-3 && a.beta1 == 0.9 && a.beta2 == 0.999 && a.eps == 1e-8);
    assert_true(a.weight_decay == 0 && !a.amsgrad && !a.maximize);
    const tg_adam_options w = tg_adamw_defaults();
    assert_true(w.lr == 1e-3 && w.weight_decay == 1e-2 && w.beta2 == 0.999);

    /* NULL options are the defaults for Adam/AdamW */
    tg_params *ps = tg_params_new();
    make_param(ps, "w", 2, (tg_real[]){1, 2});
    tg_optim *adam = tg_adam_new(ps, NULL), *adamw = tg_adamw_new(ps, NULL);
    assert_string_equal(tg_optim_kind_name(adam), "Adam");
    assert_string_equal(tg_optim_kind_name(adamw), "AdamW");
    assert_true(tg_optim_lr(adam) == 1e-3);
    tg_optim_set_lr(adam, 0.1 / 3); /* not a float: kept exactly even in float32 */
    assert_true(tg_optim_lr(adam) == 0.1 / 3);
    tg_optim_free(adam);
    tg_optim_free(adamw);
    tg_optim *sgd = tg_sgd_new(ps, &s);
    assert_string_equal(tg_optim_kind_name(sgd), "SGD");
    tg_optim_free(sgd);
    tg_optim_free(NULL);
    free_params(ps);
}

static void expect_sgd_error(tg_sgd_options o, const char *fragment) {
    assert_int_equal(tg_sgd_options_check(&o), TG_ERR_ARGUMENT);
    if (!strstr(tg_error_message(), fragment))
        fail_msg("message '%s' lacks '%s'", tg_error_message(), fragment);
}

static void expect_adam_error(tg_adam_options o, const char *fragment) {
    assert_int_equal(tg_adam_options_check(&o), TG_ERR_ARGUMENT);
    if (!strstr(tg_error_message(), fragment))
        fail_msg("message '%s' lacks '%s'", tg_error_message(), fragment);
}

static void test_option_errors(void **state) {
    (void)state;
    tg_sgd_options s = tg_sgd_defaults(0.1);
    assert_int_equal(tg_sgd_options_check(&s), TG_OK);
    expect_sgd_error(tg_sgd_defaults(-1), "Invalid learning rate: -1");
    expect_sgd_error(tg_sgd_defaults(NAN), "Invalid learning rate");
    s = tg_sgd_defaults(0.1), s.momentum = -0.5;
    expect_sgd_error(s, "Invalid momentum value: -0.5");
    s = tg_sgd_defaults(0.1), s.weight_decay = -1;
    expect_sgd_error(s, "Invalid weight_decay value");
    s = tg_sgd_defaults(0.1), s.nesterov = true; /* no momentum */
    expect_sgd_error(s, "Nesterov momentum requires a momentum and zero dampening");
    s.momentum = 0.9, s.dampening = 0.1;
    expect_sgd_error(s, "Nesterov momentum requires");
    s.dampening = 0;
    assert_int_equal(tg_sgd_options_check(&s), TG_OK);
    assert_int_equal(tg_sgd_options_check(NULL), TG_ERR_ARGUMENT);

    tg_adam_options a = tg_adam_defaults();
    assert_int_equal(tg_adam_options_check(&a), TG_OK);
    a.lr = -0.1;
    expect_adam_error(a, "Invalid learning rate: -0.1");
    a = tg_adam_defaults(), a.eps = -1e-8;
    expect_adam_error(a, "Invalid epsilon value");
    a = tg_adam_defaults(), a.beta1 = 1;
    expect_adam_error(a, "Invalid beta parameter at index 0: 1");
    a = tg_adam_defaults(), a.beta2 = -0.1;
    expect_adam_error(a, "Invalid beta parameter at index 1");
    a = tg_adam_defaults(), a.weight_decay = -0.01;
    expect_adam_error(a, "Invalid weight_decay value");

    /* the constructors stop on the same errors (programming misuse) */
    tg_params *ps = tg_params_new();
    tg_tensor *w = make_param(ps, "w", 2, (tg_real[]){1, 2});
    s = tg_sgd_defaults(0.1), s.nesterov = true;
    TG_EXPECT_FAIL(tg_sgd_new(ps, &s), "tg_sgd_new", "Nesterov");
    TG_EXPECT_FAIL(tg_sgd_new(ps, NULL), "tg_sgd_new", "lr is required");
    a = tg_adamw_defaults(), a.beta2 = 1.5;
    TG_EXPECT_FAIL(tg_adamw_new(ps, &a), "tg_adamw_new", "beta parameter at index 1");
    TG_EXPECT_FAIL(tg_adam_new(NULL, NULL), "tg_adam_new", "params is NULL");
    tg_optim *volatile opt = tg_adam_new(ps, NULL); /* volatile: used across setjmp */
    TG_EXPECT_FAIL(tg_optim_set_lr(opt, -1), "tg_optim_set_lr", "Invalid learning rate");
    tg_optim_free(opt);
    /* one tensor under two names would be updated twice */
    tg_params *dup = tg_params_new();
    tg_params_add(dup, "a", w);
    tg_params_add(dup, "b", w);
    TG_EXPECT_FAIL(tg_adam_new(dup, NULL), "tg_adam_new", "'b' appears twice", "'a'");
    tg_params_free(dup);
    /* clipping and schedulers */
    TG_EXPECT_FAIL(tg_clip_grad_norm(ps, 1.0, 0), "tg_clip_grad_norm", "norm_type");
    TG_EXPECT_FAIL(tg_clip_grad_norm(ps, NAN, 2), "tg_clip_grad_norm", "max_norm");
    TG_EXPECT_FAIL(tg_clip_grad_value(ps, -1), "tg_clip_grad_value", ">= 0");
    opt = tg_adam_new(ps, NULL);
    TG_EXPECT_FAIL(tg_step_lr_new(opt, 0, 0.1), "tg_step_lr_new", "step_size");
    TG_EXPECT_FAIL(tg_cosine_annealing_lr_new(opt, 0, 0), "tg_cosine_annealing_lr_new", "T_max");
    TG_EXPECT_FAIL(tg_cosine_annealing_lr_new(opt, 5, -1), "tg_cosine_annealing_lr_new", "eta_min");
    tg_optim_free(opt);
    free_params(ps);
}

/* ---------------------------------------------------------------------------------------
 * SGD by hand: p = [1, 2, -3], g = [0.5, -1, 2] every step */

static const tg_real P0[3] = {1, 2, -3}, G0[3] = {0.5, -1, 2};

/* Runs `steps` SGD steps with gradient G0 each time; returns the parameter values. */
static void run_sgd(const tg_sgd_options *o, int steps, tg_real out[3]) {
    tg_params *ps = tg_params_new();
    tg_tensor *p = make_param(ps, "p", 3, P0);
    tg_optim *opt = tg_sgd_new(ps, o);
    for (int s = 0; s < steps; s++) {
        set_grad(p, G0);
        tg_optim_step(opt);
        for (int i = 0; i < 3; i++) assert_true(p->grad[i] == 0); /* step zeroes the grads */
    }
    memcpy(out, p->data, sizeof(tg_real) * 3);
    tg_optim_free(opt);
    free_params(ps);
}

static void test_sgd_by_hand(void **state) {
    (void)state;
    tg_real got[3];
    double want[3];
    const double lr = 0.1;

    /* plain: p - lr·g */
    tg_sgd_options o = tg_sgd_defaults(lr);
    run_sgd(&o, 1, got);
    assert_near("sgd plain", got, (double[]){0.95, 2.1, -3.2}, 3);

    /* maximize: p + lr·g */
    o.maximize = true;
    run_sgd(&o, 1, got);
    assert_near("sgd maximize", got, (double[]){1.05, 1.9, -2.8}, 3);

    /* weight decay 0.1: g' = g + 0.1·p */
    o = tg_sgd_defaults(lr), o.weight_decay = 0.1;
    run_sgd(&o, 1, got);
    for (int i = 0; i < 3; i++) want[i] = P0[i] - lr * (G0[i] + 0.1 * P0[i]);
    assert_near("sgd weight decay", got, want, 3);

    /* momentum 0.9: step 1 buf = g (copied, no dampening), step 2 buf = 0.9 g + g = 1.9 g */
    o = tg_sgd_defaults(lr), o.momentum = 0.9;
    run_sgd(&o, 2, got);
    for (int i = 0; i < 3; i++) want[i] = P0[i] - lr * G0[i] - lr * 1.9 * G0[i];
    assert_near("sgd momentum, 2 steps", got, want, 3);

    /* dampening 0.5: the first step still copies g; step 2 buf = 0.9 g + 0.5 g = 1.4 g */
    o.dampening = 0.5;
    run_sgd(&o, 2, got);
    for (int i = 0; i < 3; i++) want[i] = P0[i] - lr * G0[i] - lr * 1.4 * G0[i];
    assert_near("sgd dampening, 2 steps", got, want, 3);

    /* nesterov: step 1 buf = g, update g + 0.9 g = 1.9 g; step 2 buf = 1.9 g, update
     * g + 0.9·1.9 g = 2.71 g */
    o = tg_sgd_defaults(lr), o.momentum = 0.9, o.nesterov = true;
    run_sgd(&o, 2, got);
    for (int i = 0; i < 3; i++) want[i] = P0[i] - lr * 1.9 * G0[i] - lr * 2.71 * G0[i];
    assert_near("sgd nesterov, 2 steps", got, want, 3);

    /* momentum + weight decay: step 1 d1 = g + wd p0, buf = d1, p1 = p0 - lr d1;
     * step 2 d2 = g + wd p1, buf = 0.9 d1 + d2, p2 = p1 - lr buf */
    o = tg_sgd_defaults(lr), o.momentum = 0.9, o.weight_decay = 0.01;
    run_sgd(&o, 2, got);
    for (int i = 0; i < 3; i++) {
        const double d1 = G0[i] + 0.01 * P0[i], p1 = P0[i] - lr * d1;
        const double d2 = G0[i] + 0.01 * p1;
        want[i] = p1 - lr * (0.9 * d1 + d2);
    }
    assert_near("sgd momentum + weight decay", got, want, 3);
}

/* ---------------------------------------------------------------------------------------
 * Adam / AdamW by hand */

typedef struct adam_ref {
    double p, m, v, vmax;
    int t;
} adam_ref;

/* The textbook formulas in double, one element. */
static void adam_ref_step(adam_ref *r, double g, const tg_adam_options *o, bool decoupled) {
    r->t++;
    if (o->maximize) g = -g;
    if (decoupled)
        r->p *= 1 - o->lr * o->weight_decay;
    else
        g += o->weight_decay * r->p;
    r->m = o->beta1 * r->m + (1 - o->beta1) * g;
    r->v = o->beta2 * r->v + (1 - o->beta2) * g * g;
    r->vmax = fmax(r->vmax, r->v);
    const double vh = o->amsgrad ? r->vmax : r->v;
    const double bc1 = 1 - pow(o->beta1, r->t), bc2 = 1 - pow(o->beta2, r->t);
    r->p -= o->lr / bc1 * r->m / (sqrt(vh) / sqrt(bc2) + o->eps);
}

/* Three steps with the gradients grads[step][i] on p = P0, compared with the reference. */
static void check_adam(const char *what, const tg_adam_options *o, bool decoupled,
                       const tg_real grads[3][3]) {
    tg_params *ps = tg_params_new();
    tg_tensor *p = make_param(ps, "p", 3, P0);
    tg_optim *opt = decoupled ? tg_adamw_new(ps, o) : tg_adam_new(ps, o);
    adam_ref ref[3];
    for (int i = 0; i < 3; i++) ref[i] = (adam_ref){.p = P0[i]};
    for (int s = 0; s < 3; s++) {
        set_grad(p, grads[s]);
        tg_optim_step(opt);
        double want[3];
        for (int i = 0; i < 3; i++) {
            adam_ref_step(&ref[i], grads[s][i], o, decoupled);
            want[i] = ref[i].p;
        }
        char label[128];
        snprintf(label, sizeof label, "%s, step %d", what, s + 1);
        /* the update is a small difference of O(1) numbers: compare absolutely */
        tg_test_assert_close_f64(label, p->data, want, 3, HAND_TOL * 4, 0);
    }
    tg_optim_free(opt);
    free_params(ps);
}

static void test_adam_by_hand(void **state) {
    (void)state;
    /* step 1 moves each element by lr·g/(|g| + eps) ~ lr·sign(g), whatever the scale */
    tg_params *ps = tg_params_new();
    tg_tensor *p = make_param(ps, "p", 3, P0);
    tg_adam_options o = tg_adam_defaults();
    o.lr = 0.01;
    tg_optim *opt = tg_adam_new(ps, &o);
    set_grad(p, G0);
    tg_optim_step(opt);
    double want[3];
    for (int i = 0; i < 3; i++) want[i] = P0[i] - 0.01 * G0[i] / (fabs(G0[i]) + 1e-8);
    assert_near("adam step 1", p->data, want, 3);
    assert_true(p->grad[0] == 0 && p->grad[2] == 0);
    tg_optim_free(opt);
    free_params(ps);

    /* a gradient that shrinks (so that amsgrad's running max matters) and changes sign */
    const tg_real grads[3][3] = {{1, -2, 0.5}, {0.1, -0.2, -0.5}, {0.01, 0.3, 0.05}};
    o = tg_adam_defaults(), o.lr = 0.01, o.beta2 = 0.9;
    check_adam("adam", &o, false, grads);
    o.amsgrad = true;
    check_adam("adam amsgrad", &o, false, grads);
    o.amsgrad = false, o.weight_decay = 0.1;
    check_adam("adam L2", &o, false, grads);
    o.maximize = true;
    check_adam("adam maximize", &o, false, grads);
    o = tg_adamw_defaults(), o.lr = 0.01;
    check_adam("adamw", &o, true, grads);
    o.weight_decay = 0.5, o.amsgrad = true, o.beta2 = 0.9, o.eps = 1e-3;
    check_adam("adamw amsgrad wd 0.5 eps 1e-3", &o, true, grads);

    /* amsgrad really differs from plain Adam on a shrinking gradient */
    tg_real plain[3], ams[3];
    for (int k = 0; k < 2; k++) {
        tg_params *q = tg_params_new();
        tg_tensor *t = make_param(q, "p", 3, P0);
        tg_adam_options a = tg_adam_defaults();
        a.beta2 = 0.9, a.amsgrad = k == 1;
        tg_optim *op = tg_adam_new(q, &a);
        for (int s = 0; s < 3; s++) set_grad(t, grads[s]), tg_optim_step(op);
        memcpy(k ? ams : plain, t->data, sizeof plain);
        /* max_exp_avg_sq >= exp_avg_sq, and equal to the first step's v for element 0 */
        if (k == 1) {
            const tg_params *st = tg_optim_state(op);
            const tg_tensor *v = tg_params_find(st, "optim.exp_avg_sq.p");
            const tg_tensor *vmax = tg_params_find(st, "optim.max_exp_avg_sq.p");
            for (int i = 0; i < 3; i++) assert_true(vmax->data[i] >= v->data[i]);
            assert_true(fabs((double)vmax->data[0] - 0.1) < 1e-7);
        }
        tg_optim_free(op);
        free_params(q);
    }
    assert_true(plain[0] != ams[0]);
}

/* Parameters without a gradient are skipped, and their own step count stays behind: a
 * parameter first updated at global step 3 gets the bias correction of its step 1. */
static void test_skip_params_without_grad(void **state) {
    (void)state;
    tg_params *ps = tg_params_new();
    tg_tensor *a = make_param(ps, "a", 3, P0);
    tg_tensor *b = make_param(ps, "b", 3, P0);
    tg_tensor *fresh = make_param(ps, "fresh", 3, P0); /* reference: only ever stepped once */
    tg_adam_options o = tg_adam_defaults();
    o.lr = 0.01;
    tg_optim *opt = tg_adam_new(ps, &o);
    for (int s = 0; s < 2; s++) {
        set_grad(a, G0);
        tg_optim_step(opt); /* b and fresh have grad NULL: untouched */
        assert_memory_equal(b->data, P0, sizeof P0);
    }
    const tg_tensor *step_a = tg_params_find(tg_optim_state(opt), "optim.step.a");
    const tg_tensor *step_b = tg_params_find(tg_optim_state(opt), "optim.step.b");
    assert_true(step_a->data[0] == 2 && step_b->data[0] == 0);
    set_grad(b, G0);
    tg_optim_step(opt); /* a has a zeroed gradient now: it still steps (momentum) */
    assert_true(step_a->data[0] == 3 && step_b->data[0] == 1);
    tg_real b_after[3];
    memcpy(b_after, b->data, sizeof b_after);
    free(b->grad), b->grad = NULL;
    set_grad(fresh, G0);
    tg_optim_update(opt);
    assert_memory_equal(b_after, fresh->data, sizeof P0); /* b's first step == fresh's */
    assert_memory_equal(b_after, b->data, sizeof P0);     /* b skipped again */
    assert_true(fresh->grad[0] == G0[0]);                 /* update alone keeps the grads */
    tg_optim_zero_grad(opt);
    assert_true(fresh->grad[0] == 0 && a->grad[0] == 0);

    /* SGD with momentum: a parameter's first step copies its gradient into the buffer even if
     * other parameters already have buffers */
    tg_sgd_options s = tg_sgd_defaults(0.1);
    s.momentum = 0.9;
    tg_optim *sgd = tg_sgd_new(ps, &s);
    tg_tensor_copy_from(a, P0), tg_tensor_copy_from(b, P0);
    free(b->grad), b->grad = NULL;
    set_grad(a, G0);
    tg_optim_step(sgd);
    set_grad(a, G0), set_grad(b, G0);
    tg_optim_step(sgd);
    double want_a[3], want_b[3];
    for (int i = 0; i < 3; i++) {
        want_a[i] = P0[i] - 0.1 * G0[i] - 0.1 * 1.9 * G0[i];
        want_b[i] = P0[i] - 0.1 * G0[i];
    }
    assert_near("sgd a", a->data, want_a, 3);
    assert_near("sgd b (first step)", b->data, want_b, 3);
    tg_optim_free(sgd);
    tg_optim_free(opt);
    free_params(ps);
}

/* ---------------------------------------------------------------------------------------
 * state: names, stability, save/restore */

static void assert_names(const tg_params *st, const char *const *names) {
    size_t n = 0;
    while (names[n]) n++;
    if (st->count != n) fail_msg("state has %zu entries, want %zu", st->count, n);
    for (size_t i = 0; i < n; i++) assert_string_equal(st->names[i], names[i]);
}

static void test_state_names(void **state) {
    (void)state;
    tg_params *ps = tg_params_new();
    make_param(ps, "fc.weight", 2, (tg_real[]){1, 2});
    make_param(ps, "fc.bias", 1, (tg_real[]){3});
    tg_sgd_options s = tg_sgd_defaults(0.1);
    tg_optim *o1 = tg_sgd_new(ps, &s);
    assert_names(tg_optim_state(o1),
                 (const char *[]){"optim.lr", "optim.step.fc.weight", "optim.step.fc.bias", NULL});
    s.momentum = 0.9;
    tg_optim *o2 = tg_sgd_new(ps, &s);
    assert_names(tg_optim_state(o2),
                 (const char *[]){"optim.lr", "optim.step.fc.weight",
                                  "optim.momentum_buffer.fc.weight", "optim.step.fc.bias",
                                  "optim.momentum_buffer.fc.bias", NULL});
    tg_adam_options a = tg_adam_defaults();
    a.amsgrad = true;
    tg_optim *o3 = tg_adamw_new(ps, &a);
    assert_names(tg_optim_state(o3),
                 (const char *[]){"optim.lr", "optim.step.fc.weight", "optim.exp_avg.fc.weight",
                                  "optim.exp_avg_sq.fc.weight", "optim.max_exp_avg_sq.fc.weight",
                                  "optim.step.fc.bias", "optim.exp_avg.fc.bias",
                                  "optim.exp_avg_sq.fc.bias", "optim.max_exp_avg_sq.fc.bias",
                                  NULL});
    /* shapes: step is a scalar, buffers have the parameter's shape, lr is (3,) */
    const tg_params *st = tg_optim_state(o3);
    assert_int_equal(st->tensors[0]->numel, 3);
    assert_int_equal(st->tensors[1]->ndim, 0);
    assert_int_equal(st->tensors[2]->numel, 2);
    tg_scheduler *sch = tg_step_lr_new(o3, 2, 0.5);
    assert_names(tg_scheduler_state(sch),
                 (const char *[]){"sched.last_epoch", "sched.base_lr", NULL});
    tg_scheduler_free(sch);
    tg_optim_free(o1), tg_optim_free(o2), tg_optim_free(o3);
    free_params(ps);
}

/* Deterministic pseudo-random gradients. */
static void fill_grads(const tg_params *ps, int step) {
    for (size_t k = 0; k < ps->count; k++) {
        tg_tensor *t = ps->tensors[k];
        if (!t->grad) t->grad = tg_xcalloc((size_t)t->numel, sizeof(tg_real));
        for (int64_t i = 0; i < t->numel; i++)
            t->grad[i] = (tg_real)sin(1.7 * (double)(step + 1) + 0.37 * (double)i + (double)k) *
                         (tg_real)(1.0 / (1 + step % 3));
    }
}

static tg_params *make_model(void) {
    tg_params *ps = tg_params_new();
    tg_tensor *w = tg_test_rand(11, -1, 1, TG_SHAPE(3, 5));
    tg_tensor *b = tg_test_rand(12, -1, 1, TG_SHAPE(5));
    tg_params_add(ps, "w", tg_tensor_requires_grad(w, true));
    tg_params_add(ps, "b", tg_tensor_requires_grad(b, true));
    return ps;
}

typedef enum { K_SGD, K_ADAM, K_ADAMW } kind;

typedef struct optim_case {
    const char *name;
    kind k;
    tg_sgd_options sgd;
    tg_adam_options adam;
} optim_case;

static tg_optim *case_new(const optim_case *c, const tg_params *ps) {
    switch (c->k) {
    case K_SGD:
        return tg_sgd_new(ps, &c->sgd);
    case K_ADAM:
        return tg_adam_new(ps, &c->adam);
    default:
        return tg_adamw_new(ps, &c->adam);
    }
}

static size_t make_cases(optim_case *cs) {
    size_t n = 0;
    cs[n++] = (optim_case){"sgd", K_SGD, tg_sgd_defaults(0.1), tg_adam_defaults()};
    cs[n] = (optim_case){"sgd momentum dampening", K_SGD, tg_sgd_defaults(0.1), tg_adam_defaults()};
    cs[n].sgd.momentum = 0.9, cs[n].sgd.dampening = 0.2, cs[n].sgd.weight_decay = 0.01, n++;
    cs[n] = (optim_case){"sgd nesterov", K_SGD, tg_sgd_defaults(0.05), tg_adam_defaults()};
    cs[n].sgd.momentum = 0.8, cs[n].sgd.nesterov = true, n++;
    cs[n] = (optim_case){"adam amsgrad", K_ADAM, tg_sgd_defaults(0), tg_adam_defaults()};
    cs[n].adam.amsgrad = true, cs[n].adam.beta2 = 0.9, cs[n].adam.weight_decay = 0.01, n++;
    cs[n] = (optim_case){"adamw", K_ADAMW, tg_sgd_defaults(0), tg_adamw_defaults()};
    cs[n].adam.lr = 0.01, n++;
    return n;
}

/* Copies every state tensor of `from` into `to` by name (as a checkpoint load would). */
static void copy_state(const tg_params *from, tg_params *to) {
    assert_int_equal(from->count, to->count);
    for (size_t i = 0; i < to->count; i++) {
        const tg_tensor *src = tg_params_find(from, to->names[i]);
        assert_non_null(src);
        assert_true(tg_shape_equal(src, to->tensors[i]));
        tg_tensor_copy_from(to->tensors[i], src->data);
    }
}

static void assert_same_params(const char *what, const tg_params *a, const tg_params *b) {
    for (size_t i = 0; i < a->count; i++)
        if (memcmp(a->tensors[i]->data, b->tensors[i]->data,
                   (size_t)a->tensors[i]->numel * sizeof(tg_real)) != 0)
            fail_msg("%s: '%s' differs", what, a->names[i]);
}

/* tg_optim_step is tg_optim_update then tg_optim_zero_grad in one pass over all parameters,
 * split between threads at any element: the same bits at 1 and 2 threads as the two calls,
 * for every kind, on parameters big enough to be split (and one without a gradient). */
static void test_fused_step_matches_update_then_zero(void **state) {
    (void)state;
    optim_case cs[8];
    const size_t n_cases = make_cases(cs);
    for (size_t ci = 0; ci < n_cases; ci++) {
        tg_params *ps[3];
        tg_optim *opt[3];
        for (int r = 0; r < 3; r++) {
            ps[r] = tg_params_new();
            tg_params_add(
                ps[r], "big",
                tg_tensor_requires_grad(tg_test_rand(21, -1, 1, TG_SHAPE(300, 170)), true));
            tg_params_add(ps[r], "idle",
                          tg_tensor_requires_grad(tg_test_rand(22, -1, 1, TG_SHAPE(7)), true));
            tg_params_add(ps[r], "small",
                          tg_tensor_requires_grad(tg_test_rand(23, -1, 1, TG_SHAPE(40001)), true));
            opt[r] = case_new(&cs[ci], ps[r]);
        }
        for (int step = 0; step < 3; step++) {
            for (int r = 0; r < 3; r++) {
                fill_grads(ps[r], step);
                free(ps[r]->tensors[1]->grad), ps[r]->tensors[1]->grad = NULL;
            }
            tg_optim_update(opt[0]); /* reference: two passes, serial */
            tg_optim_zero_grad(opt[0]);
            for (int r = 1; r < 3; r++) {
                tg_set_num_threads(r);
                tg_optim_step(opt[r]);
            }
            tg_set_num_threads(0);
            for (int r = 1; r < 3; r++) {
                assert_same_params(cs[ci].name, ps[0], ps[r]);
                assert_same_params(cs[ci].name, tg_optim_state(opt[0]), tg_optim_state(opt[r]));
                for (size_t k = 0; k < ps[r]->count; k += 2)
                    for (int64_t i = 0; i < ps[r]->tensors[k]->numel; i++)
                        assert_true(ps[r]->tensors[k]->grad[i] == 0);
            }
        }
        for (int r = 0; r < 3; r++) {
            tg_optim_free(opt[r]);
            free_params(ps[r]);
        }
    }
}

/* Run A for `split` steps; build B, copy A's parameters, optimizer state and scheduler state
 * into B through the state tensors; run both on; they must stay bit-identical. Done at
 * split 0 (no momentum buffer yet), 1 (just created) and 4. */
static void test_state_restore_continues(void **state) {
    (void)state;
    optim_case cs[8];
    const size_t n = make_cases(cs);
    for (size_t c = 0; c < n; c++) {
        for (int split = 0; split <= 4; split += split == 0 ? 1 : 3) {
            tg_params *pa = make_model(), *pb = make_model();
            tg_optim *oa = case_new(&cs[c], pa);
            tg_scheduler *sa = tg_cosine_annealing_lr_new(oa, 3, 0.001);
            for (int s = 0; s < split; s++) {
                fill_grads(pa, s);
                tg_optim_step(oa);
                tg_scheduler_step(sa);
            }
            /* B starts from different values (another run), then takes A's */
            tg_optim *ob = case_new(&cs[c], pb);
            tg_optim_set_lr(ob, 123);
            tg_scheduler *sb = tg_cosine_annealing_lr_new(ob, 3, 0.001);
            fill_grads(pb, 7);
            tg_optim_step(ob);
            tg_scheduler_step(sb);
            copy_state(pa, pb);
            copy_state(tg_optim_state(oa), tg_optim_state(ob));
            copy_state(tg_scheduler_state(sa), tg_scheduler_state(sb));
            assert_true(tg_optim_lr(oa) == tg_optim_lr(ob));
            for (int s = split; s < split + 6; s++) {
                fill_grads(pa, s), fill_grads(pb, s);
                tg_optim_step(oa), tg_optim_step(ob);
                tg_scheduler_step(sa), tg_scheduler_step(sb);
                char what[96];
                snprintf(what, sizeof what, "%s, split %d, step %d", cs[c].name, split, s);
                assert_same_params(what, pa, pb);
                assert_true(tg_scheduler_last_lr(sa) == tg_scheduler_last_lr(sb));
                assert_int_equal(tg_scheduler_last_epoch(sa), tg_scheduler_last_epoch(sb));
            }
            tg_scheduler_free(sa), tg_scheduler_free(sb);
            tg_optim_free(oa), tg_optim_free(ob);
            free_params(pa), free_params(pb);
        }
    }
}

/* State tensors are allocated once: their data pointers do not move across steps. */
static void test_state_is_stable(void **state) {
    (void)state;
    tg_params *ps = make_model();
    tg_adam_options a = tg_adam_defaults();
    a.amsgrad = true;
    tg_optim *opt = tg_adam_new(ps, &a);
    const tg_params *st = tg_optim_state(opt);
    tg_real *ptrs[16];
    for (size_t i = 0; i < st->count; i++) ptrs[i] = st->tensors[i]->data;
    for (int s = 0; s < 3; s++) fill_grads(ps, s), tg_optim_step(opt);
    for (size_t i = 0; i < st->count; i++) assert_ptr_equal(ptrs[i], st->tensors[i]->data);
    tg_optim_free(opt);
    free_params(ps);
}

/* The same through a real checkpoint file (tg_params_save / tg_params_load), model and
 * optimizer and scheduler state in one file, with an lr that float32 cannot hold. */
static void test_checkpoint_resume(void **state) {
    (void)state;
    char dir[] = "/tmp/tg_optim_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    optim_case cs[8];
    const size_t n = make_cases(cs);
    for (size_t c = 0; c < n; c++) {
        tg_params *pa = make_model(), *pb = make_model();
        tg_optim *oa = case_new(&cs[c], pa);
        tg_optim_set_lr(oa, tg_optim_lr(oa) / 3);
        tg_scheduler *sa = tg_step_lr_new(oa, 2, 0.7);
        for (int s = 0; s < 3; s++) fill_grads(pa, s), tg_optim_step(oa), tg_scheduler_step(sa);
        tg_params *ck = tg_params_new();
        tg_params_extend(ck, NULL, pa);
        tg_params_extend(ck, NULL, tg_optim_state(oa));
        tg_params_extend(ck, NULL, tg_scheduler_state(sa));
        if (tg_params_save(ck, path) != TG_OK) fail_msg("save: %s", tg_error_message());

        tg_optim *ob = case_new(&cs[c], pb);
        tg_scheduler *sb = tg_step_lr_new(ob, 2, 0.7);
        tg_params *ckb = tg_params_new();
        tg_params_extend(ckb, NULL, pb);
        tg_params_extend(ckb, NULL, tg_optim_state(ob));
        tg_params_extend(ckb, NULL, tg_scheduler_state(sb));
        if (tg_params_load(ckb, path, false) != TG_OK) fail_msg("load: %s", tg_error_message());
        assert_true(tg_optim_lr(ob) == tg_optim_lr(oa)); /* bit for bit, as a double */
        for (int s = 3; s < 8; s++) {
            fill_grads(pa, s), fill_grads(pb, s);
            tg_optim_step(oa), tg_optim_step(ob);
            tg_scheduler_step(sa), tg_scheduler_step(sb);
            assert_same_params(cs[c].name, pa, pb);
            assert_true(tg_optim_lr(ob) == tg_optim_lr(oa));
        }
        tg_params_free(ck), tg_params_free(ckb);
        tg_scheduler_free(sa), tg_scheduler_free(sb);
        tg_optim_free(oa), tg_optim_free(ob);
        free_params(pa), free_params(pb);
    }
    unlink(path);
    rmdir(dir);
}

/* A checkpoint whose optimizer state cannot be right is refused, naming the tensor, and
 * nothing is loaded: a NaN moment (unless allow_nonfinite), a step count that is negative,
 * NaN or not an integer (always), a scheduler epoch likewise. Each case saves a trained Adam
 * (model + state) with one value spoiled and loads it into a fresh one. */
typedef struct spoiled {
    const char *tensor; /* state entry to spoil (element 0) */
    double value;
    const char *fragment;
} spoiled;

static void expect_state_refused(const char *path, const spoiled *sp, bool allow_nonfinite) {
    tg_params *pa = make_model(), *pb = make_model();
    tg_optim *oa = tg_adam_new(pa, NULL), *ob = tg_adam_new(pb, NULL);
    tg_scheduler *sa = tg_step_lr_new(oa, 2, 0.5), *sb = tg_step_lr_new(ob, 2, 0.5);
    for (int s = 0; s < 3; s++) fill_grads(pa, s), tg_optim_step(oa), tg_scheduler_step(sa);
    tg_params *ck = tg_params_new(), *ckb = tg_params_new();
    tg_params_extend(ck, "model", pa);
    tg_params_extend(ck, NULL, tg_optim_state(oa));
    tg_params_extend(ck, NULL, tg_scheduler_state(sa));
    tg_params_extend(ckb, "model", pb);
    tg_params_extend(ckb, NULL, tg_optim_state(ob));
    tg_params_extend(ckb, NULL, tg_scheduler_state(sb));
    tg_params_find(ck, sp->tensor)->data[0] = (tg_real)sp->value;
    if (tg_params_save(ck, path) != TG_OK) fail_msg("save: %s", tg_error_message());

    const tg_load_options opts = {.allow_nonfinite = allow_nonfinite};
    assert_int_equal(tg_params_load_with(ckb, path, &opts), TG_ERR_FORMAT);
    char named[128];
    snprintf(named, sizeof named, "'%s' holds", sp->tensor);
    if (!strstr(tg_error_message(), named) || !strstr(tg_error_message(), sp->fragment))
        fail_msg("message \"%s\" lacks \"%s\" or \"%s\"", tg_error_message(), named, sp->fragment);
    /* nothing loaded: B is still as constructed (its state zero, its lr Adam's default) */
    tg_params *fresh = make_model();
    assert_same_params(sp->tensor, fresh, pb);
    const tg_params *st = tg_optim_state(ob);
    for (size_t i = 1; i < st->count; i++) /* after optim.lr */
        for (int64_t k = 0; k < st->tensors[i]->numel; k++)
            assert_true(st->tensors[i]->data[k] == 0);
    assert_true(tg_optim_lr(ob) == 1e-3);
    assert_int_equal(tg_scheduler_last_epoch(sb), 0);
    free_params(fresh);
    tg_params_free(ck), tg_params_free(ckb);
    tg_scheduler_free(sa), tg_scheduler_free(sb);
    tg_optim_free(oa), tg_optim_free(ob);
    free_params(pa), free_params(pb);
}

static void test_checkpoint_refuses_bad_state(void **state) {
    (void)state;
    char dir[] = "/tmp/tg_optim_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    const spoiled values[] = {
        {"optim.exp_avg.w", NAN, "NaN at index 0"},
        {"optim.exp_avg_sq.b", INFINITY, "inf at index 0"},
    };
    const spoiled counts[] = {
        {"optim.step.w", -1, "-1 at index 0; a step or epoch count must be a non-negative integer"},
        {"optim.step.b", NAN, "nan at index 0"},
        {"optim.step.w", 2.5, "2.5 at index 0"},
        {"sched.last_epoch", -3, "-3 at index 0"},
    };
    for (size_t i = 0; i < 2; i++) expect_state_refused(path, &values[i], false);
    for (size_t i = 0; i < 4; i++) {
        expect_state_refused(path, &counts[i], false);
        expect_state_refused(path, &counts[i], true); /* allow_nonfinite does not cover counts */
    }

    /* allow_nonfinite loads the NaN moment as it is */
    tg_params *ps = make_model();
    tg_optim *opt = tg_adam_new(ps, NULL);
    tg_params *ck = tg_params_new();
    tg_params_extend(ck, NULL, ps);
    tg_params_extend(ck, NULL, tg_optim_state(opt));
    tg_params_find(ck, "optim.exp_avg.w")->data[0] = NAN;
    assert_int_equal(tg_params_save(ck, path), TG_OK);
    tg_params_find(ck, "optim.exp_avg.w")->data[0] = 0;
    const tg_load_options allow = {.allow_nonfinite = true};
    assert_int_equal(tg_params_load_with(ck, path, &allow), TG_OK);
    assert_true(isnan(tg_params_find(ck, "optim.exp_avg.w")->data[0]));
    tg_params_free(ck);
    tg_optim_free(opt);
    free_params(ps);
    unlink(path);
    rmdir(dir);
}

/* ---------------------------------------------------------------------------------------
 * clipping */

static void test_clip_grad_norm_by_hand(void **state) {
    (void)state;
    tg_params *ps = tg_params_new();
    tg_tensor *a = make_param(ps, "a", 2, (tg_real[]){0, 0});
    tg_tensor *b = make_param(ps, "b", 1, (tg_real[]){0});
    tg_tensor *c = make_param(ps, "c", 2, (tg_real[]){0, 0}); /* no grad: skipped */
    assert_true(tg_clip_grad_norm(ps, 1.0, 2.0) == 0);        /* no grads at all: 0 */

    /* ||(3, 4)|| = 5, ||(12)|| = 12, total = ||(5, 12)|| = 13 */
    set_grad(a, (tg_real[]){3, 4}), set_grad(b, (tg_real[]){-12});
    assert_true(tg_clip_grad_norm(ps, 1.0, 2.0) == 13);
    const tg_real coef = (tg_real)1 / ((tg_real)13 + (tg_real)1e-6) * (tg_real)1.0;
    tg_test_assert_close("clipped a", a->grad, (tg_real[]){3 * coef, 4 * coef}, 2, 0, 0);
    tg_test_assert_close("clipped b", b->grad, (tg_real[]){-12 * coef}, 1, 0, 0);
    assert_null(c->grad);
    /* now the norm is just below 1: clipping again changes nothing (coef clamped to 1) */
    const double again = tg_clip_grad_norm(ps, 1.0, 2.0);
    assert_true(again <= 1 && again > 0.999999);
    tg_real kept[2] = {a->grad[0], a->grad[1]};
    tg_clip_grad_norm(ps, 100, 2.0);
    assert_memory_equal(a->grad, kept, sizeof kept);

    /* infinity norm: max |g| */
    set_grad(a, (tg_real[]){3, -7}), set_grad(b, (tg_real[]){5});
    assert_true(tg_clip_grad_norm(ps, 14, INFINITY) == 7); /* 14/7 > 1: unchanged */
    tg_test_assert_close("inf unchanged", a->grad, (tg_real[]){3, -7}, 2, 0, 0);
    assert_true(tg_clip_grad_norm(ps, 3.5, INFINITY) == 7);
    tg_test_assert_close("inf clipped", a->grad, (tg_real[]){1.5, -3.5}, 2, 1e-6, 1e-6);

    /* 1-norm, and a general p */
    set_grad(a, (tg_real[]){3, -4}), set_grad(b, (tg_real[]){5});
    assert_true(tg_clip_grad_norm(ps, 100, 1.0) == 12);
    const double n3 = tg_clip_grad_norm(ps, 100, 3.0);
    const double want3 = pow(pow(pow(27 + 64, 1.0 / 3), 3) + 125, 1.0 / 3);
    assert_true(fabs(n3 - want3) < 1e-5 * want3);

    /* non-finite: NaN spreads to every grad; inf gives coef 0 (inf·0 = NaN, others 0) */
    set_grad(a, (tg_real[]){NAN, 1}), set_grad(b, (tg_real[]){2});
    assert_true(isnan(tg_clip_grad_norm(ps, 1, 2)));
    assert_true(isnan(a->grad[1]) && isnan(b->grad[0]));
    set_grad(a, (tg_real[]){INFINITY, 1}), set_grad(b, (tg_real[]){2});
    assert_true(isinf(tg_clip_grad_norm(ps, 1, 2)));
    assert_true(isnan(a->grad[0]) && a->grad[1] == 0 && b->grad[0] == 0);

    /* clip by value */
    set_grad(a, (tg_real[]){-3, 0.25}), set_grad(b, (tg_real[]){NAN});
    tg_clip_grad_value(ps, 0.5);
    tg_test_assert_close("clip value", a->grad, (tg_real[]){-0.5, 0.25}, 2, 0, 0);
    assert_true(isnan(b->grad[0]));
    assert_null(c->grad);
    free_params(ps);
}

/* The reduction order of PyTorch's float32 2-norm (8 lanes, a 4-element epilogue): a vector
 * whose naive sum of squares rounds differently. Every length 1..40 is compared with the
 * order written out by hand here. */
static void test_clip_norm_order(void **state) {
    (void)state;
    for (int n = 1; n <= 40; n++) {
        tg_params *ps = tg_params_new();
        tg_tensor *t = tg_tensor_requires_grad(tg_tensor_zeros(TG_SHAPE(n)), true);
        tg_params_add(ps, "g", t);
        t->grad = tg_xcalloc((size_t)n, sizeof(tg_real));
        for (int i = 0; i < n; i++) t->grad[i] = (tg_real)(0.1 + 0.37 * sin(1.3 * i + n));
        tg_real want;
#ifdef TG_DOUBLE
        double s = 0;
        for (int i = 0; i < n; i++) s = fma(t->grad[i], t->grad[i], s);
        want = sqrt(s);
#else
        float lane[8] = {0}, s;
        const int full = n - n % 8;
        for (int i = 0; i < full; i++) lane[i % 8] = fmaf(t->grad[i], t->grad[i], lane[i % 8]);
        s = lane[0];
        for (int j = 1; j < 8; j++) s += lane[j];
        int i = full;
        if (n - full >= 4)
            for (; i < full + 4; i++) {
                const float sq = t->grad[i] * t->grad[i];
                s += sq;
            }
        for (; i < n; i++) s = fmaf(t->grad[i], t->grad[i], s);
        want = sqrtf(s);
#endif
        /* one tensor: total = norm of (its norm) = its norm */
        const double got = tg_clip_grad_norm(ps, 1e9, 2.0);
        if ((tg_real)got != want) fail_msg("n = %d: %a, want %a", n, got, (double)want);
        free_params(ps);
    }
}

static void test_clip_fixtures(void **state) {
    (void)state;
    const char *cases[] = {"optim_clip_grad_norm_clips", "optim_clip_grad_norm_noclip"};
    for (int c = 0; c < 2; c++) {
        tg_fixture *fx = tg_fixture_load(cases[c]);
        tg_params *ps = tg_params_new();
        tg_tensor *g0 = tg_fixture_tensor(fx, "in.g0"), *g1 = tg_fixture_tensor(fx, "in.g1");
        tg_tensor *p0 = tg_tensor_zeros(g0->ndim, g0->shape),
                  *p1 = tg_tensor_zeros(g1->ndim, g1->shape);
        tg_params_add(ps, "p0", p0), tg_params_add(ps, "p1", p1);
        set_grad(p0, g0->data), set_grad(p1, g1->data);
        const double max_norm = atof(tg_fixture_meta(fx, "max_norm"));
        const tg_real total = (tg_real)tg_clip_grad_norm(ps, max_norm, 2.0);
#ifdef TG_DOUBLE
        const double tol = 1e-6; /* float32 golden data */
#else
        const double tol = 0; /* bit for bit */
#endif
        tg_fixture_assert_close(fx, "out.total_norm", &total, NULL, 0, tol, tol);
        tg_fixture_assert_close(fx, "out.g0", p0->grad, p0->shape, p0->ndim, tol, tol);
        tg_fixture_assert_close(fx, "out.g1", p1->grad, p1->shape, p1->ndim, tol, tol);
        tg_tensor_free(g0), tg_tensor_free(g1);
        free_params(ps);
        tg_fixture_free(fx);
    }
}

/* ---------------------------------------------------------------------------------------
 * schedulers */

static void test_schedulers_by_hand(void **state) {
    (void)state;
    tg_params *ps = tg_params_new();
    make_param(ps, "w", 1, (tg_real[]){0});
    tg_sgd_options o = tg_sgd_defaults(0.1);
    tg_optim *opt = tg_sgd_new(ps, &o);
    tg_scheduler *s = tg_step_lr_new(opt, 3, 0.5);
    assert_int_equal(tg_scheduler_last_epoch(s), 0);
    assert_true(tg_scheduler_last_lr(s) == 0.1); /* construction is step 0: unchanged */
    const double want_step[] = {0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025};
    for (int e = 1; e < 8; e++) {
        tg_optim_step(opt);
        tg_scheduler_step(s);
        assert_int_equal(tg_scheduler_last_epoch(s), e);
        assert_true(fabs(tg_scheduler_last_lr(s) - want_step[e]) < 1e-17);
        assert_true(tg_optim_lr(opt) == tg_scheduler_last_lr(s));
    }
    tg_scheduler_free(s);

    /* cosine: equals the closed form to ~1e-16 and is not clamped at T_max */
    tg_optim_set_lr(opt, 0.2);
    s = tg_cosine_annealing_lr_new(opt, 4, 0.01);
    const double pi = 3.14159265358979323846;
    for (int e = 1; e <= 12; e++) {
        tg_scheduler_step(s);
        const double closed = 0.01 + (0.2 - 0.01) * (1 + cos(pi * e / 4)) / 2;
        if (fabs(tg_scheduler_last_lr(s) - closed) > 1e-15)
            fail_msg("cosine e=%d: %.17g, closed form %.17g", e, tg_scheduler_last_lr(s), closed);
    }
    assert_true(fabs(tg_optim_lr(opt) - 0.01) < 1e-15); /* e = 12 = 3·T_max: at the bottom again */
    tg_scheduler_free(s);
    tg_scheduler_free(NULL);
    tg_optim_free(opt);
    free_params(ps);
}

/* sched_* fixtures hold PyTorch's lr after e scheduler steps as F64: compared bit for bit
 * in both builds (the lr is a double in both). Read raw with the safetensors layer. */
static void test_scheduler_fixtures(void **state) {
    (void)state;
    const char *cases[] = {"sched_steplr", "sched_cosine"};
    for (int c = 0; c < 2; c++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.safetensors", TG_FIXTURES_DIR, cases[c]);
        tg_safetensors *st = NULL;
        if (tg_safetensors_read(path, &st) != TG_OK)
            fail_msg("%s: %s", cases[c], tg_error_message());
        const tg_st_entry *e = tg_safetensors_find(st, "out.lr");
        assert_non_null(e);
        assert_int_equal(e->dtype, TG_DTYPE_F64);
        tg_params *ps = tg_params_new();
        make_param(ps, "w", 1, (tg_real[]){0});
        tg_sgd_options o = tg_sgd_defaults(0.1);
        tg_optim *opt = tg_sgd_new(ps, &o);
        tg_scheduler *s =
            c == 0 ? tg_step_lr_new(opt, 3, 0.5) : tg_cosine_annealing_lr_new(opt, 5, 0);
        for (int64_t k = 0; k < e->numel; k++) {
            double want;
            memcpy(&want, (const char *)e->data + k * 8, 8);
            if (tg_scheduler_last_lr(s) != want)
                fail_msg("%s e=%lld: %a, PyTorch %a", cases[c], (long long)k,
                         tg_scheduler_last_lr(s), want);
            tg_optim_step(opt);
            tg_scheduler_step(s);
        }
        tg_scheduler_free(s);
        tg_optim_free(opt);
        free_params(ps);
        tg_safetensors_free(st);
    }
}

/* ---------------------------------------------------------------------------------------
 * The update itself, bit for bit: PyTorch's results for fixed parameters and gradients
 * (no dependence on this library's forward/backward ops), from the fixture
 * optim_update_exact (tests/fixturegen/optim.py; torch.manual_seed(2024), ATen AVX2, one
 * thread): parameters a (13 elements: 13 = 8 + 4 + 1 exercises every part of the 2-norm's
 * reduction order) and b (3), three steps with the gradients in.ga[s], in.gb[s] and
 * clip_grad_norm_(max_norm=1) before each; out.<tag> = a then b after the three steps. */

typedef struct exact_case {
    const char *name, *tag; /* tag: the fixture's out.<tag> */
    kind k;
    tg_sgd_options sgd;
    tg_adam_options adam;
} exact_case;

static void test_update_bit_exact(void **state) {
    (void)state;
    exact_case cs[6] = {
        {.name = "SGD lr 0.1 momentum 0.9 wd 0.01 nesterov", .tag = "sgd_nesterov", .k = K_SGD},
        {.name = "SGD lr 0.1 momentum 0.9 dampening 0.1", .tag = "sgd_dampening", .k = K_SGD},
        {.name = "SGD lr 0.05 maximize", .tag = "sgd_maximize", .k = K_SGD},
        {.name = "Adam lr 0.01 betas (0.9, 0.99) amsgrad wd 0.01",
         .tag = "adam_amsgrad",
         .k = K_ADAM},
        {.name = "Adam lr 0.001", .tag = "adam", .k = K_ADAM},
        {.name = "AdamW lr 0.01 amsgrad wd 0.1", .tag = "adamw_amsgrad", .k = K_ADAMW},
    };
    cs[0].sgd = tg_sgd_defaults(0.1);
    cs[0].sgd.momentum = 0.9, cs[0].sgd.weight_decay = 0.01, cs[0].sgd.nesterov = true;
    cs[1].sgd = tg_sgd_defaults(0.1);
    cs[1].sgd.momentum = 0.9, cs[1].sgd.dampening = 0.1;
    cs[2].sgd = tg_sgd_defaults(0.05);
    cs[2].sgd.maximize = true;
    cs[3].adam = tg_adam_defaults();
    cs[3].adam.lr = 0.01, cs[3].adam.beta2 = 0.99, cs[3].adam.amsgrad = true,
    cs[3].adam.weight_decay = 0.01;
    cs[4].adam = tg_adam_defaults();
    cs[5].adam = tg_adamw_defaults();
    cs[5].adam.lr = 0.01, cs[5].adam.amsgrad = true, cs[5].adam.weight_decay = 0.1;
#ifdef TG_DOUBLE
    const double tol = 1e-6; /* float32 golden numbers against float64 arithmetic */
#else
    const double tol = 0;
#endif
    tg_fixture *fx = tg_fixture_load("optim_update_exact");
    tg_tensor *p0a = tg_fixture_tensor(fx, "in.a"), *p0b = tg_fixture_tensor(fx, "in.b");
    tg_tensor *ga = tg_fixture_tensor(fx, "in.ga"), *gb = tg_fixture_tensor(fx, "in.gb");
    tg_tensor *totals = tg_fixture_tensor(fx, "out.total_norm");
    assert_int_equal(p0a->numel, 13), assert_int_equal(p0b->numel, 3);
    assert_int_equal(ga->numel, 3 * 13), assert_int_equal(gb->numel, 3 * 3);
    assert_int_equal(totals->numel, 3);
    for (int c = 0; c < 6; c++) {
        tg_params *ps = tg_params_new();
        tg_tensor *a = tg_tensor_requires_grad(tg_tensor_zeros(TG_SHAPE(13)), true);
        tg_tensor *b = tg_tensor_requires_grad(tg_tensor_zeros(TG_SHAPE(3)), true);
        tg_params_add(ps, "a", a), tg_params_add(ps, "b", b);
        tg_tensor_copy_from(a, p0a->data), tg_tensor_copy_from(b, p0b->data);
        const optim_case oc = {cs[c].name, cs[c].k, cs[c].sgd, cs[c].adam};
        tg_optim *opt = case_new(&oc, ps);
        for (int s = 0; s < 3; s++) {
            set_grad(a, ga->data + s * 13), set_grad(b, gb->data + s * 3);
            const tg_real total = (tg_real)tg_clip_grad_norm(ps, 1.0, 2.0);
            tg_test_assert_close("total norm", &total, totals->data + s, 1, tol, tol);
            tg_optim_step(opt);
        }
        char what[96], name[64];
        snprintf(name, sizeof name, "out.%s", cs[c].tag);
        tg_tensor *want = tg_fixture_tensor(fx, name);
        assert_int_equal(want->numel, 16);
        snprintf(what, sizeof what, "%s: a", cs[c].name);
        tg_test_assert_close(what, a->data, want->data, 13, tol, tol);
        snprintf(what, sizeof what, "%s: b", cs[c].name);
        tg_test_assert_close(what, b->data, want->data + 13, 3, tol, tol);
        tg_tensor_free(want);
        tg_optim_free(opt);
        free_params(ps);
    }
    tg_tensor_free(p0a), tg_tensor_free(p0b), tg_tensor_free(ga), tg_tensor_free(gb);
    tg_tensor_free(totals);
    tg_fixture_free(fx);
}

/* ---------------------------------------------------------------------------------------
 * PyTorch parity: the optim_* fixtures (Linear(4,3) + MSE, full batch, 20 steps, clipping
 * the norm at 0.5 before each step; the *_clip_value cases clamp every gradient element with
 * clip_grad_value_ instead). The gradients come from the library's own ops. */

typedef struct parity_result {
    const char *name;
    double worst_after20, worst_after1;
    int64_t exact20, total20;
    int clipped_steps; /* clip_grad_value_ cases: steps where some |g| exceeded the value */
} parity_result;

static parity_result results[16];
static int n_results;

static double worst_abs(const tg_fixture *fx, const char *name, const tg_tensor *t,
                        int64_t *exact) {
    tg_tensor *want = tg_fixture_tensor(fx, name);
    assert_int_equal(want->numel, t->numel);
    double w = 0;
    for (int64_t i = 0; i < t->numel; i++) {
        const double e = fabs((double)t->data[i] - (double)want->data[i]);
        if (e > w) w = e;
        if (exact) *exact += (float)t->data[i] == (float)want->data[i];
    }
    tg_tensor_free(want);
    return w;
}

static void parity_case(const char *name) {
    tg_fixture *fx = tg_fixture_load(name);
    const char *kind_name = tg_fixture_meta(fx, "optimizer");
    assert_non_null(kind_name);
    tg_params *ps = tg_params_new();
    tg_tensor *w = tg_tensor_requires_grad(tg_tensor_zeros(TG_SHAPE(3, 4)), true);
    tg_tensor *b = tg_tensor_requires_grad(tg_tensor_zeros(TG_SHAPE(3)), true);
    tg_params_add(ps, "weight", w);
    tg_params_add(ps, "bias", b);
    tg_fixture_load_params(fx, ps);
    tg_tensor *x = tg_fixture_tensor(fx, "in.x"), *y = tg_fixture_tensor(fx, "in.y");
    tg_tensor *want_loss = tg_fixture_tensor(fx, "out.loss");
    tg_tensor *want_norm = tg_fixture_tensor(fx, "out.total_norm");

    const double lr = atof(tg_fixture_meta(fx, "lr"));
    const double wd = atof(tg_fixture_meta(fx, "weight_decay"));
    /* clip_grad_norm_(max_norm) before every step, or clip_grad_value_(clip_value) instead
     * (then out.total_norm is the unclipped norm and out.max_abs_grad the largest |g|) */
    const char *clip_value = tg_fixture_meta(fx, "clip_value");
    const double max_norm = clip_value ? INFINITY : atof(tg_fixture_meta(fx, "clip_max_norm"));
    tg_tensor *want_max = clip_value ? tg_fixture_tensor(fx, "out.max_abs_grad") : NULL;
    tg_optim *opt;
    if (strcmp(kind_name, "SGD") == 0) {
        tg_sgd_options o = tg_sgd_defaults(lr);
        o.momentum = atof(tg_fixture_meta(fx, "momentum"));
        o.dampening = atof(tg_fixture_meta(fx, "dampening"));
        o.weight_decay = wd;
        o.nesterov = atoi(tg_fixture_meta(fx, "nesterov")) != 0;
        opt = tg_sgd_new(ps, &o);
    } else {
        tg_adam_options o =
            strcmp(kind_name, "AdamW") == 0 ? tg_adamw_defaults() : tg_adam_defaults();
        o.lr = lr;
        o.weight_decay = wd;
        o.eps = atof(tg_fixture_meta(fx, "eps"));
        o.amsgrad = atoi(tg_fixture_meta(fx, "amsgrad")) != 0;
        const char *betas = tg_fixture_meta(fx, "betas"); /* "0.9,0.999" */
        assert_non_null(betas);
        o.beta1 = atof(betas);
        o.beta2 = atof(strchr(betas, ',') + 1);
        opt = strcmp(kind_name, "AdamW") == 0 ? tg_adamw_new(ps, &o) : tg_adam_new(ps, &o);
    }

    parity_result r = {.name = name};
    tg_tape *tape = tg_tape_new();
    for (int step = 1; step <= 20; step++) {
        tg_tensor *loss = tg_mse_loss(tape, tg_linear(tape, x, w, b), y, TG_REDUCTION_MEAN);
        tg_tape_backward(tape, loss);
        const double total = tg_clip_grad_norm(ps, max_norm, 2.0); /* ∞: only the norm */
        if (clip_value) {
            const double max_abs = tg_clip_grad_norm(ps, INFINITY, INFINITY);
            tg_test_assert_close("max |grad| before clip_grad_value_", (tg_real[]){max_abs},
                                 want_max->data + step - 1, 1, 1e-5, 1e-5);
            r.clipped_steps += max_abs > atof(clip_value);
            tg_clip_grad_value(ps, atof(clip_value));
        }
        const double wl = want_loss->data[step - 1], wn = want_norm->data[step - 1];
        if (fabs(tg_item(loss) - wl) > 1e-5 * fmax(1, fabs(wl)))
            fail_msg("%s step %d: loss %.9g, PyTorch %.9g", name, step, (double)tg_item(loss), wl);
        if (fabs(total - wn) > 1e-5 * fmax(1, fabs(wn)))
            fail_msg("%s step %d: total norm %.9g, PyTorch %.9g", name, step, total, wn);
        tg_optim_step(opt);
        tg_tape_reset(tape);
        if (step == 1 || step == 20) {
            char nm[64];
            double worst = 0;
            for (size_t i = 0; i < ps->count; i++) {
                snprintf(nm, sizeof nm, "after%d.%s", step, ps->names[i]);
                const double e = worst_abs(fx, nm, ps->tensors[i], step == 20 ? &r.exact20 : NULL);
                if (step == 20) r.total20 += ps->tensors[i]->numel;
                worst = fmax(worst, e);
                tg_fixture_assert_tensor(fx, nm, ps->tensors[i], TG_PARITY_ATOL, TG_PARITY_RTOL);
            }
            if (step == 1)
                r.worst_after1 = worst;
            else
                r.worst_after20 = worst;
        }
    }
    if (clip_value && r.clipped_steps == 0) fail_msg("%s: clip_grad_value_ never clipped", name);
    /* the optimizer state after 20 steps, under PyTorch's state names */
    static const char *keys[] = {"momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq",
                                 "step"};
    for (size_t i = 0; i < ps->count; i++)
        for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
            char fname[96], oname[96];
            snprintf(fname, sizeof fname, "state20.%s.%s", ps->names[i], keys[k]);
            snprintf(oname, sizeof oname, "optim.%s.%s", keys[k], ps->names[i]);
            const tg_tensor *mine = tg_params_find(tg_optim_state(opt), oname);
            if (!tg_fixture_has(fx, fname)) {
                if (mine && strcmp(keys[k], "step") != 0)
                    fail_msg("%s: %s not in PyTorch's state", name, oname);
                continue;
            }
            if (!mine) fail_msg("%s: PyTorch has %s, we have no %s", name, fname, oname);
            tg_fixture_assert_tensor(fx, fname, mine, TG_PARITY_ATOL, TG_PARITY_RTOL);
        }
    results[n_results++] = r;
    tg_tape_free(tape);
    tg_optim_free(opt);
    tg_tensor_free(x), tg_tensor_free(y), tg_tensor_free(want_loss), tg_tensor_free(want_norm);
    tg_tensor_free(want_max);
    free_params(ps);
    tg_fixture_free(fx);
}

static void test_optim_parity(void **state) {
    (void)state;
    static const char *cases[] = {
        "optim_sgd",
        "optim_sgd_momentum",
        "optim_sgd_nesterov",
        "optim_sgd_weight_decay",
        "optim_sgd_dampening",
        "optim_adam",
        "optim_adam_amsgrad",
        "optim_adam_amsgrad_beta2_0.9",
        "optim_adam_beta2_0.9",
        "optim_adam_weight_decay",
        "optim_adamw",
        "optim_adamw_amsgrad",
        "optim_sgd_momentum_clip_value",
        "optim_adam_clip_value",
    };
    n_results = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) parity_case(cases[i]);
    double worst = 0;
    for (int i = 0; i < n_results; i++) {
        print_message(
            "parity %-30s after 1 step: worst |err| %.3g; after 20: %.3g, %lld/%lld bit-exact\n",
            results[i].name, results[i].worst_after1, results[i].worst_after20,
            (long long)results[i].exact20, (long long)results[i].total20);
        if (results[i].clipped_steps)
            print_message("parity %-30s clip_grad_value_ active in %d of 20 steps\n",
                          results[i].name, results[i].clipped_steps);
        worst = fmax(worst, results[i].worst_after20);
    }
    print_message("parity: %d optimizer cases, worst |err| after 20 steps %.3g (tolerance 1e-5)\n",
                  n_results, worst);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_fused_step_matches_update_then_zero),
        cmocka_unit_test(test_option_errors),
        cmocka_unit_test(test_sgd_by_hand),
        cmocka_unit_test(test_adam_by_hand),
        cmocka_unit_test(test_skip_params_without_grad),
        cmocka_unit_test(test_state_names),
        cmocka_unit_test(test_state_restore_continues),
        cmocka_unit_test(test_state_is_stable),
        cmocka_unit_test(test_checkpoint_resume),
        cmocka_unit_test(test_checkpoint_refuses_bad_state),
        cmocka_unit_test(test_clip_grad_norm_by_hand),
        cmocka_unit_test(test_clip_norm_order),
        cmocka_unit_test(test_clip_fixtures),
        cmocka_unit_test(test_schedulers_by_hand),
        cmocka_unit_test(test_scheduler_fixtures),
        cmocka_unit_test(test_update_bit_exact),
        cmocka_unit_test(test_optim_parity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
