/* tests/test_text.c — the byte-level text corpus: vocabulary, split, windows, errors, and the
 * fortunes corpus (read from a directory the tests write; the installed package only when
 * present). */
#include "fixture.h"
#include "data/dataset.h"

#include <sys/stat.h>
#include <unistd.h>

static char tmp_dir[64];

static void text_setup(void) {
    fixture_setup();
    temp_dir_make(tmp_dir, "tapegrad-text");
}

static void text_teardown(void) {
    temp_dir_remove(tmp_dir);
    fixture_teardown();
}

TestSuite(text, .init = text_setup, .fini = text_teardown);

static const char *write_file(const char *name, const void *bytes, size_t n) {
    return write_in_dir(tmp_dir, name, bytes, n);
}

/* n bytes of a pseudo-text over 'a'..'z', ' ' and '\n' in which every 8-byte run is (almost
 * surely) unique, so a window can be found again in the corpus. */
static char *pseudo_text(int64_t n) {
    char *bytes = malloc((size_t)n);
    cr_assert_not_null(bytes);
    tg_rng rng;
    tg_rng_seed(&rng, 7);
    for (int64_t i = 0; i < n; i++) {
        uint32_t r = tg_rng_below(&rng, 28);
        bytes[i] = r < 26 ? (char)('a' + r) : r == 26 ? ' ' : '\n';
    }
    return bytes;
}

static tg_text *pseudo_corpus(int64_t n) {
    char *bytes = pseudo_text(n);
    tg_text *text = tg_text_from_memory(ctx, bytes, n);
    free(bytes);
    cr_assert_not_null(text, "%s", tg_errmsg(ctx));
    return text;
}

Test(text, vocabulary_is_sorted_and_round_trips) {
    static const char hello[] = "hello, world\n";
    tg_text *text = tg_text_load(ctx, write_file("a.txt", hello, strlen(hello)));
    cr_assert_not_null(text, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_text_length(text), (int64_t)strlen(hello));
    cr_assert_eq(tg_text_vocab_size(text), 10);
    cr_expect_arr_eq(tg_text_vocab(text), "\n ,dehlorw", 10);
    const unsigned char *ids = tg_text_ids(text);
    for (size_t i = 0; i < strlen(hello); i++) {
        cr_expect_eq(ids[i], tg_text_encode_byte(text, (unsigned char)hello[i]));
        cr_expect_eq(tg_text_decode_id(text, ids[i]), (unsigned char)hello[i]);
    }
    cr_expect_eq(tg_text_encode_byte(text, 'z'), -1);
    cr_expect_eq(tg_text_decode_id(text, 10), -1);
    cr_expect_eq(tg_text_decode_id(text, -1), -1);
    cr_expect_eq(tg_text_check_vocab(text, 10), TG_OK);
    cr_expect_eq(tg_text_check_vocab(text, 9), TG_ERR_SHAPE);
    cr_expect(strstr(tg_errmsg(ctx), "10 distinct bytes") && strstr(tg_errmsg(ctx), "only 9"),
              "%s", tg_errmsg(ctx));
    tg_text_free(text);
}

/* All 256 byte values, NUL included, are a vocabulary of 256 ids. */
Test(text, every_byte_value_has_an_id) {
    char bytes[512];
    for (int i = 0; i < 512; i++) bytes[i] = (char)(255 - i % 256);
    tg_text *text = tg_text_from_memory(ctx, bytes, 512);
    cr_assert_not_null(text, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_text_vocab_size(text), 256);
    for (int b = 0; b < 256; b++) cr_expect_eq(tg_text_encode_byte(text, (unsigned char)b), b);
    tg_text_free(text);
}

/* Where the window x (of T ids) starts in the text, checking that it is unique. */
static int64_t find_window(const tg_text *text, const float *x, int64_t T) {
    const unsigned char *ids = tg_text_ids(text);
    int64_t found = -1;
    for (int64_t p = 0; p + T <= tg_text_length(text); p++) {
        int64_t t = 0;
        while (t < T && ids[p + t] == x[t]) t++;
        if (t < T) continue;
        cr_assert_eq(found, -1, "the window occurs twice: the test text is too repetitive");
        found = p;
    }
    return found;
}

