/*
 * cli/report.c — the study's report: summary.json (numbers only, null for NaN), one CSV of raw
 * per-step series per experiment, and index.html, one self-contained page with inline SVG.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/files.h"
#include "cli/isometry.h"
#include "cli/lm_study.h"
#include "cli/sharpness.h"
#include "cli/report.h"

/* ---- summary.json -------------------------------------------------------------------------- */

static json_t *number(double v) {
    return isfinite(v) ? json_real(v) : json_null(); /* JSON has no NaN or Inf */
}

static json_t *numbers(const double *v, int64_t n) {
    json_t *array = json_array();
    for (int64_t i = 0; v && i < n; i++) json_array_append_new(array, number(v[i]));
    return array;
}

static json_t *step_or_null(int64_t step) {
    return step >= 0 ? json_integer(step) : json_null();
}

static json_t *run_json(const run_result *r) {
    json_t *run = json_object();
    json_object_set_new(run, "config", json_string(r->config.name));
    json_object_set_new(run, "model", json_string(model_name(&r->config)));
    int layers = model_layers(&r->config);
    json_object_set_new(run, "depth", layers > 0 ? json_integer(layers) : json_null());
    json_object_set_new(run, "grad_norm_by_layer", numbers(r->grad_norm_by_layer, r->n_layers));
    json_object_set_new(run, "first_last_ratio", number(r->first_last_ratio));
    json_object_set_new(run, "loss_curve", numbers(r->loss, r->config.steps));
    json_object_set_new(run, "final_loss", number(r->final_loss));
    json_t *steps = json_array();
    for (int i = 0; i < r->n_evals; i++) json_array_append_new(steps, json_integer(r->eval_step[i]));
    json_object_set_new(run, "held_out_steps", steps);
    json_object_set_new(run, "held_out_loss", numbers(r->eval_loss, r->n_evals));
    json_object_set_new(run, "test_accuracy", number(r->test_accuracy));
    json_object_set_new(run, "train_loss", number(r->train_loss));
    json_object_set_new(run, "train_accuracy", number(r->train_accuracy));
    json_object_set_new(run, "weight_norm", number(r->weight_norm));
    json_object_set_new(run, "parameters", json_integer(r->n_param_elements));
    json_object_set_new(run, "classes", r->classes ? json_integer(r->classes) : json_null());
    json_object_set_new(run, "explosion_onset_step", step_or_null(r->explosion_onset_step));
    json_object_set_new(run, "first_nan_step", step_or_null(r->first_nan_step));
    if (r->config.guard) {
        json_object_set_new(run, "skipped_steps", json_integer(r->guard.skipped));
        json_object_set_new(run, "rescues", json_integer(r->guard.rescues));
        json_object_set_new(run, "final_lr", number(r->guard.lr));
    }
    const run_metric *lambda = run_metric_find(r, "hessian.lambda_max"), *lr = run_metric_find(r, "lr");
    if (lambda && lr && lambda->n == lr->n) { /* --curvature: the top eigenvalue at the measured steps */
        json_t *at = json_array(), *rate = json_array();
        for (int i = 0; i < lambda->n; i++) {
            json_array_append_new(at, json_integer(lambda->steps[i]));
            json_array_append_new(rate, number(lr->values[i]));
        }
        json_object_set_new(run, "curvature_steps", at);
        json_object_set_new(run, "lambda_max", numbers(lambda->values, lambda->n));
        json_object_set_new(run, "curvature_lr", rate);
    }
    if (r->n_metrics) { /* every series of the recorder: {"name": {"steps": [..], "values": [..]}} */
        json_t *all = json_object();
        for (int k = 0; k < r->n_metrics; k++) {
            const run_metric *m = &r->metrics[k];
            json_t *steps = json_array();
            for (int i = 0; i < m->n; i++) json_array_append_new(steps, json_integer(m->steps[i]));
            json_t *series = json_object();
            json_object_set_new(series, "steps", steps);
            json_object_set_new(series, "values", numbers(m->values, m->n));
            json_object_set_new(all, m->name, series);
        }
        json_object_set_new(run, "instruments", all);
    }
    json_object_set_new(run, "grad_norm_by_timestep",
                        r->grad_norm_by_timestep ? numbers(r->grad_norm_by_timestep, r->n_timesteps) : json_null());
    json_object_set_new(run, "grad_norm_by_timestep_trained",
                        r->grad_norm_by_timestep_end ? numbers(r->grad_norm_by_timestep_end, r->n_timesteps) : json_null());
    return run;
}

