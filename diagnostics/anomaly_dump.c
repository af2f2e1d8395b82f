/*
 * diagnostics/anomaly_dump.c — the culprit of an anomaly stop, to a safetensors file: the op's
 * inputs (and, backward, the incoming gradient) as tensors, the op, node, pass, step, input
 * names and attributes as metadata, so that the bad case can be called again with tg_call.
 *
 * It observes anomaly stops (autograd cannot call a file writer: the arrows point one way) and
 * writes while the culprit's inputs still live, before the step is reset.
 */
#include "models/models.h"

#include <stdio.h>

static void attr_text(const tgi_attr_spec *spec, const tg_attr_value *v, char *buf, size_t size) {
    switch (spec->type) {
    case TG_ATTR_F32: snprintf(buf, size, "%.9g", (double)v->f32); break;
    case TG_ATTR_F64: snprintf(buf, size, "%.17g", v->f64); break;
    case TG_ATTR_I32: snprintf(buf, size, "%d", (int)v->i32); break;
    case TG_ATTR_I64: snprintf(buf, size, "%lld", (long long)v->i64); break;
    case TG_ATTR_BOOL: snprintf(buf, size, "%s", v->b ? "true" : "false"); break;
    default: tgi_format_shape(v->shape.ndim, v->shape.dims, buf, size); break;
    }
}

enum { MAX_META = 4 + TG_ANOMALY_MAX_INPUTS + TG_MAX_ATTRS };

/* Copies of the tensors (the same data) under the names the file uses. */
typedef struct dump {
    tg_tensor tensors[TG_ANOMALY_MAX_INPUTS + 1];
    char names[TG_ANOMALY_MAX_INPUTS + 1][TG_LABEL_MAX]; /* the copies' labels */
    int n;
    char keys[MAX_META][TG_LABEL_MAX + 16];
    char values[MAX_META][TG_LABEL_MAX + 48];
    const char *meta[2 * MAX_META];
    int n_meta;
} dump;

static void add_meta(dump *d, const char *key, const char *value) {
    if (d->n_meta == MAX_META) return;
    snprintf(d->keys[d->n_meta], sizeof d->keys[0], "%s", key);
    snprintf(d->values[d->n_meta], sizeof d->values[0], "%s", value);
    d->meta[2 * d->n_meta] = d->keys[d->n_meta];
    d->meta[2 * d->n_meta + 1] = d->values[d->n_meta];
    d->n_meta++;
}

static void add_tensor(dump *d, const tg_tensor *t, const float *values, const char *name) {
    tg_tensor *copy = &d->tensors[d->n];
    *copy = *t;
    copy->data = (float *)values;
    snprintf(d->names[d->n], sizeof d->names[0], "%s", name);
    copy->label = d->names[d->n++];
}

static void write_dump(tg_ctx *ctx, const tg_anomaly_report *report, const tg_op_call *call,
                       void *user) {
    (void)user;
    if (!ctx->anomaly_dump_path) return;
    if (ctx->anomaly_dumped) { /* the first stop is the cause; later ones are its echoes */
        char message[TGI_ERRMSG_MAX];
        snprintf(message, sizeof message, "%s", ctx->err_msg);
        tg_status status = ctx->err_code;
        tg_clear_error(ctx);
        tgi_error(ctx, status, "%s; not dumped: '%s' keeps the first stop (step %lld)", message,
                  ctx->anomaly_dump_path, (long long)ctx->anomaly_dump_step);
        return;
    }
    dump *d = tgi_alloc(ctx, sizeof *d);
    if (!d) return;
    memset(d, 0, sizeof *d);
    char key[32], text[TG_LABEL_MAX + 48], step[32];
    add_meta(d, "op", report->op);
    add_meta(d, "node", report->node);
    add_meta(d, "pass", report->pass == TG_PASS_FORWARD ? "forward" : "backward");
    snprintf(step, sizeof step, "%lld", (long long)report->step);
    add_meta(d, "step", step);
    int n = call->n_inputs < TG_ANOMALY_MAX_INPUTS ? call->n_inputs : TG_ANOMALY_MAX_INPUTS;
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "input.%d", i);
        add_tensor(d, call->inputs[i], call->inputs[i]->data, key);
        snprintf(key, sizeof key, "input.%d.name", i);
        add_meta(d, key, tgi_node_name(call->inputs[i], text, sizeof text));
    }
    if (report->pass == TG_PASS_BACKWARD && call->output->grad)
        add_tensor(d, call->output, call->output->grad, "grad_output");
    const tgi_op *op = tgi_op_by_id(ctx, call->op_id);
    for (int k = 0; op && call->attrs && k < op->n_attrs; k++) {
        snprintf(key, sizeof key, "attr.%s", op->attrs[k].name);
        attr_text(&op->attrs[k], &call->attrs[k], text, sizeof text);
        add_meta(d, key, text);
    }
    tg_tensor *list[TG_ANOMALY_MAX_INPUTS + 1];
    for (int i = 0; i < d->n; i++) list[i] = &d->tensors[i];
    /* the anomaly's message stays first; a failed dump adds its reason after it */
    char message[TGI_ERRMSG_MAX];
    snprintf(message, sizeof message, "%s", ctx->err_msg);
    tg_status status = ctx->err_code;
    tg_clear_error(ctx);
    tg_status saved = tgi_save_safetensors_meta(ctx, ctx->anomaly_dump_path, list, d->n, d->meta,
                                                d->n_meta);
    char why[TGI_ERRMSG_MAX / 2];
    snprintf(why, sizeof why, "%s", saved == TG_OK ? "" : ctx->err_msg);
    tg_clear_error(ctx);
    if (saved == TG_OK) {
        ctx->anomaly_dumped = true;
        ctx->anomaly_dump_step = report->step;
        tgi_error(ctx, status, "%s; inputs dumped to '%s'", message, ctx->anomaly_dump_path);
    }
    else tgi_error(ctx, status, "%s; the dump failed: %s", message, why);
    tgi_free(ctx, d, sizeof *d);
}

tg_status tg_set_anomaly_dump(tg_ctx *ctx, const char *path) {
    if (!ctx) return TG_ERR_INVALID;
    tgi_anomaly_unobserve(ctx, write_dump, NULL);
    tgi_anomaly_release(ctx);
    ctx->anomaly_dumped = false; /* armed again: the next stop is dumped */
    if (!path) return TG_OK;
    if (!(ctx->anomaly_dump_path = tgi_strdup(ctx, path)))
        return tgi_error(ctx, TG_ERR_NOMEM, "set_anomaly_dump: out of memory");
    if (!tgi_anomaly_observe(ctx, write_dump, NULL)) {
        tgi_anomaly_release(ctx);
        return tgi_error(ctx, TG_ERR_STATE, "set_anomaly_dump: %d observers of anomaly stops "
                         "already (recorders and the dump)", TGI_MAX_OBSERVERS);
    }
    return TG_OK;
}
