/*
 * cli/runner.c — one training run, instrumented: per-layer gradient norms at every step, the
 * loss, the global gradient norm before any clipping (fed to the onset detector), and at the
 * first step the gradient with respect to every hidden state of a recurrent net.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/checkpoint.h"
#include "cli/memory.h"
#include "cli/trainer.h"

const char *format_number(double value, char *buf, size_t size) {
    if (!isfinite(value)) snprintf(buf, size, isnan(value) ? "-" : (value > 0 ? "inf" : "-inf"));
    else if (value != 0.0 && (fabs(value) < 1e-3 || fabs(value) >= 1e5)) snprintf(buf, size, "%.2e", value);
    else snprintf(buf, size, "%.4g", value);
    return buf;
}

bool trainer_fail(trainer *t, const char *what) {
    snprintf(t->result->error, sizeof t->result->error, "%s: %s", what, tg_errmsg(t->ctx));
    return false;
}

static double cpu_seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Counts the calls of a --hook, then runs it: a pattern that matches nothing is worth a warning. */
static tg_status counting_hook(tg_ctx *ctx, const tg_hook_event *event, void *user) {
    struct counted_hook *hook = user;
    hook->calls++;
    return hook->fn(ctx, event, hook->user);
}

/* attach_named_hook, counting into `counted` when it is not NULL. */
static tg_status attach_hook(tg_ctx *ctx, const char *spec, struct counted_hook *counted) {
    const char *colon = strrchr(spec, ':');
    if (!colon) return TG_ERR_INVALID;
    /* copied whole: a pattern cut to fit a buffer would match other nodes */
    char *pattern = strndup(spec, (size_t)(colon - spec));
    if (!pattern) return TG_ERR_NOMEM;
    tg_hook_fn fn;
    void *user;
    tg_status status = tg_hook_find(ctx, colon + 1, &fn, &user);
    if (status == TG_OK && counted) {
        *counted = (struct counted_hook){fn, user, 0};
        fn = counting_hook;
        user = counted;
    }
    if (status == TG_OK && tg_hook_pattern(ctx, pattern, TG_PASS_BACKWARD, fn, user) < 0)
        status = tg_errcode(ctx);
    free(pattern);
    return status;
}

tg_status attach_named_hook(tg_ctx *ctx, const char *spec) {
    return attach_hook(ctx, spec, NULL);
}

static int64_t input_size(const trainer *t) {
    return t->config->data == DATA_ADDING ? 2 : tg_dataset_x_size(t->train);
}

static int64_t output_size(const trainer *t) {
    return t->train->classes > 0 ? t->train->classes : 1;
}

/* ---- model --------------------------------------------------------------------------------- */

/* The tensor named "<module>.<local>" becomes layer i of the per-layer statistics. */
static bool track_layer(trainer *t, tg_module *m, const char *local) {
    char name[2 * TG_LABEL_MAX];
    snprintf(name, sizeof name, "%s.%s", tg_module_name(m), local);
    tg_tensor *w = tg_module_find_param(m, name);
    int i = t->result->n_layers;
    if (!w || i == MAX_LAYERS) {
        snprintf(t->result->error, sizeof t->result->error, "no parameter '%s' to track", name);
        return false;
    }
    t->layers[i] = w;
    snprintf(t->result->layer_names[i], TG_LABEL_MAX, "%s", w->label);
    t->result->n_layers++;
    return true;
}

const char *model_name(const run_config *c) {
    static const char *const rnn_names[] = {"rnn", "lstm", "gru"};
    switch (c->model) {
    case MODEL_MLP: return "mlp";
    case MODEL_RESMLP: return c->skip ? "residual" : "plain";
    case MODEL_RNN: return rnn_names[c->rnn];
    case MODEL_LENET: return "lenet";
    case MODEL_RESNET: return c->skip ? "resnet" : "plaincnn";
    }
    return "unknown";
}

int model_layers(const run_config *c) {
    switch (c->model) {
    case MODEL_MLP: return c->depth;
    case MODEL_RESMLP: return 2 * c->depth + 2;
    case MODEL_LENET: return 5;
    case MODEL_RESNET: return c->depth;
    default: return 0;
    }
}

/* LeNet or a ResNet (or its plain twin) on images [C, H, W]; every weight layer tracked, input
 * side first: for a ResNet the stem, each block's conv1 and conv2, the linear read-out. */
static bool build_cnn(trainer *t) {
    const run_config *c = t->config;
    const int64_t *image = t->train->x_shape;
    if (c->model == MODEL_LENET) {
        tg_lenet_config lc = {image[0], image[1], image[2], output_size(t), c->init, c->seed};
        if (!(t->body = tg_lenet_new(t->ctx, "lenet", &lc))) return trainer_fail(t, "model");
        static const char *const layers[] = {"conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight", "fc3.weight"};
        for (int i = 0; i < 5; i++)
            if (!track_layer(t, t->body, layers[i])) return false;
        return true;
    }
    tg_resnet_config rc = {image[0], output_size(t), c->depth, c->width, c->skip, c->init, c->seed};
    if (!(t->body = tg_resnet_new(t->ctx, model_name(c), &rc))) return trainer_fail(t, "model");
    bool ok = track_layer(t, t->body, "stem.conv.weight");
    char local[64];
    for (int s = 1; ok && s <= 3; s++)
        for (int b = 1; ok && b <= (c->depth - 2) / 6; b++)
            for (int k = 1; ok && k <= 2; k++) {
                snprintf(local, sizeof local, "stage%d.block%d.conv%d.weight", s, b, k);
                ok = track_layer(t, t->body, local);
            }
    return ok && track_layer(t, t->body, "fc.weight");
}

