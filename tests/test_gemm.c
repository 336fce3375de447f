/* tg_gemm against a naive triple loop accumulated in double: the four transpose cases,
 * odd sizes across every block boundary of the driver, padded strides, alpha/beta,
 * write-only C, degenerate sizes, the SIMD kernels against the portable one, and
 * bit-identical results at 1 and 2 threads. The pre-packed entry (tg_gemm_pack_b,
 * tg_gemm_prepacked) against tg_gemm, bit for bit, whole and in pieces. */
#include "harness.h"

#include <tapegrad/kernels.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef TG_DOUBLE
#define REAL_EPS DBL_EPSILON
#else
#define REAL_EPS FLT_EPSILON
#endif

/* ---- helpers ---- */

static uint64_t rng_state;

static tg_real rand_real(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (tg_real)((double)(rng_state >> 11) * 0x1p-52 - 1.0);
}

/* A rows x cols matrix with row stride ld >= cols; the padding holds NaN, so a kernel
 * that reads past a row's end poisons the result. */
static tg_real *matrix_new(int64_t rows, int64_t cols, int64_t ld) {
    tg_real *x = malloc((size_t)(rows * ld + 1) * sizeof(tg_real));
    assert_non_null(x);
    for (int64_t i = 0; i < rows * ld + 1; i++) x[i] = (tg_real)NAN;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) x[i * ld + j] = rand_real();
    return x;
}

typedef struct gemm_case {
    bool ta, tb;
    int64_t m, n, k;
    tg_real alpha, beta;
    int64_t pad; /* extra columns on every stride */
} gemm_case;

/* Runs the case and compares with the double reference under the rigorous bound
 * |err| <= (k + 2) * eps * (|alpha| * sum_p |a_ip b_pj| + |beta c_ij|) (+ a tiny floor). */
static void check_case(gemm_case g) {
    const int64_t ar = g.ta ? g.k : g.m, ac = g.ta ? g.m : g.k; /* A as stored */
    const int64_t br = g.tb ? g.n : g.k, bc = g.tb ? g.k : g.n;
    const int64_t lda = ac + g.pad, ldb = bc + g.pad, ldc = g.n + g.pad;
    tg_real *a = matrix_new(ar, ac, lda), *b = matrix_new(br, bc, ldb);
    tg_real *c = matrix_new(g.m, g.n, ldc);
    tg_real *c0 = malloc((size_t)(g.m * ldc + 1) * sizeof(tg_real));
    assert_non_null(c0);
    if (g.beta == 0) /* write-only C: NaN must not leak */
        for (int64_t i = 0; i < g.m; i++)
            for (int64_t j = 0; j < g.n; j++) c[i * ldc + j] = (tg_real)NAN;
    memcpy(c0, c, (size_t)(g.m * ldc + 1) * sizeof(tg_real));

    tg_gemm(g.ta, g.tb, g.m, g.n, g.k, g.alpha, a, lda, b, ldb, g.beta, c, ldc);

    for (int64_t i = 0; i < g.m; i++) {
        for (int64_t j = 0; j < g.n; j++) {
            double s = 0, abs_s = 0;
            for (int64_t p = 0; p < g.k; p++) {
                const double x = g.ta ? a[p * lda + i] : a[i * lda + p];
                const double y = g.tb ? b[j * ldb + p] : b[p * ldb + j];
                s += x * y;
                abs_s += fabs(x * y);
            }
            double want = (double)g.alpha * s, scale = fabs((double)g.alpha) * abs_s;
            if (g.beta != 0) {
                want += (double)g.beta * c0[i * ldc + j];
                scale += fabs((double)g.beta * c0[i * ldc + j]);
            }
            const double got = c[i * ldc + j];
            const double tol = (double)(g.k + 2) * REAL_EPS * scale + 1e-30;
            if (!(fabs(got - want) <= tol))
                fail_msg("gemm %c%c m=%lld n=%lld k=%lld alpha=%g beta=%g pad=%lld kernel=%s: "
                         "C[%lld][%lld] = %.10g, want %.10g (tol %.3g)",
                         g.ta ? 'T' : 'N', g.tb ? 'T' : 'N', (long long)g.m, (long long)g.n,
                         (long long)g.k, (double)g.alpha, (double)g.beta, (long long)g.pad,
                         tg_gemm_kernel_name(), (long long)i, (long long)j, got, want, tol);
        }
        /* the padding of C is not C */
        for (int64_t j = g.n; j < ldc; j++)
            if (!isnan(c[i * ldc + j])) fail_msg("gemm wrote into C's row padding");
    }
    free(a), free(b), free(c), free(c0);
}

