/*
 * diagnostics/recorder.h — the recorder's insides, shared by the recorder (recording), the
 * histograms and onset detection (reading).
 */
#ifndef TAPEGRAD_DIAGNOSTICS_RECORDER_H
#define TAPEGRAD_DIAGNOSTICS_RECORDER_H

#include "autograd/internal.h"

/* A series' histograms: at most TG_HIST_SNAPSHOTS, one every `stride` records. */
typedef struct tgi_histograms {
    tg_histogram *snapshots;
    int count;
    int stride;
    int64_t records;         /* records seen: a snapshot is taken when records % stride == 0 */
} tgi_histograms;

typedef struct tgi_series {
    char name[TG_LABEL_MAX];
    bool param;              /* a parameter: counts in the global norm */
    int64_t *steps;          /* ring buffers of `window` records */
    tg_stats *stats;
    double *value_norms;     /* NaN when not known */
    int count, head;         /* head: index of the oldest record */
    tgi_histograms hist;     /* snapshots NULL until the series gets values */
} tgi_series;

typedef struct tgi_global_step {
    int64_t step;
    double sum_sq;           /* of the parameter series' norms at this step (NaN once any is) */
    double sum_sq_all;       /* of every series' norms */
} tgi_global_step;

typedef struct tgi_loss_point {
    int64_t step;
    double loss;
} tgi_loss_point;

/* A watched activation (tg_recorder_attach_activations): the sums of its latest watched step,
 * over every node of that name (an RNN's h[1..T] are one entry). */
typedef struct tgi_activation {
    char name[TG_LABEL_MAX];
    char op[16];             /* relu, sigmoid, tanh, rnn_cell, lstm_hidden */
    int64_t step;
    double units, dead;      /* relu: units, and of them dead ones */
    double values, saturated; /* sigmoid, tanh, rnn_cell */
    double gates, forget_saturated, forget_closed; /* lstm_hidden: forget-gate values */
} tgi_activation;

/* A scalar series (tg_recorder_add_metric): at most TG_METRIC_POINTS points, one every `stride`
 * points offered (and the newest); when full, every other point is dropped and the stride
 * doubles. */
typedef struct tgi_metric {
    char name[TG_LABEL_MAX];
    int64_t steps[TG_METRIC_POINTS];
    double values[TG_METRIC_POINTS];
    int count, stride;
    int64_t offered;         /* points added: one is kept when offered % stride == 0 */
    bool tail;               /* the last point is the newest, off the grid */
    int64_t last_step;
} tgi_metric;

typedef struct tgi_instruments tgi_instruments; /* diagnostics/instruments.c */

struct tg_recorder {
    tg_ctx *ctx;
    int window;
    tgi_series *series;
    int n_series, cap_series, n_params;
    int *order;              /* series indices in natural order of names */
    tgi_global_step *global; /* ring of `window` steps */
    int global_count, global_head;
    tgi_loss_point *losses;  /* ring of `window` steps */
    int loss_count, loss_head;
    bool has_nan;
    int64_t first_nan_step;
    char first_nan_name[TG_LABEL_MAX];
    bool anomaly_stopped;    /* anomaly mode stopped a step of this context */
    int64_t anomaly_step;
    char anomaly[256];
    int64_t last_step;
    FILE *stream;
    tg_format format;
    int64_t *handles;
    int n_handles, cap_handles;
    bool observing;          /* told of anomaly stops (once attached: its steps are the tape's) */
    tgi_activation *activations; /* watched activations, in the order they first appeared */
    int n_activations, cap_activations;
    int activation_every;    /* 0: not watching */
    tgi_metric *metrics;     /* scalar series, in the order they first appeared */
    int n_metrics, cap_metrics;
    FILE *metric_stream;
    tg_format metric_format;
    tgi_instruments *instruments; /* tg_recorder_instruments, else NULL */
    tgi_retired retired;     /* tg_recorder_free */
};

/* The norm of series `index` (storage order) recorded at `step`; false if none. */
TGI_HIDDEN bool tgi_recorder_norm_at(const tg_recorder *r, int index, int64_t step, double *norm);

/* The slot of the i-th oldest record of a ring of `window` slots starting at head. */
static inline int tgi_ring_slot(int head, int i, int window) {
    return (head + i) % window;
}

/* The watched activations' statistics (diagnostics/activations.c). */
TGI_HIDDEN tg_activation_stats tgi_activation_stats_of(const tgi_activation *a);
TGI_HIDDEN void tgi_activations_release(tg_recorder *r);

/* The scalar series and the instruments that feed them (diagnostics/metrics.c, instruments.c). */
TGI_HIDDEN void tgi_metrics_release(tg_recorder *r);
TGI_HIDDEN void tgi_instruments_release(tg_recorder *r);
/* Writes a number as CSV/JSON do: %.9g, or null when not finite. */
TGI_HIDDEN void tgi_write_number(FILE *f, double v);
/* Writes a JSON string's contents (quotes and backslashes escaped, control bytes dropped). */
TGI_HIDDEN void tgi_write_json_text(FILE *f, const char *s);

/* Allocates a series' histogram snapshots (once, when it first gets values). */
TGI_HIDDEN tg_status tgi_histograms_init(tg_ctx *ctx, tgi_histograms *h);
TGI_HIDDEN void tgi_histograms_release(tg_ctx *ctx, tgi_histograms *h);
/* Takes a snapshot of values when one is due. */
TGI_HIDDEN void tgi_histograms_add(tgi_histograms *h, int64_t step, const float *values, int64_t n);

#endif
