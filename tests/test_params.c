/* Named parameter lists and checkpoints (tg_params_save / tg_params_load). */
#include "harness.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static int make_dir(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/tg_params_XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

static void path_in_dir(char *buf, size_t len, const char *file) {
    snprintf(buf, len, "%s/%s", dir, file);
}

/* A two-level model: "fc.weight", "fc.bias", "gru.weight_ih_l0". */
typedef struct model {
    tg_tensor *w, *b, *g;
    tg_params *fc, *gru, *all;
} model;

static model model_new(uint64_t seed) {
    model m;
    m.w = tg_test_rand(seed, -1, 1, TG_SHAPE(3, 2));
    m.b = tg_test_rand(seed + 1, -1, 1, TG_SHAPE(3));
    m.g = tg_test_rand(seed + 2, -1, 1, TG_SHAPE(6, 4));
    m.fc = tg_params_new();
    tg_params_add(m.fc, "weight", m.w);
    tg_params_add(m.fc, "bias", m.b);
    m.gru = tg_params_new();
    tg_params_add(m.gru, "weight_ih_l0", m.g);
    m.all = tg_params_new();
    tg_params_extend(m.all, "fc", m.fc);
    tg_params_extend(m.all, "gru", m.gru);
    return m;
}

static void model_free(model *m) {
    tg_params_free(m->fc), tg_params_free(m->gru), tg_params_free(m->all);
    tg_tensor_free(m->w), tg_tensor_free(m->b), tg_tensor_free(m->g);
}

static void test_names_and_order(void **state) {
    (void)state;
    model m = model_new(1);
    assert_int_equal(m.all->count, 3);
    assert_string_equal(m.all->names[0], "fc.weight");
    assert_string_equal(m.all->names[1], "fc.bias");
    assert_string_equal(m.all->names[2], "gru.weight_ih_l0");
    assert_string_equal(m.g->name, "gru.weight_ih_l0"); /* the tensor carries its full name */
    assert_ptr_equal(tg_params_find(m.all, "fc.bias"), m.b);
    assert_null(tg_params_find(m.all, "fc"));
    assert_int_equal(tg_params_numel(m.all), 6 + 3 + 24);
    TG_EXPECT_FAIL(tg_params_add(m.fc, "weight", m.w), "duplicate", "'weight'");
    model_free(&m);
}

static void test_save_load_round_trip(void **state) {
    (void)state;
    char path[128];
    path_in_dir(path, sizeof path, "model.safetensors");
    model a = model_new(1), b = model_new(100);
    assert_int_equal(tg_params_save(a.all, path), TG_OK);
    assert_int_equal(tg_params_load(b.all, path, false), TG_OK);
    assert_memory_equal(a.w->data, b.w->data, 6 * sizeof(tg_real));
    assert_memory_equal(a.g->data, b.g->data, 24 * sizeof(tg_real));
    /* the file is a plain safetensors file with the names as keys */
    tg_safetensors *st = NULL;
    assert_int_equal(tg_safetensors_read(path, &st), TG_OK);
    assert_non_null(tg_safetensors_find(st, "gru.weight_ih_l0"));
    assert_string_equal(tg_safetensors_meta(st, "format"), "pt");
    tg_safetensors_free(st);
    model_free(&a), model_free(&b);
}

/* Loading errors, one test per case: each leaves the model untouched. The file:
 * model_new(1) saved whole, or only its fc.* (names "weight", "bias"); returns its path. */
static const char *saved_model(const char *file, bool only_fc) {
    static char path[128];
    path_in_dir(path, sizeof path, file);
    model a = model_new(1);
    assert_int_equal(tg_params_save(only_fc ? a.fc : a.all, path), TG_OK);
    model_free(&a);
    return path;
}

/* a file with only fc.*: the model's fc.weight (under its full name) is missing */
static void test_load_missing_tensor(void **state) {
    (void)state;
    const char *path = saved_model("small.safetensors", true);
    model b = model_new(100);
    tg_tensor *before = tg_tensor_clone(b.w);
    assert_int_equal(tg_params_load(b.all, path, false), TG_ERR_MISSING);
    assert_non_null(strstr(tg_error_message(), "'fc.weight'"));
    assert_non_null(strstr(tg_error_message(), "missing"));
    assert_memory_equal(b.w->data, before->data, 6 * sizeof(tg_real));
    tg_tensor_free(before);
    model_free(&b);
}

