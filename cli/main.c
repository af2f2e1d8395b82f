/*
 * cli/main.c — the `tapegrad` command.
 *
 *   tapegrad                   a short usage; nothing is run or written
 *   tapegrad study             reproduce the classic gradient findings, write a report
 *   tapegrad train             one model on one data set, every knob a flag
 *   tapegrad params            the parameter names of the model train would build
 *   tapegrad sample            text from a language model train saved
 *   tapegrad demo              train a small MLP on two spirals and report loss and accuracy
 *   tapegrad ops               list the op registry
 *   tapegrad gradcheck [OP...] check registered ops' gradients against finite differences
 * Each takes --plugin PATH (repeatable) to load ops and hooks from a plugin first; demo also
 * takes --hook PATTERN:NAME to attach a hook a plugin exported to matching parameters/nodes.
 *
 * (The full tool — study, train — grows here in later work.)
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/files.h"
#include "cli/lm.h"
#include "cli/model_check.h"
#include "cli/report.h"
#include "cli/study.h"
#include "tapegrad.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: tapegrad COMMAND [ARGS]\n"
            "\n"
            "commands:\n"
            "  study [NAME...] [--out DIR] [--seed N] [--quick]\n"
            "                               reproduce vanishing/exploding gradients and their\n"
            "                               remedies; writes a report (tapegrad-report/)\n"
            "  train [options]              one model, one data set (tapegrad train --help)\n"
            "  params [train options]       the parameter names and shapes of that model\n"
            "  inspect FILE                 the tensors of a safetensors checkpoint: names, shapes\n"
            "  sample --load CKPT [--prompt TEXT] [--tokens N] [--temperature X] [--seed N]\n"
            "                               text from a language model train --save wrote\n"
            "  demo [--steps N] [--seed N] [--hook PATTERN:NAME]...\n"
            "                               train a 2-layer MLP on two spirals\n"
            "  ops                          list registered ops: name, arity, attributes, backward\n"
            "  gradcheck [OP...]            check ops' gradients against finite differences\n"
            "  version                      version, build, GEMM backend and threads (--version)\n"
            "  help                         this text\n"
            "\n"
            "demo, ops, gradcheck, train and params take --plugin PATH (repeatable): load ops and\n"
            "hooks from a plugin. Every command takes --help; --opt=value is --opt value.\n");
}

static const char *const commands[] = {"study", "train", "params", "inspect", "sample", "demo", "ops", "gradcheck", "version", "help"};

/* Each command's own --help. */
static void command_usage(const char *command, FILE *out) {
    if (strcmp(command, "demo") == 0)
        fprintf(out, "usage: tapegrad demo [--steps N] [--seed N] [--plugin PATH]... [--hook PATTERN:NAME]...\n\n"
                     "Trains a 2-32-32-2 tanh MLP on 200 points of two spirals by plain gradient\n"
                     "descent and prints the loss and accuracy ten times.\n\n"
                     "  --steps N             steps (default 2000)\n"
                     "  --seed N              seed of the data and the weights (default 1)\n"
                     "  --plugin PATH         load ops and hooks from a plugin (repeatable)\n"
                     "  --hook PATTERN:NAME   attach the hook a plugin exported as NAME to every\n"
                     "                        parameter and node matching PATTERN (fc*.weight)\n");
    else if (strcmp(command, "ops") == 0)
        fprintf(out, "usage: tapegrad ops [--plugin PATH]...\n\n"
                     "Lists the op registry (name, arity, attributes, whether it has a backward and\n"
                     "a forward-mode rule (jvp: second derivatives), built-in or native), with the\n"
                     "plugins' ops, then the GEMM backend.\n");
    else
        fprintf(out, "usage: tapegrad gradcheck [OP...] [--order 1|2] [--plugin PATH]...\n\n"
                     "Checks each op's backward (default: every op with an example, then every\n"
                     "built-in model's loss end to end) against central finite differences on its\n"
                     "examples; exits 1 when one fails.\n\n"
                     "  --order 2   also its forward-mode rule (JVP) against differences of the\n"
                     "              forward, and double backward and Hessian-vector products\n"
                     "              against differences of the gradient\n");
}

