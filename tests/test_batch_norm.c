/* tests/test_batch_norm.c — batch norm's channel-parallel kernels and the fused
 * tg_batch_norm_relu: the fused op gives the bits of batch_norm, add and relu recorded one
 * after the other (forward, every gradient, the running statistics), at one and two threads
 * alike, and a training step with it allocates nothing once warm. Its gradients are checked
 * against finite differences by the registry-wide check (test_gradcheck.c). */
#include "helpers.h"

enum { N = 8, C = 4, H = 24, W = 24, SIZE = N * C * H * W };

typedef enum residual_kind { NO_RESIDUAL, OTHER_RESIDUAL, X_AS_RESIDUAL } residual_kind;

/* What one run produces: the output, the gradients of x, gamma, beta and the residual, and the
 * running statistics. */
typedef struct outcome {
    float y[SIZE], dx[SIZE], dres[SIZE], dgamma[C], dbeta[C], mean[C], var[C];
} outcome;

static void fill(tg_tensor *t, float mean, uint64_t seed) {
    tg_fill_normal(t, mean, 1.0f, seed);
    cr_assert_eq(tg_set_requires_grad(t, true), TG_OK);
}

/* loss = sum(y * weights) after relu(batch_norm(x) + residual), fused or as three ops. */
static void run(bool fused, residual_kind kind, bool train, int threads, outcome *out) {
    tg_ctx *c = tg_ctx_new();
    cr_assert_eq(tg_ctx_set_threads(c, threads), TG_OK);
    tg_tape *t = tg_tape_new(c);
    tg_tensor *x = tg_zeros(c, TG_SHAPE(N, C, H, W)), *res = tg_zeros(c, TG_SHAPE(N, C, H, W));
    tg_tensor *weights = tg_zeros(c, TG_SHAPE(N, C, H, W));
    tg_tensor *gamma = tg_zeros(c, TG_SHAPE(C)), *beta = tg_zeros(c, TG_SHAPE(C));
    tg_tensor *rm = tg_zeros(c, TG_SHAPE(C)), *rv = tg_ones(c, TG_SHAPE(C));
    fill(x, 0.3f, 1), fill(res, -0.2f, 2), fill(gamma, 1.0f, 3), fill(beta, 0.1f, 4);
    tg_fill_normal(weights, 0.0f, 1.0f, 5);
    if (!train) tg_fill_uniform(rv, 0.5f, 2.0f, 6);
    tg_tensor *r = kind == NO_RESIDUAL ? NULL : kind == X_AS_RESIDUAL ? x : res, *y;
    if (fused) {
        y = tg_batch_norm_relu(t, x, gamma, beta, rm, rv, r, 0.1f, 1e-5f, train);
    } else {
        y = tg_batch_norm(t, x, gamma, beta, rm, rv, 0.1f, 1e-5f, train);
        if (r) y = tg_add(t, y, r);
        y = tg_relu(t, y);
    }
    cr_assert_not_null(y, "%s", tg_errmsg(c));
    tg_tensor *loss = tg_sum(t, tg_mul(t, y, weights));
    cr_assert_eq(tg_backward(t, loss), TG_OK, "%s", tg_errmsg(c));
    memcpy(out->y, y->data, sizeof out->y);
    memcpy(out->dx, x->grad, sizeof out->dx);
    memcpy(out->dgamma, gamma->grad, sizeof out->dgamma);
    memcpy(out->dbeta, beta->grad, sizeof out->dbeta);
    memcpy(out->mean, rm->data, sizeof out->mean);
    memcpy(out->var, rv->data, sizeof out->var);
    if (kind == OTHER_RESIDUAL) memcpy(out->dres, res->grad, sizeof out->dres);
    else memset(out->dres, 0, sizeof out->dres);
    tg_tape_free(t);
    tg_ctx_free(c);
}

static void expect_same(const outcome *a, const outcome *b, const char *what) {
    cr_expect(memcmp(a->y, b->y, sizeof a->y) == 0, "%s: y differs", what);
    cr_expect(memcmp(a->dx, b->dx, sizeof a->dx) == 0, "%s: dx differs", what);
    cr_expect(memcmp(a->dres, b->dres, sizeof a->dres) == 0, "%s: dresidual differs", what);
    cr_expect(memcmp(a->dgamma, b->dgamma, sizeof a->dgamma) == 0, "%s: dgamma differs", what);
    cr_expect(memcmp(a->dbeta, b->dbeta, sizeof a->dbeta) == 0, "%s: dbeta differs", what);
    cr_expect(memcmp(a->mean, b->mean, sizeof a->mean) == 0, "%s: running mean differs", what);
    cr_expect(memcmp(a->var, b->var, sizeof a->var) == 0, "%s: running var differs", what);
}

