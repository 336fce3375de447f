/* Shared test helpers: see harness.h. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

jmp_buf tg_test_jump;
char tg_test_message[1024];

static void catching_handler(const char *message, void *user) {
    (void)user;
    snprintf(tg_test_message, sizeof tg_test_message, "%s", message);
    longjmp(tg_test_jump, 1);
}

void tg_test_catch_begin(void) {
    tg_test_message[0] = '\0';
    tg_error_set_handler(catching_handler, NULL);
}

void tg_test_catch_end(void) { tg_error_set_handler(NULL, NULL); }

/* Every message starts with the name of the function called and ": " (the library's own are
 * "tg_<name>: ", which tests/check_messages.py checks in the sources; an op a program writes
 * names itself as it likes). This checks every message a test provokes. */
static bool message_prefixed(const char *m) {
    const char *p = m;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
           *p == '_')
        p++;
    return p > m && !(*m >= '0' && *m <= '9') && p[0] == ':' && p[1] == ' ';
}

void tg_test_expect_message(const char *file, int line, const char *const *fragments) {
    if (!message_prefixed(tg_test_message))
        fail_msg("%s:%d: error message \"%s\" does not start with \"<function>: \"", file, line,
                 tg_test_message);
    for (const char *const *f = fragments; *f; f++)
        if (!strstr(tg_test_message, *f))
            fail_msg("%s:%d: error message \"%s\" lacks \"%s\"", file, line, tg_test_message, *f);
}

static void assert_close_impl(const char *what, const tg_real *got, const tg_real *want_r,
                              const double *want_d, int64_t n, double atol, double rtol) {
    int64_t worst = -1;
    double worst_excess = 0;
    for (int64_t i = 0; i < n; i++) {
        const double g = (double)got[i], w = want_d ? want_d[i] : (double)want_r[i];
        if (isnan(g) && isnan(w)) continue;
        if (g == w) continue; /* also equal infinities */
        const double excess = fabs(g - w) - (atol + rtol * fabs(w));
        if (isnan(excess) || excess > worst_excess || (worst < 0 && excess > 0)) {
            worst = i;
            worst_excess = isnan(excess) ? INFINITY : excess;
        }
    }
    if (worst >= 0) {
        const double w = want_d ? want_d[worst] : (double)want_r[worst];
        fail_msg("%s: element %lld of %lld: got %.10g, want %.10g (atol %g, rtol %g)", what,
                 (long long)worst, (long long)n, (double)got[worst], w, atol, rtol);
    }
}

void tg_test_assert_close(const char *what, const tg_real *got, const tg_real *want, int64_t n,
                          double atol, double rtol) {
    assert_close_impl(what, got, want, NULL, n, atol, rtol);
}

void tg_test_assert_close_f64(const char *what, const tg_real *got, const double *want, int64_t n,
                              double atol, double rtol) {
    assert_close_impl(what, got, NULL, want, n, atol, rtol);
}

tg_tensor *tg_test_rand(uint64_t seed, tg_real lo, tg_real hi, int ndim, const int64_t *shape) {
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    tg_tensor *t = tg_tensor_new(ndim, shape);
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = (tg_real)((double)lo + ((double)hi - (double)lo) * tg_rng_uniform01(&rng));
    return t;
}

/* ---- gradient checks ---- */
int tg_test_gradchecks;

/* One line per suite binary with the number of gradchecks run through the harness,
 * so that `grep -h "^gradchecks run" build/meson-logs/testlog.txt` adds them up. */
__attribute__((destructor)) static void tg_test_report_gradchecks(void) {
    if (tg_test_gradchecks > 0) printf("gradchecks run: %d\n", tg_test_gradchecks);
}

void tg_test_gradcheck(const char *what, tg_gradcheck_fn fn, void *ctx, tg_tensor *const *in,
                       int n) {
    tg_gradcheck_report rep;
    const bool ok = tg_gradcheck(fn, ctx, in, n, NULL, &rep);
    tg_test_gradchecks++;
    if (!ok) {
        if (what) fail_msg("%s: %s", what, rep.message);
        fail_msg("%s", rep.message);
    }
    assert_true(rep.checked > 0);
}

void tg_test_gradcheck_params(const char *what, tg_gradcheck_fn fn, void *ctx, tg_tensor *const *in,
                              int n, const tg_params *params) {
    enum { MAX_INPUTS = 128 };
    tg_tensor *all[MAX_INPUTS];
    int count = 0;
    for (int i = 0; i < n; i++) {
        assert_true(count < MAX_INPUTS);
        all[count++] = in[i];
    }
    for (size_t i = 0; params && i < params->count; i++) {
        assert_true(count < MAX_INPUTS);
        all[count++] = params->tensors[i];
    }
    tg_test_gradcheck(what, fn, ctx, all, count);
}

/* ---- fixtures ---- */
struct tg_fixture {
    char name[128];
    tg_safetensors *st;
};

tg_fixture *tg_fixture_load(const char *case_name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.safetensors", TG_FIXTURES_DIR, case_name);
    tg_safetensors *st = NULL;
    if (tg_safetensors_read(path, &st) != TG_OK)
        fail_msg("fixture %s: %s", case_name, tg_error_message());
    tg_fixture *fx = calloc(1, sizeof *fx);
    snprintf(fx->name, sizeof fx->name, "%s", case_name);
    fx->st = st;
    return fx;
}

void tg_fixture_free(tg_fixture *fx) {
    if (!fx) return;
    tg_safetensors_free(fx->st);
    free(fx);
}