/* A recurrent body and its linear read-out of the top layer's final h (both directions); the
 * forward direction's weights of every layer are tracked, input side first. */
static bool build_rnn(trainer *t, int64_t in, int64_t out) {
    const run_config *c = t->config;
    static const char *const names[] = {"rnn", "lstm", "gru"};
    tg_rnn_config rc = tg_rnn_defaults(c->rnn, in, c->hidden);
    rc.seed = c->seed;
    rc.num_layers = c->rnn_layers;
    rc.bidirectional = c->bidirectional;
    int layers = c->rnn_layers > 1 ? c->rnn_layers : 1, directions = c->bidirectional ? 2 : 1;
    t->body = tg_rnn_new(t->ctx, names[c->rnn], &rc);
    t->head = t->body ? tg_linear_new(t->ctx, "head", directions * c->hidden, out, true, NULL, c->seed + 7) : NULL;
    t->states = malloc((size_t)(layers * directions) * (size_t)c->seq_len * sizeof *t->states);
    if (!t->head) return trainer_fail(t, "model");
    if (!t->states) return trainer_fail(t, "memory");
    bool ok = true;
    char local[32], suffix[16] = ""; /* one plain layer has the names that predate stacking */
    for (int l = 0; ok && l < layers; l++)
        for (int k = 0; ok && k < 2; k++) {
            if (layers * directions > 1) snprintf(suffix, sizeof suffix, "_l%d", l);
            snprintf(local, sizeof local, "%s%s", k ? "weight_hh" : "weight_ih", suffix);
            ok = track_layer(t, t->body, local);
        }
    return ok && track_layer(t, t->head, "weight");
}

/* --activation OP or OP:k=v,k=v: the op's name and attributes, typed by its signature; float
 * attributes not given are 1 (swish's beta), others must be given. */
static bool activation_op(trainer *t, tg_mlp_config *mc) {
    const char *spec = t->config->activation_op, *colon = strchr(spec, ':');
    snprintf(t->activation_op, sizeof t->activation_op, "%.*s", (int)(colon ? colon - spec : (long)strlen(spec)), spec);
    tg_op_info info;
    int id = tg_op_find(t->ctx, t->activation_op);
    if (id < 0 || tg_op_get_info(t->ctx, id, &info) != TG_OK) {
        snprintf(t->result->error, sizeof t->result->error, "--activation %s: no such activation or op "
                 "(the plugins loaded do not register '%s')", spec, t->activation_op);
        return false;
    }
    for (int k = 0; k < info.n_attrs; k++) {
        tg_named_attr *a = &t->activation_attrs[k];
        snprintf(t->activation_names[k], TG_LABEL_MAX, "%s", info.attr_names[k]);
        *a = (tg_named_attr){t->activation_names[k], info.attr_types[k], {.f64 = 1.0}};
        if (a->type == TG_ATTR_F32) a->value.f32 = 1.0f;
        char key[TG_LABEL_MAX + 2];
        snprintf(key, sizeof key, "%s=", info.attr_names[k]);
        const char *given = colon ? strstr(colon, key) : NULL; /* "beta=" after ':' or ',' */
        while (given && given[-1] != ':' && given[-1] != ',') given = strstr(given + 1, key);
        char *end = NULL;
        double v = given ? strtod(given + strlen(key), &end) : 1.0;
        bool floating = a->type == TG_ATTR_F32 || a->type == TG_ATTR_F64;
        if ((given && (end == given + strlen(key) || (*end && *end != ','))) || (!given && !floating)) {
            snprintf(t->result->error, sizeof t->result->error, "--activation %s: op %s takes %s; give "
                     "them as %s:%s=VALUE (float attributes not given are 1)", spec, info.name,
                     info.attr_signature, info.name, info.attr_names[k]);
            return false;
        }
        if (a->type == TG_ATTR_F32) a->value.f32 = (float)v;
        else if (a->type == TG_ATTR_F64) a->value.f64 = v;
        else if (a->type == TG_ATTR_I32) a->value.i32 = (int32_t)v;
        else if (a->type == TG_ATTR_I64) a->value.i64 = (int64_t)v;
        else a->value.b = v != 0.0;
    }
    mc->activation_op = t->activation_op;
    mc->activation_attrs = t->activation_attrs;
    mc->n_activation_attrs = info.n_attrs;
    return true;
}

