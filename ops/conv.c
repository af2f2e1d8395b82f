/*
 * ops/conv.c — conv2d and conv1d (cross-correlation, NCHW, PyTorch's semantics).
 *
 * A convolution is a matrix product once the input is unfolded: im2col writes, for every
 * kernel tap (c, i, j), a row holding the input value that tap sees at each output position.
 * Group g's output is then W_g [O/G, K] x col_g [K, positions] with K = C/G kh kw. The VJPs:
 *   - dW_g: computed transposed, dW_g^T = col_g dY_g^T (K rows and O/G columns run about twice
 *     as fast in the GEMM kernels as O/G rows and K columns when O/G is small);
 *   - dx, stride 1: the convolution of dY with the kernel flipped in space and its channel axes
 *     swapped (padding dilation (k - 1) - pad), which reuses the forward's code and shapes;
 *   - dx, other strides: dcol_g = W_g^T dY_g, folded back (added) into dx by col2im.
 * conv1d is conv2d with a height of 1.
 * Stride-1 "same" convolutions at small channel counts (3x3 pad 1 over 16 channels: a thin
 * product whose unfolding cost more than the product) take ops/conv_same.c instead.
 *
 * Why samples are unfolded in blocks: an 8x8 image has 64 output positions, and a product with
 * 64 columns per sample leaves the GEMM kernels mostly idle. A block of B samples makes one
 * product of B x positions columns (about COLUMNS_PER_BLOCK), after which the result is put
 * back in NCHW order. Large images (positions >= COLUMNS_PER_BLOCK) take one sample per block
 * and the product writes straight into the output. The block size depends on the shapes only,
 * so results do not depend on the thread count; GEMM spreads itself over the threads, and
 * im2col/col2im split rows and channels, which never write the same element.
 *
 * A 1x1 convolution with stride 1 and no padding needs no unfolding: each sample's [C, H W]
 * slab already is its column matrix. Scratch (columns, reordered outputs, the flipped kernel)
 * comes from the tape's arena and is given back when the op returns; nothing is saved for
 * backward, which unfolds the input again (cheaper than keeping K times the input per layer).
 */
#include "ops/kernels.h"

#include <string.h>

/* Columns of one block's product: enough to keep the GEMM kernels busy, small enough that a
 * block's columns stay in cache. Measured on the 8x8 ResNet block (16 channels, K = 144):
 * 1024 beat 256, 512 and 2048. */
#define COLUMNS_PER_BLOCK 1024

/* ---- window attributes, shared with ops/pool.c ---------------------------------------------- */

tg_status tgi_check_window_attrs(const tg_op_call *call) {
    const tgi_op *op = tgi_op_by_id(call->tape->ctx, call->op_id);
    for (int a = 0; op && a < op->n_attrs; a++) {
        const char *name = op->attrs[a].name;
        int64_t least = strncmp(name, "pad", 3) == 0 ? 0 : 1;
        if (call->attrs[a].i64 < least)
            return tg_op_fail(call, TG_ERR_INVALID, "%s must be >= %lld (got %lld)", name,
                              (long long)least, (long long)call->attrs[a].i64);
    }
    return TG_OK;
}

tg_status tgi_window_output(const tg_op_call *call, const char *what, int64_t in, int64_t kernel,
                            int64_t stride, int64_t pad, int64_t dilation, int64_t *out) {
    int64_t span = 0;
    switch (tgi_window_size(in, kernel, stride, pad, dilation, &span, out)) {
    case TGI_WINDOW_OK: return TG_OK;
    case TGI_WINDOW_BAD_KERNEL:
        return tg_op_fail(call, TG_ERR_SHAPE, "kernel %s %lld must be >= 1", what, (long long)kernel);
    case TGI_WINDOW_BAD_STRIDE:
        return tg_op_fail(call, TG_ERR_INVALID, "%s stride %lld must be >= 1", what, (long long)stride);
    case TGI_WINDOW_BAD_DILATION:
        return tg_op_fail(call, TG_ERR_INVALID, "%s dilation %lld must be >= 1", what,
                          (long long)dilation);
    case TGI_WINDOW_BAD_PAD:
        return tg_op_fail(call, TG_ERR_INVALID, "%s padding %lld must be >= 0", what, (long long)pad);
    case TGI_WINDOW_PAD_OVERFLOW:
        return tg_op_fail(call, TG_ERR_INVALID, "%s padding %lld is too large (2 x padding "
                          "overflows)", what, (long long)pad);
    case TGI_WINDOW_SPAN_OVERFLOW:
        return tg_op_fail(call, TG_ERR_INVALID, "%s dilation %lld is too large for the kernel %s "
                          "%lld (dilation x (kernel - 1) overflows)", what, (long long)dilation,
                          what, (long long)kernel);
    case TGI_WINDOW_IN_OVERFLOW:
        return tg_op_fail(call, TG_ERR_INVALID, "%s padding %lld is too large (input %s %lld + 2 x "
                          "padding overflows)", what, (long long)pad, what, (long long)in);
    case TGI_WINDOW_EMPTY: break;
    }
    return tg_op_fail(call, TG_ERR_SHAPE, "output %s would be < 1: input %s %lld + 2 x "
                      "padding %lld is smaller than the %skernel extent %lld", what, what,
                      (long long)in, (long long)pad, dilation > 1 ? "dilated " : "",
                      (long long)span);
}

