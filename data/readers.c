/*
 * data/readers.c — data sets from files: CSV of numbers (MNIST's IDX format: data/idx.c).
 *
 * A file is read whole (a regular file only: see tgi_open_input; fread with every return
 * checked; data/text.c reads its corpora through the same functions) and validated before a
 * data set is made; a malformed file is an error with a message that names the file and the
 * line and column at fault (TG_ERR_IO), never a crash.
 */
#include "data/dataset.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void tgi_file_release(tg_ctx *ctx, tgi_file *file) {
    tgi_free(ctx, file->bytes, file->capacity);
    *file = (tgi_file){0};
}

bool tgi_file_reserve(tg_ctx *ctx, tgi_file *file, size_t extra) {
    if (file->capacity - file->size >= extra) return true;
    size_t capacity = file->capacity ? 2 * file->capacity : 64 * 1024;
    if (capacity - file->size < extra) capacity = file->size + extra;
    unsigned char *grown = tgi_realloc(ctx, file->bytes, file->capacity, capacity);
    if (!grown) return false;
    file->bytes = grown;
    file->capacity = capacity;
    return true;
}

/* Reads f to its end after file's bytes, growing file as needed. */
static tg_status read_to_end(tg_ctx *ctx, const char *what, const char *path, size_t max_bytes,
                             FILE *f, tgi_file *file) {
    for (;;) {
        if (file->size > max_bytes)
            return tgi_error(ctx, TG_ERR_IO, "%s '%s': more than %zu bytes (the file grew while "
                             "it was read)", what, path, max_bytes);
        if (!tgi_file_reserve(ctx, file, 1))
            return tgi_error(ctx, TG_ERR_NOMEM, "%s '%s': out of memory after %zu bytes", what,
                             path, file->size);
        size_t got = fread(file->bytes + file->size, 1, file->capacity - file->size, f);
        file->size += got;
        if (got > 0) continue;
        if (ferror(f))
            return tgi_error(ctx, TG_ERR_IO, "%s '%s': read error after %zu bytes: %s", what,
                             path, file->size, strerror(errno));
        return TG_OK;
    }
}

tg_status tgi_file_append(tg_ctx *ctx, const char *what, const char *path, size_t max_bytes,
                          tgi_file *file) {
    uint64_t size;
    int fd = tgi_open_input(ctx, what, path, &size);
    if (fd < 0) return tg_errcode(ctx);
    if (size > max_bytes - file->size) {
        close(fd);
        return tgi_error(ctx, TG_ERR_IO, "%s '%s': %llu bytes%s, more than the %zu allowed", what,
                         path, (unsigned long long)size, file->size ? " after the others" : "",
                         max_bytes);
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return tgi_error(ctx, TG_ERR_IO, "%s '%s': cannot open: %s", what, path, strerror(errno));
    }
    /* room for the whole file and the byte that finds its end: one allocation, no doubling */
    tg_status status = tgi_file_reserve(ctx, file, (size_t)size + 1)
        ? read_to_end(ctx, what, path, max_bytes, f, file)
        : tgi_error(ctx, TG_ERR_NOMEM, "%s '%s': out of memory for %llu bytes", what, path,
                    (unsigned long long)size);
    if (fclose(f) != 0 && status == TG_OK)
        status = tgi_error(ctx, TG_ERR_IO, "%s '%s': %s", what, path, strerror(errno));
    return status;
}

/* Reads path into file; the message starts with `what` and names the file. */
static tg_status file_read(tg_ctx *ctx, const char *what, const char *path, tgi_file *file) {
    *file = (tgi_file){0};
    tg_status status = tgi_file_append(ctx, what, path, SIZE_MAX, file);
    if (status != TG_OK) tgi_file_release(ctx, file);
    return status;
}

/* ---- CSV ------------------------------------------------------------------------------------ */

/* Cells longer than this are not numbers anyone writes (and are copied to parse them). */
#define CELL_MAX 64
/* Labels stay exact as floats up to 2^24. */
#define LABEL_MAX 16777216.0

typedef struct text_line {
    const char *start, *end; /* without the line break */
    int64_t number;          /* 1-based */
} text_line;

