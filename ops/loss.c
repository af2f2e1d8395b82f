/*
 * ops/loss.c — losses, each fused so that it stays finite for any finite input.
 */
#include "ops/kernels.h"

#include <math.h>

/* ---- mean squared error -------------------------------------------------------------------- */

static tg_status mse_forward(tg_op_call *call) {
    const float *p = call->inputs[0]->data, *t = call->inputs[1]->data;
    int64_t n = call->inputs[0]->size;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(p[i] - t[i]) * (p[i] - t[i]);
    call->output->data[0] = (float)(sum / (double)n);
    return TG_OK;
}

/* dL/dp = 2 (p - t) / n = -dL/dt */
static tg_status mse_backward(const tg_op_call *call) {
    const tg_tensor *pred = call->inputs[0], *target = call->inputs[1];
    float factor = 2.0f * call->output->grad[0] / (float)pred->size;
    for (int64_t i = 0; i < pred->size; i++) {
        float d = factor * (pred->data[i] - target->data[i]);
        if (pred->grad) pred->grad[i] += d;
        if (target->grad) target->grad[i] -= d;
    }
    return TG_OK;
}

/* ---- cross entropy from logits with integer labels ----------------------------------------- */

tg_status tgi_check_labelled_rows(const tg_op_call *call) {
    const tg_tensor *logits = call->inputs[0], *labels = call->inputs[1];
    bool rows_match = logits->ndim >= 2 && labels->ndim == logits->ndim - 1;
    for (int d = 0; rows_match && d < labels->ndim; d++) rows_match = labels->shape[d] == logits->shape[d];
    if (!rows_match)
        return tg_op_fail(call, TG_ERR_SHAPE, "expected logits [N,C] and labels [N] (or [..., C] "
                          "and [...]: a language model's [B,T,V] and [B,T])");
    return TG_OK;
}

static tg_status cross_entropy_infer(const tg_op_call *call, tg_shape *out) {
    if (tgi_check_labelled_rows(call) != TG_OK) return TG_ERR_SHAPE;
    return tgi_infer_scalar(call, out);
}

/* The class index of row r, checked (backward checks again: the labels tensor is the user's and
 * may have changed since the forward, and it is used as an index). */
tg_status tgi_label_at(const tg_op_call *call, int64_t r, int64_t classes, int64_t *index) {
    float label = call->inputs[1]->data[r];
    if (!(label >= 0.0f && label < (float)classes) || label != floorf(label))
        return tg_op_fail(call, TG_ERR_INVALID, "label %g at row %lld is not a class index in "
                          "[0, %lld)", (double)label, (long long)r, (long long)classes);
    *index = (int64_t)label;
    return TG_OK;
}

/* loss_r = log(sum(exp(x))) - x[label] = log_sum - (x[label] - max) */
static tg_status cross_entropy_forward(tg_op_call *call) {
    const tg_tensor *logits = call->inputs[0];
    int64_t classes = logits->shape[logits->ndim - 1], rows = logits->size / classes, label;
    double total = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        if (tgi_label_at(call, r, classes, &label) != TG_OK) return TG_ERR_INVALID;
        const float *x = logits->data + r * classes;
        float max, log_sum = tgi_row_log_sum(x, classes, &max);
        total += (double)log_sum - (double)(x[label] - max);
    }
    call->output->data[0] = (float)(total / (double)rows);
    return TG_OK;
}

/* dL/dlogits = (softmax - onehot) / N; recomputed here rather than stored: one row at a time. */
static tg_status cross_entropy_backward(const tg_op_call *call) {
    const tg_tensor *logits = call->inputs[0];
    if (!logits->grad) return TG_OK;
    int64_t classes = logits->shape[logits->ndim - 1], rows = logits->size / classes, label;
    float factor = call->output->grad[0] / (float)rows;
    for (int64_t r = 0; r < rows; r++) {
        if (tgi_label_at(call, r, classes, &label) != TG_OK) return TG_ERR_INVALID;
        const float *x = logits->data + r * classes;
        float *g = logits->grad + r * classes, max, log_sum = tgi_row_log_sum(x, classes, &max);
        for (int64_t j = 0; j < classes; j++) g[j] += factor * expf((x[j] - max) - log_sum);
        g[label] -= factor;
    }
    return TG_OK;
}

/* ---- binary cross entropy with logits ------------------------------------------------------ */

/* max(x,0) - x t + log(1 + e^-|x|): the textbook form, never exponentiating a positive number */
static tg_status bce_with_logits_forward(tg_op_call *call) {
    const float *x = call->inputs[0]->data, *t = call->inputs[1]->data;
    int64_t n = call->inputs[0]->size;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += fmaxf(x[i], 0.0f) - x[i] * t[i] + log1pf(expf(-fabsf(x[i])));
    call->output->data[0] = (float)(sum / (double)n);
    return TG_OK;
}

