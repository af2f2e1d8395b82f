/*
 * models/transformer.c — the transformer block (pre-LN or post-LN) and a decoder-only language
 * model on it (GPT: token and position embeddings, causal blocks, final norm, head).
 */
#include "models/models.h"

#include <stdio.h>

/* ---- block --------------------------------------------------------------------------------- */

typedef struct block_impl {
    tg_transformer_config config;
    tg_module *ln1, *attn, *ln2, *fc, *proj;
    uint64_t calls;          /* forward passes so far: each draws fresh dropout masks */
} block_impl;

static tg_tensor *branch_dropout(tg_module *m, tg_tape *tape, tg_tensor *x, uint64_t which) {
    block_impl *impl = m->impl;
    float p = impl->config.dropout;
    if (p <= 0.0f || !m->training) return x;
    return tg_dropout(tape, x, p, tgi_seed_mix(impl->config.seed, impl->calls * 4 + which));
}

static tg_tensor *mlp_branch(tg_module *m, tg_tape *tape, tg_tensor *x) {
    block_impl *impl = m->impl;
    tg_tensor *hidden = tg_gelu(tape, tg_module_forward(impl->fc, tape, x));
    return branch_dropout(m, tape, tg_module_forward(impl->proj, tape, hidden), 1);
}

static tg_tensor *block_forward(tg_module *m, tg_tape *tape, tg_tensor *x) {
    block_impl *impl = m->impl;
    if (!tgi_recomputing(tape)) impl->calls++; /* its second run draws nothing new */
    tg_tensor *attended, *h;
    if (impl->config.post_ln) {
        attended = branch_dropout(m, tape, tg_module_forward(impl->attn, tape, x), 0);
        h = tg_module_forward(impl->ln1, tape, tg_add(tape, x, attended));
        tg_tensor *sum = tg_add(tape, h, mlp_branch(m, tape, h));
        tg_tape_label_next(tape, "%s.out", m->name);
        return tg_module_forward(impl->ln2, tape, sum);
    }
    attended = tg_module_forward(impl->attn, tape, tg_module_forward(impl->ln1, tape, x));
    h = tg_add(tape, x, branch_dropout(m, tape, attended, 0));
    tg_tensor *mlp = mlp_branch(m, tape, tg_module_forward(impl->ln2, tape, h));
    tg_tape_label_next(tape, "%s.out", m->name);
    return tg_add(tape, h, mlp);
}

static const tgi_module_class block_class = {"transformer_block", block_forward, NULL,
                                             sizeof(block_impl), false};

static tg_module *child_attention(tg_module *m, const tg_transformer_config *c) {
    char name[TGI_NAME_MAX];
    snprintf(name, sizeof name, "%s.attn", m->name);
    tg_mha_config mc = {c->d_model, c->n_heads, c->causal, c->qk_norm, tgi_seed_mix(c->seed, 1)};
    tg_module *child = tg_mha_new(m->ctx, name, &mc);
    return tgi_module_adopt(m, child) == TG_OK ? child : NULL;
}

tg_module *tg_transformer_block_new(tg_ctx *ctx, const char *name,
                                    const tg_transformer_config *config) {
    if (!ctx || tgi_check_name(ctx, "transformer block", name) != TG_OK) return NULL;
    if (!config || config->d_model < 1 || config->n_heads < 1 || config->d_ff < 0 ||
        !(config->dropout >= 0.0f && config->dropout < 1.0f)) {
        tgi_error(ctx, TG_ERR_INVALID, "transformer block '%s': needs d_model, n_heads >= 1, "
                  "d_ff >= 0 and 0 <= dropout < 1", name);
        return NULL;
    }
    /* the MLP's default width is 4 d_model */
    if (!config->d_ff && tgi_layer_size(ctx, "transformer block", name, "d_model", config->d_model,
                                        "the MLP's factor", 4) < 0)
        return NULL;
    tg_module *m = tgi_module_new(ctx, &block_class, "%s", name);
    if (!m) return NULL;
    block_impl *impl = m->impl;
    impl->config = *config;
    int64_t e = config->d_model, ff = config->d_ff ? config->d_ff : 4 * e;
    tg_init xavier = tg_init_xavier(TG_ACT_IDENTITY);
    bool ok = (impl->ln1 = tgi_child_norm(m, "ln1", TG_NORM_LAYER, e)) &&
              (impl->attn = child_attention(m, config)) &&
              (impl->ln2 = tgi_child_norm(m, "ln2", TG_NORM_LAYER, e)) &&
              (impl->fc = tgi_child_linear(m, "fc", e, ff, &xavier, tgi_seed_mix(config->seed, 2))) &&
              (impl->proj = tgi_child_linear(m, "proj", ff, e, &xavier, tgi_seed_mix(config->seed, 3)));
    if (!ok) {
        tg_module_free(m);
        return NULL;
    }
    return m;
}

/* ---- GPT ----------------------------------------------------------------------------------- */

typedef struct gpt_impl {
    tg_gpt_config config;
    tg_module *wte, *wpe, *ln_f, *head;
    tg_module *blocks[TG_GPT_MAX_LAYERS];
    uint64_t calls;
} gpt_impl;

