/* PyTorch's default initialisers, with its exact bound arithmetic. */
#include "tapegrad/nn.h"

#include <math.h>

static void require_2d(const char *op, const tg_tensor *w) {
    if (w->ndim != 2) {
        char desc[160];
        tg_fail("%s: needs a 2-D weight, got %s", op, tg_tensor_describe(w, desc, sizeof desc));
    }
}

void tg_init_uniform_fan(tg_tensor *t, int64_t fan, tg_rng *rng) {
    TG_CHECK_TENSOR(t);
    if (fan <= 0) tg_fail("tg_init_uniform_fan: fan must be positive, got %lld", (long long)fan);
    const double bound = 1.0 / sqrt((double)fan);
    tg_init_uniform(t, (tg_real)-bound, (tg_real)bound, rng);
}

void tg_init_kaiming_uniform(tg_tensor *w, double a, tg_rng *rng) {
    TG_CHECK_TENSOR(w);
    require_2d("tg_init_kaiming_uniform", w);
    /* gain = sqrt(2/(1+a²)), std = gain/sqrt(fan_in), bound = sqrt(3)·std, evaluated in this
     * order (a = √5 gives a² = 5.000000000000001, which the last bit of the bound sees). */
    const double gain = sqrt(2.0 / (1.0 + a * a));
    const double std = gain / sqrt((double)w->shape[1]);
    const double bound = sqrt(3.0) * std;
    tg_init_uniform(w, (tg_real)-bound, (tg_real)bound, rng);
}

void tg_init_xavier_uniform(tg_tensor *w, double gain, tg_rng *rng) {
    TG_CHECK_TENSOR(w);
    require_2d("tg_init_xavier_uniform", w);
    const double std = gain * sqrt(2.0 / (double)(w->shape[0] + w->shape[1]));
    const double bound = sqrt(3.0) * std;
    tg_init_uniform(w, (tg_real)-bound, (tg_real)bound, rng);
}
