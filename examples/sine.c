/* examples/sine.c — the stepwise GRU "predicts the next number" of noisy sums of sines.
 *
 * Each sequence is x_t = Σ_k a_k sin(ω_k t + φ_k) + noise, with its own amplitudes,
 * frequencies and phases, so the model must infer them from the values it has seen. The
 * model ends in LogSoftmax, so the next value is predicted as a distribution over
 * `bins` intervals of [-range, range] (trained with NLL); the prediction is its mean. The
 * score is the mean squared error on held-out sequences, against predicting the last value
 * again, and the noise floor (the variance of the noise, which nothing can predict).
 *
 * The model is called once per time step, as in the PyTorch tutorial it follows:
 *     output, hidden = gru(input, hidden)          for t in 0 .. T-2 */
#include "common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct signal_options {
    int64_t length, waves, bins;
    double noise, range;
} signal_options;

static double normal_draw(tg_rng *rng) {
    const double u1 = 1.0 - tg_rng_uniform01(rng), u2 = tg_rng_uniform01(rng);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* n sequences of o->length values into x (n, length), row-major. */
static void signals_draw(const signal_options *o, tg_rng *rng, int64_t n, double *x) {
    for (int64_t i = 0; i < n; i++) {
        double a[8], w[8], phi[8];
        for (int64_t k = 0; k < o->waves; k++) {
            a[k] = 0.2 + 0.6 * tg_rng_uniform01(rng);
            w[k] = 0.1 + 0.5 * tg_rng_uniform01(rng); /* periods of 10 to 60 steps */
            phi[k] = 6.283185307179586 * tg_rng_uniform01(rng);
        }
        for (int64_t t = 0; t < o->length; t++) {
            double v = o->noise * normal_draw(rng);
            for (int64_t k = 0; k < o->waves; k++) v += a[k] * sin(w[k] * (double)t + phi[k]);
            x[i * o->length + t] = v;
        }
    }
}

static int32_t bin_of(const signal_options *o, double v) {
    const double u = (v + o->range) / (2 * o->range) * (double)o->bins;
    return u < 0 ? 0 : u >= (double)o->bins ? (int32_t)o->bins - 1 : (int32_t)u;
}

static double bin_center(const signal_options *o, int64_t b) {
    return -o->range + (2 * o->range) * ((double)b + 0.5) / (double)o->bins;
}

/* Runs the model over n sequences x (n, length): the inputs are x_0 .. x_{T-2}. Returns the
 * log-probabilities of every step, ((T-1)·n, bins), step-major. */
static tg_tensor *model_run(tg_gru_stepwise *model, tg_tape *tape, const double *x, int64_t n,
                            int64_t length) {
    tg_tensor *hidden = NULL; /* zeros, as initHidden() */
    tg_tensor **outputs = tg_tape_alloc(tape, (size_t)(length - 1) * sizeof *outputs);
    for (int64_t t = 0; t + 1 < length; t++) {
        tg_tensor *input = tg_tape_tensor(tape, TG_SHAPE(n, 1));
        for (int64_t i = 0; i < n; i++) input->data[i] = (tg_real)x[i * length + t];
        tg_gru_stepwise_output out = tg_gru_stepwise_forward(model, tape, input, hidden);
        outputs[t] = out.output;
        hidden = out.hidden;
    }
    return tg_concat(tape, outputs, (int)(length - 1), 0);
}

/* The mean squared error of the model's predictions and of the last value on x (n, length). */
static void evaluate(tg_gru_stepwise *model, tg_tape *tape, const signal_options *o,
                     const double *x, int64_t n, double *mse_model, double *mse_last) {
    ex_eval_mode(tape, &model->module, true);
    const tg_tensor *log_probs = model_run(model, tape, x, n, o->length);
    double se_model = 0, se_last = 0;
    for (int64_t t = 0; t + 1 < o->length; t++)
        for (int64_t i = 0; i < n; i++) {
            const tg_real *lp = log_probs->data + (t * n + i) * o->bins;
            double mean = 0;
            for (int64_t b = 0; b < o->bins; b++) mean += exp((double)lp[b]) * bin_center(o, b);
            const double next = x[i * o->length + t + 1], last = x[i * o->length + t];
            se_model += (mean - next) * (mean - next);
            se_last += (last - next) * (last - next);
        }
    tg_tape_reset(tape);
    ex_eval_mode(tape, &model->module, false);
    const double count = (double)(n * (o->length - 1));
    *mse_model = se_model / count;
    *mse_last = se_last / count;
}

/* The memory of a run (ex_memory_estimate): the parameters of the GRU (input 1) and the
 * Linear onto the bins; per value of a step (batch·(length − 1) of them; evaluation runs all
 * --test-size sequences at once), gradients included, ~10H values of gates and states and 5
 * per bin (logits, log-softmax, their concatenation over time); the sequences in doubles,
 * and the targets. */
static double memory_need(const signal_options *o, int64_t hidden, int64_t batch,
                          int64_t test_size) {
    const double H = (double)hidden, K = (double)o->bins, T = (double)o->length;
    const double params = 3 * H * (1 + H) + 6 * H + H * K + K;
    const double rows = (double)(batch > test_size ? batch : test_size) * (T - 1);
    return ex_memory_estimate(params, rows * (1 + 10 * H + 5 * K),
                              8.0 * (double)(test_size + batch) * T + 4.0 * (double)batch * T);
}

int main(int argc, char **argv) {
    ex_train_options train = {.steps = 1500,
                              .batch = 64,
                              .lr = 3e-3,
                              .seed = 0,
                              .checkpoint = "sine.safetensors",
                              .save_every = 500};
    signal_options o = {.length = 64, .waves = 2, .bins = 64, .noise = 0.05, .range = 2.0};
    int64_t hidden = 64, test_size = 500;
    const ex_flag flags[] = {
        {"hidden", EX_FLAG_INT, &hidden, 1, 4096, "GRU hidden size"},
        {"length", EX_FLAG_INT, &o.length, 3, 100000, "values per sequence"},
        {"waves", EX_FLAG_INT, &o.waves, 1, 8, "sines summed in a sequence"},
        {"noise", EX_FLAG_REAL, &o.noise, 0, 10, "standard deviation of the noise"},
        {"bins", EX_FLAG_INT, &o.bins, 2, 100000, "intervals the next value is classified into"},
        {"test-size", EX_FLAG_INT, &test_size, 1, 1000000, "held-out sequences"},
    };
    ex_flags_parse(argc, argv,
                   "sine: the stepwise GRU (one call per time step, LogSoftmax output) predicts\n"
                   "the next value of noisy sums of sines; scored by mean squared error against\n"
                   "predicting the last value again.",
                   &train, flags, (int)(sizeof flags / sizeof flags[0]));
    o.range = 0.8 * (double)o.waves + 4 * o.noise; /* the largest sum, and then some */
    ex_memory_check(memory_need(&o, hidden, train.batch, test_size),
                    "--batch, --length, --hidden, --bins or --test-size");

    tg_manual_seed((uint64_t)train.seed);
    tg_gru_stepwise *model = tg_gru_stepwise_new(1, hidden, o.bins);
    tg_params *params = tg_module_params(&model->module);
    ex_trainer tr;
    ex_trainer_init(&tr, params, &train, 0);
    const int64_t start = ex_trainer_resume(&tr);

    tg_rng rng;
    tg_rng_seed(&rng, ex_step_seed(train.seed, -1)); /* the held-out set has its own seed */
    double *test = malloc((size_t)(test_size * o.length) * sizeof *test);
    double *x = malloc((size_t)(train.batch * o.length) * sizeof *x);
    tg_index *targets = tg_index_new(TG_SHAPE((o.length - 1) * tr.local)); /* this rank's */
    if (!test || !x) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    signals_draw(&o, &rng, test_size, test);

    printf(
        "sine: %lld parameters, sums of %lld sines of %lld values, noise %g, %lld steps of %lld, "
        "%d threads\n",
        (long long)tg_params_numel(params), (long long)o.waves, (long long)o.length, o.noise,
        (long long)train.steps, (long long)train.batch, tg_get_num_threads());
    ex_trainer_start(&tr, start);
    for (int64_t step = start; step < train.steps; step++) {
        ex_step_rng_seed(&rng, train.seed, step);
        signals_draw(&o, &rng, train.batch, x);
        const double *mine = x + tr.first * o.length; /* this rank's signals */
        for (int64_t t = 0; t + 1 < o.length; t++)    /* the next value's bin, step-major */
            for (int64_t i = 0; i < tr.local; i++)
                targets->data[t * tr.local + i] = bin_of(&o, mine[i * o.length + t + 1]);
        tg_tensor *loss =
            tg_nll_loss(tr.tape, model_run(model, tr.tape, mine, tr.local, o.length), targets);
        ex_trainer_update(&tr, step, loss);
        ex_trainer_step_done(&tr, step, loss, tr.local * (o.length - 1));
    }
    ex_trainer_finish(&tr);

    double mse_model, mse_last;
    evaluate(model, tr.tape, &o, test, test_size, &mse_model, &mse_last);
    printf("held-out mean squared error of the next value (%lld sequences):\n"
           "  model       %.5f\n  last value  %.5f  (the model's error is %.1f%% of it)\n"
           "  noise floor %.5f\n",
           (long long)test_size, mse_model, mse_last, 100.0 * mse_model / mse_last,
           o.noise * o.noise);

    tg_index_free(targets);
    free(x);
    free(test);
    const int status = ex_trainer_free(&tr);
    tg_module_free(&model->module);
    return status;
}
