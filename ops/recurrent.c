/*
 * ops/recurrent.c — fused recurrent cells: one op per step instead of a dozen.
 *
 * Every cell reads its slab of the input projection xp = x W_ih^T + b_ih ([B, T, G*H], one GEMM
 * over all steps, done by the caller) in place: rows of G*H floats, T*G*H apart, chosen by the
 * `step` attribute. The recurrent projection of all G gates is one GEMM per step, and the gate
 * nonlinearities are applied in the same pass that adds the input slab, so the forward writes
 * each gate value once and the backward turns gate gradients into pre-activation gradients in
 * one pass too. Gate order and equations are PyTorch's:
 *
 *   rnn_cell:    h' = tanh(xp_t + b_hh + h W_hh^T)
 *   lstm_gates:  [i f g o] = [sig sig tanh sig](xp_t + b_hh + h W_hh^T)   (G = 4)
 *   lstm_cell:   c' = f * c + i * g
 *   lstm_hidden: h' = o * tanh(c')
 *   gru_cell:    r, z = sig(xp_{r,z} + b_hh + h W_h{r,z}^T), n = tanh(xp_n + r * (b_hn + h W_hn^T)),
 *                h' = n + z * (h - n)                                        (G = 3)
 *
 * The LSTM is three ops because the tape's nodes have one output each and both c' and h' must
 * be nodes (labelled "<name>.c[t]", "<name>.h[t]" for hooks): the activated gates are the node
 * the other two read, with no slice copies.
 *
 * Backward of lstm_gates rewrites its output gradient in place into the pre-activation gradient
 * (the gates are an internal node: no reader after this op's VJP, its hooks have already run),
 * so no scratch buffer is needed; gru_cell does the same in its saved buffer; rnn_cell, whose
 * output is h[t] itself, takes a scratch buffer from the arena. The LSTM's three ops take fresh
 * gradients (tgi_op.fresh_grads): the first VJP to reach h[t-1], c[t-1] or the gates writes
 * them whole (=; the gates' other blocks zeroed), the later ones add, so the walk no longer
 * zeroes them first (a memset of 6 of every 11 floats of the step's backward); xp, which every
 * step's cell adds its slab to, is zeroed whole by the first (tgi_grad_settle).
 *
 * The GEMMs run on the context's threads through tgi_gemm; the elementwise passes are cut into
 * row ranges (tgi_parallel_for); the LSTM's and the RNN's gates are activated on each piece of
 * their product by the thread that computed it. Rows are independent, and the one sum over rows
 * (the bias gradient) is cut by columns, each column summed in row order, so the numbers do not
 * depend on the thread count.
 *
 * Forward-mode (JVP) rules, for Hessian-vector products and double backward: the tangents of
 * rnn_cell, lstm_gates, lstm_cell and lstm_hidden are fused ops of their own
 * (ops/recurrent_tangent.c: composed from generic ops they cost an LSTM HVP ~4.3 gradient
 * steps, fused ~2.3); gru_cell's is composed from generic ops.
 */
#include "ops/kernels.h"

#include <string.h>

/* The one place that knows how [B, T, G*H] is laid out. */
typedef struct step_slab {
    int64_t width, stride, offset; /* rows of width G*H, stride T*G*H, starting at step*G*H */
} step_slab;

static step_slab slab_of(const tg_op_call *call) {
    const tg_tensor *xp = call->inputs[0];
    step_slab s = {xp->shape[2], xp->shape[1] * xp->shape[2], 0};
    s.offset = call->attrs[0].i64 * s.width;
    return s;
}

/* Shared by every cell: xp [B,T,G*H], h [B,H], W_hh [G*H,H], b_hh [G*H], 0 <= step < T. */
static tg_status check_cell(const tg_op_call *call, int gates) {
    const tg_tensor *xp = call->inputs[0], *h = call->inputs[1], *w = call->inputs[2], *b = call->inputs[3];
    if (xp->ndim != 3 || h->ndim != 2 || w->ndim != 2 || b->ndim != 1)
        return tg_op_fail(call, TG_ERR_SHAPE, "expected xp [B,T,%d*H], h [B,H], weight_hh "
                          "[%d*H,H], bias_hh [%d*H]", gates, gates, gates);
    int64_t batch = h->shape[0], hidden = h->shape[1], width = gates * hidden;
    if (xp->shape[0] != batch || xp->shape[2] != width || w->shape[0] != width ||
        w->shape[1] != hidden || b->shape[0] != width)
        return tg_op_fail(call, TG_ERR_SHAPE, "shapes disagree: batch %lld, hidden %lld, %d gates",
                          (long long)batch, (long long)hidden, gates);
    int64_t step = call->attrs[0].i64;
    if (step < 0 || step >= xp->shape[1])
        return tg_op_fail(call, TG_ERR_SHAPE, "step %lld outside 0..%lld", (long long)step,
                          (long long)xp->shape[1] - 1);
    return TG_OK;
}

