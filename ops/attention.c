/*
 * ops/attention.c — scaled dot-product attention, fused: O = softmax(scale Q K^T + mask) V.
 *
 * q [..., Tq, D], k [..., Tk, D], v [..., Tk, Dv] with the same leading dims (usually [B, H]);
 * each of the N = B*H heads is independent, so the heads are spread over the context's threads
 * and every product of a head runs on one thread: the numbers do not depend on the thread count.
 *
 * Forward keeps the probabilities P [N, Tq, Tk] for backward (the only T x T memory). Backward,
 * for one head, with dO the output's gradient:
 *     dV  = P^T dO
 *     dP  = dO V^T
 *     dS  = P * (dP - rowsum(P * dP))       (the softmax's VJP, row by row)
 *     dQ  = scale dS K,   dK = scale dS^T Q
 * dP is formed a block of rows at a time in a small stack buffer and turned into dS in place of
 * P (P is read once more there and never again: a tape runs backward once per forward), so
 * backward needs no T x T scratch beyond P itself.
 *
 * Causal: query i sees keys j <= i (PyTorch's is_causal, aligned top-left); the masked
 * probabilities are exactly 0, and so are their gradients.
 */
#include "ops/kernels.h"

#include <math.h>

/* Rows of dP formed at once: a block of at most this many floats lives on the stack. */
#define DP_BLOCK_FLOATS 8192

typedef struct attention_dims {
    int64_t heads, tq, tk, d, dv;
    float scale;
    bool causal;
} attention_dims;

static attention_dims attention_shape(const tg_op_call *call) {
    const tg_tensor *q = call->inputs[0], *v = call->inputs[2];
    int nd = q->ndim;
    attention_dims a;
    a.tq = q->shape[nd - 2];
    a.d = q->shape[nd - 1];
    a.tk = v->shape[nd - 2];
    a.dv = v->shape[nd - 1];
    a.heads = q->size / (a.tq * a.d);
    a.causal = call->attrs[0].b;
    a.scale = call->attrs[1].f32 != 0.0f ? call->attrs[1].f32 : 1.0f / sqrtf((float)a.d);
    return a;
}

static tg_status attention_infer(const tg_op_call *call, tg_shape *out) {
    const tg_tensor *q = call->inputs[0], *k = call->inputs[1], *v = call->inputs[2];
    if (q->ndim < 3 || k->ndim != q->ndim || v->ndim != q->ndim)
        return tg_op_fail(call, TG_ERR_SHAPE, "expected q [..., Tq, D], k [..., Tk, D], "
                          "v [..., Tk, Dv] of 3 or 4 dims each");
    int nd = q->ndim;
    for (int d = 0; d < nd - 2; d++)
        if (k->shape[d] != q->shape[d] || v->shape[d] != q->shape[d])
            return tg_op_fail(call, TG_ERR_SHAPE, "leading dim %d differs (q %lld, k %lld, v %lld)",
                              d, (long long)q->shape[d], (long long)k->shape[d],
                              (long long)v->shape[d]);
    if (k->shape[nd - 1] != q->shape[nd - 1])
        return tg_op_fail(call, TG_ERR_SHAPE, "q and k head sizes %lld != %lld",
                          (long long)q->shape[nd - 1], (long long)k->shape[nd - 1]);
    if (k->shape[nd - 2] != v->shape[nd - 2])
        return tg_op_fail(call, TG_ERR_SHAPE, "k and v lengths %lld != %lld",
                          (long long)k->shape[nd - 2], (long long)v->shape[nd - 2]);
    float scale = call->attrs[1].f32;
    if (!isfinite(scale) || scale < 0.0f)
        return tg_op_fail(call, TG_ERR_INVALID, "scale = %g, expected 0 (1/sqrt(D)) or > 0",
                          (double)scale);
    int64_t tq = q->shape[nd - 2], tk = k->shape[nd - 2];
    if (tk > DP_BLOCK_FLOATS)
        return tg_op_fail(call, TG_ERR_SHAPE, "%lld keys: at most %d", (long long)tk,
                          DP_BLOCK_FLOATS);
    if ((uint64_t)(q->size / (tq * q->shape[nd - 1])) * (uint64_t)tq * (uint64_t)tk >
        (uint64_t)TGI_MAX_ELEMENTS)
        return tg_op_fail(call, TG_ERR_SHAPE, "the probabilities would hold too many elements");
    tgi_shape_of(q, out);
    out->dims[nd - 1] = v->shape[nd - 1];
    return TG_OK;
}

