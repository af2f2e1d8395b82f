/*
 * tests/test_conv.c — convolution and pooling: values against hand-computed cases and a naive
 * loop, gradients against finite differences (the registry's examples) and against a naive VJP,
 * shape errors, NaN through max pooling, batch norm over channels, no allocation in the steady
 * state, and the same bits with 1 and 2 threads.
 */
#include "fixture.h"

TestSuite(conv, .init = fixture_setup, .fini = fixture_teardown);

/* A tape tensor with values, wanting a gradient when grad is true. */
static tg_tensor *tensor_of(int ndim, const int64_t *shape, const float *data, bool grad) {
    tg_tensor *t = data ? tg_tape_from_data(tape, ndim, shape, data) : tg_tape_zeros(tape, ndim, shape);
    cr_assert_not_null(t, "%s", tg_errmsg(ctx));
    if (grad) cr_assert_eq(tg_set_requires_grad(t, true), TG_OK);
    return t;
}

static tg_tensor *random_tensor(int ndim, const int64_t *shape, uint64_t seed) {
    tg_tensor *t = tensor_of(ndim, shape, NULL, true);
    tg_fill_normal(t, 0.0f, 1.0f, seed);
    return t;
}

/* ---- forward values ------------------------------------------------------------------------ */

static const float x3x3[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
static const float w2x2[4] = {1, 2, 3, 4};

Test(conv, conv2d_hand_computed_valid_and_bias) {
    tg_tensor *x = tensor_of(TG_SHAPE(1, 1, 3, 3), x3x3, false);
    tg_tensor *w = tensor_of(TG_SHAPE(1, 1, 2, 2), w2x2, false);
    tg_tensor *b = tensor_of(TG_SHAPE(1), (const float[]){0.5f}, false);
    tg_tensor *y = tg_conv2d(tape, x, w, b, NULL);
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    cr_expect_eq(y->ndim, 4);
    cr_expect(y->shape[2] == 2 && y->shape[3] == 2);
    /* 1*1+2*2+3*4+4*5 = 37, then 47, 67, 77 */
    expect_close(y->data, (const float[]){37.5f, 47.5f, 67.5f, 77.5f}, 4, 1e-5f, "y");
}

Test(conv, conv2d_hand_computed_padding_and_stride) {
    tg_tensor *x = tensor_of(TG_SHAPE(1, 1, 3, 3), x3x3, false);
    tg_tensor *w = tensor_of(TG_SHAPE(1, 1, 2, 2), w2x2, false);
    tg_conv2d_opts opts = {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1};
    tg_tensor *y = tg_conv2d(tape, x, w, NULL, &opts);
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    cr_expect(y->shape[2] == 2 && y->shape[3] == 2, "(3 + 2 - 2) / 2 + 1 = 2");
    /* windows at (-1,-1): x00*w11; (-1,1): x01*w10 + x02*w11; (1,-1): x10*w01 + x20*w11; (1,1) */
    expect_close(y->data, (const float[]){4, 18, 36, 77}, 4, 1e-5f, "y");
}

Test(conv, conv2d_hand_computed_dilation_and_groups) {
    /* dilation 2 on 3x3: one output, the corners */
    tg_tensor *x = tensor_of(TG_SHAPE(1, 1, 3, 3), x3x3, false);
    tg_tensor *w = tensor_of(TG_SHAPE(1, 1, 2, 2), w2x2, false);
    tg_conv2d_opts dil = {.dilation_h = 2, .dilation_w = 2};
    tg_tensor *y = tg_conv2d(tape, x, w, NULL, &dil);
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    expect_close(y->data, (const float[]){1 * 1 + 2 * 3 + 3 * 7 + 4 * 9}, 1, 1e-5f, "dilated");
    /* groups 2, 1x1: each output channel sees only its own input channel */
    tg_tensor *x2 = tensor_of(TG_SHAPE(1, 2, 1, 2), (const float[]){1, 2, 10, 20}, false);
    tg_tensor *w2 = tensor_of(TG_SHAPE(2, 1, 1, 1), (const float[]){3, -1}, false);
    tg_tensor *y2 = tg_conv2d(tape, x2, w2, NULL, &(tg_conv2d_opts){.groups = 2});
    cr_assert_not_null(y2, "%s", tg_errmsg(ctx));
    expect_close(y2->data, (const float[]){3, 6, -10, -20}, 4, 1e-6f, "grouped");
}

Test(conv, conv1d_hand_computed) {
    tg_tensor *x = tensor_of(TG_SHAPE(1, 1, 5), (const float[]){1, 2, 3, 4, 5}, false);
    tg_tensor *w = tensor_of(TG_SHAPE(1, 1, 3), (const float[]){1, 0, -1}, false);
    tg_tensor *y = tg_conv1d(tape, x, w, NULL, 2, 1, 1, 1);
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    cr_expect(y->ndim == 3 && y->shape[2] == 3, "(5 + 2 - 3) / 2 + 1 = 3");
    /* taps at -1..1, 1..3, 3..5 with zero padding */
    expect_close(y->data, (const float[]){0 - 2, 2 - 4, 4 - 0}, 3, 1e-6f, "y");
}

/* ---- against a naive loop: forward and every gradient -------------------------------------- */

typedef struct geometry {
    int64_t n, c, h, w, o, kh, kw;
    tg_conv2d_opts opts;
    bool bias;
} geometry;

static int64_t out_len(int64_t in, int64_t k, int s, int p, int d) {
    return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

/* y = conv(x, w) + b and the VJPs for upstream gy, by the definition, in double. */
static void naive_conv(const geometry *g, const float *x, const float *w, const float *b,
                       const float *gy, double *y, double *dx, double *dw, double *db) {
    int s_h = g->opts.stride_h, s_w = g->opts.stride_w, d_h = g->opts.dilation_h,
        d_w = g->opts.dilation_w, groups = g->opts.groups;
    int64_t oh = out_len(g->h, g->kh, s_h, g->opts.pad_h, d_h);
    int64_t ow = out_len(g->w, g->kw, s_w, g->opts.pad_w, d_w);
    int64_t cg = g->c / groups, og = g->o / groups;
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t o = 0; o < g->o; o++)
            for (int64_t i = 0; i < oh; i++)
                for (int64_t j = 0; j < ow; j++) {
                    int64_t at = ((n * g->o + o) * oh + i) * ow + j;
                    double sum = b ? b[o] : 0.0;
                    if (b) db[o] += gy[at];
                    for (int64_t c = 0; c < cg; c++)
                        for (int64_t p = 0; p < g->kh; p++)
                            for (int64_t q = 0; q < g->kw; q++) {
                                int64_t ih = i * s_h - g->opts.pad_h + p * d_h;
                                int64_t iw = j * s_w - g->opts.pad_w + q * d_w;
                                if (ih < 0 || ih >= g->h || iw < 0 || iw >= g->w) continue;
                                int64_t ci = o / og * cg + c;
                                int64_t xi = ((n * g->c + ci) * g->h + ih) * g->w + iw;
                                int64_t wi = ((o * cg + c) * g->kh + p) * g->kw + q;
                                sum += (double)x[xi] * w[wi];
                                dx[xi] += (double)gy[at] * w[wi];
                                dw[wi] += (double)gy[at] * x[xi];
                            }
                    y[at] = sum;
                }
}

static void expect_near_double(const float *got, const double *want, int64_t n, const char *what) {
    for (int64_t i = 0; i < n; i++)
        if (!(fabs(got[i] - want[i]) <= 1e-4 * (1.0 + fabs(want[i])))) {
            cr_expect_fail("%s[%lld] = %.7g, naive %.7g", what, (long long)i, (double)got[i],
                           want[i]);
            return;
        }
}

static void check_against_naive(geometry g, bool one_d) {
    tg_conv2d_opts *o = &g.opts;
    if (!o->stride_h) o->stride_h = 1;
    if (!o->stride_w) o->stride_w = 1;
    if (!o->dilation_h) o->dilation_h = 1;
    if (!o->dilation_w) o->dilation_w = 1;
    if (!o->groups) o->groups = 1;
    tg_tensor *x, *w, *b = NULL, *y;
    if (one_d) {
        x = random_tensor(TG_SHAPE(g.n, g.c, g.w), 1);
        w = random_tensor(TG_SHAPE(g.o, g.c / o->groups, g.kw), 2);
    } else {
        x = random_tensor(TG_SHAPE(g.n, g.c, g.h, g.w), 1);
        w = random_tensor(TG_SHAPE(g.o, g.c / o->groups, g.kh, g.kw), 2);
    }
    if (g.bias) b = random_tensor(TG_SHAPE(g.o), 3);
    y = one_d ? tg_conv1d(tape, x, w, b, o->stride_w, o->pad_w, o->dilation_w, o->groups)
              : tg_conv2d(tape, x, w, b, o);
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    tg_tensor *gy = tensor_of(y->ndim, y->shape, NULL, false);
    tg_fill_normal(gy, 0.0f, 1.0f, 4);
    cr_assert_eq(tg_backward_with(tape, y, gy->data), TG_OK, "%s", tg_errmsg(ctx));
    double *want = calloc((size_t)(y->size + x->size + w->size + g.o), sizeof(double));
    double *dx = want + y->size, *dw = dx + x->size, *db = dw + w->size;
    naive_conv(&g, x->data, w->data, b ? b->data : NULL, gy->data, want, dx, dw, db);
    expect_near_double(y->data, want, y->size, "y");
    expect_near_double(x->grad, dx, x->size, "dx");
    expect_near_double(w->grad, dw, w->size, "dw");
    if (b) expect_near_double(b->grad, db, g.o, "db");
    free(want);
}

Test(conv, conv2d_matches_a_naive_loop) {
    const geometry cases[] = {
        {2, 3, 8, 8, 4, 3, 3, {.pad_h = 1, .pad_w = 1}, true},
        {3, 4, 9, 7, 6, 3, 3, {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1, .groups = 2}, false},
        {2, 2, 9, 9, 2, 3, 2, {.dilation_h = 2, .dilation_w = 3, .pad_h = 2, .pad_w = 1}, true},
        {2, 4, 6, 5, 4, 3, 1, {.pad_h = 1, .groups = 4}, true},      /* depthwise, 3x1 */
        {1, 2, 5, 6, 3, 1, 3, {.stride_w = 2, .pad_w = 1}, false},    /* 1x3 */
        {3, 4, 5, 5, 6, 1, 1, {.groups = 2}, true},                   /* 1x1: the direct path */
        {2, 4, 6, 6, 4, 1, 1, {.stride_h = 2, .stride_w = 2}, true},  /* 1x1 strided */
        {2, 3, 4, 4, 2, 1, 1, {.pad_h = 1, .pad_w = 1}, true},        /* pad > kernel extent */
        {2, 2, 7, 6, 3, 3, 3, {.dilation_h = 2, .dilation_w = 2, .pad_h = 2, .pad_w = 2}, false},
        {2, 2, 5, 6, 2, 3, 5, {.pad_h = 0, .pad_w = 2}, true},        /* same width only */
        {17, 2, 12, 12, 3, 3, 3, {.pad_h = 1, .pad_w = 1}, true},      /* blocks of 15 samples */
        {3, 2, 32, 32, 2, 3, 3, {.pad_h = 1, .pad_w = 1}, true},       /* one sample per block */
        {1, 3, 5, 8, 5, 3, 3, {.pad_h = 1, .pad_w = 1}, false},        /* rows: an odd segment count */
        {2, 2, 6, 16, 3, 5, 5, {.pad_h = 2, .pad_w = 2}, true},        /* rows: a 5x5 kernel */
        {2, 3, 7, 9, 4, 5, 3, {.pad_h = 2, .pad_w = 1}, false},        /* 5x3: 3 wide, kh rows */
        {3, 2, 7, 7, 5, 3, 3, {.pad_h = 1, .pad_w = 1}, true},         /* rows, short segments */
        {2, 3, 14, 14, 4, 3, 3, {.pad_h = 1, .pad_w = 1}, false},      /* rows: 8 + 6 a row */
        /* rows with W a multiple of 8 over 2 blocks, the last one shorter (its tail cleared of
         * the first block's data); 7 channels: tiles of 4 + 4, one padding row */
        {9, 3, 16, 16, 7, 3, 3, {.pad_h = 1, .pad_w = 1}, true},
        {13, 2, 12, 12, 3, 3, 3, {.pad_h = 1, .pad_w = 1}, false},    /* flat: blocks of 7 + 6 */
        {3, 16, 8, 8, 16, 3, 3, {.pad_h = 1, .pad_w = 1}, false},      /* tiles of 6 + 6 + 4 */
        {2, 5, 8, 8, 11, 3, 3, {.pad_h = 1, .pad_w = 1}, true},        /* 6 + 5 (padded to 6) */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_against_naive(cases[i], false);
        tg_tape_reset(tape);
    }
}

Test(conv, conv1d_matches_a_naive_loop) {
    const geometry cases[] = {
        {2, 3, 1, 11, 4, 1, 3, {.stride_w = 2, .pad_w = 1}, true},
        {3, 4, 1, 9, 2, 1, 2, {.dilation_w = 3, .pad_w = 2, .groups = 2}, false},
        {2, 2, 1, 8, 3, 1, 3, {.pad_w = 1}, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_against_naive(cases[i], true);
        tg_tape_reset(tape);
    }
}

/* ---- gradients against finite differences (the registry's examples) ----------------------- */

Test(conv, every_example_passes_the_gradient_check) {
    const char *ops[] = {"conv2d", "conv1d", "max_pool2d", "avg_pool2d", "global_avg_pool2d",
                         "batch_norm"};
    const int least[] = {6, 2, 3, 3, 1, 5};
    for (int k = 0; k < 6; k++) check_op_examples(ctx, ops[k], least[k]);
}

/* ---- errors -------------------------------------------------------------------------------- */

static tg_tensor *named(const char *label, int ndim, const int64_t *shape) {
    return tg_set_label(tensor_of(ndim, shape, NULL, false), "%s", label);
}

Test(conv, channel_mismatch_names_op_shapes_and_groups) {
    cr_expect_null(tg_conv2d(tape, named("x", TG_SHAPE(8, 3, 8, 8)),
                             named("c1.weight", TG_SHAPE(16, 4, 3, 3)), NULL, NULL));
    cr_expect_eq(tg_errcode(ctx), TG_ERR_SHAPE);
    expect_errmsg_has(ctx, "conv2d ('x' [8,3,8,8], 'c1.weight' [16,4,3,3]): input has 3 "
                      "channels, weight expects 4 (groups 1)");
}

Test(conv, bad_geometry_is_a_clean_error) {
    tg_tensor *x = named("x", TG_SHAPE(2, 4, 5, 5)), *w = named("w", TG_SHAPE(6, 2, 3, 3));
    cr_expect_null(tg_conv2d(tape, x, w, NULL, &(tg_conv2d_opts){.groups = 4}));
    expect_errmsg_has(ctx, "conv2d", "6 output channels, not divisible by groups 4");
    tg_clear_error(ctx);
    cr_expect_null(tg_conv2d(tape, x, w, NULL, &(tg_conv2d_opts){.pad_w = -1}));
    cr_expect_eq(tg_errcode(ctx), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "conv2d", "pad_w must be >= 0 (got -1)");
    tg_clear_error(ctx);
    cr_expect_null(tg_conv2d(tape, x, w, NULL, &(tg_conv2d_opts){.dilation_h = 3, .groups = 2}));
    expect_errmsg_has(ctx, "output height would be < 1", "input height 5", "dilated kernel extent 7");
    tg_clear_error(ctx);
    cr_expect_null(tg_conv2d(tape, x, w, named("b", TG_SHAPE(5)), &(tg_conv2d_opts){.groups = 2}));
    expect_errmsg_has(ctx, "'b' [5]", "bias must be [6]");
    tg_clear_error(ctx);
    /* through the registry, where no default replaces a zero stride */
    tg_attr_value attrs[7] = {{.i64 = 0}, {.i64 = 1}, {.i64 = 0}, {.i64 = 0},
                              {.i64 = 1}, {.i64 = 1}, {.i64 = 2}};
    tg_tensor *inputs[2] = {x, w};
    cr_expect_null(tg_call_id(tape, tg_op_find(ctx, "conv2d"), inputs, 2, attrs, 7));
    expect_errmsg_has(ctx, "conv2d", "stride_h must be >= 1 (got 0)");
    tg_clear_error(ctx);
    cr_expect_null(tg_conv1d(tape, x, w, NULL, 1, 0, 1, 1));
    expect_errmsg_has(ctx, "conv1d", "expected x [N,C,L]");
    tg_clear_error(ctx);
    cr_expect_null(tg_conv2d(tape, named("x3", TG_SHAPE(2, 5, 5, 5)), w, NULL,
                             &(tg_conv2d_opts){.groups = 2}));
    expect_errmsg_has(ctx, "input has 5 channels, not divisible by groups 2");
}

Test(conv, pooling_refuses_windows_of_padding_only) {
    tg_tensor *x = named("x", TG_SHAPE(1, 1, 4, 4));
    cr_expect_null(tg_max_pool2d(tape, x, 2, 2, 1, 1, 2, 0));
    cr_expect_eq(tg_errcode(ctx), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "max_pool2d ('x' [1,1,4,4])", "padding 2x0 is more than half the "
                      "kernel 2x2");
    tg_clear_error(ctx);
    cr_expect_null(tg_avg_pool2d(tape, x, 3, 3, 1, 1, 1, 2));
    expect_errmsg_has(ctx, "avg_pool2d", "padding 1x2 is more than half the kernel 3x3");
    tg_clear_error(ctx);
    cr_expect_null(tg_max_pool2d(tape, x, 5, 5, 1, 1, 0, 0));
    expect_errmsg_has(ctx, "output height would be < 1");
    tg_clear_error(ctx);
    cr_expect_null(tg_max_pool2d(tape, x, 0, 2, 1, 1, 0, 0));
    expect_errmsg_has(ctx, "kernel_h must be >= 1 (got 0)");
    tg_clear_error(ctx);
    cr_expect_null(tg_global_avg_pool2d(tape, named("v", TG_SHAPE(4, 4))));
    expect_errmsg_has(ctx, "global_avg_pool2d ('v' [4,4]): expected x [N,C,H,W]");
}

/* ---- pooling values ------------------------------------------------------------------------ */

Test(conv, max_pool_values_first_maximum_and_padding) {
    const float data[16] = {1, 5, 2, 2,  3, 4, 2, -1,  0, 0, -7, -8,  9, 0, -9, -6};
    tg_tensor *x = tensor_of(TG_SHAPE(1, 1, 4, 4), data, true);
    tg_tensor *y = tg_max_pool2d(tape, x, 2, 2, 0, 0, 0, 0);
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    expect_close(y->data, (const float[]){5, 2, 9, -6}, 4, 0, "y");
    cr_assert_eq(tg_backward_with(tape, y, (const float[]){1, 10, 100, 1000}), TG_OK);
    /* the tie 2, 2 in the second window: the first one takes the gradient */
    const float want[16] = {0, 1, 10, 0,  0, 0, 0, 0,  0, 0, 0, 0,  100, 0, 0, 1000};
    expect_close(x->grad, want, 16, 0, "dx");
    /* 3x3, stride 2, padding 1 on all-negative input: padding never wins */
    tg_tensor *neg = tensor_of(TG_SHAPE(1, 1, 3, 3), (const float[]){-9, -8, -7, -6, -5, -4, -3, -2, -1}, false);
    tg_tensor *p = tg_max_pool2d(tape, neg, 3, 3, 2, 2, 1, 1);
    cr_assert_not_null(p, "%s", tg_errmsg(ctx));
    expect_close(p->data, (const float[]){-5, -4, -2, -1}, 4, 0, "padded");
}

Test(conv, max_pool_propagates_nan_and_routes_its_gradient) {
    float data[16];
    for (int i = 0; i < 16; i++) data[i] = (float)i;
    data[4] = NAN; /* window 0 (rows 0-1, cols 0-1), not its first element */
    data[14] = NAN; /* window 3, before its largest number 15: the NaN still wins */
    tg_tensor *x = tensor_of(TG_SHAPE(1, 1, 4, 4), data, true);
    tg_tensor *y = tg_max_pool2d(tape, x, 2, 2, 2, 2, 0, 0);
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    cr_expect(isnan(y->data[0]), "window 0: %g", (double)y->data[0]);
    cr_expect_eq(y->data[1], 7.0f);
    cr_expect_eq(y->data[2], 13.0f);
    cr_expect(isnan(y->data[3]), "window 3: %g", (double)y->data[3]);
    cr_assert_eq(tg_backward_with(tape, y, (const float[]){1, 2, 3, 4}), TG_OK);
    float want[16] = {0};
    want[4] = 1, want[7] = 2, want[13] = 3, want[14] = 4;
    expect_close(x->grad, want, 16, 0, "dx");
}

Test(conv, avg_pool_counts_padding_as_zeros) {
    float ones[9];
    for (int i = 0; i < 9; i++) ones[i] = 1.0f;
    tg_tensor *x = tensor_of(TG_SHAPE(1, 1, 3, 3), ones, true);
    tg_tensor *y = tg_avg_pool2d(tape, x, 3, 3, 1, 1, 1, 1);
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    const float want[9] = {4 / 9.f, 6 / 9.f, 4 / 9.f, 6 / 9.f, 1, 6 / 9.f, 4 / 9.f, 6 / 9.f, 4 / 9.f};
    expect_close(y->data, want, 9, 1e-6f, "y");
    tg_tensor *loss = tg_sum(tape, y);
    cr_assert_eq(tg_backward(tape, loss), TG_OK);
    /* every input is in 4 windows (corners), 6 (edges) or 9 (centre), each giving 1/9 */
    expect_close(x->grad, want, 9, 1e-6f, "dx");
}

Test(conv, global_avg_pool_and_flatten) {
    tg_tensor *x = tensor_of(TG_SHAPE(2, 1, 2, 2), (const float[]){1, 2, 3, 6, -1, -1, -1, -1}, true);
    tg_tensor *y = tg_global_avg_pool2d(tape, x);
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    cr_expect(y->ndim == 2 && y->shape[0] == 2 && y->shape[1] == 1);
    expect_close(y->data, (const float[]){3, -1}, 2, 1e-6f, "y");
    tg_tensor *f = tg_flatten(tape, x);
    cr_assert_not_null(f, "%s", tg_errmsg(ctx));
    cr_expect(f->ndim == 2 && f->shape[0] == 2 && f->shape[1] == 4);
    expect_close(f->data, x->data, 8, 0, "flattened");
}

/* ---- batch norm over channels ------------------------------------------------------------- */

Test(conv, batch_norm_4d_statistics_per_channel) {
    const int64_t n = 3, c = 2, s = 4;
    tg_tensor *x = random_tensor(TG_SHAPE(3, 2, 2, 2), 7);
    tg_tensor *gamma = tensor_of(TG_SHAPE(2), (const float[]){2, 0.5f}, false);
    tg_tensor *beta = tensor_of(TG_SHAPE(2), (const float[]){1, -1}, false);
    tg_tensor *rm = tensor_of(TG_SHAPE(2), (const float[]){0, 0}, false);
    tg_tensor *rv = tensor_of(TG_SHAPE(2), (const float[]){1, 1}, false);
    tg_tensor *y = tg_batch_norm(tape, x, gamma, beta, rm, rv, 0.1f, 1e-5f, true);
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    for (int64_t k = 0; k < c; k++) {
        double mean = 0, var = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < s; j++) mean += x->data[(i * c + k) * s + j];
        mean /= (double)(n * s);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < s; j++)
                var += pow(x->data[(i * c + k) * s + j] - mean, 2);
        var /= (double)(n * s);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < s; j++) {
                int64_t at = (i * c + k) * s + j;
                double want = gamma->data[k] * (x->data[at] - mean) / sqrt(var + 1e-5) + beta->data[k];
                cr_expect(fabs(y->data[at] - want) < 1e-4, "y[%lld] = %g, want %g", (long long)at,
                          (double)y->data[at], want);
            }
        cr_expect(fabs(rm->data[k] - 0.1 * mean) < 1e-5, "running mean %g", (double)rm->data[k]);
        double unbiased = var * (double)(n * s) / (double)(n * s - 1);
        cr_expect(fabs(rv->data[k] - (0.9 + 0.1 * unbiased)) < 1e-5, "running var %g",
                  (double)rv->data[k]);
    }
    /* one value per channel cannot be normalised in training */
    cr_expect_null(tg_batch_norm(tape, named("one", TG_SHAPE(1, 2, 1)), gamma, beta, rm, rv, 0.1f,
                                 1e-5f, true));
    expect_errmsg_has(ctx, "batch_norm", "more than one value per channel");
}

