/*
 * mpi/buckets.c — the gradient all-reduce, bucketed and driven by the backward walk.
 *
 * When does a parameter's gradient become complete? The walk visits tape entries from the
 * last to the first, and a node's hook fires before that node's VJP, so when the hook of entry
 * e fires, every entry above e has added its share. A parameter is therefore complete once the
 * walk is below the lowest entry that reads it. At the first hook of a pass we scan the tape
 * once for that entry per parameter (no allocation: the arrays are sized at attach time), and
 * every later hook starts, in bucket order, the buckets whose parameters are all complete.
 * Buckets start strictly in order, on every rank the same (a rank starting bucket 2 before 1
 * would pair its messages with another rank's wrong bucket), and whatever the walk did not
 * start (a failed backward, an unused parameter, a parameter a user's hook watches) is started
 * by tg_dist_wait.
 */
#include "mpi/dist_internal.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int compare_refs(const void *a, const void *b) {
    const tg_tensor *x = ((const dist_param_ref *)a)->tensor, *y = ((const dist_param_ref *)b)->tensor;
    return x < y ? -1 : x > y;
}

/* The parameter index of t, or -1. */
static int find_param(const tg_dist *dist, const tg_tensor *t) {
    int low = 0, high = dist->n_params - 1;
    while (low <= high) {
        int mid = low + (high - low) / 2;
        const tg_tensor *m = dist->sorted[mid].tensor;
        if (m == t) return dist->sorted[mid].index;
        if (m < t) low = mid + 1;
        else high = mid - 1;
    }
    return -1;
}

/* ---- one step -------------------------------------------------------------------------------- */

/* Whether a backward hook of the user's (not ours) fires on parameter p. Parameter hooks run
 * after the walk, when a bucket started from the walk has been copied already: a hook that
 * changes p's gradient (clipping, freezing) would change nothing that is reduced. The rules are
 * those of autograd/hooks.c, read from the context's hook table. */
static bool hooked(const tg_dist *dist, const tg_tensor *p) {
    const tg_ctx *ctx = dist->ctx;
    for (int i = 0; i < ctx->n_hooks; i++) {
        const tgi_hook *h = &ctx->hooks[i];
        if (!h->fn || h->pass != TG_PASS_BACKWARD || h->handle == dist->hook) continue;
        bool labelled = p->label[0] && h->pattern;
        if (h->target == TGI_HOOK_GLOBAL || (h->target == TGI_HOOK_TENSOR && h->tensor == p) ||
            ((h->target == TGI_HOOK_PATTERN || h->target == TGI_HOOK_PARAMS) && labelled &&
             tg_pattern_match(h->pattern, p->label)))
            return true;
    }
    return false;
}

/* The pass begins: where each parameter is last added to, so where each bucket is complete. A
 * bucket with a hooked parameter waits for tg_dist_wait (after every hook), and since buckets
 * start in order, so do the ones after it: what hooks do to parameter gradients is reduced, at
 * the price of the overlap. */
static void plan_pass(tg_dist *dist, const tg_tape *tape, int64_t top) {
    for (int i = 0; i < dist->n_params; i++) dist->first_use[i] = INT64_MAX;
    for (int64_t e = top; e >= 0; e--) {
        const tg_op_call *call = &tape->entries[e]->call;
        for (int k = 0; k < call->n_inputs; k++) {
            const tg_tensor *in = call->inputs[k];
            if (in->node >= 0 || !in->persistent) continue; /* a recorded node, or a tape leaf */
            int p = find_param(dist, in);
            if (p >= 0) dist->first_use[p] = e;
        }
    }
    for (int b = 0; b < dist->n_buckets; b++) {
        dist_bucket *bucket = &dist->buckets[b];
        bucket->ready_below = INT64_MAX; /* a bucket no entry reads is complete at once */
        for (int k = 0; k < bucket->count; k++) {
            int p = dist->order[bucket->first + k];
            int64_t use = hooked(dist, dist->params[p]) ? INT64_MIN : dist->first_use[p];
            if (use < bucket->ready_below) bucket->ready_below = use;
        }
    }
    dist->tape = tape;
    dist->first_launch_entry = -1;
    dist->launched_in_backward = 0;
    dist->pass = tape->ctx->backward_passes;
    dist->in_pass = true;
}

