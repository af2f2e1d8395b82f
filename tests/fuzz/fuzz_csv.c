/* tests/fuzz/fuzz_csv.c — tg_dataset_read_csv on any bytes: a data set or an error. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tg_ctx *ctx = tg_ctx_new();
    const char *path = fuzz_file(0, data, size);
    int label_column = size ? (int)(data[0] % 5) - 2 : -1; /* first, last, ... and out of range */
    if (path) tg_dataset_free(tg_dataset_read_csv(ctx, path, label_column));
    tg_ctx_free(ctx);
    return 0;
}
