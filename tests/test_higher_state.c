/*
 * tests/test_higher_state.c — what the higher-order products leave behind: an HVP taken at
 * every replay of a step, hooks and running statistics around a recorded gradient, arrays that
 * share floats, inputs listed twice, and a failed product. (Found by a review of the first
 * version: each test here failed then.)
 */
#include "helpers.h"

#include <math.h>

/* loss = sum(x^3): H v = 6 x v */
Test(higher_state, an_hvp_at_every_replay_is_right_and_allocates_nothing) {
    tally count = {.fail_at = -1};
    tg_ctx *c = tg_ctx_new_with_allocator(tally_alloc, &count);
    tg_tape *tape = tg_tape_new(c);
    tg_tensor *x = leaf(c, TG_SHAPE(3), (float[]){1, 2, 3});
    tg_tensor *loss = tg_sum(tape, tg_mul(tape, tg_square(tape, x), x));
    float v[3] = {1, 1, 1}, hv[3];
    long after_two = 0;
    for (int step = 0; step < 6; step++) {
        if (step) {
            x->data[0] += 1.0f;
            cr_assert_eq(tg_tape_replay(tape), TG_OK, "%s", tg_errmsg(c));
        }
        cr_assert_eq(tg_hvp(tape, loss, 1, &x, (const float *[]){v}, (float *[]){hv}), TG_OK,
                     "%s", tg_errmsg(c));
        for (int i = 0; i < 3; i++)
            cr_expect_float_eq(hv[i], 6.0f * x->data[i], 1e-4, "step %d: hv[%d] %g", step, i, hv[i]);
        if (step == 1) after_two = count.allocations;
    }
    cr_expect_eq(count.allocations, after_two, "%ld allocations in 4 replayed HVP steps",
                 count.allocations - after_two);
    cr_expect_leq(tg_tape_entries(tape), 3, "the products stayed on the tape: %lld entries",
                  (long long)tg_tape_entries(tape));
    tg_tape_free(tape);
    tg_ctx_free(c);
}

static tg_status count_calls(tg_ctx *c, const tg_hook_event *e, void *user) {
    (void)c, (void)e;
    (*(int *)user)++;
    return TG_OK;
}

/* A parameter's hooks run once per backward pass with a gradient penalty, as without one. */
Test(higher_state, hooks_run_once_per_pass_through_a_recorded_gradient) {
    tg_ctx *c = tg_ctx_new();
    tg_tape *tape = tg_tape_new(c);
    tg_tensor *w = tg_set_label(leaf(c, TG_SHAPE(3), (float[]){0.5f, -1, 2}), "w");
    tg_tensor *x = leaf(c, TG_SHAPE(3), (float[]){1, 2, 3});
    int backward_calls = 0, forward_calls = 0;
    cr_assert_gt(tg_hook_pattern(c, "w", TG_PASS_BACKWARD, count_calls, &backward_calls), 0);
    cr_assert_gt(tg_hook_global(c, TG_PASS_FORWARD, count_calls, &forward_calls), 0);
    tg_tensor *f = tg_sum(tape, tg_tanh(tape, tg_mul(tape, w, x))), *g;
    int forward_before = forward_calls;
    cr_assert_eq(tg_grad(tape, f, 1, &x, &g), TG_OK, "%s", tg_errmsg(c));
    tg_tensor *loss = tg_add(tape, f, tg_sum(tape, tg_square(tape, g)));
    int recorded = forward_calls - forward_before;
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(c));
    cr_expect_eq(backward_calls, 1, "the hook on w ran %d times", backward_calls);
    cr_expect_eq(forward_calls - forward_before, recorded,
                 "forward hooks saw %d ops of the scratch tape during backward",
                 forward_calls - forward_before - recorded);
    tg_tape_free(tape);
    tg_ctx_free(c);
}

/* Batch norm's running statistics move once per recorded forward, not again for tg_grad. */
Test(higher_state, a_recorded_gradient_leaves_running_statistics_alone) {
    tg_ctx *c = tg_ctx_new();
    tg_tape *tape = tg_tape_new(c);
    tg_tensor *x = leaf(c, TG_SHAPE(4, 2), (float[]){1, 2, 3, 4, 5, 6, 7, 9});
    tg_tensor *gamma = leaf(c, TG_SHAPE(2), (float[]){1, 1}), *beta = leaf(c, TG_SHAPE(2), (float[]){0, 0});
    tg_tensor *mean = tg_zeros(c, TG_SHAPE(2)), *var = tg_ones(c, TG_SHAPE(2));
    tg_tensor *in[5] = {x, gamma, beta, mean, var};
    tg_named_attr attrs[3] = {{"momentum", TG_ATTR_F32, {.f32 = 0.5f}},
                              {"eps", TG_ATTR_F32, {.f32 = 1e-5f}},
                              {"train", TG_ATTR_BOOL, {.b = true}}};
    tg_tensor *y = tg_call(tape, "batch_norm", in, 5, attrs, 3);
    cr_assert_not_null(y, "%s", tg_errmsg(c));
    float kept_mean[2] = {mean->data[0], mean->data[1]};
    tg_tensor *f = tg_sum(tape, tg_square(tape, tg_tanh(tape, y))), *g;
    cr_assert_eq(tg_grad(tape, f, 1, &x, &g), TG_OK, "%s", tg_errmsg(c));
    cr_assert_eq(tg_backward(tape, tg_add(tape, f, tg_sum(tape, tg_square(tape, g)))), TG_OK,
                 "%s", tg_errmsg(c));
    cr_expect_eq(mean->data[0], kept_mean[0], "running mean %g, was %g", mean->data[0], kept_mean[0]);
    cr_expect_eq(mean->data[1], kept_mean[1]);
    tg_tape_free(tape);
    tg_ctx_free(c);
}

