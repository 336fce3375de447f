/* Fused recurrent ops: one tape node per cell step (tg_cell_step_fused) or per layer and
 * direction over a whole sequence (tg_rnn_sequence_fused), forward and backward side by side.
 * This file holds the driver every cell kind shares, and the plain RNN (tanh / relu) cell;
 * the GRU gates live in rnn_gru.c and the LSTM gates in rnn_lstm.c.
 *
 * Forward (per layer and direction):
 *     gi = X·W_ihᵀ                          all T steps in ONE GEMM, X = (T·B, I)
 *     for each step t (t = 0..T-1, or T-1..0 in reverse):
 *         gh = h_{t-1}·W_hhᵀ                ONE GEMM (B, G·H)
 *         h_t (, c_t) = gates(gi_t + b_ih, gh + b_hh, h_{t-1} (, c_{t-1}))   ONE kernel
 *
 * Backward (backpropagation through time). h_t feeds two consumers: the output at t and
 * step t+1 (in processing order), so its gradient is the sum
 *     dh_t = dL/doutput_t + dL/dh_t (through step t+1)        (+ dL/dh_n at the last step)
 * Walking the steps in reverse, each step turns dh_t (and dc_t) into the gradients of its
 * gate pre-activations da_t (one kernel, derived per cell kind) and then
 *     dh_{t-1} = (direct terms) + da_h,t·W_hh                 ONE GEMM (B, H)
 * Every weight gradient is a sum over steps of an outer product, so with the da_t of all
 * steps stacked into DA (T·B, G·H):
 *     dW_ih += DAᵀ·X      dx += DA·W_ih      dW_hh += DA_hᵀ·H_prev      (three GEMMs)
 *     db_ih += Σ_rows DA  db_hh += Σ_rows DA_h
 * where H_prev (T·B, H) stacks h_{t-1} of every step (contiguous, see rnn_internal.h).
 *
 * GRU and LSTM sequences (T >= 2) take all these products from weights packed ONCE per run
 * into panels (W_hhᵀ for the forward steps, W_hh for the backward steps, W_ihᵀ, W_ih; X and
 * H_prev for the weight gradients a block at a time), with a register-tile kernel that reads
 * the other operand in place: tg_gemm would pack W_hh again at every step.
 *
 * Memory: DA is written over gi (the forward's input projections, which the backward never
 * reads); the GRU keeps of DA_h only its n block; what only one pass uses (the packed
 * weights, the work tiles, gi without a backward to come) goes back to the arena when that
 * pass is done. Threads: a forward step
 * splits the hidden units (each thread: the product for its units, then their gates: no
 * barrier inside a step); a backward step splits the batch rows (gates, then those rows of
 * dh_prev); the whole-sequence products split rows of the result. Every element is computed
 * by one thread in a fixed order, so results do not depend on the thread count. */
#include "rnn_internal.h"

#include <string.h>

int tg_cell_gate_count(tg_cell_kind kind) {
    switch (kind) {
    case TG_CELL_RNN_TANH:
    case TG_CELL_RNN_RELU:
        return 1;
    case TG_CELL_GRU:
    case TG_CELL_GRU_CHO:
        return 3;
    case TG_CELL_LSTM:
        return 4;
    }
    tg_fail("rnn: unknown cell kind %d", (int)kind);
}

const char *tg_cell_kind_name(tg_cell_kind kind) {
    switch (kind) {
    case TG_CELL_RNN_TANH:
        return "rnn_tanh";
    case TG_CELL_RNN_RELU:
        return "rnn_relu";
    case TG_CELL_GRU:
        return "gru";
    case TG_CELL_GRU_CHO:
        return "gru_cho";
    case TG_CELL_LSTM:
        return "lstm";
    }
    return "?";
}

static const rnn_cell_impl *impl_of(tg_cell_kind kind) {
    switch (kind) {
    case TG_CELL_RNN_TANH:
        return &tg_rnn_impl_tanh;
    case TG_CELL_RNN_RELU:
        return &tg_rnn_impl_relu;
    case TG_CELL_GRU:
        return &tg_rnn_impl_gru;
    case TG_CELL_GRU_CHO:
        return &tg_rnn_impl_gru_cho;
    case TG_CELL_LSTM:
        return &tg_rnn_impl_lstm;
    }
    tg_fail("rnn: unknown cell kind %d", (int)kind);
}

/* ---------------------------------------------------------------------------------------
 * The plain RNN cell:  h_t = act(a),  a = gi_t + b_ih + h_{t-1}·W_hhᵀ + b_hh
 * ------------------------------------------------------------------------------------- */
/* Step t for one batch row: the gate kernel (rnn_forward runs it on every row). */
RNN_ROW_KERNEL
static void rnn_forward_step(int64_t H, const tg_real *gi, const tg_real *gh, const tg_real *b_ih,
                             const tg_real *b_hh, tg_real *h, bool relu) {
    RNN_SIMD
    for (int64_t j = 0; j < H; j++) {
        const tg_real a = (gi[j] + b_ih[j]) + (gh[j] + b_hh[j]);
        h[j] = relu ? (a > 0 ? a : 0) : rnn_tanh(a);
    }
}

/* The gate kernel on batch rows [b0, b1) (ctx: rnn_step_ctx). */
static void rnn_forward_rows(int64_t b0, int64_t b1, void *ctx) {
    const rnn_step_ctx *c = ctx;
    const rnn_run *r = c->r;
    const int64_t H = r->H;
    const tg_real *gi = rnn_gi(r, c->t), *gh = r->work;
    tg_real *h = rnn_h(r, rnn_cur_slot(r, c->t));
    for (int64_t b = b0; b < b1; b++)
        rnn_forward_step(H, gi + b * H, gh + b * H, r->b_ih, r->b_hh, h + b * H, c->relu);
}

