/* examples/common.c — flags, the checkpoint path's checks, the memory check, per-step seeds,
 * the learning-rate schedule, the progress line, the pictures' output and small things for
 * the example programs (see common.h). */
#include "common.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------
 * flags
 * ---------------------------------------------------------------------------------------- */

static const char *program_name = "example";

const char *ex_program(void) { return program_name; }

/* "[rank r/N] program: message" and `tail` on stderr in one write, so that the lines of
 * ranks that fail at once do not interleave. */
static void error_say(const char *program, const char *tail, const char *fmt, va_list args) {
    char message[1200];
    const int n = snprintf(message, sizeof message, "%s%s: ", ex_rank_prefix(), program);
    vsnprintf(message + n, sizeof message - (size_t)n, fmt, args);
    fprintf(stderr, "%s\n%s", message, tail);
}

void ex_file_error(const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    error_say(program_name, "", fmt, args);
    va_end(args);
    exit(1);
}

void ex_usage_error(const char *program, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    char tail[300];
    snprintf(tail, sizeof tail, "(try %s --help)\n", program);
    error_say(program, tail, fmt, args);
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
    case EX_FLAG_PATH:
    case EX_FLAG_INPUT: {
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
        const char *arg = f->kind == EX_FLAG_INT                                ? "N"
                          : f->kind == EX_FLAG_REAL                             ? "X"
                          : f->kind == EX_FLAG_PATH || f->kind == EX_FLAG_INPUT ? "PATH"
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
    case EX_FLAG_INPUT:
        if (!*text) ex_usage_error(program, "--%s needs a value", f->name);
        *(const char **)f->value = text;
        break;
    case EX_FLAG_SWITCH:
        *(bool *)f->value = true;
        break;
    }
}

/* The last component of path ("" for "dir/"), and the length of what comes before it. */
static const char *last_name(const char *path, size_t *folder_len) {
    const char *slash = strrchr(path, '/');
    *folder_len = slash ? (size_t)(slash - path) + (slash == path) : 0;
    return slash ? slash + 1 : path;
}

/* The folder of path into buf ("." for a bare name). */
static const char *folder_of(const char *path, char *buf, size_t len) {
    size_t n;
    last_name(path, &n);
    snprintf(buf, len, "%.*s", (int)(n ? n : 1), n ? path : ".");
    return buf;
}

bool ex_same_file(const char *a, const char *b) {
    if (!strcmp(a, b) || tg_file_same(a, b)) return true;
    /* a file that does not exist yet: the same name in the same folder */
    size_t na, nb;
    const char *name_a = last_name(a, &na), *name_b = last_name(b, &nb);
    char folder_a[4096], folder_b[4096];
    return *name_a && !strcmp(name_a, name_b) &&
           tg_file_same(folder_of(a, folder_a, sizeof folder_a),
                        folder_of(b, folder_b, sizeof folder_b));
}

/* Why the file at path (a regular file) is not a tapegrad checkpoint, into why; false if it
 * is one. Only its header is read. The library's save makes the same test again, at every
 * save; this one runs before the training does. */
static bool not_a_checkpoint(const char *path, char *why, size_t len) {
    tg_safetensors *st = NULL;
    const tg_safetensors_read_options header = {.header_only = true};
    if (tg_safetensors_read_with(path, &header, &st) != TG_OK) {
        snprintf(why, len, "%s", tg_error_message());
        return true;
    }
    const char *mark = tg_safetensors_meta(st, "framework");
    const bool ours = mark && !strcmp(mark, "tapegrad");
    tg_safetensors_free(st);
    if (!ours) snprintf(why, len, "a safetensors file that tapegrad did not write");
    return !ours;
}

