/*
 * tests/test_module_summary.c — tg_module_summary on examples/residual.c's module (built here the
 * same way) and on a built-in MLP with batch norm: every module, parameter and buffer by name,
 * kind, shape and count, per child, with totals; and the parameter-listing contract that cannot
 * overflow (tg_module_params / tg_module_state refuse an array too small, tg_optimizer_new
 * refuses the -1 passed on, tg_optimizer_new_module needs no array).
 */
#include "fixture.h"

TestSuite(module_summary, .init = fixture_setup, .fini = fixture_teardown);

/* examples/residual.c's net: in, BLOCKS x (fc1, fc2), head, as children of a tg_module_new. */
#define BLOCKS 24
#define WIDTH 64

typedef struct skipnet {
    tg_module *in, *head, *fc1[BLOCKS], *fc2[BLOCKS];
} skipnet;

static tg_tensor *skipnet_forward(tg_module *m, tg_tape *t, tg_tensor *x) {
    const skipnet *net = tg_module_data(m);
    tg_tensor *h = tg_module_forward(net->in, t, x);
    for (int i = 0; i < BLOCKS; i++)
        h = tg_add(t, h, tg_module_forward(net->fc2[i], t, tg_tanh(t, tg_module_forward(net->fc1[i], t, tg_tanh(t, h)))));
    return tg_module_forward(net->head, t, tg_tanh(t, h));
}

static tg_module *add_linear(tg_module *m, const char *part, int64_t in, int64_t out, uint64_t seed) {
    char name[128];
    snprintf(name, sizeof name, "%s.%s", tg_module_name(m), part);
    tg_init init = tg_init_xavier(TG_ACT_TANH);
    tg_module *fc = tg_linear_new(ctx, name, in, out, true, &init, seed);
    cr_assert_eq(tg_module_add_child(m, fc), TG_OK, "%s", tg_errmsg(ctx));
    return fc;
}

static tg_module *skipnet_new(const char *name) {
    skipnet *net = calloc(1, sizeof *net);
    tg_module *m = tg_module_new(ctx, name, &(tg_module_def){skipnet_forward, free}, net);
    cr_assert_not_null(m, "%s", tg_errmsg(ctx));
    net->in = add_linear(m, "in", 64, WIDTH, 1);
    for (int i = 0; i < BLOCKS; i++) {
        char part[32];
        snprintf(part, sizeof part, "block%d.fc1", i);
        net->fc1[i] = add_linear(m, part, WIDTH, WIDTH, 100 + 2 * (uint64_t)i);
        snprintf(part, sizeof part, "block%d.fc2", i);
        net->fc2[i] = add_linear(m, part, WIDTH, WIDTH, 101 + 2 * (uint64_t)i);
    }
    net->head = add_linear(m, "head", WIDTH, 10, 2);
    return m;
}

/* The summary as text (the caller frees it). */
static char *summary_of(const tg_module *m) {
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    cr_assert_not_null(out);
    cr_assert_eq(tg_module_summary(m, out), TG_OK, "%s", tg_errmsg(ctx));
    fclose(out);
    return text;
}

/* The row whose first word is name has the words given after it (shape "" for a module row),
 * and is indented by `indent` spaces. */
static void expect_row(const char *text, const char *name, int indent, const char *kind, const char *shape,
                       const char *count) {
    for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        char first[128], second[64], third[64], fourth[64];
        int words = sscanf(line, "%127s %63s %63s %63s", first, second, third, fourth);
        if (words < 3 || strcmp(first, name) != 0) continue;
        int spaces = (int)strspn(line, " ");
        cr_expect_eq(spaces, indent, "%s: indented %d, want %d", name, spaces, indent);
        cr_expect_str_eq(second, kind, "%s", name);
        cr_expect_str_eq(third, *shape ? shape : count, "%s", name);
        if (*shape) cr_expect_str_eq(fourth, count, "%s", name);
        return;
    }
    cr_expect_fail("no row for %s in:\n%s", name, text);
}

