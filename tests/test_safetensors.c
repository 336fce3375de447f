/* The safetensors layer: round trips, the reference writer's bytes, one test per kind of
 * malformed file, the converters, and safe saving. Malformed files are built here in
 * memory (tg_safetensors_parse) or written into a private temporary folder. */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tapegrad/safetensors.h>

/* ---------------------------------------------------------------- helpers */

static char tmp_root[] = "/tmp/tg_test_safetensors.XXXXXX";

static int suite_setup(void **state) {
    (void)state;
    return mkdtemp(tmp_root) ? 0 : -1;
}

/* Removes the folder and what the tests left in it (one level of subfolders). */
static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    const struct dirent *de;
    char path[512];
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        struct stat sb;
        if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            chmod(path, 0700);
            remove_tree(path);
        } else {
            unlink(path);
        }
    }
    closedir(d);
    rmdir(dir);
}

static int suite_teardown(void **state) {
    (void)state;
    remove_tree(tmp_root);
    return 0;
}

/* tmp_root/name in buf. */
static const char *tmp_path(char *buf, size_t len, const char *name) {
    snprintf(buf, len, "%s/%s", tmp_root, name);
    return buf;
}

static void write_bytes(const char *path, const void *bytes, size_t size) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
}

/* The whole file in a malloc'd buffer (caller frees). */
static unsigned char *read_bytes(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    const long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    unsigned char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return buf;
}

/* Counts the files in dir whose name contains ".tmp." (left-over temporary files). */
static int count_temp_files(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    const struct dirent *de;
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

/* A file from literal header text: 8-byte little-endian length, the text, then data_len
 * bytes 0, 1, 2, ... (header_len lies about the length; UINT64_MAX means the true length). */
static unsigned char *make_file(const char *header, uint64_t header_len, size_t data_len,
                                size_t *size) {
    const size_t text_len = strlen(header);
    if (header_len == UINT64_MAX) header_len = text_len;
    *size = 8 + text_len + data_len;
    unsigned char *buf = malloc(*size);
    assert_non_null(buf);
    memcpy(buf, &header_len, 8); /* little-endian host, as the library assumes */
    memcpy(buf + 8, header, text_len);
    for (size_t i = 0; i < data_len; i++) buf[8 + text_len + i] = (unsigned char)i;
    return buf;
}

/* Parses the bytes, requires failure with `code` and a message holding every fragment. */
static void expect_bad_bytes(const unsigned char *bytes, size_t size, tg_status code,
                             const char *const *fragments) {
    tg_safetensors *st = (tg_safetensors *)(uintptr_t)1; /* must be reset to NULL */
    const tg_status s = tg_safetensors_parse(bytes, size, &st);
    if (s == TG_OK) tg_safetensors_free(st);
    assert_int_equal(s, code);
    assert_null(st);
    for (const char *const *f = fragments; *f; f++)
        if (!strstr(tg_error_message(), *f))
            fail_msg("message \"%s\" lacks \"%s\"", tg_error_message(), *f);
}

#define EXPECT_BAD_BYTES(bytes, size, code, ...)                                                   \
    expect_bad_bytes(bytes, size, code, (const char *const[]){__VA_ARGS__, NULL})

/* A header (true length) plus data_len bytes must be rejected as TG_ERR_FORMAT. */
#define EXPECT_BAD_HEADER(header, data_len, ...)                                                   \
    do {                                                                                           \
        size_t size_;                                                                              \
        unsigned char *bytes_ = make_file(header, UINT64_MAX, data_len, &size_);                   \
        EXPECT_BAD_BYTES(bytes_, size_, TG_ERR_FORMAT, __VA_ARGS__);                               \
        free(bytes_);                                                                              \
    } while (0)

static tg_safetensors *parse_ok(const unsigned char *bytes, size_t size) {
    tg_safetensors *st = NULL;
    const tg_status s = tg_safetensors_parse(bytes, size, &st);
    if (s != TG_OK) fail_msg("parse failed: %s", tg_error_message());
    assert_non_null(st);
    return st;
}

static tg_st_entry entry(const char *name, tg_dtype dtype, int ndim, const int64_t *shape,
                         const void *data) {
    tg_st_entry e = {.name = (char *)name, .dtype = dtype, .ndim = ndim, .data = data};
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        e.shape[i] = shape[i];
        numel *= shape[i];
    }
    e.numel = numel;
    e.nbytes = (size_t)numel * tg_dtype_size(dtype);
    return e;
}

/* ---------------------------------------------------------------- round trips */

static void test_round_trip(void **state) {
    (void)state;
    const float w32[6] = {1.5f, -2.25f, 3.0f, 0.1f, -0.0f, 1e30f};
    const double w64[3] = {0.1, -1e-300, 12345.678};
    const int32_t targets[4] = {0, -1, 7, INT32_MAX};
    const int64_t ids[4] = {3, -3, INT32_MIN, 42};
    const float scalar = 7.5f;
    const uint8_t mask[3] = {1, 0, 1};
    const tg_st_entry entries[] = {
        entry("w32", TG_DTYPE_F32, 2, (const int64_t[]){2, 3}, w32),
        entry("mask", TG_DTYPE_BOOL, 1, (const int64_t[]){3}, mask),
        entry("targets", TG_DTYPE_I32, 1, (const int64_t[]){4}, targets),
        entry("scalar", TG_DTYPE_F32, 0, NULL, &scalar),
        entry("w64", TG_DTYPE_F64, 1, (const int64_t[]){3}, w64),
        entry("empty", TG_DTYPE_F32, 2, (const int64_t[]){0, 5}, NULL),
        entry("ids", TG_DTYPE_I64, 2, (const int64_t[]){2, 2}, ids),
    };
    const size_t count = sizeof entries / sizeof entries[0];
    const char *keys[] = {"format", "step"}, *values[] = {"pt", "12"};
    char path[512];
    tmp_path(path, sizeof path, "round_trip.safetensors");
    assert_int_equal(tg_safetensors_write(path, entries, count, keys, values, 2), TG_OK);

    tg_safetensors *st = NULL;
    assert_int_equal(tg_safetensors_read(path, &st), TG_OK);
    assert_int_equal(st->count, count);
    /* The reference writer's order: dtype alignment descending, then name. */
    const char *order[] = {"ids", "w64", "empty", "scalar", "w32", "targets", "mask"};
    for (size_t i = 0; i < count; i++) assert_string_equal(st->entries[i].name, order[i]);

    uint64_t n;
    memcpy(&n, st->buffer, 8);
    assert_int_equal(n % 8, 0); /* padded header: every tensor aligned to its item size */
    for (size_t i = 0; i < count; i++) {
        const tg_st_entry *want = &entries[i];
        const tg_st_entry *got = tg_safetensors_find(st, want->name);
        assert_non_null(got);
        assert_int_equal(got->dtype, want->dtype);
        assert_int_equal(got->ndim, want->ndim);
        assert_memory_equal(got->shape, want->shape, (size_t)want->ndim * sizeof(int64_t));
        assert_int_equal(got->numel, want->numel);
        assert_int_equal(got->nbytes, want->nbytes);
        if (want->nbytes) assert_memory_equal(got->data, want->data, want->nbytes);
        const size_t offset = (size_t)((const char *)got->data - (const char *)st->buffer);
        assert_int_equal(offset % tg_dtype_size(got->dtype), 0);
    }
    assert_int_equal(st->meta_count, 2);
    assert_string_equal(tg_safetensors_meta(st, "format"), "pt");
    assert_string_equal(tg_safetensors_meta(st, "step"), "12");
    assert_null(tg_safetensors_meta(st, "missing"));
    assert_null(tg_safetensors_find(st, "missing"));

    /* Scalars and empty tensors keep their shapes through the converters. */
    tg_tensor *t = NULL;
    assert_int_equal(tg_st_entry_to_tensor(tg_safetensors_find(st, "scalar"), &t), TG_OK);
    assert_int_equal(t->ndim, 0);
    assert_int_equal(t->numel, 1);
    assert_true(t->data[0] == (tg_real)7.5);
    tg_tensor_free(t);
    assert_int_equal(tg_st_entry_to_tensor(tg_safetensors_find(st, "empty"), &t), TG_OK);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->numel, 0);
    assert_int_equal(t->shape[1], 5);
    tg_tensor_free(t);
    tg_safetensors_free(st);
}

