/* tests/test_recompute.c — gradient checkpointing (tg_recompute, tg_module_set_recompute): the
 * gradients of a step with recomputed segments are those of the plain step to the bit (MLP with
 * dropout, LSTM in chunks of time, ResNet blocks with batch norm), over several optimizer
 * steps; the tape holds less; replay, hooks and anomaly mode go on working; the steady state
 * allocates nothing; nesting, bad outputs, a function that changes its numbers and
 * second-order products through a segment are refused with a message. */
#include "helpers.h"

/* ---- models, each built the same in two contexts ------------------------------------------ */

typedef struct model {
    tg_ctx *ctx;
    tg_tape *tape;
    tg_module *net;
    tg_optimizer *opt;
    tg_tensor *x, *y;        /* persistent batch: the same numbers in both runs */
    int kind;                /* MLP, LSTM (last h), LSTM (every h, 2 layers), ResNet, LSTM
                                (every h, truncated BPTT every 5 steps) */
} model;

enum { MLP, LSTM_LAST, LSTM_SEQ, RESNET, LSTM_BPTT };

static void fill_batch(model *m, uint64_t seed) {
    tg_fill_normal(m->x, 0.0f, 1.0f, seed);
    tg_fill_normal(m->y, 0.0f, 1.0f, seed + 100);
}

static model build(int kind, tally *count) {
    model m = {0};
    m.kind = kind;
    m.ctx = count ? tg_ctx_new_with_allocator(tally_alloc, count) : tg_ctx_new();
    cr_assert_not_null(m.ctx);
    m.tape = tg_tape_new(m.ctx);
    if (kind == MLP) {
        tg_mlp_config c = {.in = 12, .out = 5, .width = 24, .depth = 4,
                           .activation = TG_ACT_TANH, .dropout = 0.25f, .seed = 3};
        m.net = tg_mlp_new(m.ctx, "mlp", &c);
        m.x = tg_zeros(m.ctx, TG_SHAPE(6, 12));
        m.y = tg_zeros(m.ctx, TG_SHAPE(6, 5));
    } else if (kind == RESNET) {
        tg_resnet_config c = {.channels = 1, .classes = 4, .depth = 8, .width = 4, .skip = true,
                              .seed = 5};
        m.net = tg_resnet_new(m.ctx, "resnet", &c);
        m.x = tg_zeros(m.ctx, TG_SHAPE(3, 1, 8, 8));
        m.y = tg_zeros(m.ctx, TG_SHAPE(3, 4));
    } else {
        tg_rnn_config c = tg_rnn_defaults(TG_RNN_LSTM, 3, 8);
        c.num_layers = kind == LSTM_SEQ ? 2 : 1;
        c.bptt = kind == LSTM_BPTT ? 5 : 0;
        m.net = tg_rnn_new(m.ctx, "lstm", &c);
        m.x = tg_zeros(m.ctx, TG_SHAPE(2, 23, 3));
        bool seq = kind != LSTM_LAST;
        m.y = tg_zeros(m.ctx, seq ? 3 : 2, seq ? (int64_t[]){2, 23, 8} : (int64_t[]){2, 8});
    }
    cr_assert_not_null(m.net, "%s", tg_errmsg(m.ctx));
    m.opt = tg_optimizer_new_module(m.net, &(tg_optimizer_config){.kind = TG_OPT_SGD, .lr = 0.05f});
    cr_assert_not_null(m.opt);
    fill_batch(&m, 1);
    return m;
}

static tg_tensor *forward_loss(model *m) {
    tg_tensor *out;
    if (m->kind == LSTM_SEQ || m->kind == LSTM_BPTT) out = tg_rnn_sequence(m->net, m->tape, m->x, NULL, NULL, NULL);
    else out = tg_module_forward(m->net, m->tape, m->x);
    return tg_mse(m->tape, out, m->y);
}

/* One recorded step: forward, backward; the loss's value. */
static float record_step(model *m) {
    tg_tape_reset(m->tape);
    tg_optimizer_zero_grad(m->opt);
    tg_tensor *loss = forward_loss(m);
    cr_assert_not_null(loss, "%s", tg_errmsg(m->ctx));
    cr_assert_eq(tg_backward(m->tape, loss), TG_OK, "%s", tg_errmsg(m->ctx));
    return loss->data[0];
}

