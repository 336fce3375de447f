/* The tape: recording, backward, accumulation, retained gradients, the listing and
 * gradcheck itself. Uses two small ops defined here so that it depends on no op family. */
#include "harness.h"

#include <math.h>
#include <string.h>

/* y = s * x  ->  dx += s * dy */
static void scale_backward(tg_tape *tape, tg_node *node) {
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    if (!dx) return;
    const tg_tensor *y = node->out[0];
    for (int64_t i = 0; i < y->numel; i++) dx[i] += (tg_real)node->farg[0] * y->grad[i];
}

static tg_tensor *scale(tg_tape *tape, tg_tensor *x, double s) {
    tg_tensor *y = tg_tape_tensor_like(tape, x);
    for (int64_t i = 0; i < x->numel; i++) y->data[i] = (tg_real)s * x->data[i];
    tg_node *n =
        tg_tape_record(tape, "scale", scale_backward, 1, (tg_tensor *[]){x}, 1, (tg_tensor *[]){y});
    if (n) n->farg[0] = s;
    return y;
}

/* y = Σ a ⊙ b (same shapes)  ->  da += dy·b, db += dy·a */
static void dot_backward(tg_tape *tape, tg_node *node) {
    const tg_real dy = node->out[0]->grad[0];
    tg_tensor *a = node->in[0], *b = node->in[1];
    tg_real *da = tg_tape_grad(tape, a), *db = tg_tape_grad(tape, b);
    for (int64_t i = 0; i < a->numel; i++) {
        if (da) da[i] += dy * b->data[i];
        if (db) db[i] += dy * a->data[i];
    }
}

static tg_tensor *dot(tg_tape *tape, tg_tensor *a, tg_tensor *b) {
    tg_tensor *y = tg_tape_tensor(tape, 0, NULL);
    y->data[0] = 0;
    for (int64_t i = 0; i < a->numel; i++) y->data[0] += a->data[i] * b->data[i];
    tg_tape_record(tape, "dot", dot_backward, 2, (tg_tensor *[]){a, b}, 1, (tg_tensor *[]){y});
    return y;
}

static void test_backward_chain_and_accumulation(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x =
        tg_tensor_requires_grad(tg_tensor_from_array(TG_SHAPE(3), (tg_real[]){1, 2, 3}), true);
    tg_tensor_set_name(x, "x");
    /* L = <3x, x> = 3 Σ x², used twice: dL/dx = 6x */
    tg_tensor *y = scale(tape, x, 3);
    tg_tensor *loss = dot(tape, y, x);
    assert_true(tg_item(loss) == 42);
    tg_tape_backward(tape, loss);
    tg_test_assert_close("dL/dx", x->grad, (tg_real[]){6, 12, 18}, 3, 0, 0);
    /* a second step accumulates into the leaf, as in PyTorch, until zeroed */
    tg_tape_reset(tape);
    loss = dot(tape, scale(tape, x, 3), x);
    tg_tape_backward(tape, loss);
    tg_test_assert_close("accumulated", x->grad, (tg_real[]){12, 24, 36}, 3, 0, 0);
    tg_tensor_zero_grad(x);
    assert_true(x->grad[0] == 0);
    tg_tape_free(tape);
    tg_tensor_free(x);
}

static void test_recording_off_and_no_grad_inputs(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_requires_grad(tg_tensor_ones(TG_SHAPE(2)), true);
    tg_tensor *c = tg_tensor_ones(TG_SHAPE(2)); /* a constant */
    tg_tape_set_recording(tape, false);
    tg_tensor *y = scale(tape, x, 2);
    assert_false(y->requires_grad);
    assert_int_equal(tg_tape_node_count(tape), 0);
    tg_tape_set_recording(tape, true);
    tg_tensor *z = scale(tape, c, 2);
    assert_false(z->requires_grad);
    assert_int_equal(tg_tape_node_count(tape), 0);
    TG_EXPECT_FAIL(tg_tape_backward(tape, dot(tape, z, z)), "backward", "does not require grad");
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(c);
}