static bool build_model(trainer *t) {
    const run_config *c = t->config;
    int64_t in = input_size(t), out = output_size(t);
    bool ok = true;
    char local[64];
    if (!model_fits_memory(c, in, out, t->train->x_shape, t->result->error, sizeof t->result->error))
        return false;
    if (c->model == MODEL_MLP) {
        tg_mlp_config mc = {.in = in, .out = out, .width = c->width, .depth = c->depth, .activation = c->activation,
                            .init = c->init, .norm = c->norm, .dropout = c->dropout,
                            .seed = c->seed};
        if (c->activation_op && !activation_op(t, &mc)) return false;
        if (!(t->body = tg_mlp_new(t->ctx, "mlp", &mc))) return trainer_fail(t, "model");
        for (int i = 0; ok && i < c->depth; i++) {
            snprintf(local, sizeof local, "layer%d.weight", i);
            ok = track_layer(t, t->body, local);
        }
    } else if (c->model == MODEL_RESMLP) {
        tg_resmlp_config rc = {in, out, c->width, c->depth, c->activation, c->init, c->norm, c->skip, c->seed};
        if (!(t->body = tg_resmlp_new(t->ctx, c->skip ? "res" : "plain", &rc))) return trainer_fail(t, "model");
        ok = track_layer(t, t->body, "in.weight");
        for (int i = 0; ok && i < c->depth; i++) {
            snprintf(local, sizeof local, "block%d.fc1.weight", i);
            ok = track_layer(t, t->body, local);
            snprintf(local, sizeof local, "block%d.fc2.weight", i);
            ok = ok && track_layer(t, t->body, local);
        }
        ok = ok && track_layer(t, t->body, "head.weight");
    } else if (trainer_is_cnn(c)) {
        ok = build_cnn(t);
    } else {
        ok = build_rnn(t, in, out);
    }
    if (!ok) return false;
    if (c->recompute && tg_module_set_recompute(t->body, c->recompute) != TG_OK) return trainer_fail(t, "--recompute");
    t->n_params = list_modules(t->body, t->head, false, t->params, MAX_PARAMS);
    t->n_state = list_modules(t->body, t->head, true, t->state, MAX_PARAMS);
    if (t->n_params < 0 || t->n_state < 0) {
        snprintf(t->result->error, sizeof t->result->error, "more than %d parameter tensors", MAX_PARAMS);
        return false;
    }
    return true;
}

int list_modules(const tg_module *body, const tg_module *head, bool state, tg_tensor **out, int max) {
    int (*list)(const tg_module *, tg_tensor **, int) = state ? tg_module_state : tg_module_params;
    int n = list(body, out, max); /* -1 when they do not fit: never a count past the array */
    int more = n < 0 || !head ? 0 : list(head, out + n, max - n);
    return n < 0 || more < 0 ? -1 : n + more;
}

/* ---- one step ------------------------------------------------------------------------------ */

tg_tensor *trainer_forward(trainer *t, tg_tape *tape, tg_tensor *x, tg_tensor **states) {
    if (!t->head) return tg_module_forward(t->body, tape, x);
    return tg_module_forward(t->head, tape, tg_rnn_forward(t->body, tape, x, states));
}

tg_tensor *trainer_loss(trainer *t, tg_tape *tape, tg_tensor *out, tg_tensor *y) {
    if (t->train->classes > 0) return tg_cross_entropy(tape, out, y);
    return tg_mse(tape, tg_reshape(tape, out, 1, &y->size), y);
}

static double global_norm(const trainer *t) {
    double sum = 0.0;
    for (int i = 0; i < t->n_params; i++)
        for (int64_t k = 0; t->params[i]->grad && k < t->params[i]->size; k++)
            sum += (double)t->params[i]->grad[k] * t->params[i]->grad[k];
    return sqrt(sum);
}

/* Per-layer norms into the recorder (the onset detector reads it), the map and step 0's list. */
static void record_layers(trainer *t, int step) {
    run_result *r = t->result;
    for (int i = 0; i < r->n_layers; i++) {
        tg_stats stats;
        tg_stats_compute(t->layers[i]->grad, t->layers[i]->size, &stats);
        tg_recorder_add_tensor(t->recorder, step, t->layers[i]);
        double norm = stats.n_nan || stats.n_inf ? NAN : stats.l2_norm;
        if (step == 0) r->grad_norm_by_layer[i] = norm;
        r->layer_norms[(int64_t)i * r->config.steps + step] = norm;
    }
}

static void clip(trainer *t) {
    const run_config *c = t->config;
    if (c->clip_value > 0)
        for (int i = 0; i < t->n_params; i++)
            for (int64_t k = 0; t->params[i]->grad && k < t->params[i]->size; k++)
                t->params[i]->grad[k] = fminf(fmaxf(t->params[i]->grad[k], -c->clip_value), c->clip_value);
    if (c->clip_norm > 0) tg_clip_grad_norm(t->params, t->n_params, c->clip_norm, 2.0, false, NULL);
}

static void record_timesteps(double *norms, int n, tg_tensor **states) {
    for (int s = 0; s < n; s++) {
        tg_stats stats;
        if (states[s] && states[s]->grad) tg_stats_compute(states[s]->grad, states[s]->size, &stats);
        norms[s] = states[s] && states[s]->grad ? stats.l2_norm : NAN;
    }
}

/* Anomaly mode stopped the step: the recorder gets the step (the onset summary names it) and
 * the run ends with the message, then concludes as usual. */
static bool anomaly_stop(trainer *t, int step) {
    tg_anomaly_report report;
    if (tg_errcode(t->ctx) != TG_ERR_NUMERIC || tg_anomaly_last(t->ctx, &report) != TG_OK ||
        report.step != tg_tape_step(t->tape))
        return trainer_fail(t, "step");
    trainer_fail(t, "step");
    tg_recorder_add_anomaly(t->recorder, step, &report);
    t->result->anomaly_stopped = true;
    t->result->steps_done = step;
    return false;
}

