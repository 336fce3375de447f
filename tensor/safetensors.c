/* The safetensors format: a strict reader and a safe writer.
 *
 * File layout: 8 bytes little-endian header length N, N bytes of UTF-8 JSON (an object,
 * optionally padded at the end with spaces), then the data buffer that every tensor's
 * data_offsets point into. The JSON is read and written with cJSON; everything cJSON
 * does not check (duplicate names, exact keys, integers, offsets tiling the buffer,
 * UTF-8) is checked here, because a file comes from outside and must never crash us. */
#include "tapegrad/safetensors.h"

#include "file_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

/* The format is little-endian and we copy bytes straight into host integers and floats. */
#if !defined(__BYTE_ORDER__) || !defined(__ORDER_LITTLE_ENDIAN__) ||                               \
    __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tensor/safetensors.c assumes a little-endian host"
#endif
_Static_assert(sizeof(float) == 4 && sizeof(double) == 8, "F32/F64 must be IEEE single/double");
_Static_assert(sizeof(size_t) >= sizeof(uint64_t), "a 64-bit size_t is assumed");

/* The reference reader's limit on the header length. */
#define ST_HEADER_MAX 100000000u
/* JSON numbers reach us as doubles: above this, neighbouring integers are no longer exact. */
#define ST_INT_LIMIT 9007199254740992.0 /* 2^53 */
/* Names are cut to this many bytes in messages (tg_error_message holds 512 bytes). */
#define ST_MSG_NAME "%.80s"

/* ---------------------------------------------------------------- dtypes */

static const struct {
    const char *name;
    size_t size;
    int rank; /* the reference writer orders by this, largest first */
} st_dtypes[] = {
    [TG_DTYPE_BOOL] = {"BOOL", 1, 0}, [TG_DTYPE_U8] = {"U8", 1, 1},
    [TG_DTYPE_I8] = {"I8", 1, 2},     [TG_DTYPE_I16] = {"I16", 2, 3},
    [TG_DTYPE_U16] = {"U16", 2, 4},   [TG_DTYPE_F16] = {"F16", 2, 5},
    [TG_DTYPE_BF16] = {"BF16", 2, 6}, [TG_DTYPE_I32] = {"I32", 4, 7},
    [TG_DTYPE_U32] = {"U32", 4, 8},   [TG_DTYPE_F32] = {"F32", 4, 9},
    [TG_DTYPE_F64] = {"F64", 8, 10},  [TG_DTYPE_I64] = {"I64", 8, 11},
    [TG_DTYPE_U64] = {"U64", 8, 12},
};
#define ST_DTYPE_COUNT (sizeof st_dtypes / sizeof st_dtypes[0])

static bool st_dtype_valid(tg_dtype d) { return (unsigned)d < ST_DTYPE_COUNT; }

const char *tg_dtype_name(tg_dtype dtype) {
    return st_dtype_valid(dtype) ? st_dtypes[dtype].name : "?";
}

size_t tg_dtype_size(tg_dtype dtype) { return st_dtype_valid(dtype) ? st_dtypes[dtype].size : 0; }

/* Exact, case-sensitive: the format's dtype strings are uppercase. */
static bool st_dtype_parse(const char *s, tg_dtype *out) {
    for (size_t i = 0; i < ST_DTYPE_COUNT; i++) {
        if (strcmp(s, st_dtypes[i].name) == 0) {
            *out = (tg_dtype)i;
            return true;
        }
    }
    return false;
}

/* ---------------------------------------------------------------- small helpers */

static char *st_strdup(const char *s) {
    const size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

static int st_cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* numel of a shape, left to right like the reference, false on int64 overflow. */
static bool st_shape_numel(int ndim, const int64_t *shape, int64_t *out) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || __builtin_mul_overflow(n, shape[i], &n)) return false;
    }
    *out = n;
    return true;
}

/* Checks that s[0..len) is UTF-8 (no overlongs, surrogates or code points past U+10FFFF).
 * With forbid_controls, raw bytes below 0x20 other than tab, LF and CR are refused too:
 * cJSON treats every such byte as whitespace, and a raw NUL would cut a name short.
 * Returns the offset of the first bad byte, or len when all is well. */
static size_t st_utf8_check(const unsigned char *s, size_t len, bool forbid_controls) {
    size_t i = 0;
    while (i < len) {
        const unsigned char c = s[i];
        if (c < 0x80) {
            if (forbid_controls && c < 0x20 && c != '\t' && c != '\n' && c != '\r') return i;
            i++;
            continue;
        }
        size_t extra;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) {
            extra = 1, cp = c & 0x1Fu, min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            extra = 2, cp = c & 0x0Fu, min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            extra = 3, cp = c & 0x07u, min = 0x10000;
        } else {
            return i;
        }
        if (len - i <= extra) return i;
        for (size_t k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += extra + 1;
    }
    return len;
}

/* Finds a "\u0000" escape (which cJSON would decode into a NUL that silently cuts the
 * string). Backslashes only occur inside JSON strings, each starting a two-character
 * escape, so stepping over pairs keeps us in sync. Returns its offset or len. */
static size_t st_find_nul_escape(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '\\') continue;
        if (i + 5 < len && s[i + 1] == 'u' && memcmp(s + i + 2, "0000", 4) == 0) return i;
        i++; /* skip the escaped character */
    }
    return len;
}

/* ---------------------------------------------------------------- reading */

/* The public struct plus a name index for tg_safetensors_find. */
typedef struct st_file {
    tg_safetensors pub;
    size_t *by_name; /* entry indices sorted by name */
} st_file;

/* An entry while parsing: its byte range is kept until the buffer is known to be tiled. */
typedef struct st_span {
    tg_st_entry e;
    int64_t begin, end;
} st_span;

/* Why a JSON number is not an acceptable size or offset. */
typedef enum {
    ST_NUM_OK,
    ST_NUM_NOT_NUMBER,
    ST_NUM_NEGATIVE,
    ST_NUM_TOO_LARGE,
    ST_NUM_FRACTION
} st_num;

/* cJSON keeps numbers as doubles. Integers below 2^53 are exact in a double, so a value in
 * [0, 2^53) with no fractional part is exactly the integer written in the file (up to
 * spellings such as 1.0 or 1e2, which denote the same integer). */
