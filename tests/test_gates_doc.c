/* Seeing backprop through gates, tested:
 *  - docs/backprop-through-gates.md: every number of its worked examples is recomputed here
 *    with the library (composite cells for the gates and their gradients, the fused cells for
 *    the parameter gradients) and the test fails if the document and the code disagree; its
 *    pointers into the fused backward (function + statement) must still be in the code;
 *  - the DOT writer (parsed back: node and edge counts, names, clusters);
 *  - anomaly mode, forward and backward;
 *  - the gate trace and the picture writers (PNG files read back: size, colours).
 *
 * The numbers of the document come from this program: `test_gates_doc_f64 --emit` prints
 * the blocks to paste into the document after changing an example. */
#include "harness.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

#include <stb_image.h>
#include "../examples/gate_pictures.h"

/* The document (TG_GATES_DOC overrides the path, to try the test on an edited copy). */
static const char *doc_path(void) {
    const char *env = getenv("TG_GATES_DOC");
    return env && *env ? env : TG_FIXTURES_DIR "/../../docs/backprop-through-gates.md";
}
#define DOC_PATH doc_path()
#define SRC_DIR  TG_FIXTURES_DIR "/../.."

/* =========================================================================================
 * The document's worked examples
 * ======================================================================================= */

/* A named list of numbers: one line "name = v" or "name = [v0, v1, ...]" of a block.
 * Inputs (exact) are printed with %g, computed values with 6 decimals; a comment line of
 * the block ("# forward") is kept as an entry with n = -1 so --emit can print it. */
typedef struct doc_value {
    char name[96];
    double v[24];
    int n;
    bool exact;
} doc_value;

typedef struct doc_case {
    const char *id; /* "gru", "gru_cho", "lstm": the block's marker */
    doc_value vals[64];
    int n;
} doc_case;

static void case_put(doc_case *c, const char *name, const tg_real *v, int64_t n) {
    assert_true(c->n < 64 && n <= 24);
    doc_value *d = &c->vals[c->n++];
    snprintf(d->name, sizeof d->name, "%s", name);
    d->n = (int)n;
    d->exact = false;
    for (int64_t i = 0; i < n; i++) d->v[i] = (double)v[i];
}

static void case_put_exact(doc_case *c, const char *name, const tg_real *v, int64_t n) {
    case_put(c, name, v, n);
    c->vals[c->n - 1].exact = true;
}

static void case_comment(doc_case *c, const char *text) {
    assert_true(c->n < 64);
    doc_value *d = &c->vals[c->n++];
    snprintf(d->name, sizeof d->name, "%s", text);
    d->n = -1;
}

static void case_put_tensor(doc_case *c, const char *name, const tg_tensor *t) {
    case_put(c, name, t->data, t->numel);
}

static void case_put_grad(doc_case *c, const char *name, const tg_tensor *t) {
    if (!t->grad) fail_msg("%s: %s has no gradient", c->id, name);
    case_put(c, name, t->grad, t->numel);
}

/* A run of named tensors put in order: their values, or their gradients. */
typedef struct doc_entry {
    const char *name;
    const tg_tensor *t;
} doc_entry;

static void case_put_entries(doc_case *c, bool grads, const doc_entry *e, size_t n) {
    for (size_t k = 0; k < n; k++) {
        if (grads)
            case_put_grad(c, e[k].name, e[k].t);
        else
            case_put_tensor(c, e[k].name, e[k].t);
    }
}
#define CASE_PUT_VALUES(c, ...)                                                                    \
    case_put_entries(c, false, (const doc_entry[]){__VA_ARGS__},                                   \
                     sizeof((const doc_entry[]){__VA_ARGS__}) / sizeof(doc_entry))
#define CASE_PUT_GRADS(c, ...)                                                                     \
    case_put_entries(c, true, (const doc_entry[]){__VA_ARGS__},                                    \
                     sizeof((const doc_entry[]){__VA_ARGS__}) / sizeof(doc_entry))

/* The example's fixed numbers: H = 2, input size 2, batch 1, one step. The GRU's weights
 * have 3 gate blocks of 2 rows ([r | z | n]), the LSTM's 4 ([i | f | g | o]). */
static const tg_real EX_X[2] = {1.0, -0.5}, EX_H_PREV[2] = {0.4, -0.2}, EX_C_PREV[2] = {0.5, -0.3};
static const tg_real EX_V[2] = {1.0, -2.0}; /* L = v · h' */
static const tg_real GRU_W_IH[12] = {0.5, -0.3, 0.2, 0.4,  -0.4, 0.1,
                                     0.3, 0.6,  0.7, -0.2, -0.5, 0.3};
static const tg_real GRU_W_HH[12] = {0.1, 0.6, -0.3, 0.2, 0.5, -0.4, 0.2, 0.1, -0.6, 0.3, 0.4, 0.5};
static const tg_real GRU_B_IH[6] = {0.1, -0.1, 0.2, 0.0, -0.2, 0.1};
static const tg_real GRU_B_HH[6] = {0.0, 0.2, -0.1, 0.1, 0.1, -0.3};
static const tg_real LSTM_W_IH[16] = {0.5, -0.3, 0.2,  0.4, -0.4, 0.1, 0.3,  0.6,
                                      0.7, -0.2, -0.5, 0.3, 0.2,  0.5, -0.1, -0.4};
static const tg_real LSTM_W_HH[16] = {0.1,  0.6, -0.3, 0.2, 0.5,  -0.4, 0.2, 0.1,
                                      -0.6, 0.3, 0.4,  0.5, -0.2, 0.3,  0.6, -0.1};
static const tg_real LSTM_B_IH[8] = {0.1, -0.1, 0.2, 0.0, -0.2, 0.1, 0.0, 0.3};
static const tg_real LSTM_B_HH[8] = {0.0, 0.2, -0.1, 0.1, 0.3, -0.3, 0.1, -0.2};

static tg_tensor *param_from(const tg_real *v, int ndim, const int64_t *shape) {
    return tg_tensor_requires_grad(tg_tensor_from_array(ndim, shape, v), true);
}

static tg_cell_weights weights_new(tg_cell_kind kind) {
    const bool lstm = kind == TG_CELL_LSTM;
    const int64_t G = lstm ? 8 : 6;
    return (tg_cell_weights){param_from(lstm ? LSTM_W_IH : GRU_W_IH, TG_SHAPE(G, 2)),
                             param_from(lstm ? LSTM_W_HH : GRU_W_HH, TG_SHAPE(G, 2)),
                             param_from(lstm ? LSTM_B_IH : GRU_B_IH, TG_SHAPE(G)),
                             param_from(lstm ? LSTM_B_HH : GRU_B_HH, TG_SHAPE(G)), NULL};
}

static void weights_free(tg_cell_weights *w) {
    tg_tensor_free(w->w_ih), tg_tensor_free(w->w_hh);
    tg_tensor_free(w->b_ih), tg_tensor_free(w->b_hh);
}

static void weights_zero_grad(tg_cell_weights *w) {
    tg_tensor_zero_grad(w->w_ih), tg_tensor_zero_grad(w->w_hh);
    tg_tensor_zero_grad(w->b_ih), tg_tensor_zero_grad(w->b_hh);
}

