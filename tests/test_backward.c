/* tests/test_backward.c — the reverse walk: fan-out, no_grad, broadcasting, retention, seeds,
 * numerical stability, and a whole small network against finite differences. */
#include "fixture.h"

TestSuite(backward, .init = fixture_setup, .fini = fixture_teardown);

Test(backward, fan_out_accumulates) {
    /* y = x*x + 3x + x  ->  dy/dx = 2x + 4 */
    tg_tensor *x = leaf(ctx, TG_SHAPE(2), (float[]){1.5f, -2});
    tg_tensor *y = tg_add(tape, tg_add(tape, tg_mul(tape, x, x), tg_scale(tape, x, 3)), x);
    tg_tensor *loss = tg_sum(tape, y);
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
    expect_close(x->grad, (float[]){7, 0}, 2, 1e-6f, "dx");
}

Test(backward, persistent_leaf_gradients_accumulate_until_zeroed) {
    tg_tensor *w = leaf(ctx, TG_SHAPE(1), (float[]){2});
    for (int step = 0; step < 2; step++) {
        tg_tape_reset(tape);
        cr_assert_eq(tg_backward(tape, tg_sum(tape, tg_square(tape, w))), TG_OK);
    }
    expect_close(w->grad, (float[]){8}, 1, 0, "two steps of d(w^2)");
    tg_zero_grad(w);
    expect_close(w->grad, (float[]){0}, 1, 0, "after zero_grad");
}

Test(backward, no_grad_records_nothing) {
    tg_tensor *x = leaf(ctx, TG_SHAPE(2), (float[]){1, 2});
    tg_no_grad_begin(tape);
    cr_expect_not(tg_grad_enabled(tape));
    tg_tensor *y = tg_exp(tape, x);
    cr_assert_not_null(y);
    cr_expect_eq(tg_tape_entries(tape), 0);
    cr_expect_not(y->requires_grad);
    cr_expect_eq(tg_backward(tape, tg_sum(tape, y)), TG_ERR_STATE);
    tg_no_grad_end(tape);
    cr_expect(tg_grad_enabled(tape));
    expect_close(y->data, (float[]){expf(1), expf(2)}, 2, 1e-6f, "values still computed");
}

Test(backward, nothing_recorded_without_an_input_that_requires_grad) {
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(2), (float[]){1, 2});
    tg_tensor *y = tg_tanh(tape, x);
    cr_assert_not_null(y);
    cr_expect_eq(tg_tape_entries(tape), 0);
}

Test(backward, bias_gradient_sums_over_the_batch) {
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(3, 2), (float[]){1, 2, 3, 4, 5, 6});
    tg_tensor *b = leaf(ctx, TG_SHAPE(2), (float[]){0, 0});
    tg_tensor *col = leaf(ctx, TG_SHAPE(3, 1), (float[]){1, 1, 1});
    tg_tensor *y = tg_mul(tape, tg_add(tape, x, b), col);
    /* seed g: dL/db[j] = sum_i g[i,j] * col[i];  dL/dcol[i] = sum_j g[i,j] * (x+b)[i,j] */
    const float g[6] = {1, 2, 3, 4, 5, 6};
    cr_assert_eq(tg_backward_with(tape, y, g), TG_OK, "%s", tg_errmsg(ctx));
    expect_close(b->grad, (float[]){9, 12}, 2, 1e-6f, "bias grad");
    expect_close(col->grad, (float[]){5, 25, 61}, 3, 1e-5f, "column grad");
}

Test(backward, intermediate_gradients_are_retained) {
    tg_tensor *x = leaf(ctx, TG_SHAPE(2), (float[]){0.5f, -1});
    tg_tensor *h = tg_scale(tape, x, 2);
    tg_tensor *y = tg_sum(tape, tg_square(tape, h));
    cr_assert_eq(tg_backward(tape, y), TG_OK);
    cr_assert_not_null(h->grad);
    expect_close(h->grad, (float[]){2, -4}, 2, 1e-6f, "dL/dh = 2h");
    expect_close(x->grad, (float[]){4, -8}, 2, 1e-6f, "dL/dx = 2 * dL/dh");
}

Test(backward, non_scalar_output_needs_a_seed) {
    tg_tensor *x = leaf(ctx, TG_SHAPE(3), (float[]){1, 2, 3});
    tg_tensor *y = tg_scale(tape, x, 2);
    cr_expect_eq(tg_backward(tape, y), TG_ERR_SHAPE);
    expect_errmsg_has(ctx, "not a scalar", "[3]");
    tg_clear_error(ctx);
    cr_assert_eq(tg_backward_with(tape, y, (float[]){1, 0, -1}), TG_OK);
    expect_close(x->grad, (float[]){2, 0, -2}, 3, 0, "seeded");
}

