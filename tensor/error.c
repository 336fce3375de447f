/* The single error handler, and the last-status message. */
#include "tapegrad/base.h"

#include "backtrace_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The message, where the user's program called the failing function (unless TG_BACKTRACE=0),
 * then exit status 1. Why _exit and not exit or abort is in tapegrad/base.h. */
static void default_handler(const char *message, void *user) {
    (void)user;
    fprintf(stderr, "tapegrad: %s\n", message);
    const char *env = getenv("TG_BACKTRACE");
    if (!env || strcmp(env, "0") != 0) tg_backtrace_print(stderr);
    fflush(NULL); /* the program's own buffered output (progress lines) up to the failure */
    _exit(1);
}

static tg_error_handler handler = default_handler;
static void *handler_user = NULL;
static _Thread_local char last_message[512];

const char *tg_error_message(void) { return last_message; }

tg_status tg_status_set(tg_status code, const char *fmt, ...) {
    TG_CHECK_ARG(fmt);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    return code;
}

tg_error_handler tg_error_set_handler(tg_error_handler h, void *user) {
    tg_error_handler previous = handler;
    handler = h ? h : default_handler;
    handler_user = h ? user : NULL;
    return previous;
}

_Noreturn void tg_fail(const char *fmt, ...) {
    TG_CHECK_ARG(fmt);
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    handler(message, handler_user);
    abort(); /* a handler that returns cannot resume the computation */
}

_Noreturn void tg_fail_null_argument(const char *function, const char *argument) {
    tg_fail("%s: argument '%s' is NULL", function, argument);
}

tg_status tg_status_null_argument(const char *function, const char *argument) {
    return tg_status_set(TG_ERR_ARGUMENT, "%s: argument '%s' is NULL", function, argument);
}

void *tg_xmalloc(size_t size) {
    void *p = malloc(size ? size : 1);
    if (!p) tg_fail("out of memory allocating %zu bytes", size);
    return p;
}

void *tg_xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) tg_fail("out of memory allocating %zu x %zu bytes", count, size);
    return p;
}
