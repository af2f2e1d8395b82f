/*
 * models/layers.c — linear, normalisation, MLP and residual MLP modules.
 */
#include "models/models.h"

#include <string.h>

/* ---- linear -------------------------------------------------------------------------------- */

typedef struct linear_impl {
    tg_tensor *zero_bias;    /* when bias is off: a constant, so the fused linear op still serves */
} linear_impl;

static tg_tensor *linear_forward(tg_module *m, tg_tape *tape, tg_tensor *x) {
    tg_tensor *bias = m->n_params > 1 ? m->params[1] : ((linear_impl *)m->impl)->zero_bias;
    return tg_linear(tape, x, m->params[0], bias);
}

static const tgi_module_class linear_class = {"linear", linear_forward, NULL, sizeof(linear_impl), false};

tg_module *tg_linear_new(tg_ctx *ctx, const char *name, int64_t in, int64_t out, bool bias,
                         const tg_init *init, uint64_t seed) {
    if (!ctx || tgi_check_name(ctx, "linear", name) != TG_OK) return NULL;
    tg_module *m = tgi_module_new(ctx, &linear_class, "%s", name);
    if (!m) return NULL;
    linear_impl *impl = m->impl;
    tg_init weight_init = tgi_init_or(init, tg_init_xavier(TG_ACT_IDENTITY));
    bool ok = tgi_module_param(m, "weight", TG_SHAPE(out, in), &weight_init, seed);
    if (ok) {
        if (bias) ok = tgi_module_param(m, "bias", TG_SHAPE(out), NULL, 0) != NULL;
        else ok = (impl->zero_bias = tg_zeros(ctx, TG_SHAPE(out))) != NULL;
    }
    if (!ok) {
        tg_module_free(m);
        return NULL;
    }
    return m;
}

/* ---- normalisation ------------------------------------------------------------------------- */

typedef struct norm_impl {
    tg_norm_kind kind;
    tg_tensor *running_mean, *running_var;
} norm_impl;

static tg_tensor *norm_forward(tg_module *m, tg_tape *tape, tg_tensor *x) {
    const norm_impl *impl = m->impl;
    if (impl->kind == TG_NORM_LAYER) return tg_layer_norm(tape, x, m->params[0], m->params[1], 1e-5f);
    return tg_batch_norm(tape, x, m->params[0], m->params[1], impl->running_mean,
                         impl->running_var, 0.1f, 1e-5f, m->training);
}

static const tgi_module_class norm_class = {"norm", norm_forward, NULL, sizeof(norm_impl), false};

tg_tensor *tgi_norm_relu(tg_module *m, tg_tape *tape, tg_tensor *x, tg_tensor *residual,
                         const char *label) {
    const norm_impl *impl = m && m->cls == &norm_class ? m->impl : NULL;
    /* a module recomputed on its own (tg_module_set_recompute) keeps its segment */
    if (!impl || impl->kind != TG_NORM_BATCH || m->recompute) {
        x = tg_module_forward(m, tape, x);
        if (residual) x = tg_add(tape, x, residual);
        if (label) tg_tape_label_next(tape, "%s", label);
        return tg_relu(tape, x);
    }
    if (label) tg_tape_label_next(tape, "%s", label);
    return tg_batch_norm_relu(tape, x, m->params[0], m->params[1], impl->running_mean,
                              impl->running_var, residual, 0.1f, 1e-5f, m->training);
}

tg_module *tg_norm_new(tg_ctx *ctx, const char *name, tg_norm_kind kind, int64_t features) {
    if (!ctx || tgi_check_name(ctx, "norm", name) != TG_OK) return NULL;
    if (kind != TG_NORM_BATCH && kind != TG_NORM_LAYER) {
        tgi_error(ctx, TG_ERR_INVALID, "norm '%s': kind %d is neither batch nor layer norm", name,
                  (int)kind);
        return NULL;
    }
    tg_module *m = tgi_module_new(ctx, &norm_class, "%s", name);
    if (!m) return NULL;
    norm_impl *impl = m->impl;
    const tg_init one = {TG_INIT_CONSTANT, 1.0f, 0, 0, TG_ACT_IDENTITY, false};
    bool ok = tgi_module_param(m, "weight", TG_SHAPE(features), &one, 0) &&
              tgi_module_param(m, "bias", TG_SHAPE(features), NULL, 0);
    impl->kind = kind;
    /* Layer norm has no running statistics (PyTorch's LayerNorm saves weight and bias only):
     * buffers it never used made its checkpoints unloadable by a strict load_state_dict. */
    if (ok && kind == TG_NORM_BATCH) {
        impl->running_mean = tg_set_label(tg_zeros(ctx, TG_SHAPE(features)), "%s.running_mean", name);
        impl->running_var = tg_set_label(tg_ones(ctx, TG_SHAPE(features)), "%s.running_var", name);
        ok = tgi_module_buffer(m, impl->running_mean) == TG_OK &&
             tgi_module_buffer(m, impl->running_var) == TG_OK;
    }
    if (!ok) {
        tg_module_free(m);
        return NULL;
    }
    return m;
}

