/*
 * autograd/gradcheck2.c — second-order checks of an op (tg_gradcheck with order 2), on the
 * same declarative examples as the first-order check, always against finite differences:
 *
 *   jvp              J t for a random tangent t on every input that wants a gradient, element
 *                    by element of the output, against (f(x + eps t) - f(x - eps t)) / 2 eps;
 *   double backward  the gradient of q = <r, grad s> with s = <w, f(x)> (w, r random), where
 *                    grad s comes from tg_grad (recorded) and q is walked back with tg_backward;
 *   hvp              the same H r from tg_hvp (reverse over forward) on a fresh recording;
 * both against central differences of q, whose gradient is the first-order backward's: a
 * second-order result is never compared with anything the second-order code computed.
 *
 * A whole function (tg_gradcheck_function at order 2) is checked along one random direction v
 * over all its inputs: J v against differences of f, H v against differences of gradients.
 */
#include "autograd/internal.h"

#include <math.h>
#include <string.h>

typedef struct check2 {
    tg_ctx *ctx;
    const tgi_op *op;
    tg_tape *tape;            /* recordings of the checks */
    tg_tape *aux;             /* evaluations at moved inputs */
    int n_inputs;
    tg_attr_value attrs[TG_MAX_ATTRS];
    int64_t shape[TG_EXAMPLE_MAX_INPUTS][TG_MAX_DIMS];
    int ndim[TG_EXAMPLE_MAX_INPUTS];
    int64_t size[TG_EXAMPLE_MAX_INPUTS];
    bool wants_grad[TG_EXAMPLE_MAX_INPUTS];
    float *values[TG_EXAMPLE_MAX_INPUTS];   /* the example's inputs */
    float *tangent[TG_EXAMPLE_MAX_INPUTS];  /* t, for inputs that want a gradient */
    float *r[TG_EXAMPLE_MAX_INPUTS];        /* r, likewise */
    float *weights;                         /* w, output-sized */
    int64_t out_size;
} check2;

/* The example's inputs as new tensors of tape, moved by step * dir[i] (dir NULL: not moved)
 * and then element j of input `moved` by `nudge`; wanting gradients when `record`. */
static tg_status make_args(check2 *c, tg_tape *tape, float *const *dir, double step, int moved,
                           int64_t j, double nudge, bool record, tg_tensor **args) {
    for (int i = 0; i < c->n_inputs; i++) {
        args[i] = tg_tape_from_data(tape, c->ndim[i], c->shape[i], c->values[i]);
        if (!args[i]) return tg_errcode(c->ctx);
        if (dir && dir[i])
            for (int64_t e = 0; e < c->size[i]; e++)
                args[i]->data[e] = (float)(c->values[i][e] + step * dir[i][e]);
        if (i == moved) args[i]->data[j] = (float)(c->values[i][j] + nudge);
        if (record && c->wants_grad[i]) tg_set_requires_grad(args[i], true);
    }
    return TG_OK;
}

static tg_tensor *call_op(check2 *c, tg_tape *tape, tg_tensor *const *args) {
    return tgi_record(tape, c->op, args, c->n_inputs, c->attrs);
}

/* J t against differences of the forward along t. */
static tg_status check_jvp(check2 *c, const tg_gradcheck_opts *opts, tg_gradcheck_result *result) {
    tg_tensor *args[TG_EXAMPLE_MAX_INPUTS], *wanted[TG_EXAMPLE_MAX_INPUTS];
    tg_tensor *tangents[TG_EXAMPLE_MAX_INPUTS];
    tg_tape_reset(c->tape);
    tg_status status = make_args(c, c->tape, NULL, 0.0, -1, 0, 0.0, true, args);
    if (status != TG_OK) return status;
    tg_tensor *y = call_op(c, c->tape, args);
    if (!y) return tg_errcode(c->ctx);
    int n = 0;
    for (int i = 0; i < c->n_inputs; i++) {
        if (!c->wants_grad[i]) continue;
        wanted[n] = args[i];
        tangents[n] = tg_tape_from_data(c->tape, c->ndim[i], c->shape[i], c->tangent[i]);
        if (!tangents[n++]) return tg_errcode(c->ctx);
    }
    tg_tensor *jt = NULL;
    if ((status = tg_jvp(c->tape, y, n, wanted, tangents, &jt)) != TG_OK) return status;
    tg_tensor *plus_args[TG_EXAMPLE_MAX_INPUTS], *minus_args[TG_EXAMPLE_MAX_INPUTS];
    tg_tape_reset(c->aux);
    status = make_args(c, c->aux, c->tangent, opts->eps, -1, 0, 0.0, false, plus_args);
    if (status == TG_OK)
        status = make_args(c, c->aux, c->tangent, -opts->eps, -1, 0, 0.0, false, minus_args);
    if (status != TG_OK) return status;
    tg_tensor *plus = call_op(c, c->aux, plus_args), *minus = plus ? call_op(c, c->aux, minus_args) : NULL;
    if (!minus) return tg_errcode(c->ctx);
    for (int64_t e = 0; e < y->size; e++) {
        double numeric = ((double)plus->data[e] - minus->data[e]) / (2.0 * opts->eps);
        tgi_gradcheck_compare(result, opts, "jvp", -1, e, jt->data[e], numeric);
    }
    return TG_OK;
}

