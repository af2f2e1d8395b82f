/*
 * diagnostics/guard.c — the step guard: refuse an update whose loss or gradient norm is not
 * finite or an outlier against the accepted steps; with an optimizer attached, roll the run
 * back to a good state and lower the learning rate, and grow it back after clean steps.
 *
 * Median and MAD rather than mean and standard deviation: one spike inside the window would
 * inflate the standard deviation and hide the next one. The scale has floors (below) so that a
 * loss gone flat, or gone nearly to zero, does not turn every wobble into an outlier; in warm-up
 * the floor is the median itself, since a handful of steps gives no spread to trust but a
 * blow-up in the first steps (SGD at lr 50) must still be caught before it is taken as the norm.
 *
 * The defaults were chosen on the digits (tapegrad train): the study's exploding run (8 ReLU
 * layers, SGD lr 0.5, momentum 0.9) over ten seeds, SGD lr 50 over ten seeds, and ten healthy
 * configurations (MLPs, LeNet, an LSTM, AdamW at convergence), which must not be rescued more
 * than once or twice. Each choice below says which of those it answers.
 *
 * Judging and committing are apart so that ranks can agree on the verdict in between. Every
 * decision of the commit (roll back, lower or grow the rate, accept a new level, raise the
 * alarm) is a function of the committed history alone, so ranks that commit the same verdicts
 * on the same all-reduced numbers stay alike.
 */
#include "models/models.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAX_WINDOW 256
#define MAD_TO_SIGMA 1.4826
/* The robust scale's floors, as fractions: of the series' own |median| (the loss's; the gradient
 * norm's, which rises several-fold in healthy training as the loss leaves its first plateau and
 * so counts as an outlier only from about (1 + z_threshold / 2) times its median; anything's in
 * warm-up, when a handful of steps gives no spread to trust), and of the run's starting level. */
#define LOSS_FLOOR 0.01
#define NORM_FLOOR 0.5
#define WARMUP_FLOOR 1.0
#define START_LOSS_FLOOR 0.05
#define START_NORM_FLOOR 0.1
/* A collapse of the gradient norm counts while the loss is at least this much of its starting
 * level: a net that died, not one that has fit its data. */
#define FALL_GATE 0.5

typedef struct running_window {
    double values[MAX_WINDOW];
    int count, next;
} running_window;

/* One copy of what the guard restores: the optimizer's parameters and state, the buffers. */
typedef struct state_copy {
    float *floats;               /* the optimizer's part, then each buffer's */
    int64_t *steps;              /* the optimizer's per-parameter step counts */
} state_copy;

/* Two copies: `good`, a state that `trust` accepted steps followed, which a refusal restores,
 * and `fresh`, the state of the last copy, which becomes the good one once `trust` accepted
 * steps have followed it too. A blow-up can take a few steps to show (the loss rises by less
 * than the threshold for a step or two, and momentum carries the damage on): the state right
 * before the refused update may be inside it already. */
typedef struct snapshot {
    tg_optimizer *opt;
    tg_tensor **buffers;
    int n_buffers;
    int64_t n_floats, opt_floats;
    int n_steps;
    state_copy good, fresh;
    bool have_good, have_fresh;
    int since;                   /* accepted steps since the last copy */
    bool restored;               /* the live state is the good copy: no update since */
} snapshot;

struct tg_guard {
    tg_ctx *ctx;
    tg_guard_config config;
    running_window loss, norm;
    /* refused outliers in a row (the last settle - 1): a new level if they are steady */
    running_window streak_loss, streak_norm;
    double streak_scale;         /* the rate's scale before the streak's first refusal */
    double start_loss, start_norm; /* the medians of the first `warmup` accepted steps */
    bool started;                /* they are known */
    unsigned char recent[MAX_WINDOW]; /* 1: refused, for the alarm */
    int recent_next;
    snapshot snap;
    int64_t clean;               /* accepted steps since the last rescue or growth */
    tg_guard_event_fn on_event;
    void *user;
    tg_guard_stats stats;
    tgi_retired retired;         /* tg_guard_free */
};

tg_guard_config tg_guard_defaults(void) {
    tg_guard_config c = {6.0, 32, 4, 0.5, 1e-3, 50, 16, 4};
    return c;
}

