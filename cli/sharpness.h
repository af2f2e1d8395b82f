/*
 * cli/sharpness.h — the study's `sharpness` experiment (Cohen et al. 2021, "the edge of
 * stability"): full-batch gradient descent on a fixed subset of the digits (MSE on one-hot
 * targets, a small tanh MLP) at several learning rates, the top Hessian eigenvalue measured
 * every few steps with tg_curvature. Its own loop (cli/sharpness.c): full-batch steps and
 * Lanczos measurements are not run_training's; the generic parts of the report (loss chart,
 * table) read the run_result it fills.
 */
#ifndef TAPEGRAD_SHARPNESS_H
#define TAPEGRAD_SHARPNESS_H

#include <jansson.h>
#include <stdio.h>

#include "cli/study.h"

#define SHARP_MAX_MEASURES 64

typedef struct sharp_run {
    float lr;
    int n;                                  /* measurements taken */
    int step[SHARP_MAX_MEASURES];           /* before the update of this step */
    double lambda[SHARP_MAX_MEASURES];      /* the Hessian's largest eigenvalue there */
    int64_t cross_step;                     /* first measured step with lr * lambda >= 2 (-1: none) */
    double cross_value;                     /* lr * lambda there */
} sharp_run;

/* The experiment's own side (e->sharp). */
typedef struct sharp_study {
    int every;                              /* steps between measurements */
    int64_t samples;                        /* the fixed subset, one full batch */
    sharp_run runs[MAX_RUNS];
} sharp_study;

/* Configures e as the sharpness experiment; false when out of memory. */
bool sharpness_setup(experiment *e, uint64_t seed, bool quick);
/* Trains run r (fills e->results[r] and e->sharp->runs[r]). */
void sharpness_train(experiment *e, int r, progress_fn progress, void *user);
/* The finding, from the numbers. */
void sharpness_finding(const experiment *e, writer *w);
/* Summary fields of run r. */
void sharpness_json(const experiment *e, int r, json_t *run);
/* The sharpness chart: lambda_max over training against 2 / lr. */
void sharpness_html(FILE *f, const experiment *e);
void sharpness_free(experiment *e);

#endif
