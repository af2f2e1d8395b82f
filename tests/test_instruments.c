/*
 * tests/test_instruments.c — the recorder's scalar series and the instruments it takes every K
 * steps: thinning keeps at most TG_METRIC_POINTS evenly spaced points spanning the run, the
 * stream writes every point (CSV and JSON Lines, NaN as null), a linear map's Jacobian gives its
 * known singular values, a quadratic's Hessian its known eigenvalues and trace, measurements
 * fall on the multiples of `every` only, a failed measurement records nothing, and once the
 * first measurement has sized the instruments the later ones allocate nothing.
 */
#include "helpers.h"

#include <math.h>
#include <string.h>

Test(instruments, thinning_spans_the_whole_run_in_bounded_memory) {
    tg_ctx *ctx = tg_ctx_new();
    tg_recorder *r = tg_recorder_new(ctx, 4);
    const int n = 1000;
    for (int i = 0; i < n; i++)
        cr_assert_eq(tg_recorder_add_metric(r, 3 * i, "lambda", (double)i), TG_OK, "%s", tg_errmsg(ctx));
    int64_t steps[TG_METRIC_POINTS + 1];
    double values[TG_METRIC_POINTS + 1];
    int kept = tg_recorder_metric(r, 0, steps, values, TG_METRIC_POINTS + 1);
    cr_expect_leq(kept, TG_METRIC_POINTS);
    cr_expect_geq(kept, TG_METRIC_POINTS / 2, "only %d points kept", kept);
    cr_expect_eq(steps[0], 0);
    /* evenly spaced: 1000 points at stride 4 (256 points cover 1024), then the newest */
    cr_expect_eq(steps[kept - 1], 3 * (n - 1), "the newest point is step %lld", (long long)steps[kept - 1]);
    cr_expect_eq(values[kept - 1], n - 1);
    for (int i = 1; i < kept - 1; i++) {
        cr_expect_eq(steps[i] - steps[i - 1], 3 * 4, "gap at %d: %lld", i, (long long)(steps[i] - steps[i - 1]));
        cr_expect_eq(values[i], (double)(steps[i] / 3));
    }
    tg_recorder_free(r);
    tg_ctx_free(ctx);
}