/* ---- options every command shares ------------------------------------------------------ */

#define MAX_PLUGINS 16
#define MAX_HOOKS 16
/* A demo step takes about a millisecond: more than this is a typo, not a wish. */
#define MAX_DEMO_STEPS 100000000L

typedef struct options {
    const char *plugins[MAX_PLUGINS];
    int n_plugins;
    const char *hooks[MAX_HOOKS];   /* PATTERN:NAME */
    int n_hooks;
    long steps, seed;
    long order;                     /* gradcheck --order (0: not given) */
    const char *positional[64];
    int n_positional;
} options;

/* Parses the arguments after the command; prints a one-line reason and returns EXIT_USAGE on error. */
static int parse_options(const char *command, int argc, char **argv, bool takes_demo_flags, options *o) {
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            command_usage(command, stdout);
            return -1;
        }
        bool takes_order = strcmp(command, "gradcheck") == 0 && strcmp(arg, "--order") == 0;
        bool needs_value = strcmp(arg, "--plugin") == 0 || takes_order ||
                           (takes_demo_flags && (strcmp(arg, "--hook") == 0 || strcmp(arg, "--steps") == 0 ||
                                                 strcmp(arg, "--seed") == 0));
        if (needs_value && !value) {
            fprintf(stderr, "tapegrad %s: %s needs a value\n", command, arg);
            return EXIT_USAGE;
        }
        if (strcmp(arg, "--plugin") == 0) {
            if (check_path_arg(command, arg, value)) return EXIT_USAGE;
            if (o->n_plugins == MAX_PLUGINS) {
                fprintf(stderr, "tapegrad %s: at most %d plugins\n", command, MAX_PLUGINS);
                return EXIT_USAGE;
            }
            o->plugins[o->n_plugins++] = argv[++i];
        } else if (takes_order) {
            if (parse_whole_arg(command, arg, value, 1, 2, &o->order)) return EXIT_USAGE;
            i++;
        } else if (takes_demo_flags && strcmp(arg, "--hook") == 0) {
            if (o->n_hooks == MAX_HOOKS || !strchr(value, ':')) {
                fprintf(stderr, "tapegrad %s: --hook wants PATTERN:NAME (at most %d), got '%s'\n",
                        command, MAX_HOOKS, value);
                return EXIT_USAGE;
            }
            o->hooks[o->n_hooks++] = argv[++i];
        } else if (takes_demo_flags && (strcmp(arg, "--steps") == 0 || strcmp(arg, "--seed") == 0)) {
            long v, most = strcmp(arg, "--steps") == 0 ? MAX_DEMO_STEPS : LONG_MAX;
            if (parse_whole_arg(command, arg, value, 0, most, &v)) return EXIT_USAGE;
            if (strcmp(arg, "--steps") == 0) o->steps = v;
            else o->seed = v;
            i++;
        } else if (arg[0] == '-' || o->n_positional == 64 || takes_demo_flags) {
            static const char *const demo_flags[] = {"--plugin", "--help", "--hook", "--steps", "--seed"};
            char hint[96];
            fprintf(stderr, "tapegrad %s: unknown argument '%s'%s (see tapegrad %s --help)\n", command, arg,
                    did_you_mean(arg, demo_flags, takes_demo_flags ? 5 : 2, hint, sizeof hint), command);
            return EXIT_USAGE;
        } else {
            o->positional[o->n_positional++] = arg;
        }
    }
    return 0;
}

/* A context with the requested plugins loaded, or NULL after printing why. */
static tg_ctx *context_with_plugins(const char *command, const options *o) {
    tg_ctx *ctx = tg_ctx_new();
    if (!ctx) {
        fprintf(stderr, "tapegrad %s: out of memory\n", command);
        return NULL;
    }
    for (int i = 0; i < o->n_plugins; i++)
        if (tg_plugin_load(ctx, o->plugins[i]) != TG_OK) {
            fprintf(stderr, "tapegrad %s: %s\n", command, tg_errmsg(ctx));
            tg_ctx_free(ctx);
            return NULL;
        }
    return ctx;
}

