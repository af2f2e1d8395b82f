/*
 * bench/bench_higher.c — what the higher-order products cost against one gradient, on the
 * benchmark models: the MLP d20 w256 b64 (sigmoid, 64 inputs, 10 classes, cross entropy: the
 * workload of bench_models) and the LSTM of bench_rnn (hidden 128, T = 100, batch 32, 16 inputs,
 * a linear head on h[T], MSE). Per round, interleaved, each of:
 *   gradient         record the step, tg_backward
 *   jvp              record the step, tg_jvp of the loss along a direction in every parameter
 *   hvp              record the step, tg_hvp (reverse over forward)
 *   double backward  record the step, tg_grad of the loss (recorded), then tg_backward of
 *                    0.5 |grad|^2 (a gradient penalty on the parameters: itself an HVP, H g)
 * Printed: ms per product (median of ROUNDS rounds of REPS each, min-max), and its ratio to the
 * gradient's time within each round (median, min-max).
 * `zig build bench-higher -Doptimize=ReleaseFast -- [mlp|lstm] [THREADS]`; `-- check` compares
 * tg_hvp on both full-size models with differences of their gradients instead.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_timing.h"
#include "tapegrad.h"

#define ROUNDS 7
#define MAX_PARAMS 48

typedef struct workload {
    const char *name;
    tg_ctx *ctx;
    tg_tape *tape;
    tg_module *model, *head;
    tg_tensor *x, *y;
    tg_tensor *params[MAX_PARAMS];
    int n;
    bool lstm;
    float *v[MAX_PARAMS], *hv[MAX_PARAMS];
    int reps;
} workload;

static void die(tg_ctx *ctx) {
    fprintf(stderr, "bench_higher: %s\n", tg_errmsg(ctx));
    exit(1);
}

static void setup(workload *w, bool lstm, int threads) {
    memset(w, 0, sizeof *w);
    w->lstm = lstm;
    w->ctx = tg_ctx_new();
    if (!w->ctx || tg_ctx_set_threads(w->ctx, threads) != TG_OK) die(w->ctx);
    if (lstm) {
        w->name = "LSTM h128 T100 b32";
        tg_rnn_config c = tg_rnn_defaults(TG_RNN_LSTM, 16, 128);
        w->model = tg_rnn_new(w->ctx, "lstm", &c);
        w->head = tg_linear_new(w->ctx, "head", 128, 1, true, NULL, 3);
        w->x = tg_zeros(w->ctx, TG_SHAPE(32, 100, 16));
        w->y = tg_zeros(w->ctx, TG_SHAPE(32, 1));
        if (!w->model || !w->head || !w->x || !w->y) die(w->ctx);
        tg_fill_normal(w->y, 0, 1, 8);
        w->n = tg_module_params(w->model, w->params, MAX_PARAMS);
        w->n += tg_module_params(w->head, w->params + w->n, MAX_PARAMS - w->n);
        w->reps = 3;
    } else {
        w->name = "MLP d20 w256 b64";
        tg_mlp_config c = {.in = 64, .out = 10, .width = 256, .depth = 20,
                           .activation = TG_ACT_SIGMOID, .seed = 3};
        w->model = tg_mlp_new(w->ctx, "mlp", &c);
        w->x = tg_zeros(w->ctx, TG_SHAPE(64, 64));
        w->y = tg_zeros(w->ctx, TG_SHAPE(64));
        if (!w->model || !w->x || !w->y) die(w->ctx);
        for (int i = 0; i < 64; i++) w->y->data[i] = (float)(i % 10);
        w->n = tg_module_params(w->model, w->params, MAX_PARAMS);
        w->reps = 20;
    }
    tg_fill_normal(w->x, 0, 1, 7);
    w->tape = tg_tape_new(w->ctx);
    for (int p = 0; p < w->n; p++) {
        size_t bytes = (size_t)w->params[p]->size * sizeof(float);
        w->v[p] = malloc(bytes);
        w->hv[p] = malloc(bytes);
        if (!w->v[p] || !w->hv[p]) die(w->ctx);
        tg_rng rng;
        tg_rng_seed(&rng, 100 + (uint64_t)p);
        for (int64_t i = 0; i < w->params[p]->size; i++) w->v[p][i] = tg_rng_uniform(&rng) - 0.5f;
    }
}

static tg_tensor *record(workload *w) {
    tg_tape_reset(w->tape);
    if (w->lstm) {
        tg_tensor *h = tg_rnn_forward(w->model, w->tape, w->x, NULL);
        return tg_mse(w->tape, tg_module_forward(w->head, w->tape, h), w->y);
    }
    return tg_cross_entropy(w->tape, tg_module_forward(w->model, w->tape, w->x), w->y);
}

enum { GRADIENT, JVP, HVP, DOUBLE_BACKWARD, N_KINDS };
static const char *const kind_names[N_KINDS] = {"gradient", "jvp", "hvp", "double backward"};

static void run(workload *w, int kind) {
    tg_tensor *loss = record(w);
    if (!loss) die(w->ctx);
    tg_status status = TG_OK;
    if (kind == GRADIENT) {
        status = tg_backward(w->tape, loss);
        for (int p = 0; p < w->n; p++) tg_zero_grad(w->params[p]);
    } else if (kind == JVP) {
        tg_tensor *t[MAX_PARAMS], *out = NULL;
        for (int p = 0; p < w->n && status == TG_OK; p++)
            if (!(t[p] = tg_tape_from_data(w->tape, w->params[p]->ndim, w->params[p]->shape, w->v[p])))
                status = tg_errcode(w->ctx);
        if (status == TG_OK) status = tg_jvp(w->tape, loss, w->n, w->params, t, &out);
    } else if (kind == HVP) {
        status = tg_hvp(w->tape, loss, w->n, w->params, (const float *const *)w->v, w->hv);
    } else {
        tg_tensor *g[MAX_PARAMS], *penalty = NULL;
        status = tg_grad(w->tape, loss, w->n, w->params, g);
        for (int p = 0; p < w->n && status == TG_OK; p++) {
            tg_tensor *term = tg_sum(w->tape, tg_square(w->tape, g[p]));
            penalty = penalty && term ? tg_add(w->tape, penalty, term) : term;
            if (!penalty) status = tg_errcode(w->ctx);
        }
        if (status == TG_OK) status = tg_backward(w->tape, tg_scale(w->tape, penalty, 0.5f));
        for (int p = 0; p < w->n; p++) tg_zero_grad(w->params[p]);
    }
    if (status != TG_OK) die(w->ctx);
}

/* The gradients at the parameters moved by step * v, from tg_backward, into out (flat). */
static void gradients_at(workload *w, double step, float *out) {
    for (int p = 0; p < w->n; p++)
        for (int64_t i = 0; i < w->params[p]->size; i++)
            w->params[p]->data[i] = (float)(w->params[p]->data[i] + step * w->v[p][i]);
    tg_tensor *loss = record(w);
    if (!loss || tg_backward(w->tape, loss) != TG_OK) die(w->ctx);
    for (int p = 0; p < w->n; out += w->params[p]->size, p++) {
        memcpy(out, w->params[p]->grad, (size_t)w->params[p]->size * sizeof(float));
        tg_zero_grad(w->params[p]);
        for (int64_t i = 0; i < w->params[p]->size; i++)
            w->params[p]->data[i] = (float)(w->params[p]->data[i] - step * w->v[p][i]);
    }
}

