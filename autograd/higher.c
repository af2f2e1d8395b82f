/*
 * autograd/higher.c — products of derivatives: J v (tg_jvp), J^T u into arrays (tg_vjp) and
 * Hessian-vector products (tg_hvp). Gradients recorded for a second differentiation (tg_grad)
 * are in autograd/double_backward.c.
 *
 * Forward mode walks the recorded step in order and asks each op's JVP rule for its output's
 * tangent. The rules compute with ops on the same tape, so a tangent is an ordinary node: a
 * backward pass from the loss's tangent along v gives H v (reverse over forward, JAX's choice
 * for HVPs: one forward, one tangent pass of about the same cost, one backward through both).
 */
#include "autograd/higher.h"

#include <stdio.h>
#include <string.h>

/* ---- arguments ----------------------------------------------------------------------------- */

tg_status tgi_check_member(tg_tape *tape, const char *what, const char *role, int index,
                           const tg_tensor *t) {
    if (!t) return tgi_error(tape->ctx, TG_ERR_INVALID, "%s: %s %d is NULL", what, role, index);
    if (!tgi_of_this_step(tape, t))
        return tgi_error(tape->ctx, TG_ERR_STATE, "%s: %s %d is not a tensor of this tape's current "
                         "step nor a persistent tensor of its context (stale after tg_tape_reset, "
                         "or of another tape)", what, role, index);
    return TG_OK;
}

tg_status tgi_check_wrt(tg_tape *tape, const char *what, int n, tg_tensor *const *inputs,
                        bool records) {
    if (records && tape->no_grad_depth > 0)
        return tgi_error(tape->ctx, TG_ERR_STATE, "%s: inside a no-grad scope the product could "
                         "not be recorded; end the scope (tg_no_grad_end) first", what);
    if (n < 0 || (n > 0 && !inputs))
        return tgi_error(tape->ctx, TG_ERR_INVALID, "%s: %d inputs%s", what, n,
                         n < 0 ? " (must be >= 0)" : " but the array is NULL");
    for (int i = 0; i < n; i++) {
        tg_status status = tgi_check_member(tape, what, "input", i, inputs[i]);
        if (status != TG_OK) return status;
        if (!inputs[i]->requires_grad) {
            char name[TG_LABEL_MAX + 32];
            return tgi_error(tape->ctx, TG_ERR_INVALID, "%s: input %d ('%s') does not require a "
                             "gradient, so the ops that read it were not recorded; call "
                             "tg_set_requires_grad on it before recording the step", what, i,
                             tgi_node_name(inputs[i], name, sizeof name));
        }
    }
    return TG_OK;
}

int tgi_find_tensor(tg_tensor *const *list, int n, const tg_tensor *t) {
    for (int i = 0; i < n; i++)
        if (list[i] == t) return i;
    return -1;
}

int64_t tgi_recorded_entry(const tg_tape *tape, const tg_tensor *t) {
    if (t->tape != tape || t->node < 0 || t->node >= tape->n_entries) return -1;
    return tape->entries[t->node]->call.output == t ? t->node : -1;
}

tg_status tgi_check_recorded(tg_tape *tape, const char *what, int n, tg_tensor *const *inputs,
                             const tg_tensor *output) {
    if (tgi_find_tensor(inputs, n, output) >= 0 || tgi_recorded_entry(tape, output) >= 0)
        return TG_OK;
    char name[TG_LABEL_MAX + 32];
    return tgi_error(tape->ctx, TG_ERR_STATE, "%s: the output '%s' was not recorded (no input "
                     "required a gradient when it was computed, or a no-grad scope was open)",
                     what, tgi_node_name(output, name, sizeof name));
}

tg_tensor *tgi_borrowed(tg_tape *tape, const tg_tensor *like, const float *values) {
    tg_tensor *t = tgi_header_take(tape);
    if (t) tgi_init_tape_tensor(t, tape, (float *)values, like->ndim, like->shape, like->size,
                                NULL, false, NULL);
    return t;
}

