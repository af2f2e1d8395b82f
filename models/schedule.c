/*
 * models/schedule.c — learning-rate schedules: the rate at a step (PyTorch's StepLR,
 * CosineAnnealingLR and LinearLR after a LinearLR warm-up), and the checks an optimizer makes
 * before it follows one (models/optim.c).
 */
#include "models/models.h"

#include <math.h>

/* How far into a span of `span` steps `after` is, in [0, 1] (1 from the end of the span on). */
static double progress(int64_t after, int64_t span) {
    if (span <= 0 || after >= span) return 1.0;
    return (double)after / (double)span;
}

float tgi_schedule_rate(const tg_schedule *s, float lr, int64_t step) {
    if (step < s->warmup_steps) return lr * (float)(step + 1) / (float)s->warmup_steps;
    int64_t after = step - s->warmup_steps, span = s->total_steps - s->warmup_steps;
    switch (s->kind) {
    case TG_SCHEDULE_CONSTANT: return lr;
    case TG_SCHEDULE_STEP:
        return s->step_size > 0 ? lr * powf(s->gamma, (float)(after / s->step_size)) : lr;
    case TG_SCHEDULE_COSINE: {
        double p = progress(after, span);
        if (p >= 1.0) return s->min_lr; /* not PyTorch's periodic cosine: it stays at the end */
        return s->min_lr + (lr - s->min_lr) * (float)(0.5 * (1.0 + cos(3.14159265358979323846 * p)));
    }
    case TG_SCHEDULE_LINEAR: {
        double p = progress(after, span);
        if (p >= 1.0) return s->min_lr;
        return lr + (s->min_lr - lr) * (float)p;
    }
    }
    return lr;
}

float tg_schedule_lr(const tg_schedule *s, int64_t step) {
    if (!s) return NAN;
    return tgi_schedule_rate(s, s->lr, step);
}

static const char *kind_name(tg_schedule_kind kind) {
    switch (kind) {
    case TG_SCHEDULE_CONSTANT: return "constant";
    case TG_SCHEDULE_STEP: return "step";
    case TG_SCHEDULE_COSINE: return "cosine";
    case TG_SCHEDULE_LINEAR: return "linear";
    }
    return "?";
}

tg_status tgi_schedule_check(tg_ctx *ctx, const tg_schedule *s, float lr) {
    if ((unsigned)s->kind > TG_SCHEDULE_LINEAR)
        return tgi_error(ctx, TG_ERR_INVALID, "optimizer_set_schedule: kind %d is not a tg_schedule_kind "
                         "(constant, step, cosine, linear)", (int)s->kind);
    const char *kind = kind_name(s->kind);
    if (s->lr != 0.0f && s->lr != lr)
        return tgi_error(ctx, TG_ERR_INVALID, "optimizer_set_schedule: %s: lr %g is not the optimizer's "
                         "rate %g: leave it 0 (the optimizer's rate is the schedule's base; "
                         "tg_optimizer_set_lr changes it)", kind, (double)s->lr, (double)lr);
    if (s->warmup_steps < 0)
        return tgi_error(ctx, TG_ERR_INVALID, "optimizer_set_schedule: %s: warmup_steps %lld is negative",
                         kind, (long long)s->warmup_steps);
    if (s->kind == TG_SCHEDULE_STEP && (s->step_size < 1 || !(s->gamma >= 0.0f) || isinf(s->gamma)))
        return tgi_error(ctx, TG_ERR_INVALID, "optimizer_set_schedule: step: step_size %lld (>= 1) and "
                         "gamma %g (finite, >= 0)", (long long)s->step_size, (double)s->gamma);
    bool to_the_end = s->kind == TG_SCHEDULE_COSINE || s->kind == TG_SCHEDULE_LINEAR;
    if (to_the_end && s->total_steps <= s->warmup_steps)
        return tgi_error(ctx, TG_ERR_INVALID, "optimizer_set_schedule: %s: total_steps %lld must be more "
                         "than warmup_steps %lld (the decay runs between them)", kind,
                         (long long)s->total_steps, (long long)s->warmup_steps);
    if (to_the_end && (!(s->min_lr >= 0.0f) || isinf(s->min_lr)))
        return tgi_error(ctx, TG_ERR_INVALID, "optimizer_set_schedule: %s: min_lr %g (finite, >= 0)",
                         kind, (double)s->min_lr);
    return TG_OK;
}
