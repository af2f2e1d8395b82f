/*
 * diagnostics/instruments.c — a recorder that takes the curvature and Jacobian instruments
 * itself every K steps (tg_recorder_instruments, tg_recorder_measure) and keeps their readings
 * as scalar series (diagnostics/metrics.c).
 *
 * The instruments are the workspaces of diagnostics/curvature.c and jacobian.c: the recorder
 * owns one of each, sized by the first measurement, so a run measured every K steps allocates
 * nothing after it. A measurement's readings are gathered first and recorded only when every
 * instrument succeeded: a failed step leaves no half-measured point behind.
 */
#include "diagnostics/recorder.h"

#include <stdio.h>
#include <string.h>

struct tgi_instruments {
    tg_instruments_config config;
    tg_curvature *curvature;  /* NULL when no Hessian instrument is on */
    tg_jacobian *jacobian;    /* NULL when the Jacobian's is off */
};

/* Readings of one measurement, recorded together. */
#define MAX_READINGS (3 * TG_SPECTRUM_MAX + 4)

typedef struct readings {
    int count;
    char names[MAX_READINGS][32];
    double values[MAX_READINGS];
} readings;

static void reading(readings *out, const char *base, int rank, double value) {
    if (out->count == MAX_READINGS) return;
    /* the first of each is the name users look for; the next ones are numbered from 2 */
    if (rank == 0) snprintf(out->names[out->count], sizeof out->names[0], "%s", base);
    else snprintf(out->names[out->count], sizeof out->names[0], "%s%d", base, rank + 1);
    out->values[out->count++] = value;
}

tg_instruments_config tg_instruments_defaults(void) {
    tg_instruments_config c = {.every = 10, .hessian_top = 1, .spectra = tg_curvature_defaults()};
    c.spectra.steps = 8;
    return c;
}

void tgi_instruments_release(tg_recorder *r) {
    if (!r->instruments) return;
    tg_curvature_free(r->instruments->curvature);
    tg_jacobian_free(r->instruments->jacobian);
    tgi_free(r->ctx, r->instruments, sizeof *r->instruments);
    r->instruments = NULL;
}

static tg_status check_config(tg_ctx *ctx, const tg_instruments_config *c) {
    const char *field = NULL;
    long long value = 0;
    if (c->every < 1) field = "every", value = c->every;
    else if (c->hessian_top < 0 || c->hessian_top > TG_SPECTRUM_MAX)
        field = "hessian_top", value = c->hessian_top;
    else if (c->jacobian_top < 0 || c->jacobian_top > TG_SPECTRUM_MAX)
        field = "jacobian_top", value = c->jacobian_top;
    if (field)
        return tgi_error(ctx, TG_ERR_INVALID,
                         "recorder instruments: %s = %lld (every >= 1; hessian_top and jacobian_top "
                         "0..%d)", field, value, TG_SPECTRUM_MAX);
    if (!c->hessian_top && !c->hessian_trace && !c->jacobian_top)
        return tgi_error(ctx, TG_ERR_INVALID,
                         "recorder instruments: none is on (hessian_top, hessian_trace, jacobian_top)");
    return TG_OK;
}

tg_status tg_recorder_instruments(tg_recorder *r, tg_tensor *const *params, int n,
                                  const tg_instruments_config *config) {
    if (!r) return TG_ERR_INVALID;
    tg_instruments_config c = config ? *config : tg_instruments_defaults();
    tg_status status = check_config(r->ctx, &c);
    if (status != TG_OK) return status;
    bool hessian = c.hessian_top > 0 || c.hessian_trace;
    tgi_instruments *in = tgi_alloc(r->ctx, sizeof *in);
    if (!in) return tgi_error(r->ctx, TG_ERR_NOMEM, "recorder instruments: out of memory");
    memset(in, 0, sizeof *in);
    in->config = c;
    /* tg_curvature_new and tg_jacobian_new check the parameters and the spectra's sizes */
    if ((hessian && !(in->curvature = tg_curvature_new(r->ctx, params, n, &c.spectra))) ||
        (c.jacobian_top && !(in->jacobian = tg_jacobian_new(r->ctx, &c.spectra)))) {
        status = tg_errcode(r->ctx);
        tg_curvature_free(in->curvature);
        tgi_free(r->ctx, in, sizeof *in);
        return status;
    }
    tgi_instruments_release(r);
    r->instruments = in;
    return TG_OK;
}

static tg_status missing(tg_ctx *ctx, const char *what, const char *instrument) {
    return tgi_error(ctx, TG_ERR_INVALID, "tg_recorder_measure: no %s for %s", what, instrument);
}

static tg_status hessian_readings(tg_recorder *r, const tg_measure *what, readings *out) {
    const tg_instruments_config *c = &r->instruments->config;
    if (!what->loss) return missing(r->ctx, "loss function (tg_measure.loss)", "the Hessian");
    tg_status status = TG_OK;
    if (c->hessian_top) {
        tg_eigenvalues top;
        status = tg_curvature_top_eigenvalues(r->instruments->curvature, what->loss,
                                              what->loss_user, c->hessian_top, &top, NULL);
        if (status != TG_OK) return status;
        for (int i = 0; i < top.count; i++)
            reading(out, i == 0 ? "hessian.lambda_max" : "hessian.lambda", i, top.values[i]);
        if (what->lr > 0 && top.count) reading(out, "lr_lambda_max", 0, what->lr * top.values[0]);
    }
    if (c->hessian_trace) {
        double trace;
        status = tg_curvature_trace(r->instruments->curvature, what->loss, what->loss_user, &trace,
                                    NULL);
        if (status == TG_OK) reading(out, "hessian.trace", 0, trace);
    }
    return status;
}

static tg_status jacobian_readings(tg_recorder *r, const tg_measure *what, readings *out) {
    if (!what->model || !what->input)
        return missing(r->ctx, "model function and input (tg_measure.model, .input)", "the Jacobian");
    tg_singular_values sv;
    tg_status status = tg_jacobian_singular_values(r->instruments->jacobian, what->model,
                                                   what->model_user, what->input,
                                                   r->instruments->config.jacobian_top, &sv);
    if (status != TG_OK) return status;
    for (int i = 0; i < sv.count; i++) reading(out, "jacobian.sigma_max", i, sv.largest[i]);
    for (int i = 0; i < sv.count; i++) reading(out, "jacobian.sigma_min", i, sv.smallest[i]);
    reading(out, "jacobian.mean_square", 0, sv.mean_square);
    return TG_OK;
}

tg_status tg_recorder_measure(tg_recorder *r, int64_t step, const tg_measure *what, bool *measured) {
    if (measured) *measured = false;
    if (!r) return TG_ERR_INVALID;
    if (!r->instruments)
        return tgi_error(r->ctx, TG_ERR_STATE, "tg_recorder_measure: no instruments (tg_recorder_instruments)");
    if (!what) return tgi_error(r->ctx, TG_ERR_INVALID, "tg_recorder_measure: what is NULL");
    if (step < 0 || step % r->instruments->config.every != 0) return TG_OK;
    readings out = {0};
    tg_status status = TG_OK;
    if (r->instruments->curvature) status = hessian_readings(r, what, &out);
    if (status == TG_OK && r->instruments->jacobian) status = jacobian_readings(r, what, &out);
    for (int i = 0; status == TG_OK && i < out.count; i++)
        status = tg_recorder_add_metric(r, step, out.names[i], out.values[i]);
    if (status == TG_OK && measured) *measured = true;
    return status;
}
