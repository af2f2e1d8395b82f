/*
 * ops/activation.c — activations, softmax and dropout.
 */
#include "ops/kernels.h"

#include <math.h>


/* Forward and derivative of each op, side by side. */
UNARY_OP(sigmoid, tgi_sigmoid(x), y * (1.0f - y))
UNARY_OP(tanh, tgi_tanhf(x), 1.0f - y * y)
/* relu: `x <= 0 ? 0 : x` keeps a NaN (as torch.relu does); `x > 0 ? x : 0` made it 0, and a NaN
 * weight then trained on with the report saying "no NaN". */
UNARY_OP(relu, x <= 0.0f ? 0.0f : x, x > 0.0f ? 1.0f : 0.0f)
UNARY_OP(leaky_relu, x > 0.0f ? x : attr[0].f32 * x, x > 0.0f ? 1.0f : attr[0].f32)
UNARY_OP(elu, x > 0.0f ? x : attr[0].f32 * expm1f(x), x > 0.0f ? 1.0f : y + attr[0].f32)
UNARY_OP(softplus, fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))), tgi_sigmoid(x))
UNARY_OP(gelu, tgi_geluf(x), tgi_gelu_grad(x, y))

/* ---- softmax and log-softmax over one axis ------------------------------------------------- */

/* The lanes of one softmax: outer * inner lanes of n elements, each `inner` apart. */
typedef struct softmax_lanes {
    const tg_op_call *call;
    tgi_axis_split split;
    bool log;
} softmax_lanes;

/* A masked entry (-inf) gives exp(-inf) = 0 once the lane's finite maximum is subtracted; a lane
 * that is all -inf has no finite maximum and gives NaN (-inf - -inf), as PyTorch does. */
static void softmax_forward_range(void *arg, int64_t begin, int64_t end) {
    const softmax_lanes *s = arg;
    int64_t n = s->split.n, inner = s->split.inner;
    for (int64_t lane = begin; lane < end; lane++) {
        int64_t base = lane / inner * n * inner + lane % inner;
        const float *x = s->call->inputs[0]->data + base;
        float *y = s->call->output->data + base, max;
        float log_sum = tgi_lane_log_sum(x, n, inner, &max);
        for (int64_t j = 0; j < n; j++) {
            float shifted = (x[j * inner] - max) - log_sum;
            y[j * inner] = s->log ? shifted : expf(shifted);
        }
    }
}

/* softmax: dx = y * (g - <g, y>); log-softmax: dx = g - exp(y) * sum(g). */
static void softmax_backward_range(void *arg, int64_t begin, int64_t end) {
    const softmax_lanes *s = arg;
    const tg_tensor *out = s->call->output;
    int64_t n = s->split.n, inner = s->split.inner;
    for (int64_t lane = begin; lane < end; lane++) {
        int64_t base = lane / inner * n * inner + lane % inner;
        const float *y = out->data + base, *g = out->grad + base;
        float *gx = s->call->inputs[0]->grad + base;
        double acc = 0.0;
        for (int64_t j = 0; j < n; j++) acc += s->log ? g[j * inner] : (double)g[j * inner] * y[j * inner];
        for (int64_t j = 0; j < n; j++) {
            int64_t at = j * inner;
            gx[at] += s->log ? g[at] - expf(y[at]) * (float)acc : y[at] * (g[at] - (float)acc);
        }
    }
}

/* Lanes are independent, so they may be spread over the threads with the same results. */
static void run_lanes(const tg_op_call *call, int axis, bool log, tgi_range_fn fn) {
    softmax_lanes s = {call, tgi_split_at(call->inputs[0], axis), log};
    int64_t lanes = s.split.outer * s.split.inner;
    if (call->output->size < 2 * TGI_ELEMENTWISE_GRAIN) fn(&s, 0, lanes);
    else tgi_parallel_for(call->tape->ctx, lanes, 1 + TGI_ELEMENTWISE_GRAIN / s.split.n, fn, &s);
}

tg_status tgi_softmax_forward(tg_op_call *call, int axis, bool log) {
    run_lanes(call, axis, log, softmax_forward_range);
    return TG_OK;
}

tg_status tgi_softmax_backward(const tg_op_call *call, int axis, bool log) {
    if (call->inputs[0]->grad) run_lanes(call, axis, log, softmax_backward_range);
    return TG_OK;
}