/* --anomaly-counts: the steps that had a NaN/Inf somewhere, and where the first one was. */
static void note_counts(trainer *t, int step) {
    tg_anomaly_counts counts;
    run_result *r = t->result;
    if (!t->config->anomaly_counts || tg_anomaly_step_counts(t->ctx, &counts) != TG_OK ||
        !counts.tensors_nonfinite)
        return;
    if (!r->nonfinite_steps++ && counts.n_nodes)
        snprintf(r->first_nonfinite, sizeof r->first_nonfinite, "step %d, %s of '%s' (%s)", step,
                 counts.nodes[0].pass == TG_PASS_FORWARD ? "values" : "gradient",
                 counts.nodes[0].name, counts.nodes[0].op);
}

/* One step; false when the run must stop (an error, or a non-finite loss or gradient that no
 * guard skipped). */
/* ---- instruments (--curvature EVERY, --instruments LIST) ------------------------------------ */

/* The loss of the measured batch at the parameters' current values, for the Hessian's products. */
static tg_tensor *batch_loss(tg_tape *tape, tg_tensor *const *params, int n, void *user) {
    (void)params, (void)n;
    trainer *t = user;
    return trainer_loss(t, tape, trainer_forward(t, tape, t->curvature_x, NULL), t->curvature_y);
}

/* The model's output on the measured batch as a function of its input, for the Jacobian's. */
static tg_tensor *batch_output(tg_tape *tape, tg_tensor *input, void *user) {
    return trainer_forward(user, tape, input, NULL);
}

/* A persistent copy of a batch tensor (made again only when the batch's shape changes). */
static tg_tensor *keep_batch(trainer *t, tg_tensor *kept, const tg_tensor *batch) {
    if (!kept || kept->size != batch->size || kept->ndim != batch->ndim)
        kept = tg_zeros(t->ctx, batch->ndim, batch->shape); /* the context frees the old one */
    if (kept) memcpy(kept->data, batch->data, (size_t)batch->size * sizeof(float));
    return kept;
}

static bool set_instruments(trainer *t) {
    const run_config *c = t->config;
    tg_instruments_config config = tg_instruments_defaults();
    config.every = c->curvature_every;
    config.hessian_top = c->instruments & INSTRUMENT_LAMBDA || !c->instruments ? 1 : 0;
    config.hessian_trace = c->instruments & INSTRUMENT_TRACE;
    config.jacobian_top = c->instruments & INSTRUMENT_JACOBIAN ? 1 : 0;
    config.spectra.seed = c->seed; /* the same seed, the same numbers */
    for (int i = 0; i < t->n_state; i++) t->kept_floats += t->state[i]->size;
    t->kept_state = malloc((size_t)(t->kept_floats ? t->kept_floats : 1) * sizeof(float));
    return t->kept_state &&
           tg_recorder_instruments(t->recorder, t->params, t->n_params, &config) == TG_OK;
}

double recorder_newest(const tg_recorder *recorder, const char *name) {
    int index = tg_recorder_metric_find(recorder, name);
    int n = index < 0 ? 0 : tg_recorder_metric(recorder, index, NULL, NULL, TG_METRIC_POINTS);
    double values[TG_METRIC_POINTS];
    return n ? (tg_recorder_metric(recorder, index, NULL, values, n), values[n - 1]) : NAN;
}

/* The instruments on this step's batch, before the update: lr x lambda_max against 2 says
 * whether plain gradient descent is stable along the sharpest direction. The measurement's
 * forward passes would move batch norm's running statistics: the state's values are put back
 * after it. */
static bool measure_instruments(trainer *t, int step, const tg_tensor *x, const tg_tensor *y) {
    const run_config *c = t->config;
    if (!t->instruments && !(t->instruments = set_instruments(t))) return trainer_fail(t, "curvature");
    if (!(t->curvature_x = keep_batch(t, t->curvature_x, x)) ||
        !(t->curvature_y = keep_batch(t, t->curvature_y, y)))
        return trainer_fail(t, "curvature");
    float *kept = t->kept_state;
    for (int i = 0; i < t->n_state; kept += t->state[i]->size, i++)
        memcpy(kept, t->state[i]->data, (size_t)t->state[i]->size * sizeof(float));
    double lr = tg_optimizer_lr(t->opt);
    tg_measure what = {.loss = batch_loss, .loss_user = t, .model = batch_output, .model_user = t,
                       .input = t->curvature_x, .lr = lr};
    tg_status status = tg_recorder_measure(t->recorder, step, &what, NULL);
    kept = t->kept_state;
    for (int i = 0; i < t->n_state; kept += t->state[i]->size, i++)
        memcpy(t->state[i]->data, kept, (size_t)t->state[i]->size * sizeof(float));
    if (status != TG_OK || tg_recorder_add_metric(t->recorder, step, "lr", lr) != TG_OK)
        return trainer_fail(t, "curvature");
    if (c->curvature_event) c->curvature_event(step, t->recorder, c->curvature_user);
    return true;
}

const run_metric *run_metric_find(const run_result *r, const char *name) {
    for (int i = 0; i < r->n_metrics; i++)
        if (strcmp(r->metrics[i].name, name) == 0) return &r->metrics[i];
    return NULL;
}

