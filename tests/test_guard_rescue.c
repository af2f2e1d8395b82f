/*
 * tests/test_guard_rescue.c — the step guard with an optimizer attached: a refused step rolls
 * back to a state a twin optimizer reaches on its own (parameters, Adam's moments and step
 * counts, buffers, bit for bit), the rate halves, holds at its floor and grows back, a schedule's
 * rate is followed, most steps refused raise the alarm, a new level costs no rate, two guards
 * that commit the same verdicts stay alike, and a guarded step allocates nothing.
 */
#include "fixture.h"

TestSuite(guard_rescue, .init = fixture_setup, .fini = fixture_teardown);

typedef struct events {
    tg_guard_event_kind kinds[128];
    int n;
    tg_guard_event last;
    char text[256];
} events;

static void record_event(const tg_guard_event *event, void *user) {
    events *e = user;
    if (e->n < 128) e->kinds[e->n++] = event->kind;
    e->last = *event;
    cr_expect_eq(tg_guard_event_text(event, e->text, sizeof e->text), TG_OK);
}

static tg_tensor *parameter(const float *values) {
    tg_tensor *w = tg_from_data(ctx, TG_SHAPE(4), values);
    cr_assert(w && tg_set_requires_grad(w, true) == TG_OK, "%s", tg_errmsg(ctx));
    return w;
}

/* The gradient of sum(w * c_step) into w: c_step is the step's own direction. */
static void take_gradient(tg_tensor *w, int step, float scale) {
    const float c[4] = {scale * sinf((float)step), scale * cosf((float)step), 0.5f * scale,
                        scale * (-1.0f + 0.1f * (float)step)};
    tg_tape_reset(tape);
    tg_tensor *k = tg_tape_from_data(tape, TG_SHAPE(4), c);
    cr_assert_eq(tg_backward(tape, tg_sum(tape, tg_mul(tape, w, k))), TG_OK, "%s", tg_errmsg(ctx));
}

static double noise_loss(int step) { return 2.0 + 0.1 * sin(step); }
static double noise_norm(int step) { return 1.0 + 0.05 * cos(3.0 * step); }

/* With trust 2 the good copies are the states before the updates of steps 0, 2, 4, ...; the copy
 * of step 2 becomes the good one once steps 3 and 4 are accepted too, so a refusal at step 5
 * restores the state of two updates: the twin's after steps 0 and 1. Both then take the same
 * step at the halved rate and still agree bit for bit, which they do only if the optimizer's
 * state came back too: SGD's momentum, Adam's moments and step counts (its bias correction),
 * RMSprop's square averages and momentum. */
static void expect_rollback_to_the_twin(const tg_optimizer_config *kind, const char *name) {
    const float init[4] = {0.1f, -0.2f, 0.3f, 0.4f};
    tg_tensor *a = parameter(init), *b = parameter(init);
    tg_tensor *stat = tg_zeros(ctx, TG_SHAPE(2)); /* a running statistic the forward pass moves */
    tg_optimizer *opt_a = tg_optimizer_new(ctx, &a, 1, kind), *opt_b = tg_optimizer_new(ctx, &b, 1, kind);
    tg_guard_config config = tg_guard_defaults();
    config.trust = 2;
    tg_guard *g = tg_guard_new(ctx, &config);
    cr_assert(opt_a && opt_b && g, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_guard_attach(g, opt_a, &stat, 1), TG_OK, "%s", tg_errmsg(ctx));
    for (int step = 0; step < 5; step++) {
        stat->data[0] = (float)step;
        take_gradient(a, step, step >= 3 ? 100.0f : 1.0f); /* steps 3 and 4 do the damage */
        cr_assert_eq(tg_guard_check(g, step, noise_loss(step), noise_norm(step)), TG_GUARD_ACCEPT);
        tg_optimizer_step_zero_grad(opt_a);
        if (step >= 2) continue;
        take_gradient(b, step, 1.0f);
        tg_optimizer_step_zero_grad(opt_b);
    }
    cr_assert_neq(memcmp(a->data, b->data, sizeof init), 0, "%s: the damage moved a", name);
    stat->data[0] = 5.0f;
    take_gradient(a, 5, 1.0f);
    cr_expect_eq(tg_guard_check(g, 5, NAN, 1.0), TG_GUARD_SKIP_NONFINITE);
    cr_expect_eq(memcmp(a->data, b->data, sizeof init), 0, "%s: a is back where the twin is: %g %g %g %g vs "
                 "%g %g %g %g", name, a->data[0], a->data[1], a->data[2], a->data[3], b->data[0], b->data[1],
                 b->data[2], b->data[3]);
    cr_expect_eq(stat->data[0], 2.0f, "the buffer as it was when the state was copied");
    cr_expect_not(tg_grad_is_set(a), "the refused step's gradient is dropped");
    cr_expect_float_eq(tg_optimizer_lr(opt_a), 0.5f * kind->lr, 1e-9f);
    tg_optimizer_set_lr(opt_b, tg_optimizer_lr(opt_a));
    for (int step = 6; step < 8; step++) {
        take_gradient(a, step, 1.0f);
        take_gradient(b, step, 1.0f);
        cr_expect_eq(tg_guard_check(g, step, noise_loss(step), noise_norm(step)), TG_GUARD_ACCEPT);
        tg_optimizer_step_zero_grad(opt_a);
        tg_optimizer_step_zero_grad(opt_b);
    }
    cr_expect_eq(memcmp(a->data, b->data, sizeof init), 0, "%s: the next steps agree: the state came back", name);
    tg_guard_stats st;
    tg_guard_get_stats(g, &st);
    cr_expect(st.rescues == 1 && st.skipped == 1 && st.nonfinite == 1);
    tg_guard_free(g);
    tg_optimizer_free(opt_a);
    tg_optimizer_free(opt_b);
}

