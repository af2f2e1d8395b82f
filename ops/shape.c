/*
 * ops/shape.c — reshape, concat and slice: ops that move elements without arithmetic.
 */
#include "ops/kernels.h"

#include <string.h>

/* ---- reshape ------------------------------------------------------------------------------- */

static tg_status reshape_infer(const tg_op_call *call, tg_shape *out) {
    const tg_tensor *x = call->inputs[0];
    const tg_shape *want = &call->attrs[0].shape;
    if (want->ndim < 0 || want->ndim > TG_MAX_DIMS)
        return tg_op_fail(call, TG_ERR_SHAPE, "target has %d dims", (int)want->ndim);
    char text[96];
    tgi_format_shape(want->ndim, want->dims, text, sizeof text);
    int inferred = -1;
    int64_t known = 1;
    for (int d = 0; d < want->ndim; d++) {
        if (want->dims[d] == -1 && inferred < 0) inferred = d;
        else if (want->dims[d] < 1) return tg_op_fail(call, TG_ERR_SHAPE, "invalid target shape %s", text);
        else if (!tgi_mul_ok(known, want->dims[d], &known))
            return tg_op_fail(call, TG_ERR_SHAPE, "target %s has too many elements", text);
    }
    *out = *want;
    if (inferred >= 0) {
        if (x->size % known != 0)
            return tg_op_fail(call, TG_ERR_SHAPE, "cannot infer -1 in %s from %lld elements",
                              text, (long long)x->size);
        out->dims[inferred] = x->size / known;
        known *= out->dims[inferred];
    }
    if (known != x->size)
        return tg_op_fail(call, TG_ERR_SHAPE, "target %s has %lld elements, input has %lld", text,
                          (long long)known, (long long)x->size);
    return TG_OK;
}

static tg_status reshape_forward(tg_op_call *call) {
    memcpy(call->output->data, call->inputs[0]->data, (size_t)call->output->size * sizeof(float));
    return TG_OK;
}

static tg_status reshape_backward(const tg_op_call *call) {
    float *gx = call->inputs[0]->grad;
    if (gx)
        for (int64_t i = 0; i < call->output->size; i++) gx[i] += call->output->grad[i];
    return TG_OK;
}

/* ---- concat -------------------------------------------------------------------------------- */

static tg_status concat_infer(const tg_op_call *call, tg_shape *out) {
    const tg_tensor *first = call->inputs[0];
    int axis;
    if (tgi_normalize_axis(call, call->attrs[0].i64, first->ndim, &axis) != TG_OK)
        return TG_ERR_SHAPE;
    tgi_shape_of(first, out);
    out->dims[axis] = 0;
    for (int i = 0; i < call->n_inputs; i++) {
        const tg_tensor *t = call->inputs[i];
        bool fits = t->ndim == first->ndim;
        for (int d = 0; fits && d < first->ndim; d++)
            fits = d == axis || t->shape[d] == first->shape[d];
        if (!fits)
            return tg_op_fail(call, TG_ERR_SHAPE, "input %d does not match input 0 outside "
                              "axis %d", i, axis);
        out->dims[axis] += t->shape[axis];
    }
    return TG_OK;
}

/* Each input contributes a block of n_i * inner floats to every outer row of the output. */
static void concat_move(const tg_op_call *call, bool forward) {
    int axis = (int)(call->attrs[0].i64 < 0 ? call->attrs[0].i64 + call->output->ndim
                                             : call->attrs[0].i64);
    tgi_axis_split out = tgi_split_at(call->output, axis);
    int64_t offset = 0;
    for (int i = 0; i < call->n_inputs; i++) {
        tg_tensor *t = call->inputs[i];
        int64_t block = t->shape[axis] * out.inner;
        for (int64_t o = 0; o < out.outer && (forward || t->grad); o++) {
            int64_t at = o * out.n * out.inner + offset;
            if (forward) {
                memcpy(call->output->data + at, t->data + o * block, (size_t)block * sizeof(float));
            } else {
                for (int64_t j = 0; j < block; j++) t->grad[o * block + j] += call->output->grad[at + j];
            }
        }
        offset += block;
    }
}

static tg_status concat_forward(tg_op_call *call) {
    concat_move(call, true);
    return TG_OK;
}

static tg_status concat_backward(const tg_op_call *call) {
    concat_move(call, false);
    return TG_OK;
}

/* ---- slice --------------------------------------------------------------------------------- */

static tg_status slice_infer(const tg_op_call *call, tg_shape *out) {
    const tg_tensor *x = call->inputs[0];
    int axis;
    if (tgi_normalize_axis(call, call->attrs[0].i64, x->ndim, &axis) != TG_OK) return TG_ERR_SHAPE;
    int64_t start = call->attrs[1].i64, end = call->attrs[2].i64;
    if (start < 0 || end > x->shape[axis] || start >= end)
        return tg_op_fail(call, TG_ERR_SHAPE, "slice [%lld, %lld) of axis %d (size %lld) is "
                          "empty or out of range", (long long)start, (long long)end, axis,
                          (long long)x->shape[axis]);
    tgi_shape_of(x, out);
    out->dims[axis] = end - start;
    return TG_OK;
}