/* The recorder's scalar series into the result (they span the run: bounded by thinning). */
static void keep_instruments(trainer *t) {
    run_result *r = t->result;
    int n = tg_recorder_metric_count(t->recorder);
    if (!n || !(r->metrics = calloc((size_t)n, sizeof *r->metrics))) return;
    for (int i = 0; i < n; i++) {
        run_metric *m = &r->metrics[r->n_metrics++];
        snprintf(m->name, sizeof m->name, "%s", tg_recorder_metric_name(t->recorder, i));
        m->n = tg_recorder_metric(t->recorder, i, m->steps, m->values, TG_METRIC_POINTS);
    }
}

static bool train_step(trainer *t, int step) {
    run_result *r = t->result;
    tg_tensor *x, *y, **states = t->states;
    tg_tape_reset(t->tape);
    tg_tape_set_step(t->tape, step); /* the anomaly messages say the step the run says */
    if (!tg_batcher_next(t->batches, t->tape, &x, &y) && !tg_batcher_next(t->batches, t->tape, &x, &y))
        return trainer_fail(t, "batch");
    if (t->augment && tg_augment_apply(t->augment, x) != TG_OK) return trainer_fail(t, "--augment");
    x = parallel_shard(t->par, t->tape, x);
    y = parallel_shard(t->par, t->tape, y);
    bool last = step == t->config->steps - 1;
    /* states[0..T-1]: the first layer's forward direction, whose h[1] is the farthest from the loss */
    bool timesteps = (step == 0 || last) && r->grad_norm_by_timestep;
    tg_tensor *loss = trainer_loss(t, t->tape, trainer_forward(t, t->tape, x, timesteps ? states : NULL), y);
    tg_status status = loss ? tg_backward(t->tape, loss) : tg_errcode(t->ctx);
    double loss_value = loss ? loss->data[0] : NAN;
    /* under mpirun: the gradients and the loss become the ranks' means, and a failure anywhere
     * stops every rank; the norms, the recorder, clipping and the NaN stop below then see the
     * same numbers on every rank and decide alike */
    if (t->par) status = parallel_step(t->par, status, &loss_value);
    if (status != TG_OK) return anomaly_stop(t, step);
    for (int i = 0; step == 0 && i < t->config->n_hooks && i < 16; i++)
        if (!t->hooks[i].calls) r->unmatched_hooks |= 1u << i;
    r->loss[step] = loss_value;
    r->grad_norm[step] = global_norm(t);
    record_layers(t, step);
    tg_recorder_add_loss(t->recorder, step, r->loss[step]);
    note_counts(t, step);
    if (timesteps) record_timesteps(step == 0 ? r->grad_norm_by_timestep : r->grad_norm_by_timestep_end,
                                    r->n_timesteps, states);
    r->steps_done = step + 1;
    if (t->config->curvature_every > 0 && step % t->config->curvature_every == 0 &&
        isfinite(r->loss[step]) && !measure_instruments(t, step, x, y))
        return false;
    if (t->guard) {
        /* judged on the means, agreed, then committed: every rank refuses the same steps, keeps
         * the same window and rate, and rolls its own copy of the state back alike */
        tg_guard_verdict verdict = tg_guard_judge(t->guard, r->loss[step], r->grad_norm[step]);
        if (parallel_verdict(t->par, &verdict) != TG_OK) return trainer_fail(t, "mpi");
        tg_guard_commit(t->guard, step, r->loss[step], r->grad_norm[step], verdict);
        if (verdict != TG_GUARD_ACCEPT) {
            tg_optimizer_zero_grad(t->opt);
            return true;
        }
    }
    if (!isfinite(r->loss[step]) || !isfinite(r->grad_norm[step])) return false;
    clip(t);
    double lr = tg_optimizer_lr(t->opt); /* the rate this update takes (scheduled, guarded) */
    if (step == r->first_step) r->lr_first = lr;
    if (!(lr <= r->lr_peak)) r->lr_peak = lr;
    r->lr_last = lr;
    tg_optimizer_step_zero_grad(t->opt);
    return true;
}

/* The L2 norm of every parameter of two or more dimensions (weights and kernels, not biases or
 * norm scales): what weight decay pulls down. */
static double weight_norm(const trainer *t) {
    double sum = 0.0;
    for (int i = 0; i < t->n_params; i++)
        for (int64_t k = 0; t->params[i]->ndim >= 2 && k < t->params[i]->size; k++)
            sum += (double)t->params[i]->data[k] * t->params[i]->data[k];
    return sqrt(sum);
}

static bool evaluation_due(const run_config *c, int steps_done) {
    return c->eval_every > 0 && steps_done % c->eval_every == 0;
}

/* --epochs: whether `steps_done` ends one (the batcher's epochs are steps / epochs steps). */
static bool epoch_ends(const run_config *c, int steps_done) {
    return c->epochs > 0 && steps_done % (c->steps / c->epochs) == 0;
}

/* The epoch that ends at steps_done: evaluated on the held-out set and told to epoch_event;
 * *start (when the epoch's training began) moves past the evaluation. */
static void end_epoch(trainer *t, int steps_done, double *start, double *cpu_start) {
    const run_config *c = t->config;
    run_result *r = t->result;
    int per_epoch = c->steps / c->epochs;
    epoch_report e = {.epoch = steps_done / per_epoch, .epochs = c->epochs, .step = steps_done,
                      .seconds = seconds_now() - *start, .cpu_seconds = cpu_seconds_now() - *cpu_start};
    double sum = 0.0;
    int from = steps_done - per_epoch > r->first_step ? steps_done - per_epoch : r->first_step; /* --resume */
    for (int s = from; s < steps_done; s++) sum += r->loss[s];
    e.train_loss = sum / (steps_done - from);
    e.samples_per_second = e.seconds > 0 ? (double)per_epoch * (double)c->batch / e.seconds : NAN;
    trainer_evaluate(t, steps_done);
    e.test_loss = r->final_loss;
    e.test_accuracy = r->test_accuracy;
    if (c->epoch_event) c->epoch_event(&e, c->epoch_user);
    *start = seconds_now();
    *cpu_start = cpu_seconds_now();
}

