/*
 * mpi/comm.c — the communicator: setting up and tearing down MPI, rank and size, rank 0's
 * weights to every rank, and the small collectives behind the decisions every rank must take
 * together (early stop, losses for reports).
 */
#include "mpi/dist_internal.h"

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
 * the job, and the library never aborts). The duplication is a collective like any other: a
 * rank that never comes makes it time out rather than hang. */
static tg_dist *open_on(tg_ctx *ctx, MPI_Comm comm, bool owns_mpi, bool *stuck) {
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
    dist->answer_request = MPI_REQUEST_NULL;
    dist->timeout = TG_DIST_TIMEOUT_DEFAULT;
    MPI_Comm dup = MPI_COMM_NULL;
    MPI_Request request = MPI_REQUEST_NULL;
    tg_status status = dist_check_mpi(dist, MPI_Comm_idup(comm, &dup, &request), "MPI_Comm_idup");
    if (status == TG_OK) status = dist_complete(dist, &request, "duplication of the communicator (tg_dist_init)", -1);
    if (status == TG_OK) dist->comm = dup;
    if (status == TG_OK) MPI_Comm_set_errhandler(dist->comm, MPI_ERRORS_RETURN);
    if (status == TG_OK) status = dist_check_mpi(dist, MPI_Comm_rank(dist->comm, &dist->rank), "MPI_Comm_rank");
    if (status == TG_OK) status = dist_check_mpi(dist, MPI_Comm_size(dist->comm, &dist->size), "MPI_Comm_size");
    if (status != TG_OK) {
        *stuck = dist->broken;
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
    bool stuck = false; /* then MPI_Finalize would wait for the missing rank forever */
    tg_dist *dist = open_on(ctx, MPI_COMM_WORLD, !initialised, &stuck);
    if (!dist && !initialised && !stuck) MPI_Finalize();
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
    bool stuck = false;
    return open_on(ctx, comm, false, &stuck);
}

int tg_dist_rank(const tg_dist *dist) { return dist ? dist->rank : 0; }

int tg_dist_size(const tg_dist *dist) { return dist ? dist->size : 1; }

tg_status tg_dist_broadcast_params(tg_dist *dist, tg_tensor *const *params, int n_params) {
    if (!dist) return TG_ERR_INVALID;
    /* every rank takes part in the check, also one whose list is wrong, so none waits for it */
    tg_dist_field fields[DIST_PARAM_FIELDS];
    tg_status status = dist_param_fields(dist, params, n_params, "dist_broadcast_params", fields);
    status = dist_require_same(dist, fields, DIST_PARAM_FIELDS, status != TG_OK, "dist_broadcast_params",
                               TG_ERR_SHAPE, "every rank must build the same model");
    for (int i = 0; status == TG_OK && i < n_params; i++)
        status = dist_bcast(dist, params[i]->data, (int)params[i]->size, MPI_FLOAT, 0,
                            "broadcast of parameter", i);
    return status;
}

tg_status tg_dist_agree(tg_dist *dist, bool local, bool *any) {
    if (!dist || !any) return dist ? dist_error(dist->ctx, TG_ERR_INVALID, "dist_agree: any is NULL")
                                   : TG_ERR_INVALID;
    int flag = local ? 1 : 0;
    tg_status status = dist_allreduce(dist, &flag, 1, MPI_INT, MPI_LOR, "agreement (tg_dist_agree)");
    *any = flag != 0;
    return status;
}

tg_status tg_dist_mean(tg_dist *dist, double *values, int n) {
    if (!dist) return TG_ERR_INVALID;
    if (n < 0 || (n > 0 && !values))
        return dist_error(dist->ctx, TG_ERR_INVALID, "dist_mean: %d values at %p", n, (void *)values);
    tg_status status = dist_allreduce(dist, values, n, MPI_DOUBLE, MPI_SUM, "mean (tg_dist_mean)");
    for (int i = 0; status == TG_OK && i < n; i++) values[i] /= dist->size;
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
        .broken = dist->broken,
    };
    return TG_OK;
}

tg_status tg_dist_set_timeout(tg_dist *dist, double seconds) {
    if (!dist) return TG_ERR_INVALID;
    if (!(seconds > 0)) /* NaN included; INFINITY waits as long as MPI would */
        return dist_error(dist->ctx, TG_ERR_INVALID, "dist_set_timeout: %g seconds (> 0; INFINITY: never)",
                          seconds);
    dist->timeout = seconds;
    return TG_OK;
}

/* Every rank arrives before MPI_Finalize, which waits for all with no deadline; and they arrive
 * after as many steps. Not a barrier: one that met a rank's reduction of a bucket (a rank that
 * runs more steps) would complete, where a reduction of two integers against it fails. Ranks that
 * took different steps ran different collectives: broken too, as MPI's state is then unknown. */
static void final_check(tg_dist *dist) {
    int64_t steps[2] = {dist->steps, -dist->steps};
    if (dist_allreduce(dist, steps, 2, MPI_INT64_T, MPI_MAX, "final check (tg_dist_finalize)") != TG_OK ||
        steps[0] == -steps[1])
        return;
    snprintf(dist->broken_msg, sizeof dist->broken_msg, "dist_finalize: the ranks end after different "
             "numbers of steps (tg_dist_wait calls: %lld to %lld; this rank %lld)", (long long)-steps[1],
             (long long)steps[0], (long long)dist->steps);
    dist->broken = true;
}

/* A broken handle leaves MPI alone: its pending request may still write to the buffers and the
 * communicator, and MPI_Finalize would wait for the missing rank. The handle and its buffers are
 * left allocated; the program is expected to end the job. */
tg_status tg_dist_finalize(tg_dist *dist) {
    if (!dist) return TG_OK;
    if (!dist->broken && dist->comm != MPI_COMM_NULL) final_check(dist);
    int sent = 1;
    if (dist->answer_request != MPI_REQUEST_NULL) MPI_Test(&dist->answer_request, &sent, MPI_STATUS_IGNORE);
    dist_detach(dist, dist->broken);
    if (dist->broken) /* the handle stays: a reduction still uses it */
        return dist_error(dist->ctx, TG_ERR_STATE, "%s; MPI was left as it is: end the job (MPI_Abort)",
                          dist->broken_msg);
    if (dist->comm != MPI_COMM_NULL) MPI_Comm_free(&dist->comm); /* freed once its sends are done */
    bool owns = dist->owns_mpi;
    if (sent) dist_free(dist->ctx, dist, sizeof *dist); /* else an answer is still sent from it */
    int finalised = 0;
    MPI_Finalized(&finalised);
    if (owns && !finalised) MPI_Finalize();
    return TG_OK;
}
