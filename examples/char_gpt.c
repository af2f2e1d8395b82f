/*
 * examples/char_gpt.c — a character-level GPT on any text file: train on nine tenths of it,
 * report held-out bits per character, then continue a prompt. A hook on one block's attention
 * probabilities shows what a user can watch inside the model.
 *
 *   ./char_gpt FILE [STEPS] [PROMPT]        (default 300 steps, prompt "The ")
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapegrad.h"

#define BATCH 16
#define CONTEXT 64

static int fail(tg_ctx *ctx) {
    fprintf(stderr, "error: %s\n", tg_errmsg(ctx));
    return 1;
}

/* The mean entropy of the last block's attention rows, in nats: how spread its attention is. */
static tg_status attention_entropy(tg_ctx *ctx, const tg_hook_event *e, void *user) {
    (void)ctx;
    int64_t t = e->node->shape[3];
    double h = 0.0;
    for (int64_t i = 0; i < e->size; i++)
        if (e->values[i] > 0.0f) h -= e->values[i] * log(e->values[i]);
    *(double *)user = h / (double)(e->size / t);
    return TG_OK;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE [STEPS] [PROMPT]\n", argv[0]);
        return 2;
    }
    long steps = argc > 2 ? atol(argv[2]) : 300;
    const char *prompt = argc > 3 ? argv[3] : "The ";
    tg_ctx *ctx = tg_ctx_new();
    tg_text *text = tg_text_load(ctx, argv[1]);
    if (!text || tg_text_split(text, 0.1, 4096, 1) != TG_OK) return fail(ctx);

    tg_gpt_config c = {.vocab = tg_text_vocab_size(text), .block_size = CONTEXT, .d_model = 64,
                       .n_heads = 4, .n_layers = 2, .seed = 1};
    tg_module *gpt = tg_gpt_new(ctx, "gpt", &c);
    if (!gpt) return fail(ctx);
    tg_optimizer *opt = tg_optimizer_new_module(gpt, &(tg_optimizer_config){.kind = TG_OPT_ADAMW, .lr = 3e-3f});
    tg_text_batcher *train = tg_text_batcher_new(text, TG_TEXT_TRAIN, TG_TEXT_RANDOM, BATCH, CONTEXT, 1);
    tg_text_batcher *held_out = tg_text_batcher_new(text, TG_TEXT_HELD_OUT, TG_TEXT_SEQUENTIAL,
                                                    BATCH, CONTEXT, 1);
    tg_tensor *x = tg_zeros(ctx, TG_SHAPE(BATCH, CONTEXT)), *y = tg_zeros(ctx, TG_SHAPE(BATCH, CONTEXT));
    tg_tape *tape = tg_tape_new(ctx);
    if (!opt || !train || !held_out || !x || !y || !tape) return fail(ctx);

    double entropy = NAN;
    for (long step = 1; step <= steps; step++) {
        tg_tape_reset(tape);
        tg_text_batcher_next_into(train, x, y);
        /* watch the last block's attention on the last step only: the hook makes the layer keep
         * its probabilities as a node, which costs memory the other steps need not pay */
        int64_t hook = step == steps ? tg_hook_pattern(ctx, "gpt.block1.attn.probs", TG_PASS_FORWARD,
                                                       attention_entropy, &entropy) : -1;
        tg_tensor *loss = tg_lm_loss(tape, tg_module_forward(gpt, tape, x), y);
        if (!loss || tg_backward(tape, loss) != TG_OK) return fail(ctx);
        tg_optimizer_step_zero_grad(opt);
        if (hook >= 0) tg_hook_remove(ctx, hook);
        if (step % 50 == 0) printf("step %ld: loss %.3f (%.2f bits per character)\n", step,
                                   loss->data[0], loss->data[0] / log(2.0));
    }
    printf("last block's attention entropy: %.2f nats (uniform over %d positions: at most %.2f)\n",
           entropy, CONTEXT, log(CONTEXT));

    double nats = 0.0, chars = 0.0;
    int64_t rows;
    tg_module_set_training(gpt, false);
    while ((rows = tg_text_batcher_next_into(held_out, x, y)) > 0) {
        tg_tape_reset(tape);
        tg_no_grad_begin(tape);
        /* the rows that hold a window: the last batch of the pass may have fewer */
        tg_tensor *loss = tg_lm_loss(tape, tg_slice(tape, tg_module_forward(gpt, tape, x), 0, 0, rows),
                                     tg_slice(tape, y, 0, 0, rows));
        tg_no_grad_end(tape);
        if (!loss) return fail(ctx);
        nats += (double)loss->data[0] * (double)(rows * CONTEXT);
        chars += (double)(rows * CONTEXT);
    }
    printf("held-out: %.3f bits per character\n", nats / chars / log(2.0));

    size_t n_prompt = strlen(prompt), n_new = 200;
    float *ids = malloc((n_prompt + n_new) * sizeof *ids);
    for (size_t i = 0; i < n_prompt; i++) {
        int id = tg_text_encode_byte(text, (unsigned char)prompt[i]);
        ids[i] = (float)(id < 0 ? 0 : id); /* a byte the text never holds: its first byte */
    }
    if (tg_lm_generate(gpt, tape, ids, (int64_t)n_prompt, (int64_t)n_new, CONTEXT, 0.8f, 7) != TG_OK)
        return fail(ctx);
    for (size_t i = 0; i < n_prompt + n_new; i++) putchar(tg_text_decode_id(text, (int)ids[i]));
    putchar('\n');

    free(ids);
    tg_tape_free(tape);
    tg_text_batcher_free(train);
    tg_text_batcher_free(held_out);
    tg_optimizer_free(opt);
    tg_module_free(gpt);
    tg_text_free(text);
    tg_ctx_free(ctx);
    return 0;
}
