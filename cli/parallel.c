/*
 * cli/parallel.c — the data-parallel parts of `tapegrad train` under mpirun (see parallel.h).
 *
 * Every rank builds the same model from the same seed and draws the same global batches from
 * the same seeded batcher; each keeps its rows of each batch (`--batch` is the global batch),
 * so N ranks take the step one process takes on the whole batch, up to the order of the
 * floating-point reduction. Batch-norm statistics are per rank, as in DDP without SyncBatchNorm.
 */
#include "cli/parallel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What the launchers put in the environment: Open MPI's names first, then the PMI ones. */
static int env_int(const char *const *names, int n, int fallback) {
    for (int i = 0; i < n; i++) {
        const char *v = getenv(names[i]);
        char *end;
        long x = v && *v ? strtol(v, &end, 10) : -1;
        if (v && *v && !*end && x >= 0 && x < 1 << 24) return (int)x;
    }
    return fallback;
}

int parallel_env_rank(void) {
    static const char *const names[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"};
    return env_int(names, 3, 0);
}

int parallel_env_size(void) {
    static const char *const names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
    return env_int(names, 2, 1);
}

#ifdef TG_HAVE_MPI

#include "tapegrad_dist.h"

struct parallel {
    tg_dist *dist;
};

bool parallel_launched(void) { return parallel_env_size() > 1; }

parallel *parallel_start(tg_ctx *ctx, int threads) {
    parallel *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    if (!(p->dist = tg_dist_init(ctx, NULL, NULL))) {
        free(p);
        return NULL;
    }
    if (threads == 0) {
        /* the ranks on this machine share its cores: two ranks of two threads on two cores
         * would each run at half speed and wait for each other at every step */
        static const char *const names[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"};
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        int local = env_int(names, 2, tg_dist_size(p->dist));
        threads = cores > local ? (int)(cores / (local > 0 ? local : 1)) : 1;
    }
    tg_ctx_set_threads(ctx, threads);
    return p;
}

int parallel_rank(const parallel *p) { return p ? tg_dist_rank(p->dist) : 0; }

bool parallel_ready(parallel *p, bool ready, tg_tensor **state, int n_state, tg_tensor **params,
                    int n_params, bool guard, char *why, size_t size) {
    bool failed = false;
    if (tg_dist_agree(p->dist, !ready, &failed) != TG_OK) ready = false;
    if (!ready) return false; /* this rank's own reason is in why already */
    if (failed) {
        snprintf(why, size, "another rank failed to set up (its message says why)");
        return false;
    }
    tg_ctx *ctx = params && n_params ? params[0]->ctx : NULL;
    tg_status status = tg_dist_broadcast_params(p->dist, state, n_state);
    tg_dist_config config = {.reduce_nonfinite = guard};
    if (status == TG_OK) status = tg_dist_attach(p->dist, params, n_params, &config);
    if (status != TG_OK) snprintf(why, size, "mpi: %s", ctx ? tg_errmsg(ctx) : tg_status_str(status));
    return status == TG_OK;
}

tg_tensor *parallel_shard(const parallel *p, tg_tape *tape, tg_tensor *batch) {
    if (!p || !batch) return batch;
    int64_t rows = batch->shape[0] / tg_dist_size(p->dist), row = batch->size / batch->shape[0];
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, batch->shape, sizeof shape);
    shape[0] = rows;
    return tg_tape_from_data(tape, batch->ndim, shape,
                             batch->data + (int64_t)tg_dist_rank(p->dist) * rows * row);
}

tg_status parallel_step(parallel *p, tg_status local, double *loss) {
    tg_status status = tg_dist_wait(p->dist, local);
    return status == TG_OK ? tg_dist_mean(p->dist, loss, 1) : status;
}

tg_status parallel_verdict(parallel *p, tg_guard_verdict *verdict) {
    if (!p) return TG_OK;
    bool skip = *verdict != TG_GUARD_ACCEPT, nonfinite = *verdict == TG_GUARD_SKIP_NONFINITE;
    tg_status status = tg_dist_agree(p->dist, skip, &skip);
    /* the second collective only on a skip, which every rank now knows alike */
    if (status == TG_OK && skip) status = tg_dist_agree(p->dist, nonfinite, &nonfinite);
    if (status == TG_OK)
        *verdict = !skip ? TG_GUARD_ACCEPT : nonfinite ? TG_GUARD_SKIP_NONFINITE : TG_GUARD_SKIP_OUTLIER;
    return status;
}

void parallel_end(parallel *p) {
    if (!p) return;
    tg_dist_finalize(p->dist);
    free(p);
}

#else /* built without MPI: never launched, nothing to do */

bool parallel_launched(void) { return false; }
parallel *parallel_start(tg_ctx *ctx, int threads) { (void)ctx; (void)threads; return NULL; }
int parallel_rank(const parallel *p) { (void)p; return 0; }
bool parallel_ready(parallel *p, bool ready, tg_tensor **state, int n_state, tg_tensor **params,
                    int n_params, bool guard, char *why, size_t size) {
    (void)p; (void)state; (void)n_state; (void)params; (void)n_params; (void)guard; (void)why; (void)size;
    return ready;
}
tg_tensor *parallel_shard(const parallel *p, tg_tape *tape, tg_tensor *batch) {
    (void)p; (void)tape;
    return batch;
}
tg_status parallel_step(parallel *p, tg_status local, double *loss) {
    (void)p; (void)loss;
    return local;
}
tg_status parallel_verdict(parallel *p, tg_guard_verdict *verdict) {
    (void)p; (void)verdict;
    return TG_OK;
}
void parallel_end(parallel *p) { (void)p; }

#endif
