/* tests/test_idx_gzip.c — gzipped IDX files (tg_dataset_read_idx inflates them as it reads)
 * and Fashion-MNIST (tg_dataset_fashion_mnist). The files are small ones written here, plain
 * and through zlib's gzwrite; one test reads Debian's dataset-fashion-mnist when it is
 * installed and skips otherwise. Memory must follow the compressed file, never what a header
 * claims: the counting allocator's peak shows it. */
#include "helpers.h"

#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"
#define SMALL_PEAK (1L << 20) /* the read buffers and zlib's state, far below a claimed body */

static char dir[64];
static tally count;
static tg_ctx *ctx;

static void setup(void) {
    temp_dir_make(dir, "tg-idx-gzip");
    count = (tally){.fail_at = -1};
    ctx = tg_ctx_new_with_allocator(tally_alloc, &count);
    cr_assert_not_null(ctx);
}

static void teardown(void) {
    tg_ctx_free(ctx);
    temp_dir_remove(dir);
}

TestSuite(idx_gzip, .init = setup, .fini = teardown);

/* IDX bytes in memory: the header then the body. */
typedef struct idx_bytes {
    unsigned char bytes[16 + 200 * 28 * 28];
    size_t size;
} idx_bytes;

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* `body` images of rows x cols under a header claiming `claimed`, pixels from a seeded LCG
 * (incompressible: a large file spans several of the reader's buffers). */
static void make_images(idx_bytes *f, uint32_t claimed, uint32_t body, uint32_t rows,
                        uint32_t cols, uint32_t seed) {
    put_be32(f->bytes, 0x803);
    put_be32(f->bytes + 4, claimed);
    put_be32(f->bytes + 8, rows);
    put_be32(f->bytes + 12, cols);
    size_t n = (size_t)body * rows * cols;
    cr_assert_leq(16 + n, sizeof f->bytes);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        f->bytes[16 + i] = (unsigned char)(seed >> 24);
    }
    f->size = 16 + n;
}

/* `body` labels i % classes under a header claiming `claimed`. */
static void make_labels(idx_bytes *f, uint32_t claimed, uint32_t body, int classes) {
    put_be32(f->bytes, 0x801);
    put_be32(f->bytes + 4, claimed);
    for (uint32_t i = 0; i < body; i++) f->bytes[8 + i] = (unsigned char)(i * 7 % classes);
    f->size = 8 + body;
}

/* dir/name, in one of 16 buffers used in turn: a test holds a few paths at once. */
static const char *path_of(const char *name) {
    static char paths[16][160];
    static int next;
    char *path = paths[next++ % 16];
    snprintf(path, sizeof paths[0], "%s/%s", dir, name);
    return path;
}

static const char *write_plain(const char *name, const void *bytes, size_t n) {
    return path_of(strrchr(write_in_dir(dir, name, bytes, n), '/') + 1);
}

/* Gzips bytes[0..n) into dir/name with zlib's gzwrite; returns the path. */
static const char *write_gz(const char *name, const void *bytes, size_t n) {
    const char *path = path_of(name);
    gzFile gz = gzopen(path, "wb6");
    cr_assert_not_null(gz, "gzopen %s", path);
    cr_assert_eq(gzwrite(gz, bytes, (unsigned)n), (int)n);
    cr_assert_eq(gzclose(gz), Z_OK);
    return path;
}

/* The bytes of a file (at most cap), for cutting and corrupting. */
static size_t slurp(const char *path, unsigned char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    size_t n = fread(buf, 1, cap, f);
    cr_assert(feof(f), "%s is larger than %zu bytes", path, cap);
    fclose(f);
    return n;
}

static void expect_same(const tg_dataset *a, const tg_dataset *b) {
    cr_assert(a && b);
    cr_expect_eq(a->count, b->count);
    cr_expect_eq(a->classes, b->classes);
    cr_expect(a->x_ndim == b->x_ndim && a->x_shape[0] == b->x_shape[0]);
    int64_t xs = a->count * tg_dataset_x_size(a);
    cr_expect(memcmp(a->x, b->x, (size_t)xs * sizeof(float)) == 0, "pixels differ");
    cr_expect(memcmp(a->y, b->y, (size_t)a->count * sizeof(float)) == 0, "labels differ");
}

