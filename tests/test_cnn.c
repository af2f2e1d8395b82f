/*
 * tests/test_cnn.c — the convolutional models: conv layer shapes, names and fans; the ResNet's
 * stages, its strided projection shortcuts, block labels for hooks, the plain twin; checkpoints
 * with running statistics; LeNet learning the digits; `train --model lenet|resnet` and
 * `study cnn --quick` driven in-process.
 */
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/report.h"
#include "fixture.h"

#include <criterion/redirect.h>

TestSuite(cnn, .init = fixture_setup, .fini = fixture_teardown);

static tg_tensor *random_images(int64_t n, int64_t c, int64_t h, int64_t w, uint64_t seed) {
    tg_tensor *x = tg_zeros(ctx, TG_SHAPE(n, c, h, w));
    cr_assert_not_null(x, "%s", tg_errmsg(ctx));
    tg_fill_normal(x, 0, 1, seed);
    return x;
}

/* The child module called name, anywhere below m. */
static tg_module *find_child(tg_module *m, const char *name) {
    if (strcmp(tg_module_name(m), name) == 0) return m;
    for (int i = 0; i < tg_module_child_count(m); i++) {
        tg_module *found = find_child(tg_module_child(m, i), name);
        if (found) return found;
    }
    return NULL;
}

static void expect_shape(const tg_tensor *t, int ndim, const int64_t *shape, const char *what) {
    cr_assert_not_null(t, "%s: %s", what, tg_errmsg(ctx));
    cr_assert_eq(t->ndim, ndim, "%s: %d dims, expected %d", what, t->ndim, ndim);
    for (int d = 0; d < ndim; d++)
        cr_expect_eq(t->shape[d], shape[d], "%s: dim %d is %lld, expected %lld", what, d,
                     (long long)t->shape[d], (long long)shape[d]);
}

static tg_module *small_resnet(const char *name, int depth, bool skip, uint64_t seed) {
    tg_resnet_config c = {.channels = 1, .classes = 10, .depth = depth, .width = 4, .skip = skip, .seed = seed};
    tg_module *net = tg_resnet_new(ctx, name, &c);
    cr_assert_not_null(net, "%s", tg_errmsg(ctx));
    return net;
}

/* ---- the conv layer ------------------------------------------------------------------------ */

Test(cnn, conv_layer_shapes_names_and_output) {
    tg_conv2d_opts opts = {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1};
    tg_module *conv = tg_conv2d_new(ctx, "c1", 3, 8, 3, 3, &opts, true, NULL, 1);
    cr_assert_not_null(conv, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_module_param_count(conv), 2);
    expect_shape(tg_module_param(conv, 0), TG_SHAPE(8, 3, 3, 3), "c1.weight");
    cr_expect_str_eq(tg_module_param(conv, 0)->label, "c1.weight");
    cr_expect_str_eq(tg_module_param(conv, 1)->label, "c1.bias");
    expect_shape(tg_module_forward(conv, tape, random_images(2, 3, 8, 8, 1)), TG_SHAPE(2, 8, 4, 4), "output");
    tg_module *asym = tg_conv2d_new(ctx, "c2", 4, 4, 3, 1, &(tg_conv2d_opts){.groups = 2}, false, NULL, 1);
    cr_assert_not_null(asym, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_module_param_count(asym), 1, "no bias");
    expect_shape(tg_module_param(asym, 0), TG_SHAPE(4, 2, 3, 1), "grouped 3x1 weight");
    tg_module_free(conv);
    tg_module_free(asym);
}

/* Xavier's bound sqrt(6 / (fan_in + fan_out)) with fan_out = out/groups * k: for [8, 2, 3, 3]
 * and groups 2 that is sqrt(6 / (18 + 36)) = 1/3; with PyTorch's fan_out (72) it would be 0.258.
 * 144 uniform draws come within 10% of the bound with probability 1 - 2.6e-7. */
