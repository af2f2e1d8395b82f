/* tests/test_gemm.c — our portable GEMM (always compiled) and the dispatching one, against a
 * plain triple loop in double, for every transpose case, odd sizes and alpha/beta. */
#include "helpers.h"
#include "ops/ops.h"

static float at(bool trans, const float *m, int64_t ld, int64_t r, int64_t c) {
    return trans ? m[c * ld + r] : m[r * ld + c];
}

static void reference(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                      const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                      float *c, int64_t ldc) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++) s += (double)at(ta, a, lda, i, p) * at(tb, b, ldb, p, j);
            c[i * ldc + j] = (float)(alpha * s + beta * c[i * ldc + j]);
        }
}

typedef void (*gemm_fn)(bool, bool, int64_t, int64_t, int64_t, float, const float *, int64_t,
                        const float *, int64_t, float, float *, int64_t);

static void check_all_cases(gemm_fn gemm, const char *name) {
    const int64_t sizes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 9, 300}, {64, 70, 33}, {2, 600, 5}};
    tg_rng rng;
    tg_rng_seed(&rng, 11);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int64_t m = sizes[s][0], n = sizes[s][1], k = sizes[s][2];
        float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n);
        float *c = malloc(sizeof(float) * m * n), *want = malloc(sizeof(float) * m * n);
        cr_assert(a && b && c && want, "out of memory");
        for (int64_t i = 0; i < m * k; i++) a[i] = tg_rng_uniform(&rng) - 0.5f;
        for (int64_t i = 0; i < k * n; i++) b[i] = tg_rng_uniform(&rng) - 0.5f;
        for (int t = 0; t < 4; t++) {
            bool ta = t & 1, tb = t & 2;
            for (int64_t i = 0; i < m * n; i++) c[i] = want[i] = tg_rng_uniform(&rng);
            int64_t lda = ta ? m : k, ldb = tb ? k : n;
            gemm(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, t == 3 ? 0.0f : 1.5f, c, n);
            reference(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, t == 3 ? 0.0f : 1.5f, want, n);
            char what[96];
            snprintf(what, sizeof what, "%s %lldx%lldx%lld ta=%d tb=%d", name, (long long)m,
                     (long long)n, (long long)k, ta, tb);
            expect_close(c, want, m * n, 2e-5f * (float)k, what);
        }
        free(a);
        free(b);
        free(c);
        free(want);
    }
}

Test(gemm, portable_matches_reference) {
    check_all_cases(tgi_gemm_portable, "portable");
}

Test(gemm, dispatch_matches_reference) {
    check_all_cases(tgi_gemm, "dispatch");
}