/* The last axis; a scalar is one lane of one element. */
static int last_axis(const tg_op_call *call) {
    return call->inputs[0]->ndim ? call->inputs[0]->ndim - 1 : 0;
}

static tg_status softmax_forward(tg_op_call *call) {
    return tgi_softmax_forward(call, last_axis(call), false);
}

static tg_status softmax_backward(const tg_op_call *call) {
    return tgi_softmax_backward(call, last_axis(call), false);
}

static tg_status log_softmax_forward(tg_op_call *call) {
    return tgi_softmax_forward(call, last_axis(call), true);
}

static tg_status log_softmax_backward(const tg_op_call *call) {
    return tgi_softmax_backward(call, last_axis(call), true);
}

/* d softmax = y (dx - sum(y dx)); d log_softmax = dx - sum(softmax(x) dx), softmax(x) = exp(y):
 * over the axis, with ops on the output y, so that the tangent differentiates again. */
tg_status tgi_softmax_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out, int axis,
                          bool log) {
    tg_tape *tape = call->tape;
    tg_tensor *y = call->output;
    if (y->ndim == 0) { /* one element: softmax is 1, log_softmax 0, whatever x is */
        *out = NULL;
        return TG_OK;
    }
    tg_tensor *p = log ? tg_exp(tape, y) : y;
    tg_tensor *mean = tg_sum_axis(tape, tg_mul(tape, p, t[0]), axis, true);
    tg_tensor *centred = tg_sub(tape, t[0], mean);
    *out = log ? centred : tg_mul(tape, y, centred);
    return *out ? TG_OK : tg_errcode(tape->ctx);
}

static tg_status softmax_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    return tgi_softmax_jvp(call, t, out, last_axis(call), false);
}

static tg_status log_softmax_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    return tgi_softmax_jvp(call, t, out, last_axis(call), true);
}

/* ---- dropout ------------------------------------------------------------------------------- */

/* The mask is a function of the seed alone, so backward regenerates it instead of storing it. */
static float dropout_factor(tg_rng *rng, float p) {
    return tg_rng_uniform(rng) < p ? 0.0f : 1.0f / (1.0f - p);
}

static tg_status dropout_infer(const tg_op_call *call, tg_shape *out) {
    float p = call->attrs[0].f32;
    if (!(p >= 0.0f && p < 1.0f))
        return tg_op_fail(call, TG_ERR_INVALID, "p = %g, expected 0 <= p < 1", (double)p);
    return tgi_infer_like_input(call, out);
}

static tg_status dropout_forward(tg_op_call *call) {
    tg_rng rng;
    tg_rng_seed(&rng, (uint64_t)call->attrs[1].i64);
    const float *x = call->inputs[0]->data;
    float *y = call->output->data, p = call->attrs[0].f32;
    for (int64_t i = 0; i < call->output->size; i++) y[i] = x[i] * dropout_factor(&rng, p);
    return TG_OK;
}

static tg_status dropout_backward(const tg_op_call *call) {
    float *gx = call->inputs[0]->grad;
    if (!gx) return TG_OK;
    tg_rng rng;
    tg_rng_seed(&rng, (uint64_t)call->attrs[1].i64);
    const float *g = call->output->grad;
    float p = call->attrs[0].f32;
    for (int64_t i = 0; i < call->output->size; i++) gx[i] += g[i] * dropout_factor(&rng, p);
    return TG_OK;
}

/* ---- registry entries ---------------------------------------------------------------------- */

static const tgi_example any_input[] = {TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 3, 4), {.f32 = 0})};
static const tgi_example nonzero_input[] = {
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_AWAY_ZERO, 3, 4), {.f32 = 0})};
static const tgi_example alpha_input[] = {
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_AWAY_ZERO, 3, 4), {.f32 = 0.3f})};
static const tgi_example row_inputs[] = {TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 3, 5), {.f32 = 0}),
                                         TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 2, 2, 3), {.f32 = 0})};
static const tgi_example dropout_inputs[] = {
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 4, 6), {.f32 = 0.3f}, {.i64 = 42})};
static const tgi_examples any_examples = TGI_EXAMPLES(any_input);
static const tgi_examples nonzero_examples = TGI_EXAMPLES(nonzero_input);
static const tgi_examples alpha_examples = TGI_EXAMPLES(alpha_input);
static const tgi_examples row_examples = TGI_EXAMPLES(row_inputs);
static const tgi_examples dropout_examples = TGI_EXAMPLES(dropout_inputs);

