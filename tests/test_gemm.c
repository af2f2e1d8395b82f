/* tests/test_gemm.c — our portable GEMM (always compiled) and the dispatching one (loaded BLAS,
 * cut into pieces over the context's threads), against a plain triple loop in double, for every
 * transpose case, odd sizes and alpha/beta; and the same bits whatever the thread count. */
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

/* A (m x k) and B (k x n), uniform in [-0.5, 0.5), and room for two m x n results. */
typedef struct operands {
    float *a, *b, *c, *want;
} operands;

static operands random_operands(tg_rng *rng, int64_t m, int64_t n, int64_t k) {
    operands o = {malloc(sizeof(float) * m * k), malloc(sizeof(float) * k * n),
                  malloc(sizeof(float) * m * n), malloc(sizeof(float) * m * n)};
    cr_assert(o.a && o.b && o.c && o.want, "out of memory");
    for (int64_t i = 0; i < m * k; i++) o.a[i] = tg_rng_uniform(rng) - 0.5f;
    for (int64_t i = 0; i < k * n; i++) o.b[i] = tg_rng_uniform(rng) - 0.5f;
    return o;
}

static void free_operands(operands *o) {
    free(o->a);
    free(o->b);
    free(o->c);
    free(o->want);
}

static void check_all_cases(gemm_fn gemm, const char *name) {
    const int64_t sizes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 9, 300}, {64, 70, 33}, {2, 600, 5}};
    tg_rng rng;
    tg_rng_seed(&rng, 11);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int64_t m = sizes[s][0], n = sizes[s][1], k = sizes[s][2];
        operands o = random_operands(&rng, m, n, k);
        float *a = o.a, *b = o.b, *c = o.c, *want = o.want;
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
        free_operands(&o);
    }
}

Test(gemm, portable_matches_reference) {
    check_all_cases(tgi_gemm_portable, "portable");
}

static tg_ctx *dispatch_ctx;

