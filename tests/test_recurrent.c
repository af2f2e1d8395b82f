/* tests/test_recurrent.c — the fused recurrent cells: the same numbers as the composition of
 * ordinary ops they replace, gradients against finite differences, truncated BPTT, no heap
 * allocation in a training step, the same numbers at 1 and 2 threads, and the LSTM's tape peak
 * against the activation memory a hand-written LSTM needs. */
#include "helpers.h"

/* ---- the unfused reference: the layer as it was built from linear, slice, add and gates ---- */

static tg_tensor *block(tg_tape *tape, tg_tensor *all, int k, int64_t hidden) {
    return tg_slice(tape, all, 1, k * hidden, (k + 1) * hidden);
}

static tg_tensor *reference_step(tg_rnn_kind kind, tg_tape *tape, tg_tensor *const *p, tg_tensor *xp,
                                 tg_tensor *h, tg_tensor **c, int64_t hidden) {
    tg_tensor *hp = tg_linear(tape, h, p[1], p[3]);
    if (kind == TG_RNN_TANH) return tg_tanh(tape, tg_add(tape, xp, hp));
    if (kind == TG_RNN_LSTM) {
        tg_tensor *z = tg_add(tape, xp, hp);
        tg_tensor *i = tg_sigmoid(tape, block(tape, z, 0, hidden)), *f = tg_sigmoid(tape, block(tape, z, 1, hidden));
        tg_tensor *g = tg_tanh(tape, block(tape, z, 2, hidden)), *o = tg_sigmoid(tape, block(tape, z, 3, hidden));
        *c = tg_add(tape, tg_mul(tape, f, *c), tg_mul(tape, i, g));
        return tg_mul(tape, o, tg_tanh(tape, *c));
    }
    tg_tensor *r = tg_sigmoid(tape, tg_add(tape, block(tape, xp, 0, hidden), block(tape, hp, 0, hidden)));
    tg_tensor *u = tg_sigmoid(tape, tg_add(tape, block(tape, xp, 1, hidden), block(tape, hp, 1, hidden)));
    tg_tensor *n = tg_tanh(tape, tg_add(tape, block(tape, xp, 2, hidden), tg_mul(tape, r, block(tape, hp, 2, hidden))));
    return tg_add(tape, n, tg_mul(tape, u, tg_sub(tape, h, n)));
}

static tg_tensor *reference_forward(tg_module *m, const tg_rnn_config *c, tg_tape *tape, tg_tensor *x,
                                    tg_tensor **states) {
    tg_tensor *p[4];
    for (int i = 0; i < 4; i++) p[i] = tg_module_param(m, i);
    int64_t batch = x->shape[0], steps = x->shape[1], width = p[0]->shape[0];
    tg_tensor *xp_all = tg_linear(tape, x, p[0], p[2]);
    tg_tensor *h = tg_tape_zeros(tape, TG_SHAPE(batch, c->hidden)), *cell = tg_tape_zeros(tape, TG_SHAPE(batch, c->hidden));
    for (int64_t t = 1; t <= steps; t++) {
        tg_tensor *xp = tg_reshape(tape, tg_slice(tape, xp_all, 1, t - 1, t), TG_SHAPE(batch, width));
        h = states[t - 1] = reference_step(c->kind, tape, p, xp, h, &cell, c->hidden);
        if (c->bptt > 0 && t % c->bptt == 0 && t < steps) {
            h = tg_detach(tape, h);
            cell = tg_detach(tape, cell);
        }
    }
    return h;
}

/* Runs L = sum(w * h[T]) through forward, then backward; copies every state and its gradient
 * (which readers such as the study's |dL/dh[t]| look at after backward), x's gradient and every
 * parameter gradient into out (in that order). Returns the floats written. */
