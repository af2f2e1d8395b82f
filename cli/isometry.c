/*
 * cli/isometry.c — the `isometry` experiment: how far the input-output Jacobian of a deep net
 * at initialisation is from an isometry (all singular values 1), per activation, depth and
 * initialiser, against how much gradient reaches the first layer and how the net trains.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/isometry.h"

/* 128 layers would not fit: a run records per-layer norms for at most MAX_LAYERS (64) layers. */
static const int depths[] = {8, 32};

bool isometry_setup(experiment *e, uint64_t seed, bool quick) {
    iso_study *s = calloc(1, sizeof *s);
    if (!s) return false;
    e->iso = s;
    e->title = "Dynamical isometry: the input-output Jacobian of deep tanh and ReLU nets at initialisation";
    e->question = "Do orthogonal weights keep the Jacobian's singular values near 1 in a deep tanh net "
                  "(Saxe et al. 2014; Pennington et al. 2017), can a ReLU net be isometric, and does "
                  "the spread decide the gradient reaching the first layer and how fast the net trains?";
    e->charts = CHART_LAYERS | CHART_LOSS;
    static const tg_activation acts[] = {TG_ACT_TANH, TG_ACT_RELU};
    for (int a = 0; a < 2; a++)
        for (int d = 0; d < 2; d++)
            for (int k = 0; k < 3; k++) {
                tg_activation act = acts[a];
                run_config c = {0};
                static const char *const inits[] = {"Gaussian 1/fan_in", NULL, "orthogonal"};
                const char *init_name = k == 1 ? (act == TG_ACT_TANH ? "Xavier" : "He") : inits[k];
                snprintf(c.name, sizeof c.name, "%s, %d layers, %s", tg_activation_name(act), depths[d], init_name);
                c.model = MODEL_MLP;
                c.depth = depths[d];
                c.width = 64; /* = the digits' 64 inputs: every hidden layer's fan_in is 64 */
                c.activation = act;
                if (k == 0) c.init = tg_init_normal(0.0f, 0.125f); /* std 1/sqrt(64) */
                else if (k == 1) c.init = act == TG_ACT_TANH ? tg_init_xavier(act) : tg_init_he(act);
                /* tanh at gain 1, its critical point (Pennington et al. 2017: the default 5/3 is
                 * chaotic and spreads the spectrum); ReLU at its default sqrt(2) */
                else c.init = (tg_init){.kind = TG_INIT_ORTHOGONAL, .nonlinearity = act,
                                        .gain = act == TG_ACT_TANH ? 1.0f : 0.0f};
                c.data = DATA_DIGITS;
                c.opt = (tg_optimizer_config){.kind = TG_OPT_SGD, .lr = 0.01f, .momentum = 0.9f};
                c.steps = quick ? 30 : 100;
                c.batch = 64;
                c.seed = seed;
                e->runs[e->n_runs++] = c;
            }
    return true;
}

typedef struct net_fn {
    tg_module *net;
} net_fn;

static tg_tensor *forward(tg_tape *tape, tg_tensor *input, void *user) {
    return tg_module_forward(((net_fn *)user)->net, tape, input);
}

void isometry_measure(experiment *e, int r) {
    const run_config *c = &e->runs[r];
    iso_measure *m = &e->iso->runs[r];
    m->largest = m->smallest = m->mean_square = NAN;
    tg_ctx *ctx = tg_ctx_new();
    if (!ctx) {
        snprintf(m->error, sizeof m->error, "out of memory");
        return;
    }
    tg_ctx_set_threads(ctx, 1);
    /* the net run_training starts from: the same configuration and seed */
    tg_mlp_config mc = {.in = 64, .out = 10, .width = c->width, .depth = c->depth,
                        .activation = c->activation, .init = c->init, .seed = c->seed};
    net_fn f = {tg_mlp_new(ctx, "mlp", &mc)};
    tg_dataset *digits = tg_dataset_digits(ctx);
    tg_batcher *b = digits ? tg_batcher_new(digits, 1, true, true, c->seed) : NULL;
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *x = NULL, *y = NULL;
    /* one sample: J is 10 x 64, its 10 singular values found exactly by 10 Lanczos steps */
    tg_curvature_config cc = tg_curvature_defaults();
    cc.steps = 10;
    cc.seed = c->seed;
    tg_jacobian *jac = tg_jacobian_new(ctx, &cc);
    tg_singular_values sv;
    if (!f.net || !b || !tape || !jac || !tg_batcher_next(b, tape, &x, &y) ||
        tg_jacobian_singular_values(jac, forward, &f, x, 1, &sv) != TG_OK)
        snprintf(m->error, sizeof m->error, "%s", tg_errmsg(ctx));
    else {
        m->largest = sv.largest[0];
        m->smallest = sv.smallest[0];
        m->mean_square = sv.mean_square;
    }
    tg_jacobian_free(jac);
    tg_batcher_free(b);
    tg_ctx_free(ctx);
}

