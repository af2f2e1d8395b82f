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
 *
 * tg_gradcheck_function checks a user's whole function (a model's loss) the same way, element
 * by element of its inputs, and refuses to pass when every gradient is zero: a function whose
 * output does not depend on the inputs (a detached branch, a dead net) would otherwise pass
 * with nothing compared. At order 2 it goes on in autograd/gradcheck2.c.
 */
#include "autograd/internal.h"

#include <math.h>
#include <string.h>

tg_gradcheck_opts tg_gradcheck_defaults(void) {
    tg_gradcheck_opts opts = {1e-2, 2e-3, 1e-2, 1, 0, 1};
    return opts;
}

tg_status tgi_check_gradcheck_opts(tg_ctx *ctx, const char *what, const tg_gradcheck_opts *opts) {
    /* a zero step divides by zero; a NaN tolerance passes nothing, an infinite one everything */
    if (!(opts->eps > 0.0 && isfinite(opts->eps)) || !(opts->atol > 0.0 && isfinite(opts->atol)) ||
        !(opts->rtol > 0.0 && isfinite(opts->rtol)) || opts->max_elements < 0 ||
        opts->order < 0 || opts->order > 2)
        return tgi_error(ctx, TG_ERR_INVALID, "%s: eps %g, atol %g, rtol %g: each must be finite "
                         "and > 0; max_elements %lld must be >= 0; order %d must be 1 or 2", what,
                         opts->eps, opts->atol, opts->rtol, (long long)opts->max_elements,
                         opts->order);
    return TG_OK;
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
    tgi_gradcheck_compare(result, opts, "gradient", input, index, analytic, numeric);
}

