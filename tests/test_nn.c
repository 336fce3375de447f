/* The simple modules: Linear, Embedding, LayerNorm, Dropout — PyTorch's init, forward values,
 * gradchecks of inputs and parameters, and parity with PyTorch fixtures. */
#include "harness.h"

#include <math.h>
#include <string.h>

/* ---- default initialisation, bit for bit (uniform) or to 1e-6 (normal) ---- */

static void assert_params_equal_fixture(const char *case_name, tg_params *params, double atol) {
    tg_fixture *fx = tg_fixture_load(case_name);
    char keys[512] = "";
    for (size_t i = 0; i < params->count; i++) {
        char name[256];
        snprintf(name, sizeof name, "param.%s", params->names[i]);
        tg_fixture_assert_tensor(fx, name, params->tensors[i], atol, 0);
        strcat(keys, i ? "," : "");
        strcat(keys, params->names[i]);
    }
    assert_string_equal(keys, tg_fixture_meta(fx, "keys"));
    tg_fixture_free(fx);
}

static void test_linear_init_matches_torch(void **state) {
    (void)state;
    tg_manual_seed(0);
    tg_linear_layer *fc = tg_linear_new(7, 5, true);
    assert_params_equal_fixture("init_linear_7_5", tg_module_params(&fc->module),
                                0); /* bit for bit */
    tg_module_free(&fc->module);
}

static void test_embedding_init_matches_torch(void **state) {
    (void)state;
    tg_manual_seed(0);
    tg_embedding_layer *e = tg_embedding_new(10, 4, TG_NO_PADDING);
    assert_params_equal_fixture("init_embedding_10_4", tg_module_params(&e->module), 1e-6);
    tg_module_free(&e->module);
    tg_manual_seed(0);
    e = tg_embedding_new(10, 4, 1);
    for (int j = 0; j < 4; j++) assert_true(e->weight->data[4 + j] == 0); /* padding row */
    assert_params_equal_fixture("init_embedding_10_4_pad1", tg_module_params(&e->module), 1e-6);
    tg_module_free(&e->module);
    TG_EXPECT_FAIL(tg_embedding_new(10, 4, 10), "embedding_new", "padding_idx 10");
}

/* ---- parity: load PyTorch's parameters and inputs, compare outputs and gradients ---- */

/* The modules of one input as gradcheck functions: y = module ctx applied to in[0]. */
static tg_tensor *linear_fn(tg_tape *t, tg_tensor *const *in, void *ctx) {
    return tg_linear_forward(ctx, t, in[0]);
}

static tg_tensor *layernorm_fn(tg_tape *t, tg_tensor *const *in, void *ctx) {
    return tg_layernorm_forward(ctx, t, in[0]);
}

/* A module of one input against a fixture: PyTorch's parameters loaded, forward on in.x,
 * backward with gout; out, grad.x and every parameter gradient compared. */
static void module_parity(const char *case_name, void *m, tg_params *params, tg_gradcheck_fn fn) {
    tg_fixture *fx = tg_fixture_load(case_name);
    tg_fixture_load_params(fx, params);
    tg_tensor *x = tg_tensor_requires_grad(tg_fixture_tensor(fx, "in.x"), true);
    tg_tensor *gout = tg_fixture_tensor(fx, "gout");
    tg_tape *tape = tg_tape_new();
    tg_tensor *y = fn(tape, &x, m);
    tg_fixture_assert_tensor(fx, "out", y, TG_PARITY_ATOL, TG_PARITY_RTOL);
    tg_tape_backward_with(tape, y, gout->data);
    tg_fixture_assert_close(fx, "grad.x", x->grad, x->shape, x->ndim, TG_PARITY_ATOL,
                            TG_PARITY_RTOL);
    tg_fixture_assert_param_grads(fx, params, TG_PARITY_ATOL, TG_PARITY_RTOL);
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(gout);
    tg_fixture_free(fx);
}

