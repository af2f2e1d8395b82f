/*
 * ops/gemm_thin.c — products small enough to sit in L2, computed without packing A.
 *
 * OpenBLAS packs both operands at every call. For the batch-sized products of the MLP and the
 * LSTM (64 x 256 x 256, 32 x 512 x 128, ...: tens of microseconds each) that packing was 18% of
 * an MLP step, while its kernel ran near the machine's peak. Here A is read where it lies: a
 * 6 x 16 tile of C keeps 12 eight-float accumulators, and each step p broadcasts A(i, p) of its
 * 6 rows (along A's rows, each line serving 16 steps) against row p of a panel of B's 16
 * columns. The panel is B's rows copied (two vector moves a row: rows ldb apart would fall into a
 * few L1 sets and evict each other), or, for Y = X W^T (NT), W's 16 rows transposed 8 x 8 at a
 * time; its lines for the next panel are asked for while the tiles of this one run. For dW =
 * dY^T X (TN) a strip of dY's columns is transposed first (a few % of the work): read where they
 * lie, each step would touch a new line of dY for 6 floats of it.
 *
 * Every element of C is one chain of multiply-adds over p = 0..k-1 in order, from zero, then
 * alpha and beta: the same operations wherever the element lies in its tile, at a tile's edge
 * or in a piece that ops/gemm.c cut, so the numbers depend on the shapes alone. The
 * multiply-adds are fused where the compiler targets FMA; these kernels run only in builds that
 * load a BLAS (whose results already differ from the portable GEMM's in the last bits). Without
 * FMA they are a multiply and an add, so the file compiles everywhere and is tested under the
 * sanitizers too.
 *
 * The panel and the strip live on the stack (k <= TGI_THIN_MOST_K: 32 KB and 24 KB): nothing is
 * allocated.
 */
#include "ops/ops.h"
#include "ops/simd.h"

#ifdef TGI_HAVE_FMA8
#define FUSED 1
#define MADD(acc, a, b) TGI_FMA8(acc, a, b)
#else
#define MADD(acc, a, b) ((acc) + (a) * (b))
#endif

#define NR 16 /* columns of a tile and of the panel: two vectors */

#if defined(__GNUC__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#define NOINLINE __attribute__((noinline))
#else
#define ALWAYS_INLINE inline
#define NOINLINE
#endif

static ALWAYS_INLINE void store8(float *p, tgi_v8 v) {
    memcpy(p, &v, sizeof v);
}

/* C's tile row from its accumulator: alpha acc + beta C (C not read when beta is 0). */
static ALWAYS_INLINE tgi_v8 finish(tgi_v8 acc, const float *c, float alpha, float beta) {
    tgi_v8 r = alpha == 1.0f ? acc : tgi_splat8(alpha) * acc;
    if (beta == 0.0f) return r;
    tgi_v8 old = tgi_load8(c);
    return beta == 1.0f ? old + r : tgi_splat8(beta) * old + r;
}

/* TN: floats of the transposed strip of A (a multiple of 6 rows of k floats; 24 KB) */
#define STRIP_FLOATS 6144

/* One row of the tile at step p: acc0/acc1 += A(i, p) * the panel's row p (a no-op past rows). */
#define STEP_ROW(i)                                                                                \
    if (rows > i) {                                                                                \
        tgi_v8 x = tgi_splat8(a[i * lda + p]);                                                     \
        c##i##0 = MADD(c##i##0, x, b0);                                                            \
        c##i##1 = MADD(c##i##1, x, b1);                                                            \
    }

/* The tile's sums: acc[2 i + h] = sum over p of A(i, p) * the panel's row p, half h, for i <
 * rows, A(i, p) = a[i lda + p]. rows is a constant at every call. The accumulators are named
 * variables, and alpha and beta are not live across the loop: with those two (or with the
 * accumulators in an array) clang kept one of the 12 on the stack, moving ten others round it
 * at every step. */
static ALWAYS_INLINE void sums(int rows, int64_t k, const float *a, int64_t lda, const float *panel,
                               tgi_v8 *acc) {
    tgi_v8 z = tgi_splat8(0.0f);
    tgi_v8 c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z;
    tgi_v8 c30 = z, c31 = z, c40 = z, c41 = z, c50 = z, c51 = z;
    for (int64_t p = 0; p < k; p++) {
        tgi_v8 b0 = tgi_load8(panel + p * NR), b1 = tgi_load8(panel + p * NR + 8);
        STEP_ROW(0) STEP_ROW(1) STEP_ROW(2) STEP_ROW(3) STEP_ROW(4) STEP_ROW(5)
    }
    tgi_v8 all[12] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51};
    for (int i = 0; i < 2 * rows; i++) acc[i] = all[i];
}

