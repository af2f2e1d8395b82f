/*
 * diagnostics/recorder.c — the gradient-flow recorder: per series and per step statistics in
 * bounded ring buffers, streamed to CSV or JSON Lines as they arrive.
 *
 * Every buffer is sized when its series first appears (window records), so recording in the
 * steady state allocates nothing. A recorder also watches its context's anomaly mode: a step
 * that anomaly mode stopped before backward still leaves a record.
 */
#include "diagnostics/recorder.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

typedef tgi_series series;
typedef tgi_global_step global_step;

static void note_anomaly(tg_ctx *ctx, const tg_anomaly_report *report, const tg_op_call *call,
                         void *user);

tg_recorder *tg_recorder_new(tg_ctx *ctx, int window) {
    if (!ctx) return NULL;
    if (window < 1) {
        tgi_error(ctx, TG_ERR_INVALID, "recorder: window %d, expected >= 1", window);
        return NULL;
    }
    tg_recorder *r = tgi_alloc(ctx, sizeof *r);
    global_step *global = tgi_alloc(ctx, (size_t)window * sizeof *global);
    tgi_loss_point *losses = tgi_alloc(ctx, (size_t)window * sizeof *losses);
    if (!r || !global || !losses) {
        tgi_free(ctx, r, sizeof *r);
        tgi_free(ctx, global, (size_t)window * sizeof *global);
        tgi_free(ctx, losses, (size_t)window * sizeof *losses);
        tgi_error(ctx, TG_ERR_NOMEM, "recorder: out of memory");
        return NULL;
    }
    memset(r, 0, sizeof *r);
    r->ctx = ctx;
    r->window = window;
    r->global = global;
    r->losses = losses;
    r->last_step = INT64_MIN;
    return r;
}

static void release_series(tg_recorder *r, series *s) {
    tgi_free(r->ctx, s->steps, (size_t)r->window * sizeof(int64_t));
    tgi_free(r->ctx, s->stats, (size_t)r->window * sizeof(tg_stats));
    tgi_free(r->ctx, s->value_norms, (size_t)r->window * sizeof(double));
    tgi_histograms_release(r->ctx, &s->hist);
}

void tg_recorder_free(tg_recorder *r) {
    if (!r || r->retired.freed) return;
    tg_ctx *ctx = r->ctx;
    tgi_anomaly_unobserve(ctx, note_anomaly, r);
    for (int i = 0; i < r->n_handles; i++) tg_hook_remove(ctx, r->handles[i]);
    for (int i = 0; i < r->n_series; i++) release_series(r, &r->series[i]);
    tgi_activations_release(r);
    tgi_instruments_release(r);
    tgi_metrics_release(r);
    tgi_free(ctx, r->series, (size_t)r->cap_series * sizeof *r->series);
    tgi_free(ctx, r->order, (size_t)r->cap_series * sizeof *r->order);
    tgi_free(ctx, r->global, (size_t)r->window * sizeof *r->global);
    tgi_free(ctx, r->losses, (size_t)r->window * sizeof *r->losses);
    tgi_free(ctx, r->handles, (size_t)r->cap_handles * sizeof *r->handles);
    tgi_retire(ctx, &r->retired, r, sizeof *r);
}

/* "fc2" < "fc10": runs of digits compare as numbers. */
static int natural_compare(const char *a, const char *b) {
    while (*a && *b) {
        if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
            while (*a == '0') a++;
            while (*b == '0') b++;
            size_t da = 0, db = 0;
            while (isdigit((unsigned char)a[da])) da++;
            while (isdigit((unsigned char)b[db])) db++;
            if (da != db) return da < db ? -1 : 1;
            int c = strncmp(a, b, da);
            if (c) return c;
            a += da;
            b += db;
        } else {
            if (*a != *b) return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
            a++;
            b++;
        }
    }
    return (unsigned char)*a - (unsigned char)*b;
}

static tg_status grow_series(tg_recorder *r) {
    int cap = r->cap_series ? 2 * r->cap_series : 16;
    series *grown = tgi_realloc(r->ctx, r->series, (size_t)r->cap_series * sizeof *grown,
                                (size_t)cap * sizeof *grown);
    if (!grown) return TG_ERR_NOMEM;
    r->series = grown;
    int *order = tgi_realloc(r->ctx, r->order, (size_t)r->cap_series * sizeof *order,
                             (size_t)cap * sizeof *order);
    if (!order) return TG_ERR_NOMEM; /* series grew: cap_series stays, both stay consistent */
    r->order = order;
    r->cap_series = cap;
    return TG_OK;
}

static int find_series(const tg_recorder *r, const char *name) {
    for (int i = 0; i < r->n_series; i++)
        if (strcmp(r->series[i].name, name) == 0) return i;
    return -1;
}

