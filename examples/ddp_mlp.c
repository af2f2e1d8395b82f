/*
 * examples/ddp_mlp.c — data-parallel training of an MLP on the bundled digits over MPI, the
 * way PyTorch's DistributedDataParallel does it: every process holds the whole model, takes
 * its rows of each global batch, and the gradients are averaged by a bucketed all-reduce that
 * starts during the backward pass. Built by `zig build examples` when MPI was found.
 *
 *   mpirun -np 2 ./zig-out/bin/ddp_mlp [STEPS]          (default 300)
 *   (as root in a container: mpirun --allow-run-as-root --oversubscribe -np 2 ...)
 *
 * The same program with -np 1 (or without mpirun) takes the same steps on the whole batch.
 */
#include <stdio.h>
#include <stdlib.h>

#include "tapegrad_dist.h"

#define GLOBAL_BATCH 64

int main(int argc, char **argv) {
    tg_ctx *ctx = tg_ctx_new();
    tg_dist *dist = tg_dist_init(ctx, &argc, &argv); /* MPI_Init, MPI_COMM_WORLD */
    if (!dist) {
        fprintf(stderr, "error: %s\n", tg_errmsg(ctx));
        return 1;
    }
    int steps = argc > 1 ? atoi(argv[1]) : 300;
    int rank = tg_dist_rank(dist), size = tg_dist_size(dist);
    int64_t rows = GLOBAL_BATCH / size; /* this rank's share of every global batch */
    tg_ctx_set_threads(ctx, 1);         /* one core per process */

    /* every rank: the same data split, the same model, the same batches (all seeded) */
    tg_dataset *digits = tg_dataset_digits(ctx), *train = NULL, *test = NULL;
    tg_mlp_config config = {.in = 64, .out = 10, .width = 128, .depth = 3,
                            .activation = TG_ACT_RELU, .init = tg_init_he(TG_ACT_RELU), .seed = 7};
    tg_module *mlp = tg_mlp_new(ctx, "mlp", &config);
    int n_params = tg_module_param_count(mlp); /* the array for the broadcast, sized to fit */
    tg_tensor **params = n_params ? malloc((size_t)n_params * sizeof *params) : NULL;
    if (params) tg_module_params(mlp, params, n_params);
    tg_optimizer *opt = tg_optimizer_new_module(mlp, &(tg_optimizer_config){.kind = TG_OPT_ADAM, .lr = 1e-3f});
    tg_tape *tape = tg_tape_new(ctx);
    tg_status status = digits && mlp && params && opt && tape && GLOBAL_BATCH % size == 0 ? TG_OK : TG_ERR_INVALID;
    if (status == TG_OK) status = tg_dataset_split(digits, 0.2, 42, &train, &test);
    tg_batcher *batches = train ? tg_batcher_new(train, GLOBAL_BATCH, true, true, 1) : NULL;
    if (status == TG_OK && !batches) status = tg_errcode(ctx);
    /* what every rank must have been told alike: a rank with other steps would leave the others
     * waiting in a reduction (until their timeout, TG_DIST_TIMEOUT_DEFAULT) */
    tg_dist_field same[] = {{"steps", steps, false}};
    if (status == TG_OK) status = tg_dist_check_same(dist, same, 1);
    /* rank 0's weights everywhere (they are equal here, seeded; a loaded checkpoint would not
     * be), then the backward hook that starts each bucket's all-reduce */
    if (status == TG_OK) status = tg_dist_broadcast_params(dist, params, n_params);
    if (status == TG_OK) status = tg_dist_attach_module(dist, mlp, NULL);

    double loss = 0;
    for (int step = 0; status == TG_OK && step < steps; step++) {
        tg_tensor *x, *y;
        tg_tape_reset(tape);
        if (!tg_batcher_next(batches, tape, &x, &y)) tg_batcher_next(batches, tape, &x, &y);
        /* this rank's rows of the global batch */
        x = tg_tape_from_data(tape, TG_SHAPE(rows, 64), x->data + rank * rows * 64);
        y = tg_tape_from_data(tape, TG_SHAPE(rows), y->data + rank * rows);
        tg_tensor *l = tg_cross_entropy(tape, tg_module_forward(mlp, tape, x), y);
        tg_status local = l ? tg_backward(tape, l) : tg_errcode(ctx);
        /* every rank, every step, even after a local failure: the mean gradient, or a stop
         * that every rank takes with the same message */
        status = tg_dist_wait(dist, local);
        if (status != TG_OK) break;
        loss = l->data[0];
        tg_dist_mean(dist, &loss, 1);
        tg_optimizer_step(opt);
        tg_optimizer_zero_grad(opt);
        /* an early stop that all ranks agree on (the loss is the same everywhere already, but
         * a decision from local data would not be) */
        bool done = false;
        tg_dist_agree(dist, loss < 0.01, &done);
        if (rank == 0 && (step % 50 == 0 || done)) printf("step %4d  loss %.4f\n", step, loss);
        if (done) break;
    }
    if (status != TG_OK) {
        fprintf(stderr, "rank %d: %s\n", rank, tg_errmsg(ctx));
    } else if (rank == 0) {
        tg_tape_reset(tape);
        tg_no_grad_begin(tape);
        tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(test->count, 64), test->x);
        tg_tensor *y = tg_tape_from_data(tape, TG_SHAPE(test->count), test->y);
        float accuracy = tg_accuracy(tg_module_forward(mlp, tape, x), y);
        tg_no_grad_end(tape);
        tg_dist_stats stats;
        tg_dist_get_stats(dist, &stats);
        printf("%d ranks, global batch %d: test accuracy %.2f%%; %d buckets of gradients, "
               "%.3f s waiting for the all-reduce over %lld steps\n", size, GLOBAL_BATCH,
               100 * accuracy, stats.buckets, stats.wait_seconds, (long long)stats.steps);
    }
    tg_batcher_free(batches);
    tg_optimizer_free(opt);
    free(params);
    tg_module_free(mlp);
    tg_dataset_free(digits);
    tg_dataset_free(train);
    tg_dataset_free(test);
    tg_tape_free(tape);
    tg_dist_finalize(dist); /* MPI_Finalize */
    tg_ctx_free(ctx);
    return status == TG_OK ? 0 : 1;
}
