/* web/tg_web.h — the functions the browser page calls (web/tg_web.c says what each returns).
 * Their answers are JSON text that lives until the next call. */
#ifndef TAPEGRAD_WEB_H
#define TAPEGRAD_WEB_H

#include <stdint.h>

enum {
    TGW_GRU = 0,
    TGW_LSTM = 1,
    TGW_INPUT = 2,   /* the cell's input size */
    TGW_HIDDEN = 3,  /* and hidden size */
    TGW_MAX_T = 200, /* the longest sequence the training panel takes */
};

/* One composite step of a GRU (kind TGW_GRU) or LSTM cell whose weights are PyTorch's
 * initialisation after tg_manual_seed(seed); `in` holds x (2), h_prev (3), c_prev (3, read
 * by the LSTM only) and the loss weights v (3): L = Σ v ⊙ h'. */
const char *tgw_cell(int kind, const double *in, uint32_t seed);

/* A classifier (model 0 tanh RNN, 1 GRU, 2 LSTM; `hidden` units, 1 to 64) on sequences of
 * T tokens (2 to TGW_MAX_T) whose answer is the first; Adam with learning rate lr.
 * Returns 0, or -1 for arguments out of range (nothing changes then). */
int tgw_train_start(int model, int T, int hidden, uint32_t seed, double lr);
/* k more training steps (0 to 10000); their losses, the held-out accuracy and ‖dL/dh_t‖. */
const char *tgw_train_steps(int k);

#endif
