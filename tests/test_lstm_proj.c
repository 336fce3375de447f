/* nn.LSTM with projections (proj_size P): h_t = W_hr·(o_t ⊙ tanh(c_t)). Forward values
 * against a plain-loop double reference, float64 gradchecks (input, h0, c0 and every
 * parameter, weight_hr included; modules of 1 and 2 layers, uni- and bidirectional, and
 * the ops), fused == composite for outputs and every gradient, PyTorch's init and
 * state_dict names, the repr, dropout between layers, inference, and the error messages.
 * PyTorch parity of outputs and every gradient, from the fixtures of
 * tests/fixturegen/modules_lstm_proj.py, is test_rnn.c's (its MODULE_CASES). */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tapegrad/params.h>
#include <tapegrad/rnn.h>

#include "rnn_test_common.h"

static int n_fused_composite;
static double worst_fc_abs;

static uint64_t next_seed = 5000;

static tg_tensor *rand_tensor(tg_real lo, tg_real hi, bool grad, int ndim, const int64_t *shape) {
    return tg_tensor_requires_grad(tg_test_rand(next_seed++, lo, hi, ndim, shape), grad);
}

static tg_lstm *lstm_new(int64_t I, int64_t H, int64_t P, int64_t layers, bool bidir) {
    tg_rnn_options o = tg_rnn_defaults(I, H);
    o.proj_size = P, o.num_layers = layers, o.bidirectional = bidir;
    return tg_lstm_new(o);
}

/* ---------------------------------------------------------------------------------------
 * The reference: PyTorch's formulas in plain loops, in double, sequence-first batched
 * ------------------------------------------------------------------------------------- */
static double sigm(double a) { return 1 / (1 + exp(-a)); }

/* y[b, r] = Σ_k W[r, k]·v[b, k] (+ bias[r]) for r < rows: W (rows, K), v (B, K) */
static void ref_affine(int64_t B, int64_t rows, int64_t K, const tg_real *W, const double *v,
                       const tg_tensor *bias, double *y) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t r = 0; r < rows; r++) {
            double s = bias ? (double)bias->data[r] : 0;
            for (int64_t k = 0; k < K; k++) s += (double)W[r * K + k] * v[b * K + k];
            y[b * rows + r] += s;
        }
}

