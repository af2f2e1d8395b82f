/* tests/cli_run.h — what the suites that run `tapegrad train` in process share: the tool's
 * output captured (the suite's .init), TRAIN("--flag", ...) calling run_train with those
 * arguments, and the captured text read back. */
#ifndef TAPEGRAD_TESTS_CLI_RUN_H
#define TAPEGRAD_TESTS_CLI_RUN_H

#include "cli/report.h"
#include "helpers.h"

#include <criterion/redirect.h>

/* TestSuite(name, .init = capture_cli_output): stdout and stderr go to Criterion's pipes. */
static inline void capture_cli_output(void) {
    cr_redirect_stdout();
    cr_redirect_stderr();
}

#define TRAIN(...) run_train((int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(char *)), \
                             (char **)(const char *[]){__VA_ARGS__})

/* What f (a redirected stream) holds from its current position, up to 64 KiB. */
static inline const char *read_all(FILE *f) {
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    return text;
}

#endif
