/*
 * diagnostics/curvature.c — the Hessian's spectrum (top eigenvalues by Lanczos, trace by
 * Hutchinson, density by stochastic Lanczos quadrature) over Hessian-vector products of a
 * recorded loss, and the gradient-noise scale.
 *
 * The instrument owns a tape: each product resets it and records the caller's function again
 * (tg_hvp uses the step's one backward walk), so the caller's own tape, perhaps a recorded step
 * being replayed every iteration, is never touched. Directions are flat vectors over every
 * parameter in order; a product hands tg_hvp per-parameter views into them, so nothing is
 * copied and, once the first call has sized the basis and the tape's arena, nothing allocated.
 */
#include "diagnostics/spectrum.h"

#include <math.h>
#include <string.h>

struct tg_curvature {
    tg_ctx *ctx;
    tg_curvature_config config;
    tg_tape *tape;
    tg_tensor **params;
    int n;
    int64_t dim;             /* parameters in all */
    const float **v;         /* n views of the direction ... */
    float **hv;              /* ... and of the product */
    tgi_lanczos lz;
    tg_gradcheck_fn fn;      /* of the call in progress */
    void *user;
    tgi_retired retired;     /* tg_curvature_free */
};

tg_curvature_config tg_curvature_defaults(void) {
    tg_curvature_config c = {20, 10, 1};
    return c;
}

/* A config the instruments can run: TG_OK, or TG_ERR_INVALID naming the field. */
static tg_status check_config(tg_ctx *ctx, const char *what, const tg_curvature_config *c) {
    if (c->steps < 1 || c->steps > TGI_LANCZOS_MAX_STEPS)
        return tgi_error(ctx, TG_ERR_INVALID, "%s: config.steps is %d (1..%d)", what, c->steps,
                         TGI_LANCZOS_MAX_STEPS);
    if (c->probes < 1)
        return tgi_error(ctx, TG_ERR_INVALID, "%s: config.probes is %d (at least 1)", what,
                         c->probes);
    return TG_OK;
}

static void curvature_release(tg_curvature *c) {
    tg_ctx *ctx = c->ctx;
    tgi_lanczos_release(&c->lz);
    tgi_tape_destroy(c->tape);
    if (c->params) tgi_free(ctx, c->params, (size_t)c->n * sizeof *c->params);
    if (c->v) tgi_free(ctx, c->v, (size_t)c->n * sizeof *c->v);
    if (c->hv) tgi_free(ctx, c->hv, (size_t)c->n * sizeof *c->hv);
}

tg_curvature *tg_curvature_new(tg_ctx *ctx, tg_tensor *const *params, int n,
                               const tg_curvature_config *config) {
    if (!ctx) return NULL;
    const char *what = "curvature";
    tg_curvature_config cfg = config ? *config : tg_curvature_defaults();
    if (check_config(ctx, what, &cfg) != TG_OK) return NULL;
    if (n < 1 || !params) {
        tgi_error(ctx, TG_ERR_INVALID, "%s: %d parameters%s", what, n,
                  n < 1 ? " (at least 1)" : " but the array is NULL");
        return NULL;
    }
    if (tgi_refuse_stale_list(ctx, params, n, what) != TG_OK) return NULL;
    int64_t dim = 0;
    for (int i = 0; i < n; i++) {
        const tg_tensor *p = params[i];
        char name[TG_LABEL_MAX + 32];
        if (!p) {
            tgi_error(ctx, TG_ERR_INVALID, "%s: parameter %d is NULL", what, i);
            return NULL;
        }
        if (p->ctx != ctx || !p->persistent || !p->requires_grad) {
            tgi_error(ctx, TG_ERR_INVALID, "%s: parameter %d ('%s') is %s", what, i,
                      p->ctx == ctx ? tgi_node_name(p, name, sizeof name) : "?",
                      p->ctx != ctx       ? "of another context"
                      : !p->persistent    ? "a tape tensor (parameters are persistent tensors)"
                                          : "not requiring a gradient (tg_set_requires_grad)");
            return NULL;
        }
        for (int k = 0; k < i; k++)
            if (params[k] == p) { /* one direction would move it twice */
                tgi_error(ctx, TG_ERR_INVALID, "%s: parameter %d ('%s') is listed twice (also at "
                          "%d)", what, i, tgi_node_name(p, name, sizeof name), k);
                return NULL;
            }
        dim += p->size;
    }
    tg_curvature *c = tgi_alloc(ctx, sizeof *c);
    if (!c) {
        tgi_error(ctx, TG_ERR_NOMEM, "%s: out of memory", what);
        return NULL;
    }
    memset(c, 0, sizeof *c);
    c->ctx = ctx;
    c->config = cfg;
    c->n = n;
    c->dim = dim;
    c->params = tgi_alloc(ctx, (size_t)n * sizeof *c->params);
    c->v = tgi_alloc(ctx, (size_t)n * sizeof *c->v);
    c->hv = tgi_alloc(ctx, (size_t)n * sizeof *c->hv);
    c->tape = tg_tape_new(ctx);
    if (!c->params || !c->v || !c->hv || !c->tape) {
        curvature_release(c);
        tgi_free(ctx, c, sizeof *c);
        tgi_error(ctx, TG_ERR_NOMEM, "%s: out of memory", what);
        return NULL;
    }
    memcpy(c->params, params, (size_t)n * sizeof *params);
    return c;
}

