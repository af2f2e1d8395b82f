/* tests/test_replay.c — tg_tape_replay: a recorded step run again gives the numbers a new
 * recording gives, allocates nothing, and refuses what it could not redo. */
#include "helpers.h"

#define BATCH 8
#define IN 6
#define HIDDEN 5
#define CLASSES 3
#define STEPS 4

/* The parameters of a 2-layer MLP, the same numbers in every context made with the seed. */
typedef struct mlp {
    tg_tensor *p[4];
} mlp;

static mlp mlp_new(tg_ctx *ctx) {
    const int64_t shapes[4][2] = {{HIDDEN, IN}, {HIDDEN, 1}, {CLASSES, HIDDEN}, {CLASSES, 1}};
    mlp m;
    for (int i = 0; i < 4; i++) {
        m.p[i] = i % 2 ? tg_zeros(ctx, 1, shapes[i]) : tg_zeros(ctx, 2, shapes[i]);
        cr_assert_not_null(m.p[i], "%s", tg_errmsg(ctx));
        tg_fill_normal(m.p[i], 0, 0.5f, (uint64_t)i + 1);
        tg_set_requires_grad(m.p[i], true);
    }
    return m;
}

static tg_tensor *mlp_loss(tg_tape *tape, const mlp *m, tg_tensor *x, tg_tensor *labels) {
    tg_tensor *h = tg_tanh(tape, tg_linear(tape, x, m->p[0], m->p[1]));
    return tg_cross_entropy(tape, tg_linear(tape, h, m->p[2], m->p[3]), labels);
}

/* Batch `step` of a fixed sequence, different at every step. */
static void batch_of(int step, float *x, float *labels) {
    for (int i = 0; i < BATCH * IN; i++) x[i] = sinf(0.37f * (float)(i + 11 * step));
    for (int i = 0; i < BATCH; i++) labels[i] = (float)((i + step) % CLASSES);
}

static void sgd_step(const mlp *m) {
    for (int i = 0; i < 4; i++) {
        for (int64_t j = 0; j < m->p[i]->size; j++) m->p[i]->data[j] -= 0.1f * m->p[i]->grad[j];
        tg_zero_grad(m->p[i]);
    }
}

static void expect_same_bits(const tg_tensor *a, const tg_tensor *b, const char *what) {
    cr_assert_eq(a->size, b->size);
    cr_expect(memcmp(a->data, b->data, (size_t)a->size * sizeof(float)) == 0,
              "%s differs: a replayed step must compute what a recorded one does", what);
}

Test(replay, training_steps_match_recorded_steps_bit_for_bit) {
    tg_ctx *ctx_rec = tg_ctx_new(), *ctx_rep = tg_ctx_new();
    mlp rec = mlp_new(ctx_rec), rep = mlp_new(ctx_rep);
    tg_tape *tape_rec = tg_tape_new(ctx_rec), *tape_rep = tg_tape_new(ctx_rep);
    float xs[BATCH * IN], labels[BATCH];
    /* the replayed loop: record once on tensors it keeps, then write each batch into them */
    tg_tensor *x = tg_tape_zeros(tape_rep, TG_SHAPE(BATCH, IN));
    tg_tensor *y = tg_tape_zeros(tape_rep, TG_SHAPE(BATCH));
    tg_tensor *loss_rep = NULL;
    for (int step = 0; step < STEPS; step++) {
        batch_of(step, xs, labels);
        tg_tape_reset(tape_rec);
        tg_tensor *loss_rec = mlp_loss(tape_rec, &rec,
                                       tg_tape_from_data(tape_rec, TG_SHAPE(BATCH, IN), xs),
                                       tg_tape_from_data(tape_rec, TG_SHAPE(BATCH), labels));
        cr_assert_eq(tg_backward(tape_rec, loss_rec), TG_OK, "%s", tg_errmsg(ctx_rec));

        cr_assert_eq(tg_copy_in(x, xs, BATCH * IN), TG_OK);
        cr_assert_eq(tg_copy_in(y, labels, BATCH), TG_OK);
        if (step == 0) loss_rep = mlp_loss(tape_rep, &rep, x, y);
        else cr_assert_eq(tg_tape_replay(tape_rep), TG_OK, "%s", tg_errmsg(ctx_rep));
        cr_assert_eq(tg_backward(tape_rep, loss_rep), TG_OK, "%s", tg_errmsg(ctx_rep));

        expect_same_bits(loss_rec, loss_rep, "the loss");
        for (int i = 0; i < 4; i++) {
            cr_assert_eq(memcmp(rec.p[i]->grad, rep.p[i]->grad,
                                (size_t)rec.p[i]->size * sizeof(float)), 0,
                         "step %d: the gradient of parameter %d differs", step, i);
        }
        sgd_step(&rec);
        sgd_step(&rep);
    }
    cr_expect_eq(tg_tape_step(tape_rep), STEPS - 1, "every replay counts as a step");
    for (int i = 0; i < 4; i++) expect_same_bits(rec.p[i], rep.p[i], "a parameter after training");
    tg_tape_free(tape_rec);
    tg_tape_free(tape_rep);
    tg_ctx_free(ctx_rec);
    tg_ctx_free(ctx_rep);
}

