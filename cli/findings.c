/*
 * cli/findings.c — what each experiment shows, in plain words, computed from its own numbers:
 * the text changes when the numbers do.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli/isometry.h"
#include "cli/lm_study.h"
#include "cli/sharpness.h"
#include "cli/study.h"

void say(writer *w, const char *fmt, ...) {
    if (w->len >= w->size) return;
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(w->buf + w->len, w->size - w->len, fmt, args);
    va_end(args);
    if (n > 0) w->len += (size_t)n;
}

static const char *num(double v, char *buf) {
    return format_number(v, buf, 32);
}

/* How far a ratio is from 1, in decades. */
static double decades_from_one(double ratio) {
    return isfinite(ratio) && ratio > 0 ? fabs(log10(ratio)) : INFINITY;
}

static void describe_outcome(writer *w, const run_result *r) {
    char a[32], b[32];
    if (r->error[0]) say(w, "the run failed (%s)", r->error);
    else if (r->first_nan_step >= 0) say(w, "hit NaN at step %lld", (long long)r->first_nan_step);
    else if (isfinite(r->test_accuracy))
        say(w, "test accuracy %s%%, held-out loss %s", num(100 * r->test_accuracy, a), num(r->final_loss, b));
    else say(w, "held-out loss %s", num(r->final_loss, a));
}

static double first_layer_norm(const run_result *r) {
    return r->n_layers ? r->grad_norm_by_layer[0] : NAN;
}

/* What the first-step gradients say about a run, in a few words. */
static const char *gradient_verdict(const run_result *r) {
    double ratio = r->first_last_ratio;
    if (first_layer_norm(r) < 1e-8 && ratio >= 1e-3) return "every layer gets almost nothing: the signal died in the forward pass";
    if (ratio < 1e-3) return "vanishing: the first layers have all but stopped learning";
    if (ratio > 1e3) return "exploding towards the input: the first layers get the largest updates";
    if (ratio >= 0.1 && ratio <= 10) return "balanced";
    return "uneven";
}

static bool learned(const run_result *r) {
    return !r->error[0] && r->first_nan_step < 0 && isfinite(r->test_accuracy) && r->test_accuracy > 0.5;
}

/* One line per run: its first-step gradients and how it ended. */
static void run_lines(experiment *e, writer *w) {
    char a[32], b[32];
    for (int i = 0; i < e->n_runs; i++) {
        const run_result *r = &e->results[i];
        say(w, "\n%s: first-layer gradient norm %s, %s of the last layer's (%s); ", r->config.name,
            num(first_layer_norm(r), a), num(r->first_last_ratio, b), gradient_verdict(r));
        describe_outcome(w, r);
        say(w, ".");
    }
}

/* Names of the runs that do (or do not) learn, joined with commas. */
static void list_runs(experiment *e, writer *w, bool learning) {
    int said = 0;
    for (int i = 0; i < e->n_runs; i++)
        if (learned(&e->results[i]) == learning) say(w, "%s%s", said++ ? "; " : "", e->results[i].config.name);
    if (!said) say(w, "none");
}

static void layers_finding(experiment *e, writer *w) {
    say(w, "Learn (test accuracy over 50%%): ");
    list_runs(e, w, true);
    say(w, ". Do not: ");
    list_runs(e, w, false);
    say(w, ". The first-step gradients tell why:");
    run_lines(e, w);
}

static void batchnorm_finding(experiment *e, writer *w) {
    const run_result *plain = &e->results[0], *bn = &e->results[1];
    double gain = decades_from_one(plain->first_last_ratio) - decades_from_one(bn->first_last_ratio);
    char a[32], b[32], c[32];
    say(w, "Batch norm moves the first/last gradient ratio from %s to %s: %.1f decades (about %sx) "
        "closer to 1, and the net %s.", num(plain->first_last_ratio, a), num(bn->first_last_ratio, b),
        gain, num(pow(10.0, gain), c), learned(bn) && !learned(plain) ? "learns where the plain one cannot" : "trains as shown");
    run_lines(e, w);
}

static double last_train_loss(const run_result *r) {
    double sum = 0;
    int n = 0;
    for (int s = r->steps_done - 1; s >= 0 && n < 10; s--, n++) sum += r->loss[s];
    return n ? sum / n : NAN;
}

