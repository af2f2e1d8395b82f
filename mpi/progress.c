/*
 * mpi/progress.c — waiting for a collective without spinning forever.
 *
 * A blocking MPI call waits as long as a peer takes: a rank that was stopped, that hangs, or that
 * runs other collectives than this one (different --steps) leaves the others waiting forever,
 * at 100% CPU since Open MPI polls. So every collective of this layer is started non-blocking
 * and completed by dist_complete: MPI_Test in a tight loop while the request is young (the
 * step's reductions usually end there, so a normal step is not slowed), then sleeps between
 * tests that grow with the time pending (1/16 of it, 10 us to 1 ms: completion is seen at most
 * that much late, and a long wait costs next to no CPU), until it has made no progress for the
 * handle's timeout.
 *
 * Then MPI cannot say which rank is missing from a collective, so we ask: a census sends each
 * other rank a query (point-to-point messages never match collectives) and waits a little for
 * the answers. A rank waiting in dist_complete answers between its sleeps with the collective
 * it waits in; one that does not answer is stopped, hung, or busy outside this layer. The
 * message names them: "no progress from rank 1 for 300 s (it does not answer ...)" or "rank 1
 * waits in the step agreement (tg_dist_wait) at step 30 instead". The request stays pending (MPI cannot cancel
 * a collective), so the handle is broken from then on: every call refuses with that message,
 * and tg_dist_finalize leaves MPI alone. The program should end the job (the tool calls
 * MPI_Abort); the library never aborts.
 */
#include "mpi/dist_internal.h"

#include <stdio.h>
#include <time.h>

#define TAG_QUERY 7461
#define TAG_ANSWER 7462
#define BUSY_SECONDS 100e-6     /* tight MPI_Test loop: a reduction of a step ends in this */
#define SLEEP_MIN 10e-6
#define SLEEP_MAX 1e-3
#define CENSUS_SECONDS 1.0      /* how long the answers are waited for (at most) */

tg_status dist_usable(tg_dist *dist) {
    if (!dist->broken) return TG_OK;
    return dist_error(dist->ctx, TG_ERR_STATE, "%s", dist->broken_msg);
}

static void pause_for(double seconds) {
    struct timespec t = {.tv_sec = 0, .tv_nsec = (long)(seconds * 1e9)};
    nanosleep(&t, NULL);
}

/* The collective this rank waits in, in words: "all-reduce of bucket 3 at step 12". */
static void describe(const tg_dist *dist, const char *what, int index, char *out, size_t size) {
    char number[24] = "";
    if (index >= 0) snprintf(number, sizeof number, " %d", index);
    snprintf(out, size, "%s%s at step %lld", what, number, (long long)dist->steps);
}

/* Answers every census query waiting for this rank with the collective it waits in. The answer
 * is sent from the handle (its buffer must outlive the send); while the previous answer is still
 * on its way the query waits for the next round. */
static void answer_queries(tg_dist *dist) {
    for (;;) {
        int sent = 1, waiting = 0;
        if (dist->answer_request != MPI_REQUEST_NULL)
            MPI_Test(&dist->answer_request, &sent, MPI_STATUS_IGNORE);
        MPI_Status status;
        if (!sent || MPI_Iprobe(MPI_ANY_SOURCE, TAG_QUERY, dist->comm, &waiting, &status) != MPI_SUCCESS ||
            !waiting)
            return;
        int query;
        if (MPI_Recv(&query, 1, MPI_INT, status.MPI_SOURCE, TAG_QUERY, dist->comm, MPI_STATUS_IGNORE) !=
            MPI_SUCCESS)
            return;
        describe(dist, dist->stage_what, dist->stage_index, dist->answer.stage, sizeof dist->answer.stage);
        if (MPI_Isend(&dist->answer, (int)sizeof dist->answer, MPI_BYTE, status.MPI_SOURCE, TAG_ANSWER,
                      dist->comm, &dist->answer_request) != MPI_SUCCESS)
            dist->answer_request = MPI_REQUEST_NULL;
    }
}

/* Appends to out what the census learnt: the ranks that do not answer, then the first that waits
 * in another collective than ours (mine). */
