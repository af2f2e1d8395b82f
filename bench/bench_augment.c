/*
 * bench/bench_augment.c — what augmentation costs beside the step it feeds: tg_augment_apply
 * (random crop with padding 4, horizontal flip, normalisation) on a batch 128x1x28x28, the
 * Fashion-MNIST recipe, against one LeNet training step on the same batch (forward, cross
 * entropy, backward, SGD), one thread. Median of ROUNDS rounds (min, max). Pin it for steady
 * figures: `taskset -c 1 zig-out/bin/bench_augment` after `zig build bench-augment
 * -Doptimize=ReleaseFast`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_timing.h"
#include "tapegrad.h"

#define ROUNDS 7
#define BATCH 128
#define SIDE 28
#define APPLIES 200 /* per round */
#define STEPS 5     /* per round */

int main(void) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    if (!ctx || !tape || tg_ctx_set_threads(ctx, 1) != TG_OK) return 1;
    const int64_t pixels = (int64_t)BATCH * SIDE * SIDE;
    float *images = malloc((size_t)pixels * sizeof(float)), labels[BATCH];
    if (!images) return 1;
    for (int64_t i = 0; i < pixels; i++) images[i] = (float)((i * 7919) % 256) / 255.0f;
    for (int i = 0; i < BATCH; i++) labels[i] = (float)(i % 10);
    const float mean = 0.2860f, std = 0.3530f; /* Fashion-MNIST's training set */
    tg_augment *aug = tg_augment_new(ctx, &(tg_augment_config){.crop_padding = 4, .flip = true,
                                                               .channels = 1, .mean = &mean,
                                                               .std = &std}, 1);
    tg_tensor *x = tg_zeros(ctx, TG_SHAPE(BATCH, 1, SIDE, SIDE));
    tg_module *net = tg_lenet_new(ctx, "lenet", &(tg_lenet_config){.channels = 1, .height = SIDE,
                                                                  .width = SIDE, .classes = 10,
                                                                  .seed = 1});
    tg_optimizer *opt = net ? tg_optimizer_new_module(net, &(tg_optimizer_config){
                                                               .kind = TG_OPT_SGD, .lr = 0.01f})
                            : NULL;
    if (!aug || !x || !opt) {
        fprintf(stderr, "bench_augment: %s\n", tg_errmsg(ctx));
        return 1;
    }

    /* augmentation alone: each apply on a fresh copy of the batch, the copy not timed */
    double augment[ROUNDS];
    for (int round = -1; round < ROUNDS; round++) { /* round -1: warm-up, the scratch */
        double total = 0.0;
        for (int k = 0; k < APPLIES; k++) {
            memcpy(x->data, images, (size_t)pixels * sizeof(float));
            double start = bench_now_seconds();
            if (tg_augment_apply(aug, x) != TG_OK) return 1;
            total += bench_now_seconds() - start;
        }
        if (round >= 0) augment[round] = total / APPLIES;
    }

    /* one LeNet training step on that batch */
    double step[ROUNDS];
    for (int round = -1; round < ROUNDS; round++) {
        double start = bench_now_seconds();
        for (int s = 0; s < STEPS; s++) {
            tg_tape_reset(tape);
            tg_tensor *in = tg_tape_from_data(tape, TG_SHAPE(BATCH, 1, SIDE, SIDE), x->data);
            tg_tensor *y = tg_tape_from_data(tape, TG_SHAPE(BATCH), labels);
            tg_tensor *loss = tg_cross_entropy(tape, tg_module_forward(net, tape, in), y);
            if (!loss || tg_backward(tape, loss) != TG_OK) {
                fprintf(stderr, "bench_augment: %s\n", tg_errmsg(ctx));
                return 1;
            }
            tg_optimizer_step_zero_grad(opt);
        }
        if (round >= 0) step[round] = (bench_now_seconds() - start) / STEPS;
    }

    bench_timing a = bench_summarize(augment, ROUNDS), s = bench_summarize(step, ROUNDS);
    printf("augment %dx1x%dx%d (crop pad 4, flip, normalise): %.1f us per batch (median of %d "
           "rounds of %d; min %.1f, max %.1f)\n", BATCH, SIDE, SIDE, 1e6 * a.median, ROUNDS,
           APPLIES, 1e6 * a.min, 1e6 * a.max);
    printf("LeNet training step, same batch, 1 thread: %.2f ms (median of %d rounds of %d; min "
           "%.2f, max %.2f)\n", 1e3 * s.median, ROUNDS, STEPS, 1e3 * s.min, 1e3 * s.max);
    printf("augmentation / step: %.2f%%\n", 100.0 * a.median / s.median);
    free(images);
    tg_optimizer_free(opt);
    tg_augment_free(aug);
    tg_module_free(net);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
    return 0;
}
