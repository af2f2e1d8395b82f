/*
 * bench/bench_threads.c — do two threads ever hurt? (issue 25, item 4)
 *
 * Two workloads, each at 1 thread, at 2, and at 2 that never back off (tg_ctx_set_threads_backoff
 * off: the pool as it was before it learned to back off): the LSTM step of bench_rnn (hidden
 * 128, T = 100, batch 32, 16 inputs, linear head, MSE, SGD) and the MLP d4 w1024 b256 step of
 * bench_models (sigmoid, softmax cross-entropy, SGD). Each round measures them quiet, then with a competing
 * busy loop: a child process spinning, pinned to CPU 0 (as `taskset -c 0 sh -c 'while :; do :;
 * done'` would), started before and stopped after the busy half of the round. Rounds interleave
 * everything, so the ratios to 1T are taken within a round; medians with [min-max].
 *
 * Also printed: the CPU's name, the load average before and after (the machine may be shared),
 * and what each 2-thread context's pool decided (tg_ctx_threads_describe).
 * `bench_threads [ROUNDS] [SECONDS]`: rounds (default 7) and seconds per measurement (default 0.25).
 */
#define _GNU_SOURCE /* sched_setaffinity */
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench_timing.h"
#include "tapegrad.h"

#define MAX_ROUNDS 31

/* ---- the workloads --------------------------------------------------------------------------- */

enum { LSTM, MLP, N_WORKLOADS };
static const char *const workload_names[N_WORKLOADS] = {"LSTM h128 T100 b32", "MLP d4 w1024 b256"};

typedef struct model {
    tg_ctx *ctx;
    tg_tape *tape;
    tg_module *body, *head; /* the LSTM and its head; the MLP alone */
    tg_tensor *x, *y, *params[16];
    tg_optimizer *opt;
    int kind;
} model;

static void die(const model *m, const char *what) {
    fprintf(stderr, "bench_threads: %s: %s\n", what, m->ctx ? tg_errmsg(m->ctx) : "no context");
    exit(1);
}

/* The runners: one thread; two threads; two that never back off (the pool as it was before). */
enum { ONE, TWO, TWO_SPINNING, N_VARIANTS };
static const char *const variant_names[N_VARIANTS] = {"1 thread", "2 threads", "2T, no back-off"};

static void model_init(model *m, int kind, int variant) {
    memset(m, 0, sizeof *m);
    m->kind = kind;
    m->ctx = tg_ctx_new();
    if (!m->ctx || tg_ctx_set_threads(m->ctx, variant == ONE ? 1 : 2) != TG_OK ||
        tg_ctx_set_threads_backoff(m->ctx, variant != TWO_SPINNING) != TG_OK)
        die(m, "context");
    int n = 0;
    if (kind == LSTM) {
        tg_rnn_config c = tg_rnn_defaults(TG_RNN_LSTM, 16, 128);
        m->body = tg_rnn_new(m->ctx, "lstm", &c);
        m->head = tg_linear_new(m->ctx, "head", 128, 1, true, NULL, 3);
        m->x = tg_zeros(m->ctx, TG_SHAPE(32, 100, 16));
        m->y = tg_zeros(m->ctx, TG_SHAPE(32, 1));
        if (!m->body || !m->head || !m->x || !m->y) die(m, "LSTM");
        tg_fill_normal(m->y, 0, 1, 8);
        n = tg_module_params(m->body, m->params, 16);
        n += tg_module_params(m->head, m->params + n, 16 - n);
    } else {
        tg_mlp_config c = {.in = 64, .out = 10, .width = 1024, .depth = 4, .activation = TG_ACT_SIGMOID,
                           .init = tg_init_xavier(TG_ACT_SIGMOID), .seed = 3};
        m->body = tg_mlp_new(m->ctx, "mlp", &c);
        m->x = tg_zeros(m->ctx, TG_SHAPE(256, 64));
        m->y = tg_zeros(m->ctx, TG_SHAPE(256));
        if (!m->body || !m->x || !m->y) die(m, "MLP");
        for (int64_t i = 0; i < 256; i++) m->y->data[i] = (float)(i % 10);
        n = tg_module_params(m->body, m->params, 16);
    }
    tg_fill_normal(m->x, 0, 1, 7);
    m->opt = tg_optimizer_new(m->ctx, m->params, n, &(tg_optimizer_config){.kind = TG_OPT_SGD, .lr = 0.01f});
    m->tape = tg_tape_new(m->ctx);
    if (!m->opt || !m->tape) die(m, "optimizer");
}

static float model_step(model *m) {
    tg_tape_reset(m->tape);
    tg_tensor *loss;
    if (m->kind == LSTM) {
        tg_tensor *h = tg_rnn_forward(m->body, m->tape, m->x, NULL);
        loss = tg_mse(m->tape, tg_module_forward(m->head, m->tape, h), m->y);
    } else {
        loss = tg_cross_entropy(m->tape, tg_module_forward(m->body, m->tape, m->x), m->y);
    }
    if (!loss || tg_backward(m->tape, loss) != TG_OK || tg_optimizer_step_zero_grad(m->opt) != TG_OK)
        die(m, "step");
    return loss->data[0];
}

static void model_free(model *m) {
    tg_optimizer_free(m->opt);
    tg_tape_free(m->tape);
    tg_module_free(m->body);
    tg_module_free(m->head);
    tg_ctx_free(m->ctx);
}

