/* tests/test_ops_nd.c — the N-D ops of attention and language models (embedding, masked_fill,
 * max/argmax over an axis, permute, clamp, sin, cos, softmax over an axis, batched matmul):
 * forward values against naive loops or hand-computed values, gradients against finite
 * differences, and the errors. */
#include "fixture.h"

TestSuite(ops_nd, .init = fixture_setup, .fini = fixture_teardown);

#define T(...) tg_tape_from_data(tape, __VA_ARGS__)

/* A tape tensor of the given shape holding 0.1 * (i + 1) - offset at element i. */
static tg_tensor *ramp(int ndim, const int64_t *shape, float offset) {
    tg_tensor *t = tg_tape_zeros(tape, ndim, shape);
    cr_assert_not_null(t, "%s", tg_errmsg(ctx));
    for (int64_t i = 0; i < t->size; i++) t->data[i] = 0.1f * (float)(i + 1) - offset;
    return t;
}

static void expect_shape(const tg_tensor *t, int ndim, const int64_t *shape) {
    cr_assert_not_null(t, "%s", tg_errmsg(ctx));
    cr_assert_eq(t->ndim, ndim);
    for (int d = 0; d < ndim; d++)
        cr_expect_eq(t->shape[d], shape[d], "dim %d: %lld, expected %lld", d,
                     (long long)t->shape[d], (long long)shape[d]);
}

/* ---- forward values ------------------------------------------------------------------------ */

Test(ops_nd, permute_moves_every_element_where_a_naive_loop_does) {
    tg_tensor *x = ramp(TG_SHAPE(2, 3, 4), 0);
    tg_tensor *y = tg_permute(tape, x, TG_SHAPE(2, 0, 1));
    expect_shape(y, TG_SHAPE(4, 2, 3));
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 4; k++)
                cr_expect_eq(y->data[(k * 2 + i) * 3 + j], x->data[(i * 3 + j) * 4 + k]);
    /* the attention layout [B,T,H,D] -> [B,H,T,D] (rows of D copied whole) and back */
    tg_tensor *bthd = ramp(TG_SHAPE(2, 3, 2, 4), 0);
    tg_tensor *bhtd = tg_permute(tape, bthd, TG_SHAPE(0, 2, 1, 3));
    expect_shape(bhtd, TG_SHAPE(2, 2, 3, 4));
    for (int b = 0; b < 2; b++)
        for (int t = 0; t < 3; t++)
            for (int h = 0; h < 2; h++)
                for (int d = 0; d < 4; d++)
                    cr_expect_eq(bhtd->data[((b * 2 + h) * 3 + t) * 4 + d],
                                 bthd->data[((b * 3 + t) * 2 + h) * 4 + d]);
    tg_tensor *back = tg_permute(tape, bhtd, TG_SHAPE(0, 2, 1, 3));
    expect_close(back->data, bthd->data, bthd->size, 0, "round trip");
    tg_tensor *same = tg_permute(tape, x, TG_SHAPE(0, 1, 2));
    expect_close(same->data, x->data, x->size, 0, "identity");
}

/* C[i] = A[a(i)] B[b(i)] with a naive triple loop per batch element. */
static void naive_batched_matmul(const tg_tensor *a, const tg_tensor *b, int64_t batch0,
                                 int64_t batch1, int64_t m, int64_t k, int64_t n, float *out) {
    int64_t a0 = a->ndim == 4 ? a->shape[0] : 1, a1 = a->ndim >= 3 ? a->shape[a->ndim - 3] : 1;
    int64_t b0 = b->ndim == 4 ? b->shape[0] : 1, b1 = b->ndim >= 3 ? b->shape[b->ndim - 3] : 1;
    for (int64_t i0 = 0; i0 < batch0; i0++)
        for (int64_t i1 = 0; i1 < batch1; i1++) {
            const float *am = a->data + ((a0 == 1 ? 0 : i0) * a1 + (a1 == 1 ? 0 : i1)) * m * k;
            const float *bm = b->data + ((b0 == 1 ? 0 : i0) * b1 + (b1 == 1 ? 0 : i1)) * k * n;
            float *c = out + (i0 * batch1 + i1) * m * n;
            for (int64_t r = 0; r < m; r++)
                for (int64_t col = 0; col < n; col++) {
                    double sum = 0.0;
                    for (int64_t j = 0; j < k; j++) sum += (double)am[r * k + j] * bm[j * n + col];
                    c[r * n + col] = (float)sum;
                }
        }
}

