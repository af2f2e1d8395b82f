/*
 * cli/parallel.h — `mpirun -np N tapegrad train`: the data-parallel parts of a training run
 * (cli/parallel.c, over tapegrad_dist.h). Built without MPI (-Dmpi=false) every function is a
 * no-op for a world of one: parallel_launched() is false and no run is ever distributed.
 */
#ifndef TAPEGRAD_PARALLEL_H
#define TAPEGRAD_PARALLEL_H

#include <stdbool.h>
#include <stddef.h>

#include "cli/study.h"
#include "tapegrad.h"

typedef struct parallel parallel;

/* Whether this process was started by mpirun (or another MPI launcher) among 2 or more, and
 * this build can take part: read from the launcher's environment, before MPI is touched. */
bool parallel_launched(void);
/* This process's rank and the world size as the launcher tells them (0 and 1 when not launched). */
int parallel_env_rank(void);
int parallel_env_size(void);

/* Joins the world for ctx (MPI_Init on first use) with config's --dist-timeout; with threads 0
 * sets the context's threads to the cores this rank's share of the machine has. NULL with the
 * reason on ctx. */
parallel *parallel_start(tg_ctx *ctx, const run_config *config);
int parallel_rank(const parallel *p);
/* Every rank set up (ready) or all stop (collective): then the ranks check that they train
 * alike (steps, batch, seed, digests of the model's, the optimizer's and the other training
 * options and of the data sets' bytes: the first that differs is named with the ranks and
 * values), rank 0's state (parameters and running statistics, --load's included) is broadcast
 * and params are attached for the bucketed all-reduce; with --guard a NaN/Inf gradient is reduced
 * rather than a stop, so that every rank's step guard sees the non-finite mean and skips the
 * step. false with the reason in why (the failed rank's own, or "rank R ..."). */
bool parallel_ready(parallel *p, bool ready, const run_config *config, const tg_dataset *train,
                    const tg_dataset *test, tg_tensor **state, int n_state, tg_tensor **params,
                    int n_params, char *why, size_t size);
/* This rank's rows of a global batch tensor [B, ...] (B divisible by the world size). */
tg_tensor *parallel_shard(const parallel *p, tg_tape *tape, tg_tensor *batch);
/* Ends a step on every rank (tg_dist_wait with the local status of forward and backward):
 * on TG_OK the gradients are the ranks' mean and *loss the mean loss. */
tg_status parallel_step(parallel *p, tg_status local, double *loss);
/* The step guard's verdict agreed over the ranks (collective; *verdict in and out): skip when
 * any rank would, non-finite when any rank says so, else an outlier. Each rank judges the same
 * all-reduced numbers, so they agree already unless the reductions differ in their last bits;
 * this makes it certain, and so keeps the guards' windows the same. No-op for NULL. */
tg_status parallel_verdict(parallel *p, tg_guard_verdict *verdict);
/* Leaves the world (MPI_Finalize when parallel_start initialised MPI). NULL is ignored. */
void parallel_end(parallel *p);
/* After a collective of this process timed out or failed (parallel_end noted it), ends the whole
 * job with MPI_Abort(code): the other ranks are stopped, or wait in a collective that will never
 * complete, and this process cannot finalise MPI. Call it once the error is printed; a no-op
 * otherwise. */
void parallel_abort_if_broken(int code);

#endif
