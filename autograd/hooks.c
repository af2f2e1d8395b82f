/*
 * autograd/hooks.c — registering, removing and running hooks.
 *
 * All hooks of a context live in one array in registration order, so "run in registration
 * order" is a plain loop. Node hooks of a tape carry the tape's generation and stop matching
 * at its next reset (tg_tape_reset drops them).
 */
#include "autograd/internal.h"

#include <stdio.h>
#include <string.h>

bool tg_pattern_match(const char *pattern, const char *label) {
    if (!pattern || !label) return false;
    /* Iterative glob with one backtrack point: linear in practice, no recursion. */
    const char *star = NULL, *resume = NULL;
    while (*label) {
        if (*pattern == '*') {
            star = pattern++;
            resume = label;
        } else if (*pattern == '?' || *pattern == *label) {
            pattern++;
            label++;
        } else if (star) {
            pattern = star + 1;
            label = ++resume;
        } else {
            return false;
        }
    }
    while (*pattern == '*') pattern++;
    return *pattern == '\0';
}

static int64_t add_hook(tg_ctx *ctx, const tgi_hook *hook) {
    if (!ctx) return -1;
    if (!hook->fn) {
        tgi_error(ctx, TG_ERR_INVALID, "hook: the hook function is NULL");
        return -1;
    }
    if (hook->pass != TG_PASS_FORWARD && hook->pass != TG_PASS_BACKWARD) {
        tgi_error(ctx, TG_ERR_INVALID, "hook: pass %d is neither TG_PASS_FORWARD nor "
                  "TG_PASS_BACKWARD", (int)hook->pass);
        return -1;
    }
    if (ctx->n_hooks == ctx->cap_hooks) {
        int cap = ctx->cap_hooks ? 2 * ctx->cap_hooks : 16;
        tgi_hook *grown = tgi_realloc(ctx, ctx->hooks, (size_t)ctx->cap_hooks * sizeof *grown,
                                      (size_t)cap * sizeof *grown);
        if (!grown) {
            tgi_error(ctx, TG_ERR_NOMEM, "hook: out of memory");
            return -1;
        }
        ctx->hooks = grown;
        ctx->cap_hooks = cap;
    }
    tgi_hook *slot = &ctx->hooks[ctx->n_hooks++];
    *slot = *hook;
    slot->handle = ++ctx->next_handle;
    ctx->live_hooks[hook->pass]++;
    tgi_update_watch(ctx);
    return slot->handle;
}

int64_t tg_hook_grad(tg_tensor *node, tg_hook_fn fn, void *user) {
    if (!node || tgi_refuse_stale(node, "hook_grad") != TG_OK) return -1;
    tgi_hook hook = {0};
    hook.pass = TG_PASS_BACKWARD;
    hook.target = TGI_HOOK_TENSOR;
    hook.tensor = node;
    hook.tape = node->tape;
    hook.generation = node->generation;
    hook.fn = fn;
    hook.user = user;
    return add_hook(node->ctx, &hook);
}

int64_t tg_hook_pattern(tg_ctx *ctx, const char *pattern, tg_pass pass, tg_hook_fn fn, void *user) {
    if (!ctx) return -1;
    if (!pattern || !*pattern) {
        tgi_error(ctx, TG_ERR_INVALID, "hook: empty name pattern");
        return -1;
    }
    tgi_hook hook = {0};
    hook.pass = pass;
    hook.target = TGI_HOOK_PATTERN;
    hook.pattern = tgi_strdup(ctx, pattern);
    hook.fn = fn;
    hook.user = user;
    if (!hook.pattern) {
        tgi_error(ctx, TG_ERR_NOMEM, "hook: out of memory");
        return -1;
    }
    int64_t handle = add_hook(ctx, &hook);
    if (handle < 0) tgi_free(ctx, hook.pattern, strlen(hook.pattern) + 1);
    return handle;
}

int64_t tg_hook_params(tg_ctx *ctx, const char *pattern, tg_hook_fn fn, void *user) {
    int64_t handle = tg_hook_pattern(ctx, pattern, TG_PASS_BACKWARD, fn, user);
    if (handle > 0) ctx->hooks[ctx->n_hooks - 1].target = TGI_HOOK_PARAMS;
    return handle;
}

int64_t tg_hook_global(tg_ctx *ctx, tg_pass pass, tg_hook_fn fn, void *user) {
    tgi_hook hook = {0};
    hook.pass = pass;
    hook.target = TGI_HOOK_GLOBAL;
    hook.fn = fn;
    hook.user = user;
    return add_hook(ctx, &hook);
}

