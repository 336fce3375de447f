/* examples/classify.c — the LSTM and GRU text classifiers (Embedding + recurrent layer +
 * Linear on the last step) on a task that needs memory of the whole sequence:
 *
 *     does token A appear more often than token B?
 *
 *     A 7 9 B 3 A 5 8 B 2 B 6 A 4 A ...  -> yes (4 A, 3 B)
 *
 * Tokens 0 (A) and 1 (B) are scattered among distractors, an odd number of them in all, so
 * there is never a tie and the margin is often one: the classifier must count both through
 * the whole sequence and answer at the last step. Half of the sequences are "yes". Scored by
 * accuracy on held-out sequences.
 *
 *   classify                  the LSTM classifier
 *   classify --model gru      the GRU classifier */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { TOKEN_A = 0, TOKEN_B = 1 };

typedef struct task {
    int64_t vocab, length, max_marks;
} task;

/* One sequence and its label (1: more A than B). */
static int32_t sequence_draw(const task *k, tg_rng *rng, int32_t *tokens) {
    for (int64_t i = 0; i < k->length; i++)
        tokens[i] = (int32_t)(2 + ex_rng_below(rng, k->vocab - 2));
    const int64_t marks = 1 + 2 * ex_rng_below(rng, (k->max_marks + 1) / 2); /* odd: no ties */
    const int64_t more =
        marks / 2 + 1 + ex_rng_below(rng, marks - marks / 2); /* the larger count */
    const int32_t label = (int32_t)ex_rng_below(rng, 2);
    int64_t placed = 0;
    while (placed < marks) { /* marks distinct positions: the first `more` get the majority token */
        const int64_t at = ex_rng_below(rng, k->length);
        if (tokens[at] < 2) continue;
        tokens[at] = (placed < more) == (label == 1) ? TOKEN_A : TOKEN_B;
        placed++;
    }
    return label;
}

static void batch_draw(const task *k, tg_rng *rng, tg_index *tokens, tg_index *labels) {
    for (int64_t b = 0; b < labels->numel; b++)
        labels->data[b] = sequence_draw(k, rng, tokens->data + b * k->length);
}

/* The two models behind one interface. */
typedef struct classifier {
    tg_lstm_classifier *lstm;
    tg_gru_classifier *gru;
} classifier;

static tg_tensor *classifier_forward(classifier *m, tg_tape *t, const tg_index *tokens) {
    return m->lstm ? tg_lstm_classifier_forward(m->lstm, t, tokens)
                   : tg_gru_classifier_forward(m->gru, t, tokens);
}

/* Accuracy on the held-out set, in batches. */
static double evaluate(classifier *m, tg_tape *tape, const tg_index *tokens, const tg_index *labels,
                       int64_t batch) {
    const int64_t n = labels->numel, length = tokens->shape[1];
    int64_t correct = 0;
    ex_eval_mode(tape, m->lstm ? &m->lstm->module : &m->gru->module, true);
    for (int64_t start = 0; start < n; start += batch) {
        const int64_t m_rows = n - start < batch ? n - start : batch;
        tg_index view = *tokens; /* rows [start, start + m_rows) without copying */
        view.data = tokens->data + start * length;
        view.shape[0] = m_rows;
        view.numel = m_rows * length;
        const tg_tensor *logits = classifier_forward(m, tape, &view);
        for (int64_t i = 0; i < m_rows; i++)
            correct += ex_argmax(logits->data + 2 * i, 2) == labels->data[start + i];
        tg_tape_reset(tape);
    }
    ex_eval_mode(tape, m->lstm ? &m->lstm->module : &m->gru->module, false);
    return (double)correct / (double)n;
}

/* The memory of a run (ex_memory_estimate): the parameters of the embedding, the recurrent
 * layer (G gate blocks of H·(E + H) weights and 2H biases; G = 4 for the LSTM, 3 for the GRU)
 * and the Linear; per token of a step (batch·length of them; evaluation runs 500 sequences at
 * a time) the embedding and ~14H values of input projections, gates and states with their
 * gradients (measured: 13.4H for the LSTM, 12.7H for the GRU); the held-out sequences. */
static double memory_need(const task *k, bool lstm, int64_t embedding, int64_t hidden,
                          int64_t batch, int64_t test_size) {
    const double G = lstm ? 4 : 3, E = (double)embedding, H = (double)hidden;
    const double V = (double)k->vocab, T = (double)k->length;
    const double params = V * E + G * H * (E + H) + 2 * G * H + 2 * H + 2;
    const double tokens = (double)(batch > 500 ? batch : 500) * T;
    return ex_memory_estimate(params, tokens * (E + 14 * H),
                              4.0 * ((double)test_size + (double)batch) * (T + 1));
}