/* A zero in the rescue fields means its default (a config of the first three fields alone). */
static tg_guard_config settled_config(const tg_guard_config *config) {
    tg_guard_config d = tg_guard_defaults(), c = config ? *config : d;
    if (c.lr_factor == 0.0) c.lr_factor = d.lr_factor;
    if (c.min_lr_scale == 0.0) c.min_lr_scale = d.min_lr_scale;
    if (c.growth_interval == 0) c.growth_interval = d.growth_interval;
    if (c.settle == 0) c.settle = d.settle < c.window ? d.settle : c.window;
    if (c.trust == 0) c.trust = d.trust;
    return c;
}

tg_guard *tg_guard_new(tg_ctx *ctx, const tg_guard_config *config) {
    if (!ctx) return NULL;
    tg_guard_config c = settled_config(config);
    if (c.window < 2 || c.window > MAX_WINDOW || c.warmup < 1 || c.warmup > c.window ||
        isnan(c.z_threshold)) {
        tgi_error(ctx, TG_ERR_INVALID, "guard: window %d (2..%d), warmup %d (1..window) and "
                  "z_threshold %g (a number)", c.window, MAX_WINDOW, c.warmup, c.z_threshold);
        return NULL;
    }
    if (!(c.lr_factor > 0.0 && c.lr_factor < 1.0) || !(c.min_lr_scale > 0.0 && c.min_lr_scale <= 1.0) ||
        (c.settle > 0 && (c.settle < 2 || c.settle > c.window)) || c.trust < 1 || c.trust > 1000) {
        tgi_error(ctx, TG_ERR_INVALID, "guard: lr_factor %g (in (0, 1)), min_lr_scale %g (in (0, 1]), "
                  "settle %d (2..window %d, or < 0: never) and trust %d (1..1000)", c.lr_factor,
                  c.min_lr_scale, c.settle, c.window, c.trust);
        return NULL;
    }
    tg_guard *g = tgi_alloc(ctx, sizeof *g);
    if (!g) {
        tgi_error(ctx, TG_ERR_NOMEM, "guard: out of memory");
        return NULL;
    }
    memset(g, 0, sizeof *g);
    g->ctx = ctx;
    g->config = c;
    g->stats.first_skipped_step = g->stats.last_skipped_step = -1;
    g->stats.last_z = g->stats.lr = NAN;
    g->stats.lr_scale = g->stats.lowest_lr_scale = g->streak_scale = 1.0;
    return g;
}

static void drop_snapshot(tg_guard *g) {
    snapshot *s = &g->snap;
    state_copy *copies[2] = {&s->good, &s->fresh};
    for (int k = 0; k < 2; k++) {
        tgi_free(g->ctx, copies[k]->floats, (size_t)s->n_floats * sizeof *copies[k]->floats);
        tgi_free(g->ctx, copies[k]->steps, (size_t)s->n_steps * sizeof *copies[k]->steps);
    }
    tgi_free(g->ctx, s->buffers, (size_t)s->n_buffers * sizeof *s->buffers);
    memset(s, 0, sizeof *s);
}

static bool allocate_copy(tg_guard *g, state_copy *c) {
    const snapshot *s = &g->snap;
    c->floats = s->n_floats ? tgi_alloc(g->ctx, (size_t)s->n_floats * sizeof *c->floats) : NULL;
    c->steps = tgi_alloc(g->ctx, (size_t)s->n_steps * sizeof *c->steps);
    return (c->floats || !s->n_floats) && c->steps;
}

void tg_guard_free(tg_guard *g) {
    if (!g || g->retired.freed) return;
    drop_snapshot(g);
    tgi_retire(g->ctx, &g->retired, g, sizeof *g);
}

