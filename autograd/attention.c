/* The attention ops: the fused scaled-dot-product attention of all heads (behind
 * nn.MultiheadAttention), the fused additive (Bahdanau) attention core, and Luong
 * dot-product attention from single ops. The fused ops' forward and backward sit side by
 * side with their derivations; the modules that own the projections are in nn/attention.c. */
#include "tensor/vmath.h"

#include "tapegrad/attention_ops.h"
#include "tapegrad/kernels.h"

#include <math.h>
#include <string.h>

void tg_mha_masks_check(const char *op, const tg_mha_masks *masks, int64_t N, int64_t num_heads,
                        int64_t L, int64_t S) {
    TG_CHECK_ARG(op);
    const int64_t h = num_heads;
    char desc[160];
    const tg_tensor *am = masks ? masks->attn_mask : NULL;
    if (am) {
        tg_tensor_check(op, "masks->attn_mask", am);
        const bool ok2 = am->ndim == 2 && am->shape[0] == L && am->shape[1] == S;
        const bool ok3 =
            am->ndim == 3 && am->shape[0] == N * h && am->shape[1] == L && am->shape[2] == S;
        if (!ok2 && !ok3)
            tg_fail("%s: attn_mask %s must be (%lld, %lld) or (%lld, %lld, %lld)", op,
                    tg_tensor_describe(am, desc, sizeof desc), (long long)L, (long long)S,
                    (long long)(N * h), (long long)L, (long long)S);
    }
    const tg_tensor *kpm = masks ? masks->key_padding_mask : NULL;
    if (kpm) tg_tensor_check(op, "masks->key_padding_mask", kpm);
    if (kpm && (kpm->ndim != 2 || kpm->shape[0] != N || kpm->shape[1] != S))
        tg_fail("%s: key_padding_mask %s must be (%lld, %lld)", op,
                tg_tensor_describe(kpm, desc, sizeof desc), (long long)N, (long long)S);
}

/* ---- multi-head scaled-dot-product attention: scores, masks, softmax, dropout and the
 * weighted sum of every head, one node ----
 * Head j of batch n reads its q, k, v columns [off + j·d, off + (j+1)·d) in place from the
 * projections (no split or merge copies): position l of a (L, N, W) seq-first tensor at
 * row l·N + n, of a batch-first (N, L, W) one at row n·L + l. With b = n·heads + j:
 *   S_b = α·q_b k_bᵀ + masks (α = 1/√d),  P_b = softmax(S_b),  A_b = P_b ⊙ M_b (dropout),
 *   o_b = A_b v_b, written into the (L, N, E) (or (N, L, E)) output at head j's columns.
 * Backward, from do_b:
 *   dv_b += A_bᵀ do_b,  dA_b = do_b v_bᵀ,  dP_b = dA_b ⊙ M_b,
 *   dS_b = P_b ⊙ (dP_b − rowsum(dP_b ⊙ P_b)),  dq_b += α dS_b k_b,  dk_b += α dS_bᵀ q_b.
 * Only P is kept for the backward (B·L·S values): S_b, A_b, dA_b and dS_b live one head at
 * a time in a worker's scratch, A_b recomputed from P_b and the dropout key (a pure
 * function of the element index). The heads are split into one contiguous range per
 * worker; every head writes only its own columns, so results do not depend on the split. */
typedef struct sdpa_job {
    const tg_real *q, *k, *v, *am, *kpm;
    int64_t off[3], w[3];             /* column offsets of q, k, v; row widths of their tensors */
    int64_t N, L, S, h, d, am_stride; /* am_stride: L·S for a per-head mask, else 0 */
    int64_t workers;                  /* head ranges, each with `per_worker`·L·S of scratch */
    bool batch_first, am_bool, kpm_bool, drop;
    tg_real alpha;
    tg_dropout_key key;
    tg_real *P, *out, *scratch; /* forward (scratch: the workers', rewound with the arena) */
    const tg_real *dout;        /* backward */
    tg_real *dq, *dk, *dv;
} sdpa_job;

