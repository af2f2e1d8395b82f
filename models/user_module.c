/*
 * models/user_module.c — modules defined by users (tg_module_new): the user's forward and data
 * on the same structure the built-in layers use, so saving, loading, parameter listing, modes,
 * zero_grad and name-pattern hooks treat both alike.
 */
#include "models/models.h"

#include <stdio.h>
#include <string.h>

typedef struct user_impl {
    tg_module_def def;
    void *data;
} user_impl;

static tg_tensor *user_forward(tg_module *m, tg_tape *tape, tg_tensor *x) {
    const user_impl *impl = m->impl;
    return impl->def.forward(m, tape, x);
}

static void user_release(tg_module *m) {
    user_impl *impl = m->impl;
    if (!impl) return;
    if (impl->def.release) impl->def.release(impl->data);
    tgi_free(m->ctx, impl, sizeof *impl);
}

static const tgi_module_class user_class = {"module", user_forward, user_release, 0, false};

tg_module *tg_module_new(tg_ctx *ctx, const char *name, const tg_module_def *def, void *data) {
    if (!ctx || tgi_check_name(ctx, "module_new", name) != TG_OK) return NULL;
    if (!def || !def->forward) {
        tgi_error(ctx, TG_ERR_INVALID, "module_new '%s': a definition with a forward function is "
                  "required", name);
        return NULL;
    }
    user_impl *impl = tgi_alloc(ctx, sizeof *impl);
    if (!impl) {
        tgi_error(ctx, TG_ERR_NOMEM, "module_new '%s': out of memory", name);
        return NULL;
    }
    *impl = (user_impl){*def, data};
    tg_module *m = tgi_module_new(ctx, &user_class, "%s", name);
    if (!m) {
        tgi_free(ctx, impl, sizeof *impl);
        return NULL;
    }
    m->impl = impl;
    return m;
}

void *tg_module_data(const tg_module *m) {
    return m && m->cls == &user_class ? ((const user_impl *)m->impl)->data : NULL;
}

tg_ctx *tg_module_ctx(const tg_module *m) { return m ? m->ctx : NULL; }

/* Parameters, buffers and children are added to user modules only: a built-in module's
 * forward would never use them. */
static tg_status refuse_builtin(tg_module *m, const char *what) {
    if (m->cls == &user_class) return TG_OK;
    return tgi_error(m->ctx, TG_ERR_INVALID, "%s: '%s' is a built-in module (%s); only modules "
                     "made by tg_module_new take new parts", what, m->name, m->cls->kind);
}

/* A new part "<m's name>.<local>": a user module, a local name, not taken already. */
static tg_status check_part(tg_module *m, const char *what, const char *local) {
    if (refuse_builtin(m, what) != TG_OK) return TG_ERR_INVALID;
    if (!local || !*local)
        return tgi_error(m->ctx, TG_ERR_INVALID, "%s: module '%s': the local name is %s", what,
                         m->name, local ? "empty" : "NULL");
    if (tgi_check_part_length(m, "the name", local) != TG_OK) return TG_ERR_INVALID;
    char label[TGI_NAME_MAX]; /* fits a label: checked just above */
    snprintf(label, sizeof label, "%s.%s", m->name, local);
    return tgi_check_new_label(m, what, label);
}

tg_tensor *tg_module_add_param(tg_module *m, const char *local, int ndim, const int64_t *shape,
                               const tg_init *init, uint64_t seed) {
    if (!m || check_part(m, "module_add_param", local) != TG_OK) return NULL;
    return tgi_module_param(m, local, ndim, shape, init, seed);
}

tg_tensor *tg_module_add_buffer(tg_module *m, const char *local, int ndim, const int64_t *shape,
                                float value) {
    if (!m || check_part(m, "module_add_buffer", local) != TG_OK) return NULL;
    tg_tensor *t = tg_set_label(tg_full(m->ctx, ndim, shape, value), "%s.%s", m->name, local);
    return tgi_module_buffer(m, t) == TG_OK ? t : NULL;
}

/* Whether child already sits in a tree (adopted, or m itself or one of m's parents): such a
 * module is never freed by a refused adoption. */
static bool in_a_tree(const tg_module *m, const tg_module *child) {
    if (child->parent) return true;
    for (const tg_module *up = m; up; up = up->parent)
        if (up == child) return true;
    return false;
}

/* The reason child cannot become m's child, or NULL. */
static const char *adoption_refused(const tg_module *m, const tg_module *child) {
    if (child->ctx != m->ctx) return "it belongs to another context";
    if (child->parent) return "it already has a parent";
    if (in_a_tree(m, child)) return "it is the module itself or one of its parents";
    size_t len = strlen(m->name);
    if (strncmp(child->name, m->name, len) != 0 || child->name[len] != '.' || !child->name[len + 1])
        return "its name does not start with the parent's name and a dot (its parameters would "
               "not say where they live)";
    return NULL;
}

tg_status tg_module_add_child(tg_module *m, tg_module *child) {
    if (!m) {
        tg_module_free(child);
        return TG_ERR_INVALID;
    }
    if (!child) {
        if (tg_errcode(m->ctx) != TG_OK) return tg_errcode(m->ctx); /* the child's constructor failed */
        return tgi_error(m->ctx, TG_ERR_INVALID, "module_add_child: module '%s': the child is NULL",
                         m->name);
    }
    tg_status status = refuse_builtin(m, "module_add_child");
    const char *why = status == TG_OK ? adoption_refused(m, child) : NULL;
    if (why) status = tgi_error(m->ctx, TG_ERR_INVALID, "module_add_child: '%s' cannot be a child "
                                "of '%s': %s", child->name, m->name, why);
    else if (status == TG_OK) status = tgi_check_new_child(m, child);
    if (status != TG_OK) {
        if (!in_a_tree(m, child)) tg_module_free(child);
        return status;
    }
    return tgi_module_adopt(m, child);
}
