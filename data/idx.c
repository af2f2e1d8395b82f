/*
 * data/idx.c — MNIST's IDX format (unsigned bytes), plain or gzipped, and Fashion-MNIST.
 *
 * Memory and time never follow what a header merely claims. A plain file's header must match
 * the file's size exactly, checked before anything is allocated (a sparse file claiming
 * terabytes is refused). A gzipped file, told by its magic 1f 8b and not by its name, is
 * inflated as it is read: the first 16 (images) or 8 (labels) inflated bytes are the header,
 * which may claim no more than the compressed file can hold at deflate's largest ratio, 1032:1
 * (gzip's ISIZE trailer is only another claim, and a cut file's last 4 bytes are not even that),
 * and the body is inflated in small chunks straight into the data set's floats, never into a
 * buffer of the whole decompressed file. Either way the body streams through one chunk.
 * A stream that ends early or is cut, a corrupt one (zlib's message), or one that holds more
 * than the header says is an error (TG_ERR_IO) naming the file and what was expected.
 */
#include "data/dataset.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* Bytes read from a file at a time, and inflated (or copied) per chunk of the body. */
#define IN_BYTES (64 * 1024)
#define CHUNK_BYTES (64 * 1024)
/* Deflate's largest ratio of output to input (zlib's technical details: 1032:1), so a file of
 * n compressed bytes inflates to at most 1032 n. */
#define DEFLATE_MAX_RATIO 1032u
/* Where Debian's package dataset-fashion-mnist puts the four files. */
#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

/* One IDX file being read: its header, then its body chunk by chunk. */
typedef struct idx_stream {
    tg_ctx *ctx;
    const char *path;
    const char *kind;        /* "images" or "labels", for messages */
    int ndim;                /* 3 or 1 */
    int fd;                  /* -1: closed */
    uint64_t file_size;      /* on disk (compressed, for gzip) */
    bool gzip;
    bool z_ready;            /* inflateInit2 succeeded: inflateEnd is owed */
    bool member_end;         /* a gzip member ended; more input must start another */
    bool file_end;           /* read() returned 0 */
    bool cut;                /* the compressed input stopped inside a gzip member */
    z_stream z;
    unsigned char *in;       /* IN_BYTES read ahead; [pos, len) not used yet */
    size_t pos, len;
    uint64_t inflated;       /* bytes inflated so far, over every member */
    uint32_t dims[3];
    uint64_t item_bytes;     /* bytes per image (or label) */
    uint64_t payload;        /* dims[0] * item_bytes: the body after the header */
} idx_stream;

/* zlib allocates through the context's allocator (its hooks count it, a refusal is NOMEM);
 * zfree is not told the size, so each block carries it in front (16 bytes keep alignment). */
#define Z_BLOCK_HEAD 16
static voidpf z_alloc(voidpf opaque, uInt items, uInt size) {
    if (size && items > (SIZE_MAX - Z_BLOCK_HEAD) / size) return Z_NULL;
    size_t bytes = (size_t)items * size + Z_BLOCK_HEAD;
    unsigned char *block = tgi_alloc(opaque, bytes);
    if (!block) return Z_NULL;
    memcpy(block, &bytes, sizeof bytes);
    return block + Z_BLOCK_HEAD;
}

static void z_free(voidpf opaque, voidpf ptr) {
    if (!ptr) return;
    unsigned char *block = (unsigned char *)ptr - Z_BLOCK_HEAD;
    size_t bytes;
    memcpy(&bytes, block, sizeof bytes);
    tgi_free(opaque, block, bytes);
}

static uint32_t read_be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Moves the unread bytes to the front of the buffer and reads more after them. */
static tg_status refill(idx_stream *s) {
    memmove(s->in, s->in + s->pos, s->len - s->pos);
    s->len -= s->pos;
    s->pos = 0;
    for (;;) {
        ssize_t n = read(s->fd, s->in + s->len, IN_BYTES - s->len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0)
            return tgi_error(s->ctx, TG_ERR_IO, "read_idx '%s': read error: %s", s->path,
                             strerror(errno));
        if (n == 0) s->file_end = true;
        s->len += (size_t)n;
        return TG_OK;
    }
}