Test(ops_nd, batched_matmul_broadcasts_like_a_naive_loop) {
    float want[2 * 3 * 3 * 5];
    tg_tensor *a = ramp(TG_SHAPE(2, 1, 3, 4), 1.0f), *b = ramp(TG_SHAPE(3, 4, 5), 2.0f);
    tg_tensor *y = tg_matmul(tape, a, b);
    expect_shape(y, TG_SHAPE(2, 3, 3, 5));
    naive_batched_matmul(a, b, 2, 3, 3, 4, 5, want);
    expect_close(y->data, want, y->size, 1e-5f, "[2,1,3,4] x [3,4,5]");

    tg_tensor *q = ramp(TG_SHAPE(2, 2, 3, 4), 0.5f), *kt = ramp(TG_SHAPE(2, 2, 4, 3), 1.5f);
    y = tg_matmul(tape, q, kt);
    expect_shape(y, TG_SHAPE(2, 2, 3, 3));
    naive_batched_matmul(q, kt, 2, 2, 3, 4, 3, want);
    expect_close(y->data, want, y->size, 1e-5f, "[2,2,3,4] x [2,2,4,3]");

    tg_tensor *shared = ramp(TG_SHAPE(3, 4), 0.7f), *many = ramp(TG_SHAPE(2, 4, 5), 1.0f);
    y = tg_matmul(tape, shared, many);
    expect_shape(y, TG_SHAPE(2, 3, 5));
    naive_batched_matmul(shared, many, 1, 2, 3, 4, 5, want);
    expect_close(y->data, want, y->size, 1e-5f, "[3,4] x [2,4,5]");

    tg_tensor *rows = ramp(TG_SHAPE(2, 2, 3, 4), 1.0f), *w = ramp(TG_SHAPE(4, 5), 0.2f);
    y = tg_matmul(tape, rows, w);
    expect_shape(y, TG_SHAPE(2, 2, 3, 5));
    naive_batched_matmul(rows, w, 2, 2, 3, 4, 5, want);
    expect_close(y->data, want, y->size, 1e-5f, "[2,2,3,4] x [4,5]");
}

Test(ops_nd, softmax_over_the_middle_axis_matches_a_naive_loop) {
    tg_tensor *x = ramp(TG_SHAPE(2, 3, 4), 1.0f);
    for (int i = 0; i < x->size; i++) x->data[i] *= (float)(i % 5) - 1.5f;
    tg_tensor *y = tg_softmax_axis(tape, x, 1), *ly = tg_log_softmax_axis(tape, x, -2);
    expect_shape(y, TG_SHAPE(2, 3, 4));
    float want[24], want_log[24];
    for (int o = 0; o < 2; o++)
        for (int i = 0; i < 4; i++) {
            double sum = 0.0;
            for (int j = 0; j < 3; j++) sum += exp(x->data[(o * 3 + j) * 4 + i]);
            for (int j = 0; j < 3; j++) {
                int at = (o * 3 + j) * 4 + i;
                want[at] = (float)(exp(x->data[at]) / sum);
                want_log[at] = (float)(x->data[at] - log(sum));
            }
        }
    expect_close(y->data, want, 24, 1e-6f, "softmax axis 1");
    expect_close(ly->data, want_log, 24, 1e-5f, "log_softmax axis -2");
    /* the last axis agrees with tg_softmax */
    expect_close(tg_softmax_axis(tape, x, -1)->data, tg_softmax(tape, x)->data, 24, 0, "last axis");
}

