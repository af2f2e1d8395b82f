/*
 * autograd/recompute.c — gradient checkpointing (tg_recompute, PyTorch's
 * torch.utils.checkpoint): a segment of the step keeps only its inputs and outputs on the tape
 * and computes its inside again when backward reaches it.
 *
 * How: the segment's function records on a scratch tape of the tape's own (the proxies of its
 * inputs read their floats in place); its outputs are copied into one flat "recompute" node of
 * the tape, and one "recompute_output" view per output hands them to the caller; the scratch
 * tape is then rewound, so what the segment computed inside costs nothing until backward. When
 * the walk reaches the recompute node, the function records on the scratch tape again and the
 * scratch tape is walked from its outputs, whose gradient buffers are the node's, and into its
 * inputs', which are the tape's own buffers: every gradient is summed in the order, and so to
 * the bits, of a step recorded without the segment. Then the scratch tape is rewound again: the
 * memory of a step is that of its segments' inputs and outputs plus one segment's inside.
 *
 * What must come out the same the second time: dropout's masks (each op seeded by an attribute
 * gets the attribute of its first run back, as PyTorch restores the RNG state), batch norm's
 * running statistics (updated once: the second run updates copies), and the outputs themselves
 * (compared to the bit; a function whose numbers depend on anything else is refused). The
 * segment's parameters are found on the first run and become inputs of its node, so the walk
 * prepares their gradients and their leaf hooks fire as in a plain step. Forward hooks and
 * anomaly mode watch the first run only; backward hooks see the inside's nodes as they would in
 * a plain step, with their complete gradients.
 */
#include "autograd/higher.h"

#include <stdio.h>
#include <string.h>

/* Why the function runs on the scratch tape. */
typedef enum segment_pass {
    SEGMENT_FIRST,       /* tg_recompute: the outputs, which parameters, which seeds */
    SEGMENT_REPLAY,      /* tg_tape_replay: the outputs of the new step */
    SEGMENT_RECOMPUTE    /* backward: the inside again, recorded, to walk */
} segment_pass;

/* The attributes an op seeded by them got on the first run (dropout's seed). */
typedef struct seed_entry {
    struct seed_entry *next;
    int op_id;
    tg_attr_value attrs[TG_MAX_ATTRS];
} seed_entry;

/* One segment of the step, in the tape's arena; the recompute node's attribute points at it. */
struct tgi_segment {
    tg_tape *tape;
    tg_recompute_fn fn;
    void *user;
    int n_inputs, n_params, n_outputs; /* the node's inputs: n_inputs given, then n_params found */
    tg_tensor **outputs;     /* the scratch tape's outputs of the run in progress */
    tg_shape *shapes;        /* of each output */
    int64_t *offsets;        /* output k's floats in the node: [offsets[k], offsets[k + 1]) */
    seed_entry *seeds;       /* in the order the first run drew them */
    seed_entry **seed_next;  /* the first run: where the next goes; later runs: the next to use */
    segment_pass pass;
    bool outputs_ready;      /* the first run's outputs wait for the node's forward to copy them */
};

/* ---- the scratch tape ----------------------------------------------------------------------- */

static tg_tape *scratch_of(tg_tape *tape) {
    if (!tape->recompute) {
        tape->recompute = tg_tape_new(tape->ctx);
        if (tape->recompute) tape->recompute->parent = tape;
    }
    return tape->recompute;
}

bool tgi_recomputing(const tg_tape *tape) {
    return tape && tape->segment && tape->segment->pass == SEGMENT_RECOMPUTE;
}

bool tg_recomputing(const tg_tape *tape) { return tgi_recomputing(tape); }

/* Called by record for an op seeded by an attribute, or writing its inputs, while a segment's
 * function runs: the first run notes the seed, later runs get it back; the recompute gives an
 * op that writes its inputs copies of those that are state (batch norm's running statistics),
 * which its first run updated already. */
