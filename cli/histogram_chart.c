/*
 * cli/histogram_chart.c — a layer's gradient histograms over training as a heatmap, the way
 * TensorBoard's distributions read: |gradient| bins up the side (large at the top), recorded
 * steps along the bottom, the colour the fraction of the layer's values in each bin.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/report.h"

/* The bins any snapshot uses, so the chart is not mostly empty rows. */
static void used_bins(const tg_histogram *hists, int n, int *low, int *high) {
    *low = TG_HIST_BINS;
    *high = -1;
    for (int s = 0; s < n; s++)
        for (int b = 0; b < TG_HIST_BINS; b++)
            if (hists[s].counts[b]) {
                *low = b < *low ? b : *low;
                *high = b > *high ? b : *high;
            }
}

void histogram_heatmap(FILE *f, const run_result *r, int h) {
    const tg_histogram *hists = r->histograms + h * TG_HIST_SNAPSHOTS;
    int n = r->n_hist[h], low, high;
    used_bins(hists, n, &low, &high);
    if (n == 0 || high < 0) return;
    int rows = high - low + 1;
    double *cells = malloc((size_t)rows * (size_t)n * sizeof *cells), *steps = malloc((size_t)n * sizeof *steps);
    char (*names)[16] = malloc((size_t)rows * sizeof *names);
    const char **row_names = malloc((size_t)rows * sizeof *row_names);
    if (cells && steps && names && row_names) {
        for (int s = 0; s < n; s++) {
            int64_t total = hists[s].zero + hists[s].nonfinite;
            for (int b = 0; b < TG_HIST_BINS; b++) total += hists[s].counts[b];
            steps[s] = (double)hists[s].step;
            for (int k = 0; k < rows; k++) /* row 0 at the top: the largest bin */
                cells[k * n + s] = total ? (double)hists[s].counts[high - k] / (double)total : NAN;
        }
        for (int k = 0; k < rows; k++) {
            snprintf(names[k], sizeof names[k], "%.0e", tg_histogram_edge(high - k));
            row_names[k] = names[k];
        }
        char title[160];
        snprintf(title, sizeof title, "%s: |gradient| histogram of %s", r->config.name,
                 r->layer_names[r->hist_layer[h]]);
        tg_heatmap map = {title, "training step", "|gradient| from", "fraction of values", cells, rows, n,
                          row_names, steps, true, 0, 0};
        tg_svg_heatmap(f, &map);
    }
    free(cells);
    free(steps);
    free(names);
    free(row_names);
}
