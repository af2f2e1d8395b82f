/* tests/test_diagnostics.c — statistics, global-norm clipping, the recorder and onset detection. */
#include "fixture.h"

TestSuite(diagnostics, .init = fixture_setup, .fini = fixture_teardown);

Test(diagnostics, gradient_statistics) {
    tg_stats st;
    tg_stats_compute((float[]){3, -4, 0, 0, NAN, INFINITY}, 6, &st);
    cr_expect_eq(st.count, 6);
    cr_expect(isnan(st.l2_norm) && isnan(st.max_abs), "a NaN poisons the norms (tests/test_nan.c)");
    cr_expect_float_eq(st.mean, -0.25, 1e-12);
    cr_expect_float_eq(st.std, sqrt(25.0 / 4 - 0.0625), 1e-12);
    cr_expect_float_eq(st.zero_fraction, 2.0 / 6, 1e-12);
    cr_expect_eq(st.n_nan, 1);
    cr_expect_eq(st.n_inf, 1);
}

Test(diagnostics, activation_statistics) {
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(2, 3), (float[]){-1, 2, -3, -4, 5, 6});
    tg_activation_stats st;
    tg_activation_stats_compute(tg_relu(tape, x), &st);
    cr_expect_float_eq(st.dead_fraction, 1.0 / 3, 1e-12, "unit 0 is zero in both rows");
    cr_expect_float_eq(st.saturated_fraction, -1.0, 0);
    tg_tensor *t = tg_tape_from_data(tape, TG_SHAPE(4), (float[]){0, 0.5f, 3, -3});
    tg_activation_stats_compute(tg_tanh(tape, t), &st);
    cr_expect_float_eq(st.saturated_fraction, 0.5, 1e-12, "tanh(+-3) = +-0.995 saturate");
    cr_expect_float_eq(st.dead_fraction, -1.0, 0);
    tg_activation_stats_compute(t, &st);
    cr_expect(st.saturated_fraction == -1.0 && st.dead_fraction == -1.0, "a leaf has neither");
}

static tg_tensor *with_grad(const char *label, int64_t n, const float *grad) {
    tg_tensor *t = tg_set_label(tg_zeros(ctx, 1, &n), "%s", label);
    tg_set_requires_grad(t, true);
    memcpy(t->grad, grad, (size_t)n * sizeof(float));
    return t;
}

Test(diagnostics, clip_grad_norm_matches_a_hand_computation) {
    tg_tensor *params[3] = {with_grad("a", 2, (float[]){3, 4}), with_grad("b", 1, (float[]){12}),
                            tg_zeros(ctx, TG_SHAPE(5)) /* no gradient: skipped */};
    double total = 0;
    cr_assert_eq(tg_clip_grad_norm(params, 3, 6.5, 2.0, true, &total), TG_OK);
    cr_expect_float_eq(total, 13.0, 1e-9, "sqrt(9 + 16 + 144)");
    expect_close(params[0]->grad, (float[]){1.5f, 2}, 2, 1e-6f, "a scaled by 6.5/13");
    expect_close(params[1]->grad, (float[]){6}, 1, 1e-6f, "b scaled by 6.5/13");
    cr_assert_eq(tg_clip_grad_norm(params, 2, 6.5, 2.0, true, &total), TG_OK);
    cr_expect_float_eq(total, 6.5, 1e-6, "the clipped total is exactly max_norm");
    cr_assert_eq(tg_clip_grad_norm(params, 2, 100, 1.0, true, &total), TG_OK);
    cr_expect_float_eq(total, 9.5, 1e-6, "L1: 1.5 + 2 + 6, unchanged below max_norm");
    cr_assert_eq(tg_clip_grad_norm(params, 2, 3, INFINITY, true, &total), TG_OK);
    cr_expect_float_eq(total, 6.0, 1e-6);
    expect_close(params[1]->grad, (float[]){3}, 1, 1e-6f, "max-norm clipped to 3");
}

Test(diagnostics, clip_grad_norm_refuses_a_nonfinite_total) {
    tg_tensor *p = with_grad("p", 2, (float[]){NAN, 1});
    double total = 0;
    cr_expect_eq(tg_clip_grad_norm(&p, 1, 1.0, 2.0, true, &total), TG_ERR_NUMERIC);
    expect_errmsg_has(ctx, "clip_grad_norm", "nothing was clipped");
    cr_expect_eq(p->grad[1], 1.0f);
    cr_expect_eq(tg_clip_grad_norm(&p, 1, 1.0, 3.0, true, &total), TG_ERR_INVALID);
}