/* Offset of position 0 of batch n, and the stride between positions, in a tensor with
 * rows of width w. */
static int64_t sdpa_base(const sdpa_job *j, int64_t n, int64_t len, int64_t w) {
    return j->batch_first ? n * len * w : n * w;
}
static int64_t sdpa_ld(const sdpa_job *j, int64_t w) { return j->batch_first ? w : j->N * w; }

/* Worker w's heads [b0, b1): an even split of the N·heads heads. */
static void sdpa_heads_of(const sdpa_job *j, int64_t w, int64_t *b0, int64_t *b1) {
    const int64_t B = j->N * j->h;
    *b0 = B * w / j->workers, *b1 = B * (w + 1) / j->workers;
}

/* dst = src ⊙ M for the L·S elements of head b (the mask at flat indices b·L·S + i, as the
 * forward drew it). */
TG_VEC_KERNEL static void sdpa_drop(const sdpa_job *j, int64_t b, const tg_real *restrict src,
                                    tg_real *restrict dst) {
    const int64_t LS = j->L * j->S, base = b * LS;
    const tg_dropout_key key = j->key;
    for (int64_t p0 = base; p0 < base + LS;) {
        const int64_t end = tg_dropout_piece_end(p0, base + LS);
        const uint32_t k1 = tg_dropout_piece_k1(&key, p0);
        for (int64_t i = p0; i < end; i++)
            dst[i - base] = src[i - base] * tg_dropout_factor_lo(&key, k1, (uint32_t)i);
        p0 = end;
    }
}

TG_VEC_KERNEL static void sdpa_forward_heads(int64_t w0, int64_t w1, void *ctx) {
    const sdpa_job *j = ctx;
    const int64_t L = j->L, S = j->S, d = j->d, E = j->h * d;
    for (int64_t w = w0; w < w1; w++) {
        int64_t b0, b1;
        sdpa_heads_of(j, w, &b0, &b1);
        tg_real *sc = j->scratch + w * 2 * L * S, *A = sc + L * S;
        for (int64_t b = b0; b < b1; b++) {
            const int64_t n = b / j->h, c = (b % j->h) * d;
            const tg_real *q = j->q + sdpa_base(j, n, L, j->w[0]) + j->off[0] + c;
            const tg_real *k = j->k + sdpa_base(j, n, S, j->w[1]) + j->off[1] + c;
            const tg_real *v = j->v + sdpa_base(j, n, S, j->w[2]) + j->off[2] + c;
            tg_real *P = j->P + b * L * S;
            tg_gemm(false, true, L, S, d, j->alpha, q, sdpa_ld(j, j->w[0]), k, sdpa_ld(j, j->w[1]),
                    0, sc, S);
            for (int64_t l = 0; l < L; l++) {
                tg_real *row = sc + l * S;
                if (j->am) {
                    const tg_real *m = j->am + (j->am_stride ? b * j->am_stride : 0) + l * S;
                    for (int64_t s = 0; s < S; s++)
                        row[s] = j->am_bool ? (m[s] != 0 ? -INFINITY : row[s]) : row[s] + m[s];
                }
                if (j->kpm) {
                    const tg_real *m = j->kpm + n * S;
                    for (int64_t s = 0; s < S; s++)
                        row[s] = j->kpm_bool ? (m[s] != 0 ? -INFINITY : row[s]) : row[s] + m[s];
                }
                tg_vsoftmax_row(row, P + l * S, S);
            }
            if (j->drop) sdpa_drop(j, b, P, A);
            tg_gemm(false, false, L, d, S, 1, j->drop ? A : P, S, v, sdpa_ld(j, j->w[2]), 0,
                    j->out + sdpa_base(j, n, L, E) + c, sdpa_ld(j, E));
        }
    }
}

