/* Tensors, shapes, the arena and the RNG. */
#include "harness.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

static void test_creation(void **state) {
    (void)state;
    tg_tensor *z = tg_tensor_zeros(TG_SHAPE(2, 3));
    assert_int_equal(z->ndim, 2);
    assert_int_equal(z->numel, 6);
    for (int i = 0; i < 6; i++) assert_true(z->data[i] == 0);
    tg_tensor *o = tg_tensor_ones(TG_SHAPE(4));
    for (int i = 0; i < 4; i++) assert_true(o->data[i] == 1);
    tg_tensor *f = tg_tensor_full(TG_SHAPE(2, 2), (tg_real)2.5);
    for (int i = 0; i < 4; i++) assert_true(f->data[i] == (tg_real)2.5);
    const tg_real values[] = {1, 2, 3, 4, 5, 6};
    tg_tensor *a = tg_tensor_from_array(TG_SHAPE(3, 2), values);
    assert_true(a->data[5] == 6);
    assert_int_equal(tg_tensor_size(a, -1), 2);
    assert_int_equal(tg_tensor_size(a, 0), 3);
    tg_tensor *c = tg_tensor_clone(a);
    assert_ptr_not_equal(c->data, a->data);
    assert_memory_equal(c->data, a->data, sizeof values);
    tg_tensor *s = tg_tensor_new(0, NULL); /* a 0-dim scalar */
    assert_int_equal(s->numel, 1);
    assert_true(tg_item(s) == 0);
    tg_tensor *e = tg_tensor_zeros(TG_SHAPE(0, 3));
    assert_int_equal(e->numel, 0);
    tg_tensor_free(z), tg_tensor_free(o), tg_tensor_free(f), tg_tensor_free(a);
    tg_tensor_free(c), tg_tensor_free(s), tg_tensor_free(e);
}

static void test_arange(void **state) {
    (void)state;
    tg_tensor *a = tg_tensor_arange(0, 5, 1);
    assert_int_equal(a->numel, 5);
    for (int i = 0; i < 5; i++) assert_true(a->data[i] == i);
    tg_tensor *b = tg_tensor_arange(1, 2, (tg_real)0.25); /* 1, 1.25, 1.5, 1.75 */
    assert_int_equal(b->numel, 4);
    assert_true(b->data[3] == (tg_real)1.75);
    tg_tensor *c = tg_tensor_arange(3, 0, -1); /* 3, 2, 1 */
    assert_int_equal(c->numel, 3);
    assert_true(c->data[2] == 1);
    tg_tensor *d = tg_tensor_arange(0, -1, 1); /* empty */
    assert_int_equal(d->numel, 0);
    TG_EXPECT_FAIL(tg_tensor_arange(0, 1, 0), "arange", "step");
    tg_tensor_free(a), tg_tensor_free(b), tg_tensor_free(c), tg_tensor_free(d);
}

static void test_shape_errors(void **state) {
    (void)state;
    TG_EXPECT_FAIL(tg_tensor_zeros(TG_SHAPE(2, -3)),
                   "tg_tensor_zeros: dimension 1 of the shape is negative");
    TG_EXPECT_FAIL(tg_tensor_zeros(7, (const int64_t[]){1, 1, 1, 1, 1, 1, 1}),
                   "tg_tensor_zeros: shape of 7 dimensions");
    TG_EXPECT_FAIL(tg_shape_numel(TG_SHAPE(INT64_MAX / 2, 4)), "tg_shape_numel", "overflows");
    tg_tensor *a = tg_tensor_named(tg_tensor_zeros(TG_SHAPE(2, 3)), "x");
    TG_EXPECT_FAIL(tg_tensor_size(a, 2), "size", "dim 2", "(2, 3) 'x'");
    TG_EXPECT_FAIL(tg_item(a), "item", "(2, 3) 'x'", "6 elements");
    tg_tensor_free(a);
}

static void test_describe_and_print(void **state) {
    (void)state;
    char buf[128];
    assert_string_equal(tg_shape_format(TG_SHAPE(2, 3), buf, sizeof buf), "(2, 3)");
    assert_string_equal(tg_shape_format(TG_SHAPE(7), buf, sizeof buf), "(7,)");
    assert_string_equal(tg_shape_format(0, NULL, buf, sizeof buf), "()");
    tg_tensor *a = tg_tensor_ones(TG_SHAPE(2, 2));
    assert_string_equal(tg_tensor_describe(a, buf, sizeof buf), "(2, 2) <unnamed>");
    tg_tensor_set_name(a, "gru.weight_ih_l0");
    assert_string_equal(tg_tensor_describe(a, buf, sizeof buf), "(2, 2) 'gru.weight_ih_l0'");
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    tg_tensor_fprint(f, a);
    fclose(f);
    assert_non_null(strstr(text, "tensor([[ 1.0000,  1.0000],"));
    assert_non_null(strstr(text, "shape=(2, 2), name='gru.weight_ih_l0'"));
    free(text);
    tg_tensor_free(a);
}