/* proj[b, :width] = b_hh + h W_hh^T (with_bias; else h W_hh^T alone), rows ld apart (the
 * linear op's order of additions, so a fused cell gives the same numbers as the composition of
 * linear, add and the activations), then, when the product is cut into pieces, `then` on each
 * piece (tgi_gemm_bias_then) by the thread that computed it; false, `then` not run, when it is
 * not cut. */
static bool recurrent_projection(const tg_op_call *call, float *proj, int64_t ld, bool with_bias,
                                 tgi_gemm_epilogue then, void *arg) {
    const tg_tensor *h = call->inputs[1], *w = call->inputs[2], *b = call->inputs[3];
    int64_t rows = h->shape[0], hidden = h->shape[1], width = w->shape[0];
    return tgi_gemm_bias_then(call->tape->ctx, rows, width, hidden, h->data, hidden, w->data, hidden,
                              with_bias ? b->data : NULL, proj, ld, then, arg);
}

/* The VJP of the recurrent projection, given its output gradient dz with rows ld apart: db +=
 * the column sums of dz (tgi_add_column_sums: each column in row order, whatever the threads),
 * then dh += dz W and dW += dz^T h in one parallel region (one hand-off for both; each cut as
 * tgi_gemm cuts it, so the numbers do not depend on the thread count). The bias as a product
 * 1^T dz in that region instead cost 1% of an LSTM step at one thread: BLAS packs dz for it. */
static tg_status projection_backward(const tg_op_call *call, const float *dz, int64_t ld) {
    tg_ctx *ctx = call->tape->ctx;
    tg_tensor *h = call->inputs[1], *w = call->inputs[2], *b = call->inputs[3];
    int64_t rows = h->shape[0], hidden = h->shape[1], width = w->shape[0];
    tgi_grad_settle(ctx, b);
    if (b->grad) tgi_add_column_sums(ctx, rows, width, dz, ld, b->grad);
    tgi_gemm_args products[2];
    int count = 0;
    /* a fresh gradient (grad_fresh: h's, reached first by this cell) is written, beta = 0 */
    if (h->grad)
        products[count++] = (tgi_gemm_args){false, false, rows, hidden, width, 1.0f, dz, ld, w->data,
                                            hidden, h->grad_fresh ? 0.0f : 1.0f, h->grad, hidden};
    if (w->grad)
        products[count++] = (tgi_gemm_args){true, false, width, hidden, rows, 1.0f, dz, ld, h->data,
                                            hidden, w->grad_fresh ? 0.0f : 1.0f, w->grad, hidden};
    tgi_gemm_batch(ctx, products, count);
    h->grad_fresh = w->grad_fresh = false;
    return TG_OK;
}

/* The elementwise part of a cell runs over row ranges on the context's threads. Rows are
 * independent, so the numbers do not depend on where the cuts fall. */
typedef struct cell_job {
    const tg_op_call *call;
    int gates;
    float *buf;              /* what the kernel writes besides the output: dz, saved values */
} cell_job;

/* A hand-off to another thread costs about a microsecond: each range gets at least this many
 * values, fewer where each value costs a tanh or an expf than where it costs a few flops. */
#define GRAIN_TRANSCENDENTAL 1024
#define GRAIN_ARITHMETIC 2048

static void over_rows(const tg_op_call *call, int64_t width, int64_t grain_values, tgi_range_fn fn,
                      int gates, float *buf) {
    cell_job job = {call, gates, buf};
    int64_t grain = grain_values / width;
    tgi_parallel_for(call->tape->ctx, call->output->shape[0], grain > 1 ? grain : 1, fn, &job);
}

/* ---- rnn_cell and lstm_gates: activated gates = act(xp_t + b_hh + h W_hh^T) ---------------- */

/* Which gate blocks (of width H) are tanh; the others are sigmoid. */
static bool block_is_tanh(int gates, int64_t block) {
    return gates == 1 || block == 2;
}

/* y = act(x + (b + y)) over n columns, on restrict parameters so that it vectorises (8 lanes:
 * the f32 activations) without run-time overlap checks. */
static void activate_tanh(float *restrict y, const float *restrict x, const float *restrict b, int64_t n) {
    for (int64_t j = 0; j < n; j++) y[j] = tgi_tanh_lanes(x[j] + (b[j] + y[j]));
}

static void activate_sigmoid(float *restrict y, const float *restrict x, const float *restrict b,
                             int64_t n) {
    for (int64_t j = 0; j < n; j++) y[j] = tgi_sigmoid(x[j] + (b[j] + y[j]));
}

/* Rows [row_begin, row_end) x columns [col_begin, col_end) of the gates: y = act(xp_t + (b_hh +
 * y)), y holding the recurrent product h W_hh^T on entry; a piece per gate block the columns
 * touch. The bias is added here, not copied into every row before the product (tgi_gemm_bias):
 * the same additions in the same order, one pass fewer over the gates (the copy was 3% of the
 * LSTM's step). */
