/* tests/test_geometry.c — sizes computed from extreme geometry (padding, dilation, kernels and
 * strides near INT64_MAX, images of 2^31 x 2^31, layer widths of 2^62) are refused with a message
 * naming the op or layer and the field, or computed correctly: never overflowed (undefined
 * behaviour; the sanitizer build traps on it) nor divided by zero. The first cases are
 * FINDINGS-2 items 1, 2 and 6 (repro_second_pass.c cases 1-5 and 10). */
#include <limits.h>

#include "fixture.h"

TestSuite(geometry, .init = fixture_setup, .fini = fixture_teardown);

static const int64_t p62 = INT64_C(1) << 62;

static tg_tensor *input(const char *label, int ndim, const int64_t *shape, bool tape_made) {
    tg_tensor *t = tape_made ? tg_tape_zeros(tape, ndim, shape) : tg_zeros(ctx, ndim, shape);
    cr_assert_not_null(t, "%s", tg_errmsg(ctx));
    tg_set_requires_grad(t, true);
    return tg_set_label(t, "%s", label);
}

/* conv2d through tg_call with every attribute given (no default replaces a zero or a huge one) */
static tg_tensor *conv2d_call(tg_tensor *x, tg_tensor *w, int64_t sh, int64_t sw, int64_t ph,
                              int64_t pw, int64_t dh, int64_t dw) {
    tg_named_attr a[7] = {TG_I64("stride_h", sh),   TG_I64("stride_w", sw), TG_I64("pad_h", ph),
                          TG_I64("pad_w", pw),      TG_I64("dilation_h", dh),
                          TG_I64("dilation_w", dw), TG_I64("groups", 1)};
    tg_tensor *in[2] = {x, w};
    return tg_call(tape, "conv2d", in, 2, a, 7);
}

static tg_tensor *pool_call(const char *op, tg_tensor *x, int64_t k, int64_t s, int64_t p) {
    tg_named_attr a[6] = {TG_I64("kernel_h", k), TG_I64("kernel_w", k), TG_I64("stride_h", s),
                          TG_I64("stride_w", s), TG_I64("pad_h", p),    TG_I64("pad_w", p)};
    return tg_call(tape, op, &x, 1, a, 6);
}

static void expect_refused(tg_tensor *y, tg_status status) {
    cr_expect_null(y);
    cr_expect_eq(tg_errcode(ctx), status, "status %s: %s", tg_status_name(tg_errcode(ctx)),
                 tg_errmsg(ctx));
}

/* ---- repro_second_pass.c cases 1-5 and 10 -------------------------------------------------- */

Test(geometry, padding_int_max_gives_the_true_output_size_in_the_refusal) {
    tg_tensor *x = input("x", TG_SHAPE(1, 1, 1, 1), true), *w = input("w", TG_SHAPE(1, 1, 1, 1), false);
    expect_refused(tg_conv2d(tape, x, w, NULL, &(tg_conv2d_opts){.pad_h = INT_MAX, .pad_w = INT_MAX}),
                   TG_ERR_SHAPE);
    expect_errmsg_has(ctx, "conv2d ('x' [1,1,1,1], 'w' [1,1,1,1])",
                      "invalid output shape [1,1,4294967295,4294967295]", "at most 2^40 elements");
}

Test(geometry, padding_2_62_is_refused_naming_the_padding) {
    tg_tensor *x = input("x", TG_SHAPE(1, 1, 4, 4), true), *w = input("w", TG_SHAPE(1, 1, 3, 3), false);
    expect_refused(conv2d_call(x, w, 1, 1, p62, 0, 1, 1), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "conv2d ('x' [1,1,4,4], 'w' [1,1,3,3])",
                      "height padding 4611686018427387904 is too large (2 x padding overflows)");
}

Test(geometry, dilation_2_62_is_refused_naming_the_dilation) {
    tg_tensor *x = input("x", TG_SHAPE(1, 1, 4, 4), true), *w = input("w", TG_SHAPE(1, 1, 3, 3), false);
    expect_refused(conv2d_call(x, w, 1, 1, 0, 0, p62, 1), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "conv2d ('x' [1,1,4,4], 'w' [1,1,3,3])",
                      "height dilation 4611686018427387904 is too large for the kernel height 3");
}

