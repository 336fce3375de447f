/* web/tg_web.c — what the browser page (web/index.html) asks of tapegrad, as JSON.
 *
 * Compiled twice from this one file: into WebAssembly with the float64 library
 * (scripts/build-web.sh; the page calls these functions), and natively against libtapegrad64
 * (web/tg_web_native.c prints the same JSON for the same inputs, so the browser test can
 * compare the page's numbers with the native library's). The page computes nothing itself:
 * every value, gradient and loss it shows is in the JSON these functions return.
 *
 *   tgw_cell           one composite GRU or LSTM step (input 2, hidden 3, PyTorch's form and
 *                      initialisation), the loss L = Σ v ⊙ h', backward; the tape's nodes in
 *                      order, every tensor's value and gradient, and, for every node in the
 *                      order backward ran it, its inputs' gradients as they stood after it;
 *   tgw_train_start    a tanh RNN, GRU or LSTM classifier on the vanishing-gradient task of
 *   tgw_train_steps    examples/vanishing.c, trained k Adam steps at a time; the losses, the
 *                      held-out accuracy and ‖dL/dh_t‖ over t (tapegrad/gates.h).
 *
 * A returned string lives until the next call of any of them. */
#include "tg_web.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/gates.h>

#include "common.h"

/* ------------------------------------------------------------------------------------------
 * JSON text
 * ---------------------------------------------------------------------------------------- */

typedef struct json {
    char *s;
    size_t len, cap;
} json;

static json out; /* the last answer */

static void *grow(void *p, size_t bytes) {
    void *q = realloc(p, bytes);
    if (!q) tg_fail("tg_web: out of memory (%zu bytes)", bytes);
    return q;
}

static void put(json *j, const char *fmt, ...) {
    va_list a, b;
    va_start(a, fmt);
    va_copy(b, a);
    const int n = vsnprintf(NULL, 0, fmt, a);
    va_end(a);
    if (j->len + (size_t)n + 1 > j->cap) {
        j->cap = 2 * (j->len + (size_t)n + 1);
        j->s = grow(j->s, j->cap);
    }
    vsnprintf(j->s + j->len, j->cap - j->len, fmt, b);
    va_end(b);
    j->len += (size_t)n;
}

/* A number that reads back to the same double (JSON has no NaN or Infinity: null). */
static void put_real(json *j, double v) {
    if (v != v || v - v != 0)
        put(j, "null");
    else
        put(j, "%.17g", v);
}

/* A JSON string: the names are the library's ("weight_ih", "z"), but any name is safe. */
static void put_string(json *j, const char *s) {
    put(j, "\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            put(j, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            put(j, "\\u%04x", (unsigned)*s);
        else
            put(j, "%c", *s);
    }
    put(j, "\"");
}

static void put_reals(json *j, const tg_real *v, int64_t n) {
    if (!v) {
        put(j, "null");
        return;
    }
    put(j, "[");
    for (int64_t i = 0; i < n; i++) {
        if (i) put(j, ",");
        put_real(j, (double)v[i]);
    }
    put(j, "]");
}

static void put_doubles(json *j, const double *v, int64_t n) {
    put(j, "[");
    for (int64_t i = 0; i < n; i++) {
        if (i) put(j, ",");
        put_real(j, v[i]);
    }
    put(j, "]");
}

static const char *answer(json *j) {
    free(out.s);
    out = *j;
    return out.s;
}

/* ------------------------------------------------------------------------------------------
 * One cell step, its tape and its backward
 * ---------------------------------------------------------------------------------------- */

/* The tensors of the tape, numbered in order of first appearance (an input before the
 * outputs of the node that reads it). */
typedef struct tensor_list {
    const tg_tensor **t;
    size_t n, cap;
} tensor_list;

static int64_t tensor_id(tensor_list *l, const tg_tensor *t) {
    for (size_t i = 0; i < l->n; i++)
        if (l->t[i] == t) return (int64_t)i;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->t = grow(l->t, l->cap * sizeof *l->t);
    }
    l->t[l->n] = t;
    return (int64_t)l->n++;
}