static void activate_block(void *arg, int64_t row_begin, int64_t row_end, int64_t col_begin,
                           int64_t col_end) {
    const cell_job *job = arg;
    step_slab s = slab_of(job->call);
    int64_t hidden = s.width / job->gates;
    const float *b = job->call->inputs[3]->data;
    for (int64_t r = row_begin; r < row_end; r++)
        for (int64_t c = col_begin; c < col_end;) {
            int64_t k = c / hidden, stop = (k + 1) * hidden < col_end ? (k + 1) * hidden : col_end;
            float *y = job->call->output->data + r * s.width;
            const float *x = job->call->inputs[0]->data + s.offset + r * s.stride;
            if (block_is_tanh(job->gates, k)) activate_tanh(y + c, x + c, b + c, stop - c);
            else activate_sigmoid(y + c, x + c, b + c, stop - c);
            c = stop;
        }
}

static void activate_rows(void *arg, int64_t begin, int64_t end) {
    const cell_job *job = arg;
    activate_block(arg, begin, end, 0, job->call->output->shape[1]);
}

/* The activation runs on each piece of the product as it is done (one hand-off per step, not
 * two), or over row ranges when the product is not cut. */
static tg_status gates_forward(tg_op_call *call, int gates) {
    cell_job job = {call, gates, NULL};
    if (!recurrent_projection(call, call->output->data, call->output->shape[1], false, activate_block, &job))
        over_rows(call, call->output->shape[1], GRAIN_TRANSCENDENTAL, activate_rows, gates, NULL);
    return TG_OK;
}

static void add_to(float *restrict to, const float *restrict from, int64_t n) {
    for (int64_t j = 0; j < n; j++) to[j] += from[j];
}

/* dz *= act'(y) on restrict parameters (in place, so the loops vectorise; a dz that may alias
 * dy would not). */
static void tanh_grad_in_place(float *restrict dz, const float *restrict y, int64_t n) {
    for (int64_t j = 0; j < n; j++) dz[j] *= 1.0f - y[j] * y[j];
}

static void sigmoid_grad_in_place(float *restrict dz, const float *restrict y, int64_t n) {
    for (int64_t j = 0; j < n; j++) dz[j] *= y[j] * (1.0f - y[j]);
}

/* dz *= act'(y) in place (job->buf holds dy on entry), and xp's slab += dz, over rows. */
static void pre_activation_rows(void *arg, int64_t begin, int64_t end) {
    const cell_job *job = arg;
    step_slab s = slab_of(job->call);
    int64_t hidden = s.width / job->gates;
    float *gx = job->call->inputs[0]->grad;
    for (int64_t r = begin; r < end; r++) {
        float *dz = job->buf + r * s.width;
        const float *y = job->call->output->data + r * s.width;
        for (int64_t k = 0; k < job->gates; k++) {
            if (block_is_tanh(job->gates, k)) tanh_grad_in_place(dz + k * hidden, y + k * hidden, hidden);
            else sigmoid_grad_in_place(dz + k * hidden, y + k * hidden, hidden);
        }
        if (gx) add_to(gx + s.offset + r * s.stride, dz, s.width);
    }
}

static tg_status gates_backward(const tg_op_call *call, int gates) {
    step_slab s = slab_of(call);
    /* The LSTM's gates are an internal node: their gradient becomes dL/d(pre-activation) in
     * place. A tanh cell's output is h[t], whose gradient its readers (the study's |dL/dh[t]|)
     * look at after backward: a copy in a scratch buffer becomes dz. */
    float *dz = call->output->grad;
    tgi_arena *arena = &call->tape->arena;
    tgi_arena_mark mark = tgi_arena_mark_get(arena); /* the copy is scratch: given back below */
    /* xp is read by every step, each cell adding its own slab: a fresh one is zeroed whole */
    tgi_grad_settle(call->tape->ctx, call->inputs[0]);
    if (gates == 1) {
        size_t bytes = (size_t)call->output->size * sizeof(float);
        if (!(dz = tgi_arena_alloc(arena, bytes)))
            return tg_op_fail(call, TG_ERR_NOMEM, "out of memory for the pre-activation gradient");
        memcpy(dz, call->output->grad, bytes);
    }
    over_rows(call, s.width, GRAIN_ARITHMETIC, pre_activation_rows, gates, dz);
    tg_status status = projection_backward(call, dz, s.width);
    if (gates == 1) tgi_arena_mark_rewind(arena, mark);
    return status;
}

static tg_status rnn_cell_infer(const tg_op_call *call, tg_shape *out) {
    if (check_cell(call, 1) != TG_OK) return TG_ERR_SHAPE;
    tgi_shape_of(call->inputs[1], out);
    return TG_OK;
}

