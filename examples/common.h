/* examples/common.h — what the example programs share, so that each of them reads like a
 * plain script:
 *
 *   flags        one parser for every program: --help, the program's own flags and, for the
 *                training programs, the common training flags, checked (an unknown flag or
 *                a bad value prints a message and exits with status 2), and the checkpoint
 *                path checked before any work (see "exit statuses" below);
 *   memory       an estimate of what the sizes a program was given need, checked against the
 *                machine's memory before anything is allocated;
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

/* ---- processes (distributed.c) ----
 *
 * Every training program trains data-parallel when launched with mpirun -np N, with the same
 * flags: --batch is the global batch, and each of the N processes (ranks) trains on its B/N
 * rows of every step's batch (the rows [first, first + B/N) of what one process would draw:
 * ex_local_batch), with the gradients averaged over the ranks before the optimizer step
 * (tapegrad/dist.h's tg_ddp, set up by the trainer). The loss is a mean over the rows, so the
 * average of the ranks' gradients is the gradient of the global batch's mean loss (for losses
 * that ignore some targets, the mean of the ranks' means). Rank 0 alone saves checkpoints
 * (every rank resumes from them, with any N) and writes to stdout: the progress line shows
 * the mean loss over all ranks and the tokens of all ranks per second. Errors go to stderr on
 * every rank, prefixed with "[rank r/N] ". Built without MPI (no dist layer), these calls
 * describe one process, and mpirun would start N independent copies.
 *
 * ex_flags_parse starts MPI (ex_dist_start) when a launcher started the process (alone, MPI
 * is not started: a world of 1), and MPI ends at exit. An error that every rank
 * finds (a bad flag, a --batch N does not divide, a checkpoint of another model) makes every
 * rank exit with the same status; a rank that dies makes mpirun end the others. */
void ex_dist_start(void);
int ex_rank(void);  /* 0 .. N-1; 0 without mpirun */
int ex_world(void); /* N; 1 without mpirun */
/* "[rank r/N] " in a world of N > 1, "" alone: for messages on stderr. */
const char *ex_rank_prefix(void);
/* This rank's rows of a global batch of `batch`: returns B/N, and *first = rank·B/N (first may
 * be NULL). Exits 2 on every rank, saying so, when N does not divide `batch`. */
int64_t ex_local_batch(int64_t batch, int64_t *first);
/* Sums values[0..n) over the ranks in rank order (collective); nothing alone. */
void ex_dist_sum(double *values, int n);
/* The data-parallel wrapper of `params` with backward on `tape` (NULL alone); its wait before
 * the optimizer step; freeing it. */
void *ex_dist_wrap(tg_params *params, tg_tape *tape);
void ex_dist_wait(void *wrapper);
void ex_dist_unwrap(void *wrapper);
/* tg_params_save_with by rank 0, every rank getting its status; tg_params_load_with on every
 * rank, failing on all if it fails on any (collective). */
tg_status ex_dist_save(const tg_params *state, const char *path, const tg_save_options *opts);
tg_status ex_dist_load(tg_params *state, const char *path, const tg_load_options *opts);

/* ---- exit statuses ----
 *
 *   0  done (also: --help, and --resume of a checkpoint already at --steps: nothing to do);
 *   1  a file could not be used or saved: a checkpoint or --data that is not a regular file,
 *      a --checkpoint file that is not a tapegrad checkpoint (without --force), a resume that
 *      fails, a checkpoint past --steps, and a run whose last checkpoint save failed;
 *   2  the flags: an unknown flag, a value out of range, sizes that need more memory than
 *      the machine has, a --checkpoint that is the same file as an input. */

/* ---- flags ---- */

/* Settings every training program takes (fill in its defaults before ex_flags_parse). */
typedef struct ex_train_options {
    int64_t steps;          /* --steps: optimizer steps in total */
    int64_t batch;          /* --batch */
    double lr;              /* --lr */
    int64_t seed;           /* --seed: weights, data order and dropout */
    int64_t threads;        /* --threads: 0 = one per core */
    const char *checkpoint; /* --checkpoint PATH ("none": no checkpoint) */
    bool force;             /* --force: replace a --checkpoint file that is not a checkpoint */
    int64_t save_every;     /* --save-every N steps (and always at the end) */
    bool resume;            /* --resume: continue from the checkpoint */
    int64_t log_every;      /* --log-every N: plain progress lines (0 = about 10 per run) */
    int64_t stop_after;     /* --stop-after N: save and exit after N steps (0 = never) */
} ex_train_options;

