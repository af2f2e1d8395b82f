/*
 * tests/test_misuse_curvature.c — the curvature and Jacobian instruments and the noise scale
 * refuse bad arguments with a message: NULL handles, functions and arrays, parameters that are
 * not persistent or want no gradient or are of another context, sizes out of range, a function
 * that fails or returns a vector where a scalar is due, a stale input.
 */
#include "misuse.h"

/* 0.5 |w|^2 and its misbehaving kin */
static tg_tensor *half_square(tg_tape *tape, tg_tensor *const *in, int n, void *user) {
    (void)n, (void)user;
    return tg_scale(tape, tg_sum(tape, tg_mul(tape, in[0], in[0])), 0.5f);
}
static tg_tensor *a_vector(tg_tape *tape, tg_tensor *const *in, int n, void *user) {
    (void)n, (void)user;
    return tg_mul(tape, in[0], in[0]);
}
static tg_tensor *nothing(tg_tape *tape, tg_tensor *const *in, int n, void *user) {
    (void)tape, (void)in, (void)n, (void)user;
    return NULL;
}
static tg_tensor *identity_block(tg_tape *tape, tg_tensor *x, void *user) {
    (void)user;
    return tg_scale(tape, x, 2.0f);
}
static tg_tensor *no_block(tg_tape *tape, tg_tensor *x, void *user) {
    (void)tape, (void)x, (void)user;
    return NULL;
}

MISUSE(tg_curvature_defaults) {
    tg_curvature_config c = tg_curvature_defaults();
    cr_expect(c.steps == 20 && c.probes == 10 && c.seed == 1);
}

MISUSE(tg_curvature_new) {
    tg_curvature_config bad = tg_curvature_defaults();
    NULLED_QUIETLY(tg_curvature_new(NULL, &W.w, 1, NULL));
    NULLED(tg_curvature_new(W.ctx, NULL, 1, NULL));
    NULLED(tg_curvature_new(W.ctx, &W.w, 0, NULL));
    NULLED(tg_curvature_new(W.ctx, (tg_tensor *[]){NULL}, 1, NULL));
    NULLED(tg_curvature_new(W.ctx, &W.x, 1, NULL));       /* a tape tensor */
    NULLED(tg_curvature_new(W.ctx, &W.foreign, 1, NULL)); /* another context */
    tg_tensor *frozen = tg_zeros(W.ctx, TG_SHAPE(2));
    NULLED(tg_curvature_new(W.ctx, &frozen, 1, NULL));    /* wants no gradient */
    NULLED(tg_curvature_new(W.ctx, (tg_tensor *[]){W.w, W.w}, 2, NULL));
    bad.steps = 0;
    NULLED(tg_curvature_new(W.ctx, &W.w, 1, &bad));
    bad.steps = 100000;
    NULLED(tg_curvature_new(W.ctx, &W.w, 1, &bad));
    bad = tg_curvature_defaults();
    bad.probes = 0;
    NULLED(tg_curvature_new(W.ctx, &W.w, 1, &bad));
    tg_curvature *c = tg_curvature_new(W.ctx, &W.w, 1, NULL);
    cr_expect_not_null(c, "%s", tg_errmsg(W.ctx));
    tg_curvature_free(c);
}

MISUSE(tg_curvature_free) { tg_curvature_free(NULL); }