/* q = sum_i <r_i, d<w, f>/dx_i> with element j of input i moved by nudge: the first-order
 * backward only. */
static tg_status first_order_q(check2 *c, int i, int64_t j, double nudge, double *q) {
    tg_tensor *args[TG_EXAMPLE_MAX_INPUTS];
    tg_tape_reset(c->aux);
    tg_status status = make_args(c, c->aux, NULL, 0.0, i, j, nudge, true, args);
    if (status != TG_OK) return status;
    tg_tensor *y = call_op(c, c->aux, args);
    if (!y) return tg_errcode(c->ctx);
    double sum = 0.0;
    if (y->node >= 0) status = tg_backward_with(c->aux, y, c->weights);
    for (int k = 0; k < c->n_inputs && status == TG_OK; k++) {
        if (!c->wants_grad[k] || !args[k]->grad) continue;
        for (int64_t e = 0; e < c->size[k]; e++) sum += (double)c->r[k][e] * args[k]->grad[e];
    }
    *q = sum;
    return status;
}

/* s = <w, f(args)>, recorded. */
static tg_tensor *projected(check2 *c, tg_tensor *const *args) {
    tg_tensor *y = call_op(c, c->tape, args);
    tg_tensor *w = y ? tg_tape_from_data(c->tape, y->ndim, y->shape, c->weights) : NULL;
    return w ? tg_sum(c->tape, tg_mul(c->tape, y, w)) : NULL;
}

/* A fresh recording of s = <w, f(x)>: the inputs that want a gradient in wanted[] (index[]:
 * which input each is), their count in *n; NULL on error. */
static tg_tensor *record_projection(check2 *c, tg_tensor **wanted, int *index, int *n) {
    tg_tensor *args[TG_EXAMPLE_MAX_INPUTS];
    tg_tape_reset(c->tape);
    if (make_args(c, c->tape, NULL, 0.0, -1, 0, 0.0, true, args) != TG_OK) return NULL;
    *n = 0;
    for (int i = 0; i < c->n_inputs; i++)
        if (c->wants_grad[i]) index[*n] = i, wanted[(*n)++] = args[i];
    return projected(c, args);
}

/* d q / d x by tg_grad then tg_backward, into by_grad[i]. */
static tg_status double_backward(check2 *c, float **by_grad) {
    tg_tensor *wanted[TG_EXAMPLE_MAX_INPUTS], *grads[TG_EXAMPLE_MAX_INPUTS];
    int index[TG_EXAMPLE_MAX_INPUTS], n;
    tg_tensor *s = record_projection(c, wanted, index, &n);
    if (!s) return tg_errcode(c->ctx);
    tg_status status = tg_grad(c->tape, s, n, wanted, grads);
    if (status != TG_OK) return status;
    tg_tensor *q = NULL;
    for (int k = 0; k < n; k++) {
        int i = index[k];
        tg_tensor *r = tg_tape_from_data(c->tape, c->ndim[i], c->shape[i], c->r[i]);
        tg_tensor *term = r ? tg_sum(c->tape, tg_mul(c->tape, grads[k], r)) : NULL;
        q = q && term ? tg_add(c->tape, q, term) : term;
        if (!q) return tg_errcode(c->ctx);
    }
    for (int k = 0; k < n; k++) memset(by_grad[index[k]], 0, (size_t)c->size[index[k]] * sizeof(float));
    if (q->node < 0) return TG_OK; /* linear: no second derivative reaches the inputs */
    if ((status = tg_backward(c->tape, q)) != TG_OK) return status;
    for (int k = 0; k < n; k++)
        if (wanted[k]->grad)
            memcpy(by_grad[index[k]], wanted[k]->grad, (size_t)c->size[index[k]] * sizeof(float));
    return TG_OK;
}