static tg_tensor *gpt_forward(tg_module *m, tg_tape *tape, tg_tensor *ids) {
    gpt_impl *impl = m->impl;
    const tg_gpt_config *c = &impl->config;
    if (!tape || !ids) return NULL;
    if (ids->ndim != 2 || ids->shape[1] > c->block_size) {
        char shape[96];
        tgi_error(m->ctx, TG_ERR_SHAPE, "gpt '%s': ids %s, expected [B, T] with T <= block_size "
                  "%lld", m->name, tgi_format_shape(ids->ndim, ids->shape, shape, sizeof shape),
                  (long long)c->block_size);
        return NULL;
    }
    if (!tgi_recomputing(tape)) impl->calls++; /* its second run draws nothing new */
    tg_tensor *wpe = impl->wpe->params[0], *wte = impl->wte->params[0];
    tg_tensor *x = tg_add(tape, tg_module_forward(impl->wte, tape, ids),
                          tg_slice(tape, wpe, 0, 0, ids->shape[1]));
    if (c->dropout > 0.0f && m->training)
        x = tg_dropout(tape, x, c->dropout, tgi_seed_mix(c->seed, impl->calls));
    for (int i = 0; i < c->n_layers; i++) x = tg_module_forward(impl->blocks[i], tape, x);
    if (impl->ln_f) x = tg_module_forward(impl->ln_f, tape, x);
    tg_tape_label_next(tape, "%s.logits", m->name);
    if (impl->head) return tg_module_forward(impl->head, tape, x);
    return tg_matmul(tape, x, tg_transpose(tape, wte, 0, 1));
}

static const tgi_module_class gpt_class = {"gpt", gpt_forward, NULL, sizeof(gpt_impl), false};

static tg_status check_gpt_config(tg_ctx *ctx, const char *name, const tg_gpt_config *c) {
    if (!c) return tgi_error(ctx, TG_ERR_INVALID, "gpt '%s': config is NULL", name);
    if (c->vocab < 1 || c->block_size < 1 || c->d_model < 1 || c->n_heads < 1 ||
        c->d_model % c->n_heads != 0)
        return tgi_error(ctx, TG_ERR_INVALID, "gpt '%s': needs vocab, block_size >= 1 and d_model "
                         "a positive multiple of n_heads (vocab %lld, block_size %lld, d_model "
                         "%lld, n_heads %lld)", name, (long long)c->vocab, (long long)c->block_size,
                         (long long)c->d_model, (long long)c->n_heads);
    if (c->n_layers < 0 || c->n_layers > TG_GPT_MAX_LAYERS)
        return tgi_error(ctx, TG_ERR_INVALID, "gpt '%s': n_layers %d, expected 0..%d", name,
                         c->n_layers, TG_GPT_MAX_LAYERS);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        return tgi_error(ctx, TG_ERR_INVALID, "gpt '%s': dropout %g, expected 0 <= p < 1", name,
                         (double)c->dropout);
    return TG_OK;
}

static tg_module *child_embedding(tg_module *m, const char *what, int64_t num, int64_t dim,
                                  uint64_t seed) {
    char name[TGI_NAME_MAX];
    snprintf(name, sizeof name, "%s.%s", m->name, what);
    tg_init small = tg_init_normal(0.0f, 0.02f); /* GPT-2's */
    tg_module *child = tg_embedding_new(m->ctx, name, num, dim, &small, seed);
    return tgi_module_adopt(m, child) == TG_OK ? child : NULL;
}

static bool add_blocks(tg_module *m, gpt_impl *impl) {
    const tg_gpt_config *c = &impl->config;
    tg_transformer_config bc = {c->d_model, c->n_heads, 0, true, c->post_ln, c->qk_norm,
                                c->dropout, 0};
    for (int i = 0; i < c->n_layers; i++) {
        char name[TGI_NAME_MAX];
        snprintf(name, sizeof name, "%s.block%d", m->name, i);
        bc.seed = tgi_seed_mix(c->seed, 100 + (uint64_t)i);
        impl->blocks[i] = tg_transformer_block_new(m->ctx, name, &bc);
        if (tgi_module_adopt(m, impl->blocks[i]) != TG_OK) return false;
    }
    return true;
}

tg_module *tg_gpt_new(tg_ctx *ctx, const char *name, const tg_gpt_config *config) {
    if (!ctx || tgi_check_name(ctx, "gpt", name) != TG_OK) return NULL;
    if (check_gpt_config(ctx, name, config) != TG_OK) return NULL;
    tg_module *m = tgi_module_new(ctx, &gpt_class, "%s", name);
    if (!m) return NULL;
    gpt_impl *impl = m->impl;
    impl->config = *config;
    const tg_gpt_config *c = config;
    tg_init xavier = tg_init_xavier(TG_ACT_IDENTITY);
    bool ok = (impl->wte = child_embedding(m, "wte", c->vocab, c->d_model, tgi_seed_mix(c->seed, 1))) &&
              (impl->wpe = child_embedding(m, "wpe", c->block_size, c->d_model,
                                           tgi_seed_mix(c->seed, 2))) &&
              add_blocks(m, impl);
    if (ok && !c->post_ln) ok = (impl->ln_f = tgi_child_norm(m, "ln_f", TG_NORM_LAYER, c->d_model));
    if (ok && !c->tie_weights) {
        char head[TGI_NAME_MAX];
        snprintf(head, sizeof head, "%s.head", m->name);
        impl->head = tg_linear_new(ctx, head, c->d_model, c->vocab, false, &xavier,
                                   tgi_seed_mix(c->seed, 3));
        ok = tgi_module_adopt(m, impl->head) == TG_OK;
    }
    if (!ok) {
        tg_module_free(m);
        return NULL;
    }
    return m;
}
