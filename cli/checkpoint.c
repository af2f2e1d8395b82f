/*
 * cli/checkpoint.c — --load: a checkpoint into the model the options built, all of it or, with
 * --load-partial, what matches. A checkpoint of a bigger model (a ResNet-14's into a ResNet-8)
 * holds tensors the model lacks; one of a smaller model lacks tensors the model has: loading the
 * names both have without a word would train a model that is partly the checkpoint's and partly
 * new, so the mismatch is refused unless asked for, and always said.
 */
#include "cli/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHOWN 3 /* names listed of each side */

typedef char name_slot[TG_LABEL_MAX];

static int by_name(const void *a, const void *b) {
    return strcmp(a, b);
}

/* The tensors one side has and the other lacks: how many, and the first few names. */
typedef struct side {
    int count, total;
    const char *shown[SHOWN];
} side;

static void note_name(side *s, const char *name) {
    if (s->count < SHOWN) s->shown[s->count] = name;
    s->count++;
}

/* Appends "N of the <whose> M tensors are not in <where> ('a', 'b', 'c', ...)" to buf. */
static void describe(const side *s, const char *whose, const char *where, char *buf, size_t size) {
    if (!s->count) return;
    size_t len = strlen(buf);
    int n = snprintf(buf + len, size - len, "%s%d of the %s %d tensors are not in %s (",
                     len ? "; " : "", s->count, whose, s->total, where);
    for (int i = 0; i < s->count && i < SHOWN && n >= 0; i++) {
        len = strlen(buf);
        n = snprintf(buf + len, size - len, "%s'%s'", i ? ", " : "", s->shown[i]);
    }
    len = strlen(buf);
    snprintf(buf + len, size - len, "%s)", s->count > SHOWN ? ", ..." : "");
}

/* Which of state the file holds (present, in order), and both sides' mismatches. */
static int compare(tg_tensor *const *state, int n, name_slot *names, int in_file,
                   tg_tensor **present, side *missing, side *extra) {
    bool *used = calloc((size_t)in_file + 1, sizeof *used);
    if (!used) return -1;
    int n_present = 0;
    *missing = (side){.total = n};
    *extra = (side){.total = in_file};
    /* the optimizer's state that --save writes beside the model is no model tensor (--resume
     * reads it) */
    name_slot *optimizer = in_file ? bsearch("optimizer.state", names, (size_t)in_file, sizeof *names, by_name) : NULL;
    if (optimizer) {
        used[optimizer - names] = true;
        extra->total--;
    }
    for (int i = 0; i < n; i++) {
        name_slot *hit = in_file ? bsearch(state[i]->label, names, (size_t)in_file, sizeof *names, by_name) : NULL;
        if (hit) {
            used[hit - names] = true;
            present[n_present++] = state[i];
        } else {
            note_name(missing, state[i]->label);
        }
    }
    for (int i = 0; i < in_file; i++)
        if (!used[i]) note_name(extra, names[i]);
    free(used);
    return n_present;
}

static bool load(tg_ctx *ctx, const char *path, tg_tensor *const *state, int n, bool partial,
                 name_slot *names, int in_file, char *why, size_t why_size, char *note,
                 size_t note_size) {
    tg_tensor **present = malloc(((size_t)n + 1) * sizeof *present);
    side missing, extra;
    int n_present = present ? compare(state, n, names, in_file, present, &missing, &extra) : -1;
    if (n_present < 0) {
        free(present);
        snprintf(why, why_size, "--load %s: out of memory", path);
        return false;
    }
    char mismatch[2 * (TG_LABEL_MAX + 4) * SHOWN + 160] = "";
    describe(&missing, "model's", "the file", mismatch, sizeof mismatch);
    describe(&extra, "file's", "the model", mismatch, sizeof mismatch);
    if (mismatch[0] && !partial) {
        snprintf(why, why_size, "--load %s does not fit the model: %s (a checkpoint of another "
                 "model or size? --load-partial loads the tensors both have)", path, mismatch);
        free(present);
        return false;
    }
    bool ok = tg_load_safetensors(ctx, path, present, n_present) == TG_OK;
    if (!ok) snprintf(why, why_size, "--load: %s", tg_errmsg(ctx));
    else if (mismatch[0])
        snprintf(note, note_size, "--load-partial %s: loaded %d of the model's %d tensors; %s (%s%s%s)",
                 path, n_present, n, mismatch,
                 missing.count ? "the model's keep their initial values" : "",
                 missing.count && extra.count ? ", " : "", extra.count ? "the file's are ignored" : "");
    free(present);
    return ok;
}

bool checkpoint_load(tg_ctx *ctx, const char *path, tg_tensor *const *state, int n, bool partial,
                     char *why, size_t why_size, char *note, size_t note_size) {
    note[0] = '\0';
    int in_file = tg_safetensors_names(ctx, path, NULL, 0);
    name_slot *names = in_file > 0 ? malloc((size_t)in_file * sizeof *names) : NULL;
    if (in_file < 0 || (in_file > 0 && (!names || tg_safetensors_names(ctx, path, names, in_file) != in_file))) {
        snprintf(why, why_size, "--load: %s", in_file < 0 || names ? tg_errmsg(ctx) : "out of memory");
        free(names);
        return false;
    }
    bool ok = load(ctx, path, state, n, partial, names, in_file, why, why_size, note, note_size);
    free(names);
    return ok;
}
