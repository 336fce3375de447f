/* examples/graph.c — the tape of one GRU step and one LSTM step, drawn.
 *
 * A composite cell builds its step from primitive ops, one tape node each, and names the
 * tensors that matter: r, z, n, h for the GRU; i, f, g, o, c, h for the LSTM. The program
 * runs one step of each on a tiny input, takes L = Σ h' as the loss, runs backward, prints
 * the tape listing and writes the graph as Graphviz DOT — and, when `dot` is installed
 * (Debian: graphviz), as SVG and PNG:
 *
 *   graph --out pics      pics/gru_step.{dot,svg,png}, pics/lstm_step.{dot,svg,png}
 *
 * Every tensor of up to 6 elements carries its numbers: "= ..." its value, "d ..." its
 * gradient dL/d(tensor) after backward (the program retains every intermediate's).
 *
 * Reading the picture: the yellow cluster holds the parameters (the only tensors that keep
 * gradients across steps), grey notes are constants (the input x), the green ellipse is
 * h_prev (a leaf we asked the gradient of), blue boxes are the named gates. Each op carries
 * "bwd k": backward visits the ops in the reverse of the forward order, the loss first. In
 * the GRU, h_prev reaches h' twice — through the matmul that feeds every gate, and directly
 * through z ⊙ h_prev (the "sub" and "mul" at the bottom): that direct edge is the path along
 * which the gradient survives many steps. In the LSTM the direct path runs through c. */
#include "common.h"

/* One step of `cell` (composite: named gates), loss = Σ h'; writes <out>/<name>.dot and
 * renders it. */
static void draw_step(const char *out_dir, const char *name, tg_cell_kind kind) {
    tg_manual_seed(0);
    tg_cell_options o = tg_cell_defaults(/*input*/ 2, /*hidden*/ 3);
    o.exec = TG_RNN_COMPOSITE;
    tg_cell *cell = kind == TG_CELL_LSTM ? &tg_lstm_cell_new(o)->base : &tg_gru_cell_new(o)->base;

    tg_tape *tape = tg_tape_new();
    /* the data and the previous state live in the tape's arena: not parameters */
    tg_tensor *x = tg_tensor_named(tg_tape_tensor(tape, TG_SHAPE(1, 2)), "x");
    tg_tensor_copy_from(x, (tg_real[]){0.5, -1});
    tg_tensor *h_prev = tg_tensor_named(tg_tape_tensor(tape, TG_SHAPE(1, 3)), "h_prev");
    tg_tensor_copy_from(h_prev, (tg_real[]){0.1, -0.2, 0.3});
    tg_tensor_requires_grad(h_prev, true); /* a leaf: we want dL/dh_prev */
    tg_tensor *c_prev = tg_tensor_named(tg_tape_tensor(tape, TG_SHAPE(1, 3)), "c_prev");
    tg_tensor_copy_from(c_prev, (tg_real[]){0.2, 0.0, -0.4}); /* a constant */

    tg_tensor *h = tg_cell_forward(cell, tape, x, h_prev, kind == TG_CELL_LSTM ? c_prev : NULL).h;
    tg_tensor *loss = tg_tensor_named(tg_sum(tape, h), "loss");
    /* keep every intermediate's gradient, so that the picture can show it */
    for (size_t i = 0; i < tg_tape_node_count(tape); i++)
        for (int k = 0; k < tg_tape_node(tape, i)->n_out; k++)
            tg_tensor_retain_grad(tg_tape_node(tape, i)->out[k]);
    tg_tape_backward(tape, loss);

    printf("\n== %s: one step, loss = sum(h') = %.6f ==\n", name, (double)tg_item(loss));
    tg_tape_print(tape, stdout);
    printf("dL/dh_prev = [%.6f, %.6f, %.6f]\n", (double)h_prev->grad[0], (double)h_prev->grad[1],
           (double)h_prev->grad[2]);

    char path[1024], file[64];
    snprintf(file, sizeof file, "%s.dot", name);
    ex_path(path, sizeof path, out_dir, file);
    /* the numbers on the boxes: "= " the value, "d " the gradient dL/d(tensor) */
    const tg_dot_options numbers = {.values = true, .grads = true, .max_numel = 6, .digits = 3};
    ex_check(tg_tape_write_dot_ex(tape, path, &numbers));
    printf("  wrote %s\n", path);
    const bool svg = ex_render_dot(path, "svg");
    const bool png = ex_render_dot(path, "png");
    if (!svg || !png)
        printf("  (install graphviz to render it: dot -Tsvg %s -o %s.svg)\n", path, name);

    tg_tape_free(tape);
    tg_module_free(&cell->module);
}

int main(int argc, char **argv) {
    const char *out = ".";
    const ex_flag flags[] = {{"out", EX_FLAG_PATH, &out, 0, 0, "directory for the pictures"}};
    ex_flags_parse(argc, argv,
                   "graph: the tape of one composite GRU step and one LSTM step, written as "
                   "Graphviz DOT\n(and SVG/PNG when `dot` is installed), gates named r, z, n, h "
                   "/ i, f, g, o, c.",
                   NULL, flags, 1);
    ex_make_dir(out);
    draw_step(out, "gru_step", TG_CELL_GRU);
    draw_step(out, "lstm_step", TG_CELL_LSTM);
    return 0;
}