Test(diagnostics, explosion_onset_on_a_synthetic_series) {
    int64_t steps[40];
    double norms[40];
    for (int i = 0; i < 40; i++) {
        steps[i] = 100 + i;
        norms[i] = i < 31 ? 1.0 + 0.01 * i : (i == 31 ? 1.3e6 : (i < 33 ? 1e12 : NAN));
    }
    tg_onset_report report;
    tg_detect_explosion(steps, norms, 40, NULL, &report);
    cr_expect(report.exploded);
    cr_expect_eq(report.explosion_start_step, 130);
    cr_expect_eq(report.explosion_step, 131);
    cr_expect_float_eq(report.explosion_growth, 1.3e6 / 1.3, 1.0);
    cr_expect(report.has_nan);
    cr_expect_eq(report.first_nan_step, 133);
    cr_expect(strstr(report.summary, "between steps 130 and 131") != NULL, "%s", report.summary);
    cr_expect(strstr(report.summary, "first NaN/Inf at step 133") != NULL, "%s", report.summary);
}

Test(diagnostics, a_slow_climb_starts_where_it_left_the_baseline) {
    int64_t steps[30];
    double norms[30];
    for (int i = 0; i < 30; i++) {
        steps[i] = i;
        norms[i] = i < 10 ? 2.0 : 2.0 * pow(3.0, i - 9); /* x3 a step from step 10 */
    }
    tg_onset_report report;
    tg_detect_explosion(steps, norms, 30, NULL, &report);
    cr_expect(report.exploded);
    cr_expect_eq(report.explosion_step, 16, "3^7 = 2187 >= 1000x the baseline");
    cr_expect_eq(report.explosion_start_step, 11, "last step within 10x of the baseline (x9)");
    cr_expect_not(report.has_nan);
}

Test(diagnostics, a_steady_series_reports_nothing) {
    int64_t steps[20];
    double norms[20];
    for (int i = 0; i < 20; i++) {
        steps[i] = i;
        norms[i] = 1.0 + 0.5 * sin(i);
    }
    tg_onset_report report;
    tg_detect_explosion(steps, norms, 20, NULL, &report);
    cr_expect_not(report.exploded);
    cr_expect_not(report.has_nan);
    cr_expect_str_eq(report.summary, "no explosion, no NaN, no vanishing layer");
}

/* A four-layer stack whose first layers' gradients are scaled down by a node hook. */
static tg_status shrink(tg_ctx *c, const tg_hook_event *event, void *user) {
    (void)c;
    float factor = *(float *)user;
    for (int64_t i = 0; i < event->size; i++) event->values[i] *= factor;
    return TG_OK;
}