Test(instruments, series_in_order_of_appearance_and_refusals) {
    tg_ctx *ctx = tg_ctx_new();
    tg_recorder *r = tg_recorder_new(ctx, 4);
    cr_assert_eq(tg_recorder_add_metric(r, 0, "zeta", 1.0), TG_OK);
    cr_assert_eq(tg_recorder_add_metric(r, 0, "alpha", NAN), TG_OK);
    cr_expect_eq(tg_recorder_metric_count(r), 2);
    cr_expect_str_eq(tg_recorder_metric_name(r, 0), "zeta");
    cr_expect_str_eq(tg_recorder_metric_name(r, 1), "alpha");
    cr_expect_eq(tg_recorder_metric_find(r, "alpha"), 1);
    cr_expect_eq(tg_recorder_metric_find(r, "beta"), -1);
    cr_expect_eq(tg_recorder_add_metric(r, 5, "zeta", 2.0), TG_OK);
    cr_expect_eq(tg_recorder_add_metric(r, 4, "zeta", 3.0), TG_ERR_INVALID);
    cr_expect(strstr(tg_errmsg(ctx), "step 4 after step 5"), "%s", tg_errmsg(ctx));
    tg_clear_error(ctx);
    char long_name[100];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    cr_expect_eq(tg_recorder_add_metric(r, 6, long_name, 1.0), TG_ERR_INVALID);
    cr_expect(strstr(tg_errmsg(ctx), "at most 63"), "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_recorder_metric_count(r), 2, "a refused point made a series");
    tg_recorder_free(r);
    tg_ctx_free(ctx);
}

static char *streamed(tg_format format) {
    tg_ctx *ctx = tg_ctx_new();
    tg_recorder *r = tg_recorder_new(ctx, 4);
    static char text[4096];
    memset(text, 0, sizeof text);
    FILE *f = fmemopen(text, sizeof text - 1, "w");
    cr_assert_not_null(f);
    tg_recorder_stream_metrics(r, f, format);
    tg_recorder_add_metric(r, 0, "hessian.lambda_max", 2.5);
    tg_recorder_add_metric(r, 10, "hessian.lambda_max", INFINITY);
    tg_recorder_add_metric(r, 10, "a \"quoted\" name", -1.0);
    tg_recorder_stream_metrics(r, NULL, format);
    tg_recorder_add_metric(r, 20, "hessian.lambda_max", 4.0); /* after the stream stopped */
    fclose(f);
    tg_recorder_free(r);
    tg_ctx_free(ctx);
    return text;
}

Test(instruments, stream_writes_every_point) {
    cr_expect_str_eq(streamed(TG_FORMAT_CSV),
                     "step,name,value\n0,\"hessian.lambda_max\",2.5\n10,\"hessian.lambda_max\",null\n"
                     "10,\"a \"quoted\" name\",-1\n");
    cr_expect_str_eq(streamed(TG_FORMAT_JSONL),
                     "{\"step\":0,\"name\":\"hessian.lambda_max\",\"value\":2.5}\n"
                     "{\"step\":10,\"name\":\"hessian.lambda_max\",\"value\":null}\n"
                     "{\"step\":10,\"name\":\"a \\\"quoted\\\" name\",\"value\":-1}\n");
}

/* ---- the instruments: functions with known spectra ------------------------------------------ */

/* 0.5 sum_i d_i w_i^2: the Hessian is diag(d), eigenvalues d, trace sum d. */
static tg_tensor *quadratic(tg_tape *tape, tg_tensor *const *in, int n, void *user) {
    (void)n;
    tg_tensor *dw = tg_mul(tape, user, in[0]); /* user: the persistent d */
    return tg_scale(tape, tg_sum(tape, tg_mul(tape, dw, in[0])), 0.5f);
}

/* x -> W x for W = diag(3, 2, 0.5) rotated by a Householder reflection (singular values kept). */
static tg_tensor *linear_map(tg_tape *tape, tg_tensor *x, void *user) {
    return tg_matmul(tape, x, user); /* x [1,3] times W^T [3,3] */
}

typedef struct fixture {
    tg_ctx *ctx;
    tg_tensor *w, *d, *weight, *x;
    tg_recorder *r;
} fixture;

static fixture make(tg_ctx *ctx, const tg_instruments_config *config) {
    fixture f = {.ctx = ctx};
    f.w = leaf(ctx, TG_SHAPE(4), (const float[]){0.3f, -0.2f, 0.7f, 0.1f});
    f.d = tg_from_data(ctx, TG_SHAPE(4), (const float[]){5.0f, 3.0f, 1.0f, -2.0f});
    /* H = I - 2 v v^T for v = (1, 2, 2)/3, then W^T = diag(3, 2, 0.5) H */
    const double v[3] = {1.0 / 3, 2.0 / 3, 2.0 / 3}, s[3] = {3, 2, 0.5};
    float wt[9];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) wt[i * 3 + j] = (float)(s[i] * ((i == j) - 2 * v[i] * v[j]));
    f.weight = tg_from_data(ctx, TG_SHAPE(3, 3), wt);
    f.x = tg_from_data(ctx, TG_SHAPE(1, 3), (const float[]){0.1f, 0.2f, 0.3f});
    f.r = tg_recorder_new(ctx, 8);
    cr_assert_eq(tg_recorder_instruments(f.r, &f.w, 1, config), TG_OK, "%s", tg_errmsg(ctx));
    return f;
}

static tg_measure measure_of(fixture *f) {
    return (tg_measure){.loss = quadratic, .loss_user = f->d, .model = linear_map,
                        .model_user = f->weight, .input = f->x, .lr = 0.5};
}

static double last_value(const tg_recorder *r, const char *name, int expected_points) {
    int index = tg_recorder_metric_find(r, name);
    cr_assert_geq(index, 0, "no series '%s'", name);
    double values[16];
    int n = tg_recorder_metric(r, index, NULL, values, 16);
    cr_expect_eq(n, expected_points, "'%s': %d points", name, n);
    return values[n - 1];
}

