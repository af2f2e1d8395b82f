/*
 * cli/main.c — the `tapegrad` command.
 *
 *   tapegrad [demo]            train a small MLP on two spirals and report loss and accuracy
 *   tapegrad ops               list the op registry
 *   tapegrad gradcheck [OP...] check registered ops' gradients against finite differences
 *
 * (The full tool — study, train — grows here in later work.)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapegrad.h"

#define EXIT_USAGE 2

static void usage(FILE *out) {
    fprintf(out,
            "usage: tapegrad [COMMAND] [ARGS]\n"
            "\n"
            "commands:\n"
            "  demo [--steps N] [--seed N]  train a 2-layer MLP on two spirals (the default)\n"
            "  ops                          list registered ops: name, arity, attributes, backward\n"
            "  gradcheck [OP...]            check ops' gradients against finite differences\n"
            "  help                         this text\n");
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

static int parse_count(const char *flag, const char *value, long *out) {
    char *end;
    long v = value ? strtol(value, &end, 10) : 0;
    if (!value || *end || v < 0) {
        fprintf(stderr, "tapegrad demo: %s needs a non-negative whole number, got '%s'\n", flag,
                value ? value : "(nothing)");
        return EXIT_USAGE;
    }
    *out = v;
    return 0;
}

static int run_demo(int argc, char **argv) {
    long steps = 2000, seed = 1;
    for (int i = 0; i < argc; i++) {
        int bad = 0;
        if (strcmp(argv[i], "--steps") == 0) bad = parse_count("--steps", i + 1 < argc ? argv[++i] : NULL, &steps);
        else if (strcmp(argv[i], "--seed") == 0) bad = parse_count("--seed", i + 1 < argc ? argv[++i] : NULL, &seed);
        else {
            fprintf(stderr, "tapegrad demo: unknown argument '%s'\n", argv[i]);
            return EXIT_USAGE;
        }
        if (bad) return bad;
    }
    tg_ctx *ctx = tg_ctx_new();
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

/* ---- ops and gradcheck --------------------------------------------------------------------- */

static int run_ops(void) {
    tg_ctx *ctx = tg_ctx_new();
    printf("%-16s %-8s %-36s %s\n", "op", "arity", "attributes", "backward");
    for (int id = 0; id < tg_op_count(ctx); id++) {
        tg_op_info info;
        tg_op_get_info(ctx, id, &info);
        char arity[16];
        if (info.arity == TG_VARIADIC) snprintf(arity, sizeof arity, "1+");
        else snprintf(arity, sizeof arity, "%d", info.arity);
        printf("%-16s %-8s %-36s %s\n", info.name, arity,
               info.attr_signature[0] ? info.attr_signature : "-", info.has_backward ? "yes" : "no");
    }
    tg_ctx_free(ctx);
    return 0;
}

static int run_gradcheck(int argc, char **argv) {
    tg_ctx *ctx = tg_ctx_new();
    int failures = 0;
    for (int i = 0; i < argc; i++)
        if (tg_op_find(ctx, argv[i]) < 0) {
            fprintf(stderr, "tapegrad gradcheck: unknown op '%s' (see 'tapegrad ops')\n", argv[i]);
            tg_ctx_free(ctx);
            return EXIT_USAGE;
        }
    printf("%-16s %-8s %-10s %-12s %s\n", "op", "example", "checked", "max rel err", "result");
    for (int id = 0; id < tg_op_count(ctx); id++) {
        tg_op_info info;
        tg_op_get_info(ctx, id, &info);
        bool wanted = argc == 0;
        for (int i = 0; i < argc; i++) wanted |= strcmp(argv[i], info.name) == 0;
        if (!wanted) continue;
        for (int example = 0;; example++) {
            tg_gradcheck_result result;
            tg_status status = tg_gradcheck(ctx, id, example, NULL, &result);
            if (status == TG_ERR_NOT_FOUND) break;
            bool ok = status == TG_OK && result.passed;
            failures += !ok;
            printf("%-16s %-8d %-10lld %-12.2e %s\n", info.name, example, (long long)result.n_checked,
                   result.max_rel_err, ok ? "pass" : (status == TG_OK ? "FAIL" : tg_errmsg(ctx)));
            tg_clear_error(ctx);
        }
    }
    tg_ctx_free(ctx);
    return failures ? 1 : 0;
}

int main(int argc, char **argv) {
    const char *command = argc > 1 ? argv[1] : "demo";
    if (strcmp(command, "demo") == 0) return run_demo(argc > 2 ? argc - 2 : 0, argv + 2);
    if (strcmp(command, "ops") == 0) return run_ops();
    if (strcmp(command, "gradcheck") == 0) return run_gradcheck(argc - 2, argv + 2);
    if (strcmp(command, "help") == 0 || strcmp(command, "--help") == 0 || strcmp(command, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "tapegrad: unknown command '%s'\n", command);
    usage(stderr);
    return EXIT_USAGE;
}
