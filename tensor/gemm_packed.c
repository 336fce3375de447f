/* tensor/gemm_packed.c — GEMM with a pre-packed right operand (tg_gemm_pack_b,
 * tg_gemm_prepacked; see tapegrad/kernels.h).
 *
 * tg_gemm packs B on every call. A recurrent step multiplies the same weights by a new
 * batch-sized operand T times, and at that size (B rows) packing the weights costs about
 * as much as the product; so the weights are packed once, here, into the very layout
 * tg_gemm's driver packs a B block into, and every product runs the driver's own tile
 * loop (tg_gemm_tiles) on it:
 *
 *   for each k block pc (kc = the kernel's, the last one shorter):
 *     for each panel q of NR columns (zero-padded past n):
 *       kc x NR values, row p of the panel = op(B)[pc + p, q*NR : q*NR + NR]
 *
 * block pc starting at pc * panels * NR values, panel q of it at q * kc * NR. The other
 * operand is read in place, like the small products of tg_gemm: rows in blocks of mc, each
 * through every k block and panel, so a block's rows of A stay in L2 while the panels
 * stream from L2 / L3. The k blocks and the per-element order are tg_gemm's, which makes
 * the results tg_gemm's to the bit (kernels.h). */
#include "tapegrad/kernels.h"

#include "gemm_internal.h"

#include <string.h>

struct tg_gemm_packed {
    const tg_gemm_kernel *kern; /* the kernel it was packed for */
    int64_t k, n, panels;       /* panels = ceil(n / NR) */
    tg_real *data;              /* 64-byte aligned, inside the same buffer */
};

/* The header, then the panels from the next 64-byte boundary. */
static size_t tg_gemm_packed_bytes(const tg_gemm_kernel *kern, int64_t k, int64_t n) {
    const int64_t panels = (n + kern->nr - 1) / kern->nr;
    return sizeof(tg_gemm_packed) + 63 + (size_t)(k * panels * kern->nr) * sizeof(tg_real);
}

size_t tg_gemm_packed_size(int64_t k, int64_t n) {
    if (k < 0 || n < 0)
        tg_fail("tg_gemm_packed_size: negative size k=%lld n=%lld", (long long)k, (long long)n);
    return tg_gemm_packed_bytes(tg_gemm_kernel_current(), k, n);
}

/* Panels (k block, panel) [u0, u1) of a pack: units numbered block-major. */
typedef struct tg_gemm_pack_job {
    tg_gemm_call g; /* kern, trans_b, b, ldb, k, n */
    const tg_gemm_packed *pb;
} tg_gemm_pack_job;

static void tg_gemm_pack_units(int64_t u0, int64_t u1, void *ctx) {
    const tg_gemm_pack_job *job = ctx;
    const tg_gemm_packed *pb = job->pb;
    const int64_t KC = pb->kern->kc, NR = pb->kern->nr;
    for (int64_t u = u0; u < u1; u++) {
        const int64_t pc = u / pb->panels * KC, q = u % pb->panels;
        const int64_t kc = pb->k - pc < KC ? pb->k - pc : KC;
        const int nr = (int)(pb->n - q * NR < NR ? pb->n - q * NR : NR);
        tg_gemm_pack_b_panel(&job->g, pc, kc, q * NR, nr,
                             pb->data + pc * pb->panels * NR + q * kc * NR);
    }
}

tg_gemm_packed *tg_gemm_pack_b(bool trans_b, int64_t k, int64_t n, const tg_real *b, int64_t ldb,
                               void *buf, size_t size) {
    if (k < 0 || n < 0)
        tg_fail("tg_gemm_pack_b: negative size k=%lld n=%lld", (long long)k, (long long)n);
    if (ldb < (trans_b ? k : n))
        tg_fail("tg_gemm_pack_b: ldb=%lld < %lld (trans_b=%d)", (long long)ldb,
                (long long)(trans_b ? k : n), (int)trans_b);
    const tg_gemm_kernel *kern = tg_gemm_kernel_current();
    const size_t need = tg_gemm_packed_bytes(kern, k, n);
    if (!buf || size < need)
        tg_fail("tg_gemm_pack_b: buffer of %zu bytes, %zu needed (tg_gemm_packed_size)", size,
                need);
    tg_gemm_packed *pb = buf;
    const uintptr_t data = ((uintptr_t)(pb + 1) + 63) & ~(uintptr_t)63;
    *pb = (tg_gemm_packed){kern, k, n, (n + kern->nr - 1) / kern->nr, (tg_real *)data};
    tg_gemm_pack_job job = {
        .g = {.kern = kern, .trans_b = trans_b, .k = k, .n = n, .b = b, .ldb = ldb}, .pb = pb};
    const int64_t units = (k + kern->kc - 1) / kern->kc * pb->panels;
    /* a copy: any split gives the same bits; threads only when it is worth a team */
    tg_parallel_for(units, k * n >= ((int64_t)1 << 16) ? 1 : units, tg_gemm_pack_units, &job);
    return pb;
}

int64_t tg_gemm_packed_width(const tg_gemm_packed *pb) { return pb->kern->nr; }

int64_t tg_gemm_packed_tile_rows(const tg_gemm_packed *pb) { return pb->kern->mr; }

void tg_gemm_prepacked(bool trans_a, int64_t m, int64_t n0, int64_t n1, tg_real alpha,
                       const tg_real *a, int64_t lda, const tg_gemm_packed *pb, tg_real beta,
                       tg_real *c, int64_t ldc) {
    if (!pb) tg_fail("tg_gemm_prepacked: no packed operand");
    const tg_gemm_kernel *kern = pb->kern;
    const int64_t NR = kern->nr, k = pb->k, nc = n1 - n0;
    if (m < 0 || n0 < 0 || n1 < n0 || n1 > pb->n || n0 % NR != 0)
        tg_fail("tg_gemm_prepacked: m=%lld, columns [%lld, %lld) of %lld (the first a multiple "
                "of %lld)",
                (long long)m, (long long)n0, (long long)n1, (long long)pb->n, (long long)NR);
    if (!tg_gemm_prologue("tg_gemm_prepacked", trans_a, m, nc, k, alpha, lda, beta, c, ldc)) return;
    if (!a) tg_fail_null_argument("tg_gemm_prepacked", "a");
    /* tg_gemm_tiles reads A in place (apack NULL) and the panels of each k block from
     * bpack; C's column 0 there is n0 here. */
    const tg_gemm_call g = {.kern = kern,
                            .trans_a = trans_a,
                            .m = m,
                            .n = nc,
                            .k = k,
                            .alpha = alpha,
                            .beta = beta,
                            .a = a,
                            .lda = lda,
                            .ldc = ldc,
                            .c = c};
    int heights[TG_GEMM_MAX_TILES];
    const int64_t blocks = tg_gemm_row_blocks(m, kern->mc);
    for (int64_t bi = 0; bi < blocks; bi++) {
        const int64_t ic = tg_gemm_row_block_start(m, blocks, bi);
        const int64_t mc = tg_gemm_row_block_start(m, blocks, bi + 1) - ic;
        const int tiles = tg_gemm_row_tiles(mc, kern->mr, heights, TG_GEMM_MAX_TILES);
        for (int64_t pc = 0; pc < k; pc += kern->kc) {
            const int64_t kc = k - pc < kern->kc ? k - pc : kern->kc;
            const tg_real *block = pb->data + pc * pb->panels * NR + n0 / NR * kc * NR;
            tg_gemm_tiles(&g, pc, kc, pc == 0 ? beta : 1, 0, nc, block, ic, heights, tiles, NULL,
                          NULL);
        }
    }
}
