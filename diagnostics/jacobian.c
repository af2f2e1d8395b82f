/*
 * diagnostics/jacobian.c — the extremes of an input-output Jacobian's singular values, and its
 * mean squared singular value, from Jacobian products of a recorded function.
 *
 * Lanczos runs on the smaller Gram matrix: J^T J (input side) when the input is the smaller,
 * J J^T (output side) otherwise. Both have the min(in, out) squared singular values that can
 * be non-zero; the larger one adds only zeros, which would hide the smallest true value at the
 * bottom of its spectrum. One product of either is one recording of the function with a JVP
 * and a VJP on it: J^T (J v) takes the JVP first, J (J^T u) the VJP first (the JVP rules read
 * only the recorded forward, which the backward walk leaves as it was).
 *
 * The VJP is taken with the backward hooks off, as tg_hvp does: its values are directions,
 * not gradients, so a clipping hook must not clip them nor a recorder count them as a step.
 */
#include "diagnostics/spectrum.h"

#include <math.h>
#include <string.h>

struct tg_jacobian {
    tg_ctx *ctx;
    tg_curvature_config config;
    tg_tape *tape;
    tgi_lanczos lz;
    float *scratch;          /* an input's worth: J^T u on the output side */
    int64_t scratch_room;
    /* the call in progress */
    tg_jacobian_fn fn;
    void *user;
    const tg_tensor *input;
    int64_t n_in, n_out;
    bool input_side;         /* the Gram matrix is J^T J */
    int products;
    bool measured;           /* the last call succeeded: lz holds its Ritz values */
    tgi_retired retired;     /* tg_jacobian_free */
};

tg_jacobian *tg_jacobian_new(tg_ctx *ctx, const tg_curvature_config *config) {
    if (!ctx) return NULL;
    tg_curvature_config cfg = config ? *config : tg_curvature_defaults();
    if (cfg.steps < 1 || cfg.steps > TGI_LANCZOS_MAX_STEPS || cfg.probes < 1) {
        tgi_error(ctx, TG_ERR_INVALID, "jacobian: config.steps %d (1..%d) and config.probes %d "
                  "(at least 1)", cfg.steps, TGI_LANCZOS_MAX_STEPS, cfg.probes);
        return NULL;
    }
    tg_jacobian *j = tgi_alloc(ctx, sizeof *j);
    if (!j) {
        tgi_error(ctx, TG_ERR_NOMEM, "jacobian: out of memory");
        return NULL;
    }
    memset(j, 0, sizeof *j);
    j->ctx = ctx;
    j->config = cfg;
    if (!(j->tape = tg_tape_new(ctx))) {
        tgi_free(ctx, j, sizeof *j);
        tgi_error(ctx, TG_ERR_NOMEM, "jacobian: out of memory");
        return NULL;
    }
    return j;
}

void tg_jacobian_free(tg_jacobian *jacobian) {
    if (!jacobian || jacobian->retired.freed) return;
    tg_ctx *ctx = jacobian->ctx;
    tgi_lanczos_release(&jacobian->lz);
    if (jacobian->scratch) tgi_free(ctx, jacobian->scratch, (size_t)jacobian->scratch_room * sizeof(float));
    tgi_tape_destroy(jacobian->tape);
    tgi_retire(ctx, &jacobian->retired, jacobian, sizeof *jacobian);
}

/* ---- products ----------------------------------------------------------------------------------- */

/* The function recorded afresh on a copy of the input that requires a gradient. */
static tg_status record(tg_jacobian *j, tg_tensor **x, tg_tensor **y) {
    tg_tape_reset(j->tape);
    j->products++;
    const tg_tensor *in = j->input;
    *x = tg_tape_from_data(j->tape, in->ndim, in->shape, in->data);
    if (!*x || tg_set_requires_grad(*x, true) != TG_OK) return tg_errcode(j->ctx);
    *y = j->fn(j->tape, *x, j->user);
    if (!*y) {
        tg_status status = tg_errcode(j->ctx);
        return status != TG_OK ? status
                               : tgi_error(j->ctx, TG_ERR_INVALID, "jacobian: the function returned "
                                           "NULL without an error");
    }
    if (j->n_out && (*y)->size != j->n_out)
        return tgi_error(j->ctx, TG_ERR_SHAPE, "jacobian: the function's output has %lld elements, "
                         "%lld at the first recording (it must not change between recordings)",
                         (long long)(*y)->size, (long long)j->n_out);
    return TG_OK;
}