static void rnn_forward(const rnn_run *r, int64_t t, bool relu) {
    const int64_t B = r->B, H = r->H;
    const tg_real *h_prev = rnn_h(r, rnn_prev_slot(r, t));
    tg_gemm(false, true, B, H, H, 1, h_prev, H, r->w_hh, H, 0, r->work, H); /* the step's GEMM */
    rnn_step_ctx c = {.r = r, .t = t, .relu = relu};
    tg_parallel_for(B, rnn_row_grain(B, H), rnn_forward_rows, &c);
}

static void rnn_tanh_forward(const rnn_run *r, int64_t t) { rnn_forward(r, t, false); }
static void rnn_relu_forward(const rnn_run *r, int64_t t) { rnn_forward(r, t, true); }

/* h = tanh(a):  dh/da = 1 − tanh²(a) = 1 − h²,   so  da = dh ⊙ (1 − h²)
 * h = relu(a):  dh/da = 1 where a > 0 (⇔ h > 0), else 0 (PyTorch's choice at a = 0)
 * a = gi + b_ih + h_prev·W_hhᵀ + b_hh:  dh_prev = da·W_hh; the same da feeds both sides. */
static void rnn_backward_step(const rnn_run *r, int64_t t, const tg_real *dh, tg_real *da,
                              tg_real *dh_prev, bool relu) {
    const int64_t B = r->B, H = r->H;
    const tg_real *h = rnn_h(r, rnn_cur_slot(r, t));
    RNN_SIMD
    for (int64_t k = 0; k < B * H; k++)
        da[k] = relu ? (h[k] > 0 ? dh[k] : 0) : dh[k] * (1 - h[k] * h[k]);
    tg_gemm(false, false, B, H, H, 1, da, H, r->w_hh, H, 0, dh_prev, H);
}

static void rnn_tanh_backward_step(const rnn_run *r, int64_t t, const tg_real *dh, tg_real *dc,
                                   tg_real *da_i, tg_real *da_h, tg_real *dh_prev) {
    (void)dc, (void)da_h;
    rnn_backward_step(r, t, dh, da_i, dh_prev, false);
}

static void rnn_relu_backward_step(const rnn_run *r, int64_t t, const tg_real *dh, tg_real *dc,
                                   tg_real *da_i, tg_real *da_h, tg_real *dh_prev) {
    (void)dc, (void)da_h;
    rnn_backward_step(r, t, dh, da_i, dh_prev, true);
}

/* h_t itself is all the backward needs, and it is in hs: nothing saved per step. */
const rnn_cell_impl tg_rnn_impl_tanh = {0,   false, false, rnn_tanh_forward, rnn_tanh_backward_step,
                                        NULL};
const rnn_cell_impl tg_rnn_impl_relu = {0,   false, false, rnn_relu_forward, rnn_relu_backward_step,
                                        NULL};

/* ---------------------------------------------------------------------------------------
 * The step products with W_hh packed once per run (rnn_internal.h)
 * ------------------------------------------------------------------------------------- */
/* Portable (and float64): a 4 x 8 tile of accumulators in a local array. */
#define RNN_PORT_MR 4
#define RNN_PORT_NR 8
static void rnn_panel_portable(int64_t m, int64_t k, const tg_real *a, int64_t ars, int64_t acs,
                               const tg_real *p, tg_real *c, int64_t ldc, int64_t ncol, bool add) {
    for (int64_t i0 = 0; i0 < m; i0 += RNN_PORT_MR) {
        const int64_t mr = m - i0 < RNN_PORT_MR ? m - i0 : RNN_PORT_MR;
        tg_real acc[RNN_PORT_MR][RNN_PORT_NR] = {{0}};
        for (int64_t q = 0; q < k; q++)
            for (int64_t i = 0; i < mr; i++) {
                const tg_real ai = a[(i0 + i) * ars + q * acs];
                for (int j = 0; j < RNN_PORT_NR; j++) acc[i][j] += ai * p[q * RNN_PORT_NR + j];
            }
        for (int64_t i = 0; i < mr; i++) {
            tg_real *ci = c + (i0 + i) * ldc;
            for (int64_t j = 0; j < ncol; j++) ci[j] = add ? ci[j] + acc[i][j] : acc[i][j];
        }
    }
}
static const rnn_gemm_kernel rnn_gemm_portable = {RNN_PORT_NR, rnn_panel_portable};

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(TG_DOUBLE)
#include <immintrin.h>
/* The register tiles, FMA in registers: rows [0, mr) (mr a constant after inlining) of
 * C (+)= A·P. V = the vector type, W its width, NR = 2·W columns (two vectors a row). */
#define RNN_TILE_BODY(V, W, MR, SETZERO, LOAD, STORE, SET1, FMA, ADD)                              \
    V acc0[MR], acc1[MR];                                                                          \
    _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) acc0[i] = acc1[i] = SETZERO();           \
    for (int64_t q = 0; q < k; q++) {                                                              \
        const V p0 = LOAD(p + q * 2 * W), p1 = LOAD(p + q * 2 * W + W);                            \
        _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) if (i < mr) {                        \
            const V ai = SET1(a[i * ars + q * acs]);                                               \
            acc0[i] = FMA(ai, p0, acc0[i]);                                                        \
            acc1[i] = FMA(ai, p1, acc1[i]);                                                        \
        }                                                                                          \
    }                                                                                              \
    if (ncol == 2 * W) {                                                                           \
        _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) if (i < mr) {                        \
            float *ci = c + i * ldc;                                                               \
            if (add) acc0[i] = ADD(LOAD(ci), acc0[i]), acc1[i] = ADD(LOAD(ci + W), acc1[i]);       \
            STORE(ci, acc0[i]);                                                                    \
            STORE(ci + W, acc1[i]);                                                                \
        }                                                                                          \
    } else {                                                                                       \
        float tmp[2 * W];                                                                          \
        for (int i = 0; i < mr; i++) {                                                             \
            STORE(tmp, acc0[i]);                                                                   \
            STORE(tmp + W, acc1[i]);                                                               \
            float *ci = c + i * ldc;                                                               \
            for (int64_t j = 0; j < ncol; j++) ci[j] = add ? ci[j] + tmp[j] : tmp[j];              \
        }                                                                                          \
    }

