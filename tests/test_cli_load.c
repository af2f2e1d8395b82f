/*
 * tests/test_cli_load.c — `tapegrad train --load` of a checkpoint that does not fit the model
 * (FINDINGS-2 item 9: a ResNet-14's into a ResNet-8 exited 0, the extra tensors ignored without a
 * word) is refused naming the tensors on each side, unless --load-partial (then a warning);
 * `tapegrad params` honours --load, and its messages say "tapegrad params" (item 12).
 */
#include "cli_run.h"

#include <unistd.h>

static char dir[64], r14[128], r8[128];

static void setup(void) {
    capture_cli_output();
    temp_dir_make(dir, "tg-cli-load");
    snprintf(r14, sizeof r14, "%s/r14.safetensors", dir);
    snprintf(r8, sizeof r8, "%s/r8.safetensors", dir);
}

static void teardown(void) {
    unlink(r14);
    unlink(r8);
    rmdir(dir);
}

TestSuite(cli_load, .init = setup, .fini = teardown);

#define RESNET(depth, ...) TRAIN("--model", "resnet", "--depth", depth, "--width", "4", "--steps", "1", \
                                 "--batch", "8", __VA_ARGS__)

static const char *errors(void) {
    fflush(stderr);
    return read_all(cr_get_redirected_stderr());
}

Test(cli_load, a_bigger_models_checkpoint_is_refused_naming_the_extra_tensors) {
    cr_assert_eq(RESNET("14", "--save", r14), 0);
    cr_expect_eq(RESNET("8", "--load", r14), 1);
    const char *err = errors();
    cr_expect(strstr(err, "tapegrad train: --load ") && strstr(err, "does not fit the model: 30 of the "
              "file's 77 tensors are not in the model ('resnet.stage1.block2.bn1.bias', "), "%s", err);
    cr_expect(strstr(err, ", ...)") && strstr(err, "--load-partial"), "%s", err);
}

Test(cli_load, a_smaller_models_checkpoint_is_refused_naming_the_missing_tensors) {
    cr_assert_eq(RESNET("8", "--save", r8), 0);
    cr_expect_eq(RESNET("14", "--load", r8), 1);
    const char *err = errors();
    cr_expect(strstr(err, "30 of the model's 77 tensors are not in the file ('resnet.stage1.block2.conv1.weight'"),
              "%s", err);
}

Test(cli_load, load_partial_loads_what_matches_and_says_what_not) {
    cr_assert_eq(RESNET("14", "--save", r14), 0);
    cr_expect_eq(RESNET("8", "--load", r14, "--load-partial"), 0);
    const char *err = errors();
    cr_expect(strstr(err, "tapegrad train: warning: --load-partial ") &&
              strstr(err, ": loaded 47 of the model's 47 tensors; 30 of the file's 77 tensors are not "
                     "in the model") && strstr(err, "(the file's are ignored)"), "%s", err);
    cr_expect_eq(TRAIN("--load-partial"), 2, "--load-partial without --load");
}

Test(cli_load, a_checkpoint_that_fits_loads_without_a_word) {
    cr_assert_eq(RESNET("8", "--save", r8), 0);
    cr_expect_eq(RESNET("8", "--load", r8), 0);
    cr_expect_null(strstr(errors(), "warning"));
}

Test(cli_load, params_honours_load_and_names_itself) {
    cr_assert_eq(RESNET("14", "--save", r14), 0);
    const char *ok[] = {"--model", "resnet", "--depth", "14", "--width", "4", "--load", r14};
    cr_expect_eq(run_params(8, (char **)ok), 0);
    const char *bigger[] = {"--model", "resnet", "--depth", "8", "--width", "4", "--load", r14};
    cr_expect_eq(run_params(8, (char **)bigger), 1);
    const char *missing[] = {"--load", "/nonexistent/ck.safetensors"};
    cr_expect_eq(run_params(2, (char **)missing), 1);
    const char *bad_data[] = {"--data", "csv:/nonexistent.csv"};
    cr_expect_neq(run_params(2, (char **)bad_data), 0);
    const char *err = errors();
    cr_expect(strstr(err, "tapegrad params: --load ") && strstr(err, "does not fit the model"), "%s", err);
    cr_expect(strstr(err, "tapegrad params: --load: load '/nonexistent/ck.safetensors'"), "%s", err);
    cr_expect(strstr(err, "tapegrad params: --data: read_csv '/nonexistent.csv'"), "%s", err);
    cr_expect_null(strstr(err, "tapegrad train"), "params spoke as train: %s", err);
}

Test(cli_load, help_documents_load_partial) {
    cr_expect_eq(TRAIN("--help"), 0);
    fflush(stdout);
    const char *help = read_all(cr_get_redirected_stdout());
    cr_expect(strstr(help, "--load-partial") && strstr(help, "a\n                     mismatch"), "%s", help);
}

/* `tapegrad inspect FILE`: what a checkpoint holds, from its header (tg_safetensors_list). */
Test(cli_load, inspect_lists_the_tensors_with_dtype_shape_and_totals) {
    cr_assert_eq(RESNET("8", "--save", r8), 0);
    char *argv[] = {r8};
    cr_assert_eq(run_inspect(1, argv), 0);
    fflush(stdout);
    const char *out = read_all(cr_get_redirected_stdout()); /* the training's lines, then inspect's */
    /* the stem's kernel: 4 output channels, 1 input (the digits as 1x8x8 images), 3x3 */
    cr_expect(strstr(out, "resnet.stem.conv.weight") && strstr(out, "F32    [4, 1, 3, 3]"), "%s", out);
    tg_ctx *ctx = tg_ctx_new();
    int n = tg_safetensors_list(ctx, r8, NULL, 0);
    cr_assert_gt(n, 0, "%s", tg_errmsg(ctx));
    tg_safetensors_entry entries[128];
    cr_assert_eq(tg_safetensors_list(ctx, r8, entries, 128), n);
    int64_t elements = 0;
    for (int i = 0; i < n; i++) {
        int64_t product = 1;
        for (int d = 0; d < entries[i].ndim; d++) product *= entries[i].shape[d];
        cr_expect_eq(product, entries[i].elements, "%s", entries[i].name);
        cr_expect_eq(entries[i].bytes, 4 * entries[i].elements, "%s", entries[i].name);
        cr_expect(i == 0 || strcmp(entries[i - 1].name, entries[i].name) < 0, "sorted by name");
        elements += entries[i].elements;
    }
    char totals[128];
    snprintf(totals, sizeof totals, ": %d tensors, %lld elements, %lld bytes of data", n, (long long)elements,
             (long long)(4 * elements));
    cr_expect(strstr(out, totals), "%s lacks %s", out, totals);
    tg_ctx_free(ctx);
    char *missing[] = {"/nonexistent.safetensors"};
    cr_expect_eq(run_inspect(1, missing), 1);
    cr_expect_eq(run_inspect(0, NULL), 2);
    const char *err = errors();
    cr_expect(strstr(err, "tapegrad inspect: load '/nonexistent.safetensors': cannot open"), "%s", err);
}
