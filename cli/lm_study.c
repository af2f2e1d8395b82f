/*
 * cli/lm_study.c — the `transformer` experiment's runs: a character-level GPT trained on the
 * fortunes corpus (or a text the caller gives), measuring what the three findings need:
 * each block's gradient norm at the first step (post- against pre-LN, Xiong et al. 2020),
 * training loss and held-out bits per character with and without warm-up, and the entropy of
 * every attention head over training (Zhai et al. 2023; Wortsman et al. 2023 on qk-layer-norm).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/lm_study.h"

/* ---- configurations ------------------------------------------------------------------------ */

static lm_run_config base_config(lm_part part, int layers, bool post_ln, uint64_t seed) {
    return (lm_run_config){.part = part, .n_layers = layers, .d_model = 64, .n_heads = 4, .block = 64,
                           .batch = 16, .post_ln = post_ln, .lr = 1e-3f, .steps = 1, .seed = seed};
}

static void add_lm_run(experiment *e, const char *name, lm_run_config c) {
    run_config *rc = &e->runs[e->n_runs];
    memset(rc, 0, sizeof *rc);
    snprintf(rc->name, sizeof rc->name, "%s", name);
    rc->steps = c.steps;
    rc->batch = c.batch;
    rc->seed = c.seed;
    rc->opt = (tg_optimizer_config){.kind = TG_OPT_ADAM, .lr = c.lr};
    e->lm->configs[e->n_runs++] = c;
}

/* Part 1: one backward pass at initialisation, post- and pre-LN at two depths. */
static void add_init_runs(experiment *e, uint64_t seed, const int depths[2]) {
    char name[96];
    for (int d = 0; d < 2; d++)
        for (int post = 1; post >= 0; post--) {
            snprintf(name, sizeof name, "%s, %d layers, at init", post ? "post-LN" : "pre-LN", depths[d]);
            add_lm_run(e, name, base_config(LM_PART_INIT, depths[d], post, seed));
        }
}

/* Part 2: Adam at a learning rate post-LN is known to need warm-up for, over a quarter of the
 * steps, against pre-LN without it. */
static void add_warmup_runs(experiment *e, uint64_t seed, int layers, int steps, int eval_batches) {
    static const struct { const char *name; bool post_ln, warmup; } runs[] = {
        {"post-LN, no warm-up", true, false}, {"post-LN, warm-up", true, true}, {"pre-LN, no warm-up", false, false}};
    for (int i = 0; i < 3; i++) {
        lm_run_config c = base_config(LM_PART_WARMUP, layers, runs[i].post_ln, seed);
        c.lr = 3e-3f;
        c.steps = steps;
        c.warmup = runs[i].warmup ? steps / 4 : 0;
        c.eval_batches = eval_batches;
        char name[96];
        snprintf(name, sizeof name, "%s (%d layers)", runs[i].name, layers);
        add_lm_run(e, name, c);
    }
}

/* Part 3: pre-LN at a normal and a 10x learning rate, with and without qk-layer-norm. */
static void add_entropy_runs(experiment *e, uint64_t seed, int layers, int steps, int eval_batches) {
    static const float rates[2] = {1e-3f, 1e-2f};
    for (int k = 0; k < 2; k++)
        for (int qk = 0; qk < 2; qk++) {
            lm_run_config c = base_config(LM_PART_ENTROPY, layers, false, seed);
            c.lr = rates[k];
            c.qk_norm = qk;
            c.steps = steps;
            c.entropy_every = steps / 10 > 0 ? steps / 10 : 1;
            c.eval_batches = eval_batches;
            char name[96];
            snprintf(name, sizeof name, "lr %g%s", (double)rates[k], qk ? ", qk-norm" : "");
            add_lm_run(e, name, c);
        }
}

