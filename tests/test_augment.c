/* tests/test_augment.c — image augmentation (data/augment.c): the flip mirrors and comes up about
 * half the time, every crop is a window of the zero-padded image at offsets in [0, 2p] that
 * cover the range, normalisation is torchvision's arithmetic to the bit, the same seed gives the
 * same batches, nothing is allocated after the first batch, bad input is refused naming shapes,
 * and tg_dataset_channel_stats agrees with a direct computation. */
#include "fixture.h"

TestSuite(augment, .init = fixture_setup, .fini = fixture_teardown);

/* A persistent [n,c,h,w] batch of n copies of one image whose pixels are 1, 2, 3, ... (all
 * different and non-zero, so a window of the padded image is found at one offset only). */
static tg_tensor *numbered_batch(int64_t n, int64_t c, int64_t h, int64_t w) {
    tg_tensor *t = tg_zeros(ctx, TG_SHAPE(n, c, h, w));
    cr_assert_not_null(t, "%s", tg_errmsg(ctx));
    int64_t image = c * h * w;
    for (int64_t b = 0; b < n; b++)
        for (int64_t i = 0; i < image; i++) t->data[b * image + i] = (float)(i + 1);
    return t;
}

static tg_augment *augment_new(int padding, bool flip, uint64_t seed) {
    tg_augment *aug = tg_augment_new(ctx, &(tg_augment_config){.crop_padding = padding,
                                                               .flip = flip}, seed);
    cr_assert_not_null(aug, "%s", tg_errmsg(ctx));
    return aug;
}

/* The pixel (c, y, x) of image src [c,h,w] as torchvision sees it after padding p on every side
 * and taking the window at row offset i, column offset j, mirrored if flipped. */
static float window_pixel(const float *src, int64_t h, int64_t w, int p, int i, int j,
                          bool flipped, int64_t c, int64_t y, int64_t x) {
    int64_t col = flipped ? w - 1 - x : x;           /* the flip reads the crop mirrored */
    int64_t sy = y + i - p, sx = col + j - p;      /* padded (y+i, col+j) in the image */
    return sy < 0 || sy >= h || sx < 0 || sx >= w ? 0.0f : src[(c * h + sy) * w + sx];
}

static bool is_window(const float *out, const float *src, int64_t channels, int64_t h,
                      int64_t w, int p, int i, int j, bool flipped) {
    for (int64_t c = 0; c < channels; c++)
        for (int64_t y = 0; y < h; y++)
            for (int64_t x = 0; x < w; x++)
                if (out[(c * h + y) * w + x] != window_pixel(src, h, w, p, i, j, flipped, c, y, x))
                    return false;
    return true;
}

Test(augment, flip_gives_the_mirrored_image) {
    tg_tensor *batch = numbered_batch(64, 2, 3, 4);
    float original[24];
    memcpy(original, batch->data, sizeof original);
    tg_augment *aug = augment_new(0, true, 5);
    cr_assert_eq(tg_augment_apply(aug, batch), TG_OK, "%s", tg_errmsg(ctx));
    int mirrored = 0, kept = 0;
    for (int b = 0; b < 64; b++) {
        const float *out = batch->data + b * 24;
        bool flipped = true, same = memcmp(out, original, sizeof original) == 0;
        for (int c = 0; c < 2; c++) /* mirrored row by row in each channel */
            for (int y = 0; y < 3; y++)
                for (int x = 0; x < 4; x++)
                    flipped &= out[(c * 3 + y) * 4 + x] == original[(c * 3 + y) * 4 + 3 - x];
        cr_expect(flipped != same, "image %d is neither the original nor its mirror", b);
        mirrored += flipped;
        kept += same;
    }
    cr_expect(mirrored > 0 && kept > 0, "%d mirrored, %d kept of 64", mirrored, kept);
    tg_augment_free(aug);
}

Test(augment, flip_comes_up_about_half_the_time) {
    /* 1000 images [1,1,2]: (1, 2) kept, (2, 1) flipped. Binomial(1000, 0.5) has sd 15.8: five sd
     * either side is [421, 579], missed by a fair coin with probability 6e-7. */
    tg_tensor *batch = numbered_batch(1000, 1, 1, 2);
    tg_augment *aug = augment_new(0, true, 11);
    cr_assert_eq(tg_augment_apply(aug, batch), TG_OK, "%s", tg_errmsg(ctx));
    int flipped = 0;
    for (int b = 0; b < 1000; b++) {
        const float *px = batch->data + 2 * b;
        cr_expect((px[0] == 1 && px[1] == 2) || (px[0] == 2 && px[1] == 1), "image %d", b);
        flipped += px[0] == 2;
    }
    cr_expect(flipped >= 421 && flipped <= 579, "%d of 1000 flipped", flipped);
    tg_augment_free(aug);
}

