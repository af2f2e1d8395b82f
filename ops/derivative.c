/*
 * ops/derivative.c — what the forward-mode rules are made of: the op unary_derivative(x, g) =
 * g * f^(k)(x), the k-th derivative of a built-in unary op f (k = 1..4), with its own VJP and JVP
 * (one order up), so tangents of activations can be differentiated again; select_class, the
 * labelled entry of each row (cross entropy's tangent); and the helpers every JVP rule shares.
 *
 * One op for all unary functions rather than a "tanh_backward" per function (PyTorch's way):
 * the derivatives of every function sit in one table below, side by side, and a function
 * gains higher orders in one place.
 */
#include "ops/kernels.h"

#include <math.h>

#define MAX_ORDER 4

/* f^(k)(x) for built-in unary op `op` with attributes a, b (its first two f32 attributes).
 * Always inlined into loops specialised per op (FOR_EACH_FUNCTION below): the switch folds
 * away and the loop vectorises; called per element through the switch, it was a quarter of
 * an HVP's time. */
TGI_ALWAYS_INLINE static inline float derivative(int op, int k, float x, float a, float b) {
    switch (op) {
    case TGI_OP_NEG: return k == 1 ? -1.0f : 0.0f;
    case TGI_OP_SCALE: return k == 1 ? a : 0.0f;
    case TGI_OP_ADD_SCALAR: return k == 1 ? 1.0f : 0.0f;
    case TGI_OP_SQRT: a = 0.5f; /* fall through: x^0.5 */
    /* fallthrough */
    case TGI_OP_POW: {
        float c = 1.0f;
        for (int i = 0; i < k; i++) c *= a - (float)i;
        return c * powf(x, a - (float)k);
    }
    case TGI_OP_SQUARE: return k == 1 ? 2.0f * x : k == 2 ? 2.0f : 0.0f;
    case TGI_OP_EXP: return expf(x);
    case TGI_OP_LOG: {
        float c = 1.0f; /* (-1)^(k-1) (k-1)! / x^k */
        for (int i = 1; i < k; i++) c *= -(float)i;
        return c / powf(x, (float)k);
    }
    case TGI_OP_ABS: return k == 1 ? (x > 0.0f ? 1.0f : x < 0.0f ? -1.0f : 0.0f) : 0.0f;
    case TGI_OP_SOFTPLUS: k -= 1; /* softplus' = sigmoid */
        if (k == 0) return tgi_sigmoid(x);
    /* fallthrough */
    case TGI_OP_SIGMOID: {
        float s = tgi_sigmoid(x), d = s * (1.0f - s);
        return k == 1 ? d : k == 2 ? d * (1.0f - 2.0f * s)
               : k == 3 ? d * (1.0f - 6.0f * s + 6.0f * s * s)
                        : d * (1.0f - 14.0f * s + 36.0f * s * s - 24.0f * s * s * s);
    }
    case TGI_OP_TANH: {
        float t = tgi_tanhf(x), d = 1.0f - t * t;
        return k == 1 ? d : k == 2 ? -2.0f * t * d : k == 3 ? d * (6.0f * t * t - 2.0f)
                                                            : d * (16.0f * t - 24.0f * t * t * t);
    }
    case TGI_OP_RELU: return k == 1 ? (x > 0.0f ? 1.0f : 0.0f) : 0.0f;
    case TGI_OP_LEAKY_RELU: return k == 1 ? (x > 0.0f ? 1.0f : a) : 0.0f;
    case TGI_OP_ELU: return x > 0.0f ? (k == 1 ? 1.0f : 0.0f) : a * expf(x);
    case TGI_OP_GELU: {
        /* phi(x) (the normal density) times a polynomial from the second order on */
        if (k == 1) return tgi_gelu_grad(x, tgi_geluf(x));
        float phi = 0.3989422804014327f * expf(-0.5f * x * x), x2 = x * x;
        return k == 2 ? phi * (2.0f - x2) : k == 3 ? phi * x * (x2 - 4.0f)
                                                   : phi * (-x2 * x2 + 7.0f * x2 - 4.0f);
    }
    case TGI_OP_CLAMP: return k == 1 ? (x < a || x > b ? 0.0f : 1.0f) : 0.0f;
    case TGI_OP_SIN: {
        float v = (k & 1) ? cosf(x) : sinf(x);
        return (k % 4 == 2 || k % 4 == 3) ? -v : v;
    }
    case TGI_OP_COS: {
        float v = (k & 1) ? sinf(x) : cosf(x);
        return (k % 4 == 1 || k % 4 == 2) ? -v : v;
    }
    default: return NAN;
    }
}

