/* bench/bench_classifier.c — the LSTM/GRU text classifiers: a training step (forward, cross
 * entropy, backward, Adam step) or, with --inference, the forward alone (recording off).
 *
 *   bench_classifier --config gru_cls|lstm_cls [--inference] [--threads N] [--quick] ...
 *
 * gru_cls:  Embedding(5000, 128) -> GRU(128 -> 256, batch_first) -> Linear(256 -> 10) on
 *           the last step; batch 64, seq 50.   lstm_cls: the same with an LSTM.
 * Sizes can be changed with --vocab --emb --hidden --classes --batch --seq.
 * bench/torch_models.py holds the PyTorch twin (same sizes, same data, same init). */
#include "bench_common.h"

#include <string.h>

#define NBATCH 4

typedef struct ctx {
    tg_gru_classifier *gru;
    tg_lstm_classifier *lstm;
    tg_optim *opt;
    tg_tape *tape;
    tg_index *tokens[NBATCH], *labels[NBATCH];
    int64_t step;
    bool inference;
} ctx;

static double step(void *p) {
    ctx *c = p;
    const int b = (int)(c->step++ % NBATCH);
    tg_tensor *logits = c->gru ? tg_gru_classifier_forward(c->gru, c->tape, c->tokens[b])
                               : tg_lstm_classifier_forward(c->lstm, c->tape, c->tokens[b]);
    tg_tensor *loss = tg_cross_entropy(c->tape, logits, c->labels[b]);
    return bench_step_end(c->tape, loss, c->inference ? NULL : c->opt);
}

int main(int argc, char **argv) {
    static const char *const extra[] = {"--vocab", "--emb", "--hidden", "--classes",
                                        "--batch", "--seq", NULL};
    bench_args a;
    bench_parse(argc, argv, &a, "  --config gru_cls|lstm_cls\n", extra);
    const char *config = a.config ? a.config : "gru_cls";
    const bool lstm = strcmp(config, "lstm_cls") == 0;
    if (!lstm && strcmp(config, "gru_cls") != 0) {
        fprintf(stderr, "bench_classifier: unknown config '%s'\n", config);
        return 2;
    }
    const int64_t V = bench_flag_int(&a, "--vocab", 5000), E = bench_flag_int(&a, "--emb", 128),
                  H = bench_flag_int(&a, "--hidden", 256), C = bench_flag_int(&a, "--classes", 10),
                  B = bench_flag_int(&a, "--batch", 64), T = bench_flag_int(&a, "--seq", 50);

    ctx c = {.inference = a.inference};
    tg_params *params;
    if (lstm) {
        c.lstm = tg_lstm_classifier_new(V, E, H, C);
        params = tg_module_params(&c.lstm->module);
    } else {
        c.gru = tg_gru_classifier_new(V, E, H, C);
        params = tg_module_params(&c.gru->module);
    }
    c.opt = tg_adam_new(params, NULL);
    c.tape = tg_tape_new();
    bench_watch_tape(c.tape);
    if (a.inference) tg_tape_set_recording(c.tape, false);
    bench_lcg g = bench_lcg_new(a.seed);
    for (int b = 0; b < NBATCH; b++) {
        c.tokens[b] = bench_random_index(&g, (int32_t)V, TG_SHAPE(B, T));
        c.labels[b] = bench_random_index(&g, (int32_t)C, TG_SHAPE(B));
    }

    const double fwd = bench_rnn_layer_flops(T, B, E, H, lstm ? 4 : 3) + bench_gemm_flops(B, C, H);
    char name[64];
    snprintf(name, sizeof name, "%s%s", config, a.inference ? "_infer" : "");
    bench_run(name, &a, a.inference ? fwd : 3 * fwd, step, &c);

    for (int b = 0; b < NBATCH; b++) {
        tg_index_free(c.tokens[b]);
        tg_index_free(c.labels[b]);
    }
    tg_tape_free(c.tape);
    tg_optim_free(c.opt);
    tg_module_free(&c.gru->module);
    tg_module_free(&c.lstm->module);
    return 0;
}
