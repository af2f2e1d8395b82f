/*
 * cli/sharpness.c — the `sharpness` experiment: full-batch gradient descent on a fixed subset
 * of the digits at several learning rates, the sharpness (the Hessian's largest eigenvalue)
 * measured every few steps against 2 / lr, the stability threshold of gradient descent along
 * the sharpest direction (Cohen et al. 2021).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/sharpness.h"

/* Below 2 / lr by at most this (relative, mean over the second half of the measurements):
 * the run sits at the edge of stability. */
#define EDGE_TOLERANCE 0.15

bool sharpness_setup(experiment *e, uint64_t seed, bool quick) {
    sharp_study *s = calloc(1, sizeof *s);
    if (!s) return false;
    e->sharp = s;
    e->title = "Sharpness: full-batch gradient descent at the edge of stability";
    e->question = "Does the sharpness (the loss's largest Hessian eigenvalue) settle at 2 / lr, the "
                  "stability threshold of gradient descent, and does a run blow up once lr x sharpness "
                  "passes 2 (Cohen et al. 2021)?";
    e->charts = CHART_LOSS;
    s->every = 25;
    s->samples = 256;
    /* 0.2: below the edge within this budget (Cohen et al.'s progressive sharpening takes longer);
     * 0.4 and 0.6: at it; 2: past it from the start (the initial sharpness, 7 to 8, is far above
     * 2 / 2 = 1). 0.8 is not enough: its run catapults down to 2 / 0.8 and trains at the edge. */
    static const float lrs[] = {0.2f, 0.4f, 0.6f, 2.0f};
    for (int i = 0; i < 4; i++) {
        run_config c = {0};
        snprintf(c.name, sizeof c.name, "GD lr %g", (double)lrs[i]);
        c.model = MODEL_MLP;
        c.depth = 3;
        c.width = 32;
        c.activation = TG_ACT_TANH;
        c.init = (tg_init){.kind = TG_INIT_XAVIER_UNIFORM, .gain = 1.0f};
        c.data = DATA_DIGITS;
        c.opt = (tg_optimizer_config){.kind = TG_OPT_SGD, .lr = lrs[i]};
        c.steps = quick ? 150 : 600;
        c.batch = s->samples;
        c.train_subset = s->samples;
        c.seed = seed;
        s->runs[i].lr = lrs[i];
        e->runs[e->n_runs++] = c;
    }
    return true;
}

typedef struct loss_fn_data {
    tg_module *net;
    tg_tensor *x, *y;
} loss_fn_data;

/* The loss on the fixed subset: the function whose Hessian is measured and descended. */
static tg_tensor *subset_loss(tg_tape *tape, tg_tensor *const *inputs, int n, void *user) {
    (void)inputs;
    (void)n;
    loss_fn_data *d = user;
    return tg_mse(tape, tg_module_forward(d->net, tape, d->x), d->y);
}

static double seconds_since(const struct timespec *t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0->tv_nsec);
}

static void fail(run_result *r, tg_ctx *ctx, const char *what) {
    snprintf(r->error, sizeof r->error, "%s: %s", what, ctx ? tg_errmsg(ctx) : "out of memory");
}

