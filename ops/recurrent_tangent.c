/*
 * ops/recurrent_tangent.c — the tangents of the fused recurrent cells, as fused ops.
 *
 * The JVP rules of rnn_cell, lstm_gates, lstm_cell and lstm_hidden (ops/recurrent.c) must build
 * each node's tangent from ops on the tape, so that a backward pass through the tangents gives
 * Hessian-vector products. Composed from generic ops (slices, products, sums) an LSTM step's
 * tangents took about thirty small ops, and an HVP of the bench_rnn LSTM cost 4.3 gradient
 * steps: the per-op passes over [B, 4H], not the products, were the excess. So each tangent is
 * one op here (2.3 gradient steps, bench/bench_hvp.c), with its own VJP and a JVP (composed
 * from ops: third derivatives are not on a hot path):
 *
 *   gates_tangent(y, xd, h, hd, w, wd, bd; step)       [B, G*H], G = 1 (tanh cell) or 4 (LSTM)
 *       = act'(z) * zd,   zd = xd_t + bd + hd w^T + h wd^T
 *     the tangent of y = act(xp_t + b + h w^T) when xp, h, w, b move along xd, hd, wd, bd. The
 *     activations' slopes come from y itself: sig' = y (1 - y), tanh' = (1 - y)(1 + y), i.e.
 *     (1 - y)(m + y) with m = 1 on tanh blocks (all of a tanh cell, block g of the LSTM's
 *     i, f, g, o), 0 on sigmoid ones. y is the cell's output node, so the second derivative
 *     reaches the cell's inputs through the cell's own VJP, and no GEMM recomputes z.
 *   lstm_cell_tangent(g, c, gd, cd)    [B, H] = gd_f c + g_f cd + gd_i g_g + g_i gd_g
 *     the symmetric bilinear form of c' = f c + i g: swapping (g, c) with (gd, cd) gives the
 *     same value, and its JVP is the op twice.
 *   lstm_hidden_tangent(g, c, gd, cd)  [B, H] = gd_o tanh(c) + g_o tanh'(c) cd
 *
 * xd is read in place at `step`, as the cells read xp: no slice copy. Each op's VJP adds (+=)
 * into gradient buffers that may be shared with other readers.
 */
#include "ops/kernels.h"

/* Rows are independent: the elementwise passes run over row ranges on the context's threads,
 * each range at least this many values (a hand-off costs about a microsecond). */
#define GRAIN_VALUES 2048

typedef struct tangent_job {
    const tg_op_call *call;
    float *buf; /* zd (gates_tangent), tanh(c) (lstm_hidden_tangent) or a scratch dz */
} tangent_job;

static void over_rows(const tg_op_call *call, int64_t width, tgi_range_fn fn, float *buf) {
    tangent_job job = {call, buf};
    int64_t grain = GRAIN_VALUES / width;
    tgi_parallel_for(call->tape->ctx, call->output->shape[0], grain > 1 ? grain : 1, fn, &job);
}

/* ---- gates_tangent ------------------------------------------------------------------------- */

enum { GT_Y, GT_XD, GT_H, GT_HD, GT_W, GT_WD, GT_BD, GT_COUNT };

static int64_t gate_count(const tg_op_call *call) {
    return call->inputs[GT_Y]->shape[1] / call->inputs[GT_H]->shape[1];
}

static bool tanh_block(int64_t gates, int64_t k) { return gates == 1 || k == 2; }

static bool same_dims(const tg_tensor *t, int64_t a, int64_t b) {
    return t->ndim == 2 && t->shape[0] == a && t->shape[1] == b;
}

