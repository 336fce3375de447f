/* A program that misuses an op, for tests/test_error_location.sh: tg_matmul of a (2, 3) by a
 * (2, 3) tensor, called from multiply_wrong, which main calls. The default error handler must
 * name multiply_wrong and this file's line of the call (the script finds it by the marker
 * comment), then main, and exit with status 1. */
#include <tapegrad.h>

#include <stdio.h>

/* noinline, and no tail call: the frame must exist in an optimised build for the handler to
 * name it. */
__attribute__((noinline)) static tg_tensor *multiply_wrong(tg_tape *tape, tg_tensor *a) {
    tg_tensor *y = tg_matmul(tape, a, a); /* the failing call */
    return tg_tensor_named(y, "y");
}

int main(void) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *a = tg_tensor_named(tg_tape_tensor(tape, 2, (const int64_t[]){2, 3}), "a");
    printf("before the failure\n"); /* stdout is a pipe in the test: this must be flushed */
    tg_tensor *y = multiply_wrong(tape, a);
    printf("not reached %p\n", (void *)y);
    tg_tape_free(tape);
    return 0;
}
