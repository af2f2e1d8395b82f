/*
 * models/cnn.c — convolutional layers and models: the conv2d module, LeNet-5 sized for small
 * images, and the CIFAR ResNet of He et al. (2016, §4.2) with its plain twin.
 */
#include "models/models.h"

#include <stdio.h>
#include <string.h>

/* ---- conv2d -------------------------------------------------------------------------------- */

typedef struct conv_impl {
    tg_conv2d_opts opts;
} conv_impl;

static tg_tensor *conv_forward(tg_module *m, tg_tape *tape, tg_tensor *x) {
    const conv_impl *impl = m->impl;
    return tg_conv2d(tape, x, m->params[0], m->n_params > 1 ? m->params[1] : NULL, &impl->opts);
}

static const tgi_module_class conv_class = {"conv2d", conv_forward, NULL, sizeof(conv_impl), false};

/* The geometry is checked here, where the weight's shape is decided; stride, padding and
 * dilation against the image are the op's to check, at record time. */
static bool conv_geometry_ok(tg_ctx *ctx, const char *name, int64_t in, int64_t out, int kh, int kw,
                             const tg_conv2d_opts *o) {
    int groups = o->groups ? o->groups : 1;
    if (in < 1 || out < 1 || kh < 1 || kw < 1 || groups < 1 || o->stride_h < 0 || o->stride_w < 0 ||
        o->pad_h < 0 || o->pad_w < 0 || o->dilation_h < 0 || o->dilation_w < 0) {
        tgi_error(ctx, TG_ERR_INVALID, "conv2d '%s': needs in, out, kernel and groups >= 1 and no "
                  "negative stride, padding or dilation (in %lld, out %lld, kernel %dx%d, groups %d)",
                  name, (long long)in, (long long)out, kh, kw, groups);
        return false;
    }
    if (in % groups || out % groups) {
        tgi_error(ctx, TG_ERR_INVALID, "conv2d '%s': in %lld and out %lld channels must both be "
                  "divisible by groups %d", name, (long long)in, (long long)out, groups);
        return false;
    }
    return true;
}

tg_module *tg_conv2d_new(tg_ctx *ctx, const char *name, int64_t in, int64_t out, int kernel_h,
                         int kernel_w, const tg_conv2d_opts *opts, bool bias, const tg_init *init,
                         uint64_t seed) {
    const tg_conv2d_opts geometry = opts ? *opts : (tg_conv2d_opts){0};
    if (!ctx || tgi_check_name(ctx, "conv2d", name) != TG_OK) return NULL;
    if (!ctx || !conv_geometry_ok(ctx, name, in, out, kernel_h, kernel_w, &geometry)) return NULL;
    tg_module *m = tgi_module_new(ctx, &conv_class, "%s", name);
    if (!m) return NULL;
    int64_t groups = geometry.groups ? geometry.groups : 1;
    tg_init weight_init = tgi_init_or(init, tg_init_he(TG_ACT_RELU));
    tg_tensor *w = tgi_module_param(m, "weight", TG_SHAPE(out, in / groups, kernel_h, kernel_w), NULL, 0);
    bool ok = w && tgi_init_grouped(w, &weight_init, groups, seed) == TG_OK &&
              (!bias || tgi_module_param(m, "bias", TG_SHAPE(out), NULL, 0));
    if (!ok) {
        tgi_module_destroy(m);
        return NULL;
    }
    ((conv_impl *)m->impl)->opts = geometry;
    return m;
}

/* A conv child "<m's name>.<what>" adopted by m, or NULL (m frees what it adopted). */
static tg_module *child_conv(tg_module *m, const char *what, int64_t in, int64_t out, int kernel,
                             int stride, int pad, bool bias, const tg_init *init, uint64_t seed) {
    char name[TGI_NAME_MAX];
    snprintf(name, sizeof name, "%s.%s", m->name, what);
    tg_conv2d_opts opts = {.stride_h = stride, .stride_w = stride, .pad_h = pad, .pad_w = pad};
    tg_module *child = tg_conv2d_new(m->ctx, name, in, out, kernel, kernel, &opts, bias, init, seed);
    return tgi_module_adopt(m, child) == TG_OK ? child : NULL;
}

/* ---- LeNet --------------------------------------------------------------------------------- */

typedef struct lenet_impl {
    tg_module *conv1, *conv2, *fc1, *fc2, *fc3;
} lenet_impl;

