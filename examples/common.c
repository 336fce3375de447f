/* examples/common.c — flags, per-step seeds, the learning-rate schedule, the progress line,
 * the pictures' output and small things for the example programs (see common.h). */
#include "common.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------
 * flags
 * ---------------------------------------------------------------------------------------- */

void ex_usage_error(const char *program, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    fprintf(stderr, "%s: ", program);
    vfprintf(stderr, fmt, args);
    fprintf(stderr, "\n(try %s --help)\n", program);
    va_end(args);
    exit(2);
}

static void flag_default(const ex_flag *f, char *buf, size_t len) {
    switch (f->kind) {
    case EX_FLAG_INT:
        snprintf(buf, len, "%lld", (long long)*(const int64_t *)f->value);
        break;
    case EX_FLAG_REAL:
        snprintf(buf, len, "%g", *(const double *)f->value);
        break;
    case EX_FLAG_TEXT:
    case EX_FLAG_PATH: {
        const char *s = *(const char *const *)f->value;
        snprintf(buf, len, "%s", s ? s : "none");
        break;
    }
    case EX_FLAG_SWITCH:
        snprintf(buf, len, "%s", *(const bool *)f->value ? "on" : "off");
        break;
    }
}

static void print_flags(const ex_flag *flags, int n) {
    for (int i = 0; i < n; i++) {
        const ex_flag *f = &flags[i];
        char left[64], def[256];
        const char *arg = f->kind == EX_FLAG_INT    ? "N"
                          : f->kind == EX_FLAG_REAL ? "X"
                          : f->kind == EX_FLAG_PATH ? "PATH"
                                                    : "TEXT";
        snprintf(left, sizeof left, "--%s%s%s", f->name, f->kind == EX_FLAG_SWITCH ? "" : " ",
                 f->kind == EX_FLAG_SWITCH ? "" : arg);
        flag_default(f, def, sizeof def);
        if (f->kind == EX_FLAG_SWITCH)
            printf("  %-22s %s\n", left, f->help);
        else
            printf("  %-22s %s (default %s)\n", left, f->help, def);
    }
}

/* Sets flag f from text, or exits 2 saying why not. */
static void flag_set(const char *program, const ex_flag *f, const char *text) {
    char *end = NULL;
    char range[96];
    errno = 0;
    switch (f->kind) {
    case EX_FLAG_INT: {
        const long long v = strtoll(text, &end, 10);
        if (errno || end == text || *end)
            ex_usage_error(program, "--%s needs a whole number, not '%s'", f->name, text);
        if (v < f->min || v > f->max) {
            snprintf(range, sizeof range, "%lld .. %lld", (long long)f->min, (long long)f->max);
            ex_usage_error(program, "--%s must be within %s", f->name, range);
        }
        *(int64_t *)f->value = v;
        break;
    }
    case EX_FLAG_REAL: {
        const double v = strtod(text, &end);
        if (errno || end == text || *end || !isfinite(v))
            ex_usage_error(program, "--%s needs a number, not '%s'", f->name, text);
        if (v < f->min || v > f->max) {
            snprintf(range, sizeof range, "%g .. %g", f->min, f->max);
            ex_usage_error(program, "--%s must be within %s", f->name, range);
        }
        *(double *)f->value = v;
        break;
    }
    case EX_FLAG_TEXT:
    case EX_FLAG_PATH:
        if (!*text) ex_usage_error(program, "--%s needs a value", f->name);
        *(const char **)f->value = text;
        break;
    case EX_FLAG_SWITCH:
        *(bool *)f->value = true;
        break;
    }
}

