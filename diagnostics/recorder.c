/*
 * diagnostics/recorder.c — the gradient-flow recorder: per series and per step statistics in
 * bounded ring buffers, streamed to CSV or JSON Lines as they arrive.
 *
 * Every buffer is sized when its series first appears (window records), so recording in the
 * steady state allocates nothing.
 */
#include "autograd/internal.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

typedef struct series {
    char name[TG_LABEL_MAX];
    int64_t *steps;          /* ring buffers of `window` records */
    tg_stats *stats;
    int count, head;         /* head: index of the oldest record */
} series;

typedef struct global_step {
    int64_t step;
    double sum_sq;           /* of the series norms at this step (NaN once any is NaN) */
} global_step;

struct tg_recorder {
    tg_ctx *ctx;
    int window;
    series *series;
    int n_series, cap_series;
    int *order;              /* series indices in natural order of names */
    global_step *global;     /* ring of `window` steps */
    int global_count, global_head;
    bool has_nan;
    int64_t first_nan_step;
    char first_nan_name[TG_LABEL_MAX];
    int64_t last_step;
    FILE *stream;
    tg_format format;
    int64_t *handles;
    int n_handles, cap_handles;
};

tg_recorder *tg_recorder_new(tg_ctx *ctx, int window) {
    if (!ctx) return NULL;
    if (window < 1) {
        tgi_error(ctx, TG_ERR_INVALID, "recorder: window %d, expected >= 1", window);
        return NULL;
    }
    tg_recorder *r = tgi_alloc(ctx, sizeof *r);
    global_step *global = tgi_alloc(ctx, (size_t)window * sizeof *global);
    if (!r || !global) {
        tgi_free(ctx, r, sizeof *r);
        tgi_free(ctx, global, (size_t)window * sizeof *global);
        tgi_error(ctx, TG_ERR_NOMEM, "recorder: out of memory");
        return NULL;
    }
    memset(r, 0, sizeof *r);
    r->ctx = ctx;
    r->window = window;
    r->global = global;
    r->last_step = INT64_MIN;
    return r;
}

void tg_recorder_free(tg_recorder *r) {
    if (!r) return;
    tg_ctx *ctx = r->ctx;
    for (int i = 0; i < r->n_handles; i++) tg_hook_remove(ctx, r->handles[i]);
    for (int i = 0; i < r->n_series; i++) {
        tgi_free(ctx, r->series[i].steps, (size_t)r->window * sizeof(int64_t));
        tgi_free(ctx, r->series[i].stats, (size_t)r->window * sizeof(tg_stats));
    }
    tgi_free(ctx, r->series, (size_t)r->cap_series * sizeof *r->series);
    tgi_free(ctx, r->order, (size_t)r->cap_series * sizeof *r->order);
    tgi_free(ctx, r->global, (size_t)r->window * sizeof *r->global);
    tgi_free(ctx, r->handles, (size_t)r->cap_handles * sizeof *r->handles);
    tgi_free(ctx, r, sizeof *r);
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

static int add_series(tg_recorder *r, const char *name) {
    if (r->n_series == r->cap_series && grow_series(r) != TG_OK) return -1;
    series *s = &r->series[r->n_series];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->steps = tgi_alloc(r->ctx, (size_t)r->window * sizeof(int64_t));
    s->stats = tgi_alloc(r->ctx, (size_t)r->window * sizeof(tg_stats));
    if (!s->steps || !s->stats) {
        tgi_free(r->ctx, s->steps, (size_t)r->window * sizeof(int64_t));
        tgi_free(r->ctx, s->stats, (size_t)r->window * sizeof(tg_stats));
        return -1;
    }
    /* insertion into the natural order */
    int at = r->n_series;
    while (at > 0 && natural_compare(r->series[r->order[at - 1]].name, name) > 0) {
        r->order[at] = r->order[at - 1];
        at--;
    }
    r->order[at] = r->n_series;
    return r->n_series++;
}

/* Appends to a ring of `window` slots; returns the slot to write. */
static int ring_push(int *count, int *head, int window) {
    if (*count < window) return (*head + (*count)++) % window;
    int slot = *head;
    *head = (*head + 1) % window;
    return slot;
}

static void write_number(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.9g", v);
    else fputs("null", f);
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
    for (const char *p = name; *p; p++) {
        if (*p == '"' || *p == '\\') fputc('\\', f);
        if ((unsigned char)*p >= 0x20) fputc(*p, f);
    }
    fputc('"', f);
    for (int k = 0; k < 5; k++) {
        fprintf(f, ",\"%s\":", keys[k]);
        write_number(f, values[k]);
    }
    fprintf(f, ",\"n_nan\":%lld,\"n_inf\":%lld}\n", (long long)st->n_nan, (long long)st->n_inf);
}

tg_status tg_recorder_add(tg_recorder *r, int64_t step, const char *name, const tg_stats *stats) {
    if (!r) return TG_ERR_INVALID;
    if (tgi_check_name(r->ctx, "recorder_add", name) != TG_OK) return TG_ERR_INVALID;
    if (!stats) return tgi_error(r->ctx, TG_ERR_INVALID, "recorder_add '%s': stats is NULL", name);
    if (step < r->last_step)
        return tgi_error(r->ctx, TG_ERR_INVALID, "recorder: step %lld after step %lld ('%s')",
                         (long long)step, (long long)r->last_step, name);
    int index = find_series(r, name);
    if (index < 0 && (index = add_series(r, name)) < 0)
        return tgi_error(r->ctx, TG_ERR_NOMEM, "recorder: out of memory for series '%s'", name);
    series *s = &r->series[index];
    int slot = ring_push(&s->count, &s->head, r->window);
    s->steps[slot] = step;
    s->stats[slot] = *stats;

    if (r->global_count == 0 || step != r->last_step) {
        int g = ring_push(&r->global_count, &r->global_head, r->window);
        r->global[g].step = step;
        r->global[g].sum_sq = 0.0;
    }
    int newest = (r->global_head + r->global_count - 1) % r->window;
    r->global[newest].sum_sq += stats->l2_norm * stats->l2_norm;
    r->last_step = step;

    bool bad = stats->n_nan > 0 || stats->n_inf > 0 || !isfinite(stats->l2_norm);
    if (bad && !r->has_nan) {
        r->has_nan = true;
        r->first_nan_step = step;
        snprintf(r->first_nan_name, sizeof r->first_nan_name, "%s", name);
    }
    if (r->stream) stream_record(r, step, name, stats);
    return TG_OK;
}

static tg_status record_hook(tg_ctx *ctx, const tg_hook_event *event, void *user) {
    (void)ctx;
    tg_stats stats;
    tg_stats_compute(event->values, event->size, &stats);
    return tg_recorder_add(user, event->step, event->name, &stats);
}

int64_t tg_recorder_attach(tg_recorder *r, const char *pattern) {
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
    int64_t handle = tg_hook_pattern(r->ctx, pattern, TG_PASS_BACKWARD, record_hook, r);
    if (handle > 0) r->handles[r->n_handles++] = handle;
    return handle;
}

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

int tg_recorder_global_norms(const tg_recorder *r, int64_t *steps, double *norms, int max) {
    if (!r || max < 0) return 0;
    int n = r->global_count < max ? r->global_count : max;
    for (int i = 0; i < n; i++) {
        const global_step *g = &r->global[(r->global_head + r->global_count - n + i) % r->window];
        if (steps) steps[i] = g->step;
        if (norms) norms[i] = sqrt(g->sum_sq);
    }
    return n;
}

/* The newest record of a series at or before `step`; false if none. */
static bool norm_at(const tg_recorder *r, int index, int64_t step, double *norm) {
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
        if (norm_at(r, first, step, &a) && norm_at(r, last, step, &b)) return a / b;
    }
    return NAN;
}

