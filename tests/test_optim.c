/* tests/test_optim.c — initialisers, optimizers against hand-worked updates, schedules,
 * penalties and accuracy. */
#include "fixture.h"

TestSuite(optim, .init = fixture_setup, .fini = fixture_teardown);

static void moments(const tg_tensor *t, double *mean, double *std) {
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < t->size; i++) {
        s += t->data[i];
        s2 += (double)t->data[i] * t->data[i];
    }
    *mean = s / (double)t->size;
    *std = sqrt(s2 / (double)t->size - *mean * *mean);
}

Test(optim, xavier_and_he_have_the_documented_scales) {
    tg_tensor *w = tg_zeros(ctx, TG_SHAPE(200, 300));
    double mean, std;
    tg_init xavier = tg_init_xavier(TG_ACT_TANH);
    cr_assert_eq(tg_init_tensor(w, &xavier, 1), TG_OK);
    float bound = 5.0f / 3.0f * sqrtf(6.0f / 500.0f);
    for (int64_t i = 0; i < w->size; i++) cr_assert(fabsf(w->data[i]) <= bound);
    moments(w, &mean, &std);
    cr_expect_float_eq(std, bound / sqrt(3.0), 0.01 * bound, "uniform std = bound / sqrt(3)");
    tg_init he = tg_init_he(TG_ACT_RELU);
    tg_init_tensor(w, &he, 2);
    moments(w, &mean, &std);
    cr_expect_float_eq(mean, 0.0, 0.005);
    cr_expect_float_eq(std, sqrt(2.0 / 300.0), 0.01 * sqrt(2.0 / 300.0), "He: sqrt(2 / fan_in)");
    he.fan_out = true;
    tg_init_tensor(w, &he, 2);
    moments(w, &mean, &std);
    cr_expect_float_eq(std, sqrt(2.0 / 200.0), 0.01 * sqrt(2.0 / 200.0), "He fan_out");
    tg_tensor *again = tg_zeros(ctx, TG_SHAPE(200, 300));
    tg_init_tensor(again, &he, 2);
    cr_expect_eq(memcmp(w->data, again->data, 200 * 300 * sizeof(float)), 0, "same seed, same weights");
}

static void expect_orthonormal_rows(const tg_tensor *w, bool rows) {
    int64_t r = w->shape[0], c = w->shape[1], n = rows ? r : c, len = rows ? c : r;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double dot = 0;
            for (int64_t k = 0; k < len; k++)
                dot += rows ? (double)w->data[i * c + k] * w->data[j * c + k]
                            : (double)w->data[k * c + i] * w->data[k * c + j];
            cr_expect_float_eq(dot, i == j ? 4.0 : 0.0, 1e-4, "<%lld,%lld> = %g", (long long)i, (long long)j, dot);
        }
}

Test(optim, orthogonal_identity_and_constant) {
    tg_init ortho = {TG_INIT_ORTHOGONAL, 0, 0, 2.0f, TG_ACT_IDENTITY, false};
    tg_tensor *wide = tg_zeros(ctx, TG_SHAPE(5, 9)), *tall = tg_zeros(ctx, TG_SHAPE(9, 5));
    cr_assert_eq(tg_init_tensor(wide, &ortho, 3), TG_OK);
    cr_assert_eq(tg_init_tensor(tall, &ortho, 3), TG_OK);
    expect_orthonormal_rows(wide, true);   /* gain 2: W W^T = 4 I */
    expect_orthonormal_rows(tall, false);  /* W^T W = 4 I */
    tg_init eye = {TG_INIT_IDENTITY, 0, 0, 0, TG_ACT_IDENTITY, false};
    tg_tensor *sq = tg_zeros(ctx, TG_SHAPE(3, 3));
    tg_init_tensor(sq, &eye, 0);
    expect_close(sq->data, (float[]){1, 0, 0, 0, 1, 0, 0, 0, 1}, 9, 0, "identity");
    tg_tensor *v = tg_set_label(tg_zeros(ctx, TG_SHAPE(3)), "v");
    cr_expect_eq(tg_init_tensor(v, &eye, 0), TG_ERR_SHAPE);
    expect_errmsg_has(ctx, "init 'v'", "identity needs a 2-D tensor");
    tg_init constant = {TG_INIT_CONSTANT, 0.25f, 0, 0, TG_ACT_IDENTITY, false};
    tg_init_tensor(v, &constant, 0);
    expect_close(v->data, (float[]){0.25f, 0.25f, 0.25f}, 3, 0, "constant");
    cr_expect_float_eq(tg_init_gain(TG_ACT_TANH), 5.0f / 3.0f, 1e-7f);
    cr_expect_float_eq(tg_init_gain(TG_ACT_RELU), sqrtf(2.0f), 1e-7f);
    cr_expect_float_eq(tg_init_gain(TG_ACT_SIGMOID), 1.0f, 0);
}