int tg_hook_count(const tg_ctx *ctx) {
    if (!ctx) return 0;
    return ctx->live_hooks[TG_PASS_FORWARD] + ctx->live_hooks[TG_PASS_BACKWARD];
}

static void retire(tg_ctx *ctx, tgi_hook *hook) {
    ctx->live_hooks[hook->pass]--;
    tgi_update_watch(ctx);
    if (hook->pattern) tgi_free(ctx, hook->pattern, strlen(hook->pattern) + 1);
    hook->pattern = NULL;
    hook->fn = NULL;
}

/* Closes the gaps left by removed hooks, unless a hook is running (its loop indexes the array). */
static void compact(tg_ctx *ctx) {
    if (ctx->firing) return;
    int kept = 0;
    for (int i = 0; i < ctx->n_hooks; i++)
        if (ctx->hooks[i].fn) ctx->hooks[kept++] = ctx->hooks[i];
    ctx->n_hooks = kept;
}

tg_status tg_hook_remove(tg_ctx *ctx, int64_t handle) {
    if (!ctx) return TG_ERR_INVALID;
    for (int i = 0; i < ctx->n_hooks; i++)
        if (ctx->hooks[i].handle == handle && ctx->hooks[i].fn) {
            retire(ctx, &ctx->hooks[i]);
            compact(ctx);
            return TG_OK;
        }
    return tgi_error(ctx, TG_ERR_NOT_FOUND, "hook_remove: no hook with handle %lld",
                     (long long)handle);
}

void tgi_drop_tape_hooks(tg_ctx *ctx, const tg_tape *tape) {
    bool dropped = false;
    for (int i = 0; i < ctx->n_hooks; i++)
        if (ctx->hooks[i].fn && ctx->hooks[i].target == TGI_HOOK_TENSOR && ctx->hooks[i].tape == tape) {
            retire(ctx, &ctx->hooks[i]);
            dropped = true;
        }
    if (dropped) compact(ctx);
}

void tgi_hooks_release(tg_ctx *ctx) {
    for (int i = 0; i < ctx->n_named_hooks; i++)
        tgi_free(ctx, ctx->named_hooks[i].name, strlen(ctx->named_hooks[i].name) + 1);
    tgi_free(ctx, ctx->named_hooks, (size_t)ctx->cap_named_hooks * sizeof *ctx->named_hooks);
    ctx->named_hooks = NULL;
    ctx->n_named_hooks = ctx->cap_named_hooks = 0;
    for (int i = 0; i < ctx->n_hooks; i++)
        if (ctx->hooks[i].pattern) tgi_free(ctx, ctx->hooks[i].pattern, strlen(ctx->hooks[i].pattern) + 1);
    tgi_free(ctx, ctx->hooks, (size_t)ctx->cap_hooks * sizeof *ctx->hooks);
    ctx->hooks = NULL;
    ctx->n_hooks = ctx->cap_hooks = 0;
    ctx->live_hooks[0] = ctx->live_hooks[1] = 0;
    tgi_update_watch(ctx);
}

static bool hook_matches(const tgi_hook *hook, const tg_tensor *node) {
    switch (hook->target) {
    case TGI_HOOK_TENSOR:
        return hook->tensor == node && (!hook->tape || hook->generation == node->generation);
    case TGI_HOOK_PATTERN: return node->label[0] && tg_pattern_match(hook->pattern, node->label);
    case TGI_HOOK_PARAMS:
        return node->persistent && node->label[0] && tg_pattern_match(hook->pattern, node->label);
    case TGI_HOOK_GLOBAL: return true;
    }
    return false;
}

bool tgi_label_watched(const tg_ctx *ctx, const char *label) {
    for (int i = 0; i < ctx->n_hooks; i++) {
        const tgi_hook *hook = &ctx->hooks[i];
        if (hook->fn && hook->target == TGI_HOOK_PATTERN && tg_pattern_match(hook->pattern, label))
            return true;
    }
    return false;
}

static const char *pass_name(tg_pass pass) {
    return pass == TG_PASS_FORWARD ? "forward" : "backward";
}

tg_status tg_hook_fail(tg_ctx *ctx, const tg_hook_event *event, tg_status status,
                       const char *fmt, ...) {
    char reason[TGI_ERRMSG_MAX / 2] = "no reason given", shape[96];
    if (fmt) {
        va_list args;
        va_start(args, fmt);
        vsnprintf(reason, sizeof reason, fmt, args);
        va_end(args);
    }
    const tg_tensor *n = event ? event->node : NULL;
    if (!n) return tgi_error(ctx, status, "hook (no event): %s", reason);
    return tgi_error(ctx, status, "hook at '%s' %s (op %s, %s pass, step %lld): %s", event->name,
                     tgi_format_shape(n->ndim, n->shape, shape, sizeof shape), event->op_name,
                     pass_name(event->pass), (long long)event->step, reason);
}

