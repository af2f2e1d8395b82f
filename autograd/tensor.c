/*
 * autograd/tensor.c — tensor shapes, fills, labels and gradient buffers.
 */
#include "autograd/internal.h"

#include <stdio.h>
#include <string.h>

tg_status tgi_check_shape(tg_ctx *ctx, const char *what, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > TG_MAX_DIMS)
        return tgi_error(ctx, TG_ERR_SHAPE, "%s: %d dims requested, tensors have 0 to %d",
                         what, ndim, TG_MAX_DIMS);
    if (ndim > 0 && !shape)
        return tgi_error(ctx, TG_ERR_INVALID, "%s: shape is NULL for %d dims", what, ndim);
    if (tgi_shape_elements(ndim, shape) < 0) {
        char buf[96];
        return tgi_error(ctx, TG_ERR_SHAPE, "%s: invalid shape %s (dims must be >= 1, "
                         "at most 2^40 elements)", what,
                         tgi_format_shape(ndim, shape, buf, sizeof buf));
    }
    return TG_OK;
}

void tgi_set_shape(tg_tensor *t, int ndim, const int64_t *shape) {
    t->ndim = ndim;
    t->size = 1;
    for (int d = 0; d < TG_MAX_DIMS; d++) {
        t->shape[d] = d < ndim ? shape[d] : 1;
        if (d < ndim) t->size *= shape[d];
    }
}

tg_tensor *tgi_tape_tensor(tg_tape *tape, int ndim, const int64_t *shape) {
    int64_t size = 1, dims[TG_MAX_DIMS];
    for (int d = 0; d < TG_MAX_DIMS; d++) {
        dims[d] = d < ndim ? shape[d] : 1;
        size *= dims[d];
    }
    tg_tensor *t = tgi_header_take(tape);
    if (!t) return NULL;
    float *data = tgi_arena_alloc(&tape->arena, (size_t)size * sizeof(float));
    if (!data) {
        tgi_error(tape->ctx, TG_ERR_NOMEM, "tape: out of memory for a tensor of %lld floats",
                  (long long)size);
        return NULL;
    }
    tgi_init_tape_tensor(t, tape, data, ndim, dims, size, NULL, false, NULL);
    return t;
}

tg_tensor *tg_tape_zeros(tg_tape *tape, int ndim, const int64_t *shape) {
    if (!tape) return NULL;
    if (tgi_check_shape(tape->ctx, "tape tensor", ndim, shape) != TG_OK) return NULL;
    tg_tensor *t = tgi_tape_tensor(tape, ndim, shape);
    if (t) memset(t->data, 0, (size_t)t->size * sizeof(float));
    return t;
}

tg_tensor *tg_tape_from_data(tg_tape *tape, int ndim, const int64_t *shape, const float *data) {
    if (!tape) return NULL;
    if (tgi_check_shape(tape->ctx, "tape tensor", ndim, shape) != TG_OK) return NULL;
    tg_tensor *t = tgi_tape_tensor(tape, ndim, shape);
    if (!t) return NULL;
    if (data) memcpy(t->data, data, (size_t)t->size * sizeof(float));
    else memset(t->data, 0, (size_t)t->size * sizeof(float));
    return t;
}

void tg_fill(tg_tensor *t, float value) {
    if (!t || tgi_refuse_stale(t, "fill") != TG_OK) return;
    for (int64_t i = 0; i < t->size; i++) t->data[i] = value;
}

void tg_fill_uniform(tg_tensor *t, float low, float high, uint64_t seed) {
    if (!t || tgi_refuse_stale(t, "fill_uniform") != TG_OK) return;
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    for (int64_t i = 0; i < t->size; i++) t->data[i] = low + (high - low) * tg_rng_uniform(&rng);
}

void tg_fill_normal(tg_tensor *t, float mean, float std, uint64_t seed) {
    if (!t || tgi_refuse_stale(t, "fill_normal") != TG_OK) return;
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    for (int64_t i = 0; i < t->size; i++)
        t->data[i] = (float)(mean + std * tg_rng_normal(&rng));
}

tg_status tg_copy_in(tg_tensor *t, const float *data, int64_t n) {
    if (!t) return TG_ERR_INVALID;
    if (tgi_refuse_stale(t, "copy_in") != TG_OK) return TG_ERR_STATE;
    if (!data) return tgi_error(t->ctx, TG_ERR_INVALID, "copy_in '%s': data is NULL", t->label);
    if (n != t->size) {
        char shape[96];
        return tgi_error(t->ctx, TG_ERR_SHAPE, "copy_in '%s' %s: %lld floats given, %lld expected",
                         t->label, tgi_format_shape(t->ndim, t->shape, shape, sizeof shape),
                         (long long)n, (long long)t->size);
    }
    memcpy(t->data, data, (size_t)n * sizeof(float));
    return TG_OK;
}