/* Ops that save for backward (max pooling's argmax, batch norm's statistics, the LSTM's gates)
 * and that take scratch (the convolution's columns): the replay reuses what the recording
 * took, so the tape's memory stays where it was, and the numbers are those of a recording. */
typedef struct conv_net {
    tg_tensor *w, *b, *gamma, *beta, *mean, *var;
    tg_module *lstm;
} conv_net;

static conv_net conv_net_new(tg_ctx *ctx) {
    conv_net n;
    n.w = tg_zeros(ctx, 4, (int64_t[]){4, 2, 3, 3});
    n.b = tg_zeros(ctx, 1, (int64_t[]){4});
    n.gamma = tg_zeros(ctx, 1, (int64_t[]){4});
    n.beta = tg_zeros(ctx, 1, (int64_t[]){4});
    n.mean = tg_zeros(ctx, 1, (int64_t[]){4});
    n.var = tg_zeros(ctx, 1, (int64_t[]){4});
    tg_fill_normal(n.w, 0, 0.3f, 7);
    tg_fill_normal(n.gamma, 1, 0.1f, 8);
    tg_fill(n.var, 1.0f);
    tg_tensor *trained[] = {n.w, n.b, n.gamma, n.beta};
    for (int i = 0; i < 4; i++) tg_set_requires_grad(trained[i], true);
    tg_rnn_config config = tg_rnn_defaults(TG_RNN_LSTM, 4, 3);
    n.lstm = tg_rnn_new(ctx, "lstm", &config);
    cr_assert_not_null(n.lstm, "%s", tg_errmsg(ctx));
    return n;
}

/* conv -> batch norm -> relu -> 2x2 max pool [2,4,2,2] -> as a sequence [2,4,4] -> LSTM -> sum */
static tg_tensor *conv_net_loss(tg_tape *tape, const conv_net *n, tg_tensor *x) {
    tg_tensor *h = tg_conv2d(tape, x, n->w, n->b, &(tg_conv2d_opts){.pad_h = 1, .pad_w = 1});
    h = tg_relu(tape, tg_batch_norm(tape, h, n->gamma, n->beta, n->mean, n->var, 0.1f, 1e-5f, true));
    h = tg_max_pool2d(tape, h, 2, 2, 0, 0, 0, 0);
    h = tg_reshape(tape, h, TG_SHAPE(2, 4, 4));
    return tg_sum(tape, tg_module_forward(n->lstm, tape, h));
}

static void image_of(int step, float *x) {
    for (int i = 0; i < 2 * 2 * 4 * 4; i++) x[i] = cosf(0.61f * (float)(i + 5 * step));
}

