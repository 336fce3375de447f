/* tests/harness.h — what every cmocka suite shares: catching tg_fail through the
 * replaceable error handler, comparing arrays, and loading PyTorch fixtures. */
#ifndef TAPEGRAD_TEST_HARNESS_H
#define TAPEGRAD_TEST_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include <tapegrad.h>

/* ---- expecting a failure through the error handler ----
 * TG_EXPECT_FAIL(tg_add(tape, a, b), "tg_add", "(2, 3)") runs the statement, requires
 * that it calls tg_fail, and that the message contains every given fragment. */
extern jmp_buf tg_test_jump;
extern char tg_test_message[1024];
void tg_test_catch_begin(void);
void tg_test_catch_end(void);
void tg_test_expect_message(const char *file, int line, const char *const *fragments);
#define TG_EXPECT_FAIL(stmt, ...)                                                                  \
    do {                                                                                           \
        tg_test_catch_begin();                                                                     \
        if (setjmp(tg_test_jump) == 0) {                                                           \
            stmt;                                                                                  \
            tg_test_catch_end();                                                                   \
            fail_msg("%s:%d: expected tg_fail from: %s", __FILE__, __LINE__, #stmt);               \
        } else {                                                                                   \
            tg_test_catch_end();                                                                   \
            tg_test_expect_message(__FILE__, __LINE__, (const char *const[]){__VA_ARGS__, NULL});  \
        }                                                                                          \
    } while (0)

/* ---- comparing numbers ----
 * Every |got - want| <= atol + rtol * |want| (NaN equals NaN); on failure it prints the
 * worst index and fails the test. `what` names the comparison. */
void tg_test_assert_close(const char *what, const tg_real *got, const tg_real *want, int64_t n,
                          double atol, double rtol);
void tg_test_assert_close_f64(const char *what, const tg_real *got, const double *want, int64_t n,
                              double atol, double rtol);
/* Tolerances that fit the build: tight in float64, float32-level in float32. */
#ifdef TG_DOUBLE
#define TG_TEST_ATOL 1e-12
#define TG_TEST_RTOL 1e-10
#else
#define TG_TEST_ATOL 1e-6
#define TG_TEST_RTOL 1e-5
#endif

/* A tensor of the given shape filled from a seeded generator (uniform in [lo, hi)),
 * long-lived; deterministic for a seed. */
tg_tensor *tg_test_rand(uint64_t seed, tg_real lo, tg_real hi, int ndim, const int64_t *shape);

/* Skips the current test unless this is the float64 build (gradient checks). */
#ifdef TG_DOUBLE
#define TG_TEST_REQUIRE_F64() ((void)0)
#else
#define TG_TEST_REQUIRE_F64() skip()
#endif

/* ---- gradient checks ----
 * Runs tg_gradcheck with PyTorch's defaults; fails the test with the report's message
 * (prefixed by `what` unless NULL) and requires that some Jacobian entry was compared.
 * Every call counts in tg_test_gradchecks. The _params form checks the inputs and then
 * every tensor of `params` (NULL: none). */
extern int tg_test_gradchecks;
void tg_test_gradcheck(const char *what, tg_gradcheck_fn fn, void *ctx, tg_tensor *const *in,
                       int n);
void tg_test_gradcheck_params(const char *what, tg_gradcheck_fn fn, void *ctx, tg_tensor *const *in,
                              int n, const tg_params *params);

/* ---- PyTorch fixtures (tests/fixtures/<case>.safetensors, made by tests/make_fixtures.py) ----
 * Convention inside a case file: inputs "in.<name>", output(s) "out" / "out.<name>",
 * the upstream gradient used for backward "gout" / "gout.<name>", gradients
 * "grad.<name>" for inputs and parameters, parameters "param.<pytorch name>",
 * and op arguments as strings in __metadata__. */
typedef struct tg_fixture tg_fixture;
tg_fixture *tg_fixture_load(const char *case_name); /* fails the test if absent or malformed */
void tg_fixture_free(tg_fixture *fx);
/* A long-lived tensor converted to the build's precision; fails the test if absent. */
tg_tensor *tg_fixture_tensor(const tg_fixture *fx, const char *name);
tg_index *tg_fixture_index(const tg_fixture *fx, const char *name);
bool tg_fixture_has(const tg_fixture *fx, const char *name);
const char *tg_fixture_meta(const tg_fixture *fx, const char *key); /* NULL if absent */
/* Compares t against the fixture's tensor `name` (same shape required). */
void tg_fixture_assert_close(const tg_fixture *fx, const char *name, const tg_real *got,
                             const int64_t *shape, int ndim, double atol, double rtol);
/* Same, for a tensor's values (and its shape). */
void tg_fixture_assert_tensor(const tg_fixture *fx, const char *name, const tg_tensor *t,
                              double atol, double rtol);
/* Copies every "param.<name>" of the fixture into the list's tensor <name>; fails the test
 * if the names, their order (meta "keys") or the shapes differ from the list's. */
void tg_fixture_load_params(const tg_fixture *fx, tg_params *params);
/* Compares every parameter's gradient with "grad.param.<name>" (a missing grad = zeros). */
void tg_fixture_assert_param_grads(const tg_fixture *fx, const tg_params *params, double atol,
                                   double rtol);
/* True if tests/fixtures/<name>.safetensors exists; otherwise says
 * "parity: fixture <name> not present, skipped" and returns false. */
bool tg_fixture_present(const char *name);

/* ---- op parity with a running tally of the worst error (the op suites' summaries) ----
 * tg_parity_tally_worst keeps the largest |got - want| / (atol + rtol |want|) and |got - want|
 * over the fixture's tensor `name` (NaN wants are passed over); _compare first asserts
 * got (shape, ndim) close to it within the tally's tolerances. */
typedef struct tg_parity_tally {
    double atol, rtol;
    int cases;
    double worst, worst_abs;
} tg_parity_tally;
void tg_parity_tally_worst(tg_parity_tally *t, const tg_fixture *fx, const char *name,
                           const tg_real *got);
void tg_parity_tally_compare(tg_parity_tally *t, const tg_fixture *fx, const char *name,
                             const int64_t *shape, int ndim, const tg_real *got);
/* "parity: N cases, worst error R of the tolerance (A absolute)" */
void tg_parity_tally_print(const tg_parity_tally *t);
/* Op-level tolerances against float32 PyTorch: float32-tight in float32, looser in float64
 * (the fixtures themselves are float32). */
#ifdef TG_DOUBLE
#define TG_OP_PARITY_ATOL 1e-5
#define TG_OP_PARITY_RTOL 1e-4
#else
#define TG_OP_PARITY_ATOL 1e-6
#define TG_OP_PARITY_RTOL 1e-5
#endif
/* Tolerances for comparing with float32 PyTorch fixtures in either build. */
#define TG_PARITY_ATOL 1e-5
#define TG_PARITY_RTOL 1e-5

#endif
