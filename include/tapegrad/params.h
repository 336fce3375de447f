/* tapegrad/params.h — named parameter lists: PyTorch's state_dict, in C.
 * Layer: nn.
 *
 * A module owns its parameter tensors; a tg_params list only points at them, in
 * registration order, under their state_dict names ("gru.weight_ih_l0", "fc.bias").
 * tg_module_params (tapegrad/module.h) builds a module tree's list, so the keys and their
 * order equal PyTorch's state_dict; an optimizer adds its state with tg_params_add_count. */
#ifndef TAPEGRAD_PARAMS_H
#define TAPEGRAD_PARAMS_H

#include "tapegrad/tensor.h"

typedef struct tg_params {
    tg_tensor **tensors;
    char **names;
    bool *is_count; /* per entry: it holds counts (tg_params_add_count) */
    size_t count, capacity;
} tg_params;

tg_params *tg_params_new(void);
/* Frees the list (names included), not the tensors: their modules own them. */
void tg_params_free(tg_params *params);
/* Appends `t` under `name`; the tensor's own name becomes `name` too. Duplicate names
 * are a misuse (tg_fail). */
void tg_params_add(tg_params *params, const char *name, tg_tensor *t);
/* Appends `t` under `name`, leaving the tensor's own name as it is (tg_module_params). */
void tg_params_add_keep_name(tg_params *params, const char *name, tg_tensor *t);
/* The same for a tensor of counts (an optimizer's steps, a scheduler's epoch): its values must
 * be non-negative integers, which tg_params_load checks. */
void tg_params_add_count(tg_params *params, const char *name, tg_tensor *t);
/* Appends every entry of `child` as "<prefix>.<name>" (prefix NULL or "" adds as is), counts
 * as counts. */
void tg_params_extend(tg_params *params, const char *prefix, const tg_params *child);
/* The tensor registered under `name`, or NULL. */
tg_tensor *tg_params_find(const tg_params *params, const char *name);
void tg_params_zero_grad(const tg_params *params);
int64_t tg_params_numel(const tg_params *params); /* total scalar count */

/* Checkpoints (safetensors; see tapegrad/safetensors.h). Save writes every parameter in the
 * build's precision (F32 or F64) under its name, with the metadata {"format": "pt",
 * "framework": "tapegrad"}, safely (temporary file, fsync, rename). A file already at path is
 * replaced only if it is a tapegrad checkpoint (a safetensors file whose metadata has
 * "framework": "tapegrad"): anything else is refused with TG_ERR_IO and left untouched,
 * unless opts->force. Stale temporary files of crashed saves in the folder are removed.
 * Load is strict, like PyTorch's load_state_dict(strict=True): every parameter must be in
 * the file with the same shape (F32 or F64, converted), and the file may hold no other
 * tensor unless allow_extra is set. Values must be finite (after conversion to the build's
 * precision) unless allow_nonfinite, and counts (tg_params_add_count) non-negative integers
 * always; an offending tensor is named in the message. On failure nothing is modified. */
typedef struct tg_save_options {
    bool force; /* replace a file at path even if it is not a tapegrad checkpoint */
} tg_save_options;

typedef struct tg_load_options {
    bool allow_extra;     /* the file may hold tensors that the list has not */
    bool allow_nonfinite; /* accept NaN and ±inf values (to inspect a run that diverged) */
    uint64_t max_bytes;   /* larger files are refused; 0 means TG_FILE_MAX_BYTES_DEFAULT */
} tg_load_options;

tg_status tg_params_save(const tg_params *params, const char *path); /* default options */
tg_status tg_params_save_with(const tg_params *params, const char *path,
                              const tg_save_options *opts); /* opts NULL: the defaults */
tg_status tg_params_load(tg_params *params, const char *path, bool allow_extra);
tg_status tg_params_load_with(tg_params *params, const char *path, const tg_load_options *opts);

#endif
