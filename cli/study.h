/*
 * cli/study.h — what the `study` and `train` commands share: a run's configuration, what a
 * run records, and the experiment tables.
 */
#ifndef TAPEGRAD_STUDY_H
#define TAPEGRAD_STUDY_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tapegrad.h"

#define EXIT_USAGE 2
/* Room for a library message (paths included) and what the run adds before it. */
#define RUN_ERROR_MAX 17000
#define MAX_LAYERS 64
#define MAX_EVALS 64

typedef enum model_kind { MODEL_MLP, MODEL_RESMLP, MODEL_RNN, MODEL_LENET, MODEL_RESNET } model_kind;
typedef enum data_kind { DATA_DIGITS, DATA_ADDING, DATA_SPIRALS, DATA_CSV, DATA_IDX, DATA_FASHION } data_kind;

/* One epoch of --epochs as it ends (run_config.epoch_event). */
typedef struct epoch_report {
    int epoch, epochs;           /* 1-based */
    int step;                    /* steps done */
    double train_loss;           /* the mean of the epoch's step losses */
    double test_loss, test_accuracy; /* on the whole held-out set (accuracy NAN for regression) */
    double seconds;              /* the epoch's training, its evaluation aside */
    double cpu_seconds;          /* the process's CPU time over the same span (every thread): on
                                    a shared machine the steadier figure */
    double samples_per_second;   /* training samples (images) per second over the epoch */
} epoch_report;

/* One training run: model, data, optimizer, remedies. */
typedef struct run_config {
    char name[96];               /* shown in tables and legends: "sigmoid, Xavier" */
    model_kind model;
    int depth;                   /* MLP: linear layers; residual: blocks; ResNet: weight layers (6n+2) */
    int64_t width;               /* hidden width; ResNet: channels of its first stage */
    tg_activation activation;
    tg_init init;
    tg_norm_kind norm;
    float dropout;               /* MLP: after each hidden activation while training (0: none) */
    int64_t train_subset;        /* > 0: train on this many samples of the training part only,
                                    and measure the fit on them at the end */
    bool skip;                   /* residual MLP, ResNet: identity path on (off: the plain twin) */
    tg_rnn_kind rnn;
    int64_t hidden;
    int rnn_layers;              /* stacked recurrent layers (0: one) */
    bool bidirectional;          /* recurrent: a reverse direction per layer */
    data_kind data;
    bool regression;             /* csv: the last column is a target (MSE), not a class */
    const char *activation_op;   /* MLP: a registered op ("swish", "swish:beta=2") for activation */
    int64_t seq_len;             /* adding problem T */
    const char *data_path;       /* csv:PATH, idx:IMAGES,LABELS, fashion-mnist:DIR (the argument
                                    itself: any length; fashion-mnist: NULL, the package's) */
    tg_optimizer_config opt;
    const char *schedule_text;   /* --schedule as given (NULL: the constant --lr) */
    tg_schedule schedule;        /* what the optimizer follows then (lr 0: the optimizer's;
                                    total_steps: the run's steps) */
    int steps;
    int epochs;                  /* > 0: steps is epochs whole passes over the training set, with
                                    an evaluation and epoch_event after each */
    void (*epoch_event)(const epoch_report *report, void *user);
    void *epoch_user;
    int64_t batch;
    int augment_crop;            /* --augment crop:P: pad P zeros, crop back at random (0: none) */
    bool augment_flip;           /* --augment flip: mirror half the images */
    bool augment_normalize;      /* --augment normalize: per-channel mean 0, std 1 (the training
                                    set's statistics), the held-out set's too */
    int eval_every;              /* > 0: held-out loss before training and every this many steps */
    float clip_value;            /* > 0: clamp every gradient element */
    float clip_norm;             /* > 0: global-norm clipping */
    bool anomaly;
    bool anomaly_counts;         /* TG_ANOMALY_COUNTS: count non-finite values, never stop */
    const char *anomaly_dump;    /* with anomaly: the culprit op's inputs, as safetensors */
    bool guard;                  /* refuse non-finite and outlier steps, roll them back and
                                    lower the rate (tg_guard attached to the optimizer) */
    double guard_z;              /* its z-score threshold (0: the default) */
    double guard_factor;         /* the rate's factor on each rescue (0: the default) */
    double guard_floor;          /* the rate's floor, a fraction of the original (0: the default) */
    int guard_grow;              /* clean steps before the rate grows back (0: the default;
                                    < 0: never) */
    tg_guard_event_fn guard_event; /* told each rescue as it happens (NULL: counted only) */
    void *guard_user;
    int curvature_every;         /* > 0: the instruments on the step's batch every this many
                                    steps (the recorder's, 8 Lanczos steps) */
    unsigned instruments;        /* which: INSTRUMENT_* bits (0 with curvature_every: lambda) */
    /* each measurement, its readings the recorder's newest values (recorder_newest) */
    void (*curvature_event)(int step, const tg_recorder *readings, void *user);
    void *curvature_user;
    bool track_timesteps;        /* record |dL/dh[t]| at the first step */
    uint64_t seed;
    int threads;                 /* tg_ctx_set_threads (0: the cores available) */
    bool distributed;            /* data-parallel over the ranks of mpirun (train only) */
    double dist_timeout;         /* --dist-timeout: seconds a collective may go without progress
                                    before the job ends (0: tapegrad_dist's default, 300) */
    const char *save_path, *load_path;
    int save_every;              /* > 0: --save's checkpoint every this many steps as well */
    int recompute;               /* > 0: gradient checkpointing, segments of this many time steps
                                    (recurrent) or residual blocks (ResNet) */
    const char *resume_path;     /* --resume: a --save checkpoint to go on from (the model, the
                                    optimizer's state, the step it was at) */
    bool load_partial;           /* --load-partial: load what matches, say what does not */
    const char *command;         /* the tool's command that runs ("train", "params"), for its
                                    messages (NULL: "train") */
    const char *plugins[16];     /* shared libraries to load first */
    int n_plugins;
    const char *hooks[16];       /* PATTERN:NAME of hooks the plugins exported */
    int n_hooks;
} run_config;