/* An arena tensor (1, 2) from values; a leaf that requires grad if asked. */
static tg_tensor *row_tensor(tg_tape *tape, const tg_real *v, const char *name, bool grad) {
    tg_tensor *t = tg_tensor_named(tg_tape_tensor(tape, TG_SHAPE(1, 2)), name);
    tg_tensor_copy_from(t, v);
    return tg_tensor_requires_grad(t, grad);
}

/* The tensor the op that produced `t` read as input k (the pre-activation of a gate). */
static tg_tensor *producer_input(const tg_tape *tape, const tg_tensor *t, int k) {
    assert_true(t->node >= 0);
    return tg_tape_node(tape, (size_t)t->node)->in[k];
}

/* The other input of the first `op` node that reads `t` as input `k`. */
static tg_tensor *partner_of(const tg_tape *tape, const char *op, const tg_tensor *t, int k) {
    for (size_t i = 0; i < tg_tape_node_count(tape); i++) {
        const tg_node *node = tg_tape_node(tape, i);
        if (!strcmp(node->op, op) && node->n_in == 2 && node->in[k] == t) return node->in[1 - k];
    }
    fail_msg("no '%s' node reads %s", op, t->name);
    return NULL;
}

/* The output of the first `op` node that reads `t` as its input 0. */
static tg_tensor *consumer_of(const tg_tape *tape, const char *op, const tg_tensor *t) {
    for (size_t i = 0; i < tg_tape_node_count(tape); i++) {
        const tg_node *node = tg_tape_node(tape, i);
        if (!strcmp(node->op, op) && node->in[0] == t) return node->out[0];
    }
    fail_msg("no '%s' node reads %s", op, t->name);
    return NULL;
}

static tg_tensor *named(const tg_tape *tape, const char *name) {
    tg_tensor *t = tg_rnn_find_named(tape, name);
    if (!t) fail_msg("the composite step has no tensor '%s'", name);
    return t;
}

/* The example's inputs, exact: x, h_prev, c_prev (LSTM only), the weights W_ih, W_hh, b_ih,
 * b_hh (`gates` blocks of 2 rows) and v. */
static void case_put_inputs(doc_case *c, const char *comment, const tg_tensor *x,
                            const tg_tensor *h_prev, const tg_tensor *c_prev,
                            const tg_real *const weights[4], int64_t gates) {
    static const char *const names[4] = {"W_ih", "W_hh", "b_ih", "b_hh"};
    case_comment(c, comment);
    case_put_exact(c, "x", x->data, 2);
    case_put_exact(c, "h_prev", h_prev->data, 2);
    if (c_prev) case_put_exact(c, "c_prev", c_prev->data, 2);
    for (int k = 0; k < 4; k++)
        case_put_exact(c, names[k], weights[k], k < 2 ? 4 * gates : 2 * gates);
    case_put_exact(c, "v", EX_V, 2);
}

/* L = v · h' */
static tg_tensor *example_loss(tg_tape *tape, tg_tensor *h) {
    tg_tensor *v = tg_tape_tensor(tape, TG_SHAPE(1, 2));
    tg_tensor_copy_from(v, EX_V);
    return tg_sum(tape, tg_mul(tape, h, v));
}

/* Both GRU forms: forward values, each gate's gradient from the composite step (retained
 * gradients of the named gates and of the gates' inputs), the parameter gradients from the
 * fused step. */
static void compute_gru(doc_case *c, tg_cell_kind kind) {
    const bool cho = kind == TG_CELL_GRU_CHO;
    tg_cell_weights w = weights_new(kind);
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = row_tensor(tape, EX_X, "x", false);
    tg_tensor *h_prev = row_tensor(tape, EX_H_PREV, "h_prev", true);
    tg_tensor *h = tg_cell_step_composite(tape, kind, &w, x, h_prev, NULL, NULL).h;
    tg_tensor *r = named(tape, "r"), *z = named(tape, "z"), *n = named(tape, "n");
    tg_tensor *a_r = producer_input(tape, r, 0), *a_z = producer_input(tape, z, 0);
    tg_tensor *a_n = producer_input(tape, n, 0);
    /* PyTorch: hn = h_prev·W_hnᵀ + b_hn, which r multiplies; Cho: rh = r ⊙ h_prev */
    tg_tensor *mid = cho ? named(tape, "rh") : partner_of(tape, "mul", r, 0);
    tg_tensor *tracked[] = {r, z, n, a_r, a_z, a_n, mid, h};
    for (size_t k = 0; k < sizeof tracked / sizeof *tracked; k++) tg_tensor_retain_grad(tracked[k]);
    tg_tensor *loss = example_loss(tape, h);
    tg_tape_backward(tape, loss);

    case_put_inputs(c, "# inputs; weights row-major, gate blocks [r | z | n] of 2 rows", x, h_prev,
                    NULL, (const tg_real *const[]){GRU_W_IH, GRU_W_HH, GRU_B_IH, GRU_B_HH}, 3);
    case_comment(c, "# forward (composite step: the named gates and their inputs)");
    CASE_PUT_VALUES(c, {"a_r", a_r}, {"a_z", a_z}, {"r", r}, {"z", z}, {cho ? "rh" : "hn", mid},
                    {"a_n", a_n}, {"n", n}, {"h_new", h}, {"L", loss});
    case_comment(c, "# backward (composite step: retained gradients)");
    CASE_PUT_GRADS(c, {"dh", h}, {"dn", n}, {"dz", z}, {"da_n", a_n}, {cho ? "drh" : "dhn", mid},
                   {"dr", r}, {"da_r", a_r}, {"da_z", a_z});
    tg_real dh_z[2]; /* the direct term dh ⊙ z of dh_prev */
    for (int k = 0; k < 2; k++) dh_z[k] = h->grad[k] * z->data[k];
    case_put(c, "dh_z", dh_z, 2);
    case_put_grad(c, "dh_prev", h_prev);
    tg_tape_free(tape);

    /* the fused step: its backward is the code the document points at */
    weights_zero_grad(&w);
    tape = tg_tape_new();
    x = row_tensor(tape, EX_X, "x", false);
    h_prev = row_tensor(tape, EX_H_PREV, "h_prev", true);
    h = tg_cell_step_fused(tape, kind, &w, x, h_prev, NULL).h;
    tg_tape_backward(tape, example_loss(tape, h));
    case_comment(c, "# backward (fused step: autograd/rnn_gru.c)");
    CASE_PUT_GRADS(c, {"fused.dh_prev", h_prev}, {"fused.db_ih", w.b_ih}, {"fused.db_hh", w.b_hh},
                   {"fused.dW_hh", w.w_hh});
    tg_tape_free(tape);
    weights_free(&w);
}

