/*
 * tests/test_transformer.c — embeddings, multi-head attention, transformer blocks and the GPT
 * and recurrent language models: names, labels, whole-model gradient checks against finite
 * differences, the fused and the by-parts attention agreeing, learning generated text, and no
 * allocation in the steady-state step.
 */
#include "helpers.h"

static tg_gpt_config tiny_gpt(bool post_ln, bool qk_norm, bool tied) {
    tg_gpt_config c = {.vocab = 7, .block_size = 8, .d_model = 8, .n_heads = 2, .n_layers = 2,
                       .post_ln = post_ln, .qk_norm = qk_norm, .tie_weights = tied, .seed = 3};
    return c;
}

/* ids [B, T] of a fixed pattern, and the next ids as targets. */
static void fixed_batch(float *ids, float *targets, int b, int t, int vocab) {
    for (int i = 0; i < b * t; i++) {
        ids[i] = (float)((i * 5 + i / t) % vocab);
        targets[i] = (float)((i * 5 + i / t + 1) % vocab);
    }
}

typedef struct lm_case {
    tg_module *model;
    float ids[2 * 6], targets[2 * 6];
} lm_case;

static tg_tensor *lm_case_loss(tg_tape *tape, tg_tensor *const *inputs, int n, void *user) {
    (void)inputs, (void)n;
    lm_case *c = user;
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(2, 6), c->ids);
    tg_tensor *y = tg_tape_from_data(tape, TG_SHAPE(2, 6), c->targets);
    return tg_lm_loss(tape, tg_module_forward(c->model, tape, x), y);
}

static void expect_model_gradients_pass(tg_ctx *ctx, tg_module *model) {
    cr_assert_not_null(model, "%s", tg_errmsg(ctx));
    lm_case c = {.model = model};
    fixed_batch(c.ids, c.targets, 2, 6, 7);
    tg_tensor *params[64];
    int n = tg_module_params(model, params, 64);
    cr_assert(n > 0 && n <= 64);
    /* Parameters of the size finite differences can see: GPT-2's N(0, 0.02) embeddings under a
     * layer norm move by a large part of themselves for a step of 1e-2, and the central
     * difference then measures curvature, not the slope. */
    for (int i = 0; i < n; i++) tg_fill_normal(params[i], 0.0f, 0.5f, 100 + (uint64_t)i);
    tg_gradcheck_opts opts = tg_gradcheck_defaults();
    opts.max_elements = 6;
    tg_gradcheck_result r;
    cr_assert_eq(tg_gradcheck_function(ctx, lm_case_loss, &c, params, n, &opts, &r), TG_OK, "%s",
                 tg_errmsg(ctx));
    cr_expect(r.passed, "%s: worst input %d ('%s') element %lld: analytic %g numeric %g",
              tg_module_name(model), r.worst_input, params[r.worst_input]->label,
              (long long)r.worst_index, r.worst_analytic, r.worst_numeric);
}

Test(transformer, gpt_gradients_match_finite_differences) {
    tg_ctx *ctx = tg_ctx_new();
    tg_gpt_config pre = tiny_gpt(false, false, false), post = tiny_gpt(true, false, true),
                  qk = tiny_gpt(false, true, true);
    expect_model_gradients_pass(ctx, tg_gpt_new(ctx, "pre", &pre));
    expect_model_gradients_pass(ctx, tg_gpt_new(ctx, "post", &post));
    expect_model_gradients_pass(ctx, tg_gpt_new(ctx, "qk", &qk));
    tg_ctx_free(ctx);
}

Test(transformer, recurrent_lm_gradients_match_finite_differences) {
    tg_ctx *ctx = tg_ctx_new();
    tg_rnn_lm_config c = {.kind = TG_RNN_LSTM, .vocab = 7, .embed_dim = 5, .hidden = 6,
                          .num_layers = 2, .seed = 4};
    expect_model_gradients_pass(ctx, tg_rnn_lm_new(ctx, "lstm_lm", &c));
    c.kind = TG_RNN_GRU;
    c.num_layers = 1;
    expect_model_gradients_pass(ctx, tg_rnn_lm_new(ctx, "gru_lm", &c));
    tg_ctx_free(ctx);
}

