/*
 * tests/test_cli_curvature.c — `tapegrad train --curvature N`: the Hessian's top eigenvalue on
 * the step's batch every N steps, printed as lr x lambda_max against 2 (advice once when over),
 * and the measurement does not change the run (the same parameters, the same loss);
 * `--instruments` adds the trace and the Jacobian's spectrum, recorded in summary.json, the CSV
 * and the report's charts.
 */
#include "cli_run.h"

#include <jansson.h>

TestSuite(cli_curvature, .init = capture_cli_output);

/* The line "steps N, final training loss X, ..." of a run. */
static void outcome_of(const char *out, char *line, size_t size) {
    const char *at = strstr(out, "steps ");
    cr_assert_not_null(at, "no outcome line: %s", out);
    size_t n = strcspn(at, "\n");
    snprintf(line, size, "%.*s", (int)n, at);
}

Test(cli_curvature, measures_every_n_steps_without_changing_the_run) {
    cr_assert_eq(TRAIN("--model", "mlp", "--steps", "60", "--curvature", "20"), 0);
    fflush(stdout);
    const char *out = read_all(cr_get_redirected_stdout());
    int lines = 0;
    double lambda = 0, ratio = 0;
    for (const char *at = out; (at = strstr(at, "curvature: step ")); at++) {
        int step;
        cr_assert_eq(sscanf(at, "curvature: step %d: lambda_max %lf, lr x lambda_max %lf", &step,
                            &lambda, &ratio), 3, "%s", at);
        cr_expect_eq(step, 20 * lines);
        cr_expect_gt(lambda, 0.0, "the loss is not concave along its top direction");
        lines++;
    }
    cr_expect_eq(lines, 3, "%s", out);
    cr_expect(ratio < 2, "Adam's default rate on the digits is below the edge: %s", out);
    cr_expect_null(strstr(out, "  advice: Lower the learning rate below"), "advice when under 2: %s", out);
    char measured[256], plain[256];
    outcome_of(out, measured, sizeof measured);
    fseek(cr_get_redirected_stdout(), 0, SEEK_END);
    long mark = ftell(cr_get_redirected_stdout());
    cr_assert_eq(TRAIN("--model", "mlp", "--steps", "60"), 0);
    fflush(stdout);
    fseek(cr_get_redirected_stdout(), mark, SEEK_SET);
    outcome_of(read_all(cr_get_redirected_stdout()), plain, sizeof plain);
    cr_expect_str_eq(measured, plain, "the measurement changed the run");
}

Test(cli_curvature, says_when_the_rate_is_past_the_edge) {
    cr_assert_eq(TRAIN("--model", "mlp", "--optimizer", "sgd", "--lr", "3", "--steps", "3",
                       "--curvature", "1"), 0);
    fflush(stdout);
    const char *out = read_all(cr_get_redirected_stdout());
    const char *first = strstr(out, "curvature: step 0: ");
    cr_assert_not_null(first, "%s", out);
    cr_expect(strstr(first, "(above 2)"), "%s", out);
    const char *advice = strstr(first, "\n  advice: ");
    cr_expect(advice && strstr(advice, "learning rate"), "%s", out);
}

/* Whether the file at path (of any size) holds needle. */
static bool file_contains(const char *path, const char *needle) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    char *text = malloc((size_t)size + 1);
    cr_assert_not_null(text);
    text[fread(text, 1, (size_t)size, f)] = '\0';
    fclose(f);
    bool found = strstr(text, needle) != NULL;
    free(text);
    return found;
}

/* The values of summary.json's run 0 series `name`; how many (at most max). */
static int series_of(json_t *root, const char *name, double *values, int max) {
    json_t *run = json_array_get(json_object_get(json_array_get(json_object_get(root, "experiments"), 0), "runs"), 0);
    json_t *series = json_object_get(json_object_get(run, "instruments"), name);
    json_t *v = json_object_get(series, "values");
    int n = 0;
    for (; n < max && n < (int)json_array_size(v); n++) values[n] = json_number_value(json_array_get(v, n));
    return n;
}