static void gemm_dispatch(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                          const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                          float *c, int64_t ldc) {
    tgi_gemm(dispatch_ctx, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

Test(gemm, dispatch_matches_reference) {
    dispatch_ctx = tg_ctx_new();
    cr_assert(dispatch_ctx);
    for (int threads = 1; threads <= 2; threads++) {
        cr_assert_eq(tg_ctx_set_threads(dispatch_ctx, threads), TG_OK);
        check_all_cases(gemm_dispatch, threads == 1 ? "dispatch, 1 thread" : "dispatch, 2 threads");
    }
    tg_ctx_free(dispatch_ctx);
}

/* Large enough to be cut into pieces (on a machine with 2 or more cores): every transpose case
 * must give the same bits on 1 and 2 threads, and match the reference. */
Test(gemm, same_bits_on_any_thread_count) {
    const int64_t m = 96, n = 200, k = 130;
    float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n);
    float *c1 = malloc(sizeof(float) * m * n), *c2 = malloc(sizeof(float) * m * n);
    float *want = malloc(sizeof(float) * m * n);
    cr_assert(a && b && c1 && c2 && want, "out of memory");
    tg_rng rng;
    tg_rng_seed(&rng, 5);
    for (int64_t i = 0; i < m * k; i++) a[i] = tg_rng_uniform(&rng) - 0.5f;
    for (int64_t i = 0; i < k * n; i++) b[i] = tg_rng_uniform(&rng) - 0.5f;
    tg_ctx *ctx = tg_ctx_new();
    cr_assert(ctx);
    for (int t = 0; t < 4; t++) {
        bool ta = t & 1, tb = t & 2;
        int64_t lda = ta ? m : k, ldb = tb ? k : n;
        for (int64_t i = 0; i < m * n; i++) c1[i] = c2[i] = want[i] = (float)(i % 5);
        cr_assert_eq(tg_ctx_set_threads(ctx, 1), TG_OK);
        tgi_gemm(ctx, ta, tb, m, n, k, 1.25f, a, lda, b, ldb, 0.5f, c1, n);
        cr_assert_eq(tg_ctx_set_threads(ctx, 2), TG_OK);
        tgi_gemm(ctx, ta, tb, m, n, k, 1.25f, a, lda, b, ldb, 0.5f, c2, n);
        reference(ta, tb, m, n, k, 1.25f, a, lda, b, ldb, 0.5f, want, n);
        cr_assert(memcmp(c1, c2, sizeof(float) * m * n) == 0, "ta=%d tb=%d: 1 and 2 threads differ", ta, tb);
        expect_close(c1, want, m * n, 2e-5f * (float)k, ta ? "threads, ta" : "threads");
    }
    tg_ctx_free(ctx);
    free(a);
    free(b);
    free(c1);
    free(c2);
    free(want);
}

/* The biased product (bias rows written piece by piece) and the column sums (columns cut over
 * the threads): the same bits on 1 and 2 threads as the serial loops, on shapes cut by rows
 * (m > n) and by columns, with a column count that is not a multiple of the blocks. */
Test(gemm, bias_product_and_column_sums_match_the_serial_loops) {
    const int64_t shapes[][3] = {{300, 70, 40}, {32, 517, 128}};
    tg_ctx *ctx = tg_ctx_new();
    cr_assert(ctx);
    tg_rng rng;
    tg_rng_seed(&rng, 9);
    for (int s = 0; s < 2; s++) {
        int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        float *x = malloc(sizeof(float) * m * k), *w = malloc(sizeof(float) * n * k);
        float *bias = malloc(sizeof(float) * n);
        float *want = malloc(sizeof(float) * m * n), *got = malloc(sizeof(float) * m * n);
        float *sums_want = calloc((size_t)n, sizeof(float)), *sums_got = malloc(sizeof(float) * n);
        cr_assert(x && w && bias && want && got && sums_want && sums_got, "out of memory");
        for (int64_t i = 0; i < m * k; i++) x[i] = tg_rng_uniform(&rng) - 0.5f;
        for (int64_t i = 0; i < n * k; i++) w[i] = tg_rng_uniform(&rng) - 0.5f;
        for (int64_t j = 0; j < n; j++) bias[j] = tg_rng_uniform(&rng);
        for (int64_t r = 0; r < m; r++) memcpy(want + r * n, bias, sizeof(float) * n);
        tgi_gemm(ctx, false, true, m, n, k, 1.0f, x, k, w, k, 1.0f, want, n);
        for (int64_t j = 0; j < n; j++) sums_want[j] = (float)j;
        for (int64_t r = 0; r < m; r++)
            for (int64_t j = 0; j < n; j++) sums_want[j] += want[r * n + j];
        for (int threads = 1; threads <= 2; threads++) {
            cr_assert_eq(tg_ctx_set_threads(ctx, threads), TG_OK);
            memset(got, 0xff, sizeof(float) * m * n); /* NaN: every element must be written */
            tgi_gemm_bias(ctx, m, n, k, x, k, w, k, bias, got, n);
            cr_expect(memcmp(got, want, sizeof(float) * m * n) == 0,
                      "%lldx%lld, %d threads: the biased product differs", (long long)m, (long long)n, threads);
            for (int64_t j = 0; j < n; j++) sums_got[j] = (float)j;
            tgi_add_column_sums(ctx, m, n, want, n, sums_got);
            cr_expect(memcmp(sums_got, sums_want, sizeof(float) * n) == 0,
                      "%lldx%lld, %d threads: the column sums differ", (long long)m, (long long)n, threads);
        }
        free(x);
        free(w);
        free(bias);
        free(want);
        free(got);
        free(sums_want);
        free(sums_got);
    }
    tg_ctx_free(ctx);
}

/* Products run in one region give the bits of tgi_gemm on each in turn, on 1 and 2 threads:
 * the recurrent cells' dh and dW (32 x 128 x 512 and 512 x 128 x 32, both cut in pieces). */
Test(gemm, batch_gives_the_bits_of_one_call_each) {
    enum { B = 32, H = 128, W = 512 };
    static float dz[B * W], w[W * H], h[B * H], dh_want[B * H], dw_want[W * H], dh[B * H], dw[W * H];
    tg_rng rng;
    tg_rng_seed(&rng, 4);
    for (int i = 0; i < B * W; i++) dz[i] = tg_rng_uniform(&rng) - 0.5f;
    for (int i = 0; i < W * H; i++) w[i] = dw_want[i] = tg_rng_uniform(&rng) - 0.5f;
    for (int i = 0; i < B * H; i++) h[i] = dh_want[i] = tg_rng_uniform(&rng) - 0.5f;
    tg_ctx *ctx = tg_ctx_new();
    cr_assert(ctx);
    tgi_gemm(ctx, false, false, B, H, W, 1.0f, dz, W, w, H, 1.0f, dh_want, H);
    tgi_gemm(ctx, true, false, W, H, B, 1.0f, dz, W, h, H, 1.0f, dw_want, H);
    for (int threads = 1; threads <= 2; threads++) {
        cr_assert_eq(tg_ctx_set_threads(ctx, threads), TG_OK);
        memcpy(dh, h, sizeof dh);
        memcpy(dw, w, sizeof dw);
        tgi_gemm_args products[2] = {{false, false, B, H, W, 1.0f, dz, W, w, H, 1.0f, dh, H},
                                     {true, false, W, H, B, 1.0f, dz, W, h, H, 1.0f, dw, H}};
        tgi_gemm_batch(ctx, products, 2);
        cr_expect(memcmp(dh, dh_want, sizeof dh) == 0, "%d threads: the first product differs", threads);
        cr_expect(memcmp(dw, dw_want, sizeof dw) == 0, "%d threads: the second product differs", threads);
    }
    tg_ctx_free(ctx);
}

Test(gemm, backend_is_named) {
    const char *backend = tg_gemm_backend();
    cr_assert(backend && *backend);
#ifdef TG_USE_BLAS
    /* this machine has Debian's OpenBLAS (setup.sh installs it): it must be found and pass */
    cr_expect(strncmp(backend, "OpenBLAS", 8) == 0, "backend: %s", backend);
#else
    cr_expect(strncmp(backend, "portable", 8) == 0, "backend: %s", backend);
#endif
}

/* The portable GEMM's promise: per element, blocks of 256 steps of k in order, each summed from
 * zero in f32 by fused multiply-adds (sum = fmaf(a, b, sum): one rounding, which IEEE 754 defines
 * exactly), then C += alpha * block sum (a product, then an addition). A scalar loop in that
 * order must give the very same bits, whatever vectors the CPU has — that is what makes
 * -Dblas=false runs identical across machines. */
Test(gemm, portable_follows_its_documented_order_bit_for_bit) {
    const int64_t m = 13, n = 37, k = 536; /* odd tiles, three k blocks (256, 256, 24: a
        shallow one, whose tiles go row by row) */
    tg_rng rng;
    tg_rng_seed(&rng, 21);
    operands o = random_operands(&rng, m, n, k);
    float *a = o.a, *b = o.b, *c = o.c, *want = o.want;
    for (int t = 0; t < 4; t++) {
        bool ta = t & 1, tb = t & 2;
        int64_t lda = ta ? m : k, ldb = tb ? k : n;
        for (int64_t i = 0; i < m * n; i++) c[i] = want[i] = (float)(i % 3) - 1.0f;
        tgi_gemm_portable(ta, tb, m, n, k, 0.75f, a, lda, b, ldb, 1.0f, c, n);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++)
                for (int64_t p0 = 0; p0 < k; p0 += 256) {
                    float block = 0.0f;
                    for (int64_t p = p0; p < k && p < p0 + 256; p++)
                        block = fmaf(at(ta, a, lda, i, p), at(tb, b, ldb, p, j), block);
                    volatile float scaled = 0.75f * block;
                    want[i * n + j] += scaled;
                }
        int differing = 0;
        for (int64_t i = 0; i < m * n; i++) differing += c[i] != want[i];
        cr_expect_eq(differing, 0, "ta=%d tb=%d: %d of %lld elements differ", ta, tb, differing,
                     (long long)(m * n));
        /* and the element-by-element path of a thread without packing room */
        for (int64_t i = 0; i < m * n; i++) c[i] = (float)(i % 3) - 1.0f;
        tgi_gemm_in_order(ta, tb, m, n, k, 0.75f, a, lda, b, ldb, 1.0f, c, n);
        differing = 0;
        for (int64_t i = 0; i < m * n; i++) differing += c[i] != want[i];
        cr_expect_eq(differing, 0, "in order, ta=%d tb=%d: %d elements differ", ta, tb, differing);
    }
    free_operands(&o);
}

