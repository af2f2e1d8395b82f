/*
 * tests/test_checkpoint.c — a module's and its optimizer's state in one file (tg_checkpoint_save
 * and _load): an Adam run on a cosine schedule stopped half-way, saved, and finished by a fresh
 * process ends on the same bits as the run that never stopped; a checkpoint loads into a module
 * of another root name through a prefix remap; a file that does not fit is refused naming both
 * sides, or loaded in part with the rest counted.
 */
#include "helpers.h"

#include <sys/wait.h>
#include <unistd.h>

static char dir[64], path[128];

static void setup(void) {
    temp_dir_make(dir, "tg-checkpoint");
    snprintf(path, sizeof path, "%s/run.safetensors", dir);
}

static void teardown(void) { temp_dir_remove(dir); }

TestSuite(checkpoint, .init = setup, .fini = teardown);

enum { STEPS = 24, BATCH = 16, IN = 6, CLASSES = 3 };

typedef struct run {
    tg_ctx *ctx;
    tg_tape *tape;
    tg_module *mlp;
    tg_optimizer *opt;
} run;

/* A model and its Adam on a warm-up + cosine schedule; seed sets the initial weights (a resumed
 * run starts from other weights: the checkpoint must replace them all). */
static run make(const char *name, uint64_t seed) {
    run r = {.ctx = tg_ctx_new()};
    tg_ctx_set_threads(r.ctx, 1);
    r.tape = tg_tape_new(r.ctx);
    tg_mlp_config mc = {.in = IN, .out = CLASSES, .width = 16, .depth = 3, .activation = TG_ACT_TANH,
                        .norm = TG_NORM_BATCH, .seed = seed};
    r.mlp = tg_mlp_new(r.ctx, name, &mc);
    cr_assert_not_null(r.mlp, "%s", tg_errmsg(r.ctx));
    tg_optimizer_config oc = {.kind = TG_OPT_ADAM, .lr = 0.01f};
    r.opt = tg_optimizer_new_module(r.mlp, &oc);
    cr_assert_not_null(r.opt, "%s", tg_errmsg(r.ctx));
    tg_schedule s = {.kind = TG_SCHEDULE_COSINE, .total_steps = STEPS, .warmup_steps = 4};
    cr_assert_eq(tg_optimizer_set_schedule(r.opt, &s), TG_OK, "%s", tg_errmsg(r.ctx));
    return r;
}

/* Step `step` of training: a batch that depends only on the step. */
static void train_step(run *r, int step) {
    float x[BATCH * IN], y[BATCH];
    for (int i = 0; i < BATCH * IN; i++) x[i] = (float)((i * 7 + step * 13) % 17) / 8.0f - 1.0f;
    for (int i = 0; i < BATCH; i++) y[i] = (float)((i + step) % CLASSES);
    tg_tape_reset(r->tape);
    tg_tensor *xt = tg_tape_from_data(r->tape, 2, (int64_t[]){BATCH, IN}, x);
    tg_tensor *yt = tg_tape_from_data(r->tape, 1, (int64_t[]){BATCH}, y);
    tg_tensor *loss = tg_cross_entropy(r->tape, tg_module_forward(r->mlp, r->tape, xt), yt);
    cr_assert_eq(tg_backward(r->tape, loss), TG_OK, "%s", tg_errmsg(r->ctx));
    cr_assert_eq(tg_optimizer_step(r->opt), TG_OK, "%s", tg_errmsg(r->ctx));
    tg_optimizer_zero_grad(r->opt);
}

static void release(run *r) {
    tg_optimizer_free(r->opt);
    tg_module_free(r->mlp);
    tg_tape_free(r->tape);
    tg_ctx_free(r->ctx);
}

static float first_value(const tg_module *m) {
    tg_tensor *state[64];
    cr_assert_gt(tg_module_state(m, state, 64), 0);
    return state[0]->data[0];
}

/* Every state tensor's bits equal. */
static void expect_same_state(const tg_module *a, const tg_module *b) {
    tg_tensor *sa[64], *sb[64];
    int n = tg_module_state(a, sa, 64);
    cr_assert_eq(tg_module_state(b, sb, 64), n);
    for (int i = 0; i < n; i++)
        cr_expect_eq(memcmp(sa[i]->data, sb[i]->data, (size_t)sa[i]->size * sizeof(float)), 0,
                     "'%s' differs", sa[i]->label);
}

