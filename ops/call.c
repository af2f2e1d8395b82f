/*
 * ops/call.c — calling any op by name with attributes by name, checked against its signature.
 */
#include "ops/ops.h"

#include <string.h>

/* Places each named attribute at its position in the signature, or says what is wrong. */
static tg_status order_attrs(tg_ctx *ctx, const tgi_op *op, const tg_named_attr *given,
                             int n_given, tg_attr_value *ordered) {
    bool seen[TG_MAX_ATTRS] = {false};
    for (int g = 0; g < n_given; g++) {
        const char *name = given[g].name ? given[g].name : "(null)";
        int k = 0;
        while (k < op->n_attrs && strcmp(op->attrs[k].name, name) != 0) k++;
        if (k == op->n_attrs)
            return tgi_error(ctx, TG_ERR_INVALID, "%s: no attribute '%s' (signature: %s)",
                             op->name, name, op->signature[0] ? op->signature : "none");
        if (seen[k])
            return tgi_error(ctx, TG_ERR_INVALID, "%s: attribute '%s' given twice", op->name, name);
        if (given[g].type != op->attrs[k].type)
            return tgi_error(ctx, TG_ERR_INVALID, "%s: attribute '%s' is %s, %s given", op->name,
                             name, tgi_attr_type_name(op->attrs[k].type),
                             (unsigned)given[g].type <= TG_ATTR_SHAPE ? tgi_attr_type_name(given[g].type)
                                                                      : "an unknown type");
        seen[k] = true;
        ordered[k] = given[g].value;
    }
    for (int k = 0; k < op->n_attrs; k++)
        if (!seen[k])
            return tgi_error(ctx, TG_ERR_INVALID, "%s: attribute '%s' (%s) missing (signature: %s)",
                             op->name, op->attrs[k].name, tgi_attr_type_name(op->attrs[k].type),
                             op->signature);
    return TG_OK;
}

tg_tensor *tg_call(tg_tape *tape, const char *op_name, tg_tensor *const *inputs, int n_inputs,
                   const tg_named_attr *attrs, int n_attrs) {
    if (!tape) return NULL;
    tg_ctx *ctx = tape->ctx;
    int id = tg_op_find(ctx, op_name);
    if (id < 0) {
        tgi_error(ctx, TG_ERR_NOT_FOUND, "call: no op named '%s'", op_name ? op_name : "(null)");
        return NULL;
    }
    const tgi_op *op = tgi_op_by_id(ctx, id);
    if (n_attrs < 0 || (n_attrs > 0 && !attrs)) {
        tgi_error(ctx, TG_ERR_INVALID, "%s: %d attributes from a NULL array", op->name, n_attrs);
        return NULL;
    }
    if (n_inputs > 0 && !inputs) {
        tgi_error(ctx, TG_ERR_INVALID, "%s: inputs array is NULL", op->name);
        return NULL;
    }
    tg_attr_value ordered[TG_MAX_ATTRS];
    if (order_attrs(ctx, op, attrs, n_attrs, ordered) != TG_OK) return NULL;
    return tgi_record(tape, op, inputs, n_inputs, ordered);
}
