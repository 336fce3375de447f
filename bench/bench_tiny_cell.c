/* bench/bench_tiny_cell.c — the step-by-step loop where per-op overhead, not arithmetic,
 * is the cost: GRUCell(16 -> 32), batch 1, one cell call per time step for 20 steps from
 * h = 0, then Linear(32 -> 10) on the last state, cross entropy, backward, Adam step.
 *
 *   bench_tiny_cell [--threads N] [--quick] [--input I] [--hidden H] [--classes C] [--steps T]
 */
#include "bench_common.h"

#define NBATCH 4

typedef struct ctx {
    tg_gru_cell *cell;
    tg_linear_layer *fc;
    tg_module *model; /* children "cell", "fc" */
    tg_optim *opt;
    tg_tape *tape;
    tg_tensor *x[NBATCH]; /* (T, 1, I) */
    tg_index *label[NBATCH];
    int64_t step, T, I;
} ctx;

static double step(void *p) {
    ctx *c = p;
    const int b = (int)(c->step++ % NBATCH);
    tg_tensor *h = NULL;
    for (int64_t i = 0; i < c->T; i++) {
        tg_tensor *xi = tg_select(c->tape, c->x[b], 0, i); /* (1, I) */
        h = tg_gru_cell_forward(c->cell, c->tape, xi, h);
    }
    tg_tensor *loss = tg_cross_entropy(c->tape, tg_linear_forward(c->fc, c->tape, h), c->label[b]);
    return bench_step_end(c->tape, loss, c->opt);
}

int main(int argc, char **argv) {
    static const char *const extra[] = {"--input", "--hidden", "--classes", "--steps", NULL};
    bench_args a;
    bench_parse(argc, argv, &a, "", extra);
    const int64_t I = bench_flag_int(&a, "--input", 16), H = bench_flag_int(&a, "--hidden", 32),
                  C = bench_flag_int(&a, "--classes", 10), T = bench_flag_int(&a, "--steps", 20);

    ctx c = {.T = T, .I = I};
    c.cell = tg_gru_cell_new(tg_cell_defaults(I, H));
    c.fc = tg_linear_new(H, C, true);
    static const tg_module_type type = {"TinyCell", NULL, NULL};
    c.model = tg_module_new(&type);
    tg_module_add_child(c.model, "cell", &c.cell->base.module);
    tg_module_add_child(c.model, "fc", &c.fc->module);
    c.opt = tg_adam_new(tg_module_params(c.model), NULL);
    c.tape = tg_tape_new();
    bench_watch_tape(c.tape);
    bench_lcg g = bench_lcg_new(a.seed);
    for (int b = 0; b < NBATCH; b++) {
        c.x[b] = bench_random_tensor(&g, TG_SHAPE(T, 1, I));
        c.label[b] = bench_random_index(&g, (int32_t)C, TG_SHAPE(1));
    }

    const double fwd = (double)T * (bench_gemm_flops(1, 3 * H, I) + bench_gemm_flops(1, 3 * H, H)) +
                       bench_gemm_flops(1, C, H);
    bench_run("tiny_cell", &a, 3 * fwd, step, &c);

    for (int b = 0; b < NBATCH; b++) {
        tg_tensor_free(c.x[b]);
        tg_index_free(c.label[b]);
    }
    tg_tape_free(c.tape);
    tg_optim_free(c.opt);
    tg_module_free(c.model);
    return 0;
}
