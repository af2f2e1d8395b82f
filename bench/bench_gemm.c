/*
 * bench/bench_gemm.c — the portable GEMM (ops/gemm_portable.c, what -Dblas=false and
 * TAPEGRAD_BLAS=portable run) against the loaded BLAS, one call on one thread, at the shapes the
 * models use: the MLP d20 w256 b64 layer (forward X W^T, backward dX = dY W and dW = dY^T X),
 * the LSTM step (hidden 128, batch 32: the recurrent projection and its two backward products),
 * the samples of ops/blas_tune.c's shallow and large classes (an input projection of 16
 * features, 384^3), and 1024^3. Rounds interleave the backends (which goes first alternates), so
 * a slower stretch of a shared machine hits both; the ratio is taken within each round.
 *
 *   bench_gemm [ROUNDS]      (default 7; pin it: taskset -c 1 zig-out/bin/bench_gemm)
 *
 * C accumulates (beta = 1), as the backward does. Without a loaded BLAS only the portable
 * column is printed; in builds with FMA a third column times the no-packing kernels of
 * ops/gemm_thin.c alone at the shapes they take (a tuner candidate for the thin class), and their
 * time ratio against the BLAS column's. The BLAS column runs the kernels tapegrad chose for the shape's class
 * (named after the ratio); TAPEGRAD_BLAS_TUNE=0 for the fixed table's everywhere. Times are the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so the time the
 * thread waits for a core on a shared machine is not counted; caches still are shared.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_timing.h"
#include "ops/ops.h"

typedef struct shape {
    const char *name;
    bool trans_a, trans_b;
    int64_t m, n, k;
} shape;

static const shape shapes[] = {
    {"mlp fwd   NT  64x256x256", false, true, 64, 256, 256},
    {"mlp dX    NN  64x256x256", false, false, 64, 256, 256},
    {"mlp dW    TN 256x256x64 ", true, false, 256, 256, 64},
    {"lstm proj NT  32x512x128", false, true, 32, 512, 128},
    {"lstm dh   NN  32x128x512", false, false, 32, 128, 512},
    {"lstm dW   TN 512x128x32 ", true, false, 512, 128, 32},
    {"shallow   NT 1024x512x16", false, true, 1024, 512, 16},
    {"large     NN 384^3      ", false, false, 384, 384, 384},
    {"square    NN 1024^3     ", false, false, 1024, 1024, 1024},
    {"square    NT 1024^3     ", false, true, 1024, 1024, 1024},
};
enum { SHAPES = sizeof shapes / sizeof shapes[0], MAX_ROUNDS = 64 };

typedef void (*gemm_fn)(bool, bool, int64_t, int64_t, int64_t, float, const float *, int64_t,
                        const float *, int64_t, float, float *, int64_t);

static void blas(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                 int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    tgi_blas_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* ops/gemm_thin.c's kernels alone (no BLAS behind them): shapes they refuse are not timed */
static void thin(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                 int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    tgi_gemm_thin(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* GFLOP/s of `gemm` on shape s, repeated for about 20 ms after one untimed call. */
static double gflops(gemm_fn gemm, const shape *s, const float *a, const float *b, float *c) {
    int64_t lda = s->trans_a ? s->m : s->k, ldb = s->trans_b ? s->k : s->n;
    double flops = 2.0 * (double)s->m * (double)s->n * (double)s->k;
    int reps = (int)(4e8 / flops) + 1; /* ~20 ms at 20 GFLOP/s */
    gemm(s->trans_a, s->trans_b, s->m, s->n, s->k, 1.0f, a, lda, b, ldb, 1.0f, c, s->n);
    double start = cpu_seconds();
    for (int r = 0; r < reps; r++)
        gemm(s->trans_a, s->trans_b, s->m, s->n, s->k, 1.0f, a, lda, b, ldb, 1.0f, c, s->n);
    return flops * reps / (cpu_seconds() - start) * 1e-9;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 7;
    if (rounds < 1 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "usage: bench_gemm [ROUNDS (1..%d)]\n", MAX_ROUNDS);
        return 1;
    }
    const int64_t most = 1024 * 1024;
    float *a = malloc(sizeof(float) * most), *b = malloc(sizeof(float) * most);
    float *c = malloc(sizeof(float) * most);
    if (!a || !b || !c) return 1;
    srand(1);
    for (int64_t i = 0; i < most; i++) {
        a[i] = (float)rand() / RAND_MAX - 0.5f;
        b[i] = (float)rand() / RAND_MAX - 0.5f;
        c[i] = 0.0f;
    }
    float one = 0.0f;
    bool have_blas = tgi_blas_gemm(false, false, 1, 1, 1, 1.0f, a, 1, b, 1, 0.0f, &one, 1);
    printf("backend: %s\none thread, GFLOP/s median [min-max] of %d rounds\n", tg_gemm_backend(), rounds);
    static double mine[SHAPES][MAX_ROUNDS], theirs[SHAPES][MAX_ROUNDS], ratio[SHAPES][MAX_ROUNDS];
    static double ours[SHAPES][MAX_ROUNDS], ours_ratio[SHAPES][MAX_ROUNDS];
    bool have_thin = have_blas && tgi_gemm_thin_fused();
    for (int r = 0; r < rounds; r++)
        for (int s = 0; s < SHAPES; s++) {
            const shape *sh = &shapes[s];
            bool thin_fits = have_thin && tgi_gemm_thin_fits(sh->trans_a, sh->trans_b, sh->m, sh->n, sh->k);
            for (int q = 0; q < 3; q++) /* who goes first turns round by round */
                switch ((q + r) % 3) {
                case 0: mine[s][r] = gflops(tgi_gemm_portable, sh, a, b, c); break;
                case 1: if (have_blas) theirs[s][r] = gflops(blas, sh, a, b, c); break;
                default: if (thin_fits) ours[s][r] = gflops(thin, sh, a, b, c); break;
                }
            ratio[s][r] = have_blas ? mine[s][r] / theirs[s][r] : 0.0;
            ours_ratio[s][r] = thin_fits ? ours[s][r] / theirs[s][r] : 0.0;
        }
    printf("%-26s %-22s %-22s %-20s", "shape", "portable", have_blas ? "BLAS" : "", have_blas ? "portable/BLAS" : "");
    printf("%s\n", have_thin ? "   thin (ops/gemm_thin.c)  thin/BLAS" : "");
    for (int s = 0; s < SHAPES; s++) {
        bench_timing p = bench_summarize(mine[s], rounds);
        printf("%-26s %6.1f [%5.1f-%5.1f]  ", shapes[s].name, p.median, p.min, p.max);
        if (have_blas) {
            bench_timing o = bench_summarize(theirs[s], rounds), q = bench_summarize(ratio[s], rounds);
            const char *kernels = "?";
            tg_gemm_choice(shapes[s].trans_a, shapes[s].m, shapes[s].n, shapes[s].k, &kernels);
            printf("%6.1f [%5.1f-%5.1f]  %4.2fx [%4.2f-%4.2f] %-9s", o.median, o.min, o.max, q.median,
                   q.min, q.max, kernels);
        }
        if (have_thin && ours[s][0] > 0) {
            bench_timing t = bench_summarize(ours[s], rounds), q = bench_summarize(ours_ratio[s], rounds);
            printf(" %6.1f [%5.1f-%5.1f]  %4.2fx [%4.2f-%4.2f]", t.median, t.min, t.max, q.median, q.min, q.max);
        }
        printf("\n");
    }
    free(a);
    free(b);
    free(c);
    return 0;
}
