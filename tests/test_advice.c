/*
 * tests/test_advice.c — every verdict comes with advice: the findings of onset detection
 * (vanishing series counted and the worst named past 16 of them, an explosion, the first NaN,
 * anomaly mode's stop, dead ReLUs, saturated sigmoid/tanh and forget gates, watched in the
 * forward pass), and the advice functions of the verdicts made elsewhere (a refused step,
 * lr x lambda_max, a Jacobian's singular values). Each advice must name its numbers and a
 * remedy; the measured fractions are checked against counts made here by hand.
 */
#include "fixture.h"

TestSuite(advice, .init = fixture_setup, .fini = fixture_teardown);

#define expect_has(text, part) cr_expect(strstr((text), (part)) != NULL, "no '%s' in: %s", (part), (text))

/* The finding of that kind in a report, or NULL. */
static const tg_finding *finding_of(const tg_onset_report *r, tg_finding_kind kind) {
    for (int i = 0; i < r->n_findings; i++)
        if (r->findings[i].kind == kind) return &r->findings[i];
    return NULL;
}

static void expect_problem_with_advice(const tg_finding *f) {
    cr_assert_not_null(f);
    cr_expect(f->problem);
    cr_expect(f->what[0] && f->advice[0], "what '%s', advice '%s'", f->what, f->advice);
    expect_has(f->advice, "tapegrad ");
}

/* ---- vanishing: the count and the worst, past TG_MAX_VANISHING ---------------------------- */

/* 30 layers by hand; layers 0..19 get 10^-(6 + 4 (19 - l) / 19) of the largest norm (1):
 * every one below 1e-4, layer 0 the worst at 1e-10; layers 20..29 get 1. */
static double hand_ratio(int layer) {
    return layer < 20 ? pow(10.0, -6.0 - 4.0 * (19 - layer) / 19.0) : 1.0;
}

Test(advice, vanishing_counts_every_series_and_names_the_worst_past_sixteen) {
    tg_recorder *rec = tg_recorder_new(ctx, 16);
    for (int step = 0; step < 8; step++)
        for (int l = 0; l < 30; l++) {
            char name[32];
            snprintf(name, sizeof name, "mlp.layer%d.weight", l);
            tg_stats s = {.count = 1, .l2_norm = hand_ratio(l) * (1.0 + 0.01 * step)};
            cr_assert_eq(tg_recorder_add(rec, step, name, &s), TG_OK);
        }
    tg_onset_report r;
    cr_assert_eq(tg_recorder_detect(rec, NULL, &r), TG_OK);
    cr_expect_eq(r.vanishing_count, 20, "every vanishing series counted");
    cr_assert_eq(r.n_vanishing, TG_MAX_VANISHING, "the worst 16 listed");
    for (int v = 0; v < r.n_vanishing; v++) {
        char want[32];
        snprintf(want, sizeof want, "mlp.layer%d.weight", v);
        cr_expect_str_eq(r.vanishing[v], want, "worst first");
        /* the largest over the 5 steps that found it: the norm grows 1% a step, as the largest */
        cr_expect_float_eq(r.vanishing_ratio[v], hand_ratio(v), 1e-9 * hand_ratio(v));
        cr_expect_eq(r.vanishing_since[v], 0);
    }
    expect_has(r.summary, "20 series vanishing");
    expect_has(r.summary, "'mlp.layer0.weight' (1e-10 of the largest");
    const tg_finding *f = finding_of(&r, TG_FINDING_VANISHING);
    expect_problem_with_advice(f);
    expect_has(f->what, "the first 20 of 30 parameter tensors get at most 1e-06 of the last layer's gradient");
    char worst[160];
    snprintf(worst, sizeof worst, "'mlp.layer0.weight' (%.2g), 'mlp.layer1.weight' (%.2g), "
             "'mlp.layer2.weight' (%.2g)", hand_ratio(0), hand_ratio(1), hand_ratio(2));
    expect_has(f->what, worst);
    cr_expect_str_eq(f->subject, "mlp.layer0.weight");
    cr_expect_float_eq(f->value, 1e-10, 1e-19);
    cr_expect_float_eq(hand_ratio(0), 1e-10, 1e-19);
    /* nothing says what the activation is: the advice names what to try for either kind */
    expect_has(f->advice, "sigmoid, tanh");
    expect_has(f->advice, "ReLU with He init");
    expect_has(f->advice, "`tapegrad study vanishing`");
    tg_recorder_free(rec);
}

