/*
 * diagnostics/histogram.c — log-scale histograms of gradients, TensorBoard-style, with bounded
 * memory per series.
 *
 * A bin is read off the float's exponent bits (two binary orders per bin): no log per value.
 * Snapshots: one every `stride` records; when all TG_HIST_SNAPSHOTS are used, every other one is
 * dropped and the stride doubles, so the kept ones stay evenly spread over the whole run.
 */
#include "diagnostics/recorder.h"

#include <math.h>
#include <string.h>

/* Bin b starts at 4^(b - FIRST_POWER_OF_4). */
#define FIRST_POWER_OF_4 20

double tg_histogram_edge(int bin) {
    if (bin < 0 || bin > TG_HIST_BINS) return NAN;
    return ldexp(1.0, 2 * (bin - FIRST_POWER_OF_4));
}

/* Bin of a normal float's biased exponent (1..254). */
static int bin_of_exponent(int exponent) {
    int twice = exponent - 127 + 2 * FIRST_POWER_OF_4; /* floor(log2 |v|) + 40 */
    int bin = twice < 0 ? 0 : twice / 2;                 /* floor(log4 |v|) + 20 */
    return bin >= TG_HIST_BINS ? TG_HIST_BINS - 1 : bin;
}

void tg_histogram_compute(const float *values, int64_t n, int64_t step, tg_histogram *h) {
    if (!h) return;
    memset(h, 0, sizeof *h);
    h->step = step;
    if (!values || n < 0) return;
    /* counted by exponent first, without a branch per value; bins are folded from those */
    int64_t by_exponent[256] = {0}, zeros = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &values[i], sizeof bits);
        bits &= 0x7fffffffu;
        by_exponent[bits >> 23]++;
        zeros += bits == 0;
    }
    h->zero = zeros;
    h->nonfinite = by_exponent[255];
    h->counts[0] = by_exponent[0] - zeros; /* subnormals: below every edge */
    for (int e = 1; e < 255; e++) h->counts[bin_of_exponent(e)] += by_exponent[e];
}

tg_status tgi_histograms_init(tg_ctx *ctx, tgi_histograms *h) {
    h->snapshots = tgi_alloc(ctx, TG_HIST_SNAPSHOTS * sizeof *h->snapshots);
    h->count = 0;
    h->stride = 1;
    h->records = 0;
    return h->snapshots ? TG_OK : TG_ERR_NOMEM;
}

void tgi_histograms_release(tg_ctx *ctx, tgi_histograms *h) {
    tgi_free(ctx, h->snapshots, TG_HIST_SNAPSHOTS * sizeof *h->snapshots);
    h->snapshots = NULL;
}

void tgi_histograms_add(tgi_histograms *h, int64_t step, const float *values, int64_t n) {
    if (!h->snapshots || h->records++ % h->stride != 0) return;
    if (h->count == TG_HIST_SNAPSHOTS) {
        for (int i = 0; i < TG_HIST_SNAPSHOTS / 2; i++) h->snapshots[i] = h->snapshots[2 * i];
        h->count = TG_HIST_SNAPSHOTS / 2;
        h->stride *= 2;
        /* this record is the next one due only if it falls on the new, wider stride */
        if ((h->records - 1) % h->stride != 0) return;
    }
    tg_histogram_compute(values, n, step, &h->snapshots[h->count++]);
}

int tg_recorder_histograms(const tg_recorder *r, int index, tg_histogram *out, int max) {
    if (!r || index < 0 || index >= r->n_series || max < 0) return 0;
    const tgi_histograms *h = &r->series[r->order[index]].hist;
    int n = h->count < max ? h->count : max;
    for (int i = 0; out && i < n; i++) out[i] = h->snapshots[h->count - n + i];
    return n;
}
