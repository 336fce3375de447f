/* tapegrad/models.h — the tutorial models, assembled from nn modules. Layer: models.
 *
 * Each reproduces a model of the PyTorch (and one Keras) tutorials this project started
 * from: a GRU sequence classifier, a GRU stepped one token at a time with LogSoftmax, a GRU
 * encoder-decoder with additive attention, a two-layer GRU language model, LSTM and GRU text
 * classifiers trained with Adam, and a Transformer encoder-decoder.
 *
 * Each model is a module (tapegrad/module.h) whose children are the tutorial's attributes,
 * so tg_module_params(&m->module) lists the parameters under the state_dict keys of the
 * tutorial's PyTorch class ("embedding.weight", "gru.weight_ih_l0", "fc.bias", ...), in
 * state_dict order, and a checkpoint saved from PyTorch loads with tg_params_load and the
 * other way round; tg_module_print shows it as PyTorch prints it, tg_module_train /
 * tg_module_eval switch its dropout, tg_module_free frees it. The constructors build the
 * children in the order the tutorial's __init__ does, so after tg_manual_seed(s) the
 * default initialisation equals PyTorch's after torch.manual_seed(s). models/<model>.c reads like
 * the tutorial's forward(), line for line; tests/fixturegen/models.py holds the PyTorch
 * classes.
 *
 * Shapes: B (or N) batch, T / S sequence lengths, V vocabulary, H hidden size. Token ids
 * are tg_index tensors. Outputs live in the tape's arena (until tg_tape_reset); states a
 * program keeps across steps (init_hidden, detach) are long-lived: tg_tensor_free them. */
#ifndef TAPEGRAD_MODELS_H
#define TAPEGRAD_MODELS_H

#include "tapegrad/attention.h"
#include "tapegrad/nn.h"
#include "tapegrad/rnn.h"
#include "tapegrad/transformer.h"

/* ---- the GRU tutorial's GRUModel: nn.GRU (sequence-first) + Linear on the last step ----
 * x (T, B, input_size) float -> logits (B, output_size). */
typedef struct tg_gru_seq_classifier {
    tg_module module; /* "GRUSeqModel" */
    tg_gru *gru;
    tg_linear_layer *fc;
} tg_gru_seq_classifier;

tg_gru_seq_classifier *tg_gru_seq_classifier_new(int64_t input_size, int64_t hidden_size,
                                                 int64_t output_size);
tg_tensor *tg_gru_seq_classifier_forward(tg_gru_seq_classifier *m, tg_tape *t, tg_tensor *x);

/* ---- the classification tutorial's GRUModel ----
 * Embedding + GRU (batch_first) + Linear on the last step:
 * tokens (B, T) -> logits (B, num_classes). As in the tutorial, the GRU is built (drawn)
 * before the Embedding; the keys keep the attribute order embedding.*, gru.*, fc.*. */
typedef struct tg_gru_classifier {
    tg_module module; /* "GRUClassifier" */
    tg_embedding_layer *embedding;
    tg_gru *gru;
    tg_linear_layer *fc;
} tg_gru_classifier;

tg_gru_classifier *tg_gru_classifier_new(int64_t vocab_size, int64_t embedding_dim,
                                         int64_t hidden_size, int64_t num_classes);
tg_tensor *tg_gru_classifier_forward(tg_gru_classifier *m, tg_tape *t, const tg_index *tokens);

/* ---- the classification tutorial's LSTM twin ----
 * Embedding + LSTM (batch_first) + Linear on the last step:
 * tokens (B, T) -> logits (B, num_classes) (the Keras model's softmax is in the loss). */
typedef struct tg_lstm_classifier {
    tg_module module; /* "LSTMClassifier" */
    tg_embedding_layer *embedding;
    tg_lstm *lstm;
    tg_linear_layer *fc;
} tg_lstm_classifier;

tg_lstm_classifier *tg_lstm_classifier_new(int64_t vocab_size, int64_t embedding_dim,
                                           int64_t hidden_size, int64_t num_classes);
tg_tensor *tg_lstm_classifier_forward(tg_lstm_classifier *m, tg_tape *t, const tg_index *tokens);

