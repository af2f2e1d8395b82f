/* cli/args.h — numbers from the command line, range- and errno-checked. */
#ifndef TAPEGRAD_CLI_ARGS_H
#define TAPEGRAD_CLI_ARGS_H

/* A whole number from low to high in value (decimal, nothing after it): 0 with *out set, or
 * EXIT_USAGE after "tapegrad <command>: <flag> needs a whole number from low to high, got
 * '<value>'" (saying "out of range" when it overflows). */
int parse_whole_arg(const char *command, const char *flag, const char *value, long low, long high,
                    long *out);

#endif