TG_VEC_KERNEL static void sdpa_backward_heads(int64_t w0, int64_t w1, void *ctx) {
    const sdpa_job *j = ctx;
    const int64_t L = j->L, S = j->S, d = j->d, E = j->h * d;
    const int64_t ldq = sdpa_ld(j, j->w[0]), ldk = sdpa_ld(j, j->w[1]), ldv = sdpa_ld(j, j->w[2]);
    for (int64_t w = w0; w < w1; w++) {
        int64_t b0, b1;
        sdpa_heads_of(j, w, &b0, &b1);
        tg_real *A = j->scratch + w * 3 * L * S, *dA = A + L * S, *dS = dA + L * S;
        for (int64_t b = b0; b < b1; b++) {
            const int64_t n = b / j->h, c = (b % j->h) * d;
            const int64_t qo = sdpa_base(j, n, L, j->w[0]) + j->off[0] + c,
                          ko = sdpa_base(j, n, S, j->w[1]) + j->off[1] + c,
                          vo = sdpa_base(j, n, S, j->w[2]) + j->off[2] + c;
            const tg_real *dout = j->dout + sdpa_base(j, n, L, E) + c;
            const tg_real *P = j->P + b * L * S;
            if (j->dv) {
                if (j->drop) sdpa_drop(j, b, P, A);
                tg_gemm(true, false, S, d, L, 1, j->drop ? A : P, S, dout, sdpa_ld(j, E), 1,
                        j->dv + vo, ldv);
            }
            if (!j->dq && !j->dk) continue;
            tg_gemm(false, true, L, S, d, 1, dout, sdpa_ld(j, E), j->v + vo, ldv, 0, dA, S);
            tg_real *dP = dA, *g = dS; /* dP = dA ⊙ M, then g = dS */
            if (j->drop) {
                sdpa_drop(j, b, dA, dS);
                dP = dS, g = dA;
            }
            for (int64_t l = 0; l < L; l++)
                tg_vsoftmax_row_backward(P + l * S, dP + l * S, g + l * S, S, false);
            if (j->dq)
                tg_gemm(false, false, L, d, S, j->alpha, g, S, j->k + ko, ldk, 1, j->dq + qo, ldq);
            if (j->dk)
                tg_gemm(true, false, S, d, L, j->alpha, g, S, j->q + qo, ldq, 1, j->dk + ko, ldk);
        }
    }
}
static void sdpa_backward(tg_tape *tape, tg_node *node) {
    sdpa_job j = *(const sdpa_job *)node->saved;
    j.dout = node->out[0]->grad;
    j.dq = tg_tape_grad(tape, node->in[0]);
    j.dk = tg_tape_grad(tape, node->in[1]);
    j.dv = tg_tape_grad(tape, node->in[2]);
    j.scratch = tg_tape_alloc(tape, (size_t)(3 * j.workers * j.L * j.S) * sizeof(tg_real));
    tg_parallel_for(j.workers, 1, sdpa_backward_heads, &j);
}

/* q, k, v are 3-D, agree on the batch (and k, v on the source length), and hold their heads'
 * E columns where the layout says. */
static void check_heads(const char *op, const tg_tensor *q, const tg_tensor *k, const tg_tensor *v,
                        const tg_mha_layout *ly, tg_real dropout) {
    char a[160], b[160], c[160];
    if (ly->num_heads <= 0 || ly->head_dim <= 0)
        tg_fail("%s: num_heads (%lld) and head_dim (%lld) must be positive", op,
                (long long)ly->num_heads, (long long)ly->head_dim);
    if (!(dropout >= 0 && dropout <= 1))
        tg_fail("%s: dropout must be in [0, 1], got %g", op, (double)dropout);
    const int bd = ly->batch_first ? 0 : 1;
    const int64_t E = ly->num_heads * ly->head_dim;
    const tg_tensor *in[3] = {q, k, v};
    bool ok = q->ndim == 3 && k->ndim == 3 && v->ndim == 3;
    for (int i = 0; ok && i < 3; i++)
        ok = ly->offsets[i] >= 0 && ly->offsets[i] + E <= in[i]->shape[2];
    if (!ok || k->shape[bd] != q->shape[bd] || v->shape[bd] != q->shape[bd] ||
        k->shape[1 - bd] != v->shape[1 - bd])
        tg_fail("%s: query %s, key %s and value %s must be 3-D %s, agree on the batch (key and "
                "value on the source length) and hold %lld features from offsets %lld, %lld, %lld",
                op, tg_tensor_describe(q, a, sizeof a), tg_tensor_describe(k, b, sizeof b),
                tg_tensor_describe(v, c, sizeof c), ly->batch_first ? "(N, L, W)" : "(L, N, W)",
                (long long)E, (long long)ly->offsets[0], (long long)ly->offsets[1],
                (long long)ly->offsets[2]);
}

