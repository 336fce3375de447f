/* Recurrent layers and cells: forward values against a plain-loop reference, float64
 * gradchecks (fused and composite, every cell kind, sequences, modules, cells), fused ==
 * composite for outputs and every gradient, PyTorch's default init bit for bit, PyTorch
 * parity from fixtures, dropout between layers, named gates, and error messages. */
#include "harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/rnn.h>

#include "rnn_test_common.h"

static const tg_cell_kind ALL_KINDS[] = {TG_CELL_RNN_TANH, TG_CELL_RNN_RELU, TG_CELL_GRU,
                                         TG_CELL_GRU_CHO, TG_CELL_LSTM};
enum { N_KINDS = 5 };

/* counts for the closing summary */
static int n_parity_cases, n_fused_composite;
static double worst_parity_abs, worst_parity_rel, worst_parity_scaled, worst_fc_abs;

/* ---------------------------------------------------------------------------------------
 * helpers
 * ------------------------------------------------------------------------------------- */
static uint64_t next_seed = 1000;

static tg_tensor *rand_tensor(tg_real lo, tg_real hi, bool grad, int ndim, const int64_t *shape) {
    return tg_tensor_requires_grad(tg_test_rand(next_seed++, lo, hi, ndim, shape), grad);
}

static tg_cell_weights make_weights(tg_cell_kind kind, int64_t I, int64_t H, bool bias) {
    const int64_t GH = tg_cell_gate_count(kind) * H;
    tg_cell_weights w = {rand_tensor(-0.6, 0.6, true, TG_SHAPE(GH, I)),
                         rand_tensor(-0.6, 0.6, true, TG_SHAPE(GH, H)), NULL, NULL, NULL};
    if (bias) {
        w.b_ih = rand_tensor(-0.4, 0.4, true, TG_SHAPE(GH));
        w.b_hh = rand_tensor(-0.4, 0.4, true, TG_SHAPE(GH));
    }
    return w;
}

static void free_weights(tg_cell_weights *w) {
    tg_tensor_free(w->w_ih), tg_tensor_free(w->w_hh);
    tg_tensor_free(w->b_ih), tg_tensor_free(w->b_hh);
}

/* A module (cell) of any kind, held by its shared base and run with tg_recurrent_forward
 * (tg_cell_forward); test_typed_entry_points holds the typed functions to the same numbers. */
static tg_recurrent *module_new(tg_cell_kind kind, tg_rnn_options o) {
    o.nonlinearity = kind == TG_CELL_RNN_RELU ? TG_RNN_RELU : TG_RNN_TANH;
    o.reset_after = kind != TG_CELL_GRU_CHO;
    switch (kind) {
    case TG_CELL_LSTM:
        return &tg_lstm_new(o)->base;
    case TG_CELL_GRU:
    case TG_CELL_GRU_CHO:
        return &tg_gru_new(o)->base;
    default:
        return &tg_rnn_new(o)->base;
    }
}

static tg_cell *cell_new(tg_cell_kind kind, tg_cell_options o) {
    o.nonlinearity = kind == TG_CELL_RNN_RELU ? TG_RNN_RELU : TG_RNN_TANH;
    o.reset_after = kind != TG_CELL_GRU_CHO;
    switch (kind) {
    case TG_CELL_LSTM:
        return &tg_lstm_cell_new(o)->base;
    case TG_CELL_GRU:
    case TG_CELL_GRU_CHO:
        return &tg_gru_cell_new(o)->base;
    default:
        return &tg_rnn_cell_new(o)->base;
    }
}

/* ---------------------------------------------------------------------------------------
 * A plain-loop reference of one step, in double
 * ------------------------------------------------------------------------------------- */
static double sigm(double a) { return 1 / (1 + exp(-a)); }

/* y[b, g] = Σ_k v[b, k]·W[g, k] + bias[g] */
static void ref_affine(int64_t B, int64_t K, int64_t rows, const double *v, const tg_real *W,
                       int64_t row0, const tg_tensor *bias, double *y) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t g = 0; g < rows; g++) {
            double s = bias ? (double)bias->data[row0 + g] : 0;
            for (int64_t k = 0; k < K; k++) s += v[b * K + k] * (double)W[(row0 + g) * K + k];
            y[b * rows + g] = s;
        }
}

static void ref_step(tg_cell_kind kind, const tg_cell_weights *w, int64_t B, const double *x,
                     const double *h, const double *c, double *h_out, double *c_out) {
    const int64_t I = w->w_ih->shape[1], H = w->w_hh->shape[1];
    const int64_t GH = tg_cell_gate_count(kind) * H;
    double *gi = calloc((size_t)(B * GH), sizeof *gi), *gh = calloc((size_t)(B * GH), sizeof *gh);
    double *rh = calloc((size_t)(B * H), sizeof *rh), *ghn = calloc((size_t)(B * H), sizeof *ghn);
    ref_affine(B, I, GH, x, w->w_ih->data, 0, w->b_ih, gi);
    ref_affine(B, H, GH, h, w->w_hh->data, 0, w->b_hh, gh);
    if (kind == TG_CELL_GRU_CHO) { /* n's hidden term uses r⊙h */
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < H; j++)
                rh[b * H + j] = sigm(gi[b * GH + j] + gh[b * GH + j]) * h[b * H + j];
        ref_affine(B, H, H, rh, w->w_hh->data, 2 * H, w->b_hh, ghn);
    }
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < H; j++) {
            const double *a = gi + b * GH, *e = gh + b * GH, hp = h[b * H + j];
            double *ho = &h_out[b * H + j];
            switch (kind) {
            case TG_CELL_RNN_TANH:
                *ho = tanh(a[j] + e[j]);
                break;
            case TG_CELL_RNN_RELU:
                *ho = fmax(a[j] + e[j], 0);
                break;
            case TG_CELL_GRU:
            case TG_CELL_GRU_CHO: {
                const double r = sigm(a[j] + e[j]), z = sigm(a[H + j] + e[H + j]);
                const double n = kind == TG_CELL_GRU ? tanh(a[2 * H + j] + r * e[2 * H + j])
                                                     : tanh(a[2 * H + j] + ghn[b * H + j]);
                *ho = (1 - z) * n + z * hp;
                break;
            }
            case TG_CELL_LSTM: {
                const double i = sigm(a[j] + e[j]), f = sigm(a[H + j] + e[H + j]);
                const double g = tanh(a[2 * H + j] + e[2 * H + j]);
                const double o = sigm(a[3 * H + j] + e[3 * H + j]);
                c_out[b * H + j] = f * c[b * H + j] + i * g;
                *ho = o * tanh(c_out[b * H + j]);
                break;
            }
            }
        }
    free(gi), free(gh), free(rh), free(ghn);
}

/* ---------------------------------------------------------------------------------------
 * Forward values: sequences (both directions) and steps, both paths, against the reference
 * ------------------------------------------------------------------------------------- */