void ex_flags_parse(int argc, char **argv, const char *about, ex_train_options *train,
                    const ex_flag *flags, int n) {
    const char *slash = argc > 0 ? strrchr(argv[0], '/') : NULL;
    const char *program = slash ? slash + 1 : argc > 0 ? argv[0] : "example";
    /* the training flags, for a program that trains; without `train` the table below points
     * into a scratch struct and is left out (n_common = 0) */
    ex_train_options none = {0};
    if (!train) train = &none;
    const ex_flag common[] = {
        {"steps", EX_FLAG_INT, &train->steps, 1, 1e9, "optimizer steps in total"},
        {"batch", EX_FLAG_INT, &train->batch, 1, 1e6, "examples per step"},
        {"lr", EX_FLAG_REAL, &train->lr, 1e-9, 10, "learning rate"},
        {"seed", EX_FLAG_INT, &train->seed, 0, 4294967295.0,
         "seed of the weights, the data and dropout"},
        {"threads", EX_FLAG_INT, &train->threads, 0, 1024, "threads (0: one per core)"},
        {"checkpoint", EX_FLAG_PATH, &train->checkpoint, 0, 0,
         "checkpoint file ('none': do not save)"},
        {"save-every", EX_FLAG_INT, &train->save_every, 1, 1e9,
         "save the checkpoint every N steps, and at the end"},
        {"resume", EX_FLAG_SWITCH, &train->resume, 0, 0,
         "continue from the checkpoint (same flags as the first run)"},
        {"log-every", EX_FLAG_INT, &train->log_every, 0, 1e9,
         "plain progress line every N steps when not on a terminal (0: ten per run)"},
        {"stop-after", EX_FLAG_INT, &train->stop_after, 0, 1e9,
         "save the checkpoint and exit after step N, as if interrupted (0: never)"},
    };
    const int n_common = train != &none ? (int)(sizeof common / sizeof common[0]) : 0;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            printf("%s\n\nusage: %s [flags]\n\n", about, program);
            if (n_common > 0) {
                printf("training:\n");
                print_flags(common, n_common);
                if (n > 0) printf("\n%s:\n", program);
            }
            print_flags(flags, n);
            if (n_common > 0)
                printf("\nOn a terminal the progress line is rewritten in place; when the output "
                       "is a\nfile or a pipe, a plain line is printed every --log-every steps "
                       "instead.\n");
            exit(0);
        }
        if (strncmp(arg, "--", 2) != 0 || !arg[2])
            ex_usage_error(program, "unexpected argument '%s'", arg);
        const char *name = arg + 2, *eq = strchr(name, '=');
        const size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const ex_flag *f = NULL;
        for (int k = 0; k < n_common + n && !f; k++) {
            const ex_flag *c = k < n_common ? &common[k] : &flags[k - n_common];
            if (strlen(c->name) == len && !strncmp(c->name, name, len)) f = c;
        }
        if (!f) ex_usage_error(program, "unknown flag '%s'", arg);
        if (f->kind == EX_FLAG_SWITCH) {
            if (eq) ex_usage_error(program, "--%s takes no value", f->name);
            flag_set(program, f, "");
            continue;
        }
        const char *value = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!value) ex_usage_error(program, "--%s needs a value", f->name);
        flag_set(program, f, value);
    }
    if (n_common == 0) return;
    if (train->checkpoint && !strcmp(train->checkpoint, "none")) train->checkpoint = NULL;
    if (train->resume && !train->checkpoint)
        ex_usage_error(program, "--resume needs a checkpoint file (--checkpoint PATH)");
    tg_set_num_threads((int)train->threads);
}

/* ------------------------------------------------------------------------------------------
 * seeds
 * ---------------------------------------------------------------------------------------- */

/* splitmix64's finaliser: every bit of the input moves every bit of the output. */
static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t ex_step_seed(int64_t seed, int64_t step) {
    return mix64(mix64((uint64_t)seed) ^ (uint64_t)step);
}

void ex_step_rng_seed(tg_rng *rng, int64_t seed, int64_t step) {
    const uint64_t s = ex_step_seed(seed, step);
    tg_rng_seed(rng, s);
    tg_manual_seed(s >> 32);
}

int64_t ex_rng_below(tg_rng *rng, int64_t n) {
    const uint64_t r = ((uint64_t)tg_rng_next_u32(rng) << 32) | tg_rng_next_u32(rng);
    return (int64_t)(r % (uint64_t)n);
}

tg_optim *ex_adam_new(const tg_params *params, double lr) {
    tg_adam_options adam = tg_adam_defaults();
    adam.lr = lr;
    return tg_adam_new(params, &adam);
}

double ex_lr_cosine(double lr, double lr_min, int64_t step, int64_t total, int64_t warmup) {
    if (step < warmup) return lr * (double)(step + 1) / (double)warmup;
    const double progress =
        total > warmup ? (double)(step - warmup) / (double)(total - warmup) : 1.0;
    return lr_min + (lr - lr_min) * 0.5 * (1.0 + cos(3.14159265358979323846 * progress));
}

