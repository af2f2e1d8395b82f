/*
 * tests/test_higher.c — forward mode, Hessian-vector products and double backward: every op
 * with a JVP rule passes the second-order check, the products of a whole model match finite
 * differences of its gradients, a gradient penalty trains, and an HVP every step allocates
 * nothing once the tape has grown.
 */
#include "helpers.h"

#include <math.h>

Test(higher, every_op_with_a_jvp_rule_passes_the_second_order_check) {
    tg_ctx *c = tg_ctx_new();
    tg_gradcheck_opts opts = tg_gradcheck_defaults();
    opts.order = 2;
    int ruled = 0;
    for (int id = 0; id < tg_op_count(c); id++) {
        tg_op_info info;
        cr_assert_eq(tg_op_get_info(c, id, &info), TG_OK);
        if (!info.has_jvp || !info.has_example) continue;
        ruled++;
        for (int example = 0;; example++) {
            tg_gradcheck_result r;
            tg_status status = tg_gradcheck(c, id, example, &opts, &r);
            if (status == TG_ERR_NOT_FOUND) break;
            cr_expect_eq(status, TG_OK, "%s example %d: %s", info.name, example, tg_errmsg(c));
            cr_expect(r.passed && r.n_checked > 0, "%s example %d: %s input %d element %lld: "
                      "analytic %.6g numeric %.6g", info.name, example,
                      r.worst_check ? r.worst_check : "?", r.worst_input,
                      (long long)r.worst_index, r.worst_analytic, r.worst_numeric);
            tg_clear_error(c);
        }
    }
    cr_expect_geq(ruled, 40, "only %d ops have a JVP rule", ruled);
    tg_ctx_free(c);
}

/* ---- a check that can fail ------------------------------------------------------------------ */

static tg_status cube_forward(tg_op_call *call) {
    for (int64_t i = 0; i < call->output->size; i++) {
        float x = call->inputs[0]->data[i];
        call->output->data[i] = x * x * x;
    }
    return TG_OK;
}

static tg_status cube_backward(const tg_op_call *call) {
    for (int64_t i = 0; i < call->output->size; i++) {
        float x = call->inputs[0]->data[i];
        call->inputs[0]->grad[i] += call->output->grad[i] * 3.0f * x * x;
    }
    return TG_OK;
}

/* d(x^3) = 3 x^2 dx; this rule says 2 x^2 dx (the first-order check cannot see it) */
static tg_status cube_jvp_wrong(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    tg_tape *tape = call->tape;
    tg_tensor *x = call->inputs[0];
    *out = tg_scale(tape, tg_mul(tape, tg_mul(tape, x, x), t[0]), 2.0f);
    return *out ? TG_OK : tg_errcode(tg_tape_ctx(tape));
}

static tg_status cube_jvp(const tg_op_call *call, tg_tensor *const *t, tg_tensor **out) {
    tg_tape *tape = call->tape;
    tg_tensor *x = call->inputs[0];
    *out = tg_scale(tape, tg_mul(tape, tg_mul(tape, x, x), t[0]), 3.0f);
    return *out ? TG_OK : tg_errcode(tg_tape_ctx(tape));
}

static tg_status cube_example(tg_tape *tape, void *op_data, int index, tg_tensor **inputs,
                              int *n_inputs, tg_attr_value *attrs) {
    (void)op_data, (void)attrs;
    if (index > 0) return TG_ERR_NOT_FOUND;
    inputs[0] = tg_tape_zeros(tape, TG_SHAPE(2, 3));
    tg_fill_uniform(inputs[0], -1.5f, 1.5f, 5);
    tg_set_requires_grad(inputs[0], true);
    *n_inputs = 1;
    return TG_OK;
}

static int register_cube(tg_ctx *c, const char *name, tg_jvp_fn jvp) {
    tg_op_def def = {name, 1, "", infer_like_first_input, cube_forward, cube_backward,
                     cube_example, NULL, jvp};
    int id = tg_op_register(c, &def);
    cr_assert_geq(id, 0, "%s", tg_errmsg(c));
    return id;
}