static tg_status no_rule(tg_tape *tape, const tgi_node *node, const char *what) {
    char name[TG_LABEL_MAX + 32];
    tgi_node_name(node->call.output, name, sizeof name);
    if (node->op->id == TGI_OP_ID_RECOMPUTE)
        return tgi_error(tape->ctx, TG_ERR_NOGRAD, "%s: '%s' comes from a recomputed segment "
                         "(tg_recompute, or a module set to recompute), whose inside is not on the "
                         "tape; products of second order need the step recorded without "
                         "segments", what, name);
    if (node->op->id < 0) /* the vjp nodes of tg_grad: second order is where they stop */
        return tgi_error(tape->ctx, TG_ERR_NOGRAD, "%s: '%s' is a gradient recorded by tg_grad; "
                         "it can be differentiated once more by tg_backward or tg_vjp, but "
                         "products of a third order (tg_jvp, tg_hvp, tg_grad through it) are "
                         "not available", what, name);
    return tgi_error(tape->ctx, TG_ERR_NOGRAD, "%s: op '%s' (output '%s') has no forward-mode "
                     "(JVP) rule, so its second derivatives are unknown; register one "
                     "(tg_op_def.jvp)", what, node->op->name, name);
}

/* ---- forward mode -------------------------------------------------------------------------- */

tg_status tgi_node_tangent(tg_tape *tape, const char *what, tgi_node *node,
                           tg_tensor *const *in_tangents, tg_tensor **out) {
    *out = NULL;
    bool any = false;
    for (int k = 0; k < node->call.n_inputs; k++) any |= in_tangents[k] != NULL;
    if (!any) return TG_OK;
    if (!node->op->jvp) return no_rule(tape, node, what);
    tg_status status = node->op->jvp(&node->call, in_tangents, out);
    if (status != TG_OK) {
        if (tape->ctx->err_code == TG_OK) tg_op_fail(&node->call, status, "its JVP rule failed");
        return status;
    }
    const tg_tensor *y = node->call.output;
    if (*out && (!tgi_of_this_step(tape, *out) || !tgi_same_shape(*out, y))) {
        char a[96], b[96];
        return tg_op_fail(&node->call, TG_ERR_SHAPE, "its JVP rule gave a tangent %s for an "
                          "output %s", tgi_format_shape((*out)->ndim, (*out)->shape, a, sizeof a),
                          tgi_format_shape(y->ndim, y->shape, b, sizeof b));
    }
    return TG_OK;
}

/* The tangents of entries [0, last] (entry_tangent[e], NULL: zero), in recorded order. Ops the
 * rules record go after `last` and are not walked. inputs hold no duplicates. */
static tg_status forward_tangents(tg_tape *tape, const char *what, int64_t last, int n,
                                  tg_tensor *const *inputs, tg_tensor *const *tangents,
                                  tg_tensor **entry_tangent) {
    tg_tensor **in_tangents = NULL;
    int room = 0;
    for (int64_t e = 0; e <= last; e++) {
        tgi_node *node = tape->entries[e]; /* reloaded: the rules record on this tape */
        const tg_op_call *call = &node->call;
        int given = tgi_find_tensor(inputs, n, call->output);
        if (given >= 0) {
            entry_tangent[e] = tangents[given];
            continue;
        }
        if (call->n_inputs > room) {
            room = call->n_inputs < 8 ? 8 : call->n_inputs;
            in_tangents = tgi_arena_alloc(&tape->arena, (size_t)room * sizeof *in_tangents);
            if (!in_tangents) return tgi_error(tape->ctx, TG_ERR_NOMEM, "%s: out of memory", what);
        }
        for (int k = 0; k < call->n_inputs; k++) {
            const tg_tensor *in = call->inputs[k];
            int64_t from = tgi_recorded_entry(tape, in);
            int i = from >= 0 ? -1 : tgi_find_tensor(inputs, n, in);
            in_tangents[k] = from >= 0 ? entry_tangent[from] : i >= 0 ? tangents[i] : NULL;
        }
        tg_status status = tgi_node_tangent(tape, what, node, in_tangents, &entry_tangent[e]);
        if (status != TG_OK) return status;
    }
    return TG_OK;
}

