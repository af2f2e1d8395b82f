/*
 * tapegrad_dist.h — data-parallel training over MPI (libtapegrad_dist).
 *
 * Every rank runs the same program on its own shard of each global batch. After
 * tg_dist_attach, the backward walk itself starts the gradient all-reduce: parameters are
 * grouped into buckets in reverse registration order (the order backward completes them), and
 * a backward hook starts a bucket's MPI_Iallreduce as soon as the walk has passed the last op
 * that adds to any of its gradients, so communication overlaps the rest of backward (as
 * PyTorch's DistributedDataParallel does). tg_dist_wait, called by every rank after backward
 * and before the optimizer step, finishes the reductions, averages by the world size and makes
 * the collective decisions: a failure or a non-finite gradient on any rank stops every rank
 * with the same message naming that rank.
 *
 *     tg_dist *dist = tg_dist_init(ctx, &argc, &argv);         // MPI_COMM_WORLD
 *     tg_dist_broadcast_params(dist, params, n);                // rank 0's weights to all
 *     tg_dist_attach(dist, params, n, NULL);                    // buckets of 1 MiB
 *     for (...) {
 *         ... forward on this rank's shard, tg_backward ...
 *         if (tg_dist_wait(dist, status) != TG_OK) break;      // same answer on every rank
 *         tg_optimizer_step(opt);
 *     }
 *     tg_dist_finalize(dist);
 *
 * Ranks that disagree, and ranks that stall. tg_dist_attach and tg_dist_broadcast_params check
 * that every rank has the same parameters (count, sizes, shapes) and configuration; what only the
 * program knows (steps, batch, seed, a fingerprint of its data: tg_dist_digest) it checks with
 * tg_dist_check_same, before training: ranks started with other arguments would otherwise wait
 * for each other forever (other steps) or train apart and report success (other seed or data).
 * Every collective waits with a deadline: one that makes no progress for the handle's timeout
 * (TG_DIST_TIMEOUT_DEFAULT, tg_dist_set_timeout, tg_dist_config.timeout_seconds) fails with
 * TG_ERR_STATE naming it and the rank it waits for, e.g. "dist: all-reduce of bucket 3 at step
 * 12: no progress from rank 1 for 300 s (it does not answer: stopped, hung, or busy outside
 * tapegrad_dist's collectives)" or "... rank 1 waits in the step agreement (tg_dist_wait) at
 * step 30 instead" (the waiting ranks ask the others where they are; an MPI error inside a
 * collective, such as a rank that ended or ranks that run different collectives, also fails). A wait tests its request
 * in a tight loop only for its first 100 us, then sleeps between tests (growing with the time
 * pending, to 1 ms), so a waiting rank does not burn a core. After a timeout the handle is
 * broken: MPI cannot cancel the pending collective, so every later call refuses with the same
 * message and tg_dist_finalize leaves MPI alone and says so; the program should end the job
 * (MPI_Abort, as `tapegrad train` does). The library itself never aborts.
 *
 * This header and its library are separate from tapegrad.h and libtapegrad, so the core never
 * needs MPI; link with `pkg-config --libs tapegrad-dist` (which brings Open MPI's ompi-c).
 * Every function is NULL-safe: a NULL tg_dist behaves as a world of one rank where that makes
 * sense (rank 0, size 1) and returns TG_ERR_INVALID where it does not. Errors go to
 * tg_errmsg of the context given to tg_dist_init. Calls marked collective must be made by
 * every rank of the communicator, in the same order.
 */
#ifndef TAPEGRAD_DIST_H
#define TAPEGRAD_DIST_H

#include <mpi.h>

#include "tapegrad.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tg_dist tg_dist;

/** Bucket size when tg_dist_config.bucket_bytes is 0: small enough that an MLP of a few MB
 *  spreads over several buckets (and so overlaps), large enough to amortise a message. */
#define TG_DIST_BUCKET_DEFAULT ((size_t)1 << 20)

/** Seconds a collective may go without progress before it fails (tg_dist_set_timeout): long
 *  enough for a slow step or rank 0's evaluation and checkpoint, short enough that a stalled
 *  job ends the same hour. */
#define TG_DIST_TIMEOUT_DEFAULT 300.0

