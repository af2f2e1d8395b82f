/* tests/test_blas_choice.c — which kernels ops/blas.c chooses: OpenBLAS's Haswell kernels on AMD
 * family 19h (Zen 3, measured faster than its Zen kernels) when tuning is off, the user's
 * OPENBLAS_CORETYPE kept, oneDNN for the thin products on request (TAPEGRAD_BLAS=openblas+onednn),
 * and the kernels per shape class measured at first use, kept in a cache file and read back:
 * right results, and the same bits on 1 and 2 threads and from one call to the next. Each test
 * runs in its own process (Criterion's default), so each chooses the backend afresh from its
 * environment. The rest of the suite runs with TAPEGRAD_BLAS_TUNE=0 (build.zig): its numbers
 * must not depend on a timing, nor its runs write to the home directory. */
#include "helpers.h"
#include "ops/ops.h"

#include <sys/wait.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

/* AMD family 19h with AVX2 and without AVX-512F: the CPUs blas.c gives Haswell's kernels. */
static bool zen3_like(void) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d) || b != 0x68747541) return false; /* "Auth" */
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    unsigned family = (a >> 8) & 0xf;
    if (family == 0xf) family += (a >> 20) & 0xff;
    if (family != 0x19) return false;
    __cpuid_count(7, 0, a, b, c, d);
    return (b & (1u << 5)) && !(b & (1u << 16)); /* AVX2, no AVX-512F */
#else
    return false;
#endif
}

Test(blas_choice, zen3_gets_haswell_kernels_unless_the_user_says) {
#ifndef TG_USE_BLAS
    cr_skip("built with -Dblas=false");
#endif
    if (!zen3_like()) cr_skip("not an AMD family 19h CPU with AVX2 only");
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv("TAPEGRAD_BLAS");
    setenv("TAPEGRAD_BLAS_TUNE", "0", 1);
    const char *backend = tg_gemm_backend();
    cr_expect(strstr(backend, "Haswell kernels") != NULL, "backend: %s", backend);
    const char *kernels = NULL;
    cr_expect_eq(tg_gemm_choice(true, 512, 128, 32, &kernels), TG_GEMM_TABLE);
    cr_expect_str_eq(kernels, "Haswell");
    cr_expect(strstr(backend, "oneDNN") == NULL, "oneDNN only on request: %s", backend);
    cr_expect(getenv("OPENBLAS_CORETYPE") == NULL, "the environment is put back");
}

Test(blas_choice, user_core_type_is_kept) {
#ifndef TG_USE_BLAS
    cr_skip("built with -Dblas=false");
#endif
    if (!zen3_like()) cr_skip("not an AMD family 19h CPU with AVX2 only");
    setenv("OPENBLAS_CORETYPE", "Zen", 1);
    unsetenv("TAPEGRAD_BLAS");
    unsetenv("TAPEGRAD_BLAS_TUNE"); /* the user's choice is not measured over */
    const char *backend = tg_gemm_backend();
    cr_expect(strstr(backend, "Zen kernels") != NULL, "backend: %s", backend);
    const char *kernels = NULL;
    cr_expect_eq(tg_gemm_choice(false, 64, 256, 256, &kernels), TG_GEMM_GIVEN);
    cr_expect_str_eq(kernels, "Zen");
}

static float at(bool trans, const float *m, int64_t ld, int64_t r, int64_t c) {
    return trans ? m[c * ld + r] : m[r * ld + c];
}

/* C = 0.5 C + 1.25 op(A) op(B) in double, rounded once */
static void reference(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float *a,
                      const float *b, float *c) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++) s += (double)at(ta, a, ta ? m : k, i, p) * at(tb, b, tb ? k : n, p, j);
            c[i * n + j] = (float)(1.25 * s + 0.5 * c[i * n + j]);
        }
}

/* The products of the thin class (the MLP's 64x256x256 forward and input gradient, an LSTM's
 * 32x512x128), a weight gradient (A transposed), a shallow and a large one, and odd small ones:
 * against the reference, and the same bits on 1 and 2 threads and on a second call. */
