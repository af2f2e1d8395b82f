/*
 * ops/pool.c — max_pool2d, avg_pool2d and global_avg_pool2d over x [N, C, H, W].
 *
 * Windows follow PyTorch (floor mode): OH = (H + 2 pad - kernel) / stride + 1. Padding may be at
 * most half the kernel, which guarantees that every window overlaps the input: a max pool never
 * has to pick from padding alone, and its saved argmax is always a real input position.
 * Each (sample, channel) plane is computed on its own, so planes are spread over the threads.
 */
#include "ops/kernels.h"

#include <math.h>
#include <stdint.h>

/* ---- geometry ------------------------------------------------------------------------------ */

typedef struct pool_geom {
    int64_t planes, h, w, oh, ow;
    int64_t kh, kw, sh, sw, ph, pw;
} pool_geom;

/* The geometry of a call whose output exists: its size is the one infer_shape computed with
 * checked arithmetic (tgi_window_output), never recomputed here. */
static pool_geom pool_geometry(const tg_op_call *call) {
    const tg_tensor *x = call->inputs[0], *y = call->output;
    const tg_attr_value *a = call->attrs;
    pool_geom g = {x->shape[0] * x->shape[1], x->shape[2], x->shape[3], y->shape[2], y->shape[3],
                   a[0].i64, a[1].i64, a[2].i64, a[3].i64, a[4].i64, a[5].i64};
    return g;
}

static tg_status pool_infer(const tg_op_call *call, tg_shape *out) {
    const tg_tensor *x = call->inputs[0];
    const tg_attr_value *a = call->attrs;
    if (x->ndim != 4) return tg_op_fail(call, TG_ERR_SHAPE, "expected x [N,C,H,W]");
    if (tgi_check_window_attrs(call) != TG_OK) return TG_ERR_INVALID;
    int64_t kh = a[0].i64, kw = a[1].i64, sh = a[2].i64, sw = a[3].i64, ph = a[4].i64, pw = a[5].i64;
    int64_t oh, ow;
    /* first the sizes, with every step checked: 2 x padding below is then known to fit */
    if (tgi_window_output(call, "height", x->shape[2], kh, sh, ph, 1, &oh) != TG_OK ||
        tgi_window_output(call, "width", x->shape[3], kw, sw, pw, 1, &ow) != TG_OK)
        return tg_errcode(call->tape->ctx);
    if (2 * ph > kh || 2 * pw > kw)
        return tg_op_fail(call, TG_ERR_INVALID, "padding %lldx%lld is more than half the kernel "
                          "%lldx%lld: a window could lie entirely in the padding", (long long)ph,
                          (long long)pw, (long long)kh, (long long)kw);
    /* the max pool saves each window's argmax as an int32 position in its plane */
    if (call->op_id != TGI_OP_AVG_POOL2D && x->shape[2] * x->shape[3] > INT32_MAX)
        return tg_op_fail(call, TG_ERR_SHAPE, "a plane of %lld x %lld positions is more than "
                          "2^31 - 1, the most a saved argmax addresses", (long long)x->shape[2],
                          (long long)x->shape[3]);
    tgi_shape_of(x, out);
    out->dims[2] = oh;
    out->dims[3] = ow;
    return TG_OK;
}

/* The part of window (oy, ox) inside the input: rows [*y0, *y1), columns [*x0, *x1). */
static inline void window_clip(const pool_geom *g, int64_t oy, int64_t ox, int64_t *y0,
                               int64_t *y1, int64_t *x0, int64_t *x1) {
    int64_t top = oy * g->sh - g->ph, left = ox * g->sw - g->pw;
    *y0 = top < 0 ? 0 : top;
    *y1 = top + g->kh > g->h ? g->h : top + g->kh;
    *x0 = left < 0 ? 0 : left;
    *x1 = left + g->kw > g->w ? g->w : left + g->kw;
}

/* A pass over planes [begin, end) of x, y and their gradients, with what the op saved. */
typedef struct pool_job {
    pool_geom g;
    const float *x, *gy;
    const float *gather;         /* max pool: what y takes at each argmax (x, or a tangent) */
    float *y, *gx;
    int32_t *argmax;             /* max pool: per output element, the position in its plane */
} pool_job;

static void run_planes(const tg_op_call *call, const pool_geom *g, tgi_range_fn fn,
                       pool_job *job) {
    job->g = *g;
    tgi_parallel_for(call->tape->ctx, g->planes, 4, fn, job);
}

/* ---- max pool ------------------------------------------------------------------------------ */

/* The first maximum of each window; a NaN beats everything, so it propagates. y takes the
 * value of job->gather there: x itself, or (max_pool2d_tangent) a tangent of x, which is NaN
 * too where the window's maximum is (a NaN is never laundered into a number). */