static void test_convert_floats_and_indices(void **state) {
    (void)state;
    const float w32[4] = {1.5f, -2.25f, 0.1f, 3.0f};
    const double w64[3] = {0.1, -1e-3, 12345.678};
    const int32_t i32[3] = {0, -5, INT32_MAX};
    const int64_t i64[3] = {INT32_MIN, 9, INT32_MAX};
    const tg_st_entry entries[] = {
        entry("a", TG_DTYPE_F32, 2, (const int64_t[]){2, 2}, w32),
        entry("b", TG_DTYPE_F64, 1, (const int64_t[]){3}, w64),
        entry("c", TG_DTYPE_I32, 1, (const int64_t[]){3}, i32),
        entry("d", TG_DTYPE_I64, 1, (const int64_t[]){3}, i64),
    };
    char path[512];
    tmp_path(path, sizeof path, "convert.safetensors");
    assert_int_equal(tg_safetensors_write(path, entries, 4, NULL, NULL, 0), TG_OK);
    tg_safetensors *st = NULL;
    assert_int_equal(tg_safetensors_read(path, &st), TG_OK);
    assert_int_equal(st->meta_count, 0);

    tg_tensor *a = NULL, *b = NULL;
    assert_int_equal(tg_st_entry_to_tensor(tg_safetensors_find(st, "a"), &a), TG_OK);
    assert_int_equal(tg_st_entry_to_tensor(tg_safetensors_find(st, "b"), &b), TG_OK);
    for (int i = 0; i < 4; i++) assert_true(a->data[i] == (tg_real)w32[i]);
    for (int i = 0; i < 3; i++) assert_true(b->data[i] == (tg_real)w64[i]);
    assert_string_equal(a->name, "a");
    tg_tensor_free(a);
    tg_tensor_free(b);

    tg_index *c = NULL, *d = NULL;
    assert_int_equal(tg_st_entry_to_index(tg_safetensors_find(st, "c"), &c), TG_OK);
    assert_int_equal(tg_st_entry_to_index(tg_safetensors_find(st, "d"), &d), TG_OK);
    assert_memory_equal(c->data, i32, sizeof i32);
    for (int i = 0; i < 3; i++) assert_int_equal(d->data[i], i64[i]);
    tg_index_free(c);
    tg_index_free(d);

    /* The wrong kind of dtype for the converter. */
    tg_index *ix = NULL;
    assert_int_equal(tg_st_entry_to_index(tg_safetensors_find(st, "a"), &ix), TG_ERR_FORMAT);
    assert_null(ix);
    assert_non_null(strstr(tg_error_message(), "'a' has dtype F32"));
    tg_tensor *t = NULL;
    assert_int_equal(tg_st_entry_to_tensor(tg_safetensors_find(st, "c"), &t), TG_ERR_FORMAT);
    assert_null(t);
    assert_non_null(strstr(tg_error_message(), "'c' has dtype I32"));
    tg_safetensors_free(st);
}

static void test_convert_i64_out_of_range(void **state) {
    (void)state;
    const int64_t values[3] = {1, 2, (int64_t)INT32_MAX + 1};
    const tg_st_entry e = entry("ids", TG_DTYPE_I64, 1, (const int64_t[]){3}, values);
    tg_index *ix = NULL;
    assert_int_equal(tg_st_entry_to_index(&e, &ix), TG_ERR_FORMAT);
    assert_null(ix);
    assert_non_null(strstr(tg_error_message(), "'ids': element 2 = 2147483648"));
    assert_non_null(strstr(tg_error_message(), "int32"));
}

/* Masks and small integers as files hold them (PyTorch's bool masks are BOOL, older code's
 * byte masks U8): every integer dtype and BOOL loads as an index tensor and as a 0/1 mask. */
