/* bench/bench_lm.c — the GRU language model (Embedding -> num_layers GRU, sequence
 * first -> Linear to the vocabulary), truncated BPTT: each step starts from the previous
 * step's hidden state, detached. A training step is forward, cross entropy over all T·B
 * positions, backward, Adam step; --inference is the forward (and the loss) alone.
 *
 *   bench_lm --config gru_lm|char_lm [--inference] [--threads N] [--quick] ...
 *
 * The output layer and the loss are one op (tg_gru_lm_loss: tg_linear_cross_entropy, no
 * (T·B, V) logits in memory); --unfused 1 computes logits and tg_cross_entropy instead.
 *
 * gru_lm:  Embedding(10000, 300) -> 2-layer GRU(512) -> Linear(512 -> 10000); batch 32, seq 35.
 * char_lm: Embedding(65, 64)     -> 2-layer GRU(256) -> Linear(256 -> 65);    batch 32, seq 64.
 * Sizes can be changed with --vocab --emb --hidden --layers --batch --seq. */
#include "bench_common.h"

#include <string.h>

#define NBATCH 4

typedef struct ctx {
    tg_gru_lm *m;
    tg_optim *opt;
    tg_tape *tape;
    tg_index *x[NBATCH], *y[NBATCH]; /* x (T, B), targets (T·B) */
    tg_tensor *hidden;               /* (layers, B, H), long-lived, carried across steps */
    int64_t step, V;
    bool inference, unfused;
} ctx;

static double step(void *p) {
    ctx *c = p;
    const int b = (int)(c->step++ % NBATCH);
    tg_tensor *loss, *hidden;
    if (c->unfused) {
        tg_gru_lm_output out = tg_gru_lm_forward(c->m, c->tape, c->x[b], c->hidden);
        tg_tensor *logits = tg_reshape(c->tape, out.logits, TG_SHAPE(-1, c->V));
        loss = tg_cross_entropy(c->tape, logits, c->y[b]), hidden = out.hidden;
    } else { /* the output layer and the loss fused: no (T·B, V) logits */
        tg_gru_lm_loss_output out =
            tg_gru_lm_loss(c->m, c->tape, c->x[b], c->hidden, c->y[b], NULL);
        loss = out.loss, hidden = out.hidden;
    }
    tg_gru_lm_detach(c->hidden, hidden); /* hidden = hidden.detach() */
    return bench_step_end(c->tape, loss, c->inference ? NULL : c->opt);
}

int main(int argc, char **argv) {
    static const char *const extra[] = {"--vocab", "--emb", "--hidden",  "--layers",
                                        "--batch", "--seq", "--unfused", NULL};
    bench_args a;
    bench_parse(argc, argv, &a, "  --config gru_lm|char_lm\n", extra);
    const char *config = a.config ? a.config : "gru_lm";
    const bool chr = strcmp(config, "char_lm") == 0;
    if (!chr && strcmp(config, "gru_lm") != 0) {
        fprintf(stderr, "bench_lm: unknown config '%s'\n", config);
        return 2;
    }
    const int64_t V = bench_flag_int(&a, "--vocab", chr ? 65 : 10000),
                  E = bench_flag_int(&a, "--emb", chr ? 64 : 300),
                  H = bench_flag_int(&a, "--hidden", chr ? 256 : 512),
                  L = bench_flag_int(&a, "--layers", 2), B = bench_flag_int(&a, "--batch", 32),
                  T = bench_flag_int(&a, "--seq", chr ? 64 : 35);

    ctx c = {.inference = a.inference, .V = V, .unfused = bench_flag_int(&a, "--unfused", 0) != 0};
    c.m = tg_gru_lm_new(V, E, H, L);
    c.opt = tg_adam_new(tg_module_params(&c.m->module), NULL);
    c.tape = tg_tape_new();
    bench_watch_tape(c.tape);
    if (a.inference) tg_tape_set_recording(c.tape, false);
    c.hidden = tg_gru_lm_init_hidden(c.m, B);
    bench_lcg g = bench_lcg_new(a.seed);
    for (int b = 0; b < NBATCH; b++) {
        c.x[b] = bench_random_index(&g, (int32_t)V, TG_SHAPE(T, B));
        c.y[b] = bench_random_index(&g, (int32_t)V, TG_SHAPE(T * B));
    }

    double fwd = bench_gemm_flops(T * B, V, H);
    for (int64_t l = 0; l < L; l++) fwd += bench_rnn_layer_flops(T, B, l ? H : E, H, 3);
    char name[64];
    snprintf(name, sizeof name, "%s%s", config, a.inference ? "_infer" : "");
    bench_run(name, &a, a.inference ? fwd : 3 * fwd, step, &c);

    for (int b = 0; b < NBATCH; b++) {
        tg_index_free(c.x[b]);
        tg_index_free(c.y[b]);
    }
    tg_tensor_free(c.hidden);
    tg_tape_free(c.tape);
    tg_optim_free(c.opt);
    tg_module_free(&c.m->module);
    return 0;
}
