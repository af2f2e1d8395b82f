/*
 * ops/native.c — ops whose kernels are a user's plain C functions, called through libffi.
 *
 * Everything libffi needs is worked out once, at registration: the signature is parsed, the
 * argument types listed and both call descriptions (ffi_cif) prepared and kept in the op's
 * data. A call then only points libffi at its arguments: one ffi_call per op call.
 */
#include "ops/ops.h"

#include <ffi.h>
#include <stdio.h>
#include <string.h>

#define MAX_NATIVE_INPUTS 8
/* forward: 2 per input + 2 + attrs; backward: 3 per input + 3 + attrs */
#define MAX_ARGS (3 * MAX_NATIVE_INPUTS + 3 + TG_MAX_ATTRS)

typedef struct native_op {
    int n_inputs, n_attrs;
    tg_attr_type attr_types[TG_MAX_ATTRS];
    tg_native_fn forward, backward;
    ffi_cif forward_cif, backward_cif;
    ffi_type *forward_types[MAX_ARGS], *backward_types[MAX_ARGS];
    tg_native_opts opts;
} native_op;

static ffi_type *attr_ffi_type(tg_attr_type type) {
    switch (type) {
    case TG_ATTR_F32: return &ffi_type_float;
    case TG_ATTR_F64: return &ffi_type_double;
    case TG_ATTR_I32: return &ffi_type_sint32;
    case TG_ATTR_I64: return &ffi_type_sint64;
    case TG_ATTR_BOOL: return &ffi_type_uint8; /* C's bool: one byte, 0 or 1 */
    case TG_ATTR_SHAPE: break;
    }
    return NULL;
}

/* The address of an attribute value as its C type, for libffi's argument array. */
static void *attr_address(const tg_attr_value *value, tg_attr_type type) {
    switch (type) {
    case TG_ATTR_F32: return (void *)&value->f32;
    case TG_ATTR_F64: return (void *)&value->f64;
    case TG_ATTR_I32: return (void *)&value->i32;
    case TG_ATTR_I64: return (void *)&value->i64;
    case TG_ATTR_BOOL: return (void *)&value->b;
    case TG_ATTR_SHAPE: break;
    }
    return NULL;
}

/* ---- the adapters the registry calls -------------------------------------------------------- */

/* Arguments shared by both kernels' heads: each input's pointer and size. */
typedef struct native_args {
    void *values[MAX_ARGS];
    const float *in[MAX_NATIVE_INPUTS];
    float *grad_in[MAX_NATIVE_INPUTS];
    int64_t size[MAX_NATIVE_INPUTS];
    float *out;
    const float *grad_out;
    int64_t out_size;
    int count;
} native_args;

static void push_inputs(native_args *a, const tg_op_call *call) {
    for (int i = 0; i < call->n_inputs; i++) {
        a->in[i] = call->inputs[i]->data;
        a->size[i] = call->inputs[i]->size;
        a->values[a->count++] = &a->in[i];
        a->values[a->count++] = &a->size[i];
    }
    a->out = call->output->data;
    a->out_size = call->output->size;
}

static void push_attrs(native_args *a, const native_op *op, const tg_op_call *call) {
    for (int k = 0; k < op->n_attrs; k++)
        a->values[a->count++] = attr_address(&call->attrs[k], op->attr_types[k]);
}

static tg_status native_forward(tg_op_call *call) {
    const native_op *op = call->op_data;
    native_args a;
    a.count = 0;
    push_inputs(&a, call);
    a.values[a.count++] = &a.out;
    a.values[a.count++] = &a.out_size;
    push_attrs(&a, op, call);
    ffi_call((ffi_cif *)&op->forward_cif, FFI_FN(op->forward), NULL, a.values);
    return TG_OK;
}

static tg_status native_backward(const tg_op_call *call) {
    const native_op *op = call->op_data;
    native_args a;
    a.count = 0;
    push_inputs(&a, call);
    a.grad_out = call->output->grad;
    a.values[a.count++] = &a.out;
    a.values[a.count++] = &a.grad_out;
    a.values[a.count++] = &a.out_size;
    for (int i = 0; i < call->n_inputs; i++) {
        a.grad_in[i] = call->inputs[i]->grad; /* NULL when no gradient is wanted */
        a.values[a.count++] = &a.grad_in[i];
    }
    push_attrs(&a, op, call);
    ffi_call((ffi_cif *)&op->backward_cif, FFI_FN(op->backward), NULL, a.values);
    return TG_OK;
}