static void test_convert_bool_and_small_integers(void **state) {
    (void)state;
    const uint8_t mask[6] = {1, 0, 1, 0, 0, 1};
    const uint8_t u8[3] = {0, 3, 255};
    const int8_t i8[3] = {-1, 0, 5};
    const int16_t i16[2] = {-300, 7};
    const uint16_t u16[2] = {65535, 0};
    const uint32_t u32[2] = {2, 4000000000u};
    const uint64_t u64[2] = {9, UINT64_MAX};
    const tg_st_entry entries[] = {
        entry("mask", TG_DTYPE_BOOL, 2, (const int64_t[]){2, 3}, mask),
        entry("u8", TG_DTYPE_U8, 1, (const int64_t[]){3}, u8),
        entry("i8", TG_DTYPE_I8, 1, (const int64_t[]){3}, i8),
        entry("i16", TG_DTYPE_I16, 1, (const int64_t[]){2}, i16),
        entry("u16", TG_DTYPE_U16, 1, (const int64_t[]){2}, u16),
        entry("u32", TG_DTYPE_U32, 1, (const int64_t[]){2}, u32),
        entry("u64", TG_DTYPE_U64, 1, (const int64_t[]){2}, u64),
        entry("f", TG_DTYPE_F32, 1, (const int64_t[]){1}, (const float[]){1.0f}),
    };
    char path[512];
    tmp_path(path, sizeof path, "masks.safetensors");
    assert_int_equal(tg_safetensors_write(path, entries, 8, NULL, NULL, 0), TG_OK);
    tg_safetensors *st = NULL;
    assert_int_equal(tg_safetensors_read(path, &st), TG_OK);

    tg_index *ix = NULL;
    assert_int_equal(tg_st_entry_to_index(tg_safetensors_find(st, "mask"), &ix), TG_OK);
    assert_int_equal(ix->ndim, 2);
    assert_int_equal(ix->shape[1], 3);
    for (int i = 0; i < 6; i++) assert_int_equal(ix->data[i], mask[i]);
    tg_index_free(ix);
    const struct {
        const char *name;
        int32_t want[3];
        int n;
    } ints[] = {{"u8", {0, 3, 255}, 3},
                {"i8", {-1, 0, 5}, 3},
                {"i16", {-300, 7}, 2},
                {"u16", {65535, 0}, 2}};
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
        assert_int_equal(tg_st_entry_to_index(tg_safetensors_find(st, ints[k].name), &ix), TG_OK);
        assert_int_equal(ix->numel, ints[k].n);
        for (int i = 0; i < ints[k].n; i++) assert_int_equal(ix->data[i], ints[k].want[i]);
        tg_index_free(ix);
    }
    /* beyond int32: refused as an index, with the element and its value */
    assert_int_equal(tg_st_entry_to_index(tg_safetensors_find(st, "u32"), &ix), TG_ERR_FORMAT);
    assert_null(ix);
    assert_non_null(strstr(tg_error_message(), "'u32': element 1 = 4000000000"));
    assert_int_equal(tg_st_entry_to_index(tg_safetensors_find(st, "u64"), &ix), TG_ERR_FORMAT);
    assert_non_null(strstr(tg_error_message(), "'u64': element 1 = 18446744073709551615"));

    /* as 0/1 masks of the build's precision: nonzero is 1, whatever the value */
    tg_tensor *m = NULL;
    assert_int_equal(tg_st_entry_to_mask(tg_safetensors_find(st, "mask"), &m), TG_OK);
    assert_string_equal(m->name, "mask");
    for (int i = 0; i < 6; i++) assert_true(m->data[i] == (tg_real)mask[i]);
    tg_tensor_free(m);
    const struct {
        const char *name;
        tg_real want[3];
        int n;
    } masks[] = {
        {"u8", {0, 1, 1}, 3}, {"i8", {1, 0, 1}, 3}, {"u32", {1, 1}, 2}, {"u64", {1, 1}, 2}};
    for (size_t k = 0; k < sizeof masks / sizeof masks[0]; k++) {
        assert_int_equal(tg_st_entry_to_mask(tg_safetensors_find(st, masks[k].name), &m), TG_OK);
        assert_int_equal(m->numel, masks[k].n);
        for (int i = 0; i < masks[k].n; i++) assert_true(m->data[i] == masks[k].want[i]);
        tg_tensor_free(m);
    }
    assert_int_equal(tg_st_entry_to_mask(tg_safetensors_find(st, "f"), &m), TG_ERR_FORMAT);
    assert_null(m);
    assert_non_null(strstr(tg_error_message(), "'f' has dtype F32; a mask needs an integer"));
    tg_safetensors_free(st);

    /* a BOOL byte other than 0 and 1 is not a bool: both converters refuse it */
    const uint8_t bad[3] = {0, 1, 2};
    const tg_st_entry e = entry("m", TG_DTYPE_BOOL, 1, (const int64_t[]){3}, bad);
    assert_int_equal(tg_st_entry_to_index(&e, &ix), TG_ERR_FORMAT);
    assert_non_null(strstr(tg_error_message(), "BOOL tensor 'm': element 2 is byte 2"));
    assert_int_equal(tg_st_entry_to_mask(&e, &m), TG_ERR_FORMAT);
    assert_non_null(strstr(tg_error_message(), "BOOL tensor 'm': element 2 is byte 2"));
    assert_int_equal(tg_st_entry_to_mask(&e, NULL), TG_ERR_ARGUMENT);
}

/* A header of odd length leaves the data unaligned: the converters must still read it
 * right (and without misaligned loads, which UBSan would report). */
static void test_convert_unaligned(void **state) {
    (void)state;
    const char *header = "{\"x\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]},"
                         "\"y\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[16,24]},"
                         "\"z\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[24,28]}}";
    const size_t hl = strlen(header);
    assert_int_not_equal(hl % 8, 0);
    const double x[2] = {0.25, -8.5};
    const int64_t y = -77;
    const float z = 2.5f;
    const size_t size = 8 + hl + 28;
    unsigned char *bytes = malloc(size);
    assert_non_null(bytes);
    const uint64_t n = hl;
    memcpy(bytes, &n, 8);
    memcpy(bytes + 8, header, hl);
    memcpy(bytes + 8 + hl, x, 16);
    memcpy(bytes + 8 + hl + 16, &y, 8);
    memcpy(bytes + 8 + hl + 24, &z, 4);
    tg_safetensors *st = parse_ok(bytes, size);
    free(bytes);
    tg_tensor *t = NULL;
    assert_int_equal(tg_st_entry_to_tensor(tg_safetensors_find(st, "x"), &t), TG_OK);
    assert_true(t->data[0] == (tg_real)0.25 && t->data[1] == (tg_real)-8.5);
    tg_tensor_free(t);
    assert_int_equal(tg_st_entry_to_tensor(tg_safetensors_find(st, "z"), &t), TG_OK);
    assert_true(t->data[0] == (tg_real)2.5);
    tg_tensor_free(t);
    tg_index *ix = NULL;
    assert_int_equal(tg_st_entry_to_index(tg_safetensors_find(st, "y"), &ix), TG_OK);
    assert_int_equal(ix->data[0], -77);
    tg_index_free(ix);
    tg_safetensors_free(st);
}

/* ---------------------------------------------------------------- reference vectors */

/* The four vectors of the safetensors reference test-suite, byte for byte: F32 data is
 * 0, 1, 2, 3, 4, 5. */
static const unsigned char vec_attn_f32[96] = {
    64,  0,   0,   0,   0,   0,  0,  0,  123, 34, 97,  116, 116, 110, 46,  48,  34,  58,  123, 34,
    100, 116, 121, 112, 101, 34, 58, 34, 70,  51, 50,  34,  44,  34,  115, 104, 97,  112, 101, 34,
    58,  91,  49,  44,  50,  44, 51, 93, 44,  34, 100, 97,  116, 97,  95,  111, 102, 102, 115, 101,
    116, 115, 34,  58,  91,  48, 44, 50, 52,  93, 125, 125, 0,   0,   0,   0,   0,   0,   128, 63,
    0,   0,   0,   64,  0,   0,  64, 64, 0,   0,  128, 64,  0,   0,   160, 64};
static const unsigned char vec_empty[16] = {8,   0,   0,  0,  0,  0,  0,  0,
                                            123, 125, 32, 32, 32, 32, 32, 32};
static const unsigned char vec_empty_meta[48] = {
    40,  0,   0,   0,  0,  0,  0,   0,   123, 34,  95,  95,  109, 101, 116, 97,
    100, 97,  116, 97, 95, 95, 34,  58,  123, 34,  102, 114, 97,  109, 101, 119,
    111, 114, 107, 34, 58, 34, 112, 116, 34,  125, 125, 32,  32,  32,  32,  32};
static const unsigned char vec_attn0_4d[104] = {
    72,  0,   0,   0,   0,   0,   0,   0,   123, 34, 97, 116, 116, 110, 48,  34,  58,  123,
    34,  100, 116, 121, 112, 101, 34,  58,  34,  70, 51, 50,  34,  44,  34,  115, 104, 97,
    112, 101, 34,  58,  91,  49,  44,  49,  44,  50, 44, 51,  93,  44,  34,  100, 97,  116,
    97,  95,  111, 102, 102, 115, 101, 116, 115, 34, 58, 91,  48,  44,  50,  52,  93,  125,
    125, 32,  32,  32,  32,  32,  32,  32,  0,   0,  0,  0,   0,   0,   128, 63,  0,   0,
    0,   64,  0,   0,   64,  64,  0,   0,   128, 64, 0,  0,   160, 64};

