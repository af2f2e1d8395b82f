/*
 * cli/run_data.c — a run's data: the training and held-out sets of --data, as images for the
 * convolutional models, the batcher, and the evaluation on a whole set.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/trainer.h"

/* ---- data ---------------------------------------------------------------------------------- */

bool trainer_is_cnn(const run_config *c) {
    return c->model == MODEL_LENET || c->model == MODEL_RESNET;
}

/* Flat samples (digits: 64 floats; idx: 784) become one-channel square images, in place. */
static bool as_images(trainer *t) {
    if (t->train->x_ndim == 3) return true;
    int64_t size = tg_dataset_x_size(t->train), side = 1;
    while ((side + 1) * (side + 1) <= size) side++;
    if (t->train->x_ndim != 1 || side * side != size || side < 4) {
        snprintf(t->result->error, sizeof t->result->error, "--model %s wants square images of "
                 "at least 4x4 (or samples of 3 dims, C x H x W), the data has samples of %lld floats",
                 model_name(t->config), (long long)size);
        return false;
    }
    const int64_t image[3] = {1, side, side};
    if (tg_dataset_reshape(t->train, 3, image) != TG_OK || tg_dataset_reshape(t->test, 3, image) != TG_OK)
        return trainer_fail(t, "data");
    return true;
}

/* Images (Fashion-MNIST's 1 x 28 x 28) as flat vectors for the MLPs, in place. */
static bool as_vectors(trainer *t) {
    const int64_t size[1] = {tg_dataset_x_size(t->train)};
    if (t->train->x_ndim == 1) return true;
    if (tg_dataset_reshape(t->train, 1, size) != TG_OK || tg_dataset_reshape(t->test, 1, size) != TG_OK)
        return trainer_fail(t, "data");
    return true;
}

/* Generated sets: training and held-out sizes. Sets read whole are split by TEST_FRACTION. */
#define ADDING_TRAIN 10000
#define ADDING_TEST 1000
#define SPIRALS_TRAIN 1000
#define SPIRALS_TEST 400
#define TEST_FRACTION 0.2

/* idx:IMAGES,LABELS split at the comma into images (malloc'd) and *labels; NULL with why. */
static char *idx_images_path(const run_config *c, const char **labels, char *why, size_t size) {
    const char *comma = c->data_path ? strchr(c->data_path, ',') : NULL;
    char *images = comma ? strndup(c->data_path, (size_t)(comma - c->data_path)) : NULL;
    if (!images) snprintf(why, size, comma ? "out of memory" : "idx data wants IMAGES,LABELS");
    *labels = comma ? comma + 1 : NULL;
    return images;
}

/* The whole data set of digits, csv: or idx: (NULL with the error on ctx, or in why). */
static tg_dataset *read_whole_set(tg_ctx *ctx, const run_config *c, char *why, size_t size) {
    if (c->data == DATA_DIGITS) return tg_dataset_digits(ctx);
    if (c->data == DATA_CSV)
        return c->regression ? tg_dataset_read_csv_regression(ctx, c->data_path, -1)
                             : tg_dataset_read_csv(ctx, c->data_path, -1);
    const char *labels;
    char *images = idx_images_path(c, &labels, why, size);
    tg_dataset *all = images ? tg_dataset_read_idx(ctx, images, labels) : NULL;
    free(images);
    return all;
}

/* How many samples a whole set of --data holds; IDX files (Fashion-MNIST's 60,000 images take
 * 0.4 s to read) are counted from their headers, the run reads them once. -1 with why. */
static int64_t whole_set_count(tg_ctx *ctx, const run_config *c, char *why, size_t size) {
    if (c->data == DATA_FASHION) return tg_dataset_fashion_mnist_count(ctx, c->data_path, true);
    if (c->data == DATA_IDX) {
        const char *labels;
        char *images = idx_images_path(c, &labels, why, size);
        int64_t n = images ? tg_dataset_idx_count(ctx, images, labels) : -1;
        free(images);
        return n;
    }
    tg_dataset *all = read_whole_set(ctx, c, why, size);
    int64_t n = all ? all->count : -1;
    tg_dataset_free(all);
    return n;
}

