/* examples/training.c — checkpoints and the trainer: what every training program does
 * around its forward pass (see common.h). */
#include "common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------
 * checkpoints
 * ---------------------------------------------------------------------------------------- */

#define STEP_SPLIT 1048576.0 /* 2^20: two float32 halves hold any step count below 2^44 */

ex_checkpoint *ex_checkpoint_new(const char *path, const tg_params *model, tg_optim *opt) {
    ex_checkpoint *c = tg_xcalloc(1, sizeof *c);
    c->path = path && strcmp(path, "none") ? path : NULL;
    c->state = tg_params_new();
    tg_params_extend(c->state, "model", model);
    tg_params_extend(c->state, NULL, tg_optim_state(opt)); /* its names start with "optim." */
    c->step = tg_tensor_zeros(TG_SHAPE(2));
    tg_params_add(c->state, "train.step", c->step);
    return c;
}

void ex_checkpoint_add(ex_checkpoint *c, const char *name, tg_tensor *t) {
    char key[TG_NAME_MAX];
    snprintf(key, sizeof key, "train.%s", name);
    tg_params_add(c->state, key, t);
}

void ex_checkpoint_save(ex_checkpoint *c, int64_t steps_done) {
    if (!c->path) return;
    c->step->data[0] = (tg_real)floor((double)steps_done / STEP_SPLIT);
    c->step->data[1] = (tg_real)fmod((double)steps_done, STEP_SPLIT);
    if (tg_params_save(c->state, c->path) != TG_OK)
        fprintf(stderr, "\nwarning: checkpoint not saved: %s\n", tg_error_message());
}

int64_t ex_checkpoint_resume(ex_checkpoint *c, bool resume) {
    if (!resume || !c->path) return 0;
    if (tg_params_load(c->state, c->path, false) != TG_OK) {
        fprintf(stderr, "cannot resume: %s\n", tg_error_message());
        exit(1);
    }
    const double hi = c->step->data[0], lo = c->step->data[1];
    if (!(hi >= 0 && lo >= 0 && lo < STEP_SPLIT && hi == floor(hi) && lo == floor(lo))) {
        fprintf(stderr, "cannot resume: %s holds no valid train.step\n", c->path);
        exit(1);
    }
    const int64_t steps = (int64_t)hi * (int64_t)STEP_SPLIT + (int64_t)lo;
    printf("resumed from %s after step %lld\n", c->path, (long long)steps);
    return steps;
}

void ex_checkpoint_after_step(ex_checkpoint *c, int64_t steps_done, const ex_train_options *train) {
    const bool stop = steps_done == train->stop_after;
    if (stop || steps_done == train->steps || steps_done % train->save_every == 0)
        ex_checkpoint_save(c, steps_done);
    if (stop) {
        printf("%sstopped after step %lld (--stop-after); continue with --resume\n",
               isatty(STDOUT_FILENO) == 1 ? "\n" : "", (long long)steps_done);
        exit(0);
    }
}

void ex_checkpoint_free(ex_checkpoint *c) {
    if (!c) return;
    tg_params_free(c->state);
    tg_tensor_free(c->step);
    free(c);
}

/* ------------------------------------------------------------------------------------------
 * the trainer
 * ---------------------------------------------------------------------------------------- */

void ex_trainer_init(ex_trainer *tr, tg_params *params, const ex_train_options *train,
                     int64_t warmup) {
    *tr = (ex_trainer){.train = train, .params = params, .warmup = warmup};
    tr->opt = ex_adam_new(params, train->lr);
    tr->checkpoint = ex_checkpoint_new(train->checkpoint, params, tr->opt);
    tr->tape = tg_tape_new();
}

void ex_trainer_start(ex_trainer *tr, int64_t start) {
    ex_progress_start(&tr->progress, start, tr->train->steps, tr->train->log_every);
}

void ex_trainer_update(ex_trainer *tr, int64_t step, tg_tensor *loss) {
    const ex_train_options *o = tr->train;
    tg_optim_set_lr(tr->opt, ex_lr_cosine(o->lr, o->lr / 20, step, o->steps, tr->warmup));
    tg_tape_backward(tr->tape, loss);
    tg_clip_grad_norm(tr->params, 1.0, 2.0);
    tg_optim_step(tr->opt);
}

void ex_trainer_step_done(ex_trainer *tr, int64_t step, const tg_tensor *loss, int64_t tokens) {
    ex_progress_update(&tr->progress, step, tg_item(loss), tokens);
    tg_tape_reset(tr->tape);
    ex_checkpoint_after_step(tr->checkpoint, step + 1, tr->train);
}

void ex_trainer_finish(ex_trainer *tr) { ex_progress_finish(&tr->progress); }

void ex_trainer_free(ex_trainer *tr) {
    tg_tape_free(tr->tape);
    ex_checkpoint_free(tr->checkpoint);
    tg_optim_free(tr->opt);
}

void ex_eval_mode(tg_tape *tape, bool on) {
    tg_tape_set_recording(tape, !on);
    tg_tape_set_training(tape, !on);
}
