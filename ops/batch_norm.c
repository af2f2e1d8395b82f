/*
 * ops/batch_norm.c — batch normalisation, alone or fused with what follows it in a ResNet
 * block: batch_norm_relu is relu(batch_norm(x) + residual), the residual optional.
 *
 * Why fused: in a basic block at 32x32 the elementwise passes around the convolutions took a
 * quarter of the step — batch norm's statistics and its backward, then the ReLU's and the
 * residual add's passes forward and backward, each reading and writing 2 MiB. The fused op
 * reads x once for the statistics and once to write y, and backward reads dY, y (the ReLU's
 * mask: y > 0 exactly where the pre-activation is) and x twice, writing dX and the residual's
 * gradient, with no intermediate tensors.
 *
 * x is seen as [N, C, S] (S the spatial size, 1 for [N, C]); channel c is N runs of S
 * contiguous elements. Channels are independent, so threads split channels: each channel's
 * sums run in one fixed order whatever the thread count. Sums go over eight float lanes in
 * chunks of CHUNK elements of a run, each chunk's lanes added into double totals in a fixed
 * order: the loops run at the vector width and a float sum never spans more than CHUNK / 8
 * terms. The fused op computes exactly what batch_norm, add and relu compute one after the
 * other (the same expressions, in the same order), so the two give the same bits.
 */
#include "ops/kernels.h"
#include "ops/simd.h"

#include <math.h>
#include <string.h>

#define CHUNK 256

typedef int32_t i8 __attribute__((vector_size(32)));

static inline double lanes_sum(tgi_v8 v) {
    double total = 0.0;
    for (int l = 0; l < 8; l++) total += v[l];
    return total;
}

/* What both ops share: x as [N, C, S], the attributes, and the optional fused parts. */
typedef struct bn_job {
    const tg_op_call *call;
    int64_t n, c, s, count;          /* count = N S values per channel */
    bool train, relu;
    const tg_tensor *residual;       /* batch_norm_relu's sixth input, else NULL */
    float *mean, *inv_std;           /* saved for backward: [C] each */
    float *variance;                 /* forward, training: the biased batch variance [C] */
} bn_job;

static bn_job job_of(const tg_op_call *call, bool train) {
    const tg_tensor *x = call->inputs[0];
    bn_job j = {call, x->shape[0], x->shape[1], 0, 0, train, call->op_id == TGI_OP_BATCH_NORM_RELU,
                call->n_inputs == 6 ? call->inputs[5] : NULL, NULL, NULL, NULL};
    j.s = x->size / (j.n * j.c);
    j.count = j.n * j.s;
    return j;
}

/* Channels a thread takes at least: a channel of a few values is not worth a hand-over. */
static int64_t channel_grain(const bn_job *j) {
    return j->count >= 4096 ? 1 : 4096 / j->count + 1;
}

/* ---- forward ------------------------------------------------------------------------------- */

/* WAYS whole chunks at a time, each summed in its own lanes: WAYS independent chains of adds
 * where one chunk alone waits on the add's latency at every step (the statistics ran at about a
 * third of the load rate); the chunks' sums are then added to the totals in chunk order, so the
 * numbers are those of one chunk at a time. The backward's sums keep one chunk at a time: with
 * three inputs and a store per vector, two chunks side by side made them slower. */
#define WAYS 4

/* sum of x (center 0) or of (x - center)^2 over one run of n values */
TGI_ALWAYS_INLINE static inline double run_sum_as(const float *x, int64_t n, float center,
                                                  bool square) {
    double total = 0.0;
    int64_t i = 0;
    const tgi_v8 m = tgi_splat8(center);
    for (; i + WAYS * CHUNK <= n; i += WAYS * CHUNK) {
        tgi_v8 acc[WAYS] = {{0}};
        for (int64_t p = i; p < i + CHUNK; p += 8)
            for (int w = 0; w < WAYS; w++) {
                tgi_v8 d = tgi_load8(x + p + w * CHUNK) - m;
                acc[w] += square ? d * d : d;
            }
        for (int w = 0; w < WAYS; w++) total += lanes_sum(acc[w]);
    }
    while (i + 8 <= n) {
        tgi_v8 acc = {0};
        int64_t end = i + CHUNK < n ? i + CHUNK : n;
        for (; i + 8 <= end; i += 8) {
            tgi_v8 d = tgi_load8(x + i) - m;
            acc += square ? d * d : d;
        }
        total += lanes_sum(acc);
    }
    for (; i < n; i++) {
        float d = x[i] - center;
        total += square ? (double)d * d : (double)d;
    }
    return total;
}

