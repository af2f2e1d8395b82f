/* tests/test_data.c — data sets: the bundled digits, splits, synthetic tasks, the batcher and
 * the CSV and IDX readers (on small files written to a temporary directory). */
#include "fixture.h"

#include <unistd.h>

#define PI 3.14159265358979323846

static char tmp_dir[64];

static void data_setup(void) {
    fixture_setup();
    strcpy(tmp_dir, "/tmp/tapegrad-data-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp_dir));
}

/* The tests write only flat files into tmp_dir: remove those and the directory. */
static void data_teardown(void) {
    static const char *const names[] = {"a.csv", "images.idx", "labels.idx", "short.idx"};
    char path[128];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp_dir, names[i]);
        unlink(path);
    }
    rmdir(tmp_dir);
    fixture_teardown();
}

TestSuite(data, .init = data_setup, .fini = data_teardown);

static const char *write_file(const char *name, const void *bytes, size_t n) {
    return write_in_dir(tmp_dir, name, bytes, n);
}

static const char *write_csv(const char *text) {
    return write_file("a.csv", text, strlen(text));
}

/* A data set made by hand over caller arrays: sample i has x = (i, -i) and y = i, so every
 * sample can be told from every other after a shuffle. */
typedef struct numbered {
    tg_dataset ds;
    float x[2 * 100];
    float y[100];
} numbered;

static void numbered_init(numbered *n, int64_t count) {
    cr_assert_leq(count, 100);
    n->ds = (tg_dataset){.count = count, .x_ndim = 1, .x_shape = {2, 1, 1}, .y_ndim = 0,
                         .y_shape = {1, 1, 1}, .classes = 0, .x = n->x, .y = n->y, .ctx = ctx};
    for (int64_t i = 0; i < count; i++) {
        n->x[2 * i] = (float)i;
        n->x[2 * i + 1] = (float)-i;
        n->y[i] = (float)i;
    }
}

/* Every sample index 0..count-1 appears exactly once in ys (the y values of numbered samples). */
static void expect_each_once(const float *ys, int64_t n, int64_t count, const char *what) {
    int seen[100] = {0};
    cr_assert_eq(n, count, "%s: %lld samples, expected %lld", what, (long long)n,
                 (long long)count);
    for (int64_t i = 0; i < n; i++) {
        int64_t index = (int64_t)ys[i];
        cr_assert(index >= 0 && index < count && ys[i] == (float)index, "%s: y %g", what,
                  (double)ys[i]);
        seen[index]++;
    }
    for (int64_t i = 0; i < count; i++)
        cr_expect_eq(seen[i], 1, "%s: sample %lld seen %d times", what, (long long)i, seen[i]);
}

/* ---- digits -------------------------------------------------------------------------------- */

Test(data, digits_has_1797_images_of_64_pixels_in_10_classes) {
    tg_dataset *ds = tg_dataset_digits(ctx);
    cr_assert_not_null(ds, "%s", tg_errmsg(ctx));
    cr_expect_eq(ds->count, 1797);
    cr_expect_eq(ds->classes, 10);
    cr_expect_eq(ds->x_ndim, 1);
    cr_expect_eq(ds->x_shape[0], 64);
    cr_expect_eq(ds->y_ndim, 0);
    cr_expect_eq(tg_dataset_x_size(ds), 64);
    cr_expect_eq(tg_dataset_y_size(ds), 1);
    float low = 1, high = 0;
    for (int64_t i = 0; i < ds->count * 64; i++) {
        float v = ds->x[i];
        if (v < low) low = v;
        if (v > high) high = v;
        cr_assert_eq(v * 16.0f, floorf(v * 16.0f), "pixel %lld = %g is not k/16", (long long)i,
                     (double)v);
    }
    cr_expect_eq(low, 0.0f);
    cr_expect_eq(high, 1.0f);
    tg_dataset_free(ds);
}

