/* examples/gates.c — what the gates do, step by step, in a trained GRU and LSTM.
 *
 * The toy task: a sequence of T tokens of noise (symbols 0..5), with one MARKER somewhere in
 * the first half; the answer is the token right after the marker (one of 4 classes), read
 * from the last state. To solve it a cell must notice the marker, write the next token into
 * its state, and then hold it, unchanged, to the end — exactly what the gates are for.
 *
 * After training (fused ops, Adam), the program runs one held-out sequence through the
 * composite path, whose gates are named tensors ("z_7" is the update gate at step 7), and
 * records with tapegrad/gates.h, for every step:
 *   - the gate activations: z and r for the GRU; i, f and o for the LSTM;
 *   - after backward, ‖dL/dh_t‖ (and ‖dL/dc_t‖ for the LSTM).
 * It writes:
 *   gates_gru.png, gates_lstm.png   heatmaps, hidden units × time, colour = activation
 *   gates_grad.png                  ‖dL/dh_t‖ against t for both, on a log scale
 *
 * What to look for: after the marker, the units that hold the answer keep z (GRU) or f
 * (LSTM) near 1 — "keep the old state" — and the gradient flows back along them to the
 * marker at an almost constant norm; before the marker nothing matters, and the gradient
 * falls away. (A GRU's z is the weight of the OLD state: h' = (1 − z) ⊙ n + z ⊙ h.)
 *
 *   gates                          train both, write the pictures to .
 *   gates --out pics --steps 1500  longer training, into pics/ */
#include "common.h"

#include <math.h>
#include <stdio.h>

#include "gate_pictures.h"

enum { NOISE = 6, MARKER = 6, VOCAB = 7, CLASSES = 4 };

/* A batch: one-hot tokens (T, B, VOCAB), the answers (B), and where the markers are. */
typedef struct batch {
    tg_tensor *x;
    tg_index *y;
    int64_t first_marker; /* of example 0 */
} batch;

/* `marker_at` ≥ 0 puts every marker there; -1 draws it in [1, T/2). */
static batch batch_draw(tg_tape *tape, tg_rng *rng, int64_t T, int64_t B, int64_t marker_at) {
    batch b = {tg_tape_tensor_zeros(tape, TG_SHAPE(T, B, VOCAB)), tg_tape_index(tape, TG_SHAPE(B)),
               0};
    for (int64_t i = 0; i < B; i++) {
        const int64_t drawn = 1 + (int64_t)(tg_rng_next_u32(rng) % (uint32_t)(T / 2 - 1));
        const int64_t at = marker_at >= 0 ? marker_at : drawn;
        const int32_t answer = (int32_t)(tg_rng_next_u32(rng) % CLASSES);
        b.y->data[i] = answer;
        if (i == 0) b.first_marker = at;
        for (int64_t t = 0; t < T; t++) {
            const uint32_t tok = t == at       ? MARKER
                                 : t == at + 1 ? (uint32_t)answer
                                               : tg_rng_next_u32(rng) % NOISE;
            b.x->data[(t * B + i) * VOCAB + tok] = 1;
        }
    }
    return b;
}

/* Trains with a short curriculum — the first third of the steps on sequences of length T/3,
 * the second on 2T/3, the last on T (a GRU learns the task from scratch at T = 20 too; an
 * LSTM with PyTorch's initialisation, whose forget gates start at 0.5, does not: see
 * examples/vanishing.c) — then reports held-out accuracy at length T. */
static void train(ex_rnn_classifier *m, const char *name, int64_t T, int64_t steps, double lr,
                  int64_t seed) {
    tg_optim *opt = ex_adam_new(m->params, lr);
    tg_tape *tape = tg_tape_new();
    tg_rng rng;
    tg_rng_seed(&rng, (uint64_t)seed);
    double recent = 0;
    for (int64_t step = 0; step < steps; step++) {
        const int64_t stage = step * 3 / steps, len = T * (stage + 1) / 3;
        const batch b = batch_draw(tape, &rng, len < 6 ? 6 : len, 32, -1);
        tg_tensor *loss =
            tg_cross_entropy(tape, ex_rnn_classifier_forward(m, tape, b.x, false), b.y);
        tg_tape_backward(tape, loss);
        tg_clip_grad_norm(m->params, 1.0, 2.0);
        tg_optim_step(opt);
        recent = step ? 0.95 * recent + 0.05 * (double)tg_item(loss) : (double)tg_item(loss);
        if ((step + 1) % (steps / 6 > 0 ? steps / 6 : 1) == 0)
            printf("  %-4s step %5lld/%lld  T = %-3lld loss %.4f\n", name, (long long)(step + 1),
                   (long long)steps, (long long)(len < 6 ? 6 : len), recent);
        tg_tape_reset(tape);
    }
    /* held-out accuracy */
    tg_rng_seed(&rng, (uint64_t)seed + 1000003);
    tg_tape_set_recording(tape, false);
    const batch b = batch_draw(tape, &rng, T, 1000, -1);
    const tg_tensor *logits = ex_rnn_classifier_forward(m, tape, b.x, false);
    const int64_t right = ex_count_correct(logits, b.y);
    printf("  %-4s held-out accuracy %.1f%% (chance 25%%)\n", name, (double)right / 10.0);
    tg_tape_free(tape);
    tg_optim_free(opt);
}

