/*
 * tests/test_cli_resume.c — `tapegrad train --resume`: a run stopped and resumed from its --save
 * checkpoint (the model, Adam's moments and step counts, the data's order) ends on the same bits
 * as a run never stopped — the two final checkpoints are the same bytes; a --save file still
 * loads with --load; and what --resume and --save-every refuse.
 */
#include "cli_run.h"

#include <unistd.h>

static char dir[64], whole[128], first[128], resumed[128], plain[128];

static void setup(void) {
    capture_cli_output();
    temp_dir_make(dir, "tg-cli-resume");
    snprintf(whole, sizeof whole, "%s/whole.safetensors", dir);
    snprintf(first, sizeof first, "%s/first.safetensors", dir);
    snprintf(resumed, sizeof resumed, "%s/resumed.safetensors", dir);
    snprintf(plain, sizeof plain, "%s/plain.safetensors", dir);
}

static void teardown(void) {
    unlink(whole);
    unlink(first);
    unlink(resumed);
    unlink(plain);
    rmdir(dir);
}

TestSuite(cli_resume, .init = setup, .fini = teardown);

static const char *errors(void) {
    fflush(stderr);
    return read_all(cr_get_redirected_stderr());
}

/* 30 steps of Adam on the digits' MLP with a dropout-free model: 12, a stop, then 18 more. The
 * batcher's epoch is 22 steps: the resumed run crosses an epoch boundary on the skipped order. */
Test(cli_resume, a_resumed_run_ends_on_the_bits_of_one_never_stopped) {
    cr_assert_eq(TRAIN("--steps", "30", "--batch", "64", "--threads", "1", "--save", whole), 0);
    cr_assert_eq(TRAIN("--steps", "12", "--batch", "64", "--threads", "1", "--save", first), 0);
    cr_assert_eq(TRAIN("--steps", "30", "--batch", "64", "--threads", "1", "--resume", first, "--save", resumed), 0);
    cr_expect(same_file_bytes(whole, resumed), "the resumed run's checkpoint differs from the unstopped run's");
    cr_expect(!same_file_bytes(whole, first), "12 steps ended where 30 did");
    /* the checkpoint with the optimizer's state still loads as a model */
    cr_expect_eq(TRAIN("--steps", "0", "--load", whole), 0);
}

Test(cli_resume, what_is_refused_says_why) {
    cr_assert_eq(TRAIN("--steps", "5", "--threads", "1", "--save", first), 0);
    cr_expect_eq(TRAIN("--steps", "5", "--resume", first), 1);
    cr_expect(strstr(errors(), "the checkpoint is at step 5, --steps 5 leaves nothing to go on with"));
    cr_expect_eq(TRAIN("--steps", "9", "--resume", first, "--load", first), 2);
    cr_expect(strstr(errors(), "--resume goes on from a checkpoint and --load starts from one"));
    cr_expect_eq(TRAIN("--steps", "9", "--save-every", "3"), 2);
    cr_expect(strstr(errors(), "--save-every N saves to --save PATH"));
    cr_expect_eq(TRAIN("--steps", "9", "--resume", first, "--depth", "3"), 1);
    cr_expect(strstr(errors(), "does not fit the model"));
    /* parameters alone (tg_save_safetensors) hold no optimizer state to go on with */
    tg_ctx *ctx = tg_ctx_new();
    tg_mlp_config config = {.in = 64, .width = 64, .out = 10, .depth = 4, .activation = TG_ACT_RELU, .seed = 1};
    tg_module *mlp = tg_mlp_new(ctx, "mlp", &config);
    tg_tensor *state[16];
    int n = tg_module_state(mlp, state, 16);
    cr_assert(n > 0 && tg_save_safetensors(ctx, plain, state, n) == TG_OK, "%s", tg_errmsg(ctx));
    tg_ctx_free(ctx);
    cr_expect_eq(TRAIN("--steps", "9", "--resume", plain), 1);
    cr_expect(strstr(errors(), "holds no optimizer state"));
}
