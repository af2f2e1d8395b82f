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
    void (*release)(tg_module *m); /* frees m->impl; NULL: impl is one block of impl_size bytes */
    size_t impl_size;
    /* tg_module_set_recompute: the forward cuts itself into segments (an RNN's chunks of time,
     * a ResNet's blocks) rather than running as one */
    bool segments_itself;
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
    tg_module *parent;       /* the module that adopted this one (NULL: none yet) */
    int64_t recompute;       /* tg_module_set_recompute's span; 0: off */
    void *impl;              /* kind-specific state */
    tgi_retired retired;     /* tg_module_free (of its root) */
};

/* A module with no parameters yet; its name is printf-formatted; a class without release gets
 * m->impl zeroed, impl_size bytes. NULL with a message on error. */
TGI_HIDDEN tg_module *tgi_module_new(tg_ctx *ctx, const tgi_module_class *cls, const char *fmt, ...)
    TGI_PRINTF(3, 4);
/* A parameter "<module name>.<local>" of the given shape, initialised, requiring a gradient. */
TGI_HIDDEN tg_tensor *tgi_module_param(tg_module *m, const char *local, int ndim,
                                       const int64_t *shape, const tg_init *init, uint64_t seed);
/* TG_ERR_INVALID naming the limit when "<m's name>.<local>" is too long for a label. */
TGI_HIDDEN tg_status tgi_check_part_length(const tg_module *m, const char *kind, const char *local);
/* Names in a module tree are unique (models/module_names.c): TG_ERR_INVALID, naming both,
 * when a new parameter or buffer `label` of m, or child with its whole tree, would reuse a name
 * of m's tree (a module's, a tensor's, or one among a module's names). */
TGI_HIDDEN tg_status tgi_check_new_label(const tg_module *m, const char *what, const char *label);
TGI_HIDDEN tg_status tgi_check_new_child(const tg_module *m, const tg_module *child);
/* Registers t (persistent, labelled) as part of the module's saved state, not trained. */
TGI_HIDDEN tg_status tgi_module_buffer(tg_module *m, tg_tensor *t);
/* Frees a module tree a constructor made and never handed out (its error path) outright
 * (tg_module_free keeps the structs: see tgi_retired). NULL: nothing. */
TGI_HIDDEN void tgi_module_destroy(tg_module *m);
/* Adopts child (freed with m); on failure frees child and returns an error. */
TGI_HIDDEN tg_status tgi_module_adopt(tg_module *m, tg_module *child);
/* Room to build a child's name "<parent>.<what>"; labels keep TG_LABEL_MAX - 1 chars of it. */
#define TGI_NAME_MAX (2 * TG_LABEL_MAX + 32)
/* Children "<m's name>.<what>" adopted by m: NULL when making or adopting failed (m still frees
 * what it adopted before). */
TGI_HIDDEN tg_module *tgi_child_linear(tg_module *m, const char *what, int64_t in, int64_t out,
                                       const tg_init *init, uint64_t seed);
TGI_HIDDEN tg_module *tgi_child_norm(tg_module *m, const char *what, tg_norm_kind kind,
                                     int64_t features);
/* relu(m(x) + residual) (residual NULL: none) for a norm module m, its output labelled `label`
 * (NULL: not): one tg_batch_norm_relu for batch norm (the same numbers as the three ops), the
 * three ops otherwise. */
TGI_HIDDEN tg_tensor *tgi_norm_relu(tg_module *m, tg_tape *tape, tg_tensor *x, tg_tensor *residual,
                                    const char *label);
/* Fills t by init with the fans of a grouped convolution weight [out, in/groups, k...]:
 * fan_in = in/groups * k, fan_out = out/groups * k (groups 1: tg_init_tensor). */
TGI_HIDDEN tg_status tgi_init_grouped(tg_tensor *t, const tg_init *init, int64_t groups,
                                      uint64_t seed);
