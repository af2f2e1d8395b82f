/*
 * ops/registry.c — the op registry: one entry per op, found by name through a hash table.
 *
 * The tape stores a pointer to the entry (not the id), so autograd/ calls forward and backward
 * without knowing the registry; entries are allocated one by one so those pointers stay valid
 * while the registry grows.
 */
#include "ops/ops.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static uint32_t hash_name(const char *name) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 16777619u;
    return h;
}

static int find_slot(const tgi_registry *reg, const char *name) {
    if (!reg->n_slots) return -1;
    uint32_t mask = (uint32_t)reg->n_slots - 1;
    for (uint32_t i = hash_name(name) & mask;; i = (i + 1) & mask) {
        int32_t id = reg->slots[i];
        if (id < 0 || strcmp(reg->ops[id]->name, name) == 0) return (int)i;
    }
}

int tg_op_find(const tg_ctx *ctx, const char *name) {
    if (!ctx || !name) return -1;
    int slot = find_slot(&ctx->registry, name);
    return slot < 0 ? -1 : ctx->registry.slots[slot];
}

int tg_op_count(const tg_ctx *ctx) {
    return ctx ? ctx->registry.count : 0;
}

const tgi_op *tgi_op_by_id(const tg_ctx *ctx, int op_id) {
    if (op_id < 0 || op_id >= ctx->registry.count) return NULL;
    return ctx->registry.ops[op_id];
}

static tg_status grow_slots(tg_ctx *ctx) {
    tgi_registry *reg = &ctx->registry;
    int n_slots = reg->n_slots ? reg->n_slots * 2 : 128;
    int32_t *slots = tgi_alloc(ctx, (size_t)n_slots * sizeof *slots);
    if (!slots) return TG_ERR_NOMEM;
    for (int i = 0; i < n_slots; i++) slots[i] = -1;
    tgi_free(ctx, reg->slots, (size_t)reg->n_slots * sizeof *slots);
    reg->slots = slots;
    reg->n_slots = n_slots;
    for (int id = 0; id < reg->count; id++) reg->slots[find_slot(reg, reg->ops[id]->name)] = id;
    return TG_OK;
}

static tg_status ensure_room(tg_ctx *ctx) {
    tgi_registry *reg = &ctx->registry;
    if (reg->count == reg->capacity) {
        int capacity = reg->capacity ? reg->capacity * 2 : 128; /* the built-ins, and room */
        tgi_op **ops = tgi_realloc(ctx, reg->ops, (size_t)reg->capacity * sizeof *ops,
                                   (size_t)capacity * sizeof *ops);
        if (!ops) return TG_ERR_NOMEM;
        reg->ops = ops;
        reg->capacity = capacity;
    }
    if (2 * (reg->count + 1) > reg->n_slots) return grow_slots(ctx);
    return TG_OK;
}

/* ---- attribute signatures ------------------------------------------------------------------ */

static const char *const type_names[] = {
    [TG_ATTR_F32] = "f32", [TG_ATTR_F64] = "f64", [TG_ATTR_I32] = "i32",
    [TG_ATTR_I64] = "i64", [TG_ATTR_BOOL] = "bool", [TG_ATTR_SHAPE] = "shape",
};

const char *tgi_attr_type_name(tg_attr_type type) {
    return type_names[type];
}

static const char *skip_space(const char *p) {
    while (isspace((unsigned char)*p)) p++;
    return p;
}

/* Parses one "name:type" starting at *cursor; on success advances *cursor past it. */
static tg_status parse_attr(tg_ctx *ctx, const char *op_name, const char *signature,
                            const char **cursor, char *name, size_t name_size, tg_attr_type *type) {
    const char *p = skip_space(*cursor);
    size_t len = 0;
    if (!(islower((unsigned char)*p) || *p == '_'))
        return tgi_error(ctx, TG_ERR_INVALID, "op '%s': signature \"%s\": expected an attribute "
                         "name at offset %d", op_name, signature, (int)(p - signature));
    while (islower((unsigned char)p[len]) || isdigit((unsigned char)p[len]) || p[len] == '_') len++;
    if (len >= name_size)
        return tgi_error(ctx, TG_ERR_INVALID, "op '%s': signature \"%s\": attribute name longer "
                         "than %d characters", op_name, signature, (int)name_size - 1);
    memcpy(name, p, len);
    name[len] = '\0';
    p = skip_space(p + len);
    if (*p != ':')
        return tgi_error(ctx, TG_ERR_INVALID, "op '%s': signature \"%s\": expected ':' after "
                         "attribute '%s'", op_name, signature, name);
    p = skip_space(p + 1);
    for (int t = 0; t <= TG_ATTR_SHAPE; t++) {
        size_t n = strlen(type_names[t]);
        if (strncmp(p, type_names[t], n) == 0 && !isalnum((unsigned char)p[n])) {
            *type = (tg_attr_type)t;
            *cursor = skip_space(p + n);
            return TG_OK;
        }
    }
    return tgi_error(ctx, TG_ERR_INVALID, "op '%s': signature \"%s\": attribute '%s' has an "
                     "unknown type (expected f32, f64, i32, i64, bool or shape)",
                     op_name, signature, name);
}

