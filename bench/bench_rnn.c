/*
 * bench/bench_rnn.c — the LSTM workload of issue 14 against a hand-written LSTM:
 *   LSTM hidden 128, T = 100, batch 32, 16 inputs, a linear head on h[T], MSE, SGD lr 0.01.
 * tapegrad (tg_rnn_new + tg_linear_new + tg_mse + tg_optimizer) and the plain C reference below
 * (no tape, no framework: the forward and backward of the same LSTM written out, with the same
 * GEMM entry point tgi_gemm and the same activation functions, so the FLOPs are the same) train
 * the same weights on the same data. Printed: ms per step at 1 and 2 threads (median of ROUNDS
 * interleaved rounds, min-max), the ratios, tapegrad's tape peak against the activation memory
 * of the plain C version, and both losses (they must agree: the bench is also a check). The GRU
 * of the same size is timed beside it (tapegrad only).
 * Run with `zig build bench -Doptimize=ReleaseFast`.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct timing {
    double median, min, max;
} timing;

static timing summarize(double *values, int n) {
    qsort(values, (size_t)n, sizeof *values, compare_doubles);
    return (timing){values[n / 2], values[0], values[n - 1]};
}

/* ---- the plain C reference ----------------------------------------------------------------- */

/* Parameters and their gradients share one layout: w_ih, w_hh, b_ih, b_hh, w_head, b_head. */
enum { W_IH, W_HH, B_IH, B_HH, W_HEAD, B_HEAD, N_PARAMS };
static const int64_t param_sizes[N_PARAMS] = {GATES * INPUTS, GATES * HIDDEN, GATES, GATES, HIDDEN, 1};

typedef struct plain_lstm {
    tg_ctx *ctx; /* only for its thread pool: tgi_gemm cuts products over it */
    float *p[N_PARAMS], *g[N_PARAMS];
    const float *x, *y;
    /* what the backward needs: xp [B,T,4H]; per step the gates [B,4H], c, h and tanh(c) [B,H]
     * (c and h with the zero state at index 0) */
    float *xp, *gates, *c, *h, *squashed;
    float *dxp, *dh, *dc, *out;
    size_t activation_bytes;
} plain_lstm;

static float *floats(int64_t n) { return calloc((size_t)n, sizeof(float)); }

static void plain_init(plain_lstm *m, tg_ctx *ctx, tg_tensor *const *params, const float *x, const float *y) {
    m->ctx = ctx;
    for (int i = 0; i < N_PARAMS; i++) {
        m->p[i] = floats(param_sizes[i]);
        m->g[i] = floats(param_sizes[i]);
        memcpy(m->p[i], params[i]->data, (size_t)param_sizes[i] * sizeof(float));
    }
    m->x = x;
    m->y = y;
    m->xp = floats(BATCH * STEPS * GATES);
    m->gates = floats(STEPS * BATCH * GATES);
    m->c = floats((STEPS + 1) * BATCH * HIDDEN);
    m->h = floats((STEPS + 1) * BATCH * HIDDEN);
    m->squashed = floats(STEPS * BATCH * HIDDEN);
    m->activation_bytes = sizeof(float) * (size_t)(BATCH * STEPS * GATES + STEPS * BATCH * GATES +
                                                   (3 * STEPS + 2) * BATCH * HIDDEN);
    m->dxp = floats(BATCH * STEPS * GATES);
    m->dh = floats(BATCH * HIDDEN);
    m->dc = floats(BATCH * HIDDEN);
    m->out = floats(BATCH);
}

static void plain_free(plain_lstm *m) {
    for (int i = 0; i < N_PARAMS; i++) {
        free(m->p[i]);
        free(m->g[i]);
    }
    float *buffers[] = {m->xp, m->gates, m->c, m->h, m->squashed, m->dxp, m->dh, m->dc, m->out};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) free(buffers[i]);
}

static float sigmoid_or_tanh(int block, float v) { return block == 2 ? tanhf(v) : tgi_sigmoid(v); }