/* ---- the step-by-step GRU: one GRU step per call, Linear, LogSoftmax(dim=1) ----
 * input (N, input_size) (or (input_size) for N = 1), hidden (1, N, H) or NULL (zeros) ->
 * output (N, output_size) log-probabilities and the new hidden (1, N, H). */
typedef struct tg_gru_stepwise {
    tg_module module; /* "GRUStepwise" */
    int64_t hidden_size;
    tg_gru *gru;
    tg_linear_layer *fc;
} tg_gru_stepwise;

typedef struct tg_gru_stepwise_output {
    tg_tensor *output, *hidden;
} tg_gru_stepwise_output;

tg_gru_stepwise *tg_gru_stepwise_new(int64_t input_size, int64_t hidden_size, int64_t output_size);
tg_gru_stepwise_output tg_gru_stepwise_forward(tg_gru_stepwise *m, tg_tape *t, tg_tensor *input,
                                               tg_tensor *hidden);
/* initHidden(): zeros (1, batch, H), long-lived (the tutorial's batch is 1). */
tg_tensor *tg_gru_stepwise_init_hidden(const tg_gru_stepwise *m, int64_t batch);

/* ---- GRU + additive attention: GRU encoder, additive attention, GRU decoder (seq2seq) ----
 *   enc, h = encoder(src_embedding(src))          (N, S, H), s_0 = h_n[0]
 *   each step i: context, α = attention(enc, s)   e_t = vᵀ tanh(W_a h_t + U_a s + b_a)
 *                s = decoder([tgt_embedding(y_i); context], s)        (a GRUCell)
 *                logits_i = fc([s; context])
 * Keys: src_embedding.*, encoder.*, tgt_embedding.*, attention.{W_a,U_a,v}.*, decoder.*
 * (weight_ih, ...), fc.*. */
typedef struct tg_gru_attention {
    tg_module module; /* "GRUAttention" */
    tg_embedding_layer *src_embedding;
    tg_gru *encoder;
    tg_embedding_layer *tgt_embedding;
    tg_additive_attention *attention;
    tg_gru_cell *decoder;
    tg_linear_layer *fc;
} tg_gru_attention;

typedef struct tg_gru_attention_output {
    tg_tensor *logits;  /* (N, T, tgt_vocab) */
    tg_tensor *weights; /* (N, T, S): the attention of each output step over the source */
} tg_gru_attention_output;

tg_gru_attention *tg_gru_attention_new(int64_t src_vocab, int64_t tgt_vocab, int64_t embedding_dim,
                                       int64_t hidden_size, int64_t attn_dim);
/* Teacher forcing: src (N, S), tgt_in (N, T) = the targets shifted right (BOS first). */
tg_gru_attention_output tg_gru_attention_forward(tg_gru_attention *m, tg_tape *t,
                                                 const tg_index *src, const tg_index *tgt_in);
/* The training loss without the logits: cross entropy of every step's output against
 * `targets` (N·T ids, any shape), as tg_cross_entropy_ex on tg_gru_attention_forward's
 * logits viewed (N·T, tgt_vocab) computes it, through tg_linear_cross_entropy (the N·T·V
 * logits and their gradient are never held). opts NULL: mean, ignore_index -100. */
typedef struct tg_gru_attention_loss_output {
    tg_tensor *loss;
    tg_tensor *weights; /* (N, T, S) */
} tg_gru_attention_loss_output;
tg_gru_attention_loss_output tg_gru_attention_loss(tg_gru_attention *m, tg_tape *t,
                                                   const tg_index *src, const tg_index *tgt_in,
                                                   const tg_index *targets,
                                                   const tg_loss_options *opts);
/* Greedy decoding from `bos`, max_len steps, each step's input the previous argmax.
 * Returns the tokens (N, max_len) in the tape's arena; *weights (may be NULL) receives the
 * attention (N, max_len, S). Run it with recording off (tg_tape_set_recording). */
tg_index *tg_gru_attention_greedy(tg_gru_attention *m, tg_tape *t, const tg_index *src, int32_t bos,
                                  int64_t max_len, tg_tensor **weights);

/* ---- the GRU language model: Embedding + num_layers GRU (sequence-first) + Linear ----
 * x (T, B) ids, hidden (num_layers, B, H) or NULL (zeros) -> logits (T, B, V) and the new
 * hidden. Truncated BPTT carries the hidden across batches through tg_gru_lm_detach. */