tg_status tgi_segment_call(tg_tape *scratch, const tgi_op *op, tg_tensor *const **inputs,
                           int n_inputs, const tg_attr_value **attrs) {
    tgi_segment *seg = scratch->segment;
    tg_ctx *ctx = scratch->ctx;
    if (op->seeded_by_attribute && seg->pass == SEGMENT_FIRST) {
        seed_entry *entry = tgi_arena_alloc(&seg->tape->arena, sizeof *entry);
        if (!entry) return tgi_error(ctx, TG_ERR_NOMEM, "recompute: out of memory for a seed");
        entry->next = NULL;
        entry->op_id = op->id;
        memcpy(entry->attrs, *attrs, (size_t)op->n_attrs * sizeof(tg_attr_value));
        *seg->seed_next = entry;
        seg->seed_next = &entry->next;
    } else if (op->seeded_by_attribute) {
        seed_entry *entry = *seg->seed_next;
        if (!entry || entry->op_id != op->id)
            return tgi_error(ctx, TG_ERR_STATE, "recompute: the segment's function called %s where "
                             "its first run called %s; it must call the same ops every time",
                             op->name, entry ? tgi_op_by_id(ctx, entry->op_id)->name : "no more "
                             "seeded op");
        if (seg->pass == SEGMENT_REPLAY) memcpy(entry->attrs, *attrs,
                                                (size_t)op->n_attrs * sizeof(tg_attr_value));
        else *attrs = entry->attrs; /* the first run's mask again */
        seg->seed_next = &entry->next;
    }
    if (op->writes_inputs && seg->pass == SEGMENT_RECOMPUTE) {
        tg_tensor **copies = tgi_arena_alloc(&scratch->arena, (size_t)n_inputs * sizeof *copies);
        if (!copies) return tgi_error(ctx, TG_ERR_NOMEM, "recompute: out of memory");
        for (int i = 0; i < n_inputs; i++) {
            tg_tensor *x = (*inputs)[i];
            copies[i] = x;
            if (x && x->persistent && !x->requires_grad &&
                !(copies[i] = tg_tape_from_data(scratch, x->ndim, x->shape, x->data)))
                return tg_errcode(ctx);
        }
        *inputs = copies;
    }
    return TG_OK;
}

/* ---- one run of the function ---------------------------------------------------------------- */

/* The inputs as the scratch tape sees them: a tape tensor through a proxy reading its floats
 * (and, in backward, accumulating into its gradient), a persistent one as itself. */
static tg_tensor **proxies_of(tg_tape *scratch, tg_tensor *const *inputs, int n) {
    tg_tensor **proxies = tgi_arena_alloc(&scratch->arena, (size_t)(n ? n : 1) * sizeof *proxies);
    if (!proxies) {
        tgi_error(scratch->ctx, TG_ERR_NOMEM, "recompute: out of memory");
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        tg_tensor *x = inputs[i];
        if (x->persistent) {
            proxies[i] = x;
            continue;
        }
        if (!(proxies[i] = tgi_borrowed(scratch, x, x->data))) return NULL;
        proxies[i]->requires_grad = x->requires_grad;
        if (x->label != tgi_no_label) { /* the messages of the inside name it */
            char *room = tgi_label_room(proxies[i]);
            if (room) {
                memcpy(room, x->label, TG_LABEL_MAX);
                proxies[i]->label = room;
            }
        }
    }
    return proxies;
}