Test(higher, a_wrong_jvp_rule_is_caught_and_a_right_one_passes) {
    tg_ctx *c = tg_ctx_new();
    int wrong = register_cube(c, "cube_wrong", cube_jvp_wrong);
    int right = register_cube(c, "cube", cube_jvp);
    tg_gradcheck_opts opts = tg_gradcheck_defaults();
    opts.order = 2;
    tg_gradcheck_result r;
    cr_assert_eq(tg_gradcheck(c, wrong, 0, NULL, &r), TG_OK);
    cr_expect(r.passed, "first order alone cannot see a wrong JVP");
    cr_assert_eq(tg_gradcheck(c, wrong, 0, &opts, &r), TG_OK, "%s", tg_errmsg(c));
    cr_expect_not(r.passed, "a JVP off by a factor 2/3 passed");
    cr_expect_gt(r.max_rel_err, 0.2);
    cr_assert_eq(tg_gradcheck(c, right, 0, &opts, &r), TG_OK, "%s", tg_errmsg(c));
    cr_expect(r.passed, "%s element %lld: %g vs %g", r.worst_check, (long long)r.worst_index,
              r.worst_analytic, r.worst_numeric);
    tg_ctx_free(c);
}

Test(higher, an_op_without_a_jvp_rule_is_refused_by_name) {
    tg_ctx *c = tg_ctx_new();
    tg_op_def def = {"cube_first_order", 1, "", infer_like_first_input, cube_forward,
                     cube_backward, cube_example, NULL, NULL};
    cr_assert_geq(tg_op_register(c, &def), 0);
    tg_tape *tape = tg_tape_new(c);
    tg_tensor *x = leaf(c, TG_SHAPE(3), (float[]){1, 2, 3});
    tg_tensor *y = tg_sum(tape, tg_call(tape, "cube_first_order", &x, 1, NULL, 0));
    cr_assert_not_null(y, "%s", tg_errmsg(c));
    tg_tensor *v = tg_tape_from_data(tape, TG_SHAPE(3), (float[]){1, 0, 0}), *out = NULL;
    cr_expect_eq(tg_jvp(tape, y, 1, &x, &v, &out), TG_ERR_NOGRAD);
    expect_errmsg_has(c, "cube_first_order", "JVP");
    tg_clear_error(c);
    float hv[3];
    cr_expect_eq(tg_hvp(tape, y, 1, &x, (const float *[]){(float[]){1, 0, 0}}, (float *[]){hv}),
                 TG_ERR_NOGRAD);
    tg_clear_error(c);
    tg_tensor *g;
    cr_expect_eq(tg_grad(tape, y, 1, &x, &g), TG_ERR_NOGRAD);
    expect_errmsg_has(c, "cube_first_order");
    tg_tape_free(tape);
    tg_ctx_free(c);
}

/* ---- a whole model --------------------------------------------------------------------------- */

typedef struct model {
    tg_ctx *ctx;
    tg_module *mlp;
    tg_tensor *params[16];
    int n;
    tg_tensor *x, *labels;
} model;

static model small_mlp(tg_activation act, int depth) {
    model m = {0};
    m.ctx = tg_ctx_new();
    tg_mlp_config cfg = {.in = 5, .out = 3, .width = 6, .depth = depth, .activation = act,
                         .seed = 7};
    m.mlp = tg_mlp_new(m.ctx, "mlp", &cfg);
    cr_assert_not_null(m.mlp, "%s", tg_errmsg(m.ctx));
    m.n = tg_module_params(m.mlp, m.params, 16);
    cr_assert(m.n > 0 && m.n <= 16);
    m.x = tg_zeros(m.ctx, TG_SHAPE(4, 5));
    tg_fill_normal(m.x, 0.0f, 1.0f, 3);
    m.labels = tg_from_data(m.ctx, TG_SHAPE(4), (float[]){0, 2, 1, 2});
    return m;
}

static tg_tensor *mlp_loss(model *m, tg_tape *tape) {
    return tg_cross_entropy(tape, tg_module_forward(m->mlp, tape, m->x), m->labels);
}