/* ---- MLP ----------------------------------------------------------------------------------- */

/* A registered op as the activation (config.activation_op): its name and attributes, copied. */
typedef struct activation_call {
    char op[TG_LABEL_MAX];
    char names[TG_MAX_ATTRS][TG_LABEL_MAX];
    tg_named_attr attrs[TG_MAX_ATTRS];
    int n_attrs;
} activation_call;

typedef struct mlp_impl {
    tg_mlp_config config;
    tg_module **linear, **norm; /* per layer (norm NULL where none) */
    uint64_t calls;             /* forward passes so far: each draws fresh dropout masks */
    activation_call custom;     /* used when custom.op[0] */
} mlp_impl;

static tg_tensor *mlp_activate(tg_tape *tape, const mlp_impl *impl, tg_tensor *h) {
    const activation_call *a = &impl->custom;
    if (!a->op[0]) return tg_activate(tape, h, impl->config.activation);
    return tg_call(tape, a->op, &h, 1, a->attrs, a->n_attrs);
}

/* Copies config's activation op, checked against the registry: one input, and exactly the
 * attributes of its signature with their types (tg_call would say so at the first forward;
 * a model is better refused when it is made). */
static tg_status copy_activation_op(tg_ctx *ctx, const char *name, const tg_mlp_config *c,
                                    activation_call *a) {
    int id = tg_op_find(ctx, c->activation_op);
    tg_op_info info;
    if (id < 0 || tg_op_get_info(ctx, id, &info) != TG_OK)
        return tgi_error(ctx, TG_ERR_NOT_FOUND, "mlp '%s': activation op '%s' is not registered "
                         "(load its plugin first)", name, c->activation_op);
    if (info.arity != 1 && info.arity != TG_VARIADIC)
        return tgi_error(ctx, TG_ERR_INVALID, "mlp '%s': activation op '%s' takes %d inputs, "
                         "not one", name, info.name, info.arity);
    if (c->n_activation_attrs != info.n_attrs || (c->n_activation_attrs > 0 && !c->activation_attrs))
        return tgi_error(ctx, TG_ERR_INVALID, "mlp '%s': activation op '%s' takes the attributes "
                         "'%s', %d given", name, info.name, info.attr_signature, c->n_activation_attrs);
    snprintf(a->op, sizeof a->op, "%s", info.name);
    a->n_attrs = c->n_activation_attrs;
    for (int i = 0; i < a->n_attrs; i++) {
        const tg_named_attr *given = &c->activation_attrs[i];
        snprintf(a->names[i], sizeof a->names[i], "%s", given->name ? given->name : "");
        a->attrs[i] = *given;
        a->attrs[i].name = a->names[i];
    }
    return TG_OK;
}

static tg_tensor *mlp_forward(tg_module *m, tg_tape *tape, tg_tensor *x) {
    mlp_impl *impl = m->impl;
    const tg_mlp_config *c = &impl->config;
    tg_tensor *h = x;
    if (!tgi_recomputing(tape)) impl->calls++; /* its second run draws nothing new */
    for (int i = 0; i < c->depth; i++) {
        bool last = i == c->depth - 1;
        if (last) tg_tape_label_next(tape, "%s.out", m->name);
        else tg_tape_label_next(tape, "%s.layer%d.out", m->name, i);
        h = tg_module_forward(impl->linear[i], tape, h);
        if (last) break;
        if (impl->norm[i]) h = tg_module_forward(impl->norm[i], tape, h);
        h = mlp_activate(tape, impl, h);
        if (c->dropout > 0.0f && m->training)
            h = tg_dropout(tape, h, c->dropout, tgi_seed_mix(c->seed, impl->calls * 1024 + (uint64_t)i));
    }
    return h;
}

static void release_mlp(tg_module *m) {
    mlp_impl *impl = m->impl;
    if (!impl) return;
    size_t bytes = (size_t)impl->config.depth * sizeof(tg_module *);
    tgi_free(m->ctx, impl->linear, bytes);
    tgi_free(m->ctx, impl->norm, bytes);
    tgi_free(m->ctx, impl, sizeof *impl);
}

static const tgi_module_class mlp_class = {"mlp", mlp_forward, release_mlp, 0, false};