Test(geometry, max_pool_kernel_int64_max_is_refused_naming_the_padding) {
    tg_tensor *x = input("x", TG_SHAPE(1, 1, 4, 4), true);
    tg_named_attr a[6] = {TG_I64("kernel_h", INT64_MAX), TG_I64("kernel_w", INT64_MAX),
                          TG_I64("stride_h", 1),         TG_I64("stride_w", 1),
                          TG_I64("pad_h", p62),          TG_I64("pad_w", p62)};
    expect_refused(tg_call(tape, "max_pool2d", &x, 1, a, 6), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "max_pool2d ('x' [1,1,4,4])",
                      "height padding 4611686018427387904 is too large (2 x padding overflows)");
    tg_clear_error(ctx);
    /* no padding: the kernel alone does not fit */
    expect_refused(pool_call("max_pool2d", x, INT64_MAX, 1, 0), TG_ERR_SHAPE);
    expect_errmsg_has(ctx, "output height would be < 1", "kernel extent 9223372036854775807");
}

Test(geometry, lenet_of_2_31_square_images_is_refused_naming_the_sizes) {
    tg_lenet_config c = {.channels = 1, .height = INT64_C(1) << 31, .width = INT64_C(1) << 31,
                         .classes = 10};
    cr_expect_null(tg_lenet_new(ctx, "l", &c));
    cr_expect_eq(tg_errcode(ctx), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "lenet 'l': height / 4 536870912 x width / 4 536870912 is more than 2^40");
}

Test(geometry, an_output_of_zero_rows_is_refused_before_any_division) {
    tg_tensor *x = input("x", TG_SHAPE(1, 1, 2, 4), true), *w = input("w", TG_SHAPE(1, 1, 3, 3), false);
    expect_refused(tg_conv2d(tape, x, w, NULL, NULL), TG_ERR_SHAPE);
    expect_errmsg_has(ctx, "conv2d ('x' [1,1,2,4], 'w' [1,1,3,3])", "output height would be < 1",
                      "input height 2 + 2 x padding 0 is smaller than the kernel extent 3");
}

/* ---- extreme but valid geometry runs forward, backward and a replay ------------------------ */

static void run_step(tg_tensor *y) {
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    tg_tensor *loss = tg_sum(tape, y);
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_tape_replay(tape), TG_OK, "%s", tg_errmsg(ctx));
}

Test(geometry, stride_int64_max_takes_one_window) {
    tg_tensor *x = input("x", TG_SHAPE(1, 1, 4, 4), true), *w = input("w", TG_SHAPE(1, 1, 3, 3), false);
    tg_fill(x, 1.0f);
    tg_fill(w, 1.0f);
    tg_tensor *y = conv2d_call(x, w, INT64_MAX, INT64_MAX, 1, 1, 1, 1);
    run_step(y);
    cr_expect_eq(y->size, 1);
    cr_expect_float_eq(y->data[0], 4.0f, 1e-6f); /* the top-left window: 2x2 ones inside */
}

Test(geometry, a_dilation_far_past_the_image_reads_padding_only) {
    /* "same width" (the fast im2col path) with a tap 2^61 rows away: shift = 2^61 x W would
     * overflow if formed */
    tg_tensor *x = input("x", TG_SHAPE(1, 1, 1, 4), true), *w = input("w", TG_SHAPE(1, 1, 3, 1), false);
    tg_fill(x, 2.0f);
    tg_fill(w, 1.0f);
    int64_t p61 = INT64_C(1) << 61;
    tg_tensor *y = conv2d_call(x, w, 1, 1, p61, 0, p61, 1);
    run_step(y);
    cr_assert_eq(y->shape[2], 1);
    cr_assert_eq(y->shape[3], 4);
    for (int i = 0; i < 4; i++) cr_expect_float_eq(y->data[i], 2.0f, 1e-6f); /* the middle tap */
    for (int i = 0; i < 4; i++) cr_expect_float_eq(x->grad[i], 1.0f, 1e-6f);
}

Test(geometry, a_pooling_kernel_of_2_62_averages_over_its_whole_area) {
    tg_tensor *x = input("x", TG_SHAPE(1, 1, 2, 2), true);
    tg_fill(x, 1.0f);
    int64_t k = p62, pad = INT64_C(1) << 61; /* kh x kw = 2^124 overflows int64 */
    tg_tensor *y = pool_call("avg_pool2d", x, k, 1, pad);
    run_step(y);
    cr_assert_eq(y->shape[2], 3);
    cr_expect(y->data[0] > 0.0f && y->data[0] < 1e-30f, "%g", (double)y->data[0]);
    tg_tape_reset(tape);
    x = input("x2", TG_SHAPE(1, 1, 2, 2), true);
    run_step(pool_call("max_pool2d", x, k, INT64_MAX, pad));
}

