/*
 * models/dataset.h — what the data files share: making a data set and shuffling indices.
 */
#ifndef TAPEGRAD_DATASET_H
#define TAPEGRAD_DATASET_H

#include "autograd/internal.h"

/* The largest sample count: shuffles draw indices with tg_rng_below, which takes a uint32_t. */
#define TGI_DATASET_MAX_COUNT ((int64_t)UINT32_MAX)

/*
 * A data set of `count` samples with zeroed x and y, in one allocation that tg_dataset_free
 * releases. y_ndim 0 means one value per sample. On error records a message that starts with
 * `what` and returns NULL.
 */
TGI_HIDDEN tg_dataset *tgi_dataset_new(tg_ctx *ctx, const char *what, int64_t count, int x_ndim,
                                       const int64_t *x_shape, int y_ndim, const int64_t *y_shape,
                                       int64_t classes);

/* Puts a uniformly random permutation of 0..n-1 into order (Fisher-Yates, n <= UINT32_MAX). */
TGI_HIDDEN void tgi_permutation(int64_t *order, int64_t n, tg_rng *rng);

/* The bundled digits (models/digits_data.c): the image count, pixels 0..16 (64 per image) and
 * labels 0..9. */
TGI_HIDDEN int64_t tgi_digits_raw(const unsigned char **pixels, const unsigned char **labels);

#endif
