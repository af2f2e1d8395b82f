/*
 * models/safetensors.c — tensors to and from safetensors files, the format of Hugging Face's
 * `safetensors`: an 8-byte little-endian length N, N bytes of JSON that give each tensor's dtype,
 * shape and byte range ("data_offsets", relative to the data buffer), then the data buffer.
 * jansson reads and writes the JSON.
 *
 * Saving writes a temporary file next to the target, syncs it and renames it over the target, so
 * a crash leaves either the old file or the new one. Loading validates the whole file before it
 * touches a tensor, so a bad file changes nothing.
 */
#include "models/models.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The reference implementation's limit: a larger header is refused before anything is read. */
#define MAX_HEADER_BYTES 100000000u
#define METADATA_KEY "__metadata__"

/* The file and the action of a save or a load, for messages: "load 'ck.safetensors': ...". */
typedef struct file_job {
    tg_ctx *ctx;
    const char *verb;
    const char *path;
} file_job;

/* Records "<verb> '<path>': [tensor '<name>': ]<what>". */
TGI_PRINTF(4, 5)
static tg_status fail(const file_job *job, tg_status status, const char *tensor,
                      const char *fmt, ...) {
    char what[TGI_ERRMSG_MAX];
    va_list args;
    va_start(args, fmt);
    vsnprintf(what, sizeof what, fmt, args);
    va_end(args);
    if (tensor)
        return tgi_error(job->ctx, status, "%s '%s': tensor '%s': %s", job->verb, job->path,
                         tensor, what);
    return tgi_error(job->ctx, status, "%s '%s': %s", job->verb, job->path, what);
}

/* Shared by save and load: a path, and tensors that are there and named. */
static tg_status check_args(const file_job *job, tg_tensor *const *tensors, int n) {
    if (!job->path) return tgi_error(job->ctx, TG_ERR_INVALID, "%s: path is NULL", job->verb);
    if (n < 0) return fail(job, TG_ERR_INVALID, NULL, "negative tensor count %d", n);
    if (n > 0 && !tensors)
        return fail(job, TG_ERR_INVALID, NULL, "tensor array is NULL for %d tensors", n);
    char what[TGI_ERRMSG_MAX / 2];
    snprintf(what, sizeof what, "%s '%s'", job->verb, job->path);
    /* before any label is read: a stale tensor's may be another step's */
    if (tgi_refuse_stale_list(job->ctx, tensors, n, what) != TG_OK) return TG_ERR_STATE;
    for (int i = 0; i < n; i++) {
        if (!tensors[i]) return fail(job, TG_ERR_INVALID, NULL, "tensor %d is NULL", i);
        if (!tensors[i]->label[0])
            return fail(job, TG_ERR_INVALID, NULL, "tensor %d has no label (tensors are "
                        "stored by their labels)", i);
    }
    return TG_OK;
}

/* A JSON value as compact text, cut to fit buf ("[3,4]"). */
static const char *json_text(const json_t *value, char *buf, size_t size) {
    size_t len = json_dumpb(value, buf, size - 1, JSON_COMPACT | JSON_ENCODE_ANY);
    buf[len < size ? len : size - 1] = '\0';
    return buf;
}

/* ---- little-endian bytes and dtypes -------------------------------------------------------- */

/* Explicit byte order (not memcpy of the host's words), so the file is the same on any host. */
static void put_le(unsigned char *out, uint64_t value, int bytes) {
    for (int i = 0; i < bytes; i++) out[i] = (unsigned char)(value >> (8 * i));
}

static uint64_t get_le(const unsigned char *in, int bytes) {
    uint64_t value = 0;
    for (int i = bytes - 1; i >= 0; i--) value = value << 8 | in[i];
    return value;
}

static float f32_from_bits(uint32_t bits) {
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* IEEE binary16 -> f32, exactly: every half value (subnormals, infinities, NaN payloads
 * included) is an f32 value. */
static float f32_from_f16(uint16_t half) {
    uint32_t sign = (uint32_t)(half & 0x8000u) << 16;
    uint32_t exponent = (half >> 10) & 0x1fu, mantissa = half & 0x3ffu;
    if (exponent == 0) {
        /* zero or subnormal: mantissa * 2^-24, exact in f32 (it needs at most 10 bits) */
        float magnitude = (float)mantissa * 0x1p-24f;
        return sign ? -magnitude : magnitude;
    }
    if (exponent == 31) return f32_from_bits(sign | 0x7f800000u | mantissa << 13);
    return f32_from_bits(sign | (exponent - 15 + 127) << 23 | mantissa << 13);
}

static void decode_f32(const unsigned char *src, float *dst, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) dst[i] = f32_from_bits((uint32_t)get_le(src + 4 * i, 4));
}

