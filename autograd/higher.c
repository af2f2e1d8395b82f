/*
 * autograd/higher.c — derivatives of derivatives: J v (tg_jvp), J^T u (tg_vjp), Hessian-vector
 * products (tg_hvp) and gradients that are themselves recorded (tg_grad).
 *
 * Forward mode walks the recorded step in order and asks each op's JVP rule for its output's
 * tangent. The rules compute with ops on the same tape, so a tangent is an ordinary node: a
 * backward pass from the loss's tangent along v gives H v (reverse over forward, JAX's choice
 * for HVPs: one forward, one tangent pass of about the same cost, one backward through both).
 *
 * tg_grad records the backward pass instead of running it: each node reached becomes a node of
 * the generic "vjp" op below, whose value is the gradients of that node's inputs (the op's own
 * backward kernel, run on a copy of the call in a scratch tape, so nothing of the step's saved
 * state is touched) and whose own VJP is found from the op's JVP rule: for g = J(x)^T u,
 *     d<w, g>/du = J w           (the op's JVP along w)
 *     d<w, g>/dx = d<u, J(x) w>/dx (the backward of that JVP, seeded with u).
 * So every op with a JVP rule gets double backward without a second-order rule of its own.
 */
#include "autograd/internal.h"

#include <stdio.h>
#include <string.h>

/* ---- arguments ----------------------------------------------------------------------------- */

/* A tensor an op of this tape may read: of its current step, or persistent of its context. */
static bool of_this_step(const tg_tape *tape, const tg_tensor *t) {
    return t->tape ? t->tape == tape && t->generation == tape->generation : t->ctx == tape->ctx;
}

static tg_status check_tensor(tg_tape *tape, const char *what, const char *role, int index,
                              const tg_tensor *t) {
    if (!t) return tgi_error(tape->ctx, TG_ERR_INVALID, "%s: %s %d is NULL", what, role, index);
    if (!of_this_step(tape, t))
        return tgi_error(tape->ctx, TG_ERR_STATE, "%s: %s %d is not a tensor of this tape's current "
                         "step nor a persistent tensor of its context (stale after tg_tape_reset, "
                         "or of another tape)", what, role, index);
    return TG_OK;
}

/* The inputs to differentiate with respect to: valid, and recorded from (requires_grad: an op
 * that read one was recorded, so the walks below see every path from it). Inside a no-grad
 * scope nothing is recorded, so every product would be zero: refused instead. */
