/*
 * ops/gemm.c — the one entry point for matrix products: backend choice and threads.
 *
 * A product large enough to share is cut into pieces along the longer side of C, and the
 * pieces are spread over the context's threads. The cut depends on the shapes and on the
 * machine's online core count only — never on tg_ctx_set_threads nor on the CPUs the process is
 * pinned to — so a run gives the same numbers with 1 thread as with 2, pinned or not. Each piece is one call of the backend (the loaded BLAS, running
 * single-threaded, or the portable kernels), computing its own rows or columns of C whole:
 * no element is summed across pieces. Beside the plain product: one that starts from a bias row
 * (each piece writes its own bias rows), one that runs a caller's pass on each piece as soon as
 * it is done, and a batch of independent products in one parallel region.
 */
#include "ops/ops.h"

#include <string.h>

/* Below about 1 MFLOP a piece would cost more to hand over than to compute. */
#define PIECE_MIN_FLOPS (1 << 20)
/* Pieces start at multiples of these, so the kernels' register tiles stay whole. */
#define ALIGN_COLUMNS 16
#define ALIGN_ROWS 8

typedef struct gemm_job {
    bool trans_a, trans_b, split_columns;
    int64_t m, n, k, lda, ldb, ldc, piece_len;
    float alpha, beta;
    const float *a, *b;
    const float *bias; /* NULL, or n floats that C's rows start from (then beta is 1) */
    float *c;
    tgi_gemm_epilogue then; /* NULL, or run on each piece of C once it is computed */
    void *then_arg;
} gemm_job;

/* C[r, from..from+len) = bias[from..from+len) for rows 0..m: the start of a biased product. */
static void copy_bias(const float *bias, int64_t from, int64_t len, int64_t m, float *c, int64_t ldc) {
    for (int64_t r = 0; r < m; r++) memcpy(c + r * ldc + from, bias + from, (size_t)len * sizeof(float));
}

