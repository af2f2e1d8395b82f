/*
 * bench/bench_rnn.c — the LSTM workload of issue 14 against a hand-written LSTM:
 *   LSTM hidden 128, T = 100, batch 32, 16 inputs, a linear head on h[T], MSE, SGD lr 0.01.
 * tapegrad (tg_rnn_new + tg_linear_new + tg_mse + tg_optimizer) and the plain C reference below
 * (no tape, no framework: the forward and backward of the same LSTM written out, with the same
 * GEMM entry point tgi_gemm and the same activation functions, so the FLOPs are the same) train
 * the same weights on the same data. Printed: ms per step at 1 and 2 threads (median of ROUNDS
 * interleaved rounds, min-max), the ratios, tapegrad's tape peak against the activation memory
 * of the plain C version, and both losses (they must agree: the bench is also a check). The GRU
 * of the same size is compared the same way.
 * Run with `zig build bench -Doptimize=ReleaseFast`.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_timing.h"
#include "ops/ops.h"

#define BATCH 32
#define STEPS 100
#define INPUTS 16
#define HIDDEN 128
#define GATES (4 * HIDDEN)
#define ROUNDS 7
#define STEPS_PER_ROUND 3
#define LR 0.01f

#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE
#endif

/* ---- the plain C reference ----------------------------------------------------------------- */

/* Parameters and their gradients share one layout: w_ih, w_hh, b_ih, b_hh, w_head, b_head. */
enum { W_IH, W_HH, B_IH, B_HH, W_HEAD, B_HEAD, N_PARAMS };

static int64_t param_size(int64_t width, int i) {
    const int64_t sizes[N_PARAMS] = {width * INPUTS, width * HIDDEN, width, width, HIDDEN, 1};
    return sizes[i];
}

/* A hand-written LSTM (4 gates) or GRU (3). */
typedef struct plain_rnn {
    tg_ctx *ctx; /* only for its thread pool: tgi_gemm cuts products over it */
    int64_t width; /* gates * HIDDEN */
    float *p[N_PARAMS], *g[N_PARAMS];
    const float *x, *y;
    /* what the backward needs: xp [B,T,G*H] and h [T+1,B,H] (h[0] = 0); the LSTM's gates
     * [T,B,4H], c [T+1,B,H] and tanh(c) [T,B,H]; the GRU's r, z, n, W_hn h + b_hn [T,B,4H] */
    float *xp, *h, *gates, *c, *squashed;
    float *dxp, *dh, *dc, *dh_next, *dhp, *out;
    size_t activation_bytes;
} plain_rnn;

static float *floats(int64_t n) { return calloc((size_t)n, sizeof(float)); }

static void plain_init(plain_rnn *m, tg_ctx *ctx, int gates, tg_tensor *const *params, const float *x,
                       const float *y) {
    memset(m, 0, sizeof *m);
    m->ctx = ctx;
    m->width = gates * HIDDEN;
    for (int i = 0; i < N_PARAMS; i++) {
        m->p[i] = floats(param_size(m->width, i));
        m->g[i] = floats(param_size(m->width, i));
        memcpy(m->p[i], params[i]->data, (size_t)param_size(m->width, i) * sizeof(float));
    }
    m->x = x;
    m->y = y;
    const int64_t per_step = 4 * HIDDEN; /* per row: the LSTM gates i, f, g, o; the GRU r, z, n, hn */
    m->xp = floats(BATCH * STEPS * m->width);
    m->h = floats((STEPS + 1) * BATCH * HIDDEN);
    m->gates = floats(STEPS * BATCH * per_step);
    m->activation_bytes = sizeof(float) * (size_t)(BATCH * STEPS * (m->width + per_step) + (STEPS + 1) * BATCH * HIDDEN);
    if (gates == 4) {
        m->c = floats((STEPS + 1) * BATCH * HIDDEN);
        m->squashed = floats(STEPS * BATCH * HIDDEN);
        m->activation_bytes += sizeof(float) * (size_t)((2 * STEPS + 1) * BATCH * HIDDEN);
    }
    m->dxp = floats(BATCH * STEPS * m->width);
    m->dh = floats(BATCH * HIDDEN);
    m->dc = floats(BATCH * HIDDEN);
    m->dh_next = floats(BATCH * HIDDEN);
    m->dhp = floats(BATCH * m->width);
    m->out = floats(BATCH);
}

