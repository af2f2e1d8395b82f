/*
 * bench/bench_conv.c — convolution forward + backward at one thread, against bench/torch_conv.py
 * (the same models in PyTorch):
 *   lenet    a LeNet step: batch 64 of 1x8x8, conv 1->6 3x3 pad 1, relu, maxpool 2,
 *            conv 6->16 3x3 pad 1, relu, maxpool 2, linear 64->120->84->10, cross entropy;
 *   block8   one ResNet basic block: batch 32, 16 channels, 8x8: conv 3x3 pad 1, batch norm,
 *            relu, conv 3x3 pad 1, batch norm, + identity, relu, mean (each batch norm with
 *            what follows it as one tg_batch_norm_relu);
 *   block32  the same block at 32x32.
 * Each figure is the median over ROUNDS rounds of ms per step (forward, backward, zeroing the
 * gradients). `bench_conv lenet` runs one workload (the comparison script interleaves them with
 * PyTorch's); no argument runs all three; a second argument sets the thread count (default 1). Run with `zig build bench -Doptimize=ReleaseFast`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_timing.h"
#include "tapegrad.h"

#define ROUNDS 7

/* Wall time, and this process's CPU time: on a shared machine the CPU time is the steadier
 * figure (it leaves out the time other programs held the core). */
static double seconds(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}


typedef struct model {
    tg_ctx *ctx;
    tg_tape *tape;
    tg_tensor *params[16];
    int n_params;
    tg_tensor *buffers[4];   /* batch norm running statistics */
    int64_t batch, channels, size;
    float *input, *labels;
} model;

static tg_tensor *param(model *m, int ndim, const int64_t *shape, float std) {
    tg_tensor *t = tg_zeros(m->ctx, ndim, shape);
    if (!t) return NULL;
    if (std > 0) tg_fill_normal(t, 0.0f, std, (uint64_t)m->n_params + 1);
    else tg_fill_uniform(t, 1.0f, 1.0f, 0); /* batch norm's gamma */
    tg_set_requires_grad(t, true);
    m->params[m->n_params++] = t;
    return t;
}

/* ---- the models ---------------------------------------------------------------------------- */

static tg_tensor *lenet_loss(model *m) {
    tg_tape *t = m->tape;
    tg_tensor **p = m->params;
    tg_conv2d_opts same = {.pad_h = 1, .pad_w = 1};
    tg_tensor *h = tg_tape_from_data(t, TG_SHAPE(m->batch, 1, 8, 8), m->input);
    h = tg_max_pool2d(t, tg_relu(t, tg_conv2d(t, h, p[0], p[1], &same)), 2, 2, 0, 0, 0, 0);
    h = tg_max_pool2d(t, tg_relu(t, tg_conv2d(t, h, p[2], p[3], &same)), 2, 2, 0, 0, 0, 0);
    h = tg_relu(t, tg_linear(t, tg_flatten(t, h), p[4], p[5]));
    h = tg_relu(t, tg_linear(t, h, p[6], p[7]));
    h = tg_linear(t, h, p[8], p[9]);
    return tg_cross_entropy(t, h, tg_tape_from_data(t, TG_SHAPE(m->batch), m->labels));
}

static void lenet_setup(model *m) {
    m->batch = 64, m->channels = 1, m->size = 8;
    param(m, TG_SHAPE(6, 1, 3, 3), 0.3f), param(m, TG_SHAPE(6), 0.1f);
    param(m, TG_SHAPE(16, 6, 3, 3), 0.15f), param(m, TG_SHAPE(16), 0.1f);
    param(m, TG_SHAPE(120, 64), 0.1f), param(m, TG_SHAPE(120), 0.1f);
    param(m, TG_SHAPE(84, 120), 0.1f), param(m, TG_SHAPE(84), 0.1f);
    param(m, TG_SHAPE(10, 84), 0.1f), param(m, TG_SHAPE(10), 0.1f);
}

static tg_tensor *block_loss(model *m) {
    tg_tape *t = m->tape;
    tg_tensor **p = m->params, **b = m->buffers;
    tg_conv2d_opts same = {.pad_h = 1, .pad_w = 1};
    tg_tensor *x = tg_tape_from_data(t, TG_SHAPE(m->batch, m->channels, m->size, m->size), m->input);
    tg_set_requires_grad(x, true); /* a block inside a network passes its gradient on */
    /* relu(bn(conv(x))) and relu(bn(conv(h)) + x): batch norm, residual add and ReLU fused */
    tg_tensor *h = tg_conv2d(t, x, p[0], NULL, &same);
    h = tg_batch_norm_relu(t, h, p[1], p[2], b[0], b[1], NULL, 0.1f, 1e-5f, true);
    h = tg_conv2d(t, h, p[3], NULL, &same);
    h = tg_batch_norm_relu(t, h, p[4], p[5], b[2], b[3], x, 0.1f, 1e-5f, true);
    return tg_mean(t, h);
}

