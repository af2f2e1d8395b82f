/* tests/fuzz/fuzz_cli_args.c — `tapegrad train`'s argument parser on any arguments (the input
 * split at NUL bytes). Two trailing --help end every parse that gets that far (a flag taking a
 * value may swallow the first), so nothing trains: the parser and its messages are fuzzed.
 * Run it with -close_fd_mask=3: the usage text and messages stay off the terminal, libFuzzer's
 * own reports do not. */
#include <stdlib.h>
#include <string.h>

#include "cli/report.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    char *argv[67];
    int argc = 0;
    for (char *p = text; argc < 64 && p < text + size; p += strlen(p) + 1) argv[argc++] = p;
    argv[argc++] = "--help";
    argv[argc++] = "--help";
    argv[argc] = NULL;
    run_train(argc, argv);
    free(text);
    return 0;
}