static tg_status check_inputs(tg_tape *tape, const char *what, int n, tg_tensor *const *inputs) {
    if (tape->no_grad_depth > 0)
        return tgi_error(tape->ctx, TG_ERR_STATE, "%s: inside a no-grad scope nothing is recorded, "
                         "so there is no derivative to take; end the scope (tg_no_grad_end) "
                         "before recording the step", what);
    if (n < 0 || (n > 0 && !inputs))
        return tgi_error(tape->ctx, TG_ERR_INVALID, "%s: %d inputs%s", what, n,
                         n < 0 ? " (must be >= 0)" : " but the array is NULL");
    for (int i = 0; i < n; i++) {
        tg_status status = check_tensor(tape, what, "input", i, inputs[i]);
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

/* Where t is in inputs, or -1. */
static int find_input(tg_tensor *const *inputs, int n, const tg_tensor *t) {
    for (int i = 0; i < n; i++)
        if (inputs[i] == t) return i;
    return -1;
}

/* The node of this step that computed t, or -1 (a leaf, a persistent tensor, or not recorded). */
static int64_t recorded_entry(const tg_tape *tape, const tg_tensor *t) {
    if (t->tape != tape || t->node < 0 || t->node >= tape->n_entries) return -1;
    return tape->entries[t->node]->call.output == t ? t->node : -1;
}

static tg_tensor *zeros_like(tg_tape *tape, const tg_tensor *t) {
    return tg_tape_zeros(tape, t->ndim, t->shape);
}

/* A constant tape tensor shaped like `like` over the caller's floats, not copied: ops only read
 * a tensor that wants no gradient (a direction of a large model is megabytes). */
static tg_tensor *borrowed(tg_tape *tape, const tg_tensor *like, const float *values) {
    tg_tensor *t = tgi_header_take(tape);
    if (t) tgi_init_tape_tensor(t, tape, (float *)values, like->ndim, like->shape, like->size,
                                NULL, false, NULL);
    return t;
}

static tg_status no_rule(tg_tape *tape, const tgi_node *node, const char *what) {
    char name[TG_LABEL_MAX + 32];
    return tgi_error(tape->ctx, TG_ERR_NOGRAD, "%s: op '%s' (output '%s') has no forward-mode "
                     "(JVP) rule, so its second derivatives are unknown; register one "
                     "(tg_op_def.jvp)", what, node->op->name,
                     tgi_node_name(node->call.output, name, sizeof name));
}

/* ---- forward mode -------------------------------------------------------------------------- */

/* A node's JVP rule on the tangents of its inputs; *out NULL when none moves. */
static tg_status node_tangent(tg_tape *tape, const char *what, tgi_node *node,
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
    if (*out && ((*out)->size != y->size || !of_this_step(tape, *out))) {
        char a[96], b[96];
        return tg_op_fail(&node->call, TG_ERR_SHAPE, "its JVP rule gave a tangent %s for an "
                          "output %s", tgi_format_shape((*out)->ndim, (*out)->shape, a, sizeof a),
                          tgi_format_shape(y->ndim, y->shape, b, sizeof b));
    }
    return TG_OK;
}

/* The tangents of entries [0, last] (entry_tangent[e], NULL: zero), in recorded order. Ops the
 * rules record go after `last` and are not walked. */
static tg_status forward_tangents(tg_tape *tape, const char *what, int64_t last, int n,
                                  tg_tensor *const *inputs, tg_tensor *const *tangents,
                                  tg_tensor **entry_tangent) {
    tg_tensor **in_tangents = NULL;
    int room = 0;
    for (int64_t e = 0; e <= last; e++) {
        tgi_node *node = tape->entries[e]; /* reloaded: the rules record on this tape */
        const tg_op_call *call = &node->call;
        int given = find_input(inputs, n, call->output);
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
            int64_t from = recorded_entry(tape, in);
            int i = from >= 0 ? -1 : find_input(inputs, n, in);
            in_tangents[k] = from >= 0 ? entry_tangent[from] : i >= 0 ? tangents[i] : NULL;
        }
        tg_status status = node_tangent(tape, what, node, in_tangents, &entry_tangent[e]);
        if (status != TG_OK) return status;
    }
    return TG_OK;
}

tg_status tg_jvp(tg_tape *tape, tg_tensor *output, int n, tg_tensor *const *inputs,
                 tg_tensor *const *tangents, tg_tensor **output_tangent) {
    if (!tape) return TG_ERR_INVALID;
    const char *what = "jvp";
    if (!output_tangent) return tgi_error(tape->ctx, TG_ERR_INVALID, "jvp: output_tangent is NULL");
    *output_tangent = NULL;
    tg_status status = check_tensor(tape, what, "output", 0, output);
    if (status == TG_OK) status = check_inputs(tape, what, n, inputs);
    if (status != TG_OK) return status;
    if (n > 0 && !tangents)
        return tgi_error(tape->ctx, TG_ERR_INVALID, "jvp: the tangents array is NULL");
    for (int i = 0; i < n; i++) {
        const tg_tensor *t = tangents[i];
        if (!t) continue;
        if ((status = check_tensor(tape, what, "tangent", i, t)) != TG_OK) return status;
        if (!tgi_same_shape(t, inputs[i])) {
            char a[96], b[96];
            return tgi_error(tape->ctx, TG_ERR_SHAPE, "jvp: tangent %d is %s for an input %s", i,
                             tgi_format_shape(t->ndim, t->shape, a, sizeof a),
                             tgi_format_shape(inputs[i]->ndim, inputs[i]->shape, b, sizeof b));
        }
    }
    int given = find_input(inputs, n, output);
    int64_t last = recorded_entry(tape, output);
    tg_tensor *result = given >= 0 ? tangents[given] : NULL;
    if (given < 0 && last >= 0) {
        tg_tensor **entry_tangent =
            tgi_arena_alloc(&tape->arena, (size_t)(last + 1) * sizeof *entry_tangent);
        if (!entry_tangent) return tgi_error(tape->ctx, TG_ERR_NOMEM, "jvp: out of memory");
        memset(entry_tangent, 0, (size_t)(last + 1) * sizeof *entry_tangent);
        status = forward_tangents(tape, what, last, n, inputs, tangents, entry_tangent);
        if (status != TG_OK) return status;
        result = entry_tangent[last];
    }
    if (!result && !(result = zeros_like(tape, output))) return tg_errcode(tape->ctx);
    *output_tangent = result;
    return TG_OK;
}

/* ---- reverse mode into the caller's arrays ------------------------------------------------- */

/* The persistent leaves of entries [0, last] that are not among the inputs, with their
 * gradient buffers as they were: a product with respect to some inputs must not add into the
 * gradients of the others (a parameter's, which an optimizer would then step). */
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
            if (!t->persistent || !t->requires_grad || find_input(inputs, n, t) >= 0) continue;
            bool seen = false;
            for (int64_t j = 0; j < set->count && !seen; j++) seen = set->tensors[j] == t;
            if (seen) continue;
            set->tensors[set->count] = t;
            set->grads[set->count] = t->grad;
            set->unset[set->count++] = t->grad_unset;
            t->grad = NULL; /* the walk gives it a zeroed buffer of the arena */
        }
    }
    return TG_OK;
}

