/*
 * data/augment.c — image augmentation in place on a batch [B,C,H,W]: torchvision's RandomCrop
 * with zero padding, RandomHorizontalFlip (p = 0.5) and Normalize, seeded; and the per-channel
 * mean and standard deviation of a data set, which Normalize needs.
 *
 * Order is torchvision's usual Compose([RandomCrop, RandomHorizontalFlip, ToTensor, Normalize]):
 * the padding is zeros in the data's own units, and normalising afterwards makes it -mean/std.
 * The crop and the flip are one gather per image from a copy of it (the scratch, one image of
 * floats, grown only when a larger image comes), so a training loop allocates nothing once the
 * first batch went through. Each image takes its draws in a fixed order (crop row offset, column
 * offset, then the flip) from the object's own stream: the same seed gives the same batches.
 */
#include "data/dataset.h"

#include <math.h>
#include <string.h>

/* Bounds that keep every size below far from overflow; no real data set comes near them. */
#define MAX_CHANNELS 65536
#define MAX_PADDING 4096

struct tg_augment {
    tg_ctx *ctx;
    int padding;             /* 0: no crop */
    bool flip;
    int channels;            /* 0: no normalisation */
    float *stats;            /* mean[channels] then std[channels], copied at creation */
    float *scratch;          /* one image, for the crop and the flip */
    int64_t scratch_floats;  /* its capacity */
    tg_rng rng;
    tgi_retired retired;     /* tg_augment_free */
};

tg_augment *tg_augment_new(tg_ctx *ctx, const tg_augment_config *config, uint64_t seed) {
    if (!ctx) return NULL;
    if (!config) {
        tgi_error(ctx, TG_ERR_INVALID, "augment_new: config must not be NULL");
        return NULL;
    }
    const tg_augment_config *c = config;
    if (c->crop_padding < 0 || c->crop_padding > MAX_PADDING) {
        tgi_error(ctx, TG_ERR_INVALID, "augment_new: crop_padding %d, expected 0 (no crop) to %d",
                  c->crop_padding, MAX_PADDING);
        return NULL;
    }
    if (c->channels < 0 || c->channels > MAX_CHANNELS || (c->channels > 0) != (c->mean != NULL) ||
        (c->channels > 0) != (c->std != NULL)) {
        tgi_error(ctx, TG_ERR_INVALID, "augment_new: channels %d with mean %s and std %s; expected "
                  "channels 1 to %d with both arrays, or 0 with neither (no normalisation)",
                  c->channels, c->mean ? "given" : "NULL", c->std ? "given" : "NULL", MAX_CHANNELS);
        return NULL;
    }
    for (int k = 0; k < c->channels; k++) {
        if (!isfinite(c->mean[k]) || !isfinite(c->std[k]) || !(c->std[k] > 0.0f)) {
            tgi_error(ctx, TG_ERR_INVALID, "augment_new: channel %d has mean %g and std %g; "
                      "expected finite numbers and std > 0", k, (double)c->mean[k],
                      (double)c->std[k]);
            return NULL;
        }
    }
    size_t stats_bytes = (size_t)c->channels * 2 * sizeof(float);
    tg_augment *aug = tgi_alloc(ctx, sizeof *aug);
    float *stats = aug && stats_bytes ? tgi_alloc(ctx, stats_bytes) : NULL;
    if (!aug || (stats_bytes && !stats)) {
        tgi_free(ctx, aug, sizeof *aug);
        tgi_error(ctx, TG_ERR_NOMEM, "augment_new: out of memory");
        return NULL;
    }
    *aug = (tg_augment){.ctx = ctx, .padding = c->crop_padding, .flip = c->flip,
                        .channels = c->channels, .stats = stats};
    if (stats_bytes) {
        memcpy(stats, c->mean, (size_t)c->channels * sizeof(float));
        memcpy(stats + c->channels, c->std, (size_t)c->channels * sizeof(float));
    }
    tg_rng_seed(&aug->rng, seed);
    return aug;
}

