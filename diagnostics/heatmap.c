/*
 * diagnostics/heatmap.c — heatmaps as self-contained SVG (tg_svg_heatmap): a layer x step grid
 * in viridis, linear or log colour scale with its bar, cells without a value in grey, row and
 * column labels thinned to what fits. The shared pieces are in svg.c.
 */
#include "diagnostics/svg.h"

#include <math.h>
#include <string.h>

#define NO_VALUE_GREY "#bdbdbd"
#define NO_VALUE_NOTE "grey: no value/NaN"
#define ROW_NAME_CHARS 24
#define COLOUR_BAR_STEPS 64

/* viridis (van der Walt & Smith) at 16 evenly spaced points; linear interpolation between them
 * stays within a hair of the full table, and the map is perceptually uniform, readable in grey
 * and by colour-blind readers. */
static const unsigned char viridis[16][3] = {
    {0x44, 0x01, 0x54}, {0x48, 0x1A, 0x6C}, {0x47, 0x2F, 0x7D}, {0x41, 0x44, 0x87},
    {0x39, 0x56, 0x8C}, {0x31, 0x68, 0x8E}, {0x2A, 0x78, 0x8E}, {0x23, 0x88, 0x8E},
    {0x1F, 0x98, 0x8B}, {0x22, 0xA8, 0x84}, {0x35, 0xB7, 0x79}, {0x54, 0xC5, 0x68},
    {0x7A, 0xD1, 0x51}, {0xA5, 0xDB, 0x36}, {0xD2, 0xE2, 0x1B}, {0xFD, 0xE7, 0x25},
};

typedef struct colour_text {
    char s[8];
} colour_text;