static void test_forward_values(void **state) {
    (void)state;
    const int64_t T = 3, B = 2, I = 3, H = 4;
    for (int ki = 0; ki < N_KINDS; ki++) {
        const tg_cell_kind kind = ALL_KINDS[ki];
        const bool lstm = kind == TG_CELL_LSTM;
        tg_cell_weights w = make_weights(kind, I, H, true);
        tg_tensor *x = rand_tensor(-1, 1, false, TG_SHAPE(T, B, I));
        tg_tensor *h0 = rand_tensor(-0.5, 0.5, false, TG_SHAPE(B, H));
        tg_tensor *c0 = lstm ? rand_tensor(-0.5, 0.5, false, TG_SHAPE(B, H)) : NULL;
        for (int rev = 0; rev < 2; rev++) {
            /* the reference, step by step */
            double want[3 * 2 * 4], hb[8], cb[8], hn[8], cn[8], xt[6];
            for (int k = 0; k < B * H; k++) hb[k] = h0->data[k], cb[k] = c0 ? c0->data[k] : 0;
            for (int s = 0; s < T; s++) {
                const int t = rev ? (int)T - 1 - s : s;
                for (int k = 0; k < B * I; k++) xt[k] = x->data[t * B * I + k];
                ref_step(kind, &w, B, xt, hb, cb, hn, cn);
                for (int k = 0; k < B * H; k++) want[t * B * H + k] = hb[k] = hn[k], cb[k] = cn[k];
            }
            for (int fused = 0; fused < 2; fused++) {
                tg_tape *tape = tg_tape_new();
                tg_rnn_result r =
                    fused ? tg_rnn_sequence_fused(tape, kind, &w, x, h0, c0, rev)
                          : tg_rnn_sequence_composite(tape, kind, &w, x, h0, c0, rev, NULL);
                char what[96];
                snprintf(what, sizeof what, "%s %s %s output", tg_cell_kind_name(kind),
                         fused ? "fused" : "composite", rev ? "reverse" : "forward");
                assert_int_equal(r.output->ndim, 3);
                assert_int_equal(r.output->shape[0], T);
                tg_test_assert_close_f64(what, r.output->data, want, T * B * H, TG_TEST_ATOL,
                                         TG_TEST_RTOL);
                tg_test_assert_close_f64(what, r.h_n->data, hb, B * H, TG_TEST_ATOL, TG_TEST_RTOL);
                if (lstm)
                    tg_test_assert_close_f64(what, r.c_n->data, cb, B * H, TG_TEST_ATOL,
                                             TG_TEST_RTOL);
                else
                    assert_null(r.c_n);
                /* one step = the first step of the forward sequence */
                tg_tensor *x0 = tg_select(tape, x, 0, 0);
                tg_rnn_state st = fused ? tg_cell_step_fused(tape, kind, &w, x0, h0, c0)
                                        : tg_cell_step_composite(tape, kind, &w, x0, h0, c0, NULL);
                double xs[6], h1[8], c1[8], hh[8], cc[8];
                for (int k = 0; k < B * I; k++) xs[k] = x->data[k];
                for (int k = 0; k < B * H; k++) hh[k] = h0->data[k], cc[k] = c0 ? c0->data[k] : 0;
                ref_step(kind, &w, B, xs, hh, cc, h1, c1);
                tg_test_assert_close_f64("step h", st.h->data, h1, B * H, TG_TEST_ATOL,
                                         TG_TEST_RTOL);
                if (lstm)
                    tg_test_assert_close_f64("step c", st.c->data, c1, B * H, TG_TEST_ATOL,
                                             TG_TEST_RTOL);
                tg_tape_free(tape);
            }
        }
        /* h0 = NULL means zeros */
        tg_tape *tape = tg_tape_new();
        tg_tensor *z = tg_tensor_zeros(TG_SHAPE(B, H));
        tg_rnn_result a = tg_rnn_sequence_fused(tape, kind, &w, x, NULL, NULL, false);
        tg_rnn_result b = tg_rnn_sequence_fused(tape, kind, &w, x, z, lstm ? z : NULL, false);
        tg_test_assert_close("h0 NULL = zeros", a.output->data, b.output->data, T * B * H, 0, 0);
        tg_tape_free(tape);
        tg_tensor_free(z);
        free_weights(&w);
        tg_tensor_free(x), tg_tensor_free(h0), tg_tensor_free(c0);
    }
}

/* ---------------------------------------------------------------------------------------
 * Gradchecks of the ops: x, h0, c0 and the four weights, fused and composite
 * ------------------------------------------------------------------------------------- */
typedef struct op_ctx {
    tg_cell_kind kind;
    bool fused, reverse, step, use_h0, bias;
} op_ctx;

/* inputs: x, h0, c0, w_ih, w_hh[, b_ih, b_hh] (h0 and c0 used only if use_h0 / LSTM) */
static tg_tensor *op_fn(tg_tape *t, tg_tensor *const *in, void *vctx) {
    const op_ctx *c = vctx;
    const tg_cell_weights w = {in[3], in[4], c->bias ? in[5] : NULL, c->bias ? in[6] : NULL, NULL};
    tg_tensor *h0 = c->use_h0 ? in[1] : NULL;
    tg_tensor *c0 = c->use_h0 && c->kind == TG_CELL_LSTM ? in[2] : NULL;
    if (c->step) {
        tg_rnn_state s = c->fused ? tg_cell_step_fused(t, c->kind, &w, in[0], h0, c0)
                                  : tg_cell_step_composite(t, c->kind, &w, in[0], h0, c0, NULL);
        return flat_cat(t, (tg_tensor *[]){s.h, s.c}, 2);
    }
    tg_rnn_result r =
        c->fused ? tg_rnn_sequence_fused(t, c->kind, &w, in[0], h0, c0, c->reverse)
                 : tg_rnn_sequence_composite(t, c->kind, &w, in[0], h0, c0, c->reverse, NULL);
    return result_flat(t, r);
}

