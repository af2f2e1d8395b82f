/*
 * bench/bench_curvature.c — what each curvature instrument costs per call, in gradient steps
 * of the same model: the MLP d20 w256 b64 of bench_higher and bench_models (sigmoid, 64 inputs,
 * 10 classes, cross entropy). Per round, interleaved, each of:
 *   gradient     record the step, tg_backward (the unit)
 *   hvp          record the step, tg_hvp (one product: what a Lanczos step costs at least)
 *   top-1 (20)   tg_curvature_top_eigenvalues, k 1, 20 Lanczos steps
 *   top-1 (8)    the same with 8 steps (enough for lambda_max to 7 digits on this model)
 *   trace (10)   tg_curvature_trace, 10 Hutchinson probes
 *   jacobian     tg_jacobian_singular_values of the logits [64,10] w.r.t. the batch [64,64]
 *                (Lanczos on J J^T, 640 dims: 20 steps, then the mean square by 10 probes)
 *   noise scale  tg_gradient_noise_scale over 8 micro-batch gradients (the reduction alone; the
 *                micro-batch gradients are the training step's own)
 * Printed: ms per call (median of ROUNDS rounds, min-max) and its ratio to the gradient's time
 * within each round (median, min-max); the ratio of top-1 to 20 HVPs is the Lanczos
 * bookkeeping (reorthogonalisation, Ritz values) on top of its products.
 * `zig build bench-curvature -Doptimize=ReleaseFast -- [THREADS] [ROUNDS]`; `-- check` compares
 * Lanczos's top eigenvalue on the full-size model with power iteration instead.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_timing.h"
#include "tapegrad.h"

#define MAX_PARAMS 48
#define MAX_ROUNDS 31
#define MICRO 8

static double sum_sq(const float *v, int64_t n) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)v[i] * v[i];
    return sum;
}

typedef struct workload {
    tg_ctx *ctx;
    tg_tape *tape;
    tg_module *model;
    tg_tensor *x, *y;
    tg_tensor *params[MAX_PARAMS];
    int n;
    int64_t dim;
    float *v[MAX_PARAMS], *hv[MAX_PARAMS];
    tg_curvature *curvature, *short_run, *trace;
    tg_jacobian *jacobian;
    float *micro[MICRO];
} workload;

static void die(tg_ctx *ctx) {
    fprintf(stderr, "bench_curvature: %s\n", tg_errmsg(ctx));
    exit(1);
}

static tg_tensor *loss_fn(tg_tape *tape, tg_tensor *const *params, int n, void *user) {
    (void)params, (void)n;
    workload *w = user;
    return tg_cross_entropy(tape, tg_module_forward(w->model, tape, w->x), w->y);
}

static tg_tensor *logits_fn(tg_tape *tape, tg_tensor *input, void *user) {
    workload *w = user;
    return tg_module_forward(w->model, tape, input);
}

static void setup(workload *w, int threads) {
    memset(w, 0, sizeof *w);
    w->ctx = tg_ctx_new();
    if (!w->ctx || tg_ctx_set_threads(w->ctx, threads) != TG_OK) die(w->ctx);
    tg_mlp_config c = {.in = 64, .out = 10, .width = 256, .depth = 20,
                       .activation = TG_ACT_SIGMOID, .seed = 3};
    w->model = tg_mlp_new(w->ctx, "mlp", &c);
    w->x = tg_zeros(w->ctx, TG_SHAPE(64, 64));
    w->y = tg_zeros(w->ctx, TG_SHAPE(64));
    if (!w->model || !w->x || !w->y) die(w->ctx);
    for (int i = 0; i < 64; i++) w->y->data[i] = (float)(i % 10);
    tg_fill_normal(w->x, 0, 1, 7);
    w->n = tg_module_params(w->model, w->params, MAX_PARAMS);
    w->tape = tg_tape_new(w->ctx);
    for (int p = 0; p < w->n; p++) {
        size_t bytes = (size_t)w->params[p]->size * sizeof(float);
        w->dim += w->params[p]->size;
        w->v[p] = malloc(bytes);
        w->hv[p] = malloc(bytes);
        if (!w->v[p] || !w->hv[p]) die(w->ctx);
        tg_rng rng;
        tg_rng_seed(&rng, 100 + (uint64_t)p);
        for (int64_t i = 0; i < w->params[p]->size; i++) w->v[p][i] = tg_rng_uniform(&rng) - 0.5f;
    }
    tg_curvature_config top = tg_curvature_defaults(); /* 20 steps, 10 probes */
    w->curvature = tg_curvature_new(w->ctx, w->params, w->n, &top);
    w->trace = tg_curvature_new(w->ctx, w->params, w->n, &top);
    tg_curvature_config eight = top;
    eight.steps = 8;
    w->short_run = tg_curvature_new(w->ctx, w->params, w->n, &eight);
    w->jacobian = tg_jacobian_new(w->ctx, &top);
    if (!w->curvature || !w->short_run || !w->trace || !w->jacobian) die(w->ctx);
    for (int m = 0; m < MICRO; m++) {
        w->micro[m] = malloc((size_t)w->dim * sizeof(float));
        if (!w->micro[m]) die(w->ctx);
        tg_rng rng;
        tg_rng_seed(&rng, 500 + (uint64_t)m);
        for (int64_t i = 0; i < w->dim; i++) w->micro[m][i] = tg_rng_uniform(&rng) - 0.5f;
    }
}

