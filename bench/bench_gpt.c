/*
 * bench/bench_gpt.c — one training step of a small GPT (tg_gpt_new): forward, tg_lm_loss,
 * backward, AdamW tg_optimizer_step_zero_grad, at
 *
 *   vocab 65, block 64, d_model 128, 4 heads, 4 pre-LN layers, untied head, no dropout,
 *   batch 32 x T 64 (random ids, next-token targets), AdamW lr 1e-3, weight decay 0.01.
 *
 * Rounds interleave tapegrad at 1 thread recorded every step, 1 thread recorded once and
 * replayed (tg_tape_replay), 2 threads recorded and 2 threads replayed; each figure is the median
 * over rounds with the min-max beside it. Pin with `taskset -c 1` for the one-thread figures (the
 * 2-thread ones then share a core: run unpinned for them).
 *
 *   bench_gpt [QUICK]              the table (QUICK: 3 rounds instead of 7)
 *   bench_gpt step THREADS [replay] one measurement, "ms_per_step X" (wall clock) and
 *                                  "cpu_ms_per_step X" (process CPU time; for bench/torch_gpt.py)
 *   bench_gpt export DIR           DIR/gpt_init.safetensors (the initial weights, PyTorch-style
 *                                  names gpt.*), DIR/gpt_batch.safetensors ("ids", "targets",
 *                                  f32 [32, 64]) and "loss K X" lines: the losses of the first
 *                                  steps, for bench/torch_gpt.py to compare
 *   bench_gpt mha-export DIR       tg_mha_new layers (E 32, 4 heads; plain and causal) with
 *                                  random biases, their input and output, for bench/torch_mha.py
 *   bench_gpt mha-check DIR        loads the state_dicts torch_mha.py wrote back and compares the
 *                                  outputs with PyTorch's (exit status 1 above 1e-5)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_timing.h"
#include "tapegrad.h"

#define ROUNDS 7
#define VOCAB 65
#define BLOCK 64
#define D_MODEL 128
#define HEADS 4
#define LAYERS 4
#define BATCH 32
#define SEQ 64
#define LR 1e-3f
#define WEIGHT_DECAY 0.01f
#define MAX_PARAMS 256
#define EXPORT_STEPS 3

#define MHA_E 32
#define MHA_H 4
#define MHA_B 2
#define MHA_T 7
#define MHA_TOL 1e-5

typedef struct gpt_bench {
    tg_ctx *ctx;
    tg_tape *tape;
    tg_module *gpt;
    tg_optimizer *opt;
    tg_tensor *ids, *targets;
    bool replay;                                   /* record once, then tg_tape_replay */
    tg_tensor *loss;                               /* the recorded loss, when replaying */
} gpt_bench;

static void die(tg_ctx *ctx) {
    fprintf(stderr, "bench_gpt: %s\n", ctx ? tg_errmsg(ctx) : "out of memory");
    exit(1);
}

/* The fixed batch: uniform random tokens (an LCG), targets = the ids shifted by one. */
static void fill_batch(float *ids, float *targets) {
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int b = 0; b < BATCH; b++) {
        for (int t = 0; t <= SEQ; t++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            int tok = (int)((s >> 33) % VOCAB);
            if (t > 0) targets[b * SEQ + t - 1] = (float)tok;
            if (t < SEQ) ids[b * SEQ + t] = (float)tok;
        }
    }
}