tg_status tg_guard_attach(tg_guard *g, tg_optimizer *opt, tg_tensor *const *buffers, int n_buffers) {
    if (!g) return TG_ERR_INVALID;
    if (!opt) return tgi_error(g->ctx, TG_ERR_INVALID, "guard_attach: opt is NULL");
    if (tgi_optimizer_ctx(opt) != g->ctx)
        return tgi_error(g->ctx, TG_ERR_INVALID, "guard_attach: the optimizer belongs to another context");
    if (n_buffers < 0 || (n_buffers > 0 && !buffers))
        return tgi_error(g->ctx, TG_ERR_INVALID, "guard_attach: %d buffers%s", n_buffers,
                         n_buffers < 0 ? "" : " from a NULL array");
    int64_t buffer_floats = 0;
    for (int i = 0; i < n_buffers; i++) {
        const tg_tensor *b = buffers[i];
        if (!b || !b->persistent || b->ctx != g->ctx)
            return tgi_error(g->ctx, TG_ERR_INVALID, "guard_attach: buffer %d is %s", i,
                             !b ? "NULL" : !b->persistent ? "not a persistent tensor"
                                                          : "of another context");
        buffer_floats += b->size;
    }
    drop_snapshot(g);
    snapshot *s = &g->snap;
    s->opt_floats = tgi_optimizer_state_floats(opt);
    s->n_floats = s->opt_floats + buffer_floats;
    s->n_steps = tgi_optimizer_state_steps(opt);
    s->n_buffers = n_buffers;
    s->buffers = n_buffers ? tgi_alloc(g->ctx, (size_t)n_buffers * sizeof *s->buffers) : NULL;
    bool good = allocate_copy(g, &s->good), fresh = allocate_copy(g, &s->fresh);
    if (!good || !fresh || (n_buffers && !s->buffers)) {
        long long floats = (long long)s->n_floats;
        drop_snapshot(g);
        return tgi_error(g->ctx, TG_ERR_NOMEM, "guard_attach: out of memory for two copies of %lld "
                         "floats", floats);
    }
    if (n_buffers) memcpy(s->buffers, buffers, (size_t)n_buffers * sizeof *buffers);
    s->opt = opt;
    tgi_optimizer_set_lr_scale(opt, g->stats.lr_scale);
    g->stats.lr = tg_optimizer_lr(opt);
    return TG_OK;
}

tg_status tg_guard_on_event(tg_guard *g, tg_guard_event_fn fn, void *user) {
    if (!g) return TG_ERR_INVALID;
    g->on_event = fn;
    g->user = user;
    return TG_OK;
}

/* ---- the outlier test ---------------------------------------------------------------------- */

/* The k-th smallest of values[0..n) (reordered): a selection, so no sort and no allocation. */
static double select_kth(double *v, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        double pivot = v[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot) i++;
            while (v[j] > pivot) j--;
            if (i <= j) {
                double t = v[i];
                v[i++] = v[j];
                v[j--] = t;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else break;
    }
    return v[k];
}

static double median_of(double *values, int n) {
    double upper = select_kth(values, n, n / 2);
    if (n % 2) return upper;
    double lower = values[0]; /* after the selection the first n / 2 are the smaller half */
    for (int i = 1; i < n / 2; i++)
        if (values[i] > lower) lower = values[i];
    return 0.5 * (lower + upper);
}

/* The median and the robust scale (1.4826 MAD) of values[0..n), which stay as they are. */
static void centre_and_scale(const double *values, int n, double *median, double *scale) {
    double work[MAX_WINDOW];
    memcpy(work, values, (size_t)n * sizeof *work);
    *median = median_of(work, n);
    for (int i = 0; i < n; i++) work[i] = fabs(values[i] - *median);
    *scale = MAD_TO_SIGMA * median_of(work, n);
}

/* How far above the window's median x is, in robust standard deviations (0 below it); *ratio
 * gets x over the median. The scale has floors: a fraction of |median| (the series' own), and
 * one of the run's starting level, so that a run that has fit its data, whose losses are tiny
 * and heavy-tailed (one misclassified sample multiplies a batch's loss), is judged by how far
 * it strays toward where it started, not by multiples of nearly nothing. */
static double z_score(const tg_guard *g, const running_window *w, bool is_norm, double x, double *ratio) {
    double median, scale;
    centre_and_scale(w->values, w->count, &median, &scale);
    double floor;
    if (w->count < g->config.warmup) floor = WARMUP_FLOOR * fabs(median);
    else {
        double own = (is_norm ? NORM_FLOOR : LOSS_FLOOR) * fabs(median);
        double start = (is_norm ? START_NORM_FLOOR * g->start_norm : START_LOSS_FLOOR * fabs(g->start_loss));
        floor = own > start ? own : start;
    }
    if (scale < floor) scale = floor;
    if (!(scale > 0.0)) scale = 1e-30;
    *ratio = median != 0.0 ? x / median : INFINITY;
    return x > median ? (x - median) / scale : 0.0;
}

/* What the test says of a finite step: the score, which series gave more of it, and each
 * value over its window's median. */
