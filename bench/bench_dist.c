/*
 * bench/bench_dist.c — data-parallel training over MPI: 1 process against 2 on this machine.
 *
 *   MLP depth 20 width 256 (64 inputs, 10 classes), global batch 128, Adam
 *   LSTM hidden 128, T = 100, batch 32, 16 inputs, linear head on h[T], MSE, SGD (bench_rnn.c)
 *
 * For each: ms per step of 1 process at 1 thread, 1 process at 2 threads, and 2 processes at
 * 1 thread each (`mpirun -np 2`, each on half of every global batch, gradients reduced by
 * tapegrad_dist's bucketed all-reduce); the scaling efficiency T(1 process, 1 thread) /
 * (2 T(2 processes)); the share of a step spent inside tg_dist_wait (the reductions the
 * backward pass did not hide, plus waiting for the slower rank); and, for docs/distributed.md,
 * the backward pass alone. Medians of ROUNDS rounds with min-max.
 *
 *   zig build bench-dist -Doptimize=ReleaseFast      (starts `mpirun -np 2` on itself)
 *   bench_dist --worker                               (what mpirun runs: the 2-process part)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench_timing.h"
#include "tapegrad_dist.h"

#define ROUNDS 7
#define MAX_PARAMS 64

typedef enum workload_kind { MLP, LSTM } workload_kind;

typedef struct workload {
    workload_kind kind;
    int64_t global_batch;
    int steps_per_round;
    tg_ctx *ctx;
    tg_tape *tape;
    tg_module *body, *head;
    tg_tensor *x, *y, *params[MAX_PARAMS];
    int n_params;
    tg_optimizer *opt;
    double backward_seconds; /* summed over steps, for the backward-only figure */
} workload;

static int setup(workload *w, workload_kind kind, int threads, int rank, int size) {
    memset(w, 0, sizeof *w);
    w->kind = kind;
    w->ctx = tg_ctx_new();
    tg_ctx_set_threads(w->ctx, threads);
    int64_t rows;
    if (kind == MLP) {
        w->global_batch = 128;
        w->steps_per_round = 20;
        rows = w->global_batch / size;
        tg_mlp_config c = {.in = 64, .out = 10, .width = 256, .depth = 20, .activation = TG_ACT_RELU,
                           .init = tg_init_he(TG_ACT_RELU), .seed = 7};
        w->body = tg_mlp_new(w->ctx, "mlp", &c);
        w->x = tg_zeros(w->ctx, TG_SHAPE(rows, 64));
        w->y = tg_zeros(w->ctx, TG_SHAPE(rows));
        if (!w->body || !w->x || !w->y) return 1;
        tg_fill_normal(w->x, 0, 1, 100 + (uint64_t)rank);
        for (int64_t i = 0; i < rows; i++) w->y->data[i] = (float)((i * 7 + rank) % 10);
    } else {
        w->global_batch = 32;
        w->steps_per_round = 4;
        rows = w->global_batch / size;
        tg_rnn_config c = tg_rnn_defaults(TG_RNN_LSTM, 16, 128);
        w->body = tg_rnn_new(w->ctx, "lstm", &c);
        w->head = tg_linear_new(w->ctx, "head", 128, 1, true, NULL, 3);
        w->x = tg_zeros(w->ctx, TG_SHAPE(rows, 100, 16));
        w->y = tg_zeros(w->ctx, TG_SHAPE(rows, 1));
        if (!w->body || !w->head || !w->x || !w->y) return 1;
        tg_fill_normal(w->x, 0, 1, 7 + (uint64_t)rank);
        tg_fill_normal(w->y, 0, 1, 8 + (uint64_t)rank);
    }
    w->n_params = tg_module_params(w->body, w->params, MAX_PARAMS);
    w->n_params += tg_module_params(w->head, w->params + w->n_params, MAX_PARAMS - w->n_params);
    tg_optimizer_config opt = kind == MLP ? (tg_optimizer_config){.kind = TG_OPT_ADAM, .lr = 1e-4f}
                                          : (tg_optimizer_config){.kind = TG_OPT_SGD, .lr = 0.01f};
    w->opt = tg_optimizer_new(w->ctx, w->params, w->n_params, &opt);
    w->tape = tg_tape_new(w->ctx);
    return !w->opt || !w->tape;
}

