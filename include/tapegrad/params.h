/* tapegrad/params.h — named parameter lists: PyTorch's state_dict, in C.
 * Layer: nn.
 *
 * A module owns its parameter tensors; a tg_params list only points at them, in
 * registration order, under their state_dict names ("gru.weight_ih_l0", "fc.bias").
 * A model builds its list by extending it with each child's list under the child's
 * attribute name, so the keys and their order equal PyTorch's state_dict. */
#ifndef TAPEGRAD_PARAMS_H
#define TAPEGRAD_PARAMS_H

#include "tapegrad/tensor.h"

typedef struct tg_params {
    tg_tensor **tensors;
    char **names;
    size_t count, capacity;
} tg_params;

tg_params *tg_params_new(void);
/* Frees the list (names included), not the tensors: their modules own them. */
void tg_params_free(tg_params *params);
/* Appends `t` under `name`; the tensor's own name becomes `name` too. Duplicate names
 * are a misuse (tg_fail). */
void tg_params_add(tg_params *params, const char *name, tg_tensor *t);
/* Appends every entry of `child` as "<prefix>.<name>" (prefix NULL or "" adds as is). */
void tg_params_extend(tg_params *params, const char *prefix, const tg_params *child);
/* The tensor registered under `name`, or NULL. */
tg_tensor *tg_params_find(const tg_params *params, const char *name);
void tg_params_zero_grad(const tg_params *params);
int64_t tg_params_numel(const tg_params *params); /* total scalar count */

/* Checkpoints (safetensors; see tapegrad/safetensors.h). Save writes every parameter in the
 * build's precision (F32 or F64) under its name, safely (temporary file, fsync, rename).
 * Load is strict, like PyTorch's load_state_dict(strict=True): every parameter must be in
 * the file with the same shape (F32 or F64, converted), and the file may hold no other
 * tensor unless allow_extra is set. On failure nothing is modified. */
tg_status tg_params_save(const tg_params *params, const char *path);
tg_status tg_params_load(tg_params *params, const char *path, bool allow_extra);

#endif