Test(checkpoint, a_stopped_adam_run_resumes_in_a_fresh_process_to_the_same_bits) {
    run whole = make("net", 1);
    for (int step = 0; step < STEPS; step++) train_step(&whole, step);

    run first = make("net", 1);
    for (int step = 0; step < STEPS / 2; step++) train_step(&first, step);
    cr_assert_eq(tg_checkpoint_save(first.mlp, first.opt, path), TG_OK, "%s", tg_errmsg(first.ctx));
    release(&first);

    char finished[160];
    snprintf(finished, sizeof finished, "%s/finished.safetensors", dir);
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) { /* a fresh process: other initial weights, a new optimizer, the file */
        run second = make("net", 99);
        tg_checkpoint_report report;
        if (tg_checkpoint_load(second.mlp, second.opt, path, NULL, &report) != TG_OK || !report.optimizer ||
            tg_optimizer_step_count(second.opt) != STEPS / 2)
            _exit(3);
        for (int step = STEPS / 2; step < STEPS; step++) train_step(&second, step);
        _exit(tg_checkpoint_save(second.mlp, second.opt, finished) == TG_OK ? 0 : 4);
    }
    int status;
    cr_assert_eq(waitpid(child, &status, 0), child);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the resumed process failed (%d)", status);
    run resumed = make("net", 7);
    cr_assert_eq(tg_checkpoint_load(resumed.mlp, resumed.opt, finished, NULL, NULL), TG_OK, "%s",
                 tg_errmsg(resumed.ctx));
    expect_same_state(whole.mlp, resumed.mlp);
    cr_expect_eq(tg_optimizer_step_count(resumed.opt), STEPS);
    cr_expect_eq(tg_optimizer_lr(resumed.opt), tg_optimizer_lr(whole.opt), "the schedule's position");
    release(&resumed);
    release(&whole);
}

Test(checkpoint, another_root_name_loads_through_a_prefix_remap) {
    run saved = make("other", 1);
    train_step(&saved, 0);
    cr_assert_eq(tg_checkpoint_save(saved.mlp, NULL, path), TG_OK, "%s", tg_errmsg(saved.ctx));
    run target = make("net", 5);
    tg_checkpoint_report report;
    /* as named, nothing fits: refused, naming both sides, nothing written */
    float before = first_value(target.mlp);
    cr_expect_eq(tg_checkpoint_load(target.mlp, NULL, path, NULL, &report), TG_ERR_NOT_FOUND);
    expect_errmsg_has(target.ctx, "does not fit module 'net'", "(first 'net.layer0.weight')",
                      "(first 'other.layer0.bias')");
    cr_expect_eq(first_value(target.mlp), before, "a refused load wrote");
    tg_clear_error(target.ctx);
    tg_checkpoint_options remap = {.file_prefix = "other.", .model_prefix = "net."};
    cr_assert_eq(tg_checkpoint_load(target.mlp, NULL, path, &remap, &report), TG_OK, "%s", tg_errmsg(target.ctx));
    cr_expect(report.loaded > 0 && report.missing == 0 && report.unexpected == 0 && !report.optimizer);
    expect_same_state(saved.mlp, target.mlp);
    release(&target);
    release(&saved);
}

/* The same MLP with batch norm after each hidden layer (norm) or without. */
static tg_module *mlp_with(tg_ctx *ctx, bool norm) {
    tg_mlp_config mc = {.in = IN, .out = CLASSES, .width = 16, .depth = 3, .activation = TG_ACT_TANH,
                        .norm = norm ? TG_NORM_BATCH : TG_NORM_NONE, .seed = 3};
    tg_module *m = tg_mlp_new(ctx, "net", &mc);
    cr_assert_not_null(m, "%s", tg_errmsg(ctx));
    return m;
}

Test(checkpoint, a_partial_load_reads_what_both_hold_and_counts_the_rest) {
    tg_ctx *ctx = tg_ctx_new();
    tg_module *plain = mlp_with(ctx, false), *normed = mlp_with(ctx, true);
    int n_plain = tg_module_state(plain, NULL, 0), n_normed = tg_module_state(normed, NULL, 0);
    cr_assert_gt(n_normed, n_plain);
    cr_assert_eq(tg_checkpoint_save(plain, NULL, path), TG_OK, "%s", tg_errmsg(ctx));
    tg_checkpoint_report report;
    cr_expect_eq(tg_checkpoint_load(normed, NULL, path, NULL, &report), TG_ERR_NOT_FOUND);
    expect_errmsg_has(ctx, "are not in the file (first 'net.layer0.norm.");
    tg_clear_error(ctx);
    tg_checkpoint_options partial = {.partial = true};
    cr_assert_eq(tg_checkpoint_load(normed, NULL, path, &partial, &report), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(report.loaded, n_plain);
    cr_expect_eq(report.missing, n_normed - n_plain);
    cr_expect_eq(report.unexpected, 0);
    /* the other way: the file holds what the module does not */
    char bigger[160];
    snprintf(bigger, sizeof bigger, "%s/normed.safetensors", dir);
    cr_assert_eq(tg_checkpoint_save(normed, NULL, bigger), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_checkpoint_load(plain, NULL, bigger, &partial, &report), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect(report.loaded == n_plain && report.missing == 0 && report.unexpected == n_normed - n_plain);
    cr_expect_eq(strncmp(report.first_unexpected, "net.layer0.norm.", 16), 0, "%s", report.first_unexpected);
    tg_module_free(plain);
    tg_module_free(normed);
    tg_ctx_free(ctx);
}

Test(checkpoint, an_optimizer_wants_a_file_that_holds_one) {
    run r = make("net", 1);
    cr_assert_eq(tg_checkpoint_save(r.mlp, NULL, path), TG_OK, "%s", tg_errmsg(r.ctx));
    cr_expect_eq(tg_checkpoint_load(r.mlp, r.opt, path, NULL, NULL), TG_ERR_NOT_FOUND);
    expect_errmsg_has(r.ctx, "holds no optimizer state");
    release(&r);
}
