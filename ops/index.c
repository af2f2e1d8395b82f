/*
 * ops/index.c — the ops attention and language models add: embedding lookup, masking, max and
 * argmax over an axis, permute, clamp, sin and cos, softmax and log-softmax over any axis; and
 * max_axis_select, which the forward-mode rule of max_axis is made of.
 */
#include "ops/kernels.h"

#include <math.h>
#include <string.h>

/* ---- embedding: rows of a table picked by ids ---------------------------------------------- */

static tg_status embedding_infer(const tg_op_call *call, tg_shape *out) {
    const tg_tensor *ids = call->inputs[0], *table = call->inputs[1];
    if (table->ndim != 2 || ids->ndim > 3)
        return tg_op_fail(call, TG_ERR_SHAPE, "expected ids of up to 3 dims and a table [V,E]");
    tgi_shape_of(ids, out);
    out->dims[ids->ndim] = table->shape[1];
    out->ndim = ids->ndim + 1;
    return TG_OK;
}

/* Ids arrive as floats, so each is checked to name a row: a truncated 7.5 or a wrapped -1 would
 * train the wrong row without a word. */
static tg_status check_ids(const tg_op_call *call) {
    const tg_tensor *ids = call->inputs[0];
    int64_t rows = call->inputs[1]->shape[0];
    for (int64_t i = 0; i < ids->size; i++) {
        float id = ids->data[i];
        if (!(id >= 0.0f && id < (float)rows && id == floorf(id)))
            return tg_op_fail(call, TG_ERR_INVALID, "id %.9g at element %lld is not a whole "
                              "number in [0, %lld)", (double)id, (long long)i, (long long)rows);
    }
    return TG_OK;
}

static tg_status embedding_forward(tg_op_call *call) {
    const tg_tensor *ids = call->inputs[0], *table = call->inputs[1];
    int64_t width = table->shape[1];
    if (check_ids(call) != TG_OK) return TG_ERR_INVALID;
    for (int64_t i = 0; i < ids->size; i++)
        memcpy(call->output->data + i * width, table->data + (int64_t)ids->data[i] * width,
               (size_t)width * sizeof(float));
    return TG_OK;
}

/* Columns [begin, end) of the table's gradient: every id in order adds its output row's slice,
 * so repeated ids sum in the same order whatever the cut between threads. */
static void embedding_backward_range(void *arg, int64_t begin, int64_t end) {
    const tg_op_call *call = arg;
    const tg_tensor *ids = call->inputs[0], *table = call->inputs[1];
    int64_t width = table->shape[1];
    for (int64_t i = 0; i < ids->size; i++) {
        float *row = table->grad + (int64_t)ids->data[i] * width;
        const float *g = call->output->grad + i * width;
        for (int64_t c = begin; c < end; c++) row[c] += g[c];
    }
}

/* The ids are indices, not values: they get no gradient. */
static tg_status embedding_backward(const tg_op_call *call) {
    const tg_tensor *ids = call->inputs[0], *table = call->inputs[1];
    if (!table->grad) return TG_OK;
    /* checked again: the ids are the caller's tensor, which may have changed since the forward,
     * and they index the rows written here */
    if (check_ids(call) != TG_OK) return TG_ERR_INVALID;
    int64_t grain = 1 + TGI_ELEMENTWISE_GRAIN / (ids->size ? ids->size : 1);
    tgi_parallel_for(call->tape->ctx, table->shape[1], grain, embedding_backward_range,
                     (void *)call);
    return TG_OK;
}

/* ---- masked_fill --------------------------------------------------------------------------- */

static tg_status masked_fill_infer(const tg_op_call *call, tg_shape *out) {
    const tg_tensor *x = call->inputs[0];
    if (tgi_broadcast_shapes(call, x, call->inputs[1], out) != TG_OK) return TG_ERR_SHAPE;
    bool same = out->ndim == x->ndim;
    for (int d = 0; same && d < x->ndim; d++) same = out->dims[d] == x->shape[d];
    if (!same) return tg_op_fail(call, TG_ERR_SHAPE, "the mask must broadcast to x's shape");
    return TG_OK;
}

