/*
 * cli/experiments.c — the classic findings about training deep and recurrent nets, as runs
 * side by side on the same data with the same seed, and the plain-words conclusion each draws
 * from its own numbers.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli/isometry.h"
#include "cli/lm_study.h"
#include "cli/sharpness.h"
#include "cli/study.h"

const char *const experiment_names[] = {"vanishing", "init", "batchnorm", "residual",
                                        "exploding", "clipping", "recurrent", "cnn",
                                        "regularisation", "transformer", "sharpness", "isometry"};
const int experiment_count = sizeof experiment_names / sizeof experiment_names[0];

/* ---- configurations ------------------------------------------------------------------------ */

static run_config mlp_run(const char *name, int depth, tg_activation act, tg_init init,
                          uint64_t seed, int steps) {
    run_config c = {0};
    snprintf(c.name, sizeof c.name, "%s", name);
    c.model = MODEL_MLP;
    c.depth = depth;
    c.width = 64;
    c.activation = act;
    c.init = init;
    c.data = DATA_DIGITS;
    c.opt = (tg_optimizer_config){.kind = TG_OPT_SGD, .lr = 0.01f, .momentum = 0.9f};
    c.steps = steps;
    c.batch = 64;
    c.seed = seed;
    return c;
}

static run_config rnn_run(tg_rnn_kind kind, int64_t length, uint64_t seed, int steps) {
    static const char *const names[] = {"RNN", "LSTM", "GRU"};
    run_config c = {0};
    snprintf(c.name, sizeof c.name, "%s, T=%lld", names[kind], (long long)length);
    c.model = MODEL_RNN;
    c.rnn = kind;
    c.hidden = 32;
    c.data = DATA_ADDING;
    c.seq_len = length;
    c.opt = (tg_optimizer_config){.kind = TG_OPT_ADAM, .lr = 1e-2f};
    c.clip_norm = 1.0f;
    c.steps = steps;
    c.batch = 64;
    c.track_timesteps = true;
    c.seed = seed;
    return c;
}

static tg_init normal_init(float std) { return tg_init_normal(0.0f, std); }

static void add_run(experiment *e, run_config c) { e->runs[e->n_runs++] = c; }

/* ---- the experiments ----------------------------------------------------------------------- */

static void setup_vanishing(experiment *e, uint64_t seed, int steps) {
    e->title = "Vanishing gradients: sigmoid, tanh and ReLU in a 20-layer MLP";
    e->question = "How much of the last layer's gradient reaches the first layer of a deep net?";
    e->charts = CHART_LAYERS | CHART_LOSS | CHART_HEAT;
    add_run(e, mlp_run("sigmoid, Xavier", 20, TG_ACT_SIGMOID, tg_init_xavier(TG_ACT_SIGMOID), seed, steps));
    add_run(e, mlp_run("tanh, Xavier", 20, TG_ACT_TANH, tg_init_xavier(TG_ACT_TANH), seed, steps));
    add_run(e, mlp_run("relu, He", 20, TG_ACT_RELU, tg_init_he(TG_ACT_RELU), seed, steps));
}

static void setup_init(experiment *e, uint64_t seed, int steps) {
    e->title = "Initialisation: the same 20-layer tanh MLP under four initialisers";
    e->question = "Does the scale of the initial weights decide whether a deep net trains?";
    e->charts = CHART_LAYERS | CHART_LOSS;
    add_run(e, mlp_run("N(0, 0.01^2)", 20, TG_ACT_TANH, normal_init(0.01f), seed, steps));
    add_run(e, mlp_run("N(0, 1)", 20, TG_ACT_TANH, normal_init(1.0f), seed, steps));
    add_run(e, mlp_run("Xavier", 20, TG_ACT_TANH, tg_init_xavier(TG_ACT_TANH), seed, steps));
    add_run(e, mlp_run("He", 20, TG_ACT_TANH, tg_init_he(TG_ACT_TANH), seed, steps));
}

static void setup_batchnorm(experiment *e, uint64_t seed, int steps) {
    e->title = "Batch normalisation in a 20-layer sigmoid MLP";
    e->question = "Does normalising each layer's pre-activations keep the gradient alive?";
    e->charts = CHART_LAYERS | CHART_LOSS | CHART_HEAT;
    add_run(e, mlp_run("sigmoid", 20, TG_ACT_SIGMOID, tg_init_xavier(TG_ACT_SIGMOID), seed, steps));
    run_config bn = mlp_run("sigmoid + batch norm", 20, TG_ACT_SIGMOID, tg_init_xavier(TG_ACT_SIGMOID), seed, steps);
    bn.norm = TG_NORM_BATCH;
    add_run(e, bn);
}

