/* tests/test_gemm_thin.c — the no-packing kernels of ops/gemm_thin.c (what BLAS builds run for
 * the products that fit L2 where the table or the tuner chose them): against a double-precision
 * reference at shapes round and past every tile edge, with padded strides and alpha/beta cases;
 * each element the documented chain of multiply-adds, bit for bit; the same bits whether C is
 * computed whole or in the pieces ops/gemm.c cuts; products that do not fit refused untouched. */
#include "helpers.h"
#include "ops/ops.h"

static float elem(bool trans, const float *m, int64_t ld, int64_t r, int64_t c) {
    return trans ? m[c * ld + r] : m[r * ld + c];
}

/* op(A) op(B) in double, then alpha and beta in double, rounded once */
static float reference_at(bool ta, bool tb, int64_t i, int64_t j, int64_t k, float alpha,
                          const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                          float c_old) {
    double s = 0;
    for (int64_t p = 0; p < k; p++) s += (double)elem(ta, a, lda, i, p) * elem(tb, b, ldb, p, j);
    return (float)(alpha * s + (beta == 0.0f ? 0.0 : beta * (double)c_old));
}

/* The documented order: one chain over p from zero, fused where the kernels are, then alpha and
 * beta as the kernels apply them. */
static float chain_at(bool ta, bool tb, int64_t i, int64_t j, int64_t k, float alpha,
                      const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                      float c_old) {
    float s = 0.0f;
    for (int64_t p = 0; p < k; p++) {
        float x = elem(ta, a, lda, i, p), y = elem(tb, b, ldb, p, j);
        if (tgi_gemm_thin_fused()) s = fmaf(x, y, s);
        else {
            float xy = x * y;
            s = s + xy;
        }
    }
    float r = alpha == 1.0f ? s : alpha * s;
    if (beta == 0.0f) return r;
    if (beta == 1.0f) return c_old + r;
    float old = beta * c_old;
    return old + r;
}

static float *random_floats(tg_rng *rng, int64_t n) {
    float *x = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    cr_assert_not_null(x, "out of memory");
    for (int64_t i = 0; i < n; i++) x[i] = tg_rng_uniform(rng) - 0.5f;
    return x;
}

/* One product at padded strides against both references; C's padding must stay as it was. */
static void check_product(tg_rng *rng, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                          float alpha, float beta) {
    const int64_t pad = 3;
    int64_t lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    float *a = random_floats(rng, (ta ? k : m) * lda), *b = random_floats(rng, (tb ? n : k) * ldb);
    float *c = random_floats(rng, m * ldc), *old = malloc(sizeof(float) * (size_t)(m * ldc + 1));
    cr_assert_not_null(old, "out of memory");
    memcpy(old, c, sizeof(float) * (size_t)(m * ldc));
    if (beta == 0.0f) /* C is not read: a NaN there must not come through */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[i * ldc + j] = NAN;
    cr_assert(tgi_gemm_thin(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc),
              "%lldx%lldx%lld ta=%d tb=%d refused", (long long)m, (long long)n, (long long)k, ta, tb);
    int bad = 0;
    for (int64_t i = 0; i < m && bad < 3; i++)
        for (int64_t j = 0; j < ldc && bad < 3; j++) {
            float got = c[i * ldc + j], o = old[i * ldc + j];
            if (j >= n) {
                if (memcmp(&got, &o, sizeof got) != 0) {
                    cr_expect_fail("%lldx%lldx%lld ta=%d tb=%d: padding C[%lld,%lld] written",
                                   (long long)m, (long long)n, (long long)k, ta, tb, (long long)i,
                                   (long long)j);
                    bad++;
                }
                continue;
            }
            float want = reference_at(ta, tb, i, j, k, alpha, a, lda, b, ldb, beta, o);
            float exact = chain_at(ta, tb, i, j, k, alpha, a, lda, b, ldb, beta, o);
            float tol = 1e-6f * (float)(k + 2) * (fabsf(alpha) + fabsf(beta) + 1.0f);
            if (!(fabsf(got - want) <= tol) || memcmp(&got, &exact, sizeof got) != 0) {
                cr_expect_fail("%lldx%lldx%lld ta=%d tb=%d alpha %g beta %g: C[%lld,%lld] = %.9g, "
                               "reference %.9g, chain %.9g", (long long)m, (long long)n,
                               (long long)k, ta, tb, (double)alpha, (double)beta, (long long)i,
                               (long long)j, (double)got, (double)want, (double)exact);
                bad++;
            }
        }
    free(a);
    free(b);
    free(c);
    free(old);
}

