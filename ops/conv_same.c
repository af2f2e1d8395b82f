/*
 * ops/conv_same.c — "same" convolutions at small channel counts without im2col.
 *
 * Why: a 3x3 convolution over 16 channels is a GEMM with 16 rows and K = 144; im2col writes
 * K values per output position, the BLAS packs them again, and at 32x32 the columns of one
 * sample (576 KiB) leave L2. Most of the time went into moving data around a thin product.
 *
 * How: every plane is copied once into a padded, flattened layout in which a kernel tap is a
 * constant offset. Rows are W + pw wide (pw zeros after each row also serve as the next row's
 * left padding) and each sample is followed by ph zero rows (which serve as the next sample's
 * top padding), so for a stride-1 kernel of size (2ph + 1) x (2pw + 1) the value tap (i, j)
 * sees at padded position p is plane[p + (i - ph)(W + pw) + (j - pw)]. The convolution is then
 * an implicit GEMM over the padded positions: a tile of MR output channels x NR positions reads
 * its K "columns" straight from the padded planes (L1-resident windows), with no column
 * buffer. Forward and dX tiles take two 8-wide row segments each (row order), so no gap position
 * is computed and the outputs are stored as vectors; a row's short last segment (W not a
 * multiple of 8) computes 8 - W mod 8 positions for nothing, so when that wastes more than the
 * gaps would (W = 28), tiles take 16 consecutive padded positions instead (flat order) and
 * store the outputs that are not gaps one by one. Samples go a block at a time (about 2048
 * positions), padded just before use. The three products of a step all take this form:
 *   - forward:  Y = conv(Xp, W), stored into NCHW;
 *   - dX:       dX += conv(dYp, W flipped in space, channel axes swapped) (stride 1, so the
 *               transposed convolution is a "same" convolution too); written rather than
 *               added when backward hands over a fresh buffer (grad_fresh);
 *   - dW[o][c,i,j] = sum over p of dYp[o][p] Xp[c][p + off(i, j)]: over the rows' positions
 *               when W is a multiple of 8, else over all padded positions (dYp is zero in the
 *               gaps, so they add nothing).
 *
 * Numbers: each output element is summed over k = (c, i, j) in order (forward and dX), or, for
 * dW, over the positions of each block (blocks fixed by the shapes), eight lanes per block
 * reduced in a fixed order, the blocks added in order. Threads split positions (forward, dX) or dW's elements,
 * never a sum, so results do not depend on the thread count. Multiply-adds are fused only in
 * builds that load a BLAS (whose results already depend on the CPU); -Dblas=false keeps a
 * separate multiply and add and so stays bit-identical across CPUs.
 */
#include "ops/ops.h"
#include "ops/simd.h"

#include <string.h>

/* Forward and dX tiles are MR = 6 output channels x NR = 16 positions: 12 accumulators, the two
 * vectors of positions and one broadcast weight fill 15 of the 16 AVX2 registers. Fewer
 * accumulators (4 x 16: 8) left the FMAs' latency barely covered; more (4 x 24) spilled one,
 * and the store-load round trip doubled the time per step. Channel counts that are not a
 * multiple of 6 finish with 4-channel tiles (16 = 6 + 6 + 4), see panel_height. */
#define MR 6    /* output channels per tile */
#define NR 16   /* positions per tile: 2 vectors */


#if defined(TG_USE_BLAS) && defined(TGI_HAVE_FMA8)
#define FUSED 1
#define MADD(acc, a, b) TGI_FMA8(acc, a, b)
#else
#define MADD(acc, a, b) ((acc) + (a) * (b))
#endif

bool tgi_conv_same_applies(const tgi_same_conv *s) {
    /* 1x1 convolutions already run without unfolding (ops/conv.c); past ~64 channels K is
     * large enough for the BLAS's packing to pay for itself */
    return s->kh == 2 * s->ph + 1 && s->kw == 2 * s->pw + 1 && s->kh * s->kw > 1 &&
           s->kh <= 15 && s->kw <= 15 && s->c <= 64 && s->o <= 64;
}

