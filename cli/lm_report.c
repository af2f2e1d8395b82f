/*
 * cli/lm_report.c — what the `transformer` experiment found, in plain words from its own
 * numbers, and its part of the report: the extra fields of its runs in summary.json, and its
 * charts (per-block gradients at initialisation, loss curves, attention entropy over training)
 * with a table of its runs.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/lm_study.h"
#include "cli/report.h"

static const char *num(double v, char *buf) {
    return format_number(v, buf, 32);
}

/* The run of a part with these settings; NULL when there is none. layers 0: any. */
static int find_lm(const experiment *e, lm_part part, int layers, bool post_ln, int warmup_on, int qk_norm, float lr) {
    for (int i = 0; i < e->n_runs; i++) {
        const lm_run_config *c = &e->lm->configs[i];
        if (c->part != part || (layers && c->n_layers != layers) || c->post_ln != post_ln) continue;
        if (warmup_on >= 0 && (c->warmup > 0) != (bool)warmup_on) continue;
        if (qk_norm >= 0 && c->qk_norm != (bool)qk_norm) continue;
        if (lr > 0 && c->lr != lr) continue;
        return e->results[i].error[0] ? -1 : i;
    }
    return -1;
}

/* Gradient norm of the last block over the first, at the first step. */
static double last_over_first(const lm_run_result *lm) {
    return lm->n_layers > 0 ? lm->block_grad_norm[lm->n_layers - 1] / lm->block_grad_norm[0] : NAN;
}

/* The lowest entropy of any head at any sample. */
static double lowest_entropy(const lm_run_result *lm) {
    double low = INFINITY;
    for (int s = 0; s < lm->n_samples; s++) low = fmin(low, lm->min_entropy[s]);
    return lm->n_samples ? low : NAN;
}

static void init_finding(const experiment *e, writer *w) {
    int depths[2] = {0, 0}, n = 0;
    for (int i = 0; i < e->n_runs && n < 2; i++)
        if (e->lm->configs[i].part == LM_PART_INIT && (n == 0 || e->lm->configs[i].n_layers != depths[0]))
            depths[n++] = e->lm->configs[i].n_layers;
    bool post_grows = true, pre_even = true, pre_below = true, any = false;
    char a[32], b[32], c[32], d[32];
    for (int k = 0; k < n; k++) {
        int post = find_lm(e, LM_PART_INIT, depths[k], true, -1, -1, 0), pre = find_lm(e, LM_PART_INIT, depths[k], false, -1, -1, 0);
        if (post < 0 || pre < 0) continue;
        const lm_run_result *p = &e->lm->results[post], *q = &e->lm->results[pre];
        double rp = last_over_first(p), rq = last_over_first(q);
        char f1[32], f2[32];
        say(w, "\nAt initialisation, %d layers: the gradient norm of the last block's weight matrices is %sx "
            "the first block's in post-LN (%s against %s) and %sx in pre-LN (%s against %s).", depths[k],
            num(rp, a), num(p->block_grad_norm[depths[k] - 1], b), num(p->block_grad_norm[0], c), num(rq, d),
            num(q->block_grad_norm[depths[k] - 1], f1), num(q->block_grad_norm[0], f2));
        if (k == 0)
            say(w, " Over all of a block's parameters post-LN's first block stands out (%s against %s for "
                "the last): its attention biases are added to the embeddings, which start small (N(0, 0.02)), "
                "and the layer norm after the sum divides by that small scale.",
                num(p->block_grad_norm_all[0], a), num(p->block_grad_norm_all[depths[k] - 1], b));
        post_grows = post_grows && rp > 1.1;
        pre_even = pre_even && rq >= 0.5 && rq <= 2;
        pre_below = pre_below && rq < rp;
        any = true;
    }
    if (!any) return;
    say(w, " Xiong et al. (2020) found post-LN's gradients growing towards the output and pre-LN's about even. "
        "Here post-LN's %s; pre-LN's %s, and pre-LN's last/first ratio %s post-LN's.", post_grows ? "grow towards the output at both depths" :
        "do not grow towards the output at every depth", pre_even ? "stay within 2x of even" :
        "fall towards the output by more than 2x (the residual stream grows with depth and each block's "
        "layer norm divides its gradient by that growing scale)", pre_below ? "lies below" : "does not lie below");
    if (post_grows)
        say(w, " With one learning rate for every layer, post-LN's blocks near the output take the largest "
            "steps at the start: what warm-up tempers (or pre-LN avoids).");
}