/* images.gz and labels.gz of n samples (rows x cols, labels below classes); *gi, *gl: paths. */
static void write_gz_pair(uint32_t n, uint32_t rows, uint32_t cols, int classes, uint32_t seed,
                          const char **gi, const char **gl) {
    static idx_bytes images, labels;
    make_images(&images, n, n, rows, cols, seed);
    make_labels(&labels, n, n, classes);
    *gi = write_gz("images.gz", images.bytes, images.size);
    *gl = write_gz("labels.gz", labels.bytes, labels.size);
}

static void expect_io_error(const char *what) {
    cr_expect_eq(tg_errcode(ctx), TG_ERR_IO, "%s: %s", what, tg_errmsg(ctx));
}

Test(idx_gzip, gzipped_files_give_the_same_data_as_plain_ones) {
    static idx_bytes images, labels;
    /* 200 random 28x28 images: ~157 KB, more than one read buffer and one chunk of body */
    make_images(&images, 200, 200, 28, 28, 3);
    make_labels(&labels, 200, 200, 10);
    const char *pi = write_plain("images", images.bytes, images.size);
    const char *pl = write_plain("labels", labels.bytes, labels.size);
    const char *gi = write_gz("images.gz", images.bytes, images.size);
    const char *gl = write_gz("labels.gz", labels.bytes, labels.size);
    tg_dataset *plain = tg_dataset_read_idx(ctx, pi, pl);
    cr_assert_not_null(plain, "%s", tg_errmsg(ctx));
    cr_expect(plain->count == 200 && plain->x_shape[0] == 784 && plain->classes == 10);
    cr_expect_eq(plain->x[5], images.bytes[16 + 5] / 255.0f);
    cr_expect_eq(plain->y[3], 21 % 10);
    tg_dataset *gz = tg_dataset_read_idx(ctx, gi, gl);
    cr_assert_not_null(gz, "%s", tg_errmsg(ctx));
    expect_same(plain, gz);
    tg_dataset *mixed = tg_dataset_read_idx(ctx, gi, pl); /* by magic, not by name */
    cr_assert_not_null(mixed, "%s", tg_errmsg(ctx));
    expect_same(plain, mixed);
    tg_dataset_free(mixed);

    /* two gzip members one after the other (gzip -c a b > c) are one file */
    unsigned char first[200 * 1024], second[200 * 1024];
    size_t split = 16 + 70 * 784 + 5;
    size_t n1 = slurp(write_gz("m1.gz", images.bytes, split), first, sizeof first);
    size_t n2 = slurp(write_gz("m2.gz", images.bytes + split, images.size - split), second,
                      sizeof second);
    memcpy(first + n1, second, n2);
    const char *members = write_plain("members.gz", first, n1 + n2);
    tg_dataset *joined = tg_dataset_read_idx(ctx, members, gl);
    cr_assert_not_null(joined, "%s", tg_errmsg(ctx));
    expect_same(plain, joined);
    tg_dataset_free(joined);
    tg_dataset_free(gz);
    tg_dataset_free(plain);

    /* blank images compress about as far as deflate goes (~840:1 here; its bound is 1032:1): an
     * honest file near the bound is read, not refused */
    static idx_bytes blank;
    make_images(&blank, 200, 0, 28, 28, 0);
    blank.size += 200 * 784; /* zeros: the static buffer's */
    cr_assert_leq(blank.size, sizeof blank.bytes);
    make_labels(&labels, 200, 200, 10);
    gi = write_gz("blank.gz", blank.bytes, blank.size);
    struct stat st;
    cr_assert_eq(stat(gi, &st), 0);
    cr_expect_gt(blank.size / (size_t)st.st_size, 500, "ratio %zu", blank.size / (size_t)st.st_size);
    tg_dataset *zeros = tg_dataset_read_idx(ctx, gi, write_gz("l200.gz", labels.bytes, labels.size));
    cr_assert_not_null(zeros, "%s", tg_errmsg(ctx));
    cr_expect(zeros->count == 200 && zeros->x[0] == 0.0f && zeros->x[200 * 784 - 1] == 0.0f);
    tg_dataset_free(zeros);
}

