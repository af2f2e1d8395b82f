/*
 * diagnostics/guard.c — the step guard: skip an update whose loss or gradient norm is not
 * finite, or an outlier above the running median of the accepted steps.
 *
 * Median and MAD rather than mean and standard deviation: one spike inside the window would
 * inflate the standard deviation and hide the next one. The scale has a floor (a hundredth of
 * the median) so a loss that has gone flat does not turn every wobble into an outlier.
 */
#include "autograd/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WINDOW 256
#define MAD_TO_SIGMA 1.4826
#define SCALE_FLOOR 0.01

typedef struct running_window {
    double values[MAX_WINDOW];
    int count, next;
} running_window;

struct tg_guard {
    tg_ctx *ctx;
    tg_guard_config config;
    running_window loss, norm;
    tg_guard_stats stats;
};

tg_guard_config tg_guard_defaults(void) {
    tg_guard_config c = {6.0, 32, 8};
    return c;
}

tg_guard *tg_guard_new(tg_ctx *ctx, const tg_guard_config *config) {
    if (!ctx) return NULL;
    tg_guard_config c = config ? *config : tg_guard_defaults();
    if (c.window < 2 || c.window > MAX_WINDOW || c.warmup < 1 || c.warmup > c.window ||
        isnan(c.z_threshold)) {
        tgi_error(ctx, TG_ERR_INVALID, "guard: window %d (2..%d), warmup %d (1..window) and "
                  "z_threshold %g (a number)", c.window, MAX_WINDOW, c.warmup, c.z_threshold);
        return NULL;
    }
    tg_guard *g = tgi_alloc(ctx, sizeof *g);
    if (!g) {
        tgi_error(ctx, TG_ERR_NOMEM, "guard: out of memory");
        return NULL;
    }
    memset(g, 0, sizeof *g);
    g->ctx = ctx;
    g->config = c;
    g->stats.first_skipped_step = g->stats.last_skipped_step = -1;
    g->stats.last_z = NAN;
    return g;
}

void tg_guard_free(tg_guard *g) {
    if (g) tgi_free(g->ctx, g, sizeof *g);
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_of(double *values, int n) {
    qsort(values, (size_t)n, sizeof *values, compare_doubles);
    return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

/* How far above the window's median x is, in robust standard deviations (0 below it). */
static double z_score(const running_window *w, double x) {
    double sorted[MAX_WINDOW], deviations[MAX_WINDOW];
    memcpy(sorted, w->values, (size_t)w->count * sizeof *sorted);
    double median = median_of(sorted, w->count);
    for (int i = 0; i < w->count; i++) deviations[i] = fabs(w->values[i] - median);
    double scale = MAD_TO_SIGMA * median_of(deviations, w->count);
    double floor = SCALE_FLOOR * fabs(median);
    if (scale < floor) scale = floor;
    if (!(scale > 0.0)) scale = 1e-30;
    return x > median ? (x - median) / scale : 0.0;
}

static void remember(running_window *w, int window, double x) {
    w->values[w->next] = x;
    w->next = (w->next + 1) % window;
    if (w->count < window) w->count++;
}

static void skip(tg_guard *g, int64_t step, tg_guard_verdict why) {
    tg_guard_stats *s = &g->stats;
    s->skipped++;
    if (why == TG_GUARD_SKIP_NONFINITE) s->nonfinite++;
    else s->outliers++;
    if (s->first_skipped_step < 0) s->first_skipped_step = step;
    s->last_skipped_step = step;
}

/* Judging and committing are apart so that ranks can agree on the verdict in between: a window
 * that took a step one rank accepted and another skipped would make their later verdicts differ. */
tg_guard_verdict tg_guard_judge(tg_guard *g, double loss, double grad_norm) {
    if (!g) return TG_GUARD_ACCEPT;
    g->stats.last_z = NAN;
    if (!isfinite(loss) || !isfinite(grad_norm)) return TG_GUARD_SKIP_NONFINITE;
    if (g->loss.count >= g->config.warmup && g->config.z_threshold > 0.0) {
        double z_loss = z_score(&g->loss, loss), z_norm = z_score(&g->norm, grad_norm);
        g->stats.last_z = z_loss > z_norm ? z_loss : z_norm;
        if (g->stats.last_z > g->config.z_threshold) return TG_GUARD_SKIP_OUTLIER;
    }
    return TG_GUARD_ACCEPT;
}

tg_status tg_guard_commit(tg_guard *g, int64_t step, double loss, double grad_norm,
                          tg_guard_verdict verdict) {
    if (!g) return TG_ERR_INVALID;
    if ((unsigned)verdict > TG_GUARD_SKIP_OUTLIER)
        return tgi_error(g->ctx, TG_ERR_INVALID, "guard_commit: step %lld: verdict %d is not a "
                         "tg_guard_verdict", (long long)step, (int)verdict);
    if (verdict == TG_GUARD_ACCEPT && (!isfinite(loss) || !isfinite(grad_norm)))
        return tgi_error(g->ctx, TG_ERR_INVALID, "guard_commit: step %lld: a non-finite loss (%g) "
                         "or gradient norm (%g) cannot be accepted into the window",
                         (long long)step, loss, grad_norm);
    g->stats.checked++;
    if (verdict != TG_GUARD_ACCEPT) {
        skip(g, step, verdict);
        return TG_OK;
    }
    remember(&g->loss, g->config.window, loss);
    remember(&g->norm, g->config.window, grad_norm);
    return TG_OK;
}

tg_guard_verdict tg_guard_check(tg_guard *g, int64_t step, double loss, double grad_norm) {
    tg_guard_verdict verdict = tg_guard_judge(g, loss, grad_norm);
    tg_guard_commit(g, step, loss, grad_norm, verdict);
    return verdict;
}

tg_status tg_guard_get_stats(const tg_guard *g, tg_guard_stats *out) {
    if (!g) return TG_ERR_INVALID;
    if (!out) return tgi_error(g->ctx, TG_ERR_INVALID, "guard_get_stats: out is NULL");
    *out = g->stats;
    return TG_OK;
}
