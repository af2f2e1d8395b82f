/*
 * ops/blas_tune.c — the GEMM kernels chosen per shape class by measurement, once per machine.
 *
 * Which kernels are fastest depends on the CPU model and on the shape: on a Zen 3, OpenBLAS's
 * Haswell kernels beat its Zen kernels by 1.05-1.41x depending on the product, and the portable
 * GEMM comes within 0.8-0.97x of both. ops/blas.c loads the candidates (OpenBLAS under its
 * table's core type, OpenBLAS again under another core type in a namespace of its own, the
 * portable GEMM, and in builds with FMA our no-packing kernels for products that fit L2,
 * ops/gemm_thin.c); this file times them on one product or two of each shape class, in rounds
 * that alternate them (a slow stretch of a shared machine hits all of them), and keeps the
 * table's kernels for a class unless another takes less than MARGIN of its time in the median
 * round.
 *
 * Why a cache file: a timing can come out differently from one run to the next, and a run's
 * numbers depend on the kernels (each is deterministic, but they differ in the last bits). So
 * the decision is measured once, written to a file keyed by the CPU model and the library
 * versions, and every later run on that machine reads it: the same kernels, the same numbers.
 * The file is written to a temporary name and renamed, so a reader never sees half of one and
 * two processes measuring at once each leave a whole file. Where nothing can be written (a
 * read-only or absent home), the process uses what it measured and says it could not keep it.
 *
 * Path: $TAPEGRAD_BLAS_CACHE if set (a file; empty: no file, measure every run), else
 * $XDG_CACHE_HOME/tapegrad/gemm-<hash of the key>.txt, else ~/.cache/tapegrad/ (the hash lets
 * machines that share a home directory keep one file each).
 */
#include "ops/ops.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Another kernel replaces the table's for a class only when it takes less than this fraction
 * of the table's time (median of the rounds' ratios): a near tie keeps the table's choice. */
#define MARGIN 0.95
#define ROUNDS 7

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

static const char *const class_names[TGI_GEMM_CLASSES] = {"thin", "weight-gradient", "shallow", "large"};

/* thin: A not transposed, at most 64 rows (the batch-sized products of a forward pass and its
 * input gradient); weight-gradient: A transposed (X^T dY); shallow: k <= 32 (an input
 * projection of few features); large: the rest. */
int tgi_gemm_class(bool trans_a, int64_t m, int64_t n, int64_t k) {
    (void)n;
    if (trans_a) return TGI_GEMM_WEIGHT_GRADIENT;
    if (m <= 64) return TGI_GEMM_THIN;
    if (k <= 32) return TGI_GEMM_SHALLOW;
    return TGI_GEMM_LARGE;
}

const char *tgi_gemm_class_name(int cls) {
    return cls >= 0 && cls < TGI_GEMM_CLASSES ? class_names[cls] : "?";
}

/* ---- measuring ----------------------------------------------------------------------------- */

typedef struct sample_shape {
    int cls, m, n, k;
    bool ta, tb;
} sample_shape;

/* One product or two per class, from the models the library trains: the MLP w256 b64 forward
 * and an LSTM h128 b32 gradient; the two weight gradients; an LSTM input projection; 384^3. */
static const sample_shape samples[] = {
    {TGI_GEMM_THIN, 64, 256, 256, false, true},
    {TGI_GEMM_THIN, 32, 128, 512, false, false},
    {TGI_GEMM_WEIGHT_GRADIENT, 256, 256, 64, true, false},
    {TGI_GEMM_WEIGHT_GRADIENT, 512, 128, 32, true, false},
    {TGI_GEMM_SHALLOW, 1024, 512, 16, false, true},
    {TGI_GEMM_LARGE, 384, 384, 384, false, false},
};
enum { SAMPLES = sizeof samples / sizeof samples[0], MOST_FLOATS = 1024 * 512 };

/* CPU time of this thread for the rounds (a busy neighbour's time slices do not count), wall
 * time for what the whole measurement cost */
