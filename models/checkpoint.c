/*
 * models/checkpoint.c — a training run's checkpoint: a module's state and its optimizer's in
 * one safetensors file (tg_checkpoint_save), loaded back into the same run or another
 * (tg_checkpoint_load) under another root name (a prefix remap) or in part (PyTorch's
 * strict=False), with what did not match counted and named.
 *
 * The optimizer's state travels as one flat F32 tensor, "optimizer.state" (the parameters'
 * values, then each parameter's first and second moments: what the step guard rolls back to),
 * with its step counts and the schedule's position as decimal text in the metadata: int64
 * counts do not fit f32 exactly past 2^24 steps, and a resumed Adam must see the same bias
 * corrections to end on the same bits.
 */
#include "models/models.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATE_NAME "optimizer.state"
#define STEPS_KEY "optimizer.steps"
#define PARAMS_KEY "optimizer.params"

/* The module's state tensors (parameters and buffers), allocated; *n their count. */
static tg_tensor **module_state(tg_ctx *ctx, const tg_module *m, int *n) {
    *n = tg_module_state(m, NULL, 0);
    tg_tensor **list = *n > 0 ? tgi_alloc(ctx, (size_t)*n * sizeof *list) : NULL;
    if (*n <= 0 || !list || tg_module_state(m, list, *n) != *n) {
        if (list) tgi_free(ctx, list, (size_t)*n * sizeof *list);
        if (*n >= 0) tgi_error(ctx, *n == 0 ? TG_ERR_INVALID : TG_ERR_NOMEM, "checkpoint of module "
                               "'%s': %s", tg_module_name(m), *n == 0 ? "it has no state" : "out of memory");
        return NULL;
    }
    return list;
}

/* The optimizer's state as text and a flat tensor (values allocated; free with free_state). */
typedef struct opt_state {
    tg_tensor tensor;        /* a view for the file: STATE_NAME over floats */
    float *floats;
    int64_t n_floats;
    int64_t *steps;
    int n_steps;
    char *steps_text;
    char params_text[24];
} opt_state;

static void free_state(tg_ctx *ctx, opt_state *s) {
    tgi_free(ctx, s->floats, (size_t)s->n_floats * sizeof(float));
    tgi_free(ctx, s->steps, (size_t)s->n_steps * sizeof(int64_t));
    free(s->steps_text);
}

static tg_status alloc_state(tg_ctx *ctx, const tg_optimizer *opt, const tg_tensor *like, opt_state *s) {
    memset(s, 0, sizeof *s);
    s->n_floats = tgi_optimizer_state_floats(opt);
    s->n_steps = tgi_optimizer_state_steps(opt);
    s->floats = tgi_alloc(ctx, (size_t)s->n_floats * sizeof(float));
    s->steps = tgi_alloc(ctx, (size_t)s->n_steps * sizeof(int64_t));
    s->steps_text = malloc((size_t)s->n_steps * 21 + 1);
    if (!s->floats || !s->steps || !s->steps_text) {
        free_state(ctx, s);
        return tgi_error(ctx, TG_ERR_NOMEM, "checkpoint: out of memory for the optimizer's state");
    }
    s->tensor = *like; /* a persistent tensor's header, then made the flat state's */
    s->tensor.ndim = 1;
    for (int d = 0; d < TG_MAX_DIMS; d++) s->tensor.shape[d] = 1;
    s->tensor.shape[0] = s->n_floats;
    s->tensor.size = s->n_floats;
    s->tensor.data = s->floats;
    s->tensor.grad = NULL;
    s->tensor.label = STATE_NAME;
    return TG_OK;
}

#define MAX_USER_META 8 /* tg_checkpoint_save_tensors' metadata pairs */