tg_status tgi_parse_signature(tg_ctx *ctx, const char *op_name, const char *signature,
                              tgi_attr_spec *specs, char names[][TGI_ATTR_NAME_MAX], int *n_attrs) {
    *n_attrs = 0;
    const char *p = skip_space(signature ? signature : "");
    if (!*p) return TG_OK;
    for (;;) {
        if (*n_attrs == TG_MAX_ATTRS)
            return tgi_error(ctx, TG_ERR_INVALID, "op '%s': signature \"%s\": more than %d "
                             "attributes", op_name, signature, TG_MAX_ATTRS);
        int k = *n_attrs;
        tg_status status = parse_attr(ctx, op_name, signature, &p, names[k], TGI_ATTR_NAME_MAX,
                                      &specs[k].type);
        if (status != TG_OK) return status;
        for (int j = 0; j < k; j++)
            if (strcmp(names[j], names[k]) == 0)
                return tgi_error(ctx, TG_ERR_INVALID, "op '%s': signature \"%s\": attribute '%s' "
                                 "appears twice", op_name, signature, names[k]);
        specs[k].name = names[k];
        (*n_attrs)++;
        if (!*p) return TG_OK;
        if (*p != ',')
            return tgi_error(ctx, TG_ERR_INVALID, "op '%s': signature \"%s\": expected ',' or "
                             "the end at offset %d", op_name, signature, (int)(p - signature));
        p++;
    }
}

static bool valid_op_name(const char *name) {
    if (!name || !(isalpha((unsigned char)name[0]) || name[0] == '_')) return false;
    size_t len = 0;
    for (; name[len]; len++)
        if (!(isalnum((unsigned char)name[len]) || name[len] == '_' || name[len] == '.'))
            return false;
    return len < 64;
}

static void free_op(tg_ctx *ctx, tgi_op *op) {
    if (!op) return;
    if (op->release) op->release(ctx, op->op_data);
    for (int k = 0; k < op->n_attrs; k++)
        tgi_free(ctx, op->attrs[k].name, strlen(op->attrs[k].name) + 1);
    tgi_free(ctx, op->name, op->name ? strlen(op->name) + 1 : 0);
    tgi_free(ctx, op->signature, op->signature ? strlen(op->signature) + 1 : 0);
    tgi_free(ctx, op, sizeof *op);
}

/* Builds the normalised signature "a:f32,b:i64" and copies the names. */
static tg_status fill_attrs(tg_ctx *ctx, tgi_op *op, const tgi_attr_spec *specs, int n_attrs) {
    char normal[TG_MAX_ATTRS * (TGI_ATTR_NAME_MAX + 8)] = "";
    size_t len = 0;
    for (int k = 0; k < n_attrs; k++) {
        op->attrs[k].type = specs[k].type;
        op->attrs[k].name = tgi_strdup(ctx, specs[k].name);
        if (!op->attrs[k].name) return TG_ERR_NOMEM;
        op->n_attrs = k + 1;
        len += (size_t)snprintf(normal + len, sizeof normal - len, "%s%s:%s", k ? "," : "",
                                specs[k].name, type_names[specs[k].type]);
    }
    op->signature = tgi_strdup(ctx, normal);
    return op->signature ? TG_OK : TG_ERR_NOMEM;
}

static tg_status check_def(tg_ctx *ctx, const tg_op_def *def) {
    if (!def) return tgi_error(ctx, TG_ERR_INVALID, "op_register: definition is NULL");
    if (!valid_op_name(def->name))
        return tgi_error(ctx, TG_ERR_INVALID, "op_register: invalid op name '%s' (letters, "
                         "digits, '_' and '.', starting with a letter or '_', under 64 chars)",
                         def->name ? def->name : "(null)");
    if (tg_op_find(ctx, def->name) >= 0)
        return tgi_error(ctx, TG_ERR_INVALID, "op_register: an op named '%s' is already "
                         "registered", def->name);
    if (def->arity != TG_VARIADIC && (def->arity < 1 || def->arity > 64))
        return tgi_error(ctx, TG_ERR_INVALID, "op '%s': arity %d (expected 1..64 or "
                         "TG_VARIADIC)", def->name, def->arity);
    if (!def->infer_shape || !def->forward)
        return tgi_error(ctx, TG_ERR_INVALID, "op '%s': infer_shape and forward are required",
                         def->name);
    return TG_OK;
}