static void test_retain_grad_and_names(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_named(tg_tensor_requires_grad(tg_tensor_ones(TG_SHAPE(2)), true), "x");
    tg_tensor *h = tg_tensor_named(scale(tape, x, 2), "h_t");
    tg_tensor *z = tg_tensor_named(scale(tape, x, 5), "z_t");
    tg_tensor_retain_grad(z);
    tg_tensor *loss = tg_tensor_named(dot(tape, h, z), "loss");
    tg_tape_backward(tape, loss);
    assert_null(h->grad); /* not retained */
    tg_test_assert_close("dL/dz_t", z->grad, (tg_real[]){2, 2}, 2, 0, 0);
    tg_test_assert_close("dL/dx", x->grad, (tg_real[]){20, 20}, 2, 0, 0);

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    tg_tape_print(tape, f);
    fclose(f);
    assert_non_null(strstr(text, "3 nodes"));
    assert_non_null(strstr(text, "#0    scale            -> (2,) 'h_t'  <- (2,) 'x' [param]"));
    assert_non_null(
        strstr(text, "#2    dot              -> () 'loss'  <- (2,) 'h_t' #0, (2,) 'z_t' #1"));
    free(text);
    assert_string_equal(tg_tape_node(tape, 2)->op, "dot");
    TG_EXPECT_FAIL(tg_tape_node(tape, 3), "tape_node", "3 nodes");
    tg_tape_free(tape);
    tg_tensor_free(x);
}

static void test_backward_with_seed(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_requires_grad(tg_tensor_ones(TG_SHAPE(3)), true);
    tg_tensor *y = scale(tape, x, 4);
    TG_EXPECT_FAIL(tg_tape_backward(tape, y), "backward", "3 elements", "seed");
    tg_tape_backward_with(tape, y, (tg_real[]){1, 0, -1});
    tg_test_assert_close("dx", x->grad, (tg_real[]){4, 0, -4}, 3, 0, 0);
    tg_tape_free(tape);
    tg_tensor_free(x);
}

/* What the after_node hook sees: L = <3x, x> (nodes: #0 scale, #1 dot). After #1, x holds
 * its first share, 3x, and y = 3x holds dL/dy = x; after #0, x holds the sum, 6x. */
typedef struct hook_log {
    int calls;
    size_t order[4];
    tg_real x_grad[4][3], y_grad[3];
    const tg_tensor *x;
} hook_log;

static void log_after_node(const tg_tape *tape, size_t index, void *ctx) {
    hook_log *log = ctx;
    const tg_node *node = tg_tape_node(tape, index);
    assert_true(log->calls < 4);
    log->order[log->calls] = index;
    memcpy(log->x_grad[log->calls], log->x->grad, sizeof log->x_grad[0]);
    if (index == 0) memcpy(log->y_grad, node->out[0]->grad, sizeof log->y_grad); /* still there */
    log->calls++;
}

static void test_backward_after_node_hook(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x =
        tg_tensor_requires_grad(tg_tensor_from_array(TG_SHAPE(3), (tg_real[]){1, 2, 3}), true);
    hook_log log = {.x = x};
    tg_tensor *loss = dot(tape, scale(tape, x, 3), x);
    tg_tape_backward_ex(tape, loss,
                        &(tg_backward_options){.after_node = log_after_node, .ctx = &log});
    assert_int_equal(log.calls, 2);
    assert_true(log.order[0] == 1 && log.order[1] == 0); /* the tape in reverse */
    tg_test_assert_close("x after dot", log.x_grad[0], (tg_real[]){3, 6, 9}, 3, 0, 0);
    tg_test_assert_close("x after scale", log.x_grad[1], (tg_real[]){6, 12, 18}, 3, 0, 0);
    tg_test_assert_close("dL/dy in the hook", log.y_grad, (tg_real[]){1, 2, 3}, 3, 0, 0);
    tg_test_assert_close("dL/dx", x->grad, (tg_real[]){6, 12, 18}, 3, 0, 0);
    tg_tape_free(tape);
    tg_tensor_free(x);
}