/* The part ('0' training, '1' held-out) of every byte, as sequential batchers see the text's
 * split: their windows of 8 are found in the text and marked; the few bytes at the end of a run
 * that no window reaches go with the byte before them. */
static void part_map(tg_text *text, char *part, int64_t n) {
    memset(part, '?', (size_t)n);
    tg_tensor *x = tg_zeros(ctx, TG_SHAPE(1, 8)), *y = tg_zeros(ctx, TG_SHAPE(1, 8));
    for (int p = 0; p < 2; p++) {
        tg_text_batcher *b = tg_text_batcher_new(text, p, TG_TEXT_SEQUENTIAL, 1, 8, 0);
        cr_assert_not_null(b, "%s", tg_errmsg(ctx));
        while (tg_text_batcher_next_into(b, x, y) == 1) {
            int64_t at = find_window(text, x->data, 8);
            cr_assert_geq(at, 0);
            memset(part + at, '0' + p, 9);
        }
        tg_text_batcher_free(b);
    }
    for (int64_t i = 1; i < n; i++)
        if (part[i] == '?') part[i] = part[i - 1];
}

Test(text, split_is_seeded_and_parts_are_disjoint) {
    int64_t n = 64 * 100;
    tg_text *text = pseudo_corpus(n);
    char *first = malloc((size_t)n), *again = malloc((size_t)n), *other = malloc((size_t)n);
    cr_assert_eq(tg_text_split(text, 0.2, 64, 1), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_text_part_length(text, TG_TEXT_HELD_OUT), 20 * 64);
    cr_expect_eq(tg_text_part_length(text, TG_TEXT_TRAIN), 80 * 64);
    part_map(text, first, n);
    cr_assert_eq(tg_text_split(text, 0.2, 64, 1), TG_OK);
    part_map(text, again, n);
    cr_assert_eq(tg_text_split(text, 0.2, 64, 2), TG_OK);
    part_map(text, other, n);
    cr_expect_arr_eq(first, again, (size_t)n, "the same seed split differently");
    cr_expect_neq(memcmp(first, other, (size_t)n), 0, "seeds 1 and 2 gave the same split");
    /* whole chunks go to one part */
    for (int64_t c = 0; c < 100; c++)
        for (int64_t i = 1; i < 63; i++)
            cr_assert_eq(first[c * 64 + i], first[c * 64 + 1], "chunk %lld is cut", (long long)c);
    free(first);
    free(again);
    free(other);
    tg_text_free(text);
}

/* Every random window (x, y) of part `want` is a run of the text with y shifted by one, all
 * of it (p .. p+T) inside that part (part[] as from part_map). */
static void check_windows(tg_text *text, tg_text_part want, const char *part, int64_t T) {
    tg_text_batcher *b = tg_text_batcher_new(text, want, TG_TEXT_RANDOM, 8, T, 3);
    cr_assert_not_null(b, "%s", tg_errmsg(ctx));
    tg_tensor *x = tg_zeros(ctx, TG_SHAPE(8, T)), *y = tg_zeros(ctx, TG_SHAPE(8, T));
    const unsigned char *ids = tg_text_ids(text);
    for (int step = 0; step < 20; step++) {
        cr_assert_eq(tg_text_batcher_next_into(b, x, y), 8, "%s", tg_errmsg(ctx));
        for (int64_t r = 0; r < 8; r++) {
            int64_t p = find_window(text, x->data + r * T, T);
            cr_assert_geq(p, 0, "row %lld is not in the text", (long long)r);
            for (int64_t t = 0; t < T; t++) cr_assert_eq(y->data[r * T + t], ids[p + t + 1]);
            for (int64_t t = 0; t <= T; t++)
                cr_assert_eq(part[p + t], '0' + (int)want, "window at %lld crosses into the "
                             "other part at %lld", (long long)p, (long long)(p + t));
        }
    }
    tg_text_batcher_free(b);
}