static const tg_st_entry *fixture_entry(const tg_fixture *fx, const char *name) {
    const tg_st_entry *e = tg_safetensors_find(fx->st, name);
    if (!e) fail_msg("fixture %s has no tensor '%s'", fx->name, name);
    return e;
}

bool tg_fixture_has(const tg_fixture *fx, const char *name) {
    return tg_safetensors_find(fx->st, name) != NULL;
}

tg_tensor *tg_fixture_tensor(const tg_fixture *fx, const char *name) {
    tg_tensor *t = NULL;
    if (tg_st_entry_to_tensor(fixture_entry(fx, name), &t) != TG_OK)
        fail_msg("fixture %s, tensor '%s': %s", fx->name, name, tg_error_message());
    tg_tensor_set_name(t, name);
    return t;
}

tg_index *tg_fixture_index(const tg_fixture *fx, const char *name) {
    tg_index *ix = NULL;
    if (tg_st_entry_to_index(fixture_entry(fx, name), &ix) != TG_OK)
        fail_msg("fixture %s, index '%s': %s", fx->name, name, tg_error_message());
    return ix;
}

const char *tg_fixture_meta(const tg_fixture *fx, const char *key) {
    return tg_safetensors_meta(fx->st, key);
}

void tg_fixture_assert_close(const tg_fixture *fx, const char *name, const tg_real *got,
                             const int64_t *shape, int ndim, double atol, double rtol) {
    tg_tensor *want = tg_fixture_tensor(fx, name);
    char what[256], s1[96], s2[96];
    bool same = want->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = want->shape[i] == shape[i];
    if (!same) {
        tg_shape_format(ndim, shape, s1, sizeof s1);
        tg_shape_format(want->ndim, want->shape, s2, sizeof s2);
        tg_tensor_free(want);
        fail_msg("fixture %s, '%s': shape %s, want %s", fx->name, name, s1, s2);
    }
    snprintf(what, sizeof what, "fixture %s, '%s'", fx->name, name);
    tg_test_assert_close(what, got, want->data, want->numel, atol, rtol);
    tg_tensor_free(want);
}

void tg_fixture_assert_tensor(const tg_fixture *fx, const char *name, const tg_tensor *t,
                              double atol, double rtol) {
    tg_fixture_assert_close(fx, name, t->data, t->shape, t->ndim, atol, rtol);
}

void tg_fixture_load_params(const tg_fixture *fx, tg_params *params) {
    const char *keys = tg_fixture_meta(fx, "keys");
    if (keys) { /* the list's names, in order, must equal PyTorch's state_dict keys */
        char joined[4096] = "";
        size_t used = 0;
        for (size_t i = 0; i < params->count && used < sizeof joined; i++)
            used += (size_t)snprintf(joined + used, sizeof joined - used, i ? ",%s" : "%s",
                                     params->names[i]);
        if (strcmp(joined, keys) != 0)
            fail_msg("fixture %s: parameter names\n  ours:    %s\n  PyTorch: %s", fx->name, joined,
                     keys);
    }
    for (size_t i = 0; i < params->count; i++) {
        char name[256];
        snprintf(name, sizeof name, "param.%s", params->names[i]);
        tg_tensor *src = tg_fixture_tensor(fx, name);
        tg_tensor *dst = params->tensors[i];
        if (!tg_shape_equal(src, dst)) {
            char a[160], b[160];
            fail_msg("fixture %s: %s is %s, the parameter is %s", fx->name, name,
                     tg_tensor_describe(src, a, sizeof a), tg_tensor_describe(dst, b, sizeof b));
        }
        tg_tensor_copy_from(dst, src->data);
        tg_tensor_free(src);
    }
}

void tg_fixture_assert_param_grads(const tg_fixture *fx, const tg_params *params, double atol,
                                   double rtol) {
    for (size_t i = 0; i < params->count; i++) {
        char name[256];
        snprintf(name, sizeof name, "grad.param.%s", params->names[i]);
        const tg_tensor *p = params->tensors[i];
        tg_tensor *zeros = NULL;
        const tg_real *g = p->grad;
        if (!g) g = (zeros = tg_tensor_zeros(p->ndim, p->shape))->data;
        tg_fixture_assert_close(fx, name, g, p->shape, p->ndim, atol, rtol);
        tg_tensor_free(zeros);
    }
}

bool tg_fixture_present(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.safetensors", TG_FIXTURES_DIR, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        print_message("parity: fixture %s not present, skipped\n", name);
        return false;
    }
    fclose(f);
    return true;
}

void tg_parity_tally_worst(tg_parity_tally *t, const tg_fixture *fx, const char *name,
                           const tg_real *got) {
    tg_tensor *want = tg_fixture_tensor(fx, name);
    for (int64_t i = 0; i < want->numel; i++) {
        const double w = (double)want->data[i], d = fabs((double)got[i] - w);
        if (isnan(w)) continue;
        const double ratio = d / (t->atol + t->rtol * fabs(w));
        if (ratio > t->worst) t->worst = ratio;
        if (d > t->worst_abs) t->worst_abs = d;
    }
    tg_tensor_free(want);
}

void tg_parity_tally_compare(tg_parity_tally *t, const tg_fixture *fx, const char *name,
                             const int64_t *shape, int ndim, const tg_real *got) {
    tg_fixture_assert_close(fx, name, got, shape, ndim, t->atol, t->rtol);
    tg_parity_tally_worst(t, fx, name, got);
}

void tg_parity_tally_print(const tg_parity_tally *t) {
    print_message("parity: %d cases, worst error %.3g of the tolerance (%.3g absolute)\n", t->cases,
                  t->worst, t->worst_abs);
}
