/*
 * tests/test_cli_epochs.c — `tapegrad train` on real images: --data fashion-mnist:DIR (its own
 * training and test files; a missing one names the Debian package), --epochs (whole passes,
 * a line per epoch whose figures are the run's), --augment (seeded, applied: it changes the
 * run), and what they refuse; `tapegrad study --data` refused outside the cnn experiment.
 * The files are small IDX sets of 28x28 images written here: no test needs the package.
 */
#include "cli_run.h"

#include <math.h>
#include <stdint.h>
#include <unistd.h>

TestSuite(cli_epochs, .init = capture_cli_output);

static const char *captured(bool from_stdout) {
    fflush(from_stdout ? stdout : stderr);
    return read_all(from_stdout ? cr_get_redirected_stdout() : cr_get_redirected_stderr());
}

static void put_be32(FILE *f, uint32_t v) {
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                          (unsigned char)v};
    fwrite(b, 1, 4, f);
}

/* dir/{split}-images-idx3-ubyte and -labels-idx1-ubyte: n images of 28x28 whose class (i % 10)
 * is drawn as a bright band at a class-dependent row, over seeded noise: learnable. */
static void write_split(const char *dir, const char *split, int n, unsigned seed) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, split);
    FILE *images = fopen(path, "wb");
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, split);
    FILE *labels = fopen(path, "wb");
    cr_assert(images && labels);
    put_be32(images, 0x803);
    put_be32(images, (uint32_t)n);
    put_be32(images, 28);
    put_be32(images, 28);
    put_be32(labels, 0x801);
    put_be32(labels, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        unsigned char image[28 * 28];
        for (int p = 0; p < 28 * 28; p++) {
            seed = seed * 1103515245u + 12345u;
            image[p] = (unsigned char)((seed >> 16) % 64);
        }
        int band = 2 + 2 * (i % 10);
        for (int c = 4; c < 24; c++) image[band * 28 + c] = image[(band + 1) * 28 + c] = 255;
        fwrite(image, 1, sizeof image, images);
        fputc(i % 10, labels);
    }
    fclose(images);
    fclose(labels);
}

static const char *fashion_dir(void) {
    static char dir[] = "/tmp/tapegrad-fashion-XXXXXX";
    static bool made;
    if (!made) {
        cr_assert(mkdtemp(dir));
        write_split(dir, "train", 200, 1);
        write_split(dir, "t10k", 60, 2);
        made = true;
    }
    return dir;
}

static const char *data_arg(void) {
    static char arg[600];
    snprintf(arg, sizeof arg, "fashion-mnist:%s", fashion_dir());
    return arg;
}

/* The number after `key` in text (NAN when absent). */
static double number_after(const char *text, const char *key) {
    const char *at = strstr(text, key);
    return at ? strtod(at + strlen(key), NULL) : NAN;
}

/* 200 images, batch 32: 6 whole batches an epoch, 12 steps in 2 epochs; the last epoch's line
 * gives the accuracy the summary gives. */
Test(cli_epochs, epochs_are_whole_passes_with_a_line_each) {
    cr_assert_eq(TRAIN("--model", "lenet", "--data", data_arg(), "--epochs", "2", "--batch", "32",
                       "--threads", "1"), 0);
    const char *text = captured(true);
    cr_expect(strstr(text, "epoch 1/2: training loss "), "%s", text);
    const char *last = strstr(text, "epoch 2/2: training loss ");
    cr_assert(last, "%s", text);
    cr_expect(strstr(text, "steps 12, final training loss"), "%s", text);
    cr_expect(strstr(last, " samples/s\n"), "%s", text);
    double epoch_accuracy = number_after(last, "test accuracy ");
    double final_accuracy = number_after(strstr(text, "steps 12,"), "test accuracy ");
    cr_expect(isfinite(epoch_accuracy) && epoch_accuracy == final_accuracy, "%g against %g", epoch_accuracy,
              final_accuracy);
    /* 60 test images: an accuracy is a multiple of 1/60 */
    double correct = epoch_accuracy / 100 * 60;
    cr_expect(fabs(correct - round(correct)) < 1e-2, "%g", epoch_accuracy);
}