int tg_op_register(tg_ctx *ctx, const tg_op_def *def) {
    return tgi_op_register(ctx, def, NULL, false);
}

int tgi_op_register(tg_ctx *ctx, const tg_op_def *def, void (*release)(tg_ctx *, void *),
                    bool native) {
    if (!ctx || check_def(ctx, def) != TG_OK) return -1;
    tgi_attr_spec specs[TG_MAX_ATTRS];
    char names[TG_MAX_ATTRS][TGI_ATTR_NAME_MAX];
    int n_attrs;
    if (tgi_parse_signature(ctx, def->name, def->attr_signature, specs, names, &n_attrs) != TG_OK)
        return -1;
    tgi_op *op = NULL;
    if (ensure_room(ctx) != TG_OK || !(op = tgi_alloc(ctx, sizeof *op))) goto out_of_memory;
    memset(op, 0, sizeof *op);
    op->name = tgi_strdup(ctx, def->name);
    if (!op->name || fill_attrs(ctx, op, specs, n_attrs) != TG_OK) goto out_of_memory;
    op->arity = def->arity;
    op->infer_shape = def->infer_shape;
    op->forward = def->forward;
    op->backward = def->backward;
    op->jvp = def->jvp;
    op->example = def->example;
    op->op_data = def->op_data;
    op->release = release;
    op->native = native;
    op->shaped_like_input = def->infer_shape == tgi_infer_like_input;
    op->like_input_when_alike = def->infer_shape == tgi_infer_broadcast;
    op->unary_node_bytes = tgi_unary_node_bytes(op);

    tgi_registry *reg = &ctx->registry;
    op->id = reg->count;
    reg->ops[reg->count++] = op;
    reg->slots[find_slot(reg, op->name)] = op->id;
    return op->id;

out_of_memory:
    free_op(ctx, op);
    tgi_error(ctx, TG_ERR_NOMEM, "op_register '%s': out of memory", def->name);
    return -1;
}

tg_status tg_op_get_info(const tg_ctx *ctx, int op_id, tg_op_info *info) {
    const tgi_op *op = ctx ? tgi_op_by_id(ctx, op_id) : NULL;
    if (!op || !info) return op ? TG_ERR_INVALID : TG_ERR_NOT_FOUND;
    memset(info, 0, sizeof *info);
    info->name = op->name;
    info->arity = op->arity;
    info->attr_signature = op->signature;
    info->n_attrs = op->n_attrs;
    for (int k = 0; k < op->n_attrs; k++) {
        info->attr_names[k] = op->attrs[k].name;
        info->attr_types[k] = op->attrs[k].type;
    }
    info->has_backward = op->backward != NULL;
    info->has_example = op->example != NULL;
    info->has_jvp = op->jvp != NULL;
    info->native = op->native;
    return TG_OK;
}

void tgi_registry_release(tg_ctx *ctx) {
    tgi_registry *reg = &ctx->registry;
    for (int id = 0; id < reg->count; id++) free_op(ctx, reg->ops[id]);
    tgi_free(ctx, reg->ops, (size_t)reg->capacity * sizeof *reg->ops);
    tgi_free(ctx, reg->slots, (size_t)reg->n_slots * sizeof *reg->slots);
    memset(reg, 0, sizeof *reg);
}

tg_tensor *tg_call_id(tg_tape *tape, int op_id, tg_tensor *const *inputs, int n_inputs,
                    const tg_attr_value *attrs, int n_attrs) {
    if (!tape) return NULL;
    tg_ctx *ctx = tape->ctx;
    const tgi_op *op = tgi_op_by_id(ctx, op_id);
    if (!op) {
        tgi_error(ctx, TG_ERR_NOT_FOUND, "apply: no op with id %d (%d ops registered)", op_id,
                  ctx->registry.count);
        return NULL;
    }
    if (n_attrs != op->n_attrs || (n_attrs > 0 && !attrs)) {
        tgi_error(ctx, TG_ERR_INVALID, "%s: takes %d attributes (%s), %d given", op->name,
                  op->n_attrs, op->signature[0] ? op->signature : "none", n_attrs);
        return NULL;
    }
    if (n_inputs > 0 && !inputs) {
        tgi_error(ctx, TG_ERR_INVALID, "%s: inputs array is NULL", op->name);
        return NULL;
    }
    return tgi_record(tape, op, inputs, n_inputs, attrs);
}