/* Copies the bucket's gradients in, noting the first non-finite one and which were reached,
 * and starts its reduction. */
static tg_status launch(tg_dist *dist, int b) {
    const dist_bucket *bucket = &dist->buckets[b];
    float *out = dist->flat + bucket->offset;
    for (int k = 0; k < bucket->count; k++) {
        int p = dist->order[bucket->first + k];
        const tg_tensor *t = dist->params[p];
        float probe = 0.0f; /* x * 0 is 0 for every finite x and NaN otherwise: one test */
        if (t->grad) {
            for (int64_t i = 0; i < t->size; i++) probe += t->grad[i] * 0.0f;
            memcpy(out, t->grad, (size_t)t->size * sizeof(float));
        } else {
            memset(out, 0, (size_t)t->size * sizeof(float));
        }
        if (probe != 0.0f && (dist->bad_param < 0 || p < dist->bad_param)) dist->bad_param = p;
        dist->agreement[2 + p] = tg_grad_is_set(t) ? 0 : 1; /* as the optimizers will judge it */
        out += t->size;
    }
    dist->next_launch = b + 1;
    dist->requests[b] = MPI_REQUEST_NULL; /* what MPI_Waitall skips should the start fail */
    return dist_check_mpi(dist, MPI_Iallreduce(MPI_IN_PLACE, dist->flat + bucket->offset,
                                               (int)bucket->elems, MPI_FLOAT, MPI_SUM, dist->comm,
                                               &dist->requests[b]),
                          "MPI_Iallreduce of a gradient bucket");
}

/* Starts, in order, every bucket complete while the walk is at entry `at` (-1: after it). */
static tg_status launch_ready(tg_dist *dist, int64_t at, bool in_backward) {
    tg_status status = TG_OK;
    while (status == TG_OK && dist->next_launch < dist->n_buckets &&
           dist->buckets[dist->next_launch].ready_below > at) {
        if (dist->next_launch == 0) dist->first_launch_entry = in_backward ? at : -1;
        if (in_backward) dist->launched_in_backward++;
        status = launch(dist, dist->next_launch);
    }
    return status;
}

/* Open MPI moves a non-blocking collective on only inside MPI calls: one test per hook keeps
 * the started buckets flowing while the walk computes. */
static void make_progress(tg_dist *dist) {
    if (dist->next_probe >= dist->next_launch) return;
    int done = 0;
    MPI_Test(&dist->requests[dist->next_probe], &done, MPI_STATUS_IGNORE);
    if (done) dist->next_probe++;
}

static tg_status on_backward(tg_ctx *ctx, const tg_hook_event *event, void *user) {
    tg_dist *dist = user;
    const tg_tensor *node = event->node;
    if (dist->broken) return dist_usable(dist); /* its buffers are still being reduced into */
    if (!dist->in_pass || dist->pass != ctx->backward_passes) {
        if (dist->in_pass)
            return dist_error(ctx, TG_ERR_STATE, "dist: a second backward pass before "
                              "tg_dist_wait (one backward per step: accumulate on the tape)");
        if (node->node < 0 || !node->tape) return TG_OK; /* not a walk of a tape */
        plan_pass(dist, node->tape, node->node);
    }
    int64_t at = node->node >= 0 && node->tape == dist->tape ? node->node : -1;
    tg_status status = launch_ready(dist, at, true);
    make_progress(dist);
    return status;
}

