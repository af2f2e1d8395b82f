/*
 * cli/inspect.c — `tapegrad inspect FILE`: what a safetensors checkpoint holds (each tensor's
 * name, dtype and shape, and the totals), read from its header alone, without loading a model:
 * what to look at before a --load that does not fit, or a --load-partial.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/report.h"

static int inspect_usage(FILE *out, int status) {
    fprintf(out, "usage: tapegrad inspect FILE\n\n"
                 "Lists the tensors of a safetensors file (name, dtype, shape, elements), sorted by\n"
                 "name, and their totals; the file is validated as --load validates it.\n");
    return status;
}

static void print_shape(const tg_safetensors_entry *e) {
    char text[160] = "[";
    size_t used = 1;
    for (int d = 0; d < e->ndim && d < TG_SAFETENSORS_MAX_DIMS; d++)
        used += (size_t)snprintf(text + used, sizeof text - used, "%s%lld", d ? ", " : "", (long long)e->shape[d]);
    snprintf(text + used, sizeof text - used, "%s]", e->ndim > TG_SAFETENSORS_MAX_DIMS ? ", ..." : "");
    printf("  %-20s", text);
}

int run_inspect(int argc, char **argv) {
    if (argc == 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0))
        return inspect_usage(stdout, 0);
    if (argc != 1 || argv[0][0] == '-') {
        fprintf(stderr, "tapegrad inspect: expected one FILE%s\n", argc ? ", got other arguments" : "");
        return inspect_usage(stderr, EXIT_USAGE);
    }
    tg_ctx *ctx = tg_ctx_new();
    if (!ctx) {
        fprintf(stderr, "tapegrad inspect: out of memory\n");
        return 1;
    }
    int n = tg_safetensors_list(ctx, argv[0], NULL, 0);
    tg_safetensors_entry *entries = n > 0 ? calloc((size_t)n, sizeof *entries) : NULL;
    if (n < 0 || (n > 0 && (!entries || tg_safetensors_list(ctx, argv[0], entries, n) != n))) {
        fprintf(stderr, "tapegrad inspect: %s\n", n < 0 || entries ? tg_errmsg(ctx) : "out of memory");
        free(entries);
        tg_ctx_free(ctx);
        return 1;
    }
    int64_t elements = 0, bytes = 0;
    size_t width = 4;
    for (int i = 0; i < n; i++) width = strlen(entries[i].name) > width ? strlen(entries[i].name) : width;
    printf("%-*s  %-5s  %-20s  %s\n", (int)width, "name", "dtype", "shape", "elements");
    for (int i = 0; i < n; i++) {
        printf("%-*s  %-5s", (int)width, entries[i].name, entries[i].dtype);
        print_shape(&entries[i]);
        printf("  %lld\n", (long long)entries[i].elements);
        elements += entries[i].elements;
        bytes += entries[i].bytes;
    }
    printf("%s: %d tensors, %lld elements, %lld bytes of data\n", argv[0], n, (long long)elements,
           (long long)bytes);
    free(entries);
    tg_ctx_free(ctx);
    return 0;
}