static int write_summary(const char *path, const experiment *experiments, int n, uint64_t seed) {
    json_t *root = json_object(), *list = json_array();
    json_object_set_new(root, "seed", json_integer((json_int_t)seed));
    for (int i = 0; i < n; i++) {
        json_t *e = json_object(), *runs = json_array();
        json_object_set_new(e, "name", json_string(experiments[i].name));
        /* the words too: bench/check_study.py checks what a finding counts against the runs */
        json_object_set_new(e, "finding", json_string(experiments[i].finding));
        for (int r = 0; r < experiments[i].n_runs; r++) {
            json_t *run = run_json(&experiments[i].results[r]);
            if (experiments[i].lm) lm_study_json(&experiments[i], r, run);
            if (experiments[i].sharp) sharpness_json(&experiments[i], r, run);
            if (experiments[i].iso) isometry_json(&experiments[i], r, run);
            json_array_append_new(runs, run);
        }
        json_object_set_new(e, "runs", runs);
        json_array_append_new(list, e);
    }
    json_object_set_new(root, "experiments", list);
    int failed = json_dump_file(root, path, JSON_INDENT(1) | JSON_REAL_PRECISION(9));
    json_decref(root);
    return failed;
}

/* ---- CSV: config,step,series,value --------------------------------------------------------- */

static void csv_value(FILE *f, const char *config, int step, const char *series, double v) {
    fprintf(f, "\"%s\",%d,%s,", config, step, series);
    if (isfinite(v)) fprintf(f, "%.9g\n", v);
    else fprintf(f, "\n");
}

static int write_csv(const char *path, const experiment *e) {
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    fprintf(f, "config,step,series,value\n");
    for (int i = 0; i < e->n_runs; i++) {
        const run_result *r = &e->results[i];
        for (int s = 0; s < r->steps_done; s++) {
            csv_value(f, r->config.name, s, "loss", r->loss[s]);
            csv_value(f, r->config.name, s, "grad_norm", r->grad_norm[s]);
            for (int l = 0; l < r->n_layers; l++)
                csv_value(f, r->config.name, s, r->layer_names[l], r->layer_norms[(int64_t)l * r->config.steps + s]);
        }
        for (int k = 0; k < r->n_evals; k++) csv_value(f, r->config.name, r->eval_step[k], "held_out_loss", r->eval_loss[k]);
        for (int k = 0; k < r->n_metrics; k++) /* the instruments: "hessian.lambda_max", ... */
            for (int i = 0; i < r->metrics[k].n; i++)
                csv_value(f, r->config.name, (int)r->metrics[k].steps[i], r->metrics[k].name,
                          r->metrics[k].values[i]);
        for (int t = 0; r->grad_norm_by_timestep && t < r->n_timesteps; t++) {
            char series[32];
            snprintf(series, sizeof series, "dL/dh[%d]", t + 1);
            csv_value(f, r->config.name, 0, series, r->grad_norm_by_timestep[t]);
        }
    }
    return fclose(f) != 0;
}

/* ---- index.html ---------------------------------------------------------------------------- */

static void html_text(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else fputc(*s, f);
    }
}

void report_chart(FILE *f, const tg_line_plot *plot) {
    fputs("<figure>", f);
    tg_svg_line_plot(f, plot);
    fputs("</figure>\n", f);
}

/* Whether two runs of the recurrent experiment are one model at different sequence lengths. */
static bool same_family(const run_config *a, const run_config *b) {
    return a->model == b->model && a->rnn == b->rnn && a->rnn_layers == b->rnn_layers &&
           a->bidirectional == b->bidirectional;
}