/* --hook PATTERN:NAME: the hook exported as NAME on every parameter or node matching PATTERN. */
static int attach_hooks(tg_ctx *ctx, const options *o) {
    for (int i = 0; i < o->n_hooks; i++)
        if (attach_named_hook(ctx, o->hooks[i]) != TG_OK) {
            fprintf(stderr, "tapegrad demo: --hook %s: %s\n", o->hooks[i], tg_errmsg(ctx));
            return EXIT_USAGE;
        }
    return 0;
}

/* ---- demo ---------------------------------------------------------------------------------- */

#define SPIRAL_POINTS 200
#define HIDDEN 32

/* Two interleaved spirals, labels 0 and 1, with a little seeded noise. */
static void make_spirals(float *xy, float *labels, uint64_t seed) {
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    for (int i = 0; i < SPIRAL_POINTS; i++) {
        int cls = i % 2;
        float t = 0.25f + 3.0f * (float)(i / 2) / (SPIRAL_POINTS / 2);
        float angle = t * 3.14159265f + (float)cls * 3.14159265f;
        xy[2 * i] = t * cosf(angle) / 3.0f + 0.03f * (float)tg_rng_normal(&rng);
        xy[2 * i + 1] = t * sinf(angle) / 3.0f + 0.03f * (float)tg_rng_normal(&rng);
        labels[i] = (float)cls;
    }
}

static int run_demo(int argc, char **argv) {
    options o = {.steps = 2000, .seed = 1};
    int bad = parse_options("demo", argc, argv, true, &o);
    if (bad) return bad < 0 ? 0 : bad;
    long steps = o.steps, seed = o.seed;
    tg_ctx *ctx = context_with_plugins("demo", &o);
    if (!ctx) return 1;
    if (attach_hooks(ctx, &o)) {
        tg_ctx_free(ctx);
        return EXIT_USAGE;
    }
    tg_tape *tape = tg_tape_new(ctx);
    float xy[2 * SPIRAL_POINTS], labels[SPIRAL_POINTS];
    make_spirals(xy, labels, (uint64_t)seed);
    tg_tensor *params[6] = {
        tg_set_label(tg_zeros(ctx, TG_SHAPE(HIDDEN, 2)), "fc1.weight"),
        tg_set_label(tg_zeros(ctx, TG_SHAPE(HIDDEN)), "fc1.bias"),
        tg_set_label(tg_zeros(ctx, TG_SHAPE(HIDDEN, HIDDEN)), "fc2.weight"),
        tg_set_label(tg_zeros(ctx, TG_SHAPE(HIDDEN)), "fc2.bias"),
        tg_set_label(tg_zeros(ctx, TG_SHAPE(2, HIDDEN)), "out.weight"),
        tg_set_label(tg_zeros(ctx, TG_SHAPE(2)), "out.bias"),
    };
    for (int p = 0; p < 6; p += 2) {
        float fan_in = (float)params[p]->shape[1];
        tg_fill_normal(params[p], 0, 1.0f / sqrtf(fan_in), (uint64_t)seed * 10 + (uint64_t)p);
    }
    for (int p = 0; p < 6; p++) tg_set_requires_grad(params[p], true);

    printf("training a 2-32-32-2 tanh MLP on %d points of two spirals (seed %ld)\n",
           SPIRAL_POINTS, seed);
    float loss_value = 0, accuracy = 0;
    for (long step = 0; step <= steps; step++) {
        tg_tape_reset(tape);
        tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(SPIRAL_POINTS, 2), xy);
        tg_tensor *y = tg_tape_from_data(tape, TG_SHAPE(SPIRAL_POINTS), labels);
        tg_tensor *h = tg_tanh(tape, tg_linear(tape, x, params[0], params[1]));
        h = tg_tanh(tape, tg_linear(tape, h, params[2], params[3]));
        tg_tensor *logits = tg_linear(tape, h, params[4], params[5]);
        tg_tensor *loss = tg_cross_entropy(tape, logits, y);
        if (!loss || tg_backward(tape, loss) != TG_OK) {
            fprintf(stderr, "tapegrad demo: %s\n", tg_errmsg(ctx));
            return 1;
        }
        int correct = 0;
        for (int i = 0; i < SPIRAL_POINTS; i++)
            correct += (logits->data[2 * i + 1] > logits->data[2 * i]) == (labels[i] > 0.5f);
        loss_value = loss->data[0];
        accuracy = (float)correct / SPIRAL_POINTS;
        if (step % (steps / 10 > 0 ? steps / 10 : 1) == 0)
            printf("step %5ld  loss %.4f  accuracy %5.1f%%\n", step, loss_value, 100 * accuracy);
        for (int p = 0; p < 6; p++) {
            for (int64_t i = 0; i < params[p]->size; i++) params[p]->data[i] -= 0.5f * params[p]->grad[i];
            tg_zero_grad(params[p]);
        }
    }
    printf("final loss %.4f, accuracy %.1f%%; peak tape memory %zu bytes\n", loss_value,
           100 * accuracy, tg_tape_bytes_peak(tape));
    tg_tape_free(tape);
    tg_ctx_free(ctx);
    return 0;
}