Test(transformer, names_follow_pytorch_and_outputs_are_labelled) {
    tg_ctx *ctx = tg_ctx_new();
    tg_gpt_config c = tiny_gpt(false, true, false);
    tg_module *gpt = tg_gpt_new(ctx, "gpt", &c);
    cr_assert_not_null(gpt, "%s", tg_errmsg(ctx));
    const char *names[] = {"gpt.wte.weight", "gpt.wpe.weight", "gpt.block1.ln1.weight",
                           "gpt.block1.attn.in_proj_weight", "gpt.block1.attn.in_proj_bias",
                           "gpt.block1.attn.out_proj.weight", "gpt.block1.attn.out_proj.bias",
                           "gpt.block1.attn.q_norm.weight", "gpt.block0.fc.weight",
                           "gpt.block0.proj.bias", "gpt.ln_f.bias", "gpt.head.weight"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        cr_expect_not_null(tg_module_find_param(gpt, names[i]), "no parameter '%s'", names[i]);
    tg_tensor *w = tg_module_find_param(gpt, "gpt.block0.attn.in_proj_weight");
    cr_expect(w->ndim == 2 && w->shape[0] == 24 && w->shape[1] == 8);
    cr_expect_null(tg_module_find_param(gpt, "gpt.head.bias"));
    /* tied: no head of its own */
    tg_gpt_config tied = tiny_gpt(true, false, true);
    tg_module *g2 = tg_gpt_new(ctx, "g2", &tied);
    cr_expect_null(tg_module_find_param(g2, "g2.head.weight"));
    cr_expect_null(tg_module_find_param(g2, "g2.ln_f.weight"), "post-LN has no final norm");
    tg_tape *tape = tg_tape_new(ctx);
    float ids[2 * 6], targets[2 * 6];
    fixed_batch(ids, targets, 2, 6, 7);
    tg_tensor *logits = tg_module_forward(gpt, tape, tg_tape_from_data(tape, TG_SHAPE(2, 6), ids));
    cr_assert_not_null(logits, "%s", tg_errmsg(ctx));
    cr_expect(logits->ndim == 3 && logits->shape[0] == 2 && logits->shape[1] == 6 &&
              logits->shape[2] == 7);
    cr_expect_str_eq(logits->label, "gpt.logits");
    tg_tensor *too_long = tg_tape_zeros(tape, TG_SHAPE(1, 9));
    cr_expect_null(tg_module_forward(gpt, tape, too_long));
    expect_errmsg_has(ctx, "gpt 'gpt'", "[1,9]", "block_size 8");
    tg_tape_free(tape);
    tg_module_free(gpt);
    tg_module_free(g2);
    tg_ctx_free(ctx);
}

/* Counts the forward passes a hook saw and checks each is a causal probability table. */
typedef struct probs_seen {
    int calls;
    bool rows_sum_to_one, causal_zeros;
} probs_seen;

static tg_status check_probs(tg_ctx *ctx, const tg_hook_event *e, void *user) {
    (void)ctx;
    probs_seen *seen = user;
    const tg_tensor *p = e->node;
    int64_t t = p->shape[3];
    seen->calls++;
    for (int64_t r = 0; r < p->size / t; r++) {
        double sum = 0.0;
        for (int64_t j = 0; j < t; j++) {
            sum += e->values[r * t + j];
            if (j > r % t && e->values[r * t + j] != 0.0f) seen->causal_zeros = false;
        }
        if (fabs(sum - 1.0) > 1e-5) seen->rows_sum_to_one = false;
    }
    return TG_OK;
}

/* The loss and every parameter's gradient of one step of gpt. */
static float gpt_step(tg_module *gpt, tg_tape *tape, float *grads, int64_t grad_room) {
    float ids[2 * 6], targets[2 * 6];
    fixed_batch(ids, targets, 2, 6, 7);
    tg_tape_reset(tape);
    tg_module_zero_grad(gpt);
    tg_tensor *loss = tg_lm_loss(tape, tg_module_forward(gpt, tape, tg_tape_from_data(tape, TG_SHAPE(2, 6), ids)),
                                 tg_tape_from_data(tape, TG_SHAPE(2, 6), targets));
    cr_assert_not_null(loss, "%s", tg_errmsg(tg_tape_ctx(tape)));
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(tg_tape_ctx(tape)));
    int64_t at = 0;
    for (int i = 0; i < tg_module_param_count(gpt); i++) {
        tg_tensor *p = tg_module_param(gpt, i);
        cr_assert(at + p->size <= grad_room);
        memcpy(grads + at, p->grad, sizeof(float) * p->size);
        at += p->size;
    }
    return loss->data[0];
}