static void test_linear_parity(void **state) {
    (void)state;
    const char *cases[] = {"mod_linear", "mod_linear_3d"};
    for (int c = 0; c < 2; c++) {
        tg_linear_layer *fc = tg_linear_new(5, 3, true);
        module_parity(cases[c], fc, tg_module_params(&fc->module), linear_fn);
        tg_module_free(&fc->module);
    }
}

static void test_embedding_parity(void **state) {
    (void)state;
    tg_fixture *fx = tg_fixture_load("mod_embedding_pad1");
    tg_embedding_layer *e = tg_embedding_new(10, 4, 1);
    tg_fixture_load_params(fx, tg_module_params(&e->module));
    tg_index *ids = tg_fixture_index(fx, "in.ids");
    tg_tensor *gout = tg_fixture_tensor(fx, "gout");
    tg_tape *tape = tg_tape_new();
    tg_tensor *y = tg_embedding_forward(e, tape, ids);
    tg_fixture_assert_tensor(fx, "out", y, 0, 0); /* a gather: exact */
    tg_tape_backward_with(tape, y, gout->data);
    tg_fixture_assert_param_grads(fx, tg_module_params(&e->module), TG_PARITY_ATOL, TG_PARITY_RTOL);
    for (int j = 0; j < 4; j++) assert_true(e->weight->grad[4 + j] == 0); /* padding row */
    tg_tape_free(tape);
    tg_index_free(ids), tg_tensor_free(gout);
    tg_module_free(&e->module);
    tg_fixture_free(fx);
}

static void test_layernorm_parity(void **state) {
    (void)state;
    const char *cases[] = {"mod_layernorm", "mod_layernorm_affine"};
    for (int c = 0; c < 2; c++) {
        tg_layernorm *ln = tg_layernorm_new(TG_SHAPE(6), (tg_real)1e-5, true);
        module_parity(cases[c], ln, tg_module_params(&ln->module), layernorm_fn);
        tg_module_free(&ln->module);
    }
}

/* nn.CrossEntropyLoss(ignore_index=3, label_smoothing=0.1) as the module-level helper: the
 * options from the fixture's metadata, the loss and the logits' gradient compared. */
static void test_cross_entropy_module_parity(void **state) {
    (void)state;
    tg_fixture *fx = tg_fixture_load("mod_cross_entropy_ignore_ls");
    tg_tensor *logits = tg_tensor_requires_grad(tg_fixture_tensor(fx, "in.logits"), true);
    tg_index *target = tg_fixture_index(fx, "in.target");
    tg_tensor *gout = tg_fixture_tensor(fx, "gout");
    tg_loss_options o = tg_loss_defaults();
    o.ignore_index = atoi(tg_fixture_meta(fx, "ignore_index"));
    o.label_smoothing = (tg_real)atof(tg_fixture_meta(fx, "label_smoothing"));
    assert_int_equal(o.ignore_index, 3);
    assert_string_equal(tg_fixture_meta(fx, "reduction"), "mean");
    bool ignored = false; /* the case really has an ignored target */
    for (int64_t i = 0; i < target->numel; i++) ignored |= target->data[i] == 3;
    assert_true(ignored);
    tg_tape *tape = tg_tape_new();
    tg_tensor *loss = tg_cross_entropy_ex(tape, logits, target, &o);
    tg_fixture_assert_tensor(fx, "out", loss, TG_PARITY_ATOL, TG_PARITY_RTOL);
    tg_tape_backward_with(tape, loss, gout->data);
    tg_fixture_assert_close(fx, "grad.logits", logits->grad, logits->shape, logits->ndim,
                            TG_PARITY_ATOL, TG_PARITY_RTOL);
    tg_tape_free(tape);
    tg_tensor_free(logits), tg_tensor_free(gout);
    tg_index_free(target);
    tg_fixture_free(fx);
}

/* ---- gradchecks of inputs and parameters (float64) ---- */

typedef struct embedding_ctx {
    tg_embedding_layer *m;
    const tg_index *ids;
} embedding_ctx;