static void outcome(writer *w, const run_result *r, const lm_run_result *lm) {
    char a[32], b[32];
    if (r->error[0]) say(w, "failed (%s)", r->error);
    else if (r->first_nan_step >= 0) say(w, "diverged: NaN loss at step %lld", (long long)r->first_nan_step);
    else say(w, "training loss %s (last 10 steps), held-out %s bits per character", num(lm->final_train_loss, a),
             num(lm->held_out_bpc, b));
}

/* bpc of a run, +inf when it diverged or failed (for comparisons). */
static double bpc_or_inf(const experiment *e, int i) {
    return i >= 0 && isfinite(e->lm->results[i].held_out_bpc) ? e->lm->results[i].held_out_bpc : INFINITY;
}

static void warmup_finding(const experiment *e, writer *w) {
    int cold = find_lm(e, LM_PART_WARMUP, 0, true, 0, -1, 0), warm = find_lm(e, LM_PART_WARMUP, 0, true, 1, -1, 0),
        pre = find_lm(e, LM_PART_WARMUP, 0, false, 0, -1, 0);
    for (int i = 0; i < e->n_runs; i++) {
        if (e->lm->configs[i].part != LM_PART_WARMUP) continue;
        char a[32];
        say(w, "\n%s, Adam lr %s, %d steps: ", e->results[i].config.name, num(e->lm->configs[i].lr, a), e->runs[i].steps);
        outcome(w, &e->results[i], &e->lm->results[i]);
        say(w, ".");
    }
    if (cold < 0 || warm < 0 || pre < 0) return;
    char a[32], b[32];
    if (bpc_or_inf(e, pre) > bpc_or_inf(e, cold) && isfinite(bpc_or_inf(e, cold)))
        say(w, " Pre-LN ends behind post-LN here (%s against %s bits per character without warm-up): what it "
            "buys is stability, not speed.", num(bpc_or_inf(e, pre), a), num(bpc_or_inf(e, cold), b));
    double gain = bpc_or_inf(e, cold) - bpc_or_inf(e, warm);
    if (!isfinite(bpc_or_inf(e, cold)))
        say(w, " Without warm-up post-LN diverges where warm-up and pre-LN train: use pre-LN, or warm-up with post-LN.");
    else if (gain > 0.05)
        say(w, " Without warm-up post-LN ends %s bits per character worse than with it (pre-LN without warm-up: %s), "
            "as Xiong et al. (2020) report: use pre-LN, or warm-up with post-LN.", num(gain, a), num(bpc_or_inf(e, pre), b));
    else
        say(w, " At this size warm-up makes little difference to post-LN (%s bits per character%s): the "
            "instability Xiong et al. (2020) report grows with depth, width and learning rate, beyond this "
            "small net; pre-LN (or warm-up) remains the safe choice.", num(fabs(gain), a),
            gain >= 0 ? " better with it" : " worse with it");
}

