/* tests/fuzz/fuzz_idx.c — tg_dataset_read_idx on any pair of files: the first two bytes say
 * where the images end and the labels begin. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t cut = ((size_t)data[0] << 8 | data[1]) % (size - 1) + 2;
    tg_ctx *ctx = tg_ctx_new();
    const char *images = fuzz_file(0, data + 2, cut - 2), *labels = fuzz_file(1, data + cut, size - cut);
    if (images && labels) tg_dataset_free(tg_dataset_read_idx(ctx, images, labels));
    tg_ctx_free(ctx);
    return 0;
}