/* H r by tg_hvp, into by_hvp[i]. */
static tg_status hessian_product(check2 *c, float **by_hvp) {
    tg_tensor *wanted[TG_EXAMPLE_MAX_INPUTS];
    const float *v[TG_EXAMPLE_MAX_INPUTS];
    float *hv[TG_EXAMPLE_MAX_INPUTS];
    int index[TG_EXAMPLE_MAX_INPUTS], n;
    tg_tensor *s = record_projection(c, wanted, index, &n);
    if (!s) return tg_errcode(c->ctx);
    for (int k = 0; k < n; k++) v[k] = c->r[index[k]], hv[k] = by_hvp[index[k]];
    return tg_hvp(c->tape, s, n, wanted, v, hv);
}

static tg_status check_second_order(check2 *c, const tg_gradcheck_opts *opts,
                                    tg_gradcheck_result *result, float **by_grad, float **by_hvp) {
    tg_status status = double_backward(c, by_grad);
    if (status == TG_OK) status = hessian_product(c, by_hvp);
    for (int i = 0; i < c->n_inputs && status == TG_OK; i++) {
        if (!c->wants_grad[i]) continue;
        for (int64_t j = 0; j < c->size[i] && status == TG_OK; j++) {
            double q_plus, q_minus;
            float x = c->values[i][j];
            double step = (double)(float)(x + opts->eps) - (double)(float)(x - opts->eps);
            status = first_order_q(c, i, j, opts->eps, &q_plus);
            if (status == TG_OK) status = first_order_q(c, i, j, -opts->eps, &q_minus);
            if (status != TG_OK) break;
            double numeric = (q_plus - q_minus) / step;
            tgi_gradcheck_compare(result, opts, "double backward", i, j, by_grad[i][j], numeric);
            tgi_gradcheck_compare(result, opts, "hvp", i, j, by_hvp[i][j], numeric);
        }
    }
    return status;
}

/* Fills c from example `index` built on c->tape, with seeded w, t and r. */
static tg_status take_example(check2 *c, int index, uint64_t seed, float **storage) {
    tg_tensor *inputs[TG_EXAMPLE_MAX_INPUTS];
    tg_status status = c->op->example(c->tape, c->op->op_data, index, inputs, &c->n_inputs, c->attrs);
    if (status != TG_OK) return status;
    if (c->n_inputs < 1 || c->n_inputs > TG_EXAMPLE_MAX_INPUTS)
        return tgi_error(c->ctx, TG_ERR_INVALID, "gradcheck %s: example %d built %d inputs",
                         c->op->name, index, c->n_inputs);
    tg_tensor *y = tgi_record(c->tape, c->op, inputs, c->n_inputs, c->attrs);
    if (!y) return tg_errcode(c->ctx);
    c->out_size = y->size;
    int64_t total = y->size;
    for (int i = 0; i < c->n_inputs; i++) total += 3 * inputs[i]->size;
    float *room = *storage = tgi_alloc(c->ctx, (size_t)total * sizeof(float));
    if (!room) return tgi_error(c->ctx, TG_ERR_NOMEM, "gradcheck: out of memory");
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    c->weights = room;
    tg_tensor *w = tg_tape_zeros(c->tape, y->ndim, y->shape);
    if (!w) return tg_errcode(c->ctx);
    tg_fill_normal(w, 0.0f, 1.0f, seed);
    memcpy(room, w->data, (size_t)y->size * sizeof(float));
    room += y->size;
    for (int i = 0; i < c->n_inputs; i++) {
        const tg_tensor *x = inputs[i];
        c->ndim[i] = x->ndim;
        memcpy(c->shape[i], x->shape, sizeof c->shape[i]);
        c->size[i] = x->size;
        c->wants_grad[i] = x->requires_grad;
        c->values[i] = room;
        memcpy(room, x->data, (size_t)x->size * sizeof(float));
        c->tangent[i] = room + x->size;
        c->r[i] = room + 2 * x->size;
        for (int64_t e = 0; e < 2 * x->size; e++)
            c->tangent[i][e] = (float)(tg_rng_uniform(&rng) * 2.0 - 1.0);
        if (!x->requires_grad) c->tangent[i] = c->r[i] = NULL;
        room += 3 * x->size;
    }
    return TG_OK;
}