/* The gradients at the parameters moved by step * v, from a first-order backward. */
static void gradients_at(model *m, float *const *v, double step, float **out) {
    tg_tape *tape = tg_tape_new(m->ctx);
    for (int p = 0; p < m->n; p++)
        for (int64_t i = 0; i < m->params[p]->size; i++)
            m->params[p]->data[i] += (float)(step * v[p][i]);
    for (int p = 0; p < m->n; p++) tg_zero_grad(m->params[p]);
    cr_assert_eq(tg_backward(tape, mlp_loss(m, tape)), TG_OK, "%s", tg_errmsg(m->ctx));
    for (int p = 0; p < m->n; p++) {
        memcpy(out[p], m->params[p]->grad, (size_t)m->params[p]->size * sizeof(float));
        for (int64_t i = 0; i < m->params[p]->size; i++)
            m->params[p]->data[i] -= (float)(step * v[p][i]);
    }
    tg_tape_free(tape);
}

static void expect_hvp_matches_differences(tg_activation act, int depth) {
    model m = small_mlp(act, depth);
    float *v[16], *hv[16], *plus[16], *minus[16];
    for (int p = 0; p < m.n; p++) {
        size_t bytes = (size_t)m.params[p]->size * sizeof(float);
        v[p] = malloc(bytes), hv[p] = malloc(bytes), plus[p] = malloc(bytes), minus[p] = malloc(bytes);
        tg_rng rng;
        tg_rng_seed(&rng, 11 + (uint64_t)p);
        for (int64_t i = 0; i < m.params[p]->size; i++) v[p][i] = tg_rng_uniform(&rng) * 2 - 1;
    }
    tg_tape *tape = tg_tape_new(m.ctx);
    tg_tensor *loss = mlp_loss(&m, tape);
    cr_assert_eq(tg_hvp(tape, loss, m.n, m.params, (const float *const *)v, hv), TG_OK, "%s",
                 tg_errmsg(m.ctx));
    const double eps = 1e-2;
    gradients_at(&m, v, eps, plus);
    gradients_at(&m, v, -eps, minus);
    double worst = 0.0, norm = 0.0;
    for (int p = 0; p < m.n; p++)
        for (int64_t i = 0; i < m.params[p]->size; i++) {
            double numeric = ((double)plus[p][i] - minus[p][i]) / (2 * eps);
            worst = fmax(worst, fabs(hv[p][i] - numeric));
            norm = fmax(norm, fabs(numeric));
        }
    cr_expect_gt(norm, 1e-2, "the Hessian product is ~0: the check would be vacuous");
    cr_expect_lt(worst, 2e-3 + 1e-2 * norm, "max |Hv - differences| %.3g (max |Hv| %.3g)", worst, norm);
    for (int p = 0; p < m.n; p++) free(v[p]), free(hv[p]), free(plus[p]), free(minus[p]);
    tg_tape_free(tape);
    tg_ctx_free(m.ctx);
}

Test(higher, hvp_of_an_mlp_matches_differences_of_its_gradients) {
    expect_hvp_matches_differences(TG_ACT_TANH, 3);
    expect_hvp_matches_differences(TG_ACT_GELU, 2);
    expect_hvp_matches_differences(TG_ACT_RELU, 3);
}

