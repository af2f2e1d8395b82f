/*
 * tests/test_schedule.c — schedules the optimizer follows (tg_optimizer_set_schedule): the rates
 * against PyTorch's formulas worked by hand (StepLR, CosineAnnealingLR, LinearLR, a LinearLR
 * warm-up before them), the step taken at that rate, a scheduled run equal bit for bit to one
 * that sets the rate by hand each step, the step guard's factor on the scheduled rate and its
 * rollback of the position, the position in the optimizer's saved state, no allocation per
 * step, and schedules refused with the field named.
 */
#include "fixture.h"
#include "models/models.h"

TestSuite(schedule, .init = fixture_setup, .fini = fixture_teardown);

/* One parameter w = 0 and SGD at base rate lr without momentum: a gradient of 1 moves w by
 * exactly -rate, so each step's w says the rate the step used. */
static tg_optimizer *plain_sgd(tg_tensor **w, float lr) {
    *w = leaf(ctx, TG_SHAPE(1), (float[]){0});
    tg_optimizer *opt = tg_optimizer_new(ctx, w, 1, &(tg_optimizer_config){.kind = TG_OPT_SGD, .lr = lr});
    cr_assert_not_null(opt, "%s", tg_errmsg(ctx));
    return opt;
}

static void unit_gradient(tg_tensor *w) {
    w->grad[0] = 1.0f;
    w->grad_unset = false;
}

/* Steps opt through `n` rates: each reported by tg_optimizer_lr before the step, and taken. */
static void expect_rates(const tg_schedule *s, float lr, const double *want, int n, const char *what) {
    tg_tensor *w;
    tg_optimizer *opt = plain_sgd(&w, lr);
    cr_assert_eq(tg_optimizer_set_schedule(opt, s), TG_OK, "%s: %s", what, tg_errmsg(ctx));
    for (int step = 0; step < n; step++) {
        cr_expect_eq(tg_optimizer_step_count(opt), step);
        cr_expect_float_eq(tg_optimizer_lr(opt), want[step], 1e-6 * lr, "%s: step %d: lr %.9g, want %.9g",
                           what, step, tg_optimizer_lr(opt), want[step]);
        float before = w->data[0];
        unit_gradient(w);
        cr_assert_eq(tg_optimizer_step(opt), TG_OK);
        cr_expect_float_eq(before - w->data[0], want[step], 1e-6 * lr, "%s: step %d took %.9g", what, step,
                           before - w->data[0]);
    }
    tg_optimizer_free(opt);
}

/* StepLR(step_size=3, gamma=0.1): 1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01. */
Test(schedule, step_decay_is_steplr) {
    const double want[] = {1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01};
    expect_rates(&(tg_schedule){.kind = TG_SCHEDULE_STEP, .step_size = 3, .gamma = 0.1f}, 1.0f, want, 8, "step");
}

/* CosineAnnealingLR(T_max=10, eta_min=0.1) from 1: 0.1 + 0.45 (1 + cos(pi t / 10)); cos 36 deg =
 * 0.80901699, cos 72 deg = 0.30901699; then it stays at eta_min (PyTorch's would rise again). */
Test(schedule, cosine_is_cosineannealinglr_and_stays_at_its_floor) {
    const double c36 = 0.80901699, c72 = 0.30901699;
    const double want[] = {1.0, 0.1 + 0.45 * (1 + 0.95105652), 0.1 + 0.45 * (1 + c36), 0.1 + 0.45 * (1 + 0.58778525),
                           0.1 + 0.45 * (1 + c72), 0.55, 0.1 + 0.45 * (1 - c72), 0.1 + 0.45 * (1 - 0.58778525),
                           0.1 + 0.45 * (1 - c36), 0.1 + 0.45 * (1 - 0.95105652), 0.1, 0.1, 0.1};
    expect_rates(&(tg_schedule){.kind = TG_SCHEDULE_COSINE, .total_steps = 10, .min_lr = 0.1f}, 1.0f, want, 13,
                 "cosine");
}

/* LinearLR(start_factor=1/4, total_iters=3) warm-up to 0.1, then constant: 0.025, 0.05, 0.075,
 * 0.1, 0.1. */