tg_tensor *tg_mha_attention(tg_tape *t, tg_tensor *q, tg_tensor *k, tg_tensor *v,
                            const tg_mha_layout *layout, const tg_mha_masks *masks,
                            tg_real dropout) {
    TG_CHECK_OP(t, q, k, v);
    TG_CHECK_ARG(layout);
    if (masks) {
        TG_CHECK_INPUT_OPT(t, masks->attn_mask);
        TG_CHECK_INPUT_OPT(t, masks->key_padding_mask);
    }
    check_heads("tg_mha_attention", q, k, v, layout, dropout);
    const int bd = layout->batch_first ? 0 : 1;
    const int64_t N = q->shape[bd], L = q->shape[1 - bd], S = k->shape[1 - bd];
    const int64_t h = layout->num_heads, d = layout->head_dim, B = N * h, LS = L * S;
    tg_mha_masks_check("tg_mha_attention", masks, N, h, L, S);
    sdpa_job j = {.q = q->data,
                  .k = k->data,
                  .v = v->data,
                  .off = {layout->offsets[0], layout->offsets[1], layout->offsets[2]},
                  .w = {q->shape[2], k->shape[2], v->shape[2]},
                  .N = N,
                  .L = L,
                  .S = S,
                  .h = h,
                  .d = d,
                  .batch_first = layout->batch_first,
                  .alpha = (tg_real)(1.0 / sqrt((double)d))};
    const tg_tensor *am = masks ? masks->attn_mask : NULL;
    const tg_tensor *kpm = masks ? masks->key_padding_mask : NULL;
    j.am = am ? am->data : NULL, j.am_bool = am && masks->attn_mask_is_bool;
    j.am_stride = am && am->ndim == 3 ? LS : 0;
    j.kpm = kpm ? kpm->data : NULL, j.kpm_bool = kpm && masks->key_padding_mask_is_bool;
    j.drop = dropout > 0; /* the module passes 0 in eval mode */
    if (j.drop) j.key = tg_dropout_key_draw(NULL, (double)dropout);
    tg_tensor *out = tg_tape_tensor(t, TG_SHAPE(q->shape[0], q->shape[1], h * d));
    j.out = out->data;
    j.P = tg_tape_alloc(t, (size_t)(B * LS) * sizeof(tg_real));
    /* one worker per thread (at most one per head), when the heads are worth threads */
    const int64_t threads = tg_get_num_threads();
    j.workers = B * LS * d < (1 << 16) ? 1 : threads < B ? threads : B;
    tg_arena *arena = tg_tape_arena(t);
    const tg_arena_mark mark = tg_arena_get_mark(arena);
    j.scratch = tg_tape_alloc(t, (size_t)(2 * j.workers * LS) * sizeof(tg_real));
    tg_parallel_for(j.workers, 1, sdpa_forward_heads, &j);
    tg_arena_rewind(arena, mark);
    tg_node *node = tg_tape_record(t, "mha_attention", sdpa_backward, 3, (tg_tensor *[]){q, k, v},
                                   1, (tg_tensor *[]){out});
    if (node) {
        j.scratch = NULL, j.out = NULL;
        node->saved = tg_tape_alloc(t, sizeof j);
        memcpy(node->saved, &j, sizeof j);
    }
    return out;
}

