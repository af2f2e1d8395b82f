/*
 * bench/bench_models.c — training steps of the issue-14 MLP workloads, side by side with a
 * plain C reference written here (same FLOPs, no framework, the same GEMM kernels), in one run:
 *
 *   the scalar chain y = tanh(1.01 y), 1,000 times, forward and backward (ns per op), recorded
 *   every pass and recorded once then replayed (tg_tape_replay);
 *   MLP d4 w32 b16, MLP d20 w256 b64, MLP d4 w1024 b256: depth = linear layers, 64 inputs,
 *   10 classes, sigmoid between layers, softmax cross-entropy, SGD lr 0.01;
 *   sgemm 1024^3 through tapegrad's entry point against one call of the backend.
 *
 * Rounds interleave tapegrad at 1 thread (recorded every step, then replayed), the reference
 * (1 thread: the backend called whole, on this thread), and tapegrad at 2 threads; each figure is the median over rounds with the
 * min-max beside it. Both start from the same weights: their first losses are printed and must
 * agree. Pin with `taskset -c 1` for one-thread figures (the 2-thread figure then shares a core:
 * run unpinned for it). `bench_models QUICK` runs fewer rounds; `bench_models anomaly` only the
 * anomaly-mode comparison (off, counts only, full); `bench_models chain` and `chain-replayed`
 * one chain figure each (for torch_compare.py and callgrind).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_timing.h"
#include "ops/ops.h"

#define ROUNDS 7
#define IN 64
#define CLASSES 10
#define MAX_LAYERS 20
#define DENORMAL_STD 0.001f /* the weights' std in bench_denormals */