void tgi_gradcheck_compare(tg_gradcheck_result *result, const tg_gradcheck_opts *opts,
                           const char *check, int input, int64_t index, double analytic,
                           double numeric) {
    double err = fabs(analytic - numeric);
    double rel = err / fmax(fabs(numeric), opts->atol);
    result->n_checked++;
    if (!(err <= opts->atol + opts->rtol * fabs(numeric))) result->passed = false;
    if (!result->worst_check || rel > result->max_rel_err || isnan(rel)) {
        result->worst_check = check;
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
    /* the check's tapes are the library's own: the user's hooks and recorders do not see them */
    tgi_isolation scope = tgi_isolate(ctx);
    tg_status status = run_check(&run, example_index, opts, result);
    tgi_tape_destroy(run.tape);
    if (status == TG_OK && opts->order >= 2) {
        if (!op->jvp) {
            result->passed = false;
            status = tgi_error(ctx, TG_ERR_NOGRAD, "gradcheck %s: the op has no forward-mode (JVP) "
                               "rule, so it has no second derivatives to check", op->name);
        } else if ((status = tgi_gradcheck_op2(ctx, op, example_index, opts, result)) != TG_OK) {
            result->passed = false;
        }
    }
    tgi_unisolate(&scope);
    return status;
}

/* ---- a whole function (tg_gradcheck_function) ------------------------------------------------ */

typedef struct function_run {
    tg_ctx *ctx;
    tg_tape *tape;
    tg_gradcheck_fn fn;
    void *user;
    tg_tensor *const *inputs;
    int n_inputs;
    float *saved_grads;      /* every input's gradient as it was, one after the other */
    bool *saved_unset;       /* and its grad_unset mark */
    float *analytic;         /* every input's gradient from the check's backward pass */
    int64_t total;           /* floats in each of the two buffers */
} function_run;

/* fn's value at the current inputs. Recorded, though nothing walks it: a function that takes
 * gradients inside (tg_grad: a gradient penalty) needs its graph. */
static tg_status function_value(function_run *run, double *value) {
    tg_tape_reset(run->tape);
    tg_tensor *y = run->fn(run->tape, run->inputs, run->n_inputs, run->user);
    if (!y) return tg_errcode(run->ctx) != TG_OK ? tg_errcode(run->ctx)
               : tgi_error(run->ctx, TG_ERR_INVALID, "gradcheck_function: the function returned NULL");
    *value = y->data[0];
    return TG_OK;
}

static tg_status check_function_args(tg_ctx *ctx, tg_gradcheck_fn fn, tg_tensor *const *inputs,
                                     int n_inputs, const tg_gradcheck_opts *opts,
                                     tg_gradcheck_result *result) {
    if (!fn || !result || !inputs || n_inputs < 1)
        return tgi_error(ctx, TG_ERR_INVALID, "gradcheck_function: needs a function, a result and "
                         "at least one input (n_inputs %d)", n_inputs);
    if (tgi_check_gradcheck_opts(ctx, "gradcheck_function", opts) != TG_OK) return TG_ERR_INVALID;
    bool any = false;
    for (int i = 0; i < n_inputs; i++) {
        const tg_tensor *t = inputs[i];
        if (!t || !t->persistent || t->ctx != ctx)
            return tgi_error(ctx, TG_ERR_INVALID, "gradcheck_function: input %d is %s", i,
                             !t ? "NULL" : !t->persistent ? "not persistent (a tape tensor would "
                             "go stale between the evaluations: use tg_zeros & co.)"
                                                            : "of another context");
        any |= t->requires_grad;
    }
    if (!any)
        return tgi_error(ctx, TG_ERR_INVALID, "gradcheck_function: no input requires a gradient "
                         "(tg_set_requires_grad on the ones to check)");
    return TG_OK;
}

/* Keeps the inputs' gradients, zeroes them, runs fn once with backward, keeps what it gave. */
static tg_status analytic_gradients(function_run *run) {
    float *saved = run->saved_grads, *analytic = run->analytic;
    for (int i = 0; i < run->n_inputs; i++) {
        tg_tensor *t = run->inputs[i];
        run->saved_unset[i] = t->grad_unset;
        if (t->grad) memcpy(saved, t->grad, (size_t)t->size * sizeof(float));
        tg_zero_grad(t);
        saved += t->size;
    }
    tg_tensor *y = run->fn(run->tape, run->inputs, run->n_inputs, run->user);
    if (!y) return tg_errcode(run->ctx) != TG_OK ? tg_errcode(run->ctx)
               : tgi_error(run->ctx, TG_ERR_INVALID, "gradcheck_function: the function returned NULL");
    if (y->size != 1) {
        char shape[96];
        return tgi_error(run->ctx, TG_ERR_SHAPE, "gradcheck_function: the function returned %s, "
                         "not a scalar", tgi_format_shape(y->ndim, y->shape, shape, sizeof shape));
    }
    if (y->node < 0)
        return tgi_error(run->ctx, TG_ERR_INVALID, "gradcheck_function: the function's value "
                         "was not recorded: it does not depend on an input that requires a gradient");
    tg_status status = tg_backward(run->tape, y);
    for (int i = 0; i < run->n_inputs && status == TG_OK; i++) {
        const tg_tensor *t = run->inputs[i];
        if (t->grad) memcpy(analytic, t->grad, (size_t)t->size * sizeof(float));
        analytic += t->size;
    }
    return status;
}

static void restore_gradients(function_run *run) {
    const float *saved = run->saved_grads;
    for (int i = 0; i < run->n_inputs; i++) {
        tg_tensor *t = run->inputs[i];
        if (t->grad) memcpy(t->grad, saved, (size_t)t->size * sizeof(float));
        t->grad_unset = run->saved_unset[i];
        saved += t->size;
    }
}

/* Central differences at the chosen elements of every input that requires a gradient. */
static tg_status numeric_gradients(function_run *run, const tg_gradcheck_opts *opts,
                                   tg_gradcheck_result *result) {
    const float *analytic = run->analytic;
    bool all_zero = true;
    tg_rng rng;
    tg_rng_seed(&rng, opts->seed);
    for (int i = 0; i < run->n_inputs; analytic += run->inputs[i]->size, i++) {
        tg_tensor *t = run->inputs[i];
        if (!t->requires_grad) continue;
        int64_t count = opts->max_elements && opts->max_elements < t->size ? opts->max_elements : t->size;
        int64_t stride = t->size / count, offset = count < t->size ? tg_rng_below(&rng, (uint32_t)stride) : 0;
        for (int64_t k = 0; k < count; k++) {
            int64_t j = offset + k * stride;
            float original = t->data[j];
            float plus = (float)(original + opts->eps), minus = (float)(original - opts->eps);
            double f_plus, f_minus;
            t->data[j] = plus;
            tg_status status = function_value(run, &f_plus);
            t->data[j] = minus;
            if (status == TG_OK) status = function_value(run, &f_minus);
            t->data[j] = original;
            if (status != TG_OK) return status;
            double numeric = (f_plus - f_minus) / ((double)plus - (double)minus);
            compare(result, opts, i, j, analytic[j], numeric);
            all_zero &= analytic[j] == 0.0f && fabs(numeric) <= opts->atol;
        }
    }
    if (all_zero) {
        result->vacuous = true;
        result->passed = false;
    }
    return TG_OK;
}

tg_status tg_gradcheck_function(tg_ctx *ctx, tg_gradcheck_fn fn, void *user,
                                tg_tensor *const *inputs, int n_inputs,
                                const tg_gradcheck_opts *opts, tg_gradcheck_result *result) {
    if (!ctx) return TG_ERR_INVALID;
    tg_gradcheck_opts defaults = tg_gradcheck_defaults();
    if (!opts) opts = &defaults;
    tg_status status = check_function_args(ctx, fn, inputs, n_inputs, opts, result);
    if (status != TG_OK) return status;
    memset(result, 0, sizeof *result);
    result->worst_input = -1;
    tgi_isolation scope = tgi_isolate(ctx); /* hooks and recorders do not see the check's tapes */
    function_run run = {ctx, tg_tape_new(ctx), fn, user, inputs, n_inputs, NULL, NULL, NULL, 0};
    for (int i = 0; i < n_inputs; i++) run.total += inputs[i]->size;
    size_t bytes = (size_t)run.total * sizeof(float), flags = (size_t)n_inputs * sizeof(bool);
    run.saved_grads = tgi_alloc(ctx, bytes);
    run.analytic = tgi_alloc(ctx, bytes);
    run.saved_unset = tgi_alloc(ctx, flags);
    if (!run.tape || !run.saved_grads || !run.analytic || !run.saved_unset) {
        status = tgi_error(ctx, TG_ERR_NOMEM, "gradcheck_function: out of memory");
    } else {
        memset(run.analytic, 0, bytes);
        status = analytic_gradients(&run);
        result->passed = true;
        if (status == TG_OK) status = numeric_gradients(&run, opts, result);
        restore_gradients(&run);
        if (status == TG_OK && opts->order >= 2)
            status = tgi_gradcheck_function2(ctx, fn, user, inputs, n_inputs, opts, result);
    }
    if (status != TG_OK) result->passed = false;
    tgi_free(ctx, run.saved_grads, bytes);
    tgi_free(ctx, run.analytic, bytes);
    tgi_free(ctx, run.saved_unset, flags);
    tgi_tape_destroy(run.tape);
    tgi_unisolate(&scope);
    return status;
}