static st_num st_json_count(const cJSON *item, int64_t *out) {
    if (!cJSON_IsNumber(item)) return ST_NUM_NOT_NUMBER;
    const double d = item->valuedouble;
    if (!(d >= 0)) return ST_NUM_NEGATIVE;
    if (d >= ST_INT_LIMIT) return ST_NUM_TOO_LARGE;
    if (d != floor(d)) return ST_NUM_FRACTION;
    *out = (int64_t)d;
    return ST_NUM_OK;
}

static const char *st_num_reason(st_num r) {
    switch (r) {
    case ST_NUM_NOT_NUMBER:
        return "is not a number";
    case ST_NUM_NEGATIVE:
        return "is negative";
    case ST_NUM_TOO_LARGE:
        return "is too large (at least 2^53)";
    case ST_NUM_FRACTION:
        return "is not an integer";
    default:
        return "is fine";
    }
}

/* Describes a JSON value in a message: the number itself, or its JSON type. */
static const char *st_json_describe(const cJSON *item, char *buf, size_t len) {
    if (cJSON_IsNumber(item))
        snprintf(buf, len, "%.17g", item->valuedouble);
    else if (cJSON_IsString(item))
        snprintf(buf, len, "a string");
    else if (cJSON_IsArray(item))
        snprintf(buf, len, "an array");
    else if (cJSON_IsObject(item))
        snprintf(buf, len, "an object");
    else if (cJSON_IsBool(item))
        snprintf(buf, len, "a boolean");
    else
        snprintf(buf, len, "null");
    return buf;
}

/* Parses one tensor's {"dtype", "shape", "data_offsets"} object into span. */
static tg_status st_entry_parse(const char *fn, const char *origin, const cJSON *obj,
                                st_span *span) {
    const char *name = obj->string;
    char what[64];
    if (!cJSON_IsObject(obj))
        return tg_status_set(TG_ERR_FORMAT, "%s: %s: tensor '" ST_MSG_NAME "' is %s, not an object",
                             fn, origin, name, st_json_describe(obj, what, sizeof what));
    /* Exactly three members, and all three names found: then they are exactly these. */
    size_t members = 0;
    for (const cJSON *c = obj->child; c; c = c->next) members++;
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(obj, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(obj, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(obj, "data_offsets");
    if (members != 3 || !dtype || !shape || !offsets)
        return tg_status_set(TG_ERR_FORMAT,
                             "%s: %s: tensor '" ST_MSG_NAME "' must have exactly the "
                             "keys dtype, shape and data_offsets (it has %zu key%s)",
                             fn, origin, name, members, members == 1 ? "" : "s");

    if (!cJSON_IsString(dtype))
        return tg_status_set(TG_ERR_FORMAT,
                             "%s: %s: tensor '" ST_MSG_NAME "': dtype is %s, not a string", fn,
                             origin, name, st_json_describe(dtype, what, sizeof what));
    if (!st_dtype_parse(dtype->valuestring, &span->e.dtype))
        return tg_status_set(TG_ERR_FORMAT,
                             "%s: %s: tensor '" ST_MSG_NAME "': unknown dtype '%.32s'", fn, origin,
                             name, dtype->valuestring);

    if (!cJSON_IsArray(shape))
        return tg_status_set(TG_ERR_FORMAT,
                             "%s: %s: tensor '" ST_MSG_NAME "': shape is %s, not an array", fn,
                             origin, name, st_json_describe(shape, what, sizeof what));
    size_t ndim = 0;
    for (const cJSON *c = shape->child; c; c = c->next) ndim++;
    if (ndim > TG_MAX_DIMS)
        return tg_status_set(TG_ERR_FORMAT,
                             "%s: %s: tensor '" ST_MSG_NAME "' has %zu dimensions, more "
                             "than TG_MAX_DIMS = %d",
                             fn, origin, name, ndim, TG_MAX_DIMS);
    span->e.ndim = (int)ndim;
    int i = 0;
    for (const cJSON *c = shape->child; c; c = c->next, i++) {
        const st_num r = st_json_count(c, &span->e.shape[i]);
        if (r != ST_NUM_OK)
            return tg_status_set(TG_ERR_FORMAT,
                                 "%s: %s: tensor '" ST_MSG_NAME "': shape[%d] = %s %s "
                                 "(dimensions must be non-negative integers)",
                                 fn, origin, name, i, st_json_describe(c, what, sizeof what),
                                 st_num_reason(r));
    }

    if (!cJSON_IsArray(offsets))
        return tg_status_set(TG_ERR_FORMAT,
                             "%s: %s: tensor '" ST_MSG_NAME "': data_offsets is %s, not "
                             "an array",
                             fn, origin, name, st_json_describe(offsets, what, sizeof what));
    size_t noff = 0;
    for (const cJSON *c = offsets->child; c; c = c->next) noff++;
    if (noff != 2)
        return tg_status_set(TG_ERR_FORMAT,
                             "%s: %s: tensor '" ST_MSG_NAME "': data_offsets has %zu "
                             "entries, not 2 [BEGIN, END]",
                             fn, origin, name, noff);
    int64_t range[2];
    const cJSON *c = offsets->child;
    for (int k = 0; k < 2; k++, c = c->next) {
        const st_num r = st_json_count(c, &range[k]);
        if (r != ST_NUM_OK)
            return tg_status_set(TG_ERR_FORMAT,
                                 "%s: %s: tensor '" ST_MSG_NAME "': data_offsets[%d] = "
                                 "%s %s (offsets must be non-negative integers)",
                                 fn, origin, name, k, st_json_describe(c, what, sizeof what),
                                 st_num_reason(r));
    }
    span->begin = range[0];
    span->end = range[1];
    if (span->end < span->begin)
        return tg_status_set(TG_ERR_FORMAT,
                             "%s: %s: tensor '" ST_MSG_NAME "': data_offsets [%" PRId64 ", %" PRId64
                             "] end before they begin",
                             fn, origin, name, span->begin, span->end);

    int64_t numel, nbytes;
    if (!st_shape_numel(span->e.ndim, span->e.shape, &numel) ||
        __builtin_mul_overflow(numel, (int64_t)tg_dtype_size(span->e.dtype), &nbytes))
        return tg_status_set(TG_ERR_FORMAT,
                             "%s: %s: tensor '" ST_MSG_NAME "': the product of its "
                             "dimensions times the %s item size overflows 64 bits",
                             fn, origin, name, tg_dtype_name(span->e.dtype));
    span->e.numel = numel;
    span->e.nbytes = (size_t)nbytes;
    if (nbytes != span->end - span->begin) {
        char shp[128];
        tg_shape_format(span->e.ndim, span->e.shape, shp, sizeof shp);
        return tg_status_set(TG_ERR_FORMAT,
                             "%s: %s: tensor '" ST_MSG_NAME "': shape %s of %s needs %" PRId64
                             " bytes but data_offsets [%" PRId64 ", %" PRId64 "] span %" PRId64,
                             fn, origin, name, shp, tg_dtype_name(span->e.dtype), nbytes,
                             span->begin, span->end, span->end - span->begin);
    }
    return TG_OK;
}

/* Copies the __metadata__ object (string values only) into st. */
static tg_status st_metadata_parse(const char *fn, const char *origin, const cJSON *obj,
                                   tg_safetensors *st) {
    char what[64];
    if (!cJSON_IsObject(obj))
        return tg_status_set(TG_ERR_FORMAT,
                             "%s: %s: __metadata__ is %s, it must be an object of strings", fn,
                             origin, st_json_describe(obj, what, sizeof what));
    size_t n = 0;
    for (const cJSON *c = obj->child; c; c = c->next) {
        if (!cJSON_IsString(c))
            return tg_status_set(TG_ERR_FORMAT,
                                 "%s: %s: __metadata__ value of '" ST_MSG_NAME
                                 "' is %s; metadata values must be strings",
                                 fn, origin, c->string, st_json_describe(c, what, sizeof what));
        n++;
    }
    if (n == 0) return TG_OK;
    st->meta_keys = calloc(n, sizeof *st->meta_keys);
    st->meta_values = calloc(n, sizeof *st->meta_values);
    if (!st->meta_keys || !st->meta_values)
        return tg_status_set(TG_ERR_NOMEM, "%s: %s: out of memory for metadata", fn, origin);
    for (const cJSON *c = obj->child; c; c = c->next) {
        st->meta_keys[st->meta_count] = st_strdup(c->string);
        st->meta_values[st->meta_count] = st_strdup(c->valuestring);
        st->meta_count++; /* counted before the check so that free releases a lone success */
        if (!st->meta_keys[st->meta_count - 1] || !st->meta_values[st->meta_count - 1])
            return tg_status_set(TG_ERR_NOMEM, "%s: %s: out of memory for metadata", fn, origin);
    }
    /* Duplicate keys: cJSON keeps them all, the format forbids them. */
    char **sorted = malloc(n * sizeof *sorted);
    if (!sorted)
        return tg_status_set(TG_ERR_NOMEM, "%s: %s: out of memory for metadata", fn, origin);
    memcpy(sorted, st->meta_keys, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, st_cmp_str_ptr);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(sorted[i - 1], sorted[i]) == 0) {
            tg_status s =
                tg_status_set(TG_ERR_FORMAT, "%s: %s: duplicate __metadata__ key '" ST_MSG_NAME "'",
                              fn, origin, sorted[i]);
            free(sorted);
            return s;
        }
    }
    free(sorted);
    return TG_OK;
}

