/* tests/fuzz/fuzz_safetensors.c — tg_load_safetensors on any bytes: an error or a load, never a
 * crash, and a failed load leaves its targets unchanged. */
#include <string.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tensor *t[3] = {tg_set_label(tg_full(ctx, TG_SHAPE(2, 3), 7.0f), "w"),
                       tg_set_label(tg_full(ctx, TG_SHAPE(4), 7.0f), "b"),
                       tg_set_label(tg_full(ctx, 0, NULL, 7.0f), "s")};
    const char *path = fuzz_file(0, data, size);
    if (path && tg_load_safetensors(ctx, path, t, 3) != TG_OK)
        for (int i = 0; i < 3; i++)
            for (int64_t k = 0; k < t[i]->size; k++)
                if (t[i]->data[k] != 7.0f) __builtin_trap(); /* a failed load changed a target */
    tg_ctx_free(ctx);
    return 0;
}
