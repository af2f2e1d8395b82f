/*
 * autograd/anomaly.c — anomaly mode: the first NaN or Inf in execution order, the op that made
 * it, and whether that op created it or was handed it.
 *
 * Forward: each op's output is scanned as soon as it is computed. Backward: after each VJP the
 * gradients it accumulated into are scanned, so the op that first produced a non-finite
 * gradient is named, not one of its innocent successors. Whether the op created the value is
 * read from what it read: its inputs (and, backward, its output and the incoming gradient).
 *
 * The test of a tensor is an integer maximum of |bits| (a non-finite float has every exponent
 * bit set): it vectorises without reassociating floats, which a float sum may not do, so the
 * counts-only mode costs one streaming read of each tensor.
 */
#include "autograd/internal.h"

#include <float.h>
#include <math.h>
#include <stdio.h>

#define EXPONENT_BITS 0x7f800000u

void tg_set_anomaly_mode(tg_ctx *ctx, bool enabled) {
    if (!ctx) return;
    ctx->anomaly = enabled ? TG_ANOMALY_FULL : TG_ANOMALY_OFF;
    tgi_update_watch(ctx);
}
bool tg_anomaly_mode(const tg_ctx *ctx) { return ctx && ctx->anomaly == TG_ANOMALY_FULL; }

tg_status tg_set_anomaly_level(tg_ctx *ctx, tg_anomaly_level level) {
    if (!ctx) return TG_ERR_INVALID;
    if (level != TG_ANOMALY_OFF && level != TG_ANOMALY_COUNTS && level != TG_ANOMALY_FULL)
        return tgi_error(ctx, TG_ERR_INVALID, "set_anomaly_level: level %d is none of "
                         "TG_ANOMALY_OFF, TG_ANOMALY_COUNTS, TG_ANOMALY_FULL", (int)level);
    ctx->anomaly = (int)level;
    tgi_update_watch(ctx);
    return TG_OK;
}

tg_anomaly_level tg_get_anomaly_level(const tg_ctx *ctx) {
    return ctx ? (tg_anomaly_level)ctx->anomaly : TG_ANOMALY_OFF;
}

static bool all_finite(const float *values, int64_t n) {
    uint32_t top = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &values[i], sizeof bits);
        bits &= 0x7fffffffu;
        top = bits > top ? bits : top;
    }
    return top < EXPONENT_BITS;
}

static int64_t first_nonfinite(const float *values, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(values[i])) return i;
    return -1;
}

void tg_count_values(const float *values, int64_t n, tg_value_counts *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!values || n < 0) return;
    out->count = n;
    for (int64_t i = 0; i < n; i++) {
        float v = values[i];
        if (isnan(v)) out->nan++;
        else if (isinf(v)) *(v > 0 ? &out->pos_inf : &out->neg_inf) += 1;
        else if (v == 0.0f) out->zero++;
        else if (fabsf(v) < FLT_MIN) out->subnormal++;
    }
}

static const char *kind(float value) {
    return isnan(value) ? "NaN" : (value > 0 ? "+Inf" : "-Inf");
}

/* "4 values: 1 NaN, 0 +Inf, 0 -Inf, 2 zero, 0 subnormal" */
static const char *describe_counts(const tg_value_counts *c, char *buf, size_t size) {
    snprintf(buf, size, "%lld values: %lld NaN, %lld +Inf, %lld -Inf, %lld zero, %lld subnormal",
             (long long)c->count, (long long)c->nan, (long long)c->pos_inf, (long long)c->neg_inf,
             (long long)c->zero, (long long)c->subnormal);
    return buf;
}

/* ---- counts only --------------------------------------------------------------------------- */

/* The counts belong to one step of one tape: a new step starts them afresh. */
static tg_anomaly_counts *counts_of(tg_tape *tape) {
    tg_ctx *ctx = tape->ctx;
    if (tape->parent) tape = tape->parent; /* a segment's inside counts as part of its step */
    if (ctx->counts_tape != tape || ctx->counts.step != tape->step) {
        memset(&ctx->counts, 0, sizeof ctx->counts);
        ctx->counts.step = tape->step;
        ctx->counts_tape = tape;
    }
    return &ctx->counts;
}

