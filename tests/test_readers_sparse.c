/* tests/test_readers_sparse.c — readers look before they read (FINDINGS-2 item 11): a header
 * that does not fit the file's size is refused before the body is read, so memory follows the
 * file's header, never what it claims nor the file's size. The files are sparse (ftruncate): a
 * reader that read them whole would take their size in memory, which the counting allocator's
 * peak would show. */
#include "helpers.h"

#include <fcntl.h>
#include <unistd.h>

#define SPARSE_BYTES ((off_t)64 << 20) /* 64 MiB, no disk blocks */
#define SMALL_PEAK (1L << 20)          /* what looking at a header may take */

static char dir[64], path[128];
static tally count;
static tg_ctx *ctx;

static void setup(void) {
    temp_dir_make(dir, "tg-sparse");
    count = (tally){.fail_at = -1};
    ctx = tg_ctx_new_with_allocator(tally_alloc, &count);
    cr_assert_not_null(ctx);
}

static void teardown(void) {
    tg_ctx_free(ctx);
    unlink(path);
    rmdir(dir);
}

TestSuite(readers_sparse, .init = setup, .fini = teardown);

/* A file of `total` bytes (a hole after `head`) that starts with head[0..n). */
static const char *sparse_file(const char *name, const unsigned char *head, size_t n, off_t total) {
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, head, n), (ssize_t)n);
    cr_assert_eq(ftruncate(fd, total), 0);
    close(fd);
    return path;
}

static void expect_refused_small(const char *fragment) {
    cr_expect_eq(tg_errcode(ctx), TG_ERR_IO, "%s", tg_errmsg(ctx));
    expect_errmsg_has(ctx, fragment);
    cr_expect_lt(count.peak_bytes, SMALL_PEAK,
                 "%ld bytes allocated at the peak: the body was read", count.peak_bytes);
}

/* 60000 images of 28 x 28 (47 MB) claimed, 64 MiB there: refused by the header alone. */
Test(readers_sparse, idx_images_whose_header_does_not_fit_the_size) {
    const unsigned char head[16] = {0, 0, 8, 3, 0, 0, 0xea, 0x60, 0, 0, 0, 28, 0, 0, 0, 28};
    const char *images = sparse_file("images.idx", head, sizeof head, SPARSE_BYTES);
    cr_expect_null(tg_dataset_read_idx(ctx, images, "/nonexistent-labels"));
    expect_errmsg_has(ctx, "the dimensions need 47040000 bytes of data, the file has 67108848");
    expect_refused_small("read_idx");
}

/* dims of 2^32 - 1 claim about 2^64 bytes: refused, no matter the file's size. */
Test(readers_sparse, idx_claiming_exabytes) {
    const unsigned char head[16] = {0, 0, 8, 3, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0xff,
                                    0, 0, 0xff, 0xff};
    cr_expect_null(tg_dataset_read_idx(ctx, sparse_file("images.idx", head, sizeof head, SPARSE_BYTES),
                                       "/nonexistent-labels"));
    expect_refused_small("the dimensions need");
}

/* The labels file is checked before it is read too (the images were fine). */
Test(readers_sparse, idx_labels_whose_header_does_not_fit_the_size) {
    unsigned char images[16 + 4] = {0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4};
    char images_path[256];
    snprintf(images_path, sizeof images_path, "%s", write_in_dir(dir, "i.idx", images, sizeof images));
    const unsigned char head[8] = {0, 0, 8, 1, 0, 0, 0, 1};
    cr_expect_null(tg_dataset_read_idx(ctx, images_path, sparse_file("labels.idx", head, sizeof head, SPARSE_BYTES)));
    expect_refused_small("the dimensions need 1 bytes of data");
    unlink(images_path);
}

/* safetensors: a header length beyond the file; then a small header whose tensor lies past the
 * data: both refused having read the 8-byte length, or the header, only. */
Test(readers_sparse, safetensors_header_and_offsets_against_the_size) {
    tg_tensor *t = tg_set_label(tg_zeros(ctx, TG_SHAPE(2)), "a");
    unsigned char len[8] = {0, 0, 0, 0, 0, 1, 0, 0}; /* 2^40 */
    cr_expect_eq(tg_load_safetensors(ctx, sparse_file("big.safetensors", len, 8, SPARSE_BYTES), &t, 1),
                 TG_ERR_IO);
    expect_refused_small("is over the limit");
    unlink(path);
    tg_clear_error(ctx);
    const char json[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    unsigned char head[8 + sizeof json - 1];
    for (int i = 0; i < 8; i++) head[i] = (unsigned char)((sizeof json - 1) >> (8 * i));
    memcpy(head + 8, json, sizeof json - 1);
    /* the data is a 64 MiB hole: only the tensor's 8 bytes are read */
    cr_expect_eq(tg_load_safetensors(ctx, sparse_file("a.safetensors", head, sizeof head, SPARSE_BYTES), &t, 1),
                 TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_lt(count.peak_bytes, SMALL_PEAK, "%ld bytes at the peak: the data was read whole",
                 count.peak_bytes);
}
