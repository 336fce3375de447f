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

ex_checkpoint *ex_checkpoint_new(const char *path, bool force, const tg_params *model,
                                 tg_optim *opt) {
    ex_checkpoint *c = tg_xcalloc(1, sizeof *c);
    c->path = path && strcmp(path, "none") ? path : NULL;
    c->force = force;
    c->on_disk = -1;
    c->failed = -1;
    c->state = tg_params_new();
    tg_params_extend(c->state, "model", model);
    tg_params_extend(c->state, NULL, tg_optim_state(opt)); /* its names start with "optim." */
    c->step = tg_tensor_zeros(TG_SHAPE(2));
    tg_params_add_count(c->state, "train.step", c->step); /* loading checks it is a count */
    return c;
}

void ex_checkpoint_add(ex_checkpoint *c, const char *name, tg_tensor *t) {
    char key[TG_NAME_MAX];
    snprintf(key, sizeof key, "train.%s", name);
    tg_params_add(c->state, key, t);
}

bool ex_checkpoint_save(ex_checkpoint *c, int64_t steps_done) {
    if (!c->path) return true;
    c->step->data[0] = (tg_real)floor((double)steps_done / STEP_SPLIT);
    c->step->data[1] = (tg_real)fmod((double)steps_done, STEP_SPLIT);
    /* --force lets the first save replace a file that is not a checkpoint; later saves find
     * ours there, and must not replace whatever else may have taken its place meanwhile */
    const tg_save_options opts = {.force = c->force && !c->saved};
    c->last_failed = ex_dist_save(c->state, c->path, &opts) != TG_OK; /* by rank 0 */
    if (c->last_failed) {
        c->failed = steps_done;
        fprintf(stderr, "%s%s%s: the checkpoint after step %lld was not saved: %s\n",
                isatty(STDOUT_FILENO) == 1 ? "\n" : "", ex_rank_prefix(), ex_program(),
                (long long)steps_done, tg_error_message());
        return false;
    }
    c->on_disk = steps_done;
    c->saved = true;
    return true;
}

/* What the checkpoint file holds after a failed save, for the messages. */
static void on_disk_say(const ex_checkpoint *c, FILE *f) {
    if (c->on_disk >= 0)
        fprintf(f, "  %s still holds the checkpoint after step %lld\n", c->path,
                (long long)c->on_disk);
    else
        fprintf(f, "  no checkpoint of this run is in %s\n", c->path);
}

void ex_checkpoint_after_step(ex_checkpoint *c, int64_t steps_done, const ex_train_options *train) {
    const bool stop = steps_done == train->stop_after;
    const bool saved =
        !(stop || steps_done == train->steps || steps_done % train->save_every == 0) ||
        ex_checkpoint_save(c, steps_done);
    if (!stop) return;
    const char *nl = isatty(STDOUT_FILENO) == 1 ? "\n" : "";
    if (!c->path) {
        printf("%sstopped after step %lld (--stop-after); nothing was saved (--checkpoint none)\n",
               nl, (long long)steps_done);
        exit(0);
    }
    if (!saved) {
        fflush(stdout);
        fprintf(stderr,
                "%s: stopped after step %lld (--stop-after), but its checkpoint could not "
                "be saved\n",
                ex_program(), (long long)steps_done);
        on_disk_say(c, stderr);
        exit(1);
    }
    printf("%sstopped after step %lld (--stop-after); continue with --resume\n", nl,
           (long long)steps_done);
    exit(0);
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
    tr->local = ex_local_batch(train->batch, &tr->first);
    tr->opt = ex_adam_new(params, train->lr);
    tr->checkpoint = ex_checkpoint_new(train->checkpoint, train->force, params, tr->opt);
    tr->tape = tg_tape_new();
    tr->ddp = ex_dist_wrap(params, tr->tape);
}