/* One function per tile height */
#define SUMS_OF(rows)                                                                              \
    static NOINLINE void sums_##rows(int64_t k, const float *a, int64_t lda, const float *panel,    \
                                     tgi_v8 *acc) {                                                \
        sums(rows, k, a, lda, panel, acc);                                                         \
    }
SUMS_OF(6)
SUMS_OF(4)
SUMS_OF(3)
SUMS_OF(2)
SUMS_OF(1)

/* rows x width of C = alpha * the sums + beta * C (C not read when beta is 0). The cases are
 * told apart once a tile, not once a row: with k = 32 this pass is a fifth of a tile's time. */
static void finish_tile(const tgi_v8 *acc, int64_t rows, int64_t width, float alpha, float beta,
                        float *c, int64_t ldc) {
    if (width == NR && alpha == 1.0f && (beta == 1.0f || beta == 0.0f)) {
        for (int64_t i = 0; i < rows; i++) {
            float *ci = c + i * ldc;
            tgi_v8 r0 = acc[2 * i], r1 = acc[2 * i + 1];
            if (beta == 1.0f) r0 = tgi_load8(ci) + r0, r1 = tgi_load8(ci + 8) + r1;
            store8(ci, r0);
            store8(ci + 8, r1);
        }
        return;
    }
    for (int64_t i = 0; i < rows; i++) {
        float *ci = c + i * ldc;
        if (width == NR) {
            store8(ci, finish(acc[2 * i], ci, alpha, beta));
            store8(ci + 8, finish(acc[2 * i + 1], ci + 8, alpha, beta));
        } else { /* the last columns: the same operations, element by element */
            float lanes[NR];
            store8(lanes, acc[2 * i]);
            store8(lanes + 8, acc[2 * i + 1]);
            for (int64_t j = 0; j < width; j++) {
                float r = alpha == 1.0f ? lanes[j] : alpha * lanes[j];
                ci[j] = beta == 0.0f ? r : beta == 1.0f ? ci[j] + r : beta * ci[j] + r;
            }
        }
    }
}

/* The lines of B the next panel will be made from (NULL b: none). B (a layer's weights) is
 * often in L3 or memory, and copying a panel waited on its k lines; asked for a share at each
 * tile of the current panel, they arrive while it is computed, without filling the queue of
 * misses at once. */
typedef struct next_panel {
    const float *b; /* B's first element of the next panel's columns (NN) or rows (NT) */
    int64_t ldb, lines, per_row; /* lines to ask for; NT: lines per row of W */
} next_panel;

static next_panel next_of(const float *b, int64_t ldb, bool trans_b, int64_t k, int64_t j,
                          int64_t n) {
    if (j >= n || k == 0) return (next_panel){NULL, 0, 0, 0};
    if (!trans_b) return (next_panel){b + j, ldb, k, 0};
    int64_t rows = n - j < NR ? n - j : NR, per_row = (k + 15) / 16;
    return (next_panel){b + j * ldb, ldb, rows * per_row, per_row};
}

static void prefetch_lines(const next_panel *next, int64_t from, int64_t to) {
    if (!next->b) return;
    if (to > next->lines) to = next->lines;
    for (int64_t q = from; q < to; q++) {
        const float *line = next->per_row ? next->b + q / next->per_row * next->ldb + q % next->per_row * 16
                                          : next->b + q * next->ldb;
        __builtin_prefetch(line, 0, 2);
    }
}

/* The tiles of one column panel down all m rows: 6 rows a tile, the last ones 4 + 4 rather than
 * 6 + 2 (a two-row tile has too few accumulators to cover the FMA latency). */
static void panel_rows(int64_t m, int64_t width, int64_t k, const float *a, int64_t lda,
                       const float *panel, float alpha, float beta, float *c, int64_t ldc,
                       const next_panel *next) {
    int64_t i = 0, share = next->lines / ((m + 5) / 6) + 1, asked = 0;
    while (i < m) {
        prefetch_lines(next, asked, asked + share);
        asked += share;
        int64_t left = m - i, rows = left >= 6 && left != 8 ? 6 : left >= 4 ? 4 : left;
        const float *ai = a + i * lda;
        float *ci = c + i * ldc;
        /* C's tile is wanted after the loop: with k as short as 32 (a weight gradient over a
         * batch) its rows, ldc apart, would otherwise arrive from L2 or beyond while the FMAs
         * wait */
        for (int64_t r = 0; r < rows; r++) {
            __builtin_prefetch(ci + r * ldc, 1);
            __builtin_prefetch(ci + r * ldc + NR - 1, 1);
        }
        tgi_v8 acc[12];
        switch (rows) {
        case 6: sums_6(k, ai, lda, panel, acc); break;
        case 4: sums_4(k, ai, lda, panel, acc); break;
        case 3: sums_3(k, ai, lda, panel, acc); break;
        case 2: sums_2(k, ai, lda, panel, acc); break;
        default: sums_1(k, ai, lda, panel, acc); break;
        }
        finish_tile(acc, rows, width, alpha, beta, ci, ldc);
        i += rows;
    }
}

