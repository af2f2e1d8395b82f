/*
 * models/lm.c — what every language model shares: the next-token loss, generation, and the
 * character-level recurrent model (embedding, stacked RNN/LSTM/GRU, linear head).
 */
#include "models/models.h"

#include <math.h>
#include <stdio.h>

/* ---- loss ---------------------------------------------------------------------------------- */

tg_tensor *tg_lm_loss(tg_tape *tape, tg_tensor *logits, tg_tensor *targets) {
    if (!tape) return NULL;
    if (!logits || !targets) {
        tgi_error(tape->ctx, TG_ERR_INVALID, "lm_loss: %s is NULL", logits ? "targets" : "logits");
        return NULL;
    }
    if (logits->ndim != 3 || targets->ndim != 2 || targets->shape[0] != logits->shape[0] ||
        targets->shape[1] != logits->shape[1]) {
        char a[96], b[96];
        tgi_error(tape->ctx, TG_ERR_SHAPE, "lm_loss: logits %s and targets %s, expected [B, T, V] "
                  "and [B, T]", tgi_format_shape(logits->ndim, logits->shape, a, sizeof a),
                  tgi_format_shape(targets->ndim, targets->shape, b, sizeof b));
        return NULL;
    }
    /* cross_entropy takes [B, T, V] and [B, T] as they are: reshaping the targets would be an
     * op off the tape (they want no gradient), and tg_tape_replay refuses a step holding one */
    return tg_cross_entropy(tape, logits, targets);
}

/* ---- generation ---------------------------------------------------------------------------- */

/* A token drawn from softmax(row / temperature), or the largest entry for temperature 0. */
static int64_t draw_token(const float *row, int64_t vocab, float temperature, tg_rng *rng) {
    int64_t best = 0;
    for (int64_t j = 1; j < vocab; j++) best = row[j] > row[best] ? j : best;
    if (temperature <= 0.0f) return best;
    double total = 0.0;
    for (int64_t j = 0; j < vocab; j++) total += exp((double)(row[j] - row[best]) / temperature);
    double u = tg_rng_uniform(rng) * total;
    for (int64_t j = 0; j < vocab; j++) {
        u -= exp((double)(row[j] - row[best]) / temperature);
        if (u <= 0.0) return j;
    }
    return best; /* rounding left a sliver: the likeliest token */
}

tg_status tg_lm_generate(tg_module *model, tg_tape *tape, float *ids, int64_t n_prompt,
                         int64_t n_new, int64_t context, float temperature, uint64_t seed) {
    if (!model) return TG_ERR_INVALID;
    tg_ctx *ctx = model->ctx;
    if (!tape || tape->ctx != ctx)
        return tgi_error(ctx, TG_ERR_INVALID, "lm_generate: %s", tape ? "the tape is of another "
                         "context than the model" : "tape is NULL");
    if (!ids || n_prompt < 1 || n_new < 0 || context < 1 || !(temperature >= 0.0f) ||
        !isfinite(temperature))
        return tgi_error(ctx, TG_ERR_INVALID, "lm_generate: needs ids, a prompt of >= 1 token, "
                         "n_new >= 0, context >= 1 and a finite temperature >= 0");
    bool was_training = model->training;
    tg_module_set_training(model, false);
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    tg_status status = TG_OK;
    for (int64_t n = n_prompt; n < n_prompt + n_new && status == TG_OK; n++) {
        int64_t t = n < context ? n : context;
        tg_tape_reset(tape);
        tg_no_grad_begin(tape);
        tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(1, t), ids + n - t);
        tg_tensor *logits = tg_module_forward(model, tape, x);
        tg_no_grad_end(tape);
        if (!logits || logits->ndim != 3 || logits->shape[1] != t) {
            status = logits ? tgi_error(ctx, TG_ERR_SHAPE, "lm_generate: the model's output is "
                                        "not [1, T, V]") : tg_errcode(ctx);
            break;
        }
        int64_t vocab = logits->shape[2];
        ids[n] = (float)draw_token(logits->data + (t - 1) * vocab, vocab, temperature, &rng);
    }
    tg_tape_reset(tape);
    tg_module_set_training(model, was_training);
    return status;
}

/* ---- character-level recurrent model ------------------------------------------------------- */

typedef struct rnn_lm_impl {
    tg_module *embed, *rnn, *head;
} rnn_lm_impl;

static tg_tensor *rnn_lm_forward(tg_module *m, tg_tape *tape, tg_tensor *ids) {
    rnn_lm_impl *impl = m->impl;
    tg_tensor *x = tg_module_forward(impl->embed, tape, ids);
    tg_tensor *h = x ? tg_rnn_sequence(impl->rnn, tape, x, NULL, NULL, NULL) : NULL;
    tg_tape_label_next(tape, "%s.logits", m->name);
    return tg_module_forward(impl->head, tape, h);
}

static const tgi_module_class rnn_lm_class = {"rnn_lm", rnn_lm_forward, NULL, sizeof(rnn_lm_impl), false};

tg_module *tg_rnn_lm_new(tg_ctx *ctx, const char *name, const tg_rnn_lm_config *config) {
    if (!ctx || tgi_check_name(ctx, "rnn_lm", name) != TG_OK) return NULL;
    if (!config || config->vocab < 1 || config->embed_dim < 1 || config->hidden < 1) {
        tgi_error(ctx, TG_ERR_INVALID, "rnn_lm '%s': needs vocab, embed_dim and hidden >= 1", name);
        return NULL;
    }
    tg_module *m = tgi_module_new(ctx, &rnn_lm_class, "%s", name);
    if (!m) return NULL;
    rnn_lm_impl *impl = m->impl;
    char child[TGI_NAME_MAX];
    snprintf(child, sizeof child, "%s.embed", m->name);
    impl->embed = tg_embedding_new(ctx, child, config->vocab, config->embed_dim, NULL,
                                   tgi_seed_mix(config->seed, 1));
    bool ok = tgi_module_adopt(m, impl->embed) == TG_OK;
    if (ok) {
        tg_rnn_config rc = tg_rnn_defaults(config->kind, config->embed_dim, config->hidden);
        rc.num_layers = config->num_layers;
        rc.seed = tgi_seed_mix(config->seed, 2);
        snprintf(child, sizeof child, "%s.rnn", m->name);
        impl->rnn = tg_rnn_new(ctx, child, &rc);
        ok = tgi_module_adopt(m, impl->rnn) == TG_OK;
    }
    tg_init xavier = tg_init_xavier(TG_ACT_IDENTITY);
    ok = ok && (impl->head = tgi_child_linear(m, "head", config->hidden, config->vocab, &xavier,
                                              tgi_seed_mix(config->seed, 3)));
    if (!ok) {
        tgi_module_destroy(m);
        return NULL;
    }
    return m;
}
