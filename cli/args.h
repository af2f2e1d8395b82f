/* cli/args.h — arguments: numbers (range- and errno-checked), --opt=value, did you mean. */
#ifndef TAPEGRAD_CLI_ARGS_H
#define TAPEGRAD_CLI_ARGS_H

#include <stdbool.h>
#include <stddef.h>

/* A whole number from low to high in value (decimal, nothing after it): 0 with *out set, or
 * EXIT_USAGE after "tapegrad <command>: <flag> needs a whole number from low to high, got
 * '<value>'" (saying "out of range" when it overflows). */
int parse_whole_arg(const char *command, const char *flag, const char *value, long low, long high,
                    long *out);

/* The choice within two edits of word (one for words shorter than 6 characters; a swap of
 * neighbours is one edit), the nearest first; NULL when none is that near. */
const char *closest_word(const char *word, const char *const *choices, int n);
/* "; did you mean '<closest>'?" in buf, or "" when no choice is near: for the end of an
 * "unknown option" message. Returns buf. */
const char *did_you_mean(const char *word, const char *const *choices, int n, char *buf, size_t size);

/* The arguments with every "--opt=value" split into "--opt" and "value" (what getopt_long
 * accepts too). argv points into the caller's strings and into names (the copied "--opt"s). */
typedef struct split_args {
    int argc;
    char **argv;
    char **names;
    int n_names;
} split_args;

/* 0, or 1 after printing why (out of memory). Free with split_args_free. */
int split_equals(int argc, char **argv, split_args *out);
void split_args_free(split_args *args);

/* --data fashion-mnist[:DIR] (train and study): whether value is it; *dir its DIR, or NULL for
 * the Debian package's directory. */
bool fashion_mnist_arg(const char *value, const char **dir);

#endif