/* panel[p][0..16) = B[p, j..j+width) (B not transposed), zeros past width */
static void copy_panel(float *restrict panel, const float *restrict b, int64_t ldb, int64_t k,
                       int64_t width) {
    if (width == NR) {
        for (int64_t p = 0; p < k; p++) {
            store8(panel + p * NR, tgi_load8(b + p * ldb));
            store8(panel + p * NR + 8, tgi_load8(b + p * ldb + 8));
        }
        return;
    }
    for (int64_t p = 0; p < k; p++)
        for (int64_t j = 0; j < NR; j++) panel[p * NR + j] = j < width ? b[p * ldb + j] : 0.0f;
}

/* 8 x 8 floats transposed: rows r[0..8) of w (ld apart, 8 floats each) to out[q * ldo], q < 8. */
static ALWAYS_INLINE void transpose8(const float *w, int64_t ld, float *out, int64_t ldo) {
    tgi_v8 r0 = tgi_load8(w), r1 = tgi_load8(w + ld), r2 = tgi_load8(w + 2 * ld);
    tgi_v8 r3 = tgi_load8(w + 3 * ld), r4 = tgi_load8(w + 4 * ld), r5 = tgi_load8(w + 5 * ld);
    tgi_v8 r6 = tgi_load8(w + 6 * ld), r7 = tgi_load8(w + 7 * ld);
    tgi_v8 t0 = __builtin_shufflevector(r0, r1, 0, 8, 1, 9, 4, 12, 5, 13);
    tgi_v8 t1 = __builtin_shufflevector(r0, r1, 2, 10, 3, 11, 6, 14, 7, 15);
    tgi_v8 t2 = __builtin_shufflevector(r2, r3, 0, 8, 1, 9, 4, 12, 5, 13);
    tgi_v8 t3 = __builtin_shufflevector(r2, r3, 2, 10, 3, 11, 6, 14, 7, 15);
    tgi_v8 t4 = __builtin_shufflevector(r4, r5, 0, 8, 1, 9, 4, 12, 5, 13);
    tgi_v8 t5 = __builtin_shufflevector(r4, r5, 2, 10, 3, 11, 6, 14, 7, 15);
    tgi_v8 t6 = __builtin_shufflevector(r6, r7, 0, 8, 1, 9, 4, 12, 5, 13);
    tgi_v8 t7 = __builtin_shufflevector(r6, r7, 2, 10, 3, 11, 6, 14, 7, 15);
    tgi_v8 u0 = __builtin_shufflevector(t0, t2, 0, 1, 8, 9, 4, 5, 12, 13);
    tgi_v8 u1 = __builtin_shufflevector(t0, t2, 2, 3, 10, 11, 6, 7, 14, 15);
    tgi_v8 u2 = __builtin_shufflevector(t1, t3, 0, 1, 8, 9, 4, 5, 12, 13);
    tgi_v8 u3 = __builtin_shufflevector(t1, t3, 2, 3, 10, 11, 6, 7, 14, 15);
    tgi_v8 u4 = __builtin_shufflevector(t4, t6, 0, 1, 8, 9, 4, 5, 12, 13);
    tgi_v8 u5 = __builtin_shufflevector(t4, t6, 2, 3, 10, 11, 6, 7, 14, 15);
    tgi_v8 u6 = __builtin_shufflevector(t5, t7, 0, 1, 8, 9, 4, 5, 12, 13);
    tgi_v8 u7 = __builtin_shufflevector(t5, t7, 2, 3, 10, 11, 6, 7, 14, 15);
    store8(out + 0 * ldo, __builtin_shufflevector(u0, u4, 0, 1, 2, 3, 8, 9, 10, 11));
    store8(out + 1 * ldo, __builtin_shufflevector(u1, u5, 0, 1, 2, 3, 8, 9, 10, 11));
    store8(out + 2 * ldo, __builtin_shufflevector(u2, u6, 0, 1, 2, 3, 8, 9, 10, 11));
    store8(out + 3 * ldo, __builtin_shufflevector(u3, u7, 0, 1, 2, 3, 8, 9, 10, 11));
    store8(out + 4 * ldo, __builtin_shufflevector(u0, u4, 4, 5, 6, 7, 12, 13, 14, 15));
    store8(out + 5 * ldo, __builtin_shufflevector(u1, u5, 4, 5, 6, 7, 12, 13, 14, 15));
    store8(out + 6 * ldo, __builtin_shufflevector(u2, u6, 4, 5, 6, 7, 12, 13, 14, 15));
    store8(out + 7 * ldo, __builtin_shufflevector(u3, u7, 4, 5, 6, 7, 12, 13, 14, 15));
}

