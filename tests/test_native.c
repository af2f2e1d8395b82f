/* tests/test_native.c — native ops: plain C kernels registered with a signature and called
 * through libffi; calls by name with named attributes. */
#include "fixture.h"

TestSuite(native, .init = fixture_setup, .fini = fixture_teardown);

/* swish(x) = x * sigmoid(beta x) and its derivative, as a user would write them. */
static void swish_forward(const float *x, int64_t n, float *y, int64_t n_out, float beta) {
    (void)n_out;
    for (int64_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-beta * x[i]));
}

static void swish_backward(const float *x, int64_t n, const float *y, const float *dy,
                           int64_t n_out, float *dx, float beta) {
    (void)y, (void)n_out;
    if (!dx) return;
    for (int64_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-beta * x[i]));
        dx[i] += dy[i] * (s + beta * x[i] * s * (1.0f - s));
    }
}

/* Every attribute type at once: out = a*f32 + b*f64 + i32 + i64 (+100 when flag). */
static void mixed_forward(const float *a, int64_t na, const float *b, int64_t nb, float *out,
                          int64_t n, float f, double d, int32_t i, int64_t l, bool flag) {
    (void)nb, (void)na;
    for (int64_t k = 0; k < n; k++)
        out[k] = a[k] * f + (float)(b[k] * d) + (float)i + (float)l + (flag ? 100.0f : 0.0f);
}

static void mixed_backward(const float *a, int64_t na, const float *b, int64_t nb,
                           const float *out, const float *dout, int64_t n, float *da, float *db,
                           float f, double d, int32_t i, int64_t l, bool flag) {
    (void)a, (void)na, (void)b, (void)nb, (void)out, (void)i, (void)l, (void)flag;
    for (int64_t k = 0; k < n; k++) {
        if (da) da[k] += dout[k] * f;
        if (db) db[k] += dout[k] * (float)d;
    }
}

static const char *mixed_signature = "a, b -> out; f:f32, d:f64, i:i32, l:i64, flag:bool";

static int register_mixed(void) {
    tg_native_opts opts = {0};
    opts.example_attrs[0].f32 = 1.5f;
    opts.example_attrs[1].f64 = -0.25;
    opts.example_attrs[2].i32 = 3;
    opts.example_attrs[3].i64 = 7; /* small: a 5e9 offset would swamp the finite differences */
    opts.example_attrs[4].b = true;
    int id = tg_op_register_native(ctx, "mixed", mixed_signature, (tg_native_fn)mixed_forward,
                                   (tg_native_fn)mixed_backward, &opts);
    cr_assert_geq(id, 0, "%s", tg_errmsg(ctx));
    return id;
}

Test(native, every_attribute_type_reaches_the_kernel) {
    register_mixed();
    tg_tensor *in[2] = {tg_tape_from_data(tape, TG_SHAPE(2), (float[]){1, 2}),
                        tg_tape_from_data(tape, TG_SHAPE(2), (float[]){4, 8})};
    tg_named_attr attrs[5] = {TG_BOOL("flag", true), TG_I64("l", 5000000000LL), TG_F32("f", 1.5f),
                              TG_I32("i", -3), TG_F64("d", 0.25)};
    tg_tensor *y = tg_call(tape, "mixed", in, 2, attrs, 5);
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    /* 1*1.5 + 4*0.25 - 3 + 5e9 + 100, in float */
    expect_close(y->data, (float[]){5000000099.5f, 5000000102.0f}, 2, 1024.0f, "mixed");
    attrs[0] = TG_BOOL("flag", false);
    attrs[1] = TG_I64("l", 7);
    y = tg_call(tape, "mixed", in, 2, attrs, 5);
    expect_close(y->data, (float[]){6.5f, 9.0f}, 2, 1e-6f, "mixed, small l, no flag");
    tg_op_info info;
    tg_op_get_info(ctx, tg_op_find(ctx, "mixed"), &info);
    cr_expect_str_eq(info.attr_signature, "f:f32,d:f64,i:i32,l:i64,flag:bool");
    cr_expect_eq(info.arity, 2);
    cr_expect(info.native);
}

Test(native, native_gradients_pass_the_registry_wide_check) {
    tg_native_opts opts = {0};
    opts.example_attrs[0].f32 = 1.7f;
    int first = tg_op_count(ctx);
    cr_assert_geq(tg_op_register_native(ctx, "swish", "x -> y; beta:f32", (tg_native_fn)swish_forward,
                                        (tg_native_fn)swish_backward, &opts), 0, "%s", tg_errmsg(ctx));
    register_mixed();
    cr_expect_eq(check_registered_gradients(ctx, first), 2);
}

Test(native, recorded_and_differentiated_like_a_builtin) {
    tg_native_opts opts = {0};
    tg_op_register_native(ctx, "swish", "x -> y; beta:f32", (tg_native_fn)swish_forward,
                          (tg_native_fn)swish_backward, &opts);
    tg_tensor *w = leaf(ctx, TG_SHAPE(3), (float[]){-1, 0.5f, 2});
    tg_tensor *y = tg_call(tape, "swish", &w, 1, &TG_F32("beta", 1.0f), 1);
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    cr_expect_str_eq(tg_tensor_op_name(y), "swish");
    cr_expect_eq(tg_tape_entries(tape), 1);
    cr_assert_eq(tg_backward(tape, tg_sum(tape, y)), TG_OK);
    for (int i = 0; i < 3; i++) {
        float x = w->data[i], s = 1.0f / (1.0f + expf(-x));
        cr_expect_float_eq(w->grad[i], s + x * s * (1 - s), 1e-6f, "element %d", i);
    }
}

