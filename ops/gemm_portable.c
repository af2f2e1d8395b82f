/*
 * ops/gemm_portable.c — our own blocked GEMM: the backend when no BLAS can be loaded, the
 * reference the loaded BLAS is checked against at start-up, and bit-identical on every CPU.
 *
 * The portable kernels pick a loop order per transpose case so the innermost loop always runs
 * over contiguous memory with independent accumulators, which compilers vectorise without
 * -ffast-math:
 *   op(B) = B   : c[i,:] += a_ip * b[p,:]     (an axpy over a row of B)
 *   op(B) = B^T : c[i,j] += dot(A row i, b[j,:])  (8 partial sums, combined at the end)
 * Blocking over k and n keeps the panel of B in cache while the rows of C stream past.
 */
#include "ops/ops.h"

#define BLOCK_K 256
#define BLOCK_N 512

static void scale_c(int64_t m, int64_t n, float beta, float *c, int64_t ldc) {
    if (beta == 1.0f) return;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
}

/* Element (i, p) of op(A). */
static inline float a_at(bool trans_a, const float *a, int64_t lda, int64_t i, int64_t p) {
    return trans_a ? a[p * lda + i] : a[i * lda + p];
}

/* C += alpha * op(A) * B, B not transposed. */
static void gemm_axpy(bool trans_a, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                      int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc) {
    for (int64_t p0 = 0; p0 < k; p0 += BLOCK_K) {
        int64_t p1 = p0 + BLOCK_K < k ? p0 + BLOCK_K : k;
        for (int64_t j0 = 0; j0 < n; j0 += BLOCK_N) {
            int64_t j1 = j0 + BLOCK_N < n ? j0 + BLOCK_N : n;
            for (int64_t i = 0; i < m; i++) {
                float *restrict ci = c + i * ldc;
                for (int64_t p = p0; p < p1; p++) {
                    float aip = alpha * a_at(trans_a, a, lda, i, p);
                    if (aip == 0.0f) continue;
                    const float *restrict bp = b + p * ldb;
                    for (int64_t j = j0; j < j1; j++) ci[j] += aip * bp[j];
                }
            }
        }
    }
}

static float dot(const float *restrict x, const float *restrict y, int64_t n) {
    float partial[8] = {0};
    int64_t p = 0;
    for (; p + 8 <= n; p += 8)
        for (int q = 0; q < 8; q++) partial[q] += x[p + q] * y[p + q];
    float sum = 0.0f;
    for (int q = 0; q < 8; q++) sum += partial[q];
    for (; p < n; p++) sum += x[p] * y[p];
    return sum;
}

/* C += alpha * A * B^T: rows of A against rows of B. */
static void gemm_dot(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                     const float *b, int64_t ldb, float *c, int64_t ldc) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) c[i * ldc + j] += alpha * dot(a + i * lda, b + j * ldb, k);
}

/* C += alpha * A^T * B^T, rare (no op of ours needs it): plain loops. */
static void gemm_both_transposed(int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                                 int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float sum = 0.0f;
            for (int64_t p = 0; p < k; p++) sum += a[p * lda + i] * b[j * ldb + p];
            c[i * ldc + j] += alpha * sum;
        }
}

void tgi_gemm_portable(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                       float *c, int64_t ldc) {
    scale_c(m, n, beta, c, ldc);
    if (!trans_b) gemm_axpy(trans_a, m, n, k, alpha, a, lda, b, ldb, c, ldc);
    else if (!trans_a) gemm_dot(m, n, k, alpha, a, lda, b, ldb, c, ldc);
    else gemm_both_transposed(m, n, k, alpha, a, lda, b, ldb, c, ldc);
}
