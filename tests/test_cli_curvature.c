/*
 * tests/test_cli_curvature.c — `tapegrad train --curvature N`: the Hessian's top eigenvalue on
 * the step's batch every N steps, printed as lr x lambda_max against 2 (advice once when over),
 * and the measurement does not change the run (the same parameters, the same loss).
 */
#include "cli_run.h"

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
