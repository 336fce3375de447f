/* Named parameter lists (state dicts). */
#include "tapegrad/params.h"

#include "tapegrad/tape.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

tg_params *tg_params_new(void) { return tg_xcalloc(1, sizeof(tg_params)); }

void tg_params_free(tg_params *p) {
    if (!p) return;
    for (size_t i = 0; i < p->count; i++) free(p->names[i]);
    free(p->names);
    free(p->is_count);
    free(p->tensors);
    free(p);
}

static char *string_copy(const char *s) {
    const size_t n = strlen(s) + 1;
    return memcpy(tg_xmalloc(n), s, n);
}

/* `fn`: the public function called, for the messages. */
static void params_add(const char *fn, tg_params *p, const char *name, tg_tensor *t, bool is_count,
                       bool rename) {
    if (!p) tg_fail_null_argument(fn, "params");
    tg_tensor_check(fn, "t", t);
    if (!name || !name[0]) tg_fail("%s: a parameter needs a name", fn);
    if (!t->owned) tg_fail("%s: '%s' must be a long-lived tensor, not an op's output", fn, name);
    if (tg_params_find(p, name)) tg_fail("%s: duplicate parameter name '%s'", fn, name);
    if (p->count == p->capacity) {
        /* every array that did grow is kept, so that a failure leaves the list whole */
        const size_t capacity = p->capacity ? 2 * p->capacity : 16;
        tg_tensor **tensors = realloc(p->tensors, capacity * sizeof *tensors);
        if (tensors) p->tensors = tensors;
        char **names = tensors ? realloc(p->names, capacity * sizeof *names) : NULL;
        if (names) p->names = names;
        bool *counts = names ? realloc(p->is_count, capacity * sizeof *counts) : NULL;
        if (!counts) tg_fail("%s: out of memory", fn);
        p->is_count = counts;
        p->capacity = capacity;
    }
    p->tensors[p->count] = t;
    p->names[p->count] = string_copy(name);
    p->is_count[p->count] = is_count;
    p->count++;
    if (rename) tg_tensor_set_name(t, name);
}

void tg_params_add(tg_params *p, const char *name, tg_tensor *t) {
    params_add(__func__, p, name, t, false, true);
}

void tg_params_add_keep_name(tg_params *p, const char *name, tg_tensor *t) {
    params_add(__func__, p, name, t, false, false);
}

void tg_params_add_count(tg_params *p, const char *name, tg_tensor *t) {
    params_add(__func__, p, name, t, true, true);
}

void tg_params_extend(tg_params *p, const char *prefix, const tg_params *child) {
    if (!p) tg_fail_null_argument(__func__, "params");
    TG_CHECK_ARG(child);
    for (size_t i = 0; i < child->count; i++) {
        const bool is_count = child->is_count[i];
        if (!prefix || !prefix[0]) {
            params_add(__func__, p, child->names[i], child->tensors[i], is_count, true);
            continue;
        }
        const size_t n = strlen(prefix) + 1 + strlen(child->names[i]) + 1;
        char *name = tg_xmalloc(n);
        snprintf(name, n, "%s.%s", prefix, child->names[i]);
        params_add(__func__, p, name, child->tensors[i], is_count, true);
        free(name);
    }
}

tg_tensor *tg_params_find(const tg_params *p, const char *name) {
    if (!p) tg_fail_null_argument(__func__, "params");
    TG_CHECK_ARG(name);
    for (size_t i = 0; i < p->count; i++)
        if (strcmp(p->names[i], name) == 0) return p->tensors[i];
    return NULL;
}

void tg_params_zero_grad(const tg_params *p) {
    if (!p) tg_fail_null_argument(__func__, "params");
    for (size_t i = 0; i < p->count; i++) tg_tensor_zero_grad(p->tensors[i]);
}

int64_t tg_params_numel(const tg_params *p) {
    if (!p) tg_fail_null_argument(__func__, "params");
    int64_t n = 0;
    for (size_t i = 0; i < p->count; i++) n += p->tensors[i]->numel;
    return n;
}
