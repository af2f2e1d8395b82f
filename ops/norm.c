/*
 * ops/norm.c — layer normalisation, and the forward-mode rule of both normalisations.
 *
 * Layer norm normalises each row over its features (one contiguous run); batch norm, whose
 * kernels split channels over threads and fuse the ReLU and residual add of a ResNet block,
 * lives in ops/batch_norm.c. The two share the JVP below, which works on either's groups.
 */
#include "ops/kernels.h"

#include <math.h>

typedef struct groups {
    int64_t count, length;   /* number of groups, elements per group */
    int64_t run;             /* a group is length / run runs of `run` contiguous elements */
    int64_t stride, step;    /* distance between the runs of a group, between groups */
} groups;

/* Runs BODY for element i (0..length-1) of group k, at offset `at`. */
#define FOR_EACH_IN_GROUP(g, k, i, at, ...)                                                     \
    for (int64_t run_ = 0, i = 0; run_ < (g).length / (g).run; run_++)                          \
        for (int64_t at = (k) * (g).step + run_ * (g).stride, end_ = at + (g).run; at < end_;   \
             at++, i++) {                                                                       \
            __VA_ARGS__                                                                         \
        }

static groups layer_norm_groups(const tg_tensor *x) {
    int64_t d = x->shape[x->ndim - 1];
    groups g = {x->size / d, d, d, d, d};
    return g;
}

/* Sums over one run of contiguous elements go through LANES double accumulators, combined in a
 * fixed order: the loop vectorises, and the result does not depend on the thread count or on
 * where runs start. A run of one element sums exactly as a plain double loop would. */
#define LANES 4

static double lanes_total(const double *lane, double rest) {
    double total = 0.0;
    for (int l = 0; l < LANES; l++) total += lane[l];
    return total + rest;
}

/* sum(x) and, when mu is given, sum((x - mu)^2), over n elements */
static double run_sum(const float *x, int64_t n, const double *mu) {
    double lane[LANES] = {0}, rest = 0.0, m = mu ? *mu : 0.0;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) {
            double v = (double)x[i + l] - m;
            lane[l] += mu ? v * v : v;
        }
    for (; i < n; i++) rest += mu ? ((double)x[i] - m) * ((double)x[i] - m) : (double)x[i];
    return lanes_total(lane, rest);
}

/* Batch statistics of each group: mean and 1/sqrt(biased variance + eps). */
static void group_stats(const float *x, groups g, float eps, float *mean, float *inv_std,
                        float *variance) {
    int64_t runs = g.length / g.run;
    for (int64_t k = 0; k < g.count; k++) {
        double sum = 0.0, sq = 0.0;
        for (int64_t r = 0; r < runs; r++) sum += run_sum(x + k * g.step + r * g.stride, g.run, NULL);
        double mu = sum / (double)g.length;
        for (int64_t r = 0; r < runs; r++) sq += run_sum(x + k * g.step + r * g.stride, g.run, &mu);
        mean[k] = (float)mu;
        variance[k] = (float)(sq / (double)g.length);
        inv_std[k] = (float)(1.0 / sqrt(sq / (double)g.length + eps));
    }
}

/* y = gamma * (x - mean) * inv_std + beta */
static void normalize(const tg_op_call *call, groups g, const float *mean, const float *inv_std) {
    const float *x = call->inputs[0]->data, *gamma = call->inputs[1]->data,
                *beta = call->inputs[2]->data;
    float *y = call->output->data;
    for (int64_t k = 0; k < g.count; k++) {
        float mu = mean[k], inv = inv_std[k];
        FOR_EACH_IN_GROUP(g, k, i, at, y[at] = gamma[i] * (x[at] - mu) * inv + beta[i];)
    }
}

/* With d = g * gamma and xhat the normalised input, statistics taken from the group:
 *   dx = inv_std / n * (n d - sum(d) - xhat sum(d xhat)); dgamma = sum(g xhat), dbeta = sum(g). */
static void normalize_backward(const tg_op_call *call, groups g, const float *mean,
                               const float *inv_std) {
    const tg_tensor *x = call->inputs[0], *gamma = call->inputs[1], *beta = call->inputs[2];
    const float *gy = call->output->grad;
    for (int64_t k = 0; k < g.count; k++) {
        float mu = mean[k], inv = inv_std[k];
        double sum_d = 0.0, sum_d_xhat = 0.0;
        FOR_EACH_IN_GROUP(g, k, i, at, {
            float xhat = (x->data[at] - mu) * inv;
            float d = gy[at] * gamma->data[i];
            sum_d += d;
            sum_d_xhat += (double)d * xhat;
            if (gamma->grad) gamma->grad[i] += gy[at] * xhat;
            if (beta->grad) beta->grad[i] += gy[at];
        })
        if (!x->grad) continue;
        float n = (float)g.length, sd = (float)sum_d, sdx = (float)sum_d_xhat, *gx = x->grad;
        const float *xs = x->data, *gm = gamma->data;
        FOR_EACH_IN_GROUP(g, k, i, at, {
            float xhat = (xs[at] - mu) * inv;
            gx[at] += inv / n * (n * (gy[at] * gm[i]) - sd - xhat * sdx);
        })
    }
}