/* What a run leaves behind; arrays are owned by the result (run_result_free). */
/* --instruments: what --curvature measures (the recorder's instruments). */
enum {
    INSTRUMENT_LAMBDA = 1,   /* the Hessian's top eigenvalue: "hessian.lambda_max", "lr_lambda_max" */
    INSTRUMENT_TRACE = 2,    /* its trace (Hutchinson): "hessian.trace" */
    INSTRUMENT_JACOBIAN = 4  /* the batch's input-output Jacobian: "jacobian.sigma_max", ... */
};

/* A scalar series of the recorder at the end of a run. */
typedef struct run_metric {
    char name[TG_LABEL_MAX];
    int n;
    int64_t steps[TG_METRIC_POINTS];
    double values[TG_METRIC_POINTS];
} run_metric;

/* A run's series by name (NULL when it has none). */
struct run_result;
const run_metric *run_metric_find(const struct run_result *r, const char *name);
/* The recorder's newest value of a series (NaN when it has none). */
double recorder_newest(const tg_recorder *recorder, const char *name);

typedef struct run_result {
    run_config config;
    int n_layers;
    char layer_names[MAX_LAYERS][TG_LABEL_MAX];
    double grad_norm_by_layer[MAX_LAYERS]; /* at the first step */
    double first_last_ratio;
    int steps_done;              /* steps run (a NaN stops the run) */
    int first_step;              /* --resume: the step the run went on from (0: none) */
    double *loss;                /* per step, NAN after a stop */
    double *grad_norm;           /* global gradient norm per step (before clipping) */
    double *layer_norms;         /* n_layers x steps: gradient norm of each layer at each step */
    double final_loss;           /* on held-out data */
    int n_evals;                 /* held-out loss after eval_step[i] steps (the last: final_loss) */
    int eval_step[MAX_EVALS];
    double eval_loss[MAX_EVALS];
    double test_accuracy;        /* NAN for regression */
    double train_loss, train_accuracy; /* on the training samples at the end (train_subset > 0; else NAN) */
    double weight_norm;          /* L2 norm of every weight matrix and kernel together, at the end */
    int64_t n_param_elements;    /* scalars in the parameters (what a clip by value bounds one by one) */
    int classes;                 /* of the data set; 0 for regression */
    int64_t explosion_onset_step, first_nan_step; /* -1: none */
    char onset_summary[1024];
    int n_findings;              /* onset detection's verdicts, each with its advice */
    tg_finding findings[TG_MAX_FINDINGS];
    int n_timesteps;
    /* |dL/dh[t]| of the first layer (forward direction), t = 1..T, at the first step; NULL if none */
    double *grad_norm_by_timestep;
    double *grad_norm_by_timestep_end; /* the same at the last step (after training) */
    double seconds;
    unsigned unmatched_hooks;    /* bit i: config.hooks[i] saw no node in the first backward pass */
    bool anomaly_stopped;        /* anomaly mode stopped the run: error holds its message */
    bool error_printed;          /* under mpirun, a refused start printed by its rank already */
    tg_guard_stats guard;        /* what the step guard refused and rescued */
    double lr_first, lr_peak, lr_last; /* the rates the first, the highest and the last step took */
    int n_metrics;               /* the recorder's scalar series (--curvature: the instruments' */
    run_metric *metrics;         /* readings and "lr"), spanning the run in bounded memory */
    int64_t nonfinite_steps;     /* anomaly counts: steps with a NaN/Inf somewhere */
    char first_nonfinite[160];   /* anomaly counts: the first step and node that had one */
#define HIST_LAYERS 3
    int n_hist_layers;           /* gradient histograms of the first, middle and last layer */
    int hist_layer[HIST_LAYERS]; /* their layer indices */
    int n_hist[HIST_LAYERS];
    tg_histogram *histograms;    /* HIST_LAYERS x TG_HIST_SNAPSHOTS */
    char error[RUN_ERROR_MAX];   /* non-empty when the run failed */
} run_result;