/* After a gzip member's end: the end of the data, or the next member (gzip -c a b > c). */
static tg_status next_member(idx_stream *s, bool *end) {
    while (s->len - s->pos < 2 && !s->file_end) {
        tg_status status = refill(s);
        if (status != TG_OK) return status;
    }
    *end = s->pos == s->len;
    if (*end) return TG_OK;
    if (s->len - s->pos < 2 || s->in[s->pos] != 0x1f || s->in[s->pos + 1] != 0x8b)
        return tgi_error(s->ctx, TG_ERR_IO, "read_idx '%s': bytes after the end of the gzip "
                         "stream that do not start another gzip member", s->path);
    inflateReset(&s->z);
    s->member_end = false;
    return TG_OK;
}

/* Up to `want` bytes of the (inflated) data into buf; *got < want only at the data's end, or
 * where a gzip file is cut short (s->cut). A corrupt stream is an error with zlib's message. */
static tg_status stream_read(idx_stream *s, unsigned char *buf, size_t want, size_t *got) {
    *got = 0;
    while (*got < want) {
        tg_status status = TG_OK;
        bool end = false;
        if (s->gzip && s->member_end) {
            status = next_member(s, &end);
            if (status != TG_OK) return status;
            if (end) break;
        }
        if (s->pos == s->len && !s->file_end) {
            status = refill(s);
            if (status != TG_OK) return status;
            continue;
        }
        size_t room = want - *got;
        if (!s->gzip) {
            if (s->pos == s->len) break;
            size_t n = s->len - s->pos < room ? s->len - s->pos : room;
            memcpy(buf + *got, s->in + s->pos, n);
            s->pos += n;
            *got += n;
            continue;
        }
        /* inflated even with no input left: zlib may hold output it had no room for */
        if (room > UINT_MAX) room = UINT_MAX;
        s->z.next_in = s->in + s->pos;
        s->z.avail_in = (uInt)(s->len - s->pos);
        s->z.next_out = buf + *got;
        s->z.avail_out = (uInt)room;
        int ret = inflate(&s->z, Z_NO_FLUSH);
        s->pos = s->len - s->z.avail_in;
        *got += room - s->z.avail_out;
        s->inflated += room - s->z.avail_out;
        if (ret == Z_STREAM_END) s->member_end = true;
        else if (ret == Z_MEM_ERROR)
            return tgi_error(s->ctx, TG_ERR_NOMEM, "read_idx '%s': out of memory to inflate",
                             s->path);
        /* no progress with output room: the input ran out, so read more, or the file is cut */
        else if (ret == Z_BUF_ERROR && s->pos == s->len) {
            if (!s->file_end) continue;
            s->cut = true;
            break;
        } else if (ret != Z_OK)
            return tgi_error(s->ctx, TG_ERR_IO, "read_idx '%s': corrupt gzip stream after %llu "
                             "inflated bytes: %s", s->path, (unsigned long long)s->inflated,
                             s->z.msg ? s->z.msg : zError(ret));
    }
    return TG_OK;
}

static const char *once_inflated(const idx_stream *s) {
    return s->cut ? " once inflated (the gzip stream is cut short)"
                  : s->gzip ? " once inflated" : "";
}

/* What the header claims, for messages: "60000 images of 28x28" or "60000 labels". */
static void describe(const idx_stream *s, char *text, size_t size) {
    if (s->ndim == 3)
        snprintf(text, size, "%lu images of %lux%lu", (unsigned long)s->dims[0],
                 (unsigned long)s->dims[1], (unsigned long)s->dims[2]);
    else
        snprintf(text, size, "%lu %s", (unsigned long)s->dims[0], s->kind);
}

