/* nn.RNN / nn.GRU / nn.LSTM and nn.RNNCell / nn.GRUCell / nn.LSTMCell: parameters under
 * PyTorch's names, PyTorch's default init, and the forward passes that stack layers and
 * directions out of the fused (autograd/rnn*.c) or composite (autograd/rnn_composite.c) steps.
 * Each module (cell) type is a struct whose first member is a tg_recurrent (tg_cell): the
 * three types share one implementation, which works on that member. */
#include "tapegrad/nn.h"
#include "tapegrad/rnn.h"

#include <stdio.h>
#include <stdlib.h>

tg_rnn_options tg_rnn_defaults(int64_t input_size, int64_t hidden_size) {
    return (tg_rnn_options){.input_size = input_size,
                            .hidden_size = hidden_size,
                            .num_layers = 1,
                            .bias = true,
                            .reset_after = true};
}

tg_cell_options tg_cell_defaults(int64_t input_size, int64_t hidden_size) {
    return (tg_cell_options){
        .input_size = input_size, .hidden_size = hidden_size, .bias = true, .reset_after = true};
}

/* The concrete cell kind for a module family and its options. */
static tg_cell_kind kind_for(tg_cell_kind family, tg_rnn_nonlinearity act, bool reset_after,
                             const char *op) {
    if (family == TG_CELL_RNN_TANH) {
        if (act != TG_RNN_TANH && act != TG_RNN_RELU)
            tg_fail("%s: nonlinearity %d is neither TG_RNN_TANH nor TG_RNN_RELU", op, (int)act);
        return act == TG_RNN_RELU ? TG_CELL_RNN_RELU : TG_CELL_RNN_TANH;
    }
    if (family == TG_CELL_GRU) return reset_after ? TG_CELL_GRU : TG_CELL_GRU_CHO;
    return family;
}

/* The module family of a cell kind, the inverse of kind_for. */
static tg_cell_kind family_of(tg_cell_kind kind) {
    if (kind == TG_CELL_RNN_RELU) return TG_CELL_RNN_TANH;
    if (kind == TG_CELL_GRU_CHO) return TG_CELL_GRU;
    return kind;
}

/* A parameter of `rows` x `cols` (cols 0: a vector), drawn U(±1/√H) now: PyTorch draws
 * every RNN parameter with that bound, in registration order. */
static tg_tensor *new_param(tg_module *m, const char *name, int64_t rows, int64_t cols, int64_t H) {
    tg_tensor *p = cols ? tg_tensor_new(TG_SHAPE(rows, cols)) : tg_tensor_new(TG_SHAPE(rows));
    tg_tensor_requires_grad(p, true);
    tg_init_uniform_fan(p, H, NULL);
    tg_module_add_param(m, name, p);
    return p;
}

/* PyTorch's repr: "LSTM(3, 4, proj_size=2, num_layers=2, bias=False, batch_first=True,
 * dropout=0.5, bidirectional=True)", the options that differ from the defaults. */
static void recurrent_repr(const tg_module *mod, char *buf, size_t size) {
    const tg_rnn_options *o = &((const tg_recurrent *)mod)->options;
    int n = snprintf(buf, size, "%lld, %lld", (long long)o->input_size, (long long)o->hidden_size);
#define PUT(...)                                                                                   \
    if (n >= 0 && (size_t)n < size) n += snprintf(buf + n, size - (size_t)n, __VA_ARGS__)
    if (o->proj_size != 0) PUT(", proj_size=%lld", (long long)o->proj_size);
    if (o->num_layers != 1) PUT(", num_layers=%lld", (long long)o->num_layers);
    if (!o->bias) PUT(", bias=False");
    if (o->batch_first) PUT(", batch_first=True");
    if (o->dropout != 0) PUT(", dropout=%g", (double)o->dropout);
    if (o->bidirectional) PUT(", bidirectional=True");
}

static void cell_repr(const tg_module *mod, char *buf, size_t size) {
    const tg_cell_options *o = &((const tg_cell *)mod)->options;
    const tg_cell_kind kind = ((const tg_cell *)mod)->kind;
    int n = snprintf(buf, size, "%lld, %lld", (long long)o->input_size, (long long)o->hidden_size);
    if (!o->bias) PUT(", bias=False");
    if (kind == TG_CELL_RNN_RELU) PUT(", nonlinearity=relu");
#undef PUT
}

