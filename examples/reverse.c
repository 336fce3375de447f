/* examples/reverse.c — the Transformer sequence-to-sequence model (shared Embedding,
 * encoder, decoder, Linear) learns to reverse sequences of tokens:
 *     3 1 4 1 5 9 2 6  ->  6 2 9 5 1 4 1 3
 *
 * The model as tapegrad/models.h builds it adds no positional information, and without it
 * an encoder sees a bag of tokens: nothing could tell it which token came last. So this
 * script runs the model's own modules with the sinusoidal positional encoding of the
 * PyTorch tutorial added to both embeddings; otherwise its forward() is the model's.
 * Trained with teacher forcing (the decoder sees the answer shifted right, under the causal
 * mask), scored by the exact match of greedy decoding on 1,000 held-out sequences. Dropout
 * is 0 (the Transformer layers default to 0.1; --dropout sets it). */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>

enum { BOS = 0, HELD_OUT = 1000 };

typedef struct reverser {
    tg_transformer_model *model;
    tg_tensor *position; /* (max_len, d_model) sinusoidal table */
    tg_tensor *causal;   /* (T, T) causal mask of the decoder */
} reverser;

/* embedding(ids) + position, for ids (L, N) -> (L, N, d_model) */
static tg_tensor *embed(reverser *r, tg_tape *t, const tg_index *ids) {
    const int64_t L = ids->shape[0], d = r->position->shape[1];
    tg_tensor *pe = tg_reshape(t, tg_slice(t, r->position, 0, 0, L), TG_SHAPE(L, 1, d));
    return tg_add(t, tg_embedding_forward(r->model->embedding, t, ids), pe);
}

/* src = self.encoder(src) */
static tg_tensor *encode(reverser *r, tg_tape *t, const tg_index *src) {
    return tg_transformer_encoder_forward(r->model->encoder, t, embed(r, t, src), NULL);
}

/* output = self.linear(self.decoder(tgt, memory, tgt_mask)) -> (T, N, vocab) */
static tg_tensor *decode(reverser *r, tg_tape *t, const tg_index *tgt, tg_tensor *memory) {
    const int64_t T = tgt->shape[0];
    const tg_mha_masks masks = {.attn_mask =
                                    T == r->causal->shape[0]
                                        ? r->causal
                                        : tg_slice(t, tg_slice(t, r->causal, 0, 0, T), 1, 0, T)};
    tg_tensor *y = tg_transformer_decoder_forward(r->model->decoder, t, embed(r, t, tgt), memory,
                                                  &masks, NULL);
    return tg_linear_forward(r->model->linear, t, y);
}

/* n sequences of `length` tokens in 1 .. symbols into src (length, n), and the decoder's
 * input (BOS, then the reversed sequence) and targets (the reversed sequence). */
static void batch_draw(tg_rng *rng, int64_t symbols, tg_index *src, tg_index *tgt_in,
                       tg_index *tgt_out) {
    const int64_t L = src->shape[0], n = src->shape[1];
    for (int64_t i = 0; i < n; i++) {
        for (int64_t t = 0; t < L; t++)
            src->data[t * n + i] = (int32_t)(1 + ex_rng_below(rng, symbols));
        for (int64_t t = 0; t < L; t++) {
            const int32_t next = src->data[(L - 1 - t) * n + i];
            tgt_out->data[t * n + i] = next;
            if (t + 1 < L) tgt_in->data[(t + 1) * n + i] = next;
        }
        tgt_in->data[i] = BOS;
    }
}

/* Exact-match count of greedy decoding (one token at a time, each step re-reading the prefix),
 * in chunks of `chunk` sequences to keep the memory small. */