static tg_status gates_tangent_infer(const tg_op_call *call, tg_shape *out) {
    tg_tensor *const *in = call->inputs;
    const tg_tensor *y = in[GT_Y], *xd = in[GT_XD], *h = in[GT_H];
    if (y->ndim != 2 || xd->ndim != 3 || h->ndim != 2 || in[GT_BD]->ndim != 1)
        return tg_op_fail(call, TG_ERR_SHAPE, "expected y [B,G*H], xd [B,T,G*H], h, hd [B,H], "
                          "w, wd [G*H,H], bd [G*H]");
    int64_t batch = h->shape[0], hidden = h->shape[1], width = y->shape[1];
    if (hidden < 1 || width % hidden != 0 || (width / hidden != 1 && width / hidden != 4))
        return tg_op_fail(call, TG_ERR_SHAPE, "y has %lld columns for hidden %lld: expected H "
                          "(tanh cell) or 4H (LSTM gates)", (long long)width, (long long)hidden);
    if (y->shape[0] != batch || xd->shape[0] != batch || xd->shape[2] != width ||
        !same_dims(in[GT_HD], batch, hidden) || !same_dims(in[GT_W], width, hidden) ||
        !same_dims(in[GT_WD], width, hidden) || in[GT_BD]->shape[0] != width)
        return tg_op_fail(call, TG_ERR_SHAPE, "shapes disagree: batch %lld, hidden %lld, %lld "
                          "gate columns", (long long)batch, (long long)hidden, (long long)width);
    int64_t step = call->attrs[0].i64;
    if (step < 0 || step >= xd->shape[1])
        return tg_op_fail(call, TG_ERR_SHAPE, "step %lld outside 0..%lld", (long long)step,
                          (long long)xd->shape[1] - 1);
    tgi_shape_of(y, out);
    return TG_OK;
}

/* zd += x; out = slope(y) zd, slope = 1 - y^2 (tanh) or y (1 - y) (sigmoid). */
static void tanh_slope(float *restrict out, float *restrict zd, const float *restrict y,
                       const float *restrict x, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        zd[j] += x[j];
        out[j] = (1.0f - y[j] * y[j]) * zd[j];
    }
}

static void sigmoid_slope(float *restrict out, float *restrict zd, const float *restrict y,
                          const float *restrict x, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        zd[j] += x[j];
        out[j] = y[j] * (1.0f - y[j]) * zd[j];
    }
}

/* Row range: job->buf holds bd + hd w^T + h wd^T on entry; adds xd's slab, then the slopes. */
static void gates_tangent_rows(void *arg, int64_t begin, int64_t end) {
    const tangent_job *job = arg;
    const tg_op_call *call = job->call;
    const tg_tensor *y = call->inputs[GT_Y], *xd = call->inputs[GT_XD];
    int64_t width = y->shape[1], gates = gate_count(call), hidden = width / gates;
    int64_t stride = xd->shape[1] * width, offset = call->attrs[0].i64 * width;
    for (int64_t r = begin; r < end; r++) {
        float *zd = job->buf + r * width, *out = call->output->data + r * width;
        const float *yr = y->data + r * width, *x = xd->data + offset + r * stride;
        for (int64_t k = 0, at = 0; k < gates; k++, at += hidden) {
            if (tanh_block(gates, k)) tanh_slope(out + at, zd + at, yr + at, x + at, hidden);
            else sigmoid_slope(out + at, zd + at, yr + at, x + at, hidden);
        }
    }
}

static tg_status gates_tangent_forward(tg_op_call *call) {
    tg_tensor *const *in = call->inputs;
    int64_t batch = in[GT_H]->shape[0], hidden = in[GT_H]->shape[1], width = in[GT_Y]->shape[1];
    /* zd, kept: the VJP with respect to y needs it */
    float *zd = tg_op_save_for_backward(call, (size_t)call->output->size * sizeof(float));
    if (!zd) return TG_ERR_NOMEM;
    tg_ctx *ctx = call->tape->ctx;
    tgi_gemm_bias(ctx, batch, width, hidden, in[GT_HD]->data, hidden, in[GT_W]->data, hidden,
                  in[GT_BD]->data, zd, width);
    tgi_gemm(ctx, false, true, batch, width, hidden, 1.0f, in[GT_H]->data, hidden, in[GT_WD]->data,
             hidden, 1.0f, zd, width);
    over_rows(call, width, gates_tangent_rows, zd);
    return TG_OK;
}

/* dz = u slope(y); dy += u zd slope'(y) (slope' = -2y for tanh, 1 - 2y for sigmoid). */
static void tanh_slope_grad(float *restrict dz, float *restrict dy, const float *restrict u,
                            const float *restrict y, const float *restrict zd, int64_t n) {
    for (int64_t j = 0; j < n; j++) dz[j] = u[j] * (1.0f - y[j] * y[j]);
    if (dy)
        for (int64_t j = 0; j < n; j++) dy[j] += u[j] * zd[j] * (-2.0f * y[j]);
}