/* ---- the run ------------------------------------------------------------------------------- */

static bool allocate_series(run_result *r, int steps) {
    size_t cells = (size_t)r->n_layers * (size_t)steps;
    r->loss = malloc((size_t)steps * sizeof *r->loss);
    r->grad_norm = malloc((size_t)steps * sizeof *r->grad_norm);
    r->layer_norms = malloc(cells * sizeof *r->layer_norms);
    if (!r->loss || !r->grad_norm || !r->layer_norms) return false;
    for (int i = 0; i < steps; i++) r->loss[i] = r->grad_norm[i] = NAN;
    for (size_t i = 0; i < cells; i++) r->layer_norms[i] = NAN;
    if (r->config.track_timesteps && r->config.model == MODEL_RNN) {
        r->n_timesteps = (int)r->config.seq_len;
        r->grad_norm_by_timestep = malloc((size_t)r->n_timesteps * sizeof(double));
        r->grad_norm_by_timestep_end = malloc((size_t)r->n_timesteps * sizeof(double));
        if (!r->grad_norm_by_timestep || !r->grad_norm_by_timestep_end) return false;
        for (int s = 0; s < r->n_timesteps; s++) r->grad_norm_by_timestep[s] = r->grad_norm_by_timestep_end[s] = NAN;
    }
    return true;
}

/* --guard: a guard that rolls the optimizer back with the state that is not trained (running
 * statistics: a refused step's forward pass moved them too). */
static bool start_guard(trainer *t) {
    const run_config *c = t->config;
    tg_guard_config config = tg_guard_defaults();
    if (c->guard_z > 0) config.z_threshold = c->guard_z;
    if (c->guard_factor > 0) config.lr_factor = c->guard_factor;
    if (c->guard_floor > 0) config.min_lr_scale = c->guard_floor;
    if (c->guard_grow) config.growth_interval = c->guard_grow;
    tg_tensor *buffers[MAX_PARAMS];
    int n_buffers = 0;
    for (int i = 0; i < t->n_state; i++) {
        bool trained = false;
        for (int k = 0; k < t->n_params && !trained; k++) trained = t->state[i] == t->params[k];
        if (!trained) buffers[n_buffers++] = t->state[i];
    }
    if (!(t->guard = tg_guard_new(t->ctx, &config)) ||
        tg_guard_attach(t->guard, t->opt, buffers, n_buffers) != TG_OK ||
        tg_guard_on_event(t->guard, c->guard_event, c->guard_user) != TG_OK)
        return trainer_fail(t, "guard");
    return true;
}

/* --load (--load-partial): the checkpoint into the model's state, what it left out said. */
static bool load_checkpoint(trainer *t) {
    const run_config *c = t->config;
    char note[RUN_ERROR_MAX];
    if (!checkpoint_load(t->ctx, c->load_path, t->state, t->n_state, c->load_partial,
                         t->result->error, sizeof t->result->error, note, sizeof note))
        return false;
    if (note[0]) fprintf(stderr, "tapegrad %s: warning: %s\n", c->command ? c->command : "train", note);
    return true;
}

/* --save: the model's state, the optimizer's, and the steps done (what --resume goes on from);
 * rank 0 writes, atomically. */
static bool save_checkpoint(trainer *t, int steps_done) {
    char steps[24];
    snprintf(steps, sizeof steps, "%d", steps_done);
    const char *meta[2] = {"tapegrad.steps", steps};
    if (!t->config->save_path || parallel_rank(t->par) != 0) return true;
    return tg_checkpoint_save_tensors(t->ctx, t->state, t->n_state, t->opt, meta, 1, t->config->save_path) == TG_OK ||
           trainer_fail(t, "save");
}

/* --resume: the model, the optimizer's state and the step of a --save checkpoint, on every rank
 * (each reads the file: the optimizer's state is not what parallel_ready broadcasts). */
static bool resume(trainer *t) {
    const run_config *c = t->config;
    char note[RUN_ERROR_MAX], steps[24], *end;
    if (!checkpoint_load(t->ctx, c->resume_path, t->state, t->n_state, false, t->result->error,
                         sizeof t->result->error, note, sizeof note))
        return false;
    if (tg_checkpoint_load_optimizer(t->opt, c->resume_path) != TG_OK ||
        tg_safetensors_metadata(t->ctx, c->resume_path, "tapegrad.steps", steps, sizeof steps) != TG_OK)
        return trainer_fail(t, "--resume");
    long done = strtol(steps, &end, 10);
    if (end == steps || *end || done < 1 || done >= c->steps) {
        snprintf(t->result->error, sizeof t->result->error, "--resume %s: the checkpoint is at step %s, "
                 "--steps %d leaves nothing to go on with (--steps is the run's total)", c->resume_path, steps,
                 c->steps);
        return false;
    }
    t->result->first_step = (int)done;
    return true;
}

