/*
 * autograd/double_backward.c — gradients that are themselves recorded (tg_grad, PyTorch's
 * create_graph=True), so a second backward pass differentiates them.
 *
 * tg_grad records the backward pass instead of running it: each node reached becomes a node of
 * the generic "vjp" op below, whose value is the gradients of that node's inputs (the op's own
 * backward kernel, run on the same call again in a scratch tape, so nothing of the step's saved
 * state is touched) and whose own VJP is found from the op's JVP rule: for g = J(x)^T u,
 *     d<w, g>/du = J w             (the op's JVP along w)
 *     d<w, g>/dx = d<u, J(x) w>/dx (the backward of that JVP, seeded with u).
 * So every op with a JVP rule gets double backward without a second-order rule of its own.
 * The scratch tape's work is the library's own: hooks, anomaly mode and the count of backward
 * passes (which hooks and data-parallel training go by) do not see it.
 */
#include "autograd/higher.h"

#include <string.h>

/* ---- the scratch tape ----------------------------------------------------------------------- */

/* The scratch tape of tape, made on first use and kept: its arena is reused. */
static tg_tape *scratch_of(tg_tape *tape) {
    if (!tape->scratch) tape->scratch = tg_tape_new(tape->ctx);
    return tape->scratch;
}

/* The scratch tape's work is the library's own: the user's hooks do not see it. */
static tgi_isolation enter_scratch(tg_tape *scratch, const tg_tape *tape) {
    tgi_isolation scope = tgi_isolate(tape->ctx);
    scratch->step = tape->step;
    return scope;
}

static void leave_scratch(tg_tape *scratch, const tgi_isolation *scope) {
    tg_tape_reset(scratch);
    tgi_unisolate(scope);
}

/* ---- the vjp op -------------------------------------------------------------------------- */

/* The node a vjp call differentiates: entry attrs[0] of its tape. */
static tgi_node *origin(const tg_op_call *call) { return call->tape->entries[call->attrs[0].i64]; }

/* The origin's inputs as leaves of the scratch tape (those wanted with a gradient), and the op
 * recorded on them: the origin's call again, apart from the step's state. The leaves read the
 * inputs' floats in place (a recurrent cell reads one step of a [B, T, 4H] projection: copying
 * it per step was most of the time), except for an op that writes its inputs (batch norm's
 * running statistics), which gets copies. */
static tg_tensor *replay_on_scratch(tg_tape *scratch, const tgi_node *node, tg_tensor **copies,
                                    const bool *wanted) {
    const tg_op_call *call = &node->call;
    for (int k = 0; k < call->n_inputs; k++) {
        const tg_tensor *x = call->inputs[k];
        copies[k] = node->op->writes_inputs ? tg_tape_from_data(scratch, x->ndim, x->shape, x->data)
                                            : tgi_borrowed(scratch, x, x->data);
        if (!copies[k]) return NULL;
        if (wanted[k]) tg_set_requires_grad(copies[k], true);
    }
    return tgi_record(scratch, node->op, copies, call->n_inputs, call->attrs);
}

/* Offset of input k's gradient in the vjp node's flat output. */
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

/* Which inputs of the origin the call wants gradients for (attrs[1]: a bit per input; bit 62
 * stands for every input from the 63rd on). */
static bool wants(const tg_op_call *call, int k) {
    uint64_t mask = (uint64_t)call->attrs[1].i64;
    return k >= 62 ? (mask >> 62) != 0 : ((mask >> k) & 1u) != 0;
}

/* Room for n tensor pointers (twice) and n flags: on the stack for a small call. */
typedef struct vjp_room {
    tg_tensor *local[32];
    bool local_flags[16];
    tg_tensor **copies, **directions;
    bool *wanted;
} vjp_room;

static bool take_room(vjp_room *room, tg_tape *scratch, int n) {
    bool small = n <= 16;
    room->copies = small ? room->local : tgi_arena_alloc(&scratch->arena, 2 * (size_t)n * sizeof(tg_tensor *));
    room->wanted = small ? room->local_flags : tgi_arena_alloc(&scratch->arena, (size_t)n);
    room->directions = room->copies ? room->copies + n : NULL;
    return room->copies && room->wanted;
}

/* The gradients of the origin's inputs for the cotangent inputs[n]: its backward, on the call
 * made again in the scratch tape. */
