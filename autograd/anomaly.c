/* Anomaly mode: find the first op that makes a NaN or an Inf, in forward or in backward.
 *
 * A NaN in a loss is a symptom; its cause is usually one op many steps earlier: log of a
 * negative number, sqrt(0) in backward (d√x/dx = 1/(2√x) = Inf at 0), exp that overflows,
 * a softmax over a row the mask made all −inf (every exp is 0, and 0/0 is NaN). Finding it
 * by hand means bisecting the program. With tg_tape_set_anomaly_detection(tape, true) the
 * tape looks at every value as it is made and stops at the first bad one, naming the op,
 * its tensors, and what its inputs looked like (shapes, min/max, NaN and Inf counts), so
 * the cause is usually readable from the one message.
 *
 * Where the checks hook in (autograd/tape.c):
 *  - tg_tape_record, first line: every op calls it right after computing its outputs,
 *    whether or not a node will be appended, so ops on constants and tapes with recording
 *    off are checked too (tg_anomaly_check_forward);
 *  - tg_tape_backward_with, right after each node's backward has accumulated into its
 *    inputs' gradients (tg_anomaly_check_backward).
 * PyTorch's detect_anomaly checks backward only (for NaN); a forward check is cheap here and
 * finds the op before the NaN has spread. */
#include "tapegrad/tape.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* What a buffer of values looks like. min/max are over the finite values only. */
typedef struct value_stats {
    int64_t nan, inf;  /* counts */
    int64_t first_bad; /* index of the first NaN or Inf, -1 if none */
    double min, max;   /* finite range; min > max when no value is finite */
} value_stats;

static value_stats stats_of(const tg_real *v, int64_t n) {
    value_stats s = {0, 0, -1, INFINITY, -INFINITY};
    for (int64_t i = 0; i < n; i++) {
        const double x = (double)v[i];
        if (isnan(x) || isinf(x)) {
            if (isnan(x))
                s.nan++;
            else
                s.inf++;
            if (s.first_bad < 0) s.first_bad = i;
            continue;
        }
        if (x < s.min) s.min = x;
        if (x > s.max) s.max = x;
    }
    return s;
}

/* The message is built piece by piece in a fixed buffer; the last piece that does not fit
 * is cut (tg_fail's own buffer is 1 KiB, so there is no point in more). */
typedef struct message {
    char text[1024];
    size_t used;
} message;

