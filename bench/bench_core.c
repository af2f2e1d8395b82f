/*
 * bench/bench_core.c — early speed figures of the core:
 *   1. a chain of 1,000 scalar ops y = tanh(1.01 * y), forward + backward: ns per op
 *      (2,000 recorded ops per pass: scale and tanh), i.e. the tape's fixed cost per op;
 *   2. one training step (forward, backward, SGD) of a 20-layer, width-256 sigmoid MLP on a
 *      batch of 64 with 64 inputs and 10 classes: ms per step, and the tape's peak bytes.
 * Run with `zig build bench -Doptimize=ReleaseFast` (the build sets OPENBLAS_NUM_THREADS=1).
 * `bench_core chain [passes]` or `bench_core mlp` runs one of the two; for instruction counts,
 * `valgrind --tool=callgrind --toggle-collect=chain_pass bench_core chain 20` counts only the
 * passes (divide by 2,000 ops x (9 rounds x passes + 1 warm-up pass)).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tapegrad.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int check(tg_ctx *ctx, tg_status status) {
    if (status != TG_OK) fprintf(stderr, "bench: %s\n", tg_errmsg(ctx));
    return status != TG_OK;
}

/* Median of a small sample, so one descheduling does not decide the figure. */
static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *values, int n) {
    qsort(values, (size_t)n, sizeof *values, compare_doubles);
    return values[n / 2];
}

#define CHAIN 1000
#define ROUNDS 9

/* One pass, not inlined so that callgrind can count it alone (--toggle-collect=chain_pass). */
__attribute__((noinline)) static int chain_pass(tg_ctx *ctx, tg_tape *tape, tg_tensor *x) {
    tg_tape_reset(tape);
    tg_tensor *y = x;
    for (int i = 0; i < CHAIN; i++) y = tg_tanh(tape, tg_scale(tape, y, 1.01f));
    if (check(ctx, tg_backward(tape, y))) return 1;
    tg_zero_grad(x);
    return 0;
}

static int bench_scalar_chain(int passes) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *x = tg_scalar(ctx, 0.5f);
    tg_set_requires_grad(x, true);
    double per_round[ROUNDS];
    if (chain_pass(ctx, tape, x)) return 1; /* warm-up: the arena and entry array grow once */
    for (int round = 0; round < ROUNDS; round++) {
        double start = now_seconds();
        for (int pass = 0; pass < passes; pass++)
            if (chain_pass(ctx, tape, x)) return 1;
        per_round[round] = (now_seconds() - start) / passes;
    }
    double seconds = median(per_round, ROUNDS);
    printf("scalar chain: %d x (scale, tanh), forward+backward: %.1f us per pass, %.1f ns per op "
           "(%d ops)\n", CHAIN, seconds * 1e6, seconds * 1e9 / (2 * CHAIN), 2 * CHAIN);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
    return 0;
}

#define LAYERS 20
#define WIDTH 256
#define BATCH 64
#define INPUTS 64
#define CLASSES 10

static int bench_mlp_step(void) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *weights[LAYERS], *biases[LAYERS];
    for (int l = 0; l < LAYERS; l++) {
        int64_t in = l == 0 ? INPUTS : WIDTH, out = l == LAYERS - 1 ? CLASSES : WIDTH;
        weights[l] = tg_set_label(tg_zeros(ctx, TG_SHAPE(out, in)), "fc%d.weight", l);
        biases[l] = tg_set_label(tg_zeros(ctx, TG_SHAPE(out)), "fc%d.bias", l);
        /* LeCun-normal scale 1/sqrt(fan_in): gradients shrink about 4x per sigmoid layer but stay
         * normal floats (a smaller scale drives them into denormals, which x86 computes ~100x slower) */
        tg_fill_normal(weights[l], 0, 1.0f / sqrtf((float)in), (uint64_t)l + 1);
        tg_set_requires_grad(weights[l], true);
        tg_set_requires_grad(biases[l], true);
    }
    tg_tensor *x = tg_zeros(ctx, TG_SHAPE(BATCH, INPUTS)), *labels = tg_zeros(ctx, TG_SHAPE(BATCH));
    tg_fill_normal(x, 0, 1, 99);
    for (int i = 0; i < BATCH; i++) labels->data[i] = (float)(i % CLASSES);

    double per_round[ROUNDS];
    const int steps = 20;
    for (int round = 0; round < ROUNDS; round++) {
        double start = now_seconds();
        for (int step = 0; step < steps; step++) {
            tg_tape_reset(tape);
            tg_tensor *h = x;
            for (int l = 0; l < LAYERS; l++) {
                h = tg_linear(tape, h, weights[l], biases[l]);
                if (l < LAYERS - 1) h = tg_sigmoid(tape, h);
            }
            if (check(ctx, tg_backward(tape, tg_cross_entropy(tape, h, labels)))) return 1;
            for (int l = 0; l < LAYERS; l++) {
                tg_tensor *p[2] = {weights[l], biases[l]};
                for (int k = 0; k < 2; k++) {
                    for (int64_t i = 0; i < p[k]->size; i++) p[k]->data[i] -= 0.01f * p[k]->grad[i];
                    tg_zero_grad(p[k]);
                }
            }
        }
        per_round[round] = (now_seconds() - start) / steps;
    }
    printf("mlp step: %d layers x %d wide, sigmoid, batch %d, %d inputs, %d classes: %.3f ms per "
           "step (forward, backward, SGD); tape peak %zu bytes (%.2f MiB)\n", LAYERS, WIDTH, BATCH,
           INPUTS, CLASSES, median(per_round, ROUNDS) * 1e3, tg_tape_bytes_peak(tape),
           (double)tg_tape_bytes_peak(tape) / (1 << 20));
    tg_tape_free(tape);
    tg_ctx_free(ctx);
    return 0;
}

int main(int argc, char **argv) {
    const char *only = argc > 1 ? argv[1] : "";
    int passes = argc > 2 ? atoi(argv[2]) : 200;
    if (passes < 1) passes = 1;
    printf("matrix products: %s\n", tg_gemm_backend());
    if (strcmp(only, "mlp") != 0 && bench_scalar_chain(passes)) return 1;
    return strcmp(only, "chain") != 0 && bench_mlp_step();
}