static tg_status check_outputs(tgi_segment *seg, tg_tape *scratch) {
    for (int k = 0; k < seg->n_outputs; k++) {
        const tg_tensor *y = seg->outputs[k];
        if (!y) /* an op failed (its message is first) and the function went on, or none did */
            return tgi_error(scratch->ctx, TG_ERR_INVALID, "recompute: the function left output "
                             "%d of %d NULL", k, seg->n_outputs);
        if (y->tape != scratch || y->generation != scratch->generation)
            return tgi_error(scratch->ctx, TG_ERR_INVALID, "recompute: output %d is not a tensor "
                             "of the tape the function was given (compute it from the inputs "
                             "on that tape)", k);
        for (int j = 0; j < k; j++)
            if (seg->outputs[j] == y)
                return tgi_error(scratch->ctx, TG_ERR_INVALID, "recompute: outputs %d and %d are "
                                 "the same tensor; return it once", j, k);
    }
    return TG_OK;
}

/* Runs the function on the scratch tape for `pass`; its outputs in seg->outputs. */
static tg_status run_segment(tgi_segment *seg, tg_tape *scratch, tg_tensor *const *inputs,
                             segment_pass pass, tg_tensor ***proxies) {
    scratch->step = seg->tape->step;
    seg->pass = pass;
    seg->seed_next = &seg->seeds;
    *proxies = proxies_of(scratch, inputs, seg->n_inputs);
    if (!*proxies) return tg_errcode(scratch->ctx);
    for (int k = 0; k < seg->n_outputs; k++) seg->outputs[k] = NULL;
    tg_status before = scratch->ctx->err_code; /* what failed inside is the news, if anything */
    scratch->segment = seg;
    tg_status status = seg->fn(scratch, *proxies, seg->n_inputs, seg->outputs, seg->n_outputs,
                               seg->user);
    scratch->segment = NULL;
    tg_ctx *ctx = scratch->ctx;
    if (status != TG_OK && before == TG_OK && ctx->err_code != TG_OK) return ctx->err_code;
    if (status != TG_OK) return tgi_error(ctx, status, "recompute: the function failed");
    if (pass != SEGMENT_FIRST && *seg->seed_next)
        return tgi_error(ctx, TG_ERR_STATE, "recompute: the segment's function called fewer seeded "
                         "ops (%s) than its first run; it must call the same ops every time",
                         tgi_op_by_id(ctx, (*seg->seed_next)->op_id)->name);
    status = check_outputs(seg, scratch);
    return status != TG_OK && before == TG_OK && ctx->err_code != TG_OK ? ctx->err_code : status;
}

/* The parameters the run read that want a gradient and are not among the inputs, in the order
 * of first use: an array in the scratch arena (NULL when out of memory), their count in *n. */
static tg_tensor **find_params(const tgi_segment *seg, tg_tape *scratch, tg_tensor *const *inputs,
                               int *n) {
    int64_t room = 1;
    for (int64_t e = 0; e < scratch->n_entries; e++) room += scratch->entries[e]->call.n_inputs;
    tg_tensor **params = tgi_arena_alloc(&scratch->arena, (size_t)room * sizeof *params);
    *n = 0;
    if (!params) {
        tgi_error(scratch->ctx, TG_ERR_NOMEM, "recompute: out of memory");
        return NULL;
    }
    for (int64_t e = 0; e < scratch->n_entries; e++) {
        const tg_op_call *call = &scratch->entries[e]->call;
        for (int i = 0; i < call->n_inputs; i++) {
            tg_tensor *p = call->inputs[i];
            if (p->persistent && p->requires_grad && tgi_find_tensor(params, *n, p) < 0 &&
                tgi_find_tensor(inputs, seg->n_inputs, p) < 0)
                params[(*n)++] = p;
        }
    }
    return params;
}

/* ---- the recompute node and its views ------------------------------------------------------- */

static tgi_segment *segment_of(const tg_op_call *call) {
    return (tgi_segment *)(intptr_t)call->attrs[0].i64;
}

static tg_status segment_infer(const tg_op_call *call, tg_shape *out) {
    const tgi_segment *seg = segment_of(call);
    out->ndim = 1;
    out->dims[0] = seg->offsets[seg->n_outputs];
    for (int d = 1; d < TG_MAX_DIMS; d++) out->dims[d] = 1;
    return TG_OK;
}