static tg_status lstm_gates_infer(const tg_op_call *call, tg_shape *out) {
    if (check_cell(call, 4) != TG_OK) return TG_ERR_SHAPE;
    tgi_shape_of(call->inputs[1], out);
    out->dims[1] *= 4;
    return TG_OK;
}

static tg_status rnn_cell_forward(tg_op_call *call) { return gates_forward(call, 1); }
static tg_status rnn_cell_backward(const tg_op_call *call) { return gates_backward(call, 1); }
static tg_status lstm_gates_forward(tg_op_call *call) { return gates_forward(call, 4); }
static tg_status lstm_gates_backward(const tg_op_call *call) { return gates_backward(call, 4); }

/* ---- lstm_cell: c' = f * c + i * g;  lstm_hidden: h' = o * tanh(c') ---------------------- */

/* gates [B, 4H] and a state [B, H]. */
static tg_status lstm_state_infer(const tg_op_call *call, tg_shape *out) {
    const tg_tensor *g = call->inputs[0], *c = call->inputs[1];
    if (g->ndim != 2 || c->ndim != 2 || g->shape[0] != c->shape[0] || g->shape[1] != 4 * c->shape[1])
        return tg_op_fail(call, TG_ERR_SHAPE, "expected gates [B,4H] and a state [B,H]");
    tgi_shape_of(c, out);
    return TG_OK;
}

/* Row r of a state op: its gate blocks i, f, g, o, its state c and output. */
typedef struct state_row {
    const float *i, *f, *g, *o, *c;
    float *out;
    int64_t hidden;
} state_row;

static state_row row_of(const tg_op_call *call, int64_t r) {
    const tg_tensor *gates = call->inputs[0], *c = call->inputs[1];
    int64_t hidden = c->shape[1];
    const float *i = gates->data + r * 4 * hidden;
    return (state_row){i, i + hidden, i + 2 * hidden, i + 3 * hidden, c->data + r * hidden,
                       call->output->data + r * hidden, hidden};
}

/* The loops of the state ops, on restrict parameters so that they vectorise without run-time
 * overlap checks (too many for the compiler when they are written inline). */
static void add_product(float *restrict out, const float *restrict a, const float *restrict b, int64_t n) {
    for (int64_t j = 0; j < n; j++) out[j] += a[j] * b[j];
}

static void set_product(float *restrict out, const float *restrict a, const float *restrict b, int64_t n) {
    for (int64_t j = 0; j < n; j++) out[j] = a[j] * b[j];
}

/* out (+)= a b: written when the gradient is fresh (grad_fresh), added to otherwise */
static void product_into(float *out, const float *a, const float *b, int64_t n, bool fresh) {
    if (fresh) set_product(out, a, b, n);
    else add_product(out, a, b, n);
}

static void cell_update(float *restrict out, const float *restrict f, const float *restrict c,
                        const float *restrict i, const float *restrict g, int64_t n) {
    for (int64_t j = 0; j < n; j++) out[j] = f[j] * c[j] + i[j] * g[j];
}

/* dc += dy o (1 - tanh(c)^2), or = when fresh */
static void add_squash_grad(float *restrict dc, const float *restrict dy, const float *restrict o,
                            const float *restrict squashed, int64_t n, bool fresh) {
    if (fresh)
        for (int64_t j = 0; j < n; j++) dc[j] = dy[j] * o[j] * (1.0f - squashed[j] * squashed[j]);
    else
        for (int64_t j = 0; j < n; j++) dc[j] += dy[j] * o[j] * (1.0f - squashed[j] * squashed[j]);
}

static void cell_rows(void *arg, int64_t begin, int64_t end) {
    const cell_job *job = arg;
    for (int64_t r = begin; r < end; r++) {
        state_row row = row_of(job->call, r);
        cell_update(row.out, row.f, row.c, row.i, row.g, row.hidden);
    }
}

/* di = dc' g, df = dc' c, dg = dc' i, dc = dc' f. Fresh gradients (grad_fresh) are written
 * whole: the state's, and the gates' (their o block, which lstm_hidden's VJP fills, zeroed). */
static void cell_grad_rows(void *arg, int64_t begin, int64_t end) {
    const cell_job *job = arg;
    const tg_tensor *gates = job->call->inputs[0], *c = job->call->inputs[1];
    for (int64_t r = begin; r < end; r++) {
        state_row row = row_of(job->call, r);
        int64_t hidden = row.hidden;
        const float *dy = job->call->output->grad + r * hidden;
        if (gates->grad) {
            float *di = gates->grad + r * 4 * hidden;
            product_into(di, dy, row.g, hidden, gates->grad_fresh);
            product_into(di + hidden, dy, row.c, hidden, gates->grad_fresh);
            product_into(di + 2 * hidden, dy, row.i, hidden, gates->grad_fresh);
            if (gates->grad_fresh) memset(di + 3 * hidden, 0, (size_t)hidden * sizeof(float));
        }
        if (c->grad) product_into(c->grad + r * hidden, dy, row.f, hidden, c->grad_fresh);
    }
}