static void test_gradcheck_ops(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    const int64_t T = 3, B = 2, I = 3, H = 4;
    for (int ki = 0; ki < N_KINDS; ki++) {
        const tg_cell_kind kind = ALL_KINDS[ki];
        const bool lstm = kind == TG_CELL_LSTM;
        for (int bias = 0; bias < 2; bias++) {
            tg_cell_weights w = make_weights(kind, I, H, bias);
            tg_tensor *xs = rand_tensor(-1, 1, true, TG_SHAPE(T, B, I));
            tg_tensor *x1 = rand_tensor(-1, 1, true, TG_SHAPE(B, I));
            tg_tensor *h0 = rand_tensor(-0.5, 0.5, true, TG_SHAPE(B, H));
            tg_tensor *c0 = rand_tensor(-0.5, 0.5, lstm, TG_SHAPE(B, H));
            for (int fused = 0; fused < 2; fused++)
                for (int mode = 0; mode < 4; mode++) { /* seq fwd, seq rev, step, seq no h0 */
                    op_ctx c = {kind, fused, mode == 1, mode == 2, mode != 3, bias};
                    tg_tensor *in[7] = {c.step ? x1 : xs, h0, c0, w.w_ih, w.w_hh, w.b_ih, w.b_hh};
                    h0->requires_grad = c.use_h0;
                    c0->requires_grad = c.use_h0 && lstm;
                    char what[96];
                    snprintf(what, sizeof what, "%s %s mode %d bias %d", tg_cell_kind_name(kind),
                             fused ? "fused" : "composite", mode, bias);
                    tg_test_gradcheck(what, op_fn, &c, in, bias ? 7 : 5);
                }
            free_weights(&w);
            tg_tensor_free(xs), tg_tensor_free(x1), tg_tensor_free(h0), tg_tensor_free(c0);
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * Gradchecks of the modules: inputs, initial states and every parameter
 * ------------------------------------------------------------------------------------- */
static const mod_config MOD_CONFIGS[] = {
    {1, false, false, true, true},
    {2, true, false, true, true},  /* 2 layers, bidirectional, given h0 (c0) */
    {2, false, true, false, true}, /* batch_first, default states */
    {1, true, true, true, false},  /* no bias */
};

static void test_gradcheck_modules(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    const int64_t T = 3, B = 2, I = 3, H = 4;
    for (int ki = 0; ki < N_KINDS; ki++)
        for (size_t ci = 0; ci < sizeof MOD_CONFIGS / sizeof *MOD_CONFIGS; ci++)
            for (int fused = 0; fused < 2; fused++) {
                const tg_cell_kind kind = ALL_KINDS[ki];
                const mod_config *cf = &MOD_CONFIGS[ci];
                tg_rnn_options o = tg_rnn_defaults(I, H);
                o.num_layers = cf->layers, o.bidirectional = cf->bidir;
                o.batch_first = cf->batch_first, o.bias = cf->bias;
                o.exec = fused ? TG_RNN_FUSED : TG_RNN_COMPOSITE;
                tg_recurrent *m = module_new(kind, o);
                const int64_t DL = (cf->bidir ? 2 : 1) * cf->layers;
                mod_ctx c = {m,
                             cf->batch_first ? rand_tensor(-1, 1, true, TG_SHAPE(B, T, I))
                                             : rand_tensor(-1, 1, true, TG_SHAPE(T, B, I)),
                             NULL, NULL};
                if (cf->h0) c.h0 = rand_tensor(-0.5, 0.5, true, TG_SHAPE(DL, B, H));
                if (cf->h0 && kind == TG_CELL_LSTM)
                    c.c0 = rand_tensor(-0.5, 0.5, true, TG_SHAPE(DL, B, H));
                tg_tensor *in[40];
                int n = 0;
                in[n++] = c.x;
                if (c.h0) in[n++] = c.h0;
                if (c.c0) in[n++] = c.c0;
                for (size_t p = 0; p < tg_module_params(&m->module)->count; p++)
                    in[n++] = tg_module_params(&m->module)->tensors[p];
                char what[128];
                snprintf(what, sizeof what, "%s module config %zu %s", tg_cell_kind_name(kind), ci,
                         fused ? "fused" : "composite");
                tg_test_gradcheck(what, mod_fn, &c, in, n);
                tg_tensor_free(c.x), tg_tensor_free(c.h0), tg_tensor_free(c.c0);
                tg_module_free(&m->module);
            }
}

typedef struct cell_ctx {
    tg_cell *m;
    tg_tensor *x, *h, *c;
} cell_ctx;

static tg_tensor *cell_fn(tg_tape *t, tg_tensor *const *in, void *vctx) {
    (void)in;
    const cell_ctx *c = vctx;
    tg_rnn_state s = tg_cell_forward(c->m, t, c->x, c->h, c->c);
    return flat_cat(t, (tg_tensor *[]){s.h, s.c}, 2);
}

static void test_gradcheck_cells(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    const int64_t B = 2, I = 3, H = 4;
    for (int ki = 0; ki < N_KINDS; ki++)
        for (int fused = 0; fused < 2; fused++)
            for (int batched = 0; batched < 2; batched++) {
                const tg_cell_kind kind = ALL_KINDS[ki];
                tg_cell_options o = tg_cell_defaults(I, H);
                o.exec = fused ? TG_RNN_FUSED : TG_RNN_COMPOSITE;
                tg_cell *m = cell_new(kind, o);
                cell_ctx c = {m, NULL, NULL, NULL};
                c.x = batched ? rand_tensor(-1, 1, true, TG_SHAPE(B, I))
                              : rand_tensor(-1, 1, true, TG_SHAPE(I));
                c.h = batched ? rand_tensor(-0.5, 0.5, true, TG_SHAPE(B, H))
                              : rand_tensor(-0.5, 0.5, true, TG_SHAPE(H));
                if (kind == TG_CELL_LSTM)
                    c.c = batched ? rand_tensor(-0.5, 0.5, true, TG_SHAPE(B, H))
                                  : rand_tensor(-0.5, 0.5, true, TG_SHAPE(H));
                tg_tensor *in[8];
                int n = 0;
                in[n++] = c.x, in[n++] = c.h;
                if (c.c) in[n++] = c.c;
                for (size_t p = 0; p < tg_module_params(&m->module)->count; p++)
                    in[n++] = tg_module_params(&m->module)->tensors[p];
                char what[96];
                snprintf(what, sizeof what, "%s cell %s batched %d", tg_cell_kind_name(kind),
                         fused ? "fused" : "composite", batched);
                tg_test_gradcheck(what, cell_fn, &c, in, n);
                tg_tensor_free(c.x), tg_tensor_free(c.h), tg_tensor_free(c.c);
                tg_module_free(&m->module);
            }
}

/* ---------------------------------------------------------------------------------------
 * fused == composite: outputs and every gradient, same inputs, same upstream gradient
 * ------------------------------------------------------------------------------------- */
static void compare_runs(const char *what, const tg_real *a, const tg_real *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - (double)b[i]);
        if (d > worst_fc_abs) worst_fc_abs = d;
    }
    tg_test_assert_close(what, a, b, n, FC_ATOL, FC_RTOL);
    n_fused_composite++;
}

static void test_fused_equals_composite_modules(void **state) {
    (void)state;
    const int64_t T = 4, B = 3, I = 3, H = 5;
    for (int ki = 0; ki < N_KINDS; ki++)
        for (size_t ci = 0; ci <= sizeof MOD_CONFIGS / sizeof *MOD_CONFIGS; ci++) {
            const tg_cell_kind kind = ALL_KINDS[ki];
            /* the last configuration: 3 layers, bidirectional, dropout in training */
            const mod_config cf = ci < sizeof MOD_CONFIGS / sizeof *MOD_CONFIGS
                                      ? MOD_CONFIGS[ci]
                                      : (mod_config){3, true, false, true, true};
            tg_rnn_options o = tg_rnn_defaults(I, H);
            o.num_layers = cf.layers, o.bidirectional = cf.bidir;
            o.batch_first = cf.batch_first, o.bias = cf.bias;
            if (ci == sizeof MOD_CONFIGS / sizeof *MOD_CONFIGS) o.dropout = 0.4;
            tg_recurrent *m = module_new(kind, o);
            const int64_t DL = (cf.bidir ? 2 : 1) * cf.layers;
            tg_tensor *x = cf.batch_first ? rand_tensor(-1, 1, true, TG_SHAPE(B, T, I))
                                          : rand_tensor(-1, 1, true, TG_SHAPE(T, B, I));
            tg_tensor *h0 = cf.h0 ? rand_tensor(-0.5, 0.5, true, TG_SHAPE(DL, B, H)) : NULL;
            tg_tensor *c0 = cf.h0 && kind == TG_CELL_LSTM
                                ? rand_tensor(-0.5, 0.5, true, TG_SHAPE(DL, B, H))
                                : NULL;
            int64_t na, nb;
            tg_real *a = module_run(m, TG_RNN_FUSED, x, h0, c0, 77 + ci, &na);
            tg_real *b = module_run(m, TG_RNN_COMPOSITE, x, h0, c0, 77 + ci, &nb);
            assert_int_equal(na, nb);
            char what[96];
            snprintf(what, sizeof what, "fused vs composite: %s config %zu",
                     tg_cell_kind_name(kind), ci);
            compare_runs(what, a, b, na);
            free(a), free(b);
            tg_tensor_free(x), tg_tensor_free(h0), tg_tensor_free(c0);
            tg_module_free(&m->module);
        }
}

static tg_real *cell_run(tg_cell *m, tg_rnn_exec exec, tg_tensor *x, tg_tensor *h, tg_tensor *c,
                         int steps, uint64_t seed, int64_t *len) {
    tg_tensor *leaves[MAX_LEAVES];
    const int n = run_leaves(leaves, x, h, c, tg_module_params(&m->module));
    m->options.exec = exec;
    tg_tape *tape = tg_tape_new();
    tg_rnn_state s = {h, c};
    tg_tensor *outs[8];
    for (int k = 0; k < steps; k++) { /* the same cell applied several times (shared weights) */
        s = tg_cell_forward(m, tape, tg_select(tape, x, 0, k), s.h, s.c);
        outs[k] = s.h;
    }
    if (s.c) outs[steps] = s.c;
    tg_tensor *flat = flat_cat(tape, outs, steps + (s.c ? 1 : 0));
    return backward_collect(tape, flat, leaves, n, seed, len);
}

static void test_fused_equals_composite_cells(void **state) {
    (void)state;
    const int64_t B = 3, I = 3, H = 5, STEPS = 4;
    for (int ki = 0; ki < N_KINDS; ki++)
        for (int given = 0; given < 2; given++) {
            const tg_cell_kind kind = ALL_KINDS[ki];
            tg_cell *m = cell_new(kind, tg_cell_defaults(I, H));
            tg_tensor *x = rand_tensor(-1, 1, true, TG_SHAPE(STEPS, B, I));
            tg_tensor *h = given ? rand_tensor(-0.5, 0.5, true, TG_SHAPE(B, H)) : NULL;
            tg_tensor *c =
                given && kind == TG_CELL_LSTM ? rand_tensor(-0.5, 0.5, true, TG_SHAPE(B, H)) : NULL;
            int64_t na, nb;
            tg_real *a = cell_run(m, TG_RNN_FUSED, x, h, c, STEPS, 5, &na);
            tg_real *b = cell_run(m, TG_RNN_COMPOSITE, x, h, c, STEPS, 5, &nb);
            assert_int_equal(na, nb);
            char what[96];
            snprintf(what, sizeof what, "fused vs composite: %s cell, h given %d",
                     tg_cell_kind_name(kind), given);
            compare_runs(what, a, b, na);
            free(a), free(b);
            tg_tensor_free(x), tg_tensor_free(h), tg_tensor_free(c);
            tg_module_free(&m->module);
        }
}

/* ---------------------------------------------------------------------------------------
 * PyTorch's default initialisation, bit for bit, and its state_dict names in order
 * ------------------------------------------------------------------------------------- */
static void assert_params_equal_fixture(const char *case_name, const tg_params *params) {
    tg_fixture *fx = tg_fixture_load(case_name);
    char keys[1024] = "";
    for (size_t i = 0; i < params->count; i++) {
        char name[256];
        snprintf(name, sizeof name, "param.%s", params->names[i]);
        tg_fixture_assert_tensor(fx, name, params->tensors[i], 0, 0); /* exact */
        strcat(keys, i ? "," : "");
        strcat(keys, params->names[i]);
    }
    assert_string_equal(keys, tg_fixture_meta(fx, "keys"));
    tg_fixture_free(fx);
}

static void test_default_init_matches_torch(void **state) {
    (void)state;
    tg_manual_seed(0);
    tg_gru *gru = tg_gru_new(tg_rnn_defaults(4, 6));
    assert_params_equal_fixture("init_gru_4_6", tg_module_params(&gru->base.module));
    tg_module_free(&gru->base.module);
    tg_rnn_options o = tg_rnn_defaults(4, 6);
    o.num_layers = 2;
    tg_manual_seed(0);
    tg_lstm *lstm = tg_lstm_new(o);
    assert_params_equal_fixture("init_lstm_4_6_l2", tg_module_params(&lstm->base.module));
    tg_module_free(&lstm->base.module);
    /* the Cho form keeps the same parameters, drawn the same way */
    o = tg_rnn_defaults(4, 6);
    o.reset_after = false;
    tg_manual_seed(0);
    gru = tg_gru_new(o);
    assert_params_equal_fixture("init_gru_4_6", tg_module_params(&gru->base.module));
    tg_module_free(&gru->base.module);
    /* names of a 2-layer bidirectional module, and of a cell */
    o = tg_rnn_defaults(3, 4);
    o.num_layers = 2, o.bidirectional = true;
    tg_rnn *rnn = tg_rnn_new(o);
    const char *want[] = {
        "weight_ih_l0",         "weight_hh_l0",         "bias_ih_l0",         "bias_hh_l0",
        "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse", "bias_hh_l0_reverse",
        "weight_ih_l1",         "weight_hh_l1",         "bias_ih_l1",         "bias_hh_l1",
        "weight_ih_l1_reverse", "weight_hh_l1_reverse", "bias_ih_l1_reverse", "bias_hh_l1_reverse"};
    assert_int_equal(tg_module_params(&rnn->base.module)->count, 16);
    for (int i = 0; i < 16; i++)
        assert_string_equal(tg_module_params(&rnn->base.module)->names[i], want[i]);
    assert_int_equal(tg_params_find(tg_module_params(&rnn->base.module), "weight_ih_l1")->shape[1],
                     8); /* D·H */
    tg_module_free(&rnn->base.module);
    tg_lstm_cell *cell = tg_lstm_cell_new(tg_cell_defaults(3, 4));
    assert_string_equal(tg_module_params(&cell->base.module)->names[3], "bias_hh");
    assert_int_equal(tg_module_params(&cell->base.module)->tensors[1]->shape[0], 16);
    tg_module_free(&cell->base.module);
}

/* ---------------------------------------------------------------------------------------
 * The typed entry points (tg_gru_forward, tg_gru_cell_forward, ...) and the generic ones on
 * the shared base (tg_recurrent_forward, tg_cell_forward) run the same code: the same
 * numbers, bit for bit; each is a module of its own type name
 * ------------------------------------------------------------------------------------- */
static void assert_same(const char *what, const tg_tensor *a, const tg_tensor *b) {
    assert_true((a == NULL) == (b == NULL));
    if (!a) return;
    assert_int_equal(a->numel, b->numel);
    tg_test_assert_close(what, a->data, b->data, a->numel, 0, 0);
}

static void test_typed_entry_points(void **state) {
    (void)state;
    const int64_t T = 4, B = 2, I = 3, H = 5;
    tg_tensor *x = rand_tensor(-1, 1, false, TG_SHAPE(T, B, I));
    tg_tensor *h0 = rand_tensor(-0.5, 0.5, false, TG_SHAPE(1, B, H));
    tg_tensor *c0 = rand_tensor(-0.5, 0.5, false, TG_SHAPE(1, B, H));
    tg_tape *tape = tg_tape_new();
    const tg_rnn_options o = tg_rnn_defaults(I, H);
    tg_rnn *rnn = tg_rnn_new(o);
    tg_gru *gru = tg_gru_new(o);
    tg_lstm *lstm = tg_lstm_new(o);
    assert_string_equal(rnn->base.module.type->name, "RNN");
    assert_string_equal(gru->base.module.type->name, "GRU");
    assert_string_equal(lstm->base.module.type->name, "LSTM");
    tg_rnn_result a = tg_rnn_forward(rnn, tape, x, h0);
    tg_rnn_result b = tg_recurrent_forward(&rnn->base, tape, x, h0, NULL);
    assert_same("rnn output", a.output, b.output), assert_same("rnn h_n", a.h_n, b.h_n);
    assert_null(b.c_n);
    a = tg_gru_forward(gru, tape, x, h0);
    b = tg_recurrent_forward(&gru->base, tape, x, h0, NULL);
    assert_same("gru output", a.output, b.output), assert_same("gru h_n", a.h_n, b.h_n);
    assert_null(b.c_n);
    a = tg_lstm_forward(lstm, tape, x, h0, c0);
    b = tg_recurrent_forward(&lstm->base, tape, x, h0, c0);
    assert_same("lstm output", a.output, b.output), assert_same("lstm h_n", a.h_n, b.h_n);
    assert_same("lstm c_n", a.c_n, b.c_n);

    const tg_cell_options co = tg_cell_defaults(I, H);
    tg_rnn_cell *rnn_cell = tg_rnn_cell_new(co);
    tg_gru_cell *gru_cell = tg_gru_cell_new(co);
    tg_lstm_cell *lstm_cell = tg_lstm_cell_new(co);
    assert_string_equal(rnn_cell->base.module.type->name, "RNNCell");
    assert_string_equal(gru_cell->base.module.type->name, "GRUCell");
    assert_string_equal(lstm_cell->base.module.type->name, "LSTMCell");
    tg_tensor *x1 = tg_select(tape, x, 0, 0), *h = tg_select(tape, h0, 0, 0);
    tg_tensor *c = tg_select(tape, c0, 0, 0);
    tg_rnn_state s = tg_cell_forward(&rnn_cell->base, tape, x1, h, NULL);
    assert_same("rnn cell", tg_rnn_cell_forward(rnn_cell, tape, x1, h), s.h);
    assert_null(s.c);
    s = tg_cell_forward(&gru_cell->base, tape, x1, h, NULL);
    assert_same("gru cell", tg_gru_cell_forward(gru_cell, tape, x1, h), s.h);
    assert_null(s.c);
    s = tg_cell_forward(&lstm_cell->base, tape, x1, h, c);
    const tg_rnn_state typed = tg_lstm_cell_forward(lstm_cell, tape, x1, h, c);
    assert_same("lstm cell h", typed.h, s.h), assert_same("lstm cell c", typed.c, s.c);

    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(h0), tg_tensor_free(c0);
    tg_module_free(&rnn->base.module), tg_module_free(&gru->base.module),
        tg_module_free(&lstm->base.module);
    tg_module_free(&rnn_cell->base.module), tg_module_free(&gru_cell->base.module),
        tg_module_free(&lstm_cell->base.module);
}

/* ---------------------------------------------------------------------------------------
 * PyTorch parity (tests/fixturegen/modules_rnn.py, modules_rnn_extra.py, modules_lstm_proj.py)
 * ------------------------------------------------------------------------------------- */
#define PARITY_ATOL 1e-6
#define PARITY_RTOL 1e-5

static bool meta_flag(const tg_fixture *fx, const char *key, bool dflt) {
    const char *v = tg_fixture_meta(fx, key);
    return v ? strcmp(v, "1") == 0 : dflt;
}

static int64_t meta_int(const tg_fixture *fx, const char *key, int64_t dflt) {
    const char *v = tg_fixture_meta(fx, key);
    return v ? atoll(v) : dflt;
}

static void parity_compare(const tg_fixture *fx, const char *name, const tg_tensor *got,
                           const tg_real *vals) {
    tg_tensor *want = tg_fixture_tensor(fx, name);
    if (want->numel == got->numel) {
        double max_err = 0, max_want = 0;
        for (int64_t i = 0; i < want->numel; i++) {
            max_err = fmax(max_err, fabs((double)vals[i] - (double)want->data[i]));
            max_want = fmax(max_want, fabs((double)want->data[i]));
        }
        if (max_want > 0 && max_err / max_want > worst_parity_scaled)
            worst_parity_scaled = max_err / max_want;
    }
    if (want->numel == got->numel)
        for (int64_t i = 0; i < want->numel; i++) {
            const double w = (double)want->data[i], d = fabs((double)vals[i] - w);
            if (d > worst_parity_abs) worst_parity_abs = d;
            if (fabs(w) > 1e-3 && d / fabs(w) > worst_parity_rel) {
                worst_parity_rel = d / fabs(w);
                if (getenv("RNN_DEBUG"))
                    print_message("worst rel so far: %s %s [%lld] got %.9g want %.9g\n",
                                  tg_fixture_meta(fx, "case"), name, (long long)i, (double)vals[i],
                                  w);
            }
        }
    tg_tensor_free(want);
    tg_fixture_assert_close(fx, name, vals, got->shape, got->ndim, PARITY_ATOL, PARITY_RTOL);
}

/* The upstream gradients gout.<k> laid out as flat_cat lays out the outputs. */
static tg_real *seed_of(const tg_fixture *fx, const char *const *keys, int n, int64_t total) {
    tg_real *seed = malloc((size_t)total * sizeof *seed);
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        if (!keys[i]) continue;
        tg_tensor *g = tg_fixture_tensor(fx, keys[i]);
        memcpy(seed + at, g->data, (size_t)g->numel * sizeof *seed);
        at += g->numel;
        tg_tensor_free(g);
    }
    assert_int_equal(at, total);
    return seed;
}