Test(transformer, a_hook_on_the_probabilities_sees_them_and_changes_no_number) {
    tg_ctx *ctx = tg_ctx_new();
    tg_gpt_config c = tiny_gpt(false, false, false);
    tg_module *gpt = tg_gpt_new(ctx, "gpt", &c);
    tg_tape *tape = tg_tape_new(ctx);
    enum { ROOM = 4096 };
    static float fused[ROOM], parts[ROOM];
    float fused_loss = gpt_step(gpt, tape, fused, ROOM);
    probs_seen seen = {0, true, true};
    int64_t hook = tg_hook_pattern(ctx, "gpt.block*.attn.probs", TG_PASS_FORWARD, check_probs, &seen);
    cr_assert_geq(hook, 0);
    float parts_loss = gpt_step(gpt, tape, parts, ROOM);
    cr_expect_eq(seen.calls, 2, "one probability node per block");
    cr_expect(seen.rows_sum_to_one && seen.causal_zeros);
    cr_expect(fabsf(fused_loss - parts_loss) < 1e-6f, "loss %g vs %g", (double)fused_loss,
              (double)parts_loss);
    expect_close(parts, fused, tg_module_num_elements(gpt), 1e-5f, "gradient");
    tg_hook_remove(ctx, hook);
    tg_tape_free(tape);
    tg_module_free(gpt);
    tg_ctx_free(ctx);
}

/* Text from a pattern of period 12 with 8 symbols: a model that has learnt it predicts every
 * character after the first few of a window exactly. */
static void pattern_text(float *ids, int64_t n, int64_t offset) {
    static const int period[12] = {0, 1, 2, 3, 1, 4, 5, 2, 6, 7, 3, 5};
    for (int64_t i = 0; i < n; i++) ids[i] = (float)period[(i + offset) % 12];
}