Test(schedule, warmup_is_linearlr_from_a_quarter) {
    const double want[] = {0.025, 0.05, 0.075, 0.1, 0.1, 0.1};
    expect_rates(&(tg_schedule){.kind = TG_SCHEDULE_CONSTANT, .warmup_steps = 4}, 0.1f, want, 6, "warm-up");
}

/* Warm-up over 2 steps, then LinearLR(1 -> 0.2 of 0.5, total_iters 8): 0.25, 0.5, then
 * 0.5 - 0.4 t / 8 for t = 0..7, then 0.1. */
Test(schedule, warmup_then_linear_decay) {
    double want[12] = {0.25, 0.5};
    for (int t = 0; t < 8; t++) want[2 + t] = 0.5 - 0.4 * t / 8;
    want[10] = want[11] = 0.1;
    expect_rates(&(tg_schedule){.kind = TG_SCHEDULE_LINEAR, .warmup_steps = 2, .total_steps = 10, .min_lr = 0.1f},
                 0.5f, want, 12, "warm-up, linear");
}

/* SequentialLR(LinearLR warm-up over 2, CosineAnnealingLR(T_max 10)): 0.5, 1, then the cosine
 * from 1 to 0 over 10 steps: half way (step 7) 0.5, at step 12 and after 0. */
Test(schedule, warmup_then_cosine) {
    tg_schedule s = {.kind = TG_SCHEDULE_COSINE, .warmup_steps = 2, .total_steps = 12};
    double want[14];
    for (int step = 0; step < 14; step++)
        want[step] = step < 2 ? (step + 1) / 2.0 : step >= 12 ? 0.0 : 0.5 * (1 + cos(3.14159265358979323846 * (step - 2) / 10.0));
    cr_expect_float_eq(want[7], 0.5, 1e-12);
    expect_rates(&s, 1.0f, want, 14, "warm-up, cosine");
}

