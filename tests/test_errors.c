/* tests/test_errors.c — every error path returns a status or NULL with a message that names
 * the op, the node labels and the shapes; nothing aborts. */
#include "fixture.h"

TestSuite(errors, .init = fixture_setup, .fini = fixture_teardown);

static tg_tensor *named(const char *label, int ndim, const int64_t *shape) {
    tg_tensor *t = tg_tape_zeros(tape, ndim, shape);
    cr_assert_not_null(t);
    return tg_set_label(t, "%s", label);
}

Test(errors, matmul_inner_dims) {
    tg_tensor *y = tg_matmul(tape, named("h1", TG_SHAPE(64, 256)), named("fc2.weight", TG_SHAPE(128, 10)));
    cr_expect_null(y);
    cr_expect_eq(tg_errcode(ctx), TG_ERR_SHAPE);
    expect_errmsg_has(ctx, "matmul", "'h1' [64,256]", "'fc2.weight' [128,10]", "inner dims 256 != 128");
}

Test(errors, matmul_rank_and_batch) {
    cr_expect_null(tg_matmul(tape, named("v", TG_SHAPE(3)), named("m", TG_SHAPE(3, 2))));
    expect_errmsg_has(ctx, "matmul", "'v' [3]", "expected [M,K] x [K,N]");
    tg_clear_error(ctx);
    cr_expect_null(tg_matmul(tape, named("a", TG_SHAPE(2, 3, 4)), named("b", TG_SHAPE(3, 4, 5))));
    expect_errmsg_has(ctx, "batch sizes 2 != 3");
}

Test(errors, broadcasting_mismatch) {
    cr_expect_null(tg_add(tape, named("x", TG_SHAPE(2, 3)), named("bias", TG_SHAPE(4))));
    cr_expect_eq(tg_errcode(ctx), TG_ERR_SHAPE);
    expect_errmsg_has(ctx, "add", "'x' [2,3]", "'bias' [4]", "do not broadcast");
}

Test(errors, linear_shapes) {
    cr_expect_null(tg_linear(tape, named("x", TG_SHAPE(8, 5)), named("fc.weight", TG_SHAPE(3, 4)),
                             named("fc.bias", TG_SHAPE(3))));
    expect_errmsg_has(ctx, "linear", "'fc.weight' [3,4]", "input features 5 != weight in-features 4");
    tg_clear_error(ctx);
    cr_expect_null(tg_linear(tape, named("x", TG_SHAPE(8, 4)), named("fc.weight", TG_SHAPE(3, 4)),
                             named("fc.bias", TG_SHAPE(2))));
    expect_errmsg_has(ctx, "bias size 2 != weight out-features 3");
}

Test(errors, shape_ops) {
    tg_tensor *x = named("x", TG_SHAPE(2, 3));
    cr_expect_null(tg_reshape(tape, x, TG_SHAPE(4, 2)));
    expect_errmsg_has(ctx, "reshape", "'x' [2,3]", "[4,2] has 8 elements, input has 6");
    tg_clear_error(ctx);
    cr_expect_null(tg_reshape(tape, x, TG_SHAPE(4, -1)));
    expect_errmsg_has(ctx, "cannot infer -1");
    tg_clear_error(ctx);
    cr_expect_null(tg_slice(tape, x, 1, 2, 5));
    expect_errmsg_has(ctx, "slice", "[2, 5) of axis 1 (size 3)");
    tg_clear_error(ctx);
    cr_expect_null(tg_transpose(tape, x, 0, 2));
    expect_errmsg_has(ctx, "transpose", "axis 2 out of range for 2 dims");
    tg_clear_error(ctx);
    tg_tensor *parts[2] = {x, named("y", TG_SHAPE(3, 3))};
    cr_expect_null(tg_concat(tape, parts, 2, 1));
    expect_errmsg_has(ctx, "concat", "'y' [3,3]", "input 1 does not match");
    tg_clear_error(ctx);
    cr_expect_null(tg_sum_axis(tape, x, -3, false));
    expect_errmsg_has(ctx, "sum_axis", "axis -3 out of range");
}

