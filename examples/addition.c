/* examples/addition.c — the GRU encoder-decoder with additive attention learns to add
 * two integers of up to three digits written as text: "123+45" -> "168".
 *
 * The source is read one character at a time by the encoder GRU; the decoder writes the sum
 * one digit at a time, attending over the source characters at every step, from the last
 * digit to the first as one adds on paper (the program prints the sum the right way round).
 * Training uses teacher forcing and cross entropy; the score is the exact match of greedy
 * decoding on 1,000 held-out problems that training never sees.
 *
 *   addition                       train with the defaults, then score
 *   addition --show-attention      also print where the decoder looked, for one problem */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    SRC_LEN = 7, /* "999+999" */
    TGT_LEN = 5, /* "1998" and the end token */
    PLUS = 10,
    PAD = 11,
    SRC_VOCAB = 12, /* source: digits, '+', padding (in front) */
    END = 10,
    BOS = 11,
    TGT_VOCAB = 12,   /* target: digits, end, begin */
    MAX_VALUE = 1000, /* operands in [0, 999] */
    HELD_OUT = 1000,
};

typedef struct problem {
    int a, b;
} problem;

/* The decimal digits of v into out; returns how many. */
static int digits_of(int v, int32_t *out) {
    char text[8];
    const int n = snprintf(text, sizeof text, "%d", v);
    for (int i = 0; i < n; i++) out[i] = text[i] - '0';
    return n;
}

/* "a+b" as SRC_LEN token ids, padded in front. */
static void encode_source(problem p, int32_t *src) {
    int32_t chars[SRC_LEN];
    int n = digits_of(p.a, chars);
    chars[n++] = PLUS;
    n += digits_of(p.b, chars + n);
    for (int i = 0; i < SRC_LEN; i++) src[i] = i < SRC_LEN - n ? PAD : chars[i - (SRC_LEN - n)];
}

/* The decoder's input (BOS, then the answer) and its targets (the answer, END, then
 * positions that count for nothing). The answer is written from its last digit to its
 * first, as one adds on paper: each digit then needs only the digits above it and the
 * carry, which the decoder keeps in its state. */
static void encode_target(problem p, int32_t *tgt_in, int32_t *tgt_out) {
    int32_t sum[TGT_LEN], backwards[TGT_LEN];
    const int n = digits_of(p.a + p.b, sum);
    for (int i = 0; i < n; i++) backwards[i] = sum[n - 1 - i];
    for (int i = 0; i < TGT_LEN; i++) {
        tgt_out[i] = i < n ? backwards[i] : i == n ? END : -100;
        tgt_in[i] = i == 0 ? BOS : i <= n ? backwards[i - 1] : END;
    }
}

static problem problem_draw(tg_rng *rng) {
    return (problem){(int)ex_rng_below(rng, MAX_VALUE), (int)ex_rng_below(rng, MAX_VALUE)};
}

/* The held-out problems: distinct, drawn from their own seed; training skips them. */
static void held_out_draw(int64_t seed, problem *test, uint8_t *is_test) {
    tg_rng rng;
    tg_rng_seed(&rng, ex_step_seed(seed, -1));
    for (int i = 0; i < HELD_OUT;) {
        const problem p = problem_draw(&rng);
        if (is_test[p.a * MAX_VALUE + p.b]) continue;
        is_test[p.a * MAX_VALUE + p.b] = 1;
        test[i++] = p;
    }
}

typedef struct batch {
    tg_index *src, *tgt_in, *tgt_out; /* (B, S), (B, T), (B·T) */
} batch;

static batch batch_new(int64_t n) {
    return (batch){tg_index_new(TG_SHAPE(n, SRC_LEN)), tg_index_new(TG_SHAPE(n, TGT_LEN)),
                   tg_index_new(TG_SHAPE(n * TGT_LEN))};
}

static void batch_fill(batch *b, const problem *problems, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        encode_source(problems[i], b->src->data + i * SRC_LEN);
        encode_target(problems[i], b->tgt_in->data + i * TGT_LEN, b->tgt_out->data + i * TGT_LEN);
    }
}

static void batch_free(batch *b) {
    tg_index_free(b->src);
    tg_index_free(b->tgt_in);
    tg_index_free(b->tgt_out);
}

/* The answer greedy decoding wrote for row i (last digit first), as a number (-1 if it is
 * not one). */
