/* tests/test_misuse_models.c — the misuse cases of native ops, calls by name and plugins,
 * models, data, save and load, gradient checking and random numbers (the rest, and the test
 * that every function of tapegrad.h has a case, are in test_misuse.c). */
#include "misuse.h"

/* ---- native ops, calls by name, plugins ---------------------------------------------------- */

MISUSE(tg_op_register_native) {
    tg_native_fn k = (tg_native_fn)kernel_noop;
    GIVES(tg_op_register_native(NULL, "n", "x -> y", k, NULL, NULL), -1);
    tg_clear_error(W.ctx);
    GIVES(tg_op_register_native(W.ctx, NULL, "x -> y", k, NULL, NULL), -1);
    expect_message("tg_op_register_native with a NULL name");
    GIVES(tg_op_register_native(W.ctx, "n", NULL, k, NULL, NULL), -1);
    expect_message("tg_op_register_native with a NULL signature");
    GIVES(tg_op_register_native(W.ctx, "n", "x -> y", NULL, NULL, NULL), -1);
    expect_message("tg_op_register_native with a NULL forward");
}
MISUSE(tg_call) {
    tg_tensor *pair[2] = {W.w, W.foreign};
    NULLED_QUIETLY(tg_call(NULL, "add", pair, 2, NULL, 0));
    NULLED(tg_call(W.tape, NULL, pair, 2, NULL, 0));
    NULLED(tg_call(W.tape, "add", NULL, 2, NULL, 0));
    NULLED(tg_call(W.tape, "add", pair, 2, NULL, 0));
    NULLED(tg_call(W.tape, "leaky_relu", pair, 1, NULL, 1));
}
MISUSE(tg_plugin_load) {
    GIVES(tg_plugin_load(NULL, "/nonexistent.so"), TG_ERR_INVALID);
    REFUSED(tg_plugin_load(W.ctx, NULL));
}
MISUSE(tg_hook_export) {
    GIVES(tg_hook_export(NULL, "h", ok_hook, NULL), TG_ERR_INVALID);
    REFUSED(tg_hook_export(W.ctx, NULL, ok_hook, NULL));
    REFUSED(tg_hook_export(W.ctx, "h", NULL, NULL));
}
MISUSE(tg_hook_find) {
    tg_hook_fn fn;
    GIVES(tg_hook_find(NULL, "h", &fn, NULL), TG_ERR_INVALID);
    REFUSED(tg_hook_find(W.ctx, NULL, &fn, NULL));
    cr_assert_eq(tg_hook_export(W.ctx, "h", ok_hook, NULL), TG_OK);
    REFUSED(tg_hook_find(W.ctx, "h", NULL, NULL));
}

/* ---- models ---------------------------------------------------------------------------------- */

MISUSE(tg_activation_name) { GIVES_TEXT(tg_activation_name((tg_activation)99)); }
MISUSE(tg_activation_from_name) { GIVES(tg_activation_from_name(NULL), -1); }
MISUSE(tg_activate) {
    UNARY_MISUSE(tg_activate(tape_, x_, TG_ACT_RELU));
    NULLED_QUIETLY(tg_activate(NULL, W.w, TG_ACT_IDENTITY));
}
MISUSE(tg_init_gain) { cr_expect(isfinite(tg_init_gain((tg_activation)99))); }
MISUSE(tg_init_tensor) {
    tg_init init = tg_init_normal(0.0f, 1.0f);
    GIVES(tg_init_tensor(NULL, &init, 1), TG_ERR_INVALID);
    REFUSED(tg_init_tensor(W.w, NULL, 1));
}
MISUSE(tg_init_xavier) { cr_expect_eq(tg_init_xavier(TG_ACT_TANH).kind, TG_INIT_XAVIER_UNIFORM); }
MISUSE(tg_init_he) { cr_expect_eq(tg_init_he(TG_ACT_RELU).kind, TG_INIT_HE_NORMAL); }
MISUSE(tg_init_normal) { cr_expect_eq(tg_init_normal(0.0f, 1.0f).kind, TG_INIT_NORMAL); }