/* Progress of a run, reported every few steps (may be called from worker threads). */
typedef void (*progress_fn)(void *user, int step, double loss);

/* --schedule TEXT (cli/schedule_arg.c): cosine | linear | step:N:GAMMA | warmup:N[,cosine|,linear|
 * ,step:N:GAMMA] into *out (its total_steps left for settle_schedule); 0, or -1 for a spelling
 * that is none of these. */
int parse_schedule_arg(const char *text, tg_schedule *out);
/* Sets the schedule's total_steps to the run's steps; 0, or -1 with the reason in why. */
int settle_schedule(tg_schedule *s, int steps, char *why, size_t size);

/* The parameters (state: the buffers too) of body, then of head (NULL: none), into out, which
 * has room for max: how many, or -1 when they do not fit (nothing past max is written). */
int list_modules(const tg_module *body, const tg_module *head, bool state, tg_tensor **out, int max);

/* --hook PATTERN:NAME: attaches the hook a plugin exported as NAME to every parameter and node
 * matching PATTERN (backward pass). TG_OK, or the error on ctx. */
tg_status attach_named_hook(tg_ctx *ctx, const char *spec);

/* The number of samples a run of config trains on (its data set less the held-out part),
 * reading the data set when it comes from files; -1 with the reason in why when it cannot. */
int64_t run_training_samples(const run_config *config, char *why, size_t size);
/* Prints the summary (tg_module_summary) of the model config builds: every module with its
 * parameter count, every parameter and buffer by name and shape, the totals; 0, or 1 with the
 * reason in why. */
int list_model_state(const run_config *config, FILE *out, char *why, size_t size);
/* Trains one configuration; the result is filled even on failure (see result->error). */
void run_training(const run_config *config, run_result *result, progress_fn progress, void *user);
void run_result_free(run_result *result);
/* "resnet", "plaincnn", "lenet", "mlp", ...: the model as `train --model` names it. */
const char *model_name(const run_config *config);
/* Weight layers of the model, input to output (what a CNN's depth counts); 0 for recurrent. */
int model_layers(const run_config *config);
/* "12.3", "3.1e-05", or "–" for NaN: for tables. */
const char *format_number(double value, char *buf, size_t size);


/* ---- experiments (cli/experiments.c) ------------------------------------------------------- */

#define MAX_RUNS 12

/* Which charts an experiment's section shows. */
enum {
    CHART_LAYERS = 1,     /* gradient norm per layer at the first step */
    CHART_LOSS = 2,       /* training loss per step */
    CHART_HEAT = 4,       /* layer x step map of the gradient norm */
    CHART_STEPS = 8,      /* global gradient norm per step */
    CHART_TIMESTEPS = 16, /* |dL/dh[t]| over time steps */
    CHART_HELD_OUT = 32,  /* held-out loss during training */
    CHART_FIT = 64,       /* training against held-out loss and accuracy, the gap, weight norm */
    CHART_HIST = 128      /* gradient histograms of the first, middle and last layer */
};

/* The regularisation experiment's net and training set (its findings quote them). */
#define REGULARISATION_WIDTH 256
#define REGULARISATION_SAMPLES 200

typedef struct experiment {
    const char *name;
    const char *title;
    const char *question;
    int charts;
    int n_runs;
    run_config runs[MAX_RUNS];
    run_result results[MAX_RUNS];
    char finding[8192];   /* plain words, computed from the results (train: with advice) */
    struct lm_study *lm;  /* the transformer experiment's own loop and measurements
                             (cli/lm_study.h); NULL for the others */
    struct iso_study *iso;     /* the isometry experiment's Jacobian spectra (cli/isometry.h) */
    struct sharp_study *sharp; /* the sharpness experiment's loop and measurements
                                  (cli/sharpness.h); NULL for the others */
} experiment;

/* The experiment called name, configured for seed and size (quick: fewer steps, same code),
 * or false when there is no such experiment. */
bool experiment_setup(experiment *e, const char *name, uint64_t seed, bool quick);
/* The cnn experiment on Fashion-MNIST (from dir; NULL: the Debian package's), opt-in: plain and
 * residual nets of 20 and 56 layers on a subset of its training images. */
void experiment_setup_cnn_fashion(experiment *e, uint64_t seed, bool quick, const char *dir);
/* Appends printf-style text to a fixed buffer, dropping what does not fit (cli/findings.c). */
typedef struct writer {
    char *buf;
    size_t size, len;
} writer;
void say(writer *w, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Writes e->finding from e->results. */
void experiment_conclude(experiment *e);
/* The names, in report order. */
extern const char *const experiment_names[];
extern const int experiment_count;

#endif
