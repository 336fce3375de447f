/* Misuse: the ordinary mistakes of a C program that uses the library, each stopped by the
 * error handler with a message that names the function, the argument or tensor, and what
 * happened, before anything is read through a bad pointer (the suite runs clean under
 * ASan and UBSan):
 *  - tensors used after the reset of their tape, or on another tape (tapegrad/tape.h);
 *  - a second backward through a released graph, and retain_graph;
 *  - NULL for a required argument, one case per public entry-point family, and the NULLs
 *    that mean something (an absent bias, zero states, default options) still accepted. */
#include "harness.h"

#include <string.h>

/* ---- helpers ---- */

/* A long-lived vector 1, 2, ..., n that requires grad. */
static tg_tensor *leaf(const char *name, int64_t n) {
    tg_tensor *t = tg_tensor_new(1, (const int64_t[]){n});
    for (int64_t i = 0; i < n; i++) t->data[i] = (tg_real)(i + 1);
    return tg_tensor_named(tg_tensor_requires_grad(t, true), name);
}

/* A tensor of the tape, as an op would make it, filled with v and named. */
static tg_tensor *on_tape(tg_tape *tape, const char *name, int64_t n, tg_real v) {
    tg_tensor *t = tg_tape_tensor(tape, 1, (const int64_t[]){n});
    tg_tensor_fill(t, v);
    return name ? tg_tensor_named(t, name) : t;
}

/* Long-lived weights of a one-layer cell of `kind`, input size I, hidden size H. */
static tg_cell_weights cell_weights(tg_cell_kind kind, int64_t I, int64_t H) {
    const int64_t G = tg_cell_gate_count(kind);
    tg_cell_weights w = {
        tg_tensor_requires_grad(tg_test_rand(1, -0.5, 0.5, TG_SHAPE(G * H, I)), true),
        tg_tensor_requires_grad(tg_test_rand(2, -0.5, 0.5, TG_SHAPE(G * H, H)), true),
        tg_tensor_requires_grad(tg_test_rand(3, -0.5, 0.5, TG_SHAPE(G * H)), true),
        tg_tensor_requires_grad(tg_test_rand(4, -0.5, 0.5, TG_SHAPE(G * H)), true), NULL};
    return w;
}

static void cell_weights_free(tg_cell_weights *w) {
    tg_tensor_free(w->w_ih), tg_tensor_free(w->w_hh);
    tg_tensor_free(w->b_ih), tg_tensor_free(w->b_hh);
}

/* =========================================================================================
 * Lifetimes: a tensor of an earlier step
 * ======================================================================================= */

/* The common bug: a tensor of the previous step used after tg_tape_reset, before the next
 * step made anything. */
static void test_stale_input_right_after_reset(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = leaf("x", 3);
    tg_tensor *y = tg_tensor_named(tg_mul(tape, x, x), "y");
    tg_tape_reset(tape);
    TG_EXPECT_FAIL(tg_add(tape, x, y), "tg_add: argument 'b', tensor (3,) 'y', was made before "
                                       "tg_tape_reset (generation 0, the tape is at 1)");
    tg_tape_free(tape);
    tg_tensor_free(x);
}

/* The ops of the extra families (shape, index, sort, sample, elementwise) check their
 * arguments like every other op. */
static void test_extra_ops_checked(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = leaf("x", 3);
    tg_tensor *y = tg_tensor_named(tg_mul(tape, x, x), "y");
    tg_index *ix = tg_tape_index_zeros(tape, TG_SHAPE(3));
    tg_tape_reset(tape);
    TG_EXPECT_FAIL(tg_unsqueeze(tape, y, 0), "tg_unsqueeze", "'y'", "made before tg_tape_reset");
    TG_EXPECT_FAIL(tg_stack(tape, (tg_tensor *[]){x, y}, 2, 0), "tg_stack", "xs[1]",
                   "made before tg_tape_reset");
    TG_EXPECT_FAIL(tg_gather(tape, x, 0, ix), "tg_gather", "index", "tg_tape_reset");
    TG_EXPECT_FAIL(tg_sort(NULL, x, 0, false, NULL), "tg_sort: argument 't' is NULL");
    TG_EXPECT_FAIL(tg_maximum(tape, x, NULL), "tg_maximum: argument 'b' is NULL");
    TG_EXPECT_FAIL(tg_clamp(tape, NULL, 0, 1), "tg_clamp: argument 'x' is NULL");
    TG_EXPECT_FAIL(tg_sample_logits(tape, NULL, 1, 0, NULL), "tg_sample_logits",
                   "argument 'logits' is NULL");
    TG_EXPECT_FAIL(tg_one_hot(tape, NULL, 3), "tg_one_hot: argument 'ix' is NULL");
    tg_tape_free(tape);
    tg_tensor_free(x);
}

/* The same after the next step has run many ops (more tensors than the first chunk of
 * headers holds): the old header is in the other pool, untouched. */
static void test_stale_input_after_next_step_ran(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = leaf("x", 3);
    tg_tensor *h = x;
    for (int i = 0; i < 5; i++) h = tg_tanh(tape, h);
    tg_tensor *y = tg_tensor_named(h, "h_prev");
    tg_tape_reset(tape);
    h = x;
    for (int i = 0; i < 300; i++) h = tg_add(tape, tg_mul_scalar(tape, h, 0.5), x);
    TG_EXPECT_FAIL(tg_mul(tape, h, y), "tg_mul", "argument 'b'", "'h_prev'",
                   "was made before tg_tape_reset", "generation 0, the tape is at 1");
    tg_tape_free(tape);
    tg_tensor_free(x);
}

/* An unnamed tensor is described by its shape; the argument names it. */
static void test_stale_unnamed_tensor(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *a = on_tape(tape, NULL, 4, 1);
    tg_tape_reset(tape);
    tg_tape_reset(tape);
    TG_EXPECT_FAIL(tg_exp(tape, a), "tg_exp: argument 'x', tensor (4,) <unnamed>, was made",
                   "generation 0, the tape is at 2");
    tg_tape_free(tape);
}

/* A reset with no tensor made in between keeps the previous step's headers (its pool is
 * empty): the tensor of two resets ago is still caught. */
static void test_stale_across_empty_resets(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *a = on_tape(tape, "a", 2, 1);
    for (int i = 0; i < 3; i++) tg_tape_reset(tape);
    on_tape(tape, "b", 2, 2); /* the next step makes tensors again */
    TG_EXPECT_FAIL(tg_neg(tape, a), "tg_neg", "'a'", "generation 0, the tape is at 3");
    tg_tape_free(tape);
}

static void test_stale_item(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = leaf("x", 3);
    tg_tensor *loss = tg_tensor_named(tg_sum(tape, x), "loss");
    assert_true(tg_item(loss) == 6);
    tg_tape_reset(tape);
    TG_EXPECT_FAIL(tg_item(loss), "tg_item: argument 't', tensor () 'loss', was made before "
                                  "tg_tape_reset (generation 0, the tape is at 1)");
    tg_tape_free(tape);
    tg_tensor_free(x);
}

/* The tensor functions of the tensor layer: fill, copy_from, clone, print, names. */
static void test_stale_tensor_functions(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *a = on_tape(tape, "a", 2, 1);
    tg_tape_reset(tape);
    TG_EXPECT_FAIL(tg_tensor_fill(a, 0), "tg_tensor_fill", "argument 't'", "'a'", "made before");
    TG_EXPECT_FAIL(tg_tensor_copy_from(a, (tg_real[]){1, 2}), "tg_tensor_copy_from",
                   "argument 'dst'", "made before");
    TG_EXPECT_FAIL(tg_tensor_clone(a), "tg_tensor_clone", "'a'", "made before");
    TG_EXPECT_FAIL(tg_tensor_print(a), "tg_tensor_print", "'a'", "made before");
    TG_EXPECT_FAIL(tg_tensor_set_name(a, "b"), "tg_tensor_set_name", "made before");
    TG_EXPECT_FAIL(tg_tensor_requires_grad(a, true), "tg_tensor_requires_grad", "made before");
    TG_EXPECT_FAIL(tg_tensor_size(a, 0), "tg_tensor_size", "made before");
    TG_EXPECT_FAIL(tg_tensor_retain_grad(a), "tg_tensor_retain_grad", "made before");
    tg_tape_free(tape);
}

/* backward from a loss of the previous step, before and after the next step's ops */
static void test_stale_backward(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = leaf("x", 3);
    tg_tensor *loss = tg_tensor_named(tg_sum(tape, tg_mul(tape, x, x)), "loss");
    tg_tape_reset(tape);
    TG_EXPECT_FAIL(tg_tape_backward(tape, loss), "tg_tape_backward: argument 'loss', tensor () "
                                                 "'loss', was made before tg_tape_reset");
    tg_tensor *now = tg_sum(tape, tg_mul(tape, x, x));
    TG_EXPECT_FAIL(tg_tape_backward(tape, loss), "tg_tape_backward", "'loss'", "made before");
    tg_tape_backward(tape, now); /* this step's loss is fine */
    tg_test_assert_close("dx", x->grad, (tg_real[]){2, 4, 6}, 3, 0, 0);
    tg_tape_free(tape);
    tg_tensor_free(x);
}