MISUSE(tg_module_forward) {
    NULLED_QUIETLY(tg_module_forward(NULL, W.tape, W.w));
    NULLED_QUIETLY(tg_module_forward(W.linear, NULL, W.w));
    NULLED(tg_module_forward(W.linear, W.tape, NULL));
    NULLED(tg_module_forward(W.linear, W.tape, W.foreign));
}
MISUSE(tg_module_free) { GIVES(tg_module_free(NULL), TG_OK); }
MISUSE(tg_module_name) { cr_expect_str_eq(tg_module_name(NULL), "(null)"); }
MISUSE(tg_module_param_count) { GIVES(tg_module_param_count(NULL), 0); }
MISUSE(tg_module_param) { NULLED_QUIETLY(tg_module_param(NULL, 0)); }
MISUSE(tg_module_params) {
    tg_tensor *out[4];
    GIVES(tg_module_params(NULL, out, 4), 0);
    GIVES(tg_module_params(W.linear, NULL, 4), 2); /* counting only */
    tg_clear_error(W.ctx);
    GIVES(tg_module_params(W.linear, out, 1), -1); /* too small: refused, not a count to pass on */
    expect_message("tg_module_params(W.linear, out, 1)");
    GIVES(tg_module_params(W.linear, out, -3), -1);
    expect_message("tg_module_params(W.linear, out, -3)");
}
MISUSE(tg_module_state) {
    tg_tensor *out[4];
    GIVES(tg_module_state(NULL, out, 4), 0);
    GIVES(tg_module_state(W.linear, NULL, 4), 2);
    tg_clear_error(W.ctx);
    GIVES(tg_module_state(W.linear, out, 1), -1);
    expect_message("tg_module_state(W.linear, out, 1)");
}
MISUSE(tg_module_summary) {
    REFUSED_QUIETLY(tg_module_summary(NULL, stdout));
    REFUSED(tg_module_summary(W.linear, NULL));
    FILE *closed_for_writing = fopen("/dev/null", "r"); /* writes to it fail */
    cr_assert_not_null(closed_for_writing);
    REFUSED(tg_module_summary(W.linear, closed_for_writing));
    fclose(closed_for_writing);
}
MISUSE(tg_module_find_param) {
    NULLED_QUIETLY(tg_module_find_param(NULL, "lin.weight"));
    NULLED_QUIETLY(tg_module_find_param(W.linear, NULL));
}
MISUSE(tg_module_num_elements) { GIVES(tg_module_num_elements(NULL), 0); }
MISUSE(tg_module_set_training) { tg_module_set_training(NULL, false); }
MISUSE(tg_module_training) { GIVES(tg_module_training(NULL), false); }
MISUSE(tg_module_zero_grad) { tg_module_zero_grad(NULL); }
MISUSE(tg_module_set_recompute) {
    REFUSED_QUIETLY(tg_module_set_recompute(NULL, 1));
    tg_module *m = tg_linear_new(W.ctx, "recomputed", 2, 2, true, NULL, 1);
    cr_assert_not_null(m);
    REFUSED(tg_module_set_recompute(m, -1));
    cr_expect_eq(tg_module_set_recompute(m, 3), TG_OK);
    GIVES(tg_module_recompute(m), 3);
    tg_module_free(m);
}
MISUSE(tg_module_recompute) { GIVES(tg_module_recompute(NULL), 0); }
MISUSE(tg_module_child_count) { GIVES(tg_module_child_count(NULL), 0); }
MISUSE(tg_module_child) { NULLED_QUIETLY(tg_module_child(NULL, 0)); }
static tg_tensor *identity_forward(tg_module *m, tg_tape *t, tg_tensor *x) {
    (void)m, (void)t;
    return x;
}
MISUSE(tg_module_new) {
    const tg_module_def def = {identity_forward, NULL}, no_forward = {NULL, NULL};
    NULLED_QUIETLY(tg_module_new(NULL, "u", &def, NULL));
    NULLED(tg_module_new(W.ctx, NULL, &def, NULL));
    NULLED(tg_module_new(W.ctx, "u", NULL, NULL));
    NULLED(tg_module_new(W.ctx, "u", &no_forward, NULL));
}
MISUSE(tg_module_data) {
    NULLED_QUIETLY(tg_module_data(NULL));
    NULLED_QUIETLY(tg_module_data(W.linear)); /* built in: no user data */
}
MISUSE(tg_module_ctx) { NULLED_QUIETLY(tg_module_ctx(NULL)); }
MISUSE(tg_module_add_param) {
    tg_module *u = tg_module_new(W.ctx, "u", &(tg_module_def){identity_forward, NULL}, NULL);
    NULLED_QUIETLY(tg_module_add_param(NULL, "w", TG_SHAPE(2), NULL, 1));
    NULLED(tg_module_add_param(u, NULL, TG_SHAPE(2), NULL, 1));
    NULLED(tg_module_add_param(u, "w", 1, NULL, NULL, 1));
    NULLED(tg_module_add_param(W.linear, "w", TG_SHAPE(2), NULL, 1)); /* built in */
    tg_module_free(u);
}
MISUSE(tg_module_add_buffer) {
    tg_module *u = tg_module_new(W.ctx, "u", &(tg_module_def){identity_forward, NULL}, NULL);
    NULLED_QUIETLY(tg_module_add_buffer(NULL, "b", TG_SHAPE(2), 0.0f));
    NULLED(tg_module_add_buffer(u, NULL, TG_SHAPE(2), 0.0f));
    NULLED(tg_module_add_buffer(u, "b", 1, NULL, 0.0f));
    tg_module_free(u);
}
MISUSE(tg_module_add_child) {
    tg_module *u = tg_module_new(W.ctx, "u", &(tg_module_def){identity_forward, NULL}, NULL);
    GIVES(tg_module_add_child(NULL, NULL), TG_ERR_INVALID);
    REFUSED(tg_module_add_child(u, NULL));
    GIVES(tg_module_add_child(NULL, tg_linear_new(W.ctx, "u.fc", 2, 2, true, NULL, 1)), TG_ERR_INVALID);
    tg_module_free(u);
}