static void gpt_bench_new(gpt_bench *g, int threads, bool replay) {
    memset(g, 0, sizeof *g);
    g->ctx = tg_ctx_new();
    if (!g->ctx || tg_ctx_set_threads(g->ctx, threads) != TG_OK) die(g->ctx);
    g->tape = tg_tape_new(g->ctx);
    tg_gpt_config c = {.vocab = VOCAB, .block_size = BLOCK, .d_model = D_MODEL, .n_heads = HEADS,
                       .n_layers = LAYERS, .post_ln = false, .qk_norm = false,
                       .tie_weights = false, .dropout = 0.0f, .seed = 1};
    g->gpt = tg_gpt_new(g->ctx, "gpt", &c);
    if (!g->tape || !g->gpt) die(g->ctx);
    tg_tensor *params[MAX_PARAMS];
    int n = tg_module_params(g->gpt, params, MAX_PARAMS);
    if (n > MAX_PARAMS) die(NULL);
    g->opt = tg_optimizer_new(g->ctx, params, n, &(tg_optimizer_config){
        .kind = TG_OPT_ADAMW, .lr = LR, .weight_decay = WEIGHT_DECAY,
        .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f});
    static float ids[BATCH * SEQ], targets[BATCH * SEQ];
    fill_batch(ids, targets);
    g->ids = tg_from_data(g->ctx, TG_SHAPE(BATCH, SEQ), ids);
    g->targets = tg_from_data(g->ctx, TG_SHAPE(BATCH, SEQ), targets);
    if (!g->opt || !g->ids || !g->targets) die(g->ctx);
    tg_set_label(g->ids, "ids");
    tg_set_label(g->targets, "targets");
    g->replay = replay;
}

static void gpt_bench_free(gpt_bench *g) {
    tg_optimizer_free(g->opt);
    tg_module_free(g->gpt);
    tg_tape_free(g->tape);
    tg_ctx_free(g->ctx);
}

/* One training step; returns the loss of the forward pass (before the update). */
static float gpt_step(gpt_bench *g) {
    tg_tensor *loss = g->loss;
    if (g->replay && loss) {
        if (tg_tape_replay(g->tape) != TG_OK) die(g->ctx);
    } else {
        tg_tape_reset(g->tape);
        loss = tg_lm_loss(g->tape, tg_module_forward(g->gpt, g->tape, g->ids), g->targets);
        if (g->replay) g->loss = loss;
    }
    if (!loss || tg_backward(g->tape, loss) != TG_OK || tg_optimizer_step_zero_grad(g->opt) != TG_OK)
        die(g->ctx);
    return loss->data[0];
}

/* Steps per measurement: about 0.3 s of them, at least 3. */
static int steps_for(gpt_bench *g) {
    double start = bench_now_seconds();
    for (int s = 0; s < 2; s++) gpt_step(g);
    int steps = (int)(0.3 / ((bench_now_seconds() - start) / 2));
    return steps < 3 ? 3 : steps;
}

static double time_steps(gpt_bench *g, int steps) {
    double start = bench_now_seconds();
    for (int s = 0; s < steps; s++) gpt_step(g);
    return (bench_now_seconds() - start) / steps;
}

static void print_summary(const char *what, bench_timing s, double unit, const char *unit_name) {
    printf("  %-26s %9.3f %s  (min %.3f, max %.3f)\n", what, s.median * unit, unit_name,
           s.min * unit, s.max * unit);
}

static void bench_table(int rounds) {
    static const char *names[4] = {"tapegrad, 1 thread", "tapegrad replayed, 1T",
                                   "tapegrad, 2 threads", "tapegrad replayed, 2T"};
    gpt_bench g[4];
    float first[4];
    int steps[4];
    for (int v = 0; v < 4; v++) {
        gpt_bench_new(&g[v], v < 2 ? 1 : 2, v % 2 == 1);
        first[v] = gpt_step(&g[v]);
        steps[v] = steps_for(&g[v]);
    }
    double t[4][ROUNDS], ratio_replay[ROUNDS], ratio_threads[ROUNDS];
    for (int round = 0; round < rounds; round++) {
        for (int v = 0; v < 4; v++) t[v][round] = time_steps(&g[v], steps[v]);
        ratio_replay[round] = t[1][round] / t[0][round];
        ratio_threads[round] = t[2][round] / t[0][round];
    }
    printf("%s\n", tg_gemm_backend());
    printf("GPT V%d E%d H%d L%d, batch %d x T %d, AdamW: first losses %.7f %.7f %.7f %.7f "
           "(ln %d = %.7f); %d rounds of ~0.3 s\n", VOCAB, D_MODEL, HEADS, LAYERS, BATCH, SEQ,
           first[0], first[1], first[2], first[3], VOCAB, log((double)VOCAB), rounds);
    for (int v = 0; v < 4; v++) print_summary(names[v], bench_summarize(t[v], rounds), 1e3, "ms/step");
    print_summary("ratio replayed / recorded", bench_summarize(ratio_replay, rounds), 1, "x");
    print_summary("ratio 2T / 1T", bench_summarize(ratio_threads, rounds), 1, "x");
    for (int v = 0; v < 4; v++) gpt_bench_free(&g[v]);
}