static int64_t evaluate(reverser *r, tg_tape *tape, const tg_index *src, const tg_index *want,
                        int64_t chunk) {
    const int64_t L = src->shape[0], n = src->shape[1];
    tg_index *part = tg_index_new(TG_SHAPE(L, chunk)), *prefix = tg_index_new(TG_SHAPE(L, chunk));
    int64_t correct = 0;
    ex_eval_mode(tape, &r->model->module, true);
    for (int64_t first = 0; first < n; first += chunk) {
        const int64_t m = n - first < chunk ? n - first : chunk;
        for (int64_t t = 0; t < L; t++)
            for (int64_t i = 0; i < chunk; i++)
                part->data[t * chunk + i] = src->data[t * n + first + (i < m ? i : 0)];
        tg_tensor *memory = tg_tensor_clone(encode(r, tape, part)); /* outlives the resets below */
        tg_tape_reset(tape);
        for (int64_t i = 0; i < chunk; i++) prefix->data[i] = BOS;
        for (int64_t t = 0; t < L; t++) {
            tg_index view = *prefix; /* the first t + 1 rows */
            view.shape[0] = t + 1;
            view.numel = (t + 1) * chunk;
            const tg_tensor *logits = decode(r, tape, &view, memory); /* (t + 1, chunk, vocab) */
            const int64_t vocab = logits->shape[2];
            for (int64_t i = 0; i < chunk; i++) {
                const int32_t next =
                    (int32_t)ex_argmax(logits->data + (t * chunk + i) * vocab, vocab);
                if (t + 1 < L) prefix->data[(t + 1) * chunk + i] = next;
                if (i >= m || t + 1 < L) continue;
                bool same = next == want->data[t * n + first + i];
                for (int64_t k = 0; k + 1 < L; k++)
                    same =
                        same && prefix->data[(k + 1) * chunk + i] == want->data[k * n + first + i];
                correct += same;
            }
            tg_tape_reset(tape);
        }
        tg_tensor_free(memory);
    }
    ex_eval_mode(tape, &r->model->module, false);
    tg_index_free(prefix);
    tg_index_free(part);
    return correct;
}

/* The memory of a run (ex_memory_estimate): the parameters of the shared embedding, the
 * encoder layers (self-attention 4D² + feed-forward 2DF), the decoder layers (two attentions
 * 8D² + 2DF) and the Linear; per token of a step (batch·length of each side; evaluation
 * decodes 250 sequences at a time) per encoder layer ~12D values of projections, norms and
 * residuals, 3F in the feed-forward and 3 per head and key of attention weights (scores,
 * softmax, dropout), twice the attention part and ~20D per decoder layer, the embeddings with
 * their positions, and the logits, gradients included; the held-out sequences. */
static double memory_need(int64_t symbols, int64_t length, int64_t d_model, int64_t heads,
                          int64_t feedforward, int64_t layers, int64_t batch) {
    const double V = (double)symbols + 1, L = (double)length, D = (double)d_model;
    const double F = (double)feedforward, N = (double)layers, h = (double)heads;
    const double params = 2 * V * D + N * (12 * D * D + 4 * D * F + 25 * D + 2 * F) + 4 * D + V;
    const double per_token =
        6 * D + 3 * V + N * (12 * D + 3 * F + 3 * h * L) + N * (20 * D + 3 * F + 6 * h * L);
    const double tokens = (double)(batch > 250 ? batch : 250) * L;
    return ex_memory_estimate(params, tokens * per_token, 4.0 * 3 * (HELD_OUT + batch) * L);
}