typedef struct tg_dist_config {
    size_t bucket_bytes;   /**< gradient bytes per bucket (0: TG_DIST_BUCKET_DEFAULT); a
                                parameter larger than this gets a bucket of its own */
    bool reduce_nonfinite; /**< false (default): a NaN/Inf gradient on any rank stops every rank
                                (tg_dist_wait: TG_ERR_NUMERIC). true: it is reduced like any
                                other, so the mean is non-finite on every rank, for a step guard
                                that skips such steps (tg_guard_judge) to decide on all alike */
    double timeout_seconds; /**< 0 (default): keep the handle's timeout (TG_DIST_TIMEOUT_DEFAULT
                                unless tg_dist_set_timeout changed it); else as tg_dist_set_timeout,
                                from the end of tg_dist_attach on. Negative or NaN: TG_ERR_INVALID.
                                The ranks may differ here; bucket_bytes and reduce_nonfinite are
                                checked to agree */
} tg_dist_config;

/** Longest name of a tg_dist_field, with its terminating NUL. */
#define TG_DIST_FIELD_NAME_MAX 48

/** A named value every rank must pass alike (tg_dist_check_same). */
typedef struct tg_dist_field {
    const char *name;  /**< what the value is, as the message names it ("steps", "data"): 1 to
                            TG_DIST_FIELD_NAME_MAX - 1 bytes (longer: TG_ERR_INVALID, never cut) */
    int64_t value;     /**< a count or setting, or a digest ((int64_t)tg_dist_digest(...)) */
    bool digest;       /**< the value is a hash: messages print it in hex */
} tg_dist_field;

/** Counters of an attached tg_dist (tg_dist_get_stats). */
typedef struct tg_dist_stats {
    int64_t steps;                /**< tg_dist_wait calls so far */
    int buckets;                  /**< buckets of the attached parameters */
    int64_t gradient_bytes;       /**< bytes each rank contributes to the all-reduce per step */
    double wait_seconds;          /**< time spent inside tg_dist_wait (reductions not yet done,
                                       plus the agreement), summed over steps */
    int64_t first_launch_entry;   /**< last step: the tape entry whose hook started bucket 0's
                                       reduction (entries below it were still to be walked);
                                       -1 when it started after the walk or in tg_dist_wait */
    int launched_in_backward;     /**< last step: buckets started during the backward walk */
    bool broken;                  /**< a collective timed out: the handle refuses every call;
                                       end the job (MPI_Abort) */
} tg_dist_stats;

/**
 * A handle on MPI_COMM_WORLD for ctx (collective). Initialises MPI (MPI_Init_thread, funnelled:
 * only the thread that calls these functions and tg_backward talks to MPI) unless the program
 * already did; argc/argv may be NULL. tg_dist_finalize then finalises MPI. NULL on error.
 */
tg_dist *tg_dist_init(tg_ctx *ctx, int *argc, char ***argv);
/** The same on a communicator of the caller's (collective over it), which is duplicated: our
 *  messages never mix with the application's. MPI must be initialised; it is not finalised. */
tg_dist *tg_dist_init_comm(tg_ctx *ctx, MPI_Comm comm);
/** This process's rank (0 for NULL). */
int tg_dist_rank(const tg_dist *dist);
/** Number of ranks (1 for NULL). */
int tg_dist_size(const tg_dist *dist);
/** Seconds any collective of dist may go without progress before it fails with TG_ERR_STATE and
 *  the handle is broken (see the top of this header): > 0, INFINITY to wait as long as MPI would;
 *  else TG_ERR_INVALID. Local (each rank its own; the first rank to time out names the others). */
tg_status tg_dist_set_timeout(tg_dist *dist, double seconds);
/**
 * Whether every rank passes the same fields (collective): the same count of fields, the same
 * names in the same order and the same values. Every rank gathers every rank's fields, so every
 * rank returns the same verdict: TG_OK, or TG_ERR_STATE naming the first field that differs, the
 * lowest rank whose value differs from rank 0's and both values: "dist_check_same: the ranks
 * disagree on steps: rank 1's steps = 60, rank 0's = 30: every rank must be started with the same
 * values" (with how many ranks differ when more than one does). TG_ERR_INVALID for a NULL field
 * list with n_fields > 0, n_fields outside 0..4096, or a name NULL, empty or too long: that rank
 * still takes part, and the others get TG_ERR_STATE "rank R failed before the check". Call it
 * before training with what the program knows must be equal (configuration, steps, batch size,
 * seed, tg_dist_digest of its data).
 */
tg_status tg_dist_check_same(tg_dist *dist, const tg_dist_field *fields, int n_fields);
/** A 64-bit digest of size bytes, chained through seed (0 to start; pass the last digest to add
 *  more): for tg_dist_field values. Not cryptographic; about 5 GB/s. bytes may be NULL for 0. */
