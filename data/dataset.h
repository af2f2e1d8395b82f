/*
 * data/dataset.h — what the data files share: making a data set and shuffling indices.
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

/* Frees a data set the library made and never handed out (an error path) outright; NULL: nothing
 * (tg_dataset_free keeps the header: see tgi_retired). */
TGI_HIDDEN void tgi_dataset_destroy(tg_dataset *ds);

/* Puts a uniformly random permutation of 0..n-1 into order (Fisher-Yates, n <= UINT32_MAX). */
TGI_HIDDEN void tgi_permutation(int64_t *order, int64_t n, tg_rng *rng);

/* A file's bytes in memory (data/readers.c). */
typedef struct tgi_file {
    unsigned char *bytes;
    size_t size;
    size_t capacity;         /* allocated bytes, for tgi_free */
} tgi_file;

/* Appends the bytes of the regular file path (see tgi_open_input) to file, which may hold
 * bytes already; an error (TG_ERR_IO, the message starting with `what` and naming the file)
 * when file would then hold more than max_bytes. On error file keeps what it held (the caller
 * releases it). */
TGI_HIDDEN tg_status tgi_file_append(tg_ctx *ctx, const char *what, const char *path,
                                     size_t max_bytes, tgi_file *file);
/* Makes room for `extra` more bytes after file->size; false when out of memory. */
TGI_HIDDEN bool tgi_file_reserve(tg_ctx *ctx, tgi_file *file, size_t extra);
TGI_HIDDEN void tgi_file_release(tg_ctx *ctx, tgi_file *file);

/* The fortunes corpus (tg_text_load_corpus) from the fortune files of dir_path: the tests point
 * it at a directory of their own. */
TGI_HIDDEN tg_text *tgi_text_load_fortunes(tg_ctx *ctx, const char *dir_path);

/* The bundled digits (data/digits_data.c): the image count, pixels 0..16 (64 per image) and
 * labels 0..9. */
TGI_HIDDEN int64_t tgi_digits_raw(const unsigned char **pixels, const unsigned char **labels);

#endif