static void plain_free(plain_rnn *m) {
    for (int i = 0; i < N_PARAMS; i++) {
        free(m->p[i]);
        free(m->g[i]);
    }
    float *buffers[] = {m->xp, m->h, m->gates, m->c, m->squashed, m->dxp, m->dh, m->dc, m->dh_next, m->dhp, m->out};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) free(buffers[i]);
}

/* xp = b_ih + x W_ih^T over all steps at once. */
static void input_projection(plain_rnn *m) {
    for (int64_t r = 0; r < BATCH * STEPS; r++) memcpy(m->xp + r * m->width, m->p[B_IH], (size_t)m->width * sizeof(float));
    tgi_gemm(m->ctx, false, true, BATCH * STEPS, m->width, INPUTS, 1, m->x, INPUTS, m->p[W_IH], INPUTS, 1, m->xp, m->width);
}

/* proj (rows ld apart) = b_hh + h W_hh^T */
static void recurrent_projection(plain_rnn *m, const float *h, float *proj, int64_t ld) {
    for (int64_t b = 0; b < BATCH; b++) memcpy(proj + b * ld, m->p[B_HH], (size_t)m->width * sizeof(float));
    tgi_gemm(m->ctx, false, true, BATCH, m->width, HIDDEN, 1, h, HIDDEN, m->p[W_HH], HIDDEN, 1, proj, ld);
}

/* The head on h[T] and the MSE loss. */
static float head_forward(plain_rnn *m) {
    const float *h_last = m->h + STEPS * BATCH * HIDDEN;
    double loss = 0;
    for (int64_t b = 0; b < BATCH; b++) {
        float o = m->p[B_HEAD][0];
        for (int64_t j = 0; j < HIDDEN; j++) o += h_last[b * HIDDEN + j] * m->p[W_HEAD][j];
        m->out[b] = o;
        loss += (double)(o - m->y[b]) * (o - m->y[b]);
    }
    return (float)(loss / BATCH);
}

/* The head's gradients, and dh = dL/dh[T]. */
static void head_backward(plain_rnn *m) {
    const float *h_last = m->h + STEPS * BATCH * HIDDEN;
    for (int64_t b = 0; b < BATCH; b++) {
        float d_out = 2.0f * (m->out[b] - m->y[b]) / BATCH;
        m->g[B_HEAD][0] += d_out;
        for (int64_t j = 0; j < HIDDEN; j++) {
            m->g[W_HEAD][j] += d_out * h_last[b * HIDDEN + j];
            m->dh[b * HIDDEN + j] = d_out * m->p[W_HEAD][j];
        }
    }
}

/* Step t's recurrent projection gradient dz (rows ld apart): into b_hh, W_hh and (beta: 0 to
 * overwrite, 1 to add) dh_prev, which h[0], the zero state, does not need. */
static void recurrent_backward(plain_rnn *m, int64_t t, const float *dz, int64_t ld, float beta, float *dh_prev) {
    for (int64_t b = 0; b < BATCH; b++)
        for (int64_t j = 0; j < m->width; j++) m->g[B_HH][j] += dz[b * ld + j];
    if (t > 0) tgi_gemm(m->ctx, false, false, BATCH, HIDDEN, m->width, 1, dz, ld, m->p[W_HH], HIDDEN, beta, dh_prev, HIDDEN);
    tgi_gemm(m->ctx, true, false, m->width, HIDDEN, BATCH, 1, dz, ld, m->h + t * BATCH * HIDDEN, HIDDEN, 1, m->g[W_HH], HIDDEN);
}

static void input_backward(plain_rnn *m) {
    tgi_gemm(m->ctx, true, false, m->width, INPUTS, BATCH * STEPS, 1, m->dxp, m->width, m->x, INPUTS, 1, m->g[W_IH], INPUTS);
    for (int64_t r = 0; r < BATCH * STEPS; r++)
        for (int64_t j = 0; j < m->width; j++) m->g[B_IH][j] += m->dxp[r * m->width + j];
}

static float sigmoid_or_tanh(int block, float v) { return block == 2 ? tgi_tanh_lanes(v) : tgi_sigmoid(v); }