/* Rows in blocks of MR, then the rest with a tile of that many rows (a constant each). */
#define RNN_TAIL(TILE, MR, n)                                                                      \
    case n:                                                                                        \
        if (n < MR) TILE(n, k, a + i * ars, ars, acs, p, c + i * ldc, ldc, ncol, add);             \
        break;
#define RNN_PANEL_BODY(TILE, MR)                                                                   \
    int64_t i = 0;                                                                                 \
    for (; i + MR <= m; i += MR)                                                                   \
        TILE(MR, k, a + i * ars, ars, acs, p, c + i * ldc, ldc, ncol, add);                        \
    switch (m - i) {                                                                               \
        RNN_TAIL(TILE, MR, 7)                                                                      \
        RNN_TAIL(TILE, MR, 6)                                                                      \
        RNN_TAIL(TILE, MR, 5)                                                                      \
        RNN_TAIL(TILE, MR, 4)                                                                      \
        RNN_TAIL(TILE, MR, 3) RNN_TAIL(TILE, MR, 2) RNN_TAIL(TILE, MR, 1) default : break;         \
    }

/* One kernel family: its tile (always inlined, rows a constant) and its panel function. */
#define RNN_KERNEL_FAMILY(NAME, TARGET, V, W, MR, SETZERO, LOAD, STORE, SET1, FMA, ADD)            \
    __attribute__((target(TARGET), always_inline)) static inline void rnn_tile_##NAME(             \
        int mr, int64_t k, const float *a, int64_t ars, int64_t acs, const float *p, float *c,     \
        int64_t ldc, int64_t ncol, bool add) {                                                     \
        RNN_TILE_BODY(V, W, MR, SETZERO, LOAD, STORE, SET1, FMA, ADD)                              \
    }                                                                                              \
    __attribute__((target(TARGET))) static void rnn_panel_##NAME(                                  \
        int64_t m, int64_t k, const float *a, int64_t ars, int64_t acs, const float *p, float *c,  \
        int64_t ldc, int64_t ncol, bool add) {                                                     \
        RNN_PANEL_BODY(rnn_tile_##NAME, MR)                                                        \
    }                                                                                              \
    static const rnn_gemm_kernel rnn_gemm_##NAME = {2 * W, rnn_panel_##NAME};

/* AVX2 + FMA: 6 rows x 16 columns (12 accumulators of the 16 ymm registers). */
RNN_KERNEL_FAMILY(avx2, "avx2,fma", __m256, 8, 6, _mm256_setzero_ps, _mm256_loadu_ps,
                  _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps)
/* AVX-512: 8 rows x 32 columns (16 accumulators of the 32 zmm registers). */
RNN_KERNEL_FAMILY(avx512, "avx512f", __m512, 16, 8, _mm512_setzero_ps, _mm512_loadu_ps,
                  _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps)
#endif

/* The same instruction set as tg_gemm (so tg_gemm_force_portable covers these too). */
static const rnn_gemm_kernel *rnn_gemm_pick(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(TG_DOUBLE)
    const char *name = tg_gemm_kernel_name();
    if (!strncmp(name, "avx512", 6)) return &rnn_gemm_avx512;
    if (!strncmp(name, "avx2", 4)) return &rnn_gemm_avx2;
#endif
    return &rnn_gemm_portable;
}

/* One panel: columns [j0, j0 + nr) of op(W) (k x n, zero past n) into out (k, nr).
 * trans: op(W) = Wᵀ, W stored n x k; else W itself, k x n. Row stride ldw. */
static void pack_panel(const tg_real *w, int64_t ldw, bool trans, int64_t k, int64_t n, int64_t j0,
                       int64_t nr, tg_real *out) {
    const int64_t cols = n - j0 < nr ? n - j0 : nr;
    if (trans) {
        for (int64_t jj = 0; jj < cols; jj++)
            for (int64_t kk = 0; kk < k; kk++) out[kk * nr + jj] = w[(j0 + jj) * ldw + kk];
    } else if (cols == nr) {
        for (int64_t kk = 0; kk < k; kk++)
            memcpy(out + kk * nr, w + kk * ldw + j0, (size_t)nr * sizeof(tg_real));
    } else {
        for (int64_t kk = 0; kk < k; kk++)
            for (int64_t jj = 0; jj < cols; jj++) out[kk * nr + jj] = w[kk * ldw + j0 + jj];
    }
    for (int64_t kk = 0; kk < k; kk++)
        for (int64_t jj = cols; jj < nr; jj++) out[kk * nr + jj] = 0;
}

/* All panels of op(W) (k x n), panel q at q·k·nr; ⌈n / nr⌉·k·nr values, in the arena.
 * The panels are split between the threads (a copy: any split gives the same bits). */
typedef struct rnn_pack {
    const tg_real *w;
    int64_t ldw, k, n, nr;
    bool trans;
    tg_real *out;
} rnn_pack;

static void pack_panels(int64_t q0, int64_t q1, void *ctx) {
    const rnn_pack *pk = ctx;
    for (int64_t q = q0; q < q1; q++)
        pack_panel(pk->w, pk->ldw, pk->trans, pk->k, pk->n, q * pk->nr, pk->nr,
                   pk->out + q * pk->k * pk->nr);
}

static tg_real *pack_all(tg_tape *tape, const rnn_gemm_kernel *gk, const tg_real *w, int64_t ldw,
                         bool trans, int64_t k, int64_t n) {
    const int64_t nr = gk->nr, panels = (n + nr - 1) / nr;
    rnn_pack pk = {
        w, ldw, k, n, nr, trans, tg_tape_alloc(tape, (size_t)(panels * k * nr) * sizeof(tg_real))};
    tg_parallel_for(panels, k * n >= ((int64_t)1 << 16) ? 1 : panels, pack_panels, &pk);
    return pk.out;
}

/* C[i0:i1, 0:n] (+)= A[i0:i1, 0:k]·op(W) from its panels p (pack_all). Rows in blocks of
 * RNN_ROW_BLOCK, each block through every panel: a panel serves the block's row tiles
 * from L1/L2, and the block's rows of A stay in L2. */
#define RNN_ROW_BLOCK 48 /* a multiple of both kernels' row tiles (8 and 6) */
static void packed_rows(const rnn_gemm_kernel *gk, int64_t i0, int64_t i1, int64_t k,
                        const tg_real *a, int64_t lda, const tg_real *p, int64_t n, tg_real *c,
                        int64_t ldc, bool add) {
    const int64_t nr = gk->nr;
    for (int64_t ib = i0; ib < i1; ib += RNN_ROW_BLOCK) {
        const int64_t rows = i1 - ib < RNN_ROW_BLOCK ? i1 - ib : RNN_ROW_BLOCK;
        for (int64_t q = 0; q * nr < n; q++)
            gk->fn(rows, k, a + ib * lda, lda, 1, p + q * k * nr, c + ib * ldc + q * nr, ldc,
                   n - q * nr < nr ? n - q * nr : nr, add);
    }
}

/* A whole-sequence product (T·B rows) from packed panels, the row blocks split between
 * the threads (each element computed by one thread: the same bits at any count). */
typedef struct rnn_product {
    const rnn_gemm_kernel *gk;
    int64_t m, k, n, lda, ldc;
    const tg_real *a, *p;
    tg_real *c;
    bool add;
} rnn_product;

static void product_blocks(int64_t u0, int64_t u1, void *ctx) {
    const rnn_product *g = ctx;
    const int64_t i1 = u1 * RNN_ROW_BLOCK < g->m ? u1 * RNN_ROW_BLOCK : g->m;
    packed_rows(g->gk, u0 * RNN_ROW_BLOCK, i1, g->k, g->a, g->lda, g->p, g->n, g->c, g->ldc,
                g->add);
}

static void packed_product(rnn_product g) {
    const int64_t units = (g.m + RNN_ROW_BLOCK - 1) / RNN_ROW_BLOCK;
    tg_parallel_for(units, g.m * g.n * g.k >= ((int64_t)1 << 20) ? 1 : units, product_blocks, &g);
}

/* A weight gradient: C (M x N) += Aᵀ·Bm over K rows, A (K x M, row stride lda) and Bm
 * (K x N) row-major (dW = DAᵀ·X: M = G·H, K = T·B). Packed: A read in place, transposed (its
 * columns are C's rows); k in blocks of RNN_K_BLOCK, each block's sum added to C in order;
 * C's row blocks split between the threads. Bm is packed one (k block, panel) at a time into
 * a buffer on the thread's stack, each thread packing the panels it reads: a packed copy of
 * all of Bm would take K·N values of the arena, as much as X or H_prev itself, for a copy
 * that costs 1/M of the product. Without packing (gk NULL): tg_gemm. */
#define RNN_K_BLOCK 256
#define RNN_NR_MAX  (128 / (int64_t)sizeof(tg_real)) /* the widest panel: 32 floats */
typedef struct rnn_wgrad {
    const rnn_gemm_kernel *gk;
    int64_t M, N, K, lda;
    const tg_real *a, *bm;
    tg_real *c;
} rnn_wgrad;

static void wgrad_blocks(int64_t u0, int64_t u1, void *ctx) {
    const rnn_wgrad *g = ctx;
    const int64_t nr = g->gk->nr, M = g->M, N = g->N, K = g->K;
    const int64_t i0 = u0 * RNN_ROW_BLOCK, i1 = u1 * RNN_ROW_BLOCK < M ? u1 * RNN_ROW_BLOCK : M;
    _Alignas(64) tg_real panel[RNN_K_BLOCK * RNN_NR_MAX];
    for (int64_t kb = 0; kb < K; kb += RNN_K_BLOCK) {
        const int64_t kc = K - kb < RNN_K_BLOCK ? K - kb : RNN_K_BLOCK;
        for (int64_t q = 0; q * nr < N; q++) {
            pack_panel(g->bm + kb * N, N, false, kc, N, q * nr, nr, panel);
            g->gk->fn(i1 - i0, kc, g->a + kb * g->lda + i0, 1, g->lda, panel,
                      g->c + i0 * N + q * nr, N, N - q * nr < nr ? N - q * nr : nr, true);
        }
    }
}

static void weight_grad(const rnn_gemm_kernel *gk, int64_t M, int64_t N, int64_t K,
                        const tg_real *a, int64_t lda, const tg_real *bm, tg_real *c) {
    if (!gk) {
        tg_gemm(true, false, M, N, K, 1, a, lda, bm, N, 1, c, N);
        return;
    }
    if (gk->nr > RNN_NR_MAX)
        tg_fail("rnn: panel width %lld > %lld", (long long)gk->nr, (long long)RNN_NR_MAX);
    rnn_wgrad g = {gk, M, N, K, lda, a, bm, c};
    const int64_t units = (M + RNN_ROW_BLOCK - 1) / RNN_ROW_BLOCK;
    tg_parallel_for(units, M * N * K >= ((int64_t)1 << 20) ? 1 : units, wgrad_blocks, &g);
}

/* W_hhᵀ panels for the forward, per gate block: panel q of block g at (q·G + g)·H·nr.
 * Panels [q0, q1) (ctx: the run; wf is the output). */
static void pack_forward_panels(int64_t q0, int64_t q1, void *ctx) {
    const rnn_run *r = ctx;
    const int64_t H = r->H, G = r->G, nr = r->gk->nr;
    for (int64_t q = q0; q < q1; q++)
        for (int64_t g = 0; g < G; g++)
            pack_panel(r->w_hh + g * H * H, H, true, H, H, q * nr, nr,
                       r->wf + (q * G + g) * H * nr);
}

/* gh = h_prev·W_hhᵀ for unit panel q (units [q·nr, q·nr + nr)) of every gate block, into
 * tile (B, G·nr): gate block g at columns [g·nr, g·nr + nr). */
static void rnn_step_product(const rnn_run *r, int64_t q, const tg_real *h_prev, tg_real *tile) {
    const int64_t H = r->H, G = r->G, nr = r->gk->nr;
    for (int64_t g = 0; g < G; g++)
        r->gk->fn(r->B, H, h_prev, H, 1, r->wf + (q * G + g) * H * nr, tile + g * nr, G * nr, nr,
                  false);
}

void rnn_step_product_back(const rnn_run *r, int64_t b0, int64_t b1, const tg_real *da_h,
                           tg_real *dh_prev, bool add) {
    const int64_t H = r->H, GH = r->G * H;
    packed_rows(r->gk, b0, b1, GH, da_h, GH, r->wb, H, dh_prev, H, add);
}

/* Packed: unit panels [q0, q1), each its product (all gate blocks) then its gates. */
static void gated_panels(int64_t q0, int64_t q1, void *ctx) {
    const rnn_step_ctx *c = ctx;
    const rnn_run *r = c->r;
    const int64_t B = r->B, H = r->H, G = r->G, nr = r->gk->nr;
    const tg_real *h_prev = rnn_h(r, rnn_prev_slot(r, c->t));
    const tg_real *gi = rnn_gi(r, c->t);
    const int64_t line = 64 / (int64_t)sizeof(tg_real);
    for (int64_t q = q0; q < q1; q++) {
        tg_real *tile = r->work + q * B * G * nr;
#if defined(__GNUC__)
        /* The gates read this panel's columns of gi, written long before (out of cache):
         * fetch them while the product runs. */
        for (int64_t b = 0; b < B; b++)
            for (int64_t g = 0; g < G; g++)
                for (int64_t j = q * nr; j < q * nr + nr && j < H; j += line)
                    __builtin_prefetch(gi + (b * G + g) * H + j);
#endif
        rnn_step_product(r, q, h_prev, tile);
        c->gates(r, c->t, 0, B, q * nr, H - q * nr < nr ? H - q * nr : nr, tile, nr, G * nr);
    }
}

static void gated_rows(int64_t b0, int64_t b1, void *ctx) {
    const rnn_step_ctx *c = ctx;
    c->gates(c->r, c->t, b0, b1, 0, c->r->H, c->r->work, c->r->H, c->r->G * c->r->H);
}

void rnn_forward_gated(const rnn_run *r, int64_t t, rnn_gates_fn *gates) {
    const int64_t B = r->B, H = r->H, GH = r->G * H;
    rnn_step_ctx c = {.r = r, .t = t, .gates = gates};
    if (r->gk) { /* each thread: its unit panels, product and gates, no barrier between */
        tg_parallel_for(r->panels, rnn_step_grain(r, r->panels), gated_panels, &c);
        return;
    }
    /* gh = h_prev·W_hhᵀ for all the gate blocks at once: the step's one GEMM */
    tg_gemm(false, true, B, GH, H, 1, rnn_h(r, rnn_prev_slot(r, t)), H, r->w_hh, H, 0, r->work, GH);
    tg_parallel_for(B, rnn_row_grain(B, H), gated_rows, &c);
}

void rnn_backward_gated(const rnn_run *r, rnn_step_ctx *ctx, tg_range_fn rows, bool add) {
    const int64_t B = r->B, H = r->H, GH = r->G * H;
    tg_parallel_for(B, r->gk ? rnn_step_grain(r, B) : rnn_row_grain(B, H), rows, ctx);
    if (!r->gk) tg_gemm(false, false, B, H, GH, 1, ctx->da_h, GH, r->w_hh, H, add, ctx->dh_prev, H);
}

/* ---------------------------------------------------------------------------------------
 * Validation
 * ------------------------------------------------------------------------------------- */
static void check_matrix(const char *op, tg_cell_kind kind, const char *what, const tg_tensor *t,
                         int64_t rows, int64_t cols) {
    char d[160];
    if (!t) tg_fail("%s (%s): %s is missing", op, tg_cell_kind_name(kind), what);
    if (t->ndim != 2 || t->shape[0] != rows || (cols >= 0 && t->shape[1] != cols))
        tg_fail("%s (%s): %s %s should have shape (%lld, %lld)", op, tg_cell_kind_name(kind), what,
                tg_tensor_describe(t, d, sizeof d), (long long)rows,
                (long long)(cols >= 0 ? cols : t->shape[1]));
}

static void check_vector(const char *op, tg_cell_kind kind, const char *what, const tg_tensor *t,
                         int64_t n) {
    char d[160];
    if (t && (t->ndim != 1 || t->shape[0] != n))
        tg_fail("%s (%s): %s %s should have shape (%lld)", op, tg_cell_kind_name(kind), what,
                tg_tensor_describe(t, d, sizeof d), (long long)n);
}

/* Checks the weights against each other and returns H. */
int64_t tg_cell_weights_check(const char *op, tg_cell_kind kind, const tg_cell_weights *w) {
    char d[160];
    const int64_t G = tg_cell_gate_count(kind);
    if (!w || !w->w_ih || !w->w_hh)
        tg_fail("%s (%s): weight_ih and weight_hh are required", op, tg_cell_kind_name(kind));
    if (w->w_hh->ndim != 2 || w->w_hh->shape[0] % G != 0 || w->w_hh->shape[0] / G < 1 ||
        w->w_hh->shape[1] != w->w_hh->shape[0] / G)
        tg_fail("%s (%s): weight_hh %s should have shape (%lld·H, H)", op, tg_cell_kind_name(kind),
                tg_tensor_describe(w->w_hh, d, sizeof d), (long long)G);
    const int64_t H = w->w_hh->shape[1];
    check_matrix(op, kind, "weight_ih", w->w_ih, G * H, -1);
    check_vector(op, kind, "bias_ih", w->b_ih, G * H);
    check_vector(op, kind, "bias_hh", w->b_hh, G * H);
    return H;
}

static void check_state(const char *op, tg_cell_kind kind, const char *what, const tg_tensor *s,
                        int64_t B, int64_t H) {
    char d[160];
    if (s && (s->ndim != 2 || s->shape[0] != B || s->shape[1] != H))
        tg_fail("%s (%s): %s %s should have shape (%lld, %lld) (batch, hidden_size)", op,
                tg_cell_kind_name(kind), what, tg_tensor_describe(s, d, sizeof d), (long long)B,
                (long long)H);
}

void tg_cell_inputs_check(const char *op, tg_cell_kind kind, const tg_cell_weights *w,
                          const tg_tensor *x, int x_ndim, const tg_tensor *h, const tg_tensor *c) {
    char d[160], dw[160];
    const int64_t H = tg_cell_weights_check(op, kind, w);
    const char *k = tg_cell_kind_name(kind);
    if (!x || x->ndim != x_ndim)
        tg_fail("%s (%s): input %s should be %d-D (%s)", op, k,
                x ? tg_tensor_describe(x, d, sizeof d) : "NULL", x_ndim,
                x_ndim == 3 ? "steps, batch, input_size" : "batch, input_size");
    if (x->shape[x_ndim - 1] != w->w_ih->shape[1])
        tg_fail("%s (%s): input %s has %lld features but weight_ih %s expects input_size %lld", op,
                k, tg_tensor_describe(x, d, sizeof d), (long long)x->shape[x_ndim - 1],
                tg_tensor_describe(w->w_ih, dw, sizeof dw), (long long)w->w_ih->shape[1]);
    if (x_ndim == 3 && x->shape[0] < 1)
        tg_fail("%s (%s): input %s is an empty sequence", op, k,
                tg_tensor_describe(x, d, sizeof d));
    if (c && kind != TG_CELL_LSTM) tg_fail("%s (%s): a cell state c is only for LSTM", op, k);
    const int64_t B = x->shape[x_ndim - 2];
    check_state(op, kind, x_ndim == 3 ? "h0" : "h", h, B, H);
    check_state(op, kind, x_ndim == 3 ? "c0" : "c", c, B, H);
}

/* ---------------------------------------------------------------------------------------
 * The shared forward
 * ------------------------------------------------------------------------------------- */
static tg_real *arena_zeros(tg_tape *tape, int64_t n) {
    tg_real *p = tg_tape_alloc(tape, (size_t)(n > 0 ? n : 1) * sizeof(tg_real));
    memset(p, 0, (size_t)(n > 0 ? n : 1) * sizeof(tg_real));
    return p;
}

static rnn_run *run_forward(tg_tape *tape, tg_cell_kind kind, const tg_cell_weights *w,
                            const tg_tensor *x, int64_t T, int64_t B, const tg_tensor *h0,
                            const tg_tensor *c0, bool reverse, bool keep) {
    const rnn_cell_impl *impl = impl_of(kind);
    rnn_run *r = tg_tape_alloc(tape, sizeof *r);
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->T = T, r->B = B, r->I = w->w_ih->shape[1], r->H = w->w_hh->shape[1];
    r->G = tg_cell_gate_count(kind);
    r->reverse = reverse;
    const int64_t H = r->H, GH = r->G * H, BH = B * H;
    r->w_ih = w->w_ih->data, r->w_hh = w->w_hh->data;
    r->b_ih = w->b_ih ? w->b_ih->data : arena_zeros(tape, GH);
    r->b_hh = w->b_hh ? w->b_hh->data : arena_zeros(tape, GH);

    if (impl->packed && T >= 2) r->gk = rnn_gemm_pick(); /* the packed products (see below) */

    /* What outlives the forward first: the states and the activations the backward reads. */
    const int64_t first = reverse ? T : 0; /* the slot of h0 */
    r->hs = tg_tape_alloc(tape, (size_t)((T + 1) * BH) * sizeof(tg_real));
    if (h0)
        memcpy(rnn_h(r, first), h0->data, (size_t)BH * sizeof(tg_real));
    else
        memset(rnn_h(r, first), 0, (size_t)BH * sizeof(tg_real));
    if (kind == TG_CELL_LSTM) {
        r->cs = tg_tape_alloc(tape, (size_t)((T + 1) * BH) * sizeof(tg_real));
        if (c0)
            memcpy(rnn_c(r, first), c0->data, (size_t)BH * sizeof(tg_real));
        else
            memset(rnn_c(r, first), 0, (size_t)BH * sizeof(tg_real));
    }
    /* without a backward to come, one slot of activations is reused by every step */
    r->act_stride = keep ? impl->saved * BH : 0;
    r->acts =
        tg_tape_alloc(tape, (size_t)((keep ? T : 1) * impl->saved * BH + 1) * sizeof(tg_real));
    /* The input projections outlive the forward only to become the backward's da_i (the
     * backward reads the saved activations, never gi): without a backward they are scratch,
     * given back below with the packed weights and the work tile. */
    tg_arena *arena = tg_tape_arena(tape);
    tg_arena_mark scratch = tg_arena_get_mark(arena);
    r->gi = tg_tape_alloc(tape, (size_t)(T * B * GH + 1) * sizeof(tg_real));
    if (keep) scratch = tg_arena_get_mark(arena);

    /* the input projections of every step: ONE GEMM, (T·B, I)·(G·H, I)ᵀ */
    if (r->gk) /* X read in place, W_ih packed once */
        packed_product((rnn_product){r->gk, T * B, r->I, GH, r->I, GH, x->data,
                                     pack_all(tape, r->gk, r->w_ih, r->I, true, r->I, GH), r->gi,
                                     false});
    else
        tg_gemm(false, true, T * B, GH, r->I, 1, x->data, r->I, r->w_ih, r->I, 0, r->gi, GH);

    /* W_hh packed once for all the steps (a single step: tg_gemm's own packing is as cheap) */
    int64_t work = B * GH;
    if (r->gk) {
        r->panels = (H + r->gk->nr - 1) / r->gk->nr;
        r->wf = tg_tape_alloc(tape, (size_t)(r->panels * GH * r->gk->nr) * sizeof(tg_real));
        tg_parallel_for(r->panels, rnn_step_grain(r, r->panels), pack_forward_panels, r);
        work = r->panels * B * r->G * r->gk->nr;
    }
    r->work = tg_tape_alloc(tape, (size_t)(work + 1) * sizeof(tg_real));

    for (int64_t s = 0; s < T; s++) impl->forward_step(r, reverse ? T - 1 - s : s);
    /* the forward's scratch goes back to the arena: the backward packs what it needs */
    tg_arena_rewind(arena, scratch);
    r->wf = r->work = NULL;
    if (!keep) r->gi = NULL;
    r->out_seq = r->out_h = r->out_c = -1;
    return r;
}

/* A tensor header over memory the run owns (outputs are views of hs / cs: no copy). */
static tg_tensor *view_of(tg_tape *tape, tg_real *data, int ndim, const int64_t *shape) {
    return tg_tape_tensor_view(tape, data, ndim, shape);
}

static bool needs_grad(tg_tape *tape, tg_tensor *const *in, int n) {
    if (!tg_tape_is_recording(tape)) return false;
    for (int i = 0; i < n; i++)
        if (in[i] && in[i]->requires_grad) return true;
    return false;
}

/* ---------------------------------------------------------------------------------------
 * The shared backward
 * ------------------------------------------------------------------------------------- */
/* db[j] += Σ_rows a[row, j] for the columns [j0, j1) */
RNN_ROW_KERNEL
static void column_sums(tg_real *db, const tg_real *a, int64_t rows, int64_t lda, int64_t j0,
                        int64_t j1) {
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = j0; j < j1; j++) db[j] += a[i * lda + j];
}

