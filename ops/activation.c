/*
 * ops/activation.c — activations, softmax and dropout.
 */
#include "ops/kernels.h"

#include <math.h>

#define INV_SQRT2 0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f

/* Forward and derivative of each op, side by side. */
UNARY_OP(sigmoid, tgi_sigmoid(x), y * (1.0f - y))
UNARY_OP(tanh, tgi_tanhf(x), 1.0f - y * y)
/* relu: `x <= 0 ? 0 : x` keeps a NaN (as torch.relu does); `x > 0 ? x : 0` made it 0, and a NaN
 * weight then trained on with the report saying "no NaN". */
UNARY_OP(relu, x <= 0.0f ? 0.0f : x, x > 0.0f ? 1.0f : 0.0f)
UNARY_OP(leaky_relu, x > 0.0f ? x : attr[0].f32 * x, x > 0.0f ? 1.0f : attr[0].f32)
UNARY_OP(elu, x > 0.0f ? x : attr[0].f32 * expm1f(x), x > 0.0f ? 1.0f : y + attr[0].f32)
UNARY_OP(softplus, fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))), tgi_sigmoid(x))
UNARY_OP(gelu, 0.5f * x * (1.0f + erff(x * INV_SQRT2)),
         0.5f * (1.0f + erff(x * INV_SQRT2)) + x * INV_SQRT_2PI * expf(-0.5f * x * x))

/* ---- softmax and log-softmax over the last axis -------------------------------------------- */

static int64_t last_dim(const tg_tensor *t) {
    return t->ndim ? t->shape[t->ndim - 1] : 1;
}

static tg_status softmax_forward(tg_op_call *call) {
    const tg_tensor *x = call->inputs[0];
    int64_t n = last_dim(x), rows = x->size / n;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x->data + r * n;
        float *yr = call->output->data + r * n, max, log_sum = tgi_row_log_sum(xr, n, &max);
        for (int64_t j = 0; j < n; j++) yr[j] = expf((xr[j] - max) - log_sum);
    }
    return TG_OK;
}

/* dx = y * (g - <g, y>) */
static tg_status softmax_backward(const tg_op_call *call) {
    float *gx = call->inputs[0]->grad;
    if (!gx) return TG_OK;
    int64_t n = last_dim(call->output), rows = call->output->size / n;
    for (int64_t r = 0; r < rows; r++) {
        const float *y = call->output->data + r * n, *g = call->output->grad + r * n;
        double dot = 0.0;
        for (int64_t j = 0; j < n; j++) dot += (double)g[j] * y[j];
        for (int64_t j = 0; j < n; j++) gx[r * n + j] += y[j] * (g[j] - (float)dot);
    }
    return TG_OK;
}

static tg_status log_softmax_forward(tg_op_call *call) {
    const tg_tensor *x = call->inputs[0];
    int64_t n = last_dim(x), rows = x->size / n;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x->data + r * n;
        float *yr = call->output->data + r * n, max, log_sum = tgi_row_log_sum(xr, n, &max);
        for (int64_t j = 0; j < n; j++) yr[j] = (xr[j] - max) - log_sum;
    }
    return TG_OK;
}

/* dx = g - softmax * sum(g), with softmax = exp(y) */
static tg_status log_softmax_backward(const tg_op_call *call) {
    float *gx = call->inputs[0]->grad;
    if (!gx) return TG_OK;
    int64_t n = last_dim(call->output), rows = call->output->size / n;
    for (int64_t r = 0; r < rows; r++) {
        const float *y = call->output->data + r * n, *g = call->output->grad + r * n;
        double sum = 0.0;
        for (int64_t j = 0; j < n; j++) sum += g[j];
        for (int64_t j = 0; j < n; j++) gx[r * n + j] += g[j] - expf(y[j]) * (float)sum;
    }
    return TG_OK;
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
    KERNEL_DEF(sigmoid, 1, "", tgi_infer_like_input, any_examples),
    KERNEL_DEF(tanh, 1, "", tgi_infer_like_input, any_examples),
    KERNEL_DEF(relu, 1, "", tgi_infer_like_input, nonzero_examples),
    KERNEL_DEF(leaky_relu, 1, "alpha:f32", tgi_infer_like_input, alpha_examples),
    KERNEL_DEF(elu, 1, "alpha:f32", tgi_infer_like_input, alpha_examples),
    KERNEL_DEF(softplus, 1, "", tgi_infer_like_input, any_examples),
    KERNEL_DEF(gelu, 1, "", tgi_infer_like_input, any_examples),
    KERNEL_DEF(softmax, 1, "", tgi_infer_like_input, row_examples),
    KERNEL_DEF(log_softmax, 1, "", tgi_infer_like_input, row_examples),
    KERNEL_DEF(dropout, 1, "p:f32,seed:i64", dropout_infer, dropout_examples),
};
const int tgi_activation_count = sizeof tgi_activation_defs / sizeof tgi_activation_defs[0];

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