static int add_series(tg_recorder *r, const char *name, bool param) {
    if (r->n_series == r->cap_series && grow_series(r) != TG_OK) return -1;
    series *s = &r->series[r->n_series];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->param = param;
    s->steps = tgi_alloc(r->ctx, (size_t)r->window * sizeof(int64_t));
    s->stats = tgi_alloc(r->ctx, (size_t)r->window * sizeof(tg_stats));
    s->value_norms = tgi_alloc(r->ctx, (size_t)r->window * sizeof(double));
    if (!s->steps || !s->stats || !s->value_norms) {
        release_series(r, s);
        return -1;
    }
    /* insertion into the natural order */
    int at = r->n_series;
    while (at > 0 && natural_compare(r->series[r->order[at - 1]].name, name) > 0) {
        r->order[at] = r->order[at - 1];
        at--;
    }
    r->order[at] = r->n_series;
    r->n_params += param;
    return r->n_series++;
}

/* Appends to a ring of `window` slots; returns the slot to write. */
static int ring_push(int *count, int *head, int window) {
    if (*count < window) return (*head + (*count)++) % window;
    int slot = *head;
    *head = (*head + 1) % window;
    return slot;
}

void tgi_write_number(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.9g", v);
    else fputs("null", f);
}

void tgi_write_json_text(FILE *f, const char *s) {
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\') fputc('\\', f);
        if ((unsigned char)*p >= 0x20) fputc(*p, f);
    }
}

static void stream_record(const tg_recorder *r, int64_t step, const char *name, const tg_stats *st) {
    FILE *f = r->stream;
    const double values[5] = {st->l2_norm, st->max_abs, st->mean, st->std, st->zero_fraction};
    static const char *const keys[5] = {"l2_norm", "max_abs", "mean", "std", "zero_fraction"};
    if (r->format == TG_FORMAT_CSV) {
        fprintf(f, "%lld,\"%s\"", (long long)step, name);
        for (int k = 0; k < 5; k++) fprintf(f, ",%.9g", values[k]);
        fprintf(f, ",%lld,%lld\n", (long long)st->n_nan, (long long)st->n_inf);
        return;
    }
    fprintf(f, "{\"step\":%lld,\"name\":\"", (long long)step);
    tgi_write_json_text(f, name);
    fputc('"', f);
    for (int k = 0; k < 5; k++) {
        fprintf(f, ",\"%s\":", keys[k]);
        tgi_write_number(f, values[k]);
    }
    fprintf(f, ",\"n_nan\":%lld,\"n_inf\":%lld}\n", (long long)st->n_nan, (long long)st->n_inf);
}

/* The newest global step, a new one when `step` is past it. */
static global_step *global_at(tg_recorder *r, int64_t step) {
    if (r->global_count == 0 || step != r->last_step) {
        int g = ring_push(&r->global_count, &r->global_head, r->window);
        r->global[g] = (global_step){step, 0.0, 0.0};
    }
    r->last_step = step;
    return &r->global[tgi_ring_slot(r->global_head, r->global_count - 1, r->window)];
}

/* One record: a series (made when new) gets the statistics; values, when given, give the value
 * norm and a histogram of the gradient. */
static tg_status add_record(tg_recorder *r, int64_t step, const char *name, bool param,
                            const tg_stats *stats, const float *grad, int64_t n, double value_norm) {
    if (step < r->last_step)
        return tgi_error(r->ctx, TG_ERR_INVALID, "recorder: step %lld after step %lld ('%s')",
                         (long long)step, (long long)r->last_step, name);
    int index = find_series(r, name);
    if (index < 0 && (index = add_series(r, name, param)) < 0)
        return tgi_error(r->ctx, TG_ERR_NOMEM, "recorder: out of memory for series '%s'", name);
    series *s = &r->series[index];
    if (grad && !s->hist.snapshots && tgi_histograms_init(r->ctx, &s->hist) != TG_OK)
        return tgi_error(r->ctx, TG_ERR_NOMEM, "recorder: out of memory for the histograms of '%s'", name);
    int slot = ring_push(&s->count, &s->head, r->window);
    s->steps[slot] = step;
    s->stats[slot] = *stats;
    s->value_norms[slot] = value_norm;
    if (grad) tgi_histograms_add(&s->hist, step, grad, n);

    global_step *g = global_at(r, step);
    double sq = stats->l2_norm * stats->l2_norm;
    g->sum_sq_all += sq;
    if (s->param) g->sum_sq += sq;

    bool bad = stats->n_nan > 0 || stats->n_inf > 0 || !isfinite(stats->l2_norm);
    if (bad && !r->has_nan) {
        r->has_nan = true;
        r->first_nan_step = step;
        snprintf(r->first_nan_name, sizeof r->first_nan_name, "%s", name);
    }
    if (r->stream) stream_record(r, step, name, stats);
    return TG_OK;
}

