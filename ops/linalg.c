/*
 * ops/linalg.c — matmul, the fused linear layer, and transpose.
 */
#include "ops/kernels.h"

/* ---- matmul -------------------------------------------------------------------------------- */

/* A batch of `count` products [m,k] x [k,n]; b_step is 0 when one B is shared by the batch. */
typedef struct matmul_dims {
    int64_t count, m, k, n, b_step;
} matmul_dims;

static matmul_dims matmul_shape(const tg_tensor *a, const tg_tensor *b) {
    matmul_dims d;
    d.k = a->shape[a->ndim - 1];
    d.n = b->shape[b->ndim - 1];
    if (b->ndim == 2) { /* a 2-D B serves every row of A: one product over the flattened rows */
        d.count = 1;
        d.m = a->size / d.k;
        d.b_step = 0;
    } else {
        d.count = a->shape[0];
        d.m = a->shape[1];
        d.b_step = d.k * d.n;
    }
    return d;
}

static tg_status matmul_infer(const tg_op_call *call, tg_shape *out) {
    const tg_tensor *a = call->inputs[0], *b = call->inputs[1];
    bool plain = a->ndim == 2 && b->ndim == 2;
    bool batched = a->ndim == 3 && (b->ndim == 3 || b->ndim == 2);
    if (!plain && !batched)
        return tg_op_fail(call, TG_ERR_SHAPE, "expected [M,K] x [K,N], [B,M,K] x [B,K,N] or "
                          "[B,M,K] x [K,N]");
    int64_t k_a = a->shape[a->ndim - 1], k_b = b->shape[b->ndim - 2];
    if (k_a != k_b)
        return tg_op_fail(call, TG_ERR_SHAPE, "inner dims %lld != %lld", (long long)k_a,
                          (long long)k_b);
    if (a->ndim == 3 && b->ndim == 3 && a->shape[0] != b->shape[0])
        return tg_op_fail(call, TG_ERR_SHAPE, "batch sizes %lld != %lld", (long long)a->shape[0],
                          (long long)b->shape[0]);
    tgi_shape_of(a, out);
    out->dims[a->ndim - 1] = b->shape[b->ndim - 1];
    return TG_OK;
}

static tg_status matmul_forward(tg_op_call *call) {
    const tg_tensor *a = call->inputs[0], *b = call->inputs[1];
    matmul_dims d = matmul_shape(a, b);
    for (int64_t i = 0; i < d.count; i++)
        tgi_gemm(call->tape->ctx, false, false, d.m, d.n, d.k, 1.0f, a->data + i * d.m * d.k, d.k,
                 b->data + i * d.b_step, d.n, 0.0f, call->output->data + i * d.m * d.n, d.n);
    return TG_OK;
}

/* dA = dY B^T, dB = A^T dY (per batch; a shared B sums over the batch through beta = 1). */
static tg_status matmul_backward(const tg_op_call *call) {
    const tg_tensor *a = call->inputs[0], *b = call->inputs[1];
    matmul_dims d = matmul_shape(a, b);
    const float *gy = call->output->grad;
    for (int64_t i = 0; i < d.count; i++) {
        const float *gy_i = gy + i * d.m * d.n;
        if (a->grad)
            tgi_gemm(call->tape->ctx, false, true, d.m, d.k, d.n, 1.0f, gy_i, d.n, b->data + i * d.b_step, d.n,
                     1.0f, a->grad + i * d.m * d.k, d.k);
        if (b->grad)
            tgi_gemm(call->tape->ctx, true, false, d.k, d.n, d.m, 1.0f, a->data + i * d.m * d.k, d.k, gy_i, d.n,
                     1.0f, b->grad + i * d.b_step, d.n);
    }
    return TG_OK;
}

/* ---- linear: y = x W^T + b ----------------------------------------------------------------- */

static tg_status linear_infer(const tg_op_call *call, tg_shape *out) {
    const tg_tensor *x = call->inputs[0], *w = call->inputs[1], *b = call->inputs[2];
    if (x->ndim < 1 || w->ndim != 2 || b->ndim != 1)
        return tg_op_fail(call, TG_ERR_SHAPE, "expected x [...,in], weight [out,in], bias [out]");
    if (x->shape[x->ndim - 1] != w->shape[1])
        return tg_op_fail(call, TG_ERR_SHAPE, "input features %lld != weight in-features %lld",
                          (long long)x->shape[x->ndim - 1], (long long)w->shape[1]);
    if (b->shape[0] != w->shape[0])
        return tg_op_fail(call, TG_ERR_SHAPE, "bias size %lld != weight out-features %lld",
                          (long long)b->shape[0], (long long)w->shape[0]);
    tgi_shape_of(x, out);
    out->dims[x->ndim - 1] = w->shape[0];
    return TG_OK;
}

static tg_status linear_forward(tg_op_call *call) {
    const tg_tensor *x = call->inputs[0], *w = call->inputs[1], *b = call->inputs[2];
    int64_t in = w->shape[1], out = w->shape[0], rows = x->size / in;
    tgi_gemm_bias(call->tape->ctx, rows, out, in, x->data, in, w->data, in, b->data, call->output->data, out);
    return TG_OK;
}

/* dx = dY W, dW = dY^T x, db = column sums of dY */
static tg_status linear_backward(const tg_op_call *call) {
    const tg_tensor *x = call->inputs[0], *w = call->inputs[1], *b = call->inputs[2];
    int64_t in = w->shape[1], out = w->shape[0], rows = x->size / in;
    const float *gy = call->output->grad;
    if (x->grad) tgi_gemm(call->tape->ctx, false, false, rows, in, out, 1.0f, gy, out, w->data, in, 1.0f, x->grad, in);
    if (w->grad) tgi_gemm(call->tape->ctx, true, false, out, in, rows, 1.0f, gy, out, x->data, in, 1.0f, w->grad, in);
    if (b->grad) tgi_add_column_sums(call->tape->ctx, rows, out, gy, out, b->grad);
    return TG_OK;
}