static void put_back(const set_aside *set) {
    for (int64_t j = 0; j < set->count; j++) {
        set->tensors[j]->grad = set->grads[j];
        set->tensors[j]->grad_unset = set->unset[j];
    }
}

/* A backward walk whose values are not the step's gradients (H v; a node's VJP on the scratch
 * tape): the backward hooks, which watch and clip gradients, neither see nor change it. */
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
    if (!tape) return TG_ERR_INVALID;
    const char *what = "vjp";
    tg_status status = check_tensor(tape, what, "output", 0, output);
    if (status == TG_OK) status = check_inputs(tape, what, n, inputs);
    if (status != TG_OK) return status;
    if (!u || (n > 0 && !grads))
        return tgi_error(tape->ctx, TG_ERR_INVALID, "vjp: the %s is NULL", !u ? "seed u" : "grads array");
    for (int i = 0; i < n; i++)
        if (!grads[i]) return tgi_error(tape->ctx, TG_ERR_INVALID, "vjp: grads[%d] is NULL", i);
    /* The walk accumulates into t->grad: point it at the caller's (zeroed) arrays meanwhile,
     * and the other persistent leaves' (parameters not asked for) at scratch in the arena. */
    int64_t last = recorded_entry(tape, output);
    set_aside set = {0};
    if ((status = set_aside_others(tape, last, n, inputs, &set)) != TG_OK) return status;
    float **kept = tgi_arena_alloc(&tape->arena, (size_t)(n ? n : 1) * (sizeof(float *) + 1));
    if (!kept) return tgi_error(tape->ctx, TG_ERR_NOMEM, "vjp: out of memory");
    bool *kept_unset = (bool *)(kept + n);
    for (int i = 0; i < n; i++) memset(grads[i], 0, (size_t)inputs[i]->size * sizeof(float));
    for (int i = 0; i < n; i++) {
        /* an input listed twice gets one array, the first; the others are copied after */
        if (find_input(inputs, i, inputs[i]) >= 0) continue;
        kept[i] = inputs[i]->grad;
        kept_unset[i] = inputs[i]->grad_unset;
        inputs[i]->grad = grads[i];
    }
    int given = find_input(inputs, n, output);
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
        int first = find_input(inputs, i + 1, inputs[i]);
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
    return vjp_into(tape, output, u, n, inputs, grads, true);
}

