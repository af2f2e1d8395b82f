/*
 * examples/lstm_adding.c — the adding problem, the classic test of long-range memory: a
 * sequence of T (value, marker) pairs, the target is the sum of the two marked values. Always
 * answering 1 scores MSE ~0.167; a recurrent net must carry a value across up to T steps.
 *
 *   ./lstm_adding [rnn|lstm|gru] [T] [STEPS]      (default lstm 50 1500)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tapegrad.h"

#define HIDDEN 32
#define BATCH 64

static int fail(tg_ctx *ctx) {
    fprintf(stderr, "error: %s\n", tg_errmsg(ctx));
    return 1;
}

int main(int argc, char **argv) {
    const char *kind_name = argc > 1 ? argv[1] : "lstm";
    int64_t length = argc > 2 ? atoll(argv[2]) : 50, steps = argc > 3 ? atoll(argv[3]) : 1500;
    tg_rnn_kind kind = strcmp(kind_name, "rnn") == 0 ? TG_RNN_TANH
                       : strcmp(kind_name, "gru") == 0 ? TG_RNN_GRU : TG_RNN_LSTM;
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);

    tg_dataset *train = tg_dataset_adding(ctx, 20000, length, 1);
    tg_dataset *test = tg_dataset_adding(ctx, 1000, length, 2);
    tg_rnn_config rc = tg_rnn_defaults(kind, 2, HIDDEN);
    tg_module *rnn = tg_rnn_new(ctx, kind_name, &rc);
    tg_module *head = tg_linear_new(ctx, "head", HIDDEN, 1, true, NULL, 3);
    if (!train || !test || !rnn || !head) return fail(ctx);

    /* two modules, one optimizer: their parameters in one array (-1: it is too small) */
    tg_tensor *params[8];
    int n_rnn = tg_module_params(rnn, params, 8);
    int n_head = n_rnn < 0 ? -1 : tg_module_params(head, params + n_rnn, 8 - n_rnn);
    if (n_rnn < 0 || n_head < 0) return fail(ctx);
    int n = n_rnn + n_head;
    tg_optimizer_config adam = {.kind = TG_OPT_ADAM, .lr = 1e-2f};
    tg_optimizer *opt = tg_optimizer_new(ctx, params, n, &adam);
    tg_batcher *batches = tg_batcher_new(train, BATCH, true, true, 4);
    if (!opt || !batches) return fail(ctx);

    printf("%s, hidden %d, adding problem T = %lld (baseline MSE 0.167)\n", kind_name, HIDDEN,
           (long long)length);
    clock_t start = clock();
    for (int64_t step = 1; step <= steps; step++) {
        tg_tensor *x, *y;
        tg_tape_reset(tape);
        if (!tg_batcher_next(batches, tape, &x, &y)) tg_batcher_next(batches, tape, &x, &y);
        tg_tensor *pred = tg_module_forward(head, tape, tg_module_forward(rnn, tape, x));
        tg_tensor *loss = tg_mse(tape, tg_reshape(tape, pred, TG_SHAPE(BATCH)), y);
        if (!loss || tg_backward(tape, loss) != TG_OK) return fail(ctx);
        double norm;
        tg_clip_grad_norm(params, n, 1.0, 2.0, false, &norm); /* the usual remedy for RNNs */
        tg_optimizer_step(opt);
        tg_optimizer_zero_grad(opt);
        if (step % 100 == 0) printf("step %5lld  train MSE %.4f\n", (long long)step, loss->data[0]);
    }

    tg_tape_reset(tape);
    tg_no_grad_begin(tape);
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(test->count, length, 2), test->x);
    tg_tensor *y = tg_tape_from_data(tape, TG_SHAPE(test->count), test->y);
    tg_tensor *pred = tg_module_forward(head, tape, tg_module_forward(rnn, tape, x));
    tg_tensor *mse = tg_mse(tape, tg_reshape(tape, pred, TG_SHAPE(test->count)), y);
    if (!mse) return fail(ctx);
    printf("test MSE %.4f (baseline 0.167) after %lld steps, %.1f s\n", mse->data[0],
           (long long)steps, (double)(clock() - start) / CLOCKS_PER_SEC);

    tg_batcher_free(batches);
    tg_optimizer_free(opt);
    tg_module_free(rnn);
    tg_module_free(head);
    tg_dataset_free(train);
    tg_dataset_free(test);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
    return 0;
}