Test(ops_nd, causal_mask_then_softmax_gives_zeros_where_masked) {
    /* scores [2,3,3] (2 heads), mask [3,3] with 1 above the diagonal */
    tg_tensor *scores = leaf(ctx, TG_SHAPE(2, 3, 3), (float[]){0.3f, -1, 2, 0.5f, 0.1f, -0.2f, 1, 2, 3,
                                                              -0.4f, 0.8f, 0.2f, 1.5f, -1, 0.7f, 0, 0.3f, -2});
    tg_tensor *mask = T(TG_SHAPE(3, 3), (float[]){0, 1, 1, 0, 0, 1, 0, 0, 0});
    tg_tensor *filled = tg_masked_fill(tape, scores, mask, -INFINITY);
    tg_tensor *p = tg_softmax_axis(tape, filled, -1);
    cr_assert_not_null(p, "%s", tg_errmsg(ctx));
    for (int h = 0; h < 2; h++)
        for (int r = 0; r < 3; r++) {
            double sum = 0.0;
            for (int c = 0; c < 3; c++) {
                float v = p->data[(h * 3 + r) * 3 + c];
                cr_expect(isfinite(v), "p[%d,%d,%d] = %g", h, r, c, (double)v);
                if (c > r) cr_expect_eq(v, 0.0f, "p[%d,%d,%d] = %g, masked", h, r, c, (double)v);
                sum += v;
            }
            cr_expect(fabs(sum - 1.0) < 1e-6, "row %d,%d sums to %g", h, r, sum);
        }
    cr_expect_eq(p->data[0], 1.0f, "a row with one unmasked entry gives it all");
    /* gradients stay finite and do not reach the masked scores */
    float seed[18];
    for (int i = 0; i < 18; i++) seed[i] = 0.25f * (float)(i % 7) - 0.5f;
    cr_assert_eq(tg_backward_with(tape, p, seed), TG_OK, "%s", tg_errmsg(ctx));
    for (int i = 0; i < 18; i++) {
        cr_expect(isfinite(scores->grad[i]), "grad[%d] = %g", i, (double)scores->grad[i]);
        if (mask->data[i % 9] != 0) cr_expect_eq(scores->grad[i], 0.0f, "masked grad[%d]", i);
    }
    cr_expect_eq(scores->grad[0], 0.0f, "a lone unmasked entry's softmax is constant 1");
}

Test(ops_nd, masked_fill_broadcasts_and_a_fully_masked_row_is_nan) {
    tg_tensor *x = T(TG_SHAPE(2, 3), (float[]){1, 2, 3, 4, 5, 6});
    tg_tensor *y = tg_masked_fill(tape, x, T(TG_SHAPE(3), (float[]){0, 1, 0}), 9);
    expect_close(y->data, (float[]){1, 9, 3, 4, 9, 6}, 6, 0, "column mask");
    y = tg_masked_fill(tape, x, T(TG_SHAPE(2, 1), (float[]){1, 0}), -1);
    expect_close(y->data, (float[]){-1, -1, -1, 4, 5, 6}, 6, 0, "row mask");
    tg_tensor *p = tg_softmax_axis(tape, y = tg_masked_fill(tape, x, T(TG_SHAPE(2, 1), (float[]){1, 0}),
                                                           -INFINITY), 1);
    for (int c = 0; c < 3; c++) cr_expect(isnan(p->data[c]), "an all -inf row gives NaN (PyTorch)");
    cr_expect(isfinite(p->data[3]) && isfinite(p->data[5]));
    cr_expect_null(tg_masked_fill(tape, x, T(TG_SHAPE(2, 3, 1), (float[]){0, 1, 0, 1, 0, 1}), 0));
    expect_errmsg_has(ctx, "masked_fill", "broadcast");
}

