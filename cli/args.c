/* cli/args.c — numbers from the command line. strtol alone turns an overflow into LONG_MAX
 * (`demo --steps 2^63` then ran for ever): errno and the range are checked as well. */
#include "cli/args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/study.h"

int parse_whole_arg(const char *command, const char *flag, const char *value, long low, long high,
                    long *out) {
    char *end = NULL;
    errno = 0;
    long v = value && *value ? strtol(value, &end, 10) : 0;
    bool overflow = errno == ERANGE;
    if (value && *value && !*end && !overflow && v >= low && v <= high) {
        *out = v;
        return 0;
    }
    fprintf(stderr, "tapegrad %s: %s needs a whole number from %ld to %ld, got '%s'%s\n", command,
            flag, low, high, value ? value : "", overflow ? " (out of range)" : "");
    return EXIT_USAGE;
}
