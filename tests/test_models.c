/* tests/test_models.c — modules and layers: names, parameters, modes, whole-layer gradient
 * checks against finite differences (every layer kind, and LSTM/GRU over 5 time steps). */
#include "fixture.h"

TestSuite(models, .init = fixture_setup, .fini = fixture_teardown);

/* L = sum(w * forward(x)) for a fixed random w; evaluated without recording. */
static double objective(tg_module *m, tg_tensor *x, const float *w) {
    tg_tape *scratch = tg_tape_new(ctx);
    tg_no_grad_begin(scratch);
    tg_tensor *y = tg_module_forward(m, scratch, x);
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    double sum = 0;
    for (int64_t i = 0; i < y->size; i++) sum += (double)w[i] * y->data[i];
    tg_tape_free(scratch);
    return sum;
}

/* Every parameter element's gradient against central differences (tolerances as the op check:
 * |a - n| <= 2e-3 + 1e-2 |n|, eps 1e-2). Returns the number of elements compared. */
static int64_t check_module_gradients(tg_module *m, tg_tensor *x) {
    tg_tensor *y = tg_module_forward(m, tape, x);
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    tg_tensor *w = tg_tape_zeros(tape, y->ndim, y->shape);
    tg_fill_normal(w, 0, 1, 77);
    tg_module_zero_grad(m);
    cr_assert_eq(tg_backward_with(tape, y, w->data), TG_OK, "%s", tg_errmsg(ctx));
    int64_t compared = 0;
    for (int p = 0; p < tg_module_param_count(m); p++) {
        tg_tensor *param = tg_module_param(m, p);
        for (int64_t i = 0; i < param->size; i++, compared++) {
            float keep = param->data[i];
            param->data[i] = keep + 1e-2f;
            double up = objective(m, x, w->data);
            param->data[i] = keep - 1e-2f;
            double down = objective(m, x, w->data);
            param->data[i] = keep;
            double numeric = (up - down) / ((double)(keep + 1e-2f) - (double)(keep - 1e-2f));
            cr_expect(fabs(param->grad[i] - numeric) <= 2e-3 + 1e-2 * fabs(numeric),
                      "%s[%lld]: analytic %.6g numeric %.6g", param->label, (long long)i,
                      (double)param->grad[i], numeric);
        }
    }
    return compared;
}

static tg_tensor *random_input(int ndim, const int64_t *shape, uint64_t seed) {
    tg_tensor *x = tg_zeros(ctx, ndim, shape);
    tg_fill_normal(x, 0, 1, seed);
    return x;
}

Test(models, linear_names_shapes_and_gradients) {
    tg_init init = tg_init_xavier(TG_ACT_IDENTITY);
    tg_module *fc = tg_linear_new(ctx, "fc1", 4, 3, true, &init, 1);
    cr_assert_not_null(fc, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_module_param_count(fc), 2);
    cr_expect_str_eq(tg_module_param(fc, 0)->label, "fc1.weight");
    cr_expect_str_eq(tg_module_param(fc, 1)->label, "fc1.bias");
    cr_expect_eq(tg_module_param(fc, 0)->shape[0], 3);
    cr_expect_eq(tg_module_num_elements(fc), 15);
    cr_expect_gt(check_module_gradients(fc, random_input(TG_SHAPE(5, 4), 3)), 0);
    tg_module *nobias = tg_linear_new(ctx, "fc2", 4, 3, false, NULL, 1);
    cr_expect_eq(tg_module_param_count(nobias), 1);
    tg_module_free(fc);
    tg_module_free(nobias);
}

Test(models, mlp_with_every_norm_has_correct_gradients) {
    tg_norm_kind norms[3] = {TG_NORM_NONE, TG_NORM_BATCH, TG_NORM_LAYER};
    for (int k = 0; k < 3; k++) {
        tg_mlp_config c = {.in = 3, .out = 2, .width = 5, .depth = 3, .activation = TG_ACT_TANH,
                           .norm = norms[k], .seed = 4};
        tg_module *mlp = tg_mlp_new(ctx, "mlp", &c);
        cr_assert_not_null(mlp, "%s", tg_errmsg(ctx));
        cr_expect_eq(tg_module_param_count(mlp), 6 + (k ? 4 : 0));
        cr_expect_not_null(tg_module_find_param(mlp, "mlp.layer2.weight"));
        if (k == 2) cr_expect_not_null(tg_module_find_param(mlp, "mlp.layer1.norm.weight"));
        check_module_gradients(mlp, random_input(TG_SHAPE(6, 3), 9));
        tg_module_free(mlp);
        tg_tape_reset(tape);
    }
}