static void count(tg_tape *tape, const tg_tensor *t, const char *op, tg_pass pass,
                  const float *values) {
    tg_anomaly_counts *c = counts_of(tape);
    c->tensors_scanned++;
    if (all_finite(values, t->size)) return;
    tg_value_counts k;
    tg_count_values(values, t->size, &k);
    c->tensors_nonfinite++;
    c->nan += k.nan;
    c->inf += k.pos_inf + k.neg_inf;
    if (c->n_nodes == TG_ANOMALY_MAX_NODES) return;
    tg_nonfinite_node *n = &c->nodes[c->n_nodes++];
    char name[TG_LABEL_MAX + 32];
    snprintf(n->name, sizeof n->name, "%s", tgi_node_name(t, name, sizeof name));
    snprintf(n->op, sizeof n->op, "%s", op);
    n->pass = pass;
    n->nan = k.nan;
    n->inf = k.pos_inf + k.neg_inf;
}

tg_status tg_anomaly_step_counts(const tg_ctx *ctx, tg_anomaly_counts *out) {
    if (!ctx) return TG_ERR_INVALID;
    if (!out) return tgi_error((tg_ctx *)ctx, TG_ERR_INVALID, "anomaly_step_counts: out is NULL");
    *out = ctx->counts;
    return TG_OK;
}

void tgi_count_leaf_grads(tg_tape *tape) {
    for (int64_t i = 0; i < tape->n_leaves; i++)
        if (tape->leaves[i]->grad)
            count(tape, tape->leaves[i], "leaf", TG_PASS_BACKWARD, tape->leaves[i]->grad);
}

/* ---- the stop ------------------------------------------------------------------------------ */

tg_status tg_anomaly_last(const tg_ctx *ctx, tg_anomaly_report *out) {
    if (!ctx) return TG_ERR_INVALID;
    if (!out) return tgi_error((tg_ctx *)ctx, TG_ERR_INVALID, "anomaly_last: out is NULL");
    if (!ctx->has_anomaly) return TG_ERR_NOT_FOUND;
    *out = ctx->last_anomaly;
    return TG_OK;
}

bool tgi_anomaly_observe(tg_ctx *ctx, tgi_anomaly_observer fn, void *user) {
    for (int i = 0; i < TGI_MAX_OBSERVERS; i++)
        if (!ctx->observers[i]) {
            ctx->observers[i] = fn;
            ctx->observer_users[i] = user;
            return true;
        }
    return false;
}

void tgi_anomaly_unobserve(tg_ctx *ctx, tgi_anomaly_observer fn, void *user) {
    for (int i = 0; i < TGI_MAX_OBSERVERS; i++)
        if (ctx->observers[i] == fn && ctx->observer_users[i] == user) ctx->observers[i] = NULL;
}

void tgi_anomaly_release(tg_ctx *ctx) {
    if (ctx->anomaly_dump_path)
        tgi_free(ctx, ctx->anomaly_dump_path, strlen(ctx->anomaly_dump_path) + 1);
    ctx->anomaly_dump_path = NULL;
}

/* What an op read, for the verdict: each input's values and, backward, the output's values and
 * the incoming gradient. The first non-finite one is the source. */
static void judge(tg_anomaly_report *r, const tg_op_call *call, bool backward) {
    r->created = true;
    r->n_inputs = call->n_inputs < TG_ANOMALY_MAX_INPUTS ? call->n_inputs : TG_ANOMALY_MAX_INPUTS;
    char name[TG_LABEL_MAX + 32];
    for (int i = 0; i < r->n_inputs; i++) {
        const tg_tensor *in = call->inputs[i];
        tg_count_values(in->data, in->size, &r->input_counts[i]);
        const tg_value_counts *k = &r->input_counts[i];
        if (r->created && k->nan + k->pos_inf + k->neg_inf) {
            r->created = false;
            snprintf(r->source, sizeof r->source, "input '%s'", tgi_node_name(in, name, sizeof name));
        }
    }
    if (!backward) return;
    const tg_tensor *out = call->output;
    tg_value_counts *g = &r->input_counts[r->n_inputs++];
    tg_count_values(out->grad, out->size, g);
    if (r->created && g->nan + g->pos_inf + g->neg_inf) {
        r->created = false;
        snprintf(r->source, sizeof r->source, "the incoming gradient of '%s'",
                 tgi_node_name(out, name, sizeof name));
    }
    if (r->created && !all_finite(out->data, out->size)) {
        r->created = false;
        snprintf(r->source, sizeof r->source, "the output '%s'", tgi_node_name(out, name, sizeof name));
    }
}