/* x (T, B, I) -> out (T, B, D·P), h_n (DL, B, P), c_n (DL, B, H); h0 / c0 may be NULL */
static void ref_lstm(const tg_lstm *m, int64_t T, int64_t B, const tg_real *x, const tg_real *h0,
                     const tg_real *c0, double *out, double *h_n, double *c_n) {
    const tg_rnn_options *o = &m->base.options;
    const int64_t H = o->hidden_size, P = o->proj_size, D = m->base.num_directions;
    int64_t in = o->input_size;
    double *seq = malloc((size_t)(T * B * (in > D * P ? in : D * P)) * sizeof *seq);
    double *next = malloc((size_t)(T * B * D * P) * sizeof *next);
    double *h = malloc((size_t)(B * P) * sizeof *h), *c = malloc((size_t)(B * H) * sizeof *c);
    double *a = malloc((size_t)(B * 4 * H) * sizeof *a), *mm = malloc((size_t)(B * H) * sizeof *mm);
    for (int64_t i = 0; i < T * B * in; i++) seq[i] = (double)x[i];
    for (int64_t l = 0; l < o->num_layers; l++) {
        for (int64_t d = 0; d < D; d++) {
            const int64_t k = l * D + d;
            const tg_cell_weights *w = &m->base.weights[k];
            for (int64_t i = 0; i < B * P; i++) h[i] = h0 ? (double)h0[k * B * P + i] : 0;
            for (int64_t i = 0; i < B * H; i++) c[i] = c0 ? (double)c0[k * B * H + i] : 0;
            for (int64_t s = 0; s < T; s++) {
                const int64_t t = d ? T - 1 - s : s;
                double *xt = malloc((size_t)(B * in) * sizeof *xt);
                memcpy(xt, seq + t * B * in, (size_t)(B * in) * sizeof *xt);
                memset(a, 0, (size_t)(B * 4 * H) * sizeof *a);
                ref_affine(B, 4 * H, in, w->w_ih->data, xt, w->b_ih, a);
                ref_affine(B, 4 * H, P, w->w_hh->data, h, w->b_hh, a);
                free(xt);
                for (int64_t b = 0; b < B; b++)
                    for (int64_t j = 0; j < H; j++) {
                        const double *ab = a + b * 4 * H;
                        const double ig = sigm(ab[j]), fg = sigm(ab[H + j]);
                        const double gg = tanh(ab[2 * H + j]), og = sigm(ab[3 * H + j]);
                        c[b * H + j] = fg * c[b * H + j] + ig * gg;
                        mm[b * H + j] = og * tanh(c[b * H + j]);
                    }
                memset(h, 0, (size_t)(B * P) * sizeof *h);
                ref_affine(B, P, H, w->w_hr->data, mm, NULL, h); /* h = W_hr·m, no bias */
                for (int64_t b = 0; b < B; b++)
                    for (int64_t j = 0; j < P; j++)
                        next[(t * B + b) * D * P + d * P + j] = h[b * P + j];
            }
            memcpy(h_n + k * B * P, h, (size_t)(B * P) * sizeof *h);
            memcpy(c_n + k * B * H, c, (size_t)(B * H) * sizeof *c);
        }
        in = D * P;
        memcpy(seq, next, (size_t)(T * B * in) * sizeof *seq);
    }
    memcpy(out, seq, (size_t)(T * B * D * P) * sizeof *out);
    free(seq), free(next), free(h), free(c), free(a), free(mm);
}

#ifdef TG_DOUBLE
#define REF_TOL 1e-12
#else
#define REF_TOL 2e-5
#endif

static void test_forward_values(void **state) {
    (void)state;
    const int64_t T = 4, B = 3, I = 3, H = 6, P = 4;
    for (int cfg = 0; cfg < 4; cfg++)
        for (int fused = 0; fused < 2; fused++) {
            const int64_t layers = 1 + cfg / 2, D = 1 + cfg % 2, DL = D * layers;
            tg_lstm *m = lstm_new(I, H, P, layers, D == 2);
            m->base.options.exec = fused ? TG_RNN_FUSED : TG_RNN_COMPOSITE;
            tg_tensor *x = rand_tensor(-1, 1, false, TG_SHAPE(T, B, I));
            tg_tensor *h0 = cfg == 3 ? NULL : rand_tensor(-0.5, 0.5, false, TG_SHAPE(DL, B, P));
            tg_tensor *c0 = cfg == 3 ? NULL : rand_tensor(-0.5, 0.5, false, TG_SHAPE(DL, B, H));
            tg_tape *tape = tg_tape_new();
            tg_rnn_result r = tg_lstm_forward(m, tape, x, h0, c0);
            assert_int_equal(r.output->ndim, 3);
            assert_int_equal(r.output->shape[2], D * P);
            assert_int_equal(r.h_n->shape[2], P), assert_int_equal(r.c_n->shape[2], H);
            double *out = malloc((size_t)(T * B * D * P) * sizeof *out);
            double *hn = malloc((size_t)(DL * B * P) * sizeof *hn);
            double *cn = malloc((size_t)(DL * B * H) * sizeof *cn);
            ref_lstm(m, T, B, x->data, h0 ? h0->data : NULL, c0 ? c0->data : NULL, out, hn, cn);
            tg_test_assert_close_f64("output", r.output->data, out, T * B * D * P, REF_TOL, 0);
            tg_test_assert_close_f64("h_n", r.h_n->data, hn, DL * B * P, REF_TOL, 0);
            tg_test_assert_close_f64("c_n", r.c_n->data, cn, DL * B * H, REF_TOL, 0);
            free(out), free(hn), free(cn);
            tg_tape_free(tape);
            tg_tensor_free(x), tg_tensor_free(h0), tg_tensor_free(c0);
            tg_module_free(&m->base.module);
        }
}