static void compute_lstm(doc_case *c) {
    tg_cell_weights w = weights_new(TG_CELL_LSTM);
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = row_tensor(tape, EX_X, "x", false);
    tg_tensor *h_prev = row_tensor(tape, EX_H_PREV, "h_prev", true);
    tg_tensor *c_prev = row_tensor(tape, EX_C_PREV, "c_prev", true);
    tg_tensor *h = tg_cell_step_composite(tape, TG_CELL_LSTM, &w, x, h_prev, c_prev, NULL).h;
    tg_tensor *i = named(tape, "i"), *f = named(tape, "f"), *g = named(tape, "g");
    tg_tensor *o = named(tape, "o"), *cn = named(tape, "c");
    tg_tensor *a_i = producer_input(tape, i, 0), *a_f = producer_input(tape, f, 0);
    tg_tensor *a_g = producer_input(tape, g, 0), *a_o = producer_input(tape, o, 0);
    tg_tensor *tanh_c = consumer_of(tape, "tanh", cn);
    tg_tensor *tracked[] = {i, f, g, o, cn, a_i, a_f, a_g, a_o, h};
    for (size_t k = 0; k < sizeof tracked / sizeof *tracked; k++) tg_tensor_retain_grad(tracked[k]);
    tg_tensor *loss = example_loss(tape, h);
    tg_tape_backward(tape, loss);

    case_put_inputs(c, "# inputs; weights row-major, gate blocks [i | f | g | o] of 2 rows", x,
                    h_prev, c_prev,
                    (const tg_real *const[]){LSTM_W_IH, LSTM_W_HH, LSTM_B_IH, LSTM_B_HH}, 4);
    case_comment(c, "# forward (composite step)");
    CASE_PUT_VALUES(c, {"a_i", a_i}, {"a_f", a_f}, {"a_g", a_g}, {"a_o", a_o}, {"i", i}, {"f", f},
                    {"g", g}, {"o", o}, {"c_new", cn}, {"tanh_c", tanh_c}, {"h_new", h},
                    {"L", loss});
    case_comment(c, "# backward (composite step: retained gradients)");
    CASE_PUT_GRADS(c, {"dh", h}, {"do", o}, {"dc", cn}, {"di", i}, {"dg", g}, {"df", f},
                   {"da_i", a_i}, {"da_f", a_f}, {"da_g", a_g}, {"da_o", a_o}, {"dc_prev", c_prev},
                   {"dh_prev", h_prev});
    tg_tape_free(tape);

    weights_zero_grad(&w);
    tape = tg_tape_new();
    x = row_tensor(tape, EX_X, "x", false);
    h_prev = row_tensor(tape, EX_H_PREV, "h_prev", true);
    c_prev = row_tensor(tape, EX_C_PREV, "c_prev", true);
    h = tg_cell_step_fused(tape, TG_CELL_LSTM, &w, x, h_prev, c_prev).h;
    tg_tape_backward(tape, example_loss(tape, h));
    case_comment(c, "# backward (fused step: autograd/rnn_lstm.c)");
    CASE_PUT_GRADS(c, {"fused.dc_prev", c_prev}, {"fused.dh_prev", h_prev}, {"fused.db_ih", w.b_ih},
                   {"fused.dW_hh", w.w_hh});
    tg_tape_free(tape);
    weights_free(&w);
}

static void compute_case(doc_case *c) {
    if (!strcmp(c->id, "lstm"))
        compute_lstm(c);
    else
        compute_gru(c, !strcmp(c->id, "gru_cho") ? TG_CELL_GRU_CHO : TG_CELL_GRU);
}

/* The block as it appears in the document (what --emit prints). */
#define BLOCK_MARKER "# checked by tests/test_gates_doc.c:"

static void case_print(const doc_case *c, FILE *f) {
    fprintf(f, "```text\n%s %s\n", BLOCK_MARKER, c->id);
    for (int k = 0; k < c->n; k++) {
        const doc_value *d = &c->vals[k];
        if (d->n < 0) {
            fprintf(f, "%s\n", d->name);
            continue;
        }
        fprintf(f, "%-13s = ", d->name);
        const char *fmt = d->exact ? "%s%g" : "%s%.6f";
        if (d->n == 1)
            fprintf(f, fmt, "", d->v[0]);
        else {
            fputc('[', f);
            for (int i = 0; i < d->n; i++) fprintf(f, fmt, i ? ", " : "", d->v[i]);
            fputc(']', f);
        }
        fputc('\n', f);
    }
    fputs("```\n", f);
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    const long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    assert_true(fread(text, 1, (size_t)size, f) == (size_t)size);
    text[size] = '\0';
    fclose(f);
    return text;
}

/* Parses the block of case `id` out of the document into `out` (fails if it is absent). */
static void doc_parse(const char *doc, const char *id, doc_case *out) {
    char marker[96];
    snprintf(marker, sizeof marker, "%s %s\n", BLOCK_MARKER, id);
    const char *p = strstr(doc, marker);
    if (!p) fail_msg("%s: no block marked '%s %s'", DOC_PATH, BLOCK_MARKER, id);
    p += strlen(marker);
    out->id = id;
    out->n = 0;
    while (*p && strncmp(p, "```", 3) != 0) {
        const char *eol = strchr(p, '\n');
        if (!eol) eol = p + strlen(p);
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)(eol - p), p);
        p = *eol ? eol + 1 : eol;
        if (!line[0] || line[0] == '#') continue;
        char *eq = strchr(line, '=');
        if (!eq) fail_msg("%s, block %s: line without '=': %s", DOC_PATH, id, line);
        assert_true(out->n < 64);
        doc_value *d = &out->vals[out->n++];
        *eq = '\0';
        char *name = line, *end = eq;
        while (end > name && end[-1] == ' ') *--end = '\0';
        snprintf(d->name, sizeof d->name, "%.95s", name);
        d->n = 0;
        for (char *s = eq + 1; *s;) {
            if (strchr(" [],", *s)) {
                s++;
                continue;
            }
            char *next;
            const double v = strtod(s, &next);
            if (next == s) fail_msg("%s, block %s: bad number in '%s'", DOC_PATH, id, eq + 1);
            assert_true(d->n < 24);
            d->v[d->n++] = v;
            s = next;
        }
    }
}

/* The document is printed with 6 decimals: half a unit of the last place, plus the
 * precision of the build. */
#ifdef TG_DOUBLE
#define DOC_TOL 6e-7
#else
#define DOC_TOL 3e-6
#endif

static void check_doc_case(const char *id) {
    char *doc = read_text(DOC_PATH);
    doc_case want = {0}, got = {.id = id};
    doc_parse(doc, id, &want);
    compute_case(&got);
    int kept = 0; /* the comments are not compared */
    for (int k = 0; k < got.n; k++)
        if (got.vals[k].n >= 0) got.vals[kept++] = got.vals[k];
    got.n = kept;
    /* same names, same order, same numbers */
    for (int k = 0; k < got.n || k < want.n; k++) {
        if (k >= want.n)
            fail_msg("document block %s lacks '%s' (run --emit)", id, got.vals[k].name);
        if (k >= got.n) fail_msg("document block %s has an extra '%s'", id, want.vals[k].name);
        const doc_value *g = &got.vals[k], *w = &want.vals[k];
        if (strcmp(g->name, w->name))
            fail_msg("document block %s: line %d is '%s', the code computes '%s' (run --emit)", id,
                     k + 1, w->name, g->name);
        if (g->n != w->n)
            fail_msg("document block %s: '%s' has %d numbers, the code %d", id, w->name, w->n,
                     g->n);
        for (int i = 0; i < g->n; i++)
            if (!(fabs(g->v[i] - w->v[i]) <= DOC_TOL))
                fail_msg("document block %s: %s[%d] is %.6f in the document but %.9f in the code",
                         id, w->name, i, w->v[i], g->v[i]);
    }
    free(doc);
}

