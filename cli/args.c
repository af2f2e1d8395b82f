/* cli/args.c — what every command does with its arguments: numbers (strtol alone turns an
 * overflow into LONG_MAX, and `demo --steps 2^63` then ran for ever: errno and the range are
 * checked as well), "--opt=value" as "--opt value", and "did you mean" for typos. */
#include "cli/args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Optimal string alignment distance (edits, with a swap of two neighbours as one edit: the
 * commonest typo, "--stpes"), for words of up to 63 characters. */
static int distance(const char *a, const char *b) {
    size_t n = strlen(a), m = strlen(b);
    if (n > 63 || m > 63) return 1 << 20;
    int d[64][64];
    for (size_t i = 0; i <= n; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= m; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[n][m];
}

const char *closest_word(const char *word, const char *const *choices, int n) {
    const char *best = NULL;
    int best_distance = 1 << 20, len = word ? (int)strlen(word) : 0;
    /* two edits for words of 6 or more characters, one for shorter ones: "--lr" is not "--hook" */
    int most = len >= 6 ? 2 : 1;
    for (int i = 0; word && i < n; i++) {
        int d = distance(word, choices[i]);
        if (d < best_distance) best_distance = d, best = choices[i];
    }
    return best_distance <= most ? best : NULL;
}

const char *did_you_mean(const char *word, const char *const *choices, int n, char *buf, size_t size) {
    const char *near = closest_word(word, choices, n);
    if (near) snprintf(buf, size, "; did you mean '%s'?", near);
    else if (size) buf[0] = '\0';
    return buf;
}

int split_equals(int argc, char **argv, split_args *out) {
    *out = (split_args){0};
    int extra = 0;
    for (int i = 0; i < argc; i++) extra += strncmp(argv[i], "--", 2) == 0 && strchr(argv[i], '=');
    out->argv = calloc((size_t)(argc + extra + 1), sizeof *out->argv);
    out->names = extra ? calloc((size_t)extra, sizeof *out->names) : NULL;
    if (!out->argv || (extra && !out->names)) {
        split_args_free(out);
        fprintf(stderr, "tapegrad: out of memory\n");
        return 1;
    }
    for (int i = 0; i < argc; i++) {
        char *eq = strncmp(argv[i], "--", 2) == 0 ? strchr(argv[i], '=') : NULL;
        if (!eq) {
            out->argv[out->argc++] = argv[i];
            continue;
        }
        char *name = strndup(argv[i], (size_t)(eq - argv[i]));
        if (!name) {
            split_args_free(out);
            fprintf(stderr, "tapegrad: out of memory\n");
            return 1;
        }
        out->names[out->n_names++] = name;
        out->argv[out->argc++] = name;
        out->argv[out->argc++] = eq + 1; /* "--steps=" gives an empty value, refused as such */
    }
    return 0;
}

void split_args_free(split_args *args) {
    for (int i = 0; i < args->n_names; i++) free(args->names[i]);
    free(args->names);
    free(args->argv);
    *args = (split_args){0};
}

bool fashion_mnist_arg(const char *value, const char **dir) {
    static const char word[] = "fashion-mnist";
    size_t n = sizeof word - 1;
    if (!value || strncmp(value, word, n) != 0 || (value[n] && (value[n] != ':' || !value[n + 1]))) return false;
    *dir = value[n] ? value + n + 1 : NULL;
    return true;
}