/* Saved for backward: mean, then inv_std, per group. */
static float *save_stats(tg_op_call *call, int64_t count) {
    return tg_op_save_for_backward(call, 2 * (size_t)count * sizeof(float));
}

/* ---- layer norm ---------------------------------------------------------------------------- */

static tg_status layer_norm_infer(const tg_op_call *call, tg_shape *out) {
    const tg_tensor *x = call->inputs[0];
    if (x->ndim < 1)
        return tg_op_fail(call, TG_ERR_SHAPE, "expected x [..., D]");
    int64_t d = x->shape[x->ndim - 1];
    for (int i = 1; i < 3; i++)
        if (call->inputs[i]->ndim != 1 || call->inputs[i]->shape[0] != d)
            return tg_op_fail(call, TG_ERR_SHAPE, "gamma and beta must be [%lld]", (long long)d);
    if (!(call->attrs[0].f32 > 0.0f))
        return tg_op_fail(call, TG_ERR_INVALID, "eps must be > 0");
    return tgi_infer_like_input(call, out);
}

static tg_status layer_norm_forward(tg_op_call *call) {
    groups g = layer_norm_groups(call->inputs[0]);
    float *stats = save_stats(call, g.count);
    if (!stats) return TG_ERR_NOMEM;
    /* the variances land in the output buffer, which normalize() then overwrites */
    group_stats(call->inputs[0]->data, g, call->attrs[0].f32, stats, stats + g.count,
                call->output->data);
    normalize(call, g, stats, stats + g.count);
    return TG_OK;
}

static tg_status layer_norm_backward(const tg_op_call *call) {
    groups g = layer_norm_groups(call->inputs[0]);
    const float *stats = call->saved;
    normalize_backward(call, g, stats, stats + g.count);
    return TG_OK;
}

/* ---- forward mode -------------------------------------------------------------------------- */

/*
 * With xhat = (x - mean) inv_std and y = gamma xhat + beta, for statistics taken from the group:
 *   dxhat = inv_std (dx - mean(dx) - xhat mean(dx xhat)),
 * with fixed statistics (batch norm in evaluation): dxhat = inv_std dx; then
 *   dy = gamma dxhat + dgamma xhat + dbeta.
 * All of it with ops on the tape, the statistics computed again from x (not read off the
 * forward's saved buffer), so the tangent can be differentiated in reverse with respect to x
 * and gamma (Hessian-vector products) and is recomputed by a replay. The running statistics
 * are not differentiated, as in the VJP. (Pieces that read only tensors wanting no gradient —
 * a frozen gamma reshaped, the running statistics in evaluation — are computed off the tape
 * like any such op call, so tg_tape_replay refuses that step instead of replaying stale
 * numbers.)
 *
 * Batch norm works on x seen as [N, C, S] (S the spatial size, 1 for [N, C]) with gamma and
 * beta as [1, C, 1]: a group's mean is then a mean over axis 2 and then axis 0. Layer norm's
 * group is the last axis, and gamma and beta [D] broadcast as they are.
 */
typedef struct norm_jvp {
    tg_tape *tape;
    bool batch;      /* batch norm: groups over axes 0 and 2 of [N, C, S]; else the last axis */
    bool spatial;    /* S > 1 */
} norm_jvp;

/* The mean of each group, kept as a size-1 dim where it was taken. */
static tg_tensor *group_mean(const norm_jvp *v, tg_tensor *z) {
    if (!z || !v->batch) return z ? tg_mean_axis(v->tape, z, -1, true) : NULL;
    if (v->spatial && !(z = tg_mean_axis(v->tape, z, 2, true))) return NULL;
    return tg_mean_axis(v->tape, z, 0, true);
}

/* t as [1, C, 1] (batch norm's per-channel vectors) or as it is (layer norm); NULL stays NULL. */
static tg_tensor *per_group(const norm_jvp *v, tg_tensor *t) {
    if (!t || !v->batch) return t;
    return tg_reshape(v->tape, t, 3, (const int64_t[]){1, t->shape[0], 1});
}

/* 1 / sqrt(var + eps) */
static tg_tensor *inverse_std(const norm_jvp *v, tg_tensor *var, float eps) {
    tg_tensor *shifted = var ? tg_add_scalar(v->tape, var, eps) : NULL;
    return shifted ? tg_pow(v->tape, shifted, -0.5f) : NULL;
}

