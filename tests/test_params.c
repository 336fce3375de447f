/* Named parameter lists and checkpoints (tg_params_save / tg_params_load). */
#include "harness.h"

#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
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
    assert_string_equal(tg_safetensors_meta(st, "framework"), "tapegrad"); /* ours: replaceable */
    tg_safetensors_free(st);
    model_free(&a), model_free(&b);
}

/* Loading errors, one test per case: each leaves the model untouched. The file:
 * model_new(1) saved whole, or only its fc.* (names "weight", "bias"), and with fc.weight[4]
 * set to *w4 unless w4 is NULL; returns its path. */
static const char *saved_model(const char *file, bool only_fc, const double *w4) {
    static char path[128];
    path_in_dir(path, sizeof path, file);
    model a = model_new(1);
    if (w4) a.w->data[4] = (tg_real)*w4;
    assert_int_equal(tg_params_save(only_fc ? a.fc : a.all, path), TG_OK);
    model_free(&a);
    return path;
}

/* a file with only fc.*: the model's fc.weight (under its full name) is missing */
static void test_load_missing_tensor(void **state) {
    (void)state;
    const char *path = saved_model("small.safetensors", true, NULL);
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
    const char *path = saved_model("all.safetensors", false, NULL);
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
    const char *path = saved_model("all.safetensors", false, NULL);
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

/* ---- saving over what is already there ---- */

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void assert_file_text(const char *path, const char *text) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char buf[256] = {0};
    const size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    assert_int_equal(n, strlen(text));
    assert_string_equal(buf, text);
}

/* A file that is not a tapegrad checkpoint is not replaced, unless forced. */
static void test_save_refuses_foreign_file(void **state) {
    (void)state;
    char path[128];
    path_in_dir(path, sizeof path, "notes.txt");
    write_text(path, "my notes, not a checkpoint\n");
    model a = model_new(1), b = model_new(100);
    assert_int_equal(tg_params_save(a.all, path), TG_ERR_IO);
    assert_non_null(strstr(tg_error_message(), "tg_params_save: refusing to replace '"));
    assert_non_null(strstr(tg_error_message(), "notes.txt', which is not a tapegrad checkpoint"));
    assert_file_text(path, "my notes, not a checkpoint\n");
    const tg_save_options unforced = {.force = false}, force = {.force = true};
    assert_int_equal(tg_params_save_with(a.all, path, &unforced), TG_ERR_IO);
    assert_file_text(path, "my notes, not a checkpoint\n");
    assert_int_equal(tg_params_save_with(a.all, path, &force), TG_OK);
    assert_int_equal(tg_params_load(b.all, path, false), TG_OK);
    assert_memory_equal(a.g->data, b.g->data, 24 * sizeof(tg_real));
    model_free(&a), model_free(&b);
}

/* A valid safetensors file without our marker (here PyTorch's, from the fixtures, copied) is
 * foreign too; a tapegrad checkpoint is replaced; so is a symbolic link to one, by the file. */
static void test_save_replaces_only_checkpoints(void **state) {
    (void)state;
    char src[512], path[128], text[128];
    snprintf(src, sizeof src, "%s/state_dict_gru_classifier.safetensors", TG_FIXTURES_DIR);
    path_in_dir(path, sizeof path, "pytorch.safetensors");
    char *bytes = NULL;
    size_t size = 0;
    assert_int_equal(tg_file_read(src, 0, &bytes, &size), TG_OK);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
    model a = model_new(1), b = model_new(100);
    assert_int_equal(tg_params_save(a.all, path), TG_ERR_IO);
    assert_non_null(strstr(tg_error_message(), "without \"framework\": \"tapegrad\""));
    char *after = NULL;
    size_t after_size = 0;
    assert_int_equal(tg_file_read(path, 0, &after, &after_size), TG_OK);
    assert_int_equal(after_size, size);
    assert_memory_equal(after, bytes, size);
    free(after), free(bytes);

    path_in_dir(path, sizeof path, "ours.safetensors");
    assert_int_equal(tg_params_save(b.all, path), TG_OK);
    assert_int_equal(tg_params_save(a.all, path), TG_OK); /* over our own: replaced */
    assert_int_equal(tg_params_load(b.all, path, false), TG_OK);
    assert_memory_equal(a.w->data, b.w->data, 6 * sizeof(tg_real));

    /* a FIFO is refused at once, never waited on (SIGALRM fails the suite if it hangs) */
    path_in_dir(text, sizeof text, "x.fifo");
    assert_int_equal(mkfifo(text, 0600), 0);
    alarm(10);
    assert_int_equal(tg_params_save(a.all, text), TG_ERR_IO);
    assert_non_null(strstr(tg_error_message(), "is a FIFO, not a regular file"));
    assert_int_equal(tg_params_load(a.all, text, false), TG_ERR_IO);
    alarm(0);
    unlink(text);
    model_free(&a), model_free(&b);
}