Test(errors, losses_and_norms) {
    cr_expect_null(tg_mse(tape, named("pred", TG_SHAPE(4, 1)), named("target", TG_SHAPE(4))));
    expect_errmsg_has(ctx, "mse", "'pred' [4,1]", "'target' [4]", "same shape");
    tg_clear_error(ctx);
    tg_tensor *labels = tg_tape_from_data(tape, TG_SHAPE(2), (float[]){1, 7});
    tg_set_label(labels, "labels");
    cr_expect_null(tg_cross_entropy(tape, named("logits", TG_SHAPE(2, 5)), labels));
    expect_errmsg_has(ctx, "cross_entropy", "'logits' [2,5]", "label 7 at row 1", "[0, 5)");
    tg_clear_error(ctx);
    tg_tensor *c = named("c", TG_SHAPE(3));
    cr_expect_null(tg_batch_norm(tape, named("x", TG_SHAPE(4, 2)), c, c, c, c, 0.1f, 1e-5f, true));
    expect_errmsg_has(ctx, "batch_norm", "'x' [4,2]", "must be [2]");
    tg_clear_error(ctx);
    cr_expect_null(tg_dropout(tape, named("x", TG_SHAPE(2)), 1.0f, 1));
    expect_errmsg_has(ctx, "dropout", "p = 1", "0 <= p < 1");
}

Test(errors, bad_tensor_shapes) {
    cr_expect_null(tg_zeros(ctx, 5, (int64_t[]){1, 1, 1, 1, 1}));
    expect_errmsg_has(ctx, "5 dims", "0 to 4");
    tg_clear_error(ctx);
    cr_expect_null(tg_tape_zeros(tape, TG_SHAPE(3, 0)));
    expect_errmsg_has(ctx, "invalid shape [3,0]");
    tg_clear_error(ctx);
    cr_expect_null(tg_zeros(ctx, TG_SHAPE(-2)));
    cr_expect_eq(tg_errcode(ctx), TG_ERR_SHAPE);
}

Test(errors, null_inputs_propagate_the_first_error) {
    tg_tensor *bad = tg_matmul(tape, named("a", TG_SHAPE(2, 3)), named("b", TG_SHAPE(2, 3)));
    tg_tensor *y = tg_sum(tape, tg_relu(tape, tg_add(tape, bad, named("c", TG_SHAPE(1)))));
    cr_expect_null(y);
    expect_errmsg_has(ctx, "matmul", "inner dims 3 != 2");
    cr_expect_eq(tg_backward(tape, y), TG_ERR_SHAPE, "backward keeps reporting the first error");
    tg_clear_error(ctx);
    cr_expect_null(tg_relu(tape, NULL));
    expect_errmsg_has(ctx, "relu", "input 0 is NULL");
}

Test(errors, backward_twice_and_stale_tensors) {
    tg_tensor *w = tg_set_label(tg_ones(ctx, TG_SHAPE(2)), "w");
    tg_set_requires_grad(w, true);
    tg_tensor *loss = tg_set_label(tg_sum(tape, tg_square(tape, w)), "loss");
    cr_assert_eq(tg_backward(tape, loss), TG_OK);
    cr_expect_eq(tg_backward(tape, loss), TG_ERR_STATE);
    expect_errmsg_has(ctx, "backward", "'loss' []", "already walked backward", "tg_tape_reset");
    tg_clear_error(ctx);
    tg_tape_reset(tape);
    cr_expect_eq(tg_backward(tape, loss), TG_ERR_STATE);
    expect_errmsg_has(ctx, "not a node of this tape's current step");
    tg_clear_error(ctx);
    tg_tensor *old = tg_tape_zeros(tape, TG_SHAPE(2));
    tg_tape_reset(tape);
    cr_expect_null(tg_exp(tape, old));
    expect_errmsg_has(ctx, "exp", "earlier step of this tape");
    tg_clear_error(ctx);
    tg_tape *other = tg_tape_new(ctx);
    cr_expect_null(tg_exp(other, tg_tape_zeros(tape, TG_SHAPE(2))));
    expect_errmsg_has(ctx, "exp", "another tape");
    tg_tape_free(other);
}

