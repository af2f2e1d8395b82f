/*
 * autograd/tape.c — recording op calls (the reverse walk is autograd/walk.c).
 *
 * The tape is a flat array of entries in execution order. Because an entry is appended only
 * after all its inputs exist, walking the array backwards visits a node only after every one of
 * its consumers: when the walk reaches the entry that produced n, n's gradient is complete.
 */
#include "autograd/internal.h"

#include <stddef.h>
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
    tape->forward_entries = -1;
    tape->step_fields = (tgi_step_fields){-1, tape->generation, tape, ctx, tgi_no_label};
    tgi_arena_init(&tape->arena, ctx, TAPE_CHUNK_BYTES);
    return tape;
}

/* Everything the tape holds but its struct. */
static void release_tape(tg_tape *tape) {
    tg_ctx *ctx = tape->ctx;
    tgi_drop_tape_hooks(ctx, tape);
    tgi_tape_destroy(tape->scratch);
    tgi_tape_destroy(tape->recompute);
    tgi_free(ctx, tape->leaves, (size_t)tape->cap_leaves * sizeof *tape->leaves);
    tgi_arena_release(&tape->arena);
    tgi_header_release(tape);
    tgi_free(ctx, tape->entries, (size_t)tape->cap_entries * sizeof *tape->entries);
}

void tgi_tape_destroy(tg_tape *tape) {
    if (!tape) return;
    release_tape(tape);
    tgi_free(tape->ctx, tape, sizeof *tape);
}

void tg_tape_free(tg_tape *tape) {
    if (!tape || tape->retired.freed) return;
    release_tape(tape);
    tgi_retire(tape->ctx, &tape->retired, tape, sizeof *tape);
}

void tg_tape_reset(tg_tape *tape) {
    if (!tape || tgi_refuse_in_pass(tape, "tg_tape_reset") != TG_OK) return;
    if (tape->ctx->live_hooks[TG_PASS_BACKWARD]) tgi_drop_tape_hooks(tape->ctx, tape);
    tape->pending_label[0] = '\0';
    tape->n_leaves = 0;
    tape->n_entries = 0;
    tape->n_unrecorded = 0;
    tape->forward_entries = -1;
    tape->replay_checked = 0;
    tape->state = TGI_TAPE_RECORDING;
    tape->generation++;
    tape->step_fields.generation = tape->generation;
    tape->step++;
    tgi_arena_rewind(&tape->arena);
    tgi_header_rewind(tape);
}

tg_ctx *tg_tape_ctx(const tg_tape *tape) { return tape ? tape->ctx : NULL; }
int64_t tg_tape_entries(const tg_tape *tape) { return tape ? tape->n_entries : 0; }
int64_t tg_tape_step(const tg_tape *tape) { return tape ? tape->step : 0; }
void tg_tape_set_step(tg_tape *tape, int64_t step) {
    if (tape) tape->step = step;
}
size_t tg_tape_bytes_in_use(const tg_tape *tape) { return tape ? tgi_arena_in_use(&tape->arena) : 0; }
/* With segments (tg_recompute), the scratch tape's too: it holds one segment's inside at a time,
 * while the tape holds the rest. */
size_t tg_tape_bytes_peak(const tg_tape *tape) {
    if (!tape) return 0;
    return tgi_arena_peak(&tape->arena) + (tape->recompute ? tgi_arena_peak(&tape->recompute->arena) : 0);
}
size_t tg_tape_bytes_reserved(const tg_tape *tape) {
    if (!tape) return 0;
    return tape->arena.reserved + (tape->recompute ? tape->recompute->arena.reserved : 0);
}