tg_status tgi_gradcheck_op2(tg_ctx *ctx, const tgi_op *op, int example_index,
                            const tg_gradcheck_opts *opts, tg_gradcheck_result *result) {
    check2 c = {0};
    c.ctx = ctx;
    c.op = op;
    c.tape = tg_tape_new(ctx);
    c.aux = tg_tape_new(ctx);
    float *storage = NULL;
    float *second[2][TG_EXAMPLE_MAX_INPUTS] = {{0}};
    tg_status status = c.tape && c.aux ? TG_OK : tg_errcode(ctx);
    if (status == TG_OK) status = take_example(&c, example_index, opts->seed + 1, &storage);
    if (status == TG_OK) status = check_jvp(&c, opts, result);
    for (int i = 0; i < c.n_inputs && status == TG_OK; i++)
        for (int which = 0; which < 2 && c.wants_grad[i]; which++)
            if (!(second[which][i] = tgi_alloc(ctx, (size_t)c.size[i] * sizeof(float))))
                status = tgi_error(ctx, TG_ERR_NOMEM, "gradcheck: out of memory");
    if (status == TG_OK) status = check_second_order(&c, opts, result, second[0], second[1]);
    for (int i = 0; i < c.n_inputs; i++)
        for (int which = 0; which < 2; which++)
            if (second[which][i]) tgi_free(ctx, second[which][i], (size_t)c.size[i] * sizeof(float));
    if (storage) {
        int64_t total = c.out_size;
        for (int i = 0; i < c.n_inputs; i++) total += 3 * c.size[i];
        tgi_free(ctx, storage, (size_t)total * sizeof(float));
    }
    tgi_tape_destroy(c.tape);
    tgi_tape_destroy(c.aux);
    return status;
}

/* ---- a whole function ----------------------------------------------------------------------- */

static bool listed_before(tg_tensor *const *inputs, int i, const tg_tensor *t) {
    for (int j = 0; j < i; j++)
        if (inputs[j] == t) return true;
    return false;
}

typedef struct function2 {
    tg_ctx *ctx;
    tg_tape *tape;
    tg_gradcheck_fn fn;
    void *user;
    tg_tensor *const *inputs;
    int n;
    tg_tensor *wanted[64];
    int wanted_index[64];  /* where wanted[k] is in inputs */
    int n_wanted;
    float *v;        /* the direction, all wanted inputs one after the other */
    float *room;     /* hv, then the gradients at x +- eps v and x +- eps v / 2 */
    float *values;   /* the wanted inputs' values, put back exactly after each move */
    int64_t total;
} function2;

/* Sets every wanted input to its value + step * v (step 0: its value, exactly). */
static void move_inputs(function2 *f, double step) {
    const float *v = f->v, *x = f->values;
    for (int k = 0; k < f->n_wanted; v += f->wanted[k]->size, x += f->wanted[k]->size, k++)
        for (int64_t j = 0; j < f->wanted[k]->size; j++)
            f->wanted[k]->data[j] = (float)(x[j] + step * v[j]);
}

static tg_tensor *record_function(function2 *f) {
    tg_tape_reset(f->tape);
    tg_tensor *y = f->fn(f->tape, f->inputs, f->n, f->user);
    if (!y && tg_errcode(f->ctx) == TG_OK)
        tgi_error(f->ctx, TG_ERR_INVALID, "gradcheck_function: the function returned NULL");
    return y;
}

/* The wanted inputs' gradients at the inputs as they are, into out: the first-order backward
 * (tg_vjp: no parameter's own gradient changes). */
static tg_status gradients_into(function2 *f, float *out) {
    tg_tensor *y = record_function(f);
    if (!y) return tg_errcode(f->ctx);
    float *out_of[64];
    for (int k = 0; k < f->n_wanted; out += f->wanted[k]->size, k++) out_of[k] = out;
    const float one = 1.0f;
    return tg_vjp(f->tape, y, &one, f->n_wanted, f->wanted, out_of);
}

/* Differences at steps eps and eps/2, extrapolated (Richardson): (4 d(eps/2) - d(eps)) / 3
 * cancels the eps^2 term of the central difference's error, which for a model whose loss
 * curves fast (a transformer's layer norms over small embeddings) is what a step small
 * enough to be exact would lose to f32 rounding. */
static double extrapolated(double d_full, double d_half) { return (4.0 * d_half - d_full) / 3.0; }

