/*
 * diagnostics/advice.c — what each verdict of the diagnostics suggests doing, in a sentence or
 * two, with the experiment of `tapegrad study` that shows the remedy at work:
 *   vanishing   a 20-layer sigmoid MLP gets ~1e-12 of its last layer's gradient at its first
 *               layer and does not learn; tanh with Xavier and ReLU with He init do;
 *   init        the same tanh net under N(0, 0.01^2), N(0, 1), Xavier and He: the scale of the
 *               weights decides whether the gradient vanishes, explodes or stays balanced;
 *   batchnorm   batch norm brings the sigmoid net's ratio many decades closer to 1;
 *   residual    identity skips carry the gradient through 50 layers;
 *   exploding   an 8-layer ReLU net at SGD lr 0.5, momentum 0.9 blows up, then overflows;
 *   clipping    the same run clipped by global norm stays finite and learns, and a clip by
 *               value does only when small against the gradient's sqrt(N) elements;
 *   recurrent   LSTM and GRU carry the gradient over 100 steps where a plain RNN does not.
 * The thresholds are the callers'; here is only what to say. Texts are cut to TG_FINDING_TEXT.
 */
#include "diagnostics/advice.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

void tgi_append(char *buf, size_t size, const char *fmt, ...) {
    size_t len = strnlen(buf, size);
    if (len + 1 >= size) return;
    va_list args;
    va_start(args, fmt);
    vsnprintf(buf + len, size - len, fmt, args);
    va_end(args);
}

tg_finding tgi_finding_new(tg_finding_kind kind, int64_t step, const char *subject) {
    tg_finding f;
    memset(&f, 0, sizeof f);
    f.kind = kind;
    f.problem = true;
    f.step = step;
    f.value = NAN;
    snprintf(f.subject, sizeof f.subject, "%s", subject ? subject : "");
    return f;
}

/* ---- onset: explosion, the first NaN, anomaly mode's stop --------------------------------- */

static const char *growth_of(const tg_onset_report *r, int g) {
    if (!r->growth_of_values[g]) return "gradient";
    return r->growth_is_param[g] ? "weights" : "values";
}

tg_finding tgi_finding_explosion(const tg_onset_report *r) {
    int64_t start = r->exploded ? r->explosion_start_step : r->loss_explosion_start_step;
    tg_finding f = tgi_finding_new(TG_FINDING_EXPLOSION, start, r->n_growth ? r->growth_name[0] : "");
    f.value = r->exploded ? r->explosion_growth : r->loss_growth;
    if (r->exploded)
        TGI_SAY(f.what, "the global gradient norm grew %.3gx between steps %lld and %lld",
                r->explosion_growth, (long long)r->explosion_start_step, (long long)r->explosion_step);
    if (r->loss_exploded)
        TGI_SAY(f.what, "%sthe loss grew %.3gx between steps %lld and %lld", r->exploded ? "; " : "",
                r->loss_growth, (long long)r->loss_explosion_start_step, (long long)r->loss_explosion_step);
    if (r->n_growth)
        TGI_SAY(f.what, "; '%s' took off first (its %s, %.3gx its baseline at step %lld)",
                r->growth_name[0], growth_of(r, 0), r->growth_ratio[0], (long long)r->growth_step[0]);
    /* Adam normalises its steps: its weights and loss run away while the gradient stays flat,
     * and a clipped gradient gives the same step */
    bool steps_too_large = (r->n_growth && r->growth_of_values[0] && r->growth_is_param[0]) ||
                           (r->loss_exploded && !r->exploded);
    if (steps_too_large)
        TGI_SAY(f.advice, "The weights ran away before their gradients did: the optimizer's steps "
                "are too large, as an adaptive optimizer's (Adam) are at a high learning rate, and "
                "clipping the gradient does not shorten them. Lower the learning rate (10x), or "
                "warm it up from a small value; see `tapegrad study exploding`.");
    else
        TGI_SAY(f.advice, "Lower the learning rate (`tapegrad study exploding`: an 8-layer ReLU "
                "net blows up like this at SGD lr 0.5, momentum 0.9), or clip the global gradient "
                "norm to about 1 (`tapegrad study clipping`: the same run stays finite and learns; "
                "a clip by value bounds each element, not the step). A step guard (tg_guard, "
                "`tapegrad train --guard`) refuses the steps that blow up.");
    return f;
}

