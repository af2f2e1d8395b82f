/*
 * diagnostics/svg.h — what the SVG charts share (diagnostics/svg.c): numbers and text written
 * for SVG (locale-free coordinates, compact numbers, escaped and fitted text), the document,
 * and axes (ranges, linear and log ticks that do not collide, drawn on any side). The line plot
 * (line_plot.c) and the heatmap (heatmap.c) are built from these.
 *
 * The writers allocate nothing: every pass streams over the caller's arrays, so there is no
 * context to report to and a failure is only a status. The output is pure ASCII (text outside
 * ASCII is written as character references) and uses no element ids, so any number of charts
 * can be inlined in one page whatever its declared encoding.
 */
#ifndef TAPEGRAD_SVG_H
#define TAPEGRAD_SVG_H

#include "autograd/internal.h"

#include <stdio.h>

#define DEFAULT_WIDTH 640
#define DEFAULT_HEIGHT 360

#define FONT_LABEL 13.0
#define FONT_TICK 11.0

#define MAX_TICKS 80

typedef struct num_text {
    char s[40];
} num_text;

typedef struct box {
    double x0, y0, x1, y1;
} box;

typedef struct plot_tick {
    double at;        /* axis space: the value, or its log10 on a log axis */
    char label[40];   /* "": a minor tick (mark only, no grid line) */
} plot_tick;

typedef struct plot_axis {
    bool log;
    bool integer;     /* values are indices: no ticks between whole numbers */
    double lo, hi;    /* axis space */
    double px_lo, px_hi;
    int n_ticks;
    plot_tick ticks[MAX_TICKS];
} plot_axis;

/* The extent of the data, in axis space. */
typedef struct span {
    double lo, hi;
    bool any;
} span;

typedef enum axis_side { SIDE_BOTTOM, SIDE_LEFT, SIDE_RIGHT } axis_side;

/* A coordinate rounded to 0.1 px, written without the locale (LC_NUMERIC could turn the point
 * into a comma) and without a trailing ".0". Clamped so that no value can produce "inf". */
TGI_HIDDEN num_text tgi_px(double v);

/* A number for a reader, compact (%.*g; see fmt_num in svg.c). */
TGI_HIDDEN num_text tgi_fmt_g(double v, int precision);

/* Copies s, cut to max_chars characters by an ellipsis in the middle: names of layers and
 * parameters often differ only at the end ("...attn.q.weight", "...attn.k.weight"). */
TGI_HIDDEN void tgi_shorten_middle(const char *s, size_t max_chars, char *buf, size_t size);

/* The width of s in pixels at font-size font (ASCII by measured advances, the rest estimated). */
TGI_HIDDEN double tgi_text_width(const char *s, double font);

/* <text x y attrs>s</text>; attrs may be "" and is written as is. */
TGI_HIDDEN void tgi_put_text(FILE *out, double x, double y, const char *attrs, const char *s,
                             size_t max_chars);

/* Text turned to read bottom to top, centred on (x, y). */
TGI_HIDDEN void tgi_put_vertical_text(FILE *out, double x, double y, const char *attrs,
                                      const char *s, size_t max_chars);

/* A thin grey line from (x0, y0) to (x1, y1). */
TGI_HIDDEN void tgi_put_line(FILE *out, double x0, double y0, double x1, double y1);

/* How many characters of s fit in `pixels` at font-size `font`, the ellipsis of a cut included
 * (at least a few, so that something recognisable is left of a long label on a tiny chart). */
TGI_HIDDEN size_t tgi_chars_fitting(const char *s, double pixels, double font);

/* The <svg> element, its white background and its title (NULL or "": none). */
TGI_HIDDEN void tgi_svg_open(FILE *out, int width, int height, const char *title);

/* fflush as well as ferror: a stream in full buffering (fmemopen, files) only fails when the
 * buffer is written. */
TGI_HIDDEN tg_status tgi_svg_close(FILE *out);

/* Widens s to take v (axis space). */
TGI_HIDDEN void tgi_span_add(span *s, double v);

/* A linear range is kept within +-1e300 so that hi - lo and the padding stay finite. */
TGI_HIDDEN double tgi_to_axis(double v, bool log);

/* Where axis-space value `at` lies in pixels. */
TGI_HIDDEN double tgi_axis_px(const plot_axis *a, double at);

/* The axis range: the data's extent with `pad` of it added at both ends. A constant gets a range
 * around it (half a decade either side on a log axis, 10 % of its size on a linear one). */
TGI_HIDDEN void tgi_axis_set_range(plot_axis *a, span s, double pad);

/* The most ticks (up to about one per `spacing` pixels, at most 8 on a log axis) whose labels
 * do not collide. */
TGI_HIDDEN void tgi_fit_ticks(plot_axis *a, bool vertical, double spacing);

/* The widest tick label of a, in pixels at font-size font. */
TGI_HIDDEN double tgi_widest_label(const plot_axis *a, double font);

/* Tick marks and labels on one side of the box [lo, hi] across the axis (the plot area, or the
 * colour bar), and grid lines through the box for the labelled ticks. */
TGI_HIDDEN void tgi_draw_axis(FILE *out, const plot_axis *a, axis_side side, double lo, double hi,
                              bool grid);

/* The x label under the area and the y label turned up beside it (NULL or "": none). */
TGI_HIDDEN void tgi_draw_titles(FILE *out, int width, int height, const char *x_label,
                                const char *y_label, box area);

/* The area's outline. */
TGI_HIDDEN void tgi_draw_frame(FILE *out, box area);

#endif