Test(advice, vanishing_layers_that_are_not_the_first_are_not_called_the_first) {
    tg_recorder *rec = tg_recorder_new(ctx, 8);
    for (int step = 0; step < 6; step++)
        for (int l = 0; l < 4; l++) {
            char name[32];
            snprintf(name, sizeof name, "fc%d.weight", l);
            tg_stats s = {.count = 1, .l2_norm = l == 2 ? 1e-9 : 1.0}; /* only fc2 */
            tg_recorder_add(rec, step, name, &s);
        }
    tg_onset_report r;
    cr_assert_eq(tg_recorder_detect(rec, NULL, &r), TG_OK);
    const tg_finding *f = finding_of(&r, TG_FINDING_VANISHING);
    cr_assert_not_null(f);
    expect_has(f->what, "1 of 4 parameter tensors get at most 1e-09");
    cr_expect_null(strstr(f->what, "the first"), "%s", f->what);
    tg_recorder_free(rec);
}

Test(advice, layers_with_no_gradient_at_all_are_said_to_get_none) {
    tg_recorder *rec = tg_recorder_new(ctx, 8);
    for (int step = 0; step < 6; step++)
        for (int l = 0; l < 3; l++) {
            char name[32];
            snprintf(name, sizeof name, "fc%d.weight", l);
            tg_stats s = {.count = 1, .l2_norm = l < 2 ? 0.0 : 2.0};
            tg_recorder_add(rec, step, name, &s);
        }
    tg_onset_report r;
    cr_assert_eq(tg_recorder_detect(rec, NULL, &r), TG_OK);
    const tg_finding *f = finding_of(&r, TG_FINDING_VANISHING);
    expect_problem_with_advice(f);
    expect_has(f->what, "the first 2 of 3 parameter tensors get no gradient at all for 5 steps");
    cr_expect_eq(f->value, 0.0);
    tg_recorder_free(rec);
}

/* A deep sigmoid MLP on random data, watched: the vanishing advice knows it is sigmoid. */
Test(advice, a_watched_sigmoid_net_gets_sigmoid_advice) {
    tg_mlp_config c = {.in = 8, .out = 4, .width = 16, .depth = 16, .activation = TG_ACT_SIGMOID, .seed = 3};
    tg_module *mlp = tg_mlp_new(ctx, "mlp", &c);
    cr_assert_not_null(mlp, "%s", tg_errmsg(ctx));
    tg_recorder *rec = tg_recorder_new(ctx, 16);
    cr_assert_gt(tg_recorder_attach_params(rec, "mlp.*.weight"), 0);
    cr_assert_gt(tg_recorder_attach_activations(rec, 1), 0);
    cr_expect_eq(tg_recorder_attach_activations(rec, 1), -1, "once");
    expect_errmsg_has(ctx, "already");
    tg_tensor *x = tg_zeros(ctx, TG_SHAPE(32, 8));
    tg_fill_normal(x, 0.0f, 1.0f, 7);
    for (int step = 0; step < 6; step++) {
        tg_tape_reset(tape);
        tg_tape_set_step(tape, step);
        tg_tensor *loss = tg_sum(tape, tg_module_forward(mlp, tape, x));
        cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
        tg_module_zero_grad(mlp);
    }
    tg_onset_report r;
    cr_assert_eq(tg_recorder_detect(rec, NULL, &r), TG_OK);
    const tg_finding *f = finding_of(&r, TG_FINDING_VANISHING);
    expect_problem_with_advice(f);
    expect_has(f->what, "the first ");
    expect_has(f->advice, "With sigmoid");
    expect_has(f->advice, "`tapegrad study vanishing`");
    cr_expect_null(finding_of(&r, TG_FINDING_SATURATION), "Xavier sigmoid layers do not saturate");
    tg_recorder_free(rec);
    tg_module_free(mlp);
}

