/* Saving and loading named parameter lists as safetensors (tg_params_save / _load). */
#include "tapegrad/params.h"
#include "tapegrad/safetensors.h"

#include <stdlib.h>
#include <string.h>

tg_status tg_params_save(const tg_params *p, const char *path) {
    if (!p) return tg_status_null_argument(__func__, "params");
    TG_CHECK_ARG_STATUS(path);
    tg_st_entry *entries = calloc(p->count + 1, sizeof *entries);
    if (!entries) return tg_status_set(TG_ERR_NOMEM, "save %s: out of memory", path);
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
    const char *keys[] = {"format", "framework"}, *values[] = {"pt", "tapegrad"};
    const tg_status status = tg_safetensors_write(path, entries, p->count, keys, values, 2);
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
            return tg_status_set(TG_ERR_MISSING, "load %s: tensor '%s' %s is missing from the file",
                                 path, p->names[i], tg_shape_format(t->ndim, t->shape, want, sizeof want));
        bool same = e->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = e->shape[d] == t->shape[d];
        if (!same)
            return tg_status_set(TG_ERR_SHAPE, "load %s: tensor '%s' has shape %s in the file, the model needs %s",
                                 path, p->names[i], tg_shape_format(e->ndim, e->shape, got, sizeof got),
                                 tg_shape_format(t->ndim, t->shape, want, sizeof want));
        if (e->dtype != TG_DTYPE_F32 && e->dtype != TG_DTYPE_F64)
            return tg_status_set(TG_ERR_FORMAT, "load %s: tensor '%s' is %s; parameters must be F32 or F64",
                                 path, p->names[i], tg_dtype_name(e->dtype));
    }
    if (!allow_extra)
        for (size_t k = 0; k < st->count; k++)
            if (!tg_params_find(p, st->entries[k].name))
                return tg_status_set(TG_ERR_FORMAT,
                                     "load %s: unexpected tensor '%s' in the file (the model has no such parameter)",
                                     path, st->entries[k].name);
    return TG_OK;
}

tg_status tg_params_load(tg_params *p, const char *path, bool allow_extra) {
    if (!p) return tg_status_null_argument(__func__, "params");
    TG_CHECK_ARG_STATUS(path);
    tg_safetensors *st = NULL;
    tg_status status = tg_safetensors_read(path, &st);
    if (status != TG_OK) return status;
    status = check_file_fits(p, st, path, allow_extra);
    for (size_t i = 0; status == TG_OK && i < p->count; i++) {
        tg_tensor *loaded = NULL;
        status = tg_st_entry_to_tensor(tg_safetensors_find(st, p->names[i]), &loaded);
        if (status == TG_OK) tg_tensor_copy_from(p->tensors[i], loaded->data);
        tg_tensor_free(loaded);
    }
    tg_safetensors_free(st);
    return status;
}