/* The config's initialiser, or `fallback` when the config's is all zero. */
TGI_HIDDEN tg_init tgi_init_or(const tg_init *init, tg_init fallback);
/* a x b, a size a layer constructor derives from its config (stacked gate rows, a flattened
 * image): -1, after an error "<layer> '<name>': <a_what> a x <b_what> b is more than 2^40",
 * when a factor is < 1 or the product overflows or exceeds what a tensor holds. */
TGI_HIDDEN int64_t tgi_layer_size(tg_ctx *ctx, const char *layer, const char *name,
                                  const char *a_what, int64_t a, const char *b_what, int64_t b);
/* A seed derived from a base seed and a position, so layers differ but stay reproducible. */
TGI_HIDDEN uint64_t tgi_seed_mix(uint64_t seed, uint64_t salt);

/* ---- optimizer snapshots (models/optim.c), for the step guard's rollback ----------------- */

TGI_HIDDEN tg_ctx *tgi_optimizer_ctx(const tg_optimizer *opt);
/* Its first parameter (every optimizer has one): a persistent tensor's header to copy. */
TGI_HIDDEN const tg_tensor *tgi_optimizer_first_param(const tg_optimizer *opt);
/* Step counts in a snapshot: one per parameter, then the optimizer's (the schedule's position). */
TGI_HIDDEN int tgi_optimizer_state_steps(const tg_optimizer *opt);
/* Floats in a snapshot of the parameters and every state buffer (momentum, Adam's m and v). */
TGI_HIDDEN int64_t tgi_optimizer_state_floats(const tg_optimizer *opt);
/* Copies the parameters, the state buffers, the per-parameter step counts (Adam's bias
 * correction) and the optimizer's step count (the schedule's position) out to
 * floats[tgi_optimizer_state_floats] and steps[tgi_optimizer_state_steps], or back in; the
 * learning rate, the schedule and the rest of the configuration are not part of it. */
TGI_HIDDEN void tgi_optimizer_save(const tg_optimizer *opt, float *floats, int64_t *steps);
TGI_HIDDEN void tgi_optimizer_load(tg_optimizer *opt, const float *floats, const int64_t *steps);
/* The step guard's factor on the rate (1: none); tg_optimizer_lr includes it. */
TGI_HIDDEN void tgi_optimizer_set_lr_scale(tg_optimizer *opt, double scale);

/* ---- schedules (models/schedule.c) ---------------------------------------------------------- */

/* The rate of schedule s at step with base rate lr (s->lr ignored): tg_schedule_lr's formula. */
TGI_HIDDEN float tgi_schedule_rate(const tg_schedule *s, float lr, int64_t step);
/* TG_OK, or TG_ERR_INVALID with a message naming the field for a schedule an optimizer of base
 * rate lr cannot follow. */
TGI_HIDDEN tg_status tgi_schedule_check(tg_ctx *ctx, const tg_schedule *s, float lr);

/* ---- where saves write (models/save_target.c) ---------------------------------------------- */

/* What mkstemp fills in after the target's name: "<target>.tmp-XXXXXX". */
#define TGI_TEMP_SUFFIX ".tmp-XXXXXX"

/* The file a save of path replaces: path, or where its symbolic links lead; it is absent or a
 * regular file, in an existing writable folder. NULL with "<verb> '<path>': ..." recorded.
 * Free with tgi_free_save_target. */
TGI_HIDDEN char *tgi_save_target(tg_ctx *ctx, const char *verb, const char *path);
TGI_HIDDEN void tgi_free_save_target(tg_ctx *ctx, char *target);
/* Takes the lock that marks a temporary file as being written (false if another holds it). */
TGI_HIDDEN bool tgi_lock_temp(int fd);
/* Removes the temporary files of target left by saves that died (no lock held on them). */
TGI_HIDDEN void tgi_remove_stale_temps(tg_ctx *ctx, const char *target);

/* tg_save_safetensors with string metadata: n_meta pairs meta[2k] (key), meta[2k + 1] (value). */
TGI_HIDDEN tg_status tgi_save_safetensors_meta(tg_ctx *ctx, const char *path,
                                               tg_tensor *const *tensors, int n,
                                               const char *const *meta, int n_meta);

#endif