Test(models, mlp_labels_every_layer_output) {
    tg_mlp_config c = {.in = 3, .out = 2, .width = 4, .depth = 3, .activation = TG_ACT_RELU, .seed = 1};
    tg_module *mlp = tg_mlp_new(ctx, "net", &c);
    tg_tensor *y = tg_module_forward(mlp, tape, random_input(TG_SHAPE(2, 3), 1));
    cr_assert_not_null(y);
    cr_expect_str_eq(y->label, "net.out");
    /* the two hidden pre-activations carry their names: find them through a recorder */
    tg_recorder *rec = tg_recorder_new(ctx, 4);
    tg_recorder_attach(rec, "net.layer*.out");
    tg_tape_reset(tape);
    cr_assert_eq(tg_backward(tape, tg_sum(tape, tg_module_forward(mlp, tape, random_input(TG_SHAPE(2, 3), 1)))), TG_OK);
    cr_expect_eq(tg_recorder_series_count(rec), 2);
    cr_expect_str_eq(tg_recorder_series_name(rec, 0), "net.layer0.out");
    cr_expect_str_eq(tg_recorder_series_name(rec, 1), "net.layer1.out");
    tg_recorder_free(rec);
    tg_module_free(mlp);
}

Test(models, dropout_only_in_training_mode) {
    tg_mlp_config c = {.in = 8, .out = 8, .width = 64, .depth = 2, .activation = TG_ACT_IDENTITY,
                       .dropout = 0.5f, .seed = 3};
    tg_module *mlp = tg_mlp_new(ctx, "d", &c);
    tg_tensor *x = random_input(TG_SHAPE(4, 8), 2);
    tg_module_set_training(mlp, false);
    cr_expect_not(tg_module_training(tg_module_child(mlp, 0)));
    tg_tensor *a = tg_module_forward(mlp, tape, x), *b = tg_module_forward(mlp, tape, x);
    cr_expect_eq(memcmp(a->data, b->data, sizeof(float) * 32), 0, "eval is deterministic");
    tg_module_set_training(mlp, true);
    tg_tensor *c1 = tg_module_forward(mlp, tape, x), *c2 = tg_module_forward(mlp, tape, x);
    cr_expect_neq(memcmp(c1->data, a->data, sizeof(float) * 32), 0, "training applies dropout");
    cr_expect_neq(memcmp(c1->data, c2->data, sizeof(float) * 32), 0, "fresh masks per pass");
    tg_module_free(mlp);
}

Test(models, residual_and_plain_twins_share_layers_and_gradients_check) {
    for (int skip = 0; skip < 2; skip++) {
        tg_resmlp_config c = {.in = 3, .out = 2, .width = 4, .blocks = 2, .activation = TG_ACT_TANH,
                              .norm = skip ? TG_NORM_LAYER : TG_NORM_NONE, .skip = skip, .seed = 5};
        tg_module *net = tg_resmlp_new(ctx, "res", &c);
        cr_assert_not_null(net, "%s", tg_errmsg(ctx));
        cr_expect_not_null(tg_module_find_param(net, "res.block1.fc2.weight"));
        cr_expect_not_null(tg_module_find_param(net, "res.head.bias"));
        cr_expect_eq(tg_module_param_count(net), 4 + 2 * 4 + (skip ? 2 * 4 : 0));
        check_module_gradients(net, random_input(TG_SHAPE(5, 3), 8));
        tg_module_free(net);
        tg_tape_reset(tape);
    }
}

Test(models, residual_skip_changes_the_output) {
    tg_resmlp_config c = {.in = 3, .out = 2, .width = 4, .blocks = 2, .activation = TG_ACT_TANH, .seed = 5};
    tg_module *plain = tg_resmlp_new(ctx, "p", &c);
    c.skip = true;
    tg_module *res = tg_resmlp_new(ctx, "r", &c);
    tg_tensor *x = random_input(TG_SHAPE(2, 3), 1);
    tg_tensor *a = tg_module_forward(plain, tape, x), *b = tg_module_forward(res, tape, x);
    cr_assert(a && b);
    cr_expect_neq(memcmp(a->data, b->data, 4 * sizeof(float)), 0);
    tg_module_free(plain);
    tg_module_free(res);
}

