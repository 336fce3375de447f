/* examples/charlm.c — the GRU language model (Embedding + 2-layer GRU + Linear) learns
 * a text file one byte at a time, then writes new text.
 *
 * Training is truncated backpropagation through time: the text is cut into `batch` streams
 * read side by side, `bptt` characters per step, and the hidden state is carried from one
 * step to the next without back-propagating into the previous step (hidden.detach()). One
 * block in twenty of the file is held out; the score is the held-out cross entropy in bits per
 * character, next to a unigram model's (character frequencies alone).
 *
 * The default text is the word list of Debian's wamerican package, /usr/share/dict/words
 * (sudo apt-get install wamerican); --data takes any file. */
#include "common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { HELD_OUT_BLOCK = 2048, HELD_OUT_EVERY = 20 };

/* The text, mapped (tg_file_map), never copied: the kernel reads its pages as the streams
 * reach them and may drop them again, so a text larger than memory trains too. Under mpirun
 * each rank reads only its own streams' stretch of it (and its share of the file once, for
 * the symbol counts). Symbols are numbered in byte order. */
typedef struct corpus {
    const unsigned char *bytes; /* the whole file */
    int64_t size, n_train, n_test;
    int64_t vocab;
    int32_t id_of[256];                       /* byte -> id, -1 for bytes the text has not */
    unsigned char symbol[256];                /* id -> byte */
    double train_count[256], test_count[256]; /* per byte, for the unigram baseline */
} corpus;

/* Whether byte i of the text is held out: every HELD_OUT_EVERY-th block of HELD_OUT_BLOCK. */
static bool held_out(int64_t i) {
    return (i / HELD_OUT_BLOCK) % HELD_OUT_EVERY == HELD_OUT_EVERY - 1;
}

/* The id of character j of the training text (the file without its held-out blocks), or of
 * the held-out text: the training text's block k is the file's block k + k / (EVERY - 1),
 * skipping every EVERY-th; the held-out block k is the file's block k·EVERY + EVERY - 1. */
static int32_t train_id(const corpus *c, int64_t j) {
    const int64_t k = j / HELD_OUT_BLOCK;
    return c->id_of[c->bytes[(k + k / (HELD_OUT_EVERY - 1)) * HELD_OUT_BLOCK + j % HELD_OUT_BLOCK]];
}

static int32_t test_id(const corpus *c, int64_t j) {
    const int64_t k = j / HELD_OUT_BLOCK;
    return c->id_of[c->bytes[(k * HELD_OUT_EVERY + HELD_OUT_EVERY - 1) * HELD_OUT_BLOCK +
                             j % HELD_OUT_BLOCK]];
}

/* Maps the file (a regular file of at most max_bytes: tg_file_map refuses anything else at
 * once, a FIFO or /dev/zero included) and counts its symbols, each rank its share of the file.
 * Exits with a message if the file cannot be used. */
static corpus corpus_load(const char *path, int64_t max_bytes) {
    corpus c = {0};
    size_t size = 0;
    if (tg_file_map(path, (uint64_t)max_bytes, &c.bytes, &size) != TG_OK) {
        fprintf(stderr, "%scharlm: cannot read --data: %s\n", ex_rank_prefix(), tg_error_message());
        if (!strcmp(path, "/usr/share/dict/words"))
            fprintf(stderr,
                    "  The default text is Debian's word list: sudo apt-get install wamerican\n"
                    "  (or train on any text file: charlm --data FILE)\n");
        if (strstr(tg_error_message(), "more than the limit"))
            fprintf(stderr, "  (--max-data-bytes raises the limit)\n");
        exit(1);
    }
    const int64_t n = c.size = (int64_t)size;
    if (n < 20 * HELD_OUT_BLOCK) {
        fprintf(stderr, "%scharlm: %s has %lld bytes; it needs at least %d\n", ex_rank_prefix(),
                path, (long long)n, 20 * HELD_OUT_BLOCK);
        exit(1);
    }
    for (int64_t i = 0; i < n; i += HELD_OUT_BLOCK)
        if (held_out(i)) c.n_test += n - i < HELD_OUT_BLOCK ? n - i : HELD_OUT_BLOCK;
    c.n_train = n - c.n_test;
    /* this rank's share of the bytes, counted; the counts added over the ranks */
    const int64_t begin = n / ex_world() * ex_rank(),
                  end = ex_rank() + 1 == ex_world() ? n : n / ex_world() * (ex_rank() + 1);
    for (int64_t i = begin; i < end; i++) {
        if (held_out(i))
            c.test_count[c.bytes[i]] += 1;
        else
            c.train_count[c.bytes[i]] += 1;
    }
    ex_dist_sum(c.train_count, 256);
    ex_dist_sum(c.test_count, 256);
    for (int b = 0; b < 256; b++) {
        c.id_of[b] = -1;
        if (c.train_count[b] + c.test_count[b] > 0) {
            c.id_of[b] = (int32_t)c.vocab;
            c.symbol[c.vocab++] = (unsigned char)b;
        }
    }
    return c;
}

