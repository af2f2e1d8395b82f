/*
 * data/dataset.c — data sets in memory, the bundled digits, train/test splits and minibatches.
 *
 * A data set is two allocations: its header, kept (marked freed) until tg_ctx_free so that a
 * second tg_dataset_free finds the mark (see tgi_retired), and its inputs and targets. The batcher allocates its index permutation once, when it is made, and
 * puts every batch in the tape's arena: a training loop that resets its tape each step keeps
 * running without calling the allocator.
 */
#include "data/dataset.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Keeps float counts well inside int64 and size_t arithmetic (as tensors do). */
#define MAX_FLOATS ((int64_t)1 << 40)

/* The header of a data set; a tg_dataset pointer is a pointer to its block. */
typedef struct dataset_block {
    tg_dataset ds;
    void *data;              /* the inputs and targets */
    size_t data_bytes;
    tgi_retired retired;     /* tg_dataset_free */
} dataset_block;

/* Floats per sample of a shape of 0 to 3 dims, or -1 when the shape is not valid. */
static int64_t sample_floats(int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > 3) return -1;
    int64_t size = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 1 || shape[d] > MAX_FLOATS / size) return -1;
        size *= shape[d];
    }
    return size;
}

static size_t align64(size_t n) {
    return (n + 63) & ~(size_t)63;
}

tg_dataset *tgi_dataset_new(tg_ctx *ctx, const char *what, int64_t count, int x_ndim,
                            const int64_t *x_shape, int y_ndim, const int64_t *y_shape,
                            int64_t classes) {
    if (count < 1 || count > TGI_DATASET_MAX_COUNT) {
        tgi_error(ctx, TG_ERR_INVALID, "%s: %lld samples, expected 1 to %lld", what,
                  (long long)count, (long long)TGI_DATASET_MAX_COUNT);
        return NULL;
    }
    int64_t x_size = sample_floats(x_ndim, x_shape), y_size = sample_floats(y_ndim, y_shape);
    if (x_size < 0 || y_size < 0 || x_size + y_size > MAX_FLOATS / count) {
        tgi_error(ctx, TG_ERR_SHAPE, "%s: %lld samples of that shape are more than 2^40 floats "
                  "or the shape is invalid", what, (long long)count);
        return NULL;
    }
    /* 64-byte aligned inputs and targets, like tensor data */
    size_t x_bytes = align64((size_t)(count * x_size) * sizeof(float));
    size_t bytes = 64 + x_bytes + (size_t)(count * y_size) * sizeof(float);
    dataset_block *block = tgi_alloc(ctx, sizeof *block);
    void *data = block ? tgi_alloc(ctx, bytes) : NULL;
    if (!data) {
        tgi_free(ctx, block, sizeof *block);
        tgi_error(ctx, TG_ERR_NOMEM, "%s: out of memory for %lld samples (%zu bytes)", what,
                  (long long)count, bytes);
        return NULL;
    }
    memset(block, 0, sizeof *block);
    memset(data, 0, bytes);
    block->data = data;
    block->data_bytes = bytes;
    tg_dataset *ds = &block->ds;
    ds->count = count;
    ds->x_ndim = x_ndim;
    ds->y_ndim = y_ndim;
    for (int d = 0; d < 3; d++) {
        ds->x_shape[d] = d < x_ndim ? x_shape[d] : 1;
        ds->y_shape[d] = d < y_ndim ? y_shape[d] : 1;
    }
    ds->classes = classes;
    uintptr_t x = ((uintptr_t)data + 63) & ~(uintptr_t)63; /* 64-byte aligned, like tensor data */
    ds->x = (float *)x;
    ds->y = (float *)(x + x_bytes);
    ds->ctx = ctx;
    return ds;
}

void tgi_dataset_destroy(tg_dataset *ds) {
    if (!ds) return;
    dataset_block *block = (dataset_block *)ds;
    tgi_free(ds->ctx, block->data, block->data_bytes);
    tgi_free(ds->ctx, block, sizeof *block);
}

void tg_dataset_free(tg_dataset *ds) {
    if (!ds) return;
    dataset_block *block = (dataset_block *)ds;
    if (block->retired.freed) return;
    tgi_free(ds->ctx, block->data, block->data_bytes);
    ds->x = ds->y = NULL;
    tgi_retire(ds->ctx, &block->retired, block, sizeof *block);
}