static tg_status masked_fill_forward(tg_op_call *call) {
    const float *xs = call->inputs[0]->data, *mask = call->inputs[1]->data;
    float *ys = call->output->data, value = call->attrs[0].f32;
    tgi_broadcast plan;
    tgi_broadcast_plan(call->inputs[0], call->inputs[1], &plan);
    FOR_EACH_BROADCAST(plan, { ys[io] = mask[ib] != 0.0f ? value : xs[ia]; });
    return TG_OK;
}

/* The filled places do not depend on x; the mask is a selector and gets no gradient. */
static tg_status masked_fill_backward(const tg_op_call *call) {
    float *gx = call->inputs[0]->grad;
    if (!gx) return TG_OK;
    const float *mask = call->inputs[1]->data, *gy = call->output->grad;
    tgi_broadcast plan;
    tgi_broadcast_plan(call->inputs[0], call->inputs[1], &plan);
    FOR_EACH_BROADCAST(plan, {
        if (mask[ib] == 0.0f) gx[ia] += gy[io];
    });
    return TG_OK;
}

/* ---- max and argmax over an axis ----------------------------------------------------------- */

/* The position of the first maximal element of a lane (n elements `stride` apart). A NaN counts
 * as maximal, the first one winning, so that a NaN input shows in the output. */
static int64_t lane_argmax(const float *x, int64_t n, int64_t stride) {
    int64_t best = 0;
    for (int64_t j = 1; j < n && !isnan(x[best * stride]); j++) {
        float v = x[j * stride];
        if (v > x[best * stride] || isnan(v)) best = j;
    }
    return best;
}

/* Output element o * inner + i (kept dim or not, the same order) is the lane at o, i. */
static void max_lanes(tg_op_call *call, bool index) {
    tgi_axis_split s = tgi_split_at_attr_axis(call);
    const float *x = call->inputs[0]->data;
    for (int64_t o = 0; o < s.outer; o++)
        for (int64_t i = 0; i < s.inner; i++) {
            const float *lane = x + o * s.n * s.inner + i;
            int64_t at = lane_argmax(lane, s.n, s.inner);
            float value = lane[at * s.inner];
            call->output->data[o * s.inner + i] = !index ? value : isnan(value) ? NAN : (float)at;
        }
}

static tg_status max_axis_forward(tg_op_call *call) {
    max_lanes(call, false);
    return TG_OK;
}

/* Adds the output's gradient into dst (shaped like input 0) at the first maximal element of
 * each lane of input 0 (found again: the input has not changed since forward, and nothing
 * needs saving). */
static void add_at_lane_maxima(const tg_op_call *call, float *dst) {
    tgi_axis_split s = tgi_split_at_attr_axis(call);
    const float *x = call->inputs[0]->data;
    for (int64_t o = 0; o < s.outer; o++)
        for (int64_t i = 0; i < s.inner; i++) {
            int64_t base = o * s.n * s.inner + i;
            dst[base + lane_argmax(x + base, s.n, s.inner) * s.inner] +=
                call->output->grad[o * s.inner + i];
        }
}

/* Only the first maximal element of each lane gets the gradient. */
static tg_status max_axis_backward(const tg_op_call *call) {
    if (call->inputs[0]->grad) add_at_lane_maxima(call, call->inputs[0]->grad);
    return TG_OK;
}

static tg_status argmax_axis_forward(tg_op_call *call) {
    max_lanes(call, true);
    return TG_OK;
}

/* An index is piecewise constant in x: its derivative is zero wherever it exists. A backward
 * that adds nothing (rather than none) lets argmax run on logits that require a gradient, as
 * in PyTorch, and lets the gradient check confirm the zero. */
static tg_status argmax_axis_backward(const tg_op_call *call) {
    (void)call;
    return TG_OK;
}