/* tg_vjp is the backward pass into the caller's arrays; params keep their own gradients. */
Test(higher, vjp_and_jvp_agree_with_backward_and_with_each_other) {
    model m = small_mlp(TG_ACT_TANH, 2);
    tg_tape *tape = tg_tape_new(m.ctx);
    tg_set_requires_grad(m.x, true);
    tg_tensor *y = tg_module_forward(m.mlp, tape, m.x);
    float u[12], gx[20], kept = 0.5f;
    for (int i = 0; i < 12; i++) u[i] = (float)(i % 5) - 2.0f;
    for (int p = 0; p < m.n; p++)
        for (int64_t i = 0; i < m.params[p]->size; i++) m.params[p]->grad[i] = kept;
    cr_assert_eq(tg_vjp(tape, y, u, 1, &m.x, (float *[]){gx}), TG_OK, "%s", tg_errmsg(m.ctx));
    /* <u, J t> = <J^T u, t> for any tangent t: forward and reverse mode agree */
    tg_tape *again = tg_tape_new(m.ctx);
    y = tg_module_forward(m.mlp, again, m.x);
    float t_values[20];
    for (int i = 0; i < 20; i++) t_values[i] = (float)((i * 7) % 9) / 9.0f - 0.4f;
    tg_tensor *t = tg_tape_from_data(again, TG_SHAPE(4, 5), t_values), *jt = NULL;
    cr_assert_eq(tg_jvp(again, y, 1, &m.x, &t, &jt), TG_OK, "%s", tg_errmsg(m.ctx));
    double left = 0, right = 0;
    for (int i = 0; i < 12; i++) left += (double)u[i] * jt->data[i];
    for (int i = 0; i < 20; i++) right += (double)gx[i] * t_values[i];
    cr_expect(fabs(left - right) < 1e-4 * (1 + fabs(left)), "<u, Jt> %.7g != <J^T u, t> %.7g", left, right);
    for (int p = 0; p < m.n; p++)
        cr_expect_eq(m.params[p]->grad[0], kept, "tg_vjp changed a parameter's grad");
    tg_tape_free(tape);
    tg_tape_free(again);
    tg_ctx_free(m.ctx);
}

/* ---- double backward ----------------------------------------------------------------------- */

/* loss = CE(mlp(x)) + 0.5 |d CE / d x|^2: a gradient penalty, differentiated end to end. */
static tg_tensor *penalised(tg_tape *tape, tg_tensor *const *inputs, int n, void *user) {
    (void)inputs, (void)n;
    model *m = user;
    tg_tensor *loss = mlp_loss(m, tape), *gx = NULL;
    if (!loss || tg_grad(tape, loss, 1, &m->x, &gx) != TG_OK) return NULL;
    return tg_add(tape, loss, tg_scale(tape, tg_sum(tape, tg_square(tape, gx)), 0.5f));
}

Test(higher, a_gradient_penalty_matches_finite_differences_and_trains) {
    model m = small_mlp(TG_ACT_TANH, 3);
    tg_set_requires_grad(m.x, true);
    tg_gradcheck_opts opts = tg_gradcheck_defaults();
    tg_gradcheck_result r;
    cr_assert_eq(tg_gradcheck_function(m.ctx, penalised, &m, m.params, m.n, &opts, &r), TG_OK,
                 "%s", tg_errmsg(m.ctx));
    cr_expect(r.passed, "input %d element %lld: %g vs %g", r.worst_input, (long long)r.worst_index,
              r.worst_analytic, r.worst_numeric);
    /* and plain SGD on it lowers the penalised loss */
    tg_tape *tape = tg_tape_new(m.ctx);
    float first = 0, last = 0;
    for (int step = 0; step < 30; step++) {
        tg_tape_reset(tape);
        for (int p = 0; p < m.n; p++) tg_zero_grad(m.params[p]);
        tg_tensor *loss = penalised(tape, NULL, 0, &m);
        cr_assert_not_null(loss, "%s", tg_errmsg(m.ctx));
        if (step == 0) first = loss->data[0];
        last = loss->data[0];
        cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(m.ctx));
        for (int p = 0; p < m.n; p++)
            for (int64_t i = 0; i < m.params[p]->size; i++)
                m.params[p]->data[i] -= 0.2f * m.params[p]->grad[i];
    }
    cr_expect_lt(last, 0.8f * first, "penalised loss %g -> %g", first, last);
    tg_tape_free(tape);
    tg_ctx_free(m.ctx);
}

/* ---- memory and threads --------------------------------------------------------------------- */

static void hvp_step(model *m, tg_tape *tape, const float *const *v, float *const *hv) {
    tg_tape_reset(tape);
    tg_tensor *loss = mlp_loss(m, tape);
    cr_assert_eq(tg_hvp(tape, loss, m->n, m->params, v, hv), TG_OK, "%s", tg_errmsg(m->ctx));
}

