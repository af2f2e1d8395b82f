/*
 * bench/bench_recompute.c — gradient checkpointing (issue 25): what tg_module_set_recompute
 * saves in tape memory and costs in time, on two workloads:
 *   LSTM hidden 128, T = 1000, batch 16, 16 inputs, a linear head on h[T], MSE, SGD;
 *        recomputed in chunks of 32 time steps;
 *   ResNet-56 (width 16) on batch 32 of 1x28x28, cross-entropy over 10 classes, SGD;
 *        recomputed per residual block.
 * Each runs plain and recomputed on the same weights and data, in separate contexts, one thread
 * (pin it: taskset -c 1). Printed: the tape's peak bytes (tg_tape_bytes_peak: the arena, plus
 * the scratch tape that holds one segment's inside) and their ratio, ms per training step
 * (median of ROUNDS interleaved rounds, min-max) and the ratio, and whether the losses and every
 * parameter after the steps agree to the bit (the bench is also a check).
 * Run with `zig build bench-recompute -Doptimize=ReleaseFast`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_timing.h"
#include "tapegrad.h"

#define ROUNDS 5

typedef struct run {
    tg_ctx *ctx;
    tg_tape *tape;
    tg_module *net, *head;   /* head: the LSTM's linear layer (NULL for the ResNet) */
    tg_optimizer *opt;
    tg_tensor *x, *y;
    float loss;
} run;

enum { LSTM, RESNET };

static void die(tg_ctx *ctx, const char *what) {
    fprintf(stderr, "bench_recompute: %s: %s\n", what, tg_errmsg(ctx));
    exit(1);
}

static run make(int workload, int64_t span) {
    run r = {0};
    r.ctx = tg_ctx_new();
    if (!r.ctx) die(NULL, "context");
    tg_ctx_set_threads(r.ctx, 1);
    r.tape = tg_tape_new(r.ctx);
    tg_tensor *params[256];
    int n = 0;
    if (workload == LSTM) {
        tg_rnn_config c = tg_rnn_defaults(TG_RNN_LSTM, 16, 128);
        r.net = tg_rnn_new(r.ctx, "lstm", &c);
        r.head = tg_linear_new(r.ctx, "head", 128, 1, true, NULL, 2);
        r.x = tg_zeros(r.ctx, TG_SHAPE(16, 1000, 16));
        r.y = tg_zeros(r.ctx, TG_SHAPE(16, 1));
        tg_fill_normal(r.x, 0.0f, 1.0f, 1);
        tg_fill_normal(r.y, 0.0f, 1.0f, 2);
    } else {
        tg_resnet_config c = {.channels = 1, .classes = 10, .depth = 56, .skip = true, .seed = 1};
        r.net = tg_resnet_new(r.ctx, "resnet", &c);
        r.x = tg_zeros(r.ctx, TG_SHAPE(32, 1, 28, 28));
        r.y = tg_zeros(r.ctx, TG_SHAPE(32));
        tg_fill_normal(r.x, 0.0f, 1.0f, 1);
        for (int i = 0; i < 32; i++) r.y->data[i] = (float)(i % 10);
    }
    if (!r.net || (workload == LSTM && !r.head)) die(r.ctx, "model");
    n = tg_module_params(r.net, params, 256);
    if (r.head) n += tg_module_params(r.head, params + n, 256 - n);
    r.opt = tg_optimizer_new(r.ctx, params, n, &(tg_optimizer_config){.kind = TG_OPT_SGD, .lr = 0.01f});
    if (!r.opt || tg_module_set_recompute(r.net, span) != TG_OK) die(r.ctx, "optimizer");
    return r;
}

static double step(run *r) {
    double start = bench_now_seconds();
    tg_tape_reset(r->tape);
    tg_tensor *out = tg_module_forward(r->net, r->tape, r->x);
    tg_tensor *loss = r->head ? tg_mse(r->tape, tg_module_forward(r->head, r->tape, out), r->y)
                              : tg_cross_entropy(r->tape, out, r->y);
    if (!loss || tg_backward(r->tape, loss) != TG_OK) die(r->ctx, "step");
    tg_optimizer_step(r->opt);
    tg_optimizer_zero_grad(r->opt);
    r->loss = loss->data[0];
    return bench_now_seconds() - start;
}

static bool same_params(const run *a, const run *b) {
    const tg_module *nets[2][2] = {{a->net, a->head}, {b->net, b->head}};
    for (int k = 0; k < 2 && nets[0][k]; k++)
        for (int i = 0; i < tg_module_param_count(nets[0][k]); i++) {
            const tg_tensor *p = tg_module_param(nets[0][k], i), *q = tg_module_param(nets[1][k], i);
            if (memcmp(p->data, q->data, (size_t)p->size * sizeof(float)) != 0) return false;
        }
    return true;
}

static void measure(int workload, const char *name, int64_t span, const char *segments) {
    run r[2] = {make(workload, 0), make(workload, span)};
    double times[2][ROUNDS];
    for (int k = 0; k < 2; k++) step(&r[k]); /* warm-up: the tapes grow to the step */
    for (int round = 0; round < ROUNDS; round++)
        for (int k = 0; k < 2; k++) times[k][round] = step(&r[k]);
    double ratios[ROUNDS]; /* per round: the two runs of a round share its neighbours' noise */
    for (int round = 0; round < ROUNDS; round++) ratios[round] = times[1][round] / times[0][round];
    bench_timing ratio = bench_summarize(ratios, ROUNDS);
    bench_timing t[2] = {bench_summarize(times[0], ROUNDS), bench_summarize(times[1], ROUNDS)};
    size_t peak[2] = {tg_tape_bytes_peak(r[0].tape), tg_tape_bytes_peak(r[1].tape)};
    bool same = memcmp(&r[0].loss, &r[1].loss, sizeof(float)) == 0 && same_params(&r[0], &r[1]);
    printf("%s, recomputed %s\n", name, segments);
    printf("  tape peak   plain %8.1f MB   recomputed %8.1f MB   fraction %.3f\n",
           (double)peak[0] / 1e6, (double)peak[1] / 1e6, (double)peak[1] / (double)peak[0]);
    printf("  step        plain %8.1f ms (%.1f-%.1f)   recomputed %8.1f ms (%.1f-%.1f)   ratio %.2f "
           "(%.2f-%.2f)\n", 1e3 * t[0].median, 1e3 * t[0].min, 1e3 * t[0].max, 1e3 * t[1].median,
           1e3 * t[1].min, 1e3 * t[1].max, ratio.median, ratio.min, ratio.max);
    printf("  %d steps: losses and parameters %s (last loss %.6g)\n", ROUNDS + 1,
           same ? "identical to the bit" : "DIFFER", (double)r[1].loss);
    for (int k = 0; k < 2; k++) {
        tg_tape_free(r[k].tape);
        tg_ctx_free(r[k].ctx);
    }
    if (!same) exit(1);
}

int main(int argc, char **argv) {
    const char *only = argc > 1 ? argv[1] : NULL;
    printf("bench_recompute: one thread, median of %d interleaved rounds (min-max)\n", ROUNDS);
    if (!only || strcmp(only, "lstm") == 0)
        measure(LSTM, "LSTM h128 T1000 b16", 32, "in chunks of 32 steps");
    if (!only || strcmp(only, "resnet") == 0)
        measure(RESNET, "ResNet-56 b32 1x28x28", 1, "per residual block");
    return 0;
}