/* Bits per character of a unigram model (training frequencies, add-one) on the held-out text. */
static double unigram_bits(const corpus *c) {
    double bits = 0;
    for (int b = 0; b < 256; b++)
        if (c->test_count[b] > 0)
            bits -= c->test_count[b] *
                    log2((c->train_count[b] + 1) / ((double)c->n_train + (double)c->vocab));
    return bits / (double)c->n_test;
}

/* x (bptt, local) and the targets y (bptt·local), the next characters: streams `first` ..
 * first + local - 1 of `batch` streams side by side, each a contiguous stretch of the n
 * characters that `id` gives, read from `offset` on. */
static void window_fill(const corpus *c, int32_t (*id)(const corpus *, int64_t), int64_t n,
                        int64_t batch, int64_t first, int64_t offset, tg_index *x, tg_index *y) {
    const int64_t bptt = x->shape[0], local = x->shape[1], stream = n / batch;
    for (int64_t t = 0; t < bptt; t++)
        for (int64_t b = 0; b < local; b++) {
            const int64_t at = (first + b) * stream + offset + t;
            x->data[t * local + b] = id(c, at);
            y->data[t * local + b] = id(c, at + 1);
        }
}

/* Held-out bits per character: the first `chars` characters of the held-out text in `batch`
 * streams, hidden carried along. */
static double model_bits(tg_gru_lm *model, tg_tape *tape, const corpus *c, int64_t chars,
                         int64_t batch, int64_t bptt) {
    tg_index *x = tg_index_new(TG_SHAPE(bptt, batch)), *y = tg_index_new(TG_SHAPE(bptt * batch));
    tg_tensor *hidden = tg_gru_lm_init_hidden(model, batch);
    const int64_t windows = (chars / batch - 1) / bptt;
    double nats = 0;
    ex_eval_mode(tape, &model->module, true);
    for (int64_t w = 0; w < windows; w++) {
        window_fill(c, test_id, chars, batch, 0, w * bptt, x, y);
        tg_gru_lm_output out = tg_gru_lm_forward(model, tape, x, hidden);
        tg_tensor *logits = tg_reshape(tape, out.logits, TG_SHAPE(-1, c->vocab));
        nats += (double)tg_item(tg_cross_entropy(tape, logits, y)) * (double)(bptt * batch);
        tg_gru_lm_detach(hidden, out.hidden);
        tg_tape_reset(tape);
    }
    ex_eval_mode(tape, &model->module, false);
    tg_tensor_free(hidden);
    tg_index_free(x);
    tg_index_free(y);
    return nats / log(2.0) / (double)(windows * bptt * batch);
}

/* Between the hidden state of all streams, `all` (layers, batch, H), and this rank's rows of
 * it, `mine` (layers, local, H) from row `first`: from `all` into `mine`, or with `gather` from
 * every rank's `mine` into `all` (a sum over the ranks of `all` zeroed but for each rank's own
 * rows: the same bits as a copy, as adding zeros is exact). */
static void hidden_rows(tg_tensor *all, tg_tensor *mine, int64_t first, bool gather) {
    const int64_t layers = all->shape[0], batch = all->shape[1], local = mine->shape[1];
    const int64_t h = all->shape[2];
    if (!gather) {
        for (int64_t l = 0; l < layers; l++)
            memcpy(mine->data + l * local * h, all->data + (l * batch + first) * h,
                   (size_t)(local * h) * sizeof(tg_real));
        return;
    }
    if (ex_world() == 1) {
        memcpy(all->data, mine->data, (size_t)all->numel * sizeof(tg_real));
        return;
    }
    double *sum = calloc((size_t)all->numel, sizeof *sum);
    if (!sum) ex_file_error("out of memory for the hidden state");
    for (int64_t l = 0; l < layers; l++)
        for (int64_t k = 0; k < local * h; k++)
            sum[(l * batch + first) * h + k] = mine->data[l * local * h + k];
    ex_dist_sum(sum, (int)all->numel);
    for (int64_t k = 0; k < all->numel; k++) all->data[k] = (tg_real)sum[k];
    free(sum);
}