/* What backward did at each node: the order it ran them, and a copy of each input's gradient
 * as it stood right after the node (NULL: no gradient flows into that input). */
typedef struct backward_log {
    size_t n_nodes, n_run;
    size_t *order;      /* node indices, in the order backward ran them */
    int64_t *rank;      /* rank[i]: node i's place in that order (1 = first), 0 if never run */
    tg_real ***in_grad; /* in_grad[i][k]: input k of node i, after node i's backward */
} backward_log;

static void log_node(const tg_tape *tape, size_t i, void *ctx) {
    backward_log *log = ctx;
    const tg_node *node = tg_tape_node(tape, i);
    log->order[log->n_run++] = i;
    log->rank[i] = (int64_t)log->n_run;
    log->in_grad[i] = tg_xcalloc((size_t)node->n_in, sizeof *log->in_grad[i]);
    for (int k = 0; k < node->n_in; k++) {
        const tg_tensor *x = node->in[k];
        if (!x || !x->grad) continue;
        log->in_grad[i][k] = tg_xmalloc((size_t)x->numel * sizeof(tg_real));
        memcpy(log->in_grad[i][k], x->grad, (size_t)x->numel * sizeof(tg_real));
    }
}

static void put_shape(json *j, const tg_tensor *t) {
    put(j, "[");
    for (int d = 0; d < t->ndim; d++) put(j, "%s%lld", d ? "," : "", (long long)t->shape[d]);
    put(j, "]");
}

static const char *tensor_kind(const tg_tensor *t) {
    if (t->node >= 0) return "op";
    if (t->owned && t->requires_grad) return "param";
    return t->requires_grad ? "input" : "const";
}

static void put_tape(json *j, const tg_tape *tape, const backward_log *log) {
    tensor_list l = {0};
    const size_t n = tg_tape_node_count(tape);
    put(j, "\"nodes\":[");
    for (size_t i = 0; i < n; i++) {
        const tg_node *node = tg_tape_node(tape, i);
        put(j, "%s{\"index\":%zu,\"op\":\"%s\",\"in\":[", i ? "," : "", i, node->op);
        for (int k = 0; k < node->n_in; k++)
            put(j, "%s%lld", k ? "," : "",
                node->in[k] ? (long long)tensor_id(&l, node->in[k]) : -1LL);
        put(j, "],\"out\":[");
        for (int k = 0; k < node->n_out; k++)
            put(j, "%s%lld", k ? "," : "", (long long)tensor_id(&l, node->out[k]));
        put(j, "],\"bwd\":%lld,\"in_grad_after\":[", (long long)log->rank[i]);
        for (int k = 0; k < node->n_in; k++) {
            if (k) put(j, ",");
            put_reals(j, log->in_grad[i] ? log->in_grad[i][k] : NULL,
                      node->in[k] ? node->in[k]->numel : 0);
        }
        put(j, "]}");
    }
    put(j, "],\"backward_order\":[");
    for (size_t r = 0; r < log->n_run; r++) put(j, "%s%zu", r ? "," : "", log->order[r]);
    put(j, "],\"tensors\":[");
    for (size_t i = 0; i < l.n; i++) {
        const tg_tensor *t = l.t[i];
        put(j, "%s{\"id\":%zu,\"name\":", i ? "," : "", i);
        put_string(j, t->name);
        put(j, ",\"kind\":\"%s\",\"node\":%d,\"shape\":", tensor_kind(t), (int)t->node);
        put_shape(j, t);
        put(j, ",\"value\":");
        put_reals(j, t->data, t->numel);
        put(j, ",\"grad\":");
        put_reals(j, t->grad, t->numel);
        put(j, "}");
    }
    put(j, "]");
    free(l.t);
}

/* An input of the step, in the tape's arena, named, with its values. */
static tg_tensor *step_input(tg_tape *tape, const char *name, int64_t n, const double *v,
                             bool grad) {
    tg_tensor *t = tg_tensor_named(tg_tape_tensor(tape, TG_SHAPE(1, n)), name);
    for (int64_t i = 0; i < n; i++) t->data[i] = (tg_real)v[i];
    return tg_tensor_requires_grad(t, grad);
}