static void say(message *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(message *m, const char *fmt, ...) {
    if (m->used + 1 >= sizeof m->text) return;
    va_list ap;
    va_start(ap, fmt);
    const int w = vsnprintf(m->text + m->used, sizeof m->text - m->used, fmt, ap);
    va_end(ap);
    if (w > 0) m->used += (size_t)w;
    if (m->used >= sizeof m->text) m->used = sizeof m->text - 1;
}

/* "(2, 3) 'x' [param]: min -1, max 2, 1 NaN, 0 Inf"; `origin`: where the tensor comes from
 * (an op's node, a parameter, a leaf, a constant) — not known yet for an op's own outputs. */
static void say_tensor(message *m, const tg_tensor *t, const tg_real *values, bool origin) {
    char shape[96];
    tg_shape_format(t->ndim, t->shape, shape, sizeof shape);
    say(m, "%s", shape);
    if (t->name[0]) say(m, " '%s'", t->name);
    if (origin) { /* (an output being checked has no node yet) */
        if (t->node >= 0)
            say(m, " (from node #%d)", t->node);
        else if (t->owned && t->requires_grad)
            say(m, " [param]");
        else if (t->requires_grad)
            say(m, " [leaf]");
        else
            say(m, " [const]");
    }
    const value_stats s = stats_of(values, t->numel);
    if (s.min <= s.max)
        say(m, ": min %.6g, max %.6g", s.min, s.max);
    else
        say(m, ": no finite value");
    say(m, ", %lld NaN, %lld Inf", (long long)s.nan, (long long)s.inf);
}

/* Inputs beyond this many are summarised (a concat of 100 steps has 100 inputs). */
#define SHOWN_INPUTS 6

static void say_inputs(message *m, int n_in, tg_tensor *const *in) {
    say(m, "\n  inputs:");
    int shown = 0;
    for (int k = 0; k < n_in; k++) {
        if (!in[k]) continue;
        if (shown == SHOWN_INPUTS) {
            say(m, "\n    ... and %d more", n_in - k);
            break;
        }
        say(m, "\n    %d: ", k);
        say_tensor(m, in[k], in[k]->data, true);
        shown++;
    }
    if (!shown) say(m, " none");
}

static bool is_bad(const value_stats *s, bool inf_counts) {
    return s->nan || (inf_counts && s->inf);
}

void tg_anomaly_check_forward(const tg_tape *tape, const char *op, int n_in, tg_tensor *const *in,
                              int n_out, tg_tensor *const *out) {
    TG_CHECK_ARG(tape);
    TG_CHECK_ARG(op);
    if (n_in > 0) TG_CHECK_ARG(in);
    if (n_out > 0) TG_CHECK_ARG(out);
    /* An Inf that came in is not made here: an additive −inf mask flows through add,
     * max, log_softmax... masked_fill places its value, and −inf is the usual one. */
    bool inf_in = false, nan_in = false;
    for (int k = 0; k < n_in; k++) {
        if (!in[k]) continue;
        const value_stats s = stats_of(in[k]->data, in[k]->numel);
        inf_in = inf_in || s.inf;
        nan_in = nan_in || s.nan;
    }
    const bool inf_counts = !inf_in && strcmp(op, "masked_fill") != 0;
    for (int k = 0; k < n_out; k++) {
        const tg_tensor *y = out[k];
        if (!y) continue;
        const value_stats s = stats_of(y->data, y->numel);
        if (!is_bad(&s, inf_counts)) continue;

        message m = {.used = 0};
        say(&m, "anomaly detected in forward: op '%s' produced %s", op,
            s.nan ? (s.inf && inf_counts ? "NaN and Inf" : "NaN") : "Inf");
        say(&m, "\n  output %d: ", k);
        say_tensor(&m, y, y->data, false);
        say(&m, " (first at flat index %lld of %lld)", (long long)s.first_bad, (long long)y->numel);
        say_inputs(&m, n_in, in);
        if (nan_in)
            say(&m, "\n  (a NaN was already in an input: it came from a leaf, or from "
                    "work done before anomaly mode was switched on)");
        bool needed = false;
        for (int i = 0; i < n_in; i++) needed = needed || (in[i] && in[i]->requires_grad);
        if (tg_tape_is_recording(tape) && needed)
            say(&m, "\n  (it becomes tape node #%zu)", tg_tape_node_count(tape));
        tg_fail("tg_tape_record: %s", m.text); /* the ops record through it */
    }
}

void tg_anomaly_check_backward(const tg_tape *tape, const char *function, const tg_node *node,
                               size_t index) {
    TG_CHECK_ARG(tape);
    TG_CHECK_ARG(function);
    TG_CHECK_ARG(node);
    for (int k = 0; k < node->n_in; k++) {
        const tg_tensor *x = node->in[k];
        if (!x || !x->grad) continue;
        const value_stats s = stats_of(x->grad, x->numel);
        if (!is_bad(&s, true)) continue;

        message m = {.used = 0};
        say(&m,
            "anomaly detected in backward: the backward of op '%s' (node #%zu) wrote %s "
            "into the gradient of its input %d",
            node->op, index, s.nan ? (s.inf ? "NaN and Inf" : "NaN") : "Inf", k);
        say(&m, "\n  gradient of input %d: ", k);
        say_tensor(&m, x, x->grad, true);
        say(&m, " (first at flat index %lld)", (long long)s.first_bad);
        say(&m, "\n  gradients of its outputs:");
        for (int j = 0; j < node->n_out; j++) {
            say(&m, "\n    %d: ", j);
            if (node->out[j]->grad)
                say_tensor(&m, node->out[j], node->out[j]->grad, true);
            else
                say(&m, "none (zero)");
        }
        say_inputs(&m, node->n_in, node->in);
        tg_fail("%s: %s", function, m.text);
    }
}