static float lstm_forward(plain_rnn *m) {
    input_projection(m);
    for (int64_t t = 0; t < STEPS; t++) {
        float *gates = m->gates + t * BATCH * GATES;
        const float *c = m->c + t * BATCH * HIDDEN;
        float *c_next = m->c + (t + 1) * BATCH * HIDDEN, *h_next = m->h + (t + 1) * BATCH * HIDDEN;
        float *sq = m->squashed + t * BATCH * HIDDEN;
        recurrent_projection(m, m->h + t * BATCH * HIDDEN, gates, GATES);
        for (int64_t b = 0; b < BATCH; b++) {
            float *gb = gates + b * GATES;
            const float *xb = m->xp + b * STEPS * GATES + t * GATES;
            for (int k = 0; k < 4; k++)
                for (int64_t j = k * HIDDEN; j < (k + 1) * HIDDEN; j++) gb[j] = sigmoid_or_tanh(k, xb[j] + gb[j]);
            for (int64_t j = 0; j < HIDDEN; j++) {
                int64_t at = b * HIDDEN + j;
                c_next[at] = gb[HIDDEN + j] * c[at] + gb[j] * gb[2 * HIDDEN + j];
                sq[at] = tgi_tanh_lanes(c_next[at]);
                h_next[at] = gb[3 * HIDDEN + j] * sq[at];
            }
        }
    }
    return head_forward(m);
}

/* Step t's pre-activation gradient into dxp[:, t, :], from dh = dL/dh[t+1] and dc = dL/dc[t+1]
 * (which becomes dL/dc[t]). */
static void lstm_cell_backward(plain_rnn *m, int64_t t) {
    const float *gates = m->gates + t * BATCH * GATES, *c = m->c + t * BATCH * HIDDEN;
    const float *sq = m->squashed + t * BATCH * HIDDEN;
    for (int64_t b = 0; b < BATCH; b++) {
        const float *i = gates + b * GATES, *f = i + HIDDEN, *g = i + 2 * HIDDEN, *o = i + 3 * HIDDEN;
        float *dz = m->dxp + b * STEPS * GATES + t * GATES;
        for (int64_t j = 0; j < HIDDEN; j++) {
            int64_t at = b * HIDDEN + j;
            float dh = m->dh[at], s = sq[at];
            float dc = m->dc[at] + dh * o[j] * (1 - s * s);
            dz[j] = dc * g[j] * i[j] * (1 - i[j]);
            dz[HIDDEN + j] = dc * c[at] * f[j] * (1 - f[j]);
            dz[2 * HIDDEN + j] = dc * i[j] * (1 - g[j] * g[j]);
            dz[3 * HIDDEN + j] = dh * s * o[j] * (1 - o[j]);
            m->dc[at] = dc * f[j];
        }
    }
}

static void lstm_backward(plain_rnn *m) {
    head_backward(m);
    memset(m->dc, 0, BATCH * HIDDEN * sizeof(float));
    for (int64_t t = STEPS - 1; t >= 0; t--) {
        lstm_cell_backward(m, t);
        recurrent_backward(m, t, m->dxp + t * GATES, STEPS * GATES, 0, m->dh);
    }
    input_backward(m);
}

/* GRU (PyTorch): per row r, z, n and hn = W_hn h + b_hn kept for the backward. */
static float gru_forward(plain_rnn *m) {
    input_projection(m);
    const int64_t H = HIDDEN, ld = 4 * HIDDEN, width = 3 * HIDDEN;
    for (int64_t t = 0; t < STEPS; t++) {
        float *saved = m->gates + t * BATCH * ld;
        const float *h = m->h + t * BATCH * H;
        float *h_next = m->h + (t + 1) * BATCH * H;
        recurrent_projection(m, h, saved, ld);
        for (int64_t b = 0; b < BATCH; b++) {
            float *r = saved + b * ld, *z = r + H, *n = r + 2 * H, *hn = r + 3 * H;
            const float *x = m->xp + b * STEPS * width + t * width;
            for (int64_t j = 0; j < H; j++) {
                hn[j] = n[j];
                r[j] = tgi_sigmoid(x[j] + r[j]);
                z[j] = tgi_sigmoid(x[H + j] + z[j]);
                n[j] = tgi_tanh_lanes(x[2 * H + j] + r[j] * hn[j]);
                h_next[b * H + j] = n[j] + z[j] * (h[b * H + j] - n[j]);
            }
        }
    }
    return head_forward(m);
}

