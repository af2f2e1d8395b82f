/* tests/test_registry.c — registering, finding and listing ops; signatures; ops without backward. */
#include "helpers.h"

/* y = floor(x): piecewise constant, so no backward is registered. */
static tg_status floor_forward(tg_op_call *call) {
    for (int64_t i = 0; i < call->output->size; i++)
        call->output->data[i] = floorf(call->inputs[0]->data[i]);
    return TG_OK;
}

static tg_op_def floor_def(const char *name, const char *signature) {
    tg_op_def def = {name, 1, signature, infer_like_first_input, floor_forward, NULL, NULL, NULL, NULL};
    return def;
}

Test(registry, builtins_are_listed_with_their_signatures) {
    tg_ctx *ctx = tg_ctx_new();
    const char *expected[] = {"add", "sub", "mul", "div", "neg", "scale", "add_scalar", "pow",
                              "square", "sqrt", "exp", "log", "abs", "matmul", "linear",
                              "transpose", "reshape", "concat", "slice", "sum", "mean", "sum_axis",
                              "mean_axis", "sigmoid", "tanh", "relu", "leaky_relu", "elu",
                              "softplus", "gelu", "softmax", "log_softmax", "mse", "cross_entropy",
                              "bce_with_logits", "dropout", "batch_norm", "batch_norm_relu",
                              "layer_norm", "conv2d", "conv1d", "max_pool2d", "avg_pool2d",
                              "global_avg_pool2d", "rnn_cell", "lstm_gates", "lstm_cell",
                              "lstm_hidden", "gru_cell", "embedding", "masked_fill", "max_axis",
                              "argmax_axis", "permute", "clamp", "sin", "cos", "softmax_axis",
                              "log_softmax_axis", "attention", "attention_qkv", "unary_derivative",
                              "select_class", "max_axis_select", "max_pool2d_tangent",
                              "gates_tangent", "lstm_cell_tangent", "lstm_hidden_tangent"};
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
        cr_expect_geq(tg_op_find(ctx, expected[i]), 0, "op '%s' missing", expected[i]);
    cr_expect_eq(tg_op_count(ctx), (int)(sizeof expected / sizeof expected[0]));
    tg_op_info info;
    cr_assert_eq(tg_op_get_info(ctx, tg_op_find(ctx, "sum_axis"), &info), TG_OK);
    cr_expect_str_eq(info.name, "sum_axis");
    cr_expect_eq(info.arity, 1);
    cr_expect_str_eq(info.attr_signature, "axis:i64,keepdim:bool");
    cr_expect_eq(info.n_attrs, 2);
    cr_expect_str_eq(info.attr_names[1], "keepdim");
    cr_expect_eq(info.attr_types[1], TG_ATTR_BOOL);
    cr_expect(info.has_backward);
    cr_assert_eq(tg_op_get_info(ctx, tg_op_find(ctx, "concat"), &info), TG_OK);
    cr_expect_eq(info.arity, TG_VARIADIC);
    cr_expect_eq(tg_op_find(ctx, "no_such_op"), -1);
    cr_expect_eq(tg_op_get_info(ctx, 1000, &info), TG_ERR_NOT_FOUND);
    tg_ctx_free(ctx);
}

Test(registry, user_op_is_registered_found_and_called) {
    tg_ctx *ctx = tg_ctx_new();
    tg_op_def def = floor_def("floor", "  ");
    int id = tg_op_register(ctx, &def);
    cr_assert_geq(id, 0, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_op_find(ctx, "floor"), id);
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(2), (float[]){1.5f, -0.5f});
    tg_tensor *y = tg_call_id(tape, id, &x, 1, NULL, 0);
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    expect_close(y->data, (float[]){1, -1}, 2, 0, "floor");
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

Test(registry, many_ops_grow_the_table_and_stay_findable) {
    tg_ctx *ctx = tg_ctx_new();
    char name[32];
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "user_op_%d", i);
        tg_op_def def = floor_def(name, "");
        cr_assert_geq(tg_op_register(ctx, &def), 0, "%s", tg_errmsg(ctx));
    }
    for (int i = 0; i < 300; i += 37) {
        snprintf(name, sizeof name, "user_op_%d", i);
        tg_op_info info;
        int id = tg_op_find(ctx, name);
        cr_assert_geq(id, 0, "%s lost", name);
        tg_op_get_info(ctx, id, &info);
        cr_expect_str_eq(info.name, name);
    }
    cr_expect_geq(tg_op_find(ctx, "matmul"), 0);
    tg_ctx_free(ctx);
}