static float plain_forward(plain_lstm *m) {
    for (int64_t r = 0; r < BATCH * STEPS; r++) memcpy(m->xp + r * GATES, m->p[B_IH], GATES * sizeof(float));
    tgi_gemm(m->ctx, false, true, BATCH * STEPS, GATES, INPUTS, 1, m->x, INPUTS, m->p[W_IH], INPUTS, 1, m->xp, GATES);
    for (int64_t t = 0; t < STEPS; t++) {
        float *gates = m->gates + t * BATCH * GATES;
        const float *h = m->h + t * BATCH * HIDDEN, *c = m->c + t * BATCH * HIDDEN;
        float *c_next = m->c + (t + 1) * BATCH * HIDDEN, *h_next = m->h + (t + 1) * BATCH * HIDDEN;
        float *sq = m->squashed + t * BATCH * HIDDEN;
        for (int64_t b = 0; b < BATCH; b++) memcpy(gates + b * GATES, m->p[B_HH], GATES * sizeof(float));
        tgi_gemm(m->ctx, false, true, BATCH, GATES, HIDDEN, 1, h, HIDDEN, m->p[W_HH], HIDDEN, 1, gates, GATES);
        for (int64_t b = 0; b < BATCH; b++) {
            float *gb = gates + b * GATES;
            const float *xb = m->xp + b * STEPS * GATES + t * GATES;
            for (int k = 0; k < 4; k++)
                for (int64_t j = k * HIDDEN; j < (k + 1) * HIDDEN; j++) gb[j] = sigmoid_or_tanh(k, xb[j] + gb[j]);
            for (int64_t j = 0; j < HIDDEN; j++) {
                int64_t at = b * HIDDEN + j;
                c_next[at] = gb[HIDDEN + j] * c[at] + gb[j] * gb[2 * HIDDEN + j];
                sq[at] = tanhf(c_next[at]);
                h_next[at] = gb[3 * HIDDEN + j] * sq[at];
            }
        }
    }
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

/* Step t's pre-activation gradient into dxp[:, t, :], from dh = dL/dh[t+1] and dc = dL/dc[t+1]
 * (which becomes dL/dc[t]). */
static void plain_cell_backward(plain_lstm *m, int64_t t) {
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

static void plain_backward(plain_lstm *m) {
    const float *h_last = m->h + STEPS * BATCH * HIDDEN;
    for (int64_t b = 0; b < BATCH; b++) {
        float d_out = 2.0f * (m->out[b] - m->y[b]) / BATCH;
        m->g[B_HEAD][0] += d_out;
        for (int64_t j = 0; j < HIDDEN; j++) {
            m->g[W_HEAD][j] += d_out * h_last[b * HIDDEN + j];
            m->dh[b * HIDDEN + j] = d_out * m->p[W_HEAD][j];
        }
    }
    memset(m->dc, 0, BATCH * HIDDEN * sizeof(float));
    const int64_t ld = STEPS * GATES;
    for (int64_t t = STEPS - 1; t >= 0; t--) {
        plain_cell_backward(m, t);
        const float *dz = m->dxp + t * GATES, *h = m->h + t * BATCH * HIDDEN;
        for (int64_t b = 0; b < BATCH; b++)
            for (int64_t j = 0; j < GATES; j++) m->g[B_HH][j] += dz[b * ld + j];
        if (t > 0) /* h[0] is the zero state: nothing to send it */
            tgi_gemm(m->ctx, false, false, BATCH, HIDDEN, GATES, 1, dz, ld, m->p[W_HH], HIDDEN, 0, m->dh, HIDDEN);
        tgi_gemm(m->ctx, true, false, GATES, HIDDEN, BATCH, 1, dz, ld, h, HIDDEN, 1, m->g[W_HH], HIDDEN);
    }
    tgi_gemm(m->ctx, true, false, GATES, INPUTS, BATCH * STEPS, 1, m->dxp, GATES, m->x, INPUTS, 1, m->g[W_IH], INPUTS);
    for (int64_t r = 0; r < BATCH * STEPS; r++)
        for (int64_t j = 0; j < GATES; j++) m->g[B_IH][j] += m->dxp[r * GATES + j];
}

/* Not inlined, so `valgrind --tool=callgrind --toggle-collect=plain_step` can count it. */
NOINLINE static float plain_step(plain_lstm *m) {
    float loss = plain_forward(m);
    plain_backward(m);
    for (int i = 0; i < N_PARAMS; i++) {
        float *restrict w = m->p[i], *restrict g = m->g[i];
        for (int64_t k = 0; k < param_sizes[i]; k++) w[k] -= LR * g[k];
        memset(g, 0, (size_t)param_sizes[i] * sizeof(float));
    }
    return loss;
}

/* ---- tapegrad ------------------------------------------------------------------------------ */

typedef struct tape_lstm {
    tg_ctx *ctx;
    tg_tape *tape;
    tg_module *rnn, *head;
    tg_tensor *x, *y, *params[N_PARAMS];
    tg_optimizer *opt;
} tape_lstm;

static int tape_init(tape_lstm *m, tg_rnn_kind kind, int threads) {
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

NOINLINE static float tape_step(tape_lstm *m) {
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

static void tape_free(tape_lstm *m) {
    tg_tape_free(m->tape);
    tg_optimizer_free(m->opt);
    tg_module_free(m->rnn);
    tg_module_free(m->head);
    tg_ctx_free(m->ctx);
}

/* ---- the comparison ------------------------------------------------------------------------ */

enum { TAPE_1, PLAIN_1, TAPE_2, PLAIN_2, GRU_1, GRU_2, N_RUNNERS };
static const char *const runner_names[N_RUNNERS] = {"tapegrad LSTM, 1 thread", "plain C LSTM, 1 thread",
                                                    "tapegrad LSTM, 2 threads", "plain C LSTM, 2 threads",
                                                    "tapegrad GRU, 1 thread", "tapegrad GRU, 2 threads"};

typedef struct runners {
    tape_lstm tape[2], gru[2];
    plain_lstm plain[2];
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
    default: return tape_step(&r->gru[1]);
    }
}

/* `bench_rnn --profile [gru]`: two steps of tapegrad's LSTM (or GRU) and of plain C's at one
 * thread, nothing timed: for `valgrind --tool=callgrind`, which counts tape_step and plain_step. */
static int profile(runners *r, bool gru) {
    for (int s = 0; s < 2; s++) {
        step_of(r, gru ? GRU_1 : TAPE_1);
        step_of(r, PLAIN_1);
    }
    return 0;
}

int main(int argc, char **argv) {
    printf("matrix products: %s\n", tg_gemm_backend());
    runners r;
    for (int k = 0; k < 2; k++) {
        if (tape_init(&r.tape[k], TG_RNN_LSTM, k + 1) || tape_init(&r.gru[k], TG_RNN_GRU, k + 1)) {
            fprintf(stderr, "bench_rnn: setup failed\n");
            return 1;
        }
        r.plain_ctx[k] = tg_ctx_new();
        tg_ctx_set_threads(r.plain_ctx[k], k + 1);
        plain_init(&r.plain[k], r.plain_ctx[k], r.tape[k].params, r.tape[k].x->data, r.tape[k].y->data);
    }
    if (argc > 1 && strcmp(argv[1], "--profile") == 0) return profile(&r, argc > 2 && strcmp(argv[2], "gru") == 0);
    double seconds[N_RUNNERS][ROUNDS];
    for (int which = 0; which < N_RUNNERS; which++) step_of(&r, which); /* warm: arenas, pools */
    for (int round = 0; round < ROUNDS; round++)
        for (int which = 0; which < N_RUNNERS; which++) {
            double start = now_seconds();
            for (int s = 0; s < STEPS_PER_ROUND; s++) r.last_loss[which] = step_of(&r, which);
            seconds[which][round] = (now_seconds() - start) / STEPS_PER_ROUND;
        }
    timing t[N_RUNNERS];
    printf("LSTM h%d T%d b%d in%d, linear head on h[T], MSE, SGD lr %g: ms per step (forward, "
           "backward, update), median of %d interleaved rounds of %d steps [min-max]\n",
           HIDDEN, STEPS, BATCH, INPUTS, (double)LR, ROUNDS, STEPS_PER_ROUND);
    for (int which = 0; which < N_RUNNERS; which++) {
        t[which] = summarize(seconds[which], ROUNDS);
        printf("  %-26s %8.3f ms [%.3f-%.3f]  loss after %d steps %.7g\n", runner_names[which],
               t[which].median * 1e3, t[which].min * 1e3, t[which].max * 1e3,
               1 + ROUNDS * STEPS_PER_ROUND, (double)r.last_loss[which]);
    }
    printf("  ratio tapegrad / plain C: %.3f at 1 thread, %.3f at 2 threads\n",
           t[TAPE_1].median / t[PLAIN_1].median, t[TAPE_2].median / t[PLAIN_2].median);
    printf("  2 threads / 1 thread: tapegrad %.3f, plain C %.3f, tapegrad GRU %.3f\n",
           t[TAPE_2].median / t[TAPE_1].median, t[PLAIN_2].median / t[PLAIN_1].median,
           t[GRU_2].median / t[GRU_1].median);
    size_t peak = tg_tape_bytes_peak(r.tape[0].tape), plain = r.plain[0].activation_bytes;
    printf("  tape peak %.2f MB (GRU %.2f MB); plain C activations %.2f MB; ratio %.2f\n", peak / 1e6,
           tg_tape_bytes_peak(r.gru[0].tape) / 1e6, plain / 1e6, (double)peak / (double)plain);
    int bad = fabsf(r.last_loss[TAPE_1] - r.last_loss[PLAIN_1]) > 1e-4f * (1 + fabsf(r.last_loss[PLAIN_1]));
    if (bad) fprintf(stderr, "bench_rnn: tapegrad and plain C losses disagree\n");
    for (int k = 0; k < 2; k++) {
        tape_free(&r.tape[k]);
        tape_free(&r.gru[k]);
        plain_free(&r.plain[k]);
        tg_ctx_free(r.plain_ctx[k]);
    }
    return bad;
}