static const int64_t odd_sizes[] = {1, 3, 17, 63, 65, 129, 257};
#define N_ODD (int64_t)(sizeof odd_sizes / sizeof odd_sizes[0])

/* Shapes that cross every block edge of the driver: the 1/2/4/6/12-row tiles, the
 * mc = 144 and kc = 256 blocks, nc = 4096 columns, the tiny / direct-B / dot-product
 * thresholds, and sizes that are and are not multiples of the vector width; the
 * few-rows path (m <= mc: A packed once per k block, B packed on the fly by each panel's
 * first tile, or read in place when there is a single tile) over several k blocks and
 * many panels with a ragged last one; A panels whose k is not a multiple of the
 * transpose width (8 floats, 4 doubles). */
static const int64_t edge_shapes[][3] = {
    {1, 1, 1},     {2, 5, 7},      {7, 9, 300},    {6, 16, 256},  {8, 33, 513},
    {12, 32, 64},  {13, 31, 257},  {32, 384, 128}, {33, 100, 40}, {64, 200, 96},
    {65, 96, 130}, {145, 17, 19},  {150, 50, 260}, {289, 40, 30}, {7, 4100, 5},
    {70, 4100, 3}, {1, 96, 16},    {1, 96, 32},    {96, 32, 1},   {3, 2000, 2},
    {200, 3, 600}, {40, 530, 600}, {5, 300, 300},  {12, 64, 40},  {25, 70, 11},
};
#define N_EDGE (int)(sizeof edge_shapes / sizeof edge_shapes[0])

static void run_all_shapes(void) {
    for (int t = 0; t < 4; t++) {
        const bool ta = t & 1, tb = t & 2;
        for (int64_t x = 0; x < N_ODD; x++)
            for (int64_t y = 0; y < N_ODD; y++)
                for (int64_t z = 0; z < N_ODD; z++) {
                    const int64_t m = odd_sizes[x], n = odd_sizes[y], k = odd_sizes[z];
                    if (m * n * k > 600000) continue; /* the naive loop is the cost */
                    check_case((gemm_case){ta, tb, m, n, k, 1, 0, 0});
                }
        for (int e = 0; e < N_EDGE; e++)
            check_case((gemm_case){ta, tb, edge_shapes[e][0], edge_shapes[e][1], edge_shapes[e][2],
                                   1, 0, 0});
    }
}

/* ---- tests ---- */

static void test_kernel_name(void **state) {
    (void)state;
    const char *name = tg_gemm_kernel_name();
#ifdef TG_USE_CBLAS /* the comparison build: OpenBLAS unless the portable kernel is forced */
    assert_string_equal(name, "openblas");
#else
    assert_true(strcmp(name, "avx512") == 0 || strcmp(name, "avx2") == 0 ||
                strcmp(name, "portable") == 0);
#endif
    tg_gemm_force_portable(true);
    assert_string_equal(tg_gemm_kernel_name(), "portable");
    tg_gemm_force_portable(false);
    assert_string_equal(tg_gemm_kernel_name(), name);
    print_message("gemm kernel: %s\n", name);
}

static void test_shapes_all_cases(void **state) {
    (void)state;
    rng_state = 1;
    tg_set_num_threads(1);
    run_all_shapes();
    tg_set_num_threads(0);
}

static void test_shapes_portable(void **state) {
    (void)state;
    rng_state = 2;
    tg_gemm_force_portable(true);
    tg_set_num_threads(1);
    run_all_shapes();
    tg_set_num_threads(0);
    tg_gemm_force_portable(false);
}

