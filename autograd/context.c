/*
 * autograd/context.c — the context core: allocator, error message, persistent storage.
 * (tg_ctx_new lives in ops/context.c because a new context comes with the built-in ops.)
 */
#include "autograd/internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Contexts may be made and freed on several threads at once. */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static tg_ctx *live_contexts;

const char *tg_status_name(tg_status status) {
    switch (status) {
    case TG_OK: return "TG_OK";
    case TG_ERR_INVALID: return "TG_ERR_INVALID";
    case TG_ERR_SHAPE: return "TG_ERR_SHAPE";
    case TG_ERR_NOMEM: return "TG_ERR_NOMEM";
    case TG_ERR_STATE: return "TG_ERR_STATE";
    case TG_ERR_NOGRAD: return "TG_ERR_NOGRAD";
    case TG_ERR_NUMERIC: return "TG_ERR_NUMERIC";
    case TG_ERR_IO: return "TG_ERR_IO";
    case TG_ERR_NOT_FOUND: return "TG_ERR_NOT_FOUND";
    }
    return "TG_ERR_UNKNOWN";
}

const char *tg_status_str(tg_status status) {
    switch (status) {
    case TG_OK: return "ok";
    case TG_ERR_INVALID: return "invalid argument";
    case TG_ERR_SHAPE: return "shape error";
    case TG_ERR_NOMEM: return "out of memory";
    case TG_ERR_STATE: return "invalid state";
    case TG_ERR_NOGRAD: return "no backward";
    case TG_ERR_NUMERIC: return "numeric error";
    case TG_ERR_IO: return "i/o error";
    case TG_ERR_NOT_FOUND: return "not found";
    }
    return "unknown status";
}

void tgi_ctx_init(tg_ctx *ctx, tg_alloc_fn alloc, void *user) {
    memset(ctx, 0, sizeof *ctx);
    ctx->alloc = alloc;
    ctx->alloc_user = user;
    ctx->threads = tgi_cores_available();
    if (ctx->threads > TG_MAX_THREADS) ctx->threads = TG_MAX_THREADS;
}

void tgi_ctx_release(tg_ctx *ctx) {
    tgi_pool_release(ctx);
    tgi_hooks_release(ctx);
    tgi_anomaly_release(ctx);
    tgi_block *block = ctx->blocks;
    while (block) {
        tgi_block *next = block->next;
        tgi_free(ctx, block, block->bytes);
        block = next;
    }
    ctx->blocks = NULL;
    ctx->persistent_bytes = 0;
    for (tgi_retired *r = ctx->retired, *next; r; r = next) {
        next = r->next;
        tgi_free(ctx, r->block, r->bytes);
    }
    ctx->retired = NULL;
}

void tgi_ctx_live_add(tg_ctx *ctx) {
    pthread_mutex_lock(&live_lock);
    ctx->next_live = live_contexts;
    live_contexts = ctx;
    pthread_mutex_unlock(&live_lock);
}

/* Only the list's own links are read: a freed ctx is compared, never dereferenced. */
bool tgi_ctx_live_remove(tg_ctx *ctx) {
    pthread_mutex_lock(&live_lock);
    tg_ctx **link = &live_contexts;
    while (*link && *link != ctx) link = &(*link)->next_live;
    bool found = *link != NULL;
    if (found) *link = ctx->next_live;
    pthread_mutex_unlock(&live_lock);
    return found;
}

void tgi_retire(tg_ctx *ctx, tgi_retired *r, void *block, size_t bytes) {
    r->freed = true;
    r->block = block;
    r->bytes = bytes;
    r->next = ctx->retired;
    ctx->retired = r;
}

void *tgi_alloc(tg_ctx *ctx, size_t bytes) {
    return ctx->alloc(ctx->alloc_user, NULL, 0, bytes);
}

void *tgi_realloc(tg_ctx *ctx, void *ptr, size_t old_bytes, size_t new_bytes) {
    return ctx->alloc(ctx->alloc_user, ptr, old_bytes, new_bytes);
}

void tgi_free(tg_ctx *ctx, void *ptr, size_t bytes) {
    if (ptr) ctx->alloc(ctx->alloc_user, ptr, bytes, 0);
}

