/*
 * autograd/replay.c — running a recorded step again without recording it again.
 *
 * A training loop of fixed shapes records the same ops in the same order at every step; only
 * the numbers change. Recording is most of the cost of a small op (the node, the output's
 * header, the tape entry: some 30 stores), and a replay skips it: it calls each recorded
 * forward again, in order, on the same nodes, whose inputs are the same tensors, now holding
 * the new step's numbers (new batch data written into the leaves, parameters the optimizer
 * stepped). The graph is then static for as long as it is replayed, as KANN's or a compiled
 * PyTorch graph is; what the user changes between replays is data, never the ops.
 *
 * What a replay cannot redo is refused rather than done half: op calls that did not go on the
 * tape (no input required a gradient, or a no-grad scope) would keep their old numbers, and an
 * op seeded by an attribute (dropout) would draw the same mask again.
 */
#include "autograd/internal.h"

/* The recorded forward, again: every output's gradient is forgotten first (the walk reads a
 * NULL gradient as "nothing reached this node"). Inlined twice so the common case, nothing
 * watching, tests nothing per entry. */
TGI_ALWAYS_INLINE static inline tg_status replay_entries(tg_tape *tape, int64_t n, bool watched) {
    for (int64_t e = 0; e < n; e++) {
        tgi_node *node = tape->entries[e];
        tg_tensor *output = node->call.output;
        output->grad = NULL;
        if (!watched && node->scalar_unary && node->op->scalar_forward) {
            /* a scalar node of a built-in elementwise op: its input and attribute are in the
             * node (tgi_node), the value is the one forward's scalar path computes */
            tg_tensor *in;
            memcpy(&in, (unsigned char *)node + TGI_UNARY_INPUT_AT, sizeof in);
            output->data[0] = node->op->scalar_forward(
                in->data[0], (const tg_attr_value *)((unsigned char *)node + TGI_UNARY_ATTR_AT));
            continue;
        }
        tape->call_node = node;
        tg_status status = node->op->forward(&node->call);
        if (status != TG_OK) {
            if (tape->ctx->err_code == TG_OK)
                tg_op_fail(&node->call, status, "forward failed in a replay of the step");
            return status;
        }
        if (watched && (status = tgi_watch_forward(tape, node)) != TG_OK) return status;
        if (watched && tape->misused) return TG_ERR_STATE; /* the hook's refused call said why */
    }
    return TG_OK;
}

tg_status tgi_refuse_in_pass(tg_tape *tape, const char *what) {
    if (!tape->replaying && !tape->walking) return TG_OK;
    tape->misused = true;
    const char *pass = tape->replaying ? "tg_tape_replay" : "tg_backward";
    const tg_hook_event *e = tape->hook_event;
    if (!e)
        return tgi_error(tape->ctx, TG_ERR_STATE, "%s: called during %s of the same tape (from "
                         "an op's function)", what, pass);
    return tgi_error(tape->ctx, TG_ERR_STATE, "%s: called from a %s hook on node '%s' during %s "
                     "(a hook may read and change values, not the tape its pass walks)", what,
                     e->pass == TG_PASS_FORWARD ? "forward" : "backward", e->name, pass);
}

/* TG_OK when the forward of the step can be replayed, else the error, which says why. */
static tg_status check_replayable(tg_tape *tape, int64_t n_forward, int64_t unrecorded) {
    tg_ctx *ctx = tape->ctx;
    if (n_forward == 0)
        return tgi_error(ctx, TG_ERR_STATE, "tape_replay: nothing was recorded since the last "
                         "reset (record the step once, then replay it)");
    if (unrecorded > 0)
        return tgi_error(ctx, TG_ERR_STATE, "tape_replay: %lld op call%s of the step did not go "
                         "on the tape (no input required a gradient, or a no-grad scope), so a "
                         "replay would not recompute %s; compute such values outside the tape, "
                         "or reset and record every step", (long long)unrecorded,
                         unrecorded == 1 ? "" : "s", unrecorded == 1 ? "it" : "them");
    /* Entries checked by an earlier replay stay as they were until the reset: checked once. */
    for (int64_t e = tape->replay_checked; e < n_forward; e++) {
        const tgi_node *node = tape->entries[e];
        if (node->op->seeded_by_attribute) {
            char name[TG_LABEL_MAX + 32];
            return tgi_error(ctx, TG_ERR_STATE, "tape_replay: %s (output '%s', entry %lld) takes "
                             "its seed from an attribute fixed when it was recorded, so a replay "
                             "would draw the same numbers again; reset and record every step",
                             node->op->name, tgi_node_name(node->call.output, name, sizeof name),
                             (long long)e);
        }
    }
    tape->replay_checked = n_forward;
    return TG_OK;
}

tg_status tg_tape_replay(tg_tape *tape) {
    if (!tape) return TG_ERR_INVALID;
    if (tgi_refuse_in_pass(tape, "tg_tape_replay") != TG_OK) return TG_ERR_STATE;
    /* The step's forward: what was recorded before its first backward (everything, if none
     * ran yet). Whatever was recorded after it stays on the tape and is not replayed. */
    bool ended = tape->forward_entries >= 0;
    int64_t n_forward = ended ? tape->forward_entries : tape->n_entries;
    int64_t unrecorded = ended ? tape->forward_unrecorded : tape->n_unrecorded;
    tg_status status = check_replayable(tape, n_forward, unrecorded);
    if (status != TG_OK) return status;
    tg_ctx *ctx = tape->ctx;
    tape->pending_label[0] = '\0'; /* a label names the output of the next op recorded */
    tape->replays++;
    tape->step++;
    tape->replaying = true;
    tape->misused = false;
    /* What was recorded after the forward (a product's nodes) keeps its old numbers: no walk
     * may read its old gradients as if something had reached it this time. */
    for (int64_t e = n_forward; e < tape->n_entries; e++) tape->entries[e]->call.output->grad = NULL;
    status = ctx->watch_forward ? replay_entries(tape, n_forward, true)
                                : replay_entries(tape, n_forward, false);
    tape->replaying = false;
    tape->state = status == TG_OK ? TGI_TAPE_RECORDING : TGI_TAPE_REPLAY_FAILED;
    return status;
}