typedef struct tg_gru_lm {
    tg_module module; /* "GRULanguageModel" */
    tg_embedding_layer *embedding;
    tg_gru *gru;
    tg_linear_layer *fc;
} tg_gru_lm;

typedef struct tg_gru_lm_output {
    tg_tensor *logits, *hidden;
} tg_gru_lm_output;

tg_gru_lm *tg_gru_lm_new(int64_t vocab_size, int64_t embedding_dim, int64_t hidden_dim,
                         int64_t num_layers);
tg_gru_lm_output tg_gru_lm_forward(tg_gru_lm *m, tg_tape *t, const tg_index *x, tg_tensor *hidden);
/* The training loss without the logits: cross entropy of the output layer against
 * `targets` (one id per position, T·B of them, any shape; ignore_index counts for nothing),
 * as tg_cross_entropy_ex on tg_gru_lm_forward's logits viewed (T·B, V) computes it, through
 * tg_linear_cross_entropy, which never holds the T·B·V logits nor their gradient (90 MB for
 * a 10,000-word vocabulary at T = 35, B = 32). opts NULL: mean, ignore_index -100. */
typedef struct tg_gru_lm_loss_output {
    tg_tensor *loss, *hidden;
} tg_gru_lm_loss_output;
tg_gru_lm_loss_output tg_gru_lm_loss(tg_gru_lm *m, tg_tape *t, const tg_index *x, tg_tensor *hidden,
                                     const tg_index *targets, const tg_loss_options *opts);
/* torch.zeros(num_layers, batch, H), long-lived. */
tg_tensor *tg_gru_lm_init_hidden(const tg_gru_lm *m, int64_t batch);
/* hidden.detach(): copies the values of `hidden` into `into` (same shape; NULL = a new
 * long-lived tensor) and returns it. The copy does not require grad and outlives
 * tg_tape_reset, so the next batch starts from these values without back-propagating into
 * the previous one. With a reused `into` it allocates nothing. */
tg_tensor *tg_gru_lm_detach(tg_tensor *into, const tg_tensor *hidden);

/* ---- the Transformer tutorial's TransformerModel ----
 * Embedding + TransformerEncoder + TransformerDecoder + Linear, sequence-first, no
 * positional encoding (as in the tutorial).
 * src (S, N), tgt (T, N) ids -> logits (T, N, V). The decoder's self-attention gets the
 * causal mask (generate_square_subsequent_mask(T)) unless `causal` is cleared. No final
 * LayerNorm on the stacks (nn.TransformerEncoder(layer, n) without norm). Keys:
 * encoder.layers.{i}.*, decoder.layers.{i}.*, embedding.weight, linear.*. */
typedef struct tg_transformer_model {
    tg_module module; /* "TransformerModel" */
    tg_transformer_encoder *encoder;
    tg_transformer_decoder *decoder;
    tg_embedding_layer *embedding;
    tg_linear_layer *linear;
    bool causal; /* default true */
} tg_transformer_model;

/* The tutorial's sizes with nn.TransformerEncoderLayer's defaults (feed-forward 2048,
 * dropout 0.1, relu, post-norm). */
tg_transformer_model *tg_transformer_model_new(int64_t vocab_size, int64_t d_model, int64_t nhead,
                                               int num_encoder_layers, int num_decoder_layers);
/* Any layer options (opts->batch_first must be false: the model is sequence-first). */
tg_transformer_model *tg_transformer_model_new_ex(int64_t vocab_size,
                                                  const tg_transformer_options *opts,
                                                  int num_encoder_layers, int num_decoder_layers);
tg_tensor *tg_transformer_model_forward(tg_transformer_model *m, tg_tape *t, const tg_index *src,
                                        const tg_index *tgt);
/* The training loss without the logits: cross entropy of the output layer against
 * `targets` (T·N ids, any shape), as tg_cross_entropy_ex on the forward's logits viewed
 * (T·N, V) computes it, through tg_linear_cross_entropy (neither the T·N·V logits nor their
 * gradient are held). opts NULL: mean, ignore_index -100. */
tg_tensor *tg_transformer_model_loss(tg_transformer_model *m, tg_tape *t, const tg_index *src,
                                     const tg_index *tgt, const tg_index *targets,
                                     const tg_loss_options *opts);

#endif