static void sigmoid_slope_grad(float *restrict dz, float *restrict dy, const float *restrict u,
                               const float *restrict y, const float *restrict zd, int64_t n) {
    for (int64_t j = 0; j < n; j++) dz[j] = u[j] * (y[j] * (1.0f - y[j]));
    if (dy)
        for (int64_t j = 0; j < n; j++) dy[j] += u[j] * zd[j] * (1.0f - 2.0f * y[j]);
}

static void add_to(float *restrict out, const float *restrict from, int64_t n) {
    for (int64_t j = 0; j < n; j++) out[j] += from[j];
}

/* Row range of the VJP, u the output's gradient: dz into job->buf, y's gradient, and xd's
 * slab += dz. */
static void gates_tangent_grad_rows(void *arg, int64_t begin, int64_t end) {
    const tangent_job *job = arg;
    const tg_op_call *call = job->call;
    const tg_tensor *y = call->inputs[GT_Y], *xd = call->inputs[GT_XD];
    int64_t width = y->shape[1], gates = gate_count(call), hidden = width / gates;
    int64_t stride = xd->shape[1] * width, offset = call->attrs[0].i64 * width;
    const float *saved = call->saved;
    for (int64_t r = begin; r < end; r++) {
        const float *u = call->output->grad + r * width, *yr = y->data + r * width;
        const float *zd = saved + r * width;
        float *dz = job->buf + r * width, *dy = y->grad ? y->grad + r * width : NULL;
        for (int64_t k = 0, at = 0; k < gates; k++, at += hidden) {
            if (tanh_block(gates, k))
                tanh_slope_grad(dz + at, dy ? dy + at : NULL, u + at, yr + at, zd + at, hidden);
            else sigmoid_slope_grad(dz + at, dy ? dy + at : NULL, u + at, yr + at, zd + at, hidden);
        }
        if (xd->grad) add_to(xd->grad + offset + r * stride, dz, width);
    }
}

static tg_status gates_tangent_backward(const tg_op_call *call) {
    tg_tensor *const *in = call->inputs;
    tg_ctx *ctx = call->tape->ctx;
    int64_t batch = in[GT_H]->shape[0], hidden = in[GT_H]->shape[1], width = in[GT_Y]->shape[1];
    tgi_arena *arena = &call->tape->arena;
    tgi_arena_mark mark = tgi_arena_mark_get(arena); /* dz is scratch: given back below */
    float *dz = tgi_arena_alloc(arena, (size_t)call->output->size * sizeof(float));
    if (!dz) return tg_op_fail(call, TG_ERR_NOMEM, "out of memory for the pre-activation gradient");
    over_rows(call, width, gates_tangent_grad_rows, dz);
    if (in[GT_BD]->grad) tgi_add_column_sums(ctx, batch, width, dz, width, in[GT_BD]->grad);
    /* hd += dz w, w += dz^T hd, h += dz wd, wd += dz^T h */
    tgi_gemm_args products[4];
    int count = 0;
    for (int pair = 0; pair < 2; pair++) {
        tg_tensor *x = in[pair ? GT_H : GT_HD], *m = in[pair ? GT_WD : GT_W];
        if (x->grad)
            products[count++] = (tgi_gemm_args){false, false, batch, hidden, width, 1.0f, dz, width,
                                                m->data, hidden, 1.0f, x->grad, hidden};
        if (m->grad)
            products[count++] = (tgi_gemm_args){true, false, width, hidden, batch, 1.0f, dz, width,
                                                x->data, hidden, 1.0f, m->grad, hidden};
    }
    /* one parallel region when the products write apart; a tensor given twice (h as hd, w as
     * wd) shares its gradient buffer, and then they run one after another */
    bool apart = true;
    for (int a = 0; a < count; a++)
        for (int b = a + 1; b < count; b++) apart &= products[a].c != products[b].c;
    if (apart) tgi_gemm_batch(ctx, products, count);
    else
        for (int p = 0; p < count; p++) tgi_gemm_batch(ctx, products + p, 1);
    tgi_arena_mark_rewind(arena, mark);
    return TG_OK;
}