/* Trains model on windows of the pattern; returns the held-out bits per character. */
static double train_on_pattern(tg_ctx *ctx, tg_module *model, int steps, float lr) {
    enum { B = 8, T = 16 };
    tg_tensor *params[128];
    int n = tg_module_params(model, params, 128);
    tg_optimizer *opt = tg_optimizer_new(ctx, params, n,
                                         &(tg_optimizer_config){.kind = TG_OPT_ADAM, .lr = lr});
    cr_assert_not_null(opt, "%s", tg_errmsg(ctx));
    tg_tape *tape = tg_tape_new(ctx);
    float x[B * T], y[B * T], window[T + 1];
    for (int step = 0; step < steps; step++) {
        for (int b = 0; b < B; b++) {
            pattern_text(window, T + 1, (int64_t)step * 7 + b * 5);
            memcpy(x + b * T, window, sizeof(float) * T);
            memcpy(y + b * T, window + 1, sizeof(float) * T);
        }
        tg_tape_reset(tape);
        tg_tensor *loss = tg_lm_loss(tape, tg_module_forward(model, tape, tg_tape_from_data(tape, TG_SHAPE(B, T), x)),
                                     tg_tape_from_data(tape, TG_SHAPE(B, T), y));
        cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
        tg_optimizer_step_zero_grad(opt);
    }
    /* held out: windows at offsets never used in training order, loss from position 4 on */
    tg_tape_reset(tape);
    for (int b = 0; b < B; b++) {
        pattern_text(window, T + 1, 1000003 + b * 11);
        memcpy(x + b * T, window, sizeof(float) * T);
        memcpy(y + b * T, window + 1, sizeof(float) * T);
    }
    tg_tensor *logits = tg_module_forward(model, tape, tg_tape_from_data(tape, TG_SHAPE(B, T), x));
    cr_assert_not_null(logits, "%s", tg_errmsg(ctx));
    int64_t v = logits->shape[2];
    double nats = 0.0;
    int counted = 0;
    for (int r = 0; r < B * T; r++) {
        if (r % T < 4) continue;
        const float *row = logits->data + r * v;
        float max = row[0];
        for (int64_t j = 1; j < v; j++) max = row[j] > max ? row[j] : max;
        double sum = 0.0;
        for (int64_t j = 0; j < v; j++) sum += exp((double)row[j] - max);
        nats += log(sum) - ((double)row[(int)y[r]] - max);
        counted++;
    }
    tg_optimizer_free(opt);
    tg_tape_free(tape);
    return nats / counted / log(2.0);
}

Test(transformer, a_tiny_gpt_learns_generated_text) {
    tg_ctx *ctx = tg_ctx_new();
    tg_gpt_config c = {.vocab = 8, .block_size = 16, .d_model = 32, .n_heads = 4, .n_layers = 2,
                       .seed = 5};
    tg_module *gpt = tg_gpt_new(ctx, "gpt", &c);
    double bpc = train_on_pattern(ctx, gpt, 150, 3e-3f);
    cr_expect_lt(bpc, 0.25, "held-out bits per character %.3f (uniform: 3)", bpc);
    /* greedy generation continues the pattern */
    tg_tape *tape = tg_tape_new(ctx);
    float ids[24];
    pattern_text(ids, 8, 3);
    cr_assert_eq(tg_lm_generate(gpt, tape, ids, 8, 16, 16, 0.0f, 1), TG_OK, "%s", tg_errmsg(ctx));
    float want[24];
    pattern_text(want, 24, 3);
    expect_close(ids, want, 24, 0.0f, "generated");
    tg_tape_free(tape);
    tg_module_free(gpt);
    tg_ctx_free(ctx);
}

Test(transformer, a_tiny_lstm_lm_learns_generated_text) {
    tg_ctx *ctx = tg_ctx_new();
    tg_rnn_lm_config c = {.kind = TG_RNN_LSTM, .vocab = 8, .embed_dim = 16, .hidden = 32, .seed = 6};
    tg_module *lm = tg_rnn_lm_new(ctx, "lstm_lm", &c);
    cr_assert_not_null(lm, "%s", tg_errmsg(ctx));
    double bpc = train_on_pattern(ctx, lm, 200, 1e-2f);
    cr_expect_lt(bpc, 0.25, "held-out bits per character %.3f (uniform: 3)", bpc);
    tg_module_free(lm);
    tg_ctx_free(ctx);
}

