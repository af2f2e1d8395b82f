/* cli/model_check.h — the built-in models checked end to end by `tapegrad gradcheck`. */
#ifndef TAPEGRAD_CLI_MODEL_CHECK_H
#define TAPEGRAD_CLI_MODEL_CHECK_H

#include <stdio.h>

#include "tapegrad.h"

/* Checks every built-in model's loss (first order; order 2: also J v and H v), one row each on
 * out; returns the number that failed. */
int tgc_check_models(int order, FILE *out);

#endif