/* Fills the report's message and the context's error, tells the observers, returns the error. */
static tg_status stop(tg_tape *tape, const tg_op_call *call, tg_anomaly_report *r) {
    tg_ctx *ctx = tape->ctx;
    char where[TGI_ERRMSG_MAX / 4], counts[160], verdict[TG_LABEL_MAX + 80], shape[96];
    tgi_describe_inputs(where, sizeof where, tape, call->inputs, call->n_inputs);
    if (r->created) snprintf(verdict, sizeof verdict, "created from finite inputs");
    else snprintf(verdict, sizeof verdict, "propagated from %s", r->source);
    describe_counts(&r->counts, counts, sizeof counts);
    const tg_tensor *out = call->output;
    tgi_format_shape(out->ndim, out->shape, shape, sizeof shape);
    if (r->pass == TG_PASS_FORWARD)
        snprintf(r->message, sizeof r->message, "anomaly in the forward pass at step %lld: %s "
                 "produced %s at element %lld of '%s' %s, %s; output: %s; inputs (%s)",
                 (long long)r->step, r->op, kind(r->value), (long long)r->element, r->node, shape,
                 verdict, counts, where);
    else
        snprintf(r->message, sizeof r->message, "anomaly in the backward pass at step %lld: the "
                 "VJP of %s at node '%s' %s wrote %s into the %s (element %lld), %s; gradient: %s; "
                 "inputs (%s)", (long long)r->step, r->op, r->node, shape, kind(r->value),
                 r->tensor, (long long)r->element, verdict, counts, where);
    ctx->last_anomaly = *r;
    ctx->has_anomaly = true;
    tgi_error(ctx, TG_ERR_NUMERIC, "%s", r->message);
    for (int i = 0; i < TGI_MAX_OBSERVERS; i++)
        if (ctx->observers[i]) ctx->observers[i](ctx, r, call, ctx->observer_users[i]);
    return TG_ERR_NUMERIC;
}

static void begin_report(tg_anomaly_report *r, const tg_tape *tape, const tgi_node *node,
                         tg_pass pass, const float *values, int64_t n) {
    memset(r, 0, sizeof *r);
    r->pass = pass;
    r->step = tape->step;
    snprintf(r->op, sizeof r->op, "%s", node->op->name);
    char name[TG_LABEL_MAX + 32];
    snprintf(r->node, sizeof r->node, "%s", tgi_node_name(node->call.output, name, sizeof name));
    r->element = first_nonfinite(values, n);
    r->value = values[r->element];
    tg_count_values(values, n, &r->counts);
}

tg_status tgi_check_forward(tg_tape *tape, const tgi_node *node) {
    const tg_tensor *output = node->call.output;
    if (tape->ctx->anomaly == TG_ANOMALY_COUNTS) {
        count(tape, output, node->op->name, TG_PASS_FORWARD, output->data);
        return TG_OK;
    }
    if (all_finite(output->data, output->size)) return TG_OK;
    tg_anomaly_report r;
    begin_report(&r, tape, node, TG_PASS_FORWARD, output->data, output->size);
    snprintf(r.tensor, sizeof r.tensor, "%s", r.node);
    judge(&r, &node->call, false);
    return stop(tape, &node->call, &r);
}

void tgi_count_node_grad(tg_tape *tape, const tgi_node *node) {
    count(tape, node->call.output, node->op->name, TG_PASS_BACKWARD, node->call.output->grad);
}

tg_status tgi_check_backward(tg_tape *tape, const tgi_node *node) {
    if (tape->ctx->anomaly != TG_ANOMALY_FULL) return TG_OK;
    const tg_op_call *call = &node->call;
    for (int i = 0; i < call->n_inputs; i++) {
        const tg_tensor *in = call->inputs[i];
        if (!in->grad || all_finite(in->grad, in->size)) continue;
        tg_anomaly_report r;
        char name[TG_LABEL_MAX + 32];
        begin_report(&r, tape, node, TG_PASS_BACKWARD, in->grad, in->size);
        snprintf(r.tensor, sizeof r.tensor, "gradient of input %d '%s'", i,
                 tgi_node_name(in, name, sizeof name));
        judge(&r, call, true);
        return stop(tape, call, &r);
    }
    return TG_OK;
}