static void test_shapes_two_threads(void **state) {
    (void)state;
    rng_state = 3;
    tg_set_num_threads(2);
    /* big enough to be split */
    static const int64_t big[][3] = {{300, 260, 270}, {32, 768, 256}, {700, 20, 100},
                                     {64, 2048, 128}, {1, 4096, 300}, {257, 129, 65}};
    for (int t = 0; t < 4; t++)
        for (int s = 0; s < 6; s++)
            check_case((gemm_case){t & 1, t & 2, big[s][0], big[s][1], big[s][2], 1, 0, 0});
    tg_set_num_threads(0);
}

static void test_strides(void **state) {
    (void)state;
    rng_state = 4;
    for (int portable = 0; portable < 2; portable++) {
        tg_gemm_force_portable(portable);
        for (int t = 0; t < 4; t++)
            for (int e = 0; e < N_EDGE; e++)
                for (int64_t pad = 1; pad <= 9; pad += 8)
                    check_case((gemm_case){t & 1, t & 2, edge_shapes[e][0], edge_shapes[e][1],
                                           edge_shapes[e][2], 1, 0, pad});
    }
    tg_gemm_force_portable(false);
}

static void test_alpha_beta(void **state) {
    (void)state;
    rng_state = 5;
    static const tg_real alphas[] = {1, (tg_real)-0.5, 2};
    static const tg_real betas[] = {0, 1, (tg_real)0.25, -1};
    static const int64_t shapes[][3] = {{3, 17, 5},     {13, 31, 257},  {65, 96, 300}, {8, 40, 20},
                                        {150, 50, 260}, {40, 130, 300}, {160, 70, 13}};
    for (int portable = 0; portable < 2; portable++) {
        tg_gemm_force_portable(portable);
        for (int t = 0; t < 4; t++)
            for (int s = 0; s < 7; s++)
                for (int ai = 0; ai < 3; ai++)
                    for (int bi = 0; bi < 4; bi++)
                        check_case((gemm_case){t & 1, t & 2, shapes[s][0], shapes[s][1],
                                               shapes[s][2], alphas[ai], betas[bi], 3});
    }
    tg_gemm_force_portable(false);
}

/* k == 0 and alpha == 0: C = beta * C, A and B never read (NULL is fine). */
static void test_degenerate(void **state) {
    (void)state;
    tg_real c[6] = {1, 2, 3, (tg_real)NAN, 5, 6};
    tg_gemm(false, false, 2, 3, 0, 1, NULL, 1, NULL, 3, 2, c, 3);
    assert_true(c[0] == 2 && c[2] == 6 && isnan(c[3]) && c[5] == 12);
    tg_gemm(true, true, 2, 3, 0, 1, NULL, 2, NULL, 1, 0, c, 3);
    for (int i = 0; i < 6; i++) assert_true(c[i] == 0);
    tg_real d[4] = {(tg_real)NAN, 1, 2, 3};
    tg_gemm(false, false, 2, 2, 5, 0, NULL, 5, NULL, 2, 0, d, 2); /* alpha 0, beta 0 */
    for (int i = 0; i < 4; i++) assert_true(d[i] == 0);
    tg_real e[2] = {1, 2};
    tg_gemm(false, false, 1, 2, 4, 0, NULL, 4, NULL, 2, 1, e, 2); /* alpha 0, beta 1 */
    assert_true(e[0] == 1 && e[1] == 2);
    /* m == 0 or n == 0: nothing happens, nothing is read */
    tg_gemm(false, false, 0, 3, 4, 1, NULL, 4, NULL, 3, 0, NULL, 3);
    tg_gemm(false, true, 3, 0, 4, 1, NULL, 4, NULL, 4, 0, NULL, 0);
}

