/*
 * cli/train.c — `tapegrad train`: one model on one data set, every knob a flag, the same
 * instrumentation and report as the study.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/files.h"
#include "cli/lm.h"
#include "cli/parallel.h"
#include "cli/progress.h"
#include "cli/report.h"
#include "cli/study.h"
#include "cli/train_help.h"

/* The command that runs: train and params parse and check the same options, and each message
 * names the one the user typed. */
static const char *command = "train";

static int bad(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "tapegrad %s: ", command);
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    return EXIT_USAGE;
}

static bool parse_number(const char *s, double low, double high, double *out) {
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || errno || !(v >= low && v <= high)) return false;
    *out = v;
    return true;
}

static int pick(const char *value, const char *const *names, int n) {
    for (int i = 0; value && i < n; i++)
        if (strcmp(value, names[i]) == 0) return i;
    return -1;
}

static int parse_init(const char *v, tg_init *init, tg_activation act) {
    double std;
    if (!v) return -1;
    if (strcmp(v, "xavier") == 0) *init = tg_init_xavier(act);
    else if (strcmp(v, "he") == 0) *init = tg_init_he(act);
    else if (strcmp(v, "orthogonal") == 0) *init = (tg_init){TG_INIT_ORTHOGONAL, 0, 0, 0, act, false};
    else if (strncmp(v, "normal:", 7) == 0 && parse_number(v + 7, 0, 1e6, &std)) *init = tg_init_normal(0, (float)std);
    else return -1;
    return 0;
}

/* --augment crop:P,flip,normalize (any of them, in any order). */
static int parse_augment(const char *v, run_config *c) {
    double padding;
    char part[32];
    if (!v || !*v) return -1;
    for (const char *p = v; *p;) {
        size_t n = strcspn(p, ",");
        if (n == 0 || n >= sizeof part) return -1;
        memcpy(part, p, n);
        part[n] = '\0';
        if (strcmp(part, "flip") == 0) c->augment_flip = true;
        else if (strcmp(part, "normalize") == 0 || strcmp(part, "normalise") == 0) c->augment_normalize = true;
        else if (strncmp(part, "crop:", 5) == 0 && parse_number(part + 5, 1, 64, &padding) && padding == floor(padding))
            c->augment_crop = (int)padding;
        else return -1;
        p += n + (p[n] == ',');
    }
    return 0;
}

static int parse_data(const char *v, run_config *c) {
    double length;
    if (!v) return -1;
    if (strcmp(v, "digits") == 0) c->data = DATA_DIGITS;
    else if (strcmp(v, "spirals") == 0) c->data = DATA_SPIRALS;
    else if (strncmp(v, "adding:", 7) == 0 && parse_number(v + 7, 2, 1024, &length) && length == floor(length)) {
        c->data = DATA_ADDING;
        c->seq_len = (int64_t)length;
    } else if (fashion_mnist_arg(v, &c->data_path)) {
        c->data = DATA_FASHION;
    } else if ((strncmp(v, "csv:", 4) == 0 || strncmp(v, "idx:", 4) == 0) && v[4]) {
        c->data = v[0] == 'c' ? DATA_CSV : DATA_IDX;
        c->data_path = v + 4; /* the argument itself: a path of any length, never cut */
        if (c->data == DATA_IDX && !strchr(c->data_path, ',')) return -1;
    } else return -1;
    return 0;
}

/* Options that take a number: name, bounds, where it goes. */
typedef struct number_option {
    const char *flag;
    double low, high;
    bool whole;
    void (*store)(run_config *c, double v);
} number_option;

static void set_depth(run_config *c, double v) { c->depth = (int)v; }
static void set_width(run_config *c, double v) { c->width = (int64_t)v; }
static void set_hidden(run_config *c, double v) { c->hidden = (int64_t)v; }
static void set_layers(run_config *c, double v) { c->rnn_layers = (int)v; }
static void set_lr(run_config *c, double v) { c->opt.lr = (float)v; }
static void set_momentum(run_config *c, double v) { c->opt.momentum = (float)v; }
static void set_decay(run_config *c, double v) { c->opt.weight_decay = (float)v; }
static void set_steps(run_config *c, double v) { c->steps = (int)v; }
static void set_epochs(run_config *c, double v) { c->epochs = (int)v; }
static void set_threads(run_config *c, double v) { c->threads = (int)v; }
static void set_save_every(run_config *c, double v) { c->save_every = (int)v; }
static void set_recompute(run_config *c, double v) { c->recompute = (int)v; }
static void set_train_subset(run_config *c, double v) { c->train_subset = (int64_t)v; }
static void set_batch(run_config *c, double v) { c->batch = (int64_t)v; }
static void set_seed(run_config *c, double v) { c->seed = (uint64_t)v; }
static void set_clip_value(run_config *c, double v) { c->clip_value = (float)v; }
static void set_clip_norm(run_config *c, double v) { c->clip_norm = (float)v; }
static void set_guard_z(run_config *c, double v) { c->guard_z = v; }
static void set_guard_factor(run_config *c, double v) { c->guard_factor = v; }
static void set_guard_floor(run_config *c, double v) { c->guard_floor = v; }
static void set_guard_grow(run_config *c, double v) { c->guard_grow = v > 0 ? (int)v : -1; /* 0: never */ }
static void set_curvature(run_config *c, double v) { c->curvature_every = (int)v; }
static void set_dist_timeout(run_config *c, double v) { c->dist_timeout = v; }