Test(ops_nd, max_and_argmax_pick_the_first_of_ties) {
    tg_tensor *x = leaf(ctx, TG_SHAPE(2, 3), (float[]){1, 5, 5, 7, 2, 7});
    tg_tensor *m = tg_max_axis(tape, x, 1, false);
    expect_shape(m, TG_SHAPE(2));
    expect_close(m->data, (float[]){5, 7}, 2, 0, "max axis 1");
    tg_tensor *i = tg_argmax_axis(tape, x, -1, true);
    expect_shape(i, TG_SHAPE(2, 1));
    expect_close(i->data, (float[]){1, 0}, 2, 0, "argmax axis 1");
    expect_close(tg_max_axis(tape, x, 0, true)->data, (float[]){7, 5, 7}, 3, 0, "max axis 0");
    expect_close(tg_argmax_axis(tape, x, 0, false)->data, (float[]){1, 0, 1}, 3, 0, "argmax axis 0");
    cr_assert_eq(tg_backward(tape, tg_sum(tape, m)), TG_OK, "%s", tg_errmsg(ctx));
    expect_close(x->grad, (float[]){0, 1, 0, 1, 0, 0}, 6, 0, "gradient to the first maximum");
    tg_tensor *nan_row = T(TG_SHAPE(1, 3), (float[]){1, NAN, 3});
    cr_expect(isnan(tg_max_axis(tape, nan_row, 1, false)->data[0]));
    cr_expect(isnan(tg_argmax_axis(tape, nan_row, 1, false)->data[0]));
}

Test(ops_nd, embedding_picks_rows_and_scatters_repeated_ids) {
    tg_tensor *table = leaf(ctx, TG_SHAPE(4, 2), (float[]){0, 1, 10, 11, 20, 21, 30, 31});
    tg_tensor *ids = T(TG_SHAPE(2, 2), (float[]){1, 3, 1, 0});
    tg_tensor *y = tg_embedding(tape, ids, table);
    expect_shape(y, TG_SHAPE(2, 2, 2));
    expect_close(y->data, (float[]){10, 11, 30, 31, 10, 11, 0, 1}, 8, 0, "rows");
    cr_assert_eq(tg_backward_with(tape, y, (float[]){1, 2, 3, 4, 5, 6, 7, 8}), TG_OK, "%s",
                 tg_errmsg(ctx));
    /* row 1 was picked twice: 1 + 5, 2 + 6; row 2 never */
    expect_close(table->grad, (float[]){7, 8, 6, 8, 0, 0, 3, 4}, 8, 0, "scatter-add");
}

Test(ops_nd, clamp_sin_cos_values_and_gradients) {
    tg_tensor *x = leaf(ctx, TG_SHAPE(5), (float[]){-2, -1, 0.5f, 1, 2});
    tg_tensor *y = tg_clamp(tape, x, -1, 1);
    expect_close(y->data, (float[]){-1, -1, 0.5f, 1, 1}, 5, 0, "clamp");
    cr_assert_eq(tg_backward(tape, tg_sum(tape, y)), TG_OK, "%s", tg_errmsg(ctx));
    expect_close(x->grad, (float[]){0, 1, 1, 1, 0}, 5, 0, "clamp passes the bounds (PyTorch)");
    tg_tensor *a = T(TG_SHAPE(3), (float[]){0, 1.5707963f, 3.1415927f});
    expect_close(tg_sin(tape, a)->data, (float[]){0, 1, 0}, 3, 1e-6f, "sin");
    expect_close(tg_cos(tape, a)->data, (float[]){1, 0, -1}, 3, 1e-6f, "cos");
    cr_expect(isnan(tg_clamp(tape, T(TG_SHAPE(1), (float[]){NAN}), 0, 1)->data[0]));
    cr_expect_null(tg_clamp(tape, a, 1, -1));
    expect_errmsg_has(ctx, "clamp", "lo 1 > hi -1");
}

/* ---- errors -------------------------------------------------------------------------------- */

static void expect_bad_id(float id, const char *element, const char *shown) {
    tg_tensor *table = tg_set_label(tg_tape_zeros(tape, TG_SHAPE(65, 3)), "emb");
    tg_tensor *ids = T(TG_SHAPE(5), (float[]){0, 64, 2, 3, 4});
    ids->data[3] = id;
    tg_clear_error(ctx);
    cr_expect_null(tg_embedding(tape, ids, table), "id %g accepted", (double)id);
    cr_expect_eq(tg_errcode(ctx), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "embedding", "'emb' [65,3]", element, shown, "[0, 65)");
}