Test(cnn, conv_fans_count_the_groups) {
    tg_init xavier = tg_init_xavier(TG_ACT_IDENTITY);
    tg_module *conv = tg_conv2d_new(ctx, "g", 4, 8, 3, 3, &(tg_conv2d_opts){.groups = 2}, false, &xavier, 3);
    cr_assert_not_null(conv, "%s", tg_errmsg(ctx));
    const tg_tensor *w = tg_module_param(conv, 0);
    float largest = 0;
    for (int64_t i = 0; i < w->size; i++) largest = fmaxf(largest, fabsf(w->data[i]));
    cr_expect_leq(largest, 1.0f / 3.0f + 1e-6f);
    cr_expect_gt(largest, 0.3f, "max |w| %.4f: the bound is too small (fan_out without /groups?)", (double)largest);
    /* He (fan_in = 2 * 9 = 18): std sqrt(2/18) = 1/3 over 144 draws */
    tg_module *he = tg_conv2d_new(ctx, "h", 4, 8, 3, 3, &(tg_conv2d_opts){.groups = 2}, false, NULL, 5);
    tg_stats stats;
    tg_stats_compute(tg_module_param(he, 0)->data, 144, &stats);
    cr_expect(stats.std > 0.27 && stats.std < 0.40, "He std %.4f, expected about 0.333", stats.std);
    tg_module_free(conv);
    tg_module_free(he);
}

Test(cnn, bad_geometry_is_refused_with_the_layer_named) {
    cr_expect_null(tg_conv2d_new(ctx, "odd", 3, 8, 3, 3, &(tg_conv2d_opts){.groups = 2}, true, NULL, 1));
    expect_errmsg_has(ctx, "conv2d 'odd'", "in 3", "groups 2");
    tg_clear_error(ctx);
    cr_expect_null(tg_conv2d_new(ctx, "k0", 3, 8, 0, 3, NULL, true, NULL, 1));
    expect_errmsg_has(ctx, "conv2d 'k0'", "kernel 0x3");
    tg_clear_error(ctx);
    tg_resnet_config rc = {.channels = 1, .classes = 10, .depth = 21};
    cr_expect_null(tg_resnet_new(ctx, "r", &rc));
    expect_errmsg_has(ctx, "resnet 'r'", "6n+2", "depth 21");
    tg_clear_error(ctx);
    tg_lenet_config lc = {.channels = 1, .height = 3, .width = 8, .classes = 10};
    cr_expect_null(tg_lenet_new(ctx, "l", &lc));
    expect_errmsg_has(ctx, "lenet 'l'", "4x4");
}

/* ---- LeNet --------------------------------------------------------------------------------- */

Test(cnn, lenet_layers_and_labels) {
    tg_lenet_config c = {.channels = 1, .height = 8, .width = 8, .classes = 10, .seed = 1};
    tg_module *net = tg_lenet_new(ctx, "lenet", &c);
    cr_assert_not_null(net, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_module_param_count(net), 10);
    expect_shape(tg_module_find_param(net, "lenet.conv1.weight"), TG_SHAPE(16, 1, 3, 3), "conv1");
    expect_shape(tg_module_find_param(net, "lenet.conv2.weight"), TG_SHAPE(32, 16, 3, 3), "conv2");
    expect_shape(tg_module_find_param(net, "lenet.fc1.weight"), TG_SHAPE(120, 128), "fc1: 32 x 2 x 2 in");
    expect_shape(tg_module_find_param(net, "lenet.fc3.weight"), TG_SHAPE(10, 84), "fc3");
    tg_tensor *y = tg_module_forward(net, tape, random_images(3, 1, 8, 8, 2));
    expect_shape(y, TG_SHAPE(3, 10), "logits");
    cr_expect_str_eq(y->label, "lenet.out");
    /* 28x28 (MNIST from idx files): 32 x 7 x 7 into fc1 */
    c.height = c.width = 28;
    tg_module *mnist = tg_lenet_new(ctx, "m", &c);
    expect_shape(tg_module_find_param(mnist, "m.fc1.weight"), TG_SHAPE(120, 1568), "28x28 fc1");
    tg_module_free(net);
    tg_module_free(mnist);
}