void tg_tape_label_next(tg_tape *tape, const char *fmt, ...) {
    if (!tape || !fmt) {
        if (tape) tgi_error(tape->ctx, TG_ERR_INVALID, "tape_label_next: the format is NULL");
        return;
    }
    char label[TG_LABEL_MAX];
    va_list args;
    va_start(args, fmt);
    int len = vsnprintf(label, sizeof label, fmt, args);
    va_end(args);
    if (len < 0 || tgi_check_name_length(tape->ctx, "tape_label_next", "the label", label,
                                         (size_t)len) != TG_OK) {
        tape->pending_label[0] = TGI_LABEL_REFUSED;
        tape->pending_label[1] = '\0';
        return;
    }
    memcpy(tape->pending_label, label, (size_t)len + 1);
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

void tgi_describe_inputs(char *buf, size_t size, const tg_tape *tape, tg_tensor *const *inputs,
                         int n_inputs) {
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < n_inputs && len < size; i++) {
        char name[TG_LABEL_MAX + 32], shape[96];
        const tg_tensor *t = inputs[i];
        if (!t || (t->tape && (t->tape != tape || t->generation != tape->generation))) {
            len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? ", " : "",
                                    t ? "(not of this step)" : "NULL");
            continue;
        }
        len += (size_t)snprintf(buf + len, size - len, "%s'%s' %s", i ? ", " : "",
                                tgi_node_name(t, name, sizeof name),
                                tgi_format_shape(t->ndim, t->shape, shape, sizeof shape));
    }
}

static tg_status op_verror(tg_tape *tape, const char *op_name, tg_tensor *const *inputs,
                           int n_inputs, tg_status status, const char *fmt, va_list args) {
    char where[TGI_ERRMSG_MAX / 2], reason[TGI_ERRMSG_MAX];
    tgi_describe_inputs(where, sizeof where, tape, inputs, n_inputs);
    vsnprintf(reason, sizeof reason, fmt, args);
    return tgi_error(tape->ctx, status, "%s (%s): %s", op_name, where, reason);
}

tg_status tg_op_fail(const tg_op_call *call, tg_status status, const char *fmt, ...) {
    if (!call || !call->tape) return status; /* no context to hold a message */
    va_list args;
    va_start(args, fmt);
    op_verror(call->tape, call->op_name, call->inputs, call->n_inputs, status,
              fmt ? fmt : "failed", args);
    va_end(args);
    return status;
}

static tg_status record_fail(tg_tape *tape, const tgi_op *op, tg_tensor *const *inputs,
                             int n_inputs, tg_status status, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    op_verror(tape, op->name, inputs, n_inputs, status, fmt, args);
    va_end(args);
    return status;
}

void *tg_op_save_for_backward(tg_op_call *call, size_t bytes) {
    if (!call || !call->tape) return NULL;
    tg_tape *tape = call->tape;
    /* The node whose forward runs, when the call is its own (a copy of the call is not):
     * only then are its saved_* fields read or written. */
    tgi_node *node = tape->call_node && &tape->call_node->call == call ? tape->call_node : NULL;
    /* A replayed forward asks again for what it asked for when recorded: it gets the same
     * buffer back (once per replay; a second request in one forward gets a new one). */
    if (node && tape->replaying && call->saved && node->saved_replay != tape->replays &&
        bytes <= node->saved_bytes) {
        node->saved_replay = tape->replays;
        return call->saved;
    }
    call->saved = tgi_arena_alloc(&tape->arena, bytes);
    if (!call->saved) {
        tgi_error(tape->ctx, TG_ERR_NOMEM, "%s: out of memory saving %zu bytes for backward",
                  call->op_name, bytes);
        return NULL;
    }
    if (node) {
        node->saved_bytes = bytes;
        node->saved_replay = tape->replays;
    }
    return call->saved;
}

/* ---- recording ----------------------------------------------------------------------------- */

/* Why an op call's inputs were refused (the hot loop in record only detects it). */
static tg_status input_fail(tg_tape *tape, const tgi_op *op, tg_tensor *const *inputs,
                            int n_inputs, int i) {
    const tg_tensor *t = inputs[i];
    if (!t) {
        /* An earlier failure produced this NULL: its message is already on the context. */
        if (tape->ctx->err_code == TG_OK)
            tgi_error(tape->ctx, TG_ERR_INVALID, "%s: input %d is NULL", op->name, i);
        return tape->ctx->err_code;
    }
    if (!t->tape) /* persistent: the only other way to fail is another context */
        return tgi_error(tape->ctx, TG_ERR_INVALID, "%s: input %d belongs to another context (a "
                         "tensor works only with the tapes of the context that made it)",
                         op->name, i);
    return record_fail(tape, op, inputs, n_inputs, TG_ERR_STATE,
                       "input %d belongs to %s (tensors made on a tape are valid until its next "
                       "reset, on that tape only)", i,
                       t->tape != tape ? "another tape" : "an earlier step of this tape");
}

