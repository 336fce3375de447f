/* Compiled, never run, by tests/compile_fail.sh: the recurrent modules and cells are distinct
 * types. MODULE names the argument handed to tg_gru_forward and CELL the one handed to
 * tg_gru_cell_forward; with -DMODULE=gru -DCELL=gru_cell the file must compile (the control),
 * with -DMODULE=lstm (or -DCELL=lstm_cell) the compiler must refuse the call. */
#include <tapegrad.h>

tg_tensor *step(tg_tape *t, tg_tensor *x, tg_gru *gru, tg_lstm *lstm, tg_gru_cell *gru_cell,
                tg_lstm_cell *lstm_cell);

tg_tensor *step(tg_tape *t, tg_tensor *x, tg_gru *gru, tg_lstm *lstm, tg_gru_cell *gru_cell,
                tg_lstm_cell *lstm_cell) {
    (void)gru, (void)lstm, (void)gru_cell, (void)lstm_cell;
    tg_tensor *out = tg_gru_forward(MODULE, t, x, NULL).output;
    return tg_gru_cell_forward(CELL, t, tg_select(t, out, 0, 0), NULL);
}