static void test_reset_recycles_memory(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_requires_grad(tg_tensor_ones(TG_SHAPE(1000)), true);
    uint64_t mallocs = 0;
    for (int step = 0; step < 4; step++) {
        tg_tensor *h = x, *kept = NULL;
        for (int i = 0; i < 400; i++) {
            h = scale(tape, h, 1.0001);
            if (i == 199) tg_tensor_retain_grad(kept = h);
        }
        tg_tape_backward(tape, dot(tape, h, h));
        /* intermediate gradient buffers are handed from op to op during backward: the
         * retained one must survive that, and the leaf must still accumulate */
        const double s200 = pow(1.0001, 200), s400 = pow(1.0001, 400);
        const double rtol = sizeof(tg_real) == 4 ? 2e-4 : 1e-10; /* 800 float roundings */
        tg_test_assert_close("kept grad", kept->grad, (tg_real[]){(tg_real)(2 * s400 * s200)}, 1, 0,
                             rtol);
        tg_test_assert_close("x grad", x->grad,
                             (tg_real[]){(tg_real)((step + 1) * 2 * s400 * s400)}, 1, 0, rtol);
        tg_tape_reset(tape);
        if (step == 1) mallocs = tg_tape_malloc_count(tape);
    }
    assert_int_equal(tg_tape_malloc_count(tape), mallocs);
    tg_tape_free(tape);
    tg_tensor_free(x);
}

/* gradcheck itself: passes on a correct op, and reports a wrong backward. */
static tg_tensor *fn_scale_dot(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return dot(tape, scale(tape, in[0], 3), in[1]);
}

static void wrong_backward(tg_tape *tape, tg_node *node) {
    scale_backward(tape, node);
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    if (dx) dx[1] += (tg_real)0.01; /* a small, deliberate error */
}

static tg_tensor *fn_wrong(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    tg_tensor *y = scale(tape, in[0], 2);
    if (y->node >= 0) ((tg_node *)tg_tape_node(tape, (size_t)y->node))->backward = wrong_backward;
    return y;
}

static void test_gradcheck_detects(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_tensor *a = tg_tensor_named(tg_test_rand(1, -1, 1, TG_SHAPE(4)), "a");
    tg_tensor *b = tg_tensor_named(tg_test_rand(2, -1, 1, TG_SHAPE(4)), "b");
    tg_tensor_requires_grad(a, true);
    tg_tensor_requires_grad(b, true);
    tg_gradcheck_report rep;
    assert_true(tg_gradcheck(fn_scale_dot, NULL, (tg_tensor *[]){a, b}, 2, NULL, &rep));
    assert_int_equal(rep.checked, 8);
    assert_true(rep.worst_ratio < 0.1);
    assert_false(tg_gradcheck(fn_wrong, NULL, (tg_tensor *[]){a}, 1, NULL, &rep));
    assert_int_equal(rep.input_index, 1);
    assert_int_equal(rep.output_index, 0); /* d out[0] / d a[1] should be 0, is 0.01 */
    assert_non_null(strstr(rep.message, "FAILED"));
    assert_non_null(strstr(rep.message, "a[1]"));
    /* inputs are restored exactly and gradients left zeroed */
    tg_tensor *a0 = tg_test_rand(1, -1, 1, TG_SHAPE(4));
    assert_memory_equal(a->data, a0->data, 4 * sizeof(tg_real));
    assert_true(a->grad[0] == 0);
    tg_tensor_free(a0), tg_tensor_free(a), tg_tensor_free(b);
}

/* gradcheck's defaults are PyTorch's (eps 1e-6, atol 1e-5, rtol 1e-3), seen from outside:
 * a backward off by a chosen amount passes or fails on either side of the tolerance, and a
 * kink at a chosen distance from x is or is not straddled by x ± eps. */
typedef struct off_by {
    double where_zero, where_two; /* added to d out[0]/d a[1] (true value 0), d out[1]/d a[1] (2) */
} off_by;

static off_by current_off;

static void off_backward(tg_tape *tape, tg_node *node) {
    scale_backward(tape, node);
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    const tg_real *dy = node->out[0]->grad;
    if (dx) dx[1] += (tg_real)(current_off.where_zero * dy[0] + current_off.where_two * dy[1]);
}