static void test_doc_gru(void **state) {
    (void)state;
    check_doc_case("gru");
}
static void test_doc_gru_cho(void **state) {
    (void)state;
    check_doc_case("gru_cho");
}
static void test_doc_lstm(void **state) {
    (void)state;
    check_doc_case("lstm");
}

/* The composite and the fused step agree on what the document shows once. */
static void test_doc_fused_equals_composite(void **state) {
    (void)state;
    const char *ids[] = {"gru", "gru_cho", "lstm"};
    for (int k = 0; k < 3; k++) {
        doc_case c = {.id = ids[k]};
        compute_case(&c);
        const doc_value *a = NULL, *b = NULL, *ca = NULL, *cb = NULL;
        for (int j = 0; j < c.n; j++) {
            if (!strcmp(c.vals[j].name, "dh_prev")) a = &c.vals[j];
            if (!strcmp(c.vals[j].name, "fused.dh_prev")) b = &c.vals[j];
            if (!strcmp(c.vals[j].name, "dc_prev")) ca = &c.vals[j];
            if (!strcmp(c.vals[j].name, "fused.dc_prev")) cb = &c.vals[j];
        }
        assert_non_null(a), assert_non_null(b);
        for (int i = 0; i < a->n; i++) assert_true(fabs(a->v[i] - b->v[i]) <= 1e-6);
        if (ca && cb)
            for (int i = 0; i < ca->n; i++) assert_true(fabs(ca->v[i] - cb->v[i]) <= 1e-6);
    }
}

/* Every number written with six decimals outside the blocks (the walkthroughs) is one of the
 * computed values (up to its sign, which the prose may typeset as "−"). */
static void test_doc_prose_numbers(void **state) {
    (void)state;
    char *doc = read_text(DOC_PATH);
    const char *ids[] = {"gru", "gru_cho", "lstm"};
    static doc_case cases[3];
    for (int k = 0; k < 3; k++) {
        cases[k] = (doc_case){.id = ids[k]};
        compute_case(&cases[k]);
    }
    int checked = 0;
    bool in_block = false;
    for (const char *line = doc; line && *line;) {
        const char *eol = strchr(line, '\n');
        const size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (!strncmp(line, "```", 3)) in_block = !in_block;
        for (size_t i = 0; !in_block && i < len; i++) {
            /* digits '.' six digits, not part of a longer number */
            if (!(line[i] >= '0' && line[i] <= '9') ||
                (i && (line[i - 1] == '.' || (line[i - 1] >= '0' && line[i - 1] <= '9'))))
                continue;
            size_t j = i;
            while (j < len && line[j] >= '0' && line[j] <= '9') j++;
            if (j + 7 > len || line[j] != '.') continue;
            bool six = true;
            for (size_t k = j + 1; k < j + 7; k++) six = six && line[k] >= '0' && line[k] <= '9';
            if (!six || (j + 7 < len && line[j + 7] >= '0' && line[j + 7] <= '9')) continue;
            const double v = strtod(line + i, NULL);
            bool found = false;
            for (int c = 0; c < 3 && !found; c++)
                for (int k = 0; k < cases[c].n && !found; k++)
                    for (int m = 0; m < cases[c].vals[k].n && !found; m++)
                        found = fabs(fabs(cases[c].vals[k].v[m]) - v) <= DOC_TOL;
            if (!found)
                fail_msg("docs/backprop-through-gates.md: the number %.*s in \"%.*s\" is none of "
                         "the values the code computes",
                         (int)(j + 7 - i), line + i, (int)len, line);
            checked++;
            i = j + 6;
        }
        line = eol ? eol + 1 : NULL;
    }
    free(doc);
    assert_true(checked >= 80);
}

/* ---- code pointers ----
 * After a line "<!-- code: FILE -->", every table row "| ... | `function` | `statement` |"
 * says: this statement is in this function of FILE. Spaces are compared collapsed. */
static void collapse_spaces(char *s) {
    char *w = s;
    bool space = false;
    for (char *r = s; *r; r++) {
        if (*r == ' ' || *r == '\t' || *r == '\n') {
            space = true;
            continue;
        }
        if (space && w != s) *w++ = ' ';
        space = false;
        *w++ = *r;
    }
    *w = '\0';
}

/* The body of `function` in `src` (from its definition to the first "\n}"), collapsed. */
static char *function_body(const char *src, const char *file, const char *function) {
    char head[128];
    snprintf(head, sizeof head, " %s(", function);
    const char *p = src;
    while ((p = strstr(p, head))) { /* a definition starts a line with its return type */
        const char *line = p;
        while (line > src && line[-1] != '\n') line--;
        const char *brace = strchr(p, '{'), *semi = strchr(p, ';');
        if (line[0] != ' ' && brace && (!semi || brace < semi)) break;
        p += strlen(head);
    }
    if (!p) fail_msg("%s: no function %s (the document points at it)", file, function);
    const char *end = strstr(p, "\n}");
    if (!end) fail_msg("%s: %s has no end", file, function);
    char *body = strndup(p, (size_t)(end - p));
    collapse_spaces(body);
    return body;
}

/* The text between the n-th pair of backticks of `cell`, or NULL. */
static bool code_span(const char *cell, char *out, size_t len) {
    const char *a = strchr(cell, '`');
    if (!a) return false;
    const char *b = strchr(a + 1, '`');
    if (!b) return false;
    snprintf(out, len, "%.*s", (int)(b - a - 1), a + 1);
    return true;
}

static void test_doc_code_pointers(void **state) {
    (void)state;
    char *doc = read_text(DOC_PATH);
    int checked = 0, tables = 0;
    const char *p = doc;
    while ((p = strstr(p, "<!-- code: "))) {
        char file[128];
        p += strlen("<!-- code: ");
        const char *end = strstr(p, " -->");
        assert_non_null(end);
        snprintf(file, sizeof file, "%.*s", (int)(end - p), p);
        char path[512];
        snprintf(path, sizeof path, "%s/%s", SRC_DIR, file);
        char *src = read_text(path);
        tables++;
        /* the table rows that follow, up to the first line that is not a row */
        const char *line = strchr(end, '\n');
        while (line && line[1] == '\n') line++;
        while (line && line[1] == '|') {
            line++;
            const char *eol = strchr(line, '\n');
            char row[1024];
            snprintf(row, sizeof row, "%.*s", (int)(eol ? eol - line : (long)strlen(line)), line);
            line = eol;
            /* the cells: split on '|' outside backticks */
            char *cells[8];
            int n = 0;
            bool tick = false;
            for (char *s = row; *s && n < 8; s++) {
                if (*s == '`') tick = !tick;
                if (*s == '|' && !tick) {
                    *s = '\0';
                    cells[n++] = s + 1;
                }
            }
            if (n < 4) continue;
            char function[96], statement[512];
            if (!code_span(cells[n - 3], function, sizeof function) ||
                !code_span(cells[n - 2], statement, sizeof statement))
                continue; /* the header and the --- row */
            char *body = function_body(src, file, function);
            collapse_spaces(statement);
            if (!strstr(body, statement))
                fail_msg("docs/backprop-through-gates.md points at `%s` in %s() of %s, which is "
                         "not there any more: update the document",
                         statement, function, file);
            free(body);
            checked++;
        }
        free(src);
        p = end;
    }
    free(doc);
    assert_true(tables >= 3);
    assert_true(checked >= 20);
}