Test(higher, an_hvp_every_step_allocates_nothing_after_the_first) {
    tally count = {.fail_at = -1};
    model m = {0};
    m.ctx = tg_ctx_new_with_allocator(tally_alloc, &count);
    tg_mlp_config cfg = {.in = 5, .out = 3, .width = 6, .depth = 3, .activation = TG_ACT_TANH, .seed = 7};
    m.mlp = tg_mlp_new(m.ctx, "mlp", &cfg);
    m.n = tg_module_params(m.mlp, m.params, 16);
    m.x = tg_zeros(m.ctx, TG_SHAPE(4, 5));
    tg_fill_normal(m.x, 0, 1, 3);
    m.labels = tg_from_data(m.ctx, TG_SHAPE(4), (float[]){0, 2, 1, 2});
    static float v_room[16][64], hv_room[16][64];
    const float *v[16];
    float *hv[16];
    for (int p = 0; p < m.n; p++) {
        cr_assert_leq(m.params[p]->size, 64);
        for (int i = 0; i < 64; i++) v_room[p][i] = (float)(i % 3) - 1.0f;
        v[p] = v_room[p], hv[p] = hv_room[p];
    }
    tg_tape *tape = tg_tape_new(m.ctx);
    hvp_step(&m, tape, v, hv);
    hvp_step(&m, tape, v, hv);
    long after_warmup = count.allocations;
    for (int step = 0; step < 10; step++) hvp_step(&m, tape, v, hv);
    cr_expect_eq(count.allocations, after_warmup, "%ld allocations in 10 HVP steps",
                 count.allocations - after_warmup);
    tg_tape_free(tape);
    tg_module_free(m.mlp);
    tg_ctx_free(m.ctx);
    cr_expect_eq(count.live_bytes, 0);
}

Test(higher, hvp_is_the_same_at_one_and_two_threads) {
    float results[2][64 * 64];
    for (int run = 0; run < 2; run++) {
        tg_ctx *c = tg_ctx_new();
        tg_ctx_set_threads(c, run + 1);
        tg_mlp_config cfg = {.in = 64, .out = 10, .width = 64, .depth = 3,
                             .activation = TG_ACT_GELU, .seed = 3};
        tg_module *mlp = tg_mlp_new(c, "mlp", &cfg);
        tg_tensor *params[8];
        int n = tg_module_params(mlp, params, 8);
        tg_tensor *x = tg_zeros(c, TG_SHAPE(256, 64)), *labels = tg_zeros(c, TG_SHAPE(256));
        tg_fill_normal(x, 0, 1, 9);
        for (int i = 0; i < 256; i++) labels->data[i] = (float)(i % 10);
        tg_tape *tape = tg_tape_new(c);
        tg_tensor *loss = tg_cross_entropy(tape, tg_module_forward(mlp, tape, x), labels);
        static float v_room[8][64 * 64], hv_room[8][64 * 64];
        const float *v[8];
        float *hv[8];
        for (int p = 0; p < n; p++) {
            for (int64_t i = 0; i < params[p]->size; i++) v_room[p][i] = (float)(i % 7) / 7.0f;
            v[p] = v_room[p], hv[p] = hv_room[p];
        }
        cr_assert_eq(tg_hvp(tape, loss, n, params, v, hv), TG_OK, "%s", tg_errmsg(c));
        memcpy(results[run], hv_room[2], sizeof results[run]); /* the middle layer's weight */
        tg_tape_free(tape);
        tg_ctx_free(c);
    }
    cr_expect(memcmp(results[0], results[1], sizeof results[0]) == 0,
              "H v differs between one and two threads");
}

/* ---- the built-in models end to end (what `tapegrad gradcheck --order 2` prints) ------------- */

#include "cli/model_check.h"

Test(higher, every_built_in_model_passes_the_second_order_check_end_to_end) {
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    cr_assert_not_null(out);
    int failures = tgc_check_models(2, out);
    fclose(out);
    cr_expect_eq(failures, 0, "%s", text);
    cr_expect(strstr(text, "gpt") && strstr(text, "lstm + head"), "models missing:\n%s", text);
    free(text);
}

