/* tensor/gemm_tune.c — which register tile, cache blocks and thread threshold suit this
 * CPU, decided once at run time from cpuid.
 *
 * What varies between CPUs, and what each choice depends on:
 *
 *  - the tile: AVX-512 (12 x 32 floats in 24 zmm accumulators) where the CPU has it,
 *    else AVX2 + FMA (6 x 16, 16 registers), else the portable C one. Whether 512-bit
 *    operations run at full width (Zen 5, Intel's server cores) or split into two 256-bit
 *    halves (Zen 4) changes the FMA rate per cycle, not the choice: on Zen 4 the 12 x 32
 *    zmm tile still beats the best 256-bit tile (a 12 x 16 ymm tile with AVX-512VL's 32
 *    registers ran a GRU layer's training step at 85 ms against 72 ms; AVX2's 6 x 16 runs
 *    tg_gemm's recurrent shapes 5-10% slower), since one zmm instruction issues what two
 *    ymm ones would and the broadcasts of A are shared by twice the columns. The split
 *    is used below for the thread threshold.
 *  - mc, the rows of a packed A block (mc x kc), which is reused against every B panel
 *    and should stay in L2 with room for the B panels streaming past: a quarter of L2.
 *  - nc, the columns of a packed B block (kc x nc), reused by every A block from L3:
 *    an eighth of L3 (the L3 is shared; other cores' blocks live there too).
 *  - the product size below which one thread does it all (starting a team costs a few
 *    microseconds whatever the CPU; the work done in that time doubles with full-width
 *    512-bit FMAs).
 * What does NOT vary: kc = 256. Every tile kernel sums an element's k products in one
 * lane, one FMA per k in increasing order, in k blocks of kc added to C in order; tile
 * height, mc, nc and the split of rows or columns between threads only decide which
 * element is computed where and when, never the order of its sum. So on a given kernel
 * the bits do not depend on the CPU's caches or the thread count; kc is the one block
 * that would change them, and it is the same everywhere (and the AVX2 and AVX-512 tiles
 * agree to the bit too; their dot forms, whose lanes run over k, do not).
 *
 * TAPEGRAD_GEMM=portable|avx2|avx512 forces a kernel (an unavailable one is ignored);
 * TAPEGRAD_GEMM_MC, TAPEGRAD_GEMM_NC, TAPEGRAD_GEMM_PARALLEL_MIN and
 * TAPEGRAD_GEMM_ROWS_MAX_BYTES force the blocks and the thresholds (for measurements). */
#include "gemm_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define TG_TUNE_X86 1
#endif

/* What cpuid (or sysconf) says about this CPU. */
typedef struct tg_cpu_info {
    char vendor[13];
    char brand[49];
    unsigned family, model;
    int64_t l1d, l2, l3;   /* bytes per core (L3: per cache); 0 = unknown */
    bool avx2_fma, avx512; /* AVX2 and FMA; AVX-512F */
    bool split512;         /* AVX-512 executed as two 256-bit halves */
    const char *arch;      /* "zen4", "zen5", ... or NULL */
} tg_cpu_info;

#ifdef TG_TUNE_X86
/* The data and unified caches of the deterministic cache leaf (AMD 0x8000001D, Intel 4):
 * size = ways * partitions * line * sets, each field stored minus one. */
static void tg_cpu_caches(unsigned leaf, tg_cpu_info *cpu) {
    for (unsigned i = 0; i < 8; i++) {
        unsigned a, b, c, d;
        __cpuid_count(leaf, i, a, b, c, d);
        const unsigned type = a & 31, level = (a >> 5) & 7;
        if (type == 0) break;
        if (type == 2) continue; /* instructions */
        const int64_t size = (int64_t)((b >> 22) + 1) * (((b >> 12) & 0x3ff) + 1) *
                             ((b & 0xfff) + 1) * ((int64_t)c + 1);
        if (level == 1) cpu->l1d = size;
        if (level == 2) cpu->l2 = size;
        if (level == 3) cpu->l3 = size;
    }
}
#endif

