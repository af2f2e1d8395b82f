/*
 * ops/elementwise.c — arithmetic: binary ops with broadcasting, and unary maths.
 */
#include "ops/kernels.h"

#include <math.h>

/* Forward and derivative of each op, side by side. */
BINARY_OP(add, a + b, g, g)
BINARY_OP(sub, a - b, g, -g)
BINARY_OP(mul, a * b, g * b, g * a)
BINARY_OP(div, a / b, g / b, -g * a / (b * b))

UNARY_OP(neg, -x, -1.0f)
UNARY_OP(scale, x * attr[0].f32, attr[0].f32)
UNARY_OP(add_scalar, x + attr[0].f32, 1.0f)
UNARY_OP(pow, powf(x, attr[0].f32), attr[0].f32 * powf(x, attr[0].f32 - 1.0f))
UNARY_OP(square, x * x, 2.0f * x)
UNARY_OP(sqrt, sqrtf(x), 0.5f / y)
UNARY_OP(exp, expf(x), y)
UNARY_OP(log, logf(x), 1.0f / x)
UNARY_OP(abs, fabsf(x), x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f))

/* Forward-mode rules: the tangent of each op from its inputs' (NULL: zero), with ops, so that
 * the tangent can be differentiated again. A broadcast input's tangent is stretched to the
 * output's shape when it is the only one. */
static tg_status add_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    *out = tgi_tangent_expand(call->tape, tgi_tangent_add(call->tape, t[0], t[1]), call->output);
    return *out ? TG_OK : tg_errcode(call->tape->ctx);
}

static tg_status sub_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    tg_tape *tape = call->tape;
    tg_tensor *d = !t[1] ? t[0] : !t[0] ? tg_neg(tape, t[1]) : tg_sub(tape, t[0], t[1]);
    *out = tgi_tangent_expand(tape, d, call->output);
    return *out ? TG_OK : tg_errcode(tape->ctx);
}

/* d(a b) = da b + a db */
static tg_status mul_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    tg_tape *tape = call->tape;
    tg_tensor *a = call->inputs[0], *b = call->inputs[1], *sum = NULL;
    if (t[0] && !(sum = tg_mul(tape, t[0], b))) return tg_errcode(tape->ctx);
    if (t[1]) {
        tg_tensor *term = tg_mul(tape, a, t[1]);
        if (!term || !(sum = tgi_tangent_add(tape, sum, term))) return tg_errcode(tape->ctx);
    }
    *out = tgi_tangent_expand(tape, sum, call->output);
    return *out ? TG_OK : tg_errcode(tape->ctx);
}

/* d(a / b) = (da - y db) / b */
static tg_status div_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    tg_tape *tape = call->tape;
    tg_tensor *num = t[0];
    if (t[1]) {
        tg_tensor *y_db = tg_mul(tape, call->output, t[1]);
        num = !y_db ? NULL : num ? tg_sub(tape, num, y_db) : tg_neg(tape, y_db);
        if (!num) return tg_errcode(tape->ctx);
    }
    *out = tgi_tangent_expand(tape, tg_div(tape, num, call->inputs[1]), call->output);
    return *out ? TG_OK : tg_errcode(tape->ctx);
}

/* Examples: equal shapes, a row bias, a column, and stretching on both sides at once. */
#define BROADCAST_EXAMPLES(DOMAIN_B)                                                            \
    {                                                                                           \
        {.n_inputs = 2, .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 3, 4), TGI_INPUT(DOMAIN_B, 3, 4)}}, \
        {.n_inputs = 2, .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 3, 4), TGI_INPUT(DOMAIN_B, 4)}},    \
        {.n_inputs = 2, .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 3, 1), TGI_INPUT(DOMAIN_B, 3, 4)}}, \
        {.n_inputs = 2,                                                                         \
         .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 2, 1, 3), TGI_INPUT(DOMAIN_B, 4, 1)}},             \
    }
static const tgi_example general_pairs[] = BROADCAST_EXAMPLES(TGI_DOMAIN_ANY);
static const tgi_example divisor_pairs[] = BROADCAST_EXAMPLES(TGI_DOMAIN_POSITIVE);
static const tgi_examples general_pair_examples = TGI_EXAMPLES(general_pairs);
static const tgi_examples divisor_pair_examples = TGI_EXAMPLES(divisor_pairs);

#define ONE_INPUT(DOMAIN, ...) TGI_ONE_INPUT(TGI_INPUT(DOMAIN, 3, 4), __VA_ARGS__)
static const tgi_example any_input[] = {ONE_INPUT(TGI_DOMAIN_ANY, {.f32 = 0})};
static const tgi_example positive_input[] = {ONE_INPUT(TGI_DOMAIN_POSITIVE, {.f32 = 0})};
static const tgi_example nonzero_input[] = {ONE_INPUT(TGI_DOMAIN_AWAY_ZERO, {.f32 = 0})};
static const tgi_example scale_inputs[] = {ONE_INPUT(TGI_DOMAIN_ANY, {.f32 = -1.7f})};
static const tgi_example shift_inputs[] = {ONE_INPUT(TGI_DOMAIN_ANY, {.f32 = 0.3f})};
static const tgi_example pow_inputs[] = {ONE_INPUT(TGI_DOMAIN_POSITIVE, {.f32 = 2.5f}),
                                         ONE_INPUT(TGI_DOMAIN_POSITIVE, {.f32 = -0.5f})};