/* ---- ResNet -------------------------------------------------------------------------------- */

Test(cnn, resnet_stages_names_and_projections) {
    tg_module *net = small_resnet("resnet", 20, true, 1); /* n = 3 blocks per stage */
    expect_shape(tg_module_find_param(net, "resnet.stem.conv.weight"), TG_SHAPE(4, 1, 3, 3), "stem");
    expect_shape(tg_module_find_param(net, "resnet.stage1.block3.conv2.weight"), TG_SHAPE(4, 4, 3, 3), "s1b3");
    expect_shape(tg_module_find_param(net, "resnet.stage2.block1.conv1.weight"), TG_SHAPE(8, 4, 3, 3), "s2b1");
    expect_shape(tg_module_find_param(net, "resnet.stage3.block1.shortcut.conv.weight"), TG_SHAPE(16, 8, 1, 1), "s3 projection");
    expect_shape(tg_module_find_param(net, "resnet.stage2.block1.shortcut.bn.weight"), TG_SHAPE(8), "projection bn");
    expect_shape(tg_module_find_param(net, "resnet.fc.weight"), TG_SHAPE(10, 16), "fc");
    cr_expect_null(tg_module_find_param(net, "resnet.stage1.block1.shortcut.conv.weight"), "identity where nothing changes");
    cr_expect_null(tg_module_find_param(net, "resnet.stage2.block2.shortcut.conv.weight"));
    cr_expect_null(tg_module_find_param(net, "resnet.stage2.block1.conv1.bias"), "convs before batch norm have no bias");
    /* 19 conv + 1 fc weight layers, 2 projections; 3 + 2 per block + 2 per projection modules' tensors */
    int convs = 0;
    for (int i = 0; i < tg_module_param_count(net); i++) convs += tg_module_param(net, i)->ndim == 4;
    cr_expect_eq(convs, 19 + 2);
    cr_expect_eq(tg_module_param_count(net), 1 + 2 + 9 * 6 + 2 * 3 + 2);
    tg_tensor *state[256];
    cr_expect_eq(tg_module_state(net, state, 256), tg_module_param_count(net) + 2 * (1 + 18 + 2), "running stats of every bn");
    tg_module_free(net);
}

/* The downsampling block's projection must stride like its conv1: a shortcut of stride 1 would
 * hand an 8x8 map to a 4x4 sum (and a forward that fails). */
Test(cnn, projection_shortcut_uses_the_stride) {
    tg_module *net = small_resnet("resnet", 8, true, 1);
    tg_module *shortcut = find_child(net, "resnet.stage2.block1.shortcut.conv");
    cr_assert_not_null(shortcut);
    expect_shape(tg_module_forward(shortcut, tape, random_images(2, 4, 8, 8, 1)), TG_SHAPE(2, 8, 4, 4),
                 "projection of stage 2");
    expect_shape(tg_module_forward(find_child(net, "resnet.stage3.block1.shortcut.conv"), tape,
                                   random_images(2, 8, 4, 4, 2)), TG_SHAPE(2, 16, 2, 2), "projection of stage 3");
    expect_shape(tg_module_forward(net, tape, random_images(2, 1, 8, 8, 3)), TG_SHAPE(2, 10), "logits");
    tg_module_free(net);
}

typedef struct seen {
    int count;
    char names[16][TG_LABEL_MAX];
    int64_t shape[16][4];
} seen;

static tg_status note(tg_ctx *c, const tg_hook_event *event, void *user) {
    (void)c;
    seen *s = user;
    if (s->count < 16) {
        snprintf(s->names[s->count], TG_LABEL_MAX, "%s", event->name);
        for (int d = 0; d < 4; d++) s->shape[s->count][d] = d < event->node->ndim ? event->node->shape[d] : 0;
    }
    s->count++;
    return TG_OK;
}