static bool same_shape(const tg_tensor *y, const tg_shape *shape) {
    if (y->ndim != shape->ndim) return false;
    for (int d = 0; d < y->ndim; d++)
        if (y->shape[d] != shape->dims[d]) return false;
    return true;
}

static tg_status shape_changed(tg_ctx *ctx, const char *when, int k, const tg_tensor *y,
                               const tg_shape *shape) {
    char a[96], b[96];
    return tgi_error(ctx, TG_ERR_SHAPE, "recompute: %s, output %d of the segment is %s where its "
                     "first run gave %s; the function must compute the same shapes every time",
                     when, k, tgi_format_shape(y->ndim, y->shape, a, sizeof a),
                     tgi_format_shape(shape->ndim, shape->dims, b, sizeof b));
}

/* A replay of the step: the function runs again on the new numbers (fresh seeds included). */
static tg_status replay_segment(tgi_segment *seg, tg_op_call *call) {
    tg_tape *scratch = scratch_of(seg->tape);
    if (!scratch) return tg_errcode(seg->tape->ctx);
    tg_tensor **proxies;
    tg_status status = run_segment(seg, scratch, call->inputs, SEGMENT_REPLAY, &proxies);
    for (int k = 0; k < seg->n_outputs && status == TG_OK; k++)
        if (!same_shape(seg->outputs[k], &seg->shapes[k]))
            status = shape_changed(seg->tape->ctx, "in a replay", k, seg->outputs[k], &seg->shapes[k]);
    if (status == TG_OK) {
        int n;
        tg_tensor **found = find_params(seg, scratch, call->inputs, &n);
        bool same = n == seg->n_params;
        for (int i = 0; i < n && same; i++) same = found[i] == call->inputs[seg->n_inputs + i];
        if (!found) status = TG_ERR_NOMEM;
        else if (!same)
            status = tgi_error(seg->tape->ctx, TG_ERR_STATE, "recompute: in a replay the segment's "
                               "function read other parameters than in its first run");
    }
    for (int k = 0; k < seg->n_outputs && status == TG_OK; k++)
        memcpy(call->output->data + seg->offsets[k], seg->outputs[k]->data,
               (size_t)seg->outputs[k]->size * sizeof(float));
    tg_tape_reset(scratch);
    return status;
}

static tg_status segment_forward(tg_op_call *call) {
    tgi_segment *seg = segment_of(call);
    if (!seg->outputs_ready) return replay_segment(seg, call);
    for (int k = 0; k < seg->n_outputs; k++)
        memcpy(call->output->data + seg->offsets[k], seg->outputs[k]->data,
               (size_t)seg->outputs[k]->size * sizeof(float));
    seg->outputs_ready = false;
    return TG_OK;
}

/* The recompute: the function again, recorded, its outputs checked against the first run's. */
static tg_status recompute_inside(tgi_segment *seg, tg_tape *scratch, const tg_op_call *call,
                                  tg_tensor ***proxies) {
    tg_ctx *ctx = scratch->ctx;
    /* forward hooks and anomaly mode watched the first run: the same numbers again are not
     * news (ctx->watch_forward gates both) */
    int watch = ctx->watch_forward, forward_hooks = ctx->live_hooks[TG_PASS_FORWARD];
    ctx->watch_forward = 0;
    ctx->live_hooks[TG_PASS_FORWARD] = 0;
    tg_status status = run_segment(seg, scratch, call->inputs, SEGMENT_RECOMPUTE, proxies);
    ctx->watch_forward = watch;
    ctx->live_hooks[TG_PASS_FORWARD] = forward_hooks;
    for (int k = 0; k < seg->n_outputs && status == TG_OK; k++) {
        const tg_tensor *y = seg->outputs[k];
        if (!same_shape(y, &seg->shapes[k]))
            return shape_changed(ctx, "in backward", k, y, &seg->shapes[k]);
        const float *first = call->output->data + seg->offsets[k];
        if (memcmp(first, y->data, (size_t)y->size * sizeof(float)) == 0) continue;
        int64_t j = 0;
        while (j < y->size && memcmp(first + j, y->data + j, sizeof(float)) == 0) j++;
        return tgi_error(ctx, TG_ERR_STATE, "recompute: in backward, output %d of the segment "
                         "differs from its first run at element %lld (%.9g, then %.9g): its "
                         "function must give the same numbers every time (randomness only from "
                         "op seeds such as tg_dropout's; no value it reads changed since)",
                         k, (long long)j, (double)first[j], (double)y->data[j]);
    }
    return status;
}

