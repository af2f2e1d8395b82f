/* tests/test_double_free.c — freeing any object twice does nothing (tg_module_free: TG_OK), as
 * the header promises (FINDINGS-2 item 3: a root module freed twice was a use after free). A
 * freed object's struct stays, marked, until tg_ctx_free (tgi_retired), so the second free reads
 * live memory even under ASan, and a new object never takes the freed one's address meanwhile;
 * the counting allocator then sees every byte given back, once. */
#include "helpers.h"

static tally count;
static tg_ctx *ctx;

static void setup(void) {
    count = (tally){.fail_at = -1};
    ctx = tg_ctx_new_with_allocator(tally_alloc, &count);
    cr_assert_not_null(ctx);
}

static void teardown(void) {
    tg_ctx_free(ctx);
    cr_expect_eq(count.live_bytes, 0, "%ld bytes not freed", count.live_bytes);
    cr_expect_eq(count.allocations, count.frees, "%ld blocks given, %ld given back",
                 count.allocations, count.frees);
}

TestSuite(double_free, .init = setup, .fini = teardown);

Test(double_free, a_root_module_and_its_children) {
    tg_module *m = tg_mlp_new(ctx, "mlp", &(tg_mlp_config){.in = 4, .out = 2, .width = 8, .depth = 2});
    cr_assert_not_null(m, "%s", tg_errmsg(ctx));
    tg_module *child = tg_module_child(m, 0);
    cr_assert_not_null(child);
    cr_expect_eq(tg_module_free(m), TG_OK);
    cr_expect_eq(tg_module_free(m), TG_OK, "the second free: %s", tg_errmsg(ctx));
    cr_expect_eq(tg_module_free(child), TG_OK, "a child after its root: %s", tg_errmsg(ctx));
    cr_expect_eq(tg_errcode(ctx), TG_OK, "%s", tg_errmsg(ctx));
}

/* FINDINGS-2 case 6, and a new module made in between does not take the freed one's place. */
Test(double_free, a_linear_layer_with_a_new_one_in_between) {
    tg_module *m = tg_linear_new(ctx, "fc", 2, 2, true, NULL, 1);
    cr_assert_not_null(m, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_module_free(m), TG_OK);
    tg_module *fresh = tg_linear_new(ctx, "fc2", 2, 2, true, NULL, 1);
    cr_assert_not_null(fresh, "%s", tg_errmsg(ctx));
    cr_expect_neq(fresh, m, "a new module took a freed one's address");
    cr_expect_eq(tg_module_free(m), TG_OK);
    cr_expect_str_eq(tg_module_name(fresh), "fc2", "the second free of m touched the new module");
    cr_expect_eq(tg_module_param_count(fresh), 2);
    cr_expect_eq(tg_module_free(fresh), TG_OK);
}

static tg_tensor *user_forward(tg_module *m, tg_tape *tape, tg_tensor *x) {
    (void)m, (void)tape;
    return x;
}

static int released;
static void count_release(void *data) {
    (void)data;
    released++;
}

Test(double_free, a_user_module_releases_its_data_once) {
    released = 0;
    tg_module *m = tg_module_new(ctx, "net", &(tg_module_def){user_forward, count_release}, NULL);
    cr_assert_not_null(m, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_module_add_child(m, tg_linear_new(ctx, "net.fc", 2, 2, true, NULL, 1)), TG_OK,
                 "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_module_free(m), TG_OK);
    cr_expect_eq(tg_module_free(m), TG_OK);
    cr_expect_eq(released, 1, "release ran %d times", released);
}

Test(double_free, tape_optimizer_recorder_guard) {
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *w = tg_zeros(ctx, TG_SHAPE(3));
    cr_assert_eq(tg_set_requires_grad(w, true), TG_OK);
    tg_optimizer *opt = tg_optimizer_new(ctx, &w, 1, &(tg_optimizer_config){.kind = TG_OPT_ADAM, .lr = 0.1f});
    tg_recorder *r = tg_recorder_new(ctx, 8);
    tg_guard *g = tg_guard_new(ctx, NULL);
    cr_assert(tape && opt && r && g, "%s", tg_errmsg(ctx));
    cr_assert_gt(tg_recorder_attach(r, "*"), 0, "%s", tg_errmsg(ctx));
    tg_tape_free(tape);
    tg_tape_free(tape);
    tg_optimizer_free(opt);
    tg_optimizer_free(opt);
    tg_recorder_free(r);
    tg_recorder_free(r);
    cr_expect_eq(tg_hook_count(ctx), 0, "the recorder's hooks were not removed once");
    tg_guard_free(g);
    tg_guard_free(g);
}

Test(double_free, curvature_and_jacobian) {
    tg_tensor *w = tg_zeros(ctx, TG_SHAPE(3));
    cr_assert_eq(tg_set_requires_grad(w, true), TG_OK);
    tg_curvature *c = tg_curvature_new(ctx, &w, 1, NULL);
    tg_jacobian *j = tg_jacobian_new(ctx, NULL);
    cr_assert(c && j, "%s", tg_errmsg(ctx));
    tg_curvature_free(c);
    tg_curvature_free(c);
    tg_jacobian_free(j);
    tg_jacobian_free(j);
}

Test(double_free, data_sets_batchers_texts) {
    tg_dataset *ds = tg_dataset_spirals(ctx, 16, 0.0f, 1);
    cr_assert_not_null(ds, "%s", tg_errmsg(ctx));
    tg_batcher *b = tg_batcher_new(ds, 4, true, true, 1);
    cr_assert_not_null(b, "%s", tg_errmsg(ctx));
    tg_dataset_free(ds); /* before its batcher: the batcher's free still finds its header */
    tg_dataset_free(ds);
    tg_batcher_free(b);
    tg_batcher_free(b);
    const char words[] = "the quick brown fox jumps over the lazy dog, again and again.";
    tg_text *text = tg_text_from_memory(ctx, words, (int64_t)sizeof words - 1);
    cr_assert_not_null(text, "%s", tg_errmsg(ctx));
    tg_text_batcher *tb = tg_text_batcher_new(text, TG_TEXT_TRAIN, TG_TEXT_RANDOM, 2, 8, 1);
    cr_assert_not_null(tb, "%s", tg_errmsg(ctx));
    tg_text_batcher_free(tb);
    tg_text_batcher_free(tb);
    tg_text_free(text);
    tg_text_free(text);
}

Test(double_free, augmenters) {
    const float mean = 0.5f, std = 0.25f;
    tg_augment *aug = tg_augment_new(ctx, &(tg_augment_config){.crop_padding = 1, .flip = true,
                                                               .channels = 1, .mean = &mean,
                                                               .std = &std}, 1);
    tg_tensor *x = tg_zeros(ctx, TG_SHAPE(2, 1, 4, 4));
    cr_assert(aug && x, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_augment_apply(aug, x), TG_OK, "%s", tg_errmsg(ctx)); /* has its scratch */
    tg_augment_free(aug);
    tg_augment_free(aug);
}

/* The context is the one object that cannot keep its struct: a list of live contexts says a
 * freed one is gone (the suite's teardown frees ctx, a third time). */
Test(double_free, a_context) {
    tg_ctx *other = tg_ctx_new();
    cr_assert_not_null(other);
    tg_ctx_free(other);
    tg_ctx_free(other);
    tg_ctx_free(ctx);
    tg_ctx_free(ctx);
    cr_expect_eq(count.live_bytes, 0, "%ld bytes not freed", count.live_bytes);
}