typedef enum ex_flag_kind {
    EX_FLAG_INT,   /* int64_t, within [min, max] */
    EX_FLAG_REAL,  /* double, within [min, max] */
    EX_FLAG_TEXT,  /* const char * */
    EX_FLAG_PATH,  /* const char *, a file or directory name the program writes */
    EX_FLAG_INPUT, /* const char *, a file the program reads: never the checkpoint */
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
 * wrong and exits 2. `about` is the first lines of --help.
 *
 * Then, before the program does any work, the --checkpoint path is checked, so that a run
 * never trains for an hour to find that it cannot save: it must not be the same file as any
 * EX_FLAG_INPUT flag's (the same name, or the same file under another name; exit 2, even with
 * --force); if something is there it must be a regular file (a directory, FIFO or device:
 * exit 1) and a tapegrad checkpoint, unless --force (exit 1); its folder must exist and be
 * writable (exit 1). */
void ex_flags_parse(int argc, char **argv, const char *about, ex_train_options *train,
                    const ex_flag *flags, int n);
/* Prints "program: message" and a pointer to --help on stderr, and exits 2: for a flag
 * whose value the program checks itself. */
_Noreturn void ex_usage_error(const char *program, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prints "program: message" on stderr and exits 1: for a file that cannot be used. */
_Noreturn void ex_file_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The program's name (argv[0] without its folder), once ex_flags_parse has run. */
const char *ex_program(void);
/* Whether paths a and b name the same file: the same string, the same file under two names
 * (tg_file_same: links followed), or, when neither needs to exist, the same name in the same
 * folder ("text.txt" and "./text.txt"). */
bool ex_same_file(const char *a, const char *b);

/* ---- memory ---- */

/* The bytes this process may use: the machine's physical memory, lowered by the address-space
 * and data limits (ulimit -v, -d) and by a cgroup's memory.max, when they are set. */
double ex_memory_limit(void);
/* The memory of a run, in bytes, from three counts a program derives from its sizes:
 * `params` parameter values (each also has a gradient, Adam's two moments, and a copy while a
 * checkpoint loads: 5 reals), `activations` reals that one step keeps at its peak (what its
 * forward pass makes and the gradients of these; 25% more is counted for the slack of the
 * tape's arena, whose blocks grow by doubling), and `data_bytes` of the program's own arrays;
 * plus 64 MiB for the program, its libraries and the threads' stacks. Each program's counts
 * follow its model's ops; their coefficients were checked against the peak resident memory
 * of runs at several sizes (the estimate is 1.2 to 1.6 times it). */
double ex_memory_estimate(double params, double activations, double data_bytes);
/* Exits 2 with a message when `bytes`, a program's estimate of what its sizes need, is more
 * than ex_memory_limit(): `sizes` names the flags that drive the estimate. A program calls it
 * right after ex_flags_parse, before it allocates anything that grows with its flags, so that
 * a --batch 1000000 is refused at once instead of failing in the middle of an allocation. */
void ex_memory_check(double bytes, const char *sizes);

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
    bool force;       /* the first save may replace a file that is not a checkpoint */
    bool saved;       /* a save of this run succeeded */
    tg_params *state; /* model.*, optim.*, train.* */
    tg_tensor *step;  /* "train.step": (2,) = steps done, as hi·2^20 + lo (a count) */
    int64_t on_disk;  /* the step of the checkpoint at path from this run (or resumed), -1: none */
    int64_t failed;   /* the step of the last save that failed, -1: none */
    bool last_failed; /* the last save failed: path does not hold the latest state */
} ex_checkpoint;

/* The checkpoint of `model` and `opt` at `path` (NULL or "none": nothing is saved); `force`
 * lets its first save replace a file that is not a tapegrad checkpoint. */
ex_checkpoint *ex_checkpoint_new(const char *path, bool force, const tg_params *model,
                                 tg_optim *opt);
/* More state to save and restore (e.g. a language model's carried hidden state), "train.<name>". */
void ex_checkpoint_add(ex_checkpoint *c, const char *name, tg_tensor *t);
/* Saves (safely: a crash mid-save leaves the previous file) with `steps_done` steps done;
 * returns whether it did. A failure is reported on stderr, with the step, and the run goes
 * on (the next save may succeed); the program's exit status tells whether the last failed. */
bool ex_checkpoint_save(ex_checkpoint *c, int64_t steps_done);
/* Called after every step: saves when `steps_done` is a multiple of --save-every or the last
 * step; at --stop-after it saves and exits, as an interrupted run would end: 0 when the save
 * succeeded ("continue with --resume"), 1 when it failed (and then no such claim). */
void ex_checkpoint_after_step(ex_checkpoint *c, int64_t steps_done, const ex_train_options *train);
void ex_checkpoint_free(ex_checkpoint *c);

/* ---- the trainer (training.c) ---- */

/* What a training program's loop does around its forward pass, the same in every program:
 *
 *   ex_trainer tr;
 *   ex_trainer_init(&tr, params, &train, warmup);
 *   const int64_t start = ex_trainer_resume(&tr);
 *   ex_trainer_start(&tr, start);
 *   for (int64_t step = start; step < train.steps; step++) {
 *       ... the step's data, loss = forward(tr.tape, ...) ...
 *       ex_trainer_update(&tr, step, loss);
 *       ex_trainer_step_done(&tr, step, loss, tokens);
 *   }
 *   ex_trainer_finish(&tr);
 *   ... evaluate ...
 *   return ex_trainer_free(&tr);   (after freeing the rest: the exit status) */
