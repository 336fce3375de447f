/* examples/common.h — what the example programs share, so that each of them reads like a
 * plain script:
 *
 *   flags        one parser for every program: --help, the program's own flags and, for the
 *                training programs, the common training flags, checked (an unknown flag or
 *                a bad value prints a message and exits with status 2);
 *   seeds        every step's data (and dropout) drawn from (seed, step) alone, so that a
 *                resumed run needs no generator state to continue bit-identically;
 *   progress     one line rewritten in place on a terminal; plain lines otherwise;
 *   checkpoints  one safetensors file with the model ("model.*"), the optimizer state
 *                ("optim.*") and the training position ("train.*"), written safely;
 *   the trainer  what every training loop does around its forward pass (training.c);
 *   pictures     an output directory, DOT rendered with Graphviz, and the recurrent
 *                classifier the gate-picture programs train (rnn_classifier.c).
 *
 * These helpers belong to the examples, not to the library — hence their prefix ex_ where
 * the library's is tg_: copy what you like. */
#ifndef TAPEGRAD_EXAMPLES_COMMON_H
#define TAPEGRAD_EXAMPLES_COMMON_H

#include <tapegrad.h>
#include <tapegrad/kernels.h>
#include <tapegrad/models.h>

/* ---- flags ---- */

/* Settings every training program takes (fill in its defaults before ex_flags_parse). */
typedef struct ex_train_options {
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
} ex_train_options;

typedef enum ex_flag_kind {
    EX_FLAG_INT,   /* int64_t, within [min, max] */
    EX_FLAG_REAL,  /* double, within [min, max] */
    EX_FLAG_TEXT,  /* const char * */
    EX_FLAG_PATH,  /* const char *, a file or directory name */
    EX_FLAG_SWITCH /* bool, set by the flag's presence */
} ex_flag_kind;

/* One flag of a program: --name VALUE (or --name=VALUE). */
typedef struct ex_flag {
    const char *name;
    ex_flag_kind kind;
    void *value;     /* int64_t *, double *, const char ** or bool *: holds the default */
    double min, max; /* accepted range of a number */
    const char *help;
} ex_flag;

/* Parses argv into the program's own `flags` (n of them) and, if `train` is not NULL, the
 * common training flags into `train` (then it also applies --threads). --help prints the
 * usage (with the defaults) and exits 0; an unknown flag or a bad value prints what is
 * wrong and exits 2. `about` is the first lines of --help. */
void ex_flags_parse(int argc, char **argv, const char *about, ex_train_options *train,
                    const ex_flag *flags, int n);
/* Prints "program: message" and a pointer to --help on stderr, and exits 2: for a flag
 * whose value the program checks itself. */