/* An index tensor of an earlier step (tg_max_dim's indices) */
static void test_stale_index(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *w = leaf("w", 6);
    tg_tensor *w2 = tg_reshape(tape, w, TG_SHAPE(3, 2));
    tg_index *ix = NULL;
    tg_max_dim(tape, w2, 1, false, &ix);
    tg_tape_reset(tape);
    TG_EXPECT_FAIL(tg_embedding(tape, tg_reshape(tape, w, TG_SHAPE(3, 2)), ix, TG_NO_PADDING),
                   "tg_embedding: argument 'ids', index tensor (3,), was made before "
                   "tg_tape_reset (generation 0, the tape is at 1)");
    tg_tape_free(tape);
    tg_tensor_free(w);
}

/* A view (reshape shares its input's data) gets a stamped header of its own. */
static void test_stale_view(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = leaf("x", 6);
    tg_tensor *v = tg_tensor_named(tg_reshape(tape, x, TG_SHAPE(2, 3)), "v");
    tg_tape_reset(tape);
    TG_EXPECT_FAIL(tg_sum_dim(tape, v, 0, false), "tg_sum_dim", "(2, 3) 'v'", "made before");
    tg_tape_free(tape);
    tg_tensor_free(x);
}

/* The fused RNN's outputs are views of its own buffers: stamped too. */
static void test_stale_rnn_output(void **state) {
    (void)state;
    tg_cell_weights w = cell_weights(TG_CELL_GRU, 2, 3);
    tg_tape *tape = tg_tape_new();
    tg_tensor *xs = tg_test_rand(5, -1, 1, TG_SHAPE(4, 1, 2));
    tg_rnn_result r = tg_rnn_sequence_fused(tape, TG_CELL_GRU, &w, xs, NULL, NULL, false);
    tg_tensor_set_name(r.h_n, "h_n");
    tg_tape_reset(tape);
    TG_EXPECT_FAIL(
        tg_cell_step_fused(tape, TG_CELL_GRU, &w, tg_select(tape, xs, 0, 0), r.h_n, NULL),
        "tg_cell_step_fused: argument 'h', tensor (1, 3) 'h_n', was made before");
    tg_tape_free(tape);
    tg_tensor_free(xs);
    cell_weights_free(&w);
}

/* The hidden state carried into the next batch: the classic truncated-BPTT mistake, and the
 * fix the message points to (a long-lived copy). */
static void test_stale_hidden_in_module(void **state) {
    (void)state;
    tg_rnn_options o = tg_rnn_defaults(2, 3);
    tg_gru *gru = tg_gru_new(o);
    tg_tape *tape = tg_tape_new();
    tg_tensor *xs = tg_test_rand(6, -1, 1, TG_SHAPE(4, 1, 2));
    tg_tensor *hidden = tg_tensor_named(tg_gru_forward(gru, tape, xs, NULL).h_n, "hidden");
    tg_tensor *kept = tg_tensor_clone(hidden);
    tg_tape_reset(tape);
    TG_EXPECT_FAIL(tg_gru_forward(gru, tape, xs, hidden), "tg_gru_forward: argument 'h0'",
                   "'hidden'", "was made before tg_tape_reset", "tg_tensor_clone");
    tg_gru_forward(gru, tape, xs, kept); /* the long-lived copy is fine */
    tg_tape_free(tape);
    tg_tensor_free(xs), tg_tensor_free(kept);
    tg_module_free(&gru->base.module);
}

static void test_stale_module_input(void **state) {
    (void)state;
    tg_linear_layer *fc = tg_linear_new(3, 2, true);
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = on_tape(tape, "features", 3, 1);
    tg_tape_reset(tape);
    TG_EXPECT_FAIL(tg_linear_forward(fc, tape, x), "tg_linear_forward: argument 'x'", "'features'",
                   "made before");
    tg_tape_free(tape);
    tg_module_free(&fc->module);
}

static void test_stale_concat_element(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *old = on_tape(tape, "old", 2, 1);
    tg_tape_reset(tape);
    tg_tensor *now = on_tape(tape, "now", 2, 1);
    TG_EXPECT_FAIL(tg_concat(tape, (tg_tensor *[]){now, old}, 2, 0),
                   "tg_concat: argument 'xs[1]', tensor (2,) 'old', was made before");
    tg_tape_free(tape);
}

/* The gate trace reads the tape's h_t after backward: after the reset they are gone. */
static void test_stale_gate_trace(void **state) {
    (void)state;
    tg_cell_weights w = cell_weights(TG_CELL_GRU, 2, 3);
    tg_tape *tape = tg_tape_new();
    tg_tensor *xs = tg_test_rand(7, -1, 1, TG_SHAPE(2, 1, 2));
    tg_gate_trace *tr = tg_gate_trace_new(TG_CELL_GRU, 2, 3, -1);
    tg_rnn_result r = tg_rnn_sequence_composite(tape, TG_CELL_GRU, &w, xs, NULL, NULL, false, NULL);
    tg_gate_trace_capture(tr, tape, NULL);
    tg_tape_backward(tape, tg_sum(tape, r.output));
    tg_tape_reset(tape);
    TG_EXPECT_FAIL(tg_gate_trace_read_grads(tr), "tg_gate_trace_read_grads: argument 'tr'", "'h_0'",
                   "was made before tg_tape_reset");
    tg_gate_trace_free(tr);
    tg_tape_free(tape);
    tg_tensor_free(xs);
    cell_weights_free(&w);
}

/* Tensors reach ops through modules, losses and models too: each entry names its argument. */
static void test_stale_loss_targets(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *logp = tg_tensor_zeros(TG_SHAPE(2, 3));
    tg_index *targets = tg_tape_index(tape, TG_SHAPE(2));
    targets->data[0] = 0, targets->data[1] = 1;
    tg_tape_reset(tape);
    TG_EXPECT_FAIL(tg_nll_loss(tape, logp, targets),
                   "tg_nll_loss: argument 'targets', index tensor (2,), was made before "
                   "tg_tape_reset");
    tg_tape_free(tape);
    tg_tensor_free(logp);
}

static void test_stale_loss_option_tensor(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *logits = tg_tensor_zeros(TG_SHAPE(2, 3)), *y = tg_tensor_ones(TG_SHAPE(2, 3));
    tg_loss_options o = tg_loss_defaults();
    o.pos_weight = on_tape(tape, "pos_weight", 3, 2);
    tg_tape_reset(tape);
    TG_EXPECT_FAIL(tg_bce_with_logits(tape, logits, y, &o),
                   "tg_bce_with_logits: argument 'opts->pos_weight', tensor (3,) 'pos_weight', "
                   "was made before");
    tg_tape_free(tape);
    tg_tensor_free(logits), tg_tensor_free(y);
}

static void test_stale_attention_query(void **state) {
    (void)state;
    tg_mha *mha = tg_mha_new(4, 2, 0, true, false);
    tg_tape *tape = tg_tape_new();
    tg_tensor *q = tg_tensor_named(tg_tape_tensor_zeros(tape, TG_SHAPE(2, 1, 4)), "q");
    tg_tape_reset(tape);
    TG_EXPECT_FAIL(tg_mha_forward(mha, tape, q, q, q, NULL, false),
                   "tg_mha_forward: argument 'query', tensor (2, 1, 4) 'q', was made before");
    tg_tape_free(tape);
    tg_module_free(&mha->module);
}

static void test_stale_transformer_memory(void **state) {
    (void)state;
    tg_transformer_options o = tg_transformer_defaults(4, 2);
    o.dim_feedforward = 8;
    tg_decoder_layer *dec = tg_decoder_layer_new(&o);
    tg_tape *tape = tg_tape_new();
    tg_tensor *memory = tg_tensor_named(tg_tape_tensor_zeros(tape, TG_SHAPE(3, 1, 4)), "memory");
    tg_tensor *tgt = tg_tensor_zeros(TG_SHAPE(2, 1, 4));
    tg_tape_reset(tape);
    TG_EXPECT_FAIL(tg_decoder_layer_forward(dec, tape, tgt, memory, NULL, NULL),
                   "tg_decoder_layer_forward: argument 'memory', tensor (3, 1, 4) 'memory'",
                   "made before");
    tg_tape_free(tape);
    tg_tensor_free(tgt);
    tg_module_free(&dec->module);
}

static void test_stale_model_tokens(void **state) {
    (void)state;
    tg_gru_classifier *m = tg_gru_classifier_new(5, 2, 3, 2);
    tg_tape *tape = tg_tape_new();
    tg_index *tokens = tg_tape_index(tape, TG_SHAPE(1, 2));
    tokens->data[0] = 1, tokens->data[1] = 2;
    tg_tape_reset(tape);
    TG_EXPECT_FAIL(tg_gru_classifier_forward(m, tape, tokens),
                   "tg_gru_classifier_forward: argument 'tokens', index tensor (1, 2), was made "
                   "before");
    tg_tape_free(tape);
    tg_module_free(&m->module);
}

/* detach is the fix for a hidden state carried across batches, and it must run before the
 * reset */
static void test_stale_detach(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *hidden = tg_tensor_named(tg_tape_tensor_zeros(tape, TG_SHAPE(1, 1, 3)), "hidden");
    tg_tape_reset(tape);
    TG_EXPECT_FAIL(tg_gru_lm_detach(NULL, hidden), "tg_gru_lm_detach: argument 'hidden'",
                   "'hidden'", "made before");
    tg_tape_free(tape);
}

