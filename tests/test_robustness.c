/* tests/test_robustness.c — bad input and numerical edge cases: each test reproduces a defect
 * found in review (crash, silent wrong value, or missing message) and pins the fix. */
#include "fixture.h"

TestSuite(robustness, .init = fixture_setup, .fini = fixture_teardown);

/* ops/shape.c:21,26 — `known *= dims[d]` overflows; with a -1 it becomes x->size % 0. */
Test(robustness, reshape_overflowing_target_is_an_error_not_sigfpe) {
    tg_tensor *x = tg_tape_zeros(tape, TG_SHAPE(6));
    cr_expect_null(tg_reshape(tape, x, TG_SHAPE(-1, 1LL << 32, 1LL << 32)));
    cr_expect_eq(tg_errcode(ctx), TG_ERR_SHAPE);
}

/* ops/shape.c:14 — the target is formatted (want->ndim dims read) before ndim is checked. */
Test(robustness, apply_reshape_with_ndim_100_does_not_read_past_the_attr) {
    tg_tensor *x = tg_tape_zeros(tape, TG_SHAPE(6));
    tg_attr_value *attr = malloc(sizeof *attr);   /* heap: ASan sees the over-read */
    *attr = (tg_attr_value){.shape = {.ndim = 100, .dims = {6, 1, 1, 1}}};
    cr_expect_null(tg_call_id(tape, tg_op_find(ctx, "reshape"), &x, 1, attr, 1));
    cr_expect_eq(tg_errcode(ctx), TG_ERR_SHAPE);
    free(attr);
}

/* ops/loss.c:66 — backward indexes with labels->data[r] without re-validating it. */
Test(robustness, cross_entropy_backward_with_changed_labels_is_an_error) {
    tg_tensor *logits = leaf(ctx, TG_SHAPE(2, 3), (float[]){0, 0, 0, 0, 0, 0});
    tg_tensor *labels = tg_from_data(ctx, TG_SHAPE(2), (float[]){0, 1});
    tg_tensor *loss = tg_cross_entropy(tape, logits, labels);
    cr_assert_not_null(loss);
    labels->data[1] = 1e6f;
    cr_expect_neq(tg_backward(tape, loss), TG_OK);
}

/* autograd/tensor.c:159 + every backward's `if (x->grad)` — a frozen leaf keeps receiving gradient. */
Test(robustness, turning_requires_grad_off_stops_gradient_accumulation) {
    tg_tensor *w = leaf(ctx, TG_SHAPE(3), (float[]){1, 1, 1});
    tg_tensor *x = leaf(ctx, TG_SHAPE(3), (float[]){1, 2, 3});
    cr_assert_eq(tg_set_requires_grad(w, false), TG_OK);
    cr_assert_eq(tg_backward(tape, tg_sum(tape, tg_mul(tape, w, x))), TG_OK);
    cr_expect(!w->grad || (w->grad[0] == 0 && w->grad[1] == 0 && w->grad[2] == 0), "a frozen w got a gradient");
}

/* autograd/tape.c:177 — an infer_shape that fails without tg_op_fail leaves no message. */
static tg_status quiet_infer(const tg_op_call *call, tg_shape *out) { (void)call; (void)out; return TG_ERR_SHAPE; }
static tg_status copy_forward(tg_op_call *call) { (void)call; return TG_OK; }
Test(robustness, a_failing_user_infer_shape_leaves_a_message) {
    tg_op_def def = {"quiet", 1, "", quiet_infer, copy_forward, NULL, NULL, NULL, NULL};
    int id = tg_op_register(ctx, &def);
    tg_tensor *x = tg_tape_zeros(tape, TG_SHAPE(2));
    cr_expect_null(tg_call_id(tape, id, &x, 1, NULL, 0));
    cr_expect_neq(tg_errcode(ctx), TG_OK, "no error recorded");
    expect_errmsg_has(ctx, "quiet");
}

/* autograd/gradcheck.c:80-83 — *n_inputs from a user example is trusted (check_run.inputs has 8). */
static tg_status many_inputs_example(tg_tape *t, void *op_data, int index, tg_tensor **inputs,
                                     int *n_inputs, tg_attr_value *attrs) {
    (void)op_data; (void)attrs;
    if (index) return TG_ERR_NOT_FOUND;
    for (int i = 0; i < TG_EXAMPLE_MAX_INPUTS; i++) {
        inputs[i] = tg_tape_zeros(t, TG_SHAPE(2));
        tg_set_requires_grad(inputs[i], true);
    }
    *n_inputs = 12;
    return TG_OK;
}
static tg_status nop_backward(const tg_op_call *call) { (void)call; return TG_OK; }
Test(robustness, gradcheck_refuses_an_example_with_too_many_inputs) {
    tg_op_def def = {"many", TG_VARIADIC, "", infer_like_first_input, copy_forward, nop_backward,
                     many_inputs_example, NULL, NULL};
    int id = tg_op_register(ctx, &def);
    tg_gradcheck_result result;
    cr_expect_eq(tg_gradcheck(ctx, id, 0, NULL, &result), TG_ERR_INVALID);
}