typedef struct ex_trainer {
    const ex_train_options *train;
    tg_params *params; /* the model's (not owned) */
    tg_optim *opt;     /* Adam at --lr */
    ex_checkpoint *checkpoint;
    tg_tape *tape;
    ex_progress progress;
    int64_t warmup; /* steps of linear warm-up before the cosine decay of the learning rate */
    int64_t local;  /* this rank's rows of every step's batch: [first, first + local) */
    int64_t first;
    void *ddp; /* the data-parallel wrapper under mpirun (ex_dist_wrap), NULL alone */
} ex_trainer;

/* Adam over `params`, the checkpoint of both at --checkpoint, a tape, and under mpirun the
 * data-parallel wrapper (rank 0's parameters broadcast to every rank) and this rank's share
 * of the batch (tr->first, tr->local; exits 2 when the world does not divide --batch). State
 * of the program's own to save goes in with ex_checkpoint_add(tr->checkpoint, ...) before
 * resuming. */
void ex_trainer_init(ex_trainer *tr, tg_params *params, const ex_train_options *train,
                     int64_t warmup);
/* With --resume, loads the checkpoint and returns the number of steps already done; without
 * it, returns 0. A missing or unfitting file, a NaN or infinite value in it, and a checkpoint
 * past --steps (it comes from a longer run) are errors: message, exit 1. A checkpoint at
 * --steps exactly has nothing left to train: it says so and exits 0. */
int64_t ex_trainer_resume(ex_trainer *tr);
/* Starts the progress line; `start` is the first step this process runs. */
void ex_trainer_start(ex_trainer *tr, int64_t start);
/* One optimizer step from `loss` (the mean over this rank's rows): the step's learning rate
 * (warm-up, then a cosine decay to --lr / 20), backward, the gradients averaged over the
 * ranks, the gradient norm clipped to 1, Adam. */
void ex_trainer_update(ex_trainer *tr, int64_t step, tg_tensor *loss);
/* After the update: the progress line (the loss averaged over the ranks, `tokens` consumed
 * by this rank, times N), the tape reset, and the checkpoint when it is due (at --stop-after
 * it saves and exits). Collective under mpirun. */
void ex_trainer_step_done(ex_trainer *tr, int64_t step, const tg_tensor *loss, int64_t tokens);
/* Ends the progress line and says where the checkpoint is, or that its last save failed. */
void ex_trainer_finish(ex_trainer *tr);
/* Frees the tape, the checkpoint and Adam; returns the program's exit status: 0, or 1 when
 * the last checkpoint save failed (the file does not hold the trained model). */
int ex_trainer_free(ex_trainer *tr);

/* Evaluation mode on (no tape nodes, the model's dropout off) or back to training. */
void ex_eval_mode(tg_tape *tape, tg_module *model, bool on);

/* ---- pictures ---- */

/* Creates the directory if it is not there (one level); exits with a message on failure or
 * when something else (a file) has that name. */
void ex_make_dir(const char *dir);
/* dir/name into buf; returns buf. Exits with a message when something that is not a regular
 * file (a FIFO, which would block the writer; a directory) is at that path. */
const char *ex_path(char *buf, size_t len, const char *dir, const char *name);
/* Exits with the library's message when `st` is not TG_OK (a file that was not written). */
void ex_check(tg_status st);
/* Renders a DOT file with Graphviz's `dot` into `format` (svg, png) next to it, if `dot` is
 * on PATH; returns whether it did. Paths with a quote are not passed to the shell; an output
 * path taken by something that is not a regular file is an error, as for ex_path. */
bool ex_render_dot(const char *dot_path, const char *format);

/* A recurrent layer (tanh RNN, GRU or LSTM) and a Linear on its last state: the sequence
 * classifier the gate-picture programs train (rnn_classifier.c). */
typedef struct ex_rnn_classifier {
    tg_module *module; /* the tree: children "rnn", "fc" */
    tg_recurrent *rnn;
    tg_linear_layer *fc;
    tg_params *params; /* its parameters, "rnn.*", "fc.*" */
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

/* This rank's share of a batch drawn whole (ex_local_batch: `local` rows from `first`):
 * rows [first, first + local) of a batch-major `all` (B, ...) into `part` (local, ...), or the
 * columns of a time-major `all` (T, B) or (T·B,) into `part` (T, local) or (T·local,). */
void ex_index_rows(const tg_index *all, int64_t first, tg_index *part);
void ex_index_columns(const tg_index *all, int64_t batch, int64_t first, tg_index *part,
                      int64_t local);

/* ---- small things ---- */

/* Index of the largest of n values (the first on ties). */
int64_t ex_argmax(const tg_real *values, int64_t n);
/* How many rows of logits (B, classes) have their largest value at labels[row]. */
int64_t ex_count_correct(const tg_tensor *logits, const tg_index *labels);

#endif