/* ---- values that cannot be loaded ---- */

static void expect_refused_load(const char *path, const char *fragment) {
    model b = model_new(100), fresh = model_new(100);
    assert_int_equal(tg_params_load(b.all, path, false), TG_ERR_FORMAT);
    if (!strstr(tg_error_message(), fragment))
        fail_msg("message \"%s\" lacks \"%s\"", tg_error_message(), fragment);
    assert_non_null(strstr(tg_error_message(), "'fc.weight'"));
    /* nothing modified, not even the tensors before the bad one */
    assert_memory_equal(b.w->data, fresh.w->data, 6 * sizeof(tg_real));
    assert_memory_equal(b.g->data, fresh.g->data, 24 * sizeof(tg_real));
    model_free(&b), model_free(&fresh);
}

static void test_load_refuses_nan(void **state) {
    (void)state;
    expect_refused_load(saved_model("nan.safetensors", false, &(double){NAN}),
                        "holds NaN at index 4");
}

static void test_load_refuses_inf(void **state) {
    (void)state;
    expect_refused_load(saved_model("inf.safetensors", false, &(double){INFINITY}),
                        "holds inf at index 4");
    expect_refused_load(saved_model("ninf.safetensors", false, &(double){-INFINITY}),
                        "holds -inf at index 4");
}

/* An F64 value that is finite in the file but beyond float32's range becomes inf there. */
static void test_load_refuses_f64_overflow(void **state) {
    (void)state;
    char path[128];
    path_in_dir(path, sizeof path, "f64.safetensors");
    const double big[1] = {1e300};
    const tg_st_entry e = {.name = "x",
                           .dtype = TG_DTYPE_F64,
                           .ndim = 1,
                           .shape = {1},
                           .numel = 1,
                           .nbytes = 8,
                           .data = big};
    assert_int_equal(tg_safetensors_write(path, &e, 1, NULL, NULL, 0), TG_OK);
    tg_tensor *x = tg_tensor_zeros(TG_SHAPE(1));
    tg_params *ps = tg_params_new();
    tg_params_add(ps, "x", x);
#ifdef TG_DOUBLE
    assert_int_equal(tg_params_load(ps, path, false), TG_OK);
    assert_true(x->data[0] == 1e300);
#else
    assert_int_equal(tg_params_load(ps, path, false), TG_ERR_FORMAT);
    assert_non_null(
        strstr(tg_error_message(), "'x' holds 1e+300 at index 0, beyond the range of float32"));
    assert_true(x->data[0] == 0);
#endif
    tg_params_free(ps), tg_tensor_free(x);
}

/* allow_nonfinite loads such a file as it is (to look at a run that diverged). */
static void test_load_allow_nonfinite(void **state) {
    (void)state;
    const char *path = saved_model("nan2.safetensors", false, &(double){NAN});
    model a = model_new(1), b = model_new(100);
    tg_load_options opts = {.allow_nonfinite = true};
    assert_int_equal(tg_params_load_with(b.all, path, &opts), TG_OK);
    assert_true(isnan(b.w->data[4]));
    assert_true(b.w->data[3] == a.w->data[3]);
    /* the other options: a limit below the file's size refuses it */
    opts.max_bytes = 64;
    assert_int_equal(tg_params_load_with(b.all, path, &opts), TG_ERR_IO);
    assert_non_null(strstr(tg_error_message(), "more than the limit of 64 bytes"));
    model_free(&a), model_free(&b);
}