enum { GRADIENT, HVP, TOP, TOP_SHORT, TRACE, JACOBIAN, NOISE, N_KINDS };
static const char *const kind_names[N_KINDS] = {"gradient", "hvp", "top-1 (20 steps)",
                                                "top-1 (8 steps)", "trace (10 probes)",
                                                "jacobian extremes", "noise scale (8)"};
static const int kind_reps[N_KINDS] = {10, 5, 1, 1, 1, 1, 10};

static tg_eigenvalues last_top, last_short;
static double last_trace, last_trace_error;
static tg_singular_values last_sv;
static tg_noise_scale last_noise;

static void run(workload *w, int kind) {
    tg_status status = TG_OK;
    if (kind == GRADIENT || kind == HVP) {
        tg_tape_reset(w->tape);
        tg_tensor *loss = loss_fn(w->tape, w->params, w->n, w);
        if (!loss) die(w->ctx);
        if (kind == GRADIENT) {
            status = tg_backward(w->tape, loss);
            for (int p = 0; p < w->n; p++) tg_zero_grad(w->params[p]);
        } else {
            status = tg_hvp(w->tape, loss, w->n, w->params, (const float *const *)w->v, w->hv);
        }
    } else if (kind == TOP) {
        status = tg_curvature_top_eigenvalues(w->curvature, loss_fn, w, 1, &last_top, NULL);
    } else if (kind == TOP_SHORT) {
        status = tg_curvature_top_eigenvalues(w->short_run, loss_fn, w, 1, &last_short, NULL);
    } else if (kind == TRACE) {
        status = tg_curvature_trace(w->trace, loss_fn, w, &last_trace, &last_trace_error);
    } else if (kind == JACOBIAN) {
        status = tg_jacobian_singular_values(w->jacobian, logits_fn, w, w->x, 3, &last_sv);
    } else {
        status = tg_gradient_noise_scale(w->ctx, (const float *const *)w->micro, MICRO, w->dim, 8,
                                         &last_noise);
    }
    if (status != TG_OK) die(w->ctx);
}

/* `bench_curvature check`: the top 5 eigenvalues of the full-size model with their residual
 * bounds, the top Ritz vector's true residual |H y - lambda y| (one more tg_hvp), and lambda_max
 * by 60 steps of power iteration on tg_hvp, an estimate that shares nothing with Lanczos. */