/* ---- Hessian-vector products ---------------------------------------------------------------- */


tg_status tg_hvp(tg_tape *tape, tg_tensor *loss, int n, tg_tensor *const *params,
                 const float *const *v, float *const *hv) {
    if (!tape) return TG_ERR_INVALID;
    const char *what = "hvp";
    tg_status status = check_tensor(tape, what, "loss", 0, loss);
    if (status == TG_OK) status = check_inputs(tape, what, n, params);
    if (status != TG_OK) return status;
    if (loss->size != 1)
        return tgi_error(tape->ctx, TG_ERR_SHAPE, "hvp: the loss has %lld elements, not 1",
                         (long long)loss->size);
    if (n > 0 && (!v || !hv))
        return tgi_error(tape->ctx, TG_ERR_INVALID, "hvp: the %s array is NULL", !v ? "v" : "hv");
    tg_tensor *local[16];
    tg_tensor **directions = n <= 16 ? local
                             : tgi_arena_alloc(&tape->arena, (size_t)n * sizeof *directions);
    if (!directions) return tgi_error(tape->ctx, TG_ERR_NOMEM, "hvp: out of memory");
    for (int i = 0; i < n; i++) {
        if (!v[i] || !hv[i])
            return tgi_error(tape->ctx, TG_ERR_INVALID, "hvp: %s[%d] is NULL", !v[i] ? "v" : "hv", i);
        if (!(directions[i] = borrowed(tape, params[i], v[i]))) return tg_errcode(tape->ctx);
    }
    /* The step's forward ends here (as at its first backward): a replay redoes the step, not
     * the product, whose directions are the caller's arrays and may be gone by then. */
    if (tape->forward_entries < 0) {
        tape->forward_entries = tape->n_entries;
        tape->forward_unrecorded = tape->n_unrecorded;
    }
    tg_tensor *slope = NULL; /* d loss along v: <grad, v>, recorded */
    status = tg_jvp(tape, loss, n, params, directions, &slope);
    if (status != TG_OK) return status;
    if (recorded_entry(tape, slope) < 0) { /* the loss is linear in the params along v */
        for (int i = 0; i < n; i++) memset(hv[i], 0, (size_t)params[i]->size * sizeof(float));
        return TG_OK;
    }
    const float one = 1.0f;
    return vjp_into(tape, slope, &one, n, params, hv, false);
}

/* ---- recorded gradients (double backward) -------------------------------------------------- */

/* The scratch tape of tape, made on first use. */
static tg_tape *scratch_of(tg_tape *tape) {
    if (!tape->scratch) tape->scratch = tg_tape_new(tape->ctx);
    return tape->scratch;
}

/* The node a vjp call differentiates: entry attrs[0] of its tape. */
static tgi_node *origin(const tg_op_call *call) { return call->tape->entries[call->attrs[0].i64]; }

/* Copies of the origin's inputs as leaves of the scratch tape (those wanted with a gradient),
 * and the op recorded on them: the origin's call again, apart from the step's state. */
static tg_tensor *replay_on_scratch(tg_tape *scratch, const tgi_node *node, tg_tensor **copies,
                                    const bool *wanted) {
    const tg_op_call *call = &node->call;
    for (int k = 0; k < call->n_inputs; k++) {
        /* the same floats, not a copy: an op never writes its inputs (a recurrent cell reads
         * one step of a [B, T, 4H] projection: copying it per step was most of the time) */
        copies[k] = borrowed(scratch, call->inputs[k], call->inputs[k]->data);
        if (!copies[k]) return NULL;
        if (wanted[k]) tg_set_requires_grad(copies[k], true);
    }
    return tgi_record(scratch, node->op, copies, call->n_inputs, call->attrs);
}

/* Offsets of each input's gradient in the vjp node's flat output. */
static int64_t grad_offset(const tgi_node *node, int k) {
    int64_t offset = 0;
    for (int j = 0; j < k; j++) offset += node->call.inputs[j]->size;
    return offset;
}

