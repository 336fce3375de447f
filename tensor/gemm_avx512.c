/* tensor/gemm_avx512.c — the AVX-512F micro-kernels (512-bit vectors).
 *
 * Same scheme as gemm_avx2.c (the code is gemm_simd.h) with twice the width and twice the
 * registers (32 zmm): tile 12 x 32 floats (12 x 16 doubles) = 24 accumulators + 2 B
 * vectors + 1 broadcast. The B panel per p is a whole 64-byte cache line per vector, so
 * kc = 256 makes one packed panel 32 KiB (floats): it fits a 48 KiB L1d (Zen 5, Ice Lake
 * and later) with room for the A panel (12 KiB); the A block (mc x kc) stays near a
 * fifth of a 1-2 MiB L2 (mc and nc set from the CPU's caches at run time: gemm_tune.c).
 * Selected at run time only when the CPU has AVX-512F and VL, split 512-bit datapaths
 * (Zen 4) included: gemm_tune.c says why. */
#include "gemm_internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#define TGK_TARGET  __attribute__((target("avx512f")))
#define TGK_NAME(x) tg_gemm_avx512_##x
#define TGK_BITS    512
#define TGK_MR      12
#define TGK_LABEL   "avx512"
/* cache blocks: gemm_simd.h's defaults */

#include "gemm_simd.h"

#else

const tg_gemm_kernel *tg_gemm_avx512_kernel_get(void) { return NULL; }

#endif