static int check(void) {
    workload w;
    setup(&w, 1);
    tg_eigenvalues r;
    float *y[MAX_PARAMS];
    for (int p = 0; p < w.n; p++) y[p] = w.v[p];
    if (tg_curvature_top_eigenvalues(w.curvature, loss_fn, &w, 5, &r, y) != TG_OK) die(w.ctx);
    printf("Lanczos, %d steps:", r.steps);
    for (int i = 0; i < r.count; i++) printf(" %.7g (+-%.1e)", r.values[i], r.residuals[i]);
    printf(", smallest %.5g (+-%.1e)\n", r.smallest, r.smallest_residual);
    tg_tape_reset(w.tape);
    tg_tensor *loss = loss_fn(w.tape, w.params, w.n, &w);
    if (!loss || tg_hvp(w.tape, loss, w.n, w.params, (const float *const *)w.v, w.hv) != TG_OK) die(w.ctx);
    double res = 0;
    for (int p = 0; p < w.n; p++)
        for (int64_t i = 0; i < w.params[p]->size; i++) {
            double d = w.hv[p][i] - r.values[0] * w.v[p][i];
            res += d * d;
        }
    printf("top Ritz vector: |H y - lambda y| = %.2e measured\n", sqrt(res));
    double lambda = 0;
    for (int step = 0; step < 60; step++) { /* v <- H v / |H v|, from a seeded direction */
        double norm = 0, rayleigh = 0;
        if (step == 0) {
            tg_rng rng;
            tg_rng_seed(&rng, 77);
            for (int p = 0; p < w.n; p++)
                for (int64_t i = 0; i < w.params[p]->size; i++) w.v[p][i] = (float)tg_rng_normal(&rng);
        }
        for (int p = 0; p < w.n; p++) norm += sum_sq(w.v[p], w.params[p]->size);
        for (int p = 0; p < w.n; p++)
            for (int64_t i = 0; i < w.params[p]->size; i++) w.v[p][i] = (float)(w.v[p][i] / sqrt(norm));
        tg_tape_reset(w.tape);
        loss = loss_fn(w.tape, w.params, w.n, &w);
        if (!loss || tg_hvp(w.tape, loss, w.n, w.params, (const float *const *)w.v, w.hv) != TG_OK) die(w.ctx);
        for (int p = 0; p < w.n; p++)
            for (int64_t i = 0; i < w.params[p]->size; i++) rayleigh += (double)w.v[p][i] * w.hv[p][i];
        lambda = rayleigh;
        for (int p = 0; p < w.n; p++) memcpy(w.v[p], w.hv[p], (size_t)w.params[p]->size * sizeof(float));
    }
    printf("power iteration, 60 steps: lambda_max %.7g\n", lambda);
    for (int steps = 4; steps <= 16; steps *= 2) { /* how fast the top converges */
        tg_curvature_config c = tg_curvature_defaults();
        c.steps = steps;
        tg_curvature *few = tg_curvature_new(w.ctx, w.params, w.n, &c);
        if (!few || tg_curvature_top_eigenvalues(few, loss_fn, &w, 1, &r, NULL) != TG_OK) die(w.ctx);
        printf("Lanczos, %2d steps: lambda_max %.7g (+-%.1e)\n", steps, r.values[0], r.residuals[0]);
        tg_curvature_free(few);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "check") == 0) return check();
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    if (threads < 1 || rounds < 1 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "usage: bench_curvature [THREADS] [ROUNDS (1..%d)]\n", MAX_ROUNDS);
        return 2;
    }
    workload w;
    setup(&w, threads);
    for (int kind = 0; kind < N_KINDS; kind++) run(&w, kind); /* size the workspaces and arenas */
    double ms[N_KINDS][MAX_ROUNDS], ratio[N_KINDS][MAX_ROUNDS];
    for (int round = 0; round < rounds; round++)
        for (int kind = 0; kind < N_KINDS; kind++) {
            double start = bench_now_seconds();
            for (int r = 0; r < kind_reps[kind]; r++) run(&w, kind);
            ms[kind][round] = 1e3 * (bench_now_seconds() - start) / kind_reps[kind];
        }
    double bookkeeping[MAX_ROUNDS];
    for (int round = 0; round < rounds; round++) {
        for (int kind = 0; kind < N_KINDS; kind++) ratio[kind][round] = ms[kind][round] / ms[GRADIENT][round];
        bookkeeping[round] = ms[TOP][round] / (last_top.steps * ms[HVP][round]);
    }
    printf("MLP d20 w256 b64 (%lld parameters), %d thread%s: ms per call, median of %d interleaved "
           "rounds [min-max]; in gradient steps within each round\n", (long long)w.dim, threads,
           threads == 1 ? "" : "s", rounds);
    for (int kind = 0; kind < N_KINDS; kind++) {
        bench_timing t = bench_summarize(ms[kind], rounds), r = bench_summarize(ratio[kind], rounds);
        printf("  %-20s %10.3f ms [%.3f-%.3f]   x%.2f [%.2f-%.2f]\n", kind_names[kind], t.median,
               t.min, t.max, r.median, r.min, r.max);
    }
    bench_timing b = bench_summarize(bookkeeping, rounds);
    printf("  top-1 / (%d x hvp): %.3f [%.3f-%.3f] (Lanczos bookkeeping on top of its products)\n",
           last_top.steps, b.median, b.min, b.max);
    printf("  basis memory: %.1f MB (%d f32 vectors of %lld)\n",
           (double)last_top.steps * (double)w.dim * 4 / 1e6, last_top.steps, (long long)w.dim);
    printf("values: lambda_max %.6g (residual %.2g; 8 steps: %.6g), smallest Ritz %.4g; trace %.5g +- %.2g; "
           "Jacobian %lldx%lld: sigma_max %.5g (+-%.2g), sigma_min %.4g (+-%.2g), mean sigma^2 "
           "%.4g +- %.2g (%d products)\n", last_top.values[0], last_top.residuals[0], last_short.values[0],
           last_top.smallest, last_trace, last_trace_error, (long long)last_sv.output_size,
           (long long)last_sv.input_size, last_sv.largest[0], last_sv.largest_bound[0],
           last_sv.smallest[0], last_sv.smallest_bound[0], last_sv.mean_square,
           last_sv.mean_square_std_error, last_sv.products);
    for (int p = 0; p < w.n; p++) free(w.v[p]), free(w.hv[p]);
    for (int m = 0; m < MICRO; m++) free(w.micro[m]);
    tg_curvature_free(w.curvature);
    tg_curvature_free(w.trace);
    tg_curvature_free(w.short_run);
    tg_jacobian_free(w.jacobian);
    tg_tape_free(w.tape);
    tg_module_free(w.model);
    tg_ctx_free(w.ctx);
    return 0;
}