MISUSE(tg_curvature_top_eigenvalues) {
    tg_curvature *c = tg_curvature_new(W.ctx, &W.w, 1, NULL);
    tg_eigenvalues r;
    float v[3];
    REFUSED_QUIETLY(tg_curvature_top_eigenvalues(NULL, half_square, NULL, 1, &r, NULL));
    REFUSED(tg_curvature_top_eigenvalues(c, NULL, NULL, 1, &r, NULL));
    REFUSED(tg_curvature_top_eigenvalues(c, half_square, NULL, 1, NULL, NULL));
    REFUSED(tg_curvature_top_eigenvalues(c, half_square, NULL, 0, &r, NULL));
    REFUSED(tg_curvature_top_eigenvalues(c, half_square, NULL, TG_SPECTRUM_MAX + 1, &r, NULL));
    REFUSED(tg_curvature_top_eigenvalues(c, half_square, NULL, 1, &r, (float *[]){NULL}));
    REFUSED(tg_curvature_top_eigenvalues(c, a_vector, NULL, 1, &r, NULL));
    REFUSED(tg_curvature_top_eigenvalues(c, nothing, NULL, 1, &r, NULL));
    /* and it works: H = I */
    cr_expect_eq(tg_curvature_top_eigenvalues(c, half_square, NULL, 2, &r, (float *[]){v}), TG_OK,
                 "%s", tg_errmsg(W.ctx));
    cr_expect(fabs(r.values[0] - 1) < 1e-5 && fabs(r.values[1] - 1) < 1e-5 && r.exact);
    tg_curvature_free(c);
}

MISUSE(tg_curvature_trace) {
    tg_curvature *c = tg_curvature_new(W.ctx, &W.w, 1, NULL);
    double trace, error;
    REFUSED_QUIETLY(tg_curvature_trace(NULL, half_square, NULL, &trace, &error));
    REFUSED(tg_curvature_trace(c, NULL, NULL, &trace, &error));
    REFUSED(tg_curvature_trace(c, half_square, NULL, NULL, &error));
    REFUSED(tg_curvature_trace(c, nothing, NULL, &trace, &error));
    cr_expect_eq(tg_curvature_trace(c, half_square, NULL, &trace, NULL), TG_OK, "%s", tg_errmsg(W.ctx));
    cr_expect(fabs(trace - 3) < 1e-5);
    tg_curvature_free(c);
}

MISUSE(tg_curvature_density) {
    tg_curvature *c = tg_curvature_new(W.ctx, &W.w, 1, NULL);
    double nodes[6], weights[6];
    int count;
    REFUSED_QUIETLY(tg_curvature_density(NULL, half_square, NULL, 2, nodes, weights, &count));
    REFUSED(tg_curvature_density(c, NULL, NULL, 2, nodes, weights, &count));
    REFUSED(tg_curvature_density(c, half_square, NULL, 2, NULL, weights, &count));
    REFUSED(tg_curvature_density(c, half_square, NULL, 2, nodes, NULL, &count));
    REFUSED(tg_curvature_density(c, half_square, NULL, 2, nodes, weights, NULL));
    REFUSED(tg_curvature_density(c, half_square, NULL, 0, nodes, weights, &count));
    cr_expect_eq(tg_curvature_density(c, half_square, NULL, 2, nodes, weights, &count), TG_OK,
                 "%s", tg_errmsg(W.ctx));
    cr_expect_eq(count, 6);
    tg_curvature_free(c);
}

MISUSE(tg_spectrum_density) {
    const double nodes[1] = {0}, weights[1] = {1}, grid[1] = {0};
    double density[1];
    GIVES(tg_spectrum_density(NULL, weights, 1, 1, grid, 1, density), TG_ERR_INVALID);
    GIVES(tg_spectrum_density(nodes, NULL, 1, 1, grid, 1, density), TG_ERR_INVALID);
    GIVES(tg_spectrum_density(nodes, weights, 1, 1, NULL, 1, density), TG_ERR_INVALID);
    GIVES(tg_spectrum_density(nodes, weights, 1, 1, grid, 1, NULL), TG_ERR_INVALID);
    GIVES(tg_spectrum_density(nodes, weights, -1, 1, grid, 1, density), TG_ERR_INVALID);
    GIVES(tg_spectrum_density(nodes, weights, 1, 0, grid, 1, density), TG_ERR_INVALID);
    GIVES(tg_spectrum_density(nodes, weights, 1, NAN, grid, 1, density), TG_ERR_INVALID);
    GIVES(tg_spectrum_density(nodes, weights, 1, 1, grid, 1, density), TG_OK);
    cr_expect(fabs(density[0] - 1 / sqrt(2 * 3.14159265358979)) < 1e-12);
}