bool lm_study_setup(experiment *e, uint64_t seed, bool quick, const char *text, int64_t text_length) {
    e->lm = calloc(1, sizeof *e->lm);
    if (!e->lm) return false;
    e->lm->corpus = text ? NULL : "fortunes";
    e->lm->text = text;
    e->lm->text_length = text_length;
    e->title = "Transformers: post-LN against pre-LN, learning-rate warm-up, attention entropy";
    e->question = "Why does the original post-LN transformer need warm-up (Xiong et al. 2020), and does "
                  "attention entropy collapse at a large learning rate unless q and k are normalised "
                  "(Zhai et al. 2023, Wortsman et al. 2023)?";
    static const int depths[2] = {6, 12};
    add_init_runs(e, seed, depths);
    /* 4 and 2 blocks, 100 steps: a 4-block step costs ~0.07 s on one core and the whole
     * experiment has to stay within ~25 s on two; at lr 1e-2 the entropy collapses by step ~80 */
    add_warmup_runs(e, seed, 4, quick ? 10 : 100, quick ? 1 : 4);
    add_entropy_runs(e, seed, 2, quick ? 10 : 100, quick ? 1 : 4);
    return true;
}

void lm_study_free(experiment *e) {
    free(e->lm);
    e->lm = NULL;
}

/* ---- measurements -------------------------------------------------------------------------- */

typedef struct entropy_probe {
    lm_run_result *lm;
    int sample;
} entropy_probe;

/* Forward hook on "<name>.block<i>.attn.probs" [B, H, T, T]: the mean over rows and query
 * positions of each head's -sum p log p. A causal row t spreads over t + 1 keys at most, so a
 * head's value lies in [0, mean_t log(t + 1)] <= log T. */
static tg_status on_probs(tg_ctx *ctx, const tg_hook_event *event, void *user) {
    (void)ctx;
    entropy_probe *probe = user;
    const char *block = strstr(event->name, ".block");
    int layer = -1;
    if (!block || sscanf(block, ".block%d.", &layer) != 1 || layer < 0 || layer >= LM_MAX_LAYERS) return TG_OK;
    const tg_tensor *p = event->node;
    int64_t rows = p->shape[0], heads = p->shape[1], t = p->shape[2], keys = p->shape[3];
    if (p->ndim != 4 || heads > LM_MAX_HEADS) return TG_OK;
    for (int64_t h = 0; h < heads; h++) {
        double sum = 0.0;
        for (int64_t b = 0; b < rows; b++)
            for (int64_t q = 0; q < t; q++) {
                const float *row = event->values + ((b * heads + h) * t + q) * keys;
                for (int64_t k = 0; k < keys; k++)
                    if (row[k] > 0) sum -= (double)row[k] * log((double)row[k]);
            }
        probe->lm->entropy[probe->sample][layer * LM_MAX_HEADS + h] = sum / (double)(rows * t);
    }
    return TG_OK;
}

/* Block of each parameter ("gpt.block3.fc.weight" -> 3), -1 for the embeddings and head. */
static void param_blocks(tg_tensor *const *params, int n, int *block) {
    for (int i = 0; i < n; i++) {
        const char *at = strstr(params[i]->label, ".block");
        block[i] = -1;
        if (at && sscanf(at, ".block%d.", &block[i]) != 1) block[i] = -1;
        if (block[i] >= LM_MAX_LAYERS) block[i] = -1;
    }
}

/* The global gradient norm; by_block: the norm of each block's weight matrices (attention's
 * in and out projections, fc, proj: the W of Xiong et al.'s analysis), all_by_block: of all its
 * parameters (biases and norms too). */