static tg_cell_kind kind_from_meta(const tg_fixture *fx) {
    const char *mod = tg_fixture_meta(fx, "module");
    const char *act = tg_fixture_meta(fx, "nonlinearity");
    if (strncmp(mod, "LSTM", 4) == 0) return TG_CELL_LSTM;
    if (strncmp(mod, "GRU", 3) == 0)
        return meta_flag(fx, "reset_after", true) ? TG_CELL_GRU : TG_CELL_GRU_CHO;
    return act && strcmp(act, "relu") == 0 ? TG_CELL_RNN_RELU : TG_CELL_RNN_TANH;
}

static tg_tensor *fixture_input(const tg_fixture *fx, const char *name) {
    return tg_fixture_has(fx, name) ? tg_tensor_requires_grad(tg_fixture_tensor(fx, name), true)
                                    : NULL;
}

static void compare_grad(const tg_fixture *fx, const char *name, const tg_tensor *t) {
    if (!t) return;
    assert_non_null(t->grad);
    parity_compare(fx, name, t, t->grad);
}

/* Backward from `flat` with `seed` (freed), then every gradient against the fixture: the
 * inputs x, h0, c0 (those given) and every parameter; frees the tape and the inputs. */
static void backward_and_compare_grads(const tg_fixture *fx, tg_tape *tape, tg_tensor *flat,
                                       tg_real *seed, tg_tensor *const in[3],
                                       const tg_params *params) {
    static const char *const in_names[3] = {"grad.x", "grad.h0", "grad.c0"};
    tg_tape_backward_with(tape, flat, seed);
    for (int i = 0; i < 3; i++) compare_grad(fx, in_names[i], in[i]);
    for (size_t p = 0; p < params->count; p++) {
        char name[128];
        snprintf(name, sizeof name, "grad.param.%s", params->names[p]);
        compare_grad(fx, name, params->tensors[p]);
    }
    free(seed);
    tg_tape_free(tape);
    for (int i = 0; i < 3; i++) tg_tensor_free(in[i]);
}