static void gru_backward(plain_rnn *m) {
    head_backward(m);
    const int64_t H = HIDDEN, ld = 4 * HIDDEN, width = 3 * HIDDEN;
    for (int64_t t = STEPS - 1; t >= 0; t--) {
        const float *saved = m->gates + t * BATCH * ld, *h = m->h + t * BATCH * H;
        for (int64_t b = 0; b < BATCH; b++) {
            const float *r = saved + b * ld, *z = r + H, *n = r + 2 * H, *hn = r + 3 * H;
            float *dx = m->dxp + b * STEPS * width + t * width, *dhp = m->dhp + b * width;
            for (int64_t j = 0; j < H; j++) {
                float dy = m->dh[b * H + j];
                float dn_pre = (dy - dy * z[j]) * (1 - n[j] * n[j]);
                float dz_pre = dy * (h[b * H + j] - n[j]) * z[j] * (1 - z[j]);
                float dr_pre = dn_pre * hn[j] * r[j] * (1 - r[j]);
                dx[j] = dhp[j] = dr_pre;
                dx[H + j] = dhp[H + j] = dz_pre;
                dx[2 * H + j] = dn_pre;
                dhp[2 * H + j] = dn_pre * r[j];
                m->dh_next[b * H + j] = dy * z[j];
            }
        }
        recurrent_backward(m, t, m->dhp, width, 1, m->dh_next);
        float *swap = m->dh;
        m->dh = m->dh_next;
        m->dh_next = swap;
    }
    input_backward(m);
}

/* Not inlined, so `valgrind --tool=callgrind --toggle-collect=plain_step` can count it. */
NOINLINE static float plain_step(plain_rnn *m) {
    float loss = m->width == GATES ? lstm_forward(m) : gru_forward(m);
    if (m->width == GATES) lstm_backward(m);
    else gru_backward(m);
    for (int i = 0; i < N_PARAMS; i++) {
        float *restrict w = m->p[i], *restrict g = m->g[i];
        for (int64_t k = 0; k < param_size(m->width, i); k++) w[k] -= LR * g[k];
        memset(g, 0, (size_t)param_size(m->width, i) * sizeof(float));
    }
    return loss;
}

/* ---- tapegrad ------------------------------------------------------------------------------ */

typedef struct tape_rnn {
    tg_ctx *ctx;
    tg_tape *tape;
    tg_module *rnn, *head;
    tg_tensor *x, *y, *params[N_PARAMS];
    tg_optimizer *opt;
} tape_rnn;

static int tape_init(tape_rnn *m, tg_rnn_kind kind, int threads) {
    m->ctx = tg_ctx_new();
    tg_ctx_set_threads(m->ctx, threads);
    tg_rnn_config c = tg_rnn_defaults(kind, INPUTS, HIDDEN);
    m->rnn = tg_rnn_new(m->ctx, "lstm", &c);
    m->head = tg_linear_new(m->ctx, "head", HIDDEN, 1, true, NULL, 3);
    m->x = tg_zeros(m->ctx, TG_SHAPE(BATCH, STEPS, INPUTS));
    m->y = tg_zeros(m->ctx, TG_SHAPE(BATCH, 1));
    if (!m->rnn || !m->head || !m->x || !m->y) return 1;
    tg_fill_normal(m->x, 0, 1, 7);
    tg_fill_normal(m->y, 0, 1, 8);
    /* module order: weight_ih, weight_hh, bias_ih, bias_hh, then the head's weight and bias */
    int n = tg_module_params(m->rnn, m->params, N_PARAMS);
    n += tg_module_params(m->head, m->params + n, N_PARAMS - n);
    tg_optimizer_config sgd = {.kind = TG_OPT_SGD, .lr = LR};
    m->opt = tg_optimizer_new(m->ctx, m->params, n, &sgd);
    m->tape = tg_tape_new(m->ctx);
    return !m->opt || !m->tape;
}

NOINLINE static float tape_step(tape_rnn *m) {
    tg_tape_reset(m->tape);
    tg_tensor *out = tg_module_forward(m->head, m->tape, tg_rnn_forward(m->rnn, m->tape, m->x, NULL));
    tg_tensor *loss = tg_mse(m->tape, out, m->y);
    if (!loss || tg_backward(m->tape, loss) != TG_OK) {
        fprintf(stderr, "bench_rnn: %s\n", tg_errmsg(m->ctx));
        exit(1);
    }
    tg_optimizer_step(m->opt);
    tg_optimizer_zero_grad(m->opt);
    return loss->data[0];
}

static void tape_free(tape_rnn *m) {
    tg_tape_free(m->tape);
    tg_optimizer_free(m->opt);
    tg_module_free(m->rnn);
    tg_module_free(m->head);
    tg_ctx_free(m->ctx);
}

/* ---- the comparison ------------------------------------------------------------------------ */