/* Runs n images [c,h,w] through crop padding p (and the flip if asked); every output must be
 * the window at one offset (and orientation), and the offsets seen must cover [0, 2p]^2. */
static void check_crops(int64_t n, int64_t c, int64_t h, int64_t w, int p, bool flip) {
    tg_tensor *batch = numbered_batch(n, c, h, w);
    int64_t image = c * h * w;
    float *src = malloc((size_t)image * sizeof(float));
    cr_assert_not_null(src);
    memcpy(src, batch->data, (size_t)image * sizeof(float));
    tg_augment *aug = augment_new(p, flip, 3);
    cr_assert_eq(tg_augment_apply(aug, batch), TG_OK, "%s", tg_errmsg(ctx));
    int seen[9][9][2] = {{{0}}}, span = 2 * p + 1;
    cr_assert_leq(span, 9);
    for (int64_t b = 0; b < n; b++) {
        int matches = 0;
        for (int i = 0; i < span; i++)
            for (int j = 0; j < span; j++)
                for (int f = 0; f <= (int)flip; f++)
                    if (is_window(batch->data + b * image, src, c, h, w, p, i, j, f)) {
                        seen[i][j][f]++;
                        matches++;
                    }
        cr_expect_eq(matches, 1, "image %lld is the window at %d offsets", (long long)b, matches);
    }
    for (int i = 0; i < span; i++)
        for (int j = 0; j < span; j++)
            for (int f = 0; f <= (int)flip; f++)
                cr_expect_gt(seen[i][j][f], 0, "offset (%d,%d)%s never drawn in %lld images", i, j,
                             f ? " flipped" : "", (long long)n);
    free(src);
    tg_augment_free(aug);
}

/* 25 offsets in 1000 draws: each missed with probability (24/25)^1000 ~ 2e-18. */
Test(augment, crop_is_a_window_of_the_padded_image) { check_crops(1000, 2, 5, 6, 2, false); }
/* 50 (offset, flip) cases in 2000 draws: each missed with probability (49/50)^2000 ~ 3e-18. */
Test(augment, crop_then_flip_as_torchvision) { check_crops(2000, 1, 6, 5, 2, true); }

/* Fashion-MNIST's recipe, padding 4 of 28x28: 81 offsets in 3000 draws, each missed with
 * probability (80/81)^3000 ~ 7e-17. */
Test(augment, crop_of_fashion_mnist_size) {
    check_crops(3000, 1, 28, 28, 4, false);
}

Test(augment, normalisation_is_torchvisions_arithmetic) {
    float mean[3] = {0.4914f, 0.4822f, 0.4465f}, std[3] = {0.2470f, 0.2435f, 0.2616f};
    tg_tensor *batch = tg_zeros(ctx, TG_SHAPE(2, 3, 4, 5));
    cr_assert_not_null(batch);
    tg_fill_uniform(batch, -1.0f, 2.0f, 9);
    float *raw = malloc((size_t)batch->size * sizeof(float));
    cr_assert_not_null(raw);
    memcpy(raw, batch->data, (size_t)batch->size * sizeof(float));
    tg_augment *aug = tg_augment_new(ctx, &(tg_augment_config){.channels = 3, .mean = mean,
                                                               .std = std}, 1);
    cr_assert_not_null(aug, "%s", tg_errmsg(ctx));
    mean[0] = std[0] = 99.0f; /* copied at creation */
    cr_assert_eq(tg_augment_apply(aug, batch), TG_OK, "%s", tg_errmsg(ctx));
    const float m[3] = {0.4914f, 0.4822f, 0.4465f}, s[3] = {0.2470f, 0.2435f, 0.2616f};
    for (int64_t k = 0; k < batch->size; k++) {
        int64_t c = (k / 20) % 3;
        volatile float want = (raw[k] - m[c]) / s[c]; /* torch: x.sub_(mean).div_(std) */
        if (batch->data[k] != want) {
            cr_expect_fail("element %lld (channel %lld): %.9g, expected %.9g", (long long)k,
                           (long long)c, (double)batch->data[k], (double)want);
            break;
        }
    }
    free(raw);
    tg_augment_free(aug);
}