/* ---- max_axis_select: the tangent (and second derivatives) of max_axis --------------------- */

/* max_axis_select(x, t; axis, keepdim): t's element at the first maximum of each lane of x, the
 * element max_axis's backward sends the gradient to (lane_argmax: the first of tied maxima, the
 * first NaN). So max_axis's tangent is max_axis_select(x, tangent), picked again from x whenever
 * the op runs (a replay finds the new maximum) and exact on ties, where a one-hot built from
 * argmax_axis would need an index op and would fail on a NaN lane (its argmax is NaN). A lane
 * holding a NaN gives NaN, as argmax_axis does: the maximum there is not a number, nor is its
 * tangent, and a NaN is never turned into a number. */
static tg_status max_axis_select_infer(const tg_op_call *call, tg_shape *out) {
    if (!tgi_same_shape(call->inputs[0], call->inputs[1]))
        return tg_op_fail(call, TG_ERR_SHAPE, "x and t must have the same shape");
    return tgi_infer_reduce_axis(call, out);
}

static tg_status max_axis_select_forward(tg_op_call *call) {
    tgi_axis_split s = tgi_split_at_attr_axis(call);
    const float *x = call->inputs[0]->data, *t = call->inputs[1]->data;
    for (int64_t o = 0; o < s.outer; o++)
        for (int64_t i = 0; i < s.inner; i++) {
            int64_t base = o * s.n * s.inner + i;
            int64_t at = base + lane_argmax(x + base, s.n, s.inner) * s.inner;
            call->output->data[o * s.inner + i] = isnan(x[at]) ? NAN : t[at];
        }
    return TG_OK;
}

/* Linear in t: its gradient goes to the selected elements. Which element is selected is
 * piecewise constant in x: x gets no gradient (as argmax_axis), and the check confirms zero. */
static tg_status max_axis_select_backward(const tg_op_call *call) {
    if (call->inputs[1]->grad) add_at_lane_maxima(call, call->inputs[1]->grad);
    return TG_OK;
}

static tg_tensor *select_at_max(const tg_op_call *call, tg_tensor *x, tg_tensor *t) {
    tg_tensor *inputs[2] = {x, t};
    return tgi_call_builtin(call->tape, TGI_OP_MAX_AXIS_SELECT, inputs, 2, call->attrs);
}

/* ---- forward-mode rules -------------------------------------------------------------------- */

/* Rows of the table's tangent picked by the same ids; the ids are indices and do not move. */
static tg_status embedding_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    *out = NULL;
    if (!t[1]) return TG_OK;
    *out = tg_embedding(call->tape, call->inputs[0], t[1]);
    return *out ? TG_OK : tg_errcode(call->tape->ctx);
}

/* The filled places are constants (tangent 0); the mask is a selector and does not move. */
static tg_status masked_fill_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    *out = NULL;
    if (!t[0]) return TG_OK;
    *out = tg_masked_fill(call->tape, t[0], call->inputs[1], 0.0f);
    return *out ? TG_OK : tg_errcode(call->tape->ctx);
}

/* The tangent of the element backward picks: the first maximum of each lane of x. */
static tg_status max_axis_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    *out = select_at_max(call, call->inputs[0], t[0]);
    return *out ? TG_OK : tg_errcode(call->tape->ctx);
}

/* An index is piecewise constant: its tangent is zero (NULL), as its backward adds nothing. */
static tg_status argmax_axis_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    (void)call;
    (void)t;
    *out = NULL;
    return TG_OK;
}

/* Linear in t, constant in x: the same selection of t's tangent. */
static tg_status max_axis_select_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    *out = NULL;
    if (!t[1]) return TG_OK;
    *out = select_at_max(call, call->inputs[0], t[1]);
    return *out ? TG_OK : tg_errcode(call->tape->ctx);
}

/* ---- permute ------------------------------------------------------------------------------- */