/* ---------------------------------------------------------------------------------------
 * float64 gradchecks: modules, and the ops (sequence forward / reverse, one step)
 * ------------------------------------------------------------------------------------- */
static const mod_config MOD_CONFIGS[] = {
    {1, false, false, true, true}, {1, true, false, true, true},  {2, false, false, true, true},
    {2, true, false, true, true},  {2, true, true, false, false}, /* batch_first, no bias, zeros */
};
enum { N_MOD_CONFIGS = sizeof MOD_CONFIGS / sizeof *MOD_CONFIGS };

static void test_gradcheck_modules(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    const int64_t T = 3, B = 2, I = 3, H = 5, P = 2;
    for (int ci = 0; ci < N_MOD_CONFIGS; ci++)
        for (int fused = 0; fused < 2; fused++) {
            const mod_config *cf = &MOD_CONFIGS[ci];
            tg_rnn_options o = tg_rnn_defaults(I, H);
            o.proj_size = P, o.num_layers = cf->layers, o.bidirectional = cf->bidir;
            o.batch_first = cf->batch_first, o.bias = cf->bias;
            o.exec = fused ? TG_RNN_FUSED : TG_RNN_COMPOSITE;
            tg_lstm *m = tg_lstm_new(o);
            const int64_t DL = (cf->bidir ? 2 : 1) * cf->layers;
            mod_ctx c = {&m->base,
                         cf->batch_first ? rand_tensor(-1, 1, true, TG_SHAPE(B, T, I))
                                         : rand_tensor(-1, 1, true, TG_SHAPE(T, B, I)),
                         NULL, NULL};
            if (cf->h0) {
                c.h0 = rand_tensor(-0.5, 0.5, true, TG_SHAPE(DL, B, P));
                c.c0 = rand_tensor(-0.5, 0.5, true, TG_SHAPE(DL, B, H));
            }
            tg_tensor *in[3] = {c.x, c.h0, c.c0};
            char what[96];
            snprintf(what, sizeof what, "lstm proj config %d %s", ci,
                     fused ? "fused" : "composite");
            /* every parameter, weight_hr_l<k>(_reverse) included */
            tg_test_gradcheck_params(what, mod_fn, &c, in, cf->h0 ? 3 : 1,
                                     tg_module_params(&m->base.module));
            tg_tensor_free(c.x), tg_tensor_free(c.h0), tg_tensor_free(c.c0);
            tg_module_free(&m->base.module);
        }
}

/* inputs: x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr */
typedef struct op_ctx {
    bool step, reverse, fused;
} op_ctx;

static tg_tensor *op_fn(tg_tape *t, tg_tensor *const *in, void *vctx) {
    const op_ctx *c = vctx;
    const tg_cell_weights w = {in[3], in[4], in[5], in[6], in[7]};
    if (c->step) {
        tg_rnn_state s =
            c->fused ? tg_cell_step_fused(t, TG_CELL_LSTM, &w, in[0], in[1], in[2])
                     : tg_cell_step_composite(t, TG_CELL_LSTM, &w, in[0], in[1], in[2], "0");
        return tg_concat(t, (tg_tensor *[]){s.h, s.c}, 2, 1);
    }
    tg_rnn_result r =
        c->fused
            ? tg_rnn_sequence_fused(t, TG_CELL_LSTM, &w, in[0], in[1], in[2], c->reverse)
            : tg_rnn_sequence_composite(t, TG_CELL_LSTM, &w, in[0], in[1], in[2], c->reverse, NULL);
    return result_flat(t, r);
}