Test(cnn, every_block_output_is_labelled_for_hooks) {
    tg_module *net = small_resnet("resnet", 8, true, 2);
    seen forward = {0}, backward = {0};
    cr_assert_gt(tg_hook_pattern(ctx, "resnet.stage*.out", TG_PASS_FORWARD, note, &forward), 0);
    cr_assert_gt(tg_hook_pattern(ctx, "resnet.stage*.out", TG_PASS_BACKWARD, note, &backward), 0);
    tg_tensor *y = tg_module_forward(net, tape, random_images(2, 1, 8, 8, 4));
    cr_assert_eq(tg_backward(tape, tg_sum(tape, y)), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(forward.count, 3, "one per block (n = 1, 3 stages)");
    cr_expect_eq(backward.count, 3);
    cr_expect_str_eq(forward.names[0], "resnet.stage1.block1.out");
    cr_expect_str_eq(forward.names[1], "resnet.stage2.block1.out");
    cr_expect_str_eq(forward.names[2], "resnet.stage3.block1.out");
    const int64_t want[3][4] = {{2, 4, 8, 8}, {2, 8, 4, 4}, {2, 16, 2, 2}};
    for (int i = 0; i < 3; i++)
        for (int d = 0; d < 4; d++) cr_expect_eq(forward.shape[i][d], want[i][d], "block %d dim %d", i, d);
    cr_expect_str_eq(backward.names[0], "resnet.stage3.block1.out", "backward walks from the top");
    tg_module_free(net);
}

/* Same seed, same layers, same initial values; only the residual net has the projections, and
 * only its output (and gradient) carries the identity path. */
Test(cnn, plain_twin_has_the_same_layers_and_no_identity_path) {
    tg_module *res = small_resnet("net", 8, true, 7), *plain = small_resnet("net", 8, false, 7);
    int extra = 0;
    for (int i = 0; i < tg_module_param_count(res); i++) {
        const tg_tensor *p = tg_module_param(res, i), *twin = tg_module_find_param(plain, p->label);
        if (strstr(p->label, ".shortcut.")) {
            cr_expect_null(twin, "%s in the plain net", p->label);
            extra++;
            continue;
        }
        cr_assert_not_null(twin, "%s missing from the plain net", p->label);
        cr_expect_eq(memcmp(p->data, twin->data, (size_t)p->size * sizeof(float)), 0, "%s differs", p->label);
    }
    cr_expect_eq(extra, 2 * 3, "two projections: conv weight, bn weight and bias");
    cr_expect_eq(tg_module_param_count(plain), tg_module_param_count(res) - extra);
    tg_tensor *x = random_images(4, 1, 8, 8, 5);
    tg_tensor *a = tg_module_forward(res, tape, x), *b = tg_module_forward(plain, tape, x);
    cr_assert(a && b, "%s", tg_errmsg(ctx));
    cr_expect_neq(memcmp(a->data, b->data, 40 * sizeof(float)), 0, "the skip changes the output");
    cr_assert_eq(tg_backward(tape, tg_add(tape, tg_sum(tape, a), tg_sum(tape, b))), TG_OK, "%s", tg_errmsg(ctx));
    const tg_tensor *ga = tg_module_find_param(res, "net.stem.conv.weight"),
                    *gb = tg_module_find_param(plain, "net.stem.conv.weight");
    cr_expect_neq(memcmp(ga->grad, gb->grad, (size_t)ga->size * sizeof(float)), 0, "the stem's gradient differs");
    tg_module_free(res);
    tg_module_free(plain);
}

Test(cnn, checkpoint_round_trip_keeps_running_statistics) {
    tg_module *trained = small_resnet("resnet", 8, true, 1), *fresh = small_resnet("resnet", 8, true, 2);
    for (int i = 0; i < 3; i++) { /* training-mode passes move the running statistics */
        tg_tape_reset(tape);
        cr_assert_not_null(tg_module_forward(trained, tape, random_images(8, 1, 8, 8, 10 + i)), "%s", tg_errmsg(ctx));
    }
    tg_tensor *before[256], *after[256];
    int n = tg_module_state(trained, before, 256);
    bool moved = false;
    for (int i = 0; i < n; i++)
        if (strstr(before[i]->label, "stage2.block1.bn1.running_mean"))
            for (int64_t k = 0; k < before[i]->size; k++) moved |= before[i]->data[k] != 0.0f;
    cr_expect(moved, "running mean still zero after training passes");
    char path[] = "/tmp/tapegrad-cnn-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(tg_module_save(trained, path), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_module_load(fresh, path), TG_OK, "%s", tg_errmsg(ctx));
    unlink(path);
    cr_assert_eq(tg_module_state(fresh, after, 256), n);
    for (int i = 0; i < n; i++) {
        cr_expect_str_eq(after[i]->label, before[i]->label);
        cr_expect_eq(memcmp(after[i]->data, before[i]->data, (size_t)before[i]->size * sizeof(float)), 0,
                     "%s differs after loading", before[i]->label);
    }
    tg_module_set_training(trained, false);
    tg_module_set_training(fresh, false);
    tg_tape_reset(tape);
    tg_tensor *x = random_images(2, 1, 8, 8, 20);
    tg_tensor *want = tg_module_forward(trained, tape, x), *got = tg_module_forward(fresh, tape, x);
    cr_assert(want && got, "%s", tg_errmsg(ctx));
    expect_close(got->data, want->data, want->size, 0, "eval output after loading");
    tg_module_free(trained);
    tg_module_free(fresh);
}

/* ---- data and training --------------------------------------------------------------------- */

Test(cnn, digits_become_images_without_a_copy) {
    tg_dataset *digits = tg_dataset_digits(ctx);
    cr_assert_not_null(digits);
    float *pixels = digits->x;
    cr_assert_eq(tg_dataset_reshape(digits, 3, (const int64_t[]){1, 8, 8}), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(digits->x, pixels);
    cr_expect(digits->x_ndim == 3 && digits->x_shape[0] == 1 && digits->x_shape[1] == 8 && digits->x_shape[2] == 8);
    cr_expect_eq(tg_dataset_x_size(digits), 64);
    cr_expect_eq(tg_dataset_reshape(digits, 3, (const int64_t[]){1, 8, 7}), TG_ERR_SHAPE);
    expect_errmsg_has(ctx, "dataset_reshape", "64 floats", "1x8x7");
    tg_dataset_free(digits);
}

static double batch_loss(tg_module *net, tg_tensor *x, tg_tensor *y) {
    return tg_cross_entropy(tape, tg_module_forward(net, tape, x), y)->data[0];
}

Test(cnn, lenet_learns_the_digits) {
    tg_dataset *digits = tg_dataset_digits(ctx);
    cr_assert_eq(tg_dataset_reshape(digits, 3, (const int64_t[]){1, 8, 8}), TG_OK);
    tg_lenet_config c = {.channels = 1, .height = 8, .width = 8, .classes = 10, .seed = 3};
    tg_module *net = tg_lenet_new(ctx, "lenet", &c);
    tg_tensor *params[16];
    int n = tg_module_params(net, params, 16);
    tg_optimizer *opt = tg_optimizer_new(ctx, params, n, &(tg_optimizer_config){.kind = TG_OPT_ADAM, .lr = 3e-3f});
    tg_batcher *batches = tg_batcher_new(digits, 32, true, true, 1);
    cr_assert(net && opt && batches, "%s", tg_errmsg(ctx));
    double first = 0, last = 0;
    for (int step = 0; step < 80; step++) {
        tg_tensor *x, *y;
        tg_tape_reset(tape);
        if (!tg_batcher_next(batches, tape, &x, &y)) cr_assert(tg_batcher_next(batches, tape, &x, &y));
        tg_tensor *loss = tg_cross_entropy(tape, tg_module_forward(net, tape, x), y);
        cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
        if (step < 10) first += loss->data[0] / 10;
        if (step >= 70) last += loss->data[0] / 10;
        tg_optimizer_step(opt);
        tg_optimizer_zero_grad(opt);
    }
    cr_expect_gt(first, 1.5, "the first steps start near ln 10 (%.3f)", first);
    cr_expect_lt(last, 0.5, "training loss %.3f -> %.3f", first, last);
    /* and the whole set, in eval mode, agrees */
    tg_tape_reset(tape);
    tg_no_grad_begin(tape);
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(digits->count, 1, 8, 8), digits->x);
    tg_tensor *y = tg_tape_from_data(tape, TG_SHAPE(digits->count), digits->y);
    double whole = batch_loss(net, x, y);
    tg_no_grad_end(tape);
    cr_expect_lt(whole, 0.5, "loss over all digits %.3f", whole);
    tg_batcher_free(batches);
    tg_optimizer_free(opt);
    tg_module_free(net);
    tg_dataset_free(digits);
}

/* ---- the command line ---------------------------------------------------------------------- */

static void quiet_setup(void) {
    cr_redirect_stdout();
    cr_redirect_stderr();
    fixture_setup();
}

static int train(int argc, const char **argv) {
    return run_train(argc, (char **)argv);
}

Test(cnn, train_parses_the_cnn_models, .init = quiet_setup) {
    const char *lenet[] = {"--model", "lenet", "--steps", "20", "--data", "digits"};
    cr_expect_eq(train(6, lenet), 0);
    const char *resnet[] = {"--model", "resnet", "--depth", "8", "--width", "4", "--steps", "5"};
    cr_expect_eq(train(8, resnet), 0);
    const char *plain[] = {"--model", "plaincnn", "--depth", "8", "--width", "4", "--steps", "5"};
    cr_expect_eq(train(8, plain), 0);
    const char *bad[][4] = {{"--model", "resnet", "--depth", "21"}, {"--model", "lenet", "--norm", "batch"},
                            {"--model", "resnet", "--activation", "tanh"}, {"--model", "lenet", "--data", "spirals"},
                            {"--model", "mlp", "--depth", "32"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(train(4, bad[i]), EXIT_USAGE, "case %zu (%s %s)", i, bad[i][2], bad[i][3]);
}

/* An IDX image file of `count` rows x cols ubyte images (pixel values by position) and its labels. */
static void write_idx_pair(const char *images, const char *labels, int count, int rows, int cols) {
    FILE *f = fopen(images, "wb");
    cr_assert_not_null(f);
    const unsigned char head[16] = {0, 0, 8, 3, 0, 0, 0, (unsigned char)count, 0, 0, 0, (unsigned char)rows,
                                    0, 0, 0, (unsigned char)cols};
    fwrite(head, 1, 16, f);
    for (int i = 0; i < count * rows * cols; i++) fputc((i * 37 + i / (rows * cols)) % 256, f);
    fclose(f);
    cr_assert_not_null(f = fopen(labels, "wb"));
    const unsigned char lhead[8] = {0, 0, 8, 1, 0, 0, 0, (unsigned char)count};
    fwrite(lhead, 1, 8, f);
    for (int i = 0; i < count; i++) fputc(i % 3, f);
    fclose(f);
}

Test(cnn, train_reads_idx_files_as_square_images, .init = quiet_setup) {
    char dir[] = "/tmp/tapegrad-cnn-idx-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char images[96], labels[96], data[200];
    snprintf(images, sizeof images, "%s/images.idx", dir);
    snprintf(labels, sizeof labels, "%s/labels.idx", dir);
    snprintf(data, sizeof data, "idx:%s,%s", images, labels);
    write_idx_pair(images, labels, 40, 12, 12);
    const char *lenet[] = {"--model", "lenet", "--data", data, "--steps", "3", "--batch", "8"};
    cr_expect_eq(train(8, lenet), 0, "12x12 images");
    const char *resnet[] = {"--model", "resnet", "--depth", "8", "--width", "4", "--data", data, "--steps", "2", "--batch", "8"};
    cr_expect_eq(train(12, resnet), 0);
    write_idx_pair(images, labels, 40, 3, 5);
    cr_expect_eq(train(8, lenet), 1, "3x5 images are not square: a run error, not a crash");
    unlink(images);
    unlink(labels);
    rmdir(dir);
}

/* A run that fails after its model and layers exist (here: a checkpoint that is not there) has
 * no series: the report must say so, not read them. */
Test(cnn, a_failed_run_still_leaves_a_report, .init = quiet_setup) {
    static experiment e;
    cr_assert(experiment_setup(&e, "cnn", 1, true));
    e.n_runs = 3; /* LeNet, the MLP, the plain 8-layer net */
    e.runs[2].load_path = "/nonexistent/weights.safetensors";
    for (int i = 0; i < e.n_runs; i++) run_training(&e.runs[i], &e.results[i], NULL, NULL);
    cr_expect_neq(e.results[2].error[0], '\0');
    cr_expect_gt(e.results[2].n_layers, 0, "the layers were tracked before the load failed");
    experiment_conclude(&e);
    char dir[] = "/tmp/tapegrad-cnn-failed-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    cr_expect_eq(write_report("study", dir, &e, 1, 1, true, 1.0), 0);
    cr_expect(strstr(e.finding, "the run failed") != NULL, "%s", e.finding);
    for (int i = 0; i < e.n_runs; i++) run_result_free(&e.results[i]);
}

Test(cnn, quick_study_cnn_writes_its_csv_and_summary, .init = quiet_setup) {
    char dir[] = "/tmp/tapegrad-cnn-study-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    const char *argv[] = {"cnn", "--quick", "--out", dir};
    cr_assert_eq(run_study(4, (char **)argv), 0);
    char path[128];
    snprintf(path, sizeof path, "%s/cnn.csv", dir);
    struct stat st;
    cr_expect(stat(path, &st) == 0 && st.st_size > 1000, "cnn.csv missing or short");
    snprintf(path, sizeof path, "%s/summary.json", dir);
    json_error_t error;
    json_t *root = json_load_file(path, 0, &error);
    cr_assert_not_null(root, "%s", error.text);
    json_t *e = json_array_get(json_object_get(root, "experiments"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(e, "name")), "cnn");
    int plain = 0, residual = 0;
    size_t k;
    json_t *run;
    json_array_foreach(json_object_get(e, "runs"), k, run) {
        const char *config = json_string_value(json_object_get(run, "config")), *model = json_string_value(json_object_get(run, "model"));
        if (strcmp(model, "resnet") != 0 && strcmp(model, "plaincnn") != 0) continue;
        bool is_plain = strstr(config, "plain") != NULL;
        plain += is_plain;
        residual += strstr(config, "residual") != NULL;
        char depth[16];
        snprintf(depth, sizeof depth, "%d", (int)json_integer_value(json_object_get(run, "depth")));
        cr_expect(strstr(config, depth) != NULL, "'%s' does not say its depth %s", config, depth);
        cr_expect_eq(json_array_size(json_object_get(run, "grad_norm_by_layer")),
                     (size_t)json_integer_value(json_object_get(run, "depth")), "%s: one norm per weight layer", config);
        cr_expect_eq(json_array_size(json_object_get(run, "held_out_loss")), 3, "%s: held-out loss at 0, 5, 10 steps", config);
        cr_expect(json_is_number(json_object_get(run, "test_accuracy")), "%s: accuracy", config);
    }
    cr_expect_geq(plain, 2);
    cr_expect_geq(residual, 2);
    json_decref(root);
}