static void products_right_and_reproducible(void) {
    const int64_t shapes[][5] = {{64, 256, 256, 0, 1}, {64, 256, 256, 0, 0}, {32, 512, 128, 0, 1},
                                 {256, 256, 64, 1, 0}, {5, 3, 7, 0, 1},     {17, 33, 9, 0, 0},
                                 {300, 130, 16, 0, 1}, {200, 150, 100, 0, 0}};
    tg_rng rng;
    tg_rng_seed(&rng, 21);
    tg_ctx *ctx = tg_ctx_new();
    cr_assert(ctx);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        bool ta = shapes[s][3], tb = shapes[s][4];
        float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n);
        float *c[3], *want = malloc(sizeof(float) * m * n);
        for (int i = 0; i < 3; i++) c[i] = malloc(sizeof(float) * m * n);
        cr_assert(a && b && want && c[0] && c[1] && c[2], "out of memory");
        for (int64_t i = 0; i < m * k; i++) a[i] = tg_rng_uniform(&rng) - 0.5f;
        for (int64_t i = 0; i < k * n; i++) b[i] = tg_rng_uniform(&rng) - 0.5f;
        for (int64_t i = 0; i < m * n; i++) want[i] = c[0][i] = c[1][i] = c[2][i] = (float)(i % 3);
        for (int i = 0; i < 3; i++) { /* 1 thread, 2 threads, 1 thread again */
            cr_assert_eq(tg_ctx_set_threads(ctx, i == 1 ? 2 : 1), TG_OK);
            tgi_gemm(ctx, ta, tb, m, n, k, 1.25f, a, ta ? m : k, b, tb ? k : n, 0.5f, c[i], n);
        }
        reference(ta, tb, m, n, k, a, b, want);
        char what[96];
        snprintf(what, sizeof what, "%lldx%lldx%lld ta=%d tb=%d", (long long)m, (long long)n,
                 (long long)k, ta, tb);
        expect_close(c[0], want, m * n, 2e-5f * (float)k, what);
        cr_expect(memcmp(c[0], c[1], sizeof(float) * m * n) == 0, "%s: 1 and 2 threads differ", what);
        cr_expect(memcmp(c[0], c[2], sizeof(float) * m * n) == 0, "%s: two calls differ", what);
        free(a);
        free(b);
        free(want);
        for (int i = 0; i < 3; i++) free(c[i]);
    }
    tg_ctx_free(ctx);
}

Test(blas_choice, onednn_on_request_is_right_and_reproducible) {
#ifndef TG_USE_BLAS
    cr_skip("built with -Dblas=false");
#endif
    unsetenv("OPENBLAS_CORETYPE");
    setenv("TAPEGRAD_BLAS", "openblas+onednn", 1);
    const char *backend = tg_gemm_backend();
    if (!strstr(backend, "oneDNN")) cr_skip("no libdnnl.so.2 here (or it disagreed): %s", backend);
    products_right_and_reproducible();
}

/* ---- kernels per shape class, measured once and kept ---- */

/* Tuning on, the decision kept in (or read from) the file at path. */
static void tune_with_cache(const char *path) {
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv("TAPEGRAD_BLAS");
    unsetenv("TAPEGRAD_BLAS_TUNE");
    setenv("TAPEGRAD_BLAS_CACHE", path, 1);
}

/* Each class's kernel names, "thin weight-gradient shallow large" in order. */
static void class_kernels(char *out, size_t size) {
    const int64_t per_class[4][4] = {{0, 64, 256, 256}, {1, 256, 256, 64}, {0, 1024, 512, 16}, {0, 384, 384, 384}};
    out[0] = 0;
    for (int c = 0; c < 4; c++) {
        const char *name = NULL;
        tg_gemm_choice(per_class[c][0], per_class[c][1], per_class[c][2], per_class[c][3], &name);
        size_t used = strlen(out);
        snprintf(out + used, size - used, "%s%s", c ? " " : "", name ? name : "(null)");
    }
}