/* ---- explosion, the first NaN, anomaly mode ------------------------------------------------ */

Test(advice, an_explosion_and_the_nan_it_ends_in) {
    int64_t steps[40];
    double norms[40];
    for (int i = 0; i < 40; i++) {
        steps[i] = 100 + i;
        norms[i] = i < 31 ? 1.0 : (i == 31 ? 1e6 : (i < 35 ? 1e12 : NAN));
    }
    tg_onset_report r;
    tg_detect_explosion(steps, norms, 40, NULL, &r);
    cr_assert_eq(r.n_findings, 2);
    const tg_finding *e = &r.findings[0], *n = &r.findings[1];
    cr_expect_eq(e->kind, TG_FINDING_EXPLOSION);
    expect_problem_with_advice(e);
    cr_expect_eq(e->step, 130);
    cr_expect_float_eq(e->value, 1e6, 1e-3);
    expect_has(e->what, "the global gradient norm grew 1e+06x between steps 130 and 131");
    expect_has(e->advice, "Lower the learning rate");
    expect_has(e->advice, "clip the global gradient norm");
    expect_has(e->advice, "`tapegrad study clipping`");
    cr_expect_eq(n->kind, TG_FINDING_NONFINITE);
    expect_problem_with_advice(n);
    cr_expect_eq(n->step, 135);
    cr_expect_float_eq(n->value, 5.0, 0.0);
    expect_has(n->what, "step 135 in 'global', 5 steps after the blow-up began (step 130)");
    expect_has(n->advice, "blow-up");
}

Test(advice, a_nan_out_of_nowhere_points_to_anomaly_mode) {
    int64_t steps[10];
    double norms[10];
    for (int i = 0; i < 10; i++) {
        steps[i] = i;
        norms[i] = i == 7 ? NAN : 1.0;
    }
    tg_onset_report r;
    tg_detect_explosion(steps, norms, 10, NULL, &r);
    const tg_finding *n = finding_of(&r, TG_FINDING_NONFINITE);
    expect_problem_with_advice(n);
    cr_expect(isnan(n->value));
    expect_has(n->advice, "anomaly mode");
    expect_has(n->advice, "--anomaly");
}

/* Adam's blow-up: a flat gradient, the weights and the loss run away. Clipping is no remedy. */
Test(advice, weights_that_run_away_first_are_told_apart_from_a_growing_gradient) {
    tg_recorder *rec = tg_recorder_new(ctx, 64);
    tg_tensor *w = tg_set_label(tg_full(ctx, TG_SHAPE(4), 0.1f), "mlp.layer1.weight");
    tg_set_requires_grad(w, true);
    w->grad = tg_full(ctx, TG_SHAPE(4), 1.0f)->data;
    for (int step = 0; step < 20; step++) {
        if (step == 10) tg_fill(w, 50.0f);
        tg_recorder_add_tensor(rec, step, w);
        tg_recorder_add_loss(rec, step, step < 10 ? 2.3 : 900.0 * step);
    }
    tg_onset_report r;
    cr_assert_eq(tg_recorder_detect(rec, NULL, &r), TG_OK);
    const tg_finding *e = finding_of(&r, TG_FINDING_EXPLOSION);
    expect_problem_with_advice(e);
    expect_has(e->what, "the loss grew");
    expect_has(e->what, "'mlp.layer1.weight' took off first (its weights, 500x its baseline at step 10)");
    cr_expect_str_eq(e->subject, "mlp.layer1.weight");
    expect_has(e->advice, "clipping the gradient does not shorten them");
    expect_has(e->advice, "Lower the learning rate");
    tg_recorder_free(rec);
}

static tg_anomaly_report anomaly(const char *op, bool created) {
    tg_anomaly_report a;
    memset(&a, 0, sizeof a);
    a.pass = TG_PASS_FORWARD;
    a.value = INFINITY;
    a.created = created;
    snprintf(a.op, sizeof a.op, "%s", op);
    snprintf(a.node, sizeof a.node, "%s#3", op);
    snprintf(a.source, sizeof a.source, "input 0 'w'");
    return a;
}