static void step(workload *w, tg_dist *dist) {
    tg_tape_reset(w->tape);
    tg_tensor *loss;
    if (w->kind == MLP) {
        loss = tg_cross_entropy(w->tape, tg_module_forward(w->body, w->tape, w->x), w->y);
    } else {
        tg_tensor *h = tg_rnn_forward(w->body, w->tape, w->x, NULL);
        loss = tg_mse(w->tape, tg_module_forward(w->head, w->tape, h), w->y);
    }
    double start = bench_now_seconds();
    tg_status status = loss ? tg_backward(w->tape, loss) : tg_errcode(w->ctx);
    w->backward_seconds += bench_now_seconds() - start;
    if (dist) status = tg_dist_wait(dist, status);
    if (status != TG_OK) {
        fprintf(stderr, "bench_dist: %s\n", tg_errmsg(w->ctx));
        exit(1);
    }
    tg_optimizer_step(w->opt);
    tg_optimizer_zero_grad(w->opt);
}

static void teardown(workload *w) {
    tg_tape_free(w->tape);
    tg_optimizer_free(w->opt);
    tg_module_free(w->body);
    tg_module_free(w->head);
    tg_ctx_free(w->ctx);
}

/* ms per step per round, the share of it inside tg_dist_wait, and backward ms per step. In a
 * world of several ranks a round is timed between barriers and the slowest rank's time counts. */
typedef struct measurement {
    bench_timing ms;
    double wait_share, backward_ms;
    int64_t gradient_bytes;
    int buckets;
    long long first_entry, entries; /* where the walk was when bucket 0 started, of how many */
} measurement;

static measurement measure(workload_kind kind, int threads, bool distributed) {
    workload w;
    int rank = 0, size = 1;
    if (distributed) {
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &size);
    }
    if (setup(&w, kind, threads, rank, size)) {
        fprintf(stderr, "bench_dist: setup: %s\n", tg_errmsg(w.ctx));
        exit(1);
    }
    measurement m = {0};
    /* on the workload's context: its backward walks fire the hook that starts the buckets */
    tg_dist *dist = distributed ? tg_dist_init(w.ctx, NULL, NULL) : NULL;
    if (distributed && (!dist || tg_dist_broadcast_params(dist, w.params, w.n_params) != TG_OK ||
                 tg_dist_attach(dist, w.params, w.n_params, NULL) != TG_OK)) {
        fprintf(stderr, "bench_dist: %s\n", tg_errmsg(w.ctx));
        exit(1);
    }
    for (int i = 0; i < 3; i++) step(&w, dist); /* warm-up: arena chunks, BLAS, buffers */
    double rounds[ROUNDS], wait_total = 0, time_total = 0;
    w.backward_seconds = 0;
    for (int r = 0; r < ROUNDS; r++) {
        tg_dist_stats before = {0}, after = {0};
        tg_dist_get_stats(dist, &before);
        if (dist) MPI_Barrier(MPI_COMM_WORLD);
        double start = bench_now_seconds();
        for (int s = 0; s < w.steps_per_round; s++) step(&w, dist);
        double times[2] = {bench_now_seconds() - start, 0};
        tg_dist_get_stats(dist, &after);
        times[1] = after.wait_seconds - before.wait_seconds;
        if (dist) MPI_Allreduce(MPI_IN_PLACE, times, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        rounds[r] = 1e3 * times[0] / w.steps_per_round;
        wait_total += times[1];
        time_total += times[0];
    }
    tg_dist_stats stats = {0};
    tg_dist_get_stats(dist, &stats);
    m.ms = bench_summarize(rounds, ROUNDS);
    m.wait_share = time_total > 0 ? wait_total / time_total : 0;
    m.backward_ms = 1e3 * w.backward_seconds / (ROUNDS * w.steps_per_round);
    for (int i = 0; i < w.n_params; i++) m.gradient_bytes += w.params[i]->size * (int64_t)sizeof(float);
    m.buckets = stats.buckets;
    m.first_entry = stats.first_launch_entry;
    m.entries = (long long)tg_tape_entries(w.tape);
    tg_dist_finalize(dist); /* MPI stays up: the worker initialised it */
    teardown(&w);
    return m;
}

/* ms of one blocking MPI_Allreduce of `bytes` of floats alone (median of ROUNDS): what the
 * transport costs with nothing to overlap, for the model of docs/distributed.md. */