MISUSE(tg_linear_new) {
    NULLED_QUIETLY(tg_linear_new(NULL, "l", 2, 2, true, NULL, 1));
    NULLED(tg_linear_new(W.ctx, NULL, 2, 2, true, NULL, 1));
}
MISUSE(tg_norm_new) {
    NULLED_QUIETLY(tg_norm_new(NULL, "n", TG_NORM_LAYER, 2));
    NULLED(tg_norm_new(W.ctx, NULL, TG_NORM_LAYER, 2));
}
MISUSE(tg_mlp_new) {
    tg_mlp_config c = {.in = 2, .out = 2, .width = 4, .depth = 2};
    NULLED_QUIETLY(tg_mlp_new(NULL, "m", &c));
    NULLED(tg_mlp_new(W.ctx, NULL, &c));
    NULLED(tg_mlp_new(W.ctx, "m", NULL));
}
MISUSE(tg_resmlp_new) {
    tg_resmlp_config c = {.in = 2, .out = 2, .width = 4, .blocks = 1};
    NULLED_QUIETLY(tg_resmlp_new(NULL, "r", &c));
    NULLED(tg_resmlp_new(W.ctx, NULL, &c));
    NULLED(tg_resmlp_new(W.ctx, "r", NULL));
}
MISUSE(tg_conv2d_new) {
    NULLED_QUIETLY(tg_conv2d_new(NULL, "c", 1, 2, 3, 3, NULL, true, NULL, 1));
    NULLED(tg_conv2d_new(W.ctx, NULL, 1, 2, 3, 3, NULL, true, NULL, 1));
}
MISUSE(tg_lenet_new) {
    tg_lenet_config c = {.channels = 1, .height = 8, .width = 8, .classes = 10};
    NULLED_QUIETLY(tg_lenet_new(NULL, "l", &c));
    NULLED(tg_lenet_new(W.ctx, NULL, &c));
    NULLED(tg_lenet_new(W.ctx, "l", NULL));
}
MISUSE(tg_resnet_new) {
    tg_resnet_config c = {.channels = 1, .classes = 10, .depth = 8, .skip = true};
    NULLED_QUIETLY(tg_resnet_new(NULL, "r", &c));
    NULLED(tg_resnet_new(W.ctx, NULL, &c));
    NULLED(tg_resnet_new(W.ctx, "r", NULL));
}
MISUSE(tg_rnn_defaults) { cr_expect_eq(tg_rnn_defaults(TG_RNN_GRU, 2, 3).hidden, 3); }
MISUSE(tg_rnn_new) {
    tg_rnn_config c = tg_rnn_defaults(TG_RNN_LSTM, 2, 4);
    NULLED_QUIETLY(tg_rnn_new(NULL, "r", &c));
    NULLED(tg_rnn_new(W.ctx, NULL, &c));
    NULLED(tg_rnn_new(W.ctx, "r", NULL));
    c.num_layers = TG_RNN_MAX_LAYERS + 1;
    NULLED(tg_rnn_new(W.ctx, "r", &c));
}
MISUSE(tg_rnn_forward) {
    tg_rnn_config c = tg_rnn_defaults(TG_RNN_TANH, 3, 2);
    tg_module *rnn = tg_rnn_new(W.ctx, "r", &c);
    tg_tensor *seq = tg_tape_zeros(W.tape, TG_SHAPE(1, 2, 3));
    cr_assert(rnn && seq);
    NULLED_QUIETLY(tg_rnn_forward(NULL, W.tape, seq, NULL));
    NULLED_QUIETLY(tg_rnn_forward(rnn, NULL, seq, NULL));
    NULLED_QUIETLY(tg_rnn_forward(rnn, W.tape, NULL, NULL));
    NULLED(tg_rnn_forward(W.linear, W.tape, seq, NULL)); /* not a recurrent module */
    tg_module_free(rnn);
}
MISUSE(tg_rnn_sequence) {
    tg_rnn_config c = tg_rnn_defaults(TG_RNN_LSTM, 3, 2);
    c.num_layers = 2;
    tg_module *rnn = tg_rnn_new(W.ctx, "r", &c);
    tg_tensor *seq = tg_tape_zeros(W.tape, TG_SHAPE(1, 2, 3));
    cr_assert(rnn && seq);
    tg_rnn_state final = {W.x, W.x};
    NULLED_QUIETLY(tg_rnn_sequence(NULL, W.tape, seq, NULL, &final, NULL));
    cr_expect(!final.h && !final.c, "the final state is cleared on failure");
    NULLED_QUIETLY(tg_rnn_sequence(rnn, NULL, seq, NULL, NULL, NULL));
    NULLED_QUIETLY(tg_rnn_sequence(rnn, W.tape, NULL, NULL, NULL, NULL));
    NULLED(tg_rnn_sequence(W.linear, W.tape, seq, NULL, NULL, NULL));
    tg_rnn_state wrong = {W.x, NULL}; /* [3], not [layers*directions, batch, hidden] */
    NULLED(tg_rnn_sequence(rnn, W.tape, seq, &wrong, NULL, NULL));
    cr_expect_not_null(tg_rnn_sequence(rnn, W.tape, seq, &(tg_rnn_state){NULL, NULL}, NULL, NULL),
                       "NULL members are zero states: %s", tg_errmsg(W.ctx));
    tg_module_free(rnn);
}
MISUSE(tg_detach) {
    NULLED_QUIETLY(tg_detach(NULL, W.x));
    NULLED_QUIETLY(tg_detach(W.tape, NULL)); /* a NULL input is an earlier failure: no new message */
}