/* Every parameter's gradient and value of a and b agree to the bit. */
static void expect_same_bits(const model *a, const model *b, const char *what) {
    int n = tg_module_param_count(a->net);
    cr_assert_eq(n, tg_module_param_count(b->net));
    for (int i = 0; i < n; i++) {
        const tg_tensor *pa = tg_module_param(a->net, i), *pb = tg_module_param(b->net, i);
        cr_assert_not_null(pa->grad, "%s: %s has no gradient", what, tg_tensor_name(pa));
        cr_assert_not_null(pb->grad, "%s: %s has no gradient (recomputed)", what, tg_tensor_name(pb));
        cr_expect(memcmp(pa->grad, pb->grad, (size_t)pa->size * sizeof(float)) == 0,
                  "%s: gradient of %s differs", what, tg_tensor_name(pa));
        cr_expect(memcmp(pa->data, pb->data, (size_t)pa->size * sizeof(float)) == 0,
                  "%s: value of %s differs", what, tg_tensor_name(pa));
    }
}

static double grad_norm(const model *m) {
    double sum = 0.0;
    for (int i = 0; i < tg_module_param_count(m->net); i++) {
        const tg_tensor *p = tg_module_param(m->net, i);
        for (int64_t j = 0; j < p->size; j++) sum += (double)p->grad[j] * p->grad[j];
    }
    return sqrt(sum);
}

static void free_model(model *m) {
    tg_tape_free(m->tape);
    tg_ctx_free(m->ctx);
}

/* Three optimizer steps of the plain model and of the same model recomputed in segments of
 * `span`: losses, gradients and parameters the same to the bit at every step. */
static void check_identical(int kind, int64_t span) {
    model plain = build(kind, NULL), seg = build(kind, NULL);
    cr_assert_eq(tg_module_set_recompute(seg.net, span), TG_OK);
    cr_expect_eq(tg_module_recompute(seg.net), span);
    for (int step = 0; step < 3; step++) {
        fill_batch(&plain, (uint64_t)step + 1);
        fill_batch(&seg, (uint64_t)step + 1);
        float a = record_step(&plain), b = record_step(&seg);
        cr_expect(memcmp(&a, &b, sizeof a) == 0, "step %d: loss %.9g vs %.9g", step, (double)a, (double)b);
        cr_expect_gt(grad_norm(&plain), 1e-6, "the gradients are not all zero");
        expect_same_bits(&plain, &seg, "after backward");
        tg_optimizer_step(plain.opt);
        tg_optimizer_step(seg.opt);
        expect_same_bits(&plain, &seg, "after the optimizer step");
    }
    /* the recomputed tape holds its segments' boundaries: the recompute node is on it */
    cr_expect_lt(tg_tape_entries(seg.tape), tg_tape_entries(plain.tape));
    free_model(&plain);
    free_model(&seg);
}

Test(recompute, mlp_with_dropout_is_bit_identical) { check_identical(MLP, 1); }
Test(recompute, lstm_in_chunks_of_time_is_bit_identical) { check_identical(LSTM_LAST, 5); }
Test(recompute, stacked_lstm_keeping_every_state_is_bit_identical) { check_identical(LSTM_SEQ, 4); }
/* cuts at a chunk's end (on the tape) and inside chunks (on the scratch tape) */
Test(recompute, truncated_bptt_in_chunks_is_bit_identical) {
    check_identical(LSTM_BPTT, 5);
    check_identical(LSTM_BPTT, 3);
}
Test(recompute, resnet_blocks_with_batch_norm_are_bit_identical) {
    check_identical(RESNET, 1);
    check_identical(RESNET, 2);
}

/* Batch norm's running statistics move once per step, not again in the recompute: in eval mode,
 * which reads them, the two nets give the same outputs, and not those of a net stepped twice. */
Test(recompute, batch_norm_running_statistics_updated_once) {
    model plain = build(RESNET, NULL), seg = build(RESNET, NULL), twice = build(RESNET, NULL);
    tg_module_set_recompute(seg.net, 1);
    record_step(&plain);
    record_step(&seg);
    record_step(&twice);
    record_step(&twice);
    float out[3][12];
    model *nets[3] = {&plain, &seg, &twice};
    for (int k = 0; k < 3; k++) {
        tg_module_set_training(nets[k]->net, false);
        tg_tape_reset(nets[k]->tape);
        tg_tensor *y = tg_module_forward(nets[k]->net, nets[k]->tape, nets[k]->x);
        cr_assert_not_null(y, "%s", tg_errmsg(nets[k]->ctx));
        cr_assert_eq(y->size, 12);
        memcpy(out[k], y->data, sizeof out[k]);
    }
    cr_expect(memcmp(out[0], out[1], sizeof out[0]) == 0, "eval outputs differ");
    cr_expect(memcmp(out[0], out[2], sizeof out[0]) != 0, "the statistics did not move");
    for (int k = 0; k < 3; k++) free_model(nets[k]);
}