static tg_status arity_fail(tg_tape *tape, const tgi_op *op, tg_tensor *const *inputs,
                            int n_inputs) {
    return record_fail(tape, op, inputs, n_inputs < 0 ? 0 : n_inputs, TG_ERR_INVALID,
                       "takes %s%d inputs, %d given", op->arity == TG_VARIADIC ? "at least " : "",
                       op->arity == TG_VARIADIC ? 1 : op->arity, n_inputs);
}

static tg_status grow_entries(tg_tape *tape) {
    int64_t cap = tape->cap_entries ? tape->cap_entries * 2 : 256;
    tgi_node **grown = tgi_realloc(tape->ctx, tape->entries,
                                   (size_t)tape->cap_entries * sizeof *grown,
                                   (size_t)cap * sizeof *grown);
    if (!grown) return tgi_error(tape->ctx, TG_ERR_NOMEM, "tape: out of memory for entries");
    tape->entries = grown;
    tape->cap_entries = cap;
    return TG_OK;
}

/* Copies only the live member of each attribute: the caller set that one alone (a whole-union
 * copy would read bytes it never wrote, and stall on its narrow stores). Tests, not a switch:
 * its jump table costs more than the copy. */
static void keep_attrs(tg_attr_value *kept, const tg_attr_value *attrs, const tgi_op *op) {
    if (op->n_attrs == 1 && (op->attrs[0].type == TG_ATTR_F32 || op->attrs[0].type == TG_ATTR_I32)) {
        kept[0].i32 = attrs[0].i32; /* scale, add_scalar, pow, leaky_relu, elu, ... */
        return;
    }
    for (int k = 0; k < op->n_attrs; k++) {
        tg_attr_type type = op->attrs[k].type;
        if (type == TG_ATTR_F32 || type == TG_ATTR_I32) kept[k].i32 = attrs[k].i32;
        else if (type == TG_ATTR_F64 || type == TG_ATTR_I64) kept[k].i64 = attrs[k].i64;
        else if (type == TG_ATTR_BOOL) kept[k].b = attrs[k].b;
        else kept[k].shape = attrs[k].shape;
    }
}

/* A recorded output's data is followed by room for its gradient, so that backward hands out
 * gradient buffers without allocating: the walk gives one to every node it reaches, and the
 * nodes of a recorded step are nearly all reached. The header keeps a pointer to the room (not
 * derived from output->data, which a forward may point elsewhere, e.g. at an input for a view).
 * The room starts at the next 32-byte boundary (the data itself is 64-byte aligned): a scalar
 * op's output and gradient then share one cache line, and a step of scalar ops is mostly this
 * memory, which limits its speed once it no longer fits in the cache. */
static size_t grad_offset(int64_t size) {
    return (((size_t)size * sizeof(float) + 31) & ~(size_t)31) / sizeof(float);
}

/* Bytes for an output whose data takes `data_floats` (grad_offset): the data, and for a
 * recorded output the room of its gradient; a multiple of 64, as the arena takes. */
static size_t output_bytes(size_t data_floats, bool record) {
    return tgi_align64(data_floats * sizeof(float) * (record ? 2 : 1));
}

/* Sets up node's output (a new header) on `data`, with the gradient room `data_floats` further
 * for a recorded call; dims has TG_MAX_DIMS entries. */
TGI_ALWAYS_INLINE static inline tg_tensor *set_output(tg_tape *tape, tgi_node *node, float *data,
                                                      size_t data_floats, int ndim,
                                                      const int64_t *dims, int64_t size,
                                                      bool record) {
    tg_tensor *output = tgi_header_take(tape);
    if (!output) return NULL;
    /* its node index is set once it is on the tape */
    tgi_init_tape_tensor(output, tape, data, ndim, dims, size, node->op, record,
                         record ? data + data_floats : NULL);
    node->call.output = output;
    return output;
}