Test(advice, anomaly_advice_follows_the_op) {
    static const struct {
        const char *op;
        bool created;
        const char *advice;
    } cases[] = {{"log", true, "log_softmax"},  {"div", true, "epsilon to the denominator"},
                 {"sqrt", true, "sqrt(x + 1e-12)"}, {"exp", true, "subtract the maximum"},
                 {"matmul", true, "overflowed the float range"}, {"add", false, "already held it"}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        tg_recorder *rec = tg_recorder_new(ctx, 8);
        tg_stats ok = {.count = 1, .l2_norm = 1};
        for (int step = 0; step < 4; step++) tg_recorder_add(rec, step, "w", &ok);
        tg_anomaly_report a = anomaly(cases[k].op, cases[k].created);
        cr_assert_eq(tg_recorder_add_anomaly(rec, 4, &a), TG_OK);
        tg_onset_report r;
        cr_assert_eq(tg_recorder_detect(rec, NULL, &r), TG_OK);
        const tg_finding *f = finding_of(&r, TG_FINDING_ANOMALY);
        expect_problem_with_advice(f);
        cr_expect_null(finding_of(&r, TG_FINDING_NONFINITE), "the stop says it, naming the op");
        cr_expect_str_eq(f->subject, cases[k].op);
        cr_expect_eq(f->step, 4);
        expect_has(f->what, "anomaly mode stopped step 4");
        expect_has(f->advice, cases[k].advice);
        tg_recorder_free(rec);
    }
}

/* ---- watched activations ------------------------------------------------------------------- */

/* x [8, 4] times a weight [4] (broadcast over rows) through op; returns the activation. */
static tg_tensor *activation(const char *op, const float *x_values, const float *w_values) {
    tg_tensor *w = tg_set_label(tg_from_data(ctx, TG_SHAPE(4), w_values), "w");
    tg_set_requires_grad(w, true);
    tg_tape_label_next(tape, "layer.out");
    tg_tensor *pre = tg_mul(tape, tg_tape_from_data(tape, TG_SHAPE(8, 4), x_values), w);
    return tg_call(tape, op, &pre, 1, NULL, 0);
}

Test(advice, dead_relus_are_counted_and_named_by_their_layer) {
    tg_recorder *rec = tg_recorder_new(ctx, 4);
    cr_assert_gt(tg_recorder_attach_activations(rec, 1), 0);
    float x[32];
    for (int i = 0; i < 32; i++) x[i] = 1.0f + (float)(i % 7);
    /* units 0, 1, 3 get a negative weight on positive inputs: dead; unit 2 lives */
    tg_tensor *h = activation("relu", x, (float[]){-1, -2, 0.5f, -3});
    int dead = 0;
    for (int u = 0; u < 4; u++) {
        bool alive = false;
        for (int row = 0; row < 8; row++) alive |= h->data[row * 4 + u] != 0.0f;
        dead += !alive;
    }
    cr_assert_eq(dead, 3, "counted by hand");
    cr_assert_eq(tg_backward(tape, tg_sum(tape, h)), TG_OK, "%s", tg_errmsg(ctx));
    tg_onset_report r;
    cr_assert_eq(tg_recorder_detect(rec, NULL, &r), TG_OK);
    const tg_finding *f = finding_of(&r, TG_FINDING_DEAD_RELU);
    expect_problem_with_advice(f);
    cr_expect_str_eq(f->subject, "relu(layer.out)");
    cr_expect_float_eq(f->value, dead / 4.0, 1e-12);
    expect_has(f->what, "75% of the units of 'relu(layer.out)' are 0 for every sample");
    expect_has(f->advice, "leaky");
    expect_has(f->advice, "lower the learning rate");
    expect_has(r.summary, "dead ReLU units: 75% in 'relu(layer.out)'");
    tg_recorder_free(rec);
}