static void recurrent_release(tg_module *m) { free(((tg_recurrent *)m)->weights); }

static const tg_module_type rnn_type = {"RNN", recurrent_release, recurrent_repr};
static const tg_module_type gru_type = {"GRU", recurrent_release, recurrent_repr};
static const tg_module_type lstm_type = {"LSTM", recurrent_release, recurrent_repr};
static const tg_module_type rnn_cell_type = {"RNNCell", NULL, cell_repr};
static const tg_module_type gru_cell_type = {"GRUCell", NULL, cell_repr};
static const tg_module_type lstm_cell_type = {"LSTMCell", NULL, cell_repr};

static const tg_module_type *type_of(tg_cell_kind family, bool cell) {
    if (family == TG_CELL_RNN_TANH) return cell ? &rnn_cell_type : &rnn_type;
    if (family == TG_CELL_GRU) return cell ? &gru_cell_type : &gru_type;
    return cell ? &lstm_cell_type : &lstm_type;
}

/* ------------------------------------------------------------------------------------------
 * nn.RNN / nn.GRU / nn.LSTM
 * ---------------------------------------------------------------------------------------- */
/* A module of `size` bytes (a tg_rnn, tg_gru or tg_lstm) with its tg_recurrent built: the
 * first member, at the module's own address. */
static void *recurrent_new(size_t size, tg_cell_kind family, tg_rnn_options o, const char *op) {
    if (o.input_size <= 0 || o.hidden_size <= 0 || o.num_layers <= 0)
        tg_fail("%s: input_size %lld, hidden_size %lld and num_layers %lld must be positive", op,
                (long long)o.input_size, (long long)o.hidden_size, (long long)o.num_layers);
    if (!(o.dropout >= 0 && o.dropout <= 1))
        tg_fail("%s: dropout %g must be in [0, 1]", op, (double)o.dropout);
    if (o.exec != TG_RNN_FUSED && o.exec != TG_RNN_COMPOSITE)
        tg_fail("%s: exec %d is neither TG_RNN_FUSED nor TG_RNN_COMPOSITE", op, (int)o.exec);
    /* PyTorch's three checks, in its order */
    if (o.proj_size < 0)
        tg_fail("%s: proj_size %lld should be a positive integer, or zero to disable "
                "projections",
                op, (long long)o.proj_size);
    if (o.proj_size >= o.hidden_size)
        tg_fail("%s: proj_size %lld has to be smaller than hidden_size %lld", op,
                (long long)o.proj_size, (long long)o.hidden_size);
    if (o.proj_size != 0 && family != TG_CELL_LSTM)
        tg_fail("%s: proj_size %lld is only supported for LSTM, not RNN or GRU", op,
                (long long)o.proj_size);
    tg_recurrent *m = tg_xcalloc(1, size);
    m->kind = kind_for(family, o.nonlinearity, o.reset_after, op);
    m->options = o;
    m->num_directions = o.bidirectional ? 2 : 1;
    tg_module_init(&m->module, type_of(family, false));
    m->weights = tg_xcalloc((size_t)(o.num_layers * m->num_directions), sizeof *m->weights);
    const int64_t H = o.hidden_size, GH = tg_cell_gate_count(m->kind) * H;
    const int64_t P = o.proj_size ? o.proj_size : H; /* h's features */
    for (int64_t l = 0; l < o.num_layers; l++)
        for (int64_t d = 0; d < m->num_directions; d++) {
            tg_cell_weights *w = &m->weights[l * m->num_directions + d];
            const int64_t in = l == 0 ? o.input_size : m->num_directions * P;
            char name[64];
            const char *rev = d ? "_reverse" : "";
            snprintf(name, sizeof name, "weight_ih_l%lld%s", (long long)l, rev);
            w->w_ih = new_param(&m->module, name, GH, in, H);
            snprintf(name, sizeof name, "weight_hh_l%lld%s", (long long)l, rev);
            w->w_hh = new_param(&m->module, name, GH, P, H);
            if (o.bias) {
                snprintf(name, sizeof name, "bias_ih_l%lld%s", (long long)l, rev);
                w->b_ih = new_param(&m->module, name, GH, 0, H);
                snprintf(name, sizeof name, "bias_hh_l%lld%s", (long long)l, rev);
                w->b_hh = new_param(&m->module, name, GH, 0, H);
            }
            if (o.proj_size) { /* PyTorch's order: after the biases; no bias of its own */
                snprintf(name, sizeof name, "weight_hr_l%lld%s", (long long)l, rev);
                w->w_hr = new_param(&m->module, name, P, H, H);
            }
        }
    return m;
}