/* 1 - m per column (m = 1 on tanh blocks): slope'(y) = (1 - m) - 2y. A constant of the shape,
 * not of the data, so a replayed step may keep it. */
static tg_tensor *slope_offset(tg_tape *tape, int64_t width, int64_t gates) {
    tg_tensor *t = tg_tape_zeros(tape, TG_SHAPE(width));
    if (!t) return NULL;
    int64_t hidden = width / gates;
    for (int64_t j = 0; j < width; j++) t->data[j] = tanh_block(gates, j / hidden) ? 0.0f : 1.0f;
    return t;
}

static tg_tensor *zeros_like(tg_tape *tape, const tg_tensor *t) {
    return tg_tape_zeros(tape, t->ndim, t->shape);
}

/* The op is linear in (xd, bd) and bilinear in (h, wd) and (hd, w), times slope(y):
 *   d out = slope(y) (xd'_t + bd' + hd' w^T + h wd'^T)     the op on the tangents
 *         + slope(y) (hd w'^T + h' wd^T)                   the op again, mixed
 *         + slope'(y) y' zd                                 zd recomputed by ops */
static tg_status gates_tangent_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    tg_tape *tape = call->tape;
    tg_tensor *const *in = call->inputs;
    int64_t step = call->attrs[0].i64, batch = in[GT_H]->shape[0], width = in[GT_Y]->shape[1];
    tg_tensor *sum = NULL, *term = NULL;
    tg_status status = tgi_gates_tangent(tape, in[GT_Y], t[GT_XD], in[GT_H], t[GT_HD], in[GT_W],
                                         t[GT_WD], t[GT_BD], step, &sum);
    if (status == TG_OK && (t[GT_H] || t[GT_W])) {
        tg_tensor *h_dot = t[GT_H] ? t[GT_H] : zeros_like(tape, in[GT_H]);
        tg_tensor *w_dot = t[GT_W] ? t[GT_W] : zeros_like(tape, in[GT_W]);
        if (!h_dot || !w_dot) return tg_errcode(tape->ctx);
        status = tgi_gates_tangent(tape, in[GT_Y], NULL, h_dot, in[GT_HD], w_dot, in[GT_WD], NULL,
                                   step, &term);
        if (status == TG_OK && !(sum = tgi_tangent_add(tape, sum, term))) return tg_errcode(tape->ctx);
    }
    if (status == TG_OK && t[GT_Y]) {
        tg_tensor *slab = tg_reshape(tape, tg_slice(tape, in[GT_XD], 1, step, step + 1),
                                     TG_SHAPE(batch, width));
        tg_tensor *zd = tg_add(tape, tg_add(tape, slab, tg_linear(tape, in[GT_HD], in[GT_W], in[GT_BD])),
                               tg_linear(tape, in[GT_H], in[GT_WD], zeros_like(tape, in[GT_BD])));
        tg_tensor *slope2 = tg_add(tape, tg_scale(tape, in[GT_Y], -2.0f),
                                   slope_offset(tape, width, gate_count(call)));
        term = tg_mul(tape, t[GT_Y], tg_mul(tape, slope2, zd));
        if (!term || !(sum = tgi_tangent_add(tape, sum, term))) return tg_errcode(tape->ctx);
    }
    *out = sum;
    return status;
}

/* ---- lstm_cell_tangent and lstm_hidden_tangent ----------------------------------------------- */

enum { ST_G, ST_C, ST_GD, ST_CD };

static tg_status state_tangent_infer(const tg_op_call *call, tg_shape *out) {
    const tg_tensor *g = call->inputs[ST_G], *c = call->inputs[ST_C];
    if (g->ndim != 2 || c->ndim != 2 || g->shape[0] != c->shape[0] || g->shape[1] != 4 * c->shape[1] ||
        !tgi_same_shape(call->inputs[ST_GD], g) || !tgi_same_shape(call->inputs[ST_CD], c))
        return tg_op_fail(call, TG_ERR_SHAPE, "expected gates g, gd [B,4H] and states c, cd [B,H]");
    tgi_shape_of(c, out);
    return TG_OK;
}

/* Row r of a state tangent op: gate blocks of g and gd (i, f, g, o at 0, H, 2H, 3H), c, cd. */
typedef struct state_rows {
    const float *g, *gd, *c, *cd;
    float *out;
} state_rows;