tg_status tg_recorder_add(tg_recorder *r, int64_t step, const char *name, const tg_stats *stats) {
    if (!r) return TG_ERR_INVALID;
    if (tgi_check_name(r->ctx, "recorder_add", name) != TG_OK) return TG_ERR_INVALID;
    if (!stats) return tgi_error(r->ctx, TG_ERR_INVALID, "recorder_add '%s': stats is NULL", name);
    return add_record(r, step, name, true, stats, NULL, 0, NAN);
}

static double l2_norm(const float *values, int64_t n) {
    double sum_sq = 0.0;
    for (int64_t i = 0; i < n; i++) sum_sq += (double)values[i] * values[i];
    return sqrt(sum_sq);
}

/* A tensor's record: grad its gradient (the hook's values, which it may have changed). */
static tg_status add_tensor(tg_recorder *r, int64_t step, const char *name, const tg_tensor *t,
                            const float *grad) {
    tg_stats stats;
    tg_stats_compute(grad, grad ? t->size : 0, &stats);
    return add_record(r, step, name, t->persistent, &stats, grad, t->size, l2_norm(t->data, t->size));
}

tg_status tg_recorder_add_tensor(tg_recorder *r, int64_t step, const tg_tensor *t) {
    if (!r) return TG_ERR_INVALID;
    if (!t) return tgi_error(r->ctx, TG_ERR_INVALID, "recorder_add_tensor: the tensor is NULL");
    if (tgi_refuse_stale(t, "recorder_add_tensor") != TG_OK) return TG_ERR_STATE;
    char name[TG_LABEL_MAX + 32];
    return add_tensor(r, step, tgi_node_name(t, name, sizeof name), t, t->grad);
}

tg_status tg_recorder_add_loss(tg_recorder *r, int64_t step, double loss) {
    if (!r) return TG_ERR_INVALID;
    if (r->loss_count && step < r->losses[tgi_ring_slot(r->loss_head, r->loss_count - 1, r->window)].step)
        return tgi_error(r->ctx, TG_ERR_INVALID, "recorder: loss of step %lld after a later step",
                         (long long)step);
    int slot = ring_push(&r->loss_count, &r->loss_head, r->window);
    r->losses[slot] = (tgi_loss_point){step, loss};
    return TG_OK;
}

tg_status tg_recorder_add_anomaly(tg_recorder *r, int64_t step, const tg_anomaly_report *report) {
    if (!r) return TG_ERR_INVALID;
    if (!report) return tgi_error(r->ctx, TG_ERR_INVALID, "recorder_add_anomaly: report is NULL");
    if (step < r->last_step)
        return tgi_error(r->ctx, TG_ERR_INVALID, "recorder: anomaly at step %lld after step %lld",
                         (long long)step, (long long)r->last_step);
    global_step *g = global_at(r, step);
    g->sum_sq = g->sum_sq_all = NAN;
    if (!r->has_nan || step < r->first_nan_step) {
        r->has_nan = true;
        r->first_nan_step = step;
        snprintf(r->first_nan_name, sizeof r->first_nan_name, "%s", report->node);
    }
    r->anomaly_stopped = true;
    r->anomaly_step = step;
    const char *what = isnan(report->value) ? "NaN" : "Inf";
    const char *pass = report->pass == TG_PASS_FORWARD ? "forward" : "backward";
    if (report->created)
        snprintf(r->anomaly, sizeof r->anomaly, "%s at '%s' created %s from finite inputs (%s "
                 "pass)", report->op, report->node, what, pass);
    else
        snprintf(r->anomaly, sizeof r->anomaly, "%s at '%s' received %s, propagated from %s (%s "
                 "pass)", report->op, report->node, what, report->source, pass);
    return TG_OK;
}

/* Anomaly mode stopped a step of the recorder's hooks: the step is in the record even when
 * backward never ran. The anomaly's message stays the context's error. */
static void note_anomaly(tg_ctx *ctx, const tg_anomaly_report *report, const tg_op_call *call,
                         void *user) {
    (void)call;
    tg_recorder *r = user;
    tg_status status = ctx->err_code;
    char message[TGI_ERRMSG_MAX];
    snprintf(message, sizeof message, "%s", ctx->err_msg);
    tg_recorder_add_anomaly(r, report->step > r->last_step ? report->step : r->last_step, report);
    tg_clear_error(ctx);
    tgi_error(ctx, status, "%s", message);
}

static tg_status record_hook(tg_ctx *ctx, const tg_hook_event *event, void *user) {
    (void)ctx;
    return add_tensor(user, event->step, event->name, event->node, event->values);
}