/* ---- the padded layout --------------------------------------------------------------------- */

typedef struct layout {
    int64_t wp, sp;     /* padded row width W + pw, padded sample size (H + ph) wp */
    int64_t lead, span; /* zeros before a block's first sample; positions computed (block sp) */
    int64_t len;        /* floats per padded channel of a block */
    int64_t block;      /* samples per block */
    bool rows;          /* forward and dX tiles are row segments (no gap positions) */
    int64_t per_row;    /* rows: segments of up to 8 positions per row, ceil(W / 8) */
    int64_t segs;       /* rows: segments per sample, H per_row */
} layout;

/* Samples are padded and computed a block at a time, so that a block's planes (about
 * BLOCK_POSITIONS positions per channel) are still in L2 when the tiles read them. The block
 * size depends on the shapes only. */
#define BLOCK_POSITIONS 2048

static layout layout_of(const tgi_same_conv *s) {
    layout l;
    l.wp = s->w + s->pw;
    l.sp = (s->h + s->ph) * l.wp;
    l.lead = s->ph * l.wp + s->pw;
    int64_t blocks = (s->n * l.sp + BLOCK_POSITIONS - 1) / BLOCK_POSITIONS;
    l.block = (s->n + blocks - 1) / blocks;
    l.span = l.block * l.sp;
    /* the last tile reads up to NR - 1 positions past the span, plus the largest tap offset */
    l.len = (l.lead + l.span + l.lead + NR + 15) / 16 * 16;
    /* Row segments compute ceil(W / 8) 8 - W positions of a row for nothing, the flat order
     * (H + ph)(W + pw) - H W of a sample, and stores its outputs one by one: rows unless they
     * waste more than the flat order (at W = 28: 14% against 7%). */
    l.per_row = (s->w + 7) / 8;
    l.segs = s->h * l.per_row;
    l.rows = s->h * l.per_row * 8 <= l.sp;
    return l;
}

typedef struct pad_job {
    const tgi_same_conv *s;
    const layout *l;
    const float *src;   /* NCHW with `channels` channels, at the block's first sample */
    float *dst;         /* [channels][len] */
    int64_t channels, samples;
    bool whole;         /* write every element; else the data only (the zeros are in place) */
} pad_job;

/* Channels [begin, end): the block's data copied in. The zeros (lead, the pw after each row, the
 * ph rows after each sample, the tail) sit at the same places in every block of a call, so only
 * its first block writes them (whole); a shorter last block clears what the blocks before left
 * past its samples. At 8x8 the zeros' small memsets and the copies' loop overhead were 18% of
 * the block's step. */
static void pad_channels(void *arg, int64_t begin, int64_t end) {
    const pad_job *j = arg;
    const tgi_same_conv *s = j->s;
    const layout *l = j->l;
    int64_t gap = s->ph * l->wp, plane = s->h * s->w;
    bool vectors = s->w % 8 == 0;
    for (int64_t c = begin; c < end; c++) {
        float *d = j->dst + c * l->len;
        if (j->whole) memset(d, 0, (size_t)l->lead * sizeof(float));
        d += l->lead;
        for (int64_t n = 0; n < j->samples; n++) {
            const float *src = j->src + (n * j->channels + c) * plane;
            /* plain loops: rows are a few floats long, and a memcpy call per row cost more
             * than the copy (5% of the 8x8 block) */
            for (int64_t r = 0; r < s->h; r++, d += l->wp, src += s->w) {
                if (vectors)
                    for (int64_t x = 0; x < s->w; x += 8) {
                        tgi_v8 v = tgi_load8(src + x);
                        memcpy(d + x, &v, sizeof v);
                    }
                else
                    for (int64_t x = 0; x < s->w; x++) d[x] = src[x];
                if (j->whole)
                    for (int64_t x = s->w; x < l->wp; x++) d[x] = 0.0f;
            }
            if (j->whole)
                for (int64_t x = 0; x < gap; x++) d[x] = 0.0f;
            d += gap;
        }
        if (j->whole || j->samples < l->block)
            memset(d, 0, (size_t)(l->len - (d - (j->dst + c * l->len))) * sizeof(float));
    }
}