/* A fresh folder in dir (64 bytes) and path = dir/name, opened for writing. */
static FILE *temp_file(char *dir, char *path, size_t size, const char *name) {
    temp_dir_make(dir, "tg-blas-cache");
    snprintf(path, size, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    return f;
}

static bool openblas_here(void) {
    return strncmp(tg_gemm_backend(), "OpenBLAS", 8) == 0;
}

/* A first process (no cache file yet) measures and keeps its decision; a second reads it back:
 * the same kernel for every class, said to be cached. The products are right either way. */
Test(blas_choice, measured_once_then_read_back) {
#ifndef TG_USE_BLAS
    cr_skip("built with -Dblas=false");
#endif
    char dir[64], path[96];
    temp_dir_make(dir, "tg-blas-cache");
    snprintf(path, sizeof path, "%s/choice.txt", dir);
    tune_with_cache(path);
    int pipe_fd[2];
    cr_assert_eq(pipe(pipe_fd), 0);
    pid_t child = fork();
    cr_assert(child >= 0);
    if (child == 0) { /* the first run: chooses here, before the parent has */
        char kernels[128];
        class_kernels(kernels, sizeof kernels);
        int how = tg_gemm_choice(false, 1, 1, 1, NULL);
        char msg[160];
        snprintf(msg, sizeof msg, "%d %s", how, kernels);
        ssize_t w = write(pipe_fd[1], msg, strlen(msg) + 1);
        _exit(w > 0 ? 0 : 1);
    }
    close(pipe_fd[1]);
    char first[160] = "";
    ssize_t got = read(pipe_fd[0], first, sizeof first - 1);
    close(pipe_fd[0]);
    int status = 0;
    waitpid(child, &status, 0);
    cr_assert(got > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "the first process failed");
    if (!openblas_here()) cr_skip("no OpenBLAS here: %s", tg_gemm_backend());
    cr_expect_eq(atoi(first), TG_GEMM_MEASURED, "first process: %s", first);
    cr_expect(access(path, R_OK) == 0, "the decision was not kept in %s", path);
    char second[128];
    class_kernels(second, sizeof second);
    cr_expect_eq(tg_gemm_choice(false, 1, 1, 1, NULL), TG_GEMM_CACHED, "backend: %s", tg_gemm_backend());
    cr_expect_str_eq(second, strchr(first, ' ') + 1, "the second run chose otherwise");
    cr_expect(strstr(tg_gemm_backend(), path) != NULL, "backend: %s", tg_gemm_backend());
    products_right_and_reproducible();
    unlink(path);
    rmdir(dir);
}

/* A cache that cannot be written (its directory is a file) still gives measured kernels, and
 * says it could not keep them; products right. */
Test(blas_choice, unwritable_cache_still_measures) {
#ifndef TG_USE_BLAS
    cr_skip("built with -Dblas=false");
#endif
    char dir[64], path[128];
    fclose(temp_file(dir, path, sizeof path, "file"));
    strcat(path, "/choice.txt");
    tune_with_cache(path);
    if (!openblas_here()) cr_skip("no OpenBLAS here: %s", tg_gemm_backend());
    cr_expect_eq(tg_gemm_choice(false, 1, 1, 1, NULL), TG_GEMM_MEASURED);
    cr_expect(strstr(tg_gemm_backend(), "not kept") != NULL, "backend: %s", tg_gemm_backend());
    products_right_and_reproducible();
    snprintf(path, sizeof path, "%s/file", dir);
    unlink(path);
    rmdir(dir);
}

/* A file of another machine (another key) or a broken one is measured over and replaced. */
Test(blas_choice, a_foreign_or_broken_cache_is_measured_again) {
#ifndef TG_USE_BLAS
    cr_skip("built with -Dblas=false");
#endif
    char dir[64], path[96];
    FILE *f = temp_file(dir, path, sizeof path, "choice.txt");
    fprintf(f, "key=Some Other CPU|cpuid 00000000|OpenBLAS 0.0|tapegrad 0.0.0|Haswell Zen portable\n"
               "thin=Zen\nweight-gradient=Zen\nshallow=Zen\nlarge=Nonesuch\n");
    fclose(f);
    tune_with_cache(path);
    if (!openblas_here()) cr_skip("no OpenBLAS here: %s", tg_gemm_backend());
    cr_expect_eq(tg_gemm_choice(false, 1, 1, 1, NULL), TG_GEMM_MEASURED);
    char text[1024] = "";
    f = fopen(path, "r");
    cr_assert(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    cr_expect(strstr(text, "Some Other CPU") == NULL && strstr(text, "large=") != NULL,
              "the file was not replaced: %s", text);
    unlink(path);
    rmdir(dir);
}