Test(text, windows_are_shifted_runs_of_their_own_part) {
    int64_t n = 32 * 60, T = 12;
    tg_text *text = pseudo_corpus(n);
    cr_assert_eq(tg_text_split(text, 0.25, 32, 5), TG_OK, "%s", tg_errmsg(ctx));
    char *part = malloc((size_t)n);
    part_map(text, part, n);
    check_windows(text, TG_TEXT_TRAIN, part, T);
    check_windows(text, TG_TEXT_HELD_OUT, part, T);
    free(part);
    tg_text_free(text);
}

/* A sequential pass walks the part in order without overlap, then ends with 0 and restarts. */
Test(text, sequential_pass_covers_the_part_once) {
    static const char abc[] = "abcdefghijklmnopqrstuvwxyz"; /* 26 bytes: 6 windows of 4 */
    tg_text *text = tg_text_from_memory(ctx, abc, 26);
    tg_text_batcher *b = tg_text_batcher_new(text, TG_TEXT_TRAIN, TG_TEXT_SEQUENTIAL, 4, 4, 0);
    cr_assert_not_null(b, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_text_batcher_windows(b), 6);
    tg_tensor *x = tg_zeros(ctx, TG_SHAPE(4, 4)), *y = tg_zeros(ctx, TG_SHAPE(4, 4));
    for (int pass = 0; pass < 2; pass++) {
        cr_assert_eq(tg_text_batcher_next_into(b, x, y), 4);
        for (int i = 0; i < 16; i++) {
            cr_expect_eq(x->data[i], (float)i, "pass %d x[%d]", pass, i);
            cr_expect_eq(y->data[i], (float)(i + 1));
        }
        cr_assert_eq(tg_text_batcher_next_into(b, x, y), 2);
        cr_expect_eq(x->data[0], 16.0f);
        cr_expect_eq(y->data[7], 24.0f);
        cr_expect_eq(x->data[8], 0.0f, "a row past the last window is zeroed");
        cr_expect_eq(tg_text_batcher_next_into(b, x, y), 0);
    }
    tg_text_batcher_free(b);
    tg_text_free(text);
}

Test(text, same_seed_same_batches) {
    tg_text *text = pseudo_corpus(5000);
    tg_tensor *x[2], *y[2];
    tg_text_batcher *b[2];
    for (int i = 0; i < 2; i++) {
        b[i] = tg_text_batcher_new(text, TG_TEXT_TRAIN, TG_TEXT_RANDOM, 4, 16, 42);
        x[i] = tg_zeros(ctx, TG_SHAPE(4, 16));
        y[i] = tg_zeros(ctx, TG_SHAPE(4, 16));
    }
    for (int step = 0; step < 10; step++) {
        for (int i = 0; i < 2; i++) cr_assert_eq(tg_text_batcher_next_into(b[i], x[i], y[i]), 4);
        cr_assert_arr_eq(x[0]->data, x[1]->data, 64 * sizeof(float), "step %d", step);
    }
    for (int i = 0; i < 2; i++) tg_text_batcher_free(b[i]);
    tg_text_free(text);
}

/* call gives `code` and leaves a message holding `part` (cleared for the next call). */
#define expect_error(call, code, part)                                                       \
    do {                                                                                     \
        cr_expect_eq((call), (code), "%s", tg_errmsg(ctx));                                  \
        expect_errmsg_has(ctx, part);                                                        \
        tg_clear_error(ctx);                                                                 \
    } while (0)

