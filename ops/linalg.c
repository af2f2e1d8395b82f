/*
 * ops/linalg.c — matmul, the fused linear layer, and transpose.
 */
#include "ops/kernels.h"

/* ---- matmul -------------------------------------------------------------------------------- */

/* The products of one matmul [..., M, K] x [..., K, N]. The batch dims (up to 2, padded with 1
 * on the left) broadcast; a_step[d] and b_step[d] say how many matrices A and B move by per
 * step of batch dim d (0 along a stretched dim). A 2-D B serves every row of A: then A's rows
 * are flattened into one product (one large GEMM instead of many small ones). */
typedef struct matmul_plan {
    int64_t m, k, n;
    int64_t count;                 /* products = output matrices */
    int64_t batch[2];
    int64_t a_step[2], b_step[2];
    int64_t a_count, b_count;      /* matrices in A and in B */
} matmul_plan;

/* Batch dim `slot` (0 or 1) of t, its leading dims aligned on the right. */
static int64_t batch_dim(const tg_tensor *t, int slot) {
    int d = slot - (2 - (t->ndim - 2));
    return d < 0 ? 1 : t->shape[d];
}

static matmul_plan matmul_plan_of(const tg_tensor *a, const tg_tensor *b) {
    matmul_plan p = {.k = a->shape[a->ndim - 1], .n = b->shape[b->ndim - 1],
                     .batch = {1, 1}, .a_count = 1, .b_count = 1};
    if (b->ndim == 2) {
        p.m = a->size / p.k;
        p.count = 1;
        return p;
    }
    p.m = a->shape[a->ndim - 2];
    for (int d = 1; d >= 0; d--) {
        int64_t da = batch_dim(a, d), db = batch_dim(b, d);
        p.batch[d] = da > db ? da : db;
        p.a_step[d] = da == 1 ? 0 : p.a_count;
        p.b_step[d] = db == 1 ? 0 : p.b_count;
        p.a_count *= da;
        p.b_count *= db;
    }
    p.count = p.batch[0] * p.batch[1];
    return p;
}

/* The matrix of an operand that product i reads. */
static int64_t operand_matrix(const matmul_plan *p, const int64_t *step, int64_t i) {
    return i / p->batch[1] * step[0] + i % p->batch[1] * step[1];
}

static tg_status matmul_infer(const tg_op_call *call, tg_shape *out) {
    const tg_tensor *a = call->inputs[0], *b = call->inputs[1];
    if (a->ndim < 2 || b->ndim < 2)
        return tg_op_fail(call, TG_ERR_SHAPE, "expected [M,K] x [K,N], either side with up to 2 "
                          "leading batch dims that broadcast ([B,H,M,K] x [B|1,H|1,K,N])");
    int64_t k_a = a->shape[a->ndim - 1], k_b = b->shape[b->ndim - 2];
    if (k_a != k_b)
        return tg_op_fail(call, TG_ERR_SHAPE, "inner dims %lld != %lld", (long long)k_a,
                          (long long)k_b);
    int ndim = a->ndim > b->ndim ? a->ndim : b->ndim;
    *out = (tg_shape){ndim, {1, 1, 1, 1}};
    for (int d = 0; d < 2; d++) {
        int64_t da = batch_dim(a, d), db = batch_dim(b, d);
        if (da != db && da != 1 && db != 1)
            return tg_op_fail(call, TG_ERR_SHAPE, "batch sizes %lld != %lld do not broadcast",
                              (long long)da, (long long)db);
        if (d >= 4 - ndim) out->dims[d - (4 - ndim)] = da > db ? da : db;
    }
    out->dims[ndim - 2] = a->shape[a->ndim - 2];
    out->dims[ndim - 1] = b->shape[b->ndim - 1];
    return TG_OK;
}

/* One matmul's work for tgi_parallel_for: its products (forward), or A's or B's matrices. */
typedef struct matmul_work {
    const tg_op_call *call;
    matmul_plan plan;
} matmul_work;

static void matmul_forward_range(void *arg, int64_t begin, int64_t end) {
    const matmul_work *w = arg;
    const matmul_plan *p = &w->plan;
    const tg_tensor *a = w->call->inputs[0], *b = w->call->inputs[1];
    for (int64_t i = begin; i < end; i++)
        tgi_gemm(w->call->tape->ctx, false, false, p->m, p->n, p->k, 1.0f,
                 a->data + operand_matrix(p, p->a_step, i) * p->m * p->k, p->k,
                 b->data + operand_matrix(p, p->b_step, i) * p->k * p->n, p->n, 0.0f,
                 w->call->output->data + i * p->m * p->n, p->n);
}

