/*
 * data/text.c — a byte-level text corpus for character-level language models: the bytes
 * mapped to ids, a seeded split into training and held-out text, and windows of ids.
 *
 * The corpus keeps one array: the file's bytes, overwritten in place by their ids (a vocabulary
 * of distinct bytes never has more than 256 entries, so an id fits the byte it replaces). The
 * split cuts the text into chunks and gives a seeded sample of them to the held-out part; a part
 * is then a list of segments (maximal runs of neighbouring chunks), and a window always lies
 * inside one segment, so no window reads across from one part into the other. A batcher copies
 * its part's segments when it is made and allocates nothing afterwards.
 */
#include "data/dataset.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Window starts are drawn by tg_rng_below, which takes a uint32_t; 1 GiB is also far more text
 * than a character model on a CPU gets through. */
#define TEXT_MAX_BYTES ((size_t)1 << 30)

/* Where Debian's `fortunes` package puts its files. */
#define FORTUNES_DIR "/usr/share/games/fortunes"

/* A run of the text that belongs to one part: ids[start .. start+length-1]. */
typedef struct segment {
    int64_t start, length;
} segment;

struct tg_text {
    tg_ctx *ctx;
    tgi_file file;                /* the ids, in place of the bytes they were read as */
    int vocab_size;
    unsigned char vocab[256];     /* id -> byte, ascending */
    int16_t id_of[256];           /* byte -> id, -1 for a byte not in the text */
    segment whole;                /* the training part before any split */
    segment *segments;            /* after a split: the training segments, then the held-out */
    int64_t part_segments[2];     /* how many of each (indexed by tg_text_part) */
    size_t segments_bytes;        /* 0: segments is &whole */
    tgi_retired retired;          /* tg_text_free */
};

/* ---- making a corpus ------------------------------------------------------------------------ */

/* Builds the vocabulary of file's bytes (sorted, so ids do not depend on the order bytes first
 * appear in) and makes the text of it, taking the buffer over. NULL on error (file released). */
static tg_text *text_from_file(tg_ctx *ctx, const char *what, const char *name, tgi_file *file) {
    if (file->size == 0) {
        tgi_file_release(ctx, file);
        tgi_error(ctx, TG_ERR_IO, "%s '%s': the text is empty", what, name);
        return NULL;
    }
    tg_text *text = tgi_alloc(ctx, sizeof *text);
    if (!text) {
        tgi_file_release(ctx, file);
        tgi_error(ctx, TG_ERR_NOMEM, "%s '%s': out of memory", what, name);
        return NULL;
    }
    *text = (tg_text){.ctx = ctx, .file = *file, .part_segments = {1, 0}};
    text->whole = (segment){0, (int64_t)file->size};
    text->segments = &text->whole;
    bool present[256] = {false};
    for (size_t i = 0; i < file->size; i++) present[file->bytes[i]] = true;
    for (int byte = 0; byte < 256; byte++) {
        text->id_of[byte] = present[byte] ? (int16_t)text->vocab_size : -1;
        if (present[byte]) text->vocab[text->vocab_size++] = (unsigned char)byte;
    }
    for (size_t i = 0; i < file->size; i++)
        file->bytes[i] = (unsigned char)text->id_of[file->bytes[i]];
    return text;
}

tg_text *tg_text_load(tg_ctx *ctx, const char *path) {
    if (!ctx) return NULL;
    if (!path) {
        tgi_error(ctx, TG_ERR_INVALID, "text_load: path is NULL");
        return NULL;
    }
    tgi_file file = {0};
    if (tgi_file_append(ctx, "text_load", path, TEXT_MAX_BYTES, &file) != TG_OK) {
        tgi_file_release(ctx, &file);
        return NULL;
    }
    return text_from_file(ctx, "text_load", path, &file);
}