Test(module_summary, describes_examples_residual_module_child_by_child) {
    tg_module *net = skipnet_new("residual");
    char *text = summary_of(net);
    /* in: 64 x 64 + 64; 48 block layers alike; head 64 x 10 + 10 */
    const int64_t total = 4160 + 48 * 4160 + 650;
    cr_expect_eq(tg_module_num_elements(net), total);
    cr_expect(strncmp(text, "name ", 5) == 0, "a header first: %s", text);
    expect_row(text, "residual", 0, "module", "", "204,490");
    expect_row(text, "residual.in", 2, "linear", "", "4,160");
    expect_row(text, "residual.in.weight", 4, "parameter", "[64,64]", "4,096");
    expect_row(text, "residual.in.bias", 4, "parameter", "[64]", "64");
    expect_row(text, "residual.block23.fc2", 2, "linear", "", "4,160");
    expect_row(text, "residual.block23.fc2.weight", 4, "parameter", "[64,64]", "4,096");
    expect_row(text, "residual.head.weight", 4, "parameter", "[10,64]", "640");
    cr_expect(strstr(text, "total: 204,490 parameters in 100 tensors (204,490 trainable)\n"), "%s", text);
    cr_expect(!strstr(text, "buffers"), "no buffers in this net");
    /* the rows follow the tree: block 2 after block 1, the head last */
    cr_expect(strstr(text, "residual.block1.fc2.bias") < strstr(text, "residual.block2.fc1 "), "%s", text);
    cr_expect(strstr(text, "residual.block23.fc2.bias") < strstr(text, "residual.head "), "%s", text);
    free(text);
    tg_module_free(net);
}

Test(module_summary, a_built_in_mlp_with_buffers_and_a_frozen_parameter) {
    tg_mlp_config c = {.in = 8, .out = 3, .width = 16, .depth = 2, .activation = TG_ACT_RELU,
                       .norm = TG_NORM_BATCH, .seed = 1};
    tg_module *mlp = tg_mlp_new(ctx, "mlp", &c);
    cr_assert_not_null(mlp, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_set_requires_grad(tg_module_find_param(mlp, "mlp.layer1.bias"), false), TG_OK);
    char *text = summary_of(mlp);
    int64_t params = tg_module_num_elements(mlp);
    char total[160];
    snprintf(total, sizeof total, "total: %lld parameters in %d tensors (%lld trainable); buffers: 32 values in 2 tensors",
             (long long)params, tg_module_param_count(mlp), (long long)params - 3);
    cr_expect(strstr(text, total), "'%s' lacks '%s'", text, total);
    char count[32];
    snprintf(count, sizeof count, "%lld", (long long)params); /* 144 + 32 + 51: no comma */
    cr_expect_eq(params, 227);
    expect_row(text, "mlp", 0, "mlp", "", count);
    expect_row(text, "mlp.layer0.weight", 4, "parameter", "[16,8]", "128");
    expect_row(text, "mlp.layer0.norm.running_mean", 4, "buffer", "[16]", "16");
    expect_row(text, "mlp.layer1.bias", 4, "frozen", "[3]", "3");
    free(text);
    tg_module_free(mlp);
}

Test(module_summary, long_names_widen_the_column_rather_than_being_cut) {
    char name[56]; /* a label holds TG_LABEL_MAX - 1 = 63 characters: "<55 n>.weight" fits whole */
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    tg_module *fc = tg_linear_new(ctx, name, 2, 2, false, NULL, 1);
    cr_assert_not_null(fc, "%s", tg_errmsg(ctx));
    char *text = summary_of(fc);
    char weight[128];
    snprintf(weight, sizeof weight, "%s.weight", name);
    expect_row(text, weight, 2, "parameter", "[2,2]", "4");
    cr_expect(strstr(text, "total: 4 parameters in 1 tensor (4 trainable)"), "%s", text);
    free(text);
    tg_module_free(fc);
}

/* ---- listing parameters without overflowing ------------------------------------------------- */