/* A build whose x86 target lacks FMA (-Dcpu=baseline, the sanitizer build) runs a copy of the
 * portable GEMM compiled for AVX2 + FMA when the CPU has them, and else the generic copy, whose
 * fused multiply-adds are then fmaf() calls: both must give the same bits, for every transpose
 * case, edge tiles, several k blocks and the alpha/beta paths of the tile update. (Where the
 * target has FMA there is one copy, and the two calls below run the same code.) */
Test(gemm, fma_copy_and_generic_copy_agree_bit_for_bit) {
    const int64_t sizes[][3] = {{13, 37, 600}, {64, 256, 64}, {7, 16, 1}, {150, 20, 280}};
    const float alphas[] = {1.0f, 0.75f, 1.0f}, betas[] = {1.0f, 0.0f, -0.5f};
    tg_rng rng;
    tg_rng_seed(&rng, 31);
    cr_log_info("the AVX2 + FMA copy: %s", tgi_gemm_portable_has_clone() ? "used" : "not in this build or CPU");
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int64_t m = sizes[s][0], n = sizes[s][1], k = sizes[s][2];
        operands o = random_operands(&rng, m, n, k);
        float *a = o.a, *b = o.b, *c = o.c, *want = o.want;
        for (int t = 0; t < 4; t++)
            for (int v = 0; v < 3; v++) {
                bool ta = t & 1, tb = t & 2;
                int64_t lda = ta ? m : k, ldb = tb ? k : n;
                for (int64_t i = 0; i < m * n; i++) c[i] = want[i] = tg_rng_uniform(&rng) - 0.5f;
                tgi_gemm_portable(ta, tb, m, n, k, alphas[v], a, lda, b, ldb, betas[v], c, n);
                tgi_gemm_portable_generic(ta, tb, m, n, k, alphas[v], a, lda, b, ldb, betas[v], want, n);
                int differing = 0;
                for (int64_t i = 0; i < m * n; i++) differing += memcmp(&c[i], &want[i], sizeof(float)) != 0;
                cr_expect_eq(differing, 0, "%lldx%lldx%lld ta=%d tb=%d alpha=%g beta=%g: %d elements differ",
                             (long long)m, (long long)n, (long long)k, ta, tb, alphas[v], betas[v], differing);
            }
        free_operands(&o);
    }
}
