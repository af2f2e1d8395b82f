/* tests/test_stale_audit.c — the rest of the public functions that take a tensor (FINDINGS-2
 * item 4 found save and load among them) refuse a tape tensor kept across tg_tape_reset, with
 * TG_ERR_STATE; test_stale.c holds the ops, backward, fills and getters. */
#include "fixture.h"

#include <stdio.h>
#include <unistd.h>

TestSuite(stale_audit, .init = fixture_setup, .fini = fixture_teardown);

/* x [2,3] (labelled, wanting a gradient) and loss = sum(x*x), of a step tg_tape_reset ended;
 * then the next step fills a tensor of its own with 7s where their data used to be. */
static tg_tensor *x, *loss, *now;

static void make_stale(void) {
    x = tg_tape_from_data(tape, TG_SHAPE(2, 3), (float[]){1, 2, 3, 4, 5, 6});
    cr_assert_eq(tg_set_requires_grad(x, true), TG_OK);
    tg_set_label(x, "a");
    loss = tg_sum(tape, tg_mul(tape, x, x));
    cr_assert_not_null(loss);
    tg_tape_reset(tape);
    now = tg_tape_zeros(tape, TG_SHAPE(64));
    tg_fill(now, 7.0f);
    tg_clear_error(ctx);
}

static void expect_stale(const char *what) {
    cr_expect_eq(tg_errcode(ctx), TG_ERR_STATE, "%s: status %s (%s)", what,
                 tg_status_name(tg_errcode(ctx)), tg_errmsg(ctx));
    cr_expect(strstr(tg_errmsg(ctx), "earlier step") || strstr(tg_errmsg(ctx), "stale"), "%s: %s",
              what, tg_errmsg(ctx));
    tg_clear_error(ctx);
}

static void expect_now_untouched(void) {
    for (int64_t i = 0; i < now->size; i++)
        if (now->data[i] != 7.0f) cr_expect_fail("this step's tensor was written at %lld", (long long)i);
}

/* FINDINGS-2 case 7: the file would hold this step's numbers. */
Test(stale_audit, save_safetensors) {
    make_stale();
    char path[] = "/tmp/tg-stale-save-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    remove(path);
    cr_expect_eq(tg_save_safetensors(ctx, path, &x, 1), TG_ERR_STATE);
    expect_stale("save_safetensors");
    cr_expect_neq(access(path, F_OK), 0, "a file was written");
}

/* FINDINGS-2 case 8: the load would overwrite this step's tensor. */
Test(stale_audit, load_safetensors) {
    tg_tensor *five = tg_set_label(tg_full(ctx, TG_SHAPE(2, 3), 5), "a");
    char path[] = "/tmp/tg-stale-load-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    cr_assert_eq(tg_save_safetensors(ctx, path, &five, 1), TG_OK, "%s", tg_errmsg(ctx));
    make_stale();
    cr_expect_eq(tg_load_safetensors(ctx, path, &x, 1), TG_ERR_STATE);
    expect_stale("load_safetensors");
    expect_now_untouched();
    remove(path);
}

Test(stale_audit, higher_order_products) {
    make_stale();
    tg_tensor *p = tg_zeros(ctx, TG_SHAPE(2, 3)), *out = NULL, *g = NULL;
    cr_assert_eq(tg_set_requires_grad(p, true), TG_OK);
    float buf[6] = {0}, *grads[1] = {buf};
    const float *v[1] = {buf};
    cr_expect_eq(tg_jvp(tape, loss, 1, &p, &p, &out), TG_ERR_STATE);
    expect_stale("jvp output");
    cr_expect_eq(tg_vjp(tape, loss, buf, 1, &p, grads), TG_ERR_STATE);
    expect_stale("vjp output");
    cr_expect_eq(tg_hvp(tape, loss, 1, &p, v, grads), TG_ERR_STATE);
    expect_stale("hvp loss");
    cr_expect_eq(tg_grad(tape, loss, 1, &p, &g), TG_ERR_STATE);
    expect_stale("grad output");
    tg_tensor *l2 = tg_sum(tape, p);
    cr_expect_eq(tg_grad(tape, l2, 1, &x, &g), TG_ERR_STATE);
    expect_stale("grad input");
    cr_expect_eq(tg_vjp(tape, l2, buf, 1, &x, grads), TG_ERR_STATE);
    expect_stale("vjp input");
    cr_expect_eq(tg_jvp(tape, l2, 1, &x, &p, &out), TG_ERR_STATE);
    expect_stale("jvp input");
    cr_expect_eq(tg_jvp(tape, l2, 1, &p, &x, &out), TG_ERR_STATE);
    expect_stale("jvp tangent");
}

