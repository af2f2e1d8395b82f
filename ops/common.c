/*
 * ops/common.c — helpers the built-in ops share: shape inference, axes, broadcasting, and the
 * declarative gradient-check examples.
 */
#include "ops/ops.h"

#include <string.h>

void tgi_shape_of(const tg_tensor *t, tg_shape *out) {
    out->ndim = t->ndim;
    for (int d = 0; d < TG_MAX_DIMS; d++) out->dims[d] = t->shape[d];
}

tg_status tgi_infer_like_input(const tg_op_call *call, tg_shape *out) {
    tgi_shape_of(call->inputs[0], out);
    return TG_OK;
}

tg_status tgi_infer_broadcast(const tg_op_call *call, tg_shape *out) {
    return tgi_broadcast_shapes(call, call->inputs[0], call->inputs[1], out);
}

tg_status tgi_infer_scalar(const tg_op_call *call, tg_shape *out) {
    (void)call;
    out->ndim = 0;
    return TG_OK;
}

tg_status tgi_infer_pair_to_scalar(const tg_op_call *call, tg_shape *out) {
    if (!tgi_same_shape(call->inputs[0], call->inputs[1]))
        return tg_op_fail(call, TG_ERR_SHAPE, "the two inputs must have the same shape");
    return tgi_infer_scalar(call, out);
}

tg_status tgi_normalize_axis(const tg_op_call *call, int64_t axis, int ndim, int *out) {
    int64_t normal = axis < 0 ? axis + ndim : axis;
    if (normal < 0 || normal >= ndim)
        return tg_op_fail(call, TG_ERR_SHAPE, "axis %lld out of range for %d dims",
                          (long long)axis, ndim);
    *out = (int)normal;
    return TG_OK;
}

tg_status tgi_infer_reduce_axis(const tg_op_call *call, tg_shape *out) {
    const tg_tensor *x = call->inputs[0];
    int axis;
    if (tgi_normalize_axis(call, call->attrs[0].i64, x->ndim, &axis) != TG_OK) return TG_ERR_SHAPE;
    tgi_shape_of(x, out);
    if (call->attrs[1].b) {
        out->dims[axis] = 1;
        return TG_OK;
    }
    for (int d = axis; d + 1 < x->ndim; d++) out->dims[d] = x->shape[d + 1];
    out->ndim = x->ndim - 1;
    return TG_OK;
}

tgi_axis_split tgi_split_at_attr_axis(const tg_op_call *call) {
    const tg_tensor *x = call->inputs[0];
    int64_t axis = call->attrs[0].i64;
    return tgi_split_at(x, (int)(axis < 0 ? axis + x->ndim : axis));
}

tgi_axis_split tgi_split_at(const tg_tensor *t, int axis) {
    tgi_axis_split split = {1, t->shape[axis], 1};
    for (int d = 0; d < axis; d++) split.outer *= t->shape[d];
    for (int d = axis + 1; d < t->ndim; d++) split.inner *= t->shape[d];
    return split;
}

tg_tensor *tgi_call_builtin(tg_tape *tape, int id, tg_tensor *const *inputs, int n_inputs,
                            const tg_attr_value *attrs) {
    if (!tape) return NULL;
    return tgi_record(tape, tape->ctx->registry.ops[id], inputs, n_inputs, attrs);
}

tg_tensor *tgi_binary(tg_tape *tape, int id, tg_tensor *a, tg_tensor *b) {
    return tape ? tgi_record2(tape, tape->ctx->registry.ops[id], a, b) : NULL;
}

float tgi_lane_log_sum(const float *x, int64_t n, int64_t stride, float *max) {
    float m = x[0];
    for (int64_t j = 1; j < n; j++) m = fmaxf(m, x[j * stride]);
    double sum = 0.0;
    for (int64_t j = 0; j < n; j++) sum += exp((double)(x[j * stride] - m));
    *max = m;
    return (float)log(sum);
}

float tgi_row_log_sum(const float *x, int64_t n, float *max) {
    return tgi_lane_log_sum(x, n, 1, max);
}

/* ---- broadcasting -------------------------------------------------------------------------- */

/* The dim of t at padded position d (shapes aligned on the right, padded with 1s on the left). */
static int64_t padded_dim(const tg_tensor *t, int d) {
    int offset = TG_MAX_DIMS - t->ndim;
    return d < offset ? 1 : t->shape[d - offset];
}