/* ---- additive attention: the fused core, one tape node for a decoder step ----
 * With P = enc_proj (N, T, A), u = U_a s (N, A), v (A) and h = enc (N, T, H):
 *   th_t = tanh(P_t + u),  e_t = v·th_t (−inf where masked),  α = softmax(e),
 *   context = Σ_t α_t h_t.
 * Backward, from dc = dL/dcontext and dα' = dL/dα (the weights may be used too):
 *   dα_t = dα'_t + dc·h_t,   dh_t += α_t dc,
 *   de = α ⊙ (dα − α·dα)                          (softmax Jacobian),
 *   g_ta = de_t v_a (1 − th_ta²),  dP_t += g_t,  du += Σ_t g_t,  dv += Σ_{n,t} de_t th_t.
 * th is (N, T, A), as large as P: a decoder stepping T' times would keep T' of them (26 MB
 * for 20 steps of 64 × 20 × 256), so it is not kept. The backward computes it again from P
 * and u, which the node holds anyway (P is one tensor shared by every step), with the same
 * code as the forward, so it has the forward's bits: one tanh per element more, and no
 * write and read of th through memory.
 * Threads split the batch rows n (each writes only its own rows); dv, a sum over rows, is
 * summed per row into an (N, A) scratch and then over the rows in order, so the order of
 * every sum is fixed whatever the thread count. */
typedef struct additive_job {
    const tg_real *enc, *proj, *u, *v, *mask, *alpha, *dalpha, *dctx;
    tg_real *ctx, *alpha_out, *scratch, *de, *denc, *dproj, *du, *dv_rows; /* scratch (N, T) */
    int64_t T, H, A;
} additive_job;

/* th = tanh(p + u), the one place it is computed (forward and backward). */
static inline void attention_tanh(const tg_real *restrict p, const tg_real *restrict u,
                                  tg_real *restrict th, int64_t A) {
    for (int64_t a = 0; a < A; a++) th[a] = tg_vtanh(p[a] + u[a]);
}

/* Σ_i a_i b_i over TG_VLANES interleaved lanes (a fixed order that vectorises). */
static inline tg_real lane_dot(const tg_real *restrict a, const tg_real *restrict b, int64_t n) {
    tg_real acc[TG_VLANES] = {0};
    int64_t i = 0;
    for (; i + TG_VLANES <= n; i += TG_VLANES)
        for (int l = 0; l < TG_VLANES; l++) acc[l] += a[i + l] * b[i + l];
    for (int l = 0; i + l < n; l++) acc[l] += a[i + l] * b[i + l];
    tg_real s = acc[0];
    for (int l = 1; l < TG_VLANES; l++) s += acc[l];
    return s;
}

/* Rows of th at a time: a few KB on the stack, reused for every t. */
#define TH_TILE 512

TG_VEC_KERNEL static void additive_forward_rows(int64_t n0, int64_t n1, void *ctx) {
    const additive_job *j = ctx;
    const int64_t T = j->T, H = j->H, A = j->A;
    tg_real th[TH_TILE];
    for (int64_t n = n0; n < n1; n++) {
        tg_real *alpha = j->alpha_out + n * T, *c = j->ctx + n * H, *e = j->scratch + n * T;
        const tg_real *u = j->u + n * A, *h = j->enc + n * T * H;
        for (int64_t t = 0; t < T; t++) {
            const tg_real *p = j->proj + (n * T + t) * A;
            if (j->mask && j->mask[n * T + t] != 0) {
                e[t] = -INFINITY;
                continue;
            }
            /* v·th in tiles of TH_TILE (one tile for A <= TH_TILE), summed in order */
            e[t] = 0;
            for (int64_t a0 = 0; a0 < A; a0 += TH_TILE) {
                const int64_t na = A - a0 < TH_TILE ? A - a0 : TH_TILE;
                attention_tanh(p + a0, u + a0, th, na);
                e[t] += lane_dot(j->v + a0, th, na);
            }
        }
        tg_vsoftmax_row(e, alpha, T);
        for (int64_t k = 0; k < H; k++) c[k] = 0;
        for (int64_t t = 0; t < T; t++)
            for (int64_t k = 0; k < H; k++) c[k] += alpha[t] * h[t * H + k];
    }
}