static double run_sum(const float *x, int64_t n) { return run_sum_as(x, n, 0.0f, false); }

static double run_squares(const float *x, int64_t n, float center) {
    return run_sum_as(x, n, center, true);
}

/* Channel k's batch statistics: mean, 1/sqrt(biased variance + eps), the variance. */
static void channel_stats(bn_job *j, int64_t k, const float *x, float eps) {
    double sum = 0.0, sq = 0.0;
    for (int64_t r = 0; r < j->n; r++) sum += run_sum(x + (r * j->c + k) * j->s, j->s);
    float mu = (float)(sum / (double)j->count);
    for (int64_t r = 0; r < j->n; r++) sq += run_squares(x + (r * j->c + k) * j->s, j->s, mu);
    j->mean[k] = mu;
    j->variance[k] = (float)(sq / (double)j->count);
    j->inv_std[k] = (float)(1.0 / sqrt(sq / (double)j->count + eps));
}

/* Channels [begin, end): statistics (training), then y = gamma (x - mean) inv_std + beta, plus
 * the residual and through the ReLU when fused. Three statements, as three ops would write them:
 * a multiply-add is never contracted across them, so the fused and unfused ops agree. */
static void forward_channels(void *arg, int64_t begin, int64_t end) {
    bn_job *j = arg;
    const tg_op_call *call = j->call;
    const float *x = call->inputs[0]->data, *gamma = call->inputs[1]->data;
    const float *beta = call->inputs[2]->data, *res = j->residual ? j->residual->data : NULL;
    float *y = call->output->data;
    for (int64_t k = begin; k < end; k++) {
        if (j->train) channel_stats(j, k, x, call->attrs[1].f32);
        float mu = j->mean[k], inv = j->inv_std[k], gk = gamma[k], bk = beta[k];
        for (int64_t r = 0; r < j->n; r++) {
            int64_t at = (r * j->c + k) * j->s, stop = at + j->s;
            if (!j->relu)
                for (; at < stop; at++) y[at] = gk * (x[at] - mu) * inv + bk;
            else if (res)
                for (; at < stop; at++) {
                    float z = gk * (x[at] - mu) * inv + bk;
                    z = z + res[at];
                    y[at] = z <= 0.0f ? 0.0f : z;
                }
            else
                for (; at < stop; at++) {
                    float z = gk * (x[at] - mu) * inv + bk;
                    y[at] = z <= 0.0f ? 0.0f : z;
                }
        }
    }
}

static tg_status bn_forward(tg_op_call *call) {
    bn_job j = job_of(call, call->attrs[2].b);
    /* saved: mean, inv_std; then the variances, which backward does not read */
    float *stats = tg_op_save_for_backward(call, 3 * (size_t)j.c * sizeof(float));
    if (!stats) return TG_ERR_NOMEM;
    j.mean = stats, j.inv_std = stats + j.c, j.variance = stats + 2 * j.c;
    float momentum = call->attrs[0].f32, eps = call->attrs[1].f32;
    float *running_mean = call->inputs[3]->data, *running_var = call->inputs[4]->data;
    if (!j.train) {
        for (int64_t k = 0; k < j.c; k++) {
            j.mean[k] = running_mean[k];
            j.inv_std[k] = 1.0f / sqrtf(running_var[k] + eps);
        }
    }
    tgi_parallel_for(call->tape->ctx, j.c, channel_grain(&j), forward_channels, &j);
    if (j.train) {
        float unbias = (float)j.count / (float)(j.count - 1);
        for (int64_t k = 0; k < j.c; k++) {
            running_mean[k] = (1.0f - momentum) * running_mean[k] + momentum * j.mean[k];
            running_var[k] = (1.0f - momentum) * running_var[k] + momentum * unbias * j.variance[k];
        }
    }
    return TG_OK;
}

/* ---- backward ------------------------------------------------------------------------------ */

/* The gradient reaching the normalisation: dY, or dY where the ReLU passed its input (y > 0),
 * as relu's backward multiplies it (by 1 or 0, so a NaN in dY stays one). */
static inline tgi_v8 masked8(const float *gy, const float *y, int64_t i) {
    if (!y) return tgi_load8(gy + i);
    i8 pass = tgi_load8(y + i) > tgi_splat8(0.0f);
    i8 one = (i8)tgi_splat8(1.0f);
    return tgi_load8(gy + i) * (tgi_v8)(pass & one);
}