static int64_t attach(tg_recorder *r, const char *pattern, bool params_only) {
    if (!r) return -1;
    if (r->n_handles == r->cap_handles) {
        int cap = r->cap_handles ? 2 * r->cap_handles : 4;
        int64_t *grown = tgi_realloc(r->ctx, r->handles, (size_t)r->cap_handles * sizeof *grown,
                                     (size_t)cap * sizeof *grown);
        if (!grown) {
            tgi_error(r->ctx, TG_ERR_NOMEM, "recorder: out of memory");
            return -1;
        }
        r->handles = grown;
        r->cap_handles = cap;
    }
    /* the hooks' steps are the tape's, as anomaly reports' are: the recorder can note stops */
    if (!r->observing && !(r->observing = tgi_anomaly_observe(r->ctx, note_anomaly, r))) {
        tgi_error(r->ctx, TG_ERR_STATE, "recorder: %d observers of anomaly stops already "
                  "(recorders and the dump)", TGI_MAX_OBSERVERS);
        return -1;
    }
    int64_t handle = params_only ? tg_hook_params(r->ctx, pattern, record_hook, r)
                                 : tg_hook_pattern(r->ctx, pattern, TG_PASS_BACKWARD, record_hook, r);
    if (handle > 0) r->handles[r->n_handles++] = handle;
    return handle;
}

int64_t tg_recorder_attach(tg_recorder *r, const char *pattern) { return attach(r, pattern, false); }
int64_t tg_recorder_attach_params(tg_recorder *r, const char *pattern) { return attach(r, pattern, true); }

void tg_recorder_stream(tg_recorder *r, FILE *file, tg_format format) {
    if (!r) return;
    r->stream = file;
    r->format = format;
    if (file && format == TG_FORMAT_CSV)
        fputs("step,name,l2_norm,max_abs,mean,std,zero_fraction,n_nan,n_inf\n", file);
}

int tg_recorder_series_count(const tg_recorder *r) { return r ? r->n_series : 0; }

const char *tg_recorder_series_name(const tg_recorder *r, int index) {
    return r && index >= 0 && index < r->n_series ? r->series[r->order[index]].name : NULL;
}

int tg_recorder_series(const tg_recorder *r, int index, int64_t *steps, tg_stats *stats, int max) {
    if (!r || index < 0 || index >= r->n_series || max < 0) return 0;
    const series *s = &r->series[r->order[index]];
    int n = s->count < max ? s->count : max;
    for (int i = 0; i < n; i++) {
        int slot = (s->head + s->count - n + i) % r->window; /* the newest n, oldest first */
        if (steps) steps[i] = s->steps[slot];
        if (stats) stats[i] = s->stats[slot];
    }
    return n;
}

bool tg_recorder_series_is_param(const tg_recorder *r, int index) {
    return r && index >= 0 && index < r->n_series && r->series[r->order[index]].param;
}

int tg_recorder_value_norms(const tg_recorder *r, int index, double *norms, int max) {
    if (!r || index < 0 || index >= r->n_series || max < 0) return 0;
    const series *s = &r->series[r->order[index]];
    int n = s->count < max ? s->count : max;
    for (int i = 0; norms && i < n; i++) norms[i] = s->value_norms[tgi_ring_slot(s->head, s->count - n + i, r->window)];
    return n;
}

int tg_recorder_global_norms(const tg_recorder *r, int64_t *steps, double *norms, int max) {
    if (!r || max < 0) return 0;
    int n = r->global_count < max ? r->global_count : max;
    for (int i = 0; i < n; i++) {
        const global_step *g = &r->global[(r->global_head + r->global_count - n + i) % r->window];
        if (steps) steps[i] = g->step;
        if (norms) norms[i] = sqrt(r->n_params ? g->sum_sq : g->sum_sq_all);
    }
    return n;
}

bool tgi_recorder_norm_at(const tg_recorder *r, int index, int64_t step, double *norm) {
    const series *s = &r->series[index];
    for (int i = s->count - 1; i >= 0; i--) {
        int slot = (s->head + i) % r->window;
        if (s->steps[slot] == step) {
            *norm = s->stats[slot].l2_norm;
            return true;
        }
        if (s->steps[slot] < step) return false;
    }
    return false;
}

double tg_recorder_first_last_ratio(const tg_recorder *r) {
    if (!r || r->n_series < 2) return NAN;
    int first = r->order[0], last = r->order[r->n_series - 1];
    const series *f = &r->series[first];
    for (int i = f->count - 1; i >= 0; i--) {
        int64_t step = f->steps[(f->head + i) % r->window];
        double a, b;
        if (tgi_recorder_norm_at(r, first, step, &a) && tgi_recorder_norm_at(r, last, step, &b))
            return a / b;
    }
    return NAN;
}