typedef struct rnn_colsum {
    tg_real *db;
    const tg_real *a;
    int64_t rows, cols, lda;
} rnn_colsum;

/* Column blocks of 64 split between the threads; each column summed in row order. */
static void column_sum_blocks(int64_t u0, int64_t u1, void *ctx) {
    const rnn_colsum *c = ctx;
    column_sums(c->db, c->a, c->rows, c->lda, u0 * 64, u1 * 64 < c->cols ? u1 * 64 : c->cols);
}

/* db[j] += Σ_rows a[row, j] for j < cols, rows lda apart */
static void add_column_sums(tg_real *db, const tg_real *a, int64_t rows, int64_t cols,
                            int64_t lda) {
    rnn_colsum c = {db, a, rows, cols, lda};
    const int64_t units = (cols + 63) / 64;
    tg_parallel_for(units, rows * cols >= ((int64_t)1 << 18) ? 1 : units, column_sum_blocks, &c);
}

static void rnn_backward(tg_tape *tape, tg_node *node) {
    rnn_run *r = node->saved;
    const rnn_cell_impl *impl = impl_of(r->kind);
    tg_tensor *x = node->in[0], *h0 = node->in[1], *c0 = node->in[2];
    tg_tensor *w_ih = node->in[3], *w_hh = node->in[4], *b_ih = node->in[5], *b_hh = node->in[6];
    const int64_t T = r->T, B = r->B, I = r->I, H = r->H, GH = r->G * H, BH = B * H;
    const tg_real *dout = r->out_seq >= 0 ? node->out[r->out_seq]->grad : NULL;
    const tg_real *dh_n = r->out_h >= 0 ? node->out[r->out_h]->grad : NULL;
    const tg_real *dc_n = r->out_c >= 0 ? node->out[r->out_c]->grad : NULL;
    tg_arena *arena = tg_tape_arena(tape);

    /* The steps write da_i over gi: the gates were computed from gi in the forward, and the
     * backward reads only the saved activations and states (a second backward of the same
     * tape overwrites it again, with the same values). */
    tg_real *da_i = r->gi;
    /* GRU: da_h equals da_i but in its last (n) block. Each step writes its whole da_h into
     * one (B, G·H) tile for its product with W_hh, and keeps only the n block of every step
     * (r->dhn, T·B·H) for dW_hh and db_hh: the other blocks are da_i's. */
    const int64_t shared = impl->separate_da_h ? GH - H : GH; /* columns da_h shares with da_i */
    tg_real *da_h = da_i;
    if (impl->separate_da_h) {
        r->dhn = tg_tape_alloc(tape, (size_t)(T * BH + 1) * sizeof(tg_real));
        da_h = tg_tape_alloc(tape, (size_t)(B * GH + 1) * sizeof(tg_real));
    }
    /* what only the steps use, given back before the weight gradients */
    const tg_arena_mark steps = tg_arena_get_mark(arena);
    tg_real *dh = arena_zeros(tape, BH), *dh_prev = arena_zeros(tape, BH);
    tg_real *dc = r->kind == TG_CELL_LSTM ? arena_zeros(tape, BH) : NULL;
    if (dh_n) memcpy(dh, dh_n, (size_t)BH * sizeof(tg_real));
    if (dc && dc_n) memcpy(dc, dc_n, (size_t)BH * sizeof(tg_real));
    r->work = tg_tape_alloc(tape, (size_t)(B * GH + 1) * sizeof(tg_real)); /* the steps' tile */
    if (r->gk) /* W_hh packed for the steps' products da_h·W_hh */
        r->wb = pack_all(tape, r->gk, r->w_hh, H, false, GH, H);

    /* reverse processing order: the last step computed comes first */
    for (int64_t s = 0; s < T; s++) {
        const int64_t t = r->reverse ? s : T - 1 - s;
        if (dout)
            for (int64_t k = 0; k < BH; k++) dh[k] += dout[t * BH + k];
        tg_real *da_h_t = impl->separate_da_h ? da_h : da_h + t * B * GH;
        impl->backward_step(r, t, dh, dc, da_i + t * B * GH, da_h_t, dh_prev);
        tg_real *tmp = dh; /* dh_{t-1} becomes the next step's dh */
        dh = dh_prev, dh_prev = tmp;
    }
    tg_real *g;
    if ((g = tg_tape_grad(tape, h0)))
        for (int64_t k = 0; k < BH; k++) g[k] += dh[k];
    if ((g = tg_tape_grad(tape, c0)))
        for (int64_t k = 0; k < BH; k++) g[k] += dc[k];
    tg_arena_rewind(arena, steps);
    r->work = r->wb = NULL;

    /* the gradients that sum over steps, as products over all T·B rows */
    if ((g = tg_tape_grad(tape, w_ih))) /* dW_ih (G·H, I) += DAᵀ·X */
        weight_grad(r->gk, GH, I, T * B, da_i, GH, x->data, g);
    if ((g = tg_tape_grad(tape, x)) && r->gk) /* dX (T·B, I) += DA·W_ih, DA read in place */
        packed_product((rnn_product){r->gk, T * B, GH, I, GH, I, da_i,
                                     pack_all(tape, r->gk, r->w_ih, I, false, GH, I), g, true});
    else if (g) /* dX (T·B, I) += DA·W_ih */
        tg_gemm(false, false, T * B, I, GH, 1, da_i, GH, r->w_ih, I, 1, g, I);
    if ((g = tg_tape_grad(tape, b_ih))) add_column_sums(g, da_i, T * B, GH, GH);
    /* H_prev = the T slots of hs before each step (rnn_internal.h) */
    const tg_real *h_prev = rnn_h(r, r->reverse ? 1 : 0);
    if ((g = tg_tape_grad(tape, w_hh)) && impl->weight_hh_grad)
        impl->weight_hh_grad(r, da_h, g);
    else if (g) { /* dW_hh (G·H, H) += DA_hᵀ·H_prev, the n block of the GRU from dhn */
        weight_grad(r->gk, shared, H, T * B, da_i, GH, h_prev, g);
        if (shared < GH) weight_grad(r->gk, H, H, T * B, r->dhn, H, h_prev, g + shared * H);
    }
    if ((g = tg_tape_grad(tape, b_hh))) {
        add_column_sums(g, da_i, T * B, shared, GH);
        if (shared < GH) add_column_sums(g + shared, r->dhn, T * B, H, H);
    }
    r->dhn = NULL;
}