static inline float masked1(const float *gy, const float *y, int64_t i) {
    return y ? gy[i] * (y[i] > 0.0f ? 1.0f : 0.0f) : gy[i];
}

/* Over one run: sums[0] += sum of g, sums[1] += sum of g xhat (g the masked gradient); and,
 * when dres is given, the residual's gradient g written (fresh) or added. */
static void run_grad_sums(const float *x, const float *gy, const float *y, int64_t n, float mu,
                          float inv, float *dres, bool res_fresh, double sums[2]) {
    const tgi_v8 m = tgi_splat8(mu), s = tgi_splat8(inv);
    int64_t i = 0;
    while (i + 8 <= n) {
        tgi_v8 g_sum = {0}, gx_sum = {0};
        int64_t end = i + CHUNK < n ? i + CHUNK : n;
        for (; i + 8 <= end; i += 8) {
            tgi_v8 g = masked8(gy, y, i);
            g_sum += g;
            gx_sum += g * ((tgi_load8(x + i) - m) * s);
            if (dres) {
                tgi_v8 r = res_fresh ? g : tgi_load8(dres + i) + g;
                memcpy(dres + i, &r, sizeof r);
            }
        }
        sums[0] += lanes_sum(g_sum), sums[1] += lanes_sum(gx_sum);
    }
    for (; i < n; i++) {
        float g = masked1(gy, y, i), xhat = (x[i] - mu) * inv;
        sums[0] += g;
        sums[1] += (double)g * xhat;
        if (dres) dres[i] = res_fresh ? g : dres[i] + g;
    }
}

/* One channel's dX over one run, with d = g gamma:
 *   batch statistics: dx = inv_std / n (n d - sum(d) - xhat sum(d xhat));
 *   fixed (evaluation): dx = d inv_std.
 * Eight at a time, then one by one: the same expressions, so every element gets the same bits
 * wherever the run's tail falls. */
static void run_input_grad(const bn_job *j, int64_t at, int64_t k, double sd, double sdx,
                           float *gx, bool fresh) {
    const tg_op_call *call = j->call;
    const float *x = call->inputs[0]->data, *gy = call->output->grad;
    const float *y = j->relu ? call->output->data : NULL;
    float mu = j->mean[k], inv = j->inv_std[k], gk = call->inputs[1]->data[k];
    float n = (float)j->count, fsd = (float)sd, fsdx = (float)sdx, scale = inv / n;
    const tgi_v8 vmu = tgi_splat8(mu), vinv = tgi_splat8(inv), vgk = tgi_splat8(gk);
    const tgi_v8 vn = tgi_splat8(n);
    const tgi_v8 vsd = tgi_splat8(fsd), vsdx = tgi_splat8(fsdx), vscale = tgi_splat8(scale);
    int64_t i = at, end = at + j->s;
    for (; i + 8 <= end; i += 8) {
        tgi_v8 g = masked8(gy, y, i), base = fresh ? tgi_splat8(0.0f) : tgi_load8(gx + i), d;
        if (j->train) {
            tgi_v8 xhat = (tgi_load8(x + i) - vmu) * vinv;
            d = base + vscale * (vn * (g * vgk) - vsd - xhat * vsdx);
        } else {
            d = base + g * vgk * vinv;
        }
        memcpy(gx + i, &d, sizeof d);
    }
    for (; i < end; i++) {
        float g = masked1(gy, y, i), base = fresh ? 0.0f : gx[i];
        if (j->train) {
            float xhat = (x[i] - mu) * inv;
            gx[i] = base + scale * (n * (g * gk) - fsd - xhat * fsdx);
        } else {
            gx[i] = base + g * gk * inv;
        }
    }
}

/* Channels [begin, end): the sums of the masked gradient (dgamma, dbeta), the residual's
 * gradient, then dX. Each channel's gamma and beta gradients are written by its thread only. */