/* dL/dx = (sigmoid(x) - t) / n, dL/dt = -x / n */
static tg_status bce_with_logits_backward(const tg_op_call *call) {
    const tg_tensor *logits = call->inputs[0], *targets = call->inputs[1];
    float factor = call->output->grad[0] / (float)logits->size;
    for (int64_t i = 0; i < logits->size; i++) {
        float x = logits->data[i];
                if (logits->grad) logits->grad[i] += factor * (tgi_sigmoid(x) - targets->data[i]);
        if (targets->grad) targets->grad[i] -= factor * x;
    }
    return TG_OK;
}

/* ---- forward-mode rules --------------------------------------------------------------------- */

/* d mean((p - t)^2) = 2 mean((p - t) (dp - dt)) */
static tg_status mse_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    tg_tape *tape = call->tape;
    tg_tensor *d = !t[1] ? t[0] : !t[0] ? tg_neg(tape, t[1]) : tg_sub(tape, t[0], t[1]);
    tg_tensor *diff = tg_sub(tape, call->inputs[0], call->inputs[1]);
    *out = tg_scale(tape, tg_mean(tape, tg_mul(tape, diff, d)), 2.0f);
    return *out ? TG_OK : tg_errcode(tape->ctx);
}

/* d CE = mean over rows of (sum(softmax(x) dx) - dx[label]); the labels do not move */
static tg_status cross_entropy_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    tg_tape *tape = call->tape;
    *out = NULL;
    if (!t[0]) return TG_OK;
    tg_tensor *logits = call->inputs[0], *labels = call->inputs[1];
    int axis = logits->ndim - 1;
    double rows = (double)labels->size;
    tg_tensor *p = tg_softmax_axis(tape, logits, axis);
    tg_tensor *expected = tg_sum(tape, tg_mul(tape, p, t[0]));
    tg_tensor *picked = tg_sum(tape, tgi_call_builtin(tape, TGI_OP_SELECT_CLASS,
                                                      (tg_tensor *[]){t[0], labels}, 2, NULL));
    *out = tg_scale(tape, tg_sub(tape, expected, picked), (float)(1.0 / rows));
    return *out ? TG_OK : tg_errcode(tape->ctx);
}

/* d mean(BCE) = mean((sigmoid(x) - t) dx - x dt) */
static tg_status bce_with_logits_jvp(const tg_op_call *call, tg_tensor *const *t,
                                     tg_tensor **out) {
    tg_tape *tape = call->tape;
    tg_tensor *x = call->inputs[0], *sum = NULL;
    if (t[0]) sum = tg_mul(tape, tg_sub(tape, tg_sigmoid(tape, x), call->inputs[1]), t[0]);
    if (t[1]) {
        tg_tensor *term = tg_mul(tape, x, t[1]);
        sum = !term ? NULL : sum ? tg_sub(tape, sum, term) : tg_neg(tape, term);
    }
    *out = sum ? tg_mean(tape, sum) : NULL;
    return *out ? TG_OK : tg_errcode(tape->ctx);
}

/* ---- registry entries ---------------------------------------------------------------------- */

static const tgi_example mse_inputs[] = {
    {.n_inputs = 2, .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 3, 4), TGI_INPUT(TGI_DOMAIN_ANY, 3, 4)}}};
static const tgi_example cross_entropy_inputs[] = {
    {.n_inputs = 2,
     .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 4, 5), TGI_CONST_INPUT(TGI_DOMAIN_LABELS, 5.0f, 4)}},
    {.n_inputs = 2,
     .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 2, 3, 5), TGI_CONST_INPUT(TGI_DOMAIN_LABELS, 5.0f, 2, 3)}}};
static const tgi_example bce_inputs[] = {
    {.n_inputs = 2, .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, 3, 4), TGI_INPUT(TGI_DOMAIN_UNIT, 3, 4)}}};
static const tgi_examples mse_examples = TGI_EXAMPLES(mse_inputs);
static const tgi_examples cross_entropy_examples = TGI_EXAMPLES(cross_entropy_inputs);
static const tgi_examples bce_examples = TGI_EXAMPLES(bce_inputs);

const tg_op_def tgi_loss_defs[] = {
    KERNEL_DEF_JVP(mse, 2, "", tgi_infer_pair_to_scalar, mse_examples, mse_jvp),
    KERNEL_DEF_JVP(cross_entropy, 2, "", cross_entropy_infer, cross_entropy_examples,
                   cross_entropy_jvp),
    KERNEL_DEF_JVP(bce_with_logits, 2, "", tgi_infer_pair_to_scalar, bce_examples,
                   bce_with_logits_jvp),
};
const int tgi_loss_count = sizeof tgi_loss_defs / sizeof tgi_loss_defs[0];

tg_tensor *tg_mse(tg_tape *tape, tg_tensor *pred, tg_tensor *target) {
    return tgi_binary(tape, TGI_OP_MSE, pred, target);
}

tg_tensor *tg_cross_entropy(tg_tape *tape, tg_tensor *logits, tg_tensor *labels) {
    return tgi_binary(tape, TGI_OP_CROSS_ENTROPY, logits, labels);
}

tg_tensor *tg_bce_with_logits(tg_tape *tape, tg_tensor *logits, tg_tensor *targets) {
    return tgi_binary(tape, TGI_OP_BCE_WITH_LOGITS, logits, targets);
}