void tgi_permute_move(const tg_tensor *x, const tg_tensor *y, const int *order, bool forward) {
    int64_t in_stride[TG_MAX_DIMS], stride[TG_MAX_DIMS], index[TG_MAX_DIMS] = {0};
    for (int64_t d = TG_MAX_DIMS - 1, s = 1; d >= 0; s *= x->shape[d], d--) in_stride[d] = s;
    for (int d = 0; d < TG_MAX_DIMS; d++) stride[d] = in_stride[order[d]];
    /* Trailing dims that stay in place are contiguous on both sides: one run, one memcpy
     * ([B,T,H,D] <-> [B,H,T,D] moves rows of D). */
    int lead = TG_MAX_DIMS;
    int64_t run = 1;
    while (lead > 0 && order[lead - 1] == lead - 1) run *= y->shape[--lead];
    int64_t src = 0;
    for (int64_t dst = 0; dst < y->size; dst += run) {
        if (forward && run == 1) y->data[dst] = x->data[src];
        else if (forward) memcpy(y->data + dst, x->data + src, (size_t)run * sizeof(float));
        else
            for (int64_t j = 0; j < run; j++) x->grad[src + j] += y->grad[dst + j];
        for (int d = lead - 1; d >= 0; d--) { /* the next output position, odometer-wise */
            src += stride[d];
            if (++index[d] < y->shape[d]) break;
            src -= stride[d] * y->shape[d];
            index[d] = 0;
        }
    }
}

/* order as TG_MAX_DIMS ints, the identity past the input's dims (infer_shape checked it). */
static void permute_order(const tg_op_call *call, int *order) {
    for (int d = 0; d < TG_MAX_DIMS; d++)
        order[d] = d < call->inputs[0]->ndim ? (int)call->attrs[0].shape.dims[d] : d;
}

static tg_status permute_infer(const tg_op_call *call, tg_shape *out) {
    const tg_tensor *x = call->inputs[0];
    const tg_shape *order = &call->attrs[0].shape;
    char text[96];
    tgi_format_shape(order->ndim < 0 || order->ndim > TG_MAX_DIMS ? 0 : order->ndim, order->dims,
                     text, sizeof text);
    if (order->ndim != x->ndim)
        return tg_op_fail(call, TG_ERR_SHAPE, "order %s has %d entries for %d dims", text,
                          (int)order->ndim, x->ndim);
    bool seen[TG_MAX_DIMS] = {false};
    for (int d = 0; d < x->ndim; d++) {
        int64_t from = order->dims[d];
        if (from < 0 || from >= x->ndim || seen[from])
            return tg_op_fail(call, TG_ERR_SHAPE, "order %s is not a permutation of 0..%d", text,
                              x->ndim - 1);
        seen[from] = true;
    }
    tgi_shape_of(x, out);
    for (int d = 0; d < x->ndim; d++) out->dims[d] = x->shape[order->dims[d]];
    return TG_OK;
}

static tg_status permute_forward(tg_op_call *call) {
    int order[TG_MAX_DIMS];
    permute_order(call, order);
    tgi_permute_move(call->inputs[0], call->output, order, true);
    return TG_OK;
}

/* The VJP of a permutation is the inverse permutation: every gradient element goes back to the
 * input element it was copied from. */
static tg_status permute_backward(const tg_op_call *call) {
    if (!call->inputs[0]->grad) return TG_OK;
    int order[TG_MAX_DIMS];
    permute_order(call, order);
    tgi_permute_move(call->inputs[0], call->output, order, false);
    return TG_OK;
}

/* ---- clamp, sin, cos ----------------------------------------------------------------------- */

/* Comparisons rather than fminf/fmaxf, which would turn a NaN into a bound. The gradient passes
 * on the bounds too (lo <= x <= hi), as in PyTorch. */
UNARY_OP(clamp, x < attr[0].f32 ? attr[0].f32 : x > attr[1].f32 ? attr[1].f32 : x,
         x >= attr[0].f32 && x <= attr[1].f32 ? 1.0f : 0.0f)
