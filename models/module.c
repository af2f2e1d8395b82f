/*
 * models/module.c — the module abstraction: named parameters, children, mode, traversal.
 */
#include "models/models.h"

#include <stdio.h>
#include <string.h>

tg_module *tgi_module_new(tg_ctx *ctx, const tgi_module_class *cls, const char *fmt, ...) {
    if (!ctx) return NULL;
    tg_module *m = tgi_alloc(ctx, sizeof *m);
    if (!m) {
        tgi_error(ctx, TG_ERR_NOMEM, "module: out of memory");
        return NULL;
    }
    memset(m, 0, sizeof *m);
    m->ctx = ctx;
    m->cls = cls;
    m->training = true;
    va_list args;
    va_start(args, fmt);
    int len = vsnprintf(m->name, sizeof m->name, fmt, args);
    va_end(args);
    if (len < 0 || tgi_check_name_length(ctx, cls->kind, "the module name", m->name, (size_t)len) != TG_OK) {
        tgi_free(ctx, m, sizeof *m);
        return NULL;
    }
    if (!cls->release && cls->impl_size) {
        if (!(m->impl = tgi_alloc(ctx, cls->impl_size))) {
            tgi_error(ctx, TG_ERR_NOMEM, "%s '%s': out of memory", cls->kind, m->name);
            tgi_free(ctx, m, sizeof *m);
            return NULL;
        }
        memset(m->impl, 0, cls->impl_size);
    }
    return m;
}

static tg_status grow(tg_ctx *ctx, void **items, int *cap, size_t item_size) {
    int new_cap = *cap ? 2 * *cap : 4;
    void *grown = tgi_realloc(ctx, *items, (size_t)*cap * item_size, (size_t)new_cap * item_size);
    if (!grown) return tgi_error(ctx, TG_ERR_NOMEM, "module: out of memory");
    *items = grown;
    *cap = new_cap;
    return TG_OK;
}

tg_status tgi_check_part_length(const tg_module *m, const char *kind, const char *local) {
    char label[TG_LABEL_MAX], what[TG_LABEL_MAX + 32];
    int len = snprintf(label, sizeof label, "%s.%s", m->name, local);
    snprintf(what, sizeof what, "%s '%s'", m->cls->kind, m->name);
    return tgi_check_name_length(m->ctx, what, kind, label, len < 0 ? SIZE_MAX : (size_t)len);
}

tg_tensor *tgi_module_param(tg_module *m, const char *local, int ndim, const int64_t *shape,
                            const tg_init *init, uint64_t seed) {
    if (tgi_check_part_length(m, "the parameter name", local) != TG_OK) return NULL;
    if (m->n_params == m->cap_params &&
        grow(m->ctx, (void **)&m->params, &m->cap_params, sizeof *m->params) != TG_OK)
        return NULL;
    char what[TGI_NAME_MAX]; /* a bad shape named: "tensor" would not say which */
    snprintf(what, sizeof what, "parameter '%s.%s'", m->name, local);
    if (tgi_check_shape(m->ctx, what, ndim, shape) != TG_OK) return NULL;
    tg_tensor *t = tg_zeros(m->ctx, ndim, shape);
    if (!t || !tg_set_label(t, "%s.%s", m->name, local)) return NULL;
    if ((init && tg_init_tensor(t, init, seed) != TG_OK) || tg_set_requires_grad(t, true) != TG_OK)
        return NULL;
    m->params[m->n_params++] = t;
    return t;
}

tg_status tgi_module_buffer(tg_module *m, tg_tensor *t) {
    if (!t) return tg_errcode(m->ctx);
    if (m->n_buffers == m->cap_buffers &&
        grow(m->ctx, (void **)&m->buffers, &m->cap_buffers, sizeof *m->buffers) != TG_OK)
        return TG_ERR_NOMEM;
    m->buffers[m->n_buffers++] = t;
    return TG_OK;
}