/* Backward: the inside recorded again on the scratch tape and walked from the outputs, whose
 * gradients start as the node's (already complete: every consumer outside came later on the
 * tape), into the tape's own gradient buffers of the inputs (a proxy accumulates into its
 * tensor's buffer, as the plain step's ops would have, in the same order). */
static tg_status segment_backward(const tg_op_call *call) {
    tgi_segment *seg = segment_of(call);
    tg_tape *scratch = scratch_of(seg->tape);
    if (!scratch) return tg_errcode(seg->tape->ctx);
    tg_tensor **proxies;
    tg_status status = recompute_inside(seg, scratch, call, &proxies);
    int64_t last = -1;
    for (int i = 0; i < seg->n_inputs && status == TG_OK; i++)
        if (proxies[i] != call->inputs[i]) proxies[i]->grad = call->inputs[i]->grad;
    for (int k = 0; k < seg->n_outputs && status == TG_OK; k++) {
        tg_tensor *y = seg->outputs[k];
        float *g = call->output->grad + seg->offsets[k];
        if (y->node >= 0) {
            y->grad = g;
            if (y->node > last) last = y->node;
        } else if (y->grad) { /* an input passed through (a proxy), or one already reached */
            for (int64_t j = 0; j < y->size; j++) y->grad[j] += g[j];
        }
    }
    if (status == TG_OK && last >= 0) {
        scratch->walking = true;
        scratch->misused = false;
        status = tgi_walk(scratch, last);
        scratch->walking = false;
    }
    tg_tape_reset(scratch);
    return status;
}

static tg_status output_infer(const tg_op_call *call, tg_shape *out) {
    *out = segment_of(call)->shapes[call->attrs[1].i64];
    return TG_OK;
}

/* A view of output k in the node's floats. */
static tg_status output_forward(tg_op_call *call) {
    const tgi_segment *seg = segment_of(call);
    call->output->data = call->inputs[0]->data + seg->offsets[call->attrs[1].i64];
    return TG_OK;
}

/* Output k's slice of the node's gradient has this one writer: a copy keeps its bits (even the
 * sign of a zero) for the inside's walk. */
static tg_status output_backward(const tg_op_call *call) {
    const tgi_segment *seg = segment_of(call);
    const tg_tensor *y = call->output;
    memcpy(call->inputs[0]->grad + seg->offsets[call->attrs[1].i64], y->grad,
           (size_t)y->size * sizeof(float));
    return TG_OK;
}

static char segment_name[] = "recompute";
static char segment_signature[] = "segment:i64";
static char output_name[] = "recompute_output";
static char output_signature[] = "segment:i64,index:i64";
static char attr_segment[] = "segment";
static char attr_index[] = "index";
/* Not in the registry (their attributes point into the tape); no JVP: second-order products
 * through a segment are refused (autograd/higher.c names it). */