Test(idx_gzip, a_cut_file_is_truncated_with_counts) {
    static idx_bytes images, labels;
    long baseline = count.live_bytes;
    make_images(&images, 200, 200, 28, 28, 5);
    make_labels(&labels, 200, 200, 10);
    const char *lpath = write_gz("labels.gz", labels.bytes, labels.size);
    unsigned char whole[200 * 1024];
    size_t n = slurp(write_gz("whole.gz", images.bytes, images.size), whole, sizeof whole);

    const char *half = write_plain("half.gz", whole, n / 2);
    cr_expect_null(tg_dataset_read_idx(ctx, half, lpath));
    expect_io_error("cut in half");
    expect_errmsg_has(ctx, half, "truncated: ", " of 200 images", "cut short");
    cr_expect_null(strstr(tg_errmsg(ctx), "truncated: 200 of"), "%s", tg_errmsg(ctx));

    /* every image there, the trailer (CRC-32, length) cut off */
    const char *no_trailer = write_plain("no-trailer.gz", whole, n - 8);
    tg_clear_error(ctx);
    cr_expect_null(tg_dataset_read_idx(ctx, no_trailer, lpath));
    expect_io_error("no trailer");
    expect_errmsg_has(ctx, no_trailer, "truncated: all 200 images are there", "cut short");

    /* a stream that ends cleanly short of the header's count */
    const char *short_labels = write_gz("short-labels.gz", labels.bytes, 8 + 150);
    tg_clear_error(ctx);
    cr_expect_null(tg_dataset_read_idx(ctx, write_gz("i.gz", images.bytes, images.size),
                                       short_labels));
    expect_io_error("short labels");
    expect_errmsg_has(ctx, short_labels, "truncated: 150 of 200 labels", "ends there");
    cr_expect_eq(count.live_bytes, baseline, "%ld bytes kept", count.live_bytes - baseline);
}

/* A 200-byte gzip claiming 10^8 images (78 GB) is refused from its header; one claiming more
 * than it holds but within deflate's ratio is read until it ends: either way memory stays near
 * the compressed size. */
Test(idx_gzip, a_header_claiming_more_than_the_file_holds_allocates_little) {
    static idx_bytes images, labels;
    long baseline = count.live_bytes;
    make_images(&images, 100000000u, 0, 28, 28, 1);
    /* a 200-byte body of zeros after the header: the gzip file is ~50 bytes */
    images.size += 200;
    make_labels(&labels, 100000000u, 0, 10);
    const char *gi = write_gz("huge-images.gz", images.bytes, images.size);
    struct stat st;
    cr_assert_eq(stat(gi, &st), 0);
    cr_assert_lt(st.st_size, 200, "the test file should be tiny: %lld", (long long)st.st_size);
    const char *gl = write_gz("huge-labels.gz", labels.bytes, labels.size);
    cr_expect_null(tg_dataset_read_idx(ctx, gi, gl));
    expect_io_error("huge claim");
    expect_errmsg_has(ctx, gi, "claims 100000000 images of 28x28", "78400000000 bytes",
                      "more than a gzip file of", "1032:1");
    cr_expect_lt(count.peak_bytes, SMALL_PEAK, "%ld bytes at the peak", count.peak_bytes);
    cr_expect_eq(count.live_bytes, baseline, "%ld bytes kept", count.live_bytes - baseline);

    /* claims 300 images, holds 3: within 1032:1 of ~2.5 KB, so read, then refused at its end */
    make_images(&images, 300, 3, 28, 28, 9);
    make_labels(&labels, 300, 300, 10);
    const char *ipath = write_gz("short-images.gz", images.bytes, images.size);
    tg_clear_error(ctx);
    cr_expect_null(tg_dataset_read_idx(ctx, ipath, write_gz("l.gz", labels.bytes, labels.size)));
    expect_io_error("short images");
    expect_errmsg_has(ctx, ipath, "truncated: 3 of 300 images", "2352 of 235200 bytes",
                      "ends there");
    cr_expect_lt(count.peak_bytes, SMALL_PEAK + 300 * 785 * 4L, "%ld bytes", count.peak_bytes);
    cr_expect_eq(count.live_bytes, baseline, "%ld bytes kept", count.live_bytes - baseline);
}

