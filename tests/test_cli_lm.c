/*
 * tests/test_cli_lm.c — the tool's language models, driven directly: `train --model gpt` and
 * `--model lstm-lm` on a text file the test writes, `--save` then `sample` from the checkpoint
 * alone, and the arguments they refuse.
 */
#include <stdlib.h>
#include <unistd.h>

#include "cli/lm.h"
#include "cli_run.h"
#include "helpers.h"

#include <criterion/redirect.h>

/* A text of one sentence repeated: a model that learns it predicts almost every character. */
static void write_text(const char *path) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 400; i++) fputs("the cat sat on the mat. ", f);
    fclose(f);
}

static int call(int (*fn)(int, char **), const char **argv, int argc) {
    return fn(argc, (char **)argv);
}

/* Writes the sentence text in a new folder and runs fn with its stdout in <dir>/stdout; the
 * paths come back in dir and data ("text:<dir>/cat.txt"). */
typedef struct lm_case {
    char dir[64], data[160], out[128];
} lm_case;

static void lm_case_begin(lm_case *c) {
    char text[128];
    temp_dir_make(c->dir, "tapegrad-lm");
    snprintf(text, sizeof text, "%s/cat.txt", c->dir);
    snprintf(c->out, sizeof c->out, "%s/stdout", c->dir);
    snprintf(c->data, sizeof c->data, "text:%s", text);
    write_text(text);
    fflush(stdout);
    cr_assert_not_null(freopen(c->out, "w", stdout));
}

/* Back to no stdout; the held-out bits per character the run printed. */
static double lm_case_end(lm_case *c);

/* The number printed after `key` in the file. */
static double number_after(const char *path, const char *key) {
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char line[512];
    double value = NAN;
    while (fgets(line, sizeof line, f))
        if (strstr(line, key)) value = strtod(strstr(line, key) + strlen(key), NULL);
    fclose(f);
    return value;
}

static double lm_case_end(lm_case *c) {
    fflush(stdout);
    cr_assert_not_null(freopen("/dev/null", "w", stdout));
    return number_after(c->out, "held-out bits per character: ");
}

Test(cli_lm, gpt_trains_saves_and_samples_from_the_checkpoint_alone) {
    lm_case c;
    char ckpt[128];
    lm_case_begin(&c);
    snprintf(ckpt, sizeof ckpt, "%s/gpt.safetensors", c.dir);
    const char *train[] = {"--model", "gpt", "--data", c.data, "--steps", "120", "--layers", "1",
                           "--width", "32", "--context", "24", "--batch", "16", "--lr", "3e-3",
                           "--save", ckpt};
    int status = call(run_lm_train, train, 18);
    const char *sample[] = {"--load", ckpt, "--prompt", "the cat ", "--tokens", "16",
                            "--temperature", "0"};
    int sampled = call(run_sample, sample, 8);
    double bpc = lm_case_end(&c);
    cr_expect_eq(status, 0);
    cr_expect_eq(sampled, 0);
    cr_expect(bpc < 0.5, "held-out %.3f bits per character (uniform over 11 symbols: 3.46)", bpc);
    char *printed = NULL;
    FILE *f = fopen(c.out, "r");
    size_t n = 0;
    cr_assert(getdelim(&printed, &n, '\0', f) > 0);
    fclose(f);
    cr_expect(strstr(printed, "the cat sat on the mat") != NULL, "no learned sentence in:\n%s", printed);
    free(printed);
    temp_dir_remove(c.dir);
}

Test(cli_lm, an_lstm_lm_trains_on_the_same_text) {
    lm_case c;
    lm_case_begin(&c);
    const char *train[] = {"--model", "lstm-lm", "--data", c.data, "--steps", "150", "--hidden", "48",
                           "--width", "16", "--context", "24", "--batch", "16", "--lr", "1e-2"};
    int status = call(run_lm_train, train, 16);
    double bpc = lm_case_end(&c);
    cr_expect_eq(status, 0);
    cr_expect(bpc < 0.5, "held-out %.3f bits per character", bpc);
    temp_dir_remove(c.dir);
}