void tg_curvature_free(tg_curvature *curvature) {
    if (!curvature || curvature->retired.freed) return;
    curvature_release(curvature);
    tgi_retire(curvature->ctx, &curvature->retired, curvature, sizeof *curvature);
}

/* The error of a function that returned NULL: its own message, or one saying it gave none. */
static tg_status function_failed(tg_ctx *ctx, const char *what) {
    tg_status status = tg_errcode(ctx);
    return status != TG_OK ? status
                           : tgi_error(ctx, TG_ERR_INVALID, "%s: the function returned NULL "
                                       "without an error", what);
}

/* out = H in: the loss recorded afresh, then tg_hvp along views of in. */
static tg_status hessian_product(void *arg, const float *in, float *out) {
    tg_curvature *c = arg;
    int64_t offset = 0;
    for (int i = 0; i < c->n; i++) {
        c->v[i] = in + offset;
        c->hv[i] = out + offset;
        offset += c->params[i]->size;
    }
    tg_tape_reset(c->tape);
    tg_tensor *loss = c->fn(c->tape, c->params, c->n, c->user);
    if (!loss) return function_failed(c->ctx, "curvature");
    if (loss->size != 1) {
        char shape[96];
        return tgi_error(c->ctx, TG_ERR_SHAPE, "curvature: the function returned a tensor %s; it "
                         "must return a scalar (a loss)",
                         tgi_format_shape(loss->ndim, loss->shape, shape, sizeof shape));
    }
    return tg_hvp(c->tape, loss, c->n, c->params, c->v, c->hv);
}

/* The checks every measurement makes, and the function noted for the products. */
static tg_status begin(tg_curvature *c, const char *what, tg_gradcheck_fn fn, void *user,
                       const void *out) {
    if (!fn || !out)
        return tgi_error(c->ctx, TG_ERR_INVALID, "%s: the %s is NULL", what,
                         !fn ? "function" : "result pointer");
    c->fn = fn;
    c->user = user;
    return TG_OK;
}

tg_status tg_curvature_top_eigenvalues(tg_curvature *curvature, tg_gradcheck_fn fn, void *user,
                                       int k, tg_eigenvalues *result, float *const *top_vector) {
    if (!curvature) return TG_ERR_INVALID;
    tg_curvature *c = curvature;
    const char *what = "curvature top eigenvalues";
    tg_status status = begin(c, what, fn, user, result);
    if (status != TG_OK) return status;
    memset(result, 0, sizeof *result);
    result->smallest = result->smallest_residual = NAN;
    if (k < 1 || k > TG_SPECTRUM_MAX)
        return tgi_error(c->ctx, TG_ERR_INVALID, "%s: k is %d (1..%d)", what, k, TG_SPECTRUM_MAX);
    if (top_vector)
        for (int i = 0; i < c->n; i++)
            if (!top_vector[i])
                return tgi_error(c->ctx, TG_ERR_INVALID, "%s: top_vector[%d] is NULL", what, i);
    int steps = (int64_t)c->config.steps < c->dim ? c->config.steps : (int)c->dim;
    if ((status = tgi_lanczos_reserve(&c->lz, c->ctx, c->dim, steps, steps)) != TG_OK) return status;
    tg_rng rng;
    tg_rng_seed(&rng, c->config.seed);
    status = tgi_lanczos_run(&c->lz, steps, &rng, false, hessian_product, c);
    if (status != TG_OK) return status;
    const tgi_lanczos *lz = &c->lz;
    const int s = lz->steps;
    result->steps = s;
    result->exact = lz->spanned;
    result->count = k < s ? k : s;
    for (int i = 0; i < result->count; i++) {
        result->values[i] = lz->theta[s - 1 - i];
        result->residuals[i] = tgi_lanczos_residual(lz, s - 1 - i);
    }
    result->smallest = lz->theta[0];
    result->smallest_residual = tgi_lanczos_residual(lz, 0);
    if (top_vector) {
        tgi_lanczos_ritz_vector(lz, s - 1, lz->w); /* w is free after the run */
        const float *from = lz->w;
        for (int i = 0; i < c->n; from += c->params[i]->size, i++)
            memcpy(top_vector[i], from, (size_t)c->params[i]->size * sizeof(float));
    }
    return TG_OK;
}