typedef struct finding {
    double z, loss_ratio, norm_ratio;
    bool by_norm;
} finding;

/* The score adds the two rises: a step that overshoots raises the loss and the gradient norm
 * together, each perhaps by less than the threshold (the first steps of a blow-up), while
 * healthy training raises one at a time (the norm grows as the loss leaves a plateau). A norm
 * that collapses is as suspect as one that soars: a step too large can kill a ReLU net's units
 * wholesale, which leaves a small gradient and a loss at chance level that no rise reveals.
 * Its score mirrors the rise's, 2 (median / norm - 1), so z_threshold 6 refuses a norm fallen
 * to a quarter of its median as it refuses one risen fourfold; judged after warm-up only (the
 * first steps' norms fall as they may). */
static finding examine(const tg_guard *g, double loss, double grad_norm) {
    finding f = {NAN, NAN, NAN, false};
    if (g->loss.count < 1 || g->config.z_threshold <= 0.0) return f;
    double z_loss = z_score(g, &g->loss, false, loss, &f.loss_ratio);
    double z_norm = z_score(g, &g->norm, true, grad_norm, &f.norm_ratio);
    f.by_norm = z_norm > z_loss;
    f.z = z_loss + z_norm;
    if (g->norm.count >= g->config.warmup && f.norm_ratio < 1.0 && loss >= FALL_GATE * g->start_loss) {
        double z_fall = f.norm_ratio > 0.0 ? 2.0 * (1.0 / f.norm_ratio - 1.0) : INFINITY;
        if (z_fall > f.z) {
            f.z = z_fall;
            f.by_norm = true;
        }
    }
    return f;
}

static bool is_outlier(const tg_guard *g, finding f) {
    return f.z > g->config.z_threshold;
}

/* values[0..n) has no outlier among themselves: none above their own median by the threshold. */
static bool steady(const tg_guard *g, const double *values, int n, double floor_fraction) {
    double median, scale;
    centre_and_scale(values, n, &median, &scale);
    if (scale < floor_fraction * fabs(median)) scale = floor_fraction * fabs(median);
    if (!(scale > 0.0)) scale = 1e-30;
    for (int i = 0; i < n; i++)
        if ((values[i] - median) / scale > g->config.z_threshold) return false;
    return true;
}

static void remember(running_window *w, int window, double x) {
    w->values[w->next] = x;
    w->next = (w->next + 1) % window;
    if (w->count < window) w->count++;
}

/* Into the window; the medians of the first `warmup` steps in it are the run's starting level. */
static void enter_window(tg_guard *g, double loss, double grad_norm) {
    remember(&g->loss, g->config.window, loss);
    remember(&g->norm, g->config.window, grad_norm);
    if (!g->started && g->loss.count == g->config.warmup) {
        double scale;
        centre_and_scale(g->loss.values, g->loss.count, &g->start_loss, &scale);
        centre_and_scale(g->norm.values, g->norm.count, &g->start_norm, &scale);
        g->started = true;
    }
}

/* The outliers in a row, and this one, would be `settle` of them, steady: a new level. */
static bool settles(const tg_guard *g, double loss, double grad_norm) {
    int n = g->config.settle - 1;
    if (g->config.settle < 2 || g->streak_loss.count < n) return false;
    double losses[MAX_WINDOW], norms[MAX_WINDOW];
    memcpy(losses, g->streak_loss.values, (size_t)n * sizeof *losses);
    memcpy(norms, g->streak_norm.values, (size_t)n * sizeof *norms);
    losses[n] = loss;
    norms[n] = grad_norm;
    return steady(g, losses, n + 1, LOSS_FLOOR) && steady(g, norms, n + 1, NORM_FLOOR);
}

tg_guard_verdict tg_guard_judge(tg_guard *g, double loss, double grad_norm) {
    if (!g) return TG_GUARD_ACCEPT;
    g->stats.last_z = NAN;
    if (!isfinite(loss) || !isfinite(grad_norm)) return TG_GUARD_SKIP_NONFINITE;
    finding f = examine(g, loss, grad_norm);
    g->stats.last_z = f.z;
    if (is_outlier(g, f) && !settles(g, loss, grad_norm)) return TG_GUARD_SKIP_OUTLIER;
    return TG_GUARD_ACCEPT;
}

/* ---- the commit: count, roll back or copy, move the rate, tell ----------------------------- */