void isometry_finding(const experiment *e, writer *w) {
    char a[32], b[32], c[32], d[32], g[32], h[32];
    for (int i = 0; i < e->n_runs; i++) {
        const run_result *r = &e->results[i];
        const iso_measure *m = &e->iso->runs[i];
        say(w, "%s%s: ", i ? "\n" : "", r->config.name);
        if (m->error[0] || !isfinite(m->largest)) {
            say(w, "no Jacobian (%s).", m->error);
            continue;
        }
        say(w, "Jacobian singular values %s to %s (largest / smallest %s), mean square %s; first-layer "
            "gradient %s of the last layer's; after %d steps test accuracy %s%%.",
            format_number(m->smallest, a, sizeof a), format_number(m->largest, b, sizeof b),
            format_number(m->largest / m->smallest, c, sizeof c), format_number(m->mean_square, d, sizeof d),
            format_number(r->first_last_ratio, g, sizeof g), r->steps_done,
            format_number(100 * r->test_accuracy, h, sizeof h));
    }
    /* the deepest nets side by side: orthogonal tanh against the others */
    int deep = depths[1];
    const iso_measure *best_tanh = NULL, *best_relu = NULL;
    const char *tanh_name = NULL;
    for (int i = 0; i < e->n_runs; i++) {
        const run_config *cfg = &e->runs[i];
        const iso_measure *m = &e->iso->runs[i];
        if (cfg->depth != deep || !isfinite(m->largest)) continue;
        double spread = m->largest / m->smallest;
        if (cfg->activation == TG_ACT_TANH && (!best_tanh || spread < best_tanh->largest / best_tanh->smallest)) {
            best_tanh = m;
            tanh_name = cfg->name;
        }
        if (cfg->activation == TG_ACT_RELU && (!best_relu || spread < best_relu->largest / best_relu->smallest))
            best_relu = m;
    }
    if (best_tanh && best_relu)
        say(w, "\nAt %d layers the narrowest spread of a tanh net is %s's (%s), of any ReLU net %s: %s. "
            "Advice: for a deep tanh net use orthogonal weights (tg_init ORTHOGONAL); a ReLU net cannot be "
            "isometric (it zeroes half its inputs), normalisation or residual connections are its remedy.",
            deep, tanh_name, format_number(best_tanh->largest / best_tanh->smallest, a, sizeof a),
            format_number(best_relu->largest / best_relu->smallest, b, sizeof b),
            best_tanh->largest / best_tanh->smallest < best_relu->largest / best_relu->smallest
                ? "as Pennington et al. (2017) predict, tanh can be near-isometric where ReLU cannot"
                : "here ReLU's spread is not the wider, against Pennington et al. (2017)");
}

void isometry_json(const experiment *e, int r, json_t *run) {
    const iso_measure *m = &e->iso->runs[r];
    json_object_set_new(run, "jacobian_largest", isfinite(m->largest) ? json_real(m->largest) : json_null());
    json_object_set_new(run, "jacobian_smallest", isfinite(m->smallest) ? json_real(m->smallest) : json_null());
    json_object_set_new(run, "jacobian_mean_square", isfinite(m->mean_square) ? json_real(m->mean_square) : json_null());
    json_object_set_new(run, "depth", json_integer(e->runs[r].depth));
}

/* The spread (largest / smallest singular value) against depth, one line per activation and
 * initialiser: how fast each scheme leaves isometry as the net deepens. */
void isometry_html(FILE *f, const experiment *e) {
    enum { DEPTHS = sizeof depths / sizeof depths[0] };
    static double x[MAX_RUNS][DEPTHS], spread[MAX_RUNS][DEPTHS];
    static char names[MAX_RUNS][96];
    tg_plot_series series[MAX_RUNS];
    int n = 0;
    for (int i = 0; i < e->n_runs; i++) {
        if (e->runs[i].depth != depths[0]) continue; /* one line per scheme, from its shallowest run */
        const char *scheme = strstr(e->runs[i].name, "layers, ");
        snprintf(names[n], sizeof names[n], "%s, %s", tg_activation_name(e->runs[i].activation),
                 scheme ? scheme + 8 : e->runs[i].name);
        int points = 0;
        for (int j = 0; j < e->n_runs; j++) {
            const iso_measure *m = &e->iso->runs[j];
            const char *other = strstr(e->runs[j].name, "layers, ");
            if (e->runs[j].activation != e->runs[i].activation || !other || !scheme ||
                strcmp(other, scheme) != 0 || !isfinite(m->largest) || !(m->smallest > 0))
                continue;
            x[n][points] = e->runs[j].depth;
            spread[n][points++] = m->largest / m->smallest;
        }
        if (points) series[n] = (tg_plot_series){names[n], x[n], spread[n], points, 0}, n++;
    }
    tg_line_plot plot = {"Spread of the input-output Jacobian's singular values at initialisation",
                         "layers", "largest / smallest singular value (1: isometry)", false, true,
                         series, n, 0, 0};
    fputs("<figure>", f);
    tg_svg_line_plot(f, &plot);
    fputs("</figure>\n", f);
}

void isometry_free(experiment *e) {
    free(e->iso);
    e->iso = NULL;
}