static void residual_finding(experiment *e, writer *w) {
    const run_result *plain = &e->results[0], *res = &e->results[1];
    char a[32], b[32], c[32];
    say(w, "The residual net's first layer receives %sx the gradient norm of the plain net's "
        "(%s against %s).\n", num(first_layer_norm(res) / first_layer_norm(plain), a),
        num(first_layer_norm(res), b), num(first_layer_norm(plain), c));
    say(w, "After %d steps the training loss is %s for the residual net and %s for the plain "
        "one (the plain net's degradation).\n", res->steps_done, num(last_train_loss(res), a),
        num(last_train_loss(plain), b));
    if (e->n_runs > 2) {
        const run_result *relu = &e->results[2];
        say(w, "Without normalisation, a ReLU/He residual stack adds variance block after block: ");
        describe_outcome(w, relu);
        say(w, ", first/last ratio %s.", num(relu->first_last_ratio, a));
    }
}

/* A classifier that finished and does clearly better than chance on held-out data (at least twice
 * chance accuracy): what "finite" alone does not say. */
static bool above_chance(const run_result *r) {
    return !r->error[0] && r->first_nan_step < 0 && r->classes > 0 && isfinite(r->test_accuracy) &&
           r->test_accuracy >= 2.0 / r->classes;
}

/* For a run that finished: whether it learns, against chance. */
static void chance_verdict(writer *w, const run_result *r) {
    if (r->classes <= 0 || !isfinite(r->test_accuracy)) return;
    char a[32], b[32];
    say(w, ", test accuracy %s%% against %s%% by chance: %s", num(100 * r->test_accuracy, a),
        num(100.0 / r->classes, b), above_chance(r) ? "it learns" : "finite, but it does not learn");
}

/* Why a clip by value may keep a run finite and still not let it learn: it bounds each gradient
 * element, so the step's norm can reach value x sqrt(N), against the global-norm clip's bound. */
static void clip_bounds(experiment *e, writer *w) {
    char a[32], b[32], c[32];
    for (int i = 0; i < e->n_runs; i++) {
        const run_result *r = &e->results[i];
        if (r->config.clip_value <= 0 || r->n_param_elements <= 0) continue;
        double bound = r->config.clip_value * sqrt((double)r->n_param_elements);
        say(w, "\n%s bounds each of the %lld gradient elements, not the step: the clipped "
            "gradient's norm can reach %s x sqrt(%lld) = %s", r->config.name,
            (long long)r->n_param_elements, num(r->config.clip_value, a),
            (long long)r->n_param_elements, num(bound, b));
        for (int j = 0; j < e->n_runs; j++)
            if (e->results[j].config.clip_norm > 0) {
                say(w, " (%s: at most %s)", e->results[j].config.name, num(e->results[j].config.clip_norm, c));
                break;
            }
        say(w, "; %s.", above_chance(r) ? "the run learns" : "the run stays finite but does not learn");
    }
}

/* What the step guard did to a run: its rescues, the rate it ended at, and whether the run it
 * kept finite learned. */
static void guard_verdict(writer *w, const run_result *r) {
    char a[32], b[32];
    if (r->guard.rescues <= 0) {
        say(w, " The guard refused %lld steps and rescued none.", (long long)r->guard.skipped);
        return;
    }
    say(w, " The guard rescued the run %lld time%s (rolled back to a trusted step, the rate "
        "lowered; %lld step%s refused), ending at lr %s against %s", (long long)r->guard.rescues,
        r->guard.rescues == 1 ? "" : "s", (long long)r->guard.skipped, r->guard.skipped == 1 ? "" : "s",
        num(r->guard.lr, a), num(r->config.opt.lr, b));
    if (r->first_nan_step < 0 && above_chance(r))
        say(w, "; it finishes finite and learning.");
    else say(w, "; it did not rescue the run into learning.");
}

static void exploding_finding(experiment *e, writer *w) {
    for (int i = 0; i < e->n_runs; i++) {
        const run_result *r = &e->results[i];
        char a[32], b[32];
        say(w, "%s%s: ", i ? "\n" : "", r->config.name);
        if (r->explosion_onset_step >= 0)
            say(w, "the onset detector finds the blow-up starting at step %lld", (long long)r->explosion_onset_step);
        else say(w, "no explosion detected");
        if (r->first_nan_step >= 0) {
            say(w, "; the first NaN appears at step %lld", (long long)r->first_nan_step);
            if (r->explosion_onset_step >= 0)
                say(w, ", %lld steps after the onset", (long long)(r->first_nan_step - r->explosion_onset_step));
        } else {
            say(w, "; no NaN in %d steps, training loss from %s to %s", r->steps_done,
                num(r->loss[0], a), num(last_train_loss(r), b));
            chance_verdict(w, r);
        }
        say(w, ". The detector says: %s.", r->onset_summary);
        if (r->config.guard) guard_verdict(w, r);
    }
    clip_bounds(e, w);
}

