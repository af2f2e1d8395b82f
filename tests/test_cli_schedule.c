/*
 * tests/test_cli_schedule.c — `tapegrad train --schedule`: the rates a run took in its summary,
 * the spellings refused with what is valid, a warm-up longer than the run refused before any
 * work, the guard's factor on the schedule, the option in --help; and `tapegrad params`
 * printing the model's summary.
 */
#include "cli_run.h"

TestSuite(cli_schedule, .init = capture_cli_output);

#define PARAMS(...) run_params((int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(char *)), \
                               (char **)(const char *[]){__VA_ARGS__})

static const char *captured(bool from_stdout) {
    fflush(from_stdout ? stdout : stderr);
    return read_all(from_stdout ? cr_get_redirected_stdout() : cr_get_redirected_stderr());
}

/* warm-up over 5 of 20 steps at --lr 0.01: 0.002 first, 0.01 at the top; the cosine then ends
 * one step short of 0: 0.005 (1 + cos(pi 14 / 15)) = 1.09e-04. */
Test(cli_schedule, the_summary_gives_the_rates_the_run_took) {
    cr_assert_eq(TRAIN("--depth", "2", "--width", "16", "--steps", "20", "--lr", "0.01", "--schedule",
                       "warmup:5,cosine"), 0);
    const char *text = captured(true);
    cr_expect(strstr(text, "schedule warmup:5,cosine: lr 0.002 at the first step, 0.01 at its highest, "
                           "1.09e-04 at the last"), "%s", text);
}

/* StepLR(5, 0.5) over 12 steps at 0.1: 0.1, 0.05, then 0.025 from step 10. */
Test(cli_schedule, step_decay) {
    cr_assert_eq(TRAIN("--depth", "2", "--width", "16", "--steps", "12", "--optimizer", "sgd", "--lr", "0.1",
                       "--schedule", "step:5:0.5"), 0);
    const char *text = captured(true);
    cr_expect(strstr(text, "schedule step:5:0.5: lr 0.1 at the first step, 0.1 at its highest, 0.025 at the last"),
              "%s", text);
}

Test(cli_schedule, bad_spellings_say_what_is_valid) {
    const char *bad[] = {"cosin", "warmup:0", "warmup:5,", "warmup:5;cosine", "step:5", "step:0:0.5", "step:5:-1",
                         "warmup:x,cosine", "linear,warmup:5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(TRAIN("--steps", "5", "--schedule", bad[i]), 2, "%s", bad[i]);
    const char *text = captured(false);
    cr_expect(strstr(text, "--schedule: expected cosine, linear, step:N:GAMMA or warmup:N[,cosine|,linear|,step:N:GAMMA]"),
              "%s", text);
    cr_expect(strstr(text, "got 'cosin'; did you mean 'cosine'?"), "%s", text);
}

Test(cli_schedule, a_warmup_longer_than_the_run_is_refused_before_training) {
    cr_expect_eq(TRAIN("--steps", "20", "--schedule", "warmup:30,linear"), 2);
    const char *text = captured(false);
    cr_expect(strstr(text, "--schedule warmup:30,linear: the warm-up (30 steps) leaves no step of --steps 20 to "
                           "decay over"), "%s", text);
    cr_expect_eq(TRAIN("--depth", "2", "--width", "8", "--steps", "10", "--schedule", "warmup:30"), 0,
                 "a warm-up alone needs no step after it");
}

/* SGD at 0.5 on 8 layers blows up now and then: the guard's rescues scale the scheduled rate. */
Test(cli_schedule, the_guard_reports_its_factor_on_the_schedule) {
    cr_assert_eq(TRAIN("--depth", "8", "--optimizer", "sgd", "--lr", "0.5", "--guard", "--schedule", "step:100:0.5",
                       "--steps", "150"), 0);
    const char *text = captured(true);
    cr_expect(strstr(text, "schedule step:100:0.5: lr 0.5 at the first step, 0.5 at its highest"), "%s", text);
    cr_expect(strstr(text, "rescue") && strstr(text, "the guard's factor on the schedule"), "%s", text);
}

Test(cli_schedule, help_names_it) {
    cr_expect_eq(TRAIN("--help"), 0);
    cr_expect(strstr(captured(true), "--schedule S"));
}

Test(cli_schedule, params_prints_the_models_summary) {
    cr_assert_eq(PARAMS("--model", "residual", "--depth", "2", "--width", "16"), 0);
    const char *text = captured(true);
    cr_expect(strncmp(text, "name ", 5) == 0, "%s", text);
    cr_expect(strstr(text, "resmlp") && strstr(text, "parameter") && strstr(text, "[16,64]"), "%s", text);
    cr_expect(strstr(text, "total: ") && strstr(text, "trainable)"), "%s", text);
}
