/* tests/test_misuse.c — every public function of tapegrad.h called with NULL handles and NULL
 * pointers: each returns its documented value (an error status, NULL, 0, NaN, false or a fixed
 * string, see the header's introduction) and leaves a message when a context can hold one.
 *
 * MISUSE(fn) defines the test of fn and registers fn's name before main runs; the last test
 * reads include/tapegrad.h and fails for every declared function no MISUSE covers, so a new
 * public function cannot go without one. Stale tensors have their own suite (test_stale.c). */
#include "misuse.h"

/* ---- the registry of covered names ------------------------------------------------------- */

#define MAX_COVERED 512
static const char *covered[MAX_COVERED];
static int n_covered;

void misuse_cover(const char *name) {
    if (n_covered < MAX_COVERED) covered[n_covered++] = name;
}

/* ---- the world ---------------------------------------------------------------------------- */

misuse_world W;

void world_setup(void) {
    W.ctx = tg_ctx_new();
    W.other = tg_ctx_new();
    cr_assert(W.ctx && W.other);
    W.tape = tg_tape_new(W.ctx);
    W.w = tg_set_label(tg_full(W.ctx, TG_SHAPE(3), 0.5f), "w");
    cr_assert(W.tape && W.w && tg_set_requires_grad(W.w, true) == TG_OK);
    W.x = tg_tape_from_data(W.tape, TG_SHAPE(3), (float[]){1, -2, 3});
    W.foreign = tg_ones(W.other, TG_SHAPE(3));
    W.linear = tg_linear_new(W.ctx, "lin", 3, 2, true, NULL, 1);
    W.rec = tg_recorder_new(W.ctx, 4);
    tg_optimizer_config oc = {.kind = TG_OPT_SGD, .lr = 0.1f};
    W.opt = tg_optimizer_new(W.ctx, &W.w, 1, &oc);
    W.ds = tg_dataset_spirals(W.ctx, 8, 0.0f, 1);
    cr_assert(W.x && W.foreign && W.linear && W.rec && W.opt && W.ds, "%s", tg_errmsg(W.ctx));
}

void world_teardown(void) {
    tg_dataset_free(W.ds);
    tg_optimizer_free(W.opt);
    tg_recorder_free(W.rec);
    tg_module_free(W.linear);
    tg_tape_free(W.tape);
    tg_ctx_free(W.other);
    tg_ctx_free(W.ctx);
}

/* ---- status, backend, context ------------------------------------------------------------ */

MISUSE(tg_status_name) { GIVES_TEXT(tg_status_name((tg_status)1234)); }
MISUSE(tg_status_str) { GIVES_TEXT(tg_status_str((tg_status)1234)); }
MISUSE(tg_gemm_backend) { GIVES_TEXT(tg_gemm_backend()); }
MISUSE(tg_gemm_choice) {
    const char *kernels = NULL; /* nonsense dims still fall in a class: a name, never NULL */
    GIVES(tg_gemm_choice(true, -5, 0, INT64_MAX, &kernels), tg_gemm_choice(false, 1, 1, 1, NULL));
    GIVES_TEXT(kernels);
}
MISUSE(tg_ctx_new) {
    tg_ctx *c = tg_ctx_new();
    cr_expect_not_null(c);
    tg_ctx_free(c);
}
MISUSE(tg_ctx_new_with_allocator) { NULLED_QUIETLY(tg_ctx_new_with_allocator(NULL, NULL)); }
MISUSE(tg_ctx_free) { tg_ctx_free(NULL); }
MISUSE(tg_errmsg) { GIVES_TEXT(tg_errmsg(NULL)); }
MISUSE(tg_errcode) { GIVES(tg_errcode(NULL), TG_ERR_INVALID); }
MISUSE(tg_clear_error) { tg_clear_error(NULL); }
MISUSE(tg_ctx_bytes_persistent) { GIVES(tg_ctx_bytes_persistent(NULL), 0); }
MISUSE(tg_ctx_set_threads) { GIVES(tg_ctx_set_threads(NULL, 1), TG_ERR_INVALID); }
MISUSE(tg_ctx_threads) { GIVES(tg_ctx_threads(NULL), 0); }
MISUSE(tg_ctx_threads_calibrate) { GIVES(tg_ctx_threads_calibrate(NULL), TG_ERR_INVALID); }
MISUSE(tg_ctx_set_threads_backoff) { GIVES(tg_ctx_set_threads_backoff(NULL, false), TG_ERR_INVALID); }
MISUSE(tg_ctx_threads_backed_off) { GIVES(tg_ctx_threads_backed_off(NULL), false); }
MISUSE(tg_ctx_threads_describe) {
    char said[32];
    cr_expect_gt(tg_ctx_threads_describe(NULL, said, sizeof said), 0);
    cr_expect_eq(tg_ctx_threads_describe(NULL, NULL, 0), (int)strlen(said), "NULL buffer: the length only");
}
MISUSE(tg_ctx_set_flush_denormals) { GIVES(tg_ctx_set_flush_denormals(NULL, true), TG_ERR_INVALID); }
MISUSE(tg_ctx_flush_denormals) { GIVES(tg_ctx_flush_denormals(NULL), false); }

/* ---- tensors --------------------------------------------------------------------------------- */