/* One row of scores into probabilities, in place; the first `seen` entries are live, the rest
 * (masked keys) become 0. */
static void softmax_row(float *row, int64_t seen, int64_t tk) {
    float max = row[0];
    for (int64_t j = 1; j < seen; j++) max = row[j] > max ? row[j] : max;
    double sum = 0.0;
    for (int64_t j = 0; j < seen; j++) {
        row[j] = expf(row[j] - max);
        sum += row[j];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t j = 0; j < seen; j++) row[j] *= inv;
    for (int64_t j = seen; j < tk; j++) row[j] = 0.0f;
}

/* The keys query i sees. */
static int64_t keys_seen(const attention_dims *a, int64_t i) {
    return a->causal ? (i + 1 < a->tk ? i + 1 : a->tk) : a->tk;
}

typedef struct attention_job {
    const tg_op_call *call;
    attention_dims dims;
    float *probs;
} attention_job;

static void forward_heads(void *arg, int64_t begin, int64_t end) {
    const attention_job *job = arg;
    const attention_dims *a = &job->dims;
    const tg_op_call *call = job->call;
    tg_ctx *ctx = call->tape->ctx;
    for (int64_t h = begin; h < end; h++) {
        const float *q = call->inputs[0]->data + h * a->tq * a->d;
        const float *k = call->inputs[1]->data + h * a->tk * a->d;
        const float *v = call->inputs[2]->data + h * a->tk * a->dv;
        float *p = job->probs + h * a->tq * a->tk, *o = call->output->data + h * a->tq * a->dv;
        tgi_gemm(ctx, false, true, a->tq, a->tk, a->d, a->scale, q, a->d, k, a->d, 0.0f, p, a->tk);
        for (int64_t i = 0; i < a->tq; i++) softmax_row(p + i * a->tk, keys_seen(a, i), a->tk);
        tgi_gemm(ctx, false, false, a->tq, a->dv, a->tk, 1.0f, p, a->tk, v, a->dv, 0.0f, o, a->dv);
    }
}

static tg_status attention_forward(tg_op_call *call) {
    attention_job job = {call, attention_shape(call), NULL};
    const attention_dims *a = &job.dims;
    job.probs = tg_op_save_for_backward(call, (size_t)(a->heads * a->tq * a->tk) * sizeof(float));
    if (!job.probs) return TG_ERR_NOMEM;
    tgi_parallel_for(call->tape->ctx, a->heads, 1, forward_heads, &job);
    return TG_OK;
}

/* dS for rows [i0, i0 + rows) of one head, in place of P: dP = dO V^T into the stack block,
 * then dS = P (dP - <P, dP>) row by row. */
static void probs_to_score_grads(tg_ctx *ctx, const attention_dims *a, float *p, const float *go,
                                 const float *v, int64_t i0, int64_t rows) {
    float dp[DP_BLOCK_FLOATS];
    tgi_gemm(ctx, false, true, rows, a->tk, a->dv, 1.0f, go + i0 * a->dv, a->dv, v, a->dv, 0.0f,
             dp, a->tk);
    for (int64_t r = 0; r < rows; r++) {
        float *pr = p + (i0 + r) * a->tk;
        const float *dpr = dp + r * a->tk;
        int64_t seen = keys_seen(a, i0 + r);
        double dot = 0.0;
        for (int64_t j = 0; j < seen; j++) dot += (double)pr[j] * dpr[j];
        float row_dot = (float)dot;
        for (int64_t j = 0; j < seen; j++) pr[j] *= dpr[j] - row_dot;
    }
}