/* Pads `samples` samples (a block, or the last, shorter one) from src; whole: the call's first
 * block, into a buffer that holds anything. */
static void pad_planes(tg_ctx *ctx, const tgi_same_conv *s, const layout *l, const float *src,
                       int64_t channels, int64_t samples, bool whole, float *dst) {
    pad_job job = {s, l, src, dst, channels, samples, whole};
    tgi_parallel_for(ctx, channels, 1, pad_channels, &job);
}

/* ---- forward and dX: tiles of MR channels x NR positions ------------------------------------ */

typedef struct apply_job {
    const tgi_same_conv *s;
    const layout *l;
    int64_t in_ch, out_ch, k;
    const int64_t *offs;  /* [k]: where column k reads, relative to the position */
    const float *a;       /* packed weights (pack_weights) */
    const float *xp;      /* padded input, at its first position (past the lead) */
    float *y;             /* NCHW with out_ch channels, at the block's first sample */
    int64_t span;         /* positions of this block */
    int64_t samples;      /* of this block */
    bool accumulate;
} apply_job;

/* Output channels [o0, o0 + panel_height) make one tile row: 6, except where 6 would leave a
 * remainder that only a padded tile takes (16 = 6 + 6 + 4, 8 = 4 + 4, 7 = 4 + 4 with one
 * padding row); a 4-channel tile keeps 8 accumulators. */
static int64_t panel_height(int64_t rows_left) {
    return rows_left >= 9 || rows_left == 5 || rows_left == 6 ? MR : 4;
}

/* Rows of the packed weights: out_ch rounded up to whole panels. */
static int64_t panel_rows(int64_t out_ch) {
    int64_t rows = 0;
    while (rows < out_ch) rows += panel_height(out_ch - rows);
    return rows;
}

/* One column of a tile: each of its `rows` channels' weight a[m] times the column's two vectors
 * of positions, added to the channel's two sums. */
TGI_ALWAYS_INLINE static inline void tile_column(int rows, const float *a, tgi_v8 b0, tgi_v8 b1,
                                                 tgi_v8 c[MR][2]) {
    for (int m = 0; m < rows; m++) {
        tgi_v8 w = tgi_splat8(a[m]);
        c[m][0] = MADD(c[m][0], w, b0), c[m][1] = MADD(c[m][1], w, b1);
    }
}

/* The two vectors of positions start at x0 and x1 (x0 + 8 in the flat order; two row segments,
 * wherever they are, in the row order). a: the panel's weights, [k][rows]. Inlined with rows a
 * constant (6 or 4), the accumulators live in registers (objdump: 12 + 2 + 1 ymm, no spills). */
TGI_ALWAYS_INLINE static inline void tile_rows(int rows, int64_t k, const int64_t *offs,
                                               const float *a, const float *x0, const float *x1,
                                               tgi_v8 out[MR][2]) {
    tgi_v8 c[MR][2] = {{{0}}};
    for (int64_t q = 0; q < k; q++, a += rows)
        tile_column(rows, a, tgi_load8(x0 + offs[q]), tgi_load8(x1 + offs[q]), c);
    for (int m = 0; m < rows; m++) out[m][0] = c[m][0], out[m][1] = c[m][1];
}

/* tile_rows for kernels 3 wide (the ResNets' 3x3; any kh x 3), the same sums in the same order:
 * column q = (c, i, j) reads row i of channel c at the constant offsets j - 1, so the loads take
 * an immediate displacement instead of an index loaded from offs[] (one load and one dependent
 * address fewer per column; the block at 32x32 +1.6% in interleaved runs). */