static tg_status vjp_infer(const tg_op_call *call, tg_shape *out) {
    const tgi_node *node = origin(call);
    out->ndim = 1;
    out->dims[0] = grad_offset(node, node->call.n_inputs);
    for (int d = 1; d < TG_MAX_DIMS; d++) out->dims[d] = 1;
    return TG_OK;
}

/* Which inputs of the origin the call wants gradients for (attrs[1]: a bit per input, or all
 * when the node has more than 62). */
static bool wants(const tg_op_call *call, int k) {
    uint64_t mask = (uint64_t)call->attrs[1].i64;
    return k >= 62 ? (mask >> 62) != 0 : ((mask >> k) & 1u) != 0;
}

/* The gradients of the origin's inputs for the cotangent inputs[n]: its backward, on a copy. */
static tg_status vjp_forward(tg_op_call *call) {
    const tgi_node *node = origin(call);
    int n = node->call.n_inputs;
    tg_tape *scratch = scratch_of(call->tape);
    if (!scratch) return tg_errcode(call->tape->ctx);
    tg_tensor *local[16];
    bool local_wanted[16];
    tg_tensor **copies = n <= 16 ? local : tgi_arena_alloc(&scratch->arena, (size_t)n * sizeof *copies);
    bool *wanted = n <= 16 ? local_wanted : tgi_arena_alloc(&scratch->arena, (size_t)n);
    if (!copies || !wanted) return TG_ERR_NOMEM;
    for (int k = 0; k < n; k++) wanted[k] = wants(call, k);
    tg_tensor *y = replay_on_scratch(scratch, node, copies, wanted);
    tg_status status = y ? TG_OK : tg_errcode(scratch->ctx);
    memset(call->output->data, 0, (size_t)call->output->size * sizeof(float));
    if (status == TG_OK && y->node >= 0)
        status = unwatched_backward(scratch, y, call->inputs[n]->data);
    for (int k = 0; k < n && status == TG_OK; k++)
        if (copies[k]->grad)
            memcpy(call->output->data + grad_offset(node, k), copies[k]->grad,
                   (size_t)copies[k]->size * sizeof(float));
    tg_tape_reset(scratch);
    return status;
}

/* With w = the gradient of the output (flat, one slice per input of the origin) and u the
 * cotangent: d<w, g>/du = J w, and d<w, g>/dx = the backward of J(x) w seeded with u. */
static tg_status vjp_backward(const tg_op_call *call) {
    const tgi_node *node = origin(call);
    int n = node->call.n_inputs;
    tg_tensor *u = call->inputs[n];
    tg_tape *scratch = scratch_of(call->tape);
    if (!scratch) return tg_errcode(call->tape->ctx);
    tg_tensor *local[32];
    bool local_wanted[16];
    tg_tensor **copies = n <= 16 ? local
                         : tgi_arena_alloc(&scratch->arena, 2 * (size_t)n * sizeof *copies);
    bool *wanted = n <= 16 ? local_wanted : tgi_arena_alloc(&scratch->arena, (size_t)n);
    if (!copies || !wanted) return TG_ERR_NOMEM;
    tg_tensor **directions = copies + n;
    bool any_input_grad = false;
    for (int k = 0; k < n; k++) {
        wanted[k] = call->inputs[k]->grad != NULL || wants(call, k);
        any_input_grad |= call->inputs[k]->grad != NULL;
    }
    tg_tensor *y = replay_on_scratch(scratch, node, copies, wanted);
    tg_status status = y ? TG_OK : tg_errcode(scratch->ctx);
    for (int k = 0; k < n && status == TG_OK; k++) {
        directions[k] = NULL;
        if (!wants(call, k)) continue;
        const tg_tensor *x = node->call.inputs[k];
        directions[k] = tg_tape_from_data(scratch, x->ndim, x->shape,
                                          call->output->grad + grad_offset(node, k));
        if (!directions[k]) status = tg_errcode(scratch->ctx);
    }
    tg_tensor *slope = NULL;
    if (status == TG_OK && y->node >= 0)
        status = node_tangent(scratch, "double backward", scratch->entries[y->node], directions,
                              &slope);
    if (status == TG_OK && slope && u->grad)
        for (int64_t j = 0; j < u->size; j++) u->grad[j] += slope->data[j];
    if (status == TG_OK && slope && any_input_grad && recorded_entry(scratch, slope) >= 0) {
        status = unwatched_backward(scratch, slope, u->data);
        for (int k = 0; k < n && status == TG_OK; k++) {
            tg_tensor *x = call->inputs[k];
            if (!x->grad || !copies[k]->grad) continue;
            for (int64_t j = 0; j < x->size; j++) x->grad[j] += copies[k]->grad[j];
        }
    }
    tg_tape_reset(scratch);
    return status;
}