tg_finding tgi_finding_nonfinite(const tg_onset_report *r) {
    tg_finding f = tgi_finding_new(TG_FINDING_NONFINITE, r->first_nan_step, r->first_nan_name);
    TGI_SAY(f.what, "the first NaN/Inf appeared at step %lld in '%s'", (long long)r->first_nan_step,
            r->first_nan_name);
    int64_t began = -1;
    if (r->exploded) began = r->explosion_start_step;
    if (r->loss_exploded && (began < 0 || r->loss_explosion_start_step < began))
        began = r->loss_explosion_start_step;
    if (began >= 0 && began <= r->first_nan_step) {
        f.value = (double)(r->first_nan_step - began);
        TGI_SAY(f.what, ", %lld steps after the blow-up began (step %lld)",
                (long long)(r->first_nan_step - began), (long long)began);
        TGI_SAY(f.advice, "It is the blow-up overflowing: the explosion's remedies apply (a lower "
                "learning rate; clipping the global norm, `tapegrad study clipping`), and a step "
                "guard (tg_guard, `tapegrad train --guard`) refuses non-finite steps instead of "
                "applying them.");
    } else {
        TGI_SAY(f.advice, "Nothing grew before it, so an op made it from finite values (a log or "
                "a division at 0, a sqrt of a negative, exp overflowing): anomaly mode "
                "(tg_set_anomaly_mode, `tapegrad train --anomaly`) names the op and the node.");
    }
    return f;
}

/* The op of an anomaly line, "log at 'probs' created NaN ...": what precedes " at '". */
static void anomaly_op(const char *line, char *op, size_t size) {
    const char *at = strstr(line, " at '");
    size_t n = at ? (size_t)(at - line) : 0;
    snprintf(op, size, "%.*s", (int)(n < size ? n : size - 1), line);
}

static bool op_is(const char *op, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (strcmp(op, names[i]) == 0) return true;
    return false;
}

tg_finding tgi_finding_anomaly(const tg_onset_report *r) {
    char op[TG_LABEL_MAX];
    anomaly_op(r->anomaly, op, sizeof op);
    tg_finding f = tgi_finding_new(TG_FINDING_ANOMALY, r->anomaly_step, op);
    TGI_SAY(f.what, "anomaly mode stopped step %lld: %s", (long long)r->anomaly_step, r->anomaly);
    static const char *const logs[] = {"log", "log_softmax", "cross_entropy", "nll_loss"};
    static const char *const roots[] = {"sqrt", "rsqrt", "pow"};
    static const char *const exps[] = {"exp", "softmax", "softplus"};
    if (!strstr(r->anomaly, " created "))
        TGI_SAY(f.advice, "'%s' received the value from an input that already held it: a parameter "
                "an earlier update made non-finite (lower the learning rate, clip the global norm; "
                "a guard refuses such steps), or the data itself: check the inputs.", op);
    else if (strcmp(op, "div") == 0)
        TGI_SAY(f.advice, "A division by 0: add a small epsilon to the denominator.");
    else if (op_is(op, logs, 4))
        TGI_SAY(f.advice, "A log at 0 (a probability that underflowed): compute on logits "
                "(log_softmax, the fused cross entropy) or clamp the input (log(x + 1e-8)).");
    else if (op_is(op, roots, 3))
        TGI_SAY(f.advice, "A root or power at 0 or below (the derivative of sqrt is Inf at 0): "
                "add a small epsilon inside it (sqrt(x + 1e-12)).");
    else if (op_is(op, exps, 3))
        TGI_SAY(f.advice, "exp overflowed (an input above ~88): subtract the maximum first, as "
                "softmax and log-sum-exp do, and find why its inputs grew (a lower learning rate).");
    else
        TGI_SAY(f.advice, "The values overflowed the float range (~3.4e38) in '%s': they had been "
                "growing. Lower the learning rate or clip the global gradient norm (`tapegrad study "
                "exploding`, `tapegrad study clipping`).", op[0] ? op : "the op");
    TGI_SAY(f.advice, " tg_set_anomaly_dump (`tapegrad train --anomaly-dump PATH`) saves the op's "
            "inputs to look at.");
    return f;
}

/* ---- vanishing ----------------------------------------------------------------------------- */