/* label(conv(h)), then ReLU and a 2x2 max pool */
static tg_tensor *conv_relu_pool(tg_module *m, tg_tape *tape, tg_module *conv, const char *what,
                                 tg_tensor *h) {
    tg_tape_label_next(tape, "%s.%s.out", m->name, what);
    h = tg_relu(tape, tg_module_forward(conv, tape, h));
    return tg_max_pool2d(tape, h, 2, 2, 2, 2, 0, 0);
}

static tg_tensor *lenet_forward(tg_module *m, tg_tape *tape, tg_tensor *x) {
    const lenet_impl *impl = m->impl;
    tg_tensor *h = conv_relu_pool(m, tape, impl->conv1, "conv1", x);
    h = tg_flatten(tape, conv_relu_pool(m, tape, impl->conv2, "conv2", h));
    tg_tape_label_next(tape, "%s.fc1.out", m->name);
    h = tg_relu(tape, tg_module_forward(impl->fc1, tape, h));
    tg_tape_label_next(tape, "%s.fc2.out", m->name);
    h = tg_relu(tape, tg_module_forward(impl->fc2, tape, h));
    tg_tape_label_next(tape, "%s.out", m->name);
    return tg_module_forward(impl->fc3, tape, h);
}

static const tgi_module_class lenet_class = {"lenet", lenet_forward, NULL, sizeof(lenet_impl), false};

tg_module *tg_lenet_new(tg_ctx *ctx, const char *name, const tg_lenet_config *config) {
    if (!ctx || tgi_check_name(ctx, "lenet", name) != TG_OK) return NULL;
    const tg_lenet_config *c = config;
    if (!c || c->channels < 1 || c->height < 4 || c->width < 4 || c->classes < 1) {
        tgi_error(ctx, TG_ERR_INVALID, "lenet '%s': needs channels and classes >= 1 and images of "
                  "at least 4x4 (two 2x2 poolings)", name);
        return NULL;
    }
    /* each pool floors, as PyTorch's; checked: a 2^31 x 2^31 image overflows the product */
    int64_t area = tgi_layer_size(ctx, "lenet", name, "height / 4", c->height / 4, "width / 4",
                                  c->width / 4);
    int64_t flat = area < 0 ? -1 : tgi_layer_size(ctx, "lenet", name, "conv2's channels", 32,
                                                  "the pooled area", area);
    if (flat < 0) return NULL;
    tg_module *m = tgi_module_new(ctx, &lenet_class, "%s", name);
    if (!m) return NULL;
    lenet_impl *impl = m->impl;
    tg_init init = tgi_init_or(&c->init, tg_init_he(TG_ACT_RELU)), logits = tg_init_xavier(TG_ACT_IDENTITY);
    bool ok = (impl->conv1 = child_conv(m, "conv1", c->channels, 16, 3, 1, 1, true, &init, c->seed)) &&
              (impl->conv2 = child_conv(m, "conv2", 16, 32, 3, 1, 1, true, &init, tgi_seed_mix(c->seed, 1))) &&
              (impl->fc1 = tgi_child_linear(m, "fc1", flat, 120, &init, tgi_seed_mix(c->seed, 2))) &&
              (impl->fc2 = tgi_child_linear(m, "fc2", 120, 84, &init, tgi_seed_mix(c->seed, 3))) &&
              (impl->fc3 = tgi_child_linear(m, "fc3", 84, c->classes, &logits, tgi_seed_mix(c->seed, 4)));
    if (!ok) {
        tgi_module_destroy(m);
        return NULL;
    }
    return m;
}

/* ---- ResNet and its plain twin ------------------------------------------------------------- */

typedef struct basic_block {
    int stage, index;           /* both from 1, as in the names */
    tg_module *conv1, *bn1, *conv2, *bn2;
    tg_module *shortcut, *shortcut_bn; /* the projection; NULL: identity (or none, plain) */
} basic_block;

typedef struct resnet_impl {
    tg_resnet_config config;
    tg_module *stem, *stem_bn, *fc;
    basic_block *blocks;
    int n_blocks;
} resnet_impl;

