/*
 * examples/hooks.c — watch gradients vanish in a deep sigmoid MLP built by hand from ops.
 *
 * Every layer's output is named ("layer7.out") as it is recorded, a recorder hook collects the
 * gradient statistics of every layer output at each backward pass, and a clip hook caps the
 * gradient norm at one layer. The program prints the per-layer gradient norms: with sigmoid
 * and the usual 1/sqrt(fan_in) initialisation each layer passes back at most a quarter of
 * what it receives, so the first layers learn orders of magnitude slower than the last.
 *
 *   ./hooks [DEPTH]    (default 20)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "tapegrad.h"

#define WIDTH 64
#define BATCH 32
#define INPUTS 16
#define CLASSES 4
#define STEPS 5

static void fail(tg_ctx *ctx) {
    fprintf(stderr, "error: %s\n", tg_errmsg(ctx));
    exit(1);
}

int main(int argc, char **argv) {
    int depth = argc > 1 ? atoi(argv[1]) : 20;
    if (depth < 2 || depth > 200) {
        fprintf(stderr, "usage: hooks [DEPTH in 2..200]\n");
        return 2;
    }
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);

    /* parameters: layer l maps its input to WIDTH units (CLASSES for the last) */
    tg_tensor **weights = calloc((size_t)depth, sizeof *weights), **biases = calloc((size_t)depth, sizeof *biases);
    for (int l = 0; l < depth; l++) {
        int64_t in = l == 0 ? INPUTS : WIDTH, out = l == depth - 1 ? CLASSES : WIDTH;
        weights[l] = tg_set_label(tg_zeros(ctx, TG_SHAPE(out, in)), "layer%d.weight", l);
        biases[l] = tg_set_label(tg_zeros(ctx, TG_SHAPE(out)), "layer%d.bias", l);
        tg_fill_normal(weights[l], 0.0f, 1.0f / sqrtf((float)in), 1000 + (uint64_t)l);
        tg_set_requires_grad(weights[l], true);
        tg_set_requires_grad(biases[l], true);
    }
    tg_tensor *x = tg_zeros(ctx, TG_SHAPE(BATCH, INPUTS)), *labels = tg_zeros(ctx, TG_SHAPE(BATCH));
    tg_fill_normal(x, 0, 1, 7);
    for (int i = 0; i < BATCH; i++) labels->data[i] = (float)(i % CLASSES);

    /* a clip hook on one layer: its gradient norm is capped, and what flows below it with it
     * (registered first, so the recorder below sees the clipped gradient: hooks run in order) */
    static const float max_norm = 1e-3f;
    char clipped[32];
    snprintf(clipped, sizeof clipped, "layer%d.out", depth - 2);
    if (tg_hook_pattern(ctx, clipped, TG_PASS_BACKWARD, tg_hook_clip_norm, (void *)&max_norm) < 0) fail(ctx);
    /* the stats hook on every layer output: a recorder keeps them per layer and per step */
    tg_recorder *recorder = tg_recorder_new(ctx, 100);
    if (!recorder || tg_recorder_attach(recorder, "layer*.out") < 0) fail(ctx);

    for (int step = 0; step < STEPS; step++) {
        tg_tape_reset(tape);
        tg_tensor *h = x;
        for (int l = 0; l < depth; l++) {
            tg_tape_label_next(tape, "layer%d.out", l); /* names the next op's output */
            h = tg_linear(tape, h, weights[l], biases[l]);
            if (l < depth - 1) h = tg_sigmoid(tape, h); /* the named node is the pre-activation */
        }
        tg_tensor *loss = tg_cross_entropy(tape, h, labels);
        if (!loss || tg_backward(tape, loss) != TG_OK) fail(ctx);
        for (int l = 0; l < depth; l++) {
            tg_tensor *p[2] = {weights[l], biases[l]};
            for (int k = 0; k < 2; k++) {
                for (int64_t i = 0; i < p[k]->size; i++) p[k]->data[i] -= 0.5f * p[k]->grad[i];
                tg_zero_grad(p[k]);
            }
        }
        printf("step %d  loss %.4f\n", step, loss->data[0]);
    }

    printf("\ngradient norm per layer output at the last step (%s clipped to %g):\n", clipped, max_norm);
    int64_t step;
    tg_stats stats;
    for (int i = 0; i < tg_recorder_series_count(recorder); i++) {
        int n = tg_recorder_series(recorder, i, &step, &stats, 1);
        if (n) printf("  %-14s %10.3e  %s\n", tg_recorder_series_name(recorder, i), stats.l2_norm,
                      stats.l2_norm > 0 ? "" : "(zero)");
    }
    printf("first/last layer gradient norm ratio: %.3e\n", tg_recorder_first_last_ratio(recorder));
    tg_onset_report report;
    tg_recorder_detect(recorder, NULL, &report);
    printf("onset detection: %s\n", report.summary);

    tg_recorder_free(recorder);
    free(weights);
    free(biases);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
    return 0;
}