static const number_option number_options[] = {
    {"--depth", 1, 62, true, set_depth},       {"--width", 1, 4096, true, set_width},
    {"--hidden", 1, 4096, true, set_hidden},   {"--lr", 0, 100, false, set_lr},
    {"--momentum", 0, 1, false, set_momentum}, {"--weight-decay", 0, 10, false, set_decay},
    {"--steps", 0, 1e7, true, set_steps},      {"--batch", 1, 65536, true, set_batch},
    {"--epochs", 1, 10000, true, set_epochs},  {"--train-subset", 1, 1e9, true, set_train_subset},
    {"--threads", 0, TG_MAX_THREADS, true, set_threads}, {"--save-every", 1, 1e7, true, set_save_every},
    {"--recompute", 1, 1e6, true, set_recompute},
    {"--seed", 0, 9e15, true, set_seed},       {"--clip-value", 1e-12, 1e12, false, set_clip_value},
    {"--clip-norm", 1e-12, 1e12, false, set_clip_norm}, {"--layers", 1, TG_RNN_MAX_LAYERS, true, set_layers},
    {"--guard-z", 0.5, 1e6, false, set_guard_z},
    {"--guard-factor", 0.01, 0.99, false, set_guard_factor}, {"--guard-floor", 1e-9, 1, false, set_guard_floor},
    {"--guard-grow", 0, 1e7, true, set_guard_grow},
    {"--curvature", 1, 1e7, true, set_curvature},
    {"--dist-timeout", 0.1, 1e7, false, set_dist_timeout},
};

/* Options that take a word or a path (parse_named). */
static const char *const named_options[] = {"--model", "--norm", "--optimizer", "--activation",
                                            "--init", "--data", "--save", "--load", "--out",
                                            "--plugin", "--hook", "--task", "--anomaly-dump",
                                            "--instruments", "--schedule", "--augment", "--resume"};

typedef struct train_options {
    run_config config;
    const char *out, *model, *init, *activation, *norm, *task, *data;
    const char *depth_text;      /* --depth as given, for messages */
    bool steps_given, epochs_given;
    int64_t train_samples;       /* the training set's size (check_files) */
} train_options;

/* "; did you mean '--steps'?" for an unknown option, from every option train knows. */
static const char *option_hint(const char *arg, char *buf, size_t size) {
    const char *all[64];
    int n = 0;
    for (size_t k = 0; k < sizeof number_options / sizeof number_options[0]; k++) all[n++] = number_options[k].flag;
    for (size_t k = 0; k < sizeof named_options / sizeof named_options[0]; k++) all[n++] = named_options[k];
    const char *const flags[] = {"--anomaly", "--anomaly-counts", "--guard", "--bidirectional", "--help",
                                 "--load-partial"};
    for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++) all[n++] = flags[k];
    return did_you_mean(arg, all, n, buf, size);
}

/* "lambda,trace,jacobian" into INSTRUMENT_* bits; -1 for an unknown or empty item. */
static int parse_instruments(const char *list, unsigned *bits) {
    static const char *const names[] = {"lambda", "trace", "jacobian"};
    *bits = 0;
    for (const char *p = list; p && *p;) {
        size_t n = strcspn(p, ",");
        int k = -1;
        for (int i = 0; i < 3; i++)
            if (strlen(names[i]) == n && strncmp(p, names[i], n) == 0) k = i;
        if (k < 0) return -1;
        *bits |= 1u << k;
        p += n + (p[n] == ',');
    }
    return list && *list && *bits ? 0 : -1;
}

