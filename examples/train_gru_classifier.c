/* A complete training script: the GRU text classifier learns whether token 0 occurs in a
 * sequence of 20 random tokens. Build it against the installed library:
 *     cc train_gru_classifier.c $(pkg-config --cflags --libs tapegrad) -o train && ./train */
#include <stdio.h>
#include <string.h>
#include <tapegrad.h>

enum { VOCAB = 29, LENGTH = 20, BATCH = 64 }; /* P(no token 0) = (28/29)^20, about 1/2 */
static const char usage[] = "usage: train [--steps N] [--checkpoint PATH] [--force]\n"
                            "  200 steps (1 to 1000000) by default, saved to model.safetensors;\n"
                            "  --force replaces a file there that is not a tapegrad checkpoint\n";

/* The script's own data: random sequences, labelled 1 if token 0 occurs in them. */
static void next_batch(tg_rng *rng, tg_index *tokens, tg_index *labels) {
    for (int64_t b = 0; b < labels->numel; b++) {
        labels->data[b] = 0;
        for (int i = 0; i < LENGTH; i++) {
            const int32_t token = (int32_t)(tg_rng_next_u32(rng) % VOCAB);
            tokens->data[b * LENGTH + i] = token;
            if (token == 0) labels->data[b] = 1;
        }
    }
}

int main(int argc, char **argv) {
    int steps = 200;
    const char *path = "model.safetensors";
    tg_save_options save = {.force = false};
    for (int i = 1; i < argc; i++) { /* the flags; anything else is refused */
        const char *flag = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        char rest;
        if (!strcmp(flag, "--help")) {
            printf("%s", usage);
            return 0;
        } else if (!strcmp(flag, "--force")) {
            save.force = true;
        } else if (!strcmp(flag, "--checkpoint") && value) {
            path = argv[++i];
        } else if (!strcmp(flag, "--steps") && value && sscanf(value, "%d%c", &steps, &rest) == 1 &&
                   steps >= 1 && steps <= 1000000) {
            i++;
        } else {
            fprintf(stderr, "bad flag or value: '%s'\n%s", flag, usage);
            return 2;
        }
    }
    tg_manual_seed(0); /* same seed as torch.manual_seed(0) */
    tg_gru_classifier *model = tg_gru_classifier_new(/*vocab*/ VOCAB, /*emb*/ 16,
                                                     /*hidden*/ 64, /*classes*/ 2);
    tg_adam_options adam = tg_adam_defaults();
    adam.lr = 3e-3;
    tg_optim *opt = tg_adam_new(tg_module_params(&model->module), &adam);
    tg_tape *tape = tg_tape_new();
    tg_rng rng;
    tg_rng_seed(&rng, 1);
    tg_index *tokens = tg_index_new(TG_SHAPE(BATCH, LENGTH)),
             *labels = tg_index_new(TG_SHAPE(BATCH));
    for (int step = 1; step <= steps; step++) {
        next_batch(&rng, tokens, labels);
        tg_tensor *logits = tg_gru_classifier_forward(model, tape, tokens);
        tg_tensor *loss = tg_cross_entropy(tape, logits, labels);
        tg_tape_backward(tape, loss);
        tg_optim_step(opt); /* also zeroes the grads */
        if (step % 50 == 0 || step == steps) printf("step %d loss %.4f\n", step, tg_item(loss));
        tg_tape_reset(tape); /* recycles every activation */
    }
    next_batch(&rng, tokens, labels);   /* unseen sequences */
    tg_tape_set_recording(tape, false); /* inference: no tape nodes */
    const tg_tensor *logits = tg_gru_classifier_forward(model, tape, tokens);
    int correct = 0;
    for (int b = 0; b < BATCH; b++)
        correct += (logits->data[2 * b + 1] > logits->data[2 * b]) == labels->data[b];
    printf("accuracy on %d new sequences: %d/%d\n", BATCH, correct, BATCH);
    /* it loads in PyTorch too; a file at path that is not a tapegrad checkpoint is kept */
    const tg_status saved = tg_params_save_with(tg_module_params(&model->module), path, &save);
    if (saved != TG_OK) fprintf(stderr, "not saved: %s\n", tg_error_message());
    tg_index_free(tokens);
    tg_index_free(labels);
    tg_tape_free(tape);
    tg_optim_free(opt);
    tg_module_free(&model->module);
    return saved == TG_OK ? 0 : 1;
}