MISUSE(tg_optimizer_new) {
    tg_optimizer_config c = {.kind = TG_OPT_SGD, .lr = 0.1f};
    tg_tensor *none[1] = {NULL};
    NULLED_QUIETLY(tg_optimizer_new(NULL, &W.w, 1, &c));
    NULLED(tg_optimizer_new(W.ctx, NULL, 1, &c));
    NULLED(tg_optimizer_new(W.ctx, none, 1, &c));
    NULLED(tg_optimizer_new(W.ctx, &W.w, 1, NULL));
}
MISUSE(tg_optimizer_new_module) {
    tg_optimizer_config c = {.kind = TG_OPT_SGD, .lr = 0.1f};
    NULLED_QUIETLY(tg_optimizer_new_module(NULL, &c));
    NULLED(tg_optimizer_new_module(W.linear, NULL));
    NULLED(tg_optimizer_new_module(W.linear, &(tg_optimizer_config){.kind = TG_OPT_SGD, .lr = -1.0f}));
}
MISUSE(tg_optimizer_set_schedule) {
    tg_schedule cosine = {.kind = TG_SCHEDULE_COSINE, .total_steps = 10};
    REFUSED_QUIETLY(tg_optimizer_set_schedule(NULL, &cosine));
    REFUSED(tg_optimizer_set_schedule(W.opt, &(tg_schedule){.kind = TG_SCHEDULE_COSINE}));
    REFUSED(tg_optimizer_set_schedule(W.opt, &(tg_schedule){.kind = (tg_schedule_kind)-1}));
    GIVES(tg_optimizer_set_schedule(W.opt, NULL), TG_OK); /* no schedule: the constant rate */
}
MISUSE(tg_optimizer_step_count) { GIVES(tg_optimizer_step_count(NULL), -1); }
MISUSE(tg_optimizer_free) { tg_optimizer_free(NULL); }
MISUSE(tg_optimizer_step) { GIVES(tg_optimizer_step(NULL), TG_ERR_INVALID); }
MISUSE(tg_optimizer_step_zero_grad) { GIVES(tg_optimizer_step_zero_grad(NULL), TG_ERR_INVALID); }
MISUSE(tg_optimizer_zero_grad) { tg_optimizer_zero_grad(NULL); }
MISUSE(tg_optimizer_set_lr) { tg_optimizer_set_lr(NULL, 1.0f); }
MISUSE(tg_optimizer_lr) { GIVES_NAN(tg_optimizer_lr(NULL)); }
MISUSE(tg_schedule_lr) { GIVES_NAN(tg_schedule_lr(NULL, 0)); }
static void penalty_misuse(tg_tensor *(*penalty)(tg_tape *, tg_tensor *const *, int, float)) {
    tg_tensor *none[1] = {NULL};
    NULLED_QUIETLY(penalty(NULL, &W.w, 1, 0.1f));
    NULLED(penalty(W.tape, NULL, 3, 0.1f));
    NULLED(penalty(W.tape, none, 1, 0.1f));
    NULLED(penalty(W.tape, &W.w, -1, 0.1f));
    NULLED(penalty(W.tape, &W.foreign, 1, 0.1f));
}
MISUSE(tg_l2_penalty) { penalty_misuse(tg_l2_penalty); }
MISUSE(tg_l1_penalty) { penalty_misuse(tg_l1_penalty); }
MISUSE(tg_accuracy) {
    GIVES_NAN(tg_accuracy(NULL, W.w));
    GIVES_NAN(tg_accuracy(W.w, NULL));
}

