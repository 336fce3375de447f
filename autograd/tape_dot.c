/* The tape as a picture: a Graphviz DOT writer beside the text listing (tg_tape_print).
 *
 * What the graph shows, and why:
 *  - one box per op (tape node), labelled "#i op", then each output's shape and name, then
 *    "bwd k": the position of the node in the backward walk. Backward visits the nodes in
 *    reverse, so the loss's node is bwd 1 and the first op of the forward is bwd n;
 *  - the leaves the ops read, deduplicated: parameters (long-lived tensors that require
 *    grad: they receive and keep gradients) inside a cluster of their own; other leaves
 *    that require grad (inputs a program asked gradients of) as ellipses; constants (data,
 *    masks, zero states: no gradient flows into them) as grey notes;
 *  - an edge from each input (leaf or producing op) to the op that reads it; when an op has
 *    several inputs the edge carries the input's position ("in 1"), since sub(a, b) and
 *    matmul(a, b) are not symmetric, and when the producer has several outputs (split) the
 *    output's ("out 2": which gate block). Gradients flow along the same edges, backwards;
 *  - named intermediates (the gates of a composite RNN step: "r", "z_3", "f_0", ...) are
 *    filled, so the gates stand out of the plumbing (splits, adds, reshapes) around them;
 *  - with tg_tape_write_dot_ex, the numbers of small tensors: "= " the value and "d " the
 *    gradient, so a picture of one step shows what the forward and the backward computed. */
#include "tapegrad/tape.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum leaf_kind { LEAF_PARAM, LEAF_GRAD, LEAF_CONST } leaf_kind;

/* A leaf and its number in the graph ("l<id>"). Leaves are numbered in order of first use,
 * so the output does not depend on where the tensors happen to sit in memory. */
typedef struct leaf_entry {
    const tg_tensor *t;
    size_t id;
} leaf_entry;