/* The output of an op with its own infer_shape: the shape checked, the data a request apart. */
static tg_tensor *inferred_output(tg_tape *tape, tgi_node *node, bool record) {
    const tgi_op *op = node->op;
    tg_shape shape;
    tg_status inferred = op->infer_shape(&node->call, &shape);
    if (inferred != TG_OK) {
        if (tape->ctx->err_code == TG_OK)
            record_fail(tape, op, node->call.inputs, node->call.n_inputs, inferred,
                        "infer_shape failed");
        return NULL;
    }
    int64_t size = tgi_shape_elements(shape.ndim, shape.dims);
    if (size < 0) {
        char buf[96];
        record_fail(tape, op, node->call.inputs, node->call.n_inputs, TG_ERR_SHAPE, "invalid output "
                    "shape %s (dims must be >= 1, at most 2^40 elements)",
                    tgi_format_shape(shape.ndim, shape.dims, buf, sizeof buf));
        return NULL;
    }
    size_t data_floats = grad_offset(size);
    float *data = tgi_arena_take(&tape->arena, output_bytes(data_floats, record));
    if (!data) {
        record_fail(tape, op, node->call.inputs, node->call.n_inputs, TG_ERR_NOMEM,
                    "out of memory for an output of %lld floats", (long long)size);
        return NULL;
    }
    for (int d = shape.ndim; d < TG_MAX_DIMS; d++) shape.dims[d] = 1;
    return set_output(tape, node, data, data_floats, shape.ndim, shape.dims, size, record);
}

tg_status tgi_watch_forward(tg_tape *tape, tgi_node *node) {
    tg_ctx *ctx = tape->ctx;
    tg_tensor *output = node->call.output;
    if (ctx->anomaly && tgi_check_forward(tape, node) != TG_OK) return TG_ERR_NUMERIC;
    if (ctx->live_hooks[TG_PASS_FORWARD])
        return tgi_fire_hooks(tape, output, TG_PASS_FORWARD, output->data);
    return TG_OK;
}

/* What happens to a freshly computed output when something watches: its pending label, then
 * the anomaly check and the forward hooks, which may stop the step. */
static tg_status after_forward(tg_tape *tape, tgi_node *node) {
    tg_tensor *output = node->call.output;
    if (tape->pending_label[0] == TGI_LABEL_REFUSED) return TG_ERR_INVALID; /* its message said why */
    if (tape->pending_label[0]) {
        char *room = tgi_label_room(output);
        if (room) {
            memcpy(room, tape->pending_label, TG_LABEL_MAX);
            output->label = room;
        }
    }
    return tgi_watch_forward(tape, node);
}

/* Checks the inputs of a call; *record says whether it goes on the tape. An input must be a
 * tensor of this tape's current step, or a persistent tensor of this tape's context (a tape
 * tensor's context is its tape's; its tape and step are read before anything else of it). */
TGI_ALWAYS_INLINE static inline tg_status check_inputs(tg_tape *tape, const tgi_op *op, tg_tensor *const *inputs,
                                     int n_inputs, bool *record) {
    if (op->arity == TG_VARIADIC ? n_inputs < 1 : n_inputs != op->arity)
        return arity_fail(tape, op, inputs, n_inputs);
    bool any_requires_grad = false;
    for (int i = 0; i < n_inputs; i++) {
        const tg_tensor *t = inputs[i];
        if (!t || (t->tape ? t->tape != tape || t->generation != tape->generation
                           : t->ctx != tape->ctx))
            return input_fail(tape, op, inputs, n_inputs, i);
        any_requires_grad |= t->requires_grad;
    }
    *record = any_requires_grad && tape->no_grad_depth == 0;
    if (*record && !op->backward)
        return record_fail(tape, op, inputs, n_inputs, TG_ERR_NOGRAD, "op has no backward but an "
                           "input requires a gradient (use a no-grad scope, or register a "
                           "backward)");
    return TG_OK;
}

