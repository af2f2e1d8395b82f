/*
 * models/module_names.c — every name in a module tree is unique, checked when a part is added.
 *
 * Saving and loading find tensors by their full labels, and name-pattern hooks by the module
 * names, so two parts of one tree with the same name (two children "net.fc", or a parameter
 * "net.fc.weight" of "net" beside the child "net.fc") would make one of them unreachable. The
 * tree is searched from its root when a user module takes a part: a tree is built once, and the
 * search is linear in its size.
 */
#include "models/models.h"

#include <string.h>

static const tg_module *root_of(const tg_module *m) {
    while (m->parent) m = m->parent;
    return m;
}

/* Whether `label` is `name` or one of the names under it ("net.fc.weight" under "net.fc"). */
static bool under(const char *label, const char *name) {
    size_t n = strlen(name);
    return strncmp(label, name, n) == 0 && (label[n] == '\0' || label[n] == '.');
}

/* Whether x is m or one of m's parents: their names are above every new part of m by design. */
static bool on_line(const tg_module *x, const tg_module *m) {
    for (; m; m = m->parent)
        if (m == x) return true;
    return false;
}

static const tg_tensor *part(const tg_module *m, int i) {
    return i < m->n_params ? m->params[i] : m->buffers[i - m->n_params];
}

/* A parameter or buffer of tree labelled `label` (*owner: its module), or NULL. */
static const tg_tensor *tensor_named(const tg_module *tree, const char *label,
                                     const tg_module **owner) {
    for (int i = 0; i < tree->n_params + tree->n_buffers; i++)
        if (strcmp(part(tree, i)->label, label) == 0) {
            *owner = tree;
            return part(tree, i);
        }
    for (int i = 0; i < tree->n_children; i++) {
        const tg_tensor *t = tensor_named(tree->children[i], label, owner);
        if (t) return t;
    }
    return NULL;
}

/* A module of tree off m's line whose names `label` would sit among (or that would sit among
 * label's), or NULL. */
static const tg_module *module_around(const tg_module *tree, const tg_module *m, const char *label) {
    if (!on_line(tree, m) && (under(label, tree->name) || under(tree->name, label))) return tree;
    for (int i = 0; i < tree->n_children; i++) {
        const tg_module *found = module_around(tree->children[i], m, label);
        if (found) return found;
    }
    return NULL;
}

static const char *kind_of(const tg_module *owner, const tg_tensor *t) {
    for (int i = 0; i < owner->n_params; i++)
        if (owner->params[i] == t) return "parameter";
    return "buffer";
}

tg_status tgi_check_new_label(const tg_module *m, const char *what, const char *label) {
    const tg_module *root = root_of(m), *owner = NULL;
    const tg_tensor *t = tensor_named(root, label, &owner);
    if (t && owner == m)
        return tgi_error(m->ctx, TG_ERR_INVALID, "%s: module '%s' already has '%s' (a %s)", what,
                         m->name, label, kind_of(owner, t));
    if (t)
        return tgi_error(m->ctx, TG_ERR_INVALID, "%s: module '%s' cannot take '%s': the %s '%s' "
                         "of module '%s' has that name", what, m->name, label,
                         kind_of(owner, t), t->label, owner->name);
    const tg_module *around = module_around(root, m, label);
    if (around)
        return tgi_error(m->ctx, TG_ERR_INVALID, "%s: module '%s' cannot take '%s': it is among "
                         "the names of module '%s' (a save or a hook would not tell them apart)",
                         what, m->name, label, around->name);
    return TG_OK;
}

/* The first name of child's tree that the tree of m already has (as a module's or a tensor's
 * name, or around one), as a message; TG_OK when none. */
static tg_status check_subtree(const tg_module *m, const tg_module *sub) {
    const char *what = "module_add_child";
    const tg_module *root = root_of(m), *owner = NULL;
    const tg_module *around = module_around(root, m, sub->name);
    if (around)
        return tgi_error(m->ctx, TG_ERR_INVALID, "%s: '%s' cannot join the tree of '%s': module "
                         "'%s' %s", what, sub->name, root->name, around->name,
                         strcmp(around->name, sub->name) == 0 ? "has that name already"
                                                              : "has a name around its own");
    for (int i = 0; i < sub->n_params + sub->n_buffers; i++) {
        const tg_tensor *mine = part(sub, i), *t = tensor_named(root, mine->label, &owner);
        if (!t) continue;
        return tgi_error(m->ctx, TG_ERR_INVALID, "%s: '%s' cannot join the tree of '%s': its %s "
                         "'%s' has the name of the %s of module '%s'", what, sub->name,
                         root->name, kind_of(sub, mine), mine->label, kind_of(owner, t),
                         owner->name);
    }
    for (int i = 0; i < sub->n_children; i++)
        if (check_subtree(m, sub->children[i]) != TG_OK) return TG_ERR_INVALID;
    return TG_OK;
}

/* A parameter or buffer of tree (m's line only: the rest is covered by module_around) that
 * sits among the names of child. */
static tg_status check_line_parts(const tg_module *m, const tg_module *child) {
    for (const tg_module *up = m; up; up = up->parent)
        for (int i = 0; i < up->n_params + up->n_buffers; i++)
            if (under(part(up, i)->label, child->name))
                return tgi_error(m->ctx, TG_ERR_INVALID, "module_add_child: '%s' cannot be a "
                                 "child of '%s': the %s '%s' of '%s' is among its names",
                                 child->name, m->name, kind_of(up, part(up, i)),
                                 part(up, i)->label, up->name);
    return TG_OK;
}

tg_status tgi_check_new_child(const tg_module *m, const tg_module *child) {
    if (check_line_parts(m, child) != TG_OK) return TG_ERR_INVALID;
    return check_subtree(m, child);
}
