/*
 * models/attention.c — token embeddings and multi-head self-attention, with PyTorch's names
 * (nn.Embedding: "weight"; nn.MultiheadAttention: "in_proj_weight", "in_proj_bias",
 * "out_proj.weight", "out_proj.bias"), so their checkpoints move between the two.
 */
#include "models/models.h"

#include <math.h>
#include <stdio.h>

/* ---- embedding ----------------------------------------------------------------------------- */

static tg_tensor *embedding_forward(tg_module *m, tg_tape *tape, tg_tensor *ids) {
    return tg_embedding(tape, ids, m->params[0]);
}

static const tgi_module_class embedding_class = {"embedding", embedding_forward, NULL, 0, false};

tg_module *tg_embedding_new(tg_ctx *ctx, const char *name, int64_t num, int64_t dim,
                            const tg_init *init, uint64_t seed) {
    if (!ctx || tgi_check_name(ctx, "embedding", name) != TG_OK) return NULL;
    if (num < 1 || dim < 1) {
        tgi_error(ctx, TG_ERR_INVALID, "embedding '%s': %lld x %lld, expected num and dim >= 1",
                  name, (long long)num, (long long)dim);
        return NULL;
    }
    tg_module *m = tgi_module_new(ctx, &embedding_class, "%s", name);
    if (!m) return NULL;
    tg_init table_init = tgi_init_or(init, tg_init_normal(0.0f, 1.0f)); /* nn.Embedding's */
    if (!tgi_module_param(m, "weight", TG_SHAPE(num, dim), &table_init, seed)) {
        tg_module_free(m);
        return NULL;
    }
    return m;
}

/* ---- multi-head self-attention ------------------------------------------------------------- */

typedef struct mha_impl {
    tg_mha_config config;
    tg_module *out_proj, *q_norm, *k_norm;
    char probs_label[TG_LABEL_MAX];
} mha_impl;

/* [B, T, E] columns [at, at + E) of qkv as heads [B, H, T, D], optionally layer-normed. */
static tg_tensor *split_heads(tg_tape *tape, const mha_impl *impl, tg_tensor *qkv, int64_t at,
                              tg_module *norm) {
    int64_t b = qkv->shape[0], t = qkv->shape[1], e = impl->config.embed_dim,
            h = impl->config.num_heads;
    tg_tensor *part = tg_reshape(tape, tg_slice(tape, qkv, 2, at, at + e), TG_SHAPE(b, t, h, e / h));
    tg_tensor *heads = tg_permute(tape, part, TG_SHAPE(0, 2, 1, 3));
    return norm ? tg_module_forward(norm, tape, heads) : heads;
}

/* softmax(q k^T / sqrt(D) + mask) v as ops of their own, the probabilities a labelled node
 * [B, H, T, T] that hooks see (the fused op keeps them inside). */
static tg_tensor *attention_by_parts(tg_tape *tape, const mha_impl *impl, tg_tensor *q,
                                     tg_tensor *k, tg_tensor *v) {
    int64_t t = q->shape[2], d = q->shape[3];
    tg_tensor *scores = tg_scale(tape, tg_matmul(tape, q, tg_transpose(tape, k, 2, 3)),
                                 1.0f / sqrtf((float)d));
    if (impl->config.causal && scores) {
        tg_tensor *mask = tg_tape_zeros(tape, TG_SHAPE(t, t));
        if (!mask) return NULL;
        for (int64_t i = 0; i < t; i++)
            for (int64_t j = i + 1; j < t; j++) mask->data[i * t + j] = 1.0f;
        scores = tg_masked_fill(tape, scores, mask, -INFINITY);
    }
    tg_tape_label_next(tape, "%s", impl->probs_label);
    return tg_matmul(tape, tg_softmax_axis(tape, scores, -1), v);
}