static void check_recurrent(tg_rnn_kind kind, int64_t expected_params) {
    tg_rnn_config c = tg_rnn_defaults(kind, 3, 4);
    tg_module *rnn = tg_rnn_new(ctx, "rnn", &c);
    cr_assert_not_null(rnn, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_module_num_elements(rnn), expected_params);
    /* 5 time steps, batch 2: the whole unrolled layer against finite differences */
    int64_t compared = check_module_gradients(rnn, random_input(TG_SHAPE(2, 5, 3), 21));
    cr_expect_eq(compared, expected_params);
    tg_module_free(rnn);
}

Test(models, vanilla_rnn_gradient_over_5_steps) { check_recurrent(TG_RNN_TANH, 4 * 3 + 4 * 4 + 2 * 4); }
Test(models, lstm_gradient_over_5_steps) { check_recurrent(TG_RNN_LSTM, 16 * 3 + 16 * 4 + 2 * 16); }
Test(models, gru_gradient_over_5_steps) { check_recurrent(TG_RNN_GRU, 12 * 3 + 12 * 4 + 2 * 12); }

Test(models, lstm_labels_states_and_sets_the_forget_bias) {
    tg_rnn_config c = tg_rnn_defaults(TG_RNN_LSTM, 2, 3);
    tg_module *lstm = tg_rnn_new(ctx, "lstm", &c);
    tg_tensor *bias = tg_module_find_param(lstm, "lstm.bias_ih");
    cr_assert_not_null(bias);
    for (int j = 0; j < 12; j++) cr_expect_eq(bias->data[j], j >= 3 && j < 6 ? 1.0f : 0.0f, "bias_ih[%d]", j);
    tg_tensor *states[4];
    tg_tensor *h = tg_rnn_forward(lstm, tape, random_input(TG_SHAPE(2, 4, 2), 3), states);
    cr_assert_not_null(h, "%s", tg_errmsg(ctx));
    cr_expect_eq(h, states[3]);
    cr_expect_str_eq(states[0]->label, "lstm.h[1]");
    cr_expect_str_eq(states[3]->label, "lstm.h[4]");
    cr_expect(h->shape[0] == 2 && h->shape[1] == 3);
    tg_module_free(lstm);
}

Test(models, truncated_bptt_stops_the_gradient) {
    tg_rnn_config c = tg_rnn_defaults(TG_RNN_TANH, 1, 2);
    c.bptt = 2;
    tg_module *rnn = tg_rnn_new(ctx, "r", &c);
    tg_tensor *x = tg_zeros(ctx, TG_SHAPE(1, 6, 1));
    tg_fill(x, 1.0f);
    tg_set_requires_grad(x, true);
    cr_assert_eq(tg_backward(tape, tg_sum(tape, tg_rnn_forward(rnn, tape, x, NULL))), TG_OK, "%s", tg_errmsg(ctx));
    /* h[6] sees x at steps 5 and 6 only */
    for (int t = 0; t < 4; t++) cr_expect_eq(x->grad[t], 0.0f, "x[%d] got gradient past the truncation", t);
    cr_expect_neq(x->grad[4], 0.0f);
    cr_expect_neq(x->grad[5], 0.0f);
    tg_module_free(rnn);
}

Test(models, bad_configurations_are_refused) {
    tg_mlp_config c = {.in = 3, .out = 2, .width = 4, .depth = 0};
    cr_expect_null(tg_mlp_new(ctx, "m", &c));
    expect_errmsg_has(ctx, "mlp 'm'", "depth >= 1");
    tg_clear_error(ctx);
    tg_rnn_config r = tg_rnn_defaults(TG_RNN_GRU, 0, 4);
    cr_expect_null(tg_rnn_new(ctx, "g", &r));
    expect_errmsg_has(ctx, "rnn 'g'");
    tg_clear_error(ctx);
    r = tg_rnn_defaults(TG_RNN_GRU, 3, 4);
    tg_module *gru = tg_rnn_new(ctx, "g", &r);
    cr_expect_null(tg_rnn_forward(gru, tape, random_input(TG_SHAPE(2, 3), 1), NULL));
    expect_errmsg_has(ctx, "rnn 'g'", "[2,3]", "expected [batch, time, 3]");
    tg_module_free(gru);
}