/* ---- coverage, and ops from outside ------------------------------------------------------- */

Test(higher, every_differentiable_built_in_op_has_a_jvp_rule) {
    tg_ctx *c = tg_ctx_new();
    for (int id = 0; id < tg_op_count(c); id++) {
        tg_op_info info;
        cr_assert_eq(tg_op_get_info(c, id, &info), TG_OK);
        cr_expect(!info.has_backward || info.has_jvp, "built-in op '%s' has no JVP rule", info.name);
    }
    tg_ctx_free(c);
}

/* A native op: y = x^3 by plain C kernels through libffi, its JVP rule written with ops. */
static void native_cube_forward(const float *x, int64_t n, float *y, int64_t n_out) {
    (void)n_out;
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * x[i] * x[i];
}

static void native_cube_backward(const float *x, int64_t n, const float *y, const float *dy,
                                 int64_t n_out, float *dx) {
    (void)y, (void)n_out;
    for (int64_t i = 0; dx && i < n; i++) dx[i] += dy[i] * 3.0f * x[i] * x[i];
}

Test(higher, a_native_op_with_a_jvp_rule_has_second_derivatives) {
    tg_ctx *c = tg_ctx_new();
    tg_native_opts opts = {.jvp = cube_jvp};
    int id = tg_op_register_native(c, "native_cube", "x -> y", (tg_native_fn)native_cube_forward,
                                   (tg_native_fn)native_cube_backward, &opts);
    cr_assert_geq(id, 0, "%s", tg_errmsg(c));
    tg_op_info info;
    tg_op_get_info(c, id, &info);
    cr_expect(info.has_jvp);
    tg_gradcheck_opts order2 = tg_gradcheck_defaults();
    order2.order = 2;
    tg_gradcheck_result r;
    cr_assert_eq(tg_gradcheck(c, id, 0, &order2, &r), TG_OK, "%s", tg_errmsg(c));
    cr_expect(r.passed, "%s: %g vs %g", r.worst_check, r.worst_analytic, r.worst_numeric);
    /* d^2 sum(x^3) / dx^2 = diag(6 x) */
    tg_tape *tape = tg_tape_new(c);
    tg_tensor *x = leaf(c, TG_SHAPE(3), (float[]){1, -2, 0.5f});
    tg_tensor *loss = tg_sum(tape, tg_call(tape, "native_cube", &x, 1, NULL, 0));
    float hv[3];
    cr_assert_eq(tg_hvp(tape, loss, 1, &x, (const float *[]){(float[]){1, 1, 1}}, (float *[]){hv}),
                 TG_OK, "%s", tg_errmsg(c));
    cr_expect_float_eq(hv[0], 6.0f, 1e-5);
    cr_expect_float_eq(hv[1], -12.0f, 1e-5);
    cr_expect_float_eq(hv[2], 3.0f, 1e-5);
    tg_tape_free(tape);
    tg_ctx_free(c);
}

/* ---- hooks, and calls of many inputs ---------------------------------------------------------- */

static tg_status clip_to_zero(tg_ctx *c, const tg_hook_event *e, void *user) {
    (void)c;
    (*(int *)user)++;
    for (int64_t i = 0; i < e->size; i++) e->values[i] = 0.0f;
    return TG_OK;
}

/* H v is curvature, not a gradient: a hook that zeroes gradients neither sees nor changes it. */
Test(higher, backward_hooks_do_not_touch_a_hessian_product) {
    tg_ctx *c = tg_ctx_new();
    tg_tape *tape = tg_tape_new(c);
    tg_tensor *w = leaf(c, TG_SHAPE(3), (float[]){1, 2, 3});
    tg_set_label(w, "w");
    int calls = 0;
    cr_assert_gt(tg_hook_global(c, TG_PASS_BACKWARD, clip_to_zero, &calls), 0);
    /* loss = sum(w^3): H = diag(6 w) */
    tg_tensor *loss = tg_sum(tape, tg_mul(tape, tg_square(tape, w), w));
    float hv[3];
    cr_assert_eq(tg_hvp(tape, loss, 1, &w, (const float *[]){(float[]){1, 1, 1}}, (float *[]){hv}),
                 TG_OK, "%s", tg_errmsg(c));
    cr_expect_eq(calls, 0, "a backward hook ran %d times during tg_hvp", calls);
    for (int i = 0; i < 3; i++) cr_expect_float_eq(hv[i], 6.0f * (float)(i + 1), 1e-5);
    tg_tape_free(tape);
    tg_ctx_free(c);
}