/* `bench_higher check`: tg_hvp on the full-size model against differences of its gradients
 * along v (steps eps and eps/2, extrapolated), over every parameter: the relative error in
 * the 2-norm and the largest error against the largest entry. */
static void check_against_differences(workload *w) {
    int64_t total = 0;
    for (int p = 0; p < w->n; p++) total += w->params[p]->size;
    float *g = malloc(4 * (size_t)total * sizeof(float));
    if (!g) die(w->ctx);
    const double eps = 1e-2;
    gradients_at(w, eps, g);
    gradients_at(w, -eps, g + total);
    gradients_at(w, eps / 2, g + 2 * total);
    gradients_at(w, -eps / 2, g + 3 * total);
    run(w, HVP);
    double err2 = 0, norm2 = 0, worst = 0, largest = 0;
    int64_t e = 0;
    for (int p = 0; p < w->n; p++)
        for (int64_t i = 0; i < w->params[p]->size; i++, e++) {
            double full = ((double)g[e] - g[total + e]) / (2 * eps);
            double half = ((double)g[2 * total + e] - g[3 * total + e]) / eps;
            double numeric = (4 * half - full) / 3, diff = w->hv[p][i] - numeric;
            err2 += diff * diff, norm2 += numeric * numeric;
            if (fabs(diff) > worst) worst = fabs(diff);
            if (fabs(numeric) > largest) largest = fabs(numeric);
        }
    printf("%s: H v against differences of gradients over %lld parameters: relative error "
           "%.2e (2-norm), largest error %.2e of the largest entry %.3g\n", w->name,
           (long long)total, sqrt(err2 / norm2), worst / largest, largest);
    free(g);
}