tg_status tgi_module_adopt(tg_module *m, tg_module *child) {
    if (!child) return tg_errcode(m->ctx) != TG_OK ? tg_errcode(m->ctx) : TG_ERR_INVALID;
    if (m->n_children == m->cap_children &&
        grow(m->ctx, (void **)&m->children, &m->cap_children, sizeof *m->children) != TG_OK) {
        tg_module_free(child);
        return TG_ERR_NOMEM;
    }
    m->children[m->n_children++] = child;
    child->parent = m;
    return TG_OK;
}

/* Frees m and the tree below it. The module's own release runs before its children are freed,
 * so a user's release that calls tg_module_free on a child it keeps a pointer to finds that child
 * still owned (and is refused) rather than freed already. */
static void free_tree(tg_module *m, bool keep) {
    tg_ctx *ctx = m->ctx;
    if (m->cls->release) m->cls->release(m);
    else tgi_free(ctx, m->impl, m->cls->impl_size);
    for (int i = 0; i < m->n_children; i++) free_tree(m->children[i], keep);
    tgi_free(ctx, m->children, (size_t)m->cap_children * sizeof *m->children);
    tgi_free(ctx, m->params, (size_t)m->cap_params * sizeof *m->params);
    tgi_free(ctx, m->buffers, (size_t)m->cap_buffers * sizeof *m->buffers);
    if (keep) tgi_retire(ctx, &m->retired, m, sizeof *m);
    else tgi_free(ctx, m, sizeof *m);
}

void tgi_module_destroy(tg_module *m) {
    if (m) free_tree(m, false);
}

/* A child is refused rather than detached: its parent's forward (a built-in model's, or a user's
 * through the pointer it keeps in its data) would still call it, so detaching would only move the
 * use-after-free from the second free to the next forward. */
tg_status tg_module_free(tg_module *m) {
    if (!m || m->retired.freed) return TG_OK; /* a child of a freed root too: all are kept */
    if (m->parent) {
        const tg_module *root = m->parent;
        while (root->parent) root = root->parent;
        return tgi_error(m->ctx, TG_ERR_INVALID, "module_free: '%s' is a child of '%s' and is "
                         "freed with it; free the root module '%s' instead", m->name,
                         m->parent->name, root->name);
    }
    free_tree(m, true);
    return TG_OK;
}

/* A module's whole forward as one recomputed segment. */
static tg_status forward_segment(tg_tape *tape, tg_tensor *const *inputs, int n_inputs,
                                 tg_tensor **outputs, int n_outputs, void *user) {
    (void)n_inputs;
    (void)n_outputs;
    tg_module *m = user;
    outputs[0] = m->cls->forward(m, tape, inputs[0]);
    return outputs[0] ? TG_OK : TG_ERR_INVALID; /* the op that failed said why */
}

tg_tensor *tg_module_forward(tg_module *m, tg_tape *tape, tg_tensor *x) {
    if (!m || !tape) return NULL;
    if (!m->recompute || m->cls->segments_itself || !x || !tgi_segment_possible(tape))
        return m->cls->forward(m, tape, x);
    tg_tensor *y;
    return tg_recompute(tape, forward_segment, m, 1, &x, 1, &y) == TG_OK ? y : NULL;
}

tg_status tg_module_set_recompute(tg_module *m, int64_t span) {
    if (!m) return TG_ERR_INVALID;
    if (span < 0)
        return tgi_error(m->ctx, TG_ERR_INVALID, "module_set_recompute: '%s': span %lld (must be "
                         ">= 0; 0 turns it off)", m->name, (long long)span);
    m->recompute = span;
    return TG_OK;
}

int64_t tg_module_recompute(const tg_module *m) { return m ? m->recompute : 0; }

const char *tg_module_name(const tg_module *m) { return m ? m->name : "(null)"; }

int tg_module_param_count(const tg_module *m) {
    if (!m) return 0;
    int count = m->n_params;
    for (int i = 0; i < m->n_children; i++) count += tg_module_param_count(m->children[i]);
    return count;
}

