/*
 * tests/test_jvp_attention.c — forward-mode rules of the index and attention ops (embedding,
 * masked_fill, max_axis, argmax_axis, max_axis_select, attention, attention_qkv): attention's
 * JVP against central differences of its forward, ties of max_axis, argmax's zero tangent, and
 * tangents that follow a replay (every op's own examples are checked at order 2 in
 * test_higher.c).
 */
#include "helpers.h"

static void fill_normal(float *x, int64_t n, uint64_t seed) {
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    for (int64_t i = 0; i < n; i++) x[i] = (float)tg_rng_normal(&rng);
}

enum { HEADS = 2, T = 5, D = 4, N = HEADS * T * D };
#define ATT_SHAPE TG_SHAPE(1, HEADS, T, D)

/* Causal attention with the default scale on x[0..2] (+ step * dir[0..2]), unrecorded. */
static void attention_at(tg_ctx *ctx, float (*x)[N], float (*dir)[N], float step, float *out) {
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *in[3];
    for (int i = 0; i < 3; i++) {
        in[i] = tg_tape_zeros(tape, ATT_SHAPE);
        for (int64_t e = 0; e < N; e++) in[i]->data[e] = x[i][e] + step * dir[i][e];
    }
    tg_tensor *y = tg_attention(tape, in[0], in[1], in[2], true, 0.0f);
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    memcpy(out, y->data, sizeof(float) * N);
    tg_tape_free(tape);
}

Test(jvp_attention, causal_attention_tangent_matches_central_differences) {
    tg_ctx *ctx = tg_ctx_new();
    float x[3][N], dir[3][N], plus[N], minus[N];
    for (int i = 0; i < 3; i++) {
        fill_normal(x[i], N, 10 + i);
        fill_normal(dir[i], N, 20 + i);
    }
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *in[3], *tangents[3];
    for (int i = 0; i < 3; i++) {
        in[i] = tg_tape_from_data(tape, ATT_SHAPE, x[i]);
        tg_set_requires_grad(in[i], true);
        tangents[i] = tg_tape_from_data(tape, ATT_SHAPE, dir[i]);
    }
    tg_tensor *y = tg_attention(tape, in[0], in[1], in[2], true, 0.0f), *yt = NULL;
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_jvp(tape, y, 3, in, tangents, &yt), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(yt->size, (int64_t)N);
    const float eps = 1e-2f;
    attention_at(ctx, x, dir, eps, plus);
    attention_at(ctx, x, dir, -eps, minus);
    for (int64_t e = 0; e < N; e++) {
        double numeric = ((double)plus[e] - minus[e]) / (2.0 * eps);
        cr_expect(fabs(yt->data[e] - numeric) <= 2e-3 + 1e-2 * fabs(numeric),
                  "element %lld: jvp %.6g, differences %.6g", (long long)e, (double)yt->data[e],
                  numeric);
    }
    /* the first query sees only the first key: its output moves exactly as v's first row */
    for (int64_t h = 0; h < HEADS; h++)
        expect_close(yt->data + h * T * D, dir[2] + h * T * D, D, 1e-6f, "row 0 tangent");
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

/* Ties: max_axis's backward sends the gradient to the first maximum, and its tangent is the
 * tangent of that same element, so <grad, t> = the JVP. A lane with a NaN has a NaN maximum and
 * a NaN tangent (its gradient goes to the first NaN). */
Test(jvp_attention, max_axis_tangent_takes_the_first_of_tied_maxima) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    float xs[3][4] = {{1, 3, 3, 2}, {5, 5, 5, 5}, {2, NAN, 7, NAN}};
    float ts[3][4] = {{10, 20, 30, 40}, {1, 2, 3, 4}, {1, 2, 3, 4}};
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(3, 4), &xs[0][0]);
    tg_set_requires_grad(x, true);
    tg_tensor *t = tg_tape_from_data(tape, TG_SHAPE(3, 4), &ts[0][0]);
    tg_tensor *y = tg_max_axis(tape, x, 1, false), *yt = NULL;
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_jvp(tape, y, 1, &x, &t, &yt), TG_OK, "%s", tg_errmsg(ctx));
    expect_close(yt->data, (float[]){20, 1}, 2, 0.0f, "max tangent");
    cr_expect(isnan(yt->data[2]), "tangent of a NaN lane %g", (double)yt->data[2]);
    cr_assert_eq(tg_backward_with(tape, y, (float[]){1, 1, 1}), TG_OK, "%s", tg_errmsg(ctx));
    expect_close(x->grad, (float[]){0, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0}, 12, 0.0f,
                 "max gradient");
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