/* Sorting spans by where their bytes are: (begin, end), then name (names are unique). */
static int st_cmp_span(const void *a, const void *b) {
    const st_span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->e.name, y->e.name);
}

/* For the name index: a file-local pointer is not thread-safe, so sort (name, index) pairs. */
typedef struct st_named {
    const char *name;
    size_t index;
} st_named;

static int st_cmp_named(const void *a, const void *b) {
    return strcmp(((const st_named *)a)->name, ((const st_named *)b)->name);
}

/* Parses the JSON header of f->pub.buffer and checks the whole layout against a data buffer
 * of data_size bytes; the entries point into data, or have data NULL when data is NULL (the
 * data was not read). */
static tg_status st_parse_header(st_file *f, const char *fn, const char *origin, const char *header,
                                 size_t n, size_t data_size, const unsigned char *data) {
    tg_safetensors *st = &f->pub;
    const unsigned char *bytes = (const unsigned char *)header;

    /* The spec: the header MUST begin with '{' (no BOM, no leading whitespace). */
    if (n == 0 || header[0] != '{') {
        char found[32];
        if (n == 0)
            snprintf(found, sizeof found, "an empty header");
        else if (header[0] == ' ')
            snprintf(found, sizeof found, "a space");
        else
            snprintf(found, sizeof found, "byte 0x%02x", bytes[0]);
        return tg_status_set(TG_ERR_FORMAT,
                             "%s: %s: the JSON header must begin with '{' (found %s)", fn, origin,
                             found);
    }
    const size_t bad = st_utf8_check(bytes, n, true);
    if (bad != n)
        return tg_status_set(TG_ERR_FORMAT,
                             "%s: %s: the header is not valid UTF-8 JSON text (byte 0x%02x "
                             "at offset %zu)",
                             fn, origin, bytes[bad], bad);
    const size_t nul = st_find_nul_escape(header, n);
    if (nul != n)
        return tg_status_set(TG_ERR_FORMAT,
                             "%s: %s: the header contains a \\u0000 escape at offset %zu", fn,
                             origin, nul);

    /* cJSON gets its own NUL-terminated copy so that nothing it does can reach the data. */
    char *text = malloc(n + 1);
    if (!text)
        return tg_status_set(TG_ERR_NOMEM, "%s: %s: out of memory for a %zu-byte header", fn,
                             origin, n);
    memcpy(text, header, n);
    text[n] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, n, &end, false);
    if (!root) {
        /* cJSON cannot tell us whether an allocation failed; a parse error is far likelier. */
        const size_t at = end ? (size_t)(end - text) : 0;
        free(text);
        return tg_status_set(TG_ERR_FORMAT,
                             "%s: %s: invalid JSON header (parse error near byte %zu)", fn, origin,
                             at);
    }
    const size_t json_len = (size_t)(end - text);
    free(text);

    tg_status status = TG_OK;
    st_span *spans = NULL;
    const char **names = NULL;
    st_named *index = NULL;
    for (size_t i = json_len; i < n; i++) {
        if (header[i] != ' ') {
            status = tg_status_set(TG_ERR_FORMAT,
                                   "%s: %s: unexpected byte 0x%02x at offset %zu after "
                                   "the JSON object (the header may only be padded with spaces)",
                                   fn, origin, bytes[i], i);
            goto done;
        }
    }
    if (!cJSON_IsObject(root)) {
        status =
            tg_status_set(TG_ERR_FORMAT, "%s: %s: the JSON header is not an object", fn, origin);
        goto done;
    }

    size_t members = 0;
    for (const cJSON *c = root->child; c; c = c->next) members++;

    /* Duplicate names first: cJSON keeps every member, the format forbids repeats. */
    names = malloc((members ? members : 1) * sizeof *names);
    if (!names) {
        status = tg_status_set(TG_ERR_NOMEM, "%s: %s: out of memory", fn, origin);
        goto done;
    }
    size_t k = 0;
    for (const cJSON *c = root->child; c; c = c->next) names[k++] = c->string;
    qsort(names, members, sizeof *names, st_cmp_str_ptr);
    for (size_t i = 1; i < members; i++) {
        if (strcmp(names[i - 1], names[i]) == 0) {
            status = tg_status_set(TG_ERR_FORMAT,
                                   "%s: %s: duplicate name '" ST_MSG_NAME "' in the header", fn,
                                   origin, names[i]);
            goto done;
        }
    }

    spans = calloc(members ? members : 1, sizeof *spans);
    if (!spans) {
        status = tg_status_set(TG_ERR_NOMEM, "%s: %s: out of memory", fn, origin);
        goto done;
    }
    size_t count = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) {
            status = st_metadata_parse(fn, origin, c, st);
        } else {
            spans[count].e.name = c->string; /* borrowed from cJSON until copied below */
            status = st_entry_parse(fn, origin, c, &spans[count]);
            count++;
        }
        if (status != TG_OK) goto done;
    }

    /* The byte ranges must lie inside the buffer and tile it: sorted by (begin, end), each
     * begins where the previous one ended, starting at 0 and stopping at the end. */
    for (size_t i = 0; i < count; i++) {
        if ((uint64_t)spans[i].end > data_size) {
            status =
                tg_status_set(TG_ERR_FORMAT,
                              "%s: %s: tensor '" ST_MSG_NAME "': data_offsets [%" PRId64
                              ", %" PRId64 "] go past the end of the %zu-byte data buffer "
                              "(file truncated?)",
                              fn, origin, spans[i].e.name, spans[i].begin, spans[i].end, data_size);
            goto done;
        }
    }
    qsort(spans, count, sizeof *spans, st_cmp_span);
    int64_t expected = 0;
    for (size_t i = 0; i < count; i++) {
        if (spans[i].begin < expected) {
            status = tg_status_set(TG_ERR_FORMAT,
                                   "%s: %s: tensor '" ST_MSG_NAME "' (bytes [%" PRId64 ", %" PRId64
                                   ")) overlaps tensor '" ST_MSG_NAME "' (which ends "
                                   "at %" PRId64 ")",
                                   fn, origin, spans[i].e.name, spans[i].begin, spans[i].end,
                                   spans[i - 1].e.name, expected);
            goto done;
        }
        if (spans[i].begin > expected) {
            status = tg_status_set(
                TG_ERR_FORMAT,
                "%s: %s: hole of %" PRId64 " unused bytes before tensor '" ST_MSG_NAME
                "' (bytes [%" PRId64 ", %" PRId64 ") belong to "
                "no tensor)",
                fn, origin, spans[i].begin - expected, spans[i].e.name, expected, spans[i].begin);
            goto done;
        }
        expected = spans[i].end;
    }
    if ((uint64_t)expected != data_size) {
        status = tg_status_set(TG_ERR_FORMAT,
                               "%s: %s: %" PRIu64 " trailing bytes after the last tensor "
                               "(8 + header + data must be the file size exactly)",
                               fn, origin, (uint64_t)data_size - (uint64_t)expected);
        goto done;
    }

    /* Valid: copy the names out of cJSON and point the entries at their bytes. */
    st->entries = calloc(count ? count : 1, sizeof *st->entries);
    f->by_name = malloc((count ? count : 1) * sizeof *f->by_name);
    index = malloc((count ? count : 1) * sizeof *index);
    if (!st->entries || !f->by_name || !index) {
        status = tg_status_set(TG_ERR_NOMEM, "%s: %s: out of memory", fn, origin);
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        tg_st_entry *e = &st->entries[i];
        *e = spans[i].e;
        e->data = data ? data + spans[i].begin : NULL;
        e->name = st_strdup(spans[i].e.name);
        st->count = i + 1;
        if (!e->name) {
            status = tg_status_set(TG_ERR_NOMEM, "%s: %s: out of memory", fn, origin);
            goto done;
        }
        index[i] = (st_named){e->name, i};
    }
    qsort(index, count, sizeof *index, st_cmp_named);
    for (size_t i = 0; i < count; i++) f->by_name[i] = index[i].index;