tg_text *tg_text_from_memory(tg_ctx *ctx, const char *bytes, int64_t n) {
    if (!ctx) return NULL;
    if (!bytes || n < 1 || (uint64_t)n > TEXT_MAX_BYTES) {
        tgi_error(ctx, TG_ERR_INVALID, "text_from_memory: %s%lld bytes, expected 1 to %zu",
                  bytes ? "" : "NULL bytes, ", (long long)n, TEXT_MAX_BYTES);
        return NULL;
    }
    tgi_file file = {0};
    if (!tgi_file_reserve(ctx, &file, (size_t)n)) {
        tgi_error(ctx, TG_ERR_NOMEM, "text_from_memory: out of memory for %lld bytes",
                  (long long)n);
        return NULL;
    }
    memcpy(file.bytes, bytes, (size_t)n);
    file.size = (size_t)n;
    return text_from_file(ctx, "text_from_memory", "memory", &file);
}

void tg_text_free(tg_text *text) {
    if (!text || text->retired.freed) return;
    tg_ctx *ctx = text->ctx;
    if (text->segments_bytes) tgi_free(ctx, text->segments, text->segments_bytes);
    tgi_file_release(ctx, &text->file);
    tgi_retire(ctx, &text->retired, text, sizeof *text);
}

/* ---- the fortunes corpus -------------------------------------------------------------------- */

/* The names of the fortune files of a directory, sorted (readdir's order is the file system's,
 * and the corpus must be the same bytes on every machine). */
typedef struct name_list {
    char (*names)[256];
    size_t count, capacity;
} name_list;

static int compare_names(const void *a, const void *b) {
    return strcmp(a, b);
}

/* A fortune file is a regular file whose name has no dot: that leaves out the .dat indexes of
 * strfile, the .u8 variants (symlinks to the same text, or copies of it) and hidden files; the
 * symlinks are left out by lstat as well, so no text is read twice. */