static void entropy_finding(const experiment *e, writer *w) {
    char a[32], b[32], c[32];
    int block = 0;
    for (int i = 0; i < e->n_runs; i++) {
        if (e->lm->configs[i].part != LM_PART_ENTROPY) continue;
        const lm_run_result *lm = &e->lm->results[i];
        block = (int)e->lm->configs[i].block;
        say(w, "\n%s: lowest head entropy %s nats at the first step, %s at the end, %s at its lowest; ",
            e->results[i].config.name, num(lm->n_samples ? lm->min_entropy[0] : NAN, a),
            num(lm->n_samples ? lm->min_entropy[lm->n_samples - 1] : NAN, b), num(lowest_entropy(lm), c));
        outcome(w, &e->results[i], lm);
        say(w, ".");
    }
    float rates[2] = {0, 0};
    for (int i = 0; i < e->n_runs; i++)
        if (e->lm->configs[i].part == LM_PART_ENTROPY) {
            float lr = e->lm->configs[i].lr;
            if (rates[0] == 0 || lr < rates[0]) rates[0] = lr;
            if (lr > rates[1]) rates[1] = lr;
        }
    int slow = find_lm(e, LM_PART_ENTROPY, 0, false, -1, 0, rates[0]), fast = find_lm(e, LM_PART_ENTROPY, 0, false, -1, 0, rates[1]),
        fast_qk = find_lm(e, LM_PART_ENTROPY, 0, false, -1, 1, rates[1]);
    if (slow < 0 || fast < 0 || fast_qk < 0 || rates[1] <= rates[0]) return;
    double lo_slow = lowest_entropy(&e->lm->results[slow]), lo_fast = lowest_entropy(&e->lm->results[fast]),
           lo_qk = lowest_entropy(&e->lm->results[fast_qk]);
    double even = 0.0; /* a causal head spread evenly: query t over its t keys */
    for (int t = 1; t <= block; t++) even += log((double)t) / block;
    say(w, " (A causal head spread evenly has %s nats on average; log T = %s.)", num(even, a), num(log((double)block), b));
    bool collapses = lo_fast < 0.5 * lo_slow, kept = lo_qk > lo_fast;
    double bpc_fast = bpc_or_inf(e, fast), bpc_qk = bpc_or_inf(e, fast_qk);
    char d[32], f[32];
    say(w, " At lr %s the lowest head entropy reaches %s nats without qk-norm against %s at lr %s%s; "
        "with qk-layer-norm it stays at or above %s.", num(rates[1], a), num(lo_fast, b), num(lo_slow, c),
        num(rates[0], d), collapses ? " (a collapse)" : "", num(lo_qk, f));
    if (collapses && kept)
        say(w, " As Zhai et al. (2023) and Wortsman et al. (2023) describe, the large learning rate collapses "
            "attention entropy, and qk-layer-norm keeps it from collapsing (held-out %s bits per character "
            "with it, %s without).", num(bpc_qk, a), isfinite(bpc_fast) ? num(bpc_fast, b) : "diverged");
    else
        say(w, " The collapse Zhai et al. (2023) tie to divergence %s here at this size (held-out %s bits per "
            "character with qk-norm, %s without); qk-layer-norm %s.", collapses ? "appears" : "does not appear",
            num(bpc_qk, a), isfinite(bpc_fast) ? num(bpc_fast, b) : "diverged",
            kept ? "keeps the entropy higher" : "does not keep it higher in this budget");
    say(w, " Advice: normalise q and k (qk-layer-norm) before raising the learning rate.");
}

void lm_study_finding(experiment *e, char *buf, size_t size) {
    writer w = {buf, size, 0};
    buf[0] = '\0';
    int failed = 0;
    for (int i = 0; i < e->n_runs; i++) failed += e->results[i].error[0] != 0;
    if (failed == e->n_runs && e->n_runs > 0) {
        say(&w, "The experiment could not run: %s", e->results[0].error);
        return;
    }
    say(&w, "A character-level GPT (d_model %lld, %lld heads, T = %lld, batch %lld) on %s: gradients by "
        "block at initialisation, warm-up, and attention entropy.", (long long)e->lm->configs[0].d_model,
        (long long)e->lm->configs[0].n_heads, (long long)e->lm->configs[0].block, (long long)e->lm->configs[0].batch,
        e->lm->corpus ? "the fortunes corpus" : "the given text");
    init_finding(e, &w);
    warmup_finding(e, &w);
    entropy_finding(e, &w);
}

/* ---- summary.json -------------------------------------------------------------------------- */

static json_t *real_or_null(double v) {
    return isfinite(v) ? json_real(v) : json_null();
}

static const char *const part_names[] = {"init", "warmup", "entropy"};