Test(replay, saved_buffers_and_scratch_are_reused) {
    tg_ctx *ctx_rec = tg_ctx_new(), *ctx_rep = tg_ctx_new();
    conv_net rec = conv_net_new(ctx_rec), rep = conv_net_new(ctx_rep);
    tg_tape *tape_rec = tg_tape_new(ctx_rec), *tape_rep = tg_tape_new(ctx_rep);
    float xs[2 * 2 * 4 * 4];
    tg_tensor *x = tg_tape_zeros(tape_rep, TG_SHAPE(2, 2, 4, 4)), *loss_rep = NULL;
    size_t bytes_after_first = 0;
    for (int step = 0; step < STEPS; step++) {
        image_of(step, xs);
        tg_tape_reset(tape_rec);
        tg_tensor *loss_rec = conv_net_loss(tape_rec, &rec,
                                            tg_tape_from_data(tape_rec, TG_SHAPE(2, 2, 4, 4), xs));
        cr_assert_eq(tg_backward(tape_rec, loss_rec), TG_OK, "%s", tg_errmsg(ctx_rec));
        cr_assert_eq(tg_copy_in(x, xs, 2 * 2 * 4 * 4), TG_OK);
        if (step == 0) loss_rep = conv_net_loss(tape_rep, &rep, x);
        else cr_assert_eq(tg_tape_replay(tape_rep), TG_OK, "%s", tg_errmsg(ctx_rep));
        cr_assert_eq(tg_backward(tape_rep, loss_rep), TG_OK, "%s", tg_errmsg(ctx_rep));
        if (step == 0) bytes_after_first = tg_tape_bytes_in_use(tape_rep);
        else cr_expect_eq(tg_tape_bytes_in_use(tape_rep), bytes_after_first,
                          "step %d: the replayed step took %zu more arena bytes", step,
                          tg_tape_bytes_in_use(tape_rep) - bytes_after_first);
        expect_same_bits(loss_rec, loss_rep, "the loss");
        expect_same_bits(rec.mean, rep.mean, "batch norm's running mean");
        cr_assert_eq(memcmp(rec.w->grad, rep.w->grad, (size_t)rec.w->size * sizeof(float)), 0,
                     "step %d: the convolution's weight gradient differs", step);
        tg_tensor *rec_params[] = {rec.w, rec.b, rec.gamma, rec.beta};
        tg_tensor *rep_params[] = {rep.w, rep.b, rep.gamma, rep.beta};
        for (int i = 0; i < 4; i++) {
            tg_zero_grad(rec_params[i]);
            tg_zero_grad(rep_params[i]);
        }
        tg_module_zero_grad(rec.lstm);
        tg_module_zero_grad(rep.lstm);
    }
    cr_expect_gt(bytes_after_first, 0);
    tg_module_free(rec.lstm);
    tg_module_free(rep.lstm);
    tg_tape_free(tape_rec);
    tg_tape_free(tape_rep);
    tg_ctx_free(ctx_rec);
    tg_ctx_free(ctx_rep);
}

Test(replay, the_steady_state_allocates_nothing) {
    tally count = {.fail_at = -1};
    tg_ctx *ctx = tg_ctx_new_with_allocator(tally_alloc, &count);
    cr_assert_not_null(ctx);
    conv_net net = conv_net_new(ctx);
    tg_tape *tape = tg_tape_new(ctx);
    float xs[2 * 2 * 4 * 4];
    image_of(0, xs);
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(2, 2, 4, 4), xs);
    tg_tensor *loss = conv_net_loss(tape, &net, x);
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
    long after_first = count.allocations;
    for (int step = 1; step < 10; step++) {
        image_of(step, xs);
        cr_assert_eq(tg_copy_in(x, xs, 2 * 2 * 4 * 4), TG_OK);
        cr_assert_eq(tg_tape_replay(tape), TG_OK, "%s", tg_errmsg(ctx));
        cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
    }
    cr_expect_eq(count.allocations, after_first, "%ld allocations in 9 replayed steps",
                 count.allocations - after_first);
    cr_expect_gt(after_first, 0, "the counting allocator saw nothing: the test would be vacuous");
    tg_module_free(net.lstm);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
    cr_expect_eq(count.live_bytes, 0, "%ld bytes not freed", count.live_bytes);
}

Test(replay, a_replay_before_any_backward_reruns_the_forward) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *w = leaf(ctx, 1, (int64_t[]){3}, (float[]){1, 2, 3});
    tg_tensor *y = tg_mul(tape, w, w);
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    w->data[1] = -4.0f;
    cr_assert_eq(tg_tape_replay(tape), TG_OK, "%s", tg_errmsg(ctx));
    expect_close(y->data, (float[]){1, 16, 9}, 3, 0.0f, "y after the replay");
    cr_assert_eq(tg_backward_with(tape, y, (float[]){1, 1, 1}), TG_OK, "%s", tg_errmsg(ctx));
    expect_close(w->grad, (float[]){2, -8, 6}, 3, 0.0f, "dy/dw");
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

