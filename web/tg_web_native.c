/* web/tg_web_native.c — the page's functions (web/tg_web.c) run natively against
 * libtapegrad64, printing the JSON the page reads, so that a test can compare the numbers
 * the browser shows with the native library's.
 *
 *   tg_web_native cell gru|lstm SEED x1 x2 h1 h2 h3 c1 c2 c3 v1 v2 v3
 *   tg_web_native train rnn|gru|lstm T HIDDEN SEED LR CHUNK CHUNKS   (one JSON line a chunk) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_web.h"

static int usage(void) {
    fprintf(stderr, "usage: tg_web_native cell gru|lstm SEED x1 x2 h1 h2 h3 c1 c2 c3 v1 v2 v3\n"
                    "       tg_web_native train rnn|gru|lstm T HIDDEN SEED LR CHUNK CHUNKS\n");
    return 2;
}

static int kind_of(const char *s, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

int main(int argc, char **argv) {
    if (argc == 15 && !strcmp(argv[1], "cell")) {
        const int kind = kind_of(argv[2], (const char *const[]){"gru", "lstm"}, 2);
        if (kind < 0) return usage();
        double in[11];
        for (int i = 0; i < 11; i++) in[i] = strtod(argv[4 + i], NULL);
        puts(tgw_cell(kind, in, (uint32_t)strtoul(argv[3], NULL, 10)));
        return 0;
    }
    if (argc == 9 && !strcmp(argv[1], "train")) {
        const int model = kind_of(argv[2], (const char *const[]){"rnn", "gru", "lstm"}, 3);
        if (model < 0 ||
            tgw_train_start(model, atoi(argv[3]), atoi(argv[4]),
                            (uint32_t)strtoul(argv[5], NULL, 10), strtod(argv[6], NULL)) != 0)
            return usage();
        for (int c = 0, chunks = atoi(argv[8]); c < chunks; c++)
            puts(tgw_train_steps(atoi(argv[7])));
        return 0;
    }
    return usage();
}