/* Moves to the next line of the text from *pos; false at the end. */
static bool next_line(const tgi_file *file, size_t *pos, text_line *line) {
    if (*pos >= file->size) return false;
    const char *text = (const char *)file->bytes;
    const char *start = text + *pos, *stop = text + file->size;
    const char *end = memchr(start, '\n', (size_t)(stop - start));
    if (!end) end = stop;
    *pos = (size_t)(end - text) + 1;
    if (end > start && end[-1] == '\r') end--;
    line->start = start;
    line->end = end;
    line->number++;
    return true;
}

static bool is_space(char c) {
    return c == ' ' || c == '\t';
}

static bool is_blank(const text_line *line) {
    for (const char *c = line->start; c < line->end; c++)
        if (!is_space(*c)) return false;
    return true;
}

static int64_t count_cells(const text_line *line) {
    int64_t cells = 1;
    for (const char *c = line->start; c < line->end; c++) cells += *c == ',';
    return cells;
}

/* The cell that did not parse: its column (1-based) and text. */
typedef struct bad_cell {
    int64_t column;
    const char *start, *end;
} bad_cell;

/* Parses [start, end) as one finite number, surrounding blanks allowed. */
static bool parse_number(const char *start, const char *end, float *value) {
    while (start < end && is_space(*start)) start++;
    while (end > start && is_space(end[-1])) end--;
    size_t len = (size_t)(end - start);
    if (len == 0 || len >= CELL_MAX) return false;
    char cell[CELL_MAX]; /* strtod wants a terminated string; a NUL byte inside stops it early */
    memcpy(cell, start, len);
    cell[len] = '\0';
    char *stop;
    double v = strtod(cell, &stop);
    if (stop != cell + len || !isfinite(v) || fabs(v) > 3.4e38) return false;
    *value = (float)v;
    return true;
}

/* Parses the count_cells(line) cells of line into values; false with *bad at the first cell
 * that is not a number. */
static bool parse_cells(const text_line *line, float *values, bad_cell *bad) {
    const char *start = line->start;
    for (int64_t column = 1;; column++) {
        const char *end = memchr(start, ',', (size_t)(line->end - start));
        if (!end) end = line->end;
        if (!parse_number(start, end, &values[column - 1])) {
            *bad = (bad_cell){column, start, end};
            return false;
        }
        if (end == line->end) return true;
        start = end + 1;
    }
}

/* What read_csv learns from the first lines: header or not, and the shape of the table. */
typedef struct csv_layout {
    size_t data_pos;         /* offset of the first line after the header (if any) */
    int64_t data_line;       /* number of the line before it */
    int64_t columns;         /* cells of the first data line */
    int64_t first_row_line;  /* its line number, for messages about ragged rows */
    int64_t rows;            /* non-blank lines after the header */
    int64_t label;           /* the label column, 0-based */
    bool regression;         /* the label is any finite number (a target), not a class */
} csv_layout;

/* Finds the header (the first non-blank line, when it is not all numbers), the column count
 * and the number of rows. values has room for the cells of the longest line. */
static tg_status csv_scan(tg_ctx *ctx, const char *path, const tgi_file *file, int label_column,
                          float *values, csv_layout *layout) {
    size_t pos = 0;
    text_line line = {0};
    *layout = (csv_layout){0};
    bool first = true;
    while (next_line(file, &pos, &line)) {
        if (is_blank(&line)) continue;
        bad_cell bad;
        if (first && !parse_cells(&line, values, &bad)) {
            layout->data_pos = pos;
            layout->data_line = line.number;
        } else if (layout->rows++ == 0) {
            layout->columns = count_cells(&line);
            layout->first_row_line = line.number;
        }
        first = false;
    }
    if (layout->rows == 0)
        return tgi_error(ctx, TG_ERR_IO, "read_csv '%s': no data rows", path);
    if (layout->columns < 2)
        return tgi_error(ctx, TG_ERR_IO, "read_csv '%s': line %lld has 1 column; a label and at "
                         "least one feature are needed", path, (long long)layout->first_row_line);
    layout->label = label_column < 0 ? layout->columns + label_column : label_column;
    if (layout->label < 0 || layout->label >= layout->columns)
        return tgi_error(ctx, TG_ERR_INVALID, "read_csv '%s': label column %d outside the %lld "
                         "columns of line %lld", path, label_column, (long long)layout->columns,
                         (long long)layout->first_row_line);
    return TG_OK;
}