/* Writes n sampled characters, starting after a newline, at the given temperature. */
static void sample_print(tg_gru_lm *model, tg_tape *tape, const corpus *c, int64_t n,
                         double temperature, int64_t seed) {
    tg_rng rng;
    tg_rng_seed(&rng, ex_step_seed(seed, -2));
    tg_index *x = tg_index_new(TG_SHAPE(1, 1));
    tg_tensor *hidden = tg_gru_lm_init_hidden(model, 1);
    double *p = malloc((size_t)c->vocab * sizeof *p);
    int32_t id = 0;
    while (id < c->vocab && c->symbol[id] != '\n') id++;
    if (id == c->vocab) id = 0;
    ex_eval_mode(tape, &model->module, true);
    printf("\nsampled text (temperature %g):\n", temperature);
    for (int64_t i = 0; i < n; i++) {
        x->data[0] = id;
        tg_gru_lm_output out = tg_gru_lm_forward(model, tape, x, hidden);
        const tg_real *logits = out.logits->data;
        double max = logits[0], sum = 0;
        for (int64_t v = 1; v < c->vocab; v++) max = fmax(max, logits[v]);
        for (int64_t v = 0; v < c->vocab; v++) sum += p[v] = exp((logits[v] - max) / temperature);
        double u = tg_rng_uniform01(&rng) * sum;
        for (id = 0; id + 1 < c->vocab && (u -= p[id]) >= 0; id++) {
        }
        putchar(c->symbol[id] == '\n' ? ' '
                                      : c->symbol[id]); /* a word list reads better on one line */
        tg_gru_lm_detach(hidden, out.hidden);
        tg_tape_reset(tape);
    }
    printf("\n");
    ex_eval_mode(tape, &model->module, false);
    free(p);
    tg_tensor_free(hidden);
    tg_index_free(x);
}

/* The memory of a run (ex_memory_estimate): the parameters of the embedding, the GRU layers
 * (3H·(in + H) weights and 6H biases each) and the Linear; per character of a training step
 * (bptt·batch of them; evaluation runs 16 streams) the embedding and its gradient (2E), in
 * each layer the input projections, gates, candidate and state with their gradients (10H),
 * and the logits, log-softmax and gradient (3 per symbol). The text is mapped, not loaded: its
 * pages are the kernel's cache, which it can drop, so they are not counted. */
static double memory_need(int64_t vocab, int64_t embedding, int64_t hidden, int64_t layers,
                          int64_t batch, int64_t bptt) {
    const double V = (double)vocab, E = (double)embedding, H = (double)hidden;
    const double L = (double)layers, rows = (double)bptt * (double)(batch > 16 ? batch : 16);
    const double params = V * E + 3 * H * (E + H) + (L - 1) * 3 * H * 2 * H + L * 6 * H + H * V + V;
    return ex_memory_estimate(params, rows * (2 * E + 10 * L * H + 3 * V), 0);
}

