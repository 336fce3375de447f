/* libFuzzer target for the safetensors reader.
 *
 * Every input goes through tg_safetensors_parse. When a file is accepted, every entry is
 * converted (floats to tg_tensor, integers to tg_index), looked up by name, and the
 * layout invariants the reader promises are re-checked here: a violation traps, so the
 * fuzzer reports it like a crash. Build and run: see fuzz/README.md. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tapegrad/safetensors.h"

/* Stops the run on a broken promise (ASan/UBSan catch the memory errors themselves). */
#define FUZZ_REQUIRE(cond)                                                                         \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

static void fuzz_check_file(const tg_safetensors *st, size_t size) {
    const unsigned char *base = st->buffer;
    FUZZ_REQUIRE(st->buffer_size == size);
    uint64_t n;
    memcpy(&n, base, sizeof n);
    const unsigned char *data = base + 8 + n;
    size_t covered = 0;
    for (size_t i = 0; i < st->count; i++) {
        const tg_st_entry *e = &st->entries[i];
        const unsigned char *p = e->data;
        /* Entries come sorted by offset and tile the data buffer exactly. */
        FUZZ_REQUIRE(p == data + covered);
        FUZZ_REQUIRE(e->nbytes == (size_t)e->numel * tg_dtype_size(e->dtype));
        covered += e->nbytes;
        FUZZ_REQUIRE(tg_safetensors_find(st, e->name) == e);

        if (e->dtype == TG_DTYPE_F32 || e->dtype == TG_DTYPE_F64) {
            tg_tensor *t = NULL;
            FUZZ_REQUIRE(tg_st_entry_to_tensor(e, &t) == TG_OK && t->numel == e->numel);
            tg_tensor_free(t);
        } else if (e->dtype == TG_DTYPE_I32 || e->dtype == TG_DTYPE_I64) {
            tg_index *ix = NULL;
            const tg_status s = tg_st_entry_to_index(e, &ix); /* I64 may be out of range */
            FUZZ_REQUIRE((s == TG_OK) == (ix != NULL));
            tg_index_free(ix);
        } else {
            tg_tensor *t = NULL;
            FUZZ_REQUIRE(tg_st_entry_to_tensor(e, &t) == TG_ERR_FORMAT && !t);
        }
    }
    FUZZ_REQUIRE(8 + n + covered == size);
    for (size_t i = 0; i < st->meta_count; i++)
        FUZZ_REQUIRE(tg_safetensors_meta(st, st->meta_keys[i]) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size) {
    tg_safetensors *st = NULL;
    const tg_status s = tg_safetensors_parse(bytes, size, &st);
    if (s == TG_OK) {
        fuzz_check_file(st, size);
        tg_safetensors_free(st);
    } else {
        FUZZ_REQUIRE(st == NULL && tg_error_message()[0] != '\0');
    }
    return 0;
}
