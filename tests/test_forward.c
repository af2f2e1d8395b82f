/* tests/test_forward.c — forward values of every built-in op against hand-computed values. */
#include "fixture.h"

TestSuite(forward, .init = fixture_setup, .fini = fixture_teardown);

#define T(...) tg_tape_from_data(tape, __VA_ARGS__)
#define CHECK(y, tol, ...)                                                                      \
    do {                                                                                        \
        const float want_[] = {__VA_ARGS__};                                                    \
        const tg_tensor *got_ = (y); /* evaluated once: some ops update state */                \
        cr_assert_not_null(got_, "%s", tg_errmsg(ctx));                                         \
        cr_assert_eq(got_->size, (int64_t)(sizeof want_ / sizeof want_[0]), "size %lld",        \
                     (long long)got_->size);                                                    \
        expect_close(got_->data, want_, got_->size, (tol), #y);                                 \
    } while (0)

static const float m23[] = {1, 2, 3, 4, 5, 6};

Test(forward, binary_ops_broadcast) {
    tg_tensor *a = T(TG_SHAPE(2, 3), m23);
    CHECK(tg_add(tape, a, T(TG_SHAPE(3), (float[]){10, 20, 30})), 0, 11, 22, 33, 14, 25, 36);
    CHECK(tg_sub(tape, a, T(TG_SHAPE(2, 3), (float[]){1, 1, 1, 2, 2, 2})), 0, 0, 1, 2, 2, 3, 4);
    CHECK(tg_mul(tape, a, T(TG_SHAPE(2, 1), (float[]){2, -1})), 0, 2, 4, 6, -4, -5, -6);
    CHECK(tg_div(tape, a, T(TG_SHAPE(1), (float[]){2})), 0, 0.5f, 1, 1.5f, 2, 2.5f, 3);
    tg_tensor *outer = tg_add(tape, T(TG_SHAPE(2, 1), (float[]){1, 2}), T(TG_SHAPE(3), (float[]){10, 20, 30}));
    CHECK(outer, 0, 11, 21, 31, 12, 22, 32);
    cr_expect_eq(outer->ndim, 2);
    cr_expect_eq(outer->shape[0], 2);
    cr_expect_eq(outer->shape[1], 3);
}

Test(forward, unary_maths) {
    tg_tensor *x = T(TG_SHAPE(3), (float[]){1, 2, 3});
    CHECK(tg_neg(tape, x), 0, -1, -2, -3);
    CHECK(tg_scale(tape, x, 3), 0, 3, 6, 9);
    CHECK(tg_add_scalar(tape, x, -1), 0, 0, 1, 2);
    CHECK(tg_pow(tape, x, 2), 1e-6f, 1, 4, 9);
    CHECK(tg_pow(tape, T(TG_SHAPE(1), (float[]){4}), 0.5f), 1e-6f, 2);
    CHECK(tg_square(tape, T(TG_SHAPE(1), (float[]){-3})), 0, 9);
    CHECK(tg_sqrt(tape, T(TG_SHAPE(2), (float[]){9, 16})), 1e-6f, 3, 4);
    CHECK(tg_exp(tape, T(TG_SHAPE(2), (float[]){0, 1})), 1e-6f, 1, 2.7182818f);
    CHECK(tg_log(tape, T(TG_SHAPE(2), (float[]){1, 2.7182818f})), 1e-6f, 0, 1);
    CHECK(tg_abs(tape, T(TG_SHAPE(2), (float[]){-2, 3})), 0, 2, 3);
}

Test(forward, activations) {
    CHECK(tg_sigmoid(tape, T(TG_SHAPE(3), (float[]){0, logf(3), -logf(3)})), 1e-6f, 0.5f, 0.75f, 0.25f);
    CHECK(tg_tanh(tape, T(TG_SHAPE(2), (float[]){0, 0.54930614f})), 1e-6f, 0, 0.5f);
    CHECK(tg_relu(tape, T(TG_SHAPE(2), (float[]){-1, 2})), 0, 0, 2);
    CHECK(tg_leaky_relu(tape, T(TG_SHAPE(2), (float[]){-2, 3}), 0.1f), 1e-7f, -0.2f, 3);
    CHECK(tg_elu(tape, T(TG_SHAPE(2), (float[]){-logf(2), 2}), 1.0f), 1e-6f, -0.5f, 2);
    CHECK(tg_softplus(tape, T(TG_SHAPE(2), (float[]){0, logf(3)})), 1e-6f, 0.69314718f, 1.3862944f);
    CHECK(tg_gelu(tape, T(TG_SHAPE(3), (float[]){0, 1, -1})), 1e-6f, 0, 0.84134475f, -0.15865525f);
}

Test(forward, softmax_rows) {
    tg_tensor *x = T(TG_SHAPE(2, 3), (float[]){0, logf(2), logf(3), 5, 5, 5});
    CHECK(tg_softmax(tape, x), 1e-6f, 1 / 6.0f, 1 / 3.0f, 0.5f, 1 / 3.0f, 1 / 3.0f, 1 / 3.0f);
    CHECK(tg_log_softmax(tape, x), 1e-5f, logf(1 / 6.0f), logf(1 / 3.0f), logf(0.5f),
          logf(1 / 3.0f), logf(1 / 3.0f), logf(1 / 3.0f));
}

Test(forward, dropout_mask_is_seeded_and_scaled) {
    tg_tensor *x = tg_tape_zeros(tape, TG_SHAPE(1000));
    tg_fill(x, 1.5f);
    tg_tensor *a = tg_dropout(tape, x, 0.5f, 7), *b = tg_dropout(tape, x, 0.5f, 7);
    tg_tensor *c = tg_dropout(tape, x, 0.5f, 8);
    cr_assert(a && b && c);
    int zeros = 0, differ = 0;
    for (int i = 0; i < 1000; i++) {
        cr_expect(a->data[i] == 0.0f || a->data[i] == 3.0f, "element %d = %g", i, (double)a->data[i]);
        cr_expect_eq(a->data[i], b->data[i]);
        zeros += a->data[i] == 0.0f;
        differ += a->data[i] != c->data[i];
    }
    cr_expect(zeros > 430 && zeros < 570, "%d zeros of 1000 at p = 0.5", zeros);
    cr_expect(differ > 300, "seeds 7 and 8 gave nearly the same mask (%d differ)", differ);
    CHECK(tg_dropout(tape, T(TG_SHAPE(2), (float[]){1, 2}), 0.0f, 1), 0, 1, 2);
}

Test(forward, matmul_and_linear) {
    tg_tensor *a = T(TG_SHAPE(2, 3), m23);
    tg_tensor *b = T(TG_SHAPE(3, 2), (float[]){7, 8, 9, 10, 11, 12});
    CHECK(tg_matmul(tape, a, b), 1e-5f, 58, 64, 139, 154);
    tg_tensor *batched = tg_matmul(tape, T(TG_SHAPE(2, 1, 2), (float[]){1, 2, 3, 4}),
                                   T(TG_SHAPE(2, 2, 1), (float[]){5, 6, 7, 8}));
    CHECK(batched, 1e-5f, 17, 53);
    cr_expect_eq(batched->ndim, 3);
    tg_tensor *shared = tg_matmul(tape, T(TG_SHAPE(2, 1, 3), m23), b);
    CHECK(shared, 1e-5f, 58, 64, 139, 154);
    tg_tensor *w = T(TG_SHAPE(3, 2), (float[]){1, 0, 0, 1, 1, 1});
    CHECK(tg_linear(tape, T(TG_SHAPE(1, 2), (float[]){1, 2}), w, T(TG_SHAPE(3), (float[]){0.5f, -0.5f, 0})),
          1e-6f, 1.5f, 1.5f, 3);
}

Test(forward, shape_ops) {
    tg_tensor *a = T(TG_SHAPE(2, 3), m23);
    tg_tensor *t = tg_transpose(tape, a, 0, 1);
    CHECK(t, 0, 1, 4, 2, 5, 3, 6);
    cr_expect(t->shape[0] == 3 && t->shape[1] == 2);
    tg_tensor *t3 = tg_transpose(tape, T(TG_SHAPE(1, 2, 3), m23), -1, -2);
    CHECK(t3, 0, 1, 4, 2, 5, 3, 6);
    tg_tensor *r = tg_reshape(tape, a, TG_SHAPE(3, -1));
    CHECK(r, 0, 1, 2, 3, 4, 5, 6);
    cr_expect(r->ndim == 2 && r->shape[0] == 3 && r->shape[1] == 2);
    tg_tensor *parts[2] = {T(TG_SHAPE(2, 1), (float[]){1, 2}), T(TG_SHAPE(2, 2), (float[]){3, 4, 5, 6})};
    CHECK(tg_concat(tape, parts, 2, 1), 0, 1, 3, 4, 2, 5, 6);
    CHECK(tg_concat(tape, parts + 1, 1, 0), 0, 3, 4, 5, 6);
    CHECK(tg_slice(tape, a, 1, 1, 3), 0, 2, 3, 5, 6);
    CHECK(tg_slice(tape, a, 0, 1, 2), 0, 4, 5, 6);
}

Test(forward, reductions) {
    tg_tensor *a = T(TG_SHAPE(2, 3), m23);
    tg_tensor *s = tg_sum(tape, a);
    CHECK(s, 0, 21);
    cr_expect_eq(s->ndim, 0);
    CHECK(tg_mean(tape, a), 0, 3.5f);
    CHECK(tg_sum_axis(tape, a, 0, false), 0, 5, 7, 9);
    tg_tensor *m = tg_mean_axis(tape, a, 1, true);
    CHECK(m, 0, 2, 5);
    cr_expect(m->ndim == 2 && m->shape[0] == 2 && m->shape[1] == 1);
    CHECK(tg_sum_axis(tape, a, -1, false), 0, 6, 15);
}

Test(forward, losses) {
    CHECK(tg_mse(tape, T(TG_SHAPE(2), (float[]){1, 2}), T(TG_SHAPE(2), (float[]){0, 0})), 1e-6f, 2.5f);
    tg_tensor *logits = T(TG_SHAPE(2, 3), (float[]){0, logf(2), logf(3), 1, 1, 1});
    tg_tensor *labels = T(TG_SHAPE(2), (float[]){2, 0});
    /* row 0: -log(3/6); row 1: -log(1/3) */
    CHECK(tg_cross_entropy(tape, logits, labels), 1e-6f, (logf(2) + logf(3)) / 2);
    CHECK(tg_bce_with_logits(tape, T(TG_SHAPE(2), (float[]){0, logf(3)}), T(TG_SHAPE(2), (float[]){1, 0})),
          1e-6f, (logf(2) + logf(4)) / 2);
}

Test(forward, batch_norm_train_and_eval) {
    tg_tensor *x = T(TG_SHAPE(4, 1), (float[]){1, 2, 3, 4});
    tg_tensor *gamma = T(TG_SHAPE(1), (float[]){2}), *beta = T(TG_SHAPE(1), (float[]){1});
    tg_tensor *mean = T(TG_SHAPE(1), (float[]){0}), *var = T(TG_SHAPE(1), (float[]){1});
    float s = 1.0f / sqrtf(1.25f + 1e-5f);
    CHECK(tg_batch_norm(tape, x, gamma, beta, mean, var, 0.1f, 1e-5f, true), 1e-5f,
          1 - 3 * s, 1 - s, 1 + s, 1 + 3 * s);
    CHECK(mean, 1e-6f, 0.25f);
    CHECK(var, 1e-6f, 0.9f + 0.1f * 1.25f * 4 / 3);
    tg_copy_in(mean, (float[]){1}, 1);
    tg_copy_in(var, (float[]){4}, 1);
    float e = 1.0f / sqrtf(4 + 1e-5f);
    CHECK(tg_batch_norm(tape, x, gamma, beta, mean, var, 0.1f, 1e-5f, false), 1e-5f,
          1, 1 + 2 * e, 1 + 4 * e, 1 + 6 * e);
    CHECK(mean, 0, 1);
}

Test(forward, layer_norm_rows) {
    tg_tensor *x = T(TG_SHAPE(2, 3), (float[]){1, 2, 3, 10, 10, 10});
    tg_tensor *gamma = T(TG_SHAPE(3), (float[]){1, 1, 1}), *beta = T(TG_SHAPE(3), (float[]){0, 0, 5});
    float k = 1.0f / sqrtf(2.0f / 3.0f + 1e-5f);
    CHECK(tg_layer_norm(tape, x, gamma, beta, 1e-5f), 1e-5f, -k, 0, k + 5, 0, 0, 5);
}
