/*
 * examples/plugin_swish.c — a tapegrad plugin: the op swish(x; beta) = x * sigmoid(beta x) as
 * two plain C functions, and a hook exported by name.
 *
 * Built by `zig build plugins` into libplugin_swish.so; no tapegrad library is linked in: the
 * tg_* calls resolve against the program that loads it. Try it:
 *   tapegrad ops --plugin zig-out/lib/libplugin_swish.so
 *   tapegrad gradcheck --plugin zig-out/lib/libplugin_swish.so swish
 *   tapegrad demo --plugin zig-out/lib/libplugin_swish.so --hook 'fc*.weight:print_norm'
 */
#include <math.h>
#include <stdio.h>

#include "tapegrad.h"

static void swish_forward(const float *x, int64_t n, float *y, int64_t n_out, float beta) {
    (void)n_out;
    for (int64_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-beta * x[i]));
}

/* d/dx [x s(bx)] = s + b x s (1 - s), with s = sigmoid(b x) */
static void swish_backward(const float *x, int64_t n, const float *y, const float *dy,
                           int64_t n_out, float *dx, float beta) {
    (void)y, (void)n_out;
    if (!dx) return;
    for (int64_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-beta * x[i]));
        dx[i] += dy[i] * (s + beta * x[i] * s * (1.0f - s));
    }
}

/* A diagnostic a user adds without rebuilding tapegrad: print every hooked gradient's norm. */
static tg_status print_norm(tg_ctx *ctx, const tg_hook_event *event, void *user) {
    (void)ctx, (void)user;
    tg_stats stats;
    tg_stats_compute(event->values, event->size, &stats);
    fprintf(stderr, "[print_norm] step %lld %-20s |grad| = %.4e\n", (long long)event->step,
            event->name, stats.l2_norm);
    return TG_OK;
}

TG_PLUGIN_DEFINE_ABI;

TG_PLUGIN_EXPORT tg_status tapegrad_plugin_init(tg_ctx *ctx) {
    tg_native_opts opts = {0};
    opts.example_attrs[0].f32 = 1.5f; /* beta for `tapegrad gradcheck swish` */
    if (tg_op_register_native(ctx, "swish", "x -> y; beta:f32", (tg_native_fn)swish_forward,
                              (tg_native_fn)swish_backward, &opts) < 0)
        return tg_errcode(ctx);
    return tg_hook_export(ctx, "print_norm", print_norm, NULL);
}