void tgi_vanishing_advice(tg_finding *f, const char *activation, bool over_time) {
    if (activation && strcmp(activation, "lstm_hidden") == 0)
        TGI_SAY(f->advice, "In an LSTM the cell state carries the gradient while the forget gate "
                "stays open: keep its bias at 1, a learning rate that keeps the gates out of "
                "saturation, and the global norm clipped (`tapegrad study recurrent`).");
    else if (over_time || (activation && strcmp(activation, "rnn_cell") == 0))
        TGI_SAY(f->advice, "Over the steps of an unrolled net the gradient decays through the "
                "recurrent weights and the tanh at every step: an LSTM or GRU carries it (`tapegrad "
                "study recurrent`), with the global norm clipped (to 1 there).");
    else if (activation && strcmp(activation, "sigmoid") == 0)
        TGI_SAY(f->advice, "With sigmoid (its derivative is at most 0.25 a layer): ReLU with He "
                "init, batch norm or residual connections fix this; see `tapegrad study vanishing` "
                "(and `batchnorm`, `residual`).");
    else if (activation && strcmp(activation, "tanh") == 0)
        TGI_SAY(f->advice, "With tanh the initial scale decides (`tapegrad study init`: Xavier keeps "
                "a 20-layer tanh net's gradient balanced, N(0, 0.01^2) lets it vanish); ReLU with "
                "He init, batch norm or residual connections fix it too (`tapegrad study "
                "vanishing`, `batchnorm`, `residual`).");
    else if (activation && strcmp(activation, "relu") == 0)
        TGI_SAY(f->advice, "With ReLU, He init keeps the gradient's scale layer after layer "
                "(`tapegrad study vanishing`, `init`); past that depth batch norm or residual "
                "connections carry it (`tapegrad study residual`). Dead units also pass nothing.");
    else
        TGI_SAY(f->advice, "A saturating activation (sigmoid, tanh) or too small an initial scale "
                "is the usual cause: ReLU with He init, batch norm or residual connections fix it; "
                "see `tapegrad study vanishing` (and `init`, `batchnorm`, `residual`).");
}

/* ---- verdicts made elsewhere: the guard, curvature, Jacobians, activations ---------------- */

#define FROZEN_MIN_CHECKED 10

tg_finding tg_advice_refused_step(tg_guard_verdict verdict, const tg_guard_stats *stats, double lr) {
    int64_t step = stats ? stats->last_skipped_step : -1;
    bool refused = verdict == TG_GUARD_SKIP_NONFINITE || verdict == TG_GUARD_SKIP_OUTLIER;
    bool frozen = stats && stats->checked >= FROZEN_MIN_CHECKED && 2 * stats->skipped > stats->checked;
    tg_finding f = tgi_finding_new(TG_FINDING_REFUSED_STEP, refused ? step : -1, "");
    char rate[64] = "";
    if (isfinite(lr) && lr > 0) snprintf(rate, sizeof rate, " (from %.3g to %.3g)", lr, lr / 10);
    if (frozen) {
        f.value = (double)stats->skipped / (double)stats->checked;
        TGI_SAY(f.what, "the guard refused %lld of %lld steps (%lld non-finite, %lld outliers): the "
                "run is frozen, not rescued", (long long)stats->skipped, (long long)stats->checked,
                (long long)stats->nonfinite, (long long)stats->outliers);
        TGI_SAY(f.advice, "A guard keeps the numbers finite, it does not make the step size work: "
                "lower the learning rate 10x%s, or clip the global gradient norm to about 1 "
                "(`tapegrad study clipping` keeps the study's exploding run learning).", rate);
        return f;
    }
    if (!refused) {
        f.problem = false;
        TGI_SAY(f.what, "the guard accepted the step");
        if (stats)
            TGI_SAY(f.what, " (%lld of %lld steps refused so far)", (long long)stats->skipped,
                    (long long)stats->checked);
        return f;
    }
    char so_far[96] = "", which[48] = "a step";
    if (step >= 0) snprintf(which, sizeof which, "step %lld", (long long)step);
    if (stats) snprintf(so_far, sizeof so_far, " (%lld of %lld steps refused so far)",
                        (long long)stats->skipped, (long long)stats->checked);
    if (verdict == TG_GUARD_SKIP_NONFINITE) {
        f.value = INFINITY;
        TGI_SAY(f.what, "%s refused: its loss or gradient norm is NaN/Inf%s", which, so_far);
        TGI_SAY(f.advice, "Lower the learning rate%s or clip the global gradient norm (`tapegrad "
                "study clipping`); anomaly mode (`tapegrad train --anomaly`) names the op that made "
                "the first NaN/Inf.", rate);
    } else {
        f.value = stats ? stats->last_z : NAN;
        TGI_SAY(f.what, "%s refused: its loss or gradient norm is %.3g robust deviations above the "
                "median of the accepted steps%s", which, f.value, so_far);
        TGI_SAY(f.advice, "One outlier is noise the guard absorbs; if they keep coming the learning "
                "rate is too large for the model: lower it%s, or clip the global gradient norm to "
                "about 1 (`tapegrad study clipping`; `tapegrad study exploding` shows the blow-up "
                "they announce).", rate);
    }
    return f;
}

