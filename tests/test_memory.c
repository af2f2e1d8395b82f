/* tests/test_memory.c — the arena, byte counters, and no heap allocation in the steady state. */
#include "helpers.h"

/* One SGD training step of a 3-layer MLP, the shape of every real training loop. */
static void train_step(tg_tape *tape, tg_tensor **params, const float *batch, const float *labels) {
    tg_tape_reset(tape);
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(16, 8), batch);
    tg_tensor *y = tg_tape_from_data(tape, TG_SHAPE(16), labels);
    tg_tensor *h = x;
    for (int layer = 0; layer < 3; layer++) {
        h = tg_linear(tape, h, params[2 * layer], params[2 * layer + 1]);
        if (layer < 2) h = tg_sigmoid(tape, h);
    }
    tg_tensor *loss = tg_cross_entropy(tape, h, y);
    cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(tg_tape_ctx(tape)));
    for (int p = 0; p < 6; p++) {
        for (int64_t i = 0; i < params[p]->size; i++) params[p]->data[i] -= 0.1f * params[p]->grad[i];
        tg_zero_grad(params[p]);
    }
}

/* A context counting its allocations into *count, the MLP's parameters in it (labelled
 * "fc<layer>.weight" / ".bias"), and a fixed batch. */
static tg_ctx *counted_mlp(tally *count, tg_tensor **params, float *batch, float *labels) {
    *count = (tally){.fail_at = -1};
    tg_ctx *ctx = tg_ctx_new_with_allocator(tally_alloc, count);
    cr_assert_not_null(ctx);
    const int64_t shapes[6][2] = {{32, 8}, {32, 1}, {32, 32}, {32, 1}, {4, 32}, {4, 1}};
    for (int p = 0; p < 6; p++) {
        params[p] = p % 2 ? tg_zeros(ctx, 1, shapes[p]) : tg_zeros(ctx, 2, shapes[p]);
        tg_fill_normal(params[p], 0, 0.3f, (uint64_t)p);
        tg_set_requires_grad(params[p], true);
        tg_set_label(params[p], "fc%d.%s", p / 2, p % 2 ? "bias" : "weight");
    }
    for (int i = 0; i < 16 * 8; i++) batch[i] = (float)((i * 37) % 11) / 11.0f;
    for (int i = 0; i < 16; i++) labels[i] = (float)(i % 4);
    return ctx;
}

Test(memory, no_allocation_after_the_first_step) {
    tally count;
    tg_tensor *params[6];
    float batch[16 * 8], labels[16];
    tg_ctx *ctx = counted_mlp(&count, params, batch, labels);
    tg_tape *tape = tg_tape_new(ctx);
    train_step(tape, params, batch, labels);
    long after_first = count.allocations;
    for (int step = 2; step <= 20; step++) train_step(tape, params, batch, labels);
    expect_steady_then_freed(&count, after_first, "steps 2..20", tape, ctx);
    cr_expect_eq(count.allocations, count.frees);
}

/* The diagnostics one leaves on while training: anomaly counting, a recorder with histograms
 * (attached by pattern, with the loss) and the step guard. */
Test(memory, diagnostics_allocate_nothing_in_the_steady_state) {
    tally count;
    tg_tensor *params[6];
    float batch[16 * 8], labels[16];
    tg_ctx *ctx = counted_mlp(&count, params, batch, labels);
    cr_assert_eq(tg_set_anomaly_level(ctx, TG_ANOMALY_COUNTS), TG_OK);
    tg_recorder *rec = tg_recorder_new(ctx, 8);
    tg_guard *guard = tg_guard_new(ctx, NULL);
    cr_assert(rec && guard && tg_recorder_attach_params(rec, "fc*.weight") > 0, "%s", tg_errmsg(ctx));
    tg_tape *tape = tg_tape_new(ctx);
    long after_first = 0;
    for (int step = 1; step <= 40; step++) { /* past the window: the rings wrap, histograms thin */
        train_step(tape, params, batch, labels);
        tg_recorder_add_loss(rec, tg_tape_step(tape), 1.0);
        tg_guard_check(guard, step, 1.0, 1.0);
        if (step == 1) after_first = count.allocations;
    }
    cr_expect_eq(count.allocations, after_first, "%ld allocations during steps 2..40",
                 count.allocations - after_first);
    tg_anomaly_counts counts;
    cr_assert_eq(tg_anomaly_step_counts(ctx, &counts), TG_OK);
    cr_expect_gt(counts.tensors_scanned, 0, "counting was on");
    cr_expect_gt(tg_recorder_histograms(rec, 0, NULL, TG_HIST_SNAPSHOTS), 0, "histograms were taken");
    tg_tape_free(tape);
    tg_guard_free(guard);
    tg_recorder_free(rec);
    tg_ctx_free(ctx);
    cr_expect_eq(count.live_bytes, 0, "%ld bytes not freed", count.live_bytes);
}

