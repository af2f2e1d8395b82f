/*
 * cli/lm_study.h — the study's `transformer` experiment: a character-level GPT on the fortunes
 * corpus, trained by its own loop (cli/lm_study.c) since a language model's data, loss and
 * measurements (per-block gradients, attention entropy, bits per character) are not those of
 * run_training; its findings, charts and summary fields are in cli/lm_report.c.
 */
#ifndef TAPEGRAD_LM_STUDY_H
#define TAPEGRAD_LM_STUDY_H

#include <jansson.h>
#include <stdio.h>

#include "cli/study.h"

#define LM_MAX_LAYERS 16
#define LM_MAX_HEADS 8
#define LM_MAX_SAMPLES 64

/* What the three parts of the experiment measure. */
typedef enum lm_part {
    LM_PART_INIT,     /* per-block gradient norm at the first step (Xiong et al. 2020) */
    LM_PART_WARMUP,   /* post-LN with and without warm-up against pre-LN */
    LM_PART_ENTROPY   /* attention entropy at a normal and a large learning rate, +- qk-norm */
} lm_part;

typedef struct lm_run_config {
    lm_part part;
    int n_layers;
    int64_t d_model, n_heads, block, batch; /* block: the window T */
    bool post_ln, qk_norm;
    float lr;
    int warmup;          /* steps of linear warm-up (0: none) */
    int steps;           /* 0: one forward and backward pass at initialisation, no update */
    int entropy_every;   /* > 0: attention entropy per head every this many steps */
    int eval_batches;    /* held-out batches for bits per character at the end (0: none) */
    uint64_t seed;
    int threads;
} lm_run_config;

typedef struct lm_run_result {
    int n_layers, n_heads;
    double block_grad_norm[LM_MAX_LAYERS]; /* |grad| of each block's weight matrices, first step */
    double block_grad_norm_all[LM_MAX_LAYERS]; /* the same over all of its parameters */
    int n_samples;
    int sample_step[LM_MAX_SAMPLES];
    /* mean over batch rows and query positions of -sum p log p (nats), per layer x head */
    double entropy[LM_MAX_SAMPLES][LM_MAX_LAYERS * LM_MAX_HEADS];
    double min_entropy[LM_MAX_SAMPLES];    /* the lowest head at each sample */
    double held_out_bpc;                   /* NAN when not measured or diverged */
    double final_train_loss;               /* mean of the last 10 steps (nats), NAN if diverged */
} lm_run_result;

/* The transformer experiment's own side of each run (e->lm). */
typedef struct lm_study {
    lm_run_config configs[MAX_RUNS];
    lm_run_result results[MAX_RUNS];
    const char *corpus;          /* "fortunes", or NULL: text holds the corpus */
    const char *text;            /* bytes of a corpus given in memory (tests) */
    int64_t text_length;
} lm_study;

/* Sets up the transformer experiment (e->lm allocated; lm_study_free releases it). text NULL:
 * the fortunes corpus; else that many bytes of text (the tests' own, no package needed). */
bool lm_study_setup(experiment *e, uint64_t seed, bool quick, const char *text, int64_t text_length);
void lm_study_free(experiment *e);
/* Trains run r of a transformer experiment into e->results[r] and e->lm->results[r]. */
void lm_study_train(experiment *e, int r, progress_fn progress, void *user);
/* One run on a text already in ctx: what lm_study_train does without the bookkeeping. */
void lm_run(tg_ctx *ctx, tg_text *text, const lm_run_config *c, run_result *out, lm_run_result *lm,
            progress_fn progress, void *user);

/* cli/lm_report.c */
void lm_study_finding(experiment *e, char *buf, size_t size);
void lm_study_json(const experiment *e, int r, json_t *run);
void lm_study_html(FILE *f, const experiment *e);

#endif