MISUSE(tg_jacobian_new) {
    tg_curvature_config bad = tg_curvature_defaults();
    NULLED_QUIETLY(tg_jacobian_new(NULL, NULL));
    bad.steps = -1;
    NULLED(tg_jacobian_new(W.ctx, &bad));
    bad = tg_curvature_defaults();
    bad.probes = 0;
    NULLED(tg_jacobian_new(W.ctx, &bad));
    tg_jacobian *j = tg_jacobian_new(W.ctx, NULL);
    cr_expect_not_null(j);
    tg_jacobian_free(j);
}

MISUSE(tg_jacobian_free) { tg_jacobian_free(NULL); }

MISUSE(tg_jacobian_singular_values) {
    tg_jacobian *j = tg_jacobian_new(W.ctx, NULL);
    tg_singular_values r;
    tg_tensor *old = tg_tape_from_data(W.tape, TG_SHAPE(3), (float[]){1, 2, 3});
    tg_tape_reset(W.tape);
    REFUSED_QUIETLY(tg_jacobian_singular_values(NULL, identity_block, NULL, W.w, 1, &r));
    REFUSED(tg_jacobian_singular_values(j, NULL, NULL, W.w, 1, &r));
    REFUSED(tg_jacobian_singular_values(j, identity_block, NULL, NULL, 1, &r));
    REFUSED(tg_jacobian_singular_values(j, identity_block, NULL, W.w, 1, NULL));
    REFUSED(tg_jacobian_singular_values(j, identity_block, NULL, W.w, 0, &r));
    REFUSED(tg_jacobian_singular_values(j, identity_block, NULL, W.w, TG_SPECTRUM_MAX + 1, &r));
    REFUSED(tg_jacobian_singular_values(j, identity_block, NULL, old, 1, &r));
    REFUSED(tg_jacobian_singular_values(j, identity_block, NULL, W.foreign, 1, &r));
    REFUSED(tg_jacobian_singular_values(j, no_block, NULL, W.w, 1, &r));
    /* and it works: J = 2 I */
    cr_expect_eq(tg_jacobian_singular_values(j, identity_block, NULL, W.w, 2, &r), TG_OK, "%s",
                 tg_errmsg(W.ctx));
    cr_expect(fabs(r.largest[0] - 2) < 1e-5 && fabs(r.smallest[0] - 2) < 1e-5);
    cr_expect(fabs(r.mean_square - 4) < 1e-4 && r.mean_square_exact);
    tg_jacobian_free(j);
}

MISUSE(tg_jacobian_spectrum) {
    tg_jacobian *j = tg_jacobian_new(W.ctx, NULL);
    tg_singular_values r;
    double values[3];
    GIVES(tg_jacobian_spectrum(NULL, values, 3), 0);
    GIVES(tg_jacobian_spectrum(j, values, 3), 0); /* nothing measured yet */
    cr_assert_eq(tg_jacobian_singular_values(j, identity_block, NULL, W.w, 1, &r), TG_OK);
    tg_clear_error(W.ctx);
    GIVES(tg_jacobian_spectrum(j, NULL, 3), 0);
    expect_message("tg_jacobian_spectrum(j, NULL, 3)");
    GIVES(tg_jacobian_spectrum(j, values, 3), 3);
    cr_expect(fabs(values[2] - 2) < 1e-5);
    GIVES(tg_jacobian_spectrum(j, NULL, 0), 3); /* the count alone */
    REFUSED(tg_jacobian_singular_values(j, no_block, NULL, W.w, 1, &r));
    GIVES(tg_jacobian_spectrum(j, values, 3), 0); /* the last call failed */
    tg_jacobian_free(j);
}