Test(text, bad_files_are_clear_errors) {
    char path[128];
    expect_error(tg_text_load(ctx, write_file("empty.txt", "", 0)) != NULL, false, "empty");
    snprintf(path, sizeof path, "%s/missing.txt", tmp_dir);
    expect_error(tg_text_load(ctx, path) != NULL, false, "missing.txt': cannot open");
    expect_error(tg_text_load(ctx, tmp_dir) != NULL, false, "directory");
    expect_error(tg_text_load(ctx, NULL) != NULL, false, "path is NULL");
    expect_error(tg_text_from_memory(ctx, "a", 0) != NULL, false, "0 bytes");
    expect_error(tg_text_load_corpus(ctx, "shakespeare") != NULL, false, "unknown corpus");
    cr_expect_null(tg_text_load(NULL, path));
}

Test(text, bad_windows_and_splits_are_clear_errors) {
    tg_text *text = tg_text_from_memory(ctx, "abcdefghij", 10);
    expect_error(tg_text_batcher_new(text, TG_TEXT_TRAIN, TG_TEXT_RANDOM, 1, 10, 0) != NULL,
                 false, "needs 11");
    expect_error(tg_text_batcher_new(text, TG_TEXT_HELD_OUT, TG_TEXT_RANDOM, 1, 2, 0) != NULL,
                 false, "no held-out part");
    expect_error(tg_text_batcher_new(text, TG_TEXT_TRAIN, TG_TEXT_RANDOM, 0, 2, 0) != NULL,
                 false, "batch 0");
    expect_error(tg_text_split(text, 0.01, 2, 0), TG_ERR_INVALID, "leaves an empty part");
    expect_error(tg_text_split(text, 0.5, 0, 0), TG_ERR_INVALID, "chunks of 0 bytes");
    cr_assert_eq(tg_text_split(text, 0.5, 2, 0), TG_OK);
    expect_error(tg_text_batcher_new(text, TG_TEXT_HELD_OUT, TG_TEXT_RANDOM, 1, 8, 0) != NULL,
                 false, "held-out part's longest piece");
    cr_expect_null(tg_text_batcher_new(NULL, TG_TEXT_TRAIN, TG_TEXT_RANDOM, 1, 1, 0));
    cr_expect_eq(tg_text_split(NULL, 0.5, 2, 0), TG_ERR_INVALID);
    tg_text_free(text);
}

Test(text, misshapen_null_and_stale_tensors_are_refused) {
    tg_text *text = pseudo_corpus(200);
    tg_text_batcher *b = tg_text_batcher_new(text, TG_TEXT_TRAIN, TG_TEXT_RANDOM, 2, 8, 0);
    tg_tensor *x = tg_zeros(ctx, TG_SHAPE(2, 8)), *y = tg_zeros(ctx, TG_SHAPE(2, 8));
    tg_tensor *wrong = tg_set_label(tg_zeros(ctx, TG_SHAPE(8, 2)), "inputs");
    expect_error(tg_text_batcher_next_into(b, wrong, y), -1, "x 'inputs' is [8,2], a batch of "
                 "windows is [2,8]");
    expect_error(tg_text_batcher_next_into(b, x, NULL), -1, "y is NULL");
    expect_error(tg_text_batcher_next_into(b, x, x), -1, "the same tensor");
    tg_tensor *old = tg_tape_zeros(tape, TG_SHAPE(2, 8));
    tg_tape_reset(tape);
    expect_error(tg_text_batcher_next_into(b, old, y), -1, "earlier step");
    cr_expect_eq(tg_text_batcher_next_into(NULL, x, y), -1);
    cr_expect_eq(tg_text_batcher_next_into(b, x, y), 2, "%s", tg_errmsg(ctx));
    tg_text_batcher_free(b);
    tg_text_free(text);
}