static state_rows rows_at(const tg_op_call *call, int64_t r, int64_t hidden) {
    tg_tensor *const *in = call->inputs;
    return (state_rows){in[ST_G]->data + r * 4 * hidden, in[ST_GD]->data + r * 4 * hidden,
                        in[ST_C]->data + r * hidden, in[ST_CD]->data + r * hidden,
                        call->output->data + r * hidden};
}

/* One row: out = gd_f c + g_f cd + gd_i g_g + g_i gd_g (g, gd: the row's four blocks). */
static void cell_form(float *restrict out, const float *restrict g, const float *restrict gd,
                      const float *restrict c, const float *restrict cd, int64_t H) {
    for (int64_t j = 0; j < H; j++)
        out[j] = gd[H + j] * c[j] + g[H + j] * cd[j] + gd[j] * g[2 * H + j] + g[j] * gd[2 * H + j];
}

static void cell_tangent_rows(void *arg, int64_t begin, int64_t end) {
    const tangent_job *job = arg;
    int64_t H = job->call->output->shape[1];
    for (int64_t r = begin; r < end; r++) {
        state_rows s = rows_at(job->call, r, H);
        cell_form(s.out, s.g, s.gd, s.c, s.cd, H);
    }
}

static tg_status lstm_cell_tangent_forward(tg_op_call *call) {
    over_rows(call, call->output->shape[1], cell_tangent_rows, NULL);
    return TG_OK;
}

/* The VJP loops, one gradient each, restrict: a gradient buffer never overlaps the values it
 * is computed from, so they vectorise; an input given twice has its buffer written by two
 * loops in turn, each adding its part. */
static void add_product(float *restrict out, const float *restrict u, const float *restrict a,
                        int64_t n) {
    for (int64_t j = 0; j < n; j++) out[j] += u[j] * a[j];
}

/* Each input's gradient is u times its partner in the form: g_i <-> gd_g, g_f <-> cd,
 * g_g <-> gd_i, c <-> gd_f, and the same with g and gd swapped. */
static void cell_tangent_grad_rows(void *arg, int64_t begin, int64_t end) {
    const tangent_job *job = arg;
    tg_tensor *const *in = job->call->inputs;
    int64_t H = job->call->output->shape[1];
    for (int64_t r = begin; r < end; r++) {
        state_rows s = rows_at(job->call, r, H);
        const float *u = job->call->output->grad + r * H;
        for (int which = 0; which < 2; which++) { /* g's gradient from gd and cd, then gd's */
            tg_tensor *gates = in[which ? ST_GD : ST_G];
            const float *partner = which ? s.g : s.gd, *state = which ? s.c : s.cd;
            if (!gates->grad) continue;
            float *d = gates->grad + r * 4 * H;
            add_product(d, u, partner + 2 * H, H);
            add_product(d + H, u, state, H);
            add_product(d + 2 * H, u, partner, H);
        }
        if (in[ST_C]->grad) add_product(in[ST_C]->grad + r * H, u, s.gd + H, H);
        if (in[ST_CD]->grad) add_product(in[ST_CD]->grad + r * H, u, s.g + H, H);
    }
}

static tg_status lstm_cell_tangent_backward(const tg_op_call *call) {
    over_rows(call, call->output->shape[1], cell_tangent_grad_rows, NULL);
    return TG_OK;
}

/* Bilinear: T(g + dg, c + dc; gd + dgd, cd + dcd) - T(g, c; gd, cd) is, to first order,
 * T(dg, dc; gd, cd) + T(g, c; dgd, dcd). */
static tg_status lstm_cell_tangent_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    tg_tape *tape = call->tape;
    tg_tensor *const *in = call->inputs;
    tg_tensor *sum = NULL, *term = NULL;
    tg_status status = tgi_lstm_cell_tangent(tape, t[ST_G], t[ST_C], in[ST_GD], in[ST_CD], &sum);
    if (status == TG_OK)
        status = tgi_lstm_cell_tangent(tape, in[ST_G], in[ST_C], t[ST_GD], t[ST_CD], &term);
    if (status == TG_OK && term && !(sum = tgi_tangent_add(tape, sum, term))) return tg_errcode(tape->ctx);
    *out = sum;
    return status;
}