Test(diagnostics, recorder_series_order_streams_and_vanishing) {
    tg_tensor *w[12];
    for (int l = 0; l < 12; l++) {
        w[l] = tg_set_label(tg_ones(ctx, TG_SHAPE(2)), "layer%d.weight", l);
        tg_set_requires_grad(w[l], true);
    }
    /* layer0's gradient is shrunk by a hook registered before the recorder's: it vanishes */
    float tiny = 1e-6f;
    cr_assert_gt(tg_hook_grad(w[0], shrink, &tiny), 0);
    tg_recorder *rec = tg_recorder_new(ctx, 8);
    cr_assert_not_null(rec);
    cr_assert_gt(tg_recorder_attach(rec, "layer*.weight"), 0);
    char *csv = NULL, *jsonl = NULL;
    size_t csv_size = 0, jsonl_size = 0;
    FILE *csv_file = open_memstream(&csv, &csv_size), *jsonl_file = NULL;
    tg_recorder_stream(rec, csv_file, TG_FORMAT_CSV);
    for (int step = 0; step < 10; step++) {
        tg_tape_reset(tape);
        if (step == 9) {
            tg_recorder_stream(rec, NULL, TG_FORMAT_CSV);
            fclose(csv_file);
            jsonl_file = open_memstream(&jsonl, &jsonl_size);
            tg_recorder_stream(rec, jsonl_file, TG_FORMAT_JSONL);
        }
        tg_tensor *h = w[0];
        for (int l = 1; l < 12; l++) h = tg_add(tape, h, w[l]);
        cr_assert_eq(tg_backward(tape, tg_sum(tape, h)), TG_OK, "%s", tg_errmsg(ctx));
        for (int l = 0; l < 12; l++) tg_zero_grad(w[l]);
    }
    cr_assert_eq(tg_recorder_series_count(rec), 12);
    cr_expect_str_eq(tg_recorder_series_name(rec, 0), "layer0.weight");
    cr_expect_str_eq(tg_recorder_series_name(rec, 2), "layer2.weight", "natural order: 2 before 10");
    cr_expect_str_eq(tg_recorder_series_name(rec, 11), "layer11.weight");
    int64_t steps[16];
    tg_stats stats[16];
    cr_expect_eq(tg_recorder_series(rec, 5, steps, stats, 16), 8, "window of 8 of 10 steps");
    cr_expect_eq(steps[0], 3, "tape steps count resets: the first backward is step 1");
    cr_expect_eq(steps[7], 10);
    cr_expect_float_eq(stats[7].l2_norm, sqrt(2.0), 1e-6);
    cr_expect_float_eq(tg_recorder_first_last_ratio(rec), 1e-6, 1e-9);
    double norms[16];
    cr_expect_eq(tg_recorder_global_norms(rec, steps, norms, 16), 8);
    cr_expect_float_eq(norms[0], sqrt(11 * 2.0 + 2e-12), 1e-6);

    tg_onset_report report;
    cr_assert_eq(tg_recorder_detect(rec, NULL, &report), TG_OK);
    cr_expect_not(report.exploded);
    cr_expect_not(report.has_nan);
    cr_expect_eq(report.n_vanishing, 1);
    cr_expect_str_eq(report.vanishing[0], "layer0.weight");
    cr_expect_eq(report.vanishing_since[0], 3, "the oldest step in the window");

    tg_recorder_stream(rec, NULL, TG_FORMAT_CSV);
    fclose(jsonl_file);
    const char *header = "step,name,l2_norm,max_abs,mean,std,zero_fraction,n_nan,n_inf\n";
    cr_expect(strncmp(csv, header, strlen(header)) == 0, "%s", csv);
    cr_expect(strstr(csv, "\n1,\"layer11.weight\",1.41421356,1,1,0,0,0,0\n") != NULL, "%.300s", csv);
    int lines = 0;
    for (char *p = csv; *p; p++) lines += *p == '\n';
    cr_expect_eq(lines, 1 + 9 * 12, "header + 9 steps x 12 series");
    cr_expect(strstr(jsonl, "{\"step\":10,\"name\":\"layer3.weight\",\"l2_norm\":1.41421356,") != NULL, "%.300s", jsonl);
    free(csv);
    free(jsonl);
    tg_recorder_free(rec);
    cr_expect_eq(tg_hook_count(ctx), 1, "the recorder's hooks go with it, the shrink hook stays");
}

Test(diagnostics, recorder_finds_the_first_nan_and_its_series) {
    tg_recorder *rec = tg_recorder_new(ctx, 100);
    tg_stats ok = {.count = 1, .l2_norm = 1}, big = {.count = 1, .l2_norm = 1e9},
             bad = {.count = 1, .l2_norm = NAN, .n_nan = 1};
    for (int step = 0; step < 8; step++) tg_recorder_add(rec, step, "fc2.weight", &ok);
    tg_recorder_add(rec, 8, "fc2.weight", &big);
    tg_recorder_add(rec, 9, "fc2.weight", &big);
    tg_recorder_add(rec, 9, "fc1.weight", &bad);
    tg_recorder_add(rec, 10, "fc1.weight", &bad);
    cr_expect_eq(tg_recorder_add(rec, 3, "fc1.weight", &ok), TG_ERR_INVALID, "steps go forward");
    tg_onset_report report;
    cr_assert_eq(tg_recorder_detect(rec, NULL, &report), TG_OK);
    cr_expect(report.exploded);
    cr_expect_eq(report.explosion_step, 8);
    cr_expect_eq(report.explosion_start_step, 7);
    cr_expect(report.has_nan);
    cr_expect_eq(report.first_nan_step, 9);
    cr_expect_str_eq(report.first_nan_name, "fc1.weight");
    cr_expect(report.explosion_step < report.first_nan_step, "onset strictly before the NaN");
    cr_expect(strstr(report.summary, "grew 1e+09x between steps 7 and 8; first to grow: 'fc2.weight' "
                                     "at step 8; first NaN/Inf at step 9 in 'fc1.weight'") != NULL,
              "%s", report.summary);
    tg_recorder_free(rec);
}

