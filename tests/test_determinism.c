/* Determinism: the same seed and the same data give bit-identical losses,
 * and bit-identical parameters after the steps, at 1 and at 2 threads — for a few training
 * steps (forward, cross entropy, backward, Adam) of a GRU classifier and of a small
 * Transformer with dropout, and for an LSTM layer's forward and backward. The sizes are chosen so
 * that the GEMMs are large enough to be split across threads (tg_gemm keeps one thread below about
 * a million multiply-adds). */
#include "harness.h"

#include <string.h>

#include <tapegrad/kernels.h>

#define STEPS 4

/* Losses of STEPS steps and a copy of every parameter afterwards. */
typedef struct run_result {
    tg_real loss[STEPS];
    tg_real *params; /* all parameters, concatenated in list order */
    int64_t numel;
} run_result;

static void snapshot(run_result *r, const tg_params *params) {
    r->numel = tg_params_numel(params);
    r->params = malloc((size_t)r->numel * sizeof(tg_real));
    assert_non_null(r->params);
    int64_t off = 0;
    for (size_t i = 0; i < params->count; i++) {
        const tg_tensor *t = params->tensors[i];
        memcpy(r->params + off, t->data, (size_t)t->numel * sizeof(tg_real));
        off += t->numel;
    }
}

/* Data drawn from a small LCG, the same for every run. */
static tg_index *random_ids(uint64_t *state, int32_t below, int ndim, const int64_t *shape) {
    tg_index *ix = tg_index_new(ndim, shape);
    for (int64_t i = 0; i < ix->numel; i++) {
        *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
        ix->data[i] = (int32_t)((*state >> 33) % (uint64_t)below);
    }
    return ix;
}

static run_result run_gru_classifier(int threads) {
    tg_set_num_threads(threads);
    tg_manual_seed(7);
    enum { V = 500, E = 64, H = 128, C = 10, B = 32, T = 12 };
    tg_gru_classifier *m = tg_gru_classifier_new(V, E, H, C);
    tg_optim *opt = tg_adam_new(tg_module_params(&m->module), NULL);
    tg_tape *tape = tg_tape_new();
    uint64_t state = 1;
    run_result r = {0};
    for (int s = 0; s < STEPS; s++) {
        tg_index *tokens = random_ids(&state, V, TG_SHAPE(B, T));
        tg_index *labels = random_ids(&state, C, TG_SHAPE(B));
        tg_tensor *loss =
            tg_cross_entropy(tape, tg_gru_classifier_forward(m, tape, tokens), labels);
        tg_tape_backward(tape, loss);
        tg_optim_step(opt);
        r.loss[s] = tg_item(loss);
        tg_tape_reset(tape);
        tg_index_free(tokens);
        tg_index_free(labels);
    }
    snapshot(&r, tg_module_params(&m->module));
    tg_tape_free(tape);
    tg_optim_free(opt);
    tg_module_free(&m->module);
    tg_set_num_threads(0);
    return r;
}

static run_result run_transformer(int threads) {
    tg_set_num_threads(threads);
    tg_manual_seed(11); /* weights and dropout masks */
    enum { V = 100, S = 16, T = 16, N = 8 };
    tg_transformer_options o = tg_transformer_defaults(64, 4);
    o.dim_feedforward = 128;
    o.dropout = (tg_real)0.1;
    tg_transformer_model *m = tg_transformer_model_new_ex(V, &o, 2, 2);
    tg_optim *opt = tg_adam_new(tg_module_params(&m->module), NULL);
    tg_tape *tape = tg_tape_new();
    uint64_t state = 2;
    run_result r = {0};
    for (int s = 0; s < STEPS; s++) {
        tg_index *src = random_ids(&state, V, TG_SHAPE(S, N));
        tg_index *tgt = random_ids(&state, V, TG_SHAPE(T, N));
        tg_index *gold = random_ids(&state, V, TG_SHAPE(T * N));
        tg_tensor *logits = tg_transformer_model_forward(m, tape, src, tgt);
        tg_tensor *loss = tg_cross_entropy(tape, tg_reshape(tape, logits, TG_SHAPE(-1, V)), gold);
        tg_tape_backward(tape, loss);
        tg_optim_step(opt);
        r.loss[s] = tg_item(loss);
        tg_tape_reset(tape);
        tg_index_free(src);
        tg_index_free(tgt);
        tg_index_free(gold);
    }
    snapshot(&r, tg_module_params(&m->module));
    tg_tape_free(tape);
    tg_optim_free(opt);
    tg_module_free(&m->module);
    tg_set_num_threads(0);
    return r;
}

