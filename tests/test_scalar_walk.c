/*
 * tests/test_scalar_walk.c — the scalar fast path of recording, replay and the walk (a scalar
 * node of a built-in elementwise op computed from what the node holds: scalar_forward and
 * scalar_vjp) gives the numbers of the general path, bit for bit. The general path is what
 * anomaly mode (a watched walk and replay) takes, and what a one-element tensor of shape [1]
 * rather than [] does not avoid: so each check compares a run with anomaly mode off against one
 * with it on, and the gradients against their analytic values.
 */
#include "helpers.h"

/* Every unary built-in with a scalar rule, one after another, on a scalar that stays in their
 * domains (log and sqrt see positive values: exp comes before them). */
static tg_tensor *mixed_chain(tg_tape *tape, tg_tensor *x) {
    tg_tensor *y = tg_scale(tape, x, 1.3f);
    y = tg_tanh(tape, y);
    y = tg_sigmoid(tape, y);
    y = tg_sin(tape, y);
    y = tg_cos(tape, y);
    y = tg_neg(tape, y);
    y = tg_add_scalar(tape, y, 0.25f);
    y = tg_square(tape, y);
    y = tg_leaky_relu(tape, y, 0.1f);
    y = tg_elu(tape, y, 1.0f);
    y = tg_softplus(tape, y);
    y = tg_gelu(tape, y);
    y = tg_exp(tape, y);
    y = tg_sqrt(tape, y);
    y = tg_log(tape, y);
    y = tg_pow(tape, y, 1.5f);
    y = tg_abs(tape, y);
    return tg_relu(tape, y);
}

/* The same few ops again and again (period 2: scale, tanh; period 3: then sigmoid), as in
 * bench_kann's chain: the unwatched walk then calls each op's VJP from a call site of its own
 * (TGI_CALL_AT_SITE), both sites and the third path taking turns with a period of 3. */
static int period = 2;

static tg_tensor *repeated_chain(tg_tape *tape, tg_tensor *x) {
    tg_tensor *y = x;
    for (int i = 0; i < 60; i++) {
        int k = i % period;
        y = k == 0 ? tg_scale(tape, y, 1.01f) : k == 1 ? tg_tanh(tape, y) : tg_sigmoid(tape, y);
    }
    return y;
}

typedef struct chain_run {
    float value, grad, replayed_value, replayed_grad;
} chain_run;

static tg_tensor *(*chain)(tg_tape *, tg_tensor *) = mixed_chain;

static chain_run run_chain(bool anomaly, float start) {
    tg_ctx *ctx = tg_ctx_new();
    tg_set_anomaly_mode(ctx, anomaly);
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *x = tg_scalar(ctx, start);
    cr_assert_eq(tg_set_requires_grad(x, true), TG_OK);
    tg_tensor *y = chain(tape, x);
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_backward(tape, y), TG_OK, "%s", tg_errmsg(ctx));
    chain_run run = {y->data[0], x->grad[0], 0, 0};
    tg_zero_grad(x);
    cr_assert_eq(tg_tape_replay(tape), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_backward(tape, y), TG_OK, "%s", tg_errmsg(ctx));
    run.replayed_value = y->data[0];
    run.replayed_grad = x->grad[0];
    tg_tape_free(tape);
    tg_ctx_free(ctx);
    return run;
}

Test(scalar_walk, every_scalar_rule_matches_the_general_path_bit_for_bit) {
    for (int k = 0; k < 5; k++) {
        float start = -0.9f + 0.45f * (float)k;
        chain_run fast = run_chain(false, start), general = run_chain(true, start);
        cr_expect(memcmp(&fast, &general, sizeof fast) == 0,
                  "x %g: value %.9g / %.9g, grad %.9g / %.9g, replayed %.9g / %.9g, %.9g / %.9g",
                  (double)start, (double)fast.value, (double)general.value, (double)fast.grad,
                  (double)general.grad, (double)fast.replayed_value,
                  (double)general.replayed_value, (double)fast.replayed_grad,
                  (double)general.replayed_grad);
        cr_expect(fast.grad == fast.replayed_grad && fast.value == fast.replayed_value);
        cr_expect(fast.grad != 0.0f, "the chain carries a gradient at x %g", (double)start);
    }
}

Test(scalar_walk, repeated_ops_match_the_general_path_bit_for_bit) {
    chain = repeated_chain;
    for (period = 2; period <= 3; period++) {
        chain_run fast = run_chain(false, 0.4f), general = run_chain(true, 0.4f);
        cr_expect(memcmp(&fast, &general, sizeof fast) == 0,
                  "period %d: value %.9g / %.9g, grad %.9g / %.9g", period, (double)fast.value,
                  (double)general.value, (double)fast.grad, (double)general.grad);
        cr_expect(fast.grad == fast.replayed_grad && fast.value == fast.replayed_value);
        cr_expect(fast.grad > 0.0f && fast.grad < 1.0f, "period %d: dy/dx %.9g", period,
                  (double)fast.grad);
    }
}

/* A persistent leaf read by two scalar nodes (its buffer made on first reach, then added to),
 * and a recorded scalar read by two (its room handed out, then added to). */
Test(scalar_walk, shared_inputs_accumulate) {
    for (int anomaly = 0; anomaly < 2; anomaly++) {
        tg_ctx *ctx = tg_ctx_new();
        tg_set_anomaly_mode(ctx, anomaly);
        tg_tape *tape = tg_tape_new(ctx);
        tg_tensor *x = tg_scalar(ctx, 0.4f);
        cr_assert_eq(tg_set_requires_grad(x, true), TG_OK);
        tg_tensor *h = tg_tanh(tape, x);
        tg_tensor *loss = tg_add(tape, tg_add(tape, tg_scale(tape, x, 2.0f), tg_scale(tape, h, 3.0f)),
                                 tg_sin(tape, h));
        cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
        double th = tanh(0.4), dh = 3.0 + cos(th);
        cr_expect_float_eq(h->grad[0], (float)dh, 1e-6, "dloss/dh %g, expected %g",
                           (double)h->grad[0], dh);
        cr_expect_float_eq(x->grad[0], (float)(2.0 + dh * (1.0 - th * th)), 1e-6,
                           "dloss/dx %g (anomaly %d)", (double)x->grad[0], anomaly);
        tg_tape_free(tape);
        tg_ctx_free(ctx);
    }
}

/* An input that wants no gradient gets none from the fast path, and its output still passes
 * the gradient of the other branch. */
Test(scalar_walk, an_input_without_requires_grad_gets_nothing) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *c = tg_scalar(ctx, 0.7f), *w = tg_scalar(ctx, 1.5f);
    cr_assert_eq(tg_set_requires_grad(w, true), TG_OK);
    tg_tensor *loss = tg_mul(tape, tg_tanh(tape, c), w); /* tanh(c) is not recorded */
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_null(c->grad);
    cr_expect_float_eq(w->grad[0], tanhf(0.7f), 1e-6);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}
