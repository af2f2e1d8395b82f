/* tests/test_input_files.c — readers take regular files only: csv:/dev/zero read until memory
 * ran out, and a FIFO without a writer blocked in fopen forever. Each is now a quick error. */
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"

static char dir[64];

static void setup(void) {
    fixture_setup();
    temp_dir_make(dir, "tapegrad-input");
}

static void teardown(void) {
    temp_dir_remove(dir);
    fixture_teardown();
}

/* The timeout is the test: a blocking open or an endless read fails it. */
TestSuite(input_files, .init = setup, .fini = teardown, .timeout = 10);

/* /dev/zero (endless), a FIFO (no writer), a directory: each refused by every reader. */
static void each_special_file(void (*check)(const char *path)) {
    char fifo[128], sub[128];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    snprintf(sub, sizeof sub, "%s/sub", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    cr_assert_eq(mkdir(sub, 0700), 0);
    const char *paths[] = {"/dev/zero", fifo, sub};
    for (size_t i = 0; i < 3; i++) {
        tg_clear_error(ctx);
        check(paths[i]);
        cr_expect_eq(tg_errcode(ctx), TG_ERR_IO, "%s: %s", paths[i], tg_errmsg(ctx));
        expect_errmsg_has(ctx, paths[i], "not a regular file");
    }
}

static void read_csv(const char *path) { cr_expect_null(tg_dataset_read_csv(ctx, path, -1)); }
static void read_idx_images(const char *path) {
    cr_expect_null(tg_dataset_read_idx(ctx, path, "/nonexistent"));
}
static void read_idx_labels(const char *path) {
    char images[128];
    snprintf(images, sizeof images, "%s/images.idx", dir);
    FILE *f = fopen(images, "wb"); /* a valid 1x4x4 image file, so the labels are read */
    const unsigned char head[16] = {0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 4};
    fwrite(head, 1, sizeof head, f);
    for (int i = 0; i < 16; i++) fputc(0, f);
    fclose(f);
    cr_expect_null(tg_dataset_read_idx(ctx, images, path));
}
static void load(const char *path) {
    tg_tensor *t = tg_set_label(tg_zeros(ctx, TG_SHAPE(2)), "w");
    cr_expect_neq(tg_load_safetensors(ctx, path, &t, 1), TG_OK);
}

Test(input_files, csv_refuses_devices_fifos_and_directories) { each_special_file(read_csv); }
Test(input_files, idx_images_refuse_them) { each_special_file(read_idx_images); }
Test(input_files, idx_labels_refuse_them) { each_special_file(read_idx_labels); }
Test(input_files, safetensors_load_refuses_them) { each_special_file(load); }