static run_config residual_run(const char *name, bool skip, tg_activation act, tg_init init,
                               uint64_t seed, int steps) {
    run_config c = mlp_run(name, 24, act, init, seed, steps); /* 24 blocks: 50 linear layers */
    c.model = MODEL_RESMLP;
    c.skip = skip;
    return c;
}

static void setup_residual(experiment *e, uint64_t seed, int steps) {
    e->title = "Residual connections: a 50-layer plain net against its residual twin";
    e->question = "Do identity skips carry the gradient to the first layer of a very deep net?";
    e->charts = CHART_LAYERS | CHART_LOSS | CHART_HEAT;
    tg_init xavier = tg_init_xavier(TG_ACT_SIGMOID);
    add_run(e, residual_run("plain, sigmoid", false, TG_ACT_SIGMOID, xavier, seed, steps));
    add_run(e, residual_run("residual, sigmoid", true, TG_ACT_SIGMOID, xavier, seed, steps));
    add_run(e, residual_run("residual, relu + He (no norm)", true, TG_ACT_RELU, tg_init_he(TG_ACT_RELU), seed, steps));
}

/* A learning rate that is too large for a deep ReLU net: the weights, and the gradients with
 * them, grow step after step until they overflow. */
static run_config exploding_run(const char *name, uint64_t seed, int steps) {
    run_config c = mlp_run(name, 8, TG_ACT_RELU, tg_init_he(TG_ACT_RELU), seed, steps);
    c.opt = (tg_optimizer_config){.kind = TG_OPT_SGD, .lr = 0.5f, .momentum = 0.9f};
    return c;
}

static void setup_exploding(experiment *e, uint64_t seed, int steps) {
    e->title = "Exploding gradients: too large a learning rate in an 8-layer ReLU MLP";
    e->question = "Where does the blow-up begin, and how long before the first NaN?";
    e->charts = CHART_STEPS | CHART_LOSS;
    add_run(e, exploding_run("SGD lr 0.5", seed, steps));
    /* The same run under the step guard (issue 22): a refused step is rolled back to the last
     * trusted one and the rate lowered, so the run that blew up ends finite and learning. */
    run_config guarded = exploding_run("SGD lr 0.5, guarded", seed, steps);
    guarded.guard = true;
    add_run(e, guarded);
}

static void setup_clipping(experiment *e, uint64_t seed, int steps) {
    e->title = "Gradient clipping: the exploding run, clipped";
    e->question = "Does clipping by value or by global norm keep the same run finite and learning?";
    e->charts = CHART_STEPS | CHART_LOSS;
    add_run(e, exploding_run("no clipping", seed, steps));
    run_config by_value = exploding_run("clip by value 0.1", seed, steps);
    by_value.clip_value = 0.1f;
    add_run(e, by_value);
    /* The clamp bounds each element, not the step: 0.1 over this net's ~30,000 parameters lets the
     * clipped gradient's norm reach ~17, and at lr 0.5 with momentum 0.9 that run stays at chance
     * on every seed tried. A threshold in scale with the learning rate shows that the method is not
     * what fails there. */
    run_config by_small_value = exploding_run("clip by value 0.001", seed, steps);
    by_small_value.clip_value = 0.001f;
    add_run(e, by_small_value);
    run_config by_norm = exploding_run("clip global norm 1", seed, steps);
    by_norm.clip_norm = 1.0f;
    add_run(e, by_norm);
}

/* A stacked LSTM at T=100 with a shorter budget (200 steps, a quarter of the others'): it costs
 * twice the single LSTM's step, what depth does to the first layer's gradient is read at the first
 * step, and with 300 steps the whole study took 17% more CPU time than without it. Two layers, not three: BPTT
 * keeps every step of every layer (about 30 MB a layer here), and with three the study's peak went
 * past its 100 MB (138 MB, with the two stacks trained at once). It comes after the T=20 runs: the
 * study starts the last runs first, so it trains beside the small T=50 and T=20 runs, not beside
 * the single LSTM at T=100. */