/* ---- data ------------------------------------------------------------------------------------ */

MISUSE(tg_dataset_free) { tg_dataset_free(NULL); }
MISUSE(tg_dataset_x_size) { GIVES(tg_dataset_x_size(NULL), -1); }
MISUSE(tg_dataset_y_size) { GIVES(tg_dataset_y_size(NULL), -1); }
MISUSE(tg_dataset_digits) { NULLED_QUIETLY(tg_dataset_digits(NULL)); }
MISUSE(tg_dataset_reshape) {
    GIVES(tg_dataset_reshape(NULL, 1, (int64_t[]){2}), TG_ERR_INVALID);
    REFUSED(tg_dataset_reshape(W.ds, 1, NULL));
    REFUSED(tg_dataset_reshape(W.ds, 4, (int64_t[]){1, 1, 1, 2})); /* same size, too many dims */
    REFUSED(tg_dataset_reshape(W.ds, -1, (int64_t[]){2}));
}
MISUSE(tg_dataset_split) {
    tg_dataset *a = (tg_dataset *)1, *b = (tg_dataset *)1;
    GIVES(tg_dataset_split(NULL, 0.25, 1, &a, &b), TG_ERR_INVALID);
    cr_expect(a == NULL && b == NULL, "outputs not cleared");
    REFUSED(tg_dataset_split(W.ds, 0.25, 1, NULL, &b));
    REFUSED(tg_dataset_split(W.ds, 0.25, 1, &a, NULL));
}
MISUSE(tg_dataset_adding) { NULLED_QUIETLY(tg_dataset_adding(NULL, 4, 4, 1)); }
MISUSE(tg_dataset_copy_task) { NULLED_QUIETLY(tg_dataset_copy_task(NULL, 4, 2, 2, 3, 1)); }
MISUSE(tg_dataset_spirals) { NULLED_QUIETLY(tg_dataset_spirals(NULL, 4, 0.0f, 1)); }
MISUSE(tg_dataset_parity) { NULLED_QUIETLY(tg_dataset_parity(NULL, 4, 3, 1)); }
MISUSE(tg_dataset_read_csv) {
    NULLED_QUIETLY(tg_dataset_read_csv(NULL, "/nonexistent.csv", -1));
    NULLED(tg_dataset_read_csv(W.ctx, NULL, -1));
}
MISUSE(tg_dataset_read_csv_regression) {
    NULLED_QUIETLY(tg_dataset_read_csv_regression(NULL, "/nonexistent.csv", -1));
    NULLED(tg_dataset_read_csv_regression(W.ctx, NULL, -1));
}
MISUSE(tg_dataset_read_idx) {
    NULLED_QUIETLY(tg_dataset_read_idx(NULL, "/nonexistent", "/nonexistent"));
    NULLED(tg_dataset_read_idx(W.ctx, NULL, "/nonexistent"));
    NULLED(tg_dataset_read_idx(W.ctx, "/nonexistent", NULL));
}
MISUSE(tg_dataset_fashion_mnist) {
    NULLED_QUIETLY(tg_dataset_fashion_mnist(NULL, NULL, true));
    NULLED(tg_dataset_fashion_mnist(W.ctx, "/nonexistent", false));
}
MISUSE(tg_dataset_idx_count) {
    GIVES(tg_dataset_idx_count(NULL, "/nonexistent", "/nonexistent"), -1);
    tg_clear_error(W.ctx);
    GIVES(tg_dataset_idx_count(W.ctx, NULL, "/nonexistent"), -1);
    expect_message("tg_dataset_idx_count(W.ctx, NULL, ...)");
    tg_clear_error(W.ctx);
    GIVES(tg_dataset_idx_count(W.ctx, "/nonexistent", "/nonexistent"), -1);
    expect_message("tg_dataset_idx_count(W.ctx, \"/nonexistent\", ...)");
}
MISUSE(tg_dataset_fashion_mnist_count) {
    GIVES(tg_dataset_fashion_mnist_count(NULL, NULL, true), -1);
    tg_clear_error(W.ctx);
    GIVES(tg_dataset_fashion_mnist_count(W.ctx, "/nonexistent", false), -1);
    expect_message("tg_dataset_fashion_mnist_count(W.ctx, \"/nonexistent\", false)");
}
MISUSE(tg_batcher_new) { NULLED_QUIETLY(tg_batcher_new(NULL, 2, false, false, 1)); }
MISUSE(tg_batcher_free) { tg_batcher_free(NULL); }
MISUSE(tg_batcher_next) {
    tg_tensor *x, *y;
    GIVES(tg_batcher_next(NULL, W.tape, &x, &y), false);
    tg_batcher *b = tg_batcher_new(W.ds, 2, false, false, 1);
    cr_assert_not_null(b);
    tg_clear_error(W.ctx);
    GIVES(tg_batcher_next(b, NULL, &x, &y), false);
    expect_message("tg_batcher_next(b, NULL, ...)");
    GIVES(tg_batcher_next(b, W.tape, NULL, &y), false);
    expect_message("tg_batcher_next(b, tape, NULL, y)");
    tg_batcher_free(b);
}
MISUSE(tg_batcher_epoch) { GIVES(tg_batcher_epoch(NULL), 0); }
MISUSE(tg_augment_new) {
    NULLED_QUIETLY(tg_augment_new(NULL, &(tg_augment_config){.flip = true}, 1));
    NULLED(tg_augment_new(W.ctx, NULL, 1));
    NULLED(tg_augment_new(W.ctx, &(tg_augment_config){.channels = 1}, 1)); /* no mean, no std */
}
MISUSE(tg_augment_apply) {
    REFUSED_QUIETLY(tg_augment_apply(NULL, W.w));
    tg_augment *aug = tg_augment_new(W.ctx, &(tg_augment_config){.flip = true}, 1);
    cr_assert_not_null(aug);
    REFUSED(tg_augment_apply(aug, NULL));
    REFUSED(tg_augment_apply(aug, W.w)); /* [3]: not [B,C,H,W] */
    tg_augment_free(aug);
}
MISUSE(tg_augment_normalize) {
    REFUSED_QUIETLY(tg_augment_normalize(NULL, W.w));
    tg_augment *aug = tg_augment_new(W.ctx, &(tg_augment_config){0}, 1);
    cr_assert_not_null(aug);
    REFUSED(tg_augment_normalize(aug, NULL));
    tg_augment_free(aug);
}
MISUSE(tg_augment_free) { tg_augment_free(NULL); }
MISUSE(tg_dataset_channel_stats) {
    float mean[2], std[2];
    GIVES(tg_dataset_channel_stats(NULL, mean, std, 2), TG_ERR_INVALID);
    REFUSED(tg_dataset_channel_stats(W.ds, NULL, std, 2));
    REFUSED(tg_dataset_channel_stats(W.ds, mean, std, 2)); /* spirals: x [2], not images */
}
MISUSE(tg_batcher_next_into) {
    GIVES(tg_batcher_next_into(NULL, NULL, NULL), false);
    tg_batcher *b = tg_batcher_new(W.ds, 2, false, false, 1);
    cr_assert_not_null(b);
    tg_clear_error(W.ctx);
    GIVES(tg_batcher_next_into(b, NULL, NULL), false);
    expect_message("tg_batcher_next_into(b, NULL, NULL)");
    tg_batcher_free(b);
}

