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
 * Both passes take the query rows a block at a time (a causal block skips the keys after its last
 * row); dP is formed for one block in a small stack buffer and turned into dS in place of P (P
 * is read once more there and never again: a tape runs backward once per forward), so backward
 * needs no T x T scratch beyond P itself.
 *
 * attention_qkv is the same over the packed projections of a multi-head layer: qkv [B, T, 3E]
 * in, [B, T, E] out, each head read and written in place (see head_layout).
 *
 * Causal: query i sees keys j <= i (PyTorch's is_causal, aligned top-left); the masked
 * probabilities are exactly 0, and so are their gradients.
 */
#include "ops/kernels.h"

#include <math.h>

/* Rows of dP formed at once: a block of at most this many floats lives on the stack. */
#define DP_BLOCK_FLOATS 8192

/* Where one head's matrices lie: head n = (b, h) starts at b * batch_step + h * head_step of its
 * tensor, and its rows are `ld` floats apart. The [..., T, D] layout has one "batch" per head;
 * the packed layout reads q, k and v of head h from the columns [h D, (h+1) D) of the thirds of
 * qkv [B, T, 3E] and writes the output's [B, T, E] in place, so a multi-head layer needs no
 * copies to split or merge heads. */
typedef struct head_layout {
    int64_t batch_step, head_step, ld;
} head_layout;

typedef struct attention_dims {
    int64_t heads, per_batch, tq, tk, d, dv;
    head_layout q, k, v, o;
    int64_t k_at, v_at;      /* where k and v start in their tensor (packed: E and 2E) */
    float scale;
    bool causal;
} attention_dims;

static int64_t head_offset(const attention_dims *a, const head_layout *l, int64_t n) {
    return (n / a->per_batch) * l->batch_step + (n % a->per_batch) * l->head_step;
}

static head_layout dense_layout(int64_t rows, int64_t cols) {
    head_layout l = {rows * cols, 0, cols};
    return l;
}

static void set_scale(attention_dims *a, float scale, bool causal) {
    a->causal = causal;
    a->scale = scale != 0.0f ? scale : 1.0f / sqrtf((float)a->d);
}

static attention_dims attention_shape(const tg_op_call *call) {
    const tg_tensor *q = call->inputs[0], *v = call->inputs[2];
    int nd = q->ndim;
    attention_dims a;
    a.tq = q->shape[nd - 2];
    a.d = q->shape[nd - 1];
    a.tk = v->shape[nd - 2];
    a.dv = v->shape[nd - 1];
    a.heads = q->size / (a.tq * a.d);
    a.per_batch = 1;
    a.q = dense_layout(a.tq, a.d);
    a.k = dense_layout(a.tk, a.d);
    a.v = dense_layout(a.tk, a.dv);
    a.o = dense_layout(a.tq, a.dv);
    a.k_at = a.v_at = 0;
    set_scale(&a, call->attrs[1].f32, call->attrs[0].b);
    return a;
}

/* The packed op: qkv [B, T, 3E], heads H, D = E / H. */
static attention_dims packed_shape(const tg_op_call *call) {
    const tg_tensor *qkv = call->inputs[0];
    int64_t batch = qkv->shape[0], t = qkv->shape[1], e = qkv->shape[2] / 3;
    attention_dims a;
    a.per_batch = call->attrs[0].i64;
    a.heads = batch * a.per_batch;
    a.tq = a.tk = t;
    a.d = a.dv = e / a.per_batch;
    head_layout in = {t * 3 * e, a.d, 3 * e}, out = {t * e, a.d, e};
    a.q = a.k = a.v = in;
    a.o = out;
    a.k_at = e;
    a.v_at = 2 * e;
    set_scale(&a, call->attrs[2].f32, call->attrs[1].b);
    return a;
}

static tg_status check_scale(const tg_op_call *call, float scale) {
    if (isfinite(scale) && scale >= 0.0f) return TG_OK;
    return tg_op_fail(call, TG_ERR_INVALID, "scale = %g, expected 0 (1/sqrt(D)) or > 0",
                      (double)scale);
}

/* The probabilities kept for backward must fit, and a row of dP the stack block. */
static tg_status check_probs(const tg_op_call *call, int64_t heads, int64_t tq, int64_t tk) {
    if (tk > DP_BLOCK_FLOATS)
        return tg_op_fail(call, TG_ERR_SHAPE, "%lld keys: at most %d", (long long)tk,
                          DP_BLOCK_FLOATS);
    const int64_t dims[3] = {heads, tq, tk};
    int64_t probs;
    if (!tgi_product_ok(3, dims, &probs) || probs > TGI_MAX_ELEMENTS)
        return tg_op_fail(call, TG_ERR_SHAPE, "the probabilities would hold too many elements");
    return TG_OK;
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
    if (check_scale(call, call->attrs[1].f32) != TG_OK) return TG_ERR_INVALID;
    int64_t tq = q->shape[nd - 2];
    if (check_probs(call, q->size / (tq * q->shape[nd - 1]), tq, k->shape[nd - 2]) != TG_OK)
        return TG_ERR_SHAPE;
    tgi_shape_of(q, out);
    out->dims[nd - 1] = v->shape[nd - 1];
    return TG_OK;
}

static tg_status packed_infer(const tg_op_call *call, tg_shape *out) {
    const tg_tensor *qkv = call->inputs[0];
    int64_t heads = call->attrs[0].i64;
    if (qkv->ndim != 3 || qkv->shape[2] % 3 != 0)
        return tg_op_fail(call, TG_ERR_SHAPE, "expected qkv [B, T, 3E]");
    int64_t e = qkv->shape[2] / 3;
    if (heads < 1 || e % heads != 0)
        return tg_op_fail(call, TG_ERR_INVALID, "heads = %lld does not divide E = %lld",
                          (long long)heads, (long long)e);
    if (check_scale(call, call->attrs[2].f32) != TG_OK) return TG_ERR_INVALID;
    if (check_probs(call, qkv->shape[0] * heads, qkv->shape[1], qkv->shape[1]) != TG_OK)
        return TG_ERR_SHAPE;
    tgi_shape_of(qkv, out);
    out->dims[2] = e;
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
    const tg_tensor *q, *k, *v; /* the packed op: all three are qkv */
    float *probs;
} attention_job;

/* One head's matrices in a tensor's data (or gradient). */
static float *head_q(const attention_job *j, float *base, int64_t n) {
    return base + head_offset(&j->dims, &j->dims.q, n);
}
static float *head_k(const attention_job *j, float *base, int64_t n) {
    return base + j->dims.k_at + head_offset(&j->dims, &j->dims.k, n);
}
static float *head_v(const attention_job *j, float *base, int64_t n) {
    return base + j->dims.v_at + head_offset(&j->dims, &j->dims.v, n);
}
static float *head_o(const attention_job *j, float *base, int64_t n) {
    return base + head_offset(&j->dims, &j->dims.o, n);
}

/* Query rows are taken a block at a time; a block of a causal head sees only the keys up to
 * its last row, so the products skip the masked upper triangle (at T = 64 in blocks of 16, 62%
 * of the full products' work). A block's dP must fit the stack buffer. */
#define CAUSAL_BLOCK_ROWS 16

static int64_t block_rows(const attention_dims *a) {
    int64_t fit = DP_BLOCK_FLOATS / a->tk;
    return a->causal && fit > CAUSAL_BLOCK_ROWS ? CAUSAL_BLOCK_ROWS : fit;
}

/* The keys the rows [i0, i1) see together: all of them, or up to the last row (causal). */
static int64_t block_keys(const attention_dims *a, int64_t i1) {
    return a->causal && i1 < a->tk ? i1 : a->tk;
}

static void forward_heads(void *arg, int64_t begin, int64_t end) {
    const attention_job *job = arg;
    const attention_dims *a = &job->dims;
    tg_ctx *ctx = job->call->tape->ctx;
    int64_t step = block_rows(a);
    for (int64_t n = begin; n < end; n++) {
        const float *q = head_q(job, job->q->data, n), *k = head_k(job, job->k->data, n);
        const float *v = head_v(job, job->v->data, n);
        float *o = head_o(job, job->call->output->data, n);
        for (int64_t i0 = 0; i0 < a->tq; i0 += step) {
            int64_t rows = a->tq - i0 < step ? a->tq - i0 : step, keys = block_keys(a, i0 + rows);
            float *p = job->probs + n * a->tq * a->tk + i0 * a->tk;
            tgi_gemm(ctx, false, true, rows, keys, a->d, a->scale, q + i0 * a->q.ld, a->q.ld, k,
                     a->k.ld, 0.0f, p, a->tk);
            for (int64_t i = 0; i < rows; i++) softmax_row(p + i * a->tk, keys_seen(a, i0 + i), a->tk);
            tgi_gemm(ctx, false, false, rows, a->dv, keys, 1.0f, p, a->tk, v, a->v.ld, 0.0f,
                     o + i0 * a->o.ld, a->o.ld);
        }
    }
}

static tg_status run_forward(tg_op_call *call, attention_job *job) {
    const attention_dims *a = &job->dims;
    job->probs = tg_op_save_for_backward(call, (size_t)(a->heads * a->tq * a->tk) * sizeof(float));
    if (!job->probs) return TG_ERR_NOMEM;
    tgi_parallel_for(call->tape->ctx, a->heads, 1, forward_heads, job);
    return TG_OK;
}

static tg_status attention_forward(tg_op_call *call) {
    attention_job job = {call, attention_shape(call), call->inputs[0], call->inputs[1],
                         call->inputs[2], NULL};
    return run_forward(call, &job);
}

static tg_status attention_qkv_forward(tg_op_call *call) {
    const tg_tensor *qkv = call->inputs[0];
    attention_job job = {call, packed_shape(call), qkv, qkv, qkv, NULL};
    return run_forward(call, &job);
}

/* dS for the rows [i0, i0 + rows) of one head (which see `keys` keys), in place of P: dP =
 * dO V^T into the stack block, then dS = P (dP - <P, dP>) row by row. */
static void probs_to_score_grads(tg_ctx *ctx, const attention_dims *a, float *p, const float *go,
                                 const float *v, int64_t i0, int64_t rows, int64_t keys) {
    float dp[DP_BLOCK_FLOATS];
    tgi_gemm(ctx, false, true, rows, keys, a->dv, 1.0f, go + i0 * a->o.ld, a->o.ld, v, a->v.ld,
             0.0f, dp, keys);
    for (int64_t r = 0; r < rows; r++) {
        float *pr = p + (i0 + r) * a->tk;
        const float *dpr = dp + r * keys;
        int64_t seen = keys_seen(a, i0 + r);
        double dot = 0.0;
        for (int64_t j = 0; j < seen; j++) dot += (double)pr[j] * dpr[j];
        float row_dot = (float)dot;
        for (int64_t j = 0; j < seen; j++) pr[j] *= dpr[j] - row_dot;
    }
}

/* One block of query rows of head n: its share of dV, then (when q or k want one) of dQ and dK. */
static void backward_block(const attention_job *job, int64_t n, int64_t i0, int64_t rows) {
    const attention_dims *a = &job->dims;
    tg_ctx *ctx = job->call->tape->ctx;
    const tg_tensor *tq = job->q, *tk = job->k, *tv = job->v;
    int64_t keys = block_keys(a, i0 + rows);
    const float *go = head_o(job, job->call->output->grad, n);
    float *p = job->probs + n * a->tq * a->tk, *p_rows = p + i0 * a->tk;
    if (tv->grad)
        tgi_gemm(ctx, true, false, keys, a->dv, rows, 1.0f, p_rows, a->tk, go + i0 * a->o.ld,
                 a->o.ld, 1.0f, head_v(job, tv->grad, n), a->v.ld);
    if (!tq->grad && !tk->grad) return;
    probs_to_score_grads(ctx, a, p, go, head_v(job, tv->data, n), i0, rows, keys);
    if (tq->grad)
        tgi_gemm(ctx, false, false, rows, a->d, keys, a->scale, p_rows, a->tk,
                 head_k(job, tk->data, n), a->k.ld, 1.0f, head_q(job, tq->grad, n) + i0 * a->q.ld,
                 a->q.ld);
    if (tk->grad)
        tgi_gemm(ctx, true, false, keys, a->d, rows, a->scale, p_rows, a->tk,
                 head_q(job, tq->data, n) + i0 * a->q.ld, a->q.ld, 1.0f, head_k(job, tk->grad, n),
                 a->k.ld);
}

static void backward_heads(void *arg, int64_t begin, int64_t end) {
    const attention_job *job = arg;
    const attention_dims *a = &job->dims;
    int64_t step = block_rows(a);
    for (int64_t n = begin; n < end; n++)
        for (int64_t i0 = 0; i0 < a->tq; i0 += step)
            backward_block(job, n, i0, a->tq - i0 < step ? a->tq - i0 : step);
}

static tg_status attention_backward(const tg_op_call *call) {
    attention_job job = {call, attention_shape(call), call->inputs[0], call->inputs[1],
                         call->inputs[2], call->saved};
    tgi_parallel_for(call->tape->ctx, job.dims.heads, 1, backward_heads, &job);
    return TG_OK;
}

static tg_status attention_qkv_backward(const tg_op_call *call) {
    const tg_tensor *qkv = call->inputs[0];
    attention_job job = {call, packed_shape(call), qkv, qkv, qkv, call->saved};
    if (qkv->grad) tgi_parallel_for(call->tape->ctx, job.dims.heads, 1, backward_heads, &job);
    return TG_OK;
}

/* ---- forward-mode rules -------------------------------------------------------------------- */

/* With S = scale Q K^T (masked), P = softmax(S) and O = P V, per head:
 *     dS = scale (dQ K^T + Q dK^T)
 *     dP = P * (dS - rowsum(P * dS))     (the softmax's JVP, composed here from P)
 *     dO = dP V + P dV
 * P is computed again by ops (matmul, masked_fill, softmax_axis) rather than read from the
 * forward's saved probabilities, so the tangent is differentiable in reverse (double backward,
 * HVP) and follows a replay. Masked scores get a large finite negative rather than -inf: their
 * probability is 0 all the same (exp underflows), with no infinity for anomaly mode to flag. */
#define MASKED_SCORE (-1e30f)

/* mask[i, j] = 1 where query i does not see key j (j > i, top-left aligned as keys_seen): a
 * constant of the shapes alone, not of the inputs' values. */
static tg_tensor *causal_mask(tg_tape *tape, int64_t tq, int64_t tk) {
    tg_tensor *mask = tg_tape_zeros(tape, 2, (int64_t[]){tq, tk});
    if (!mask) return NULL;
    for (int64_t i = 0; i < tq; i++)
        for (int64_t j = i + 1; j < tk; j++) mask->data[i * tk + j] = 1.0f;
    return mask;
}

typedef struct head_tensors {
    tg_tensor *q, *k, *v;    /* [..., Tq, D], [..., Tk, D], [..., Tk, Dv] */
    tg_tensor *dq, *dk, *dv; /* their tangents, NULL: zero */
} head_tensors;

/* dO for heads h (scale already resolved); NULL on error (reported on the tape's context). */
static tg_tensor *attention_tangent(tg_tape *tape, const head_tensors *h, bool causal,
                                    float scale) {
    int nd = h->q->ndim;
    tg_tensor *kt = tg_transpose(tape, h->k, nd - 2, nd - 1);
    tg_tensor *s = kt ? tg_scale(tape, tg_matmul(tape, h->q, kt), scale) : NULL;
    if (s && causal) {
        tg_tensor *mask = causal_mask(tape, s->shape[nd - 2], s->shape[nd - 1]);
        s = mask ? tg_masked_fill(tape, s, mask, MASKED_SCORE) : NULL;
    }
    tg_tensor *p = s ? tg_softmax_axis(tape, s, -1) : NULL;
    if (!p) return NULL;
    tg_tensor *dout = NULL;
    if (h->dq || h->dk) {
        tg_tensor *ds = h->dq ? tg_matmul(tape, h->dq, kt) : NULL;
        if (h->dq && !ds) return NULL;
        if (h->dk) {
            tg_tensor *term = tg_matmul(tape, h->q, tg_transpose(tape, h->dk, nd - 2, nd - 1));
            if (!term || !(ds = tgi_tangent_add(tape, ds, term))) return NULL;
        }
        ds = tg_scale(tape, ds, scale);
        tg_tensor *row = ds ? tg_sum_axis(tape, tg_mul(tape, p, ds), -1, true) : NULL;
        tg_tensor *dp = row ? tg_mul(tape, p, tg_sub(tape, ds, row)) : NULL;
        if (!dp || !(dout = tg_matmul(tape, dp, h->v))) return NULL;
    }
    if (h->dv) {
        tg_tensor *term = tg_matmul(tape, p, h->dv);
        if (!term) return NULL;
        dout = tgi_tangent_add(tape, dout, term);
    }
    return dout;
}

static tg_status attention_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    tg_tape *tape = call->tape;
    head_tensors h = {call->inputs[0], call->inputs[1], call->inputs[2], t[0], t[1], t[2]};
    attention_dims a = attention_shape(call);
    *out = attention_tangent(tape, &h, a.causal, a.scale);
    return *out ? TG_OK : tg_errcode(tape->ctx);
}

