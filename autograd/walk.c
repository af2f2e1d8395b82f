/*
 * autograd/walk.c — the reverse walk: tg_backward, tg_backward_with and tgi_walk.
 *
 * The tape (autograd/tape.c) is a flat array of entries in execution order, so walking it
 * backwards visits a node only after every one of its consumers: when the walk reaches the entry
 * that produced n, n's gradient is complete. A recorded output's gradient buffer is reserved
 * beside its value when it is recorded; the walk hands it out when a consumer first reaches the
 * tensor, so nothing is allocated per step.
 */
#include "autograd/internal.h"

#include <stddef.h>
#include <string.h>


/* Zeroing a large gradient (an RNN's input projection: [B, T, 4H], 6.5 MB in the LSTM bench)
 * is a memory-bound pass like any other, so it is cut in chunks over the context's threads;
 * each chunk is written by one thread, nothing is combined. Below 4 chunks: one memset. */
#define ZERO_CHUNK_FLOATS ((int64_t)1 << 15)

typedef struct zero_job {
    float *data;
    int64_t size;
} zero_job;

static void zero_chunks(void *arg, int64_t begin, int64_t end) {
    const zero_job *job = arg;
    int64_t from = begin * ZERO_CHUNK_FLOATS, to = end * ZERO_CHUNK_FLOATS;
    if (to > job->size) to = job->size;
    memset(job->data + from, 0, (size_t)(to - from) * sizeof(float));
}

static void zero_floats(tg_ctx *ctx, float *data, int64_t size) {
    if (size < 4 * ZERO_CHUNK_FLOATS) {
        memset(data, 0, (size_t)size * sizeof(float));
        return;
    }
    zero_job job = {data, size};
    tgi_parallel_for(ctx, (size + ZERO_CHUNK_FLOATS - 1) / ZERO_CHUNK_FLOATS, 2, zero_chunks, &job);
}

/* A zeroed gradient buffer for t (a node of this step, or a tape leaf): a recorded output's
 * reserved room, else (a leaf whose requires_grad was set by hand) a new one from the arena. */
static float *zeroed_grad(tg_tape *tape, tg_tensor *t) {
    float *grad = t->grad_room;
    if (!grad && !(grad = tgi_arena_alloc(&tape->arena, (size_t)t->size * sizeof(float))))
        return NULL;
    if (t->size == 1) grad[0] = 0.0f; /* a scalar: one store rather than a call */
    else zero_floats(tape->ctx, grad, t->size);
    return grad;
}

static tg_status check_backward_start(tg_tape *tape, tg_tensor *output) {
    tg_ctx *ctx = tape->ctx;
    if (!output) {
        if (ctx->err_code == TG_OK) tgi_error(ctx, TG_ERR_INVALID, "backward: output is NULL");
        return ctx->err_code;
    }
    /* Checked before anything else is read: the memory of a stale tensor may hold anything. */
    if (output->tape != tape || output->generation != tape->generation)
        return tgi_error(ctx, TG_ERR_STATE, "backward: the output is not a node of this tape's "
                         "current step (stale after tg_tape_reset, or another tape)");
    const char *why = NULL;
    if (tape->state == TGI_TAPE_CONSUMED)
        why = "this tape was already walked backward; call tg_tape_reset and record a new step "
              "(or tg_tape_replay to run the recorded one again)";
    else if (tape->state == TGI_TAPE_REPLAY_FAILED)
        why = "the tape's last replay stopped part-way (its error said where), so its outputs "
              "come from two passes; replay again, or reset and record a new step";
    else if (output->node < 0 || output->node >= tape->n_entries ||
             tape->entries[output->node]->call.output != output)
        why = "the tensor was not recorded (no input required a gradient, or it was computed "
              "under no_grad)";
    if (!why) return TG_OK;
    char name[TG_LABEL_MAX + 32], shape[96];
    return tgi_error(ctx, TG_ERR_STATE, "backward from '%s' %s: %s",
                     tgi_node_name(output, name, sizeof name),
                     tgi_format_shape(output->ndim, output->shape, shape, sizeof shape), why);
}

