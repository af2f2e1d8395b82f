/*
 * ops/gemm_portable.c — our own GEMM: the backend when no BLAS can be loaded (and in
 * -Dblas=false builds), the reference a loaded BLAS is checked against at start-up, and
 * bit-identical on every CPU.
 *
 * A register-blocked kernel in portable C (GNU vector extensions, which gcc and clang lower to
 * whatever vectors the target has): a tile of MR x NR elements of C is summed in registers over a
 * block of KC steps of k, then added to C. Per element the order of operations depends only on k
 * (blocks of KC, in order; within a block p = 0, 1, ...), never on the tile's position, the
 * vector width or the CPU, and multiplications and additions are separate (the library is built
 * with -ffp-contract=off), so every machine computes the same bits.
 *
 * No packing of A: the kernel reads op(A) through a row and a column stride, both transposes
 * alike. op(B) is read in place when its rows are contiguous (B not transposed, a whole panel
 * of NR columns); otherwise a KC x NR panel is copied to the stack first (B transposed, or the
 * last, narrower panel, padded with zeros).
 */
#include "ops/ops.h"

#include <string.h>

#define MR 6
#define NR 16
#define KC 256
#define MC 96   /* rows of A per block: MC x KC floats (96 KiB) stay in L2 across the panels */

typedef float v8 __attribute__((vector_size(32)));

static inline v8 load8(const float *p) {
    v8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store8(float *p, v8 v) {
    memcpy(p, &v, sizeof v);
}

static void scale_c(int64_t m, int64_t n, float beta, float *c, int64_t ldc) {
    if (beta == 1.0f) return;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
}

/* tile[r][0..NR) = sum over p < kc of A(r, p) * B(p, 0..NR), for r < MR. A(r, p) is
 * a[r * rs_a + p * cs_a]; B(p, j) is b[p * ldb + j]. */
static void kernel(int64_t kc, const float *a, int64_t rs_a, int64_t cs_a, const float *b,
                   int64_t ldb, float tile[MR][NR]) {
    v8 c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0};
    v8 c30 = {0}, c31 = {0}, c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0};
    for (int64_t p = 0; p < kc; p++) {
        const float *bp = b + p * ldb, *ap = a + p * cs_a;
        v8 b0 = load8(bp), b1 = load8(bp + 8);
        float a0 = ap[0], a1 = ap[rs_a], a2 = ap[2 * rs_a];
        float a3 = ap[3 * rs_a], a4 = ap[4 * rs_a], a5 = ap[5 * rs_a];
        c00 += a0 * b0; c01 += a0 * b1;
        c10 += a1 * b0; c11 += a1 * b1;
        c20 += a2 * b0; c21 += a2 * b1;
        c30 += a3 * b0; c31 += a3 * b1;
        c40 += a4 * b0; c41 += a4 * b1;
        c50 += a5 * b0; c51 += a5 * b1;
    }
    const v8 rows[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    for (int r = 0; r < MR; r++) {
        store8(tile[r], rows[r][0]);
        store8(tile[r] + 8, rows[r][1]);
    }
}

/* C(i0.., j0..) += alpha * A(i0.., p0..) B(p0.., j0..) for one KC block and one panel of NR
 * columns (nr of them real), over every row of C. */
static void panel(bool trans_a, int64_t m, int64_t kc, float alpha, const float *a, int64_t lda,
                  const float *b, int64_t ldb, int nr, float *c, int64_t ldc) {
    /* A's rows are MR apart in a 6-row strip: for each missing row, a zero row stands in. */
    static const float zeros[MR * KC];
    int64_t rs_a = trans_a ? 1 : lda, cs_a = trans_a ? lda : 1;
    float tile[MR][NR];
    for (int64_t i = 0; i < m; i += MR) {
        int mr = m - i < MR ? (int)(m - i) : MR;
        const float *ai = trans_a ? a + i : a + i * lda;
        if (mr == MR) {
            kernel(kc, ai, rs_a, cs_a, b, ldb, tile);
        } else { /* the last, shorter strip: copy its rows next to zero rows */
            float strip[MR * KC];
            for (int r = 0; r < MR; r++)
                for (int64_t p = 0; p < kc; p++)
                    strip[r * KC + p] = r < mr ? ai[r * rs_a + p * cs_a] : zeros[r * KC + p];
            kernel(kc, strip, KC, 1, b, ldb, tile);
        }
        for (int r = 0; r < mr; r++) {
            float *ci = c + (i + r) * ldc;
            for (int j = 0; j < nr; j++) ci[j] += alpha * tile[r][j];
        }
    }
}

void tgi_gemm_portable(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                       float *c, int64_t ldc) {
    scale_c(m, n, beta, c, ldc);
    float packed[KC * NR];
    for (int64_t p0 = 0; p0 < k; p0 += KC)
        for (int64_t i0 = 0; i0 < m; i0 += MC) {
        int64_t kc = k - p0 < KC ? k - p0 : KC, mc = m - i0 < MC ? m - i0 : MC;
        const float *ap = trans_a ? a + p0 * lda + i0 : a + i0 * lda + p0;
        for (int64_t j0 = 0; j0 < n; j0 += NR) {
            int nr = n - j0 < NR ? (int)(n - j0) : NR;
            const float *bp;
            int64_t ldb_panel;
            if (!trans_b && nr == NR) { /* rows of this panel are contiguous in B */
                bp = b + p0 * ldb + j0;
                ldb_panel = ldb;
            } else { /* transposed, B(p, j) = b[j * ldb + p]: read along B's rows */
                for (int j = 0; j < NR; j++)
                    for (int64_t p = 0; p < kc; p++)
                        packed[p * NR + j] = j >= nr ? 0.0f
                                             : trans_b ? b[(j0 + j) * ldb + p0 + p]
                                                       : b[(p0 + p) * ldb + j0 + j];
                bp = packed;
                ldb_panel = NR;
            }
            panel(trans_a, mc, kc, alpha, ap, lda, bp, ldb_panel, nr, c + i0 * ldc + j0, ldc);
        }
    }
}