tg_status tg_checkpoint_save_tensors(tg_ctx *ctx, tg_tensor *const *state, int n, const tg_optimizer *opt,
                                     const char *const *meta_pairs, int n_pairs, const char *path) {
    if (!ctx) return TG_ERR_INVALID;
    if (!state || n < 1 || n_pairs < 0 || n_pairs > MAX_USER_META || (n_pairs && !meta_pairs))
        return tgi_error(ctx, TG_ERR_INVALID, "checkpoint_save: %d state tensors (at least 1) and %d metadata "
                         "pairs (0..%d, with their array)", n, n_pairs, MAX_USER_META);
    for (int i = 0; i < n; i++)
        if (tgi_refuse_stale(state[i], "checkpoint_save") != TG_OK) return TG_ERR_STATE;
    for (int i = 0; i < 2 * n_pairs; i += 2)
        if (!meta_pairs[i] || !meta_pairs[i + 1] || strncmp(meta_pairs[i], "optimizer.", 10) == 0)
            return tgi_error(ctx, TG_ERR_INVALID, "checkpoint_save: metadata pair %d is NULL or uses the "
                             "reserved prefix 'optimizer.'", i / 2);
    tg_tensor **list = tgi_alloc(ctx, (size_t)(n + 1) * sizeof *list);
    opt_state s;
    tg_status status = list ? TG_OK : tgi_error(ctx, TG_ERR_NOMEM, "checkpoint: out of memory");
    if (status == TG_OK && opt) status = alloc_state(ctx, opt, state[0], &s);
    if (status == TG_OK) {
        memcpy(list, state, (size_t)n * sizeof *list);
        const char *meta[4 + 2 * MAX_USER_META];
        int n_meta = 0;
        if (opt) {
            tgi_optimizer_save(opt, s.floats, s.steps);
            size_t used = 0;
            s.steps_text[0] = '\0';
            for (int i = 0; i < s.n_steps; i++)
                used += (size_t)sprintf(s.steps_text + used, "%s%" PRId64, i ? "," : "", s.steps[i]);
            snprintf(s.params_text, sizeof s.params_text, "%d", s.n_steps - 1);
            const char *pairs[4] = {STEPS_KEY, s.steps_text, PARAMS_KEY, s.params_text};
            memcpy(meta, pairs, sizeof pairs);
            n_meta = 2;
            list[n] = &s.tensor;
        }
        if (n_pairs) memcpy(meta + 2 * n_meta, meta_pairs, (size_t)(2 * n_pairs) * sizeof *meta);
        status = tgi_save_safetensors_meta(ctx, path, list, n + (opt != NULL), meta, n_meta + n_pairs);
        if (opt) free_state(ctx, &s);
    }
    tgi_free(ctx, list, (size_t)(n + 1) * sizeof *list);
    return status;
}

tg_status tg_checkpoint_save(const tg_module *m, const tg_optimizer *opt, const char *path) {
    if (!m) return TG_ERR_INVALID;
    tg_ctx *ctx = tg_module_ctx(m);
    int n;
    tg_tensor **state = module_state(ctx, m, &n);
    if (!state) return tg_errcode(ctx);
    tg_status status = tg_checkpoint_save_tensors(ctx, state, n, opt, NULL, 0, path);
    tgi_free(ctx, state, (size_t)n * sizeof *state);
    return status;
}

/* ---- loading ------------------------------------------------------------------------------- */

/* The name a module tensor has in the file: its label with opts' model prefix made the file's. */
static bool file_name_of(const char *label, const tg_checkpoint_options *o, char out[TG_LABEL_MAX]) {
    const char *from = o && o->model_prefix ? o->model_prefix : "";
    const char *to = o && o->file_prefix ? o->file_prefix : "";
    size_t n = strlen(from);
    if (strncmp(label, from, n) != 0) return false; /* not under the remapped prefix */
    return snprintf(out, TG_LABEL_MAX, "%s%s", to, label + n) < TG_LABEL_MAX;
}