/* The batches (and their augmentation's draws) of the steps a resumed run already took: the
 * run goes on with the data an unstopped run would see. */
static bool skip_batches(trainer *t, int steps) {
    tg_tensor *x, *y;
    for (int s = 0; s < steps; s++) {
        tg_tape_reset(t->tape);
        if (!tg_batcher_next(t->batches, t->tape, &x, &y) && !tg_batcher_next(t->batches, t->tape, &x, &y))
            return trainer_fail(t, "--resume");
        if (t->augment && tg_augment_apply(t->augment, x) != TG_OK) return trainer_fail(t, "--resume");
    }
    return true;
}

static bool prepare(trainer *t) {
    const run_config *c = t->config;
    if (!(t->ctx = tg_ctx_new()) || !(t->tape = tg_tape_new(t->ctx))) {
        snprintf(t->result->error, sizeof t->result->error, "out of memory");
        return false;
    }
    tg_set_anomaly_level(t->ctx, c->anomaly ? TG_ANOMALY_FULL : c->anomaly_counts ? TG_ANOMALY_COUNTS : TG_ANOMALY_OFF);
    if (c->anomaly_dump && tg_set_anomaly_dump(t->ctx, c->anomaly_dump) != TG_OK) return trainer_fail(t, "anomaly dump");
    tg_ctx_set_threads(t->ctx, c->threads);
    if (c->distributed && !(t->par = parallel_start(t->ctx, c))) return trainer_fail(t, "mpi");
    for (int i = 0; i < c->n_plugins; i++)
        if (tg_plugin_load(t->ctx, c->plugins[i]) != TG_OK) return trainer_fail(t, "plugin");
    if (!trainer_load_data(t) || !build_model(t)) return false;
    for (int i = 0; i < c->n_hooks && i < 16; i++)
        if (attach_hook(t->ctx, c->hooks[i], &t->hooks[i]) != TG_OK) return trainer_fail(t, "hook");
    /* under mpirun rank 0 reads the checkpoint, and parallel_ready broadcasts it */
    if (c->load_path && parallel_rank(t->par) == 0 && !load_checkpoint(t)) return false;
    t->opt = tg_optimizer_new(t->ctx, t->params, t->n_params, &c->opt);
    t->recorder = tg_recorder_new(t->ctx, c->steps > 0 ? c->steps : 1);
    if (!t->opt || !t->recorder) return trainer_fail(t, "setup");
    if (c->schedule_text && tg_optimizer_set_schedule(t->opt, &c->schedule) != TG_OK) return trainer_fail(t, "--schedule");
    if (c->resume_path && (!resume(t) || !skip_batches(t, t->result->first_step))) return false;
    if (c->guard && !start_guard(t)) return false;
    if (c->steps < 0 || (c->steps == 0 && !c->load_path)) {
        snprintf(t->result->error, sizeof t->result->error, "steps must be at least 1 (0: evaluate a loaded model)");
        return false;
    }
    if (c->model == MODEL_RNN && (c->seq_len < 1 || c->seq_len > 1024)) {
        snprintf(t->result->error, sizeof t->result->error, "sequence length must be 1..1024");
        return false;
    }
    /* dead ReLUs and saturated activations, for the findings: one pass over each activation
     * a step, about what the activation itself costs */
    if (tg_recorder_attach_activations(t->recorder, 1) < 0) return trainer_fail(t, "setup");
    /* --steps 0 (evaluate only): series of one NaN, so no array is empty */
    return allocate_series(t->result, c->steps > 0 ? c->steps : 1) ? true : trainer_fail(t, "memory");
}

/* The histograms of the first, middle and last tracked layer. */
static void keep_histograms(trainer *t) {
    run_result *r = t->result;
    if (!r->n_layers || !(r->histograms = malloc(HIST_LAYERS * TG_HIST_SNAPSHOTS * sizeof *r->histograms)))
        return;
    const int picks[HIST_LAYERS] = {0, r->n_layers / 2, r->n_layers - 1};
    for (int k = 0; k < HIST_LAYERS; k++) {
        if (k && picks[k] == r->hist_layer[r->n_hist_layers - 1]) continue;
        int index = -1;
        for (int i = 0; i < tg_recorder_series_count(t->recorder); i++)
            if (strcmp(tg_recorder_series_name(t->recorder, i), r->layer_names[picks[k]]) == 0) index = i;
        int h = r->n_hist_layers++;
        r->hist_layer[h] = picks[k];
        r->n_hist[h] = tg_recorder_histograms(t->recorder, index, r->histograms + h * TG_HIST_SNAPSHOTS,
                                              TG_HIST_SNAPSHOTS);
    }
}

