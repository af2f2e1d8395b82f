/*
 * examples/residual.c — why residual connections let deep nets train: a 50-layer tanh MLP on
 * the digits, once plain and once with identity skips (same layers, same initialisation), side
 * by side: the gradient norm reaching the first layer, and the training loss.
 *
 *   ./residual [STEPS]      (default 300)
 */
#include <stdio.h>
#include <stdlib.h>

#include "tapegrad.h"

#define BLOCKS 24 /* 2 linear layers each, plus the input and output layers: 50 */
#define BATCH 64
#define MAX_PARAMS (8 * BLOCKS + 8)

typedef struct run {
    const char *name;
    tg_module *net;
    tg_optimizer *opt;
    tg_tensor *first_weight;
    double first_norm_at_start;
    float loss;
} run;

static double grad_norm(const tg_tensor *t) {
    tg_stats stats;
    tg_stats_compute(t->grad, t->size, &stats);
    return stats.l2_norm;
}

/* One SGD step of one net on the batch; returns false on error. */
static bool train_step(run *r, tg_tape *tape, tg_tensor *x, tg_tensor *y, int step) {
    tg_tape_reset(tape);
    tg_tensor *loss = tg_cross_entropy(tape, tg_module_forward(r->net, tape, x), y);
    if (!loss || tg_backward(tape, loss) != TG_OK) return false;
    if (step == 0) r->first_norm_at_start = grad_norm(r->first_weight);
    r->loss = loss->data[0];
    tg_optimizer_step(r->opt);
    tg_optimizer_zero_grad(r->opt);
    return true;
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 300;
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    tg_dataset *digits = tg_dataset_digits(ctx);
    tg_batcher *batches = digits ? tg_batcher_new(digits, BATCH, true, true, 1) : NULL;
    /* the batch is copied into persistent tensors so both nets, each on its own step, see it */
    tg_tensor *x = tg_zeros(ctx, TG_SHAPE(BATCH, 64)), *y = tg_zeros(ctx, TG_SHAPE(BATCH));
    if (!batches || !x || !y) goto fail;

    run runs[2] = {{.name = "plain"}, {.name = "residual"}};
    for (int r = 0; r < 2; r++) {
        tg_resmlp_config c = {.in = 64, .out = 10, .width = 64, .blocks = BLOCKS,
                              .activation = TG_ACT_TANH, .init = tg_init_xavier(TG_ACT_TANH),
                              .skip = r == 1, .seed = 11};
        tg_tensor *params[MAX_PARAMS];
        runs[r].net = tg_resmlp_new(ctx, runs[r].name, &c);
        if (!runs[r].net) goto fail;
        int n = tg_module_params(runs[r].net, params, MAX_PARAMS);
        tg_optimizer_config sgd = {.kind = TG_OPT_SGD, .lr = 0.01f, .momentum = 0.9f};
        runs[r].opt = tg_optimizer_new(ctx, params, n, &sgd);
        runs[r].first_weight = tg_module_find_param(runs[r].net, r ? "residual.in.weight" : "plain.in.weight");
        if (!runs[r].opt || !runs[r].first_weight) goto fail;
    }

    printf("50-layer tanh MLP on digits, Xavier init, SGD 0.01 momentum 0.9, batch %d\n", BATCH);
    for (int step = 0; step < steps; step++) {
        tg_tensor *bx, *by;
        tg_tape_reset(tape);
        if (!tg_batcher_next(batches, tape, &bx, &by)) tg_batcher_next(batches, tape, &bx, &by);
        tg_copy_in(x, bx->data, bx->size);
        tg_copy_in(y, by->data, by->size);
        for (int r = 0; r < 2; r++)
            if (!train_step(&runs[r], tape, x, y, step)) goto fail;
        if (step == 0 || (step + 1) % 50 == 0)
            printf("step %4d  loss: plain %.4f  residual %.4f\n", step + 1, runs[0].loss, runs[1].loss);
    }
    printf("first-layer gradient norm at step 1: plain %.3e, residual %.3e (ratio %.3g)\n",
           runs[0].first_norm_at_start, runs[1].first_norm_at_start,
           runs[1].first_norm_at_start / runs[0].first_norm_at_start);
    for (int r = 0; r < 2; r++) {
        tg_optimizer_free(runs[r].opt);
        tg_module_free(runs[r].net);
    }
    tg_batcher_free(batches);
    tg_dataset_free(digits);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
    return 0;
fail:
    fprintf(stderr, "error: %s\n", tg_errmsg(ctx));
    return 1;
}