int64_t run_training_samples(const run_config *c, char *why, size_t size) {
    if (c->data == DATA_ADDING) return ADDING_TRAIN;
    if (c->data == DATA_SPIRALS) return SPIRALS_TRAIN;
    tg_ctx *ctx = tg_ctx_new();
    why[0] = '\0';
    int64_t all = ctx ? whole_set_count(ctx, c, why, size) : -1;
    /* Fashion-MNIST comes split: its training file is the training set */
    int64_t n = all < 0 ? -1 : c->data == DATA_FASHION ? all
                         : all - llround(TEST_FRACTION * (double)all);
    if (n > 0 && c->train_subset > 0 && c->train_subset < n) n = c->train_subset;
    if (all < 0 && !why[0]) snprintf(why, size, "%s", ctx ? tg_errmsg(ctx) : "out of memory");
    tg_ctx_free(ctx);
    return n;
}

/* A small training set (to overfit on purpose): n samples of the shuffled training part. */
static bool keep_subset(trainer *t, int64_t n) {
    if (n > t->train->count) {
        snprintf(t->result->error, sizeof t->result->error, "a subset of %lld samples from %lld",
                 (long long)n, (long long)t->train->count);
        return false;
    }
    tg_dataset *subset = NULL, *rest = NULL;
    double drop = 1.0 - (double)n / (double)t->train->count;
    tg_status split = drop > 0 ? tg_dataset_split(t->train, drop, t->config->seed, &subset, &rest) : TG_OK;
    if (split != TG_OK) return trainer_fail(t, "subset");
    if (subset) {
        tg_dataset_free(t->train);
        t->train = subset;
    }
    tg_dataset_free(rest);
    return true;
}

/* --augment: crops and flips of the training batches; under mpirun every rank augments the
 * global batch with the same draws before keeping its rows, so the ranks train on what one
 * process would. Normalisation by the training set's per-channel statistics. */
static bool start_augment(trainer *t) {
    const run_config *c = t->config;
    if (!trainer_is_cnn(c)) {
        snprintf(t->result->error, sizeof t->result->error, "--augment transforms images: it is for "
                 "--model lenet, resnet or plaincnn, not %s", model_name(c));
        return false;
    }
    int channels = (int)t->train->x_shape[0];
    float mean[16], std[16];
    if (c->augment_normalize && (channels > 16 || tg_dataset_channel_stats(t->train, mean, std, channels) != TG_OK))
        return channels > 16 ? (snprintf(t->result->error, sizeof t->result->error,
                                         "--augment normalize: at most 16 channels, the images have %d", channels), false)
                             : trainer_fail(t, "--augment");
    tg_augment_config config = {.crop_padding = c->augment_crop, .flip = c->augment_flip,
                                .channels = c->augment_normalize ? channels : 0,
                                .mean = c->augment_normalize ? mean : NULL,
                                .std = c->augment_normalize ? std : NULL};
    t->augment = tg_augment_new(t->ctx, &config, c->seed ^ 0x61756775ull /* "augu" */);
    return t->augment ? true : trainer_fail(t, "--augment");
}