/* The node of a call with its output: one arena request for the node and copies of the input
 * pointers and attributes (often on the caller's stack; backward reads them later), and, for an
 * op shaped like its input, whose output size is known already, the output's data too. */
TGI_ALWAYS_INLINE static inline tgi_node *new_node(tg_tape *tape, const tgi_op *op, tg_tensor *const *inputs,
                          int n_inputs, const tg_attr_value *attrs, bool record) {
    int n_attrs = op->n_attrs;
    size_t data_offset = tgi_align64(sizeof(tgi_node) + (size_t)n_inputs * sizeof(tg_tensor *) +
                                     (size_t)n_attrs * sizeof(tg_attr_value));
    bool alike = op->like_input_when_alike && tgi_same_shape(inputs[0], inputs[1]);
    const tg_tensor *like = op->shaped_like_input || alike ? inputs[0] : NULL;
    size_t data_floats = like ? grad_offset(like->size) : 0;
    size_t bytes = data_offset + output_bytes(data_floats, record);
    tgi_node *node = tgi_arena_take(&tape->arena, bytes);
    if (!node) {
        tgi_error(tape->ctx, TG_ERR_NOMEM, "%s: out of memory recording the call", op->name);
        return NULL;
    }
    tg_tensor **kept_inputs = (tg_tensor **)(node + 1);
    kept_inputs[0] = inputs[0]; /* there is at least one: a loop from 0 costs a vector set-up */
    for (int i = 1; i < n_inputs; i++) kept_inputs[i] = inputs[i];
    tg_attr_value *kept_attrs = NULL;
    if (n_attrs) {
        kept_attrs = (tg_attr_value *)(kept_inputs + n_inputs);
        keep_attrs(kept_attrs, attrs, op);
    }
    node->call.tape = tape;
    node->call.op_id = op->id;
    node->call.op_name = op->name;
    node->call.inputs = kept_inputs;
    node->call.n_inputs = n_inputs;
    node->call.output = NULL;
    node->call.attrs = kept_attrs;
    node->call.saved = NULL;
    node->call.op_data = op->op_data;
    node->op = op;
    node->scalar_unary = false;
    if (like ? !set_output(tape, node, (float *)((unsigned char *)node + data_offset), data_floats,
                           like->ndim, like->shape, like->size, record)
             : !inferred_output(tape, node, record))
        return NULL;
    return node;
}

/* The forward of a call failed: the message names the op and its inputs. */
static TGI_NOINLINE tg_tensor *forward_failed(tgi_node *node) {
    tg_tape *tape = node->call.tape;
    if (tape->ctx->err_code == TG_OK)
        record_fail(tape, node->op, node->call.inputs, node->call.n_inputs, TG_ERR_INVALID,
                    "forward failed");
    tape->pending_label[0] = '\0';
    return NULL;
}

/* Inlined into tgi_record, tgi_record2 and record1's general path: with n_inputs a constant,
 * the compiler drops the loops over inputs, which are most of a small op's recording cost. */
TGI_ALWAYS_INLINE static inline tg_tensor *record(tg_tape *tape, const tgi_op *op,
                                                  tg_tensor *const *inputs, int n_inputs,
                                                  const tg_attr_value *attrs) {
    bool record;
    if (TGI_UNLIKELY(tape->replaying)) { /* a hook's call: the replay's nodes are fixed */
        char what[TG_LABEL_MAX + 16];
        snprintf(what, sizeof what, "%s (an op)", op->name);
        tgi_refuse_in_pass(tape, what);
        return NULL;
    }
    if (TGI_UNLIKELY(tape->segment != NULL) && (op->seeded_by_attribute | op->writes_inputs) &&
        tgi_segment_call(tape, op, &inputs, n_inputs, &attrs) != TG_OK)
        return NULL;
    if (check_inputs(tape, op, inputs, n_inputs, &record) != TG_OK) return NULL;
    tgi_node *node = new_node(tape, op, inputs, n_inputs, attrs, record);
    if (!node) return NULL;
    tape->call_node = node; /* for tg_op_save_for_backward (the one-input fast path saves not) */
    if (op->forward(&node->call) != TG_OK) return forward_failed(node);
    /* Read back from the node, as in the fast path below: only the node lives across the call. */
    tape = node->call.tape;
    tg_tensor *output = node->call.output;
    record = output->requires_grad;
    if (record) {
        if (tape->n_entries == tape->cap_entries && grow_entries(tape) != TG_OK) return NULL;
        output->node = (int32_t)tape->n_entries;
        tape->entries[tape->n_entries++] = node;
    } else {
        tape->n_unrecorded++; /* not on the tape: a replay would not recompute it */
    }
    tg_ctx *ctx = tape->ctx;
    if (tape->pending_label[0] | ctx->watch_forward)
        return after_forward(tape, node) == TG_OK ? output : NULL;
    return output;
}