static void decode_f64(const unsigned char *src, float *dst, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
        uint64_t bits = get_le(src + 8 * i, 8);
        double value;
        memcpy(&value, &bits, sizeof value);
        dst[i] = (float)value; /* round to nearest; beyond the f32 range: infinity (IEEE) */
    }
}

static void decode_f16(const unsigned char *src, float *dst, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) dst[i] = f32_from_f16((uint16_t)get_le(src + 2 * i, 2));
}

/* bfloat16 is the top half of an f32. */
static void decode_bf16(const unsigned char *src, float *dst, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) dst[i] = f32_from_bits((uint32_t)get_le(src + 2 * i, 2) << 16);
}

typedef struct dtype_info {
    const char *name;
    unsigned bytes;
    void (*decode)(const unsigned char *src, float *dst, uint64_t n);
} dtype_info;

/* The float types convert to f32. The others have no decoder: their entries are validated
 * (offsets by element size) and skipped, so a PyTorch checkpoint with, say, batch norm's I64
 * num_batches_tracked still loads; asking for one of them into an f32 tensor is an error. */
static const dtype_info dtypes[] = {
    {"F32", 4, decode_f32}, {"F64", 8, decode_f64}, {"F16", 2, decode_f16},
    {"BF16", 2, decode_bf16}, {"BOOL", 1, NULL},    {"U8", 1, NULL},
    {"I8", 1, NULL},        {"I16", 2, NULL},       {"U16", 2, NULL},
    {"I32", 4, NULL},       {"U32", 4, NULL},       {"I64", 8, NULL},
    {"U64", 8, NULL},       {"F8_E4M3", 1, NULL},   {"F8_E5M2", 1, NULL},
};

static const dtype_info *find_dtype(const char *name) {
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dtypes[i].name, name) == 0) return &dtypes[i];
    return NULL;
}

/* ---- save ---------------------------------------------------------------------------------- */

/* {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, or NULL when out of memory. */
static json_t *header_entry(const tg_tensor *t, uint64_t begin) {
    json_t *shape = json_array();
    for (int d = 0; shape && d < t->ndim; d++) {
        if (json_array_append_new(shape, json_integer(t->shape[d])) != 0) {
            json_decref(shape);
            return NULL;
        }
    }
    uint64_t end = begin + (uint64_t)t->size * sizeof(float);
    return json_pack("{s:s, s:o, s:[I,I]}", "dtype", "F32", "shape", shape, "data_offsets",
                     (json_int_t)begin, (json_int_t)end);
}

static tg_status add_header_entry(const file_job *job, json_t *root, const tg_tensor *t, int i,
                                  uint64_t *offset) {
    if (strcmp(t->label, METADATA_KEY) == 0)
        return fail(job, TG_ERR_INVALID, NULL, "label '%s' of tensor %d is reserved for the "
                    "file's metadata", t->label, i);
    if (json_object_get(root, t->label))
        return fail(job, TG_ERR_INVALID, NULL, "label '%s' of tensor %d is used by an earlier "
                    "tensor (labels must be unique)", t->label, i);
    json_t *entry = header_entry(t, *offset);
    if (!entry) return fail(job, TG_ERR_NOMEM, NULL, "out of memory building the header");
    if (json_object_set_new(root, t->label, entry) != 0)
        return fail(job, TG_ERR_INVALID, NULL, "cannot put label '%s' of tensor %d in the "
                    "header (not valid UTF-8, or out of memory)", t->label, i);
    *offset += (uint64_t)t->size * sizeof(float);
    return TG_OK;
}

/* The header text (free it with jansson's free function). Checks that labels are unique. */
static tg_status build_header(const file_job *job, tg_tensor *const *tensors, int n,
                              const char *const *meta, int n_meta, char **text) {
    json_t *root = json_pack("{s:{s:s}}", METADATA_KEY, "format", "pt");
    if (!root) return fail(job, TG_ERR_NOMEM, NULL, "out of memory building the header");
    tg_status status = TG_OK;
    json_t *metadata = json_object_get(root, METADATA_KEY);
    for (int k = 0; k < n_meta && status == TG_OK; k++)
        if (json_object_set_new(metadata, meta[2 * k], json_string(meta[2 * k + 1])) != 0)
            status = fail(job, TG_ERR_INVALID, NULL, "metadata '%s' is not valid UTF-8",
                          meta[2 * k]);
    uint64_t offset = 0;
    for (int i = 0; i < n && status == TG_OK; i++)
        status = add_header_entry(job, root, tensors[i], i, &offset);
    if (status == TG_OK) {
        *text = json_dumps(root, JSON_COMPACT);
        if (!*text) status = fail(job, TG_ERR_NOMEM, NULL, "out of memory writing the header");
    }
    json_decref(root);
    return status;
}

