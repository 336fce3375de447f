/* bench/bench_seq2seq_attn.c — the attention seq2seq: GRU encoder, additive attention, a GRUCell
 * decoder stepped one target token at a time (teacher forcing); a training step is forward,
 * cross entropy over all N·T outputs, backward, Adam step.
 *
 *   bench_seq2seq_attn [--threads N] [--quick] [--vocab V] [--emb E] [--hidden H]
 *                      [--attn A] [--src S] [--tgt T] [--batch N]
 *
 * Default: vocab 1000 (source and target), emb 128, hidden 256, attention 256, source and
 * target length 20, batch 64. The encoder projection W_a h_t + b_a is computed once per
 * sequence (tg_additive_attention_project); the PyTorch twin does the same. The loss is
 * tg_gru_attention_loss: the output layer and cross entropy in chunks of rows, without the
 * N·T·V logits (tg_linear_cross_entropy). */
#include "bench_common.h"

#define NBATCH 4

typedef struct ctx {
    tg_gru_attention *m;
    tg_optim *opt;
    tg_tape *tape;
    tg_index *src[NBATCH], *tgt_in[NBATCH], *tgt_out[NBATCH];
    int64_t step;
} ctx;

static double step(void *p) {
    ctx *c = p;
    const int b = (int)(c->step++ % NBATCH);
    tg_tensor *loss =
        tg_gru_attention_loss(c->m, c->tape, c->src[b], c->tgt_in[b], c->tgt_out[b], NULL).loss;
    return bench_step_end(c->tape, loss, c->opt);
}

int main(int argc, char **argv) {
    static const char *const extra[] = {"--vocab", "--emb", "--hidden", "--attn",
                                        "--src",   "--tgt", "--batch",  NULL};
    bench_args a;
    bench_parse(argc, argv, &a, "", extra);
    const int64_t V = bench_flag_int(&a, "--vocab", 1000), E = bench_flag_int(&a, "--emb", 128),
                  H = bench_flag_int(&a, "--hidden", 256), A = bench_flag_int(&a, "--attn", 256),
                  S = bench_flag_int(&a, "--src", 20), T = bench_flag_int(&a, "--tgt", 20),
                  N = bench_flag_int(&a, "--batch", 64);

    ctx c = {0};
    c.m = tg_gru_attention_new(V, V, E, H, A);
    c.opt = tg_adam_new(tg_module_params(&c.m->module), NULL);
    c.tape = tg_tape_new();
    bench_watch_tape(c.tape);
    bench_lcg g = bench_lcg_new(a.seed);
    for (int b = 0; b < NBATCH; b++) {
        c.src[b] = bench_random_index(&g, (int32_t)V, TG_SHAPE(N, S));
        c.tgt_in[b] = bench_random_index(&g, (int32_t)V, TG_SHAPE(N, T));
        c.tgt_out[b] = bench_random_index(&g, (int32_t)V, TG_SHAPE(N * T));
    }

    double fwd = bench_rnn_layer_flops(S, N, E, H, 3) /* encoder */
                 + bench_gemm_flops(N * S, A, H);     /* W_a h_t, once */
    fwd +=
        (double)T * (bench_gemm_flops(N, A, H)       /* U_a s */
                     + bench_gemm_flops(N * S, 1, A) /* v^T tanh(.) */
                     + bench_gemm_flops(N, H, S)     /* context = alpha . enc */
                     + bench_gemm_flops(N, 3 * H, E + H) + bench_gemm_flops(N, 3 * H, H) /* cell */
                     + bench_gemm_flops(N, V, 2 * H));                                   /* fc */
    bench_run("seq2seq_attn", &a, 3 * fwd, step, &c);

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