MISUSE(tg_noise_scale_from_norms) {
    tg_noise_scale r;
    REFUSED_QUIETLY(tg_noise_scale_from_norms(NULL, 6, 4, 5, 8, &r));
    REFUSED(tg_noise_scale_from_norms(W.ctx, 6, 4, 5, 8, NULL));
    REFUSED(tg_noise_scale_from_norms(W.ctx, 6, 0, 5, 8, &r));
    REFUSED(tg_noise_scale_from_norms(W.ctx, 6, 8, 5, 8, &r));
    REFUSED(tg_noise_scale_from_norms(W.ctx, 6, 8, 5, 4, &r));
    REFUSED(tg_noise_scale_from_norms(W.ctx, NAN, 4, 5, 8, &r));
    REFUSED(tg_noise_scale_from_norms(W.ctx, 6, 4, -1, 8, &r));
    GIVES_NAN(r.b_simple);
    cr_expect_eq(tg_noise_scale_from_norms(W.ctx, 6, 4, 5, 8, &r), TG_OK);
    cr_expect(fabs(r.b_simple - 2) < 1e-12);
}

MISUSE(tg_gradient_noise_scale) {
    const float g1[2] = {3, 1}, g2[2] = {1, 1};
    const float *grads[2] = {g1, g2}, *holes[2] = {g1, NULL};
    tg_noise_scale r;
    REFUSED_QUIETLY(tg_gradient_noise_scale(NULL, grads, 2, 2, 4, &r));
    REFUSED(tg_gradient_noise_scale(W.ctx, NULL, 2, 2, 4, &r));
    REFUSED(tg_gradient_noise_scale(W.ctx, grads, 2, 2, 4, NULL));
    REFUSED(tg_gradient_noise_scale(W.ctx, grads, 1, 2, 4, &r));
    REFUSED(tg_gradient_noise_scale(W.ctx, grads, 2, 0, 4, &r));
    REFUSED(tg_gradient_noise_scale(W.ctx, grads, 2, 2, 0, &r));
    REFUSED(tg_gradient_noise_scale(W.ctx, holes, 2, 2, 4, &r));
    cr_expect_eq(tg_gradient_noise_scale(W.ctx, grads, 2, 2, 4, &r), TG_OK);
    cr_expect(fabs(r.b_simple - 2) < 1e-12);
}

/* The messages name the instrument and what is wrong. */
Test(misuse_curvature, messages_say_what_is_wrong) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tensor *w = leaf(ctx, TG_SHAPE(3), (float[]){1, 2, 3});
    tg_curvature *c = tg_curvature_new(ctx, &w, 1, NULL);
    tg_eigenvalues r;
    cr_expect_eq(tg_curvature_top_eigenvalues(c, a_vector, NULL, 1, &r, NULL), TG_ERR_SHAPE);
    expect_errmsg_has(ctx, "curvature", "[3]", "scalar");
    tg_clear_error(ctx);
    cr_expect_eq(tg_curvature_top_eigenvalues(c, nothing, NULL, 1, &r, NULL), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "returned NULL");
    tg_clear_error(ctx);
    cr_expect_null(tg_curvature_new(ctx, (tg_tensor *[]){w, w}, 2, NULL));
    expect_errmsg_has(ctx, "listed twice");
    tg_curvature_free(c);
    tg_ctx_free(ctx);
}

/* ---- the recorder's scalar series and instruments -------------------------------------------- */

MISUSE(tg_recorder_add_metric) {
    REFUSED_QUIETLY(tg_recorder_add_metric(NULL, 0, "m", 1.0));
    REFUSED(tg_recorder_add_metric(W.rec, 0, NULL, 1.0));
    REFUSED(tg_recorder_add_metric(W.rec, 0, "", 1.0));
    cr_expect_eq(tg_recorder_add_metric(W.rec, 2, "m", 1.0), TG_OK);
    REFUSED(tg_recorder_add_metric(W.rec, 1, "m", 1.0));
}

MISUSE(tg_recorder_metric_count) { GIVES(tg_recorder_metric_count(NULL), 0); }

MISUSE(tg_recorder_metric_name) {
    NULLED_QUIETLY(tg_recorder_metric_name(NULL, 0));
    NULLED_QUIETLY(tg_recorder_metric_name(W.rec, -1));
    NULLED_QUIETLY(tg_recorder_metric_name(W.rec, 0));
}

