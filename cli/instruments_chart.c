/*
 * cli/instruments_chart.c — the instruments `--curvature` takes, over training: lr x lambda_max
 * against the edge of stability at 2, the Hessian's trace, and the extremes of the batch's
 * input-output Jacobian spectrum. Each chart shows a series only where some run recorded it.
 */
#include <stdio.h>
#include <string.h>

#include "cli/report.h"

/* Series per chart: the runs' own, at most three names each, and the reference line. */
#define MAX_LINES (3 * MAX_RUNS + 1)

typedef struct chart_lines {
    tg_plot_series series[MAX_LINES];
    double x[MAX_LINES][TG_METRIC_POINTS];
    char names[MAX_LINES][TG_LABEL_MAX + 32];
    int n;
} chart_lines;

/* Adds run r's series `metric` (if it has one), named after the run, and `suffix` when several
 * series of a run share the chart. */
static const run_metric *add_line(chart_lines *c, const run_result *r, const char *metric,
                                  const char *suffix) {
    const run_metric *m = run_metric_find(r, metric);
    if (!m || !m->n || c->n == MAX_LINES) return NULL;
    for (int i = 0; i < m->n; i++) c->x[c->n][i] = (double)m->steps[i];
    snprintf(c->names[c->n], sizeof c->names[0], "%s%s", r->config.name, suffix);
    c->series[c->n] = (tg_plot_series){c->names[c->n], c->x[c->n], m->values, m->n, 0};
    c->n++;
    return m;
}

static void draw(FILE *f, chart_lines *c, const char *title, const char *y_label, bool log_y) {
    if (!c->n) return;
    tg_line_plot plot = {title, "training step", y_label, false, log_y, c->series, c->n, 0, 0};
    report_chart(f, &plot);
}

void instrument_charts(FILE *f, const experiment *e) {
    static chart_lines c; /* ~80 KB: off the stack; the report is written by one thread */
    static double two[TG_METRIC_POINTS];
    /* lr x lambda_max, and the constant 2 over the steps of the longest series */
    memset(&c, 0, sizeof c);
    const run_metric *longest = NULL;
    for (int i = 0; i < e->n_runs; i++) {
        const run_metric *m = add_line(&c, &e->results[i], "lr_lambda_max", "");
        if (m && (!longest || m->n > longest->n)) longest = m;
    }
    if (longest) {
        for (int i = 0; i < longest->n; i++) two[i] = 2.0;
        c.series[c.n++] = (tg_plot_series){"edge of stability (2)", c.x[0], two, c.series[0].n, 0};
    }
    draw(f, &c, "Sharpness: lr x the Hessian's largest eigenvalue, against 2",
         "lr x lambda_max (log)", true);
    memset(&c, 0, sizeof c);
    for (int i = 0; i < e->n_runs; i++) add_line(&c, &e->results[i], "hessian.trace", "");
    draw(f, &c, "The Hessian's trace (Hutchinson)", "trace", false);
    memset(&c, 0, sizeof c);
    for (int i = 0; i < e->n_runs; i++) {
        add_line(&c, &e->results[i], "jacobian.sigma_max", " largest");
        add_line(&c, &e->results[i], "jacobian.sigma_min", " smallest");
        add_line(&c, &e->results[i], "jacobian.mean_square", " mean square");
    }
    draw(f, &c, "Singular values of the batch's input-output Jacobian (1: isometry)",
         "singular value (log)", true);
}