UNARY_OP(sin, sinf(x), cosf(x))
UNARY_OP(cos, cosf(x), -sinf(x))

static tg_status clamp_infer(const tg_op_call *call, tg_shape *out) {
    float lo = call->attrs[0].f32, hi = call->attrs[1].f32;
    if (!(lo <= hi))
        return tg_op_fail(call, TG_ERR_INVALID, "lo %g > hi %g (or a NaN bound)", (double)lo,
                          (double)hi);
    return tgi_infer_like_input(call, out);
}

/* ---- softmax and log-softmax over an axis -------------------------------------------------- */

static tg_status softmax_axis_infer(const tg_op_call *call, tg_shape *out) {
    int axis;
    if (tgi_normalize_axis(call, call->attrs[0].i64, call->inputs[0]->ndim, &axis) != TG_OK)
        return TG_ERR_SHAPE;
    return tgi_infer_like_input(call, out);
}

static int attr_axis(const tg_op_call *call) {
    int64_t axis = call->attrs[0].i64;
    return (int)(axis < 0 ? axis + call->inputs[0]->ndim : axis);
}

static tg_status softmax_axis_forward(tg_op_call *call) {
    return tgi_softmax_forward(call, attr_axis(call), false);
}

static tg_status softmax_axis_backward(const tg_op_call *call) {
    return tgi_softmax_backward(call, attr_axis(call), false);
}

static tg_status log_softmax_axis_forward(tg_op_call *call) {
    return tgi_softmax_forward(call, attr_axis(call), true);
}

static tg_status log_softmax_axis_backward(const tg_op_call *call) {
    return tgi_softmax_backward(call, attr_axis(call), true);
}

static tg_status softmax_axis_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    return tgi_softmax_jvp(call, t, out, attr_axis(call), false);
}

static tg_status log_softmax_axis_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    return tgi_softmax_jvp(call, t, out, attr_axis(call), true);
}

/* ---- registry entries ---------------------------------------------------------------------- */

/* Ids are constants (whole numbers below the table's row count); repeated ids are likely. */
static const tgi_example embedding_inputs[] = {
    {.n_inputs = 2,
     .inputs = {TGI_CONST_INPUT(TGI_DOMAIN_LABELS, 5, 2, 3), TGI_INPUT(TGI_DOMAIN_ANY, 5, 4)}},
    {.n_inputs = 2,
     .inputs = {TGI_CONST_INPUT(TGI_DOMAIN_LABELS, 3, 7), TGI_INPUT(TGI_DOMAIN_ANY, 3, 2)}},
    {.n_inputs = 2,
     .inputs = {TGI_CONST_INPUT(TGI_DOMAIN_LABELS, 4, 2, 2, 2), TGI_INPUT(TGI_DOMAIN_ANY, 4, 3)}},
};
/* Masks of random 0s and 1s: whole, broadcast along rows, broadcast along columns. */
static const tgi_example masked_fill_inputs[] = {
    {.n_inputs = 2,
     .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 3, 4), TGI_CONST_INPUT(TGI_DOMAIN_LABELS, 2, 3, 4)},
     .attrs = {{.f32 = 2.5f}}},
    {.n_inputs = 2,
     .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 2, 3, 4), TGI_CONST_INPUT(TGI_DOMAIN_LABELS, 2, 4)},
     .attrs = {{.f32 = -1e4f}}},
    {.n_inputs = 2,
     .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 4, 3), TGI_CONST_INPUT(TGI_DOMAIN_LABELS, 2, 4, 1)},
     .attrs = {{.f32 = 0.0f}}},
};
/* Distinct values 0.1 apart: no tie for the maximum within a finite-difference step. */
static const tgi_example max_inputs[] = {
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_DISTINCT, 3, 4), {.i64 = 1}, {.b = false}),
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_DISTINCT, 2, 3, 4), {.i64 = 0}, {.b = true}),
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_DISTINCT, 2, 3, 4), {.i64 = -2}, {.b = false}),
};
/* x on the grid (no tie within a step; its zero gradient is checked too), t anywhere. */
#define SELECT_INPUTS(...) \
    .n_inputs = 2, .inputs = {TGI_INPUT(TGI_DOMAIN_DISTINCT, __VA_ARGS__), \
                              TGI_INPUT(TGI_DOMAIN_ANY, __VA_ARGS__)}