static int parse_named(train_options *o, const char *arg, const char *value) {
    static const char *const models[] = {"mlp", "residual", "plain", "rnn", "lstm", "gru", "lenet", "resnet", "plaincnn"};
    static const char *const norms[] = {"none", "batch", "layer"};
    static const char *const optimizers[] = {"sgd", "adam", "adamw", "rmsprop"};
    run_config *c = &o->config;
    int k;
    char hint[96];
    if (strcmp(arg, "--model") == 0) {
        static const char *const all[] = {"mlp", "residual", "plain", "rnn", "lstm", "gru", "lenet", "resnet",
                                          "plaincnn", "gpt", "rnn-lm", "lstm-lm", "gru-lm"};
        if (pick(value, models, 9) < 0)
            return bad("--model: unknown model '%s'%s", value ? value : "", did_you_mean(value, all, 13, hint, sizeof hint));
        o->model = value;
    } else if (strcmp(arg, "--norm") == 0) {
        if ((k = pick(value, norms, 3)) < 0)
            return bad("--norm: expected none, batch or layer, got '%s'%s", value ? value : "",
                       did_you_mean(value, norms, 3, hint, sizeof hint));
        c->norm = (tg_norm_kind)k;
        o->norm = value;
    } else if (strcmp(arg, "--optimizer") == 0) {
        if ((k = pick(value, optimizers, 4)) < 0)
            return bad("--optimizer: unknown optimizer '%s' (sgd, adam, adamw or rmsprop)%s", value ? value : "",
                       did_you_mean(value, optimizers, 4, hint, sizeof hint));
        c->opt.kind = (tg_optimizer_kind)k;
    } else if (strcmp(arg, "--activation") == 0) {
        o->activation = value; /* not a built-in one: a plugin's op, checked in settle */
    } else if (strcmp(arg, "--task") == 0) {
        static const char *const tasks[] = {"classification", "regression"};
        if (pick(value, tasks, 2) < 0)
            return bad("--task: expected classification or regression, got '%s'%s", value,
                       did_you_mean(value, tasks, 2, hint, sizeof hint));
        o->task = value;
        c->regression = value[0] == 'r';
    } else if (strcmp(arg, "--init") == 0) o->init = value;
    else if (strcmp(arg, "--data") == 0) {
        o->data = value;
        static const char *const data_words[] = {"digits", "spirals", "adding:", "csv:", "idx:", "fashion-mnist"};
        if (parse_data(value, c) < 0)
            return bad("--data: expected digits, adding:T (2..1024), spirals, csv:PATH, idx:IMAGES,LABELS or "
                       "fashion-mnist[:DIR], got '%s'%s",
                       value ? value : "", did_you_mean(value, data_words, 6, hint, sizeof hint));
    } else if (strcmp(arg, "--augment") == 0) {
        if (parse_augment(value, c) < 0)
            return bad("--augment: expected a comma-separated list of crop:P (P zeros of padding, 1..64), "
                       "flip and normalize, got '%s'%s", value, "");
    } else if (strcmp(arg, "--save") == 0) c->save_path = value;
    else if (strcmp(arg, "--load") == 0) c->load_path = value;
    else if (strcmp(arg, "--resume") == 0) c->resume_path = value;
    else if (strcmp(arg, "--out") == 0) o->out = value;
    else if (strcmp(arg, "--instruments") == 0) {
        if (parse_instruments(value, &c->instruments) < 0)
            return bad("--instruments: expected a comma-separated list of lambda, trace and jacobian, got '%s'%s",
                       value ? value : "", "");
    } else if (strcmp(arg, "--schedule") == 0) {
        static const char *const schedules[] = {"cosine", "linear", "step:", "warmup:"};
        if (parse_schedule_arg(value, &c->schedule) < 0)
            return bad("--schedule: expected cosine, linear, step:N:GAMMA or warmup:N[,cosine|,linear|,step:N:GAMMA] "
                       "(N a whole number from 1, GAMMA >= 0), got '%s'%s", value,
                       did_you_mean(value, schedules, 4, hint, sizeof hint));
        c->schedule_text = value;
    } else if (strcmp(arg, "--anomaly-dump") == 0) {
        c->anomaly_dump = value;
        c->anomaly = true; /* the dump is of what anomaly mode stops at */
    }
    else if (strcmp(arg, "--plugin") == 0) {
        if (c->n_plugins == 16) return bad("at most 16 plugins%s%s", "", "");
        c->plugins[c->n_plugins++] = value;
    } else if (strcmp(arg, "--hook") == 0) {
        if (!strchr(value, ':') || c->n_hooks == 16) return bad("--hook wants PATTERN:NAME (at most 16), got '%s'%s", value, "");
        c->hooks[c->n_hooks++] = value;
    } else {
        return bad("unknown option '%s'%s (see tapegrad train --help)", arg, option_hint(arg, hint, sizeof hint));
    }
    return 0;
}