tg_finding tg_advice_sharpness(double lr, double lambda_max) {
    tg_finding f = tgi_finding_new(TG_FINDING_SHARPNESS, -1, "");
    f.value = lr * lambda_max;
    if (!(lr >= 0) || isnan(lambda_max)) {
        f.problem = false;
        f.value = NAN;
        TGI_SAY(f.what, "lr x lambda_max not measured (lr %g, lambda_max %g)", lr, lambda_max);
        return f;
    }
    if (!(f.value > 2.0)) {
        f.problem = false;
        TGI_SAY(f.what, "lr x lambda_max = %.3g x %.3g = %.3g <= 2: %s", lr, lambda_max, f.value,
                f.value > 1.0 ? "stable, at the edge of stability (Cohen et al. 2021: full-batch "
                                "training raises the sharpness to 2/lr and stays there)"
                              : "stable along every direction of the loss");
        return f;
    }
    double bound = 2.0 / lambda_max;
    TGI_SAY(f.what, "lr x lambda_max = %.3g x %.3g = %.3g > 2: a gradient step overshoots along the "
            "sharpest direction of the loss and diverges there unless the sharpness falls "
            "(stable below lr = 2/lambda_max = %.3g)", lr, lambda_max, f.value, bound);
    TGI_SAY(f.advice, "Lower the learning rate below %.3g (%.3g leaves a margin), or warm it up "
            "from a small value; clipping the global gradient norm bounds the steps while the "
            "sharpness settles (`tapegrad study clipping`); see `tapegrad study exploding`.",
            bound, bound / 2);
    return f;
}

tg_finding tg_advice_isometry(double sigma_min, double sigma_max, double mean_sq) {
    tg_finding f = tgi_finding_new(TG_FINDING_ISOMETRY, -1, "");
    if (!(sigma_min >= 0) || !(sigma_max >= sigma_min)) {
        f.problem = false;
        TGI_SAY(f.what, "singular values not measured (sigma_min %g, sigma_max %g)", sigma_min, sigma_max);
        return f;
    }
    f.value = sigma_min > 0 ? sigma_max / sigma_min : INFINITY;
    bool shrinks = mean_sq < 0.1, grows = mean_sq > 10.0, spread = f.value > 100.0;
    TGI_SAY(f.what, "the Jacobian's singular values span %.3g to %.3g (%.3gx)", sigma_min, sigma_max, f.value);
    if (!isnan(mean_sq)) TGI_SAY(f.what, ", mean square %.3g", mean_sq);
    f.problem = shrinks || grows || spread;
    if (!f.problem) {
        TGI_SAY(f.what, ": close to isometry, gradients pass through at about their size");
        return f;
    }
    if (shrinks)
        TGI_SAY(f.what, ": gradients shrink through it, by %.2g on average", sqrt(mean_sq));
    else if (grows)
        TGI_SAY(f.what, ": gradients grow through it, by %.2g on average", sqrt(mean_sq));
    else
        TGI_SAY(f.what, ": some directions get %.3gx the gradient of others", f.value);
    if (shrinks)
        TGI_SAY(f.advice, "The weights are too small for the depth: Xavier init for tanh and "
                "sigmoid, He for ReLU (`tapegrad study init`: N(0, 0.01^2) weights let a 20-layer "
                "tanh net's gradient vanish); ");
    else if (grows)
        TGI_SAY(f.advice, "The weights are too large for the depth: Xavier init for tanh and "
                "sigmoid, He for ReLU (`tapegrad study init`: N(0, 1) weights blow the first "
                "layers' gradient up and the net does not learn); ");
    TGI_SAY(f.advice, "orthogonal init brings every singular value of a tanh or linear net to 1 "
            "(dynamical isometry: Saxe et al. 2014, Pennington et al. 2017); batch norm and "
            "residual connections narrow the spread (`tapegrad study batchnorm`, `residual`).");
    return f;
}

static double limit_of(double given) {
    return given > 0.0 && given <= 1.0 ? given : INFINITY; /* outside (0, 1]: never */
}

static tg_finding dead_relu(const char *name, double dead, double limit) {
    tg_finding f = tgi_finding_new(TG_FINDING_DEAD_RELU, -1, name);
    f.value = dead;
    f.problem = dead >= limit;
    TGI_SAY(f.what, "%.0f%% of the units of '%s' are 0 for every sample of the batch (dead ReLUs)",
            100 * dead, name);
    if (f.problem)
        TGI_SAY(f.advice, "A dead unit gets no gradient and does not come back: lower the learning "
                "rate (large steps push units below 0 for good) and use He init; a leaky ReLU, ELU "
                "or GELU keeps a gradient below 0 (`tapegrad train --activation leaky_relu`), and "
                "batch norm before the ReLU recentres its inputs (`tapegrad study batchnorm`).");
    return f;
}