/* Eval data: tg_augment_normalize normalises, moves no pixel and draws nothing, so the training
 * stream is the same whether or not an eval batch went in between. */
Test(augment, normalize_only_for_evaluation) {
    const float mean[1] = {1.0f}, std[1] = {2.0f};
    tg_augment_config cfg = {.crop_padding = 1, .flip = true, .channels = 1, .mean = mean,
                             .std = std};
    tg_augment *a = tg_augment_new(ctx, &cfg, 4), *b = tg_augment_new(ctx, &cfg, 4);
    cr_assert(a && b, "%s", tg_errmsg(ctx));
    tg_tensor *eval = numbered_batch(3, 1, 4, 4);
    cr_assert_eq(tg_augment_normalize(a, eval), TG_OK, "%s", tg_errmsg(ctx));
    for (int64_t k = 0; k < eval->size; k++)
        cr_expect_eq(eval->data[k], ((float)(k % 16 + 1) - 1.0f) / 2.0f, "element %lld", (long long)k);
    tg_tensor *x = numbered_batch(32, 1, 4, 4), *y = numbered_batch(32, 1, 4, 4);
    cr_assert_eq(tg_augment_apply(a, x), TG_OK);
    cr_assert_eq(tg_augment_apply(b, y), TG_OK);
    cr_expect_arr_eq(x->data, y->data, (size_t)x->size * sizeof(float));
    tg_augment_free(a);
    tg_augment_free(b);
}

Test(augment, same_seed_same_batches) {
    tg_tensor *x[3];
    for (int k = 0; k < 3; k++) x[k] = numbered_batch(16, 1, 8, 8);
    tg_augment *a = augment_new(2, true, 42), *b = augment_new(2, true, 42),
               *c = augment_new(2, true, 43);
    for (int step = 0; step < 3; step++) { /* the stream goes on across batches */
        for (int k = 0; k < 3; k++) {
            tg_augment *aug = k == 0 ? a : k == 1 ? b : c;
            float *d = x[k]->data;
            for (int64_t i = 0; i < x[k]->size; i++) d[i] = (float)(i % 64 + 1);
            cr_assert_eq(tg_augment_apply(aug, x[k]), TG_OK, "%s", tg_errmsg(ctx));
        }
        cr_expect_arr_eq(x[0]->data, x[1]->data, (size_t)x[0]->size * sizeof(float),
                         "batch %d differs between two augmenters of seed 42", step);
        cr_expect(memcmp(x[0]->data, x[2]->data, (size_t)x[0]->size * sizeof(float)) != 0,
                  "seeds 42 and 43 gave the same batch %d", step);
    }
    tg_augment_free(a);
    tg_augment_free(b);
    tg_augment_free(c);
}

/* The digits as 1x8x8 images through the batcher: after the first batch, neither a batch of
 * the same images nor one of smaller images allocates; larger images grow the scratch once. */
