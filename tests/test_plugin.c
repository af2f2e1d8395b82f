/* tests/test_plugin.c — loading plugins: success, and each failure with its message. The build
 * puts the plugins in $TAPEGRAD_TEST_PLUGINS. */
#include <stdlib.h>

#include "fixture.h"

TestSuite(plugin, .init = fixture_setup, .fini = fixture_teardown);

static const char *plugin_path(const char *file) {
    static char path[4096];
    const char *dir = getenv("TAPEGRAD_TEST_PLUGINS");
    cr_assert_not_null(dir, "TAPEGRAD_TEST_PLUGINS is not set (run the suite with zig build test)");
    snprintf(path, sizeof path, "%s/%s", dir, file);
    return path;
}

Test(plugin, swish_plugin_registers_an_op_and_a_hook) {
    cr_assert_eq(tg_plugin_load(ctx, plugin_path("libplugin_swish.so")), TG_OK, "%s", tg_errmsg(ctx));
    int id = tg_op_find(ctx, "swish");
    cr_assert_geq(id, 0);
    tg_op_info info;
    tg_op_get_info(ctx, id, &info);
    cr_expect(info.native && info.has_backward);
    cr_expect_str_eq(info.attr_signature, "beta:f32");
    cr_expect_eq(check_registered_gradients(ctx, id), 1, "the plugin op passes the gradient check");

    tg_tensor *x = leaf(ctx, TG_SHAPE(2), (float[]){0, 2});
    tg_tensor *y = tg_call(tape, "swish", &x, 1, &TG_F32("beta", 1.0f), 1);
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    expect_close(y->data, (float[]){0, 2.0f / (1.0f + expf(-2.0f))}, 2, 1e-6f, "swish");

    tg_hook_fn fn = NULL;
    cr_assert_eq(tg_hook_find(ctx, "print_norm", &fn, NULL), TG_OK);
    cr_expect_not_null(fn);
    cr_expect_gt(tg_hook_pattern(ctx, "*", TG_PASS_BACKWARD, fn, NULL), 0);
    cr_expect_eq(tg_backward(tape, tg_sum(tape, y)), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_hook_find(ctx, "no_such_hook", &fn, NULL), TG_ERR_NOT_FOUND);
    expect_errmsg_has(ctx, "no hook exported as 'no_such_hook'");
}

Test(plugin, loading_the_same_plugin_twice_reports_the_duplicate_op) {
    cr_assert_eq(tg_plugin_load(ctx, plugin_path("libplugin_swish.so")), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_plugin_load(ctx, plugin_path("libplugin_swish.so")), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "libplugin_swish.so", "entry point failed", "an op named 'swish' is already registered");
}

Test(plugin, a_missing_file_is_an_io_error_naming_it) {
    cr_expect_eq(tg_plugin_load(ctx, "/nonexistent/libnothing.so"), TG_ERR_IO);
    expect_errmsg_has(ctx, "plugin '/nonexistent/libnothing.so': cannot load", "No such file");
}

Test(plugin, a_library_that_is_not_a_plugin_is_refused) {
    cr_expect_eq(tg_plugin_load(ctx, plugin_path("libnot_a_plugin.so")), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "libnot_a_plugin.so", "no 'tapegrad_plugin_abi' symbol");
}

Test(plugin, a_plugin_without_an_entry_point_is_refused) {
    cr_expect_eq(tg_plugin_load(ctx, plugin_path("libno_init.so")), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "libno_init.so", "no 'tapegrad_plugin_init' entry point");
}

Test(plugin, an_abi_mismatch_is_refused) {
    int before = tg_op_count(ctx);
    cr_expect_eq(tg_plugin_load(ctx, plugin_path("libbad_abi.so")), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "libbad_abi.so", "built for plugin ABI 2", "speaks ABI 1");
    cr_expect_eq(tg_op_count(ctx), before, "nothing was registered");
}

Test(plugin, a_failing_entry_point_is_reported_with_the_plugin_path) {
    cr_expect_eq(tg_plugin_load(ctx, plugin_path("libduplicate_op.so")), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "libduplicate_op.so", "entry point failed", "an op named 'relu' is already registered");
}
