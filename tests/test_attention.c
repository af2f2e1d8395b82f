/*
 * tests/test_attention.c — the fused attention op: values against a naive loop in double,
 * gradients against finite differences, the same numbers on any thread count, bad shapes.
 */
#include "helpers.h"

/* softmax(scale q k^T, causal) v for one head, in double. */
static void naive_head(const float *q, const float *k, const float *v, int64_t tq, int64_t tk,
                       int64_t d, int64_t dv, bool causal, double scale, double *out) {
    for (int64_t i = 0; i < tq; i++) {
        double s[64], max = -1e300, sum = 0.0;
        int64_t seen = causal ? (i + 1 < tk ? i + 1 : tk) : tk;
        for (int64_t j = 0; j < seen; j++) {
            s[j] = 0.0;
            for (int64_t c = 0; c < d; c++) s[j] += (double)q[i * d + c] * k[j * d + c];
            s[j] *= scale;
            if (s[j] > max) max = s[j];
        }
        for (int64_t j = 0; j < seen; j++) sum += s[j] = exp(s[j] - max);
        for (int64_t c = 0; c < dv; c++) {
            double o = 0.0;
            for (int64_t j = 0; j < seen; j++) o += s[j] / sum * v[j * dv + c];
            out[i * dv + c] = o;
        }
    }
}

static void fill(float *x, int64_t n, unsigned seed) {
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    for (int64_t i = 0; i < n; i++) x[i] = (float)tg_rng_normal(&rng);
}

static void expect_matches_naive(int64_t b, int64_t h, int64_t tq, int64_t tk, int64_t d,
                                 int64_t dv, bool causal, float scale) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    int64_t nq = b * h * tq * d, nk = b * h * tk * d, nv = b * h * tk * dv;
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nv * 4);
    fill(q, nq, 1);
    fill(k, nk, 2);
    fill(v, nv, 3);
    tg_tensor *out = tg_attention(tape, tg_tape_from_data(tape, TG_SHAPE(b, h, tq, d), q),
                                  tg_tape_from_data(tape, TG_SHAPE(b, h, tk, d), k),
                                  tg_tape_from_data(tape, TG_SHAPE(b, h, tk, dv), v), causal, scale);
    cr_assert_not_null(out, "%s", tg_errmsg(ctx));
    cr_expect_eq(out->shape[2], tq);
    cr_expect_eq(out->shape[3], dv);
    double *want = malloc(tq * dv * sizeof(double));
    double s = scale != 0.0f ? scale : 1.0 / sqrt((double)d);
    for (int64_t n = 0; n < b * h; n++) {
        naive_head(q + n * tq * d, k + n * tk * d, v + n * tk * dv, tq, tk, d, dv, causal, s, want);
        for (int64_t i = 0; i < tq * dv; i++)
            cr_expect(fabs(out->data[n * tq * dv + i] - want[i]) < 1e-5,
                      "head %lld element %lld: %g, expected %g", (long long)n, (long long)i,
                      (double)out->data[n * tq * dv + i], want[i]);
    }
    free(want);
    free(q);
    free(k);
    free(v);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

Test(attention, matches_a_naive_softmax_of_scores_times_values) {
    expect_matches_naive(2, 3, 7, 7, 4, 4, false, 0.0f);
    expect_matches_naive(2, 3, 7, 7, 4, 4, true, 0.0f);
    expect_matches_naive(1, 1, 5, 9, 3, 2, true, 0.7f); /* Tq != Tk, Dv != D, a given scale */
    expect_matches_naive(3, 2, 9, 4, 8, 5, false, 0.0f);
    /* causal heads longer than one block of query rows (16): blocks see fewer keys */
    expect_matches_naive(1, 2, 40, 40, 8, 8, true, 0.0f);
    expect_matches_naive(1, 1, 37, 50, 4, 3, true, 0.0f);
    expect_matches_naive(1, 1, 50, 21, 4, 3, true, 0.0f);
}

/* sum(w * attention(q, k, v)) for the whole-function check: w weighs every output differently. */
static tg_tensor *weighted_attention(tg_tape *tape, tg_tensor *const *in, int n, void *user) {
    (void)n, (void)user;
    return tg_sum(tape, tg_mul(tape, tg_attention(tape, in[0], in[1], in[2], true, 0.0f), in[3]));
}

