/* The composite recurrent cells: each step written with primitive ops, exactly the formulas
 * of tapegrad/rnn_ops.h (PyTorch's), one tape node per primitive. This is the readable
 * reference the fused ops (autograd/rnn*.c) are tested against, and the path to take when
 * you want to look inside a step: every gate is a named tensor ("z_3" is the update gate at
 * step 3), so after
 *     tg_tensor *z3 = tg_rnn_find_named(tape, "z_3");
 *     tg_tensor_retain_grad(z3);
 *     tg_tape_backward(tape, loss);
 * z3->grad holds dL/dz_3. */
#include "tapegrad/rnn_ops.h"

#include <stdio.h>
#include <string.h>

/* Names t "<gate>_<tag>" (or "<gate>" without a tag) and returns it. */
static tg_tensor *named(tg_tensor *t, const char *gate, const char *tag) {
    char name[TG_NAME_MAX];
    if (tag)
        snprintf(name, sizeof name, "%s_%s", gate, tag);
    else
        snprintf(name, sizeof name, "%s", gate);
    tg_tensor_set_name(t, name);
    return t;
}

/* h' = act(x·W_ihᵀ + b_ih + h·W_hhᵀ + b_hh) */
static tg_rnn_state rnn_step(tg_tape *t, const tg_cell_weights *w, tg_tensor *x, tg_tensor *h,
                             bool relu, const char *tag) {
    /* one statement per op: C leaves the order of a call's arguments open, and the tape
     * records ops in the order they run, so nested calls would give a compiler-dependent tape */
    tg_tensor *ax = tg_linear(t, x, w->w_ih, w->b_ih);
    tg_tensor *a = tg_add(t, ax, tg_linear(t, h, w->w_hh, w->b_hh));
    return (tg_rnn_state){named(relu ? tg_relu(t, a) : tg_tanh(t, a), "h", tag), NULL};
}

/* PyTorch's GRU: the reset gate multiplies the hidden projection of n (bias included). */
static tg_rnn_state gru_step(tg_tape *t, const tg_cell_weights *w, tg_tensor *x, tg_tensor *h,
                             int64_t H, const char *tag) {
    tg_tensor *gi[3], *gh[3]; /* [r | z | n] blocks of x·W_ihᵀ + b_ih and h·W_hhᵀ + b_hh */
    tg_split(t, tg_linear(t, x, w->w_ih, w->b_ih), H, -1, gi, 3);
    tg_split(t, tg_linear(t, h, w->w_hh, w->b_hh), H, -1, gh, 3);
    tg_tensor *r = named(tg_sigmoid(t, tg_add(t, gi[0], gh[0])), "r", tag);
    tg_tensor *z = named(tg_sigmoid(t, tg_add(t, gi[1], gh[1])), "z", tag);
    tg_tensor *n = named(tg_tanh(t, tg_add(t, gi[2], tg_mul(t, r, gh[2]))), "n", tag);
    /* h' = (1 − z)⊙n + z⊙h, written as PyTorch evaluates it: n + z⊙(h − n) */
    tg_tensor *h_new = tg_add(t, n, tg_mul(t, z, tg_sub(t, h, n)));
    return (tg_rnn_state){named(h_new, "h", tag), NULL};
}

/* Cho et al. 2014: the reset gate multiplies h before W_hn; b_hn is added outside. */
static tg_rnn_state gru_cho_step(tg_tape *t, const tg_cell_weights *w, tg_tensor *x, tg_tensor *h,
                                 int64_t H, const char *tag) {
    tg_tensor *gi[3], *grz[2];
    tg_split(t, tg_linear(t, x, w->w_ih, w->b_ih), H, -1, gi, 3);
    /* W_hh = [W_hr; W_hz; W_hn] by rows, b_hh likewise */
    tg_tensor *w_hrz = tg_slice(t, w->w_hh, 0, 0, 2 * H), *w_hn = tg_slice(t, w->w_hh, 0, 2 * H, H);
    tg_tensor *b_hrz = w->b_hh ? tg_slice(t, w->b_hh, 0, 0, 2 * H) : NULL;
    tg_tensor *b_hn = w->b_hh ? tg_slice(t, w->b_hh, 0, 2 * H, H) : NULL;
    tg_split(t, tg_linear(t, h, w_hrz, b_hrz), H, -1, grz, 2);
    tg_tensor *r = named(tg_sigmoid(t, tg_add(t, gi[0], grz[0])), "r", tag);
    tg_tensor *z = named(tg_sigmoid(t, tg_add(t, gi[1], grz[1])), "z", tag);
    tg_tensor *rh = named(tg_mul(t, r, h), "rh", tag);
    tg_tensor *n = named(tg_tanh(t, tg_add(t, gi[2], tg_linear(t, rh, w_hn, b_hn))), "n", tag);
    tg_tensor *h_new = tg_add(t, n, tg_mul(t, z, tg_sub(t, h, n)));
    return (tg_rnn_state){named(h_new, "h", tag), NULL};
}

/* LSTM: gates [i | f | g | o] of x·W_ihᵀ + b_ih + h·W_hhᵀ + b_hh; c' = f⊙c + i⊙g; h' = o⊙tanh(c')
 * (with a projection h' = m·W_hrᵀ of m = o⊙tanh(c'), named "m") */