static void free_json_text(char *text) {
    json_free_t free_fn;
    json_get_alloc_funcs(NULL, &free_fn);
    free_fn(text);
}

static tg_status write_bytes(const file_job *job, FILE *file, const void *bytes, size_t n) {
    if (fwrite(bytes, 1, n, file) != n)
        return fail(job, TG_ERR_IO, NULL, "cannot write the temporary file: %s", strerror(errno));
    return TG_OK;
}

/* The floats of t as little-endian bytes, a chunk at a time (no allocation). */
static tg_status write_tensor_data(const file_job *job, FILE *file, const tg_tensor *t) {
    enum { CHUNK_FLOATS = 1024 };
    unsigned char chunk[4 * CHUNK_FLOATS];
    for (int64_t at = 0; at < t->size; at += CHUNK_FLOATS) {
        int64_t count = t->size - at < CHUNK_FLOATS ? t->size - at : CHUNK_FLOATS;
        for (int64_t k = 0; k < count; k++) {
            uint32_t bits;
            memcpy(&bits, &t->data[at + k], sizeof bits);
            put_le(chunk + 4 * k, bits, 4);
        }
        tg_status status = write_bytes(job, file, chunk, (size_t)count * 4);
        if (status != TG_OK) return status;
    }
    return TG_OK;
}

/* The length, the header padded with spaces so the data starts 8-byte aligned (as the
 * reference implementation does, so readers may map the data in place), then the data. */
static tg_status write_contents(const file_job *job, FILE *file, const char *header,
                                tg_tensor *const *tensors, int n) {
    size_t len = strlen(header), padded = (len + 7) & ~(size_t)7;
    unsigned char prefix[8];
    put_le(prefix, padded, 8);
    tg_status status = write_bytes(job, file, prefix, sizeof prefix);
    if (status == TG_OK) status = write_bytes(job, file, header, len);
    if (status == TG_OK) status = write_bytes(job, file, "       ", padded - len);
    for (int i = 0; i < n && status == TG_OK; i++)
        status = write_tensor_data(job, file, tensors[i]);
    return status;
}

/* mkstemp makes the file 0600; give it the mode the old file had, or the one a new file would
 * get. umask can only be read by setting it, hence the two calls. */
static void set_file_mode(int fd, const char *path) {
    struct stat old;
    mode_t mode;
    if (stat(path, &old) == 0) {
        mode = old.st_mode & 07777;
    } else {
        mode_t mask = umask(022);
        umask(mask);
        mode = 0666 & ~mask;
    }
    fchmod(fd, mode); /* on failure the file stays 0600: readable by its owner, still valid */
}

/* Writes and syncs the whole file to fd (closed here, in every case). */
static tg_status write_temp(const file_job *job, int fd, const char *target, const char *header,
                            tg_tensor *const *tensors, int n) {
    set_file_mode(fd, target);
    FILE *file = fdopen(fd, "wb");
    if (!file) {
        tg_status status = fail(job, TG_ERR_IO, NULL, "cannot open the temporary file: %s",
                                strerror(errno));
        close(fd);
        return status;
    }
    tg_status status = write_contents(job, file, header, tensors, n);
    if (status == TG_OK && (fflush(file) != 0 || fsync(fileno(file)) != 0))
        status = fail(job, TG_ERR_IO, NULL, "cannot flush the temporary file: %s",
                      strerror(errno));
    if (fclose(file) != 0 && status == TG_OK)
        status = fail(job, TG_ERR_IO, NULL, "cannot close the temporary file: %s",
                      strerror(errno));
    return status;
}