Test(guard_rescue, rollback_restores_what_a_twin_optimizer_reached) {
    const tg_optimizer_config kinds[] = {
        {.kind = TG_OPT_SGD, .lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.01f},
        {.kind = TG_OPT_ADAM, .lr = 0.01f},
        {.kind = TG_OPT_ADAMW, .lr = 0.01f, .weight_decay = 0.1f},
        {.kind = TG_OPT_RMSPROP, .lr = 0.01f, .momentum = 0.5f},
    };
    const char *names[] = {"sgd", "adam", "adamw", "rmsprop"};
    for (int k = 0; k < 4; k++) expect_rollback_to_the_twin(&kinds[k], names[k]);
}

/* SGD at lr 1, growth after 3 clean steps, floor a quarter. */
Test(guard_rescue, the_rate_halves_holds_at_its_floor_grows_back_and_follows_a_schedule) {
    tg_tensor *w = parameter((const float[]){1, 2, 3, 4});
    tg_optimizer_config sgd = {.kind = TG_OPT_SGD, .lr = 1.0f, .momentum = 0.9f};
    tg_optimizer *opt = tg_optimizer_new(ctx, &w, 1, &sgd);
    tg_guard_config config = tg_guard_defaults();
    config.growth_interval = 3;
    config.min_lr_scale = 0.25;
    tg_guard *g = tg_guard_new(ctx, &config);
    cr_assert_eq(tg_guard_attach(g, opt, NULL, 0), TG_OK, "%s", tg_errmsg(ctx));
    events seen = {0};
    tg_guard_on_event(g, record_event, &seen);
    /* what each step gives the guard: 1 an ordinary step, 0 a NaN loss */
    const int ordinary[] = {1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    const float lr_after[] = {1, 1, 1, 1, 1, 1, 0.5f, 0.5f, 0.5f, 0.5f, 0.25f, 0.25f, 0.25f, 0.25f, 0.25f,
                              0.5f, 0.5f, 0.5f, 1, 1, 1, 1, 1};
    for (int step = 0; step < 23; step++) {
        take_gradient(w, step, 1.0f);
        tg_guard_verdict v = tg_guard_check(g, step, ordinary[step] ? noise_loss(step) : NAN, noise_norm(step));
        cr_expect_eq(v == TG_GUARD_ACCEPT, ordinary[step], "step %d", step);
        if (v == TG_GUARD_ACCEPT) tg_optimizer_step_zero_grad(opt);
        cr_expect_float_eq(tg_optimizer_lr(opt), lr_after[step], 1e-7f, "step %d: lr %g", step, tg_optimizer_lr(opt));
        if (step == 12) cr_expect(strstr(seen.text, "rolled back, lr 0.25 (at its floor)"), "%s", seen.text);
        if (step == 6) cr_expect(strstr(seen.text, "step 6: loss nan: rolled back, lr 1 -> 0.5"), "%s", seen.text);
        if (step == 7) cr_expect(strstr(seen.text, "skipped, lr kept at 0.5"), "a refusal at the restored state: %s", seen.text);
    }
    const tg_guard_event_kind expected[] = {TG_GUARD_RESCUE, TG_GUARD_SKIP, TG_GUARD_RESCUE, TG_GUARD_RESCUE,
                                            TG_GUARD_GROW, TG_GUARD_GROW};
    cr_assert_eq(seen.n, 6);
    for (int i = 0; i < 6; i++) cr_expect_eq(seen.kinds[i], expected[i], "event %d", i);
    tg_guard_stats st;
    tg_guard_get_stats(g, &st);
    cr_expect(st.rescues == 3 && st.growths == 2 && st.skipped == 4 && st.lowest_lr_scale == 0.25 &&
              st.lr_scale == 1.0 && st.lr == 1.0, "rescues %lld growths %lld", (long long)st.rescues, (long long)st.growths);
    /* a schedule sets its own rate: the guard scales that one */
    tg_optimizer_set_lr(opt, 0.1f);
    take_gradient(w, 23, 1.0f);
    tg_guard_check(g, 23, NAN, 1.0);
    cr_expect_float_eq(tg_optimizer_lr(opt), 0.05f, 1e-8f);
    cr_expect(seen.last.lr_before == 0.1f && seen.last.lr_after == 0.05f, "%s", seen.text);
    tg_guard_free(g);
    tg_optimizer_free(opt);
}

/* Most recent steps refused: the alarm rises once, with an event, and clears when steps pass again. */
Test(guard_rescue, most_steps_refused_raise_the_alarm) {
    tg_guard *g = tg_guard_new(ctx, NULL);
    events seen = {0};
    tg_guard_on_event(g, record_event, &seen);
    for (int step = 0; step < 10; step++) tg_guard_check(g, step, noise_loss(step), noise_norm(step));
    tg_guard_stats st;
    for (int step = 10; step < 31; step++) {
        tg_guard_check(g, step, NAN, 1.0);
        tg_guard_get_stats(g, &st);
        cr_expect_eq(st.alarm, step >= 19, "step %d: %d of %d refused", step, st.recent_refused, st.recent_checked);
    }
    int alarms = 0;
    for (int i = 0; i < seen.n; i++) alarms += seen.kinds[i] == TG_GUARD_ALARM;
    cr_expect_eq(alarms, 1);
    for (int step = 31; step < 80; step++) tg_guard_check(g, step, noise_loss(step), noise_norm(step));
    tg_guard_get_stats(g, &st);
    cr_expect(!st.alarm && st.alarms == 1 && st.recent_refused == 0);
    tg_guard_free(g);
}

/* A level the run really moved to, attached: the first refusal rolls back and halves the rate;
 * the refusals at the restored state lower nothing, and once they settle as the new level the
 * rate gets back what the streak took. */
Test(guard_rescue, a_new_level_costs_no_rate) {
    tg_tensor *w = parameter((const float[]){1, 2, 3, 4});
    tg_optimizer_config sgd = {.kind = TG_OPT_SGD, .lr = 0.1f};
    tg_optimizer *opt = tg_optimizer_new(ctx, &w, 1, &sgd);
    tg_guard *g = tg_guard_new(ctx, NULL);
    tg_guard_attach(g, opt, NULL, 0);
    events seen = {0};
    tg_guard_on_event(g, record_event, &seen);
    int step = 0;
    for (; step < 20; step++) tg_guard_check(g, step, noise_loss(step), noise_norm(step));
    cr_expect_eq(tg_guard_check(g, step++, 5.0, 3.0), TG_GUARD_SKIP_OUTLIER);
    cr_expect_eq(seen.kinds[seen.n - 1], TG_GUARD_RESCUE);
    cr_expect_float_eq(tg_optimizer_lr(opt), 0.05f, 1e-8f);
    tg_guard_verdict v;
    do v = tg_guard_check(g, step, 5.0 + 0.1 * sin(step), 3.0 + 0.1 * cos(step));
    while (v != TG_GUARD_ACCEPT && ++step < 60);
    cr_expect_lt(step, 21 + tg_guard_defaults().settle, "settled at step %d", step);
    cr_expect_eq(seen.kinds[seen.n - 1], TG_GUARD_NEW_LEVEL);
    cr_expect_float_eq(tg_optimizer_lr(opt), 0.1f, 1e-8f, "%s", seen.text);
    tg_guard_stats st;
    tg_guard_get_stats(g, &st);
    cr_expect(st.rescues == 1 && st.new_levels == 1);
    tg_guard_free(g);
    tg_optimizer_free(opt);
}

/* Data parallelism: each rank judges the same reduced numbers, but here one would accept a step
 * the other refuses; both commit the agreed refusal and stay alike, parameters and rate. */
Test(guard_rescue, guards_that_commit_the_same_verdicts_stay_alike) {
    const float init[4] = {0.5f, 0.5f, -0.5f, 1.0f};
    tg_tensor *w[2] = {parameter(init), parameter(init)};
    tg_optimizer_config adam = {.kind = TG_OPT_ADAM, .lr = 0.01f};
    tg_optimizer *opt[2];
    tg_guard *g[2];
    for (int r = 0; r < 2; r++) {
        opt[r] = tg_optimizer_new(ctx, &w[r], 1, &adam);
        g[r] = tg_guard_new(ctx, NULL);
        cr_assert_eq(tg_guard_attach(g[r], opt[r], NULL, 0), TG_OK);
    }
    for (int step = 0; step < 40; step++) {
        double loss = noise_loss(step), norm = noise_norm(step);
        tg_guard_verdict agreed = TG_GUARD_ACCEPT;
        for (int r = 0; r < 2; r++) {
            tg_guard_verdict mine = tg_guard_judge(g[r], loss, norm);
            if (r == 1 && step % 7 == 6) mine = TG_GUARD_SKIP_OUTLIER; /* rank 1 saw something */
            if (mine != TG_GUARD_ACCEPT) agreed = mine;
        }
        for (int r = 0; r < 2; r++) {
            take_gradient(w[r], step, 1.0f);
            cr_assert_eq(tg_guard_commit(g[r], step, loss, norm, agreed), TG_OK);
            if (agreed == TG_GUARD_ACCEPT) tg_optimizer_step_zero_grad(opt[r]);
        }
    }
    cr_expect_eq(memcmp(w[0]->data, w[1]->data, sizeof init), 0);
    cr_expect_eq(tg_optimizer_lr(opt[0]), tg_optimizer_lr(opt[1]));
    tg_guard_stats s0, s1;
    tg_guard_get_stats(g[0], &s0);
    tg_guard_get_stats(g[1], &s1);
    cr_expect(s0.rescues == s1.rescues && s0.rescues > 0 && s0.growths == s1.growths);
    for (int r = 0; r < 2; r++) {
        tg_guard_free(g[r]);
        tg_optimizer_free(opt[r]);
    }
}

/* A guarded training loop (an MLP with batch norm, Adam, rescues and growths) allocates nothing
 * once the first step has sized the tape. */
Test(guard_rescue, a_guarded_step_allocates_nothing) {
    tally count = {.fail_at = -1};
    tg_ctx *c = tg_ctx_new_with_allocator(tally_alloc, &count);
    tg_tape *t = tg_tape_new(c);
    tg_mlp_config mc = {.in = 4, .out = 3, .width = 8, .depth = 3, .activation = TG_ACT_RELU,
                        .norm = TG_NORM_BATCH, .seed = 1};
    tg_module *mlp = tg_mlp_new(c, "m", &mc);
    tg_tensor *params[16], *state[32], *buffers[32];
    int n = tg_module_params(mlp, params, 16), n_state = tg_module_state(mlp, state, 32), n_buffers = 0;
    for (int i = 0; i < n_state; i++) {
        bool trained = false;
        for (int k = 0; k < n; k++) trained |= state[i] == params[k];
        if (!trained) buffers[n_buffers++] = state[i];
    }
    cr_assert_gt(n_buffers, 0, "batch norm's running statistics");
    tg_optimizer_config oc = {.kind = TG_OPT_ADAM, .lr = 1e-2f};
    tg_optimizer *opt = tg_optimizer_new(c, params, n, &oc);
    tg_guard_config gc = tg_guard_defaults();
    gc.growth_interval = 4;
    tg_guard *g = tg_guard_new(c, &gc);
    events seen = {0};
    cr_assert(opt && g && tg_guard_attach(g, opt, buffers, n_buffers) == TG_OK, "%s", tg_errmsg(c));
    tg_guard_on_event(g, record_event, &seen);
    tg_tensor *x = tg_zeros(c, TG_SHAPE(5, 4)), *y = tg_zeros(c, TG_SHAPE(5));
    tg_fill_normal(x, 0, 1, 1);
    long before = 0;
    for (int step = 0; step < 40; step++) {
        if (step == 1) before = count.allocations;
        tg_tape_reset(t);
        tg_tensor *loss = tg_cross_entropy(t, tg_module_forward(mlp, t, x), y);
        cr_assert_eq(tg_backward(t, loss), TG_OK, "%s", tg_errmsg(c));
        double norm = 0;
        tg_clip_grad_norm(params, n, INFINITY, 2.0, false, &norm);
        double judged = step % 9 == 8 ? NAN : loss->data[0]; /* a NaN now and then: rescues */
        if (tg_guard_check(g, step, judged, norm) == TG_GUARD_ACCEPT) tg_optimizer_step_zero_grad(opt);
    }
    cr_expect_eq(count.allocations, before, "%ld allocations in steps 2..40", count.allocations - before);
    tg_guard_stats st;
    tg_guard_get_stats(g, &st);
    cr_expect(st.rescues > 0 && st.growths > 0, "rescues %lld, growths %lld", (long long)st.rescues, (long long)st.growths);
    tg_guard_free(g);
    tg_optimizer_free(opt);
    tg_module_free(mlp);
    tg_tape_free(t);
    tg_ctx_free(c);
}