/* Checks magic (0x0000 08 ndim: unsigned bytes, ndim dims) and the dims of the `got` header
 * bytes in head, then what they claim against what the file can hold. */
static tg_status header_check(idx_stream *s, const unsigned char *head, size_t got) {
    tg_ctx *ctx = s->ctx;
    int ndim = s->ndim;
    uint32_t expected = 0x800u | (uint32_t)ndim;
    if (got < 4)
        return tgi_error(ctx, TG_ERR_IO, "read_idx '%s': %zu bytes%s, too short for the magic "
                         "number", s->path, got, once_inflated(s));
    uint32_t magic = read_be32(head);
    if (magic != expected)
        return tgi_error(ctx, TG_ERR_IO, "read_idx '%s': magic number 0x%08x, expected 0x%08x "
                         "(%s: unsigned bytes, %d dims)", s->path, magic, expected, s->kind, ndim);
    size_t header = 4 + 4 * (size_t)ndim;
    if (got < header)
        return tgi_error(ctx, TG_ERR_IO, "read_idx '%s': %zu bytes%s, too short for the %d "
                         "dimension sizes", s->path, got, once_inflated(s), ndim);
    uint64_t payload = 1;
    bool overflow = false; /* three u32 dims can need more than 2^64 bytes */
    for (int d = 0; d < ndim; d++) {
        s->dims[d] = read_be32(head + 4 + 4 * d);
        if (s->dims[d] == 0)
            return tgi_error(ctx, TG_ERR_IO, "read_idx '%s': dimension %d is 0", s->path, d);
        overflow = overflow || s->dims[d] > UINT64_MAX / payload;
        if (!overflow) payload *= s->dims[d];
    }
    if (overflow)
        return tgi_error(ctx, TG_ERR_IO, "read_idx '%s': the dimensions need more than 2^64 "
                         "bytes of data", s->path);
    s->payload = payload;
    s->item_bytes = payload / s->dims[0];
    if (!s->gzip) {
        uint64_t available = s->file_size > header ? s->file_size - header : 0;
        if (payload != available)
            return tgi_error(ctx, TG_ERR_IO, "read_idx '%s': the dimensions need %llu bytes of "
                             "data, the file has %llu", s->path, (unsigned long long)payload,
                             (unsigned long long)available);
        return TG_OK;
    }
    uint64_t most = s->file_size > UINT64_MAX / DEFLATE_MAX_RATIO
                        ? UINT64_MAX : s->file_size * DEFLATE_MAX_RATIO;
    if (payload > most - header) {
        char claim[96];
        describe(s, claim, sizeof claim);
        return tgi_error(ctx, TG_ERR_IO, "read_idx '%s': the header claims %s (%llu bytes of "
                         "data), more than a gzip file of %llu bytes can hold (at most %llu bytes "
                         "at deflate's largest ratio, 1032:1)", s->path, claim,
                         (unsigned long long)payload, (unsigned long long)s->file_size,
                         (unsigned long long)most);
    }
    return TG_OK;
}

/* Opens path, tells gzip from plain by its first two bytes and reads and checks the header.
 * s is closable (stream_close) whatever this returns. */