static void test_index_tensor(void **state) {
    (void)state;
    const int32_t ids[] = {3, 1, 4, 1};
    tg_index *ix = tg_index_from_array(TG_SHAPE(2, 2), ids);
    assert_int_equal(ix->numel, 4);
    assert_int_equal(ix->data[2], 4);
    tg_index_free(ix);
}

/* The first MT19937 outputs for seed 5489 (the reference's default) and for seed 0
 * (torch.manual_seed(0): 2357136044). */
static void test_mt19937(void **state) {
    (void)state;
    tg_rng rng;
    tg_rng_seed(&rng, 5489);
    assert_int_equal(tg_rng_next_u32(&rng), 3499211612u);
    assert_int_equal(tg_rng_next_u32(&rng), 581869302u);
    tg_rng_seed(&rng, 0);
    assert_int_equal(tg_rng_next_u32(&rng), 2357136044u);
    /* the 10000th output of the reference generator (seed 5489) */
    tg_rng_seed(&rng, 5489);
    uint32_t r = 0;
    for (int i = 0; i < 10000; i++) r = tg_rng_next_u32(&rng);
    assert_int_equal(r, 4123659995u);
}

/* torch.manual_seed(0); torch.empty(5).uniform_(0, 1) printed
 * [0.49625659, 0.76822180, 0.08847743, 0.13203049, 0.30742282]. */
static void test_uniform_matches_torch(void **state) {
    (void)state;
    tg_manual_seed(0);
    tg_tensor *u = tg_tensor_new(TG_SHAPE(5));
    tg_init_uniform(u, 0, 1, NULL);
    const double want[] = {0.49625658988952637, 0.7682217955589294, 0.08847743272781372,
                           0.13203048706054688, 0.30742281675338745};
    for (int i = 0; i < 5; i++) assert_true((double)u->data[i] == (double)(float)want[i]);
    tg_tensor_free(u);
}

/* Against PyTorch (tests/fixturegen/rng.py): rng_mt19937 holds the first 10 raw MT19937
 * outputs for seeds 0, 42 and 5489; rng_seed0 / rng_seed42 the draws of uniform_ and normal_
 * after torch.manual_seed(s), each from a fresh seed, and a uniform_ then a normal_ from one
 * stream. Uniform draws are float32 arithmetic in both builds: bit for bit; normal ones
 * go through log/cos/sin: to 1e-6. */
static void test_rng_fixture(void **state) {
    (void)state;
    /* raw I64 values (beyond int32, so not through tg_fixture_index) */
    tg_safetensors *st = NULL;
    assert_int_equal(tg_safetensors_read(TG_FIXTURES_DIR "/rng_mt19937.safetensors", &st), TG_OK);
    const uint64_t seeds[] = {0, 42, 5489};
    for (int k = 0; k < 3; k++) {
        char name[32];
        snprintf(name, sizeof name, "mt.seed%llu", (unsigned long long)seeds[k]);
        const tg_st_entry *e = tg_safetensors_find(st, name);
        assert_non_null(e);
        assert_int_equal(e->dtype, TG_DTYPE_I64), assert_int_equal(e->numel, 10);
        int64_t want[10];
        memcpy(want, e->data, sizeof want); /* little-endian, as the machine */
        tg_rng rng;
        tg_rng_seed(&rng, seeds[k]);
        for (int i = 0; i < 10; i++) assert_int_equal(tg_rng_next_u32(&rng), (uint64_t)want[i]);
    }
    tg_safetensors_free(st);
    tg_fixture *fx = NULL;

    const struct {
        const char *out;
        bool normal;
        double a, b; /* lo, hi or mean, std */
        int ndim;
        int64_t shape[2];
    } draws[] = {
        {"out.uniform_37", false, -0.5, 1.5, 1, {37}},
        {"out.uniform_5x7", false, 0, 1, 2, {5, 7}},
        {"out.normal_40", true, 0, 1, 1, {40}},
        {"out.normal_3x16", true, 2, 0.5, 2, {3, 16}},
    };
    const char *cases[] = {"rng_seed0", "rng_seed42"};
    for (int c = 0; c < 2; c++) {
        fx = tg_fixture_load(cases[c]);
        const uint64_t seed = (uint64_t)atoll(tg_fixture_meta(fx, "rng_seed"));
        for (size_t d = 0; d < sizeof draws / sizeof *draws; d++) {
            tg_manual_seed(seed);
            tg_tensor *t = tg_tensor_new(draws[d].ndim, draws[d].shape);
            if (draws[d].normal)
                tg_init_normal(t, (tg_real)draws[d].a, (tg_real)draws[d].b, NULL);
            else
                tg_init_uniform(t, (tg_real)draws[d].a, (tg_real)draws[d].b, NULL);
            const double tol = draws[d].normal ? 1e-6 : 0;
            tg_fixture_assert_tensor(fx, draws[d].out, t, tol, tol);
            tg_tensor_free(t);
        }
        tg_manual_seed(seed); /* one stream: uniform_(-0.5, 1.5) of 37, then normal_(2, 0.5) */
        tg_tensor *u = tg_tensor_new(TG_SHAPE(37)), *n = tg_tensor_new(TG_SHAPE(3, 16));
        tg_init_uniform(u, (tg_real)-0.5, (tg_real)1.5, NULL);
        tg_init_normal(n, 2, (tg_real)0.5, NULL);
        tg_fixture_assert_tensor(fx, "out.seq_uniform_37", u, 0, 0);
        tg_fixture_assert_tensor(fx, "out.seq_normal_3x16", n, 1e-6, 1e-6);
        tg_tensor_free(u), tg_tensor_free(n);
        tg_fixture_free(fx);
    }
}