/* ---- geometry ------------------------------------------------------------------------------ */

typedef struct conv_geom {
    int64_t n, c, h, w;          /* input [N, C, H, W] */
    int64_t o, kh, kw;           /* weight [O, C/G, kh, kw] */
    int64_t oh, ow;              /* output [N, O, OH, OW] */
    int64_t sh, sw, ph, pw, dh, dw, groups;
    int64_t cg, og, k;           /* per group: input channels, output channels, C/G kh kw */
    int64_t positions;           /* OH OW */
    int64_t block;               /* samples unfolded together */
    bool direct;                 /* 1x1, stride 1, no padding: the input is its own col */
} conv_geom;

/* Reads the sizes and attributes of a conv2d or conv1d call (conv1d: H = 1, a 1 x k kernel).
 * The fields derived from them wait for geometry_finish: until infer_shape has checked the
 * attributes, products such as 2 pad or dilation (k - 1) may overflow. */
static conv_geom conv_read(const tg_op_call *call) {
    const tg_tensor *x = call->inputs[0], *w = call->inputs[1];
    const tg_attr_value *a = call->attrs;
    conv_geom g = {0};
    g.n = x->shape[0];
    g.c = x->shape[1];
    g.o = w->shape[0];
    if (call->op_id == TGI_OP_CONV1D) {
        g.h = 1, g.w = x->shape[2], g.kh = 1, g.kw = w->shape[2];
        g.sh = 1, g.sw = a[0].i64, g.ph = 0, g.pw = a[1].i64, g.dh = 1, g.dw = a[2].i64;
        g.groups = a[3].i64;
    } else {
        g.h = x->shape[2], g.w = x->shape[3], g.kh = w->shape[2], g.kw = w->shape[3];
        g.sh = a[0].i64, g.sw = a[1].i64, g.ph = a[2].i64, g.pw = a[3].i64;
        g.dh = a[4].i64, g.dw = a[5].i64, g.groups = a[6].i64;
    }
    return g;
}

/* The fields that follow from the sizes, the attributes and the output size oh x ow, which
 * infer_shape computed with checked arithmetic (tgi_window_output) and the tape checked against
 * the element limit: every product here is at most a tensor's size, and nothing divides by 0. */
static void geometry_finish(conv_geom *g, int64_t oh, int64_t ow) {
    g->cg = g->c / g->groups;
    g->og = g->o / g->groups;
    g->k = g->cg * g->kh * g->kw;
    g->oh = oh;
    g->ow = ow;
    g->positions = g->oh * g->ow;
    g->direct = g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
    g->block = g->direct ? 1 : (COLUMNS_PER_BLOCK + g->positions - 1) / g->positions;
    if (g->block > g->n) g->block = g->n;
}

/* The whole geometry of a call whose output exists (forward, backward). */
static conv_geom conv_geometry(const tg_op_call *call) {
    conv_geom g = conv_read(call);
    const tg_tensor *y = call->output;
    geometry_finish(&g, y->ndim == 4 ? y->shape[2] : 1, y->shape[y->ndim - 1]);
    return g;
}