Test(text, batches_allocate_nothing_in_the_steady_state) {
    tally count = {.fail_at = -1};
    tg_ctx *counted = tg_ctx_new_with_allocator(tally_alloc, &count);
    char *bytes = pseudo_text(20000);
    tg_text *text = tg_text_from_memory(counted, bytes, 20000);
    free(bytes);
    cr_assert_eq(tg_text_split(text, 0.1, 1024, 9), TG_OK, "%s", tg_errmsg(counted));
    tg_text_batcher *train = tg_text_batcher_new(text, TG_TEXT_TRAIN, TG_TEXT_RANDOM, 8, 64, 1);
    tg_text_batcher *eval = tg_text_batcher_new(text, TG_TEXT_HELD_OUT, TG_TEXT_SEQUENTIAL, 8,
                                                64, 1);
    cr_assert(train && eval, "%s", tg_errmsg(counted));
    tg_tensor *x = tg_zeros(counted, TG_SHAPE(8, 64)), *y = tg_zeros(counted, TG_SHAPE(8, 64));
    long before = count.allocations;
    for (int step = 0; step < 100; step++) cr_assert_eq(tg_text_batcher_next_into(train, x, y), 8);
    int64_t rows = 0, got;
    while ((got = tg_text_batcher_next_into(eval, x, y)) > 0) rows += got;
    cr_expect_eq(rows, tg_text_batcher_windows(eval));
    cr_expect_eq(count.allocations, before, "%ld allocations in the steady state",
                 count.allocations - before);
    tg_text_batcher_free(train);
    tg_text_batcher_free(eval);
    tg_text_free(text);
    tg_ctx_free(counted);
    cr_expect_eq(count.allocations, count.frees);
}

/* A fortunes directory of the package's layout: text files, a .dat index, a .u8 symlink. */
static void write_fortunes_dir(void) {
    char dir[128];
    snprintf(dir, sizeof dir, "%s/fortunes", tmp_dir);
    cr_assert_eq(mkdir(dir, 0700), 0);
    static const char b[] = "Second file.\n%\n100% sure\n%\n", a[] = "First.\n%\nLast line";
    write_file("fortunes/b", b, strlen(b));
    write_file("fortunes/a", a, strlen(a));
    write_file("fortunes/a.dat", "\x00\x00\x00\x02", 4);
    char link[160];
    snprintf(link, sizeof link, "%s/fortunes/a.u8", tmp_dir);
    cr_assert_eq(symlink("a", link), 0);
}

Test(text, fortunes_directory_is_read_in_order_with_separators_as_blank_lines) {
    write_fortunes_dir();
    char dir[128], link[160];
    snprintf(dir, sizeof dir, "%s/fortunes", tmp_dir);
    snprintf(link, sizeof link, "%s/c", dir);
    cr_assert_eq(symlink("b", link), 0); /* a symlink without a dot is skipped as well */
    tg_text *text = tgi_text_load_fortunes(ctx, dir);
    cr_assert_not_null(text, "%s", tg_errmsg(ctx));
    static const char want[] = "First.\n\nLast line\nSecond file.\n\n100% sure\n\n";
    int64_t n = tg_text_length(text);
    cr_assert_eq(n, (int64_t)strlen(want));
    for (int64_t i = 0; i < n; i++)
        cr_expect_eq(tg_text_decode_id(text, tg_text_ids(text)[i]), (unsigned char)want[i],
                     "byte %lld", (long long)i);
    tg_text_free(text);
    snprintf(dir, sizeof dir, "%s/nowhere", tmp_dir);
    expect_error(tgi_text_load_fortunes(ctx, dir) != NULL, false, "apt-get install fortunes");
}

Test(text, installed_fortunes_corpus) {
    struct stat st;
    if (stat("/usr/share/games/fortunes", &st) != 0)
        cr_skip_test("Debian's package fortunes is not installed");
    tg_text *text = tg_text_load_corpus(ctx, "fortunes");
    cr_assert_not_null(text, "%s", tg_errmsg(ctx));
    cr_log_info("fortunes: %lld bytes, %d distinct", (long long)tg_text_length(text),
                tg_text_vocab_size(text));
    cr_expect_gt(tg_text_length(text), 1000000);
    cr_expect_lt(tg_text_vocab_size(text), 256);
    cr_expect_eq(tg_text_split(text, 0.1, 4096, 0), TG_OK, "%s", tg_errmsg(ctx));
    tg_text_free(text);
}
