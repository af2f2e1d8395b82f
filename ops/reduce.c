/*
 * ops/reduce.c — sums and means, over everything or along one axis.
 */
#include "ops/kernels.h"

/* ---- over all elements --------------------------------------------------------------------- */

/* Summed in double: a float running sum of a million elements loses digits. Eight running
 * sums (lane l takes the elements l mod 8), added in a fixed order: one chain of dependent
 * additions ran at an addition's latency, 3% of a ResNet block's step for the loss's mean. */
static double total(const tg_tensor *x) {
    double lane[8] = {0};
    const float *d = x->data;
    int64_t i = 0;
    for (; i + 8 <= x->size; i += 8)
        for (int l = 0; l < 8; l++) lane[l] += d[i + l];
    double sum = ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
    for (; i < x->size; i++) sum += d[i];
    return sum;
}

static tg_status sum_forward(tg_op_call *call) {
    call->output->data[0] = (float)total(call->inputs[0]);
    return TG_OK;
}

static tg_status mean_forward(tg_op_call *call) {
    call->output->data[0] = (float)(total(call->inputs[0]) / (double)call->inputs[0]->size);
    return TG_OK;
}

/* A fresh gradient (tgi_op.fresh_grads) is written rather than zeroed, then added to. */
static void spread(const tg_op_call *call, float factor) {
    tg_tensor *x = call->inputs[0];
    float *gx = x->grad;
    if (!gx) return;
    float g = call->output->grad[0] * factor;
    if (x->grad_fresh)
        for (int64_t i = 0; i < x->size; i++) gx[i] = g;
    else
        for (int64_t i = 0; i < x->size; i++) gx[i] += g;
    x->grad_fresh = false;
}

static tg_status sum_backward(const tg_op_call *call) {
    spread(call, 1.0f);
    return TG_OK;
}

static tg_status mean_backward(const tg_op_call *call) {
    spread(call, 1.0f / (float)call->inputs[0]->size);
    return TG_OK;
}

/* ---- along one axis ------------------------------------------------------------------------ */

static void axis_reduce(tg_op_call *call, bool mean) {
    tgi_axis_split s = tgi_split_at_attr_axis(call);
    const float *x = call->inputs[0]->data;
    for (int64_t o = 0; o < s.outer; o++)
        for (int64_t i = 0; i < s.inner; i++) {
            double sum = 0.0;
            for (int64_t a = 0; a < s.n; a++) sum += x[(o * s.n + a) * s.inner + i];
            call->output->data[o * s.inner + i] = (float)(mean ? sum / (double)s.n : sum);
        }
}

static void axis_spread(const tg_op_call *call, bool mean) {
    float *gx = call->inputs[0]->grad;
    if (!gx) return;
    tgi_axis_split s = tgi_split_at_attr_axis(call);
    float factor = mean ? 1.0f / (float)s.n : 1.0f;
    for (int64_t o = 0; o < s.outer; o++)
        for (int64_t a = 0; a < s.n; a++)
            for (int64_t i = 0; i < s.inner; i++)
                gx[(o * s.n + a) * s.inner + i] += factor * call->output->grad[o * s.inner + i];
}

static tg_status sum_axis_forward(tg_op_call *call) {
    axis_reduce(call, false);
    return TG_OK;
}

static tg_status sum_axis_backward(const tg_op_call *call) {
    axis_spread(call, false);
    return TG_OK;
}

static tg_status mean_axis_forward(tg_op_call *call) {
    axis_reduce(call, true);
    return TG_OK;
}

static tg_status mean_axis_backward(const tg_op_call *call) {
    axis_spread(call, true);
    return TG_OK;
}

/* ---- registry entries ---------------------------------------------------------------------- */

static const tgi_example all_inputs[] = {TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 3, 4), {.i64 = 0})};
static const tgi_example axis_inputs[] = {
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 3, 4), {.i64 = 0}, {.b = false}),
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 2, 3, 4), {.i64 = 1}, {.b = true}),
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 2, 3, 4), {.i64 = -1}, {.b = false}),
};
static const tgi_examples all_examples = TGI_EXAMPLES(all_inputs);
static const tgi_examples axis_examples = TGI_EXAMPLES(axis_inputs);

const tg_op_def tgi_reduce_defs[] = {
    KERNEL_DEF_JVP(sum, 1, "", tgi_infer_scalar, all_examples, tgi_jvp_linear),
    KERNEL_DEF_JVP(mean, 1, "", tgi_infer_scalar, all_examples, tgi_jvp_linear),
    KERNEL_DEF_JVP(sum_axis, 1, "axis:i64,keepdim:bool", tgi_infer_reduce_axis, axis_examples, tgi_jvp_linear),
    KERNEL_DEF_JVP(mean_axis, 1, "axis:i64,keepdim:bool", tgi_infer_reduce_axis, axis_examples, tgi_jvp_linear),
};
const int tgi_reduce_count = sizeof tgi_reduce_defs / sizeof tgi_reduce_defs[0];

tg_tensor *tgi_call_axis(tg_tape *tape, int id, tg_tensor *x, int axis, bool keepdim) {
    tg_attr_value attrs[2] = {{.i64 = axis}, {.b = keepdim}};
    return tgi_call_builtin(tape, id, &x, 1, attrs);
}

tg_tensor *tg_sum(tg_tape *tape, tg_tensor *x) { return tgi_unary(tape, TGI_OP_SUM, x); }
tg_tensor *tg_mean(tg_tape *tape, tg_tensor *x) { return tgi_unary(tape, TGI_OP_MEAN, x); }
tg_tensor *tg_sum_axis(tg_tape *tape, tg_tensor *x, int axis, bool keepdim) {
    return tgi_call_axis(tape, TGI_OP_SUM_AXIS, x, axis, keepdim);
}
tg_tensor *tg_mean_axis(tg_tape *tape, tg_tensor *x, int axis, bool keepdim) {
    return tgi_call_axis(tape, TGI_OP_MEAN_AXIS, x, axis, keepdim);
}