tg_rnn *tg_rnn_new(tg_rnn_options o) {
    return recurrent_new(sizeof(tg_rnn), TG_CELL_RNN_TANH, o, "tg_rnn_new");
}
tg_gru *tg_gru_new(tg_rnn_options o) {
    return recurrent_new(sizeof(tg_gru), TG_CELL_GRU, o, "tg_gru_new");
}
tg_lstm *tg_lstm_new(tg_rnn_options o) {
    return recurrent_new(sizeof(tg_lstm), TG_CELL_LSTM, o, "tg_lstm_new");
}

/* The entry checks of a module's or a cell's forward (`op`): the tape, the input and the
 * states given (NULL states are zeros). */
static void forward_entry_check(const char *op, tg_tape *t, const tg_tensor *x, const char *h_name,
                                const tg_tensor *h, const char *c_name, const tg_tensor *c) {
    if (!t) tg_fail_null_argument(op, "t");
    tg_tape_check_input(t, op, "x", x);
    if (h) tg_tape_check_input(t, op, h_name, h);
    if (c) tg_tape_check_input(t, op, c_name, c);
}

/* An initial state must be (D·layers, N, H) (unbatched: (D·layers, H)); `size` names H in
 * the message ("hidden_size", or "proj_size" for an LSTM's projected h0). */
static void check_initial_state(const char *op, const char *what, const tg_tensor *s, bool batched,
                                int64_t DL, int64_t N, int64_t H, const char *size) {
    if (!s) return;
    const bool ok = batched
                        ? s->ndim == 3 && s->shape[0] == DL && s->shape[1] == N && s->shape[2] == H
                        : s->ndim == 2 && s->shape[0] == DL && s->shape[1] == H;
    if (ok) return;
    char d[160], want[96];
    if (batched)
        tg_shape_format(3, (int64_t[]){DL, N, H}, want, sizeof want);
    else
        tg_shape_format(2, (int64_t[]){DL, H}, want, sizeof want);
    tg_fail("%s: %s %s has the wrong shape, expected %s (num_directions·num_layers, %s%s)", op,
            what, tg_tensor_describe(s, d, sizeof d), want, batched ? "batch, " : "", size);
}

