/*
 * autograd/gradcheck.c — checks an op's backward against central finite differences.
 *
 * The objective is L = sum(w * op(inputs)) with w drawn at random: a random projection makes
 * every output element count with its own weight, so a transposed or misplaced gradient cannot
 * cancel out the way it could under a plain sum.
 *
 * Tolerances (tg_gradcheck_defaults): the kernels run in f32, so the step must be large enough
 * that f32 rounding of L (about 1e-7 relative) divided by 2*eps stays small: eps = 1e-2 gives
 * a rounding error near 1e-5 and a truncation error of eps^2/6 * f''' (about 2e-5 for smooth
 * ops of unit scale). An element passes when |analytic - numeric| <= atol + rtol * |numeric|
 * with atol = 2e-3, rtol = 1e-2: a dropped factor of 2 is a 50-100% error and a transposed
 * matmul a wrong value at almost every element, both far outside.
 */
#include "autograd/internal.h"

#include <math.h>
#include <string.h>

tg_gradcheck_opts tg_gradcheck_defaults(void) {
    tg_gradcheck_opts opts = {1e-2, 2e-3, 1e-2, 1};
    return opts;
}

typedef struct check_run {
    tg_tape *tape;
    const tgi_op *op;
    tg_tensor *inputs[TG_EXAMPLE_MAX_INPUTS];
    int n_inputs;
    tg_attr_value attrs[TG_MAX_ATTRS];
    const float *weights;
} check_run;

/* L at the current input values; the forward's memory is given back to the arena at once. */
static tg_status objective(check_run *run, double *value) {
    tgi_arena_mark mark = tgi_arena_mark_get(&run->tape->arena);
    tgi_header_mark headers = tgi_header_mark_get(run->tape);
    tg_tensor *y = tgi_record(run->tape, run->op, run->inputs, run->n_inputs, run->attrs);
    if (!y) return tg_errcode(run->tape->ctx);
    double sum = 0.0;
    for (int64_t i = 0; i < y->size; i++) sum += (double)run->weights[i] * y->data[i];
    *value = sum;
    tgi_arena_mark_rewind(&run->tape->arena, mark);
    tgi_header_mark_rewind(run->tape, headers);
    return TG_OK;
}

/* Central difference at element j of input i, with the step actually representable in f32. */
static tg_status numeric_derivative(check_run *run, int i, int64_t j, double eps, double *out) {
    float *x = run->inputs[i]->data, original = x[j];
    float plus = (float)(original + eps), minus = (float)(original - eps);
    double f_plus = 0.0, f_minus = 0.0;
    x[j] = plus;
    tg_status status = objective(run, &f_plus);
    x[j] = minus;
    if (status == TG_OK) status = objective(run, &f_minus);
    x[j] = original;
    *out = (f_plus - f_minus) / ((double)plus - (double)minus);
    return status;
}

static void compare(tg_gradcheck_result *result, const tg_gradcheck_opts *opts, int input,
                    int64_t index, double analytic, double numeric) {
    double err = fabs(analytic - numeric);
    double rel = err / fmax(fabs(numeric), opts->atol);
    result->n_checked++;
    if (!(err <= opts->atol + opts->rtol * fabs(numeric))) result->passed = false;
    if (result->worst_input < 0 || rel > result->max_rel_err || isnan(rel)) {
        result->max_rel_err = rel;
        result->worst_input = input;
        result->worst_index = index;
        result->worst_analytic = analytic;
        result->worst_numeric = numeric;
    }
    if (err > result->max_abs_err) result->max_abs_err = err;
}

static tg_status run_check(check_run *run, int example_index, const tg_gradcheck_opts *opts,
                           tg_gradcheck_result *result) {
    const tgi_op *op = run->op;
    tg_tape *tape = run->tape;
    tg_status status = op->example(tape, op->op_data, example_index, run->inputs, &run->n_inputs,
                                   run->attrs);
    if (status != TG_OK) return status;
    if (run->n_inputs < 1 || run->n_inputs > TG_EXAMPLE_MAX_INPUTS)
        return tgi_error(tape->ctx, TG_ERR_INVALID, "gradcheck %s: example %d built %d inputs "
                         "(1 to %d allowed)", op->name, example_index, run->n_inputs,
                         TG_EXAMPLE_MAX_INPUTS);
    tg_tensor *y = tgi_record(tape, op, run->inputs, run->n_inputs, run->attrs);
    if (!y) return tg_errcode(tape->ctx);
    if (y->node < 0)
        return tgi_error(tape->ctx, TG_ERR_INVALID, "gradcheck %s: example %d has no input that "
                         "requires a gradient", op->name, example_index);
    tg_tensor *weights = tg_tape_zeros(tape, y->ndim, y->shape);
    if (!weights) return tg_errcode(tape->ctx);
    tg_fill_normal(weights, 0.0f, 1.0f, opts->seed);
    run->weights = weights->data;
    status = tg_backward_with(tape, y, weights->data);
    if (status != TG_OK) return status;

    result->passed = true;
    tg_no_grad_begin(tape);
    for (int i = 0; i < run->n_inputs && status == TG_OK; i++) {
        const tg_tensor *x = run->inputs[i];
        if (!x->requires_grad) continue;
        for (int64_t j = 0; j < x->size && status == TG_OK; j++) {
            double numeric;
            status = numeric_derivative(run, i, j, opts->eps, &numeric);
            compare(result, opts, i, j, x->grad[j], numeric);
        }
    }
    tg_no_grad_end(tape);
    return status;
}

tg_status tgi_gradcheck_op(tg_ctx *ctx, const tgi_op *op, int example_index,
                           const tg_gradcheck_opts *opts, tg_gradcheck_result *result) {
    memset(result, 0, sizeof *result);
    result->worst_input = -1;
    if (!op->example) return TG_ERR_NOT_FOUND;
    if (!op->backward)
        return tgi_error(ctx, TG_ERR_NOGRAD, "gradcheck %s: the op has no backward", op->name);
    check_run run = {0};
    run.op = op;
    run.tape = tg_tape_new(ctx);
    if (!run.tape) return tg_errcode(ctx);
    tg_status status = run_check(&run, example_index, opts, result);
    tg_tape_free(run.tape);
    return status;
}
