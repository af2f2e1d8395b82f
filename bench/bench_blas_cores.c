/*
 * bench/bench_blas_cores.c — which GEMM kernels are fastest on this CPU, per shape class: the
 * measurement behind ops/blas.c's fixed table (haswell_beats_zen, small_class).
 *
 * OpenBLAS picks its kernels once, at load, from OPENBLAS_CORETYPE; two copies loaded with
 * dlmopen(LM_ID_NEWLM) under two core types (default Zen and Haswell: `bench_blas_cores CORE_A
 * CORE_B` for others) live in one process, so their calls alternate on the same machine state —
 * on a shared machine, separate processes per core type disagreed by more than the difference
 * sought. oneDNN's dnnl_sgemm (libdnnl.so.2, one OpenMP thread), when present, runs beside them.
 * For each of the MLP's and the LSTM's products (and 1024-sized ones), one thread: GFLOP/s
 * (medians of ROUNDS alternations, thread CPU time) and the time ratio A / B with its min-max.
 * Pin it: `taskset -c 1 zig-out/bin/bench_blas_cores`.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_timing.h"

#define ROUNDS 21
#define MAX_SIDE (2048 * 1024) /* floats in each operand buffer */

typedef void (*cblas_sgemm_fn)(int order, int trans_a, int trans_b, int m, int n, int k,
                               float alpha, const float *a, int lda, const float *b, int ldb,
                               float beta, float *c, int ldc);
typedef int (*dnnl_sgemm_fn)(char trans_a, char trans_b, int64_t m, int64_t n, int64_t k,
                             float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                             float beta, float *c, int64_t ldc);

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

static cblas_sgemm_fn blas[2];
static dnnl_sgemm_fn dnnl;

/* CPU time of this thread: a busy neighbour's time slices do not count */
static double thread_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static cblas_sgemm_fn load_core(const char *core) {
    setenv("OPENBLAS_CORETYPE", core, 1);
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    void *lib = dlmopen(LM_ID_NEWLM, "libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "bench_blas_cores: %s\n", dlerror());
        exit(1);
    }
    char *(*corename)(void) = (char *(*)(void))dlsym(lib, "openblas_get_corename");
    printf("  copy %s: OPENBLAS_CORETYPE=%s gives %s kernels\n", blas[0] ? "B" : "A", core,
           corename ? corename() : "?");
    return (cblas_sgemm_fn)dlsym(lib, "cblas_sgemm");
}

typedef struct shape {
    int m, n, k;
    bool ta, tb;
    const char *what;
} shape;

/* which: 0, 1 the OpenBLAS copies, 2 oneDNN */
static void product(int which, const shape *s, const float *a, const float *b, float *c) {
    int lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
    if (which < 2)
        blas[which](ROW_MAJOR, s->ta ? TRANS : NO_TRANS, s->tb ? TRANS : NO_TRANS, s->m, s->n, s->k,
                    1.0f, a, lda, b, ldb, 0.0f, c, s->n);
    else
        dnnl(s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', s->m, s->n, s->k, 1.0f, a, lda, b, ldb, 0.0f,
             c, s->n);
}