static bool is_fortune_file(int dir_fd, const char *name) {
    struct stat st;
    return !strchr(name, '.') && strlen(name) < 256 &&
           fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

static tg_status list_fortune_files(tg_ctx *ctx, DIR *dir, name_list *list) {
    struct dirent *entry;
    while ((entry = readdir(dir))) {
        if (!is_fortune_file(dirfd(dir), entry->d_name)) continue;
        if (list->count == list->capacity) {
            size_t capacity = list->capacity ? 2 * list->capacity : 64;
            void *grown = tgi_realloc(ctx, list->names, list->capacity * sizeof *list->names,
                                      capacity * sizeof *list->names);
            if (!grown)
                return tgi_error(ctx, TG_ERR_NOMEM, "text_load_corpus: out of memory");
            list->names = grown;
            list->capacity = capacity;
        }
        strcpy(list->names[list->count++], entry->d_name);
    }
    qsort(list->names, list->count, sizeof *list->names, compare_names);
    return TG_OK;
}

/* Rewrites the bytes from `from` on: a line holding only "%" (the separator between fortunes)
 * becomes an empty line. A blank line is how paragraphs end in the rest of the text, so the
 * model learns where a fortune ends from a pattern it needs anyway, and a '%' in the corpus is
 * then always a percent sign. The text is made to end with a line break, so the next file does
 * not start in the middle of this one's last line. */
static bool convert_separators(tg_ctx *ctx, tgi_file *file, size_t from) {
    size_t out = from;
    for (size_t line = from; line < file->size;) {
        unsigned char *end = memchr(file->bytes + line, '\n', file->size - line);
        size_t stop = end ? (size_t)(end - file->bytes) + 1 : file->size;
        size_t line_length = stop - line - (end ? 1 : 0);
        bool separator = line_length == 1 && file->bytes[line] == '%';
        if (separator) file->bytes[out++] = '\n';
        else {
            memmove(file->bytes + out, file->bytes + line, stop - line);
            out += stop - line;
        }
        line = stop;
    }
    file->size = out;
    if (out == from || file->bytes[out - 1] == '\n') return true;
    if (!tgi_file_reserve(ctx, file, 1)) return false;
    file->bytes[file->size++] = '\n';
    return true;
}

/* Appends the fortune files of dir_path, in sorted order, to file. */
static tg_status read_fortune_files(tg_ctx *ctx, const char *dir_path, const name_list *list,
                                    tgi_file *file) {
    char path[4096];
    for (size_t i = 0; i < list->count; i++) {
        snprintf(path, sizeof path, "%s/%s", dir_path, list->names[i]);
        size_t from = file->size;
        tg_status status = tgi_file_append(ctx, "text_load_corpus", path, TEXT_MAX_BYTES, file);
        if (status != TG_OK) return status;
        if (!convert_separators(ctx, file, from))
            return tgi_error(ctx, TG_ERR_NOMEM, "text_load_corpus: out of memory");
    }
    return TG_OK;
}

tg_text *tgi_text_load_fortunes(tg_ctx *ctx, const char *dir_path) {
    DIR *dir = opendir(dir_path);
    if (!dir) {
        tgi_error(ctx, TG_ERR_IO, "text_load_corpus 'fortunes': cannot open %s: %s (the corpus "
                  "is Debian's package fortunes: apt-get install fortunes)", dir_path,
                  strerror(errno));
        return NULL;
    }
    name_list list = {0};
    tgi_file file = {0};
    tg_status status = list_fortune_files(ctx, dir, &list);
    closedir(dir);
    if (status == TG_OK && list.count == 0)
        status = tgi_error(ctx, TG_ERR_IO, "text_load_corpus 'fortunes': no fortune files in %s "
                           "(reinstall Debian's package fortunes: apt-get install --reinstall "
                           "fortunes)", dir_path);
    if (status == TG_OK) status = read_fortune_files(ctx, dir_path, &list, &file);
    tgi_free(ctx, list.names, list.capacity * sizeof *list.names);
    if (status != TG_OK) {
        tgi_file_release(ctx, &file);
        return NULL;
    }
    return text_from_file(ctx, "text_load_corpus", dir_path, &file);
}

tg_text *tg_text_load_corpus(tg_ctx *ctx, const char *name) {
    if (!ctx) return NULL;
    if (name && strcmp(name, "fortunes") == 0) return tgi_text_load_fortunes(ctx, FORTUNES_DIR);
    tgi_error(ctx, TG_ERR_INVALID, "text_load_corpus: unknown corpus '%s' (known: fortunes)",
              name ? name : "(NULL)");
    return NULL;
}

/* ---- the vocabulary ------------------------------------------------------------------------- */

int64_t tg_text_length(const tg_text *text) {
    return text ? (int64_t)text->file.size : 0;
}

int tg_text_vocab_size(const tg_text *text) {
    return text ? text->vocab_size : 0;
}

const unsigned char *tg_text_vocab(const tg_text *text) {
    return text ? text->vocab : NULL;
}

const unsigned char *tg_text_ids(const tg_text *text) {
    return text ? text->file.bytes : NULL;
}

int tg_text_encode_byte(const tg_text *text, unsigned char byte) {
    return text ? text->id_of[byte] : -1;
}

int tg_text_decode_id(const tg_text *text, int id) {
    return text && id >= 0 && id < text->vocab_size ? text->vocab[id] : -1;
}

tg_status tg_text_check_vocab(const tg_text *text, int model_vocab) {
    if (!text) return TG_ERR_INVALID;
    if (text->vocab_size <= model_vocab) return TG_OK;
    return tgi_error(text->ctx, TG_ERR_SHAPE, "text_check_vocab: the text has %d distinct bytes, "
                     "the model's vocabulary only %d", text->vocab_size, model_vocab);
}

/* ---- the split ------------------------------------------------------------------------------ */

/* Appends the segments of `part` (held[c]: chunk c is held out) to out; returns their count.
 * Neighbouring chunks of the part join into one segment. */
static int64_t collect_segments(const tg_text *text, int64_t chunk, const bool *held,
                                int64_t chunks, tg_text_part part, segment *out) {
    int64_t count = 0, length = (int64_t)text->file.size;
    for (int64_t c = 0; c < chunks; c++) {
        if (held[c] != (part == TG_TEXT_HELD_OUT)) continue;
        int64_t start = c * chunk, end = start + chunk < length ? start + chunk : length;
        if (count > 0 && out[count - 1].start + out[count - 1].length == start)
            out[count - 1].length += end - start;
        else out[count++] = (segment){start, end - start};
    }
    return count;
}

/* Replaces the text's segments by those of the chunks chosen in held. */
static tg_status set_segments(tg_text *text, int64_t chunk, const bool *held, int64_t chunks) {
    size_t bytes = (size_t)chunks * sizeof(segment);
    segment *segments = tgi_alloc(text->ctx, bytes);
    if (!segments) return tgi_error(text->ctx, TG_ERR_NOMEM, "text_split: out of memory");
    int64_t train = collect_segments(text, chunk, held, chunks, TG_TEXT_TRAIN, segments);
    int64_t held_out = collect_segments(text, chunk, held, chunks, TG_TEXT_HELD_OUT,
                                        segments + train);
    if (text->segments_bytes) tgi_free(text->ctx, text->segments, text->segments_bytes);
    text->segments = segments;
    text->segments_bytes = bytes;
    text->part_segments[TG_TEXT_TRAIN] = train;
    text->part_segments[TG_TEXT_HELD_OUT] = held_out;
    return TG_OK;
}

tg_status tg_text_split(tg_text *text, double held_out_fraction, int64_t chunk, uint64_t seed) {
    if (!text) return TG_ERR_INVALID;
    tg_ctx *ctx = text->ctx;
    int64_t length = (int64_t)text->file.size;
    if (chunk < 1 || chunk > length)
        return tgi_error(ctx, TG_ERR_INVALID, "text_split: chunks of %lld bytes for a text of "
                         "%lld, expected 1 to %lld", (long long)chunk, (long long)length,
                         (long long)length);
    int64_t chunks = (length + chunk - 1) / chunk;
    double wanted = held_out_fraction * (double)chunks;
    int64_t n_held = wanted >= 0 && wanted < (double)chunks ? (int64_t)llround(wanted) : 0;
    if (n_held < 1 || n_held >= chunks)
        return tgi_error(ctx, TG_ERR_INVALID, "text_split: held-out fraction %g of %lld chunks "
                         "(of %lld bytes) leaves an empty part", held_out_fraction,
                         (long long)chunks, (long long)chunk);
    size_t order_bytes = (size_t)chunks * sizeof(int64_t);
    size_t held_bytes = (size_t)chunks * sizeof(bool);
    int64_t *order = tgi_alloc(ctx, order_bytes);
    bool *held = tgi_alloc(ctx, held_bytes);
    tg_status status = TG_OK;
    if (!order || !held) status = tgi_error(ctx, TG_ERR_NOMEM, "text_split: out of memory");
    else {
        tg_rng rng;
        tg_rng_seed(&rng, seed);
        tgi_permutation(order, chunks, &rng);
        memset(held, 0, held_bytes);
        for (int64_t i = 0; i < n_held; i++) held[order[i]] = true;
        status = set_segments(text, chunk, held, chunks);
    }
    tgi_free(ctx, order, order_bytes);
    tgi_free(ctx, held, held_bytes);
    return status;
}

/* The part's segments as text has them (part_segments[part] of them): the held-out ones follow
 * the training ones. */
static const segment *part_begin(const tg_text *text, tg_text_part part) {
    return text->segments + (part == TG_TEXT_HELD_OUT ? text->part_segments[TG_TEXT_TRAIN] : 0);
}

int64_t tg_text_part_length(const tg_text *text, tg_text_part part) {
    if (!text || (part != TG_TEXT_TRAIN && part != TG_TEXT_HELD_OUT)) return 0;
    const segment *s = part_begin(text, part);
    int64_t length = 0;
    for (int64_t i = 0; i < text->part_segments[part]; i++) length += s[i].length;
    return length;
}

/* ---- windows -------------------------------------------------------------------------------- */

struct tg_text_batcher {
    const tg_text *text;
    tg_text_order order;
    int64_t batch, window;
    tg_rng rng;
    int64_t segment_count;        /* the part's segments that hold at least one window */
    segment *segments;
    int64_t *windows_before;      /* windows of the segments before segment i */
    int64_t windows;              /* random: distinct starts; sequential: windows of a pass */
    int64_t next;                 /* sequential: the next window of the pass */
    size_t bytes;                 /* the whole allocation */
    tgi_retired retired;          /* tg_text_batcher_free */
};

/* The windows of a segment of `length` bytes. A window reads window + 1 bytes (its targets are
 * its inputs moved on by one); drawn at random it may start anywhere it fits, walked in order
 * windows follow each other without overlap (each byte is a target once, as evaluation wants). */
static int64_t segment_windows(int64_t length, int64_t window, tg_text_order order) {
    if (length <= window) return 0;
    return order == TG_TEXT_SEQUENTIAL ? (length - 1) / window : length - window;
}

/* The start of window k (0 <= k < b->windows). */
static int64_t window_start(const tg_text_batcher *b, int64_t k) {
    int64_t lo = 0, hi = b->segment_count - 1;
    while (lo < hi) { /* the last segment with windows_before <= k */
        int64_t mid = lo + (hi - lo + 1) / 2;
        if (b->windows_before[mid] <= k) lo = mid;
        else hi = mid - 1;
    }
    int64_t offset = k - b->windows_before[lo];
    return b->segments[lo].start + (b->order == TG_TEXT_SEQUENTIAL ? offset * b->window : offset);
}

static int64_t longest_segment(const tg_text *text, tg_text_part part) {
    const segment *s = part_begin(text, part);
    int64_t longest = 0;
    for (int64_t i = 0; i < text->part_segments[part]; i++)
        if (s[i].length > longest) longest = s[i].length;
    return longest;
}

static tg_status check_batcher_args(const tg_text *text, tg_text_part part, tg_text_order order,
                                    int64_t batch, int64_t window) {
    tg_ctx *ctx = text->ctx;
    if (part != TG_TEXT_TRAIN && part != TG_TEXT_HELD_OUT)
        return tgi_error(ctx, TG_ERR_INVALID, "text_batcher: part %d is neither TG_TEXT_TRAIN "
                         "nor TG_TEXT_HELD_OUT", (int)part);
    if (order != TG_TEXT_RANDOM && order != TG_TEXT_SEQUENTIAL)
        return tgi_error(ctx, TG_ERR_INVALID, "text_batcher: order %d is neither TG_TEXT_RANDOM "
                         "nor TG_TEXT_SEQUENTIAL", (int)order);
    if (batch < 1 || window < 1)
        return tgi_error(ctx, TG_ERR_INVALID, "text_batcher: batch %lld and window %lld, "
                         "expected both >= 1", (long long)batch, (long long)window);
    if (part == TG_TEXT_HELD_OUT && text->part_segments[part] == 0)
        return tgi_error(ctx, TG_ERR_INVALID, "text_batcher: the text has no held-out part "
                         "(tg_text_split makes one)");
    int64_t longest = longest_segment(text, part);
    if (longest <= window)
        return tgi_error(ctx, TG_ERR_INVALID, "text_batcher: a window of %lld bytes needs %lld "
                         "(one more for the last target), the %s part's longest piece has %lld",
                         (long long)window, (long long)window + 1,
                         part == TG_TEXT_TRAIN ? "training" : "held-out", (long long)longest);
    return TG_OK;
}

/* Copies the part's segments that hold a window, with the windows before each. */
static void fill_segments(tg_text_batcher *b, const segment *s, int64_t count) {
    int64_t kept = 0, windows = 0;
    for (int64_t i = 0; i < count; i++) {
        int64_t n = segment_windows(s[i].length, b->window, b->order);
        if (n == 0) continue;
        b->segments[kept] = s[i];
        b->windows_before[kept++] = windows;
        windows += n;
    }
    b->segment_count = kept;
    b->windows = windows;
}

tg_text_batcher *tg_text_batcher_new(const tg_text *text, tg_text_part part, tg_text_order order,
                                     int64_t batch, int64_t window, uint64_t seed) {
    if (!text || check_batcher_args(text, part, order, batch, window) != TG_OK) return NULL;
    int64_t count = text->part_segments[part];
    /* one block: the batcher, then its segments and their window counts */
    size_t head = (sizeof(tg_text_batcher) + 15) & ~(size_t)15;
    size_t bytes = head + (size_t)count * (sizeof(segment) + sizeof(int64_t));
    tg_text_batcher *b = tgi_alloc(text->ctx, bytes);
    if (!b) {
        tgi_error(text->ctx, TG_ERR_NOMEM, "text_batcher: out of memory");
        return NULL;
    }
    *b = (tg_text_batcher){.text = text, .order = order, .batch = batch, .window = window,
                           .bytes = bytes};
    b->segments = (segment *)((char *)b + head);
    b->windows_before = (int64_t *)(b->segments + count);
    tg_rng_seed(&b->rng, seed);
    fill_segments(b, part_begin(text, part), count);
    return b;
}

void tg_text_batcher_free(tg_text_batcher *b) {
    if (b && !b->retired.freed) tgi_retire(b->text->ctx, &b->retired, b, b->bytes);
}

int64_t tg_text_batcher_windows(const tg_text_batcher *b) {
    return b ? b->windows : 0;
}

/* TG_OK when t is a live [batch, window] tensor. */
static tg_status check_window_tensor(const tg_text_batcher *b, const tg_tensor *t,
                                     const char *what) {
    tg_ctx *ctx = b->text->ctx;
    if (!t) return tgi_error(ctx, TG_ERR_INVALID, "text_batcher_next_into: %s is NULL", what);
    if (tgi_refuse_stale(t, "text_batcher_next_into") != TG_OK) return TG_ERR_STATE;
    int64_t want[2] = {b->batch, b->window};
    if (t->ndim == 2 && t->shape[0] == want[0] && t->shape[1] == want[1]) return TG_OK;
    char got_text[96], want_text[96];
    return tgi_error(ctx, TG_ERR_SHAPE, "text_batcher_next_into: %s%s%s%s is %s, a batch of "
                     "windows is %s", what, t->label[0] ? " '" : "", t->label,
                     t->label[0] ? "'" : "",
                     tgi_format_shape(t->ndim, t->shape, got_text, sizeof got_text),
                     tgi_format_shape(2, want, want_text, sizeof want_text));
}

int64_t tg_text_batcher_next_into(tg_text_batcher *b, tg_tensor *x, tg_tensor *y) {
    if (!b) return -1;
    if (check_window_tensor(b, x, "x") != TG_OK || check_window_tensor(b, y, "y") != TG_OK)
        return -1;
    if (x == y || x->data == y->data) {
        tgi_error(b->text->ctx, TG_ERR_INVALID, "text_batcher_next_into: x and y are the same "
                  "tensor");
        return -1;
    }
    int64_t rows = b->batch;
    if (b->order == TG_TEXT_SEQUENTIAL) {
        rows = b->windows - b->next < rows ? b->windows - b->next : rows;
        if (rows == 0) {
            b->next = 0; /* the end of a pass: the next call starts another */
            return 0;
        }
    }
    const unsigned char *ids = b->text->file.bytes;
    int64_t T = b->window;
    for (int64_t r = 0; r < rows; r++) {
        int64_t k = b->order == TG_TEXT_SEQUENTIAL ? b->next++
                                                    : tg_rng_below(&b->rng, (uint32_t)b->windows);
        const unsigned char *window = ids + window_start(b, k);
        for (int64_t t = 0; t < T; t++) {
            x->data[r * T + t] = window[t];
            y->data[r * T + t] = window[t + 1];
        }
    }
    /* a short last batch: rows past it hold no window, and say so rather than an old one */
    memset(x->data + rows * T, 0, (size_t)((b->batch - rows) * T) * sizeof(float));
    memset(y->data + rows * T, 0, (size_t)((b->batch - rows) * T) * sizeof(float));
    return rows;
}