void sharpness_train(experiment *e, int index, progress_fn progress, void *user) {
    const run_config *c = &e->runs[index];
    run_result *r = &e->results[index];
    sharp_run *sr = &e->sharp->runs[index];
    memset(r, 0, sizeof *r);
    r->config = *c;
    r->explosion_onset_step = r->first_nan_step = -1;
    r->test_accuracy = r->final_loss = r->train_loss = r->train_accuracy = NAN;
    r->first_last_ratio = NAN;
    sr->cross_step = -1;
    sr->cross_value = NAN;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int steps = c->steps;
    r->loss = malloc((size_t)steps * sizeof *r->loss);
    r->grad_norm = malloc((size_t)steps * sizeof *r->grad_norm);
    int64_t *step_numbers = malloc((size_t)steps * sizeof *step_numbers);
    float *onehot = calloc((size_t)e->sharp->samples * 10, sizeof *onehot);
    tg_ctx *ctx = tg_ctx_new();
    if (!r->loss || !r->grad_norm || !step_numbers || !onehot || !ctx) {
        fail(r, NULL, "sharpness");
        goto done;
    }
    for (int s = 0; s < steps; s++) r->loss[s] = r->grad_norm[s] = NAN;
    tg_ctx_set_threads(ctx, c->threads > 0 ? c->threads : 1);
    tg_dataset *digits = tg_dataset_digits(ctx);
    /* the subset: the first `samples` of a seeded shuffle, one batch for the whole run */
    tg_batcher *batches = digits ? tg_batcher_new(digits, e->sharp->samples, true, true, c->seed) : NULL;
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *xb = NULL, *yb = NULL;
    if (!batches || !tape || !tg_batcher_next(batches, tape, &xb, &yb)) {
        fail(r, ctx, "sharpness: the digits subset");
        tg_batcher_free(batches);
        goto done_ctx;
    }
    int64_t n = e->sharp->samples;
    for (int64_t i = 0; i < n; i++) onehot[i * 10 + (int64_t)yb->data[i]] = 1.0f;
    loss_fn_data d = {0};
    d.x = tg_from_data(ctx, 2, (int64_t[]){n, xb->shape[1]}, xb->data);
    d.y = tg_from_data(ctx, 2, (int64_t[]){n, 10}, onehot);
    tg_batcher_free(batches);
    tg_mlp_config mc = {.in = 64, .out = 10, .width = c->width, .depth = c->depth,
                        .activation = c->activation, .init = c->init, .seed = c->seed};
    d.net = tg_mlp_new(ctx, "mlp", &mc);
    tg_tensor *params[32];
    int np = d.net ? tg_module_params(d.net, params, 32) : 0;
    tg_curvature_config cc = tg_curvature_defaults();
    cc.steps = 8; /* the largest eigenvalue to ~7 digits (tg_curvature_top_eigenvalues) */
    cc.seed = c->seed;
    tg_curvature *curvature = np > 0 && d.x && d.y ? tg_curvature_new(ctx, params, np, &cc) : NULL;
    tg_optimizer *opt = curvature ? tg_optimizer_new(ctx, params, np, &c->opt) : NULL;
    if (!opt) {
        fail(r, ctx, "sharpness: the model");
        goto done_curvature;
    }
    for (int s = 0; s < steps; s++) {
        if (s % e->sharp->every == 0 && sr->n < SHARP_MAX_MEASURES && isfinite(s ? r->loss[s - 1] : 0)) {
            tg_eigenvalues ev;
            if (tg_curvature_top_eigenvalues(curvature, subset_loss, &d, 1, &ev, NULL) == TG_OK) {
                sr->step[sr->n] = s;
                sr->lambda[sr->n++] = ev.values[0];
                if (sr->cross_step < 0 && c->opt.lr * ev.values[0] >= 2.0) {
                    sr->cross_step = s;
                    sr->cross_value = c->opt.lr * ev.values[0];
                }
            }
        }
        tg_tape_reset(tape);
        tg_tensor *loss = subset_loss(tape, NULL, 0, &d);
        tg_optimizer_zero_grad(opt);
        if (!loss || tg_backward(tape, loss) != TG_OK) {
            fail(r, ctx, "sharpness: a step");
            break;
        }
        double sq = 0;
        for (int i = 0; i < np; i++)
            if (params[i]->grad)
                for (int64_t j = 0; j < params[i]->size; j++) sq += (double)params[i]->grad[j] * params[i]->grad[j];
        r->loss[s] = loss->data[0];
        r->grad_norm[s] = sqrt(sq);
        r->steps_done = s + 1;
        if (!isfinite(r->loss[s]) || !isfinite(r->grad_norm[s])) {
            r->first_nan_step = s;
            break;
        }
        tg_optimizer_step(opt);
        if (progress && (s + 1) % 25 == 0) progress(user, s + 1, r->loss[s]);
    }
    /* the onset detector the other runs use, on the gradient norm (then the loss) */
    for (int s = 0; s < r->steps_done; s++) step_numbers[s] = s;
    tg_onset_report report;
    tg_detect_explosion(step_numbers, r->grad_norm, r->steps_done, NULL, &report);
    if (report.exploded) r->explosion_onset_step = report.explosion_start_step;
    else {
        tg_detect_explosion(step_numbers, r->loss, r->steps_done, NULL, &report);
        if (report.exploded) r->explosion_onset_step = report.explosion_start_step;
    }
    snprintf(r->onset_summary, sizeof r->onset_summary, "%s", report.summary);
    /* the loss on the subset it descends (train_loss): no held-out data, so final_loss stays NaN */
    if (r->first_nan_step < 0 && r->steps_done > 0) r->train_loss = r->loss[r->steps_done - 1];
done_curvature:
    tg_curvature_free(curvature);
done_ctx:
    tg_ctx_free(ctx);
done:
    free(step_numbers);
    free(onehot);
    r->seconds = seconds_since(&t0);
}

/* Mean relative distance of the sharpness below 2 / lr over the second half of the run's
 * measurements (positive: below), and the largest measured. */
static double edge_gap(const sharp_run *s, double *largest) {
    double threshold = 2.0 / s->lr, sum = 0;
    int from = s->n / 2, count = 0;
    *largest = -INFINITY;
    for (int i = 0; i < s->n; i++) *largest = fmax(*largest, s->lambda[i]);
    for (int i = from; i < s->n; i++, count++) sum += (threshold - s->lambda[i]) / threshold;
    return count ? sum / count : NAN;
}

