/* tests/test_misuse_lm.c — the language-model functions (attention ops, embeddings, attention
 * layers, transformers, language models) called with NULL handles and pointers and inputs of
 * another context: each returns its documented value and says why. */
#include "misuse.h"

#include <unistd.h>

static tg_tensor *call_attention(tg_tensor **in) {
    return tg_attention(W.tape, in[0], in[1], in[2], true, 0.0f);
}
MISUSE(tg_attention) {
    NULLED_QUIETLY(tg_attention(NULL, W.w, W.w, W.w, false, 0.0f));
    tg_clear_error(W.ctx);
    cr_expect_null(call_attention((tg_tensor *[]){W.w, W.w, W.w}), "a [3] input accepted");
    expect_message("tg_attention on [3] inputs");
    for (int bad = 0; bad < 3; bad++) {
        tg_tensor *in[3] = {W.x, W.x, W.x};
        in[bad] = NULL;
        NULLED(call_attention(in));
        in[bad] = W.foreign;
        NULLED(call_attention(in));
    }
}
MISUSE(tg_attention_qkv) {
    NULLED_QUIETLY(tg_attention_qkv(NULL, W.w, 1, true, 0.0f));
    NULLED(tg_attention_qkv(W.tape, NULL, 1, true, 0.0f));
    NULLED(tg_attention_qkv(W.tape, W.foreign, 1, true, 0.0f));
    NULLED(tg_attention_qkv(W.tape, W.w, 1, true, 0.0f)); /* not [B, T, 3E] */
}
MISUSE(tg_embedding_new) {
    NULLED_QUIETLY(tg_embedding_new(NULL, "e", 4, 2, NULL, 1));
    NULLED(tg_embedding_new(W.ctx, NULL, 4, 2, NULL, 1));
    NULLED(tg_embedding_new(W.ctx, "e", 4, 0, NULL, 1));
}
MISUSE(tg_mha_defaults) {
    tg_mha_config c = tg_mha_defaults(8, 2);
    cr_expect(c.embed_dim == 8 && c.num_heads == 2 && !c.causal && !c.qk_norm);
}
MISUSE(tg_mha_new) {
    tg_mha_config c = tg_mha_defaults(8, 2);
    NULLED_QUIETLY(tg_mha_new(NULL, "a", &c));
    NULLED(tg_mha_new(W.ctx, NULL, &c));
    NULLED(tg_mha_new(W.ctx, "a", NULL));
    c.num_heads = 3;
    NULLED(tg_mha_new(W.ctx, "a", &c));
}
MISUSE(tg_transformer_block_new) {
    tg_transformer_config c = {.d_model = 8, .n_heads = 2};
    NULLED_QUIETLY(tg_transformer_block_new(NULL, "b", &c));
    NULLED(tg_transformer_block_new(W.ctx, NULL, &c));
    NULLED(tg_transformer_block_new(W.ctx, "b", NULL));
    c.dropout = 1.0f;
    NULLED(tg_transformer_block_new(W.ctx, "b", &c));
}
MISUSE(tg_gpt_new) {
    tg_gpt_config c = {.vocab = 5, .block_size = 4, .d_model = 8, .n_heads = 2, .n_layers = 1};
    NULLED_QUIETLY(tg_gpt_new(NULL, "g", &c));
    NULLED(tg_gpt_new(W.ctx, NULL, &c));
    NULLED(tg_gpt_new(W.ctx, "g", NULL));
    c.block_size = 0;
    NULLED(tg_gpt_new(W.ctx, "g", &c));
}
MISUSE(tg_rnn_lm_new) {
    tg_rnn_lm_config c = {.kind = TG_RNN_GRU, .vocab = 5, .embed_dim = 3, .hidden = 4};
    NULLED_QUIETLY(tg_rnn_lm_new(NULL, "r", &c));
    NULLED(tg_rnn_lm_new(W.ctx, NULL, &c));
    NULLED(tg_rnn_lm_new(W.ctx, "r", NULL));
    c.hidden = 0;
    NULLED(tg_rnn_lm_new(W.ctx, "r", &c));
}
MISUSE(tg_lm_loss) {
    NULLED_QUIETLY(tg_lm_loss(NULL, W.w, W.w));
    NULLED(tg_lm_loss(W.tape, NULL, W.w));
    NULLED(tg_lm_loss(W.tape, W.w, NULL));
    NULLED(tg_lm_loss(W.tape, W.w, W.w)); /* not [B, T, V] and [B, T] */
}
MISUSE(tg_lm_generate) {
    float ids[4] = {0, 1, 0, 0};
    GIVES(tg_lm_generate(NULL, W.tape, ids, 2, 2, 4, 1.0f, 1), TG_ERR_INVALID);
    REFUSED(tg_lm_generate(W.linear, NULL, ids, 2, 2, 4, 1.0f, 1));
    REFUSED(tg_lm_generate(W.linear, W.tape, NULL, 2, 2, 4, 1.0f, 1));
    REFUSED(tg_lm_generate(W.linear, W.tape, ids, 0, 2, 4, 1.0f, 1));
    REFUSED(tg_lm_generate(W.linear, W.tape, ids, 2, 2, 4, NAN, 1));
    tg_tape *other = tg_tape_new(W.other);
    REFUSED(tg_lm_generate(W.linear, other, ids, 2, 2, 4, 1.0f, 1));
    tg_tape_free(other);
    /* a model whose output is not [1, T, V] */
    REFUSED(tg_lm_generate(W.linear, W.tape, ids, 2, 2, 4, 1.0f, 1));
}
MISUSE(tg_module_save_with_metadata) {
    const char *meta[] = {"k", "v"};
    GIVES(tg_module_save_with_metadata(NULL, "/tmp/x.safetensors", meta, 1), TG_ERR_INVALID);
    REFUSED(tg_module_save_with_metadata(W.linear, NULL, meta, 1));
    REFUSED(tg_module_save_with_metadata(W.linear, "/tmp/x.safetensors", NULL, 1));
    REFUSED(tg_module_save_with_metadata(W.linear, "/tmp/x.safetensors", meta, -1));
    REFUSED(tg_module_save_with_metadata(W.linear, "/tmp/x.safetensors", (const char *[]){"k", NULL}, 1));
}
MISUSE(tg_safetensors_names) {
    char names[2][TG_LABEL_MAX];
    GIVES(tg_safetensors_names(NULL, "/tmp/x.safetensors", names, 2), -1);
    REFUSED(tg_safetensors_names(W.ctx, NULL, names, 2) < 0 ? TG_ERR_INVALID : TG_OK);
    REFUSED(tg_safetensors_names(W.ctx, "/tmp/x.safetensors", NULL, 2) < 0 ? TG_ERR_INVALID : TG_OK);
    REFUSED(tg_safetensors_names(W.ctx, "/tmp/x.safetensors", names, -1) < 0 ? TG_ERR_INVALID : TG_OK);
    REFUSED(tg_safetensors_names(W.ctx, "/nonexistent/x.safetensors", names, 2) < 0 ? TG_ERR_INVALID : TG_OK);
}