/* Makes the rename itself durable. Best effort: the new file is complete either way. */
static void sync_directory(char *path_copy) {
    char *slash = strrchr(path_copy, '/');
    const char *dir = ".";
    if (slash) {
        slash[slash == path_copy ? 1 : 0] = '\0';
        dir = path_copy;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return;
    fsync(fd);
    close(fd);
}

/* <target>.tmp-XXXXXX in the same directory (rename is atomic only within a file system),
 * locked while written (so the next save can tell a dead save's file from a live one), renamed
 * over target once complete; removed on any failure, leaving target as it was. */
static tg_status write_atomically(const file_job *job, const char *target, const char *header,
                                  tg_tensor *const *tensors, int n) {
    size_t path_len = strlen(target), temp_bytes = path_len + sizeof TGI_TEMP_SUFFIX;
    char *temp = tgi_alloc(job->ctx, temp_bytes);
    if (!temp) return fail(job, TG_ERR_NOMEM, NULL, "out of memory");
    memcpy(temp, target, path_len);
    memcpy(temp + path_len, TGI_TEMP_SUFFIX, sizeof TGI_TEMP_SUFFIX);
    tg_status status;
    int fd = mkstemp(temp);
    if (fd < 0) {
        status = fail(job, TG_ERR_IO, NULL, "cannot create a temporary file next to it: %s",
                      strerror(errno));
    } else {
        tgi_lock_temp(fd); /* best effort: without it a dead save's file is merely kept */
        status = write_temp(job, fd, target, header, tensors, n);
        if (status == TG_OK && rename(temp, target) != 0)
            status = fail(job, TG_ERR_IO, NULL, "cannot rename the temporary file over it: %s",
                          strerror(errno));
        if (status != TG_OK) unlink(temp);
        else sync_directory(temp);
    }
    tgi_free(job->ctx, temp, temp_bytes);
    return status;
}

tg_status tg_save_safetensors(tg_ctx *ctx, const char *path, tg_tensor *const *tensors, int n) {
    return tgi_save_safetensors_meta(ctx, path, tensors, n, NULL, 0);
}

tg_status tgi_save_safetensors_meta(tg_ctx *ctx, const char *path, tg_tensor *const *tensors,
                                    int n, const char *const *meta, int n_meta) {
    if (!ctx) return TG_ERR_INVALID;
    file_job job = {ctx, "save", path};
    char *header = NULL;
    tg_status status = check_args(&job, tensors, n);
    char *target = status == TG_OK ? tgi_save_target(ctx, "save", path) : NULL;
    if (!target && status == TG_OK) status = tg_errcode(ctx);
    if (status == TG_OK) status = build_header(&job, tensors, n, meta, n_meta, &header);
    if (status == TG_OK) {
        tgi_remove_stale_temps(ctx, target);
        status = write_atomically(&job, target, header, tensors, n);
    }
    if (header) free_json_text(header);
    tgi_free_save_target(ctx, target);
    return status;
}

/* ---- load ---------------------------------------------------------------------------------- */

/* One tensor of the file, validated. */
typedef struct file_entry {
    const char *name;        /* a key of the parsed header (lives as long as the header) */
    const dtype_info *dtype;
    const json_t *shape;     /* an array of non-negative integers */
    uint64_t count;          /* number of elements */
    uint64_t begin, end;     /* byte range in the data buffer */
} file_entry;

/* The file is read in two parts, each after what precedes it was checked: the header (its
 * length checked against the file's size), then only the bytes of the tensors asked for (their
 * ranges checked against the data's size). So memory and time follow the tensors loaded, never
 * what a header claims, nor a file's size. */
typedef struct loader {
    file_job job;
    int fd;                  /* the file, open from read_file to release_loader (-1: none) */
    unsigned char *text;     /* the header */
    size_t header_bytes;
    uint64_t data_bytes;     /* what follows the header */
    json_t *header;
    file_entry *entries;     /* cap_entries allocated, n_entries used */
    size_t n_entries, cap_entries;
} loader;

/* Reads bytes [offset, offset + n) of the file, all of them. */
static tg_status read_at(loader *ld, unsigned char *buf, size_t n, uint64_t offset) {
    size_t done = 0;
    while (done < n) {
        ssize_t got = pread(ld->fd, buf + done, n - done, (off_t)(offset + done));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0)
            return fail(&ld->job, TG_ERR_IO, NULL, "cannot read %zu bytes at byte %llu: %s", n,
                        (unsigned long long)offset, got < 0 ? strerror(errno) : "the file got shorter");
        done += (size_t)got;
    }
    return TG_OK;
}

/* Checks the 8-byte length against the file size before anything is allocated. */
static tg_status read_length(loader *ld, uint64_t size) {
    unsigned char prefix[8];
    if (size < 8 || read_at(ld, prefix, 8, 0) != TG_OK)
        return fail(&ld->job, TG_ERR_IO, NULL, "file of %llu bytes is too short for the 8-byte "
                    "header length (truncated?)", (unsigned long long)size);
    uint64_t length = get_le(prefix, 8), rest = size - 8;
    if (length == 0) return fail(&ld->job, TG_ERR_IO, NULL, "header length is 0");
    if (length > MAX_HEADER_BYTES)
        return fail(&ld->job, TG_ERR_IO, NULL, "header length %llu is over the limit of %u "
                    "bytes", (unsigned long long)length, MAX_HEADER_BYTES);
    if (length > rest)
        return fail(&ld->job, TG_ERR_IO, NULL, "header length %llu is larger than the %llu "
                    "bytes that follow it (truncated?)", (unsigned long long)length,
                    (unsigned long long)rest);
    ld->header_bytes = (size_t)length;
    ld->data_bytes = rest - length;
    return TG_OK;
}