Test(memory, arena_counters_and_reuse) {
    tg_ctx *ctx = tg_ctx_new();
    tg_tape *tape = tg_tape_new(ctx);
    cr_expect_eq(tg_tape_bytes_in_use(tape), 0);
    tg_tensor *a = tg_tape_zeros(tape, TG_SHAPE(1000));
    cr_assert_not_null(a);
    size_t used = tg_tape_bytes_in_use(tape);
    cr_expect_geq(used, 4000);
    cr_expect_eq(tg_tape_bytes_peak(tape), used);
    /* larger than one chunk: a chunk of its own */
    tg_tensor *big = tg_tape_zeros(tape, TG_SHAPE(1 << 19));
    cr_assert_not_null(big);
    cr_expect_geq(tg_tape_bytes_in_use(tape), used + ((size_t)1 << 21));
    size_t reserved = tg_tape_bytes_reserved(tape), peak = tg_tape_bytes_peak(tape);
    big->data[(1 << 19) - 1] = 1; /* writable to the end */
    tg_tape_reset(tape);
    cr_expect_eq(tg_tape_bytes_in_use(tape), 0);
    cr_expect_eq(tg_tape_bytes_peak(tape), peak, "peak survives reset");
    tg_tensor *again = tg_tape_zeros(tape, TG_SHAPE(1000));
    cr_expect_eq(again->data, a->data, "the same request after reset gets the same memory");
    tg_tape_zeros(tape, TG_SHAPE(1 << 19));
    cr_expect_eq(tg_tape_bytes_reserved(tape), reserved, "nothing new reserved");
    cr_expect_eq(tg_tape_step(tape), 1);
    tg_tape_free(tape);
    tg_ctx_free(ctx);
}

Test(memory, persistent_bytes_grow_with_tensors) {
    tg_ctx *ctx = tg_ctx_new();
    size_t before = tg_ctx_bytes_persistent(ctx);
    tg_tensor *t = tg_zeros(ctx, TG_SHAPE(256, 256));
    cr_assert_not_null(t);
    cr_expect_geq(tg_ctx_bytes_persistent(ctx) - before, (size_t)256 * 256 * 4);
    cr_expect_eq((uintptr_t)t->data % 64, 0, "data 64-byte aligned");
    tg_ctx_free(ctx);
}

Test(memory, out_of_memory_is_an_error_not_a_crash) {
    /* Walk the budget up from 0: each run must fail cleanly or succeed, never crash. */
    for (long limit = 0; limit < 200; limit += 3) {
        tally b = {.fail_at = limit};
        tg_ctx *ctx = tg_ctx_new_with_allocator(tally_alloc, &b);
        if (!ctx) continue;
        tg_tape *tape = tg_tape_new(ctx);
        if (tape) {
            tg_tensor *w = tg_ones(ctx, TG_SHAPE(4, 4));
            if (w && tg_set_requires_grad(w, true) == TG_OK) {
                tg_tensor *loss = tg_sum(tape, tg_tanh(tape, tg_matmul(tape, w, w)));
                tg_status status = tg_backward(tape, loss);
                cr_expect(status == TG_OK || status == TG_ERR_NOMEM || tg_errcode(ctx) == TG_ERR_NOMEM,
                          "limit %ld: status %d (%s)", limit, status, tg_errmsg(ctx));
            } else {
                cr_expect_eq(tg_errcode(ctx), TG_ERR_NOMEM, "limit %ld: %s", limit, tg_errmsg(ctx));
            }
            tg_tape_free(tape);
        }
        tg_ctx_free(ctx);
    }
}