static void copy_state(snapshot *s, state_copy *c, bool save) {
    if (save) tgi_optimizer_save(s->opt, c->floats, c->steps);
    else tgi_optimizer_load(s->opt, c->floats, c->steps);
    float *at = c->floats + s->opt_floats;
    for (int i = 0; i < s->n_buffers; i++) {
        tg_tensor *b = s->buffers[i];
        if (save) memcpy(at, b->data, (size_t)b->size * sizeof *at);
        else memcpy(b->data, at, (size_t)b->size * sizeof *at);
        at += b->size;
    }
}

/* An accepted step, attached: the first accepted state is good (the run starts from it); then
 * every `trust` accepted steps the fresh copy, followed by that many, becomes the good one and
 * the state now is copied as the fresh one. */
static void keep_state(tg_guard *g) {
    snapshot *s = &g->snap;
    s->restored = false;
    if (!s->have_good) {
        copy_state(s, &s->good, true);
        s->have_good = true;
        s->since = 0;
        return;
    }
    if (++s->since < g->config.trust) return;
    if (s->have_fresh) {
        state_copy t = s->good;
        s->good = s->fresh;
        s->fresh = t;
    }
    copy_state(s, &s->fresh, true);
    s->have_fresh = true;
    s->since = 0;
}

static void emit(tg_guard *g, tg_guard_event *e, tg_guard_event_kind kind) {
    if (!g->on_event) return;
    e->kind = kind;
    e->recent_refused = g->stats.recent_refused;
    e->recent_checked = g->stats.recent_checked;
    g->on_event(e, g->user);
}

static void count_refusal(tg_guard *g, int64_t step, tg_guard_verdict why) {
    tg_guard_stats *s = &g->stats;
    s->skipped++;
    if (why == TG_GUARD_SKIP_NONFINITE) s->nonfinite++;
    else s->outliers++;
    if (s->first_skipped_step < 0) s->first_skipped_step = step;
    s->last_skipped_step = step;
}

static void forget_streak(tg_guard *g) {
    g->streak_loss.count = g->streak_loss.next = 0;
    g->streak_norm.count = g->streak_norm.next = 0;
}

/* A refused step: into the streak when it is a finite outlier; attached, back to the last good
 * state, and the rate lowered when an update was taken since. True: a rescue. */
static bool refuse(tg_guard *g, int64_t step, double loss, double grad_norm, tg_guard_verdict verdict) {
    count_refusal(g, step, verdict);
    g->clean = 0;
    /* an outlier agreed over the ranks may carry numbers this rank never saw finite */
    bool outlier = verdict == TG_GUARD_SKIP_OUTLIER && isfinite(loss) && isfinite(grad_norm);
    if (outlier && g->config.settle >= 2) {
        if (!g->streak_loss.count) g->streak_scale = g->stats.lr_scale;
        remember(&g->streak_loss, g->config.settle - 1, loss);
        remember(&g->streak_norm, g->config.settle - 1, grad_norm);
    } else forget_streak(g);
    snapshot *s = &g->snap;
    if (!s->opt) return false;
    tg_optimizer_zero_grad(s->opt);
    if (!s->have_good) return false;
    /* the state is the good one restored: what it gives now is its level, which the window
     * must follow (a baseline left behind as the run found its feet would refuse it forever) */
    if (s->restored && outlier) enter_window(g, loss, grad_norm);
    copy_state(s, &s->good, false);
    /* the fresh copy is younger than the good one: it may hold the start of the trouble */
    s->have_fresh = false;
    s->since = 0;
    bool rescue = !s->restored;
    s->restored = true;
    if (rescue) {
        double scale = g->stats.lr_scale * g->config.lr_factor;
        g->stats.lr_scale = scale > g->config.min_lr_scale ? scale : g->config.min_lr_scale;
        if (g->stats.lr_scale < g->stats.lowest_lr_scale) g->stats.lowest_lr_scale = g->stats.lr_scale;
        g->stats.rescues++;
    }
    return rescue;
}

/* An accepted step: into the window (the streak instead, with it, when it settles a new
 * level); attached, the state the update starts from is copied. What happened to the rate. */