void tgi_grad_settle(tg_ctx *ctx, tg_tensor *t) {
    if (!t || !t->grad_fresh) return;
    zero_floats(ctx, t->grad, t->size);
    t->grad_fresh = false;
}

/* The slow part of prepare_input: a leaf without a gradient buffer, or a buffer of more than
 * one element to zero. An op that writes its inputs' gradients whole (fresh_grads) gets the
 * buffer as it is, flagged fresh. */
static TGI_NOINLINE tg_status prepare_buffer(tg_tape *tape, const tgi_node *node, tg_tensor *in) {
    if (node->op->fresh_grads && in->size > 1) { /* (a scalar: the ops' one-element paths add) */
        in->grad = in->grad_room ? in->grad_room
                                 : tgi_arena_alloc(&tape->arena, (size_t)in->size * sizeof(float));
        in->grad_fresh = in->grad != NULL;
    } else {
        in->grad = zeroed_grad(tape, in);
    }
    if (!in->grad) return tgi_error(tape->ctx, TG_ERR_NOMEM, "backward: out of memory for the "
                                    "gradient of an input of %s", node->op->name);
    return TG_OK;
}

/* Makes sure an input that wants a gradient has a buffer to accumulate into. Laid out for the
 * scalar ops of a long chain, whose cost is this code's: a straight run when the input is a
 * recorded scalar reached for the first time. */
TGI_ALWAYS_INLINE static inline tg_status prepare_input(tg_tape *tape, const tgi_node *node,
                                                        tg_tensor *in, bool first) {
    if (!in->requires_grad) return TG_OK;
    /* this VJP writes into it: the optimizer steps it (read first: a store per node of a scalar
     * chain cost more than the test) */
    if (TGI_UNLIKELY(in->grad_unset)) in->grad_unset = false;
    if (in->grad) return TG_OK;
    /* a scalar node keeps its input's room: the header's second line stays out of the walk */
    float *room = first && node->scalar_unary ? tgi_scalar_room(node) : in->grad_room;
    if (TGI_LIKELY(room && in->size == 1)) {
        room[0] = 0.0f; /* a scalar: one store rather than a call */
        in->grad = room;
        return TG_OK;
    }
    return prepare_buffer(tape, node, in);
}

/* Makes sure every input that wants a gradient has a buffer to accumulate into. */
TGI_ALWAYS_INLINE static inline tg_status prepare_input_grads(tg_tape *tape, const tgi_node *node) {
    /* every call has an input: the first is prepared before any test of the count */
    tg_status status = prepare_input(tape, node, node->call.inputs[0], true);
    for (int i = 1; i < node->call.n_inputs && status == TG_OK; i++)
        status = prepare_input(tape, node, node->call.inputs[i], false);
    return status;
}

/* The VJP of a scalar fast-path node (tgi_node.scalar_unary) of a built-in elementwise op, from
 * what the node holds: its input (one load, where backward loads call->inputs then inputs[0]),
 * its attribute and its input's gradient room, and the op's scalar_vjp, no backward call. The
 * first gradient written into a room is assigned as 0 + v, the bits that zeroing the room then
 * adding v gave, without the store and reload of the zero on the chain's critical path. The
 * same numbers and the same buffers as prepare_input then backward. */
TGI_ALWAYS_INLINE static inline tg_status scalar_step(tg_tape *tape, const tgi_node *node,
                                                      tgi_call_sites *sites) {
    const unsigned char *p = (const unsigned char *)node;
    tg_tensor *in;
    memcpy(&in, p + TGI_UNARY_INPUT_AT, sizeof in);
    const tg_tensor *out = node->call.output;
    const tg_attr_value *attr = (const tg_attr_value *)(p + TGI_UNARY_ATTR_AT);
    tgi_scalar_vjp_fn vjp = node->op->scalar_vjp;
    float v;
    float *grad = in->grad;
    if (in->requires_grad) {
        if (TGI_UNLIKELY(in->grad_unset)) in->grad_unset = false; /* see prepare_input */
        if (!grad) {
            grad = tgi_scalar_room(node);
            if (TGI_LIKELY(grad != NULL)) {
                in->grad = grad;
                TGI_CALL_AT_SITE(v, sites, vjp, (in->data[0], out->data[0], out->grad[0], attr));
                grad[0] = 0.0f + v;
                return TG_OK;
            }
            tg_status status = prepare_buffer(tape, node, in); /* a leaf: zeroed */
            if (status != TG_OK) return status;
            grad = in->grad;
        }
    } else if (!grad) {
        return TG_OK; /* as backward: no buffer, nothing to add to */
    }
    TGI_CALL_AT_SITE(v, sites, vjp, (in->data[0], out->data[0], out->grad[0], attr));
    grad[0] += v;
    return TG_OK;
}