bool trainer_load_data(trainer *t) {
    const run_config *c = t->config;
    tg_dataset *all = NULL;
    switch (c->data) {
    case DATA_ADDING:
        t->train = tg_dataset_adding(t->ctx, ADDING_TRAIN, c->seq_len, c->seed);
        t->test = tg_dataset_adding(t->ctx, ADDING_TEST, c->seq_len, c->seed + 1);
        break;
    case DATA_SPIRALS:
        t->train = tg_dataset_spirals(t->ctx, SPIRALS_TRAIN, 0.05f, c->seed);
        t->test = tg_dataset_spirals(t->ctx, SPIRALS_TEST, 0.05f, c->seed + 1);
        break;
    case DATA_DIGITS:
    case DATA_CSV:
    case DATA_IDX:
        if (!(all = read_whole_set(t->ctx, c, t->result->error, sizeof t->result->error)) &&
            t->result->error[0])
            return false;
        break;
    case DATA_FASHION: /* its own training and test files */
        t->train = tg_dataset_fashion_mnist(t->ctx, c->data_path, true);
        t->test = t->train ? tg_dataset_fashion_mnist(t->ctx, c->data_path, false) : NULL;
        break;
    }
    if (all) {
        tg_status split = tg_dataset_split(all, TEST_FRACTION, c->seed, &t->train, &t->test);
        tg_dataset_free(all);
        if (split != TG_OK) return trainer_fail(t, "split");
    }
    if (!t->train || !t->test) return trainer_fail(t, "data");
    if (c->train_subset > 0 && !keep_subset(t, c->train_subset)) return false;
    if (trainer_is_cnn(c) ? !as_images(t) : c->model != MODEL_RNN && !as_vectors(t)) return false;
    /* the global batches: under mpirun every rank draws the same ones and keeps its rows */
    t->batches = tg_batcher_new(t->train, c->batch, true, true, c->seed);
    if (!t->batches) return trainer_fail(t, "batches");
    return !(c->augment_crop || c->augment_flip || c->augment_normalize) || start_augment(t);
}

/* ---- evaluation ---------------------------------------------------------------------------- */

/* Test samples per forward pass. The whole test set in one pass would hold every activation
 * of, say, 1000 sequences of 100 steps at once (hundreds of MB for the recurrent runs, kept by
 * the tape's arena until the run ends); chunks keep the peak at a training step's size. */
#define EVAL_CHUNK 100

/* Loss and accuracy (NAN for regression) of the model in evaluation mode on a whole data set;
 * the model goes back to training mode. */
void trainer_measure(trainer *t, const tg_dataset *set, double *loss_out, double *accuracy_out) {
    int64_t x_size = tg_dataset_x_size(set), correct = 0;
    double loss_sum = 0.0;
    /* held-out data is not what anomaly mode watches: a stop there would replace the report
     * (and the dump) of the training step */
    tg_anomaly_level level = tg_get_anomaly_level(t->ctx);
    tg_set_anomaly_level(t->ctx, TG_ANOMALY_OFF);
    tg_module_set_training(t->body, false);
    for (int64_t start = 0; start < set->count; start += EVAL_CHUNK) {
        int64_t n = set->count - start < EVAL_CHUNK ? set->count - start : EVAL_CHUNK;
        int64_t shape[4] = {n, set->x_shape[0], set->x_shape[1], set->x_shape[2]};
        tg_tape_reset(t->tape);
        tg_no_grad_begin(t->tape);
        tg_tensor *x = tg_tape_from_data(t->tape, 1 + set->x_ndim, shape, set->x + start * x_size);
        if (x && t->augment && t->config->augment_normalize) tg_augment_normalize(t->augment, x);
        tg_tensor *y = tg_tape_from_data(t->tape, 1, shape, set->y + start);
        tg_tensor *out = trainer_forward(t, t->tape, x, NULL);
        tg_tensor *loss = trainer_loss(t, t->tape, out, y);
        loss_sum += loss ? (double)loss->data[0] * (double)n : NAN; /* each chunk's loss is a mean */
        if (out && set->classes > 0) correct += (int64_t)lround(tg_accuracy(out, y) * (double)n);
        tg_no_grad_end(t->tape);
    }
    *loss_out = set->count ? loss_sum / (double)set->count : NAN;
    *accuracy_out = set->classes > 0 && set->count ? (double)correct / (double)set->count : NAN;
    tg_module_set_training(t->body, true);
    tg_set_anomaly_level(t->ctx, level);
    tg_clear_error(t->ctx); /* a diverged model may fail here: that is a finding, not an error */
}

/* Loss (and accuracy) on the whole held-out set after `step` steps, as a point of the held-out
 * curve. */
void trainer_evaluate(trainer *t, int step) {
    run_result *r = t->result;
    trainer_measure(t, t->test, &r->final_loss, &r->test_accuracy);
    if (r->n_evals < MAX_EVALS && (r->n_evals == 0 || r->eval_step[r->n_evals - 1] != step)) {
        r->eval_step[r->n_evals] = step;
        r->eval_loss[r->n_evals++] = r->final_loss;
    }
}
