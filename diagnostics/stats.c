/*
 * diagnostics/stats.c — gradient and activation statistics, clipping hooks and global-norm
 * clipping.
 */
#include "autograd/internal.h"

#include <math.h>
#include <string.h>

void tg_stats_compute(const float *values, int64_t n, tg_stats *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!values || n < 0) return; /* nothing to read: the statistics of no values */
    out->count = n;
    double sum = 0.0, sum_sq = 0.0;
    int64_t finite = 0, zeros = 0;
    for (int64_t i = 0; i < n; i++) {
        float v = values[i];
        if (isnan(v)) {
            out->n_nan++;
            continue;
        }
        if (isinf(v)) {
            out->n_inf++;
            continue;
        }
        finite++;
        zeros += v == 0.0f;
        sum += v;
        sum_sq += (double)v * v;
        if (fabs(v) > out->max_abs) out->max_abs = fabs(v);
    }
    /* A norm of the finite values alone would read an all-NaN gradient as 0, i.e. vanished:
     * like torch.linalg.norm, any NaN makes the norm (and max_abs) NaN, any Inf makes it Inf. */
    if (out->n_nan) out->l2_norm = out->max_abs = NAN;
    else if (out->n_inf) out->l2_norm = out->max_abs = INFINITY;
    else out->l2_norm = sqrt(sum_sq);
    out->zero_fraction = n ? (double)zeros / (double)n : 0.0;
    if (finite) {
        out->mean = sum / (double)finite;
        double variance = sum_sq / (double)finite - out->mean * out->mean;
        out->std = variance > 0.0 ? sqrt(variance) : 0.0;
    }
}

#define SATURATION_MARGIN 0.01

static double saturated_fraction(const tg_tensor *t, double low, double high) {
    int64_t saturated = 0;
    for (int64_t i = 0; i < t->size; i++)
        saturated += t->data[i] <= low + SATURATION_MARGIN || t->data[i] >= high - SATURATION_MARGIN;
    return t->size ? (double)saturated / (double)t->size : 0.0;
}

/* A unit is dead when it is 0 for every sample of the batch: a unit is a position along the
 * last axis, or of a convolution's NCHW output a channel (0 at every sample and pixel). */
static double dead_fraction(const tg_tensor *t) {
    bool channels = t->ndim == 4;
    int64_t units = channels ? t->shape[1] : t->ndim ? t->shape[t->ndim - 1] : 1;
    int64_t inner = channels ? t->shape[2] * t->shape[3] : 1, dead = 0;
    int64_t rows = units * inner != 0 ? t->size / (units * inner) : 0;
    for (int64_t u = 0; u < units; u++) {
        bool alive = false;
        for (int64_t r = 0; r < rows && !alive; r++) {
            const float *at = t->data + (r * units + u) * inner;
            for (int64_t k = 0; k < inner && !alive; k++) alive = at[k] != 0.0f;
        }
        dead += !alive;
    }
    return units ? (double)dead / (double)units : 0.0;
}

/* The activated gates [B, 4H] (i f g o) an LSTM's h[t] was made from: lstm_hidden's first
 * input, reached through the tape (so only for a recorded node); NULL when it cannot be. */
static const tg_tensor *lstm_gates_of(const tg_tensor *h) {
    const tg_tape *tape = h->tape;
    if (!tape || h->node < 0 || h->node >= tape->n_entries) return NULL;
    const tg_op_call *call = &tape->entries[h->node]->call;
    const tg_tensor *gates = call->n_inputs >= 1 ? call->inputs[0] : NULL;
    if (call->output != h || !gates || gates->ndim != 2 || gates->shape[1] % 4) return NULL;
    return gates;
}

/* The forget gate (the second block of H columns): saturated within the margin of 0 or 1,
 * and closed (near 0). */
static void forget_fractions(const tg_tensor *gates, tg_activation_stats *out) {
    int64_t rows = gates->shape[0], hidden = gates->shape[1] / 4, closed = 0, saturated = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < hidden; j++) {
            float f = gates->data[r * 4 * hidden + hidden + j];
            closed += f <= SATURATION_MARGIN;
            saturated += f <= SATURATION_MARGIN || f >= 1.0 - SATURATION_MARGIN;
        }
    double n = (double)(rows * hidden);
    out->forget_saturated_fraction = n > 0 ? (double)saturated / n : 0.0;
    out->forget_closed_fraction = n > 0 ? (double)closed / n : 0.0;
}

