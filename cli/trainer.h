/*
 * cli/trainer.h — what a training run holds, shared by the files of the run: cli/runner.c
 * (the model, the step, the run) and cli/run_data.c (its data and their evaluation).
 */
#ifndef TAPEGRAD_CLI_TRAINER_H
#define TAPEGRAD_CLI_TRAINER_H

#include "cli/parallel.h"
#include "cli/study.h"

#define MAX_PARAMS 1024 /* a 56-layer ResNet has 173 parameters and 287 state tensors */

/* Everything a run holds while it trains. */
typedef struct trainer {
    const run_config *config;
    run_result *result;
    tg_ctx *ctx;
    tg_tape *tape;
    tg_dataset *train, *test;
    tg_batcher *batches;
    tg_augment *augment;         /* --augment, else NULL */
    tg_module *body, *head;      /* head: the linear read-out of a recurrent body */
    tg_tensor *params[MAX_PARAMS];
    int n_params;
    tg_tensor *state[MAX_PARAMS]; /* parameters and running statistics: what --save writes */
    int n_state;
    tg_tensor *layers[MAX_LAYERS];
    tg_tensor **states;          /* recurrent: room for every h[t] of every layer and direction */
    tg_optimizer *opt;
    tg_recorder *recorder;
    struct counted_hook {        /* --hook: the plugin's hook, and how often it ran */
        tg_hook_fn fn;
        void *user;
        int64_t calls;
    } hooks[16];
    tg_named_attr activation_attrs[TG_MAX_ATTRS]; /* --activation OP:k=v,...: the values */
    char activation_names[TG_MAX_ATTRS][TG_LABEL_MAX];
    char activation_op[TG_LABEL_MAX];
    parallel *par;               /* data-parallel under mpirun (config->distributed), else NULL */
    tg_guard *guard;             /* --guard, else NULL */
    bool instruments;            /* --curvature: the recorder's instruments are set */
    tg_tensor *curvature_x, *curvature_y; /* the measured step's batch, kept for its products */
    float *kept_state;           /* the state's values, put back after a measurement */
    int64_t kept_floats;
} trainer;

/* Records "what: the context's error" as the run's error; false. */
bool trainer_fail(trainer *t, const char *what);
/* The model's output for x (recurrent: the read-out of the hidden states; states, when not
 * NULL, receives every h[t]); the loss of out against y (cross entropy or MSE). */
tg_tensor *trainer_forward(trainer *t, tg_tape *tape, tg_tensor *x, tg_tensor **states);
tg_tensor *trainer_loss(trainer *t, tg_tape *tape, tg_tensor *out, tg_tensor *y);

/* LeNet and the ResNets: the models that take images. */
bool trainer_is_cnn(const run_config *c);
/* The training and held-out sets of the run's --data, and the batcher over the training set. */
bool trainer_load_data(trainer *t);
/* Loss and accuracy (NAN for regression) on a whole data set, in evaluation mode. */
void trainer_measure(trainer *t, const tg_dataset *set, double *loss_out, double *accuracy_out);
/* The held-out loss after `step` steps, a point of the held-out curve. */
void trainer_evaluate(trainer *t, int step);

#endif