/* An input listed more than once moves along the sum of its tangents: *unique_inputs and
 * *unique_tangents (*n_unique of them) list each input once. */
static tg_status merge_duplicates(tg_tape *tape, int n, tg_tensor *const *inputs,
                                  tg_tensor *const *tangents, tg_tensor ***unique_inputs,
                                  tg_tensor ***unique_tangents, int *n_unique) {
    *unique_inputs = (tg_tensor **)inputs;
    *unique_tangents = (tg_tensor **)tangents;
    *n_unique = n;
    bool duplicates = false;
    for (int i = 1; i < n && !duplicates; i++) duplicates = tgi_find_tensor(inputs, i, inputs[i]) >= 0;
    if (!duplicates) return TG_OK;
    tg_tensor **in = tgi_arena_alloc(&tape->arena, 2 * (size_t)n * sizeof *in), **tan = in + n;
    if (!in) return tgi_error(tape->ctx, TG_ERR_NOMEM, "jvp: out of memory");
    int m = 0;
    for (int i = 0; i < n; i++) {
        int at = tgi_find_tensor(in, m, inputs[i]);
        if (at < 0) {
            in[m] = inputs[i];
            tan[m++] = tangents[i];
        } else if (tangents[i]) {
            tan[at] = tan[at] ? tg_add(tape, tan[at], tangents[i]) : tangents[i];
            if (!tan[at]) return tg_errcode(tape->ctx);
        }
    }
    *unique_inputs = in;
    *unique_tangents = tan;
    *n_unique = m;
    return TG_OK;
}

tg_status tg_jvp(tg_tape *tape, tg_tensor *output, int n, tg_tensor *const *inputs,
                 tg_tensor *const *tangents, tg_tensor **output_tangent) {
    if (!tape) return TG_ERR_INVALID;
    const char *what = "jvp";
    if (!output_tangent) return tgi_error(tape->ctx, TG_ERR_INVALID, "jvp: output_tangent is NULL");
    *output_tangent = NULL;
    tg_status status = tgi_check_member(tape, what, "output", 0, output);
    if (status == TG_OK) status = tgi_check_wrt(tape, what, n, inputs, true);
    if (status != TG_OK) return status;
    if (n > 0 && !tangents)
        return tgi_error(tape->ctx, TG_ERR_INVALID, "jvp: the tangents array is NULL");
    for (int i = 0; i < n; i++) {
        const tg_tensor *t = tangents[i];
        if (!t) continue;
        if ((status = tgi_check_member(tape, what, "tangent", i, t)) != TG_OK) return status;
        if (!tgi_same_shape(t, inputs[i])) {
            char a[96], b[96];
            return tgi_error(tape->ctx, TG_ERR_SHAPE, "jvp: tangent %d is %s for an input %s", i,
                             tgi_format_shape(t->ndim, t->shape, a, sizeof a),
                             tgi_format_shape(inputs[i]->ndim, inputs[i]->shape, b, sizeof b));
        }
    }
    if ((status = tgi_check_recorded(tape, what, n, inputs, output)) != TG_OK) return status;
    tg_tensor **in, **tan;
    if ((status = merge_duplicates(tape, n, inputs, tangents, &in, &tan, &n)) != TG_OK) return status;
    int given = tgi_find_tensor(in, n, output);
    int64_t last = tgi_recorded_entry(tape, output);
    tg_tensor *result = given >= 0 ? tan[given] : NULL;
    if (given < 0) {
        tg_tensor **entry_tangent =
            tgi_arena_alloc(&tape->arena, (size_t)(last + 1) * sizeof *entry_tangent);
        if (!entry_tangent) return tgi_error(tape->ctx, TG_ERR_NOMEM, "jvp: out of memory");
        memset(entry_tangent, 0, (size_t)(last + 1) * sizeof *entry_tangent);
        status = forward_tangents(tape, what, last, n, in, tan, entry_tangent);
        if (status != TG_OK) return status;
        result = entry_tangent[last];
    }
    if (!result && !(result = tg_tape_zeros(tape, output->ndim, output->shape)))
        return tg_errcode(tape->ctx);
    *output_tangent = result;
    return TG_OK;
}