/* "LSTM" from "LSTM, T=50" */
static void cell_name(const run_result *r, char *out, size_t size) {
    snprintf(out, size, "%.*s", (int)strcspn(r->config.name, ","), r->config.name);
}

static void ratios_over_time(experiment *e, writer *w, int64_t length, bool trained) {
    char a[32], cell[32];
    int said = 0;
    for (int i = 0; i < e->n_runs; i++) {
        const run_result *r = &e->results[i];
        const double *g = trained ? r->grad_norm_by_timestep_end : r->grad_norm_by_timestep;
        if (r->config.seq_len != length || !g) continue;
        cell_name(r, cell, sizeof cell);
        say(w, "%s%s (%s)", said++ ? ", " : "", num(g[0] / g[r->n_timesteps - 1], a), cell);
    }
}

/* The run of that cell, length and number of layers (0 and 1 alike); NULL when there is none. */
static const run_result *find_rnn(const experiment *e, tg_rnn_kind kind, int64_t length, int layers) {
    for (int i = 0; i < e->n_runs; i++) {
        const run_config *c = &e->results[i].config;
        int l = c->rnn_layers > 1 ? c->rnn_layers : 1;
        if (c->model == MODEL_RNN && c->rnn == kind && c->seq_len == length && l == layers &&
            e->results[i].grad_norm_by_timestep && !e->results[i].error[0])
            return &e->results[i];
    }
    return NULL;
}

/* |dL/dh[1]| / |dL/dh[T]| of the first layer, at the first step or after training. */
static double through_time(const run_result *r, bool trained) {
    const double *g = trained ? r->grad_norm_by_timestep_end : r->grad_norm_by_timestep;
    return g[0] / g[r->n_timesteps - 1];
}

/* Gated cells at initialisation against the plain RNN, and what the literature makes of it. */
static void gated_at_init(const experiment *e, writer *w) {
    const run_result *rnn = find_rnn(e, TG_RNN_TANH, 100, 1), *lstm = find_rnn(e, TG_RNN_LSTM, 100, 1),
                     *gru = find_rnn(e, TG_RNN_GRU, 100, 1);
    if (!rnn || !lstm || !gru) return;
    char a[32], b[32], c[32], d[32], f[32], g[32];
    double r0 = through_time(rnn, false), l0 = through_time(lstm, false), g0 = through_time(gru, false);
    double r1 = through_time(rnn, true), l1 = through_time(lstm, true), g1 = through_time(gru, true);
    bool vanish_more = l0 < r0 && g0 < r0, carry_more = l1 > r1 && g1 > r1;
    say(w, "\nAt initialisation (T=100) the gated cells' gradient vanishes over time %s the plain RNN's: "
        "h[1]/h[T] is %s (LSTM) and %s (GRU) against %s (RNN). After training it is %s and %s against %s.",
        vanish_more ? "more than" : "no more than", num(l0, a), num(g0, b), num(r0, c), num(l1, d), num(g1, f),
        num(r1, g));
    if (vanish_more && carry_more)
        say(w, " So gates are not easier to optimise only because they stop gradients vanishing, as "
            "often told: they start out vanishing more, and what they offer is a path training can open "
            "(the additive cell update, a forget gate that learns to stay near 1; Hochreiter & "
            "Schmidhuber 1997, Gers et al. 2000, Jozefowicz et al. 2015), which the RNN lacks.");
}

