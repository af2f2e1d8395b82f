/*
 * diagnostics/line_plot.c — line charts as self-contained SVG (tg_svg_line_plot), for reports a
 * person reads in a browser: series in a colour-blind-safe palette, log or linear axes, where a
 * series ends (a NaN) marked, long series reduced per pixel column, and the legend placed where
 * the data leaves room. The shared pieces are in svg.c.
 */
#include "diagnostics/svg.h"

#include <math.h>
#include <string.h>

#define FONT_LEGEND 12.0
/* Above this many points a series is reduced to first/min/max/last per pixel column: the drawn
 * line looks the same (spikes survive) and the file stays small. */
#define DOWNSAMPLE_ABOVE 2000
#define LEGEND_ROW 17.0
#define LEGEND_NAME_CHARS 32

/* Okabe & Ito's colour-blind-safe palette, most distinct first, with grey in place of its
 * yellow (#F0E442), which is barely visible as a thin line on white. Past eight series the
 * dash pattern changes. */
static const char *const line_colours[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                           "#E69F00", "#56B4E9", "#000000", "#999999"};
static const char *const line_dashes[] = {"", "7 4", "2 3", "9 3 2 3"};
#define N_COLOURS ((int)(sizeof line_colours / sizeof line_colours[0]))
#define N_DASHES ((int)(sizeof line_dashes / sizeof line_dashes[0]))

/* Series k's place in the palette: its own style when it has one, else its position. */
static int series_style(const tg_line_plot *plot, int k) {
    int style = plot->series[k].style;
    return style > 0 ? style - 1 : k;
}

static const char *series_colour(const tg_line_plot *plot, int k) {
    return line_colours[series_style(plot, k) % N_COLOURS];
}

static const char *series_dash(const tg_line_plot *plot, int k) {
    return line_dashes[(series_style(plot, k) / N_COLOURS) % N_DASHES];
}

/* Point i in axis space; false when it is not drawn (non-finite, or <= 0 on a log axis). */
static bool series_point(const tg_line_plot *plot, const tg_plot_series *s, int64_t i,
                         double *x, double *y) {
    double vx = s->x ? s->x[i] : (double)i, vy = s->y[i];
    if (!isfinite(vx) || !isfinite(vy)) return false;
    if ((plot->log_x && !(vx > 0)) || (plot->log_y && !(vy > 0))) return false;
    *x = tgi_to_axis(vx, plot->log_x);
    *y = tgi_to_axis(vy, plot->log_y);
    return true;
}

/* How a series ends: when its last y is NaN or +-Inf, the x where that trailing run of
 * non-finite values starts, and the last drawn point before it (-1: none). */
typedef struct series_end {
    bool blows_up;
    double y_bad, x_bad;
    int64_t last_drawn;
} series_end;

static series_end find_end(const tg_line_plot *plot, const tg_plot_series *s) {
    series_end e = {false, 0, 0, -1};
    if (s->n == 0 || isfinite(s->y[s->n - 1])) return e;
    int64_t first_bad = s->n - 1;
    while (first_bad > 0 && !isfinite(s->y[first_bad - 1])) first_bad--;
    e.blows_up = true;
    e.y_bad = s->y[first_bad];
    e.x_bad = s->x ? s->x[first_bad] : (double)first_bad;
    double x, y;
    if (first_bad > 0 && series_point(plot, s, first_bad - 1, &x, &y)) e.last_drawn = first_bad - 1;
    return e;
}

/* The legend text of series i: its name, shortened until the text fits max_w pixels (down to 8
 * characters), and where the series blew up, kept whole. */
static void legend_text(const tg_line_plot *plot, int i, double max_w, char *buf, size_t size) {
    const tg_plot_series *s = &plot->series[i];
    series_end e = find_end(plot, s);
    char name[LEGEND_NAME_CHARS * 4 + 8];
    for (size_t name_chars = LEGEND_NAME_CHARS; name_chars >= 8; name_chars--) {
        if (s->name && *s->name)
            tgi_shorten_middle(s->name, name_chars, name, sizeof name);
        else
            snprintf(name, sizeof name, "series %d", i + 1);
        if (e.blows_up)
            snprintf(buf, size, "%s (\xE2\x86\x92 %s at x=%s)", name, tgi_fmt_g(e.y_bad, 3).s,
                     tgi_fmt_g(e.x_bad, 6).s);
        else
            snprintf(buf, size, "%s", name);
        if (tgi_text_width(buf, FONT_LEGEND) <= max_w) return;
    }
}