/* One row: squashed = tanh(c), out = od squashed + o (1 - squashed^2) cd. */
static void hidden_form(float *restrict out, float *restrict squashed, const float *restrict o,
                        const float *restrict od, const float *restrict c,
                        const float *restrict cd, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        float v = tgi_tanh_lanes(c[j]); /* the forward's tanh (ops/recurrent.c) */
        squashed[j] = v;
        out[j] = od[j] * v + o[j] * (1.0f - v * v) * cd[j];
    }
}

/* job->buf: tanh(c), saved for the VJP. */
static void hidden_tangent_rows(void *arg, int64_t begin, int64_t end) {
    const tangent_job *job = arg;
    int64_t H = job->call->output->shape[1];
    for (int64_t r = begin; r < end; r++) {
        state_rows s = rows_at(job->call, r, H);
        hidden_form(s.out, job->buf + r * H, s.g + 3 * H, s.gd + 3 * H, s.c, s.cd, H);
    }
}

static tg_status lstm_hidden_tangent_forward(tg_op_call *call) {
    float *squashed = tg_op_save_for_backward(call, (size_t)call->output->size * sizeof(float));
    if (!squashed) return TG_ERR_NOMEM;
    over_rows(call, call->output->shape[1], hidden_tangent_rows, squashed);
    return TG_OK;
}

/* s = tanh(c), d = 1 - s^2: g_o gets u d cd, c gets u d (gd_o - 2 s g_o cd), gd_o gets u s,
 * cd gets u g_o d. */
static void add_slope_product(float *restrict out, const float *restrict u, const float *restrict s,
                              const float *restrict a, int64_t n) {
    for (int64_t j = 0; j < n; j++) out[j] += u[j] * (1.0f - s[j] * s[j]) * a[j];
}

static void add_state_grad(float *restrict out, const float *restrict u, const float *restrict s,
                           const float *restrict o, const float *restrict od,
                           const float *restrict cd, int64_t n) {
    for (int64_t j = 0; j < n; j++)
        out[j] += u[j] * (1.0f - s[j] * s[j]) * (od[j] - 2.0f * s[j] * o[j] * cd[j]);
}

static void hidden_tangent_grad_rows(void *arg, int64_t begin, int64_t end) {
    const tangent_job *job = arg;
    tg_tensor *const *in = job->call->inputs;
    int64_t H = job->call->output->shape[1];
    const float *saved = job->call->saved;
    for (int64_t r = begin; r < end; r++) {
        state_rows s = rows_at(job->call, r, H);
        const float *u = job->call->output->grad + r * H, *sq = saved + r * H;
        const float *o = s.g + 3 * H, *od = s.gd + 3 * H;
        if (in[ST_G]->grad) add_slope_product(in[ST_G]->grad + r * 4 * H + 3 * H, u, sq, s.cd, H);
        if (in[ST_C]->grad) add_state_grad(in[ST_C]->grad + r * H, u, sq, o, od, s.cd, H);
        if (in[ST_GD]->grad) add_product(in[ST_GD]->grad + r * 4 * H + 3 * H, u, sq, H);
        if (in[ST_CD]->grad) add_slope_product(in[ST_CD]->grad + r * H, u, sq, o, H);
    }
}

static tg_status lstm_hidden_tangent_backward(const tg_op_call *call) {
    over_rows(call, call->output->shape[1], hidden_tangent_grad_rows, NULL);
    return TG_OK;
}

/* Block o (the last H columns) of gates [B, 4H]; NULL stays NULL. */
static tg_tensor *block_o(tg_tape *tape, tg_tensor *gates) {
    return gates ? tg_slice(tape, gates, 1, 3 * (gates->shape[1] / 4), gates->shape[1]) : NULL;
}

/* out = gd_o tanh(c) + g_o tanh'(c) cd, linear in (gd, cd):
 *   d out = [the op on (dgd, dcd)] + tanh'(c) (gd_o dc + dg_o cd) + tanh''(c) g_o cd dc */