/* ---- reverse mode into the caller's arrays ------------------------------------------------- */

/* The leaves of entries [0, last] that are not among the inputs (parameters, tape leaves that
 * want a gradient), set aside with their gradient buffers as they were: a product with respect
 * to some inputs must not add into the gradients of the others (which an optimizer would then
 * step), nor spend time computing them. */
typedef struct set_aside {
    tg_tensor **tensors;
    float **grads;
    bool *unset;
    int64_t count;
} set_aside;

static tg_status set_aside_others(tg_tape *tape, int64_t last, int n, tg_tensor *const *inputs,
                                  set_aside *set) {
    int64_t room = 0;
    for (int64_t e = 0; e <= last; e++) room += tape->entries[e]->call.n_inputs;
    if (!room) return TG_OK;
    set->tensors = tgi_arena_alloc(&tape->arena, (size_t)room * sizeof *set->tensors);
    set->grads = tgi_arena_alloc(&tape->arena, (size_t)room * sizeof *set->grads);
    set->unset = tgi_arena_alloc(&tape->arena, (size_t)room);
    if (!set->tensors || !set->grads || !set->unset)
        return tgi_error(tape->ctx, TG_ERR_NOMEM, "out of memory setting gradients aside");
    for (int64_t e = 0; e <= last; e++) {
        const tg_op_call *call = &tape->entries[e]->call;
        for (int k = 0; k < call->n_inputs; k++) {
            tg_tensor *t = call->inputs[k];
            if (!t->requires_grad || tgi_recorded_entry(tape, t) >= 0 ||
                tgi_find_tensor(inputs, n, t) >= 0)
                continue;
            bool seen = false;
            for (int64_t j = 0; j < set->count && !seen; j++) seen = set->tensors[j] == t;
            if (seen) continue;
            set->tensors[set->count] = t;
            set->grads[set->count] = t->grad;
            set->unset[set->count++] = t->grad_unset;
            /* no buffer and no gradient wanted: the walk computes nothing for it (a Jacobian
             * product with respect to a model's input skips every weight's product) */
            t->grad = NULL;
            t->requires_grad = false;
        }
    }
    return TG_OK;
}

static void put_back(const set_aside *set) {
    for (int64_t j = 0; j < set->count; j++) {
        set->tensors[j]->grad = set->grads[j];
        set->tensors[j]->grad_unset = set->unset[j];
        set->tensors[j]->requires_grad = true;
    }
}

/* Whether [a, a + na) and [b, b + nb) share a float. */
static bool overlap(const float *a, int64_t na, const float *b, int64_t nb) {
    return a < b + nb && b < a + na;
}

/* A backward walk whose values are not the step's gradients (H v): the backward hooks, which
 * watch and clip gradients, neither see nor change it. */
static tg_status unwatched_backward(tg_tape *tape, tg_tensor *output, const float *seed) {
    tg_ctx *ctx = tape->ctx;
    int live = ctx->live_hooks[TG_PASS_BACKWARD];
    ctx->live_hooks[TG_PASS_BACKWARD] = 0;
    tg_status status = tg_backward_with(tape, output, seed);
    ctx->live_hooks[TG_PASS_BACKWARD] = live;
    return status;
}