static void parity_module(const char *case_name, tg_rnn_exec exec) {
    tg_fixture *fx = tg_fixture_load(case_name);
    const tg_cell_kind kind = kind_from_meta(fx);
    tg_rnn_options o =
        tg_rnn_defaults(meta_int(fx, "input_size", 0), meta_int(fx, "hidden_size", 0));
    o.num_layers = meta_int(fx, "num_layers", 1);
    o.bidirectional = meta_flag(fx, "bidirectional", false);
    o.batch_first = meta_flag(fx, "batch_first", false);
    o.bias = meta_flag(fx, "bias", true);
    o.proj_size = meta_int(fx, "proj_size", 0);
    o.exec = exec;
    tg_recurrent *m = module_new(kind, o);
    tg_fixture_load_params(fx, tg_module_params(&m->module));
    tg_tensor *x = fixture_input(fx, "in.x"), *h0 = fixture_input(fx, "in.h0");
    tg_tensor *c0 = fixture_input(fx, "in.c0");
    tg_tape *tape = tg_tape_new();
    tg_rnn_result r = tg_recurrent_forward(m, tape, x, h0, c0);
    parity_compare(fx, "out.output", r.output, r.output->data);
    parity_compare(fx, "out.h_n", r.h_n, r.h_n->data);
    if (r.c_n) parity_compare(fx, "out.c_n", r.c_n, r.c_n->data);
    tg_tensor *flat = result_flat(tape, r);
    tg_real *seed = seed_of(
        fx, (const char *[]){"gout.output", "gout.h_n", r.c_n ? "gout.c_n" : NULL}, 3, flat->numel);
    backward_and_compare_grads(fx, tape, flat, seed, (tg_tensor *[]){x, h0, c0},
                               tg_module_params(&m->module));
    tg_module_free(&m->module);
    tg_fixture_free(fx);
    n_parity_cases++;
}