static void backend_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float *a,
                         int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    if (!tgi_blas_gemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc))
        tgi_gemm_portable(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

/* ---- the plain C reference ----------------------------------------------------------------- */

typedef struct reference {
    int depth;
    int64_t batch, dims[MAX_LAYERS + 1];          /* dims[0] = IN, dims[depth] = CLASSES */
    float *w[MAX_LAYERS], *b[MAX_LAYERS], *dw[MAX_LAYERS], *db[MAX_LAYERS];
    float *h[MAX_LAYERS + 1];                      /* h[0] = x; h[l] = layer l's output */
    float *g, *g_prev;                             /* gradient of the current layer's output */
    const float *labels;
} reference;

static float *floats(int64_t n) {
    float *p = malloc((size_t)n * sizeof(float));
    if (!p) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    return p;
}

static float reference_step(reference *r, float lr) {
    int64_t B = r->batch;
    for (int l = 0; l < r->depth; l++) {
        int64_t in = r->dims[l], out = r->dims[l + 1];
        float *y = r->h[l + 1];
        for (int64_t i = 0; i < B; i++) memcpy(y + i * out, r->b[l], (size_t)out * sizeof(float));
        backend_gemm(false, true, B, out, in, r->h[l], in, r->w[l], in, 1.0f, y, out);
        if (l < r->depth - 1)
            for (int64_t i = 0; i < B * out; i++) y[i] = tgi_sigmoid(y[i]);
    }
    /* softmax cross-entropy, mean over the batch; g = (softmax - onehot) / B */
    const float *logits = r->h[r->depth];
    double loss = 0.0;
    for (int64_t i = 0; i < B; i++) {
        const float *z = logits + i * CLASSES;
        float max;
        float log_sum = tgi_row_log_sum(z, CLASSES, &max);
        int label = (int)r->labels[i];
        loss -= (double)(z[label] - max - log_sum);
        for (int c = 0; c < CLASSES; c++)
            r->g[i * CLASSES + c] = (expf(z[c] - max - log_sum) - (c == label)) / (float)B;
    }
    for (int l = r->depth - 1; l >= 0; l--) {
        int64_t in = r->dims[l], out = r->dims[l + 1];
        backend_gemm(true, false, out, in, B, r->g, out, r->h[l], in, 0.0f, r->dw[l], in);
        for (int64_t j = 0; j < out; j++) r->db[l][j] = 0.0f;
        for (int64_t i = 0; i < B; i++)
            for (int64_t j = 0; j < out; j++) r->db[l][j] += r->g[i * out + j];
        if (l > 0) {
            backend_gemm(false, false, B, in, out, r->g, out, r->w[l], in, 0.0f, r->g_prev, in);
            const float *s = r->h[l];
            for (int64_t i = 0; i < B * in; i++) r->g_prev[i] *= s[i] * (1.0f - s[i]);
            float *t = r->g;
            r->g = r->g_prev;
            r->g_prev = t;
        }
    }
    for (int l = 0; l < r->depth; l++) {
        int64_t n = r->dims[l] * r->dims[l + 1];
        for (int64_t i = 0; i < n; i++) r->w[l][i] -= lr * r->dw[l][i];
        for (int64_t j = 0; j < r->dims[l + 1]; j++) r->b[l][j] -= lr * r->db[l][j];
    }
    return (float)(loss / (double)B);
}

/* ---- tapegrad ------------------------------------------------------------------------------ */

typedef struct framework {
    tg_ctx *ctx;
    tg_tape *tape;
    tg_module *mlp;
    tg_optimizer *opt;
    tg_tensor *x, *labels;
    bool replay;                                   /* record once, then tg_tape_replay */
    tg_tensor *loss;                               /* the recorded loss, when replaying */
} framework;

static void die(tg_ctx *ctx) {
    fprintf(stderr, "bench: %s\n", tg_errmsg(ctx));
    exit(1);
}

static float framework_step(framework *f) {
    tg_tensor *loss = f->loss;
    if (f->replay && loss) {
        if (tg_tape_replay(f->tape) != TG_OK) die(f->ctx);
    } else {
        tg_tape_reset(f->tape);
        loss = tg_cross_entropy(f->tape, tg_module_forward(f->mlp, f->tape, f->x), f->labels);
        if (f->replay) f->loss = loss;
    }
    if (!loss || tg_backward(f->tape, loss) != TG_OK || tg_optimizer_step_zero_grad(f->opt) != TG_OK)
        die(f->ctx);
    return loss->data[0];
}

static void framework_new_init(framework *f, int depth, int64_t width, int64_t batch, int threads,
                               tg_init init) {
    memset(f, 0, sizeof *f);
    f->ctx = tg_ctx_new();
    if (!f->ctx || tg_ctx_set_threads(f->ctx, threads) != TG_OK) die(f->ctx);
    f->tape = tg_tape_new(f->ctx);
    tg_mlp_config c = {.in = IN, .out = CLASSES, .width = width, .depth = depth,
                       .activation = TG_ACT_SIGMOID, .init = init, .seed = 3};
    f->mlp = tg_mlp_new(f->ctx, "mlp", &c);
    tg_tensor *params[2 * MAX_LAYERS];
    int n = tg_module_params(f->mlp, params, 2 * MAX_LAYERS);
    f->opt = tg_optimizer_new(f->ctx, params, n, &(tg_optimizer_config){.kind = TG_OPT_SGD, .lr = 0.01f});
    f->x = tg_zeros(f->ctx, TG_SHAPE(batch, IN));
    f->labels = tg_zeros(f->ctx, TG_SHAPE(batch));
    if (!f->tape || !f->mlp || !f->opt || !f->x || !f->labels) die(f->ctx);
    tg_fill_normal(f->x, 0, 1, 99);
    for (int64_t i = 0; i < batch; i++) f->labels->data[i] = (float)(i % CLASSES);
}

static void framework_new(framework *f, int depth, int64_t width, int64_t batch, int threads) {
    framework_new_init(f, depth, width, batch, threads, tg_init_xavier(TG_ACT_SIGMOID));
}

static void framework_free(framework *f) {
    tg_optimizer_free(f->opt);
    tg_module_free(f->mlp);
    tg_tape_free(f->tape);
    tg_ctx_free(f->ctx);
}

/* The reference, starting from the framework's weights and data. */
static void reference_from(reference *r, const framework *f, int depth, int64_t width, int64_t batch) {
    memset(r, 0, sizeof *r);
    r->depth = depth;
    r->batch = batch;
    tg_tensor *params[2 * MAX_LAYERS];
    tg_module_params(f->mlp, params, 2 * MAX_LAYERS); /* weight, bias per layer */
    int64_t widest = IN > CLASSES ? IN : CLASSES;
    for (int l = 0; l <= depth; l++) {
        r->dims[l] = l == 0 ? IN : l == depth ? CLASSES : width;
        if (r->dims[l] > widest) widest = r->dims[l];
    }
    r->h[0] = f->x->data;
    for (int l = 0; l < depth; l++) {
        int64_t in = r->dims[l], out = r->dims[l + 1];
        r->w[l] = floats(in * out);
        r->b[l] = floats(out);
        r->dw[l] = floats(in * out);
        r->db[l] = floats(out);
        r->h[l + 1] = floats(batch * out);
        memcpy(r->w[l], params[2 * l]->data, (size_t)(in * out) * sizeof(float));
        memcpy(r->b[l], params[2 * l + 1]->data, (size_t)out * sizeof(float));
    }
    r->g = floats(batch * widest);
    r->g_prev = floats(batch * widest);
    r->labels = f->labels->data;
}

static void reference_free(reference *r) {
    for (int l = 0; l < r->depth; l++) {
        free(r->w[l]);
        free(r->b[l]);
        free(r->dw[l]);
        free(r->db[l]);
        free(r->h[l + 1]);
    }
    free(r->g);
    free(r->g_prev);
}

static void print_summary(const char *what, bench_timing s, double unit, const char *unit_name) {
    printf("  %-22s %9.3f %s  (min %.3f, max %.3f)\n", what, s.median * unit, unit_name,
           s.min * unit, s.max * unit);
}

static void bench_mlp(int depth, int64_t width, int64_t batch, int rounds) {
    framework one, two, replayed;
    framework_new(&one, depth, width, batch, 1);
    framework_new(&two, depth, width, batch, 2);
    framework_new(&replayed, depth, width, batch, 1);
    replayed.replay = true;
    reference ref;
    reference_from(&ref, &one, depth, width, batch);
    float loss_framework = framework_step(&one), loss_reference = reference_step(&ref, 0.01f);
    framework_step(&two);
    framework_step(&replayed);
    double start = bench_now_seconds(); /* about 0.2 s of steps per measurement */
    for (int s = 0; s < 3; s++) framework_step(&one);
    int steps = (int)(0.2 / ((bench_now_seconds() - start) / 3)) + 3;
    double t1[ROUNDS], tr[ROUNDS], t2[ROUNDS], tp[ROUNDS], ratio[ROUNDS], ratio2[ROUNDS];
    double ratio_replayed[ROUNDS];
    for (int round = 0; round < rounds; round++) {
        start = bench_now_seconds();
        for (int s = 0; s < steps; s++) framework_step(&one);
        t1[round] = (bench_now_seconds() - start) / steps;
        start = bench_now_seconds();
        for (int s = 0; s < steps; s++) framework_step(&replayed);
        tp[round] = (bench_now_seconds() - start) / steps;
        start = bench_now_seconds();
        for (int s = 0; s < steps; s++) reference_step(&ref, 0.01f);
        tr[round] = (bench_now_seconds() - start) / steps;
        start = bench_now_seconds();
        for (int s = 0; s < steps; s++) framework_step(&two);
        t2[round] = (bench_now_seconds() - start) / steps;
        ratio[round] = t1[round] / tr[round];
        ratio2[round] = t2[round] / t1[round];
        ratio_replayed[round] = tp[round] / tr[round];
    }
    printf("MLP d%d w%lld b%lld (sigmoid, softmax CE, SGD): first losses %.7f (tapegrad) %.7f "
           "(plain C); %d steps x %d rounds\n", depth, (long long)width, (long long)batch,
           loss_framework, loss_reference, steps, rounds);
    print_summary("tapegrad, 1 thread", bench_summarize(t1, rounds), 1e3, "ms");
    print_summary("plain C + same GEMM", bench_summarize(tr, rounds), 1e3, "ms");
    print_summary("tapegrad, 2 threads", bench_summarize(t2, rounds), 1e3, "ms");
    print_summary("tapegrad replayed, 1T", bench_summarize(tp, rounds), 1e3, "ms");
    print_summary("ratio 1T / plain C", bench_summarize(ratio, rounds), 1, "x");
    print_summary("ratio 2T / 1T", bench_summarize(ratio2, rounds), 1, "x");
    print_summary("ratio replayed / plain C", bench_summarize(ratio_replayed, rounds), 1, "x");
    reference_free(&ref);
    framework_free(&one);
    framework_free(&two);
    framework_free(&replayed);
}

/* The d20 w256 b64 sigmoid MLP started from N(0, DENORMAL_STD^2): its backward gradients shrink
 * ~250x per layer, through the denormal range, to zero. Flush-to-zero off (the default) and on. */
static void bench_denormals(int rounds) {
    framework off, on;
    framework_new_init(&off, 20, 256, 64, 1, tg_init_normal(0.0f, DENORMAL_STD));
    framework_new_init(&on, 20, 256, 64, 1, tg_init_normal(0.0f, DENORMAL_STD));
    double t_off[ROUNDS], t_on[ROUNDS], ratio[ROUNDS];
    const int steps = 10;
    for (int round = 0; round < rounds; round++) {
        double times[2];
        for (int mode = 0; mode < 2; mode++) {
            framework *f = mode ? &on : &off;
            tg_ctx_set_flush_denormals(f->ctx, mode == 1);
            double start = bench_now_seconds();
            for (int s = 0; s < steps; s++) framework_step(f);
            times[mode] = (bench_now_seconds() - start) / steps;
            tg_ctx_set_flush_denormals(f->ctx, false); /* this thread's mode, for the next one */
        }
        t_off[round] = times[0];
        t_on[round] = times[1];
        ratio[round] = times[1] / times[0];
    }
    printf("MLP d20 w256 b64 sigmoid from N(0, %g^2), 1 thread: flush denormals\n", DENORMAL_STD);
    print_summary("off (default)", bench_summarize(t_off, rounds), 1e3, "ms");
    print_summary("on", bench_summarize(t_on, rounds), 1e3, "ms");
    print_summary("ratio on / off", bench_summarize(ratio, rounds), 1, "x");
    framework_free(&off);
    framework_free(&on);
}

/* Anomaly mode on the d20 w256 b64 step, 1 thread: off, counts only, full; the same steps in
 * interleaved rounds, so the machine's drift falls on all three alike. */
static void bench_anomaly(int rounds) {
    static const tg_anomaly_level levels[3] = {TG_ANOMALY_OFF, TG_ANOMALY_COUNTS, TG_ANOMALY_FULL};
    framework f[3];
    for (int m = 0; m < 3; m++) {
        framework_new(&f[m], 20, 256, 64, 1);
        if (tg_set_anomaly_level(f[m].ctx, levels[m]) != TG_OK) die(f[m].ctx);
        framework_step(&f[m]);
    }
    const int steps = 20;
    double t[3][ROUNDS], counts[ROUNDS], full[ROUNDS];
    for (int round = 0; round < rounds; round++) {
        for (int m = 0; m < 3; m++) {
            double start = bench_now_seconds();
            for (int s = 0; s < steps; s++) framework_step(&f[m]);
            t[m][round] = (bench_now_seconds() - start) / steps;
        }
        counts[round] = t[1][round] / t[0][round];
        full[round] = t[2][round] / t[0][round];
    }
    printf("MLP d20 w256 b64 sigmoid, 1 thread: anomaly mode; %d steps x %d rounds\n", steps, rounds);
    print_summary("off", bench_summarize(t[0], rounds), 1e3, "ms");
    print_summary("counts only", bench_summarize(t[1], rounds), 1e3, "ms");
    print_summary("full", bench_summarize(t[2], rounds), 1e3, "ms");
    print_summary("ratio counts / off", bench_summarize(counts, rounds), 1, "x");
    print_summary("ratio full / off", bench_summarize(full, rounds), 1, "x");
    for (int m = 0; m < 3; m++) framework_free(&f[m]);
}

static void bench_sgemm(int rounds) {
    const int64_t n = 1024;
    float *a = floats(n * n), *b = floats(n * n), *c = floats(n * n);
    for (int64_t i = 0; i < n * n; i++) {
        a[i] = (float)(i % 7) * 0.1f;
        b[i] = (float)(i % 5) * 0.1f;
    }
    tg_ctx *ctx = tg_ctx_new();
    double direct[ROUNDS], entry1[ROUNDS], entry2[ROUNDS];
    double flops = 2.0 * (double)n * n * n;
    for (int round = 0; round < rounds; round++) {
        double start = bench_now_seconds();
        backend_gemm(false, false, n, n, n, a, n, b, n, 0.0f, c, n);
        direct[round] = flops / (bench_now_seconds() - start) / 1e9;
        tg_ctx_set_threads(ctx, 1);
        start = bench_now_seconds();
        tgi_gemm(ctx, false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        entry1[round] = flops / (bench_now_seconds() - start) / 1e9;
        tg_ctx_set_threads(ctx, 2);
        start = bench_now_seconds();
        tgi_gemm(ctx, false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        entry2[round] = flops / (bench_now_seconds() - start) / 1e9;
    }
    printf("sgemm 1024^3, GFLOP/s:\n");
    print_summary("backend, one call", bench_summarize(direct, rounds), 1, "GFLOP/s");
    print_summary("tapegrad, 1 thread", bench_summarize(entry1, rounds), 1, "GFLOP/s");
    print_summary("tapegrad, 2 threads", bench_summarize(entry2, rounds), 1, "GFLOP/s");
    tg_ctx_free(ctx);
    free(a);
    free(b);
    free(c);
}

/* ---- the scalar chain: y = tanh(1.01 y), 1,000 times, forward and backward --------------- */

#define CHAIN 1000

typedef struct chain {
    tg_ctx *ctx;
    tg_tape *tape;
    tg_tensor *x;
    bool replay;                                   /* record once, then tg_tape_replay */
    tg_tensor *y;                                  /* the recorded end, when replaying */
} chain;

static float chain_pass(chain *c) {
    tg_tensor *y = c->y;
    if (c->replay && y) {
        if (tg_tape_replay(c->tape) != TG_OK) die(c->ctx);
    } else {
        tg_tape_reset(c->tape);
        y = c->x;
        for (int i = 0; i < CHAIN; i++) y = tg_tanh(c->tape, tg_scale(c->tape, y, 1.01f));
        if (c->replay) c->y = y;
    }
    if (!y || tg_backward(c->tape, y) != TG_OK) die(c->ctx);
    float g = c->x->grad[0];
    tg_zero_grad(c->x);
    return g;
}

static void chain_new(chain *c) {
    memset(c, 0, sizeof *c);
    c->ctx = tg_ctx_new();
    c->tape = tg_tape_new(c->ctx);
    c->x = tg_scalar(c->ctx, 0.5f);
    if (!c->tape || !c->x || tg_set_requires_grad(c->x, true) != TG_OK) die(c->ctx);
}

static void chain_free(chain *c) {
    tg_tape_free(c->tape);
    tg_ctx_free(c->ctx);
}

/* The same chain by hand: the forward keeps every y, the backward multiplies the derivatives. */
static float reference_chain(float x, float *ys) {
    float y = x;
    for (int i = 0; i < CHAIN; i++) ys[i] = y = tanhf(1.01f * y);
    float g = 1.0f;
    for (int i = CHAIN - 1; i >= 0; i--) g *= (1.0f - ys[i] * ys[i]) * 1.01f;
    return g;
}

/* Seconds per pass of `passes` passes. */
static double time_chain(chain *c, int passes, float *grad) {
    double start = bench_now_seconds();
    for (int p = 0; p < passes; p++) *grad = chain_pass(c);
    return (bench_now_seconds() - start) / passes;
}

static void bench_chain(int rounds) {
    chain c, replayed;
    chain_new(&c);
    chain_new(&replayed);
    replayed.replay = true;
    static float ys[CHAIN];
    double t[ROUNDS], tp[ROUNDS], tr[ROUNDS], ratio[ROUNDS], ratio_replayed[ROUNDS];
    const int passes = 300;
    float grad = 0.0f, grad_replayed = 0.0f, grad_reference = 0.0f;
    volatile float start_x = 0.5f; /* read each pass: the compiler cannot compute the chain once */
    time_chain(&c, 20, &grad); /* warm-up: the first step grows the tape's chunks */
    time_chain(&replayed, 20, &grad_replayed);
    for (int round = 0; round < rounds; round++) {
        t[round] = time_chain(&c, passes, &grad) / (2 * CHAIN);
        tp[round] = time_chain(&replayed, passes, &grad_replayed) / (2 * CHAIN);
        double start = bench_now_seconds();
        for (int p = 0; p < passes; p++) grad_reference = reference_chain(start_x, ys);
        tr[round] = (bench_now_seconds() - start) / passes / (2 * CHAIN);
        ratio[round] = t[round] / tr[round];
        ratio_replayed[round] = tp[round] / tr[round];
    }
    printf("scalar chain, %d x (scale, tanh), forward+backward: dy/dx %.7g (tapegrad) %.7g "
           "(replayed) %.7g (plain C)\n", CHAIN, grad, grad_replayed, grad_reference);
    print_summary("tapegrad, per op", bench_summarize(t, rounds), 1e9, "ns");
    print_summary("replayed, per op", bench_summarize(tp, rounds), 1e9, "ns");
    print_summary("plain C, per op", bench_summarize(tr, rounds), 1e9, "ns");
    print_summary("ratio", bench_summarize(ratio, rounds), 1, "x");
    print_summary("ratio replayed", bench_summarize(ratio_replayed, rounds), 1, "x");
    chain_free(&c);
    chain_free(&replayed);
}

/* The matrix products' FLOPs of one training step (2mnk each): every layer's forward and weight
 * gradient, and the input gradient of every layer but the first (the data needs none). */
static double mlp_step_flops(int depth, int64_t width, int64_t batch) {
    double flops = 0.0;
    for (int l = 0; l < depth; l++) {
        double in = l == 0 ? IN : (double)width, out = l == depth - 1 ? CLASSES : (double)width;
        flops += 2.0 * (double)batch * in * out * (l == 0 ? 2 : 3);
    }
    return flops;
}

/* `bench_models mlp DEPTH WIDTH BATCH THREADS [SECONDS]`: one measurement of tapegrad alone,
 * as "ms_per_step X", for bench/torch_compare.py to interleave with PyTorch; after it, the CPU
 * time per step and the products' GFLOP/s (mlp_step_flops) by the wall clock and by the CPU
 * time (on a shared machine the wall clock also counts the neighbours' time slices). SECONDS
 * (0.2 unless given) is how long to measure: longer for a profiler. */
static int one_measurement(int argc, char **argv) {
    int depth = atoi(argv[2]), threads = atoi(argv[5]);
    int64_t width = atoll(argv[3]), batch = atoll(argv[4]);
    if (depth < 1 || depth > MAX_LAYERS || width < 1 || batch < 1 || threads < 1) {
        fprintf(stderr, "usage: bench_models mlp DEPTH(1-%d) WIDTH BATCH THREADS\n", MAX_LAYERS);
        return 2;
    }
    framework f;
    framework_new(&f, depth, width, batch, threads);
    double start = bench_now_seconds();
    for (int s = 0; s < 3; s++) framework_step(&f);
    double budget = argc > 6 ? atof(argv[6]) : 0.2;
    int steps = (int)(budget / ((bench_now_seconds() - start) / 3)) + 3;
    start = bench_now_seconds();
    double cpu_start = bench_cpu_seconds();
    for (int s = 0; s < steps; s++) framework_step(&f);
    double seconds = (bench_now_seconds() - start) / steps;
    double cpu_seconds = (bench_cpu_seconds() - cpu_start) / steps;
    double flops = mlp_step_flops(depth, width, batch);
    printf("ms_per_step %.6f cpu_ms_per_step %.6f gflops %.2f cpu_gflops %.2f\n", seconds * 1e3,
           cpu_seconds * 1e3, flops / seconds * 1e-9, flops / cpu_seconds * 1e-9);
    framework_free(&f);
    return 0;
}

int main(int argc, char **argv) {
    if ((argc == 6 || argc == 7) && strcmp(argv[1], "mlp") == 0) return one_measurement(argc, argv);
    bool replayed = argc == 2 && strcmp(argv[1], "chain-replayed") == 0;
    if (argc == 2 && (strcmp(argv[1], "chain") == 0 || replayed)) { /* one measurement, for
                                                                     torch_compare.py */
        chain c;
        chain_new(&c);
        c.replay = replayed;
        float grad;
        time_chain(&c, 50, &grad);
        printf("ns_per_op %.3f\n", time_chain(&c, 300, &grad) / (2 * CHAIN) * 1e9);
        chain_free(&c);
        return 0;
    }
    int rounds = argc > 1 && strcmp(argv[1], "QUICK") == 0 ? 3 : ROUNDS;
    if (argc == 2 && strcmp(argv[1], "anomaly") == 0) { /* that comparison alone */
        bench_anomaly(ROUNDS);
        return 0;
    }
    printf("matrix products: %s\n", tg_gemm_backend());
    bench_chain(rounds);
    bench_sgemm(rounds);
    bench_mlp(4, 32, 16, rounds);
    bench_mlp(20, 256, 64, rounds);
    bench_mlp(4, 1024, 256, rounds);
    bench_denormals(rounds);
    bench_anomaly(rounds);
    return 0;
}