TGI_ALWAYS_INLINE static inline void tile_rows_kw3(int rows, int64_t channels, int64_t kh,
                                                   int64_t wp, int64_t len, const float *a,
                                                   const float *x0, const float *x1,
                                                   tgi_v8 out[MR][2]) {
    tgi_v8 c[MR][2] = {{{0}}};
    int64_t top = -(kh / 2) * wp - 1;
    for (int64_t ch = 0; ch < channels; ch++)
        for (int64_t i = 0; i < kh; i++) {
            const float *r0 = x0 + ch * len + top + i * wp, *r1 = x1 + ch * len + top + i * wp;
            for (int jj = 0; jj < 3; jj++, a += rows)
                tile_column(rows, a, tgi_load8(r0 + jj), tgi_load8(r1 + jj), c);
        }
    for (int m = 0; m < rows; m++) out[m][0] = c[m][0], out[m][1] = c[m][1];
}

/* The panel of output channels [o0, o0 + height) over the two vectors; returns the rows that
 * are output channels. */
static int64_t tile(const apply_job *j, int64_t o0, const float *x0, const float *x1,
                    tgi_v8 out[MR][2]) {
    int64_t height = panel_height(j->out_ch - o0);
    const float *a = j->a + o0 * j->k;
    if (j->s->kw == 3) {
        if (height == MR) tile_rows_kw3(MR, j->in_ch, j->s->kh, j->l->wp, j->l->len, a, x0, x1, out);
        else tile_rows_kw3(4, j->in_ch, j->s->kh, j->l->wp, j->l->len, a, x0, x1, out);
    } else if (height == MR) {
        tile_rows(MR, j->k, j->offs, a, x0, x1, out);
    } else {
        tile_rows(4, j->k, j->offs, a, x0, x1, out);
    }
    return j->out_ch - o0 < height ? j->out_ch - o0 : height;
}

static inline void store8(float *dst, tgi_v8 v, bool accumulate) {
    if (accumulate) v += tgi_load8(dst);
    memcpy(dst, &v, sizeof v);
}

/* Row order: tile t is the row segments 2t and 2t + 1 of the block (the second one dropped past
 * the end), each up to 8 outputs of one row: stored as vectors, no gap row computed. A row's
 * last segment, when W is not a multiple of 8, reads past the row (the gap, the next row) and
 * keeps only its first W mod 8 outputs. */
static void apply_row_tiles(const apply_job *j, int64_t begin, int64_t end) {
    const tgi_same_conv *s = j->s;
    const layout *l = j->l;
    int64_t plane = s->h * s->w, segs = j->samples * l->segs, per_row = l->per_row;
    tgi_v8 out[MR][2];
    for (int64_t t = begin; t < end; t++) {
        int64_t src[2], dst[2], valid[2], count = segs - 2 * t < 2 ? 1 : 2;
        for (int64_t v = 0; v < 2; v++) {
            int64_t seg = 2 * t + (v < count ? v : 0), n = seg / l->segs, r = seg % l->segs / per_row;
            int64_t x = seg % per_row * 8;
            src[v] = n * l->sp + r * l->wp + x;
            dst[v] = n * j->out_ch * plane + r * s->w + x;
            valid[v] = s->w - x < 8 ? s->w - x : 8; /* a row's last segment may be short */
        }
        for (int64_t o0 = 0, rows; o0 < j->out_ch; o0 += rows) {
            rows = tile(j, o0, j->xp + src[0], j->xp + src[1], out);
            for (int64_t m = 0; m < rows; m++)
                for (int64_t v = 0; v < count; v++) {
                    float *y = j->y + dst[v] + (o0 + m) * plane;
                    if (valid[v] == 8) {
                        store8(y, out[m][v], j->accumulate);
                        continue;
                    }
                    for (int64_t q = 0; q < valid[v]; q++)
                        y[q] = j->accumulate ? y[q] + out[m][v][q] : out[m][v][q];
                }
        }
    }
}