Test(ops_nd, bad_ids_are_refused_naming_element_id_and_table_size) {
    expect_bad_id(7.5f, "at element 3", "id 7.5 ");
    expect_bad_id(-1.0f, "at element 3", "id -1 ");
    expect_bad_id(65.0f, "at element 3", "id 65 ");
    expect_bad_id(NAN, "at element 3", "id nan ");
    expect_bad_id(INFINITY, "at element 3", "id inf ");
    tg_clear_error(ctx);
    cr_expect_null(tg_embedding(tape, T(TG_SHAPE(2), (float[]){0, 1}), tg_tape_zeros(tape, TG_SHAPE(4))));
    expect_errmsg_has(ctx, "embedding", "table [V,E]");
}

Test(ops_nd, bad_orders_are_refused) {
    tg_tensor *x = tg_set_label(tg_tape_zeros(tape, TG_SHAPE(2, 3, 4)), "x");
    cr_expect_null(tg_permute(tape, x, TG_SHAPE(0, 0, 1)));
    cr_expect_eq(tg_errcode(ctx), TG_ERR_SHAPE);
    expect_errmsg_has(ctx, "permute", "'x' [2,3,4]", "order [0,0,1] is not a permutation of 0..2");
    tg_clear_error(ctx);
    cr_expect_null(tg_permute(tape, x, TG_SHAPE(0, 3, 1)));
    expect_errmsg_has(ctx, "order [0,3,1] is not a permutation");
    tg_clear_error(ctx);
    cr_expect_null(tg_permute(tape, x, TG_SHAPE(1, 0)));
    expect_errmsg_has(ctx, "order [1,0] has 2 entries for 3 dims");
    tg_clear_error(ctx);
    cr_expect_null(tg_permute(tape, x, 5, (int64_t[]){0, 1, 2, 3, 4}));
    expect_errmsg_has(ctx, "permute", "5 order entries");
    tg_clear_error(ctx);
    cr_expect_null(tg_permute(tape, x, 3, NULL));
    cr_expect_eq(tg_errcode(ctx), TG_ERR_SHAPE);
}

Test(ops_nd, bad_matmul_shapes_name_both) {
    tg_tensor *a = tg_set_label(tg_tape_zeros(tape, TG_SHAPE(2, 3, 4, 5)), "q");
    tg_tensor *b = tg_set_label(tg_tape_zeros(tape, TG_SHAPE(4, 5, 6)), "k");
    cr_expect_null(tg_matmul(tape, a, b));
    cr_expect_eq(tg_errcode(ctx), TG_ERR_SHAPE);
    expect_errmsg_has(ctx, "matmul", "'q' [2,3,4,5]", "'k' [4,5,6]", "batch sizes 3 != 4");
    tg_clear_error(ctx);
    b = tg_set_label(tg_tape_zeros(tape, TG_SHAPE(2, 1, 4, 6)), "k");
    cr_expect_null(tg_matmul(tape, a, b));
    expect_errmsg_has(ctx, "'q' [2,3,4,5]", "'k' [2,1,4,6]", "inner dims 5 != 4");
    tg_clear_error(ctx);
    cr_expect_null(tg_matmul(tape, a, tg_tape_zeros(tape, TG_SHAPE(5))));
    expect_errmsg_has(ctx, "expected [M,K] x [K,N]");
}

Test(ops_nd, null_tape_and_inputs_give_null) {
    tg_tensor *x = tg_tape_zeros(tape, TG_SHAPE(2, 3));
    cr_expect_null(tg_embedding(NULL, x, x));
    cr_expect_null(tg_embedding(tape, NULL, x));
    cr_expect_null(tg_masked_fill(tape, x, NULL, 0));
    cr_expect_null(tg_max_axis(NULL, x, 0, false));
    cr_expect_null(tg_argmax_axis(tape, NULL, 0, false));
    cr_expect_null(tg_permute(NULL, x, TG_SHAPE(1, 0)));
    cr_expect_null(tg_permute(tape, NULL, TG_SHAPE(1, 0)));
    cr_expect_null(tg_clamp(tape, NULL, 0, 1));
    cr_expect_null(tg_sin(NULL, x));
    cr_expect_null(tg_cos(tape, NULL));
    cr_expect_null(tg_softmax_axis(tape, NULL, 0));
    cr_expect_null(tg_log_softmax_axis(NULL, x, 0));
    tg_clear_error(ctx);
    cr_expect_null(tg_softmax_axis(tape, x, 2));
    expect_errmsg_has(ctx, "softmax_axis", "axis 2 out of range for 2 dims");
}