static void add_stacked_lstm(experiment *e, uint64_t seed, int steps) {
    run_config deep = rnn_run(TG_RNN_LSTM, 100, seed, steps);
    deep.rnn_layers = 2;
    snprintf(deep.name, sizeof deep.name, "LSTM 2 layers, T=100");
    add_run(e, deep);
}

static void setup_recurrent(experiment *e, uint64_t seed, int steps, int deep_steps) {
    e->title = "Recurrent nets over time: RNN, LSTM and GRU on the adding problem, and stacked LSTMs";
    e->question = "How far back in time does the gradient reach, which cell learns long-range sums, "
                  "and what does stacking layers do to the gradient reaching the first layer's h[1]?";
    e->charts = CHART_TIMESTEPS | CHART_LOSS;
    const int64_t lengths[3] = {20, 50, 100};
    for (int l = 0; l < 3; l++) {
        for (int k = 0; k < 3; k++) add_run(e, rnn_run((tg_rnn_kind)k, lengths[l], seed, steps));
        if (l == 0) add_stacked_lstm(e, seed, deep_steps);
    }
}

/* A wide MLP on few samples (it can memorise them), remedied by L2 weight decay (SGD: the same
 * as an L2 penalty of decay/2 |w|^2), dropout, or both. */
static run_config fit_run(const char *name, float decay, float dropout, uint64_t seed, int steps) {
    run_config c = mlp_run(name, 3, TG_ACT_RELU, tg_init_he(TG_ACT_RELU), seed, steps);
    c.width = REGULARISATION_WIDTH;
    c.train_subset = REGULARISATION_SAMPLES;
    c.batch = 50;
    c.opt = (tg_optimizer_config){.kind = TG_OPT_SGD, .lr = 0.05f, .momentum = 0.9f, .weight_decay = decay};
    c.dropout = dropout;
    c.eval_every = steps >= 10 ? steps / 10 : 1;
    return c;
}

static void setup_regularisation(experiment *e, uint64_t seed, int steps) {
    e->title = "Regularisation: a wide MLP on a small training set, with weight decay and dropout";
    e->question = "Trained on a few samples a wide net memorises them: do L2 weight decay and dropout "
                  "close the gap between training and held-out performance?";
    e->charts = CHART_LOSS | CHART_HELD_OUT | CHART_FIT;
    add_run(e, fit_run("none", 0.0f, 0.0f, seed, steps));
    add_run(e, fit_run("L2 (weight decay 5e-3)", 5e-3f, 0.0f, seed, steps));
    add_run(e, fit_run("dropout 0.5", 0.0f, 0.5f, seed, steps));
    add_run(e, fit_run("L2 + dropout", 5e-3f, 0.5f, seed, steps));
}

/* A net on the digits (a CNN sees them as 1x8x8 images), Adam as `train` uses for the CNNs,
 * the held-out loss every eval_every steps (each costs about four training steps). */
static run_config cnn_run(const char *name, model_kind model, int depth, bool skip, uint64_t seed,
                          int steps, int eval_every) {
    run_config c = {0};
    snprintf(c.name, sizeof c.name, "%s", name);
    c.model = model;
    c.depth = depth;
    c.width = 8;                /* 8/16/32 channels: the whole study stays within its minute */
    c.skip = skip;
    c.activation = TG_ACT_RELU;
    c.data = DATA_DIGITS;
    c.opt = (tg_optimizer_config){.kind = TG_OPT_ADAM, .lr = 3e-3f};
    c.steps = steps;
    c.batch = 32;
    c.eval_every = eval_every;
    c.seed = seed;
    return c;
}

