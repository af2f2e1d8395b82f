/*
 * diagnostics/activations.c — the recorder's watch over activations: a forward hook that keeps,
 * per activation, the dead units (relu), saturation (sigmoid, tanh, a plain RNN's h[t]) and the
 * forget gate (an LSTM's h[t]) of its latest watched step, for the findings of onset detection.
 *
 * Why the forward pass: an activation's values are what the op just wrote, and the backward
 * hooks only see nodes whose labels a pattern names (an MLP's activations have none). Each
 * watched node costs one pass over its values, about what the activation op itself costs.
 */
#include "diagnostics/recorder.h"

#include <ctype.h>
#include <string.h>

static bool watched_op(const char *op) {
    return strcmp(op, "relu") == 0 || strcmp(op, "sigmoid") == 0 || strcmp(op, "tanh") == 0 ||
           strcmp(op, "rnn_cell") == 0 || strcmp(op, "lstm_hidden") == 0;
}

/* "lstm.h[12]" -> "lstm.h[*]": the steps of an unrolled net are one entry. */
static void generalise_steps(const char *label, char *out, size_t size) {
    size_t n = 0;
    for (const char *p = label; *p && n + 1 < size;) {
        if (*p == '[' && isdigit((unsigned char)p[1])) {
            const char *q = p + 1;
            while (isdigit((unsigned char)*q)) q++;
            if (*q == ']' && n + 3 < size) {
                memcpy(out + n, "[*]", 3);
                n += 3;
                p = q + 1;
                continue;
            }
        }
        out[n++] = *p++;
    }
    out[n] = '\0';
}

/* The first input of a recorded node (NULL for a leaf or an unrecorded node). */
static const tg_tensor *first_input(const tg_tensor *t) {
    const tg_tape *tape = t->tape;
    if (!tape || t->node < 0 || t->node >= tape->n_entries) return NULL;
    const tg_op_call *call = &tape->entries[t->node]->call;
    return call->n_inputs >= 1 && call->output == t ? call->inputs[0] : NULL;
}

#define NAME_HOPS 3

/* Its label, else "relu(batch_norm(mlp.layer2.out))": the ops back to the nearest labelled
 * input (at most NAME_HOPS), which names an MLP's unlabelled activations by their layer; else
 * the event's "<op>#<entry>". */
static void activation_name(const tg_hook_event *event, char *out, size_t size) {
    const tg_tensor *t = event->node;
    if (t->label[0]) {
        generalise_steps(t->label, out, size);
        return;
    }
    const char *ops[NAME_HOPS];
    int hops = 0;
    while (t && !t->label[0] && hops < NAME_HOPS) {
        ops[hops++] = tg_tensor_op_name(t);
        t = first_input(t);
    }
    if (!t || !t->label[0]) {
        snprintf(out, size, "%s", event->name);
        return;
    }
    char label[TG_LABEL_MAX];
    generalise_steps(t->label, label, sizeof label);
    size_t len = 0;
    for (int i = 0; i < hops && len < size; i++)
        len += (size_t)snprintf(out + len, size - len, "%s(", ops[i]);
    if (len < size) len += (size_t)snprintf(out + len, size - len, "%s", label);
    for (int i = 0; i < hops && len < size; i++) len += (size_t)snprintf(out + len, size - len, ")");
}

static tgi_activation *find_or_add(tg_recorder *r, const char *name, const char *op) {
    for (int i = 0; i < r->n_activations; i++)
        if (strcmp(r->activations[i].name, name) == 0) return &r->activations[i];
    if (r->n_activations == r->cap_activations) {
        int cap = r->cap_activations ? 2 * r->cap_activations : 16;
        tgi_activation *grown = tgi_realloc(r->ctx, r->activations,
                                            (size_t)r->cap_activations * sizeof *grown,
                                            (size_t)cap * sizeof *grown);
        if (!grown) return NULL;
        r->activations = grown;
        r->cap_activations = cap;
    }
    tgi_activation *a = &r->activations[r->n_activations++];
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", name);
    snprintf(a->op, sizeof a->op, "%s", op);
    a->step = -1;
    return a;
}