/* A parameter w with a hand-set gradient g. */
static tg_tensor *param_with_grad(float w0, float g0) {
    tg_tensor *w = tg_scalar(ctx, w0);
    tg_set_requires_grad(w, true);
    w->grad[0] = g0;
    return w;
}

Test(optim, sgd_momentum_nesterov_and_weight_decay_by_hand) {
    tg_tensor *w = param_with_grad(1.0f, 0.5f);
    tg_optimizer_config c = {.kind = TG_OPT_SGD, .lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.1f};
    tg_optimizer *opt = tg_optimizer_new(ctx, &w, 1, &c);
    tg_optimizer_step(opt);                        /* d = 0.5 + 0.1*1 = 0.6; buf = 0.6; w = 0.94 */
    cr_expect_float_eq(w->data[0], 0.94f, 1e-6f);
    tg_optimizer_step(opt);                        /* d = 0.5 + 0.094 = 0.594; buf = 0.54 + 0.594 */
    cr_expect_float_eq(w->data[0], 0.94f - 0.1f * (0.9f * 0.6f + 0.594f), 1e-6f);
    tg_optimizer_free(opt);

    tg_tensor *n = param_with_grad(1.0f, 0.5f);
    c = (tg_optimizer_config){.kind = TG_OPT_SGD, .lr = 0.1f, .momentum = 0.9f, .nesterov = true};
    opt = tg_optimizer_new(ctx, &n, 1, &c);
    tg_optimizer_step(opt);                        /* buf = 0.5; d = 0.5 + 0.9*0.5 = 0.95 */
    cr_expect_float_eq(n->data[0], 1.0f - 0.095f, 1e-6f);
    tg_optimizer_zero_grad(opt);
    cr_expect_eq(n->grad[0], 0.0f);
    tg_optimizer_free(opt);
}

Test(optim, adam_adamw_and_rmsprop_by_hand) {
    tg_tensor *w = param_with_grad(1.0f, 0.2f);
    tg_optimizer_config c = {.kind = TG_OPT_ADAM, .lr = 0.01f};
    tg_optimizer *opt = tg_optimizer_new(ctx, &w, 1, &c);
    tg_optimizer_step(opt); /* bias-corrected: m^ = g, v^ = g^2: the step is lr * sign(g) */
    cr_expect_float_eq(w->data[0], 0.99f, 1e-6f);
    w->grad[0] = -0.1f;
    tg_optimizer_step(opt);
    double m = 0.9 * 0.1 * 0.2 + 0.1 * -0.1, v = 0.999 * 0.001 * 0.04 + 0.001 * 0.01;
    double step2 = 0.01 * (m / (1 - 0.81)) / (sqrt(v / (1 - 0.998001)) + 1e-8);
    cr_expect_float_eq(w->data[0], 0.99 - step2, 1e-6, "second Adam step");
    tg_optimizer_free(opt);

    /* a gradient of exactly 0 that backward wrote (a hand-written 0 reads as "none") */
    tg_tensor *d = tg_scalar(ctx, 2.0f);
    tg_set_requires_grad(d, true);
    cr_assert_eq(tg_backward(tape, tg_scale(tape, d, 0.0f)), TG_OK, "%s", tg_errmsg(ctx));
    c = (tg_optimizer_config){.kind = TG_OPT_ADAMW, .lr = 0.1f, .weight_decay = 0.5f};
    opt = tg_optimizer_new(ctx, &d, 1, &c);
    tg_optimizer_step(opt); /* decoupled: w -= lr * wd * w, the Adam part is 0 for g = 0 */
    cr_expect_float_eq(d->data[0], 2.0f - 0.1f * 0.5f * 2.0f, 1e-6f);
    tg_optimizer_free(opt);

    tg_tensor *r = param_with_grad(1.0f, -0.3f);
    c = (tg_optimizer_config){.kind = TG_OPT_RMSPROP, .lr = 0.01f};
    opt = tg_optimizer_new(ctx, &r, 1, &c);
    tg_optimizer_step(opt); /* v = 0.01 g^2: the step is lr * g / (0.1 |g|) = 10 lr sign(g) */
    cr_expect_float_eq(r->data[0], 1.1f, 1e-5f);
    tg_optimizer_free(opt);
}