tg_tensor *tgi_record(tg_tape *tape, const tgi_op *op, tg_tensor *const *inputs, int n_inputs,
                      const tg_attr_value *attrs) {
    tg_tensor *output = record(tape, op, inputs, n_inputs, attrs);
    tape->pending_label[0] = '\0'; /* a label names one op's output, whatever happened */
    return output;
}

tg_tensor *tgi_record2(tg_tape *tape, const tgi_op *op, tg_tensor *a, tg_tensor *b) {
    tg_tensor *inputs[2] = {a, b};
    tg_tensor *output = record(tape, op, inputs, 2, NULL);
    tape->pending_label[0] = '\0';
    return output;
}

/* ---- the fast path of one-input calls ------------------------------------------------------ */

/* Most calls of a step are elementwise ops on a tensor of the same step, with room left in the
 * arena's chunk and the header half: those take one straight run of loads and stores (275
 * instructions per scalar op became 199 this way, callgrind on bench_models chain). Everything
 * else (bad or persistent inputs, a new chunk, ops with their own shapes, no backward) goes to
 * the general path, which starts over: nothing is changed before the fast path has decided.
 * Bytes: TGI_UNARY_NODE_BYTES, the node, its one input pointer and its one attribute (and for
 * a scalar output its value, gradient and the input's gradient room: see tgi_node). */
size_t tgi_unary_node_bytes(const tgi_op *op) {
    bool small_attrs = op->n_attrs == 0 ||
                       (op->n_attrs == 1 && (op->attrs[0].type == TG_ATTR_F32 ||
                                             op->attrs[0].type == TG_ATTR_I32));
    if (op->arity != 1 || !op->shaped_like_input || !op->backward || !small_attrs) return 0;
    return TGI_UNARY_NODE_BYTES;
}

/* The general path of record1 (kept out of line: the fast path then needs no stack frame for an
 * attribute array). */
static TGI_NOINLINE tg_tensor *record1_general(tg_tape *tape, const tgi_op *op, tg_tensor *x,
                                               uint32_t attr_bits) {
    tg_attr_value attr;
    memset(&attr, 0, sizeof attr); /* an op with another kind of attribute reads defined bytes */
    attr.i32 = (int32_t)attr_bits;
    tg_tensor *output = record(tape, op, &x, 1, &attr);
    tape->pending_label[0] = '\0';
    return output;
}

/* After the forward: on the tape, then what watches (a pending label, anomaly mode, hooks). */
static TGI_NOINLINE tg_tensor *watched_output(tg_tape *tape, tgi_node *node) {
    tg_tensor *output = after_forward(tape, node) == TG_OK ? node->call.output : NULL;
    tape->pending_label[0] = '\0';
    return output;
}

#define OP_ID_NAME_BYTES (offsetof(tg_op_call, op_name) + sizeof(char *) - offsetof(tg_op_call, op_id))
_Static_assert(offsetof(tg_op_call, op_name) - offsetof(tg_op_call, op_id) ==
                       offsetof(tgi_op, name) - offsetof(tgi_op, id) &&
                   sizeof(((tgi_op *)0)->name) == sizeof(char *),
               "tgi_op's id and name lie as tg_op_call's op_id and op_name do");

