/* Saving and loading named parameter lists as safetensors (tg_params_save / _load). */
#include "tapegrad/params.h"
#include "tapegrad/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The metadata of every checkpoint. "format": "pt" is what PyTorch-side loaders expect of a
 * state_dict; "framework": "tapegrad" marks the files that a save may replace. */
static const char *const meta_keys[] = {"format", "framework"};
static const char *const meta_values[] = {"pt", "tapegrad"};
#define MARK_KEY   "framework"
#define MARK_VALUE "tapegrad"

/* TG_OK when nothing is at path or a tapegrad checkpoint is: what a save may replace. Only the
 * header is read, however large the file. (Whatever cannot be stat'ed is left to the save,
 * which then fails to write there for the same reason.) */
static tg_status check_replaceable(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) return TG_OK;
    tg_safetensors *st = NULL;
    const tg_safetensors_read_options header = {.header_only = true};
    const char *why = NULL;
    char reason[200];
    if (tg_safetensors_read_with(path, &header, &st) != TG_OK) {
        snprintf(reason, sizeof reason, "%s", tg_error_message());
        why = reason;
    } else {
        const char *mark = tg_safetensors_meta(st, MARK_KEY);
        if (!mark || strcmp(mark, MARK_VALUE) != 0)
            why = "a safetensors file without \"" MARK_KEY "\": \"" MARK_VALUE "\" in its metadata";
        tg_safetensors_free(st);
    }
    if (!why) return TG_OK;
    return tg_status_set(TG_ERR_IO,
                         "tg_params_save: refusing to replace '%.160s', which is not a tapegrad "
                         "checkpoint (%s); tg_save_options.force replaces it",
                         path, why);
}

tg_status tg_params_save(const tg_params *p, const char *path) {
    if (!p) return tg_status_null_argument(__func__, "params");
    TG_CHECK_ARG_STATUS(path);
    return tg_params_save_with(p, path, NULL);
}

tg_status tg_params_save_with(const tg_params *p, const char *path, const tg_save_options *opts) {
    if (!p) return tg_status_null_argument(__func__, "params");
    TG_CHECK_ARG_STATUS(path);
    if (!(opts && opts->force)) {
        const tg_status s = check_replaceable(path);
        if (s != TG_OK) return s;
    }
    tg_st_entry *entries = calloc(p->count + 1, sizeof *entries);
    if (!entries)
        return tg_status_set(TG_ERR_NOMEM, "tg_params_save: '%.300s': out of memory", path);
    for (size_t i = 0; i < p->count; i++) {
        const tg_tensor *t = p->tensors[i];
        entries[i] = (tg_st_entry){
            .name = p->names[i],
#ifdef TG_DOUBLE
            .dtype = TG_DTYPE_F64,
#else
            .dtype = TG_DTYPE_F32,
#endif
            .ndim = t->ndim,
            .numel = t->numel,
            .nbytes = (size_t)t->numel * sizeof(tg_real),
            .data = t->data,
        };
        memcpy(entries[i].shape, t->shape, sizeof t->shape);
    }
    const tg_status status = tg_safetensors_write(path, entries, p->count, meta_keys, meta_values,
                                                  sizeof meta_keys / sizeof meta_keys[0]);
    free(entries);
    return status;
}

/* Checks that every parameter is present with its shape and a float dtype, before any
 * parameter is touched, so that a failed load leaves the model as it was. */