/* ---- memory and threads ------------------------------------------------------------------- */

typedef struct lenet {
    tg_tensor *params[6];
} lenet;

static lenet lenet_new(tg_ctx *c) {
    const int64_t shapes[6][4] = {{6, 1, 3, 3}, {6}, {16, 6, 3, 3}, {16}, {10, 64}, {10}};
    const int ndims[6] = {4, 1, 4, 1, 2, 1};
    lenet net = {{0}};
    for (int p = 0; p < 6; p++) {
        net.params[p] = tg_zeros(c, ndims[p], shapes[p]);
        cr_assert_not_null(net.params[p]);
        tg_fill_normal(net.params[p], 0.0f, 0.3f, (uint64_t)p + 1);
        tg_set_requires_grad(net.params[p], true);
    }
    return net;
}

/* conv-relu-maxpool x2, flatten, linear, cross entropy; backward; SGD. */
static float lenet_step(tg_tape *t, lenet *net, const float *images, const float *labels) {
    tg_tape_reset(t);
    tg_conv2d_opts same = {.pad_h = 1, .pad_w = 1};
    tg_tensor *h = tg_tape_from_data(t, TG_SHAPE(16, 1, 8, 8), images);
    h = tg_max_pool2d(t, tg_relu(t, tg_conv2d(t, h, net->params[0], net->params[1], &same)), 2, 2, 0, 0, 0, 0);
    h = tg_avg_pool2d(t, tg_relu(t, tg_conv2d(t, h, net->params[2], net->params[3], &same)), 2, 2, 0, 0, 0, 0);
    h = tg_linear(t, tg_flatten(t, h), net->params[4], net->params[5]);
    tg_tensor *loss = tg_cross_entropy(t, h, tg_tape_from_data(t, TG_SHAPE(16), labels));
    cr_assert_not_null(loss, "%s", tg_errmsg(tg_tape_ctx(t)));
    cr_assert_eq(tg_backward(t, loss), TG_OK, "%s", tg_errmsg(tg_tape_ctx(t)));
    for (int p = 0; p < 6; p++) {
        for (int64_t i = 0; i < net->params[p]->size; i++)
            net->params[p]->data[i] -= 0.05f * net->params[p]->grad[i];
        tg_zero_grad(net->params[p]);
    }
    return loss->data[0];
}