done:
    free(index);
    free(spans);
    free(names);
    cJSON_Delete(root);
    return status;
}

/* Validates a file of file_size bytes whose first bytes are in f->pub.buffer (owned by f):
 * all of it, or with header_only its first 8 + N bytes at least, when N is a valid header
 * length (with fewer bytes this fails before it looks further). */
static tg_status st_parse_buffer(st_file *f, const char *fn, const char *origin, uint64_t file_size,
                                 bool header_only) {
    const tg_safetensors *st = &f->pub;
    if (file_size < 8)
        return tg_status_set(TG_ERR_FORMAT,
                             "%s: %s: the file is %" PRIu64 " bytes long, too short for "
                             "the 8-byte header length (truncated file?)",
                             fn, origin, file_size);
    uint64_t n;
    memcpy(&n, st->buffer, sizeof n); /* little-endian, checked at compile time */
    if (n > ST_HEADER_MAX)
        return tg_status_set(TG_ERR_FORMAT,
                             "%s: %s: header length %" PRIu64 " is larger than the limit "
                             "of %u bytes",
                             fn, origin, n, ST_HEADER_MAX);
    if (n > file_size - 8) /* file_size >= 8, so no overflow either way */
        return tg_status_set(TG_ERR_FORMAT,
                             "%s: %s: header length %" PRIu64 " goes beyond the end of "
                             "the %" PRIu64 "-byte file (truncated file?)",
                             fn, origin, n, file_size);
    const unsigned char *bytes = st->buffer;
    return st_parse_header(f, fn, origin, (const char *)bytes + 8, (size_t)n,
                           (size_t)(file_size - 8 - n), header_only ? NULL : bytes + 8 + n);
}

