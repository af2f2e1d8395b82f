/*
 * dist/dist_internal.h — what dist/comm.c (communicator, broadcast, agreement) and
 * dist/buckets.c (the bucketed gradient all-reduce) share.
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

struct tg_dist {
    tg_ctx *ctx;
    MPI_Comm comm;           /* our duplicate */
    int rank, size;
    bool owns_mpi;           /* tg_dist_init initialised MPI: finalize finalises it */
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
/* Whether every rank passes the same n (<= 4) values (collective): their minimum and maximum
 * agree; else TG_ERR_SHAPE saying so. */
TGI_HIDDEN tg_status dist_check_same(tg_dist *dist, int64_t *values, int n, const char *what);
/* Checks a parameter list here and that every rank passes as many floats (collective). */
TGI_HIDDEN tg_status dist_check_params(tg_dist *dist, tg_tensor *const *params, int n_params,
                                      const char *what);
/* Releases what tg_dist_attach allocated and removes its hook. */
TGI_HIDDEN void dist_detach(tg_dist *dist);

#endif