static void block_setup(model *m, int64_t size) {
    m->batch = 32, m->channels = 16, m->size = size;
    for (int conv = 0; conv < 2; conv++) {
        param(m, TG_SHAPE(16, 16, 3, 3), 0.12f);
        param(m, TG_SHAPE(16), 0.0f);
        tg_tensor *beta = param(m, TG_SHAPE(16), 0.1f);
        (void)beta;
        m->buffers[2 * conv] = tg_zeros(m->ctx, TG_SHAPE(16));
        m->buffers[2 * conv + 1] = tg_zeros(m->ctx, TG_SHAPE(16));
        tg_fill_uniform(m->buffers[2 * conv + 1], 1.0f, 1.0f, 0);
    }
}

/* ---- timing -------------------------------------------------------------------------------- */

static int step(model *m, tg_tensor *(*loss_fn)(model *)) {
    tg_tape_reset(m->tape);
    tg_tensor *loss = loss_fn(m);
    if (!loss || tg_backward(m->tape, loss) != TG_OK) {
        fprintf(stderr, "bench_conv: %s\n", tg_errmsg(m->ctx));
        return 1;
    }
    for (int i = 0; i < m->n_params; i++) tg_zero_grad(m->params[i]);
    return 0;
}

static int run(const char *name, const char *what, int64_t size, int steps, int threads) {
    model m = {0};
    m.ctx = tg_ctx_new();
    tg_ctx_set_threads(m.ctx, threads);
    m.tape = tg_tape_new(m.ctx);
    bool lenet = size == 0;
    if (lenet) lenet_setup(&m);
    else block_setup(&m, size);
    int64_t inputs = m.batch * m.channels * (lenet ? 64 : size * size);
    m.input = malloc((size_t)inputs * sizeof(float));
    m.labels = malloc((size_t)m.batch * sizeof(float));
    for (int64_t i = 0; i < inputs; i++) m.input[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f;
    for (int64_t i = 0; i < m.batch; i++) m.labels[i] = (float)(i % 10);
    tg_tensor *(*loss_fn)(model *) = lenet ? lenet_loss : block_loss;
    double wall[ROUNDS], cpu[ROUNDS];
    int failed = step(&m, loss_fn) || step(&m, loss_fn); /* warm-up: arena chunks, caches */
    for (int round = 0; round < ROUNDS && !failed; round++) {
        double start = seconds(CLOCK_MONOTONIC), start_cpu = seconds(CLOCK_PROCESS_CPUTIME_ID);
        for (int s = 0; s < steps && !failed; s++) failed = step(&m, loss_fn);
        wall[round] = (seconds(CLOCK_MONOTONIC) - start) / steps;
        cpu[round] = (seconds(CLOCK_PROCESS_CPUTIME_ID) - start_cpu) / steps;
    }
    if (!failed) {
        qsort(wall, ROUNDS, sizeof *wall, bench_compare_doubles);
        qsort(cpu, ROUNDS, sizeof *cpu, bench_compare_doubles);
        printf("conv %-8s %s, forward+backward, %d thread%s: %.3f ms per step (median of %d "
               "rounds of %d; min %.3f, max %.3f); cpu %.3f ms per step\n", name, what, threads,
               threads == 1 ? "" : "s", 1e3 * wall[ROUNDS / 2], ROUNDS, steps, 1e3 * wall[0],
               1e3 * wall[ROUNDS - 1], 1e3 * cpu[ROUNDS / 2]);
        if (!lenet) {
            /* the block's six convolution products (forward, dX, dW of both), 2 N O HW K each,
             * over the whole step's time; one Zen 3 core: 32 FLOP/cycle at 3.2 GHz */
            double flop = 6.0 * 2.0 * (double)m.batch * 16 * (double)(size * size) * 16 * 9;
            printf("conv %-8s %.1f GFLOP/s by wall time (%.0f%% of %d x 102.6), %.1f by cpu time\n",
                   name, flop / wall[ROUNDS / 2] * 1e-9, 100.0 * flop / wall[ROUNDS / 2] * 1e-9 /
                   (102.6 * threads), threads, flop / cpu[ROUNDS / 2] * 1e-9);
        }
    }
    free(m.input);
    free(m.labels);
    tg_tape_free(m.tape);
    tg_ctx_free(m.ctx);
    return failed;
}

int main(int argc, char **argv) {
    static const struct {
        const char *name, *what;
        int64_t size;
        int steps;
    } workloads[] = {
        {"lenet", "LeNet step (batch 64, 1x8x8)", 0, 100},
        {"block8", "ResNet basic block (batch 32, 16 ch, 8x8)", 8, 50},
        {"block32", "ResNet basic block (batch 32, 16 ch, 32x32)", 32, 5},
    };
    printf("gemm backend: %s\n", tg_gemm_backend());
    int failed = 0, matched = 0, threads = argc > 2 ? atoi(argv[2]) : 1;
    if (threads < 1) threads = 1;
    for (size_t w = 0; w < sizeof workloads / sizeof workloads[0]; w++) {
        if (argc > 1 && strcmp(argv[1], workloads[w].name) != 0) continue;
        matched++;
        failed |= run(workloads[w].name, workloads[w].what, workloads[w].size, workloads[w].steps,
                      threads);
    }
    if (!matched) fprintf(stderr, "bench_conv: no workload '%s' (lenet, block8, block32)\n", argv[1]);
    return failed || !matched;
}
