/* tapegrad/module.h — the module tree, PyTorch's nn.Module in C. Layer: nn.
 *
 * Every module struct (tg_linear_layer, tg_gru, tg_transformer, a model, a user's own module)
 * has a tg_module as its FIRST member, so that a pointer to the module is a pointer to its
 * tg_module and back. The tg_module holds the type (name, release and repr hooks), the named
 * children and the named parameters in registration order, and the training flag:
 *
 *     typedef struct seq2seq { tg_module module; tg_gru *encoder; tg_tensor *w; } seq2seq;
 *     static const tg_module_type seq2seq_type = {"Seq2Seq", NULL, NULL};
 *     seq2seq *m = tg_xcalloc(1, sizeof *m);
 *     tg_module_init(&m->module, &seq2seq_type);
 *     m->encoder = tg_gru_new(o);
 *     tg_module_add_child(&m->module, "encoder", &m->encoder->base.module);
 *     tg_module_add_param(&m->module, "weight", m->w = ...);
 *
 * (TG_MODULE_ADD(m, encoder, tg_gru_new(o)) does the two encoder lines in one.)
 *
 * The tree owns what is registered: tg_module_free frees the children, the parameter tensors
 * and the struct (allocated with malloc/tg_xcalloc). Names follow state_dict: a module's own
 * parameters first, then each child's under "<child>.", so tg_module_params lists the keys of
 * PyTorch's state_dict in its order. No call here renames a tensor. */
#ifndef TAPEGRAD_MODULE_H
#define TAPEGRAD_MODULE_H

#include "tapegrad/params.h"

#include <stdio.h>

typedef struct tg_module tg_module;

typedef struct tg_module_type {
    const char *name; /* what print shows: "Linear", "GRU", ... */
    /* Frees what the module holds beyond its registered children and parameters (an array of
     * pointers, an options copy on the heap); NULL when there is nothing. Not the struct. */
    void (*release)(tg_module *m);
    /* PyTorch's extra_repr: the text inside the parentheses ("in_features=4, ..."), written
     * into buf (snprintf rules); NULL for none. */
    void (*extra_repr)(const tg_module *m, char *buf, size_t size);
} tg_module_type;

struct tg_module {
    const tg_module_type *type;
    bool training; /* train() / eval(): dropout in this module is active only when set */
    size_t num_children, num_params;
    char **child_names;
    tg_module **children;
    char **param_names;
    tg_tensor **params;
    tg_params *state; /* tg_module_params' list, or NULL until asked for */
};

/* Starts an empty module of `type`, in training mode (PyTorch's default). */
void tg_module_init(tg_module *m, const tg_module_type *type);
/* Registers `child` under `name` (a distinct, non-empty name without '.'); the tree owns it.
 * NULL children are skipped, as PyTorch lists no None. */
void tg_module_add_child(tg_module *m, const char *name, tg_module *child);
/* PyTorch's `self.encoder = nn.GRU(...)` in one line: TG_MODULE_ADD(m, encoder, tg_gru_new(o))
 * stores the new module in m->encoder (the compiler checks that the types agree) and registers
 * it under the field's name, "encoder". m is a pointer to a struct whose first member is its
 * tg_module, named `module`; the child is any module (its first member, or its base's, is the
 * tg_module, so the pointer converts). */
#define TG_MODULE_ADD(m, field, child)                                                             \
    tg_module_add_child(&(m)->module, #field, (tg_module *)(void *)((m)->field = (child)))
/* Registers the long-lived tensor `t` under `name`; the module owns it. NULL is skipped (a
 * Linear without bias), as state_dict lists no None. An unnamed tensor takes `name` as its
 * own (tape listings show "weight_ih"); a named one keeps its name. */
void tg_module_add_param(tg_module *m, const char *name, tg_tensor *t);

/* The parameters of the tree below m under their state_dict names ("encoder.weight_ih_l0"),
 * in state_dict order, for the optimizers, tg_params_save / tg_params_load and gradient
 * clipping. The list belongs to m (tg_module_free frees it): built on the first call and
 * returned again by later ones, so an optimizer may keep it. Register everything first:
 * adding to m drops the list, adding below m afterwards is not seen. */
tg_params *tg_module_params(tg_module *m);
int64_t tg_module_numel(const tg_module *m); /* scalar count of every parameter in the tree */

/* PyTorch's repr(module): "GRU(128, 256, batch_first=True)", children indented by two. */
char *tg_module_repr(const tg_module *m);          /* a new string: free() it */
void tg_module_print(const tg_module *m, FILE *f); /* repr and a newline */

/* Sets the training flag of the module and of every module below it (module.train(on)). */
void tg_module_train(tg_module *m, bool on);
void tg_module_eval(tg_module *m); /* tg_module_train(m, false) */

/* Frees the module, its whole subtree, every registered parameter and the struct. NULL: no-op. */
void tg_module_free(tg_module *m);

/* A module that is nothing but its children and parameters (a container), on the heap. */
tg_module *tg_module_new(const tg_module_type *type);
/* nn.ModuleList: children "0", "1", ... added with tg_module_add_child. */
tg_module *tg_module_list_new(void);

#endif