tg_status tg_curvature_trace(tg_curvature *curvature, tg_gradcheck_fn fn, void *user,
                             double *trace, double *std_error) {
    if (!curvature) return TG_ERR_INVALID;
    tg_curvature *c = curvature;
    const char *what = "curvature trace";
    tg_status status = begin(c, what, fn, user, trace);
    if (status != TG_OK) return status;
    *trace = NAN;
    if (std_error) *std_error = NAN;
    if ((status = tgi_lanczos_reserve(&c->lz, c->ctx, c->dim, 1, 1)) != TG_OK) return status;
    tg_rng rng;
    tg_rng_seed(&rng, c->config.seed);
    float *z = c->lz.basis, *hz = c->lz.w;
    double mean = 0, m2 = 0; /* Welford: no cancellation between the probes' squares */
    const int probes = c->config.probes;
    for (int p = 0; p < probes; p++) {
        tgi_fill_rademacher(z, c->dim, &rng);
        if ((status = hessian_product(c, z, hz)) != TG_OK) return status;
        double value = tgi_dot(z, hz, c->dim), delta = value - mean;
        if (!isfinite(value))
            return tgi_error(c->ctx, TG_ERR_NUMERIC, "%s: probe %d's z^T H z is not finite", what,
                             p + 1);
        mean += delta / (p + 1);
        m2 += delta * (value - mean);
    }
    *trace = mean;
    if (std_error) *std_error = probes > 1 ? sqrt(m2 / (probes - 1) / probes) : NAN;
    return TG_OK;
}

tg_status tg_curvature_density(tg_curvature *curvature, tg_gradcheck_fn fn, void *user,
                               int vectors, double *nodes, double *weights, int *count) {
    if (!curvature) return TG_ERR_INVALID;
    tg_curvature *c = curvature;
    const char *what = "curvature density";
    tg_status status = begin(c, what, fn, user, count);
    if (status != TG_OK) return status;
    *count = 0;
    if (!nodes || !weights)
        return tgi_error(c->ctx, TG_ERR_INVALID, "%s: the %s array is NULL", what,
                         !nodes ? "nodes" : "weights");
    if (vectors < 1)
        return tgi_error(c->ctx, TG_ERR_INVALID, "%s: %d vectors (at least 1)", what, vectors);
    int steps = (int64_t)c->config.steps < c->dim ? c->config.steps : (int)c->dim;
    if ((status = tgi_lanczos_reserve(&c->lz, c->ctx, c->dim, steps, steps)) != TG_OK) return status;
    tg_rng rng;
    tg_rng_seed(&rng, c->config.seed);
    int written = 0;
    for (int r = 0; r < vectors; r++) {
        /* Rademacher start: its normalised square components are exactly 1/dim, so the
         * quadrature is unbiased for the density (Ubaru, Chen & Saad 2017). */
        if ((status = tgi_lanczos_run(&c->lz, steps, &rng, true, hessian_product, c)) != TG_OK)
            return status;
        const tgi_lanczos *lz = &c->lz;
        for (int i = 0; i < lz->steps; i++, written++) {
            double first = lz->s[(int64_t)i * lz->cap];
            nodes[written] = lz->theta[i];
            weights[written] = first * first / vectors;
        }
    }
    *count = written;
    return TG_OK;
}

