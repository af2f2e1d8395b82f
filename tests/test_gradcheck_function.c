/* tests/test_gradcheck_function.c — the whole-function gradient check (tg_gradcheck_function):
 * it passes a correct model, catches a wrong custom op deep inside one and names the tensor
 * upstream of it, refuses a vacuous pass, and leaves the inputs as they were. */
#include "fixture.h"

TestSuite(gradcheck_function, .init = fixture_setup, .fini = fixture_teardown);

/* swish(x) = x sigmoid(x); d/dx = s + x s (1 - s). The wrong backward forgets the second term. */
static void swish_forward(const float *x, int64_t n, float *y, int64_t out_n) {
    (void)out_n;
    for (int64_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-x[i]));
}

static void swish_backward(const float *x, int64_t n, const float *y, const float *gy, int64_t out_n,
                           float *gx) {
    (void)y, (void)out_n;
    for (int64_t i = 0; i < n && gx; i++) {
        float s = 1.0f / (1.0f + expf(-x[i]));
        gx[i] += gy[i] * (s + x[i] * s * (1.0f - s));
    }
}

static void swish_backward_wrong(const float *x, int64_t n, const float *y, const float *gy,
                                 int64_t out_n, float *gx) {
    (void)y, (void)out_n;
    for (int64_t i = 0; i < n && gx; i++) gx[i] += gy[i] / (1.0f + expf(-x[i]));
}

/* A 3-5-2 net with the op between its layers, on a fixed batch, MSE against fixed targets. */
typedef struct net {
    const char *activation;
    tg_tensor *x, *target;
} net;

static tg_tensor *net_loss(tg_tape *t, tg_tensor *const *p, int n, void *user) {
    (void)n;
    const net *model = user;
    tg_tensor *h = tg_linear(t, model->x, p[0], p[1]);
    h = tg_call(t, model->activation, &h, 1, NULL, 0);
    return tg_mse(t, tg_linear(t, h, p[2], p[3]), model->target);
}

static void make_net(net *model, tg_tensor **params, const char *activation) {
    model->activation = activation;
    model->x = tg_zeros(ctx, TG_SHAPE(6, 3));
    model->target = tg_zeros(ctx, TG_SHAPE(6, 2));
    tg_fill_normal(model->x, 0, 1, 1);
    tg_fill_normal(model->target, 0, 1, 2);
    const int64_t shapes[4][2] = {{5, 3}, {5, 1}, {2, 5}, {2, 1}};
    for (int i = 0; i < 4; i++) {
        params[i] = shapes[i][1] > 1 ? tg_zeros(ctx, 2, shapes[i]) : tg_zeros(ctx, 1, shapes[i]);
        tg_fill_normal(params[i], 0, 0.7f, 10 + (uint64_t)i);
        tg_set_requires_grad(params[i], true);
    }
}

static void register_swish(const char *name, tg_native_fn backward) {
    cr_assert_geq(tg_op_register_native(ctx, name, "x -> y", (tg_native_fn)swish_forward, backward, NULL), 0,
                  "%s", tg_errmsg(ctx));
}