/* Adam at a huge learning rate: the gradient norm stays flat, the loss and the weights blow up. */
Test(diagnostics, a_loss_blow_up_with_a_flat_gradient_is_found_and_the_weights_named) {
    tg_recorder *rec = tg_recorder_new(ctx, 64);
    tg_tensor *w[3];
    for (int l = 0; l < 3; l++) {
        w[l] = tg_set_label(tg_full(ctx, TG_SHAPE(4), 0.1f), "mlp.layer%d.weight", l);
        tg_set_requires_grad(w[l], true);
        w[l]->grad = tg_full(ctx, TG_SHAPE(4), 1.0f)->data; /* a flat gradient */
    }
    for (int step = 0; step < 20; step++) {
        if (step == 10) tg_fill(w[2], 50.0f); /* the last layer leaves first */
        if (step == 11) tg_fill(w[1], 50.0f);
        for (int l = 0; l < 3; l++) cr_assert_eq(tg_recorder_add_tensor(rec, step, w[l]), TG_OK);
        cr_assert_eq(tg_recorder_add_loss(rec, step, step < 10 ? 2.3 : 900.0 * step), TG_OK);
    }
    tg_onset_report r;
    cr_assert_eq(tg_recorder_detect(rec, NULL, &r), TG_OK);
    cr_expect_not(r.exploded, "the gradient never grew");
    cr_expect(r.loss_exploded && r.loss_explosion_start_step == 9 && r.loss_explosion_step == 10);
    cr_assert_eq(r.n_growth, 2, "layer0 never grew");
    cr_expect_str_eq(r.growth_name[0], "mlp.layer2.weight");
    cr_expect(r.growth_step[0] == 10 && r.growth_of_values[0] && r.growth_is_param[0]);
    cr_expect_float_eq(r.growth_ratio[0], 500.0, 1e-3); /* 50 / 0.1f, in floats */
    cr_expect_str_eq(r.growth_name[1], "mlp.layer1.weight");
    cr_expect(strstr(r.summary, "loss grew") && strstr(r.summary, "first to grow: 'mlp.layer2.weight' "
              "(weights) at step 10, then 'mlp.layer1.weight' (weights) at step 11"), "%s", r.summary);
    tg_recorder_free(rec);
}

Test(diagnostics, the_series_that_grew_first_leads_the_order) {
    tg_recorder *rec = tg_recorder_new(ctx, 64);
    for (int step = 0; step < 40; step++)
        for (int l = 0; l < 8; l++) {
            /* layer7 takes off at step 31, layer6 at 32, ... layer4 at 34; the rest stay */
            int take_off = 31 + (7 - l);
            double norm = l >= 4 && step >= take_off ? pow(10.0, 2 + step - take_off) : 1.0;
            tg_stats s = {.count = 1, .l2_norm = norm};
            char name[32];
            snprintf(name, sizeof name, "mlp.layer%d.weight", l);
            cr_assert_eq(tg_recorder_add(rec, step, name, &s), TG_OK);
        }
    tg_onset_report r;
    cr_assert_eq(tg_recorder_detect(rec, NULL, &r), TG_OK);
    cr_expect(r.exploded);
    cr_assert_eq(r.n_growth, 4);
    for (int k = 0; k < 4; k++) {
        char want[32];
        snprintf(want, sizeof want, "mlp.layer%d.weight", 7 - k);
        cr_expect_str_eq(r.growth_name[k], want);
        cr_expect_eq(r.growth_step[k], 31 + k);
        cr_expect_not(r.growth_of_values[k], "the gradient grew, not the values (none known)");
    }
    cr_expect(strstr(r.summary, "first to grow: 'mlp.layer7.weight' at step 31, then "
                                "'mlp.layer6.weight' at step 32") != NULL, "%s", r.summary);
    tg_recorder_free(rec);
}