/* What runs the numbers: version, GEMM backend and kernels, threads. */
static void print_engine(FILE *out) {
    tg_ctx *ctx = tg_ctx_new();
    char threads[256];
    tg_ctx_threads_calibrate(ctx); /* a few ms: whether a second thread pays on this machine now */
    tg_ctx_threads_describe(ctx, threads, sizeof threads);
    /* the kernels per shape class (and how they were chosen) on a line of their own */
    const char *backend = tg_gemm_backend(), *per_class = strstr(backend, "; per shape class, ");
    int head = per_class ? (int)(per_class - backend) : (int)strlen(backend);
    fprintf(out, "matrix products: %.*s\n", head, backend);
    if (per_class) fprintf(out, "  per shape class, %s\n", per_class + strlen("; per shape class, "));
    fprintf(out, "threads: %s\n", threads);
    tg_ctx_free(ctx);
}

/* ---- ops and gradcheck --------------------------------------------------------------------- */

static int run_ops(int argc, char **argv) {
    options o = {0};
    int bad = parse_options("ops", argc, argv, false, &o);
    if (bad) return bad < 0 ? 0 : bad;
    if (o.n_positional) {
        fprintf(stderr, "tapegrad ops: unknown argument '%s'\n", o.positional[0]);
        return EXIT_USAGE;
    }
    tg_ctx *ctx = context_with_plugins("ops", &o);
    if (!ctx) return 1;
    printf("%-16s %-8s %-36s %-9s %-4s %s\n", "op", "arity", "attributes", "backward", "jvp",
           "kind");
    for (int id = 0; id < tg_op_count(ctx); id++) {
        tg_op_info info;
        tg_op_get_info(ctx, id, &info);
        char arity[16];
        if (info.arity == TG_VARIADIC) snprintf(arity, sizeof arity, "1+");
        else snprintf(arity, sizeof arity, "%d", info.arity);
        printf("%-16s %-8s %-36s %-9s %-4s %s\n", info.name, arity,
               info.attr_signature[0] ? info.attr_signature : "-", info.has_backward ? "yes" : "no",
               info.has_jvp ? "yes" : "no", info.native ? "native" : "built-in");
    }
    printf("\n");
    print_engine(stdout);
    tg_ctx_free(ctx);
    return 0;
}