/* Takes ownership of buffer (even on failure): see st_parse_buffer. */
static tg_status st_open(void *buffer, size_t size, uint64_t file_size, bool header_only,
                         const char *fn, const char *origin, tg_safetensors **out) {
    st_file *f = calloc(1, sizeof *f);
    if (!f) {
        free(buffer);
        return tg_status_set(TG_ERR_NOMEM, "%s: %s: out of memory", fn, origin);
    }
    f->pub.buffer = buffer;
    f->pub.buffer_size = size;
    const tg_status s = st_parse_buffer(f, fn, origin, file_size, header_only);
    if (s != TG_OK) {
        tg_safetensors_free(&f->pub);
        return s;
    }
    *out = &f->pub;
    return TG_OK;
}

tg_status tg_safetensors_parse(const void *bytes, size_t size, tg_safetensors **out) {
    if (!out) return tg_status_set(TG_ERR_ARGUMENT, "tg_safetensors_parse: out is NULL");
    *out = NULL;
    if (!bytes && size)
        return tg_status_set(TG_ERR_ARGUMENT, "tg_safetensors_parse: bytes is NULL");
    void *copy = malloc(size ? size : 1);
    if (!copy)
        return tg_status_set(TG_ERR_NOMEM, "tg_safetensors_parse: out of memory for %zu bytes",
                             size);
    if (size) memcpy(copy, bytes, size);
    return st_open(copy, size, size, false, "tg_safetensors_parse", "<memory>", out);
}

tg_status tg_safetensors_read(const char *path, tg_safetensors **out) {
    return tg_safetensors_read_with(path, NULL, out);
}

tg_status tg_safetensors_read_with(const char *path, const tg_safetensors_read_options *opts,
                                   tg_safetensors **out) {
    const char *fn = "tg_safetensors_read";
    if (!out) return tg_status_set(TG_ERR_ARGUMENT, "%s: out is NULL", fn);
    *out = NULL;
    const bool header_only = opts && opts->header_only;
    /* the header alone is read whatever the file's size (it has its own limit) */
    const uint64_t max_bytes = header_only ? UINT64_MAX : opts ? opts->max_bytes : 0;
    int fd;
    uint64_t size;
    tg_status s = tg_file_open_regular(fn, path, max_bytes, &fd, &size);
    if (s != TG_OK) return s;
    char origin[320];
    snprintf(origin, sizeof origin, "'%.300s'", path);

    /* What to read: the whole file, or for the header alone the 8-byte length and then the
     * header if the length is valid (if not, the 8 bytes let st_parse_buffer say why). */
    uint64_t want = size;
    unsigned char head[8];
    size_t have = 0;
    if (header_only && size >= 8) {
        if ((s = tg_file_read_exact(fn, path, fd, head, sizeof head)) != TG_OK) {
            close(fd);
            return s;
        }
        have = sizeof head;
        uint64_t n;
        memcpy(&n, head, sizeof n);
        want = n <= ST_HEADER_MAX && n <= size - 8 ? 8 + n : 8;
    }
    unsigned char *buffer = want < SIZE_MAX ? malloc(want ? (size_t)want : 1) : NULL;
    if (!buffer) {
        close(fd);
        return tg_status_set(TG_ERR_NOMEM, "%s: out of memory reading %" PRIu64 " bytes of %s", fn,
                             want, origin);
    }
    memcpy(buffer, head, have);
    s = tg_file_read_exact(fn, path, fd, buffer + have, (size_t)want - have);
    close(fd);
    if (s != TG_OK) {
        free(buffer);
        return s;
    }
    return st_open(buffer, (size_t)want, size, header_only, fn, origin, out);
}

void tg_safetensors_free(tg_safetensors *st) {
    if (!st) return;
    st_file *f = (st_file *)st; /* every tg_safetensors is the first member of an st_file */
    for (size_t i = 0; i < st->count; i++) free(st->entries[i].name);
    free(st->entries);
    for (size_t i = 0; i < st->meta_count; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->meta_keys);
    free(st->meta_values);
    free(st->buffer);
    free(f->by_name);
    free(f);
}

