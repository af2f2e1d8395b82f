/*
 * tests/test_train_diagnostics.c — the issue-13 runs of `tapegrad train`, through the runner the
 * command uses: --anomaly names the op that created the first Inf, Adam at lr 50 gets an onset
 * naming what grew first, --guard rescues the exploding run of the study.
 */
#include "cli/report.h"
#include "helpers.h"

#include <criterion/redirect.h>

/* The study's exploding run: 8-layer ReLU MLP, He init, SGD lr 0.5 with momentum 0.9. */
static run_config exploding(int steps) {
    run_config c = {.model = MODEL_MLP, .depth = 8, .width = 64, .activation = TG_ACT_RELU,
                    .init = tg_init_he(TG_ACT_RELU), .data = DATA_DIGITS,
                    .opt = {.kind = TG_OPT_SGD, .lr = 0.5f, .momentum = 0.9f}, .steps = steps,
                    .batch = 64, .seed = 1, .threads = 1};
    snprintf(c.name, sizeof c.name, "exploding");
    return c;
}

Test(train_diagnostics, anomaly_names_the_op_that_created_the_first_inf) {
    run_config c = exploding(100);
    c.anomaly = true;
    run_result r;
    run_training(&c, &r, NULL, NULL);
    cr_expect(r.anomaly_stopped, "%s", r.error);
    cr_expect(strstr(r.error, "created from finite inputs") != NULL, "%s", r.error);
    cr_expect(strstr(r.error, "anomaly in the forward pass at step") != NULL, "%s", r.error);
    cr_expect(strstr(r.onset_summary, "anomaly mode stopped step") != NULL, "%s", r.onset_summary);
    cr_expect(strstr(r.onset_summary, "first to grow: 'mlp.layer") != NULL, "%s", r.onset_summary);
    cr_expect_lt(r.steps_done, 100);
    run_result_free(&r);
}

/* Adam normalises its steps: at lr 50 the loss and the weights explode, the gradient does not. */
Test(train_diagnostics, adam_at_lr_50_gets_an_onset_naming_what_grew_first) {
    run_config c = {.model = MODEL_MLP, .depth = 4, .width = 64, .activation = TG_ACT_TANH,
                    .init = tg_init_xavier(TG_ACT_TANH), .data = DATA_DIGITS,
                    .opt = {.kind = TG_OPT_ADAM, .lr = 50.0f}, .steps = 40, .batch = 64, .seed = 1,
                    .threads = 1};
    run_result r;
    run_training(&c, &r, NULL, NULL);
    cr_assert_str_empty(r.error);
    cr_expect(strstr(r.onset_summary, "loss grew") != NULL, "%s", r.onset_summary);
    cr_expect(strstr(r.onset_summary, "first to grow: 'mlp.layer") != NULL, "%s", r.onset_summary);
    cr_expect(strstr(r.onset_summary, "(weights)") != NULL, "the weights, not the gradient: %s", r.onset_summary);
    cr_expect_geq(r.explosion_onset_step, 0, "the loss onset stands in for the gradient's");
    run_result_free(&r);
}

/* Issue 22: the guard rescues the study's exploding run (150 steps, as the full study trains
 * it): rolled back and the rate lowered, it ends finite and learning, not frozen at chance. */
Test(train_diagnostics, the_guard_rescues_the_exploding_run) {
    run_config c = exploding(150);
    c.guard = true;
    run_result r;
    run_training(&c, &r, NULL, NULL);
    cr_assert_str_empty(r.error);
    cr_expect_eq(r.steps_done, 150);
    cr_expect(isfinite(r.loss[149]) && isfinite(r.final_loss), "loss %g, held-out %g", r.loss[149], r.final_loss);
    cr_expect_gt(r.test_accuracy, 0.8, "test accuracy %g", r.test_accuracy);
    cr_expect_gt(r.guard.rescues, 0);
    cr_expect_lt(r.guard.lr, 0.5, "the rate was lowered: %g", r.guard.lr);
    cr_expect_eq(r.guard.checked, 150);
    cr_expect_geq(r.guard.first_skipped_step, 0);
    run_result_free(&r);
}

Test(train_diagnostics, counts_only_watches_without_stopping, .init = cr_redirect_stdout) {
    run_config c = exploding(60);
    c.anomaly_counts = true;
    run_result r;
    run_training(&c, &r, NULL, NULL);
    cr_expect_gt(r.nonfinite_steps, 0);
    cr_expect(strstr(r.first_nonfinite, "step ") == r.first_nonfinite, "%s", r.first_nonfinite);
    run_result_free(&r);
    const char *bad[] = {"--guard-z", "0"};
    cr_redirect_stderr();
    cr_expect_eq(run_train(2, (char **)bad), 2, "a z-score threshold of 0 is refused");
}