static double clock_seconds(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void run(tgi_sgemm_fn sgemm, const sample_shape *s, const float *a, const float *b, float *c) {
    int lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
    if (sgemm)
        sgemm(ROW_MAJOR, s->ta ? TRANS : NO_TRANS, s->tb ? TRANS : NO_TRANS, s->m, s->n, s->k, 1.0f,
              a, lda, b, ldb, 1.0f, c, s->n);
    else
        tgi_gemm_portable(s->ta, s->tb, s->m, s->n, s->k, 1.0f, a, lda, b, ldb, 1.0f, c, s->n);
}

static int compare_doubles(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

bool tgi_gemm_measure(const tgi_gemm_kernels *kernels, tgi_gemm_decision *out) {
    double began = clock_seconds(CLOCK_MONOTONIC);
    float *a = malloc(sizeof(float) * MOST_FLOATS), *b = malloc(sizeof(float) * MOST_FLOATS);
    float *c = malloc(sizeof(float) * MOST_FLOATS);
    bool ok = a && b && c && kernels->count >= 1;
    if (ok) {
        uint32_t x = 2463534242u; /* fixed values: a product's time should not depend on them */
        for (int i = 0; i < MOST_FLOATS; i++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            a[i] = (float)(x >> 8) / 16777216.0f - 0.5f;
            b[i] = (float)(x & 0xffff) / 65536.0f - 0.5f;
            c[i] = 0.0f;
        }
        double t[TGI_GEMM_KERNELS_MAX][TGI_GEMM_CLASSES][ROUNDS];
        memset(t, 0, sizeof t);
        for (int e = 0; e < kernels->count; e++) /* first calls: packing room, pages, caches */
            for (int s = 0; s < SAMPLES; s++) run(kernels->sgemm[e], &samples[s], a, b, c);
        for (int r = 0; r < ROUNDS; r++)
            for (int q = 0; q < kernels->count; q++) {
                int e = (q + r) % kernels->count; /* who goes first turns round by round */
                for (int s = 0; s < SAMPLES; s++) {
                    const sample_shape *sh = &samples[s];
                    int reps = 1 + (int)(2e7 / (2.0 * sh->m * sh->n * sh->k));
                    double start = clock_seconds(CLOCK_THREAD_CPUTIME_ID);
                    for (int i = 0; i < reps; i++) run(kernels->sgemm[e], sh, a, b, c);
                    t[e][sh->cls][r] += (clock_seconds(CLOCK_THREAD_CPUTIME_ID) - start) / reps;
                }
            }
        for (int cls = 0; cls < TGI_GEMM_CLASSES; cls++) {
            out->kernel[cls] = 0;
            double best = MARGIN;
            for (int e = 0; e < kernels->count; e++) {
                double ratio[ROUNDS];
                for (int r = 0; r < ROUNDS; r++) ratio[r] = t[e][cls][r] / t[0][cls][r];
                qsort(ratio, ROUNDS, sizeof ratio[0], compare_doubles);
                out->ratio[cls][e] = ratio[ROUNDS / 2];
                if (e > 0 && ratio[ROUNDS / 2] < best) {
                    best = ratio[ROUNDS / 2];
                    out->kernel[cls] = e;
                }
            }
        }
    }
    free(a);
    free(b);
    free(c);
    out->seconds = clock_seconds(CLOCK_MONOTONIC) - began;
    return ok;
}

/* ---- the cache file ------------------------------------------------------------------------ */

static uint64_t fnv1a(const char *s) {
    uint64_t h = 14695981039346656037ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

bool tgi_gemm_cache_path(const char *key, char *path, size_t size) {
    const char *given = getenv("TAPEGRAD_BLAS_CACHE");
    if (given) {
        int n = snprintf(path, size, "%s", given);
        return *given && n > 0 && (size_t)n < size;
    }
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (xdg && *xdg == '/')
        n = snprintf(path, size, "%s/tapegrad/gemm-%016llx.txt", xdg, (unsigned long long)fnv1a(key));
    else if (home && *home)
        n = snprintf(path, size, "%s/.cache/tapegrad/gemm-%016llx.txt", home, (unsigned long long)fnv1a(key));
    else
        return false;
    return n > 0 && (size_t)n < size;
}

bool tgi_gemm_cache_read(const char *path, const char *key, const tgi_gemm_kernels *kernels,
                         tgi_gemm_decision *out) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char line[768];
    bool key_ok = false;
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (strncmp(line, "key=", 4) == 0) {
            key_ok = strcmp(line + 4, key) == 0;
            continue;
        }
        for (int cls = 0; cls < TGI_GEMM_CLASSES; cls++) {
            size_t len = strlen(class_names[cls]);
            if (strncmp(line, class_names[cls], len) != 0 || line[len] != '=') continue;
            const char *name = line + len + 1;
            size_t name_len = strcspn(name, " ");
            for (int e = 0; e < kernels->count; e++)
                if (strlen(kernels->name[e]) == name_len && strncmp(name, kernels->name[e], name_len) == 0 &&
                    !(found & (1 << cls))) {
                    out->kernel[cls] = e;
                    found |= 1 << cls;
                }
        }
    }
    fclose(f);
    return key_ok && found == (1 << TGI_GEMM_CLASSES) - 1;
}

/* mkdir -p of the directory part of path (a missing ~/.cache included) */
static void make_parents(const char *path) {
    char dir[512];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir) return;
    for (char *p = dir + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(dir, 0755); /* an existing one is fine; another failure shows at fopen */
            *p = '/';
        }
}

bool tgi_gemm_cache_write(const char *path, const char *key, const tgi_gemm_kernels *kernels,
                          const tgi_gemm_decision *d, char *err, size_t err_size) {
    char tmp[600];
    if (snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid()) >= (int)sizeof tmp) {
        snprintf(err, err_size, "path too long");
        return false;
    }
    make_parents(path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        snprintf(err, err_size, "%s", strerror(errno));
        return false;
    }
    fprintf(f, "# tapegrad: GEMM kernels per shape class, measured at first use on this machine "
               "(ops/blas_tune.c). Delete this file to measure again.\nkey=%s\n", key);
    for (int cls = 0; cls < TGI_GEMM_CLASSES; cls++) {
        fprintf(f, "%s=%s (time / %s's:", class_names[cls], kernels->name[d->kernel[cls]], kernels->name[0]);
        for (int e = 1; e < kernels->count; e++) fprintf(f, " %s %.3f", kernels->name[e], d->ratio[cls][e]);
        fprintf(f, ")\n");
    }
    bool ok = !ferror(f);
    ok = fclose(f) == 0 && ok;
    if (ok && rename(tmp, path) != 0) ok = false;
    if (!ok) {
        snprintf(err, err_size, "%s", strerror(errno));
        remove(tmp);
    }
    return ok;
}