static tg_guard_event_kind accept(tg_guard *g, double loss, double grad_norm, bool *grew) {
    tg_guard_event_kind kind = TG_GUARD_SKIP; /* none */
    if (g->streak_loss.count && is_outlier(g, examine(g, loss, grad_norm)) && settles(g, loss, grad_norm)) {
        running_window streak_loss = g->streak_loss, streak_norm = g->streak_norm;
        g->loss.count = g->loss.next = g->norm.count = g->norm.next = 0;
        for (int i = 0; i < streak_loss.count; i++) enter_window(g, streak_loss.values[i], streak_norm.values[i]);
        /* the refusals were the test's mistake, not the rate's: it gets back what they took */
        g->stats.lr_scale = g->streak_scale;
        g->stats.new_levels++;
        kind = TG_GUARD_NEW_LEVEL;
    }
    enter_window(g, loss, grad_norm);
    forget_streak(g);
    *grew = false;
    if (++g->clean >= g->config.growth_interval && g->config.growth_interval > 0 && g->stats.lr_scale < 1.0) {
        double scale = g->stats.lr_scale / g->config.lr_factor;
        g->stats.lr_scale = scale < 1.0 ? scale : 1.0;
        g->stats.growths++;
        g->clean = 0;
        *grew = true;
    }
    if (g->snap.opt) keep_state(g);
    return kind;
}

/* The last `window` verdicts, and the alarm. True when it rose now. */
static bool note_verdict(tg_guard *g, bool refused) {
    tg_guard_stats *s = &g->stats;
    int window = g->config.window;
    if (s->recent_checked == window) s->recent_refused -= g->recent[g->recent_next];
    else s->recent_checked++;
    g->recent[g->recent_next] = refused;
    s->recent_refused += refused;
    g->recent_next = (g->recent_next + 1) % window;
    bool was = s->alarm;
    /* raised at half (a run whose every other step is a refused update of the restored state
     * goes nowhere) over at least half a window of checks (a few rescues at the start are the
     * guard working), cleared below a quarter, so that it does not flap */
    int least = window / 2 > g->config.warmup ? window / 2 : g->config.warmup;
    if (!was) s->alarm = s->recent_checked >= least && 2 * s->recent_refused >= s->recent_checked;
    else s->alarm = 4 * s->recent_refused >= s->recent_checked;
    if (s->alarm && !was) s->alarms++;
    return s->alarm && !was;
}

/* The guard's scale is a factor on the optimizer's own rate, whatever sets that (the caller by
 * hand, or the optimizer's schedule at each step): so a schedule and a rescue compose. */
static double current_lr(const tg_guard *g) {
    return g->snap.opt ? tg_optimizer_lr(g->snap.opt) : NAN;
}

static void apply_lr(tg_guard *g) {
    if (!g->snap.opt) return;
    tgi_optimizer_set_lr_scale(g->snap.opt, g->stats.lr_scale);
    g->stats.lr = tg_optimizer_lr(g->snap.opt);
}

tg_status tg_guard_commit(tg_guard *g, int64_t step, double loss, double grad_norm,
                          tg_guard_verdict verdict) {
    if (!g) return TG_ERR_INVALID;
    if ((unsigned)verdict > TG_GUARD_SKIP_OUTLIER)
        return tgi_error(g->ctx, TG_ERR_INVALID, "guard_commit: step %lld: verdict %d is not a "
                         "tg_guard_verdict", (long long)step, (int)verdict);
    if (verdict == TG_GUARD_ACCEPT && (!isfinite(loss) || !isfinite(grad_norm)))
        return tgi_error(g->ctx, TG_ERR_INVALID, "guard_commit: step %lld: a non-finite loss (%g) "
                         "or gradient norm (%g) cannot be accepted into the window",
                         (long long)step, loss, grad_norm);
    g->stats.checked++;
    tg_guard_event e = {.step = step, .verdict = verdict, .loss = loss, .grad_norm = grad_norm,
                        .z = NAN, .loss_ratio = NAN, .norm_ratio = NAN, .lr_before = current_lr(g)};
    bool refused = verdict != TG_GUARD_ACCEPT, grew = false;
    tg_guard_event_kind kind;
    if (refused) {
        if (verdict == TG_GUARD_SKIP_NONFINITE) e.by_norm = isfinite(loss);
        else {
            finding f = examine(g, loss, grad_norm);
            e.z = f.z;
            e.loss_ratio = f.loss_ratio;
            e.norm_ratio = f.norm_ratio;
            e.by_norm = f.by_norm;
        }
        kind = refuse(g, step, loss, grad_norm, verdict) ? TG_GUARD_RESCUE : TG_GUARD_SKIP;
    } else kind = accept(g, loss, grad_norm, &grew);
    bool alarm = note_verdict(g, refused);
    apply_lr(g);
    e.lr_after = g->snap.opt ? g->stats.lr : NAN;
    if (refused || kind == TG_GUARD_NEW_LEVEL) emit(g, &e, kind);
    if (grew) emit(g, &e, TG_GUARD_GROW);
    if (alarm) emit(g, &e, TG_GUARD_ALARM);
    return TG_OK;
}

