/*
 * ops/plugin.c — loading plugins: shared libraries that register ops and hooks.
 */
#include "ops/ops.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

static tg_status keep_handle(tg_ctx *ctx, void *handle) {
    if (ctx->n_plugins == ctx->cap_plugins) {
        int cap = ctx->cap_plugins ? 2 * ctx->cap_plugins : 4;
        void **grown = tgi_realloc(ctx, ctx->plugins, (size_t)ctx->cap_plugins * sizeof *grown,
                                   (size_t)cap * sizeof *grown);
        if (!grown) return TG_ERR_NOMEM;
        ctx->plugins = grown;
        ctx->cap_plugins = cap;
    }
    ctx->plugins[ctx->n_plugins++] = handle;
    return TG_OK;
}

/* Prefixes the plugin's own error (already on the context) with the plugin's path. */
static tg_status blame(tg_ctx *ctx, const char *path, tg_status status) {
    char inner[TGI_ERRMSG_MAX];
    snprintf(inner, sizeof inner, "%s", ctx->err_code != TG_OK ? ctx->err_msg : tg_status_name(status));
    tg_clear_error(ctx);
    return tgi_error(ctx, status, "plugin '%s': entry point failed: %s", path, inner);
}

tg_status tg_plugin_load(tg_ctx *ctx, const char *path) {
    if (!ctx) return TG_ERR_INVALID;
    if (!path || !*path) return tgi_error(ctx, TG_ERR_INVALID, "plugin: empty path");
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *why = dlerror();
        return tgi_error(ctx, TG_ERR_IO, "plugin '%s': cannot load: %s", path, why ? why : "unknown");
    }
    const int *abi = dlsym(handle, "tapegrad_plugin_abi");
    if (!abi) {
        dlclose(handle);
        return tgi_error(ctx, TG_ERR_INVALID, "plugin '%s': no 'tapegrad_plugin_abi' symbol: not a "
                         "tapegrad plugin (define TG_PLUGIN_DEFINE_ABI)", path);
    }
    if (*abi != TG_PLUGIN_ABI) {
        int theirs = *abi;
        dlclose(handle);
        return tgi_error(ctx, TG_ERR_INVALID, "plugin '%s': built for plugin ABI %d, this tapegrad "
                         "speaks ABI %d: rebuild the plugin against this tapegrad.h", path, theirs,
                         TG_PLUGIN_ABI);
    }
    tg_plugin_init_fn init;
    *(void **)&init = dlsym(handle, "tapegrad_plugin_init"); /* POSIX's way to a function pointer */
    if (!init) {
        dlclose(handle);
        return tgi_error(ctx, TG_ERR_INVALID, "plugin '%s': no 'tapegrad_plugin_init' entry point",
                         path);
    }
    /* From here the plugin may have registered ops: it stays loaded, success or not. */
    if (keep_handle(ctx, handle) != TG_OK) {
        dlclose(handle);
        return tgi_error(ctx, TG_ERR_NOMEM, "plugin '%s': out of memory", path);
    }
    tg_clear_error(ctx); /* the plugin's own failure must be the one reported */
    tg_status status = init(ctx);
    if (status != TG_OK) return blame(ctx, path, status);
    return TG_OK;
}

void tgi_plugins_release(tg_ctx *ctx) {
    for (int i = ctx->n_plugins - 1; i >= 0; i--) dlclose(ctx->plugins[i]);
    tgi_free(ctx, ctx->plugins, (size_t)ctx->cap_plugins * sizeof *ctx->plugins);
    ctx->plugins = NULL;
    ctx->n_plugins = ctx->cap_plugins = 0;
}