const tg_st_entry *tg_safetensors_find(const tg_safetensors *st, const char *name) {
    TG_CHECK_ARG(st);
    TG_CHECK_ARG(name);
    const st_file *f = (const st_file *)st;
    size_t lo = 0, hi = st->count; /* binary search over the name index */
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        const tg_st_entry *e = &st->entries[f->by_name[mid]];
        const int c = strcmp(name, e->name);
        if (c == 0) return e;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *tg_safetensors_meta(const tg_safetensors *st, const char *key) {
    TG_CHECK_ARG(st);
    TG_CHECK_ARG(key);
    for (size_t i = 0; i < st->meta_count; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
    return NULL;
}

/* ---------------------------------------------------------------- converting */

/* Entries can be made by hand, so re-check that nbytes and shape agree before reading. */
static tg_status st_entry_check(const char *fn, const tg_st_entry *e) {
    if (!e) return tg_status_set(TG_ERR_ARGUMENT, "%s: entry is NULL", fn);
    const char *name = e->name ? e->name : "<unnamed>";
    int64_t numel;
    if (e->ndim < 0 || e->ndim > TG_MAX_DIMS || !st_dtype_valid(e->dtype) ||
        !st_shape_numel(e->ndim, e->shape, &numel) || numel != e->numel ||
        (uint64_t)numel > SIZE_MAX / tg_dtype_size(e->dtype) ||
        (size_t)numel * tg_dtype_size(e->dtype) != e->nbytes || (!e->data && e->nbytes))
        return tg_status_set(TG_ERR_ARGUMENT,
                             "%s: entry '" ST_MSG_NAME "' is inconsistent (ndim, shape, numel, "
                             "dtype and nbytes disagree)",
                             fn, name);
    return TG_OK;
}

tg_status tg_st_entry_to_tensor(const tg_st_entry *e, tg_tensor **out) {
    if (!out) return tg_status_set(TG_ERR_ARGUMENT, "tg_st_entry_to_tensor: out is NULL");
    *out = NULL;
    tg_status s = st_entry_check("tg_st_entry_to_tensor", e);
    if (s != TG_OK) return s;
    if (e->dtype != TG_DTYPE_F32 && e->dtype != TG_DTYPE_F64)
        return tg_status_set(TG_ERR_FORMAT,
                             "tg_st_entry_to_tensor: tensor '" ST_MSG_NAME "' has dtype %s; a "
                             "float tensor needs F32 or F64",
                             e->name ? e->name : "<unnamed>", tg_dtype_name(e->dtype));
    tg_tensor *t = tg_tensor_new(e->ndim, e->shape);
    const unsigned char *src = e->data; /* may be unaligned: copy element by element */
    if (e->dtype == TG_DTYPE_F32) {
        for (int64_t i = 0; i < e->numel; i++) {
            float v;
            memcpy(&v, src + (size_t)i * 4, 4);
            t->data[i] = (tg_real)v;
        }
    } else {
        for (int64_t i = 0; i < e->numel; i++) {
            double v;
            memcpy(&v, src + (size_t)i * 8, 8);
            t->data[i] = (tg_real)v;
        }
    }
    if (e->name) tg_tensor_set_name(t, e->name);
    *out = t;
    return TG_OK;
}

static bool st_dtype_is_integer(tg_dtype d) {
    return d == TG_DTYPE_BOOL || d == TG_DTYPE_U8 || d == TG_DTYPE_I8 || d == TG_DTYPE_I16 ||
           d == TG_DTYPE_U16 || d == TG_DTYPE_I32 || d == TG_DTYPE_U32 || d == TG_DTYPE_I64 ||
           d == TG_DTYPE_U64;
}

/* Element i of an integer (or BOOL) entry, widened to int64 (read byte-wise: the data may be
 * unaligned). False for a U64 beyond INT64_MAX and for a BOOL byte other than 0 and 1 (the
 * format's bools are one byte, 0 or 1; anything else is not a bool). */
static bool st_integer_at(const tg_st_entry *e, int64_t i, int64_t *v) {
    const unsigned char *p = (const unsigned char *)e->data + (size_t)i * tg_dtype_size(e->dtype);
    union {
        int8_t i8;
        int16_t i16;
        uint16_t u16;
        int32_t i32;
        uint32_t u32;
        int64_t i64;
        uint64_t u64;
    } x;
    memcpy(&x, p, tg_dtype_size(e->dtype));
    switch (e->dtype) {
    case TG_DTYPE_BOOL:
        *v = p[0];
        return p[0] <= 1;
    case TG_DTYPE_U8:
        *v = p[0];
        return true;
    case TG_DTYPE_I8:
        *v = x.i8;
        return true;
    case TG_DTYPE_I16:
        *v = x.i16;
        return true;
    case TG_DTYPE_U16:
        *v = x.u16;
        return true;
    case TG_DTYPE_I32:
        *v = x.i32;
        return true;
    case TG_DTYPE_U32:
        *v = x.u32;
        return true;
    case TG_DTYPE_I64:
        *v = x.i64;
        return true;
    case TG_DTYPE_U64:
        *v = (int64_t)x.u64;
        return x.u64 <= INT64_MAX;
    default:
        return false;
    }
}

/* The checks both integer converters make: a valid entry of an integer or BOOL dtype. */
static tg_status st_integer_check(const char *fn, const tg_st_entry *e, const char *wanted) {
    tg_status s = st_entry_check(fn, e);
    if (s != TG_OK) return s;
    if (!st_dtype_is_integer(e->dtype))
        return tg_status_set(TG_ERR_FORMAT,
                             "%s: tensor '" ST_MSG_NAME "' has dtype %s; %s needs an integer "
                             "or BOOL dtype",
                             fn, e->name ? e->name : "<unnamed>", tg_dtype_name(e->dtype), wanted);
    return TG_OK;
}

/* The error for element i of an integer entry that st_integer_at refused or that is out of
 * int32's range (index tensors). */
static tg_status st_integer_bad(const char *fn, const tg_st_entry *e, int64_t i) {
    const char *name = e->name ? e->name : "<unnamed>";
    const unsigned char *p = (const unsigned char *)e->data + (size_t)i * tg_dtype_size(e->dtype);
    if (e->dtype == TG_DTYPE_BOOL)
        return tg_status_set(TG_ERR_FORMAT,
                             "%s: BOOL tensor '" ST_MSG_NAME "': element %" PRId64
                             " is byte %u, not 0 or 1",
                             fn, name, i, p[0]);
    char value[32];
    if (e->dtype == TG_DTYPE_U64) {
        uint64_t u;
        memcpy(&u, p, 8);
        snprintf(value, sizeof value, "%" PRIu64, u);
    } else {
        int64_t v = 0;
        st_integer_at(e, i, &v);
        snprintf(value, sizeof value, "%" PRId64, v);
    }
    return tg_status_set(TG_ERR_FORMAT,
                         "%s: index tensor '" ST_MSG_NAME "': element %" PRId64
                         " = %s does not fit in int32",
                         fn, name, i, value);
}

tg_status tg_st_entry_to_index(const tg_st_entry *e, tg_index **out) {
    if (!out) return tg_status_set(TG_ERR_ARGUMENT, "tg_st_entry_to_index: out is NULL");
    *out = NULL;
    tg_status s = st_integer_check("tg_st_entry_to_index", e, "an index tensor");
    if (s != TG_OK) return s;
    tg_index *ix = tg_index_new(e->ndim, e->shape);
    if (e->dtype == TG_DTYPE_I32) {
        if (e->nbytes) memcpy(ix->data, e->data, e->nbytes);
    } else {
        for (int64_t i = 0; i < e->numel; i++) {
            int64_t v;
            if (!st_integer_at(e, i, &v) || v < INT32_MIN || v > INT32_MAX) {
                tg_index_free(ix);
                return st_integer_bad("tg_st_entry_to_index", e, i);
            }
            ix->data[i] = (int32_t)v;
        }
    }
    *out = ix;
    return TG_OK;
}

tg_status tg_st_entry_to_mask(const tg_st_entry *e, tg_tensor **out) {
    if (!out) return tg_status_set(TG_ERR_ARGUMENT, "tg_st_entry_to_mask: out is NULL");
    *out = NULL;
    tg_status s = st_integer_check("tg_st_entry_to_mask", e, "a mask");
    if (s != TG_OK) return s;
    tg_tensor *t = tg_tensor_new(e->ndim, e->shape);
    for (int64_t i = 0; i < e->numel; i++) {
        int64_t v;
        if (!st_integer_at(e, i, &v) && e->dtype == TG_DTYPE_BOOL) {
            tg_tensor_free(t);
            return st_integer_bad("tg_st_entry_to_mask", e, i);
        }
        t->data[i] = v != 0 ? 1 : 0; /* a U64 beyond INT64_MAX is nonzero too */
    }
    if (e->name) tg_tensor_set_name(t, e->name);
    *out = t;
    return TG_OK;
}

/* ---------------------------------------------------------------- writing */

typedef struct st_order {
    const tg_st_entry *e;
} st_order;

/* The reference writer's order: dtype rank descending, then name ascending (bytewise). */
static int st_cmp_write(const void *a, const void *b) {
    const tg_st_entry *x = ((const st_order *)a)->e, *y = ((const st_order *)b)->e;
    const int rx = st_dtypes[x->dtype].rank, ry = st_dtypes[y->dtype].rank;
    if (rx != ry) return rx > ry ? -1 : 1;
    return strcmp(x->name, y->name);
}

static bool st_utf8_ok(const char *s) {
    const size_t n = strlen(s);
    return st_utf8_check((const unsigned char *)s, n, false) == n;
}

static tg_status st_write_check(const char *path, const tg_st_entry *entries, size_t count,
                                const char *const *meta_keys, const char *const *meta_values,
                                size_t meta_count) {
    const char *fn = "tg_safetensors_write";
    if (!path || !*path) return tg_status_set(TG_ERR_ARGUMENT, "%s: path is NULL or empty", fn);
    if (count && !entries)
        return tg_status_set(TG_ERR_ARGUMENT, "%s: %zu entries but entries is NULL", fn, count);
    if (meta_count && (!meta_keys || !meta_values))
        return tg_status_set(TG_ERR_ARGUMENT, "%s: %zu metadata pairs but keys or values are NULL",
                             fn, meta_count);
    for (size_t i = 0; i < count; i++) {
        const tg_st_entry *e = &entries[i];
        if (!e->name) return tg_status_set(TG_ERR_ARGUMENT, "%s: entry %zu has no name", fn, i);
        if (strcmp(e->name, "__metadata__") == 0 || !st_utf8_ok(e->name))
            return tg_status_set(TG_ERR_ARGUMENT,
                                 "%s: entry %zu: name '" ST_MSG_NAME "' is reserved or not UTF-8",
                                 fn, i, e->name);
        if (!st_dtype_valid(e->dtype))
            return tg_status_set(TG_ERR_ARGUMENT, "%s: entry '" ST_MSG_NAME "': bad dtype %d", fn,
                                 e->name, (int)e->dtype);
        if (e->ndim < 0 || e->ndim > TG_MAX_DIMS)
            return tg_status_set(TG_ERR_ARGUMENT,
                                 "%s: entry '" ST_MSG_NAME "': ndim %d is not in "
                                 "[0, %d]",
                                 fn, e->name, e->ndim, TG_MAX_DIMS);
        int64_t numel;
        if (!st_shape_numel(e->ndim, e->shape, &numel) ||
            (uint64_t)numel > SIZE_MAX / tg_dtype_size(e->dtype))
            return tg_status_set(TG_ERR_ARGUMENT,
                                 "%s: entry '" ST_MSG_NAME "': negative dimension or size overflow",
                                 fn, e->name);
        /* e->numel is not consulted: the shape is what gets written. */
        const size_t need = (size_t)numel * tg_dtype_size(e->dtype);
        if (need != e->nbytes) {
            char shp[128];
            tg_shape_format(e->ndim, e->shape, shp, sizeof shp);
            return tg_status_set(TG_ERR_ARGUMENT,
                                 "%s: entry '" ST_MSG_NAME "': shape %s of %s needs %zu bytes, "
                                 "nbytes is %zu",
                                 fn, e->name, shp, tg_dtype_name(e->dtype), need, e->nbytes);
        }
        if (need && !e->data)
            return tg_status_set(TG_ERR_ARGUMENT, "%s: entry '" ST_MSG_NAME "' has no data", fn,
                                 e->name);
    }
    for (size_t i = 0; i < meta_count; i++) {
        if (!meta_keys[i] || !meta_values[i])
            return tg_status_set(TG_ERR_ARGUMENT, "%s: metadata pair %zu has a NULL key or value",
                                 fn, i);
        if (!st_utf8_ok(meta_keys[i]) || !st_utf8_ok(meta_values[i]))
            return tg_status_set(TG_ERR_ARGUMENT, "%s: metadata pair %zu is not UTF-8", fn, i);
    }
    return TG_OK;
}

/* Sorted copies of the names must be unique (tensor names, and metadata keys). */
static tg_status st_write_unique(const char **names, size_t n, const char *what) {
    qsort(names, n, sizeof *names, st_cmp_str_ptr);
    for (size_t i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            return tg_status_set(TG_ERR_ARGUMENT,
                                 "tg_safetensors_write: duplicate %s '" ST_MSG_NAME "'", what,
                                 names[i]);
    return TG_OK;
}

/* Adds a JSON integer written exactly (cJSON would go through a double). */
static bool st_json_add_int(cJSON *array, int64_t v) {
    char text[24];
    snprintf(text, sizeof text, "%" PRId64, v);
    cJSON *item = cJSON_CreateRaw(text);
    if (!item) return false;
    if (!cJSON_AddItemToArray(array, item)) {
        cJSON_Delete(item);
        return false;
    }
    return true;
}

static bool st_json_add(cJSON *object, const char *key, cJSON *item) {
    if (!item) return false;
    if (!cJSON_AddItemToObject(object, key, item)) {
        cJSON_Delete(item);
        return false;
    }
    return true;
}

/* The compact header text, padded with spaces to a multiple of 8; NULL if out of memory. */
static char *st_header_build(const st_order *order, size_t count, const char *const *meta_keys,
                             const char *const *meta_values, size_t meta_count, size_t *len) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    bool ok = true;
    if (meta_count) {
        cJSON *meta = cJSON_CreateObject();
        ok = st_json_add(root, "__metadata__", meta);
        for (size_t i = 0; ok && i < meta_count; i++)
            ok = st_json_add(meta, meta_keys[i], cJSON_CreateString(meta_values[i]));
    }
    int64_t offset = 0;
    for (size_t i = 0; ok && i < count; i++) {
        const tg_st_entry *e = order[i].e;
        cJSON *info = cJSON_CreateObject();
        ok = st_json_add(root, e->name, info);
        ok = ok && st_json_add(info, "dtype", cJSON_CreateString(tg_dtype_name(e->dtype)));
        cJSON *shape = cJSON_CreateArray();
        ok = ok && st_json_add(info, "shape", shape);
        for (int d = 0; ok && d < e->ndim; d++) ok = st_json_add_int(shape, e->shape[d]);
        cJSON *offsets = cJSON_CreateArray();
        ok = ok && st_json_add(info, "data_offsets", offsets);
        ok = ok && st_json_add_int(offsets, offset);
        offset += (int64_t)e->nbytes;
        ok = ok && st_json_add_int(offsets, offset);
    }
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json) return NULL;
    const size_t n = strlen(json);
    const size_t padded = (n + 7) / 8 * 8;
    char *header = malloc(padded ? padded : 1);
    if (header) {
        memcpy(header, json, n);
        memset(header + n, ' ', padded - n);
        *len = padded;
    }
    cJSON_free(json);
    return header;
}

static bool st_write_all(int fd, const void *data, size_t len) {
    const unsigned char *p = data;
    while (len) {
        const ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (w == 0) errno = EIO;
            return false;
        }
        p += w;
        len -= (size_t)w;
    }
    return true;
}