static void expect_fused_as_composed(residual_kind kind, bool train) {
    static outcome composed, fused, fused_two, composed_two;
    run(false, kind, train, 1, &composed);
    run(true, kind, train, 1, &fused);
    run(true, kind, train, 2, &fused_two);
    run(false, kind, train, 2, &composed_two);
    expect_same(&fused, &composed, "fused against three ops");
    expect_same(&fused_two, &fused, "fused, two threads against one");
    expect_same(&composed_two, &composed, "batch_norm, two threads against one");
    /* not vacuous: the ReLU cut some values and passed others, and gradients flowed */
    int64_t zeros = 0, nonzero_dx = 0;
    for (int64_t i = 0; i < SIZE; i++) zeros += fused.y[i] == 0.0f, nonzero_dx += fused.dx[i] != 0.0f;
    cr_expect(zeros > SIZE / 10 && zeros < SIZE * 9 / 10, "%lld of %d outputs are 0",
              (long long)zeros, SIZE);
    cr_expect(nonzero_dx > SIZE / 10, "%lld nonzero dx", (long long)nonzero_dx);
}

Test(batch_norm, fused_relu_matches_three_ops_training) {
    expect_fused_as_composed(NO_RESIDUAL, true);
}

Test(batch_norm, fused_relu_residual_matches_three_ops_training) {
    expect_fused_as_composed(OTHER_RESIDUAL, true);
}

Test(batch_norm, fused_relu_residual_matches_three_ops_evaluation) {
    expect_fused_as_composed(OTHER_RESIDUAL, false);
}

Test(batch_norm, fused_relu_with_x_as_its_own_residual) {
    expect_fused_as_composed(X_AS_RESIDUAL, true);
}

/* The statistics against a direct double-precision computation. */
Test(batch_norm, training_statistics_per_channel) {
    static outcome o;
    run(true, NO_RESIDUAL, true, 2, &o);
    tg_ctx *c = tg_ctx_new();
    tg_tensor *x = tg_zeros(c, TG_SHAPE(N, C, H, W));
    tg_fill_normal(x, 0.3f, 1.0f, 1);
    for (int k = 0; k < C; k++) {
        double sum = 0.0, sq = 0.0, count = N * H * W;
        for (int n = 0; n < N; n++)
            for (int q = 0; q < H * W; q++) sum += x->data[(n * C + k) * H * W + q];
        double mu = sum / count;
        for (int n = 0; n < N; n++)
            for (int q = 0; q < H * W; q++) {
                double d = x->data[(n * C + k) * H * W + q] - mu;
                sq += d * d;
            }
        /* one step from 0 and 1 with momentum 0.1, the unbiased variance */
        cr_expect_float_eq(o.mean[k], (float)(0.1 * mu), 1e-6f, "channel %d", k);
        cr_expect_float_eq(o.var[k], (float)(0.9 + 0.1 * sq / (count - 1)), 1e-6f, "channel %d", k);
    }
    tg_ctx_free(c);
}

Test(batch_norm, fused_relu_refuses_a_residual_of_another_shape) {
    tg_ctx *c = tg_ctx_new();
    tg_tape *t = tg_tape_new(c);
    tg_tensor *x = tg_tape_zeros(t, TG_SHAPE(2, 3, 4)), *r = tg_tape_zeros(t, TG_SHAPE(2, 3, 5));
    tg_tensor *v = tg_ones(c, TG_SHAPE(3));
    cr_expect_null(tg_batch_norm_relu(t, x, v, v, v, v, r, 0.1f, 1e-5f, true));
    expect_errmsg_has(c, "batch_norm_relu", "residual", "shape");
    tg_tape_free(t);
    tg_ctx_free(c);
}

Test(batch_norm, fused_step_allocates_nothing_once_warm) {
    tally count = {0, 0, 0, 0, -1};
    tg_ctx *c = tg_ctx_new_with_allocator(tally_alloc, &count);
    cr_assert_eq(tg_ctx_set_threads(c, 2), TG_OK);
    tg_tape *t = tg_tape_new(c);
    tg_tensor *gamma = tg_ones(c, TG_SHAPE(C)), *beta = tg_zeros(c, TG_SHAPE(C));
    tg_tensor *rm = tg_zeros(c, TG_SHAPE(C)), *rv = tg_ones(c, TG_SHAPE(C));
    tg_set_requires_grad(gamma, true), tg_set_requires_grad(beta, true);
    long before = 0;
    for (int step = 0; step < 4; step++) {
        if (step == 2) before = count.allocations;
        tg_tape_reset(t);
        tg_tensor *x = tg_tape_zeros(t, TG_SHAPE(N, C, H, W));
        tg_tensor *r = tg_tape_zeros(t, TG_SHAPE(N, C, H, W));
        tg_fill_normal(x, 0.0f, 1.0f, (uint64_t)step);
        tg_set_requires_grad(x, true), tg_set_requires_grad(r, true);
        tg_tensor *y = tg_batch_norm_relu(t, x, gamma, beta, rm, rv, r, 0.1f, 1e-5f, true);
        cr_assert_eq(tg_backward(t, tg_mean(t, y)), TG_OK, "%s", tg_errmsg(c));
        tg_zero_grad(gamma), tg_zero_grad(beta);
    }
    expect_steady_then_freed(&count, before, "steps 3..4", t, c);
}