/* Vanishing: below vanish_ratio of the largest series norm for vanish_steps steps in a row. */
static void detect_vanishing(const tg_recorder *r, const tg_onset_opts *opts, tg_onset_report *report) {
    int n_steps = r->global_count;
    for (int k = 0; k < r->n_series && report->n_vanishing < TG_MAX_VANISHING; k++) {
        int index = r->order[k], run = 0;
        for (int i = 0; i < n_steps; i++) {
            int64_t step = r->global[(r->global_head + i) % r->window].step;
            double norm, largest = 0.0, other;
            if (!norm_at(r, index, step, &norm)) {
                run = 0;
                continue;
            }
            for (int j = 0; j < r->n_series; j++)
                if (norm_at(r, j, step, &other) && isfinite(other) && other > largest) largest = other;
            run = norm < opts->vanish_ratio * largest ? run + 1 : 0;
            if (run == opts->vanish_steps) {
                int v = report->n_vanishing++;
                snprintf(report->vanishing[v], TG_LABEL_MAX, "%s", r->series[index].name);
                report->vanishing_since[v] =
                    r->global[(r->global_head + i - opts->vanish_steps + 1) % r->window].step;
                break;
            }
        }
    }
}

tg_status tg_recorder_detect(const tg_recorder *r, const tg_onset_opts *opts, tg_onset_report *report) {
    if (!r) return TG_ERR_INVALID;
    if (!report) return tgi_error(r->ctx, TG_ERR_INVALID, "recorder_detect: report is NULL");
    tg_onset_opts defaults = tg_onset_defaults();
    if (!opts) opts = &defaults;
    int n = r->global_count;
    int64_t *steps = tgi_alloc(r->ctx, (size_t)(n ? n : 1) * sizeof *steps);
    double *norms = tgi_alloc(r->ctx, (size_t)(n ? n : 1) * sizeof *norms);
    if (!steps || !norms) {
        tgi_free(r->ctx, steps, (size_t)(n ? n : 1) * sizeof *steps);
        tgi_free(r->ctx, norms, (size_t)(n ? n : 1) * sizeof *norms);
        return tgi_error(r->ctx, TG_ERR_NOMEM, "recorder: out of memory");
    }
    tg_recorder_global_norms(r, steps, norms, n);
    tg_detect_explosion(steps, norms, n, opts, report);
    tgi_free(r->ctx, steps, (size_t)(n ? n : 1) * sizeof *steps);
    tgi_free(r->ctx, norms, (size_t)(n ? n : 1) * sizeof *norms);
    /* the first NaN is tracked over every record, window or not, with the series it hit */
    report->has_nan = r->has_nan;
    report->first_nan_step = r->has_nan ? r->first_nan_step : -1;
    snprintf(report->first_nan_name, sizeof report->first_nan_name, "%s",
             r->has_nan ? r->first_nan_name : "");
    detect_vanishing(r, opts, report);
    tgi_onset_summarize(report, opts);
    return TG_OK;
}