/* CPU time of the whole process (all its threads): on a shared machine, a one-thread step's
 * CPU time does not count the time other programs held the core. */
static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int one_measurement(int threads, bool replay) {
    gpt_bench g;
    gpt_bench_new(&g, threads, replay);
    gpt_step(&g);
    int steps = steps_for(&g);
    double cpu = cpu_seconds();
    double wall = time_steps(&g, steps);
    cpu = (cpu_seconds() - cpu) / steps;
    printf("ms_per_step %.6f\ncpu_ms_per_step %.6f\n", wall * 1e3, cpu * 1e3);
    gpt_bench_free(&g);
    return 0;
}

static void path_in(char *out, size_t cap, const char *dir, const char *file) {
    snprintf(out, cap, "%s/%s", dir, file);
}

static int export_gpt(const char *dir) {
    gpt_bench g;
    gpt_bench_new(&g, 1, false);
    char path[4096];
    path_in(path, sizeof path, dir, "gpt_init.safetensors");
    if (tg_module_save(g.gpt, path) != TG_OK) die(g.ctx);
    path_in(path, sizeof path, dir, "gpt_batch.safetensors");
    tg_tensor *batch[2] = {g.ids, g.targets};
    if (tg_save_safetensors(g.ctx, path, batch, 2) != TG_OK) die(g.ctx);
    printf("config vocab %d block %d d_model %d heads %d layers %d batch %d seq %d lr %g "
           "weight_decay %g\n", VOCAB, BLOCK, D_MODEL, HEADS, LAYERS, BATCH, SEQ, (double)LR,
           (double)WEIGHT_DECAY);
    for (int s = 0; s < EXPORT_STEPS; s++) printf("loss %d %.9g\n", s, (double)gpt_step(&g));
    gpt_bench_free(&g);
    return 0;
}

/* ---- nn.MultiheadAttention round trip ------------------------------------------------------ */

static tg_module *mha_layer(tg_ctx *ctx, bool causal) {
    tg_mha_config c = tg_mha_defaults(MHA_E, MHA_H);
    c.causal = causal;
    c.seed = causal ? 11 : 12;
    return tg_mha_new(ctx, "mha", &c);
}

/* y = layer(x) as a persistent tensor labelled "y". */
static tg_tensor *mha_output(tg_ctx *ctx, tg_tape *tape, tg_module *layer, tg_tensor *x) {
    tg_tape_reset(tape);
    tg_tensor *y = tg_module_forward(layer, tape, x);
    if (!y) die(ctx);
    tg_tensor *out = tg_from_data(ctx, y->ndim, y->shape, y->data);
    if (!out) die(ctx);
    tg_set_label(out, "y");
    return out;
}