void sharpness_finding(const experiment *e, writer *w) {
    char a[32], b[32], c[32], d[32];
    int at_edge = 0;
    for (int i = 0; i < e->n_runs; i++) {
        const run_result *r = &e->results[i];
        const sharp_run *s = &e->sharp->runs[i];
        say(w, "%s%s (2/lr = %s): ", i ? "\n" : "", r->config.name, format_number(2.0 / s->lr, a, sizeof a));
        if (r->error[0] || s->n == 0) {
            say(w, "no measurement (%s).", r->error[0] ? r->error : "none taken");
            continue;
        }
        if (r->first_nan_step < 0 && r->explosion_onset_step < 0) {
            double largest, gap = edge_gap(s, &largest);
            say(w, "sharpness %s at step 0, %s at step %d (the largest measured %s); ",
                format_number(s->lambda[0], a, sizeof a), format_number(s->lambda[s->n - 1], b, sizeof b),
                s->step[s->n - 1], format_number(largest, c, sizeof c));
            if (fabs(gap) <= EDGE_TOLERANCE) {
                at_edge++;
                say(w, "over the second half it stayed within %s%% of 2/lr and hovered there (the edge of "
                    "stability), while the loss still fell (%s to %s).", format_number(100 * fabs(gap), d, sizeof d),
                    format_number(r->loss[0], a, sizeof a), format_number(r->loss[r->steps_done - 1], b, sizeof b));
            } else {
                say(w, "over the second half it stayed %s%% %s 2/lr (training loss %s to %s).",
                    format_number(100 * fabs(gap), d, sizeof d), gap > 0 ? "below" : "above",
                    format_number(r->loss[0], a, sizeof a), format_number(r->loss[r->steps_done - 1], b, sizeof b));
            }
            continue;
        }
        if (s->cross_step >= 0)
            say(w, "lr x sharpness crossed 2 at step %lld (%s)", (long long)s->cross_step,
                format_number(s->cross_value, a, sizeof a));
        else say(w, "lr x sharpness never reached 2 where measured");
        if (r->explosion_onset_step >= 0)
            say(w, "; the onset detector finds the blow-up starting at step %lld", (long long)r->explosion_onset_step);
        if (r->first_nan_step >= 0) say(w, "; the loss is NaN/Inf at step %lld", (long long)r->first_nan_step);
        if (s->cross_step >= 0 && r->explosion_onset_step >= s->cross_step)
            say(w, ": the blow-up began %lld steps after gradient descent lost its stability along the sharpest "
                "direction.", (long long)(r->explosion_onset_step - s->cross_step));
        else say(w, ".");
    }
    if (at_edge)
        say(w, "\n%d of %d runs settled at 2/lr: as Cohen et al. (2021) found, full-batch gradient descent "
            "trains at the edge of stability, its sharpness held at 2/lr by the learning rate itself. Advice: "
            "read lr x sharpness against 2 before raising the learning rate (tg_curvature_top_eigenvalues).",
            at_edge, e->n_runs);
}

void sharpness_json(const experiment *e, int index, json_t *run) {
    const sharp_run *s = &e->sharp->runs[index];
    json_t *steps = json_array(), *values = json_array();
    for (int i = 0; i < s->n; i++) {
        json_array_append_new(steps, json_integer(s->step[i]));
        json_array_append_new(values, isfinite(s->lambda[i]) ? json_real(s->lambda[i]) : json_null());
    }
    json_object_set_new(run, "lr", json_real(s->lr));
    json_object_set_new(run, "sharpness_steps", steps);
    json_object_set_new(run, "sharpness", values);
    json_object_set_new(run, "lr_sharpness_cross_step", s->cross_step >= 0 ? json_integer(s->cross_step) : json_null());
}

void sharpness_html(FILE *f, const experiment *e) {
    tg_plot_series series[2 * MAX_RUNS];
    static double x[MAX_RUNS][SHARP_MAX_MEASURES], edge[MAX_RUNS][SHARP_MAX_MEASURES];
    static char names[MAX_RUNS][128];
    int n = 0;
    for (int i = 0; i < e->n_runs; i++) {
        const sharp_run *s = &e->sharp->runs[i];
        if (s->n == 0) continue;
        for (int k = 0; k < s->n; k++) {
            x[i][k] = s->step[k];
            edge[i][k] = 2.0 / s->lr;
        }
        snprintf(names[i], sizeof names[i], "2/lr, lr %g", (double)s->lr);
        series[n++] = (tg_plot_series){e->results[i].config.name, x[i], s->lambda, s->n, 2 * i + 1};
        series[n++] = (tg_plot_series){names[i], x[i], edge[i], s->n, 2 * i + 2};
    }
    tg_line_plot plot = {"Sharpness (largest Hessian eigenvalue) against 2/lr", "training step",
                         "sharpness", false, true, series, n, 0, 0};
    fputs("<figure>", f);
    tg_svg_line_plot(f, &plot);
    fputs("</figure>\n", f);
}

void sharpness_free(experiment *e) {
    free(e->sharp);
    e->sharp = NULL;
}