int64_t tg_dataset_x_size(const tg_dataset *ds) {
    return ds ? sample_floats(ds->x_ndim, ds->x_shape) : -1;
}

int64_t tg_dataset_y_size(const tg_dataset *ds) {
    return ds ? sample_floats(ds->y_ndim, ds->y_shape) : -1;
}

/* A data set made by hand (the struct is public) is checked before its arrays are indexed. */
static tg_status check_dataset(const tg_dataset *ds, const char *what) {
    if (ds->count < 1 || ds->count > TGI_DATASET_MAX_COUNT || !ds->x || !ds->y ||
        tg_dataset_x_size(ds) < 0 || tg_dataset_y_size(ds) < 0)
        return tgi_error(ds->ctx, TG_ERR_INVALID, "%s: not a valid data set (%lld samples, "
                         "%d input dims, %d target dims)", what, (long long)ds->count,
                         ds->x_ndim, ds->y_ndim);
    return TG_OK;
}

void tgi_permutation(int64_t *order, int64_t n, tg_rng *rng) {
    for (int64_t i = 0; i < n; i++) order[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = tg_rng_below(rng, (uint32_t)(i + 1));
        int64_t swap = order[i];
        order[i] = order[j];
        order[j] = swap;
    }
}

/* Copies rows[0..n-1] of src (rows of row_size floats) to consecutive rows of dst. */
static void gather(float *dst, const float *src, int64_t row_size, const int64_t *rows,
                   int64_t n) {
    for (int64_t i = 0; i < n; i++)
        memcpy(dst + i * row_size, src + rows[i] * row_size, (size_t)row_size * sizeof(float));
}

tg_dataset *tg_dataset_digits(tg_ctx *ctx) {
    if (!ctx) return NULL;
    const unsigned char *pixels, *labels;
    int64_t count = tgi_digits_raw(&pixels, &labels);
    tg_dataset *ds = tgi_dataset_new(ctx, "dataset_digits", count, 1, (const int64_t[]){64}, 0,
                                     NULL, 10);
    if (!ds) return NULL;
    /* the pixels count the set cells of a 4x4 block: 0..16 */
    for (int64_t i = 0; i < count * 64; i++) ds->x[i] = (float)pixels[i] / 16.0f;
    for (int64_t i = 0; i < count; i++) ds->y[i] = (float)labels[i];
    return ds;
}

tg_status tg_dataset_reshape(tg_dataset *ds, int ndim, const int64_t *shape) {
    if (!ds || !ds->ctx) return TG_ERR_INVALID;
    if (check_dataset(ds, "dataset_reshape") != TG_OK) return TG_ERR_INVALID;
    /* x_shape holds 3 dims: a 4th would be read past it by every later size */
    int64_t size = ndim >= 1 && ndim <= 3 && shape ? sample_floats(ndim, shape) : -1;
    if (size != tg_dataset_x_size(ds)) {
        char given[96] = "none";
        for (int d = 0, len = 0; shape && d < ndim && d < 3; d++)
            len += snprintf(given + len, sizeof given - (size_t)len, "%s%lld", d ? "x" : "",
                            (long long)shape[d]);
        return tgi_error(ds->ctx, TG_ERR_SHAPE, "dataset_reshape: samples of %lld floats cannot "
                         "take the shape %s (%d dims; 1 to 3 dims of the same size expected)",
                         (long long)tg_dataset_x_size(ds), given, ndim);
    }
    ds->x_ndim = ndim;
    for (int d = 0; d < 3; d++) ds->x_shape[d] = d < ndim ? shape[d] : 1;
    return TG_OK;
}

/* A new data set of the samples rows[0..n-1] of ds, in that order. */
static tg_dataset *subset(const tg_dataset *ds, const int64_t *rows, int64_t n) {
    tg_dataset *part = tgi_dataset_new(ds->ctx, "dataset_split", n, ds->x_ndim, ds->x_shape,
                                       ds->y_ndim, ds->y_shape, ds->classes);
    if (!part) return NULL;
    gather(part->x, ds->x, tg_dataset_x_size(ds), rows, n);
    gather(part->y, ds->y, tg_dataset_y_size(ds), rows, n);
    return part;
}

