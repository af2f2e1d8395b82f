/* tests/test_rnn_stack.c — stacked and bidirectional RNN/LSTM/GRU: PyTorch's parameter names
 * and shapes, its numbers (fixed values from bench/torch_rnn_stack.py, tests/rnn_stack_expected.h:
 * PyTorch never runs here), an initial state, the labels hooks see per layer and direction,
 * every parameter's gradient against central finite differences, and the single plain layer
 * unchanged. */
#include "helpers.h"
#include "rnn_stack_expected.h"

/* The fill of bench/torch_rnn_stack.py: float32(0.5 sin(0.61 j + 1.7 salt)). */
static void fill(tg_tensor *t, int salt) {
    for (int64_t j = 0; j < t->size; j++) t->data[j] = (float)(0.5 * sin(0.61 * (double)j + 1.7 * salt));
}

static tg_tensor *filled_leaf(tg_ctx *ctx, int ndim, const int64_t *shape, int salt) {
    tg_tensor *t = tg_zeros(ctx, ndim, shape);
    cr_assert_not_null(t);
    fill(t, salt);
    tg_set_requires_grad(t, true);
    return t;
}

typedef struct stack_case {
    tg_ctx *ctx;
    tg_module *m;
    tg_rnn_kind kind;
    tg_tensor *x, *h0, *c0;
} stack_case;

static stack_case make_case(tg_rnn_kind kind, const char *name) {
    stack_case s = {.ctx = tg_ctx_new(), .kind = kind};
    tg_rnn_config c = tg_rnn_defaults(kind, REF_IN, REF_HIDDEN);
    c.num_layers = REF_LAYERS;
    c.bidirectional = true;
    s.m = tg_rnn_new(s.ctx, name, &c);
    cr_assert_not_null(s.m, "%s", tg_errmsg(s.ctx));
    for (int i = 0; i < tg_module_param_count(s.m); i++) fill(tg_module_param(s.m, i), 10 + i);
    s.x = filled_leaf(s.ctx, TG_SHAPE(REF_BATCH, REF_STEPS, REF_IN), 1);
    s.h0 = filled_leaf(s.ctx, TG_SHAPE(2 * REF_LAYERS, REF_BATCH, REF_HIDDEN), 2);
    s.c0 = filled_leaf(s.ctx, TG_SHAPE(2 * REF_LAYERS, REF_BATCH, REF_HIDDEN), 3);
    return s;
}

static void free_case(stack_case *s) {
    tg_module_free(s->m);
    tg_ctx_free(s->ctx);
}

/* The loss of the reference script: sum(output * probe4) + sum(h_n * probe5) (+ sum(c_n * probe6)). */
static tg_tensor *probed(tg_tape *tape, tg_tensor *t, int salt) {
    tg_tensor *probe = tg_tape_zeros(tape, t->ndim, t->shape);
    fill(probe, salt);
    return tg_sum(tape, tg_mul(tape, t, probe));
}

static tg_tensor *forward_loss(stack_case *s, tg_tape *tape, tg_tensor **out, tg_rnn_state *final) {
    tg_rnn_state initial = {s->h0, s->c0};
    *out = tg_rnn_sequence(s->m, tape, s->x, &initial, final, NULL);
    cr_assert_not_null(*out, "%s", tg_errmsg(s->ctx));
    tg_tensor *loss = tg_add(tape, probed(tape, *out, 4), probed(tape, final->h, 5));
    if (s->kind == TG_RNN_LSTM) loss = tg_add(tape, loss, probed(tape, final->c, 6));
    cr_assert_not_null(loss, "%s", tg_errmsg(s->ctx));
    return loss;
}

/* ---- names and shapes ---------------------------------------------------------------------- */

