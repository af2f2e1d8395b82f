/* tests/test_hooks.c — hooks at nodes, parameters, patterns and globally: when they fire, in
 * which order, what they may change, removal, and stopping a pass. */
#include "fixture.h"

TestSuite(hooks, .init = fixture_setup, .fini = fixture_teardown);

/* Collects the names a hook saw, in order. */
typedef struct seen {
    char names[32][TG_LABEL_MAX];
    int count;
    tg_pass pass;
} seen;

static tg_status remember(tg_ctx *c, const tg_hook_event *event, void *user) {
    (void)c;
    seen *s = user;
    if (s->count < 32) snprintf(s->names[s->count++], TG_LABEL_MAX, "%s", event->name);
    s->pass = event->pass;
    return TG_OK;
}

static void expect_names(const seen *s, int n, const char *const *want) {
    cr_expect_eq(s->count, n, "%d hook calls, expected %d", s->count, n);
    for (int i = 0; i < n && i < s->count; i++)
        cr_expect_str_eq(s->names[i], want[i], "call %d", i);
}

/* x (param) -> a = exp(x) -> b = 3a -> loss = sum(b) */
static tg_tensor *small_graph(tg_tensor *x) {
    tg_tensor *a = tg_set_label(tg_exp(tape, x), "a");
    tg_tensor *b = tg_set_label(tg_scale(tape, a, 3), "b");
    return tg_set_label(tg_sum(tape, b), "loss");
}

static tg_tensor *param(const char *label, float v0, float v1) {
    tg_tensor *x = tg_set_label(tg_from_data(ctx, TG_SHAPE(2), (float[]){v0, v1}), "%s", label);
    tg_set_requires_grad(x, true);
    return x;
}

Test(hooks, global_backward_hook_fires_once_per_node_in_reverse_order_then_leaves) {
    seen s = {0};
    tg_tensor *x = param("x", 0, 1);
    cr_assert_gt(tg_hook_global(ctx, TG_PASS_BACKWARD, remember, &s), 0);
    cr_assert_eq(tg_backward(tape, small_graph(x)), TG_OK, "%s", tg_errmsg(ctx));
    expect_names(&s, 4, (const char *[]){"loss", "b", "a", "x"});
    cr_expect_eq(s.pass, TG_PASS_BACKWARD);
}

/* Reads the gradient a hook is given, to check it is complete when the hook runs. */
static tg_status copy_gradient(tg_ctx *c, const tg_hook_event *event, void *user) {
    (void)c;
    memcpy(user, event->values, (size_t)event->size * sizeof(float));
    return TG_OK;
}

Test(hooks, node_hook_sees_the_complete_fan_out_gradient) {
    tg_tensor *x = param("x", 1, 2);
    tg_tensor *h = tg_scale(tape, x, 2);
    /* h feeds two consumers: loss = sum(h*h) + sum(h) -> dL/dh = 2h + 1 */
    tg_tensor *loss = tg_add(tape, tg_sum(tape, tg_mul(tape, h, h)), tg_sum(tape, h));
    float got[2] = {0};
    cr_assert_gt(tg_hook_grad(h, copy_gradient, got), 0);
    cr_assert_eq(tg_backward(tape, loss), TG_OK);
    expect_close(got, (float[]){5, 9}, 2, 1e-6f, "dL/dh at hook time");
}

Test(hooks, in_place_clip_changes_what_upstream_receives) {
    tg_tensor *x = param("x", 0.5f, -2);
    tg_tensor *y = tg_set_label(tg_scale(tape, x, 3), "y"); /* y = {1.5, -6} */
    tg_tensor *loss = tg_sum(tape, tg_square(tape, y));     /* dL/dy = 2y = {3, -12} */
    float limit = 1.0f;
    cr_assert_gt(tg_hook_grad(y, tg_hook_clip_value, &limit), 0);
    cr_assert_eq(tg_backward(tape, loss), TG_OK);
    expect_close(y->grad, (float[]){1, -1}, 2, 0, "clipped dL/dy");
    expect_close(x->grad, (float[]){3, -3}, 2, 1e-6f, "dL/dx = 3 * clipped dL/dy");
}

Test(hooks, clip_norm_hook_scales_to_exactly_the_limit) {
    tg_tensor *x = param("x", 3, 4);
    tg_tensor *loss = tg_sum(tape, tg_scale(tape, tg_square(tape, x), 0.5f)); /* grad = x = {3,4}, norm 5 */
    float max_norm = 2.5f;
    tg_hook_grad(x, tg_hook_clip_norm, &max_norm);
    cr_assert_eq(tg_backward(tape, loss), TG_OK);
    expect_close(x->grad, (float[]){1.5f, 2}, 2, 1e-6f, "clipped to norm 2.5");
}