/* Tiles [begin, end) of positions; each computes every output channel. */
static void apply_tiles(void *arg, int64_t begin, int64_t end) {
    const apply_job *j = arg;
    if (j->l->rows) {
        apply_row_tiles(j, begin, end);
        return;
    }
    const tgi_same_conv *s = j->s;
    const layout *l = j->l;
    int64_t plane = s->h * s->w;
    float out[MR][NR];
    for (int64_t t = begin; t < end; t++) {
        int64_t p0 = t * NR, count = j->span - p0 < NR ? j->span - p0 : NR;
        for (int64_t o0 = 0, rows; o0 < j->out_ch; o0 += rows) {
            tgi_v8 vout[MR][2];
            rows = tile(j, o0, j->xp + p0, j->xp + p0 + 8, vout);
            memcpy(out, vout, sizeof out);
            int64_t n = p0 / l->sp, r = p0 % l->sp / l->wp, x = p0 % l->wp;
            for (int64_t q = 0; q < count; q++) {
                if (r < s->h && x < s->w) {
                    float *dst = j->y + (n * j->out_ch + o0) * plane + r * s->w + x;
                    for (int64_t m = 0; m < rows; m++, dst += plane)
                        *dst = j->accumulate ? *dst + out[m][q] : out[m][q];
                }
                if (++x == l->wp) {
                    x = 0;
                    if (++r == s->h + s->ph) r = 0, n++;
                }
            }
        }
    }
}

/* Column offsets of a (2ph+1) x (2pw+1) kernel over `in_ch` padded channels. */
static void tap_offsets(const tgi_same_conv *s, const layout *l, int64_t in_ch, int64_t *offs) {
    for (int64_t c = 0, q = 0; c < in_ch; c++)
        for (int64_t i = 0; i < s->kh; i++)
            for (int64_t jj = 0; jj < s->kw; jj++)
                offs[q++] = c * l->len + (i - s->ph) * l->wp + (jj - s->pw);
}

/* Panel by panel (panel_height), a[o0 k + q height + o - o0] = the weight of output channel o,
 * column q = (c, i, j), o0 the first channel of o's panel; rows past out_ch are zero. flip: the weight w [in_ch][out_ch][kh][kw] read flipped in space with its
 * channel axes swapped (dX); otherwise w is [out_ch][in_ch][kh][kw]. */
static void pack_weights(const float *w, int64_t out_ch, int64_t in_ch, int64_t taps, bool flip,
                         float *a) {
    int64_t k = in_ch * taps;
    memset(a, 0, (size_t)(panel_rows(out_ch) * k) * sizeof(float));
    for (int64_t o0 = 0, height; o0 < out_ch; o0 += height) {
        height = panel_height(out_ch - o0);
        for (int64_t o = o0; o < out_ch && o < o0 + height; o++)
            for (int64_t c = 0; c < in_ch; c++)
                for (int64_t t = 0; t < taps; t++) {
                    float v = flip ? w[(c * out_ch + o) * taps + taps - 1 - t]
                                   : w[(o * in_ch + c) * taps + t];
                    a[o0 * k + (c * taps + t) * height + o - o0] = v;
                }
    }
}

static void apply(tg_ctx *ctx, const tgi_same_conv *s, const layout *l, int64_t in_ch,
                  int64_t out_ch, int64_t samples, const float *xp, const float *a,
                  const int64_t *offs, float *y, bool accumulate) {
    apply_job job = {s, l, in_ch, out_ch, in_ch * s->kh * s->kw, offs, a, xp + l->lead, y,
                     samples * l->sp, samples, accumulate};
    int64_t tiles = l->rows ? (samples * l->segs + 1) / 2 : (job.span + NR - 1) / NR;
    tgi_parallel_for(ctx, tiles, 4, apply_tiles, &job);
}

/* ---- dW ------------------------------------------------------------------------------------ */