Test(rnn_stack, parameters_have_pytorchs_names_order_and_shapes) {
    stack_case s = make_case(TG_RNN_LSTM, "lstm");
    cr_assert_eq(tg_module_param_count(s.m), 16);
    const char *suffixes[4] = {"_l0", "_l0_reverse", "_l1", "_l1_reverse"};
    const char *locals[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 4; i++) {
            char want[64];
            snprintf(want, sizeof want, "lstm.%s%s", locals[i], suffixes[k]);
            tg_tensor *p = tg_module_param(s.m, 4 * k + i);
            cr_expect_str_eq(tg_tensor_name(p), want);
            cr_expect_eq(p->shape[0], 4 * REF_HIDDEN, "%s rows", want);
            if (i == 0) cr_expect_eq(p->shape[1], k < 2 ? REF_IN : 2 * REF_HIDDEN, "%s: layer 1 reads both directions", want);
        }
    free_case(&s);
    tg_ctx *ctx = tg_ctx_new();
    tg_rnn_config stacked = tg_rnn_defaults(TG_RNN_LSTM, 3, 4);
    stacked.num_layers = 3;
    tg_module *deep = tg_rnn_new(ctx, "deep", &stacked);
    cr_assert_eq(tg_module_param_count(deep), 12);
    /* every layer gets the forget bias (rows H..2H of bias_ih) */
    cr_expect_eq(tg_module_find_param(deep, "deep.bias_ih_l2")->data[4], 1.0f);
    cr_expect_eq(tg_module_find_param(deep, "deep.bias_ih_l2")->data[0], 0.0f);
    tg_module_free(deep);
    tg_rnn_config c = tg_rnn_defaults(TG_RNN_GRU, 3, 4);
    c.bidirectional = true;
    tg_module *m = tg_rnn_new(ctx, "gru", &c);
    tg_tensor *f = tg_module_find_param(m, "gru.weight_hh_l0"), *r = tg_module_find_param(m, "gru.weight_hh_l0_reverse");
    cr_assert(f && r, "one layer, two directions: suffixed names");
    cr_expect_neq(memcmp(f->data, r->data, (size_t)f->size * sizeof(float)), 0, "the directions share initial weights");
    tg_module_free(m);
    tg_ctx_free(ctx);
}

Test(rnn_stack, a_single_plain_layer_keeps_its_names_and_numbers) {
    tg_ctx *ctx = tg_ctx_new();
    tg_rnn_config c = tg_rnn_defaults(TG_RNN_LSTM, 3, 4), one = c;
    one.num_layers = 1; /* 1 and 0 (the default) are the same layer */
    tg_module *a = tg_rnn_new(ctx, "lstm", &c), *b = tg_rnn_new(ctx, "lstm", &one);
    cr_assert(a && b);
    cr_expect_not_null(tg_module_find_param(a, "lstm.weight_ih"));
    cr_expect_null(tg_module_find_param(a, "lstm.weight_ih_l0"));
    for (int i = 0; i < 4; i++) {
        tg_tensor *p = tg_module_param(a, i), *q = tg_module_param(b, i);
        cr_expect_eq(memcmp(p->data, q->data, (size_t)p->size * sizeof(float)), 0);
    }
    tg_module_free(a);
    tg_module_free(b);
    tg_ctx_free(ctx);
}

/* ---- against PyTorch ------------------------------------------------------------------------ */

static void expect_matches_torch(tg_rnn_kind kind, const float *output, const float *h_n, const float *c_n,
                                 const float *grad_x, const float *grad_h0, const float *grad_c0,
                                 const float *const *param_grads) {
    stack_case s = make_case(kind, "net");
    tg_tape *tape = tg_tape_new(s.ctx);
    tg_tensor *out;
    tg_rnn_state final;
    tg_tensor *loss = forward_loss(&s, tape, &out, &final);
    cr_assert_eq(out->ndim, 3);
    cr_expect(out->shape[0] == REF_BATCH && out->shape[1] == REF_STEPS && out->shape[2] == 2 * REF_HIDDEN);
    cr_expect(final.h->shape[0] == 2 * REF_LAYERS && final.h->shape[1] == REF_BATCH);
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(s.ctx));
    /* float32 on both sides, different orders of additions: a few ulps of 1 */
    const float tol = 2e-6f;
    expect_close(out->data, output, out->size, tol, "output");
    expect_close(final.h->data, h_n, final.h->size, tol, "h_n");
    if (c_n) expect_close(final.c->data, c_n, final.c->size, tol, "c_n");
    expect_close(s.x->grad, grad_x, s.x->size, tol, "dL/dx");
    expect_close(s.h0->grad, grad_h0, s.h0->size, tol, "dL/dh0");
    if (grad_c0) expect_close(s.c0->grad, grad_c0, s.c0->size, tol, "dL/dc0");
    for (int i = 0; i < tg_module_param_count(s.m); i++) {
        tg_tensor *p = tg_module_param(s.m, i);
        expect_close(p->grad, param_grads[i], p->size, tol, tg_tensor_name(p));
    }
    tg_tape_free(tape);
    free_case(&s);
}

Test(rnn_stack, lstm_two_layers_bidirectional_matches_pytorch) {
    expect_matches_torch(TG_RNN_LSTM, lstm_output, lstm_h_n, lstm_c_n, lstm_grad_x, lstm_grad_h0, lstm_grad_c0,
                         lstm_param_grads);
}