static bool in_names(char (*names)[TG_LABEL_MAX], int n, const char *name) {
    int low = 0, high = n - 1; /* the file's names come sorted */
    while (low <= high) {
        int mid = (low + high) / 2, c = strcmp(names[mid], name);
        if (c == 0) return true;
        if (c < 0) low = mid + 1;
        else high = mid - 1;
    }
    return false;
}

static void note(char *first, int *count, const char *name) {
    if ((*count)++ == 0) snprintf(first, TG_LABEL_MAX, "%s", name);
}

/* Reads the optimizer's state (STATE_NAME and the metadata) into opt; TG_ERR_NOT_FOUND when
 * the file has none. */
static tg_status load_optimizer(tg_ctx *ctx, tg_optimizer *opt, const char *path, const tg_tensor *like) {
    opt_state s;
    tg_status status = alloc_state(ctx, opt, like, &s);
    if (status != TG_OK) return status;
    char params[24];
    size_t text_size = (size_t)s.n_steps * 21 + 1;
    status = tg_safetensors_metadata(ctx, path, PARAMS_KEY, params, sizeof params);
    if (status == TG_OK && strtoll(params, NULL, 10) != s.n_steps - 1)
        status = tgi_error(ctx, TG_ERR_SHAPE, "checkpoint '%s': its optimizer has %s parameters, this one %d",
                           path, params, s.n_steps - 1);
    if (status == TG_OK) status = tg_safetensors_metadata(ctx, path, STEPS_KEY, s.steps_text, text_size);
    const char *p = s.steps_text;
    for (int i = 0; status == TG_OK && i < s.n_steps; i++) {
        char *end;
        s.steps[i] = strtoll(p, &end, 10);
        if (end == p || (*end != ',' && *end != '\0') || s.steps[i] < 0)
            status = tgi_error(ctx, TG_ERR_IO, "checkpoint '%s': %s is not %d step counts", path, STEPS_KEY,
                               s.n_steps);
        p = *end ? end + 1 : end;
    }
    tg_tensor *view = &s.tensor;
    if (status == TG_OK) status = tg_load_safetensors(ctx, path, &view, 1);
    if (status == TG_OK) tgi_optimizer_load(opt, s.floats, s.steps);
    free_state(ctx, &s);
    return status;
}

tg_status tg_checkpoint_load_optimizer(tg_optimizer *opt, const char *path) {
    if (!opt) return TG_ERR_INVALID;
    tg_ctx *ctx = tgi_optimizer_ctx(opt);
    if (!path) return tgi_error(ctx, TG_ERR_INVALID, "checkpoint_load_optimizer: path is NULL");
    int n_file = tg_safetensors_names(ctx, path, NULL, 0);
    if (n_file < 0) return tg_errcode(ctx);
    char (*names)[TG_LABEL_MAX] = tgi_alloc(ctx, (size_t)(n_file ? n_file : 1) * TG_LABEL_MAX);
    if (!names) return tgi_error(ctx, TG_ERR_NOMEM, "checkpoint_load_optimizer: out of memory");
    bool found = tg_safetensors_names(ctx, path, names, n_file) == n_file && in_names(names, n_file, STATE_NAME);
    tgi_free(ctx, names, (size_t)(n_file ? n_file : 1) * TG_LABEL_MAX);
    if (!found)
        return tg_errcode(ctx) != TG_OK ? tg_errcode(ctx)
               : tgi_error(ctx, TG_ERR_NOT_FOUND, "checkpoint '%s' holds no optimizer state (saved without "
                           "one)", path);
    return load_optimizer(ctx, opt, path, tgi_optimizer_first_param(opt));
}