static tg_status check_function_jvp(function2 *f, const tg_gradcheck_opts *opts,
                                    tg_gradcheck_result *result) {
    tg_tensor *y = record_function(f);
    if (!y) return tg_errcode(f->ctx);
    tg_tensor *tangents[64], *slope = NULL;
    const float *v = f->v;
    for (int k = 0; k < f->n_wanted; v += f->wanted[k]->size, k++)
        if (!(tangents[k] = tg_tape_from_data(f->tape, f->wanted[k]->ndim, f->wanted[k]->shape, v)))
            return tg_errcode(f->ctx);
    tg_status status = tg_jvp(f->tape, y, f->n_wanted, f->wanted, tangents, &slope);
    if (status != TG_OK) return status;
    double analytic = slope->data[0], values[4];
    for (int side = 0; side < 4; side++) {
        double step = (side & 1 ? -opts->eps : opts->eps) / (side < 2 ? 1.0 : 2.0);
        move_inputs(f, step);
        tg_tensor *moved = record_function(f);
        if (moved) values[side] = moved->data[0];
        move_inputs(f, 0.0);
        if (!moved) return tg_errcode(f->ctx);
    }
    double full = (values[0] - values[1]) / (2 * opts->eps), half = (values[2] - values[3]) / opts->eps;
    tgi_gradcheck_compare(result, opts, "jvp", -1, 0, analytic, extrapolated(full, half));
    return TG_OK;
}

static tg_status check_function_hvp(function2 *f, const tg_gradcheck_opts *opts,
                                    tg_gradcheck_result *result) {
    float *hv = f->room, *plus = hv + f->total, *minus = plus + f->total;
    float *half_plus = minus + f->total, *half_minus = half_plus + f->total;
    float *hv_of[64];
    const float *v_of[64];
    int64_t offset = 0;
    for (int k = 0; k < f->n_wanted; offset += f->wanted[k]->size, k++)
        hv_of[k] = hv + offset, v_of[k] = f->v + offset;
    tg_tensor *y = record_function(f);
    if (!y) return tg_errcode(f->ctx);
    tg_status status = tg_hvp(f->tape, y, f->n_wanted, f->wanted, v_of, hv_of);
    float *at[4] = {plus, minus, half_plus, half_minus};
    for (int side = 0; side < 4 && status == TG_OK; side++) {
        double step = (side & 1 ? -opts->eps : opts->eps) / (side < 2 ? 1.0 : 2.0);
        move_inputs(f, step);
        status = gradients_into(f, at[side]);
        move_inputs(f, 0.0);
    }
    offset = 0;
    for (int k = 0; k < f->n_wanted && status == TG_OK; offset += f->wanted[k]->size, k++)
        for (int64_t j = 0; j < f->wanted[k]->size; j++) {
            int64_t e = offset + j;
            double full = ((double)plus[e] - minus[e]) / (2 * opts->eps);
            double half = ((double)half_plus[e] - half_minus[e]) / opts->eps;
            tgi_gradcheck_compare(result, opts, "hvp", f->wanted_index[k], j, hv[e],
                                  extrapolated(full, half));
        }
    return status;
}

tg_status tgi_gradcheck_function2(tg_ctx *ctx, tg_gradcheck_fn fn, void *user,
                                  tg_tensor *const *inputs, int n_inputs,
                                  const tg_gradcheck_opts *opts, tg_gradcheck_result *result) {
    function2 f = {.ctx = ctx, .fn = fn, .user = user, .inputs = inputs, .n = n_inputs};
    for (int i = 0; i < n_inputs; i++) {
        if (!inputs[i]->requires_grad || listed_before(inputs, i, inputs[i])) continue;
        if (f.n_wanted == 64)
            return tgi_error(ctx, TG_ERR_INVALID, "gradcheck_function: at most 64 inputs to "
                             "check at order 2");
        f.wanted_index[f.n_wanted] = i;
        f.wanted[f.n_wanted++] = inputs[i];
        f.total += inputs[i]->size;
    }
    /* v, hv, four gradients, and the wanted inputs' values */
    size_t bytes = (size_t)f.total * 7 * sizeof(float);
    float *all = tgi_alloc(ctx, bytes);
    f.tape = tg_tape_new(ctx);
    tg_status status = all && f.tape ? TG_OK : tgi_error(ctx, TG_ERR_NOMEM, "gradcheck_function: "
                                                         "out of memory");
    if (status == TG_OK) {
        f.v = all;
        f.room = all + f.total;
        f.values = all + 6 * f.total;
        for (int64_t k = 0, at = 0; k < f.n_wanted; at += f.wanted[k]->size, k++)
            memcpy(f.values + at, f.wanted[k]->data, (size_t)f.wanted[k]->size * sizeof(float));
        tg_rng rng;
        tg_rng_seed(&rng, opts->seed + 7);
        for (int64_t j = 0; j < f.total; j++) f.v[j] = tg_rng_uniform(&rng) * 2.0f - 1.0f;
        status = check_function_jvp(&f, opts, result);
        if (status == TG_OK) status = check_function_hvp(&f, opts, result);
        move_inputs(&f, 0.0);
    }
    if (all) tgi_free(ctx, all, bytes);
    tgi_tape_destroy(f.tape);
    return status;
}
