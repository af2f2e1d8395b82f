/*
 * models/module_summary.c — tg_module_summary: a module tree as a table (names, kinds, shapes,
 * parameter counts per module and per tensor, totals), for built-in and user modules alike.
 *
 * Two walks over the tree: the first measures the columns, the second prints, so every name
 * and shape is printed whole however deep the tree or long the names.
 */
#include "models/models.h"

#include <stdio.h>
#include <string.h>

#define INDENT 2

typedef struct summary {
    FILE *out;                 /* NULL: measuring */
    int name_width, kind_width, shape_width;
    int64_t params, trainable, param_tensors, buffer_values, buffer_tensors;
} summary;

/* 1234567 as "1,234,567". */
static const char *grouped(int64_t n, char *buf, size_t size) {
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%lld", (long long)n), at = 0;
    int lead = n < 0; /* a sign never gets a comma after it */
    for (int i = 0; i < len && (size_t)at + 2 < size; i++) {
        if (i > lead && (len - i) % 3 == 0) buf[at++] = ',';
        buf[at++] = digits[i];
    }
    buf[at] = '\0';
    return buf;
}

static void widen(int *width, int len) {
    if (len > *width) *width = len;
}

/* One row: measured, or printed in the measured columns. */
static void row(summary *s, int depth, const char *name, const char *kind, const char *shape, int64_t count) {
    int name_len = depth * INDENT + (int)strlen(name);
    if (!s->out) {
        widen(&s->name_width, name_len);
        widen(&s->kind_width, (int)strlen(kind));
        widen(&s->shape_width, (int)strlen(shape));
        return;
    }
    char number[40];
    fprintf(s->out, "%*s%-*s  %-*s  %-*s  %15s\n", depth * INDENT, "", s->name_width - depth * INDENT, name,
            s->kind_width, kind, s->shape_width, shape, grouped(count, number, sizeof number));
}

static void tensor_row(summary *s, int depth, const tg_tensor *t, bool buffer) {
    char shape[96];
    tg_shape_str(t, shape, sizeof shape);
    const char *kind = buffer ? "buffer" : t->requires_grad ? "parameter" : "frozen";
    row(s, depth, t->label, kind, shape, t->size);
    if (!s->out) return; /* the totals are counted once, on the printing walk */
    if (buffer) {
        s->buffer_values += t->size;
        s->buffer_tensors++;
        return;
    }
    s->params += t->size;
    s->param_tensors++;
    if (t->requires_grad) s->trainable += t->size;
}

static void walk(summary *s, const tg_module *m, int depth) {
    row(s, depth, m->name, m->cls->kind, "", tg_module_num_elements(m));
    for (int i = 0; i < m->n_params; i++) tensor_row(s, depth + 1, m->params[i], false);
    for (int i = 0; i < m->n_buffers; i++) tensor_row(s, depth + 1, m->buffers[i], true);
    for (int i = 0; i < m->n_children; i++) walk(s, m->children[i], depth + 1);
}

tg_status tg_module_summary(const tg_module *m, FILE *out) {
    if (!m) return TG_ERR_INVALID;
    if (!out) return tgi_error(m->ctx, TG_ERR_INVALID, "module_summary: '%s': out is NULL", m->name);
    summary s = {.name_width = (int)strlen("name"), .kind_width = (int)strlen("kind"),
                 .shape_width = (int)strlen("shape")};
    walk(&s, m, 0);
    s.out = out;
    fprintf(out, "%-*s  %-*s  %-*s  %15s\n", s.name_width, "name", s.kind_width, "kind", s.shape_width,
            "shape", "parameters");
    walk(&s, m, 0);
    char a[40], b[40], c[40];
    fprintf(out, "total: %s parameters in %lld tensor%s (%s trainable)", grouped(s.params, a, sizeof a),
            (long long)s.param_tensors, s.param_tensors == 1 ? "" : "s", grouped(s.trainable, b, sizeof b));
    if (s.buffer_tensors)
        fprintf(out, "; buffers: %s values in %lld tensor%s", grouped(s.buffer_values, c, sizeof c),
                (long long)s.buffer_tensors, s.buffer_tensors == 1 ? "" : "s");
    fprintf(out, "\n");
    if (fflush(out) != 0 || ferror(out))
        return tgi_error(m->ctx, TG_ERR_IO, "module_summary: '%s': writing the summary failed", m->name);
    return TG_OK;
}