static tg_status conv_infer(const tg_op_call *call, tg_shape *out) {
    bool one_d = call->op_id == TGI_OP_CONV1D;
    int ndim = one_d ? 3 : 4;
    if (call->n_inputs < 2 || call->n_inputs > 3)
        return tg_op_fail(call, TG_ERR_INVALID, "takes x, weight and an optional bias (%d inputs "
                          "given)", call->n_inputs);
    const tg_tensor *x = call->inputs[0], *w = call->inputs[1];
    if (x->ndim != ndim || w->ndim != ndim)
        return tg_op_fail(call, TG_ERR_SHAPE, one_d ? "expected x [N,C,L] and weight [O,C/groups,k]"
                          : "expected x [N,C,H,W] and weight [O,C/groups,kh,kw]");
    if (tgi_check_window_attrs(call) != TG_OK) return TG_ERR_INVALID;
    conv_geom g = conv_read(call);
    if (g.o % g.groups != 0)
        return tg_op_fail(call, TG_ERR_SHAPE, "weight has %lld output channels, not divisible by "
                          "groups %lld", (long long)g.o, (long long)g.groups);
    if (g.c % g.groups != 0)
        return tg_op_fail(call, TG_ERR_SHAPE, "input has %lld channels, not divisible by groups "
                          "%lld", (long long)g.c, (long long)g.groups);
    /* o is a multiple of groups, so w's O x C/groups elements bound shape[1] x groups */
    if (g.c != w->shape[1] * g.groups)
        return tg_op_fail(call, TG_ERR_SHAPE, "input has %lld channels, weight expects %lld "
                          "(groups %lld)", (long long)g.c, (long long)(w->shape[1] * g.groups),
                          (long long)g.groups);
    if (call->n_inputs == 3) {
        const tg_tensor *b = call->inputs[2];
        if (b->ndim != 1 || b->shape[0] != g.o)
            return tg_op_fail(call, TG_ERR_SHAPE, "bias must be [%lld], one per output channel",
                              (long long)g.o);
    }
    int64_t oh = 1, ow;
    if (!one_d && tgi_window_output(call, "height", g.h, g.kh, g.sh, g.ph, g.dh, &oh) != TG_OK)
        return TG_ERR_SHAPE;
    if (tgi_window_output(call, one_d ? "length" : "width", g.w, g.kw, g.sw, g.pw, g.dw, &ow) !=
        TG_OK)
        return TG_ERR_SHAPE;
    out->ndim = ndim;
    out->dims[0] = g.n;
    out->dims[1] = g.o;
    out->dims[2] = one_d ? ow : oh;
    out->dims[3] = ow;
    return TG_OK;
}

/* ---- im2col and col2im --------------------------------------------------------------------- */

/* One block: samples first..first+g->block-1 unfolded into col [C kh kw, block positions]. */
typedef struct unfold_job {
    const conv_geom *g;
    int64_t first;
    float *col;                  /* the block's columns */
    float *x;                    /* input (im2col) or its gradient (col2im) */
} unfold_job;

/* The input row a tap reads for output row `out_row`, or NULL when it reads padding. */
static inline float *tap_row(const conv_geom *g, float *plane, int64_t out_row, int64_t i) {
    int64_t ih = out_row * g->sh - g->ph + i * g->dh;
    return ih >= 0 && ih < g->h ? plane + ih * g->w : NULL;
}

/* dst[o] = src[o * stride + offset] for o in [lo, hi), zero elsewhere in [0, n). Plain loops
 * rather than memcpy/memset: rows are a few floats long, and a library call per row would cost
 * more than the copy. The stride-1 loop is the common case and vectorises. */
static inline void copy_row(float *restrict dst, const float *restrict src, int64_t offset,
                            int64_t lo, int64_t hi, int64_t n, int64_t stride) {
    for (int64_t o = 0; o < lo; o++) dst[o] = 0.0f;
    if (stride == 1)
        for (int64_t o = lo; o < hi; o++) dst[o] = src[o + offset];
    else
        for (int64_t o = lo; o < hi; o++) dst[o] = src[o * stride + offset];
    for (int64_t o = hi; o < n; o++) dst[o] = 0.0f;
}

/* dst[o * stride + offset] += src[o] for o in [lo, hi). */
static inline void add_row(float *restrict dst, const float *restrict src, int64_t offset,
                           int64_t lo, int64_t hi, int64_t stride) {
    if (stride == 1)
        for (int64_t o = lo; o < hi; o++) dst[o + offset] += src[o];
    else
        for (int64_t o = lo; o < hi; o++) dst[o * stride + offset] += src[o];
}

/* Where one tap reads in a "same" convolution (stride 1, output as wide as the input): output
 * row oy reads input row oy + off_h shifted by off_w, so the output rows y0..y1-1 that lie
 * inside the input are one contiguous copy at distance `shift`, clipped to the plane; the
 * columns that fall in the padding (ox < lo, ox >= hi: the copy filled them with the next
 * row's ends) are zeroed afterwards. Depends on the tap only, not on the sample. */
typedef struct same_width_tap {
    int64_t shift, from, to, copy_from, copy_to, y0, y1, lo, hi;
} same_width_tap;

static same_width_tap same_width_plan(const conv_geom *g, int64_t i, int64_t j) {
    same_width_tap t = {0};
    int64_t off_h = i * g->dh - g->ph, plane = g->h * g->w;
    tgi_window_inside(off_h, 1, g->h, g->oh, &t.y0, &t.y1);
    /* A tap that reads padding only (a huge dilation or padding) copies nothing: its shift,
     * which could then be far outside int64 (off_h x W), is never formed. */
    if (t.y0 >= t.y1) return t;
    t.shift = off_h * g->w + j * g->dw - g->pw;
    tgi_window_inside(j * g->dw - g->pw, 1, g->w, g->ow, &t.lo, &t.hi);
    t.from = t.y0 * g->ow;
    t.to = t.y1 * g->ow;
    t.copy_from = t.from + t.shift < 0 ? -t.shift : t.from;
    t.copy_to = t.to + t.shift > plane ? plane - t.shift : t.to;
    return t;
}