static void slice_move(const tg_op_call *call, bool forward) {
    tg_tensor *x = call->inputs[0];
    int axis = (int)(call->attrs[0].i64 < 0 ? call->attrs[0].i64 + x->ndim : call->attrs[0].i64);
    tgi_axis_split in = tgi_split_at(x, axis);
    int64_t start = call->attrs[1].i64, count = call->attrs[2].i64 - start;
    int64_t block = count * in.inner;
    for (int64_t o = 0; o < in.outer; o++) {
        int64_t from = (o * in.n + start) * in.inner;
        if (forward) {
            memcpy(call->output->data + o * block, x->data + from, (size_t)block * sizeof(float));
        } else {
            for (int64_t j = 0; j < block; j++) x->grad[from + j] += call->output->grad[o * block + j];
        }
    }
}

static tg_status slice_forward(tg_op_call *call) {
    slice_move(call, true);
    return TG_OK;
}

static tg_status slice_backward(const tg_op_call *call) {
    if (call->inputs[0]->grad) slice_move(call, false);
    return TG_OK;
}

/* ---- registry entries ---------------------------------------------------------------------- */

static const tgi_example reshape_inputs[] = {
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 3, 4), {.shape = {3, {2, -1, 3}}}),
};
static const tgi_example concat_inputs[] = {
    {.n_inputs = 3,
     .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 2, 3), TGI_INPUT(TGI_DOMAIN_ANY, 2, 1),
                TGI_INPUT(TGI_DOMAIN_ANY, 2, 2)},
     .attrs = {{.i64 = 1}}},
    {.n_inputs = 2,
     .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 1, 3), TGI_INPUT(TGI_DOMAIN_ANY, 2, 3)},
     .attrs = {{.i64 = 0}}},
};
static const tgi_example slice_inputs[] = {
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 4, 5), {.i64 = 1}, {.i64 = 1}, {.i64 = 4}),
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 2, 3, 4), {.i64 = 0}, {.i64 = 1}, {.i64 = 2}),
};
static const tgi_examples reshape_examples = TGI_EXAMPLES(reshape_inputs);
static const tgi_examples concat_examples = TGI_EXAMPLES(concat_inputs);
static const tgi_examples slice_examples = TGI_EXAMPLES(slice_inputs);

/* The tangents concatenated the same way, zeros standing in for inputs that do not move. */
static tg_status concat_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    tg_tape *tape = call->tape;
    tg_tensor *local[16];
    tg_tensor **parts = call->n_inputs <= 16
                            ? local : tgi_arena_alloc(&tape->arena, (size_t)call->n_inputs * sizeof *parts);
    if (!parts) return tgi_error(tape->ctx, TG_ERR_NOMEM, "concat: out of memory for its JVP");
    for (int k = 0; k < call->n_inputs; k++) {
        const tg_tensor *x = call->inputs[k];
        parts[k] = t[k] ? t[k] : tg_tape_zeros(tape, x->ndim, x->shape);
        if (!parts[k]) return tg_errcode(tape->ctx);
    }
    *out = tgi_call_builtin(tape, TGI_OP_CONCAT, parts, call->n_inputs, call->attrs);
    return *out ? TG_OK : tg_errcode(tape->ctx);
}

const tg_op_def tgi_shape_defs[] = {
    KERNEL_DEF_JVP(reshape, 1, "shape:shape", reshape_infer, reshape_examples, tgi_jvp_linear),
    KERNEL_DEF_JVP(concat, TG_VARIADIC, "axis:i64", concat_infer, concat_examples, concat_jvp),
    KERNEL_DEF_JVP(slice, 1, "axis:i64,start:i64,end:i64", slice_infer, slice_examples, tgi_jvp_linear),
};
const int tgi_shape_count = sizeof tgi_shape_defs / sizeof tgi_shape_defs[0];

tg_tensor *tg_reshape(tg_tape *tape, tg_tensor *x, int ndim, const int64_t *shape) {
    tg_attr_value attr = {.shape = {ndim, {1, 1, 1, 1}}};
    if (ndim < 0 || ndim > TG_MAX_DIMS || (ndim > 0 && !shape)) {
        if (tape) tgi_error(tape->ctx, TG_ERR_SHAPE, "reshape: %d target dims (0 to %d)", ndim,
                            TG_MAX_DIMS);
        return NULL;
    }
    for (int d = 0; d < ndim; d++) attr.shape.dims[d] = shape[d];
    return tgi_call_builtin(tape, TGI_OP_RESHAPE, &x, 1, &attr);
}

tg_tensor *tg_concat(tg_tape *tape, tg_tensor *const *xs, int n, int axis) {
    tg_attr_value attr = {.i64 = axis};
    if (!xs && n > 0) {
        if (tape) tgi_error(tape->ctx, TG_ERR_INVALID, "concat: the inputs array is NULL");
        return NULL;
    }
    return tgi_call_builtin(tape, TGI_OP_CONCAT, xs, n, &attr);
}

tg_tensor *tg_slice(tg_tape *tape, tg_tensor *x, int axis, int64_t start, int64_t end) {
    tg_attr_value attrs[3] = {{.i64 = axis}, {.i64 = start}, {.i64 = end}};
    return tgi_call_builtin(tape, TGI_OP_SLICE, &x, 1, attrs);
}