/* The node's gradient is complete: its hooks run, and its leaf inputs are remembered for theirs. */
static tg_status run_node_hooks(tg_tape *tape, tgi_node *node) {
    tg_tensor *output = node->call.output;
    tg_status status = tgi_fire_hooks(tape, output, TG_PASS_BACKWARD, output->grad);
    for (int i = 0; i < node->call.n_inputs && status == TG_OK; i++) {
        tg_tensor *in = node->call.inputs[i];
        if (in->node < 0 && in->requires_grad) status = tgi_note_leaf(tape, in);
    }
    return status;
}

static tg_status run_leaf_hooks(tg_tape *tape) {
    tg_status status = TG_OK;
    for (int64_t i = 0; i < tape->n_leaves && status == TG_OK; i++)
        status = tgi_fire_hooks(tape, tape->leaves[i], TG_PASS_BACKWARD, tape->leaves[i]->grad);
    return status;
}

/* Counts-only anomaly mode: the node's complete gradient, and its leaf inputs for theirs. */
static tg_status count_node(tg_tape *tape, tgi_node *node) {
    tgi_count_node_grad(tape, node);
    tg_status status = TG_OK;
    for (int i = 0; i < node->call.n_inputs && status == TG_OK; i++) {
        tg_tensor *in = node->call.inputs[i];
        if (in->node < 0 && in->requires_grad) status = tgi_note_leaf(tape, in);
    }
    return status;
}

/* Fresh gradients (tgi_op.fresh_grads): before the call, a tensor given twice (add(x, x)) is
 * zeroed, both terms going into one buffer; after it, a buffer the op left unwritten (it failed,
 * or had nothing to add) is, so that none keeps what the memory held. */
static TGI_NOINLINE void settle_repeated_inputs(tg_ctx *ctx, const tgi_node *node) {
    tg_tensor *const *in = node->call.inputs;
    for (int i = 1; i < node->call.n_inputs; i++)
        for (int j = 0; j < i; j++)
            if (in[i] == in[j]) tgi_grad_settle(ctx, in[i]);
}

static TGI_NOINLINE void settle_unwritten_inputs(tg_ctx *ctx, const tgi_node *node) {
    for (int i = 0; i < node->call.n_inputs; i++) tgi_grad_settle(ctx, node->call.inputs[i]);
}

/* The walk, for a pass with hooks or anomaly checks (watched) or without. Inlined twice so the
 * common case, nothing watching, tests nothing per entry but the gradient. */