tg_status tg_spectrum_density(const double *nodes, const double *weights, int count, double sigma,
                              const double *grid, int n_grid, double *density) {
    if (!nodes || !weights || !grid || !density || count < 0 || n_grid < 0 || !(sigma > 0) ||
        !isfinite(sigma))
        return TG_ERR_INVALID;
    const double norm = 1.0 / (sigma * sqrt(2.0 * 3.14159265358979323846));
    for (int g = 0; g < n_grid; g++) {
        double sum = 0;
        for (int i = 0; i < count; i++) {
            double u = (grid[g] - nodes[i]) / sigma;
            sum += weights[i] * exp(-0.5 * u * u);
        }
        density[g] = sum * norm;
    }
    return TG_OK;
}

/* ---- the gradient-noise scale ------------------------------------------------------------------ */

tg_status tg_noise_scale_from_norms(tg_ctx *ctx, double small_norm_sq, int64_t small_batch,
                                    double big_norm_sq, int64_t big_batch, tg_noise_scale *result) {
    if (!ctx) return TG_ERR_INVALID;
    const char *what = "noise scale";
    if (!result) return tgi_error(ctx, TG_ERR_INVALID, "%s: the result pointer is NULL", what);
    memset(result, 0, sizeof *result);
    result->b_simple = result->trace_sigma = result->grad_norm_sq = NAN;
    if (small_batch < 1 || big_batch <= small_batch)
        return tgi_error(ctx, TG_ERR_INVALID, "%s: batch sizes %lld and %lld (need 1 <= small < "
                         "big)", what, (long long)small_batch, (long long)big_batch);
    if (!isfinite(small_norm_sq) || !isfinite(big_norm_sq) || small_norm_sq < 0 || big_norm_sq < 0)
        return tgi_error(ctx, TG_ERR_INVALID, "%s: squared norms %g and %g (finite, >= 0)", what,
                         small_norm_sq, big_norm_sq);
    const double bs = (double)small_batch, bb = (double)big_batch;
    result->small_norm_sq = small_norm_sq;
    result->big_norm_sq = big_norm_sq;
    result->small_batch = small_batch;
    result->big_batch = big_batch;
    /* E|G_B|^2 = |G|^2 + tr(Sigma) / B at every B: two sizes give both unknowns. */
    result->grad_norm_sq = (bb * big_norm_sq - bs * small_norm_sq) / (bb - bs);
    result->trace_sigma = (small_norm_sq - big_norm_sq) / (1.0 / bs - 1.0 / bb);
    result->b_simple = result->grad_norm_sq > 0 ? result->trace_sigma / result->grad_norm_sq : NAN;
    return TG_OK;
}

tg_status tg_gradient_noise_scale(tg_ctx *ctx, const float *const *grads, int n_micro, int64_t dim,
                                  int64_t micro_batch, tg_noise_scale *result) {
    if (!ctx) return TG_ERR_INVALID;
    const char *what = "gradient noise scale";
    if (!result) return tgi_error(ctx, TG_ERR_INVALID, "%s: the result pointer is NULL", what);
    if (!grads || n_micro < 2 || dim < 1 || micro_batch < 1) {
        memset(result, 0, sizeof *result);
        result->b_simple = result->trace_sigma = result->grad_norm_sq = NAN;
        return tgi_error(ctx, TG_ERR_INVALID, "%s: %s", what,
                         !grads ? "the gradients array is NULL"
                         : n_micro < 2 ? "fewer than 2 micro-batches (two batch sizes are needed)"
                         : dim < 1 ? "dim < 1" : "micro_batch < 1");
    }
    for (int i = 0; i < n_micro; i++)
        if (!grads[i]) return tgi_error(ctx, TG_ERR_INVALID, "%s: grads[%d] is NULL", what, i);
    double small = 0, big = 0;
    for (int i = 0; i < n_micro; i++) small += tgi_dot(grads[i], grads[i], dim);
    small /= n_micro;
    for (int64_t k = 0; k < dim; k++) {
        double mean = 0;
        for (int i = 0; i < n_micro; i++) mean += grads[i][k];
        mean /= n_micro;
        big += mean * mean;
    }
    return tg_noise_scale_from_norms(ctx, small, micro_batch, big, (int64_t)n_micro * micro_batch,
                                     result);
}