/* X(op) for every function above. */
#define FOR_EACH_FUNCTION(X)                                                                    \
    X(TGI_OP_NEG) X(TGI_OP_SCALE) X(TGI_OP_ADD_SCALAR) X(TGI_OP_POW) X(TGI_OP_SQUARE)          \
    X(TGI_OP_SQRT) X(TGI_OP_EXP) X(TGI_OP_LOG) X(TGI_OP_ABS) X(TGI_OP_SIGMOID) X(TGI_OP_TANH)  \
    X(TGI_OP_RELU) X(TGI_OP_LEAKY_RELU) X(TGI_OP_ELU) X(TGI_OP_SOFTPLUS) X(TGI_OP_GELU)        \
    X(TGI_OP_CLAMP) X(TGI_OP_SIN) X(TGI_OP_COS)

static bool known(int op) {
    switch (op) {
#define KNOWN_CASE(OP) case OP: return true;
        FOR_EACH_FUNCTION(KNOWN_CASE)
#undef KNOWN_CASE
    default: return false;
    }
}

/* attrs: op, order, a, b */
static tg_status unary_derivative_infer(const tg_op_call *call, tg_shape *out) {
    int64_t op = call->attrs[0].i64, order = call->attrs[1].i64;
    if (op < 0 || op >= TGI_BUILTIN_COUNT || !known((int)op))
        return tg_op_fail(call, TG_ERR_INVALID, "attribute op %lld is not a built-in elementwise "
                          "function with known derivatives", (long long)op);
    if (order < 1 || order > MAX_ORDER)
        return tg_op_fail(call, TG_ERR_INVALID, "order %lld: derivatives of order 1 to %d are "
                          "known", (long long)order, MAX_ORDER);
    if (!tgi_same_shape(call->inputs[0], call->inputs[1]))
        return tg_op_fail(call, TG_ERR_SHAPE, "x and g must have the same shape");
    return tgi_infer_like_input(call, out);
}

static void unary_derivative_range(void *arg, int64_t begin, int64_t end) {
    tg_op_call *call = arg;
    const tg_attr_value *at = call->attrs;
    int op = (int)at[0].i64, k = (int)at[1].i64;
    const float *restrict x = call->inputs[0]->data, *restrict g = call->inputs[1]->data;
    float *restrict y = call->output->data, a = at[2].f32, b = at[3].f32;
    switch (op) {
#define FORWARD_CASE(OP)                                                                        \
    case OP:                                                                                    \
        for (int64_t i = begin; i < end; i++) y[i] = g[i] * derivative(OP, k, x[i], a, b);      \
        break;
        FOR_EACH_FUNCTION(FORWARD_CASE)
#undef FORWARD_CASE
    default: break; /* refused by infer_shape */
    }
}

static tg_status unary_derivative_forward(tg_op_call *call) {
    TGI_ELEMENTWISE(call, call->output->size, unary_derivative_range);
    return TG_OK;
}

