/*
 * tests/test_cli_guard.c — `tapegrad train --guard` as issue 22 asks: SGD at lr 50 blows up at
 * its first step; guarded, every rescue is printed as it happens (step, why, the new lr), the
 * run learns past 80% test accuracy and ends with a summary; the guard's flags are checked.
 */
#include "cli_run.h"

TestSuite(cli_guard, .init = capture_cli_output);

Test(cli_guard, sgd_at_lr_50_is_rescued_and_learns) {
    cr_assert_eq(TRAIN("--model", "mlp", "--optimizer", "sgd", "--lr", "50", "--steps", "200", "--guard"), 0);
    fflush(stdout);
    const char *out = read_all(cr_get_redirected_stdout());
    const char *first = strstr(out, "guard: step 1: loss ");
    cr_expect(first && strstr(first, "rolled back, lr 50 -> 25"), "the first step's blow-up, as it happens: %s", out);
    int rescue_lines = 0;
    for (const char *at = out; (at = strstr(at, ": rolled back, lr ")); at++) rescue_lines++;
    const char *summary = strstr(out, "guard: skipped ");
    long long rescues = -1;
    cr_assert(summary && sscanf(strstr(summary, "; ") ? strstr(summary, "; ") : "", "; %lld rescue", &rescues) == 1,
              "%s", out);
    cr_expect_eq(rescue_lines, rescues, "one line per rescue: %s", out);
    const char *advice = strstr(summary, "\n  advice: ");
    cr_expect(advice && strstr(advice, "learning rate"), "the refusals come with advice: %s", summary);
    cr_expect(summary > first, "the summary comes last");
    const char *at = strstr(out, "test accuracy ");
    double accuracy = 0, final_loss = NAN;
    cr_assert(at && sscanf(at, "test accuracy %lf", &accuracy) == 1, "%s", out);
    cr_expect_gt(accuracy, 80.0, "%s", out);
    at = strstr(out, "final training loss ");
    cr_assert(at && sscanf(at, "final training loss %lf", &final_loss) == 1, "%s", out);
    cr_expect(isfinite(final_loss), "%s", out);
}

Test(cli_guard, the_guard_flags_are_checked_and_documented) {
    cr_expect_eq(TRAIN("--guard", "--guard-factor", "1"), 2, "a factor of 1 lowers nothing");
    cr_expect_eq(TRAIN("--guard", "--guard-floor", "0"), 2);
    cr_expect_eq(TRAIN("--guard", "--guard-grow", "2.5"), 2);
    cr_expect_eq(TRAIN("--help"), 0);
    fflush(stdout);
    const char *help = read_all(cr_get_redirected_stdout());
    const char *flags[] = {"--guard-factor X", "--guard-floor X", "--guard-grow N", "--guard-z X"};
    for (int i = 0; i < 4; i++) cr_expect(strstr(help, flags[i]), "--help lacks %s", flags[i]);
}