static int mha_export(const char *dir) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *x = tg_zeros(ctx, TG_SHAPE(MHA_B, MHA_T, MHA_E));
    if (!tape || !x) die(ctx);
    tg_fill_normal(x, 0.0f, 1.0f, 5);
    tg_set_label(x, "x");
    char path[4096];
    path_in(path, sizeof path, dir, "mha_x.safetensors");
    if (tg_save_safetensors(ctx, path, &x, 1) != TG_OK) die(ctx);
    for (int causal = 0; causal < 2; causal++) {
        tg_module *layer = mha_layer(ctx, causal);
        if (!layer) die(ctx);
        /* biases start at 0: make them random, so that their layout is checked too */
        tg_fill_normal(tg_module_find_param(layer, "mha.in_proj_bias"), 0.0f, 0.5f, 21 + causal);
        tg_fill_normal(tg_module_find_param(layer, "mha.out_proj.bias"), 0.0f, 0.5f, 31 + causal);
        const char *kind = causal ? "causal" : "plain";
        char file[64];
        snprintf(file, sizeof file, "mha_%s_tg.safetensors", kind);
        path_in(path, sizeof path, dir, file);
        if (tg_module_save(layer, path) != TG_OK) die(ctx);
        tg_tensor *y = mha_output(ctx, tape, layer, x);
        snprintf(file, sizeof file, "mha_%s_tg_out.safetensors", kind);
        path_in(path, sizeof path, dir, file);
        if (tg_save_safetensors(ctx, path, &y, 1) != TG_OK) die(ctx);
        printf("wrote mha_%s_tg.safetensors and its output\n", kind);
        tg_module_free(layer);
    }
    tg_tape_free(tape);
    tg_ctx_free(ctx);
    return 0;
}

static int mha_check(const char *dir) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *x = tg_zeros(ctx, TG_SHAPE(MHA_B, MHA_T, MHA_E));
    tg_tensor *expected = tg_zeros(ctx, TG_SHAPE(MHA_B, MHA_T, MHA_E));
    if (!tape || !x || !expected) die(ctx);
    tg_set_label(x, "x");
    tg_set_label(expected, "y");
    char path[4096], file[64];
    path_in(path, sizeof path, dir, "mha_x.safetensors");
    if (tg_load_safetensors(ctx, path, &x, 1) != TG_OK) die(ctx);
    int bad = 0;
    for (int causal = 0; causal < 2; causal++) {
        const char *kind = causal ? "causal" : "plain";
        tg_module *layer = mha_layer(ctx, causal);
        if (!layer) die(ctx);
        snprintf(file, sizeof file, "mha_%s_torch.safetensors", kind);
        path_in(path, sizeof path, dir, file);
        if (tg_module_load(layer, path) != TG_OK) die(ctx);
        snprintf(file, sizeof file, "mha_%s_torch_out.safetensors", kind);
        path_in(path, sizeof path, dir, file);
        if (tg_load_safetensors(ctx, path, &expected, 1) != TG_OK) die(ctx);
        tg_tensor *y = mha_output(ctx, tape, layer, x);
        double diff = 0.0;
        for (int64_t i = 0; i < y->size; i++) {
            double d = fabs((double)y->data[i] - (double)expected->data[i]);
            if (!(d <= diff)) diff = d; /* NaN counts as the worst */
        }
        bool ok = diff < MHA_TOL;
        bad += !ok;
        printf("PyTorch state_dict -> tapegrad, %s: max abs diff %.3g %s\n", kind, diff,
               ok ? "ok" : "TOO LARGE");
        tg_module_free(layer);
    }
    tg_tape_free(tape);
    tg_ctx_free(ctx);
    return bad ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "step") == 0) {
        int threads = atoi(argv[2]);
        if (threads < 1) {
            fprintf(stderr, "usage: bench_gpt step THREADS [replay]\n");
            return 2;
        }
        return one_measurement(threads, argc > 3 && strcmp(argv[3], "replay") == 0);
    }
    if (argc == 3 && strcmp(argv[1], "export") == 0) return export_gpt(argv[2]);
    if (argc == 3 && strcmp(argv[1], "mha-export") == 0) return mha_export(argv[2]);
    if (argc == 3 && strcmp(argv[1], "mha-check") == 0) return mha_check(argv[2]);
    if (argc > 2 || (argc == 2 && strcmp(argv[1], "QUICK") != 0)) {
        fprintf(stderr, "usage: bench_gpt [QUICK] | step THREADS [replay] | export DIR | "
                        "mha-export DIR | mha-check DIR\n");
        return 2;
    }
    bench_table(argc == 2 ? 3 : ROUNDS);
    return 0;
}