MISUSE(tg_recorder_metric_find) {
    GIVES(tg_recorder_metric_find(NULL, "m"), -1);
    GIVES(tg_recorder_metric_find(W.rec, NULL), -1);
}

MISUSE(tg_recorder_metric) {
    int64_t steps[2];
    double values[2];
    GIVES(tg_recorder_metric(NULL, 0, steps, values, 2), 0);
    GIVES(tg_recorder_metric(W.rec, 0, steps, values, 2), 0); /* no series yet */
    tg_recorder_add_metric(W.rec, 0, "m", 1.0);
    GIVES(tg_recorder_metric(W.rec, 0, steps, values, 0), 0);
    GIVES(tg_recorder_metric(W.rec, 0, NULL, NULL, 2), 1);
    GIVES(tg_recorder_metric(W.rec, 1, steps, values, 2), 0);
}

MISUSE(tg_recorder_stream_metrics) {
    tg_recorder_stream_metrics(NULL, stderr, TG_FORMAT_CSV);
    tg_recorder_stream_metrics(W.rec, NULL, TG_FORMAT_JSONL);
}

MISUSE(tg_instruments_defaults) {
    tg_instruments_config c = tg_instruments_defaults();
    cr_expect(c.every == 10 && c.hessian_top == 1 && !c.hessian_trace && !c.jacobian_top);
}

MISUSE(tg_recorder_instruments) {
    tg_instruments_config bad = tg_instruments_defaults();
    REFUSED_QUIETLY(tg_recorder_instruments(NULL, &W.w, 1, NULL));
    REFUSED(tg_recorder_instruments(W.rec, NULL, 1, NULL));
    REFUSED(tg_recorder_instruments(W.rec, &W.x, 1, NULL)); /* a tape tensor */
    bad.every = 0;
    REFUSED(tg_recorder_instruments(W.rec, &W.w, 1, &bad));
    bad = tg_instruments_defaults();
    bad.hessian_top = TG_SPECTRUM_MAX + 1;
    REFUSED(tg_recorder_instruments(W.rec, &W.w, 1, &bad));
    bad.hessian_top = 0; /* nothing on */
    REFUSED(tg_recorder_instruments(W.rec, &W.w, 1, &bad));
    bad = tg_instruments_defaults();
    bad.jacobian_top = -1;
    REFUSED(tg_recorder_instruments(W.rec, &W.w, 1, &bad));
    bad = tg_instruments_defaults();
    bad.spectra.steps = 0;
    REFUSED(tg_recorder_instruments(W.rec, &W.w, 1, &bad));
    cr_expect_eq(tg_recorder_instruments(W.rec, &W.w, 1, NULL), TG_OK, "%s", tg_errmsg(W.ctx));
}

MISUSE(tg_recorder_measure) {
    tg_measure what = {.loss = half_square};
    bool measured = true;
    REFUSED_QUIETLY(tg_recorder_measure(NULL, 0, &what, &measured));
    cr_expect(!measured);
    REFUSED(tg_recorder_measure(W.rec, 0, &what, NULL)); /* no instruments yet */
    cr_assert_eq(tg_recorder_instruments(W.rec, &W.w, 1, NULL), TG_OK, "%s", tg_errmsg(W.ctx));
    REFUSED(tg_recorder_measure(W.rec, 0, NULL, NULL));
    REFUSED(tg_recorder_measure(W.rec, 0, &(tg_measure){0}, NULL));          /* no loss */
    REFUSED(tg_recorder_measure(W.rec, 0, &(tg_measure){.loss = nothing}, NULL));
    REFUSED(tg_recorder_measure(W.rec, 0, &(tg_measure){.loss = a_vector}, NULL));
    cr_expect_eq(tg_recorder_metric_count(W.rec), 0, "a refused measurement left a series");
    cr_expect_eq(tg_recorder_measure(W.rec, 0, &what, &measured), TG_OK, "%s", tg_errmsg(W.ctx));
    cr_expect(measured);
    cr_expect_eq(tg_recorder_measure(W.rec, 1, &what, &measured), TG_OK); /* not a multiple of 10 */
    cr_expect(!measured);
}