Test(cli_curvature, instruments_recorded_in_the_summary_the_csv_and_the_report) {
    char dir[64];
    temp_dir_make(dir, "tg-instruments");
    char out_dir[96];
    snprintf(out_dir, sizeof out_dir, "%s/report", dir);
    cr_assert_eq(TRAIN("--model", "mlp", "--depth", "4", "--steps", "21", "--curvature", "10",
                       "--instruments", "lambda,trace,jacobian", "--out", out_dir), 0);
    fflush(stdout);
    const char *out = read_all(cr_get_redirected_stdout());
    cr_expect(strstr(out, "curvature: step 20: lambda_max "), "%s", out);
    cr_expect(strstr(out, ", trace "), "%s", out);
    cr_expect(strstr(out, "; Jacobian sigma "), "%s", out);
    char path[160];
    snprintf(path, sizeof path, "%s/summary.json", out_dir);
    json_error_t error;
    json_t *root = json_load_file(path, 0, &error);
    cr_assert_not_null(root, "%s: %s", path, error.text);
    double lambda[4], lr_lambda[4], trace[4], high[4], low[4], mean_square[4], lr[4];
    cr_expect_eq(series_of(root, "hessian.lambda_max", lambda, 4), 3);
    cr_expect_eq(series_of(root, "lr_lambda_max", lr_lambda, 4), 3);
    cr_expect_eq(series_of(root, "hessian.trace", trace, 4), 3);
    cr_expect_eq(series_of(root, "jacobian.sigma_max", high, 4), 3);
    cr_expect_eq(series_of(root, "jacobian.sigma_min", low, 4), 3);
    cr_expect_eq(series_of(root, "jacobian.mean_square", mean_square, 4), 3);
    cr_expect_eq(series_of(root, "lr", lr, 4), 3);
    for (int i = 0; i < 3; i++) {
        cr_expect_float_eq(lr_lambda[i], lr[i] * lambda[i], 1e-6 * lr_lambda[i]);
        cr_expect_gt(trace[i], 0.0, "a cross-entropy MLP's Hessian is mostly positive");
        cr_expect(low[i] > 0 && low[i] <= high[i], "sigma %g..%g", low[i], high[i]);
        /* a mean of squares lies between the extremes' squares (Hutchinson: within its noise) */
        cr_expect(mean_square[i] > 0.5 * low[i] * low[i] && mean_square[i] < 1.5 * high[i] * high[i],
                  "mean square %g outside %g..%g", mean_square[i], low[i] * low[i], high[i] * high[i]);
    }
    json_decref(root);
    snprintf(path, sizeof path, "%s/train.csv", out_dir);
    FILE *csv = fopen(path, "r");
    cr_assert_not_null(csv, "%s", path);
    const char *text = read_all(csv);
    cr_expect(strstr(text, ",20,hessian.trace,"), "no trace at step 20 in the CSV");
    fclose(csv);
    snprintf(path, sizeof path, "%s/index.html", out_dir);
    cr_expect(file_contains(path, "Sharpness: lr x the Hessian"), "no sharpness chart");
    cr_expect(file_contains(path, "input-output Jacobian"), "no Jacobian chart");
    temp_dir_remove(dir);
}

Test(cli_curvature, instruments_need_curvature_and_known_names) {
    cr_expect_eq(TRAIN("--model", "mlp", "--steps", "2", "--instruments", "trace"), 2);
    cr_expect_eq(TRAIN("--model", "mlp", "--steps", "2", "--curvature", "1", "--instruments", "trace,hessian"), 2);
    cr_expect_eq(TRAIN("--model", "mlp", "--steps", "2", "--curvature", "1", "--instruments", ""), 2);
    fflush(stderr);
    const char *err = read_all(cr_get_redirected_stderr());
    cr_expect(strstr(err, "give --curvature"), "%s", err);
    cr_expect(strstr(err, "lambda, trace and jacobian, got 'trace,hessian'"), "%s", err);
}