static void im2col_same_width(const conv_geom *g, const same_width_tap *t, float *restrict dst,
                              const float *restrict plane) {
    for (int64_t q = 0; q < t->from; q++) dst[q] = 0.0f;
    for (int64_t q = t->to; q < g->positions; q++) dst[q] = 0.0f;
    for (int64_t q = t->copy_from; q < t->copy_to; q++) dst[q] = plane[q + t->shift];
    for (int64_t oy = t->y0; oy < t->y1; oy++) {
        float *row = dst + oy * g->ow;
        for (int64_t ox = 0; ox < t->lo; ox++) row[ox] = 0.0f;
        for (int64_t ox = t->hi; ox < g->ow; ox++) row[ox] = 0.0f;
    }
}

/* Rows [begin, end) of col: each row is one tap (c, i, j) across the block's positions. */
static void im2col_rows(void *arg, int64_t begin, int64_t end) {
    const unfold_job *job = arg;
    const conv_geom *g = job->g;
    int64_t taps = g->kh * g->kw, cols = g->block * g->positions, plane_size = g->h * g->w;
    bool same_width = g->sh == 1 && g->sw == 1 && g->ow == g->w;
    for (int64_t r = begin; r < end; r++) {
        int64_t c = r / taps, i = r % taps / g->kw, j = r % g->kw, lo, hi;
        float *dst = job->col + r * cols;
        float *plane = job->x + (job->first * g->c + c) * plane_size;
        if (same_width) {
            same_width_tap t = same_width_plan(g, i, j);
            for (int64_t s = 0; s < g->block; s++, dst += g->positions, plane += g->c * plane_size)
                im2col_same_width(g, &t, dst, plane);
            continue;
        }
        tgi_window_inside(j * g->dw - g->pw, g->sw, g->w, g->ow, &lo, &hi);
        for (int64_t s = 0; s < g->block; s++, plane += g->c * plane_size)
            for (int64_t oy = 0; oy < g->oh; oy++, dst += g->ow) {
                const float *src = tap_row(g, plane, oy, i);
                if (src) copy_row(dst, src, j * g->dw - g->pw, lo, hi, g->ow, g->sw);
                else copy_row(dst, NULL, 0, 0, 0, g->ow, 1);
            }
    }
}

/* Channels [begin, end): adds every tap row of those channels back into dx. Channels are
 * disjoint in dx, so ranges never write the same element. */
static void col2im_channels(void *arg, int64_t begin, int64_t end) {
    const unfold_job *job = arg;
    const conv_geom *g = job->g;
    int64_t taps = g->kh * g->kw, cols = g->block * g->positions;
    for (int64_t c = begin; c < end; c++)
        for (int64_t t = 0; t < taps; t++) {
            int64_t i = t / g->kw, j = t % g->kw, lo, hi;
            tgi_window_inside(j * g->dw - g->pw, g->sw, g->w, g->ow, &lo, &hi);
            const float *src = job->col + (c * taps + t) * cols;
            for (int64_t s = 0; s < g->block; s++) {
                float *plane = job->x + ((job->first + s) * g->c + c) * g->h * g->w;
                for (int64_t oy = 0; oy < g->oh; oy++, src += g->ow) {
                    float *dst = tap_row(g, plane, oy, i);
                    if (dst) add_row(dst, src, j * g->dw - g->pw, lo, hi, g->sw);
                }
            }
        }
}

/* ---- the convolution of a whole batch ----------------------------------------------------- */

/* Scratch of one pass: the block's columns, and its outputs (or their gradients) in
 * [O, block positions] order when a block holds several samples. Given back on release. */
typedef struct conv_scratch {
    float *col, *rows;
    tgi_arena_mark mark;
} conv_scratch;

static tg_status scratch_get(const tg_op_call *call, const conv_geom *g, conv_scratch *s) {
    tgi_arena *arena = &call->tape->arena;
    int64_t cols = g->block * g->positions, col_floats = 0;
    /* C kh kw rows of block x positions columns: each factor is bounded by a tensor's size,
     * their product is not (a large kernel over many channels) */
    const int64_t factors[4] = {g->c, g->kh, g->kw, cols};
    if (!g->direct && (!tgi_product_ok(4, factors, &col_floats) || col_floats > TGI_MAX_ELEMENTS))
        return tg_op_fail(call, TG_ERR_NOMEM, "the column buffer (%lld channels x %lldx%lld "
                          "taps x %lld positions) is more than 2^40 floats", (long long)g->c,
                          (long long)g->kh, (long long)g->kw, (long long)cols);
    s->mark = tgi_arena_mark_get(arena);
    s->col = g->direct ? NULL : tgi_arena_alloc(arena, (size_t)col_floats * sizeof(float));
    s->rows = g->block > 1 ? tgi_arena_alloc(arena, (size_t)(g->o * cols) * sizeof(float)) : NULL;
    if ((!g->direct && !s->col) || (g->block > 1 && !s->rows)) {
        tgi_arena_mark_rewind(arena, s->mark);
        return tg_op_fail(call, TG_ERR_NOMEM, "out of memory for the column buffer");
    }
    return TG_OK;
}