_Noreturn void ex_usage_error(const char *program, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- seeds and random numbers ---- */

/* A seed for step `step` of a run seeded with `seed` (a 64-bit mix of the two). */
uint64_t ex_step_seed(int64_t seed, int64_t step);
/* Seeds `rng` for the data of one step, and the default generator (dropout) with it. */
void ex_step_rng_seed(tg_rng *rng, int64_t seed, int64_t step);
/* A uniform integer in [0, n), n >= 1. */
int64_t ex_rng_below(tg_rng *rng, int64_t n);

/* ---- optimizer ---- */

/* Adam with PyTorch's defaults and learning rate `lr`, over `params`. */
tg_optim *ex_adam_new(const tg_params *params, double lr);
/* The learning rate of step `step` of `total`: a linear warm-up over `warmup` steps, then a
 * cosine decay from `lr` towards `lr_min` (a function of the step, so resuming needs no state). */
double ex_lr_cosine(double lr, double lr_min, int64_t step, int64_t total, int64_t warmup);

/* ---- time and progress ---- */

double ex_clock_seconds(void); /* monotonic wall clock */

typedef struct ex_progress {
    int64_t first, total; /* steps [first, total) run in this process */
    int64_t every;        /* plain-line period when stdout is not a terminal */
    bool tty;
    double start, last_draw; /* wall clock */
    double loss_sum;         /* losses since the last line */
    int64_t loss_count;
    double tokens; /* tokens processed by this process */
} ex_progress;

/* On a terminal the line "step 120/3000  loss 0.4312  18,204 tok/s  ETA 2m31s" is rewritten
 * in place (at most 10 times a second); otherwise a plain line with the mean loss since the
 * previous one is printed every `log_every` steps (0 = ten lines per run). */
void ex_progress_start(ex_progress *p, int64_t first_step, int64_t total_steps, int64_t log_every);
/* After step `step` (0-based) finished with `loss`, having consumed `tokens` tokens. */
void ex_progress_update(ex_progress *p, int64_t step, double loss, int64_t tokens);
/* Ends the line on a terminal and prints the time taken. */
void ex_progress_finish(ex_progress *p);

/* ---- checkpoints (training.c) ---- */

typedef struct ex_checkpoint {
    const char *path; /* NULL: none */
    tg_params *state; /* model.*, optim.*, train.* */
    tg_tensor *step;  /* "train.step": (2,) = steps done, as hi·2^20 + lo */
} ex_checkpoint;

/* The checkpoint of `model` and `opt` at `path` (NULL or "none": nothing is saved). */
ex_checkpoint *ex_checkpoint_new(const char *path, const tg_params *model, tg_optim *opt);
/* More state to save and restore (e.g. a language model's carried hidden state), "train.<name>". */
void ex_checkpoint_add(ex_checkpoint *c, const char *name, tg_tensor *t);
/* Saves (safely: a crash mid-save leaves the previous file) with `steps_done` steps done.
 * A failure is reported on stderr and the run goes on. */
void ex_checkpoint_save(ex_checkpoint *c, int64_t steps_done);
/* With --resume, loads the file and returns the number of steps already done; without it,
 * returns 0. A missing or unfitting file is an error: message and exit 1. */
int64_t ex_checkpoint_resume(ex_checkpoint *c, bool resume);
/* Called after every step: saves when `steps_done` is a multiple of --save-every or the last
 * step; at --stop-after it saves and exits, as an interrupted run would end. */
void ex_checkpoint_after_step(ex_checkpoint *c, int64_t steps_done, const ex_train_options *train);
void ex_checkpoint_free(ex_checkpoint *c);

/* ---- the trainer (training.c) ---- */

/* What a training program's loop does around its forward pass, the same in every program:
 *
 *   ex_trainer tr;
 *   ex_trainer_init(&tr, params, &train, warmup);
 *   const int64_t start = ex_checkpoint_resume(tr.checkpoint, train.resume);
 *   ex_trainer_start(&tr, start);
 *   for (int64_t step = start; step < train.steps; step++) {
 *       ... the step's data, loss = forward(tr.tape, ...) ...
 *       ex_trainer_update(&tr, step, loss);
 *       ex_trainer_step_done(&tr, step, loss, tokens);
 *   }
 *   ex_trainer_finish(&tr);
 *   ... evaluate ...
 *   ex_trainer_free(&tr); */
typedef struct ex_trainer {
    const ex_train_options *train;
    tg_params *params; /* the model's (not owned) */
    tg_optim *opt;     /* Adam at --lr */
    ex_checkpoint *checkpoint;
    tg_tape *tape;
    ex_progress progress;
    int64_t warmup; /* steps of linear warm-up before the cosine decay of the learning rate */
} ex_trainer;

/* Adam over `params`, the checkpoint of both at --checkpoint, a tape. State of the program's
 * own to save goes in with ex_checkpoint_add(tr->checkpoint, ...) before resuming. */
void ex_trainer_init(ex_trainer *tr, tg_params *params, const ex_train_options *train,
                     int64_t warmup);
/* Starts the progress line; `start` is the first step this process runs. */
void ex_trainer_start(ex_trainer *tr, int64_t start);
/* One optimizer step from `loss`: the step's learning rate (warm-up, then a cosine decay to
 * --lr / 20), backward, the gradient norm clipped to 1, Adam. */
void ex_trainer_update(ex_trainer *tr, int64_t step, tg_tensor *loss);
/* After the update: the progress line (the loss, `tokens` consumed), the tape reset, and
 * the checkpoint when it is due (at --stop-after it saves and exits). */
void ex_trainer_step_done(ex_trainer *tr, int64_t step, const tg_tensor *loss, int64_t tokens);
void ex_trainer_finish(ex_trainer *tr); /* ends the progress line */
void ex_trainer_free(ex_trainer *tr);   /* the tape, the checkpoint and Adam */

/* Evaluation mode on (no tape nodes, dropout off) or back to training. */
void ex_eval_mode(tg_tape *tape, bool on);

/* ---- pictures ---- */

/* Creates the directory if it is not there (one level); exits with a message on failure. */
void ex_make_dir(const char *dir);
/* dir/name into buf; returns buf. */
const char *ex_path(char *buf, size_t len, const char *dir, const char *name);
/* Exits with the library's message when `st` is not TG_OK (a file that was not written). */
void ex_check(tg_status st);
/* Renders a DOT file with Graphviz's `dot` into `format` (svg, png) next to it, if `dot` is
 * on PATH; returns whether it did. Paths with a quote are not passed to the shell. */
bool ex_render_dot(const char *dot_path, const char *format);

/* A recurrent layer (tanh RNN, GRU or LSTM) and a Linear on its last state: the sequence
 * classifier the gate-picture programs train (rnn_classifier.c). */
typedef struct ex_rnn_classifier {
    tg_recurrent *rnn;
    tg_linear_layer *fc;
    tg_params *params; /* "rnn.*", "fc.*" */
} ex_rnn_classifier;

/* kind is TG_CELL_RNN_TANH, TG_CELL_GRU or TG_CELL_LSTM; PyTorch's initialisation from the
 * default generator. */
ex_rnn_classifier ex_rnn_classifier_new(tg_cell_kind kind, int64_t input, int64_t hidden,
                                        int64_t classes);
/* Logits (B, classes) of x (T, B, input). `composite` runs the composite path, whose gates
 * and states are named tensors a gate trace can read; otherwise the fused ops (faster). */
tg_tensor *ex_rnn_classifier_forward(ex_rnn_classifier *m, tg_tape *tape, tg_tensor *x,
                                     bool composite);
void ex_rnn_classifier_free(ex_rnn_classifier *m);

/* ---- small things ---- */

/* Index of the largest of n values (the first on ties). */
int64_t ex_argmax(const tg_real *values, int64_t n);
/* How many rows of logits (B, classes) have their largest value at labels[row]. */
int64_t ex_count_correct(const tg_tensor *logits, const tg_index *labels);
/* Loads a whole file (NUL-terminated); NULL with errno set if it cannot be read. */
char *ex_file_read_all(const char *path, int64_t *size);

#endif