/* What tg_file_save_atomic writes: the length, the header, the data in file order. */
typedef struct st_content {
    const char *header;
    size_t header_len;
    const st_order *order;
    size_t count;
} st_content;

static bool st_fill(int fd, void *ctx) {
    const st_content *c = ctx;
    const uint64_t n = c->header_len;
    if (!st_write_all(fd, &n, sizeof n) || !st_write_all(fd, c->header, c->header_len))
        return false;
    for (size_t i = 0; i < c->count; i++)
        if (c->order[i].e->nbytes && !st_write_all(fd, c->order[i].e->data, c->order[i].e->nbytes))
            return false;
    return true;
}

/* Whether a file can be what a save of ours left when it died: a prefix of what st_fill
 * writes, i.e. its first bytes are a header length the reader accepts (the missing ones
 * count as 0) followed by '{'. */
static bool st_temp_looks_ours(int fd, uint64_t size) {
    unsigned char head[9] = {0};
    const size_t want = size < sizeof head ? (size_t)size : sizeof head;
    size_t got = 0;
    while (got < want) {
        const ssize_t r = read(fd, head + got, want - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        got += (size_t)r;
    }
    uint64_t n;
    memcpy(&n, head, sizeof n);
    return n <= ST_HEADER_MAX && (want < 9 || head[8] == '{');
}

int tg_safetensors_remove_stale_temps(const char *path) {
    return tg_file_remove_stale_temps(path, st_temp_looks_ours);
}

tg_status tg_safetensors_write(const char *path, const tg_st_entry *entries, size_t count,
                               const char *const *meta_keys, const char *const *meta_values,
                               size_t meta_count) {
    const char *fn = "tg_safetensors_write";
    tg_status s = st_write_check(path, entries, count, meta_keys, meta_values, meta_count);
    if (s != TG_OK) return s;

    const size_t most = count > meta_count ? count : meta_count;
    st_order *order = malloc((count ? count : 1) * sizeof *order);
    const char **names = malloc((most ? most : 1) * sizeof *names);
    char *header = NULL;
    if (!order || !names) {
        s = tg_status_set(TG_ERR_NOMEM, "%s: '%.300s': out of memory", fn, path);
        goto done;
    }
    for (size_t i = 0; i < count; i++) names[i] = entries[i].name;
    if ((s = st_write_unique(names, count, "tensor name")) != TG_OK) goto done;
    for (size_t i = 0; i < meta_count; i++) names[i] = meta_keys[i];
    if ((s = st_write_unique(names, meta_count, "metadata key")) != TG_OK) goto done;

    for (size_t i = 0; i < count; i++) order[i].e = &entries[i];
    qsort(order, count, sizeof *order, st_cmp_write);
    size_t header_len = 0;
    header = st_header_build(order, count, meta_keys, meta_values, meta_count, &header_len);
    if (!header) {
        s = tg_status_set(TG_ERR_NOMEM, "%s: '%.300s': out of memory building the header", fn,
                          path);
        goto done;
    }
    if (header_len > ST_HEADER_MAX) {
        s = tg_status_set(TG_ERR_ARGUMENT,
                          "%s: '%.300s': the header would be %zu bytes, more than readers "
                          "accept (%u)",
                          fn, path, header_len, ST_HEADER_MAX);
        goto done;
    }
    tg_safetensors_remove_stale_temps(path);
    st_content content = {header, header_len, order, count};
    s = tg_file_save_atomic("tg_safetensors_write", path, st_fill, &content);

done:
    free(header);
    free(names);
    free(order);
    return s;
}