/* Part `part` (0: q, 1: k, 2: v) of a packed [B, T, 3E] as heads [B, H, T, D]. */
static tg_tensor *packed_heads(tg_tape *tape, tg_tensor *qkv, int part, int64_t heads) {
    int64_t batch = qkv->shape[0], t = qkv->shape[1], e = qkv->shape[2] / 3;
    tg_tensor *x = tg_slice(tape, qkv, 2, part * e, (part + 1) * e);
    x = tg_reshape(tape, x, 4, (int64_t[]){batch, t, heads, e / heads});
    return tg_permute(tape, x, 4, (int64_t[]){0, 2, 1, 3});
}

/* The packed op is attention on the heads split out of qkv, merged back into [B, T, E]: its
 * tangent is the same composition, on the tangent of qkv split the same way. */
static tg_status attention_qkv_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    tg_tape *tape = call->tape;
    tg_tensor *qkv = call->inputs[0];
    int64_t heads = call->attrs[0].i64;
    attention_dims a = packed_shape(call);
    head_tensors h;
    tg_tensor **parts[6] = {&h.q, &h.k, &h.v, &h.dq, &h.dk, &h.dv};
    for (int i = 0; i < 6; i++)
        if (!(*parts[i] = packed_heads(tape, i < 3 ? qkv : t[0], i % 3, heads)))
            return tg_errcode(tape->ctx);
    tg_tensor *dout = attention_tangent(tape, &h, a.causal, a.scale);
    dout = dout ? tg_permute(tape, dout, 4, (int64_t[]){0, 2, 1, 3}) : NULL;
    *out = dout ? tg_reshape(tape, dout, 3, call->output->shape) : NULL;
    return *out ? TG_OK : tg_errcode(tape->ctx);
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
static const tgi_example packed_inputs[] = {
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 2, 5, 12), {.i64 = 2}, {.b = true}, {.f32 = 0.0f}),
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 1, 4, 9), {.i64 = 3}, {.b = false}, {.f32 = 0.0f}),
};
static const tgi_examples attention_examples = TGI_EXAMPLES(attention_inputs);
static const tgi_examples packed_examples = TGI_EXAMPLES(packed_inputs);

const tg_op_def tgi_attention_defs[] = {
    KERNEL_DEF_JVP(attention, 3, "causal:bool,scale:f32", attention_infer, attention_examples,
                   attention_jvp),
    KERNEL_DEF_JVP(attention_qkv, 1, "heads:i64,causal:bool,scale:f32", packed_infer,
                   packed_examples, attention_qkv_jvp),
};
const int tgi_attention_count = sizeof tgi_attention_defs / sizeof tgi_attention_defs[0];

tg_tensor *tg_attention(tg_tape *tape, tg_tensor *q, tg_tensor *k, tg_tensor *v, bool causal,
                        float scale) {
    tg_tensor *inputs[3] = {q, k, v};
    tg_attr_value attrs[2] = {{.b = causal}, {.f32 = scale}};
    return tgi_call_builtin(tape, TGI_OP_ATTENTION, inputs, 3, attrs);
}

tg_tensor *tg_attention_qkv(tg_tape *tape, tg_tensor *qkv, int64_t heads, bool causal,
                            float scale) {
    tg_attr_value attrs[3] = {{.i64 = heads}, {.b = causal}, {.f32 = scale}};
    return tgi_call_builtin(tape, TGI_OP_ATTENTION_QKV, &qkv, 1, attrs);
}