static void max_pool_planes(void *arg, int64_t begin, int64_t end) {
    pool_job *job = arg;
    const pool_geom *g = &job->g;
    for (int64_t plane = begin; plane < end; plane++) {
        const float *x = job->x + plane * g->h * g->w, *from = job->gather + plane * g->h * g->w;
        int64_t out = plane * g->oh * g->ow;
        for (int64_t oy = 0; oy < g->oh; oy++)
            for (int64_t ox = 0; ox < g->ow; ox++, out++) {
                int64_t y0, y1, x0, x1;
                window_clip(g, oy, ox, &y0, &y1, &x0, &x1);
                int64_t best = y0 * g->w + x0;
                for (int64_t iy = y0; iy < y1 && !isnan(x[best]); iy++)
                    for (int64_t ix = x0; ix < x1; ix++) {
                        float v = x[iy * g->w + ix];
                        if (v > x[best] || isnan(v)) {
                            best = iy * g->w + ix;
                            if (isnan(v)) break;
                        }
                    }
                job->y[out] = isnan(x[best]) ? x[best] : from[best];
                job->argmax[out] = (int32_t)best;
            }
    }
}

/* max_pool2d (x gathered at the argmax) and max_pool2d_tangent (input 1 gathered there). */
static tg_status max_pool_forward(tg_op_call *call) {
    pool_geom g = pool_geometry(call);
    pool_job job = {.x = call->inputs[0]->data, .y = call->output->data,
                    .gather = call->inputs[call->n_inputs - 1]->data};
    job.argmax = tg_op_save_for_backward(call, (size_t)call->output->size * sizeof(int32_t));
    if (!job.argmax) return TG_ERR_NOMEM;
    run_planes(call, &g, max_pool_planes, &job);
    return TG_OK;
}

/* Each output's gradient goes to its window's argmax. */
static void max_pool_backward_planes(void *arg, int64_t begin, int64_t end) {
    pool_job *job = arg;
    const pool_geom *g = &job->g;
    int64_t outputs = g->oh * g->ow;
    for (int64_t plane = begin; plane < end; plane++) {
        float *gx = job->gx + plane * g->h * g->w;
        for (int64_t out = plane * outputs; out < (plane + 1) * outputs; out++)
            gx[job->argmax[out]] += job->gy[out];
    }
}

/* The gradient goes to the gathered input (x for max_pool2d, t for max_pool2d_tangent, whose
 * x only picks positions: piecewise constant, no gradient). */
static tg_status max_pool_backward(const tg_op_call *call) {
    tg_tensor *gathered = call->inputs[call->n_inputs - 1];
    if (!gathered->grad) return TG_OK;
    pool_geom g = pool_geometry(call);
    pool_job job = {.gy = call->output->grad, .gx = gathered->grad, .argmax = call->saved};
    run_planes(call, &g, max_pool_backward_planes, &job);
    return TG_OK;
}

/* ---- max pool's tangent -------------------------------------------------------------------- */

/* max_pool2d_tangent(x, t): t at the argmax of each of x's windows (the first maximum, as the
 * max pool's backward picks it), which is the max pool's JVP: away from ties the maximum moves
 * with the input it sits on. An op of its own rather than a composition because the positions
 * must be found again from x whenever the step runs (a replay, the scratch tape of tg_grad):
 * positions fixed when the rule ran would go stale. */
static tg_status max_pool_tangent_infer(const tg_op_call *call, tg_shape *out) {
    if (!tgi_same_shape(call->inputs[0], call->inputs[1]))
        return tg_op_fail(call, TG_ERR_SHAPE, "x and t must have the same shape");
    return pool_infer(call, out);
}

#define max_pool2d_tangent_forward max_pool_forward
#define max_pool2d_tangent_backward max_pool_backward

static tg_tensor *max_pool_tangent(const tg_op_call *call, tg_tensor *t) {
    tg_tensor *inputs[2] = {call->inputs[0], t};
    return tgi_call_builtin(call->tape, TGI_OP_MAX_POOL2D_TANGENT, inputs, 2, call->attrs);
}

/* d max_pool(x) = max_pool2d_tangent(x, dx) */
static tg_status max_pool2d_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    *out = max_pool_tangent(call, t[0]);
    return *out ? TG_OK : tg_errcode(call->tape->ctx);
}

/* Linear in t, constant in x (almost everywhere): itself on t's tangent. */
static tg_status max_pool2d_tangent_jvp(const tg_op_call *call, tg_tensor *const *t,
                                        tg_tensor **out) {
    *out = NULL;
    if (!t[1]) return TG_OK;
    *out = max_pool_tangent(call, t[1]);
    return *out ? TG_OK : tg_errcode(call->tape->ctx);
}

/* ---- average pool -------------------------------------------------------------------------- */