/* Opens the file and reads its header (not the data). */
static tg_status read_file(loader *ld) {
    uint64_t size;
    ld->fd = tgi_open_input(ld->job.ctx, ld->job.verb, ld->job.path, &size);
    if (ld->fd < 0) return tg_errcode(ld->job.ctx);
    tg_status status = read_length(ld, size);
    if (status == TG_OK && !(ld->text = tgi_alloc(ld->job.ctx, ld->header_bytes)))
        status = fail(&ld->job, TG_ERR_NOMEM, NULL, "out of memory for a header of %zu bytes",
                      ld->header_bytes);
    return status == TG_OK ? read_at(ld, ld->text, ld->header_bytes, 8) : status;
}

/* __metadata__: an object of strings, as the reference implementation requires. */
static tg_status check_metadata(loader *ld, json_t *metadata) {
    const char *key;
    json_t *value;
    if (!json_is_object(metadata))
        return fail(&ld->job, TG_ERR_IO, NULL, METADATA_KEY " is not a JSON object");
    json_object_foreach(metadata, key, value) {
        if (!json_is_string(value))
            return fail(&ld->job, TG_ERR_IO, NULL, METADATA_KEY " '%s' is not a string", key);
    }
    return TG_OK;
}

static tg_status read_dtype(loader *ld, const char *name, json_t *entry, file_entry *e) {
    json_t *dtype = json_object_get(entry, "dtype");
    if (!dtype) return fail(&ld->job, TG_ERR_IO, name, "no dtype");
    if (!json_is_string(dtype)) return fail(&ld->job, TG_ERR_IO, name, "dtype is not a string");
    e->dtype = find_dtype(json_string_value(dtype));
    if (!e->dtype)
        return fail(&ld->job, TG_ERR_IO, name, "dtype '%s' is unknown",
                    json_string_value(dtype));
    return TG_OK;
}

static tg_status read_shape(loader *ld, const char *name, json_t *entry, file_entry *e) {
    char text[96];
    json_t *shape = json_object_get(entry, "shape"), *dim;
    size_t d;
    if (!shape) return fail(&ld->job, TG_ERR_IO, name, "no shape");
    if (!json_is_array(shape))
        return fail(&ld->job, TG_ERR_IO, name, "shape %s is not a list",
                    json_text(shape, text, sizeof text));
    e->shape = shape;
    e->count = 1;
    json_array_foreach(shape, d, dim) {
        if (!json_is_integer(dim) || json_integer_value(dim) < 0)
            return fail(&ld->job, TG_ERR_IO, name, "shape %s: dim %zu is not a non-negative "
                        "integer", json_text(shape, text, sizeof text), d);
        uint64_t size = (uint64_t)json_integer_value(dim);
        if (size != 0 && e->count > UINT64_MAX / size)
            return fail(&ld->job, TG_ERR_IO, name, "shape %s has too many elements",
                        json_text(shape, text, sizeof text));
        e->count *= size;
    }
    return TG_OK;
}

static tg_status read_offsets(loader *ld, const char *name, json_t *entry, file_entry *e) {
    char text[96];
    json_t *offsets = json_object_get(entry, "data_offsets");
    if (!offsets) return fail(&ld->job, TG_ERR_IO, name, "no data_offsets");
    json_t *begin = json_array_get(offsets, 0), *end = json_array_get(offsets, 1);
    if (json_array_size(offsets) != 2 || !json_is_integer(begin) || !json_is_integer(end) ||
        json_integer_value(begin) < 0 || json_integer_value(end) < 0)
        return fail(&ld->job, TG_ERR_IO, name, "data_offsets %s is not a pair of non-negative "
                    "integers", json_text(offsets, text, sizeof text));
    e->begin = (uint64_t)json_integer_value(begin);
    e->end = (uint64_t)json_integer_value(end);
    uint64_t data_bytes = ld->data_bytes;
    if (e->begin > e->end || e->end > data_bytes)
        return fail(&ld->job, TG_ERR_IO, name, "data_offsets [%llu,%llu] are not a range "
                    "inside the %llu data bytes (truncated?)", (unsigned long long)e->begin,
                    (unsigned long long)e->end, (unsigned long long)data_bytes);
    if (e->count > data_bytes / e->dtype->bytes)
        return fail(&ld->job, TG_ERR_IO, name, "shape %s of %s needs more than the %llu data "
                    "bytes", json_text(e->shape, text, sizeof text), e->dtype->name,
                    (unsigned long long)data_bytes);
    uint64_t expected = e->count * e->dtype->bytes;
    if (e->end - e->begin != expected)
        return fail(&ld->job, TG_ERR_IO, name, "data_offsets [%llu,%llu] hold %llu bytes, shape "
                    "%s of %s needs %llu", (unsigned long long)e->begin,
                    (unsigned long long)e->end, (unsigned long long)(e->end - e->begin),
                    json_text(e->shape, text, sizeof text), e->dtype->name,
                    (unsigned long long)expected);
    return TG_OK;
}

