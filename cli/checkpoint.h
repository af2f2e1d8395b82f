/*
 * cli/checkpoint.h — --load: a checkpoint into the model the options built.
 */
#ifndef TAPEGRAD_CLI_CHECKPOINT_H
#define TAPEGRAD_CLI_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>

#include "tapegrad.h"

/* Loads path into state[0..n): the file must hold every tensor of the model and nothing else
 * (shapes are checked by the load). Otherwise false, and `why` says which tensors are missing
 * and which are extra (counts and the first few names); with `partial`, what matches is loaded
 * instead, and `note` says what was left as initialised and what was ignored ("" when the file
 * fitted). false with why on any error of the file. */
bool checkpoint_load(tg_ctx *ctx, const char *path, tg_tensor *const *state, int n, bool partial,
                     char *why, size_t why_size, char *note, size_t note_size);

#endif