static tg_tensor *fn_off(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    current_off = *(const off_by *)ctx;
    tg_tensor *y = scale(tape, in[0], 2);
    if (y->node >= 0) ((tg_node *)tg_tape_node(tape, (size_t)y->node))->backward = off_backward;
    return y;
}

/* y = |x - c|, dx += sign(x - c) dy */
static void kink_backward(tg_tape *tape, tg_node *node) {
    tg_real *dx = tg_tape_grad(tape, node->in[0]);
    const tg_tensor *x = node->in[0];
    if (dx)
        for (int64_t i = 0; i < x->numel; i++)
            dx[i] += ((double)x->data[i] < node->farg[0] ? -1 : 1) * node->out[0]->grad[i];
}

static tg_tensor *fn_kink(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    const double c = *(const double *)ctx;
    tg_tensor *y = tg_tape_tensor_like(tape, in[0]);
    for (int64_t i = 0; i < y->numel; i++) y->data[i] = (tg_real)fabs((double)in[0]->data[i] - c);
    tg_node *n = tg_tape_record(tape, "kink", kink_backward, 1, (tg_tensor *const[]){in[0]}, 1, &y);
    if (n) n->farg[0] = c;
    return y;
}

static void test_gradcheck_defaults(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_tensor *a = tg_tensor_requires_grad(tg_test_rand(3, -1, 1, TG_SHAPE(2)), true);
    tg_gradcheck_report rep;
    /* atol 1e-5: the entry whose true value is 0 */
    assert_true(tg_gradcheck(fn_off, &(off_by){0.9e-5, 0}, &a, 1, NULL, &rep));
    assert_true(rep.worst_ratio > 0.85 && rep.worst_ratio < 0.95);
    assert_false(tg_gradcheck(fn_off, &(off_by){1.1e-5, 0}, &a, 1, NULL, &rep));
    assert_int_equal(rep.output_index, 0), assert_int_equal(rep.input_index, 1);
    /* rtol 1e-3: the entry whose true value is 2 allows 1e-5 + 2e-3 */
    assert_true(tg_gradcheck(fn_off, &(off_by){0, 1.9e-3}, &a, 1, NULL, &rep));
    assert_true(rep.worst_ratio > 0.9 && rep.worst_ratio < 0.95);
    assert_false(tg_gradcheck(fn_off, &(off_by){0, 2.1e-3}, &a, 1, NULL, &rep));
    assert_int_equal(rep.output_index, 1), assert_int_equal(rep.input_index, 1);
    /* options set to 0 mean the defaults too; explicit ones are used */
    const tg_gradcheck_options zeros = {0, 0, 0}, loose = {0, 1e-4, 0};
    assert_false(tg_gradcheck(fn_off, &(off_by){1.1e-5, 0}, &a, 1, &zeros, &rep));
    assert_true(tg_gradcheck(fn_off, &(off_by){1.1e-5, 0}, &a, 1, &loose, &rep));
    /* eps 1e-6: x = 0 and a kink at 5e-7 is straddled (numerical slope -0.5, analytical
     * -1), a kink at 1.5e-6 is not */
    tg_tensor *x = tg_tensor_requires_grad(tg_tensor_zeros(TG_SHAPE(1)), true);
    assert_false(tg_gradcheck(fn_kink, &(double){5e-7}, &x, 1, NULL, &rep));
    assert_true(fabs(rep.numerical + 0.5) < 1e-6 && rep.analytical == -1);
    assert_true(tg_gradcheck(fn_kink, &(double){1.5e-6}, &x, 1, NULL, &rep));
    tg_tensor_free(a), tg_tensor_free(x);
}

/* No input that requires grad: nothing to check, which is an error (as PyTorch's
 * "gradcheck expects at least one input tensor to require gradient"), not a vacuous pass;
 * raised before the inputs are touched. Also in float32: it fails before any difference. */