Test(data, digits_first_and_last_images_match_the_csv) {
    /* rows 0 and 1796 of data/digits.csv.gz */
    static const float first[64] = {
        0, 0, 5,  13, 9,  1,  0, 0, 0, 0, 13, 15, 10, 15, 5,  0, 0, 3, 15, 2,  0,  11,
        8, 0, 0,  4,  12, 0,  0, 8, 8, 0, 0,  5,  8,  0,  0,  9, 8, 0, 0,  4,  11, 0,
        1, 12, 7, 0,  0,  2,  14, 5, 10, 12, 0, 0,  0,  0,  6,  13, 10, 0, 0,  0};
    static const float last[8] = {0, 0, 10, 14, 8, 1, 0, 0};
    tg_dataset *ds = tg_dataset_digits(ctx);
    cr_assert_not_null(ds);
    float want[64];
    for (int i = 0; i < 64; i++) want[i] = first[i] / 16.0f;
    expect_close(ds->x, want, 64, 0, "image 0");
    cr_expect_eq(ds->y[0], 0.0f);
    for (int i = 0; i < 8; i++) want[i] = last[i] / 16.0f;
    expect_close(ds->x + 1796 * 64, want, 8, 0, "image 1796, first row");
    cr_expect_eq(ds->y[1796], 8.0f);
    tg_dataset_free(ds);
}

Test(data, digits_label_counts) {
    static const int want[10] = {178, 182, 177, 183, 181, 182, 181, 179, 174, 180};
    tg_dataset *ds = tg_dataset_digits(ctx);
    cr_assert_not_null(ds);
    int counts[10] = {0}, total = 0;
    for (int64_t i = 0; i < ds->count; i++) {
        float label = ds->y[i];
        cr_assert(label >= 0 && label <= 9 && label == floorf(label), "label %g", (double)label);
        counts[(int)label]++;
    }
    for (int c = 0; c < 10; c++) {
        cr_expect_eq(counts[c], want[c], "class %d: %d samples, expected %d", c, counts[c],
                     want[c]);
        total += counts[c];
    }
    cr_expect_eq(total, 1797);
    tg_dataset_free(ds);
}

/* ---- split --------------------------------------------------------------------------------- */