/* The checks of --checkpoint that ex_flags_parse promises (see common.h). */
static void checkpoint_path_check(const ex_train_options *train, const ex_flag *flags, int n) {
    const char *path = train->checkpoint;
    for (int i = 0; i < n; i++) {
        const char *input = flags[i].kind == EX_FLAG_INPUT ? *(const char **)flags[i].value : NULL;
        if (input && ex_same_file(path, input))
            ex_usage_error(program_name,
                           "--checkpoint '%s' is the same file as --%s '%s': saving would replace "
                           "it (--force does not change that)",
                           path, flags[i].name, input);
    }
    struct stat sb;
    if (stat(path, &sb) == 0) {
        char why[600];
        if (!S_ISREG(sb.st_mode))
            ex_file_error("--checkpoint '%s' is %s, not a regular file", path,
                          S_ISDIR(sb.st_mode)    ? "a directory"
                          : S_ISFIFO(sb.st_mode) ? "a FIFO"
                          : S_ISCHR(sb.st_mode)  ? "a character device"
                          : S_ISBLK(sb.st_mode)  ? "a block device"
                          : S_ISSOCK(sb.st_mode) ? "a socket"
                                                 : "not a file");
        if (!train->force && not_a_checkpoint(path, why, sizeof why))
            ex_file_error("--checkpoint '%s' is not a tapegrad checkpoint (%s): refusing to %s it "
                          "(--force replaces it)",
                          path, why, train->resume ? "resume from or replace" : "replace");
    } else if (errno != ENOENT) {
        ex_file_error("cannot use --checkpoint '%s': %s", path, strerror(errno));
    }
    char folder[4096];
    folder_of(path, folder, sizeof folder);
    if (stat(folder, &sb) != 0)
        ex_file_error("cannot save --checkpoint '%s': its folder '%s': %s", path, folder,
                      strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        ex_file_error("cannot save --checkpoint '%s': '%s' is not a directory", path, folder);
    if (access(folder, W_OK | X_OK) != 0)
        ex_file_error("cannot save --checkpoint '%s': cannot write into '%s': %s", path, folder,
                      strerror(errno));
}

void ex_flags_parse(int argc, char **argv, const char *about, ex_train_options *train,
                    const ex_flag *flags, int n) {
    const char *slash = argc > 0 ? strrchr(argv[0], '/') : NULL;
    const char *program = slash ? slash + 1 : argc > 0 ? argv[0] : "example";
    program_name = program;
    ex_dist_start(); /* under mpirun: MPI, this rank, stdout from rank 0 alone */
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
        {"force", EX_FLAG_SWITCH, &train->force, 0, 0,
         "let the checkpoint replace a file that is not a tapegrad checkpoint"},
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
    if (train->checkpoint) checkpoint_path_check(train, flags, n);
    tg_set_num_threads((int)train->threads);
}

/* ------------------------------------------------------------------------------------------
 * memory
 * ---------------------------------------------------------------------------------------- */

double ex_memory_limit(void) {
    double limit = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    const int resources[] = {RLIMIT_AS, RLIMIT_DATA};
    for (int i = 0; i < 2; i++) {
        struct rlimit rl;
        if (getrlimit(resources[i], &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
            (double)rl.rlim_cur < limit)
            limit = (double)rl.rlim_cur;
    }
    /* a container's limit (cgroup v2): a number, or "max" */
    FILE *f = fopen("/sys/fs/cgroup/memory.max", "r");
    double cgroup;
    if (f && fscanf(f, "%lf", &cgroup) == 1 && cgroup > 0 && cgroup < limit) limit = cgroup;
    if (f) fclose(f);
    return limit;
}

double ex_memory_estimate(double params, double activations, double data_bytes) {
    return (double)sizeof(tg_real) * (5 * params + 1.25 * activations) + data_bytes +
           64.0 * 1024 * 1024;
}

void ex_memory_check(double bytes, const char *sizes) {
    const double limit = ex_memory_limit(), gib = 1024.0 * 1024 * 1024;
    if (bytes <= limit) return;
    ex_usage_error(program_name,
                   "these sizes need about %.1f GiB of memory, more than the %.1f GiB this "
                   "process may use: make %s smaller",
                   bytes / gib, limit / gib, sizes);
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
    if (mkdir(dir, 0777) == 0) return;
    struct stat sb;
    if (errno != EEXIST)
        ex_file_error("cannot create the directory '%s': %s", dir, strerror(errno));
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        ex_file_error("'%s' is there but is not a directory", dir);
}

/* The picture writers open their files with fopen, which would wait forever on a FIFO: what
 * is already at an output path must be a regular file, which they replace. */
static bool writable_path(const char *path) {
    struct stat sb;
    return stat(path, &sb) != 0 || S_ISREG(sb.st_mode);
}

const char *ex_path(char *buf, size_t len, const char *dir, const char *name) {
    snprintf(buf, len, "%s/%s", dir, name);
    if (!writable_path(buf)) ex_file_error("'%s' is there but is not a regular file", buf);
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
    if (!writable_path(out)) ex_file_error("'%s' is there but is not a regular file", out);
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