static tg_rnn_result recurrent_forward(tg_recurrent *m, tg_tape *t, const char *op,
                                       tg_cell_kind family, tg_tensor *x, tg_tensor *h0,
                                       tg_tensor *c0) {
    char d[160];
    forward_entry_check(op, t, x, "h0", h0, "c0", c0);
    const tg_rnn_options *o = &m->options;
    if (kind_for(family, o->nonlinearity, o->reset_after, op) != m->kind)
        tg_fail("%s: the module was built as a %s; its options (nonlinearity, reset_after) no "
                "longer say so",
                op, tg_cell_kind_name(m->kind));
    const int64_t built_proj = m->weights[0].w_hr ? m->weights[0].w_hr->shape[0] : 0;
    if (o->proj_size != built_proj)
        tg_fail("%s: the module was built with proj_size %lld; its options say %lld", op,
                (long long)built_proj, (long long)o->proj_size);
    if (!x || (x->ndim != 2 && x->ndim != 3))
        tg_fail("%s: input %s should be 3-D (%s) or 2-D (seq_len, input_size) unbatched", op,
                x ? tg_tensor_describe(x, d, sizeof d) : "NULL",
                o->batch_first ? "batch, seq_len, input_size" : "seq_len, batch, input_size");
    if (x->shape[x->ndim - 1] != o->input_size)
        tg_fail("%s: input %s has %lld features, expected input_size %lld", op,
                tg_tensor_describe(x, d, sizeof d), (long long)x->shape[x->ndim - 1],
                (long long)o->input_size);
    const bool batched = x->ndim == 3;
    const int64_t D = m->num_directions, L = o->num_layers, H = o->hidden_size, DL = D * L;
    const int64_t P = o->proj_size ? o->proj_size : H; /* h's features */
    const int64_t N = batched ? x->shape[o->batch_first ? 0 : 1] : 1;
    const int64_t T = batched ? x->shape[o->batch_first ? 1 : 0] : x->shape[0];
    if (T < 1) tg_fail("%s: input %s is an empty sequence", op, tg_tensor_describe(x, d, sizeof d));
    check_initial_state(op, "h0", h0, batched, DL, N, P,
                        o->proj_size ? "proj_size" : "hidden_size");
    check_initial_state(op, "c0", c0, batched, DL, N, H, "hidden_size");

    /* everything below works sequence-first and batched: (T, N, features) */
    tg_tensor *seq = !batched         ? tg_reshape(t, x, 3, (int64_t[]){T, 1, o->input_size})
                     : o->batch_first ? tg_transpose(t, x, 0, 1)
                                      : x;
    if (!batched && h0) h0 = tg_reshape(t, h0, 3, (int64_t[]){DL, 1, P});
    if (!batched && c0) c0 = tg_reshape(t, c0, 3, (int64_t[]){DL, 1, H});

    tg_tensor **h_n = tg_tape_alloc(t, (size_t)DL * sizeof *h_n);
    tg_tensor **c_n = tg_tape_alloc(t, (size_t)DL * sizeof *c_n);
    for (int64_t l = 0; l < L; l++) {
        tg_tensor *outs[2];
        for (int64_t dir = 0; dir < D; dir++) {
            const int64_t k = l * D + dir; /* h_n / c_n index: layer·D + direction */
            tg_tensor *h0k = h0 ? tg_select(t, h0, 0, k) : NULL;
            tg_tensor *c0k = c0 ? tg_select(t, c0, 0, k) : NULL;
            tg_rnn_result r;
            if (o->exec == TG_RNN_FUSED) {
                r = tg_rnn_sequence_fused(t, m->kind, &m->weights[k], seq, h0k, c0k, dir == 1);
            } else { /* names "z_3" for layer 0 forward, "z_3_l1", "z_3_reverse", ... */
                char layer[24] = "", suffix[48];
                if (l > 0) snprintf(layer, sizeof layer, "_l%lld", (long long)l);
                snprintf(suffix, sizeof suffix, "%s%s", layer, dir == 1 ? "_reverse" : "");
                r = tg_rnn_sequence_composite(t, m->kind, &m->weights[k], seq, h0k, c0k, dir == 1,
                                              suffix);
            }
            outs[dir] = r.output;
            h_n[k] = tg_reshape(t, r.h_n, 3, (int64_t[]){1, N, P});
            if (r.c_n) c_n[k] = tg_reshape(t, r.c_n, 3, (int64_t[]){1, N, H});
        }
        seq = D == 2 ? tg_concat(t, outs, 2, 2) : outs[0]; /* features [forward | reverse] */
        /* dropout on every layer's output but the last, in training only */
        if (l < L - 1 && o->dropout > 0 && m->module.training)
            seq = tg_dropout(t, seq, o->dropout, true, NULL);
    }
    tg_rnn_result res = {seq, DL == 1 ? h_n[0] : tg_concat(t, h_n, (int)DL, 0), NULL};
    if (m->kind == TG_CELL_LSTM) res.c_n = DL == 1 ? c_n[0] : tg_concat(t, c_n, (int)DL, 0);
    if (!batched) {
        res.output = tg_reshape(t, res.output, 2, (int64_t[]){T, D * P});
        res.h_n = tg_reshape(t, res.h_n, 2, (int64_t[]){DL, P});
        if (res.c_n) res.c_n = tg_reshape(t, res.c_n, 2, (int64_t[]){DL, H});
    } else if (o->batch_first) {
        res.output = tg_transpose(t, res.output, 0, 1);
    }
    return res;
}