/* Depth first: own parameters, then each child's. */
static int collect(const tg_module *m, tg_tensor **out, int max, int at) {
    for (int i = 0; i < m->n_params; i++, at++)
        if (at < max) out[at] = m->params[i];
    for (int i = 0; i < m->n_children; i++) at = collect(m->children[i], out, max, at);
    return at;
}

/* The count when it fits in max (or nothing is copied: a count query), else -1 with a message:
 * a count larger than the array must never reach a caller that passes it on as its length. */
static int fitted(const tg_module *m, const char *what, const char *counter, int count, bool copying,
                  int max) {
    if (!copying || count <= max) return count;
    tgi_error(m->ctx, TG_ERR_INVALID, "%s: '%s' has %d tensors, more than max %d: size the array "
              "with %s (or train the whole module with tg_optimizer_new_module)", what, m->name,
              count, max, counter);
    return -1;
}

int tg_module_params(const tg_module *m, tg_tensor **out, int max) {
    if (!m) return 0;
    int count = fitted(m, "module_params", "tg_module_param_count", tg_module_param_count(m), out != NULL, max);
    if (out && count > 0) collect(m, out, max, 0);
    return count;
}

static int collect_buffers(const tg_module *m, tg_tensor **out, int max, int at) {
    for (int i = 0; i < m->n_buffers; i++, at++)
        if (at < max) out[at] = m->buffers[i];
    for (int i = 0; i < m->n_children; i++) at = collect_buffers(m->children[i], out, max, at);
    return at;
}

int tg_module_state(const tg_module *m, tg_tensor **out, int max) {
    if (!m) return 0;
    int count = fitted(m, "module_state", "tg_module_state(m, NULL, 0)",
                       collect_buffers(m, NULL, 0, collect(m, NULL, 0, 0)), out != NULL, max);
    if (out && count > 0) collect_buffers(m, out, max, collect(m, out, max, 0));
    return count;
}

static tg_tensor *nth_param(const tg_module *m, int *index) {
    if (*index < m->n_params) return m->params[*index];
    *index -= m->n_params;
    for (int i = 0; i < m->n_children; i++) {
        tg_tensor *t = nth_param(m->children[i], index);
        if (t) return t;
    }
    return NULL;
}

tg_tensor *tg_module_param(const tg_module *m, int i) {
    if (!m || i < 0) return NULL;
    return nth_param(m, &i);
}

tg_tensor *tg_module_find_param(const tg_module *m, const char *name) {
    if (!m || !name) return NULL;
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i]->label, name) == 0) return m->params[i];
    for (int i = 0; i < m->n_children; i++) {
        tg_tensor *t = tg_module_find_param(m->children[i], name);
        if (t) return t;
    }
    return NULL;
}

int64_t tg_module_num_elements(const tg_module *m) {
    if (!m) return 0;
    int64_t total = 0;
    for (int i = 0; i < m->n_params; i++) total += m->params[i]->size;
    for (int i = 0; i < m->n_children; i++) total += tg_module_num_elements(m->children[i]);
    return total;
}

void tg_module_set_training(tg_module *m, bool training) {
    if (!m) return;
    m->training = training;
    for (int i = 0; i < m->n_children; i++) tg_module_set_training(m->children[i], training);
}

bool tg_module_training(const tg_module *m) { return m && m->training; }

void tg_module_zero_grad(tg_module *m) {
    if (!m) return;
    for (int i = 0; i < m->n_params; i++) tg_zero_grad(m->params[i]);
    for (int i = 0; i < m->n_children; i++) tg_module_zero_grad(m->children[i]);
}

int tg_module_child_count(const tg_module *m) { return m ? m->n_children : 0; }

tg_module *tg_module_child(const tg_module *m, int i) {
    return m && i >= 0 && i < m->n_children ? m->children[i] : NULL;
}

uint64_t tgi_seed_mix(uint64_t seed, uint64_t salt) {
    uint64_t z = seed ^ (salt + 0x9E3779B97F4A7C15ull + (seed << 6) + (seed >> 2));
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    return z ^ (z >> 31);
}