const char *tgw_cell(int kind, const double *in, uint32_t seed) {
    const bool lstm = kind == TGW_LSTM;
    tg_manual_seed(seed); /* PyTorch's initialisation, the same weights for the same seed */
    tg_cell_options o = tg_cell_defaults(TGW_INPUT, TGW_HIDDEN);
    o.exec = TG_RNN_COMPOSITE; /* one tape node per primitive, the gates named */
    tg_cell *cell = lstm ? &tg_lstm_cell_new(o)->base : &tg_gru_cell_new(o)->base;

    tg_tape *tape = tg_tape_new();
    tg_tensor *x = step_input(tape, "x", TGW_INPUT, in, true);
    tg_tensor *h = step_input(tape, "h_prev", TGW_HIDDEN, in + TGW_INPUT, true);
    tg_tensor *c =
        lstm ? step_input(tape, "c_prev", TGW_HIDDEN, in + TGW_INPUT + TGW_HIDDEN, true) : NULL;
    tg_tensor *v = step_input(tape, "v", TGW_HIDDEN, in + TGW_INPUT + 2 * TGW_HIDDEN, false);
    const tg_rnn_state s = tg_cell_forward(cell, tape, x, h, c);
    tg_tensor *loss = tg_tensor_named(tg_sum(tape, tg_mul(tape, v, s.h)), "loss");

    /* keep every intermediate's gradient, and look after every node of the backward */
    const size_t n = tg_tape_node_count(tape);
    for (size_t i = 0; i < n; i++) {
        const tg_node *node = tg_tape_node(tape, i);
        for (int k = 0; k < node->n_out; k++) tg_tensor_retain_grad(node->out[k]);
    }
    backward_log log = {n, 0, tg_xcalloc(n, sizeof(size_t)), tg_xcalloc(n, sizeof(int64_t)),
                        tg_xcalloc(n, sizeof(tg_real **))};
    tg_tape_backward_ex(tape, loss, &(tg_backward_options){.after_node = log_node, .ctx = &log});

    json j = {0};
    put(&j, "{\"cell\":\"%s\",\"input_size\":%d,\"hidden_size\":%d,\"seed\":%u,\"loss\":",
        lstm ? "lstm" : "gru", TGW_INPUT, TGW_HIDDEN, seed);
    put_real(&j, (double)tg_item(loss));
    put(&j, ",");
    put_tape(&j, tape, &log);
    put(&j, "}");

    for (size_t i = 0; i < n; i++) {
        if (!log.in_grad[i]) continue;
        for (int k = 0; k < tg_tape_node(tape, i)->n_in; k++) free(log.in_grad[i][k]);
        free(log.in_grad[i]);
    }
    free(log.in_grad), free(log.order), free(log.rank);
    tg_tape_free(tape);
    tg_module_free(&cell->module);
    return answer(&j);
}

/* ------------------------------------------------------------------------------------------
 * The vanishing-gradient task, trained in chunks
 * ---------------------------------------------------------------------------------------- */

enum { VOCAB = 8, CLASSES = 4, BATCH = 32, EVAL_N = 256, PROFILE_N = 64 };

static struct trainer {
    bool live;
    ex_rnn_classifier m;
    tg_optim *opt;
    tg_tape *tape;
    tg_rng rng;
    int64_t T, hidden, steps;
    uint32_t seed;
} tr;

static void trainer_free(void) {
    if (!tr.live) return;
    tg_optim_free(tr.opt);
    tg_tape_free(tr.tape);
    ex_rnn_classifier_free(&tr.m);
    tr.live = false;
}