static void test_gradcheck_needs_an_input_with_grad(void **state) {
    (void)state;
    tg_tensor *a = tg_tensor_named(tg_test_rand(1, -1, 1, TG_SHAPE(4)), "a");
    tg_tensor *b = tg_tensor_named(tg_test_rand(2, -1, 1, TG_SHAPE(4)), "b");
    tg_gradcheck_report rep = {.checked = -1};
    TG_EXPECT_FAIL(tg_gradcheck(fn_scale_dot, NULL, (tg_tensor *[]){a, b}, 2, NULL, &rep),
                   "tg_gradcheck: gradcheck expects at least one input tensor to require gradient",
                   "none of the 2 inputs");
    TG_EXPECT_FAIL(tg_gradcheck(fn_scale_dot, NULL, NULL, 0, NULL, &rep), "at least one input");
    assert_int_equal(rep.checked, -1); /* no report was written */
    assert_null(a->grad);
    tg_tensor_free(a), tg_tensor_free(b);
}

/* y = a ⊙ b (same shapes)  ->  da += dy ⊙ b, db += dy ⊙ a */
static void mul_backward(tg_tape *tape, tg_node *node) {
    const tg_real *dy = node->out[0]->grad;
    tg_tensor *a = node->in[0], *b = node->in[1];
    tg_real *da = tg_tape_grad(tape, a), *db = tg_tape_grad(tape, b);
    for (int64_t i = 0; i < a->numel; i++) {
        if (da) da[i] += dy[i] * b->data[i];
        if (db) db[i] += dy[i] * a->data[i];
    }
}

static tg_tensor *mul(tg_tape *tape, tg_tensor *a, tg_tensor *b) {
    tg_tensor *y = tg_tape_tensor_like(tape, a);
    for (int64_t i = 0; i < a->numel; i++) y->data[i] = a->data[i] * b->data[i];
    tg_tape_record(tape, "mul", mul_backward, 2, (tg_tensor *[]){a, b}, 1, (tg_tensor *[]){y});
    return y;
}

/* What the gradient hook saw: each reported leaf and its gradient at that moment. */
typedef struct grad_hook_log {
    int count;
    tg_tensor *leaf[8];
    tg_real grad[8][3];
} grad_hook_log;

static void log_leaf(tg_tensor *leaf, void *ctx) {
    grad_hook_log *log = ctx;
    assert_true(log->count < 8);
    log->leaf[log->count] = leaf;
    if (leaf->grad)
        memcpy(log->grad[log->count], leaf->grad, (size_t)leaf->numel * sizeof(tg_real));
    log->count++;
}

static void test_grad_hook_reports_final_gradients(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *p[4];
    for (int k = 0; k < 4; k++)
        p[k] = tg_tensor_requires_grad(tg_test_rand((uint64_t)k + 1, -1, 1, TG_SHAPE(3)), true);
    tg_tensor *a = p[0], *b = p[1], *c = p[2], *unused = p[3];
    grad_hook_log log = {0};
    tg_tape_set_grad_hook(tape, log_leaf, &log);
    /* #0 u = b ⊙ a, #1 v = 3c, #2 w = v ⊙ b, #3 2·unused (which the loss does not read),
     * #4 L = <u, w>, #5 3a after the loss. b is read by #0 and #2, so the walk (#4 ... #0)
     * finishes `unused` after #3 (with no gradient), c after #1, then b and a after #0 (in
     * input order); #5 is not walked. */
    tg_tensor *u = mul(tape, b, a), *v = scale(tape, c, 3), *w = mul(tape, v, b);
    (void)scale(tape, unused, 2);
    tg_tensor *loss = dot(tape, u, w);
    (void)scale(tape, a, 3);
    tg_tape_backward(tape, loss);
    assert_int_equal(log.count, 4);
    assert_ptr_equal(log.leaf[0], unused);
    assert_ptr_equal(log.leaf[1], c);
    assert_ptr_equal(log.leaf[2], b);
    assert_ptr_equal(log.leaf[3], a);
    assert_null(unused->grad);
    for (int k = 1; k < 4; k++) /* what the hook saw is the gradient backward ends with */
        tg_test_assert_close("reported gradient", log.leaf[k]->grad, log.grad[k], 3, 0, 0);

    /* a leaf read twice by one node, made in the arena, is reported once; no hook, no calls */
    tg_tape_reset(tape);
    log.count = 0;
    tg_tensor *x = tg_tape_tensor_full(tape, TG_SHAPE(3), 2);
    x->requires_grad = true;
    tg_tape_backward(tape, dot(tape, x, x));
    assert_int_equal(log.count, 1);
    assert_ptr_equal(log.leaf[0], x);
    tg_test_assert_close("d<x,x>/dx", log.grad[0], (tg_real[]){4, 4, 4}, 3, 0, 0);
    tg_tape_set_grad_hook(tape, NULL, &log);
    tg_tape_backward(tape, dot(tape, scale(tape, a, 2), b));
    assert_int_equal(log.count, 1);
    tg_tape_free(tape);
    for (int k = 0; k < 4; k++) tg_tensor_free(p[k]);
}