/* ---------------------------------------------------------------------------------------
 * The public ops
 * ------------------------------------------------------------------------------------- */
tg_rnn_state tg_cell_step_fused(tg_tape *tape, tg_cell_kind kind, const tg_cell_weights *w,
                                tg_tensor *x, tg_tensor *h, tg_tensor *c) {
    tg_cell_entry_check(tape, __func__, w, x, h, c, (const char *const[]){"h", "c"});
    tg_cell_inputs_check("tg_cell_step_fused", kind, w, x, 2, h, c);
    const int64_t B = x->shape[0], H = w->w_hh->shape[1];

    tg_tensor *in[7] = {x, h, c, w->w_ih, w->w_hh, w->b_ih, w->b_hh};
    rnn_run *r = run_forward(tape, kind, w, x, 1, B, h, c, false, needs_grad(tape, in, 7));
    tg_rnn_state st = {view_of(tape, rnn_h(r, 1), 2, (int64_t[]){B, H}), NULL};
    if (kind == TG_CELL_LSTM) st.c = view_of(tape, rnn_c(r, 1), 2, (int64_t[]){B, H});
    r->out_h = 0;
    r->out_c = st.c ? 1 : -1;
    static const char *const names[] = {"rnn_tanh_cell", "rnn_relu_cell", "gru_cell",
                                        "gru_cho_cell", "lstm_cell"};
    tg_node *node = tg_tape_record(tape, names[kind], rnn_backward, 7, in, st.c ? 2 : 1,
                                   (tg_tensor *[]){st.h, st.c});
    if (node) node->saved = r;
    return st;
}