/* An exponent of all ones is NaN or Inf: one OR per value, which vectorises (isfinite's
 * branch per value did not, and cost more than the statistics). */
static bool all_finite(const float *values, int64_t n) {
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &values[i], sizeof bits);
        bad |= (bits & 0x7f800000u) == 0x7f800000u;
    }
    return !bad;
}

static tg_status watch_hook(tg_ctx *ctx, const tg_hook_event *event, void *user) {
    tg_recorder *r = user;
    const tg_tensor *t = event->node;
    /* recorded nodes only: an evaluation pass (no grad) is not the training it would overwrite */
    if (t->node < 0 || event->step % r->activation_every != 0 || !watched_op(event->op_name))
        return TG_OK;
    /* a blown-up step's fractions say nothing of the layer: the step before it stays */
    if (!all_finite(t->data, t->size)) return TG_OK;
    char name[TG_LABEL_MAX];
    activation_name(event, name, sizeof name);
    tgi_activation *a = find_or_add(r, name, event->op_name);
    if (!a) return tgi_error(ctx, TG_ERR_NOMEM, "recorder: out of memory for activation '%s'", name);
    if (a->step != event->step) { /* the latest watched step replaces the one before */
        int64_t step = event->step;
        memset((char *)a + offsetof(tgi_activation, step), 0, sizeof *a - offsetof(tgi_activation, step));
        a->step = step;
    }
    tg_activation_stats st;
    tg_activation_stats_compute(t, &st);
    int64_t units = t->ndim ? t->shape[t->ndim - 1] : 1;
    if (st.dead_fraction >= 0) {
        a->units += (double)units;
        a->dead += st.dead_fraction * (double)units;
    }
    if (st.saturated_fraction >= 0) {
        a->values += (double)t->size;
        a->saturated += st.saturated_fraction * (double)t->size;
    }
    if (st.forget_saturated_fraction >= 0) { /* h[t] is [B, H], as many as the forget gate */
        a->gates += (double)t->size;
        a->forget_saturated += st.forget_saturated_fraction * (double)t->size;
        a->forget_closed += st.forget_closed_fraction * (double)t->size;
    }
    return TG_OK;
}

int64_t tg_recorder_attach_activations(tg_recorder *r, int every) {
    if (!r) return -1;
    if (every < 1) {
        tgi_error(r->ctx, TG_ERR_INVALID, "recorder_attach_activations: every %d, expected >= 1", every);
        return -1;
    }
    if (r->activation_every) {
        tgi_error(r->ctx, TG_ERR_STATE, "recorder_attach_activations: the recorder watches its "
                  "activations already");
        return -1;
    }
    if (r->n_handles == r->cap_handles) {
        int cap = r->cap_handles ? 2 * r->cap_handles : 4;
        int64_t *grown = tgi_realloc(r->ctx, r->handles, (size_t)r->cap_handles * sizeof *grown,
                                     (size_t)cap * sizeof *grown);
        if (!grown) {
            tgi_error(r->ctx, TG_ERR_NOMEM, "recorder: out of memory");
            return -1;
        }
        r->handles = grown;
        r->cap_handles = cap;
    }
    int64_t handle = tg_hook_global(r->ctx, TG_PASS_FORWARD, watch_hook, r);
    if (handle <= 0) return -1;
    r->handles[r->n_handles++] = handle;
    r->activation_every = every;
    return handle;
}

tg_activation_stats tgi_activation_stats_of(const tgi_activation *a) {
    tg_activation_stats st = {-1.0, -1.0, -1.0, -1.0};
    if (a->units > 0) st.dead_fraction = a->dead / a->units;
    if (a->values > 0) st.saturated_fraction = a->saturated / a->values;
    if (a->gates > 0) {
        st.forget_saturated_fraction = a->forget_saturated / a->gates;
        st.forget_closed_fraction = a->forget_closed / a->gates;
    }
    return st;
}

void tgi_activations_release(tg_recorder *r) {
    tgi_free(r->ctx, r->activations, (size_t)r->cap_activations * sizeof *r->activations);
    r->activations = NULL;
    r->n_activations = r->cap_activations = 0;
}