/* tg_vjp, its hooks run (J^T u of the step's own output) or not (H v). */
static tg_status vjp_into(tg_tape *tape, tg_tensor *output, const float *u, int n,
                          tg_tensor *const *inputs, float *const *grads, bool hooks) {
    const char *what = "vjp";
    tg_status status = tgi_check_member(tape, what, "output", 0, output);
    if (status == TG_OK) status = tgi_check_wrt(tape, what, n, inputs, false);
    if (status != TG_OK) return status;
    if (!u || (n > 0 && !grads))
        return tgi_error(tape->ctx, TG_ERR_INVALID, "vjp: the %s is NULL", !u ? "seed u" : "grads array");
    for (int i = 0; i < n; i++)
        if (!grads[i]) return tgi_error(tape->ctx, TG_ERR_INVALID, "vjp: grads[%d] is NULL", i);
    if ((status = tgi_check_recorded(tape, what, n, inputs, output)) != TG_OK) return status;
    /* the seed is read during the walk, after the arrays are zeroed: one of them may be it */
    for (int i = 0; i < n; i++)
        if (overlap(grads[i], inputs[i]->size, u, output->size)) {
            tg_tensor *copy = tg_tape_from_data(tape, output->ndim, output->shape, u);
            if (!copy) return tg_errcode(tape->ctx);
            u = copy->data;
            break;
        }
    /* The walk accumulates into t->grad: point it at the caller's (zeroed) arrays meanwhile,
     * and the other leaves' at zeroed buffers of the arena. */
    float **kept = tgi_arena_alloc(&tape->arena, (size_t)(n ? n : 1) * (sizeof(float *) + 1));
    if (!kept) return tgi_error(tape->ctx, TG_ERR_NOMEM, "vjp: out of memory");
    bool *kept_unset = (bool *)(kept + n);
    int64_t last = tgi_recorded_entry(tape, output);
    set_aside set = {0};
    if ((status = set_aside_others(tape, last, n, inputs, &set)) != TG_OK) {
        put_back(&set);
        return status;
    }
    for (int i = 0; i < n; i++) memset(grads[i], 0, (size_t)inputs[i]->size * sizeof(float));
    for (int i = 0; i < n; i++) {
        /* an input listed twice gets one array, the first; the others are copied after */
        if (tgi_find_tensor(inputs, i, inputs[i]) >= 0) continue;
        kept[i] = inputs[i]->grad;
        kept_unset[i] = inputs[i]->grad_unset;
        inputs[i]->grad = grads[i];
    }
    int given = tgi_find_tensor(inputs, n, output);
    if (given >= 0)
        for (int64_t j = 0; j < output->size; j++) grads[given][j] += u[j];
    if (last >= 0) {
        /* the output's own buffer would be the caller's array too when it is an input */
        if (given >= 0) output->grad = NULL;
        status = hooks ? tg_backward_with(tape, output, u) : unwatched_backward(tape, output, u);
        if (given >= 0 && status == TG_OK)
            for (int64_t j = 0; j < output->size; j++) grads[given][j] = output->grad[j];
    }
    for (int i = 0; i < n; i++) {
        int first = tgi_find_tensor(inputs, i + 1, inputs[i]);
        if (first != i) {
            memcpy(grads[i], grads[first], (size_t)inputs[i]->size * sizeof(float));
            continue;
        }
        inputs[i]->grad = kept[i];
        inputs[i]->grad_unset = kept_unset[i];
    }
    put_back(&set);
    return status;
}

tg_status tg_vjp(tg_tape *tape, tg_tensor *output, const float *u, int n,
                 tg_tensor *const *inputs, float *const *grads) {
    return tape ? vjp_into(tape, output, u, n, inputs, grads, true) : TG_ERR_INVALID;
}

/* ---- Hessian-vector products ---------------------------------------------------------------- */

/* What a product adds to the tape, to take back: it is transient, only hv leaves the call. */
typedef struct tape_mark {
    tgi_arena_mark arena;
    tgi_header_mark headers;
    int64_t entries, unrecorded, forward_entries, forward_unrecorded;
} tape_mark;