/* ---- text corpora ------------------------------------------------------------------------- */

/* A text of ten bytes in the world's context (freed by the caller). */
static tg_text *small_text(void) {
    tg_text *text = tg_text_from_memory(W.ctx, "abcdefghij", 10);
    cr_assert_not_null(text, "%s", tg_errmsg(W.ctx));
    return text;
}

MISUSE(tg_text_load) {
    NULLED_QUIETLY(tg_text_load(NULL, "/nonexistent.txt"));
    NULLED(tg_text_load(W.ctx, NULL));
    NULLED(tg_text_load(W.ctx, "/nonexistent.txt"));
}
MISUSE(tg_text_load_corpus) {
    NULLED_QUIETLY(tg_text_load_corpus(NULL, "fortunes"));
    NULLED(tg_text_load_corpus(W.ctx, NULL));
    NULLED(tg_text_load_corpus(W.ctx, "no such corpus"));
}
MISUSE(tg_text_from_memory) {
    NULLED_QUIETLY(tg_text_from_memory(NULL, "a", 1));
    NULLED(tg_text_from_memory(W.ctx, NULL, 1));
    NULLED(tg_text_from_memory(W.ctx, "a", -1));
}
MISUSE(tg_text_free) { tg_text_free(NULL); }
MISUSE(tg_text_length) { GIVES(tg_text_length(NULL), 0); }
MISUSE(tg_text_vocab_size) { GIVES(tg_text_vocab_size(NULL), 0); }
MISUSE(tg_text_vocab) { GIVES(tg_text_vocab(NULL), NULL); }
MISUSE(tg_text_ids) { GIVES(tg_text_ids(NULL), NULL); }
MISUSE(tg_text_encode_byte) { GIVES(tg_text_encode_byte(NULL, 'a'), -1); }
MISUSE(tg_text_decode_id) {
    GIVES(tg_text_decode_id(NULL, 0), -1);
    tg_text *text = small_text();
    GIVES(tg_text_decode_id(text, 10), -1);
    GIVES(tg_text_decode_id(text, -1), -1);
    tg_text_free(text);
}
MISUSE(tg_text_check_vocab) {
    GIVES(tg_text_check_vocab(NULL, 10), TG_ERR_INVALID);
    tg_text *text = small_text();
    REFUSED(tg_text_check_vocab(text, -1));
    tg_text_free(text);
}
MISUSE(tg_text_split) {
    GIVES(tg_text_split(NULL, 0.5, 2, 1), TG_ERR_INVALID);
    tg_text *text = small_text();
    REFUSED(tg_text_split(text, -0.5, 2, 1));
    REFUSED(tg_text_split(text, NAN, 2, 1));
    REFUSED(tg_text_split(text, 0.5, -2, 1));
    REFUSED(tg_text_split(text, 0.5, 11, 1));
    tg_text_free(text);
}
MISUSE(tg_text_part_length) {
    GIVES(tg_text_part_length(NULL, TG_TEXT_TRAIN), 0);
    tg_text *text = small_text();
    GIVES(tg_text_part_length(text, (tg_text_part)7), 0);
    tg_text_free(text);
}
MISUSE(tg_text_batcher_new) {
    NULLED_QUIETLY(tg_text_batcher_new(NULL, TG_TEXT_TRAIN, TG_TEXT_RANDOM, 1, 1, 1));
    tg_text *text = small_text();
    NULLED(tg_text_batcher_new(text, (tg_text_part)7, TG_TEXT_RANDOM, 1, 1, 1));
    NULLED(tg_text_batcher_new(text, TG_TEXT_TRAIN, (tg_text_order)7, 1, 1, 1));
    NULLED(tg_text_batcher_new(text, TG_TEXT_TRAIN, TG_TEXT_RANDOM, 1, -1, 1));
    NULLED(tg_text_batcher_new(text, TG_TEXT_TRAIN, TG_TEXT_RANDOM, INT64_MAX, 1 << 30, 1));
    tg_text_free(text);
}
MISUSE(tg_text_batcher_free) { tg_text_batcher_free(NULL); }
MISUSE(tg_text_batcher_windows) { GIVES(tg_text_batcher_windows(NULL), 0); }
MISUSE(tg_text_batcher_next_into) {
    GIVES(tg_text_batcher_next_into(NULL, W.x, W.x), -1);
    tg_text *text = small_text();
    tg_text_batcher *b = tg_text_batcher_new(text, TG_TEXT_TRAIN, TG_TEXT_RANDOM, 1, 3, 1);
    cr_assert_not_null(b, "%s", tg_errmsg(W.ctx));
    tg_clear_error(W.ctx);
    GIVES(tg_text_batcher_next_into(b, NULL, NULL), -1);
    expect_message("tg_text_batcher_next_into(b, NULL, NULL)");
    GIVES(tg_text_batcher_next_into(b, W.w, W.x), -1); /* [3], not [1,3] */
    expect_message("tg_text_batcher_next_into(b, W.w, W.x)");
    tg_text_batcher_free(b);
    tg_text_free(text);
}