/* panel[p][j] = W[j, p] for the panel's width rows of W (B transposed), zeros past width */
static void transpose_panel(float *restrict panel, const float *restrict w, int64_t ldw, int64_t k,
                            int64_t width) {
    int64_t whole = width == NR ? k / 8 * 8 : 0;
    for (int64_t p = 0; p < whole; p += 8) {
        transpose8(w + p, ldw, panel + p * NR, NR);
        transpose8(w + 8 * ldw + p, ldw, panel + p * NR + 8, NR);
    }
    for (int64_t p = whole; p < k; p++)
        for (int64_t j = 0; j < NR; j++) panel[p * NR + j] = j < width ? w[j * ldw + p] : 0.0f;
}

/* at[r][p] = A[p, r] for r < rows, p < k (rows columns of A, lda apart, to rows of k floats) */
static void transpose_strip(float *restrict at, const float *restrict a, int64_t lda, int64_t k,
                            int64_t rows) {
    int64_t rows8 = rows / 8 * 8, k8 = k / 8 * 8;
    for (int64_t r = 0; r < rows8; r += 8)
        for (int64_t p = 0; p < k8; p += 8) transpose8(a + p * lda + r, lda, at + r * k + p, k);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t p = r < rows8 ? k8 : 0; p < k; p++) at[r * k + p] = a[p * lda + r];
}

bool tgi_gemm_thin_fused(void) {
#ifdef FUSED
    return true;
#else
    return false;
#endif
}

bool tgi_gemm_thin_fits(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k) {
    if (trans_a && trans_b) return false;
    if (k > TGI_THIN_MOST_K) return false;
    return (double)m * (double)k + (double)k * (double)n <= TGI_THIN_MOST_FLOATS;
}

/* C[:, all n] from A(i, p) = a[i lda + p] and B's panels, 16 columns at a time */
static void by_panels(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, bool trans_b,
                      const float *b, int64_t ldb, float alpha, float beta, float *c, int64_t ldc,
                      float *panel) {
    for (int64_t j = 0; j < n; j += NR) {
        int64_t width = n - j < NR ? n - j : NR;
        if (trans_b) transpose_panel(panel, b + j * ldb, ldb, k, width);
        else copy_panel(panel, b + j, ldb, k, width);
        next_panel next = next_of(b, ldb, trans_b, k, j + NR, n);
        panel_rows(m, width, k, a, lda, panel, alpha, beta, c + j, ldc, &next);
    }
}

bool tgi_gemm_thin(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                   const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                   int64_t ldc) {
    if (!tgi_gemm_thin_fits(trans_a, trans_b, m, n, k)) return false;
    if (m <= 0 || n <= 0) return true;
    _Alignas(64) float panel[TGI_THIN_MOST_K * NR]; /* whole cache lines: no load straddles two */
    if (!trans_a) {
        by_panels(m, n, k, a, lda, trans_b, b, ldb, alpha, beta, c, ldc, panel);
        return true;
    }
    /* TN (dW = dY^T X): A's columns are C's rows. Read where they lie, each step p of a tile
     * would touch a new line of A (6 floats of it), lda apart; a strip of them transposed first
     * (a few % of the work) is read like A of NN, 16 steps a line. */
    _Alignas(64) float at[STRIP_FLOATS];
    int64_t strip = k > 0 ? STRIP_FLOATS / k / 6 * 6 : m;
    for (int64_t i = 0; i < m; i += strip) {
        int64_t rows = m - i < strip ? m - i : strip;
        transpose_strip(at, a + i, lda, k, rows);
        by_panels(rows, n, k, at, k, trans_b, b, ldb, alpha, beta, c + i * ldc, ldc, panel);
    }
    return true;
}
