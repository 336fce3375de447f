/* Central-difference gradient checking (see gradcheck.h for the criterion). */
#include "tapegrad/gradcheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Runs fn on a fresh tape state and copies the output values out (as double). */
static tg_tensor *run(tg_tape *tape, tg_gradcheck_fn fn, tg_tensor *const *inputs, void *ctx) {
    tg_tape_reset(tape);
    tg_tensor *y = fn(tape, inputs, ctx);
    if (!y) tg_fail("tg_gradcheck: the function returned no tensor");
    return y;
}

bool tg_gradcheck(tg_gradcheck_fn fn, void *ctx, tg_tensor *const *inputs, int n_inputs,
                  const tg_gradcheck_options *opts, tg_gradcheck_report *report) {
    const double eps = opts && opts->eps > 0 ? opts->eps : 1e-6;
    const double atol = opts && opts->atol > 0 ? opts->atol : 1e-5;
    const double rtol = opts && opts->rtol > 0 ? opts->rtol : 1e-3;
    tg_gradcheck_report rep = {.passed = true, .input = -1};
    TG_CHECK_ARG(fn);
    if (n_inputs > 0) TG_CHECK_ARG(inputs);

    /* Validated before anything is changed or allocated (a replaced error handler may
     * longjmp out of tg_fail). With no input to differentiate by, there would be nothing to
     * compare: an error, as in PyTorch, rather than a pass that checked nothing. */
    if (n_inputs < 0) tg_fail("tg_gradcheck: n_inputs is %d", n_inputs);
    int n_grad = 0;
    for (int i = 0; i < n_inputs; i++) {
        char argument[32];
        snprintf(argument, sizeof argument, "inputs[%d]", i);
        tg_tensor_check(__func__, argument, inputs[i]);
        if (!inputs[i]->owned)
            tg_fail("tg_gradcheck: input %d %s must be a long-lived tensor (tg_tensor_new...)", i,
                    inputs[i]->name);
        n_grad += inputs[i]->requires_grad;
    }
    if (n_grad == 0)
        tg_fail("tg_gradcheck: gradcheck expects at least one input tensor to require gradient "
                "(none of the %d inputs does)",
                n_inputs);
    for (int i = 0; i < n_inputs; i++) tg_tensor_zero_grad(inputs[i]);

    tg_tape *tape = tg_tape_new();
    tg_tensor *y = run(tape, fn, inputs, ctx);
    const int64_t n_out = y->numel;
    const bool any_grad = y->requires_grad;

    /* Analytical Jacobian, one row per output element: J[j][col], col over every input
     * element that requires grad. */
    int64_t n_cols = 0;
    for (int i = 0; i < n_inputs; i++)
        if (inputs[i]->requires_grad) n_cols += inputs[i]->numel;
    double *jac = tg_xcalloc((size_t)(n_out * n_cols) + 1, sizeof(double));
    tg_real *seed = tg_xcalloc((size_t)n_out + 1, sizeof(tg_real));
    for (int64_t j = 0; j < n_out && any_grad; j++) {
        for (int i = 0; i < n_inputs; i++) tg_tensor_zero_grad(inputs[i]);
        seed[j] = 1;
        /* one backward per output element through the same graph: keep it */
        tg_tape_backward_ex(tape, y, &(tg_backward_options){.seed = seed, .retain_graph = true});
        seed[j] = 0;
        int64_t col = 0;
        for (int i = 0; i < n_inputs; i++) {
            if (!inputs[i]->requires_grad) continue;
            for (int64_t e = 0; e < inputs[i]->numel; e++, col++)
                jac[j * n_cols + col] = inputs[i]->grad ? (double)inputs[i]->grad[e] : 0.0;
        }
    }

    /* Numerical Jacobian, one column per perturbed input element, compared as we go. */
    /* delta[j] = f_j(x + eps) - f_j(x - eps) for the element being perturbed */
    double *delta = tg_xcalloc((size_t)n_out + 1, sizeof(double));
    int64_t col = 0;
    for (int i = 0; i < n_inputs; i++) {
        tg_tensor *x = inputs[i];
        if (!x->requires_grad) continue;
        for (int64_t e = 0; e < x->numel; e++, col++) {
            const tg_real saved = x->data[e];
            x->data[e] = (tg_real)((double)saved + eps);
            y = run(tape, fn, inputs, ctx);
            for (int64_t j = 0; j < n_out; j++) delta[j] = (double)y->data[j];
            x->data[e] = (tg_real)((double)saved - eps);
            y = run(tape, fn, inputs, ctx);
            /* read f(x - eps) before restoring x: the output may share x's storage (reshape) */
            for (int64_t j = 0; j < n_out; j++) delta[j] -= (double)y->data[j];
            x->data[e] = saved;
            for (int64_t j = 0; j < n_out; j++) {
                const double numerical = delta[j] / (2 * eps);
                const double analytical = jac[j * n_cols + col];
                const double err = fabs(analytical - numerical);
                const double ratio = isnan(err) ? INFINITY : err / (atol + rtol * fabs(numerical));
                rep.checked++;
                if (ratio > rep.worst_ratio || rep.input < 0) {
                    rep.worst_ratio = ratio;
                    rep.input = i;
                    rep.input_index = e;
                    rep.output_index = j;
                    rep.analytical = analytical;
                    rep.numerical = numerical;
                }
            }
        }
    }
    rep.passed = rep.input >= 0 ? rep.worst_ratio <= 1.0 : true;
    if (rep.input >= 0)
        snprintf(rep.message, sizeof rep.message,
                 "gradcheck %s: %lld entries, worst d out[%lld] / d %s[%lld]: analytical %.10g, "
                 "numerical %.10g (%.3g of tolerance)",
                 rep.passed ? "passed" : "FAILED", (long long)rep.checked,
                 (long long)rep.output_index,
                 inputs[rep.input]->name[0] ? inputs[rep.input]->name : "input",
                 (long long)rep.input_index, rep.analytical, rep.numerical, rep.worst_ratio);
    else /* the inputs that require grad are all empty */
        snprintf(rep.message, sizeof rep.message, "gradcheck: no Jacobian entry to compare");

    for (int i = 0; i < n_inputs; i++) tg_tensor_zero_grad(inputs[i]);
    free(delta);
    free(seed);
    free(jac);
    tg_tape_free(tape);
    if (report) *report = rep;
    return rep.passed;
}
