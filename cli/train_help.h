/* cli/train_help.h — the text of `tapegrad train --help` (cli/train_help.c). */
#ifndef TAPEGRAD_CLI_TRAIN_HELP_H
#define TAPEGRAD_CLI_TRAIN_HELP_H

#include <stdio.h>

void train_usage(FILE *f);

#endif