enum { TAPE_1, PLAIN_1, TAPE_2, PLAIN_2, GRU_1, PLAIN_GRU_1, GRU_2, PLAIN_GRU_2, N_RUNNERS };
static const char *const runner_names[N_RUNNERS] = {
    "tapegrad LSTM, 1 thread", "plain C LSTM, 1 thread", "tapegrad LSTM, 2 threads", "plain C LSTM, 2 threads",
    "tapegrad GRU, 1 thread", "plain C GRU, 1 thread", "tapegrad GRU, 2 threads", "plain C GRU, 2 threads"};

typedef struct runners {
    tape_rnn tape[2], gru[2];
    plain_rnn plain[2], plain_gru[2];
    tg_ctx *plain_ctx[2];
    float last_loss[N_RUNNERS];
} runners;

static float step_of(runners *r, int which) {
    switch (which) {
    case TAPE_1: return tape_step(&r->tape[0]);
    case TAPE_2: return tape_step(&r->tape[1]);
    case PLAIN_1: return plain_step(&r->plain[0]);
    case PLAIN_2: return plain_step(&r->plain[1]);
    case GRU_1: return tape_step(&r->gru[0]);
    case GRU_2: return tape_step(&r->gru[1]);
    case PLAIN_GRU_1: return plain_step(&r->plain_gru[0]);
    default: return plain_step(&r->plain_gru[1]);
    }
}

/* `bench_rnn --profile [lstm|gru] [STEPS]`: STEPS (default 2) steps of tapegrad's LSTM (or GRU)
 * and of plain C's at one thread, nothing timed: for `valgrind --tool=callgrind`, which counts
 * tape_step and plain_step, or a sampling profiler (more steps). */
static int profile(runners *r, bool gru, int steps) {
    for (int s = 0; s < steps; s++) {
        step_of(r, gru ? GRU_1 : TAPE_1);
        step_of(r, gru ? PLAIN_GRU_1 : PLAIN_1);
    }
    return 0;
}

/* The matrix products' FLOPs of one LSTM step (2mnk each): the input projection and its weight
 * gradient (x needs none), and at every time step the recurrent product, its weight gradient and
 * its h gradient (none at the first step: h[0] is the zero state). The head's are left out. */
static double lstm_step_flops(void) {
    double input = 2.0 * BATCH * STEPS * INPUTS * GATES, recurrent = 2.0 * BATCH * GATES * HIDDEN;
    return 2 * input + recurrent * (3 * STEPS - 1);
}

/* `bench_rnn lstm THREADS [STEPS]`: tapegrad's LSTM step alone, as "ms_per_step X", for
 * bench/torch_compare.py to interleave with PyTorch; after it, the CPU time per step and the
 * products' GFLOP/s (lstm_step_flops) by the wall clock and by the CPU time (on a shared
 * machine the wall clock also counts the neighbours' time slices). STEPS (5 unless given):
 * more for a profiler. */
static int one_measurement(int threads, int steps) {
    tape_rnn m;
    if (threads < 1 || tape_init(&m, TG_RNN_LSTM, threads)) {
        fprintf(stderr, "usage: bench_rnn lstm THREADS (>= 1)\n");
        return 2;
    }
    tape_step(&m);
    double start = bench_now_seconds(), cpu_start = bench_cpu_seconds();
    for (int s = 0; s < steps; s++) tape_step(&m);
    double seconds = (bench_now_seconds() - start) / steps;
    double cpu_seconds = (bench_cpu_seconds() - cpu_start) / steps;
    printf("ms_per_step %.6f cpu_ms_per_step %.6f gflops %.2f cpu_gflops %.2f\n", seconds * 1e3,
           cpu_seconds * 1e3, lstm_step_flops() / seconds * 1e-9, lstm_step_flops() / cpu_seconds * 1e-9);
    tape_free(&m);
    return 0;
}