/* A run's colour, the same in every chart of its section (tg_plot_series.style). Where the
 * runs are a few models at several sequence lengths, and each chart shows one length, it is the
 * model's colour: the LSTM reads the same at T = 20 and at T = 100. */
static int run_style(const experiment *e, int i) {
    if (!(e->charts & CHART_TIMESTEPS)) return i + 1;
    int families = 0;
    for (int j = 0; j < e->n_runs; j++) {
        int k = 0;
        while (k < j && !same_family(&e->runs[k], &e->runs[j])) k++;
        if (k < j) continue; /* not the first run of its family */
        families++;
        if (same_family(&e->runs[j], &e->runs[i])) return families;
    }
    return i + 1;
}

static void layers_chart(FILE *f, const experiment *e) {
    tg_plot_series series[MAX_RUNS];
    double x[MAX_RUNS][MAX_LAYERS];
    for (int i = 0; i < e->n_runs; i++) {
        const run_result *r = &e->results[i];
        for (int l = 0; l < r->n_layers; l++) x[i][l] = l + 1;
        series[i] = (tg_plot_series){r->config.name, x[i], r->grad_norm_by_layer, r->n_layers, run_style(e, i)};
    }
    tg_line_plot plot = {"Gradient norm per layer at the first step", "layer (1 = input side)",
                         "gradient L2 norm", false, true, series, e->n_runs, 0, 0};
    report_chart(f, &plot);
}

static bool diverged(const run_result *r) {
    return r->first_nan_step >= 0;
}

/* Loss or gradient norm per step. In a loss chart, a run that blew up would squash every other
 * curve against the axis: it is left out (and named below the chart) unless all runs blew up.
 * `length` > 0 keeps only the runs of that sequence length. */
static void per_step_chart(FILE *f, const experiment *e, bool loss, int64_t length) {
    tg_plot_series series[MAX_RUNS];
    int n = 0, finite = 0;
    for (int i = 0; i < e->n_runs; i++) finite += !diverged(&e->results[i]);
    char left_out[512] = "";
    for (int i = 0; i < e->n_runs; i++) {
        const run_result *r = &e->results[i];
        if ((length > 0 && r->config.seq_len != length) || !r->loss) continue;
        if (loss && finite > 0 && diverged(r)) {
            size_t used = strlen(left_out);
            snprintf(left_out + used, sizeof left_out - used, "%s%s (NaN at step %lld)", used ? ", " : "",
                     r->config.name, (long long)r->first_nan_step);
            continue;
        }
        series[n++] = (tg_plot_series){r->config.name, NULL, loss ? r->loss : r->grad_norm, r->config.steps,
                                        run_style(e, i)};
    }
    char title[96];
    if (length > 0) snprintf(title, sizeof title, "Training loss, T = %lld", (long long)length);
    else snprintf(title, sizeof title, "%s", loss ? "Training loss" : "Global gradient norm per step");
    tg_line_plot plot = {title, "training step", loss ? "training loss" : "global gradient norm (before clipping)",
                         false, true, series, n, 0, 0};
    fputs("<figure>", f);
    tg_svg_line_plot(f, &plot);
    if (left_out[0]) {
        fputs("<figcaption class=\"note\">Not shown: ", f);
        html_text(f, left_out);
        fputs(".</figcaption>", f);
    }
    fputs("</figure>\n", f);
}

/* Held-out loss at the evaluation points of each run (x: steps trained). */
static void held_out_chart(FILE *f, const experiment *e) {
    tg_plot_series series[MAX_RUNS];
    double x[MAX_RUNS][MAX_EVALS];
    int n = 0;
    for (int i = 0; i < e->n_runs; i++) {
        const run_result *r = &e->results[i];
        if (diverged(r) || r->n_evals == 0) continue;
        for (int k = 0; k < r->n_evals; k++) x[n][k] = r->eval_step[k];
        series[n] = (tg_plot_series){r->config.name, x[n], r->eval_loss, r->n_evals, run_style(e, i)};
        n++;
    }
    tg_line_plot plot = {"Held-out loss during training", "training step", "held-out loss", false, true,
                         series, n, 0, 0};
    report_chart(f, &plot);
}