char *tgi_strdup(tg_ctx *ctx, const char *s) {
    size_t n = strlen(s) + 1;
    char *copy = tgi_alloc(ctx, n);
    if (copy) memcpy(copy, s, n);
    return copy;
}

tg_status tgi_verror(tg_ctx *ctx, tg_status status, const char *fmt, va_list args) {
    /* A NULL context has nowhere to keep the message: the caller gets the status alone. */
    if (ctx && ctx->err_code == TG_OK) {
        ctx->err_code = status;
        vsnprintf(ctx->err_msg, sizeof ctx->err_msg, fmt, args);
    }
    return status;
}

tg_status tgi_error(tg_ctx *ctx, tg_status status, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    tgi_verror(ctx, status, fmt, args);
    va_end(args);
    return status;
}

const char *tg_errmsg(const tg_ctx *ctx) {
    return ctx ? ctx->err_msg : "no context";
}

tg_status tg_errcode(const tg_ctx *ctx) {
    return ctx ? ctx->err_code : TG_ERR_INVALID;
}

void tg_clear_error(tg_ctx *ctx) {
    if (!ctx) return;
    ctx->err_code = TG_OK;
    ctx->err_msg[0] = '\0';
}

size_t tg_ctx_bytes_persistent(const tg_ctx *ctx) {
    return ctx ? ctx->persistent_bytes : 0;
}

/* Persistent tensors: header, tensor struct, its label's storage, then 64-byte aligned data, in
 * one block. */
static tg_tensor *persistent_tensor(tg_ctx *ctx, int ndim, const int64_t *shape) {
    if (!ctx) return NULL;
    if (tgi_check_shape(ctx, "tensor", ndim, shape) != TG_OK) return NULL;
    int64_t size = 1;
    for (int d = 0; d < ndim; d++) size *= shape[d];
    size_t head = (sizeof(tgi_block) + sizeof(tg_tensor) + TG_LABEL_MAX + 63) & ~(size_t)63;
    size_t bytes = head + (size_t)size * sizeof(float) + 64;
    tgi_block *block = tgi_alloc(ctx, bytes);
    if (!block) {
        tgi_error(ctx, TG_ERR_NOMEM, "tensor: out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    block->bytes = bytes;
    block->next = ctx->blocks;
    ctx->blocks = block;
    ctx->persistent_bytes += bytes;
    tg_tensor *t = (tg_tensor *)(block + 1);
    memset(t, 0, sizeof *t + TG_LABEL_MAX);
    t->label = (const char *)(t + 1); /* tgi_label_room */
    uintptr_t data = ((uintptr_t)block + head + 63) & ~(uintptr_t)63;
    t->data = (float *)data;
    t->persistent = true;
    t->node = -1;
    t->ctx = ctx;
    tgi_set_shape(t, ndim, shape);
    memset(t->data, 0, (size_t)size * sizeof(float));
    return t;
}

tg_tensor *tg_zeros(tg_ctx *ctx, int ndim, const int64_t *shape) {
    return persistent_tensor(ctx, ndim, shape);
}

tg_tensor *tg_full(tg_ctx *ctx, int ndim, const int64_t *shape, float value) {
    tg_tensor *t = persistent_tensor(ctx, ndim, shape);
    if (t) tg_fill(t, value);
    return t;
}

tg_tensor *tg_ones(tg_ctx *ctx, int ndim, const int64_t *shape) {
    return tg_full(ctx, ndim, shape, 1.0f);
}

tg_tensor *tg_from_data(tg_ctx *ctx, int ndim, const int64_t *shape, const float *data) {
    tg_tensor *t = persistent_tensor(ctx, ndim, shape);
    if (t && data) memcpy(t->data, data, (size_t)t->size * sizeof(float));
    return t;
}

tg_tensor *tg_scalar(tg_ctx *ctx, float value) {
    return tg_full(ctx, 0, NULL, value);
}

/* The gradient buffer of a persistent leaf is a persistent block of its own. */
float *tgi_persistent_floats(tg_ctx *ctx, int64_t count) {
    tg_tensor *holder = persistent_tensor(ctx, 1, &count);
    return holder ? holder->data : NULL;
}
