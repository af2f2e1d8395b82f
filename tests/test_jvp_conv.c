/*
 * tests/test_jvp_conv.c — forward-mode (JVP) rules of the normalisation, convolution and
 * pooling ops (batch_norm, layer_norm, conv2d, conv1d, max_pool2d and its helper op
 * max_pool2d_tangent, avg_pool2d, global_avg_pool2d): ties, a wrong rule caught, and a small
 * CNN's Hessian-vector product against central differences of its gradient (every op's own
 * examples are checked at order 2 in test_higher.c).
 */
#include "helpers.h"

/* A tie in a window: the tangent is the one at the position the backward sends the gradient to
 * (the first maximum), so forward and reverse mode agree on the one-sided derivative they pick. */
Test(jvp_conv, max_pool_tangent_takes_ties_as_the_backward_does) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    /* two 2x2 windows: {5, 5, 1, 5} ties, {0, 2, 2, NaN} holds a NaN */
    tg_tensor *x = tg_tape_from_data(tape, 4, (const int64_t[]){1, 1, 2, 4},
                                     (const float[]){5, 5, 0, 2, 1, 5, 2, NAN});
    tg_tensor *t = tg_tape_from_data(tape, 4, (const int64_t[]){1, 1, 2, 4},
                                     (const float[]){10, 20, 30, 40, 50, 60, 70, 80});
    tg_set_requires_grad(x, true);
    tg_tensor *y = tg_max_pool2d(tape, x, 2, 2, 2, 2, 0, 0), *jt;
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_jvp(tape, y, 1, &x, &t, &jt), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(jt->data[0], 10.0f, "tie: the first maximum's tangent, got %g", (double)jt->data[0]);
    cr_expect(isnan(jt->data[1]), "a NaN maximum has a NaN tangent, got %g", (double)jt->data[1]);
    cr_assert_eq(tg_backward_with(tape, y, (const float[]){1, 1}), TG_OK, "%s", tg_errmsg(ctx));
    expect_close(x->grad, (const float[]){1, 0, 0, 0, 0, 0, 0, 1}, 8, 0.0f, "max pool gradient");
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

/* ---- a wrong rule is caught ------------------------------------------------------------------ */

/* y = x^3 with a correct forward and backward, and two wrong JVP rules. */
static tg_status cube_forward(tg_op_call *call) {
    const float *x = call->inputs[0]->data;
    for (int64_t i = 0; i < call->output->size; i++) call->output->data[i] = x[i] * x[i] * x[i];
    return TG_OK;
}

static tg_status cube_backward(const tg_op_call *call) {
    const float *x = call->inputs[0]->data;
    for (int64_t i = 0; i < call->output->size; i++)
        call->inputs[0]->grad[i] += call->output->grad[i] * 3.0f * x[i] * x[i];
    return TG_OK;
}

/* 3 x^2 t, but as x^2 t (the factor dropped): the JVP itself is wrong. */
static tg_status cube_jvp_dropped_factor(const tg_op_call *call, tg_tensor *const *t,
                                         tg_tensor **out) {
    tg_tensor *x = call->inputs[0];
    *out = tg_mul(call->tape, tg_square(call->tape, x), t[0]);
    return *out ? TG_OK : tg_errcode(tg_tape_ctx(call->tape));
}

/* 3 x^2 t with 3 x^2 written into a fresh tensor from x's numbers: the right values, but the
 * tangent no longer depends on x for the reverse pass, so second derivatives come out wrong
 * (what the rules of the ops under test avoid by computing with ops). */
static tg_status cube_jvp_frozen_slope(const tg_op_call *call, tg_tensor *const *t,
                                       tg_tensor **out) {
    tg_tensor *x = call->inputs[0];
    tg_tensor *slope = tg_tape_zeros(call->tape, x->ndim, x->shape);
    if (!slope) return tg_errcode(tg_tape_ctx(call->tape));
    for (int64_t i = 0; i < x->size; i++) slope->data[i] = 3.0f * x->data[i] * x->data[i];
    *out = tg_mul(call->tape, slope, t[0]);
    return *out ? TG_OK : tg_errcode(tg_tape_ctx(call->tape));
}