static double gradient_norms(tg_tensor *const *params, const int *block, int n, int layers, double *by_block,
                             double *all_by_block) {
    double total = 0.0;
    for (int l = 0; l < layers; l++) by_block[l] = all_by_block[l] = 0.0;
    for (int i = 0; i < n; i++) {
        double s = 0.0;
        for (int64_t k = 0; params[i]->grad && k < params[i]->size; k++) s += (double)params[i]->grad[k] * params[i]->grad[k];
        total += s;
        if (block[i] < 0 || block[i] >= layers) continue;
        all_by_block[block[i]] += s;
        if (params[i]->ndim == 2) by_block[block[i]] += s;
    }
    for (int l = 0; l < layers; l++) {
        by_block[l] = sqrt(by_block[l]);
        all_by_block[l] = sqrt(all_by_block[l]);
    }
    return sqrt(total);
}

/* Held-out bits per character over the first `batches` full windows batches, in order. */
static double held_out_bpc(tg_text *text, tg_module *gpt, const lm_run_config *c, tg_tape *tape) {
    tg_text_batcher *b = tg_text_batcher_new(text, TG_TEXT_HELD_OUT, TG_TEXT_SEQUENTIAL, c->batch, c->block, c->seed);
    if (!b) return NAN;
    double nats = 0.0;
    int counted = 0;
    tg_module_set_training(gpt, false);
    for (int i = 0; i < c->eval_batches; i++) {
        tg_tape_reset(tape);
        tg_tensor *x = tg_tape_zeros(tape, TG_SHAPE(c->batch, c->block));
        tg_tensor *y = tg_tape_zeros(tape, TG_SHAPE(c->batch, c->block));
        if (tg_text_batcher_next_into(b, x, y) != c->batch) break; /* whole batches only */
        tg_no_grad_begin(tape);
        tg_tensor *loss = tg_lm_loss(tape, tg_module_forward(gpt, tape, x), y);
        tg_no_grad_end(tape);
        if (!loss) break;
        nats += loss->data[0];
        counted++;
    }
    tg_module_set_training(gpt, true);
    tg_text_batcher_free(b);
    return counted ? nats / counted / log(2.0) : NAN;
}

/* ---- one run ------------------------------------------------------------------------------- */

/* A block has at most 16 parameter tensors (qk-norm's included), the model 4 more. */
#define LM_MAX_PARAMS (16 * LM_MAX_LAYERS + 4)

typedef struct lm_state {
    tg_module *gpt;
    tg_tape *tape;
    tg_optimizer *opt;
    tg_text_batcher *batches;
    tg_tensor *params[LM_MAX_PARAMS];
    int block[LM_MAX_PARAMS];
    int n_params;
} lm_state;

static bool lm_state_open(tg_ctx *ctx, tg_text *text, const lm_run_config *c, lm_state *s) {
    tg_gpt_config g = {.vocab = tg_text_vocab_size(text), .block_size = c->block, .d_model = c->d_model,
                       .n_heads = c->n_heads, .n_layers = c->n_layers, .post_ln = c->post_ln,
                       .qk_norm = c->qk_norm, .seed = c->seed};
    if (!(s->gpt = tg_gpt_new(ctx, "gpt", &g)) || !(s->tape = tg_tape_new(ctx))) return false;
    s->n_params = tg_module_params(s->gpt, s->params, LM_MAX_PARAMS); /* lm_run caps the layers */
    if (s->n_params < 0) return false;
    param_blocks(s->params, s->n_params, s->block);
    s->opt = tg_optimizer_new(ctx, s->params, s->n_params, &(tg_optimizer_config){.kind = TG_OPT_ADAM, .lr = c->lr});
    s->batches = tg_text_batcher_new(text, TG_TEXT_TRAIN, TG_TEXT_RANDOM, c->batch, c->block, c->seed + 1);
    return s->opt && s->batches;
}

static void lm_state_close(lm_state *s) {
    tg_text_batcher_free(s->batches);
    tg_optimizer_free(s->opt);
    tg_tape_free(s->tape);
    tg_module_free(s->gpt);
}

