/* tests/test_module_names.c — names are refused, never cut, when longer than a label holds
 * (63 bytes), and a module tree never holds one name twice (FINDINGS-2 items 7 and 8): both are
 * refused when the part is added, with a message naming the limit or both holders. */
#include "fixture.h"

TestSuite(module_names, .init = fixture_setup, .fini = fixture_teardown);

static tg_tensor *pass_through(tg_module *m, tg_tape *t, tg_tensor *x) {
    (void)m, (void)t;
    return x;
}

static tg_module *user(const char *name) {
    tg_module *m = tg_module_new(ctx, name, &(tg_module_def){pass_through, NULL}, NULL);
    cr_assert_not_null(m, "%s", tg_errmsg(ctx));
    return m;
}

static void expect_invalid(const char *fragment) {
    cr_expect_eq(tg_errcode(ctx), TG_ERR_INVALID, "%s", tg_errmsg(ctx));
    expect_errmsg_has(ctx, fragment);
    tg_clear_error(ctx);
}

/* A name of n bytes: "a" then "b"s. */
static char *name_of(size_t n) {
    static char buf[10001];
    memset(buf, 'b', n);
    buf[0] = 'a';
    buf[n] = '\0';
    return buf;
}

Test(module_names, a_module_name_too_long_is_refused) {
    cr_expect_null(tg_linear_new(ctx, name_of(10000), 2, 2, true, NULL, 1));
    expect_invalid("is 10000 bytes long; names are at most 63 bytes");
    cr_expect_null(tg_module_new(ctx, name_of(64), &(tg_module_def){pass_through, NULL}, NULL));
    expect_invalid("is 64 bytes long");
    tg_module *m = tg_module_new(ctx, name_of(63), &(tg_module_def){pass_through, NULL}, NULL);
    cr_expect_not_null(m, "63 bytes fit: %s", tg_errmsg(ctx));
    cr_expect_eq(strlen(tg_module_name(m)), 63);
    tg_module_free(m);
}

/* The finding: a 62-byte module name lost its parameter's local name ("<name>." is 63 bytes),
 * and the next parameter was refused as a duplicate of that cut name. */
Test(module_names, a_parameter_name_too_long_is_refused_not_cut) {
    cr_expect_null(tg_linear_new(ctx, name_of(62), 2, 2, true, NULL, 1));
    expect_invalid("the parameter name");
    tg_module *m = user(name_of(62));
    cr_expect_null(tg_module_add_param(m, "w", TG_SHAPE(2), NULL, 1));
    expect_invalid("names are at most 63 bytes");
    cr_expect_null(tg_module_add_buffer(m, "v", TG_SHAPE(2), 0.0f));
    expect_invalid("names are at most 63 bytes");
    cr_expect_eq(tg_module_param_count(m), 0);
    tg_module_free(m);
    m = user(name_of(60));
    cr_expect_not_null(tg_module_add_param(m, "w", TG_SHAPE(2), NULL, 1), "62 bytes: %s", tg_errmsg(ctx));
    cr_expect_not_null(tg_module_add_param(m, "x", TG_SHAPE(2), NULL, 1), "%s", tg_errmsg(ctx));
    tg_module_free(m);
}

Test(module_names, labels_too_long_are_refused) {
    tg_tensor *t = tg_set_label(tg_zeros(ctx, TG_SHAPE(2)), "kept");
    cr_expect_null(tg_set_label(t, "%s", name_of(64)));
    expect_invalid("set_label: the label");
    cr_expect_str_eq(t->label, "kept", "a refused label changed the tensor's");
    cr_expect_eq(tg_set_label(t, "%s", name_of(63)), t, "%s", tg_errmsg(ctx));
    /* the next op's label: refused, and the op fails rather than going unnamed */
    cr_assert_eq(tg_set_requires_grad(t, true), TG_OK);
    tg_tape_label_next(tape, "%s", name_of(100));
    cr_expect_null(tg_tanh(tape, t));
    expect_invalid("tape_label_next: the label");
    cr_expect_not_null(tg_tanh(tape, t), "the refusal held past one op: %s", tg_errmsg(ctx));
}

