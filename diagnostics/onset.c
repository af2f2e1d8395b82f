/*
 * diagnostics/onset.c — where did the gradients or the loss blow up, which series grew first,
 * where did the first NaN appear, which layers stopped receiving gradient.
 *
 * Explosion: against a baseline (the median of the first few finite values), the first step
 * whose value jumped by jump_factor in one step or reached growth_factor times the baseline.
 * Its start is the step before a jump, or for a slower climb the last step still within 10x of
 * the baseline — the point a person looking at the curve would call "where it took off". The
 * loss gets the same test: Adam normalises its steps, so its blow-ups show in the loss and the
 * weights while the gradient norm stays flat.
 */
#include "diagnostics/recorder.h"

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

static double baseline_of(const double *values, int n, int want) {
    double first[64];
    int k = 0;
    if (want > 64) want = 64;
    for (int i = 0; i < n && k < want; i++)
        if (isfinite(values[i])) first[k++] = values[i];
    if (!k) return NAN;
    qsort(first, (size_t)k, sizeof first[0], compare_doubles);
    return first[k / 2];
}

typedef struct explosion {
    bool found;
    int64_t start, at;
    double growth;
} explosion;

static explosion find_explosion(const int64_t *steps, const double *values, int n,
                                const tg_onset_opts *opts) {
    explosion e = {false, -1, -1, 0.0};
    double baseline = baseline_of(values, n, opts->baseline_steps);
    for (int i = 1; i < n && isfinite(values[i]); i++) {
        bool jump = values[i - 1] > 0.0 && values[i] >= opts->jump_factor * values[i - 1];
        bool climb = baseline > 0.0 && values[i] >= opts->growth_factor * baseline;
        if (!jump && !climb) continue;
        int start = i - 1;
        if (!jump)
            while (start > 0 && values[start] > TAKE_OFF_FACTOR * baseline) start--;
        e = (explosion){true, steps[start], steps[i],
                        values[start] > 0.0 ? values[i] / values[start] : INFINITY};
        break;
    }
    return e;
}

static void clear_report(tg_onset_report *report) {
    memset(report, 0, sizeof *report);
    report->explosion_start_step = report->explosion_step = report->first_nan_step = -1;
    report->loss_explosion_start_step = report->loss_explosion_step = report->anomaly_step = -1;
}

void tg_detect_explosion(const int64_t *steps, const double *norms, int n,
                         const tg_onset_opts *opts, tg_onset_report *report) {
    tg_onset_opts defaults = tg_onset_defaults();
    if (!opts) opts = &defaults;
    if (!report) return;
    clear_report(report);
    if (!steps || !norms || n < 0) n = 0; /* nothing to read: nothing found */
    for (int i = 0; i < n; i++)
        if (!isfinite(norms[i])) {
            report->has_nan = true;
            report->first_nan_step = steps[i];
            snprintf(report->first_nan_name, sizeof report->first_nan_name, "global");
            break;
        }
    explosion e = find_explosion(steps, norms, n, opts);
    report->exploded = e.found;
    report->explosion_step = e.at;
    report->explosion_start_step = e.start;
    report->explosion_growth = e.growth;
    tgi_onset_summarize(report, opts);
}

/* ---- over a recorder ----------------------------------------------------------------------- */

/* Vanishing: below vanish_ratio of the largest norm of the series of its kind (parameters with
 * parameters, activations with activations) for vanish_steps steps in a row. */
static void detect_vanishing(const tg_recorder *r, const tg_onset_opts *opts, tg_onset_report *report) {
    int n_steps = r->global_count;
    for (int k = 0; k < r->n_series && report->n_vanishing < TG_MAX_VANISHING; k++) {
        int index = r->order[k], run = 0;
        for (int i = 0; i < n_steps; i++) {
            int64_t step = r->global[tgi_ring_slot(r->global_head, i, r->window)].step;
            double norm, largest = 0.0, other;
            if (!tgi_recorder_norm_at(r, index, step, &norm)) {
                run = 0;
                continue;
            }
            for (int j = 0; j < r->n_series; j++)
                if (r->series[j].param == r->series[index].param &&
                    tgi_recorder_norm_at(r, j, step, &other) && isfinite(other) && other > largest)
                    largest = other;
            run = norm < opts->vanish_ratio * largest ? run + 1 : 0;
            if (run == opts->vanish_steps) {
                int v = report->n_vanishing++;
                snprintf(report->vanishing[v], TG_LABEL_MAX, "%s", r->series[index].name);
                report->vanishing_since[v] =
                    r->global[tgi_ring_slot(r->global_head, i - opts->vanish_steps + 1, r->window)].step;
                break;
            }
        }
    }
}