static void backward_heads(void *arg, int64_t begin, int64_t end) {
    const attention_job *job = arg;
    const attention_dims *a = &job->dims;
    const tg_op_call *call = job->call;
    tg_ctx *ctx = call->tape->ctx;
    const tg_tensor *tq = call->inputs[0], *tk = call->inputs[1], *tv = call->inputs[2];
    int64_t block_rows = DP_BLOCK_FLOATS / a->tk;
    for (int64_t h = begin; h < end; h++) {
        const float *q = tq->data + h * a->tq * a->d, *k = tk->data + h * a->tk * a->d;
        const float *v = tv->data + h * a->tk * a->dv;
        const float *go = call->output->grad + h * a->tq * a->dv;
        float *p = job->probs + h * a->tq * a->tk;
        if (tv->grad)
            tgi_gemm(ctx, true, false, a->tk, a->dv, a->tq, 1.0f, p, a->tk, go, a->dv, 1.0f,
                     tv->grad + h * a->tk * a->dv, a->dv);
        if (!tq->grad && !tk->grad) continue;
        for (int64_t i0 = 0; i0 < a->tq; i0 += block_rows)
            probs_to_score_grads(ctx, a, p, go, v, i0,
                                 a->tq - i0 < block_rows ? a->tq - i0 : block_rows);
        if (tq->grad)
            tgi_gemm(ctx, false, false, a->tq, a->d, a->tk, a->scale, p, a->tk, k, a->d, 1.0f,
                     tq->grad + h * a->tq * a->d, a->d);
        if (tk->grad)
            tgi_gemm(ctx, true, false, a->tk, a->d, a->tq, a->scale, p, a->tk, q, a->d, 1.0f,
                     tk->grad + h * a->tk * a->d, a->d);
    }
}

static tg_status attention_backward(const tg_op_call *call) {
    attention_job job = {call, attention_shape(call), call->saved};
    tgi_parallel_for(call->tape->ctx, job.dims.heads, 1, backward_heads, &job);
    return TG_OK;
}

/* ---- registry entry ------------------------------------------------------------------------ */

#define QKV(...) \
    .n_inputs = 3, .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, __VA_ARGS__), \
                              TGI_INPUT(TGI_DOMAIN_ANY, __VA_ARGS__), \
                              TGI_INPUT(TGI_DOMAIN_ANY, __VA_ARGS__)}
static const tgi_example attention_inputs[] = {
    {QKV(2, 2, 5, 3), .attrs = {{.b = false}, {.f32 = 0.0f}}},
    {QKV(2, 2, 5, 3), .attrs = {{.b = true}, {.f32 = 0.0f}}},
    {QKV(1, 4, 6, 2), .attrs = {{.b = true}, {.f32 = 0.5f}}},
    {.n_inputs = 3,
     .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 3, 4, 3), TGI_INPUT(TGI_DOMAIN_ANY, 3, 6, 3),
                TGI_INPUT(TGI_DOMAIN_ANY, 3, 6, 2)},
     .attrs = {{.b = true}, {.f32 = 0.0f}}},
};
#undef QKV
static const tgi_examples attention_examples = TGI_EXAMPLES(attention_inputs);

const tg_op_def tgi_attention_defs[] = {
    KERNEL_DEF(attention, 3, "causal:bool,scale:f32", attention_infer, attention_examples),
};
const int tgi_attention_count = sizeof tgi_attention_defs / sizeof tgi_attention_defs[0];

tg_tensor *tg_attention(tg_tape *tape, tg_tensor *q, tg_tensor *k, tg_tensor *v, bool causal,
                        float scale) {
    tg_tensor *inputs[3] = {q, k, v};
    tg_attr_value attrs[2] = {{.b = causal}, {.f32 = scale}};
    return tgi_call_builtin(tape, TGI_OP_ATTENTION, inputs, 3, attrs);
}