/* Writes entries to a file and compares its bytes with `want`; then the reader must accept
 * `want` and give back the entries. */
static void check_vector(const char *file, const tg_st_entry *entries, size_t count,
                         const char *const *keys, const char *const *values, size_t meta_count,
                         const unsigned char *want, size_t want_size) {
    char path[512];
    tmp_path(path, sizeof path, file);
    assert_int_equal(tg_safetensors_write(path, entries, count, keys, values, meta_count), TG_OK);
    size_t size;
    unsigned char *got = read_bytes(path, &size);
    assert_int_equal(size, want_size);
    assert_memory_equal(got, want, want_size);
    free(got);
    tg_safetensors *st = parse_ok(want, want_size);
    assert_int_equal(st->count, count);
    for (size_t i = 0; i < count; i++) {
        const tg_st_entry *e = tg_safetensors_find(st, entries[i].name);
        assert_non_null(e);
        assert_memory_equal(e->data, entries[i].data, entries[i].nbytes);
    }
    assert_int_equal(st->meta_count, meta_count);
    tg_safetensors_free(st);
}

static const float vec_data[6] = {0, 1, 2, 3, 4, 5};

static void test_vector_single_f32(void **state) {
    (void)state;
    const tg_st_entry e = entry("attn.0", TG_DTYPE_F32, 3, (const int64_t[]){1, 2, 3}, vec_data);
    check_vector("vec1.safetensors", &e, 1, NULL, NULL, 0, vec_attn_f32, sizeof vec_attn_f32);
}

static void test_vector_empty(void **state) {
    (void)state;
    check_vector("vec2.safetensors", NULL, 0, NULL, NULL, 0, vec_empty, sizeof vec_empty);
}

static void test_vector_empty_metadata(void **state) {
    (void)state;
    const char *keys[] = {"framework"}, *values[] = {"pt"};
    check_vector("vec3.safetensors", NULL, 0, keys, values, 1, vec_empty_meta,
                 sizeof vec_empty_meta);
}

static void test_vector_4d_padded(void **state) {
    (void)state;
    const tg_st_entry e = entry("attn0", TG_DTYPE_F32, 4, (const int64_t[]){1, 1, 2, 3}, vec_data);
    check_vector("vec4.safetensors", &e, 1, NULL, NULL, 0, vec_attn0_4d, sizeof vec_attn0_4d);
}

/* ---------------------------------------------------------------- malformed files */

static void test_bad_file_too_short(void **state) {
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "short.safetensors");
    write_bytes(path, "\x08\x00\x00\x00", 4);
    tg_safetensors *st = NULL;
    assert_int_equal(tg_safetensors_read(path, &st), TG_ERR_FORMAT);
    assert_null(st);
    /* The message names the file. */
    assert_non_null(strstr(tg_error_message(), "short.safetensors"));
    assert_non_null(strstr(tg_error_message(), "4 bytes long, too short"));
    EXPECT_BAD_BYTES((const unsigned char *)"", 0, TG_ERR_FORMAT, "0 bytes long");
}

static void test_bad_truncated_data(void **state) {
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "truncated.safetensors");
    write_bytes(path, vec_attn_f32, sizeof vec_attn_f32 - 4); /* the last float is cut */
    tg_safetensors *st = NULL;
    assert_int_equal(tg_safetensors_read(path, &st), TG_ERR_FORMAT);
    assert_null(st);
    assert_non_null(strstr(tg_error_message(), "truncated.safetensors"));
    assert_non_null(strstr(tg_error_message(), "'attn.0': data_offsets [0, 24] go past the end"));
}

static void test_bad_header_length_beyond_file(void **state) {
    (void)state;
    size_t size;
    unsigned char *bytes = make_file("{}      ", 9, 0, &size);
    EXPECT_BAD_BYTES(bytes, size, TG_ERR_FORMAT, "header length 9 goes beyond the end",
                     "16-byte file");
    free(bytes);
    /* A length near 2^64 must not wrap around when 8 is added. */
    bytes = make_file("{}      ", UINT64_MAX - 3, 0, &size);
    EXPECT_BAD_BYTES(bytes, size, TG_ERR_FORMAT, "header length 18446744073709551612");
    free(bytes);
}

static void test_bad_header_too_large(void **state) {
    (void)state;
    size_t size;
    unsigned char *bytes = make_file("{}      ", 100000001, 0, &size);
    EXPECT_BAD_BYTES(bytes, size, TG_ERR_FORMAT, "larger than the limit of 100000000");
    free(bytes);
}

static void test_bad_invalid_json(void **state) {
    (void)state;
    EXPECT_BAD_HEADER("{\"a\":{\"dtype\":\"F32\",", 0, "invalid JSON header");
}

