/*
 * tests/test_gradcheck.c — every registered op's backward against central finite differences,
 * driven by the registry so that a new op is checked as soon as it is registered.
 * Tolerances: tg_gradcheck_defaults() (eps 1e-2, atol 2e-3, rtol 1e-2; see autograd/gradcheck.c).
 */
#include "helpers.h"

Test(gradcheck, every_registered_op_passes_on_all_its_examples) {
    tg_ctx *c = tg_ctx_new();
    cr_assert_not_null(c);
    int checked_ops = check_registered_gradients(c, 0);
    cr_expect_geq(checked_ops, 43);
    tg_ctx_free(c);
}

/* A gradient check that cannot fail proves nothing: feed it wrong backwards and expect failure. */

static tg_status square_forward(tg_op_call *call) {
    for (int64_t i = 0; i < call->output->size; i++)
        call->output->data[i] = call->inputs[0]->data[i] * call->inputs[0]->data[i];
    return TG_OK;
}

/* d(x^2)/dx = 2x; this one forgets the 2. */
static tg_status square_backward_missing_factor(const tg_op_call *call) {
    for (int64_t i = 0; i < call->output->size; i++)
        call->inputs[0]->grad[i] += call->output->grad[i] * call->inputs[0]->data[i];
    return TG_OK;
}

static tg_status one_input_example(tg_tape *tape, void *op_data, int index, tg_tensor **inputs,
                                   int *n_inputs, tg_attr_value *attrs) {
    (void)attrs;
    const int64_t *shape = op_data;
    if (index > 0) return TG_ERR_NOT_FOUND;
    inputs[0] = tg_tape_zeros(tape, 2, shape);
    tg_fill_uniform(inputs[0], 0.5f, 2.0f, 3);
    tg_set_requires_grad(inputs[0], true);
    *n_inputs = 1;
    return TG_OK;
}

Test(gradcheck, catches_a_dropped_factor_of_two) {
    tg_ctx *ctx = tg_ctx_new();
    static int64_t shape[2] = {3, 4};
    tg_op_def def = {"bad_square", 1, "", infer_like_first_input, square_forward, square_backward_missing_factor,
                     one_input_example, shape, NULL};
    int id = tg_op_register(ctx, &def);
    cr_assert_geq(id, 0, "%s", tg_errmsg(ctx));
    tg_gradcheck_result result;
    cr_assert_eq(tg_gradcheck(ctx, id, 0, NULL, &result), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_not(result.passed, "a backward missing its factor 2 passed the check");
    cr_expect_gt(result.max_rel_err, 0.4);
    tg_ctx_free(ctx);
}

/* matmul whose backward uses B instead of B^T for dA (the classic transposition slip). */
static tg_status mm_infer(const tg_op_call *call, tg_shape *out) {
    out->ndim = 2;
    out->dims[0] = call->inputs[0]->shape[0];
    out->dims[1] = call->inputs[1]->shape[1];
    return TG_OK;
}

static tg_status mm_forward(tg_op_call *call) {
    const tg_tensor *a = call->inputs[0], *b = call->inputs[1];
    int64_t m = a->shape[0], k = a->shape[1], n = b->shape[1];
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float s = 0;
            for (int64_t p = 0; p < k; p++) s += a->data[i * k + p] * b->data[p * n + j];
            call->output->data[i * n + j] = s;
        }
    return TG_OK;
}

static tg_status mm_backward_transposed(const tg_op_call *call) {
    const tg_tensor *a = call->inputs[0], *b = call->inputs[1];
    int64_t m = a->shape[0], k = a->shape[1], n = b->shape[1];
    for (int64_t i = 0; i < m; i++)
        for (int64_t p = 0; p < k; p++)
            for (int64_t j = 0; j < n; j++) /* should read b[p*n + j]: reads it transposed */
                a->grad[i * k + p] += call->output->grad[i * n + j] * b->data[j * k + p];
    return TG_OK;
}

static tg_status square_pair_example(tg_tape *tape, void *op_data, int index, tg_tensor **inputs,
                                     int *n_inputs, tg_attr_value *attrs) {
    (void)op_data;
    (void)attrs;
    if (index > 0) return TG_ERR_NOT_FOUND;
    for (int i = 0; i < 2; i++) {
        inputs[i] = tg_tape_zeros(tape, TG_SHAPE(3, 3));
        tg_fill_normal(inputs[i], 0, 1, 10 + (uint64_t)i);
    }
    tg_set_requires_grad(inputs[0], true);
    *n_inputs = 2;
    return TG_OK;
}

Test(gradcheck, catches_a_transposed_matmul_gradient) {
    tg_ctx *ctx = tg_ctx_new();
    tg_op_def def = {"bad_matmul", 2, "", mm_infer, mm_forward, mm_backward_transposed,
                     square_pair_example, NULL, NULL};
    int id = tg_op_register(ctx, &def);
    cr_assert_geq(id, 0, "%s", tg_errmsg(ctx));
    tg_gradcheck_result result;
    cr_assert_eq(tg_gradcheck(ctx, id, 0, NULL, &result), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_not(result.passed, "a transposed matmul gradient passed the check");
    tg_ctx_free(ctx);
}