static int run_gradcheck(int argc, char **argv) {
    options o = {0};
    int bad = parse_options("gradcheck", argc, argv, false, &o);
    if (bad) return bad < 0 ? 0 : bad;
    tg_ctx *ctx = context_with_plugins("gradcheck", &o);
    if (!ctx) return 1;
    int failures = 0;
    for (int i = 0; i < o.n_positional; i++)
        if (tg_op_find(ctx, o.positional[i]) < 0) {
            fprintf(stderr, "tapegrad gradcheck: unknown op '%s' (see 'tapegrad ops')\n", o.positional[i]);
            tg_ctx_free(ctx);
            return EXIT_USAGE;
        }
    printf("%-16s %-8s %-10s %-12s %s\n", "op", "example", "checked", "max rel err", "result");
    for (int id = 0; id < tg_op_count(ctx); id++) {
        tg_op_info info;
        tg_op_get_info(ctx, id, &info);
        bool wanted = o.n_positional == 0;
        for (int i = 0; i < o.n_positional; i++) wanted |= strcmp(o.positional[i], info.name) == 0;
        if (!wanted) continue;
        for (int example = 0;; example++) {
            tg_gradcheck_result result;
            tg_gradcheck_opts opts = tg_gradcheck_defaults();
            if (o.order) opts.order = (int)o.order;
            tg_status status = tg_gradcheck(ctx, id, example, &opts, &result);
            if (status == TG_ERR_NOT_FOUND) break;
            bool ok = status == TG_OK && result.passed;
            failures += !ok;
            char failed[64];
            snprintf(failed, sizeof failed, "FAIL (worst: %s)",
                     result.worst_check ? result.worst_check : "gradient");
            printf("%-16s %-8d %-10lld %-12.2e %s\n", info.name, example, (long long)result.n_checked,
                   result.max_rel_err, ok ? "pass" : (status == TG_OK ? failed : tg_errmsg(ctx)));
            tg_clear_error(ctx);
        }
    }
    tg_ctx_free(ctx);
    /* with no op named, the built-in models too, end to end */
    if (o.n_positional == 0) failures += tgc_check_models(o.order ? (int)o.order : 1, stdout);
    return failures ? 1 : 0;
}

/* build.zig names the optimize mode; a plain cc build says whether it optimised */
#ifndef TG_BUILD_MODE
#ifdef __OPTIMIZE__
#define TG_BUILD_MODE "optimised (built without zig build)"
#else
#define TG_BUILD_MODE "not optimised (built without zig build)"
#endif
#endif

static int run_version(void) {
    printf("tapegrad %d.%d.%d\nbuild: %s\n", TG_VERSION_MAJOR, TG_VERSION_MINOR, TG_VERSION_PATCH,
           TG_BUILD_MODE);
    print_engine(stdout);
    return 0;
}

static int run_command(int argc, char **argv) {
    if (argc == 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0))
        return run_version();
    /* no command: a short usage, nothing run, nothing written (the study is `tapegrad study`) */
    if (argc < 2) {
        fprintf(stderr, "usage: tapegrad COMMAND [ARGS]   (study, train, params, demo, ops, gradcheck, "
                        "version)\n       tapegrad study    reproduces the gradient findings, writes "
                        "tapegrad-report/\n       tapegrad --help   every command and option\n");
        return EXIT_USAGE;
    }
    if (argv[1][0] == '-' && strcmp(argv[1], "--help") != 0 && strcmp(argv[1], "-h") != 0) {
        fprintf(stderr, "tapegrad: '%s' is not a command: options go after one (tapegrad study %s); "
                        "see tapegrad --help\n", argv[1], argv[1]);
        return EXIT_USAGE;
    }
    const char *command = argv[1];
    int n_args = argc - 2;
    char **args = argv + 2; /* the command's own arguments */
    if (strcmp(command, "study") == 0) return run_study(n_args, args);
    if (strcmp(command, "train") == 0) return run_train(n_args, args);
    if (strcmp(command, "params") == 0) return run_params(n_args, args);
    if (strcmp(command, "inspect") == 0) return run_inspect(n_args, args);
    if (strcmp(command, "sample") == 0) return run_sample(n_args, args);
    if (strcmp(command, "demo") == 0) return run_demo(n_args, args);
    if (strcmp(command, "ops") == 0) return run_ops(n_args, args);
    if (strcmp(command, "gradcheck") == 0) return run_gradcheck(n_args, args);
    if (strcmp(command, "help") == 0 || strcmp(command, "--help") == 0 || strcmp(command, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    char hint[96];
    fprintf(stderr, "tapegrad: unknown command '%s'%s (see tapegrad --help)\n", command,
            did_you_mean(command, commands, (int)(sizeof commands / sizeof commands[0]), hint, sizeof hint));
    return EXIT_USAGE;
}

int main(int argc, char **argv) {
    if (check_stdout_open()) return 1;
    split_args args;
    if (split_equals(argc, argv, &args)) return 1;
    int status = run_command(args.argc, args.argv);
    split_args_free(&args);
    return finish_output(status);
}