MISUSE(tg_safetensors_metadata) {
    char buf[16];
    GIVES(tg_safetensors_metadata(NULL, "/tmp/x.safetensors", "k", buf, sizeof buf), TG_ERR_INVALID);
    REFUSED(tg_safetensors_metadata(W.ctx, NULL, "k", buf, sizeof buf));
    REFUSED(tg_safetensors_metadata(W.ctx, "/tmp/x.safetensors", NULL, buf, sizeof buf));
    REFUSED(tg_safetensors_metadata(W.ctx, "/tmp/x.safetensors", "k", NULL, sizeof buf));
    REFUSED(tg_safetensors_metadata(W.ctx, "/tmp/x.safetensors", "k", buf, 0));
    REFUSED(tg_safetensors_metadata(W.ctx, "/nonexistent/x.safetensors", "k", buf, sizeof buf));
}

MISUSE(tg_safetensors_list) {
    tg_safetensors_entry entries[2];
    GIVES(tg_safetensors_list(NULL, "/tmp/x.safetensors", entries, 2), -1);
    REFUSED(tg_safetensors_list(W.ctx, NULL, entries, 2) < 0 ? TG_ERR_INVALID : TG_OK);
    REFUSED(tg_safetensors_list(W.ctx, "/tmp/x.safetensors", NULL, 2) < 0 ? TG_ERR_INVALID : TG_OK);
    REFUSED(tg_safetensors_list(W.ctx, "/tmp/x.safetensors", entries, -1) < 0 ? TG_ERR_INVALID : TG_OK);
    REFUSED(tg_safetensors_list(W.ctx, "/nonexistent/x.safetensors", entries, 2) < 0 ? TG_ERR_INVALID : TG_OK);
}

