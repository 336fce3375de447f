/* examples/viz_common.h — what the three picture examples (graph, gates, vanishing) share:
 * a small flag parser with --help, the output directory, and rendering DOT with Graphviz.
 * (The training examples use common.h, whose flags include checkpoints; these programs run
 * short experiments from scratch and take only the flags they use.) */
#ifndef TAPEGRAD_EXAMPLES_VIZ_COMMON_H
#define TAPEGRAD_EXAMPLES_VIZ_COMMON_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <tapegrad.h>
#include <tapegrad/viz_gates.h>
#include <tapegrad/kernels.h>

typedef enum viz_flag_kind { VIZ_INT, VIZ_REAL, VIZ_TEXT } viz_flag_kind;

typedef struct viz_flag {
    const char *name; /* --name VALUE or --name=VALUE */
    viz_flag_kind kind;
    void *value;     /* int64_t *, double * or const char **, holding the default */
    double min, max; /* range of a number */
    const char *help;
} viz_flag;

static inline _Noreturn void viz_usage_error(const char *program, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline _Noreturn void viz_usage_error(const char *program, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", program);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(try %s --help)\n", program);
    va_end(ap);
    exit(2);
}

/* Parses argv against `flags`; --help prints `about` and the flags with their defaults and
 * exits 0; anything wrong prints a message and exits 2. */
static inline void viz_flags_parse(int argc, char **argv, const char *about, const viz_flag *flags,
                                   int n) {
    const char *slash = argc > 0 ? strrchr(argv[0], '/') : NULL;
    const char *program = slash ? slash + 1 : argc > 0 ? argv[0] : "example";
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            printf("%s\n\nusage: %s [flags]\n\n", about, program);
            for (int k = 0; k < n; k++) {
                char left[48], def[64];
                snprintf(left, sizeof left, "--%s %s", flags[k].name,
                         flags[k].kind == VIZ_INT    ? "N"
                         : flags[k].kind == VIZ_REAL ? "X"
                                                     : "TEXT");
                if (flags[k].kind == VIZ_INT)
                    snprintf(def, sizeof def, "%lld", (long long)*(const int64_t *)flags[k].value);
                else if (flags[k].kind == VIZ_REAL)
                    snprintf(def, sizeof def, "%g", *(const double *)flags[k].value);
                else
                    snprintf(def, sizeof def, "%s", *(const char *const *)flags[k].value);
                printf("  %-18s %s (default %s)\n", left, flags[k].help, def);
            }
            exit(0);
        }
        if (strncmp(arg, "--", 2) != 0) viz_usage_error(program, "unexpected argument '%s'", arg);
        const char *name = arg + 2, *eq = strchr(name, '=');
        const size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const viz_flag *f = NULL;
        for (int k = 0; k < n && !f; k++)
            if (strlen(flags[k].name) == len && !strncmp(flags[k].name, name, len)) f = &flags[k];
        if (!f) viz_usage_error(program, "unknown flag '%s'", arg);
        const char *value = eq ? eq + 1 : i + 1 < argc ? argv[++i] : NULL;
        if (!value || !*value) viz_usage_error(program, "--%s needs a value", f->name);
        if (f->kind == VIZ_TEXT) {
            *(const char **)f->value = value;
            continue;
        }
        char *end;
        errno = 0;
        if (f->kind == VIZ_REAL) {
            const double v = strtod(value, &end);
            if (errno || *end || !(v >= f->min && v <= f->max))
                viz_usage_error(program, "--%s needs a number within %g .. %g, not '%s'", f->name,
                                f->min, f->max, value);
            *(double *)f->value = v;
            continue;
        }
        const long long v = strtoll(value, &end, 10);
        if (errno || *end)
            viz_usage_error(program, "--%s needs a whole number, not '%s'", f->name, value);
        if ((double)v < f->min || (double)v > f->max)
            viz_usage_error(program, "--%s must be within %.0f .. %.0f", f->name, f->min, f->max);
        *(int64_t *)f->value = v;
    }
}

/* Creates the directory if it is not there (one level); exits with a message on failure. */
static inline void viz_make_dir(const char *dir) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "cannot create the directory '%s': %s\n", dir, strerror(errno));
        exit(1);
    }
}

/* dir/name into buf */
static inline const char *viz_path(char *buf, size_t len, const char *dir, const char *name) {
    snprintf(buf, len, "%s/%s", dir, name);
    return buf;
}

/* Exits with the library's message when a picture could not be written. */
static inline void viz_check(tg_status st) {
    if (st != TG_OK) {
        fprintf(stderr, "%s\n", tg_error_message());
        exit(1);
    }
}

/* Renders a DOT file with Graphviz's `dot` into `format` (svg, png) next to it, if `dot` is
 * on PATH; returns whether it did. Paths with a quote are not passed to the shell. */
static inline bool viz_render_dot(const char *dot_path, const char *format) {
    if (strchr(dot_path, '\'')) return false;
    if (system("command -v dot >/dev/null 2>&1") != 0) return false;
    char out[1024], cmd[2304];
    const char *ext = strrchr(dot_path, '.'), *slash = strrchr(dot_path, '/');
    const size_t stem =
        ext && (!slash || ext > slash) ? (size_t)(ext - dot_path) : strlen(dot_path);
    snprintf(out, sizeof out, "%.*s.%s", (int)stem, dot_path, format);
    snprintf(cmd, sizeof cmd, "dot -T%s '%s' -o '%s'", format, dot_path, out);
    if (system(cmd) != 0) return false;
    printf("  wrote %s\n", out);
    return true;
}

#endif