Test(stale_audit, clip_grad_norm) {
    make_stale();
    double norm = 0;
    cr_expect_eq(tg_clip_grad_norm(&x, 1, 1.0, 2.0, false, &norm), TG_ERR_STATE);
    expect_stale("clip_grad_norm");
}

Test(stale_audit, optimizer_and_curvature_new) {
    make_stale();
    cr_expect_null(tg_optimizer_new(ctx, &x, 1, &(tg_optimizer_config){.kind = TG_OPT_SGD, .lr = 0.1f}));
    expect_stale("optimizer_new");
    tg_curvature_config config = tg_curvature_defaults();
    cr_expect_null(tg_curvature_new(ctx, &x, 1, &config));
    expect_stale("curvature_new");
}

Test(stale_audit, activation_stats_and_accuracy) {
    make_stale();
    tg_activation_stats stats;
    memset(&stats, 0x5a, sizeof stats);
    tg_activation_stats_compute(x, &stats);
    expect_stale("activation_stats_compute");
    tg_tensor *labels = tg_zeros(ctx, TG_SHAPE(2));
    cr_expect(isnan(tg_accuracy(x, labels)), "accuracy of a stale tensor is a number");
    expect_stale("accuracy");
}

Test(stale_audit, recorder_add_tensor) {
    make_stale();
    tg_recorder *r = tg_recorder_new(ctx, 8);
    cr_assert_not_null(r);
    cr_expect_eq(tg_recorder_add_tensor(r, 0, x), TG_ERR_STATE);
    expect_stale("recorder_add_tensor");
    tg_recorder_free(r);
}

Test(stale_audit, batcher_next_into) {
    tg_dataset *ds = tg_dataset_spirals(ctx, 4, 0.0f, 1); /* x [2] per sample */
    cr_assert_not_null(ds, "%s", tg_errmsg(ctx));
    tg_batcher *b = tg_batcher_new(ds, 2, false, true, 1);
    cr_assert_not_null(b, "%s", tg_errmsg(ctx));
    make_stale();
    x = tg_tape_zeros(tape, TG_SHAPE(2, 2)); /* a batch of 2 samples of 2 */
    tg_tape_reset(tape);
    now = tg_tape_zeros(tape, TG_SHAPE(64));
    tg_fill(now, 7.0f);
    tg_clear_error(ctx);
    tg_tensor *y = tg_zeros(ctx, TG_SHAPE(2));
    cr_expect_not(tg_batcher_next_into(b, x, y));
    expect_stale("batcher_next_into");
    expect_now_untouched();
    tg_batcher_free(b);
    tg_dataset_free(ds);
}

Test(stale_audit, augment_apply) {
    tg_augment *aug = tg_augment_new(ctx, &(tg_augment_config){.flip = true}, 1);
    cr_assert_not_null(aug, "%s", tg_errmsg(ctx));
    make_stale();
    x = tg_tape_zeros(tape, TG_SHAPE(64, 1, 1, 1)); /* as many floats as `now` */
    tg_tape_reset(tape);
    now = tg_tape_zeros(tape, TG_SHAPE(64));
    tg_fill(now, 7.0f);
    tg_clear_error(ctx);
    cr_expect_eq(tg_augment_apply(aug, x), TG_ERR_STATE);
    expect_stale("augment_apply");
    cr_expect_eq(tg_augment_normalize(aug, x), TG_ERR_STATE);
    expect_stale("augment_normalize");
    expect_now_untouched();
    tg_augment_free(aug);
}

Test(stale_audit, rnn_initial_state) {
    tg_module *rnn = tg_rnn_new(ctx, "rnn", &(tg_rnn_config){.in = 3, .hidden = 3});
    cr_assert_not_null(rnn, "%s", tg_errmsg(ctx));
    make_stale(); /* x [2,3]: a [layers, B, hidden] state needs 3 dims: reshape by hand */
    tg_tensor *h = tg_tape_zeros(tape, TG_SHAPE(1, 2, 3));
    tg_tape_reset(tape);
    tg_clear_error(ctx);
    tg_tensor *in = tg_tape_zeros(tape, TG_SHAPE(2, 4, 3));
    cr_expect_null(tg_rnn_sequence(rnn, tape, in, &(tg_rnn_state){h, NULL}, NULL, NULL));
    expect_stale("rnn_sequence initial h");
    tg_module_free(rnn);
}

Test(stale_audit, shape_str_names_it_stale) {
    make_stale();
    char buf[64];
    cr_expect_str_eq(tg_shape_str(x, buf, sizeof buf), "(stale)");
    cr_expect_str_eq(tg_shape_str(now, buf, sizeof buf), "[64]");
}