/* d(g f^(k)(x)) = f^(k)(x) dg + g f^(k+1)(x) dx */
static void unary_derivative_grad_range(void *arg, int64_t begin, int64_t end) {
    const tg_op_call *call = arg;
    const tg_attr_value *at = call->attrs;
    int op = (int)at[0].i64, k = (int)at[1].i64;
    tg_tensor *tx = call->inputs[0], *tg = call->inputs[1];
    const float *x = tx->data, *g = tg->data, *u = call->output->grad;
    /* not restrict: x and g may be one tensor (a tangent along x itself), then so are gx, gg */
    float *gx = tx->grad, *gg = tg->grad, a = at[2].f32, b = at[3].f32;
    switch (op) {
#define BACKWARD_CASE(OP)                                                                       \
    case OP: /* both in one loop when both are wanted: f(x) is found once for the two */     \
        if (gg && gx)                                                                           \
            for (int64_t i = begin; i < end; i++) {                                             \
                gg[i] += u[i] * derivative(OP, k, x[i], a, b);                                  \
                gx[i] += u[i] * g[i] * derivative(OP, k + 1, x[i], a, b);                       \
            }                                                                                   \
        else if (gg)                                                                            \
            for (int64_t i = begin; i < end; i++) gg[i] += u[i] * derivative(OP, k, x[i], a, b); \
        else if (gx)                                                                            \
            for (int64_t i = begin; i < end; i++)                                               \
                gx[i] += u[i] * g[i] * derivative(OP, k + 1, x[i], a, b);                       \
        break;
        FOR_EACH_FUNCTION(BACKWARD_CASE)
#undef BACKWARD_CASE
    default: break;
    }
}

static tg_status unary_derivative_backward(const tg_op_call *call) {
    if (call->inputs[0]->grad && call->attrs[1].i64 >= MAX_ORDER)
        return tg_op_fail(call, TG_ERR_NOGRAD, "no derivative of order %d is known",
                          MAX_ORDER + 1);
    TGI_ELEMENTWISE(call, call->output->size, unary_derivative_grad_range);
    return TG_OK;
}

static tg_status unary_derivative_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    tg_tape *tape = call->tape;
    const tg_attr_value *at = call->attrs;
    tg_tensor *x = call->inputs[0], *g = call->inputs[1], *sum = NULL;
    if (t[1] && !(sum = tgi_derivative_times(tape, (int)at[0].i64, (int)at[1].i64, x, t[1], at + 2)))
        return tg_errcode(tape->ctx);
    if (t[0]) {
        tg_tensor *gt = tg_mul(tape, g, t[0]);
        tg_tensor *term = gt ? tgi_derivative_times(tape, (int)at[0].i64, (int)at[1].i64 + 1, x, gt,
                                                    at + 2) : NULL;
        if (!term || (sum && !(term = tg_add(tape, sum, term)))) return tg_errcode(tape->ctx);
        sum = term;
    }
    *out = sum;
    return TG_OK;
}

static const tgi_example derivative_inputs[] = {
    {.n_inputs = 2, .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 3, 4), TGI_INPUT(TGI_DOMAIN_ANY, 3, 4)},
     .attrs = {{.i64 = TGI_OP_TANH}, {.i64 = 1}, {.f32 = 0}, {.f32 = 0}}},
    {.n_inputs = 2, .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 3, 4), TGI_INPUT(TGI_DOMAIN_ANY, 3, 4)},
     .attrs = {{.i64 = TGI_OP_SIGMOID}, {.i64 = 2}, {.f32 = 0}, {.f32 = 0}}},
    {.n_inputs = 2, .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 3, 4), TGI_INPUT(TGI_DOMAIN_ANY, 3, 4)},
     .attrs = {{.i64 = TGI_OP_GELU}, {.i64 = 1}, {.f32 = 0}, {.f32 = 0}}},
    {.n_inputs = 2, .inputs = {TGI_INPUT(TGI_DOMAIN_POSITIVE, 3, 4), TGI_INPUT(TGI_DOMAIN_ANY, 3, 4)},
     .attrs = {{.i64 = TGI_OP_POW}, {.i64 = 1}, {.f32 = 2.5f}, {.f32 = 0}}},
};
static const tgi_examples derivative_examples = TGI_EXAMPLES(derivative_inputs);

/* ---- select_class: x[..., label] ------------------------------------------------------------ */

/* Each row's labelled entry, y[r] = x[r, labels[r]]: the linear part of cross entropy, so its
 * tangent is made of it. Linear in x (its JVP is itself); the labels are indices, not values. */
static tg_status select_class_infer(const tg_op_call *call, tg_shape *out) {
    if (tgi_check_labelled_rows(call) != TG_OK) return TG_ERR_SHAPE;
    tgi_shape_of(call->inputs[1], out);
    return TG_OK;
}