static void census_verdict(const tg_dist *dist, const char *mine, const dist_answer *answers,
                           const bool *answered, double pending, char *out, size_t size) {
    size_t used = strlen(out);
    int silent = 0, elsewhere = -1;
    for (int r = 0; r < dist->size; r++) {
        if (r == dist->rank) continue;
        if (!answered[r]) silent++;
        else if (elsewhere < 0 && strcmp(answers[r].stage, mine) != 0) elsewhere = r;
    }
    if (silent) {
        used += (size_t)snprintf(out + used, used < size ? size - used : 0, "no progress from rank%s",
                                 silent > 1 ? "s" : "");
        for (int r = 0, k = 0; r < dist->size && k < 8; r++)
            if (r != dist->rank && !answered[r])
                used += (size_t)snprintf(out + used, used < size ? size - used : 0, "%s%d", k++ ? ", " : " ", r);
        used += (size_t)snprintf(out + used, used < size ? size - used : 0, "%s for %.3g s (%s not answer: "
                                 "stopped, hung, or busy outside tapegrad_dist's collectives)",
                                 silent > 8 ? ", ..." : "", pending, silent > 1 ? "they do" : "it does");
    }
    if (elsewhere >= 0)
        used += (size_t)snprintf(out + used, used < size ? size - used : 0, "%sno progress for %.3g s: rank %d "
                                 "waits in the %s instead (the ranks run different collectives: are they "
                                 "started with the same arguments?)", silent ? "; " : "", pending, elsewhere,
                                 answers[elsewhere].stage);
    if (!silent && elsewhere < 0)
        snprintf(out + used, used < size ? size - used : 0, "no progress for %.3g s, though every rank "
                 "waits in it (MPI itself is stuck: a network or launcher fault?)", pending);
}

/* Asks every other rank where it is and waits up to CENSUS_SECONDS (or half the timeout) for the
 * answers, answering theirs meanwhile; then the verdict into out. */