static bool allocate_series(run_result *out, int layers, int steps) {
    out->loss = malloc((size_t)steps * sizeof *out->loss);
    out->grad_norm = malloc((size_t)steps * sizeof *out->grad_norm);
    out->layer_norms = malloc((size_t)layers * (size_t)steps * sizeof *out->layer_norms);
    if (!out->loss || !out->grad_norm || !out->layer_norms) return false;
    for (int64_t i = 0; i < steps; i++) out->loss[i] = out->grad_norm[i] = NAN;
    for (int64_t i = 0; i < (int64_t)layers * steps; i++) out->layer_norms[i] = NAN;
    return true;
}

/* One step: forward (entropy hooked when sampled), backward, norms, update. false on an error
 * (message on ctx); a non-finite loss is not an error but the end of the run. */
static bool lm_step(tg_ctx *ctx, lm_state *s, const lm_run_config *c, int step, run_result *out, lm_run_result *lm) {
    entropy_probe probe = {lm, lm->n_samples};
    bool sample = c->entropy_every > 0 && (step % c->entropy_every == 0 || step == c->steps - 1) &&
                  lm->n_samples < LM_MAX_SAMPLES;
    /* hooked only when sampled: a matched probs node makes attention run by parts, slower */
    int64_t hook = sample ? tg_hook_pattern(ctx, "*.attn.probs", TG_PASS_FORWARD, on_probs, &probe) : 0;
    if (hook < 0) return false;
    tg_tape_reset(s->tape);
    tg_tensor *x = tg_tape_zeros(s->tape, TG_SHAPE(c->batch, c->block));
    tg_tensor *y = tg_tape_zeros(s->tape, TG_SHAPE(c->batch, c->block));
    tg_tensor *loss = tg_text_batcher_next_into(s->batches, x, y) == c->batch
                          ? tg_lm_loss(s->tape, tg_module_forward(s->gpt, s->tape, x), y) : NULL;
    if (sample) tg_hook_remove(ctx, hook);
    if (!loss) return false;
    if (sample) {
        lm->sample_step[lm->n_samples++] = step;
        double lowest = INFINITY;
        for (int l = 0; l < c->n_layers; l++)
            for (int h = 0; h < c->n_heads; h++) lowest = fmin(lowest, lm->entropy[probe.sample][l * LM_MAX_HEADS + h]);
        lm->min_entropy[probe.sample] = lowest;
    }
    out->loss[step] = loss->data[0];
    if (!isfinite(out->loss[step])) return true;
    if (tg_backward(s->tape, loss) != TG_OK) return false;
    double by_block[LM_MAX_LAYERS], all_by_block[LM_MAX_LAYERS];
    out->grad_norm[step] = gradient_norms(s->params, s->block, s->n_params, c->n_layers, by_block, all_by_block);
    for (int l = 0; l < c->n_layers; l++) out->layer_norms[(int64_t)l * c->steps + step] = by_block[l];
    for (int l = 0; step == 0 && l < c->n_layers; l++) {
        lm->block_grad_norm[l] = out->grad_norm_by_layer[l] = by_block[l];
        lm->block_grad_norm_all[l] = all_by_block[l];
    }
    if (c->part == LM_PART_INIT) return true; /* measured before any update */
    if (c->warmup > 0) tg_optimizer_set_lr(s->opt, c->lr * fminf(1.0f, (float)(step + 1) / (float)c->warmup));
    return tg_optimizer_step_zero_grad(s->opt) == TG_OK;
}

static void fill_defaults(run_result *out, lm_run_result *lm, const lm_run_config *c) {
    out->n_layers = c->n_layers;
    for (int l = 0; l < c->n_layers; l++) snprintf(out->layer_names[l], sizeof out->layer_names[l], "block %d", l + 1);
    out->first_last_ratio = out->final_loss = out->test_accuracy = out->train_loss = out->train_accuracy = NAN;
    out->weight_norm = NAN;
    out->explosion_onset_step = out->first_nan_step = -1;
    lm->n_layers = c->n_layers;
    lm->n_heads = (int)c->n_heads;
    lm->held_out_bpc = lm->final_train_loss = NAN;
}

