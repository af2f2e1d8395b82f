/* tests/plugins/duplicate_op.c — registers an op under a built-in's name: its entry point fails. */
#include "tapegrad.h"

static void copy_forward(const float *x, int64_t n, float *y, int64_t n_out) {
    (void)n_out;
    for (int64_t i = 0; i < n; i++) y[i] = x[i];
}

TG_PLUGIN_DEFINE_ABI;

TG_PLUGIN_EXPORT tg_status tapegrad_plugin_init(tg_ctx *ctx) {
    if (tg_op_register_native(ctx, "relu", "x -> y", (tg_native_fn)copy_forward, NULL, NULL) < 0)
        return tg_errcode(ctx);
    return TG_OK;
}
