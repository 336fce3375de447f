/* bench/bench_transformer.c — the Transformer tutorial's TransformerModel (shared Embedding,
 * encoder and decoder stacks, Linear to the vocabulary; sequence-first, post-norm, relu, dropout
 * 0.1 in training, causal target mask). A training step is forward, cross entropy over all T·N
 * outputs (the output layer and the loss as one op, tg_transformer_model_loss), backward, Adam
 * step.
 *
 *   bench_transformer [--threads N] [--quick] [--vocab V] [--d-model D] [--heads H] [--ff F]
 *                     [--enc-layers L] [--dec-layers L] [--src S] [--tgt T] [--batch N]
 *
 * Default: Embedding(1000, 128), 2 encoder + 2 decoder layers, 4 heads, ff 512, batch 32,
 * source and target length 32. */
#include "bench_common.h"

#define NBATCH 4

typedef struct ctx {
    tg_transformer_model *m;
    tg_optim *opt;
    tg_tape *tape;
    tg_index *src[NBATCH], *tgt_in[NBATCH], *tgt_out[NBATCH];
    int64_t step, V;
} ctx;

static double step(void *p) {
    ctx *c = p;
    const int b = (int)(c->step++ % NBATCH);
    tg_tensor *loss =
        tg_transformer_model_loss(c->m, c->tape, c->src[b], c->tgt_in[b], c->tgt_out[b], NULL);
    return bench_step_end(c->tape, loss, c->opt);
}

/* Forward FLOPs of multi-head attention: L queries, S keys, batch N, width d, h heads;
 * the key/value projections read S·N rows. */
static double mha_flops(int64_t L, int64_t S, int64_t N, int64_t d, int64_t h) {
    return bench_gemm_flops(L * N, d, d)           /* q projection */
           + bench_gemm_flops(S * N, 2 * d, d)     /* k, v projections */
           + bench_gemm_flops(N * h * L, S, d / h) /* scores q k^T */
           + bench_gemm_flops(N * h * L, d / h, S) /* weights . v */
           + bench_gemm_flops(L * N, d, d);        /* out projection */
}

int main(int argc, char **argv) {
    static const char *const extra[] = {
        "--vocab",      "--d-model", "--heads", "--ff",    "--enc-layers",
        "--dec-layers", "--src",     "--tgt",   "--batch", NULL};
    bench_args a;
    bench_parse(argc, argv, &a, "", extra);
    const int64_t V = bench_flag_int(&a, "--vocab", 1000), D = bench_flag_int(&a, "--d-model", 128),
                  NH = bench_flag_int(&a, "--heads", 4), F = bench_flag_int(&a, "--ff", 512),
                  LE = bench_flag_int(&a, "--enc-layers", 2),
                  LD = bench_flag_int(&a, "--dec-layers", 2), S = bench_flag_int(&a, "--src", 32),
                  T = bench_flag_int(&a, "--tgt", 32), N = bench_flag_int(&a, "--batch", 32);

    tg_transformer_options o = tg_transformer_defaults(D, NH);
    o.dim_feedforward = F;
    o.dropout = (tg_real)0.1;
    ctx c = {.V = V};
    c.m = tg_transformer_model_new_ex(V, &o, (int)LE, (int)LD);
    c.opt = tg_adam_new(tg_module_params(&c.m->module), NULL);
    c.tape = tg_tape_new();
    bench_watch_tape(c.tape);
    bench_lcg g = bench_lcg_new(a.seed);
    for (int b = 0; b < NBATCH; b++) {
        c.src[b] = bench_random_index(&g, (int32_t)V, TG_SHAPE(S, N));
        c.tgt_in[b] = bench_random_index(&g, (int32_t)V, TG_SHAPE(T, N));
        c.tgt_out[b] = bench_random_index(&g, (int32_t)V, TG_SHAPE(T * N));
    }

    const double ff_s = bench_gemm_flops(S * N, F, D) + bench_gemm_flops(S * N, D, F);
    const double ff_t = bench_gemm_flops(T * N, F, D) + bench_gemm_flops(T * N, D, F);
    const double fwd = (double)LE * (mha_flops(S, S, N, D, NH) + ff_s) +
                       (double)LD * (mha_flops(T, T, N, D, NH) + mha_flops(T, S, N, D, NH) + ff_t) +
                       bench_gemm_flops(T * N, V, D);
    bench_run("transformer", &a, 3 * fwd, step, &c);

    for (int b = 0; b < NBATCH; b++) {
        tg_index_free(c.src[b]);
        tg_index_free(c.tgt_in[b]);
        tg_index_free(c.tgt_out[b]);
    }
    tg_tape_free(c.tape);
    tg_optim_free(c.opt);
    tg_module_free(&c.m->module);
    return 0;
}
