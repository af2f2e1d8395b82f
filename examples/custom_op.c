/*
 * examples/custom_op.c — turn two plain C functions into a differentiable op, in-process.
 *
 * The op is the smooth L1 ("Huber") penalty, elementwise: 0.5 x^2 / delta for |x| < delta,
 * |x| - 0.5 delta beyond. Its kernels are ordinary C with their own parameter lists; the
 * signature string tells tapegrad how to call them (through libffi), and after that the op is
 * used by name like any built-in, recorded on the tape and differentiated.
 */
#include <math.h>
#include <stdio.h>

#include "tapegrad.h"

/* forward: (input, its size, output, its size, then the attributes in signature order) */
static void huber_forward(const float *x, int64_t n, float *y, int64_t n_out, float delta) {
    (void)n_out;
    for (int64_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        y[i] = a < delta ? 0.5f * x[i] * x[i] / delta : a - 0.5f * delta;
    }
}

/* backward: (input, size, output, output gradient, output size, input gradient, attributes);
 * it ADDS into dx, which is NULL when the input needs no gradient */
static void huber_backward(const float *x, int64_t n, const float *y, const float *dy,
                           int64_t n_out, float *dx, float delta) {
    (void)y, (void)n_out;
    if (!dx) return;
    for (int64_t i = 0; i < n; i++) {
        float slope = fabsf(x[i]) < delta ? x[i] / delta : (x[i] > 0 ? 1.0f : -1.0f);
        dx[i] += dy[i] * slope;
    }
}

int main(void) {
    tg_ctx *ctx = tg_ctx_new();
    tg_native_opts opts = {0};
    opts.example_attrs[0].f32 = 1.0f; /* delta used when tapegrad gradient-checks the op */
    int id = tg_op_register_native(ctx, "huber", "x -> y; delta:f32", (tg_native_fn)huber_forward,
                                   (tg_native_fn)huber_backward, &opts);
    if (id < 0) {
        fprintf(stderr, "register: %s\n", tg_errmsg(ctx));
        return 1;
    }

    /* Use it by name: minimise sum(huber(w - target)) by gradient descent. */
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *w = tg_set_label(tg_from_data(ctx, TG_SHAPE(3), (float[]){5, -4, 0.2f}), "w");
    tg_set_requires_grad(w, true);
    const float target[3] = {1, 2, 3};
    for (int step = 0; step < 60; step++) {
        tg_tape_reset(tape);
        tg_tensor *diff = tg_sub(tape, w, tg_tape_from_data(tape, TG_SHAPE(3), target));
        tg_tensor *penalty = tg_call(tape, "huber", &diff, 1, &TG_F32("delta", 0.5f), 1);
        tg_tensor *loss = tg_sum(tape, penalty);
        if (!loss || tg_backward(tape, loss) != TG_OK) {
            fprintf(stderr, "step %d: %s\n", step, tg_errmsg(ctx));
            return 1;
        }
        if (step % 20 == 0) printf("step %2d  loss %.4f\n", step, loss->data[0]);
        for (int i = 0; i < 3; i++) w->data[i] -= 0.2f * w->grad[i];
        tg_zero_grad(w);
    }
    printf("w = [%.3f, %.3f, %.3f] (target [1, 2, 3])\n", w->data[0], w->data[1], w->data[2]);

    tg_gradcheck_result check;
    if (tg_gradcheck(ctx, id, 0, NULL, &check) == TG_OK)
        printf("gradient check of huber: %s (max relative error %.2e over %lld elements)\n",
               check.passed ? "passed" : "FAILED", check.max_rel_err, (long long)check.n_checked);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
    return 0;
}
