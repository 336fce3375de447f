/* tapegrad/safetensors.h — the safetensors file format, read strictly and written safely.
 * Layer: tensor.
 *
 * Layout: 8 bytes little-endian header length N, N bytes of JSON header, then the raw
 * little-endian data of every tensor. This layer deals in raw typed buffers; turning
 * entries into tg_tensor (with conversion to the build's precision) and whole state
 * dicts are built on top of it. Every function that reads returns a tg_status and
 * never crashes on a malformed file; tg_error_message() says what was wrong. */
#ifndef TAPEGRAD_SAFETENSORS_H
#define TAPEGRAD_SAFETENSORS_H

#include "tapegrad/tensor.h"

typedef enum tg_dtype {
    TG_DTYPE_BOOL, TG_DTYPE_U8, TG_DTYPE_I8, TG_DTYPE_I16, TG_DTYPE_U16, TG_DTYPE_F16,
    TG_DTYPE_BF16, TG_DTYPE_I32, TG_DTYPE_U32, TG_DTYPE_F32, TG_DTYPE_I64, TG_DTYPE_U64,
    TG_DTYPE_F64
} tg_dtype;

const char *tg_dtype_name(tg_dtype dtype); /* "F32" */
size_t tg_dtype_size(tg_dtype dtype);      /* bytes per element */

/* One tensor of a file: name, dtype, shape and its raw bytes (little-endian, row-major). */
typedef struct tg_st_entry {
    char *name;
    tg_dtype dtype;
    int ndim;                     /* 0 for a scalar */
    int64_t shape[TG_MAX_DIMS];
    int64_t numel;
    size_t nbytes;
    const void *data;             /* points into the file's buffer (reading) or the caller's (writing) */
} tg_st_entry;

/* A parsed file: entries in file order, plus the optional __metadata__ string map. */
typedef struct tg_safetensors {
    tg_st_entry *entries;
    size_t count;
    char **meta_keys;
    char **meta_values;
    size_t meta_count;
    void *buffer;                 /* owned copy of the file */
    size_t buffer_size;
} tg_safetensors;

/* Reads and validates a whole file. On success *out is set (free with tg_safetensors_free). */
tg_status tg_safetensors_read(const char *path, tg_safetensors **out);
/* The same from bytes in memory (the bytes are copied). Used by the fuzzer. */
tg_status tg_safetensors_parse(const void *bytes, size_t size, tg_safetensors **out);
void tg_safetensors_free(tg_safetensors *st);
/* The entry with this name, or NULL. */
const tg_st_entry *tg_safetensors_find(const tg_safetensors *st, const char *name);
/* The metadata value for key, or NULL. */
const char *tg_safetensors_meta(const tg_safetensors *st, const char *key);

/* Writes `count` entries (and optional metadata; meta_count may be 0) to path, in the
 * reference writer's order and padding. Safe: it writes path.tmp.<pid> in the same
 * folder, fsyncs it, renames it over path and fsyncs the folder, so a crash mid-save
 * leaves the previous file whole. */
tg_status tg_safetensors_write(const char *path, const tg_st_entry *entries, size_t count,
                               const char *const *meta_keys, const char *const *meta_values,
                               size_t meta_count);

/* Converting entries to tensors of the build's precision. F32 and F64 are accepted
 * (converted), anything else is TG_ERR_FORMAT. The result is long-lived (tg_tensor_free). */
tg_status tg_st_entry_to_tensor(const tg_st_entry *e, tg_tensor **out);
/* I32 and I64 entries as index tensors (I64 values must fit in int32). */
tg_status tg_st_entry_to_index(const tg_st_entry *e, tg_index **out);

#endif