static void scratch_release(const tg_op_call *call, conv_scratch *s) {
    tgi_arena_mark_rewind(&call->tape->arena, s->mark);
}

/* The columns of the block starting at sample `first` of x: unfolded into s->col, or x itself
 * (direct). *ld: their row stride. */
static const float *block_columns(tg_ctx *ctx, const conv_geom *g, conv_scratch *s,
                                  const float *x, int64_t first, int64_t *ld) {
    if (g->direct) {
        *ld = g->positions;
        return x + first * g->c * g->positions;
    }
    unfold_job job = {g, first, s->col, (float *)x};
    tgi_parallel_for(ctx, g->c * g->kh * g->kw, 8, im2col_rows, &job);
    *ld = g->block * g->positions;
    return s->col;
}

/* Moves a block between NCHW (y) and [O, block positions] (rows): gather copies into rows;
 * otherwise rows are copied, or added (accumulate), into y. */
static void reorder_block(const conv_geom *g, float *y, float *rows, int64_t first, bool gather,
                          bool accumulate) {
    int64_t p = g->positions, cols = g->block * p;
    for (int64_t s = 0; s < g->block; s++)
        for (int64_t o = 0; o < g->o; o++) {
            float *nchw = y + ((first + s) * g->o + o) * p, *row = rows + o * cols + s * p;
            if (gather) memcpy(row, nchw, (size_t)p * sizeof(float));
            else if (!accumulate) memcpy(nchw, row, (size_t)p * sizeof(float));
            else for (int64_t q = 0; q < p; q++) nchw[q] += row[q];
        }
}

/* y = conv(x, w) (or y += when accumulating) for the whole batch, block by block: the forward
 * pass, and the input gradient as a convolution of dY with the flipped kernel. */
static tg_status conv_apply(const tg_op_call *call, conv_geom g, const float *x, const float *w,
                            float *y, bool accumulate) {
    tg_ctx *ctx = call->tape->ctx;
    int64_t p = g.positions;
    conv_scratch s;
    if (scratch_get(call, &g, &s) != TG_OK) return TG_ERR_NOMEM;
    for (int64_t first = 0; first < g.n; first += g.block) {
        if (first + g.block > g.n) g.block = g.n - first; /* the last block may be short */
        int64_t ld, cols = g.block * p;
        const float *col = block_columns(ctx, &g, &s, x, first, &ld);
        /* one sample: the product lands in y; several: in rows, then reordered */
        bool direct_out = g.block == 1;
        float *dst = direct_out ? y + first * g.o * p : s.rows;
        int64_t ldc = direct_out ? p : cols;
        for (int64_t grp = 0; grp < g.groups; grp++)
            tgi_gemm(ctx, false, false, g.og, cols, g.k, 1.0f, w + grp * g.og * g.k, g.k,
                     col + grp * g.k * ld, ld, direct_out && accumulate ? 1.0f : 0.0f,
                     dst + grp * g.og * ldc, ldc);
        if (!direct_out) reorder_block(&g, y, s.rows, first, false, accumulate);
    }
    scratch_release(call, &s);
    return TG_OK;
}

/* ---- forward ------------------------------------------------------------------------------- */

/* The call as a "same" convolution for ops/conv_same.c, when it is one that path takes. */
static bool as_same(const conv_geom *g, tgi_same_conv *s) {
    if (g->sh != 1 || g->sw != 1 || g->dh != 1 || g->dw != 1 || g->groups != 1) return false;
    *s = (tgi_same_conv){g->n, g->c, g->o, g->h, g->w, g->kh, g->kw, g->ph, g->pw};
    return tgi_conv_same_applies(s);
}

static tg_status conv_forward(tg_op_call *call) {
    conv_geom g = conv_geometry(call);
    const float *bias = call->n_inputs == 3 ? call->inputs[2]->data : NULL;
    float *y = call->output->data;
    tgi_same_conv same;
    tg_status status = as_same(&g, &same)
        ? tgi_conv_same_forward(call, &same, call->inputs[0]->data, call->inputs[1]->data, y)
        : conv_apply(call, g, call->inputs[0]->data, call->inputs[1]->data, y, false);
    if (status != TG_OK) return status;
    if (bias)
        for (int64_t i = 0; i < g.n * g.o; i++) {
            float *plane = y + i * g.positions, b = bias[i % g.o];
            for (int64_t q = 0; q < g.positions; q++) plane[q] += b;
        }
    return TG_OK;
}