Test(geometry, conv1d_padding_2_62_is_refused) {
    tg_tensor *x = input("x", TG_SHAPE(1, 1, 4), true), *w = input("w", TG_SHAPE(1, 1, 3), false);
    tg_named_attr a[4] = {TG_I64("stride", 1), TG_I64("pad", p62), TG_I64("dilation", 1),
                          TG_I64("groups", 1)};
    tg_tensor *in[2] = {x, w};
    expect_refused(tg_call(tape, "conv1d", in, 2, a, 4), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "conv1d ('x' [1,1,4], 'w' [1,1,3])", "length padding 4611686018427387904");
}

/* ---- layer constructors -------------------------------------------------------------------- */

Test(geometry, layer_widths_of_2_62_are_refused_naming_the_layer_and_field) {
    tg_rnn_config rc = tg_rnn_defaults(TG_RNN_LSTM, 3, p62);
    cr_expect_null(tg_rnn_new(ctx, "r", &rc));
    expect_errmsg_has(ctx, "rnn 'r': gates 4 x hidden 4611686018427387904 is more than 2^40");
    tg_clear_error(ctx);
    tg_mha_config mc = tg_mha_defaults(p62, 1);
    cr_expect_null(tg_mha_new(ctx, "a", &mc));
    expect_errmsg_has(ctx, "attention 'a': embed_dim 4611686018427387904 x projections");
    tg_clear_error(ctx);
    tg_transformer_config tc = {.d_model = p62, .n_heads = 1};
    cr_expect_null(tg_transformer_block_new(ctx, "b", &tc));
    expect_errmsg_has(ctx, "transformer block 'b': d_model 4611686018427387904 x the MLP's factor 4");
    tg_clear_error(ctx);
    tg_resnet_config res = {.channels = 1, .classes = 2, .depth = 8, .width = p62};
    cr_expect_null(tg_resnet_new(ctx, "res", &res));
    expect_errmsg_has(ctx, "resnet 'res': width 4611686018427387904 x stage 3's factor 4");
    tg_clear_error(ctx);
    tg_gpt_config gc = {.vocab = 5, .block_size = 4, .d_model = p62, .n_heads = 1, .n_layers = 1};
    cr_expect_null(tg_gpt_new(ctx, "g", &gc));
    expect_errmsg_has(ctx, "4611686018427387904");
}

Test(geometry, parameters_beyond_2_40_elements_are_refused_by_name) {
    int64_t big = INT64_C(1) << 40;
    cr_expect_null(tg_linear_new(ctx, "fc", big, big, true, NULL, 1));
    cr_expect_eq(tg_errcode(ctx), TG_ERR_SHAPE);
    expect_errmsg_has(ctx, "parameter 'fc.weight'", "[1099511627776,1099511627776]", "2^40");
    tg_clear_error(ctx);
    cr_expect_null(tg_embedding_new(ctx, "emb", INT64_MAX, INT64_MAX, NULL, 1));
    expect_errmsg_has(ctx, "parameter 'emb.weight'", "[9223372036854775807,9223372036854775807]");
}

/* ---- tensor creation ----------------------------------------------------------------------- */

Test(geometry, tensor_dims_whose_product_overflows_are_refused) {
    cr_expect_null(tg_zeros(ctx, TG_SHAPE(INT64_C(1) << 32, INT64_C(1) << 32)));
    cr_expect_eq(tg_errcode(ctx), TG_ERR_SHAPE);
    expect_errmsg_has(ctx, "invalid shape [4294967296,4294967296]", "at most 2^40 elements");
    tg_clear_error(ctx);
    cr_expect_null(tg_tape_zeros(tape, TG_SHAPE(INT64_MAX, INT64_MAX, 2, 2)));
    expect_errmsg_has(ctx, "invalid shape [9223372036854775807,9223372036854775807,2,2]");
    tg_clear_error(ctx);
    cr_expect_null(tg_zeros(ctx, TG_SHAPE(3, INT64_C(1) << 62, 4)));
    expect_errmsg_has(ctx, "invalid shape [3,4611686018427387904,4]");
    tg_clear_error(ctx);
    /* exactly 2^40 elements is the limit, not an overflow: refused only past it */
    cr_expect_null(tg_reshape(tape, input("v", TG_SHAPE(4), true), TG_SHAPE(INT64_C(1) << 20,
                                                                      INT64_C(1) << 21)));
    expect_errmsg_has(ctx, "reshape");
}