/* hv may be v (power iteration), and tg_vjp's grads may be its seed. */
Test(higher_state, results_may_overwrite_their_direction) {
    tg_ctx *c = tg_ctx_new();
    tg_tape *tape = tg_tape_new(c);
    tg_tensor *x = leaf(c, TG_SHAPE(3), (float[]){1, 2, 3});
    tg_tensor *loss = tg_sum(tape, tg_mul(tape, tg_square(tape, x), x));
    float v[3] = {1, -1, 0.5f};
    cr_assert_eq(tg_hvp(tape, loss, 1, &x, (const float *[]){v}, (float *[]){v}), TG_OK, "%s",
                 tg_errmsg(c));
    cr_expect_float_eq(v[0], 6.0f, 1e-5);
    cr_expect_float_eq(v[1], -12.0f, 1e-5);
    cr_expect_float_eq(v[2], 9.0f, 1e-5);
    tg_tape_reset(tape);
    tg_tensor *y = tg_scale(tape, x, 3.0f);
    float u[3] = {1, 2, 3};
    cr_assert_eq(tg_vjp(tape, y, u, 1, &x, (float *[]){u}), TG_OK, "%s", tg_errmsg(c));
    cr_expect_float_eq(u[2], 9.0f, 1e-6);
    tg_tape_free(tape);
    tg_ctx_free(c);
}

/* An input listed twice: the same gradient twice (tg_grad); the sum of its tangents (tg_jvp). */
Test(higher_state, an_input_listed_twice) {
    tg_ctx *c = tg_ctx_new();
    tg_tape *tape = tg_tape_new(c);
    tg_tensor *x = leaf(c, TG_SHAPE(2), (float[]){1, 2});
    tg_tensor *f = tg_sum(tape, tg_mul(tape, tg_square(tape, x), x)); /* df/dx = 3x^2 */
    tg_tensor *g[2], *twice[2] = {x, x}, *out;
    cr_assert_eq(tg_grad(tape, f, 2, twice, g), TG_OK, "%s", tg_errmsg(c));
    cr_expect_float_eq(g[1]->data[1], 12.0f, 1e-5);
    cr_expect_float_eq(g[0]->data[1], 12.0f, 1e-5);
    tg_tensor *t = tg_tape_from_data(tape, TG_SHAPE(2), (float[]){1, 0});
    cr_assert_eq(tg_jvp(tape, f, 2, twice, (tg_tensor *[]){NULL, t}, &out), TG_OK, "%s", tg_errmsg(c));
    cr_expect_float_eq(out->data[0], 3.0f, 1e-5);
    cr_assert_eq(tg_jvp(tape, f, 2, twice, (tg_tensor *[]){t, t}, &out), TG_OK);
    cr_expect_float_eq(out->data[0], 6.0f, 1e-5);
    tg_tape_free(tape);
    tg_ctx_free(c);
}

static tg_status cube_forward(tg_op_call *call) {
    for (int64_t i = 0; i < call->output->size; i++)
        call->output->data[i] = powf(call->inputs[0]->data[i], 3.0f);
    return TG_OK;
}

static tg_status cube_backward(const tg_op_call *call) {
    for (int64_t i = 0; i < call->output->size; i++)
        call->inputs[0]->grad[i] += call->output->grad[i] * 3.0f * powf(call->inputs[0]->data[i], 2.0f);
    return TG_OK;
}

/* A failed product leaves the step as it was: recording goes on, and a replay replays it all. */
Test(higher_state, a_failed_hvp_leaves_the_step_recording) {
    tg_ctx *c = tg_ctx_new();
    tg_op_def def = {"cube_no_jvp", 1, "", infer_like_first_input, cube_forward, cube_backward,
                     NULL, NULL, NULL};
    cr_assert_geq(tg_op_register(c, &def), 0);
    tg_tape *tape = tg_tape_new(c);
    tg_tensor *x = leaf(c, TG_SHAPE(2), (float[]){1, 2});
    tg_tensor *f = tg_sum(tape, tg_call(tape, "cube_no_jvp", &x, 1, NULL, 0));
    float hv[2];
    cr_assert_eq(tg_hvp(tape, f, 1, &x, (const float *[]){(float[]){1, 1}}, (float *[]){hv}),
                 TG_ERR_NOGRAD);
    tg_clear_error(c);
    tg_tensor *loss = tg_scale(tape, f, 10.0f); /* recorded after the failed product */
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(c));
    x->data[0] = 2.0f;
    cr_assert_eq(tg_tape_replay(tape), TG_OK, "%s", tg_errmsg(c));
    cr_expect_float_eq(loss->data[0], 10.0f * (8 + 8), 1e-3, "replayed loss %g", loss->data[0]);
    tg_tape_free(tape);
    tg_ctx_free(c);
}