static void take_census(tg_dist *dist, const char *mine, double pending, char *out, size_t size) {
    int n = dist->size;
    dist_answer *answers = dist_calloc(dist->ctx, (size_t)n * sizeof *answers);
    MPI_Request *receives = dist_calloc(dist->ctx, (size_t)n * sizeof *receives);
    bool *answered = dist_calloc(dist->ctx, (size_t)n * sizeof *answered);
    if (!answers || !receives || !answered) {
        snprintf(out + strlen(out), size - strlen(out), "no progress for %.3g s", pending);
    } else {
        for (int r = 0; r < n; r++) {
            receives[r] = MPI_REQUEST_NULL;
            if (r == dist->rank) continue;
            MPI_Request query;
            /* dist->query lives as long as the handle, which a broken handle's finalize keeps */
            if (MPI_Isend(&dist->query, 1, MPI_INT, r, TAG_QUERY, dist->comm, &query) == MPI_SUCCESS)
                MPI_Request_free(&query);
            MPI_Irecv(&answers[r], (int)sizeof answers[r], MPI_BYTE, r, TAG_ANSWER, dist->comm, &receives[r]);
        }
        double start = MPI_Wtime(), window = dist->timeout / 2 < CENSUS_SECONDS ? dist->timeout / 2 : CENSUS_SECONDS;
        for (int missing = n - 1; missing > 0 && MPI_Wtime() - start < window;) {
            for (int r = 0; r < n; r++) {
                int done = 0;
                if (r == dist->rank || answered[r]) continue;
                if (MPI_Test(&receives[r], &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && done) {
                    answered[r] = true;
                    missing--;
                }
            }
            answer_queries(dist);
            pause_for(SLEEP_MAX);
        }
        for (int r = 0; r < n; r++) /* a receive may be cancelled, unlike a collective */
            if (receives[r] != MPI_REQUEST_NULL && !answered[r]) {
                MPI_Cancel(&receives[r]);
                MPI_Request_free(&receives[r]);
            }
        for (int r = 0; r < n; r++) answers[r].stage[sizeof answers[r].stage - 1] = '\0';
        census_verdict(dist, mine, answers, answered, pending, out, size);
    }
    dist_free(dist->ctx, answers, (size_t)n * sizeof *answers);
    dist_free(dist->ctx, receives, (size_t)n * sizeof *receives);
    dist_free(dist->ctx, answered, (size_t)n * sizeof *answered);
}

/* The handle is broken from now on, for the reason in broken_msg: the error, which replaces any
 * on the context (it is why this rank stops). */
static tg_status break_handle(tg_dist *dist) {
    dist->broken = true;
    tg_clear_error(dist->ctx);
    return dist_error(dist->ctx, TG_ERR_STATE, "%s; this tg_dist can no longer be used: end the job "
                      "(MPI_Abort)", dist->broken_msg);
}

/* The request made no progress for the timeout: the census, the message, a broken handle. */
static tg_status timed_out(tg_dist *dist, const char *what, int index, double pending) {
    char mine[sizeof dist->answer.stage];
    describe(dist, what, index, mine, sizeof mine);
    int used = snprintf(dist->broken_msg, sizeof dist->broken_msg, "dist: %s: ", mine);
    if (dist->comm == MPI_COMM_NULL) /* tg_dist_init's duplication: nobody to ask yet */
        snprintf(dist->broken_msg + used, sizeof dist->broken_msg - (size_t)used, "no progress for %.3g s "
                 "(a rank did not call tg_dist_init?)", pending);
    else
        take_census(dist, mine, pending, dist->broken_msg + used, sizeof dist->broken_msg - (size_t)used);
    return break_handle(dist);
}

/* MPI failed inside a collective (a rank died, or the ranks ran different collectives and the
 * messages did not fit): what the communicator holds is unknown, so the handle is broken too. */
static tg_status failed(tg_dist *dist, int rc, const char *what, int index) {
    char mine[sizeof dist->answer.stage], reason[MPI_MAX_ERROR_STRING] = "unknown MPI error";
    int length = 0;
    describe(dist, what, index, mine, sizeof mine);
    MPI_Error_string(rc, reason, &length);
    snprintf(dist->broken_msg, sizeof dist->broken_msg, "dist: %s failed on rank %d of %d: %s (a rank "
             "ended, or the ranks run different collectives)", mine, dist->rank, dist->size, reason);
    return break_handle(dist);
}

tg_status dist_complete(tg_dist *dist, MPI_Request *request, const char *what, int index) {
    if (*request == MPI_REQUEST_NULL) return TG_OK;
    int done = 0;
    double start = -1, pending = 0;
    dist->stage_what = what;
    dist->stage_index = index;
    for (;;) {
        int rc = MPI_Test(request, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return failed(dist, rc, what, index);
        if (done) return TG_OK;
        double now = MPI_Wtime();
        if (start < 0) start = now;
        pending = now - start;
        if (pending < BUSY_SECONDS) continue;
        if (pending >= dist->timeout) return timed_out(dist, what, index, pending);
        if (dist->comm != MPI_COMM_NULL) answer_queries(dist);
        double nap = pending / 16;
        pause_for(nap < SLEEP_MIN ? SLEEP_MIN : nap > SLEEP_MAX ? SLEEP_MAX : nap);
    }
}

tg_status dist_allreduce(tg_dist *dist, void *values, int count, MPI_Datatype type, MPI_Op op,
                         const char *what) {
    tg_status status = dist_usable(dist);
    MPI_Request request = MPI_REQUEST_NULL;
    if (status == TG_OK)
        status = dist_check_mpi(dist, MPI_Iallreduce(MPI_IN_PLACE, values, count, type, op, dist->comm,
                                                     &request), what);
    return status == TG_OK ? dist_complete(dist, &request, what, -1) : status;
}

tg_status dist_bcast(tg_dist *dist, void *values, int count, MPI_Datatype type, int root,
                     const char *what, int index) {
    tg_status status = dist_usable(dist);
    MPI_Request request = MPI_REQUEST_NULL;
    if (status == TG_OK)
        status = dist_check_mpi(dist, MPI_Ibcast(values, count, type, root, dist->comm, &request), what);
    return status == TG_OK ? dist_complete(dist, &request, what, index) : status;
}

tg_status dist_allgather(tg_dist *dist, const void *mine, void *all, int bytes, const char *what) {
    tg_status status = dist_usable(dist);
    MPI_Request request = MPI_REQUEST_NULL;
    if (status == TG_OK)
        status = dist_check_mpi(dist, MPI_Iallgather(mine, bytes, MPI_BYTE, all, bytes, MPI_BYTE,
                                                     dist->comm, &request), what);
    return status == TG_OK ? dist_complete(dist, &request, what, -1) : status;
}