/* A failed op call names itself; NULL from a step here means that. */
#define STEP(dst, expr)                                                                         \
    do {                                                                                        \
        if (!((dst) = (expr))) return tg_errcode(v.tape->ctx);                                  \
    } while (0)

/* The tangent of a normalisation: t[0..2] are those of x, gamma and beta; running_mean and
 * running_var the fixed statistics (batch norm in evaluation), else NULL. */
tg_status tgi_normalize_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out,
                            float eps, tg_tensor *running_mean, tg_tensor *running_var) {
    tg_tensor *x = call->inputs[0], *dx = t[0];
    norm_jvp v = {call->tape, call->op_id != TGI_OP_LAYER_NORM, false};
    if (v.batch) {
        int64_t n = x->shape[0], c = x->shape[1], shape[3] = {n, c, x->size / (n * c)};
        v.spatial = shape[2] > 1;
        STEP(x, tg_reshape(v.tape, x, 3, shape));
        if (dx) STEP(dx, tg_reshape(v.tape, dx, 3, shape));
    }
    tg_tensor *gamma, *mean, *centered, *inv_std, *xhat = NULL, *sum = NULL;
    STEP(gamma, per_group(&v, call->inputs[1]));
    if (running_mean) {
        tg_tensor *var;
        STEP(mean, per_group(&v, running_mean));
        STEP(var, per_group(&v, running_var));
        STEP(inv_std, inverse_std(&v, var, eps));
        STEP(centered, tg_sub(v.tape, x, mean));
    } else {
        tg_tensor *square, *var;
        STEP(mean, group_mean(&v, x));
        STEP(centered, tg_sub(v.tape, x, mean));
        STEP(square, tg_square(v.tape, centered));
        STEP(var, group_mean(&v, square));
        STEP(inv_std, inverse_std(&v, var, eps));
    }
    if (t[1] || (dx && !running_mean)) STEP(xhat, tg_mul(v.tape, centered, inv_std));
    if (dx) {
        tg_tensor *d = dx, *dxhat;
        if (!running_mean) {
            tg_tensor *dx_mean, *dx_xhat, *proj_mean, *along;
            STEP(dx_mean, group_mean(&v, dx));
            STEP(dx_xhat, tg_mul(v.tape, dx, xhat));
            STEP(proj_mean, group_mean(&v, dx_xhat));
            STEP(along, tg_mul(v.tape, xhat, proj_mean));
            STEP(d, tg_sub(v.tape, dx, dx_mean));
            STEP(d, tg_sub(v.tape, d, along));
        }
        STEP(dxhat, tg_mul(v.tape, d, inv_std));
        STEP(sum, tg_mul(v.tape, gamma, dxhat));
    }
    if (t[1]) {
        tg_tensor *dgamma, *term;
        STEP(dgamma, per_group(&v, t[1]));
        STEP(term, tg_mul(v.tape, dgamma, xhat));
        STEP(sum, tgi_tangent_add(v.tape, sum, term));
    }
    if (t[2]) {
        tg_tensor *dbeta, *term;
        STEP(dbeta, per_group(&v, t[2]));
        STEP(term, sum ? dbeta : tgi_tangent_expand(v.tape, dbeta, x));
        STEP(sum, tgi_tangent_add(v.tape, sum, term)); /* broadcasts */
    }
    if (!sum) { /* only the running statistics moved: they are not differentiated */
        *out = NULL;
        return TG_OK;
    }
    if (v.batch) STEP(sum, tg_reshape(v.tape, sum, call->output->ndim, call->output->shape));
    *out = sum;
    return TG_OK;
}

#undef STEP

static tg_status layer_norm_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    return tgi_normalize_jvp(call, t, out, call->attrs[0].f32, NULL, NULL);
}

/* ---- registry entries ---------------------------------------------------------------------- */

static const tgi_example layer_norm_inputs[] = {
    {.n_inputs = 3,
     .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 3, 5), TGI_INPUT(TGI_DOMAIN_POSITIVE, 5),
                TGI_INPUT(TGI_DOMAIN_ANY, 5)},
     .attrs = {{.f32 = 1e-5f}}},
};
static const tgi_examples layer_norm_examples = TGI_EXAMPLES(layer_norm_inputs);

const tg_op_def tgi_norm_defs[] = {
    KERNEL_DEF_JVP(layer_norm, 3, "eps:f32", layer_norm_infer, layer_norm_examples,
                   layer_norm_jvp),
};
const int tgi_norm_count = sizeof tgi_norm_defs / sizeof tgi_norm_defs[0];

tg_tensor *tg_layer_norm(tg_tape *tape, tg_tensor *x, tg_tensor *gamma, tg_tensor *beta,
                         float eps) {
    tg_tensor *inputs[3] = {x, gamma, beta};
    tg_attr_value attrs[1] = {{.f32 = eps}};
    return tgi_call_builtin(tape, TGI_OP_LAYER_NORM, inputs, 3, attrs);
}