/* The agreement after the reductions, as minima over the ranks in one MPI_Allreduce: the lowest
 * rank that failed, the first non-finite gradient (rank * n_params + parameter), and per
 * parameter whether no rank reached it (a parameter one rank's rows reach and another's do not
 * must be stepped by every optimizer, or the replicas part: n_params more integers are cheaper
 * than a second collective per step). */
static tg_status agree_on_step(tg_dist *dist, tg_status local) {
    int unattached[2], *mine = dist->agreement ? dist->agreement : unattached;
    int count = dist->agreement ? 2 + dist->n_params : 2; /* the same on every rank: attach checks */
    mine[0] = local != TG_OK ? dist->rank : INT_MAX;
    mine[1] = dist->bad_param >= 0 && !dist->reduce_nonfinite
        ? dist->rank * dist->n_params + dist->bad_param : INT_MAX;
    tg_status status = dist_allreduce(dist, mine, count, MPI_INT, MPI_MIN, "step agreement (tg_dist_wait)");
    if (status != TG_OK) return status;
    long long step = (long long)dist->steps;
    if (mine[0] != INT_MAX) {
        /* the failed rank's status and message, the same words on every rank */
        struct { int status; char msg[1024]; } said = {(int)local, ""};
        if (dist->rank == mine[0]) snprintf(said.msg, sizeof said.msg, "%s", tg_errmsg(dist->ctx));
        status = dist_bcast(dist, &said, (int)sizeof said, MPI_BYTE, mine[0],
                            "broadcast of a failure (tg_dist_wait)", -1);
        if (status != TG_OK) return status;
        tg_clear_error(dist->ctx);
        return dist_error(dist->ctx, (tg_status)said.status, "rank %d of %d failed at step %lld "
                          "(every rank stops): %s", mine[0], dist->size, step, said.msg);
    }
    if (mine[1] != INT_MAX) {
        int rank = mine[1] / dist->n_params, p = mine[1] % dist->n_params;
        tg_clear_error(dist->ctx);
        return dist_error(dist->ctx, TG_ERR_NUMERIC, "rank %d of %d: non-finite gradient of '%s' "
                          "at step %lld (before the all-reduce; every rank stops)", rank, dist->size,
                          tg_tensor_name(dist->params[p]), step);
    }
    return TG_OK;
}

/* The means back into the gradients: the sum times 1/size, the same rounding on every rank; a
 * parameter some rank reached counts as reached on every rank (what one process does with the
 * whole batch), one no rank reached stays skipped everywhere. */
static void unpack(tg_dist *dist) {
    const float scale = 1.0f / (float)dist->size;
    const float *in = dist->flat;
    for (int k = 0; k < dist->n_params; k++) {
        int p = dist->order[k];
        tg_tensor *t = dist->params[p];
        if (t->grad) {
            for (int64_t i = 0; i < t->size; i++) t->grad[i] = in[i] * scale;
            if (dist->agreement[2 + p] == 0) t->grad_unset = false;
        }
        in += t->size;
    }
}

/* Completes every started bucket in order; the first failure, and none after a timeout (the
 * handle is broken: its later requests are left as they are). */
static tg_status complete_buckets(tg_dist *dist) {
    tg_status status = TG_OK;
    for (int b = 0; b < dist->n_buckets && !dist->broken; b++) {
        tg_status done = dist_complete(dist, &dist->requests[b], "all-reduce of bucket", b);
        if (status == TG_OK) status = done;
    }
    return status;
}