TGI_ALWAYS_INLINE static inline tg_status walk_from(tg_tape *tape, int64_t last, bool watched) {
    tg_ctx *ctx = tape->ctx;
    const bool counting = watched && ctx->anomaly == TG_ANOMALY_COUNTS;
    /* No prefetching of the nodes ahead (6 entries ahead, both lines, as before): it made the
     * scalar chain's walk 1-4% slower, before and after the call sites below (a step's nodes
     * are in L2 and the walk's loads run ahead on their own). */
    tgi_call_sites sites = {NULL, NULL}; /* see TGI_CALL_AT_SITE */
    for (int64_t e = last; e >= 0; e--) {
        tgi_node *node = tape->entries[e]; /* reloaded: a hook may record on this tape */
        /* No gradient buffer means no consumer reached this node: nothing flows through it. */
        if (!node->call.output->grad) continue;
        if (!watched && node->scalar_unary && node->op->scalar_vjp) {
            tg_status status = scalar_step(tape, node, &sites);
            if (status != TG_OK) return status;
            continue;
        }
        tg_status status = TG_OK;
        if (watched && ctx->live_hooks[TG_PASS_BACKWARD]) status = run_node_hooks(tape, node);
        if (watched && tape->misused) return TG_ERR_STATE; /* the hook's refused call said why */
        if (counting && status == TG_OK) status = count_node(tape, node);
        if (status == TG_OK) status = prepare_input_grads(tape, node);
        if (status != TG_OK) return status;
        if (node->op->fresh_grads) settle_repeated_inputs(ctx, node);
        status = node->op->backward(&node->call);
        if (node->op->fresh_grads) settle_unwritten_inputs(ctx, node);
        if (status != TG_OK) {
            if (ctx->err_code == TG_OK) tg_op_fail(&node->call, status, "backward failed");
            return status;
        }
        if (watched && ctx->anomaly && (status = tgi_check_backward(tape, node)) != TG_OK)
            return status;
    }
    /* a segment's inside (tape->parent): its parameters are inputs of the segment's node, whose
     * tape fires their hooks and counts them once its walk ends */
    if (counting && !tape->parent) tgi_count_leaf_grads(tape);
    tg_status status = watched && ctx->live_hooks[TG_PASS_BACKWARD] && !tape->parent
                           ? run_leaf_hooks(tape) : TG_OK;
    return status == TG_OK && tape->misused ? TG_ERR_STATE : status;
}

tg_status tgi_walk(tg_tape *tape, int64_t last) {
    tg_ctx *ctx = tape->ctx;
    /* Read once: only a hook can register a hook, and none runs unless one was registered. */
    if (ctx->live_hooks[TG_PASS_BACKWARD] || ctx->anomaly) return walk_from(tape, last, true);
    return walk_from(tape, last, false);
}

tg_status tg_backward_with(tg_tape *tape, tg_tensor *output, const float *seed) {
    if (!tape) return TG_ERR_INVALID;
    if (tgi_refuse_in_pass(tape, "tg_backward") != TG_OK) return TG_ERR_STATE;
    tg_status status = check_backward_start(tape, output);
    if (status != TG_OK) return status;
    if (!seed) {
        char name[TG_LABEL_MAX + 32];
        return tgi_error(tape->ctx, TG_ERR_INVALID, "backward from '%s': seed gradient is NULL",
                         tgi_node_name(output, name, sizeof name));
    }
    tape->state = TGI_TAPE_CONSUMED;
    if (tape->forward_entries < 0) { /* the step's first backward: its forward ends here */
        tape->forward_entries = tape->n_entries;
        tape->forward_unrecorded = tape->n_unrecorded;
    }
    tape->ctx->backward_passes++;
    tape->n_leaves = 0;
    if (!output->grad && !(output->grad = zeroed_grad(tape, output)))
        return tgi_error(tape->ctx, TG_ERR_NOMEM, "backward: out of memory");
    for (int64_t i = 0; i < output->size; i++) output->grad[i] += seed[i];
    tape->walking = true;
    tape->misused = false;
    tg_status walked = tgi_walk(tape, output->node);
    tape->walking = false;
    return walked;
}

tg_status tg_backward(tg_tape *tape, tg_tensor *loss) {
    if (!tape) return TG_ERR_INVALID;
    if (tgi_refuse_in_pass(tape, "tg_backward") != TG_OK) return TG_ERR_STATE;
    tg_status status = check_backward_start(tape, loss);
    if (status != TG_OK) return status;
    if (loss->size != 1) {
        char name[TG_LABEL_MAX + 32], shape[96];
        return tgi_error(tape->ctx, TG_ERR_SHAPE, "backward from '%s' %s: the output is not a "
                         "scalar; give a seed gradient with tg_backward_with",
                         tgi_node_name(loss, name, sizeof name),
                         tgi_format_shape(loss->ndim, loss->shape, shape, sizeof shape));
    }
    const float one = 1.0f;
    return tg_backward_with(tape, loss, &one);
}