tg_guard_verdict tg_guard_check(tg_guard *g, int64_t step, double loss, double grad_norm) {
    tg_guard_verdict verdict = tg_guard_judge(g, loss, grad_norm);
    tg_guard_commit(g, step, loss, grad_norm, verdict);
    return verdict;
}

tg_status tg_guard_get_stats(const tg_guard *g, tg_guard_stats *out) {
    if (!g) return TG_ERR_INVALID;
    if (!out) return tgi_error(g->ctx, TG_ERR_INVALID, "guard_get_stats: out is NULL");
    *out = g->stats;
    return TG_OK;
}

/* ---- the words ----------------------------------------------------------------------------- */

/* Why a step was refused: "loss NaN", "loss 3.06 (1.23x its median), gradient norm 9.22
 * (3.35x): z 6.93". */
static void say_why(const tg_guard_event *e, char *buf, size_t size) {
    if (e->verdict == TG_GUARD_SKIP_NONFINITE)
        snprintf(buf, size, "%s %g", e->by_norm ? "gradient norm" : "loss", e->by_norm ? e->grad_norm : e->loss);
    else if (e->by_norm && e->norm_ratio < 1.0)
        snprintf(buf, size, "gradient norm %.4g fell to %.3gx its median (loss %.4g, %.3gx): z %.3g",
                 e->grad_norm, e->norm_ratio, e->loss, e->loss_ratio, e->z);
    else
        snprintf(buf, size, "loss %.4g (%.3gx its median), gradient norm %.4g (%.3gx): z %.3g", e->loss,
                 e->loss_ratio, e->grad_norm, e->norm_ratio, e->z);
}

tg_status tg_guard_event_text(const tg_guard_event *e, char *buf, size_t size) {
    if (!e || !buf || size == 0) return TG_ERR_INVALID;
    char why[128];
    long long step = (long long)e->step;
    bool has_lr = !isnan(e->lr_after);
    switch (e->kind) {
    case TG_GUARD_RESCUE:
        say_why(e, why, sizeof why);
        if (e->lr_after < e->lr_before)
            snprintf(buf, size, "step %lld: %s: rolled back, lr %.4g -> %.4g", step, why, e->lr_before, e->lr_after);
        else snprintf(buf, size, "step %lld: %s: rolled back, lr %.4g (at its floor)", step, why, e->lr_after);
        break;
    case TG_GUARD_SKIP:
        say_why(e, why, sizeof why);
        if (has_lr) snprintf(buf, size, "step %lld: %s: skipped, lr kept at %.4g", step, why, e->lr_after);
        else snprintf(buf, size, "step %lld: %s: skipped", step, why);
        break;
    case TG_GUARD_GROW:
        snprintf(buf, size, "step %lld: clean steps since the last change: lr grows back, %.4g -> %.4g",
                 step, e->lr_before, e->lr_after);
        break;
    case TG_GUARD_NEW_LEVEL:
        snprintf(buf, size, "step %lld: steady refused steps (loss %.4g, gradient norm %.4g): accepted "
                 "as the run's new level", step, e->loss, e->grad_norm);
        if (has_lr && e->lr_after != e->lr_before) {
            size_t used = strlen(buf);
            snprintf(buf + used, size - used, ", lr restored %.4g -> %.4g", e->lr_before, e->lr_after);
        }
        break;
    case TG_GUARD_ALARM:
        snprintf(buf, size, "step %lld: %d of the last %d steps were refused: the run is not learning",
                 step, e->recent_refused, e->recent_checked);
        if (has_lr) {
            size_t used = strlen(buf);
            snprintf(buf + used, size - used, " (lr %.4g)", e->lr_after);
        }
        break;
    default:
        snprintf(buf, size, "step %lld: unknown guard event %d", step, (int)e->kind);
        return TG_ERR_INVALID;
    }
    return TG_OK;
}