int main(int argc, char **argv) {
    ex_train_options train = {.steps = 2500,
                              .batch = 32,
                              .lr = 3e-3,
                              .seed = 0,
                              .checkpoint = "charlm.safetensors",
                              .save_every = 250};
    const char *data = "/usr/share/dict/words";
    int64_t embedding = 32, hidden_size = 128, layers = 2, bptt = 64, sample = 300;
    int64_t max_data_bytes = 256 << 20, eval_chars = 1 << 20;
    double temperature = 0.8;
    const ex_flag flags[] = {
        {"data", EX_FLAG_INPUT, &data, 0, 0, "text file to learn (a regular file)"},
        {"max-data-bytes", EX_FLAG_INT, &max_data_bytes, 1, 1e12,
         "refuse a --data file larger than this"},
        {"embedding", EX_FLAG_INT, &embedding, 1, 4096, "embedding size of a character"},
        {"hidden", EX_FLAG_INT, &hidden_size, 1, 4096, "GRU hidden size"},
        {"layers", EX_FLAG_INT, &layers, 1, 16, "GRU layers"},
        {"bptt", EX_FLAG_INT, &bptt, 1, 100000, "characters per stream and step (truncated BPTT)"},
        {"sample", EX_FLAG_INT, &sample, 0, 1000000, "characters to sample after training"},
        {"temperature", EX_FLAG_REAL, &temperature, 1e-3, 100, "sampling temperature"},
        {"eval-chars", EX_FLAG_INT, &eval_chars, 1, 1e15,
         "held-out characters to score (at most; the held-out text is 1/20 of the file)"},
    };
    ex_flags_parse(
        argc, argv,
        "charlm: the GRU language model learns a text file character by character\n"
        "(default: the word list of Debian's wamerican package), reports held-out bits per\n"
        "character against a unigram model, and writes new text.",
        &train, flags, (int)(sizeof flags / sizeof flags[0]));

    corpus c = corpus_load(data, max_data_bytes);
    ex_memory_check(memory_need(c.vocab, embedding, hidden_size, layers, train.batch, bptt),
                    "--batch, --bptt, --hidden, --layers, --embedding or the --data file");
    if (c.n_train / train.batch < bptt + 2 || c.n_test / 16 < bptt + 2) {
        fprintf(stderr, "charlm: %s is too short for --batch %lld and --bptt %lld\n", data,
                (long long)train.batch, (long long)bptt);
        return 1;
    }
    tg_manual_seed((uint64_t)train.seed);
    tg_gru_lm *model = tg_gru_lm_new(c.vocab, embedding, hidden_size, layers);
    tg_params *params = tg_module_params(&model->module);
    ex_trainer tr;
    ex_trainer_init(&tr, params, &train, 0);
    /* the hidden state of all `batch` streams, carried across steps, is saved with them; each
     * rank carries its own streams' rows in `hidden` */
    tg_tensor *all_hidden = tg_gru_lm_init_hidden(model, train.batch);
    ex_checkpoint_add(tr.checkpoint, "hidden", all_hidden);
    const int64_t start = ex_trainer_resume(&tr);
    tg_tensor *hidden = tg_gru_lm_init_hidden(model, tr.local);
    hidden_rows(all_hidden, hidden, tr.first, false);
    tg_index *x = tg_index_new(TG_SHAPE(bptt, tr.local));
    tg_index *y = tg_index_new(TG_SHAPE(bptt * tr.local));

    const double baseline = unigram_bits(&c);
    printf("charlm: %s, %lld characters (%lld held out), %lld symbols; %lld parameters, "
           "%lld steps of %lldx%lld, %d threads\n",
           data, (long long)(c.n_train + c.n_test), (long long)c.n_test, (long long)c.vocab,
           (long long)tg_params_numel(params), (long long)train.steps, (long long)train.batch,
           (long long)bptt, tg_get_num_threads());
    ex_trainer_start(&tr, start);
    for (int64_t step = start; step < train.steps; step++) {
        /* the step's window follows from the step alone (wrapping at the end of a stream) */
        window_fill(&c, train_id, c.n_train, train.batch, tr.first,
                    (step * bptt) % (c.n_train / train.batch - bptt - 1), x, y);
        tg_gru_lm_output out = tg_gru_lm_forward(model, tr.tape, x, hidden);
        tg_tensor *loss =
            tg_cross_entropy(tr.tape, tg_reshape(tr.tape, out.logits, TG_SHAPE(-1, c.vocab)), y);
        ex_trainer_update(&tr, step, loss);
        tg_gru_lm_detach(hidden, out.hidden); /* hidden = hidden.detach(), saved with the step */
        hidden_rows(all_hidden, hidden, tr.first, true);
        ex_trainer_step_done(&tr, step, loss, bptt * tr.local);
    }
    ex_trainer_finish(&tr);

    const double bits =
        model_bits(model, tr.tape, &c, c.n_test < eval_chars ? c.n_test : eval_chars, 16, bptt);
    if (sample > 0) sample_print(model, tr.tape, &c, sample, temperature, train.seed);
    printf("\nheld-out bits per character: model %.3f, unigram baseline %.3f (%.0f%% of it)\n",
           bits, baseline, 100.0 * bits / baseline);

    tg_index_free(y);
    tg_index_free(x);
    const int status = ex_trainer_free(&tr);
    tg_tensor_free(hidden);
    tg_tensor_free(all_hidden);
    tg_module_free(&model->module);
    tg_file_unmap(c.bytes, (size_t)c.size);
    return status;
}
