/*
 * diagnostics/onset.c — where did the gradients blow up, where did the first NaN appear, which
 * layers stopped receiving gradient.
 *
 * Explosion: against a baseline (the median of the first few finite norms), the first step
 * whose norm jumped by jump_factor in one step or reached growth_factor times the baseline.
 * Its start is the step before a jump, or for a slower climb the last step still within 10x of
 * the baseline — the point a person looking at the curve would call "where it took off".
 */
#include "autograd/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TAKE_OFF_FACTOR 10.0

tg_onset_opts tg_onset_defaults(void) {
    tg_onset_opts opts = {100.0, 1000.0, 5, 1e-4, 5};
    return opts;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double baseline_of(const double *norms, int n, int want) {
    double first[64];
    int k = 0;
    if (want > 64) want = 64;
    for (int i = 0; i < n && k < want; i++)
        if (isfinite(norms[i])) first[k++] = norms[i];
    if (!k) return NAN;
    qsort(first, (size_t)k, sizeof first[0], compare_doubles);
    return first[k / 2];
}

void tg_detect_explosion(const int64_t *steps, const double *norms, int n,
                         const tg_onset_opts *opts, tg_onset_report *report) {
    tg_onset_opts defaults = tg_onset_defaults();
    if (!opts) opts = &defaults;
    if (!report) return;
    memset(report, 0, sizeof *report);
    report->explosion_start_step = report->explosion_step = report->first_nan_step = -1;
    if (!steps || !norms || n < 0) n = 0; /* nothing to read: nothing found */
    for (int i = 0; i < n; i++)
        if (!isfinite(norms[i])) {
            report->has_nan = true;
            report->first_nan_step = steps[i];
            snprintf(report->first_nan_name, sizeof report->first_nan_name, "global");
            break;
        }
    double baseline = baseline_of(norms, n, opts->baseline_steps);
    for (int i = 1; i < n && isfinite(norms[i]); i++) {
        bool jump = norms[i - 1] > 0.0 && norms[i] >= opts->jump_factor * norms[i - 1];
        bool climb = baseline > 0.0 && norms[i] >= opts->growth_factor * baseline;
        if (!jump && !climb) continue;
        int start = i - 1;
        if (!jump)
            while (start > 0 && norms[start] > TAKE_OFF_FACTOR * baseline) start--;
        report->exploded = true;
        report->explosion_step = steps[i];
        report->explosion_start_step = steps[start];
        report->explosion_growth = norms[start] > 0.0 ? norms[i] / norms[start] : INFINITY;
        break;
    }
    tgi_onset_summarize(report, opts);
}

void tgi_onset_summarize(tg_onset_report *report, const tg_onset_opts *opts) {
    char *out = report->summary;
    size_t size = sizeof report->summary, len = 0;
    out[0] = '\0';
#define SAY(...) \
    (len += (size_t)snprintf(out + (len < size ? len : size - 1), len < size ? size - len : 1, __VA_ARGS__))
    if (report->exploded)
        SAY("global grad norm grew %.3gx between steps %lld and %lld", report->explosion_growth,
            (long long)report->explosion_start_step, (long long)report->explosion_step);
    if (report->has_nan)
        SAY("%sfirst NaN/Inf at step %lld in '%s'", len ? "; " : "",
            (long long)report->first_nan_step, report->first_nan_name);
    if (report->n_vanishing) {
        SAY("%s%d%s series vanishing (below %.0e of the largest norm for %d steps, from the step "
            "given):", len ? "; " : "",
            report->n_vanishing, report->n_vanishing == TG_MAX_VANISHING ? " or more" : "",
            opts->vanish_ratio, opts->vanish_steps);
        for (int v = 0; v < report->n_vanishing; v++)
            SAY("%s'%s' (%lld)", v ? ", " : " ", report->vanishing[v], (long long)report->vanishing_since[v]);
    }
    if (!len) SAY("no explosion, no NaN, no vanishing layer");
#undef SAY
}
