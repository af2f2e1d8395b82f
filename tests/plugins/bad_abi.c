/* tests/plugins/bad_abi.c — a plugin built for another plugin ABI: must be refused. */
#include "tapegrad.h"

TG_PLUGIN_EXPORT const int tapegrad_plugin_abi = TG_PLUGIN_ABI + 1;

TG_PLUGIN_EXPORT tg_status tapegrad_plugin_init(tg_ctx *ctx) {
    (void)ctx;
    return TG_OK;
}