/* =========================================================================================
 * The DOT writer
 * ======================================================================================= */
static char temp_dir[64];

static const char *temp_path(const char *name) {
    static char path[128];
    if (!temp_dir[0]) {
        snprintf(temp_dir, sizeof temp_dir, "/tmp/tg_gates_XXXXXX");
        assert_non_null(mkdtemp(temp_dir));
    }
    snprintf(path, sizeof path, "%s/%s", temp_dir, name);
    return path;
}

static int count_lines_matching(const char *text, const char *prefix, const char *contains) {
    int count = 0;
    for (const char *line = text; line && *line;) {
        const char *eol = strchr(line, '\n');
        const size_t len = eol ? (size_t)(eol - line) : strlen(line);
        char buf[1024];
        snprintf(buf, sizeof buf, "%.*s", (int)len, line);
        const char *s = buf;
        while (*s == ' ') s++;
        if (!strncmp(s, prefix, strlen(prefix)) && (!contains || strstr(s, contains))) count++;
        line = eol ? eol + 1 : NULL;
    }
    return count;
}

/* One composite step of `kind` on the example (c_prev for the LSTM) and its loss, backward
 * run, the tape written as DOT into the temporary `file`; returns the text. */
static char *dot_of_step(tg_cell_kind kind, tg_cell_weights *w, tg_tape *tape, const char *file) {
    tg_tensor *x = row_tensor(tape, EX_X, "x", false);
    tg_tensor *h_prev = row_tensor(tape, EX_H_PREV, "h_prev", true);
    tg_tensor *c_prev = kind == TG_CELL_LSTM ? row_tensor(tape, EX_C_PREV, "c_prev", true) : NULL;
    tg_tensor_set_name(w->w_ih, "weight_ih"), tg_tensor_set_name(w->w_hh, "weight_hh");
    tg_tensor *h = tg_cell_step_composite(tape, kind, w, x, h_prev, c_prev, NULL).h;
    tg_tape_backward(tape, tg_tensor_named(example_loss(tape, h), "loss"));
    const char *path = temp_path(file);
    assert_int_equal(tg_tape_write_dot(tape, path), TG_OK);
    return read_text(path);
}

/* What a cell step's DOT holds: a digraph, one box per op, the 4 parameters in their
 * cluster, `leaves` leaves that require grad, and each of `named` (NULL-terminated) on one
 * op's label. */
static void check_step_dot(const char *dot, size_t n_ops, int leaves, const char *const *named) {
    assert_true(!strncmp(dot, "digraph tape {", 14));
    assert_int_equal(count_lines_matching(dot, "n", "shape=box"), (int)n_ops);
    assert_int_equal(count_lines_matching(dot, "subgraph cluster_parameters", NULL), 1);
    assert_int_equal(count_lines_matching(dot, "l", "fillcolor=\"#ffe08a\""), 4);
    assert_int_equal(count_lines_matching(dot, "l", "\\nleaf\""), leaves);
    for (const char *const *g = named; *g; g++)
        assert_int_equal(count_lines_matching(dot, "n", *g), 1);
}

static void test_dot_gru_step(void **state) {
    (void)state;
    tg_cell_weights w = weights_new(TG_CELL_GRU);
    tg_tape *tape = tg_tape_new();
    char *dot = dot_of_step(TG_CELL_GRU, &w, tape, "gru.dot");
    const size_t n = tg_tape_node_count(tape);
    int inputs = 0;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < tg_tape_node(tape, i)->n_in; k++)
            inputs += tg_tape_node(tape, i)->in[k] != NULL;

    assert_int_equal(count_lines_matching(dot, "n", "->") + count_lines_matching(dot, "l", "->"),
                     inputs); /* one edge per input */
    /* leaves: x and v constants, h_prev a leaf; r, z, n, h named once each */
    check_step_dot(dot, n, 1, (const char *[]){"'r'", "'z'", "'n'", "'h'", NULL});
    assert_int_equal(count_lines_matching(dot, "l", "const\""), 2);
    assert_non_null(strstr(dot, "label=\"weight_ih\\n(6, 2)\""));
    assert_non_null(strstr(dot, "label=\"h_prev\\n(1, 2)\\nleaf\""));
    /* the gates filled; the backward order: the loss first, node 0 last */
    assert_int_equal(count_lines_matching(dot, "n", "#bfe0ff"), 5); /* r, z, n, h, loss */
    char want[64];
    snprintf(want, sizeof want, "n%zu [label=\"#%zu sum\\n() 'loss'\\nbwd 1\"", n - 1, n - 1);
    assert_non_null(strstr(dot, want));
    snprintf(want, sizeof want, "\\nbwd %zu\"", n);
    assert_int_equal(count_lines_matching(dot, "n0 [", want), 1);
    /* the split's outputs go to the gates by position */
    assert_true(count_lines_matching(dot, "n", "out 2 -> in") >= 1);
    free(dot);

    /* an unwritable path is an error with a message, not a crash */
    assert_int_equal(tg_tape_write_dot(tape, "/nonexistent-dir/x.dot"), TG_ERR_IO);
    assert_non_null(strstr(tg_error_message(), "/nonexistent-dir/x.dot"));
    tg_tape_free(tape);
    weights_free(&w);
}

/* One composite LSTM step: the gates i, f, g, o and the states c, h named, c_prev a leaf. */
static void test_dot_lstm_step(void **state) {
    (void)state;
    tg_cell_weights w = weights_new(TG_CELL_LSTM);
    tg_tape *tape = tg_tape_new();
    char *dot = dot_of_step(TG_CELL_LSTM, &w, tape, "lstm.dot");
    /* h_prev and c_prev leaves; i, f, g, o, c, h named once each */
    check_step_dot(dot, tg_tape_node_count(tape), 2,
                   (const char *[]){"'i'", "'f'", "'g'", "'o'", "'c'", "'h'", NULL});
    assert_non_null(strstr(dot, "label=\"weight_hh\\n(8, 2)\""));
    assert_non_null(strstr(dot, "label=\"c_prev\\n(1, 2)\\nleaf\""));
    free(dot);
    tg_tape_free(tape);
    weights_free(&w);
}

/* Numbers on the boxes (tg_tape_write_dot_ex): the example's values and, with every
 * intermediate retained, its gradients: the numbers of this document's GRU block. */