static void assert_identical(const char *what, run_result a, run_result b) {
    for (int s = 0; s < STEPS; s++) {
        if (memcmp(&a.loss[s], &b.loss[s], sizeof(tg_real)) != 0)
            fail_msg("%s: step %d loss %.17g at 1 thread, %.17g at 2 threads", what, s,
                     (double)a.loss[s], (double)b.loss[s]);
    }
    assert_int_equal(a.numel, b.numel);
    for (int64_t i = 0; i < a.numel; i++)
        if (memcmp(&a.params[i], &b.params[i], sizeof(tg_real)) != 0)
            fail_msg("%s: parameter element %lld after %d steps: %.17g at 1 thread, %.17g at 2",
                     what, (long long)i, STEPS, (double)a.params[i], (double)b.params[i]);
    /* and the run really trained: the losses are finite and not all equal */
    for (int s = 0; s < STEPS; s++) assert_true(a.loss[s] == a.loss[s]);
    assert_true(a.loss[0] != a.loss[STEPS - 1]);
    free(a.params);
    free(b.params);
}

static void test_gru_classifier_1_vs_2_threads(void **state) {
    (void)state;
    run_result one = run_gru_classifier(1);
    run_result two = run_gru_classifier(2);
    assert_identical("GRU classifier", one, two);
}

static void test_transformer_1_vs_2_threads(void **state) {
    (void)state;
    run_result one = run_transformer(1);
    run_result two = run_transformer(2);
    assert_identical("Transformer", one, two);
}

/* One LSTM layer, forward and backward from a fixed output gradient, at 1 and 2 threads:
 * the output, h_n, c_n and every gradient bit-identical. B = 32 takes the fused layer's
 * one parallel region over batch rows, B = 8 (under a register tile per thread) its
 * per-step split of the hidden units. T = 40 steps are several chunks of the fused layer's
 * input projections and weight gradients (about 256 rows a chunk: 8 steps of B = 32, 32 of
 * B = 8), the last one short. */
static void lstm_layer_run(int threads, int64_t B, tg_real *out, int64_t n_out) {
    enum { I = 24, H = 128, T = 40 };
    tg_set_num_threads(threads);
    tg_manual_seed(5);
    tg_lstm *m = tg_lstm_new(tg_rnn_defaults(I, H));
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_new(TG_SHAPE(T, B, I));
    uint64_t st = 3;
    for (int64_t i = 0; i < x->numel; i++) {
        st = st * 6364136223846793005ULL + 1442695040888963407ULL;
        x->data[i] = (tg_real)((double)(st >> 40) / (double)(1 << 24) - 0.5);
    }
    tg_tensor_requires_grad(x, true);
    tg_rnn_result r = tg_recurrent_forward(&m->base, tape, x, NULL, NULL);
    tg_real *seed = malloc((size_t)r.output->numel * sizeof(tg_real));
    assert_non_null(seed);
    for (int64_t i = 0; i < r.output->numel; i++) seed[i] = (tg_real)((i % 7) - 3) / 8;
    int64_t k = 0;
    for (int64_t i = 0; i < r.output->numel; i++) out[k++] = r.output->data[i];
    for (int64_t i = 0; i < r.c_n->numel; i++) out[k++] = r.c_n->data[i];
    tg_tape_backward_with(tape, r.output, seed);
    for (int64_t i = 0; i < x->numel; i++) out[k++] = x->grad[i];
    const tg_params *params = tg_module_params(&m->base.module);
    for (size_t p = 0; p < params->count; p++)
        for (int64_t i = 0; i < params->tensors[p]->numel; i++)
            out[k++] = params->tensors[p]->grad[i];
    assert_int_equal(k, n_out);
    free(seed);
    tg_tensor_free(x);
    tg_tape_free(tape);
    tg_module_free(&m->base.module);
    tg_set_num_threads(0);
}

static void test_lstm_layer_1_vs_2_threads(void **state) {
    (void)state;
    enum { I = 24, H = 128, T = 40 };
    const int64_t batches[2] = {32, 8};
    for (int c = 0; c < 2; c++) {
        const int64_t B = batches[c];
        const int64_t n = T * B * H + B * H + T * B * I + 4 * H * (I + H) + 2 * 4 * H;
        tg_real *one = malloc((size_t)n * sizeof(tg_real)),
                *two = malloc((size_t)n * sizeof(tg_real));
        assert_non_null(one);
        assert_non_null(two);
        lstm_layer_run(1, B, one, n);
        lstm_layer_run(2, B, two, n);
        for (int64_t i = 0; i < n; i++)
            if (memcmp(&one[i], &two[i], sizeof(tg_real)) != 0)
                fail_msg("LSTM layer B=%lld: value %lld is %.17g at 1 thread, %.17g at 2",
                         (long long)B, (long long)i, (double)one[i], (double)two[i]);
        free(one);
        free(two);
    }
}

/* The same thread count twice gives the same bits too (nothing depends on timing). */
static void test_gru_classifier_repeatable_at_2_threads(void **state) {
    (void)state;
    run_result a = run_gru_classifier(2);
    run_result b = run_gru_classifier(2);
    assert_identical("GRU classifier, 2 threads twice", a, b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gru_classifier_1_vs_2_threads),
        cmocka_unit_test(test_transformer_1_vs_2_threads),
        cmocka_unit_test(test_lstm_layer_1_vs_2_threads),
        cmocka_unit_test(test_gru_classifier_repeatable_at_2_threads),
    };
    return cmocka_run_group_tests_name("determinism (" TG_REAL_NAME ")", tests, NULL, NULL);
}