int tgw_train_start(int model, int T, int hidden, uint32_t seed, double lr) {
    static const tg_cell_kind kinds[3] = {TG_CELL_RNN_TANH, TG_CELL_GRU, TG_CELL_LSTM};
    if (model < 0 || model > 2 || T < 2 || T > TGW_MAX_T || hidden < 1 || hidden > 64 ||
        !(lr > 0 && lr <= 1))
        return -1;
    trainer_free();
    tg_manual_seed(seed);
    tr.m = ex_rnn_classifier_new(kinds[model], VOCAB, hidden, CLASSES);
    tg_adam_options adam = tg_adam_defaults();
    adam.lr = lr;
    tr.opt = tg_adam_new(tr.m.params, &adam);
    tr.tape = tg_tape_new();
    tg_rng_seed(&tr.rng, (uint64_t)seed * 31 + (uint64_t)T);
    tr.T = T, tr.hidden = hidden, tr.steps = 0, tr.seed = seed, tr.live = true;
    return 0;
}

/* Held-out accuracy on EVAL_N sequences drawn from a generator no training batch uses. */
static double evaluate(void) {
    tg_rng rng;
    tg_rng_seed(&rng, (uint64_t)tr.seed * 7919 + 17 + (uint64_t)tr.T);
    tg_tape_set_recording(tr.tape, false); /* the model has no dropout: no mode to switch */
    const ex_recall_batch b = ex_recall_first_batch(tr.tape, &rng, tr.T, EVAL_N, VOCAB, CLASSES);
    const int64_t right =
        ex_count_correct(ex_rnn_classifier_forward(&tr.m, tr.tape, b.x, false), b.y);
    tg_tape_reset(tr.tape);
    tg_tape_set_recording(tr.tape, true);
    return (double)right / EVAL_N;
}

/* ‖dL/dh_t‖ (and an LSTM's ‖dL/dc_t‖) on one held-out batch, through the composite path. */
static tg_gate_trace *profile(void) {
    tg_rng rng;
    tg_rng_seed(&rng, (uint64_t)tr.seed * 104729 + 3);
    const ex_recall_batch b = ex_recall_first_batch(tr.tape, &rng, tr.T, PROFILE_N, VOCAB, CLASSES);
    tg_tensor *loss =
        tg_cross_entropy(tr.tape, ex_rnn_classifier_forward(&tr.m, tr.tape, b.x, true), b.y);
    tg_gate_trace *g = tg_gate_trace_new(tr.m.rnn->kind, tr.T, tr.hidden, -1);
    tg_gate_trace_capture(g, tr.tape, "");
    tg_tape_backward(tr.tape, loss);
    tg_gate_trace_read_grads(g);
    tg_params_zero_grad(tr.m.params);
    tg_tape_reset(tr.tape);
    return g;
}

const char *tgw_train_steps(int k) {
    json j = {0};
    if (!tr.live || k < 0 || k > 10000) {
        put(&j, "{\"error\":\"tgw_train_steps: call tgw_train_start first; 0 to 10000 steps\"}");
        return answer(&j);
    }
    put(&j, "{\"losses\":[");
    for (int s = 0; s < k; s++) {
        const ex_recall_batch b =
            ex_recall_first_batch(tr.tape, &tr.rng, tr.T, BATCH, VOCAB, CLASSES);
        tg_tensor *loss =
            tg_cross_entropy(tr.tape, ex_rnn_classifier_forward(&tr.m, tr.tape, b.x, false), b.y);
        tg_tape_backward(tr.tape, loss);
        tg_clip_grad_norm(tr.m.params, 1.0, 2.0);
        tg_optim_step(tr.opt);
        if (s) put(&j, ",");
        put_real(&j, (double)tg_item(loss));
        tg_tape_reset(tr.tape);
    }
    tr.steps += k;
    put(&j, "],\"step\":%lld,\"T\":%lld,\"accuracy\":", (long long)tr.steps, (long long)tr.T);
    put_real(&j, evaluate());
    tg_gate_trace *g = profile();
    put(&j, ",\"grad_norm\":");
    put_doubles(&j, g->grad_norm, tr.T);
    put(&j, ",\"cell_grad_norm\":");
    if (g->cell_grad_norm)
        put_doubles(&j, g->cell_grad_norm, tr.T);
    else
        put(&j, "null");
    put(&j, "}");
    tg_gate_trace_free(g);
    return answer(&j);
}
