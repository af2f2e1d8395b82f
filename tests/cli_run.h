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

/* Whether two files hold the same bytes (two checkpoints of runs that should agree to the bit). */
static inline bool same_file_bytes(const char *a_path, const char *b_path) {
    FILE *a = fopen(a_path, "rb"), *b = fopen(b_path, "rb");
    int ca = EOF, cb = EOF;
    if (a && b) do {
            ca = fgetc(a);
            cb = fgetc(b);
        } while (ca == cb && ca != EOF);
    bool same = a && b && ca == cb;
    if (a) fclose(a);
    if (b) fclose(b);
    return same;
}

#endif