/* ---- backward ------------------------------------------------------------------------------ */

/* db[o] += sum of dY over samples and positions. */
static void bias_backward(const conv_geom *g, const float *gy, float *db) {
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t o = 0; o < g->o; o++) {
            const float *plane = gy + (n * g->o + o) * g->positions;
            float sum = 0.0f;
            for (int64_t q = 0; q < g->positions; q++) sum += plane[q];
            db[o] += sum;
        }
}

/* With stride 1, dx is the convolution of dY (padded by dilation (k - 1) - pad) with the kernel
 * flipped in space and with its channel axes swapped: a product of the forward's good shape
 * (few rows, many columns) instead of W^T dY's tall, thin one plus a col2im scatter. */
static bool flip_applies(const conv_geom *g) {
    return g->sh == 1 && g->sw == 1 && g->ph <= g->dh * (g->kh - 1) && g->pw <= g->dw * (g->kw - 1);
}

static tg_status input_grad_by_flipped_conv(const tg_op_call *call, const conv_geom *g) {
    conv_geom t = *g;
    t.c = g->o, t.h = g->oh, t.w = g->ow, t.o = g->c;
    t.ph = g->dh * (g->kh - 1) - g->ph, t.pw = g->dw * (g->kw - 1) - g->pw;
    geometry_finish(&t, g->h, g->w); /* stride 1: the flipped convolution gives x's size back */
    /* flipped[g][c][o][i][j] = w[g][o][c][kh-1-i][kw-1-j] */
    tgi_arena *arena = &call->tape->arena;
    tgi_arena_mark mark = tgi_arena_mark_get(arena);
    const float *w = call->inputs[1]->data;
    float *flipped = tgi_arena_alloc(arena, (size_t)call->inputs[1]->size * sizeof(float));
    if (!flipped) return tg_op_fail(call, TG_ERR_NOMEM, "out of memory for the flipped kernel");
    int64_t taps = g->kh * g->kw;
    for (int64_t grp = 0; grp < g->groups; grp++)
        for (int64_t o = 0; o < g->og; o++)
            for (int64_t c = 0; c < g->cg; c++) {
                const float *src = w + ((grp * g->og + o) * g->cg + c) * taps;
                float *dst = flipped + ((grp * g->cg + c) * g->og + o) * taps;
                for (int64_t tap = 0; tap < taps; tap++) dst[tap] = src[taps - 1 - tap];
            }
    tg_status status = conv_apply(call, t, call->output->grad, flipped, call->inputs[0]->grad, true);
    tgi_arena_mark_rewind(arena, mark);
    return status;
}

/* Adds the transposed weight gradient dwt [G][K][O/G] into dw [G][O/G][K]. */
static void add_transposed(const conv_geom *g, const float *dwt, float *dw) {
    for (int64_t grp = 0; grp < g->groups; grp++)
        for (int64_t o = 0; o < g->og; o++)
            for (int64_t q = 0; q < g->k; q++)
                dw[(grp * g->og + o) * g->k + q] += dwt[(grp * g->k + q) * g->og + o];
}

/* dW_g^T = col_g dY_g^T, summed over the blocks, then added to dW transposed: the product with
 * K rows and O/G columns runs about twice as fast as dY_g col_g^T's O/G rows and K columns.
 * And, when the flipped convolution does not apply, dx by dcol_g = W_g^T dY_g folded back
 * with col2im. */
