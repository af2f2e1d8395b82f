/* tests/test_replay_hooks.c — a hook that runs during a pass over a tape (a forward hook in
 * tg_tape_replay, a backward hook in tg_backward) cannot reset that tape, replay it, walk it
 * backward or (mid-replay) record on it: each is refused with TG_ERR_STATE naming the hook's
 * node, and the pass stops (FINDINGS-2 item 5). A harmless hook leaves a replay allocation-free. */
#include "helpers.h"

typedef enum misuse { RESET, REPLAY, BACKWARD, RECORD, NOTHING } misuse;

static tg_tape *the_tape;
static tg_tensor *the_loss, *the_w;
static misuse doing;
static tg_status refused; /* what the hook's call returned (TG_OK: not refused or NULL op) */
static int calls;

static tg_status misbehave(tg_ctx *c, const tg_hook_event *e, void *u) {
    (void)c, (void)e, (void)u;
    calls++;
    switch (doing) {
    case RESET: tg_tape_reset(the_tape); break;
    case REPLAY: refused = tg_tape_replay(the_tape); break;
    case BACKWARD: refused = tg_backward(the_tape, the_loss); break;
    case RECORD: refused = tg_exp(the_tape, the_w) ? TG_OK : TG_ERR_STATE; break;
    case NOTHING: break;
    }
    return TG_OK;
}

/* loss = sum(tanh(w * 2)), labelled, recorded and walked once. */
static tg_ctx *record_step(void) {
    tg_ctx *ctx = tg_ctx_new();
    cr_assert_not_null(ctx);
    the_tape = tg_tape_new(ctx);
    the_w = tg_from_data(ctx, TG_SHAPE(3), (float[]){0.1f, 0.2f, 0.3f});
    cr_assert_eq(tg_set_requires_grad(the_w, true), TG_OK);
    tg_tensor *z = tg_mul(the_tape, the_w, tg_full(ctx, TG_SHAPE(3), 2));
    tg_tape_label_next(the_tape, "fc1"); /* names the next op's output: the tanh */
    tg_tensor *h = tg_tanh(the_tape, z);
    tg_tape_label_next(the_tape, "loss");
    the_loss = tg_sum(the_tape, h);
    cr_assert_not_null(the_loss, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_backward(the_tape, the_loss), TG_OK, "%s", tg_errmsg(ctx));
    refused = TG_OK;
    calls = 0;
    return ctx;
}

static void finish(tg_ctx *ctx) {
    tg_tape_free(the_tape);
    tg_ctx_free(ctx);
}

/* A forward hook on "fc1" doing `what` in a replay: refused, named, the replay stops. */
static void expect_refused_in_replay(misuse what, const char *call) {
    tg_ctx *ctx = record_step();
    int64_t entries = tg_tape_entries(the_tape);
    doing = what;
    int64_t h = tg_hook_pattern(ctx, "fc1", TG_PASS_FORWARD, misbehave, NULL);
    cr_assert_gt(h, 0, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_tape_replay(the_tape), TG_ERR_STATE, "%s in a hook: the replay went on", call);
    cr_expect_eq(calls, 1, "the replay stopped at the hook's node");
    char expected[160];
    snprintf(expected, sizeof expected, "%s: called from a forward hook on node 'fc1' during "
             "tg_tape_replay", call);
    expect_errmsg_has(ctx, expected);
    cr_expect_eq(tg_tape_entries(the_tape), entries, "the tape changed under the replay");
    if (what != RESET) cr_expect_eq(refused, TG_ERR_STATE, "the hook's %s returned %s", call,
                                    tg_status_name(refused));
    /* the hook gone, the tape replays and walks as before */
    tg_clear_error(ctx);
    cr_assert_eq(tg_hook_remove(ctx, h), TG_OK);
    cr_expect_eq(tg_tape_replay(the_tape), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_backward(the_tape, the_loss), TG_OK, "%s", tg_errmsg(ctx));
    finish(ctx);
}

Test(replay_hooks, a_forward_hook_cannot_reset_the_tape) {
    expect_refused_in_replay(RESET, "tg_tape_reset");
}

Test(replay_hooks, a_forward_hook_cannot_replay_again) {
    expect_refused_in_replay(REPLAY, "tg_tape_replay");
}

Test(replay_hooks, a_forward_hook_cannot_run_backward) {
    expect_refused_in_replay(BACKWARD, "tg_backward");
}

Test(replay_hooks, a_forward_hook_cannot_record) {
    expect_refused_in_replay(RECORD, "exp (an op)");
}

Test(replay_hooks, a_backward_hook_cannot_reset_the_tape_it_walks) {
    tg_ctx *ctx = record_step();
    cr_assert_eq(tg_tape_replay(the_tape), TG_OK, "%s", tg_errmsg(ctx));
    doing = RESET;
    cr_assert_gt(tg_hook_pattern(ctx, "fc1", TG_PASS_BACKWARD, misbehave, NULL), 0);
    int64_t step = tg_tape_step(the_tape);
    cr_expect_eq(tg_backward(the_tape, the_loss), TG_ERR_STATE);
    expect_errmsg_has(ctx, "tg_tape_reset: called from a backward hook on node 'fc1' during tg_backward");
    cr_expect_eq(tg_tape_step(the_tape), step, "the tape was reset");
    finish(ctx);
}

Test(replay_hooks, a_hook_may_still_reset_another_tape) {
    tg_ctx *ctx = record_step();
    tg_tape *other = tg_tape_new(ctx);
    tg_tape_zeros(other, TG_SHAPE(4));
    tg_tape *kept = the_tape;
    doing = RESET;
    the_tape = other;
    cr_assert_gt(tg_hook_pattern(ctx, "fc1", TG_PASS_FORWARD, misbehave, NULL), 0);
    cr_expect_eq(tg_tape_replay(kept), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_tape_step(other), 1, "the other tape was not reset");
    tg_tape_free(other);
    the_tape = kept;
    finish(ctx);
}

/* The steady state with a hook that only reads: still no allocation per replayed step. */
Test(replay_hooks, a_replay_with_a_harmless_hook_allocates_nothing) {
    tally count = {.fail_at = -1};
    tg_ctx *ctx = tg_ctx_new_with_allocator(tally_alloc, &count);
    cr_assert_not_null(ctx);
    tg_tape *tape = tg_tape_new(ctx);
    tg_tensor *w = tg_from_data(ctx, TG_SHAPE(3), (float[]){0.1f, 0.2f, 0.3f});
    cr_assert_eq(tg_set_requires_grad(w, true), TG_OK);
    doing = NOTHING;
    calls = 0;
    cr_assert_gt(tg_hook_global(ctx, TG_PASS_FORWARD, misbehave, NULL), 0);
    cr_assert_gt(tg_hook_global(ctx, TG_PASS_BACKWARD, misbehave, NULL), 0);
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(3), (float[]){1, 2, 3});
    tg_tensor *loss = tg_sum(tape, tg_tanh(tape, tg_mul(tape, w, x)));
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
    long after_first = count.allocations;
    int calls_first = calls;
    for (int step = 1; step < 10; step++) {
        cr_assert_eq(tg_copy_in(x, (float[]){(float)step, 2, 3}, 3), TG_OK);
        cr_assert_eq(tg_tape_replay(tape), TG_OK, "%s", tg_errmsg(ctx));
        cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
    }
    cr_expect_eq(calls, 10 * calls_first, "the hooks ran at every replayed step");
    expect_steady_then_freed(&count, after_first, "9 replayed steps", tape, ctx);
}