Test(augment, no_allocation_after_the_first_batch) {
    tally count = {.fail_at = -1};
    tg_ctx *c = tg_ctx_new_with_allocator(tally_alloc, &count);
    cr_assert_not_null(c);
    tg_dataset *ds = tg_dataset_digits(c);
    cr_assert_not_null(ds, "%s", tg_errmsg(c));
    cr_assert_eq(tg_dataset_reshape(ds, 3, (int64_t[]){1, 8, 8}), TG_OK);
    float mean, std;
    cr_assert_eq(tg_dataset_channel_stats(ds, &mean, &std, 1), TG_OK, "%s", tg_errmsg(c));
    tg_augment *aug = tg_augment_new(c, &(tg_augment_config){.crop_padding = 2, .flip = true,
                                                             .channels = 1, .mean = &mean,
                                                             .std = &std}, 1);
    tg_batcher *b = tg_batcher_new(ds, 32, true, true, 1);
    tg_tape *t = tg_tape_new(c);
    cr_assert(aug && b && t, "%s", tg_errmsg(c));
    tg_tensor *x, *y;
    for (int step = 0; step < 2; step++) { /* the tape's arena grows in the first step */
        tg_tape_reset(t);
        cr_assert(tg_batcher_next(b, t, &x, &y), "%s", tg_errmsg(c));
        cr_assert_eq(tg_augment_apply(aug, x), TG_OK, "%s", tg_errmsg(c));
    }
    long before = count.allocations;
    for (int step = 0; step < 50; step++) {
        tg_tape_reset(t);
        if (!tg_batcher_next(b, t, &x, &y)) cr_assert(tg_batcher_next(b, t, &x, &y));
        cr_assert_eq(tg_augment_apply(aug, x), TG_OK, "%s", tg_errmsg(c));
        cr_assert_eq(tg_augment_normalize(aug, x), TG_OK);
    }
    tg_tensor *small = tg_tape_zeros(t, TG_SHAPE(4, 1, 4, 4));
    cr_assert_not_null(small);
    cr_expect_eq(tg_augment_apply(aug, small), TG_OK, "%s", tg_errmsg(c));
    cr_expect_eq(count.allocations, before, "%ld allocations in 50 steps and a smaller batch",
                 count.allocations - before);
    tg_tensor *large = tg_zeros(c, TG_SHAPE(2, 1, 9, 9));
    cr_assert_not_null(large);
    long grown = count.allocations;
    cr_expect_eq(tg_augment_apply(aug, large), TG_OK, "%s", tg_errmsg(c));
    cr_expect_eq(count.allocations, grown + 1, "larger images: the scratch grows once");
    tg_augment_free(aug);
    tg_batcher_free(b);
    tg_dataset_free(ds);
    tg_tape_free(t);
    tg_ctx_free(c);
    cr_expect_eq(count.live_bytes, 0, "%ld bytes not freed", count.live_bytes);
}

static void expect_new_refused(const tg_augment_config *cfg, const char *fragment) {
    tg_clear_error(ctx);
    cr_expect_null(tg_augment_new(ctx, cfg, 1));
    cr_expect_eq(tg_errcode(ctx), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "augment_new", fragment);
}

Test(augment, bad_configs_are_refused) {
    const float one = 1.0f, zero = 0.0f, nan = NAN;
    expect_new_refused(NULL, "config");
    expect_new_refused(&(tg_augment_config){.crop_padding = -1}, "crop_padding -1");
    expect_new_refused(&(tg_augment_config){.crop_padding = 5000}, "crop_padding 5000");
    expect_new_refused(&(tg_augment_config){.channels = 2}, "channels 2 with mean NULL");
    expect_new_refused(&(tg_augment_config){.mean = &one, .std = &one}, "channels 0");
    expect_new_refused(&(tg_augment_config){.channels = 1, .mean = &one, .std = &zero}, "std 0");
    expect_new_refused(&(tg_augment_config){.channels = 1, .mean = &nan, .std = &one}, "mean nan");
    cr_expect_null(tg_augment_new(NULL, &(tg_augment_config){0}, 1));
}

/* The batch is refused, named by shape, and left as it was. */
static void expect_apply_refused(tg_augment *aug, tg_tensor *batch, tg_status code,
                                 const char *shape, const char *fragment) {
    float first = batch->data[0];
    tg_clear_error(ctx);
    cr_expect_eq(tg_augment_apply(aug, batch), code, "%s", tg_errmsg(ctx));
    expect_errmsg_has(ctx, "augment_apply", shape, fragment);
    cr_expect_eq(batch->data[0], first);
}

Test(augment, bad_batches_are_refused_naming_shapes) {
    const float mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
    tg_augment *aug = tg_augment_new(ctx, &(tg_augment_config){.crop_padding = 3, .channels = 3,
                                                               .mean = mean, .std = std}, 1);
    cr_assert_not_null(aug, "%s", tg_errmsg(ctx));
    tg_tensor *flat = tg_set_label(numbered_batch(1, 4, 28, 28), "images");
    tg_tensor *three = tg_ones(ctx, TG_SHAPE(4, 28, 28));
    cr_assert(flat && three);
    expect_apply_refused(aug, three, TG_ERR_SHAPE, "[4,28,28]", "[B,C,H,W]");
    expect_apply_refused(aug, flat, TG_ERR_SHAPE, "[1,4,28,28]", "4 channels, the mean and std 3");
    expect_apply_refused(aug, numbered_batch(2, 3, 3, 8), TG_ERR_INVALID, "[2,3,3,8]",
                         "crop_padding 3 for images 3x8");
    tg_clear_error(ctx);
    cr_expect_eq(tg_augment_apply(aug, NULL), TG_ERR_INVALID);
    cr_expect_eq(tg_augment_normalize(aug, three), TG_ERR_SHAPE);
    cr_expect_eq(tg_augment_normalize(aug, numbered_batch(2, 3, 3, 8)), TG_OK,
                 "normalising only, the padding does not matter: %s", tg_errmsg(ctx));
    tg_tensor *kept = tg_tape_zeros(tape, TG_SHAPE(1, 3, 8, 8));
    cr_assert_not_null(kept);
    tg_tape_reset(tape);
    tg_clear_error(ctx);
    cr_expect_eq(tg_augment_apply(aug, kept), TG_ERR_STATE);
    expect_errmsg_has(ctx, "earlier step");
    tg_augment_free(aug);
}