Test(rnn_stack, gru_two_layers_bidirectional_matches_pytorch) {
    expect_matches_torch(TG_RNN_GRU, gru_output, gru_h_n, NULL, gru_grad_x, gru_grad_h0, NULL, gru_param_grads);
}

Test(rnn_stack, rnn_two_layers_bidirectional_matches_pytorch) {
    expect_matches_torch(TG_RNN_TANH, rnn_output, rnn_h_n, NULL, rnn_grad_x, rnn_grad_h0, NULL, rnn_param_grads);
}

/* tg_rnn_forward's result is the last layer's final state, forward then reverse: h_n[-2:] side by side. */
Test(rnn_stack, forward_returns_the_top_layers_final_states_side_by_side) {
    stack_case s = make_case(TG_RNN_GRU, "net");
    tg_tape *tape = tg_tape_new(s.ctx);
    tg_rnn_state final;
    tg_tensor *seq = tg_rnn_sequence(s.m, tape, s.x, NULL, &final, NULL);
    tg_tensor *states[2 * REF_LAYERS * REF_STEPS];
    tg_tensor *top = tg_rnn_forward(s.m, tape, s.x, states);
    cr_assert(seq && top, "%s", tg_errmsg(s.ctx));
    cr_assert(top->ndim == 2 && top->shape[0] == REF_BATCH && top->shape[1] == 2 * REF_HIDDEN);
    for (int b = 0; b < REF_BATCH; b++)
        for (int d = 0; d < 2; d++)
            expect_close(top->data + (b * 2 + d) * REF_HIDDEN,
                         final.h->data + ((2 * (REF_LAYERS - 1) + d) * REF_BATCH + b) * REF_HIDDEN, REF_HIDDEN, 0,
                         "top");
    /* states: layer, direction, time; the reverse direction's last state is its h[1] */
    tg_tensor *last_reverse = states[(2 * (REF_LAYERS - 1) + 1) * REF_STEPS + 0];
    cr_expect_str_eq(tg_tensor_name(last_reverse), "net.l1_reverse.h[1]");
    cr_expect_str_eq(tg_tensor_name(states[0]), "net.l0.h[1]");
    tg_tape_free(tape);
    free_case(&s);
}

/* ---- labels for hooks ----------------------------------------------------------------------- */

static tg_status count_call(tg_ctx *ctx, const tg_hook_event *event, void *user) {
    (void)ctx;
    (void)event;
    ++*(int *)user;
    return TG_OK;
}

Test(rnn_stack, hooks_see_every_layer_and_direction_by_name) {
    stack_case s = make_case(TG_RNN_LSTM, "lstm");
    int one = 0, reverse = 0, all_h = 0, cells = 0;
    tg_hook_pattern(s.ctx, "lstm.l1_reverse.h[5]", TG_PASS_BACKWARD, count_call, &one);
    tg_hook_pattern(s.ctx, "lstm.l1_reverse.h[*]", TG_PASS_FORWARD, count_call, &reverse);
    tg_hook_pattern(s.ctx, "lstm.l?*.h[*]", TG_PASS_BACKWARD, count_call, &all_h);
    tg_hook_pattern(s.ctx, "lstm.l0.c[*]", TG_PASS_BACKWARD, count_call, &cells);
    tg_tape *tape = tg_tape_new(s.ctx);
    tg_tensor *out;
    tg_rnn_state final;
    cr_assert_eq(tg_backward(tape, forward_loss(&s, tape, &out, &final)), TG_OK, "%s", tg_errmsg(s.ctx));
    cr_expect_eq(one, 1);
    cr_expect_eq(reverse, REF_STEPS);
    cr_expect_eq(all_h, 2 * REF_LAYERS * REF_STEPS);
    cr_expect_eq(cells, REF_STEPS);
    tg_tape_free(tape);
    free_case(&s);
}

/* ---- the initial state -------------------------------------------------------------------- */

Test(rnn_stack, an_initial_state_is_checked_and_null_means_zeros) {
    stack_case s = make_case(TG_RNN_LSTM, "lstm");
    tg_tape *tape = tg_tape_new(s.ctx);
    tg_tensor *zeros = tg_tape_zeros(tape, TG_SHAPE(2 * REF_LAYERS, REF_BATCH, REF_HIDDEN));
    tg_tensor *a = tg_rnn_sequence(s.m, tape, s.x, NULL, NULL, NULL);
    tg_tensor *b = tg_rnn_sequence(s.m, tape, s.x, &(tg_rnn_state){zeros, zeros}, NULL, NULL);
    cr_assert(a && b, "%s", tg_errmsg(s.ctx));
    expect_close(a->data, b->data, a->size, 0, "NULL state against explicit zeros");
    tg_tensor *wrong = tg_tape_zeros(tape, TG_SHAPE(REF_LAYERS, REF_BATCH, REF_HIDDEN)); /* one direction short */
    cr_expect_null(tg_rnn_sequence(s.m, tape, s.x, &(tg_rnn_state){zeros, wrong}, NULL, NULL));
    expect_errmsg_has(s.ctx, "lstm", "initial c", "expected [4, 2, 4]");
    tg_tape_free(tape);
    free_case(&s);
}