static const tgi_op segment_op = {
    .id = TGI_OP_ID_RECOMPUTE,
    .name = segment_name,
    .arity = TG_VARIADIC,
    .signature = segment_signature,
    .n_attrs = 1,
    .attrs = {{attr_segment, TG_ATTR_I64}},
    .infer_shape = segment_infer,
    .forward = segment_forward,
    .backward = segment_backward,
};
static const tgi_op output_op = {
    .id = TGI_OP_ID_RECOMPUTE,
    .name = output_name,
    .arity = 1,
    .signature = output_signature,
    .n_attrs = 2,
    .attrs = {{attr_segment, TG_ATTR_I64}, {attr_index, TG_ATTR_I64}},
    .infer_shape = output_infer,
    .forward = output_forward,
    .backward = output_backward,
};

/* ---- tg_recompute ---------------------------------------------------------------------------- */

static tg_status check_call(tg_tape *tape, tg_recompute_fn fn, int n_inputs,
                            tg_tensor *const *inputs, int n_outputs, tg_tensor **outputs) {
    tg_ctx *ctx = tape->ctx;
    if (tape->segment)
        return tgi_error(ctx, TG_ERR_STATE, "recompute: called inside a recomputed segment's "
                         "function; segments do not nest (make the outer one smaller, or call "
                         "the inner function directly)");
    if (tgi_refuse_in_pass(tape, "tg_recompute") != TG_OK) return TG_ERR_STATE;
    if (!fn) return tgi_error(ctx, TG_ERR_INVALID, "recompute: the function is NULL");
    if (n_outputs < 1 || !outputs)
        return tgi_error(ctx, TG_ERR_INVALID, "recompute: %d outputs%s", n_outputs,
                         n_outputs < 1 ? " (must be >= 1)" : " but the array is NULL");
    if (n_inputs < 0 || (n_inputs > 0 && !inputs))
        return tgi_error(ctx, TG_ERR_INVALID, "recompute: %d inputs%s", n_inputs,
                         n_inputs < 0 ? " (must be >= 0)" : " but the array is NULL");
    for (int i = 0; i < n_inputs; i++) {
        tg_status status = tgi_check_member(tape, "recompute", "input", i, inputs[i]);
        if (status != TG_OK) return status;
    }
    return TG_OK;
}

/* The segment's record in the tape's arena, with room for its outputs' shapes and offsets. */
static tgi_segment *new_segment(tg_tape *tape, tg_recompute_fn fn, void *user, int n_inputs,
                                int n_outputs) {
    size_t n = (size_t)n_outputs;
    tgi_segment *seg = tgi_arena_alloc(&tape->arena, sizeof *seg + n * sizeof(tg_tensor *) +
                                                         n * sizeof(tg_shape) +
                                                         (n + 1) * sizeof(int64_t));
    if (!seg) {
        tgi_error(tape->ctx, TG_ERR_NOMEM, "recompute: out of memory");
        return NULL;
    }
    memset(seg, 0, sizeof *seg);
    seg->tape = tape;
    seg->fn = fn;
    seg->user = user;
    seg->n_inputs = n_inputs;
    seg->n_outputs = n_outputs;
    seg->outputs = (tg_tensor **)(seg + 1);
    seg->shapes = (tg_shape *)(seg->outputs + n);
    seg->offsets = (int64_t *)(seg->shapes + n);
    return seg;
}

/* The node's inputs: the given ones, then the parameters the first run read. */
static tg_tensor **node_inputs(tgi_segment *seg, tg_tape *scratch, tg_tensor *const *inputs) {
    int n;
    tg_tensor **found = find_params(seg, scratch, inputs, &n);
    tg_tensor **all = found ? tgi_arena_alloc(&seg->tape->arena, (size_t)(seg->n_inputs + n + 1) *
                                                                     sizeof *all) : NULL;
    if (!all) {
        tgi_error(scratch->ctx, TG_ERR_NOMEM, "recompute: out of memory");
        return NULL;
    }
    for (int i = 0; i < seg->n_inputs; i++) all[i] = inputs[i];
    for (int i = 0; i < n; i++) all[seg->n_inputs + i] = found[i];
    seg->n_params = n;
    return all;
}