static const char *const MODULE_CASES[] = {
    "mod_gru_l1",
    "mod_gru_l1_h0",
    "mod_gru_l2",
    "mod_gru_l2_h0",
    "mod_gru_bidir_l1",
    "mod_gru_bidir_l2_h0",
    "mod_gru_batch_first_l1_h0",
    "mod_gru_batch_first_bidir_l2",
    "mod_lstm_l1",
    "mod_lstm_l1_h0",
    "mod_lstm_l2",
    "mod_lstm_l2_h0",
    "mod_lstm_bidir_l1",
    "mod_lstm_bidir_l2_h0",
    "mod_lstm_batch_first_l1_h0",
    "mod_lstm_batch_first_bidir_l2",
    "mod_rnn_tanh_l1",
    "mod_rnn_tanh_l1_h0",
    "mod_rnn_tanh_bidir_l2_h0",
    /* modules_rnn_extra.py */
    "mod_gru_cho_l1_h0",
    "mod_gru_cho_bidir_l2_h0",
    "mod_rnn_relu_l2_h0",
    "mod_lstm_nobias_bidir_l1",
    "mod_gru_unbatched_bidir_l2_h0",
    /* modules_lstm_proj.py: LSTM with projections (tests/test_lstm_proj.c has the rest) */
    "mod_lstm_proj_l1",
    "mod_lstm_proj_l1_h0",
    "mod_lstm_proj_l2_h0",
    "mod_lstm_proj_bidir_l1",
    "mod_lstm_proj_bidir_l2_h0",
    "mod_lstm_proj_batch_first_bidir_l2",
    "mod_lstm_proj_nobias_l2_h0",
    "mod_lstm_proj_unbatched_bidir_l2_h0",
};

static void test_parity_modules(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof MODULE_CASES / sizeof *MODULE_CASES; i++) {
        parity_module(MODULE_CASES[i], TG_RNN_FUSED);
        parity_module(MODULE_CASES[i], TG_RNN_COMPOSITE);
    }
}

static void parity_cell(const char *case_name, tg_rnn_exec exec) {
    tg_fixture *fx = tg_fixture_load(case_name);
    const tg_cell_kind kind = kind_from_meta(fx);
    tg_cell_options o =
        tg_cell_defaults(meta_int(fx, "input_size", 0), meta_int(fx, "hidden_size", 0));
    o.exec = exec;
    tg_cell *m = cell_new(kind, o);
    tg_fixture_load_params(fx, tg_module_params(&m->module));
    tg_tensor *x = fixture_input(fx, "in.x"), *h0 = fixture_input(fx, "in.h0");
    tg_tensor *c0 = fixture_input(fx, "in.c0");
    tg_tape *tape = tg_tape_new();
    const int64_t steps = meta_int(fx, "steps", 0);
    tg_tensor *flat;
    tg_real *seed;
    if (steps > 0) { /* h_t = cell(x[t], h_{t-1}); out = stack(h_1 .. h_T) */
        tg_tensor *outs[8], *h = h0;
        for (int64_t t = 0; t < steps; t++) {
            h = tg_cell_forward(m, tape, tg_select(tape, x, 0, t), h, NULL).h;
            outs[t] = tg_reshape(tape, h, 3, (int64_t[]){1, h->shape[0], h->shape[1]});
        }
        tg_tensor *out = tg_concat(tape, outs, (int)steps, 0);
        parity_compare(fx, "out", out, out->data);
        flat = flat_cat(tape, &out, 1);
        seed = seed_of(fx, (const char *[]){"gout"}, 1, flat->numel);
    } else {
        tg_rnn_state s = tg_cell_forward(m, tape, x, h0, c0);
        if (s.c) {
            parity_compare(fx, "out.h", s.h, s.h->data);
            parity_compare(fx, "out.c", s.c, s.c->data);
        } else {
            parity_compare(fx, "out", s.h, s.h->data);
        }
        flat = flat_cat(tape, (tg_tensor *[]){s.h, s.c}, 2);
        seed = s.c ? seed_of(fx, (const char *[]){"gout.h", "gout.c"}, 2, flat->numel)
                   : seed_of(fx, (const char *[]){"gout"}, 1, flat->numel);
    }
    backward_and_compare_grads(fx, tape, flat, seed, (tg_tensor *[]){x, h0, c0},
                               tg_module_params(&m->module));
    tg_module_free(&m->module);
    tg_fixture_free(fx);
    n_parity_cases++;
}

static const char *const CELL_CASES[] = {
    "mod_grucell",
    "mod_grucell_h0",
    "mod_lstmcell",
    "mod_lstmcell_h0",
    "mod_rnn_tanhcell",
    "mod_rnn_tanhcell_h0",
    "mod_grucell_unroll3",
    /* modules_rnn_extra.py */
    "mod_grucell_cho_h0",
    "mod_rnn_relucell_h0",
    "mod_lstmcell_unbatched_h0",
};

static void test_parity_cells(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof CELL_CASES / sizeof *CELL_CASES; i++) {
        parity_cell(CELL_CASES[i], TG_RNN_FUSED);
        parity_cell(CELL_CASES[i], TG_RNN_COMPOSITE);
    }
}

/* ---------------------------------------------------------------------------------------
 * Dropout between layers, training and eval
 * ------------------------------------------------------------------------------------- */
static void test_dropout_between_layers(void **state) {
    (void)state;
    const int64_t T = 5, B = 3, I = 3, H = 8;
    tg_rnn_options o = tg_rnn_defaults(I, H);
    o.num_layers = 2, o.dropout = 0.5;
    tg_gru *m = tg_gru_new(o);
    tg_tensor *x = rand_tensor(-1, 1, true, TG_SHAPE(T, B, I));
    tg_tape *tape = tg_tape_new();
    /* eval: no dropout node, and the same numbers as dropout = 0 */
    tg_module_eval(&m->base.module);
    tg_rnn_result ev = tg_gru_forward(m, tape, x, NULL);
    assert_int_equal(count_ops(tape, "dropout"), 0);
    m->base.options.dropout = 0;
    tg_module_train(&m->base.module, true);
    tg_rnn_result nodrop = tg_gru_forward(m, tape, x, NULL);
    tg_test_assert_close("eval = no dropout", ev.output->data, nodrop.output->data, T * B * H, 0,
                         0);
    /* training: one dropout, on the first layer's output only; the last layer's output
     * itself is not dropped (no exact zeros), but its values change */
    m->base.options.dropout = 0.5;
    tg_tape_reset(tape);
    tg_rnn_result tr = tg_gru_forward(m, tape, x, NULL);
    assert_int_equal(count_ops(tape, "dropout"), 1);
    int zeros = 0, differ = 0;
    for (int64_t i = 0; i < T * B * H; i++) {
        zeros += tr.output->data[i] == 0;
        differ += tr.output->data[i] != nodrop.output->data[i];
    }
    assert_int_equal(zeros, 0);
    assert_true(differ > T * B * H / 2);
    /* one layer: PyTorch applies no dropout at all */
    tg_rnn_options o1 = tg_rnn_defaults(I, H);
    o1.dropout = 0.5;
    tg_gru *m1 = tg_gru_new(o1);
    tg_tape_reset(tape);
    tg_gru_forward(m1, tape, x, NULL);
    assert_int_equal(count_ops(tape, "dropout"), 0);
    tg_tape_free(tape);
    tg_tensor_free(x);
    tg_module_free(&m->base.module), tg_module_free(&m1->base.module);
}