static void gemm_whole(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                       float *c, int64_t ldc) {
    if (!tgi_blas_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc))
        tgi_gemm_portable(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static void gemm_pieces(void *arg, int64_t begin, int64_t end) {
    const gemm_job *j = arg;
    for (int64_t piece = begin; piece < end; piece++) {
        int64_t from = piece * j->piece_len;
        int64_t len = (j->split_columns ? j->n : j->m) - from;
        if (len > j->piece_len) len = j->piece_len;
        if (len <= 0) continue;
        if (j->split_columns) { /* columns from..from+len of op(B) and of C */
            const float *b = j->trans_b ? j->b + from * j->ldb : j->b + from;
            if (j->bias) copy_bias(j->bias, from, len, j->m, j->c, j->ldc);
            gemm_whole(j->trans_a, j->trans_b, j->m, len, j->k, j->alpha, j->a, j->lda, b, j->ldb,
                       j->beta, j->c + from, j->ldc);
            if (j->then) j->then(j->then_arg, 0, j->m, from, from + len);
        } else { /* rows from..from+len of op(A) and of C */
            const float *a = j->trans_a ? j->a + from : j->a + from * j->lda;
            if (j->bias) copy_bias(j->bias, 0, j->n, len, j->c + from * j->ldc, j->ldc);
            gemm_whole(j->trans_a, j->trans_b, len, j->n, j->k, j->alpha, a, j->lda, j->b, j->ldb,
                       j->beta, j->c + from * j->ldc, j->ldc);
            if (j->then) j->then(j->then_arg, from, from + len, 0, j->n);
        }
    }
}

/* How many pieces: a power of two up to the machine's online cores (at most MOST_PIECES), each
 * at least PIECE_MIN_FLOPS. Not the cores this process may use: a BLAS computes an element of C
 * in another order when it is given fewer columns (OpenBLAS's Haswell kernels at 8 x 1024 x
 * 288: 5157 of 8192 elements differ by a rounding from a cut into 256-column pieces), so a run
 * under `taskset -c 1` would otherwise give other numbers than the same run unpinned. The cap
 * keeps pieces large on a big machine that gives this process a few of its cores. */
#define MOST_PIECES 16
static int64_t piece_count(int64_t m, int64_t n, int64_t k, int64_t side, int64_t align) {
    static _Atomic int most; /* the same for every call: computed once, races are harmless */
    if (!most) {
        int cores = tgi_cores_online(), p = 1;
        while (p < cores && p < MOST_PIECES) p *= 2;
        most = p;
    }
    double flops = 2.0 * (double)m * (double)n * (double)k;
    int64_t pieces = 1;
    while (pieces < most && flops / (double)(2 * pieces) >= PIECE_MIN_FLOPS &&
           side / (2 * pieces) >= align)
        pieces *= 2;
    return pieces;
}

/* Plans the cut of one product (as the file header says; bias as in gemm_job) into job, and
 * returns its piece count. */
static int64_t plan_cut(gemm_job *job, const tgi_gemm_args *p, const float *bias) {
    bool split_columns = p->n >= p->m;
    int64_t side = split_columns ? p->n : p->m, align = split_columns ? ALIGN_COLUMNS : ALIGN_ROWS;
    int64_t pieces = piece_count(p->m, p->n, p->k, side, align);
    int64_t piece_len = (side + pieces - 1) / pieces;
    piece_len = (piece_len + align - 1) / align * align;
    *job = (gemm_job){p->trans_a, p->trans_b, split_columns, p->m, p->n, p->k, p->lda, p->ldb,
                      p->ldc, piece_len, p->alpha, p->beta, p->a, p->b, bias, p->c, NULL, NULL};
    return pieces;
}

static void gemm_cut(tg_ctx *ctx, const tgi_gemm_args *p, const float *bias) {
    gemm_job job;
    int64_t pieces = plan_cut(&job, p, bias);
    if (pieces == 1) gemm_pieces(&job, 0, 1);
    else tgi_parallel_for(ctx, pieces, 1, gemm_pieces, &job);
}

void tgi_gemm(tg_ctx *ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
              float alpha, const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
              float *c, int64_t ldc) {
    tgi_gemm_args p = {trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc};
    gemm_cut(ctx, &p, NULL);
}

void tgi_gemm_bias(tg_ctx *ctx, int64_t m, int64_t n, int64_t k, const float *x, int64_t ldx,
                   const float *w, int64_t ldw, const float *bias, float *c, int64_t ldc) {
    tgi_gemm_args p = {false, true, m, n, k, 1.0f, x, ldx, w, ldw, 1.0f, c, ldc};
    gemm_cut(ctx, &p, bias);
}

bool tgi_gemm_bias_then(tg_ctx *ctx, int64_t m, int64_t n, int64_t k, const float *x, int64_t ldx,
                        const float *w, int64_t ldw, const float *bias, float *c, int64_t ldc,
                        tgi_gemm_epilogue then, void *arg) {
    tgi_gemm_args p = {false, true, m, n, k, 1.0f, x, ldx, w, ldw, bias ? 1.0f : 0.0f, c, ldc};
    gemm_job job;
    int64_t pieces = plan_cut(&job, &p, bias);
    if (pieces == 1) {
        gemm_pieces(&job, 0, 1);
        return false;
    }
    job.then = then;
    job.then_arg = arg;
    tgi_parallel_for(ctx, pieces, 1, gemm_pieces, &job);
    return true;
}

/* The pieces of several products, numbered one product after another. */
typedef struct gemm_batch {
    gemm_job jobs[TGI_GEMM_BATCH_MAX];
    int64_t first[TGI_GEMM_BATCH_MAX + 1]; /* product i's pieces are first[i]..first[i+1]-1 */
} gemm_batch;

static void batch_pieces(void *arg, int64_t begin, int64_t end) {
    const gemm_batch *batch = arg;
    for (int64_t piece = begin; piece < end; piece++) {
        int i = 0;
        while (piece >= batch->first[i + 1]) i++;
        gemm_pieces((void *)&batch->jobs[i], piece - batch->first[i], piece - batch->first[i] + 1);
    }
}

void tgi_gemm_batch(tg_ctx *ctx, const tgi_gemm_args *products, int count) {
    if (count < 1 || count > TGI_GEMM_BATCH_MAX) {
        for (int i = 0; i < count; i++) gemm_cut(ctx, &products[i], NULL); /* one at a time */
        return;
    }
    gemm_batch batch = {.first = {0}};
    for (int i = 0; i < count; i++)
        batch.first[i + 1] = batch.first[i] + plan_cut(&batch.jobs[i], &products[i], NULL);
    tgi_parallel_for(ctx, batch.first[count], 1, batch_pieces, &batch);
}

/* ---- column sums --------------------------------------------------------------------------- */

/* Columns are handed out in blocks of whole vectors, at least SUM_MIN_VALUES values (rows x
 * columns) to a range: fewer cost more to hand over than to add. */
#define SUM_ALIGN 16
#define SUM_MIN_VALUES (1 << 13)

typedef struct column_sum_job {
    int64_t rows, ld;
    const float *src;
    float *dst;
} column_sum_job;

static void sum_columns(void *arg, int64_t begin, int64_t end) {
    const column_sum_job *j = arg;
    float *restrict dst = j->dst + begin * SUM_ALIGN;
    int64_t len = end * SUM_ALIGN - begin * SUM_ALIGN;
    for (int64_t r = 0; r < j->rows; r++) {
        const float *restrict src = j->src + r * j->ld + begin * SUM_ALIGN;
        for (int64_t c = 0; c < len; c++) dst[c] += src[c];
    }
}

void tgi_add_column_sums(tg_ctx *ctx, int64_t rows, int64_t cols, const float *src, int64_t ld,
                         float *dst) {
    if (rows <= 0 || cols <= 0) return;
    int64_t blocks = cols / SUM_ALIGN, per_block = rows * SUM_ALIGN;
    int64_t grain = (SUM_MIN_VALUES + per_block - 1) / per_block;
    column_sum_job job = {rows, ld, src, dst};
    if (blocks > 0) tgi_parallel_for(ctx, blocks, grain, sum_columns, &job);
    for (int64_t r = 0; r < rows; r++) /* the columns past the last whole block */
        for (int64_t c = blocks * SUM_ALIGN; c < cols; c++) dst[c] += src[r * ld + c];
}
