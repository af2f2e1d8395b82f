/*
 * cli/memory.h — a request that could never fit is refused before anything is built: the
 * parameters a model's config implies, times what training keeps per parameter, against the
 * machine's physical memory.
 */
#ifndef TAPEGRAD_CLI_MEMORY_H
#define TAPEGRAD_CLI_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli/study.h"

/* Whether training `c` (in input features, out outputs, image [C, H, W] for the CNNs) may fit:
 * false, with why = "<model> needs at least X GB (...), more than this machine's Y GB of
 * memory", when a lower bound of its memory (parameters x (2 + optimizer slots)) is more than
 * the physical memory. */
bool model_fits_memory(const run_config *c, int64_t in, int64_t out, const int64_t *image,
                       char *why, size_t size);

#endif
