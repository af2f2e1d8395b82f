/* tests/test_safetensors.c — save and load in the safetensors format: exact round trips, the
 * file layout of the reference format, F64/F16/BF16 conversion, a corpus of corrupted files
 * (each rejected with a message that names the file and the tensor, nothing changed), and
 * atomic saves that leave the old file and no temporary file behind when they fail. */
#include "fixture.h"

#include <dirent.h>
#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];   /* a fresh directory per test */
static char ck[128];   /* <dir>/ck.safetensors */

static void setup(void) {
    fixture_setup();
    strcpy(dir, "/tmp/tapegrad-st-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(ck, sizeof ck, "%s/ck.safetensors", dir);
}

static void teardown(void) {
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (e->d_name[0] != '.') remove(path);
    }
    if (d) closedir(d);
    chmod(dir, 0700);
    rmdir(dir);
    fixture_teardown();
}

TestSuite(safetensors, .init = setup, .fini = teardown);

/* ---- helpers ------------------------------------------------------------------------------- */

static tg_tensor *named(const char *label, int ndim, const int64_t *shape, uint64_t seed) {
    tg_tensor *t = tg_zeros(ctx, ndim, shape);
    cr_assert_not_null(t, "%s", tg_errmsg(ctx));
    tg_fill_normal(t, 0, 1, seed);
    return tg_set_label(t, "%s", label);
}

static void put_le(unsigned char *out, uint64_t value, int bytes) {
    for (int i = 0; i < bytes; i++) out[i] = (unsigned char)(value >> (8 * i));
}

static uint64_t get_le(const unsigned char *in, int bytes) {
    uint64_t value = 0;
    for (int i = bytes - 1; i >= 0; i--) value = value << 8 | in[i];
    return value;
}