static int answer_of(const tg_index *tokens, int64_t i) {
    int value = 0, n = 0, scale = 1;
    for (; n < TGT_LEN && tokens->data[i * TGT_LEN + n] != END; n++, scale *= 10) {
        const int32_t d = tokens->data[i * TGT_LEN + n];
        if (d > 9) return -1;
        value += d * scale;
    }
    return n == 0 || n == TGT_LEN ? -1 : value;
}

/* Exact-match count of greedy decoding on `n` problems; answers[i] receives each answer. */
static int64_t evaluate(tg_gru_attention *model, tg_tape *tape, const problem *problems, int64_t n,
                        int *answers) {
    const int64_t chunk = 250;
    batch b = batch_new(chunk);
    int64_t correct = 0;
    ex_eval_mode(tape, &model->module, true);
    for (int64_t start = 0; start < n; start += chunk) {
        const int64_t m = n - start < chunk ? n - start : chunk;
        batch_fill(&b, problems + start, m);
        const tg_index *tokens = tg_gru_attention_greedy(model, tape, b.src, BOS, TGT_LEN, NULL);
        for (int64_t i = 0; i < m; i++) {
            const problem p = problems[start + i];
            answers[start + i] = answer_of(tokens, i);
            correct += answers[start + i] == p.a + p.b;
        }
        tg_tape_reset(tape);
    }
    ex_eval_mode(tape, &model->module, false);
    batch_free(&b);
    return correct;
}

/* One attention map as text: a row per output character, a column per source character,
 * each weight as a percentage. */
static void attention_print(tg_gru_attention *model, tg_tape *tape, problem p) {
    batch b = batch_new(1);
    batch_fill(&b, &p, 1);
    ex_eval_mode(tape, &model->module, true);
    tg_tensor *weights = NULL;
    const tg_index *tokens = tg_gru_attention_greedy(model, tape, b.src, BOS, TGT_LEN, &weights);
    printf("\nattention of the decoder over the source, in %%: a row per output character, in the\n"
           "order the decoder writes them (last digit first), a column per input character\n\n   ");
    for (int s = 0; s < SRC_LEN; s++) {
        const int32_t c = b.src->data[s];
        printf("%4c", c == PAD ? ' ' : c == PLUS ? '+' : '0' + c);
    }
    printf("\n");
    for (int t = 0; t < TGT_LEN; t++) {
        const int32_t c = tokens->data[t];
        printf("%3s", c == END ? "end" : (char[]){(char)('0' + c), 0});
        for (int s = 0; s < SRC_LEN; s++) printf("%4.0f", 100.0 * weights->data[t * SRC_LEN + s]);
        printf("\n");
        if (c == END) break;
    }
    tg_tape_reset(tape);
    ex_eval_mode(tape, &model->module, false);
    batch_free(&b);
}

/* The memory of a run (ex_memory_estimate): the parameters of the two embeddings, the encoder
 * GRU, the attention (W_a, U_a: H·A each), the decoder GRU cell (its input is the embedding
 * and the context) and the Linear on [state; context]; per problem of a step (evaluation
 * decodes 250 at a time), gradients included, the encoder's embedding, ~14H values of gates
 * and states and the projected key at each of the SRC_LEN source characters, and at each of
 * the TGT_LEN decoder steps the embedding, ~19H for the cell, the context and the output
 * layer, 2A per source character in the attention's tanh layer, and the logits. */
static double memory_need(int64_t embedding, int64_t hidden, int64_t attention, int64_t batch) {
    const double E = (double)embedding, H = (double)hidden, A = (double)attention;
    const double params = 2 * 12 * E + 3 * H * (E + H) + 3 * H * (E + 2 * H) + 12 * H + 2 * H * A +
                          3 * A + 2 * H * 12 + 12;
    const double per_problem =
        SRC_LEN * (E + 14 * H + A) + TGT_LEN * (E + 19 * H + 2 * SRC_LEN * A + 40);
    const double rows = (double)(batch > 250 ? batch : 250);
    return ex_memory_estimate(params, rows * per_problem,
                              MAX_VALUE * MAX_VALUE + rows * 4 * (SRC_LEN + 2 * TGT_LEN + 8));
}

