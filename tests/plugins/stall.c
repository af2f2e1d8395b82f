/* tests/plugins/stall.c — a hook "stall" that puts one rank of `mpirun tapegrad train` to sleep.
 *
 * TAPEGRAD_TEST_STALL=RANK:SECONDS: the process whose OMPI_COMM_WORLD_RANK is RANK sleeps SECONDS
 * in its first hook call of step 2 (inside backward, before the step's all-reduce), once; every
 * other process and call passes. Every rank loads it with the same arguments, so the ranks agree
 * on their options and one of them stalls: tests/test_dist.c checks that the others end the job. */
#include <stdlib.h>
#include <time.h>

#include "tapegrad.h"

static tg_status stall(tg_ctx *ctx, const tg_hook_event *event, void *user) {
    (void)ctx, (void)user;
    static int done;
    const char *spec = getenv("TAPEGRAD_TEST_STALL"), *rank = getenv("OMPI_COMM_WORLD_RANK");
    char *colon;
    if (done || event->step != 2 || !spec || !rank) return TG_OK;
    long target = strtol(spec, &colon, 10);
    if (*colon != ':' || target != strtol(rank, NULL, 10)) return TG_OK;
    done = 1;
    struct timespec nap = {.tv_sec = (time_t)strtol(colon + 1, NULL, 10)};
    nanosleep(&nap, NULL);
    return TG_OK;
}

TG_PLUGIN_DEFINE_ABI;

TG_PLUGIN_EXPORT tg_status tapegrad_plugin_init(tg_ctx *ctx) {
    return tg_hook_export(ctx, "stall", stall, NULL);
}
