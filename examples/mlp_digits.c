/*
 * examples/mlp_digits.c — train an MLP on the bundled digits (8x8 images, 10 classes) and
 * report test accuracy: the whole training loop with modules, an optimizer and a batcher.
 *
 *   ./mlp_digits [EPOCHS]     (default 30)
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "tapegrad.h"

static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int fail(tg_ctx *ctx) {
    fprintf(stderr, "error: %s\n", tg_errmsg(ctx));
    return 1;
}

int main(int argc, char **argv) {
    int epochs = argc > 1 ? atoi(argv[1]) : 30;
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);

    /* data: 1,797 images, 20% held out (the split is seeded) */
    tg_dataset *digits = tg_dataset_digits(ctx), *train = NULL, *test = NULL;
    if (!digits || tg_dataset_split(digits, 0.2, 42, &train, &test) != TG_OK) return fail(ctx);

    /* model: 64 -> 128 -> 128 -> 10, ReLU, He initialisation */
    tg_mlp_config config = {.in = 64, .out = 10, .width = 128, .depth = 3,
                            .activation = TG_ACT_RELU, .init = tg_init_he(TG_ACT_RELU), .seed = 7};
    tg_module *mlp = tg_mlp_new(ctx, "mlp", &config);
    tg_optimizer_config adam = {.kind = TG_OPT_ADAM, .lr = 1e-3f};
    tg_optimizer *opt = tg_optimizer_new_module(mlp, &adam); /* every parameter of the MLP */
    tg_batcher *batches = tg_batcher_new(train, 32, true, false, 1);
    if (!mlp || !opt || !batches) return fail(ctx);

    double start = seconds();
    for (int epoch = 1; epoch <= epochs; epoch++) {
        double loss_sum = 0;
        int steps = 0;
        tg_tensor *x, *y;
        while (tg_tape_reset(tape), tg_batcher_next(batches, tape, &x, &y)) {
            tg_tensor *loss = tg_cross_entropy(tape, tg_module_forward(mlp, tape, x), y);
            if (!loss || tg_backward(tape, loss) != TG_OK) return fail(ctx);
            tg_optimizer_step(opt);
            tg_optimizer_zero_grad(opt);
            loss_sum += loss->data[0];
            steps++;
        }
        if (epoch % 5 == 0 || epoch == epochs)
            printf("epoch %3d  train loss %.4f\n", epoch, loss_sum / steps);
    }
    double elapsed = seconds() - start;

    /* evaluation: the whole test set in one batch, nothing recorded */
    tg_tape_reset(tape);
    tg_no_grad_begin(tape);
    tg_module_set_training(mlp, false);
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(test->count, 64), test->x);
    tg_tensor *y = tg_tape_from_data(tape, TG_SHAPE(test->count), test->y);
    float accuracy = tg_accuracy(tg_module_forward(mlp, tape, x), y);
    tg_no_grad_end(tape);
    printf("test accuracy %.2f%% on %lld images; training took %.2f s (%d epochs)\n",
           100 * accuracy, (long long)test->count, elapsed, epochs);

    tg_batcher_free(batches);
    tg_optimizer_free(opt);
    tg_module_free(mlp);
    tg_dataset_free(digits);
    tg_dataset_free(train);
    tg_dataset_free(test);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
    return 0;
}