/* Checks one row's cells and label, with a message naming the line and column at fault. */
static tg_status csv_check_row(tg_ctx *ctx, const char *path, const csv_layout *layout,
                               const text_line *line, float *values) {
    int64_t cells = count_cells(line);
    if (cells != layout->columns)
        return tgi_error(ctx, TG_ERR_IO, "read_csv '%s': line %lld has %lld columns, line %lld "
                         "has %lld", path, (long long)line->number, (long long)cells,
                         (long long)layout->first_row_line, (long long)layout->columns);
    bad_cell bad;
    if (!parse_cells(line, values, &bad))
        return tgi_error(ctx, TG_ERR_IO, "read_csv '%s': line %lld, column %lld: \"%.*s\" is "
                         "not a number", path, (long long)line->number, (long long)bad.column,
                         (int)(bad.end - bad.start > 40 ? 40 : bad.end - bad.start), bad.start);
    double label = values[layout->label];
    if (layout->regression && !isfinite(label))
        return tgi_error(ctx, TG_ERR_IO, "read_csv '%s': line %lld, column %lld: target %g is "
                         "not a finite number", path, (long long)line->number,
                         (long long)layout->label + 1, label);
    if (layout->regression) return TG_OK;
    if (label < 0 || label != floor(label) || label > LABEL_MAX)
        return tgi_error(ctx, TG_ERR_IO, "read_csv '%s': line %lld, column %lld: label %g is not "
                         "a whole number from 0 to 2^24", path, (long long)line->number,
                         (long long)layout->label + 1, label);
    return TG_OK;
}

/* Fills ds from the rows, checking each; records the largest label in ds->classes - 1. */
static tg_status csv_fill(tg_ctx *ctx, const char *path, const tgi_file *file,
                          const csv_layout *layout, float *values, tg_dataset *ds) {
    size_t pos = layout->data_pos;
    text_line line = {.number = layout->data_line};
    int64_t row = 0, features = layout->columns - 1;
    float max_label = 0;
    while (next_line(file, &pos, &line)) {
        if (is_blank(&line)) continue;
        tg_status status = csv_check_row(ctx, path, layout, &line, values);
        if (status != TG_OK) return status;
        float *x = ds->x + row * features;
        for (int64_t c = 0; c < layout->columns; c++)
            if (c != layout->label) *x++ = values[c];
        ds->y[row] = values[layout->label];
        if (ds->y[row] > max_label) max_label = ds->y[row];
        row++;
    }
    ds->classes = layout->regression ? 0 : (int64_t)max_label + 1;
    return TG_OK;
}

/* The cells of the longest line (in cells), to size the row buffer once. */
static int64_t max_cells(const tgi_file *file) {
    int64_t most = 1, cells = 1;
    for (size_t i = 0; i < file->size; i++) {
        if (file->bytes[i] == ',' && ++cells > most) most = cells;
        if (file->bytes[i] == '\n') cells = 1;
    }
    return most;
}

static tg_dataset *read_csv(tg_ctx *ctx, const char *path, int label_column, bool regression) {
    if (!ctx) return NULL;
    if (!path) {
        tgi_error(ctx, TG_ERR_INVALID, "read_csv: path is NULL");
        return NULL;
    }
    tgi_file file;
    if (file_read(ctx, "read_csv", path, &file) != TG_OK) return NULL;
    size_t values_bytes = (size_t)max_cells(&file) * sizeof(float);
    float *values = tgi_alloc(ctx, values_bytes);
    tg_dataset *ds = NULL;
    csv_layout layout;
    if (!values)
        tgi_error(ctx, TG_ERR_NOMEM, "read_csv '%s': out of memory", path);
    else if (csv_scan(ctx, path, &file, label_column, values, &layout) == TG_OK) {
        layout.regression = regression;
        ds = tgi_dataset_new(ctx, "read_csv", layout.rows, 1,
                             (const int64_t[]){layout.columns - 1}, 0, NULL, 1);
    }
    if (ds && csv_fill(ctx, path, &file, &layout, values, ds) != TG_OK) {
        tgi_dataset_destroy(ds);
        ds = NULL;
    }
    tgi_free(ctx, values, values_bytes);
    tgi_file_release(ctx, &file);
    return ds;
}

tg_dataset *tg_dataset_read_csv(tg_ctx *ctx, const char *path, int label_column) {
    return read_csv(ctx, path, label_column, false);
}

tg_dataset *tg_dataset_read_csv_regression(tg_ctx *ctx, const char *path, int target_column) {
    return read_csv(ctx, path, target_column, true);
}
