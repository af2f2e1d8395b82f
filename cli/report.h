/* cli/report.h — the study report: index.html, summary.json, one CSV per experiment. */
#ifndef TAPEGRAD_REPORT_H
#define TAPEGRAD_REPORT_H

#include "cli/study.h"

/* Writes the report into dir (which exists), whole or not at all (cli/files.h); 0 on success,
 * else prints why, naming the command ("study", "train"), and returns 1. */
int write_report(const char *command, const char *dir, const experiment *experiments, int n,
                 uint64_t seed, bool quick, double seconds);
/* A line plot as a figure of index.html. */
void report_chart(FILE *f, const tg_line_plot *plot);
/* Heatmap of the gradient histograms of the run's h-th histogram layer (bins x snapshots). */
void histogram_heatmap(FILE *f, const run_result *r, int h);
/* The instruments of --curvature over training (cli/instruments_chart.c); nothing when no run
 * has any. */
void instrument_charts(FILE *f, const experiment *e);
int run_study(int argc, char **argv);
int run_train(int argc, char **argv);
int run_params(int argc, char **argv);
int run_inspect(int argc, char **argv);

#endif