MISUSE(tg_zeros) {
    NULLED_QUIETLY(tg_zeros(NULL, TG_SHAPE(3)));
    NULLED(tg_zeros(W.ctx, 2, NULL));
}
MISUSE(tg_ones) {
    NULLED_QUIETLY(tg_ones(NULL, TG_SHAPE(3)));
    NULLED(tg_ones(W.ctx, 1, NULL));
}
MISUSE(tg_full) {
    NULLED_QUIETLY(tg_full(NULL, TG_SHAPE(3), 1.0f));
    NULLED(tg_full(W.ctx, 1, NULL, 1.0f));
}
MISUSE(tg_from_data) {
    NULLED_QUIETLY(tg_from_data(NULL, TG_SHAPE(1), (float[]){1}));
    NULLED(tg_from_data(W.ctx, 1, NULL, (float[]){1}));
    tg_tensor *zeros = tg_from_data(W.ctx, TG_SHAPE(2), NULL); /* documented: zeros */
    cr_expect(zeros && zeros->data[0] == 0.0f && zeros->data[1] == 0.0f);
}
MISUSE(tg_scalar) { NULLED_QUIETLY(tg_scalar(NULL, 1.0f)); }
MISUSE(tg_tape_zeros) {
    NULLED_QUIETLY(tg_tape_zeros(NULL, TG_SHAPE(3)));
    NULLED(tg_tape_zeros(W.tape, 1, NULL));
}
MISUSE(tg_tape_from_data) {
    NULLED_QUIETLY(tg_tape_from_data(NULL, TG_SHAPE(1), (float[]){1}));
    NULLED(tg_tape_from_data(W.tape, 1, NULL, (float[]){1}));
}
MISUSE(tg_fill) { tg_fill(NULL, 1.0f); }
MISUSE(tg_fill_uniform) { tg_fill_uniform(NULL, 0.0f, 1.0f, 1); }
MISUSE(tg_fill_normal) { tg_fill_normal(NULL, 0.0f, 1.0f, 1); }
MISUSE(tg_copy_in) {
    REFUSED_QUIETLY(tg_copy_in(NULL, (float[]){1, 2, 3}, 3));
    REFUSED(tg_copy_in(W.w, NULL, 3));
}
MISUSE(tg_set_label) {
    NULLED_QUIETLY(tg_set_label(NULL, "x"));
    NULLED(tg_set_label(W.w, NULL));
    cr_expect_str_eq(W.w->label, "w", "a refused label changed the old one");
}
MISUSE(tg_tensor_name) { cr_expect_str_eq(tg_tensor_name(NULL), "(null)"); }
MISUSE(tg_shape_str) {
    char buf[64] = "untouched";
    cr_expect_eq(tg_shape_str(NULL, buf, sizeof buf), buf);
    cr_expect_str_eq(buf, "(null)");
    cr_expect_null(tg_shape_str(W.w, NULL, 64));
    cr_expect_eq(tg_shape_str(W.w, buf, 0), buf);
}
MISUSE(tg_set_requires_grad) { GIVES(tg_set_requires_grad(NULL, true), TG_ERR_INVALID); }
MISUSE(tg_zero_grad) { tg_zero_grad(NULL); }
MISUSE(tg_tensor_op_name) { cr_expect_str_eq(tg_tensor_op_name(NULL), "(null)"); }

/* ---- tape ------------------------------------------------------------------------------------ */

MISUSE(tg_tape_new) { NULLED_QUIETLY(tg_tape_new(NULL)); }
MISUSE(tg_tape_free) { tg_tape_free(NULL); }
MISUSE(tg_tape_reset) { tg_tape_reset(NULL); }
MISUSE(tg_tape_replay) {
    GIVES(tg_tape_replay(NULL), TG_ERR_INVALID);
    GIVES(tg_tape_replay(W.tape), TG_ERR_STATE); /* the world's tape has recorded nothing */
}
MISUSE(tg_tape_ctx) { NULLED_QUIETLY(tg_tape_ctx(NULL)); }
MISUSE(tg_tape_entries) { GIVES(tg_tape_entries(NULL), 0); }
MISUSE(tg_tape_step) { GIVES(tg_tape_step(NULL), 0); }
MISUSE(tg_tape_set_step) { tg_tape_set_step(NULL, 5); }
MISUSE(tg_tape_bytes_in_use) { GIVES(tg_tape_bytes_in_use(NULL), 0); }
MISUSE(tg_tape_bytes_peak) { GIVES(tg_tape_bytes_peak(NULL), 0); }
MISUSE(tg_tape_bytes_reserved) { GIVES(tg_tape_bytes_reserved(NULL), 0); }
MISUSE(tg_tape_label_next) {
    tg_tape_label_next(NULL, "x");
    tg_clear_error(W.ctx);
    tg_tape_label_next(W.tape, NULL);
    expect_message("tg_tape_label_next(tape, NULL)");
}
MISUSE(tg_no_grad_begin) { tg_no_grad_begin(NULL); }
MISUSE(tg_no_grad_end) { tg_no_grad_end(NULL); }
MISUSE(tg_grad_enabled) { GIVES(tg_grad_enabled(NULL), false); }
MISUSE(tg_backward) {
    tg_tensor *loss = tg_sum(W.tape, tg_mul(W.tape, W.w, W.w));
    REFUSED_QUIETLY(tg_backward(NULL, loss));
    REFUSED(tg_backward(W.tape, NULL));
}
MISUSE(tg_backward_with) {
    tg_tensor *y = tg_mul(W.tape, W.w, W.w);
    REFUSED_QUIETLY(tg_backward_with(NULL, y, (float[]){1, 1, 1}));
    REFUSED(tg_backward_with(W.tape, NULL, (float[]){1, 1, 1}));
    REFUSED(tg_backward_with(W.tape, y, NULL));
}

