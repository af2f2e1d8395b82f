/* tests/test_misuse.c — every public function of tapegrad.h called with NULL handles and NULL
 * pointers: each returns its documented value (an error status, NULL, 0, NaN, false or a fixed
 * string, see the header's introduction) and leaves a message when a context can hold one.
 *
 * MISUSE(fn) defines the test of fn and registers fn's name before main runs; the last test
 * reads include/tapegrad.h and fails for every declared function no MISUSE covers, so a new
 * public function cannot go without one. Stale tensors have their own suite (test_stale.c). */
#include "helpers.h"

/* ---- the registry of covered names ------------------------------------------------------- */

#define MAX_COVERED 512
static const char *covered[MAX_COVERED];
static int n_covered;

static void cover(const char *name) {
    if (n_covered < MAX_COVERED) covered[n_covered++] = name;
}

/* A constructor per case: the names are known in every test process, the coverage test's too. */
#define MISUSE(fn)                                                                              \
    static void misuse_##fn(void);                                                              \
    __attribute__((constructor)) static void cover_##fn(void) { cover(#fn); }                   \
    Test(misuse, fn, .init = world_setup, .fini = world_teardown) { misuse_##fn(); }            \
    static void misuse_##fn(void)

/* ---- a world of valid objects, so each case changes one argument ------------------------- */

static struct {
    tg_ctx *ctx, *other;
    tg_tape *tape;
    tg_tensor *w;            /* persistent [3], requires grad, labelled "w" */
    tg_tensor *x;            /* tape tensor [3] of the current step */
    tg_tensor *foreign;      /* persistent [3] of `other` */
    tg_module *linear;       /* "lin", 3 -> 2 */
    tg_recorder *rec;
    tg_optimizer *opt;
    tg_dataset *ds;
} W;

static void world_setup(void) {
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

static void world_teardown(void) {
    tg_dataset_free(W.ds);
    tg_optimizer_free(W.opt);
    tg_recorder_free(W.rec);
    tg_module_free(W.linear);
    tg_tape_free(W.tape);
    tg_ctx_free(W.other);
    tg_ctx_free(W.ctx);
}

/* ---- expectations -------------------------------------------------------------------------- */

/* The call is refused and the world's context says why (then forgets it for the next check). */
#define REFUSED(expr)                                                                           \
    do {                                                                                        \
        tg_clear_error(W.ctx);                                                                  \
        tg_status s_ = (expr);                                                                  \
        cr_expect_neq(s_, TG_OK, "`%s` returned TG_OK", #expr);                                 \
        expect_message(#expr);                                                                  \
    } while (0)
/* Refused where no context can hold a message (a NULL handle): the status is all there is. */
#define REFUSED_QUIETLY(expr) cr_expect_neq((expr), TG_OK, "`%s` returned TG_OK", #expr)
#define NULLED(expr)                                                                            \
    do {                                                                                        \
        tg_clear_error(W.ctx);                                                                  \
        cr_expect_null((expr), "`%s` is not NULL", #expr);                                      \
        expect_message(#expr);                                                                  \
    } while (0)
#define NULLED_QUIETLY(expr) cr_expect_null((expr), "`%s` is not NULL", #expr)
#define GIVES(expr, value) cr_expect((expr) == (value), "`%s` is not %s", #expr, #value)
#define GIVES_NAN(expr) cr_expect(isnan((double)(expr)), "`%s` is not NaN", #expr)
#define GIVES_TEXT(expr) cr_expect((expr) != NULL && strlen(expr) < 4096, "`%s` gave no string", #expr)

static void expect_message(const char *what) {
    cr_expect_neq(tg_errcode(W.ctx), TG_OK, "`%s`: no error recorded", what);
    cr_expect(tg_errmsg(W.ctx)[0] != '\0', "`%s`: empty message", what);
    tg_clear_error(W.ctx);
}

static tg_status ok_hook(tg_ctx *c, const tg_hook_event *e, void *u) {
    (void)c, (void)e, (void)u;
    return TG_OK;
}

static tg_status infer_like(const tg_op_call *call, tg_shape *out) {
    return infer_like_first_input(call, out);
}

static tg_status forward_noop(tg_op_call *call) {
    (void)call;
    return TG_OK;
}

static void kernel_noop(void) {}

/* ---- status, backend, context ------------------------------------------------------------ */

MISUSE(tg_status_name) { GIVES_TEXT(tg_status_name((tg_status)1234)); }
MISUSE(tg_status_str) { GIVES_TEXT(tg_status_str((tg_status)1234)); }
MISUSE(tg_gemm_backend) { GIVES_TEXT(tg_gemm_backend()); }
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

#define UNARY_MISUSE(call_with)                                                                 \
    do {                                                                                        \
        tg_tape *tape_ = NULL;                                                                  \
        tg_tensor *x_ = W.w;                                                                    \
        NULLED_QUIETLY(call_with);                                                              \
        tape_ = W.tape;                                                                         \
        x_ = NULL;                                                                              \
        NULLED(call_with);                                                                      \
        x_ = W.foreign;                                                                         \
        NULLED(call_with);                                                                      \
    } while (0)
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
    tg_op_def def = {"misuse_op", 1, "", infer_like, forward_noop, NULL, NULL, NULL};
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
    tg_activation_stats a = {5, 5};
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
    tg_guard_config bad = {6.0, 1, 1};
    NULLED(tg_guard_new(W.ctx, &bad));
}
MISUSE(tg_guard_free) { tg_guard_free(NULL); }
MISUSE(tg_guard_check) { GIVES(tg_guard_check(NULL, 0, NAN, NAN), TG_GUARD_ACCEPT); }
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
    tg_plot_series s = {NULL, NULL, NULL, 3};
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

/* ---- native ops, calls by name, plugins ---------------------------------------------------- */

MISUSE(tg_op_register_native) {
    tg_native_fn k = (tg_native_fn)kernel_noop;
    GIVES(tg_op_register_native(NULL, "n", "x -> y", k, NULL, NULL), -1);
    tg_clear_error(W.ctx);
    GIVES(tg_op_register_native(W.ctx, NULL, "x -> y", k, NULL, NULL), -1);
    expect_message("tg_op_register_native with a NULL name");
    GIVES(tg_op_register_native(W.ctx, "n", NULL, k, NULL, NULL), -1);
    expect_message("tg_op_register_native with a NULL signature");
    GIVES(tg_op_register_native(W.ctx, "n", "x -> y", NULL, NULL, NULL), -1);
    expect_message("tg_op_register_native with a NULL forward");
}
MISUSE(tg_call) {
    tg_tensor *pair[2] = {W.w, W.foreign};
    NULLED_QUIETLY(tg_call(NULL, "add", pair, 2, NULL, 0));
    NULLED(tg_call(W.tape, NULL, pair, 2, NULL, 0));
    NULLED(tg_call(W.tape, "add", NULL, 2, NULL, 0));
    NULLED(tg_call(W.tape, "add", pair, 2, NULL, 0));
    NULLED(tg_call(W.tape, "leaky_relu", pair, 1, NULL, 1));
}
MISUSE(tg_plugin_load) {
    GIVES(tg_plugin_load(NULL, "/nonexistent.so"), TG_ERR_INVALID);
    REFUSED(tg_plugin_load(W.ctx, NULL));
}
MISUSE(tg_hook_export) {
    GIVES(tg_hook_export(NULL, "h", ok_hook, NULL), TG_ERR_INVALID);
    REFUSED(tg_hook_export(W.ctx, NULL, ok_hook, NULL));
    REFUSED(tg_hook_export(W.ctx, "h", NULL, NULL));
}
MISUSE(tg_hook_find) {
    tg_hook_fn fn;
    GIVES(tg_hook_find(NULL, "h", &fn, NULL), TG_ERR_INVALID);
    REFUSED(tg_hook_find(W.ctx, NULL, &fn, NULL));
    cr_assert_eq(tg_hook_export(W.ctx, "h", ok_hook, NULL), TG_OK);
    REFUSED(tg_hook_find(W.ctx, "h", NULL, NULL));
}

/* ---- models ---------------------------------------------------------------------------------- */

MISUSE(tg_activation_name) { GIVES_TEXT(tg_activation_name((tg_activation)99)); }
MISUSE(tg_activation_from_name) { GIVES(tg_activation_from_name(NULL), -1); }
MISUSE(tg_activate) {
    UNARY_MISUSE(tg_activate(tape_, x_, TG_ACT_RELU));
    NULLED_QUIETLY(tg_activate(NULL, W.w, TG_ACT_IDENTITY));
}
MISUSE(tg_init_gain) { cr_expect(isfinite(tg_init_gain((tg_activation)99))); }
MISUSE(tg_init_tensor) {
    tg_init init = tg_init_normal(0.0f, 1.0f);
    GIVES(tg_init_tensor(NULL, &init, 1), TG_ERR_INVALID);
    REFUSED(tg_init_tensor(W.w, NULL, 1));
}
MISUSE(tg_init_xavier) { cr_expect_eq(tg_init_xavier(TG_ACT_TANH).kind, TG_INIT_XAVIER_UNIFORM); }
MISUSE(tg_init_he) { cr_expect_eq(tg_init_he(TG_ACT_RELU).kind, TG_INIT_HE_NORMAL); }
MISUSE(tg_init_normal) { cr_expect_eq(tg_init_normal(0.0f, 1.0f).kind, TG_INIT_NORMAL); }

MISUSE(tg_module_forward) {
    NULLED_QUIETLY(tg_module_forward(NULL, W.tape, W.w));
    NULLED_QUIETLY(tg_module_forward(W.linear, NULL, W.w));
    NULLED(tg_module_forward(W.linear, W.tape, NULL));
    NULLED(tg_module_forward(W.linear, W.tape, W.foreign));
}
MISUSE(tg_module_free) { tg_module_free(NULL); }
MISUSE(tg_module_name) { cr_expect_str_eq(tg_module_name(NULL), "(null)"); }
MISUSE(tg_module_param_count) { GIVES(tg_module_param_count(NULL), 0); }
MISUSE(tg_module_param) { NULLED_QUIETLY(tg_module_param(NULL, 0)); }
MISUSE(tg_module_params) {
    tg_tensor *out[4];
    GIVES(tg_module_params(NULL, out, 4), 0);
    GIVES(tg_module_params(W.linear, NULL, 4), 2); /* counting only */
}
MISUSE(tg_module_state) {
    tg_tensor *out[4];
    GIVES(tg_module_state(NULL, out, 4), 0);
    GIVES(tg_module_state(W.linear, NULL, 4), 2);
}
MISUSE(tg_module_find_param) {
    NULLED_QUIETLY(tg_module_find_param(NULL, "lin.weight"));
    NULLED_QUIETLY(tg_module_find_param(W.linear, NULL));
}
MISUSE(tg_module_num_elements) { GIVES(tg_module_num_elements(NULL), 0); }
MISUSE(tg_module_set_training) { tg_module_set_training(NULL, false); }
MISUSE(tg_module_training) { GIVES(tg_module_training(NULL), false); }
MISUSE(tg_module_zero_grad) { tg_module_zero_grad(NULL); }
MISUSE(tg_module_child_count) { GIVES(tg_module_child_count(NULL), 0); }
MISUSE(tg_module_child) { NULLED_QUIETLY(tg_module_child(NULL, 0)); }
static tg_tensor *identity_forward(tg_module *m, tg_tape *t, tg_tensor *x) {
    (void)m, (void)t;
    return x;
}
MISUSE(tg_module_new) {
    const tg_module_def def = {identity_forward, NULL}, no_forward = {NULL, NULL};
    NULLED_QUIETLY(tg_module_new(NULL, "u", &def, NULL));
    NULLED(tg_module_new(W.ctx, NULL, &def, NULL));
    NULLED(tg_module_new(W.ctx, "u", NULL, NULL));
    NULLED(tg_module_new(W.ctx, "u", &no_forward, NULL));
}
MISUSE(tg_module_data) {
    NULLED_QUIETLY(tg_module_data(NULL));
    NULLED_QUIETLY(tg_module_data(W.linear)); /* built in: no user data */
}
MISUSE(tg_module_ctx) { NULLED_QUIETLY(tg_module_ctx(NULL)); }
MISUSE(tg_module_add_param) {
    tg_module *u = tg_module_new(W.ctx, "u", &(tg_module_def){identity_forward, NULL}, NULL);
    NULLED_QUIETLY(tg_module_add_param(NULL, "w", TG_SHAPE(2), NULL, 1));
    NULLED(tg_module_add_param(u, NULL, TG_SHAPE(2), NULL, 1));
    NULLED(tg_module_add_param(u, "w", 1, NULL, NULL, 1));
    NULLED(tg_module_add_param(W.linear, "w", TG_SHAPE(2), NULL, 1)); /* built in */
    tg_module_free(u);
}
MISUSE(tg_module_add_buffer) {
    tg_module *u = tg_module_new(W.ctx, "u", &(tg_module_def){identity_forward, NULL}, NULL);
    NULLED_QUIETLY(tg_module_add_buffer(NULL, "b", TG_SHAPE(2), 0.0f));
    NULLED(tg_module_add_buffer(u, NULL, TG_SHAPE(2), 0.0f));
    NULLED(tg_module_add_buffer(u, "b", 1, NULL, 0.0f));
    tg_module_free(u);
}
MISUSE(tg_module_add_child) {
    tg_module *u = tg_module_new(W.ctx, "u", &(tg_module_def){identity_forward, NULL}, NULL);
    GIVES(tg_module_add_child(NULL, NULL), TG_ERR_INVALID);
    REFUSED(tg_module_add_child(u, NULL));
    GIVES(tg_module_add_child(NULL, tg_linear_new(W.ctx, "u.fc", 2, 2, true, NULL, 1)), TG_ERR_INVALID);
    tg_module_free(u);
}

MISUSE(tg_linear_new) {
    NULLED_QUIETLY(tg_linear_new(NULL, "l", 2, 2, true, NULL, 1));
    NULLED(tg_linear_new(W.ctx, NULL, 2, 2, true, NULL, 1));
}
MISUSE(tg_norm_new) {
    NULLED_QUIETLY(tg_norm_new(NULL, "n", TG_NORM_LAYER, 2));
    NULLED(tg_norm_new(W.ctx, NULL, TG_NORM_LAYER, 2));
}
MISUSE(tg_mlp_new) {
    tg_mlp_config c = {.in = 2, .out = 2, .width = 4, .depth = 2};
    NULLED_QUIETLY(tg_mlp_new(NULL, "m", &c));
    NULLED(tg_mlp_new(W.ctx, NULL, &c));
    NULLED(tg_mlp_new(W.ctx, "m", NULL));
}
MISUSE(tg_resmlp_new) {
    tg_resmlp_config c = {.in = 2, .out = 2, .width = 4, .blocks = 1};
    NULLED_QUIETLY(tg_resmlp_new(NULL, "r", &c));
    NULLED(tg_resmlp_new(W.ctx, NULL, &c));
    NULLED(tg_resmlp_new(W.ctx, "r", NULL));
}
MISUSE(tg_conv2d_new) {
    NULLED_QUIETLY(tg_conv2d_new(NULL, "c", 1, 2, 3, 3, NULL, true, NULL, 1));
    NULLED(tg_conv2d_new(W.ctx, NULL, 1, 2, 3, 3, NULL, true, NULL, 1));
}
MISUSE(tg_lenet_new) {
    tg_lenet_config c = {.channels = 1, .height = 8, .width = 8, .classes = 10};
    NULLED_QUIETLY(tg_lenet_new(NULL, "l", &c));
    NULLED(tg_lenet_new(W.ctx, NULL, &c));
    NULLED(tg_lenet_new(W.ctx, "l", NULL));
}
MISUSE(tg_resnet_new) {
    tg_resnet_config c = {.channels = 1, .classes = 10, .depth = 8, .skip = true};
    NULLED_QUIETLY(tg_resnet_new(NULL, "r", &c));
    NULLED(tg_resnet_new(W.ctx, NULL, &c));
    NULLED(tg_resnet_new(W.ctx, "r", NULL));
}
MISUSE(tg_rnn_defaults) { cr_expect_eq(tg_rnn_defaults(TG_RNN_GRU, 2, 3).hidden, 3); }
MISUSE(tg_rnn_new) {
    tg_rnn_config c = tg_rnn_defaults(TG_RNN_LSTM, 2, 4);
    NULLED_QUIETLY(tg_rnn_new(NULL, "r", &c));
    NULLED(tg_rnn_new(W.ctx, NULL, &c));
    NULLED(tg_rnn_new(W.ctx, "r", NULL));
    c.num_layers = TG_RNN_MAX_LAYERS + 1;
    NULLED(tg_rnn_new(W.ctx, "r", &c));
}
MISUSE(tg_rnn_forward) {
    tg_rnn_config c = tg_rnn_defaults(TG_RNN_TANH, 3, 2);
    tg_module *rnn = tg_rnn_new(W.ctx, "r", &c);
    tg_tensor *seq = tg_tape_zeros(W.tape, TG_SHAPE(1, 2, 3));
    cr_assert(rnn && seq);
    NULLED_QUIETLY(tg_rnn_forward(NULL, W.tape, seq, NULL));
    NULLED_QUIETLY(tg_rnn_forward(rnn, NULL, seq, NULL));
    NULLED_QUIETLY(tg_rnn_forward(rnn, W.tape, NULL, NULL));
    NULLED(tg_rnn_forward(W.linear, W.tape, seq, NULL)); /* not a recurrent module */
    tg_module_free(rnn);
}
MISUSE(tg_rnn_sequence) {
    tg_rnn_config c = tg_rnn_defaults(TG_RNN_LSTM, 3, 2);
    c.num_layers = 2;
    tg_module *rnn = tg_rnn_new(W.ctx, "r", &c);
    tg_tensor *seq = tg_tape_zeros(W.tape, TG_SHAPE(1, 2, 3));
    cr_assert(rnn && seq);
    tg_rnn_state final = {W.x, W.x};
    NULLED_QUIETLY(tg_rnn_sequence(NULL, W.tape, seq, NULL, &final, NULL));
    cr_expect(!final.h && !final.c, "the final state is cleared on failure");
    NULLED_QUIETLY(tg_rnn_sequence(rnn, NULL, seq, NULL, NULL, NULL));
    NULLED_QUIETLY(tg_rnn_sequence(rnn, W.tape, NULL, NULL, NULL, NULL));
    NULLED(tg_rnn_sequence(W.linear, W.tape, seq, NULL, NULL, NULL));
    tg_rnn_state wrong = {W.x, NULL}; /* [3], not [layers*directions, batch, hidden] */
    NULLED(tg_rnn_sequence(rnn, W.tape, seq, &wrong, NULL, NULL));
    cr_expect_not_null(tg_rnn_sequence(rnn, W.tape, seq, &(tg_rnn_state){NULL, NULL}, NULL, NULL),
                       "NULL members are zero states: %s", tg_errmsg(W.ctx));
    tg_module_free(rnn);
}
MISUSE(tg_detach) {
    NULLED_QUIETLY(tg_detach(NULL, W.x));
    NULLED_QUIETLY(tg_detach(W.tape, NULL)); /* a NULL input is an earlier failure: no new message */
}

MISUSE(tg_optimizer_new) {
    tg_optimizer_config c = {.kind = TG_OPT_SGD, .lr = 0.1f};
    tg_tensor *none[1] = {NULL};
    NULLED_QUIETLY(tg_optimizer_new(NULL, &W.w, 1, &c));
    NULLED(tg_optimizer_new(W.ctx, NULL, 1, &c));
    NULLED(tg_optimizer_new(W.ctx, none, 1, &c));
    NULLED(tg_optimizer_new(W.ctx, &W.w, 1, NULL));
}
MISUSE(tg_optimizer_free) { tg_optimizer_free(NULL); }
MISUSE(tg_optimizer_step) { GIVES(tg_optimizer_step(NULL), TG_ERR_INVALID); }
MISUSE(tg_optimizer_zero_grad) { tg_optimizer_zero_grad(NULL); }
MISUSE(tg_optimizer_set_lr) { tg_optimizer_set_lr(NULL, 1.0f); }
MISUSE(tg_optimizer_lr) { GIVES_NAN(tg_optimizer_lr(NULL)); }
MISUSE(tg_schedule_lr) { GIVES_NAN(tg_schedule_lr(NULL, 0)); }
static void penalty_misuse(tg_tensor *(*penalty)(tg_tape *, tg_tensor *const *, int, float)) {
    tg_tensor *none[1] = {NULL};
    NULLED_QUIETLY(penalty(NULL, &W.w, 1, 0.1f));
    NULLED(penalty(W.tape, NULL, 3, 0.1f));
    NULLED(penalty(W.tape, none, 1, 0.1f));
    NULLED(penalty(W.tape, &W.w, -1, 0.1f));
    NULLED(penalty(W.tape, &W.foreign, 1, 0.1f));
}
MISUSE(tg_l2_penalty) { penalty_misuse(tg_l2_penalty); }
MISUSE(tg_l1_penalty) { penalty_misuse(tg_l1_penalty); }
MISUSE(tg_accuracy) {
    GIVES_NAN(tg_accuracy(NULL, W.w));
    GIVES_NAN(tg_accuracy(W.w, NULL));
}

/* ---- data ------------------------------------------------------------------------------------ */

MISUSE(tg_dataset_free) { tg_dataset_free(NULL); }
MISUSE(tg_dataset_x_size) { GIVES(tg_dataset_x_size(NULL), -1); }
MISUSE(tg_dataset_y_size) { GIVES(tg_dataset_y_size(NULL), -1); }
MISUSE(tg_dataset_digits) { NULLED_QUIETLY(tg_dataset_digits(NULL)); }
MISUSE(tg_dataset_reshape) {
    GIVES(tg_dataset_reshape(NULL, 1, (int64_t[]){2}), TG_ERR_INVALID);
    REFUSED(tg_dataset_reshape(W.ds, 1, NULL));
    REFUSED(tg_dataset_reshape(W.ds, 4, (int64_t[]){1, 1, 1, 2})); /* same size, too many dims */
    REFUSED(tg_dataset_reshape(W.ds, -1, (int64_t[]){2}));
}
MISUSE(tg_dataset_split) {
    tg_dataset *a = (tg_dataset *)1, *b = (tg_dataset *)1;
    GIVES(tg_dataset_split(NULL, 0.25, 1, &a, &b), TG_ERR_INVALID);
    cr_expect(a == NULL && b == NULL, "outputs not cleared");
    REFUSED(tg_dataset_split(W.ds, 0.25, 1, NULL, &b));
    REFUSED(tg_dataset_split(W.ds, 0.25, 1, &a, NULL));
}
MISUSE(tg_dataset_adding) { NULLED_QUIETLY(tg_dataset_adding(NULL, 4, 4, 1)); }
MISUSE(tg_dataset_copy_task) { NULLED_QUIETLY(tg_dataset_copy_task(NULL, 4, 2, 2, 3, 1)); }
MISUSE(tg_dataset_spirals) { NULLED_QUIETLY(tg_dataset_spirals(NULL, 4, 0.0f, 1)); }
MISUSE(tg_dataset_parity) { NULLED_QUIETLY(tg_dataset_parity(NULL, 4, 3, 1)); }
MISUSE(tg_dataset_read_csv) {
    NULLED_QUIETLY(tg_dataset_read_csv(NULL, "/nonexistent.csv", -1));
    NULLED(tg_dataset_read_csv(W.ctx, NULL, -1));
}
MISUSE(tg_dataset_read_csv_regression) {
    NULLED_QUIETLY(tg_dataset_read_csv_regression(NULL, "/nonexistent.csv", -1));
    NULLED(tg_dataset_read_csv_regression(W.ctx, NULL, -1));
}
MISUSE(tg_dataset_read_idx) {
    NULLED_QUIETLY(tg_dataset_read_idx(NULL, "/nonexistent", "/nonexistent"));
    NULLED(tg_dataset_read_idx(W.ctx, NULL, "/nonexistent"));
    NULLED(tg_dataset_read_idx(W.ctx, "/nonexistent", NULL));
}
MISUSE(tg_batcher_new) { NULLED_QUIETLY(tg_batcher_new(NULL, 2, false, false, 1)); }
MISUSE(tg_batcher_free) { tg_batcher_free(NULL); }
MISUSE(tg_batcher_next) {
    tg_tensor *x, *y;
    GIVES(tg_batcher_next(NULL, W.tape, &x, &y), false);
    tg_batcher *b = tg_batcher_new(W.ds, 2, false, false, 1);
    cr_assert_not_null(b);
    tg_clear_error(W.ctx);
    GIVES(tg_batcher_next(b, NULL, &x, &y), false);
    expect_message("tg_batcher_next(b, NULL, ...)");
    GIVES(tg_batcher_next(b, W.tape, NULL, &y), false);
    expect_message("tg_batcher_next(b, tape, NULL, y)");
    tg_batcher_free(b);
}
MISUSE(tg_batcher_epoch) { GIVES(tg_batcher_epoch(NULL), 0); }

/* ---- save and load ----------------------------------------------------------------------- */

static void tensors_file_misuse(tg_status (*fn)(tg_ctx *, const char *, tg_tensor *const *, int)) {
    const char *path = "/tmp/tapegrad-misuse-never-written.safetensors";
    GIVES(fn(NULL, path, &W.w, 1), TG_ERR_INVALID);
    REFUSED(fn(W.ctx, NULL, &W.w, 1));
    REFUSED(fn(W.ctx, path, NULL, 1));
    REFUSED(fn(W.ctx, path, &W.w, -1));
}
MISUSE(tg_save_safetensors) { tensors_file_misuse(tg_save_safetensors); }
MISUSE(tg_load_safetensors) { tensors_file_misuse(tg_load_safetensors); }
MISUSE(tg_check_save_path) {
    GIVES(tg_check_save_path(NULL, "/tmp/x.safetensors"), TG_ERR_INVALID);
    REFUSED(tg_check_save_path(W.ctx, NULL));
}
MISUSE(tg_module_save) {
    GIVES(tg_module_save(NULL, "/tmp/x.safetensors"), TG_ERR_INVALID);
    REFUSED(tg_module_save(W.linear, NULL));
}
MISUSE(tg_module_load) {
    GIVES(tg_module_load(NULL, "/tmp/x.safetensors"), TG_ERR_INVALID);
    REFUSED(tg_module_load(W.linear, NULL));
}

/* ---- gradient checking and random numbers ------------------------------------------------ */

MISUSE(tg_gradcheck_defaults) { cr_expect_gt(tg_gradcheck_defaults().eps, 0.0); }
MISUSE(tg_gradcheck) {
    tg_gradcheck_result r;
    int exp_id = tg_op_find(W.ctx, "exp");
    GIVES(tg_gradcheck(NULL, exp_id, 0, NULL, &r), TG_ERR_INVALID);
    REFUSED(tg_gradcheck(W.ctx, exp_id, 0, NULL, NULL));
    const double bad[] = {0.0, -1e-3, NAN, INFINITY};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tg_gradcheck_opts o = tg_gradcheck_defaults();
        o.eps = bad[i];
        REFUSED(tg_gradcheck(W.ctx, exp_id, 0, &o, &r));
        o = tg_gradcheck_defaults();
        o.atol = bad[i];
        REFUSED(tg_gradcheck(W.ctx, exp_id, 0, &o, &r));
        o = tg_gradcheck_defaults();
        o.rtol = bad[i];
        REFUSED(tg_gradcheck(W.ctx, exp_id, 0, &o, &r));
    }
}
static tg_tensor *sum_of(tg_tape *t, tg_tensor *const *in, int n, void *user) {
    (void)n, (void)user;
    return tg_sum(t, in[0]);
}
MISUSE(tg_gradcheck_function) {
    tg_gradcheck_result r;
    GIVES(tg_gradcheck_function(NULL, sum_of, NULL, &W.w, 1, NULL, &r), TG_ERR_INVALID);
    REFUSED(tg_gradcheck_function(W.ctx, NULL, NULL, &W.w, 1, NULL, &r));
    REFUSED(tg_gradcheck_function(W.ctx, sum_of, NULL, NULL, 1, NULL, &r));
    REFUSED(tg_gradcheck_function(W.ctx, sum_of, NULL, &W.w, 1, NULL, NULL));
    REFUSED(tg_gradcheck_function(W.ctx, sum_of, NULL, &W.foreign, 1, NULL, &r));
    tg_tensor *none[1] = {NULL};
    REFUSED(tg_gradcheck_function(W.ctx, sum_of, NULL, none, 1, NULL, &r));
    tg_gradcheck_opts o = tg_gradcheck_defaults();
    o.max_elements = -1;
    REFUSED(tg_gradcheck_function(W.ctx, sum_of, NULL, &W.w, 1, &o, &r));
}
MISUSE(tg_rng_seed) { tg_rng_seed(NULL, 1); }
MISUSE(tg_rng_u32) { GIVES(tg_rng_u32(NULL), 0u); }
MISUSE(tg_rng_uniform) { GIVES(tg_rng_uniform(NULL), 0.0f); }
MISUSE(tg_rng_normal) { GIVES(tg_rng_normal(NULL), 0.0); }
MISUSE(tg_rng_below) { GIVES(tg_rng_below(NULL, 5), 0u); }

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
