/*
 * mpi/dist_internal.h — what mpi/comm.c (communicator, broadcast, agreement), mpi/buckets.c
 * (the bucketed gradient all-reduce), mpi/progress.c (waiting with a deadline) and
 * mpi/fields.c (the ranks' agreement on named values) share.
 *
 * libtapegrad_dist is a library of its own, linked beside libtapegrad.so, whose tgi_ helpers
 * have hidden visibility: so this layer reads the context and tape structures of
 * autograd/internal.h (inline, no symbol) but calls only the public tg_ functions, and sets
 * errors and allocates through the context's fields the way the core does.
 */
#ifndef TAPEGRAD_DIST_INTERNAL_H
#define TAPEGRAD_DIST_INTERNAL_H

#include "autograd/internal.h"
#include "tapegrad_dist.h"

/* A bucket: a run of the parameters in reverse registration order, reduced as one message. */
typedef struct dist_bucket {
    int first, count;        /* order[first .. first+count-1] */
    int64_t offset, elems;   /* its floats in the flat buffer */
    int64_t ready_below;     /* this step: complete once the walk is at an entry below this */
} dist_bucket;

/* A parameter's address and index, sorted by address: the tape scan's lookup. */
typedef struct dist_param_ref {
    const tg_tensor *tensor;
    int index;
} dist_param_ref;

/* What a rank answers another's census (mpi/progress.c): the collective it waits in. */
typedef struct dist_answer {
    char stage[160];
} dist_answer;

struct tg_dist {
    tg_ctx *ctx;
    MPI_Comm comm;           /* our duplicate */
    int rank, size;
    bool owns_mpi;           /* tg_dist_init initialised MPI: finalize finalises it */
    /* waiting (mpi/progress.c) */
    double timeout;          /* seconds a collective may go without progress */
    const char *stage_what;  /* the collective waited in: "all-reduce of bucket" ... */
    int stage_index;         /* ... its bucket or parameter (-1: none) */
    bool broken;             /* a collective timed out: its request is still pending, so the
                                communicator and the buffers it writes to cannot be reused */
    char broken_msg[512];    /* that timeout's message, repeated by every later call */
    dist_answer answer;      /* the last answer sent, until its send completes */
    MPI_Request answer_request;
    int query;               /* what a census sends (its content does not matter) */
    /* attached (tg_dist_attach) */
    tg_tensor **params;      /* registration order */
    int n_params;
    int *order;              /* bucket order: params[order[k]], k = 0 first reduced */
    dist_param_ref *sorted;
    int64_t *first_use;      /* per parameter, this step: the lowest tape entry reading it */
    dist_bucket *buckets;
    int n_buckets;
    float *flat;             /* every bucket's floats, one allocation */
    int64_t flat_elems;
    MPI_Request *requests;
    /* the step's agreement, reduced by MPI_MIN: [0] the lowest failed rank, [1] the first
     * non-finite gradient, [2 + p] 0 when parameter p was reached on this rank (1: not) */
    int *agreement;
    bool reduce_nonfinite;   /* tg_dist_config: a non-finite gradient is reduced, not a stop */
    int64_t hook;            /* handle of the backward hook, 0 when not attached */
    /* the step in progress */
    bool in_pass;            /* the hook has seen this step's backward pass */
    uint64_t pass;           /* ctx->backward_passes of that pass */
    const tg_tape *tape;
    int next_launch;         /* buckets below this are started */
    int next_probe;          /* MPI_Test is called on this request to make progress */
    int bad_param;           /* the first parameter (index) with a non-finite local gradient */
    int64_t first_launch_entry;
    int launched_in_backward;
    /* totals */
    int64_t steps;
    double wait_seconds;
};

/* Records an error on the context unless one is recorded (tgi_error's rule). Returns status. */
TGI_HIDDEN tg_status dist_error(tg_ctx *ctx, tg_status status, const char *fmt, ...)
    TGI_PRINTF(3, 4);
/* The MPI return code rc as a tg status, with what failed and MPI's own words. */
TGI_HIDDEN tg_status dist_check_mpi(tg_dist *dist, int rc, const char *what);
/* Through the context's allocator (tests count allocations), zeroed; NULL when out of memory. */
TGI_HIDDEN void *dist_calloc(tg_ctx *ctx, size_t bytes);
TGI_HIDDEN void dist_free(tg_ctx *ctx, void *ptr, size_t bytes);

/* ---- mpi/progress.c: every collective is started non-blocking and completed here ---------- */

/* Completes *request, the collective `what` (index: its bucket or parameter, -1 none): tests it
 * at once and in a tight loop for a short while (a step's reductions usually end there), then
 * sleeps between tests, growing to about 1 ms, answering other ranks' censuses. When it makes
 * no progress for dist->timeout seconds, asks the other ranks where they are, marks the handle
 * broken and returns TG_ERR_STATE naming the collective, the step and the ranks that do not
 * answer or wait elsewhere; an MPI error breaks it too. A broken handle refuses at once. */
TGI_HIDDEN tg_status dist_complete(tg_dist *dist, MPI_Request *request, const char *what, int index);
/* The blocking collectives, through dist_complete (what and index name them as above). */
TGI_HIDDEN tg_status dist_allreduce(tg_dist *dist, void *values, int count, MPI_Datatype type,
                                    MPI_Op op, const char *what);
TGI_HIDDEN tg_status dist_bcast(tg_dist *dist, void *values, int count, MPI_Datatype type, int root,
                                const char *what, int index);
TGI_HIDDEN tg_status dist_allgather(tg_dist *dist, const void *mine, void *all, int bytes,
                                    const char *what);
/* TG_ERR_STATE with the timeout's message when the handle is broken, else TG_OK. */
TGI_HIDDEN tg_status dist_usable(tg_dist *dist);

/* ---- mpi/fields.c: named values every rank must share ------------------------------------ */

/* tg_dist_check_same with the status and the advice of the caller (collective). failed: this
 * rank failed before the check (its error is on the context already): it takes part, so no rank
 * waits for it, and the others say so. */
TGI_HIDDEN tg_status dist_require_same(tg_dist *dist, const tg_dist_field *fields, int n_fields,
                                       bool failed, const char *what, tg_status status,
                                       const char *advice);
/* Checks a parameter list here (TG_ERR_INVALID) and fills fields[0..2] with its count, floats and
 * shapes, for dist_require_same. */
#define DIST_PARAM_FIELDS 3
TGI_HIDDEN tg_status dist_param_fields(tg_dist *dist, tg_tensor *const *params, int n_params,
                                       const char *what, tg_dist_field *fields);

/* Releases what tg_dist_attach allocated and removes its hook; keep_buffers: a broken handle's
 * pending reduction may still write to them, so they are left allocated. */
TGI_HIDDEN void dist_detach(tg_dist *dist, bool keep_buffers);

#endif