/* The outputs as copies on the tape, when nothing in the segment wants a gradient. */
static tg_status plain_copies(tgi_segment *seg, tg_tensor **outputs) {
    for (int k = 0; k < seg->n_outputs; k++) {
        const tg_tensor *y = seg->outputs[k];
        if (!(outputs[k] = tg_tape_from_data(seg->tape, y->ndim, y->shape, y->data)))
            return tg_errcode(seg->tape->ctx);
        seg->tape->n_unrecorded++; /* a replay would not recompute it */
    }
    return TG_OK;
}

/* The first run's outputs into the node and its views. */
static tg_status record_segment(tgi_segment *seg, tg_tape *scratch, tg_tensor *const *inputs,
                                tg_tensor **outputs) {
    bool wanted = false;
    int64_t total = 0;
    for (int k = 0; k < seg->n_outputs; k++) {
        const tg_tensor *y = seg->outputs[k];
        wanted |= y->requires_grad;
        seg->shapes[k].ndim = y->ndim;
        memcpy(seg->shapes[k].dims, y->shape, sizeof seg->shapes[k].dims);
        seg->offsets[k] = total;
        total += y->size;
    }
    seg->offsets[seg->n_outputs] = total;
    if (!wanted) return plain_copies(seg, outputs);
    tg_tensor **all = node_inputs(seg, scratch, inputs);
    if (!all) return tg_errcode(seg->tape->ctx);
    tg_attr_value attrs[2];
    attrs[0].i64 = (int64_t)(intptr_t)seg;
    seg->outputs_ready = true;
    tg_tensor *flat = tgi_record(seg->tape, &segment_op, all, seg->n_inputs + seg->n_params, attrs);
    seg->outputs_ready = false;
    if (!flat) return tg_errcode(seg->tape->ctx);
    for (int k = 0; k < seg->n_outputs; k++) {
        attrs[1].i64 = k;
        if (!(outputs[k] = tgi_record(seg->tape, &output_op, &flat, 1, attrs)))
            return tg_errcode(seg->tape->ctx);
    }
    return TG_OK;
}

tg_status tg_recompute(tg_tape *tape, tg_recompute_fn fn, void *user, int n_inputs,
                       tg_tensor *const *inputs, int n_outputs, tg_tensor **outputs) {
    if (!tape) return TG_ERR_INVALID;
    if (outputs)
        for (int k = 0; k < n_outputs; k++) outputs[k] = NULL;
    tg_status status = check_call(tape, fn, n_inputs, inputs, n_outputs, outputs);
    if (status != TG_OK) return status;
    if (tape->no_grad_depth > 0) { /* no backward will come: nothing to keep or recompute */
        status = fn(tape, inputs, n_inputs, outputs, n_outputs, user);
        return status == TG_OK ? TG_OK : tgi_error(tape->ctx, status, "recompute: the function failed");
    }
    tg_tape *scratch = scratch_of(tape);
    tgi_segment *seg = scratch ? new_segment(tape, fn, user, n_inputs, n_outputs) : NULL;
    if (!seg) return tg_errcode(tape->ctx);
    tg_tensor **proxies;
    status = run_segment(seg, scratch, inputs, SEGMENT_FIRST, &proxies);
    for (int i = 0; i < n_outputs && status == TG_OK; i++)
        if (seg->outputs[i]->node < 0 && seg->outputs[i]->producer == NULL &&
            tgi_find_tensor(proxies, n_inputs, seg->outputs[i]) < 0 && seg->outputs[i]->requires_grad)
            status = tgi_error(tape->ctx, TG_ERR_INVALID, "recompute: output %d is a leaf made "
                               "inside the function that wants a gradient, which nothing would "
                               "receive", i);
    if (status == TG_OK) status = record_segment(seg, scratch, inputs, outputs);
    tg_tape_reset(scratch);
    if (status != TG_OK)
        for (int k = 0; k < n_outputs; k++) outputs[k] = NULL;
    return status;
}