static tg_rnn_state lstm_step(tg_tape *t, const tg_cell_weights *w, tg_tensor *x, tg_tensor *h,
                              tg_tensor *c, int64_t H, const char *tag) {
    tg_tensor *a[4];
    tg_tensor *ax = tg_linear(t, x, w->w_ih, w->b_ih); /* x first, as in rnn_step */
    tg_split(t, tg_add(t, ax, tg_linear(t, h, w->w_hh, w->b_hh)), H, -1, a, 4);
    tg_tensor *i = named(tg_sigmoid(t, a[0]), "i", tag);
    tg_tensor *f = named(tg_sigmoid(t, a[1]), "f", tag);
    tg_tensor *g = named(tg_tanh(t, a[2]), "g", tag);
    tg_tensor *o = named(tg_sigmoid(t, a[3]), "o", tag);
    tg_tensor *fc = tg_mul(t, f, c);
    tg_tensor *c_new = named(tg_add(t, fc, tg_mul(t, i, g)), "c", tag);
    tg_tensor *h_new = tg_mul(t, o, tg_tanh(t, c_new));
    if (w->w_hr) h_new = tg_linear(t, named(h_new, "m", tag), w->w_hr, NULL);
    return (tg_rnn_state){named(h_new, "h", tag), c_new};
}

void tg_cell_entry_check(const tg_tape *t, const char *op, const tg_cell_weights *w,
                         const tg_tensor *x, const tg_tensor *h, const tg_tensor *c,
                         const char *const state_names[2]) {
    TG_CHECK_ARG(op);
    TG_CHECK_ARG(state_names);
    if (!t) tg_fail_null_argument(op, "t");
    if (!w) tg_fail_null_argument(op, "w");
    tg_tape_check_op(t, op, "t", "x, w->w_ih, w->w_hh", 3,
                     (const tg_tensor *const[]){x, w->w_ih, w->w_hh});
    if (w->b_ih) tg_tape_check_input(t, op, "w->b_ih", w->b_ih);
    if (w->b_hh) tg_tape_check_input(t, op, "w->b_hh", w->b_hh);
    if (w->w_hr) tg_tape_check_input(t, op, "w->w_hr", w->w_hr);
    if (h) tg_tape_check_input(t, op, state_names[0], h);
    if (c) tg_tape_check_input(t, op, state_names[1], c);
}

tg_rnn_state tg_cell_step_composite(tg_tape *t, tg_cell_kind kind, const tg_cell_weights *w,
                                    tg_tensor *x, tg_tensor *h, tg_tensor *c, const char *tag) {
    tg_cell_entry_check(t, __func__, w, x, h, c, (const char *const[]){"h", "c"});
    tg_cell_inputs_check("tg_cell_step_composite", kind, w, x, 2, h, c);
    /* h has w_hh's column count of features: H, or an LSTM's proj_size P */
    const int64_t B = x->shape[0], P = w->w_hh->shape[1];
    if (!h) h = tg_tape_tensor_zeros(t, 2, (int64_t[]){B, P});
    switch (kind) {
    case TG_CELL_RNN_TANH:
        return rnn_step(t, w, x, h, false, tag);
    case TG_CELL_RNN_RELU:
        return rnn_step(t, w, x, h, true, tag);
    case TG_CELL_GRU:
        return gru_step(t, w, x, h, P, tag);
    case TG_CELL_GRU_CHO:
        return gru_cho_step(t, w, x, h, P, tag);
    case TG_CELL_LSTM: {
        const int64_t H = w->w_hh->shape[0] / 4; /* c's features */
        if (!c) c = tg_tape_tensor_zeros(t, 2, (int64_t[]){B, H});
        return lstm_step(t, w, x, h, c, H, tag);
    }
    }
    tg_fail("tg_cell_step_composite: unknown cell kind %d", (int)kind);
}

tg_rnn_result tg_rnn_sequence_composite(tg_tape *t, tg_cell_kind kind, const tg_cell_weights *w,
                                        tg_tensor *x, tg_tensor *h0, tg_tensor *c0, bool reverse,
                                        const char *suffix) {
    tg_cell_entry_check(t, __func__, w, x, h0, c0, (const char *const[]){"h0", "c0"});
    tg_cell_inputs_check("tg_rnn_sequence_composite", kind, w, x, 3, h0, c0);
    const int64_t T = x->shape[0], B = x->shape[1], P = w->w_hh->shape[1]; /* h's features */
    tg_tensor **steps = tg_tape_alloc(t, (size_t)T * sizeof *steps);
    tg_rnn_state s = {h0, c0};
    for (int64_t k = 0; k < T; k++) {
        const int64_t step = reverse ? T - 1 - k : k;
        char tag[TG_NAME_MAX];
        snprintf(tag, sizeof tag, "%lld%s", (long long)step, suffix ? suffix : "");
        s = tg_cell_step_composite(t, kind, w, tg_select(t, x, 0, step), s.h, s.c, tag);
        steps[step] = tg_reshape(t, s.h, 3, (int64_t[]){1, B, P});
    }
    return (tg_rnn_result){tg_concat(t, steps, (int)T, 0), s.h, s.c};
}

tg_tensor *tg_rnn_find_named(const tg_tape *t, const char *name) {
    TG_CHECK_ARG(t);
    TG_CHECK_ARG(name);
    for (size_t i = tg_tape_node_count(t); i-- > 0;) {
        const tg_node *node = tg_tape_node(t, i);
        for (int k = 0; k < node->n_out; k++)
            if (strcmp(node->out[k]->name, name) == 0) return node->out[k];
    }
    return NULL;
}