void lm_run(tg_ctx *ctx, tg_text *text, const lm_run_config *c, run_result *out, lm_run_result *lm,
            progress_fn progress, void *user) {
    fill_defaults(out, lm, c);
    lm_state s = {0};
    if (c->n_layers > LM_MAX_LAYERS || c->n_heads > LM_MAX_HEADS) {
        snprintf(out->error, sizeof out->error, "at most %d layers and %d heads", LM_MAX_LAYERS, LM_MAX_HEADS);
        return;
    }
    if (!allocate_series(out, c->n_layers, c->steps)) {
        snprintf(out->error, sizeof out->error, "out of memory");
        return;
    }
    bool ok = lm_state_open(ctx, text, c, &s);
    if (ok) out->n_param_elements = tg_module_num_elements(s.gpt);
    for (int step = 0; ok && step < c->steps; step++) {
        ok = lm_step(ctx, &s, c, step, out, lm);
        out->steps_done = step + 1;
        if (ok && !isfinite(out->loss[step])) {
            out->first_nan_step = step;
            break;
        }
        if (progress && (step % 10 == 9 || step == c->steps - 1)) progress(user, step + 1, out->loss[step]);
    }
    if (!ok) snprintf(out->error, sizeof out->error, "%s", tg_errmsg(ctx));
    if (ok && out->n_layers > 0) out->first_last_ratio = out->grad_norm_by_layer[0] / out->grad_norm_by_layer[out->n_layers - 1];
    if (ok && out->first_nan_step < 0 && c->part != LM_PART_INIT) {
        double sum = 0.0;
        int n = 0;
        for (int k = out->steps_done - 1; k >= 0 && n < 10; k--, n++) sum += out->loss[k];
        lm->final_train_loss = sum / n;
        if (c->eval_batches > 0) lm->held_out_bpc = held_out_bpc(text, s.gpt, c, s.tape);
        out->final_loss = lm->held_out_bpc * log(2.0);
    }
    lm_state_close(&s);
}

/* ---- a run of the study -------------------------------------------------------------------- */

static tg_text *load_text(tg_ctx *ctx, const lm_study *study, char *why, size_t size) {
    tg_text *text = study->corpus ? tg_text_load_corpus(ctx, study->corpus)
                                  : tg_text_from_memory(ctx, study->text, study->text_length);
    if (!text) {
        snprintf(why, size, "no %s corpus: %s (./setup.sh installs Debian's package fortunes)",
                 study->corpus ? study->corpus : "text", tg_errmsg(ctx));
        return NULL;
    }
    /* chunks of 4096 bytes, a tenth held out: the same split for every run of one seed */
    int64_t chunk = tg_text_length(text) >= 40960 ? 4096 : tg_text_length(text) / 10;
    if (tg_text_split(text, 0.1, chunk, 1) != TG_OK) {
        snprintf(why, size, "cannot split the corpus: %s", tg_errmsg(ctx));
        tg_text_free(text);
        return NULL;
    }
    return text;
}

void lm_study_train(experiment *e, int r, progress_fn progress, void *user) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run_result *out = &e->results[r];
    memset(out, 0, sizeof *out);
    out->config = e->runs[r];
    lm_run_config c = e->lm->configs[r];
    c.threads = e->runs[r].threads;
    tg_ctx *ctx = tg_ctx_new();
    tg_text *text = NULL;
    if (!ctx) snprintf(out->error, sizeof out->error, "out of memory");
    else if (tg_ctx_set_threads(ctx, c.threads) == TG_OK &&
             (text = load_text(ctx, e->lm, out->error, sizeof out->error)))
        lm_run(ctx, text, &c, out, &e->lm->results[r], progress, user);
    if (!text) fill_defaults(out, &e->lm->results[r], &c);
    tg_text_free(text);
    tg_ctx_free(ctx);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    out->seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
}