/* Clears the fresh marks of a state op's inputs once its rows are done. */
static void state_grads_written(const tg_op_call *call) {
    call->inputs[0]->grad_fresh = call->inputs[1]->grad_fresh = false;
}

static tg_status lstm_cell_forward(tg_op_call *call) {
    over_rows(call, call->output->shape[1], GRAIN_ARITHMETIC, cell_rows, 4, NULL);
    return TG_OK;
}

static tg_status lstm_cell_backward(const tg_op_call *call) {
    over_rows(call, call->output->shape[1], GRAIN_ARITHMETIC, cell_grad_rows, 4, NULL);
    state_grads_written(call);
    return TG_OK;
}

/* job->buf: tanh(c'), saved, since the backward needs it and recomputing costs more than it. */
static void hidden_rows(void *arg, int64_t begin, int64_t end) {
    const cell_job *job = arg;
    for (int64_t r = begin; r < end; r++) {
        state_row row = row_of(job->call, r);
        float *restrict squashed = job->buf + r * row.hidden;
        for (int64_t j = 0; j < row.hidden; j++) {
            squashed[j] = tgi_tanh_lanes(row.c[j]);
            row.out[j] = row.o[j] * squashed[j];
        }
    }
}

/* do = dh' tanh(c'), dc' += dh' o (1 - tanh(c')^2) */
static void hidden_grad_rows(void *arg, int64_t begin, int64_t end) {
    const cell_job *job = arg;
    const tg_tensor *gates = job->call->inputs[0], *c = job->call->inputs[1];
    for (int64_t r = begin; r < end; r++) {
        state_row row = row_of(job->call, r);
        int64_t hidden = row.hidden;
        const float *sq = job->buf + r * hidden, *dy = job->call->output->grad + r * hidden;
        if (gates->grad) {
            float *di = gates->grad + r * 4 * hidden;
            product_into(di + 3 * hidden, dy, sq, hidden, gates->grad_fresh);
            /* fresh (this VJP reaches the gates before lstm_cell's): i, f, g zeroed for it */
            if (gates->grad_fresh) memset(di, 0, (size_t)(3 * hidden) * sizeof(float));
        }
        if (c->grad) add_squash_grad(c->grad + r * hidden, dy, row.o, sq, hidden, c->grad_fresh);
    }
}

static tg_status lstm_hidden_forward(tg_op_call *call) {
    float *squashed = tg_op_save_for_backward(call, (size_t)call->output->size * sizeof(float));
    if (!squashed) return TG_ERR_NOMEM;
    over_rows(call, call->output->shape[1], GRAIN_TRANSCENDENTAL, hidden_rows, 4, squashed);
    return TG_OK;
}

static tg_status lstm_hidden_backward(const tg_op_call *call) {
    over_rows(call, call->output->shape[1], GRAIN_ARITHMETIC, hidden_grad_rows, 4, call->saved);
    state_grads_written(call);
    return TG_OK;
}

/* ---- gru_cell ------------------------------------------------------------------------------ */

static tg_status gru_cell_infer(const tg_op_call *call, tg_shape *out) {
    if (check_cell(call, 3) != TG_OK) return TG_ERR_SHAPE;
    tgi_shape_of(call->inputs[1], out);
    return TG_OK;
}

/* One row of the cell. Restrict parameters, not restrict locals (which the compiler does not
 * trust): with seven pointers, the run-time overlap checks it would need instead are more than
 * it makes, and the loop ran scalar, 2.8x the instructions of the same loop vectorised. */
TGI_ALWAYS_INLINE static inline void gru_row(float *restrict r, float *restrict z,
                                             float *restrict n, float *restrict hn,
                                             float *restrict out, const float *restrict x,
                                             const float *restrict hr, int64_t hidden) {
    for (int64_t j = 0; j < hidden; j++) {
        hn[j] = n[j];
        r[j] = tgi_sigmoid(x[j] + r[j]);
        z[j] = tgi_sigmoid(x[hidden + j] + z[j]);
        n[j] = tgi_tanh_lanes(x[2 * hidden + j] + r[j] * hn[j]);
        out[j] = n[j] + z[j] * (hr[j] - n[j]);
    }
}

/* Saved per row (job->buf, rows 4H apart): r, z, n, and W_hn h + b_hn, which dr needs. On
 * entry the first 3H hold the recurrent projection. */
static void gru_rows(void *arg, int64_t begin, int64_t end) {
    const cell_job *job = arg;
    step_slab s = slab_of(job->call);
    const tg_tensor *h = job->call->inputs[1];
    int64_t hidden = h->shape[1], ld = 4 * hidden;
    for (int64_t row = begin; row < end; row++) {
        float *r = job->buf + row * ld;
        gru_row(r, r + hidden, r + 2 * hidden, r + 3 * hidden,
                job->call->output->data + row * hidden,
                job->call->inputs[0]->data + s.offset + row * s.stride, h->data + row * hidden,
                hidden);
    }
}

