/*
 * tests/test_cli_advice.c — `tapegrad train` prints every finding with its advice: the study's
 * vanishing sigmoid net gets the count of its vanishing layers and sigmoid's remedies, the
 * exploding run the blow-up, its NaN and its dead ReLUs, each followed by an advice line.
 */
#include "cli_run.h"

TestSuite(cli_advice, .init = capture_cli_output);

static const char *read_stdout(void) {
    fflush(stdout);
    return read_all(cr_get_redirected_stdout());
}

static int count_lines_starting(const char *text, const char *start) {
    int n = 0;
    for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        n += strncmp(line, start, strlen(start)) == 0;
    return n;
}

/* The study's vanishing run (20-layer sigmoid MLP, Xavier, SGD lr 0.01 momentum 0.9), shorter. */
Test(cli_advice, the_vanishing_sigmoid_net_gets_the_count_and_sigmoid_advice) {
    run_config c = {.model = MODEL_MLP, .depth = 20, .width = 64, .activation = TG_ACT_SIGMOID,
                    .init = tg_init_xavier(TG_ACT_SIGMOID), .data = DATA_DIGITS,
                    .opt = {.kind = TG_OPT_SGD, .lr = 0.01f, .momentum = 0.9f}, .steps = 20,
                    .batch = 64, .seed = 1, .threads = 1};
    run_result r;
    run_training(&c, &r, NULL, NULL);
    cr_assert_str_empty(r.error);
    const tg_finding *f = NULL;
    for (int i = 0; i < r.n_findings; i++)
        if (r.findings[i].kind == TG_FINDING_VANISHING) f = &r.findings[i];
    cr_assert_not_null(f, "%s", r.onset_summary);
    cr_expect(strstr(f->what, "the first ") && strstr(f->what, "of 20 parameter tensors"), "%s", f->what);
    cr_expect(strstr(f->what, "'mlp.layer0.weight'"), "the worst is the first layer: %s", f->what);
    cr_expect(strstr(f->advice, "With sigmoid") && strstr(f->advice, "`tapegrad study vanishing`"),
              "%s", f->advice);
    run_result_free(&r);
}

Test(cli_advice, every_finding_train_prints_has_an_advice_line) {
    cr_assert_eq(TRAIN("--depth", "8", "--init", "he", "--optimizer", "sgd", "--lr", "0.5",
                       "--momentum", "0.9", "--steps", "60"), 0);
    const char *text = read_stdout();
    int findings = count_lines_starting(text, "finding: "), advice = count_lines_starting(text, "  advice: ");
    cr_expect_geq(findings, 2, "the blow-up and its NaN at least: %s", text);
    cr_expect_eq(findings, advice, "%s", text);
    cr_expect(strstr(text, "finding: the global gradient norm grew"), "%s", text);
    cr_expect(strstr(text, "  advice: Lower the learning rate"), "%s", text);
    cr_expect(strstr(text, "finding: the first NaN/Inf appeared at step"), "%s", text);
}