static void tg_cpu_detect(tg_cpu_info *cpu) {
    memset(cpu, 0, sizeof *cpu);
#ifdef TG_TUNE_X86
    unsigned a, b, c, d, max_ext;
    __cpuid(0, a, b, c, d);
    const unsigned max_leaf = a;
    memcpy(cpu->vendor, &b, 4), memcpy(cpu->vendor + 4, &d, 4), memcpy(cpu->vendor + 8, &c, 4);
    __cpuid(1, a, b, c, d);
    const unsigned base_family = (a >> 8) & 15, base_model = (a >> 4) & 15;
    cpu->family = base_family == 15 ? base_family + ((a >> 20) & 0xff) : base_family;
    cpu->model =
        base_family == 15 || base_family == 6 ? base_model | ((a >> 16) & 15) << 4 : base_model;
    __cpuid(0x80000000, max_ext, b, c, d);
    if (max_ext >= 0x80000004) {
        unsigned *w = (unsigned *)(void *)cpu->brand;
        for (unsigned l = 0; l < 3; l++)
            __cpuid(0x80000002 + l, w[4 * l], w[4 * l + 1], w[4 * l + 2], w[4 * l + 3]);
    }
    __builtin_cpu_init();
    cpu->avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    cpu->avx512 = __builtin_cpu_supports("avx512f");
    const bool amd = strcmp(cpu->vendor, "AuthenticAMD") == 0;
    if (amd && max_ext >= 0x8000001D)
        tg_cpu_caches(0x8000001D, cpu);
    else if (strcmp(cpu->vendor, "GenuineIntel") == 0 && max_leaf >= 4)
        tg_cpu_caches(4, cpu);
    if (amd && cpu->family == 0x19 && cpu->avx512) cpu->arch = "zen4";
    if (amd && cpu->family == 0x1A) cpu->arch = "zen5";
    /* Family 19h with AVX-512 is Zen 4, the one x86 core that splits 512-bit operations
     * (Zen 5, family 1Ah, has full-width datapaths, as Intel's AVX-512 server cores do). */
    cpu->split512 = amd && cpu->family == 0x19;
#endif
    /* what cpuid did not say */
#ifdef _SC_LEVEL1_DCACHE_SIZE
    if (cpu->l1d <= 0) cpu->l1d = sysconf(_SC_LEVEL1_DCACHE_SIZE);
    if (cpu->l2 <= 0) cpu->l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (cpu->l3 <= 0) cpu->l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
    if (cpu->l1d <= 0) cpu->l1d = 32 << 10;
    if (cpu->l2 <= 0) cpu->l2 = 512 << 10;
    if (cpu->l3 <= 0) cpu->l3 = 8 << 20;
}

/* ---- the tuned kernels ---- */

typedef struct tg_gemm_tuning {
    tg_cpu_info cpu;
    tg_gemm_kernel kern[2]; /* 0 avx512, 1 avx2 */
    bool have[2];
    int best;               /* index into kern, -1: portable */
    int64_t parallel_min;   /* multiply-adds below which one thread does a product */
    int64_t rows_max_bytes; /* packed operands up to this size are split by rows: L2 */
    char describe[2][256];  /* per kernel */
} tg_gemm_tuning;

static tg_gemm_tuning tg_tuning;
static pthread_once_t tg_tuning_once = PTHREAD_ONCE_INIT;

static int64_t tg_env_int(const char *name, int64_t fallback) {
    const char *s = getenv(name);
    if (!s || !*s) return fallback;
    char *end;
    const long long v = strtoll(s, &end, 10);
    return *end == 0 && v > 0 ? (int64_t)v : fallback;
}

/* x rounded down to a multiple of unit, within [lo, hi] (multiples of unit). */
static int64_t tg_round_block(int64_t x, int64_t unit, int64_t lo, int64_t hi) {
    x = x / unit * unit;
    return x < lo ? lo : x > hi ? hi : x;
}

/* Fills the blocks of a kernel for this CPU (kc stays the kernel's: see the top). */
static void tg_tune_blocks(tg_gemm_kernel *k, const tg_cpu_info *cpu) {
    const int64_t row_bytes = k->kc * (int64_t)sizeof(tg_real);
    const int64_t mc_max = (int64_t)TG_GEMM_MAX_TILES < 1024 / k->mr ? TG_GEMM_MAX_TILES * k->mr
                                                                     : 1024 / k->mr * k->mr;
    k->mc = tg_round_block(tg_env_int("TAPEGRAD_GEMM_MC", cpu->l2 / 4 / row_bytes), k->mr,
                           2 * k->mr, mc_max);
    k->nc = tg_round_block(tg_env_int("TAPEGRAD_GEMM_NC", cpu->l3 / 8 / row_bytes), k->nr,
                           8 * k->nr, 8192);
}