static void digits_batch(float *images, float *labels) {
    for (int i = 0; i < 16 * 64; i++) images[i] = (float)((i * 37) % 17) / 17.0f;
    for (int i = 0; i < 16; i++) labels[i] = (float)(i % 10);
}

Test(conv, lenet_step_allocates_nothing_after_the_first) {
    tally count = {.fail_at = -1};
    tg_ctx *c = tg_ctx_new_with_allocator(tally_alloc, &count);
    cr_assert_not_null(c);
    lenet net = lenet_new(c);
    static float images[16 * 64], labels[16];
    digits_batch(images, labels);
    tg_tape *t = tg_tape_new(c);
    float first = lenet_step(t, &net, images, labels);
    long after_first = count.allocations;
    float last = first;
    for (int step = 2; step <= 30; step++) last = lenet_step(t, &net, images, labels);
    cr_expect_eq(count.allocations, after_first, "%ld allocations during steps 2..30",
                 count.allocations - after_first);
    cr_expect_lt(last, first, "30 steps on one batch should lower the loss (%g -> %g)",
                 (double)first, (double)last);
    tg_tape_free(t);
    tg_ctx_free(c);
    cr_expect_eq(count.live_bytes, 0);
}

/* A block big enough that GEMM, im2col, col2im and pooling are all cut over the threads. */
static void threaded_block(int threads, float *out, int64_t *n_out) {
    tg_ctx *c = tg_ctx_new();
    cr_assert_eq(tg_ctx_set_threads(c, threads), TG_OK);
    tg_tape *t = tg_tape_new(c);
    tg_tensor *x = tg_tape_zeros(t, TG_SHAPE(4, 8, 16, 16));
    tg_tensor *w = tg_zeros(c, TG_SHAPE(16, 4, 3, 3)), *b = tg_zeros(c, TG_SHAPE(16));
    tg_tensor *w2 = tg_zeros(c, TG_SHAPE(16, 16, 1, 1));
    tg_tensor *gamma = tg_zeros(c, TG_SHAPE(16)), *beta = tg_zeros(c, TG_SHAPE(16));
    tg_tensor *rm = tg_zeros(c, TG_SHAPE(16)), *rv = tg_zeros(c, TG_SHAPE(16));
    tg_tensor *learn[] = {x, w, b, w2, gamma, beta};
    for (int i = 0; i < 6; i++) {
        tg_fill_normal(learn[i], 0.5f, 1.0f, (uint64_t)i + 10);
        tg_set_requires_grad(learn[i], true);
    }
    tg_tensor *h = tg_conv2d(t, x, w, b, &(tg_conv2d_opts){.pad_h = 1, .pad_w = 1, .groups = 2});
    h = tg_batch_norm(t, h, gamma, beta, rm, rv, 0.1f, 1e-5f, true);
    h = tg_conv2d(t, tg_relu(t, h), w2, NULL, NULL);
    h = tg_max_pool2d(t, h, 3, 3, 2, 2, 1, 1);
    h = tg_avg_pool2d(t, h, 2, 2, 0, 0, 0, 0);
    tg_tensor *loss = tg_sum(t, tg_square(t, tg_global_avg_pool2d(t, h)));
    cr_assert_not_null(loss, "%s", tg_errmsg(c));
    cr_assert_eq(tg_backward(t, loss), TG_OK, "%s", tg_errmsg(c));
    int64_t at = 0;
    out[at++] = loss->data[0];
    for (int i = 0; i < 6; i++) {
        memcpy(out + at, learn[i]->grad, (size_t)learn[i]->size * sizeof(float));
        at += learn[i]->size;
    }
    *n_out = at;
    tg_tape_free(t);
    tg_ctx_free(c);
}

Test(conv, same_bits_with_one_and_two_threads) {
    static float one[20000], two[20000];
    int64_t n1, n2;
    threaded_block(1, one, &n1);
    threaded_block(2, two, &n2);
    cr_assert_eq(n1, n2);
    cr_expect(n1 > 8 * 1024, "%lld values compared", (long long)n1);
    cr_expect(memcmp(one, two, (size_t)n1 * sizeof(float)) == 0,
              "loss and gradients differ between 1 and 2 threads");
}
