/* tests/test_mlp_activation_op.c — an MLP whose activation is a registered op by name (a
 * plugin's swish, in `tapegrad train --activation swish --plugin ...`): it computes what the
 * built-in activation computes, takes attributes, and is refused at construction when the op
 * is missing or its attributes do not fit. */
#include "fixture.h"

TestSuite(mlp_activation_op, .init = fixture_setup, .fini = fixture_teardown);

static tg_tensor *forward_once(tg_module *m) {
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(2, 3), (float[]){1, -2, 0.5f, 0.25f, 3, -1});
    tg_tensor *y = tg_module_forward(m, tape, x);
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    return y;
}

static void expect_same_net(tg_mlp_config builtin, tg_mlp_config by_op) {
    tg_module *a = tg_mlp_new(ctx, "mlp", &builtin), *b = tg_mlp_new(ctx, "mlp", &by_op);
    cr_assert(a && b, "%s", tg_errmsg(ctx));
    tg_tensor *ya = forward_once(a), *yb = forward_once(b);
    expect_close(yb->data, ya->data, ya->size, 0.0f, "the op's output");
    tg_module_free(a);
    tg_module_free(b);
}

Test(mlp_activation_op, an_op_by_name_computes_what_the_built_in_activation_does) {
    tg_mlp_config c = {.in = 3, .out = 2, .width = 4, .depth = 3, .activation = TG_ACT_TANH, .seed = 5};
    tg_mlp_config by_name = c;
    by_name.activation_op = "tanh";
    expect_same_net(c, by_name);

    c.activation = TG_ACT_LEAKY_RELU; /* slope 0.01 */
    by_name = c;
    tg_named_attr alpha = TG_F32("alpha", 0.01f);
    by_name.activation_op = "leaky_relu";
    by_name.activation_attrs = &alpha;
    by_name.n_activation_attrs = 1;
    expect_same_net(c, by_name);
}

Test(mlp_activation_op, a_missing_op_or_wrong_attributes_are_refused_when_made) {
    tg_mlp_config c = {.in = 3, .out = 2, .width = 4, .depth = 2, .activation_op = "swish", .seed = 1};
    cr_expect_null(tg_mlp_new(ctx, "mlp", &c));
    expect_errmsg_has(ctx, "mlp 'mlp': activation op 'swish' is not registered (load its plugin first)");
    tg_clear_error(ctx);
    c.activation_op = "leaky_relu";
    cr_expect_null(tg_mlp_new(ctx, "mlp", &c));
    expect_errmsg_has(ctx, "activation op 'leaky_relu' takes the attributes 'alpha:f32', 0 given");
    tg_clear_error(ctx);
    c.activation_op = "add";
    cr_expect_null(tg_mlp_new(ctx, "mlp", &c));
    expect_errmsg_has(ctx, "activation op 'add' takes 2 inputs, not one");
}