MISUSE(tg_checkpoint_save) {
    REFUSED_QUIETLY(tg_checkpoint_save(NULL, NULL, "/tmp/x.safetensors"));
    REFUSED(tg_checkpoint_save(W.linear, NULL, NULL));
    REFUSED(tg_checkpoint_save(W.linear, NULL, "/nonexistent/dir/x.safetensors"));
}

MISUSE(tg_checkpoint_save_tensors) {
    tg_tensor *state[1] = {W.w};
    const char *meta[2] = {"key", "value"}, *reserved[2] = {"optimizer.steps", "1"};
    GIVES(tg_checkpoint_save_tensors(NULL, state, 1, NULL, NULL, 0, "/tmp/x.safetensors"), TG_ERR_INVALID);
    REFUSED(tg_checkpoint_save_tensors(W.ctx, NULL, 1, NULL, NULL, 0, "/tmp/x.safetensors"));
    REFUSED(tg_checkpoint_save_tensors(W.ctx, state, 0, NULL, NULL, 0, "/tmp/x.safetensors"));
    REFUSED(tg_checkpoint_save_tensors(W.ctx, state, 1, NULL, NULL, 1, "/tmp/x.safetensors"));
    REFUSED(tg_checkpoint_save_tensors(W.ctx, state, 1, NULL, meta, 9, "/tmp/x.safetensors"));
    REFUSED(tg_checkpoint_save_tensors(W.ctx, state, 1, NULL, reserved, 1, "/tmp/x.safetensors"));
    REFUSED(tg_checkpoint_save_tensors(W.ctx, state, 1, NULL, meta, 1, NULL));
    tg_tensor *stale[1] = {W.x};
    tg_tape_reset(W.tape);
    REFUSED(tg_checkpoint_save_tensors(W.ctx, stale, 1, NULL, meta, 1, "/tmp/x.safetensors"));
}

MISUSE(tg_checkpoint_load_optimizer) {
    REFUSED_QUIETLY(tg_checkpoint_load_optimizer(NULL, "/tmp/x.safetensors"));
    REFUSED(tg_checkpoint_load_optimizer(W.opt, NULL));
    REFUSED(tg_checkpoint_load_optimizer(W.opt, "/nonexistent/x.safetensors"));
    char path[] = "/tmp/tg-misuse-ckpt-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    tg_tensor *state[1] = {W.w};
    cr_assert_eq(tg_checkpoint_save_tensors(W.ctx, state, 1, NULL, NULL, 0, path), TG_OK, "%s", tg_errmsg(W.ctx));
    REFUSED(tg_checkpoint_load_optimizer(W.opt, path)); /* no optimizer state in it */
    cr_assert_eq(tg_checkpoint_save_tensors(W.ctx, state, 1, W.opt, NULL, 0, path), TG_OK, "%s", tg_errmsg(W.ctx));
    cr_expect_eq(tg_checkpoint_load_optimizer(W.opt, path), TG_OK, "%s", tg_errmsg(W.ctx));
    unlink(path);
}

MISUSE(tg_checkpoint_load) {
    tg_checkpoint_report report;
    REFUSED_QUIETLY(tg_checkpoint_load(NULL, NULL, "/tmp/x.safetensors", NULL, &report));
    REFUSED(tg_checkpoint_load(W.linear, NULL, NULL, NULL, &report));
    REFUSED(tg_checkpoint_load(W.linear, NULL, "/nonexistent/x.safetensors", NULL, NULL));
    char path[] = "/tmp/tg-misuse-ckpt-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(tg_checkpoint_save(W.linear, NULL, path), TG_OK, "%s", tg_errmsg(W.ctx));
    tg_checkpoint_options remap = {.file_prefix = "nothing.", .model_prefix = "lin."};
    REFUSED(tg_checkpoint_load(W.linear, NULL, path, &remap, &report)); /* nothing matches */
    cr_expect(report.missing > 0 && report.unexpected > 0);
    cr_expect_eq(tg_checkpoint_load(W.linear, NULL, path, NULL, &report), TG_OK, "%s", tg_errmsg(W.ctx));
    unlink(path);
}
