/*
 * dist/comm.c — the communicator: setting up and tearing down MPI, rank and size, rank 0's
 * weights to every rank, and the small collectives behind the decisions every rank must take
 * together (early stop, losses for reports).
 */
#include "dist/dist_internal.h"

#include <stdio.h>

tg_status dist_error(tg_ctx *ctx, tg_status status, const char *fmt, ...) {
    if (ctx && ctx->err_code == TG_OK) {
        va_list args;
        va_start(args, fmt);
        ctx->err_code = status;
        vsnprintf(ctx->err_msg, sizeof ctx->err_msg, fmt, args);
        va_end(args);
    }
    return status;
}

tg_status dist_check_mpi(tg_dist *dist, int rc, const char *what) {
    if (rc == MPI_SUCCESS) return TG_OK;
    char reason[MPI_MAX_ERROR_STRING] = "unknown MPI error";
    int length = 0;
    MPI_Error_string(rc, reason, &length);
    return dist_error(dist->ctx, TG_ERR_STATE, "dist: %s failed on rank %d of %d: %s", what,
                      dist->rank, dist->size, reason);
}

void *dist_calloc(tg_ctx *ctx, size_t bytes) {
    void *p = ctx->alloc(ctx->alloc_user, NULL, 0, bytes ? bytes : 1);
    if (p) memset(p, 0, bytes);
    return p;
}

void dist_free(tg_ctx *ctx, void *ptr, size_t bytes) {
    if (ptr) ctx->alloc(ctx->alloc_user, ptr, bytes ? bytes : 1, 0);
}

/* Our own duplicate, whose errors come back as return codes (MPI's default handler aborts
 * the job, and the library never aborts). */
static tg_dist *open_on(tg_ctx *ctx, MPI_Comm comm, bool owns_mpi) {
    tg_dist *dist = dist_calloc(ctx, sizeof *dist);
    if (!dist) {
        dist_error(ctx, TG_ERR_NOMEM, "dist_init: out of memory");
        return NULL;
    }
    dist->ctx = ctx;
    dist->owns_mpi = owns_mpi;
    dist->bad_param = -1;
    dist->first_launch_entry = -1;
    dist->comm = MPI_COMM_NULL;
    tg_status status = dist_check_mpi(dist, MPI_Comm_dup(comm, &dist->comm), "MPI_Comm_dup");
    if (status == TG_OK) MPI_Comm_set_errhandler(dist->comm, MPI_ERRORS_RETURN);
    if (status == TG_OK) status = dist_check_mpi(dist, MPI_Comm_rank(dist->comm, &dist->rank), "MPI_Comm_rank");
    if (status == TG_OK) status = dist_check_mpi(dist, MPI_Comm_size(dist->comm, &dist->size), "MPI_Comm_size");
    if (status != TG_OK) {
        tg_dist_finalize(dist);
        return NULL;
    }
    return dist;
}

tg_dist *tg_dist_init(tg_ctx *ctx, int *argc, char ***argv) {
    if (!ctx) return NULL;
    int initialised = 0, finalised = 0;
    MPI_Initialized(&initialised);
    MPI_Finalized(&finalised);
    if (finalised) {
        dist_error(ctx, TG_ERR_STATE, "dist_init: MPI was already finalised in this process");
        return NULL;
    }
    if (!initialised) {
        int provided = 0;
        if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
            dist_error(ctx, TG_ERR_STATE, "dist_init: MPI_Init_thread failed");
            return NULL;
        }
        /* MPI_COMM_WORLD's own handler would abort on the first error: return codes instead */
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    }
    tg_dist *dist = open_on(ctx, MPI_COMM_WORLD, !initialised);
    if (!dist && !initialised) MPI_Finalize();
    return dist;
}

tg_dist *tg_dist_init_comm(tg_ctx *ctx, MPI_Comm comm) {
    if (!ctx) return NULL;
    int initialised = 0;
    MPI_Initialized(&initialised);
    if (!initialised) {
        dist_error(ctx, TG_ERR_STATE, "dist_init_comm: MPI is not initialised (call MPI_Init, "
                   "or tg_dist_init for MPI_COMM_WORLD)");
        return NULL;
    }
    if (comm == MPI_COMM_NULL) {
        dist_error(ctx, TG_ERR_INVALID, "dist_init_comm: the communicator is MPI_COMM_NULL");
        return NULL;
    }
    return open_on(ctx, comm, false);
}

int tg_dist_rank(const tg_dist *dist) { return dist ? dist->rank : 0; }

int tg_dist_size(const tg_dist *dist) { return dist ? dist->size : 1; }