void tg_activation_stats_compute(const tg_tensor *node, tg_activation_stats *out) {
    if (!out) return;
    out->saturated_fraction = out->dead_fraction = -1.0;
    out->forget_saturated_fraction = out->forget_closed_fraction = -1.0;
    if (!node || tgi_refuse_stale(node, "activation_stats_compute") != TG_OK) return;
    const char *op = tg_tensor_op_name(node);
    const tg_tensor *gates;
    /* a plain RNN's h[t] is tanh of its pre-activation */
    if (strcmp(op, "sigmoid") == 0) out->saturated_fraction = saturated_fraction(node, 0.0, 1.0);
    else if (strcmp(op, "tanh") == 0 || strcmp(op, "rnn_cell") == 0)
        out->saturated_fraction = saturated_fraction(node, -1.0, 1.0);
    else if (strcmp(op, "relu") == 0) out->dead_fraction = dead_fraction(node);
    else if (strcmp(op, "lstm_hidden") == 0 && (gates = lstm_gates_of(node))) forget_fractions(gates, out);
}

/* The two built-in hooks need an event with values and their `user` limit. */
static tg_status check_clip_args(tg_ctx *ctx, const char *what, const tg_hook_event *event,
                                 const void *user) {
    if (event && (event->values || event->size == 0) && user) return TG_OK;
    return tgi_error(ctx, TG_ERR_INVALID, "%s: needs an event with values and a limit as user "
                     "data (a const float *)", what);
}

tg_status tg_hook_clip_value(tg_ctx *ctx, const tg_hook_event *event, void *user) {
    if (check_clip_args(ctx, "hook_clip_value", event, user) != TG_OK) return TG_ERR_INVALID;
    float limit = *(const float *)user;
    /* compares, not fminf/fmaxf: those return the limit for a NaN, hiding it from every later
     * check (torch.clamp keeps NaN too) */
    for (int64_t i = 0; i < event->size; i++) {
        float v = event->values[i];
        event->values[i] = v > limit ? limit : v < -limit ? -limit : v;
    }
    return TG_OK;
}

tg_status tg_hook_clip_norm(tg_ctx *ctx, const tg_hook_event *event, void *user) {
    if (check_clip_args(ctx, "hook_clip_norm", event, user) != TG_OK) return TG_ERR_INVALID;
    double max_norm = *(const float *)user, sum_sq = 0.0;
    for (int64_t i = 0; i < event->size; i++) sum_sq += (double)event->values[i] * event->values[i];
    double norm = sqrt(sum_sq);
    if (norm > max_norm) {
        float factor = (float)(max_norm / norm);
        for (int64_t i = 0; i < event->size; i++) event->values[i] *= factor;
    }
    return TG_OK;
}

/* Sum of |g|^p over the gradient (p = 1, 2), or max |g| (p = inf). */
static double accumulate_norm(const float *g, int64_t n, double p, double acc) {
    for (int64_t i = 0; i < n; i++) {
        double v = fabs((double)g[i]);
        if (isinf(p)) acc = isnan(v) || v > acc ? v : acc;
        else acc += p == 1.0 ? v : v * v;
    }
    return acc;
}

tg_status tg_clip_grad_norm(tg_tensor *const *params, int n_params, double max_norm,
                            double norm_type, bool error_if_nonfinite, double *total_norm) {
    tg_ctx *ctx = n_params > 0 && params && params[0] ? params[0]->ctx : NULL;
    /* no tensor to find the context by, so no message: the status alone */
    if (n_params < 0 || (n_params > 0 && !params)) return TG_ERR_INVALID;
    if (tgi_refuse_stale_list(ctx, params, n_params, "clip_grad_norm") != TG_OK) return TG_ERR_STATE;
    if (!(norm_type == 1.0 || norm_type == 2.0 || isinf(norm_type)) || !(max_norm > 0.0)) {
        if (ctx) tgi_error(ctx, TG_ERR_INVALID, "clip_grad_norm: norm_type %g (1, 2 or inf) and "
                           "max_norm %g (> 0)", norm_type, max_norm);
        return TG_ERR_INVALID;
    }
    double acc = 0.0;
    for (int i = 0; i < n_params; i++)
        if (params[i] && params[i]->grad)
            acc = accumulate_norm(params[i]->grad, params[i]->size, norm_type, acc);
    double total = norm_type == 2.0 ? sqrt(acc) : acc;
    if (total_norm) *total_norm = total;
    if (!isfinite(total)) {
        if (!error_if_nonfinite) return TG_OK;
        return ctx ? tgi_error(ctx, TG_ERR_NUMERIC, "clip_grad_norm: the total gradient norm is "
                               "%g over %d tensors; nothing was clipped", total, n_params)
                   : TG_ERR_NUMERIC;
    }
    if (total > max_norm) {
        float factor = (float)(max_norm / total);
        for (int i = 0; i < n_params; i++)
            if (params[i] && params[i]->grad)
                for (int64_t k = 0; k < params[i]->size; k++) params[i]->grad[k] *= factor;
    }
    return TG_OK;
}