void tg_augment_free(tg_augment *aug) {
    if (!aug || aug->retired.freed) return;
    tgi_free(aug->ctx, aug->stats, (size_t)aug->channels * 2 * sizeof(float));
    tgi_free(aug->ctx, aug->scratch, (size_t)aug->scratch_floats * sizeof(float));
    aug->stats = aug->scratch = NULL;
    tgi_retire(aug->ctx, &aug->retired, aug, sizeof *aug);
}

/* TG_OK when batch is a current [B,C,H,W] tensor this augmenter can work on. */
static tg_status check_batch(tg_augment *aug, const tg_tensor *batch, const char *what,
                             bool cropping) {
    tg_ctx *ctx = aug->ctx;
    if (!batch) return tgi_error(ctx, TG_ERR_INVALID, "%s: batch is NULL", what);
    if (tgi_tensor_stale(batch))
        return tgi_error(ctx, TG_ERR_STATE, "%s: the batch is a tape tensor of an earlier step "
                         "(its tape was reset since)", what);
    char shape[96];
    tgi_format_shape(batch->ndim, batch->shape, shape, sizeof shape);
    if (batch->ndim != 4)
        return tgi_error(ctx, TG_ERR_SHAPE, "%s: batch%s%s%s is %s, expected [B,C,H,W] (images "
                         "of one channel too: tg_dataset_reshape(ds, 3, {1,H,W}) first)", what,
                         batch->label[0] ? " '" : "", batch->label, batch->label[0] ? "'" : "",
                         shape);
    if (aug->channels && batch->shape[1] != aug->channels)
        return tgi_error(ctx, TG_ERR_SHAPE, "%s: batch %s has %lld channels, the mean and std %d",
                         what, shape, (long long)batch->shape[1], aug->channels);
    if (cropping && (aug->padding >= batch->shape[2] || aug->padding >= batch->shape[3]))
        return tgi_error(ctx, TG_ERR_INVALID, "%s: crop_padding %d for images %lldx%lld (batch "
                         "%s): expected less than both sides, or a crop could be all padding",
                         what, aug->padding, (long long)batch->shape[2],
                         (long long)batch->shape[3], shape);
    return TG_OK;
}

/* (x - mean[c]) / std[c] over every image of the batch, divided as torchvision does. */
static void normalize(const tg_augment *aug, tg_tensor *batch) {
    if (!aug->channels) return;
    int64_t n = batch->shape[0], channels = batch->shape[1];
    int64_t plane = batch->shape[2] * batch->shape[3];
    const float *mean = aug->stats, *std = aug->stats + aug->channels;
    for (int64_t b = 0; b < n; b++)
        for (int64_t c = 0; c < channels; c++) {
            float *x = batch->data + (b * channels + c) * plane;
            float m = mean[c], s = std[c];
            for (int64_t i = 0; i < plane; i++) x[i] = (x[i] - m) / s;
        }
}

/*
 * One image from its copy src: out[c][y][x] = src[c][y + dy][x' + dx], x' = W-1-x when flipped
 * (torchvision flips the crop), zero where that falls outside the image (the padding).
 */
static void crop_flip(float *out, const float *src, int64_t channels, int64_t h, int64_t w,
                      int64_t dy, int64_t dx, bool flipped) {
    /* the columns x whose source column lies inside the image: [x0, x1) */
    int64_t x0 = flipped ? dx : -dx, x1 = flipped ? w + dx : w - dx;
    if (x0 < 0) x0 = 0;
    if (x1 > w) x1 = w;
    for (int64_t c = 0; c < channels; c++)
        for (int64_t y = 0; y < h; y++) {
            float *row = out + (c * h + y) * w;
            int64_t sy = y + dy;
            if (sy < 0 || sy >= h) {
                memset(row, 0, (size_t)w * sizeof(float));
                continue;
            }
            const float *from = src + (c * h + sy) * w;
            for (int64_t x = 0; x < x0; x++) row[x] = 0.0f;
            if (flipped)
                for (int64_t x = x0; x < x1; x++) row[x] = from[w - 1 - x + dx];
            else
                memcpy(row + x0, from + x0 + dx, (size_t)(x1 - x0) * sizeof(float));
            for (int64_t x = x1; x < w; x++) row[x] = 0.0f;
        }
}