tg_status tgi_fire_hooks(tg_tape *tape, tg_tensor *node, tg_pass pass, float *values) {
    tg_ctx *ctx = tape->ctx;
    char name_buf[TG_LABEL_MAX + 32];
    tg_hook_event event = {pass, node, tgi_node_name(node, name_buf, sizeof name_buf),
                           tg_tensor_op_name(node), tape->step, values, node->size};
    tg_status status = TG_OK;
    const tg_hook_event *outer = tape->hook_event;
    tape->hook_event = &event;
    ctx->firing++;
    /* hooks added by a hook are past `count`: they start with the next node */
    for (int i = 0, count = ctx->n_hooks; i < count && status == TG_OK; i++) {
        tgi_hook hook = ctx->hooks[i]; /* a copy: a hook may grow (move) the array */
        if (!hook.fn || hook.pass != pass || !hook_matches(&hook, node)) continue;
        status = hook.fn(ctx, &event, hook.user);
        if (status != TG_OK && ctx->err_code == TG_OK)
            tg_hook_fail(ctx, &event, status, "the hook stopped the pass (%s)", tg_status_str(status));
    }
    ctx->firing--;
    tape->hook_event = outer;
    compact(ctx);
    return status;
}

tg_status tgi_note_leaf(tg_tape *tape, tg_tensor *leaf) {
    tg_ctx *ctx = tape->ctx;
    if (leaf->visit == ctx->backward_passes) return TG_OK;
    leaf->visit = ctx->backward_passes;
    if (tape->n_leaves == tape->cap_leaves) {
        int64_t cap = tape->cap_leaves ? 2 * tape->cap_leaves : 64;
        tg_tensor **grown = tgi_realloc(ctx, tape->leaves, (size_t)tape->cap_leaves * sizeof *grown,
                                        (size_t)cap * sizeof *grown);
        if (!grown) return tgi_error(ctx, TG_ERR_NOMEM, "backward: out of memory for leaf hooks");
        tape->leaves = grown;
        tape->cap_leaves = cap;
    }
    tape->leaves[tape->n_leaves++] = leaf;
    return TG_OK;
}

/* ---- hooks exported by name (plugins) ------------------------------------------------------- */

tg_status tg_hook_export(tg_ctx *ctx, const char *name, tg_hook_fn fn, void *user) {
    if (!ctx) return TG_ERR_INVALID;
    if (!name || !*name || !fn)
        return tgi_error(ctx, TG_ERR_INVALID, "hook_export: a name and a function are required");
    for (int i = 0; i < ctx->n_named_hooks; i++)
        if (strcmp(ctx->named_hooks[i].name, name) == 0)
            return tgi_error(ctx, TG_ERR_INVALID, "hook_export: a hook named '%s' is already "
                             "exported", name);
    if (ctx->n_named_hooks == ctx->cap_named_hooks) {
        int cap = ctx->cap_named_hooks ? 2 * ctx->cap_named_hooks : 8;
        tgi_named_hook *grown =
            tgi_realloc(ctx, ctx->named_hooks, (size_t)ctx->cap_named_hooks * sizeof *grown,
                        (size_t)cap * sizeof *grown);
        if (!grown) return tgi_error(ctx, TG_ERR_NOMEM, "hook_export: out of memory");
        ctx->named_hooks = grown;
        ctx->cap_named_hooks = cap;
    }
    char *copy = tgi_strdup(ctx, name);
    if (!copy) return tgi_error(ctx, TG_ERR_NOMEM, "hook_export: out of memory");
    ctx->named_hooks[ctx->n_named_hooks++] = (tgi_named_hook){copy, fn, user};
    return TG_OK;
}

tg_status tg_hook_find(tg_ctx *ctx, const char *name, tg_hook_fn *fn, void **user) {
    if (!ctx) return TG_ERR_INVALID;
    if (!fn) return tgi_error(ctx, TG_ERR_INVALID, "hook_find: fn (where the hook goes) is NULL");
    for (int i = 0; i < ctx->n_named_hooks; i++)
        if (name && strcmp(ctx->named_hooks[i].name, name) == 0) {
            *fn = ctx->named_hooks[i].fn;
            if (user) *user = ctx->named_hooks[i].user;
            return TG_OK;
        }
    return tgi_error(ctx, TG_ERR_NOT_FOUND, "no hook exported as '%s' (%d exported; plugins "
                     "export hooks with tg_hook_export)", name ? name : "(null)", ctx->n_named_hooks);
}