static void test_stale_init(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *w = tg_tensor_named(tg_tape_tensor(tape, TG_SHAPE(2, 2)), "w");
    tg_tape_reset(tape);
    TG_EXPECT_FAIL(tg_init_uniform(w, 0, 1, NULL), "tg_init_uniform: argument 't'", "'w'",
                   "made before");
    TG_EXPECT_FAIL(tg_init_xavier_uniform(w, 1, NULL), "tg_init_xavier_uniform: argument 'w'",
                   "made before");
    tg_tape_free(tape);
}

/* A custom op that forgot its entry checks is still caught where it records its node. */
static void nothing_backward(tg_tape *tape, tg_node *node) { (void)tape, (void)node; }

static tg_tensor *unchecked_op(tg_tape *tape, tg_tensor *x) {
    tg_tensor *y = tg_tape_tensor(tape, 0, NULL);
    y->data[0] = 0;
    tg_tape_record(tape, "unchecked", nothing_backward, 1, &x, 1, &y);
    return y;
}

static void test_stale_caught_at_record(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *a = on_tape(tape, "a", 2, 1);
    tg_tape_reset(tape);
    TG_EXPECT_FAIL(unchecked_op(tape, a), "tg_tape_record: argument 'in[0] of op 'unchecked''",
                   "'a'", "was made before tg_tape_reset");
    tg_tape_free(tape);
}

/* Long-lived tensors belong to no tape: they pass on any tape, in any step. */
static void test_long_lived_pass_everywhere(void **state) {
    (void)state;
    tg_tape *a = tg_tape_new(), *b = tg_tape_new();
    tg_tensor *x = leaf("x", 3);
    for (int step = 0; step < 3; step++) {
        tg_tape_backward(a, tg_sum(a, tg_mul(a, x, x)));
        tg_tape_backward(b, tg_sum(b, x));
        tg_tape_reset(a);
        tg_tape_reset(b);
    }
    /* 3 steps of 2x, and 3 of 1 */
    tg_test_assert_close("dx", x->grad, (tg_real[]){9, 15, 21}, 3, 0, 0);
    assert_int_equal(tg_tape_generation(a), 3);
    tg_tape_free(a), tg_tape_free(b);
    tg_tensor_free(x);
}

/* Checking costs no malloc: the header pools keep their chunks, so from the third step on
 * (each pool has served one step) a loop makes no malloc call, however many tensors. */
static void test_no_malloc_per_step(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = leaf("x", 8);
    uint64_t mallocs = 0;
    for (int step = 0; step < 6; step++) {
        tg_tensor *h = x;
        for (int i = 0; i < 500; i++) h = tg_tanh(tape, h);
        tg_tape_backward(tape, tg_sum(tape, h));
        tg_tape_reset(tape);
        if (step == 1) mallocs = tg_tape_malloc_count(tape);
    }
    assert_int_equal(tg_tape_malloc_count(tape), mallocs);
    tg_tape_free(tape);
    tg_tensor_free(x);
}

/* =========================================================================================
 * Lifetimes: a tensor of another tape
 * ======================================================================================= */

static void test_other_tape(void **state) {
    (void)state;
    tg_tape *a = tg_tape_new(), *b = tg_tape_new();
    tg_tensor *x = leaf("x", 3);
    tg_tensor *y = tg_tensor_named(tg_mul(a, x, x), "y");
    TG_EXPECT_FAIL(tg_add(b, x, y), "tg_add: argument 'b', tensor (3,) 'y', was made on "
                                    "another tape");
    tg_tape_free(a), tg_tape_free(b);
    tg_tensor_free(x);
}

/* Reset or not, A's tensor is A's: the message says so rather than "before the reset". */
static void test_other_tape_after_its_reset(void **state) {
    (void)state;
    tg_tape *a = tg_tape_new(), *b = tg_tape_new();
    tg_tensor *y = on_tape(a, "y", 2, 1);
    tg_tape_reset(a);
    TG_EXPECT_FAIL(tg_sigmoid(b, y), "tg_sigmoid", "'y'", "was made on another tape");
    tg_tape_free(a), tg_tape_free(b);
}

/* A tensor of A never enters B's graph, so A may be reset and freed before B's backward:
 * B's graph refers to none of A's memory. */
static void test_other_tape_freed_before_backward(void **state) {
    (void)state;
    tg_tape *a = tg_tape_new(), *b = tg_tape_new();
    tg_tensor *x = leaf("x", 3);
    tg_tensor *from_a = tg_tensor_named(tg_mul_scalar(a, x, 2), "from_a");
    tg_tensor *z = tg_mul(b, x, x);
    TG_EXPECT_FAIL(tg_mul(b, z, from_a), "tg_mul", "'from_a'", "another tape");
    tg_tape_reset(a);
    tg_tape_free(a);
    tg_tape_backward(b, tg_sum(b, z));
    tg_test_assert_close("dx", x->grad, (tg_real[]){2, 4, 6}, 3, 0, 0);
    tg_tape_free(b);
    tg_tensor_free(x);
}

static void test_other_tape_index(void **state) {
    (void)state;
    tg_tape *a = tg_tape_new(), *b = tg_tape_new();
    tg_tensor *logits = tg_tensor_new(TG_SHAPE(2, 3));
    tg_index *targets = tg_tape_index(a, TG_SHAPE(2));
    targets->data[0] = 0, targets->data[1] = 2;
    TG_EXPECT_FAIL(tg_cross_entropy(b, logits, targets),
                   "tg_cross_entropy: argument 'targets', an index tensor, was made on another "
                   "tape");
    tg_tape_free(a), tg_tape_free(b);
    tg_tensor_free(logits);
}

/* Tensors inside option structs are inputs too. */
static void test_other_tape_option_tensors(void **state) {
    (void)state;
    tg_tape *a = tg_tape_new(), *b = tg_tape_new();
    tg_tensor *logits = tg_tensor_new(TG_SHAPE(2, 3));
    tg_index *targets = tg_index_from_array(TG_SHAPE(2), (int32_t[]){0, 2});
    tg_loss_options o = tg_loss_defaults();
    o.weight = on_tape(a, "class_weight", 3, 1);
    TG_EXPECT_FAIL(tg_cross_entropy_ex(b, logits, targets, &o),
                   "tg_cross_entropy_ex: argument 'opts->weight', tensor (3,) 'class_weight'",
                   "another tape");
    tg_tensor *q = tg_tensor_new(TG_SHAPE(2, 1, 4));
    const tg_mha_layout layout = {2, 2, {0, 0, 0}, false};
    const tg_mha_masks masks = {
        .attn_mask = tg_tensor_named(tg_tape_tensor_zeros(a, TG_SHAPE(2, 2)), "mask")};
    TG_EXPECT_FAIL(tg_mha_attention(b, q, q, q, &layout, &masks, 0),
                   "tg_mha_attention: argument 'masks->attn_mask'", "'mask'", "another tape");
    tg_tape_free(a), tg_tape_free(b);
    tg_tensor_free(logits), tg_tensor_free(q);
    tg_index_free(targets);
}

static void test_other_tape_module_input(void **state) {
    (void)state;
    tg_gru_cell *cell = tg_gru_cell_new(tg_cell_defaults(2, 3));
    tg_tape *a = tg_tape_new(), *b = tg_tape_new();
    tg_tensor *x = tg_tensor_named(tg_tape_tensor_zeros(a, TG_SHAPE(1, 2)), "x_a");
    TG_EXPECT_FAIL(tg_gru_cell_forward(cell, b, x, NULL),
                   "tg_gru_cell_forward: argument 'x', tensor (1, 2) 'x_a', was made on another "
                   "tape");
    tg_tape_free(a), tg_tape_free(b);
    tg_module_free(&cell->base.module);
}

static void test_other_tape_backward(void **state) {
    (void)state;
    tg_tape *a = tg_tape_new(), *b = tg_tape_new();
    tg_tensor *x = leaf("x", 2);
    tg_tensor *loss = tg_tensor_named(tg_sum(a, x), "loss_a");
    TG_EXPECT_FAIL(tg_tape_backward(b, loss), "tg_tape_backward: argument 'loss', tensor () "
                                              "'loss_a', was made on another tape");
    assert_null(x->grad);
    tg_tape_free(a), tg_tape_free(b);
    tg_tensor_free(x);
}

/* =========================================================================================
 * Backward twice
 * ======================================================================================= */

static void test_backward_twice_is_an_error(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = leaf("x", 3);
    tg_tensor *loss = tg_tensor_named(tg_sum(tape, tg_mul(tape, x, x)), "loss");
    tg_tape_backward(tape, loss);
    TG_EXPECT_FAIL(tg_tape_backward(tape, loss),
                   "tg_tape_backward: the graph of () 'loss' was already back-propagated "
                   "through",
                   "node #1 'sum'", "released the graph", "retain_graph",
                   "tg_tape_backward_ex(tape, out, &(tg_backward_options){.retain_graph = true})");
    /* the failed backward added nothing */
    tg_test_assert_close("dx", x->grad, (tg_real[]){2, 4, 6}, 3, 0, 0);
    tg_tape_free(tape);
    tg_tensor_free(x);
}

