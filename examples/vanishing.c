/* examples/vanishing.c — the vanishing gradient, measured.
 *
 * The claim (in every RNN textbook): a plain tanh RNN cannot learn to use what it saw many
 * steps ago, because the gradient that reaches the early steps shrinks geometrically; the
 * GRU and the LSTM can, because their gates open a direct path (h_prev scaled by z; c_prev
 * scaled by f) along which the gradient passes unchanged.
 *
 * The task: a sequence of T tokens; the answer is the FIRST token (one of 4 classes); the
 * T − 1 tokens after it are noise drawn from all 8 symbols (the answer's symbols included).
 * A model reads the sequence and classifies from its last state, so it must carry one token
 * over T − 1 steps. Chance is 25%.
 *
 * A tanh RNN, a GRU and an LSTM with the same hidden size, PyTorch's default initialisation,
 * the same batches and the same training (Adam, gradient-norm clipping at 1) are trained two
 * ways, and scored on held-out sequences at every length:
 *   fresh       from scratch at each length: can gradient descent find a dependency T − 1
 *               steps long from the initial weights?
 *   curriculum  through the lengths in increasing order, each model continuing from the
 *               previous length (the usual way to train long-range models).
 * Then each model runs one held-out batch of the longest length through its composite path
 * (tapegrad/gates.h traces the named h_t) and backward: ‖dL/dh_t‖ for every t — at
 * initialisation, after fresh training, after the curriculum — each curve divided by its
 * value at the last step, so it shows how much of the gradient survives the way back to t.
 *
 *   vanishing                              the default run (about 1.5 minutes of CPU)
 *   vanishing --lengths 10,50 --steps 800  other lengths, longer training
 *   vanishing --out pics                   pics/vanishing_grad.png (+ _init, _fresh)
 *
 * Output: accuracy against length per model and protocol, the ratio
 * ‖dL/dh_0‖ / ‖dL/dh_{T−1}‖ per model, and the charts. */
#include "common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/gates.h>
#include <tapegrad/viz.h>

enum { VOCAB = 8, CLASSES = 4, MAX_LENGTHS = 16, EVAL_N = 512 };

static const char *const MODEL_NAMES[3] = {"tanh RNN", "GRU", "LSTM"};

static const tg_cell_kind MODEL_KINDS[3] = {TG_CELL_RNN_TANH, TG_CELL_GRU, TG_CELL_LSTM};

static ex_rnn_classifier model_new(int kind_index, int64_t hidden, int64_t seed) {
    tg_manual_seed((uint64_t)seed); /* every model starts from the same seed */
    return ex_rnn_classifier_new(MODEL_KINDS[kind_index], VOCAB, hidden, CLASSES);
}

static double evaluate(ex_rnn_classifier *m, tg_tape *tape, int64_t T, int64_t seed) {
    tg_rng rng;
    tg_rng_seed(&rng, (uint64_t)seed * 7919 + 17 + (uint64_t)T); /* never a training batch */
    ex_eval_mode(tape, m->module, true);
    tg_tape_reset(tape);
    const ex_recall_batch b = ex_recall_first_batch(tape, &rng, T, EVAL_N, VOCAB, CLASSES);
    const int64_t right = ex_count_correct(ex_rnn_classifier_forward(m, tape, b.x, false), b.y);
    tg_tape_reset(tape);
    ex_eval_mode(tape, m->module, false);
    return (double)right / EVAL_N;
}

