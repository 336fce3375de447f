/* nn/real3.h — a double kept exactly in a (3,) tensor of tg_real, for the learning rates that
 * the optimizer ("optim.lr") and the schedulers ("sched.base_lr") keep in their state, so that
 * a float32 checkpoint restores them bit for bit. Internal to nn/ (not installed).
 *
 * hi = fl(x), mid = fl(x - hi), lo = fl(x - hi - mid): every difference is exact in double, and
 * three 24-bit pieces hold all 53 bits of x, so hi + mid + lo == x again (for any x in
 * float's normal range, which covers learning rates). In float64 mid and lo are 0. */
#ifndef TAPEGRAD_NN_REAL3_H
#define TAPEGRAD_NN_REAL3_H

#include "tapegrad/tensor.h"

static inline void real3_set(tg_tensor *t, double x) {
    const tg_real hi = (tg_real)x;
    const tg_real mid = (tg_real)(x - (double)hi);
    const tg_real lo = (tg_real)(x - (double)hi - (double)mid);
    t->data[0] = hi, t->data[1] = mid, t->data[2] = lo;
}

static inline double real3_get(const tg_tensor *t) {
    return ((double)t->data[0] + (double)t->data[1]) + (double)t->data[2];
}

#endif
