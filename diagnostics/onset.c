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
#include "diagnostics/advice.h"
#include "diagnostics/recorder.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TAKE_OFF_FACTOR 10.0

tg_onset_opts tg_onset_defaults(void) {
    tg_onset_opts opts = {100.0, 1000.0, 5, 1e-4, 5, 0.5, 0.5};
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

static void add_finding(tg_onset_report *report, const tg_finding *f) {
    if (report->n_findings < TG_MAX_FINDINGS) report->findings[report->n_findings++] = *f;
}

/* The findings of the explosion, the first NaN and anomaly mode's stop (from the start). */
static void add_onset_findings(tg_onset_report *report) {
    report->n_findings = 0;
    tg_finding f;
    if (report->exploded || report->loss_exploded) {
        f = tgi_finding_explosion(report);
        add_finding(report, &f);
    }
    /* anomaly mode's stop at the first NaN says it better, naming the op */
    bool same = report->anomaly_stopped && report->has_nan && report->first_nan_step == report->anomaly_step;
    if (report->has_nan && !same) {
        f = tgi_finding_nonfinite(report);
        add_finding(report, &f);
    }
    if (report->anomaly_stopped) {
        f = tgi_finding_anomaly(report);
        add_finding(report, &f);
    }
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
    add_onset_findings(report);
    tgi_onset_summarize(report, opts);
}

/* ---- over a recorder ----------------------------------------------------------------------- */

/* Vanishing: below vanish_ratio of the largest norm of the series of its kind (parameters with
 * parameters, activations with activations) for vanish_steps steps in a row. Every vanishing
 * series is counted; the report lists the worst, by their ratio to the last layer's gradient. */
typedef struct vanishing_scan {
    int count[2], total[2];  /* [param]: vanishing series, and series of the kind */
    int last_rank[2];        /* natural-order rank within its kind of the last vanishing one */
    double bound;            /* the largest ratio of them all: each got less than this */
    int64_t since;           /* the earliest step any of them was found from */
    bool all_over_time;      /* every one is a step of an unrolled net, "h[12]" */
    bool largest_not_last;   /* some step's largest norm was not the last series' of its kind */
} vanishing_scan;

/* "lstm.h[12]": a name indexed by a time step. */
static bool indexed_by_step(const char *name) {
    const char *open = strrchr(name, '[');
    if (!open || !isdigit((unsigned char)open[1])) return false;
    while (isdigit((unsigned char)*++open)) {}
    return *open == ']';
}

/* Lists series `index` among the worst TG_MAX_VANISHING, worst (smallest ratio) first. */
static void list_vanishing(const tg_recorder *r, int index, int64_t since, double ratio,
                           tg_onset_report *report) {
    int at = report->n_vanishing;
    while (at > 0 && !(report->vanishing_ratio[at - 1] <= ratio)) at--;
    if (at == TG_MAX_VANISHING) return;
    int last = report->n_vanishing < TG_MAX_VANISHING ? report->n_vanishing++ : TG_MAX_VANISHING - 1;
    for (int v = last; v > at; v--) {
        memcpy(report->vanishing[v], report->vanishing[v - 1], TG_LABEL_MAX);
        report->vanishing_since[v] = report->vanishing_since[v - 1];
        report->vanishing_ratio[v] = report->vanishing_ratio[v - 1];
    }
    snprintf(report->vanishing[at], TG_LABEL_MAX, "%s", r->series[index].name);
    report->vanishing_since[at] = since;
    report->vanishing_ratio[at] = ratio;
}

/* The last series (natural order) of each kind: the layer nearest the output. */
static void last_of_kinds(const tg_recorder *r, int last[2]) {
    last[0] = last[1] = -1;
    for (int k = r->n_series - 1; k >= 0; k--) {
        bool param = r->series[r->order[k]].param;
        if (last[param] < 0) last[param] = r->order[k];
    }
}

static void detect_vanishing(const tg_recorder *r, const tg_onset_opts *opts,
                             tg_onset_report *report, vanishing_scan *scan) {
    int n_steps = r->global_count, last[2], rank[2] = {0, 0};
    memset(scan, 0, sizeof *scan);
    scan->since = INT64_MAX;
    scan->all_over_time = true;
    last_of_kinds(r, last);
    for (int k = 0; k < r->n_series; k++) {
        int index = r->order[k], run = 0;
        bool param = r->series[index].param;
        scan->total[param]++;
        rank[param]++;
        double worst_in_run = 0.0; /* the largest ratio of the current run */
        for (int i = 0; i < n_steps; i++) {
            int64_t step = r->global[tgi_ring_slot(r->global_head, i, r->window)].step;
            double norm, largest = 0.0, other, reference;
            if (!tgi_recorder_norm_at(r, index, step, &norm)) {
                run = 0;
                continue;
            }
            for (int j = 0; j < r->n_series; j++)
                if (r->series[j].param == param &&
                    tgi_recorder_norm_at(r, j, step, &other) && isfinite(other) && other > largest)
                    largest = other;
            run = norm < opts->vanish_ratio * largest ? run + 1 : 0;
            if (!run) {
                worst_in_run = 0.0;
                continue;
            }
            /* in a net whose gradient vanishes towards the input the largest is the last
             * layer's; when it is not, the finding says "the largest" */
            if (!tgi_recorder_norm_at(r, last[param], step, &reference) || reference < largest)
                scan->largest_not_last = true;
            worst_in_run = fmax(worst_in_run, norm / largest);
            if (run == opts->vanish_steps) {
                int64_t since = r->global[tgi_ring_slot(r->global_head, i - opts->vanish_steps + 1, r->window)].step;
                list_vanishing(r, index, since, worst_in_run, report);
                report->vanishing_count++;
                scan->count[param]++;
                scan->last_rank[param] = rank[param];
                scan->bound = fmax(scan->bound, worst_in_run);
                if (since < scan->since) scan->since = since;
                scan->all_over_time &= indexed_by_step(r->series[index].name);
                break;
            }
        }
    }
}

/* The activation the watched ones show (what vanishing advice turns on): a recurrent cell
 * first (it says what kind of net it is), then the saturating ones. */
static const char *watched_activation(const tg_recorder *r) {
    static const char *const preference[] = {"lstm_hidden", "rnn_cell", "sigmoid", "tanh", "relu"};
    for (int p = 0; p < 5; p++)
        for (int i = 0; i < r->n_activations; i++)
            if (strcmp(r->activations[i].op, preference[p]) == 0) return preference[p];
    return NULL;
}

#define WORST_LISTED 3

static tg_finding vanishing_finding(const tg_recorder *r, const tg_onset_opts *opts,
                                    const tg_onset_report *report, const vanishing_scan *scan) {
    tg_finding f = tgi_finding_new(TG_FINDING_VANISHING, scan->since, report->vanishing[0]);
    f.value = report->vanishing_ratio[0];
    bool params = scan->count[1] > 0, activations = scan->count[0] > 0;
    const char *kind = params && activations ? "series" : params ? "parameter tensors" : "activations";
    int of = (params ? scan->total[1] : 0) + (activations ? scan->total[0] : 0);
    /* the first k of their kind, in natural order: the layers nearest the input */
    bool leading = !(params && activations) && scan->last_rank[params] == scan->count[params];
    TGI_SAY(f.what, "%s%d of %d %s get ", leading ? "the first " : "", report->vanishing_count, of, kind);
    if (scan->bound > 0.0)
        TGI_SAY(f.what, "at most %.2g of the %s gradient", scan->bound,
                scan->largest_not_last ? "largest" : "last layer's");
    else
        TGI_SAY(f.what, "no gradient at all");
    TGI_SAY(f.what, " for %d steps or more (from step %lld); the worst:", opts->vanish_steps,
            (long long)scan->since);
    for (int v = 0; v < report->n_vanishing && v < WORST_LISTED; v++)
        TGI_SAY(f.what, "%s '%s' (%.2g)", v ? "," : "", report->vanishing[v], report->vanishing_ratio[v]);
    tgi_vanishing_advice(&f, watched_activation(r), scan->all_over_time);
    return f;
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

/* One finding per kind over the watched activations: the worst of those past the threshold,
 * and how many there are. */
static void activation_finding(const tg_recorder *r, const tg_onset_opts *opts, tg_finding_kind kind,
                               tg_onset_report *report) {
    static const char *const layers[] = {[TG_FINDING_DEAD_RELU] = "ReLU layers have dead units",
                                         [TG_FINDING_SATURATION] = "sigmoid/tanh layers saturate",
                                         [TG_FINDING_FORGET_GATE] = "LSTM layers saturate their forget gate"};
    int of = 0, problems = 0;
    tg_finding worst = tgi_finding_new(kind, -1, "");
    for (int i = 0; i < r->n_activations; i++) {
        const tgi_activation *a = &r->activations[i];
        tg_activation_stats st = tgi_activation_stats_of(a);
        if (st.dead_fraction < 0 && st.saturated_fraction < 0 && st.forget_saturated_fraction < 0)
            continue; /* an LSTM's h[t] whose gates were out of reach */
        tg_finding f = tg_advice_activation(a->name, a->op, &st, opts);
        if (f.kind != kind) continue;
        of++;
        if (!f.problem) continue;
        f.step = a->step;
        if (!problems++ || f.value > worst.value) worst = f;
    }
    if (!problems) return;
    char what[TG_FINDING_TEXT];
    snprintf(what, sizeof what, "%s", worst.what);
    worst.what[0] = '\0';
    if (problems > 1)
        TGI_SAY(worst.what, "at step %lld, %d of %d %s; the worst: %s", (long long)worst.step,
                problems, of, layers[kind], what);
    else
        TGI_SAY(worst.what, "at step %lld, %s", (long long)worst.step, what);
    add_finding(report, &worst);
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
    vanishing_scan scan;
    detect_vanishing(r, opts, report, &scan);
    add_onset_findings(report);
    if (report->vanishing_count) {
        tg_finding f = vanishing_finding(r, opts, report, &scan);
        add_finding(report, &f);
    }
    static const tg_finding_kind watched[] = {TG_FINDING_DEAD_RELU, TG_FINDING_SATURATION,
                                              TG_FINDING_FORGET_GATE};
    for (int k = 0; k < 3; k++) activation_finding(r, opts, watched[k], report);
    tgi_onset_summarize(report, opts);
    return status;
}

/* ---- in plain words ------------------------------------------------------------------------ */

#define GROWTH_LISTED 4
#define VANISHING_LISTED 3

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
        SAY("%s%d series vanishing (below %.0e of the largest norm for %d steps), the worst",
            len ? "; " : "", report->vanishing_count, opts->vanish_ratio, opts->vanish_steps);
        for (int v = 0; v < report->n_vanishing && v < VANISHING_LISTED; v++)
            SAY("%s'%s' (%.2g of the largest, from step %lld)", v ? ", " : " ", report->vanishing[v],
                report->vanishing_ratio[v], (long long)report->vanishing_since[v]);
    }
    for (int i = 0; i < report->n_findings; i++) {
        const tg_finding *f = &report->findings[i];
        const char *said = f->kind == TG_FINDING_DEAD_RELU ? "dead ReLU units"
                           : f->kind == TG_FINDING_SATURATION ? "saturated activations"
                           : f->kind == TG_FINDING_FORGET_GATE ? "saturated forget gate" : NULL;
        if (said) SAY("%s%s: %.0f%% in '%s'", len ? "; " : "", said, 100 * f->value, f->subject);
    }
    if (!len) SAY("no explosion, no NaN, no vanishing layer");
#undef SAY
}