static int by_address(const void *a, const void *b) {
    const leaf_entry *x = a, *y = b;
    const uintptr_t p = (uintptr_t)x->t, q = (uintptr_t)y->t;
    if (p != q) return p < q ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int by_id(const void *a, const void *b) {
    const leaf_entry *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* The number of leaf t in `index` (sorted by address). */
static size_t leaf_id(const leaf_entry *index, size_t count, const tg_tensor *t) {
    const leaf_entry key = {t, 0};
    size_t lo = 0, hi = count;
    while (lo < hi) { /* first entry not below t */
        const size_t mid = lo + (hi - lo) / 2;
        if (by_address(&index[mid], &key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return index[lo].id;
}

static leaf_kind kind_of(const tg_tensor *t) {
    if (t->owned && t->requires_grad) return LEAF_PARAM;
    return t->requires_grad ? LEAF_GRAD : LEAF_CONST;
}

/* A tensor counts as a leaf of this graph unless an earlier node of the tape produced it. */
static bool is_leaf_at(const tg_tensor *t, size_t reader) {
    return t->node < 0 || (size_t)t->node >= reader;
}

/* Writes s inside a DOT double-quoted string: quotes and backslashes escaped, newlines
 * as DOT's centred line break. */
static void put_escaped(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f), fputc(*s, f);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

/* "\n= [0.5, -1]" and "\nd [0.1, 0.2]" (on their own lines of a label) for a tensor small
 * enough, as the options ask; nothing otherwise. A gradient that backward did not reach (or
 * that was not retained) is left out. */
static void put_numbers(FILE *f, const tg_tensor *t, const tg_dot_options *o) {
    if (!o || t->numel > (o->max_numel > 0 ? o->max_numel : 12)) return;
    const int digits = o->digits > 0 ? o->digits : 4;
    const tg_real *rows[2] = {o->values ? t->data : NULL, o->grads ? t->grad : NULL};
    static const char *const marks[2] = {"= ", "d "};
    for (int r = 0; r < 2; r++) {
        if (!rows[r]) continue;
        fprintf(f, "\\n%s%s", marks[r], t->numel == 1 ? "" : "[");
        for (int64_t i = 0; i < t->numel; i++)
            fprintf(f, "%s%.*g", i ? ", " : "", digits, (double)rows[r][i]);
        fputs(t->numel == 1 ? "" : "]", f);
    }
}

/* "(2, 3) 'name'", and the numbers the options ask for */
static void put_tensor(FILE *f, const tg_tensor *t, const tg_dot_options *o) {
    char shape[96];
    tg_shape_format(t->ndim, t->shape, shape, sizeof shape);
    fputs(shape, f);
    if (t->name[0]) {
        fputs(" '", f);
        put_escaped(f, t->name);
        fputc('\'', f);
    }
    put_numbers(f, t, o);
}

static void put_leaf(FILE *f, const tg_tensor *t, size_t id, const char *indent,
                     const tg_dot_options *o) {
    char shape[96];
    tg_shape_format(t->ndim, t->shape, shape, sizeof shape);
    fprintf(f, "%sl%zu [label=\"", indent, id);
    if (t->name[0]) {
        put_escaped(f, t->name);
        fputs("\\n", f);
    }
    fputs(shape, f);
    put_numbers(f, t, o);
    switch (kind_of(t)) {
    case LEAF_PARAM:
        fputs("\", shape=box, style=\"rounded,filled\", fillcolor=\"#ffe08a\"];\n", f);
        break;
    case LEAF_GRAD:
        fputs("\\nleaf\", shape=ellipse, style=filled, fillcolor=\"#d8f0d0\"];\n", f);
        break;
    case LEAF_CONST:
        fputs("\\nconst\", shape=note, color=\"#999999\", fontcolor=\"#666666\"];\n", f);
        break;
    }
}

static void write_graph(const tg_tape *tape, FILE *f, const tg_dot_options *o) {
    const size_t n = tg_tape_node_count(tape);

    /* The leaves: every use, sorted by address, keeps the first use of each tensor
     * (`index`, sorted by address, for lookups); those sorted by first use are `leaves`. */
    size_t uses = 0;
    for (size_t i = 0; i < n; i++) {
        const tg_node *node = tg_tape_node(tape, i);
        for (int k = 0; k < node->n_in; k++) uses += node->in[k] && is_leaf_at(node->in[k], i);
    }
    leaf_entry *index = tg_xmalloc((uses ? uses : 1) * sizeof *index);
    leaf_entry *leaves = tg_xmalloc((uses ? uses : 1) * sizeof *leaves);
    size_t n_leaves = 0;
    uses = 0;
    for (size_t i = 0; i < n; i++) {
        const tg_node *node = tg_tape_node(tape, i);
        for (int k = 0; k < node->n_in; k++)
            if (node->in[k] && is_leaf_at(node->in[k], i))
                index[uses] = (leaf_entry){node->in[k], uses}, uses++;
    }
    qsort(index, uses, sizeof *index, by_address);
    for (size_t u = 0; u < uses; u++)
        if (u == 0 || index[u].t != index[u - 1].t) leaves[n_leaves++] = index[u];
    qsort(leaves, n_leaves, sizeof *leaves, by_id);
    for (size_t j = 0; j < n_leaves; j++) leaves[j].id = j; /* renumber 0, 1, ... */
    qsort(leaves, n_leaves, sizeof *leaves, by_address);    /* ... and make that the index */
    memcpy(index, leaves, n_leaves * sizeof *leaves);
    qsort(leaves, n_leaves, sizeof *leaves, by_id);

    fputs("digraph tape {\n", f);
    fputs("  rankdir=TB;\n", f);
    fprintf(f,
            "  graph [fontname=\"Helvetica\", fontsize=12, labelloc=t, label=\"tape: %zu "
            "op%s; backward runs them in reverse (bwd 1 first)\"];\n",
            n, n == 1 ? "" : "s");
    fputs("  node [fontname=\"Helvetica\", fontsize=10];\n", f);
    fputs("  edge [fontname=\"Helvetica\", fontsize=8, color=\"#555555\", "
          "arrowsize=0.6];\n",
          f);

    /* parameters in their own cluster, drawn as one group */
    bool any_param = false;
    for (size_t j = 0; j < n_leaves; j++) any_param |= kind_of(leaves[j].t) == LEAF_PARAM;
    if (any_param) {
        fputs("  subgraph cluster_parameters {\n", f);
        fputs("    label=\"parameters\"; style=\"rounded,filled\"; fillcolor=\"#fff8e6\"; "
              "color=\"#d9a400\"; fontcolor=\"#8a6a00\";\n",
              f);
        for (size_t j = 0; j < n_leaves; j++)
            if (kind_of(leaves[j].t) == LEAF_PARAM) put_leaf(f, leaves[j].t, j, "    ", o);
        fputs("  }\n", f);
    }
    for (size_t j = 0; j < n_leaves; j++)
        if (kind_of(leaves[j].t) != LEAF_PARAM) put_leaf(f, leaves[j].t, j, "  ", o);

    /* the ops */
    for (size_t i = 0; i < n; i++) {
        const tg_node *node = tg_tape_node(tape, i);
        bool named = false;
        fprintf(f, "  n%zu [label=\"#%zu ", i, i);
        put_escaped(f, node->op);
        for (int k = 0; k < node->n_out; k++) {
            fputs("\\n", f);
            if (node->n_out > 1) fprintf(f, "out %d: ", k);
            put_tensor(f, node->out[k], o);
            named |= node->out[k]->name[0] != '\0';
        }
        fprintf(f, "\\nbwd %zu\", shape=box", n - i);
        if (named) fputs(", style=filled, fillcolor=\"#bfe0ff\", penwidth=1.5", f);
        fputs("];\n", f);
    }

    /* the edges: input -> the op that reads it */
    for (size_t i = 0; i < n; i++) {
        const tg_node *node = tg_tape_node(tape, i);
        int used = 0;
        for (int k = 0; k < node->n_in; k++) used += node->in[k] != NULL;
        for (int k = 0; k < node->n_in; k++) {
            const tg_tensor *x = node->in[k];
            if (!x) continue;
            int port = -1; /* which output of a multi-output producer (split) this is */
            if (is_leaf_at(x, i)) {
                fprintf(f, "  l%zu -> n%zu", leaf_id(index, n_leaves, x), i);
            } else {
                const tg_node *from = tg_tape_node(tape, (size_t)x->node);
                for (int j = 0; j < from->n_out && from->n_out > 1; j++)
                    if (from->out[j] == x) port = j;
                fprintf(f, "  n%d -> n%zu", (int)x->node, i);
            }
            if (port >= 0 && used > 1)
                fprintf(f, " [label=\"out %d -> in %d\"]", port, k);
            else if (port >= 0)
                fprintf(f, " [label=\"out %d\"]", port);
            else if (used > 1)
                fprintf(f, " [label=\"in %d\"]", k);
            fputs(";\n", f);
        }
    }
    fputs("}\n", f);
    free(index);
    free(leaves);
}

/* Both writers; `function` names the one called in messages. */
static tg_status write_dot(const tg_tape *tape, const char *path, const tg_dot_options *o,
                           const char *function) {
    if (!tape) return tg_status_null_argument(function, "tape");
    if (!path) return tg_status_null_argument(function, "path");
    FILE *f = fopen(path, "w");
    if (!f)
        return tg_status_set(TG_ERR_IO, "%s: cannot open '%s' for writing: %s", function, path,
                             strerror(errno));
    write_graph(tape, f, o);
    const bool failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed)
        return tg_status_set(TG_ERR_IO, "%s: writing '%s' failed", function, path);
    return TG_OK;
}

tg_status tg_tape_write_dot(const tg_tape *tape, const char *path) {
    return write_dot(tape, path, NULL, __func__);
}

tg_status tg_tape_write_dot_ex(const tg_tape *tape, const char *path, const tg_dot_options *opts) {
    return write_dot(tape, path, opts, __func__);
}