/* A convolution's unit is its channel: dead when 0 at every sample and pixel. */
Test(advice, a_conv_relu_dies_by_channel) {
    float x[2 * 3 * 2 * 2];
    for (int n = 0; n < 2; n++)
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < 4; p++) /* channel 1 negative everywhere; the others once positive */
                x[(n * 3 + c) * 4 + p] = c == 1 ? -1.0f - (float)p : (p == n ? 2.0f : -1.0f);
    tg_activation_stats st;
    tg_activation_stats_compute(tg_relu(tape, tg_tape_from_data(tape, TG_SHAPE(2, 3, 2, 2), x)), &st);
    cr_expect_float_eq(st.dead_fraction, 1.0 / 3, 1e-12, "one channel of three");
}

Test(advice, saturated_tanh_and_sigmoid_values_are_found) {
    static const char *const ops[] = {"tanh", "sigmoid"};
    for (int k = 0; k < 2; k++) {
        tg_tape_reset(tape);
        tg_recorder *rec = tg_recorder_new(ctx, 4);
        cr_assert_gt(tg_recorder_attach_activations(rec, 1), 0);
        float x[32];
        for (int i = 0; i < 32; i++) x[i] = (float)(i % 5) - 2.0f; /* -2..2 */
        tg_tensor *h = activation(ops[k], x, (float[]){8, 8, 8, 0.1f});
        int saturated = 0;
        for (int i = 0; i < 32; i++) {
            float v = h->data[i], low = k ? 0.0f : -1.0f;
            saturated += v <= low + 0.01f || v >= 0.99f;
        }
        cr_assert_eq(tg_backward(tape, tg_sum(tape, h)), TG_OK, "%s", tg_errmsg(ctx));
        tg_onset_report r;
        cr_assert_eq(tg_recorder_detect(rec, NULL, &r), TG_OK);
        const tg_finding *f = finding_of(&r, TG_FINDING_SATURATION);
        expect_problem_with_advice(f);
        cr_expect_float_eq(f->value, saturated / 32.0, 1e-12, "%s", ops[k]);
        cr_expect_geq(f->value, 0.5);
        expect_has(f->what, k ? "within 0.01 of 0 or 1" : "within 0.01 of -1 or 1");
        expect_has(f->advice, "Xavier");
        expect_has(f->advice, "`tapegrad study init`");
        tg_recorder_free(rec);
    }
}

/* An LSTM whose weights are zero and whose forget biases are -10 for half the units and 0 for
 * the others: f = sigmoid(-10) = 4.5e-5 (closed) or 0.5, at every step and sample. */
Test(advice, a_closed_forget_gate_is_found_through_the_lstm_h) {
    tg_rnn_config c = tg_rnn_defaults(TG_RNN_LSTM, 3, 4);
    tg_module *lstm = tg_rnn_new(ctx, "lstm", &c);
    cr_assert_not_null(lstm, "%s", tg_errmsg(ctx));
    tg_tensor *params[4];
    cr_assert_eq(tg_module_params(lstm, params, 4), 4);
    for (int p = 0; p < 4; p++) tg_fill(params[p], 0.0f);
    for (int j = 0; j < 2; j++) params[2]->data[4 + j] = -10.0f; /* bias_ih, forget block */
    tg_recorder *rec = tg_recorder_new(ctx, 4);
    cr_assert_gt(tg_recorder_attach_activations(rec, 1), 0);
    tg_tensor *x = tg_tape_zeros(tape, TG_SHAPE(5, 6, 3));
    tg_tensor *states[6];
    tg_tensor *h = tg_rnn_forward(lstm, tape, x, states);
    cr_assert_not_null(h, "%s", tg_errmsg(ctx));
    tg_activation_stats st;
    tg_activation_stats_compute(states[2], &st);
    cr_expect_float_eq(st.forget_saturated_fraction, 0.5, 1e-12);
    cr_expect_float_eq(st.forget_closed_fraction, 0.5, 1e-12);
    cr_expect(st.saturated_fraction == -1.0 && st.dead_fraction == -1.0);
    cr_assert_eq(tg_backward(tape, tg_sum(tape, h)), TG_OK, "%s", tg_errmsg(ctx));
    tg_onset_report r;
    cr_assert_eq(tg_recorder_detect(rec, NULL, &r), TG_OK);
    const tg_finding *f = finding_of(&r, TG_FINDING_FORGET_GATE);
    expect_problem_with_advice(f);
    cr_expect_str_eq(f->subject, "lstm.h[*]", "the six steps are one entry");
    cr_expect_float_eq(f->value, 0.5, 1e-12);
    expect_has(f->what, "50% of the forget-gate values of 'lstm.h[*]'");
    expect_has(f->what, "erased at every step");
    expect_has(f->advice, "bias at 1");
    expect_has(f->advice, "`tapegrad study recurrent`");
    tg_recorder_free(rec);
    tg_module_free(lstm);
}