/* What the node hook saw: the nodes in the order it was called, and how many leaves the
 * gradient hook had reported by then. */
typedef struct node_hook_log {
    int count;
    size_t index[8];
    int leaves_reported[8];
    const grad_hook_log *leaves;
    const tg_tape *tape;
} node_hook_log;

static void log_node(const tg_tape *tape, size_t index, void *ctx) {
    node_hook_log *log = ctx;
    assert_ptr_equal(tape, log->tape);
    assert_true(log->count < 8);
    log->index[log->count] = index;
    log->leaves_reported[log->count] = log->leaves->count;
    log->count++;
}

static void test_node_hook_beats_through_backward(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *p[3];
    for (int k = 0; k < 3; k++)
        p[k] = tg_tensor_requires_grad(tg_test_rand((uint64_t)k + 1, -1, 1, TG_SHAPE(3)), true);
    tg_tensor *a = p[0], *b = p[1], *unused = p[2];
    grad_hook_log leaves = {0};
    node_hook_log log = {.leaves = &leaves, .tape = tape};
    tg_tape_set_grad_hook(tape, log_leaf, &leaves);
    tg_tape_set_node_hook(tape, log_node, &log);
    /* #0 u = 3a, #1 2·unused (no gradient reaches it: its backward does not run), #2 w = u ⊙ b,
     * #3 L = sum w, #4 2b after the loss (not walked). The plain tg_tape_backward drives the
     * hook: after #3, #2 (b final: 1 leaf reported), #0 (after `unused` and a: 3). */
    tg_tensor *u = scale(tape, a, 3);
    (void)scale(tape, unused, 2);
    tg_tensor *loss = tg_sum(tape, mul(tape, u, b));
    (void)scale(tape, b, 2);
    tg_tape_backward(tape, loss);
    assert_int_equal(log.count, 3);
    assert_true(log.index[0] == 3 && log.index[1] == 2 && log.index[2] == 0);
    assert_int_equal(log.leaves_reported[0], 0);
    assert_int_equal(log.leaves_reported[1], 1);
    assert_int_equal(log.leaves_reported[2], 3);
    assert_ptr_equal(leaves.leaf[0], b);
    /* after_node of the same call runs too; removing the hook stops the calls */
    tg_tape_reset(tape);
    log.count = 0, leaves.count = 0;
    tg_tape_backward_ex(tape, tg_sum(tape, scale(tape, a, 2)), NULL);
    assert_int_equal(log.count, 2);
    tg_tape_set_node_hook(tape, NULL, &log);
    tg_tape_reset(tape);
    tg_tape_backward(tape, tg_sum(tape, scale(tape, a, 2)));
    assert_int_equal(log.count, 2);
    tg_tape_free(tape);
    for (int k = 0; k < 3; k++) tg_tensor_free(p[k]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backward_chain_and_accumulation),
        cmocka_unit_test(test_recording_off_and_no_grad_inputs),
        cmocka_unit_test(test_retain_grad_and_names),
        cmocka_unit_test(test_backward_with_seed),
        cmocka_unit_test(test_backward_after_node_hook),
        cmocka_unit_test(test_reset_recycles_memory),
        cmocka_unit_test(test_gradcheck_detects),
        cmocka_unit_test(test_gradcheck_defaults),
        cmocka_unit_test(test_gradcheck_needs_an_input_with_grad),
        cmocka_unit_test(test_grad_hook_reports_final_gradients),
        cmocka_unit_test(test_node_hook_beats_through_backward),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
