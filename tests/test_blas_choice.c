/* tests/test_blas_choice.c — which kernels ops/blas.c chooses: OpenBLAS's Haswell kernels on AMD
 * family 19h (Zen 3, measured faster than its Zen kernels), the user's OPENBLAS_CORETYPE kept,
 * and oneDNN for the thin products on request (TAPEGRAD_BLAS=openblas+onednn): right results,
 * and the same bits on 1 and 2 threads and from one call to the next. Each test runs in its own
 * process (Criterion's default), so each chooses the backend afresh from its environment. */
#include "helpers.h"
#include "ops/ops.h"

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
    const char *backend = tg_gemm_backend();
    cr_expect(strstr(backend, "Haswell kernels") != NULL, "backend: %s", backend);
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
    const char *backend = tg_gemm_backend();
    cr_expect(strstr(backend, "Zen kernels") != NULL, "backend: %s", backend);
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
 * 32x512x128), one outside it (a weight gradient, A transposed) and odd small ones: against the
 * reference, and the same bits on 1 and 2 threads and on a second call. */
Test(blas_choice, onednn_on_request_is_right_and_reproducible) {
#ifndef TG_USE_BLAS
    cr_skip("built with -Dblas=false");
#endif
    unsetenv("OPENBLAS_CORETYPE");
    setenv("TAPEGRAD_BLAS", "openblas+onednn", 1);
    const char *backend = tg_gemm_backend();
    if (!strstr(backend, "oneDNN")) cr_skip("no libdnnl.so.2 here (or it disagreed): %s", backend);
    const int64_t shapes[][5] = {{64, 256, 256, 0, 1}, {64, 256, 256, 0, 0}, {32, 512, 128, 0, 1},
                                 {256, 256, 64, 1, 0}, {5, 3, 7, 0, 1},     {17, 33, 9, 0, 0}};
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