static void backward_channels(void *arg, int64_t begin, int64_t end) {
    const bn_job *j = arg;
    const tg_op_call *call = j->call;
    tg_tensor *x = call->inputs[0], *gamma = call->inputs[1], *beta = call->inputs[2];
    const float *gy = call->output->grad, *y = j->relu ? call->output->data : NULL;
    float *dres = j->residual ? j->residual->grad : NULL;
    bool res_fresh = dres && j->residual->grad_fresh;
    for (int64_t k = begin; k < end; k++) {
        double sums[2] = {0};
        float mu = j->mean[k], inv = j->inv_std[k];
        for (int64_t r = 0; r < j->n; r++) {
            int64_t at = (r * j->c + k) * j->s;
            run_grad_sums(x->data + at, gy + at, y ? y + at : NULL, j->s, mu, inv,
                          dres ? dres + at : NULL, res_fresh, sums);
        }
        if (gamma->grad)
            gamma->grad[k] = (gamma->grad_fresh ? 0.0f : gamma->grad[k]) + (float)sums[1];
        if (beta->grad) beta->grad[k] = (beta->grad_fresh ? 0.0f : beta->grad[k]) + (float)sums[0];
        if (!x->grad) continue;
        double gk = gamma->data[k];
        for (int64_t r = 0; r < j->n; r++)
            run_input_grad(j, (r * j->c + k) * j->s, k, gk * sums[0], gk * sums[1], x->grad,
                           x->grad_fresh);
    }
}

static tg_status bn_backward(const tg_op_call *call) {
    bn_job j = job_of(call, call->attrs[2].b);
    float *stats = call->saved;
    j.mean = stats, j.inv_std = stats + j.c;
    /* (x given also as the residual: the walk settled its fresh gradient, both parts add) */
    tgi_parallel_for(call->tape->ctx, j.c, channel_grain(&j), backward_channels, &j);
    for (int i = 0; i < call->n_inputs; i++)
        if (i != 3 && i != 4) call->inputs[i]->grad_fresh = false;
    return TG_OK;
}

/* ---- forward mode -------------------------------------------------------------------------- */

static tg_status batch_norm_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    bool train = call->attrs[2].b;
    return tgi_normalize_jvp(call, t, out, call->attrs[1].f32, train ? NULL : call->inputs[3],
                             train ? NULL : call->inputs[4]);
}

/* relu'(z) (dbn + dresidual), with relu'(z) read off y: y > 0 exactly where z > 0. */
static tg_status batch_norm_relu_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    tg_tensor *dz = NULL;
    tg_status status = batch_norm_jvp(call, t, &dz);
    if (status != TG_OK) return status;
    if (call->n_inputs == 6 && t[5]) {
        tg_tensor *sum = tgi_tangent_add(call->tape, dz, t[5]);
        if (!sum) return tg_errcode(call->tape->ctx);
        dz = sum;
    }
    if (!dz) {
        *out = NULL;
        return TG_OK;
    }
    *out = tgi_derivative_times(call->tape, TGI_OP_RELU, 1, call->output, dz, NULL);
    return *out ? TG_OK : tg_errcode(call->tape->ctx);
}

/* ---- registry entries ---------------------------------------------------------------------- */

static tg_status bn_infer(const tg_op_call *call, tg_shape *out) {
    const tg_tensor *x = call->inputs[0];
    bool fused = call->op_id == TGI_OP_BATCH_NORM_RELU;
    if (fused && (call->n_inputs < 5 || call->n_inputs > 6))
        return tg_op_fail(call, TG_ERR_INVALID, "takes x, gamma, beta, running mean, running var "
                          "and an optional residual (%d inputs given)", call->n_inputs);
    if (x->ndim < 2)
        return tg_op_fail(call, TG_ERR_SHAPE, "expected x [N,C], [N,C,L] or [N,C,H,W]");
    for (int i = 1; i < 5; i++)
        if (call->inputs[i]->ndim != 1 || call->inputs[i]->shape[0] != x->shape[1])
            return tg_op_fail(call, TG_ERR_SHAPE, "input %d must be [%lld] (gamma, beta, "
                              "running mean, running var)", i, (long long)x->shape[1]);
    if (call->n_inputs == 6 && !tgi_same_shape(call->inputs[5], x))
        return tg_op_fail(call, TG_ERR_SHAPE, "the residual must have x's shape");
    if (!(call->attrs[1].f32 > 0.0f))
        return tg_op_fail(call, TG_ERR_INVALID, "eps must be > 0");
    if (!(call->attrs[0].f32 >= 0.0f && call->attrs[0].f32 <= 1.0f))
        return tg_op_fail(call, TG_ERR_INVALID, "momentum must be in [0, 1]");
    if (call->attrs[2].b && x->size / x->shape[1] < 2)
        return tg_op_fail(call, TG_ERR_SHAPE, "training needs more than one value per channel");
    return tgi_infer_like_input(call, out);
}

#define BN_INPUTS                                                                               \
    TGI_INPUT(TGI_DOMAIN_ANY, 6, 3), TGI_INPUT(TGI_DOMAIN_POSITIVE, 3),                         \
        TGI_INPUT(TGI_DOMAIN_ANY, 3), TGI_CONST_INPUT(TGI_DOMAIN_ANY, 0, 3),                    \
        TGI_CONST_INPUT(TGI_DOMAIN_POSITIVE, 0, 3)
