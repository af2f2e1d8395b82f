/*
 * bench/bench_native.c — what calling a kernel through libffi costs: the same tiny kernel
 * (y = a*x on 4 floats, so dispatch dominates) registered once as a native op (libffi) and
 * once with the built-in calling convention, each called 1,000 times per tape step, forward
 * only and forward+backward. Also the cost of the by-name call (tg_call) over tg_call_id.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "tapegrad.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the kernel, as a plain C function pair (native) ---- */
static void scale_forward(const float *x, int64_t n, float *y, int64_t n_out, float a) {
    (void)n_out;
    for (int64_t i = 0; i < n; i++) y[i] = a * x[i];
}

static void scale_backward(const float *x, int64_t n, const float *y, const float *dy,
                           int64_t n_out, float *dx, float a) {
    (void)x, (void)y, (void)n_out;
    if (dx)
        for (int64_t i = 0; i < n; i++) dx[i] += a * dy[i];
}

/* ---- the same kernel through the built-in convention ---- */
static tg_status same_shape(const tg_op_call *call, tg_shape *out) {
    out->ndim = call->inputs[0]->ndim;
    for (int d = 0; d < TG_MAX_DIMS; d++) out->dims[d] = call->inputs[0]->shape[d];
    return TG_OK;
}

static tg_status direct_forward(tg_op_call *call) {
    scale_forward(call->inputs[0]->data, call->inputs[0]->size, call->output->data,
                  call->output->size, call->attrs[0].f32);
    return TG_OK;
}

static tg_status direct_backward(const tg_op_call *call) {
    scale_backward(call->inputs[0]->data, call->inputs[0]->size, call->output->data,
                   call->output->grad, call->output->size, call->inputs[0]->grad, call->attrs[0].f32);
    return TG_OK;
}

#define CALLS 1000
#define ROUNDS 300

typedef enum { BY_ID, BY_NAME } call_style;

/* Median ns per op call over ROUNDS tape steps of CALLS chained calls. */
static double ns_per_call(tg_ctx *ctx, tg_tape *tape, int id, const char *name, call_style style,
                          bool backward) {
    tg_tensor *x = tg_zeros(ctx, TG_SHAPE(4));
    tg_fill(x, 1.0f);
    tg_set_requires_grad(x, true);
    static double samples[ROUNDS];
    tg_attr_value attr = {.f32 = 1.0001f};
    tg_named_attr named = TG_F32("a", 1.0001f);
    for (int r = 0; r < ROUNDS; r++) {
        tg_tape_reset(tape);
        double start = now_seconds();
        tg_tensor *y = x;
        for (int i = 0; i < CALLS; i++)
            y = style == BY_ID ? tg_call_id(tape, id, &y, 1, &attr, 1) : tg_call(tape, name, &y, 1, &named, 1);
        if (!y || (backward && tg_backward(tape, tg_sum(tape, y)) != TG_OK)) {
            fprintf(stderr, "bench: %s\n", tg_errmsg(ctx));
            exit(1);
        }
        samples[r] = (now_seconds() - start) * 1e9 / CALLS;
        tg_zero_grad(x);
    }
    for (int i = 1; i < ROUNDS; i++) /* insertion sort: small */
        for (int j = i; j > 0 && samples[j] < samples[j - 1]; j--) {
            double t = samples[j];
            samples[j] = samples[j - 1];
            samples[j - 1] = t;
        }
    return samples[ROUNDS / 2];
}

int main(void) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    int native = tg_op_register_native(ctx, "scale_native", "x -> y; a:f32",
                                       (tg_native_fn)scale_forward, (tg_native_fn)scale_backward, NULL);
    tg_op_def def = {"scale_direct", 1, "a:f32", same_shape, direct_forward, direct_backward, NULL, NULL};
    int direct = tg_op_register(ctx, &def);
    if (native < 0 || direct < 0) {
        fprintf(stderr, "bench: %s\n", tg_errmsg(ctx));
        return 1;
    }
    for (int pass = 0; pass < 2; pass++) {
        bool backward = pass == 1;
        double d = ns_per_call(ctx, tape, direct, "scale_direct", BY_ID, backward);
        double n = ns_per_call(ctx, tape, native, "scale_native", BY_ID, backward);
        double by_name = ns_per_call(ctx, tape, native, "scale_native", BY_NAME, backward);
        printf("%-17s built-in convention %6.1f ns/call, native via libffi %6.1f ns/call "
               "(+%.1f ns), by name (tg_call) %6.1f ns/call\n",
               backward ? "forward+backward:" : "forward only:", d, n, n - d, by_name);
    }
    tg_tape_free(tape);
    tg_ctx_free(ctx);
    return 0;
}