/* Padding counts as zeros, so every window divides by kh kw (count_include_pad). The forward
 * (job->y set) averages each window; the backward gives each of its inputs dY / (kh kw). */
static void avg_pool_planes(void *arg, int64_t begin, int64_t end) {
    pool_job *job = arg;
    const pool_geom *g = &job->g;
    float scale = 1.0f / ((float)g->kh * (float)g->kw); /* kh kw may overflow int64 */
    for (int64_t plane = begin; plane < end; plane++) {
        int64_t offset = plane * g->h * g->w, out = plane * g->oh * g->ow;
        for (int64_t oy = 0; oy < g->oh; oy++)
            for (int64_t ox = 0; ox < g->ow; ox++, out++) {
                int64_t y0, y1, x0, x1;
                window_clip(g, oy, ox, &y0, &y1, &x0, &x1);
                float sum = 0.0f, share = job->y ? 0.0f : job->gy[out] * scale;
                for (int64_t iy = y0; iy < y1; iy++)
                    for (int64_t ix = x0; ix < x1; ix++) {
                        int64_t at = offset + iy * g->w + ix;
                        if (job->y) sum += job->x[at];
                        else job->gx[at] += share;
                    }
                if (job->y) job->y[out] = sum * scale;
            }
    }
}

static tg_status avg_pool_forward(tg_op_call *call) {
    pool_geom g = pool_geometry(call);
    pool_job job = {.x = call->inputs[0]->data, .y = call->output->data};
    run_planes(call, &g, avg_pool_planes, &job);
    return TG_OK;
}

static tg_status avg_pool_backward(const tg_op_call *call) {
    if (!call->inputs[0]->grad) return TG_OK;
    pool_geom g = pool_geometry(call);
    pool_job job = {.gy = call->output->grad, .gx = call->inputs[0]->grad};
    run_planes(call, &g, avg_pool_planes, &job);
    return TG_OK;
}

/* ---- global average pool: [N,C,H,W] -> [N,C] ----------------------------------------------- */

static tg_status global_avg_pool_infer(const tg_op_call *call, tg_shape *out) {
    const tg_tensor *x = call->inputs[0];
    if (x->ndim != 4) return tg_op_fail(call, TG_ERR_SHAPE, "expected x [N,C,H,W]");
    out->ndim = 2;
    out->dims[0] = x->shape[0];
    out->dims[1] = x->shape[1];
    return TG_OK;
}

static tg_status global_avg_pool_forward(tg_op_call *call) {
    const tg_tensor *x = call->inputs[0];
    int64_t area = x->shape[2] * x->shape[3];
    for (int64_t plane = 0; plane < call->output->size; plane++) {
        const float *xs = x->data + plane * area;
        double sum = 0.0;
        for (int64_t i = 0; i < area; i++) sum += xs[i];
        call->output->data[plane] = (float)(sum / (double)area);
    }
    return TG_OK;
}

static tg_status global_avg_pool_backward(const tg_op_call *call) {
    const tg_tensor *x = call->inputs[0];
    if (!x->grad) return TG_OK;
    int64_t area = x->shape[2] * x->shape[3];
    for (int64_t plane = 0; plane < call->output->size; plane++) {
        float share = call->output->grad[plane] / (float)area;
        for (int64_t i = 0; i < area; i++) x->grad[plane * area + i] += share;
    }
    return TG_OK;
}

/* ---- registry entries ---------------------------------------------------------------------- */

#define POOL_ATTRS(kh, kw, sh, sw, ph, pw) \
    {.i64 = kh}, {.i64 = kw}, {.i64 = sh}, {.i64 = sw}, {.i64 = ph}, {.i64 = pw}
/* Max pool inputs are spread apart (TGI_DOMAIN_DISTINCT) so that the finite differences never
 * swap a window's maximum. */
static const tgi_example max_pool_inputs[] = {
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_DISTINCT, 2, 2, 4, 4), POOL_ATTRS(2, 2, 2, 2, 0, 0)),
    /* overlapping windows with padding */
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_DISTINCT, 1, 2, 5, 5), POOL_ATTRS(3, 3, 2, 2, 1, 1)),
    /* a 3x1 window, stride 1 across the width */
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_DISTINCT, 2, 1, 5, 3), POOL_ATTRS(3, 1, 2, 1, 1, 0)),
};
/* x spread apart as for max_pool2d; t anything */
#define TANGENT_INPUTS(...) \
    TGI_INPUT(TGI_DOMAIN_DISTINCT, __VA_ARGS__), TGI_INPUT(TGI_DOMAIN_ANY, __VA_ARGS__)