/* The same seed gives the same run with augmentation; augmentation changes the run. */
Test(cli_epochs, augment_is_seeded_and_applied) {
    double loss[3];
    const char *augment[3] = {"crop:3,flip,normalize", "crop:3,flip,normalize", NULL};
    for (int k = 0; k < 3; k++) {
        if (augment[k])
            cr_assert_eq(TRAIN("--model", "lenet", "--data", data_arg(), "--epochs", "1", "--batch", "32",
                               "--threads", "1", "--augment", augment[k]), 0);
        else
            cr_assert_eq(TRAIN("--model", "lenet", "--data", data_arg(), "--epochs", "1", "--batch", "32",
                               "--threads", "1"), 0);
        const char *text = captured(true);
        const char *summary = strstr(text, "steps 6, final training loss ");
        cr_assert(summary, "%s", text);
        loss[k] = number_after(summary, "final training loss ");
    }
    cr_expect(isfinite(loss[0]) && loss[0] == loss[1], "%g then %g", loss[0], loss[1]);
    cr_expect(loss[2] != loss[0], "augmentation left the run as it was (%g)", loss[2]);
}

Test(cli_epochs, what_is_refused_says_why) {
    cr_expect_eq(TRAIN("--data", data_arg(), "--steps", "5", "--epochs", "2"), 2);
    cr_expect_eq(TRAIN("--model", "lenet", "--data", data_arg(), "--augment", "crop:x"), 2);
    cr_expect_eq(TRAIN("--model", "lenet", "--data", data_arg(), "--augment", "flip,,crop:2"), 2);
    cr_expect_eq(TRAIN("--data", "fashion-mnist:/nonexistent/tapegrad", "--model", "lenet"), 2);
    cr_expect_eq(TRAIN("--data", "fashion-mnst"), 2);
    const char *text = captured(false);
    cr_expect(strstr(text, "--steps and --epochs both say how long to train: give one"), "%s", text);
    cr_expect(strstr(text, "--augment: expected a comma-separated list of crop:P"), "%s", text);
    cr_expect(strstr(text, "apt-get install dataset-fashion-mnist"), "%s", text);
    cr_expect(strstr(text, "did you mean 'fashion-mnist'?"), "%s", text);
    /* an MLP takes the images flat, and refuses to augment them */
    cr_expect_eq(TRAIN("--data", data_arg(), "--epochs", "1", "--batch", "50", "--augment", "flip"), 1);
    text = captured(false);
    cr_expect(strstr(text, "--augment transforms images: it is for --model lenet, resnet or plaincnn, not mlp"),
              "%s", text);
    cr_expect_eq(TRAIN("--data", data_arg(), "--epochs", "1", "--batch", "50", "--depth", "2"), 0);
    text = captured(true);
    cr_expect(strstr(text, "epoch 1/1: "), "%s", text);
}

Test(cli_epochs, the_study_takes_fashion_mnist_for_cnn_alone) {
    const char *args[] = {"vanishing", "--data", "fashion-mnist"};
    cr_expect_eq(run_study(3, (char **)args), 2);
    const char *other[] = {"cnn", "--data", "digits"};
    cr_expect_eq(run_study(3, (char **)other), 2);
    const char *text = captured(false);
    cr_expect(strstr(text, "--data fashion-mnist is for the cnn experiment alone"), "%s", text);
    cr_expect(strstr(text, "fashion-mnist[:DIR] (for cnn) is the one choice, got 'digits'"), "%s", text);
}

/* Resumed after its first epoch, an augmented LeNet run ends on the bits of the unstopped one:
 * the skipped batches' crops and flips are drawn again, not repeated. */
Test(cli_epochs, a_resumed_augmented_run_ends_where_the_unstopped_one_does) {
    char whole[600], half[600], resumed[600];
    snprintf(whole, sizeof whole, "%s/whole.safetensors", fashion_dir());
    snprintf(half, sizeof half, "%s/half.safetensors", fashion_dir());
    snprintf(resumed, sizeof resumed, "%s/resumed.safetensors", fashion_dir());
#define LENET(epochs, ...) TRAIN("--model", "lenet", "--data", data_arg(), "--epochs", epochs, "--batch", "32", \
                                 "--threads", "1", "--augment", "crop:2,flip", __VA_ARGS__)
    cr_assert_eq(LENET("2", "--save", whole), 0);
    cr_assert_eq(LENET("1", "--save", half), 0);
    cr_assert_eq(LENET("2", "--resume", half, "--save", resumed), 0);
#undef LENET
    cr_expect(same_file_bytes(whole, resumed), "the resumed run's checkpoint differs from the unstopped run's");
    unlink(whole);
    unlink(half);
    unlink(resumed);
}