static int parse_train_options(int argc, char **argv, train_options *o) {
    run_config *c = &o->config;
    /* depth, width, lr and steps 0 (lr -1): not given, settled per model */
    *c = (run_config){.model = MODEL_MLP, .hidden = 32, .data = DATA_DIGITS,
                      .opt = {.kind = TG_OPT_ADAM, .lr = -1.0f}, .batch = 64, .seed = 1};
    snprintf(c->name, sizeof c->name, "train");
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            train_usage(stdout);
            return -1;
        }
        bool *flag = strcmp(arg, "--anomaly") == 0 ? &c->anomaly
                     : strcmp(arg, "--anomaly-counts") == 0 ? &c->anomaly_counts
                     : strcmp(arg, "--load-partial") == 0 ? &c->load_partial
                     : strcmp(arg, "--guard") == 0 ? &c->guard : NULL;
        if (flag) {
            *flag = true;
            continue;
        }
        if (strcmp(arg, "--bidirectional") == 0) {
            c->bidirectional = true;
            continue;
        }
        const number_option *n = NULL;
        for (size_t k = 0; k < sizeof number_options / sizeof number_options[0]; k++)
            if (strcmp(arg, number_options[k].flag) == 0) n = &number_options[k];
        char hint[96];
        if (!n && pick(arg, named_options, (int)(sizeof named_options / sizeof named_options[0])) < 0)
            return bad("unknown option '%s'%s (see tapegrad train --help)", arg, option_hint(arg, hint, sizeof hint));
        if (!value) return bad("%s needs a value%s", arg, "");
        i++;
        if (!n) {
            int status = parse_named(o, arg, value);
            if (status) return status;
            continue;
        }
        double v;
        if (!parse_number(value, n->low, n->high, &v) || (n->whole && v != floor(v))) {
            char why[192];
            snprintf(why, sizeof why, "'%.60s' is not a valid value (expected %s from %.10g to %.10g)", value,
                     n->whole ? "a whole number" : "a number", n->low, n->high);
            return bad("%s: %s", arg, why);
        }
        n->store(c, v);
        if (n->store == set_depth) o->depth_text = value;
        o->steps_given |= n->store == set_steps;
        o->epochs_given |= n->store == set_epochs;
    }
    return 0;
}

/* The convolutional models: ReLU and their own norms; defaults measured to reach their targets
 * on the digits (lenet >= 97%, resnet depth 20 >= 95% test accuracy). */
static int settle_cnn(train_options *o, const char *m) {
    run_config *c = &o->config;
    bool resnet = strcmp(m, "lenet") != 0;
    if (o->activation && c->activation != TG_ACT_RELU)
        return bad("--model %s uses ReLU: --activation %s is for the MLP models", m, o->activation);
    if (o->norm) return bad("--model %s has its own normalisation: --norm is for the MLP models%s", m, "");
    if (c->data == DATA_ADDING || c->data == DATA_SPIRALS)
        return bad("--model %s needs images (--data digits, fashion-mnist or idx:IMAGES,LABELS)%s", m, "");
    c->model = resnet ? MODEL_RESNET : MODEL_LENET;
    c->skip = strcmp(m, "resnet") == 0;
    if (!c->depth) c->depth = 20;
    if (resnet && (c->depth < 8 || (c->depth - 2) % 6))
        return bad("--depth: --model %s needs 6n+2 weight layers (8, 20, 32, 56), got %s", m, o->depth_text);
    if (!c->width) c->width = 8;
    if (c->opt.lr < 0) c->opt.lr = 3e-3f;
    if (!o->steps_given) c->steps = resnet ? 400 : 600;
    return 0;
}

/* The MLPs and the recurrent models, with the defaults they always had. */
static int settle_mlp(train_options *o, const char *m) {
    run_config *c = &o->config;
    if (c->depth > 31) return bad("--depth: at most 31 for --model %s, got %s", m, o->depth_text);
    if (!c->depth) c->depth = 4;
    if (!c->width) c->width = 64;
    if (c->opt.lr < 0) c->opt.lr = 1e-3f;
    if (!o->steps_given) c->steps = 500;
    if (strcmp(m, "residual") == 0 || strcmp(m, "plain") == 0) {
        c->model = MODEL_RESMLP;
        c->skip = m[0] == 'r';
    } else if (strcmp(m, "mlp") != 0) {
        c->model = MODEL_RNN;
        c->rnn = m[0] == 'r' ? TG_RNN_TANH : m[0] == 'l' ? TG_RNN_LSTM : TG_RNN_GRU;
        c->track_timesteps = true;
        if (c->data != DATA_ADDING) return bad("--model %s needs sequence data (--data adding:T)%s", m, "");
    } else if (c->data == DATA_ADDING) {
        return bad("--data adding:T needs a recurrent model (--model rnn|lstm|gru)%s%s", "", "");
    }
    return 0;
}

/* What can only fail after training (a save, a report) or at its first step (a batch larger
 * than the data) is found now: exit 2 before any work. */