static tg_status lstm_hidden_tangent_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    tg_tape *tape = call->tape;
    tg_tensor *const *in = call->inputs;
    tg_tensor *sum = NULL, *c = in[ST_C], *cd = in[ST_CD];
    tg_status status = tgi_lstm_hidden_tangent(tape, in[ST_G], c, t[ST_GD], t[ST_CD], &sum);
    if (status != TG_OK) return status;
    tg_tensor *first = NULL; /* gd_o dc + dg_o cd */
    if (t[ST_C] && !(first = tg_mul(tape, block_o(tape, in[ST_GD]), t[ST_C]))) return tg_errcode(tape->ctx);
    if (t[ST_G]) {
        tg_tensor *part = tg_mul(tape, block_o(tape, t[ST_G]), cd);
        if (!part || !(first = tgi_tangent_add(tape, first, part))) return tg_errcode(tape->ctx);
    }
    if (first) {
        tg_tensor *term = tgi_derivative_times(tape, TGI_OP_TANH, 1, c, first, NULL);
        if (!term || !(sum = tgi_tangent_add(tape, sum, term))) return tg_errcode(tape->ctx);
    }
    if (t[ST_C]) {
        tg_tensor *ocd = tg_mul(tape, tg_mul(tape, block_o(tape, in[ST_G]), cd), t[ST_C]);
        tg_tensor *term = tgi_derivative_times(tape, TGI_OP_TANH, 2, c, ocd, NULL);
        if (!term || !(sum = tgi_tangent_add(tape, sum, term))) return tg_errcode(tape->ctx);
    }
    *out = sum;
    return TG_OK;
}

/* ---- builders, for the JVP rules of the cells ---------------------------------------------- */

/* t, or zeros shaped like `like` when t is NULL. */
static tg_tensor *or_zeros(tg_tape *tape, tg_tensor *t, const tg_tensor *like) {
    return t ? t : zeros_like(tape, like);
}

tg_status tgi_gates_tangent(tg_tape *tape, tg_tensor *y, tg_tensor *xd, tg_tensor *h, tg_tensor *hd,
                            tg_tensor *w, tg_tensor *wd, tg_tensor *bd, int64_t step, tg_tensor **out) {
    *out = NULL;
    if (!xd && !hd && !wd && !bd) return TG_OK;
    tg_attr_value attrs[1] = {{.i64 = step}};
    if (!xd) { /* a slab of zeros, one step long, rather than zeros the size of xp */
        xd = tg_tape_zeros(tape, TG_SHAPE(y->shape[0], 1, y->shape[1]));
        attrs[0].i64 = 0;
    }
    tg_tensor *inputs[GT_COUNT] = {y, xd, h, or_zeros(tape, hd, h), w, or_zeros(tape, wd, w),
                                   bd ? bd : tg_tape_zeros(tape, TG_SHAPE(y->shape[1]))};
    for (int k = 0; k < GT_COUNT; k++)
        if (!inputs[k]) return tg_errcode(tape->ctx);
    *out = tgi_call_builtin(tape, TGI_OP_GATES_TANGENT, inputs, GT_COUNT, attrs);
    return *out ? TG_OK : tg_errcode(tape->ctx);
}

/* A pair (g, c) of which at least one is given, completed with zeros: g [B, 4H], c [B, H]. */
static bool complete_pair(tg_tape *tape, tg_tensor **g, tg_tensor **c) {
    if (!*g) *g = tg_tape_zeros(tape, TG_SHAPE((*c)->shape[0], 4 * (*c)->shape[1]));
    if (!*c) *c = tg_tape_zeros(tape, TG_SHAPE((*g)->shape[0], (*g)->shape[1] / 4));
    return *g && *c;
}

tg_status tgi_lstm_cell_tangent(tg_tape *tape, tg_tensor *g, tg_tensor *c, tg_tensor *gd,
                                tg_tensor *cd, tg_tensor **out) {
    *out = NULL;
    /* the form is zero when either pair is, or when neither gate tensor is given */
    if ((!g && !c) || (!gd && !cd) || (!g && !gd)) return TG_OK;
    if (!complete_pair(tape, &g, &c) || !complete_pair(tape, &gd, &cd)) return tg_errcode(tape->ctx);
    *out = tgi_call_builtin(tape, TGI_OP_LSTM_CELL_TANGENT, (tg_tensor *[]){g, c, gd, cd}, 4, NULL);
    return *out ? TG_OK : tg_errcode(tape->ctx);
}