Test(hooks, removal_by_handle_and_unknown_handles) {
    seen s = {0};
    tg_tensor *x = param("x", 0, 1);
    int64_t h = tg_hook_global(ctx, TG_PASS_BACKWARD, remember, &s);
    cr_expect_eq(tg_hook_count(ctx), 1);
    cr_expect_eq(tg_hook_remove(ctx, h), TG_OK);
    cr_expect_eq(tg_hook_count(ctx), 0);
    cr_expect_eq(tg_hook_remove(ctx, h), TG_ERR_NOT_FOUND);
    expect_errmsg_has(ctx, "no hook with handle");
    cr_assert_eq(tg_backward(tape, small_graph(x)), TG_OK);
    cr_expect_eq(s.count, 0, "a removed hook ran");
}

static tg_status refuse(tg_ctx *c, const tg_hook_event *event, void *user) {
    (void)user;
    return tg_hook_fail(c, event, TG_ERR_NUMERIC, "gradient too large");
}

Test(hooks, stopping_the_pass_names_the_node_and_reset_recovers) {
    tg_tensor *x = param("x", 0, 1);
    tg_tensor *loss = small_graph(x);
    int64_t h = tg_hook_pattern(ctx, "b", TG_PASS_BACKWARD, refuse, NULL);
    cr_expect_eq(tg_backward(tape, loss), TG_ERR_NUMERIC);
    expect_errmsg_has(ctx, "hook at 'b' [2]", "op scale", "backward pass", "step 0", "gradient too large");
    cr_expect(x->grad[0] == 0.0f && x->grad[1] == 0.0f, "x got a gradient past the stop");
    tg_hook_remove(ctx, h);
    tg_clear_error(ctx);
    tg_tape_reset(tape);
    cr_expect_eq(tg_backward(tape, small_graph(x)), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_float_eq(x->grad[1], 3 * expf(1), 1e-5);
}

static tg_status stop_plainly(tg_ctx *c, const tg_hook_event *event, void *user) {
    (void)c, (void)event, (void)user;
    return TG_ERR_INVALID;
}

Test(hooks, a_hook_returning_an_error_without_a_message_still_gets_one) {
    tg_tensor *x = param("x", 0, 1);
    tg_hook_pattern(ctx, "a", TG_PASS_BACKWARD, stop_plainly, NULL);
    cr_expect_eq(tg_backward(tape, small_graph(x)), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "hook at 'a' [2]", "op exp", "stopped the pass");
}

Test(hooks, pattern_hooks_match_the_right_names) {
    cr_expect(tg_pattern_match("mlp.*.weight", "mlp.0.weight"));
    cr_expect(tg_pattern_match("mlp.*.weight", "mlp.block3.fc1.weight"));
    cr_expect_not(tg_pattern_match("mlp.*.weight", "mlp.0.bias"));
    cr_expect_not(tg_pattern_match("mlp.*.weight", "res.mlp.0.weight"));
    cr_expect(tg_pattern_match("lstm.h[*]", "lstm.h[17]"));
    cr_expect_not(tg_pattern_match("lstm.h[*]", "lstm.c[17]"));
    cr_expect(tg_pattern_match("fc?", "fc1"));
    cr_expect_not(tg_pattern_match("fc?", "fc10"));
    cr_expect(tg_pattern_match("*", "anything"));
    cr_expect(tg_pattern_match("a*b*c", "aXXbYYbZc"));
    cr_expect_not(tg_pattern_match("a*b*c", "aXXbYYbZ"));

    seen s = {0};
    tg_tensor *w0 = param("mlp.0.weight", 1, 1), *b0 = param("mlp.0.bias", 0, 0);
    tg_tensor *w1 = param("mlp.1.weight", 1, 1);
    tg_hook_pattern(ctx, "mlp.*.weight", TG_PASS_BACKWARD, remember, &s);
    tg_tensor *h = tg_add(tape, tg_mul(tape, w0, w1), b0);
    cr_assert_eq(tg_backward(tape, tg_sum(tape, h)), TG_OK);
    cr_expect_eq(s.count, 2);
    for (int i = 0; i < s.count; i++) cr_expect(strstr(s.names[i], ".weight") != NULL, "%s", s.names[i]);
}

Test(hooks, node_hooks_end_with_the_step_but_parameter_hooks_persist) {
    seen on_node = {0}, on_param = {0};
    tg_tensor *x = param("x", 0, 1);
    tg_tensor *loss = small_graph(x);
    tg_hook_grad(tg_scale(tape, x, 1), remember, &on_node); /* an unused node: never fires */
    tg_hook_grad(x, remember, &on_param);
    cr_assert_eq(tg_backward(tape, loss), TG_OK);
    cr_expect_eq(on_node.count, 0);
    cr_expect_eq(on_param.count, 1);
    tg_tape_reset(tape);
    tg_tensor *y = tg_set_label(tg_exp(tape, x), "y");
    tg_hook_grad(y, remember, &on_node);
    cr_expect_eq(tg_hook_count(ctx), 2);
    tg_tape_reset(tape);
    cr_expect_eq(tg_hook_count(ctx), 1, "the node hook ends with its step");
    cr_assert_eq(tg_backward(tape, small_graph(x)), TG_OK);
    cr_expect_eq(on_node.count, 0);
    cr_expect_eq(on_param.count, 2, "the parameter hook fires at every step");
}

/* A hook that registers another hook and removes itself while hooks are running. */
typedef struct juggler {
    int64_t self;
    seen *late;
    int calls;
} juggler;

static tg_status juggle(tg_ctx *c, const tg_hook_event *event, void *user) {
    (void)event;
    juggler *j = user;
    j->calls++;
    for (int k = 0; k < 40; k++) tg_hook_global(c, TG_PASS_BACKWARD, remember, j->late); /* grows the array */
    return tg_hook_remove(c, j->self);
}

Test(hooks, registering_and_removing_from_inside_a_hook_is_safe) {
    seen late = {0};
    juggler j = {0, &late, 0};
    tg_tensor *x = param("x", 0, 1);
    j.self = tg_hook_global(ctx, TG_PASS_BACKWARD, juggle, &j);
    cr_assert_eq(tg_backward(tape, small_graph(x)), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(j.calls, 1, "removed itself after the first node");
    /* the 40 hooks start with the next node: b, a, x -> 3 nodes x 40 hooks (capped at 32 names) */
    cr_expect_eq(late.count, 32);
    cr_expect_str_eq(late.names[0], "b");
    cr_expect_eq(tg_hook_count(ctx), 40);
}

static tg_status count_forward(tg_ctx *c, const tg_hook_event *event, void *user) {
    (void)c;
    seen *s = user;
    remember(c, event, s);
    tg_activation_stats stats;
    tg_activation_stats_compute(event->node, &stats);
    if (strcmp(event->op_name, "sigmoid") == 0)
        cr_expect_float_eq(stats.saturated_fraction, 0.5, 1e-12, "half the sigmoid outputs saturate");
    return TG_OK;
}

Test(hooks, forward_hooks_see_activations_and_labels_given_before_the_call) {
    seen s = {0};
    tg_hook_pattern(ctx, "act.*", TG_PASS_FORWARD, count_forward, &s);
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(4), (float[]){-10, 10, 0, 0.1f});
    tg_tape_label_next(tape, "act.sigmoid");
    tg_tensor *y = tg_sigmoid(tape, x);
    tg_tensor *z = tg_set_label(tg_tanh(tape, y), "act.tanh"); /* labelled after: not seen */
    tg_tensor *w = tg_exp(tape, z);                            /* the pending label was used up */
    cr_assert(y && z && w);
    cr_expect_str_eq(y->label, "act.sigmoid");
    cr_expect_str_eq(w->label, "");
    expect_names(&s, 1, (const char *[]){"act.sigmoid"});
    cr_expect_eq(s.pass, TG_PASS_FORWARD);
}

Test(hooks, anomaly_mode_names_the_op_in_the_forward_pass) {
    tg_set_anomaly_mode(ctx, true);
    tg_tensor *x = tg_set_label(tg_tape_from_data(tape, TG_SHAPE(2, 2), (float[]){1, 0, 2, 3}), "probs");
    tg_tensor *y = tg_log(tape, x);
    cr_expect_null(y);
    cr_expect_eq(tg_errcode(ctx), TG_ERR_NUMERIC);
    expect_errmsg_has(ctx, "forward pass", "step 0", "log produced -Inf at element 1", "'probs' [2,2]");
    tg_clear_error(ctx);
    tg_set_anomaly_mode(ctx, false);
    cr_expect_not_null(tg_log(tape, x), "without anomaly mode -Inf is just a value");
}

Test(hooks, anomaly_mode_names_the_op_in_the_backward_pass) {
    tg_set_anomaly_mode(ctx, true);
    tg_tensor *w = param("huge.weight", 0, 4);
    /* forward finite: sqrt(0) = 0; backward: d sqrt/dx = 0.5/sqrt(x) = Inf at x = 0 */
    tg_tensor *loss = tg_sum(tape, tg_sqrt(tape, w));
    cr_assert_not_null(loss, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_backward(tape, loss), TG_ERR_NUMERIC);
    expect_errmsg_has(ctx, "backward pass", "VJP of sqrt", "+Inf", "'huge.weight'", "element 0");
}

Test(hooks, anomaly_mode_catches_an_overflowing_weight) {
    tg_set_anomaly_mode(ctx, true);
    tg_tensor *w = param("fc.weight", 100, 1);
    tg_tensor *h = tg_exp(tape, w); /* e^100 overflows float */
    cr_expect_null(h);
    expect_errmsg_has(ctx, "exp produced +Inf at element 0", "'fc.weight' [2]");
}