int main(int argc, char **argv) {
    ex_train_options train = {.steps = 600,
                              .batch = 64,
                              .lr = 1e-3,
                              .seed = 0,
                              .checkpoint = "reverse.safetensors",
                              .save_every = 500};
    int64_t length = 12, symbols = 10, d_model = 64, heads = 4, feedforward = 256, layers = 2;
    double dropout = 0;
    const ex_flag flags[] = {
        {"length", EX_FLAG_INT, &length, 1, 4096, "tokens per sequence"},
        {"symbols", EX_FLAG_INT, &symbols, 1, 100000, "distinct tokens"},
        {"d-model", EX_FLAG_INT, &d_model, 2, 4096, "model width (even)"},
        {"heads", EX_FLAG_INT, &heads, 1, 256, "attention heads (dividing --d-model)"},
        {"feedforward", EX_FLAG_INT, &feedforward, 1, 65536, "feed-forward width"},
        {"layers", EX_FLAG_INT, &layers, 1, 64, "encoder layers, and as many decoder layers"},
        {"dropout", EX_FLAG_REAL, &dropout, 0, 0.99, "dropout in the Transformer layers"},
    };
    ex_flags_parse(
        argc, argv,
        "reverse: the Transformer sequence-to-sequence model learns to reverse sequences of\n"
        "tokens, scored by exact match of greedy decoding on 1,000 held-out sequences.",
        &train, flags, (int)(sizeof flags / sizeof flags[0]));
    if (d_model % 2 || d_model % heads) {
        fprintf(stderr, "reverse: --d-model %lld must be even and divisible by --heads %lld\n",
                (long long)d_model, (long long)heads);
        return 2;
    }
    ex_memory_check(memory_need(symbols, length, d_model, heads, feedforward, layers, train.batch),
                    "--batch, --length, --d-model, --feedforward, --layers, --heads or --symbols");

    tg_manual_seed((uint64_t)train.seed);
    tg_transformer_options opts = tg_transformer_defaults(d_model, heads);
    opts.dim_feedforward = feedforward;
    opts.dropout = (tg_real)dropout;
    reverser r = {tg_transformer_model_new_ex(symbols + 1, &opts, (int)layers, (int)layers),
                  tg_positional_encoding(length, d_model), tg_square_subsequent_mask(length)};
    tg_params *params = tg_module_params(&r.model->module);
    ex_trainer tr;
    ex_trainer_init(&tr, params, &train, 100);
    const int64_t start = ex_trainer_resume(&tr);

    tg_rng rng;
    tg_rng_seed(&rng, ex_step_seed(train.seed, -1)); /* the held-out set has its own seed */
    tg_index *test_src = tg_index_new(TG_SHAPE(length, HELD_OUT));
    tg_index *test_in = tg_index_new(TG_SHAPE(length, HELD_OUT));
    tg_index *test_out = tg_index_new(TG_SHAPE(length, HELD_OUT));
    batch_draw(&rng, symbols, test_src, test_in, test_out);
    tg_index *src = tg_index_new(TG_SHAPE(length, train.batch));
    tg_index *tgt_in = tg_index_new(TG_SHAPE(length, train.batch));
    tg_index *tgt_out = tg_index_new(TG_SHAPE(length * train.batch));
    /* this rank's columns of them (all of them alone) */
    tg_index *my_src = tg_index_new(TG_SHAPE(length, tr.local));
    tg_index *my_in = tg_index_new(TG_SHAPE(length, tr.local));
    tg_index *my_out = tg_index_new(TG_SHAPE(length * tr.local));

    printf("reverse: %lld parameters, sequences of %lld tokens from %lld, %lld steps of %lld, "
           "%d threads\n",
           (long long)tg_params_numel(params), (long long)length, (long long)symbols,
           (long long)train.steps, (long long)train.batch, tg_get_num_threads());
    ex_trainer_start(&tr, start);
    for (int64_t step = start; step < train.steps; step++) {
        ex_step_rng_seed(&rng, train.seed, step); /* also seeds dropout */
        batch_draw(&rng, symbols, src, tgt_in, tgt_out);
        ex_index_columns(src, train.batch, tr.first, my_src, tr.local);
        ex_index_columns(tgt_in, train.batch, tr.first, my_in, tr.local);
        ex_index_columns(tgt_out, train.batch, tr.first, my_out, tr.local);
        tg_tensor *logits = decode(&r, tr.tape, my_in, encode(&r, tr.tape, my_src));
        tg_tensor *loss = tg_cross_entropy(
            tr.tape, tg_reshape(tr.tape, logits, TG_SHAPE(-1, symbols + 1)), my_out);
        ex_trainer_update(&tr, step, loss);
        ex_trainer_step_done(&tr, step, loss, 2 * length * tr.local);
    }
    ex_trainer_finish(&tr);

    const int64_t correct = evaluate(&r, tr.tape, test_src, test_out, 250);
    printf("exact match on %d held-out sequences: %lld/%d = %.1f%%\n", HELD_OUT, (long long)correct,
           HELD_OUT, 100.0 * (double)correct / HELD_OUT);

    tg_index_free(my_out);
    tg_index_free(my_in);
    tg_index_free(my_src);
    tg_index_free(tgt_out);
    tg_index_free(tgt_in);
    tg_index_free(src);
    tg_index_free(test_out);
    tg_index_free(test_in);
    tg_index_free(test_src);
    const int status = ex_trainer_free(&tr);
    tg_tensor_free(r.causal);
    tg_tensor_free(r.position);
    tg_module_free(&r.model->module);
    return status;
}