Test(gemm_thin, matches_reference_at_edges_strides_alpha_beta) {
    /* rows: below, at and past a 6-row tile and the 4 + 4 ending; columns: round the 16-wide
     * panel and the 8-float halves; depth: 0, odd, past the 8 x 8 transposes, the largest */
    const int64_t ms[] = {1, 2, 3, 5, 6, 7, 8, 10, 13, 14, 32, 64};
    const int64_t ns[] = {1, 7, 8, 9, 16, 17, 31, 40};
    const int64_t ks[] = {0, 1, 7, 8, 9, 33, 130};
    const float ab[][2] = {{1.0f, 0.0f}, {1.0f, 1.0f}, {0.5f, 1.5f}, {-2.0f, 0.0f}};
    tg_rng rng;
    tg_rng_seed(&rng, 25);
    int case_no = 0;
    for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++)
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
            for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
                for (int t = 0; t < 3; t++, case_no++) { /* NN, TN, NT */
                    const float *x = ab[case_no % 4];
                    check_product(&rng, t == 1, t == 2, ms[mi], ns[ni], ks[ki], x[0], x[1]);
                }
    /* the model shapes, and the deepest product taken */
    check_product(&rng, false, true, 64, 256, 256, 1.0f, 1.0f);
    check_product(&rng, false, false, 32, 128, 512, 1.0f, 0.0f);
    check_product(&rng, true, false, 512, 128, 32, 1.0f, 1.0f);
    check_product(&rng, true, false, 70, 48, 512, 0.5f, 1.5f);
    check_product(&rng, false, true, 9, 33, 512, 1.0f, 0.0f);
}

/* C computed whole, then again in column pieces and in row pieces (as ops/gemm.c cuts a
 * product for threads): the same bits, so the numbers never depend on the cut. */
Test(gemm_thin, pieces_give_the_bits_of_the_whole) {
    enum { M = 64, N = 256, K = 96 };
    tg_rng rng;
    tg_rng_seed(&rng, 7);
    float *a = random_floats(&rng, M * K), *b = random_floats(&rng, K * N);
    float *init = random_floats(&rng, M * N);
    float *whole = malloc(sizeof(float) * M * N), *cut = malloc(sizeof(float) * M * N);
    cr_assert(whole && cut, "out of memory");
    for (int t = 0; t < 3; t++) {
        bool ta = t == 1, tb = t == 2;
        int64_t lda = ta ? M : K, ldb = tb ? K : N;
        memcpy(whole, init, sizeof(float) * M * N);
        cr_assert(tgi_gemm_thin(ta, tb, M, N, K, 1.0f, a, lda, b, ldb, 1.0f, whole, N));
        const int64_t col_cuts[] = {0, 16, 48, 112, 240, N}, row_cuts[] = {0, 8, 14, 40, M};
        memcpy(cut, init, sizeof(float) * M * N);
        for (int p = 0; p + 1 < 6; p++) {
            int64_t from = col_cuts[p], len = col_cuts[p + 1] - from;
            cr_assert(tgi_gemm_thin(ta, tb, M, len, K, 1.0f, a, lda, tb ? b + from * ldb : b + from,
                                    ldb, 1.0f, cut + from, N));
        }
        cr_expect(memcmp(whole, cut, sizeof(float) * M * N) == 0, "column pieces differ (t=%d)", t);
        memcpy(cut, init, sizeof(float) * M * N);
        for (int p = 0; p + 1 < 5; p++) {
            int64_t from = row_cuts[p], len = row_cuts[p + 1] - from;
            cr_assert(tgi_gemm_thin(ta, tb, len, N, K, 1.0f, ta ? a + from : a + from * lda, lda, b,
                                    ldb, 1.0f, cut + from * N, N));
        }
        cr_expect(memcmp(whole, cut, sizeof(float) * M * N) == 0, "row pieces differ (t=%d)", t);
    }
    free(a);
    free(b);
    free(init);
    free(whole);
    free(cut);
}

/* What does not fit (too deep, too large for L2, both transposed) is refused, C untouched:
 * the caller then hands it to OpenBLAS. */
Test(gemm_thin, refuses_what_does_not_fit) {
    float a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8}, c[4] = {9, 9, 9, 9};
    cr_expect_not(tgi_gemm_thin_fits(false, false, 64, 256, TGI_THIN_MOST_K + 1));
    cr_expect_not(tgi_gemm_thin_fits(false, true, 64, 1024, 512)); /* 544K floats */
    cr_expect_not(tgi_gemm_thin_fits(true, true, 2, 2, 2));
    cr_expect(tgi_gemm_thin_fits(false, true, 64, 256, 256));
    cr_expect(tgi_gemm_thin_fits(true, false, 512, 128, 32));
    cr_expect_not(tgi_gemm_thin(true, true, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2));
    for (int i = 0; i < 4; i++) cr_expect_eq(c[i], 9.0f);
}
