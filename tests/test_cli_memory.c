/* tests/test_cli_memory.c — a model that could never fit in the machine's memory is refused
 * before it is built, with the figure it would need and the one the machine has (FINDINGS-2:
 * `--model resnet --width 4096` ran out of memory after 48 s). */
#include "cli_run.h"

TestSuite(cli_memory, .init = capture_cli_output, .timeout = 60);

/* A ResNet-62 of width 4096: about 62 G weights, 248 GB before gradients, on any machine more
 * than it has. */
Test(cli_memory, an_absurd_resnet_is_refused_up_front_with_a_figure) {
    cr_expect_eq(TRAIN("--model", "resnet", "--width", "4096", "--depth", "62", "--steps", "1"), 1);
    fflush(stderr);
    const char *err = read_all(cr_get_redirected_stderr());
    cr_expect(strstr(err, "model resnet: needs at least ") && strstr(err, " GB (") &&
              strstr(err, "weights x 4 bytes x ") && strstr(err, "more than this machine's "),
              "%s", err);
}

Test(cli_memory, the_plain_twin_and_params_are_refused_too) {
    cr_expect_eq(TRAIN("--model", "plaincnn", "--width", "4096", "--depth", "62",
                       "--optimizer", "adam", "--steps", "1"), 1);
    fflush(stderr);
    const char *err = read_all(cr_get_redirected_stderr());
    cr_expect(strstr(err, "model plaincnn: needs at least ") && strstr(err, "x 4 copies"), "%s", err);
    const char *argv[] = {"--model", "resnet", "--width", "4096", "--depth", "62"};
    cr_expect_neq(run_params(6, (char **)argv), 0);
    fflush(stderr);
    err = read_all(cr_get_redirected_stderr());
    cr_expect(strstr(err, "model resnet: needs at least "), "params: %s", err);
}