/* A second backward that reaches a released node through another output is caught too. */
static void test_backward_twice_through_shared_part(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = leaf("x", 3);
    tg_tensor *h = tg_tensor_named(tg_tanh(tape, x), "h");
    tg_tape_backward(tape, tg_sum(tape, h));
    tg_tensor *other = tg_mean(tape, h);
    TG_EXPECT_FAIL(tg_tape_backward_with(tape, other, (tg_real[]){1}), "tg_tape_backward_with",
                   "node #0 'tanh'", "already back-propagated", "retain_graph");
    tg_tape_free(tape);
    tg_tensor_free(x);
}

/* With retain_graph the second backward adds the same gradients again to the leaves
 * (PyTorch); a retained intermediate holds the last backward's. */
static void test_retain_graph_doubles(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = leaf("x", 3);
    tg_tensor *y = tg_tensor_named(tg_mul(tape, x, x), "y");
    tg_tensor_retain_grad(y);
    tg_tensor *loss = tg_sum(tape, tg_mul_scalar(tape, y, 3));
    const tg_backward_options keep = {.retain_graph = true};
    tg_tape_backward_ex(tape, loss, &keep);
    tg_test_assert_close("dx once", x->grad, (tg_real[]){6, 12, 18}, 3, 0, 0);
    tg_test_assert_close("dy once", y->grad, (tg_real[]){3, 3, 3}, 3, 0, 0);
    tg_tape_backward(tape, loss); /* the last one releases */
    tg_test_assert_close("dx twice", x->grad, (tg_real[]){12, 24, 36}, 3, 0, 0);
    tg_test_assert_close("dy, the last", y->grad, (tg_real[]){3, 3, 3}, 3, 0, 0);
    TG_EXPECT_FAIL(tg_tape_backward(tape, loss), "tg_tape_backward", "already back-propagated");
    tg_tape_free(tape);
    tg_tensor_free(x);
}

/* Retained through a fused recurrent node and a seed: the doubled gradient, element for
 * element. */
static void test_retain_graph_doubles_fused_rnn(void **state) {
    (void)state;
    tg_cell_weights w = cell_weights(TG_CELL_LSTM, 2, 3);
    tg_tape *tape = tg_tape_new();
    tg_tensor *xs = tg_test_rand(8, -1, 1, TG_SHAPE(3, 2, 2));
    tg_rnn_result r = tg_rnn_sequence_fused(tape, TG_CELL_LSTM, &w, xs, NULL, NULL, false);
    tg_tensor *seed = tg_test_rand(9, -1, 1, TG_SHAPE(3, 2, 3));
    tg_tape_backward_ex(tape, r.output,
                        &(tg_backward_options){.seed = seed->data, .retain_graph = true});
    tg_tensor *once = tg_tensor_new(TG_SHAPE(12, 3));
    memcpy(once->data, w.w_hh->grad, 36 * sizeof(tg_real));
    tg_tape_backward_with(tape, r.output, seed->data);
    for (int i = 0; i < 36; i++) once->data[i] *= 2;
    tg_test_assert_close("dW_hh twice", w.w_hh->grad, once->data, 36, 1e-6, 1e-5);
    tg_tape_free(tape);
    tg_tensor_free(xs), tg_tensor_free(seed), tg_tensor_free(once);
    cell_weights_free(&w);
}

/* Two graphs on one tape that share only a leaf are not "the same graph". */
static void test_separate_graphs_on_one_tape(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = leaf("x", 3);
    tg_tensor *a = tg_sum(tape, tg_mul_scalar(tape, x, 2));
    tg_tensor *b = tg_sum(tape, tg_mul_scalar(tape, x, 5));
    tg_tape_backward(tape, b);
    tg_tape_backward(tape, a);
    tg_test_assert_close("dx", x->grad, (tg_real[]){7, 7, 7}, 3, 0, 0);
    tg_tape_free(tape);
    tg_tensor_free(x);
}

static void test_backward_ex_defaults_and_seed(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = leaf("x", 3);
    tg_tape_backward_ex(tape, tg_sum(tape, x), NULL); /* NULL: as tg_tape_backward */
    tg_test_assert_close("dx", x->grad, (tg_real[]){1, 1, 1}, 3, 0, 0);
    tg_tensor *y = tg_tensor_named(tg_mul_scalar(tape, x, 2), "y");
    TG_EXPECT_FAIL(tg_tape_backward_ex(tape, y, NULL),
                   "tg_tape_backward_ex: out (3,) 'y' has 3 "
                   "elements",
                   "seed");
    tg_tape_backward_ex(tape, y, &(tg_backward_options){.seed = (tg_real[]){1, 0, -1}});
    tg_test_assert_close("dx", x->grad, (tg_real[]){3, 1, -1}, 3, 0, 0);
    tg_tape_free(tape);
    tg_tensor_free(x);
}

/* =========================================================================================
 * NULL arguments, family by family
 * ======================================================================================= */

/* ---- tape.h ---- */
static void test_null_tape_functions(void **state) {
    (void)state;
    TG_EXPECT_FAIL(tg_tape_reset(NULL), "tg_tape_reset: argument 'tape' is NULL");
    TG_EXPECT_FAIL(tg_tape_set_recording(NULL, true), "tg_tape_set_recording", "'tape' is NULL");
    TG_EXPECT_FAIL(tg_tape_node_count(NULL), "tg_tape_node_count", "'tape' is NULL");
    TG_EXPECT_FAIL(tg_tape_tensor(NULL, TG_SHAPE(2)), "tg_tape_tensor: argument 'tape' is NULL");
    tg_tape *tape = tg_tape_new();
    TG_EXPECT_FAIL(tg_tape_print(tape, NULL), "tg_tape_print: argument 'f' is NULL");
    TG_EXPECT_FAIL(tg_tape_tensor(tape, 2, NULL), "tg_tape_tensor: argument 'shape' is NULL");
    TG_EXPECT_FAIL(tg_tape_tensor_view(tape, NULL, TG_SHAPE(2)), "tg_tape_tensor_view",
                   "'data' is NULL");
    assert_int_equal(tg_tape_write_dot(tape, NULL), TG_ERR_ARGUMENT);
    assert_string_equal(tg_error_message(), "tg_tape_write_dot: argument 'path' is NULL");
    tg_tape_free(tape);
    tg_tape_free(NULL); /* fine */
}

static void test_null_backward(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = leaf("x", 1);
    TG_EXPECT_FAIL(tg_tape_backward(tape, NULL), "tg_tape_backward: argument 'loss' is NULL");
    TG_EXPECT_FAIL(tg_tape_backward(NULL, x), "tg_tape_backward: argument 'tape' is NULL");
    TG_EXPECT_FAIL(tg_tape_backward_with(tape, x, NULL),
                   "tg_tape_backward_with: argument 'seed' is NULL");
    TG_EXPECT_FAIL(tg_tape_backward_ex(tape, NULL, NULL),
                   "tg_tape_backward_ex: argument 'out' is NULL");
    TG_EXPECT_FAIL(tg_tensor_zero_grad(NULL), "tg_tensor_zero_grad: argument 't' is NULL");
    tg_tape_free(tape);
    tg_tensor_free(x);
}

static void test_null_op_implementer_functions(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *y = tg_tape_tensor(tape, 0, NULL);
    TG_EXPECT_FAIL(tg_tape_record(tape, "op", NULL, 1, &y, 1, &y),
                   "tg_tape_record: argument 'backward' is NULL");
    TG_EXPECT_FAIL(tg_tape_record(tape, "op", nothing_backward, 1, &y, 1, (tg_tensor *[]){NULL}),
                   "tg_tape_record: output 0 of op 'op' is NULL");
    TG_EXPECT_FAIL(tg_tape_grad_move(tape, NULL, y), "tg_tape_grad_move: argument 'to' is NULL");
    TG_EXPECT_FAIL(tg_tape_grad(NULL, y), "tg_tape_grad: argument 'tape' is NULL");
    assert_null(tg_tape_grad(tape, NULL)); /* an absent input needs no gradient */
    TG_EXPECT_FAIL(tg_tape_check_input(tape, "my_op", "weight", NULL),
                   "my_op: argument 'weight' is NULL");
    TG_EXPECT_FAIL(tg_anomaly_check_forward(tape, NULL, 0, NULL, 0, NULL),
                   "tg_anomaly_check_forward: argument 'op' is NULL");
    TG_EXPECT_FAIL(tg_anomaly_check_backward(tape, "tg_tape_backward", NULL, 0),
                   "tg_anomaly_check_backward: argument 'node' is NULL");
    tg_tape_free(tape);
}

/* ---- ops.h, one case per family ---- */
static void test_null_elementwise(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = leaf("x", 2);
    TG_EXPECT_FAIL(tg_add(tape, NULL, x), "tg_add: argument 'a' is NULL");
    TG_EXPECT_FAIL(tg_div(tape, x, NULL), "tg_div: argument 'b' is NULL");
    TG_EXPECT_FAIL(tg_add(NULL, x, x), "tg_add: argument 't' is NULL");
    TG_EXPECT_FAIL(tg_relu(tape, NULL), "tg_relu: argument 'x' is NULL");
    TG_EXPECT_FAIL(tg_pow_scalar(tape, NULL, 2), "tg_pow_scalar: argument 'x' is NULL");
    TG_EXPECT_FAIL(tg_gelu(tape, NULL, TG_GELU_TANH), "tg_gelu: argument 'x' is NULL");
    TG_EXPECT_FAIL(tg_dropout(tape, NULL, 0.5, true, NULL), "tg_dropout: argument 'x' is NULL");
    TG_EXPECT_FAIL(tg_masked_fill(tape, x, NULL, 0), "tg_masked_fill: argument 'mask' is NULL");
    TG_EXPECT_FAIL(tg_where(tape, NULL, x, x), "tg_where: argument 'cond' is NULL");
    /* rng NULL is the default generator */
    assert_non_null(tg_dropout(tape, x, 0.5, true, NULL));
    tg_tape_free(tape);
    tg_tensor_free(x);
}