Test(errors, apply_checks_ids_and_attribute_counts) {
    tg_tensor *x = named("x", TG_SHAPE(2));
    cr_expect_null(tg_call_id(tape, 9999, &x, 1, NULL, 0));
    expect_errmsg_has(ctx, "no op with id 9999");
    tg_clear_error(ctx);
    int leaky = tg_op_find(ctx, "leaky_relu");
    cr_assert_geq(leaky, 0);
    cr_expect_null(tg_call_id(tape, leaky, &x, 1, NULL, 0));
    expect_errmsg_has(ctx, "leaky_relu", "takes 1 attributes (alpha:f32), 0 given");
    tg_clear_error(ctx);
    tg_tensor *two[2] = {x, x};
    cr_expect_null(tg_call_id(tape, leaky, two, 2, &(tg_attr_value){.f32 = 0.1f}, 1));
    expect_errmsg_has(ctx, "leaky_relu", "takes 1 inputs, 2 given");
    tg_clear_error(ctx);
    tg_tensor *y = tg_call_id(tape, leaky, &x, 1, &(tg_attr_value){.f32 = 0.1f}, 1);
    cr_expect_not_null(y, "%s", tg_errmsg(ctx));
}

Test(errors, set_requires_grad_on_a_node_is_refused) {
    tg_tensor *w = tg_ones(ctx, TG_SHAPE(2));
    tg_set_requires_grad(w, true);
    tg_tensor *y = tg_set_label(tg_exp(tape, w), "act");
    cr_expect_eq(tg_set_requires_grad(y, false), TG_ERR_STATE);
    expect_errmsg_has(ctx, "'act' is a recorded node");
}

Test(errors, copy_in_size) {
    tg_tensor *t = tg_set_label(tg_zeros(ctx, TG_SHAPE(2, 2)), "buf");
    cr_expect_eq(tg_copy_in(t, (float[]){1, 2, 3}, 3), TG_ERR_SHAPE);
    expect_errmsg_has(ctx, "'buf' [2,2]", "3 floats given, 4 expected");
}

/* A tape tensor kept across a reset whose memory the next step reuses for data: the checks
 * refuse it without reading its (now meaningless) header further (reliability finding). */
Test(errors, stale_tensor_whose_memory_was_reused) {
    tg_tape_zeros(tape, TG_SHAPE(64));
    tg_tensor *x = tg_tape_zeros(tape, TG_SHAPE(3));
    cr_assert_eq(tg_set_requires_grad(x, true), TG_OK);
    tg_tensor *loss = tg_sum(tape, x);
    cr_assert_not_null(loss);
    tg_tape_reset(tape);
    tg_fill(tg_tape_zeros(tape, TG_SHAPE(2048)), 5.0f); /* over x's and loss's headers */
    cr_expect_null(tg_exp(tape, x));
    cr_expect_eq(tg_errcode(ctx), TG_ERR_STATE);
    expect_errmsg_has(ctx, "exp", "input 0 belongs to", "(not of this step)");
    tg_clear_error(ctx);
    cr_expect_eq(tg_backward(tape, loss), TG_ERR_STATE);
    expect_errmsg_has(ctx, "backward", "not a node of this tape's current step");
}

/* The naming rule: _name gives the identifier, _str the words; the old names still compile. */
Test(errors, status_name_is_the_identifier_and_str_the_words) {
    cr_expect_str_eq(tg_status_name(TG_ERR_SHAPE), "TG_ERR_SHAPE");
    cr_expect_str_eq(tg_status_name(TG_OK), "TG_OK");
    cr_expect_str_eq(tg_status_name((tg_status)99), "TG_ERR_UNKNOWN");
    cr_expect_str_eq(tg_status_str(TG_ERR_SHAPE), "shape error");
    cr_expect_str_eq(tg_status_str(TG_ERR_NOT_FOUND), "not found");
    tg_tensor *x = tg_tape_zeros(tape, TG_SHAPE(2));
    cr_assert_eq(tg_set_requires_grad(x, true), TG_OK);
    tg_tensor *y = tg_sum(tape, x);
    int64_t handle = tg_hook_node(y, NULL, NULL); /* the deprecated name is tg_hook_grad */
    cr_expect_eq(handle, -1, "a NULL hook function is refused under either name");
    tg_clear_error(ctx);
}