/* ---- transpose ----------------------------------------------------------------------------- */

static tg_status transpose_axes(const tg_op_call *call, int *d0, int *d1) {
    int ndim = call->inputs[0]->ndim;
    if (tgi_normalize_axis(call, call->attrs[0].i64, ndim, d0) != TG_OK) return TG_ERR_SHAPE;
    return tgi_normalize_axis(call, call->attrs[1].i64, ndim, d1);
}

static tg_status transpose_infer(const tg_op_call *call, tg_shape *out) {
    int d0, d1;
    if (transpose_axes(call, &d0, &d1) != TG_OK) return TG_ERR_SHAPE;
    tgi_shape_of(call->inputs[0], out);
    out->dims[d0] = call->inputs[0]->shape[d1];
    out->dims[d1] = call->inputs[0]->shape[d0];
    return TG_OK;
}

/* Walks the output in order; `src` is the matching input offset (input strides, axes swapped).
 * to_output copies input -> output (forward); otherwise adds output grad -> input grad. */
static void transpose_copy(const tg_op_call *call, bool to_output) {
    const tg_tensor *x = call->inputs[0];
    int d0 = 0, d1 = 0;
    transpose_axes(call, &d0, &d1);
    int64_t stride[TG_MAX_DIMS], dims[TG_MAX_DIMS];
    int64_t s = 1;
    for (int d = TG_MAX_DIMS - 1; d >= 0; d--) {
        stride[d] = s;
        s *= x->shape[d];
        dims[d] = call->output->shape[d];
    }
    int64_t tmp = stride[d0];
    stride[d0] = stride[d1];
    stride[d1] = tmp;
    int64_t dst = 0;
    for (int64_t i0 = 0; i0 < dims[0]; i0++)
        for (int64_t i1 = 0; i1 < dims[1]; i1++)
            for (int64_t i2 = 0; i2 < dims[2]; i2++)
                for (int64_t i3 = 0; i3 < dims[3]; i3++, dst++) {
                    int64_t src = i0 * stride[0] + i1 * stride[1] + i2 * stride[2] + i3 * stride[3];
                    if (to_output) call->output->data[dst] = x->data[src];
                    else x->grad[src] += call->output->grad[dst];
                }
}

static tg_status transpose_forward(tg_op_call *call) {
    transpose_copy(call, true);
    return TG_OK;
}

static tg_status transpose_backward(const tg_op_call *call) {
    if (call->inputs[0]->grad) transpose_copy(call, false);
    return TG_OK;
}

/* ---- registry entries ---------------------------------------------------------------------- */

static const tgi_example matmul_inputs[] = {
    {.n_inputs = 2, .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 3, 4), TGI_INPUT(TGI_DOMAIN_ANY, 4, 5)}},
    {.n_inputs = 2,
     .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 2, 3, 4), TGI_INPUT(TGI_DOMAIN_ANY, 2, 4, 5)}},
    {.n_inputs = 2, .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 2, 3, 4), TGI_INPUT(TGI_DOMAIN_ANY, 4, 2)}},
};
static const tgi_example linear_inputs[] = {
    {.n_inputs = 3,
     .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 3, 4), TGI_INPUT(TGI_DOMAIN_ANY, 5, 4),
                TGI_INPUT(TGI_DOMAIN_ANY, 5)}},
    {.n_inputs = 3,
     .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 2, 3, 4), TGI_INPUT(TGI_DOMAIN_ANY, 2, 4),
                TGI_INPUT(TGI_DOMAIN_ANY, 2)}},
};
static const tgi_example transpose_inputs[] = {
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 3, 4), {.i64 = 0}, {.i64 = 1}),
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 2, 3, 4), {.i64 = -1}, {.i64 = 0}),
};
static const tgi_examples matmul_examples = TGI_EXAMPLES(matmul_inputs);
static const tgi_examples linear_examples = TGI_EXAMPLES(linear_inputs);
static const tgi_examples transpose_examples = TGI_EXAMPLES(transpose_inputs);

const tg_op_def tgi_linalg_defs[] = {
    KERNEL_DEF(matmul, 2, "", matmul_infer, matmul_examples),
    KERNEL_DEF(linear, 3, "", linear_infer, linear_examples),
    KERNEL_DEF(transpose, 1, "dim0:i64,dim1:i64", transpose_infer, transpose_examples),
};
const int tgi_linalg_count = sizeof tgi_linalg_defs / sizeof tgi_linalg_defs[0];

tg_tensor *tg_matmul(tg_tape *tape, tg_tensor *a, tg_tensor *b) {
    return tgi_binary(tape, TGI_OP_MATMUL, a, b);
}

tg_tensor *tg_linear(tg_tape *tape, tg_tensor *x, tg_tensor *w, tg_tensor *b) {
    tg_tensor *inputs[3] = {x, w, b};
    return tgi_call_builtin(tape, TGI_OP_LINEAR, inputs, 3, NULL);
}

tg_tensor *tg_transpose(tg_tape *tape, tg_tensor *x, int dim0, int dim1) {
    tg_attr_value attrs[2] = {{.i64 = dim0}, {.i64 = dim1}};
    return tgi_call_builtin(tape, TGI_OP_TRANSPOSE, &x, 1, attrs);
}