/* "lenet.conv1.weight" -> "conv1", "resnet.stage2.block1.conv1.weight" -> "stage2.block1.conv1":
 * the model's own name for the layer, without its root and the tensor's kind. */
static void layer_row_name(const char *name, int l, char *out, size_t size) {
    const char *dot = strchr(name, '.');
    const char *from = dot && dot[1] ? dot + 1 : name;
    size_t len = strlen(from);
    static const char *const kinds[] = {".weight", ".kernel"};
    for (int k = 0; k < 2; k++) {
        size_t n = strlen(kinds[k]);
        if (len > n && strcmp(from + len - n, kinds[k]) == 0) len -= n;
    }
    if (len) snprintf(out, size, "%.*s", (int)len, from);
    else snprintf(out, size, "layer %d", l + 1);
}

/* One heatmap per run: layers (input at the top) x steps, at most ~60 columns. */
static void heat_charts(FILE *f, const experiment *e) {
    for (int i = 0; i < e->n_runs; i++) {
        const run_result *r = &e->results[i];
        if (!r->layer_norms) continue; /* the run failed before it trained */
        int steps = r->config.steps, every = steps > 60 ? (steps + 59) / 60 : 1, cols = (steps + every - 1) / every;
        double *cells = malloc((size_t)r->n_layers * (size_t)cols * sizeof *cells);
        double *col_steps = malloc((size_t)cols * sizeof *col_steps);
        const char *rows[MAX_LAYERS];
        char names[MAX_LAYERS][TG_LABEL_MAX];
        if (!cells || !col_steps) {
            free(cells);
            free(col_steps);
            return;
        }
        for (int c = 0; c < cols; c++) col_steps[c] = c * every;
        for (int l = 0; l < r->n_layers; l++) {
            layer_row_name(r->layer_names[l], l, names[l], sizeof names[l]);
            rows[l] = names[l];
            for (int c = 0; c < cols; c++) cells[l * cols + c] = r->layer_norms[(int64_t)l * steps + c * every];
        }
        char title[160];
        snprintf(title, sizeof title, "%s: gradient norm, layer x step", r->config.name);
        tg_heatmap map = {title, "training step", "layer", "gradient L2 norm", cells, r->n_layers, cols,
                          rows, col_steps, true, 0, 0};
        fputs("<figure>", f);
        tg_svg_heatmap(f, &map);
        fputs("</figure>\n", f);
        free(cells);
        free(col_steps);
    }
}

/* Each run's gradient histograms (cli/histogram_chart.c): first, middle and last layer. */
static void histogram_charts(FILE *f, const experiment *e) {
    for (int i = 0; i < e->n_runs; i++)
        for (int h = 0; h < e->results[i].n_hist_layers; h++) {
            fputs("<figure>", f);
            histogram_heatmap(f, &e->results[i], h);
            fputs("</figure>\n", f);
        }
}

/* |dL/dh[t]| over t for the runs of one sequence length, at the first or the last step. */
static void timestep_chart(FILE *f, const experiment *e, int64_t length, bool trained) {
    tg_plot_series series[MAX_RUNS];
    double x[MAX_RUNS][1024];
    int n = 0;
    for (int i = 0; i < e->n_runs; i++) {
        const run_result *r = &e->results[i];
        const double *norms = trained ? r->grad_norm_by_timestep_end : r->grad_norm_by_timestep;
        if (r->config.seq_len != length || !norms) continue;
        for (int t = 0; t < r->n_timesteps && t < 1024; t++) x[n][t] = t + 1;
        series[n] = (tg_plot_series){r->config.name, x[n], norms, r->n_timesteps, run_style(e, i)};
        n++;
    }
    char title[96];
    snprintf(title, sizeof title, "Gradient reaching h[t], T = %lld, %s", (long long)length,
             trained ? "after training" : "at the first step");
    tg_line_plot plot = {title, "time step t", "|dL/dh[t]|", false, true, series, n, 0, 0};
    report_chart(f, &plot);
}

/* Each sequence length's gradient through time at the first step and after training, then the
 * losses. */
