/*
 * cli/schedule_arg.c — `train --schedule`: the spelling of a learning-rate schedule on the
 * command line, into the tg_schedule the run's optimizer follows, and back into words.
 *
 *   cosine | linear | step:N:GAMMA | warmup:N[,cosine|,linear|,step:N:GAMMA]
 *
 * cosine and linear decay to 0 at the run's last step (total_steps: --steps, settled later);
 * warm-up rises linearly over the first N steps, then the rest runs on the steps after it.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/study.h"

/* A whole number from 1 to 1e7 at *text, up to `end` (a ':' or ',' or the string's end). */
static bool whole_at(const char **text, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(*text, &end, 10);
    if (end == *text || errno || v < 1 || v > 10000000) return false;
    *text = end;
    *out = v;
    return true;
}

/* The decay after any warm-up, at text; false when it is not one. */
static bool parse_decay(const char *text, tg_schedule *s) {
    if (strcmp(text, "cosine") == 0) s->kind = TG_SCHEDULE_COSINE;
    else if (strcmp(text, "linear") == 0) s->kind = TG_SCHEDULE_LINEAR;
    else if (strncmp(text, "step:", 5) == 0) {
        const char *at = text + 5;
        if (!whole_at(&at, &s->step_size) || *at != ':') return false;
        char *end;
        errno = 0;
        double gamma = strtod(at + 1, &end);
        if (end == at + 1 || *end || errno || !(gamma >= 0 && gamma <= 1e6)) return false;
        s->kind = TG_SCHEDULE_STEP;
        s->gamma = (float)gamma;
    } else return false;
    return true;
}

int parse_schedule_arg(const char *text, tg_schedule *out) {
    tg_schedule s = {.kind = TG_SCHEDULE_CONSTANT};
    if (!text || !*text) return -1;
    if (strncmp(text, "warmup:", 7) == 0) {
        const char *at = text + 7;
        if (!whole_at(&at, &s.warmup_steps)) return -1;
        if (*at == ',' && !parse_decay(at + 1, &s)) return -1;
        if (*at && *at != ',') return -1;
    } else if (!parse_decay(text, &s)) return -1;
    *out = s;
    return 0;
}

int settle_schedule(tg_schedule *s, int steps, char *why, size_t size) {
    bool to_the_end = s->kind == TG_SCHEDULE_COSINE || s->kind == TG_SCHEDULE_LINEAR;
    s->total_steps = steps;
    if (to_the_end && s->warmup_steps >= steps) {
        snprintf(why, size, "the warm-up (%lld steps) leaves no step of --steps %d to decay over",
                 (long long)s->warmup_steps, steps);
        return -1;
    }
    return 0;
}