tg_status tg_augment_apply(tg_augment *aug, tg_tensor *batch) {
    if (!aug) return TG_ERR_INVALID;
    tg_status s = check_batch(aug, batch, "augment_apply", aug->padding > 0);
    if (s != TG_OK) return s;
    int64_t n = batch->shape[0], channels = batch->shape[1];
    int64_t h = batch->shape[2], w = batch->shape[3], image = channels * h * w;
    if ((aug->padding > 0 || aug->flip) && image > aug->scratch_floats) {
        /* the first batch, or larger images than before: never again for this size */
        float *grown = tgi_alloc(aug->ctx, (size_t)image * sizeof(float));
        if (!grown)
            return tgi_error(aug->ctx, TG_ERR_NOMEM, "augment_apply: out of memory for one "
                             "image of %lld floats", (long long)image);
        tgi_free(aug->ctx, aug->scratch, (size_t)aug->scratch_floats * sizeof(float));
        aug->scratch = grown;
        aug->scratch_floats = image;
    }
    uint32_t offsets = 2 * (uint32_t)aug->padding + 1; /* torchvision: uniform in [0, 2p] */
    for (int64_t b = 0; b < n; b++) {
        int64_t dy = 0, dx = 0;
        if (aug->padding > 0) {
            dy = (int64_t)tg_rng_below(&aug->rng, offsets) - aug->padding;
            dx = (int64_t)tg_rng_below(&aug->rng, offsets) - aug->padding;
        }
        bool flipped = aug->flip && tg_rng_uniform(&aug->rng) < 0.5f;
        if (dy == 0 && dx == 0 && !flipped) continue; /* the window is the image itself */
        float *x = batch->data + b * image;
        memcpy(aug->scratch, x, (size_t)image * sizeof(float));
        crop_flip(x, aug->scratch, channels, h, w, dy, dx, flipped);
    }
    normalize(aug, batch);
    return TG_OK;
}

tg_status tg_augment_normalize(tg_augment *aug, tg_tensor *batch) {
    if (!aug) return TG_ERR_INVALID;
    tg_status s = check_batch(aug, batch, "augment_normalize", false);
    if (s != TG_OK) return s;
    normalize(aug, batch);
    return TG_OK;
}

tg_status tg_dataset_channel_stats(const tg_dataset *ds, float *mean, float *std, int channels) {
    if (!ds || !ds->ctx) return TG_ERR_INVALID;
    tg_ctx *ctx = ds->ctx;
    if (!mean || !std)
        return tgi_error(ctx, TG_ERR_INVALID, "dataset_channel_stats: mean and std must not be NULL");
    if (ds->count < 1 || !ds->x || tg_dataset_x_size(ds) < 0 || ds->x_ndim != 3)
        return tgi_error(ctx, TG_ERR_SHAPE, "dataset_channel_stats: samples of %d dims, expected "
                         "images [C,H,W] (tg_dataset_reshape(ds, 3, {1,H,W}) for one channel)",
                         ds->x_ndim);
    if (ds->x_shape[0] != channels)
        return tgi_error(ctx, TG_ERR_SHAPE, "dataset_channel_stats: images [%lld,%lld,%lld] have "
                         "%lld channels, the arrays hold %d", (long long)ds->x_shape[0],
                         (long long)ds->x_shape[1], (long long)ds->x_shape[2],
                         (long long)ds->x_shape[0], channels);
    int64_t plane = ds->x_shape[1] * ds->x_shape[2], image = channels * plane;
    double n = (double)ds->count * (double)plane;
    /* two passes in double: the mean first, then squared deviations from it (no cancellation) */
    for (int c = 0; c < channels; c++) {
        double sum = 0.0;
        for (int64_t i = 0; i < ds->count; i++) {
            const float *x = ds->x + i * image + c * plane;
            for (int64_t k = 0; k < plane; k++) sum += x[k];
        }
        double m = sum / n, squares = 0.0;
        for (int64_t i = 0; i < ds->count; i++) {
            const float *x = ds->x + i * image + c * plane;
            for (int64_t k = 0; k < plane; k++) squares += ((double)x[k] - m) * ((double)x[k] - m);
        }
        mean[c] = (float)m;
        std[c] = (float)sqrt(squares / n);
    }
    return TG_OK;
}