/* ---- save and load ----------------------------------------------------------------------- */

static void tensors_file_misuse(tg_status (*fn)(tg_ctx *, const char *, tg_tensor *const *, int)) {
    const char *path = "/tmp/tapegrad-misuse-never-written.safetensors";
    GIVES(fn(NULL, path, &W.w, 1), TG_ERR_INVALID);
    REFUSED(fn(W.ctx, NULL, &W.w, 1));
    REFUSED(fn(W.ctx, path, NULL, 1));
    REFUSED(fn(W.ctx, path, &W.w, -1));
}
MISUSE(tg_save_safetensors) { tensors_file_misuse(tg_save_safetensors); }
MISUSE(tg_load_safetensors) { tensors_file_misuse(tg_load_safetensors); }
MISUSE(tg_check_save_path) {
    GIVES(tg_check_save_path(NULL, "/tmp/x.safetensors"), TG_ERR_INVALID);
    REFUSED(tg_check_save_path(W.ctx, NULL));
}
MISUSE(tg_module_save) {
    GIVES(tg_module_save(NULL, "/tmp/x.safetensors"), TG_ERR_INVALID);
    REFUSED(tg_module_save(W.linear, NULL));
}
MISUSE(tg_module_load) {
    GIVES(tg_module_load(NULL, "/tmp/x.safetensors"), TG_ERR_INVALID);
    REFUSED(tg_module_load(W.linear, NULL));
}