tg_status dist_check_same(tg_dist *dist, int64_t *values, int n, const char *what) {
    int64_t both[8];
    for (int i = 0; i < n; i++) both[i] = values[i], both[n + i] = -values[i];
    tg_status status = dist_check_mpi(dist, MPI_Allreduce(MPI_IN_PLACE, both, 2 * n, MPI_INT64_T,
                                                          MPI_MAX, dist->comm), what);
    for (int i = 0; i < n && status == TG_OK; i++)
        if (both[i] != -both[n + i])
            status = dist_error(dist->ctx, TG_ERR_SHAPE, "%s: the ranks disagree (rank %d has "
                                "%lld, the ranks range over %lld..%lld): every rank must build the "
                                "same model", what, dist->rank, (long long)values[i],
                                (long long)-both[n + i], (long long)both[i]);
    return status;
}

/* Collective check of a parameter list: valid here and the same counts everywhere. */
tg_status dist_check_params(tg_dist *dist, tg_tensor *const *params, int n_params, const char *what) {
    int64_t shape[2] = {n_params, 0};
    tg_status status = n_params < 0 || (n_params > 0 && !params)
        ? dist_error(dist->ctx, TG_ERR_INVALID, "%s: %d parameters at %p", what, n_params, (void *)params)
        : TG_OK;
    for (int i = 0; status == TG_OK && i < n_params; i++) {
        if (!params[i] || !params[i]->persistent || params[i]->ctx != dist->ctx)
            status = dist_error(dist->ctx, TG_ERR_INVALID, "%s: parameter %d is %s", what, i,
                                !params[i] ? "NULL" : !params[i]->persistent
                                ? "not persistent (a tape tensor)"
                                : "of another context than tg_dist_init's (its backward passes "
                                  "would never reach our hook)");
        else shape[1] += params[i]->size;
    }
    /* every rank takes part in the check, also one that failed above, so none waits forever */
    int64_t agreed[2] = {status == TG_OK ? shape[0] : -1, status == TG_OK ? shape[1] : -1};
    tg_status same = dist_check_same(dist, agreed, 2, what);
    return status != TG_OK ? status : same;
}

tg_status tg_dist_broadcast_params(tg_dist *dist, tg_tensor *const *params, int n_params) {
    if (!dist) return TG_ERR_INVALID;
    tg_status status = dist_check_params(dist, params, n_params, "dist_broadcast_params");
    for (int i = 0; status == TG_OK && i < n_params; i++)
        status = dist_check_mpi(dist, MPI_Bcast(params[i]->data, (int)params[i]->size, MPI_FLOAT,
                                                0, dist->comm), "MPI_Bcast of a parameter");
    return status;
}

tg_status tg_dist_agree(tg_dist *dist, bool local, bool *any) {
    if (!dist || !any) return dist ? dist_error(dist->ctx, TG_ERR_INVALID, "dist_agree: any is NULL")
                                   : TG_ERR_INVALID;
    int flag = local ? 1 : 0;
    tg_status status = dist_check_mpi(dist, MPI_Allreduce(MPI_IN_PLACE, &flag, 1, MPI_INT, MPI_LOR,
                                                          dist->comm), "MPI_Allreduce (agree)");
    *any = flag != 0;
    return status;
}

tg_status tg_dist_mean(tg_dist *dist, double *values, int n) {
    if (!dist) return TG_ERR_INVALID;
    if (n < 0 || (n > 0 && !values))
        return dist_error(dist->ctx, TG_ERR_INVALID, "dist_mean: %d values at %p", n, (void *)values);
    tg_status status = dist_check_mpi(dist, MPI_Allreduce(MPI_IN_PLACE, values, n, MPI_DOUBLE,
                                                          MPI_SUM, dist->comm), "MPI_Allreduce (mean)");
    for (int i = 0; i < n; i++) values[i] /= dist->size;
    return status;
}

tg_status tg_dist_get_stats(const tg_dist *dist, tg_dist_stats *stats) {
    if (!dist || !stats) return TG_ERR_INVALID;
    *stats = (tg_dist_stats){
        .steps = dist->steps,
        .buckets = dist->n_buckets,
        .gradient_bytes = dist->flat_elems * (int64_t)sizeof(float),
        .wait_seconds = dist->wait_seconds,
        .first_launch_entry = dist->first_launch_entry,
        .launched_in_backward = dist->launched_in_backward,
    };
    return TG_OK;
}

void tg_dist_finalize(tg_dist *dist) {
    if (!dist) return;
    dist_detach(dist);
    if (dist->comm != MPI_COMM_NULL) MPI_Comm_free(&dist->comm);
    bool owns = dist->owns_mpi;
    dist_free(dist->ctx, dist, sizeof *dist);
    int finalised = 0;
    MPI_Finalized(&finalised);
    if (owns && !finalised) MPI_Finalize();
}