static const tgi_example max_select_inputs[] = {
    {SELECT_INPUTS(3, 4), .attrs = {{.i64 = 1}, {.b = false}}},
    {SELECT_INPUTS(2, 3, 4), .attrs = {{.i64 = 0}, {.b = true}}},
    {SELECT_INPUTS(2, 3, 4), .attrs = {{.i64 = -2}, {.b = false}}},
};
#undef SELECT_INPUTS
static const tgi_example permute_inputs[] = {
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 3, 4), {.shape = {2, {1, 0}}}),
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 2, 3, 4), {.shape = {3, {2, 0, 1}}}),
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 2, 3, 2, 3), {.shape = {4, {0, 2, 1, 3}}}),
};
/* The grid 0.1 apart from -0.6 to 0.5 against bounds 0.05 away from any of its points: some
 * elements inside, some clamped on each side, none within a step of a bound. */
static const tgi_example clamp_inputs[] = {
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_DISTINCT, 3, 4), {.f32 = -0.35f}, {.f32 = 0.25f}),
};
static const tgi_example any_input[] = {TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 3, 4), {.f32 = 0})};
static const tgi_example softmax_axis_inputs[] = {
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 2, 3, 4), {.i64 = 1}),
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 3, 5), {.i64 = 0}),
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 2, 2, 3), {.i64 = -1}),
};
static const tgi_examples embedding_examples = TGI_EXAMPLES(embedding_inputs);
static const tgi_examples masked_fill_examples = TGI_EXAMPLES(masked_fill_inputs);
static const tgi_examples max_examples = TGI_EXAMPLES(max_inputs);
static const tgi_examples max_select_examples = TGI_EXAMPLES(max_select_inputs);
static const tgi_examples permute_examples = TGI_EXAMPLES(permute_inputs);
static const tgi_examples clamp_examples = TGI_EXAMPLES(clamp_inputs);
static const tgi_examples any_examples = TGI_EXAMPLES(any_input);
static const tgi_examples softmax_axis_examples = TGI_EXAMPLES(softmax_axis_inputs);

const tg_op_def tgi_index_defs[] = {
    KERNEL_DEF_JVP(embedding, 2, "", embedding_infer, embedding_examples, embedding_jvp),
    KERNEL_DEF_JVP(masked_fill, 2, "value:f32", masked_fill_infer, masked_fill_examples,
                   masked_fill_jvp),
    KERNEL_DEF_JVP(max_axis, 1, "axis:i64,keepdim:bool", tgi_infer_reduce_axis, max_examples,
                   max_axis_jvp),
    KERNEL_DEF_JVP(argmax_axis, 1, "axis:i64,keepdim:bool", tgi_infer_reduce_axis, max_examples,
                   argmax_axis_jvp),
    KERNEL_DEF_JVP(permute, 1, "order:shape", permute_infer, permute_examples, tgi_jvp_linear),
    KERNEL_DEF_JVP(clamp, 1, "lo:f32,hi:f32", clamp_infer, clamp_examples, tgi_jvp_elementwise),
    KERNEL_DEF_JVP(sin, 1, "", tgi_infer_like_input, any_examples, tgi_jvp_elementwise),
    KERNEL_DEF_JVP(cos, 1, "", tgi_infer_like_input, any_examples, tgi_jvp_elementwise),
    KERNEL_DEF_JVP(softmax_axis, 1, "axis:i64", softmax_axis_infer, softmax_axis_examples, softmax_axis_jvp),
    KERNEL_DEF_JVP(log_softmax_axis, 1, "axis:i64", softmax_axis_infer, softmax_axis_examples, log_softmax_axis_jvp),
};
const int tgi_index_count = sizeof tgi_index_defs / sizeof tgi_index_defs[0];