int main(int argc, char **argv) {
    const char *core_a = argc > 2 ? argv[1] : "Zen", *core_b = argc > 2 ? argv[2] : "Haswell";
    printf("GEMM kernels per shape class, one thread, medians of %d alternations in one process:\n",
           ROUNDS);
    blas[0] = load_core(core_a);
    blas[1] = load_core(core_b);
    setenv("OMP_NUM_THREADS", "1", 1);
    void *onednn = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (onednn) dnnl = (dnnl_sgemm_fn)dlsym(onednn, "dnnl_sgemm");
    if (!blas[0] || !blas[1]) return 1;
    float *a = malloc(MAX_SIDE * sizeof(float)), *b = malloc(MAX_SIDE * sizeof(float));
    float *c = malloc(MAX_SIDE * sizeof(float));
    if (!a || !b || !c) return 1;
    for (int i = 0; i < MAX_SIDE; i++) {
        a[i] = (float)(i % 13) * 0.01f - 0.06f;
        b[i] = (float)(i % 7) * 0.02f - 0.06f;
    }
    static const shape shapes[] = {
        {64, 256, 256, false, true, "MLP w256 b64 forward"},
        {64, 256, 256, false, false, "MLP w256 input gradient"},
        {256, 256, 64, true, false, "MLP w256 weight gradient"},
        {64, 128, 256, false, true, "  its forward piece"},
        {32, 512, 128, false, true, "LSTM h128 b32 recurrent"},
        {32, 128, 512, false, false, "LSTM h gradient"},
        {512, 128, 32, true, false, "LSTM W_hh gradient"},
        {3200, 512, 16, false, true, "LSTM input projection"},
        {512, 16, 3200, true, false, "LSTM W_ih gradient"},
        {256, 1024, 1024, false, true, "MLP w1024 b256 forward"},
        {256, 1024, 1024, false, false, "MLP w1024 input gradient"},
        {1024, 1024, 256, true, false, "MLP w1024 weight gradient"},
        {1024, 1024, 1024, false, false, "1024^3"},
    };
    printf("  %-28s %-16s %7s %7s %7s  %-22s %s\n", "product", "m x n x k", core_a, core_b,
           dnnl ? "oneDNN" : "", "time A/B [min-max]", dnnl ? "oneDNN/B" : "");
    int engines = dnnl ? 3 : 2;
    /* OpenBLAS 0.3.21 (Zen kernels) runs small products slowly until one large one has run
     * (ops/blas.c's warm_up): both copies get it */
    shape warm = {512, 512, 64, false, true, ""};
    for (int e = 0; e < engines; e++) product(e, &warm, a, b, c);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const shape *s = &shapes[i];
        double flops = 2.0 * s->m * s->n * s->k;
        int reps = (int)(1e7 / flops) + 2;
        double t[3][ROUNDS], ratio[ROUNDS], ratio_dnnl[ROUNDS];
        for (int e = 0; e < engines; e++) product(e, s, a, b, c);
        for (int r = 0; r < ROUNDS; r++) {
            for (int e = 0; e < engines; e++) {
                double start = thread_seconds();
                for (int rep = 0; rep < reps; rep++) product(e, s, a, b, c);
                t[e][r] = (thread_seconds() - start) / reps;
            }
            ratio[r] = t[0][r] / t[1][r];
            ratio_dnnl[r] = dnnl ? t[2][r] / t[1][r] : 0.0;
        }
        bench_timing ta = bench_summarize(t[0], ROUNDS), tb = bench_summarize(t[1], ROUNDS);
        bench_timing rt = bench_summarize(ratio, ROUNDS);
        char dims[32], range[40], extra[48] = "", gd[16] = "";
        snprintf(dims, sizeof dims, "%dx%dx%d %s%s", s->m, s->n, s->k, s->ta ? "T" : "N", s->tb ? "T" : "N");
        snprintf(range, sizeof range, "%.3f [%.3f-%.3f]", rt.median, rt.min, rt.max);
        if (dnnl) {
            bench_timing td = bench_summarize(t[2], ROUNDS), rd = bench_summarize(ratio_dnnl, ROUNDS);
            snprintf(gd, sizeof gd, "%7.1f", flops / td.median * 1e-9);
            snprintf(extra, sizeof extra, "%.3f [%.3f-%.3f]", rd.median, rd.min, rd.max);
        }
        printf("  %-28s %-16s %7.1f %7.1f %7s  %-22s %s\n", s->what, dims,
               flops / ta.median * 1e-9, flops / tb.median * 1e-9, gd, range, extra);
    }
    free(a);
    free(b);
    free(c);
    return 0;
}
