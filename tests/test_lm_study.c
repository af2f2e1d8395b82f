/*
 * tests/test_lm_study.c — the study's `transformer` experiment (cli/lm_study.c) on a text the
 * test makes itself, so that no corpus package is needed: what a run records, and the shape of
 * its summary fields; and the message when the corpus is missing.
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/lm_study.h"
#include "helpers.h"

/* Words from a small list, chosen by a fixed LCG: text with structure a model can learn. */
static char *words_text(int64_t n) {
    static const char *const words[] = {"the ", "gradient ", "of ", "a ", "block ", "norm ", "layer ",
                                        "attention\n", "warm ", "up, ", "entropy. "};
    char *text = malloc((size_t)n);
    uint64_t state = 12345;
    for (int64_t at = 0; at < n;) {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        const char *w = words[(state >> 33) % (sizeof words / sizeof words[0])];
        for (; *w && at < n; w++) text[at++] = *w;
    }
    return text;
}

Test(lm_study, a_tiny_run_records_norms_by_block_and_entropies_in_range) {
    enum { N = 20000 };
    char *bytes = words_text(N);
    tg_ctx *ctx = tg_ctx_new();
    tg_text *text = tg_text_from_memory(ctx, bytes, N);
    cr_assert_not_null(text, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_text_split(text, 0.1, 1000, 1), TG_OK, "%s", tg_errmsg(ctx));
    lm_run_config c = {.part = LM_PART_ENTROPY, .n_layers = 3, .d_model = 16, .n_heads = 2, .block = 16,
                       .batch = 4, .lr = 3e-3f, .warmup = 2, .steps = 6, .entropy_every = 2, .eval_batches = 2,
                       .seed = 7, .threads = 1};
    static run_result out;
    static lm_run_result lm;
    lm_run(ctx, text, &c, &out, &lm, NULL, NULL);
    cr_assert_eq(out.error[0], '\0', "%s", out.error);
    cr_expect_eq(out.steps_done, 6);
    cr_expect_eq(out.n_layers, 3);
    for (int l = 0; l < 3; l++) {
        cr_expect(isfinite(lm.block_grad_norm[l]) && lm.block_grad_norm[l] > 0, "block %d: %g", l, lm.block_grad_norm[l]);
        cr_expect(lm.block_grad_norm_all[l] >= lm.block_grad_norm[l], "all parameters hold the weights");
    }
    cr_expect_eq(lm.n_samples, 4, "steps 0, 2, 4 and the last");
    for (int s = 0; s < lm.n_samples; s++)
        for (int k = 0; k < 3 * LM_MAX_HEADS; k++) {
            if (k % LM_MAX_HEADS >= 2) continue;
            cr_expect(lm.entropy[s][k] >= 0 && lm.entropy[s][k] <= log(16.0), "sample %d head %d: %g", s, k, lm.entropy[s][k]);
            cr_expect_geq(lm.entropy[s][k], lm.min_entropy[s]);
        }
    cr_expect(isfinite(lm.held_out_bpc) && lm.held_out_bpc > 0, "bpc %g", lm.held_out_bpc);
    cr_expect(isfinite(lm.final_train_loss));
    run_result_free(&out);
    tg_text_free(text);
    tg_ctx_free(ctx);
    free(bytes);
}

Test(lm_study, the_experiment_on_given_text_writes_its_summary_fields) {
    enum { N = 60000 };
    char *bytes = words_text(N);
    static experiment e;
    memset(&e, 0, sizeof e);
    e.name = "transformer";
    cr_assert(lm_study_setup(&e, 3, true, bytes, N));
    cr_assert_geq(e.n_runs, 11, "4 at init, 3 for warm-up, 4 for entropy");
    cr_expect_eq(e.lm->configs[0].part, LM_PART_INIT);
    e.runs[0].threads = 1;
    lm_study_train(&e, 0, NULL, NULL); /* the cheapest: one backward pass at initialisation */
    const run_result *r = &e.results[0];
    cr_assert_eq(r->error[0], '\0', "%s", r->error);
    json_t *run = json_object();
    lm_study_json(&e, 0, run);
    cr_expect_str_eq(json_string_value(json_object_get(run, "part")), "init");
    cr_expect_str_eq(json_string_value(json_object_get(run, "model")), "gpt");
    cr_expect_eq(json_integer_value(json_object_get(run, "depth")), e.lm->configs[0].n_layers);
    cr_expect(json_is_array(json_object_get(run, "entropy_by_head")));
    json_decref(run);
    for (int l = 0; l < r->n_layers; l++) cr_expect_gt(r->grad_norm_by_layer[l], 0);
    cr_expect_eq(r->n_layers, e.lm->configs[0].n_layers);
    for (int i = 1; i < e.n_runs; i++) run_result_free(&e.results[i]);
    run_result_free(&e.results[0]);
    lm_study_free(&e);
    free(bytes);
}

Test(lm_study, a_missing_corpus_names_the_package) {
    static experiment e;
    memset(&e, 0, sizeof e);
    e.name = "transformer";
    cr_assert(lm_study_setup(&e, 1, true, NULL, 0));
    e.lm->corpus = "no-such-corpus";
    e.runs[0].threads = 1;
    lm_study_train(&e, 0, NULL, NULL);
    cr_expect(strstr(e.results[0].error, "fortunes") && strstr(e.results[0].error, "setup.sh"), "%s", e.results[0].error);
    lm_study_finding(&e, e.finding, sizeof e.finding);
    cr_expect(strstr(e.finding, "could not run") == NULL, "only one of its runs failed");
    run_result_free(&e.results[0]);
    lm_study_free(&e);
}