static void test_gradcheck_ops(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    const int64_t T = 3, B = 2, I = 3, H = 4, P = 3;
    for (int k = 0; k < 6; k++) {
        const op_ctx c = {k / 2 == 2, k / 2 == 1, k % 2 == 0};
        tg_tensor *in[8] = {
            c.step ? rand_tensor(-1, 1, true, TG_SHAPE(B, I))
                   : rand_tensor(-1, 1, true, TG_SHAPE(T, B, I)),
            rand_tensor(-0.5, 0.5, true, TG_SHAPE(B, P)),
            rand_tensor(-0.5, 0.5, true, TG_SHAPE(B, H)),
            rand_tensor(-0.6, 0.6, true, TG_SHAPE(4 * H, I)),
            rand_tensor(-0.6, 0.6, true, TG_SHAPE(4 * H, P)),
            rand_tensor(-0.4, 0.4, true, TG_SHAPE(4 * H)),
            rand_tensor(-0.4, 0.4, true, TG_SHAPE(4 * H)),
            rand_tensor(-0.6, 0.6, true, TG_SHAPE(P, H)),
        };
        char what[96];
        snprintf(what, sizeof what, "lstm proj op: %s%s %s", c.step ? "step" : "sequence",
                 c.reverse ? " reverse" : "", c.fused ? "fused" : "composite");
        tg_test_gradcheck(what, op_fn, (void *)&c, in, 8);
        for (int i = 0; i < 8; i++) tg_tensor_free(in[i]);
    }
}

/* ---------------------------------------------------------------------------------------
 * fused == composite: outputs and every gradient, at sizes with several unit panels
 * ------------------------------------------------------------------------------------- */
static void test_fused_equals_composite(void **state) {
    (void)state;
    /* H = 40: several unit panels in the packed step products; the last configuration
     * trains with dropout between its 3 layers */
    const int64_t T = 4, B = 3, I = 6, H = 40, P = 7;
    for (int ci = 0; ci <= N_MOD_CONFIGS; ci++) {
        const mod_config cf =
            ci < N_MOD_CONFIGS ? MOD_CONFIGS[ci] : (mod_config){3, true, false, true, true};
        tg_rnn_options o = tg_rnn_defaults(I, H);
        o.proj_size = P, o.num_layers = cf.layers, o.bidirectional = cf.bidir;
        o.batch_first = cf.batch_first, o.bias = cf.bias;
        if (ci == N_MOD_CONFIGS) o.dropout = 0.4;
        tg_lstm *m = tg_lstm_new(o);
        const int64_t DL = (cf.bidir ? 2 : 1) * cf.layers;
        tg_tensor *x = cf.batch_first ? rand_tensor(-1, 1, true, TG_SHAPE(B, T, I))
                                      : rand_tensor(-1, 1, true, TG_SHAPE(T, B, I));
        tg_tensor *h0 = cf.h0 ? rand_tensor(-0.5, 0.5, true, TG_SHAPE(DL, B, P)) : NULL;
        tg_tensor *c0 = cf.h0 ? rand_tensor(-0.5, 0.5, true, TG_SHAPE(DL, B, H)) : NULL;
        int64_t na, nb;
        tg_real *a = module_run(&m->base, TG_RNN_FUSED, x, h0, c0, 91 + (uint64_t)ci, &na);
        tg_real *b = module_run(&m->base, TG_RNN_COMPOSITE, x, h0, c0, 91 + (uint64_t)ci, &nb);
        assert_int_equal(na, nb);
        for (int64_t i = 0; i < na; i++)
            worst_fc_abs = fmax(worst_fc_abs, fabs((double)a[i] - (double)b[i]));
        char what[64];
        snprintf(what, sizeof what, "fused vs composite, config %d", ci);
        tg_test_assert_close(what, a, b, na, FC_ATOL, FC_RTOL);
        n_fused_composite++;
        free(a), free(b);
        tg_tensor_free(x), tg_tensor_free(h0), tg_tensor_free(c0);
        tg_module_free(&m->base.module);
    }
}