/* ---- gradient checking and random numbers ------------------------------------------------ */

MISUSE(tg_gradcheck_defaults) { cr_expect_gt(tg_gradcheck_defaults().eps, 0.0); }
MISUSE(tg_gradcheck) {
    tg_gradcheck_result r;
    int exp_id = tg_op_find(W.ctx, "exp");
    GIVES(tg_gradcheck(NULL, exp_id, 0, NULL, &r), TG_ERR_INVALID);
    REFUSED(tg_gradcheck(W.ctx, exp_id, 0, NULL, NULL));
    const double bad[] = {0.0, -1e-3, NAN, INFINITY};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tg_gradcheck_opts o = tg_gradcheck_defaults();
        o.eps = bad[i];
        REFUSED(tg_gradcheck(W.ctx, exp_id, 0, &o, &r));
        o = tg_gradcheck_defaults();
        o.atol = bad[i];
        REFUSED(tg_gradcheck(W.ctx, exp_id, 0, &o, &r));
        o = tg_gradcheck_defaults();
        o.rtol = bad[i];
        REFUSED(tg_gradcheck(W.ctx, exp_id, 0, &o, &r));
    }
}
static tg_tensor *sum_of(tg_tape *t, tg_tensor *const *in, int n, void *user) {
    (void)n, (void)user;
    return tg_sum(t, in[0]);
}
MISUSE(tg_gradcheck_function) {
    tg_gradcheck_result r;
    GIVES(tg_gradcheck_function(NULL, sum_of, NULL, &W.w, 1, NULL, &r), TG_ERR_INVALID);
    REFUSED(tg_gradcheck_function(W.ctx, NULL, NULL, &W.w, 1, NULL, &r));
    REFUSED(tg_gradcheck_function(W.ctx, sum_of, NULL, NULL, 1, NULL, &r));
    REFUSED(tg_gradcheck_function(W.ctx, sum_of, NULL, &W.w, 1, NULL, NULL));
    REFUSED(tg_gradcheck_function(W.ctx, sum_of, NULL, &W.foreign, 1, NULL, &r));
    tg_tensor *none[1] = {NULL};
    REFUSED(tg_gradcheck_function(W.ctx, sum_of, NULL, none, 1, NULL, &r));
    tg_gradcheck_opts o = tg_gradcheck_defaults();
    o.max_elements = -1;
    REFUSED(tg_gradcheck_function(W.ctx, sum_of, NULL, &W.w, 1, &o, &r));
}
MISUSE(tg_rng_seed) { tg_rng_seed(NULL, 1); }
MISUSE(tg_rng_u32) { GIVES(tg_rng_u32(NULL), 0u); }
MISUSE(tg_rng_uniform) { GIVES(tg_rng_uniform(NULL), 0.0f); }
MISUSE(tg_rng_normal) { GIVES(tg_rng_normal(NULL), 0.0); }
MISUSE(tg_rng_below) { GIVES(tg_rng_below(NULL, 5), 0u); }