static int64_t run(tg_ctx *ctx, tg_module *m, const tg_rnn_config *c, tg_tensor *x, bool fused, float *out) {
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *states[8];
    tg_module_zero_grad(m);
    tg_zero_grad(x);
    tg_tensor *h = fused ? tg_rnn_forward(m, tape, x, states) : reference_forward(m, c, tape, x, states);
    cr_assert_not_null(h, "%s", tg_errmsg(ctx));
    tg_tensor *w = tg_tape_zeros(tape, h->ndim, h->shape);
    tg_fill_normal(w, 0, 1, 5);
    cr_assert_eq(tg_backward_with(tape, h, w->data), TG_OK, "%s", tg_errmsg(ctx));
    int64_t n = 0;
    for (int64_t t = 0; t < x->shape[1]; t++, n += 2 * h->size) {
        memcpy(out + n, states[t]->data, (size_t)h->size * 4);
        if (states[t]->grad) memcpy(out + n + h->size, states[t]->grad, (size_t)h->size * 4);
        else memset(out + n + h->size, 0, (size_t)h->size * 4);
    }
    memcpy(out + n, x->grad, (size_t)x->size * 4);
    n += x->size;
    for (int i = 0; i < tg_module_param_count(m); i++, n += tg_module_param(m, i - 1)->size)
        memcpy(out + n, tg_module_param(m, i)->grad, (size_t)tg_module_param(m, i)->size * 4);
    tg_tape_free(tape);
    return n;
}

static void expect_fused_matches_reference(tg_rnn_kind kind, int bptt) {
    tg_ctx *ctx = tg_ctx_new();
    tg_rnn_config c = tg_rnn_defaults(kind, 3, 5);
    c.bptt = bptt;
    c.seed = 11;
    tg_module *m = tg_rnn_new(ctx, "cell", &c);
    cr_assert_not_null(m, "%s", tg_errmsg(ctx));
    for (int i = 2; i < 4; i++) tg_fill_normal(tg_module_param(m, i), 0, 0.5f, (uint64_t)i); /* biases count too */
    tg_tensor *x = tg_zeros(ctx, TG_SHAPE(2, 6, 3));
    tg_fill_normal(x, 0, 1, 3);
    tg_set_requires_grad(x, true);
    static float fused[4096], reference[4096];
    int64_t n = run(ctx, m, &c, x, true, fused);
    cr_assert_eq(run(ctx, m, &c, x, false, reference), n);
    expect_close(fused, reference, n, 1e-6f, "states and their gradients, dx, dparams");
    tg_module_free(m);
    tg_ctx_free(ctx);
}

TestSuite(rnn);

Test(rnn, fused_tanh_cell_matches_the_composition_of_ops) { expect_fused_matches_reference(TG_RNN_TANH, 0); }
Test(rnn, fused_lstm_matches_the_composition_of_ops) { expect_fused_matches_reference(TG_RNN_LSTM, 0); }
Test(rnn, fused_gru_matches_the_composition_of_ops) { expect_fused_matches_reference(TG_RNN_GRU, 0); }
Test(rnn, truncated_bptt_lstm_matches_the_detached_composition) { expect_fused_matches_reference(TG_RNN_LSTM, 2); }
Test(rnn, truncated_bptt_gru_matches_the_detached_composition) { expect_fused_matches_reference(TG_RNN_GRU, 4); }

static tg_status count_call(tg_ctx *ctx, const tg_hook_event *event, void *user) {
    (void)ctx;
    (void)event;
    ++*(int *)user;
    return TG_OK;
}