/* The first layer's h[1] in stacked LSTMs against the single layer's, at T=100. */
static void depth_through_layers(const experiment *e, writer *w) {
    const run_result *one = find_rnn(e, TG_RNN_LSTM, 100, 1);
    if (!one) return;
    char a[32], b[32], c[32];
    say(w, "\nStacked LSTMs at T=100: the gradient reaching the first layer's h[1] at the first step is "
        "%s with 1 layer (%s of its h[T])", num(one->grad_norm_by_timestep[0], a), num(through_time(one, false), b));
    double deepest = one->grad_norm_by_timestep[0];
    int most = 1;
    for (int layers = 2; layers <= TG_RNN_MAX_LAYERS; layers++) {
        const run_result *r = find_rnn(e, TG_RNN_LSTM, 100, layers);
        if (!r) continue;
        say(w, ", %s with %d layers (%s of its h[T]; MSE %s after %d steps)", num(r->grad_norm_by_timestep[0], a),
            layers, num(through_time(r, false), b), num(r->final_loss, c), r->steps_done);
        deepest = r->grad_norm_by_timestep[0];
        most = layers;
    }
    if (most == 1) {
        say(w, ".");
        return;
    }
    double factor = deepest / one->grad_norm_by_timestep[0];
    say(w, ": %d layers %s it %sx. ", most, factor < 1 ? "shrink" : "grow", num(factor < 1 ? 1 / factor : factor, a));
    if (factor < 0.5)
        say(w, "Depth in layers compounds depth in time: the bottom layer's gradient passes every layer "
            "above it (Pascanu et al. 2014 on deep RNNs), so stacking makes the earliest inputs harder "
            "to learn from, not easier.");
    else if (factor <= 2)
        say(w, "Depth in layers changes it little here: the bottom layer's h[T] hears the loss only "
            "through the layer above, but from every step of it, and the gates of each layer rescale "
            "what passes; the vanishing is over time, not over the layers.");
    else
        say(w, "Depth in layers grows it here: the loss reaches the bottom layer along many paths, "
            "through the layer above at every step.");
}

static void recurrent_finding(experiment *e, writer *w) {
    char a[32], cell[32];
    say(w, "With T=100, the gradient reaching h[1] is ");
    ratios_over_time(e, w, 100, false);
    say(w, " of the gradient reaching h[T] at the first step, and ");
    ratios_over_time(e, w, 100, true);
    say(w, " after training: the gates learn to carry it.\nAt T=50 (baseline MSE 0.167): ");
    int said = 0;
    for (int i = 0; i < e->n_runs; i++) {
        const run_result *r = &e->results[i];
        if (r->config.seq_len != 50) continue;
        cell_name(r, cell, sizeof cell);
        say(w, "%s%s reaches MSE %s%s", said++ ? ", " : "", cell, num(r->final_loss, a),
            r->final_loss < 0.05 ? " (solved)" : r->final_loss > 0.1 ? " (no better than predicting the mean)" : "");
    }
    say(w, " after %d steps.", e->n_runs ? e->results[0].config.steps : 0);
    gated_at_init(e, w);
    depth_through_layers(e, w);
}

/* The run of that model (ResNet: with or without skips) and depth; NULL when there is none. */
static const run_result *find_run(const experiment *e, model_kind model, bool skip, int depth) {
    for (int i = 0; i < e->n_runs; i++) {
        const run_config *c = &e->results[i].config;
        if (c->model == model && (model != MODEL_RESNET || (c->skip == skip && c->depth == depth)))
            return &e->results[i];
    }
    return NULL;
}

/* "worse than", "better than" or "about as well as": a deep run's final training loss against
 * a shallow one's (within 10%: as well). */
static const char *compared(double deep, double shallow) {
    if (!isfinite(deep)) return "worse (it diverged) than";
    if (deep > 1.1 * shallow + 1e-3) return "worse than";
    if (deep < 0.9 * shallow - 1e-3) return "better than";
    return "about as well as";
}

/* Shallow against deep twin of one kind: training loss at the end, held-out accuracy. */
static void depth_line(writer *w, const run_result *shallow, const run_result *deep, const char *kind) {
    char a[32], b[32], c[32], d[32];
    say(w, "the %d-layer %s net trains %s the %d-layer one (training loss over the last 10 steps "
        "%s against %s, test accuracy %s%% against %s%%)", deep->config.depth, kind,
        compared(last_train_loss(deep), last_train_loss(shallow)), shallow->config.depth,
        num(last_train_loss(deep), a), num(last_train_loss(shallow), b), num(100 * deep->test_accuracy, c),
        num(100 * shallow->test_accuracy, d));
}

