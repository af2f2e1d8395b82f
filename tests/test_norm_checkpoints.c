/* tests/test_norm_checkpoints.c — layer-norm and batch-norm checkpoints in PyTorch's names:
 * PyTorch's state_dict() (tests/torch_norm_fixture.h, written once by PyTorch) loads into our
 * modules, and what we save has exactly the keys PyTorch's strict load_state_dict accepts:
 * LayerNorm weight and bias; BatchNorm weight, bias, running_mean and running_var (PyTorch
 * fills in a missing num_batches_tracked when loading a plain dict, checked with PyTorch 1.13
 * when the fixture was made). */
#include "fixture.h"

#include "torch_norm_fixture.h"

TestSuite(norm_checkpoints, .init = fixture_setup, .fini = fixture_teardown);

static char dir[64], path[128];

static void write_fixture(void) {
    temp_dir_make(dir, "tg-norm");
    snprintf(path, sizeof path, "%s/torch.safetensors", dir);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(torch_norm_fixture, 1, sizeof torch_norm_fixture, f), sizeof torch_norm_fixture);
    cr_assert_eq(fclose(f), 0);
}

/* The JSON header of a safetensors file (8-byte little-endian length, then the text). */
static char *read_header(const char *file) {
    FILE *f = fopen(file, "rb");
    cr_assert_not_null(f, "%s", file);
    unsigned char len_bytes[8];
    cr_assert_eq(fread(len_bytes, 1, 8, f), 8);
    uint64_t len = 0;
    for (int i = 7; i >= 0; i--) len = len << 8 | len_bytes[i];
    cr_assert(len > 0 && len < 1 << 20);
    char *text = calloc(1, len + 1);
    cr_assert_eq(fread(text, 1, len, f), len);
    fclose(f);
    return text;
}

static int count_entries(const char *header) {
    int n = 0;
    for (const char *p = header; (p = strstr(p, "\"dtype\"")); p++) n++;
    return n;
}

/* The module's state is exactly `names` (in that order), and its values are `values`. */
static void expect_state(const tg_module *m, const char *const *names, const float *const *values,
                         int n) {
    tg_tensor *state[8];
    cr_assert_eq(tg_module_state(m, state, 8), n, "state of '%s'", tg_module_name(m));
    for (int i = 0; i < n; i++) {
        cr_expect_str_eq(state[i]->label, names[i]);
        expect_close(state[i]->data, values[i], 4, 1e-7f, names[i]);
    }
}

Test(norm_checkpoints, layer_norm_has_weight_and_bias_only_and_loads_pytorch_state) {
    write_fixture();
    tg_module *ln = tg_norm_new(ctx, "ln", TG_NORM_LAYER, 4);
    cr_assert_not_null(ln, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_module_state(ln, NULL, 0), 2, "no running statistics on a layer norm");
    /* the file also holds the batch norm's entries: nobody asked for them, they are skipped */
    cr_assert_eq(tg_module_load(ln, path), TG_OK, "%s", tg_errmsg(ctx));
    expect_state(ln, (const char *[]){"ln.weight", "ln.bias"},
                 (const float *[]){torch_ln_weight, torch_ln_bias}, 2);

    char ours[160];
    snprintf(ours, sizeof ours, "%s/ours.safetensors", dir);
    cr_assert_eq(tg_module_save(ln, ours), TG_OK, "%s", tg_errmsg(ctx));
    char *header = read_header(ours);
    cr_expect_eq(count_entries(header), 2, "LayerNorm's keys only: %s", header);
    cr_expect(strstr(header, "\"ln.weight\"") && strstr(header, "\"ln.bias\""), "%s", header);
    free(header);
    tg_module *again = tg_norm_new(ctx, "ln", TG_NORM_LAYER, 4);
    cr_assert_eq(tg_module_load(again, ours), TG_OK, "%s", tg_errmsg(ctx));
    expect_state(again, (const char *[]){"ln.weight", "ln.bias"},
                 (const float *[]){torch_ln_weight, torch_ln_bias}, 2);
    tg_module_free(again);
    tg_module_free(ln);
    temp_dir_remove(dir);
}

Test(norm_checkpoints, batch_norm_round_trips_pytorch_state_with_num_batches_tracked) {
    write_fixture();
    tg_module *bn = tg_norm_new(ctx, "bn", TG_NORM_BATCH, 4);
    cr_assert_not_null(bn, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_module_load(bn, path), TG_OK, "%s", tg_errmsg(ctx));
    const char *names[] = {"bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"};
    const float *values[] = {torch_bn_weight, torch_bn_bias, torch_bn_running_mean, torch_bn_running_var};
    expect_state(bn, names, values, 4);

    /* evaluation uses the loaded running statistics: (x - mean) / sqrt(var + eps) * w + b */
    tg_module_set_training(bn, false);
    tg_tensor *x = tg_tape_from_data(tape, TG_SHAPE(1, 4), (float[]){1, 2, 3, 4});
    tg_tensor *y = tg_module_forward(bn, tape, x);
    cr_assert_not_null(y, "%s", tg_errmsg(ctx));
    for (int i = 0; i < 4; i++) {
        double want = ((double)(i + 1) - torch_bn_running_mean[i]) / sqrt(torch_bn_running_var[i] + 1e-5) *
                          torch_bn_weight[i] + torch_bn_bias[i];
        cr_expect_float_eq(y->data[i], want, 1e-5, "y[%d] = %g, want %g", i, (double)y->data[i], want);
    }

    char ours[160];
    snprintf(ours, sizeof ours, "%s/ours.safetensors", dir);
    cr_assert_eq(tg_module_save(bn, ours), TG_OK, "%s", tg_errmsg(ctx));
    char *header = read_header(ours);
    cr_expect_eq(count_entries(header), 4, "%s", header);
    for (int i = 0; i < 4; i++) {
        char key[64];
        snprintf(key, sizeof key, "\"%s\"", names[i]);
        cr_expect(strstr(header, key), "%s lacks %s", header, key);
    }
    free(header);
    tg_module *again = tg_norm_new(ctx, "bn", TG_NORM_BATCH, 4);
    cr_assert_eq(tg_module_load(again, ours), TG_OK, "%s", tg_errmsg(ctx));
    expect_state(again, names, values, 4);
    tg_module_free(again);
    tg_module_free(bn);
    temp_dir_remove(dir);
}