static double allreduce_ms(int64_t bytes) {
    int64_t n = bytes / (int64_t)sizeof(float);
    float *buffer = calloc((size_t)n, sizeof *buffer);
    double rounds[ROUNDS];
    if (!buffer) return NAN;
    for (int r = -2; r < ROUNDS; r++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double start = bench_now_seconds();
        for (int k = 0; k < 5; k++)
            MPI_Allreduce(MPI_IN_PLACE, buffer, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        double t = (bench_now_seconds() - start) / 5;
        MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (r >= 0) rounds[r] = 1e3 * t;
    }
    free(buffer);
    return bench_summarize(rounds, ROUNDS).median;
}

/* The 2-process part, under mpirun: one line per workload on rank 0, read by the parent. MPI
 * is initialised here, so each workload's tg_dist leaves it running for the next. */
static int worker(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    for (int kind = MLP; kind <= LSTM; kind++) {
        measurement m = measure((workload_kind)kind, 1, true);
        double alone = allreduce_ms(m.gradient_bytes);
        if (rank == 0)
            printf("result %d %.4f %.4f %.4f %.4f %.4f %d %.4f %lld %lld\n", kind, m.ms.median, m.ms.min,
                   m.ms.max, m.wait_share, m.backward_ms, m.buckets, alone, m.first_entry, m.entries);
        fflush(stdout);
    }
    MPI_Finalize();
    return 0;
}

static void print_row(const char *what, const measurement *m, double base_ms, int processes) {
    printf("  %-26s %8.2f ms  [%.2f-%.2f]", what, m->ms.median, m->ms.min, m->ms.max);
    if (processes > 1)
        printf("  speed-up %.2fx, efficiency %.0f%%, %.0f%% of a step in tg_dist_wait",
               base_ms / m->ms.median, 100 * base_ms / (processes * m->ms.median), 100 * m->wait_share);
    else if (base_ms > 0)
        printf("  speed-up %.2fx", base_ms / m->ms.median);
    printf("  (backward %.2f ms)\n", m->backward_ms);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--worker") == 0) return worker(argc, argv);
    measurement one[2][2], two[2] = {{{0}}};
    for (int kind = MLP; kind <= LSTM; kind++)
        for (int t = 0; t < 2; t++) one[kind][t] = measure((workload_kind)kind, t + 1, false);
    /* the same program as two processes: one thread each on this machine's two cores */
    char self[4096], cmd[4200];
    ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
    self[length > 0 ? length : 0] = '\0';
    snprintf(cmd, sizeof cmd, "mpirun -np 2 --allow-run-as-root --oversubscribe --bind-to none "
             "'%s' --worker", self);
    FILE *p = length > 0 ? popen(cmd, "r") : NULL;
    char line[512];
    int got = 0;
    double allreduce[2] = {0, 0};
    while (p && fgets(line, sizeof line, p)) {
        int kind, buckets;
        measurement m = {0};
        double alone;
        if (sscanf(line, "result %d %lf %lf %lf %lf %lf %d %lf %lld %lld", &kind, &m.ms.median, &m.ms.min,
                   &m.ms.max, &m.wait_share, &m.backward_ms, &buckets, &alone, &m.first_entry,
                   &m.entries) == 10 && kind >= MLP && kind <= LSTM) {
            m.buckets = buckets;
            two[kind] = m;
            allreduce[kind] = alone;
            got++;
        }
    }
    if (!p || pclose(p) != 0 || got != 2) {
        fprintf(stderr, "bench_dist: mpirun -np 2 of this program failed (Open MPI installed?)\n");
        return 1;
    }
    const char *titles[2] = {"MLP d20 w256 (64 in, 10 classes), global batch 128, Adam",
                             "LSTM h128 T100 b32 in16, linear head, MSE, SGD"};
    printf("data-parallel over MPI on this machine: ms per step, median [min-max] of %d rounds\n", ROUNDS);
    for (int kind = MLP; kind <= LSTM; kind++) {
        double base = one[kind][0].ms.median;
        printf("%s: %.2f MB of gradients per step, %d buckets of <= 1 MiB\n", titles[kind],
               (double)one[kind][0].gradient_bytes / 1e6, two[kind].buckets);
        print_row("1 process x 1 thread", &one[kind][0], 0, 1);
        print_row("1 process x 2 threads", &one[kind][1], base, 1);
        print_row("2 processes x 1 thread", &two[kind], base, 2);
        printf("  one blocking MPI_Allreduce of those bytes alone, 2 processes: %.2f ms (%.2f GB/s of "
               "gradient)\n", allreduce[kind], (double)one[kind][0].gradient_bytes / 1e6 / allreduce[kind]);
        printf("  bucket 0's all-reduce started at tape entry %lld of %lld (-1: when the walk ended)\n",
               two[kind].first_entry, two[kind].entries);
    }
    return 0;
}