/* One row. The saved r, z, n columns become the recurrent projection's gradient in place
 * [dr_pre, dz_pre, dn_pre * r]; the input slab gets [dr_pre, dz_pre, dn_pre] added. Products are
 * grouped as the unfused ops group them (mul's VJP, then sigmoid's y (1 - y)), so the numbers
 * are those of the composition. Restrict parameters (r, z, n, hn are disjoint blocks of a saved
 * row), so it vectorises without run-time overlap checks. Inlined with constant has_dh/has_gx:
 * tested inside the loop, the compiler if-converts them into masked loads and stores, which
 * cost ~25% of the GRU's backward on Zen. */
TGI_ALWAYS_INLINE static inline void gru_row_grad(
    float *restrict r, float *restrict z, float *restrict n, const float *restrict hn,
    const float *restrict dy, const float *restrict h, float *restrict dh, float *restrict gx,
    int64_t hidden, bool has_dh, bool has_gx) {
    for (int64_t j = 0; j < hidden; j++) {
        float dn_pre = (dy[j] - dy[j] * z[j]) * (1.0f - n[j] * n[j]);
        float dz_pre = (dy[j] * (h[j] - n[j])) * (z[j] * (1.0f - z[j]));
        float dr_pre = (dn_pre * hn[j]) * (r[j] * (1.0f - r[j]));
        if (has_dh) dh[j] += dy[j] * z[j];
        if (has_gx) { /* += : xp may have other readers (a JVP rule's slice of it does) */
            gx[j] += dr_pre;
            gx[hidden + j] += dz_pre;
            gx[2 * hidden + j] += dn_pre;
        }
        n[j] = dn_pre * r[j];
        z[j] = dz_pre;
        r[j] = dr_pre;
    }
}

static void gru_grad_rows(void *arg, int64_t begin, int64_t end) {
    const cell_job *job = arg;
    step_slab s = slab_of(job->call);
    const tg_tensor *xp = job->call->inputs[0], *h = job->call->inputs[1];
    int64_t hidden = h->shape[1], ld = 4 * hidden;
    bool has_dh = h->grad != NULL, has_gx = xp->grad != NULL;
    for (int64_t row = begin; row < end; row++) {
        float *r = job->buf + row * ld;
        const float *dy = job->call->output->grad + row * hidden, *hr = h->data + row * hidden;
        float *dh = has_dh ? h->grad + row * hidden : NULL;
        float *gx = has_gx ? xp->grad + s.offset + row * s.stride : NULL;
        float *z = r + hidden, *n = r + 2 * hidden, *hn = r + 3 * hidden;
        if (has_dh && has_gx) /* every step but the first, whose h (the zero state) needs none */
            gru_row_grad(r, z, n, hn, dy, hr, dh, gx, hidden, true, true);
        else
            gru_row_grad(r, z, n, hn, dy, hr, dh, gx, hidden, has_dh, has_gx);
    }
}

static tg_status gru_cell_forward(tg_op_call *call) {
    int64_t hidden = call->inputs[1]->shape[1];
    float *saved = tg_op_save_for_backward(call, (size_t)call->output->size * 4 * sizeof(float));
    if (!saved) return TG_ERR_NOMEM;
    /* r, z and n of a row come from different pieces of the product (cut along its columns):
     * the row pass waits for all of them */
    recurrent_projection(call, saved, 4 * hidden, true, NULL, NULL);
    over_rows(call, 4 * hidden, GRAIN_TRANSCENDENTAL, gru_rows, 3, saved);
    return TG_OK;
}

static tg_status gru_cell_backward(const tg_op_call *call) {
    int64_t hidden = call->inputs[1]->shape[1];
    over_rows(call, 4 * hidden, GRAIN_ARITHMETIC, gru_grad_rows, 3, call->saved);
    return projection_backward(call, call->saved, 4 * hidden);
}

/* ---- forward-mode rules --------------------------------------------------------------------- */

/* Each rule builds the output's tangent from ops on the call's tape (so that a backward pass
 * through the tangent gives second derivatives, and a replayed step recomputes it) out of the
 * call's inputs, its output and the inputs' tangents (NULL: zero). An op given a NULL input
 * (an earlier failure) returns NULL, the first message staying on the context: a chain of ops
 * is checked once, at its end. */

/* dh W^T + h dW^T + db, the tangent of the recurrent projection [B, G*H] (the bias's tangent
 * riding on the first product, as in linear's rule); NULL when none of them moves. */
