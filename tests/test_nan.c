/* tests/test_nan.c — NaN is never laundered into a number: every op propagates it (relu(NaN)
 * was 0, so a checkpoint with NaN weights trained on and its report said "no NaN"), clipping
 * keeps it, and the statistics of an all-NaN gradient do not read as a vanished one. */
#include "fixture.h"

#include "autograd/internal.h"

TestSuite(nan, .init = fixture_setup, .fini = fixture_teardown);

static bool any_nan(const tg_tensor *t) {
    for (int64_t i = 0; i < t->size; i++)
        if (isnan(t->data[i])) return true;
    return false;
}

static tg_tensor *nan_tensor(int64_t n) {
    tg_tensor *t = tg_tape_zeros(tape, TG_SHAPE(n));
    cr_assert_not_null(t);
    tg_fill(t, NAN);
    return t;
}

Test(nan, relu_of_nan_is_nan_and_of_negatives_zero) {
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(4), (float[]){NAN, -1.0f, -0.0f, 2.0f});
    tg_tensor *y = tg_relu(tape, x);
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    cr_expect(isnan(y->data[0]), "relu(NaN) = %g", (double)y->data[0]);
    cr_expect(y->data[1] == 0.0f && y->data[2] == 0.0f && !signbit(y->data[2]) && y->data[3] == 2.0f);
}

/* Every activation, including the ones reached through tg_activate. */
Test(nan, every_activation_propagates_nan) {
    for (int act = TG_ACT_IDENTITY; act <= TG_ACT_SOFTPLUS; act++) {
        tg_tensor *y = tg_activate(tape, nan_tensor(3), (tg_activation)act);
        cr_assert_not_null(y, "%s: %s", tg_activation_name((tg_activation)act), tg_errmsg(ctx));
        for (int64_t i = 0; i < y->size; i++)
            cr_expect(isnan(y->data[i]), "%s(NaN)[%lld] = %g", tg_activation_name((tg_activation)act),
                      (long long)i, (double)y->data[i]);
    }
}

/* Each registered op on its own gradient-check example, one differentiable input at a time made
 * all-NaN: the output holds a NaN, or the op refuses the input with a message. Inputs wanting
 * no gradient (labels, batch norm's running statistics, which training does not read) may be
 * ignored. Ops added later (pooling, convolution, plugins) are covered by the same loop. */
/* Example `example` of op on a fresh step: its input count, or -1 when there is no such example. */
static int build_example(const tgi_op *op, int example, tg_tensor **inputs, tg_attr_value *attrs) {
    tg_tape_reset(tape);
    tg_clear_error(ctx);
    int n_inputs = 0;
    return op->example(tape, op->op_data, example, inputs, &n_inputs, attrs) == TG_OK ? n_inputs : -1;
}

Test(nan, every_op_propagates_a_nan_input) {
    for (int id = 0; id < tg_op_count(ctx); id++) {
        const tgi_op *op = tgi_op_by_id(ctx, id);
        tg_tensor *inputs[TG_EXAMPLE_MAX_INPUTS];
        tg_attr_value attrs[TG_MAX_ATTRS];
        for (int example = 0; op->example; example++) {
            int n = build_example(op, example, inputs, attrs);
            if (n < 0) break;
            for (int bad = 0; bad < n; bad++) {
                build_example(op, example, inputs, attrs);
                if (!inputs[bad]->requires_grad) continue;
                tg_fill(inputs[bad], NAN);
                tg_tensor *y = tg_call_id(tape, id, inputs, n, attrs, op->n_attrs);
                if (y)
                    cr_expect(any_nan(y), "%s example %d: input %d all NaN, no NaN in the output",
                              op->name, example, bad);
                else
                    cr_expect(tg_errmsg(ctx)[0] != '\0', "%s example %d: NaN input %d refused "
                              "without a message", op->name, example, bad);
            }
        }
    }
}

Test(nan, reductions_and_losses_propagate_nan) {
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(2, 3), (float[]){1, NAN, 3, 4, 5, 6});
    cr_expect(isnan(tg_sum(tape, x)->data[0]));
    cr_expect(isnan(tg_mean(tape, x)->data[0]));
    cr_expect(isnan(tg_sum_axis(tape, x, 1, false)->data[0]));
    tg_tensor *soft = tg_softmax(tape, x);
    cr_expect(isnan(soft->data[0]) && isnan(soft->data[2]), "softmax row with a NaN");
    tg_tensor *labels = tg_tape_from_data(tape, TG_SHAPE(2), (float[]){0, 1});
    cr_expect(isnan(tg_cross_entropy(tape, x, labels)->data[0]));
}

Test(nan, clip_value_hook_keeps_nan) {
    float values[4] = {NAN, 5.0f, -5.0f, 0.5f}, limit = 1.0f;
    tg_hook_event event = {TG_PASS_BACKWARD, NULL, "g", "leaf", 0, values, 4};
    cr_assert_eq(tg_hook_clip_value(ctx, &event, &limit), TG_OK);
    cr_expect(isnan(values[0]), "clip_value turned NaN into %g", (double)values[0]);
    cr_expect(values[1] == 1.0f && values[2] == -1.0f && values[3] == 0.5f);
}

Test(nan, stats_of_an_all_nan_gradient_are_not_a_vanished_one) {
    float g[4] = {NAN, NAN, NAN, NAN};
    tg_stats s;
    tg_stats_compute(g, 4, &s);
    cr_expect_eq(s.count, 4);
    cr_expect_eq(s.n_nan, 4);
    cr_expect(isnan(s.l2_norm), "l2_norm %g for an all-NaN gradient", s.l2_norm);
    cr_expect(isnan(s.max_abs));
}

Test(nan, stats_with_inf_have_an_infinite_norm_and_finite_moments) {
    float g[3] = {INFINITY, 1.0f, 3.0f};
    tg_stats s;
    tg_stats_compute(g, 3, &s);
    cr_expect(isinf(s.l2_norm) && s.l2_norm > 0 && isinf(s.max_abs));
    cr_expect_eq(s.n_inf, 1);
    cr_expect_float_eq(s.mean, 2.0, 1e-12, "the mean is of the finite values");
    float fine[2] = {3.0f, 4.0f};
    tg_stats_compute(fine, 2, &s);
    cr_expect_float_eq(s.l2_norm, 5.0, 1e-12);
}

Test(nan, accuracy_never_counts_a_nan_row_as_right) {
    tg_tensor *logits = tg_from_data(ctx, TG_SHAPE(2, 2), (float[]){NAN, 0.0f, 0.0f, 1.0f});
    tg_tensor *labels = tg_from_data(ctx, TG_SHAPE(2), (float[]){0, 1});
    cr_expect_float_eq(tg_accuracy(logits, labels), 0.5f, 1e-6f);
}