static tape_mark mark_tape(const tg_tape *tape) {
    return (tape_mark){tgi_arena_mark_get(&tape->arena), tgi_header_mark_get(tape),
                       tape->n_entries, tape->n_unrecorded, tape->forward_entries,
                       tape->forward_unrecorded};
}

static void rewind_tape(tg_tape *tape, const tape_mark *mark) {
    tape->n_entries = mark->entries;
    tape->n_unrecorded = mark->unrecorded;
    tgi_arena_mark_rewind(&tape->arena, mark->arena);
    tgi_header_mark_rewind(tape, mark->headers);
}

/* v[i] as tape tensors: read in place, unless an hv array shares floats with it (hv = v, as
 * power iteration writes): then copied, since the walk zeroes hv before it reads v. */
static tg_status directions_of(tg_tape *tape, int n, tg_tensor *const *params,
                               const float *const *v, float *const *hv, tg_tensor **directions) {
    for (int i = 0; i < n; i++) {
        if (!v[i] || !hv[i])
            return tgi_error(tape->ctx, TG_ERR_INVALID, "hvp: %s[%d] is NULL", !v[i] ? "v" : "hv", i);
        bool shared = false;
        for (int j = 0; j < n && !shared; j++)
            shared = overlap(hv[j], params[j]->size, v[i], params[i]->size);
        const tg_tensor *p = params[i];
        directions[i] = shared ? tg_tape_from_data(tape, p->ndim, p->shape, v[i])
                               : tgi_borrowed(tape, p, v[i]);
        if (!directions[i]) return tg_errcode(tape->ctx);
    }
    return TG_OK;
}

tg_status tg_hvp(tg_tape *tape, tg_tensor *loss, int n, tg_tensor *const *params,
                 const float *const *v, float *const *hv) {
    if (!tape) return TG_ERR_INVALID;
    const char *what = "hvp";
    tg_status status = tgi_check_member(tape, what, "loss", 0, loss);
    if (status == TG_OK) status = tgi_check_wrt(tape, what, n, params, true);
    if (status == TG_OK) status = tgi_check_recorded(tape, what, n, params, loss);
    if (status != TG_OK) return status;
    if (loss->size != 1)
        return tgi_error(tape->ctx, TG_ERR_SHAPE, "hvp: the loss has %lld elements, not 1",
                         (long long)loss->size);
    if (n > 0 && (!v || !hv))
        return tgi_error(tape->ctx, TG_ERR_INVALID, "hvp: the %s array is NULL", !v ? "v" : "hv");
    tape_mark mark = mark_tape(tape);
    /* The step's forward ends here (as at its first backward): a replay redoes the step. */
    if (tape->forward_entries < 0) {
        tape->forward_entries = tape->n_entries;
        tape->forward_unrecorded = tape->n_unrecorded;
    }
    tg_tensor *local[16];
    tg_tensor **directions = n <= 16 ? local
                             : tgi_arena_alloc(&tape->arena, (size_t)n * sizeof *directions);
    status = directions ? directions_of(tape, n, params, v, hv, directions)
                        : tgi_error(tape->ctx, TG_ERR_NOMEM, "hvp: out of memory");
    tg_tensor *slope = NULL; /* d loss along v: <grad, v>, recorded */
    if (status == TG_OK) status = tg_jvp(tape, loss, n, params, directions, &slope);
    if (status == TG_OK && tgi_recorded_entry(tape, slope) < 0) {
        /* the loss is linear in the params along v */
        for (int i = 0; i < n; i++) memset(hv[i], 0, (size_t)params[i]->size * sizeof(float));
    } else if (status == TG_OK) {
        const float one = 1.0f;
        status = vjp_into(tape, slope, &one, n, params, hv, false);
    }
    /* The tangent nodes, buffers and directions go: the next step's product allocates
     * nothing, and a replay never meets them. */
    rewind_tape(tape, &mark);
    if (status != TG_OK) {
        tape->forward_entries = mark.forward_entries;
        tape->forward_unrecorded = mark.forward_unrecorded;
    }
    return status;
}