/* dW is a product over the positions: dW[o][q] = sum over p of dY[o][p] X[q][p]. A tile of
 * 6 (or 4) output channels x KT = 2 columns keeps 12 (8) accumulators, like forward's. The
 * positions go a chunk at a time (about W_CHUNK of them), every tile over one chunk before the
 * next: a chunk of one panel's dY planes and of one input channel stays in L1 while the tiles
 * of its 9 taps read it; streaming every tile over the whole block read them from L2, at more
 * bytes a cycle than L2 delivers. Between chunks a tile's accumulators wait in memory, as
 * vectors, so each lane sums the same positions in the same order whatever the chunking. */
#define KT 2        /* dW: k columns per tile */
#define W_CHUNK 512 /* dW: positions per chunk */

typedef struct weight_job {
    const tgi_same_conv *s;
    const layout *l;
    const int64_t *offs;    /* [K] */
    const float *xp, *dyp;  /* padded, at the block's first position */
    int64_t count;          /* the block's positions (a multiple of 8) */
    const int64_t *starts;  /* rows order: where each row of the block starts; else NULL */
    int64_t rows;           /* rows order: rows of the block */
    float *dw;              /* [O][K] */
    tgi_v8 *acc;            /* [tiles][MR KT]: the tiles' accumulators between chunks */
} weight_job;

