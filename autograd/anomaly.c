/*
 * autograd/anomaly.c — anomaly mode: stop at the first NaN or Inf, and say exactly where.
 *
 * Forward: each op's output is scanned as soon as it is computed. Backward: after each VJP the
 * gradients it accumulated into are scanned, so the op that first produced a non-finite
 * gradient is named, not one of its innocent successors.
 */
#include "autograd/internal.h"

#include <math.h>
#include <stdio.h>

void tg_set_anomaly_mode(tg_ctx *ctx, bool enabled) {
    if (ctx) ctx->anomaly = enabled;
}
bool tg_anomaly_mode(const tg_ctx *ctx) { return ctx && ctx->anomaly; }

static int64_t first_nonfinite(const float *values, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(values[i])) return i;
    return -1;
}

static const char *kind(float value) {
    return isnan(value) ? "NaN" : (value > 0 ? "+Inf" : "-Inf");
}

tg_status tgi_check_forward(tg_tape *tape, const tgi_op *op, tg_tensor *const *inputs,
                            int n_inputs, const tg_tensor *output) {
    int64_t at = first_nonfinite(output->data, output->size);
    if (at < 0) return TG_OK;
    char where[TGI_ERRMSG_MAX / 2], name[TG_LABEL_MAX + 32], shape[96];
    tgi_describe_inputs(where, sizeof where, tape, inputs, n_inputs);
    const char *label = output->label[0] ? output->label : "";
    if (output->node >= 0) snprintf(name, sizeof name, "%s#%d", op->name, (int)output->node);
    else snprintf(name, sizeof name, "%s", op->name);
    return tgi_error(tape->ctx, TG_ERR_NUMERIC, "anomaly in the forward pass at step %lld: %s "
                     "produced %s at element %lld of '%s' %s from inputs (%s)",
                     (long long)tape->step, op->name, kind(output->data[at]), (long long)at,
                     label[0] ? label : name,
                     tgi_format_shape(output->ndim, output->shape, shape, sizeof shape), where);
}

tg_status tgi_check_backward(tg_tape *tape, const tgi_node *node) {
    const tg_op_call *call = &node->call;
    for (int i = 0; i < call->n_inputs; i++) {
        const tg_tensor *in = call->inputs[i];
        if (!in->grad) continue;
        int64_t at = first_nonfinite(in->grad, in->size);
        if (at < 0) continue;
        char where[TGI_ERRMSG_MAX / 2], out_name[TG_LABEL_MAX + 32], input[TG_LABEL_MAX + 32],
            shape[96];
        tgi_describe_inputs(where, sizeof where, tape, call->inputs, call->n_inputs);
        const tg_tensor *out = call->output;
        return tgi_error(tape->ctx, TG_ERR_NUMERIC, "anomaly in the backward pass at step %lld: "
                         "the VJP of %s at node '%s' %s wrote %s into the gradient of input %d "
                         "'%s' (element %lld); inputs (%s)", (long long)tape->step,
                         node->op->name, tgi_node_name(out, out_name, sizeof out_name),
                         tgi_format_shape(out->ndim, out->shape, shape, sizeof shape),
                         kind(in->grad[at]), i, tgi_node_name(in, input, sizeof input),
                         (long long)at, where);
    }
    return TG_OK;
}