static tg_status check_file_fits(const tg_params *p, const tg_safetensors *st, const char *path,
                                 bool allow_extra) {
    char want[96], got[96];
    for (size_t i = 0; i < p->count; i++) {
        const tg_tensor *t = p->tensors[i];
        const tg_st_entry *e = tg_safetensors_find(st, p->names[i]);
        if (!e)
            return tg_status_set(
                TG_ERR_MISSING, "tg_params_load: '%.200s': tensor '%s' %s is missing from the file",
                path, p->names[i], tg_shape_format(t->ndim, t->shape, want, sizeof want));
        bool same = e->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = e->shape[d] == t->shape[d];
        if (!same)
            return tg_status_set(TG_ERR_SHAPE,
                                 "tg_params_load: '%.200s': tensor '%s' has shape %s in the file, "
                                 "the model needs %s",
                                 path, p->names[i],
                                 tg_shape_format(e->ndim, e->shape, got, sizeof got),
                                 tg_shape_format(t->ndim, t->shape, want, sizeof want));
        if (e->dtype != TG_DTYPE_F32 && e->dtype != TG_DTYPE_F64)
            return tg_status_set(TG_ERR_FORMAT,
                                 "tg_params_load: '%.200s': tensor '%s' is %s; parameters must be "
                                 "F32 or F64",
                                 path, p->names[i], tg_dtype_name(e->dtype));
    }
    if (!allow_extra)
        for (size_t k = 0; k < st->count; k++)
            if (!tg_params_find(p, st->entries[k].name))
                return tg_status_set(TG_ERR_FORMAT,
                                     "tg_params_load: '%.200s': unexpected tensor '%s' in the file "
                                     "(the model has no such parameter)",
                                     path, st->entries[k].name);
    return TG_OK;
}

/* Element i of an F32 or F64 entry, exactly (as a double). The data may be unaligned:
 * copied byte-wise. */
static double entry_value(const tg_st_entry *e, int64_t i) {
    const unsigned char *src = e->data;
    if (e->dtype == TG_DTYPE_F32) {
        float v;
        memcpy(&v, src + (size_t)i * 4, 4);
        return v;
    }
    double v;
    memcpy(&v, src + (size_t)i * 8, 8);
    return v;
}

/* The values the load would store, in the build's precision (where a large F64 value becomes
 * ±inf in float32): finite unless allowed, and counts non-negative integers. */
static tg_status check_values(const tg_st_entry *e, const char *path, bool is_count,
                              bool allow_nonfinite) {
    for (int64_t i = 0; i < e->numel; i++) {
        const double raw = entry_value(e, i), v = (double)(tg_real)raw;
        if (is_count && !(v >= 0 && isfinite(v) && v == floor(v)))
            return tg_status_set(TG_ERR_FORMAT,
                                 "tg_params_load: '%.200s': count '%s' holds %g at index %lld; "
                                 "a step or epoch count must be a non-negative integer",
                                 path, e->name, raw, (long long)i);
        if (!is_count && !allow_nonfinite && !isfinite(v)) {
            char value[32] = "NaN";
            if (!isnan(raw)) snprintf(value, sizeof value, "%g", raw);
            return tg_status_set(TG_ERR_FORMAT,
                                 "tg_params_load: '%.200s': tensor '%s' holds %s at index %lld%s "
                                 "(tg_load_options.allow_nonfinite accepts it)",
                                 path, e->name, value, (long long)i,
                                 isfinite(raw) ? ", beyond the range of " TG_REAL_NAME : "");
        }
    }
    return TG_OK;
}

tg_status tg_params_load(tg_params *p, const char *path, bool allow_extra) {
    if (!p) return tg_status_null_argument(__func__, "params");
    TG_CHECK_ARG_STATUS(path);
    const tg_load_options opts = {.allow_extra = allow_extra};
    return tg_params_load_with(p, path, &opts);
}

tg_status tg_params_load_with(tg_params *p, const char *path, const tg_load_options *opts) {
    if (!p) return tg_status_null_argument(__func__, "params");
    TG_CHECK_ARG_STATUS(path);
    const tg_load_options defaults = {0};
    if (!opts) opts = &defaults;
    tg_safetensors_remove_stale_temps(path);
    tg_safetensors *st = NULL;
    const tg_safetensors_read_options read = {.max_bytes = opts->max_bytes};
    tg_status status = tg_safetensors_read_with(path, &read, &st);
    if (status != TG_OK) return status;
    status = check_file_fits(p, st, path, opts->allow_extra);
    for (size_t i = 0; status == TG_OK && i < p->count; i++)
        status = check_values(tg_safetensors_find(st, p->names[i]), path, p->is_count[i],
                              opts->allow_nonfinite);
    /* Every check passed: from here on nothing can fail. */
    for (size_t i = 0; status == TG_OK && i < p->count; i++) {
        const tg_st_entry *e = tg_safetensors_find(st, p->names[i]);
        tg_real *dst = p->tensors[i]->data;
        for (int64_t k = 0; k < e->numel; k++) dst[k] = (tg_real)entry_value(e, k);
    }
    tg_safetensors_free(st);
    return status;
}