/* Whether the segment from (x0, y0) to (x1, y1) passes through b (Liang-Barsky clipping). */
static bool segment_hits(double x0, double y0, double x1, double y1, box b) {
    double t0 = 0, t1 = 1, dx = x1 - x0, dy = y1 - y0;
    double p[4] = {-dx, dx, -dy, dy}, q[4] = {x0 - b.x0, b.x1 - x0, y0 - b.y0, b.y1 - y0};
    for (int k = 0; k < 4; k++) {
        if (p[k] == 0) {
            if (q[k] < 0) return false;
            continue;
        }
        double t = q[k] / p[k];
        if (p[k] < 0) {
            if (t > t1) return false;
            if (t > t0) t0 = t;
        } else {
            if (t < t0) return false;
            if (t < t1) t1 = t;
        }
    }
    return true;
}

/* Which of the boxes some drawn part of the data (line, lone point or end marker) touches. */
static void boxes_hit(const tg_line_plot *plot, const plot_axis *ax, const plot_axis *ay,
                      const box *boxes, int n_boxes, bool *hit) {
    for (int b = 0; b < n_boxes; b++) hit[b] = false;
    for (int k = 0; k < plot->n_series; k++) {
        const tg_plot_series *s = &plot->series[k];
        double px0 = 0, py0 = 0;
        bool prev = false;
        for (int64_t i = 0; i < s->n; i++) {
            double x, y;
            if (!series_point(plot, s, i, &x, &y)) {
                prev = false;
                continue;
            }
            double px1 = tgi_axis_px(ax, x), py1 = tgi_axis_px(ay, y);
            for (int b = 0; b < n_boxes; b++)
                if (!hit[b])
                    hit[b] = segment_hits(prev ? px0 : px1, prev ? py0 : py1, px1, py1, boxes[b]);
            px0 = px1;
            py0 = py1;
            prev = true;
        }
    }
}

/* A path through a series' drawn points, broken where a point is not drawn. */
typedef struct path_writer {
    FILE *out;
    int64_t seg_points;
} path_writer;

static void path_point(path_writer *w, double x, double y) {
    fprintf(w->out, "%c%s %s", w->seg_points ? 'L' : 'M', tgi_px(x).s, tgi_px(y).s);
    w->seg_points++;
}

static void path_break(path_writer *w) {
    w->seg_points = 0;
}

/* The points of one pixel column when downsampling: the first, lowest, highest and last. */
typedef struct column_bucket {
    bool used;
    double column;
    int64_t idx[4];
    double x[4], y[4];
} column_bucket;

