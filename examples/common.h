/* examples/common.h — what the example programs share, so that each of them reads like a
 * plain training script:
 *
 *   flags        --help, the common training flags and each example's own, checked
 *                (an unknown flag or a bad value prints a message and exits with status 2);
 *   seeds        every step's data (and dropout) drawn from (seed, step) alone, so that a
 *                resumed run needs no generator state to continue bit-identically;
 *   progress     one line rewritten in place on a terminal; plain lines otherwise;
 *   checkpoints  one safetensors file with the model ("model.*"), the optimizer state
 *                ("optim.*") and the training position ("train.*"), written safely.
 *
 * These helpers belong to the examples, not to the library: copy what you like. */
#ifndef TAPEGRAD_EXAMPLES_COMMON_H
#define TAPEGRAD_EXAMPLES_COMMON_H

#include <tapegrad.h>
#include <tapegrad/kernels.h>
#include <tapegrad/models.h>

/* ---- flags ---- */

/* Settings every example takes (fill in the example's defaults before tg_flags_parse). */
typedef struct tg_train_options {
    int64_t steps;          /* --steps: optimizer steps in total */
    int64_t batch;          /* --batch */
    double lr;              /* --lr */
    int64_t seed;           /* --seed: weights, data order and dropout */
    int64_t threads;        /* --threads: 0 = one per core */
    const char *checkpoint; /* --checkpoint PATH ("none": no checkpoint) */
    int64_t save_every;     /* --save-every N steps (and always at the end) */
    bool resume;            /* --resume: continue from the checkpoint */
    int64_t log_every;      /* --log-every N: plain progress lines (0 = about 10 per run) */
    int64_t stop_after;     /* --stop-after N: save and exit after N steps (0 = never) */
} tg_train_options;

typedef enum tg_flag_kind {
    TG_FLAG_INT,   /* int64_t, within [min, max] */
    TG_FLAG_REAL,  /* double, within [min, max] */
    TG_FLAG_TEXT,  /* const char * */
    TG_FLAG_PATH,  /* const char *, a file name */
    TG_FLAG_SWITCH /* bool, set by the flag's presence */
} tg_flag_kind;

/* One flag of an example: --name VALUE (or --name=VALUE). */
typedef struct tg_flag {
    const char *name;
    tg_flag_kind kind;
    void *value;     /* int64_t *, double *, const char ** or bool *: holds the default */
    double min, max; /* accepted range of a number */
    const char *help;
} tg_flag;

/* Parses argv into `train` and the example's own `flags` (n of them). --help prints the
 * usage (with the defaults) and exits 0; an unknown flag or a bad value prints what is wrong
 * and exits 2. Applies --threads. `about` is the first lines of --help. */
void tg_flags_parse(int argc, char **argv, const char *about, tg_train_options *train,
                    const tg_flag *flags, int n);

/* ---- seeds and random numbers ---- */

/* Adam with PyTorch's defaults and the learning rate of --lr, over `params`. */
tg_optim *tg_train_adam_new(const tg_params *params, const tg_train_options *train);

/* A seed for step `step` of a run seeded with `seed` (a 64-bit mix of the two). */
uint64_t tg_step_seed(int64_t seed, int64_t step);
/* Seeds `rng` for the data of one step, and the default generator (dropout) with it. */
void tg_step_rng_seed(tg_rng *rng, int64_t seed, int64_t step);
/* A uniform integer in [0, n), n >= 1. */
int64_t tg_rng_below(tg_rng *rng, int64_t n);

/* The learning rate of step `step` of `total`: a linear warm-up over `warmup` steps, then a
 * cosine decay from `lr` towards `lr_min` (a function of the step, so resuming needs no state). */
double tg_lr_cosine(double lr, double lr_min, int64_t step, int64_t total, int64_t warmup);

/* ---- time and progress ---- */

double tg_clock_seconds(void); /* monotonic wall clock */

typedef struct tg_progress {
    int64_t first, total; /* steps [first, total) run in this process */
    int64_t every;        /* plain-line period when stdout is not a terminal */
    bool tty;
    double start, last_draw; /* wall clock */
    double loss_sum;         /* losses since the last line */
    int64_t loss_count;
    double tokens; /* tokens processed by this process */
} tg_progress;

/* On a terminal the line "step 120/3000  loss 0.4312  18,204 tok/s  ETA 2m31s" is rewritten
 * in place (at most 10 times a second); otherwise a plain line with the mean loss since the
 * previous one is printed every `log_every` steps (0 = ten lines per run). */
void tg_progress_start(tg_progress *p, int64_t first_step, int64_t total_steps, int64_t log_every);
/* After step `step` (0-based) finished with `loss`, having consumed `tokens` tokens. */
void tg_progress_update(tg_progress *p, int64_t step, double loss, int64_t tokens);
/* Ends the line on a terminal and prints the time taken. */
void tg_progress_finish(tg_progress *p);

/* ---- checkpoints ---- */

typedef struct tg_checkpoint {
    const char *path; /* NULL: none */
    tg_params *state; /* model.*, optim.*, train.* */
    tg_tensor *step;  /* "train.step": (2,) = steps done, as hi·2^20 + lo */
} tg_checkpoint;

/* The checkpoint of `model` and `opt` at `path` (NULL or "none": nothing is saved). */
tg_checkpoint *tg_checkpoint_new(const char *path, const tg_params *model, tg_optim *opt);
/* More state to save and restore (e.g. a language model's carried hidden state), "train.<name>". */
void tg_checkpoint_add(tg_checkpoint *c, const char *name, tg_tensor *t);
/* Saves (safely: a crash mid-save leaves the previous file) with `steps_done` steps done.
 * A failure is reported on stderr and the run goes on. */
void tg_checkpoint_save(tg_checkpoint *c, int64_t steps_done);
/* With --resume, loads the file and returns the number of steps already done; without it,
 * returns 0. A missing or unfitting file is an error: message and exit 1. */
int64_t tg_checkpoint_resume(tg_checkpoint *c, bool resume);
/* Called after every step: saves when `steps_done` is a multiple of --save-every or the last
 * step; at --stop-after it saves and exits, as an interrupted run would end. */
void tg_checkpoint_after_step(tg_checkpoint *c, int64_t steps_done, const tg_train_options *train);
void tg_checkpoint_free(tg_checkpoint *c);

/* ---- small things ---- */

/* Index of the largest of n values (the first on ties). */
int64_t tg_argmax(const tg_real *values, int64_t n);
/* Loads a whole file (NUL-terminated); NULL with errno set if it cannot be read. */
char *tg_file_read_all(const char *path, int64_t *size);

#endif
