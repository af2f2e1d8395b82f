/*
 * models/sizes.c — the sizes layer constructors derive from their configs (stacked gate rows,
 * a flattened image, a widened stage), computed with checked arithmetic before any tensor is
 * made: a config of absurd widths is refused naming its fields, never wrapped into a nonsense
 * (or negative) shape that a later check happens to refuse.
 */
#include "models/models.h"

int64_t tgi_layer_size(tg_ctx *ctx, const char *layer, const char *name, const char *a_what,
                       int64_t a, const char *b_what, int64_t b) {
    int64_t size;
    if (a >= 1 && b >= 1 && tgi_mul_ok(a, b, &size) && size <= TGI_MAX_ELEMENTS) return size;
    tgi_error(ctx, TG_ERR_INVALID, "%s '%s': %s %lld x %s %lld is %s", layer, name, a_what,
              (long long)a, b_what, (long long)b,
              a < 1 || b < 1 ? "not a size (both must be >= 1)"
                             : "more than 2^40, the most elements a tensor holds");
    return -1;
}
