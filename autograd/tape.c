/*
 * autograd/tape.c — recording op calls and the reverse walk.
 *
 * The tape is a flat array of entries in execution order. Because an entry is appended only
 * after all its inputs exist, walking the array backwards visits a node only after every one of
 * its consumers: when the walk reaches the entry that produced n, n's gradient is complete.
 */
#include "autograd/internal.h"

#include <stdio.h>
#include <string.h>

/* Big enough that a small model's step fits in one chunk; larger steps add chunks once. */
#define TAPE_CHUNK_BYTES ((size_t)1 << 20)

tg_tape *tg_tape_new(tg_ctx *ctx) {
    if (!ctx) return NULL;
    tg_tape *tape = tgi_alloc(ctx, sizeof *tape);
    if (!tape) {
        tgi_error(ctx, TG_ERR_NOMEM, "tape: out of memory");
        return NULL;
    }
    memset(tape, 0, sizeof *tape);
    tape->ctx = ctx;
    tgi_arena_init(&tape->arena, ctx, TAPE_CHUNK_BYTES);
    return tape;
}

void tg_tape_free(tg_tape *tape) {
    if (!tape) return;
    tg_ctx *ctx = tape->ctx;
    tgi_drop_tape_hooks(ctx, tape);
    tgi_free(ctx, tape->leaves, (size_t)tape->cap_leaves * sizeof *tape->leaves);
    tgi_arena_release(&tape->arena);
    tgi_free(ctx, tape->entries, (size_t)tape->cap_entries * sizeof *tape->entries);
    tgi_free(ctx, tape, sizeof *tape);
}

void tg_tape_reset(tg_tape *tape) {
    if (!tape) return;
    if (tape->ctx->live_hooks[TG_PASS_BACKWARD]) tgi_drop_tape_hooks(tape->ctx, tape);
    tape->pending_label[0] = '\0';
    tape->n_leaves = 0;
    tape->n_entries = 0;
    tape->state = TGI_TAPE_RECORDING;
    tape->generation++;
    tape->step++;
    tgi_arena_rewind(&tape->arena);
}

tg_ctx *tg_tape_ctx(const tg_tape *tape) { return tape ? tape->ctx : NULL; }
int64_t tg_tape_entries(const tg_tape *tape) { return tape ? tape->n_entries : 0; }
int64_t tg_tape_step(const tg_tape *tape) { return tape ? tape->step : 0; }
size_t tg_tape_bytes_in_use(const tg_tape *tape) {
    return tape ? tgi_arena_in_use(&tape->arena) : 0;
}
size_t tg_tape_bytes_peak(const tg_tape *tape) { return tape ? tape->arena.peak : 0; }
size_t tg_tape_bytes_reserved(const tg_tape *tape) { return tape ? tape->arena.reserved : 0; }

void tg_tape_label_next(tg_tape *tape, const char *fmt, ...) {
    if (!tape || !fmt) {
        if (tape) tgi_error(tape->ctx, TG_ERR_INVALID, "tape_label_next: the format is NULL");
        return;
    }
    va_list args;
    va_start(args, fmt);
    vsnprintf(tape->pending_label, sizeof tape->pending_label, fmt, args);
    va_end(args);
}

void tg_no_grad_begin(tg_tape *tape) {
    if (tape) tape->no_grad_depth++;
}

void tg_no_grad_end(tg_tape *tape) {
    if (tape && tape->no_grad_depth > 0) tape->no_grad_depth--;
}

bool tg_grad_enabled(const tg_tape *tape) { return tape && tape->no_grad_depth == 0; }

const tgi_op *tgi_producer(const tg_tensor *t) {
    return t->producer;
}

/* ---- errors that name the op and its inputs ------------------------------------------------ */

void tgi_describe_inputs(char *buf, size_t size, tg_tensor *const *inputs, int n_inputs) {
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < n_inputs && len < size; i++) {
        char name[TG_LABEL_MAX + 32], shape[96];
        const tg_tensor *t = inputs[i];
        if (!t) {
            len += (size_t)snprintf(buf + len, size - len, "%sNULL", i ? ", " : "");
            continue;
        }
        len += (size_t)snprintf(buf + len, size - len, "%s'%s' %s", i ? ", " : "",
                                tgi_node_name(t, name, sizeof name),
                                tgi_format_shape(t->ndim, t->shape, shape, sizeof shape));
    }
}