/* The base rate is the optimizer's: set_lr moves the whole schedule. */
Test(schedule, the_base_rate_is_the_optimizers) {
    tg_tensor *w;
    tg_optimizer *opt = plain_sgd(&w, 2.0f);
    tg_schedule s = {.kind = TG_SCHEDULE_STEP, .step_size = 1, .gamma = 0.5f};
    cr_assert_eq(tg_optimizer_set_schedule(opt, &s), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_float_eq(tg_optimizer_lr(opt), 2.0f, 0);
    unit_gradient(w);
    tg_optimizer_step(opt);
    cr_expect_float_eq(tg_optimizer_lr(opt), 1.0f, 0);
    tg_optimizer_set_lr(opt, 8.0f);
    cr_expect_float_eq(tg_optimizer_lr(opt), 4.0f, 0, "the schedule's factor on the new base");
    cr_assert_eq(tg_optimizer_set_schedule(opt, NULL), TG_OK);
    cr_expect_float_eq(tg_optimizer_lr(opt), 8.0f, 0, "no schedule: the base rate");
    tg_optimizer_free(opt);
}

/* An MLP on fixed data, Adam: steps `steps` times, the rate set by schedule `s` (attached) or by
 * hand from tg_schedule_lr each step. Returns the parameters' values, concatenated. */
static void train_mlp(const tg_schedule *s, bool attached, int steps, float *out, int64_t n_out) {
    tg_mlp_config c = {.in = 4, .out = 3, .width = 8, .depth = 3, .activation = TG_ACT_TANH,
                       .init = tg_init_xavier(TG_ACT_TANH), .seed = 5};
    tg_module *mlp = tg_mlp_new(ctx, "mlp", &c);
    tg_optimizer *opt = tg_optimizer_new_module(mlp, &(tg_optimizer_config){.kind = TG_OPT_ADAM, .lr = s->lr});
    cr_assert(mlp && opt, "%s", tg_errmsg(ctx));
    tg_schedule attach = *s;
    attach.lr = 0; /* the optimizer's */
    if (attached) cr_assert_eq(tg_optimizer_set_schedule(opt, &attach), TG_OK, "%s", tg_errmsg(ctx));
    float x[8 * 4], y[8];
    for (int i = 0; i < 32; i++) x[i] = sinf(0.7f * (float)i);
    for (int i = 0; i < 8; i++) y[i] = (float)(i % 3);
    for (int step = 0; step < steps; step++) {
        tg_tape_reset(tape);
        tg_tensor *loss = tg_cross_entropy(tape, tg_module_forward(mlp, tape, tg_tape_from_data(tape, TG_SHAPE(8, 4), x)),
                                           tg_tape_from_data(tape, TG_SHAPE(8), y));
        cr_assert(loss && tg_backward(tape, loss) == TG_OK, "%s", tg_errmsg(ctx));
        if (!attached) tg_optimizer_set_lr(opt, tg_schedule_lr(s, step));
        else cr_expect_eq(tg_optimizer_lr(opt), tg_schedule_lr(s, step), "step %d", step);
        tg_optimizer_step_zero_grad(opt);
    }
    int64_t at = 0;
    for (int i = 0; i < tg_module_param_count(mlp); i++) {
        tg_tensor *p = tg_module_param(mlp, i);
        cr_assert_leq(at + p->size, n_out);
        memcpy(out + at, p->data, (size_t)p->size * sizeof *out);
        at += p->size;
    }
    tg_optimizer_free(opt);
    tg_module_free(mlp);
}

Test(schedule, a_scheduled_run_equals_one_that_sets_the_rate_by_hand) {
    const tg_schedule kinds[] = {
        {.kind = TG_SCHEDULE_COSINE, .lr = 0.01f, .warmup_steps = 5, .total_steps = 30, .min_lr = 1e-4f},
        {.kind = TG_SCHEDULE_STEP, .lr = 0.02f, .step_size = 7, .gamma = 0.3f},
        {.kind = TG_SCHEDULE_LINEAR, .lr = 0.01f, .total_steps = 25},
    };
    static float by_hand[256], attached[256];
    for (int k = 0; k < 3; k++) {
        memset(by_hand, 0, sizeof by_hand);
        memset(attached, 0, sizeof attached);
        train_mlp(&kinds[k], false, 30, by_hand, 256);
        train_mlp(&kinds[k], true, 30, attached, 256);
        cr_expect_eq(memcmp(by_hand, attached, sizeof by_hand), 0, "schedule %d: the parameters differ", k);
    }
}

/* The guard's factor multiplies the scheduled rate; its rollback takes the position back with the
 * state, so the schedule replays the steps it undid. */
Test(schedule, the_guard_scales_the_scheduled_rate_and_rolls_its_position_back) {
    tg_tensor *w;
    tg_optimizer *opt = plain_sgd(&w, 1.0f);
    tg_schedule s = {.kind = TG_SCHEDULE_LINEAR, .total_steps = 100, .min_lr = 0};
    cr_assert_eq(tg_optimizer_set_schedule(opt, &s), TG_OK, "%s", tg_errmsg(ctx));
    tg_guard_config config = tg_guard_defaults();
    config.trust = 2;
    tg_guard *g = tg_guard_new(ctx, &config);
    cr_assert_eq(tg_guard_attach(g, opt, NULL, 0), TG_OK, "%s", tg_errmsg(ctx));
    for (int step = 0; step < 10; step++) {
        unit_gradient(w);
        cr_assert_eq(tg_guard_check(g, step, 2.0 + 0.01 * sin(step), 1.0), TG_GUARD_ACCEPT);
        cr_expect_float_eq(tg_optimizer_lr(opt), 1.0 - step / 100.0, 1e-6);
        tg_optimizer_step(opt);
    }
    cr_expect_eq(tg_optimizer_step_count(opt), 10);
    unit_gradient(w);
    cr_assert_eq(tg_guard_check(g, 10, NAN, 1.0), TG_GUARD_SKIP_NONFINITE);
    int64_t position = tg_optimizer_step_count(opt);
    cr_expect(position >= 4 && position <= 8, "rolled back to the state of step %lld", (long long)position);
    cr_expect_float_eq(tg_optimizer_lr(opt), 0.5 * (1.0 - (double)position / 100.0), 1e-6,
                       "half the schedule's rate at the restored position: %g", tg_optimizer_lr(opt));
    tg_guard_stats st;
    tg_guard_get_stats(g, &st);
    cr_expect(st.rescues == 1 && st.lr_scale == 0.5 && st.lr == tg_optimizer_lr(opt));
    float before = w->data[0];
    unit_gradient(w);
    tg_optimizer_step(opt);
    cr_expect_float_eq(before - w->data[0], 0.5 * (1.0 - (double)position / 100.0), 1e-6, "the step took it");
    tg_guard_free(g);
    tg_optimizer_free(opt);
}

/* The position is part of the optimizer's saved state (what the guard's copies and a checkpoint
 * of the optimizer hold), after each parameter's step count. */
Test(schedule, the_position_is_saved_and_loaded_with_the_state) {
    tg_tensor *w;
    tg_optimizer *opt = plain_sgd(&w, 1.0f);
    cr_assert_eq(tgi_optimizer_state_steps(opt), 2, "one per parameter, then the optimizer's");
    float floats[1];
    int64_t steps[2];
    for (int step = 0; step < 3; step++) {
        unit_gradient(w);
        tg_optimizer_step(opt);
    }
    tgi_optimizer_save(opt, floats, steps);
    cr_expect(steps[0] == 3 && steps[1] == 3);
    tg_optimizer_zero_grad(opt);
    for (int step = 0; step < 4; step++) tg_optimizer_step(opt); /* no gradient: w's count stays */
    cr_expect_eq(tg_optimizer_step_count(opt), 7);
    tgi_optimizer_load(opt, floats, steps);
    cr_expect_eq(tg_optimizer_step_count(opt), 3);
    tg_optimizer_free(opt);
}

Test(schedule, a_scheduled_step_allocates_nothing) {
    tally count = {.fail_at = -1};
    tg_ctx *counted = tg_ctx_new_with_allocator(tally_alloc, &count);
    tg_tensor *w = leaf(counted, TG_SHAPE(3), (float[]){1, 2, 3});
    tg_optimizer *opt = tg_optimizer_new(counted, &w, 1, &(tg_optimizer_config){.kind = TG_OPT_ADAM, .lr = 0.1f});
    tg_schedule s = {.kind = TG_SCHEDULE_COSINE, .warmup_steps = 3, .total_steps = 20};
    cr_assert_eq(tg_optimizer_set_schedule(opt, &s), TG_OK);
    long before = count.allocations;
    for (int step = 0; step < 30; step++) {
        unit_gradient(w);
        tg_optimizer_step(opt);
        cr_expect(isfinite(tg_optimizer_lr(opt)));
    }
    cr_expect_eq(count.allocations, before, "%ld allocations in 30 steps", count.allocations - before);
    tg_optimizer_free(opt);
    tg_ctx_free(counted);
}

static void expect_refused(tg_optimizer *opt, tg_schedule s, const char *words) {
    tg_clear_error(ctx);
    cr_expect_eq(tg_optimizer_set_schedule(opt, &s), TG_ERR_INVALID, "%s", words);
    cr_expect(strstr(tg_errmsg(ctx), words), "'%s' lacks '%s'", tg_errmsg(ctx), words);
}

Test(schedule, schedules_out_of_range_are_refused_naming_the_field) {
    tg_tensor *w;
    tg_optimizer *opt = plain_sgd(&w, 0.1f);
    expect_refused(opt, (tg_schedule){.kind = (tg_schedule_kind)9}, "kind 9 is not a tg_schedule_kind");
    expect_refused(opt, (tg_schedule){.kind = TG_SCHEDULE_CONSTANT, .lr = 0.5f}, "lr 0.5 is not the optimizer's rate 0.1");
    expect_refused(opt, (tg_schedule){.kind = TG_SCHEDULE_CONSTANT, .warmup_steps = -1}, "warmup_steps -1");
    expect_refused(opt, (tg_schedule){.kind = TG_SCHEDULE_STEP, .gamma = 0.5f}, "step_size 0 (>= 1)");
    expect_refused(opt, (tg_schedule){.kind = TG_SCHEDULE_STEP, .step_size = 2, .gamma = -1}, "gamma -1");
    expect_refused(opt, (tg_schedule){.kind = TG_SCHEDULE_COSINE, .total_steps = 5, .warmup_steps = 5},
                   "total_steps 5 must be more than warmup_steps 5");
    expect_refused(opt, (tg_schedule){.kind = TG_SCHEDULE_LINEAR, .total_steps = 5, .min_lr = NAN}, "linear: min_lr nan");
    cr_expect_eq(tg_optimizer_set_schedule(opt, &(tg_schedule){.kind = TG_SCHEDULE_CONSTANT, .lr = 0.1f}), TG_OK,
                 "the optimizer's own rate is accepted");
    tg_optimizer_free(opt);
}