/* One series' take-off: the first record at 10x its baseline, or not finite. */
typedef struct take_off {
    int series;
    bool of_values;
    int64_t step;
    double ratio;
} take_off;

/* The baseline is of the records up to `before` (where the blow-up started): after it, a
 * baseline of the first few records would already be of blown-up values. */
static bool find_take_off(const int64_t *steps, const double *values, int n, int want,
                          int64_t before, take_off *out) {
    int n_before = 0;
    while (n_before < n && steps[n_before] <= before) n_before++;
    double baseline = baseline_of(values, n_before ? n_before : n, want);
    bool known = false;
    for (int i = 0; i < n; i++) {
        if (isfinite(values[i])) known = true;
        if (!known) continue; /* a value norm never given (NaN throughout) is not a blow-up */
        if (isfinite(values[i]) && !(baseline > 0.0 && values[i] >= TAKE_OFF_FACTOR * baseline))
            continue;
        out->step = steps[i];
        out->ratio = isfinite(values[i]) ? values[i] / baseline : INFINITY;
        return true;
    }
    return false;
}

static int compare_take_offs(const void *a, const void *b) {
    const take_off *x = a, *y = b;
    if (x->step != y->step) return x->step < y->step ? -1 : 1;
    if (x->ratio != y->ratio) return x->ratio > y->ratio ? -1 : 1;
    return x->series - y->series;
}

/* Which series took off first, and the order of the others (one entry per series: its gradient
 * or its values, whichever went first). */
static tg_status detect_growth(const tg_recorder *r, const tg_onset_opts *opts,
                               tg_onset_report *report) {
    int64_t before = INT64_MAX;
    if (report->exploded) before = report->explosion_start_step;
    if (report->loss_exploded && report->loss_explosion_start_step < before)
        before = report->loss_explosion_start_step;
    if (report->has_nan && report->first_nan_step - 1 < before) before = report->first_nan_step - 1;
    size_t bytes = (size_t)(r->n_series ? r->n_series : 1) * sizeof(take_off);
    size_t buf_bytes = (size_t)r->window * (sizeof(int64_t) + 2 * sizeof(double));
    take_off *found = tgi_alloc(r->ctx, bytes);
    unsigned char *buf = tgi_alloc(r->ctx, buf_bytes);
    if (!found || !buf) {
        tgi_free(r->ctx, found, bytes);
        tgi_free(r->ctx, buf, buf_bytes);
        return tgi_error(r->ctx, TG_ERR_NOMEM, "recorder: out of memory");
    }
    int64_t *steps = (int64_t *)buf;
    double *grads = (double *)(steps + r->window), *values = grads + r->window;
    int n_found = 0;
    for (int k = 0; k < r->n_series; k++) {
        const tgi_series *s = &r->series[r->order[k]];
        for (int i = 0; i < s->count; i++) {
            int slot = tgi_ring_slot(s->head, i, r->window);
            steps[i] = s->steps[slot];
            grads[i] = s->stats[slot].n_nan || s->stats[slot].n_inf ? NAN : s->stats[slot].l2_norm;
            values[i] = s->value_norms[slot];
        }
        take_off g = {k, false, 0, 0.0}, v = {k, true, 0, 0.0};
        bool has_g = find_take_off(steps, grads, s->count, opts->baseline_steps, before, &g);
        bool has_v = find_take_off(steps, values, s->count, opts->baseline_steps, before, &v);
        if (has_g && (!has_v || compare_take_offs(&g, &v) <= 0)) found[n_found++] = g;
        else if (has_v) found[n_found++] = v;
    }
    qsort(found, (size_t)n_found, sizeof *found, compare_take_offs);
    for (int i = 0; i < n_found && report->n_growth < TG_MAX_GROWTH; i++) {
        int g = report->n_growth++, index = r->order[found[i].series];
        snprintf(report->growth_name[g], TG_LABEL_MAX, "%s", r->series[index].name);
        report->growth_step[g] = found[i].step;
        report->growth_ratio[g] = found[i].ratio;
        report->growth_of_values[g] = found[i].of_values;
        report->growth_is_param[g] = r->series[index].param;
    }
    tgi_free(r->ctx, found, bytes);
    tgi_free(r->ctx, buf, buf_bytes);
    return TG_OK;
}