static tg_status projection_tangent(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    tg_tape *tape = call->tape;
    tg_tensor *h = call->inputs[1], *w = call->inputs[2], *b = call->inputs[3];
    tg_tensor *sum = NULL, *bias = t[3];
    for (int k = 1; k <= 2; k++) {
        if (!t[k]) continue;
        tg_tensor *b_tangent = bias ? bias : tg_tape_zeros(tape, b->ndim, b->shape);
        tg_tensor *term = tg_linear(tape, k == 1 ? t[1] : h, k == 1 ? w : t[2], b_tangent);
        if (!term || !(sum = tgi_tangent_add(tape, sum, term))) return tg_errcode(tape->ctx);
        bias = NULL;
    }
    if (bias && !(sum = tgi_tangent_expand(tape, bias, call->output))) return tg_errcode(tape->ctx);
    *out = sum;
    return TG_OK;
}

/* rnn_cell and lstm_gates: act'(z) (dxp_t + db + dh W^T + h dW^T), one fused op
 * (ops/recurrent_tangent.c) that takes the activations' slopes from the output y itself. */
static tg_status gates_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    return tgi_gates_tangent(call->tape, call->output, t[0], call->inputs[1], t[1], call->inputs[2],
                             t[2], t[3], call->attrs[0].i64, out);
}

/* lstm_cell: d(f c + i g) = df c + f dc + di g + i dg, one fused op */
static tg_status lstm_cell_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    return tgi_lstm_cell_tangent(call->tape, call->inputs[0], call->inputs[1], t[0], t[1], out);
}

/* lstm_hidden: d(o tanh(c)) = do tanh(c) + o tanh'(c) dc, one fused op */
static tg_status lstm_hidden_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    return tgi_lstm_hidden_tangent(call->tape, call->inputs[0], call->inputs[1], t[0], t[1], out);
}

/* gru_cell: r, z, n and W_hn h + b_hn are not nodes of the step, so they are recomputed by ops
 * from the call's inputs (one more GEMM), for the tangent to depend on the inputs through them:
 *   a = xp_t + h W^T + b,  r, z = sig(a_r, a_z),  p_n = (h W^T + b)_n,  n = tanh(a_n' ),
 *   a_n' = xp_n + r p_n,   h' = n + z (h - n)
 *   dh' = dn + dz (h - n) + z (dh - dn),  dn = tanh'(a_n') (dxp_n + dr p_n + r dp_n),
 *   dr, dz = sig'(a_r, a_z) (dxp + dp)_{r,z}, dp = dh W^T + h dW^T + db. */
static tg_status gru_cell_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    tg_tape *tape = call->tape;
    tg_tensor *xp = call->inputs[0], *h = call->inputs[1], *w = call->inputs[2], *b = call->inputs[3];
    int64_t batch = h->shape[0], hidden = h->shape[1], width = 3 * hidden, step = call->attrs[0].i64;
    /* the slab's tangent and the projection's apart: r multiplies only the projection's n */
    tg_tensor *slab_t = NULL, *proj_t = NULL;
    tg_status status = projection_tangent(call, t, &proj_t);
    if (status != TG_OK) return status;
    if (t[0] && !(slab_t = tg_reshape(tape, tg_slice(tape, t[0], 1, step, step + 1), TG_SHAPE(batch, width))))
        return tg_errcode(tape->ctx);
    tg_tensor *slab = tg_reshape(tape, tg_slice(tape, xp, 1, step, step + 1), TG_SHAPE(batch, width));
    tg_tensor *proj = tg_linear(tape, h, w, b);
    tg_tensor *a_rz = tg_slice(tape, tg_add(tape, slab, proj), 1, 0, 2 * hidden);
    tg_tensor *rz = tg_sigmoid(tape, a_rz);
    tg_tensor *r = tg_slice(tape, rz, 1, 0, hidden), *z = tg_slice(tape, rz, 1, hidden, 2 * hidden);
    tg_tensor *p_n = tg_slice(tape, proj, 1, 2 * hidden, width);
    tg_tensor *a_n = tg_add(tape, tg_slice(tape, slab, 1, 2 * hidden, width), tg_mul(tape, r, p_n));
    tg_tensor *n = tg_tanh(tape, a_n);
    if (!n) return tg_errcode(tape->ctx);
    /* the tangent of [a_r a_z a_n'] before the activations, piece by piece */
    tg_tensor *lin_t = tgi_tangent_add(tape, slab_t, proj_t); /* [B, 3H] */
    if (!lin_t && (slab_t || proj_t)) return tg_errcode(tape->ctx);
    tg_tensor *sum = NULL, *dn_pre = NULL, *dr = NULL, *dz = NULL;
    if (lin_t) {
        tg_tensor *drz = tgi_derivative_times(tape, TGI_OP_SIGMOID, 1, a_rz, tg_slice(tape, lin_t, 1, 0, 2 * hidden), NULL);
        dr = tg_slice(tape, drz, 1, 0, hidden);
        dz = tg_slice(tape, drz, 1, hidden, 2 * hidden);
        dn_pre = tg_mul(tape, dr, p_n);
        if (slab_t) dn_pre = tg_add(tape, tg_slice(tape, slab_t, 1, 2 * hidden, width), dn_pre);
        if (proj_t) dn_pre = tg_add(tape, dn_pre, tg_mul(tape, r, tg_slice(tape, proj_t, 1, 2 * hidden, width)));
        tg_tensor *dn = tgi_derivative_times(tape, TGI_OP_TANH, 1, a_n, dn_pre, NULL);
        /* dn + dz (h - n) - z dn, then + z dh */
        sum = tg_add(tape, tg_sub(tape, dn, tg_mul(tape, z, dn)), tg_mul(tape, dz, tg_sub(tape, h, n)));
        if (!sum) return tg_errcode(tape->ctx);
    }
    if (t[1]) {
        tg_tensor *term = tg_mul(tape, z, t[1]);
        if (!term || !(sum = tgi_tangent_add(tape, sum, term))) return tg_errcode(tape->ctx);
    }
    *out = sum;
    return TG_OK;
}