Test(idx_gzip, wrong_magic_counts_and_trailing_data_are_errors) {
    static idx_bytes images, labels;
    const char *gi, *gl;
    write_gz_pair(4, 3, 2, 3, 1, &gi, &gl);
    cr_expect_null(tg_dataset_read_idx(ctx, gl, gl), "labels given as images");
    expect_io_error("magic");
    expect_errmsg_has(ctx, gl, "magic number 0x00000801", "expected 0x00000803");

    make_labels(&labels, 5, 5, 3);
    const char *five = write_gz("five.gz", labels.bytes, labels.size);
    tg_clear_error(ctx);
    cr_expect_null(tg_dataset_read_idx(ctx, gi, five), "count mismatch");
    expect_io_error("counts");
    expect_errmsg_has(ctx, gi, "4 images", five, "5 labels");

    /* the header says 4 images, the stream holds 5 */
    make_images(&images, 4, 5, 3, 2, 1);
    const char *more = write_gz("more.gz", images.bytes, images.size);
    tg_clear_error(ctx);
    cr_expect_null(tg_dataset_read_idx(ctx, more, gl));
    expect_io_error("extra data");
    expect_errmsg_has(ctx, more, "need 24 bytes of data", "has 30 once inflated");

    /* bytes after the gzip stream that are not another member */
    unsigned char buf[4096];
    size_t n = slurp(gi, buf, sizeof buf - 3);
    memcpy(buf + n, "xyz", 3);
    const char *junk = write_plain("junk.gz", buf, n + 3);
    tg_clear_error(ctx);
    cr_expect_null(tg_dataset_read_idx(ctx, junk, gl));
    expect_io_error("junk");
    expect_errmsg_has(ctx, junk, "after the end of the gzip stream");

    const char *empty = write_gz("empty.gz", "", 0);
    tg_clear_error(ctx);
    cr_expect_null(tg_dataset_read_idx(ctx, empty, gl));
    expect_errmsg_has(ctx, empty, "0 bytes once inflated", "too short for the magic number");
}

Test(idx_gzip, a_corrupt_stream_gives_zlibs_message) {
    const char *gi, *gl;
    write_gz_pair(20, 5, 5, 4, 2, &gi, &gl);
    unsigned char buf[4096];
    size_t n = slurp(gi, buf, sizeof buf);

    /* gzwrite's header is 10 bytes; the first deflate byte's bits 1-2 are the block type,
     * and 3 is reserved */
    cr_assert_eq(buf[3] & 0x1f, 0, "no optional gzip header fields");
    unsigned char bad[4096];
    memcpy(bad, buf, n);
    bad[10] |= 0x06;
    const char *bad_block = write_plain("bad-block.gz", bad, n);
    cr_expect_null(tg_dataset_read_idx(ctx, bad_block, gl));
    expect_io_error("block type");
    expect_errmsg_has(ctx, bad_block, "corrupt gzip stream", "invalid block type");

    /* the data intact, its CRC-32 (the trailer's first 4 bytes) wrong */
    memcpy(bad, buf, n);
    bad[n - 8] ^= 0xff;
    const char *bad_crc = write_plain("bad-crc.gz", bad, n);
    tg_clear_error(ctx);
    cr_expect_null(tg_dataset_read_idx(ctx, bad_crc, gl));
    expect_io_error("crc");
    expect_errmsg_has(ctx, bad_crc, "corrupt gzip stream", "incorrect data check");
}

/* With the allocator refusing from the k-th request on (zlib's state included), a read either
 * succeeds or fails with TG_ERR_NOMEM, and gives back everything it took. */