/* Builds layer i: its linear and, for hidden layers, its norm. */
static tg_status add_mlp_layer(tg_module *m, mlp_impl *impl, int i, const tg_init *init) {
    const tg_mlp_config *c = &impl->config;
    int64_t in = i == 0 ? c->in : c->width, out = i == c->depth - 1 ? c->out : c->width;
    char name[TGI_NAME_MAX];
    snprintf(name, sizeof name, "%s.layer%d", m->name, i);
    impl->linear[i] = tg_linear_new(m->ctx, name, in, out, true, init, tgi_seed_mix(c->seed, (uint64_t)i));
    if (tgi_module_adopt(m, impl->linear[i]) != TG_OK) return TG_ERR_NOMEM;
    if (i == c->depth - 1 || c->norm == TG_NORM_NONE) return TG_OK;
    snprintf(name, sizeof name, "%s.layer%d.norm", m->name, i);
    impl->norm[i] = tg_norm_new(m->ctx, name, c->norm, out);
    return tgi_module_adopt(m, impl->norm[i]);
}

tg_module *tg_mlp_new(tg_ctx *ctx, const char *name, const tg_mlp_config *config) {
    if (!ctx || tgi_check_name(ctx, "mlp", name) != TG_OK) return NULL;
    if (!config || config->depth < 1 || config->in < 1 || config->out < 1 ||
        (config->depth > 1 && config->width < 1) || !(config->dropout >= 0.0f && config->dropout < 1.0f)) {
        tgi_error(ctx, TG_ERR_INVALID, "mlp '%s': needs depth >= 1, in, out (and width) >= 1, "
                  "0 <= dropout < 1", name);
        return NULL;
    }
    tg_module *m = tgi_module_new(ctx, &mlp_class, "%s", name);
    if (!m) return NULL;
    mlp_impl *impl = tgi_alloc(ctx, sizeof *impl);
    size_t bytes = (size_t)config->depth * sizeof(tg_module *);
    tg_module **linear = tgi_alloc(ctx, bytes), **norm = tgi_alloc(ctx, bytes);
    if (!impl || !linear || !norm) {
        tgi_free(ctx, impl, sizeof *impl);
        tgi_free(ctx, linear, bytes);
        tgi_free(ctx, norm, bytes);
        tgi_error(ctx, TG_ERR_NOMEM, "mlp '%s': out of memory", name);
        tg_module_free(m);
        return NULL;
    }
    memset(linear, 0, bytes);
    memset(norm, 0, bytes);
    *impl = (mlp_impl){.config = *config, .linear = linear, .norm = norm};
    m->impl = impl;
    impl->config.activation_op = NULL; /* copied into impl->custom: the caller's may go */
    impl->config.activation_attrs = NULL;
    if (config->activation_op && copy_activation_op(ctx, name, config, &impl->custom) != TG_OK) {
        tg_module_free(m);
        return NULL;
    }
    tg_init init = tgi_init_or(&config->init, tg_init_xavier(config->activation));
    for (int i = 0; i < config->depth; i++)
        if (add_mlp_layer(m, impl, i, &init) != TG_OK) {
            tg_module_free(m);
            return NULL;
        }
    return m;
}

/* ---- residual MLP -------------------------------------------------------------------------- */

typedef struct block {
    tg_module *fc1, *fc2, *norm1, *norm2;
} block;

typedef struct resmlp_impl {
    tg_resmlp_config config;
    tg_module *in, *head;
    block *blocks;
} resmlp_impl;

/* act(norm(h)) with the norm optional */
static tg_tensor *pre_activation(tg_tape *tape, tg_tensor *h, tg_module *norm, tg_activation act) {
    if (norm) h = tg_module_forward(norm, tape, h);
    return tg_activate(tape, h, act);
}

static tg_tensor *resmlp_forward(tg_module *m, tg_tape *tape, tg_tensor *x) {
    const resmlp_impl *impl = m->impl;
    const tg_resmlp_config *c = &impl->config;
    tg_tape_label_next(tape, "%s.in.out", m->name);
    tg_tensor *h = tg_module_forward(impl->in, tape, x);
    for (int i = 0; i < c->blocks; i++) {
        const block *b = &impl->blocks[i];
        tg_tensor *t = tg_module_forward(b->fc1, tape, pre_activation(tape, h, b->norm1, c->activation));
        t = pre_activation(tape, t, b->norm2, c->activation);
        if (!c->skip) tg_tape_label_next(tape, "%s.block%d.out", m->name, i);
        t = tg_module_forward(b->fc2, tape, t);
        if (c->skip) {
            tg_tape_label_next(tape, "%s.block%d.out", m->name, i);
            t = tg_add(tape, h, t);
        }
        h = t;
    }
    tg_tape_label_next(tape, "%s.out", m->name);
    return tg_module_forward(impl->head, tape, tg_activate(tape, h, c->activation));
}