static void test_arena_recycles(void **state) {
    (void)state;
    tg_arena *a = tg_arena_new(1024);
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < 100; i++) {
            unsigned char *p = tg_arena_alloc(a, 100 + (size_t)i);
            assert_int_equal((uintptr_t)p % 64, 0);
            memset(p, 0xab, 100 + (size_t)i);
        }
        const uint64_t before = tg_arena_malloc_count(a);
        tg_arena_reset(a);
        if (step > 0) assert_int_equal(tg_arena_malloc_count(a), before); /* no malloc */
    }
    /* after the first step everything fits in one block: no more mallocs */
    const uint64_t count = tg_arena_malloc_count(a);
    for (int i = 0; i < 100; i++) tg_arena_alloc(a, 100 + (size_t)i);
    assert_int_equal(tg_arena_malloc_count(a), count);
    assert_true(tg_arena_capacity(a) >= tg_arena_used(a));
    char *z = tg_arena_calloc(a, 50);
    for (int i = 0; i < 50; i++) assert_int_equal(z[i], 0);
    tg_arena_free(a);
}

/* A mark and a rewind give back what was taken since the mark; the peak remembers the
 * most ever in use, and the next reset keeps one block of that size. */
static void test_arena_mark_rewind_peak(void **state) {
    (void)state;
    tg_arena *a = tg_arena_new(256);
    tg_arena_alloc(a, 100);
    const size_t used = tg_arena_used(a);
    const tg_arena_mark mark = tg_arena_get_mark(a);
    for (int i = 0; i < 20; i++) tg_arena_alloc(a, 1000); /* chains new blocks */
    const size_t high = tg_arena_used(a);
    assert_true(high >= used + 20 * 1000);
    tg_arena_rewind(a, mark);
    assert_int_equal(tg_arena_used(a), used);
    assert_true(tg_arena_peak(a) >= high);
    unsigned char *p = tg_arena_alloc(a, 64); /* the space after the mark is handed out again */
    memset(p, 1, 64);
    tg_arena_reset(a);
    assert_true(tg_arena_capacity(a) >= tg_arena_peak(a));
    const uint64_t count = tg_arena_malloc_count(a);
    for (int i = 0; i < 20; i++) tg_arena_alloc(a, 1000); /* fits: no malloc */
    assert_int_equal(tg_arena_malloc_count(a), count);
    tg_arena_free(a);
}

static void test_error_handler_replaceable(void **state) {
    (void)state;
    TG_EXPECT_FAIL(tg_fail("my_check: custom %d", 42), "my_check: custom 42");
    assert_int_equal(tg_status_set(TG_ERR_FORMAT, "bad %s", "file"), TG_ERR_FORMAT);
    assert_string_equal(tg_error_message(), "bad file");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_creation),
        cmocka_unit_test(test_arange),
        cmocka_unit_test(test_shape_errors),
        cmocka_unit_test(test_describe_and_print),
        cmocka_unit_test(test_index_tensor),
        cmocka_unit_test(test_mt19937),
        cmocka_unit_test(test_uniform_matches_torch),
        cmocka_unit_test(test_rng_fixture),
        cmocka_unit_test(test_arena_recycles),
        cmocka_unit_test(test_arena_mark_rewind_peak),
        cmocka_unit_test(test_error_handler_replaceable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