/* ---- the machine ----------------------------------------------------------------------------- */

/* A child that spins on CPU 0 until killed; its pid. */
static pid_t start_spinner(void) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(0, &set);
        sched_setaffinity(0, sizeof set, &set);
        for (volatile unsigned long i = 0;; i++) {}
    }
    if (pid < 0) {
        perror("bench_threads: fork");
        exit(1);
    }
    return pid;
}

static void stop_spinner(pid_t pid) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static void print_line_of(const char *path, const char *prefix, const char *label) {
    FILE *f = fopen(path, "r");
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, prefix, strlen(prefix)) != 0) continue;
        printf("%s%s", label, line + strlen(prefix));
        break;
    }
    if (f) fclose(f);
}

static void print_loadavg(const char *when) {
    char label[64];
    snprintf(label, sizeof label, "load average %s: ", when);
    print_line_of("/proc/loadavg", "", label);
}

/* ---- the rounds ------------------------------------------------------------------------------ */

enum { QUIET, BUSY, N_CONDITIONS };
static const char *const condition_names[N_CONDITIONS] = {"quiet", "busy (CPU 0 spun)"};

/* Seconds per step, over as many steps as fill `seconds`. */
static double time_steps(model *m, int steps) {
    double start = bench_now_seconds();
    for (int s = 0; s < steps; s++) model_step(m);
    return (bench_now_seconds() - start) / steps;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 7;
    double seconds = argc > 2 ? atof(argv[2]) : 0.25;
    if (rounds < 1 || rounds > MAX_ROUNDS || !(seconds > 0)) {
        fprintf(stderr, "usage: bench_threads [ROUNDS 1..%d] [SECONDS per measurement]\n", MAX_ROUNDS);
        return 2;
    }
    print_line_of("/proc/cpuinfo", "model name\t: ", "CPU: ");
    printf("cores available: %ld; matrix products: %s\n", sysconf(_SC_NPROCESSORS_ONLN), tg_gemm_backend());
    print_loadavg("before");
    model m[N_WORKLOADS][N_VARIANTS];
    int steps[N_WORKLOADS];
    for (int w = 0; w < N_WORKLOADS; w++) {
        for (int t = 0; t < N_VARIANTS; t++) {
            model_init(&m[w][t], w, t);
            model_step(&m[w][t]); /* warm: arenas, the pool */
        }
        double one = time_steps(&m[w][0], 2);
        steps[w] = (int)(seconds / one) + 1;
    }
    static double t[N_WORKLOADS][N_CONDITIONS][N_VARIANTS][MAX_ROUNDS];
    static double ratio[N_WORKLOADS][N_CONDITIONS][N_VARIANTS][MAX_ROUNDS];
    int backed_off[N_WORKLOADS][N_CONDITIONS] = {{0}};
    char verdict[N_WORKLOADS][N_CONDITIONS][400];
    for (int r = 0; r < rounds; r++)
        for (int c = 0; c < N_CONDITIONS; c++) {
            pid_t spinner = c == BUSY ? start_spinner() : 0;
            if (spinner) usleep(20000); /* let the scheduler place it */
            for (int w = 0; w < N_WORKLOADS; w++) {
                for (int k = 0; k < N_VARIANTS; k++) {
                    int v = (k + r) % N_VARIANTS; /* rotate which goes first */
                    t[w][c][v][r] = time_steps(&m[w][v], steps[w]);
                }
                for (int v = 0; v < N_VARIANTS; v++) ratio[w][c][v][r] = t[w][c][v][r] / t[w][c][ONE][r];
                backed_off[w][c] += tg_ctx_threads_backed_off(m[w][TWO].ctx);
                tg_ctx_threads_describe(m[w][TWO].ctx, verdict[w][c], sizeof verdict[w][c]);
            }
            if (spinner) stop_spinner(spinner);
        }
    printf("ms per training step, median of %d interleaved rounds [min-max]; ratio 2T/1T within each round\n",
           rounds);
    for (int w = 0; w < N_WORKLOADS; w++)
        for (int c = 0; c < N_CONDITIONS; c++) {
            printf("  %-18s %-17s", workload_names[w], condition_names[c]);
            for (int v = 0; v < N_VARIANTS; v++) {
                bench_timing x = bench_summarize(t[w][c][v], rounds);
                printf("  %s %.1f [%.1f-%.1f]", variant_names[v], x.median * 1e3, x.min * 1e3, x.max * 1e3);
            }
            printf("\n  %-36s", "");
            for (int v = TWO; v < N_VARIANTS; v++) {
                bench_timing q = bench_summarize(ratio[w][c][v], rounds);
                printf("  %s / 1T %.2f [%.2f-%.2f]", variant_names[v], q.median, q.min, q.max);
            }
            printf("\n");
        }
    printf("the 2-thread pools after each measurement: backed off in how many rounds; the last verdict\n");
    for (int w = 0; w < N_WORKLOADS; w++)
        for (int c = 0; c < N_CONDITIONS; c++)
            printf("  %-20s %-18s %d/%d  %s\n", workload_names[w], condition_names[c], backed_off[w][c],
                   rounds, verdict[w][c]);
    print_loadavg("after");
    for (int w = 0; w < N_WORKLOADS; w++)
        for (int k = 0; k < N_VARIANTS; k++) model_free(&m[w][k]);
    return 0;
}