static void test_bad_not_utf8(void **state) {
    (void)state;
    EXPECT_BAD_HEADER("{\"\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                      "not valid UTF-8", "0xff");
}

static void test_bad_nul_in_name(void **state) {
    (void)state;
    EXPECT_BAD_HEADER("{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                      "\\u0000 escape");
}

static void test_bad_root_not_object(void **state) {
    (void)state;
    EXPECT_BAD_HEADER("[]      ", 0, "must begin with '{'", "found byte 0x5b");
    EXPECT_BAD_HEADER("", 0, "must begin with '{'", "an empty header");
}

static void test_bad_leading_space(void **state) {
    (void)state;
    EXPECT_BAD_HEADER(" {\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                      "must begin with '{'", "a space");
}

static void test_bad_padding_not_spaces(void **state) {
    (void)state;
    EXPECT_BAD_HEADER("{}\n     ", 0, "byte 0x0a at offset 2", "padded with spaces");
    EXPECT_BAD_HEADER("{}  {}  ", 0, "byte 0x7b at offset 4");
}

static void test_bad_unknown_dtype(void **state) {
    (void)state;
    EXPECT_BAD_HEADER("{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                      "tensor 'a'", "unknown dtype 'f32'");
}

static void test_bad_dtype_not_string(void **state) {
    (void)state;
    EXPECT_BAD_HEADER("{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                      "dtype is 4, not a string");
}

static void test_bad_extra_key(void **state) {
    (void)state;
    EXPECT_BAD_HEADER("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
                      "tensor 'a' must have exactly the keys", "4 keys");
}

static void test_bad_missing_key(void **state) {
    (void)state;
    EXPECT_BAD_HEADER("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4,
                      "must have exactly the keys dtype, shape and data_offsets");
}

static void test_bad_entry_not_object(void **state) {
    (void)state;
    EXPECT_BAD_HEADER("{\"a\":[1,2]}", 0, "tensor 'a' is an array, not an object");
}

static void test_bad_size_mismatch(void **state) {
    (void)state;
    EXPECT_BAD_HEADER("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20,
                      "tensor 'a'", "(2, 3) of F32 needs 24 bytes", "span 20");
}

static void test_bad_overlap(void **state) {
    (void)state;
    EXPECT_BAD_HEADER("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                      8, "'b' (bytes [4, 8)) overlaps tensor 'a'");
}

static void test_bad_hole(void **state) {
    (void)state;
    EXPECT_BAD_HEADER("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                      12, "hole of 4 unused bytes before tensor 'b'");
}

static void test_bad_offset_out_of_range(void **state) {
    (void)state;
    EXPECT_BAD_HEADER("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                      6, "'b': data_offsets [4, 8] go past the end of the 6-byte data buffer");
}

static void test_bad_offsets_reversed(void **state) {
    (void)state;
    EXPECT_BAD_HEADER("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,0]}}", 4,
                      "'a': data_offsets [4, 0] end before they begin");
}

static void test_bad_offsets_count(void **state) {
    (void)state;
    EXPECT_BAD_HEADER("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4,4]}}", 4,
                      "data_offsets has 3 entries, not 2");
}

static void test_bad_negative_offset(void **state) {
    (void)state;
    EXPECT_BAD_HEADER("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
                      "'a': data_offsets[0] = -4 is negative");
}

static void test_bad_huge_offset(void **state) {
    (void)state;
    /* Not exact as a double: must be refused, not rounded. */
    EXPECT_BAD_HEADER("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],"
                      "\"data_offsets\":[9007199254740993,9007199254740993]}}",
                      0, "data_offsets[0]", "too large");
}

static void test_bad_duplicate_names(void **state) {
    (void)state;
    EXPECT_BAD_HEADER("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                      8, "duplicate name 'a'");
}

static void test_bad_dims_overflow(void **state) {
    (void)state;
    EXPECT_BAD_HEADER("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                      "\"data_offsets\":[0,0]}}",
                      0, "tensor 'a'", "overflows 64 bits");
    /* numel fits, numel * itemsize does not. */
    EXPECT_BAD_HEADER("{\"a\":{\"dtype\":\"F64\",\"shape\":[2147483648,2147483648],"
                      "\"data_offsets\":[0,0]}}",
                      0, "times the F64 item size overflows");
}

static void test_bad_trailing_bytes(void **state) {
    (void)state;
    unsigned char bytes[sizeof vec_attn_f32 + 1];
    memcpy(bytes, vec_attn_f32, sizeof vec_attn_f32);
    bytes[sizeof vec_attn_f32] = 0;
    EXPECT_BAD_BYTES(bytes, sizeof bytes, TG_ERR_FORMAT, "1 trailing bytes after the last tensor");
    /* An empty header followed by data is trailing data too. */
    EXPECT_BAD_HEADER("{}      ", 3, "3 trailing bytes");
}

static void test_bad_metadata_not_string(void **state) {
    (void)state;
    EXPECT_BAD_HEADER("{\"__metadata__\":{\"format\":\"pt\",\"step\":3}}", 0,
                      "__metadata__ value of 'step' is 3", "must be strings");
}

static void test_bad_metadata_not_object(void **state) {
    (void)state;
    EXPECT_BAD_HEADER("{\"__metadata__\":\"pt\"}", 0, "__metadata__ is a string");
}

static void test_bad_metadata_duplicate_key(void **state) {
    (void)state;
    EXPECT_BAD_HEADER("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0,
                      "duplicate __metadata__ key 'k'");
}

static void test_bad_too_many_dims(void **state) {
    (void)state;
    EXPECT_BAD_HEADER("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1],"
                      "\"data_offsets\":[0,4]}}",
                      4, "tensor 'a' has 7 dimensions", "TG_MAX_DIMS");
}

static void test_bad_non_integer_shape(void **state) {
    (void)state;
    EXPECT_BAD_HEADER("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4,
                      "'a': shape[0] = 1.5 is not an integer");
    EXPECT_BAD_HEADER("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4,
                      "shape[0] = a string is not a number");
}

static void test_read_io_errors(void **state) {
    (void)state;
    char path[512];
    tg_safetensors *st = NULL;
    tmp_path(path, sizeof path, "does-not-exist.safetensors");
    assert_int_equal(tg_safetensors_read(path, &st), TG_ERR_IO);
    assert_null(st);
    assert_non_null(strstr(tg_error_message(), "does-not-exist.safetensors"));
    assert_non_null(strstr(tg_error_message(), "cannot open"));
    assert_int_equal(tg_safetensors_read(tmp_root, &st), TG_ERR_IO);
    assert_non_null(strstr(tg_error_message(), "is a directory"));
}

/* ---------------------------------------------------------------- writer arguments */

static void expect_write_argument_error(const tg_st_entry *entries, size_t count,
                                        const char *const *keys, const char *const *values,
                                        size_t meta_count, const char *fragment) {
    char path[512];
    tmp_path(path, sizeof path, "never-written.safetensors");
    assert_int_equal(tg_safetensors_write(path, entries, count, keys, values, meta_count),
                     TG_ERR_ARGUMENT);
    if (!strstr(tg_error_message(), fragment))
        fail_msg("message \"%s\" lacks \"%s\"", tg_error_message(), fragment);
    assert_int_equal(access(path, F_OK), -1); /* nothing was written */
    assert_int_equal(count_temp_files(tmp_root), 0);
}

static void test_write_bad_arguments(void **state) {
    (void)state;
    const float v[2] = {1, 2};
    tg_st_entry e[2] = {entry("a", TG_DTYPE_F32, 1, (const int64_t[]){2}, v),
                        entry("a", TG_DTYPE_F32, 1, (const int64_t[]){2}, v)};
    expect_write_argument_error(e, 2, NULL, NULL, 0, "duplicate tensor name 'a'");
    e[1].name = NULL;
    expect_write_argument_error(e, 2, NULL, NULL, 0, "entry 1 has no name");
    e[1].name = "__metadata__";
    expect_write_argument_error(e, 2, NULL, NULL, 0, "reserved");
    e[1].name = "b";
    e[1].nbytes = 4;
    expect_write_argument_error(e, 2, NULL, NULL, 0,
                                "shape (2,) of F32 needs 8 bytes, nbytes is 4");
    e[1] = entry("b", TG_DTYPE_F32, 1, (const int64_t[]){-2}, v);
    expect_write_argument_error(e, 2, NULL, NULL, 0, "negative dimension");
    e[1] = entry("b", TG_DTYPE_F32, 1, (const int64_t[]){2}, NULL);
    expect_write_argument_error(e, 2, NULL, NULL, 0, "'b' has no data");
    const char *keys[] = {"k", "k"}, *values[] = {"1", "2"};
    expect_write_argument_error(e, 1, keys, values, 2, "duplicate metadata key 'k'");
    const char *null_value[] = {"1", NULL};
    expect_write_argument_error(e, 1, keys, null_value, 2, "NULL key or value");
    expect_write_argument_error(NULL, 3, NULL, NULL, 0, "entries is NULL");
    assert_int_equal(tg_safetensors_write(NULL, e, 1, NULL, NULL, 0), TG_ERR_ARGUMENT);
}

/* ---------------------------------------------------------------- safe saving */

static const float old_values[4] = {1, 2, 3, 4};
static const float new_values[4] = {-1, -2, -3, -4};

/* Saves {"w": values} at path. */
static tg_status save_w(const char *path, const float *values) {
    const tg_st_entry e = entry("w", TG_DTYPE_F32, 1, (const int64_t[]){4}, values);
    return tg_safetensors_write(path, &e, 1, NULL, NULL, 0);
}

static void assert_w_equals(const char *path, const float *values) {
    tg_safetensors *st = NULL;
    assert_int_equal(tg_safetensors_read(path, &st), TG_OK);
    const tg_st_entry *e = tg_safetensors_find(st, "w");
    assert_non_null(e);
    assert_memory_equal(e->data, values, 4 * sizeof(float));
    tg_safetensors_free(st);
}

static void test_save_replaces_existing(void **state) {
    (void)state;
    char dir[512], path[600];
    tmp_path(dir, sizeof dir, "replace");
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    assert_int_equal(save_w(path, old_values), TG_OK);
    assert_int_equal(save_w(path, new_values), TG_OK);
    assert_w_equals(path, new_values);
    assert_int_equal(count_temp_files(dir), 0);

    /* A stale temporary file of a crashed save with our pid does not block saving. */
    char stale[700];
    snprintf(stale, sizeof stale, "%s.tmp.%ld", path, (long)getpid());
    write_bytes(stale, "junk", 4);
    assert_int_equal(save_w(path, old_values), TG_OK);
    assert_w_equals(path, old_values);
    assert_int_equal(count_temp_files(dir), 0);
}

static void test_save_missing_folder(void **state) {
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "no/such/folder/ckpt.safetensors");
    assert_int_equal(save_w(path, new_values), TG_ERR_IO);
    assert_non_null(strstr(tg_error_message(), "cannot create the temporary file"));
    assert_non_null(strstr(tg_error_message(), "No such file or directory"));
}

/* A save that fails mid-write (file size limit, so it works as root too) leaves the old
 * checkpoint whole and removes its temporary file. */
static void test_save_failure_keeps_old_file(void **state) {
    (void)state;
    char dir[512], path[600];
    tmp_path(dir, sizeof dir, "keep");
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    assert_int_equal(save_w(path, old_values), TG_OK);
    size_t old_size;
    unsigned char *old_bytes = read_bytes(path, &old_size);

    static float big[4096]; /* 16 KiB, far over the limit below */
    const tg_st_entry e = entry("w", TG_DTYPE_F32, 1, (const int64_t[]){4096}, big);
    struct rlimit saved;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    struct rlimit small = saved;
    small.rlim_cur = 1024;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN); /* get EFBIG, not a signal */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    const tg_status s = tg_safetensors_write(path, &e, 1, NULL, NULL, 0);
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, old_handler);

    assert_int_equal(s, TG_ERR_IO);
    assert_non_null(strstr(tg_error_message(), "cannot write the temporary file"));
    size_t size;
    unsigned char *bytes = read_bytes(path, &size);
    assert_int_equal(size, old_size);
    assert_memory_equal(bytes, old_bytes, size);
    free(bytes);
    free(old_bytes);
    assert_w_equals(path, old_values);
    assert_int_equal(count_temp_files(dir), 0);
}

/* The rename step failing (the target is a non-empty folder) removes the temporary file. */
static void test_save_rename_failure_cleans_up(void **state) {
    (void)state;
    char dir[512], target[600], inner[700];
    tmp_path(dir, sizeof dir, "rename");
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(target, sizeof target, "%s/ckpt.safetensors", dir);
    assert_int_equal(mkdir(target, 0700), 0);
    snprintf(inner, sizeof inner, "%s/keep", target);
    write_bytes(inner, "x", 1);
    assert_int_equal(save_w(target, new_values), TG_ERR_IO);
    assert_non_null(strstr(tg_error_message(), "cannot rename"));
    assert_int_equal(count_temp_files(dir), 0);
    assert_int_equal(access(inner, F_OK), 0);
}

/* A folder without write permission: the old file stays (skipped as root, who may write). */
static void test_save_read_only_folder(void **state) {
    (void)state;
    if (geteuid() == 0) skip();
    char dir[512], path[600];
    tmp_path(dir, sizeof dir, "readonly");
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    assert_int_equal(save_w(path, old_values), TG_OK);
    assert_int_equal(chmod(dir, 0500), 0);
    const tg_status s = save_w(path, new_values);
    chmod(dir, 0700);
    assert_int_equal(s, TG_ERR_IO);
    assert_non_null(strstr(tg_error_message(), "Permission denied"));
    assert_w_equals(path, old_values);
    assert_int_equal(count_temp_files(dir), 0);
}

/* ---------------------------------------------------------------- what loaders open */

/* A loader that waited on a FIFO would hang the suite: SIGALRM ends it (and fails it) then. */
#define HANG_GUARD_SECONDS 10

/* Requires `s` == TG_ERR_IO and a message that holds both fragments. */
static void expect_io_error(tg_status s, const char *fragment, const char *other) {
    assert_int_equal(s, TG_ERR_IO);
    if (!strstr(tg_error_message(), fragment) || (other && !strstr(tg_error_message(), other)))
        fail_msg("message \"%s\" lacks \"%s\" or \"%s\"", tg_error_message(), fragment,
                 other ? other : "");
}

/* Every loader refuses a FIFO at once instead of waiting for a writer. */
static void test_read_fifo_refused(void **state) {
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "x.fifo");
    assert_int_equal(mkfifo(path, 0600), 0);
    alarm(HANG_GUARD_SECONDS);
    tg_safetensors *st = NULL;
    expect_io_error(tg_safetensors_read(path, &st), "tg_safetensors_read: '",
                    "x.fifo' is a FIFO, not a regular file");
    assert_null(st);
    const tg_safetensors_read_options header = {.header_only = true};
    expect_io_error(tg_safetensors_read_with(path, &header, &st), "is a FIFO", NULL);
    char *data = (char *)1;
    size_t size = 1;
    expect_io_error(tg_file_read(path, 0, &data, &size), "tg_file_read: '", "x.fifo' is a FIFO");
    assert_null(data);
    assert_int_equal(size, 0);
    alarm(0);
    unlink(path);
}

/* A directory, a character device, a socket (which cannot even be opened) and, where this
 * user may make one, a block device: each refused, saying what it is; a symbolic link to a
 * regular file is followed. */
static void test_read_special_files(void **state) {
    (void)state;
    tg_safetensors *st = NULL;
    expect_io_error(tg_safetensors_read(tmp_root, &st), "is a directory, not a regular file", NULL);
    expect_io_error(tg_safetensors_read("/dev/null", &st), "'/dev/null' is a character device",
                    NULL);

    char path[512];
    tmp_path(path, sizeof path, "x.sock");
    const int sock = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(sock >= 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    assert_true(strlen(path) < sizeof addr.sun_path);
    strcpy(addr.sun_path, path);
    assert_int_equal(bind(sock, (const struct sockaddr *)&addr, sizeof addr), 0);
    expect_io_error(tg_safetensors_read(path, &st), "x.sock' is a socket, not a regular file",
                    NULL);
    close(sock);
    unlink(path);

    tmp_path(path, sizeof path, "x.blk");
    if (mknod(path, S_IFBLK | 0600, makedev(7, 0)) == 0) {
        expect_io_error(tg_safetensors_read(path, &st), "x.blk' is a block device", NULL);
        unlink(path);
    }
    assert_null(st);

    char target[512];
    tmp_path(target, sizeof target, "linked.safetensors");
    assert_int_equal(save_w(target, old_values), TG_OK);
    tmp_path(path, sizeof path, "link.safetensors");
    assert_int_equal(symlink(target, path), 0);
    assert_w_equals(path, old_values);
    unlink(path);
    unlink(target);
}

/* Larger than the caller's limit, or (a sparse file) than the default of 4 GiB: refused
 * before anything is read. */
static void test_read_size_limit(void **state) {
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "limit.safetensors");
    assert_int_equal(save_w(path, old_values), TG_OK);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    tg_safetensors *st = NULL;
    tg_safetensors_read_options opts = {.max_bytes = (uint64_t)sb.st_size - 1};
    char expected[96];
    snprintf(expected, sizeof expected, "is %lld bytes, more than the limit of %lld bytes",
             (long long)sb.st_size, (long long)sb.st_size - 1);
    expect_io_error(tg_safetensors_read_with(path, &opts, &st), "limit.safetensors'", expected);
    assert_null(st);
    opts.max_bytes = (uint64_t)sb.st_size;
    assert_int_equal(tg_safetensors_read_with(path, &opts, &st), TG_OK);
    tg_safetensors_free(st);

    tmp_path(path, sizeof path, "huge.safetensors");
    const int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)TG_FILE_MAX_BYTES_DEFAULT + 1), 0);
    close(fd);
    expect_io_error(tg_safetensors_read(path, &st),
                    "is 4294967297 bytes, more than the limit of 4294967296 bytes", NULL);
    char *data = NULL;
    size_t size = 0;
    expect_io_error(tg_file_read(path, 0, &data, &size), "more than the limit of 4294967296", NULL);
    unlink(path);
}

/* header_only: names, shapes and metadata without the data, the layout still checked against
 * the file's size (a truncated file is refused). */
static void test_read_header_only(void **state) {
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "header.safetensors");
    const double w[6] = {1, 2, 3, 4, 5, 6};
    const tg_st_entry e = entry("w", TG_DTYPE_F64, 2, (const int64_t[]){2, 3}, w);
    const char *keys[] = {"framework"}, *values[] = {"tapegrad"};
    assert_int_equal(tg_safetensors_write(path, &e, 1, keys, values, 1), TG_OK);
    const tg_safetensors_read_options header = {.header_only = true, .max_bytes = 1};
    tg_safetensors *st = NULL;
    assert_int_equal(tg_safetensors_read_with(path, &header, &st), TG_OK);
    const tg_st_entry *got = tg_safetensors_find(st, "w");
    assert_non_null(got);
    assert_int_equal(got->dtype, TG_DTYPE_F64);
    assert_int_equal(got->shape[1], 3);
    assert_int_equal(got->nbytes, 48);
    assert_null(got->data);
    assert_string_equal(tg_safetensors_meta(st, "framework"), "tapegrad");
    tg_tensor *t = NULL;
    assert_int_equal(tg_st_entry_to_tensor(got, &t), TG_ERR_ARGUMENT); /* no data to convert */
    tg_safetensors_free(st);

    assert_int_equal(truncate(path, 8 + 8), 0); /* the header is longer than 8 bytes */
    st = NULL;
    assert_int_equal(tg_safetensors_read_with(path, &header, &st), TG_ERR_FORMAT);
    assert_non_null(strstr(tg_error_message(), "goes beyond the end"));
    assert_null(st);
    unlink(path);
}

static void test_file_read(void **state) {
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "data.txt");
    write_bytes(path, "hello\nworld", 11);
    char *data = NULL;
    size_t size = 0;
    assert_int_equal(tg_file_read(path, 0, &data, &size), TG_OK);
    assert_int_equal(size, 11);
    assert_string_equal(data, "hello\nworld"); /* NUL-terminated */
    free(data);
    assert_int_equal(tg_file_read(path, 11, &data, &size), TG_OK);
    free(data);
    expect_io_error(tg_file_read(path, 10, &data, &size), "data.txt' is 11 bytes",
                    "more than the limit of 10 bytes");
    assert_null(data);
    write_bytes(path, "", 0);
    assert_int_equal(tg_file_read(path, 0, &data, &size), TG_OK);
    assert_int_equal(size, 0);
    assert_string_equal(data, "");
    free(data);
    unlink(path);
    expect_io_error(tg_file_read(path, 0, &data, &size), "tg_file_read: cannot open '",
                    "data.txt': No such file or directory");
    expect_io_error(tg_file_read(tmp_root, 0, &data, &size), "is a directory", NULL);
    assert_int_equal(tg_file_read(NULL, 0, &data, &size), TG_ERR_ARGUMENT);
}