static void setup_cnn(experiment *e, uint64_t seed, int steps, int eval_every) {
    e->title = "Convolutional nets: plain against residual CNNs of 8 and 32 layers, LeNet against an MLP";
    e->question = "Does a deep plain CNN train worse than a shallow one (He et al. 2016), and does its "
                  "residual twin?";
    /* 56 layers would not fit the study's minute: with them the full study took 68 s here (its two
     * runs are the longest); `tapegrad train --model plaincnn|resnet --depth 56` trains them */
    e->charts = CHART_LAYERS | CHART_LOSS | CHART_HELD_OUT | CHART_HEAT;
    /* cheap runs first: the study schedules the last runs first, so the deep ones start at once */
    add_run(e, cnn_run("LeNet-5", MODEL_LENET, 0, false, seed, steps, eval_every));
    /* the MLP that `train` builds by default, on the same split (same seed) and budget */
    run_config mlp = cnn_run("MLP, 4 x 64", MODEL_MLP, 4, false, seed, steps, eval_every);
    mlp.width = 64;
    mlp.init = tg_init_he(TG_ACT_RELU);
    add_run(e, mlp);
    static const int depths[] = {8, 32};
    char name[64];
    for (int d = 0; d < 2; d++)
        for (int skip = 0; skip < 2; skip++) {
            snprintf(name, sizeof name, "%s, %d layers", skip ? "residual" : "plain", depths[d]);
            add_run(e, cnn_run(name, MODEL_RESNET, depths[d], skip, seed, steps, eval_every));
        }
}

/* He et al.'s comparison on real images, opt-in (tapegrad study cnn --data fashion-mnist): plain
 * and residual nets of 20 and 56 layers, trained on a seeded subset of Fashion-MNIST's training
 * images and tested on its 10,000 test images. 8/16/32 channels, half of He et al.'s CIFAR nets:
 * the four runs then take minutes on two cores, not an hour. */
#define FASHION_SUBSET 10000
#define FASHION_EPOCHS 2
#define FASHION_BATCH 64

void experiment_setup_cnn_fashion(experiment *e, uint64_t seed, bool quick, const char *dir) {
    memset(e, 0, sizeof *e);
    e->name = "cnn";
    e->title = "Convolutional nets on Fashion-MNIST: plain against residual CNNs of 20 and 56 layers";
    e->question = "On real 28x28 images, does a deep plain CNN train worse than a shallow one, and does "
                  "the deeper residual net train better than the shallower one (He et al. 2016)?";
    e->charts = CHART_LAYERS | CHART_LOSS | CHART_HELD_OUT | CHART_HEAT;
    int64_t subset = quick ? 640 : FASHION_SUBSET;
    int per_epoch = (int)(subset / FASHION_BATCH), epochs = quick ? 1 : FASHION_EPOCHS;
    static const int depths[] = {20, 56};
    char name[64];
    for (int d = 0; d < 2; d++)
        for (int skip = 0; skip < 2; skip++) {
            snprintf(name, sizeof name, "%s, %d layers", skip ? "residual" : "plain", depths[d]);
            run_config c = cnn_run(name, MODEL_RESNET, depths[d], skip, seed, epochs * per_epoch, per_epoch);
            c.data = DATA_FASHION;
            c.data_path = dir; /* NULL: the Debian package's */
            c.batch = FASHION_BATCH;
            c.train_subset = subset; /* also measured whole at the end: the training error */
            add_run(e, c);
        }
}

bool experiment_setup(experiment *e, const char *name, uint64_t seed, bool quick) {
    memset(e, 0, sizeof *e);
    e->name = name;
    if (strcmp(name, "vanishing") == 0) setup_vanishing(e, seed, quick ? 60 : 300);
    else if (strcmp(name, "init") == 0) setup_init(e, seed, quick ? 60 : 300);
    else if (strcmp(name, "batchnorm") == 0) setup_batchnorm(e, seed, quick ? 60 : 300);
    else if (strcmp(name, "residual") == 0) setup_residual(e, seed, quick ? 60 : 300);
    else if (strcmp(name, "exploding") == 0) setup_exploding(e, seed, quick ? 60 : 150);
    else if (strcmp(name, "clipping") == 0) setup_clipping(e, seed, quick ? 60 : 150);
    else if (strcmp(name, "recurrent") == 0) setup_recurrent(e, seed, quick ? 40 : 800, quick ? 10 : 200);
    else if (strcmp(name, "cnn") == 0) setup_cnn(e, seed, quick ? 10 : 300, quick ? 5 : 50);
    else if (strcmp(name, "regularisation") == 0) setup_regularisation(e, seed, quick ? 30 : 400);
    else if (strcmp(name, "transformer") == 0) return lm_study_setup(e, seed, quick, NULL, 0);
    else if (strcmp(name, "sharpness") == 0) return sharpness_setup(e, seed, quick);
    else if (strcmp(name, "isometry") == 0) return isometry_setup(e, seed, quick);
    else return false;
    return true;
}