static tg_status cube_example(tg_tape *tape, void *op_data, int index, tg_tensor **inputs,
                              int *n_inputs, tg_attr_value *attrs) {
    (void)op_data;
    (void)attrs;
    if (index > 0) return TG_ERR_NOT_FOUND;
    inputs[0] = tg_tape_zeros(tape, 2, (const int64_t[]){3, 4});
    tg_fill_uniform(inputs[0], 0.5f, 2.0f, 7);
    tg_set_requires_grad(inputs[0], true);
    *n_inputs = 1;
    return TG_OK;
}

static tg_gradcheck_result check_cube(tg_jvp_fn rule, const char *name) {
    tg_ctx *ctx = tg_ctx_new();
    tg_op_def def = {name, 1, "", infer_like_first_input, cube_forward, cube_backward,
                     cube_example, NULL, rule};
    int id = tg_op_register(ctx, &def);
    cr_assert_geq(id, 0, "%s", tg_errmsg(ctx));
    tg_gradcheck_opts opts = tg_gradcheck_defaults();
    tg_gradcheck_result r;
    cr_assert_eq(tg_gradcheck(ctx, id, 0, &opts, &r), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect(r.passed, "order 1 looks only at the backward, which is right");
    opts.order = 2;
    cr_assert_eq(tg_gradcheck(ctx, id, 0, &opts, &r), TG_OK, "%s", tg_errmsg(ctx));
    tg_ctx_free(ctx);
    return r;
}

Test(jvp_conv, a_rule_missing_its_factor_fails_the_jvp_check) {
    tg_gradcheck_result r = check_cube(cube_jvp_dropped_factor, "cube_dropped_factor");
    cr_expect_not(r.passed, "a JVP missing its factor 3 passed");
    cr_assert_not_null(r.worst_check);
    cr_expect_str_eq(r.worst_check, "jvp");
    cr_expect_gt(r.max_rel_err, 0.5);
}

Test(jvp_conv, a_rule_frozen_on_primal_numbers_fails_the_second_order_checks) {
    tg_gradcheck_result r = check_cube(cube_jvp_frozen_slope, "cube_frozen_slope");
    cr_expect_not(r.passed, "a JVP that cannot be differentiated again passed");
    cr_assert_not_null(r.worst_check);
    cr_expect(strcmp(r.worst_check, "hvp") == 0 || strcmp(r.worst_check, "double backward") == 0,
              "worst check: %s", r.worst_check);
}

/* ---- a small CNN ------------------------------------------------------------------------------ */

#define N 2
#define C 2
#define O 3
#define HW 6
#define K 3
#define W_SIZE (O * C * K * K)

typedef struct cnn {
    float x[N * C * HW * HW], w[W_SIZE], v[W_SIZE];
    float gamma[O], beta[O];
} cnn;

static void cnn_data(cnn *d) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tensor *x = tg_zeros(ctx, 4, (const int64_t[]){N, C, HW, HW});
    tg_tensor *w = tg_zeros(ctx, 1, (const int64_t[]){W_SIZE});
    tg_tensor *v = tg_zeros(ctx, 1, (const int64_t[]){W_SIZE});
    tg_fill_normal(x, 0.0f, 1.0f, 11);
    tg_fill_normal(w, 0.0f, 0.4f, 12);
    tg_fill_normal(v, 0.0f, 0.1f, 13); /* eps v moves w by about 1e-3: no max pool winner changes */
    memcpy(d->x, x->data, sizeof d->x);
    memcpy(d->w, w->data, sizeof d->w);
    memcpy(d->v, v->data, sizeof d->v);
    const float gamma[O] = {1.0f, 0.7f, 1.3f}, beta[O] = {0.2f, -0.1f, 0.3f};
    memcpy(d->gamma, gamma, sizeof gamma);
    memcpy(d->beta, beta, sizeof beta);
    tg_ctx_free(ctx);
}