Test(transformer, a_gpt_step_allocates_nothing_in_the_steady_state) {
    tally count = {.fail_at = -1};
    tg_ctx *ctx = tg_ctx_new_with_allocator(tally_alloc, &count);
    cr_assert_eq(tg_ctx_set_threads(ctx, 2), TG_OK);
    tg_gpt_config c = {.vocab = 8, .block_size = 16, .d_model = 32, .n_heads = 4, .n_layers = 2,
                       .dropout = 0.1f, .seed = 5};
    tg_module *gpt = tg_gpt_new(ctx, "gpt", &c);
    cr_assert_not_null(gpt, "%s", tg_errmsg(ctx));
    tg_tensor *params[64];
    int n = tg_module_params(gpt, params, 64);
    tg_optimizer *opt = tg_optimizer_new(ctx, params, n,
                                         &(tg_optimizer_config){.kind = TG_OPT_ADAMW, .lr = 1e-3f});
    tg_tape *tape = tg_tape_new(ctx);
    float x[8 * 16], y[8 * 16];
    long after_first = 0;
    for (int step = 0; step < 5; step++) {
        pattern_text(x, 8 * 16, step);
        pattern_text(y, 8 * 16, step + 1);
        tg_tape_reset(tape);
        tg_tensor *loss = tg_lm_loss(tape, tg_module_forward(gpt, tape, tg_tape_from_data(tape, TG_SHAPE(8, 16), x)),
                                     tg_tape_from_data(tape, TG_SHAPE(8, 16), y));
        cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
        tg_optimizer_step_zero_grad(opt);
        if (step == 0) after_first = count.allocations;
    }
    cr_expect_eq(count.allocations, after_first, "%ld allocations in steps 2..5",
                 count.allocations - after_first);
    tg_optimizer_free(opt);
    tg_tape_free(tape);
    tg_module_free(gpt);
    tg_ctx_free(ctx);
    cr_expect_eq(count.live_bytes, 0);
}

Test(transformer, bad_configs_are_refused_with_a_reason) {
    tg_ctx *ctx = tg_ctx_new();
    tg_gpt_config c = tiny_gpt(false, false, false);
    c.n_heads = 3;
    cr_expect_null(tg_gpt_new(ctx, "g", &c));
    expect_errmsg_has(ctx, "gpt 'g'", "d_model 8", "n_heads 3");
    tg_clear_error(ctx);
    c = tiny_gpt(false, false, false);
    c.n_layers = 65;
    cr_expect_null(tg_gpt_new(ctx, "g", &c));
    expect_errmsg_has(ctx, "n_layers 65");
    tg_clear_error(ctx);
    cr_expect_null(tg_mha_new(ctx, "a", &(tg_mha_config){.embed_dim = 10, .num_heads = 4}));
    expect_errmsg_has(ctx, "attention 'a'", "embed_dim 10", "num_heads 4");
    tg_clear_error(ctx);
    cr_expect_null(tg_gpt_new(ctx, "g", NULL));
    cr_expect_null(tg_gpt_new(NULL, "g", &c));
    cr_expect_null(tg_embedding_new(ctx, "e", 0, 4, NULL, 1));
    cr_expect_null(tg_lm_loss(NULL, NULL, NULL));
    cr_expect_eq(tg_lm_generate(NULL, NULL, NULL, 0, 0, 0, 0.0f, 0), TG_ERR_INVALID);
    tg_ctx_free(ctx);
}

Test(transformer, a_recorded_gpt_step_replays_with_the_same_numbers) {
    tg_ctx *ctx = tg_ctx_new();
    tg_gpt_config c = tiny_gpt(false, false, false);
    tg_module *gpt = tg_gpt_new(ctx, "gpt", &c);
    tg_tape *tape = tg_tape_new(ctx);
    float ids[2 * 6], targets[2 * 6];
    fixed_batch(ids, targets, 2, 6, 7);
    tg_tensor *x = tg_from_data(ctx, TG_SHAPE(2, 6), ids), *y = tg_from_data(ctx, TG_SHAPE(2, 6), targets);
    tg_tensor *loss = tg_lm_loss(tape, tg_module_forward(gpt, tape, x), y);
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
    float recorded = loss->data[0];
    tg_tensor *wte = tg_module_find_param(gpt, "gpt.wte.weight");
    float grad = wte->grad[3];
    tg_module_zero_grad(gpt);
    cr_assert_eq(tg_tape_replay(tape), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(loss->data[0], recorded);
    cr_expect_eq(wte->grad[3], grad);
    tg_tape_free(tape);
    tg_module_free(gpt);
    tg_ctx_free(ctx);
}