static void test_misuse(void **state) {
    (void)state;
    tg_real x[4] = {0};
    TG_EXPECT_FAIL(tg_gemm(false, false, -1, 2, 2, 1, x, 2, x, 2, 0, x, 2), "tg_gemm", "negative");
    TG_EXPECT_FAIL(tg_gemm(false, false, 2, 2, 2, 1, x, 1, x, 2, 0, x, 2), "tg_gemm", "lda");
    TG_EXPECT_FAIL(tg_gemm(false, true, 2, 2, 2, 1, x, 2, x, 1, 0, x, 2), "tg_gemm", "ldb");
    TG_EXPECT_FAIL(tg_gemm(false, false, 2, 2, 2, 1, x, 2, x, 2, 0, x, 1), "tg_gemm", "ldc");
}

/* The SIMD kernels against the portable one on the same inputs. */
static void test_simd_matches_portable(void **state) {
    (void)state;
    if (strcmp(tg_gemm_kernel_name(), "portable") == 0) skip();
    rng_state = 6;
    for (int t = 0; t < 4; t++)
        for (int e = 0; e < N_EDGE; e++) {
            const bool ta = t & 1, tb = t & 2;
            const int64_t m = edge_shapes[e][0], n = edge_shapes[e][1], k = edge_shapes[e][2];
            const int64_t lda = ta ? m : k, ldb = tb ? k : n;
            tg_real *a = matrix_new(m * k, 1, 1), *b = matrix_new(k * n, 1, 1);
            tg_real *c1 = matrix_new(m * n, 1, 1), *c2 = matrix_new(m * n, 1, 1);
            memcpy(c2, c1, (size_t)(m * n) * sizeof(tg_real));
            tg_gemm(ta, tb, m, n, k, (tg_real)0.75, a, lda, b, ldb, (tg_real)0.5, c1, n);
            tg_gemm_force_portable(true);
            tg_gemm(ta, tb, m, n, k, (tg_real)0.75, a, lda, b, ldb, (tg_real)0.5, c2, n);
            tg_gemm_force_portable(false);
            /* both are within (k + 2) eps of the truth; |a|, |b|, |c| < 1 */
            tg_test_assert_close("simd vs portable", c1, c2, m * n,
                                 2.0 * (double)(k + 2) * REAL_EPS * (0.75 * (double)k + 0.5), 0);
            free(a), free(b), free(c1), free(c2);
        }
}

/* Same inputs at 1 and 2 threads give the same bits (the k sums are never split). */
static void test_threads_bit_identical(void **state) {
    (void)state;
    rng_state = 7;
    static const int64_t shapes[][3] = {{300, 260, 270}, {32, 768, 256}, {64, 1536, 512},
                                        {700, 20, 100},  {5, 3000, 300}, {1000, 1000, 8},
                                        {129, 257, 600}};
    for (int portable = 0; portable < 2; portable++) {
        tg_gemm_force_portable(portable);
        for (int t = 0; t < 4; t++)
            for (int s = 0; s < 7; s++) {
                const bool ta = t & 1, tb = t & 2;
                const int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
                const int64_t lda = ta ? m : k, ldb = tb ? k : n;
                tg_real *a = matrix_new(m * k, 1, 1), *b = matrix_new(k * n, 1, 1);
                tg_real *c1 = matrix_new(m * n, 1, 1), *c2 = matrix_new(m * n, 1, 1);
                memcpy(c2, c1, (size_t)(m * n) * sizeof(tg_real));
                tg_set_num_threads(1);
                tg_gemm(ta, tb, m, n, k, (tg_real)1.5, a, lda, b, ldb, (tg_real)0.5, c1, n);
                tg_set_num_threads(2);
                tg_gemm(ta, tb, m, n, k, (tg_real)1.5, a, lda, b, ldb, (tg_real)0.5, c2, n);
                if (memcmp(c1, c2, (size_t)(m * n) * sizeof(tg_real)) != 0)
                    fail_msg("gemm %c%c %lldx%lldx%lld (%s): 1 and 2 threads differ",
                             ta ? 'T' : 'N', tb ? 'T' : 'N', (long long)m, (long long)n,
                             (long long)k, tg_gemm_kernel_name());
                free(a), free(b), free(c1), free(c2);
            }
    }
    tg_gemm_force_portable(false);
    tg_set_num_threads(0);
}

/* ---- the pre-packed entry ---- */

