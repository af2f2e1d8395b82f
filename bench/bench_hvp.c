/*
 * bench/bench_hvp.c — what a Hessian-vector product costs against a gradient, on bench_rnn's
 * LSTM (hidden 128, T = 100, batch 32, 16 inputs, a linear head on h[T]), one thread:
 *   gradient: record the loss, tg_backward (the parameters' gradients zeroed after);
 *   HVP:      record the loss, tg_hvp with respect to every parameter along a fixed v
 *             (reverse over forward: the tangents of the fused cells' JVP rules, then one
 *             backward through the step and its tangents).
 * The loss is mean((head(h[T]) - y)^2) written as ops (sub, square, mean), the same as tg_mse.
 * Each on its own tape (their arenas then settle on their own sizes). Printed: ms per step,
 * median of ROUNDS interleaved rounds [min-max], the ratio of the medians and the median of
 * the rounds' ratios (the target: at most 3), and both tapes' peaks.
 * Run with `zig build bench-hvp -Doptimize=ReleaseFast` (pin it: `taskset -c 1`).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_timing.h"
#include "tapegrad.h"

#define BATCH 32
#define STEPS 100
#define INPUTS 16
#define HIDDEN 128
#define ROUNDS 7
#define STEPS_PER_ROUND 2
#define MAX_PARAMS 6

typedef struct bench {
    tg_ctx *ctx;
    tg_module *rnn, *head;
    tg_tensor *x, *y, *params[MAX_PARAMS];
    int n;
    float *v[MAX_PARAMS], *hv[MAX_PARAMS];
    tg_tape *grad_tape, *hvp_tape;
} bench;

static tg_tensor *record_loss(bench *b, tg_tape *tape) {
    tg_tape_reset(tape);
    tg_tensor *out = tg_module_forward(b->head, tape, tg_rnn_forward(b->rnn, tape, b->x, NULL));
    return tg_mean(tape, tg_square(tape, tg_sub(tape, out, b->y)));
}

static void fail(bench *b) {
    fprintf(stderr, "bench_hvp: %s\n", tg_errmsg(b->ctx));
    exit(1);
}

static void gradient_step(bench *b) {
    tg_tensor *loss = record_loss(b, b->grad_tape);
    if (!loss || tg_backward(b->grad_tape, loss) != TG_OK) fail(b);
    for (int i = 0; i < b->n; i++) memset(b->params[i]->grad, 0, (size_t)b->params[i]->size * sizeof(float));
}

static void hvp_step(bench *b) {
    tg_tensor *loss = record_loss(b, b->hvp_tape);
    if (!loss || tg_hvp(b->hvp_tape, loss, b->n, b->params, (const float *const *)b->v, b->hv) != TG_OK)
        fail(b);
}

int main(void) {
    bench b = {0};
    b.ctx = tg_ctx_new();
    tg_ctx_set_threads(b.ctx, 1);
    tg_rnn_config c = tg_rnn_defaults(TG_RNN_LSTM, INPUTS, HIDDEN);
    b.rnn = tg_rnn_new(b.ctx, "lstm", &c);
    b.head = tg_linear_new(b.ctx, "head", HIDDEN, 1, true, NULL, 3);
    b.x = tg_zeros(b.ctx, TG_SHAPE(BATCH, STEPS, INPUTS));
    b.y = tg_zeros(b.ctx, TG_SHAPE(BATCH, 1));
    b.grad_tape = tg_tape_new(b.ctx);
    b.hvp_tape = tg_tape_new(b.ctx);
    if (!b.rnn || !b.head || !b.x || !b.y || !b.grad_tape || !b.hvp_tape) fail(&b);
    tg_fill_normal(b.x, 0, 1, 7);
    tg_fill_normal(b.y, 0, 1, 8);
    b.n = tg_module_params(b.rnn, b.params, MAX_PARAMS);
    b.n += tg_module_params(b.head, b.params + b.n, MAX_PARAMS - b.n);
    tg_rng rng;
    tg_rng_seed(&rng, 5);
    for (int i = 0; i < b.n; i++) {
        b.v[i] = malloc((size_t)b.params[i]->size * sizeof(float));
        b.hv[i] = malloc((size_t)b.params[i]->size * sizeof(float));
        if (!b.v[i] || !b.hv[i]) return 1;
        for (int64_t j = 0; j < b.params[i]->size; j++) b.v[i][j] = (float)tg_rng_normal(&rng);
    }
    gradient_step(&b); /* warm: arenas, pools */
    hvp_step(&b);
    double grad_s[ROUNDS], hvp_s[ROUNDS], ratio[ROUNDS];
    for (int round = 0; round < ROUNDS; round++) {
        double start = bench_now_seconds();
        for (int s = 0; s < STEPS_PER_ROUND; s++) gradient_step(&b);
        double middle = bench_now_seconds();
        for (int s = 0; s < STEPS_PER_ROUND; s++) hvp_step(&b);
        grad_s[round] = (middle - start) / STEPS_PER_ROUND;
        hvp_s[round] = (bench_now_seconds() - middle) / STEPS_PER_ROUND;
        ratio[round] = hvp_s[round] / grad_s[round];
    }
    bench_timing g = bench_summarize(grad_s, ROUNDS), h = bench_summarize(hvp_s, ROUNDS);
    bench_timing r = bench_summarize(ratio, ROUNDS);
    printf("LSTM h%d T%d b%d in%d, linear head, 1 thread: ms per step, median of %d interleaved rounds "
           "of %d steps [min-max]\n", HIDDEN, STEPS, BATCH, INPUTS, ROUNDS, STEPS_PER_ROUND);
    printf("  gradient (record + backward)  %8.3f ms [%.3f-%.3f]\n", g.median * 1e3, g.min * 1e3, g.max * 1e3);
    printf("  HVP (record + tg_hvp)         %8.3f ms [%.3f-%.3f]\n", h.median * 1e3, h.min * 1e3, h.max * 1e3);
    printf("  HVP / gradient: %.3f (medians), %.3f (median of the rounds' ratios)\n", h.median / g.median,
           r.median);
    printf("  tape peak: gradient %.2f MB, HVP %.2f MB\n", tg_tape_bytes_peak(b.grad_tape) / 1e6,
           tg_tape_bytes_peak(b.hvp_tape) / 1e6);
    for (int i = 0; i < b.n; i++) {
        free(b.v[i]);
        free(b.hv[i]);
    }
    tg_tape_free(b.grad_tape);
    tg_tape_free(b.hvp_tape);
    tg_module_free(b.rnn);
    tg_module_free(b.head);
    tg_ctx_free(b.ctx);
    return 0;
}