static void cnn_finding(experiment *e, writer *w) {
    const run_result *plain[2] = {NULL, NULL}, *res[2] = {NULL, NULL};
    int shallow = 1 << 30, deep = 0;
    for (int i = 0; i < e->n_runs; i++)
        if (e->runs[i].model == MODEL_RESNET) {
            shallow = e->runs[i].depth < shallow ? e->runs[i].depth : shallow;
            deep = e->runs[i].depth > deep ? e->runs[i].depth : deep;
        }
    for (int k = 0; k < 2; k++) {
        plain[k] = find_run(e, MODEL_RESNET, false, k ? deep : shallow);
        res[k] = find_run(e, MODEL_RESNET, true, k ? deep : shallow);
    }
    char a[32], b[32];
    bool all_ran = true;
    for (int k = 0; k < 2; k++)
        all_ran = all_ran && plain[k] && res[k] && !plain[k]->error[0] && !res[k]->error[0];
    if (all_ran && deep > shallow) { /* a failed run speaks for itself in the lines below */
        say(w, "After %d steps, ", plain[1]->steps_done);
        depth_line(w, plain[0], plain[1], "plain");
        say(w, "; ");
        depth_line(w, res[0], res[1], "residual");
        /* the verdicts the sentences above state, not a closer comparison than they make */
        bool plain_degrades = strncmp(compared(last_train_loss(plain[1]), last_train_loss(plain[0])), "worse", 5) == 0;
        bool residual_gains = strncmp(compared(last_train_loss(res[1]), last_train_loss(res[0])), "better", 6) == 0;
        say(w, ". He et al. (2016) found the deeper plain net worse and the deeper residual net "
            "better: here the plain nets %s and the residual nets %s.", plain_degrades ? "agree" : "do not",
            residual_gains ? "agree" : "do not (in this budget)");
        say(w, "\nTraining loss over the last 10 steps by depth:");
        for (int skip = 0; skip < 2; skip++) {
            say(w, "%s %s", skip ? ";" : "", skip ? "residual" : "plain");
            int said = 0;
            for (int i = 0; i < e->n_runs; i++)
                if (e->runs[i].model == MODEL_RESNET && e->runs[i].skip == (bool)skip)
                    say(w, "%s %d layers %s", said++ ? "," : "", e->runs[i].depth, num(last_train_loss(&e->results[i]), a));
        }
        if (plain[0]->config.train_subset > 0) { /* the whole subset once more, in evaluation mode */
            say(w, ".\nOn the whole training subset (%lld images) at the end, in evaluation mode, the loss is",
                (long long)plain[0]->config.train_subset);
            for (int k = 0; k < 4; k++) {
                const run_result *r = k < 2 ? plain[k] : res[k - 2];
                say(w, "%s %s %d layers %s (%s%% right)", k ? "," : "", k < 2 ? "plain" : "residual", r->config.depth,
                    num(r->train_loss, a), num(100 * r->train_accuracy, b));
            }
        }
        say(w, ".\nAt the first step the first layer's weight gradient is %s of the last layer's in the "
            "%d-layer plain net and %s in its residual twin.", num(plain[1]->first_last_ratio, a), deep,
            num(res[1]->first_last_ratio, b));
    }
    const run_result *lenet = find_run(e, MODEL_LENET, false, 0), *mlp = find_run(e, MODEL_MLP, false, 0);
    if (lenet && mlp)
        say(w, "\nOn the same split and budget LeNet-5 reaches %s%% test accuracy, the MLP %s%%.",
            num(100 * lenet->test_accuracy, a), num(100 * mlp->test_accuracy, b));
    run_lines(e, w);
}

/* Held-out minus training: loss (positive: worse on unseen data) and accuracy points. */
static double loss_gap(const run_result *r) { return r->final_loss - r->train_loss; }
static double accuracy_gap(const run_result *r) { return 100 * (r->train_accuracy - r->test_accuracy); }