static tg_status weight_and_col2im_backward(const tg_op_call *call, conv_geom g, bool want_dw,
                                            bool want_dx) {
    const tg_tensor *x = call->inputs[0], *w = call->inputs[1];
    float *gy = call->output->grad;
    int64_t p = g.positions;
    tg_ctx *ctx = call->tape->ctx;
    conv_scratch s;
    if (scratch_get(call, &g, &s) != TG_OK) return TG_ERR_NOMEM;
    float *dwt = want_dw ? tgi_arena_alloc(&call->tape->arena, (size_t)w->size * sizeof(float)) : NULL;
    if (want_dw && !dwt) {
        scratch_release(call, &s);
        return tg_op_fail(call, TG_ERR_NOMEM, "out of memory for the weight gradient");
    }
    for (int64_t first = 0; first < g.n; first += g.block) {
        if (first + g.block > g.n) g.block = g.n - first;
        int64_t cols = g.block * p, ld = cols;
        /* dY of the block as [O, columns] */
        const float *dy = gy + first * g.o * p;
        int64_t lddy = p;
        if (g.block > 1) {
            reorder_block(&g, gy, s.rows, first, true, false);
            dy = s.rows;
            lddy = cols;
        }
        if (want_dw) {
            const float *col = block_columns(ctx, &g, &s, x->data, first, &ld);
            for (int64_t grp = 0; grp < g.groups; grp++)
                tgi_gemm(ctx, false, true, g.k, g.og, cols, 1.0f, col + grp * g.k * ld, ld,
                         dy + grp * g.og * lddy, lddy, first == 0 ? 0.0f : 1.0f,
                         dwt + grp * g.k * g.og, g.og);
        }
        if (!want_dx) continue;
        /* dcol = W^T dY, straight into dx when the input is its own column matrix */
        float *dcol = g.direct ? x->grad + first * g.c * p : s.col;
        ld = g.direct ? p : cols;
        for (int64_t grp = 0; grp < g.groups; grp++)
            tgi_gemm(ctx, true, false, g.k, cols, g.og, 1.0f, w->data + grp * g.og * g.k, g.k,
                     dy + grp * g.og * lddy, lddy, g.direct ? 1.0f : 0.0f, dcol + grp * g.k * ld,
                     ld);
        if (!g.direct) {
            unfold_job job = {&g, first, s.col, x->grad};
            tgi_parallel_for(ctx, g.c, 1, col2im_channels, &job);
        }
    }
    if (want_dw) add_transposed(&g, dwt, w->grad);
    scratch_release(call, &s);
    return TG_OK;
}

static tg_status conv_backward(const tg_op_call *call) {
    const tg_tensor *x = call->inputs[0], *w = call->inputs[1];
    const tg_tensor *b = call->n_inputs == 3 ? call->inputs[2] : NULL;
    conv_geom g = conv_geometry(call);
    tg_ctx *ctx = call->tape->ctx;
    /* conv_same writes a fresh dx whole (grad_fresh); the other paths add into it */
    for (int i = 1; i < call->n_inputs; i++) tgi_grad_settle(ctx, call->inputs[i]);
    if (b && b->grad) bias_backward(&g, call->output->grad, b->grad);
    tgi_same_conv same;
    if (as_same(&g, &same))
        return x->grad || w->grad ? tgi_conv_same_backward(call, &same, x->grad, w->grad) : TG_OK;
    tgi_grad_settle(ctx, call->inputs[0]);
    bool flip = x->grad && flip_applies(&g);
    bool col2im = x->grad && !flip;
    if ((w->grad || col2im) && weight_and_col2im_backward(call, g, w->grad, col2im) != TG_OK)
        return TG_ERR_NOMEM;
    if (flip && input_grad_by_flipped_conv(call, &g) != TG_OK) return TG_ERR_NOMEM;
    return TG_OK;
}

/* ---- forward mode -------------------------------------------------------------------------- */

/* The bias's tangent [O] as the output's: [1, O, 1(, 1)] broadcast over samples and positions. */
static tg_tensor *bias_tangent(const tg_op_call *call, tg_tensor *db) {
    const tg_tensor *y = call->output;
    int64_t shape[4] = {1, y->shape[1], 1, 1};
    tg_tensor *column = tg_reshape(call->tape, db, y->ndim, shape);
    return column ? tgi_tangent_expand(call->tape, column, y) : NULL;
}

/* conv(x, W) + b is linear in each argument: d = conv(dx, W) + conv(x, dW) + db. The bias's
 * tangent rides as the bias of the first convolution made (as linear's JVP does), and is
 * broadcast on its own only when neither x nor W moves. */
static tg_status conv_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    tg_tape *tape = call->tape;
    tg_tensor *db = call->n_inputs == 3 ? t[2] : NULL, *sum = NULL;
    for (int k = 0; k < 2; k++) {
        if (!t[k]) continue;
        tg_tensor *inputs[3] = {k == 0 ? t[0] : call->inputs[0], k == 0 ? call->inputs[1] : t[1],
                                db};
        tg_tensor *term = tgi_call_builtin(tape, call->op_id, inputs, db ? 3 : 2, call->attrs);
        if (!term || !(sum = tgi_tangent_add(tape, sum, term))) return tg_errcode(tape->ctx);
        db = NULL;
    }
    if (db && !(sum = bias_tangent(call, db))) return tg_errcode(tape->ctx);
    *out = sum;
    return TG_OK;
}

/* ---- registry entries ---------------------------------------------------------------------- */

/* An example: x and weight shapes, a bias or none, then the seven attributes. */
#define CONV_EXAMPLE(X, W, BIAS, ...)                                                         \
    {.n_inputs = (BIAS) ? 3 : 2,                                                                \
     .inputs = {TGI_INPUT(TGI_DOMAIN_ANY, UNPACK X), TGI_INPUT(TGI_DOMAIN_ANY, UNPACK W), \
                TGI_INPUT(TGI_DOMAIN_ANY, (BIAS) ? (BIAS) : 1)},                                 \
     .attrs = {CONV_ATTRS(__VA_ARGS__)}}