/* [N, C, L] and [N, C, H, W]: statistics per channel over N and the spatial dims */
#define BN_SPATIAL_INPUTS(...)                                                                  \
    TGI_INPUT(TGI_DOMAIN_ANY, __VA_ARGS__), TGI_INPUT(TGI_DOMAIN_POSITIVE, 2),                  \
        TGI_INPUT(TGI_DOMAIN_ANY, 2), TGI_CONST_INPUT(TGI_DOMAIN_ANY, 0, 2),                    \
        TGI_CONST_INPUT(TGI_DOMAIN_POSITIVE, 0, 2)
#define BN_ATTRS(TRAIN) {{.f32 = 0.1f}, {.f32 = 1e-5f}, {.b = (TRAIN)}}
static const tgi_example batch_norm_inputs[] = {
    {.n_inputs = 5, .inputs = {BN_INPUTS}, .attrs = BN_ATTRS(true)},
    {.n_inputs = 5, .inputs = {BN_INPUTS}, .attrs = BN_ATTRS(false)},
    {.n_inputs = 5, .inputs = {BN_SPATIAL_INPUTS(3, 2, 4)}, .attrs = BN_ATTRS(true)},
    {.n_inputs = 5, .inputs = {BN_SPATIAL_INPUTS(2, 2, 3, 2)}, .attrs = BN_ATTRS(true)},
    {.n_inputs = 5, .inputs = {BN_SPATIAL_INPUTS(2, 2, 2, 3)}, .attrs = BN_ATTRS(false)},
};
static const tgi_example batch_norm_relu_inputs[] = {
    {.n_inputs = 5, .inputs = {BN_INPUTS}, .attrs = BN_ATTRS(true)},
    {.n_inputs = 6,
     .inputs = {BN_SPATIAL_INPUTS(2, 2, 3, 2), TGI_INPUT(TGI_DOMAIN_ANY, 2, 2, 3, 2)},
     .attrs = BN_ATTRS(true)},
    {.n_inputs = 6, .inputs = {BN_SPATIAL_INPUTS(3, 2, 4), TGI_INPUT(TGI_DOMAIN_ANY, 3, 2, 4)},
     .attrs = BN_ATTRS(false)},
};
static const tgi_examples batch_norm_examples = TGI_EXAMPLES(batch_norm_inputs);
static const tgi_examples batch_norm_relu_examples = TGI_EXAMPLES(batch_norm_relu_inputs);

const tg_op_def tgi_batch_norm_defs[] = {
    {"batch_norm", 5, "momentum:f32,eps:f32,train:bool", bn_infer, bn_forward, bn_backward,
     tgi_example_from_spec, (void *)&batch_norm_examples, batch_norm_jvp},
    {"batch_norm_relu", TG_VARIADIC, "momentum:f32,eps:f32,train:bool", bn_infer, bn_forward,
     bn_backward, tgi_example_from_spec, (void *)&batch_norm_relu_examples, batch_norm_relu_jvp},
};
const int tgi_batch_norm_count = sizeof tgi_batch_norm_defs / sizeof tgi_batch_norm_defs[0];

tg_tensor *tg_batch_norm(tg_tape *tape, tg_tensor *x, tg_tensor *gamma, tg_tensor *beta,
                         tg_tensor *running_mean, tg_tensor *running_var, float momentum,
                         float eps, bool train) {
    tg_tensor *inputs[5] = {x, gamma, beta, running_mean, running_var};
    tg_attr_value attrs[3] = {{.f32 = momentum}, {.f32 = eps}, {.b = train}};
    return tgi_call_builtin(tape, TGI_OP_BATCH_NORM, inputs, 5, attrs);
}

tg_tensor *tg_batch_norm_relu(tg_tape *tape, tg_tensor *x, tg_tensor *gamma, tg_tensor *beta,
                              tg_tensor *running_mean, tg_tensor *running_var,
                              tg_tensor *residual, float momentum, float eps, bool train) {
    tg_tensor *inputs[6] = {x, gamma, beta, running_mean, running_var, residual};
    tg_attr_value attrs[3] = {{.f32 = momentum}, {.f32 = eps}, {.b = train}};
    return tgi_call_builtin(tape, TGI_OP_BATCH_NORM_RELU, inputs, residual ? 6 : 5, attrs);
}
