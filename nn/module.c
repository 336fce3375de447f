/* The module tree: registration, state_dict names, repr, train/eval and freeing. */
#include "tapegrad/module.h"

#include <stdlib.h>
#include <string.h>

void tg_module_init(tg_module *m, const tg_module_type *type) {
    TG_CHECK_ARG(m);
    TG_CHECK_ARG(type);
    memset(m, 0, sizeof *m);
    m->type = type;
    m->training = true;
}

static char *string_copy(const char *s) {
    const size_t n = strlen(s) + 1;
    return memcpy(tg_xmalloc(n), s, n);
}

/* Grows a (names, items) pair by one slot; items are pointers. */
static void grow(const char *fn, char ***names, void ***items, size_t count) {
    *names = realloc(*names, (count + 1) * sizeof **names);
    void **more = *names ? realloc(*items, (count + 1) * sizeof **items) : NULL;
    if (!more) tg_fail("%s: out of memory", fn);
    *items = more;
}

static void check_name(const char *fn, const tg_module *m, const char *what, const char *name) {
    if (!name || !name[0] || strchr(name, '.'))
        tg_fail("%s: module %s: a %s needs a non-empty name without '.'", fn, m->type->name, what);
    for (size_t i = 0; i < m->num_children; i++)
        if (strcmp(m->child_names[i], name) == 0)
            tg_fail("%s: module %s: '%s' is already a child", fn, m->type->name, name);
    for (size_t i = 0; i < m->num_params; i++)
        if (strcmp(m->param_names[i], name) == 0)
            tg_fail("%s: module %s: '%s' is already a parameter", fn, m->type->name, name);
}

void tg_module_add_child(tg_module *m, const char *name, tg_module *child) {
    TG_CHECK_ARG(m);
    TG_CHECK_ARG(name);
    TG_CHECK_ARG(child);
    if (!child) return;
    check_name(__func__, m, "child", name);
    tg_params_free(m->state), m->state = NULL; /* the list changes */
    grow(__func__, &m->child_names, (void ***)&m->children, m->num_children);
    m->child_names[m->num_children] = string_copy(name);
    m->children[m->num_children++] = child;
}

void tg_module_add_param(tg_module *m, const char *name, tg_tensor *t) {
    TG_CHECK_ARG(m);
    TG_CHECK_ARG(name);
    if (!t) return; /* documented: a missing optional parameter (bias=False) */
    TG_CHECK_TENSOR(t);
    check_name(__func__, m, "parameter", name);
    tg_params_free(m->state), m->state = NULL;
    if (!t->owned)
        tg_fail("%s: module %s: parameter '%s' must be a long-lived tensor", __func__,
                m->type->name, name);
    grow(__func__, &m->param_names, (void ***)&m->params, m->num_params);
    m->param_names[m->num_params] = string_copy(name);
    m->params[m->num_params++] = t;
    /* a fresh parameter gets its attribute name, for tape listings and messages; a named
     * tensor keeps the name it has */
    if (!t->name[0]) tg_tensor_set_name(t, name);
}

/* Own parameters under prefix, then each child's under prefix + child name + ".". */
static void collect(const tg_module *m, const char *prefix, tg_params *out) {
    const size_t plen = strlen(prefix);
    for (size_t i = 0; i < m->num_params; i++) {
        char *name = tg_xmalloc(plen + strlen(m->param_names[i]) + 1);
        strcpy(name, prefix), strcpy(name + plen, m->param_names[i]);
        tg_params_add_keep_name(out, name, m->params[i]);
        free(name);
    }
    for (size_t i = 0; i < m->num_children; i++) {
        const size_t n = plen + strlen(m->child_names[i]) + 2;
        char *sub = tg_xmalloc(n);
        snprintf(sub, n, "%s%s.", prefix, m->child_names[i]);
        collect(m->children[i], sub, out);
        free(sub);
    }
}

tg_params *tg_module_params(tg_module *m) {
    TG_CHECK_ARG(m);
    if (!m->state) {
        m->state = tg_params_new();
        collect(m, "", m->state);
    }
    return m->state;
}

int64_t tg_module_numel(const tg_module *m) {
    TG_CHECK_ARG(m);
    int64_t n = 0;
    for (size_t i = 0; i < m->num_params; i++) n += m->params[i]->numel;
    for (size_t i = 0; i < m->num_children; i++) n += tg_module_numel(m->children[i]);
    return n;
}

/* A growing string. */
typedef struct text {
    char *s;
    size_t len, cap;
} text;

static void text_put(text *t, const char *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        t->cap = 2 * (t->len + n + 1);
        t->s = realloc(t->s, t->cap);
        if (!t->s) tg_fail("tg_module_repr: out of memory");
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

/* Appends s with every newline followed by two spaces (PyTorch's _addindent). */
static void text_put_indented(text *t, const char *s) {
    for (const char *nl; (nl = strchr(s, '\n')); s = nl + 1) {
        text_put(t, s, (size_t)(nl - s + 1));
        text_put(t, "  ", 2);
    }
    text_put(t, s, strlen(s));
}

/* PyTorch's Module.__repr__: the extra repr on the same line when there are no children,
 * else one line per extra-repr line and child, indented by two. */
char *tg_module_repr(const tg_module *m) {
    TG_CHECK_ARG(m);
    char extra[512] = "";
    if (m->type->extra_repr) m->type->extra_repr(m, extra, sizeof extra);
    text t = {0};
    text_put(&t, m->type->name, strlen(m->type->name));
    text_put(&t, "(", 1);
    if (m->num_children == 0) {
        text_put(&t, extra, strlen(extra));
    } else {
        if (extra[0]) {
            text_put(&t, "\n  ", 3);
            text_put_indented(&t, extra);
        }
        for (size_t i = 0; i < m->num_children; i++) {
            text_put(&t, "\n  (", 4);
            text_put(&t, m->child_names[i], strlen(m->child_names[i]));
            text_put(&t, "): ", 3);
            char *child = tg_module_repr(m->children[i]);
            text_put_indented(&t, child);
            free(child);
        }
        text_put(&t, "\n", 1);
    }
    text_put(&t, ")", 1);
    return t.s;
}

void tg_module_print(const tg_module *m, FILE *f) {
    TG_CHECK_ARG(m);
    TG_CHECK_ARG(f);
    char *s = tg_module_repr(m);
    fprintf(f, "%s\n", s);
    free(s);
}

void tg_module_train(tg_module *m, bool on) {
    TG_CHECK_ARG(m);
    m->training = on;
    for (size_t i = 0; i < m->num_children; i++) tg_module_train(m->children[i], on);
}

void tg_module_eval(tg_module *m) { tg_module_train(m, false); }

void tg_module_free(tg_module *m) {
    if (!m) return;
    for (size_t i = 0; i < m->num_children; i++) {
        tg_module_free(m->children[i]);
        free(m->child_names[i]);
    }
    for (size_t i = 0; i < m->num_params; i++) {
        tg_tensor_free(m->params[i]);
        free(m->param_names[i]);
    }
    if (m->type->release) m->type->release(m);
    tg_params_free(m->state);
    free(m->children), free(m->child_names), free(m->params), free(m->param_names);
    free(m); /* the module is the first member: its address is the struct's */
}

tg_module *tg_module_new(const tg_module_type *type) {
    tg_module *m = tg_xmalloc(sizeof *m);
    tg_module_init(m, type);
    return m;
}

static const tg_module_type module_list_type = {"ModuleList", NULL, NULL};

tg_module *tg_module_list_new(void) { return tg_module_new(&module_list_type); }
