/* tapegrad/base.h — the scalar type, limits, status codes and the error handler.
 * Layer: tensor.
 *
 * The library is compiled twice from the same sources: float32 (libtapegrad) and
 * float64 (libtapegrad64, built with -DTG_DOUBLE, used for gradient checks).
 * A program includes <tapegrad.h> and links one of the two; pkg-config's
 * tapegrad64.pc adds -DTG_DOUBLE so that the header and the library agree. */
#ifndef TAPEGRAD_BASE_H
#define TAPEGRAD_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef TG_DOUBLE
typedef double tg_real;
#define TG_REAL_NAME "float64"
#else
typedef float tg_real;
#define TG_REAL_NAME "float32"
#endif

/* Tensors have at most this many dimensions. */
#define TG_MAX_DIMS 6
/* Longest tensor name kept, including the terminating NUL (longer names are cut). */
#define TG_NAME_MAX 96

/* Status codes of everything that reads from outside the program (files, arguments,
 * data). Such functions never stop the program: they return a code, and
 * tg_error_message() tells what went wrong in words. */
typedef enum tg_status {
    TG_OK = 0,
    TG_ERR_IO,       /* open/read/write/rename failed */
    TG_ERR_FORMAT,   /* malformed file contents */
    TG_ERR_SHAPE,    /* a tensor's shape differs from what is expected */
    TG_ERR_MISSING,  /* a tensor that is needed is absent */
    TG_ERR_ARGUMENT, /* a bad argument value */
    TG_ERR_NOMEM     /* an allocation failed */
} tg_status;

/* The message of the last failed call that returned a tg_status (this thread). */
const char *tg_error_message(void);
/* Records a message for tg_error_message() and returns `code`; for library code. */
tg_status tg_status_set(tg_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Misuse inside a computation (shape mismatch, index out of range, ...) goes through
 * one handler. Every message starts with the name of the public function the program
 * called ("tg_matmul: inner dimensions differ ..."). The default handler prints
 * "tapegrad: <message>" to stderr, then where the program made the failing call, one frame a
 * line, the library's own frames left out:
 *       called from train_step (train.c:42)
 *              from main (train.c:97)
 * (function names and, for code built with -g, file:line, through elfutils' libdw when the
 * library was built with it; otherwise exported names and module+offset for addr2line).
 * TG_BACKTRACE=0 in the environment leaves the frames out. It then ends the process with
 * exit status 1, by _exit after flushing every stdio stream:
 *  - not abort(): a misuse is the program's error, not a crash, and deserves an exit status
 *    a shell script can test rather than a SIGABRT and a core dump;
 *  - not exit(): the failure may happen deep inside an op (or on a worker thread), and
 *    atexit handlers that use the library (saving a checkpoint, say) would run on a state
 *    the failing call left half-done; exit() would also run LeakSanitizer, which reports
 *    every live tensor of the stopped program as a leak. Flushing keeps what the program
 *    printed before the failure, as exit() would.
 * A test or an embedding program can install its own handler; if it returns, the library
 * aborts anyway, so a replacement handler must not return (longjmp, or exit). */
typedef void (*tg_error_handler)(const char *message, void *user);
/* Installs `handler` (NULL restores the default); returns the previous one. */
tg_error_handler tg_error_set_handler(tg_error_handler handler, void *user);
/* Formats a message and calls the handler. Does not return. */
_Noreturn void tg_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- entry checks ----
 * Every public function checks its pointer arguments on entry, before it reads anything
 * through them, so that a NULL stops with a message that names the function and the
 * argument ("tg_add: argument 'a' is NULL") instead of a crash. A NULL that has a documented
 * meaning (an absent bias, h0 NULL = zeros, an optional mask) is not checked.
 *   TG_CHECK_ARG(p)         stops through tg_fail, naming the enclosing function (__func__);
 *   TG_CHECK_ARG_STATUS(p)  for functions that return a tg_status: returns TG_ERR_ARGUMENT
 *                           with the same message (tg_error_message) instead.
 * Every _free function accepts NULL.
 * Where the code's name differs from the header's, the functions are called directly:
 * if (!p) tg_fail_null_argument(__func__, "params").
 * Tensor arguments have checks of their own that also see stale tensors: TG_CHECK_TENSOR
 * (tapegrad/tensor.h) and TG_CHECK_INPUT (tapegrad/tape.h). */
_Noreturn void tg_fail_null_argument(const char *function, const char *argument);
tg_status tg_status_null_argument(const char *function, const char *argument);
#define TG_CHECK_ARG(p)                                                                            \
    do {                                                                                           \
        if (!(p)) tg_fail_null_argument(__func__, #p);                                             \
    } while (0)
#define TG_CHECK_ARG_STATUS(p)                                                                     \
    do {                                                                                           \
        if (!(p)) return tg_status_null_argument(__func__, #p);                                    \
    } while (0)

/* Allocation that never returns NULL: on failure it calls tg_fail. */
void *tg_xmalloc(size_t size);
void *tg_xcalloc(size_t count, size_t size);

#endif