tg_tensor *tg_set_label(tg_tensor *t, const char *fmt, ...) {
    if (!t || tgi_refuse_stale(t, "set_label") != TG_OK) return NULL;
    if (!fmt) {
        tgi_error(t->ctx, TG_ERR_INVALID, "set_label: the format is NULL");
        return NULL;
    }
    char *room = tgi_label_room(t);
    if (!room) {
        tgi_error(t->ctx, TG_ERR_STATE, "set_label: the tensor has no label storage");
        return NULL;
    }
    char label[TG_LABEL_MAX];
    va_list args;
    va_start(args, fmt);
    int len = vsnprintf(label, sizeof label, fmt, args);
    va_end(args);
    if (len < 0 || tgi_check_name_length(t->ctx, "set_label", "the label", label, (size_t)len) != TG_OK)
        return NULL; /* the tensor keeps the label it had */
    memcpy(room, label, (size_t)len + 1);
    t->label = room;
    return t;
}

char *tgi_format_shape(int ndim, const int64_t *shape, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = '\0';
    len += (size_t)snprintf(buf + len, size - len, "[");
    for (int d = 0; d < ndim && len < size; d++)
        len += (size_t)snprintf(buf + len, size - len, d ? ",%lld" : "%lld", (long long)shape[d]);
    if (len < size) snprintf(buf + len, size - len, "]");
    return buf;
}

char *tg_shape_str(const tg_tensor *t, char *buf, size_t buf_size) {
    if (!buf || buf_size == 0) return buf;
    if (!t || buf_size < 3 || tgi_tensor_stale(t)) {
        snprintf(buf, buf_size, "%s", !t ? "(null)" : buf_size < 3 ? "" : "(stale)");
        return buf;
    }
    return tgi_format_shape(t->ndim, t->shape, buf, buf_size);
}

const char *tgi_node_name(const tg_tensor *t, char *buf, size_t size) {
    if (t->label[0]) return t->label;
    const tgi_op *op = tgi_producer(t);
    /* "<op>#<node>" by hand: hooks on every node call this, and snprintf costs more than
     * the rest of a scalar op's walk */
    const char *base = op ? op->name : "leaf"; /* an unrecorded output: just its op */
    size_t len = strlen(base);
    if (len >= size) len = size - 1;
    memcpy(buf, base, len);
    if (op && t->node >= 0 && len + 12 < size) {
        char digits[12];
        int n = 0;
        for (uint32_t v = (uint32_t)t->node; n == 0 || v; v /= 10) digits[n++] = (char)('0' + v % 10);
        buf[len++] = '#';
        while (n) buf[len++] = digits[--n];
    }
    buf[len] = '\0';
    return buf;
}

const char *tg_tensor_name(const tg_tensor *t) {
    if (!t) return "(null)";
    if (tgi_tensor_stale(t)) return "(stale)";
    tg_ctx *ctx = t->ctx;
    const char *name = tgi_node_name(t, ctx->name_buf, sizeof ctx->name_buf);
    return name;
}

const char *tg_tensor_op_name(const tg_tensor *t) {
    if (!t || tgi_tensor_stale(t)) return t ? "(stale)" : "(null)";
    const tgi_op *op = tgi_producer(t);
    return op ? op->name : "leaf";
}

tg_status tg_set_requires_grad(tg_tensor *t, bool requires_grad) {
    if (!t) return TG_ERR_INVALID;
    if (tgi_refuse_stale(t, "set_requires_grad") != TG_OK) return TG_ERR_STATE;
    if (t->node >= 0) {
        char name[TG_LABEL_MAX + 32];
        return tgi_error(t->ctx, TG_ERR_STATE, "set_requires_grad: '%s' is a recorded node, "
                         "not a leaf", tgi_node_name(t, name, sizeof name));
    }
    t->requires_grad = requires_grad;
    if (!requires_grad) { t->grad = NULL; return TG_OK; }
    if (t->grad) return TG_OK;
    float *grad = t->persistent ? tgi_persistent_floats(t->ctx, t->size)
                                : tgi_arena_alloc(&t->tape->arena, (size_t)t->size * sizeof(float));
    if (!grad) {
        t->requires_grad = false;
        return tgi_error(t->ctx, TG_ERR_NOMEM, "set_requires_grad: no memory for the gradient "
                         "of '%s'", t->label);
    }
    memset(grad, 0, (size_t)t->size * sizeof(float));
    t->grad = grad;
    t->grad_unset = true;
    return TG_OK;
}

void tg_zero_grad(tg_tensor *t) {
    if (!t || !t->grad || tgi_tensor_stale(t)) return;
    memset(t->grad, 0, (size_t)t->size * sizeof(float));
    t->grad_unset = true; /* PyTorch 2's set_to_none: optimizers skip t until backward reaches it */
}

/* A gradient written by hand after zero_grad has no mark to set: any non-zero value counts. */
bool tg_grad_is_set(const tg_tensor *t) {
    if (!t || !t->grad || tgi_tensor_stale(t)) return false;
    if (!t->grad_unset) return true;
    for (int64_t i = 0; i < t->size; i++)
        if (t->grad[i] != 0.0f) return true;
    return false;
}