static tg_status stream_open(tg_ctx *ctx, const char *path, const char *kind, int ndim,
                             idx_stream *s) {
    *s = (idx_stream){.ctx = ctx, .path = path, .kind = kind, .ndim = ndim, .fd = -1};
    if (!path) return tgi_error(ctx, TG_ERR_INVALID, "read_idx: %s path is NULL", kind);
    s->fd = tgi_open_input(ctx, "read_idx", path, &s->file_size);
    if (s->fd < 0) return tg_errcode(ctx);
    s->in = tgi_alloc(ctx, IN_BYTES);
    if (!s->in) return tgi_error(ctx, TG_ERR_NOMEM, "read_idx '%s': out of memory", path);
    while (s->len < 2 && !s->file_end) {
        tg_status status = refill(s);
        if (status != TG_OK) return status;
    }
    s->gzip = s->len >= 2 && s->in[0] == 0x1f && s->in[1] == 0x8b;
    if (s->gzip) {
        s->z.zalloc = z_alloc;
        s->z.zfree = z_free;
        s->z.opaque = ctx;
        int ret = inflateInit2(&s->z, 16 + MAX_WBITS); /* 16: a gzip wrapper, not zlib's */
        if (ret != Z_OK)
            return tgi_error(ctx, ret == Z_MEM_ERROR ? TG_ERR_NOMEM : TG_ERR_IO, "read_idx '%s': "
                             "cannot start inflating: %s", path, s->z.msg ? s->z.msg : zError(ret));
        s->z_ready = true;
    }
    unsigned char head[16];
    size_t got;
    tg_status status = stream_read(s, head, 4 + 4 * (size_t)ndim, &got);
    return status == TG_OK ? header_check(s, head, got) : status;
}

static void stream_close(idx_stream *s) {
    if (s->z_ready) inflateEnd(&s->z);
    tgi_free(s->ctx, s->in, IN_BYTES);
    if (s->fd >= 0) close(s->fd);
    s->z_ready = false;
    s->in = NULL;
    s->fd = -1;
}

/* Checks that the data ends where the header says; a gzip stream is inflated to its end, so
 * zlib checks its CRC-32 and length too. */
static tg_status stream_finish(idx_stream *s, unsigned char *chunk) {
    uint64_t extra = 0;
    size_t got;
    do {
        tg_status status = stream_read(s, chunk, CHUNK_BYTES, &got);
        if (status != TG_OK) return status;
        extra += got;
    } while (got == CHUNK_BYTES && s->gzip); /* a plain file's size was checked: one look */
    if (extra > 0)
        return tgi_error(s->ctx, TG_ERR_IO, "read_idx '%s': the dimensions need %llu bytes of "
                         "data, the file has %s%llu%s", s->path, (unsigned long long)s->payload,
                         s->gzip ? "" : "more than ", (unsigned long long)(s->payload + extra),
                         s->gzip ? " once inflated" : " (it grew while it was read)");
    if (s->cut)
        return tgi_error(s->ctx, TG_ERR_IO, "read_idx '%s': truncated: all %lu %s are there but "
                         "the gzip stream is cut short before its end (the CRC-32 and length "
                         "check)", s->path, (unsigned long)s->dims[0], s->kind);
    return TG_OK;
}

/* Streams the body into dst, byte b becoming value[b], one chunk at a time; then checks the
 * end. A short body is "truncated: N of M images". */
static tg_status stream_body(idx_stream *s, unsigned char *chunk, const float value[256],
                             float *dst) {
    uint64_t done = 0;
    while (done < s->payload) {
        size_t want = s->payload - done < CHUNK_BYTES ? (size_t)(s->payload - done) : CHUNK_BYTES;
        size_t got;
        tg_status status = stream_read(s, chunk, want, &got);
        if (status != TG_OK) return status;
        for (size_t i = 0; i < got; i++) dst[done + i] = value[chunk[i]];
        done += got;
        if (got == want) continue;
        const char *why = !s->gzip ? "the file shrank while it was read"
                          : s->cut ? "the gzip stream is cut short"
                                   : "the gzip stream ends there";
        return tgi_error(s->ctx, TG_ERR_IO, "read_idx '%s': truncated: %llu of %lu %s (%llu of "
                         "%llu bytes of data; %s)", s->path,
                         (unsigned long long)(done / s->item_bytes), (unsigned long)s->dims[0],
                         s->kind, (unsigned long long)done, (unsigned long long)s->payload, why);
    }
    return stream_finish(s, chunk);
}