/* ---- an explicit segment ---------------------------------------------------------------------- */

typedef struct two_layers {
    tg_tensor *w1, *w2;
    int runs;
} two_layers;

/* tanh(tanh(x w1^T) w2^T) and x's square: two outputs, one of them read inside again. */
static tg_status two_layer_fn(tg_tape *tape, tg_tensor *const *in, int n_in, tg_tensor **out,
                              int n_out, void *user) {
    cr_assert_eq(n_in, 1);
    cr_assert_eq(n_out, 2);
    two_layers *t = user;
    t->runs++;
    tg_tensor *h = tg_tanh(tape, tg_matmul(tape, in[0], t->w1));
    out[0] = h;
    out[1] = tg_tanh(tape, tg_matmul(tape, h, t->w2));
    return out[1] ? TG_OK : TG_ERR_INVALID;
}

/* Two weights [5,7] and [7,3], random (or zero), requiring gradients. */
static two_layers make_weights(tg_ctx *ctx, bool random) {
    tg_tensor *w1 = tg_zeros(ctx, TG_SHAPE(5, 7)), *w2 = tg_zeros(ctx, TG_SHAPE(7, 3));
    cr_assert(w1 && w2);
    if (random) {
        tg_fill_normal(w1, 0, 0.5f, 1);
        tg_fill_normal(w2, 0, 0.5f, 2);
    }
    tg_set_requires_grad(w1, true);
    tg_set_requires_grad(w2, true);
    return (two_layers){w1, w2, 0};
}

static tg_tensor *two_layer_loss(tg_tape *tape, tg_tensor *x, two_layers *t, bool segment) {
    tg_tensor *in = tg_tanh(tape, x), *out[2];
    if (segment) {
        cr_assert_eq(tg_recompute(tape, two_layer_fn, t, 1, &in, 2, out), TG_OK, "%s",
                     tg_errmsg(tg_tape_ctx(tape)));
    } else {
        cr_assert_eq(two_layer_fn(tape, &in, 1, out, 2, t), TG_OK);
    }
    /* both outputs read outside, and the input too: its gradient sums both sides */
    return tg_add(tape, tg_add(tape, tg_sum(tape, tg_square(tape, out[1])), tg_mean(tape, out[0])),
                  tg_sum(tape, in));
}