int64_t ex_trainer_resume(ex_trainer *tr) {
    ex_checkpoint *c = tr->checkpoint;
    if (!tr->train->resume || !c->path) return 0;
    /* NaN or infinite weights are refused (a run that diverged is not worth continuing),
     * and train.step must hold non-negative integers: the library names the bad tensor */
    const tg_load_options opts = {0};
    if (ex_dist_load(c->state, c->path, &opts) != TG_OK) /* on every rank, any N */
        ex_file_error("cannot resume: %s", tg_error_message());
    const double hi = c->step->data[0], lo = c->step->data[1];
    if (!(lo < STEP_SPLIT && hi < 16777216.0)) /* 2^24: a float32 holds every integer below */
        ex_file_error("cannot resume: %s holds no valid train.step", c->path);
    const int64_t steps = (int64_t)hi * (int64_t)STEP_SPLIT + (int64_t)lo;
    const int64_t total = tr->train->steps;
    if (steps > total)
        ex_file_error("cannot resume: the checkpoint %s is at step %lld, past --steps %lld (it "
                      "comes from a longer run; give --steps %lld or more)",
                      c->path, (long long)steps, (long long)total, (long long)steps);
    c->on_disk = steps;
    if (steps == total) {
        printf("the checkpoint %s is already at step %lld = --steps: nothing to do (give a "
               "larger --steps to train on)\n",
               c->path, (long long)steps);
        exit(0);
    }
    printf("resumed from %s after step %lld\n", c->path, (long long)steps);
    return steps;
}

void ex_trainer_start(ex_trainer *tr, int64_t start) {
    ex_progress_start(&tr->progress, start, tr->train->steps, tr->train->log_every);
}

void ex_trainer_update(ex_trainer *tr, int64_t step, tg_tensor *loss) {
    const ex_train_options *o = tr->train;
    tg_optim_set_lr(tr->opt, ex_lr_cosine(o->lr, o->lr / 20, step, o->steps, tr->warmup));
    tg_tape_backward(tr->tape, loss);
    ex_dist_wait(tr->ddp); /* the gradients averaged over the ranks */
    tg_clip_grad_norm(tr->params, 1.0, 2.0);
    tg_optim_step(tr->opt);
}

void ex_trainer_step_done(ex_trainer *tr, int64_t step, const tg_tensor *loss, int64_t tokens) {
    double mean = tg_item(loss);
    ex_dist_sum(&mean, 1); /* the ranks' losses, for the line: their mean */
    ex_progress_update(&tr->progress, step, mean / ex_world(), tokens * ex_world());
    tg_tape_reset(tr->tape);
    ex_checkpoint_after_step(tr->checkpoint, step + 1, tr->train);
}

void ex_trainer_finish(ex_trainer *tr) {
    ex_progress_finish(&tr->progress);
    const ex_checkpoint *c = tr->checkpoint;
    if (!c->path) return;
    if (!c->last_failed) {
        printf("checkpoint: %s (after step %lld)\n", c->path, (long long)c->on_disk);
    } else {
        fflush(stdout);
        fprintf(stderr, "%s: error: the last checkpoint save (after step %lld) failed\n",
                ex_program(), (long long)c->failed);
        on_disk_say(c, stderr);
    }
    fflush(stdout);
}

int ex_trainer_free(ex_trainer *tr) {
    const int status = tr->checkpoint->last_failed ? 1 : 0;
    if (status) /* again at the end, under the results, where one looks */
        fprintf(stderr, "%s: exit status 1: the checkpoint after step %lld was not saved\n",
                ex_program(), (long long)tr->checkpoint->failed);
    ex_dist_unwrap(tr->ddp); /* before the tape whose hook it holds */
    tg_tape_free(tr->tape);
    ex_checkpoint_free(tr->checkpoint);
    tg_optim_free(tr->opt);
    return status;
}

void ex_eval_mode(tg_tape *tape, tg_module *model, bool on) {
    tg_tape_set_recording(tape, !on);
    tg_module_train(model, !on);
}