Test(idx_gzip, out_of_memory_is_an_error_and_leaks_nothing) {
    const char *gi, *gl;
    write_gz_pair(10, 4, 4, 10, 4, &gi, &gl);
    long baseline = count.live_bytes;
    bool succeeded = false;
    long k = 0;
    for (; k < 30 && !succeeded; k++) {
        count.fail_at = count.allocations + k;
        tg_clear_error(ctx);
        tg_dataset *ds = tg_dataset_read_idx(ctx, gi, gl);
        succeeded = ds != NULL;
        if (!ds) {
            cr_expect_eq(tg_errcode(ctx), TG_ERR_NOMEM, "k = %ld: %s", k, tg_errmsg(ctx));
            cr_expect_eq(count.live_bytes, baseline, "k = %ld: %ld bytes kept", k,
                         count.live_bytes - baseline);
        }
        tg_dataset_free(ds);
    }
    cr_expect(succeeded, "no read succeeded with %ld allocations allowed", k);
    cr_expect_gt(k, 3, "zlib's allocations were not counted");
}

/* ---- Fashion-MNIST -------------------------------------------------------------------------- */

Test(idx_gzip, fashion_mnist_from_a_directory_of_files) {
    static idx_bytes images, labels;
    make_images(&images, 12, 12, 28, 28, 8);
    make_labels(&labels, 12, 12, 10);
    /* the names Debian uses, the test split; the images inflated (no .gz), as Zalando's are */
    write_plain("t10k-images-idx3-ubyte", images.bytes, images.size);
    write_gz("t10k-labels-idx1-ubyte.gz", labels.bytes, labels.size);
    tg_dataset *ds = tg_dataset_fashion_mnist(ctx, dir, false);
    cr_assert_not_null(ds, "%s", tg_errmsg(ctx));
    cr_expect(ds->count == 12 && ds->classes == 10 && ds->x_ndim == 3);
    cr_expect(ds->x_shape[0] == 1 && ds->x_shape[1] == 28 && ds->x_shape[2] == 28);
    cr_expect_eq(ds->x[783], images.bytes[16 + 783] / 255.0f);
    tg_dataset_free(ds);

    /* the training split is absent: the error names the file and the package */
    cr_expect_null(tg_dataset_fashion_mnist(ctx, dir, true));
    expect_io_error("missing");
    expect_errmsg_has(ctx, dir, "train-images-idx3-ubyte.gz", "dataset-fashion-mnist",
                      "apt-get install dataset-fashion-mnist");

    /* not 28x28 */
    make_images(&images, 12, 12, 4, 7, 8);
    write_gz("t10k-images-idx3-ubyte.gz", images.bytes, images.size); /* .gz comes first */
    tg_clear_error(ctx);
    cr_expect_null(tg_dataset_fashion_mnist(ctx, dir, false));
    expect_io_error("4x7");
    expect_errmsg_has(ctx, "4x7 images", "expected 28x28");
}

/* The counts come from the headers alone: a body cut short is the reader's to find, while a
 * header that cannot be right is refused by the count too. */
