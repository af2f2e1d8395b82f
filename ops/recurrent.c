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
 * so no scratch buffer is needed; gru_cell does the same in its saved buffer.
 */
#include "ops/kernels.h"

#include <string.h>

/* The one place that knows how [B, T, G*H] is laid out. */
typedef struct step_slab {
    int64_t rows, width, stride, offset; /* B rows of width G*H, stride T*G*H, at step*G*H */
} step_slab;

static step_slab slab_of(const tg_op_call *call) {
    const tg_tensor *xp = call->inputs[0];
    step_slab s = {xp->shape[0], xp->shape[2], xp->shape[1] * xp->shape[2], 0};
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

/* proj[b, :width] = b_hh + h W_hh^T, rows ld apart (the linear op's order of additions, so a
 * fused cell gives the same numbers as the composition of linear, add and the activations). */
static void recurrent_projection(const tg_op_call *call, float *proj, int64_t ld) {
    const tg_tensor *h = call->inputs[1], *w = call->inputs[2], *b = call->inputs[3];
    int64_t rows = h->shape[0], hidden = h->shape[1], width = w->shape[0];
    for (int64_t r = 0; r < rows; r++) memcpy(proj + r * ld, b->data, (size_t)width * sizeof(float));
    tgi_gemm(call->tape->ctx, false, true, rows, width, hidden, 1.0f, h->data, hidden, w->data,
             hidden, 1.0f, proj, ld);
}

/* xp's gradient at this step, columns first..first+count of the slab, += src (rows ld apart). */
static void slab_backward(const tg_op_call *call, const float *src, int64_t ld, int64_t first,
                          int64_t count) {
    float *grad = call->inputs[0]->grad;
    if (!grad) return;
    step_slab s = slab_of(call);
    for (int64_t r = 0; r < s.rows; r++) {
        float *restrict gx = grad + s.offset + r * s.stride + first;
        const float *restrict from = src + r * ld;
        for (int64_t j = 0; j < count; j++) gx[j] += from[j];
    }
}

/* The VJP of recurrent_projection, given its output gradient dz with rows ld apart. */
static void projection_backward(const tg_op_call *call, const float *dz, int64_t ld) {
    tg_ctx *ctx = call->tape->ctx;
    const tg_tensor *h = call->inputs[1], *w = call->inputs[2], *b = call->inputs[3];
    int64_t rows = h->shape[0], hidden = h->shape[1], width = w->shape[0];
    if (b->grad)
        for (int64_t r = 0; r < rows; r++) {
            float *restrict gb = b->grad;
            const float *restrict src = dz + r * ld;
            for (int64_t j = 0; j < width; j++) gb[j] += src[j];
        }
    if (h->grad) tgi_gemm(ctx, false, false, rows, hidden, width, 1.0f, dz, ld, w->data, hidden, 1.0f, h->grad, hidden);
    if (w->grad) tgi_gemm(ctx, true, false, width, hidden, rows, 1.0f, dz, ld, h->data, hidden, 1.0f, w->grad, hidden);
}

/* ---- rnn_cell and lstm_gates: activated gates = act(xp_t + b_hh + h W_hh^T) ---------------- */

/* Which gate blocks (of width H) are tanh; the others are sigmoid. */
static bool block_is_tanh(int gates, int64_t block) {
    return gates == 1 || block == 2;
}

static tg_status gates_forward(tg_op_call *call, int gates) {
    step_slab s = slab_of(call);
    int64_t hidden = s.width / gates;
    float *y = call->output->data;
    recurrent_projection(call, y, s.width);
    for (int64_t r = 0; r < s.rows; r++)
        for (int64_t k = 0; k < gates; k++) {
            float *restrict yk = y + r * s.width + k * hidden;
            const float *restrict xk = call->inputs[0]->data + s.offset + r * s.stride + k * hidden;
            if (block_is_tanh(gates, k))
                for (int64_t j = 0; j < hidden; j++) yk[j] = tanhf(xk[j] + yk[j]);
            else
                for (int64_t j = 0; j < hidden; j++) yk[j] = tgi_sigmoid(xk[j] + yk[j]);
        }
    return TG_OK;
}

static tg_status gates_backward(const tg_op_call *call, int gates) {
    step_slab s = slab_of(call);
    int64_t hidden = s.width / gates, n = s.rows * s.width;
    const float *y = call->output->data, *dy = call->output->grad;
    /* The LSTM's gates are an internal node: their gradient becomes dL/d(pre-activation) in
     * place. A tanh cell's output is h[t], whose gradient its readers (the study's |dL/dh[t]|)
     * look at after backward: it gets a scratch buffer. (So dz may alias dy: no restrict.) */
    float *dz = call->output->grad;
    if (gates == 1 && !(dz = tgi_arena_alloc(&call->tape->arena, (size_t)n * sizeof(float))))
        return tg_op_fail(call, TG_ERR_NOMEM, "out of memory for the pre-activation gradient");
    for (int64_t i = 0; i < n; i += hidden) { /* one gate block of one row at a time */
        if (block_is_tanh(gates, (i / hidden) % gates))
            for (int64_t j = i; j < i + hidden; j++) dz[j] = dy[j] * (1.0f - y[j] * y[j]);
        else
            for (int64_t j = i; j < i + hidden; j++) dz[j] = dy[j] * (y[j] * (1.0f - y[j]));
    }
    slab_backward(call, dz, s.width, 0, s.width);
    projection_backward(call, dz, s.width);
    return TG_OK;
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

static tg_status lstm_cell_forward(tg_op_call *call) {
    const tg_tensor *gates = call->inputs[0], *c = call->inputs[1];
    int64_t rows = c->shape[0], hidden = c->shape[1];
    for (int64_t r = 0; r < rows; r++) {
        const float *restrict i = gates->data + r * 4 * hidden, *restrict f = i + hidden,
                              *restrict g = i + 2 * hidden, *restrict cr = c->data + r * hidden;
        float *restrict out = call->output->data + r * hidden;
        for (int64_t j = 0; j < hidden; j++) out[j] = f[j] * cr[j] + i[j] * g[j];
    }
    return TG_OK;
}

/* di = dc' g, df = dc' c, dg = dc' i, dc = dc' f: the i, f, g blocks are written whole. */
static tg_status lstm_cell_backward(const tg_op_call *call) {
    const tg_tensor *gates = call->inputs[0], *c = call->inputs[1];
    int64_t rows = c->shape[0], hidden = c->shape[1];
    for (int64_t r = 0; r < rows; r++) {
        const float *restrict i = gates->data + r * 4 * hidden, *restrict f = i + hidden,
                              *restrict g = i + 2 * hidden, *restrict cr = c->data + r * hidden,
                              *restrict dy = call->output->grad + r * hidden;
        if (gates->grad) {
            float *restrict di = gates->grad + r * 4 * hidden, *restrict df = di + hidden,
                            *restrict dg = di + 2 * hidden;
            for (int64_t j = 0; j < hidden; j++) {
                di[j] += dy[j] * g[j];
                df[j] += dy[j] * cr[j];
                dg[j] += dy[j] * i[j];
            }
        }
        if (c->grad) {
            float *restrict dc = c->grad + r * hidden;
            for (int64_t j = 0; j < hidden; j++) dc[j] += dy[j] * f[j];
        }
    }
    return TG_OK;
}

/* tanh(c') is saved: the backward needs it, and recomputing it costs more than its memory. */
static tg_status lstm_hidden_forward(tg_op_call *call) {
    const tg_tensor *gates = call->inputs[0], *c = call->inputs[1];
    int64_t rows = c->shape[0], hidden = c->shape[1];
    float *squashed = tg_op_save(call, (size_t)c->size * sizeof(float));
    if (!squashed) return TG_ERR_NOMEM;
    for (int64_t r = 0; r < rows; r++) {
        const float *restrict o = gates->data + r * 4 * hidden + 3 * hidden, *restrict cr = c->data + r * hidden;
        float *restrict out = call->output->data + r * hidden, *restrict sq = squashed + r * hidden;
        for (int64_t j = 0; j < hidden; j++) {
            sq[j] = tanhf(cr[j]);
            out[j] = o[j] * sq[j];
        }
    }
    return TG_OK;
}

/* do = dh' tanh(c'), dc' += dh' o (1 - tanh(c')^2) */
static tg_status lstm_hidden_backward(const tg_op_call *call) {
    const tg_tensor *gates = call->inputs[0], *c = call->inputs[1];
    int64_t rows = c->shape[0], hidden = c->shape[1];
    const float *squashed = call->saved;
    for (int64_t r = 0; r < rows; r++) {
        const float *restrict o = gates->data + r * 4 * hidden + 3 * hidden,
                              *restrict sq = squashed + r * hidden,
                              *restrict dy = call->output->grad + r * hidden;
        if (gates->grad) {
            float *restrict d_o = gates->grad + r * 4 * hidden + 3 * hidden;
            for (int64_t j = 0; j < hidden; j++) d_o[j] += dy[j] * sq[j];
        }
        if (c->grad) {
            float *restrict dc = c->grad + r * hidden;
            for (int64_t j = 0; j < hidden; j++) dc[j] += dy[j] * o[j] * (1.0f - sq[j] * sq[j]);
        }
    }
    return TG_OK;
}

/* ---- gru_cell ------------------------------------------------------------------------------ */

/* Saved per row: r, z, n, and W_hn h + b_hn (which dr needs), each of width H. */
static tg_status gru_cell_infer(const tg_op_call *call, tg_shape *out) {
    if (check_cell(call, 3) != TG_OK) return TG_ERR_SHAPE;
    tgi_shape_of(call->inputs[1], out);
    return TG_OK;
}

static tg_status gru_cell_forward(tg_op_call *call) {
    step_slab s = slab_of(call);
    const tg_tensor *h = call->inputs[1];
    int64_t hidden = h->shape[1], ld = 4 * hidden;
    float *saved = tg_op_save(call, (size_t)(s.rows * ld) * sizeof(float));
    if (!saved) return TG_ERR_NOMEM;
    recurrent_projection(call, saved, ld);
    for (int64_t row = 0; row < s.rows; row++) {
        float *restrict r = saved + row * ld, *restrict z = r + hidden, *restrict n = r + 2 * hidden,
                        *restrict hn = r + 3 * hidden, *restrict out = call->output->data + row * hidden;
        const float *restrict x = call->inputs[0]->data + s.offset + row * s.stride,
                              *restrict hr = h->data + row * hidden;
        for (int64_t j = 0; j < hidden; j++) {
            hn[j] = n[j];
            r[j] = tgi_sigmoid(x[j] + r[j]);
            z[j] = tgi_sigmoid(x[hidden + j] + z[j]);
            n[j] = tanhf(x[2 * hidden + j] + r[j] * hn[j]);
            out[j] = n[j] + z[j] * (hr[j] - n[j]);
        }
    }
    return TG_OK;
}

/* The saved r, z, n columns become the gradient of the recurrent projection in place; the
 * input slab's n block gets dn_pre, the projection's n block dn_pre * r. */
static tg_status gru_cell_backward(const tg_op_call *call) {
    step_slab s = slab_of(call);
    const tg_tensor *h = call->inputs[1];
    int64_t hidden = h->shape[1], ld = 4 * hidden;
    float *saved = call->saved;
    for (int64_t row = 0; row < s.rows; row++) {
        float *restrict r = saved + row * ld, *restrict z = r + hidden, *restrict n = r + 2 * hidden,
                        *restrict hn = r + 3 * hidden;
        const float *restrict dy = call->output->grad + row * hidden, *restrict hr = h->data + row * hidden;
        float *restrict dh = h->grad ? h->grad + row * hidden : NULL;
        for (int64_t j = 0; j < hidden; j++) {
            float dn_pre = (dy[j] - dy[j] * z[j]) * (1.0f - n[j] * n[j]);
            /* grouped as the unfused ops group them (mul's VJP, then sigmoid's y (1 - y)) */
            float dz_pre = (dy[j] * (hr[j] - n[j])) * (z[j] * (1.0f - z[j]));
            float dr_pre = (dn_pre * hn[j]) * (r[j] * (1.0f - r[j]));
            if (dh) dh[j] += dy[j] * z[j];
            hn[j] = dn_pre; /* the slab's n block, read below */
            n[j] = dn_pre * r[j];
            z[j] = dz_pre;
            r[j] = dr_pre;
        }
    }
    /* The slab's gradient is [dr_pre, dz_pre, dn_pre]: saved columns 0..2H, then 3H..4H. */
    slab_backward(call, saved, ld, 0, 2 * hidden);
    slab_backward(call, saved + 3 * hidden, ld, 2 * hidden, hidden);
    projection_backward(call, saved, ld);
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
    KERNEL_DEF(rnn_cell, 4, "step:i64", rnn_cell_infer, rnn_cell_examples),
    KERNEL_DEF(lstm_gates, 4, "step:i64", lstm_gates_infer, lstm_gates_examples),
    KERNEL_DEF(lstm_cell, 2, "", lstm_state_infer, state_examples),
    KERNEL_DEF(lstm_hidden, 2, "", lstm_state_infer, state_examples),
    KERNEL_DEF(gru_cell, 4, "step:i64", gru_cell_infer, gru_cell_examples),
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