static void test_dot_values_and_grads(void **state) {
    (void)state;
    tg_cell_weights w = weights_new(TG_CELL_GRU);
    tg_tensor_set_name(w.w_ih, "weight_ih");
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = row_tensor(tape, EX_X, "x", false);
    tg_tensor *h_prev = row_tensor(tape, EX_H_PREV, "h_prev", true);
    tg_tensor *h = tg_cell_step_composite(tape, TG_CELL_GRU, &w, x, h_prev, NULL, NULL).h;
    tg_tensor *loss = tg_tensor_named(example_loss(tape, h), "loss");
    for (size_t i = 0; i < tg_tape_node_count(tape); i++)
        tg_tensor_retain_grad(tg_tape_node(tape, i)->out[0]);
    tg_tape_backward(tape, loss);
    const char *path = temp_path("values.dot");
    const tg_dot_options o = {.values = true, .grads = true, .max_numel = 4, .digits = 6};
    assert_int_equal(tg_tape_write_dot_ex(tape, path, &o), TG_OK);
    char *dot = read_text(path);
    assert_non_null(strstr(dot, "'r'\\n= [0.661503, 0.485004]\\nd [-0.0837"));
    assert_non_null(strstr(dot, "'n'\\n= [0.436339, -0.582608]\\nd [0.517493, -0.92017]"));
    assert_non_null(strstr(dot, "'h'\\n= [0.418805, -0.376032]\\nd [1, -2]"));
    assert_non_null(strstr(dot, "'loss'\\n= 1.17087\\nd 1\\nbwd 1"));
    assert_non_null(strstr(dot, "h_prev\\n(1, 2)\\n= [0.4, -0.2]\\nd [0.142936, -1.16344]\\nleaf"));
    assert_non_null(strstr(dot, "x\\n(1, 2)\\n= [1, -0.5]\\nconst")); /* no gradient */
    assert_non_null(strstr(dot, "label=\"weight_ih\\n(6, 2)\""));     /* 12 > max_numel */
    free(dot);
    /* values only, at the default digits */
    assert_int_equal(tg_tape_write_dot_ex(tape, path, &(tg_dot_options){.values = true}), TG_OK);
    dot = read_text(path);
    assert_non_null(strstr(dot, "'r'\\n= [0.6615, 0.485]\\nbwd"));
    assert_non_null(strstr(dot, "weight_ih\\n(6, 2)\\n= [0.5, -0.3, "));
    assert_null(strstr(dot, "\\nd "));
    free(dot);
    /* NULL options: what tg_tape_write_dot writes */
    assert_int_equal(tg_tape_write_dot_ex(tape, path, NULL), TG_OK);
    dot = read_text(path);
    const char *plain = temp_path("plain.dot");
    char *copy = strcpy(tg_xmalloc(strlen(dot) + 1), dot);
    free(dot);
    assert_int_equal(tg_tape_write_dot(tape, plain), TG_OK);
    dot = read_text(plain);
    assert_string_equal(dot, copy);
    assert_null(strstr(dot, "\\n= "));
    free(dot), free(copy);
    assert_int_equal(tg_tape_write_dot_ex(tape, NULL, &o), TG_ERR_ARGUMENT);
    assert_string_equal(tg_error_message(), "tg_tape_write_dot_ex: argument 'path' is NULL");
    tg_tape_free(tape);
    weights_free(&w);
}

static void test_dot_escapes_and_empty(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    const char *path = temp_path("empty.dot");
    assert_int_equal(tg_tape_write_dot(tape, path), TG_OK); /* an empty tape is a valid graph */
    char *dot = read_text(path);
    assert_non_null(strstr(dot, "tape: 0 ops"));
    free(dot);
    tg_tensor *a = tg_tensor_named(tg_tape_tensor(tape, TG_SHAPE(2)), "say \"hi\"\\");
    tg_tensor_copy_from(a, (tg_real[]){1, 2});
    tg_tensor_requires_grad(a, true);
    tg_tensor_set_name(tg_mul(tape, a, a), "sq");
    assert_int_equal(tg_tape_write_dot(tape, path), TG_OK);
    dot = read_text(path);
    assert_non_null(strstr(dot, "label=\"say \\\"hi\\\"\\\\\\n(2,)\\nleaf\""));
    /* a tensor used twice is one leaf with two edges */
    assert_int_equal(count_lines_matching(dot, "l0 -> n0", NULL), 2);
    free(dot);
    tg_tape_free(tape);
}

/* =========================================================================================
 * Anomaly mode
 * ======================================================================================= */
static tg_tensor *arena_from(tg_tape *tape, const tg_real *v, int ndim, const int64_t *shape,
                             const char *name, bool grad) {
    tg_tensor *t = tg_tensor_named(tg_tape_tensor(tape, ndim, shape), name);
    tg_tensor_copy_from(t, v);
    return tg_tensor_requires_grad(t, grad);
}

static void test_anomaly_forward_log_negative(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = arena_from(tape, (tg_real[]){1, -1, 2}, TG_SHAPE(3), "x", true);
    /* off (the default): a NaN passes silently, as in PyTorch */
    assert_false(tg_tape_anomaly_detection(tape));
    tg_tensor *y = tg_log(tape, x);
    assert_true(isnan((double)y->data[1]));
    tg_tape_set_anomaly_detection(tape, true);
    assert_true(tg_tape_anomaly_detection(tape));
    TG_EXPECT_FAIL(tg_log(tape, x), "anomaly detected in forward", "op 'log' produced NaN",
                   "(3,) 'x' [leaf]: min -1, max 2, 0 NaN, 0 Inf", "first at flat index 1",
                   "tape node #1");
    /* ops whose inputs need no grad record nothing, and are checked all the same */
    tg_tensor *c = arena_from(tape, (tg_real[]){4, -4}, TG_SHAPE(2), "c", false);
    TG_EXPECT_FAIL(tg_sqrt(tape, c), "op 'sqrt' produced NaN", "'c' [const]");
    tg_tape_set_recording(tape, false);
    TG_EXPECT_FAIL(tg_sqrt(tape, c), "op 'sqrt' produced NaN");
    tg_tape_free(tape);
}

static void test_anomaly_forward_inf(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tape_set_anomaly_detection(tape, true);
    tg_tensor *x = arena_from(tape, (tg_real[]){1, 1000}, TG_SHAPE(1, 2), "logits", true);
    TG_EXPECT_FAIL(tg_exp(tape, x), "op 'exp' produced Inf", "max 1000");
    /* an Inf that comes in is not made here: a −inf additive mask flows through add and
     * softmax without a report (the row still has a finite score) */
    tg_tensor *mask = arena_from(tape, (tg_real[]){0, -INFINITY}, TG_SHAPE(1, 2), "mask", false);
    tg_tensor *p = tg_softmax(tape, tg_add(tape, x, mask), -1);
    assert_true(p->data[0] == 1 && p->data[1] == 0);
    tg_tape_free(tape);
}

/* masked_fill places −inf (no report); softmax over a row that is all −inf is 0/0 = NaN */
static void test_anomaly_forward_masked_softmax(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tape_set_anomaly_detection(tape, true);
    tg_tensor *scores =
        arena_from(tape, (tg_real[]){0.5, -0.5, 2, 1, 0, 3}, TG_SHAPE(2, 3), "scores", true);
    tg_tensor *mask =
        arena_from(tape, (tg_real[]){0, 1, 0, 1, 1, 1}, TG_SHAPE(2, 3), "mask", false);
    tg_tensor *masked = tg_tensor_named(tg_masked_fill(tape, scores, mask, -INFINITY), "masked");
    assert_true(isinf((double)masked->data[4]));
    TG_EXPECT_FAIL(tg_softmax(tape, masked, -1), "op 'softmax' produced NaN",
                   "(2, 3) 'masked' (from node #0): min 0.5, max 2, 0 NaN, 4 Inf",
                   "first at flat index 3");
    tg_tape_free(tape);
}