/* ---------------------------------------------------------------------------------------
 * PyTorch's init bit for bit, its state_dict names in order, save and load by name
 * ------------------------------------------------------------------------------------- */
static void assert_params_equal_fixture(tg_fixture *fx, const char *prefix,
                                        const tg_params *params) {
    char keys[2048] = "";
    for (size_t i = 0; i < params->count; i++) {
        char name[256];
        snprintf(name, sizeof name, "%s%s", prefix, params->names[i]);
        tg_fixture_assert_tensor(fx, name, params->tensors[i], 0, 0); /* exact */
        strcat(keys, i ? "," : "");
        strcat(keys, params->names[i]);
    }
    assert_string_equal(keys, tg_fixture_meta(fx, "keys"));
}

static void test_default_init_matches_torch(void **state) {
    (void)state;
    tg_manual_seed(0);
    tg_lstm *m = lstm_new(4, 6, 3, 2, true);
    tg_fixture *fx = tg_fixture_load("init_lstm_proj_4_6_p3_bidir_l2");
    assert_params_equal_fixture(fx, "param.", tg_module_params(&m->base.module));
    tg_fixture_free(fx);
    tg_module_free(&m->base.module);
}

static void test_state_dict_save_load(void **state) {
    (void)state;
    /* PyTorch's own state_dict (plain keys) loads by name ... */
    tg_lstm *a = lstm_new(3, 5, 2, 2, true), *b = lstm_new(3, 5, 2, 2, true);
    char path[1024];
    snprintf(path, sizeof path, "%s/state_dict_lstm_proj.safetensors", TG_FIXTURES_DIR);
    assert_int_equal(tg_params_load(tg_module_params(&a->base.module), path, false), TG_OK);
    tg_fixture *fx = tg_fixture_load("state_dict_lstm_proj");
    assert_params_equal_fixture(fx, "", tg_module_params(&a->base.module));
    tg_fixture_free(fx);
    /* ... and what tapegrad saves loads back under the same names */
    char dir[] = "/tmp/tg_lstm_proj_XXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/lstm.safetensors", dir);
    assert_int_equal(tg_params_save(tg_module_params(&a->base.module), path), TG_OK);
    assert_int_equal(tg_params_load(tg_module_params(&b->base.module), path, false), TG_OK);
    const tg_params *pa = tg_module_params(&a->base.module);
    const tg_params *pb = tg_module_params(&b->base.module);
    for (size_t i = 0; i < pa->count; i++)
        tg_test_assert_close(pa->names[i], pb->tensors[i]->data, pa->tensors[i]->data,
                             pa->tensors[i]->numel, 0, 0);
    unlink(path);
    rmdir(dir);
    tg_module_free(&a->base.module), tg_module_free(&b->base.module);
}

static void test_repr(void **state) {
    (void)state;
    tg_lstm *m = lstm_new(10, 20, 5, 1, false);
    char *s = tg_module_repr(&m->base.module);
    assert_string_equal(s, "LSTM(10, 20, proj_size=5)");
    free(s);
    tg_module_free(&m->base.module);
    tg_rnn_options o = tg_rnn_defaults(10, 20);
    o.proj_size = 5, o.num_layers = 2, o.batch_first = true, o.dropout = 0.5;
    o.bidirectional = true;
    m = tg_lstm_new(o);
    s = tg_module_repr(&m->base.module);
    /* PyTorch 1.13 prints exactly this */
    assert_string_equal(s, "LSTM(10, 20, proj_size=5, num_layers=2, batch_first=True, "
                           "dropout=0.5, bidirectional=True)");
    free(s);
    tg_module_free(&m->base.module);
}

/* ---------------------------------------------------------------------------------------
 * Dropout between layers, inference, the composite path's names
 * ------------------------------------------------------------------------------------- */
