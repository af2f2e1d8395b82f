/* tests/test_user_module.c — modules defined by users (tg_module_new): their parameters,
 * buffers and children are listed, saved, loaded, zeroed, switched to eval mode and seen by
 * name-pattern hooks like those of the built-in modules; bad compositions are refused. */
#include "fixture.h"

TestSuite(user_module, .init = fixture_setup, .fini = fixture_teardown);

/* y = x + fc(relu(x)) * scale, a residual block with a learned scale and a step counter. */
typedef struct block {
    tg_module *fc;
    tg_tensor *scale, *calls;
    int *released;
} block;

static tg_tensor *block_forward(tg_module *m, tg_tape *t, tg_tensor *x) {
    block *b = tg_module_data(m);
    if (tg_module_training(m)) b->calls->data[0] += 1;
    tg_tensor *branch = tg_mul(t, tg_module_forward(b->fc, t, tg_relu(t, x)), b->scale);
    tg_tape_label_next(t, "%s.out", tg_module_name(m));
    return tg_add(t, x, branch);
}

static void block_release(void *data) {
    block *b = data;
    if (b->released) (*b->released)++;
    free(b);
}

static tg_module *block_new(const char *name, uint64_t seed, int *released) {
    block *b = calloc(1, sizeof *b);
    b->released = released;
    tg_module *m = tg_module_new(ctx, name, &(tg_module_def){block_forward, block_release}, b);
    cr_assert_not_null(m, "%s", tg_errmsg(ctx));
    char child[64];
    snprintf(child, sizeof child, "%s.fc", name);
    cr_assert_eq(tg_module_add_child(m, b->fc = tg_linear_new(ctx, child, 3, 3, true, NULL, seed)),
                 TG_OK, "%s", tg_errmsg(ctx));
    const tg_init half = {TG_INIT_CONSTANT, 0.5f, 0, 0, TG_ACT_IDENTITY, false};
    cr_assert_not_null(b->scale = tg_module_add_param(m, "scale", TG_SHAPE(3), &half, 0), "%s", tg_errmsg(ctx));
    cr_assert_not_null(b->calls = tg_module_add_buffer(m, "calls", TG_SHAPE(1), 0.0f), "%s", tg_errmsg(ctx));
    return m;
}

static const float input[6] = {1, -2, 0.5f, 0.25f, 3, -1};

static tg_tensor *run(tg_module *m) {
    tg_tape_reset(tape);
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(2, 3), input);
    tg_tensor *y = tg_mean(tape, tg_square(tape, tg_module_forward(m, tape, x)));
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    return y;
}

