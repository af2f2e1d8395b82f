/* tests/zig_consumer/main.c — the smallest use of tapegrad from a Zig-built C program: fit
 * y = 2x with one weight. It also touches a data set, a module and the recorder, so a package
 * that left out data/, models/ or diagnostics/ (build.zig.zon's .paths) fails to link. */
#include <stdio.h>

#include "tapegrad.h"

int main(void) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *w = tg_scalar(ctx, 1.0f);
    tg_set_requires_grad(w, true);
    tg_optimizer_config sgd = {.kind = TG_OPT_SGD, .lr = 0.05f};
    tg_optimizer *opt = tg_optimizer_new(ctx, &w, 1, &sgd);
    float first = 0, last = 0;
    for (int step = 0; step < 100; step++) {
        tg_tape_reset(tape);
        tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(2), (float[]){1, 0});
        tg_tensor *y = tg_tape_from_data(tape, TG_SHAPE(2), (float[]){2, 0});
        tg_tensor *loss = tg_mse(tape, tg_mul(tape, x, w), y);
        if (!loss || tg_backward(tape, loss) != TG_OK) {
            fprintf(stderr, "consumer: %s\n", tg_errmsg(ctx));
            return 1;
        }
        if (step == 0) first = loss->data[0];
        last = loss->data[0];
        tg_optimizer_step(opt);
        tg_optimizer_zero_grad(opt);
    }
    printf("consumer: w 1 -> %.3f (y = 2x), loss %.2f -> %.1e after 100 steps\n", w->data[0], first, last);
    tg_dataset *spirals = tg_dataset_spirals(ctx, 8, 0.0f, 1);
    tg_module *linear = tg_linear_new(ctx, "lin", 2, 3, true, NULL, 1);
    tg_recorder *recorder = tg_recorder_new(ctx, 4);
    if (!spirals || !linear || !recorder) {
        fprintf(stderr, "consumer: %s\n", tg_errmsg(ctx));
        return 1;
    }
    printf("consumer: %lld spirals, %d parameter tensors\n", (long long)spirals->count,
           tg_module_param_count(linear));
    tg_recorder_free(recorder);
    tg_module_free(linear);
    tg_dataset_free(spirals);
    tg_optimizer_free(opt);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
    return 0;
}