static void test_anomaly_backward(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tape_set_anomaly_detection(tape, true);
    /* sqrt(0) = 0 is fine; its derivative 1/(2√0) is not */
    tg_tensor *x = arena_from(tape, (tg_real[]){0, 1, 4}, TG_SHAPE(3), "x", true);
    tg_tensor *y = tg_tensor_named(tg_sqrt(tape, x), "root");
    tg_tensor *loss = tg_sum(tape, y);
    TG_EXPECT_FAIL(tg_tape_backward(tape, loss), "anomaly detected in backward",
                   "the backward of op 'sqrt' (node #0) wrote Inf into the gradient of its input 0",
                   "(3,) 'x' [leaf]: min 0.25, max 0.5, 0 NaN, 1 Inf", "(3,) 'root' (from node #0)",
                   "min 1, max 1");
    tg_tape_reset(tape);
    /* 0 · Inf: the forward is all zeros, the backward NaN */
    x = arena_from(tape, (tg_real[]){0, 1}, TG_SHAPE(2), "x", true);
    tg_tensor *zero = arena_from(tape, (tg_real[]){0, 0}, TG_SHAPE(2), "zero", false);
    loss = tg_sum(tape, tg_mul(tape, tg_sqrt(tape, x), zero));
    /* the graph is kept (retain_graph) so that the same backward can run again */
    TG_EXPECT_FAIL(tg_tape_backward_ex(tape, loss, &(tg_backward_options){.retain_graph = true}),
                   "op 'sqrt'", "wrote NaN");
    /* off: the same backward completes, with the NaN in the gradient */
    tg_tape_set_anomaly_detection(tape, false);
    tg_tape_backward(tape, loss);
    assert_true(isnan((double)x->grad[0]));
    tg_tape_free(tape);
}

/* A healthy training step runs the same with anomaly mode on, every op checked. */
static void test_anomaly_quiet_on_healthy_step(void **state) {
    (void)state;
    tg_cell_weights w = weights_new(TG_CELL_LSTM);
    tg_tape *tape = tg_tape_new();
    tg_tape_set_anomaly_detection(tape, true);
    tg_tensor *xs = tg_test_rand(7, -1, 1, TG_SHAPE(5, 3, 2));
    tg_rnn_result r = tg_rnn_sequence_fused(tape, TG_CELL_LSTM, &w, xs, NULL, NULL, false);
    tg_tensor *loss = tg_mean(tape, r.output);
    tg_tape_backward(tape, loss);
    assert_non_null(w.w_hh->grad);
    tg_tape_reset(tape);
    r = tg_rnn_sequence_composite(tape, TG_CELL_LSTM, &w, xs, NULL, NULL, false, NULL);
    tg_tape_backward(tape, tg_mean(tape, r.output));
    tg_tape_free(tape);
    tg_tensor_free(xs);
    weights_free(&w);
}

/* =========================================================================================
 * Gate traces and pictures
 * ======================================================================================= */

/* Reads a PNG back: its size and how many distinct colours it has; and whether it holds a
 * pixel near `probe` (an RGB colour), if given. */
static void png_check(const char *path, int want_w, int want_h, int min_colours,
                      const uint8_t *probe) {
    int w, h, comp;
    unsigned char *px = stbi_load(path, &w, &h, &comp, 3);
    if (!px) fail_msg("%s is not a readable PNG", path);
    if (want_w) assert_int_equal(w, want_w);
    if (want_h) assert_int_equal(h, want_h);
    /* distinct colours, counted coarsely (a 32-level cube) */
    static bool seen[32 * 32 * 32];
    memset(seen, 0, sizeof seen);
    int colours = 0;
    bool found = probe == NULL;
    for (int i = 0; i < w * h; i++) {
        const unsigned char *c = px + 3 * i;
        const int key = (c[0] >> 3) * 1024 + (c[1] >> 3) * 32 + (c[2] >> 3);
        colours += !seen[key];
        seen[key] = true;
        if (probe && abs(c[0] - probe[0]) + abs(c[1] - probe[1]) + abs(c[2] - probe[2]) < 12)
            found = true;
    }
    stbi_image_free(px);
    if (colours < min_colours) fail_msg("%s has only %d colours", path, colours);
    if (!found) fail_msg("%s lacks the colour (%d, %d, %d)", path, probe[0], probe[1], probe[2]);
}

static void test_picture_writers(void **state) {
    (void)state;
    double v[2][4 * 30];
    for (int g = 0; g < 2; g++)
        for (int j = 0; j < 4; j++)
            for (int t = 0; t < 30; t++) v[g][j * 30 + t] = (double)t / 29.0;
    const tg_heatmap_panel panels[2] = {{"z: update gate", v[0], 4, 30}, {"r", v[1], 4, 30}};
    const tg_heatmap_options ho = {"a title", "time step t", "unit", "activation", 0, 1};
    const char *heat = temp_path("heat.png");
    assert_int_equal(tg_heatmap_write_png(heat, panels, 2, &ho), TG_OK);
    /* the two ends of viridis are there: 0 is dark violet, 1 yellow */
    png_check(heat, 0, 0, 20, (const uint8_t[]){68, 1, 84});
    png_check(heat, 0, 0, 20, (const uint8_t[]){253, 231, 37});
    int w, h, comp;
    assert_true(stbi_info(heat, &w, &h, &comp));
    assert_true(w >= 30 * 24 && h >= 2 * 4 * 16); /* 24 × 16 px cells at this size */

    double y0[50], y1[50];
    for (int i = 0; i < 50; i++) y0[i] = pow(0.8, 49 - i), y1[i] = i == 20 ? NAN : 0.5;
    const tg_chart_series s[2] = {{"tanh RNN", NULL, y0, 50}, {"GRU", NULL, y1, 50}};
    const tg_chart_options co = {"title", "t", "|dL/dh_t|", true, 640, 400};
    const char *chart = temp_path("chart.png");
    assert_int_equal(tg_line_chart_write_png(chart, s, 2, &co), TG_OK);
    png_check(chart, 640, 400, 4, (const uint8_t[]){31, 119, 180}); /* the first series' blue */
    png_check(chart, 640, 400, 4, (const uint8_t[]){255, 127, 14}); /* the second's orange */

    /* bad arguments and unwritable paths: a status and a message */
    assert_int_equal(tg_line_chart_write_png(chart, s, 0, &co), TG_ERR_ARGUMENT);
    assert_int_equal(tg_heatmap_write_png("/nonexistent-dir/h.png", panels, 2, &ho), TG_ERR_IO);
    assert_non_null(strstr(tg_error_message(), "/nonexistent-dir/h.png"));
    const tg_heatmap_panel uneven[2] = {{NULL, v[0], 4, 30}, {NULL, v[1], 4, 29}};
    assert_int_equal(tg_heatmap_write_png(heat, uneven, 2, NULL), TG_ERR_ARGUMENT);
}