tg_status tg_checkpoint_load(tg_module *m, tg_optimizer *opt, const char *path,
                             const tg_checkpoint_options *options, tg_checkpoint_report *report) {
    if (!m) return TG_ERR_INVALID;
    tg_ctx *ctx = tg_module_ctx(m);
    tg_checkpoint_report r = {0};
    if (report) *report = r;
    int n, n_file = path ? tg_safetensors_names(ctx, path, NULL, 0) : -1;
    if (!path) return tgi_error(ctx, TG_ERR_INVALID, "checkpoint_load: path is NULL");
    if (n_file < 0) return tg_errcode(ctx);
    tg_tensor **state = module_state(ctx, m, &n);
    if (!state) return tg_errcode(ctx);
    char (*names)[TG_LABEL_MAX] = tgi_alloc(ctx, (size_t)(n_file ? n_file : 1) * TG_LABEL_MAX);
    tg_tensor *views = tgi_alloc(ctx, (size_t)n * sizeof *views);
    tg_tensor **list = tgi_alloc(ctx, (size_t)n * sizeof *list);
    char (*view_names)[TG_LABEL_MAX] = tgi_alloc(ctx, (size_t)n * TG_LABEL_MAX);
    tg_status status = names && views && list && view_names ? TG_OK
                       : tgi_error(ctx, TG_ERR_NOMEM, "checkpoint_load: out of memory");
    if (status == TG_OK && tg_safetensors_names(ctx, path, names, n_file) != n_file) status = tg_errcode(ctx);
    int n_load = 0;
    bool has_optimizer = false;
    for (int i = 0; status == TG_OK && i < n; i++) { /* the model's tensors: in the file, or missing */
        char name[TG_LABEL_MAX];
        if (!file_name_of(state[i]->label, options, name) || !in_names(names, n_file, name)) {
            note(r.first_missing, &r.missing, state[i]->label);
            continue;
        }
        views[n_load] = *state[i]; /* the same data under the file's name */
        memcpy(view_names[n_load], name, TG_LABEL_MAX);
        views[n_load].label = view_names[n_load];
        list[n_load] = &views[n_load];
        n_load++;
    }
    for (int k = 0; status == TG_OK && k < n_file; k++) { /* the file's: in the model, or unexpected */
        if (strcmp(names[k], STATE_NAME) == 0) {
            has_optimizer = true;
            continue;
        }
        bool found = false;
        for (int j = 0; j < n_load && !found; j++) found = strcmp(view_names[j], names[k]) == 0;
        if (!found) note(r.first_unexpected, &r.unexpected, names[k]);
    }
    bool partial = options && options->partial;
    if (status == TG_OK && !partial && (r.missing || r.unexpected))
        status = tgi_error(ctx, TG_ERR_NOT_FOUND, "checkpoint '%s' does not fit module '%s': %d of its "
                           "tensors are not in the file (first '%s'), %d of the file's are not in the "
                           "module (first '%s'); a prefix remap or a partial load (tg_checkpoint_options)",
                           path, tg_module_name(m), r.missing, r.missing ? r.first_missing : "-",
                           r.unexpected, r.unexpected ? r.first_unexpected : "-");
    if (status == TG_OK && opt && !has_optimizer && !partial)
        status = tgi_error(ctx, TG_ERR_NOT_FOUND, "checkpoint '%s' holds no optimizer state (saved "
                           "without one); load it with a NULL optimizer or partially", path);
    if (status == TG_OK && n_load) status = tg_load_safetensors(ctx, path, list, n_load);
    if (status == TG_OK) r.loaded = n_load;
    if (status == TG_OK && opt && has_optimizer) {
        status = load_optimizer(ctx, opt, path, state[0]);
        r.optimizer = status == TG_OK;
    }
    tgi_free(ctx, names, (size_t)(n_file ? n_file : 1) * TG_LABEL_MAX);
    tgi_free(ctx, views, (size_t)n * sizeof *views);
    tgi_free(ctx, list, (size_t)n * sizeof *list);
    tgi_free(ctx, view_names, (size_t)n * TG_LABEL_MAX);
    tgi_free(ctx, state, (size_t)n * sizeof *state);
    if (report) *report = r;
    return status;
}