/* ---------------------------------------------------------------------------------------
 * The fused path's tape: one node per layer and direction (per step for cells); inference
 * ------------------------------------------------------------------------------------- */
static void test_fused_tape_nodes_and_inference(void **state) {
    (void)state;
    const int64_t T = 6, B = 2, I = 3, H = 4;
    tg_rnn_options o = tg_rnn_defaults(I, H);
    o.num_layers = 2, o.bidirectional = true;
    tg_lstm *m = tg_lstm_new(o);
    tg_tensor *x = rand_tensor(-1, 1, true, TG_SHAPE(T, B, I));
    tg_tape *tape = tg_tape_new();
    tg_rnn_result r = tg_lstm_forward(m, tape, x, NULL, NULL);
    assert_int_equal(count_ops(tape, "lstm_sequence"), 4);
    assert_int_equal(r.output->shape[2], 2 * H);
    assert_int_equal(r.h_n->shape[0], 4);
    assert_int_equal(r.c_n->shape[0], 4);
    /* recording off: the same numbers, no nodes */
    tg_tape *inf = tg_tape_new();
    tg_tape_set_recording(inf, false);
    tg_rnn_result ri = tg_lstm_forward(m, inf, x, NULL, NULL);
    assert_int_equal(tg_tape_node_count(inf), 0);
    tg_test_assert_close("inference output", ri.output->data, r.output->data, T * B * 2 * H, 0, 0);
    tg_test_assert_close("inference c_n", ri.c_n->data, r.c_n->data, 4 * B * H, 0, 0);
    tg_tape_free(inf);
    /* a fused cell step is one node */
    tg_gru_cell *cell = tg_gru_cell_new(tg_cell_defaults(I, H));
    tg_tape_reset(tape);
    tg_tensor *h = NULL;
    for (int64_t t = 0; t < T; t++)
        h = tg_gru_cell_forward(cell, tape, tg_select(tape, x, 0, t), h);
    assert_int_equal(count_ops(tape, "gru_cell"), T);
    /* and the composite one is many, with named gates */
    cell->base.options.exec = TG_RNN_COMPOSITE;
    tg_tape_reset(tape);
    h = tg_gru_cell_forward(cell, tape, tg_select(tape, x, 0, 0), NULL);
    assert_string_equal(h->name, "h");
    assert_non_null(tg_rnn_find_named(tape, "z"));
    assert_true(tg_tape_node_count(tape) > 10);
    tg_module_free(&cell->base.module);
    tg_tape_free(tape);
    tg_tensor_free(x);
    tg_module_free(&m->base.module);
}

/* ---------------------------------------------------------------------------------------
 * Named intermediates of the composite path: dL/dz_t and dL/df_t can be read
 * ------------------------------------------------------------------------------------- */
static tg_tensor *find_retained(tg_tape *t, const char *name) {
    tg_tensor *x = tg_rnn_find_named(t, name);
    if (!x) fail_msg("no tensor named %s on the tape", name);
    tg_tensor_retain_grad(x);
    return x;
}

static void test_named_gate_gradients(void **state) {
    (void)state;
    const int64_t T = 3, B = 2, I = 3, H = 4;
    tg_rnn_options o = tg_rnn_defaults(I, H);
    o.exec = TG_RNN_COMPOSITE;
    tg_gru *gru = tg_gru_new(o);
    tg_tensor *x = rand_tensor(-1, 1, true, TG_SHAPE(T, B, I));
    tg_tape *tape = tg_tape_new();
    tg_rnn_result r = tg_gru_forward(gru, tape, x, NULL);
    tg_tensor *z1 = find_retained(tape, "z_1"), *n1 = find_retained(tape, "n_1");
    tg_tensor *h0 = find_retained(tape, "h_0"), *h1 = find_retained(tape, "h_1");
    tg_tape_backward(tape, tg_sum(tape, r.output));
    /* h_1 = n_1 + z_1⊙(h_0 − n_1)  =>  dL/dz_1 = dL/dh_1 ⊙ (h_0 − n_1) */
    tg_real want[8];
    for (int k = 0; k < B * H; k++) want[k] = h1->grad[k] * (h0->data[k] - n1->data[k]);
    tg_test_assert_close("dL/dz_1", z1->grad, want, B * H, TG_TEST_ATOL, TG_TEST_RTOL);
    tg_tape_free(tape);

    /* LSTM, 2 layers bidirectional: c_2 = f_2⊙c_1 + i_2⊙g_2  =>  dL/df_2 = dL/dc_2 ⊙ c_1 */
    o.num_layers = 2, o.bidirectional = true;
    tg_lstm *lstm = tg_lstm_new(o);
    tape = tg_tape_new();
    r = tg_lstm_forward(lstm, tape, x, NULL, NULL);
    tg_tensor *f2 = find_retained(tape, "f_2_l1"), *c1 = find_retained(tape, "c_1_l1");
    tg_tensor *c2 = find_retained(tape, "c_2_l1");
    assert_null(tg_rnn_find_named(tape, "z_0_l1_reverse")); /* an LSTM has no z */
    assert_non_null(tg_rnn_find_named(tape, "o_0_l1_reverse"));
    assert_non_null(tg_rnn_find_named(tape, "i_2_reverse"));
    tg_tape_backward(tape, tg_sum(tape, r.output));
    for (int k = 0; k < B * H; k++) want[k] = c2->grad[k] * c1->data[k];
    tg_test_assert_close("dL/df_2", f2->grad, want, B * H, TG_TEST_ATOL, TG_TEST_RTOL);
    tg_tape_free(tape);
    tg_tensor_free(x);
    tg_module_free(&gru->base.module);
    tg_module_free(&lstm->base.module);
}

/* ---------------------------------------------------------------------------------------
 * Unbatched inputs equal a batch of one
 * ------------------------------------------------------------------------------------- */
static void test_unbatched(void **state) {
    (void)state;
    const int64_t T = 4, I = 3, H = 5;
    tg_rnn_options o = tg_rnn_defaults(I, H);
    o.num_layers = 2, o.bidirectional = true;
    tg_lstm *m = tg_lstm_new(o);
    tg_tensor *x = rand_tensor(-1, 1, false, TG_SHAPE(T, I));
    tg_tensor *x3 = tg_tensor_clone(x);
    x3->shape[0] = T, x3->shape[1] = 1, x3->shape[2] = I, x3->ndim = 3;
    tg_tensor *h0 = rand_tensor(-0.5, 0.5, false, TG_SHAPE(4, H));
    tg_tensor *h03 = tg_tensor_clone(h0);
    h03->shape[1] = 1, h03->shape[2] = H, h03->ndim = 3;
    tg_tape *tape = tg_tape_new();
    tg_rnn_result a = tg_lstm_forward(m, tape, x, h0, h0);
    tg_rnn_result b = tg_lstm_forward(m, tape, x3, h03, h03);
    assert_int_equal(a.output->ndim, 2);
    assert_int_equal(a.output->shape[1], 2 * H);
    assert_int_equal(a.h_n->ndim, 2);
    tg_test_assert_close("unbatched output", a.output->data, b.output->data, T * 2 * H, 0, 0);
    tg_test_assert_close("unbatched c_n", a.c_n->data, b.c_n->data, 4 * H, 0, 0);
    /* cells: (in) and (H) */
    tg_gru_cell *cell = tg_gru_cell_new(tg_cell_defaults(I, H));
    tg_tensor *h = tg_gru_cell_forward(cell, tape, tg_select(tape, x, 0, 1), NULL);
    assert_int_equal(h->ndim, 1);
    assert_int_equal(h->shape[0], H);
    tg_module_free(&cell->base.module);
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(x3), tg_tensor_free(h0), tg_tensor_free(h03);
    tg_module_free(&m->base.module);
}