static tg_finding saturation(const char *name, const char *op, double saturated, double limit) {
    tg_finding f = tgi_finding_new(TG_FINDING_SATURATION, -1, name);
    bool sigmoid = op && strcmp(op, "sigmoid") == 0, rnn = op && strcmp(op, "rnn_cell") == 0;
    bool tanh_like = op && (strcmp(op, "tanh") == 0 || rnn);
    f.value = saturated;
    f.problem = saturated >= limit;
    TGI_SAY(f.what, "%.0f%% of the values of '%s' (%s) are within 0.01 of %s, where its derivative "
            "is below %s", 100 * saturated, name, rnn ? "tanh" : op ? op : "sigmoid or tanh",
            sigmoid ? "0 or 1" : tanh_like ? "-1 or 1" : "an asymptote",
            sigmoid ? "0.01" : tanh_like ? "0.02" : "0.02");
    if (!f.problem) return f;
    if (rnn)
        TGI_SAY(f.advice, "A saturated RNN passes almost no gradient back in time: an LSTM or GRU "
                "(`tapegrad study recurrent`), a smaller recurrent weight scale (orthogonal init), "
                "and a clipped global norm keep it out of saturation.");
    else
        TGI_SAY(f.advice, "Its inputs are too large: Xavier init (`tapegrad study init`: a tanh net "
                "with N(0, 1) weights saturates and does not learn, Xavier's trains), batch norm "
                "before the activation (`tapegrad study batchnorm`), a lower learning rate, or "
                "ReLU with He init (`tapegrad study vanishing`).");
    return f;
}

static tg_finding forget_gate(const char *name, double saturated, double closed, double limit) {
    tg_finding f = tgi_finding_new(TG_FINDING_FORGET_GATE, -1, name);
    bool shut = closed >= saturated - closed; /* most of the saturated values are near 0 */
    f.value = saturated;
    f.problem = saturated >= limit;
    TGI_SAY(f.what, "%.0f%% of the forget-gate values of '%s' are within 0.01 of 0 or 1 (%.0f%% "
            "near 0)", 100 * saturated, name, 100 * closed);
    if (!f.problem) return f;
    if (shut) {
        TGI_SAY(f.what, ": the cell state is erased at every step, so nothing is carried over time");
        TGI_SAY(f.advice, "Start the forget gate open: its bias at 1 (tg_rnn_defaults' forget_bias; "
                "Gers et al. 2000, Jozefowicz et al. 2015), and check the learning rate; `tapegrad "
                "study recurrent` shows an LSTM's gates learning to carry the gradient over 100 steps.");
    } else {
        TGI_SAY(f.what, ": the cell keeps everything, and the gate, whose derivative f(1 - f) is "
                "below 0.01, cannot learn to forget");
        TGI_SAY(f.advice, "If the task needs forgetting, lower the forget bias or the learning "
                "rate; the cell state can grow over a long sequence, so clip the global gradient "
                "norm as `tapegrad study recurrent` does (to 1).");
    }
    return f;
}

tg_finding tg_advice_activation(const char *name, const char *op, const tg_activation_stats *stats,
                                const tg_onset_opts *opts) {
    tg_onset_opts defaults = tg_onset_defaults();
    if (!opts) opts = &defaults;
    if (!name) name = "";
    double dead_limit = limit_of(opts->dead_fraction), saturated_limit = limit_of(opts->saturated_fraction);
    if (stats && stats->dead_fraction >= 0) return dead_relu(name, stats->dead_fraction, dead_limit);
    if (stats && stats->forget_saturated_fraction >= 0)
        return forget_gate(name, stats->forget_saturated_fraction,
                           stats->forget_closed_fraction >= 0 ? stats->forget_closed_fraction : 0.0,
                           saturated_limit);
    if (stats && stats->saturated_fraction >= 0)
        return saturation(name, op, stats->saturated_fraction, saturated_limit);
    tg_finding f = tgi_finding_new(TG_FINDING_SATURATION, -1, name);
    f.problem = false;
    TGI_SAY(f.what, "no activation statistics for '%s'%s", name,
            stats ? " (not a relu, sigmoid, tanh, RNN or LSTM node)" : "");
    return f;
}