tg_rnn_result tg_rnn_sequence_fused(tg_tape *tape, tg_cell_kind kind, const tg_cell_weights *w,
                                    tg_tensor *x, tg_tensor *h0, tg_tensor *c0, bool reverse) {
    tg_cell_entry_check(tape, __func__, w, x, h0, c0, (const char *const[]){"h0", "c0"});
    tg_cell_inputs_check("tg_rnn_sequence_fused", kind, w, x, 3, h0, c0);
    const int64_t T = x->shape[0], B = x->shape[1], H = w->w_hh->shape[1];

    tg_tensor *in[7] = {x, h0, c0, w->w_ih, w->w_hh, w->b_ih, w->b_hh};
    rnn_run *r = run_forward(tape, kind, w, x, T, B, h0, c0, reverse, needs_grad(tape, in, 7));
    const int64_t last = reverse ? 0 : T; /* the slot of h_n */
    tg_rnn_result res = {0};
    res.output = view_of(tape, rnn_h(r, reverse ? 0 : 1), 3, (int64_t[]){T, B, H});
    res.h_n = view_of(tape, rnn_h(r, last), 2, (int64_t[]){B, H});
    if (kind == TG_CELL_LSTM) res.c_n = view_of(tape, rnn_c(r, last), 2, (int64_t[]){B, H});
    r->out_seq = 0, r->out_h = 1, r->out_c = res.c_n ? 2 : -1;
    static const char *const names[] = {"rnn_tanh_sequence", "rnn_relu_sequence", "gru_sequence",
                                        "gru_cho_sequence", "lstm_sequence"};
    tg_node *node = tg_tape_record(tape, names[kind], rnn_backward, 7, in, res.c_n ? 3 : 2,
                                   (tg_tensor *[]){res.output, res.h_n, res.c_n});
    if (node) node->saved = r;
    return res;
}
