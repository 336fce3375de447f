/* tapegrad/safetensors.h — the safetensors file format, read strictly and written safely.
 * Layer: tensor.
 *
 * Layout: 8 bytes little-endian header length N, N bytes of JSON header, then the raw
 * little-endian data of every tensor. This layer deals in raw typed buffers; turning
 * entries into tg_tensor (with conversion to the build's precision) and whole state
 * dicts are built on top of it. Every function that reads returns a tg_status and
 * never crashes on a malformed file; tg_error_message() says what was wrong. Files are
 * opened by the rules of tapegrad/file.h (regular files only, never blocking, size limit). */
#ifndef TAPEGRAD_SAFETENSORS_H
#define TAPEGRAD_SAFETENSORS_H

#include "tapegrad/file.h"
#include "tapegrad/tensor.h"

typedef enum tg_dtype {
    TG_DTYPE_BOOL,
    TG_DTYPE_U8,
    TG_DTYPE_I8,
    TG_DTYPE_I16,
    TG_DTYPE_U16,
    TG_DTYPE_F16,
    TG_DTYPE_BF16,
    TG_DTYPE_I32,
    TG_DTYPE_U32,
    TG_DTYPE_F32,
    TG_DTYPE_I64,
    TG_DTYPE_U64,
    TG_DTYPE_F64
} tg_dtype;

const char *tg_dtype_name(tg_dtype dtype); /* "F32" */
size_t tg_dtype_size(tg_dtype dtype);      /* bytes per element */

/* One tensor of a file: name, dtype, shape and its raw bytes (little-endian, row-major). */
typedef struct tg_st_entry {
    char *name;
    tg_dtype dtype;
    int ndim; /* 0 for a scalar */
    int64_t shape[TG_MAX_DIMS];
    int64_t numel;
    size_t nbytes;
    const void *data; /* points into the file's buffer (reading) or the caller's (writing) */
} tg_st_entry;

/* A parsed file: entries in file order, plus the optional __metadata__ string map. */
typedef struct tg_safetensors {
    tg_st_entry *entries;
    size_t count;
    char **meta_keys;
    char **meta_values;
    size_t meta_count;
    void *buffer; /* owned copy of the file */
    size_t buffer_size;
} tg_safetensors;

/* Reads and validates a whole file. On success *out is set (free with tg_safetensors_free).
 * Files over TG_FILE_MAX_BYTES_DEFAULT are refused (see tg_safetensors_read_with). */
tg_status tg_safetensors_read(const char *path, tg_safetensors **out);

typedef struct tg_safetensors_read_options {
    uint64_t max_bytes; /* larger files are refused; 0 means TG_FILE_MAX_BYTES_DEFAULT */
    /* Read only the length and the header, and check the layout against the file's size,
     * whatever that size (the header's own limit is 100 MB): the entries then have data
     * NULL. For looking at a file's names, shapes and metadata without loading it. */
    bool header_only;
} tg_safetensors_read_options;
/* tg_safetensors_read with options (NULL: the defaults). */
tg_status tg_safetensors_read_with(const char *path, const tg_safetensors_read_options *opts,
                                   tg_safetensors **out);
/* The same from bytes in memory (the bytes are copied). Used by the fuzzer. */
tg_status tg_safetensors_parse(const void *bytes, size_t size, tg_safetensors **out);
void tg_safetensors_free(tg_safetensors *st);
/* The entry with this name, or NULL. */
const tg_st_entry *tg_safetensors_find(const tg_safetensors *st, const char *name);
/* The metadata value for key, or NULL. */
const char *tg_safetensors_meta(const tg_safetensors *st, const char *key);

/* Writes `count` entries (and optional metadata; meta_count may be 0) to path, in the
 * reference writer's order and padding, replacing whatever file is there (checkpoints are
 * saved through tg_params_save, which refuses to replace a file that is not one). Safe: the
 * data goes to an unnamed temporary file in the same folder (O_TMPFILE; where there is none,
 * to "<path>.tmp.<pid>"), which is fsynced, named "<path>.tmp.<pid>", renamed over path, and
 * the folder is fsynced, so a crash mid-save leaves the previous file whole. Before saving it
 * removes the folder's stale temporary files (tg_safetensors_remove_stale_temps). */
tg_status tg_safetensors_write(const char *path, const tg_st_entry *entries, size_t count,
                               const char *const *meta_keys, const char *const *meta_values,
                               size_t meta_count);

/* Removes from the folder that holds path the files "<name>.tmp.<pid>" that saves of
 * processes no longer running left there: regular files of this user whose first bytes are
 * those of a safetensors file (anything else with such a name is not ours and is left
 * alone). Returns how many were removed; failures are ignored. */
int tg_safetensors_remove_stale_temps(const char *path);

/* Converting entries to tensors of the build's precision. F32 and F64 are accepted
 * (converted), anything else is TG_ERR_FORMAT. The result is long-lived (tg_tensor_free). */
tg_status tg_st_entry_to_tensor(const tg_st_entry *e, tg_tensor **out);
/* Integer entries (I8 to I64, U8 to U64) and BOOL ones as index tensors: the values must fit
 * in int32; BOOL bytes must be 0 or 1 (they load as 0/1). TG_ERR_FORMAT otherwise. */
tg_status tg_st_entry_to_index(const tg_st_entry *e, tg_index **out);
/* The same entries as a 0/1 mask of the build's precision: 1 where the value is nonzero
 * (PyTorch's mask.bool().float()), for tg_masked_fill, tg_where and the attention masks.
 * Long-lived (tg_tensor_free). */
tg_status tg_st_entry_to_mask(const tg_st_entry *e, tg_tensor **out);

#endif