Test(jvp_attention, argmax_axis_tangent_is_zero) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(2, 3), (float[]){1, 4, 2, 9, 0, 3});
    tg_set_requires_grad(x, true);
    tg_tensor *t = tg_tape_from_data(tape, TG_SHAPE(2, 3), (float[]){1, 1, 1, 1, 1, 1});
    tg_tensor *y = tg_argmax_axis(tape, x, 1, true), *yt = NULL;
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_jvp(tape, y, 1, &x, &t, &yt), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(yt->size, 2);
    expect_close(yt->data, (float[]){0, 0}, 2, 0.0f, "argmax tangent");
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

/* The rules compute with ops on the tape, so a replay of the step recomputes the tangents from
 * the new inputs: the maximum that moved, the attention of new queries. The tangents require a
 * gradient here so that every op of the rules is recorded (an op on constants alone, such as
 * k's tangent transposed, is not, and a replay refuses a step with such calls). */
Test(jvp_attention, tangents_follow_a_replay) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(1, 4), (float[]){1, 3, 2, 0});
    tg_set_requires_grad(x, true);
    tg_tensor *t = tg_tape_from_data(tape, TG_SHAPE(1, 4), (float[]){10, 20, 30, 40});
    tg_set_requires_grad(t, true);
    tg_tensor *m = tg_max_axis(tape, x, 1, false), *mt = NULL;
    cr_assert_eq(tg_jvp(tape, m, 1, &x, &t, &mt), TG_OK, "%s", tg_errmsg(ctx));
    expect_close(mt->data, (float[]){20}, 1, 0.0f, "max tangent");

    float qkv[3][N], dir[3][N], fresh[N];
    for (int i = 0; i < 3; i++) {
        fill_normal(qkv[i], N, 30 + i);
        fill_normal(dir[i], N, 40 + i);
    }
    tg_tensor *in[3], *tangents[3];
    for (int i = 0; i < 3; i++) {
        in[i] = tg_tape_from_data(tape, ATT_SHAPE, qkv[i]);
        tg_set_requires_grad(in[i], true);
        tangents[i] = tg_tape_from_data(tape, ATT_SHAPE, dir[i]);
        tg_set_requires_grad(tangents[i], true);
    }
    tg_tensor *y = tg_attention(tape, in[0], in[1], in[2], true, 0.0f), *yt = NULL;
    cr_assert_eq(tg_jvp(tape, y, 3, in, tangents, &yt), TG_OK, "%s", tg_errmsg(ctx));

    x->data[3] = 5.0f; /* the maximum moves to the last element */
    fill_normal(qkv[0], N, 50);
    memcpy(in[0]->data, qkv[0], sizeof qkv[0]);
    cr_assert_eq(tg_tape_replay(tape), TG_OK, "%s", tg_errmsg(ctx));
    expect_close(mt->data, (float[]){40}, 1, 0.0f, "max tangent after the replay");

    /* the tangent of a fresh recording at the new queries */
    tg_tape *other = tg_tape_new(ctx);
    for (int i = 0; i < 3; i++) {
        in[i] = tg_tape_from_data(other, ATT_SHAPE, qkv[i]);
        tg_set_requires_grad(in[i], true);
        tangents[i] = tg_tape_from_data(other, ATT_SHAPE, dir[i]);
    }
    tg_tensor *y2 = tg_attention(other, in[0], in[1], in[2], true, 0.0f), *yt2 = NULL;
    cr_assert_eq(tg_jvp(other, y2, 3, in, tangents, &yt2), TG_OK, "%s", tg_errmsg(ctx));
    memcpy(fresh, yt2->data, sizeof fresh);
    expect_close(yt->data, fresh, N, 0.0f, "attention tangent after the replay");
    tg_tape_free(other);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}
