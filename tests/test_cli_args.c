/*
 * tests/test_cli_args.c — the tool as a Unix tool: "did you mean" for typos, --opt=value,
 * evaluate-only (--steps 0 --load), regression CSVs reported as MSE, `params` listing the
 * parameter names, a warning for a --hook pattern that matches nothing, and a plugin's op as
 * the MLP's activation.
 */
#include <sys/stat.h>

#include "cli/args.h"
#include "cli/report.h"
#include "helpers.h"

#include <criterion/redirect.h>

static void quiet(void) {
    cr_redirect_stdout();
    cr_redirect_stderr();
}

TestSuite(cli_args, .init = quiet);

#define TRAIN(...) run_train((int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(char *)), \
                             (char **)(const char *[]){__VA_ARGS__})
#define PARAMS(...) run_params((int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(char *)), \
                               (char **)(const char *[]){__VA_ARGS__})

static const char *read_all(FILE *f) {
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    return text;
}

static void expect_output_has(bool from_stdout, const char *fragment) {
    fflush(from_stdout ? stdout : stderr);
    const char *text = read_all(from_stdout ? cr_get_redirected_stdout() : cr_get_redirected_stderr());
    cr_expect(strstr(text, fragment) != NULL, "%s \"%s\" lacks \"%s\"", from_stdout ? "stdout" : "stderr",
              text, fragment);
}

Test(cli_args, typos_get_the_nearest_word) {
    const char *flags[] = {"--steps", "--seed", "--save", "--hook", "--lr"};
    cr_expect_str_eq(closest_word("--stpes", flags, 5), "--steps", "a swap of neighbours is one edit");
    cr_expect_str_eq(closest_word("--sed", flags, 5), "--seed");
    cr_expect_null(closest_word("--learning-rate", flags, 5), "nothing near");
    const char *commands[] = {"study", "train", "params"};
    cr_expect_str_eq(closest_word("trian", commands, 3), "train");
    cr_expect_null(closest_word("x", commands, 3));
    char hint[64];
    cr_expect_str_eq(did_you_mean("--stpes", flags, 5, hint, sizeof hint), "; did you mean '--steps'?");
    cr_expect_str_eq(did_you_mean("--zzz", flags, 5, hint, sizeof hint), "");
}

Test(cli_args, train_with_a_typo_exits_2_suggesting_the_option) {
    cr_expect_eq(TRAIN("--stpes", "5"), 2);
    expect_output_has(false, "unknown option '--stpes'; did you mean '--steps'?");
}

Test(cli_args, misspelled_values_get_the_nearest_choice_and_bad_numbers_their_range) {
    cr_expect_eq(TRAIN("--norm", "bach"), 2);
    cr_expect_eq(TRAIN("--optimizer", "adma"), 2);
    cr_expect_eq(TRAIN("--task", "regresion"), 2);
    cr_expect_eq(TRAIN("--data", "digts"), 2);
    cr_expect_eq(TRAIN("--init", "xavir"), 2);
    cr_expect_eq(TRAIN("--lr", "-1"), 2);
    cr_expect_eq(TRAIN("--steps", "2.5"), 2);
    fflush(stderr);
    const char *err = read_all(cr_get_redirected_stderr());
    const char *expected[] = {
        "got 'bach'; did you mean 'batch'?",
        "'adma' (sgd, adam, adamw or rmsprop); did you mean 'adam'?",
        "did you mean 'regression'?",
        "got 'digts'; did you mean 'digits'?",
        "got 'xavir'; did you mean 'xavier'?",
        "--lr: '-1' is not a valid value (expected a number from 0 to 100)",
        "--steps: '2.5' is not a valid value (expected a whole number from 0 to 10000000)",
    };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
        cr_expect(strstr(err, expected[i]), "stderr \"%s\" lacks \"%s\"", err, expected[i]);
}

Test(cli_args, opt_equals_value_is_opt_value) {
    char *argv[] = {"tapegrad", "train", "--steps=5", "--data=csv:a=b.csv", "--anomaly", "-x=1"};
    split_args args;
    cr_assert_eq(split_equals(6, argv, &args), 0);
    const char *want[] = {"tapegrad", "train", "--steps", "5", "--data", "csv:a=b.csv", "--anomaly", "-x=1"};
    cr_assert_eq(args.argc, 8);
    for (int i = 0; i < 8; i++) cr_expect_str_eq(args.argv[i], want[i]);
    cr_expect_null(args.argv[8]);
    split_args_free(&args);
}

/* y = 2a - b + 0.5 c^2 - 0.2497: a real-valued target (a class reader refused -0.2497) */
static void write_regression_csv(const char *path) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "a,b,c,y\n");
    tg_rng rng;
    tg_rng_seed(&rng, 3);
    for (int i = 0; i < 300; i++) {
        double a = 2 * tg_rng_uniform(&rng) - 1, b = 2 * tg_rng_uniform(&rng) - 1, c = 2 * tg_rng_uniform(&rng) - 1;
        fprintf(f, "%.5f,%.5f,%.5f,%.5f\n", a, b, c, 2 * a - b + 0.5 * c * c - 0.2497);
    }
    fclose(f);
}