/* Hooks by name still see every state, in both passes: h[t] for every cell, c[t] for the LSTM. */
static void expect_states_hooked(tg_rnn_kind kind, int cells) {
    tg_ctx *ctx = tg_ctx_new();
    tg_rnn_config c = tg_rnn_defaults(kind, 3, 4);
    tg_module *m = tg_rnn_new(ctx, "net", &c);
    tg_tape *tape = tg_tape_new(ctx);
    int h_forward = 0, h_backward = 0, c_backward = 0;
    tg_hook_pattern(ctx, "net.h[*]", TG_PASS_FORWARD, count_call, &h_forward);
    tg_hook_pattern(ctx, "net.h[*]", TG_PASS_BACKWARD, count_call, &h_backward);
    tg_hook_pattern(ctx, "net.c[*]", TG_PASS_BACKWARD, count_call, &c_backward);
    tg_tensor *x = tg_zeros(ctx, TG_SHAPE(2, 7, 3));
    tg_fill_normal(x, 0, 1, 4);
    cr_assert_eq(tg_backward(tape, tg_sum(tape, tg_rnn_forward(m, tape, x, NULL))), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(h_forward, 7);
    cr_expect_eq(h_backward, 7);
    cr_expect_eq(c_backward, cells);
    tg_tape_free(tape);
    tg_module_free(m);
    tg_ctx_free(ctx);
}

Test(rnn, hooks_by_name_see_every_state) {
    expect_states_hooked(TG_RNN_TANH, 0);
    expect_states_hooked(TG_RNN_LSTM, 7);
    expect_states_hooked(TG_RNN_GRU, 0);
}

Test(rnn, every_cell_op_passes_gradcheck) {
    tg_ctx *ctx = tg_ctx_new();
    const char *names[] = {"rnn_cell", "lstm_gates", "lstm_cell", "lstm_hidden", "gru_cell"};
    for (int k = 0; k < 5; k++) {
        int id = tg_op_find(ctx, names[k]);
        cr_assert_geq(id, 0, "%s not registered", names[k]);
        tg_gradcheck_result result;
        cr_assert_eq(tg_gradcheck(ctx, id, 0, NULL, &result), TG_OK, "%s: %s", names[k], tg_errmsg(ctx));
        cr_expect(result.passed, "%s: input %d [%lld] analytic %g numeric %g", names[k], result.worst_input,
                  (long long)result.worst_index, result.worst_analytic, result.worst_numeric);
        cr_expect_gt(result.n_checked, 0);
    }
    tg_ctx_free(ctx);
}

/* The bench's size (batch 32, hidden 128), where a cell's product is cut into pieces on 2 or
 * more cores: the inputs xp [B, 2, G*H], h, W_hh, b_hh of a cell at step 1, random, in all;
 * returns step 1's slab of xp as [B, G*H], for the unfused ops. */
enum { CELL_BATCH = 32, CELL_HIDDEN = 128 };
static tg_tensor *bench_sized_cell_inputs(tg_tape *tape, int gates, tg_tensor **all) {
    all[0] = tg_tape_zeros(tape, TG_SHAPE(CELL_BATCH, 2, gates * CELL_HIDDEN));
    all[1] = tg_tape_zeros(tape, TG_SHAPE(CELL_BATCH, CELL_HIDDEN));
    all[2] = tg_tape_zeros(tape, TG_SHAPE(gates * CELL_HIDDEN, CELL_HIDDEN));
    all[3] = tg_tape_zeros(tape, TG_SHAPE(gates * CELL_HIDDEN));
    for (int i = 0; i < 4; i++) tg_fill_normal(all[i], 0, i == 2 ? 0.1f : 1.0f, (uint64_t)i + 1);
    return tg_reshape(tape, tg_slice(tape, all[0], 1, 1, 2), TG_SHAPE(CELL_BATCH, gates * CELL_HIDDEN));
}

/* At the bench's size the gates' product is cut into pieces (on 2 or more cores) and each piece
 * is activated as soon as it is computed: the gates must still be those of the unfused ops,
 * on 1 thread and on 2. Within 1e-5, the rounding of 128-term dot products in another order. */
Test(rnn, lstm_gates_activated_piece_by_piece_match_the_composition) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *all[4];
    tg_tensor *xp_t = bench_sized_cell_inputs(tape, 4, all);
    tg_tensor *z = tg_add(tape, xp_t, tg_linear(tape, all[1], all[2], all[3]));
    tg_tensor *want[4];
    for (int k = 0; k < 4; k++) {
        tg_tensor *block = tg_slice(tape, z, 1, k * CELL_HIDDEN, (k + 1) * CELL_HIDDEN);
        want[k] = k == 2 ? tg_tanh(tape, block) : tg_sigmoid(tape, block);
    }
    for (int threads = 1; threads <= 2; threads++) {
        cr_assert_eq(tg_ctx_set_threads(ctx, threads), TG_OK);
        tg_named_attr step = TG_I64("step", 1);
        tg_tensor *gates = tg_call(tape, "lstm_gates", all, 4, &step, 1);
        cr_assert_not_null(gates, "%s", tg_errmsg(ctx));
        for (int k = 0; k < 4; k++) {
            tg_tensor *got = tg_slice(tape, gates, 1, k * CELL_HIDDEN, (k + 1) * CELL_HIDDEN);
            cr_assert_not_null(got, "%s", tg_errmsg(ctx));
            expect_close(got->data, want[k]->data, CELL_BATCH * CELL_HIDDEN, 1e-5f,
                         threads == 1 ? "gates, 1 thread" : "gates, 2 threads");
        }
    }
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

/* The GRU's cell likewise, its product cut into pieces. */
Test(rnn, gru_cell_finished_piece_by_piece_matches_the_composition) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *all[4];
    tg_tensor *xp_t = bench_sized_cell_inputs(tape, 3, all);
    tg_tensor *p[4] = {NULL, all[2], NULL, all[3]};
    tg_tensor *want = reference_step(TG_RNN_GRU, tape, p, xp_t, all[1], NULL, CELL_HIDDEN);
    cr_assert_not_null(want, "%s", tg_errmsg(ctx));
    for (int threads = 1; threads <= 2; threads++) {
        cr_assert_eq(tg_ctx_set_threads(ctx, threads), TG_OK);
        tg_named_attr step = TG_I64("step", 1);
        tg_tensor *got = tg_call(tape, "gru_cell", all, 4, &step, 1);
        cr_assert_not_null(got, "%s", tg_errmsg(ctx));
        expect_close(got->data, want->data, CELL_BATCH * CELL_HIDDEN, 1e-5f,
                     threads == 1 ? "h', 1 thread" : "h', 2 threads");
    }
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

Test(rnn, a_step_outside_the_sequence_is_refused) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *inputs[4] = {tg_tape_zeros(tape, TG_SHAPE(2, 3, 8)), tg_tape_zeros(tape, TG_SHAPE(2, 2)),
                            tg_tape_zeros(tape, TG_SHAPE(8, 2)), tg_tape_zeros(tape, TG_SHAPE(8))};
    tg_named_attr step = TG_I64("step", 3);
    cr_expect_null(tg_call(tape, "lstm_gates", inputs, 4, &step, 1));
    expect_errmsg_has(ctx, "lstm_gates", "step 3 outside 0..2");
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

/* ---- a training step of the LSTM: LSTM h128 T100 b32 in16, linear head on h[T], MSE ---- */

typedef struct workload {
    tg_ctx *ctx;
    tg_tape *tape;
    tg_module *rnn, *head;
    tg_tensor *x, *y;
    tg_optimizer *opt;
} workload;

static void workload_init(workload *w, tg_alloc_fn alloc, void *user, tg_rnn_kind kind,
                          int64_t batch, int64_t steps, int64_t in, int64_t hidden, int threads) {
    w->ctx = alloc ? tg_ctx_new_with_allocator(alloc, user) : tg_ctx_new();
    cr_assert_not_null(w->ctx);
    tg_ctx_set_threads(w->ctx, threads);
    tg_rnn_config c = tg_rnn_defaults(kind, in, hidden);
    w->rnn = tg_rnn_new(w->ctx, "lstm", &c);
    w->head = tg_linear_new(w->ctx, "head", hidden, 1, true, NULL, 3);
    cr_assert(w->rnn && w->head, "%s", tg_errmsg(w->ctx));
    w->x = tg_zeros(w->ctx, TG_SHAPE(batch, steps, in));
    w->y = tg_zeros(w->ctx, TG_SHAPE(batch, 1));
    tg_fill_normal(w->x, 0, 1, 7);
    tg_fill_normal(w->y, 0, 1, 8);
    tg_tensor *params[8];
    int n = tg_module_params(w->rnn, params, 8);
    n += tg_module_params(w->head, params + n, 8 - n);
    tg_optimizer_config sgd = {.kind = TG_OPT_SGD, .lr = 0.01f};
    w->opt = tg_optimizer_new(w->ctx, params, n, &sgd);
    w->tape = tg_tape_new(w->ctx);
    cr_assert(w->opt && w->tape);
}

static float workload_step(workload *w) {
    tg_tape_reset(w->tape);
    tg_tensor *out = tg_module_forward(w->head, w->tape, tg_rnn_forward(w->rnn, w->tape, w->x, NULL));
    tg_tensor *loss = tg_mse(w->tape, out, w->y);
    cr_assert_eq(tg_backward(w->tape, loss), TG_OK, "%s", tg_errmsg(w->ctx));
    tg_optimizer_step(w->opt);
    tg_optimizer_zero_grad(w->opt);
    return loss->data[0];
}

static void workload_free(workload *w) {
    tg_tape_free(w->tape);
    tg_optimizer_free(w->opt);
    tg_module_free(w->rnn);
    tg_module_free(w->head);
    tg_ctx_free(w->ctx);
}

static void expect_no_allocation_after_the_first_step(tg_rnn_kind kind, int threads) {
    tally count = {.fail_at = -1};
    workload w;
    workload_init(&w, tally_alloc, &count, kind, 16, 12, 4, 64, threads);
    workload_step(&w);
    long after_first = count.allocations;
    for (int step = 2; step <= 6; step++) workload_step(&w);
    cr_expect_eq(count.allocations, after_first, "%ld allocations during steps 2..6", count.allocations - after_first);
    workload_free(&w);
    cr_expect_eq(count.live_bytes, 0);
}

Test(rnn, lstm_step_allocates_nothing_after_the_first) { expect_no_allocation_after_the_first_step(TG_RNN_LSTM, 1); }
Test(rnn, gru_step_allocates_nothing_after_the_first) { expect_no_allocation_after_the_first_step(TG_RNN_GRU, 1); }
Test(rnn, lstm_step_with_two_threads_allocates_nothing_after_the_first) {
    expect_no_allocation_after_the_first_step(TG_RNN_LSTM, 2);
}

/* What a hand-written LSTM keeps for its backward: the input projection [B,T,4H], the activated
 * gates of every step [T,B,4H], and c, h and tanh(c) of every step [T,B,H] each. */
static size_t plain_activation_bytes(int64_t batch, int64_t steps, int64_t hidden) {
    return sizeof(float) * (size_t)(2 * batch * steps * 4 * hidden + 3 * steps * batch * hidden);
}

Test(rnn, lstm_tape_peak_within_twice_plain_c_and_the_same_numbers_at_two_threads) {
    workload one, two;
    workload_init(&one, NULL, NULL, TG_RNN_LSTM, 32, 100, 16, 128, 1);
    workload_init(&two, NULL, NULL, TG_RNN_LSTM, 32, 100, 16, 128, 2);
    for (int step = 0; step < 2; step++) {
        float a = workload_step(&one), b = workload_step(&two);
        cr_expect_eq(a, b, "step %d: loss %.9g at 1 thread, %.9g at 2", step, (double)a, (double)b);
    }
    tg_tensor *w1 = tg_module_param(one.rnn, 1), *w2 = tg_module_param(two.rnn, 1);
    cr_expect_eq(memcmp(w1->data, w2->data, (size_t)w1->size * sizeof(float)), 0, "weight_hh differs");
    size_t peak = tg_tape_bytes_peak(one.tape), plain = plain_activation_bytes(32, 100, 128);
    cr_expect_leq(peak, 2 * plain, "tape peak %zu bytes, plain C %zu", peak, plain);
    workload_free(&one);
    workload_free(&two);
}