static tg_status read_entry(loader *ld, const char *name, json_t *entry, file_entry *e) {
    if (!json_is_object(entry)) return fail(&ld->job, TG_ERR_IO, name, "not a JSON object");
    e->name = name;
    tg_status status = read_dtype(ld, name, entry, e);
    if (status == TG_OK) status = read_shape(ld, name, entry, e);
    if (status == TG_OK) status = read_offsets(ld, name, entry, e);
    return status;
}

/* Parses the header with the exact length (the padding is JSON whitespace) and validates every
 * entry, requested or not: a file with one bad entry is a bad file. */
static tg_status read_header(loader *ld) {
    json_error_t error;
    ld->header = json_loadb((const char *)ld->text, ld->header_bytes, JSON_REJECT_DUPLICATES,
                            &error);
    if (!ld->header)
        return fail(&ld->job, TG_ERR_IO, NULL, "header is not valid JSON: %s (at byte %d)",
                    error.text, error.position);
    if (!json_is_object(ld->header))
        return fail(&ld->job, TG_ERR_IO, NULL, "header is not a JSON object");
    ld->cap_entries = json_object_size(ld->header);
    if (ld->cap_entries > 0 &&
        !(ld->entries = tgi_alloc(ld->job.ctx, ld->cap_entries * sizeof *ld->entries)))
        return fail(&ld->job, TG_ERR_NOMEM, NULL, "out of memory for %zu entries",
                    ld->cap_entries);
    const char *name;
    json_t *value;
    tg_status status = TG_OK;
    json_object_foreach(ld->header, name, value) {
        if (strcmp(name, METADATA_KEY) == 0) status = check_metadata(ld, value);
        else status = read_entry(ld, name, value, &ld->entries[ld->n_entries++]);
        if (status != TG_OK) break;
    }
    return status;
}

static int by_begin(const void *a, const void *b) {
    const file_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const file_entry *)a)->name, ((const file_entry *)b)->name);
}

/* Two tensors sharing bytes would alias each other: refused. Empty ranges share nothing. */
static tg_status check_overlaps(loader *ld) {
    if (ld->n_entries == 0) return TG_OK;
    qsort(ld->entries, ld->n_entries, sizeof *ld->entries, by_begin);
    const file_entry *previous = NULL;
    for (size_t i = 0; i < ld->n_entries; i++) {
        const file_entry *e = &ld->entries[i];
        if (e->begin == e->end) continue;
        if (previous && e->begin < previous->end)
            return fail(&ld->job, TG_ERR_IO, e->name, "data_offsets [%llu,%llu] overlap those "
                        "of tensor '%s' [%llu,%llu]", (unsigned long long)e->begin,
                        (unsigned long long)e->end, previous->name,
                        (unsigned long long)previous->begin, (unsigned long long)previous->end);
        previous = e;
    }
    qsort(ld->entries, ld->n_entries, sizeof *ld->entries, by_name);
    return TG_OK;
}

static const file_entry *find_entry(const loader *ld, const char *name) {
    if (ld->n_entries == 0) return NULL;
    file_entry key = {.name = name};
    return bsearch(&key, ld->entries, ld->n_entries, sizeof *ld->entries, by_name);
}

static bool same_shape(const file_entry *e, const tg_tensor *t) {
    if (json_array_size(e->shape) != (size_t)t->ndim) return false;
    for (int d = 0; d < t->ndim; d++)
        if (json_integer_value(json_array_get(e->shape, (size_t)d)) != t->shape[d]) return false;
    return true;
}

/* Every requested tensor is in the file with its own shape. */
static tg_status match_tensors(loader *ld, tg_tensor *const *tensors, int n) {
    for (int i = 0; i < n; i++) {
        const tg_tensor *t = tensors[i];
        const file_entry *e = find_entry(ld, t->label);
        if (!e) return fail(&ld->job, TG_ERR_NOT_FOUND, t->label, "not in the file");
        if (!e->dtype->decode)
            return fail(&ld->job, TG_ERR_IO, t->label, "dtype '%s' cannot be loaded into an f32 "
                        "tensor (F32, F64, F16, BF16 can)", e->dtype->name);
        if (!same_shape(e, t)) {
            char file_shape[96], model_shape[96];
            return fail(&ld->job, TG_ERR_SHAPE, t->label, "shape %s in the file, %s in the model",
                        json_text(e->shape, file_shape, sizeof file_shape),
                        tgi_format_shape(t->ndim, t->shape, model_shape, sizeof model_shape));
        }
    }
    return TG_OK;
}

/* Reads the bytes of every tensor asked for, then decodes them all: a read that fails leaves
 * every tensor as it was. */