/* ---- finite differences --------------------------------------------------------------------- */

static double loss_value(stack_case *s, tg_tape *tape) {
    tg_tape_reset(tape);
    tg_tensor *out;
    tg_rnn_state final;
    return forward_loss(s, tape, &out, &final)->data[0];
}

/* Every element of every parameter, of x and of h0: central differences of the float loss
 * (eps 1e-2, as tg_gradcheck) against backward. */
static void expect_finite_differences(tg_rnn_kind kind) {
    stack_case s = make_case(kind, "net");
    tg_tape *tape = tg_tape_new(s.ctx);
    tg_tensor *out;
    tg_rnn_state final;
    cr_assert_eq(tg_backward(tape, forward_loss(&s, tape, &out, &final)), TG_OK, "%s", tg_errmsg(s.ctx));
    tg_tensor *checked[20];
    int n = 0;
    for (int i = 0; i < tg_module_param_count(s.m); i++) checked[n++] = tg_module_param(s.m, i);
    checked[n++] = s.x;
    checked[n++] = s.h0;
    int64_t elements = 0;
    for (int k = 0; k < n; k++) {
        tg_tensor *t = checked[k];
        float *analytic = malloc((size_t)t->size * sizeof(float));
        memcpy(analytic, t->grad, (size_t)t->size * sizeof(float));
        for (int64_t j = 0; j < t->size; j++, elements++) {
            const float eps = 1e-2f, keep = t->data[j];
            t->data[j] = keep + eps;
            double up = loss_value(&s, tape);
            t->data[j] = keep - eps;
            double down = loss_value(&s, tape);
            t->data[j] = keep;
            double numeric = (up - down) / (2.0 * eps);
            cr_expect(fabs(numeric - analytic[j]) <= 2e-3 + 1e-2 * fabs(numeric), "%s[%lld]: backward %.6g, "
                      "finite differences %.6g", tg_tensor_name(t), (long long)j, (double)analytic[j], numeric);
        }
        free(analytic);
    }
    cr_expect_gt(elements, 500);
    tg_tape_free(tape);
    free_case(&s);
}

Test(rnn_stack, lstm_gradients_match_finite_differences) { expect_finite_differences(TG_RNN_LSTM); }
Test(rnn_stack, gru_gradients_match_finite_differences) { expect_finite_differences(TG_RNN_GRU); }

/* ---- memory --------------------------------------------------------------------------------- */

/* The per-step arrays of a stack (states of every direction, final states) come from the tape's
 * arena: after the first step, a training step of a stacked bidirectional LSTM allocates nothing. */
Test(rnn_stack, a_stacked_bidirectional_step_allocates_nothing_after_the_first) {
    tally count = {.fail_at = -1};
    tg_ctx *ctx = tg_ctx_new_with_allocator(tally_alloc, &count);
    tg_rnn_config c = tg_rnn_defaults(TG_RNN_LSTM, 3, 8);
    c.num_layers = 3;
    c.bidirectional = true;
    tg_module *m = tg_rnn_new(ctx, "lstm", &c);
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *x = tg_zeros(ctx, TG_SHAPE(4, 12, 3));
    cr_assert(m && tape && x, "%s", tg_errmsg(ctx));
    fill(x, 1);
    tg_tensor *states[3 * 2 * 12];
    long after_first = 0;
    for (int step = 1; step <= 5; step++) {
        tg_tape_reset(tape);
        tg_tensor *h = tg_rnn_forward(m, tape, x, states);
        cr_assert_eq(tg_backward(tape, tg_sum(tape, h)), TG_OK, "%s", tg_errmsg(ctx));
        tg_module_zero_grad(m);
        if (step == 1) after_first = count.allocations;
    }
    cr_expect_eq(count.allocations, after_first, "%ld allocations in steps 2..5", count.allocations - after_first);
    tg_tape_free(tape);
    tg_module_free(m);
    tg_ctx_free(ctx);
    cr_expect_eq(count.live_bytes, 0);
}
