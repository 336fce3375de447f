/* tapegrad/gradcheck.h — checks analytical gradients against central differences.
 * Layer: autograd.
 *
 * Same criterion as torch.autograd.gradcheck: for every input element x_i that requires
 * grad and every output element y_j, the analytical dy_j/dx_i (from backward with a
 * one-hot seed) must satisfy |analytical - numerical| <= atol + rtol*|numerical|, where
 * numerical = (f(x + eps e_i) - f(x - eps e_i)) / (2 eps). Meant for the float64 build
 * (libtapegrad64); in float32 the differences are too coarse for these tolerances. */
#ifndef TAPEGRAD_GRADCHECK_H
#define TAPEGRAD_GRADCHECK_H

#include "tapegrad/tape.h"

/* Builds the function's output on `tape` from the inputs. It must be deterministic
 * (dropout: seed its generator inside the function). */
typedef tg_tensor *(*tg_gradcheck_fn)(tg_tape *tape, tg_tensor *const *inputs, void *ctx);

typedef struct tg_gradcheck_options {
    double eps, atol, rtol; /* 0 means PyTorch's defaults: 1e-6, 1e-5, 1e-3 */
} tg_gradcheck_options;

typedef struct tg_gradcheck_report {
    bool passed;
    int64_t checked; /* Jacobian entries compared */
    /* the worst entry: the largest |a - n| / (atol + rtol |n|) */
    int input;            /* which input */
    int64_t input_index;  /* element of that input */
    int64_t output_index; /* element of the output */
    double analytical, numerical;
    double worst_ratio; /* <= 1 means within tolerance */
    char message[256];  /* a one-line summary */
} tg_gradcheck_report;

/* Returns true if every entry is within tolerance. `inputs` are long-lived tensors; those
 * with requires_grad are checked (their data is perturbed and restored exactly; their
 * gradients are left zeroed). At least one must require grad: none is a misuse (tg_fail, as
 * PyTorch raises), not a pass. `report` and `opts` may be NULL. */
bool tg_gradcheck(tg_gradcheck_fn fn, void *ctx, tg_tensor *const *inputs, int n_inputs,
                  const tg_gradcheck_options *opts, tg_gradcheck_report *report);

#endif
