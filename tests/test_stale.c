/* tests/test_stale.c — a tape tensor used after tg_tape_reset (stale) is refused with
 * TG_ERR_STATE by every function that takes one, and the message does not read the stale
 * tensor's label or producer (repro_stale_tensor.c crashed building it). */
#include "fixture.h"

TestSuite(stale, .init = fixture_setup, .fini = fixture_teardown);

/* x (a leaf wanting a gradient) and loss = sum(x) of a step that tg_tape_reset has ended; the
 * next step allocates nothing, so their memory still holds what they were. */
static tg_tensor *x, *loss;

static void make_stale(void) {
    x = tg_tape_from_data(tape, TG_SHAPE(3), (float[]){1, 2, 3});
    cr_assert_eq(tg_set_requires_grad(x, true), TG_OK);
    tg_set_label(x, "x");
    loss = tg_sum(tape, x);
    cr_assert_not_null(loss);
    tg_tape_reset(tape);
    tg_clear_error(ctx);
}

static void expect_stale_error(const char *what) {
    cr_expect_eq(tg_errcode(ctx), TG_ERR_STATE, "%s: status %s (%s)", what,
                 tg_status_name(tg_errcode(ctx)), tg_errmsg(ctx));
    tg_clear_error(ctx);
}

Test(stale, set_requires_grad_is_refused) {
    make_stale();
    cr_expect_eq(tg_set_requires_grad(x, false), TG_ERR_STATE);
    expect_stale_error("set_requires_grad");
}

static tg_status never_called(tg_ctx *c, const tg_hook_event *e, void *u) {
    (void)c, (void)e, (void)u;
    cr_assert_fail("a hook on a stale node ran");
    return TG_OK;
}

Test(stale, hook_grad_is_refused) {
    make_stale();
    cr_expect_eq(tg_hook_grad(loss, never_called, NULL), -1);
    expect_stale_error("hook_grad");
    cr_expect_eq(tg_hook_count(ctx), 0);
}

Test(stale, writes_into_a_stale_tensor_are_refused) {
    make_stale();
    tg_fill(x, 9.0f);
    expect_stale_error("fill");
    tg_fill_uniform(x, 0.0f, 1.0f, 1);
    expect_stale_error("fill_uniform");
    tg_fill_normal(x, 0.0f, 1.0f, 1);
    expect_stale_error("fill_normal");
    cr_expect_eq(tg_copy_in(x, (float[]){7, 7, 7}, 3), TG_ERR_STATE);
    expect_stale_error("copy_in");
    cr_expect_null(tg_set_label(x, "y"));
    expect_stale_error("set_label");
    tg_init init = tg_init_normal(0.0f, 1.0f);
    cr_expect_eq(tg_init_tensor(x, &init, 1), TG_ERR_STATE);
    expect_stale_error("init_tensor");
    cr_expect(x->data[0] == 1.0f && x->data[1] == 2.0f && x->data[2] == 3.0f, "x was written");
}

Test(stale, ops_backward_and_detach_are_refused) {
    make_stale();
    cr_expect_null(tg_exp(tape, x));
    expect_stale_error("exp");
    tg_tensor *fresh = tg_zeros(ctx, TG_SHAPE(3)); /* persistent: a tape one would reuse x's memory */
    cr_expect_null(tg_add(tape, fresh, x));
    expect_stale_error("add");
    cr_expect_eq(tg_backward(tape, loss), TG_ERR_STATE);
    expect_stale_error("backward");
    cr_expect_null(tg_detach(tape, x));
    expect_stale_error("detach");
}

Test(stale, getters_name_it_stale) {
    make_stale();
    cr_expect_str_eq(tg_tensor_name(loss), "(stale)");
    cr_expect_str_eq(tg_tensor_op_name(loss), "(stale)");
    tg_zero_grad(x); /* nothing written, nothing read */
}

/* repro_stale_tensor.c: the next step reuses the memory x and loss had, filling it with floats.
 * Their headers live apart from data (autograd/headers.c), so each use is refused cleanly. */
static void reuse_memory(void) {
    tg_tape_zeros(tape, TG_SHAPE(64));
    make_stale();
    tg_tensor *y = tg_tape_zeros(tape, TG_SHAPE(2048));
    tg_fill(y, 5.0f);
}

Test(stale, reused_memory_op) {
    reuse_memory();
    cr_expect_null(tg_exp(tape, x));
    expect_stale_error("exp after reuse");
}

Test(stale, reused_memory_backward) {
    reuse_memory();
    cr_expect_eq(tg_backward(tape, loss), TG_ERR_STATE);
}

Test(stale, reused_memory_set_requires_grad) {
    reuse_memory();
    cr_expect_eq(tg_set_requires_grad(x, true), TG_ERR_STATE);
}

/* repro_stale_tensor.c, case 3: the next step fills memory where the stale tensors used to
 * live with floats (5.0 reads as 0x40a00000 in every word). Headers live apart from data, so
 * the check reads x's own header and refuses it, for each use. */
Test(stale, a_step_that_reuses_the_memory_does_not_confuse_the_check) {
    tg_tape_zeros(tape, TG_SHAPE(64));
    make_stale();
    for (int i = 0; i < 50; i++) tg_fill(tg_tape_zeros(tape, TG_SHAPE(2048)), 5.0f);
    cr_expect_eq(tg_set_requires_grad(x, true), TG_ERR_STATE);
    expect_stale_error("set_requires_grad after reuse");
    cr_expect_null(tg_exp(tape, x));
    expect_stale_error("exp after reuse");
    cr_expect_eq(tg_backward(tape, loss), TG_ERR_STATE);
    expect_stale_error("backward after reuse");
}

/* The documented guarantee: whatever the next step records (here more tensors than x's step,
 * so the slots x and loss would take in a shared pool are in use), a tensor kept across one
 * reset is detected; and its slot still holds x's own shape, not another tensor's. */
Test(stale, a_tensor_kept_across_one_reset_is_always_detected) {
    make_stale();
    tg_tensor *a = tg_tape_zeros(tape, TG_SHAPE(7));
    cr_assert_eq(tg_set_requires_grad(a, true), TG_OK);
    for (int i = 0; i < 600; i++) a = tg_tanh(tape, a); /* past the first chunk of slots */
    cr_assert_not_null(a);
    cr_expect_str_eq(tg_tensor_name(x), "(stale)", "x read as current after a step of 600 nodes");
    cr_expect_str_eq(tg_tensor_name(loss), "(stale)", "loss read as current after 600 nodes");
    cr_expect_eq(x->shape[0], 3, "x's slot was reused by the next step");
    cr_expect_eq(tg_backward(tape, loss), TG_ERR_STATE);
    expect_stale_error("backward across one busy reset");
    cr_expect_eq(tg_backward(tape, tg_sum(tape, a)), TG_OK, "the current step: %s", tg_errmsg(ctx));
}