static void test_null_reductions_and_softmax(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = leaf("x", 4);
    TG_EXPECT_FAIL(tg_sum(tape, NULL), "tg_sum: argument 'x' is NULL");
    TG_EXPECT_FAIL(tg_mean_dim(tape, NULL, 0, false), "tg_mean_dim: argument 'x' is NULL");
    TG_EXPECT_FAIL(tg_max_dim(NULL, x, 0, false, NULL), "tg_max_dim: argument 't' is NULL");
    TG_EXPECT_FAIL(tg_log_softmax(tape, NULL, -1), "tg_log_softmax: argument 'x' is NULL");
    /* indices NULL: not wanted */
    assert_true(tg_item(tg_max_dim(tape, x, 0, false, NULL)) == 4);
    tg_tape_free(tape);
    tg_tensor_free(x);
}

static void test_null_matmul_and_linear(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_ones(TG_SHAPE(2, 3)), *w = tg_tensor_ones(TG_SHAPE(4, 3));
    TG_EXPECT_FAIL(tg_matmul(tape, x, NULL), "tg_matmul: argument 'b' is NULL");
    TG_EXPECT_FAIL(tg_matmul_t(tape, NULL, x, false, true), "tg_matmul_t: argument 'a' is NULL");
    TG_EXPECT_FAIL(tg_linear(tape, x, NULL, NULL), "tg_linear: argument 'weight' is NULL");
    /* bias NULL: no bias */
    assert_true(tg_linear(tape, x, w, NULL)->data[0] == 3);
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(w);
}

static void test_null_shape_ops(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_ones(TG_SHAPE(2, 3));
    TG_EXPECT_FAIL(tg_reshape(tape, x, 2, NULL), "tg_reshape: argument 'shape' is NULL");
    TG_EXPECT_FAIL(tg_permute(tape, x, NULL), "tg_permute: argument 'perm' is NULL");
    TG_EXPECT_FAIL(tg_transpose(tape, NULL, 0, 1), "tg_transpose: argument 'x' is NULL");
    TG_EXPECT_FAIL(tg_concat(tape, NULL, 2, 0), "tg_concat: argument 'xs' is NULL");
    TG_EXPECT_FAIL(tg_concat(tape, (tg_tensor *[]){x, NULL}, 2, 0),
                   "tg_concat: argument 'xs[1]' is NULL");
    TG_EXPECT_FAIL(tg_split(tape, x, 1, 0, NULL, 2), "tg_split: argument 'out' is NULL");
    TG_EXPECT_FAIL(tg_slice(tape, NULL, 0, 0, 1), "tg_slice: argument 'x' is NULL");
    TG_EXPECT_FAIL(tg_select(tape, NULL, 0, 0), "tg_select: argument 'x' is NULL");
    tg_tape_free(tape);
    tg_tensor_free(x);
}

static void test_null_embedding_and_norm(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *w = tg_tensor_ones(TG_SHAPE(4, 2));
    TG_EXPECT_FAIL(tg_embedding(tape, w, NULL, TG_NO_PADDING),
                   "tg_embedding: argument 'ids' is NULL");
    TG_EXPECT_FAIL(tg_embedding(tape, NULL, NULL, TG_NO_PADDING),
                   "tg_embedding: argument 'weight' is NULL");
    TG_EXPECT_FAIL(tg_layer_norm(tape, NULL, 1, NULL, NULL, 1e-5),
                   "tg_layer_norm: argument 'x' is NULL");
    /* weight and bias NULL: no affine */
    assert_non_null(tg_layer_norm(tape, w, 1, NULL, NULL, 1e-5));
    tg_tape_free(tape);
    tg_tensor_free(w);
}

static void test_null_losses(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *logits = tg_tensor_ones(TG_SHAPE(2, 3));
    tg_index *targets = tg_index_from_array(TG_SHAPE(2), (int32_t[]){0, 1});
    TG_EXPECT_FAIL(tg_cross_entropy(tape, logits, NULL),
                   "tg_cross_entropy: argument 'targets' is NULL");
    TG_EXPECT_FAIL(tg_nll_loss(tape, NULL, targets), "tg_nll_loss: argument 'log_probs' is NULL");
    TG_EXPECT_FAIL(tg_nll_loss_ex(NULL, logits, targets, NULL),
                   "tg_nll_loss_ex: argument 't' is NULL");
    TG_EXPECT_FAIL(tg_mse_loss(tape, logits, NULL, TG_REDUCTION_MEAN),
                   "tg_mse_loss: argument 'target' is NULL");
    TG_EXPECT_FAIL(tg_bce_with_logits(tape, NULL, logits, NULL),
                   "tg_bce_with_logits: argument 'logits' is NULL");
    /* opts NULL: PyTorch's defaults */
    assert_non_null(tg_cross_entropy_ex(tape, logits, targets, NULL));
    tg_tape_free(tape);
    tg_tensor_free(logits);
    tg_index_free(targets);
}

/* ---- attention_ops.h ---- */
static void test_null_attention_ops(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *q = tg_tensor_ones(TG_SHAPE(2, 1, 4));
    TG_EXPECT_FAIL(tg_mha_attention(tape, q, q, q, NULL, NULL, 0),
                   "tg_mha_attention: argument 'layout' is NULL");
    TG_EXPECT_FAIL(tg_mha_attention(tape, q, NULL, q, NULL, NULL, 0),
                   "tg_mha_attention: argument 'k' is NULL");
    TG_EXPECT_FAIL(tg_mha_masks_check(NULL, NULL, 1, 1, 1, 1),
                   "tg_mha_masks_check: argument 'op' is NULL");
    tg_tensor *enc = tg_tensor_ones(TG_SHAPE(1, 2, 3)), *proj = tg_tensor_ones(TG_SHAPE(1, 2, 4));
    tg_tensor *v = tg_tensor_ones(TG_SHAPE(4));
    TG_EXPECT_FAIL(tg_additive_attention_core(tape, enc, proj, NULL, v, NULL),
                   "tg_additive_attention_core: argument 'u' is NULL");
    TG_EXPECT_FAIL(tg_dot_attention(tape, enc, NULL, NULL),
                   "tg_dot_attention: argument 'value' is NULL");
    /* key NULL: the value; masks NULL: none */
    assert_non_null(tg_dot_attention(tape, enc, enc, NULL).context);
    const tg_mha_layout layout = {2, 2, {0, 0, 0}, false};
    assert_non_null(tg_mha_attention(tape, q, q, q, &layout, NULL, 0));
    tg_tape_free(tape);
    tg_tensor_free(q), tg_tensor_free(enc), tg_tensor_free(proj), tg_tensor_free(v);
}

/* ---- rnn_ops.h ---- */
static void test_null_rnn_ops(void **state) {
    (void)state;
    tg_cell_weights w = cell_weights(TG_CELL_GRU, 2, 3);
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_ones(TG_SHAPE(1, 2)), *xs = tg_tensor_ones(TG_SHAPE(2, 1, 2));
    TG_EXPECT_FAIL(tg_cell_step_fused(tape, TG_CELL_GRU, NULL, x, NULL, NULL),
                   "tg_cell_step_fused: argument 'w' is NULL");
    TG_EXPECT_FAIL(tg_cell_step_fused(tape, TG_CELL_GRU, &w, NULL, NULL, NULL),
                   "tg_cell_step_fused: argument 'x' is NULL");
    tg_cell_weights no_hh = {w.w_ih, NULL, NULL, NULL, NULL};
    TG_EXPECT_FAIL(
        tg_rnn_sequence_composite(tape, TG_CELL_GRU, &no_hh, xs, NULL, NULL, false, NULL),
        "tg_rnn_sequence_composite: argument 'w->w_hh' is NULL");
    TG_EXPECT_FAIL(tg_rnn_sequence_fused(NULL, TG_CELL_GRU, &w, xs, NULL, NULL, false),
                   "tg_rnn_sequence_fused: argument 't' is NULL");
    TG_EXPECT_FAIL(tg_rnn_find_named(tape, NULL), "tg_rnn_find_named: argument 'name' is NULL");
    /* h NULL: zeros; biases NULL: none */
    tg_cell_weights no_bias = {w.w_ih, w.w_hh, NULL, NULL, NULL};
    assert_non_null(tg_cell_step_composite(tape, TG_CELL_GRU, &no_bias, x, NULL, NULL, "0").h);
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(xs);
    cell_weights_free(&w);
}