static const tgi_examples any_examples = TGI_EXAMPLES(any_input);
static const tgi_examples positive_examples = TGI_EXAMPLES(positive_input);
static const tgi_examples nonzero_examples = TGI_EXAMPLES(nonzero_input);
static const tgi_examples scale_examples = TGI_EXAMPLES(scale_inputs);
static const tgi_examples shift_examples = TGI_EXAMPLES(shift_inputs);
static const tgi_examples pow_examples = TGI_EXAMPLES(pow_inputs);

/* x + c: the tangent passes unchanged */
static tg_status tangent_unchanged(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    (void)call;
    *out = t[0];
    return TG_OK;
}

const tg_op_def tgi_elementwise_defs[] = {
    KERNEL_DEF_JVP(add, 2, "", tgi_infer_broadcast, general_pair_examples, add_jvp),
    KERNEL_DEF_JVP(sub, 2, "", tgi_infer_broadcast, general_pair_examples, sub_jvp),
    KERNEL_DEF_JVP(mul, 2, "", tgi_infer_broadcast, general_pair_examples, mul_jvp),
    KERNEL_DEF_JVP(div, 2, "", tgi_infer_broadcast, divisor_pair_examples, div_jvp),
    KERNEL_DEF_JVP(neg, 1, "", tgi_infer_like_input, any_examples, tgi_jvp_linear),
    KERNEL_DEF_JVP(scale, 1, "factor:f32", tgi_infer_like_input, scale_examples, tgi_jvp_linear),
    KERNEL_DEF_JVP(add_scalar, 1, "value:f32", tgi_infer_like_input, shift_examples, tangent_unchanged),
    KERNEL_DEF_JVP(pow, 1, "exponent:f32", tgi_infer_like_input, pow_examples, tgi_jvp_elementwise),
    KERNEL_DEF_JVP(square, 1, "", tgi_infer_like_input, any_examples, tgi_jvp_elementwise),
    KERNEL_DEF_JVP(sqrt, 1, "", tgi_infer_like_input, positive_examples, tgi_jvp_elementwise),
    KERNEL_DEF_JVP(exp, 1, "", tgi_infer_like_input, any_examples, tgi_jvp_elementwise),
    KERNEL_DEF_JVP(log, 1, "", tgi_infer_like_input, positive_examples, tgi_jvp_elementwise),
    KERNEL_DEF_JVP(abs, 1, "", tgi_infer_like_input, nonzero_examples, tgi_jvp_elementwise),
};
const int tgi_elementwise_count = sizeof tgi_elementwise_defs / sizeof tgi_elementwise_defs[0];

void tgi_elementwise_scalar_rules(tg_ctx *ctx) {
    TGI_SET_SCALAR_RULES(ctx, TGI_OP_NEG, neg);
    TGI_SET_SCALAR_RULES(ctx, TGI_OP_SCALE, scale);
    TGI_SET_SCALAR_RULES(ctx, TGI_OP_ADD_SCALAR, add_scalar);
    TGI_SET_SCALAR_RULES(ctx, TGI_OP_POW, pow);
    TGI_SET_SCALAR_RULES(ctx, TGI_OP_SQUARE, square);
    TGI_SET_SCALAR_RULES(ctx, TGI_OP_SQRT, sqrt);
    TGI_SET_SCALAR_RULES(ctx, TGI_OP_EXP, exp);
    TGI_SET_SCALAR_RULES(ctx, TGI_OP_LOG, log);
    TGI_SET_SCALAR_RULES(ctx, TGI_OP_ABS, abs);
}

/* ---- typed wrappers ------------------------------------------------------------------------ */

tg_tensor *tg_add(tg_tape *tape, tg_tensor *a, tg_tensor *b) { return tgi_binary(tape, TGI_OP_ADD, a, b); }
tg_tensor *tg_sub(tg_tape *tape, tg_tensor *a, tg_tensor *b) { return tgi_binary(tape, TGI_OP_SUB, a, b); }
tg_tensor *tg_mul(tg_tape *tape, tg_tensor *a, tg_tensor *b) { return tgi_binary(tape, TGI_OP_MUL, a, b); }
tg_tensor *tg_div(tg_tape *tape, tg_tensor *a, tg_tensor *b) { return tgi_binary(tape, TGI_OP_DIV, a, b); }
tg_tensor *tg_neg(tg_tape *tape, tg_tensor *x) { return tgi_unary(tape, TGI_OP_NEG, x); }
tg_tensor *tg_scale(tg_tape *tape, tg_tensor *x, float factor) {
    return tgi_unary_f32(tape, TGI_OP_SCALE, x, factor);
}
tg_tensor *tg_add_scalar(tg_tape *tape, tg_tensor *x, float value) {
    return tgi_unary_f32(tape, TGI_OP_ADD_SCALAR, x, value);
}
tg_tensor *tg_pow(tg_tape *tape, tg_tensor *x, float exponent) {
    return tgi_unary_f32(tape, TGI_OP_POW, x, exponent);
}
tg_tensor *tg_square(tg_tape *tape, tg_tensor *x) { return tgi_unary(tape, TGI_OP_SQUARE, x); }
tg_tensor *tg_sqrt(tg_tape *tape, tg_tensor *x) { return tgi_unary(tape, TGI_OP_SQRT, x); }
tg_tensor *tg_exp(tg_tape *tape, tg_tensor *x) { return tgi_unary(tape, TGI_OP_EXP, x); }
tg_tensor *tg_log(tg_tape *tape, tg_tensor *x) { return tgi_unary(tape, TGI_OP_LOG, x); }
tg_tensor *tg_abs(tg_tape *tape, tg_tensor *x) { return tgi_unary(tape, TGI_OP_ABS, x); }