Test(backward, softmax_and_cross_entropy_stay_finite_at_huge_logits) {
    tg_tensor *logits = leaf(ctx, TG_SHAPE(2, 3), (float[]){1e4f, -1e4f, 0, -1e4f, -1e4f, 1e4f});
    tg_tensor *labels = tg_tape_from_data(tape, TG_SHAPE(2), (float[]){1, 2});
    tg_tensor *loss = tg_cross_entropy(tape, logits, labels);
    tg_tensor *sm = tg_softmax(tape, logits), *lsm = tg_log_softmax(tape, logits);
    cr_assert(loss && sm && lsm);
    cr_expect(isfinite(loss->data[0]), "loss %g", (double)loss->data[0]);
    cr_expect_float_eq(loss->data[0], 1e4f, 1.0f); /* row 0: 2e4 wrong by 2e4; row 1 right: mean 1e4 */
    for (int i = 0; i < 6; i++) {
        cr_expect(isfinite(sm->data[i]) && isfinite(lsm->data[i]), "element %d", i);
    }
    cr_assert_eq(tg_backward(tape, loss), TG_OK);
    for (int i = 0; i < 6; i++) cr_expect(isfinite(logits->grad[i]), "grad %d", i);
    expect_close(logits->grad, (float[]){0.5f, -0.5f, 0, 0, 0, 0}, 6, 1e-6f, "dCE");
    tg_tensor *big = tg_tape_from_data(tape, TG_SHAPE(2), (float[]){1e4f, -1e4f});
    tg_tensor *bce = tg_bce_with_logits(tape, big, tg_tape_from_data(tape, TG_SHAPE(2), (float[]){0, 1}));
    cr_assert_not_null(bce);
    cr_expect_float_eq(bce->data[0], 1e4f, 1.0f);
    tg_tensor *sp = tg_softplus(tape, big);
    cr_expect(isfinite(sp->data[0]) && sp->data[1] == 0.0f);
    tg_tensor *sg = tg_sigmoid(tape, big);
    cr_expect(sg->data[0] == 1.0f && sg->data[1] == 0.0f);
}

/* A two-layer network, whole, against central differences on every parameter. */
static float network_loss(tg_tape *t, tg_tensor *x, tg_tensor *labels, tg_tensor **params) {
    tg_tensor *h = tg_tanh(t, tg_linear(t, x, params[0], params[1]));
    tg_tensor *logits = tg_linear(t, h, params[2], params[3]);
    tg_tensor *loss = tg_cross_entropy(t, logits, labels);
    cr_assert_not_null(loss, "%s", tg_errmsg(tg_tape_ctx(t)));
    return loss->data[0];
}

Test(backward, small_network_matches_finite_differences) {
    tg_tensor *params[4] = {tg_zeros(ctx, TG_SHAPE(5, 4)), tg_zeros(ctx, TG_SHAPE(5)),
                            tg_zeros(ctx, TG_SHAPE(3, 5)), tg_zeros(ctx, TG_SHAPE(3))};
    for (int i = 0; i < 4; i++) {
        tg_fill_normal(params[i], 0, 0.7f, 100 + (uint64_t)i);
        tg_set_requires_grad(params[i], true);
    }
    tg_tensor *x = tg_zeros(ctx, TG_SHAPE(6, 4));
    tg_fill_normal(x, 0, 1, 5);
    tg_tensor *labels = tg_from_data(ctx, TG_SHAPE(6), (float[]){0, 1, 2, 2, 1, 0});
    tg_tensor *h = tg_tanh(tape, tg_linear(tape, x, params[0], params[1]));
    tg_tensor *l = tg_cross_entropy(tape, tg_linear(tape, h, params[2], params[3]), labels);
    cr_assert_eq(tg_backward(tape, l), TG_OK, "%s", tg_errmsg(ctx));
    tg_tape *scratch = tg_tape_new(ctx);
    tg_no_grad_begin(scratch);
    for (int p = 0; p < 4; p++)
        for (int64_t j = 0; j < params[p]->size; j++) {
            float keep = params[p]->data[j], eps = 1e-2f;
            params[p]->data[j] = keep + eps;
            double up = network_loss(scratch, x, labels, params);
            tg_tape_reset(scratch);
            params[p]->data[j] = keep - eps;
            double down = network_loss(scratch, x, labels, params);
            tg_tape_reset(scratch);
            params[p]->data[j] = keep;
            double numeric = (up - down) / (2 * eps);
            cr_expect(fabs(params[p]->grad[j] - numeric) <= 1e-3 + 1e-2 * fabs(numeric),
                      "param %d[%lld]: analytic %g numeric %g", p, (long long)j,
                      (double)params[p]->grad[j], numeric);
        }
    tg_tape_free(scratch);
}

/* Elementwise kernels take a shortcut for one element: a scalar chain and the same chain on
 * every element of a vector must give identical values and gradients, and fan-out into a
 * scalar must still accumulate. */