/* Whether the two headers claim as many images as labels (else the error on ctx). */
static bool same_count(tg_ctx *ctx, const idx_stream *images, const idx_stream *labels) {
    if (images->dims[0] == labels->dims[0]) return true;
    tgi_error(ctx, TG_ERR_IO, "read_idx: '%s' has %lu images but '%s' has %lu labels",
              images->path, (unsigned long)images->dims[0], labels->path,
              (unsigned long)labels->dims[0]);
    return false;
}

/* The data set of the two files, checked: pixels scaled to [0,1], classes max label + 1. */
static tg_dataset *read_pair(tg_ctx *ctx, idx_stream *images, idx_stream *labels) {
    if (!same_count(ctx, images, labels)) return NULL;
    int64_t pixels = (int64_t)images->item_bytes;
    tg_dataset *ds = tgi_dataset_new(ctx, "read_idx", (int64_t)images->dims[0], 1,
                                     (const int64_t[]){pixels}, 0, NULL, 1);
    unsigned char *chunk = ds ? tgi_alloc(ctx, CHUNK_BYTES) : NULL;
    if (ds && !chunk) tgi_error(ctx, TG_ERR_NOMEM, "read_idx: out of memory");
    float pixel[256], label[256];
    for (int b = 0; b < 256; b++) {
        pixel[b] = (float)b / 255.0f;
        label[b] = (float)b;
    }
    tg_status status = chunk ? stream_body(images, chunk, pixel, ds->x) : TG_ERR_NOMEM;
    if (status == TG_OK) status = stream_body(labels, chunk, label, ds->y);
    tgi_free(ctx, chunk, CHUNK_BYTES);
    if (status != TG_OK) {
        tgi_dataset_destroy(ds);
        return NULL;
    }
    float max_label = 0;
    for (int64_t i = 0; i < ds->count; i++)
        if (ds->y[i] > max_label) max_label = ds->y[i];
    ds->classes = (int64_t)max_label + 1;
    return ds;
}

/* The data set of two IDX files; *rows and *cols (when not NULL) get the images' size. */
static tg_dataset *read_idx(tg_ctx *ctx, const char *images_path, const char *labels_path,
                            uint32_t *rows, uint32_t *cols) {
    idx_stream images = {.fd = -1}, labels = {.fd = -1};
    tg_dataset *ds = NULL;
    /* both headers before anything is allocated for the data */
    if (stream_open(ctx, images_path, "images", 3, &images) == TG_OK &&
        stream_open(ctx, labels_path, "labels", 1, &labels) == TG_OK)
        ds = read_pair(ctx, &images, &labels);
    if (rows) *rows = images.dims[1];
    if (cols) *cols = images.dims[2];
    stream_close(&images);
    stream_close(&labels);
    return ds;
}

tg_dataset *tg_dataset_read_idx(tg_ctx *ctx, const char *images_path, const char *labels_path) {
    return ctx ? read_idx(ctx, images_path, labels_path, NULL, NULL) : NULL;
}

/* The sample count of two IDX files from their headers, checked as read_idx checks them (a
 * gzipped header is the first bytes inflated); the bodies are not read. -1 on error. */
static int64_t count_idx(tg_ctx *ctx, const char *images_path, const char *labels_path,
                         uint32_t *rows, uint32_t *cols) {
    idx_stream images = {.fd = -1}, labels = {.fd = -1};
    int64_t count = -1;
    if (stream_open(ctx, images_path, "images", 3, &images) == TG_OK &&
        stream_open(ctx, labels_path, "labels", 1, &labels) == TG_OK &&
        same_count(ctx, &images, &labels))
        count = images.dims[0];
    if (rows) *rows = images.dims[1];
    if (cols) *cols = images.dims[2];
    stream_close(&images);
    stream_close(&labels);
    return count;
}

int64_t tg_dataset_idx_count(tg_ctx *ctx, const char *images_path, const char *labels_path) {
    return ctx ? count_idx(ctx, images_path, labels_path, NULL, NULL) : -1;
}