Test(module_names, two_children_of_one_name_are_refused) {
    tg_module *net = user("net");
    cr_assert_eq(tg_module_add_child(net, tg_linear_new(ctx, "net.fc", 2, 2, true, NULL, 1)), TG_OK);
    cr_expect_eq(tg_module_add_child(net, tg_linear_new(ctx, "net.fc", 2, 2, true, NULL, 2)),
                 TG_ERR_INVALID);
    expect_invalid("'net.fc' cannot join the tree of 'net': module 'net.fc' has that name already");
    cr_expect_eq(tg_module_child_count(net), 1);
    /* one nested in the other's names: its parameters could be the other's */
    cr_expect_eq(tg_module_add_child(net, tg_linear_new(ctx, "net.fc.inner", 2, 2, true, NULL, 3)),
                 TG_ERR_INVALID);
    expect_invalid("module 'net.fc' has a name around its own");
    tg_module_free(net);
}

Test(module_names, a_parameter_among_a_childs_names_is_refused) {
    tg_module *net = user("net");
    cr_assert_eq(tg_module_add_child(net, tg_linear_new(ctx, "net.fc", 2, 2, true, NULL, 1)), TG_OK);
    cr_expect_null(tg_module_add_param(net, "fc.weight", TG_SHAPE(2, 2), NULL, 1));
    expect_invalid("module 'net' cannot take 'net.fc.weight': the parameter 'net.fc.weight' of "
                   "module 'net.fc' has that name");
    cr_expect_null(tg_module_add_param(net, "fc.scale", TG_SHAPE(2), NULL, 1));
    expect_invalid("it is among the names of module 'net.fc'");
    cr_expect_not_null(tg_module_add_param(net, "fc_scale", TG_SHAPE(2), NULL, 1), "%s", tg_errmsg(ctx));
    tg_module_free(net);
}

/* The other order: the parameter first, then a child whose names it sits among. */
Test(module_names, a_child_around_a_parameter_is_refused) {
    tg_module *net = user("net");
    cr_assert_not_null(tg_module_add_param(net, "fc.weight", TG_SHAPE(2, 2), NULL, 1));
    cr_expect_eq(tg_module_add_child(net, tg_linear_new(ctx, "net.fc", 2, 2, true, NULL, 1)),
                 TG_ERR_INVALID);
    expect_invalid("'net.fc' cannot be a child of 'net': the parameter 'net.fc.weight' of 'net' "
                   "is among its names");
    tg_module *own = user("net.own");
    cr_assert_eq(tg_module_add_child(net, own), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_null(tg_module_add_param(net, "own.w", TG_SHAPE(2), NULL, 1));
    expect_invalid("among the names of module 'net.own'");
    tg_module_free(net);
}

/* Deeper: a grandchild's tree meets a name already in the root's tree. */
Test(module_names, a_subtree_is_checked_whole) {
    tg_module *net = user("net"), *blk = user("net.blk");
    cr_assert_eq(tg_module_add_child(net, blk), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_not_null(tg_module_add_param(net, "blk2.fc.weight", TG_SHAPE(2, 2), NULL, 1));
    tg_module *blk2 = user("net.blk2");
    cr_assert_eq(tg_module_add_child(blk2, tg_linear_new(ctx, "net.blk2.fc", 2, 2, true, NULL, 1)), TG_OK);
    cr_expect_eq(tg_module_add_child(net, blk2), TG_ERR_INVALID);
    expect_invalid("'net.blk2' cannot be a child of 'net': the parameter 'net.blk2.fc.weight'");
    tg_module_free(net);
}

Test(module_names, builtin_models_still_build) {
    tg_module *m = tg_resnet_new(ctx, "resnet", &(tg_resnet_config){.channels = 1, .classes = 3, .depth = 8, .width = 4, .skip = true});
    cr_expect_not_null(m, "%s", tg_errmsg(ctx));
    tg_module_free(m);
}