/* ------------------------------------------------------------------------------------------
 * time and progress
 * ---------------------------------------------------------------------------------------- */

double ex_clock_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void format_duration(double s, char *buf, size_t len) {
    if (!(s >= 0) || s > 1e7)
        snprintf(buf, len, "?");
    else if (s < 60)
        snprintf(buf, len, "%.0fs", s);
    else if (s < 3600)
        snprintf(buf, len, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else
        snprintf(buf, len, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

void ex_progress_start(ex_progress *p, int64_t first_step, int64_t total_steps, int64_t log_every) {
    const int64_t run = total_steps - first_step;
    *p = (ex_progress){
        .first = first_step,
        .total = total_steps,
        .every = log_every > 0 ? log_every : (run >= 10 ? run / 10 : 1),
        .tty = isatty(STDOUT_FILENO) == 1,
        .start = ex_clock_seconds(),
    };
    p->last_draw = p->start;
}

void ex_progress_update(ex_progress *p, int64_t step, double loss, int64_t tokens) {
    const double now = ex_clock_seconds();
    p->loss_sum += loss;
    p->loss_count++;
    p->tokens += (double)tokens;
    const int64_t done = step + 1 - p->first;
    const bool last = step + 1 >= p->total;
    if (p->tty ? !(last || now - p->last_draw >= 0.1) : !(last || (step + 1) % p->every == 0))
        return;
    const double elapsed = now - p->start;
    char eta[32];
    format_duration(elapsed / (double)done * (double)(p->total - step - 1), eta, sizeof eta);
    printf("%sstep %lld/%lld  loss %.4f  %.0f tok/s  ETA %s%s", p->tty ? "\r" : "",
           (long long)(step + 1), (long long)p->total, p->loss_sum / (double)p->loss_count,
           elapsed > 0 ? p->tokens / elapsed : 0.0, eta, p->tty ? "   " : "\n");
    fflush(stdout);
    p->last_draw = now;
    p->loss_sum = 0;
    p->loss_count = 0;
}

void ex_progress_finish(ex_progress *p) {
    char took[32];
    format_duration(ex_clock_seconds() - p->start, took, sizeof took);
    printf("%strained %lld steps in %s\n", p->tty ? "\n" : "", (long long)(p->total - p->first),
           took);
    fflush(stdout);
}

/* ------------------------------------------------------------------------------------------
 * pictures
 * ---------------------------------------------------------------------------------------- */

void ex_make_dir(const char *dir) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "cannot create the directory '%s': %s\n", dir, strerror(errno));
        exit(1);
    }
}

const char *ex_path(char *buf, size_t len, const char *dir, const char *name) {
    snprintf(buf, len, "%s/%s", dir, name);
    return buf;
}

void ex_check(tg_status st) {
    if (st != TG_OK) {
        fprintf(stderr, "%s\n", tg_error_message());
        exit(1);
    }
}

bool ex_render_dot(const char *dot_path, const char *format) {
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

/* ------------------------------------------------------------------------------------------
 * small things
 * ---------------------------------------------------------------------------------------- */

int64_t ex_argmax(const tg_real *values, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (values[i] > values[best]) best = i;
    return best;
}

int64_t ex_count_correct(const tg_tensor *logits, const tg_index *labels) {
    const int64_t rows = logits->shape[0], classes = logits->shape[1];
    int64_t right = 0;
    for (int64_t i = 0; i < rows; i++)
        right += ex_argmax(logits->data + i * classes, classes) == labels->data[i];
    return right;
}

char *ex_file_read_all(const char *path, int64_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    for (size_t got; buf && (got = fread(buf + len, 1, cap - len, f)) > 0;) {
        len += got;
        if (len == cap) {
            char *bigger = realloc(buf, 2 * cap + 1);
            if (!bigger) {
                free(buf);
                buf = NULL;
                errno = ENOMEM;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    const bool failed = ferror(f);
    fclose(f);
    if (!buf || failed) {
        free(buf);
        if (failed) errno = EIO;
        return NULL;
    }
    buf[len] = '\0';
    *size = (int64_t)len;
    return buf;
}