TG_VEC_KERNEL static void additive_backward_rows(int64_t n0, int64_t n1, void *ctx) {
    const additive_job *j = ctx;
    const int64_t T = j->T, H = j->H, A = j->A;
    tg_real th[TH_TILE];
    for (int64_t n = n0; n < n1; n++) {
        const tg_real *alpha = j->alpha + n * T, *h = j->enc + n * T * H;
        const tg_real *dc = j->dctx ? j->dctx + n * H : NULL;
        tg_real *de = j->de + n * T, *da = j->scratch + n * T;
        for (int64_t t = 0; t < T; t++) {
            da[t] = j->dalpha ? j->dalpha[n * T + t] : 0;
            if (dc) da[t] += lane_dot(dc, h + t * H, H);
        }
        if (j->denc && dc)
            for (int64_t t = 0; t < T; t++) {
                tg_real *dh = j->denc + (n * T + t) * H;
                for (int64_t k = 0; k < H; k++) dh[k] += alpha[t] * dc[k];
            }
        tg_vsoftmax_row_backward(alpha, da, de, T, false);
        const tg_real *restrict u = j->u + n * A;
        tg_real *restrict du = j->du ? j->du + n * A : NULL;
        tg_real *restrict dvn = j->dv_rows ? j->dv_rows + n * A : NULL;
        if (dvn)
            for (int64_t a = 0; a < A; a++) dvn[a] = 0;
        for (int64_t t = 0; t < T; t++) {
            const tg_real det = de[t];
            const tg_real *p = j->proj + (n * T + t) * A;
            tg_real *restrict dp = j->dproj ? j->dproj + (n * T + t) * A : NULL;
            for (int64_t a0 = 0; a0 < A; a0 += TH_TILE) {
                const int64_t na = A - a0 < TH_TILE ? A - a0 : TH_TILE;
                const tg_real *restrict v = j->v + a0;
                attention_tanh(p + a0, u + a0, th, na);
                if (dvn)
                    for (int64_t a = 0; a < na; a++) dvn[a0 + a] += det * th[a];
                for (int64_t a = 0; a < na; a++) th[a] = det * v[a] * (1 - th[a] * th[a]); /* g */
                if (dp)
                    for (int64_t a = 0; a < na; a++) dp[a0 + a] += th[a];
                if (du)
                    for (int64_t a = 0; a < na; a++) du[a0 + a] += th[a];
            }
        }
    }
}

static void additive_backward(tg_tape *tape, tg_node *node) {
    tg_tensor *enc = node->in[0], *proj = node->in[1], *u = node->in[2], *v = node->in[3];
    const tg_tensor *ctx = node->out[0], *alpha = node->out[1];
    const int64_t N = enc->shape[0], T = enc->shape[1];
    additive_job j = {.enc = enc->data,
                      .proj = proj->data,
                      .u = u->data,
                      .v = v->data,
                      .alpha = alpha->data,
                      .dalpha = alpha->grad,
                      .dctx = ctx->grad,
                      .T = T,
                      .H = enc->shape[2],
                      .A = v->numel};
    j.denc = tg_tape_grad(tape, enc);
    j.dproj = tg_tape_grad(tape, proj);
    j.du = tg_tape_grad(tape, u);
    tg_real *dv = tg_tape_grad(tape, v);
    /* the scratch below is this step's only: given back at the end (a decoder has a node
     * per step, and their scratch would otherwise add up) */
    tg_arena *arena = tg_tape_arena(tape);
    const tg_arena_mark scratch = tg_arena_get_mark(arena);
    j.de = tg_tape_alloc(tape, (size_t)(2 * N * T) * sizeof(tg_real));
    j.scratch = j.de + N * T;
    if (dv) j.dv_rows = tg_tape_alloc(tape, (size_t)(N * j.A) * sizeof(tg_real));
    tg_parallel_for(N, N * T * j.A >= (1 << 15) ? 1 : N, additive_backward_rows, &j);
    if (dv) /* dv += Σ_n dv_rows[n], the rows in order */
        for (int64_t n = 0; n < N; n++)
            for (int64_t a = 0; a < j.A; a++) dv[a] += j.dv_rows[n * j.A + a];
    tg_arena_rewind(arena, scratch);
}

