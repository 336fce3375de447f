/* tensor/gemm_avx2.c — the AVX2 + FMA micro-kernels (256-bit vectors).
 *
 * Compiled for every x86-64 machine: the functions carry target("avx2,fma") so the rest
 * of the library stays baseline x86-64, and gemm.c calls them only after
 * __builtin_cpu_supports says the CPU has both. The kernels themselves are in
 * gemm_simd.h; this file only picks the width and the tile height.
 *
 * Tile 6 x 16 floats (float32 build) or 6 x 8 doubles (float64 build): 12 ymm
 * accumulators + 2 B vectors + 1 broadcast of the 16 registers. Cache blocks for a core
 * with 32 KiB L1d and 512 KiB - 1 MiB L2 (Zen 3 / Zen 4; fine on Intel parts too; mc
 * and nc are then set from the CPU's own caches at run time, gemm_tune.c):
 * kc = 256 so that one packed B panel (256 x 16 floats = 16 KiB, or 256 x 8 doubles)
 * sits in L1 next to the A panel streaming through it; mc so that the packed A block
 * (mc x kc: 144 KiB of floats) takes well under half of L2; nc so that the packed B
 * block (kc x nc: 4 MiB of floats) stays in L3. */
#include "gemm_internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#define TGK_TARGET  __attribute__((target("avx2,fma")))
#define TGK_NAME(x) tg_gemm_avx2_##x
#define TGK_BITS    256
#define TGK_MR      6
#define TGK_LABEL   "avx2"
/* cache blocks: gemm_simd.h's defaults */

#include "gemm_simd.h"

#else

const tg_gemm_kernel *tg_gemm_avx2_kernel_get(void) { return NULL; }

#endif