static void conclude(trainer *t) {
    run_result *r = t->result;
    if (t->guard) tg_guard_get_stats(t->guard, &r->guard);
    keep_histograms(t);
    keep_instruments(t);
    tg_onset_report report;
    tg_recorder_detect(t->recorder, NULL, &report);
    r->explosion_onset_step = report.exploded ? report.explosion_start_step
                              : report.loss_exploded ? report.loss_explosion_start_step : -1;
    r->first_nan_step = report.has_nan ? report.first_nan_step : -1;
    for (int s = r->first_step; s < r->steps_done && r->first_nan_step < 0; s++) /* a NaN loss counts too */
        if (!isfinite(r->loss[s])) r->first_nan_step = s;
    snprintf(r->onset_summary, sizeof r->onset_summary, "%s", report.summary);
    r->n_findings = report.n_findings;
    memcpy(r->findings, report.findings, (size_t)report.n_findings * sizeof *report.findings);
    double first = r->grad_norm_by_layer[0], last = r->grad_norm_by_layer[r->n_layers - 1];
    r->first_last_ratio = r->n_layers > 1 && last > 0 ? first / last : NAN;
    if (!r->n_evals || r->eval_step[r->n_evals - 1] != r->steps_done) /* --epochs: done */
        trainer_evaluate(t, r->steps_done);
    if (t->config->train_subset > 0) trainer_measure(t, t->train, &r->train_loss, &r->train_accuracy);
    r->weight_norm = weight_norm(t);
    for (int i = 0; i < t->n_params; i++) r->n_param_elements += t->params[i]->size;
    r->classes = t->train->classes > 0 ? t->train->classes : 0;
    save_checkpoint(t, r->steps_done);
}

static void release(trainer *t) {
    free(t->kept_state);
    tg_guard_free(t->guard);
    tg_recorder_free(t->recorder);
    tg_optimizer_free(t->opt);
    tg_module_free(t->body);
    tg_module_free(t->head);
    free(t->states);
    tg_batcher_free(t->batches);
    tg_augment_free(t->augment);
    tg_dataset_free(t->train);
    tg_dataset_free(t->test);
    tg_tape_free(t->tape);
    parallel_end(t->par);
    tg_ctx_free(t->ctx);
}

void run_training(const run_config *config, run_result *result, progress_fn progress, void *user) {
    memset(result, 0, sizeof *result);
    result->config = *config;
    result->first_last_ratio = result->final_loss = result->test_accuracy = NAN;
    result->train_loss = result->train_accuracy = result->weight_norm = NAN;
    result->explosion_onset_step = result->first_nan_step = -1;
    result->guard.first_skipped_step = result->guard.last_skipped_step = -1;
    result->lr_first = result->lr_peak = result->lr_last = NAN;
    trainer t = {.config = &result->config, .result = result};
    double start = seconds_now();
    bool ready = prepare(&t);
    if (t.par) /* collective: every rank set up, or all stop */
        ready = parallel_ready(t.par, ready, config, t.train, t.test, t.state, t.n_state, t.params,
                               t.n_params, result->error, sizeof result->error);
    if (t.par && !ready && result->error[0]) {
        /* said now, before the ranks finalise together: a rank that exits first makes mpirun end
         * the others, which could otherwise be cut off before their own message */
        fprintf(stderr, "tapegrad train (rank %d): %s\n", parallel_rank(t.par), result->error);
        fflush(stderr);
        result->error_printed = true;
    }
    if (ready) {
        if (evaluation_due(config, 0)) trainer_evaluate(&t, 0);
        double epoch_start = seconds_now(), epoch_cpu_start = cpu_seconds_now();
        for (int step = result->first_step; step < config->steps && train_step(&t, step); step++) {
            if (config->save_every > 0 && (step + 1) % config->save_every == 0 && step < config->steps - 1 &&
                !save_checkpoint(&t, step + 1))
                break;
            if (progress && (step % 10 == 9 || step == config->steps - 1)) progress(user, step + 1, result->loss[step]);
            if (epoch_ends(config, step + 1)) end_epoch(&t, step + 1, &epoch_start, &epoch_cpu_start);
            else if (step < config->steps - 1 && evaluation_due(config, step + 1)) trainer_evaluate(&t, step + 1);
        }
        if (!result->error[0] || result->anomaly_stopped) conclude(&t);
    }
    result->seconds = seconds_now() - start;
    release(&t);
}

int list_model_state(const run_config *config, FILE *out, char *why, size_t size) {
    run_result *result = calloc(1, sizeof *result);
    if (!result) {
        snprintf(why, size, "out of memory");
        return 1;
    }
    trainer t = {.config = config, .result = result};
    bool ok = (t.ctx = tg_ctx_new()) != NULL;
    for (int i = 0; ok && i < config->n_plugins; i++)
        ok = tg_plugin_load(t.ctx, config->plugins[i]) == TG_OK || trainer_fail(&t, "plugin");
    ok = ok && trainer_load_data(&t) && build_model(&t);
    /* --load: the shapes listed are the checkpoint's too (a mismatch is refused) */
    ok = ok && (!config->load_path || load_checkpoint(&t));
    /* a recurrent model is two modules: the recurrent body and its read-out */
    if (ok && tg_module_summary(t.body, out) != TG_OK) ok = trainer_fail(&t, "summary");
    if (ok && t.head && tg_module_summary(t.head, out) != TG_OK) ok = trainer_fail(&t, "summary");
    if (!ok) snprintf(why, size, "%s", result->error[0] ? result->error : "out of memory");
    release(&t);
    free(result);
    return !ok;
}

void run_result_free(run_result *r) {
    free(r->loss);
    free(r->grad_norm);
    free(r->layer_norms);
    free(r->grad_norm_by_timestep);
    free(r->grad_norm_by_timestep_end);
    free(r->histograms);
    free(r->metrics);
    r->histograms = NULL;
    r->metrics = NULL;
    r->n_metrics = 0;
    r->loss = r->grad_norm = r->layer_norms = r->grad_norm_by_timestep = r->grad_norm_by_timestep_end = NULL;
}