/* ‖dL/dh_t‖ for t = 0..T−1 on one held-out batch, through the composite path. */
static void grad_profile(ex_rnn_classifier *m, tg_tape *tape, int64_t T, int64_t hidden,
                         int64_t seed, double *norms) {
    tg_rng rng;
    tg_rng_seed(&rng, (uint64_t)seed * 104729 + 3);
    tg_tape_reset(tape);
    const ex_recall_batch b = ex_recall_first_batch(tape, &rng, T, 256, VOCAB, CLASSES);
    tg_tensor *loss = tg_cross_entropy(tape, ex_rnn_classifier_forward(m, tape, b.x, true), b.y);
    tg_gate_trace *tr = tg_gate_trace_new(m->rnn->kind, T, hidden, -1);
    tg_gate_trace_capture(tr, tape, "");
    tg_tape_backward(tape, loss);
    tg_gate_trace_read_grads(tr);
    memcpy(norms, tr->grad_norm, (size_t)T * sizeof *norms);
    tg_gate_trace_free(tr);
    tg_params_zero_grad(m->params);
    tg_tape_reset(tape);
}

/* Trains for `steps` Adam steps at length T; returns the mean loss of the last 10% of steps. */
static double train(ex_rnn_classifier *m, tg_optim *opt, tg_tape *tape, int64_t T, int64_t steps,
                    int64_t batch_size, int64_t seed) {
    tg_rng rng;
    tg_rng_seed(&rng, (uint64_t)seed * 31 + (uint64_t)T); /* the same batches for every model */
    double tail = 0;
    int64_t tail_n = 0;
    for (int64_t step = 0; step < steps; step++) {
        const ex_recall_batch b = ex_recall_first_batch(tape, &rng, T, batch_size, VOCAB, CLASSES);
        tg_tensor *loss =
            tg_cross_entropy(tape, ex_rnn_classifier_forward(m, tape, b.x, false), b.y);
        tg_tape_backward(tape, loss);
        tg_clip_grad_norm(m->params, 1.0, 2.0);
        tg_optim_step(opt);
        if (step >= steps - (steps + 9) / 10) tail += (double)tg_item(loss), tail_n++;
        tg_tape_reset(tape);
    }
    return tail / (double)(tail_n ? tail_n : 1);
}

/* "10,25,50" -> lengths; exits on anything else */
static int parse_lengths(const char *text, int64_t *lengths) {
    int n = 0;
    const char *p = text;
    while (*p) {
        char *end;
        const long long v = strtoll(p, &end, 10);
        if (end == p || v < 2 || v > 1000 || n == MAX_LENGTHS || (*end && *end != ','))
            ex_usage_error("vanishing",
                           "--lengths wants up to %d numbers in 2..1000 separated by commas, "
                           "not '%s'",
                           MAX_LENGTHS, text);
        lengths[n++] = v;
        p = *end ? end + 1 : end;
    }
    if (!n) ex_usage_error("vanishing", "--lengths is empty");
    for (int i = 1; i < n; i++) /* increasing: the curriculum's order */
        for (int j = i; j > 0 && lengths[j - 1] > lengths[j]; j--) {
            const int64_t tmp = lengths[j];
            lengths[j] = lengths[j - 1], lengths[j - 1] = tmp;
        }
    return n;
}

/* The memory of a run (ex_memory_estimate), for the largest model, the LSTM: 4H·(VOCAB + H)
 * weights, 8H biases and the Linear; per token of the longest length, the one-hot input and
 * ~14H values of gates and states with their gradients in a training step (or the 512
 * held-out sequences), or ~30H along the composite path, one tensor per op, that the gradient
 * profile runs on 256 sequences; the profiles. */
static double memory_need(int64_t hidden, int64_t batch, int64_t longest) {
    const double H = (double)hidden, T = (double)longest;
    const double params = 4 * H * (VOCAB + H) + 8 * H + H * CLASSES + CLASSES;
    const double fused = (double)(batch > EVAL_N ? batch : EVAL_N) * T * (VOCAB + 14 * H);
    const double composite = 256 * T * (VOCAB + 30 * H);
    return ex_memory_estimate(params, fused > composite ? fused : composite, 9 * 8 * T);
}