Test(optim, bad_optimizer_configurations_are_refused) {
    tg_tensor *tmp = tg_tape_zeros(tape, TG_SHAPE(2));
    tg_optimizer_config c = {.kind = TG_OPT_SGD, .lr = 0.1f};
    cr_expect_null(tg_optimizer_new(ctx, &tmp, 1, &c));
    expect_errmsg_has(ctx, "parameter 0 is not a persistent tensor");
    tg_clear_error(ctx);
    c.lr = -1;
    cr_expect_null(tg_optimizer_new(ctx, &tmp, 1, &c));
    expect_errmsg_has(ctx, "lr >= 0");
}

Test(optim, schedules) {
    tg_schedule step = {.kind = TG_SCHEDULE_STEP, .lr = 1.0f, .step_size = 10, .gamma = 0.5f};
    cr_expect_float_eq(tg_schedule_lr(&step, 9), 1.0f, 0);
    cr_expect_float_eq(tg_schedule_lr(&step, 10), 0.5f, 0);
    cr_expect_float_eq(tg_schedule_lr(&step, 25), 0.25f, 0);
    tg_schedule cosine = {.kind = TG_SCHEDULE_COSINE, .lr = 1.0f, .total_steps = 110, .min_lr = 0.1f,
                          .warmup_steps = 10};
    cr_expect_float_eq(tg_schedule_lr(&cosine, 0), 0.1f, 1e-7f, "warm-up starts at lr / warmup");
    cr_expect_float_eq(tg_schedule_lr(&cosine, 9), 1.0f, 1e-7f);
    cr_expect_float_eq(tg_schedule_lr(&cosine, 10), 1.0f, 1e-6f);
    cr_expect_float_eq(tg_schedule_lr(&cosine, 60), 0.55f, 1e-6f, "half way: the midpoint");
    cr_expect_float_eq(tg_schedule_lr(&cosine, 110), 0.1f, 1e-7f);
}

Test(optim, penalties_are_ops_with_the_right_gradient) {
    tg_tensor *a = leaf(ctx, TG_SHAPE(2), (float[]){1, -2}), *b = leaf(ctx, TG_SHAPE(1), (float[]){3});
    tg_tensor *params[2] = {a, b};
    tg_tensor *l2 = tg_l2_penalty(tape, params, 2, 0.5f);
    cr_assert_not_null(l2);
    cr_expect_float_eq(l2->data[0], 0.5f * 14, 1e-6f);
    cr_expect_gt(tg_tape_entries(tape), 3, "the penalty is in the graph");
    tg_tensor *l1 = tg_l1_penalty(tape, params, 2, 0.1f);
    cr_expect_float_eq(l1->data[0], 0.6f, 1e-6f);
    cr_assert_eq(tg_backward(tape, tg_add(tape, l2, l1)), TG_OK);
    expect_close(a->grad, (float[]){1 + 0.1f, -2 - 0.1f}, 2, 1e-6f, "w + 0.1 sign(w)");
    expect_close(b->grad, (float[]){3.1f}, 1, 1e-6f, "b");
}

Test(optim, accuracy_counts_argmax_matches) {
    tg_tensor *logits = tg_tape_from_data(tape, TG_SHAPE(4, 3), (float[]){1, 2, 0, 5, 1, 1, 0, 0, 1, 2, 1, 0});
    tg_tensor *labels = tg_tape_from_data(tape, TG_SHAPE(4), (float[]){1, 0, 2, 1});
    cr_expect_float_eq(tg_accuracy(logits, labels), 0.75f, 1e-7f);
}

