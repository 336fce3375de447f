/* tapegrad/rng.h — MT19937 with PyTorch's mapping to floats, so that one seed gives
 * torch.manual_seed's uniform draws bit for bit. Layer: tensor. */
#ifndef TAPEGRAD_RNG_H
#define TAPEGRAD_RNG_H

#include "tapegrad/tensor.h"

typedef struct tg_rng {
    uint32_t state[624];
    int index;
} tg_rng;

void tg_rng_seed(tg_rng *rng, uint64_t seed); /* MT19937 init_genrand (low 32 bits of seed) */
uint32_t tg_rng_next_u32(tg_rng *rng);
/* One draw mapped to [0, 1) as PyTorch's float32 uniform does: (r & 0xFFFFFF) * 2^-24. */
double tg_rng_uniform01(tg_rng *rng);

/* The default generator (the one global besides the error handler), as torch's. */
tg_rng *tg_rng_default(void);
void tg_manual_seed(uint64_t seed);

/* In-place initialisers drawing from `rng` (NULL = the default generator), one draw per
 * element in row-major order, with PyTorch's float32 rounding. */
void tg_init_uniform(tg_tensor *t, tg_real lo, tg_real hi, tg_rng *rng);
void tg_init_normal(tg_tensor *t, tg_real mean, tg_real std, tg_rng *rng);

#endif
