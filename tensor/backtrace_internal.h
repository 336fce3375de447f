/* The call stack for the default error handler (tensor/backtrace.c). Layer: tensor, internal. */
#ifndef TAPEGRAD_BACKTRACE_INTERNAL_H
#define TAPEGRAD_BACKTRACE_INTERNAL_H

#include <stdio.h>

/* Prints the stack of the calling thread to `out`, one frame a line, from the first frame
 * outside the library ("  called from main (train.c:42)") down to main. */
void tg_backtrace_print(FILE *out);

#endif