int main(int argc, char **argv) {
    ex_train_options train = {.steps = 600,
                              .batch = 64,
                              .lr = 3e-3,
                              .seed = 0,
                              .checkpoint = "classify.safetensors",
                              .save_every = 500};
    task k = {.vocab = 10, .length = 40, .max_marks = 15};
    int64_t embedding = 32, hidden = 128, test_size = 2000;
    const char *model_name = "lstm";
    const ex_flag flags[] = {
        {"model", EX_FLAG_TEXT, &model_name, 0, 0, "lstm or gru"},
        {"vocab", EX_FLAG_INT, &k.vocab, 3, 100000, "distinct tokens (A, B and distractors)"},
        {"length", EX_FLAG_INT, &k.length, 2, 100000, "tokens per sequence"},
        {"marks", EX_FLAG_INT, &k.max_marks, 1, 100000,
         "at most this many A and B in a sequence (odd)"},
        {"embedding", EX_FLAG_INT, &embedding, 1, 4096, "embedding size"},
        {"hidden", EX_FLAG_INT, &hidden, 1, 4096, "hidden size"},
        {"test-size", EX_FLAG_INT, &test_size, 1, 1000000, "held-out sequences"},
    };
    ex_flags_parse(
        argc, argv,
        "classify: the LSTM or GRU text classifier learns whether token A appears more often\n"
        "than token B in a sequence, a task that needs memory of the whole sequence.",
        &train, flags, (int)(sizeof flags / sizeof flags[0]));
    if (k.max_marks > k.length) {
        fprintf(stderr, "classify: --marks %lld must not exceed --length %lld\n",
                (long long)k.max_marks, (long long)k.length);
        return 2;
    }
    if (strcmp(model_name, "lstm") && strcmp(model_name, "gru")) {
        fprintf(stderr, "classify: --model must be lstm or gru, not '%s'\n(try classify --help)\n",
                model_name);
        return 2;
    }
    ex_memory_check(
        memory_need(&k, !strcmp(model_name, "lstm"), embedding, hidden, train.batch, test_size),
        "--batch, --length, --hidden, --embedding, --vocab or --test-size");

    tg_manual_seed((uint64_t)train.seed);
    classifier model = {0};
    tg_params *params;
    if (!strcmp(model_name, "lstm")) {
        model.lstm = tg_lstm_classifier_new(k.vocab, embedding, hidden, 2);
        params = tg_module_params(&model.lstm->module);
    } else {
        model.gru = tg_gru_classifier_new(k.vocab, embedding, hidden, 2);
        params = tg_module_params(&model.gru->module);
    }
    ex_trainer tr;
    ex_trainer_init(&tr, params, &train, 0);
    const int64_t start = ex_trainer_resume(&tr);

    tg_rng rng;
    tg_rng_seed(&rng, ex_step_seed(train.seed, -1)); /* the held-out set has its own seed */
    tg_index *test_tokens = tg_index_new(TG_SHAPE(test_size, k.length));
    tg_index *test_labels = tg_index_new(TG_SHAPE(test_size));
    batch_draw(&k, &rng, test_tokens, test_labels);
    tg_index *tokens = tg_index_new(TG_SHAPE(train.batch, k.length));
    tg_index *labels = tg_index_new(TG_SHAPE(train.batch));
    /* this rank's rows of them (all of them alone) */
    tg_index *my_tokens = tg_index_new(TG_SHAPE(tr.local, k.length));
    tg_index *my_labels = tg_index_new(TG_SHAPE(tr.local));

    printf("classify: %s classifier, %lld parameters, sequences of %lld tokens from %lld, "
           "%lld steps of %lld, %d threads\n",
           model_name, (long long)tg_params_numel(params), (long long)k.length, (long long)k.vocab,
           (long long)train.steps, (long long)train.batch, tg_get_num_threads());
    ex_trainer_start(&tr, start);
    for (int64_t step = start; step < train.steps; step++) {
        ex_step_rng_seed(&rng, train.seed, step);
        batch_draw(&k, &rng, tokens, labels);
        ex_index_rows(tokens, tr.first, my_tokens);
        ex_index_rows(labels, tr.first, my_labels);
        tg_tensor *logits = classifier_forward(&model, tr.tape, my_tokens);
        tg_tensor *loss = tg_cross_entropy(tr.tape, logits, my_labels);
        ex_trainer_update(&tr, step, loss);
        ex_trainer_step_done(&tr, step, loss, tr.local * k.length);
    }
    ex_trainer_finish(&tr);
    printf("held-out accuracy (%lld sequences, chance 50%%): %.2f%%\n", (long long)test_size,
           100.0 * evaluate(&model, tr.tape, test_tokens, test_labels, 500));

    tg_index_free(my_labels);
    tg_index_free(my_tokens);
    tg_index_free(labels);
    tg_index_free(tokens);
    tg_index_free(test_labels);
    tg_index_free(test_tokens);
    const int status = ex_trainer_free(&tr);
    tg_module_free(model.lstm ? &model.lstm->module : &model.gru->module);
    return status;
}