/* tg_file_map: the file's bytes, by the same rules as tg_file_read. */
static void test_file_map(void **state) {
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "mapped.txt");
    write_bytes(path, "hello\nworld", 11);
    const unsigned char *data = NULL;
    size_t size = 0;
    assert_int_equal(tg_file_map(path, 0, &data, &size), TG_OK);
    assert_int_equal(size, 11);
    assert_memory_equal(data, "hello\nworld", 11);
    tg_file_unmap(data, size);
    expect_io_error(tg_file_map(path, 10, &data, &size), "tg_file_map: '",
                    "mapped.txt' is 11 bytes, more than the limit of 10 bytes");
    assert_null(data);
    assert_int_equal(size, 0);
    write_bytes(path, "", 0);
    assert_int_equal(tg_file_map(path, 0, &data, &size), TG_OK);
    assert_non_null(data);
    assert_int_equal(size, 0);
    tg_file_unmap(data, size);
    unlink(path);
    expect_io_error(tg_file_map(path, 0, &data, &size), "tg_file_map: cannot open '",
                    "No such file or directory");
    expect_io_error(tg_file_map(tmp_root, 0, &data, &size), "is a directory", NULL);
    assert_int_equal(tg_file_map(path, 0, NULL, &size), TG_ERR_ARGUMENT);
}