#define UNPACK(...) __VA_ARGS__
#define CONV_ATTRS(...) CONV_ATTRS_(__VA_ARGS__, 0, 0, 0)
#define CONV_ATTRS_(a, b, c, d, e, f, g, ...)                                                   \
    {.i64 = a}, {.i64 = b}, {.i64 = c}, {.i64 = d}, {.i64 = e}, {.i64 = f}, {.i64 = g}
static const tgi_example conv2d_inputs[] = {
    /* (stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups) */
    CONV_EXAMPLE((2, 2, 4, 4), (3, 2, 3, 3), 3, 1, 1, 1, 1, 1, 1, 1),  /* 3x3 padded, bias */
    CONV_EXAMPLE((2, 2, 5, 5), (2, 2, 3, 3), 0, 2, 2, 1, 1, 1, 1, 1),  /* stride 2, no bias */
    CONV_EXAMPLE((1, 2, 6, 5), (2, 2, 2, 2), 2, 1, 2, 2, 1, 2, 2, 1),  /* dilation 2 */
    CONV_EXAMPLE((2, 4, 5, 3), (4, 2, 3, 1), 4, 1, 1, 1, 0, 1, 1, 2),  /* groups 2, 3x1 */
    CONV_EXAMPLE((1, 2, 5, 4), (3, 2, 1, 3), 0, 2, 1, 0, 1, 1, 1, 1),  /* 1x3, stride 2 in h */
    CONV_EXAMPLE((3, 4, 3, 3), (2, 2, 1, 1), 2, 1, 1, 0, 0, 1, 1, 2),  /* 1x1 direct, groups 2 */
};
static const tgi_example conv1d_inputs[] = {
    /* (stride, pad, dilation, groups) */
    CONV_EXAMPLE((2, 2, 7), (3, 2, 3), 3, 2, 1, 1, 1),                 /* stride 2, padded */
    CONV_EXAMPLE((2, 4, 6), (2, 2, 2), 0, 1, 2, 3, 2),                 /* dilation 3, groups 2 */
};
static const tgi_examples conv2d_examples = TGI_EXAMPLES(conv2d_inputs);
static const tgi_examples conv1d_examples = TGI_EXAMPLES(conv1d_inputs);

const tg_op_def tgi_conv_defs[] = {
    {"conv2d", TG_VARIADIC,
     "stride_h:i64,stride_w:i64,pad_h:i64,pad_w:i64,dilation_h:i64,dilation_w:i64,groups:i64",
     conv_infer, conv_forward, conv_backward, tgi_example_from_spec, (void *)&conv2d_examples,
     conv_jvp},
    {"conv1d", TG_VARIADIC, "stride:i64,pad:i64,dilation:i64,groups:i64", conv_infer,
     conv_forward, conv_backward, tgi_example_from_spec, (void *)&conv1d_examples, conv_jvp},
};
const int tgi_conv_count = sizeof tgi_conv_defs / sizeof tgi_conv_defs[0];

/* Zero means the default (1) for strides, dilations and groups; negative values reach the op,
 * which refuses them with a message naming the attribute. */
static int64_t or_one(int v) {
    return v == 0 ? 1 : v;
}

static tg_tensor *conv_call(tg_tape *tape, int id, tg_tensor *x, tg_tensor *weight,
                            tg_tensor *bias, const tg_attr_value *attrs) {
    tg_tensor *inputs[3] = {x, weight, bias};
    return tgi_call_builtin(tape, id, inputs, bias ? 3 : 2, attrs);
}

tg_tensor *tg_conv2d(tg_tape *tape, tg_tensor *x, tg_tensor *weight, tg_tensor *bias,
                     const tg_conv2d_opts *opts) {
    tg_conv2d_opts o = opts ? *opts : (tg_conv2d_opts){0};
    tg_attr_value attrs[7] = {{.i64 = or_one(o.stride_h)},   {.i64 = or_one(o.stride_w)},
                              {.i64 = o.pad_h},              {.i64 = o.pad_w},
                              {.i64 = or_one(o.dilation_h)}, {.i64 = or_one(o.dilation_w)},
                              {.i64 = or_one(o.groups)}};
    return conv_call(tape, TGI_OP_CONV2D, x, weight, bias, attrs);
}

tg_tensor *tg_conv1d(tg_tape *tape, tg_tensor *x, tg_tensor *weight, tg_tensor *bias, int stride,
                     int pad, int dilation, int groups) {
    tg_attr_value attrs[4] = {{.i64 = or_one(stride)}, {.i64 = pad}, {.i64 = or_one(dilation)},
                              {.i64 = or_one(groups)}};
    return conv_call(tape, TGI_OP_CONV1D, x, weight, bias, attrs);
}