static void timestep_charts(FILE *f, const experiment *e) {
    int64_t lengths[MAX_RUNS];
    int n_lengths = 0;
    for (int i = 0; i < e->n_runs; i++) {
        bool seen = false;
        for (int k = 0; k < n_lengths; k++) seen |= lengths[k] == e->runs[i].seq_len;
        if (!seen) lengths[n_lengths++] = e->runs[i].seq_len;
    }
    for (int a = 0; a < n_lengths; a++) /* ascending: T = 20, 50, 100 */
        for (int b = a + 1; b < n_lengths; b++)
            if (lengths[b] < lengths[a]) {
                int64_t t = lengths[a];
                lengths[a] = lengths[b];
                lengths[b] = t;
            }
    /* per length, ascending, the gradient through time before and after training side by side
     * (two charts a row), then the losses */
    for (int k = 0; k < n_lengths; k++) {
        timestep_chart(f, e, lengths[k], false);
        timestep_chart(f, e, lengths[k], true);
    }
    for (int k = 0; k < n_lengths; k++) per_step_chart(f, e, true, lengths[k]);
}

/* Training against held-out fit, run by run: what regularisation is meant to move. */
static void fit_table(FILE *f, const experiment *e) {
    fputs("<table><tr><th>run</th><th>training loss</th><th>held-out loss</th><th>gap (loss)</th>"
          "<th>training accuracy</th><th>held-out accuracy</th><th>gap (accuracy)</th>"
          "<th>weight norm</th></tr>\n", f);
    for (int i = 0; i < e->n_runs; i++) {
        const run_result *r = &e->results[i];
        char v[7][32];
        format_number(r->train_loss, v[0], sizeof v[0]);
        format_number(r->final_loss, v[1], sizeof v[1]);
        format_number(r->final_loss - r->train_loss, v[2], sizeof v[2]);
        format_number(100 * r->train_accuracy, v[3], sizeof v[3]);
        format_number(100 * r->test_accuracy, v[4], sizeof v[4]);
        format_number(100 * (r->train_accuracy - r->test_accuracy), v[5], sizeof v[5]);
        format_number(r->weight_norm, v[6], sizeof v[6]);
        fputs("<tr><td>", f);
        html_text(f, r->config.name);
        fprintf(f, "</td><td>%s</td><td>%s</td><td>%s</td><td>%s%%</td><td>%s%%</td><td>%s points</td>"
                "<td>%s</td></tr>\n", v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
    }
    fputs("</table>\n", f);
}

static const char *optimizer_name(const tg_optimizer_config *o) {
    static const char *const names[] = {"SGD", "Adam", "AdamW", "RMSprop"};
    return names[o->kind];
}

static void config_table(FILE *f, const experiment *e) {
    static const char *const models[] = {"MLP", "residual MLP", "recurrent", "LeNet-5", "ResNet"};
    static const char *const norms[] = {"none", "batch", "layer"};
    fputs("<table><tr><th>run</th><th>model</th><th>layers / hidden</th><th>activation</th>"
          "<th>norm</th><th>optimizer</th><th>steps x batch</th><th>clipping</th><th>time</th></tr>\n", f);
    for (int i = 0; i < e->n_runs; i++) {
        const run_config *c = &e->results[i].config;
        fputs("<tr><td>", f);
        html_text(f, c->name);
        if (c->model == MODEL_RNN)
            fprintf(f, "</td><td>%s</td><td>%d x hidden %lld%s, T = %lld</td><td>-</td><td>-</td>", models[c->model],
                    c->rnn_layers > 1 ? c->rnn_layers : 1, (long long)c->hidden,
                    c->bidirectional ? ", bidirectional" : "", (long long)c->seq_len);
        else if (c->model == MODEL_LENET)
            fprintf(f, "</td><td>%s</td><td>2 conv + 3 fc</td><td>relu</td><td>none</td>", models[c->model]);
        else if (c->model == MODEL_RESNET)
            fprintf(f, "</td><td>%s%s</td><td>%d, widths %lld/%lld/%lld</td><td>relu</td><td>batch</td>",
                    c->skip ? "" : "plain ", c->skip ? models[c->model] : "CNN", c->depth, (long long)c->width,
                    (long long)(2 * c->width), (long long)(4 * c->width));
        else
            fprintf(f, "</td><td>%s</td><td>%d x %lld</td><td>%s</td><td>%s</td>", models[c->model],
                    model_layers(c), (long long)c->width, tg_activation_name(c->activation), norms[c->norm]);
        fprintf(f, "<td>%s lr %g%s", optimizer_name(&c->opt), (double)c->opt.lr, c->opt.momentum > 0 ? ", momentum" : "");
        if (c->opt.weight_decay > 0) fprintf(f, ", weight decay %g", (double)c->opt.weight_decay);
        if (c->dropout > 0) fprintf(f, ", dropout %g", (double)c->dropout);
        if (c->train_subset > 0) fprintf(f, ", %lld training samples", (long long)c->train_subset);
        fprintf(f, "</td><td>%d x %lld</td><td>", c->steps, (long long)c->batch);
        if (c->clip_value > 0) fprintf(f, "value %g", (double)c->clip_value);
        else if (c->clip_norm > 0) fprintf(f, "global norm %g", (double)c->clip_norm);
        else fputs("none", f);
        fprintf(f, "</td><td>%.1f s</td></tr>\n", e->results[i].seconds);
    }
    fputs("</table>\n", f);
}

static const char *const style =
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1360px;margin:2em auto;"
    "padding:0 1.5em;color:#222;line-height:1.5}h1{margin-bottom:.2em}h2{margin-top:2.2em;"
    "border-bottom:1px solid #ddd;padding-bottom:.2em}.meta{color:#666}.question{font-style:italic;"
    "color:#444}.finding{background:#f3f7fb;border-left:4px solid #0072b2;padding:.7em 1em;margin:1em 0}"
    ".finding ul{margin:.4em 0 0;padding-left:1.4em}.note{color:#666;font-size:.9em}"
    ".charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:1em}"
    "figure{margin:0}svg{width:100%;height:auto}.summary li{margin:.3em 0}"
    "table{border-collapse:collapse;font-size:.9em;margin-top:1em}td,th{border:1px solid #ddd;"
    "padding:.25em .6em;text-align:left}th{background:#f6f6f6}nav a{margin-right:1em}";

/* The first line of a finding is its headline; the others become a list. */
static void finding_html(FILE *f, const char *finding) {
    fputs("<div class=\"finding\"><b>Finding.</b> ", f);
    const char *line = finding;
    for (int i = 0; *line; i++) {
        size_t len = strcspn(line, "\n");
        char buf[2048];
        snprintf(buf, sizeof buf, "%.*s", (int)len, line);
        fputs(i == 0 ? "" : (i == 1 ? "<ul><li>" : "<li>"), f);
        html_text(f, buf);
        fputs(i == 0 ? "\n" : "</li>\n", f);
        line += len + (line[len] == '\n');
        if (!*line && i > 0) fputs("</ul>", f);
    }
    fputs("</div>\n", f);
}

/* The findings first: each experiment's headline (a finding's first sentence), linked to its
 * section. */
static void summary_html(FILE *f, const experiment *experiments, int n) {
    fputs("<section id=\"summary\"><h2>Summary</h2><ul class=\"summary\">\n", f);
    for (int i = 0; i < n; i++) {
        const char *finding = experiments[i].finding;
        size_t len = strcspn(finding, "\n");
        for (const char *p = finding; p < finding + len; p++)
            if (p[0] == '.' && p[1] == ' ' && p + 1 < finding + len) { /* the first sentence */
                len = (size_t)(p + 1 - finding);
                break;
            }
        char headline[1024];
        snprintf(headline, sizeof headline, "%.*s", (int)len, finding);
        fprintf(f, "<li><a href=\"#%s\"><b>%s</b></a>: ", experiments[i].name, experiments[i].name);
        html_text(f, headline[0] ? headline : experiments[i].title);
        fputs("</li>\n", f);
    }
    fputs("</ul></section>\n", f);
}

static void experiment_section(FILE *f, const experiment *e) {
    fprintf(f, "<section id=\"%s\"><h2>", e->name);
    html_text(f, e->title);
    fputs("</h2>\n<p class=\"question\">", f);
    html_text(f, e->question);
    fputs("</p>\n", f);
    finding_html(f, e->finding);
    if (e->lm) { /* its own charts and table (cli/lm_report.c) */
        lm_study_html(f, e);
        fputs("</section>\n", f);
        return;
    }
    fputs("<div class=\"charts\">\n", f);
    if (e->charts & CHART_LAYERS) layers_chart(f, e);
    if (e->charts & CHART_STEPS) per_step_chart(f, e, false, 0);
    if (e->charts & CHART_LOSS && !(e->charts & CHART_TIMESTEPS)) per_step_chart(f, e, true, 0);
    if (e->charts & CHART_HELD_OUT) held_out_chart(f, e);
    if (e->charts & CHART_TIMESTEPS) timestep_charts(f, e);
    if (e->charts & CHART_HEAT) heat_charts(f, e);
    if (e->charts & CHART_HIST) histogram_charts(f, e);
    if (e->sharp) sharpness_html(f, e);
    if (e->iso) isometry_html(f, e);
    instrument_charts(f, e);
    fputs("</div>\n", f);
    if (e->charts & CHART_FIT) fit_table(f, e);
    config_table(f, e);
    fprintf(f, "<p class=\"note\">Every series of this section: <a href=\"%s.csv\">%s.csv</a> (config, "
            "step, series, value).</p>\n", e->name, e->name);
    fputs("</section>\n", f);
}

static int write_html(const char *command, const char *path, const experiment *experiments, int n,
                      uint64_t seed, bool quick, double seconds) {
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    char date[64];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    /* the study's report, or one run's (`train`): titled after its own command */
    bool study = strcmp(command, "study") == 0;
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>");
    html_text(f, study ? "tapegrad study: vanishing and exploding gradients" : experiments[0].title);
    fprintf(f, "</title><style>%s</style></head><body>\n<h1>", style);
    html_text(f, study ? "Why deep and recurrent nets fail to train" : experiments[0].title);
    fprintf(f, "</h1>\n<p class=\"meta\">tapegrad %s, seed %llu, %s steps, %.0f s, %s. Every number "
               "below was measured in this run; the findings are written from those numbers.</p>\n<nav>",
            command, (unsigned long long)seed, quick ? "quick (few)" : "full", seconds, date);
    for (int i = 0; i < n; i++) fprintf(f, "<a href=\"#%s\">%s</a>", experiments[i].name, experiments[i].name);
    fputs("</nav>\n", f);
    summary_html(f, experiments, n);
    for (int i = 0; i < n; i++) experiment_section(f, &experiments[i]);
    fputs("<p class=\"meta\">Raw series: one CSV per experiment (config, step, series, value), linked "
          "in each section; <a href=\"summary.json\">summary.json</a> holds every number.</p>\n"
          "</body></html>\n", f);
    return fclose(f) != 0;
}

/* Every file of the report is written to the staging folder first: index.html, the part a
 * reader opens, is moved in with the rest or not at all. */
int write_report(const char *command, const char *dir, const experiment *experiments, int n,
                 uint64_t seed, bool quick, double seconds) {
    staging s;
    if (staging_begin(&s, command, dir)) return 1;
    const char *path = staging_path(&s, "summary.json");
    if (!path || write_summary(path, experiments, n, seed)) goto fail;
    for (int i = 0; i < n; i++) {
        char name[128];
        snprintf(name, sizeof name, "%s.csv", experiments[i].name); /* names from our table */
        if (!(path = staging_path(&s, name)) || write_csv(path, &experiments[i])) goto fail;
    }
    if (!(path = staging_path(&s, "index.html")) ||
        write_html(command, path, experiments, n, seed, quick, seconds))
        goto fail;
    return staging_commit(&s);
fail:
    if (path) fprintf(stderr, "tapegrad %s: cannot write '%s': %s\n", command, path, strerror(errno));
    staging_abort(&s);
    return 1;
}