tg_status tg_dist_wait(tg_dist *dist, tg_status local) {
    if (!dist) return TG_ERR_INVALID;
    if (dist->broken) return dist_usable(dist);
    double start = MPI_Wtime();
    /* every bucket is reduced on every rank every step, whatever happened here */
    tg_status status = launch_ready(dist, -1, false);
    while (dist->next_launch < dist->n_buckets) {
        tg_status started = launch(dist, dist->next_launch);
        if (status == TG_OK) status = started;
    }
    tg_status waited = complete_buckets(dist);
    if (status == TG_OK) status = waited;
    if (local == TG_OK && status != TG_OK) local = status;
    status = dist->broken ? waited : agree_on_step(dist, local);
    if (status == TG_OK) unpack(dist);
    dist->wait_seconds += MPI_Wtime() - start;
    dist->steps++;
    dist->in_pass = false;
    dist->next_launch = dist->next_probe = 0;
    dist->bad_param = -1;
    return status;
}

/* ---- attaching ------------------------------------------------------------------------------- */

/* Reverse registration order, cut into buckets of about bucket_bytes. */
static void plan_buckets(tg_dist *dist, size_t bucket_bytes) {
    int64_t limit = (int64_t)(bucket_bytes / sizeof(float)), offset = 0;
    dist->n_buckets = 0;
    for (int k = 0; k < dist->n_params; k++) {
        dist->order[k] = dist->n_params - 1 - k;
        int64_t size = dist->params[dist->order[k]]->size;
        dist_bucket *last = dist->n_buckets ? &dist->buckets[dist->n_buckets - 1] : NULL;
        if (!last || last->elems + size > limit) {
            last = &dist->buckets[dist->n_buckets++];
            *last = (dist_bucket){.first = k, .offset = offset};
        }
        last->count++;
        last->elems += size;
        offset += size;
    }
    dist->flat_elems = offset;
}

static tg_status allocate(tg_dist *dist, int n) {
    tg_ctx *ctx = dist->ctx;
    dist->params = dist_calloc(ctx, (size_t)n * sizeof *dist->params);
    dist->order = dist_calloc(ctx, (size_t)n * sizeof *dist->order);
    dist->sorted = dist_calloc(ctx, (size_t)n * sizeof *dist->sorted);
    dist->first_use = dist_calloc(ctx, (size_t)n * sizeof *dist->first_use);
    dist->buckets = dist_calloc(ctx, (size_t)n * sizeof *dist->buckets);
    dist->requests = dist_calloc(ctx, (size_t)n * sizeof *dist->requests);
    dist->agreement = dist_calloc(ctx, (size_t)(n + 2) * sizeof *dist->agreement);
    if (!dist->params || !dist->order || !dist->sorted || !dist->first_use || !dist->buckets ||
        !dist->requests || !dist->agreement)
        return dist_error(ctx, TG_ERR_NOMEM, "dist_attach: out of memory");
    dist->n_params = n;
    return TG_OK;
}

void dist_detach(tg_dist *dist, bool keep_buffers) {
    tg_ctx *ctx = dist->ctx;
    if (dist->hook > 0) tg_hook_remove(ctx, dist->hook);
    dist->hook = 0;
    if (keep_buffers) return;
    size_t n = (size_t)dist->n_params;
    dist_free(ctx, dist->params, n * sizeof *dist->params);
    dist_free(ctx, dist->order, n * sizeof *dist->order);
    dist_free(ctx, dist->sorted, n * sizeof *dist->sorted);
    dist_free(ctx, dist->first_use, n * sizeof *dist->first_use);
    dist_free(ctx, dist->buckets, n * sizeof *dist->buckets);
    dist_free(ctx, dist->requests, n * sizeof *dist->requests);
    dist_free(ctx, dist->agreement, (n + 2) * sizeof *dist->agreement);
    dist_free(ctx, dist->flat, (size_t)dist->flat_elems * sizeof(float));
    dist->params = NULL;
    dist->order = NULL;
    dist->sorted = NULL;
    dist->first_use = NULL;
    dist->buckets = NULL;
    dist->requests = NULL;
    dist->agreement = NULL;
    dist->flat = NULL;
    dist->n_params = dist->n_buckets = 0;
    dist->flat_elems = 0;
    dist->hook = 0;
}