Test(gradcheck_function, passes_a_correct_model_and_leaves_its_inputs_alone) {
    register_swish("swish", (tg_native_fn)swish_backward);
    net model;
    tg_tensor *p[4];
    make_net(&model, p, "swish");
    p[0]->grad[3] = 0.25f; /* a gradient the caller had: it is there afterwards */
    float before[15];
    memcpy(before, p[0]->data, sizeof before);
    tg_gradcheck_result r;
    cr_assert_eq(tg_gradcheck_function(ctx, net_loss, &model, p, 4, NULL, &r), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect(r.passed, "worst: input %d element %lld, analytic %g numeric %g", r.worst_input,
              (long long)r.worst_index, r.worst_analytic, r.worst_numeric);
    cr_expect_not(r.vacuous);
    cr_expect_eq(r.n_checked, 15 + 5 + 10 + 2, "every element of every input");
    cr_expect_eq(memcmp(before, p[0]->data, sizeof before), 0, "the data is restored");
    cr_expect_eq(p[0]->grad[3], 0.25f, "the caller's gradient is restored");
    cr_expect_eq(p[0]->grad[0], 0.0f);

    tg_gradcheck_opts few = tg_gradcheck_defaults();
    few.max_elements = 2;
    cr_assert_eq(tg_gradcheck_function(ctx, net_loss, &model, p, 4, &few, &r), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect(r.passed);
    cr_expect_eq(r.n_checked, 8, "two elements of each of the four inputs");
}

Test(gradcheck_function, catches_a_wrong_custom_op_inside_a_model) {
    register_swish("swish_wrong", (tg_native_fn)swish_backward_wrong);
    net model;
    tg_tensor *p[4];
    make_net(&model, p, "swish_wrong");
    tg_gradcheck_result r;
    cr_assert_eq(tg_gradcheck_function(ctx, net_loss, &model, p, 4, NULL, &r), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_not(r.passed, "a swish backward without its x s (1 - s) term passed");
    cr_expect(r.worst_input == 0 || r.worst_input == 1,
              "the worst element is upstream of the op (layer 1), not input %d", r.worst_input);
    cr_expect_gt(r.max_rel_err, 0.1);
}

static tg_tensor *dead(tg_tape *t, tg_tensor *const *p, int n, void *user) {
    (void)n, (void)user;
    return tg_sum(t, tg_relu(t, tg_add_scalar(t, p[0], -100.0f)));
}

Test(gradcheck_function, an_all_zero_gradient_is_a_vacuous_check_and_fails) {
    tg_tensor *w = tg_zeros(ctx, TG_SHAPE(4));
    tg_fill_normal(w, 0, 1, 3);
    tg_set_requires_grad(w, true);
    tg_gradcheck_result r;
    cr_assert_eq(tg_gradcheck_function(ctx, dead, NULL, &w, 1, NULL, &r), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect(r.vacuous);
    cr_expect_not(r.passed, "nothing was compared: the check must not pass");
}

static tg_tensor *vector_valued(tg_tape *t, tg_tensor *const *p, int n, void *user) {
    (void)n, (void)user;
    return tg_tanh(t, p[0]);
}

Test(gradcheck_function, bad_functions_and_inputs_are_refused) {
    tg_tensor *w = tg_zeros(ctx, TG_SHAPE(4)), *frozen = tg_zeros(ctx, TG_SHAPE(2));
    tg_set_requires_grad(w, true);
    tg_gradcheck_result r;
    cr_expect_eq(tg_gradcheck_function(ctx, vector_valued, NULL, &w, 1, NULL, &r), TG_ERR_SHAPE);
    expect_errmsg_has(ctx, "gradcheck_function: the function returned [4], not a scalar");
    tg_clear_error(ctx);
    cr_expect_eq(tg_gradcheck_function(ctx, dead, NULL, &frozen, 1, NULL, &r), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "no input requires a gradient");
    tg_clear_error(ctx);
    tg_tensor *on_tape = tg_tape_zeros(tape, TG_SHAPE(2));
    cr_expect_eq(tg_gradcheck_function(ctx, dead, NULL, &on_tape, 1, NULL, &r), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "input 0 is not persistent");
}

static tg_tensor *labelled_loss(tg_tape *t, tg_tensor *const *p, int n, void *user) {
    tg_tensor *loss = net_loss(t, p, n, user);
    if (loss) tg_set_label(loss, "check.loss");
    return loss;
}

static tg_status count_calls(tg_ctx *c, const tg_hook_event *e, void *user) {
    (void)c, (void)e;
    ++*(int *)user;
    return TG_OK;
}

/* A training loop's hooks and recorder stay out of the check (issue: a recorder at step 459
 * refused the check's step 0, and a clipping hook would clip the analytic gradients). */
Test(gradcheck_function, user_hooks_and_recorders_do_not_see_the_check) {
    net model;
    tg_tensor *p[4];
    make_net(&model, p, "tanh"); /* built-in: it has the forward-mode rule order 2 needs */
    tg_recorder *rec = tg_recorder_new(ctx, 4);
    cr_assert_gt(tg_recorder_attach(rec, "*"), 0);
    int pattern_calls = 0, global_calls = 0;
    cr_assert_gt(tg_hook_pattern(ctx, "check.*", TG_PASS_BACKWARD, count_calls, &pattern_calls), 0);
    cr_assert_gt(tg_hook_global(ctx, TG_PASS_FORWARD, count_calls, &global_calls), 0);
    /* the loop is at step 459: the recorder has seen it */
    tg_tape *tape = tg_tape_new(ctx);
    tg_tape_set_step(tape, 459);
    cr_assert_eq(tg_backward(tape, labelled_loss(tape, p, 4, &model)), TG_OK, "%s", tg_errmsg(ctx));
    int series = tg_recorder_series_count(rec);
    cr_assert_gt(series, 0);
    cr_assert_eq(pattern_calls, 1);
    int forward_calls = global_calls;
    cr_assert_gt(forward_calls, 0);
    tg_gradcheck_result r;
    tg_gradcheck_opts opts = tg_gradcheck_defaults();
    opts.order = 2;
    cr_assert_eq(tg_gradcheck_function(ctx, labelled_loss, &model, p, 4, &opts, &r), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect(r.passed);
    cr_expect_eq(pattern_calls, 1, "the pattern hook ran %d times in the check", pattern_calls - 1);
    cr_expect_eq(global_calls, forward_calls, "the forward hook ran in the check");
    cr_expect_eq(tg_recorder_series_count(rec), series);
    /* and they are back afterwards */
    tg_tape_reset(tape);
    tg_tape_set_step(tape, 460);
    cr_assert_eq(tg_backward(tape, labelled_loss(tape, p, 4, &model)), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(pattern_calls, 2);
    cr_expect_eq(global_calls, 2 * forward_calls);
    tg_tape_free(tape);
    tg_recorder_free(rec);
}