static void bucket_flush(column_bucket *b, path_writer *w) {
    if (!b->used) return;
    int order[4] = {0, 1, 2, 3};
    for (int i = 1; i < 4; i++)
        for (int j = i; j > 0 && b->idx[order[j]] < b->idx[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    for (int i = 0; i < 4; i++)
        if (i == 0 || b->idx[order[i]] != b->idx[order[i - 1]])
            path_point(w, b->x[order[i]], b->y[order[i]]);
    b->used = false;
}

static void bucket_add(column_bucket *b, path_writer *w, int64_t i, double x, double y) {
    double column = floor(x);
    if (b->used && column != b->column) bucket_flush(b, w);
    if (!b->used) {
        b->used = true;
        b->column = column;
        for (int k = 0; k < 4; k++) b->idx[k] = i, b->x[k] = x, b->y[k] = y;
        return;
    }
    /* Slots: 0 first, 1 lowest on screen (largest pixel y), 2 highest, 3 last. */
    if (y > b->y[1]) b->idx[1] = i, b->x[1] = x, b->y[1] = y;
    if (y < b->y[2]) b->idx[2] = i, b->x[2] = x, b->y[2] = y;
    b->idx[3] = i, b->x[3] = x, b->y[3] = y;
}

static void draw_series(FILE *out, const tg_line_plot *plot, int k, const plot_axis *ax,
                        const plot_axis *ay) {
    const tg_plot_series *s = &plot->series[k];
    double x, y;
    int64_t first = 0;
    while (first < s->n && !series_point(plot, s, first, &x, &y)) first++;
    if (first == s->n) return;
    const char *dash = series_dash(plot, k);
    fprintf(out, "<path stroke=\"%s\"%s%s%s d=\"", series_colour(plot, k),
            *dash ? " stroke-dasharray=\"" : "", dash, *dash ? "\"" : "");
    path_writer w = {out, 0};
    column_bucket bucket = {0};
    bool downsample = s->n > DOWNSAMPLE_ABOVE;
    for (int64_t i = first; i < s->n; i++) {
        if (!series_point(plot, s, i, &x, &y)) {
            bucket_flush(&bucket, &w);
            path_break(&w);
            continue;
        }
        if (downsample)
            bucket_add(&bucket, &w, i, tgi_axis_px(ax, x), tgi_axis_px(ay, y));
        else
            path_point(&w, tgi_axis_px(ax, x), tgi_axis_px(ay, y));
    }
    bucket_flush(&bucket, &w);
    fputs("\"/>\n", out);
    /* A point with gaps on both sides draws no line: it gets a dot, or it would vanish. */
    bool prev = false, cur = series_point(plot, s, first, &x, &y);
    for (int64_t i = first; i < s->n; i++) {
        double nx = 0, ny = 0;
        bool next = i + 1 < s->n && series_point(plot, s, i + 1, &nx, &ny);
        if (cur && !prev && !next)
            fprintf(out, "<circle cx=\"%s\" cy=\"%s\" r=\"2.5\" fill=\"%s\" stroke=\"none\"/>\n",
                    tgi_px(tgi_axis_px(ax, x)).s, tgi_px(tgi_axis_px(ay, y)).s, series_colour(plot, k));
        prev = cur;
        cur = next;
        x = nx;
        y = ny;
    }
}

/* A small x at the last drawn point of a series that ends in NaN/Inf. */
static void draw_end_marker(FILE *out, const tg_line_plot *plot, int k, const plot_axis *ax,
                            const plot_axis *ay) {
    const tg_plot_series *s = &plot->series[k];
    series_end e = find_end(plot, s);
    double x, y;
    if (!e.blows_up || e.last_drawn < 0 || !series_point(plot, s, e.last_drawn, &x, &y)) return;
    double cx = tgi_axis_px(ax, x), cy = tgi_axis_px(ay, y), r = 4.5;
    fprintf(out, "<path class=\"nan-marker\" stroke=\"%s\" stroke-width=\"2.2\" "
            "d=\"M%s %sL%s %sM%s %sL%s %s\"/>\n", series_colour(plot, k),
            tgi_px(cx - r).s, tgi_px(cy - r).s, tgi_px(cx + r).s, tgi_px(cy + r).s, tgi_px(cx - r).s, tgi_px(cy + r).s,
            tgi_px(cx + r).s, tgi_px(cy - r).s);
}

typedef struct legend_layout {
    int rows;          /* entries shown; a further row says how many are left out */
    int hidden;
    double max_text_w; /* names are shortened to keep each entry's text within this */
    double x, y, w, h;
} legend_layout;

static bool plot_has_legend(const tg_line_plot *plot) {
    if (plot->n_series > 1) return true;
    if (plot->n_series == 0) return false;
    const tg_plot_series *s = &plot->series[0];
    return (s->name && *s->name) || find_end(plot, s).blows_up;
}

/* The legend's size for `available` pixels of height and at most max_w of width. */
static legend_layout legend_size(const tg_line_plot *plot, double available, double max_w) {
    legend_layout l = {.max_text_w = max_w - (8 + 26 + 6 + 8)};
    double widest = 0;
    char text[LEGEND_NAME_CHARS * 4 + 96];
    for (int i = 0; i < plot->n_series; i++) {
        legend_text(plot, i, l.max_text_w, text, sizeof text);
        widest = fmax(widest, tgi_text_width(text, FONT_LEGEND));
    }
    int fit = (int)((available - 8) / LEGEND_ROW);
    l.rows = plot->n_series;
    if (l.rows > fit) {
        l.rows = fit > 1 ? fit - 1 : 0;
        l.hidden = plot->n_series - l.rows;
        widest = fmax(widest, tgi_text_width("+ 0000 more", FONT_LEGEND));
    }
    l.w = 8 + 26 + 6 + widest + 8;
    l.h = 6 + LEGEND_ROW * (l.rows + (l.hidden > 0)) + 4;
    return l;
}

static void draw_legend(FILE *out, const tg_line_plot *plot, const legend_layout *l) {
    fprintf(out, "<rect x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"#fff\" "
            "fill-opacity=\"0.9\" stroke=\"#ccc\"/>\n", tgi_px(l->x).s, tgi_px(l->y).s, tgi_px(l->w).s,
            tgi_px(l->h).s);
    char text[LEGEND_NAME_CHARS * 4 + 96];
    fputs("<g font-size=\"12\" fill=\"#222\">\n", out);
    for (int i = 0; i < l->rows; i++) {
        double cy = l->y + 6 + LEGEND_ROW * (i + 0.5);
        const char *dash = series_dash(plot, i);
        fprintf(out, "<line x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\" stroke=\"%s\" "
                "stroke-width=\"2.5\"%s%s%s/>\n", tgi_px(l->x + 8).s, tgi_px(cy).s, tgi_px(l->x + 34).s,
                tgi_px(cy).s, series_colour(plot, i), *dash ? " stroke-dasharray=\"" : "",
                dash, *dash ? "\"" : "");
        legend_text(plot, i, l->max_text_w, text, sizeof text);
        tgi_put_text(out, l->x + 40, cy + FONT_LEGEND * 0.35, "", text, sizeof text);
    }
    if (l->hidden > 0) {
        snprintf(text, sizeof text, "+ %d more", l->hidden);
        tgi_put_text(out, l->x + 40, l->y + 6 + LEGEND_ROW * (l->rows + 0.5) + FONT_LEGEND * 0.35,
                 "fill=\"#666\"", text, sizeof text);
    }
    fputs("</g>\n", out);
}

/* The x axis along [area->x0, right_edge], ticks fitted; the area's right edge is moved in
 * when the last label, centred on its tick, would stick out past right_edge. */
static void place_x_axis(plot_axis *ax, box *area, double right_edge) {
    for (int attempt = 0; attempt < 2; attempt++) {
        area->x1 = fmax(right_edge, area->x0 + 20);
        ax->px_lo = area->x0;
        ax->px_hi = area->x1;
        tgi_fit_ticks(ax, false, 55);
        double overhang = 0;
        for (int i = ax->n_ticks - 1; i >= 0; i--) {
            if (!ax->ticks[i].label[0]) continue;
            overhang = tgi_axis_px(ax, ax->ticks[i].at) + tgi_text_width(ax->ticks[i].label, FONT_TICK) / 2
                       + 4 - right_edge;
            break;
        }
        if (overhang <= 0) return;
        right_edge -= overhang;
    }
}

/* Puts the legend inside, in the first corner the data leaves free (top-right, top-left,
 * bottom-right, bottom-left), or outside on the right when every corner is taken or the legend
 * is too big to sit on the data; the plot area then narrows. */
static void place_legend(const tg_line_plot *plot, int width, plot_axis *ax, const plot_axis *ay,
                         box *area, legend_layout *legend, bool has_data) {
    double in = 8, w = legend->w, h = legend->h;
    box corners[4] = {
        {area->x1 - in - w, area->y0 + in, area->x1 - in, area->y0 + in + h},
        {area->x0 + in, area->y0 + in, area->x0 + in + w, area->y0 + in + h},
        {area->x1 - in - w, area->y1 - in - h, area->x1 - in, area->y1 - in},
        {area->x0 + in, area->y1 - in - h, area->x0 + in + w, area->y1 - in},
    };
    bool too_big = w > (area->x1 - area->x0) * 0.6 || h > (area->y1 - area->y0) * 0.7;
    /* First a corner where the data keeps a few pixels clear of the legend, then one where it
     * only comes close. */
    for (double margin = 4; margin >= 0 && !too_big; margin -= 4) {
        bool hit[4] = {false, false, false, false};
        box grown[4];
        for (int c = 0; c < 4; c++)
            grown[c] = (box){corners[c].x0 - margin, corners[c].y0 - margin,
                             corners[c].x1 + margin, corners[c].y1 + margin};
        if (has_data) boxes_hit(plot, ax, ay, grown, 4, hit);
        for (int c = 0; c < 4; c++) {
            if (hit[c]) continue;
            legend->x = corners[c].x0;
            legend->y = corners[c].y0;
            return;
        }
    }
    if (has_data)
        place_x_axis(ax, area, width - 10 - w - 12);
    else
        area->x1 = fmax(width - 10 - w - 12, area->x0 + 20);
    legend->x = area->x1 + 12;
    legend->y = area->y0;
}

static void draw_no_data(FILE *out, box area) {
    tgi_put_text(out, (area.x0 + area.x1) / 2, (area.y0 + area.y1) / 2 + 5,
             "text-anchor=\"middle\" font-size=\"13\" fill=\"#777\"", "no finite data", 40);
}

tg_status tg_svg_line_plot(FILE *out, const tg_line_plot *plot) {
    if (!out || !plot || plot->n_series < 0 || (plot->n_series > 0 && !plot->series) ||
        plot->width < 0 || plot->height < 0)
        return TG_ERR_INVALID;
    bool integer_x = true;
    for (int k = 0; k < plot->n_series; k++) {
        const tg_plot_series *s = &plot->series[k];
        if (s->n < 0 || (s->n > 0 && !s->y)) return TG_ERR_INVALID;
        if (s->x) integer_x = false;
    }
    int width = plot->width ? plot->width : DEFAULT_WIDTH;
    int height = plot->height ? plot->height : DEFAULT_HEIGHT;

    plot_axis ax = {.log = plot->log_x, .integer = integer_x && !plot->log_x};
    plot_axis ay = {.log = plot->log_y};
    span sx = {0}, sy = {0};
    for (int k = 0; k < plot->n_series; k++) {
        for (int64_t i = 0; i < plot->series[k].n; i++) {
            double x, y;
            if (!series_point(plot, &plot->series[k], i, &x, &y)) continue;
            tgi_span_add(&sx, x);
            tgi_span_add(&sy, y);
        }
    }
    bool has_data = sx.any;
    tgi_axis_set_range(&ax, sx, 0.03);
    tgi_axis_set_range(&ay, sy, 0.05);

    /* Vertical layout first: the y ticks decide the left margin, which the x axis needs. */
    bool titled = plot->title && *plot->title;
    box area = {0, titled ? 34 : 12, 0, height - (plot->x_label && *plot->x_label ? 44 : 26)};
    if (area.y1 < area.y0 + 20) area.y1 = area.y0 + 20;
    ay.px_lo = area.y1;
    ay.px_hi = area.y0;
    if (has_data) tgi_fit_ticks(&ay, true, 34);
    area.x0 = (plot->y_label && *plot->y_label ? 26 : 8) + tgi_widest_label(&ay, FONT_TICK) + 9;

    legend_layout legend = {0};
    bool with_legend = plot_has_legend(plot);
    if (with_legend) legend = legend_size(plot, area.y1 - area.y0 - 10, fmax(width * 0.45, 160));
    if (has_data)
        place_x_axis(&ax, &area, width - 14);
    else
        area.x1 = fmax(width - 14, area.x0 + 20);
    if (with_legend) place_legend(plot, width, &ax, &ay, &area, &legend, has_data);

    tgi_svg_open(out, width, height, plot->title);
    if (has_data) {
        tgi_draw_axis(out, &ay, SIDE_LEFT, area.x0, area.x1, true);
        tgi_draw_axis(out, &ax, SIDE_BOTTOM, area.y0, area.y1, true);
    }
    tgi_draw_frame(out, area);
    if (has_data) {
        fputs("<g fill=\"none\" stroke-width=\"1.8\" stroke-linejoin=\"round\" "
              "stroke-linecap=\"round\">\n", out);
        for (int k = 0; k < plot->n_series; k++) draw_series(out, plot, k, &ax, &ay);
        for (int k = 0; k < plot->n_series; k++) draw_end_marker(out, plot, k, &ax, &ay);
        fputs("</g>\n", out);
    } else {
        draw_no_data(out, area);
    }
    tgi_draw_titles(out, width, height, plot->x_label, plot->y_label, area);
    if (with_legend) draw_legend(out, plot, &legend);
    return tgi_svg_close(out);
}