/* The CNN's pieces on tape: the conv weight w (its numbers `weights`), x wanting a gradient or
 * not; *pre = the relu's input. Returns mean(max_pool(relu(batch_norm(conv(x, w))))). */
static tg_tensor *cnn_loss(tg_tape *tape, const cnn *d, const float *weights, bool x_grad,
                           tg_tensor **w_out, tg_tensor **x_out, tg_tensor **pre) {
    tg_ctx *ctx = tg_tape_ctx(tape);
    tg_tensor *x = tg_tape_from_data(tape, 4, (const int64_t[]){N, C, HW, HW}, d->x);
    tg_tensor *w = tg_tape_from_data(tape, 4, (const int64_t[]){O, C, K, K}, weights);
    tg_tensor *gamma = tg_tape_from_data(tape, 1, (const int64_t[]){O}, d->gamma);
    tg_tensor *beta = tg_tape_from_data(tape, 1, (const int64_t[]){O}, d->beta);
    tg_tensor *rm = tg_tape_zeros(tape, 1, (const int64_t[]){O});
    tg_tensor *rv = tg_tape_zeros(tape, 1, (const int64_t[]){O});
    cr_assert(x && w && gamma && beta && rm && rv, "%s", tg_errmsg(ctx));
    tg_set_requires_grad(w, true);
    /* parameters, as in a model (with a frozen gamma the JVP would reshape it off the tape, and
     * a replay of the step would be refused) */
    tg_set_requires_grad(gamma, true);
    tg_set_requires_grad(beta, true);
    if (x_grad) tg_set_requires_grad(x, true);
    tg_conv2d_opts conv = {.pad_h = 1, .pad_w = 1};
    tg_tensor *z = tg_batch_norm(tape, tg_conv2d(tape, x, w, NULL, &conv), gamma, beta, rm, rv,
                                 0.1f, 1e-5f, true);
    tg_tensor *loss = tg_mean(tape, tg_max_pool2d(tape, tg_relu(tape, z), 2, 2, 2, 2, 0, 0));
    cr_assert_not_null(loss, "%s", tg_errmsg(ctx));
    *w_out = w;
    if (x_out) *x_out = x;
    if (pre) *pre = z;
    return loss;
}

#define WINDOWS (N * O * (HW / 2) * (HW / 2))

/* Where each 2x2 window of relu(z) [N, O, HW, HW] has its first maximum (max_pool2d's pick). */
static void pool_winners(const float *z, int *winner) {
    for (int plane = 0, out = 0; plane < N * O; plane++)
        for (int oy = 0; oy < HW / 2; oy++)
            for (int ox = 0; ox < HW / 2; ox++, out++) {
                float best = -1.0f;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) {
                        int at = (plane * HW + 2 * oy + dy) * HW + 2 * ox + dx;
                        float r = z[at] > 0.0f ? z[at] : 0.0f;
                        if (r > best) best = r, winner[out] = at;
                    }
            }
}

/* The gradient with respect to w at w0 + step v, by a plain recorded step and tg_backward;
 * winner: the max pool's picks there. */
static void cnn_gradient(tg_tape *tape, const cnn *d, float step, float *grad, int *winner) {
    float moved[W_SIZE];
    for (int i = 0; i < W_SIZE; i++) moved[i] = d->w[i] + step * d->v[i];
    tg_tape_reset(tape);
    tg_tensor *w, *pre;
    tg_tensor *loss = cnn_loss(tape, d, moved, false, &w, NULL, &pre);
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(tg_tape_ctx(tape)));
    memcpy(grad, w->grad, W_SIZE * sizeof(float));
    pool_winners(pre->data, winner);
}