static void release_resmlp(tg_module *m) {
    resmlp_impl *impl = m->impl;
    if (!impl) return;
    tgi_free(m->ctx, impl->blocks, (size_t)impl->config.blocks * sizeof *impl->blocks);
    tgi_free(m->ctx, impl, sizeof *impl);
}

static const tgi_module_class resmlp_class = {"resmlp", resmlp_forward, release_resmlp, 0, false};

tg_module *tgi_child_linear(tg_module *m, const char *what, int64_t in, int64_t out,
                            const tg_init *init, uint64_t seed) {
    char name[TGI_NAME_MAX];
    snprintf(name, sizeof name, "%s.%s", m->name, what);
    tg_module *child = tg_linear_new(m->ctx, name, in, out, true, init, seed);
    return tgi_module_adopt(m, child) == TG_OK ? child : NULL;
}

tg_module *tgi_child_norm(tg_module *m, const char *what, tg_norm_kind kind, int64_t features) {
    char name[TGI_NAME_MAX];
    snprintf(name, sizeof name, "%s.%s", m->name, what);
    tg_module *child = tg_norm_new(m->ctx, name, kind, features);
    return tgi_module_adopt(m, child) == TG_OK ? child : NULL;
}

static tg_status build_block(tg_module *m, resmlp_impl *impl, int i, const tg_init *init) {
    const tg_resmlp_config *c = &impl->config;
    block *b = &impl->blocks[i];
    char what[48];
    if (c->norm != TG_NORM_NONE) {
        snprintf(what, sizeof what, "block%d.norm1", i);
        if (!(b->norm1 = tgi_child_norm(m, what, c->norm, c->width))) return TG_ERR_INVALID;
    }
    snprintf(what, sizeof what, "block%d.fc1", i);
    if (!(b->fc1 = tgi_child_linear(m, what, c->width, c->width, init, tgi_seed_mix(c->seed, 2 * (uint64_t)i + 1))))
        return TG_ERR_INVALID;
    if (c->norm != TG_NORM_NONE) {
        snprintf(what, sizeof what, "block%d.norm2", i);
        if (!(b->norm2 = tgi_child_norm(m, what, c->norm, c->width))) return TG_ERR_INVALID;
    }
    snprintf(what, sizeof what, "block%d.fc2", i);
    b->fc2 = tgi_child_linear(m, what, c->width, c->width, init, tgi_seed_mix(c->seed, 2 * (uint64_t)i + 2));
    return b->fc2 ? TG_OK : TG_ERR_INVALID;
}

tg_module *tg_resmlp_new(tg_ctx *ctx, const char *name, const tg_resmlp_config *config) {
    if (!ctx || tgi_check_name(ctx, "resmlp", name) != TG_OK) return NULL;
    if (!config || config->blocks < 0 || config->in < 1 || config->out < 1 || config->width < 1) {
        tgi_error(ctx, TG_ERR_INVALID, "resmlp '%s': needs blocks >= 0 and in, out, width >= 1", name);
        return NULL;
    }
    tg_module *m = tgi_module_new(ctx, &resmlp_class, "%s", name);
    if (!m) return NULL;
    resmlp_impl *impl = tgi_alloc(ctx, sizeof *impl);
    size_t bytes = (size_t)config->blocks * sizeof(block);
    block *blocks = bytes ? tgi_alloc(ctx, bytes) : NULL;
    if (!impl || (bytes && !blocks)) {
        tgi_free(ctx, impl, sizeof *impl);
        tgi_free(ctx, blocks, bytes);
        tgi_error(ctx, TG_ERR_NOMEM, "resmlp '%s': out of memory", name);
        tg_module_free(m);
        return NULL;
    }
    if (bytes) memset(blocks, 0, bytes);
    *impl = (resmlp_impl){*config, NULL, NULL, blocks};
    m->impl = impl;
    tg_init init = tgi_init_or(&config->init, tg_init_xavier(config->activation));
    bool ok = (impl->in = tgi_child_linear(m, "in", config->in, config->width, &init, config->seed));
    for (int i = 0; ok && i < config->blocks; i++) ok = build_block(m, impl, i, &init) == TG_OK;
    ok = ok && (impl->head = tgi_child_linear(m, "head", config->width, config->out, &init,
                                          tgi_seed_mix(config->seed, 0xBEEF)));
    if (!ok) {
        tg_module_free(m);
        return NULL;
    }
    return m;
}