/* dA_j = the sum of dY_i B_i^T over the products i that read A's matrix j, in the order of i:
 * each of A's matrices is summed whole by one thread, so a broadcast A gets the same numbers on
 * any thread count. */
static void matmul_grad_a_range(void *arg, int64_t begin, int64_t end) {
    const matmul_work *w = arg;
    const matmul_plan *p = &w->plan;
    const tg_tensor *a = w->call->inputs[0], *b = w->call->inputs[1], *y = w->call->output;
    for (int64_t j = begin; j < end; j++) {
        float beta = a->grad_fresh ? 0.0f : 1.0f; /* a fresh gradient: the first product writes */
        for (int64_t i = 0; i < p->count; i++)
            if (operand_matrix(p, p->a_step, i) == j) {
                tgi_gemm(w->call->tape->ctx, false, true, p->m, p->k, p->n, 1.0f,
                         y->grad + i * p->m * p->n, p->n,
                         b->data + operand_matrix(p, p->b_step, i) * p->k * p->n, p->n, beta,
                         a->grad + j * p->m * p->k, p->k);
                beta = 1.0f;
            }
    }
}

/* dB_j = the sum of A_i^T dY_i over the products i that read B's matrix j, in the order of i. */
static void matmul_grad_b_range(void *arg, int64_t begin, int64_t end) {
    const matmul_work *w = arg;
    const matmul_plan *p = &w->plan;
    const tg_tensor *a = w->call->inputs[0], *b = w->call->inputs[1], *y = w->call->output;
    for (int64_t j = begin; j < end; j++) {
        float beta = b->grad_fresh ? 0.0f : 1.0f;
        for (int64_t i = 0; i < p->count; i++)
            if (operand_matrix(p, p->b_step, i) == j) {
                tgi_gemm(w->call->tape->ctx, true, false, p->k, p->n, p->m, 1.0f,
                         a->data + operand_matrix(p, p->a_step, i) * p->m * p->k, p->k,
                         y->grad + i * p->m * p->n, p->n, beta, b->grad + j * p->k * p->n, p->n);
                beta = 1.0f;
            }
    }
}

/* With at least a product per thread, the products go to the threads (each GEMM then runs on
 * its thread alone); fewer, larger products are each cut over the threads by tgi_gemm. */
static void run_products(matmul_work *work, int64_t items, tgi_range_fn fn) {
    tg_ctx *ctx = work->call->tape->ctx;
    if (items > 1 && items >= ctx->threads) tgi_parallel_for(ctx, items, 1, fn, work);
    else fn(work, 0, items);
}

static tg_status matmul_forward(tg_op_call *call) {
    matmul_work work = {call, matmul_plan_of(call->inputs[0], call->inputs[1])};
    run_products(&work, work.plan.count, matmul_forward_range);
    return TG_OK;
}

/* A fresh input gradient (grad_fresh, tgi_op.fresh_grads) is written by its first product with
 * beta = 0, not zeroed and then added to: every one of A's and B's matrices is read by at least
 * one product, so every element is written. */