Test(instruments, known_spectra_on_the_multiples_of_every) {
    tg_ctx *ctx = tg_ctx_new();
    tg_instruments_config config = tg_instruments_defaults();
    config.every = 3;
    config.hessian_top = 2;
    config.hessian_trace = true;
    config.spectra.probes = 64; /* Hutchinson on a diagonal: z^T D z = trace for every +-1 z */
    config.jacobian_top = 1;
    fixture f = make(ctx, &config);
    tg_measure what = measure_of(&f);
    int measured_steps = 0;
    for (int step = 0; step <= 7; step++) {
        bool measured;
        cr_assert_eq(tg_recorder_measure(f.r, step, &what, &measured), TG_OK, "%s", tg_errmsg(ctx));
        cr_expect_eq(measured, step % 3 == 0, "step %d", step);
        measured_steps += measured;
    }
    cr_expect_eq(measured_steps, 3);
    cr_expect_float_eq(last_value(f.r, "hessian.lambda_max", 3), 5.0, 1e-5);
    cr_expect_float_eq(last_value(f.r, "hessian.lambda2", 3), 3.0, 1e-5);
    cr_expect_float_eq(last_value(f.r, "lr_lambda_max", 3), 2.5, 1e-5);
    cr_expect_float_eq(last_value(f.r, "hessian.trace", 3), 7.0, 1e-5);
    cr_expect_float_eq(last_value(f.r, "jacobian.sigma_max", 3), 3.0, 1e-5);
    cr_expect_float_eq(last_value(f.r, "jacobian.sigma_min", 3), 0.5, 1e-5);
    cr_expect_float_eq(last_value(f.r, "jacobian.mean_square", 3), (9 + 4 + 0.25) / 3, 1e-5);
    int64_t steps[4];
    tg_recorder_metric(f.r, tg_recorder_metric_find(f.r, "hessian.trace"), steps, NULL, 4);
    cr_expect(steps[0] == 0 && steps[1] == 3 && steps[2] == 6);
    tg_recorder_free(f.r);
    tg_ctx_free(ctx);
}

static tg_tensor *failing(tg_tape *tape, tg_tensor *const *in, int n, void *user) {
    (void)tape, (void)in, (void)n, (void)user;
    return NULL;
}

Test(instruments, a_failed_measurement_records_nothing) {
    tg_ctx *ctx = tg_ctx_new();
    tg_instruments_config config = tg_instruments_defaults();
    config.every = 1;
    config.jacobian_top = 1;
    fixture f = make(ctx, &config);
    tg_measure what = measure_of(&f);
    what.model = NULL; /* the Hessian succeeds, then the Jacobian has no function */
    cr_expect_eq(tg_recorder_measure(f.r, 0, &what, NULL), TG_ERR_INVALID);
    cr_expect(strstr(tg_errmsg(ctx), "tg_measure.model"), "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_recorder_metric_count(f.r), 0);
    tg_clear_error(ctx);
    what = measure_of(&f);
    what.loss = failing;
    cr_expect_neq(tg_recorder_measure(f.r, 1, &what, NULL), TG_OK);
    cr_expect_eq(tg_recorder_metric_count(f.r), 0);
    tg_recorder_free(f.r);
    tg_ctx_free(ctx);
}

Test(instruments, nothing_allocated_after_the_first_measurement) {
    tally count = {.fail_at = -1};
    tg_ctx *ctx = tg_ctx_new_with_allocator(tally_alloc, &count);
    tg_instruments_config config = tg_instruments_defaults();
    config.every = 2;
    config.hessian_trace = true;
    config.jacobian_top = 2;
    fixture f = make(ctx, &config);
    tg_measure what = measure_of(&f);
    cr_assert_eq(tg_recorder_measure(f.r, 0, &what, NULL), TG_OK, "%s", tg_errmsg(ctx));
    long warm = count.allocations;
    for (int step = 1; step < 40; step++)
        cr_assert_eq(tg_recorder_measure(f.r, step, &what, NULL), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(count.allocations, warm, "%ld allocations in 19 later measurements",
                 count.allocations - warm);
    tg_recorder_free(f.r);
    tg_ctx_free(ctx);
    cr_expect_eq(count.allocations, count.frees, "%ld blocks not freed", count.allocations - count.frees);
}