Test(recompute, explicit_segment_with_two_outputs_and_an_input_gradient) {
    tg_ctx *ctx = tg_ctx_new();
    two_layers t = make_weights(ctx, true);
    tg_tensor *w1 = t.w1, *w2 = t.w2;
    float want[3][64], x_grad[5 * 4];
    tg_tape *tape = tg_tape_new(ctx);
    for (int pass = 0; pass < 2; pass++) {
        tg_tape_reset(tape);
        tg_zero_grad(w1);
        tg_zero_grad(w2);
        tg_tensor *x = tg_tape_zeros(tape, TG_SHAPE(4, 5));
        tg_fill_normal(x, 0, 1, 9);
        tg_set_requires_grad(x, true);
        t.runs = 0;
        tg_tensor *loss = two_layer_loss(tape, x, &t, pass == 1);
        cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
        cr_expect_eq(t.runs, pass == 1 ? 2 : 1, "the function ran %d times", t.runs);
        if (pass == 0) {
            memcpy(want[0], w1->grad, 35 * sizeof(float));
            memcpy(want[1], w2->grad, 21 * sizeof(float));
            memcpy(x_grad, x->grad, sizeof x_grad);
        } else {
            cr_expect(memcmp(want[0], w1->grad, 35 * sizeof(float)) == 0, "w1's gradient");
            cr_expect(memcmp(want[1], w2->grad, 21 * sizeof(float)) == 0, "w2's gradient");
            cr_expect(memcmp(x_grad, x->grad, sizeof x_grad) == 0, "the input's gradient");
        }
    }
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

/* ---- memory, allocations, replay ------------------------------------------------------------ */

Test(recompute, lstm_tape_peak_is_smaller) {
    size_t peak[2];
    for (int r = 0; r < 2; r++) {
        tg_ctx *ctx = tg_ctx_new();
        tg_rnn_config c = tg_rnn_defaults(TG_RNN_LSTM, 4, 32);
        tg_module *lstm = tg_rnn_new(ctx, "lstm", &c);
        if (r) tg_module_set_recompute(lstm, 10);
        tg_tape *tape = tg_tape_new(ctx);
        tg_tensor *x = tg_tape_zeros(tape, TG_SHAPE(4, 200, 4));
        tg_fill_normal(x, 0, 1, 1);
        tg_tensor *loss = tg_sum(tape, tg_module_forward(lstm, tape, x));
        cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
        peak[r] = tg_tape_bytes_peak(tape);
        tg_tape_free(tape);
        tg_ctx_free(ctx);
    }
    cr_expect_lt(peak[1], peak[0] / 2, "recomputed peak %zu vs plain %zu", peak[1], peak[0]);
}

/* Steps of a recomputed LSTM and ResNet allocate nothing once the first has grown the tapes. */
static void check_steady(int kind, int64_t span) {
    tally count = {.fail_at = -1};
    model m = build(kind, &count);
    tg_module_set_recompute(m.net, span);
    for (int step = 0; step < 2; step++) {
        record_step(&m);
        tg_optimizer_step(m.opt);
    }
    long before = count.allocations;
    for (int step = 0; step < 3; step++) {
        record_step(&m);
        tg_optimizer_step(m.opt);
    }
    tg_optimizer_free(m.opt);
    tg_module_free(m.net);
    expect_steady_then_freed(&count, before, "3 recomputed steps", m.tape, m.ctx);
}

Test(recompute, steady_state_allocates_nothing) {
    check_steady(LSTM_SEQ, 4);
    check_steady(RESNET, 1);
    check_steady(MLP, 1);
}

/* A replayed step runs the segments again: the same gradients as recording the new batch. */
Test(recompute, replay_recomputes_the_segments) {
    model plain = build(LSTM_LAST, NULL), seg = build(LSTM_LAST, NULL);
    tg_module_set_recompute(seg.net, 6);
    tg_tensor *loss = forward_loss(&seg);
    cr_assert_eq(tg_backward(seg.tape, loss), TG_OK, "%s", tg_errmsg(seg.ctx));
    fill_batch(&seg, 7);
    fill_batch(&plain, 7);
    cr_assert_eq(tg_tape_replay(seg.tape), TG_OK, "%s", tg_errmsg(seg.ctx));
    tg_optimizer_zero_grad(seg.opt);
    cr_assert_eq(tg_backward(seg.tape, loss), TG_OK, "%s", tg_errmsg(seg.ctx));
    float want = record_step(&plain);
    cr_expect(memcmp(&want, loss->data, sizeof want) == 0, "loss %.9g vs %.9g", (double)want,
              (double)loss->data[0]);
    expect_same_bits(&plain, &seg, "replayed");
    free_model(&plain);
    free_model(&seg);
}

/* ---- hooks, anomaly mode, second order ------------------------------------------------------ */

typedef struct hook_tally {
    int calls;
    double sum;
} hook_tally;

static tg_status tally_hook(tg_ctx *ctx, const tg_hook_event *e, void *user) {
    (void)ctx;
    hook_tally *t = user;
    t->calls++;
    for (int64_t j = 0; j < e->size; j++) t->sum += e->values[j];
    return TG_OK;
}

/* Pattern hooks on the states inside the chunks, and parameter hooks, fire as often and see the
 * same gradients as in the plain step; forward hooks fire once per state. */
Test(recompute, hooks_see_the_plain_steps_gradients) {
    hook_tally got[2][3];
    memset(got, 0, sizeof got);
    for (int r = 0; r < 2; r++) {
        model m = build(LSTM_LAST, NULL);
        if (r) tg_module_set_recompute(m.net, 5);
        tg_hook_pattern(m.ctx, "lstm.h[*]", TG_PASS_BACKWARD, tally_hook, &got[r][0]);
        tg_hook_pattern(m.ctx, "lstm.h[*]", TG_PASS_FORWARD, tally_hook, &got[r][1]);
        tg_hook_params(m.ctx, "lstm.*", tally_hook, &got[r][2]);
        record_step(&m);
        free_model(&m);
    }
    cr_expect_eq(got[0][0].calls, 23);
    for (int k = 0; k < 3; k++) {
        cr_expect_eq(got[1][k].calls, got[0][k].calls, "hook %d: %d calls vs %d", k,
                     got[1][k].calls, got[0][k].calls);
        cr_expect(got[1][k].sum == got[0][k].sum, "hook %d: sum %.17g vs %.17g", k, got[1][k].sum,
                  got[0][k].sum);
    }
}

/* A NaN made inside a segment is caught in its first run and named. */
Test(recompute, anomaly_mode_names_the_op_inside) {
    tg_ctx *ctx = tg_ctx_new();
    two_layers t = make_weights(ctx, false);
    tg_set_anomaly_mode(ctx, true);
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *x = tg_tape_zeros(tape, TG_SHAPE(4, 5));
    tg_fill_normal(x, 0, 1, 3);
    tg_set_requires_grad(x, true);
    tg_tensor *in = x, *out[2];
    t.w1->data[0] = INFINITY;
    tg_status status = tg_recompute(tape, two_layer_fn, &t, 1, &in, 2, out);
    cr_expect_eq(status, TG_ERR_NUMERIC, "%s", tg_errmsg(ctx));
    expect_errmsg_has(ctx, "matmul");
    cr_expect_null(out[0]);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

Test(recompute, second_order_products_are_refused) {
    tg_ctx *ctx = tg_ctx_new();
    two_layers t = make_weights(ctx, true);
    tg_tensor *w1 = t.w1, *w2 = t.w2;
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *x = tg_tape_zeros(tape, TG_SHAPE(4, 5));
    tg_fill_normal(x, 0, 1, 9);
    tg_tensor *loss = two_layer_loss(tape, x, &t, true);
    tg_tensor *params[2] = {w1, w2};
    float v1[35] = {1}, v2[21] = {1}, h1[35], h2[21];
    const float *v[2] = {v1, v2};
    float *hv[2] = {h1, h2};
    cr_expect_eq(tg_hvp(tape, loss, 2, params, v, hv), TG_ERR_NOGRAD);
    expect_errmsg_has(ctx, "recomputed segment");
    tg_clear_error(ctx);
    tg_tensor *grads[2];
    cr_expect_eq(tg_grad(tape, loss, 2, params, grads), TG_ERR_NOGRAD);
    expect_errmsg_has(ctx, "recomputed segment");
    tg_clear_error(ctx);
    cr_expect_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx)); /* first order goes on */
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

/* tg_vjp goes through a segment: the same products as without it, to the bit. */
Test(recompute, vjp_goes_through) {
    tg_ctx *ctx = tg_ctx_new();
    two_layers t = make_weights(ctx, true);
    tg_tensor *params[2] = {t.w1, t.w2};
    float got[2][35], *grads[2][2] = {{got[0], got[0] + 0}, {got[1], got[1] + 0}};
    float g2[2][21];
    for (int pass = 0; pass < 2; pass++) {
        tg_tape *tape = tg_tape_new(ctx);
        tg_tensor *x = tg_tape_zeros(tape, TG_SHAPE(4, 5));
        tg_fill_normal(x, 0, 1, 9);
        tg_tensor *loss = two_layer_loss(tape, x, &t, pass == 1);
        const float one = 1.0f;
        grads[pass][1] = g2[pass];
        cr_assert_eq(tg_vjp(tape, loss, &one, 2, params, grads[pass]), TG_OK, "%s", tg_errmsg(ctx));
        tg_tape_free(tape);
    }
    float zero[35] = {0};
    cr_expect(memcmp(got[0], zero, sizeof zero) != 0, "a product that is not zero");
    cr_expect(memcmp(got[0], got[1], sizeof got[0]) == 0, "J^T u for w1");
    cr_expect(memcmp(g2[0], g2[1], sizeof g2[0]) == 0, "J^T u for w2");
    tg_ctx_free(ctx);
}

/* ---- misuse ------------------------------------------------------------------------------- */

static tg_status nested_fn(tg_tape *tape, tg_tensor *const *in, int n_in, tg_tensor **out,
                           int n_out, void *user) {
    return tg_recompute(tape, two_layer_fn, user, n_in, in, n_out, out);
}

static tg_status null_fn(tg_tape *tape, tg_tensor *const *in, int n_in, tg_tensor **out,
                         int n_out, void *user) {
    (void)tape, (void)in, (void)n_in, (void)n_out, (void)user;
    out[0] = NULL;
    return TG_OK;
}

static tg_status twice_fn(tg_tape *tape, tg_tensor *const *in, int n_in, tg_tensor **out,
                          int n_out, void *user) {
    (void)n_in, (void)n_out, (void)user;
    out[0] = out[1] = tg_tanh(tape, in[0]);
    return TG_OK;
}

static tg_status foreign_fn(tg_tape *tape, tg_tensor *const *in, int n_in, tg_tensor **out,
                            int n_out, void *user) {
    (void)tape, (void)n_in, (void)n_out, (void)user;
    out[0] = in[0] ? user : NULL; /* a tensor of the caller's tape */
    return TG_OK;
}

/* Adds a counter that moves at each run: its second run gives other numbers. */
static tg_status drifting_fn(tg_tape *tape, tg_tensor *const *in, int n_in, tg_tensor **out,
                             int n_out, void *user) {
    (void)n_in, (void)n_out;
    int *runs = user;
    out[0] = tg_add_scalar(tape, tg_tanh(tape, in[0]), (float)(*runs)++);
    return TG_OK;
}

Test(recompute, misuse_is_refused_with_a_reason) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *x = tg_tape_zeros(tape, TG_SHAPE(2, 5));
    tg_set_requires_grad(x, true);
    two_layers t = make_weights(ctx, false);
    tg_tensor *out[2] = {x, x};

    cr_expect_eq(tg_recompute(NULL, two_layer_fn, &t, 1, &x, 2, out), TG_ERR_INVALID);
    cr_expect_eq(tg_recompute(tape, NULL, &t, 1, &x, 2, out), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "recompute", "function is NULL");
    cr_expect_null(out[0], "outputs cleared on error");
    tg_clear_error(ctx);
    cr_expect_eq(tg_recompute(tape, two_layer_fn, &t, 1, &x, 0, out), TG_ERR_INVALID);
    tg_clear_error(ctx);

    cr_expect_eq(tg_recompute(tape, nested_fn, &t, 1, &x, 2, out), TG_ERR_STATE);
    expect_errmsg_has(ctx, "inside a recomputed segment", "do not nest");
    tg_clear_error(ctx);

    cr_expect_eq(tg_recompute(tape, null_fn, NULL, 1, &x, 1, out), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "output 0 of 1 NULL");
    tg_clear_error(ctx);

    cr_expect_eq(tg_recompute(tape, twice_fn, NULL, 1, &x, 2, out), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "outputs 0 and 1 are the same tensor");
    tg_clear_error(ctx);

    cr_expect_eq(tg_recompute(tape, foreign_fn, x, 1, &x, 1, out), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "not a tensor of the tape the function was given");
    tg_clear_error(ctx);

    int runs = 0;
    cr_assert_eq(tg_recompute(tape, drifting_fn, &runs, 1, &x, 1, out), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_backward(tape, tg_sum(tape, out[0])), TG_ERR_STATE);
    expect_errmsg_has(ctx, "differs from its first run", "output 0");
    tg_clear_error(ctx);

    /* a stale input */
    tg_tape_reset(tape);
    cr_expect_eq(tg_recompute(tape, two_layer_fn, &t, 1, &x, 2, out), TG_ERR_STATE);
    tg_clear_error(ctx);
    cr_expect_eq(tg_module_set_recompute(NULL, 1), TG_ERR_INVALID);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

/* In a no-grad scope the function simply runs on the tape, once. */
Test(recompute, no_grad_runs_plainly) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    two_layers t = make_weights(ctx, false);
    tg_tensor *x = tg_tape_zeros(tape, TG_SHAPE(2, 5)), *out[2];
    tg_no_grad_begin(tape);
    cr_expect_eq(tg_recompute(tape, two_layer_fn, &t, 1, &x, 2, out), TG_OK);
    tg_no_grad_end(tape);
    cr_expect_eq(t.runs, 1);
    cr_expect_eq(tg_tape_entries(tape), 0);
    cr_expect_not_null(out[1]);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}