tg_status tg_dataset_split(const tg_dataset *ds, double test_fraction, uint64_t seed,
                           tg_dataset **train, tg_dataset **test) {
    if (train) *train = NULL;
    if (test) *test = NULL;
    if (!ds || !ds->ctx) return TG_ERR_INVALID;
    tg_ctx *ctx = ds->ctx;
    if (!train || !test)
        return tgi_error(ctx, TG_ERR_INVALID, "dataset_split: train and test must not be NULL");
    if (check_dataset(ds, "dataset_split") != TG_OK) return TG_ERR_INVALID;
    /* rounded, not truncated: 0.3 * 10 is 3.0000000000000004 in double */
    double wanted = test_fraction * (double)ds->count;
    int64_t n_test = wanted >= 0 && wanted < (double)ds->count ? (int64_t)llround(wanted) : 0;
    if (n_test < 1 || n_test >= ds->count)
        return tgi_error(ctx, TG_ERR_INVALID, "dataset_split: test fraction %g of %lld samples "
                         "leaves an empty part", test_fraction, (long long)ds->count);
    size_t order_bytes = (size_t)ds->count * sizeof(int64_t);
    int64_t *order = tgi_alloc(ctx, order_bytes);
    if (!order) return tgi_error(ctx, TG_ERR_NOMEM, "dataset_split: out of memory");
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    tgi_permutation(order, ds->count, &rng);
    *test = subset(ds, order, n_test);
    *train = *test ? subset(ds, order + n_test, ds->count - n_test) : NULL;
    tgi_free(ctx, order, order_bytes);
    if (*train) return TG_OK;
    tgi_dataset_destroy(*test);
    *test = NULL;
    return tg_errcode(ctx);
}

/* ---- batcher -------------------------------------------------------------------------------- */

struct tg_batcher {
    const tg_dataset *ds;
    int64_t batch_size;
    bool shuffle, drop_last;
    tg_rng rng;
    int64_t *order;          /* the sample indices of this epoch */
    int64_t position;        /* index in order of the next batch's first sample */
    int64_t epoch;           /* epochs completed */
    tgi_retired retired;     /* tg_batcher_free */
};

tg_batcher *tg_batcher_new(const tg_dataset *ds, int64_t batch_size, bool shuffle,
                           bool drop_last, uint64_t seed) {
    if (!ds || !ds->ctx) return NULL;
    tg_ctx *ctx = ds->ctx;
    if (check_dataset(ds, "batcher") != TG_OK) return NULL;
    if (batch_size < 1 || (drop_last && batch_size > ds->count)) {
        tgi_error(ctx, TG_ERR_INVALID, "batcher: batch size %lld for %lld samples%s",
                  (long long)batch_size, (long long)ds->count,
                  batch_size < 1 ? ", expected >= 1" : " with drop_last: no batch at all");
        return NULL;
    }
    tg_batcher *b = tgi_alloc(ctx, sizeof *b);
    int64_t *order = tgi_alloc(ctx, (size_t)ds->count * sizeof *order);
    if (!b || !order) {
        tgi_free(ctx, b, sizeof *b);
        tgi_free(ctx, order, (size_t)ds->count * sizeof *order);
        tgi_error(ctx, TG_ERR_NOMEM, "batcher: out of memory for %lld indices",
                  (long long)ds->count);
        return NULL;
    }
    *b = (tg_batcher){.ds = ds, .batch_size = batch_size, .shuffle = shuffle,
                      .drop_last = drop_last, .order = order};
    tg_rng_seed(&b->rng, seed);
    if (shuffle) tgi_permutation(order, ds->count, &b->rng);
    else
        for (int64_t i = 0; i < ds->count; i++) order[i] = i;
    return b;
}

void tg_batcher_free(tg_batcher *b) {
    if (!b || b->retired.freed) return;
    tg_ctx *ctx = b->ds->ctx; /* a freed data set's header is still there (tgi_retired) */
    tgi_free(ctx, b->order, (size_t)b->ds->count * sizeof *b->order);
    tgi_retire(ctx, &b->retired, b, sizeof *b);
}

int64_t tg_batcher_epoch(const tg_batcher *b) {
    return b ? b->epoch : 0;
}