/* The user's infer_shape and example see their own op_data, not ours. */
static tg_op_call user_view(const tg_op_call *call) {
    tg_op_call view = *call;
    view.op_data = ((const native_op *)call->op_data)->opts.op_data;
    return view;
}

static tg_status native_infer(const tg_op_call *call, tg_shape *out) {
    const native_op *op = call->op_data;
    if (op->opts.infer_shape) {
        tg_op_call view = user_view(call);
        return op->opts.infer_shape(&view, out);
    }
    for (int i = 1; i < call->n_inputs; i++)
        if (!tgi_same_shape(call->inputs[i], call->inputs[0]))
            return tg_op_fail(call, TG_ERR_SHAPE, "input %d's shape differs from input 0's (a "
                              "native op without infer_shape is elementwise)", i);
    return tgi_infer_like_input(call, out);
}

static tg_status native_example(tg_tape *tape, void *op_data, int index, tg_tensor **inputs,
                                int *n_inputs, tg_attr_value *attrs) {
    const native_op *op = op_data;
    if (op->opts.example)
        return op->opts.example(tape, op->opts.op_data, index, inputs, n_inputs, attrs);
    if (index > 0) return TG_ERR_NOT_FOUND;
    for (int i = 0; i < op->n_inputs; i++) {
        inputs[i] = tg_tape_zeros(tape, TG_SHAPE(3, 4));
        if (!inputs[i]) return tg_errcode(tape->ctx);
        tg_fill_normal(inputs[i], 0.0f, 1.0f, 100 + (uint64_t)i);
        tg_set_requires_grad(inputs[i], true);
        tg_set_label(inputs[i], "x%d", i);
    }
    *n_inputs = op->n_inputs;
    memcpy(attrs, op->opts.example_attrs, sizeof op->opts.example_attrs);
    return TG_OK;
}

/* The user's forward-mode rule (written with ops, as for any op), seeing their op_data. */
static tg_status native_jvp(const tg_op_call *call, tg_tensor *const *tangents, tg_tensor **out) {
    tg_op_call view = user_view(call);
    return ((const native_op *)call->op_data)->opts.jvp(&view, tangents, out);
}

static void release_native(tg_ctx *ctx, void *op_data) {
    tgi_free(ctx, op_data, sizeof(native_op));
}

/* ---- registration ------------------------------------------------------------------------- */

static const char *skip_space(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n') p++;
    return p;
}

/* Counts the input names before "->" and checks each is a name; leaves *rest at the output. */
static tg_status parse_tensors(tg_ctx *ctx, const char *name, const char *signature,
                               int *n_inputs, const char **attrs_start) {
    const char *p = skip_space(signature), *arrow = strstr(signature, "->");
    if (!arrow)
        return tgi_error(ctx, TG_ERR_INVALID, "native op '%s': signature \"%s\": expected "
                         "\"inputs -> output\" (e.g. \"x -> y; beta:f32\")", name, signature);
    *n_inputs = 0;
    for (;;) {
        const char *start = p;
        while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_') p++;
        if (p == start || (*start >= '0' && *start <= '9'))
            return tgi_error(ctx, TG_ERR_INVALID, "native op '%s': signature \"%s\": expected an "
                             "input name at offset %d", name, signature, (int)(start - signature));
        if (++*n_inputs > MAX_NATIVE_INPUTS)
            return tgi_error(ctx, TG_ERR_INVALID, "native op '%s': signature \"%s\": more than "
                             "%d inputs", name, signature, MAX_NATIVE_INPUTS);
        p = skip_space(p);
        if (p == arrow) break;
        if (*p != ',')
            return tgi_error(ctx, TG_ERR_INVALID, "native op '%s': signature \"%s\": expected ',' "
                             "or \"->\" at offset %d", name, signature, (int)(p - signature));
        p = skip_space(p + 1);
    }
    p = skip_space(arrow + 2);
    const char *start = p;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_') p++;
    if (p == start)
        return tgi_error(ctx, TG_ERR_INVALID, "native op '%s': signature \"%s\": expected the "
                         "output name after \"->\"", name, signature);
    p = skip_space(p);
    if (*p && *p != ';')
        return tgi_error(ctx, TG_ERR_INVALID, "native op '%s': signature \"%s\": one output, then "
                         "';' and the attributes (offset %d)", name, signature, (int)(p - signature));
    *attrs_start = *p == ';' ? p + 1 : p;
    return TG_OK;
}