/* J v: a tape tensor of the output's size. */
static tg_status forward_product(tg_jacobian *j, tg_tensor *x, tg_tensor *y, const float *v,
                                 tg_tensor **jv) {
    tg_tensor *tangent = tg_tape_from_data(j->tape, x->ndim, x->shape, v);
    if (!tangent) return tg_errcode(j->ctx);
    return tg_jvp(j->tape, y, 1, &x, &tangent, jv);
}

/* J^T u into out (the input's size), the backward hooks off (see the top of the file). */
static tg_status reverse_product(tg_jacobian *j, tg_tensor *x, tg_tensor *y, const float *u,
                                 float *out) {
    int live = j->ctx->live_hooks[TG_PASS_BACKWARD];
    j->ctx->live_hooks[TG_PASS_BACKWARD] = 0;
    tg_status status = tg_vjp(j->tape, y, u, 1, &x, &out);
    j->ctx->live_hooks[TG_PASS_BACKWARD] = live;
    return status;
}

/* out = G in, G the smaller Gram matrix. */
static tg_status gram_product(void *arg, const float *in, float *out) {
    tg_jacobian *j = arg;
    tg_tensor *x, *y, *jv;
    tg_status status = record(j, &x, &y);
    if (status != TG_OK) return status;
    if (j->input_side) {
        if ((status = forward_product(j, x, y, in, &jv)) != TG_OK) return status;
        return reverse_product(j, x, y, jv->data, out);
    }
    if ((status = reverse_product(j, x, y, in, j->scratch)) != TG_OK) return status;
    if ((status = forward_product(j, x, y, j->scratch, &jv)) != TG_OK) return status;
    memcpy(out, jv->data, (size_t)j->n_out * sizeof(float));
    return TG_OK;
}

/* |J v|^2 (input side) or |J^T v|^2 (output side): v^T G v with one product. */
static tg_status gram_form(tg_jacobian *j, const float *v, double *value) {
    tg_tensor *x, *y, *jv;
    tg_status status = record(j, &x, &y);
    if (status != TG_OK) return status;
    if (j->input_side) {
        if ((status = forward_product(j, x, y, v, &jv)) != TG_OK) return status;
        *value = tgi_dot(jv->data, jv->data, j->n_out);
    } else {
        if ((status = reverse_product(j, x, y, v, j->scratch)) != TG_OK) return status;
        *value = tgi_dot(j->scratch, j->scratch, j->n_in);
    }
    return isfinite(*value) ? TG_OK
                            : tgi_error(j->ctx, TG_ERR_NUMERIC, "jacobian: a product is not finite");
}

/* ---- the measurement ------------------------------------------------------------------------------ */

/* A singular value from a Ritz value of the Gram matrix, and how far the true one can be: an
 * eigenvalue l >= 0 lies within r of theta, and |sqrt(l) - sqrt(theta)| <= min(sqrt(r), r/sigma). */
static void singular_value(const tgi_lanczos *lz, int i, double *value, double *bound) {
    double sigma = sqrt(fmax(lz->theta[i], 0.0)), r = tgi_lanczos_residual(lz, i);
    *value = sigma;
    *bound = sigma > 0 ? fmin(sqrt(r), r / sigma) : sqrt(r);
}

/* trace(G) / d: by the spectrum when Lanczos spanned the space, by the basis vectors when there
 * are few, else by Hutchinson. */
static tg_status mean_square(tg_jacobian *j, int64_t d, tg_singular_values *result) {
    const tgi_lanczos *lz = &j->lz;
    float *v = lz->w; /* free after the run */
    if (lz->spanned) {
        double sum = 0;
        for (int i = 0; i < lz->steps; i++) sum += lz->theta[i];
        result->mean_square = sum / (double)d;
        result->mean_square_exact = true;
        return TG_OK;
    }
    const int probes = j->config.probes;
    if (d <= probes) {
        double sum = 0, value;
        memset(v, 0, (size_t)d * sizeof(float));
        for (int64_t i = 0; i < d; i++) {
            v[i] = 1.0f;
            tg_status status = gram_form(j, v, &value);
            if (status != TG_OK) return status;
            v[i] = 0.0f;
            sum += value;
        }
        result->mean_square = sum / (double)d;
        result->mean_square_exact = true;
        return TG_OK;
    }
    tg_rng rng;
    tg_rng_seed(&rng, j->config.seed ^ 0x9e3779b97f4a7c15ull); /* apart from the start vector */
    double mean = 0, m2 = 0, value;
    for (int p = 0; p < probes; p++) {
        tgi_fill_rademacher(v, d, &rng);
        tg_status status = gram_form(j, v, &value);
        if (status != TG_OK) return status;
        double delta = value - mean;
        mean += delta / (p + 1);
        m2 += delta * (value - mean);
    }
    result->mean_square = mean / (double)d;
    result->mean_square_std_error = probes > 1 ? sqrt(m2 / (probes - 1) / probes) / (double)d : NAN;
    return TG_OK;
}