Test(advice, evaluation_passes_and_other_steps_are_not_watched) {
    tg_recorder *rec = tg_recorder_new(ctx, 4);
    cr_assert_gt(tg_recorder_attach_activations(rec, 2), 0);
    float x[32];
    for (int i = 0; i < 32; i++) x[i] = 1.0f;
    tg_tape_set_step(tape, 1); /* not a multiple of 2 */
    tg_tensor *h = activation("relu", x, (float[]){-1, -1, -1, -1});
    cr_assert_eq(tg_backward(tape, tg_sum(tape, h)), TG_OK, "%s", tg_errmsg(ctx));
    tg_tape_reset(tape);
    tg_tape_set_step(tape, 2);
    tg_no_grad_begin(tape);
    activation("relu", x, (float[]){-1, -1, -1, -1});
    tg_no_grad_end(tape);
    tg_onset_report r;
    cr_assert_eq(tg_recorder_detect(rec, NULL, &r), TG_OK);
    cr_expect_null(finding_of(&r, TG_FINDING_DEAD_RELU), "%s", r.summary);
    tg_recorder_free(rec);
}

/* ---- the advice functions ------------------------------------------------------------------ */

Test(advice, sharpness_against_two_over_the_learning_rate) {
    tg_finding f = tg_advice_sharpness(0.5, 12.0);
    cr_expect_eq(f.kind, TG_FINDING_SHARPNESS);
    expect_problem_with_advice(&f);
    cr_expect_float_eq(f.value, 6.0, 1e-12);
    expect_has(f.what, "0.5 x 12 = 6 > 2");
    expect_has(f.advice, "below 0.167");
    f = tg_advice_sharpness(0.1, 12.0);
    cr_expect_not(f.problem);
    cr_expect_str_empty(f.advice);
    expect_has(f.what, "edge of stability");
    f = tg_advice_sharpness(0.01, 12.0);
    cr_expect_not(f.problem);
    cr_expect_null(strstr(f.what, "edge"), "%s", f.what);
    f = tg_advice_sharpness(NAN, 12.0);
    cr_expect(!f.problem && isnan(f.value));
    expect_has(f.what, "not measured");
}

Test(advice, a_jacobian_far_from_isometry) {
    tg_finding f = tg_advice_isometry(0.01, 5.0, 1.0);
    expect_problem_with_advice(&f);
    cr_expect_float_eq(f.value, 500.0, 1e-9);
    expect_has(f.what, "0.01 to 5 (500x)");
    expect_has(f.advice, "orthogonal init");
    f = tg_advice_isometry(1e-4, 0.05, 1e-3);
    expect_problem_with_advice(&f);
    expect_has(f.what, "shrink through it, by 0.032");
    expect_has(f.advice, "too small");
    f = tg_advice_isometry(3.0, 20.0, 150.0);
    expect_problem_with_advice(&f);
    expect_has(f.advice, "too large");
    f = tg_advice_isometry(0.0, 1.0, NAN);
    cr_expect(f.problem && isinf(f.value));
    f = tg_advice_isometry(0.8, 1.2, 1.0);
    cr_expect_not(f.problem);
    cr_expect_str_empty(f.advice);
    expect_has(f.what, "close to isometry");
    f = tg_advice_isometry(2.0, 1.0, 1.0);
    cr_expect_not(f.problem, "sigma_max below sigma_min: not measured");
}