static tg_status prepare(tg_ctx *ctx, const char *name, ffi_cif *cif, ffi_type **types, int n) {
    ffi_status status = ffi_prep_cif(cif, FFI_DEFAULT_ABI, (unsigned)n, &ffi_type_void, types);
    if (status != FFI_OK)
        return tgi_error(ctx, TG_ERR_INVALID, "native op '%s': libffi refused the call "
                         "description (ffi_prep_cif status %d)", name, (int)status);
    return TG_OK;
}

/* The argument types of both kernels, from the input count and the attribute types. */
static tg_status prepare_calls(tg_ctx *ctx, const char *name, native_op *op) {
    int f = 0, b = 0;
    for (int i = 0; i < op->n_inputs; i++) {
        op->forward_types[f++] = &ffi_type_pointer;
        op->forward_types[f++] = &ffi_type_sint64;
        op->backward_types[b++] = &ffi_type_pointer;
        op->backward_types[b++] = &ffi_type_sint64;
    }
    op->forward_types[f++] = &ffi_type_pointer; /* out */
    op->forward_types[f++] = &ffi_type_sint64;  /* out_size */
    op->backward_types[b++] = &ffi_type_pointer; /* out */
    op->backward_types[b++] = &ffi_type_pointer; /* grad_out */
    op->backward_types[b++] = &ffi_type_sint64;  /* out_size */
    for (int i = 0; i < op->n_inputs; i++) op->backward_types[b++] = &ffi_type_pointer;
    for (int k = 0; k < op->n_attrs; k++) {
        op->forward_types[f++] = attr_ffi_type(op->attr_types[k]);
        op->backward_types[b++] = attr_ffi_type(op->attr_types[k]);
    }
    tg_status status = prepare(ctx, name, &op->forward_cif, op->forward_types, f);
    if (status == TG_OK && op->backward) status = prepare(ctx, name, &op->backward_cif, op->backward_types, b);
    return status;
}

int tg_op_register_native(tg_ctx *ctx, const char *name, const char *signature,
                          tg_native_fn forward, tg_native_fn backward, const tg_native_opts *opts) {
    if (!ctx) return -1;
    const char *label = name ? name : "(null)";
    if (!signature || !forward) {
        tgi_error(ctx, TG_ERR_INVALID, "native op '%s': signature and forward are required", label);
        return -1;
    }
    int n_inputs = 0;
    const char *attr_text = "";
    if (parse_tensors(ctx, label, signature, &n_inputs, &attr_text) != TG_OK) return -1;
    tgi_attr_spec specs[TG_MAX_ATTRS];
    char names[TG_MAX_ATTRS][TGI_ATTR_NAME_MAX];
    int n_attrs;
    if (tgi_parse_signature(ctx, label, attr_text, specs, names, &n_attrs) != TG_OK) return -1;
    for (int k = 0; k < n_attrs; k++)
        if (specs[k].type == TG_ATTR_SHAPE) {
            tgi_error(ctx, TG_ERR_INVALID, "native op '%s': attribute '%s': native kernels take "
                      "f32, f64, i32, i64 or bool", label, names[k]);
            return -1;
        }

    native_op *op = tgi_alloc(ctx, sizeof *op);
    if (!op) {
        tgi_error(ctx, TG_ERR_NOMEM, "native op '%s': out of memory", label);
        return -1;
    }
    memset(op, 0, sizeof *op);
    op->n_inputs = n_inputs;
    op->n_attrs = n_attrs;
    for (int k = 0; k < n_attrs; k++) op->attr_types[k] = specs[k].type;
    op->forward = forward;
    op->backward = backward;
    if (opts) op->opts = *opts;
    if (prepare_calls(ctx, label, op) != TG_OK) {
        release_native(ctx, op);
        return -1;
    }
    tg_op_def def = {name, n_inputs, attr_text, native_infer, native_forward,
                     backward ? native_backward : NULL, native_example, op,
                     op->opts.jvp ? native_jvp : NULL};
    int id = tgi_op_register(ctx, &def, release_native, true);
    if (id < 0) release_native(ctx, op);
    return id;
}