/* ---- tensor.h ---- */
static void test_null_tensor_creation(void **state) {
    (void)state;
    TG_EXPECT_FAIL(tg_tensor_new(2, NULL), "tg_tensor_new: argument 'shape' is NULL");
    TG_EXPECT_FAIL(tg_tensor_ones(1, NULL), "tg_tensor_ones: argument 'shape' is NULL");
    TG_EXPECT_FAIL(tg_tensor_from_array(TG_SHAPE(2), NULL),
                   "tg_tensor_from_array: argument 'values' is NULL");
    TG_EXPECT_FAIL(tg_tensor_clone(NULL), "tg_tensor_clone: argument 't' is NULL");
    TG_EXPECT_FAIL(tg_index_from_array(TG_SHAPE(2), NULL),
                   "tg_index_from_array: argument 'values' is NULL");
    TG_EXPECT_FAIL(tg_index_new(1, NULL), "tg_index_new: argument 'shape' is NULL");
    /* a 0-d tensor needs no shape, an empty one no values */
    tg_tensor *s = tg_tensor_new(0, NULL), *e = tg_tensor_from_array(TG_SHAPE(0), NULL);
    tg_tensor_free(s), tg_tensor_free(e);
    tg_tensor_free(NULL), tg_index_free(NULL); /* fine */
}

static void test_null_tensor_access(void **state) {
    (void)state;
    tg_tensor *t = tg_tensor_ones(TG_SHAPE(2));
    char buf[64];
    TG_EXPECT_FAIL(tg_item(NULL), "tg_item: argument 't' is NULL");
    TG_EXPECT_FAIL(tg_tensor_fill(NULL, 1), "tg_tensor_fill: argument 't' is NULL");
    TG_EXPECT_FAIL(tg_tensor_copy_from(t, NULL), "tg_tensor_copy_from: argument 'values' is NULL");
    TG_EXPECT_FAIL(tg_tensor_fprint(NULL, t), "tg_tensor_fprint: argument 'f' is NULL");
    TG_EXPECT_FAIL(tg_tensor_describe(t, NULL, 0), "tg_tensor_describe: argument 'buf' is NULL");
    TG_EXPECT_FAIL(tg_shape_equal(t, NULL), "tg_shape_equal: argument 'b' is NULL");
    TG_EXPECT_FAIL(tg_tensor_size(NULL, 0), "tg_tensor_size: argument 't' is NULL");
    TG_EXPECT_FAIL(tg_dim_normalize("my_op", NULL, 0), "my_op: argument 'tensor' is NULL");
    TG_EXPECT_FAIL(tg_shape_format(2, NULL, buf, sizeof buf),
                   "tg_shape_format: argument 'shape' is NULL");
    TG_EXPECT_FAIL(tg_tensor_named(NULL, "x"), "tg_tensor_named: argument 't' is NULL");
    /* name NULL: no name */
    tg_tensor_set_name(tg_tensor_named(t, "x"), NULL);
    assert_string_equal(t->name, "");
    tg_tensor_free(t);
}

/* ---- arena.h, broadcast.h, rng.h, kernels.h ---- */
static void test_null_arena(void **state) {
    (void)state;
    TG_EXPECT_FAIL(tg_arena_alloc(NULL, 8), "tg_arena_alloc: argument 'arena' is NULL");
    TG_EXPECT_FAIL(tg_arena_reset(NULL), "tg_arena_reset: argument 'arena' is NULL");
    TG_EXPECT_FAIL(tg_arena_generation(NULL), "tg_arena_generation: argument 'arena' is NULL");
    tg_arena_free(NULL); /* fine */
    tg_arena *a = tg_arena_new(0);
    assert_int_equal(tg_arena_generation(a), 0);
    tg_arena_reset(a);
    assert_int_equal(tg_arena_generation(a), 1);
    tg_arena_free(a);
}

static void test_null_broadcast(void **state) {
    (void)state;
    int64_t out[TG_MAX_DIMS];
    tg_tensor *t = tg_tensor_ones(TG_SHAPE(2));
    TG_EXPECT_FAIL(tg_broadcast_tensors("my_op", 2, NULL, out),
                   "tg_broadcast_tensors: argument 'ts' is NULL");
    TG_EXPECT_FAIL(tg_broadcast_tensors("my_op", 2, (const tg_tensor *[]){t, NULL}, out),
                   "my_op: operand 1 of the broadcast is NULL");
    TG_EXPECT_FAIL(
        tg_bcast_init(NULL, 1, (int64_t[]){2}, 1, (int[]){1}, (const int64_t *[]){(int64_t[]){2}}),
        "tg_bcast_init: argument 'p' is NULL");
    TG_EXPECT_FAIL(tg_broadcast_sum_to(NULL, 1, (int64_t[]){2}, t->data, 1, (int64_t[]){2}, 1),
                   "tg_broadcast_sum_to: argument 'dx' is NULL");
    tg_tensor_free(t);
}

static void test_null_rng_and_kernels(void **state) {
    (void)state;
    tg_real c[4] = {0};
    TG_EXPECT_FAIL(tg_rng_seed(NULL, 1), "tg_rng_seed: argument 'rng' is NULL");
    TG_EXPECT_FAIL(tg_rng_uniform01(NULL), "tg_rng_uniform01: argument 'rng' is NULL");
    TG_EXPECT_FAIL(tg_init_normal(NULL, 0, 1, NULL), "tg_init_normal: argument 't' is NULL");
    TG_EXPECT_FAIL(tg_gemm(false, false, 2, 2, 2, 1, NULL, 2, c, 2, 0, c, 2),
                   "tg_gemm: argument 'a' is NULL");
    TG_EXPECT_FAIL(tg_gemm(false, false, 2, 2, 2, 1, c, 2, c, 2, 0, NULL, 2),
                   "tg_gemm: argument 'c' is NULL");
    TG_EXPECT_FAIL(tg_parallel_for(4, 1, NULL, NULL), "tg_parallel_for: argument 'body' is NULL");
    /* an empty product reads nothing */
    tg_gemm(false, false, 0, 2, 2, 1, NULL, 2, NULL, 2, 0, NULL, 2);
}

/* ---- safetensors.h: status, not a stop ---- */
static void test_null_safetensors(void **state) {
    (void)state;
    assert_int_equal(tg_safetensors_read("x.safetensors", NULL), TG_ERR_ARGUMENT);
    assert_non_null(strstr(tg_error_message(), "tg_safetensors_read"));
    assert_non_null(strstr(tg_error_message(), "out"));
    tg_tensor *out = NULL;
    assert_int_equal(tg_st_entry_to_tensor(NULL, &out), TG_ERR_ARGUMENT);
    assert_non_null(strstr(tg_error_message(), "tg_st_entry_to_tensor"));
    TG_EXPECT_FAIL(tg_safetensors_find(NULL, "w"), "tg_safetensors_find: argument 'st' is NULL");
    TG_EXPECT_FAIL(tg_safetensors_meta(NULL, "k"), "tg_safetensors_meta: argument 'st' is NULL");
    tg_safetensors_free(NULL); /* fine */
}

/* ---- params.h ---- */
static void test_null_params(void **state) {
    (void)state;
    tg_params *p = tg_params_new();
    tg_tensor *w = tg_tensor_ones(TG_SHAPE(2));
    TG_EXPECT_FAIL(tg_params_add(NULL, "w", w), "tg_params_add: argument 'params' is NULL");
    TG_EXPECT_FAIL(tg_params_add(p, "w", NULL), "tg_params_add: argument 't' is NULL");
    TG_EXPECT_FAIL(tg_params_find(p, NULL), "tg_params_find: argument 'name' is NULL");
    TG_EXPECT_FAIL(tg_params_extend(p, "m", NULL), "tg_params_extend: argument 'child' is NULL");
    TG_EXPECT_FAIL(tg_params_zero_grad(NULL), "tg_params_zero_grad: argument 'params' is NULL");
    TG_EXPECT_FAIL(tg_params_numel(NULL), "tg_params_numel: argument 'params' is NULL");
    assert_int_equal(tg_params_save(p, NULL), TG_ERR_ARGUMENT);
    assert_string_equal(tg_error_message(), "tg_params_save: argument 'path' is NULL");
    assert_int_equal(tg_params_load(NULL, "x.safetensors", false), TG_ERR_ARGUMENT);
    assert_string_equal(tg_error_message(), "tg_params_load: argument 'params' is NULL");
    tg_params_free(p);
    tg_params_free(NULL); /* fine */
    tg_tensor_free(w);
}

/* ---- nn.h ---- */
static void test_null_nn_modules(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_linear_layer *fc = tg_linear_new(3, 2, true);
    tg_embedding_layer *emb = tg_embedding_new(5, 2, TG_NO_PADDING);
    tg_tensor *x = tg_tensor_ones(TG_SHAPE(3));
    TG_EXPECT_FAIL(tg_linear_forward(NULL, tape, x), "tg_linear_forward: argument 'm' is NULL");
    TG_EXPECT_FAIL(tg_linear_forward(fc, NULL, x), "tg_linear_forward: argument 't' is NULL");
    TG_EXPECT_FAIL(tg_linear_forward(fc, tape, NULL), "tg_linear_forward: argument 'x' is NULL");
    TG_EXPECT_FAIL(tg_embedding_forward(emb, tape, NULL),
                   "tg_embedding_forward: argument 'ids' is NULL");
    TG_EXPECT_FAIL(tg_layernorm_new(1, NULL, 1e-5, true),
                   "tg_layernorm_new: argument 'normalized_shape' is NULL");
    TG_EXPECT_FAIL(tg_dropout_forward(NULL, tape, x), "tg_dropout_forward: argument 'm' is NULL");
    TG_EXPECT_FAIL(tg_init_kaiming_uniform(NULL, 0, NULL),
                   "tg_init_kaiming_uniform: argument 'w' is NULL");
    tg_module_free(NULL); /* fine */
    tg_module_free(&fc->module), tg_module_free(&emb->module);
    tg_tensor_free(x);
    tg_tape_free(tape);
}