/* extra tensors: refused unless allowed */
static void test_load_unexpected_tensor(void **state) {
    (void)state;
    const char *path = saved_model("all.safetensors", false);
    model a = model_new(1), b = model_new(100);
    tg_params *fc_prefixed = tg_params_new();
    tg_params_extend(fc_prefixed, "fc", b.fc);
    tg_tensor *before = tg_tensor_clone(b.w);
    assert_int_equal(tg_params_load(fc_prefixed, path, false), TG_ERR_FORMAT);
    assert_non_null(strstr(tg_error_message(), "unexpected tensor 'gru.weight_ih_l0'"));
    assert_memory_equal(b.w->data, before->data, 6 * sizeof(tg_real));
    assert_int_equal(tg_params_load(fc_prefixed, path, true), TG_OK);
    assert_memory_equal(b.w->data, a.w->data, 6 * sizeof(tg_real));
    tg_params_free(fc_prefixed), tg_tensor_free(before);
    model_free(&a), model_free(&b);
}

/* a tensor whose shape differs from the model's parameter; then a path that is no file */
static void test_load_shape_mismatch(void **state) {
    (void)state;
    const char *path = saved_model("all.safetensors", false);
    tg_tensor *wide = tg_tensor_zeros(TG_SHAPE(3, 5));
    tg_params *other = tg_params_new();
    tg_params_add(other, "fc.weight", wide);
    assert_int_equal(tg_params_load(other, path, true), TG_ERR_SHAPE);
    assert_non_null(strstr(tg_error_message(), "(3, 2) in the file, the model needs (3, 5)"));
    for (int i = 0; i < 15; i++) assert_true(wide->data[i] == 0);
    char absent[128];
    path_in_dir(absent, sizeof absent, "absent.safetensors");
    assert_int_equal(tg_params_load(other, absent, true), TG_ERR_IO);
    tg_params_free(other), tg_tensor_free(wide);
}

/* A PyTorch state_dict (Embedding(11, 4) + GRU(4, 5, batch_first) + Linear(5, 3), built
 * after torch.manual_seed(0)) written as safetensors by tests/fixturegen/state_dict.py loads
 * into the same model made of tapegrad modules; and the same seed gives the same weights
 * (Embedding's normal draws to 1e-6, the rest bit for bit). */
static void test_loads_pytorch_state_dict(void **state) {
    (void)state;
    tg_manual_seed(0);
    tg_embedding_layer *embedding = tg_embedding_new(11, 4, TG_NO_PADDING);
    tg_gru *gru = tg_gru_new(tg_rnn_defaults(4, 5));
    tg_linear_layer *fc = tg_linear_new(5, 3, true);
    tg_params *model = tg_params_new();
    tg_params_extend(model, "embedding", embedding->params);
    tg_params_extend(model, "gru", tg_gru_params(gru));
    tg_params_extend(model, "fc", fc->params);
    tg_params *fresh = tg_params_new(); /* what our own init drew, to compare */
    tg_tensor *copies[16];
    for (size_t i = 0; i < model->count; i++) {
        copies[i] = tg_tensor_clone(model->tensors[i]);
        tg_params_add(fresh, model->names[i], copies[i]);
    }

    char path[512];
    snprintf(path, sizeof path, "%s/state_dict_gru_classifier.safetensors", TG_FIXTURES_DIR);
    assert_int_equal(tg_params_load(model, path, false), TG_OK);
    for (size_t i = 0; i < model->count; i++) {
        const double atol = strcmp(model->names[i], "embedding.weight") == 0 ? 1e-6 : 0;
        tg_test_assert_close(model->names[i], fresh->tensors[i]->data, model->tensors[i]->data,
                             model->tensors[i]->numel, atol, 0);
        tg_tensor_free(copies[i]);
    }
    tg_params_free(fresh), tg_params_free(model);
    tg_embedding_free(embedding), tg_gru_free(gru), tg_linear_free(fc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_order),     cmocka_unit_test(test_save_load_round_trip),
        cmocka_unit_test(test_load_missing_tensor), cmocka_unit_test(test_load_unexpected_tensor),
        cmocka_unit_test(test_load_shape_mismatch), cmocka_unit_test(test_loads_pytorch_state_dict),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