static tg_tensor *mha_forward(tg_module *m, tg_tape *tape, tg_tensor *x) {
    mha_impl *impl = m->impl;
    const tg_mha_config *c = &impl->config;
    if (!tape || !x) return NULL;
    if (x->ndim != 3 || x->shape[2] != c->embed_dim) {
        char shape[96];
        tgi_error(m->ctx, TG_ERR_SHAPE, "attention '%s': input %s, expected [B, T, %lld]", m->name,
                  tgi_format_shape(x->ndim, x->shape, shape, sizeof shape), (long long)c->embed_dim);
        return NULL;
    }
    tg_tensor *qkv = tg_linear(tape, x, m->params[0], m->params[1]);
    bool probs_watched = tgi_label_watched(m->ctx, impl->probs_label);
    tg_tensor *merged;
    if (!c->qk_norm && !probs_watched) {
        merged = tg_attention_qkv(tape, qkv, c->num_heads, c->causal, 0.0f);
    } else {
        if (!qkv) return NULL;
        int64_t e = c->embed_dim;
        tg_tensor *q = split_heads(tape, impl, qkv, 0, impl->q_norm);
        tg_tensor *k = split_heads(tape, impl, qkv, e, impl->k_norm);
        tg_tensor *v = split_heads(tape, impl, qkv, 2 * e, NULL);
        tg_tensor *heads = probs_watched ? attention_by_parts(tape, impl, q, k, v)
                                         : tg_attention(tape, q, k, v, c->causal, 0.0f);
        merged = tg_reshape(tape, tg_permute(tape, heads, TG_SHAPE(0, 2, 1, 3)),
                            TG_SHAPE(x->shape[0], x->shape[1], e));
    }
    return tg_module_forward(impl->out_proj, tape, merged);
}

static const tgi_module_class mha_class = {"attention", mha_forward, NULL, sizeof(mha_impl), false};

tg_mha_config tg_mha_defaults(int64_t embed_dim, int64_t num_heads) {
    tg_mha_config c = {.embed_dim = embed_dim, .num_heads = num_heads, .seed = 1};
    return c;
}

tg_module *tg_mha_new(tg_ctx *ctx, const char *name, const tg_mha_config *config) {
    if (!ctx || tgi_check_name(ctx, "attention", name) != TG_OK) return NULL;
    if (!config || config->embed_dim < 1 || config->num_heads < 1 ||
        config->embed_dim % config->num_heads != 0) {
        tgi_error(ctx, TG_ERR_INVALID, "attention '%s': embed_dim %lld must be a positive multiple "
                  "of num_heads %lld", name, config ? (long long)config->embed_dim : 0LL,
                  config ? (long long)config->num_heads : 0LL);
        return NULL;
    }
    /* in_proj stacks q, k and v: 3 E rows */
    if (tgi_layer_size(ctx, "attention", name, "embed_dim", config->embed_dim,
                       "projections (q, k, v)", 3) < 0)
        return NULL;
    tg_module *m = tgi_module_new(ctx, &mha_class, "%s", name);
    if (!m) return NULL;
    mha_impl *impl = m->impl;
    impl->config = *config;
    snprintf(impl->probs_label, sizeof impl->probs_label, "%s.probs", m->name);
    int64_t e = config->embed_dim, d = e / config->num_heads;
    tg_init xavier = tg_init_xavier(TG_ACT_IDENTITY); /* nn.MultiheadAttention's in_proj */
    bool ok = tgi_module_param(m, "in_proj_weight", TG_SHAPE(3 * e, e), &xavier, config->seed) &&
              tgi_module_param(m, "in_proj_bias", TG_SHAPE(3 * e), NULL, 0) &&
              (impl->out_proj = tgi_child_linear(m, "out_proj", e, e, &xavier,
                                                 tgi_seed_mix(config->seed, 1)));
    if (ok && config->qk_norm)
        ok = (impl->q_norm = tgi_child_norm(m, "q_norm", TG_NORM_LAYER, d)) &&
             (impl->k_norm = tgi_child_norm(m, "k_norm", TG_NORM_LAYER, d));
    if (!ok) {
        tg_module_free(m);
        return NULL;
    }
    return m;
}