tg_rnn_result tg_rnn_forward(tg_rnn *m, tg_tape *t, tg_tensor *x, tg_tensor *h0) {
    TG_CHECK_ARG(m);
    return recurrent_forward(&m->base, t, __func__, TG_CELL_RNN_TANH, x, h0, NULL);
}

tg_rnn_result tg_gru_forward(tg_gru *m, tg_tape *t, tg_tensor *x, tg_tensor *h0) {
    TG_CHECK_ARG(m);
    return recurrent_forward(&m->base, t, __func__, TG_CELL_GRU, x, h0, NULL);
}

tg_rnn_result tg_lstm_forward(tg_lstm *m, tg_tape *t, tg_tensor *x, tg_tensor *h0, tg_tensor *c0) {
    TG_CHECK_ARG(m);
    return recurrent_forward(&m->base, t, __func__, TG_CELL_LSTM, x, h0, c0);
}

tg_rnn_result tg_recurrent_forward(tg_recurrent *m, tg_tape *t, tg_tensor *x, tg_tensor *h0,
                                   tg_tensor *c0) {
    TG_CHECK_ARG(m);
    if (c0 && m->kind != TG_CELL_LSTM)
        tg_fail("tg_recurrent_forward: c0 is for an LSTM, and the module is a %s",
                tg_cell_kind_name(m->kind));
    return recurrent_forward(m, t, "tg_recurrent_forward", family_of(m->kind), x, h0, c0);
}

/* ------------------------------------------------------------------------------------------
 * nn.RNNCell / nn.GRUCell / nn.LSTMCell
 * ---------------------------------------------------------------------------------------- */
/* A cell of `size` bytes (a tg_rnn_cell, tg_gru_cell or tg_lstm_cell) with its tg_cell built:
 * the first member, at the cell's own address. */
static void *cell_new(size_t size, tg_cell_kind family, tg_cell_options o, const char *op) {
    if (o.input_size <= 0 || o.hidden_size <= 0)
        tg_fail("%s: input_size %lld and hidden_size %lld must be positive", op,
                (long long)o.input_size, (long long)o.hidden_size);
    if (o.exec != TG_RNN_FUSED && o.exec != TG_RNN_COMPOSITE)
        tg_fail("%s: exec %d is neither TG_RNN_FUSED nor TG_RNN_COMPOSITE", op, (int)o.exec);
    tg_cell *m = tg_xcalloc(1, size);
    m->kind = kind_for(family, o.nonlinearity, o.reset_after, op);
    m->options = o;
    tg_module_init(&m->module, type_of(family, true));
    const int64_t H = o.hidden_size, GH = tg_cell_gate_count(m->kind) * H;
    m->weight_ih = new_param(&m->module, "weight_ih", GH, o.input_size, H);
    m->weight_hh = new_param(&m->module, "weight_hh", GH, H, H);
    if (o.bias) {
        m->bias_ih = new_param(&m->module, "bias_ih", GH, 0, H);
        m->bias_hh = new_param(&m->module, "bias_hh", GH, 0, H);
    }
    return m;
}

tg_rnn_cell *tg_rnn_cell_new(tg_cell_options o) {
    return cell_new(sizeof(tg_rnn_cell), TG_CELL_RNN_TANH, o, "tg_rnn_cell_new");
}
tg_gru_cell *tg_gru_cell_new(tg_cell_options o) {
    return cell_new(sizeof(tg_gru_cell), TG_CELL_GRU, o, "tg_gru_cell_new");
}
tg_lstm_cell *tg_lstm_cell_new(tg_cell_options o) {
    return cell_new(sizeof(tg_lstm_cell), TG_CELL_LSTM, o, "tg_lstm_cell_new");
}