Test(data, split_sizes_and_every_sample_once) {
    numbered n;
    numbered_init(&n, 100);
    tg_dataset *train, *test;
    cr_assert_eq(tg_dataset_split(&n.ds, 0.25, 7, &train, &test), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(test->count, 25);
    cr_expect_eq(train->count, 75);
    float ys[100];
    memcpy(ys, test->y, 25 * sizeof(float));
    memcpy(ys + 25, train->y, 75 * sizeof(float));
    expect_each_once(ys, 100, 100, "test + train");
    /* the inputs travel with their targets */
    for (int64_t i = 0; i < train->count; i++) {
        cr_expect_eq(train->x[2 * i], train->y[i]);
        cr_expect_eq(train->x[2 * i + 1], -train->y[i]);
    }
    /* shuffled, not the first 25 */
    int in_order = 0;
    for (int i = 0; i < 25; i++) in_order += test->y[i] == (float)i;
    cr_expect_lt(in_order, 25);
    cr_expect_eq(train->x_shape[0], 2);
    tg_dataset_free(train);
    tg_dataset_free(test);
}

Test(data, split_is_determined_by_the_seed) {
    numbered n;
    numbered_init(&n, 100);
    tg_dataset *parts[3][2];
    const uint64_t seeds[3] = {11, 11, 12};
    for (int k = 0; k < 3; k++)
        cr_assert_eq(tg_dataset_split(&n.ds, 0.3, seeds[k], &parts[k][0], &parts[k][1]), TG_OK);
    cr_expect_eq(parts[0][1]->count, 30, "0.3 of 100 is 30, not 31");
    cr_expect_arr_eq(parts[0][1]->y, parts[1][1]->y, 30 * sizeof(float), "same seed, same split");
    cr_expect(memcmp(parts[0][1]->y, parts[2][1]->y, 30 * sizeof(float)) != 0,
              "another seed, another split");
    for (int k = 0; k < 3; k++) {
        tg_dataset_free(parts[k][0]);
        tg_dataset_free(parts[k][1]);
    }
}

Test(data, split_of_digits_keeps_classes_and_shape) {
    tg_dataset *ds = tg_dataset_digits(ctx), *train, *test;
    cr_assert_eq(tg_dataset_split(ds, 0.2, 1, &train, &test), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(test->count, 359); /* round(0.2 * 1797) */
    cr_expect_eq(train->count, 1797 - 359);
    cr_expect_eq(train->classes, 10);
    cr_expect_eq(test->x_shape[0], 64);
    tg_dataset_free(train);
    tg_dataset_free(test);
    tg_dataset_free(ds);
}

Test(data, split_refuses_an_empty_part) {
    numbered n;
    numbered_init(&n, 10);
    const double fractions[] = {0.0, 1.0, 0.01, 0.99, -0.5, NAN};
    for (size_t i = 0; i < sizeof fractions / sizeof fractions[0]; i++) {
        tg_dataset *train = &n.ds, *test = &n.ds;
        tg_clear_error(ctx);
        cr_expect_eq(tg_dataset_split(&n.ds, fractions[i], 1, &train, &test), TG_ERR_INVALID);
        cr_expect(train == NULL && test == NULL);
        expect_errmsg_has(ctx, "dataset_split", "empty part");
    }
}

/* ---- synthetic ----------------------------------------------------------------------------- */

/* Checks the adding problem's invariants for one sample of length T. */
static void expect_adding_sample(const float *steps, float y, int64_t length) {
    int64_t half = length / 2, first = 0, second = 0;
    float sum = 0;
    for (int64_t t = 0; t < length; t++) {
        float value = steps[2 * t], marker = steps[2 * t + 1];
        cr_assert(value >= 0 && value < 1, "value %g", (double)value);
        cr_assert(marker == 0 || marker == 1, "marker %g", (double)marker);
        if (marker == 1) {
            sum += value;
            if (t < half) first++;
            else second++;
        }
    }
    cr_assert_eq(first, 1, "markers in the first half: %lld", (long long)first);
    cr_assert_eq(second, 1, "markers in the second half: %lld", (long long)second);
    cr_assert_float_eq(y, sum, 1e-6, "y %g, marked sum %g", (double)y, (double)sum);
}

Test(data, adding_problem_has_two_markers_and_their_sum) {
    const int64_t lengths[] = {2, 7, 50};
    for (int k = 0; k < 3; k++) {
        tg_dataset *ds = tg_dataset_adding(ctx, 200, lengths[k], 3);
        cr_assert_not_null(ds, "%s", tg_errmsg(ctx));
        cr_expect_eq(ds->x_ndim, 2);
        cr_expect_eq(ds->x_shape[0], lengths[k]);
        cr_expect_eq(ds->x_shape[1], 2);
        cr_expect_eq(ds->y_ndim, 0);
        cr_expect_eq(ds->classes, 0);
        for (int64_t i = 0; i < ds->count; i++)
            expect_adding_sample(ds->x + i * lengths[k] * 2, ds->y[i], lengths[k]);
        tg_dataset_free(ds);
    }
}

Test(data, adding_problem_constant_one_has_mse_one_sixth) {
    tg_dataset *ds = tg_dataset_adding(ctx, 10000, 20, 42);
    cr_assert_not_null(ds);
    double sq = 0;
    for (int64_t i = 0; i < ds->count; i++) sq += (ds->y[i] - 1.0) * (ds->y[i] - 1.0);
    double mse = sq / (double)ds->count;
    cr_expect(fabs(mse - 1.0 / 6.0) < 0.01, "MSE of predicting 1: %g", mse);
    tg_dataset *again = tg_dataset_adding(ctx, 10000, 20, 42);
    cr_expect_arr_eq(again->x, ds->x, 10000 * 40 * sizeof(float), "same seed, same data");
    tg_dataset_free(again);
    tg_dataset_free(ds);
}

Test(data, copy_task_layout) {
    const int64_t symbols = 5, delay = 10, vocab = 8, steps = 20, channels = 9;
    tg_dataset *ds = tg_dataset_copy_task(ctx, 30, symbols, delay, vocab, 9);
    cr_assert_not_null(ds, "%s", tg_errmsg(ctx));
    cr_expect(ds->x_ndim == 2 && ds->x_shape[0] == steps && ds->x_shape[1] == channels);
    cr_expect(ds->y_ndim == 1 && ds->y_shape[0] == symbols);
    cr_expect_eq(ds->classes, vocab);
    int used[8] = {0};
    for (int64_t i = 0; i < ds->count; i++) {
        const float *x = ds->x + i * steps * channels, *y = ds->y + i * symbols;
        for (int64_t t = 0; t < steps; t++) {
            bool presenting = t < symbols, recalling = t >= symbols + delay;
            for (int64_t c = 0; c < channels; c++) {
                float want = 0;
                if (presenting && c == (int64_t)y[t]) want = 1;
                if (recalling && c == vocab) want = 1;
                cr_assert_eq(x[t * channels + c], want, "sample %lld step %lld channel %lld",
                             (long long)i, (long long)t, (long long)c);
            }
            if (presenting) used[(int)y[t]]++;
        }
    }
    for (int v = 0; v < 8; v++) cr_expect_gt(used[v], 0, "symbol %d never drawn", v);
    tg_dataset_free(ds);
}

Test(data, spirals_lie_on_two_opposite_spirals) {
    tg_dataset *clean = tg_dataset_spirals(ctx, 400, 0.0f, 5);
    tg_dataset *noisy = tg_dataset_spirals(ctx, 400, 0.1f, 5);
    cr_assert(clean && noisy, "%s", tg_errmsg(ctx));
    cr_expect(clean->x_ndim == 1 && clean->x_shape[0] == 2 && clean->classes == 2);
    double sq = 0, r2 = 0;
    for (int64_t i = 0; i < 400; i++) {
        cr_assert_eq(clean->y[i], (float)(i % 2), "balanced, alternating classes");
        double px = clean->x[2 * i], py = clean->x[2 * i + 1], r = hypot(px, py);
        r2 += r * r / 400;
        double angle = 4.0 * PI * r + PI * clean->y[i];
        cr_assert(r <= 1.0 && fabs(px - r * cos(angle)) < 1e-4 && fabs(py - r * sin(angle)) < 1e-4,
                  "sample %lld (%g, %g) is off its spiral", (long long)i, px, py);
        for (int d = 0; d < 2; d++) {
            double jitter = noisy->x[2 * i + d] - clean->x[2 * i + d];
            sq += jitter * jitter;
        }
    }
    /* points spread evenly along the arms: r^2 is uniform on [0,1) */
    cr_expect(r2 > 0.45 && r2 < 0.55, "mean r^2 %g, expected 0.5", r2);
    double std = sqrt(sq / 800);
    cr_expect(std > 0.09 && std < 0.11, "jitter std %g, expected 0.1", std);
    tg_dataset_free(clean);
    tg_dataset_free(noisy);
}

Test(data, parity_labels) {
    tg_dataset *ds = tg_dataset_parity(ctx, 1000, 6, 8);
    cr_assert_not_null(ds, "%s", tg_errmsg(ctx));
    cr_expect(ds->x_ndim == 1 && ds->x_shape[0] == 6 && ds->classes == 2);
    int ones = 0;
    for (int64_t i = 0; i < ds->count; i++) {
        int sum = 0;
        for (int b = 0; b < 6; b++) {
            float bit = ds->x[i * 6 + b];
            cr_assert(bit == 0 || bit == 1, "bit %g", (double)bit);
            sum += (int)bit;
        }
        cr_assert_eq(ds->y[i], (float)(sum % 2), "sample %lld", (long long)i);
        ones += sum % 2;
    }
    cr_expect(ones > 400 && ones < 600, "%d odd samples of 1000", ones);
    tg_dataset_free(ds);
}

Test(data, generators_refuse_bad_sizes) {
    cr_expect_null(tg_dataset_adding(ctx, 10, 1, 1));
    expect_errmsg_has(ctx, "dataset_adding", "length 1");
    tg_clear_error(ctx);
    cr_expect_null(tg_dataset_copy_task(ctx, 10, 0, 3, 4, 1));
    expect_errmsg_has(ctx, "dataset_copy_task", "symbols 0");
    tg_clear_error(ctx);
    cr_expect_null(tg_dataset_spirals(ctx, 10, -1.0f, 1));
    expect_errmsg_has(ctx, "dataset_spirals", "noise");
    tg_clear_error(ctx);
    cr_expect_null(tg_dataset_parity(ctx, 0, 4, 1));
    expect_errmsg_has(ctx, "dataset_parity", "0 samples");
}

/* ---- batcher ------------------------------------------------------------------------------- */

/* What one epoch of a batcher over a numbered data set gave. */
typedef struct epoch_run {
    float ys[100];           /* the targets in the order seen */
    int64_t seen;
    int64_t sizes[100];      /* of the batches */
    int batches;
} epoch_run;

/* Runs one epoch of b (over a numbered data set), checking every batch's shapes. */
static epoch_run run_epoch(tg_batcher *b) {
    epoch_run run = {.seen = 0};
    tg_tensor *x, *y;
    while (tg_batcher_next(b, tape, &x, &y)) {
        cr_assert(x->ndim == 2 && x->shape[1] == 2 && y->ndim == 1);
        cr_assert_eq(y->shape[0], x->shape[0]);
        for (int64_t i = 0; i < y->size; i++) {
            cr_assert_eq(x->data[2 * i], y->data[i], "input and target from one sample");
            run.ys[run.seen++] = y->data[i];
        }
        run.sizes[run.batches++] = y->size;
    }
    tg_tape_reset(tape);
    return run;
}

/* A batcher over a numbered data set of count samples. */
static tg_batcher *numbered_batcher(numbered *n, int64_t count, int64_t batch_size,
                                    bool shuffle, bool drop_last, uint64_t seed) {
    numbered_init(n, count);
    tg_batcher *b = tg_batcher_new(&n->ds, batch_size, shuffle, drop_last, seed);
    cr_assert_not_null(b, "%s", tg_errmsg(ctx));
    return b;
}

Test(data, batcher_covers_every_sample_once_per_epoch) {
    numbered n;
    tg_batcher *b = numbered_batcher(&n, 10, 3, true, false, 4);
    cr_expect_eq(tg_batcher_epoch(b), 0);
    epoch_run run = run_epoch(b);
    cr_assert_eq(run.batches, 4);
    cr_expect(run.sizes[0] == 3 && run.sizes[1] == 3 && run.sizes[2] == 3 && run.sizes[3] == 1);
    expect_each_once(run.ys, run.seen, 10, "epoch 0");
    cr_expect_eq(tg_batcher_epoch(b), 1);
    tg_batcher_free(b);
}

Test(data, batcher_reshuffles_each_epoch_and_follows_the_seed) {
    numbered n[3];
    const uint64_t seeds[3] = {21, 21, 22};
    epoch_run runs[3][2];
    for (int k = 0; k < 3; k++) {
        tg_batcher *b = numbered_batcher(&n[k], 50, 8, true, false, seeds[k]);
        for (int epoch = 0; epoch < 2; epoch++) {
            runs[k][epoch] = run_epoch(b);
            expect_each_once(runs[k][epoch].ys, runs[k][epoch].seen, 50, "an epoch");
        }
        cr_expect_eq(tg_batcher_epoch(b), 2);
        tg_batcher_free(b);
    }
    size_t bytes = 50 * sizeof(float);
    cr_expect(memcmp(runs[0][0].ys, runs[0][1].ys, bytes) != 0,
              "the second epoch has another order");
    for (int epoch = 0; epoch < 2; epoch++)
        cr_expect_arr_eq(runs[0][epoch].ys, runs[1][epoch].ys, bytes, "same seed, same order");
    cr_expect(memcmp(runs[0][0].ys, runs[2][0].ys, bytes) != 0, "another seed, another order");
}

Test(data, batcher_without_shuffle_keeps_the_order) {
    numbered n;
    tg_batcher *b = numbered_batcher(&n, 7, 7, false, false, 0);
    epoch_run run = run_epoch(b);
    cr_assert_eq(run.batches, 1);
    for (int i = 0; i < 7; i++) cr_expect_eq(run.ys[i], (float)i);
    tg_batcher_free(b);
}

Test(data, batcher_drop_last_skips_the_short_batch) {
    numbered n;
    tg_batcher *b = numbered_batcher(&n, 10, 3, true, true, 4);
    epoch_run run = run_epoch(b);
    cr_assert_eq(run.batches, 3);
    cr_expect(run.seen == 9 && run.sizes[2] == 3);
    cr_expect_eq(run_epoch(b).batches, 3, "the next epoch starts over");
    tg_batcher_free(b);
    cr_expect_null(tg_batcher_new(&n.ds, 11, true, true, 4));
    expect_errmsg_has(ctx, "batcher", "batch size 11", "drop_last");
    tg_clear_error(ctx);
    cr_expect_null(tg_batcher_new(&n.ds, 0, true, false, 4));
    expect_errmsg_has(ctx, "batcher", "batch size 0");
}

Test(data, batcher_shapes_follow_the_data_set) {
    tg_dataset *copy = tg_dataset_copy_task(ctx, 10, 3, 2, 4, 1);
    tg_batcher *b = tg_batcher_new(copy, 4, true, false, 1);
    tg_tensor *x, *y;
    cr_assert(tg_batcher_next(b, tape, &x, &y));
    cr_expect(x->ndim == 3 && x->shape[0] == 4 && x->shape[1] == 8 && x->shape[2] == 5);
    cr_expect(y->ndim == 2 && y->shape[0] == 4 && y->shape[1] == 3);
    cr_expect(!x->persistent && x->tape == tape, "batches live on the tape");
    cr_expect_str_eq(x->label, "batch.x");
    tg_batcher_free(b);
    tg_dataset_free(copy);
}

Test(data, batcher_allocates_nothing_after_creation) {
    tally count = {.fail_at = -1};
    tg_ctx *c = tg_ctx_new_with_allocator(tally_alloc, &count);
    tg_tape *t = tg_tape_new(c);
    cr_assert_not_null(tg_tape_zeros(t, TG_SHAPE(16)), "a first arena chunk");
    tg_tape_reset(t);
    tg_dataset *ds = tg_dataset_adding(c, 100, 12, 1);
    tg_batcher *b = tg_batcher_new(ds, 16, true, false, 2);
    cr_assert(ds && b, "%s", tg_errmsg(c));
    long before = count.allocations;
    tg_tensor *x, *y;
    int batches = 0;
    for (int epoch = 0; epoch < 3; epoch++)
        while (tg_batcher_next(b, t, &x, &y)) {
            tg_tape_reset(t);
            batches++;
        }
    cr_expect_eq(batches, 3 * 7);
    cr_expect_eq(count.allocations, before, "%ld allocations in 3 epochs",
                 count.allocations - before);
    tg_batcher_free(b);
    tg_dataset_free(ds);
    tg_tape_free(t);
    tg_ctx_free(c);
    cr_expect_eq(count.live_bytes, 0, "%ld bytes not freed", count.live_bytes);
}

/* ---- CSV ----------------------------------------------------------------------------------- */

Test(data, csv_with_header_blank_lines_and_crlf) {
    const char *path = write_csv("width,height,label\r\n1,2,0\r\n3.5, -4 ,2\r\n\r\n5,6e-1,1\r\n");
    tg_dataset *ds = tg_dataset_read_csv(ctx, path, 2);
    cr_assert_not_null(ds, "%s", tg_errmsg(ctx));
    cr_expect_eq(ds->count, 3);
    cr_expect(ds->x_ndim == 1 && ds->x_shape[0] == 2 && ds->y_ndim == 0);
    cr_expect_eq(ds->classes, 3);
    expect_close(ds->x, (const float[]){1, 2, 3.5f, -4, 5, 0.6f}, 6, 0, "x");
    expect_close(ds->y, (const float[]){0, 2, 1}, 3, 0, "y");
    tg_dataset_free(ds);
}

Test(data, csv_regression_targets_are_any_finite_number) {
    const char *path = write_csv("x1,x2,y\n1,2,-0.2497\n3,4,12.5\n");
    tg_dataset *ds = tg_dataset_read_csv_regression(ctx, path, -1);
    cr_assert_not_null(ds, "%s", tg_errmsg(ctx));
    cr_expect_eq(ds->classes, 0, "no classes: a regression set");
    expect_close(ds->y, (const float[]){-0.2497f, 12.5f}, 2, 0, "y");
    expect_close(ds->x, (const float[]){1, 2, 3, 4}, 4, 0, "x");
    tg_dataset_free(ds);
    cr_expect_null(tg_dataset_read_csv_regression(ctx, write_csv("1,2,3\n4,5,1e999\n"), -1));
    expect_errmsg_has(ctx, "line 2, column 3", "is not a"); /* overflow: inf, not a number */
}

Test(data, csv_label_column_from_either_end) {
    const char *path = write_csv("1,0.5,0.25\n0,1,2\n");
    for (int k = 0; k < 2; k++) {
        tg_dataset *ds = tg_dataset_read_csv(ctx, path, k == 0 ? 0 : -3);
        cr_assert_not_null(ds, "%s", tg_errmsg(ctx));
        expect_close(ds->x, (const float[]){0.5f, 0.25f, 1, 2}, 4, 0, "x");
        expect_close(ds->y, (const float[]){1, 0}, 2, 0, "y");
        cr_expect_eq(ds->classes, 2);
        tg_dataset_free(ds);
    }
    tg_dataset *last = tg_dataset_read_csv(ctx, path, -1);
    cr_expect_null(last, "0.25 is not a label");
    expect_errmsg_has(ctx, "line 1, column 3", "label 0.25");
    tg_clear_error(ctx);
    cr_expect_null(tg_dataset_read_csv(ctx, path, 3));
    cr_expect_eq(tg_errcode(ctx), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "label column 3", "3 columns");
}

Test(data, csv_errors_name_the_file_line_and_column) {
    static const struct {
        const char *text;
        const char *fragments[2];
    } cases[] = {
        {"a,b,c\n1,2,0\n3,4\n", {"line 3 has 2 columns", "line 2 has 3"}},
        {"a,b,c\n1,2,0\n3,abc,1\n", {"line 3, column 2", "\"abc\" is not a number"}},
        {"1,2,0\n3,,1\n", {"line 2, column 2", "\"\" is not a number"}},
        {"1,2,-1\n", {"line 1, column 3", "label -1"}},
        {"1,2,0\n3,nan,1\n", {"line 2, column 2", "\"nan\" is not a number"}},
        {"x,y,label\n", {"no data rows", "a.csv"}},
        {"", {"no data rows", "a.csv"}},
        {"1\n2\n", {"line 1 has 1 column", "a.csv"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = write_csv(cases[i].text);
        tg_clear_error(ctx);
        cr_expect_null(tg_dataset_read_csv(ctx, path, -1), "case %zu", i);
        cr_expect_eq(tg_errcode(ctx), TG_ERR_IO, "case %zu: %s", i, tg_errmsg(ctx));
        expect_errmsg_has(ctx, path, cases[i].fragments[0], cases[i].fragments[1]);
    }
}

Test(data, csv_missing_file) {
    char path[128];
    snprintf(path, sizeof path, "%s/missing.csv", tmp_dir);
    cr_expect_null(tg_dataset_read_csv(ctx, path, -1));
    cr_expect_eq(tg_errcode(ctx), TG_ERR_IO);
    expect_errmsg_has(ctx, "read_csv", path, "cannot open");
}

/* ---- IDX ----------------------------------------------------------------------------------- */

/* Two 3x2 images, as MNIST lays them out (magic, 3 big-endian dims, pixels). */
static const unsigned char idx_images[16 + 12] = {
    0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 2,
    0, 51, 102, 153, 204, 255, 255, 0, 10, 20, 30, 40};

/* Writes the first n bytes of the images and a labels file of count labels (7, 3, 1); puts
 * their paths into images and labels. */
static void write_idx(size_t n, unsigned char count, char *images, char *labels) {
    unsigned char lab[8 + 3] = {0, 0, 8, 1, 0, 0, 0, count, 7, 3, 1};
    strcpy(images, write_file("images.idx", idx_images, n));
    strcpy(labels, write_file("labels.idx", lab, 8 + (size_t)count));
}

Test(data, idx_reads_images_and_labels) {
    char images[128], labels[128];
    write_idx(sizeof idx_images, 2, images, labels);
    tg_dataset *ds = tg_dataset_read_idx(ctx, images, labels);
    cr_assert_not_null(ds, "%s", tg_errmsg(ctx));
    cr_expect_eq(ds->count, 2);
    cr_expect(ds->x_ndim == 1 && ds->x_shape[0] == 6 && ds->y_ndim == 0);
    cr_expect_eq(ds->classes, 8);
    float want[12];
    for (int i = 0; i < 12; i++) want[i] = idx_images[16 + i] / 255.0f;
    expect_close(ds->x, want, 12, 1e-7f, "pixels");
    cr_expect(ds->x[5] == 1.0f && ds->x[0] == 0.0f);
    expect_close(ds->y, (const float[]){7, 3}, 2, 0, "labels");
    tg_dataset_free(ds);
}

Test(data, idx_errors_name_the_file_and_field) {
    char images[128], labels[128];
    write_idx(sizeof idx_images, 2, images, labels);
    cr_expect_null(tg_dataset_read_idx(ctx, labels, labels), "labels given as images");
    expect_errmsg_has(ctx, labels, "magic number 0x00000801", "expected 0x00000803");

    write_idx(sizeof idx_images - 2, 2, images, labels);
    tg_clear_error(ctx);
    cr_expect_null(tg_dataset_read_idx(ctx, images, labels), "truncated");
    expect_errmsg_has(ctx, images, "need 12 bytes", "has 10");

    write_idx(sizeof idx_images, 3, images, labels);
    tg_clear_error(ctx);
    cr_expect_null(tg_dataset_read_idx(ctx, images, labels), "count mismatch");
    expect_errmsg_has(ctx, images, "2 images", labels, "3 labels");

    const char *tiny = write_file("short.idx", idx_images, 3);
    tg_clear_error(ctx);
    cr_expect_null(tg_dataset_read_idx(ctx, tiny, labels));
    expect_errmsg_has(ctx, tiny, "3 bytes", "too short for the magic number");

    unsigned char huge[16 + 4] = {0, 0, 8, 3, 255, 255, 255, 255, 255, 255, 255, 255,
                                  255, 255, 255, 255};
    write_file("images.idx", huge, sizeof huge);
    tg_clear_error(ctx);
    cr_expect_null(tg_dataset_read_idx(ctx, images, labels), "dims overflow");
    expect_errmsg_has(ctx, images, "more than 2^64 bytes");
    cr_expect_eq(tg_errcode(ctx), TG_ERR_IO);
}

Test(data, readers_free_everything_on_error) {
    tally count = {.fail_at = -1};
    tg_ctx *c = tg_ctx_new_with_allocator(tally_alloc, &count);
    char images[128], labels[128];
    long before = count.live_bytes;
    write_idx(sizeof idx_images, 3, images, labels);
    cr_expect_null(tg_dataset_read_idx(c, images, labels));
    cr_expect_eq(count.live_bytes, before, "idx: %ld bytes kept", count.live_bytes - before);
    const char *path = write_csv("a,b\n1,0\n2,1\n3,x\n");
    tg_clear_error(c);
    cr_expect_null(tg_dataset_read_csv(c, path, 1));
    cr_expect_eq(count.live_bytes, before, "csv: %ld bytes kept", count.live_bytes - before);
    expect_errmsg_has(c, "line 4, column 2");
    tg_ctx_free(c);
}

/* With the allocator refusing every request from the k-th on, each call either succeeds or
 * fails with TG_ERR_NOMEM, and nothing leaks: what a failed call made is given back at once;
 * the headers of the data sets and batchers freed by hand stay until tg_ctx_free (so a second
 * free finds them marked: tgi_retired), a few hundred bytes each. */
Test(data, out_of_memory_is_an_error_and_leaks_nothing) {
    tally count = {.fail_at = -1};
    tg_ctx *c = tg_ctx_new_with_allocator(tally_alloc, &count);
    const char *path = write_csv("a,b\n1,0\n2,1\n");
    long baseline = count.live_bytes;
    bool succeeded = false;
    for (long k = 0; k < 12 && !succeeded; k++) {
        count.fail_at = count.allocations + k;
        tg_dataset *ds = tg_dataset_read_csv(c, path, -1), *train = NULL, *test = NULL;
        tg_batcher *b = NULL;
        if (ds && tg_dataset_split(ds, 0.5, 1, &train, &test) == TG_OK)
            b = tg_batcher_new(train, 1, true, false, 1);
        succeeded = b != NULL;
        if (!succeeded)
            cr_expect_eq(tg_errcode(c), TG_ERR_NOMEM, "request %ld: %s", k, tg_errmsg(c));
        tg_batcher_free(b);
        tg_dataset_free(train);
        tg_dataset_free(test);
        tg_dataset_free(ds);
        cr_expect_leq(count.live_bytes - baseline, 1024 * (k + 1), "request %ld: %ld bytes kept",
                      k, count.live_bytes - baseline);
        tg_clear_error(c);
    }
    cr_expect(succeeded, "never got through: the loop is too short to reach success");
    count.fail_at = -1;
    tg_ctx_free(c);
    cr_expect_eq(count.live_bytes, 0, "%ld bytes never given back", count.live_bytes);
}