static tg_status op_verror(tg_ctx *ctx, const char *op_name, tg_tensor *const *inputs,
                           int n_inputs, tg_status status, const char *fmt, va_list args) {
    char where[TGI_ERRMSG_MAX / 2], reason[TGI_ERRMSG_MAX];
    tgi_describe_inputs(where, sizeof where, inputs, n_inputs);
    vsnprintf(reason, sizeof reason, fmt, args);
    return tgi_error(ctx, status, "%s (%s): %s", op_name, where, reason);
}

tg_status tg_op_fail(const tg_op_call *call, tg_status status, const char *fmt, ...) {
    if (!call || !call->tape) return status; /* no context to hold a message */
    va_list args;
    va_start(args, fmt);
    op_verror(call->tape->ctx, call->op_name, call->inputs, call->n_inputs, status,
              fmt ? fmt : "failed", args);
    va_end(args);
    return status;
}

static tg_status record_fail(tg_tape *tape, const tgi_op *op, tg_tensor *const *inputs,
                             int n_inputs, tg_status status, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    op_verror(tape->ctx, op->name, inputs, n_inputs, status, fmt, args);
    va_end(args);
    return status;
}

void *tg_op_save(tg_op_call *call, size_t bytes) {
    if (!call || !call->tape) return NULL;
    call->saved = tgi_arena_alloc(&call->tape->arena, bytes);
    if (!call->saved)
        tgi_error(call->tape->ctx, TG_ERR_NOMEM, "%s: out of memory saving %zu bytes for backward",
                  call->op_name, bytes);
    return call->saved;
}

/* ---- recording ----------------------------------------------------------------------------- */

static tg_status check_inputs(tg_tape *tape, const tgi_op *op, tg_tensor *const *inputs,
                              int n_inputs, bool *any_requires_grad) {
    *any_requires_grad = false;
    if (op->arity == TG_VARIADIC ? n_inputs < 1 : n_inputs != op->arity)
        return record_fail(tape, op, inputs, n_inputs < 0 ? 0 : n_inputs, TG_ERR_INVALID,
                           "takes %s%d inputs, %d given", op->arity == TG_VARIADIC ? "at least " : "",
                           op->arity == TG_VARIADIC ? 1 : op->arity, n_inputs);
    for (int i = 0; i < n_inputs; i++) {
        const tg_tensor *t = inputs[i];
        if (!t) {
            /* An earlier failure produced this NULL: its message is already on the context. */
            if (tape->ctx->err_code == TG_OK)
                tgi_error(tape->ctx, TG_ERR_INVALID, "%s: input %d is NULL", op->name, i);
            return tape->ctx->err_code;
        }
        if (t->tape && (t->tape != tape || t->generation != tape->generation))
            return record_fail(tape, op, inputs, n_inputs, TG_ERR_STATE,
                               "input %d belongs to %s (tensors made on a tape are valid until "
                               "its next reset, on that tape only)", i,
                               t->tape != tape ? "another tape" : "an earlier step of this tape");
        *any_requires_grad |= t->requires_grad;
    }
    return TG_OK;
}

static tg_status append_entry(tg_tape *tape, const tgi_entry *entry) {
    if (tape->n_entries == tape->cap_entries) {
        int64_t cap = tape->cap_entries ? tape->cap_entries * 2 : 256;
        tgi_entry *grown = tgi_realloc(tape->ctx, tape->entries,
                                       (size_t)tape->cap_entries * sizeof *grown,
                                       (size_t)cap * sizeof *grown);
        if (!grown) return tgi_error(tape->ctx, TG_ERR_NOMEM, "tape: out of memory for entries");
        tape->entries = grown;
        tape->cap_entries = cap;
    }
    tape->entries[tape->n_entries++] = *entry;
    return TG_OK;
}

/* Copies the input pointers and attributes into the arena: the caller's arrays are often on
 * its stack, and backward needs them later. */
static tg_status keep_call_arrays(tg_tape *tape, tgi_entry *entry, tg_tensor *const *inputs,
                                  int n_inputs, const tg_attr_value *attrs, int n_attrs) {
    size_t input_bytes = (size_t)n_inputs * sizeof(tg_tensor *);
    size_t attr_offset = (input_bytes + 7) & ~(size_t)7;
    size_t bytes = attr_offset + (size_t)n_attrs * sizeof(tg_attr_value);
    unsigned char *mem = tgi_arena_alloc(&tape->arena, bytes);
    if (!mem) return tgi_error(tape->ctx, TG_ERR_NOMEM, "tape: out of memory recording an entry");
    memcpy(mem, inputs, input_bytes);
    if (n_attrs) memcpy(mem + attr_offset, attrs, (size_t)n_attrs * sizeof(tg_attr_value));
    entry->inputs = (tg_tensor *const *)mem;
    entry->attrs = n_attrs ? (tg_attr_value *)(mem + attr_offset) : NULL;
    return TG_OK;
}