static tg_module *deep_mlp(int depth) {
    tg_mlp_config c = {.in = 4, .out = 2, .width = 4, .depth = depth, .activation = TG_ACT_TANH, .seed = 3};
    tg_module *mlp = tg_mlp_new(ctx, "mlp", &c);
    cr_assert_not_null(mlp, "%s", tg_errmsg(ctx));
    return mlp;
}

/* The README's old snippet on a 30-layer MLP: 60 parameters into 16 slots. The count that used to
 * come back made tg_optimizer_new read 44 pointers past the array. */
Test(module_summary, an_array_too_small_is_refused_and_nothing_past_it_is_read) {
    tg_module *mlp = deep_mlp(30);
    tg_tensor *params[17];
    params[16] = (tg_tensor *)&params; /* a sentinel just past the 16 slots */
    for (int i = 0; i < 16; i++) params[i] = NULL;
    int n = tg_module_params(mlp, params, 16);
    cr_expect_eq(n, -1);
    cr_expect(strstr(tg_errmsg(ctx), "module_params: 'mlp' has 60 tensors, more than max 16"), "%s", tg_errmsg(ctx));
    cr_expect(strstr(tg_errmsg(ctx), "tg_module_param_count"), "%s", tg_errmsg(ctx));
    for (int i = 0; i < 16; i++) cr_expect_null(params[i], "nothing copied");
    cr_expect_eq(params[16], (tg_tensor *)&params, "nothing written past the array");
    tg_clear_error(ctx);
    cr_expect_null(tg_optimizer_new(ctx, params, n, &(tg_optimizer_config){.kind = TG_OPT_SGD, .lr = 0.1f}));
    cr_expect(strstr(tg_errmsg(ctx), "n_params is -1") && strstr(tg_errmsg(ctx), "tg_optimizer_new_module"),
              "%s", tg_errmsg(ctx));
    tg_clear_error(ctx);
    cr_expect_eq(tg_module_state(mlp, params, 16), -1);
    cr_expect(strstr(tg_errmsg(ctx), "module_state: 'mlp' has 60 tensors"), "%s", tg_errmsg(ctx));
    tg_module_free(mlp);
}

Test(module_summary, the_safe_idioms_size_the_array_or_need_none) {
    tg_module *mlp = deep_mlp(30);
    int n = tg_module_param_count(mlp);
    cr_expect_eq(n, 60);
    cr_expect_eq(tg_module_params(mlp, NULL, 0), 60, "a count query");
    tg_tensor **params = malloc((size_t)n * sizeof *params);
    cr_expect_eq(tg_module_params(mlp, params, n), 60);
    cr_expect_eq(params[59], tg_module_param(mlp, 59));
    free(params);
    tg_optimizer *opt = tg_optimizer_new_module(mlp, &(tg_optimizer_config){.kind = TG_OPT_ADAM, .lr = 1e-3f});
    cr_assert_not_null(opt, "%s", tg_errmsg(ctx));
    /* it trains every parameter: the last layer's bias moves */
    tg_tensor *last = tg_module_param(mlp, 59);
    float before = last->data[0];
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(1, 4), (float[]){1, 2, 3, 4});
    cr_assert_eq(tg_backward(tape, tg_sum(tape, tg_module_forward(mlp, tape, x))), TG_OK, "%s", tg_errmsg(ctx));
    tg_optimizer_step(opt);
    cr_expect_neq(last->data[0], before);
    tg_optimizer_free(opt);
    tg_module *empty = tg_module_new(ctx, "empty", &(tg_module_def){skipnet_forward, NULL}, NULL);
    cr_expect_null(tg_optimizer_new_module(empty, &(tg_optimizer_config){.kind = TG_OPT_SGD, .lr = 0.1f}));
    cr_expect(strstr(tg_errmsg(ctx), "module 'empty' has no parameters"), "%s", tg_errmsg(ctx));
    tg_module_free(empty);
    tg_module_free(mlp);
}