static tg_status vjp_forward(tg_op_call *call) {
    const tgi_node *node = origin(call);
    int n = node->call.n_inputs;
    tg_tape *scratch = scratch_of(call->tape);
    if (!scratch) return tg_errcode(call->tape->ctx);
    tgi_isolation scope = enter_scratch(scratch, call->tape);
    vjp_room room;
    tg_status status = take_room(&room, scratch, n) ? TG_OK : TG_ERR_NOMEM;
    for (int k = 0; k < n && status == TG_OK; k++) room.wanted[k] = wants(call, k);
    tg_tensor *y = status == TG_OK ? replay_on_scratch(scratch, node, room.copies, room.wanted) : NULL;
    if (status == TG_OK && !y) status = tg_errcode(scratch->ctx);
    memset(call->output->data, 0, (size_t)call->output->size * sizeof(float));
    if (status == TG_OK && y->node >= 0)
        status = tg_backward_with(scratch, y, call->inputs[n]->data);
    for (int k = 0; k < n && status == TG_OK; k++)
        if (room.copies[k]->grad)
            memcpy(call->output->data + grad_offset(node, k), room.copies[k]->grad,
                   (size_t)room.copies[k]->size * sizeof(float));
    leave_scratch(scratch, &scope);
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
    tgi_isolation scope = enter_scratch(scratch, call->tape);
    vjp_room room;
    tg_status status = take_room(&room, scratch, n) ? TG_OK : TG_ERR_NOMEM;
    bool any_input_grad = false;
    for (int k = 0; k < n && status == TG_OK; k++) {
        room.wanted[k] = call->inputs[k]->grad != NULL || wants(call, k);
        any_input_grad |= call->inputs[k]->grad != NULL;
    }
    tg_tensor *y = status == TG_OK ? replay_on_scratch(scratch, node, room.copies, room.wanted) : NULL;
    if (status == TG_OK && !y) status = tg_errcode(scratch->ctx);
    for (int k = 0; k < n && status == TG_OK; k++) {
        room.directions[k] = NULL;
        if (!wants(call, k)) continue;
        const tg_tensor *x = node->call.inputs[k];
        room.directions[k] = tg_tape_from_data(scratch, x->ndim, x->shape,
                                               call->output->grad + grad_offset(node, k));
        if (!room.directions[k]) status = tg_errcode(scratch->ctx);
    }
    tg_tensor *slope = NULL;
    if (status == TG_OK && y->node >= 0)
        status = tgi_node_tangent(scratch, "double backward", scratch->entries[y->node],
                                  room.directions, &slope);
    if (status == TG_OK && slope && u->grad)
        for (int64_t j = 0; j < u->size; j++) u->grad[j] += slope->data[j];
    if (status == TG_OK && slope && any_input_grad && tgi_recorded_entry(scratch, slope) >= 0) {
        status = tg_backward_with(scratch, slope, u->data);
        for (int k = 0; k < n && status == TG_OK; k++) {
            tg_tensor *x = call->inputs[k];
            if (!x->grad || !room.copies[k]->grad) continue;
            for (int64_t j = 0; j < x->size; j++) x->grad[j] += room.copies[k]->grad[j];
        }
    }
    leave_scratch(scratch, &scope);
    return status;
}

static char vjp_name[] = "vjp";
static char vjp_signature[] = "node:i64,inputs:i64";
static char vjp_attr_node[] = "node";
static char vjp_attr_inputs[] = "inputs";
/* Not in the registry (it cannot be called by name: its attribute is an entry of the tape);
 * id -1 marks it for the messages of autograd/higher.c. */
static const tgi_op vjp_op = {
    .id = TGI_OP_ID_VJP,
    .name = vjp_name,
    .arity = TG_VARIADIC,
    .signature = vjp_signature,
    .n_attrs = 2,
    .attrs = {{vjp_attr_node, TG_ATTR_I64}, {vjp_attr_inputs, TG_ATTR_I64}},
    .infer_shape = vjp_infer,
    .forward = vjp_forward,
    .backward = vjp_backward,
};

/* ---- tg_grad ------------------------------------------------------------------------------- */

/* Which entries depend on a wanted input (reaches[e]): the recorded backward goes only there. */
static void mark_reaching(const tg_tape *tape, int64_t last, int n, tg_tensor *const *inputs,
                          bool *reaches) {
    for (int64_t e = 0; e <= last; e++) {
        const tg_op_call *call = &tape->entries[e]->call;
        bool any = tgi_find_tensor(inputs, n, call->output) >= 0;
        for (int k = 0; k < call->n_inputs && !any; k++) {
            int64_t from = tgi_recorded_entry(tape, call->inputs[k]);
            any = from >= 0 ? reaches[from] : tgi_find_tensor(inputs, n, call->inputs[k]) >= 0;
        }
        reaches[e] = any;
    }
}

/* Input `in` of a node leads to a wanted input. */
static bool leads_on(const tg_tape *tape, const tg_tensor *in, int n, tg_tensor *const *inputs,
                     const bool *reaches) {
    if (!in->requires_grad) return false;
    int64_t from = tgi_recorded_entry(tape, in);
    return from >= 0 ? reaches[from] : tgi_find_tensor(inputs, n, in) >= 0;
}

/* *sum += g, recorded (*sum NULL: g). */
static tg_status accumulate(tg_tape *tape, tg_tensor **sum, tg_tensor *g) {
    if (*sum && !(g = tg_add(tape, *sum, g))) return tg_errcode(tape->ctx);
    *sum = g;
    return TG_OK;
}