const tg_op_def tgi_activation_defs[] = {
    KERNEL_DEF_JVP(sigmoid, 1, "", tgi_infer_like_input, any_examples, tgi_jvp_elementwise),
    KERNEL_DEF_JVP(tanh, 1, "", tgi_infer_like_input, any_examples, tgi_jvp_elementwise),
    KERNEL_DEF_JVP(relu, 1, "", tgi_infer_like_input, nonzero_examples, tgi_jvp_elementwise),
    KERNEL_DEF_JVP(leaky_relu, 1, "alpha:f32", tgi_infer_like_input, alpha_examples, tgi_jvp_elementwise),
    KERNEL_DEF_JVP(elu, 1, "alpha:f32", tgi_infer_like_input, alpha_examples, tgi_jvp_elementwise),
    KERNEL_DEF_JVP(softplus, 1, "", tgi_infer_like_input, any_examples, tgi_jvp_elementwise),
    KERNEL_DEF_JVP(gelu, 1, "", tgi_infer_like_input, any_examples, tgi_jvp_elementwise),
    KERNEL_DEF_JVP(softmax, 1, "", tgi_infer_like_input, row_examples, softmax_jvp),
    KERNEL_DEF_JVP(log_softmax, 1, "", tgi_infer_like_input, row_examples, log_softmax_jvp),
    KERNEL_DEF_JVP(dropout, 1, "p:f32,seed:i64", dropout_infer, dropout_examples, tgi_jvp_linear),
};
const int tgi_activation_count = sizeof tgi_activation_defs / sizeof tgi_activation_defs[0];

void tgi_activation_scalar_rules(tg_ctx *ctx) {
    TGI_SET_SCALAR_RULES(ctx, TGI_OP_SIGMOID, sigmoid);
    TGI_SET_SCALAR_RULES(ctx, TGI_OP_TANH, tanh);
    TGI_SET_SCALAR_RULES(ctx, TGI_OP_RELU, relu);
    TGI_SET_SCALAR_RULES(ctx, TGI_OP_LEAKY_RELU, leaky_relu);
    TGI_SET_SCALAR_RULES(ctx, TGI_OP_ELU, elu);
    TGI_SET_SCALAR_RULES(ctx, TGI_OP_SOFTPLUS, softplus);
    TGI_SET_SCALAR_RULES(ctx, TGI_OP_GELU, gelu);
}

/* ---- typed wrappers ------------------------------------------------------------------------ */

tg_tensor *tg_sigmoid(tg_tape *tape, tg_tensor *x) { return tgi_unary(tape, TGI_OP_SIGMOID, x); }
tg_tensor *tg_tanh(tg_tape *tape, tg_tensor *x) { return tgi_unary(tape, TGI_OP_TANH, x); }
tg_tensor *tg_relu(tg_tape *tape, tg_tensor *x) { return tgi_unary(tape, TGI_OP_RELU, x); }
tg_tensor *tg_leaky_relu(tg_tape *tape, tg_tensor *x, float alpha) {
    return tgi_unary_f32(tape, TGI_OP_LEAKY_RELU, x, alpha);
}
tg_tensor *tg_elu(tg_tape *tape, tg_tensor *x, float alpha) {
    return tgi_unary_f32(tape, TGI_OP_ELU, x, alpha);
}
tg_tensor *tg_softplus(tg_tape *tape, tg_tensor *x) { return tgi_unary(tape, TGI_OP_SOFTPLUS, x); }
tg_tensor *tg_gelu(tg_tape *tape, tg_tensor *x) { return tgi_unary(tape, TGI_OP_GELU, x); }
tg_tensor *tg_softmax(tg_tape *tape, tg_tensor *x) { return tgi_unary(tape, TGI_OP_SOFTMAX, x); }
tg_tensor *tg_log_softmax(tg_tape *tape, tg_tensor *x) {
    return tgi_unary(tape, TGI_OP_LOG_SOFTMAX, x);
}
tg_tensor *tg_dropout(tg_tape *tape, tg_tensor *x, float p, uint64_t seed) {
    tg_attr_value attrs[2] = {{.f32 = p}, {.i64 = (int64_t)seed}};
    return tgi_call_builtin(tape, TGI_OP_DROPOUT, &x, 1, attrs);
}