Test(native, calls_by_name_reject_bad_arity_and_attributes) {
    register_mixed();
    tg_tensor *a = tg_set_label(tg_tape_zeros(tape, TG_SHAPE(2)), "a");
    tg_tensor *in[2] = {a, a};
    tg_named_attr good[5] = {TG_F32("f", 1), TG_F64("d", 1), TG_I32("i", 1), TG_I64("l", 1), TG_BOOL("flag", 0)};
    cr_expect_null(tg_call(tape, "mixed", in, 1, good, 5));
    expect_errmsg_has(ctx, "mixed", "takes 2 inputs, 1 given");
    tg_clear_error(ctx);
    tg_named_attr wrong_type[5] = {TG_F64("f", 1), TG_F64("d", 1), TG_I32("i", 1), TG_I64("l", 1), TG_BOOL("flag", 0)};
    cr_expect_null(tg_call(tape, "mixed", in, 2, wrong_type, 5));
    expect_errmsg_has(ctx, "mixed: attribute 'f' is f32, f64 given");
    tg_clear_error(ctx);
    tg_named_attr unknown[1] = {TG_F32("gamma", 1)};
    cr_expect_null(tg_call(tape, "mixed", in, 2, unknown, 1));
    expect_errmsg_has(ctx, "mixed: no attribute 'gamma'", "f:f32,d:f64");
    tg_clear_error(ctx);
    cr_expect_null(tg_call(tape, "mixed", in, 2, good, 4));
    expect_errmsg_has(ctx, "mixed: attribute 'flag' (bool) missing");
    tg_clear_error(ctx);
    tg_named_attr twice[6] = {TG_F32("f", 1), TG_F64("d", 1), TG_I32("i", 1), TG_I64("l", 1), TG_BOOL("flag", 0), TG_F32("f", 2)};
    cr_expect_null(tg_call(tape, "mixed", in, 2, twice, 6));
    expect_errmsg_has(ctx, "mixed: attribute 'f' given twice");
    tg_clear_error(ctx);
    cr_expect_null(tg_call(tape, "no_such", in, 2, NULL, 0));
    expect_errmsg_has(ctx, "no op named 'no_such'");
    tg_clear_error(ctx);
    tg_tensor *other[2] = {a, tg_tape_zeros(tape, TG_SHAPE(3))};
    cr_expect_null(tg_call(tape, "mixed", other, 2, good, 5));
    expect_errmsg_has(ctx, "mixed", "'a' [2]", "[3]", "input 1's shape differs");
    tg_clear_error(ctx);
    /* built-ins by name too */
    tg_tensor *y = tg_call(tape, "leaky_relu", &a, 1, &TG_F32("alpha", 0.1f), 1);
    cr_expect_not_null(y, "%s", tg_errmsg(ctx));
    cr_expect_null(tg_call(tape, "leaky_relu", &a, 1, &TG_I32("alpha", 1), 1));
    expect_errmsg_has(ctx, "leaky_relu: attribute 'alpha' is f32, i32 given");
}

Test(native, malformed_native_signatures_are_refused) {
    struct {
        const char *signature, *reason;
    } cases[] = {
        {"x y", "expected \"inputs -> output\""},
        {"-> y", "expected an input name at offset 0"},
        {"x, -> y", "expected an input name at offset 3"},
        {"x ->", "expected the output name"},
        {"x -> y, z", "one output, then ';'"},
        {"x -> y; beta", "expected ':' after attribute 'beta'"},
        {"x -> y; s:shape", "native kernels take f32, f64, i32, i64 or bool"},
        {"x -> y; b:f32, b:f64", "attribute 'b' appears twice"},
        {"a,b,c,d,e,f,g,h,i -> y", "more than 8 inputs"},
        {"x; y -> z", "expected ',' or \"->\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tg_clear_error(ctx);
        int id = tg_op_register_native(ctx, "bad", cases[i].signature, (tg_native_fn)swish_forward,
                                       NULL, NULL);
        cr_expect_eq(id, -1, "\"%s\" accepted", cases[i].signature);
        cr_expect(strstr(tg_errmsg(ctx), cases[i].reason) != NULL, "\"%s\": %s", cases[i].signature,
                  tg_errmsg(ctx));
        cr_expect(strstr(tg_errmsg(ctx), "'bad'") != NULL, "%s", tg_errmsg(ctx));
    }
    cr_expect_eq(tg_op_find(ctx, "bad"), -1);
    tg_clear_error(ctx);
    cr_expect_eq(tg_op_register_native(ctx, "relu", "x -> y", (tg_native_fn)swish_forward, NULL, NULL), -1);
    expect_errmsg_has(ctx, "an op named 'relu' is already registered");
}

Test(native, a_native_op_without_backward_is_refused_only_when_grad_is_needed) {
    int id = tg_op_register_native(ctx, "swish_fwd", "x -> y; beta:f32", (tg_native_fn)swish_forward,
                                   NULL, NULL);
    cr_assert_geq(id, 0);
    tg_tensor *w = leaf(ctx, TG_SHAPE(2), (float[]){1, 2});
    cr_expect_null(tg_call(tape, "swish_fwd", &w, 1, &TG_F32("beta", 1), 1));
    cr_expect_eq(tg_errcode(ctx), TG_ERR_NOGRAD);
    tg_clear_error(ctx);
    tg_no_grad_begin(tape);
    cr_expect_not_null(tg_call(tape, "swish_fwd", &w, 1, &TG_F32("beta", 1), 1));
    tg_no_grad_end(tape);
}