Test(user_module, parameters_state_children_and_modes_work_as_on_built_in_modules) {
    int released = 0;
    tg_module *m = block_new("blk", 1, &released);
    cr_expect_eq(tg_module_param_count(m), 3, "scale, then the child's weight and bias");
    cr_expect_str_eq(tg_module_param(m, 0)->label, "blk.scale");
    cr_expect_str_eq(tg_module_param(m, 1)->label, "blk.fc.weight");
    cr_expect_str_eq(tg_module_param(m, 2)->label, "blk.fc.bias");
    tg_tensor *state[4];
    cr_assert_eq(tg_module_state(m, state, 4), 4);
    cr_expect_str_eq(state[3]->label, "blk.calls");
    cr_expect_not(state[3]->requires_grad, "a buffer is not trained");
    cr_expect_eq(tg_module_find_param(m, "blk.fc.weight"), tg_module_param(m, 1));
    cr_expect_eq(tg_module_num_elements(m), 3 + 9 + 3);
    cr_expect_eq(tg_module_child_count(m), 1);
    cr_expect_str_eq(tg_module_name(tg_module_child(m, 0)), "blk.fc");
    cr_expect_eq(tg_module_ctx(m), ctx);

    tg_module_set_training(m, false);
    cr_expect_not(tg_module_training(tg_module_child(m, 0)), "eval mode reaches the children");
    run(m);
    cr_expect_eq(((block *)tg_module_data(m))->calls->data[0], 0.0f, "forward saw eval mode");
    tg_module_set_training(m, true);

    cr_assert_eq(tg_backward(tape, run(m)), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_neq(tg_module_param(m, 1)->grad[0], 0.0f);
    tg_module_zero_grad(m);
    for (int i = 0; i < 3; i++)
        for (int64_t k = 0; k < tg_module_param(m, i)->size; k++) cr_expect_eq(tg_module_param(m, i)->grad[k], 0.0f);
    tg_module_free(m);
    cr_expect_eq(released, 1, "the release function ran once");
}

static int seen_backward, seen_forward;
static tg_status count_hook(tg_ctx *c, const tg_hook_event *e, void *user) {
    (void)c, (void)e;
    (*(int *)user)++;
    return TG_OK;
}

Test(user_module, name_pattern_hooks_see_its_parameters_and_labelled_outputs) {
    tg_module *m = block_new("blk", 1, NULL);
    cr_assert_gt(tg_hook_pattern(ctx, "blk.*", TG_PASS_BACKWARD, count_hook, &seen_backward), 0);
    cr_assert_gt(tg_hook_pattern(ctx, "blk.out", TG_PASS_FORWARD, count_hook, &seen_forward), 0);
    cr_assert_eq(tg_backward(tape, run(m)), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(seen_forward, 1, "the forward hook saw blk.out");
    cr_expect_eq(seen_backward, 4, "blk.out, blk.scale, blk.fc.weight, blk.fc.bias: %d", seen_backward);
    tg_module_free(m);
}

Test(user_module, saves_and_reloads_with_tg_module_save_and_load) {
    tg_module *m = block_new("blk", 1, NULL);
    tg_tensor *params[3];
    tg_module_params(m, params, 3);
    tg_optimizer *opt = tg_optimizer_new(ctx, params, 3, &(tg_optimizer_config){.kind = TG_OPT_ADAM, .lr = 0.05f});
    for (int step = 0; step < 5; step++) {
        cr_assert_eq(tg_backward(tape, run(m)), TG_OK, "%s", tg_errmsg(ctx));
        tg_optimizer_step(opt);
        tg_optimizer_zero_grad(opt);
    }
    float trained = run(m)->data[0];
    char dir[64], path[128];
    temp_dir_make(dir, "tg-user-module");
    snprintf(path, sizeof path, "%s/blk.safetensors", dir);
    cr_assert_eq(tg_module_save(m, path), TG_OK, "%s", tg_errmsg(ctx));

    tg_module *fresh = block_new("blk", 99, NULL); /* other weights, same names */
    cr_assert_neq(run(fresh)->data[0], trained);
    cr_assert_eq(tg_module_load(fresh, path), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(run(fresh)->data[0], trained, "the reloaded module computes the same loss");
    /* the buffer came with the state (and the check's forward counted once more) */
    cr_expect_eq(((block *)tg_module_data(fresh))->calls->data[0],
                 ((block *)tg_module_data(m))->calls->data[0] + 1.0f, "the buffer was loaded too");
    tg_optimizer_free(opt);
    tg_module_free(fresh);
    tg_module_free(m);
    temp_dir_remove(dir);
}

Test(user_module, bad_compositions_are_refused_with_a_reason) {
    tg_module *m = block_new("blk", 1, NULL);
    cr_expect_eq(tg_module_add_child(m, tg_linear_new(ctx, "fc2", 3, 3, true, NULL, 1)), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "'fc2' cannot be a child of 'blk'", "does not start with the parent's name");
    tg_clear_error(ctx);
    cr_expect_null(tg_module_add_param(m, "scale", TG_SHAPE(3), NULL, 0));
    expect_errmsg_has(ctx, "module 'blk' already has 'blk.scale'");
    tg_clear_error(ctx);
    cr_expect_eq(tg_module_add_child(m, tg_module_child(m, 0)), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "already has a parent");
    tg_clear_error(ctx);
    cr_expect_eq(tg_module_add_child(tg_module_child(m, 0), tg_linear_new(ctx, "blk.fc.x", 1, 1, true, NULL, 1)),
                 TG_ERR_INVALID);
    expect_errmsg_has(ctx, "'blk.fc' is a built-in module (linear)");
    tg_clear_error(ctx);
    cr_expect_eq(tg_module_add_child(m, m), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "the module itself or one of its parents");
    cr_expect_eq(tg_module_param_count(m), 3, "nothing was added");
    tg_module_free(m);
}

/* A child belongs to its parent: freeing it alone is refused (the parent's forward still calls
 * it), the module keeps working, and freeing the root frees the child once. Before the refusal
 * this freed the child, the next forward read freed memory and the root's free freed it again
 * (AddressSanitizer: heap-use-after-free, then double-free). */
Test(user_module, freeing_a_child_is_refused_and_the_root_frees_it_once) {
    int released = 0;
    tg_module *m = block_new("blk", 1, &released);
    tg_module *child = tg_module_child(m, 0);
    cr_expect_eq(tg_module_free(child), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "module_free: 'blk.fc' is a child of 'blk'", "free the root module 'blk'");
    tg_clear_error(ctx);
    cr_expect_eq(tg_module_child(m, 0), child, "the child is still there");
    cr_expect(isfinite(run(m)->data[0]), "and the parent's forward still uses it");
    cr_expect_eq(released, 0);
    cr_expect_eq(tg_module_free(m), TG_OK);
    cr_expect_eq(released, 1, "the root's release ran once");
    cr_expect_eq(tg_module_free(NULL), TG_OK);
}

Test(user_module, freeing_a_grandchild_names_the_root_to_free) {
    tg_module *net = tg_module_new(ctx, "net", &(tg_module_def){block_forward, block_release},
                                   calloc(1, sizeof(block)));
    cr_assert_not_null(net);
    tg_module *blk = block_new("net.blk", 2, NULL);
    cr_assert_eq(tg_module_add_child(net, blk), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_module_free(tg_module_child(blk, 0)), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "'net.blk.fc' is a child of 'net.blk'", "free the root module 'net'");
    tg_clear_error(ctx);
    /* a built-in model's layers belong to it the same way */
    tg_mlp_config c = {.in = 3, .out = 2, .width = 4, .depth = 2, .activation = TG_ACT_RELU, .seed = 1};
    tg_module *mlp = tg_mlp_new(ctx, "mlp", &c);
    cr_assert_not_null(mlp, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_module_free(tg_module_child(mlp, 0)), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "free the root module 'mlp'");
    cr_expect_eq(tg_module_free(mlp), TG_OK);
    cr_expect_eq(tg_module_free(net), TG_OK);
}

/* A release that frees the child it keeps a pointer to (a natural thing to write in C): the
 * parent's release runs while the child is still owned, so that free is refused rather than a
 * second free of memory the parent frees anyway. */
typedef struct owner {
    tg_module *fc;
    tg_status *child_free;
} owner;

static void owner_release(void *data) {
    owner *o = data;
    *o->child_free = tg_module_free(o->fc);
    free(o);
}

Test(user_module, a_release_that_frees_its_child_is_refused_not_a_double_free) {
    tg_status child_free = TG_OK;
    owner *o = calloc(1, sizeof *o);
    o->child_free = &child_free;
    tg_module *m = tg_module_new(ctx, "own", &(tg_module_def){block_forward, owner_release}, o);
    cr_assert_not_null(m);
    cr_assert_eq(tg_module_add_child(m, o->fc = tg_linear_new(ctx, "own.fc", 3, 3, true, NULL, 1)),
                 TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_module_free(m), TG_OK);
    cr_expect_eq(child_free, TG_ERR_INVALID, "the child was still its parent's during release");
}