static tg_tensor *block_forward(tg_module *m, const basic_block *b, tg_tape *tape, tg_tensor *h) {
    const resnet_impl *impl = m->impl;
    /* batch norm, the residual add and the ReLU as one op (tgi_norm_relu) */
    tg_tensor *t = tgi_norm_relu(b->bn1, tape, tg_module_forward(b->conv1, tape, h), NULL, NULL);
    t = tg_module_forward(b->conv2, tape, t);
    tg_tensor *shortcut = NULL;
    if (impl->config.skip) {
        shortcut = h;
        if (b->shortcut)
            shortcut = tg_module_forward(b->shortcut_bn, tape, tg_module_forward(b->shortcut, tape, h));
    }
    char label[TGI_NAME_MAX]; /* tg_tape_label_next keeps TG_LABEL_MAX - 1 chars of it */
    snprintf(label, sizeof label, "%s.stage%d.block%d.out", m->name, b->stage, b->index);
    return tgi_norm_relu(b->bn2, tape, t, shortcut, label);
}

/* Blocks [first, end) as one recomputed segment (tg_module_set_recompute: span blocks each). */
typedef struct blocks_run {
    tg_module *m;
    int first, end;
} blocks_run;

static tg_status blocks_forward(tg_tape *tape, tg_tensor *const *inputs, int n_inputs,
                                tg_tensor **outputs, int n_outputs, void *user) {
    (void)n_inputs;
    (void)n_outputs;
    const blocks_run *r = user;
    const resnet_impl *impl = r->m->impl;
    tg_tensor *h = inputs[0];
    for (int i = r->first; i < r->end; i++) h = block_forward(r->m, &impl->blocks[i], tape, h);
    outputs[0] = h;
    return h ? TG_OK : TG_ERR_INVALID; /* the op that failed said why */
}

/* The blocks in segments; each segment's description lives in the tape's arena, where backward
 * and a replay find it. */
static tg_tensor *blocks_in_segments(tg_module *m, tg_tape *tape, tg_tensor *h) {
    const resnet_impl *impl = m->impl;
    int span = m->recompute < impl->n_blocks ? (int)m->recompute : impl->n_blocks;
    for (int first = 0; first < impl->n_blocks && h; first += span) {
        blocks_run *r = tgi_arena_alloc(&tape->arena, sizeof *r);
        if (!r) {
            tgi_error(m->ctx, TG_ERR_NOMEM, "resnet '%s': out of memory", m->name);
            return NULL;
        }
        *r = (blocks_run){m, first, first + span < impl->n_blocks ? first + span : impl->n_blocks};
        tg_tensor *in = h; /* the outputs are cleared first: not the input's own pointer */
        if (tg_recompute(tape, blocks_forward, r, 1, &in, 1, &h) != TG_OK) return NULL;
    }
    return h;
}

static tg_tensor *resnet_forward(tg_module *m, tg_tape *tape, tg_tensor *x) {
    const resnet_impl *impl = m->impl;
    char label[TGI_NAME_MAX]; /* tg_tape_label_next keeps TG_LABEL_MAX - 1 chars of it */
    snprintf(label, sizeof label, "%s.stem.out", m->name);
    tg_tensor *h = tgi_norm_relu(impl->stem_bn, tape, tg_module_forward(impl->stem, tape, x), NULL,
                                 label);
    if (m->recompute > 0 && h && impl->n_blocks > 0 && tgi_segment_possible(tape))
        h = blocks_in_segments(m, tape, h);
    else
        for (int i = 0; i < impl->n_blocks; i++) h = block_forward(m, &impl->blocks[i], tape, h);
    h = tg_global_avg_pool2d(tape, h);
    tg_tape_label_next(tape, "%s.out", m->name);
    return tg_module_forward(impl->fc, tape, h);
}

static void release_resnet(tg_module *m) {
    resnet_impl *impl = m->impl;
    if (!impl) return;
    tgi_free(m->ctx, impl->blocks, (size_t)impl->n_blocks * sizeof *impl->blocks);
    tgi_free(m->ctx, impl, sizeof *impl);
}

static const tgi_module_class resnet_class = {"resnet", resnet_forward, release_resnet, 0, true};

/* conv child "<prefix>.<what>" followed by its batch norm "<prefix>.<norm>" */
static bool conv_bn(tg_module *m, const char *prefix, const char *what, const char *norm,
                    int64_t in, int64_t out, int kernel, int stride, uint64_t seed, tg_module **conv,
                    tg_module **bn) {
    const resnet_impl *impl = m->impl;
    char local[TGI_NAME_MAX];
    snprintf(local, sizeof local, "%s%s%s", prefix, *prefix ? "." : "", what);
    *conv = child_conv(m, local, in, out, kernel, stride, kernel / 2, false, &impl->config.init, seed);
    snprintf(local, sizeof local, "%s%s%s", prefix, *prefix ? "." : "", norm);
    return *conv && (*bn = tgi_child_norm(m, local, TG_NORM_BATCH, out));
}