void lm_study_json(const experiment *e, int r, json_t *run) {
    const lm_run_config *c = &e->lm->configs[r];
    const lm_run_result *lm = &e->lm->results[r];
    json_object_set_new(run, "model", json_string("gpt"));
    json_object_set_new(run, "depth", json_integer(c->n_layers));
    json_object_set_new(run, "part", json_string(part_names[c->part]));
    json_object_set_new(run, "post_ln", json_boolean(c->post_ln));
    json_object_set_new(run, "qk_norm", json_boolean(c->qk_norm));
    json_object_set_new(run, "lr", json_real(c->lr));
    json_object_set_new(run, "warmup_steps", json_integer(c->warmup));
    json_object_set_new(run, "held_out_bpc", real_or_null(lm->held_out_bpc));
    json_object_set_new(run, "final_train_loss", real_or_null(lm->final_train_loss));
    json_object_set_new(run, "log_T", json_real(log((double)c->block)));
    json_t *steps = json_array(), *mins = json_array(), *heads = json_array();
    for (int s = 0; s < lm->n_samples; s++) {
        json_array_append_new(steps, json_integer(lm->sample_step[s]));
        json_array_append_new(mins, real_or_null(lm->min_entropy[s]));
        json_t *row = json_array();
        for (int l = 0; l < lm->n_layers; l++)
            for (int h = 0; h < lm->n_heads; h++) json_array_append_new(row, real_or_null(lm->entropy[s][l * LM_MAX_HEADS + h]));
        json_array_append_new(heads, row);
    }
    json_object_set_new(run, "entropy_steps", steps);
    json_object_set_new(run, "entropy_min", mins);
    json_object_set_new(run, "entropy_by_head", heads);
    json_object_set_new(run, "min_entropy", real_or_null(lowest_entropy(lm)));
}

/* ---- index.html ---------------------------------------------------------------------------- */

static void init_chart(FILE *f, const experiment *e) {
    tg_plot_series series[MAX_RUNS];
    double x[LM_MAX_LAYERS];
    int n = 0;
    for (int l = 0; l < LM_MAX_LAYERS; l++) x[l] = l + 1;
    for (int i = 0; i < e->n_runs; i++)
        if (e->lm->configs[i].part == LM_PART_INIT && !e->results[i].error[0])
            series[n++] = (tg_plot_series){e->results[i].config.name, x, e->lm->results[i].block_grad_norm,
                                           e->lm->results[i].n_layers, i + 1};
    report_chart(f, &(tg_line_plot){"Gradient norm of each block's parameters at initialisation", "block (1 = input side)",
                              "gradient L2 norm", false, true, series, n, 0, 0});
}

/* Training loss of a part's runs, each a moving average over 10 steps (a step's batch is noisy). */
static void loss_chart(FILE *f, const experiment *e, lm_part part, const char *title) {
    tg_plot_series series[MAX_RUNS];
    double *smooth[MAX_RUNS];
    int n = 0;
    for (int i = 0; i < e->n_runs; i++) {
        const run_result *r = &e->results[i];
        if (e->lm->configs[i].part != part || !r->loss || r->steps_done == 0) continue;
        if (!(smooth[n] = malloc((size_t)r->steps_done * sizeof(double)))) break;
        double sum = 0.0;
        for (int s = 0; s < r->steps_done; s++) {
            sum += r->loss[s] - (s >= 10 ? r->loss[s - 10] : 0.0);
            smooth[n][s] = sum / (s + 1 < 10 ? s + 1 : 10);
        }
        series[n] = (tg_plot_series){r->config.name, NULL, smooth[n], r->steps_done, i + 1};
        n++;
    }
    report_chart(f, &(tg_line_plot){title, "training step", "training loss (nats, mean of 10 steps)", false, true, series, n, 0, 0});
    for (int k = 0; k < n; k++) free(smooth[k]);
}

static void entropy_chart(FILE *f, const experiment *e) {
    tg_plot_series series[MAX_RUNS];
    double x[MAX_RUNS][LM_MAX_SAMPLES];
    int n = 0;
    for (int i = 0; i < e->n_runs; i++) {
        const lm_run_result *lm = &e->lm->results[i];
        if (e->lm->configs[i].part != LM_PART_ENTROPY || lm->n_samples == 0) continue;
        for (int s = 0; s < lm->n_samples; s++) x[n][s] = lm->sample_step[s];
        series[n] = (tg_plot_series){e->results[i].config.name, x[n], lm->min_entropy, lm->n_samples, i + 1};
        n++;
    }
    report_chart(f, &(tg_line_plot){"Lowest attention entropy of any head", "training step", "entropy (nats)", false, false,
                              series, n, 0, 0});
}