/* op(B) packed once, then C = alpha op(A) op(B) + beta C from it, against tg_gemm given
 * op(B) as a plain k x n matrix (so tg_gemm takes its tile path: its dot-product form of
 * A B^T with few rows sums in another order): the same bits, for the whole C and for C
 * computed in pieces (two row ranges by column ranges of two panels, as threads split it),
 * and C's row padding untouched (it holds NaN, compared bitwise). */
static void check_prepacked(bool ta, bool tb, int64_t m, int64_t n, int64_t k, tg_real alpha,
                            tg_real beta, int64_t pad) {
    const int64_t lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    tg_real *a = matrix_new(ta ? k : m, ta ? m : k, lda),
            *b = matrix_new(tb ? n : k, tb ? k : n, ldb);
    tg_real *bmat = matrix_new(k, n, n); /* op(B), row-major */
    for (int64_t p = 0; p < k; p++)
        for (int64_t j = 0; j < n; j++) bmat[p * n + j] = tb ? b[j * ldb + p] : b[p * ldb + j];
    tg_real *c1 = matrix_new(m, n, ldc);
    const size_t cbytes = (size_t)(m * ldc + 1) * sizeof(tg_real);
    tg_real *c2 = malloc(cbytes), *c3 = malloc(cbytes);
    assert_non_null(c2);
    assert_non_null(c3);
    memcpy(c2, c1, cbytes);
    memcpy(c3, c1, cbytes);

    tg_gemm(ta, false, m, n, k, alpha, a, lda, bmat, n, beta, c1, ldc);
    const size_t size = tg_gemm_packed_size(k, n);
    void *buf = malloc(size);
    assert_non_null(buf);
    const tg_gemm_packed *pb = tg_gemm_pack_b(tb, k, n, b, ldb, buf, size);
    tg_gemm_prepacked(ta, m, 0, n, alpha, a, lda, pb, beta, c2, ldc);
    const int64_t w = tg_gemm_packed_width(pb), r_split = m / 3;
    for (int part = 0; part < 2; part++) {
        const int64_t r0 = part ? r_split : 0, r1 = part ? m : r_split;
        for (int64_t j0 = 0; j0 < n; j0 += 2 * w) {
            const int64_t j1 = j0 + 2 * w < n ? j0 + 2 * w : n;
            tg_gemm_prepacked(ta, r1 - r0, j0, j1, alpha, a + (ta ? r0 : r0 * lda), lda, pb, beta,
                              c3 + r0 * ldc + j0, ldc);
        }
    }
    if (memcmp(c1, c2, cbytes) != 0 || memcmp(c1, c3, cbytes) != 0)
        fail_msg("prepacked %c%c m=%lld n=%lld k=%lld alpha=%g beta=%g pad=%lld kernel=%s: "
                 "%s differs from tg_gemm",
                 ta ? 'T' : 'N', tb ? 'T' : 'N', (long long)m, (long long)n, (long long)k,
                 (double)alpha, (double)beta, (long long)pad, tg_gemm_kernel_name(),
                 memcmp(c1, c2, cbytes) != 0 ? "the whole product" : "the product in pieces");
    free(a), free(b), free(bmat), free(c1), free(c2), free(c3), free(buf);
}

static void test_prepacked_matches_gemm(void **state) {
    (void)state;
    rng_state = 8;
    static const tg_real ab[][2] = {{1, 0}, {1, 1}, {(tg_real)0.75, (tg_real)-0.5}};
    for (int portable = 0; portable < 2; portable++) {
#ifdef TG_USE_CBLAS /* tg_gemm is OpenBLAS's unless the portable kernel is forced */
        if (!portable) continue;
#endif
        tg_gemm_force_portable(portable);
        for (int t = 0; t < 4; t++) {
            const bool ta = t & 1, tb = t & 2;
            for (int e = 0; e < N_EDGE; e++)
                check_prepacked(ta, tb, edge_shapes[e][0], edge_shapes[e][1], edge_shapes[e][2],
                                ab[e % 3][0], ab[e % 3][1], e % 2 ? 3 : 0);
            for (int64_t x = 0; x < N_ODD; x += 2)
                for (int64_t y = 0; y < N_ODD; y++) {
                    const int64_t m = odd_sizes[x], n = odd_sizes[y],
                                  k = odd_sizes[(x + y) % N_ODD];
                    check_prepacked(ta, tb, m, n, k, ab[y % 3][0], ab[y % 3][1], y % 2);
                }
        }
    }
    tg_gemm_force_portable(false);
}