static int check_files(train_options *o) {
    run_config *c = &o->config;
    if (c->data == DATA_CSV && strcmp(c->data_path, "-") == 0) { /* csv:-: standard input */
        if (parallel_env_size() > 1)
            return bad("--data csv:- reads standard input, which mpirun gives to rank 0 only: give "
                       "every rank a file%s%s", "", "");
        if (!(c->data_path = stdin_to_file(command))) return EXIT_USAGE;
    }
    const char *const paths[][2] = {{"--data", c->data_path}, {"--load", c->load_path}, {"--resume", c->resume_path}};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (paths[i][1] && check_path_arg(command, paths[i][0], paths[i][1])) return EXIT_USAGE;
    for (int i = 0; i < c->n_plugins; i++)
        if (check_path_arg(command, "--plugin", c->plugins[i])) return EXIT_USAGE;
    if (c->save_path && check_save_arg(command, "--save", c->save_path)) return EXIT_USAGE;
    char why[RUN_ERROR_MAX], batch[32], samples[32];
    int64_t n = run_training_samples(c, why, sizeof why);
    bool real_target = c->data == DATA_CSV && !c->regression && strstr(why, "is not a whole number");
    if (n < 0) return bad("--data: %s%s", why, real_target ? " (a real-valued target: --task regression)" : "");
    snprintf(batch, sizeof batch, "%lld", (long long)c->batch);
    snprintf(samples, sizeof samples, "%lld", (long long)n);
    if (c->batch > n) return bad("--batch %s is larger than the %s training samples", batch, samples);
    snprintf(samples, sizeof samples, "%d", parallel_env_size());
    /* N copies training alone would all write the same --save and --out */
    if (!c->distributed && parallel_env_size() > 1)
        return bad("started by an MPI launcher with %s ranks, but this tapegrad was built without "
                   "MPI (zig build -Dmpi=true)%s", samples, "");
    if (c->distributed && c->batch % parallel_env_size())
        return bad("--batch %s (the global batch) must split evenly over the %s ranks", batch, samples);
    o->train_samples = n;
    return 0;
}

/* --epochs into steps (whole batches: the batcher drops a last partial one), then what needs
 * the run's length: the schedule. The report's folder is made last, once nothing can refuse. */
static int settle_length(train_options *o) {
    run_config *c = &o->config;
    char why[160];
    if (c->epochs) {
        int64_t steps = (int64_t)c->epochs * (o->train_samples / c->batch);
        snprintf(why, sizeof why, "%lld", (long long)steps);
        if (steps > 10000000) return bad("--epochs: %s steps, more than 10^7%s", why, "");
        c->steps = (int)steps;
    }
    if (c->schedule_text && settle_schedule(&c->schedule, c->steps, why, sizeof why))
        return bad("--schedule %s: %s", c->schedule_text, why);
    if (o->out && prepare_out_dir(command, o->out)) return EXIT_USAGE;
    return 0;
}

/* --activation that is no built-in one: an op a plugin registers (checked when the model is
 * made, once the plugins are loaded), for the MLP. */