tg_status tgi_lstm_hidden_tangent(tg_tape *tape, tg_tensor *g, tg_tensor *c, tg_tensor *gd,
                                  tg_tensor *cd, tg_tensor **out) {
    *out = NULL;
    if (!gd && !cd) return TG_OK;
    if (!complete_pair(tape, &gd, &cd)) return tg_errcode(tape->ctx);
    *out = tgi_call_builtin(tape, TGI_OP_LSTM_HIDDEN_TANGENT, (tg_tensor *[]){g, c, gd, cd}, 4, NULL);
    return *out ? TG_OK : tg_errcode(tape->ctx);
}

/* ---- registry entries ---------------------------------------------------------------------- */

/* B = 2, T = 3, H = 2, at step 1 (LSTM) or 2 (tanh cell); the third is the LSTM as an HVP
 * records it: the tangents xd, wd and bd are constants there. */
static const tgi_example gates_tangent_inputs[] = {
    {.n_inputs = GT_COUNT,
     .inputs = {TGI_INPUT(TGI_DOMAIN_UNIT, 2, 8), TGI_INPUT(TGI_DOMAIN_ANY, 2, 3, 8),
                TGI_INPUT(TGI_DOMAIN_ANY, 2, 2), TGI_INPUT(TGI_DOMAIN_ANY, 2, 2),
                TGI_INPUT(TGI_DOMAIN_ANY, 8, 2), TGI_INPUT(TGI_DOMAIN_ANY, 8, 2),
                TGI_INPUT(TGI_DOMAIN_ANY, 8)},
     .attrs = {{.i64 = 1}}},
    {.n_inputs = GT_COUNT,
     .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 2, 2), TGI_INPUT(TGI_DOMAIN_ANY, 2, 3, 2),
                TGI_INPUT(TGI_DOMAIN_ANY, 2, 2), TGI_INPUT(TGI_DOMAIN_ANY, 2, 2),
                TGI_INPUT(TGI_DOMAIN_ANY, 2, 2), TGI_INPUT(TGI_DOMAIN_ANY, 2, 2),
                TGI_INPUT(TGI_DOMAIN_ANY, 2)},
     .attrs = {{.i64 = 2}}},
    {.n_inputs = GT_COUNT,
     .inputs = {TGI_INPUT(TGI_DOMAIN_UNIT, 2, 8), TGI_CONST_INPUT(TGI_DOMAIN_ANY, 0, 2, 3, 8),
                TGI_INPUT(TGI_DOMAIN_ANY, 2, 2), TGI_INPUT(TGI_DOMAIN_ANY, 2, 2),
                TGI_INPUT(TGI_DOMAIN_ANY, 8, 2), TGI_CONST_INPUT(TGI_DOMAIN_ANY, 0, 8, 2),
                TGI_CONST_INPUT(TGI_DOMAIN_ANY, 0, 8)},
     .attrs = {{.i64 = 0}}},
};
static const tgi_example state_tangent_inputs[] = {
    {.n_inputs = 4,
     .inputs = {TGI_INPUT(TGI_DOMAIN_UNIT, 2, 8), TGI_INPUT(TGI_DOMAIN_ANY, 2, 2),
                TGI_INPUT(TGI_DOMAIN_ANY, 2, 8), TGI_INPUT(TGI_DOMAIN_ANY, 2, 2)}},
};
static const tgi_examples gates_tangent_examples = TGI_EXAMPLES(gates_tangent_inputs);
static const tgi_examples state_tangent_examples = TGI_EXAMPLES(state_tangent_inputs);

const tg_op_def tgi_recurrent_tangent_defs[] = {
    KERNEL_DEF_JVP(gates_tangent, GT_COUNT, "step:i64", gates_tangent_infer, gates_tangent_examples,
                   gates_tangent_jvp),
    KERNEL_DEF_JVP(lstm_cell_tangent, 4, "", state_tangent_infer, state_tangent_examples,
                   lstm_cell_tangent_jvp),
    KERNEL_DEF_JVP(lstm_hidden_tangent, 4, "", state_tangent_infer, state_tangent_examples,
                   lstm_hidden_tangent_jvp),
};
const int tgi_recurrent_tangent_count =
    sizeof tgi_recurrent_tangent_defs / sizeof tgi_recurrent_tangent_defs[0];