/* The kernel is the one tg_gemm uses when B is packed (tg_gemm_force_portable included),
 * and stays that operand's; sizes are checked; k == 0 gives C = beta * C. */
static void test_prepacked_kernel_and_misuse(void **state) {
    (void)state;
    tg_real b[6] = {1, 2, 3, 4, 5, 6}, a[2] = {1, -1}, c[3] = {7, 8, 9};
    char buf[4096], buf0[256];
    tg_gemm_force_portable(true);
    const size_t portable_size = tg_gemm_packed_size(2, 3);
    tg_gemm_packed *pp = tg_gemm_pack_b(false, 2, 3, b, 3, buf, sizeof buf);
    assert_int_equal(tg_gemm_packed_width(pp), 8); /* the portable kernel's panel */
    tg_gemm_force_portable(false);
    assert_int_equal(tg_gemm_packed_width(pp), 8);
    tg_gemm_prepacked(false, 1, 0, 3, 1, a, 2, pp, 0, c, 3); /* (1, -1) x [[1 2 3] [4 5 6]] */
    assert_true(c[0] == -3 && c[1] == -3 && c[2] == -3);
    tg_gemm_prepacked(false, 1, 0, 3, 2, a, 2, pp, 1, c, 3); /* c += 2 a B */
    assert_true(c[0] == -9 && c[1] == -9 && c[2] == -9);
    tg_gemm_packed *pk = tg_gemm_pack_b(true, 2, 3, b, 2, buf, sizeof buf); /* B stored 3 x 2 */
    tg_gemm_prepacked(false, 1, 0, 3, 1, a, 2, pk, 0, c, 3);
    assert_true(c[0] == -1 && c[1] == -1 && c[2] == -1);
    if (strcmp(tg_gemm_kernel_name(), "portable") != 0 &&
        strcmp(tg_gemm_kernel_name(), "openblas") != 0)
        assert_true(tg_gemm_packed_width(pk) > 8 && tg_gemm_packed_size(2, 3) > portable_size);

    tg_gemm_packed *p0 = tg_gemm_pack_b(false, 0, 3, NULL, 3, buf0, sizeof buf0); /* k == 0 */
    tg_gemm_prepacked(false, 1, 0, 3, 1, NULL, 0, p0, (tg_real)0.5, c, 3);
    assert_true(c[0] == (tg_real)-0.5 && c[2] == (tg_real)-0.5);

    TG_EXPECT_FAIL(tg_gemm_pack_b(false, 2, 3, b, 3, buf, tg_gemm_packed_size(2, 3) - 1),
                   "tg_gemm_pack_b", "needed");
    TG_EXPECT_FAIL(tg_gemm_pack_b(false, 2, 3, b, 2, buf, sizeof buf), "tg_gemm_pack_b", "ldb");
    TG_EXPECT_FAIL(tg_gemm_prepacked(false, 1, 1, 3, 1, a, 2, pk, 0, c, 3), "tg_gemm_prepacked",
                   "multiple");
    TG_EXPECT_FAIL(tg_gemm_prepacked(false, 1, 0, 4, 1, a, 2, pk, 0, c, 3), "tg_gemm_prepacked",
                   "columns");
    TG_EXPECT_FAIL(tg_gemm_prepacked(false, 1, 0, 3, 1, a, 1, pk, 0, c, 3), "tg_gemm_prepacked",
                   "lda");
}

/* The per-CPU choice: tg_gemm_select switches kernels (an unknown or unavailable one is
 * refused), the description names the kernel and kc, and the AVX-512 (12 x 32) and
 * AVX2 (6 x 16) tiles, with their own mc, give the same bits on every product that does
 * not take the dot form (C = A B^T with at most 8 rows, whose lanes run over k): each
 * element is one lane's FMAs in k order, in k blocks of the same kc. */