static tg_status select_class_forward(tg_op_call *call) {
    const tg_tensor *x = call->inputs[0];
    int64_t classes = x->shape[x->ndim - 1], label;
    for (int64_t r = 0; r < call->output->size; r++) {
        if (tgi_label_at(call, r, classes, &label) != TG_OK) return TG_ERR_INVALID;
        call->output->data[r] = x->data[r * classes + label];
    }
    return TG_OK;
}

static tg_status select_class_backward(const tg_op_call *call) {
    const tg_tensor *x = call->inputs[0];
    if (!x->grad) return TG_OK;
    int64_t classes = x->shape[x->ndim - 1], label;
    for (int64_t r = 0; r < call->output->size; r++) {
        if (tgi_label_at(call, r, classes, &label) != TG_OK) return TG_ERR_INVALID;
        x->grad[r * classes + label] += call->output->grad[r];
    }
    return TG_OK;
}

static tg_status select_class_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    *out = NULL;
    if (!t[0]) return TG_OK;
    *out = tgi_call_builtin(call->tape, TGI_OP_SELECT_CLASS,
                            (tg_tensor *[]){t[0], call->inputs[1]}, 2, NULL);
    return *out ? TG_OK : tg_errcode(call->tape->ctx);
}

static const tgi_example select_class_inputs[] = {
    {.n_inputs = 2,
     .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 4, 5), TGI_CONST_INPUT(TGI_DOMAIN_LABELS, 5.0f, 4)}},
    {.n_inputs = 2,
     .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 2, 3, 5), TGI_CONST_INPUT(TGI_DOMAIN_LABELS, 5.0f, 2, 3)}}};
static const tgi_examples select_class_examples = TGI_EXAMPLES(select_class_inputs);

const tg_op_def tgi_derivative_defs[] = {
    {"unary_derivative", 2, "op:i64,order:i64,a:f32,b:f32", unary_derivative_infer,
     unary_derivative_forward, unary_derivative_backward, tgi_example_from_spec,
     (void *)&derivative_examples, unary_derivative_jvp},
    {"select_class", 2, "", select_class_infer, select_class_forward, select_class_backward,
     tgi_example_from_spec, (void *)&select_class_examples, select_class_jvp},
};
const int tgi_derivative_count = sizeof tgi_derivative_defs / sizeof tgi_derivative_defs[0];

/* ---- what the JVP rules share ------------------------------------------------------------- */

tg_tensor *tgi_derivative_times(tg_tape *tape, int op, int order, tg_tensor *x, tg_tensor *g,
                                const tg_attr_value *ab) {
    tg_attr_value attrs[4];
    attrs[0].i64 = op;
    attrs[1].i64 = order;
    attrs[2].f32 = ab ? ab[0].f32 : 0.0f;
    attrs[3].f32 = ab ? ab[1].f32 : 0.0f;
    return tgi_call_builtin(tape, TGI_OP_UNARY_DERIVATIVE, (tg_tensor *[]){x, g}, 2, attrs);
}

tg_status tgi_jvp_elementwise(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    const tgi_op *op = tgi_op_by_id(call->tape->ctx, call->op_id);
    tg_attr_value ab[2] = {{.f32 = 0.0f}, {.f32 = 0.0f}};
    for (int k = 0; k < 2 && op && k < op->n_attrs; k++) ab[k].f32 = call->attrs[k].f32;
    *out = tgi_derivative_times(call->tape, call->op_id, 1, call->inputs[0], t[0], ab);
    return *out ? TG_OK : tg_errcode(call->tape->ctx);
}

tg_status tgi_jvp_linear(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    *out = tgi_call_builtin(call->tape, call->op_id, t, 1, call->attrs);
    return *out ? TG_OK : tg_errcode(call->tape->ctx);
}

tg_tensor *tgi_tangent_add(tg_tape *tape, tg_tensor *a, tg_tensor *b) {
    return !a ? b : !b ? a : tg_add(tape, a, b);
}

tg_tensor *tgi_tangent_expand(tg_tape *tape, tg_tensor *t, const tg_tensor *like) {
    if (!t || tgi_same_shape(t, like)) return t;
    tg_tensor *zeros = tg_tape_zeros(tape, like->ndim, like->shape);
    return zeros ? tg_add(tape, zeros, t) : NULL;
}
