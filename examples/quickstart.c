/*
 * examples/quickstart.c — the smallest complete tapegrad program: fit y = 3x - 1 with a
 * one-weight, one-bias model, by hand-written SGD on a tape.
 *
 *   cc quickstart.c $(pkg-config --cflags --libs tapegrad) -o quickstart && ./quickstart
 */
#include <stdio.h>

#include "tapegrad.h"

int main(void) {
    tg_ctx *ctx = tg_ctx_new();          /* owns parameters and the op registry */
    tg_tape *tape = tg_tape_new(ctx);    /* records one step; reset rewinds it without freeing */

    /* Parameters: persistent tensors that want gradients. */
    tg_tensor *w = tg_set_label(tg_zeros(ctx, TG_SHAPE(1, 1)), "w");
    tg_tensor *b = tg_set_label(tg_zeros(ctx, TG_SHAPE(1)), "b");
    tg_set_requires_grad(w, true);
    tg_set_requires_grad(b, true);

    const float xs[4] = {-1, 0, 1, 2}, ys[4] = {-4, -1, 2, 5};
    for (int step = 0; step < 200; step++) {
        tg_tape_reset(tape);
        tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(4, 1), xs);
        tg_tensor *y = tg_tape_from_data(tape, TG_SHAPE(4, 1), ys);
        tg_tensor *loss = tg_mse(tape, tg_linear(tape, x, w, b), y);
        /* Errors propagate as NULL through the expression: check once, at the end. */
        if (!loss || tg_backward(tape, loss) != TG_OK) {
            fprintf(stderr, "error: %s\n", tg_errmsg(ctx));
            return 1;
        }
        w->data[0] -= 0.1f * w->grad[0];
        b->data[0] -= 0.1f * b->grad[0];
        tg_zero_grad(w);
        tg_zero_grad(b);
        if (step % 50 == 0) printf("step %3d  loss %.6f\n", step, loss->data[0]);
    }
    printf("w = %.4f (want 3), b = %.4f (want -1)\n", w->data[0], b->data[0]);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
    return 0;
}