/* clamp's two attributes keep it off the fast path: it needs none */
void tgi_index_scalar_rules(tg_ctx *ctx) {
    TGI_SET_SCALAR_RULES(ctx, TGI_OP_SIN, sin);
    TGI_SET_SCALAR_RULES(ctx, TGI_OP_COS, cos);
}

/* Registered after the first-order ops (its id comes last in TGI_BUILTIN_OPS). */
const tg_op_def tgi_index_tangent_defs[] = {
    KERNEL_DEF_JVP(max_axis_select, 2, "axis:i64,keepdim:bool", max_axis_select_infer,
                   max_select_examples, max_axis_select_jvp),
};
const int tgi_index_tangent_count =
    sizeof tgi_index_tangent_defs / sizeof tgi_index_tangent_defs[0];

/* ---- typed wrappers ------------------------------------------------------------------------ */

tg_tensor *tg_embedding(tg_tape *tape, tg_tensor *ids, tg_tensor *table) {
    return tgi_binary(tape, TGI_OP_EMBEDDING, ids, table);
}

tg_tensor *tg_masked_fill(tg_tape *tape, tg_tensor *x, tg_tensor *mask, float value) {
    tg_tensor *inputs[2] = {x, mask};
    tg_attr_value attr = {.f32 = value};
    return tgi_call_builtin(tape, TGI_OP_MASKED_FILL, inputs, 2, &attr);
}

tg_tensor *tg_max_axis(tg_tape *tape, tg_tensor *x, int axis, bool keepdim) {
    return tgi_call_axis(tape, TGI_OP_MAX_AXIS, x, axis, keepdim);
}

tg_tensor *tg_argmax_axis(tg_tape *tape, tg_tensor *x, int axis, bool keepdim) {
    return tgi_call_axis(tape, TGI_OP_ARGMAX_AXIS, x, axis, keepdim);
}

tg_tensor *tg_permute(tg_tape *tape, tg_tensor *x, int ndim, const int64_t *order) {
    tg_attr_value attr = {.shape = {ndim, {0, 1, 2, 3}}};
    if (ndim < 0 || ndim > TG_MAX_DIMS || (ndim > 0 && !order)) {
        if (tape) tgi_error(tape->ctx, TG_ERR_SHAPE, "permute: %d order entries (0 to %d, and "
                            "an order array)", ndim, TG_MAX_DIMS);
        return NULL;
    }
    for (int d = 0; d < ndim; d++) attr.shape.dims[d] = order[d];
    return tgi_call_builtin(tape, TGI_OP_PERMUTE, &x, 1, &attr);
}

tg_tensor *tg_clamp(tg_tape *tape, tg_tensor *x, float lo, float hi) {
    tg_attr_value attrs[2] = {{.f32 = lo}, {.f32 = hi}};
    return tgi_call_builtin(tape, TGI_OP_CLAMP, &x, 1, attrs);
}

tg_tensor *tg_sin(tg_tape *tape, tg_tensor *x) { return tgi_unary(tape, TGI_OP_SIN, x); }
tg_tensor *tg_cos(tg_tape *tape, tg_tensor *x) { return tgi_unary(tape, TGI_OP_COS, x); }

tg_tensor *tg_softmax_axis(tg_tape *tape, tg_tensor *x, int axis) {
    tg_attr_value attr = {.i64 = axis};
    return tgi_call_builtin(tape, TGI_OP_SOFTMAX_AXIS, &x, 1, &attr);
}

tg_tensor *tg_log_softmax_axis(tg_tape *tape, tg_tensor *x, int axis) {
    tg_attr_value attr = {.i64 = axis};
    return tgi_call_builtin(tape, TGI_OP_LOG_SOFTMAX_AXIS, &x, 1, &attr);
}