static tg_status no_second_order(tg_tape *tape, const tgi_node *node) {
    char name[TG_LABEL_MAX + 32];
    tgi_node_name(node->call.output, name, sizeof name);
    if (node->op->id == TGI_OP_ID_RECOMPUTE)
        return tgi_error(tape->ctx, TG_ERR_NOGRAD, "grad: '%s' comes from a recomputed segment "
                         "(tg_recompute, or a module set to recompute), whose inside is not on the "
                         "tape; a recorded gradient needs the step recorded without segments",
                         name);
    if (node->op->id < 0)
        return tgi_error(tape->ctx, TG_ERR_NOGRAD, "grad: '%s' is a gradient recorded by tg_grad; "
                         "a gradient of it is a third-order product, which is not available", name);
    return tgi_error(tape->ctx, TG_ERR_NOGRAD, "grad: op '%s' (output '%s') has no forward-mode "
                     "(JVP) rule, so its recorded gradient could not be differentiated; register "
                     "one (tg_op_def.jvp)", node->op->name, name);
}

/* Records node e's VJP for cotangent u: a vjp node, then one slice per input that leads on. */
static tg_status record_vjp(tg_tape *tape, int64_t e, tg_tensor *u, int n, tg_tensor *const *inputs,
                            const bool *reaches, tg_tensor **cotangent, tg_tensor **leaf_grad) {
    tgi_node *node = tape->entries[e];
    int m = node->call.n_inputs;
    uint64_t mask = 0;
    for (int k = 0; k < m; k++)
        if (leads_on(tape, node->call.inputs[k], n, inputs, reaches))
            mask |= k >= 62 ? (uint64_t)1 << 62 : (uint64_t)1 << k;
    if (!mask) return TG_OK;
    if (!node->op->backward || !node->op->jvp) return no_second_order(tape, node);
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
        if (g && !tgi_same_shape(g, in)) g = tg_reshape(tape, g, in->ndim, in->shape);
        if (!g) return tg_errcode(tape->ctx);
        int64_t from = tgi_recorded_entry(tape, in);
        tg_tensor **sum = from >= 0 ? &cotangent[from] : &leaf_grad[tgi_find_tensor(inputs, n, in)];
        tg_status status = accumulate(tape, sum, g);
        if (status != TG_OK) return status;
    }
    return TG_OK;
}

tg_status tg_grad(tg_tape *tape, tg_tensor *output, int n, tg_tensor *const *inputs,
                  tg_tensor **grads) {
    if (!tape) return TG_ERR_INVALID;
    const char *what = "grad";
    tg_status status = tgi_check_member(tape, what, "output", 0, output);
    if (status == TG_OK) status = tgi_check_wrt(tape, what, n, inputs, true);
    if (status != TG_OK) return status;
    if (n > 0 && !grads) return tgi_error(tape->ctx, TG_ERR_INVALID, "grad: the grads array is NULL");
    if (output->size != 1)
        return tgi_error(tape->ctx, TG_ERR_SHAPE, "grad: the output has %lld elements, not 1 "
                         "(take the gradient of a scalar)", (long long)output->size);
    if ((status = tgi_check_recorded(tape, what, n, inputs, output)) != TG_OK) return status;
    for (int i = 0; i < n; i++) grads[i] = NULL;
    int64_t last = tgi_recorded_entry(tape, output), count = last + 1;
    tg_tensor **leaf_grad = tgi_arena_alloc(&tape->arena, (size_t)(n ? n : 1) * sizeof *leaf_grad);
    tg_tensor **cotangent = count ? tgi_arena_alloc(&tape->arena, (size_t)count * sizeof *cotangent)
                                  : leaf_grad;
    bool *reaches = count ? tgi_arena_alloc(&tape->arena, (size_t)count) : NULL;
    if (!leaf_grad || !cotangent || (count && !reaches))
        return tgi_error(tape->ctx, TG_ERR_NOMEM, "grad: out of memory");
    memset(leaf_grad, 0, (size_t)(n ? n : 1) * sizeof *leaf_grad);
    const float one = 1.0f;
    tg_tensor *seed = tg_tape_from_data(tape, output->ndim, output->shape, &one);
    if (!seed) return tg_errcode(tape->ctx);
    if (count) {
        memset(cotangent, 0, (size_t)count * sizeof *cotangent);
        cotangent[last] = seed;
        mark_reaching(tape, last, n, inputs, reaches);
    } else {
        leaf_grad[tgi_find_tensor(inputs, n, output)] = seed; /* the output is an input */
    }
    for (int64_t e = last; e >= 0 && status == TG_OK; e--) {
        tg_tensor *u = cotangent[e];
        if (!u) continue;
        int i = tgi_find_tensor(inputs, n, tape->entries[e]->call.output);
        if (i >= 0) grads[i] = u; /* complete: every consumer comes later */
        status = record_vjp(tape, e, u, n, inputs, reaches, cotangent, leaf_grad);
    }
    for (int i = 0; i < n && status == TG_OK; i++) {
        int first = tgi_find_tensor(inputs, i, inputs[i]); /* listed before: the same gradient */
        if (first >= 0) grads[i] = grads[first];
        if (!grads[i]) grads[i] = leaf_grad[i];
        if (!grads[i] && !(grads[i] = tg_tape_zeros(tape, inputs[i]->ndim, inputs[i]->shape)))
            status = tg_errcode(tape->ctx);
    }
    return status;
}