tg_attention_output tg_additive_attention_core(tg_tape *t, tg_tensor *enc, tg_tensor *enc_proj,
                                               tg_tensor *u, tg_tensor *v,
                                               const tg_tensor *source_mask) {
    TG_CHECK_OP(t, enc, enc_proj, u, v);
    TG_CHECK_INPUT_OPT(t, source_mask);
    char a[160], b[160], c[160];
    const int64_t N = enc->ndim == 3 ? enc->shape[0] : -1, T = enc->ndim == 3 ? enc->shape[1] : -1;
    const int64_t A = v->numel;
    if (enc->ndim != 3 || enc_proj->ndim != 3 || enc_proj->shape[0] != N ||
        enc_proj->shape[1] != T || enc_proj->shape[2] != A || u->numel != N * A ||
        (source_mask && source_mask->numel != N * T))
        tg_fail(
            "tg_additive_attention_core: encoder states %s, projections %s and U_a s %s must be "
            "(N, T, enc), (N, T, %lld) and (N, %lld)%s",
            tg_tensor_describe(enc, a, sizeof a), tg_tensor_describe(enc_proj, b, sizeof b),
            tg_tensor_describe(u, c, sizeof c), (long long)A, (long long)A,
            source_mask ? ", the mask (N, T)" : "");
    tg_tensor *ctx = tg_tape_tensor(t, TG_SHAPE(N, enc->shape[2]));
    tg_tensor *alpha = tg_tape_tensor(t, TG_SHAPE(N, T));
    additive_job j = {.enc = enc->data,
                      .proj = enc_proj->data,
                      .u = u->data,
                      .v = v->data,
                      .mask = source_mask ? source_mask->data : NULL,
                      .ctx = ctx->data,
                      .alpha_out = alpha->data,
                      .T = T,
                      .H = enc->shape[2],
                      .A = A};
    const tg_arena_mark scratch = tg_arena_get_mark(tg_tape_arena(t));
    j.scratch = tg_tape_alloc(t, (size_t)(N * T) * sizeof(tg_real));
    tg_parallel_for(N, N * T * A >= (1 << 15) ? 1 : N, additive_forward_rows, &j);
    tg_arena_rewind(tg_tape_arena(t), scratch);
    /* nothing saved: the backward reads only the node's inputs and outputs */
    tg_tape_record(t, "additive_attention", additive_backward, 4,
                   (tg_tensor *[]){enc, enc_proj, u, v}, 2, (tg_tensor *[]){ctx, alpha});
    return (tg_attention_output){.context = ctx, .weights = alpha};
}

/* ---- Luong dot-product attention, from single ops (their backwards compose) ---- */
tg_attention_output tg_dot_attention(tg_tape *t, tg_tensor *query, tg_tensor *value,
                                     tg_tensor *key) {
    TG_CHECK_OP(t, query, value);
    TG_CHECK_INPUT_OPT(t, key);
    if (!key) key = value;
    tg_tensor *scores = tg_matmul_t(t, query, key, false, true); /* (N, Tq, Tv) */
    tg_tensor *weights = tg_softmax(t, scores, -1);
    return (tg_attention_output){.context = tg_matmul(t, weights, value), .weights = weights};
}