static explosion loss_explosion(const tg_recorder *r, const tg_onset_opts *opts, tg_status *status) {
    explosion none = {false, -1, -1, 0.0};
    int n = r->loss_count;
    size_t bytes = (size_t)(n ? n : 1) * (sizeof(int64_t) + sizeof(double));
    int64_t *steps = tgi_alloc(r->ctx, bytes);
    if (!steps) {
        *status = tgi_error(r->ctx, TG_ERR_NOMEM, "recorder: out of memory");
        return none;
    }
    double *losses = (double *)(steps + (n ? n : 1));
    for (int i = 0; i < n; i++) {
        const tgi_loss_point *p = &r->losses[tgi_ring_slot(r->loss_head, i, r->window)];
        steps[i] = p->step;
        losses[i] = p->loss;
    }
    explosion e = find_explosion(steps, losses, n, opts);
    tgi_free(r->ctx, steps, bytes);
    return e;
}

tg_status tg_recorder_detect(const tg_recorder *r, const tg_onset_opts *opts, tg_onset_report *report) {
    if (!r) return TG_ERR_INVALID;
    if (!report) return tgi_error(r->ctx, TG_ERR_INVALID, "recorder_detect: report is NULL");
    tg_onset_opts defaults = tg_onset_defaults();
    if (!opts) opts = &defaults;
    int n = r->global_count;
    size_t bytes = (size_t)(n ? n : 1) * (sizeof(int64_t) + sizeof(double));
    int64_t *steps = tgi_alloc(r->ctx, bytes);
    if (!steps) return tgi_error(r->ctx, TG_ERR_NOMEM, "recorder: out of memory");
    double *norms = (double *)(steps + (n ? n : 1));
    tg_recorder_global_norms(r, steps, norms, n);
    tg_detect_explosion(steps, norms, n, opts, report);
    tgi_free(r->ctx, steps, bytes);
    tg_status status = TG_OK;
    explosion loss = loss_explosion(r, opts, &status);
    report->loss_exploded = loss.found;
    report->loss_explosion_start_step = loss.start;
    report->loss_explosion_step = loss.at;
    report->loss_growth = loss.growth;
    /* the first NaN is tracked over every record, window or not, with the series it hit */
    report->has_nan = r->has_nan;
    report->first_nan_step = r->has_nan ? r->first_nan_step : -1;
    snprintf(report->first_nan_name, sizeof report->first_nan_name, "%s",
             r->has_nan ? r->first_nan_name : "");
    report->anomaly_stopped = r->anomaly_stopped;
    report->anomaly_step = r->anomaly_stopped ? r->anomaly_step : -1;
    snprintf(report->anomaly, sizeof report->anomaly, "%s", r->anomaly_stopped ? r->anomaly : "");
    if (status == TG_OK && (report->exploded || report->loss_exploded || report->has_nan))
        status = detect_growth(r, opts, report);
    detect_vanishing(r, opts, report);
    tgi_onset_summarize(report, opts);
    return status;
}

/* ---- in plain words ------------------------------------------------------------------------ */

#define GROWTH_LISTED 4

void tgi_onset_summarize(tg_onset_report *report, const tg_onset_opts *opts) {
    char *out = report->summary;
    size_t size = sizeof report->summary, len = 0;
    out[0] = '\0';
#define SAY(...) \
    (len += (size_t)snprintf(out + (len < size ? len : size - 1), len < size ? size - len : 1, __VA_ARGS__))
    if (report->exploded)
        SAY("global grad norm grew %.3gx between steps %lld and %lld", report->explosion_growth,
            (long long)report->explosion_start_step, (long long)report->explosion_step);
    if (report->loss_exploded)
        SAY("%sloss grew %.3gx between steps %lld and %lld", len ? "; " : "", report->loss_growth,
            (long long)report->loss_explosion_start_step, (long long)report->loss_explosion_step);
    for (int g = 0; g < report->n_growth && g < GROWTH_LISTED; g++)
        SAY("%s'%s'%s at step %lld", g ? ", then " : (len ? "; first to grow: " : "first to grow: "),
            report->growth_name[g], report->growth_of_values[g] ? (report->growth_is_param[g] ? " (weights)" : " (values)") : "",
            (long long)report->growth_step[g]);
    if (report->n_growth > GROWTH_LISTED)
        SAY(" and %d more", report->n_growth - GROWTH_LISTED);
    if (report->has_nan)
        SAY("%sfirst NaN/Inf at step %lld in '%s'", len ? "; " : "",
            (long long)report->first_nan_step, report->first_nan_name);
    if (report->anomaly_stopped)
        SAY("%sanomaly mode stopped step %lld: %s", len ? "; " : "", (long long)report->anomaly_step,
            report->anomaly);
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
