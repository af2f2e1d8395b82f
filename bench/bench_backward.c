/*
 * bench/bench_backward.c — time of the reverse walk alone (forward not timed), for the two
 * shapes where the walk's per-entry cost matters: a 20-layer width-256 sigmoid MLP on a batch
 * of 64, and a chain of 2,000 scalar ops; first with no hook registered, then with a statistics
 * hook (tg_stats_compute) on every node, so the two can be compared in one run.
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

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define SAMPLES 41

/* Median over SAMPLES steps of the time tg_backward takes; build() records one step. */
typedef tg_tensor *(*build_fn)(tg_tape *tape, void *state);

static double median_backward_seconds(tg_tape *tape, build_fn build, void *state) {
    double samples[SAMPLES];
    for (int i = -3; i < SAMPLES; i++) { /* three warm-up steps */
        tg_tape_reset(tape);
        tg_tensor *loss = build(tape, state);
        double start = now_seconds();
        if (!loss || tg_backward(tape, loss) != TG_OK) {
            fprintf(stderr, "bench: %s\n", tg_errmsg(tg_tape_ctx(tape)));
            exit(1);
        }
        if (i >= 0) samples[i] = now_seconds() - start;
    }
    qsort(samples, SAMPLES, sizeof samples[0], compare_doubles);
    return samples[SAMPLES / 2];
}

typedef struct mlp {
    tg_tensor *w[20], *b[20], *x, *labels;
} mlp;

static tg_tensor *mlp_step(tg_tape *tape, void *state) {
    mlp *m = state;
    tg_tensor *h = m->x;
    for (int l = 0; l < 20; l++) {
        h = tg_linear(tape, h, m->w[l], m->b[l]);
        if (l < 19) h = tg_sigmoid(tape, h);
    }
    return tg_cross_entropy(tape, h, m->labels);
}

static tg_tensor *chain_step(tg_tape *tape, void *state) {
    tg_tensor *y = state;
    for (int i = 0; i < 1000; i++) y = tg_tanh(tape, tg_scale(tape, y, 1.01f));
    return y;
}

static tg_status stats_hook(tg_ctx *ctx, const tg_hook_event *event, void *user) {
    (void)ctx;
    tg_stats_compute(event->values, event->size, user);
    return TG_OK;
}

int main(void) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    mlp m;
    for (int l = 0; l < 20; l++) {
        int64_t in = l == 0 ? 64 : 256, out = l == 19 ? 10 : 256;
        m.w[l] = tg_zeros(ctx, TG_SHAPE(out, in));
        m.b[l] = tg_zeros(ctx, TG_SHAPE(out));
        tg_fill_normal(m.w[l], 0, 1.0f / sqrtf((float)in), (uint64_t)l + 1);
        tg_set_requires_grad(m.w[l], true);
        tg_set_requires_grad(m.b[l], true);
    }
    m.x = tg_zeros(ctx, TG_SHAPE(64, 64));
    tg_fill_normal(m.x, 0, 1, 5);
    m.labels = tg_zeros(ctx, TG_SHAPE(64));
    for (int i = 0; i < 64; i++) m.labels->data[i] = (float)(i % 10);
    tg_tensor *scalar = tg_scalar(ctx, 0.5f);
    tg_set_requires_grad(scalar, true);

    double mlp_plain = median_backward_seconds(tape, mlp_step, &m);
    double chain_plain = median_backward_seconds(tape, chain_step, scalar);
    printf("backward only, median of %d, no hooks: mlp 20x256 %.3f ms, scalar chain (2000 ops) "
           "%.1f us\n", SAMPLES, 1e3 * mlp_plain, 1e6 * chain_plain);
    tg_stats sink;
    tg_hook_global(ctx, TG_PASS_BACKWARD, stats_hook, &sink);
    double mlp_hooked = median_backward_seconds(tape, mlp_step, &m);
    double chain_hooked = median_backward_seconds(tape, chain_step, scalar);
    printf("backward only, median of %d, stats hook on every node: mlp %.3f ms (x%.3f), scalar "
           "chain %.1f us (x%.3f)\n", SAMPLES, 1e3 * mlp_hooked, mlp_hooked / mlp_plain,
           1e6 * chain_hooked, chain_hooked / chain_plain);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
    return 0;
}