Test(advice, refused_steps_and_a_frozen_run) {
    tg_guard_stats s = {.checked = 40, .skipped = 3, .nonfinite = 1, .outliers = 2,
                        .first_skipped_step = 20, .last_skipped_step = 37, .last_z = 14.5};
    tg_finding f = tg_advice_refused_step(TG_GUARD_SKIP_OUTLIER, &s, 0.5);
    expect_problem_with_advice(&f);
    cr_expect_eq(f.step, 37);
    cr_expect_float_eq(f.value, 14.5, 0.0);
    expect_has(f.what, "step 37 refused");
    expect_has(f.what, "14.5 robust deviations");
    expect_has(f.what, "3 of 40 steps refused so far");
    expect_has(f.advice, "from 0.5 to 0.05");
    f = tg_advice_refused_step(TG_GUARD_SKIP_NONFINITE, &s, NAN);
    expect_problem_with_advice(&f);
    cr_expect(isinf(f.value));
    expect_has(f.what, "NaN/Inf");
    expect_has(f.advice, "--anomaly");
    cr_expect_null(strstr(f.advice, "from nan"), "%s", f.advice);
    f = tg_advice_refused_step(TG_GUARD_ACCEPT, &s, 0.5);
    cr_expect_not(f.problem);
    cr_expect_str_empty(f.advice);
    /* the run: 131 of 150 refused, at chance accuracy */
    tg_guard_stats frozen = {.checked = 150, .skipped = 131, .nonfinite = 2, .outliers = 129,
                             .first_skipped_step = 19, .last_skipped_step = 149, .last_z = 30};
    f = tg_advice_refused_step(TG_GUARD_ACCEPT, &frozen, 0.5);
    expect_problem_with_advice(&f);
    expect_has(f.what, "refused 131 of 150 steps");
    expect_has(f.what, "frozen");
    cr_expect_float_eq(f.value, 131.0 / 150.0, 1e-12);
    f = tg_advice_refused_step(TG_GUARD_SKIP_OUTLIER, NULL, 0.5);
    expect_problem_with_advice(&f);
    cr_expect_eq(f.step, -1);
}

Test(advice, activation_statistics_by_hand) {
    tg_activation_stats dead = {-1.0, 0.6, -1.0, -1.0}, fine = {-1.0, 0.1, -1.0, -1.0};
    tg_finding f = tg_advice_activation("relu(fc1.out)", "relu", &dead, NULL);
    cr_expect_eq(f.kind, TG_FINDING_DEAD_RELU);
    expect_problem_with_advice(&f);
    expect_has(f.what, "60% of the units of 'relu(fc1.out)'");
    f = tg_advice_activation("relu(fc1.out)", "relu", &fine, NULL);
    cr_expect_not(f.problem);
    cr_expect_str_empty(f.advice);
    tg_onset_opts strict = tg_onset_defaults();
    strict.dead_fraction = 0.05;
    cr_expect(tg_advice_activation("r", "relu", &fine, &strict).problem, "the threshold is the caller's");
    strict.dead_fraction = 0.0;
    cr_expect_not(tg_advice_activation("r", "relu", &dead, &strict).problem, "0: never");
    tg_activation_stats open = {-1.0, -1.0, 0.9, 0.05};
    f = tg_advice_activation("lstm.h[*]", "lstm_hidden", &open, NULL);
    cr_expect_eq(f.kind, TG_FINDING_FORGET_GATE);
    expect_problem_with_advice(&f);
    expect_has(f.what, "cannot learn to forget");
    tg_activation_stats rnn = {0.7, -1.0, -1.0, -1.0};
    f = tg_advice_activation("rnn.h[*]", "rnn_cell", &rnn, NULL);
    expect_problem_with_advice(&f);
    expect_has(f.what, "(tanh)");
    expect_has(f.advice, "LSTM or GRU");
    f = tg_advice_activation(NULL, NULL, NULL, NULL);
    cr_expect_not(f.problem);
}