uint64_t tg_dist_digest(uint64_t seed, const void *bytes, size_t size);
/** Overwrites every rank's tensors with rank 0's (collective): the same start everywhere, or a
 *  checkpoint rank 0 read. The ranks' tensor counts, sizes and shapes are checked to agree first
 *  (TG_ERR_SHAPE naming the first that differs and the ranks). */
tg_status tg_dist_broadcast_params(tg_dist *dist, tg_tensor *const *params, int n_params);
/**
 * Reduces the gradients of params from now on (collective; once per tg_dist): checks that every
 * rank passes parameters of the same count, sizes and shapes and the same bucket_bytes and
 * reduce_nonfinite (TG_ERR_SHAPE naming the field and the ranks, as tg_dist_check_same), builds
 * the buckets (so the same layout on every rank), preallocates their flat buffers and registers
 * the backward hook that starts them, on the context of tg_dist_init (the parameters must
 * belong to it: TG_ERR_INVALID otherwise). config may be NULL. One backward pass per
 * tg_dist_wait.
 */
tg_status tg_dist_attach(tg_dist *dist, tg_tensor *const *params, int n_params,
                         const tg_dist_config *config);
/** tg_dist_attach with the parameters of a module (tg_module_params). */
tg_status tg_dist_attach_module(tg_dist *dist, const tg_module *module,
                                const tg_dist_config *config);
/**
 * Ends the step's communication (collective; call it on every rank after backward, also when
 * this rank's forward or backward failed: pass that status as local). Starts the buckets the
 * walk did not, waits for all, then agrees: when any rank passed a failure, every rank gets
 * "rank R of N failed at step S: <R's message>" with R's status; when a gradient on any rank
 * was NaN or Inf before the reduction, every rank gets TG_ERR_NUMERIC naming the first such
 * rank and parameter (unless tg_dist_config.reduce_nonfinite). Otherwise the gradients are the
 * mean over the ranks (bit-identical on every rank) and TG_OK is returned. Clipping or a norm
 * computed after it is global.
 *
 * Reached parameters: optimizers skip a parameter no backward pass reached since its zero_grad
 * (tapegrad.h, tg_optimizer_step). The ranks agree on it in the same collective: a parameter that
 * the backward pass of any rank reached counts as reached on every rank after this call (its
 * gradient is the mean, its own rows' share on the ranks that did not reach it being zero), and
 * one that no rank reached stays skipped on every rank, so every replica takes the same step, the
 * step one process takes on the whole batch.
 *
 * Hooks run inside tg_backward, before this call: a gradient hook sees this rank's gradient of
 * its own rows, not the mean. What a hook writes is what this rank contributes: parameter hooks
 * fire after the walk, so a bucket holding a parameter that one of your backward hooks matches
 * (tg_hook_grad, _pattern, _params, _global) starts here rather than from the walk, and so do the
 * buckets after it (buckets start in order): hooks on parameters cost overlap
 * (tg_dist_stats.launched_in_backward), hooks on intermediate nodes do not. Read or change the
 * mean gradients after tg_dist_wait (tg_clip_grad_norm, statistics), not from a hook.
 */
tg_status tg_dist_wait(tg_dist *dist, tg_status local);
/** *any = whether local is true on any rank (collective): early stop and other decisions that
 *  must be taken by all ranks together. */
tg_status tg_dist_agree(tg_dist *dist, bool local, bool *any);
/** Replaces values[0..n-1] by their mean over the ranks (collective): losses for reports. */
tg_status tg_dist_mean(tg_dist *dist, double *values, int n);
/** The counters above; TG_ERR_INVALID for NULL arguments. */
tg_status tg_dist_get_stats(const tg_dist *dist, tg_dist_stats *stats);
/** Checks that every rank arrives, after as many tg_dist_wait steps (a reduction with the
 *  handle's timeout, so MPI_Finalize never waits for a rank that is not coming), removes the
 *  hook, frees the buffers and the duplicated communicator, and finalises MPI if tg_dist_init
 *  initialised it (collective). TG_OK, or TG_ERR_STATE (the reason on the context) when the
 *  handle is broken: a timeout or MPI failure, before or in this check, or ranks that end after
 *  different numbers of steps. Then only the hook is removed: MPI, the handle and the memory a
 *  pending reduction may write to are left as they are, and the program should end the job
 *  (MPI_Abort). NULL: TG_OK. */
tg_status tg_dist_finalize(tg_dist *dist);

#ifdef __cplusplus
}
#endif

#endif