/* ---- rnn.h ---- */
static void test_null_recurrent_modules(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_gru *gru = tg_gru_new(tg_rnn_defaults(2, 3));
    tg_lstm *lstm = tg_lstm_new(tg_rnn_defaults(2, 3));
    tg_gru_cell *cell = tg_gru_cell_new(tg_cell_defaults(2, 3));
    tg_tensor *xs = tg_tensor_ones(TG_SHAPE(2, 1, 2)), *x = tg_tensor_ones(TG_SHAPE(1, 2));
    TG_EXPECT_FAIL(tg_gru_forward(NULL, tape, xs, NULL), "tg_gru_forward: argument 'm' is NULL");
    TG_EXPECT_FAIL(tg_lstm_forward(lstm, tape, NULL, NULL, NULL),
                   "tg_lstm_forward: argument 'x' is NULL");
    TG_EXPECT_FAIL(tg_recurrent_forward(&gru->base, NULL, xs, NULL, NULL),
                   "tg_recurrent_forward: argument 't' is NULL");
    TG_EXPECT_FAIL(tg_gru_cell_forward(cell, NULL, x, NULL),
                   "tg_gru_cell_forward: argument 't' is NULL");
    TG_EXPECT_FAIL(tg_cell_forward(NULL, tape, x, NULL, NULL),
                   "tg_cell_forward: argument 'm' is NULL");
    TG_EXPECT_FAIL(tg_module_params(NULL), "tg_module_params: argument 'm' is NULL");
    TG_EXPECT_FAIL(tg_module_train(NULL, true), "tg_module_train: argument 'm' is NULL");
    /* h0, c0 NULL: zeros */
    assert_non_null(tg_lstm_forward(lstm, tape, xs, NULL, NULL).c_n);
    tg_module_free(NULL); /* fine */
    tg_module_free(&gru->base.module), tg_module_free(&lstm->base.module);
    tg_module_free(&cell->base.module);
    tg_tensor_free(xs), tg_tensor_free(x);
    tg_tape_free(tape);
}

/* ---- attention.h ---- */
static void test_null_attention_modules(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_mha *mha = tg_mha_new(4, 2, 0, true, false);
    tg_additive_attention *add = tg_additive_attention_new(3, 2, 4);
    tg_tensor *q = tg_tensor_ones(TG_SHAPE(2, 1, 4)), *enc = tg_tensor_ones(TG_SHAPE(1, 2, 3));
    TG_EXPECT_FAIL(tg_mha_forward(mha, tape, NULL, q, q, NULL, false),
                   "tg_mha_forward: argument 'query' is NULL");
    TG_EXPECT_FAIL(tg_mha_forward(NULL, tape, q, q, q, NULL, false),
                   "tg_mha_forward: argument 'm' is NULL");
    TG_EXPECT_FAIL(tg_additive_attention_forward(add, tape, enc, NULL, NULL, NULL),
                   "tg_additive_attention_forward: argument 's' is NULL");
    TG_EXPECT_FAIL(tg_additive_attention_project(add, tape, NULL),
                   "tg_additive_attention_project: argument 'enc' is NULL");
    /* masks NULL, enc_proj NULL, source_mask NULL: none, computed, none */
    assert_non_null(tg_mha_forward(mha, tape, q, q, q, NULL, true).weights);
    tg_tensor *s = tg_tensor_ones(TG_SHAPE(1, 2));
    assert_non_null(tg_additive_attention_forward(add, tape, enc, NULL, s, NULL).context);
    tg_module_free(NULL); /* fine */
    tg_module_free(&mha->module), tg_module_free(&add->module);
    tg_tensor_free(q), tg_tensor_free(enc), tg_tensor_free(s);
    tg_tape_free(tape);
}

/* Each MultiheadAttention option's bad input names the function, the shapes and the tensor. */
static void test_bad_mha_options(void **state) {
    (void)state;
    TG_EXPECT_FAIL(tg_mha_new_with(NULL), "tg_mha_new_with: argument 'opts' is NULL");
    tg_mha_options o = tg_mha_defaults(4, 2);
    o.vdim = -5;
    TG_EXPECT_FAIL(tg_mha_new_with(&o), "tg_mha_new_with: kdim (0) and vdim (-5) must be positive");
    o.kdim = 3, o.vdim = 5, o.add_bias_kv = o.add_zero_attn = true;
    tg_mha *m = tg_mha_new_with(&o);
    tg_tape *tape = tg_tape_new();
    tg_tensor *q = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(3, 2, 4)), "q");
    tg_tensor *k = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(4, 2, 3)), "k");
    tg_tensor *v = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(4, 2, 5)), "v");
    tg_tensor *x = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(4, 2, 4)), "x"); /* embed_dim wide */
    /* kdim, vdim: a key or value of embed_dim features */
    TG_EXPECT_FAIL(tg_mha_forward(m, tape, q, x, v, NULL, false),
                   "tg_mha_forward: key (4, 2, 4) 'x' must be 3-D (S, N, kdim) with last dim kdim 3");
    TG_EXPECT_FAIL(
        tg_mha_forward(m, tape, q, k, x, NULL, false),
        "tg_mha_forward: value (4, 2, 4) 'x' must be 3-D (S, N, vdim) with last dim vdim 5");
    /* add_bias_kv, add_zero_attn: masks are for the S keys passed in (the module pads them);
     * masks already widened to S + 2 are refused */
    tg_tensor *am = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(3, 6)), "am");
    tg_tensor *kpm = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(2, 6)), "kpm");
    const tg_mha_masks wide_am = {.attn_mask = am}, wide_kpm = {.key_padding_mask = kpm};
    TG_EXPECT_FAIL(tg_mha_forward(m, tape, q, k, v, &wide_am, true),
                   "tg_mha_forward: attn_mask (3, 6) 'am' must be (3, 4) or (4, 3, 4)");
    TG_EXPECT_FAIL(tg_mha_forward(m, tape, q, k, v, &wide_kpm, false),
                   "tg_mha_forward: key_padding_mask (2, 6) 'kpm' must be (2, 4)");
    /* average_attn_weights: tg_mha_forward_with checks its arguments under its own name */
    TG_EXPECT_FAIL(tg_mha_forward_with(m, tape, q, NULL, v, NULL, true, false),
                   "tg_mha_forward_with: argument 'key' is NULL");
    tg_tensor *stale = tg_tensor_named(tg_tape_tensor_zeros(tape, TG_SHAPE(3, 4)), "stale");
    tg_tape_reset(tape);
    const tg_mha_masks stale_am = {.attn_mask = stale};
    TG_EXPECT_FAIL(tg_mha_forward_with(m, tape, q, k, v, &stale_am, true, false),
                   "tg_mha_forward_with: argument 'masks->attn_mask', tensor (3, 4) 'stale', "
                   "was made before");
    tg_mha_output ok = tg_mha_forward_with(m, tape, q, k, v, NULL, true, false);
    assert_int_equal(ok.weights->ndim, 4), assert_int_equal(ok.weights->shape[3], 6);
    tg_tape_free(tape);
    tg_tensor_free(q), tg_tensor_free(k), tg_tensor_free(v), tg_tensor_free(x);
    tg_tensor_free(am), tg_tensor_free(kpm);
    tg_module_free(&m->module);
}

/* ---- transformer.h ---- */
static void test_null_transformer(void **state) {
    (void)state;
    TG_EXPECT_FAIL(tg_encoder_layer_new(NULL), "tg_encoder_layer_new: argument 'opts' is NULL");
    TG_EXPECT_FAIL(tg_transformer_new(NULL, 1, 1), "tg_transformer_new: argument 'opts' is NULL");
    tg_transformer_options o = tg_transformer_defaults(4, 2);
    o.dim_feedforward = 8;
    tg_tape *tape = tg_tape_new();
    tg_transformer *m = tg_transformer_new(&o, 1, 1);
    tg_decoder_layer *dec = tg_decoder_layer_new(&o);
    tg_tensor *src = tg_tensor_ones(TG_SHAPE(3, 1, 4));
    TG_EXPECT_FAIL(tg_transformer_forward(m, tape, src, NULL, NULL, NULL, NULL),
                   "tg_transformer_forward: argument 'tgt' is NULL");
    TG_EXPECT_FAIL(tg_decoder_layer_forward(dec, tape, src, NULL, NULL, NULL),
                   "tg_decoder_layer_forward: argument 'memory' is NULL");
    TG_EXPECT_FAIL(tg_transformer_encoder_forward(NULL, tape, src, NULL),
                   "tg_transformer_encoder_forward: argument 'm' is NULL");
    tg_module_free(NULL); /* fine */
    tg_module_free(&m->module), tg_module_free(&dec->module);
    tg_tensor_free(src);
    tg_tape_free(tape);
}