/* A state must be shaped like the batch: (N, H), or (H) for an unbatched input. */
static void check_cell_state(const char *op, const char *what, const tg_tensor *s, bool batched,
                             int64_t N, int64_t H) {
    if (!s) return;
    if (batched ? s->ndim == 2 && s->shape[0] == N && s->shape[1] == H
                : s->ndim == 1 && s->shape[0] == H)
        return;
    char d[160], want[64];
    if (batched)
        tg_shape_format(2, (int64_t[]){N, H}, want, sizeof want);
    else
        tg_shape_format(1, (int64_t[]){H}, want, sizeof want);
    tg_fail("%s: %s %s has the wrong shape, expected %s (%shidden_size)", op, what,
            tg_tensor_describe(s, d, sizeof d), want, batched ? "batch, " : "");
}

static tg_rnn_state cell_forward(tg_cell *m, tg_tape *t, const char *op, tg_cell_kind family,
                                 tg_tensor *x, tg_tensor *h, tg_tensor *c) {
    char d[160];
    forward_entry_check(op, t, x, "h", h, "c", c);
    const tg_cell_options *o = &m->options;
    if (kind_for(family, o->nonlinearity, o->reset_after, op) != m->kind)
        tg_fail("%s: the cell was built as a %s; its options (nonlinearity, reset_after) no "
                "longer say so",
                op, tg_cell_kind_name(m->kind));
    if (!x || (x->ndim != 1 && x->ndim != 2))
        tg_fail("%s: input %s should be 2-D (batch, input_size) or 1-D (input_size)", op,
                x ? tg_tensor_describe(x, d, sizeof d) : "NULL");
    if (x->shape[x->ndim - 1] != o->input_size)
        tg_fail("%s: input %s has %lld features, expected input_size %lld", op,
                tg_tensor_describe(x, d, sizeof d), (long long)x->shape[x->ndim - 1],
                (long long)o->input_size);
    const bool batched = x->ndim == 2;
    const int64_t N = batched ? x->shape[0] : 1, H = o->hidden_size;
    check_cell_state(op, "h", h, batched, N, H);
    check_cell_state(op, "c", c, batched, N, H);
    if (!batched) {
        x = tg_reshape(t, x, 2, (int64_t[]){1, o->input_size});
        if (h) h = tg_reshape(t, h, 2, (int64_t[]){1, H});
        if (c) c = tg_reshape(t, c, 2, (int64_t[]){1, H});
    }
    const tg_cell_weights w = {m->weight_ih, m->weight_hh, m->bias_ih, m->bias_hh, NULL};
    tg_rnn_state s = o->exec == TG_RNN_FUSED
                         ? tg_cell_step_fused(t, m->kind, &w, x, h, c)
                         : tg_cell_step_composite(t, m->kind, &w, x, h, c, NULL);
    if (!batched) {
        s.h = tg_reshape(t, s.h, 1, (int64_t[]){H});
        if (s.c) s.c = tg_reshape(t, s.c, 1, (int64_t[]){H});
    }
    return s;
}

tg_tensor *tg_rnn_cell_forward(tg_rnn_cell *m, tg_tape *t, tg_tensor *x, tg_tensor *h) {
    TG_CHECK_ARG(m);
    return cell_forward(&m->base, t, __func__, TG_CELL_RNN_TANH, x, h, NULL).h;
}

tg_tensor *tg_gru_cell_forward(tg_gru_cell *m, tg_tape *t, tg_tensor *x, tg_tensor *h) {
    TG_CHECK_ARG(m);
    return cell_forward(&m->base, t, __func__, TG_CELL_GRU, x, h, NULL).h;
}

tg_rnn_state tg_lstm_cell_forward(tg_lstm_cell *m, tg_tape *t, tg_tensor *x, tg_tensor *h,
                                  tg_tensor *c) {
    TG_CHECK_ARG(m);
    return cell_forward(&m->base, t, __func__, TG_CELL_LSTM, x, h, c);
}

tg_rnn_state tg_cell_forward(tg_cell *m, tg_tape *t, tg_tensor *x, tg_tensor *h, tg_tensor *c) {
    TG_CHECK_ARG(m);
    if (c && m->kind != TG_CELL_LSTM)
        tg_fail("tg_cell_forward: c is for an LSTM cell, and the cell is a %s",
                tg_cell_kind_name(m->kind));
    return cell_forward(m, t, "tg_cell_forward", family_of(m->kind), x, h, c);
}
