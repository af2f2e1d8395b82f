/* cli/lm.h — language models in the tool (cli/lm.c). */
#ifndef TAPEGRAD_CLI_LM_H
#define TAPEGRAD_CLI_LM_H

#include <stdbool.h>

/* Whether --model NAME is a language model (gpt, rnn-lm, lstm-lm, gru-lm): train hands those
 * to run_lm_train. */
bool lm_model_name(const char *name);
/* `tapegrad train --model gpt|rnn-lm|lstm-lm|gru-lm ...` (argv: train's arguments). */
int run_lm_train(int argc, char **argv);
/* `tapegrad params --model gpt ...`: the parameters that model would have (the vocabulary of
 * --data sizes its tables). */
int run_lm_params(int argc, char **argv);
/* `tapegrad sample --load CKPT ...`. */
int run_sample(int argc, char **argv);

#endif
