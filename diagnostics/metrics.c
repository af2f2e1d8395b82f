/*
 * diagnostics/metrics.c — the recorder's scalar series (tg_recorder_add_metric): one reading
 * per measured step of an instrument (or of anything a user measures), kept in bounded memory
 * and streamed to CSV or JSON Lines as it arrives.
 *
 * Why thinning rather than a ring: an instrument taken every K steps is a curve over the whole
 * run (sharpness rising to 2/lr, a Jacobian drifting from isometry); a ring would keep only its
 * end. Halving the density when full keeps the first point and spans the run at any length,
 * with at most TG_METRIC_POINTS points (the histograms do the same). The newest point is kept
 * too, off the grid if need be, until the next one replaces it: a loop reads what it just
 * measured.
 */
#include "diagnostics/recorder.h"

#include <string.h>

void tgi_metrics_release(tg_recorder *r) {
    tgi_free(r->ctx, r->metrics, (size_t)r->cap_metrics * sizeof *r->metrics);
    r->metrics = NULL;
    r->n_metrics = r->cap_metrics = 0;
}

int tg_recorder_metric_find(const tg_recorder *r, const char *name) {
    if (!r || !name) return -1;
    for (int i = 0; i < r->n_metrics; i++)
        if (strcmp(r->metrics[i].name, name) == 0) return i;
    return -1;
}

static tgi_metric *new_metric(tg_recorder *r, const char *name) {
    if (r->n_metrics == r->cap_metrics) {
        int cap = r->cap_metrics ? 2 * r->cap_metrics : 4;
        tgi_metric *grown = tgi_alloc(r->ctx, (size_t)cap * sizeof *grown);
        if (!grown) return NULL;
        if (r->n_metrics) memcpy(grown, r->metrics, (size_t)r->n_metrics * sizeof *grown);
        tgi_free(r->ctx, r->metrics, (size_t)r->cap_metrics * sizeof *r->metrics);
        r->metrics = grown;
        r->cap_metrics = cap;
    }
    tgi_metric *m = &r->metrics[r->n_metrics++];
    memset(m, 0, sizeof *m);
    memcpy(m->name, name, strlen(name) + 1);
    m->stride = 1;
    m->last_step = INT64_MIN;
    return m;
}

/* Full: keep points 0, 2, 4, ... and offer-count the rest at half the density. */
static void thin(tgi_metric *m) {
    int kept = 0;
    for (int i = 0; i < m->count; i += 2, kept++) {
        m->steps[kept] = m->steps[i];
        m->values[kept] = m->values[i];
    }
    m->count = kept;
    m->stride *= 2;
}

static void stream_point(const tg_recorder *r, int64_t step, const char *name, double value) {
    FILE *f = r->metric_stream;
    if (r->metric_format == TG_FORMAT_CSV) {
        fprintf(f, "%lld,\"%s\",", (long long)step, name);
        tgi_write_number(f, value);
        fputc('\n', f);
        return;
    }
    fprintf(f, "{\"step\":%lld,\"name\":\"", (long long)step);
    tgi_write_json_text(f, name);
    fputs("\",\"value\":", f);
    tgi_write_number(f, value);
    fputs("}\n", f);
}

tg_status tg_recorder_add_metric(tg_recorder *r, int64_t step, const char *name, double value) {
    if (!r) return TG_ERR_INVALID;
    if (!name || !*name) return tgi_error(r->ctx, TG_ERR_INVALID, "recorder metric: no name");
    size_t length = strlen(name);
    if (length >= TG_LABEL_MAX)
        return tgi_error(r->ctx, TG_ERR_INVALID,
                         "recorder metric '%.20s...': name of %zu bytes, at most %d", name, length,
                         TG_LABEL_MAX - 1);
    int index = tg_recorder_metric_find(r, name);
    tgi_metric *m = index >= 0 ? &r->metrics[index] : NULL;
    if (m && step < m->last_step)
        return tgi_error(r->ctx, TG_ERR_INVALID,
                         "recorder metric '%s': step %lld after step %lld (steps must not decrease)",
                         name, (long long)step, (long long)m->last_step);
    if (!m && !(m = new_metric(r, name)))
        return tgi_error(r->ctx, TG_ERR_NOMEM, "recorder metric '%s': out of memory", name);
    m->last_step = step;
    /* the newest point is always there: an off-grid one stays as the tail until the next */
    if (m->tail) m->count--, m->tail = false;
    int64_t offer = m->offered++;
    if (m->count == TG_METRIC_POINTS) thin(m);
    m->steps[m->count] = step;
    m->values[m->count++] = value;
    m->tail = offer % m->stride != 0;
    if (r->metric_stream) stream_point(r, step, name, value);
    return TG_OK;
}

int tg_recorder_metric_count(const tg_recorder *r) { return r ? r->n_metrics : 0; }

const char *tg_recorder_metric_name(const tg_recorder *r, int index) {
    return r && index >= 0 && index < r->n_metrics ? r->metrics[index].name : NULL;
}

int tg_recorder_metric(const tg_recorder *r, int index, int64_t *steps, double *values, int max) {
    if (!r || index < 0 || index >= r->n_metrics || max <= 0) return 0;
    const tgi_metric *m = &r->metrics[index];
    int n = m->count < max ? m->count : max;
    if (steps) memcpy(steps, m->steps, (size_t)n * sizeof *steps);
    if (values) memcpy(values, m->values, (size_t)n * sizeof *values);
    return n;
}

void tg_recorder_stream_metrics(tg_recorder *r, FILE *file, tg_format format) {
    if (!r) return;
    r->metric_stream = file;
    r->metric_format = format;
    if (file && format == TG_FORMAT_CSV) fputs("step,name,value\n", file);
}