/* `bench_higher export DIR`: the MLP's weights (DIR/mlp.safetensors), its batch, a direction
 * v and tapegrad's H v (DIR/hvp.safetensors: "x", "y", "v.<parameter>", "hv.<parameter>"), for
 * bench/torch_hvp.py to compare with torch.autograd.functional.hvp. */
static int export_mlp(const char *dir) {
    workload w;
    setup(&w, false, 1);
    run(&w, HVP);
    char path[4096];
    snprintf(path, sizeof path, "%s/mlp.safetensors", dir);
    if (tg_module_save(w.model, path) != TG_OK) die(w.ctx);
    tg_tensor *list[2 + 2 * MAX_PARAMS];
    int n = 0;
    list[n++] = tg_set_label(w.x, "x");
    list[n++] = tg_set_label(w.y, "y");
    for (int p = 0; p < w.n; p++) {
        const tg_tensor *param = w.params[p];
        tg_tensor *v = tg_from_data(w.ctx, param->ndim, param->shape, w.v[p]);
        tg_tensor *hv = tg_from_data(w.ctx, param->ndim, param->shape, w.hv[p]);
        if (!v || !hv) die(w.ctx);
        list[n++] = tg_set_label(v, "v.%s", param->label);
        list[n++] = tg_set_label(hv, "hv.%s", param->label);
    }
    snprintf(path, sizeof path, "%s/hvp.safetensors", dir);
    if (tg_save_safetensors(w.ctx, path, list, n) != TG_OK) die(w.ctx);
    printf("wrote %s/mlp.safetensors and %s/hvp.safetensors\n", dir, dir);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "export") == 0) return export_mlp(argv[2]);
    bool check = argc > 1 && strcmp(argv[1], "check") == 0;
    if (check) {
        for (int which = 0; which < 2; which++) {
            workload w;
            setup(&w, which == 1, 1);
            check_against_differences(&w);
        }
        return 0;
    }
    bool lstm = argc > 1 && strcmp(argv[1], "lstm") == 0;
    int threads = argc > 2 ? atoi(argv[2]) : 1;
    if (argc > 1 && !lstm && strcmp(argv[1], "mlp") != 0) {
        fprintf(stderr, "usage: bench_higher [mlp|lstm|check] [THREADS] | export DIR\n");
        return 2;
    }
    workload w;
    setup(&w, lstm, threads);
    for (int kind = 0; kind < N_KINDS; kind++) run(&w, kind); /* warm the arena and caches */
    double ms[N_KINDS][ROUNDS], ratio[N_KINDS][ROUNDS];
    for (int round = 0; round < ROUNDS; round++)
        for (int kind = 0; kind < N_KINDS; kind++) {
            double start = bench_now_seconds();
            for (int r = 0; r < w.reps; r++) run(&w, kind);
            ms[kind][round] = 1e3 * (bench_now_seconds() - start) / w.reps;
        }
    for (int round = 0; round < ROUNDS; round++)
        for (int kind = 0; kind < N_KINDS; kind++) ratio[kind][round] = ms[kind][round] / ms[GRADIENT][round];
    printf("%s, %d thread%s, %d parameters tensors: ms per product, median of %d interleaved "
           "rounds of %d [min-max]; ratio to the gradient within each round\n", w.name, threads,
           threads == 1 ? "" : "s", w.n, ROUNDS, w.reps);
    for (int kind = 0; kind < N_KINDS; kind++) {
        bench_timing t = bench_summarize(ms[kind], ROUNDS), r = bench_summarize(ratio[kind], ROUNDS);
        printf("  %-16s %9.3f ms [%.3f-%.3f]   x%.2f [%.2f-%.2f]\n", kind_names[kind], t.median,
               t.min, t.max, r.median, r.min, r.max);
    }
    for (int p = 0; p < w.n; p++) free(w.v[p]), free(w.hv[p]);
    tg_tape_free(w.tape);
    tg_module_free(w.model);
    if (w.head) tg_module_free(w.head);
    tg_ctx_free(w.ctx);
    return 0;
}
