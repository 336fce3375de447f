/* bench/bench_rnn_layer.c — one GRU or LSTM layer alone (the fused sequence op of the
 * module), forward + backward from a fixed output gradient, as bench/onednn_rnn.c times
 * oneDNN's fused primitives and torch_models.py nn.GRU / nn.LSTM. The input requires grad
 * (as a layer fed by an embedding or another layer does); the gradients are zeroed each
 * step (zero_grad) and there is no optimizer step.
 *
 *   bench_rnn_layer --config gru_cls_layer|lstm_cls_layer|gru_lm_layer0|gru_lm_layer1
 *                   [--threads N] [--quick] [--input I] [--hidden H] [--batch B] [--seq T]
 *
 *   gru_cls_layer  GRU(128 -> 256),  batch 64, seq 50     lstm_cls_layer: the same, LSTM
 *   gru_lm_layer0  GRU(300 -> 512),  batch 32, seq 35     gru_lm_layer1: GRU(512 -> 512)
 * The layout is sequence-first (T, B, in), h0 = 0. */
#include "bench_common.h"

#include <string.h>

typedef struct ctx {
    tg_recurrent *m; /* a GRU's or an LSTM's */
    tg_tape *tape;
    tg_tensor *x;  /* (T, B, I), requires grad */
    tg_tensor *dy; /* (T, B, H) the output gradient */
    int64_t step;
} ctx;

static double step(void *p) {
    ctx *c = p;
    tg_rnn_result r = tg_recurrent_forward(c->m, c->tape, c->x, NULL, NULL);
    tg_tape_backward_with(c->tape, r.output, c->dy->data);
    const double value = (double)r.output->data[r.output->numel - 1] + (double)c->x->grad[0];
    tg_params_zero_grad(tg_module_params(&c->m->module));
    tg_tensor_zero_grad(c->x);
    tg_tape_reset(c->tape);
    return value;
}

int main(int argc, char **argv) {
    static const char *const extra[] = {"--input", "--hidden", "--batch", "--seq", NULL};
    bench_args a;
    bench_parse(argc, argv, &a,
                "  --config gru_cls_layer|lstm_cls_layer|gru_lm_layer0|gru_lm_layer1\n", extra);
    bench_rnn_shape shape;
    if (!bench_rnn_layer_shape(&a, "bench_rnn_layer", &shape)) return 2;
    const int64_t I = shape.I, H = shape.H, B = shape.B, T = shape.T;
    const bool lstm = shape.lstm;

    ctx c = {0};
    const tg_rnn_options o = tg_rnn_defaults(I, H);
    c.m = lstm ? &tg_lstm_new(o)->base : &tg_gru_new(o)->base;
    c.tape = tg_tape_new();
    bench_watch_tape(c.tape);
    bench_lcg g = bench_lcg_new(a.seed);
    c.x = tg_tensor_requires_grad(bench_random_tensor(&g, TG_SHAPE(T, B, I)), true);
    c.dy = bench_random_tensor(&g, TG_SHAPE(T, B, H));

    printf("# gemm: %s\n", tg_gemm_config_describe()); /* the per-CPU choice */
    printf("# threads: %s\n",
           tg_rnn_threads_describe(lstm ? TG_CELL_LSTM : TG_CELL_GRU, H, B, a.threads));
    bench_run(a.config ? a.config : "gru_cls_layer", &a,
              3 * bench_rnn_layer_flops(T, B, I, H, lstm ? 4 : 3), step, &c);

    tg_tensor_free(c.x);
    tg_tensor_free(c.dy);
    tg_tape_free(c.tape);
    tg_module_free(&c.m->module);
    return 0;
}