/* Ends the epoch; the next one has a fresh permutation drawn from the batcher's stream, so
 * epoch k's order depends only on the seed and k. */
static void end_epoch(tg_batcher *b) {
    b->epoch++;
    b->position = 0;
    if (b->shuffle) tgi_permutation(b->order, b->ds->count, &b->rng);
}

/* A tape tensor [n, shape...] holding the rows order[0..n-1] of src. */
static tg_tensor *batch_tensor(tg_tape *tape, int ndim, const int64_t *shape, const float *src,
                               const int64_t *order, int64_t n, const char *label) {
    int64_t batch_shape[TG_MAX_DIMS] = {n};
    for (int d = 0; d < ndim; d++) batch_shape[d + 1] = shape[d];
    tg_tensor *t = tg_tape_zeros(tape, ndim + 1, batch_shape);
    if (!t) return NULL;
    gather(t->data, src, t->size / n, order, n);
    /* a label makes shape errors in the model name the batch, not "leaf" */
    return tg_set_label(t, "%s", label);
}

bool tg_batcher_next(tg_batcher *b, tg_tape *tape, tg_tensor **x, tg_tensor **y) {
    if (!b) return false;
    if (!tape || !x || !y) {
        tgi_error(b->ds->ctx, TG_ERR_INVALID, "batcher_next: tape, x and y must not be NULL");
        return false;
    }
    *x = *y = NULL;
    const tg_dataset *ds = b->ds;
    int64_t n = ds->count - b->position;
    if (n > b->batch_size) n = b->batch_size;
    if (n == 0 || (b->drop_last && n < b->batch_size)) {
        end_epoch(b);
        return false;
    }
    const int64_t *rows = b->order + b->position;
    tg_tensor *bx = batch_tensor(tape, ds->x_ndim, ds->x_shape, ds->x, rows, n, "batch.x");
    tg_tensor *by = bx ? batch_tensor(tape, ds->y_ndim, ds->y_shape, ds->y, rows, n, "batch.y")
                       : NULL;
    if (!by) return false; /* out of arena memory: the tape's context has the message */
    b->position += n;
    *x = bx;
    *y = by;
    return true;
}

/* TG_OK when t can hold `what` of a full batch: [batch_size, shape...]. */
static tg_status check_batch_tensor(const tg_batcher *b, const tg_tensor *t, int ndim,
                                    const int64_t *shape, const char *what) {
    tg_ctx *ctx = b->ds->ctx;
    if (!t) return tgi_error(ctx, TG_ERR_INVALID, "batcher_next_into: %s is NULL", what);
    if (tgi_refuse_stale(t, "batcher_next_into") != TG_OK) return TG_ERR_STATE;
    int64_t want[TG_MAX_DIMS] = {b->batch_size};
    for (int d = 0; d < ndim; d++) want[d + 1] = shape[d];
    bool same = t->ndim == ndim + 1;
    for (int d = 0; same && d <= ndim; d++) same = t->shape[d] == want[d];
    if (same) return TG_OK;
    char got_text[96], want_text[96];
    return tgi_error(ctx, TG_ERR_SHAPE, "batcher_next_into: %s%s%s%s is %s, a batch of it is %s",
                     what, t->label[0] ? " '" : "", t->label, t->label[0] ? "'" : "",
                     tgi_format_shape(t->ndim, t->shape, got_text, sizeof got_text),
                     tgi_format_shape(ndim + 1, want, want_text, sizeof want_text));
}

bool tg_batcher_next_into(tg_batcher *b, tg_tensor *x, tg_tensor *y) {
    if (!b) return false;
    const tg_dataset *ds = b->ds;
    if (check_batch_tensor(b, x, ds->x_ndim, ds->x_shape, "x") != TG_OK ||
        check_batch_tensor(b, y, ds->y_ndim, ds->y_shape, "y") != TG_OK)
        return false;
    /* only full batches fit: a shorter last one ends the epoch, as drop_last does */
    if (ds->count - b->position < b->batch_size) {
        end_epoch(b);
        return false;
    }
    const int64_t *rows = b->order + b->position;
    gather(x->data, ds->x, x->size / b->batch_size, rows, b->batch_size);
    gather(y->data, ds->y, y->size / b->batch_size, rows, b->batch_size);
    b->position += b->batch_size;
    return true;
}