/* A direct computation in float over a 3-channel set in [C,H,W] order, and the digits. */
Test(augment, channel_stats_against_a_direct_computation) {
    enum { N = 50, C = 3, H = 4, W = 5, PLANE = H * W };
    tg_dataset *ds = tg_dataset_parity(ctx, N, C * PLANE, 1); /* x: 0/1 bits, N x 60 */
    cr_assert_not_null(ds, "%s", tg_errmsg(ctx));
    for (int64_t k = 0; k < N * C * PLANE; k++) /* channel c around c + 1, scaled by c + 1 */
        ds->x[k] = (float)((k / PLANE) % C + 1) * (1.0f + 0.5f * ds->x[k]) + (float)(k % 7) * 0.01f;
    cr_assert_eq(tg_dataset_reshape(ds, 3, (int64_t[]){C, H, W}), TG_OK);
    float mean[C], std[C];
    cr_assert_eq(tg_dataset_channel_stats(ds, mean, std, C), TG_OK, "%s", tg_errmsg(ctx));
    for (int c = 0; c < C; c++) {
        double sum = 0, sum2 = 0;
        for (int i = 0; i < N; i++)
            for (int k = 0; k < PLANE; k++) sum += ds->x[(i * C + c) * PLANE + k];
        double m = sum / (N * PLANE);
        for (int i = 0; i < N; i++)
            for (int k = 0; k < PLANE; k++) {
                double d = ds->x[(i * C + c) * PLANE + k] - m;
                sum2 += d * d;
            }
        cr_expect_float_eq(mean[c], (float)m, 1e-6f * fabsf((float)m), "mean[%d]", c);
        cr_expect_float_eq(std[c], (float)sqrt(sum2 / (N * PLANE)), 1e-5f, "std[%d]", c);
        cr_expect_gt(std[c], 0.1f * (float)(c + 1), "std[%d] = %g", c, (double)std[c]);
    }
    /* normalised by its own statistics the whole set has mean 0 and std 1 per channel */
    tg_augment *aug = tg_augment_new(ctx, &(tg_augment_config){.channels = C, .mean = mean,
                                                               .std = std}, 1);
    tg_tensor *all = tg_from_data(ctx, TG_SHAPE(N, C, H, W), ds->x);
    cr_assert(aug && all, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_augment_normalize(aug, all), TG_OK);
    memcpy(ds->x, all->data, sizeof(float) * N * C * PLANE);
    float m2[C], s2[C];
    cr_assert_eq(tg_dataset_channel_stats(ds, m2, s2, C), TG_OK);
    for (int c = 0; c < C; c++) {
        cr_expect_float_eq(m2[c], 0.0f, 1e-6f, "normalised mean[%d] = %g", c, (double)m2[c]);
        cr_expect_float_eq(s2[c], 1.0f, 1e-5f, "normalised std[%d] = %g", c, (double)s2[c]);
    }
    /* refused: samples that are not images, arrays of another size */
    tg_clear_error(ctx);
    cr_expect_eq(tg_dataset_channel_stats(ds, mean, std, 2), TG_ERR_SHAPE);
    expect_errmsg_has(ctx, "dataset_channel_stats", "[3,4,5]", "3 channels, the arrays hold 2");
    cr_assert_eq(tg_dataset_reshape(ds, 1, (int64_t[]){C * PLANE}), TG_OK);
    tg_clear_error(ctx);
    cr_expect_eq(tg_dataset_channel_stats(ds, mean, std, C), TG_ERR_SHAPE);
    expect_errmsg_has(ctx, "samples of 1 dims");
    cr_expect_eq(tg_dataset_channel_stats(ds, NULL, std, C), TG_ERR_INVALID);
    tg_augment_free(aug);
    tg_dataset_free(ds);
}