/* Runs a composite sequence, L = Σ h_{T−1} ⊙ V, and traces it. */
static void trace_run(tg_cell_kind kind, int64_t batch_row, const char *png_prefix) {
    const int64_t T = 6, B = 3, I = 2, H = 4, G = tg_cell_gate_count(kind);
    tg_manual_seed(3);
    tg_tensor *w_ih = tg_tensor_requires_grad(tg_test_rand(1, -0.5, 0.5, TG_SHAPE(G * H, I)), true);
    tg_tensor *w_hh = tg_tensor_requires_grad(tg_test_rand(2, -0.5, 0.5, TG_SHAPE(G * H, H)), true);
    const tg_cell_weights w = {w_ih, w_hh, NULL, NULL, NULL};
    tg_tensor *xs = tg_test_rand(4, -1, 1, TG_SHAPE(T, B, I));
    tg_tensor *V = tg_test_rand(5, -1, 1, TG_SHAPE(B, H));

    tg_tape *tape = tg_tape_new();
    tg_rnn_result r = tg_rnn_sequence_composite(tape, kind, &w, xs, NULL, NULL, false, NULL);
    tg_tensor *loss = tg_sum(tape, tg_mul(tape, r.h_n, V));
    tg_gate_trace *tr = tg_gate_trace_new(kind, T, H, batch_row);
    tg_gate_trace_capture(tr, tape, "");
    /* the gates are the named tensors' values (a batch mean, or the traced row) */
    for (int g = 0; g < tr->n_gates; g++)
        for (int64_t t = 0; t < T; t++) {
            char name[16];
            snprintf(name, sizeof name, "%s_%lld", tr->gate_names[g], (long long)t);
            const tg_tensor *gate = tg_rnn_find_named(tape, name);
            for (int64_t j = 0; j < H; j++) {
                double want = 0;
                if (batch_row >= 0)
                    want = (double)gate->data[batch_row * H + j];
                else {
                    for (int64_t b = 0; b < B; b++) want += (double)gate->data[b * H + j];
                    want /= (double)B;
                }
                assert_true(fabs(tr->gates[(g * H + j) * T + t] - want) < 1e-12);
                assert_true(want > 0 && want < 1);
            }
        }
    assert_true(isnan(tr->grad_norm[0])); /* nothing read yet */
    tg_tape_backward(tape, loss);
    tg_gate_trace_read_grads(tr);
    /* dL/dh_{T−1} = V exactly: its norm over the batch, or over the traced row */
    double want = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < H; j++)
            if (batch_row < 0 || b == batch_row)
                want += (double)V->data[b * H + j] * (double)V->data[b * H + j];
    assert_true(fabs(tr->grad_norm[T - 1] - sqrt(want)) < 1e-5 * sqrt(want));
    for (int64_t t = 0; t < T; t++) {
        assert_true(isfinite(tr->grad_norm[t]) && tr->grad_norm[t] > 0);
        double ss = 0;
        for (int64_t j = 0; j < H; j++) ss += tr->grad[j * T + t] * tr->grad[j * T + t];
        assert_true(fabs(sqrt(ss) - tr->grad_norm[t]) <= 1e-9 * (1 + tr->grad_norm[t]));
    }
    if (kind == TG_CELL_LSTM) {
        assert_non_null(tr->cell_grad_norm);
        for (int64_t t = 0; t < T; t++) assert_true(tr->cell_grad_norm[t] > 0);
    }
    if (png_prefix) {
        char name[64];
        snprintf(name, sizeof name, "%s_gates.png", png_prefix);
        if (tr->n_gates) {
            assert_int_equal(ex_gate_trace_write_heatmap(tr, temp_path(name), "gates"), TG_OK);
            png_check(temp_path(name), 0, 0, 10, NULL);
        } else {
            assert_int_equal(ex_gate_trace_write_heatmap(tr, temp_path(name), "gates"),
                             TG_ERR_ARGUMENT);
        }
        snprintf(name, sizeof name, "%s_grad.png", png_prefix);
        assert_int_equal(ex_gate_trace_write_grad_chart(tr, temp_path(name), "grad"), TG_OK);
        png_check(temp_path(name), 960, 600, 4, (const uint8_t[]){31, 119, 180});
    }
    tg_gate_trace_free(tr);
    tg_tape_free(tape);
    tg_tensor_free(w_ih), tg_tensor_free(w_hh), tg_tensor_free(xs), tg_tensor_free(V);
}

static void test_gate_trace(void **state) {
    (void)state;
    trace_run(TG_CELL_GRU, -1, "gru");
    trace_run(TG_CELL_GRU, 1, NULL);
    trace_run(TG_CELL_GRU_CHO, -1, NULL);
    trace_run(TG_CELL_LSTM, -1, "lstm");
    trace_run(TG_CELL_LSTM, 2, NULL);
    trace_run(TG_CELL_RNN_TANH, -1, "rnn");
}

static void test_gate_trace_misuse(void **state) {
    (void)state;
    tg_cell_weights w = weights_new(TG_CELL_GRU);
    tg_tensor *xs = tg_test_rand(4, -1, 1, TG_SHAPE(3, 1, 2));
    tg_tape *tape = tg_tape_new();
    tg_gate_trace *tr = tg_gate_trace_new(TG_CELL_GRU, 3, 2, -1);
    /* a fused forward has no named gates */
    tg_rnn_sequence_fused(tape, TG_CELL_GRU, &w, xs, NULL, NULL, false);
    TG_EXPECT_FAIL(tg_gate_trace_capture(tr, tape, ""), "tg_gate_trace_capture", "'z_0'",
                   "composite");
    TG_EXPECT_FAIL(tg_gate_trace_read_grads(tr), "step 0 was not captured");
    TG_EXPECT_FAIL(tg_gate_trace_new(TG_CELL_GRU, 0, 2, -1), "tg_gate_trace_new");
    tg_gate_trace_free(tr);
    tg_tape_free(tape);
    tg_tensor_free(xs);
    weights_free(&w);
}

static int remove_temp_dir(void **state) {
    (void)state;
    if (!temp_dir[0]) return 0;
    const char *names[] = {"gru.dot",       "empty.dot",    "heat.png",       "chart.png",
                           "gru_gates.png", "gru_grad.png", "lstm_gates.png", "lstm_grad.png",
                           "rnn_gates.png", "rnn_grad.png"};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) unlink(temp_path(names[k]));
    rmdir(temp_dir);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--emit")) { /* the blocks for the document */
        const char *ids[] = {"gru", "gru_cho", "lstm"};
        for (int k = 0; k < 3; k++) {
            doc_case c = {.id = ids[k]};
            compute_case(&c);
            case_print(&c, stdout);
            putchar('\n');
        }
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doc_gru),
        cmocka_unit_test(test_doc_gru_cho),
        cmocka_unit_test(test_doc_lstm),
        cmocka_unit_test(test_doc_fused_equals_composite),
        cmocka_unit_test(test_doc_prose_numbers),
        cmocka_unit_test(test_doc_code_pointers),
        cmocka_unit_test(test_dot_gru_step),
        cmocka_unit_test(test_dot_lstm_step),
        cmocka_unit_test(test_dot_values_and_grads),
        cmocka_unit_test(test_dot_escapes_and_empty),
        cmocka_unit_test(test_anomaly_forward_log_negative),
        cmocka_unit_test(test_anomaly_forward_inf),
        cmocka_unit_test(test_anomaly_forward_masked_softmax),
        cmocka_unit_test(test_anomaly_backward),
        cmocka_unit_test(test_anomaly_quiet_on_healthy_step),
        cmocka_unit_test(test_picture_writers),
        cmocka_unit_test(test_gate_trace),
        cmocka_unit_test(test_gate_trace_misuse),
    };
    return cmocka_run_group_tests(tests, NULL, remove_temp_dir);
}
