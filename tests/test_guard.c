/* tests/test_guard.c — the step guard's judgement: non-finite steps and outliers against the
 * running median are refused and counted, ordinary noise is not, a growing blow-up stays
 * refused while a steady new level is accepted, a collapse of the gradient norm is caught and a
 * fitted run's wobbles are not. Its rescues (rollback, the rate) are in test_guard_rescue.c. */
#include "fixture.h"

TestSuite(guard, .init = fixture_setup, .fini = fixture_teardown);

/* Events as they come: their kinds, and the text of the last one. */
typedef struct events {
    tg_guard_event_kind kinds[128];
    int n;
    char text[256];
} events;

static void record_event(const tg_guard_event *event, void *user) {
    events *e = user;
    if (e->n < 128) e->kinds[e->n++] = event->kind;
    cr_expect_eq(tg_guard_event_text(event, e->text, sizeof e->text), TG_OK);
}

/* A loss wobbling around 2 and a gradient norm around 1: ordinary training. */
static void feed_noise(tg_guard *g, int from, int to) {
    for (int step = from; step < to; step++)
        cr_assert_eq(tg_guard_check(g, step, 2.0 + 0.1 * sin(step), 1.0 + 0.05 * cos(3.0 * step)),
                     TG_GUARD_ACCEPT, "step %d of ordinary noise skipped", step);
}

Test(guard, non_finite_steps_are_skipped_from_the_start) {
    tg_guard *g = tg_guard_new(ctx, NULL);
    cr_assert_not_null(g, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_guard_check(g, 0, NAN, 1.0), TG_GUARD_SKIP_NONFINITE);
    cr_expect_eq(tg_guard_check(g, 1, 2.0, INFINITY), TG_GUARD_SKIP_NONFINITE);
    cr_expect_eq(tg_guard_check(g, 2, 2.0, 1.0), TG_GUARD_ACCEPT);
    tg_guard_stats s;
    cr_assert_eq(tg_guard_get_stats(g, &s), TG_OK);
    cr_expect(s.checked == 3 && s.skipped == 2 && s.nonfinite == 2 && s.outliers == 0);
    cr_expect(s.first_skipped_step == 0 && s.last_skipped_step == 1);
    tg_guard_free(g);
}

Test(guard, a_spike_is_skipped_after_warm_up_and_noise_is_not) {
    tg_guard *g = tg_guard_new(ctx, NULL);
    cr_assert_not_null(g);
    cr_expect_eq(tg_guard_check(g, 0, 50.0, 1.0), TG_GUARD_ACCEPT, "no outliers before warm-up");
    feed_noise(g, 1, 40);
    cr_expect_eq(tg_guard_check(g, 40, 2.0, 30.0), TG_GUARD_SKIP_OUTLIER, "a gradient-norm spike");
    cr_expect_eq(tg_guard_check(g, 41, 40.0, 1.0), TG_GUARD_SKIP_OUTLIER, "a loss spike");
    cr_expect_eq(tg_guard_check(g, 42, 1.0, 0.5), TG_GUARD_ACCEPT, "falling is never an outlier");
    feed_noise(g, 43, 60);
    tg_guard_stats s;
    cr_assert_eq(tg_guard_get_stats(g, &s), TG_OK);
    cr_expect(s.skipped == 2 && s.outliers == 2 && s.first_skipped_step == 40 && s.last_skipped_step == 41);
    cr_expect(s.last_z >= 0.0 && s.last_z < 6.0, "z %g", s.last_z);
    tg_guard_free(g);
}

/* A blow-up that keeps growing stays refused (its values are no level); one that settles at a
 * steady new level is accepted after `settle` refusals in a row, and the level is the window
 * from then on, so the test does not refuse the run forever. */
Test(guard, a_growing_blow_up_stays_refused_and_a_steady_new_level_is_accepted) {
    tg_guard *g = tg_guard_new(ctx, NULL);
    feed_noise(g, 0, 20);
    for (int step = 20; step < 80; step++) {
        double growth = pow(1.5, step - 20);
        cr_expect_eq(tg_guard_check(g, step, 10.0 * growth, 5.0 * growth), TG_GUARD_SKIP_OUTLIER,
                     "step %d: a growing blow-up must not become the new median", step);
    }
    tg_guard_free(g);

    g = tg_guard_new(ctx, NULL);
    events seen = {0};
    tg_guard_on_event(g, record_event, &seen);
    feed_noise(g, 0, 20);
    int settle = tg_guard_defaults().settle;
    for (int k = 0; k < settle - 1; k++)
        cr_expect_eq(tg_guard_check(g, 20 + k, 6.0 + 0.2 * sin(k), 4.0 + 0.1 * cos(k)), TG_GUARD_SKIP_OUTLIER,
                     "refusal %d of the new level", k);
    cr_expect_eq(tg_guard_check(g, 20 + settle - 1, 6.1, 4.05), TG_GUARD_ACCEPT, "the level settles");
    cr_expect_eq(seen.kinds[seen.n - 1], TG_GUARD_NEW_LEVEL);
    cr_expect(strstr(seen.text, "accepted as the run's new level"), "%s", seen.text);
    for (int step = 20 + settle; step < 80; step++)
        cr_expect_eq(tg_guard_check(g, step, 6.0 + 0.2 * sin(step), 4.0 + 0.1 * cos(step)), TG_GUARD_ACCEPT,
                     "step %d at the new level", step);
    cr_expect_eq(tg_guard_check(g, 80, 30.0, 4.0), TG_GUARD_SKIP_OUTLIER, "and spikes above it are still caught");
    tg_guard_stats st;
    tg_guard_get_stats(g, &st);
    cr_expect_eq(st.new_levels, 1);
    tg_guard_free(g);
}

