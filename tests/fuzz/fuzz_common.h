/* tests/fuzz/fuzz_common.h — what the libFuzzer targets share: the input as a file (the readers
 * take paths), one per process so parallel fuzzing jobs do not collide. */
#ifndef TAPEGRAD_FUZZ_COMMON_H
#define TAPEGRAD_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "tapegrad.h"

static char fuzz_paths[2][64];

static inline void fuzz_remove_files(void) {
    for (int slot = 0; slot < 2; slot++)
        if (fuzz_paths[slot][0]) unlink(fuzz_paths[slot]);
}

/* Writes bytes to /tmp/tapegrad-fuzz-<pid>-<slot> and returns that path (valid until the next
 * call with the same slot; removed at exit); NULL when the file cannot be written. */
static inline const char *fuzz_file(int slot, const uint8_t *bytes, size_t n) {
    char *path = fuzz_paths[slot];
    if (!fuzz_paths[0][0] && !fuzz_paths[1][0]) atexit(fuzz_remove_files);
    snprintf(path, sizeof fuzz_paths[slot], "/tmp/tapegrad-fuzz-%d-%d", (int)getpid(), slot);
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    size_t written = n ? fwrite(bytes, 1, n, f) : 0;
    if (fclose(f) != 0 || written != n) return NULL;
    return path;
}

#endif