static const tgi_example max_pool_tangent_inputs[] = {
    {.n_inputs = 2, .inputs = {TANGENT_INPUTS(2, 2, 4, 4)}, .attrs = {POOL_ATTRS(2, 2, 2, 2, 0, 0)}},
    {.n_inputs = 2, .inputs = {TANGENT_INPUTS(1, 2, 5, 5)}, .attrs = {POOL_ATTRS(3, 3, 2, 2, 1, 1)}},
};
static const tgi_example avg_pool_inputs[] = {
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 2, 2, 4, 4), POOL_ATTRS(2, 2, 2, 2, 0, 0)),
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 1, 2, 5, 5), POOL_ATTRS(3, 3, 2, 2, 1, 1)),
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 2, 1, 5, 4), POOL_ATTRS(3, 2, 1, 2, 1, 1)),
};
static const tgi_example global_avg_pool_inputs[] = {
    TGI_ONE_INPUT(TGI_INPUT(TGI_DOMAIN_ANY, 2, 3, 3, 2)),
};
static const tgi_examples max_pool_examples = TGI_EXAMPLES(max_pool_inputs);
static const tgi_examples max_pool_tangent_examples = TGI_EXAMPLES(max_pool_tangent_inputs);
static const tgi_examples avg_pool_examples = TGI_EXAMPLES(avg_pool_inputs);
static const tgi_examples global_avg_pool_examples = TGI_EXAMPLES(global_avg_pool_inputs);

#define POOL_SIGNATURE "kernel_h:i64,kernel_w:i64,stride_h:i64,stride_w:i64,pad_h:i64,pad_w:i64"
const tg_op_def tgi_pool_defs[] = {
    {"max_pool2d", 1, POOL_SIGNATURE, pool_infer, max_pool_forward, max_pool_backward,
     tgi_example_from_spec, (void *)&max_pool_examples, max_pool2d_jvp},
    {"avg_pool2d", 1, POOL_SIGNATURE, pool_infer, avg_pool_forward, avg_pool_backward,
     tgi_example_from_spec, (void *)&avg_pool_examples, tgi_jvp_linear},
    {"global_avg_pool2d", 1, "", global_avg_pool_infer, global_avg_pool_forward,
     global_avg_pool_backward, tgi_example_from_spec, (void *)&global_avg_pool_examples,
     tgi_jvp_linear},
};
const int tgi_pool_count = sizeof tgi_pool_defs / sizeof tgi_pool_defs[0];

/* Registered after the ops above (its id comes late in TGI_BUILTIN_OPS). */
const tg_op_def tgi_pool_tangent_defs[] = {
    KERNEL_DEF_JVP(max_pool2d_tangent, 2, POOL_SIGNATURE, max_pool_tangent_infer,
                   max_pool_tangent_examples, max_pool2d_tangent_jvp),
};
const int tgi_pool_tangent_count = sizeof tgi_pool_tangent_defs / sizeof tgi_pool_tangent_defs[0];

/* stride 0 means the kernel size (PyTorch's stride=None). */
static tg_tensor *pool_call(tg_tape *tape, int id, tg_tensor *x, int kernel_h, int kernel_w,
                            int stride_h, int stride_w, int pad_h, int pad_w) {
    tg_attr_value attrs[6] = {{.i64 = kernel_h}, {.i64 = kernel_w},
                              {.i64 = stride_h ? stride_h : kernel_h},
                              {.i64 = stride_w ? stride_w : kernel_w},
                              {.i64 = pad_h},    {.i64 = pad_w}};
    return tgi_call_builtin(tape, id, &x, 1, attrs);
}

tg_tensor *tg_max_pool2d(tg_tape *tape, tg_tensor *x, int kernel_h, int kernel_w, int stride_h,
                         int stride_w, int pad_h, int pad_w) {
    return pool_call(tape, TGI_OP_MAX_POOL2D, x, kernel_h, kernel_w, stride_h, stride_w, pad_h,
                     pad_w);
}

tg_tensor *tg_avg_pool2d(tg_tape *tape, tg_tensor *x, int kernel_h, int kernel_w, int stride_h,
                         int stride_w, int pad_h, int pad_w) {
    return pool_call(tape, TGI_OP_AVG_POOL2D, x, kernel_h, kernel_w, stride_h, stride_w, pad_h,
                     pad_w);
}

tg_tensor *tg_global_avg_pool2d(tg_tape *tape, tg_tensor *x) {
    return tgi_unary(tape, TGI_OP_GLOBAL_AVG_POOL2D, x);
}

tg_tensor *tg_flatten(tg_tape *tape, tg_tensor *x) {
    if (!tape) return NULL;
    if (!x) return tgi_unary(tape, TGI_OP_RESHAPE, x); /* reports the NULL input */
    if (x->ndim < 1) {
        tgi_error(tape->ctx, TG_ERR_SHAPE, "flatten: x is a scalar; expected [N, ...]");
        return NULL;
    }
    return tg_reshape(tape, x, 2, (const int64_t[]){x->shape[0], -1});
}