static char vjp_name[] = "vjp";
static char vjp_signature[] = "node:i64,inputs:i64";
static char vjp_attr_node[] = "node";
static char vjp_attr_inputs[] = "inputs";
static const tgi_op vjp_op = {
    .id = -1,
    .name = vjp_name,
    .arity = TG_VARIADIC,
    .signature = vjp_signature,
    .n_attrs = 2,
    .attrs = {{vjp_attr_node, TG_ATTR_I64}, {vjp_attr_inputs, TG_ATTR_I64}},
    .infer_shape = vjp_infer,
    .forward = vjp_forward,
    .backward = vjp_backward,
};

/* Which entries depend on a wanted input (reaches[e]): the recorded backward goes only there. */
static tg_status mark_reaching(tg_tape *tape, int64_t last, int n, tg_tensor *const *inputs,
                               bool *reaches) {
    for (int64_t e = 0; e <= last; e++) {
        const tg_op_call *call = &tape->entries[e]->call;
        bool any = find_input(inputs, n, call->output) >= 0;
        for (int k = 0; k < call->n_inputs && !any; k++) {
            int64_t from = recorded_entry(tape, call->inputs[k]);
            any = from >= 0 ? reaches[from] : find_input(inputs, n, call->inputs[k]) >= 0;
        }
        reaches[e] = any;
    }
    return TG_OK;
}

/* Input k of node leads to a wanted input. */
static bool leads_on(const tg_tape *tape, const tg_tensor *in, int n, tg_tensor *const *inputs,
                     const bool *reaches) {
    if (!in->requires_grad) return false;
    int64_t from = recorded_entry(tape, in);
    return from >= 0 ? reaches[from] : find_input(inputs, n, in) >= 0;
}

/* *sum += g, recorded (*sum NULL: g). */
static tg_status accumulate(tg_tape *tape, tg_tensor **sum, tg_tensor *g) {
    if (*sum && !(g = tg_add(tape, *sum, g))) return tg_errcode(tape->ctx);
    *sum = g;
    return TG_OK;
}

/* Records node's VJP for cotangent u: a vjp node, then one slice per input that leads on. */
static tg_status record_vjp(tg_tape *tape, int64_t e, tg_tensor *u, int n, tg_tensor *const *inputs,
                            const bool *reaches, tg_tensor **cotangent, tg_tensor **leaf_grad) {
    tgi_node *node = tape->entries[e];
    int m = node->call.n_inputs;
    uint64_t mask = 0;
    for (int k = 0; k < m; k++)
        if (leads_on(tape, node->call.inputs[k], n, inputs, reaches))
            mask |= k >= 62 ? (uint64_t)1 << 62 : (uint64_t)1 << k;
    if (!mask) return TG_OK;
    if (!node->op->backward) return no_rule(tape, node, "grad");
    if (!node->op->jvp) return no_rule(tape, node, "grad");
    tg_tensor **args = tgi_arena_alloc(&tape->arena, (size_t)(m + 1) * sizeof *args);
    if (!args) return tgi_error(tape->ctx, TG_ERR_NOMEM, "grad: out of memory");
    memcpy(args, node->call.inputs, (size_t)m * sizeof *args);
    args[m] = u;
    tg_attr_value attrs[2];
    attrs[0].i64 = e;
    attrs[1].i64 = (int64_t)mask;
    tg_tensor *flat = tgi_record(tape, &vjp_op, args, m + 1, attrs);
    if (!flat) return tg_errcode(tape->ctx);
    for (int k = 0; k < m; k++) {
        tg_tensor *in = node->call.inputs[k];
        if (!leads_on(tape, in, n, inputs, reaches)) continue;
        int64_t offset = grad_offset(node, k);
        tg_tensor *g = flat;
        if (in->size != flat->size) g = tg_slice(tape, flat, 0, offset, offset + in->size);
        if (g && (g->ndim != in->ndim || !tgi_same_shape(g, in)))
            g = tg_reshape(tape, g, in->ndim, in->shape);
        if (!g) return tg_errcode(tape->ctx);
        int64_t from = recorded_entry(tape, in);
        tg_tensor **sum = from >= 0 ? &cotangent[from] : &leaf_grad[find_input(inputs, n, in)];
        tg_status status = accumulate(tape, sum, g);
        if (status != TG_OK) return status;
    }
    return TG_OK;
}