/* What happens to a freshly computed output: its pending label, then the anomaly check and the
 * forward hooks, which may stop the step. */
static tg_status after_forward(tg_tape *tape, const tgi_op *op, tg_tensor *const *inputs,
                               int n_inputs, tg_tensor *output) {
    tg_ctx *ctx = tape->ctx;
    if (!(tape->pending_label[0] | ctx->anomaly | ctx->live_hooks[TG_PASS_FORWARD])) return TG_OK;
    if (tape->pending_label[0]) memcpy(output->label, tape->pending_label, sizeof output->label);
    if (ctx->anomaly && tgi_check_forward(tape, op, inputs, n_inputs, output) != TG_OK)
        return TG_ERR_NUMERIC;
    if (ctx->live_hooks[TG_PASS_FORWARD])
        return tgi_fire_hooks(tape, output, TG_PASS_FORWARD, output->data);
    return TG_OK;
}

static tg_tensor *record(tg_tape *tape, const tgi_op *op, tg_tensor *const *inputs, int n_inputs,
                         const tg_attr_value *attrs) {
    bool any_requires_grad;
    if (check_inputs(tape, op, inputs, n_inputs, &any_requires_grad) != TG_OK) return NULL;
    bool record = any_requires_grad && tape->no_grad_depth == 0;
    if (record && !op->backward) {
        record_fail(tape, op, inputs, n_inputs, TG_ERR_NOGRAD,
                    "op has no backward but an input requires a gradient (use a no-grad scope, "
                    "or register a backward)");
        return NULL;
    }
    tg_op_call call = {tape, op->id, op->name, inputs, n_inputs, NULL, attrs, NULL, op->op_data};
    tg_shape out_shape;
    tg_status inferred = op->infer_shape(&call, &out_shape);
    if (inferred != TG_OK) {
        if (tape->ctx->err_code == TG_OK)
            record_fail(tape, op, inputs, n_inputs, inferred, "infer_shape failed");
        return NULL;
    }
    if (tgi_check_shape(tape->ctx, op->name, out_shape.ndim, out_shape.dims) != TG_OK) return NULL;
    tg_tensor *output = tgi_tape_tensor(tape, out_shape.ndim, out_shape.dims);
    if (!output) return NULL;
    call.output = output;
    output->producer = op;
    if (op->forward(&call) != TG_OK) {
        if (tape->ctx->err_code == TG_OK)
            record_fail(tape, op, inputs, n_inputs, TG_ERR_INVALID, "forward failed");
        return NULL;
    }
    if (!record) return after_forward(tape, op, inputs, n_inputs, output) == TG_OK ? output : NULL;

    tgi_entry entry = {op, NULL, n_inputs, output, NULL, call.saved};
    if (keep_call_arrays(tape, &entry, inputs, n_inputs, attrs, op->n_attrs) != TG_OK) return NULL;
    if (append_entry(tape, &entry) != TG_OK) return NULL;
    output->node = (int32_t)(tape->n_entries - 1);
    output->requires_grad = true;
    return after_forward(tape, op, inputs, n_inputs, output) == TG_OK ? output : NULL;
}

tg_tensor *tgi_record(tg_tape *tape, const tgi_op *op, tg_tensor *const *inputs, int n_inputs,
                      const tg_attr_value *attrs) {
    tg_tensor *output = record(tape, op, inputs, n_inputs, attrs);
    tape->pending_label[0] = '\0'; /* a label names one op's output, whatever happened */
    return output;
}

/* ---- the reverse walk ---------------------------------------------------------------------- */

static float *zeroed_grad(tg_tape *tape, tg_tensor *t) {
    float *grad = tgi_arena_alloc(&tape->arena, (size_t)t->size * sizeof(float));
    if (grad) memset(grad, 0, (size_t)t->size * sizeof(float));
    return grad;
}