int main(int argc, char **argv) {
    if ((argc == 3 || argc == 4) && strcmp(argv[1], "lstm") == 0)
        return one_measurement(atoi(argv[2]), argc == 4 && atoi(argv[3]) > 0 ? atoi(argv[3]) : 5);
    printf("matrix products: %s\n", tg_gemm_backend());
    runners r;
    bool profiling = argc > 1 && strcmp(argv[1], "--profile") == 0;
    int thread_counts = profiling ? 1 : 2; /* profiling runs the 1-thread runners only */
    for (int k = 0; k < thread_counts; k++) {
        if (tape_init(&r.tape[k], TG_RNN_LSTM, k + 1) || tape_init(&r.gru[k], TG_RNN_GRU, k + 1)) {
            fprintf(stderr, "bench_rnn: setup failed\n");
            return 1;
        }
        r.plain_ctx[k] = tg_ctx_new();
        tg_ctx_set_threads(r.plain_ctx[k], k + 1);
        plain_init(&r.plain[k], r.plain_ctx[k], 4, r.tape[k].params, r.tape[k].x->data, r.tape[k].y->data);
        plain_init(&r.plain_gru[k], r.plain_ctx[k], 3, r.gru[k].params, r.gru[k].x->data, r.gru[k].y->data);
    }
    if (profiling) return profile(&r, argc > 2 && strcmp(argv[2], "gru") == 0, argc > 3 ? atoi(argv[3]) : 2);
    double seconds[N_RUNNERS][ROUNDS];
    for (int which = 0; which < N_RUNNERS; which++) step_of(&r, which); /* warm: arenas, pools */
    for (int round = 0; round < ROUNDS; round++)
        for (int which = 0; which < N_RUNNERS; which++) {
            double start = bench_now_seconds();
            for (int s = 0; s < STEPS_PER_ROUND; s++) r.last_loss[which] = step_of(&r, which);
            seconds[which][round] = (bench_now_seconds() - start) / STEPS_PER_ROUND;
        }
    bench_timing t[N_RUNNERS];
    printf("LSTM and GRU h%d T%d b%d in%d, linear head on h[T], MSE, SGD lr %g: ms per step (forward, "
           "backward, update), median of %d interleaved rounds of %d steps [min-max]\n",
           HIDDEN, STEPS, BATCH, INPUTS, (double)LR, ROUNDS, STEPS_PER_ROUND);
    for (int which = 0; which < N_RUNNERS; which++) {
        t[which] = bench_summarize(seconds[which], ROUNDS);
        printf("  %-26s %8.3f ms [%.3f-%.3f]  loss after %d steps %.7g\n", runner_names[which],
               t[which].median * 1e3, t[which].min * 1e3, t[which].max * 1e3,
               1 + ROUNDS * STEPS_PER_ROUND, (double)r.last_loss[which]);
    }
    printf("  tapegrad / plain C: LSTM %.3f at 1 thread, %.3f at 2 threads; GRU %.3f at 1 thread, %.3f at 2\n",
           t[TAPE_1].median / t[PLAIN_1].median, t[TAPE_2].median / t[PLAIN_2].median,
           t[GRU_1].median / t[PLAIN_GRU_1].median, t[GRU_2].median / t[PLAIN_GRU_2].median);
    printf("  2 threads / 1 thread: LSTM tapegrad %.3f, plain C %.3f; GRU tapegrad %.3f, plain C %.3f\n",
           t[TAPE_2].median / t[TAPE_1].median, t[PLAIN_2].median / t[PLAIN_1].median,
           t[GRU_2].median / t[GRU_1].median, t[PLAIN_GRU_2].median / t[PLAIN_GRU_1].median);
    size_t peak = tg_tape_bytes_peak(r.tape[0].tape), plain = r.plain[0].activation_bytes;
    size_t gru_peak = tg_tape_bytes_peak(r.gru[0].tape), gru_plain = r.plain_gru[0].activation_bytes;
    printf("  tape peak vs plain C activations: LSTM %.2f MB vs %.2f MB (%.2fx); GRU %.2f MB vs %.2f MB (%.2fx)\n",
           peak / 1e6, plain / 1e6, (double)peak / (double)plain, gru_peak / 1e6, gru_plain / 1e6,
           (double)gru_peak / (double)gru_plain);
    int bad = 0;
    for (int which = 0; which < N_RUNNERS; which += 2) { /* each tapegrad runner beside its plain twin */
        float a = r.last_loss[which], b = r.last_loss[which + 1];
        if (fabsf(a - b) > 1e-4f * (1 + fabsf(b))) {
            fprintf(stderr, "bench_rnn: %s and %s disagree: loss %.7g vs %.7g\n", runner_names[which],
                    runner_names[which + 1], (double)a, (double)b);
            bad = 1;
        }
    }
    for (int k = 0; k < 2; k++) {
        tape_free(&r.tape[k]);
        tape_free(&r.gru[k]);
        plain_free(&r.plain[k]);
        plain_free(&r.plain_gru[k]);
        tg_ctx_free(r.plain_ctx[k]);
    }
    return bad;
}