static void test_select_and_tile_bits(void **state) {
    (void)state;
    const char *name = tg_gemm_kernel_name();
    assert_false(tg_gemm_select("no-such-kernel"));
    assert_string_equal(tg_gemm_kernel_name(), name);
    assert_true(tg_gemm_select("portable"));
    assert_string_equal(tg_gemm_kernel_name(), "portable");
    assert_true(tg_gemm_select(NULL));
    assert_string_equal(tg_gemm_kernel_name(), name);
    const char *d = tg_gemm_config_describe();
    print_message("gemm: %s\n", d);
#ifndef TG_USE_CBLAS
    assert_true(strncmp(d, name, strlen(name)) == 0 && strstr(d, "kc=256") != NULL);
#endif
    assert_true(tg_gemm_parallel_min() > 0);
    if (!tg_gemm_select("avx2") || !tg_gemm_select("avx512")) {
        tg_gemm_select(NULL);
        skip();
    }
    rng_state = 8;
    static const int64_t shapes[][3] = {{300, 260, 270}, {64, 768, 256}, {13, 100, 600},
                                        {700, 20, 100},  {5, 33, 9},     {257, 129, 513}};
    for (int t = 0; t < 4; t++)
        for (int s = 0; s < 6; s++) {
            const bool ta = t & 1, tb = t & 2;
            const int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
            if (tb && !ta && m <= 8) continue; /* the dot form */
            const int64_t lda = ta ? m : k, ldb = tb ? k : n;
            tg_real *a = matrix_new(m * k, 1, 1), *b = matrix_new(k * n, 1, 1);
            tg_real *c1 = matrix_new(m * n, 1, 1), *c2 = matrix_new(m * n, 1, 1);
            memcpy(c2, c1, (size_t)(m * n) * sizeof(tg_real));
            tg_gemm_select("avx512");
            tg_gemm(ta, tb, m, n, k, (tg_real)1.5, a, lda, b, ldb, (tg_real)0.5, c1, n);
            tg_gemm_select("avx2");
            tg_gemm(ta, tb, m, n, k, (tg_real)1.5, a, lda, b, ldb, (tg_real)0.5, c2, n);
            if (memcmp(c1, c2, (size_t)(m * n) * sizeof(tg_real)) != 0)
                fail_msg("gemm %c%c %lldx%lldx%lld: the avx512 and avx2 tiles differ",
                         ta ? 'T' : 'N', tb ? 'T' : 'N', (long long)m, (long long)n, (long long)k);
            free(a), free(b), free(c1), free(c2);
        }
    tg_gemm_select(NULL);
}

static void test_thread_count(void **state) {
    (void)state;
    /* The default follows the load: between 1 and one per core, never the number set. */
    const int def = tg_get_num_threads();
    assert_true(def >= 1);
    tg_set_num_threads(64);
#ifdef _OPENMP
    assert_int_equal(tg_get_num_threads(), 64);
#endif
    tg_set_num_threads(0);
    assert_true(tg_get_num_threads() >= 1 && tg_get_num_threads() < 64);
    tg_set_num_threads(-5);
    assert_true(tg_get_num_threads() >= 1 && tg_get_num_threads() < 64);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernel_name),
        cmocka_unit_test(test_thread_count),
        cmocka_unit_test(test_select_and_tile_bits),
        cmocka_unit_test(test_degenerate),
        cmocka_unit_test(test_misuse),
        cmocka_unit_test(test_shapes_all_cases),
        cmocka_unit_test(test_shapes_portable),
        cmocka_unit_test(test_shapes_two_threads),
        cmocka_unit_test(test_strides),
        cmocka_unit_test(test_alpha_beta),
        cmocka_unit_test(test_simd_matches_portable),
        cmocka_unit_test(test_threads_bit_identical),
        cmocka_unit_test(test_prepacked_matches_gemm),
        cmocka_unit_test(test_prepacked_kernel_and_misuse),
    };
    return cmocka_run_group_tests_name("gemm", tests, NULL, NULL);
}