/* ---------------------------------------------------------------------------------------
 * Error messages name the op or module, the shapes and the tensor names
 * ------------------------------------------------------------------------------------- */
static void test_errors(void **state) {
    (void)state;
    tg_rnn_options o = tg_rnn_defaults(3, 4);
    tg_gru *gru = tg_gru_new(o);
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(5, 2, 7)), "x");
    TG_EXPECT_FAIL(tg_gru_forward(gru, tape, x, NULL), "tg_gru_forward", "(5, 2, 7) 'x'",
                   "7 features", "input_size 3");
    tg_tensor *good = tg_tensor_zeros(TG_SHAPE(5, 2, 3));
    /* h0 is (D·layers, N, H) whatever batch_first is: a transposed h0 is refused */
    tg_tensor *h0 = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(2, 1, 4)), "h0");
    TG_EXPECT_FAIL(tg_gru_forward(gru, tape, good, h0), "tg_gru_forward", "h0", "(2, 1, 4) 'h0'",
                   "expected (1, 2, 4)");
    tg_tensor *flat = tg_tensor_zeros(TG_SHAPE(4));
    TG_EXPECT_FAIL(tg_gru_forward(gru, tape, flat, NULL), "tg_gru_forward", "(4,)", "3-D");
    o.num_layers = 2;
    tg_lstm *lstm = tg_lstm_new(o);
    tg_tensor *c0 = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(1, 2, 4)), "c0");
    TG_EXPECT_FAIL(tg_lstm_forward(lstm, tape, good, NULL, c0), "tg_lstm_forward", "c0",
                   "(1, 2, 4) 'c0'", "expected (2, 2, 4)");
    /* the kinds are types (a GRU passed as an LSTM does not compile: tests/compile_fail/);
     * at run time, options changed after construction no longer match the kind built */
    gru->base.options.reset_after = false;
    TG_EXPECT_FAIL(tg_gru_forward(gru, tape, good, NULL), "tg_gru_forward", "built as a gru",
                   "reset_after");
    gru->base.options.reset_after = true;
    TG_EXPECT_FAIL(tg_recurrent_forward(&gru->base, tape, good, NULL, c0), "tg_recurrent_forward",
                   "c0 is for an LSTM", "gru");
    /* cells */
    tg_lstm_cell *cell = tg_lstm_cell_new(tg_cell_defaults(3, 4));
    tg_tensor *x2 = tg_tensor_zeros(TG_SHAPE(2, 3)),
              *h = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(3, 4)), "h");
    TG_EXPECT_FAIL(tg_lstm_cell_forward(cell, tape, x2, h, NULL), "tg_lstm_cell_forward",
                   "(3, 4) 'h'", "expected (2, 4)");
    TG_EXPECT_FAIL(tg_lstm_cell_forward(cell, tape, x, NULL, NULL), "tg_lstm_cell_forward",
                   "(5, 2, 7) 'x'");
    tg_gru_cell *gru_cell = tg_gru_cell_new(tg_cell_defaults(3, 4));
    TG_EXPECT_FAIL(tg_cell_forward(&gru_cell->base, tape, x2, NULL, h), "tg_cell_forward",
                   "c is for an LSTM cell", "gru");
    tg_module_free(&gru_cell->base.module);
    /* the ops themselves */
    const tg_cell_weights w = {gru->base.weights[0].w_ih, gru->base.weights[0].w_hh, NULL, NULL,
                               NULL};
    TG_EXPECT_FAIL(tg_rnn_sequence_fused(tape, TG_CELL_GRU, &w, good, NULL, h, false),
                   "tg_rnn_sequence_fused", "only for LSTM");
    TG_EXPECT_FAIL(tg_cell_step_fused(tape, TG_CELL_GRU, &w, good, NULL, NULL),
                   "tg_cell_step_fused", "should be 2-D");
    TG_EXPECT_FAIL(tg_cell_step_composite(tape, TG_CELL_GRU, &w, x2, h, NULL, NULL),
                   "tg_cell_step_composite", "(3, 4) 'h'", "(2, 4)");
    TG_EXPECT_FAIL(tg_rnn_sequence_fused(tape, TG_CELL_LSTM, &w, good, NULL, NULL, false),
                   "tg_rnn_sequence_fused: lstm", "weight_hh", "(12, 4)");
    o = tg_rnn_defaults(3, 0);
    TG_EXPECT_FAIL(tg_gru_new(o), "tg_gru_new", "hidden_size 0");
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(good), tg_tensor_free(h0), tg_tensor_free(flat);
    tg_tensor_free(c0), tg_tensor_free(x2), tg_tensor_free(h);
    tg_module_free(&gru->base.module);
    tg_module_free(&lstm->base.module);
    tg_module_free(&cell->base.module);
}

/* ---------------------------------------------------------------------------------------
 * Training loop sanity: the fused path makes no allocation after the first step
 * ------------------------------------------------------------------------------------- */
static void test_tape_reuse(void **state) {
    (void)state;
    tg_rnn_options o = tg_rnn_defaults(3, 8);
    o.num_layers = 2, o.bidirectional = true;
    tg_gru *m = tg_gru_new(o);
    tg_tensor *x = rand_tensor(-1, 1, true, TG_SHAPE(7, 4, 3));
    tg_tape *tape = tg_tape_new();
    uint64_t mallocs = 0;
    for (int step = 0; step < 3; step++) {
        tg_rnn_result r = tg_gru_forward(m, tape, x, NULL);
        tg_tape_backward(tape, tg_sum(tape, r.output));
        if (step == 1) mallocs = tg_tape_malloc_count(tape);
        tg_tape_reset(tape);
    }
    assert_int_equal(tg_tape_malloc_count(tape), mallocs);
    tg_tape_free(tape);
    tg_tensor_free(x);
    tg_module_free(&m->base.module);
}

static void test_summary(void **state) {
    (void)state;
    /* parity errors: absolute; relative to the tensor's largest entry; and elementwise
     * relative over entries above 1e-3 (small gradient sums carry float32 cancellation) */
    print_message("[ rnn      ] %s build: %d gradchecks; %d PyTorch parity cases, worst |err| "
                  "%.3g, worst |err|/max|want| %.3g, worst elementwise relative %.3g; "
                  "%d fused==composite checks, worst |diff| %.3g\n",
                  TG_REAL_NAME, tg_test_gradchecks, n_parity_cases, worst_parity_abs,
                  worst_parity_scaled, worst_parity_rel, n_fused_composite, worst_fc_abs);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_values),
        cmocka_unit_test(test_gradcheck_ops),
        cmocka_unit_test(test_gradcheck_modules),
        cmocka_unit_test(test_gradcheck_cells),
        cmocka_unit_test(test_fused_equals_composite_modules),
        cmocka_unit_test(test_fused_equals_composite_cells),
        cmocka_unit_test(test_default_init_matches_torch),
        cmocka_unit_test(test_typed_entry_points),
        cmocka_unit_test(test_parity_modules),
        cmocka_unit_test(test_parity_cells),
        cmocka_unit_test(test_dropout_between_layers),
        cmocka_unit_test(test_fused_tape_nodes_and_inference),
        cmocka_unit_test(test_named_gate_gradients),
        cmocka_unit_test(test_unbatched),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_tape_reuse),
        cmocka_unit_test(test_summary),
    };
    return cmocka_run_group_tests_name("rnn", tests, NULL, NULL);
}