tg_status tgi_broadcast_shapes(const tg_op_call *call, const tg_tensor *a, const tg_tensor *b,
                               tg_shape *out) {
    int ndim = a->ndim > b->ndim ? a->ndim : b->ndim;
    out->ndim = ndim;
    for (int d = TG_MAX_DIMS - ndim; d < TG_MAX_DIMS; d++) {
        int64_t da = padded_dim(a, d), db = padded_dim(b, d);
        if (da != db && da != 1 && db != 1)
            return tg_op_fail(call, TG_ERR_SHAPE, "shapes do not broadcast (dim %d: %lld vs %lld)",
                              d - (TG_MAX_DIMS - ndim), (long long)da, (long long)db);
        out->dims[d - (TG_MAX_DIMS - ndim)] = da > db ? da : db;
    }
    return TG_OK;
}

void tgi_broadcast_plan(const tg_tensor *a, const tg_tensor *b, tgi_broadcast *plan) {
    int64_t sa = 1, sb = 1;
    for (int d = TG_MAX_DIMS - 1; d >= 0; d--) {
        int64_t da = padded_dim(a, d), db = padded_dim(b, d);
        plan->dims[d] = da > db ? da : db;
        plan->stride_a[d] = da == 1 ? 0 : sa;
        plan->stride_b[d] = db == 1 ? 0 : sb;
        sa *= da;
        sb *= db;
    }
}

/* ---- gradient-check examples --------------------------------------------------------------- */

/* Fisher-Yates over 0.1-spaced values centred on zero. */
static void fill_distinct(tg_tensor *t, tg_rng *rng) {
    for (int64_t i = 0; i < t->size; i++) t->data[i] = 0.1f * (float)(i - t->size / 2);
    for (int64_t i = t->size - 1; i > 0; i--) {
        int64_t j = (int64_t)tg_rng_below(rng, (uint32_t)(i + 1));
        float swap = t->data[i];
        t->data[i] = t->data[j];
        t->data[j] = swap;
    }
}

static void fill_domain(tg_tensor *t, const tgi_example_input *spec, uint64_t seed) {
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    if (spec->domain == TGI_DOMAIN_DISTINCT) {
        fill_distinct(t, &rng);
        return;
    }
    for (int64_t i = 0; i < t->size; i++) {
        float u = tg_rng_uniform(&rng);
        switch (spec->domain) {
        case TGI_DOMAIN_ANY: t->data[i] = (float)tg_rng_normal(&rng); break;
        case TGI_DOMAIN_AWAY_ZERO:
            t->data[i] = (0.2f + 1.3f * u) * (tg_rng_u32(&rng) & 1 ? 1.0f : -1.0f);
            break;
        case TGI_DOMAIN_POSITIVE: t->data[i] = 0.5f + 1.5f * u; break;
        case TGI_DOMAIN_UNIT: t->data[i] = u; break;
        case TGI_DOMAIN_LABELS: t->data[i] = (float)tg_rng_below(&rng, (uint32_t)spec->param); break;
        case TGI_DOMAIN_DISTINCT: break; /* filled above */
        }
    }
}

tg_status tgi_example_from_spec(tg_tape *tape, void *op_data, int index, tg_tensor **inputs,
                                int *n_inputs, tg_attr_value *attrs) {
    const tgi_examples *examples = op_data;
    if (!examples || index < 0 || index >= examples->count) return TG_ERR_NOT_FOUND;
    const tgi_example *example = &examples->list[index];
    for (int i = 0; i < example->n_inputs; i++) {
        const tgi_example_input *spec = &example->inputs[i];
        tg_tensor *t = tg_tape_zeros(tape, spec->shape.ndim, spec->shape.dims);
        if (!t) return tg_errcode(tape->ctx);
        fill_domain(t, spec, 1000u * (uint64_t)index + (uint64_t)i + 1);
        if (!spec->constant && tg_set_requires_grad(t, true) != TG_OK) return tg_errcode(tape->ctx);
        tg_set_label(t, "x%d", i);
        inputs[i] = t;
    }
    *n_inputs = example->n_inputs;
    memcpy(attrs, example->attrs, sizeof example->attrs);
    return TG_OK;
}
