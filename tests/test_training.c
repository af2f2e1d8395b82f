/*
 * tests/test_training.c — end-to-end training with fixed seeds that must converge: an MLP on the
 * bundled digits, an LSTM on the adding problem, a small MLP on two spirals.
 */
#include "fixture.h"

TestSuite(training, .init = fixture_setup, .fini = fixture_teardown);

/* A body, and for sequence models a linear head on the body's last hidden state. */
typedef struct model {
    tg_module *body, *head;
} model;

static tg_tensor *forward(const model *m, tg_tensor *x) {
    if (!m->head) return tg_module_forward(m->body, tape, x);
    return tg_module_forward(m->head, tape, tg_rnn_forward(m->body, tape, x, NULL));
}

/* Trains with Adam (global-norm clip 1) for `epochs`, minibatches of `batch`. */
static void fit(const model *m, const tg_dataset *train, int epochs, int64_t batch, float lr,
                bool regression) {
    tg_tensor *params[64];
    int n = tg_module_params(m->body, params, 64);
    if (m->head) n += tg_module_params(m->head, params + n, 64 - n);
    tg_optimizer_config adam = {.kind = TG_OPT_ADAM, .lr = lr};
    tg_optimizer *opt = tg_optimizer_new(ctx, params, n, &adam);
    tg_batcher *batches = tg_batcher_new(train, batch, true, true, 5);
    cr_assert(opt && batches, "%s", tg_errmsg(ctx));
    for (int epoch = 0; epoch < epochs; epoch++) {
        tg_tensor *x, *y;
        while (tg_tape_reset(tape), tg_batcher_next(batches, tape, &x, &y)) {
            tg_tensor *out = forward(m, x);
            tg_tensor *loss = regression ? tg_mse(tape, tg_reshape(tape, out, TG_SHAPE(batch)), y)
                                         : tg_cross_entropy(tape, out, y);
            cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
            tg_clip_grad_norm(params, n, 1.0, 2.0, false, NULL);
            tg_optimizer_step(opt);
            tg_optimizer_zero_grad(opt);
        }
    }
    tg_batcher_free(batches);
    tg_optimizer_free(opt);
}

static float test_accuracy(tg_module *net, const tg_dataset *test) {
    tg_tape_reset(tape);
    tg_no_grad_begin(tape);
    tg_module_set_training(net, false);
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(test->count, tg_dataset_x_size(test)), test->x);
    tg_tensor *y = tg_tape_from_data(tape, TG_SHAPE(test->count), test->y);
    float accuracy = tg_accuracy(tg_module_forward(net, tape, x), y);
    tg_no_grad_end(tape);
    return accuracy;
}

Test(training, mlp_reaches_95_percent_on_digits) {
    tg_dataset *digits = tg_dataset_digits(ctx), *train, *test;
    cr_assert_not_null(digits, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_dataset_split(digits, 0.2, 42, &train, &test), TG_OK);
    tg_mlp_config c = {.in = 64, .out = 10, .width = 64, .depth = 2, .activation = TG_ACT_RELU,
                       .init = tg_init_he(TG_ACT_RELU), .seed = 7};
    tg_module *mlp = tg_mlp_new(ctx, "mlp", &c);
    fit(&(model){mlp, NULL}, train, 15, 32, 3e-3f, false);
    float accuracy = test_accuracy(mlp, test);
    cr_expect_geq(accuracy, 0.95f, "test accuracy %.4f", (double)accuracy);
    tg_module_free(mlp);
    tg_dataset_free(digits);
    tg_dataset_free(train);
    tg_dataset_free(test);
}

Test(training, lstm_beats_the_adding_problem_baseline_at_t50) {
    const int64_t length = 50;
    tg_dataset *train = tg_dataset_adding(ctx, 6400, length, 1), *test = tg_dataset_adding(ctx, 500, length, 2);
    cr_assert(train && test, "%s", tg_errmsg(ctx));
    tg_rnn_config rc = tg_rnn_defaults(TG_RNN_LSTM, 2, 16);
    model m = {tg_rnn_new(ctx, "lstm", &rc), tg_linear_new(ctx, "head", 16, 1, true, NULL, 3)};
    fit(&m, train, 3, 32, 1e-2f, true); /* 600 steps */
    tg_tape_reset(tape);
    tg_no_grad_begin(tape);
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(test->count, length, 2), test->x);
    tg_tensor *mse = tg_mse(tape, tg_reshape(tape, forward(&m, x), TG_SHAPE(test->count)),
                            tg_tape_from_data(tape, TG_SHAPE(test->count), test->y));
    cr_assert_not_null(mse, "%s", tg_errmsg(ctx));
    cr_expect_lt(mse->data[0], 0.05f, "test MSE %.4f (baseline 0.167)", (double)mse->data[0]);
    tg_module_free(m.body);
    tg_module_free(m.head);
    tg_dataset_free(train);
    tg_dataset_free(test);
}

Test(training, small_mlp_separates_two_spirals) {
    tg_dataset *train = tg_dataset_spirals(ctx, 400, 0.05f, 1), *test = tg_dataset_spirals(ctx, 200, 0.05f, 2);
    cr_assert(train && test, "%s", tg_errmsg(ctx));
    tg_mlp_config c = {.in = 2, .out = 2, .width = 32, .depth = 3, .activation = TG_ACT_TANH, .seed = 3};
    tg_module *mlp = tg_mlp_new(ctx, "spiral", &c);
    fit(&(model){mlp, NULL}, train, 150, 40, 1e-2f, false);
    float accuracy = test_accuracy(mlp, test);
    cr_expect_geq(accuracy, 0.95f, "test accuracy %.4f", (double)accuracy);
    tg_module_free(mlp);
    tg_dataset_free(train);
    tg_dataset_free(test);
}
