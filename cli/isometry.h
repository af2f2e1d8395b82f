/*
 * cli/isometry.h — the study's `isometry` experiment (Saxe et al. 2014; Pennington, Schoenholz &
 * Ganguli 2017): deep tanh and ReLU MLPs at initialisation under Gaussian N(0, 1/fan_in),
 * scaled (Xavier for tanh, He for ReLU) and orthogonal weights; the singular values of the
 * input-output Jacobian (tg_jacobian_singular_values) beside the gradient reaching the first
 * layer and a short training run (run_training, the generic report).
 */
#ifndef TAPEGRAD_ISOMETRY_H
#define TAPEGRAD_ISOMETRY_H

#include <jansson.h>

#include "cli/study.h"

typedef struct iso_measure {
    double largest, smallest, mean_square; /* of the Jacobian at initialisation (NaN: failed) */
    char error[256];
} iso_measure;

typedef struct iso_study {
    iso_measure runs[MAX_RUNS];
} iso_study;

bool isometry_setup(experiment *e, uint64_t seed, bool quick);
/* Measures run r's net at initialisation (the same model and seed run_training builds). */
void isometry_measure(experiment *e, int r);
void isometry_finding(const experiment *e, writer *w);
void isometry_json(const experiment *e, int r, json_t *run);
/* The report's chart: the Jacobian's spread against depth, per activation and initialiser. */
void isometry_html(FILE *f, const experiment *e);
void isometry_free(experiment *e);

#endif
