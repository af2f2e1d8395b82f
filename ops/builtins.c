/*
 * ops/builtins.c — a new context comes with the built-in ops: creation, registration, release.
 */
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *default_alloc(void *user, void *ptr, size_t old_size, size_t new_size) {
    (void)user;
    (void)old_size;
    if (new_size == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, new_size);
}

static const char *const builtin_names[] = {
#define TGI_OP_NAME(id, name) #name,
    TGI_BUILTIN_OPS(TGI_OP_NAME)
#undef TGI_OP_NAME
};

typedef struct def_table {
    const tg_op_def *defs;
    const int *count;
} def_table;

/* Registers every table in order; each op must land on the id its typed wrapper uses. */
static tg_status register_builtins(tg_ctx *ctx) {
    const def_table tables[] = {
        {tgi_elementwise_defs, &tgi_elementwise_count}, {tgi_activation_defs, &tgi_activation_count},
        {tgi_linalg_defs, &tgi_linalg_count},           {tgi_shape_defs, &tgi_shape_count},
        {tgi_reduce_defs, &tgi_reduce_count},           {tgi_loss_defs, &tgi_loss_count},
        {tgi_batch_norm_defs, &tgi_batch_norm_count},   {tgi_norm_defs, &tgi_norm_count},
        {tgi_conv_defs, &tgi_conv_count},
        {tgi_pool_defs, &tgi_pool_count},               {tgi_recurrent_defs, &tgi_recurrent_count},
        {tgi_index_defs, &tgi_index_count},
        {tgi_attention_defs, &tgi_attention_count},     {tgi_derivative_defs, &tgi_derivative_count},
        {tgi_index_tangent_defs, &tgi_index_tangent_count},
        {tgi_pool_tangent_defs, &tgi_pool_tangent_count},
        {tgi_recurrent_tangent_defs, &tgi_recurrent_tangent_count},
    };
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++)
        for (int i = 0; i < *tables[t].count; i++) {
            const tg_op_def *def = &tables[t].defs[i];
            int id = tg_op_register(ctx, def);
            if (id < 0) return tg_errcode(ctx);
            if (id >= TGI_BUILTIN_COUNT || strcmp(builtin_names[id], def->name) != 0)
                return tgi_error(ctx, TG_ERR_STATE, "built-in op '%s' registered as id %d, "
                                 "which TGI_BUILTIN_OPS gives to another op", def->name, id);
        }
    ctx->registry.ops[TGI_OP_DROPOUT]->seeded_by_attribute = true; /* tg_tape_replay refuses it */
    ctx->registry.ops[TGI_OP_BATCH_NORM]->writes_inputs = true;    /* its running statistics */
    ctx->registry.ops[TGI_OP_BATCH_NORM_RELU]->writes_inputs = true;
    /* backward writes the inputs' gradients whole when they are fresh (tgi_op.fresh_grads) */
    const int whole[] = {TGI_OP_ADD,       TGI_OP_RELU,      TGI_OP_BATCH_NORM, TGI_OP_BATCH_NORM_RELU,
                         TGI_OP_CONV2D,    TGI_OP_SIGMOID,   TGI_OP_TANH,       TGI_OP_LINEAR,
                         TGI_OP_MATMUL,    TGI_OP_LSTM_GATES, TGI_OP_LSTM_CELL, TGI_OP_LSTM_HIDDEN,
                         TGI_OP_SUM,       TGI_OP_MEAN};
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++)
        ctx->registry.ops[whole[i]]->fresh_grads = true;
    tgi_elementwise_scalar_rules(ctx);
    tgi_activation_scalar_rules(ctx);
    tgi_index_scalar_rules(ctx);
    if (tg_op_count(ctx) != TGI_BUILTIN_COUNT)
        return tgi_error(ctx, TG_ERR_STATE, "%d built-in ops registered, %d listed",
                         tg_op_count(ctx), TGI_BUILTIN_COUNT);
    return TG_OK;
}

tg_ctx *tg_ctx_new_with_allocator(tg_alloc_fn alloc, void *user) {
    if (!alloc) return NULL;
    tg_ctx *ctx = alloc(user, NULL, 0, sizeof *ctx);
    if (!ctx) return NULL;
    tgi_ctx_init(ctx, alloc, user);
    tgi_ctx_live_add(ctx);
    if (register_builtins(ctx) != TG_OK) {
        tg_ctx_free(ctx);
        return NULL;
    }
    return ctx;
}

tg_ctx *tg_ctx_new(void) {
    return tg_ctx_new_with_allocator(default_alloc, NULL);
}

void tg_ctx_free(tg_ctx *ctx) {
    if (!ctx || !tgi_ctx_live_remove(ctx)) return; /* freed already */
    tgi_registry_release(ctx);
    tgi_plugins_release(ctx); /* after the registry: its ops may point into plugins */
    tgi_ctx_release(ctx);
    ctx->alloc(ctx->alloc_user, ctx, sizeof *ctx, 0);
}

tg_status tg_gradcheck(tg_ctx *ctx, int op_id, int example_index, const tg_gradcheck_opts *opts,
                       tg_gradcheck_result *result) {
    if (!ctx) return TG_ERR_INVALID;
    if (!result) return tgi_error(ctx, TG_ERR_INVALID, "gradcheck: result is NULL");
    const tgi_op *op = tgi_op_by_id(ctx, op_id);
    if (!op) return tgi_error(ctx, TG_ERR_NOT_FOUND, "gradcheck: no op with id %d", op_id);
    tg_gradcheck_opts defaults = tg_gradcheck_defaults();
    if (!opts) opts = &defaults;
    char what[TG_LABEL_MAX + 16];
    snprintf(what, sizeof what, "gradcheck '%s'", op->name);
    if (tgi_check_gradcheck_opts(ctx, what, opts) != TG_OK) return TG_ERR_INVALID;
    return tgi_gradcheck_op(ctx, op, example_index, opts, result);
}