Test(optim, a_training_step_with_adam_allocates_nothing) {
    tally count = {.fail_at = -1};
    tg_ctx *c = tg_ctx_new_with_allocator(tally_alloc, &count);
    tg_tape *t = tg_tape_new(c);
    tg_mlp_config mc = {.in = 4, .out = 3, .width = 8, .depth = 3, .activation = TG_ACT_TANH,
                        .norm = TG_NORM_BATCH, .dropout = 0.1f, .seed = 1};
    tg_module *mlp = tg_mlp_new(c, "m", &mc);
    tg_tensor *params[16];
    int n = tg_module_params(mlp, params, 16);
    tg_optimizer_config oc = {.kind = TG_OPT_ADAM, .lr = 1e-3f};
    tg_optimizer *opt = tg_optimizer_new(c, params, n, &oc);
    tg_tensor *x = tg_zeros(c, TG_SHAPE(5, 4)), *y = tg_zeros(c, TG_SHAPE(5));
    tg_fill_normal(x, 0, 1, 1);
    long before = 0;
    for (int step = 0; step < 10; step++) {
        if (step == 1) before = count.allocations;
        tg_tape_reset(t);
        cr_assert_eq(tg_backward(t, tg_cross_entropy(t, tg_module_forward(mlp, t, x), y)), TG_OK, "%s", tg_errmsg(c));
        tg_optimizer_step(opt);
        tg_optimizer_zero_grad(opt);
    }
    cr_expect_eq(count.allocations, before, "%ld allocations in steps 2..10", count.allocations - before);
    tg_optimizer_free(opt);
    tg_module_free(mlp);
    tg_tape_free(t);
    tg_ctx_free(c);
}

/* tg_optimizer_step_zero_grad gives the numbers of tg_optimizer_step then
 * tg_optimizer_zero_grad, for every optimizer, on a parameter of several blocks and with one
 * that no backward reached. */
Test(optim, step_zero_grad_is_step_then_zero_grad) {
    const tg_optimizer_config configs[] = {
        {.kind = TG_OPT_SGD, .lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.01f},
        {.kind = TG_OPT_SGD, .lr = 0.1f, .momentum = 0.9f, .nesterov = true},
        {.kind = TG_OPT_ADAM, .lr = 0.01f, .weight_decay = 0.01f},
        {.kind = TG_OPT_ADAMW, .lr = 0.01f, .weight_decay = 0.1f},
        {.kind = TG_OPT_RMSPROP, .lr = 0.01f, .momentum = 0.5f},
    };
    for (size_t k = 0; k < sizeof configs / sizeof configs[0]; k++) {
        tg_tensor *p[2][2]; /* [way][param]: way 0 steps then zeroes, way 1 fuses the two */
        tg_optimizer *opt[2];
        for (int way = 0; way < 2; way++) {
            p[way][0] = tg_zeros(ctx, TG_SHAPE(3, 4099)); /* four blocks and a piece */
            p[way][1] = tg_zeros(ctx, TG_SHAPE(5));
            for (int j = 0; j < 2; j++) {
                tg_fill_normal(p[way][j], 0, 1, 5 + (uint64_t)j);
                tg_set_requires_grad(p[way][j], true);
            }
            opt[way] = tg_optimizer_new(ctx, p[way], 2, &configs[k]);
            cr_assert_not_null(opt[way], "%s", tg_errmsg(ctx));
        }
        for (int step = 0; step < 3; step++)
            for (int way = 0; way < 2; way++) {
                tg_tape_reset(tape); /* only p[.][0] is reached: p[.][1] stays unset */
                tg_tensor *loss = tg_sum(tape, tg_square(tape, p[way][0]));
                cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
                if (way == 0) {
                    cr_assert_eq(tg_optimizer_step(opt[0]), TG_OK);
                    tg_optimizer_zero_grad(opt[0]);
                } else {
                    cr_assert_eq(tg_optimizer_step_zero_grad(opt[1]), TG_OK);
                }
            }
        for (int j = 0; j < 2; j++) {
            cr_expect_eq(memcmp(p[0][j]->data, p[1][j]->data, (size_t)p[0][j]->size * sizeof(float)),
                         0, "optimizer %zu, parameter %d: the fused step differs", k, j);
            cr_expect_not(tg_grad_is_set(p[1][j]), "optimizer %zu: the gradient is zeroed", k);
            for (int64_t i = 0; i < p[1][j]->size; i++)
                if (p[1][j]->grad[i] != 0.0f) {
                    cr_expect_fail("optimizer %zu, parameter %d: grad[%lld] = %g", k, j,
                                   (long long)i, (double)p[1][j]->grad[i]);
                    break;
                }
        }
        tg_tensor *start = tg_zeros(ctx, TG_SHAPE(3, 4099));
        tg_fill_normal(start, 0, 1, 5);
        cr_expect_neq(memcmp(start->data, p[1][0]->data, (size_t)start->size * sizeof(float)), 0,
                      "optimizer %zu: the reached parameter did not move (a vacuous test)", k);
        tg_optimizer_free(opt[0]);
        tg_optimizer_free(opt[1]);
    }
    cr_expect_eq(tg_optimizer_step_zero_grad(NULL), TG_ERR_INVALID);
}