Test(cli_lm, bad_arguments_exit_2_with_a_reason, .init = cr_redirect_stderr) {
    const char *typo[] = {"--model", "gpt", "--contxt", "8"};
    cr_expect_eq(call(run_lm_train, typo, 4), 2);
    const char *heads[] = {"--model", "gpt", "--width", "30", "--heads", "4"};
    cr_expect_eq(call(run_lm_train, heads, 6), 2);
    const char *rnn_flag[] = {"--model", "lstm-lm", "--post-ln"};
    cr_expect_eq(call(run_lm_train, rnn_flag, 3), 2);
    const char *data[] = {"--model", "gpt", "--data", "digits"};
    cr_expect_eq(call(run_lm_train, data, 4), 2);
    const char *no_load[] = {"--prompt", "x"};
    cr_expect_eq(call(run_sample, no_load, 2), 2);
    const char *temperature[] = {"--load", "/nonexistent", "--temperature", "-1"};
    cr_expect_eq(call(run_sample, temperature, 4), 2);
    fflush(stderr);
    cr_expect_stderr_eq_str(
        "tapegrad train: unknown option '--contxt' for a language model; did you mean '--context'? "
        "(see tapegrad train --model gpt --help)\n"
        "tapegrad train: --width must be a multiple of --heads (d_model = heads x head size)\n"
        "tapegrad train: --post-ln, --qk-norm, --tie and --dropout are for --model gpt, not lstm-lm\n"
        "tapegrad train: --data: a language model reads fortunes or text:PATH, not 'digits'\n"
        "tapegrad sample: --load CKPT is required (a model train --save wrote)\n"
        "tapegrad sample: --temperature: '-1' is not a number from 0 to 100\n");
}

Test(cli_lm, a_text_too_short_for_its_windows_is_refused_by_name, .init = cr_redirect_stderr) {
    char dir[64], data[160];
    temp_dir_make(dir, "tapegrad-lm");
    snprintf(data, sizeof data, "text:%s", write_in_dir(dir, "short.txt", "to be or not", 12));
    const char *train[] = {"--model", "lstm-lm", "--data", data, "--context", "8"};
    cr_expect_eq(call(run_lm_train, train, 6), 1);
    fflush(stderr);
    char want[256];
    snprintf(want, sizeof want, "tapegrad train: --data %s: 12 bytes, too short for windows of "
             "--context 8 (at least 90 bytes)\n", data);
    cr_expect_stderr_eq_str(want);
    temp_dir_remove(dir);
}

/* --schedule is followed: step:1:0 sets the rate to 0 after the first step, so four more steps
 * change nothing (AdamW's decoupled decay is scaled by the rate too) and the checkpoint holds the
 * same bytes as a one-step run; --warmup and --schedule together, or a misspelled schedule, are
 * refused. */
Test(cli_lm, a_schedule_is_followed_and_refused_when_misspelled, .init = cr_redirect_stderr) {
    lm_case c;
    char one[128], five[128];
    lm_case_begin(&c);
    snprintf(one, sizeof one, "%s/one.safetensors", c.dir);
    snprintf(five, sizeof five, "%s/five.safetensors", c.dir);
    const char *a[] = {"--model", "gpt", "--data", c.data, "--layers", "1", "--width", "16",
                       "--context", "8", "--batch", "4", "--steps", "1", "--save", one};
    const char *b[] = {"--model", "gpt", "--data", c.data, "--layers", "1", "--width", "16",
                       "--context", "8", "--batch", "4", "--steps", "5", "--save", five,
                       "--schedule", "step:1:0"};
    cr_expect_eq(call(run_lm_train, a, 16), 0);
    cr_expect_eq(call(run_lm_train, b, 18), 0);
    lm_case_end(&c);
    cr_expect(same_file_bytes(one, five), "step:1:0 did not freeze the model");
    const char *both[] = {"--model", "gpt", "--warmup", "5", "--schedule", "cosine"};
    cr_expect_eq(call(run_lm_train, both, 6), 2);
    const char *typo[] = {"--model", "gpt", "--schedule", "cosin"};
    cr_expect_eq(call(run_lm_train, typo, 4), 2);
    const char *too_long[] = {"--model", "gpt", "--steps", "10", "--schedule", "warmup:10,cosine"};
    cr_expect_eq(call(run_lm_train, too_long, 6), 2);
    fflush(stderr);
    cr_expect_stderr_eq_str(
        "tapegrad train: --warmup N and --schedule: give one (--schedule warmup:N,cosine has both)\n"
        "tapegrad train: --schedule: expected cosine, linear, step:N:GAMMA or warmup:N[,cosine|,linear|,"
        "step:N:GAMMA], not 'cosin'\n"
        "tapegrad train: the warm-up (10 steps) leaves no step of --steps 10 to decay over\n");
    temp_dir_remove(c.dir);
}