/* A gradient norm that collapses while the loss stays near its start (a net whose units died)
 * is refused; one that falls as the loss falls to a fraction of its start is a fit, and a run
 * that has fit its data is judged against its starting level: a batch whose tiny loss is five
 * times the median is no outlier, a loss back near the start is. */
Test(guard, a_collapse_is_refused_and_a_fitted_runs_wobbles_are_not) {
    tg_guard *g = tg_guard_new(ctx, NULL);
    feed_noise(g, 0, 20);
    cr_expect_eq(tg_guard_check(g, 20, 2.0, 0.2), TG_GUARD_SKIP_OUTLIER, "the norm fell to a fifth, the loss did not");
    tg_guard_stats st;
    tg_guard_get_stats(g, &st);
    cr_expect_gt(st.last_z, tg_guard_defaults().z_threshold);
    cr_expect_eq(tg_guard_check(g, 21, 0.8, 0.2), TG_GUARD_ACCEPT, "both fell: the run is fitting");
    for (int step = 22; step < 60; step++) /* fitted: losses near 0.01, norms near 0.2 */
        cr_expect_eq(tg_guard_check(g, step, 0.01 + 0.005 * sin(step), 0.2 + 0.05 * cos(step)), TG_GUARD_ACCEPT,
                     "step %d", step);
    cr_expect_eq(tg_guard_check(g, 60, 0.07, 0.6), TG_GUARD_ACCEPT, "a hard batch of a fitted run");
    cr_expect_eq(tg_guard_check(g, 61, 1.5, 3.0), TG_GUARD_SKIP_OUTLIER, "back toward the start: a blow-up");
    tg_guard_free(g);
}

Test(guard, threshold_zero_skips_only_non_finite_and_bad_configs_are_refused) {
    tg_guard_config c = tg_guard_defaults();
    c.z_threshold = 0.0;
    tg_guard *g = tg_guard_new(ctx, &c);
    feed_noise(g, 0, 20);
    cr_expect_eq(tg_guard_check(g, 20, 1e6, 1e6), TG_GUARD_ACCEPT);
    cr_expect_eq(tg_guard_check(g, 21, NAN, 1.0), TG_GUARD_SKIP_NONFINITE);
    tg_guard_free(g);
    c = tg_guard_defaults();
    c.warmup = c.window + 1;
    cr_expect_null(tg_guard_new(ctx, &c));
    expect_errmsg_has(ctx, "guard", "warmup");
}

/* PyTorch's clip_grad_norm_(error_if_nonfinite=True): the status says so and nothing is scaled. */
Test(guard, clip_grad_norm_can_refuse_a_non_finite_total) {
    tg_tensor *w = tg_set_label(tg_from_data(ctx, TG_SHAPE(2), (float[]){1, 1}), "w");
    tg_set_requires_grad(w, true);
    cr_assert_eq(tg_backward(tape, tg_sum(tape, tg_scale(tape, w, INFINITY))), TG_OK);
    double total = 0;
    cr_expect_eq(tg_clip_grad_norm(&w, 1, 1.0, 2.0, false, &total), TG_OK, "silently, by default");
    cr_expect(isinf(total));
    cr_expect_eq(tg_clip_grad_norm(&w, 1, 1.0, 2.0, true, &total), TG_ERR_NUMERIC);
    expect_errmsg_has(ctx, "clip_grad_norm", "inf");
    cr_expect(isinf(w->grad[0]), "nothing was scaled");
}

/* Judging changes nothing but last_z; committing an agreed verdict (here: another rank's skip
 * over a step this guard would accept) counts it and keeps the step out of the window, so two
 * guards that commit the same verdicts stay alike whatever each would have judged. */
Test(guard, judge_then_commit_lets_ranks_apply_an_agreed_verdict) {
    tg_guard *a = tg_guard_new(ctx, NULL), *b = tg_guard_new(ctx, NULL);
    cr_assert(a && b, "%s", tg_errmsg(ctx));
    feed_noise(a, 0, 20);
    feed_noise(b, 0, 20);
    tg_guard_stats before, after;
    tg_guard_get_stats(a, &before);
    cr_expect_eq(tg_guard_judge(a, 2.0, 30.0), TG_GUARD_SKIP_OUTLIER);
    cr_expect_eq(tg_guard_judge(a, 2.0, 30.0), TG_GUARD_SKIP_OUTLIER, "judging twice: the same");
    tg_guard_get_stats(a, &after);
    cr_expect(after.checked == before.checked && after.skipped == 0, "judging counted nothing");
    /* step 20: a would accept, the ranks agreed to skip; both commit the skip */
    cr_expect_eq(tg_guard_judge(a, 2.05, 1.02), TG_GUARD_ACCEPT);
    cr_expect_eq(tg_guard_commit(a, 20, 2.05, 1.02, TG_GUARD_SKIP_OUTLIER), TG_OK);
    cr_expect_eq(tg_guard_commit(b, 20, 2.05, 1.02, TG_GUARD_SKIP_OUTLIER), TG_OK);
    tg_guard_get_stats(a, &after);
    cr_expect(after.checked == 21 && after.skipped == 1 && after.outliers == 1 &&
              after.first_skipped_step == 20, "the agreed skip is counted");
    /* the windows stayed alike: the same z for the next step */
    tg_guard_judge(a, 2.3, 1.1);
    tg_guard_judge(b, 2.3, 1.1);
    tg_guard_stats za, zb;
    tg_guard_get_stats(a, &za);
    tg_guard_get_stats(b, &zb);
    cr_expect_eq(za.last_z, zb.last_z);
    cr_expect_eq(tg_guard_commit(a, 21, NAN, 1.0, TG_GUARD_ACCEPT), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "guard_commit: step 21", "cannot be accepted");
    tg_guard_free(a);
    tg_guard_free(b);
}