static void test_dropout_inference_names(void **state) {
    (void)state;
    const int64_t T = 5, B = 3, I = 3, H = 8, P = 3;
    tg_rnn_options o = tg_rnn_defaults(I, H);
    o.proj_size = P, o.num_layers = 2, o.bidirectional = true, o.dropout = 0.5;
    tg_lstm *m = tg_lstm_new(o);
    tg_tensor *x = rand_tensor(-1, 1, true, TG_SHAPE(T, B, I));
    tg_tape *tape = tg_tape_new();
    /* training: one dropout, on the first layer's (T, B, 2·P) output */
    tg_rnn_result tr = tg_lstm_forward(m, tape, x, NULL, NULL);
    assert_int_equal(count_ops(tape, "dropout"), 1);
    assert_int_equal(count_ops(tape, "lstm_sequence"), 4);
    tg_module_eval(&m->base.module);
    tg_tape *ev_tape = tg_tape_new();
    tg_rnn_result ev = tg_lstm_forward(m, ev_tape, x, NULL, NULL);
    assert_int_equal(count_ops(ev_tape, "dropout"), 0);
    int differ = 0;
    for (int64_t i = 0; i < T * B * 2 * P; i++) differ += tr.output->data[i] != ev.output->data[i];
    assert_true(differ > T * B * 2 * P / 2);
    /* recording off: the activations' one reused slot gives the same numbers, no nodes */
    tg_tape *inf = tg_tape_new();
    tg_tape_set_recording(inf, false);
    tg_rnn_result ri = tg_lstm_forward(m, inf, x, NULL, NULL);
    assert_int_equal(tg_tape_node_count(inf), 0);
    tg_test_assert_close("inference output", ri.output->data, ev.output->data, T * B * 2 * P, 0, 0);
    tg_test_assert_close("inference h_n", ri.h_n->data, ev.h_n->data, 4 * B * P, 0, 0);
    tg_test_assert_close("inference c_n", ri.c_n->data, ev.c_n->data, 4 * B * H, 0, 0);
    /* composite: m_t = o_t ⊙ tanh(c_t) is named, and h_t = W_hr·m_t has P features */
    m->base.options.exec = TG_RNN_COMPOSITE;
    tg_tape_reset(ev_tape);
    tg_lstm_forward(m, ev_tape, x, NULL, NULL);
    assert_int_equal(tg_rnn_find_named(ev_tape, "m_2_l1_reverse")->shape[1], H);
    assert_int_equal(tg_rnn_find_named(ev_tape, "h_2_l1_reverse")->shape[1], P);
    tg_tape_free(inf), tg_tape_free(ev_tape), tg_tape_free(tape);
    tg_tensor_free(x);
    tg_module_free(&m->base.module);
}

/* ---------------------------------------------------------------------------------------
 * Errors: bad proj_size, proj_size off LSTM, states of the wrong size, bad weight_hr
 * ------------------------------------------------------------------------------------- */