Test(idx_gzip, counting_reads_the_headers_and_checks_them) {
    static idx_bytes images, labels;
    make_images(&images, 200, 200, 28, 28, 6);
    make_labels(&labels, 200, 200, 10);
    const char *pi = write_plain("images", images.bytes, images.size);
    const char *pl = write_plain("labels", labels.bytes, labels.size);
    const char *gi = write_gz("images.gz", images.bytes, images.size);
    const char *gl = write_gz("labels.gz", labels.bytes, labels.size);
    cr_expect_eq(tg_dataset_idx_count(ctx, pi, pl), 200, "%s", tg_errmsg(ctx));
    unsigned char whole[200 * 1024];
    size_t n = slurp(gi, whole, sizeof whole);
    const char *half = write_plain("half.gz", whole, n / 2);
    cr_expect_eq(tg_dataset_idx_count(ctx, half, gl), 200, "%s", tg_errmsg(ctx));
    /* read buffers and zlib's state, never the 627 KB of floats the images would be */
    cr_expect_lt(count.peak_bytes, 200 * 784 * 4 / 2, "%ld bytes at the peak", count.peak_bytes);
    cr_expect_null(tg_dataset_read_idx(ctx, half, gl), "the reader finds the cut");
    expect_errmsg_has(ctx, half, "truncated: ");

    tg_clear_error(ctx);
    cr_expect_eq(tg_dataset_idx_count(ctx, gl, gl), -1, "labels given as images");
    expect_io_error("labels as images");
    expect_errmsg_has(ctx, "magic number");
    make_labels(&labels, 5, 5, 10);
    const char *five = write_gz("five.gz", labels.bytes, labels.size);
    tg_clear_error(ctx);
    cr_expect_eq(tg_dataset_idx_count(ctx, gi, five), -1);
    expect_errmsg_has(ctx, "has 200 images but", "has 5 labels");
    /* a plain file whose header claims more than its size: refused as the reader refuses it */
    const char *cut_plain = write_plain("cut-plain", images.bytes, images.size - 784);
    tg_clear_error(ctx);
    cr_expect_eq(tg_dataset_idx_count(ctx, cut_plain, pl), -1);
    expect_errmsg_has(ctx, cut_plain, "the dimensions need");

    /* Fashion-MNIST's split, counted; a size other than 28x28 refused */
    make_images(&images, 12, 12, 28, 28, 8);
    make_labels(&labels, 12, 12, 10);
    write_gz("train-images-idx3-ubyte.gz", images.bytes, images.size);
    write_gz("train-labels-idx1-ubyte.gz", labels.bytes, labels.size);
    tg_clear_error(ctx);
    cr_expect_eq(tg_dataset_fashion_mnist_count(ctx, dir, true), 12, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_dataset_fashion_mnist_count(ctx, dir, false), -1, "no test split here");
    expect_errmsg_has(ctx, "t10k-images-idx3-ubyte.gz", "dataset-fashion-mnist");
    make_images(&images, 12, 12, 4, 7, 8);
    write_gz("train-images-idx3-ubyte.gz", images.bytes, images.size);
    tg_clear_error(ctx);
    cr_expect_eq(tg_dataset_fashion_mnist_count(ctx, dir, true), -1);
    expect_errmsg_has(ctx, "4x7 images", "expected 28x28");
}

Test(idx_gzip, fashion_mnist_of_the_debian_package) {
    struct stat st;
    if (stat(FASHION_DIR "/train-images-idx3-ubyte.gz", &st) != 0)
        cr_skip("Debian's dataset-fashion-mnist is not installed (" FASHION_DIR ")");
    const int64_t counts[2] = {10000, 60000};
    for (int train = 0; train < 2; train++) {
        tg_dataset *ds = tg_dataset_fashion_mnist(ctx, NULL, train);
        cr_assert_not_null(ds, "%s", tg_errmsg(ctx));
        cr_expect_eq(ds->count, counts[train]);
        cr_expect_eq(tg_dataset_fashion_mnist_count(ctx, NULL, train), counts[train]);
        cr_expect(ds->x_ndim == 3 && ds->x_shape[0] == 1 && ds->x_shape[1] == 28 &&
                  ds->x_shape[2] == 28 && ds->y_ndim == 0 && ds->classes == 10);
        int64_t per_class[10] = {0};
        bool labels_ok = true;
        for (int64_t i = 0; i < ds->count; i++) {
            float y = ds->y[i];
            labels_ok = labels_ok && y >= 0 && y <= 9 && y == (float)(int)y;
            if (labels_ok) per_class[(int)y]++;
        }
        cr_expect(labels_ok, "a label outside 0..9");
        for (int c = 0; c < 10; c++) /* the set is balanced */
            cr_expect_eq(per_class[c], counts[train] / 10, "class %d", c);
        float lo = 1, hi = 0;
        for (int64_t i = 0; i < ds->count * 784; i++) {
            lo = ds->x[i] < lo ? ds->x[i] : lo;
            hi = ds->x[i] > hi ? ds->x[i] : hi;
        }
        cr_expect(lo == 0.0f && hi == 1.0f, "pixels span [%g, %g]", lo, hi);
        tg_dataset_free(ds);
    }
    cr_expect_null(tg_dataset_fashion_mnist(ctx, "/nonexistent-fashion", true));
    expect_errmsg_has(ctx, "/nonexistent-fashion", "dataset-fashion-mnist");
}