static void regularisation_finding(experiment *e, writer *w) {
    if (e->n_runs < 1 || e->results[0].error[0]) {
        run_lines(e, w);
        return;
    }
    const run_result *none = &e->results[0];
    char a[32], b[32], c[32], d[32], f[32], g[32], h[32];
    say(w, "On %d training samples the %d x %d MLP without regularisation reaches %s%% training accuracy "
        "and %s%% held out: a gap of %s points (loss %s against %s, a gap of %s).", REGULARISATION_SAMPLES,
        none->config.depth, REGULARISATION_WIDTH, num(100 * none->train_accuracy, a),
        num(100 * none->test_accuracy, b), num(accuracy_gap(none), c), num(none->train_loss, d),
        num(none->final_loss, f), num(loss_gap(none), g));
    const run_result *best = none;
    for (int i = 0; i < e->n_runs; i++) {
        const run_result *r = &e->results[i];
        if (r->error[0]) continue;
        if (i > 0)
            say(w, "\n%s: held-out accuracy %s%% (%s%s points against none), gap %s points, held-out loss "
                "%s (gap %s), weight norm %s against %s.", r->config.name, num(100 * r->test_accuracy, a),
                r->test_accuracy >= none->test_accuracy ? "+" : "", num(100 * (r->test_accuracy - none->test_accuracy), b),
                num(accuracy_gap(r), c), num(r->final_loss, d), num(loss_gap(r), f), num(r->weight_norm, g),
                num(none->weight_norm, h));
        if (r->test_accuracy > best->test_accuracy) best = r;
    }
    /* both gaps are counted: a remedy can narrow one and widen the other (dropout here once
     * narrowed the accuracy gap while its loss gap widened) */
    int narrower = 0, narrower_loss = 0, better = 0, remedies = 0;
    double smallest_gap = accuracy_gap(none);
    for (int i = 1; i < e->n_runs; i++) {
        const run_result *r = &e->results[i];
        if (r->error[0]) continue;
        remedies++;
        narrower += accuracy_gap(r) < accuracy_gap(none);
        narrower_loss += loss_gap(r) < loss_gap(none);
        better += r->test_accuracy > none->test_accuracy;
        smallest_gap = fmin(smallest_gap, accuracy_gap(r));
    }
    say(w, "\nBest held out: %s (%s%%). %d of %d remedies narrow the accuracy gap, %d the loss gap, "
        "and %d test better. ", best->config.name, num(100 * best->test_accuracy, a), narrower, remedies,
        narrower_loss, better);
    if (narrower == remedies && narrower_loss == remedies && better > 0) {
        say(w, "As the literature has it, weight decay (Krogh & Hertz 1992) and dropout (Srivastava et al. "
            "2014) trade training fit for held-out performance");
        if (smallest_gap > 1)
            say(w, "; but a gap of %s points at best stays, as Zhang et al. (2017) found: explicit "
                "regularisation helps but is neither necessary nor sufficient to generalise.", num(smallest_gap, b));
        else
            say(w, ", and here they all but close the gap.");
    } else {
        say(w, "Here the remedies do not all narrow both gaps (the literature's gains need the right "
            "strength and budget: Srivastava et al. 2014 trained far longer); the table shows each.");
    }
}

/* `tapegrad train`: one run, told on its own: how the loss moved, where it ended, what the
 * first step's gradients looked like, and what the onset detector saw. */
static void train_finding(experiment *e, writer *w) {
    const run_result *r = &e->results[0];
    bool mse = !isfinite(r->test_accuracy);
    char a[32], b[32], c[32];
    if (r->error[0] || r->steps_done == 0) {
        describe_outcome(w, r);
        return;
    }
    say(w, "The %s's training %s went from %s at the first step to %s over the last steps (%d steps); "
        "held-out %s %s", model_name(&r->config), mse ? "MSE" : "loss", num(r->loss[0], a),
        num(last_train_loss(r), b), r->steps_done, mse ? "MSE" : "loss", num(r->final_loss, c));
    if (!mse) say(w, ", test accuracy %s%%", num(100 * r->test_accuracy, a));
    say(w, ".");
    if (r->n_layers > 1)
        say(w, "\nAt the first step the first layer's gradient norm was %s, %s of the last layer's (%s).",
            num(first_layer_norm(r), a), num(r->first_last_ratio, b), gradient_verdict(r));
    say(w, "\nOnset detection: %s.", r->onset_summary[0] ? r->onset_summary : "nothing to report");
    for (int i = 0; i < r->n_findings; i++)
        say(w, "\nFinding: %s. What to try: %s", r->findings[i].what, r->findings[i].advice);
}

void experiment_conclude(experiment *e) {
    writer w = {e->finding, sizeof e->finding, 0};
    e->finding[0] = '\0';
    if (e->lm) lm_study_finding(e, e->finding, sizeof e->finding);
    else if (e->sharp) sharpness_finding(e, &w);
    else if (e->iso) isometry_finding(e, &w);
    else if (strcmp(e->name, "batchnorm") == 0) batchnorm_finding(e, &w);
    else if (strcmp(e->name, "residual") == 0) residual_finding(e, &w);
    else if (strcmp(e->name, "exploding") == 0 || strcmp(e->name, "clipping") == 0) exploding_finding(e, &w);
    else if (strcmp(e->name, "recurrent") == 0) recurrent_finding(e, &w);
    else if (strcmp(e->name, "cnn") == 0) cnn_finding(e, &w);
    else if (strcmp(e->name, "regularisation") == 0) regularisation_finding(e, &w);
    else if (strcmp(e->name, "train") == 0) train_finding(e, &w);
    else layers_finding(e, &w);
}