static colour_text viridis_at(double t) {
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double f = t * 15;
    int i = (int)f;
    if (i > 14) i = 14;
    double frac = f - i;
    int rgb[3];
    for (int c = 0; c < 3; c++)
        rgb[c] = (int)lround(viridis[i][c] + (viridis[i + 1][c] - viridis[i][c]) * frac);
    colour_text r;
    snprintf(r.s, sizeof r.s, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
    return r;
}

/* A cell's value in colour space, false when it has none (non-finite, or <= 0 when logged). */
static bool cell_value(const tg_heatmap *map, int64_t i, double *v) {
    double x = map->values[i];
    if (!isfinite(x) || (map->log_values && !(x > 0))) return false;
    *v = tgi_to_axis(x, map->log_values);
    return true;
}

/* Label stride along rows or columns: 1, 2, 5, 10, ... cells, the smallest that puts labels at
 * least `need` pixels apart when cells are `cell` pixels wide. */
static int label_stride(double cell, double need) {
    static const int mantissas[] = {1, 2, 5};
    for (int mag = 1; mag <= 100000000; mag *= 10)
        for (int i = 0; i < 3; i++)
            if (cell * mantissas[i] * mag >= need) return mantissas[i] * mag;
    return 1000000000;
}

/* Whether cell index i of n is labelled: every stride-th, and the last, which pushes out a
 * regular label too close to it. */
static bool labelled(int i, int n, int stride) {
    if (i == n - 1) return true;
    return i % stride == 0 && n - 1 - i >= stride;
}

static void row_label(const tg_heatmap *map, int r, char *buf, size_t size) {
    if (map->row_names && map->row_names[r])
        tgi_shorten_middle(map->row_names[r], ROW_NAME_CHARS, buf, size);
    else
        snprintf(buf, size, "%d", r);
}

static void col_label(const tg_heatmap *map, int c, char *buf, size_t size) {
    snprintf(buf, size, "%s", map->col_values ? tgi_fmt_g(map->col_values[c], 6).s
                                              : tgi_fmt_g((double)c, 10).s);
}

tg_status tg_svg_heatmap(FILE *out, const tg_heatmap *map) {
    if (!out || !map || !map->values || map->rows < 1 || map->cols < 1 || map->width < 0 ||
        map->height < 0)
        return TG_ERR_INVALID;
    int width = map->width ? map->width : DEFAULT_WIDTH;
    int height = map->height ? map->height : DEFAULT_HEIGHT;
    int64_t n_cells = (int64_t)map->rows * map->cols;

    span range = {0};
    bool any_grey = false;
    for (int64_t i = 0; i < n_cells; i++) {
        double v;
        if (cell_value(map, i, &v))
            tgi_span_add(&range, v);
        else
            any_grey = true;
    }
    plot_axis bar = {.log = map->log_values};
    tgi_axis_set_range(&bar, range, 0.0);

    /* Margins: row names on the left; on the right the colour bar, its tick labels, the value
     * label and the note about grey cells. */
    bool titled = map->title && *map->title;
    box area = {0, titled ? 34 : 12, 0, height - (map->x_label && *map->x_label ? 44 : 26)};
    if (area.y1 < area.y0 + 20) area.y1 = area.y0 + 20;
    double widest_row = 0;
    char label[ROW_NAME_CHARS * 4 + 8];
    for (int r = 0; r < map->rows; r++) {
        row_label(map, r, label, sizeof label);
        widest_row = fmax(widest_row, tgi_text_width(label, FONT_TICK));
    }
    area.x0 = (map->y_label && *map->y_label ? 26 : 8) + widest_row + 9;
    double note_h = any_grey ? 24 : 0;
    bar.px_lo = area.y1 - note_h;
    bar.px_hi = area.y0;
    if (range.any) tgi_fit_ticks(&bar, true, 34);
    double bar_w = 14;
    double bar_block = 16 + bar_w + 8 + tgi_widest_label(&bar, FONT_TICK) +
                       (map->value_label && *map->value_label ? 28 : 6);
    if (any_grey)
        bar_block = fmax(bar_block, 16 + bar_w + 5 + tgi_text_width(NO_VALUE_NOTE, FONT_TICK) + 6);
    area.x1 = width - bar_block;
    if (area.x1 < area.x0 + 20) area.x1 = area.x0 + 20;
    double bar_x = area.x1 + 16;

    double cell_w = (area.x1 - area.x0) / map->cols, cell_h = (area.y1 - area.y0) / map->rows;

    tgi_svg_open(out, width, height, map->title);
    /* Cells: edges at rounded positions shared by neighbours, and crisp edges, so that no
     * hairline of background shows between cells. */
    fputs("<g class=\"cells\" shape-rendering=\"crispEdges\">\n", out);
    for (int r = 0; r < map->rows; r++) {
        double y0 = area.y0 + r * cell_h, y1 = area.y0 + (r + 1) * cell_h;
        for (int c = 0; c < map->cols; c++) {
            double x0 = area.x0 + c * cell_w, x1 = area.x0 + (c + 1) * cell_w, v;
            colour_text fill = {NO_VALUE_GREY};
            if (cell_value(map, (int64_t)r * map->cols + c, &v))
                fill = viridis_at((v - bar.lo) / (bar.hi - bar.lo));
            fprintf(out, "<rect x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"%s\"/>\n",
                    tgi_px(x0).s, tgi_px(y0).s, tgi_px(round(x1 * 10) / 10 - round(x0 * 10) / 10).s,
                    tgi_px(round(y1 * 10) / 10 - round(y0 * 10) / 10).s, fill.s);
        }
    }
    fputs("</g>\n", out);
    tgi_draw_frame(out, area);

    /* Row names as y ticks, column values as x ticks, both thinned to what fits. */
    int row_stride = label_stride(cell_h, FONT_TICK + 3);
    fputs("<g stroke=\"#555\">\n", out);
    for (int r = 0; r < map->rows; r++)
        if (labelled(r, map->rows, row_stride))
            tgi_put_line(out, area.x0 - 4, area.y0 + (r + 0.5) * cell_h, area.x0,
                     area.y0 + (r + 0.5) * cell_h);
    double widest_col = 0;
    for (int c = 0; c < map->cols; c++) {
        col_label(map, c, label, sizeof label);
        widest_col = fmax(widest_col, tgi_text_width(label, FONT_TICK));
    }
    int col_stride = label_stride(cell_w, widest_col + 10);
    for (int c = 0; c < map->cols; c++)
        if (labelled(c, map->cols, col_stride))
            tgi_put_line(out, area.x0 + (c + 0.5) * cell_w, area.y1, area.x0 + (c + 0.5) * cell_w,
                     area.y1 + 4);
    fputs("</g>\n<g font-size=\"11\" fill=\"#333\" text-anchor=\"end\">\n", out);
    for (int r = 0; r < map->rows; r++) {
        if (!labelled(r, map->rows, row_stride)) continue;
        row_label(map, r, label, sizeof label);
        tgi_put_text(out, area.x0 - 7, area.y0 + (r + 0.5) * cell_h + FONT_TICK * 0.35, "", label,
                 sizeof label);
    }
    fputs("</g>\n<g font-size=\"11\" fill=\"#333\" text-anchor=\"middle\">\n", out);
    for (int c = 0; c < map->cols; c++) {
        if (!labelled(c, map->cols, col_stride)) continue;
        col_label(map, c, label, sizeof label);
        tgi_put_text(out, area.x0 + (c + 0.5) * cell_w, area.y1 + 6 + FONT_TICK, "", label, 40);
    }
    fputs("</g>\n", out);
    tgi_draw_titles(out, width, height, map->x_label, map->y_label, area);

    /* The colour bar: a stack of flat steps (a gradient would need an id, and ids clash when
     * several charts share a page). */
    double bar_top = bar.px_hi, bar_bottom = bar.px_lo;
    if (range.any) {
        fputs("<g class=\"colour-bar\" shape-rendering=\"crispEdges\">\n", out);
        for (int i = 0; i < COLOUR_BAR_STEPS; i++) {
            double y0 = bar_bottom - (bar_bottom - bar_top) * (i + 1) / COLOUR_BAR_STEPS;
            double y1 = bar_bottom - (bar_bottom - bar_top) * i / COLOUR_BAR_STEPS;
            fprintf(out, "<rect x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"%s\"/>\n",
                    tgi_px(bar_x).s, tgi_px(y0).s, tgi_px(bar_w).s,
                    tgi_px(round(y1 * 10) / 10 - round(y0 * 10) / 10).s,
                    viridis_at((i + 0.5) / COLOUR_BAR_STEPS).s);
        }
        fputs("</g>\n", out);
        tgi_draw_frame(out, (box){bar_x, bar_top, bar_x + bar_w, bar_bottom});
        tgi_draw_axis(out, &bar, SIDE_RIGHT, bar_x, bar_x + bar_w, false);
    } else {
        tgi_put_text(out, bar_x, (bar_top + bar_bottom) / 2, "font-size=\"11\" fill=\"#777\"",
                 "no finite data", 40);
    }
    if (map->value_label && *map->value_label)
        tgi_put_vertical_text(out, bar_x + bar_w + 8 + tgi_widest_label(&bar, FONT_TICK) + 16,
                          (bar_top + bar_bottom) / 2,
                          "font-size=\"13\" fill=\"#222\"", map->value_label,
                          tgi_chars_fitting(map->value_label, bar_bottom - bar_top + 20, FONT_LABEL));
    if (any_grey) {
        fprintf(out, "<rect x=\"%s\" y=\"%s\" width=\"%s\" height=\"11\" fill=\"%s\" "
                "stroke=\"#555\"/>\n", tgi_px(bar_x).s, tgi_px(area.y1 - 11).s, tgi_px(bar_w).s,
                NO_VALUE_GREY);
        tgi_put_text(out, bar_x + bar_w + 5, area.y1 - 1.5, "font-size=\"11\" fill=\"#333\"",
                 NO_VALUE_NOTE, 40);
    }
    return tgi_svg_close(out);
}