/* ---- optim.h ---- */
static void test_null_optim(void **state) {
    (void)state;
    TG_EXPECT_FAIL(tg_optim_step(NULL), "tg_optim_step: argument 'opt' is NULL");
    TG_EXPECT_FAIL(tg_optim_set_lr(NULL, 0.1), "tg_optim_set_lr: argument 'opt' is NULL");
    TG_EXPECT_FAIL(tg_optim_state(NULL), "tg_optim_state: argument 'opt' is NULL");
    TG_EXPECT_FAIL(tg_clip_grad_norm(NULL, 1, 2), "tg_clip_grad_norm: argument 'params' is NULL");
    TG_EXPECT_FAIL(tg_clip_grad_value(NULL, 1), "tg_clip_grad_value: argument 'params' is NULL");
    TG_EXPECT_FAIL(tg_adam_new(NULL, NULL), "tg_adam_new", "params is NULL");
    TG_EXPECT_FAIL(tg_step_lr_new(NULL, 1, 0.5), "tg_step_lr_new: argument 'opt' is NULL");
    TG_EXPECT_FAIL(tg_scheduler_step(NULL), "tg_scheduler_step: argument 's' is NULL");
    TG_EXPECT_FAIL(tg_scheduler_last_lr(NULL), "tg_scheduler_last_lr: argument 's' is NULL");
    assert_int_equal(tg_sgd_options_check(NULL), TG_ERR_ARGUMENT);
    tg_optim_free(NULL), tg_scheduler_free(NULL); /* fine */
}

/* ---- models.h ---- */
static void test_null_models(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_gru_classifier *cls = tg_gru_classifier_new(5, 2, 3, 2);
    tg_gru_lm *lm = tg_gru_lm_new(5, 2, 3, 1);
    tg_gru_attention *att = tg_gru_attention_new(5, 5, 2, 3, 4);
    TG_EXPECT_FAIL(tg_gru_classifier_forward(cls, tape, NULL),
                   "tg_gru_classifier_forward: argument 'tokens' is NULL");
    TG_EXPECT_FAIL(tg_gru_lm_forward(lm, NULL, NULL, NULL), "tg_gru_lm_forward: argument 't' is "
                                                            "NULL");
    TG_EXPECT_FAIL(tg_gru_lm_detach(NULL, NULL), "tg_gru_lm_detach: argument 'hidden' is NULL");
    TG_EXPECT_FAIL(tg_gru_attention_greedy(att, tape, NULL, 1, 3, NULL),
                   "tg_gru_attention_greedy: argument 'src' is NULL");
    TG_EXPECT_FAIL(tg_transformer_model_new_ex(5, NULL, 1, 1),
                   "tg_transformer_model_new_ex: argument 'opts' is NULL");
    TG_EXPECT_FAIL(tg_module_numel(NULL), "tg_module_numel: argument 'm' is NULL");
    TG_EXPECT_FAIL(tg_gru_stepwise_init_hidden(NULL, 1),
                   "tg_gru_stepwise_init_hidden: argument 'm' is NULL");
    /* hidden NULL: zeros; `into` NULL: a new tensor */
    tg_index *ids = tg_index_from_array(TG_SHAPE(2, 1), (int32_t[]){1, 2});
    tg_tensor *kept = tg_gru_lm_detach(NULL, tg_gru_lm_forward(lm, tape, ids, NULL).hidden);
    assert_true(kept->owned);
    tg_module_free(NULL); /* fine */
    tg_module_free(&cls->module), tg_module_free(&lm->module);
    tg_module_free(&att->module);
    tg_index_free(ids);
    tg_tensor_free(kept);
    tg_tape_free(tape);
}

/* ---- gradcheck.h and gates.h ---- */
static tg_tensor *fn_sum(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_sum(tape, in[0]);
}

static void test_null_gradcheck_and_gates(void **state) {
    (void)state;
    tg_tensor *a = leaf("a", 2);
    TG_EXPECT_FAIL(tg_gradcheck(NULL, NULL, &a, 1, NULL, NULL),
                   "tg_gradcheck: argument 'fn' is NULL");
    TG_EXPECT_FAIL(tg_gradcheck(fn_sum, NULL, (tg_tensor *[]){a, NULL}, 2, NULL, NULL),
                   "tg_gradcheck: argument 'inputs[1]' is NULL");
    tg_gate_trace *tr = tg_gate_trace_new(TG_CELL_GRU, 2, 3, -1);
    TG_EXPECT_FAIL(tg_gate_trace_capture(tr, NULL, NULL),
                   "tg_gate_trace_capture: argument 'tape' is NULL");
    TG_EXPECT_FAIL(tg_gate_trace_read_grads(NULL), "tg_gate_trace_read_grads: argument 'tr' is "
                                                   "NULL");
    tg_gate_trace_free(tr);
    tg_gate_trace_free(NULL); /* fine */
    tg_tensor_free(a);
}

/* The checks themselves, as op implementers call them. */
static void test_null_check_functions(void **state) {
    (void)state;
    TG_EXPECT_FAIL(tg_tensor_check("my_fn", "input", NULL), "my_fn: argument 'input' is NULL");
    TG_EXPECT_FAIL(tg_index_check("my_fn", "ids", NULL), "my_fn: argument 'ids' is NULL");
    tg_tape *tape = tg_tape_new();
    TG_EXPECT_FAIL(tg_tape_check_inputs(tape, "my_fn", "xs", 2, NULL),
                   "my_fn: argument 'xs' is NULL");
    TG_EXPECT_FAIL(tg_tape_check_index(tape, "my_fn", "targets", NULL),
                   "my_fn: argument 'targets' is NULL");
    TG_EXPECT_FAIL(tg_cell_entry_check(NULL, "my_rnn", NULL, NULL, NULL, NULL,
                                       (const char *const[]){"h", "c"}),
                   "my_rnn: argument 't' is NULL");
    tg_tape_free(tape);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        /* lifetimes: an earlier step */
        cmocka_unit_test(test_stale_input_right_after_reset),
        cmocka_unit_test(test_stale_input_after_next_step_ran),
        cmocka_unit_test(test_stale_unnamed_tensor),
        cmocka_unit_test(test_stale_across_empty_resets),
        cmocka_unit_test(test_stale_item),
        cmocka_unit_test(test_stale_tensor_functions),
        cmocka_unit_test(test_stale_backward),
        cmocka_unit_test(test_stale_index),
        cmocka_unit_test(test_stale_view),
        cmocka_unit_test(test_stale_rnn_output),
        cmocka_unit_test(test_stale_hidden_in_module),
        cmocka_unit_test(test_stale_module_input),
        cmocka_unit_test(test_stale_concat_element),
        cmocka_unit_test(test_stale_gate_trace),
        cmocka_unit_test(test_stale_loss_targets),
        cmocka_unit_test(test_stale_loss_option_tensor),
        cmocka_unit_test(test_stale_attention_query),
        cmocka_unit_test(test_stale_transformer_memory),
        cmocka_unit_test(test_stale_model_tokens),
        cmocka_unit_test(test_stale_detach),
        cmocka_unit_test(test_stale_init),
        cmocka_unit_test(test_stale_caught_at_record),
        cmocka_unit_test(test_long_lived_pass_everywhere),
        cmocka_unit_test(test_no_malloc_per_step),
        /* lifetimes: another tape */
        cmocka_unit_test(test_other_tape),
        cmocka_unit_test(test_other_tape_after_its_reset),
        cmocka_unit_test(test_other_tape_freed_before_backward),
        cmocka_unit_test(test_other_tape_index),
        cmocka_unit_test(test_other_tape_option_tensors),
        cmocka_unit_test(test_other_tape_module_input),
        cmocka_unit_test(test_other_tape_backward),
        /* backward twice */
        cmocka_unit_test(test_backward_twice_is_an_error),
        cmocka_unit_test(test_backward_twice_through_shared_part),
        cmocka_unit_test(test_retain_graph_doubles),
        cmocka_unit_test(test_retain_graph_doubles_fused_rnn),
        cmocka_unit_test(test_separate_graphs_on_one_tape),
        cmocka_unit_test(test_backward_ex_defaults_and_seed),
        /* NULL arguments */
        cmocka_unit_test(test_null_tape_functions),
        cmocka_unit_test(test_null_backward),
        cmocka_unit_test(test_null_op_implementer_functions),
        cmocka_unit_test(test_null_elementwise),
        cmocka_unit_test(test_null_reductions_and_softmax),
        cmocka_unit_test(test_null_matmul_and_linear),
        cmocka_unit_test(test_null_shape_ops),
        cmocka_unit_test(test_null_embedding_and_norm),
        cmocka_unit_test(test_null_losses),
        cmocka_unit_test(test_null_attention_ops),
        cmocka_unit_test(test_null_rnn_ops),
        cmocka_unit_test(test_null_tensor_creation),
        cmocka_unit_test(test_null_tensor_access),
        cmocka_unit_test(test_null_arena),
        cmocka_unit_test(test_null_broadcast),
        cmocka_unit_test(test_extra_ops_checked),
        cmocka_unit_test(test_null_rng_and_kernels),
        cmocka_unit_test(test_null_safetensors),
        cmocka_unit_test(test_null_params),
        cmocka_unit_test(test_null_nn_modules),
        cmocka_unit_test(test_null_recurrent_modules),
        cmocka_unit_test(test_null_attention_modules),
        cmocka_unit_test(test_bad_mha_options),
        cmocka_unit_test(test_null_transformer),
        cmocka_unit_test(test_null_optim),
        cmocka_unit_test(test_null_models),
        cmocka_unit_test(test_null_gradcheck_and_gates),
        cmocka_unit_test(test_null_check_functions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