static int settle_activation_op(train_options *o) {
    static const char *const builtin[] = {"identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "softplus"};
    run_config *c = &o->config;
    char hint[96];
    if (!c->n_plugins)
        return bad("--activation: unknown activation '%s'%s (an op of a plugin needs --plugin PATH)", o->activation,
                   did_you_mean(o->activation, builtin, 8, hint, sizeof hint));
    if (o->model && strcmp(o->model, "mlp") != 0)
        return bad("--activation %s: a plugin's op is an activation of --model mlp only, not %s", o->activation, o->model);
    c->activation_op = o->activation;
    return 0;
}

/* --task regression, --steps 0: what they need of the other flags. */
static int settle_task_and_steps(train_options *o) {
    run_config *c = &o->config;
    if (c->regression && c->data != DATA_CSV)
        return bad("--task regression reads --data csv:PATH (the last column is the target)%s%s", "", "");
    if (c->load_partial && !c->load_path)
        return bad("--load-partial loads part of a --load PATH: give it%s%s", "", "");
    if (c->resume_path && c->load_path)
        return bad("--resume goes on from a checkpoint and --load starts from one: give one%s%s", "", "");
    if (c->save_every && !c->save_path)
        return bad("--save-every N saves to --save PATH: give it%s%s", "", "");
    if (o->steps_given && o->epochs_given)
        return bad("--steps and --epochs both say how long to train: give one%s%s", "", "");
    if (o->steps_given && c->steps == 0 && !c->load_path)
        return bad("--steps 0 evaluates a trained model: give it with --load PATH%s%s", "", "");
    if (o->steps_given && c->steps == 0 && o->out)
        return bad("--out draws the training, and --steps 0 trains nothing: leave out --out%s%s", "", "");
    if (c->instruments && !c->curvature_every)
        return bad("--instruments says what --curvature N measures every N steps: give --curvature%s%s", "", "");
    return 0;
}

/* Model, activation and init need each other: settled once all flags are read. */
static int settle(train_options *o) {
    run_config *c = &o->config;
    c->distributed = parallel_launched(); /* under mpirun: data-parallel over its ranks */
    int act = o->activation ? tg_activation_from_name(o->activation) : TG_ACT_RELU;
    if (act < 0 && settle_activation_op(o)) return EXIT_USAGE;
    c->activation = act < 0 ? TG_ACT_IDENTITY : (tg_activation)act; /* an op's gain: 1 */
    if (settle_task_and_steps(o)) return EXIT_USAGE;
    const char *m = o->model ? o->model : "mlp";
    bool cnn = strcmp(m, "lenet") == 0 || strcmp(m, "resnet") == 0 || strcmp(m, "plaincnn") == 0;
    /* the CNNs' own default is He (c->init left all-zero) */
    if ((o->init || !cnn) && parse_init(o->init ? o->init : "xavier", &c->init, c->activation) < 0)
    {
        static const char *const inits[] = {"xavier", "he", "orthogonal", "normal:"};
        char hint[96];
        return bad("--init: expected xavier, he, orthogonal or normal:STD, got '%s'%s", o->init,
                   did_you_mean(o->init, inits, 4, hint, sizeof hint));
    }
    int status = cnn ? settle_cnn(o, m) : settle_mlp(o, m);
    if (status) return status;
    if (c->recompute && c->model != MODEL_RNN && c->model != MODEL_RESNET)
        return bad("--recompute N cuts a recurrent net's time steps or a ResNet's blocks into segments: "
                   "not --model %s%s", m, "");
    if (c->recompute && c->curvature_every)
        return bad("--curvature's Hessian products differentiate the recorded forward, which --recompute "
                   "does not keep: give one%s%s", "", "");
    if (c->model != MODEL_RNN && (c->rnn_layers || c->bidirectional))
        return bad("--layers and --bidirectional are for --model rnn|lstm|gru, not %s%s", m, "");
    return check_files(o) ? EXIT_USAGE : settle_length(o);
}

typedef struct train_progress {
    progress bar;
    int last_step;
    bool curvature_advised;
    const run_result *result;    /* --schedule: its lr_last shown with the loss */
} train_progress;

/* Each rescue as it happens, on stdout (a terminal's progress bar is cleared first); the alarm,
 * loudly, on stderr as well. */
static void on_guard_event(const tg_guard_event *event, void *user) {
    train_progress *p = user;
    char text[512];
    tg_guard_event_text(event, text, sizeof text);
    if (p->bar.terminal) fprintf(stderr, "\r%*s\r", 100, "");
    printf("guard: %s%s\n", event->kind == TG_GUARD_ALARM ? "warning: " : "", text);
    fflush(stdout);
    if (event->kind == TG_GUARD_ALARM && !isatty(fileno(stdout)))
        fprintf(stderr, "tapegrad train: warning: guard: %s\n", text);
}

static void print_wrapped(const char *lead, const char *indent, const char *text);

/* Each measurement of the instruments as it is taken; the advice once, when lr x lambda_max
 * first passes 2 (gradient descent is unstable along the top eigenvector from there). */
static void on_curvature(int step, const tg_recorder *readings, void *user) {
    train_progress *p = user;
    char a[32], b[32], c[32], d[32];
    if (p->bar.terminal) fprintf(stderr, "\r%*s\r", 100, "");
    printf("curvature: step %d:", step);
    double lambda_max = recorder_newest(readings, "hessian.lambda_max");
    double lr = recorder_newest(readings, "lr");
    if (!isnan(lambda_max))
        printf(" lambda_max %s, lr x lambda_max %s (%s 2)", format_number(lambda_max, a, sizeof a),
               format_number(lr * lambda_max, b, sizeof b), lr * lambda_max > 2 ? "above" : "below");
    double trace = recorder_newest(readings, "hessian.trace");
    if (!isnan(trace)) printf("%s trace %s", isnan(lambda_max) ? "" : ",", format_number(trace, a, sizeof a));
    double sigma_max = recorder_newest(readings, "jacobian.sigma_max");
    if (!isnan(sigma_max))
        printf("%s Jacobian sigma %s..%s, mean square %s", isnan(lambda_max) && isnan(trace) ? "" : ";",
               format_number(recorder_newest(readings, "jacobian.sigma_min"), c, sizeof c),
               format_number(sigma_max, d, sizeof d),
               format_number(recorder_newest(readings, "jacobian.mean_square"), a, sizeof a));
    printf("\n");
    if (lr * lambda_max > 2 && !p->curvature_advised) {
        tg_finding advice = tg_advice_sharpness(lr, lambda_max);
        print_wrapped("  advice:", "    ", advice.advice);
        p->curvature_advised = true;
    }
    fflush(stdout);
}

/* --epochs: a line per epoch, the held-out figures and the throughput. */
static void on_epoch(const epoch_report *e, void *user) {
    train_progress *p = user;
    char a[32], b[32];
    if (p->bar.terminal) fprintf(stderr, "\r%*s\r", 100, "");
    printf("epoch %d/%d: training loss %s, test loss %s", e->epoch, e->epochs,
           format_number(e->train_loss, a, sizeof a), format_number(e->test_loss, b, sizeof b));
    if (!isnan(e->test_accuracy)) printf(", test accuracy %.2f%%", 100.0 * e->test_accuracy);
    printf(", %.1f s (%.1f s of CPU), %.0f samples/s\n", e->seconds, e->cpu_seconds, e->samples_per_second);
    fflush(stdout);
}

static void on_step(void *user, int step, double loss) {
    train_progress *p = user;
    if (p->result) p->bar.rate = p->result->lr_last;
    progress_advance(&p->bar, step - p->last_step, loss);
    p->last_step = step;
}

/* Prints lead and text, wrapped at spaces to about 100 columns, continued under indent. */
static void print_wrapped(const char *lead, const char *indent, const char *text) {
    int width = 100, column = printf("%s", lead);
    for (bool first = true; *text; first = false) {
        int word = (int)strcspn(text, " ");
        if (!first && column + 1 + word > width) column = printf("\n%s", indent) - 1;
        else column += printf(" ");
        column += printf("%.*s", word, text);
        text += word;
        while (*text == ' ') text++;
    }
    printf("\n");
}

/* Every verdict of onset detection, with what to try. */
static void print_findings(const run_result *r) {
    for (int i = 0; i < r->n_findings; i++) {
        print_wrapped("finding:", "  ", r->findings[i].what);
        print_wrapped("  advice:", "    ", r->findings[i].advice);
    }
}

/* What the run ended with, in the words of its task: loss and accuracy, or mean squared error. */
static void print_outcome(const run_result *r) {
    char a[32], b[32], c[32];
    bool mse = !isfinite(r->test_accuracy);
    if (r->steps_done)
        printf("steps %d, final training %s %s, ", r->steps_done, mse ? "MSE" : "loss",
               format_number(r->loss[r->steps_done - 1], a, sizeof a));
    else
        printf("evaluated the loaded model (--steps 0): ");
    printf("held-out %s %s", mse ? "MSE" : "loss", format_number(r->final_loss, b, sizeof b));
    if (!mse) printf(", test accuracy %s%%", format_number(100 * r->test_accuracy, c, sizeof c));
    printf("\n");
    if (r->steps_done)
        printf("gradients: first/last layer norm ratio at step 0 %s; %s\n",
               format_number(r->first_last_ratio, a, sizeof a), r->onset_summary);
    if (r->steps_done && r->config.schedule_text)
        printf("schedule %s: lr %s at the first step, %s at its highest, %s at the last\n", r->config.schedule_text,
               format_number(r->lr_first, a, sizeof a), format_number(r->lr_peak, b, sizeof b),
               format_number(r->lr_last, c, sizeof c));
    if (r->steps_done) print_findings(r);
    for (int i = 0; i < r->config.n_hooks; i++)
        if (r->unmatched_hooks & (1u << i))
            fprintf(stderr, "tapegrad train: warning: --hook %s matched no parameter or node in the "
                    "backward pass (tapegrad params lists the parameter names)\n", r->config.hooks[i]);
}

/* What the guard refused and rescued, and what anomaly counting saw, when they were on. */
static void print_diagnostics(const run_result *r) {
    const tg_guard_stats *g = &r->guard;
    char a[32], b[32], c[32];
    if (r->config.guard) {
        printf("guard: skipped %lld of %lld steps (%lld non-finite, %lld outliers)", (long long)g->skipped,
               (long long)g->checked, (long long)g->nonfinite, (long long)g->outliers);
        if (g->skipped)
            printf(", the first at step %lld, the last at step %lld", (long long)g->first_skipped_step,
                   (long long)g->last_skipped_step);
        printf("; %lld rescue%s", (long long)g->rescues, g->rescues == 1 ? "" : "s");
        if (g->lowest_lr_scale < 1.0 && r->config.schedule_text) /* its factor on the scheduled rate */
            printf(", lr %s at the end (the guard's factor on the schedule %s, lowest %s)",
                   format_number(g->lr, a, sizeof a), format_number(g->lr_scale, b, sizeof b),
                   format_number(g->lowest_lr_scale, c, sizeof c));
        else if (g->lowest_lr_scale < 1.0)
            printf(", lr %s at the end (lowest %s, --lr %s)", format_number(g->lr, a, sizeof a),
                   format_number(g->lowest_lr_scale * r->config.opt.lr, b, sizeof b),
                   format_number(r->config.opt.lr, c, sizeof c));
        if (g->growths) printf(", grown back %lld time%s", (long long)g->growths, g->growths == 1 ? "" : "s");
        if (g->new_levels) printf(", %lld new level%s accepted", (long long)g->new_levels, g->new_levels == 1 ? "" : "s");
        printf("\n");
        if (g->alarm)
            printf("guard: warning: %d of the last %d steps were refused: the run ended stuck\n",
                   g->recent_refused, g->recent_checked);
        if (g->skipped) { /* what the refusals say about the run, and what to try */
            tg_guard_verdict kind = g->nonfinite >= g->outliers ? TG_GUARD_SKIP_NONFINITE
                                                                : TG_GUARD_SKIP_OUTLIER;
            tg_finding advice = tg_advice_refused_step(kind, g, r->config.opt.lr);
            print_wrapped("  advice:", "    ", advice.advice);
        }
    }
    if (r->config.anomaly_counts)
        printf("anomaly counts: %lld step%s with a NaN/Inf%s%s\n", (long long)r->nonfinite_steps,
               r->nonfinite_steps == 1 ? "" : "s", r->nonfinite_steps ? "; the first: " : "", r->first_nonfinite);
}

int run_train(int argc, char **argv) {
    for (int i = 0; i + 1 < argc; i++) /* language models train on text, by cli/lm.c */
        if (strcmp(argv[i], "--model") == 0 && lm_model_name(argv[i + 1])) return run_lm_train(argc, argv);
    train_options o = {0};
    command = "train";
    int status = parse_train_options(argc, argv, &o);
    o.config.command = command;
    if (status) return status < 0 ? 0 : status;
    if ((status = settle(&o))) return status;
    char title[160];
    snprintf(title, sizeof title, "tapegrad train: %s on %s, %d steps", model_name(&o.config),
             o.data ? o.data : "digits", o.config.steps);
    experiment e = {.name = "train", .title = title, .question = "What did this run's gradients do?",
                    .charts = CHART_LAYERS | CHART_LOSS | CHART_HEAT | CHART_STEPS | CHART_HIST,
                    .n_runs = 1};
    e.runs[0] = o.config;
    if (o.config.model == MODEL_RNN) e.charts = CHART_TIMESTEPS | CHART_LOSS | CHART_STEPS | CHART_HIST;
    /* ten points of held-out loss are cheap next to the training, and the report draws them */
    else if (o.out) {
        e.runs[0].eval_every = o.config.epochs ? o.config.steps / o.config.epochs
                               : o.config.steps >= 10 ? o.config.steps / 10 : 1;
        e.charts |= CHART_HELD_OUT;
    }
    /* under mpirun rank 0 speaks for all: progress, summary and report (the ranks agree on
     * every number shown); each rank reports its own errors, naming itself */
    bool lead = parallel_env_rank() == 0;
    train_progress p = {.last_step = 0};
    if (lead) progress_start(&p.bar, "train", o.config.steps);
    if (lead && o.config.schedule_text) {
        p.result = &e.results[0];
        p.bar.show_rate = true;
    }
    if (lead && o.config.guard) {
        e.runs[0].guard_event = on_guard_event;
        e.runs[0].guard_user = &p;
    }
    if (lead && o.config.epochs) {
        e.runs[0].epoch_event = on_epoch;
        e.runs[0].epoch_user = &p;
    }
    if (lead && o.config.curvature_every) {
        e.runs[0].curvature_event = on_curvature;
        e.runs[0].curvature_user = &p;
    }
    run_training(&e.runs[0], &e.results[0], lead ? on_step : NULL, &p);
    if (lead) progress_finish(&p.bar);
    run_result *r = &e.results[0];
    if (r->error[0]) {
        if (o.config.distributed && !r->error_printed)
            fprintf(stderr, "tapegrad train (rank %d): %s\n", parallel_env_rank(), r->error);
        else if (!o.config.distributed) fprintf(stderr, "tapegrad train: %s\n", r->error);
        parallel_abort_if_broken(1); /* a stalled collective: the other ranks cannot end alone */
        if (r->anomaly_stopped && lead) {
            printf("gradients: %s\n", r->onset_summary);
            print_findings(r);
        }
        run_result_free(r);
        return 1;
    }
    if (!lead) {
        run_result_free(r);
        return 0;
    }
    print_outcome(r);
    print_diagnostics(r);
    if (o.out) {
        experiment_conclude(&e);
        status = write_report("train", o.out, &e, 1, o.config.seed, false, r->seconds);
        if (!status) printf("report: %s/index.html\n", o.out);
    }
    run_result_free(r);
    return status;
}

int run_params(int argc, char **argv) {
    for (int i = 0; i + 1 < argc; i++)
        if (strcmp(argv[i], "--model") == 0 && lm_model_name(argv[i + 1])) return run_lm_params(argc, argv);
    train_options o = {0};
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: tapegrad params [train options]\n\n"
                   "Describes the model `tapegrad train` builds with the same options (--model,\n"
                   "--depth, --width, --norm, --data, --plugin, ...) as a tree: each module with\n"
                   "the parameters below it, each parameter and buffer by name, shape and count\n"
                   "(the names --save writes and --hook patterns match), then the totals.\n"
                   "With --load PATH the checkpoint is loaded into it first, as train loads it: a\n"
                   "file that does not fit the model is refused (--load-partial: warned of).\n");
            return 0;
        }
    command = "params";
    int status = parse_train_options(argc, argv, &o);
    o.config.command = command;
    if (status) return status < 0 ? 0 : status;
    if ((status = settle(&o))) return status;
    char why[RUN_ERROR_MAX];
    if (list_model_state(&o.config, stdout, why, sizeof why)) {
        fprintf(stderr, "tapegrad params: %s\n", why);
        return 1;
    }
    return 0;
}