Test(replay, a_tape_leaf_accumulates_its_gradient_over_replays) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(2), (float[]){3, 4});
    cr_assert_eq(tg_set_requires_grad(x, true), TG_OK);
    tg_tensor *loss = tg_sum(tape, tg_square(tape, x));
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_tape_replay(tape), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
    expect_close(x->grad, (float[]){12, 16}, 2, 0.0f, "two passes of 2x, as a parameter's grad");
    tg_zero_grad(x);
    cr_assert_eq(tg_tape_replay(tape), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
    expect_close(x->grad, (float[]){6, 8}, 2, 0.0f, "one pass after tg_zero_grad");
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

Test(replay, ops_recorded_after_the_first_backward_are_kept_not_replayed) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *w = leaf(ctx, 1, (int64_t[]){1}, (float[]){2});
    tg_tensor *loss = tg_sum(tape, tg_scale(tape, w, 3.0f));
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
    tg_tensor *later = tg_scale(tape, w, 10.0f); /* after the forward: not part of the step */
    cr_assert_not_null(later, "%s", tg_errmsg(ctx));
    w->data[0] = 5.0f;
    cr_assert_eq(tg_tape_replay(tape), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(loss->data[0], 15.0f);
    cr_expect_eq(later->data[0], 20.0f, "an op recorded after the forward keeps its value");
    cr_expect_eq(tg_tape_entries(tape), 3, "and stays on the tape");
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

Test(replay, refuses_what_it_could_not_redo) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    cr_expect_eq(tg_tape_replay(NULL), TG_ERR_INVALID);
    cr_expect_eq(tg_tape_replay(tape), TG_ERR_STATE, "an empty tape");
    expect_errmsg_has(ctx, "tape_replay", "nothing was recorded");
    tg_clear_error(ctx);

    tg_tensor *w = leaf(ctx, 1, (int64_t[]){4}, (float[]){1, 2, 3, 4});
    tg_tensor *input = tg_tape_from_data(tape, TG_SHAPE(4), (float[]){1, 1, 1, 1});
    tg_tensor *scaled = tg_scale(tape, input, 2.0f); /* no gradient wanted: not on the tape */
    tg_tensor *loss = tg_sum(tape, tg_mul(tape, w, scaled));
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
    float before = loss->data[0];
    cr_expect_eq(tg_tape_replay(tape), TG_ERR_STATE);
    expect_errmsg_has(ctx, "tape_replay", "1 op call", "did not go on the tape");
    cr_expect_eq(loss->data[0], before, "a refused replay computes nothing");
    tg_clear_error(ctx);

    tg_tape_reset(tape);
    loss = tg_sum(tape, tg_dropout(tape, w, 0.5f, 42));
    cr_assert_not_null(loss, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_tape_replay(tape), TG_ERR_STATE);
    expect_errmsg_has(ctx, "tape_replay", "dropout", "seed");
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

/* An op whose forward fails on a negative input, to stop a replay part-way. */
static tg_status picky_forward(tg_op_call *call) {
    const tg_tensor *x = call->inputs[0];
    if (x->data[0] < 0.0f) return tg_op_fail(call, TG_ERR_INVALID, "negative input");
    memcpy(call->output->data, x->data, (size_t)x->size * sizeof(float));
    return TG_OK;
}

static tg_status picky_backward(const tg_op_call *call) {
    float *gx = call->inputs[0]->grad;
    for (int64_t i = 0; gx && i < call->output->size; i++) gx[i] += call->output->grad[i];
    return TG_OK;
}

/* A context with a one-input op `name` (output shaped like its input) registered as *id. */
static tg_ctx *ctx_with_op(const char *name, tg_forward_fn forward, tg_backward_fn backward,
                           int *id) {
    tg_ctx *ctx = tg_ctx_new();
    tg_op_def def = {.name = name, .arity = 1, .infer_shape = infer_like_first_input,
                     .forward = forward, .backward = backward};
    *id = tg_op_register(ctx, &def);
    cr_assert_geq(*id, 0, "%s", tg_errmsg(ctx));
    return ctx;
}

Test(replay, a_failed_replay_blocks_backward_until_a_good_one) {
    int id;
    tg_ctx *ctx = ctx_with_op("picky", picky_forward, picky_backward, &id);
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *w = leaf(ctx, 1, (int64_t[]){1}, (float[]){1});
    tg_tensor *loss = tg_sum(tape, tg_call_id(tape, id, &w, 1, NULL, 0));
    cr_assert_not_null(loss, "%s", tg_errmsg(ctx));
    w->data[0] = -1.0f;
    cr_expect_eq(tg_tape_replay(tape), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "picky", "negative input");
    tg_clear_error(ctx);
    cr_expect_eq(tg_backward(tape, loss), TG_ERR_STATE);
    expect_errmsg_has(ctx, "replay stopped part-way");
    w->data[0] = 3.0f;
    cr_assert_eq(tg_tape_replay(tape), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(loss->data[0], 3.0f);
    cr_expect_eq(w->grad[0], 1.0f);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

static tg_status count_forward(tg_ctx *ctx, const tg_hook_event *event, void *user) {
    (void)ctx;
    (void)event;
    (*(int *)user)++;
    return TG_OK;
}

Test(replay, forward_hooks_and_anomaly_mode_watch_a_replay) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    int seen = 0;
    cr_assert_gt(tg_hook_global(ctx, TG_PASS_FORWARD, count_forward, &seen), 0);
    tg_tensor *w = leaf(ctx, 1, (int64_t[]){2}, (float[]){1, 2});
    tg_tensor *loss = tg_sum(tape, tg_log(tape, w));
    cr_assert_not_null(loss, "%s", tg_errmsg(ctx));
    cr_expect_eq(seen, 2, "the recording: two outputs");
    cr_assert_eq(tg_tape_replay(tape), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(seen, 4, "the replay: the same two again");
    cr_assert_eq(tg_set_anomaly_level(ctx, TG_ANOMALY_FULL), TG_OK);
    w->data[0] = -1.0f; /* log(-1) is NaN: born in the replay, at the log */
    cr_expect_eq(tg_tape_replay(tape), TG_ERR_NUMERIC);
    expect_errmsg_has(ctx, "log");
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

/* The tanh cell's backward takes scratch for its pre-activation gradient: given back, or each
 * replayed step would keep a little more of the arena. */
Test(replay, a_tanh_rnn_keeps_its_memory_over_replays) {
    tg_ctx *ctx = tg_ctx_new();
    tg_rnn_config config = tg_rnn_defaults(TG_RNN_TANH, 3, 4);
    tg_module *rnn = tg_rnn_new(ctx, "rnn", &config);
    cr_assert_not_null(rnn, "%s", tg_errmsg(ctx));
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *x = tg_tape_zeros(tape, TG_SHAPE(2, 5, 3));
    tg_fill(x, 0.5f);
    tg_tensor *loss = tg_sum(tape, tg_module_forward(rnn, tape, x));
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
    size_t bytes = tg_tape_bytes_in_use(tape);
    for (int step = 0; step < 3; step++) {
        cr_assert_eq(tg_tape_replay(tape), TG_OK, "%s", tg_errmsg(ctx));
        cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
    }
    cr_expect_eq(tg_tape_bytes_in_use(tape), bytes, "%zu arena bytes more after 3 replays",
                 tg_tape_bytes_in_use(tape) - bytes);
    tg_module_free(rnn);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

/* An op that saves through a copy of its call: the tape cannot tell the copy's node, so it
 * hands out a new buffer each time, and writes nothing outside the arena (ASan watches). */
static tg_status copying_forward(tg_op_call *call) {
    tg_op_call copy = *call;
    float *kept = tg_op_save_for_backward(&copy, sizeof(float));
    if (!kept) return TG_ERR_NOMEM;
    kept[0] = call->inputs[0]->data[0];
    call->saved = kept;
    call->output->data[0] = 2.0f * kept[0];
    return TG_OK;
}

static tg_status copying_backward(const tg_op_call *call) {
    float *gx = call->inputs[0]->grad;
    if (gx) gx[0] += 2.0f * call->output->grad[0];
    return TG_OK;
}

Test(replay, an_op_saving_through_a_copy_of_its_call_still_works) {
    int id;
    tg_ctx *ctx = ctx_with_op("copying", copying_forward, copying_backward, &id);
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *w = leaf(ctx, 1, (int64_t[]){1}, (float[]){1});
    tg_tensor *loss = NULL;
    for (int step = 0; step < 3; step++) {
        w->data[0] = (float)step;
        if (step) cr_assert_eq(tg_tape_replay(tape), TG_OK, "%s", tg_errmsg(ctx));
        else loss = tg_sum(tape, tg_call_id(tape, id, &w, 1, NULL, 0));
        cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
        cr_expect_eq(loss->data[0], 2.0f * (float)step);
    }
    cr_expect_eq(w->grad[0], 6.0f, "three passes of 2");
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

/* The library's own data pipeline in a replayed loop: tg_batcher_next_into fills the tensors
 * the step was recorded on, and the run matches the recorded run with tg_batcher_next (same
 * seed, drop_last) to the bit. */
Test(replay, a_batcher_feeds_a_replayed_loop) {
    tg_ctx *ctx_rec = tg_ctx_new(), *ctx_rep = tg_ctx_new();
    tg_dataset *digits_rec = tg_dataset_digits(ctx_rec), *digits_rep = tg_dataset_digits(ctx_rep);
    cr_assert(digits_rec && digits_rep);
    tg_mlp_config config = {.in = 64, .out = 10, .width = 16, .depth = 2,
                            .activation = TG_ACT_TANH, .init = tg_init_xavier(TG_ACT_TANH), .seed = 3};
    tg_module *mlp_rec = tg_mlp_new(ctx_rec, "mlp", &config), *mlp_rep = tg_mlp_new(ctx_rep, "mlp", &config);
    tg_tensor *p_rec[4], *p_rep[4];
    cr_assert_eq(tg_module_params(mlp_rec, p_rec, 4), 4);
    cr_assert_eq(tg_module_params(mlp_rep, p_rep, 4), 4);
    tg_optimizer_config sgd = {.kind = TG_OPT_SGD, .lr = 0.05f, .momentum = 0.9f};
    tg_optimizer *opt_rec = tg_optimizer_new(ctx_rec, p_rec, 4, &sgd);
    tg_optimizer *opt_rep = tg_optimizer_new(ctx_rep, p_rep, 4, &sgd);
    tg_batcher *b_rec = tg_batcher_new(digits_rec, 100, true, true, 9);
    tg_batcher *b_rep = tg_batcher_new(digits_rep, 100, true, true, 9);
    tg_tape *tape_rec = tg_tape_new(ctx_rec), *tape_rep = tg_tape_new(ctx_rep);
    tg_tensor *x = tg_tape_zeros(tape_rep, TG_SHAPE(100, 64)), *y = tg_tape_zeros(tape_rep, TG_SHAPE(100));
    tg_tensor *loss_rep = NULL;
    int steps = 0;
    for (int epoch = 0; epoch < 2; epoch++) {
        tg_tensor *bx, *by;
        while (tg_tape_reset(tape_rec), tg_batcher_next(b_rec, tape_rec, &bx, &by)) {
            cr_assert(tg_batcher_next_into(b_rep, x, y), "%s", tg_errmsg(ctx_rep));
            tg_tensor *loss_rec = tg_cross_entropy(tape_rec, tg_module_forward(mlp_rec, tape_rec, bx), by);
            cr_assert_eq(tg_backward(tape_rec, loss_rec), TG_OK, "%s", tg_errmsg(ctx_rec));
            if (!loss_rep) loss_rep = tg_cross_entropy(tape_rep, tg_module_forward(mlp_rep, tape_rep, x), y);
            else cr_assert_eq(tg_tape_replay(tape_rep), TG_OK, "%s", tg_errmsg(ctx_rep));
            cr_assert_eq(tg_backward(tape_rep, loss_rep), TG_OK, "%s", tg_errmsg(ctx_rep));
            expect_same_bits(loss_rec, loss_rep, "the loss");
            cr_assert_eq(tg_optimizer_step_zero_grad(opt_rec), TG_OK);
            cr_assert_eq(tg_optimizer_step_zero_grad(opt_rep), TG_OK);
            steps++;
        }
        cr_expect_not(tg_batcher_next_into(b_rep, x, y), "the short last batch ends the epoch");
    }
    cr_expect_eq(steps, 2 * (1797 / 100));
    for (int i = 0; i < 4; i++) expect_same_bits(p_rec[i], p_rep[i], "a parameter after two epochs");

    tg_tensor *wrong = tg_tape_zeros(tape_rep, TG_SHAPE(50, 64));
    cr_expect_not(tg_batcher_next_into(b_rep, wrong, y));
    expect_errmsg_has(ctx_rep, "batcher_next_into: x is [50,64]", "[100,64]");
    tg_clear_error(ctx_rep);
    cr_expect_not(tg_batcher_next_into(b_rep, x, NULL));
    expect_errmsg_has(ctx_rep, "batcher_next_into", "y is NULL");
    cr_expect_not(tg_batcher_next_into(NULL, x, y));

    tg_batcher_free(b_rec);
    tg_batcher_free(b_rep);
    tg_optimizer_free(opt_rec);
    tg_optimizer_free(opt_rep);
    tg_module_free(mlp_rec);
    tg_module_free(mlp_rep);
    tg_dataset_free(digits_rec);
    tg_dataset_free(digits_rep);
    tg_tape_free(tape_rec);
    tg_tape_free(tape_rep);
    tg_ctx_free(ctx_rec);
    tg_ctx_free(ctx_rep);
}