static tg_status check_backward_start(tg_tape *tape, tg_tensor *output) {
    tg_ctx *ctx = tape->ctx;
    if (!output) {
        if (ctx->err_code == TG_OK) tgi_error(ctx, TG_ERR_INVALID, "backward: output is NULL");
        return ctx->err_code;
    }
    char name_buf[TG_LABEL_MAX + 32], shape[96];
    const char *name = tgi_node_name(output, name_buf, sizeof name_buf);
    tgi_format_shape(output->ndim, output->shape, shape, sizeof shape);
    if (tape->state == TGI_TAPE_CONSUMED)
        return tgi_error(ctx, TG_ERR_STATE, "backward from '%s' %s: this tape was already walked "
                         "backward; call tg_tape_reset and record a new step", name, shape);
    if (output->tape != tape || output->generation != tape->generation)
        return tgi_error(ctx, TG_ERR_STATE, "backward from '%s' %s: the tensor is not a node of "
                         "this tape's current step (stale after tg_tape_reset, or another tape)",
                         name, shape);
    if (output->node < 0 || output->node >= tape->n_entries ||
        tape->entries[output->node].output != output)
        return tgi_error(ctx, TG_ERR_STATE, "backward from '%s' %s: the tensor was not recorded "
                         "(no input required a gradient, or it was computed under no_grad)",
                         name, shape);
    return TG_OK;
}

/* Makes sure every input that wants a gradient has a buffer to accumulate into. */
static tg_status prepare_input_grads(tg_tape *tape, const tgi_entry *entry) {
    for (int i = 0; i < entry->n_inputs; i++) {
        tg_tensor *in = entry->inputs[i];
        if (!in->requires_grad || in->grad) continue;
        in->grad = zeroed_grad(tape, in);
        if (!in->grad) return tgi_error(tape->ctx, TG_ERR_NOMEM, "backward: out of memory for "
                                        "the gradient of an input of %s", entry->op->name);
    }
    return TG_OK;
}

/* The node's gradient is complete: its hooks run, and its leaf inputs are remembered for theirs. */
static tg_status run_node_hooks(tg_tape *tape, const tgi_entry *entry) {
    tg_status status = tgi_fire_hooks(tape, entry->output, TG_PASS_BACKWARD, entry->output->grad);
    for (int i = 0; i < entry->n_inputs && status == TG_OK; i++) {
        tg_tensor *in = entry->inputs[i];
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

static tg_status walk(tg_tape *tape, int64_t last) {
    tg_ctx *ctx = tape->ctx;
    /* Read once: only a hook can register a hook, and none runs unless one was registered. */
    const bool watched = ctx->live_hooks[TG_PASS_BACKWARD] || ctx->anomaly;
    for (int64_t e = last; e >= 0; e--) {
        const tgi_entry *entry = &tape->entries[e];
        /* No gradient buffer means no consumer reached this node: nothing flows through it. */
        if (!entry->output->grad) continue;
        tg_status status = TG_OK;
        if (watched && ctx->live_hooks[TG_PASS_BACKWARD]) { /* with no hook: one test per entry */
            status = run_node_hooks(tape, entry);
            entry = &tape->entries[e]; /* a hook may have recorded on this tape and moved it */
        }
        if (status == TG_OK) status = prepare_input_grads(tape, entry);
        if (status != TG_OK) return status;
        tg_op_call call = {tape, entry->op->id, entry->op->name, entry->inputs, entry->n_inputs,
                           entry->output, entry->attrs, entry->saved, entry->op->op_data};
        status = entry->op->backward(&call);
        if (status != TG_OK) {
            if (ctx->err_code == TG_OK) tg_op_fail(&call, status, "backward failed");
            return status;
        }
        if (watched && ctx->anomaly && (status = tgi_check_backward(tape, entry)) != TG_OK)
            return status;
    }
    return ctx->live_hooks[TG_PASS_BACKWARD] ? run_leaf_hooks(tape) : TG_OK;
}

tg_status tg_backward_with(tg_tape *tape, tg_tensor *output, const float *seed) {
    if (!tape) return TG_ERR_INVALID;
    tg_status status = check_backward_start(tape, output);
    if (status != TG_OK) return status;
    if (!seed) {
        char name[TG_LABEL_MAX + 32];
        return tgi_error(tape->ctx, TG_ERR_INVALID, "backward from '%s': seed gradient is NULL",
                         tgi_node_name(output, name, sizeof name));
    }
    tape->state = TGI_TAPE_CONSUMED;
    tape->ctx->backward_passes++;
    tape->n_leaves = 0;
    if (!output->grad && !(output->grad = zeroed_grad(tape, output)))
        return tgi_error(tape->ctx, TG_ERR_NOMEM, "backward: out of memory");
    for (int64_t i = 0; i < output->size; i++) output->grad[i] += seed[i];
    return walk(tape, output->node);
}

tg_status tg_backward(tg_tape *tape, tg_tensor *loss) {
    if (!tape) return TG_ERR_INVALID;
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