int main(int argc, char **argv) {
    ex_train_options train = {.steps = 2500,
                              .batch = 128,
                              .lr = 1e-2,
                              .seed = 0,
                              .checkpoint = "addition.safetensors",
                              .save_every = 500};
    int64_t embedding = 32, hidden = 128, attention = 64;
    bool show_attention = false;
    const ex_flag flags[] = {
        {"embedding", EX_FLAG_INT, &embedding, 1, 4096, "embedding size of the characters"},
        {"hidden", EX_FLAG_INT, &hidden, 1, 4096, "GRU hidden size (encoder and decoder)"},
        {"attention", EX_FLAG_INT, &attention, 1, 4096, "size of the additive attention layer"},
        {"show-attention", EX_FLAG_SWITCH, &show_attention, 0, 0,
         "print one attention map after training"},
    };
    ex_flags_parse(
        argc, argv,
        "addition: a GRU encoder-decoder with attention learns to add two\n"
        "integers of up to 3 digits written as text (\"123+45\" -> \"168\"), and is scored by\n"
        "exact match on 1,000 held-out problems.",
        &train, flags, (int)(sizeof flags / sizeof flags[0]));
    ex_memory_check(memory_need(embedding, hidden, attention, train.batch),
                    "--batch, --hidden, --attention or --embedding");

    problem *test = malloc(HELD_OUT * sizeof *test);
    uint8_t *is_test = calloc(MAX_VALUE * MAX_VALUE, 1);
    problem *problems = malloc((size_t)train.batch * sizeof *problems);
    int *answers = malloc(HELD_OUT * sizeof *answers);
    if (!test || !is_test || !problems || !answers) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    held_out_draw(train.seed, test, is_test);

    tg_manual_seed((uint64_t)train.seed);
    tg_gru_attention *model =
        tg_gru_attention_new(SRC_VOCAB, TGT_VOCAB, embedding, hidden, attention);
    tg_params *params = tg_module_params(&model->module);
    ex_trainer tr;
    ex_trainer_init(&tr, params, &train, 50);
    const int64_t start = ex_trainer_resume(&tr);
    tg_loss_options ce = tg_loss_defaults(); /* ignore_index -100: after the end token */
    batch b = batch_new(tr.local);           /* this rank's rows of each step's problems */

    printf("addition: %lld parameters, %lld steps of %lld problems, %d threads\n",
           (long long)tg_params_numel(params), (long long)train.steps, (long long)train.batch,
           tg_get_num_threads());
    ex_trainer_start(&tr, start);
    for (int64_t step = start; step < train.steps; step++) {
        tg_rng rng;
        ex_step_rng_seed(&rng, train.seed, step); /* this step's problems from (seed, step) */
        for (int64_t i = 0; i < train.batch; i++) {
            do problems[i] = problem_draw(&rng);
            while (is_test[problems[i].a * MAX_VALUE + problems[i].b]);
        }
        batch_fill(&b, problems + tr.first, tr.local);
        tg_tensor *logits = tg_gru_attention_forward(model, tr.tape, b.src, b.tgt_in).logits;
        tg_tensor *loss = tg_cross_entropy_ex(
            tr.tape, tg_reshape(tr.tape, logits, TG_SHAPE(-1, TGT_VOCAB)), b.tgt_out, &ce);
        ex_trainer_update(&tr, step, loss);
        ex_trainer_step_done(&tr, step, loss, tr.local * (SRC_LEN + TGT_LEN));
    }
    ex_trainer_finish(&tr);

    const int64_t correct = evaluate(model, tr.tape, test, HELD_OUT, answers);
    printf("\nsome held-out problems:\n");
    for (int i = 0; i < 6; i++)
        printf("  %3d+%-3d = %-4d  model: %-5d %s\n", test[i].a, test[i].b, test[i].a + test[i].b,
               answers[i], answers[i] == test[i].a + test[i].b ? "right" : "WRONG");
    if (show_attention) attention_print(model, tr.tape, test[0]);
    printf("\nexact match on %d held-out problems: %lld/%d = %.1f%%\n", HELD_OUT,
           (long long)correct, HELD_OUT, 100.0 * (double)correct / HELD_OUT);

    batch_free(&b);
    const int status = ex_trainer_free(&tr);
    tg_module_free(&model->module);
    free(answers);
    free(problems);
    free(is_test);
    free(test);
    return status;
}