/* A count (tg_params_add_count) must hold non-negative integers. */
static void test_load_checks_counts(void **state) {
    (void)state;
    char path[128];
    path_in_dir(path, sizeof path, "count.safetensors");
    tg_tensor *c = tg_tensor_zeros(TG_SHAPE(2));
    tg_params *ps = tg_params_new(), *outer = tg_params_new();
    tg_params_add_count(ps, "seen", c);
    tg_params_extend(outer, "train", ps); /* counts stay counts under a prefix */
    assert_true(outer->is_count[0]);
    const double bad[] = {-1, NAN, 2.5, INFINITY};
    const char *shown[] = {"holds -1 at index 1", "holds nan at index 1", "holds 2.5 at index 1",
                           "holds inf at index 1"};
    for (int k = 0; k < 4; k++) {
        c->data[0] = 3, c->data[1] = (tg_real)bad[k];
        assert_int_equal(tg_params_save(outer, path), TG_OK);
        c->data[0] = c->data[1] = 7;
        const tg_load_options opts = {.allow_nonfinite = true}; /* does not cover counts */
        assert_int_equal(tg_params_load_with(outer, path, &opts), TG_ERR_FORMAT);
        assert_non_null(strstr(tg_error_message(), "count 'train.seen'"));
        if (!strstr(tg_error_message(), shown[k]))
            fail_msg("message \"%s\" lacks \"%s\"", tg_error_message(), shown[k]);
        assert_true(c->data[0] == 7 && c->data[1] == 7);
    }
    c->data[0] = 3, c->data[1] = 16777216; /* 2^24 */
    assert_int_equal(tg_params_save(outer, path), TG_OK);
    assert_int_equal(tg_params_load(outer, path, false), TG_OK);
    tg_params_free(ps), tg_params_free(outer), tg_tensor_free(c);
}

/* Loading, like saving, removes what crashed saves left in the folder. */
static void test_load_removes_stale_temps(void **state) {
    (void)state;
    const char *path = saved_model("stale.safetensors", false, NULL);
    const pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    char stale[256];
    snprintf(stale, sizeof stale, "%s.tmp.%ld", path, (long)pid);
    write_text(stale, "");
    model b = model_new(100);
    assert_int_equal(tg_params_load(b.all, path, false), TG_OK);
    assert_int_equal(access(stale, F_OK), -1);
    model_free(&b);
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
    tg_params_extend(model, "embedding", tg_module_params(&embedding->module));
    tg_params_extend(model, "gru", tg_module_params(&gru->base.module));
    tg_params_extend(model, "fc", tg_module_params(&fc->module));
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
    tg_module_free(&embedding->module), tg_module_free(&gru->base.module),
        tg_module_free(&fc->module);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_order),
        cmocka_unit_test(test_save_load_round_trip),
        cmocka_unit_test(test_load_missing_tensor),
        cmocka_unit_test(test_load_unexpected_tensor),
        cmocka_unit_test(test_load_shape_mismatch),
        cmocka_unit_test(test_loads_pytorch_state_dict),
        cmocka_unit_test(test_save_refuses_foreign_file),
        cmocka_unit_test(test_save_replaces_only_checkpoints),
        cmocka_unit_test(test_load_refuses_nan),
        cmocka_unit_test(test_load_refuses_inf),
        cmocka_unit_test(test_load_refuses_f64_overflow),
        cmocka_unit_test(test_load_allow_nonfinite),
        cmocka_unit_test(test_load_checks_counts),
        cmocka_unit_test(test_load_removes_stale_temps),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