/* ---- Fashion-MNIST -------------------------------------------------------------------------- */

/* dir/name.gz, or dir/name when only that is there (the files as Zalando publishes them,
 * inflated); an error naming the package when neither is. */
static bool find_file(tg_ctx *ctx, const char *dir, const char *name, char *path, size_t size) {
    struct stat st;
    for (int plain = 0; plain < 2; plain++) {
        int n = snprintf(path, size, "%s/%s%s", dir, name, plain ? "" : ".gz");
        if (n < 0 || (size_t)n >= size) {
            tgi_error(ctx, TG_ERR_INVALID, "fashion_mnist: directory path too long (%zu bytes)",
                      strlen(dir));
            return false;
        }
        if (stat(path, &st) == 0) return true;
    }
    tgi_error(ctx, TG_ERR_IO, "fashion_mnist: no '%s/%s.gz' (nor without .gz): the data set is "
              "Debian's package dataset-fashion-mnist (apt-get install dataset-fashion-mnist, "
              "files in %s), or give the directory holding the four files", dir, name,
              FASHION_MNIST_DIR);
    return false;
}

/* The paths of the images and labels files of one split of Fashion-MNIST in dir (NULL: the
 * package's); false with the error on ctx. */
static bool fashion_paths(tg_ctx *ctx, const char *dir, bool train, char paths[2][4096]) {
    if (!dir) dir = FASHION_MNIST_DIR;
    const char *split = train ? "train" : "t10k";
    char names[2][32];
    snprintf(names[0], sizeof names[0], "%s-images-idx3-ubyte", split);
    snprintf(names[1], sizeof names[1], "%s-labels-idx1-ubyte", split);
    for (int f = 0; f < 2; f++)
        if (!find_file(ctx, dir, names[f], paths[f], sizeof paths[f])) return false;
    return true;
}

static bool fashion_size_ok(tg_ctx *ctx, uint32_t rows, uint32_t cols, const char *path) {
    if (rows == 28 && cols == 28) return true;
    tgi_error(ctx, TG_ERR_IO, "fashion_mnist: %lux%lu images ('%s'), expected 28x28",
              (unsigned long)rows, (unsigned long)cols, path);
    return false;
}

int64_t tg_dataset_fashion_mnist_count(tg_ctx *ctx, const char *dir, bool train) {
    char paths[2][4096];
    if (!ctx || !fashion_paths(ctx, dir, train, paths)) return -1;
    uint32_t rows = 0, cols = 0;
    int64_t count = count_idx(ctx, paths[0], paths[1], &rows, &cols);
    return count < 0 || !fashion_size_ok(ctx, rows, cols, paths[0]) ? -1 : count;
}

tg_dataset *tg_dataset_fashion_mnist(tg_ctx *ctx, const char *dir, bool train) {
    char paths[2][4096];
    if (!ctx || !fashion_paths(ctx, dir, train, paths)) return NULL;
    uint32_t rows, cols;
    tg_dataset *ds = read_idx(ctx, paths[0], paths[1], &rows, &cols);
    if (!ds) return NULL;
    /* the reader takes any sizes and labels; this set is 28x28 images of 10 classes */
    if (rows != 28 || cols != 28 || ds->classes > 10) {
        tgi_error(ctx, TG_ERR_IO, "fashion_mnist: %lux%lu images ('%s') with labels up to %lld "
                  "('%s'), expected 28x28 and labels 0..9", (unsigned long)rows,
                  (unsigned long)cols, paths[0], (long long)ds->classes - 1, paths[1]);
        tgi_dataset_destroy(ds);
        return NULL;
    }
    ds->classes = 10;
    (void)tg_dataset_reshape(ds, 3, (const int64_t[]){1, 28, 28}); /* the same size: cannot fail */
    return ds;
}