/* NULL handles crash instead of failing (tape NULL is what tg_tape_new returns on OOM). */
Test(robustness, null_tape_is_an_error) {
    cr_expect_null(tg_tape_zeros(NULL, TG_SHAPE(2)));
    cr_expect_neq(tg_backward(NULL, NULL), TG_OK);
    tg_tape_reset(NULL);
    cr_expect_null(tg_tape_from_data(NULL, TG_SHAPE(1), (float[]){1}));
    cr_expect_eq(tg_tape_entries(NULL), 0);
    tg_no_grad_begin(NULL);
    tg_no_grad_end(NULL);
}
Test(robustness, null_ctx_is_an_error) {
    cr_expect_null(tg_zeros(NULL, TG_SHAPE(2)));
    cr_expect_eq(tg_op_count(NULL), 0);
    cr_expect_eq(tg_ctx_bytes_persistent(NULL), 0);
    tg_clear_error(NULL);
    tg_fill(NULL, 1);
    cr_expect_eq(tg_copy_in(NULL, NULL, 0), TG_ERR_INVALID);
    tg_tensor *t = tg_set_label(tg_zeros(ctx, TG_SHAPE(2)), "t");
    cr_expect_eq(tg_copy_in(t, NULL, 2), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "copy_in 't': data is NULL");
    char buf[2] = "x";
    cr_expect_eq(tg_shape_str(t, buf, sizeof buf), buf, "too small a buffer is left alone");
    cr_expect_eq(tg_op_get_info(ctx, 0, NULL), TG_ERR_INVALID);
    cr_expect_eq(tg_gradcheck(ctx, 0, 0, NULL, NULL), TG_ERR_INVALID);
}

/* autograd/tensor.c — `low + (high-low)*u` was contracted to an FMA by clang on an FMA-capable
 * target, so "the same numbers everywhere" broke between CPUs (the build now passes
 * -ffp-contract=off). */
Test(robustness, fill_uniform_matches_the_unfused_ieee_result) {
    tg_tensor *u = tg_zeros(ctx, TG_SHAPE(10000));
    tg_fill_uniform(u, -0.37f, 0.91f, 42);
    tg_rng rng;
    tg_rng_seed(&rng, 42);
    int differing = 0;
    for (int64_t i = 0; i < u->size; i++) {
        volatile float product = (0.91f - -0.37f) * tg_rng_uniform(&rng);
        float want = -0.37f + product;
        differing += want != u->data[i];
    }
    cr_expect_eq(differing, 0, "%d of 10000 elements differ from the plain IEEE result", differing);
}

/* ops/norm.c:112 — training batch norm on one row: biased variance 0 folded into running_var. */
Test(robustness, batch_norm_training_needs_more_than_one_row) {
    tg_tensor *c = tg_ones(ctx, TG_SHAPE(2)), *rm = tg_zeros(ctx, TG_SHAPE(2)), *rv = tg_ones(ctx, TG_SHAPE(2));
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(1, 2), (float[]){3, 4});
    cr_expect_null(tg_batch_norm(tape, x, c, c, rm, rv, 0.5f, 1e-5f, true));
    cr_expect_float_eq(rv->data[0], 1.0f, 0, "running_var changed to %g", (double)rv->data[0]);
}

/* ops/activation.c:29,56 and ops/loss.c:64 — lse is rounded to f32 before x - lse: softmax of
 * logits 1e6 + [0,1,2] is 3% off and does not sum to 1 (it is shift-invariant). */
Test(robustness, softmax_is_accurate_for_large_logits) {
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(3), (float[]){1e6f, 1e6f + 1, 1e6f + 2});
    tg_tensor *y = tg_softmax(tape, x);
    double z = 1 + exp(-1.0) + exp(-2.0);
    expect_close(y->data, (float[]){(float)(exp(-2.0) / z), (float)(exp(-1.0) / z), (float)(1 / z)}, 3, 1e-5f, "softmax");
}

Test(robustness, cross_entropy_gradient_is_accurate_for_large_logits) {
    tg_tensor *x = leaf(ctx, TG_SHAPE(1, 3), (float[]){1e6f, 1e6f + 1, 1e6f + 2});
    cr_assert_eq(tg_backward(tape, tg_cross_entropy(tape, x, tg_tape_from_data(tape, TG_SHAPE(1), (float[]){2}))), TG_OK);
    double z = 1 + exp(-1.0) + exp(-2.0);
    expect_close(x->grad, (float[]){(float)(exp(-2.0) / z), (float)(exp(-1.0) / z), (float)(1 / z - 1)}, 3, 1e-5f, "dCE/dx");
}

/* autograd/hooks.c:53 — ctx->live_hooks[hook->pass]++ with an unchecked enum value. */
static tg_status noop_hook(tg_ctx *c, const tg_hook_event *e, void *u) { (void)c; (void)e; (void)u; return TG_OK; }
Test(robustness, hook_with_an_invalid_pass_is_refused) {
    cr_expect_lt(tg_hook_global(ctx, (tg_pass)2, noop_hook, NULL), 0);
    cr_expect_eq(tg_errcode(ctx), TG_ERR_INVALID);
    cr_expect_eq(tg_hook_count(ctx), 0);
}

/* autograd/anomaly.c:33 — the node is named <op>#n_entries, one past its real index. */
Test(robustness, anomaly_message_names_the_right_node) {
    tg_set_anomaly_mode(ctx, true);
    tg_tensor *w = tg_full(ctx, TG_SHAPE(2), -1.0f);
    tg_set_requires_grad(w, true);
    tg_tensor *e = tg_exp(tape, w);                    /* exp#0 */
    cr_expect_null(tg_log(tape, tg_neg(tape, e)));     /* neg#1, log#2 -> NaN */
    expect_errmsg_has(ctx, "'log#2'");
}