/* Block b of stage s: from `in` channels to `out`, conv1 with `stride`. The projection (residual
 * net only) is there exactly when the identity cannot be added: the stride or the width changes. */
static bool build_basic_block(tg_module *m, basic_block *b, int64_t in, int64_t out, int stride) {
    const tg_resnet_config *c = &((resnet_impl *)m->impl)->config;
    char prefix[48];
    snprintf(prefix, sizeof prefix, "stage%d.block%d", b->stage, b->index);
    uint64_t salt = 16 * (uint64_t)(b->stage * 1000 + b->index);
    if (!conv_bn(m, prefix, "conv1", "bn1", in, out, 3, stride, tgi_seed_mix(c->seed, salt + 1),
                 &b->conv1, &b->bn1) ||
        !conv_bn(m, prefix, "conv2", "bn2", out, out, 3, 1, tgi_seed_mix(c->seed, salt + 2),
                 &b->conv2, &b->bn2))
        return false;
    if (!c->skip || (stride == 1 && in == out)) return true;
    return conv_bn(m, prefix, "shortcut.conv", "shortcut.bn", in, out, 1, stride,
                   tgi_seed_mix(c->seed, salt + 3), &b->shortcut, &b->shortcut_bn);
}

static bool build_resnet(tg_module *m) {
    resnet_impl *impl = m->impl;
    const tg_resnet_config *c = &impl->config;
    int n = (c->depth - 2) / 6;
    int64_t width = c->width ? c->width : 16, in = width;
    if (!conv_bn(m, "", "stem.conv", "stem.bn", c->channels, width, 3, 1, c->seed, &impl->stem,
                 &impl->stem_bn))
        return false;
    for (int s = 1; s <= 3; s++) {
        int64_t out = width << (s - 1);
        for (int i = 1; i <= n; i++) {
            basic_block *b = &impl->blocks[(s - 1) * n + i - 1];
            b->stage = s;
            b->index = i;
            if (!build_basic_block(m, b, in, out, s > 1 && i == 1 ? 2 : 1)) return false;
            in = out;
        }
    }
    tg_init logits = tg_init_xavier(TG_ACT_IDENTITY);
    return (impl->fc = tgi_child_linear(m, "fc", in, c->classes, &logits, tgi_seed_mix(c->seed, 0xFC)));
}

tg_module *tg_resnet_new(tg_ctx *ctx, const char *name, const tg_resnet_config *config) {
    if (!ctx || tgi_check_name(ctx, "resnet", name) != TG_OK) return NULL;
    const tg_resnet_config *c = config;
    if (!c || c->channels < 1 || c->classes < 1 || c->width < 0 || c->depth < 8 || (c->depth - 2) % 6) {
        tgi_error(ctx, TG_ERR_INVALID, "resnet '%s': needs channels and classes >= 1, width >= 0 "
                  "and a depth of 6n+2 >= 8 (8, 20, 32, 56, ...), got depth %d", name, c ? c->depth : 0);
        return NULL;
    }
    /* stage 3 is 4 x as wide: checked here, so that width << 2 below cannot overflow */
    if (tgi_layer_size(ctx, "resnet", name, "width", c->width ? c->width : 16, "stage 3's factor",
                       4) < 0)
        return NULL;
    tg_module *m = tgi_module_new(ctx, &resnet_class, "%s", name);
    if (!m) return NULL;
    int n_blocks = 3 * ((c->depth - 2) / 6);
    resnet_impl *impl = tgi_alloc(ctx, sizeof *impl);
    basic_block *blocks = tgi_alloc(ctx, (size_t)n_blocks * sizeof *blocks);
    if (!impl || !blocks) {
        tgi_free(ctx, impl, sizeof *impl);
        tgi_free(ctx, blocks, (size_t)n_blocks * sizeof *blocks);
        tgi_error(ctx, TG_ERR_NOMEM, "resnet '%s': out of memory", name);
        tgi_module_destroy(m);
        return NULL;
    }
    memset(blocks, 0, (size_t)n_blocks * sizeof *blocks);
    *impl = (resnet_impl){*c, NULL, NULL, NULL, blocks, n_blocks};
    m->impl = impl;
    if (!build_resnet(m)) {
        tgi_module_destroy(m);
        return NULL;
    }
    return m;
}