static void tg_tuning_init(void) {
    tg_gemm_tuning *t = &tg_tuning;
    tg_cpu_detect(&t->cpu);
    const tg_cpu_info *cpu = &t->cpu;
    const tg_gemm_kernel *base[2] = {tg_gemm_avx512_kernel_get(), tg_gemm_avx2_kernel_get()};
    const bool runs[2] = {cpu->avx512, cpu->avx2_fma};
    for (int i = 0; i < 2; i++) {
        t->have[i] = base[i] && runs[i];
        if (!t->have[i]) continue;
        t->kern[i] = *base[i];
        tg_tune_blocks(&t->kern[i], cpu);
    }
    t->best = t->have[0] ? 0 : t->have[1] ? 1 : -1;
    const char *want = getenv("TAPEGRAD_GEMM");
    if (want && strcmp(want, "avx2") == 0 && t->have[1]) t->best = 1;
    if (want && strcmp(want, "portable") == 0) t->best = -1;
    /* a team of threads pays off above about a million multiply-adds at 16 lanes a cycle
     * (measured on Zen 3 and Zen 4); full-width 512-bit FMAs do that work in half the time */
    const bool wide = t->best == 0 && !cpu->split512;
    t->parallel_min = tg_env_int("TAPEGRAD_GEMM_PARALLEL_MIN", (int64_t)1 << (wide ? 21 : 20));
    t->rows_max_bytes = tg_env_int("TAPEGRAD_GEMM_ROWS_MAX_BYTES", cpu->l2);

    char where[160];
    snprintf(where, sizeof where, "%s family %xh model %xh%s%s%s; L1d %lldK L2 %lldK L3 %lldM",
             cpu->vendor[0] ? cpu->vendor : "unknown CPU", cpu->family, cpu->model,
             cpu->arch ? ", " : "", cpu->arch ? cpu->arch : "",
             !cpu->avx512    ? ""
             : cpu->split512 ? ": 512-bit split"
                             : ": 512-bit full width",
             (long long)(cpu->l1d >> 10), (long long)(cpu->l2 >> 10), (long long)(cpu->l3 >> 20));
    for (int i = 0; i < 2; i++)
        if (t->have[i])
            snprintf(t->describe[i], sizeof t->describe[i],
                     "%s tile %dx%d kc=%lld mc=%lld nc=%lld threads above %lld FMAs (%s)",
                     t->kern[i].name, t->kern[i].mr, t->kern[i].nr, (long long)t->kern[i].kc,
                     (long long)t->kern[i].mc, (long long)t->kern[i].nc, (long long)t->parallel_min,
                     where);
}

static const tg_gemm_tuning *tg_tuning_get(void) {
    pthread_once(&tg_tuning_once, tg_tuning_init);
    return &tg_tuning;
}

const tg_gemm_kernel *tg_gemm_tuned_kernel(void) {
    const tg_gemm_tuning *t = tg_tuning_get();
    return t->best < 0 ? NULL : &t->kern[t->best];
}

const char *tg_gemm_tuned_describe(const tg_gemm_kernel *k) {
    const tg_gemm_tuning *t = tg_tuning_get();
    for (int i = 0; i < 2; i++)
        if (t->have[i] && k == &t->kern[i]) return t->describe[i];
    return NULL;
}

const tg_gemm_kernel *tg_gemm_tuned_choice(const char *name) {
    const tg_gemm_tuning *t = tg_tuning_get();
    static const char *const names[2] = {"avx512", "avx2"};
    for (int i = 0; i < 2; i++)
        if (t->have[i] && strcmp(name, names[i]) == 0) return &t->kern[i];
    return NULL;
}

int64_t tg_gemm_parallel_min(void) { return tg_tuning_get()->parallel_min; }

/* Rows per thread read the whole operand every step; columns per thread read 1/threads of
 * it but need a barrier per step. Rows win while the operand stays in each core's L2 (a
 * GRU's W_hh of H = 256, 768 KiB, in Zen 4's 1 MiB), and each thread keeps a register tile
 * of rows busy; an operand that fills L2 or more (an LSTM's of H = 256: 1 MiB; H = 512:
 * 3-4 MiB) would stream from L3 once per thread per step instead of once per step. */
bool tg_gemm_packed_split_rows(size_t bytes, int64_t rows, int threads) {
    const tg_gemm_tuning *t = tg_tuning_get();
    const int64_t mr = t->best < 0 ? 4 : t->kern[t->best].mr;
    return threads > 1 && rows / threads >= mr && (int64_t)bytes < t->rows_max_bytes;
}