tg_status tg_grad(tg_tape *tape, tg_tensor *output, int n, tg_tensor *const *inputs,
                  tg_tensor **grads) {
    if (!tape) return TG_ERR_INVALID;
    const char *what = "grad";
    tg_status status = check_tensor(tape, what, "output", 0, output);
    if (status == TG_OK) status = check_inputs(tape, what, n, inputs);
    if (status != TG_OK) return status;
    if (n > 0 && !grads) return tgi_error(tape->ctx, TG_ERR_INVALID, "grad: the grads array is NULL");
    if (output->size != 1)
        return tgi_error(tape->ctx, TG_ERR_SHAPE, "grad: the output has %lld elements, not 1 "
                         "(take the gradient of a scalar)", (long long)output->size);
    for (int i = 0; i < n; i++) grads[i] = NULL;
    int64_t last = recorded_entry(tape, output);
    int64_t count = last + 1;
    tg_tensor **leaf_grad = tgi_arena_alloc(&tape->arena, (size_t)(n ? n : 1) * sizeof *leaf_grad);
    tg_tensor **cotangent = count ? tgi_arena_alloc(&tape->arena, (size_t)count * sizeof *cotangent)
                                  : leaf_grad;
    bool *reaches = count ? tgi_arena_alloc(&tape->arena, (size_t)count) : NULL;
    if (!leaf_grad || !cotangent || (count && !reaches))
        return tgi_error(tape->ctx, TG_ERR_NOMEM, "grad: out of memory");
    memset(leaf_grad, 0, (size_t)(n ? n : 1) * sizeof *leaf_grad);
    if (count) {
        memset(cotangent, 0, (size_t)count * sizeof *cotangent);
        const float one = 1.0f;
        if (!(cotangent[last] = tg_tape_from_data(tape, output->ndim, output->shape, &one)))
            return tg_errcode(tape->ctx);
        mark_reaching(tape, last, n, inputs, reaches);
    } else {
        int i = find_input(inputs, n, output);
        const float one = 1.0f;
        if (i >= 0 && !(leaf_grad[i] = tg_tape_from_data(tape, output->ndim, output->shape, &one)))
            return tg_errcode(tape->ctx);
    }
    for (int64_t e = last; e >= 0 && status == TG_OK; e--) {
        tg_tensor *u = cotangent[e];
        if (!u) continue;
        int i = find_input(inputs, n, tape->entries[e]->call.output);
        if (i >= 0) grads[i] = u; /* complete: every consumer comes later */
        status = record_vjp(tape, e, u, n, inputs, reaches, cotangent, leaf_grad);
    }
    for (int i = 0; i < n && status == TG_OK; i++) {
        if (!grads[i]) grads[i] = leaf_grad[i];
        if (!grads[i] && !(grads[i] = zeros_like(tape, inputs[i]))) status = tg_errcode(tape->ctx);
    }
    return status;
}