static uint32_t bits_of(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

static void write_bytes(const char *path, const void *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(bytes, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

/* A file with a given header length field, header text and data. */
static void write_file_as(const char *path, uint64_t length, const char *header,
                          const void *data, size_t data_bytes) {
    size_t header_bytes = strlen(header), n = 8 + header_bytes + data_bytes;
    unsigned char *bytes = malloc(n);
    cr_assert_not_null(bytes);
    put_le(bytes, length, 8);
    memcpy(bytes + 8, header, header_bytes);
    if (data_bytes) memcpy(bytes + 8 + header_bytes, data, data_bytes);
    write_bytes(path, bytes, n);
    free(bytes);
}

static void write_file(const char *path, const char *header, const void *data, size_t n) {
    write_file_as(path, strlen(header), header, data, n);
}

/* The whole file (malloc'd), its size in *n. */
static unsigned char *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    unsigned char *bytes = malloc(*n + 1);
    cr_assert_not_null(bytes);
    cr_assert_eq(fread(bytes, 1, *n, f), *n);
    fclose(f);
    return bytes;
}

static int files_in_dir(void) {
    int count = 0;
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    for (struct dirent *e; (e = readdir(d));) count += e->d_name[0] != '.';
    closedir(d);
    return count;
}

static void expect_bitwise_equal(const tg_tensor *got, const tg_tensor *want) {
    cr_assert_eq(got->size, want->size);
    for (int64_t i = 0; i < got->size; i++)
        cr_expect_eq(bits_of(got->data[i]), bits_of(want->data[i]), "%s[%lld]: %08x != %08x",
                     got->label, (long long)i, bits_of(got->data[i]), bits_of(want->data[i]));
}

/* ---- round trip and layout ----------------------------------------------------------------- */

Test(safetensors, round_trip_is_bitwise_exact) {
    tg_tensor *saved[4] = {
        tg_set_label(tg_scalar(ctx, -0.0f), "scale"),
        named("fc1.weight", TG_SHAPE(3, 4), 1),
        named("fc1.bias", TG_SHAPE(5), 2),
        named("conv.weight", TG_SHAPE(2, 3, 2, 2), 3),
    };
    /* values a lossy path would change: NaN payload, infinities, subnormal, extremes */
    const uint32_t special[] = {0x7fc01234u, 0x7f800000u, 0xff800000u, 0x00000001u, 0x7f7fffffu};
    for (int i = 0; i < 5; i++) memcpy(&saved[2]->data[i], &special[i], 4);
    cr_assert_eq(tg_save_safetensors(ctx, ck, saved, 4), TG_OK, "%s", tg_errmsg(ctx));

    /* a different order, and a subset: the file is read by name */
    tg_tensor *loaded[3] = {
        tg_set_label(tg_zeros(ctx, TG_SHAPE(2, 3, 2, 2)), "conv.weight"),
        tg_set_label(tg_scalar(ctx, 1.0f), "scale"),
        tg_set_label(tg_zeros(ctx, TG_SHAPE(5)), "fc1.bias"),
    };
    cr_assert_eq(tg_load_safetensors(ctx, ck, loaded, 3), TG_OK, "%s", tg_errmsg(ctx));
    expect_bitwise_equal(loaded[0], saved[3]);
    expect_bitwise_equal(loaded[1], saved[0]);
    expect_bitwise_equal(loaded[2], saved[2]);
    cr_expect_eq(files_in_dir(), 1, "a temporary file was left behind");
}

Test(safetensors, file_has_the_reference_layout) {
    tg_tensor *t[2] = {named("fc1.bias", TG_SHAPE(3), 4), named("fc1.weight", TG_SHAPE(3, 2), 5)};
    cr_assert_eq(tg_save_safetensors(ctx, ck, t, 2), TG_OK, "%s", tg_errmsg(ctx));
    size_t n;
    unsigned char *bytes = read_bytes(ck, &n);
    uint64_t length = get_le(bytes, 8);
    cr_assert_eq(n, 8 + length + 9 * 4, "file of %zu bytes, header length %llu", n,
                 (unsigned long long)length);
    cr_expect_eq((8 + length) % 8, 0, "data starts at %llu", (unsigned long long)(8 + length));
    bytes[8 + length] = '\0'; /* the header as text (overwrites the first data byte) */
    const char *header = (const char *)bytes + 8;
    cr_expect(strstr(header, "\"__metadata__\":{\"format\":\"pt\"}"), "%s", header);
    cr_expect(strstr(header, "\"fc1.bias\":{\"dtype\":\"F32\",\"shape\":[3],"
                             "\"data_offsets\":[0,12]}"), "%s", header);
    cr_expect(strstr(header, "\"fc1.weight\":{\"dtype\":\"F32\",\"shape\":[3,2],"
                             "\"data_offsets\":[12,36]}"), "%s", header);
    size_t text = strlen(header);
    while (text > 0 && header[text - 1] == ' ') text--;
    cr_expect_eq(header[text - 1], '}', "the padding is spaces after the JSON");
    cr_expect_lt(length - text, 8);
    json_error_t error;
    json_t *root = json_loadb(header, length, 0, &error);
    cr_expect_not_null(root, "%s", error.text);
    json_decref(root);
    free(bytes);
    bytes = read_bytes(ck, &n); /* the data: little-endian f32, in the order given */
    for (int i = 0; i < 9; i++) {
        const tg_tensor *owner = i < 3 ? t[0] : t[1];
        uint32_t want = bits_of(owner->data[i < 3 ? i : i - 3]);
        cr_expect_eq(get_le(bytes + 8 + length + 4 * i, 4), want, "float %d", i);
    }
    free(bytes);
}

Test(safetensors, new_file_mode_follows_umask_and_old_mode_is_kept) {
    mode_t old_mask = umask(022);
    tg_tensor *t = named("w", TG_SHAPE(2), 1);
    struct stat info;
    cr_assert_eq(tg_save_safetensors(ctx, ck, &t, 1), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(stat(ck, &info), 0);
    cr_expect_eq(info.st_mode & 0777, 0644, "mode %o", (unsigned)(info.st_mode & 0777));
    cr_assert_eq(chmod(ck, 0640), 0);
    cr_assert_eq(tg_save_safetensors(ctx, ck, &t, 1), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(stat(ck, &info), 0);
    cr_expect_eq(info.st_mode & 0777, 0640, "mode %o", (unsigned)(info.st_mode & 0777));
    umask(old_mask);
}

Test(safetensors, empty_tensor_list_round_trips) {
    cr_assert_eq(tg_save_safetensors(ctx, ck, NULL, 0), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_load_safetensors(ctx, ck, NULL, 0), TG_OK, "%s", tg_errmsg(ctx));
}

/* ---- other dtypes -------------------------------------------------------------------------- */

Test(safetensors, loads_f64_f16_bf16_exactly) {
    const char *header =
        "{\"d\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[0,24]},"
        "\"h\":{\"dtype\":\"F16\",\"shape\":[2,5],\"data_offsets\":[24,44]},"
        "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[44,52]},"
        "\"__metadata__\":{\"format\":\"pt\"}}";
    unsigned char data[52];
    const double doubles[3] = {0.1, -1e300, 1.0 + 0x1p-30};
    for (int i = 0; i < 3; i++) {
        uint64_t bits;
        memcpy(&bits, &doubles[i], 8);
        put_le(data + 8 * i, bits, 8);
    }
    /* 1, -2, 65504, smallest and largest subnormal, smallest normal, +inf, -inf, -0, NaN */
    const uint16_t halves[10] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff,
                                 0x0400, 0x7c00, 0xfc00, 0x8000, 0x7e00};
    for (int i = 0; i < 10; i++) put_le(data + 24 + 2 * i, halves[i], 2);
    const uint16_t brains[4] = {0x3f80, 0xc040, 0x0001, 0xff80}; /* 1, -3, 2^-133, -inf */
    for (int i = 0; i < 4; i++) put_le(data + 44 + 2 * i, brains[i], 2);
    write_file(ck, header, data, sizeof data);

    tg_tensor *t[3] = {
        tg_set_label(tg_zeros(ctx, TG_SHAPE(3)), "d"),
        tg_set_label(tg_zeros(ctx, TG_SHAPE(2, 5)), "h"),
        tg_set_label(tg_zeros(ctx, TG_SHAPE(4)), "b"),
    };
    cr_assert_eq(tg_load_safetensors(ctx, ck, t, 3), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(t[0]->data[0], 0.1f);
    cr_expect(isinf(t[0]->data[1]) && t[0]->data[1] < 0);
    cr_expect_eq(t[0]->data[2], 1.0f);
    const float want_h[9] = {1.0f, -2.0f, 65504.0f, 0x1p-24f, 1023 * 0x1p-24f, 0x1p-14f,
                             INFINITY, -INFINITY, -0.0f};
    for (int i = 0; i < 9; i++)
        cr_expect_eq(bits_of(t[1]->data[i]), bits_of(want_h[i]), "half %04x -> %a, want %a",
                     halves[i], (double)t[1]->data[i], (double)want_h[i]);
    cr_expect(isnan(t[1]->data[9]));
    const float want_b[4] = {1.0f, -3.0f, 0x1p-133f, -INFINITY};
    for (int i = 0; i < 4; i++)
        cr_expect_eq(bits_of(t[2]->data[i]), bits_of(want_b[i]), "bf16 %04x -> %a", brains[i],
                     (double)t[2]->data[i]);
}

/* ---- corrupted files ----------------------------------------------------------------------- */

/* The targets of every bad load: fc1.weight [3,4] and fc1.bias [3], all 7 until a load works. */
static tg_tensor *targets[2];

static void make_targets(void) {
    targets[0] = tg_set_label(tg_full(ctx, TG_SHAPE(3, 4), 7.0f), "fc1.weight");
    targets[1] = tg_set_label(tg_full(ctx, TG_SHAPE(3), 7.0f), "fc1.bias");
    cr_assert(targets[0] && targets[1]);
}

static void expect_targets_unchanged(void) {
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; i < targets[k]->size; i++)
            cr_expect_eq(targets[k]->data[i], 7.0f, "%s[%lld] changed", targets[k]->label,
                         (long long)i);
}

/* Loading ck into the targets fails with status_, a message naming the file and every
 * fragment, and the targets as they were. */
#define expect_rejected(status_, ...)                                                          \
    do {                                                                                       \
        cr_expect_eq(tg_load_safetensors(ctx, ck, targets, 2), status_, "status: %s",          \
                     tg_errmsg(ctx));                                                          \
        expect_errmsg_has(ctx, "load '", ck, __VA_ARGS__);                                     \
        expect_targets_unchanged();                                                            \
        tg_clear_error(ctx);                                                                   \
    } while (0)

static const char valid_header[] =
    "{\"fc1.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48]},"
    "\"fc1.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]}}";

/* A file whose header has one entry as given and fc1.weight as in valid_header. */
static void write_with_bias(const char *bias_entry) {
    char header[512];
    snprintf(header, sizeof header, "{\"fc1.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],"
             "\"data_offsets\":[0,48]},\"fc1.bias\":%s}", bias_entry);
    static const unsigned char data[60];
    write_file(ck, header, data, sizeof data);
}

Test(safetensors, the_corpus_base_file_loads) {
    make_targets();
    static const unsigned char data[60];
    write_file(ck, valid_header, data, sizeof data);
    cr_assert_eq(tg_load_safetensors(ctx, ck, targets, 2), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(targets[0]->data[0], 0.0f);
    write_with_bias("{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]}");
    cr_expect_eq(tg_load_safetensors(ctx, ck, targets, 2), TG_OK, "%s", tg_errmsg(ctx));
}

Test(safetensors, truncated_files) {
    make_targets();
    tg_tensor *source[2] = {named("fc1.weight", TG_SHAPE(3, 4), 1),
                            named("fc1.bias", TG_SHAPE(3), 2)};
    char other[160];
    snprintf(other, sizeof other, "%s/source.safetensors", dir);
    cr_assert_eq(tg_save_safetensors(ctx, other, source, 2), TG_OK, "%s", tg_errmsg(ctx));
    size_t n;
    unsigned char *bytes = read_bytes(other, &n);
    size_t data_at = 8 + (size_t)get_le(bytes, 8);
    const size_t inside_length[] = {0, 3, 7};
    for (int i = 0; i < 3; i++) {
        write_bytes(ck, bytes, inside_length[i]);
        expect_rejected(TG_ERR_IO, "too short for the 8-byte header length");
    }
    const size_t inside_header[] = {9, data_at / 2, data_at - 1};
    for (int i = 0; i < 3; i++) {
        write_bytes(ck, bytes, inside_header[i]);
        expect_rejected(TG_ERR_IO, "header length", "is larger than the", "truncated?");
    }
    write_bytes(ck, bytes, data_at); /* no data at all */
    expect_rejected(TG_ERR_IO, "tensor 'fc1.weight'", "data_offsets [0,48] are not a range "
                    "inside the 0 data bytes");
    write_bytes(ck, bytes, data_at + 50); /* the weight is whole, the bias is not */
    expect_rejected(TG_ERR_IO, "tensor 'fc1.bias'", "[48,60] are not a range inside the 50");
    write_bytes(ck, bytes, n - 1);
    expect_rejected(TG_ERR_IO, "tensor 'fc1.bias'", "inside the 59 data bytes");
    free(bytes);
}

Test(safetensors, bad_header_length) {
    make_targets();
    static const unsigned char data[60];
    write_file_as(ck, 1000, valid_header, data, sizeof data);
    char fragment[96];
    snprintf(fragment, sizeof fragment, "header length 1000 is larger than the %zu bytes that "
             "follow it", strlen(valid_header) + sizeof data);
    expect_rejected(TG_ERR_IO, fragment);
    write_file_as(ck, 1ull << 62, valid_header, data, sizeof data);
    expect_rejected(TG_ERR_IO, "header length 4611686018427387904 is over the limit");
    write_file_as(ck, 0, valid_header, data, sizeof data);
    expect_rejected(TG_ERR_IO, "header length is 0");
}

Test(safetensors, header_is_not_a_json_object) {
    make_targets();
    write_file(ck, "{\"fc1.weight\": {\"dtype\": ", NULL, 0);
    expect_rejected(TG_ERR_IO, "header is not valid JSON");
    write_file(ck, "[1, 2, 3]", NULL, 0);
    expect_rejected(TG_ERR_IO, "header is not a JSON object");
    write_file(ck, "{\"a\":{}} trailing", NULL, 0);
    expect_rejected(TG_ERR_IO, "header is not valid JSON");
    write_with_bias("[1]");
    expect_rejected(TG_ERR_IO, "tensor 'fc1.bias': not a JSON object");
    write_file(ck, "{\"__metadata__\":{\"format\":1}}", NULL, 0);
    expect_rejected(TG_ERR_IO, "__metadata__ 'format' is not a string");
    write_file(ck, "{\"x\":{},\"x\":{}}", NULL, 0);
    expect_rejected(TG_ERR_IO, "header is not valid JSON", "duplicate");
}

Test(safetensors, entry_fields_missing) {
    make_targets();
    write_with_bias("{\"shape\":[3],\"data_offsets\":[48,60]}");
    expect_rejected(TG_ERR_IO, "tensor 'fc1.bias': no dtype");
    write_with_bias("{\"dtype\":\"F32\",\"data_offsets\":[48,60]}");
    expect_rejected(TG_ERR_IO, "tensor 'fc1.bias': no shape");
    write_with_bias("{\"dtype\":\"F32\",\"shape\":[3]}");
    expect_rejected(TG_ERR_IO, "tensor 'fc1.bias': no data_offsets");
}

Test(safetensors, unsupported_dtypes) {
    make_targets();
    write_with_bias("{\"dtype\":\"I32\",\"shape\":[3],\"data_offsets\":[48,60]}");
    expect_rejected(TG_ERR_IO, "tensor 'fc1.bias': dtype 'I32' cannot be loaded into an f32 tensor");
    write_with_bias("{\"dtype\":\"U8\",\"shape\":[12],\"data_offsets\":[48,60]}");
    expect_rejected(TG_ERR_IO, "dtype 'U8' cannot be loaded into an f32 tensor (F32, F64, F16, BF16 can)");
    write_with_bias("{\"dtype\":\"Q4\",\"shape\":[3],\"data_offsets\":[48,60]}");
    expect_rejected(TG_ERR_IO, "tensor 'fc1.bias': dtype 'Q4' is unknown");
    write_with_bias("{\"dtype\":32,\"shape\":[3],\"data_offsets\":[48,60]}");
    expect_rejected(TG_ERR_IO, "tensor 'fc1.bias': dtype is not a string");
}

Test(safetensors, bad_shapes) {
    make_targets();
    write_with_bias("{\"dtype\":\"F32\",\"shape\":[-3],\"data_offsets\":[48,60]}");
    expect_rejected(TG_ERR_IO, "tensor 'fc1.bias': shape [-3]: dim 0 is not a non-negative");
    write_with_bias("{\"dtype\":\"F32\",\"shape\":[1,3.5],\"data_offsets\":[48,60]}");
    expect_rejected(TG_ERR_IO, "shape [1,3.5]: dim 1 is not a non-negative integer");
    write_with_bias("{\"dtype\":\"F32\",\"shape\":\"3\",\"data_offsets\":[48,60]}");
    expect_rejected(TG_ERR_IO, "tensor 'fc1.bias': shape \"3\" is not a list");
    write_with_bias("{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
                    "\"data_offsets\":[48,60]}");
    expect_rejected(TG_ERR_IO, "tensor 'fc1.bias'", "has too many elements");
    write_with_bias("{\"dtype\":\"F32\",\"shape\":[4294967296],\"data_offsets\":[48,60]}");
    expect_rejected(TG_ERR_IO, "shape [4294967296] of F32 needs more than the 60 data bytes");
}

Test(safetensors, bad_offsets) {
    make_targets();
    write_with_bias("{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,64]}");
    expect_rejected(TG_ERR_IO, "tensor 'fc1.bias': data_offsets [48,64] are not a range inside "
                    "the 60 data bytes");
    write_with_bias("{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[60,48]}");
    expect_rejected(TG_ERR_IO, "data_offsets [60,48] are not a range");
    write_with_bias("{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[-12,0]}");
    expect_rejected(TG_ERR_IO, "data_offsets [-12,0] is not a pair of non-negative integers");
    write_with_bias("{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48]}");
    expect_rejected(TG_ERR_IO, "data_offsets [48] is not a pair");
    write_with_bias("{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,56]}");
    expect_rejected(TG_ERR_IO, "tensor 'fc1.bias': data_offsets [48,56] hold 8 bytes, shape [3] "
                    "of F32 needs 12");
    write_with_bias("{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[48,60]}");
    expect_rejected(TG_ERR_IO, "hold 12 bytes, shape [3] of F16 needs 6");
    write_with_bias("{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[40,52]}");
    expect_rejected(TG_ERR_IO, "tensor 'fc1.bias': data_offsets [40,52] overlap those of "
                    "tensor 'fc1.weight' [0,48]");
}

Test(safetensors, missing_tensor_and_wrong_shape) {
    make_targets();
    static const unsigned char data[60];
    write_file(ck, "{\"fc1.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48]},"
               "\"fc2.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]}}",
               data, sizeof data);
    expect_rejected(TG_ERR_NOT_FOUND, "tensor 'fc1.bias': not in the file");
    write_file(ck, "{\"fc1.weight\":{\"dtype\":\"F32\",\"shape\":[4,3],\"data_offsets\":[0,48]},"
               "\"fc1.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]}}",
               data, sizeof data);
    expect_rejected(TG_ERR_SHAPE, "tensor 'fc1.weight': shape [4,3] in the file, [3,4] in the "
                    "model");
    write_with_bias("{\"dtype\":\"F32\",\"shape\":[3,1],\"data_offsets\":[48,60]}");
    expect_rejected(TG_ERR_SHAPE, "tensor 'fc1.bias': shape [3,1] in the file, [3] in the model");
}

Test(safetensors, a_bad_entry_nobody_asked_for_still_rejects_the_file) {
    make_targets();
    static const unsigned char data[64];
    write_file(ck, "{\"fc1.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48]},"
               "\"fc1.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]},"
               "\"step\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[56,64]}}",
               data, sizeof data);
    expect_rejected(TG_ERR_IO, "overlap");
}

/* PyTorch's batch norm saves num_batches_tracked as I64: such entries are checked and skipped. */
Test(safetensors, an_integer_entry_nobody_asked_for_is_skipped) {
    make_targets();
    unsigned char data[72] = {0};
    float one = 1.0f;
    for (int i = 0; i < 15; i++) memcpy(data + 4 * i, &one, 4);
    write_file(ck, "{\"fc1.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48]},"
               "\"fc1.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]},"
               "\"bn.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[64,72]}}",
               data, sizeof data);
    cr_assert_eq(tg_load_safetensors(ctx, ck, targets, 2), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(targets[1]->data[2], 1.0f);
}

Test(safetensors, bad_arguments) {
    make_targets();
    cr_expect_eq(tg_load_safetensors(ctx, NULL, targets, 2), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "load: path is NULL");
    tg_clear_error(ctx);
    expect_rejected(TG_ERR_IO, "cannot open: No such file or directory");
    tg_tensor *unnamed[1] = {tg_zeros(ctx, TG_SHAPE(2))};
    cr_expect_eq(tg_load_safetensors(ctx, ck, unnamed, 1), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "tensor 0 has no label");
    tg_clear_error(ctx);
    cr_expect_eq(tg_save_safetensors(ctx, ck, NULL, 1), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "save '", "tensor array is NULL for 1 tensors");
    cr_expect_eq(tg_save_safetensors(NULL, ck, targets, 2), TG_ERR_INVALID);
    cr_expect_eq(files_in_dir(), 0);
}

/* ---- saving: bad labels, atomicity --------------------------------------------------------- */

Test(safetensors, save_refuses_duplicate_empty_and_reserved_labels) {
    tg_tensor *t[3] = {named("w", TG_SHAPE(2), 1), named("b", TG_SHAPE(2), 2),
                       named("w", TG_SHAPE(3), 3)};
    cr_expect_eq(tg_save_safetensors(ctx, ck, t, 3), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "save '", ck, "label 'w' of tensor 2 is used by an earlier tensor");
    tg_clear_error(ctx);
    tg_set_label(t[1], "%s", "");
    cr_expect_eq(tg_save_safetensors(ctx, ck, t, 2), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "save '", ck, "tensor 1 has no label");
    tg_clear_error(ctx);
    tg_set_label(t[1], "__metadata__");
    cr_expect_eq(tg_save_safetensors(ctx, ck, t, 2), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "label '__metadata__' of tensor 1 is reserved");
    cr_expect_eq(files_in_dir(), 0, "a refused save wrote a file");
}

/* Saves `old`, runs a save of `new` that must fail with the fragment, then checks that ck
 * still holds exactly the old bytes and that no temporary file is left. */
static void expect_failed_save_keeps_old_file(tg_tensor *old, tg_tensor *new_tensor,
                                              const char *path, const char *fragment) {
    cr_assert_eq(tg_save_safetensors(ctx, ck, &old, 1), TG_OK, "%s", tg_errmsg(ctx));
    size_t old_n, now_n;
    unsigned char *before = read_bytes(ck, &old_n);
    cr_expect_eq(tg_save_safetensors(ctx, path, &new_tensor, 1), TG_ERR_IO);
    expect_errmsg_has(ctx, "save '", path, fragment);
    unsigned char *after = read_bytes(ck, &now_n);
    cr_expect(old_n == now_n && memcmp(before, after, old_n) == 0, "the old file changed");
    cr_expect_eq(files_in_dir(), 1, "a temporary file was left behind");
    free(before);
    free(after);
}

/* A write that fails half-way, even for root: the file size limit (SIGXFSZ ignored, so the
 * write returns EFBIG). Criterion runs each test in its own process. */
Test(safetensors, failed_write_keeps_old_file) {
    tg_tensor *old = named("w", TG_SHAPE(16), 1), *big = named("w", TG_SHAPE(64, 1024), 2);
    struct rlimit saved_limit, limit;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &saved_limit), 0);
    signal(SIGXFSZ, SIG_IGN);
    limit = saved_limit;
    limit.rlim_cur = 64 * 1024;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &limit), 0);
    expect_failed_save_keeps_old_file(old, big, ck, "cannot write the temporary file");
    setrlimit(RLIMIT_FSIZE, &saved_limit);
}

Test(safetensors, unwritable_directory_keeps_old_file) {
    tg_tensor *old = named("w", TG_SHAPE(16), 1), *new_tensor = named("w", TG_SHAPE(16), 2);
    char missing[192];
    snprintf(missing, sizeof missing, "%s/no-such-dir/ck.safetensors", dir);
    expect_failed_save_keeps_old_file(old, new_tensor, missing, "its folder cannot be used");
    if (geteuid() == 0) return; /* root writes into read-only directories */
    cr_assert_eq(tg_save_safetensors(ctx, ck, &old, 1), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(chmod(dir, 0500), 0);
    cr_expect_eq(tg_save_safetensors(ctx, ck, &new_tensor, 1), TG_ERR_IO);
    expect_errmsg_has(ctx, "save '", ck, "its folder is not writable");
    chmod(dir, 0700);
    tg_tensor *back = tg_set_label(tg_zeros(ctx, TG_SHAPE(16)), "w");
    cr_assert_eq(tg_load_safetensors(ctx, ck, &back, 1), TG_OK, "%s", tg_errmsg(ctx));
    expect_bitwise_equal(back, old);
}

/* The directory is refused before a temporary file is made (tests/test_save_target.c). */
Test(safetensors, a_directory_target_is_refused_and_leaves_no_file) {
    char target[192];
    snprintf(target, sizeof target, "%s/a-directory", dir);
    cr_assert_eq(mkdir(target, 0700), 0);
    tg_tensor *t = named("w", TG_SHAPE(4), 1);
    cr_expect_eq(tg_save_safetensors(ctx, target, &t, 1), TG_ERR_IO);
    expect_errmsg_has(ctx, "save '", target, "is not a regular file");
    cr_expect_eq(files_in_dir(), 1, "a temporary file was left behind");
}

/* ---- modules ------------------------------------------------------------------------------- */

Test(safetensors, module_round_trip) {
    tg_mlp_config config = {.in = 3, .out = 2, .width = 4, .depth = 2,
                            .activation = TG_ACT_TANH, .seed = 1};
    tg_module *trained = tg_mlp_new(ctx, "net", &config);
    config.seed = 2;
    tg_module *fresh = tg_mlp_new(ctx, "net", &config);
    cr_assert(trained && fresh, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_module_save(trained, ck), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_module_load(fresh, ck), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_gt(tg_module_param_count(fresh), 0);
    for (int i = 0; i < tg_module_param_count(fresh); i++)
        expect_bitwise_equal(tg_module_param(fresh, i), tg_module_param(trained, i));
    config.width = 5;
    tg_module *wider = tg_mlp_new(ctx, "net", &config);
    cr_expect_eq(tg_module_load(wider, ck), TG_ERR_SHAPE);
    expect_errmsg_has(ctx, "load '", ck, "tensor 'net.", "in the file", "in the model");
    tg_module_free(trained);
    tg_module_free(fresh);
    tg_module_free(wider);
}

/* A checkpoint of a batch-norm net carries its running statistics: an eval-mode model loaded
 * from it computes what the saved one did. */
Test(safetensors, module_state_includes_running_statistics) {
    tg_mlp_config config = {.in = 3, .out = 2, .width = 4, .depth = 2, .activation = TG_ACT_TANH,
                            .norm = TG_NORM_BATCH, .seed = 1};
    tg_module *trained = tg_mlp_new(ctx, "bn", &config), *fresh = tg_mlp_new(ctx, "bn", &config);
    cr_assert(trained && fresh, "%s", tg_errmsg(ctx));
    tg_tensor *state[16];
    int n = tg_module_state(trained, state, 16);
    cr_expect_eq(n, tg_module_param_count(trained) + 2, "parameters, then running mean and variance");
    cr_expect_str_eq(state[n - 1]->label, "bn.layer0.norm.running_var");
    tg_tensor *x = tg_tape_zeros(tape, TG_SHAPE(5, 3));
    tg_fill_normal(x, 2, 3, 9);
    tg_no_grad_begin(tape);
    cr_assert_not_null(tg_module_forward(trained, tape, x)); /* training mode: moves the statistics */
    tg_module_set_training(trained, false);
    tg_module_set_training(fresh, false);
    tg_tensor *want = tg_module_forward(trained, tape, x);
    cr_assert_eq(tg_module_save(trained, ck), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_module_load(fresh, ck), TG_OK, "%s", tg_errmsg(ctx));
    tg_tensor *got = tg_module_forward(fresh, tape, x);
    tg_no_grad_end(tape);
    cr_assert(want && got);
    expect_close(got->data, want->data, want->size, 0, "eval output after loading");
    tg_module_free(trained);
    tg_module_free(fresh);
}

Test(safetensors, metadata_is_kept_and_read_back_whole_or_not_at_all) {
    tg_ctx *ctx = tg_ctx_new();
    tg_module *lin = tg_linear_new(ctx, "lin", 3, 2, true, NULL, 1);
    char dir[64], path[128], buf[64];
    temp_dir_make(dir, "tapegrad-meta");
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    const char *meta[] = {"tapegrad.shape", "gpt vocab=65", "note", "\xc3\xa9t\xc3\xa9"};
    cr_assert_eq(tg_module_save_with_metadata(lin, path, meta, 2), TG_OK, "%s", tg_errmsg(ctx));
    cr_assert_eq(tg_safetensors_metadata(ctx, path, "tapegrad.shape", buf, sizeof buf), TG_OK);
    cr_expect_str_eq(buf, "gpt vocab=65");
    cr_assert_eq(tg_safetensors_metadata(ctx, path, "note", buf, sizeof buf), TG_OK);
    cr_expect_str_eq(buf, "\xc3\xa9t\xc3\xa9");
    cr_expect_eq(tg_safetensors_metadata(ctx, path, "absent", buf, sizeof buf), TG_ERR_NOT_FOUND);
    expect_errmsg_has(ctx, "no metadata 'absent'");
    tg_clear_error(ctx);
    strcpy(buf, "untouched");
    cr_expect_eq(tg_safetensors_metadata(ctx, path, "tapegrad.shape", buf, 5), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "holds 12 bytes, room for 4");
    cr_expect_str_eq(buf, "untouched", "a value that does not fit is not cut");
    tg_clear_error(ctx);
    cr_expect_eq(tg_module_load(lin, path), TG_OK, "the tensors load as from any file");
    const char *format[] = {"format", "np"};
    cr_expect_eq(tg_module_save_with_metadata(lin, path, format, 1), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "'format'");
    tg_module_free(lin);
    tg_ctx_free(ctx);
    temp_dir_remove(dir);
}

/* The names of a file, sorted, counted first; what a partial load compares with. */
Test(safetensors, names_are_listed_sorted) {
    tg_tensor *t[3] = {tg_set_label(tg_zeros(ctx, TG_SHAPE(2)), "fc2.bias"),
                       tg_set_label(tg_zeros(ctx, TG_SHAPE(2)), "fc1.weight"),
                       tg_set_label(tg_zeros(ctx, TG_SHAPE(1)), "fc1.bias")};
    cr_assert_eq(tg_save_safetensors(ctx, ck, t, 3), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(tg_safetensors_names(ctx, ck, NULL, 0), 3);
    char names[2][TG_LABEL_MAX];
    cr_expect_eq(tg_safetensors_names(ctx, ck, names, 2), 3, "%s", tg_errmsg(ctx));
    cr_expect_str_eq(names[0], "fc1.bias");
    cr_expect_str_eq(names[1], "fc1.weight");
}