/* The configuration's own checks: TG_ERR_INVALID naming the field. */
static tg_status check_config(tg_dist *dist, const tg_dist_config *config) {
    if (config && !(config->timeout_seconds >= 0))
        return dist_error(dist->ctx, TG_ERR_INVALID, "dist_attach: timeout_seconds is %g (0: keep the "
                          "handle's, %g s; > 0: seconds; INFINITY: never)", config->timeout_seconds,
                          dist->timeout);
    return TG_OK;
}

tg_status tg_dist_attach(tg_dist *dist, tg_tensor *const *params, int n_params,
                         const tg_dist_config *config) {
    if (!dist) return TG_ERR_INVALID;
    bool attached = dist->hook > 0;
    size_t bucket_bytes = config && config->bucket_bytes ? config->bucket_bytes : TG_DIST_BUCKET_DEFAULT;
    /* what every rank must share: the parameters' count, sizes and shapes, the configuration */
    tg_dist_field fields[DIST_PARAM_FIELDS + 2] = {
        [DIST_PARAM_FIELDS] = {.name = "bucket_bytes", .value = (int64_t)bucket_bytes},
        [DIST_PARAM_FIELDS + 1] = {.name = "reduce_nonfinite", .value = config && config->reduce_nonfinite},
    };
    tg_status status = dist_param_fields(dist, params, n_params, "dist_attach", fields);
    if (status == TG_OK && attached)
        status = dist_error(dist->ctx, TG_ERR_STATE, "dist_attach: already attached (once per tg_dist)");
    if (status == TG_OK) status = check_config(dist, config);
    if (status == TG_OK && n_params > 0) status = allocate(dist, n_params);
    if (status == TG_OK) {
        for (int i = 0; i < n_params; i++) {
            dist->params[i] = params[i];
            dist->sorted[i] = (dist_param_ref){params[i], i};
        }
        qsort(dist->sorted, (size_t)n_params, sizeof *dist->sorted, compare_refs);
        dist->reduce_nonfinite = config && config->reduce_nonfinite;
        plan_buckets(dist, bucket_bytes);
        dist->flat = dist_calloc(dist->ctx, (size_t)dist->flat_elems * sizeof(float));
        if (!dist->flat) status = dist_error(dist->ctx, TG_ERR_NOMEM, "dist_attach: out of memory "
                                             "for %lld gradient floats", (long long)dist->flat_elems);
    }
    /* taken by every rank whatever failed here, so none waits; the same fields give the same
     * buckets, and a bucket of one rank pairs with the bucket of the same index on the others */
    tg_status same = dist_require_same(dist, fields, DIST_PARAM_FIELDS + 2, status != TG_OK, "dist_attach",
                                       TG_ERR_SHAPE, "every rank must build the same model and attach it "
                                       "with the same configuration");
    if (status == TG_OK) status = same;
    if (status == TG_OK && config && config->timeout_seconds > 0) dist->timeout = config->timeout_seconds;
    if (status == TG_OK) {
        dist->hook = tg_hook_global(dist->ctx, TG_PASS_BACKWARD, on_backward, dist);
        if (dist->hook < 0) status = tg_errcode(dist->ctx);
    }
    if (status != TG_OK && !attached) dist_detach(dist, dist->broken);
    return status;
}

tg_status tg_dist_attach_module(tg_dist *dist, const tg_module *module, const tg_dist_config *config) {
    if (!dist) return TG_ERR_INVALID;
    int n = tg_module_params(module, NULL, 0);
    tg_tensor **params = n > 0 ? dist_calloc(dist->ctx, (size_t)n * sizeof *params) : NULL;
    if (n > 0 && !params) return dist_error(dist->ctx, TG_ERR_NOMEM, "dist_attach_module: out of memory");
    tg_module_params(module, params, n);
    tg_status status = tg_dist_attach(dist, params, n, config);
    dist_free(dist->ctx, params, (size_t)n * sizeof *params);
    return status;
}