/* Same device and inode: the path itself, a hard link, a symbolic link; not another file,
 * nor a path that does not exist. */
static void test_file_same(void **state) {
    (void)state;
    char a[512], b[512], hard[512], soft[512], absent[512];
    tmp_path(a, sizeof a, "same_a");
    tmp_path(b, sizeof b, "same_b");
    tmp_path(hard, sizeof hard, "same_hard");
    tmp_path(soft, sizeof soft, "same_soft");
    tmp_path(absent, sizeof absent, "same_absent");
    write_bytes(a, "x", 1);
    write_bytes(b, "x", 1);
    assert_int_equal(link(a, hard), 0);
    assert_int_equal(symlink(a, soft), 0);
    assert_true(tg_file_same(a, a));
    assert_true(tg_file_same(a, hard));
    assert_true(tg_file_same(soft, a));
    assert_false(tg_file_same(a, b));
    assert_false(tg_file_same(a, absent));
    assert_false(tg_file_same(absent, absent));
    assert_false(tg_file_same(NULL, a));
    unlink(a), unlink(b), unlink(hard), unlink(soft);
}

/* The pid of a process that has ended (and been reaped). */
static pid_t dead_pid(void) {
    const pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return pid;
}

/* A crash mid-save leaves "<path>.tmp.<pid>": the next save in that folder removes it, and
 * every such file of a dead process that could be a safetensors file of ours; it keeps what
 * is not ours (other content, a symbolic link) and the files of live processes. */