/* "lstm.*" matches the h[t] nodes as well as the weights: the global norm is of parameters. */
Test(diagnostics, parameters_and_activations_are_kept_apart) {
    tg_tensor *w = tg_set_label(tg_full(ctx, TG_SHAPE(2), 1.0f), "lstm.weight_hh");
    tg_set_requires_grad(w, true);
    tg_recorder *all = tg_recorder_new(ctx, 4), *params = tg_recorder_new(ctx, 4);
    cr_assert(tg_recorder_attach(all, "lstm.*") > 0 && tg_recorder_attach_params(params, "lstm.*") > 0);
    tg_tensor *h = tg_set_label(tg_scale(tape, w, 100.0f), "lstm.h[1]");
    cr_assert_eq(tg_backward(tape, tg_sum(tape, h)), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_recorder_series_count(all), 2);
    cr_assert_eq(tg_recorder_series_count(params), 1);
    cr_expect_str_eq(tg_recorder_series_name(params, 0), "lstm.weight_hh");
    cr_expect(tg_recorder_series_is_param(params, 0));
    cr_expect_str_eq(tg_recorder_series_name(all, 0), "lstm.h[1]");
    cr_expect_not(tg_recorder_series_is_param(all, 0), "h[1] is an activation");
    double norm;
    cr_assert_eq(tg_recorder_global_norms(all, NULL, &norm, 1), 1);
    cr_expect_float_eq(norm, 100.0 * sqrt(2.0), 1e-9, "only the weight's gradient, not h[1]'s ones");
    double values;
    cr_assert_eq(tg_recorder_value_norms(all, 1, &values, 1), 1);
    cr_expect_float_eq(values, sqrt(2.0), 1e-9, "the weight's own norm");
    tg_recorder_free(all);
    tg_recorder_free(params);
}

Test(diagnostics, histogram_bins_are_factors_of_four) {
    cr_expect_float_eq(tg_histogram_edge(20), 1.0, 0.0);
    cr_expect_float_eq(tg_histogram_edge(21), 4.0, 0.0);
    cr_expect_float_eq(tg_histogram_edge(0), pow(4.0, -20), 0.0);
    const float v[8] = {1.0f, 3.9f, -4.0f, 0.3f, 0.0f, NAN, 1e-30f, 1e30f};
    tg_histogram h;
    tg_histogram_compute(v, 8, 5, &h);
    cr_expect(h.step == 5 && h.zero == 1 && h.nonfinite == 1);
    cr_expect_eq(h.counts[20], 2, "1 and 3.9 in [1, 4)");
    cr_expect_eq(h.counts[21], 1, "-4 by magnitude in [4, 16)");
    cr_expect_eq(h.counts[19], 1, "0.3 in [0.25, 1)");
    cr_expect_eq(h.counts[0], 1, "1e-30 below the first edge: the first bin");
    cr_expect_eq(h.counts[TG_HIST_BINS - 1], 1, "1e30 above the last: the last bin");
}

Test(diagnostics, histograms_stay_bounded_and_span_the_run) {
    tg_tensor *w = tg_set_label(tg_full(ctx, TG_SHAPE(3), 1.0f), "fc.weight");
    w->grad = tg_full(ctx, TG_SHAPE(3), 0.5f)->data;
    tg_recorder *rec = tg_recorder_new(ctx, 8);
    for (int step = 0; step < 1000; step++) cr_assert_eq(tg_recorder_add_tensor(rec, step, w), TG_OK);
    tg_histogram h[TG_HIST_SNAPSHOTS];
    int n = tg_recorder_histograms(rec, 0, h, TG_HIST_SNAPSHOTS);
    cr_expect(n > TG_HIST_SNAPSHOTS / 2 && n <= TG_HIST_SNAPSHOTS, "%d snapshots", n);
    cr_expect_eq(h[0].step, 0, "the first step is kept");
    cr_expect_geq(h[n - 1].step, 1000 - 1000 / (TG_HIST_SNAPSHOTS / 2), "the last is near the end");
    for (int i = 1; i < n; i++) cr_expect_eq(h[i].step - h[i - 1].step, h[1].step - h[0].step, "evenly spread");
    cr_expect_eq(h[n - 1].counts[19], 3, "0.5 in [0.25, 1)");
    tg_recorder_free(rec);
}