static tg_status copy_tensors(loader *ld, tg_tensor *const *tensors, int n) {
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const file_entry *e = find_entry(ld, tensors[i]->label);
        total += (size_t)(e->end - e->begin); /* a tensor's elements, at most 8 bytes each */
    }
    unsigned char *bytes = total ? tgi_alloc(ld->job.ctx, total) : NULL;
    if (total && !bytes)
        return fail(&ld->job, TG_ERR_NOMEM, NULL, "out of memory for %zu bytes of tensors", total);
    tg_status status = TG_OK;
    size_t at = 0;
    for (int i = 0; i < n && status == TG_OK; i++) {
        const file_entry *e = find_entry(ld, tensors[i]->label);
        size_t size = (size_t)(e->end - e->begin);
        status = read_at(ld, bytes + at, size, 8 + ld->header_bytes + e->begin);
        at += size;
    }
    at = 0;
    for (int i = 0; i < n && status == TG_OK; i++) {
        const file_entry *e = find_entry(ld, tensors[i]->label);
        e->dtype->decode(bytes + at, tensors[i]->data, e->count);
        at += (size_t)(e->end - e->begin);
    }
    tgi_free(ld->job.ctx, bytes, total);
    return status;
}

static void release_loader(loader *ld) {
    json_decref(ld->header);
    tgi_free(ld->job.ctx, ld->entries, ld->cap_entries * sizeof *ld->entries);
    tgi_free(ld->job.ctx, ld->text, ld->header_bytes);
    if (ld->fd >= 0) close(ld->fd);
}

tg_status tg_load_safetensors(tg_ctx *ctx, const char *path, tg_tensor *const *tensors, int n) {
    if (!ctx) return TG_ERR_INVALID;
    loader ld = {.job = {ctx, "load", path}, .fd = -1};
    tg_status status = check_args(&ld.job, tensors, n);
    if (status == TG_OK) status = read_file(&ld);
    if (status == TG_OK) status = read_header(&ld);
    if (status == TG_OK) status = check_overlaps(&ld);
    if (status == TG_OK) status = match_tensors(&ld, tensors, n);
    if (status == TG_OK) status = copy_tensors(&ld, tensors, n);
    release_loader(&ld);
    return status;
}

/* ---- modules ------------------------------------------------------------------------------- */

typedef tg_status (*tensors_file_fn)(tg_ctx *ctx, const char *path, tg_tensor *const *tensors,
                                     int n);

/* The module's state (tg_module_state) in an array of the context's (free: bytes). */
static tg_status state_list(const tg_module *m, tg_tensor ***list, int *n, size_t *bytes) {
    *n = tg_module_state(m, NULL, 0);
    *bytes = (size_t)*n * sizeof(tg_tensor *);
    *list = NULL;
    if (*n > 0 && !(*list = tgi_alloc(m->ctx, *bytes)))
        return tgi_error(m->ctx, TG_ERR_NOMEM, "module '%s': out of memory", m->name);
    tg_module_state(m, *list, *n);
    return TG_OK;
}

/* Saves (with metadata) or loads the module's state, named by the tensors' full labels. */
static tg_status with_state(const tg_module *m, const char *path, bool save,
                            const char *const *meta, int n_meta) {
    if (!m) return TG_ERR_INVALID;
    tg_tensor **list;
    int n;
    size_t bytes;
    tg_status status = state_list(m, &list, &n, &bytes);
    if (status != TG_OK) return status;
    status = save ? tgi_save_safetensors_meta(m->ctx, path, list, n, meta, n_meta)
                  : tg_load_safetensors(m->ctx, path, list, n);
    tgi_free(m->ctx, list, bytes);
    return status;
}

tg_status tg_module_save(const tg_module *m, const char *path) {
    return with_state(m, path, true, NULL, 0);
}

tg_status tg_module_save_with_metadata(const tg_module *m, const char *path,
                                       const char *const *meta, int n_meta) {
    if (!m) return TG_ERR_INVALID;
    if (n_meta < 0 || (n_meta > 0 && !meta))
        return tgi_error(m->ctx, TG_ERR_INVALID, "save '%s': %d metadata pairs from a NULL array",
                         path ? path : "(null)", n_meta);
    for (int k = 0; k < 2 * n_meta; k++)
        if (!meta[k] || (k % 2 == 0 && strcmp(meta[k], "format") == 0))
            return tgi_error(m->ctx, TG_ERR_INVALID, "save '%s': metadata %s %d is %s",
                             path ? path : "(null)", k % 2 ? "value" : "key", k / 2,
                             meta[k] ? "'format', which the file format keeps for itself" : "NULL");
    return with_state(m, path, true, meta, n_meta);
}