tg_status tg_jacobian_singular_values(tg_jacobian *jacobian, tg_jacobian_fn fn, void *user,
                                      const tg_tensor *input, int k, tg_singular_values *result) {
    if (!jacobian) return TG_ERR_INVALID;
    tg_jacobian *j = jacobian;
    const char *what = "jacobian singular values";
    j->measured = false;
    if (!fn || !input || !result)
        return tgi_error(j->ctx, TG_ERR_INVALID, "%s: the %s is NULL", what,
                         !fn ? "function" : !input ? "input" : "result pointer");
    memset(result, 0, sizeof *result);
    result->mean_square = result->mean_square_std_error = NAN;
    if (k < 1 || k > TG_SPECTRUM_MAX)
        return tgi_error(j->ctx, TG_ERR_INVALID, "%s: k is %d (1..%d)", what, k, TG_SPECTRUM_MAX);
    tg_status status = tgi_refuse_stale(input, what);
    if (status != TG_OK) return status;
    if (input->ctx != j->ctx)
        return tgi_error(j->ctx, TG_ERR_INVALID, "%s: the input is of another context", what);
    j->fn = fn;
    j->user = user;
    j->input = input;
    j->n_in = input->size;
    j->n_out = 0;
    j->products = 0;
    tg_tensor *x, *y;
    if ((status = record(j, &x, &y)) != TG_OK) return status; /* the output's size */
    j->n_out = y->size;
    j->input_side = j->n_in <= j->n_out;
    const int64_t d = j->input_side ? j->n_in : j->n_out;
    result->input_size = j->n_in;
    result->output_size = j->n_out;
    if (!j->input_side && j->scratch_room < j->n_in) {
        float *room = j->scratch ? tgi_realloc(j->ctx, j->scratch, (size_t)j->scratch_room * sizeof(float),
                                               (size_t)j->n_in * sizeof(float))
                                 : tgi_alloc(j->ctx, (size_t)j->n_in * sizeof(float));
        if (!room) return tgi_error(j->ctx, TG_ERR_NOMEM, "%s: out of memory", what);
        j->scratch = room;
        j->scratch_room = j->n_in;
    }
    int steps = (int64_t)j->config.steps < d ? j->config.steps : (int)d;
    if ((status = tgi_lanczos_reserve(&j->lz, j->ctx, d, steps, steps)) != TG_OK) return status;
    tg_rng rng;
    tg_rng_seed(&rng, j->config.seed);
    if ((status = tgi_lanczos_run(&j->lz, steps, &rng, false, gram_product, j)) != TG_OK)
        return status;
    const tgi_lanczos *lz = &j->lz;
    const int s = lz->steps;
    result->steps = s;
    result->exact = lz->spanned;
    result->count = k < s ? k : s;
    for (int i = 0; i < result->count; i++) {
        singular_value(lz, s - 1 - i, &result->largest[i], &result->largest_bound[i]);
        singular_value(lz, i, &result->smallest[i], &result->smallest_bound[i]);
    }
    status = mean_square(j, d, result);
    result->products = j->products;
    j->measured = status == TG_OK;
    return status;
}

int tg_jacobian_spectrum(const tg_jacobian *jacobian, double *values, int max) {
    if (!jacobian) return 0;
    if (!values && max > 0) {
        tgi_error(jacobian->ctx, TG_ERR_INVALID, "jacobian spectrum: values is NULL");
        return 0;
    }
    if (!jacobian->measured) return 0;
    const tgi_lanczos *lz = &jacobian->lz;
    for (int i = 0; i < lz->steps && i < max; i++)
        values[i] = sqrt(fmax(lz->theta[lz->steps - 1 - i], 0.0));
    return lz->steps;
}