/* The module's weight is in[0]; Σ e² weighs every looked-up element differently. */
static tg_tensor *embedding_fn(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)in;
    const embedding_ctx *c = ctx;
    tg_tensor *e = tg_embedding_forward(c->m, t, c->ids);
    return tg_sum(t, tg_mul(t, e, e));
}

static void test_module_gradchecks(void **state) {
    (void)state;
    TG_TEST_REQUIRE_F64();
    tg_manual_seed(3);
    tg_linear_layer *fc = tg_linear_new(4, 3, true);
    tg_tensor *x = tg_tensor_requires_grad(tg_test_rand(1, -1, 1, TG_SHAPE(2, 3, 4)), true);
    tg_test_gradcheck("Linear", linear_fn, fc, (tg_tensor *[]){x, fc->weight, fc->bias}, 3);
    tg_module_free(&fc->module);

    tg_layernorm *ln = tg_layernorm_new(TG_SHAPE(3, 4), (tg_real)1e-5, true);
    tg_init_uniform(ln->weight, (tg_real)0.5, (tg_real)1.5, NULL);
    tg_init_uniform(ln->bias, (tg_real)-0.5, (tg_real)0.5, NULL);
    tg_test_gradcheck("LayerNorm", layernorm_fn, ln, (tg_tensor *[]){x, ln->weight, ln->bias}, 3);
    tg_module_free(&ln->module);
    tg_tensor_free(x);

    /* Embedding with padding_idx 1 through the module: repeated ids (scatter-add); the padding
     * row is not looked up here (its output would depend on it while its gradient is 0 by
     * definition: test_index.c checks that case), so both gradients of that row are 0 */
    tg_embedding_layer *emb = tg_embedding_new(5, 3, 1);
    tg_index *ids = tg_index_from_array(TG_SHAPE(2, 3), (const int32_t[]){4, 3, 0, 4, 2, 0});
    embedding_ctx ec = {emb, ids};
    tg_test_gradcheck("Embedding padding_idx 1", embedding_fn, &ec, (tg_tensor *[]){emb->weight},
                      1);
    tg_index_free(ids);
    tg_module_free(&emb->module);
}

static void test_module_errors(void **state) {
    (void)state;
    tg_layernorm *ln = tg_layernorm_new(TG_SHAPE(6), (tg_real)1e-5, false);
    tg_tensor *x = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(2, 5)), "x");
    tg_tape *tape = tg_tape_new();
    TG_EXPECT_FAIL(tg_layernorm_forward(ln, tape, x), "layernorm", "(2, 5) 'x'", "(6,)");
    TG_EXPECT_FAIL(tg_linear_new(0, 3, true), "linear_new", "positive");
    tg_tape_free(tape);
    tg_tensor_free(x);
    tg_module_free(&ln->module);
}

static void test_dropout_module_follows_training_mode(void **state) {
    (void)state;
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_ones(TG_SHAPE(1000));
    tg_dropout_layer *drop = tg_dropout_new((tg_real)0.5);
    assert_true(drop->module.training); /* PyTorch's default */
    tg_module_eval(&drop->module);
    assert_ptr_equal(tg_dropout_forward(drop, tape, x), x); /* eval: identity */
    tg_module_train(&drop->module, true);
    tg_tensor *y = tg_dropout_forward(drop, tape, x);
    int kept = 0;
    for (int i = 0; i < 1000; i++) kept += y->data[i] != 0;
    assert_in_range(kept, 400, 600);
    tg_tape_free(tape);
    tg_module_free(&drop->module);
    tg_tensor_free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_init_matches_torch),
        cmocka_unit_test(test_embedding_init_matches_torch),
        cmocka_unit_test(test_linear_parity),
        cmocka_unit_test(test_embedding_parity),
        cmocka_unit_test(test_layernorm_parity),
        cmocka_unit_test(test_cross_entropy_module_parity),
        cmocka_unit_test(test_module_gradchecks),
        cmocka_unit_test(test_module_errors),
        cmocka_unit_test(test_dropout_module_follows_training_mode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