tg_status tg_module_load(tg_module *m, const char *path) {
    return with_state(m, path, false, NULL, 0);
}

tg_status tg_safetensors_metadata(tg_ctx *ctx, const char *path, const char *key, char *buf,
                                  size_t size) {
    if (!ctx) return TG_ERR_INVALID;
    if (!key || !buf || size == 0)
        return tgi_error(ctx, TG_ERR_INVALID, "metadata of '%s': %s", path ? path : "(null)",
                         !key ? "key is NULL" : "no room for the value");
    loader ld = {.job = {ctx, "load", path}, .fd = -1};
    tg_status status = check_args(&ld.job, NULL, 0);
    if (status == TG_OK) status = read_file(&ld);
    if (status == TG_OK) status = read_header(&ld);
    if (status == TG_OK) status = check_overlaps(&ld);
    if (status == TG_OK) {
        json_t *value = json_object_get(json_object_get(ld.header, METADATA_KEY), key);
        const char *text = json_string_value(value);
        if (!text)
            status = fail(&ld.job, TG_ERR_NOT_FOUND, NULL, "no metadata '%s'", key);
        else if (strlen(text) >= size)
            status = fail(&ld.job, TG_ERR_INVALID, NULL, "metadata '%s' holds %zu bytes, room for "
                          "%zu", key, strlen(text), size - 1);
        else
            memcpy(buf, text, strlen(text) + 1);
    }
    release_loader(&ld);
    return status;
}

/* A file's header, read and checked for listing (tg_safetensors_names, tg_safetensors_list);
 * -1 after the error, else the number of entries (sorted by name). */
static int64_t open_listing(loader *ld, tg_ctx *ctx, const char *path, const char *what, int max,
                            const void *out) {
    *ld = (loader){.job = {ctx, "load", path}, .fd = -1};
    if (max < 0 || (max > 0 && !out)) {
        tgi_error(ctx, TG_ERR_INVALID, "%s of '%s': room for %d entries%s", what,
                  path ? path : "(null)", max, max < 0 ? "" : " at NULL");
        return -1;
    }
    tg_status status = check_args(&ld->job, NULL, 0);
    if (status == TG_OK) status = read_file(ld);
    if (status == TG_OK) status = read_header(ld);
    if (status == TG_OK) status = check_overlaps(ld); /* and sorts the entries by name */
    return status == TG_OK ? (int64_t)ld->n_entries : -1;
}

/* Entry i's name into out, or the error when it is longer than any label. */
static tg_status entry_name(loader *ld, size_t i, char out[TG_LABEL_MAX]) {
    size_t len = strlen(ld->entries[i].name);
    if (len >= TG_LABEL_MAX)
        return fail(&ld->job, TG_ERR_IO, NULL, "tensor '%.40s...' has a name of %zu bytes, "
                    "longer than any label (at most %d)", ld->entries[i].name, len, TG_LABEL_MAX - 1);
    memcpy(out, ld->entries[i].name, len + 1);
    return TG_OK;
}

int tg_safetensors_names(tg_ctx *ctx, const char *path, char (*names)[TG_LABEL_MAX], int max) {
    if (!ctx) return -1;
    loader ld;
    int64_t n = open_listing(&ld, ctx, path, "safetensors_names", max, names);
    tg_status status = n < 0 ? TG_ERR_IO : TG_OK;
    for (size_t i = 0; status == TG_OK && i < ld.n_entries && i < (size_t)max; i++)
        status = entry_name(&ld, i, names[i]);
    release_loader(&ld);
    return status == TG_OK ? (int)n : -1;
}

int tg_safetensors_list(tg_ctx *ctx, const char *path, tg_safetensors_entry *entries, int max) {
    if (!ctx) return -1;
    loader ld;
    int64_t n = open_listing(&ld, ctx, path, "safetensors_list", max, entries);
    tg_status status = n < 0 ? TG_ERR_IO : TG_OK;
    for (size_t i = 0; status == TG_OK && i < ld.n_entries && i < (size_t)max; i++) {
        const file_entry *f = &ld.entries[i];
        tg_safetensors_entry *e = &entries[i];
        memset(e, 0, sizeof *e);
        status = entry_name(&ld, i, e->name);
        snprintf(e->dtype, sizeof e->dtype, "%s", f->dtype->name);
        e->ndim = (int)json_array_size(f->shape);
        for (int d = 0; d < e->ndim && d < TG_SAFETENSORS_MAX_DIMS; d++)
            e->shape[d] = (int64_t)json_integer_value(json_array_get(f->shape, (size_t)d));
        e->elements = (int64_t)f->count;
        e->bytes = (int64_t)(f->end - f->begin);
    }
    release_loader(&ld);
    return status == TG_OK ? (int)n : -1;
}