/* Each entropy run: heads (block.head) x samples. */
static void entropy_heatmaps(FILE *f, const experiment *e) {
    for (int i = 0; i < e->n_runs; i++) {
        const lm_run_result *lm = &e->lm->results[i];
        if (e->lm->configs[i].part != LM_PART_ENTROPY || lm->n_samples == 0) continue;
        int rows = lm->n_layers * lm->n_heads;
        double *cells = malloc((size_t)rows * (size_t)lm->n_samples * sizeof *cells), cols[LM_MAX_SAMPLES];
        char names[LM_MAX_LAYERS * LM_MAX_HEADS][24];
        const char *row_names[LM_MAX_LAYERS * LM_MAX_HEADS];
        if (!cells) return;
        for (int s = 0; s < lm->n_samples; s++) cols[s] = lm->sample_step[s];
        for (int l = 0; l < lm->n_layers; l++)
            for (int h = 0; h < lm->n_heads; h++) {
                int row = l * lm->n_heads + h;
                snprintf(names[row], sizeof names[row], "block %d head %d", l + 1, h + 1);
                row_names[row] = names[row];
                for (int s = 0; s < lm->n_samples; s++) cells[row * lm->n_samples + s] = lm->entropy[s][l * LM_MAX_HEADS + h];
            }
        char title[160];
        snprintf(title, sizeof title, "%s: attention entropy, head x step", e->results[i].config.name);
        fputs("<figure>", f);
        tg_svg_heatmap(f, &(tg_heatmap){title, "training step", "head", "entropy (nats)", cells, rows, lm->n_samples,
                                        row_names, cols, false, 0, 0});
        fputs("</figure>\n", f);
        free(cells);
    }
}

static void runs_table(FILE *f, const experiment *e) {
    fputs("<table><tr><th>run</th><th>blocks</th><th>norm</th><th>qk-norm</th><th>Adam lr</th><th>warm-up</th>"
          "<th>steps x batch</th><th>training loss</th><th>held-out bpc</th><th>lowest entropy</th>"
          "<th>first NaN</th><th>time</th></tr>\n", f);
    for (int i = 0; i < e->n_runs; i++) {
        const lm_run_config *c = &e->lm->configs[i];
        const lm_run_result *lm = &e->lm->results[i];
        const run_result *r = &e->results[i];
        char v[3][32], nan_step[24] = "-";
        if (r->first_nan_step >= 0) snprintf(nan_step, sizeof nan_step, "%lld", (long long)r->first_nan_step);
        fputs("<tr><td>", f);
        for (const char *s = r->config.name; *s; s++) fputs(*s == '<' ? "&lt;" : *s == '&' ? "&amp;" : (char[2]){*s, 0}, f);
        fprintf(f, "</td><td>%d</td><td>%s</td><td>%s</td><td>%g</td><td>%d steps</td><td>%d x %lld</td>"
                "<td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%.1f s</td></tr>\n", c->n_layers,
                c->post_ln ? "post-LN" : "pre-LN", c->qk_norm ? "yes" : "no", (double)c->lr, c->warmup,
                c->part == LM_PART_INIT ? 0 : c->steps, (long long)c->batch, num(lm->final_train_loss, v[0]),
                num(lm->held_out_bpc, v[1]), num(lowest_entropy(lm), v[2]), nan_step, r->seconds);
    }
    fputs("</table>\n", f);
}

void lm_study_html(FILE *f, const experiment *e) {
    fputs("<div class=\"charts\">\n", f);
    init_chart(f, e);
    loss_chart(f, e, LM_PART_WARMUP, "Post-LN with and without warm-up, and pre-LN");
    loss_chart(f, e, LM_PART_ENTROPY, "Training loss: learning rate and qk-norm");
    entropy_chart(f, e);
    entropy_heatmaps(f, e);
    fputs("</div>\n", f);
    runs_table(f, e);
}