/* One held-out sequence through the composite path: the trace of its gates and gradients. */
static tg_gate_trace *trace_one(ex_rnn_classifier *m, int64_t T, int64_t hidden, int64_t seed,
                                int64_t *marker) {
    tg_tape *tape = tg_tape_new();
    tg_rng rng;
    tg_rng_seed(&rng, (uint64_t)seed + 7);
    const batch b = batch_draw(tape, &rng, T, 1, T / 3); /* the marker a third of the way in */
    *marker = b.first_marker;
    tg_tensor *loss = tg_cross_entropy(tape, ex_rnn_classifier_forward(m, tape, b.x, true), b.y);
    tg_gate_trace *tr = tg_gate_trace_new(m->rnn->kind, T, hidden, 0);
    tg_gate_trace_capture(tr, tape, ""); /* gates now; dL/dh_t kept for after backward */
    tg_tape_backward(tape, loss);
    tg_gate_trace_read_grads(tr);
    tg_params_zero_grad(m->params);
    tg_tape_free(tape);
    return tr;
}

/* The memory of a run (ex_memory_estimate), for the larger of the two models, the LSTM:
 * 4H·(VOCAB + H) weights, 8H biases and the Linear; per token (the held-out accuracy reads
 * 1,000 sequences of T at once, without gradients) the one-hot input and ~7H values of input
 * projections, gates and states. */
static double memory_need(int64_t hidden, int64_t length) {
    const double H = (double)hidden;
    const double params = 4 * H * (VOCAB + H) + 8 * H + H * CLASSES + CLASSES;
    return ex_memory_estimate(params, 1000.0 * (double)length * (VOCAB + 7 * H), 0);
}

int main(int argc, char **argv) {
    int64_t steps = 600, hidden = 16, length = 20, seed = 0, threads = 1;
    double lr = 0.01;
    const char *out = ".";
    const ex_flag flags[] = {
        {"steps", EX_FLAG_INT, &steps, 1, 1000000, "training steps of each model"},
        {"hidden", EX_FLAG_INT, &hidden, 1, 1024, "hidden size"},
        {"length", EX_FLAG_INT, &length, 6, 1000,
         "sequence length T (the marker is in the first half)"},
        {"lr", EX_FLAG_REAL, &lr, 1e-6, 1, "Adam learning rate"},
        {"seed", EX_FLAG_INT, &seed, 0, 4294967295.0, "seed of the weights and the data"},
        {"threads", EX_FLAG_INT, &threads, 0, 1024,
         "threads (0: one per core; small models run fastest on one)"},
        {"out", EX_FLAG_PATH, &out, 0, 0, "directory for the pictures"},
    };
    ex_flags_parse(argc, argv,
                   "gates: train a small GRU and LSTM to recall the token after a marker, then "
                   "draw their gates\nover time (heatmaps) and |dL/dh_t| against t (a chart).",
                   NULL, flags, (int)(sizeof flags / sizeof *flags));
    ex_memory_check(memory_need(hidden, length), "--hidden or --length");
    tg_set_num_threads((int)threads);
    ex_make_dir(out);

    const char *names[2] = {"GRU", "LSTM"};
    tg_gate_trace *traces[2];
    int64_t marker = 0;
    for (int k = 0; k < 2; k++) {
        tg_manual_seed((uint64_t)seed);
        ex_rnn_classifier m =
            ex_rnn_classifier_new(k == 0 ? TG_CELL_GRU : TG_CELL_LSTM, VOCAB, hidden, CLASSES);
        printf("%s, hidden %lld, T = %lld:\n", names[k], (long long)hidden, (long long)length);
        train(&m, names[k], length, steps, lr, seed);
        traces[k] = trace_one(&m, length, hidden, seed, &marker);

        char title[128], path[1024];
        snprintf(title, sizeof title,
                 "%s gates, one sequence (marker at t = %lld, answer at t = %lld)", names[k],
                 (long long)marker, (long long)marker + 1);
        ex_path(path, sizeof path, out, k == 0 ? "gates_gru.png" : "gates_lstm.png");
        ex_check(ex_gate_trace_write_heatmap(traces[k], path, title));
        printf("  wrote %s\n", path);
        ex_rnn_classifier_free(&m);
    }

    /* both models' gradients on one chart */
    const tg_chart_series s[3] = {{"GRU |dL/dh_t|", NULL, traces[0]->grad_norm, length},
                                  {"LSTM |dL/dh_t|", NULL, traces[1]->grad_norm, length},
                                  {"LSTM |dL/dc_t|", NULL, traces[1]->cell_grad_norm, length}};
    char title[128], path[1024];
    snprintf(title, sizeof title, "gradient norm over t, one sequence (marker at t = %lld)",
             (long long)marker);
    const tg_chart_options o = {title, "time step t", "gradient norm (log scale)", true, 0, 0};
    ex_path(path, sizeof path, out, "gates_grad.png");
    ex_check(tg_line_chart_write_png(path, s, 3, &o));
    printf("wrote %s\n", path);
    printf("\n   t  GRU |dL/dh_t|  LSTM |dL/dh_t|  LSTM |dL/dc_t|\n");
    for (int64_t t = 0; t < length; t++)
        printf("%4lld  %13.3g  %14.3g  %14.3g%s\n", (long long)t, traces[0]->grad_norm[t],
               traces[1]->grad_norm[t], traces[1]->cell_grad_norm[t],
               t == marker       ? "   <- marker"
               : t == marker + 1 ? "   <- answer token"
                                 : "");
    tg_gate_trace_free(traces[0]);
    tg_gate_trace_free(traces[1]);
    return 0;
}