/* ---- ops: a NULL tape, each NULL input, and an input of another context ----------------- */

#define UNARY(fn) MISUSE(fn) { UNARY_MISUSE(fn(tape_, x_)); }
#define UNARY_F32(fn, value) MISUSE(fn) { UNARY_MISUSE(fn(tape_, x_, value)); }

/* every tensor argument in turn NULL, then of another context */
static void each_input_refused(tg_tensor *(*call)(tg_tensor **inputs), int n) {
    tg_tensor *inputs[8];
    for (int bad = 0; bad < n; bad++)
        for (int kind = 0; kind < 2; kind++) {
            for (int i = 0; i < n; i++) inputs[i] = W.w;
            inputs[bad] = kind ? W.foreign : NULL;
            tg_clear_error(W.ctx);
            cr_expect_null(call(inputs), "input %d %s accepted", bad, kind ? "of another context" : "NULL");
            expect_message("an op with a bad input");
        }
}

#define BINARY(fn)                                                                              \
    static tg_tensor *call_##fn(tg_tensor **in) { return fn(W.tape, in[0], in[1]); }            \
    MISUSE(fn) {                                                                                \
        NULLED_QUIETLY(fn(NULL, W.w, W.w));                                                     \
        each_input_refused(call_##fn, 2);                                                       \
    }

BINARY(tg_add)
BINARY(tg_sub)
BINARY(tg_mul)
BINARY(tg_div)
BINARY(tg_matmul)
BINARY(tg_mse)
BINARY(tg_cross_entropy)
BINARY(tg_bce_with_logits)
UNARY(tg_neg)
UNARY_F32(tg_scale, 2.0f)
UNARY_F32(tg_add_scalar, 2.0f)
UNARY_F32(tg_pow, 2.0f)
UNARY(tg_square)
UNARY(tg_sqrt)
UNARY(tg_exp)
UNARY(tg_log)
UNARY(tg_abs)
UNARY(tg_sum)
UNARY(tg_mean)
UNARY(tg_sigmoid)
UNARY(tg_tanh)
UNARY(tg_relu)
UNARY_F32(tg_leaky_relu, 0.1f)
UNARY_F32(tg_elu, 1.0f)
UNARY(tg_softplus)
UNARY(tg_gelu)
UNARY(tg_softmax)
UNARY(tg_log_softmax)
MISUSE(tg_dropout) { UNARY_MISUSE(tg_dropout(tape_, x_, 0.5f, 1)); }
MISUSE(tg_transpose) { UNARY_MISUSE(tg_transpose(tape_, x_, 0, 0)); }
MISUSE(tg_slice) { UNARY_MISUSE(tg_slice(tape_, x_, 0, 0, 1)); }
MISUSE(tg_sum_axis) { UNARY_MISUSE(tg_sum_axis(tape_, x_, 0, false)); }
MISUSE(tg_mean_axis) { UNARY_MISUSE(tg_mean_axis(tape_, x_, 0, true)); }
UNARY(tg_sin)
UNARY(tg_cos)
MISUSE(tg_softmax_axis) { UNARY_MISUSE(tg_softmax_axis(tape_, x_, 0)); }
MISUSE(tg_log_softmax_axis) { UNARY_MISUSE(tg_log_softmax_axis(tape_, x_, -1)); }
MISUSE(tg_clamp) { UNARY_MISUSE(tg_clamp(tape_, x_, -1.0f, 1.0f)); }
MISUSE(tg_max_axis) { UNARY_MISUSE(tg_max_axis(tape_, x_, 0, false)); }
MISUSE(tg_argmax_axis) { UNARY_MISUSE(tg_argmax_axis(tape_, x_, 0, true)); }
MISUSE(tg_permute) {
    UNARY_MISUSE(tg_permute(tape_, x_, TG_SHAPE(0)));
    NULLED(tg_permute(W.tape, W.w, 1, NULL));
}
BINARY(tg_embedding)
static tg_tensor *call_masked_fill(tg_tensor **in) { return tg_masked_fill(W.tape, in[0], in[1], 0); }
MISUSE(tg_masked_fill) {
    NULLED_QUIETLY(tg_masked_fill(NULL, W.w, W.w, 0));
    each_input_refused(call_masked_fill, 2);
}
MISUSE(tg_reshape) {
    UNARY_MISUSE(tg_reshape(tape_, x_, TG_SHAPE(3, 1)));
    NULLED(tg_reshape(W.tape, W.w, 2, NULL));
}
MISUSE(tg_concat) {
    tg_tensor *pair[2] = {W.w, NULL};
    NULLED_QUIETLY(tg_concat(NULL, pair, 1, 0));
    NULLED(tg_concat(W.tape, NULL, 2, 0));
    NULLED(tg_concat(W.tape, pair, 2, 0));
    pair[1] = W.foreign;
    NULLED(tg_concat(W.tape, pair, 2, 0));
}
static tg_tensor *call_linear(tg_tensor **in) { return tg_linear(W.tape, in[0], in[1], in[2]); }
MISUSE(tg_linear) {
    NULLED_QUIETLY(tg_linear(NULL, W.w, W.w, W.w));
    each_input_refused(call_linear, 3);
}
static tg_tensor *call_batch_norm(tg_tensor **in) {
    return tg_batch_norm(W.tape, in[0], in[1], in[2], in[3], in[4], 0.1f, 1e-5f, true);
}
MISUSE(tg_batch_norm) {
    NULLED_QUIETLY(tg_batch_norm(NULL, W.w, W.w, W.w, W.w, W.w, 0.1f, 1e-5f, true));
    each_input_refused(call_batch_norm, 5);
}
static tg_tensor *call_batch_norm_relu(tg_tensor **in) {
    return tg_batch_norm_relu(W.tape, in[0], in[1], in[2], in[3], in[4], NULL, 0.1f, 1e-5f, true);
}
MISUSE(tg_batch_norm_relu) {
    NULLED_QUIETLY(tg_batch_norm_relu(NULL, W.w, W.w, W.w, W.w, W.w, W.w, 0.1f, 1e-5f, true));
    each_input_refused(call_batch_norm_relu, 5);
    NULLED(tg_batch_norm_relu(W.tape, W.w, W.w, W.w, W.w, W.w, W.foreign, 0.1f, 1e-5f, true));
}
static tg_tensor *call_layer_norm(tg_tensor **in) { return tg_layer_norm(W.tape, in[0], in[1], in[2], 1e-5f); }
MISUSE(tg_layer_norm) {
    NULLED_QUIETLY(tg_layer_norm(NULL, W.w, W.w, W.w, 1e-5f));
    each_input_refused(call_layer_norm, 3);
}

/* convolution and pooling */
static tg_tensor *call_conv2d(tg_tensor **in) { return tg_conv2d(W.tape, in[0], in[1], NULL, NULL); }
MISUSE(tg_conv2d) {
    NULLED_QUIETLY(tg_conv2d(NULL, W.w, W.w, NULL, NULL));
    each_input_refused(call_conv2d, 2);
}
static tg_tensor *call_conv1d(tg_tensor **in) { return tg_conv1d(W.tape, in[0], in[1], NULL, 1, 0, 1, 1); }
MISUSE(tg_conv1d) {
    NULLED_QUIETLY(tg_conv1d(NULL, W.w, W.w, NULL, 1, 0, 1, 1));
    each_input_refused(call_conv1d, 2);
}
MISUSE(tg_max_pool2d) {
    UNARY_MISUSE(tg_max_pool2d(tape_, x_, 2, 2, 0, 0, 0, 0));
}
MISUSE(tg_avg_pool2d) {
    UNARY_MISUSE(tg_avg_pool2d(tape_, x_, 2, 2, 0, 0, 0, 0));
}
MISUSE(tg_global_avg_pool2d) {
    UNARY_MISUSE(tg_global_avg_pool2d(tape_, x_));
}
MISUSE(tg_flatten) {
    UNARY_MISUSE(tg_flatten(tape_, x_));
}

/* ---- the registry ------------------------------------------------------------------------ */

MISUSE(tg_op_register) {
    tg_op_def def = {"misuse_op", 1, "", infer_like, forward_noop, NULL, NULL, NULL, NULL};
    GIVES(tg_op_register(NULL, &def), -1);
    tg_clear_error(W.ctx);
    GIVES(tg_op_register(W.ctx, NULL), -1);
    expect_message("tg_op_register(ctx, NULL)");
    def.name = NULL;
    GIVES(tg_op_register(W.ctx, &def), -1);
    expect_message("tg_op_register with a NULL name");
}
MISUSE(tg_op_find) {
    GIVES(tg_op_find(NULL, "add"), -1);
    GIVES(tg_op_find(W.ctx, NULL), -1);
}
MISUSE(tg_op_count) { GIVES(tg_op_count(NULL), 0); }
MISUSE(tg_op_get_info) {
    tg_op_info info;
    REFUSED_QUIETLY(tg_op_get_info(NULL, 0, &info));
    REFUSED_QUIETLY(tg_op_get_info(W.ctx, 0, NULL));
}
MISUSE(tg_call_id) {
    int add = tg_op_find(W.ctx, "add");
    tg_tensor *pair[2] = {W.w, W.foreign};
    NULLED_QUIETLY(tg_call_id(NULL, add, pair, 2, NULL, 0));
    NULLED(tg_call_id(W.tape, add, NULL, 2, NULL, 0));
    NULLED(tg_call_id(W.tape, add, pair, 2, NULL, 0));
    pair[1] = NULL;
    NULLED(tg_call_id(W.tape, add, pair, 2, NULL, 0));
}
MISUSE(tg_op_save_for_backward) {
    NULLED_QUIETLY(tg_op_save_for_backward(NULL, 8));
    tg_op_call call = {0};
    NULLED_QUIETLY(tg_op_save_for_backward(&call, 8));
}
MISUSE(tg_op_fail) {
    GIVES(tg_op_fail(NULL, TG_ERR_SHAPE, "x"), TG_ERR_SHAPE);
    tg_op_call call = {.tape = W.tape, .op_name = "op"};
    tg_clear_error(W.ctx);
    GIVES(tg_op_fail(&call, TG_ERR_SHAPE, NULL), TG_ERR_SHAPE);
    expect_message("tg_op_fail(call, status, NULL)");
}

/* ---- hooks ------------------------------------------------------------------------------- */

MISUSE(tg_hook_grad) {
    GIVES(tg_hook_grad(NULL, ok_hook, NULL), -1);
    tg_clear_error(W.ctx);
    GIVES(tg_hook_grad(W.w, NULL, NULL), -1);
    expect_message("tg_hook_grad(t, NULL, NULL)");
}
MISUSE(tg_hook_params) {
    GIVES(tg_hook_params(NULL, "*", ok_hook, NULL), -1);
    tg_clear_error(W.ctx);
    GIVES(tg_hook_params(W.ctx, NULL, ok_hook, NULL), -1);
    expect_message("tg_hook_params(ctx, NULL, ...)");
    GIVES(tg_hook_params(W.ctx, "*", NULL, NULL), -1);
    expect_message("tg_hook_params(ctx, \"*\", NULL, NULL)");
}
MISUSE(tg_hook_pattern) {
    GIVES(tg_hook_pattern(NULL, "*", TG_PASS_BACKWARD, ok_hook, NULL), -1);
    tg_clear_error(W.ctx);
    GIVES(tg_hook_pattern(W.ctx, NULL, TG_PASS_BACKWARD, ok_hook, NULL), -1);
    expect_message("tg_hook_pattern(ctx, NULL, ...)");
    GIVES(tg_hook_pattern(W.ctx, "*", TG_PASS_BACKWARD, NULL, NULL), -1);
    expect_message("tg_hook_pattern(ctx, \"*\", pass, NULL, NULL)");
}
MISUSE(tg_hook_global) {
    GIVES(tg_hook_global(NULL, TG_PASS_BACKWARD, ok_hook, NULL), -1);
    tg_clear_error(W.ctx);
    GIVES(tg_hook_global(W.ctx, TG_PASS_BACKWARD, NULL, NULL), -1);
    expect_message("tg_hook_global(ctx, pass, NULL, NULL)");
}
MISUSE(tg_hook_remove) { GIVES(tg_hook_remove(NULL, 1), TG_ERR_INVALID); }
MISUSE(tg_hook_count) { GIVES(tg_hook_count(NULL), 0); }
MISUSE(tg_pattern_match) {
    GIVES(tg_pattern_match(NULL, "x"), false);
    GIVES(tg_pattern_match("*", NULL), false);
}
MISUSE(tg_hook_fail) {
    tg_hook_event event = {TG_PASS_BACKWARD, W.w, "w", "leaf", 0, W.w->data, 3};
    GIVES(tg_hook_fail(NULL, &event, TG_ERR_NUMERIC, "x"), TG_ERR_NUMERIC);
    tg_clear_error(W.ctx);
    GIVES(tg_hook_fail(W.ctx, NULL, TG_ERR_NUMERIC, "x"), TG_ERR_NUMERIC);
    expect_message("tg_hook_fail(ctx, NULL, ...)");
    GIVES(tg_hook_fail(W.ctx, &event, TG_ERR_NUMERIC, NULL), TG_ERR_NUMERIC);
    expect_message("tg_hook_fail(ctx, event, status, NULL)");
}
MISUSE(tg_set_anomaly_mode) { tg_set_anomaly_mode(NULL, true); }
MISUSE(tg_anomaly_mode) { GIVES(tg_anomaly_mode(NULL), false); }
MISUSE(tg_set_anomaly_level) {
    GIVES(tg_set_anomaly_level(NULL, TG_ANOMALY_FULL), TG_ERR_INVALID);
    REFUSED(tg_set_anomaly_level(W.ctx, (tg_anomaly_level)7));
}
MISUSE(tg_get_anomaly_level) { GIVES(tg_get_anomaly_level(NULL), TG_ANOMALY_OFF); }
MISUSE(tg_count_values) {
    tg_value_counts c;
    memset(&c, 0x55, sizeof c);
    tg_count_values(NULL, 4, &c);
    cr_expect(c.count == 0 && c.nan == 0 && c.zero == 0, "NULL values: not all zero");
    tg_count_values((float[]){1, 2}, -1, &c);
    cr_expect_eq(c.count, 0);
    tg_count_values((float[]){1, 2}, 2, NULL);
}
MISUSE(tg_anomaly_last) {
    tg_anomaly_report r;
    GIVES(tg_anomaly_last(NULL, &r), TG_ERR_INVALID);
    REFUSED(tg_anomaly_last(W.ctx, NULL));
    GIVES(tg_anomaly_last(W.ctx, &r), TG_ERR_NOT_FOUND); /* no stop yet */
}
MISUSE(tg_set_anomaly_dump) {
    GIVES(tg_set_anomaly_dump(NULL, "x.safetensors"), TG_ERR_INVALID);
    GIVES(tg_set_anomaly_dump(W.ctx, NULL), TG_OK); /* NULL: no dumps */
}
MISUSE(tg_anomaly_step_counts) {
    tg_anomaly_counts c;
    GIVES(tg_anomaly_step_counts(NULL, &c), TG_ERR_INVALID);
    REFUSED(tg_anomaly_step_counts(W.ctx, NULL));
}

/* ---- diagnostics --------------------------------------------------------------------------- */

MISUSE(tg_stats_compute) {
    tg_stats s;
    memset(&s, 0x55, sizeof s);
    tg_stats_compute(NULL, 5, &s);
    cr_expect(s.count == 0 && s.l2_norm == 0.0 && s.n_nan == 0, "NULL values: not the empty statistics");
    tg_stats_compute((float[]){1, 2}, -3, &s);
    cr_expect_eq(s.count, 0);
    tg_stats_compute((float[]){1, 2}, 2, NULL);
}
MISUSE(tg_activation_stats_compute) {
    tg_activation_stats a = {.saturated_fraction = 5, .dead_fraction = 5};
    tg_activation_stats_compute(NULL, &a);
    cr_expect(a.saturated_fraction == -1.0 && a.dead_fraction == -1.0);
    tg_activation_stats_compute(W.w, NULL);
}
static void clip_hook_misuse(tg_hook_fn hook) {
    float limit = 1.0f;
    tg_hook_event event = {TG_PASS_BACKWARD, W.w, "w", "leaf", 0, W.w->data, 3};
    REFUSED(hook(W.ctx, NULL, &limit));
    REFUSED(hook(W.ctx, &event, NULL));
    REFUSED_QUIETLY(hook(NULL, NULL, NULL));
}
MISUSE(tg_hook_clip_value) { clip_hook_misuse(tg_hook_clip_value); }
MISUSE(tg_hook_clip_norm) { clip_hook_misuse(tg_hook_clip_norm); }
MISUSE(tg_clip_grad_norm) {
    double total;
    GIVES(tg_clip_grad_norm(NULL, 3, 1.0, 2.0, false, &total), TG_ERR_INVALID);
    GIVES(tg_clip_grad_norm(&W.w, -2, 1.0, 2.0, false, &total), TG_ERR_INVALID);
    GIVES(tg_clip_grad_norm(&W.w, 1, 1.0, 2.0, false, NULL), TG_OK); /* total_norm is optional */
}
MISUSE(tg_recorder_attach_params) {
    GIVES(tg_recorder_attach_params(NULL, "*"), -1);
    GIVES(tg_recorder_attach_params(W.rec, NULL), -1);
    expect_message("tg_recorder_attach_params(rec, NULL)");
}
MISUSE(tg_recorder_add_tensor) {
    GIVES(tg_recorder_add_tensor(NULL, 0, W.w), TG_ERR_INVALID);
    REFUSED(tg_recorder_add_tensor(W.rec, 0, NULL));
    cr_expect_eq(tg_recorder_add_tensor(W.rec, 0, W.w), TG_OK, "no gradient yet: zero statistics");
}
MISUSE(tg_recorder_add_loss) {
    GIVES(tg_recorder_add_loss(NULL, 0, 1.0), TG_ERR_INVALID);
    cr_expect_eq(tg_recorder_add_loss(W.rec, 3, 1.0), TG_OK);
    REFUSED(tg_recorder_add_loss(W.rec, 2, 1.0)); /* steps go forward */
}
MISUSE(tg_recorder_add_anomaly) {
    tg_anomaly_report r = {0};
    GIVES(tg_recorder_add_anomaly(NULL, 0, &r), TG_ERR_INVALID);
    REFUSED(tg_recorder_add_anomaly(W.rec, 0, NULL));
}
MISUSE(tg_recorder_series_is_param) {
    GIVES(tg_recorder_series_is_param(NULL, 0), false);
    GIVES(tg_recorder_series_is_param(W.rec, 5), false);
}
MISUSE(tg_recorder_value_norms) {
    double norms[2];
    GIVES(tg_recorder_value_norms(NULL, 0, norms, 2), 0);
    GIVES(tg_recorder_value_norms(W.rec, 0, NULL, 2), 0);
    GIVES(tg_recorder_value_norms(W.rec, 0, norms, -1), 0);
}
MISUSE(tg_histogram_edge) {
    GIVES_NAN(tg_histogram_edge(-1));
    GIVES_NAN(tg_histogram_edge(TG_HIST_BINS + 1));
}
MISUSE(tg_histogram_compute) {
    tg_histogram h;
    memset(&h, 0x55, sizeof h);
    tg_histogram_compute(NULL, 3, 7, &h);
    cr_expect(h.step == 7 && h.zero == 0 && h.counts[0] == 0, "NULL values: an empty histogram");
    tg_histogram_compute((float[]){1}, 1, 0, NULL);
}
MISUSE(tg_recorder_histograms) {
    tg_histogram h[2];
    GIVES(tg_recorder_histograms(NULL, 0, h, 2), 0);
    GIVES(tg_recorder_histograms(W.rec, 0, h, -1), 0);
}
MISUSE(tg_guard_defaults) { cr_expect_gt(tg_guard_defaults().z_threshold, 0.0); }
MISUSE(tg_guard_new) {
    NULLED_QUIETLY(tg_guard_new(NULL, NULL));
    tg_guard_config bad = {.z_threshold = 6.0, .window = 1, .warmup = 1};
    NULLED(tg_guard_new(W.ctx, &bad));
}
MISUSE(tg_guard_free) { tg_guard_free(NULL); }
MISUSE(tg_guard_check) { GIVES(tg_guard_check(NULL, 0, NAN, NAN), TG_GUARD_ACCEPT); }
MISUSE(tg_grad_is_set) { GIVES(tg_grad_is_set(NULL), false); }
MISUSE(tg_guard_judge) { GIVES(tg_guard_judge(NULL, NAN, NAN), TG_GUARD_ACCEPT); }
MISUSE(tg_guard_commit) {
    GIVES(tg_guard_commit(NULL, 0, 1.0, 1.0, TG_GUARD_ACCEPT), TG_ERR_INVALID);
    tg_guard *g = tg_guard_new(W.ctx, NULL);
    REFUSED(tg_guard_commit(g, 0, NAN, 1.0, TG_GUARD_ACCEPT));
    REFUSED(tg_guard_commit(g, 0, 1.0, 1.0, (tg_guard_verdict)7));
    tg_guard_free(g);
}
MISUSE(tg_guard_attach) {
    tg_guard *g = tg_guard_new(W.ctx, NULL);
    tg_tensor *none = NULL;
    tg_optimizer_config oc = {.kind = TG_OPT_SGD, .lr = 0.1f};
    tg_optimizer *foreign = tg_optimizer_new(W.other, &W.foreign, 1, &oc);
    cr_assert(g && foreign);
    REFUSED_QUIETLY(tg_guard_attach(NULL, W.opt, NULL, 0));
    REFUSED(tg_guard_attach(g, NULL, NULL, 0));
    REFUSED(tg_guard_attach(g, foreign, NULL, 0));
    REFUSED(tg_guard_attach(g, W.opt, NULL, 1));
    REFUSED(tg_guard_attach(g, W.opt, &W.w, -1));
    REFUSED(tg_guard_attach(g, W.opt, &none, 1));
    REFUSED(tg_guard_attach(g, W.opt, &W.x, 1));       /* a tape tensor: gone at the next reset */
    REFUSED(tg_guard_attach(g, W.opt, &W.foreign, 1));
    cr_expect_eq(tg_guard_attach(g, W.opt, NULL, 0), TG_OK, "%s", tg_errmsg(W.ctx));
    cr_expect_eq(tg_guard_attach(g, W.opt, &W.w, 1), TG_OK, "attaching again replaces the copies");
    tg_optimizer_free(foreign);
    tg_guard_free(g);
}
MISUSE(tg_guard_on_event) { GIVES(tg_guard_on_event(NULL, NULL, NULL), TG_ERR_INVALID); }
MISUSE(tg_guard_event_text) {
    char buf[16];
    tg_guard_event e = {.kind = TG_GUARD_GROW, .step = 3, .lr_before = 0.25, .lr_after = 0.5};
    REFUSED_QUIETLY(tg_guard_event_text(NULL, buf, sizeof buf));
    REFUSED_QUIETLY(tg_guard_event_text(&e, NULL, sizeof buf));
    REFUSED_QUIETLY(tg_guard_event_text(&e, buf, 0));
    cr_expect_eq(tg_guard_event_text(&e, buf, sizeof buf), TG_OK);
    cr_expect_eq(strlen(buf), sizeof buf - 1, "cut to fit: %s", buf);
    e.kind = (tg_guard_event_kind)42;
    REFUSED_QUIETLY(tg_guard_event_text(&e, buf, sizeof buf));
}
MISUSE(tg_guard_get_stats) {
    tg_guard_stats s;
    GIVES(tg_guard_get_stats(NULL, &s), TG_ERR_INVALID);
    tg_guard *g = tg_guard_new(W.ctx, NULL);
    REFUSED(tg_guard_get_stats(g, NULL));
    tg_guard_free(g);
}
MISUSE(tg_recorder_new) { NULLED_QUIETLY(tg_recorder_new(NULL, 4)); }
MISUSE(tg_recorder_free) { tg_recorder_free(NULL); }
MISUSE(tg_recorder_attach) {
    GIVES(tg_recorder_attach(NULL, "*"), -1);
    tg_clear_error(W.ctx);
    GIVES(tg_recorder_attach(W.rec, NULL), -1);
    expect_message("tg_recorder_attach(rec, NULL)");
}
MISUSE(tg_recorder_add) {
    tg_stats s = {0};
    GIVES(tg_recorder_add(NULL, 0, "x", &s), TG_ERR_INVALID);
    REFUSED(tg_recorder_add(W.rec, 0, NULL, &s));
    REFUSED(tg_recorder_add(W.rec, 0, "x", NULL));
    cr_expect_eq(tg_recorder_add(W.rec, 0, "x", &s), TG_OK);
    REFUSED(tg_recorder_add(W.rec, 0, NULL, &s)); /* after a first series too */
    cr_expect_eq(tg_recorder_series_count(W.rec), 1);
}
MISUSE(tg_recorder_stream) { tg_recorder_stream(NULL, stdout, TG_FORMAT_CSV); }
MISUSE(tg_recorder_series_count) { GIVES(tg_recorder_series_count(NULL), 0); }
MISUSE(tg_recorder_series_name) { NULLED_QUIETLY(tg_recorder_series_name(NULL, 0)); }
MISUSE(tg_recorder_series) {
    int64_t steps[2];
    tg_stats stats[2];
    GIVES(tg_recorder_series(NULL, 0, steps, stats, 2), 0);
    tg_stats s = {0};
    cr_assert_eq(tg_recorder_add(W.rec, 0, "x", &s), TG_OK);
    GIVES(tg_recorder_series(W.rec, 0, steps, stats, -3), 0); /* a negative max copies nothing */
}
MISUSE(tg_recorder_global_norms) {
    int64_t steps[2];
    double norms[2];
    GIVES(tg_recorder_global_norms(NULL, steps, norms, 2), 0);
    tg_stats s = {0};
    cr_assert_eq(tg_recorder_add(W.rec, 0, "x", &s), TG_OK);
    GIVES(tg_recorder_global_norms(W.rec, steps, norms, -3), 0);
}
MISUSE(tg_recorder_first_last_ratio) { GIVES_NAN(tg_recorder_first_last_ratio(NULL)); }
MISUSE(tg_onset_defaults) { cr_expect_gt(tg_onset_defaults().jump_factor, 0.0); }
MISUSE(tg_detect_explosion) {
    tg_onset_report report;
    tg_detect_explosion(NULL, NULL, 3, NULL, &report);
    cr_expect(!report.exploded && !report.has_nan);
    tg_detect_explosion((int64_t[]){0, 1}, (double[]){1, 2}, 2, NULL, NULL);
}
MISUSE(tg_recorder_detect) {
    tg_onset_report report;
    GIVES(tg_recorder_detect(NULL, NULL, &report), TG_ERR_INVALID);
    REFUSED(tg_recorder_detect(W.rec, NULL, NULL));
}
MISUSE(tg_svg_line_plot) {
    tg_line_plot plot = {0};
    GIVES(tg_svg_line_plot(NULL, &plot), TG_ERR_INVALID);
    GIVES(tg_svg_line_plot(stdout, NULL), TG_ERR_INVALID);
    tg_plot_series s = {NULL, NULL, NULL, 3, 0};
    plot.series = &s;
    plot.n_series = 1;
    GIVES(tg_svg_line_plot(stdout, &plot), TG_ERR_INVALID);
}
MISUSE(tg_svg_heatmap) {
    tg_heatmap map = {0};
    GIVES(tg_svg_heatmap(NULL, &map), TG_ERR_INVALID);
    GIVES(tg_svg_heatmap(stdout, NULL), TG_ERR_INVALID);
    map.rows = map.cols = 2;
    GIVES(tg_svg_heatmap(stdout, &map), TG_ERR_INVALID);
}

/* ---- no public function without a case ----------------------------------------------------- */

/* The header: beside this file (tests/ and include/ are siblings), else from the build root,
 * where `zig build test` runs the suite. */
static FILE *open_header(void) {
    char path[4096];
    const char *file = __FILE__, *slash = strrchr(file, '/');
    if (slash && (size_t)(slash - file) < sizeof path - 32) {
        snprintf(path, sizeof path, "%.*s/../include/tapegrad.h", (int)(slash - file), file);
        FILE *f = fopen(path, "r");
        if (f) return f;
    }
    return fopen("include/tapegrad.h", "r");
}

static bool is_covered(const char *name) {
    for (int i = 0; i < n_covered; i++)
        if (strcmp(covered[i], name) == 0) return true;
    return false;
}

/* A declaration starts in column 0 with its return type (lower case, not a typedef) and names
 * one tg_ function: "tg_tensor *tg_add(tg_tape *tape, ...". Static inline helpers of the header
 * (the C++ tg_ref) are not library functions. */
static bool declared_name(const char *line, char *name, size_t size) {
    if (!(line[0] >= 'a' && line[0] <= 'z') || strncmp(line, "typedef", 7) == 0 ||
        strncmp(line, "static", 6) == 0)
        return false;
    for (const char *p = strstr(line, "tg_"); p; p = strstr(p + 1, "tg_")) {
        if (p > line && (p[-1] == '_' || (p[-1] >= 'a' && p[-1] <= 'z'))) continue;
        size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_");
        if (p[n] == '(' && n < size) {
            memcpy(name, p, n);
            name[n] = '\0';
            return true;
        }
    }
    return false;
}

Test(misuse, every_function_of_the_header_has_a_case) {
    FILE *f = open_header();
    cr_assert_not_null(f, "include/tapegrad.h not found from %s or the working directory", __FILE__);
    char line[1024], name[128], missing[4096] = "";
    int declared = 0, n_missing = 0;
    while (fgets(line, sizeof line, f)) {
        if (!declared_name(line, name, sizeof name)) continue;
        declared++;
        if (is_covered(name)) continue;
        n_missing++;
        size_t len = strlen(missing);
        snprintf(missing + len, sizeof missing - len, " %s", name);
    }
    fclose(f);
    cr_expect_gt(declared, 150, "only %d declarations found: is the parser still right?", declared);
    cr_expect_eq(n_missing, 0, "%d public functions have no MISUSE case in tests/test_misuse.c:%s",
                 n_missing, missing);
}