static void test_errors(void **state) {
    (void)state;
    tg_rnn_options o = tg_rnn_defaults(3, 5);
    o.proj_size = -1;
    TG_EXPECT_FAIL(tg_lstm_new(o), "tg_lstm_new", "proj_size -1", "zero to disable projections");
    o.proj_size = 5;
    TG_EXPECT_FAIL(tg_lstm_new(o), "tg_lstm_new", "proj_size 5", "smaller than hidden_size 5");
    o.proj_size = 9;
    TG_EXPECT_FAIL(tg_lstm_new(o), "tg_lstm_new", "proj_size 9", "smaller than hidden_size 5");
    o.proj_size = 2;
    TG_EXPECT_FAIL(tg_gru_new(o), "tg_gru_new", "proj_size 2", "only supported for LSTM");
    TG_EXPECT_FAIL(tg_rnn_new(o), "tg_rnn_new", "proj_size 2", "only supported for LSTM");

    tg_lstm *m = tg_lstm_new(o); /* (3, 5, proj_size=2) */
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = rand_tensor(-1, 1, false, TG_SHAPE(4, 2, 3));
    tg_tensor *h_big = rand_tensor(-1, 1, false, TG_SHAPE(1, 2, 5));
    tg_tensor *h_ok = rand_tensor(-1, 1, false, TG_SHAPE(1, 2, 2));
    /* h0 of hidden_size: PyTorch's "Expected hidden[0] size (1, 2, 2), got [1, 2, 5]" */
    TG_EXPECT_FAIL(tg_lstm_forward(m, tape, x, h_big, h_big), "tg_lstm_forward", "h0 (1, 2, 5)",
                   "expected (1, 2, 2)", "proj_size");
    /* c0 keeps hidden_size */
    TG_EXPECT_FAIL(tg_lstm_forward(m, tape, x, h_ok, h_ok), "tg_lstm_forward", "c0 (1, 2, 2)",
                   "expected (1, 2, 5)", "hidden_size");
    m->base.options.proj_size = 0;
    TG_EXPECT_FAIL(tg_lstm_forward(m, tape, x, NULL, NULL), "tg_lstm_forward",
                   "built with proj_size 2", "options say 0");
    m->base.options.proj_size = 2;

    /* the ops: weight_hr only for LSTM, of shape (P, H) with P < H; h of P features */
    tg_cell_weights w = m->base.weights[0];
    tg_tensor *xs = rand_tensor(-1, 1, false, TG_SHAPE(4, 2, 3));
    TG_EXPECT_FAIL(tg_rnn_sequence_fused(tape, TG_CELL_GRU, &w, xs, NULL, NULL, false),
                   "tg_rnn_sequence_fused", "weight_hr", "only for LSTM");
    tg_tensor *h_step = rand_tensor(-1, 1, false, TG_SHAPE(2, 5));
    TG_EXPECT_FAIL(tg_rnn_sequence_fused(tape, TG_CELL_LSTM, &w, xs, h_step, NULL, false),
                   "tg_rnn_sequence_fused: lstm", "h0 (2, 5)", "(2, 2)", "proj_size");
    TG_EXPECT_FAIL(tg_cell_step_composite(tape, TG_CELL_LSTM, &w, tg_select(tape, xs, 0, 0), h_step,
                                          NULL, NULL),
                   "tg_cell_step_composite: lstm", "h (2, 5)", "proj_size");
    tg_tensor *w_hr_t = rand_tensor(-1, 1, false, TG_SHAPE(5, 2)); /* transposed */
    w.w_hr = w_hr_t;
    TG_EXPECT_FAIL(tg_rnn_sequence_fused(tape, TG_CELL_LSTM, &w, xs, NULL, NULL, false),
                   "tg_rnn_sequence_fused: lstm", "weight_hr (5, 2)", "(2, 5)");
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(xs), tg_tensor_free(h_big), tg_tensor_free(h_ok);
    tg_tensor_free(h_step), tg_tensor_free(w_hr_t);
    tg_module_free(&m->base.module);
}

static void test_summary(void **state) {
    (void)state;
    print_message("[ lstm_proj ] " TG_REAL_NAME " build: %d gradchecks; %d fused==composite "
                  "checks, worst |diff| %.3g\n",
                  tg_test_gradchecks, n_fused_composite, worst_fc_abs);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_values),
        cmocka_unit_test(test_gradcheck_modules),
        cmocka_unit_test(test_gradcheck_ops),
        cmocka_unit_test(test_fused_equals_composite),
        cmocka_unit_test(test_default_init_matches_torch),
        cmocka_unit_test(test_state_dict_save_load),
        cmocka_unit_test(test_repr),
        cmocka_unit_test(test_dropout_inference_names),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_summary),
    };
    return cmocka_run_group_tests_name("lstm_proj", tests, NULL, NULL);
}