/* A call of more inputs than the small arrays hold: concat of 20 tensors, differentiated twice.
 * loss = sum(x^2) over all; g = 2x; penalty = sum(g^2) = 4 sum(x^2), whose gradient is 8x. */
Test(higher, double_backward_through_a_call_of_many_inputs) {
    enum { PARTS = 20 };
    tg_ctx *c = tg_ctx_new();
    tg_tape *tape = tg_tape_new(c);
    tg_tensor *parts[PARTS], *grads[PARTS];
    for (int i = 0; i < PARTS; i++) parts[i] = leaf(c, TG_SHAPE(2), (float[]){(float)i, -0.5f * (float)i});
    tg_tensor *all = tg_concat(tape, parts, PARTS, 0);
    tg_tensor *loss = tg_sum(tape, tg_square(tape, all));
    cr_assert_eq(tg_grad(tape, loss, PARTS, parts, grads), TG_OK, "%s", tg_errmsg(c));
    tg_tensor *penalty = NULL;
    for (int i = 0; i < PARTS; i++) {
        cr_expect_float_eq(grads[i]->data[1], -1.0f * (float)i, 1e-5);
        tg_tensor *term = tg_sum(tape, tg_square(tape, grads[i]));
        penalty = penalty ? tg_add(tape, penalty, term) : term;
    }
    cr_assert_eq(tg_backward(tape, penalty), TG_OK, "%s", tg_errmsg(c));
    for (int i = 0; i < PARTS; i++) {
        cr_expect_float_eq(parts[i]->grad[0], 8.0f * (float)i, 1e-4);
        cr_expect_float_eq(parts[i]->grad[1], -4.0f * (float)i, 1e-4);
    }
    tg_tape_free(tape);
    tg_ctx_free(c);
}

/* After tg_hvp the step replays as recorded (the product, whose direction was the caller's
 * array, is not part of it), and its gradient is the one a fresh recording gives. */
Test(higher, a_step_replays_after_a_hessian_product) {
    model m = small_mlp(TG_ACT_TANH, 3);
    tg_tape *tape = tg_tape_new(m.ctx);
    tg_tensor *loss = mlp_loss(&m, tape);
    float *v[16], *hv[16];
    for (int p = 0; p < m.n; p++) {
        v[p] = calloc((size_t)m.params[p]->size, sizeof(float));
        hv[p] = calloc((size_t)m.params[p]->size, sizeof(float));
        v[p][0] = 1.0f;
    }
    cr_assert_eq(tg_hvp(tape, loss, m.n, m.params, (const float *const *)v, hv), TG_OK, "%s",
                 tg_errmsg(m.ctx));
    for (int p = 0; p < m.n; p++) free(v[p]), free(hv[p]); /* gone before the replay */
    m.params[0]->data[0] += 0.25f;
    cr_assert_eq(tg_tape_replay(tape), TG_OK, "%s", tg_errmsg(m.ctx));
    for (int p = 0; p < m.n; p++) tg_zero_grad(m.params[p]);
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(m.ctx));
    float replayed = m.params[1]->grad[0], value = loss->data[0];
    tg_tape *fresh = tg_tape_new(m.ctx);
    for (int p = 0; p < m.n; p++) tg_zero_grad(m.params[p]);
    tg_tensor *again = mlp_loss(&m, fresh);
    cr_assert_eq(tg_backward(fresh, again), TG_OK);
    cr_expect_eq(value, again->data[0], "replayed loss %g, fresh %g", value, again->data[0]);
    cr_expect_eq(replayed, m.params[1]->grad[0]);
    tg_tape_free(fresh);
    tg_tape_free(tape);
    tg_ctx_free(m.ctx);
}