int main(int argc, char **argv) {
    int64_t steps = 500, hidden = 32, batch_size = 32, seed = 1, threads = 1;
    double lr = 0.01;
    const char *lengths_text = "5,10,20,40,80", *out = ".";
    const ex_flag flags[] = {
        {"steps", EX_FLAG_INT, &steps, 1, 1000000, "training steps per model, length and protocol"},
        {"lengths", EX_FLAG_TEXT, &lengths_text, 0, 0, "sequence lengths, comma-separated"},
        {"hidden", EX_FLAG_INT, &hidden, 1, 4096, "hidden size of all three models"},
        {"batch", EX_FLAG_INT, &batch_size, 1, 65536, "sequences per step"},
        {"lr", EX_FLAG_REAL, &lr, 1e-6, 1, "Adam learning rate"},
        {"seed", EX_FLAG_INT, &seed, 0, 4294967295.0, "seed of the weights and the data"},
        {"threads", EX_FLAG_INT, &threads, 0, 1024,
         "threads (0: one per core; 32 units run fastest on one)"},
        {"out", EX_FLAG_PATH, &out, 0, 0, "directory for the charts"},
    };
    ex_flags_parse(argc, argv,
                   "vanishing: a tanh RNN, a GRU and an LSTM of the same size learn to recall the "
                   "first token\nof a long sequence; accuracy against length, and |dL/dh_t| "
                   "against t on one chart.",
                   NULL, flags, (int)(sizeof flags / sizeof *flags));
    int64_t lengths[MAX_LENGTHS];
    const int n_len = parse_lengths(lengths_text, lengths);
    ex_memory_check(memory_need(hidden, batch_size, lengths[n_len - 1]),
                    "--batch, --hidden or --lengths");
    tg_set_num_threads((int)threads);
    ex_make_dir(out);

    printf("task: recall the first of T tokens (%d classes, %d symbols; chance 25%%), hidden %lld, "
           "%lld steps of %lld, Adam lr %g, clip 1.0, seed %lld\n\n",
           CLASSES, VOCAB, (long long)hidden, (long long)steps, (long long)batch_size, lr,
           (long long)seed);
    tg_tape *tape = tg_tape_new();
    const int64_t T_max = lengths[n_len - 1];
    double acc[2][MAX_LENGTHS][3]; /* [fresh, curriculum][length][model] */
    double *profile[3][3];         /* [init, fresh, curriculum][model]: ‖dL/dh_t‖ at T_max */
    const char *const PROTOCOL[2] = {"fresh", "curriculum"};
    const double start = ex_clock_seconds();
    for (int k = 0; k < 3; k++) {
        for (int w = 0; w < 3; w++) profile[w][k] = tg_xmalloc((size_t)T_max * sizeof(double));
        /* the curriculum; its first length is also the first fresh run (same start) */
        ex_rnn_classifier m = model_new(k, hidden, seed);
        tg_optim *opt = ex_adam_new(m.params, lr);
        grad_profile(&m, tape, T_max, hidden, seed, profile[0][k]);
        for (int l = 0; l < n_len; l++) {
            const double t0 = ex_clock_seconds();
            const double loss = train(&m, opt, tape, lengths[l], steps, batch_size, seed);
            acc[1][l][k] = evaluate(&m, tape, lengths[l], seed);
            if (l == 0) acc[0][0][k] = acc[1][0][k];
            printf("  %-8s  %-10s  T = %-4lld  final loss %.4f  held-out accuracy %5.1f%%  "
                   "(%.1f s)\n",
                   MODEL_NAMES[k], PROTOCOL[1], (long long)lengths[l], loss, 100 * acc[1][l][k],
                   ex_clock_seconds() - t0);
            fflush(stdout);
        }
        grad_profile(&m, tape, T_max, hidden, seed, profile[2][k]);
        tg_optim_free(opt);
        ex_rnn_classifier_free(&m);
        /* from scratch at every other length */
        for (int l = 0; l < n_len; l++) {
            if (l == 0 && n_len > 1) continue;
            const double t0 = ex_clock_seconds();
            m = model_new(k, hidden, seed);
            opt = ex_adam_new(m.params, lr);
            const double loss = train(&m, opt, tape, lengths[l], steps, batch_size, seed);
            acc[0][l][k] = evaluate(&m, tape, lengths[l], seed);
            printf("  %-8s  %-10s  T = %-4lld  final loss %.4f  held-out accuracy %5.1f%%  "
                   "(%.1f s)\n",
                   MODEL_NAMES[k], PROTOCOL[0], (long long)lengths[l], loss, 100 * acc[0][l][k],
                   ex_clock_seconds() - t0);
            fflush(stdout);
            if (l == n_len - 1) grad_profile(&m, tape, T_max, hidden, seed, profile[1][k]);
            tg_optim_free(opt);
            ex_rnn_classifier_free(&m);
        }
    }

    /* the tables, in Markdown */
    printf("\nheld-out accuracy, fresh / curriculum (%d sequences per length; chance 25%%)\n\n",
           EVAL_N);
    printf("| T | tanh RNN | GRU | LSTM |\n|---:|---:|---:|---:|\n");
    for (int l = 0; l < n_len; l++) {
        printf("| %lld |", (long long)lengths[l]);
        for (int k = 0; k < 3; k++)
            printf(" %.0f%% / %.0f%% |", 100 * acc[0][l][k], 100 * acc[1][l][k]);
        printf("\n");
    }
    printf("\ngradient reaching the first step at T = %lld: |dL/dh_0| / |dL/dh_%lld|\n\n",
           (long long)T_max, (long long)(T_max - 1));
    printf("| model | initialisation | fresh | curriculum |\n|---|---:|---:|---:|\n");
    for (int k = 0; k < 3; k++) {
        printf("| %s |", MODEL_NAMES[k]);
        for (int w = 0; w < 3; w++) {
            const double ratio = profile[w][k][0] / profile[w][k][T_max - 1];
            printf(ratio == 0 ? " 0 (underflow) |" : " %.3g |", ratio);
        }
        printf("\n");
    }

    /* the charts: each curve divided by its last value (a 0 from underflow is left out) */
    static const char *const FILES[3] = {"vanishing_grad_init.png", "vanishing_grad_fresh.png",
                                         "vanishing_grad.png"};
    static const char *const WHEN[3] = {"at initialisation", "after fresh training",
                                        "after the curriculum"};
    for (int w = 0; w < 3; w++) {
        double *norm[3];
        for (int k = 0; k < 3; k++) {
            norm[k] = tg_xmalloc((size_t)T_max * sizeof(double));
            for (int64_t t = 0; t < T_max; t++)
                norm[k][t] = profile[w][k][t] / profile[w][k][T_max - 1];
        }
        char title[160], path[1024];
        snprintf(title, sizeof title, "|dL/dh_t| over t, T = %lld, %s", (long long)T_max, WHEN[w]);
        const tg_chart_series s[3] = {{MODEL_NAMES[0], NULL, norm[0], T_max},
                                      {MODEL_NAMES[1], NULL, norm[1], T_max},
                                      {MODEL_NAMES[2], NULL, norm[2], T_max}};
        const tg_chart_options o = {
            title, "time step t", "|dL/dh_t| / |dL/dh_T-1|  (log scale)", true, 0, 0};
        ex_path(path, sizeof path, out, FILES[w]);
        ex_check(tg_line_chart_write_png(path, s, 3, &o));
        printf("%swrote %s", w ? ", " : "\n", path);
        for (int k = 0; k < 3; k++) free(norm[k]);
    }
    printf("\n\ntotal %.1f s\n", ex_clock_seconds() - start);
    for (int w = 0; w < 3; w++)
        for (int k = 0; k < 3; k++) free(profile[w][k]);
    tg_tape_free(tape);
    return 0;
}