Test(cli_args, regression_csv_trains_reports_mse_and_evaluates_a_loaded_model) {
    char dir[64], csv[128], data[160], weights[128];
    temp_dir_make(dir, "tg-cli-args");
    snprintf(csv, sizeof csv, "%s/reg.csv", dir);
    snprintf(data, sizeof data, "csv:%s", csv);
    snprintf(weights, sizeof weights, "%s/w.safetensors", dir);
    write_regression_csv(csv);
    cr_expect_eq(TRAIN("--data", data, "--steps", "3"), 2, "classification is the default: refused");
    expect_output_has(false, "(a real-valued target: --task regression)");
    cr_assert_eq(TRAIN("--task", "regression", "--data", data, "--steps", "200", "--width", "16",
                       "--depth", "2", "--save", weights), 0);
    cr_expect_eq(TRAIN("--task", "regression", "--data", data, "--steps", "0", "--width", "16",
                       "--depth", "2", "--load", weights), 0, "evaluate only");
    expect_output_has(true, "final training MSE");
    cr_expect_eq(TRAIN("--steps", "0"), 2, "--steps 0 needs a model to evaluate");
    temp_dir_remove(dir);
}

Test(cli_args, evaluate_only_prints_the_loaded_models_held_out_figures) {
    char dir[64], weights[128];
    temp_dir_make(dir, "tg-cli-args");
    snprintf(weights, sizeof weights, "%s/w.safetensors", dir);
    cr_assert_eq(TRAIN("--depth", "2", "--width", "16", "--steps", "40", "--save", weights), 0);
    cr_expect_eq(TRAIN("--depth", "2", "--width", "16", "--steps", "0", "--load", weights), 0);
    expect_output_has(true, "evaluated the loaded model (--steps 0): held-out loss");
    temp_dir_remove(dir);
}

Test(cli_args, params_lists_the_names_train_uses) {
    cr_expect_eq(PARAMS("--model", "mlp", "--depth", "2", "--norm", "batch"), 0);
    fflush(stdout);
    const char *text = read_all(cr_get_redirected_stdout());
    const char *names[] = {"mlp.layer0.weight", "mlp.layer0.bias", "mlp.layer1.weight",
                           "mlp.layer0.norm.running_mean"};
    for (int i = 0; i < 4; i++) cr_expect(strstr(text, names[i]), "%s lacks %s", text, names[i]);
    cr_expect(strstr(text, "[64,64]") && strstr(text, "buffer"), "%s", text);
    cr_expect_eq(PARAMS("--model", "mlpp"), 2);
}

static const char *plugin(void) {
    static char path[4096];
    const char *dir = getenv("TAPEGRAD_TEST_PLUGINS");
    cr_assert_not_null(dir, "TAPEGRAD_TEST_PLUGINS is not set (run the suite with zig build test)");
    snprintf(path, sizeof path, "%s/libplugin_swish.so", dir);
    return path;
}

Test(cli_args, a_hook_pattern_that_matches_nothing_is_warned_about) {
    cr_expect_eq(TRAIN("--steps", "2", "--depth", "2", "--plugin", plugin(), "--hook", "mpl.*:print_norm"), 0);
    expect_output_has(false, "warning: --hook mpl.*:print_norm matched no parameter or node");
}

Test(cli_args, a_plugins_op_is_the_mlps_activation) {
    cr_expect_eq(TRAIN("--steps", "5", "--depth", "2", "--activation", "swish", "--plugin", plugin()), 0);
    cr_expect_eq(TRAIN("--steps", "5", "--depth", "2", "--activation", "swish:beta=2", "--plugin", plugin()), 0);
    cr_expect_eq(TRAIN("--steps", "5", "--activation", "swish", "--plugin", plugin(), "--model", "residual"), 2);
    cr_expect_eq(TRAIN("--steps", "5", "--activation", "swoosh", "--plugin", plugin()), 1);
    expect_output_has(false, "--activation swoosh: no such activation or op");
}

Test(cli_args, csv_dash_reads_standard_input) {
    char dir[64];
    temp_dir_make(dir, "tg-stdin");
    char path[96];
    snprintf(path, sizeof path, "%s/in.csv", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 40; i++) fprintf(f, "%d,%d,%d\n", i % 7, (i * 3) % 5, i % 2);
    fclose(f);
    cr_assert_not_null(freopen(path, "r", stdin));
    cr_expect_eq(TRAIN("--data", "csv:-", "--batch", "8", "--steps", "3"), 0);
    expect_output_has(true, "steps 3, final training loss");
    temp_dir_remove(dir);
}
