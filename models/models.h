/*
 * models/models.h — what the layers share: the module structure and its class table.
 */
#ifndef TAPEGRAD_MODELS_H
#define TAPEGRAD_MODELS_H

#include "autograd/internal.h"

/* What distinguishes one kind of module from another. */
typedef struct tgi_module_class {
    const char *kind;
    tg_tensor *(*forward)(tg_module *m, tg_tape *tape, tg_tensor *x);
    void (*release)(tg_module *m); /* frees m->impl (may be NULL) */
} tgi_module_class;

struct tg_module {
    tg_ctx *ctx;
    char name[TG_LABEL_MAX];
    const tgi_module_class *cls;
    tg_tensor **params;      /* own parameters */
    int n_params, cap_params;
    tg_module **children;
    int n_children, cap_children;
    tg_tensor **buffers;     /* state that is not trained (running statistics) */
    int n_buffers, cap_buffers;
    bool training;
    void *impl;              /* kind-specific state */
};

/* A module with no parameters yet; its name is printf-formatted. NULL with a message on error. */
TGI_HIDDEN tg_module *tgi_module_new(tg_ctx *ctx, const tgi_module_class *cls, const char *fmt, ...)
    TGI_PRINTF(3, 4);
/* A parameter "<module name>.<local>" of the given shape, initialised, requiring a gradient. */
TGI_HIDDEN tg_tensor *tgi_module_param(tg_module *m, const char *local, int ndim,
                                       const int64_t *shape, const tg_init *init, uint64_t seed);
/* Registers t (persistent, labelled) as part of the module's saved state, not trained. */
TGI_HIDDEN tg_status tgi_module_buffer(tg_module *m, tg_tensor *t);
/* Adopts child (freed with m); on failure frees child and returns an error. */
TGI_HIDDEN tg_status tgi_module_adopt(tg_module *m, tg_module *child);
/* The config's initialiser, or `fallback` when the config's is all zero. */
TGI_HIDDEN tg_init tgi_init_or(const tg_init *init, tg_init fallback);
/* A seed derived from a base seed and a position, so layers differ but stay reproducible. */
TGI_HIDDEN uint64_t tgi_seed_mix(uint64_t seed, uint64_t salt);

#endif