Test(backward, scalar_and_vector_elementwise_paths_agree) {
    tg_tensor *s = leaf(ctx, TG_SHAPE(1), (float[]){0.5f});
    tg_tensor *v = leaf(ctx, TG_SHAPE(5), (float[]){0.5f, 0.5f, 0.5f, 0.5f, 0.5f});
    tg_tensor *ys = s, *yv = v;
    for (int i = 0; i < 50; i++) {
        ys = tg_tanh(tape, tg_scale(tape, ys, 1.01f));
        yv = tg_tanh(tape, tg_scale(tape, yv, 1.01f));
    }
    /* loss = sum(y) + sum(y * y) reaches y twice */
    tg_tensor *loss_s = tg_add(tape, tg_sum(tape, ys), tg_sum(tape, tg_mul(tape, ys, ys)));
    tg_tensor *loss_v = tg_add(tape, tg_sum(tape, yv), tg_sum(tape, tg_mul(tape, yv, yv)));
    tg_tensor *loss = tg_add(tape, loss_s, loss_v);
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
    double y = 0.5, dy = 1.0;
    for (int i = 0; i < 50; i++) {
        y = tanh(1.01 * y);
        dy *= 1.01 * (1.0 - y * y);
    }
    double expected = dy * (1.0 + 2.0 * y);
    cr_expect_float_eq(ys->data[0], (float)y, 1e-5f);
    cr_expect_float_eq(s->grad[0], (float)expected, 1e-4f * fabs(expected), "ds %g vs %g",
                       s->grad[0], expected);
    for (int i = 0; i < 5; i++) {
        cr_expect_eq(yv->data[i], ys->data[0], "value %d", i);
        cr_expect_eq(v->grad[i], s->grad[0], "gradient %d", i);
    }
}

/* A forward may make its output a view of its input (output->data = input->data): the
 * output's gradient must still get a buffer of its own, not the input's. */
static tg_status view_infer(const tg_op_call *call, tg_shape *out) {
    out->ndim = call->inputs[0]->ndim;
    for (int d = 0; d < TG_MAX_DIMS; d++) out->dims[d] = call->inputs[0]->shape[d];
    return TG_OK;
}

static tg_status view_forward(tg_op_call *call) {
    call->output->data = call->inputs[0]->data;
    return TG_OK;
}

static tg_status view_backward(const tg_op_call *call) {
    const tg_tensor *in = call->inputs[0], *out = call->output;
    if (in->grad)
        for (int64_t i = 0; i < out->size; i++) in->grad[i] += out->grad[i];
    return TG_OK;
}

Test(backward, gradients_of_a_view_output_have_their_own_buffer) {
    tg_op_def def = {"test_view", 1, "", view_infer, view_forward, view_backward, NULL, NULL, NULL};
    int id = tg_op_register(ctx, &def);
    cr_assert_geq(id, 0, "%s", tg_errmsg(ctx));
    tg_tensor *x = leaf(ctx, TG_SHAPE(3), (float[]){0.5f, -1, 2});
    tg_tensor *h = tg_scale(tape, x, 2); /* a recorded node, then a view of it */
    tg_tensor *v = tg_call_id(tape, id, &h, 1, NULL, 0);
    cr_assert_not_null(v, "%s", tg_errmsg(ctx));
    cr_expect_eq(v->data, h->data);
    tg_tensor *loss = tg_sum(tape, tg_mul(tape, v, h)); /* d/dx sum(4x^2) = 8x */
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_neq(v->grad, h->grad);
    expect_close(x->grad, (float[]){4, -8, 16}, 3, 1e-6f, "dx");
}

/* add, relu, batch norm and conv2d write a new gradient buffer whole instead of zeroing it and
 * adding (grad_fresh); a tensor given twice, a broadcast (which adds) and a later consumer that
 * adds must still see a sum. Two steps: the second reuses arena memory that holds the first's
 * gradients, which a missed zeroing would add in. */
Test(backward, gradients_written_whole_still_sum_every_term) {
    tg_tensor *x = leaf(ctx, TG_SHAPE(4), (float[]){1.5f, -2, 0.5f, 3});
    tg_tensor *b = leaf(ctx, TG_SHAPE(1), (float[]){0.25f});
    for (int step = 0; step < 2; step++) {
        tg_tape_reset(tape);
        tg_zero_grad(x);
        tg_zero_grad(b);
        tg_tensor *h = tg_scale(tape, x, 1.0f);
        /* d/dh: 2 (h + h) + [h > 0] (relu) + 2h (h h) + 1 (h + b, broadcast) */
        tg_tensor *loss = tg_add(tape, tg_sum(tape, tg_add(tape, h, h)),
                                 tg_sum(tape, tg_relu(tape, h)));
        loss = tg_add(tape, loss, tg_sum(tape, tg_mul(tape, h, h)));
        loss = tg_add(tape, loss, tg_sum(tape, tg_add(tape, h, b)));
        cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
        expect_close(x->grad, (float[]){7, -1, 5, 10}, 4, 1e-6f, "dx");
        expect_close(b->grad, (float[]){4}, 1, 1e-6f, "db");
    }
}