/* ---- registry entries ---------------------------------------------------------------------- */

/* B = 2, T = 3, H = 2 (so every gate block has two columns), at step 1 of 0..2. */
#define CELL_EXAMPLE(G)                                                                       \
    {.n_inputs = 4,                                                                           \
     .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 2, 3, (G) * 2), TGI_INPUT(TGI_DOMAIN_ANY, 2, 2),   \
                TGI_INPUT(TGI_DOMAIN_ANY, (G) * 2, 2), TGI_INPUT(TGI_DOMAIN_ANY, (G) * 2)},   \
     .attrs = {{.i64 = 1}}}
#define STATE_EXAMPLE                                                                         \
    {.n_inputs = 2, .inputs = {TGI_INPUT(TGI_DOMAIN_UNIT, 2, 8), TGI_INPUT(TGI_DOMAIN_ANY, 2, 2)}}

static const tgi_example rnn_cell_inputs[] = {CELL_EXAMPLE(1)};
static const tgi_example lstm_gates_inputs[] = {CELL_EXAMPLE(4)};
static const tgi_example gru_cell_inputs[] = {CELL_EXAMPLE(3)};
static const tgi_example state_inputs[] = {STATE_EXAMPLE};
static const tgi_examples rnn_cell_examples = TGI_EXAMPLES(rnn_cell_inputs);
static const tgi_examples lstm_gates_examples = TGI_EXAMPLES(lstm_gates_inputs);
static const tgi_examples gru_cell_examples = TGI_EXAMPLES(gru_cell_inputs);
static const tgi_examples state_examples = TGI_EXAMPLES(state_inputs);

const tg_op_def tgi_recurrent_defs[] = {
    KERNEL_DEF_JVP(rnn_cell, 4, "step:i64", rnn_cell_infer, rnn_cell_examples, gates_jvp),
    KERNEL_DEF_JVP(lstm_gates, 4, "step:i64", lstm_gates_infer, lstm_gates_examples, gates_jvp),
    KERNEL_DEF_JVP(lstm_cell, 2, "", lstm_state_infer, state_examples, lstm_cell_jvp),
    KERNEL_DEF_JVP(lstm_hidden, 2, "", lstm_state_infer, state_examples, lstm_hidden_jvp),
    KERNEL_DEF_JVP(gru_cell, 4, "step:i64", gru_cell_infer, gru_cell_examples, gru_cell_jvp),
};
const int tgi_recurrent_count = sizeof tgi_recurrent_defs / sizeof tgi_recurrent_defs[0];

static tg_tensor *cell(tg_tape *tape, int id, tg_tensor *xp, tg_tensor *h, tg_tensor *w,
                       tg_tensor *b, int64_t step) {
    tg_tensor *inputs[4] = {xp, h, w, b};
    tg_attr_value attrs[1] = {{.i64 = step}};
    return tgi_call_builtin(tape, id, inputs, 4, attrs);
}

tg_tensor *tgi_rnn_cell(tg_tape *tape, tg_tensor *xp, tg_tensor *h, tg_tensor *w, tg_tensor *b, int64_t step) {
    return cell(tape, TGI_OP_RNN_CELL, xp, h, w, b, step);
}

tg_tensor *tgi_lstm_gates(tg_tape *tape, tg_tensor *xp, tg_tensor *h, tg_tensor *w, tg_tensor *b, int64_t step) {
    return cell(tape, TGI_OP_LSTM_GATES, xp, h, w, b, step);
}

tg_tensor *tgi_gru_cell(tg_tape *tape, tg_tensor *xp, tg_tensor *h, tg_tensor *w, tg_tensor *b, int64_t step) {
    return cell(tape, TGI_OP_GRU_CELL, xp, h, w, b, step);
}

tg_tensor *tgi_lstm_cell(tg_tape *tape, tg_tensor *gates, tg_tensor *c) {
    return tgi_binary(tape, TGI_OP_LSTM_CELL, gates, c);
}

tg_tensor *tgi_lstm_hidden(tg_tape *tape, tg_tensor *gates, tg_tensor *c) {
    return tgi_binary(tape, TGI_OP_LSTM_HIDDEN, gates, c);
}
