/*
 * tests/test_cli_recompute.c — `tapegrad train --recompute N`: a ResNet trained with its blocks
 * recomputed in the backward pass, and an LSTM in chunks of time, end on the bytes of the plain
 * runs (their --save checkpoints compared); what --recompute refuses.
 */
#include "cli_run.h"

#include <unistd.h>

static char dir[64], plain[128], recomputed[128];

static void setup(void) {
    capture_cli_output();
    temp_dir_make(dir, "tg-cli-recompute");
    snprintf(plain, sizeof plain, "%s/plain.safetensors", dir);
    snprintf(recomputed, sizeof recomputed, "%s/recomputed.safetensors", dir);
}

static void teardown(void) {
    unlink(plain);
    unlink(recomputed);
    rmdir(dir);
}

TestSuite(cli_recompute, .init = setup, .fini = teardown);

Test(cli_recompute, the_same_bytes_as_the_plain_run) {
    cr_assert_eq(TRAIN("--model", "resnet", "--depth", "8", "--steps", "6", "--batch", "16", "--threads", "1",
                       "--save", plain), 0);
    cr_assert_eq(TRAIN("--model", "resnet", "--depth", "8", "--steps", "6", "--batch", "16", "--threads", "1",
                       "--save", recomputed, "--recompute", "2"), 0);
    cr_expect(same_file_bytes(plain, recomputed), "resnet: the recomputed run differs");
    cr_assert_eq(TRAIN("--model", "lstm", "--data", "adding:30", "--steps", "6", "--threads", "1", "--save", plain), 0);
    cr_assert_eq(TRAIN("--model", "lstm", "--data", "adding:30", "--steps", "6", "--threads", "1", "--save",
                       recomputed, "--recompute", "7"), 0);
    cr_expect(same_file_bytes(plain, recomputed), "lstm: the recomputed run differs");
}

Test(cli_recompute, what_is_refused_says_why) {
    cr_expect_eq(TRAIN("--steps", "5", "--recompute", "2"), 2);
    cr_expect_eq(TRAIN("--model", "resnet", "--depth", "8", "--steps", "5", "--recompute", "2", "--curvature", "2"), 2);
    fflush(stderr);
    const char *text = read_all(cr_get_redirected_stderr());
    cr_expect(strstr(text, "--recompute N cuts a recurrent net's time steps or a ResNet's blocks into segments: "
                           "not --model mlp"), "%s", text);
    cr_expect(strstr(text, "--curvature's Hessian products differentiate the recorded forward"), "%s", text);
}
