/* tests/test_optim_skip.c — optimizers skip parameters that received no gradient this step
 * (PyTorch 2's zero_grad(set_to_none=True)): an unused branch's weights stay where they are
 * under weight decay, momentum and Adam, and a parameter's Adam step count is its own. */
#include "fixture.h"

TestSuite(optim_skip, .init = fixture_setup, .fini = fixture_teardown);

/* Two linear branches; only `used` is in the loss. */
typedef struct branches {
    tg_module *used, *unused;
    tg_tensor *params[4];
} branches;

static branches make_branches(void) {
    branches b = {tg_linear_new(ctx, "used", 3, 2, true, NULL, 1),
                  tg_linear_new(ctx, "unused", 3, 2, true, NULL, 2), {NULL}};
    cr_assert(b.used && b.unused, "%s", tg_errmsg(ctx));
    tg_module_params(b.used, b.params, 2);
    tg_module_params(b.unused, b.params + 2, 2);
    return b;
}

static void step_on_used(tg_optimizer *opt, tg_module *used) {
    tg_tape_reset(tape);
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(4, 3), (float[]){1, 2, 3, -1, 0, 1, 2, 2, -2, 0.5f, 1, 0});
    tg_tensor *loss = tg_mean(tape, tg_square(tape, tg_module_forward(used, tape, x)));
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_optimizer_step(opt), TG_OK);
    tg_optimizer_zero_grad(opt);
}

static void expect_unused_stays(const tg_optimizer_config *config) {
    branches b = make_branches();
    float before_unused[8], before_used[6];
    memcpy(before_unused, b.params[2]->data, sizeof(float) * 6);
    memcpy(before_unused + 6, b.params[3]->data, sizeof(float) * 2);
    memcpy(before_used, b.params[0]->data, sizeof before_used);
    tg_optimizer *opt = tg_optimizer_new(ctx, b.params, 4, config);
    cr_assert_not_null(opt, "%s", tg_errmsg(ctx));
    for (int step = 0; step < 3; step++) step_on_used(opt, b.used);
    cr_expect_eq(memcmp(b.params[2]->data, before_unused, sizeof(float) * 6), 0,
                 "optimizer %d moved the unused branch's weight", (int)config->kind);
    cr_expect_eq(memcmp(b.params[3]->data, before_unused + 6, sizeof(float) * 2), 0,
                 "optimizer %d moved the unused branch's bias", (int)config->kind);
    cr_expect_neq(memcmp(b.params[0]->data, before_used, sizeof before_used), 0,
                  "the used branch trains");
    tg_optimizer_free(opt);
    tg_module_free(b.used);
    tg_module_free(b.unused);
}

Test(optim_skip, an_unused_branch_does_not_move_under_any_optimizer) {
    const tg_optimizer_config configs[] = {
        {.kind = TG_OPT_SGD, .lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.1f},
        {.kind = TG_OPT_SGD, .lr = 0.1f, .momentum = 0.9f, .nesterov = true, .weight_decay = 0.1f},
        {.kind = TG_OPT_ADAM, .lr = 0.01f, .weight_decay = 0.1f},
        {.kind = TG_OPT_ADAMW, .lr = 0.01f, .weight_decay = 0.1f},
        {.kind = TG_OPT_RMSPROP, .lr = 0.01f, .momentum = 0.5f, .weight_decay = 0.1f},
    };
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) expect_unused_stays(&configs[i]);
}

/* Momentum does not carry a parameter on through a step that did not reach it. */
Test(optim_skip, momentum_waits_while_a_parameter_is_not_reached) {
    tg_tensor *w = tg_scalar(ctx, 1.0f);
    tg_set_requires_grad(w, true);
    tg_optimizer_config c = {.kind = TG_OPT_SGD, .lr = 0.1f, .momentum = 0.9f};
    tg_optimizer *opt = tg_optimizer_new(ctx, &w, 1, &c);
    cr_assert_eq(tg_backward(tape, tg_scale(tape, w, 2.0f)), TG_OK); /* dL/dw = 2 */
    tg_optimizer_step(opt);
    cr_expect_float_eq(w->data[0], 0.8f, 1e-6f);
    tg_optimizer_zero_grad(opt);
    tg_optimizer_step(opt); /* not reached: PyTorch leaves it (grad None), so do we */
    cr_expect_float_eq(w->data[0], 0.8f, 1e-6f, "momentum moved an unreached parameter");
    tg_optimizer_free(opt);
}

/* Adam's bias correction counts the steps the parameter took, like PyTorch's state['step']:
 * a parameter first reached at the optimizer's third step takes a first step of lr. */
Test(optim_skip, adam_counts_each_parameters_own_steps) {
    tg_tensor *a = tg_scalar(ctx, 1.0f), *late = tg_scalar(ctx, 1.0f);
    tg_set_requires_grad(a, true);
    tg_set_requires_grad(late, true);
    tg_tensor *both[2] = {a, late};
    tg_optimizer_config c = {.kind = TG_OPT_ADAM, .lr = 0.01f};
    tg_optimizer *opt = tg_optimizer_new(ctx, both, 2, &c);
    for (int step = 0; step < 3; step++) {
        tg_tape_reset(tape);
        tg_tensor *loss = tg_scale(tape, a, 0.5f);
        if (step == 2) loss = tg_add(tape, loss, tg_scale(tape, late, 0.3f));
        cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
        tg_optimizer_step(opt);
        tg_optimizer_zero_grad(opt);
    }
    cr_expect_float_eq(late->data[0], 1.0f - 0.01f, 1e-6f, "first step of 'late' is lr * sign(g): %.7g",
                       (double)late->data[0]);
    cr_expect_float_eq(a->data[0], 1.0f - 3 * 0.01f, 1e-5f);
    tg_optimizer_free(opt);
}

/* A gradient written by hand (data-parallel averaging, a user's own rule) still counts. */
Test(optim_skip, a_gradient_written_by_hand_counts) {
    tg_tensor *w = tg_scalar(ctx, 1.0f);
    tg_set_requires_grad(w, true);
    tg_optimizer_config c = {.kind = TG_OPT_SGD, .lr = 0.1f};
    tg_optimizer *opt = tg_optimizer_new(ctx, &w, 1, &c);
    tg_optimizer_zero_grad(opt);
    cr_expect_not(tg_grad_is_set(w), "zeroed: not set");
    w->grad[0] = 1.0f;
    cr_expect(tg_grad_is_set(w), "written by hand: set");
    tg_optimizer_step(opt);
    cr_expect_float_eq(w->data[0], 0.9f, 1e-6f);
    tg_optimizer_free(opt);
}