/* NULL with *taken false when the call is not for the fast path. */
TGI_ALWAYS_INLINE static inline tg_tensor *record_unary(tg_tape *tape, const tgi_op *op,
                                                        tg_tensor *x, uint32_t attr_bits,
                                                        bool *taken) {
    size_t node_bytes = op->unary_node_bytes;
    *taken = false;
    if (!x) return NULL;
    if (!node_bytes || x->tape != tape || x->generation != tape->generation || tape->replaying)
        return NULL; /* a call during a replay: the general path refuses it */
    const bool rec = x->requires_grad & (tape->no_grad_depth == 0);
    /* A scalar's value and gradient fit in the node's own two lines (TGI_UNARY_DATA_AT) */
    const bool scalar = x->size == 1;
    size_t data_bytes = scalar ? sizeof(float) : grad_offset(x->size) * sizeof(float);
    size_t bytes = node_bytes + (scalar ? 0 : tgi_align64(data_bytes << rec)); /* output_bytes */
    unsigned char *p = tape->arena.cursor;
    tgi_header_slot *slot = tape->header_cursor;
    if ((size_t)(tape->arena.limit - p) < bytes || slot == tape->header_limit) return NULL;
    *taken = true;
    tape->arena.cursor = p + bytes;
    tape->header_cursor = slot + 1;
    tg_tensor *output = &slot->tensor;

    tgi_node *node = (tgi_node *)p;
    tg_tensor **kept_input = (tg_tensor **)(p + TGI_UNARY_INPUT_AT);
    /* 8 bytes, not a whole tg_attr_value: the fast path's ops have at most one attribute of 4
     * bytes, and everything reads attributes by their member */
    tg_attr_value *kept_attr = (tg_attr_value *)(p + TGI_UNARY_ATTR_AT);
    float *data = (float *)(p + (scalar ? TGI_UNARY_DATA_AT : node_bytes));
    float *room = (float *)((unsigned char *)data + data_bytes);
    kept_input[0] = x;
    kept_attr->i32 = (int32_t)attr_bits; /* read only when the op has the attribute */
    /* read only for a scalar (elsewhere these are padding bytes before the data): no test */
    memcpy(p + TGI_SCALAR_ROOM_AT, &x->grad_room, sizeof x->grad_room);
    node->scalar_unary = scalar;
    node->call.tape = tape;
    /* op_id and op_name in one 16-byte copy: tgi_op has id and name in the same places */
    memcpy((unsigned char *)&node->call + offsetof(tg_op_call, op_id),
           (const unsigned char *)op + offsetof(tgi_op, id), OP_ID_NAME_BYTES);
    node->call.inputs = kept_input;
    node->call.n_inputs = 1;
    node->call.output = output;
    node->call.attrs = kept_attr; /* for an op without attributes, a slot nothing reads */
    node->call.saved = NULL;
    node->call.op_data = op->op_data;
    node->op = op;
    tgi_init_tape_tensor(output, tape, data, x->ndim, x->shape, x->size, op, rec, rec ? room : NULL);

    if (scalar && op->scalar_forward) {
        data[0] = op->scalar_forward(x->data[0], kept_attr);
    } else {
        tape->call_node = node; /* a forward that saves for backward finds its node (replay) */
        if (op->forward(&node->call) != TG_OK) return forward_failed(node);
    }
    /* From here on everything is read back from the node: then only the node has to live in a
     * register across the forward, and the call saves one register rather than six. */
    tape = node->call.tape;
    output = node->call.output;
    if (output->requires_grad) {
        if (tape->n_entries == tape->cap_entries && grow_entries(tape) != TG_OK) {
            tape->pending_label[0] = '\0';
            return NULL;
        }
        output->node = (int32_t)tape->n_entries;
        tape->entries[tape->n_entries++] = node;
    } else {
        tape->n_unrecorded++;
    }
    tg_ctx *ctx = tape->ctx;
    if (tape->pending_label[0] | ctx->watch_forward)
        return watched_output(tape, node);
    return output;
}

tg_tensor *tgi_record1(tg_tape *tape, const tgi_op *op, tg_tensor *x, uint32_t attr_bits) {
    bool taken;
    tg_tensor *output = record_unary(tape, op, x, attr_bits, &taken);
    return taken ? output : record1_general(tape, op, x, attr_bits);
}