static void test_save_removes_stale_temps(void **state) {
    (void)state;
    char dir[512], path[600], other[600];
    tmp_path(dir, sizeof dir, "stale");
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(path, sizeof path, "%s/ck.safetensors", dir);
    snprintf(other, sizeof other, "%s/other.safetensors", dir);
    assert_int_equal(save_w(other, old_values), TG_OK);
    size_t size;
    unsigned char *bytes = read_bytes(other, &size);

    const long dead = (long)dead_pid(), alive = (long)getppid();
    char partial[700], empty[700], live[700], notes[700], link_[700];
    snprintf(partial, sizeof partial, "%s.tmp.%ld", path, dead);
    snprintf(empty, sizeof empty, "%s.tmp.%ld", other, dead);
    snprintf(live, sizeof live, "%s.tmp.%ld", path, alive);
    snprintf(notes, sizeof notes, "%s/notes.txt.tmp.%ld", dir, dead);
    snprintf(link_, sizeof link_, "%s/link.tmp.%ld", dir, dead);
    write_bytes(partial, bytes, size / 2);
    write_bytes(empty, "", 0);
    write_bytes(live, bytes, size / 2);
    write_bytes(notes, "my notes", 8);
    assert_int_equal(symlink(other, link_), 0);
    free(bytes);

    assert_int_equal(save_w(path, new_values), TG_OK);
    assert_w_equals(path, new_values);
    assert_int_equal(access(partial, F_OK), -1);
    assert_int_equal(access(empty, F_OK), -1);
    assert_int_equal(access(live, F_OK), 0);
    assert_int_equal(access(notes, F_OK), 0);
    struct stat sb;
    assert_int_equal(lstat(link_, &sb), 0);
    assert_int_equal(count_temp_files(dir), 3);
    unlink(live), unlink(notes), unlink(link_);

    /* the function by itself, and a folder that does not exist */
    write_bytes(partial, "", 0);
    assert_int_equal(tg_safetensors_remove_stale_temps(path), 1);
    assert_int_equal(tg_safetensors_remove_stale_temps("/nonexistent/folder/x"), 0);
}

/* Processes killed with SIGKILL at random points of saving a large file, again and again:
 * the file at path is always a whole one, and after one more save no temporary file is left. */
static void test_save_killed_mid_save(void **state) {
    (void)state;
    enum { ROUNDS = 12, N = 1 << 20 }; /* 4 MiB per save */
    char dir[512], path[600];
    tmp_path(dir, sizeof dir, "killed");
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(path, sizeof path, "%s/ck.safetensors", dir);
    float *big = malloc(N * sizeof *big);
    assert_non_null(big);
    for (int i = 0; i < N; i++) big[i] = (float)i;
    const tg_st_entry e = entry("w", TG_DTYPE_F32, 1, (const int64_t[]){N}, big);
    assert_int_equal(tg_safetensors_write(path, &e, 1, NULL, NULL, 0), TG_OK);
    for (int round = 0; round < ROUNDS; round++) {
        const pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            for (;;)
                if (tg_safetensors_write(path, &e, 1, NULL, NULL, 0) != TG_OK) _exit(1);
        }
        usleep((useconds_t)(1000 + 3000 * (round % 7))); /* 1 to 19 ms into the saves */
        assert_int_equal(kill(pid, SIGKILL), 0);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status)); /* killed, not failed */
        tg_safetensors *st = NULL;
        if (tg_safetensors_read(path, &st) != TG_OK)
            fail_msg("round %d: %s", round, tg_error_message());
        assert_int_equal(tg_safetensors_find(st, "w")->numel, N);
        tg_safetensors_free(st);
    }
    assert_int_equal(tg_safetensors_write(path, &e, 1, NULL, NULL, 0), TG_OK);
    assert_int_equal(count_temp_files(dir), 0);
    free(big);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_convert_floats_and_indices),
        cmocka_unit_test(test_convert_i64_out_of_range),
        cmocka_unit_test(test_convert_bool_and_small_integers),
        cmocka_unit_test(test_convert_unaligned),
        cmocka_unit_test(test_vector_single_f32),
        cmocka_unit_test(test_vector_empty),
        cmocka_unit_test(test_vector_empty_metadata),
        cmocka_unit_test(test_vector_4d_padded),
        cmocka_unit_test(test_bad_file_too_short),
        cmocka_unit_test(test_bad_truncated_data),
        cmocka_unit_test(test_bad_header_length_beyond_file),
        cmocka_unit_test(test_bad_header_too_large),
        cmocka_unit_test(test_bad_invalid_json),
        cmocka_unit_test(test_bad_not_utf8),
        cmocka_unit_test(test_bad_nul_in_name),
        cmocka_unit_test(test_bad_root_not_object),
        cmocka_unit_test(test_bad_leading_space),
        cmocka_unit_test(test_bad_padding_not_spaces),
        cmocka_unit_test(test_bad_unknown_dtype),
        cmocka_unit_test(test_bad_dtype_not_string),
        cmocka_unit_test(test_bad_extra_key),
        cmocka_unit_test(test_bad_missing_key),
        cmocka_unit_test(test_bad_entry_not_object),
        cmocka_unit_test(test_bad_size_mismatch),
        cmocka_unit_test(test_bad_overlap),
        cmocka_unit_test(test_bad_hole),
        cmocka_unit_test(test_bad_offset_out_of_range),
        cmocka_unit_test(test_bad_offsets_reversed),
        cmocka_unit_test(test_bad_offsets_count),
        cmocka_unit_test(test_bad_negative_offset),
        cmocka_unit_test(test_bad_huge_offset),
        cmocka_unit_test(test_bad_duplicate_names),
        cmocka_unit_test(test_bad_dims_overflow),
        cmocka_unit_test(test_bad_trailing_bytes),
        cmocka_unit_test(test_bad_metadata_not_string),
        cmocka_unit_test(test_bad_metadata_not_object),
        cmocka_unit_test(test_bad_metadata_duplicate_key),
        cmocka_unit_test(test_bad_too_many_dims),
        cmocka_unit_test(test_bad_non_integer_shape),
        cmocka_unit_test(test_read_io_errors),
        cmocka_unit_test(test_read_fifo_refused),
        cmocka_unit_test(test_read_special_files),
        cmocka_unit_test(test_read_size_limit),
        cmocka_unit_test(test_read_header_only),
        cmocka_unit_test(test_file_read),
        cmocka_unit_test(test_file_same),
        cmocka_unit_test(test_write_bad_arguments),
        cmocka_unit_test(test_save_replaces_existing),
        cmocka_unit_test(test_save_missing_folder),
        cmocka_unit_test(test_save_failure_keeps_old_file),
        cmocka_unit_test(test_save_rename_failure_cleans_up),
        cmocka_unit_test(test_save_read_only_folder),
        cmocka_unit_test(test_save_removes_stale_temps),
        cmocka_unit_test(test_save_killed_mid_save),
        cmocka_unit_test(test_file_map),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