static tg_status matmul_backward(const tg_op_call *call) {
    tg_tensor *a = call->inputs[0], *b = call->inputs[1];
    matmul_work work = {call, matmul_plan_of(a, b)};
    if (a->grad) run_products(&work, work.plan.a_count, matmul_grad_a_range);
    if (b->grad) run_products(&work, work.plan.b_count, matmul_grad_b_range);
    a->grad_fresh = b->grad_fresh = false;
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

/* dx = dY W, dW = dY^T x, db = column sums of dY. A fresh gradient (grad_fresh: an activation's,
 * reached first by this op) is written by its product with beta = 0, not zeroed beforehand and
 * then added to; a fresh bias gradient is zeroed here (out floats) before the sums. */
static tg_status linear_backward(const tg_op_call *call) {
    tg_tensor *x = call->inputs[0], *w = call->inputs[1], *b = call->inputs[2];
    int64_t in = w->shape[1], out = w->shape[0], rows = x->size / in;
    const float *gy = call->output->grad;
    tg_ctx *ctx = call->tape->ctx;
    if (x->grad)
        tgi_gemm(ctx, false, false, rows, in, out, 1.0f, gy, out, w->data, in, x->grad_fresh ? 0.0f : 1.0f,
                 x->grad, in);
    if (w->grad)
        tgi_gemm(ctx, true, false, out, in, rows, 1.0f, gy, out, x->data, in, w->grad_fresh ? 0.0f : 1.0f,
                 w->grad, in);
    x->grad_fresh = w->grad_fresh = false;
    tgi_grad_settle(ctx, b);
    if (b->grad) tgi_add_column_sums(ctx, rows, out, gy, out, b->grad);
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

/* A transpose is the permutation that swaps two dims. */
static void transpose_move(const tg_op_call *call, bool forward) {
    int d0 = 0, d1 = 0, order[TG_MAX_DIMS] = {0, 1, 2, 3};
    transpose_axes(call, &d0, &d1);
    order[d0] = d1;
    order[d1] = d0;
    tgi_permute_move(call->inputs[0], call->output, order, forward);
}

static tg_status transpose_forward(tg_op_call *call) {
    transpose_move(call, true);
    return TG_OK;
}

static tg_status transpose_backward(const tg_op_call *call) {
    if (call->inputs[0]->grad) transpose_move(call, false);
    return TG_OK;
}

/* ---- registry entries ---------------------------------------------------------------------- */

static const tgi_example matmul_inputs[] = {
    {.n_inputs = 2, .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 3, 4), TGI_INPUT(TGI_DOMAIN_ANY, 4, 5)}},
    {.n_inputs = 2,
     .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 2, 3, 4), TGI_INPUT(TGI_DOMAIN_ANY, 2, 4, 5)}},
    {.n_inputs = 2, .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 2, 3, 4), TGI_INPUT(TGI_DOMAIN_ANY, 4, 2)}},
    /* attention's scores: [B,H,T,D] x [B,H,D,T] */
    {.n_inputs = 2,
     .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 2, 2, 3, 2), TGI_INPUT(TGI_DOMAIN_ANY, 2, 2, 2, 3)}},
    /* broadcast batch dims on both sides: [2,1,M,K] x [3,K,N] -> [2,3,M,N] */
    {.n_inputs = 2,
     .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 2, 1, 3, 2), TGI_INPUT(TGI_DOMAIN_ANY, 3, 2, 4)}},
    /* a 2-D A shared by a batch of B */
    {.n_inputs = 2, .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 3, 4), TGI_INPUT(TGI_DOMAIN_ANY, 2, 4, 2)}},
    /* a 4-D A over a 2-D B: its rows in one product */
    {.n_inputs = 2, .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 2, 2, 2, 3), TGI_INPUT(TGI_DOMAIN_ANY, 3, 2)}},
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

/* ---- forward-mode rules --------------------------------------------------------------------- */

/* d(A B) = dA B + A dB */
static tg_status matmul_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    tg_tape *tape = call->tape;
    tg_tensor *sum = NULL;
    if (t[0] && !(sum = tg_matmul(tape, t[0], call->inputs[1]))) return tg_errcode(tape->ctx);
    if (t[1]) {
        tg_tensor *term = tg_matmul(tape, call->inputs[0], t[1]);
        if (!term || !(sum = tgi_tangent_add(tape, sum, term))) return tg_errcode(tape->ctx);
    }
    *out = sum;
    return TG_OK;
}

/* d(x W^T + b) = dx W^T + x dW^T + db: the bias's tangent rides on the first product made */
static tg_status linear_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    tg_tape *tape = call->tape;
    tg_tensor *x = call->inputs[0], *w = call->inputs[1], *b = call->inputs[2];
    tg_tensor *bias = t[2], *sum = NULL;
    for (int k = 0; k < 2; k++) {
        if (!t[k]) continue;
        tg_tensor *b_tangent = bias ? bias : tg_tape_zeros(tape, b->ndim, b->shape);
        tg_tensor *term = b_tangent ? tg_linear(tape, k == 0 ? t[0] : x, k == 0 ? w : t[1], b_tangent)
                                    : NULL;
        if (!term || !(sum = tgi_tangent_add(tape, sum, term))) return tg_errcode(tape->ctx);
        bias = NULL;
    }
    if (!sum) sum = tgi_tangent_expand(tape, bias, call->output);
    *out = sum;
    return sum ? TG_OK : tg_errcode(tape->ctx);
}

const tg_op_def tgi_linalg_defs[] = {
    KERNEL_DEF_JVP(matmul, 2, "", matmul_infer, matmul_examples, matmul_jvp),
    KERNEL_DEF_JVP(linear, 3, "", linear_infer, linear_examples, linear_jvp),
    KERNEL_DEF_JVP(transpose, 1, "dim0:i64,dim1:i64", transpose_infer, transpose_examples, tgi_jvp_linear),
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