static inline float lanes_sum(tgi_v8 v) {
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

/* acc[m KT + q] += dy[m][p] x[q][p] for the `rows` channels m over the ranges [starts[r],
 * starts[r] + width), eight lanes apart; dy rows `stride` floats apart. Inlined with rows a
 * constant, as tile_rows. */
TGI_ALWAYS_INLINE static inline void weight_span(int rows, const float *dy, int64_t stride,
                                                 const float *x0, const float *x1,
                                                 const int64_t *starts, int64_t ranges,
                                                 int64_t width, tgi_v8 *acc) {
    tgi_v8 c[MR][KT];
    const float *d[MR];
    for (int m = 0; m < rows; m++) c[m][0] = acc[m * KT], c[m][1] = acc[m * KT + 1], d[m] = dy + m * stride;
    for (int64_t r = 0; r < ranges; r++)
        for (int64_t p = starts[r], end = p + width; p < end; p += 8) {
            tgi_v8 b0 = tgi_load8(x0 + p), b1 = tgi_load8(x1 + p);
            for (int m = 0; m < rows; m++) {
                tgi_v8 a = tgi_load8(d[m] + p);
                c[m][0] = MADD(c[m][0], a, b0), c[m][1] = MADD(c[m][1], a, b1);
            }
        }
    for (int m = 0; m < rows; m++) acc[m * KT] = c[m][0], acc[m * KT + 1] = c[m][1];
}

/* Tile t: its panel's first output channel and height. Panels are those of panel_height, so
 * dW's tiles and forward's split the channels alike. */
static int64_t weight_panel(int64_t out_ch, int64_t panel, int64_t *height) {
    int64_t o0 = 0;
    for (int64_t i = 0; i < panel; i++) o0 += panel_height(out_ch - o0);
    *height = panel_height(out_ch - o0);
    return o0;
}

/* Tiles [begin, end) of a panel of output channels x KT columns: adds their sums over the
 * block. Panel rows past the channels read zero planes, a column past the end repeats the last
 * one, and their sums are dropped. */
static void weight_tiles(void *arg, int64_t begin, int64_t end) {
    const weight_job *j = arg;
    const tgi_same_conv *s = j->s;
    const layout *l = j->l;
    int64_t k = s->c * s->kh * s->kw, ktiles = (k + KT - 1) / KT;
    memset(j->acc + begin * MR * KT, 0, (size_t)(end - begin) * MR * KT * sizeof(tgi_v8));
    /* rows order: chunks of whole rows (dY is zero in the gaps); else of positions */
    int64_t width = j->starts ? s->w : W_CHUNK, per_chunk = j->starts ? (W_CHUNK + s->w - 1) / s->w : 1;
    int64_t chunks = j->starts ? j->rows : (j->count + W_CHUNK - 1) / W_CHUNK;
    for (int64_t c0 = 0; c0 < chunks; c0 += per_chunk) {
        int64_t flat_start = c0 * W_CHUNK, ranges = chunks - c0 < per_chunk ? chunks - c0 : per_chunk;
        const int64_t *starts = j->starts ? j->starts + c0 : &flat_start;
        int64_t span = j->starts ? width : (j->count - flat_start < W_CHUNK ? j->count - flat_start : W_CHUNK);
        for (int64_t t = begin; t < end; t++) {
            int64_t height, o0 = weight_panel(s->o, t / ktiles, &height), k0 = t % ktiles * KT;
            const float *dy = j->dyp + o0 * l->len;
            const float *x0 = j->xp + j->offs[k0];
            const float *x1 = j->xp + j->offs[k0 + 1 < k ? k0 + 1 : k - 1];
            tgi_v8 *acc = j->acc + t * MR * KT;
            if (height == MR) weight_span(MR, dy, l->len, x0, x1, starts, ranges, span, acc);
            else weight_span(4, dy, l->len, x0, x1, starts, ranges, span, acc);
        }
    }
    for (int64_t t = begin; t < end; t++) {
        int64_t height, o0 = weight_panel(s->o, t / ktiles, &height), k0 = t % ktiles * KT;
        const tgi_v8 *acc = j->acc + t * MR * KT;
        for (int64_t m = 0; m < height && o0 + m < s->o; m++)
            for (int64_t q = 0; q < KT && k0 + q < k; q++)
                j->dw[(o0 + m) * k + k0 + q] += lanes_sum(acc[m * KT + q]);
    }
}
/* dw [O][K] += the weight gradient over one block of `samples` samples (its planes in L2).
 * starts: room for the block's rows (rows order), acc: for the tiles' accumulators. */
static void weight_grad(tg_ctx *ctx, const tgi_same_conv *s, const layout *l, int64_t samples,
                        const float *xp, const float *dyp, const int64_t *offs, int64_t *starts,
                        tgi_v8 *acc, float *dw) {
    int64_t k = s->c * s->kh * s->kw, rows = samples * s->h;
    int64_t panels = 0;
    for (int64_t o0 = 0; o0 < s->o; panels++) o0 += panel_height(s->o - o0);
    /* past the block's positions both planes are zero (the trailing pad) */
    weight_job job = {s, l, offs, xp + l->lead, dyp + l->lead, (samples * l->sp + 7) / 8 * 8,
                      NULL, rows, dw, acc};
    if (l->rows && s->w % 8 == 0) { /* the rows' positions only: dY is zero in the gaps */
        for (int64_t r = 0; r < rows; r++) starts[r] = r / s->h * l->sp + r % s->h * l->wp;
        job.starts = starts;
    }
    tgi_parallel_for(ctx, panels * ((k + KT - 1) / KT), 4, weight_tiles, &job);
}

/* ---- entry points -------------------------------------------------------------------------- */

/* Arena scratch of one call: the padded planes, packed weights, column offsets. */
static void *scratch(tgi_arena *arena, int64_t floats) {
    return tgi_arena_alloc(arena, (size_t)floats * sizeof(float));
}

tg_status tgi_conv_same_forward(const tg_op_call *call, const tgi_same_conv *s, const float *x,
                                const float *w, float *y) {
    tgi_arena *arena = &call->tape->arena;
    tgi_arena_mark mark = tgi_arena_mark_get(arena);
    layout l = layout_of(s);
    int64_t taps = s->kh * s->kw, k = s->c * taps;
    float *xp = scratch(arena, s->c * l.len), *a = scratch(arena, panel_rows(s->o) * k);
    int64_t *offs = tgi_arena_alloc(arena, (size_t)k * sizeof(int64_t));
    if (!xp || !a || !offs) {
        tgi_arena_mark_rewind(arena, mark);
        return tg_op_fail(call, TG_ERR_NOMEM, "out of memory for the padded input");
    }
    tg_ctx *ctx = call->tape->ctx;
    pack_weights(w, s->o, s->c, taps, false, a);
    tap_offsets(s, &l, s->c, offs);
    for (int64_t first = 0; first < s->n; first += l.block) {
        int64_t samples = s->n - first < l.block ? s->n - first : l.block;
        pad_planes(ctx, s, &l, x + first * s->c * s->h * s->w, s->c, samples, first == 0, xp);
        apply(ctx, s, &l, s->c, s->o, samples, xp, a, offs, y + first * s->o * s->h * s->w, false);
    }
    tgi_arena_mark_rewind(arena, mark);
    return TG_OK;
}

tg_status tgi_conv_same_backward(const tg_op_call *call, const tgi_same_conv *s, float *dx,
                                 float *dw) {
    const float *x = call->inputs[0]->data, *w = call->inputs[1]->data, *dy = call->output->grad;
    tgi_arena *arena = &call->tape->arena;
    tgi_arena_mark mark = tgi_arena_mark_get(arena);
    layout l = layout_of(s);
    int64_t taps = s->kh * s->kw, k = (s->c + s->o) * taps;
    /* dY's planes: dW's last panel may read zero planes past the channels */
    int64_t dy_planes = dw ? panel_rows(s->o) : s->o;
    int64_t dw_tiles = (panel_rows(s->o) / 4) * ((s->c * taps + KT - 1) / KT); /* at most */
    float *dyp = scratch(arena, dy_planes * l.len), *xp = dw ? scratch(arena, s->c * l.len) : NULL;
    float *a = dx ? scratch(arena, panel_rows(s->c) * s->o * taps) : NULL;
    int64_t *offs = tgi_arena_alloc(arena, (size_t)k * sizeof(int64_t));
    int64_t *starts = dw ? tgi_arena_alloc(arena, (size_t)(l.block * s->h) * sizeof(int64_t)) : NULL;
    tgi_v8 *acc = dw ? tgi_arena_alloc(arena, (size_t)(dw_tiles * MR * KT) * sizeof(tgi_v8)) : NULL;
    if (!dyp || (dw && (!xp || !starts || !acc)) || (dx && !a) || !offs) {
        tgi_arena_mark_rewind(arena, mark);
        return tg_op_fail(call, TG_ERR_NOMEM, "out of memory for the padded gradient");
    }
    tg_ctx *ctx = call->tape->ctx;
    int64_t plane = s->h * s->w;
    if (dx) pack_weights(w, s->c, s->o, taps, true, a);
    tap_offsets(s, &l, s->c, offs);
    tap_offsets(s, &l, s->o, offs + s->c * taps);
    if (dy_planes > s->o) /* written once: pad_planes writes the first s->o planes only */
        memset(dyp + s->o * l.len, 0, (size_t)((dy_planes - s->o) * l.len) * sizeof(float));
    for (int64_t first = 0; first < s->n; first += l.block) {
        int64_t samples = s->n - first < l.block ? s->n - first : l.block;
        pad_planes(ctx, s, &l, dy + first * s->o * plane, s->o, samples, first == 0, dyp);
        if (dw) {
            pad_planes(ctx, s, &l, x + first * s->c * plane, s->c, samples, first == 0, xp);
            weight_grad(ctx, s, &l, samples, xp, dyp, offs, starts, acc, dw);
        }
        if (dx) /* a fresh dx (grad_fresh) holds nothing yet: every element is written once */
            apply(ctx, s, &l, s->o, s->c, samples, dyp, a, offs + s->c * taps,
                  dx + first * s->c * plane, !call->inputs[0]->grad_fresh);
    }
    call->inputs[0]->grad_fresh = false;
    tgi_arena_mark_rewind(arena, mark);
    return TG_OK;
}
