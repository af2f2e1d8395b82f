/*
 * bench/bench_blas_cores.c — which GEMM kernels are fastest on this CPU, per shape class: the
 * measurement behind ops/blas.c's fixed table (haswell_beats_zen, small_class).
 *
 * OpenBLAS picks its kernels once, at load, from OPENBLAS_CORETYPE; two copies loaded with
 * dlmopen(LM_ID_NEWLM) under two core types (default Zen and Haswell: `bench_blas_cores CORE_A
 * CORE_B` for others) live in one process, so their calls alternate on the same machine state —
 * on a shared machine, separate processes per core type disagreed by more than the difference
 * sought. The portable GEMM and oneDNN's dnnl_sgemm (libdnnl.so.2, one OpenMP thread), when
 * present, run beside them. For each of the MLP's and the LSTM's products (and 1024-sized ones),
 * one thread: GFLOP/s (medians of ROUNDS alternations, thread CPU time) and the time ratios
 * A / B and portable / B with their min-max. Then, per shape class of ops/blas_tune.c, the
 * fastest of A, B and portable (the sum of the class's median times) beside what tapegrad
 * chose (tg_gemm_choice: measured at first use or read from its cache file).
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
#include "ops/ops.h"

#define ROUNDS 21
#define MAX_SIDE (2048 * 1024) /* floats in each operand buffer */

typedef tgi_sgemm_fn cblas_sgemm_fn;
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

/* which: 0, 1 the OpenBLAS copies, 2 the portable GEMM, 3 oneDNN */
static void product(int which, const shape *s, const float *a, const float *b, float *c) {
    int lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
    if (which == 2)
        tgi_gemm_portable(s->ta, s->tb, s->m, s->n, s->k, 1.0f, a, lda, b, ldb, 0.0f, c, s->n);
    else if (which < 2)
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
    unsetenv("OPENBLAS_CORETYPE"); /* or tapegrad's own choice below would take it as the user's */
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
    printf("  %-28s %-16s %-15s %7s %7s %8s %7s  %-22s %-22s %s\n", "product", "m x n x k", "class",
           core_a, core_b, "portable", dnnl ? "oneDNN" : "", "time A/B [min-max]",
           "portable/B", dnnl ? "oneDNN/B" : "");
    int engines = dnnl ? 4 : 3;
    double class_time[TGI_GEMM_CLASSES][3] = {{0}};
    /* OpenBLAS 0.3.21 (Zen kernels) runs small products slowly until one large one has run
     * (ops/blas.c's warm_up): both copies get it */
    shape warm = {512, 512, 64, false, true, ""};
    for (int e = 0; e < engines; e++) product(e, &warm, a, b, c);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const shape *s = &shapes[i];
        double flops = 2.0 * s->m * s->n * s->k;
        int reps = (int)(1e7 / flops) + 2;
        double t[4][ROUNDS], ratio[ROUNDS], ratio_port[ROUNDS], ratio_dnnl[ROUNDS];
        for (int e = 0; e < engines; e++) product(e, s, a, b, c);
        for (int r = 0; r < ROUNDS; r++) {
            for (int e = 0; e < engines; e++) {
                double start = thread_seconds();
                for (int rep = 0; rep < reps; rep++) product(e, s, a, b, c);
                t[e][r] = (thread_seconds() - start) / reps;
            }
            ratio[r] = t[0][r] / t[1][r];
            ratio_port[r] = t[2][r] / t[1][r];
            ratio_dnnl[r] = dnnl ? t[3][r] / t[1][r] : 0.0;
        }
        bench_timing ta = bench_summarize(t[0], ROUNDS), tb = bench_summarize(t[1], ROUNDS);
        bench_timing tp = bench_summarize(t[2], ROUNDS);
        bench_timing rt = bench_summarize(ratio, ROUNDS), rp = bench_summarize(ratio_port, ROUNDS);
        int cls = tgi_gemm_class(s->ta, s->m, s->n, s->k);
        class_time[cls][0] += ta.median;
        class_time[cls][1] += tb.median;
        class_time[cls][2] += tp.median;
        char dims[32], range[40], range_port[40], extra[48] = "", gd[16] = "";
        snprintf(dims, sizeof dims, "%dx%dx%d %s%s", s->m, s->n, s->k, s->ta ? "T" : "N", s->tb ? "T" : "N");
        snprintf(range, sizeof range, "%.3f [%.3f-%.3f]", rt.median, rt.min, rt.max);
        snprintf(range_port, sizeof range_port, "%.3f [%.3f-%.3f]", rp.median, rp.min, rp.max);
        if (dnnl) {
            bench_timing td = bench_summarize(t[3], ROUNDS), rd = bench_summarize(ratio_dnnl, ROUNDS);
            snprintf(gd, sizeof gd, "%7.1f", flops / td.median * 1e-9);
            snprintf(extra, sizeof extra, "%.3f [%.3f-%.3f]", rd.median, rd.min, rd.max);
        }
        printf("  %-28s %-16s %-15s %7.1f %7.1f %8.1f %7s  %-22s %-22s %s\n", s->what, dims,
               tgi_gemm_class_name(cls), flops / ta.median * 1e-9, flops / tb.median * 1e-9,
               flops / tp.median * 1e-9, gd, range, range_port, extra);
    }
    /* tapegrad's own choice last: it may load OpenBLAS and time the candidates itself */
    const char *names[3] = {core_a, core_b, "portable"};
    printf("per shape class, the fastest here (sum of the medians above) and tapegrad's choice:\n");
    for (int cls = 0; cls < TGI_GEMM_CLASSES; cls++) {
        int best = 0;
        for (int e = 1; e < 3; e++) best = class_time[cls][e] < class_time[cls][best] ? e : best;
        static const shape probe[TGI_GEMM_CLASSES] = {
            {64, 256, 256, false, true, ""}, {256, 256, 64, true, false, ""},
            {1024, 512, 16, false, true, ""}, {384, 384, 384, false, false, ""}};
        const char *chosen = "?";
        tg_gemm_choice(probe[cls].ta, probe[cls].m, probe[cls].n, probe[cls].k, &chosen);
        printf("  %-15s fastest %-8s (time / %s's: %s %.3f, portable %.3f)  tapegrad: %s\n",
               tgi_gemm_class_name(cls), names[best], core_b, core_a,
               class_time[cls][0] / class_time[cls][1], class_time[cls][2] / class_time[cls][1], chosen);
    }
    printf("tapegrad: %s\n", tg_gemm_backend());
    free(a);
    free(b);
    free(c);
    return 0;
}