Test(registry, duplicates_and_bad_names_are_refused) {
    tg_ctx *ctx = tg_ctx_new();
    tg_op_def def = floor_def("relu", "");
    cr_expect_eq(tg_op_register(ctx, &def), -1);
    cr_expect_str_eq(tg_errmsg(ctx), "op_register: an op named 'relu' is already registered");
    const char *bad_names[] = {"", "9lives", "has space", "semi;colon"};
    for (size_t i = 0; i < 4; i++) {
        tg_clear_error(ctx);
        def = floor_def(bad_names[i], "");
        cr_expect_eq(tg_op_register(ctx, &def), -1, "name '%s' accepted", bad_names[i]);
        cr_expect(strstr(tg_errmsg(ctx), "invalid op name") != NULL, "%s", tg_errmsg(ctx));
    }
    tg_clear_error(ctx);
    def = floor_def("no_forward", "");
    def.forward = NULL;
    cr_expect_eq(tg_op_register(ctx, &def), -1);
    expect_errmsg_has(ctx, "'no_forward'", "infer_shape and forward are required");
    tg_ctx_free(ctx);
}

Test(registry, signatures_are_parsed_and_normalised) {
    tg_ctx *ctx = tg_ctx_new();
    tg_op_def def = floor_def("typed", " alpha : f32 , beta:f64,n:i32, big:i64,flag:bool,dims:shape ");
    int id = tg_op_register(ctx, &def);
    cr_assert_geq(id, 0, "%s", tg_errmsg(ctx));
    tg_op_info info;
    tg_op_get_info(ctx, id, &info);
    cr_expect_str_eq(info.attr_signature, "alpha:f32,beta:f64,n:i32,big:i64,flag:bool,dims:shape");
    tg_attr_type types[] = {TG_ATTR_F32, TG_ATTR_F64, TG_ATTR_I32, TG_ATTR_I64, TG_ATTR_BOOL, TG_ATTR_SHAPE};
    cr_assert_eq(info.n_attrs, 6);
    for (int k = 0; k < 6; k++) cr_expect_eq(info.attr_types[k], types[k], "attribute %d", k);
    tg_ctx_free(ctx);
}

Test(registry, malformed_signatures_are_refused_with_a_reason) {
    struct {
        const char *signature, *reason;
    } cases[] = {
        {"alpha", "expected ':' after attribute 'alpha'"},
        {"alpha:f16", "attribute 'alpha' has an unknown type"},
        {"alpha:f32,", "expected an attribute name at offset 10"},
        {"alpha:f32;beta:f32", "expected ',' or the end"},
        {"Alpha:f32", "expected an attribute name"},
        {"a:f32,a:i64", "attribute 'a' appears twice"},
        {":f32", "expected an attribute name at offset 0"},
        {"a:f32 b:f32", "expected ',' or the end"},
        {"a:f32x", "unknown type"},
        {"a:f32,b:f32,c:f32,d:f32,e:f32,f:f32,g:f32,h:f32,i:f32", "more than 8 attributes"},
        {"a_very_long_attribute_name_that_goes_on:f32", "longer than 31 characters"},
    };
    tg_ctx *ctx = tg_ctx_new();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tg_clear_error(ctx);
        tg_op_def def = floor_def("sig_test", cases[i].signature);
        cr_expect_eq(tg_op_register(ctx, &def), -1, "\"%s\" accepted", cases[i].signature);
        cr_expect(strstr(tg_errmsg(ctx), cases[i].reason) != NULL, "\"%s\": message \"%s\"",
                  cases[i].signature, tg_errmsg(ctx));
        cr_expect(strstr(tg_errmsg(ctx), "sig_test") != NULL);
    }
    cr_expect_eq(tg_op_find(ctx, "sig_test"), -1, "a refused op must not be half-registered");
    tg_ctx_free(ctx);
}

Test(registry, op_without_backward_is_refused_at_record_time_only_when_grad_is_needed) {
    tg_ctx *ctx = tg_ctx_new();
    tg_op_def def = floor_def("floor", "");
    int id = tg_op_register(ctx, &def);
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *w = tg_set_label(tg_ones(ctx, TG_SHAPE(3)), "w");
    tg_set_requires_grad(w, true);
    cr_expect_null(tg_call_id(tape, id, &w, 1, NULL, 0));
    cr_expect_eq(tg_errcode(ctx), TG_ERR_NOGRAD);
    expect_errmsg_has(ctx, "floor", "'w' [3]", "no backward");
    cr_expect_eq(tg_tape_entries(tape), 0);
    tg_clear_error(ctx);
    tg_tensor *c = tg_tape_zeros(tape, TG_SHAPE(3));
    cr_expect_not_null(tg_call_id(tape, id, &c, 1, NULL, 0), "no grad needed: %s", tg_errmsg(ctx));
    tg_no_grad_begin(tape);
    cr_expect_not_null(tg_call_id(tape, id, &w, 1, NULL, 0), "under no_grad: %s", tg_errmsg(ctx));
    tg_no_grad_end(tape);
    tg_gradcheck_result result;
    cr_expect_eq(tg_gradcheck(ctx, id, 0, NULL, &result), TG_ERR_NOT_FOUND);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}