Test(attention, gradients_of_causal_heads_of_several_blocks_match_finite_differences) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tensor *in[4];
    const int64_t shapes[4][4] = {{1, 2, 37, 3}, {1, 2, 37, 3}, {1, 2, 37, 2}, {1, 2, 37, 2}};
    for (int i = 0; i < 4; i++) {
        in[i] = tg_zeros(ctx, 4, shapes[i]);
        tg_fill_normal(in[i], 0.0f, 1.0f, 40 + (uint64_t)i);
        tg_set_requires_grad(in[i], i < 3);
    }
    tg_gradcheck_opts opts = tg_gradcheck_defaults();
    opts.max_elements = 60;
    tg_gradcheck_result r;
    cr_assert_eq(tg_gradcheck_function(ctx, weighted_attention, NULL, in, 4, &opts, &r), TG_OK,
                 "%s", tg_errmsg(ctx));
    cr_expect(r.passed, "input %d element %lld: analytic %g numeric %g", r.worst_input,
              (long long)r.worst_index, r.worst_analytic, r.worst_numeric);
    tg_ctx_free(ctx);
}

Test(attention, causal_rows_ignore_later_keys) {
    /* Changing the last key and value changes no output row but the last. */
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    float q[4 * 2], k[4 * 2], v[4 * 2];
    fill(q, 8, 4);
    fill(k, 8, 5);
    fill(v, 8, 6);
    tg_tensor *a = tg_attention(tape, tg_tape_from_data(tape, TG_SHAPE(1, 4, 2), q),
                                tg_tape_from_data(tape, TG_SHAPE(1, 4, 2), k),
                                tg_tape_from_data(tape, TG_SHAPE(1, 4, 2), v), true, 0.0f);
    k[6] += 3.0f;
    v[7] -= 2.0f;
    tg_tensor *b = tg_attention(tape, tg_tape_from_data(tape, TG_SHAPE(1, 4, 2), q),
                                tg_tape_from_data(tape, TG_SHAPE(1, 4, 2), k),
                                tg_tape_from_data(tape, TG_SHAPE(1, 4, 2), v), true, 0.0f);
    cr_assert(a && b, "%s", tg_errmsg(ctx));
    for (int i = 0; i < 6; i++) cr_expect_eq(a->data[i], b->data[i], "element %d", i);
    cr_expect(a->data[7] != b->data[7]);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

Test(attention, every_example_passes_the_gradient_check) {
    tg_ctx *ctx = tg_ctx_new();
    int id = tg_op_find(ctx, "attention");
    cr_assert_geq(id, 0);
    for (int example = 0; example < 4; example++) {
        tg_gradcheck_result r;
        cr_assert_eq(tg_gradcheck(ctx, id, example, NULL, &r), TG_OK, "%s", tg_errmsg(ctx));
        cr_expect(r.passed && r.n_checked > 0, "example %d: input %d element %lld: %g vs %g",
                  example, r.worst_input, (long long)r.worst_index, r.worst_analytic,
                  r.worst_numeric);
    }
    tg_ctx_free(ctx);
}

/* Forward and every input gradient of a [2,4,48,16] causal attention at `threads` threads. */
static void run_at_threads(int threads, float *out, float *grads) {
    tg_ctx *ctx = tg_ctx_new();
    cr_assert_eq(tg_ctx_set_threads(ctx, threads), TG_OK);
    tg_tape *tape = tg_tape_new(ctx);
    enum { N = 2 * 4 * 48 * 16 };
    static float data[3][N];
    tg_tensor *in[3];
    for (int i = 0; i < 3; i++) {
        fill(data[i], N, 10 + i);
        in[i] = tg_tape_from_data(tape, TG_SHAPE(2, 4, 48, 16), data[i]);
        tg_set_requires_grad(in[i], true);
    }
    tg_tensor *o = tg_attention(tape, in[0], in[1], in[2], true, 0.0f);
    tg_tensor *loss = tg_sum(tape, tg_mul(tape, o, o));
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
    memcpy(out, o->data, sizeof(float) * N);
    for (int i = 0; i < 3; i++) memcpy(grads + i * N, in[i]->grad, sizeof(float) * N);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

Test(attention, same_numbers_on_one_and_two_threads) {
    enum { N = 2 * 4 * 48 * 16 };
    static float out1[N], out2[N], g1[3 * N], g2[3 * N];
    run_at_threads(1, out1, g1);
    run_at_threads(2, out2, g2);
    cr_expect_eq(memcmp(out1, out2, sizeof out1), 0, "outputs differ");
    cr_expect_eq(memcmp(g1, g2, sizeof g1), 0, "gradients differ");
}

Test(attention, bad_shapes_are_refused_naming_the_op) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *q = tg_tape_zeros(tape, TG_SHAPE(2, 3, 5, 4));
    tg_tensor *k = tg_tape_zeros(tape, TG_SHAPE(2, 3, 6, 4));
    tg_tensor *v = tg_tape_zeros(tape, TG_SHAPE(2, 3, 5, 4));
    cr_expect_null(tg_attention(tape, q, k, v, false, 0.0f));
    expect_errmsg_has(ctx, "attention", "k and v lengths 6 != 5");
    tg_clear_error(ctx);
    tg_tensor *k8 = tg_tape_zeros(tape, TG_SHAPE(2, 3, 5, 8));
    cr_expect_null(tg_attention(tape, q, k8, v, false, 0.0f));
    expect_errmsg_has(ctx, "attention", "head sizes 4 != 8");
    tg_clear_error(ctx);
    tg_tensor *heads = tg_tape_zeros(tape, TG_SHAPE(2, 2, 5, 4));
    cr_expect_null(tg_attention(tape, q, heads, heads, false, 0.0f));
    expect_errmsg_has(ctx, "leading dim 1 differs");
    tg_clear_error(ctx);
    cr_expect_null(tg_attention(tape, q, q, q, false, -1.0f));
    expect_errmsg_has(ctx, "scale = -1");
    tg_clear_error(ctx);
    tg_tensor *flat = tg_tape_zeros(tape, TG_SHAPE(5, 4));
    cr_expect_null(tg_attention(tape, flat, flat, flat, true, 0.0f));
    expect_errmsg_has(ctx, "3 or 4 dims");
    cr_expect_null(tg_attention(NULL, q, q, q, true, 0.0f));
    cr_expect_null(tg_attention(tape, NULL, q, q, true, 0.0f));
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

Test(attention, packed_heads_match_the_naive_loop_per_head) {
    enum { B = 2, T = 20, E = 12, H = 3, D = E / H }; /* T: two blocks of query rows */
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    float qkv[B * T * 3 * E];
    fill(qkv, B * T * 3 * E, 21);
    tg_tensor *out = tg_attention_qkv(tape, tg_tape_from_data(tape, TG_SHAPE(B, T, 3 * E), qkv),
                                      H, true, 0.0f);
    cr_assert_not_null(out, "%s", tg_errmsg(ctx));
    cr_expect_eq(out->shape[2], E);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            float q[T * D], k[T * D], v[T * D];
            for (int t = 0; t < T; t++)
                for (int c = 0; c < D; c++) {
                    const float *row = qkv + (b * T + t) * 3 * E + h * D + c;
                    q[t * D + c] = row[0];
                    k[t * D + c] = row[E];
                    v[t * D + c] = row[2 * E];
                }
            double want[T * D];
            naive_head(q, k, v, T, T, D, D, true, 1.0 / sqrt((double)D), want);
            for (int t = 0; t < T; t++)
                for (int c = 0; c < D; c++)
                    cr_expect(fabs(out->data[(b * T + t) * E + h * D + c] - want[t * D + c]) < 1e-5,
                              "b %d h %d t %d c %d", b, h, t, c);
        }
    tg_tensor *qkv8 = tg_tape_zeros(tape, TG_SHAPE(B, T, 3 * E));
    cr_expect_null(tg_attention_qkv(tape, qkv8, 5, true, 0.0f));
    expect_errmsg_has(ctx, "attention_qkv", "heads = 5 does not divide E = 12");
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}