/* ---- the same numbers on any thread count ------------------------------------------------- */

static tg_tensor *normal_leaf(int ndim, const int64_t *shape, uint64_t seed) {
    tg_tensor *t = tg_zeros(ctx, ndim, shape);
    cr_assert_not_null(t, "%s", tg_errmsg(ctx));
    tg_fill_normal(t, 0, 1, seed);
    cr_assert_eq(tg_set_requires_grad(t, true), TG_OK);
    return t;
}

/* Gradients of a broadcast matmul and of an embedding with many repeated ids, on `threads`
 * threads, written into grads (a's, b's, then the table's). */
static void nd_gradients(int threads, float *grads) {
    cr_assert_eq(tg_ctx_set_threads(ctx, threads), TG_OK, "%s", tg_errmsg(ctx));
    tg_tape_reset(tape);
    tg_tensor *a = normal_leaf(TG_SHAPE(4, 1, 8, 16), 1), *b = normal_leaf(TG_SHAPE(3, 16, 8), 2);
    tg_tensor *table = normal_leaf(TG_SHAPE(50, 64), 3);
    tg_tensor *ids = tg_tape_zeros(tape, TG_SHAPE(4096));
    for (int64_t i = 0; i < ids->size; i++) ids->data[i] = (float)((i * 7) % 50);
    tg_tensor *y = tg_matmul(tape, a, b), *e = tg_embedding(tape, ids, table);
    tg_tensor *loss = tg_add(tape, tg_sum(tape, tg_square(tape, y)), tg_sum(tape, tg_square(tape, e)));
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
    memcpy(grads, a->grad, (size_t)a->size * sizeof(float));
    memcpy(grads + a->size, b->grad, (size_t)b->size * sizeof(float));
    memcpy(grads + a->size + b->size, table->grad, (size_t)table->size * sizeof(float));
}

Test(ops_nd, gradients_are_the_same_on_one_and_two_threads) {
    enum { N = 4 * 8 * 16 + 3 * 16 * 8 + 50 * 64 };
    static float one[N], two[N];
    nd_gradients(1, one);
    nd_gradients(2, two);
    cr_expect(memcmp(one, two, sizeof one) == 0, "gradients differ between 1 and 2 threads");
}

/* ---- gradients against finite differences (the registry's examples) ----------------------- */

Test(ops_nd, every_example_passes_the_gradient_check) {
    const char *ops[] = {"embedding", "masked_fill", "max_axis", "argmax_axis", "permute", "clamp",
                         "sin", "cos", "softmax_axis", "log_softmax_axis", "matmul", "transpose"};
    const int least[] = {3, 3, 3, 3, 3, 1, 1, 1, 3, 3, 7, 2};
    for (int k = 0; k < (int)(sizeof ops / sizeof ops[0]); k++) check_op_examples(ctx, ops[k], least[k]);
}

Test(ops_nd, embedding_backward_refuses_ids_changed_after_the_forward) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *ids = tg_from_data(ctx, TG_SHAPE(3), (float[]){0, 2, 1});
    tg_tensor *table = tg_zeros(ctx, TG_SHAPE(3, 2));
    tg_set_requires_grad(table, true);
    tg_tensor *loss = tg_sum(tape, tg_embedding(tape, ids, table));
    cr_assert_not_null(loss, "%s", tg_errmsg(ctx));
    ids->data[1] = 1e9f; /* would index far past the table's gradient */
    cr_expect_eq(tg_backward(tape, loss), TG_ERR_INVALID);
    cr_expect(strstr(tg_errmsg(ctx), "id 1e+09 at element 1") != NULL, "%s", tg_errmsg(ctx));
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}