Test(jvp_conv, cnn_hvp_matches_differences_of_the_gradient) {
    static cnn d;
    cnn_data(&d);
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *w;
    tg_tensor *loss = cnn_loss(tape, &d, d.w, false, &w, NULL, NULL);
    float hv[W_SIZE];
    const float *v[1] = {d.v};
    float *out[1] = {hv};
    cr_assert_eq(tg_hvp(tape, loss, 1, &w, v, out), TG_OK, "%s", tg_errmsg(ctx));

    const float eps = 1e-2f;
    float plus[W_SIZE], minus[W_SIZE];
    int winners_plus[WINDOWS], winners_minus[WINDOWS];
    cnn_gradient(tape, &d, eps, plus, winners_plus);
    cnn_gradient(tape, &d, -eps, minus, winners_minus);
    /* central differences see a smooth function only when no window's winner changes between
     * the two points (a relu changing sign elsewhere in a window does not reach the loss) */
    cr_assert(memcmp(winners_plus, winners_minus, sizeof winners_plus) == 0,
              "a max pool's winner changes between w - eps v and w + eps v: choose other seeds");
    double largest = 0.0, worst = 0.0;
    int worst_at = -1;
    for (int i = 0; i < W_SIZE; i++) {
        double numeric = ((double)plus[i] - minus[i]) / (2.0 * eps);
        if (fabs(numeric) > largest) largest = fabs(numeric);
    }
    cr_assert_gt(largest, 1e-3, "H v is about zero: the check would prove nothing");
    for (int i = 0; i < W_SIZE; i++) {
        double numeric = ((double)plus[i] - minus[i]) / (2.0 * eps);
        double err = fabs(hv[i] - numeric) / (1e-2 * largest + fabs(numeric));
        if (err > worst) worst = err, worst_at = i;
    }
    cr_expect_lt(worst, 2e-2, "H v [%d] = %.6g, differences %.6g (largest %.3g)", worst_at,
                 worst_at >= 0 ? (double)hv[worst_at] : 0.0,
                 worst_at >= 0 ? ((double)plus[worst_at] - minus[worst_at]) / (2.0 * eps) : 0.0,
                 largest);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

/* The tangent's ops are recorded like the step's: a replay with new weights recomputes it (no
 * number of the first recording is kept), equal to a fresh recording at the new weights. */
Test(jvp_conv, cnn_jvp_replayed_with_new_weights_matches_a_fresh_recording) {
    static cnn d;
    cnn_data(&d);
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx), *fresh = tg_tape_new(ctx);
    tg_tensor *w, *x, *jt, *w2, *x2, *jt2;
    tg_tensor *loss = cnn_loss(tape, &d, d.w, true, &w, &x, NULL);
    tg_tensor *tangent = tg_tape_from_data(tape, 4, (const int64_t[]){O, C, K, K}, d.v);
    cr_assert_eq(tg_jvp(tape, loss, 1, &w, &tangent, &jt), TG_OK, "%s", tg_errmsg(ctx));
    float before = jt->data[0];
    float other[W_SIZE];
    for (int i = 0; i < W_SIZE; i++) other[i] = 0.5f * d.w[i] - 0.3f * d.v[i];
    memcpy(w->data, other, sizeof other);
    cr_assert_eq(tg_tape_replay(tape), TG_OK, "%s", tg_errmsg(ctx));

    tg_tensor *loss2 = cnn_loss(fresh, &d, other, true, &w2, &x2, NULL);
    tg_tensor *tangent2 = tg_tape_from_data(fresh, 4, (const int64_t[]){O, C, K, K}, d.v);
    cr_assert_eq(tg_jvp(fresh, loss2, 1, &w2, &tangent2, &jt2), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_neq(before, jt2->data[0], "the new weights should move the tangent");
    expect_close(loss->data, loss2->data, 1, 1e-6f, "replayed loss");
    expect_close(jt->data, jt2->data, 1, 1e-6f * (1.0f + fabsf(jt2->data[0])), "replayed tangent");
    tg_tape_free(fresh);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}
