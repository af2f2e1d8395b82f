/*
 * bench/bench_optim.c — the optimizer's share of a small training step: the MLP d4 w32
 * b16 (4 linear layers, width 32, sigmoid, batch 16, 64 inputs, 10 classes, cross-entropy) with
 * SGD lr 0.01, and the update alone for SGD, SGD with Nesterov momentum, Adam, AdamW and RMSprop
 * over the same parameters (ns per step, median of ROUNDS rounds, min-max).
 * `bench_optim --profile` runs a few steps untimed, for `valgrind --tool=callgrind`.
 * Run with `zig build bench -Doptimize=ReleaseFast`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_timing.h"
#include "tapegrad.h"

#define LAYERS 4
#define WIDTH 32
#define BATCH 16
#define INPUTS 64
#define CLASSES 10
#define ROUNDS 7
#define STEPS 2000

typedef struct mlp {
    tg_ctx *ctx;
    tg_tape *tape;
    tg_module *net;
    tg_tensor *x, *labels, *params[2 * LAYERS];
    int n_params;
} mlp;

static int mlp_init(mlp *m) {
    m->ctx = tg_ctx_new();
    tg_ctx_set_threads(m->ctx, 1);
    tg_mlp_config c = {.in = INPUTS, .out = CLASSES, .width = WIDTH, .depth = LAYERS, .activation = TG_ACT_SIGMOID,
                       .init = tg_init_xavier(TG_ACT_SIGMOID), .norm = TG_NORM_NONE, .seed = 1};
    m->net = tg_mlp_new(m->ctx, "mlp", &c);
    m->x = tg_zeros(m->ctx, TG_SHAPE(BATCH, INPUTS));
    m->labels = tg_zeros(m->ctx, TG_SHAPE(BATCH));
    m->tape = tg_tape_new(m->ctx);
    if (!m->net || !m->x || !m->labels || !m->tape) return 1;
    tg_fill_normal(m->x, 0, 1, 5);
    for (int i = 0; i < BATCH; i++) m->labels->data[i] = (float)(i % CLASSES);
    m->n_params = tg_module_params(m->net, m->params, 2 * LAYERS);
    return 0;
}

static int train_step(mlp *m, tg_optimizer *opt) {
    tg_tape_reset(m->tape);
    tg_tensor *loss = tg_cross_entropy(m->tape, tg_module_forward(m->net, m->tape, m->x), m->labels);
    if (!loss || tg_backward(m->tape, loss) != TG_OK) {
        fprintf(stderr, "bench_optim: %s\n", tg_errmsg(m->ctx));
        return 1;
    }
    tg_optimizer_step(opt);
    tg_optimizer_zero_grad(opt);
    return 0;
}

/* ns per call of fn over ROUNDS rounds of STEPS calls: median, min, max. */
static void time_rounds(mlp *m, tg_optimizer *opt, bool whole_step, double out[3]) {
    double per_round[ROUNDS];
    for (int round = 0; round < ROUNDS; round++) {
        double start = bench_now_seconds();
        for (int s = 0; s < STEPS; s++) {
            if (whole_step) train_step(m, opt);
            else tg_optimizer_step(opt);
        }
        per_round[round] = (bench_now_seconds() - start) / STEPS * 1e9;
    }
    bench_timing t = bench_summarize(per_round, ROUNDS);
    out[0] = t.median;
    out[1] = t.min;
    out[2] = t.max;
}

int main(int argc, char **argv) {
    mlp m;
    if (mlp_init(&m)) return 1;
    tg_optimizer_config sgd = {.kind = TG_OPT_SGD, .lr = 0.01f};
    tg_optimizer *opt = tg_optimizer_new(m.ctx, m.params, m.n_params, &sgd);
    if (!opt || train_step(&m, opt)) return 1;
    if (argc > 1 && strcmp(argv[1], "--profile") == 0) {
        for (int s = 0; s < 100; s++) train_step(&m, opt);
        return 0;
    }
    int64_t count = 0;
    for (int i = 0; i < m.n_params; i++) count += m.params[i]->size;
    double t[3];
    time_rounds(&m, opt, true, t);
    printf("mlp d%d w%d b%d sigmoid, SGD lr 0.01: %.2f us per step [%.2f-%.2f] (median of %d rounds)\n",
           LAYERS, WIDTH, BATCH, t[0] / 1e3, t[1] / 1e3, t[2] / 1e3, ROUNDS);
    tg_optimizer_free(opt);
    const struct {
        const char *name;
        tg_optimizer_config config;
    } kinds[] = {
        {"SGD", {.kind = TG_OPT_SGD, .lr = 0.01f}},
        {"SGD + Nesterov momentum + decay", {.kind = TG_OPT_SGD, .lr = 0.01f, .momentum = 0.9f, .nesterov = true, .weight_decay = 1e-4f}},
        {"Adam", {.kind = TG_OPT_ADAM, .lr = 1e-3f}},
        {"AdamW", {.kind = TG_OPT_ADAMW, .lr = 1e-3f, .weight_decay = 0.01f}},
        {"RMSprop + momentum", {.kind = TG_OPT_RMSPROP, .lr = 1e-3f, .momentum = 0.9f}},
    };
    printf("update alone over its %lld parameters, ns per step [min-max]:\n", (long long)count);
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        opt = tg_optimizer_new(m.ctx, m.params, m.n_params, &kinds[k].config);
        if (!opt) return 1;
        time_rounds(&m, opt, false, t);
        printf("  %-32s %8.0f ns [%.0f-%.0f], %.2f ns per parameter\n", kinds[k].name, t[0], t[1], t[2],
               t[0] / (double)count);
        tg_optimizer_free(opt);
    }
    tg_module_free(m.net);
    tg_tape_free(m.tape);
    tg_ctx_free(m.ctx);
    return 0;
}
