/*
 * diagnostics/plot.c — line charts and heatmaps as self-contained SVG, for reports a person
 * reads in a browser (inlined in an HTML page).
 *
 * The writers allocate nothing: every pass streams over the caller's arrays, so there is no
 * context to report to and a failure is only a status. The output is pure ASCII (text outside
 * ASCII is written as character references) and uses no element ids, so any number of charts
 * can be inlined in one page whatever its declared encoding.
 */
#include "autograd/internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_WIDTH 640
#define DEFAULT_HEIGHT 360

#define FONT_TITLE 15.0
#define FONT_LABEL 13.0
#define FONT_TICK 11.0
#define FONT_LEGEND 12.0
/* Advance of a character outside ASCII per pixel of font size (ASCII: see ascii_widths). */
#define GLYPH_WIDTH 0.6

#define MAX_TICKS 80
/* Above this many points a series is reduced to first/min/max/last per pixel column: the drawn
 * line looks the same (spikes survive) and the file stays small. */
#define DOWNSAMPLE_ABOVE 2000
#define LEGEND_ROW 17.0
#define LEGEND_NAME_CHARS 32
#define NO_VALUE_GREY "#bdbdbd"
#define NO_VALUE_NOTE "grey: no value/NaN"
#define ROW_NAME_CHARS 24
#define COLOUR_BAR_STEPS 64

/* ---- text and numbers ---------------------------------------------------------------------- */

typedef struct num_text {
    char s[40];
} num_text;

/* A coordinate rounded to 0.1 px, written without the locale (LC_NUMERIC could turn the point
 * into a comma) and without a trailing ".0". Clamped so that no value can produce "inf". */
static num_text px(double v) {
    num_text r;
    if (!(v > -1e6)) v = -1e6;
    if (v > 1e6) v = 1e6;
    long tenths = lround(v * 10.0), mag = labs(tenths);
    const char *sign = tenths < 0 ? "-" : "";
    if (mag % 10)
        snprintf(r.s, sizeof r.s, "%s%ld.%ld", sign, mag / 10, mag % 10);
    else
        snprintf(r.s, sizeof r.s, "%s%ld", sign, mag / 10);
    return r;
}

/* A number for a reader: %.*g, or with `sci` %.*e, made compact: "1e6" rather than "1e+06",
 * "2.5e-5" rather than "2.50e-05", never "-0", a '.' whatever the locale, and words for the
 * non-finite values. */
static num_text fmt_num(double v, int precision, bool sci) {
    num_text r;
    if (isnan(v) || isinf(v)) {
        snprintf(r.s, sizeof r.s, "%s", isnan(v) ? "NaN" : v > 0 ? "Inf" : "-Inf");
        return r;
    }
    if (v == 0.0) {
        snprintf(r.s, sizeof r.s, "0");
        return r;
    }
    char tmp[40];
    snprintf(tmp, sizeof tmp, sci ? "%.*e" : "%.*g", precision, v);
    char *e = strchr(tmp, 'e');
    size_t mantissa = e ? (size_t)(e - tmp) : strlen(tmp);
    for (size_t i = 0; i < mantissa; i++)
        if (tmp[i] == ',') tmp[i] = '.';
    if (memchr(tmp, '.', mantissa)) {
        while (tmp[mantissa - 1] == '0') mantissa--;
        if (tmp[mantissa - 1] == '.') mantissa--;
    }
    memcpy(r.s, tmp, mantissa);
    size_t o = mantissa;
    if (e) {
        const char *p = e + 1;
        r.s[o++] = 'e';
        if (*p == '-') r.s[o++] = '-';
        if (*p == '-' || *p == '+') p++;
        while (*p == '0' && p[1]) p++;
        while (*p && o + 1 < sizeof r.s) r.s[o++] = *p++;
    }
    r.s[o] = '\0';
    return r;
}

static num_text fmt_g(double v, int precision) {
    return fmt_num(v, precision, false);
}

/* Decodes one UTF-8 character; an invalid byte comes back as U+FFFD (one byte consumed). */
static unsigned long utf8_next(const unsigned char **p) {
    const unsigned char *s = *p;
    unsigned long c = s[0];
    int extra = c >= 0xF0 && c < 0xF8 ? 3 : c >= 0xE0 ? 2 : c >= 0xC2 ? 1 : 0;
    if (c < 0x80 || (extra == 0)) {
        *p = s + 1;
        return c < 0x80 ? c : 0xFFFD;
    }
    unsigned long cp = c & (0x3Fu >> extra);
    for (int i = 1; i <= extra; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *p = s + 1;
            return 0xFFFD;
        }
        cp = cp << 6 | (s[i] & 0x3Fu);
    }
    *p = s + 1 + extra;
    return cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) ? 0xFFFD : cp;
}

static size_t text_chars(const char *s) {
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; n++) utf8_next(&p);
    return n;
}

/* The byte offset of character `index` of s. */
static size_t char_offset(const char *s, size_t index) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t n = 0; *p && n < index; n++) utf8_next(&p);
    return (size_t)(p - (const unsigned char *)s);
}

/* Copies s, cut to max_chars characters by an ellipsis in the middle: names of layers and
 * parameters often differ only at the end ("...attn.q.weight", "...attn.k.weight"). */
static void shorten_middle(const char *s, size_t max_chars, char *buf, size_t size) {
    size_t n = text_chars(s);
    if (n <= max_chars || max_chars < 3) {
        snprintf(buf, size, "%s", s);
        return;
    }
    size_t head = (max_chars - 1) / 2, tail = max_chars - 1 - head;
    snprintf(buf, size, "%.*s\xE2\x80\xA6%s", (int)char_offset(s, head), s,
             s + char_offset(s, n - tail));
}

/* Advances of ASCII 32..126 in thousandths of the font size, from Helvetica's metrics (Arial and
 * Liberation Sans share them), so that label boxes can be laid out before the browser measures
 * them. */
static const short ascii_widths[95] = {
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722,
    722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722,
    667, 944, 667, 667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556, 556, 278, 556,
    556, 222, 222, 500, 222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500,
    500, 334, 260, 334, 584,
};

/* The estimated advance of character c in pixels; 8 % over Helvetica's, because the sans-serif
 * a browser picks (DejaVu Sans on many Linux systems) may be wider. */
static double glyph_width(unsigned long c, double font) {
    return (c >= 32 && c <= 126 ? ascii_widths[c - 32] / 1000.0 : GLYPH_WIDTH) * font * 1.08;
}

static double text_width(const char *s, double font) {
    double w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p;)
        w += glyph_width(utf8_next(&p), font);
    return w;
}

/* Writes s as XML character data: markup characters escaped, control characters (not allowed
 * in XML) as spaces, non-ASCII as character references. More than max_chars characters are cut
 * to max_chars - 1 and an ellipsis. */
static void put_escaped(FILE *out, const char *s, size_t max_chars) {
    bool cut = text_chars(s) > max_chars;
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; n++) {
        if (cut && n + 1 >= max_chars) {
            fputs("&#8230;", out);
            return;
        }
        unsigned long c = utf8_next(&p);
        switch (c) {
        case '&': fputs("&amp;", out); break;
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '"': fputs("&quot;", out); break;
        default:
            if (c < 0x20 || c == 0x7F)
                fputc(' ', out);
            else if (c < 0x80)
                fputc((int)c, out);
            else
                fprintf(out, "&#%lu;", c);
        }
    }
}

/* <text x y attrs>s</text>; attrs may be "" and is written as is. */
static void put_text(FILE *out, double x, double y, const char *attrs, const char *s,
                     size_t max_chars) {
    fprintf(out, "<text x=\"%s\" y=\"%s\"%s%s>", px(x).s, px(y).s, *attrs ? " " : "", attrs);
    put_escaped(out, s, max_chars);
    fputs("</text>\n", out);
}

/* Text turned to read bottom to top, centred on (x, y). */
static void put_vertical_text(FILE *out, double x, double y, const char *attrs, const char *s,
                              size_t max_chars) {
    fprintf(out, "<text transform=\"translate(%s %s) rotate(-90)\" text-anchor=\"middle\" %s>",
            px(x).s, px(y).s, attrs);
    put_escaped(out, s, max_chars);
    fputs("</text>\n", out);
}

static void put_line(FILE *out, double x0, double y0, double x1, double y1) {
    fprintf(out, "<line x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>\n", px(x0).s, px(y0).s,
            px(x1).s, px(y1).s);
}

/* How many characters of s fit in `pixels` at font-size `font`, the ellipsis of a cut included
 * (at least a few, so that something recognisable is left of a long label on a tiny chart). */
static size_t chars_fitting(const char *s, double pixels, double font) {
    if (text_width(s, font) <= pixels) return text_chars(s);
    double ellipsis = glyph_width(0x2026, font), used = 0;
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; n++) {
        used += glyph_width(utf8_next(&p), font);
        if (used + ellipsis > pixels) break;
    }
    return n < 4 ? 4 : n + 1;
}

static void svg_open(FILE *out, int width, int height, const char *title) {
    fprintf(out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" role=\"img\">\n",
            width, height, width, height);
    if (title && *title) {
        /* The accessible name, and the tooltip of the chart. */
        fputs("<title>", out);
        put_escaped(out, title, 400);
        fputs("</title>\n", out);
    }
    fputs("<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n", out);
    if (title && *title)
        put_text(out, width / 2.0, 22,
                 "text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\" fill=\"#222\"",
                 title, chars_fitting(title, width - 16, FONT_TITLE * 1.08));
}

/* fflush as well as ferror: a stream in full buffering (fmemopen, files) only fails when the
 * buffer is written. */
static tg_status svg_close(FILE *out) {
    fputs("</svg>\n", out);
    return fflush(out) != 0 || ferror(out) ? TG_ERR_IO : TG_OK;
}

/* ---- axes ---------------------------------------------------------------------------------- */

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

static void span_add(span *s, double v) {
    if (!s->any || v < s->lo) s->lo = v;
    if (!s->any || v > s->hi) s->hi = v;
    s->any = true;
}

/* A linear range is kept within +-1e300 so that hi - lo and the padding stay finite. */
static double to_axis(double v, bool log) {
    if (log) return log10(v);
    return v > 1e300 ? 1e300 : v < -1e300 ? -1e300 : v;
}

static double axis_px(const plot_axis *a, double at) {
    return a->px_lo + (at - a->lo) / (a->hi - a->lo) * (a->px_hi - a->px_lo);
}

/* The axis range: the data's extent with `pad` of it added at both ends. A constant gets a range
 * around it (half a decade either side on a log axis, 10 % of its size on a linear one). */
static void axis_set_range(plot_axis *a, span s, double pad) {
    double lo = s.any ? s.lo : 0.0, hi = s.any ? s.hi : 1.0;
    double scale = fmax(fabs(lo), fabs(hi));
    if (hi - lo <= scale * 1e-12) {
        double half = a->log ? 0.5 : scale > 0 ? scale * 0.1 : 1.0;
        lo -= half;
        hi += half;
    } else {
        double d = (hi - lo) * pad;
        lo -= d;
        hi += d;
    }
    a->lo = lo;
    a->hi = hi;
}

static void add_tick(plot_axis *a, double at, const char *label) {
    if (a->n_ticks >= MAX_TICKS) return;
    a->ticks[a->n_ticks].at = at;
    snprintf(a->ticks[a->n_ticks].label, sizeof a->ticks[0].label, "%s", label);
    a->n_ticks++;
}

/* 1, 2 or 5 times a power of ten, the smallest with at most max_n steps in [lo, hi]. */
static double nice_step(double lo, double hi, int max_n, bool integer) {
    double raw = (hi - lo) / (max_n > 1 ? max_n : 1);
    double mag = pow(10.0, floor(log10(raw)));
    double r = raw / mag;
    double step = (r <= 1.0 ? 1.0 : r <= 2.0 ? 2.0 : r <= 5.0 ? 5.0 : 10.0) * mag;
    return integer && step < 1.0 ? 1.0 : step;
}

/* Ticks at the multiples of a nice step of the values in [v_lo, v_hi]; on a log axis they are
 * placed at log10 of the value (used when the range is too short for decades). */
static void linear_ticks(plot_axis *a, double v_lo, double v_hi, int max_n) {
    a->n_ticks = 0;
    if (!(v_hi > v_lo) || !isfinite(v_hi - v_lo)) return;
    double step = nice_step(v_lo, v_hi, max_n, a->integer);
    double k0 = ceil(v_lo / step - 1e-9), k1 = floor(v_hi / step + 1e-9);
    if (!(k1 - k0 < MAX_TICKS)) return;
    double max_abs = fmax(fabs(k0 * step), fabs(k1 * step));
    /* Enough digits to tell neighbouring ticks apart; and integers up to 1e6 are written out
     * (1500, not 1.5e3) because that is how step counts are read. */
    int digits = max_abs > 0 ? (int)floor(log10(max_abs)) - (int)floor(log10(step)) + 1 : 1;
    if (max_abs >= 1 && max_abs < 1e6) {
        int int_digits = (int)floor(log10(max_abs)) + 1;
        if (int_digits > digits) digits = int_digits;
    }
    digits = digits < 3 ? 3 : digits > 17 ? 17 : digits;
    /* Very large or small values all in exponent form, with the decimals the step needs, rather
     * than %g's mix of "0.0001" and "5e-5" on one axis. */
    bool sci = max_abs >= 1e6 || (max_abs > 0 && max_abs < 1e-3);
    int decimals = max_abs > 0 ? (int)floor(log10(max_abs)) - (int)floor(log10(step)) : 0;
    decimals = decimals < 0 ? 0 : decimals > 16 ? 16 : decimals;
    for (double k = k0; k <= k1; k++) {
        double v = k * step;
        if (fabs(v) < step * 1e-9) v = 0.0;
        if (a->log && !(v > 0)) continue;
        add_tick(a, a->log ? log10(v) : v, fmt_num(v, sci ? decimals : digits, sci).s);
    }
}

/* Log axis: one labelled tick per decade, written 1e-3, thinned to every 2nd, 3rd, 5th, ...
 * decade (the others keep an unlabelled mark); a range of fewer than three decades gets 1-2-5
 * ticks, and one too short for those linear ticks. */
static void log_ticks(plot_axis *a, int max_n) {
    a->n_ticks = 0;
    double d0 = ceil(a->lo - 1e-9), d1 = floor(a->hi + 1e-9), decades = d1 - d0 + 1;
    if (decades >= 3) {
        static const int every[] = {1, 2, 3, 5, 10, 20, 25, 50, 100, 200};
        int k = every[sizeof every / sizeof every[0] - 1];
        for (size_t i = 0; i < sizeof every / sizeof every[0]; i++) {
            /* Multiples of every[i] in [d0, d1]. */
            double n = floor(d1 / every[i]) - ceil(d0 / every[i]) + 1;
            if (n <= max_n) {
                k = every[i];
                break;
            }
        }
        bool minor = decades <= 60;
        for (double d = d0; d <= d1; d++) {
            bool major = fmod(d, k) == 0;
            if (!major && !minor) continue;
            char label[40] = "";
            if (major) snprintf(label, sizeof label, "1e%d", (int)d);
            add_tick(a, d, label);
        }
        return;
    }
    static const double mantissas[] = {1, 2, 5};
    for (int pass = 0; pass < 2; pass++) {
        a->n_ticks = 0;
        for (double e = floor(a->lo); e <= ceil(a->hi); e++) {
            for (int m = 0; m < (pass == 0 ? 3 : 1); m++) {
                double at = e + log10(mantissas[m]);
                if (at >= a->lo - 1e-9 && at <= a->hi + 1e-9)
                    add_tick(a, at, fmt_g(mantissas[m] * pow(10.0, e), 3).s);
            }
        }
        if (a->n_ticks >= 2 && a->n_ticks <= max_n) return;
    }
    linear_ticks(a, pow(10.0, a->lo), pow(10.0, a->hi), max_n);
}

static void make_ticks(plot_axis *a, int max_n) {
    if (a->log)
        log_ticks(a, max_n);
    else
        linear_ticks(a, a->lo, a->hi, max_n);
}

/* Whether neighbouring labels keep clear of each other along the axis. */
static bool labels_fit(const plot_axis *a, bool vertical, double font) {
    double prev = 0, prev_half = 0;
    bool have_prev = false;
    for (int i = 0; i < a->n_ticks; i++) {
        if (!a->ticks[i].label[0]) continue;
        double at = axis_px(a, a->ticks[i].at);
        double half = vertical ? font * 0.6 : text_width(a->ticks[i].label, font) / 2;
        if (have_prev && fabs(at - prev) < prev_half + half + (vertical ? 4 : 10)) return false;
        prev = at;
        prev_half = half;
        have_prev = true;
    }
    return true;
}

/* The most ticks (up to about one per `spacing` pixels, at most 8 on a log axis) whose labels
 * do not collide. */
static void fit_ticks(plot_axis *a, bool vertical, double spacing) {
    int max_n = (int)(fabs(a->px_hi - a->px_lo) / spacing);
    if (max_n < 2) max_n = 2;
    if (max_n > (a->log ? 8 : 12)) max_n = a->log ? 8 : 12;
    for (; max_n >= 2; max_n--) {
        make_ticks(a, max_n);
        if (labels_fit(a, vertical, FONT_TICK)) return;
    }
    make_ticks(a, 1);
}

static double widest_label(const plot_axis *a, double font) {
    double w = 0;
    for (int i = 0; i < a->n_ticks; i++) w = fmax(w, text_width(a->ticks[i].label, font));
    return w;
}

typedef enum axis_side { SIDE_BOTTOM, SIDE_LEFT, SIDE_RIGHT } axis_side;

/* Tick marks and labels on one side of the box [lo, hi] across the axis (the plot area, or the
 * colour bar), and grid lines through the box for the labelled ticks. */
static void draw_axis(FILE *out, const plot_axis *a, axis_side side, double lo, double hi,
                      bool grid) {
    if (grid) {
        fputs("<g stroke=\"#e6e6e6\" stroke-width=\"1\">\n", out);
        for (int i = 0; i < a->n_ticks; i++) {
            if (!a->ticks[i].label[0]) continue;
            double p = axis_px(a, a->ticks[i].at);
            if (side == SIDE_BOTTOM)
                put_line(out, p, lo, p, hi);
            else
                put_line(out, lo, p, hi, p);
        }
        fputs("</g>\n", out);
    }
    fputs("<g stroke=\"#555\" stroke-width=\"1\">\n", out);
    for (int i = 0; i < a->n_ticks; i++) {
        double p = axis_px(a, a->ticks[i].at), len = a->ticks[i].label[0] ? 5 : 3;
        if (side == SIDE_BOTTOM)
            put_line(out, p, hi, p, hi + len);
        else if (side == SIDE_LEFT)
            put_line(out, lo - len, p, lo, p);
        else
            put_line(out, hi, p, hi + len, p);
    }
    static const char *const anchors[] = {"middle", "end", "start"};
    fprintf(out, "</g>\n<g font-size=\"11\" fill=\"#333\" text-anchor=\"%s\">\n",
            anchors[side]);
    for (int i = 0; i < a->n_ticks; i++) {
        if (!a->ticks[i].label[0]) continue;
        double p = axis_px(a, a->ticks[i].at);
        if (side == SIDE_BOTTOM)
            put_text(out, p, hi + 7 + FONT_TICK, "", a->ticks[i].label, 40);
        else if (side == SIDE_LEFT)
            put_text(out, lo - 8, p + FONT_TICK * 0.35, "", a->ticks[i].label, 40);
        else
            put_text(out, hi + 8, p + FONT_TICK * 0.35, "", a->ticks[i].label, 40);
    }
    fputs("</g>\n", out);
}

/* ---- line plot ----------------------------------------------------------------------------- */

/* Okabe & Ito's colour-blind-safe palette, most distinct first, with grey in place of its
 * yellow (#F0E442), which is barely visible as a thin line on white. Past eight series the
 * dash pattern changes. */
static const char *const line_colours[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                           "#E69F00", "#56B4E9", "#000000", "#999999"};
static const char *const line_dashes[] = {"", "7 4", "2 3", "9 3 2 3"};
#define N_COLOURS ((int)(sizeof line_colours / sizeof line_colours[0]))
#define N_DASHES ((int)(sizeof line_dashes / sizeof line_dashes[0]))

static const char *series_dash(int i) {
    return line_dashes[(i / N_COLOURS) % N_DASHES];
}

typedef struct box {
    double x0, y0, x1, y1;
} box;

/* Point i in axis space; false when it is not drawn (non-finite, or <= 0 on a log axis). */
static bool series_point(const tg_line_plot *plot, const tg_plot_series *s, int64_t i,
                         double *x, double *y) {
    double vx = s->x ? s->x[i] : (double)i, vy = s->y[i];
    if (!isfinite(vx) || !isfinite(vy)) return false;
    if ((plot->log_x && !(vx > 0)) || (plot->log_y && !(vy > 0))) return false;
    *x = to_axis(vx, plot->log_x);
    *y = to_axis(vy, plot->log_y);
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
            shorten_middle(s->name, name_chars, name, sizeof name);
        else
            snprintf(name, sizeof name, "series %d", i + 1);
        if (e.blows_up)
            snprintf(buf, size, "%s (\xE2\x86\x92 %s at x=%s)", name, fmt_g(e.y_bad, 3).s,
                     fmt_g(e.x_bad, 6).s);
        else
            snprintf(buf, size, "%s", name);
        if (text_width(buf, FONT_LEGEND) <= max_w) return;
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
            double px1 = axis_px(ax, x), py1 = axis_px(ay, y);
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
    fprintf(w->out, "%c%s %s", w->seg_points ? 'L' : 'M', px(x).s, px(y).s);
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
    const char *dash = series_dash(k);
    fprintf(out, "<path stroke=\"%s\"%s%s%s d=\"", line_colours[k % N_COLOURS],
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
            bucket_add(&bucket, &w, i, axis_px(ax, x), axis_px(ay, y));
        else
            path_point(&w, axis_px(ax, x), axis_px(ay, y));
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
                    px(axis_px(ax, x)).s, px(axis_px(ay, y)).s, line_colours[k % N_COLOURS]);
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
    double cx = axis_px(ax, x), cy = axis_px(ay, y), r = 4.5;
    fprintf(out, "<path class=\"nan-marker\" stroke=\"%s\" stroke-width=\"2.2\" "
            "d=\"M%s %sL%s %sM%s %sL%s %s\"/>\n", line_colours[k % N_COLOURS],
            px(cx - r).s, px(cy - r).s, px(cx + r).s, px(cy + r).s, px(cx - r).s, px(cy + r).s,
            px(cx + r).s, px(cy - r).s);
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
        widest = fmax(widest, text_width(text, FONT_LEGEND));
    }
    int fit = (int)((available - 8) / LEGEND_ROW);
    l.rows = plot->n_series;
    if (l.rows > fit) {
        l.rows = fit > 1 ? fit - 1 : 0;
        l.hidden = plot->n_series - l.rows;
        widest = fmax(widest, text_width("+ 0000 more", FONT_LEGEND));
    }
    l.w = 8 + 26 + 6 + widest + 8;
    l.h = 6 + LEGEND_ROW * (l.rows + (l.hidden > 0)) + 4;
    return l;
}

static void draw_legend(FILE *out, const tg_line_plot *plot, const legend_layout *l) {
    fprintf(out, "<rect x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"#fff\" "
            "fill-opacity=\"0.9\" stroke=\"#ccc\"/>\n", px(l->x).s, px(l->y).s, px(l->w).s,
            px(l->h).s);
    char text[LEGEND_NAME_CHARS * 4 + 96];
    fputs("<g font-size=\"12\" fill=\"#222\">\n", out);
    for (int i = 0; i < l->rows; i++) {
        double cy = l->y + 6 + LEGEND_ROW * (i + 0.5);
        const char *dash = series_dash(i);
        fprintf(out, "<line x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\" stroke=\"%s\" "
                "stroke-width=\"2.5\"%s%s%s/>\n", px(l->x + 8).s, px(cy).s, px(l->x + 34).s,
                px(cy).s, line_colours[i % N_COLOURS], *dash ? " stroke-dasharray=\"" : "",
                dash, *dash ? "\"" : "");
        legend_text(plot, i, l->max_text_w, text, sizeof text);
        put_text(out, l->x + 40, cy + FONT_LEGEND * 0.35, "", text, sizeof text);
    }
    if (l->hidden > 0) {
        snprintf(text, sizeof text, "+ %d more", l->hidden);
        put_text(out, l->x + 40, l->y + 6 + LEGEND_ROW * (l->rows + 0.5) + FONT_LEGEND * 0.35,
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
        fit_ticks(ax, false, 55);
        double overhang = 0;
        for (int i = ax->n_ticks - 1; i >= 0; i--) {
            if (!ax->ticks[i].label[0]) continue;
            overhang = axis_px(ax, ax->ticks[i].at) + text_width(ax->ticks[i].label, FONT_TICK) / 2
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

static void draw_titles(FILE *out, int width, int height, const char *x_label,
                        const char *y_label, box area) {
    const char *attrs = "font-size=\"13\" fill=\"#222\"";
    if (x_label && *x_label) {
        char a[80];
        snprintf(a, sizeof a, "text-anchor=\"middle\" %s", attrs);
        put_text(out, (area.x0 + area.x1) / 2, height - 9, a, x_label,
                 chars_fitting(x_label, width - 8, FONT_LABEL));
    }
    if (y_label && *y_label)
        put_vertical_text(out, 15, (area.y0 + area.y1) / 2, attrs, y_label,
                          chars_fitting(y_label, area.y1 - area.y0 + 20, FONT_LABEL));
}

static void draw_no_data(FILE *out, box area) {
    put_text(out, (area.x0 + area.x1) / 2, (area.y0 + area.y1) / 2 + 5,
             "text-anchor=\"middle\" font-size=\"13\" fill=\"#777\"", "no finite data", 40);
}

static void draw_frame(FILE *out, box area) {
    fprintf(out, "<rect x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"none\" "
            "stroke=\"#555\"/>\n", px(area.x0).s, px(area.y0).s, px(area.x1 - area.x0).s,
            px(area.y1 - area.y0).s);
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
            span_add(&sx, x);
            span_add(&sy, y);
        }
    }
    bool has_data = sx.any;
    axis_set_range(&ax, sx, 0.03);
    axis_set_range(&ay, sy, 0.05);

    /* Vertical layout first: the y ticks decide the left margin, which the x axis needs. */
    bool titled = plot->title && *plot->title;
    box area = {0, titled ? 34 : 12, 0, height - (plot->x_label && *plot->x_label ? 44 : 26)};
    if (area.y1 < area.y0 + 20) area.y1 = area.y0 + 20;
    ay.px_lo = area.y1;
    ay.px_hi = area.y0;
    if (has_data) fit_ticks(&ay, true, 34);
    area.x0 = (plot->y_label && *plot->y_label ? 26 : 8) + widest_label(&ay, FONT_TICK) + 9;

    legend_layout legend = {0};
    bool with_legend = plot_has_legend(plot);
    if (with_legend) legend = legend_size(plot, area.y1 - area.y0 - 10, fmax(width * 0.45, 160));
    if (has_data)
        place_x_axis(&ax, &area, width - 14);
    else
        area.x1 = fmax(width - 14, area.x0 + 20);
    if (with_legend) place_legend(plot, width, &ax, &ay, &area, &legend, has_data);

    svg_open(out, width, height, plot->title);
    if (has_data) {
        draw_axis(out, &ay, SIDE_LEFT, area.x0, area.x1, true);
        draw_axis(out, &ax, SIDE_BOTTOM, area.y0, area.y1, true);
    }
    draw_frame(out, area);
    if (has_data) {
        fputs("<g fill=\"none\" stroke-width=\"1.8\" stroke-linejoin=\"round\" "
              "stroke-linecap=\"round\">\n", out);
        for (int k = 0; k < plot->n_series; k++) draw_series(out, plot, k, &ax, &ay);
        for (int k = 0; k < plot->n_series; k++) draw_end_marker(out, plot, k, &ax, &ay);
        fputs("</g>\n", out);
    } else {
        draw_no_data(out, area);
    }
    draw_titles(out, width, height, plot->x_label, plot->y_label, area);
    if (with_legend) draw_legend(out, plot, &legend);
    return svg_close(out);
}

/* ---- heatmap ------------------------------------------------------------------------------- */

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
    *v = to_axis(x, map->log_values);
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
        shorten_middle(map->row_names[r], ROW_NAME_CHARS, buf, size);
    else
        snprintf(buf, size, "%d", r);
}

static void col_label(const tg_heatmap *map, int c, char *buf, size_t size) {
    snprintf(buf, size, "%s", map->col_values ? fmt_g(map->col_values[c], 6).s
                                              : fmt_g((double)c, 10).s);
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
            span_add(&range, v);
        else
            any_grey = true;
    }
    plot_axis bar = {.log = map->log_values};
    axis_set_range(&bar, range, 0.0);

    /* Margins: row names on the left; on the right the colour bar, its tick labels, the value
     * label and the note about grey cells. */
    bool titled = map->title && *map->title;
    box area = {0, titled ? 34 : 12, 0, height - (map->x_label && *map->x_label ? 44 : 26)};
    if (area.y1 < area.y0 + 20) area.y1 = area.y0 + 20;
    double widest_row = 0;
    char label[ROW_NAME_CHARS * 4 + 8];
    for (int r = 0; r < map->rows; r++) {
        row_label(map, r, label, sizeof label);
        widest_row = fmax(widest_row, text_width(label, FONT_TICK));
    }
    area.x0 = (map->y_label && *map->y_label ? 26 : 8) + widest_row + 9;
    double note_h = any_grey ? 24 : 0;
    bar.px_lo = area.y1 - note_h;
    bar.px_hi = area.y0;
    if (range.any) fit_ticks(&bar, true, 34);
    double bar_w = 14;
    double bar_block = 16 + bar_w + 8 + widest_label(&bar, FONT_TICK) +
                       (map->value_label && *map->value_label ? 28 : 6);
    if (any_grey)
        bar_block = fmax(bar_block, 16 + bar_w + 5 + text_width(NO_VALUE_NOTE, FONT_TICK) + 6);
    area.x1 = width - bar_block;
    if (area.x1 < area.x0 + 20) area.x1 = area.x0 + 20;
    double bar_x = area.x1 + 16;

    double cell_w = (area.x1 - area.x0) / map->cols, cell_h = (area.y1 - area.y0) / map->rows;

    svg_open(out, width, height, map->title);
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
                    px(x0).s, px(y0).s, px(round(x1 * 10) / 10 - round(x0 * 10) / 10).s,
                    px(round(y1 * 10) / 10 - round(y0 * 10) / 10).s, fill.s);
        }
    }
    fputs("</g>\n", out);
    draw_frame(out, area);

    /* Row names as y ticks, column values as x ticks, both thinned to what fits. */
    int row_stride = label_stride(cell_h, FONT_TICK + 3);
    fputs("<g stroke=\"#555\">\n", out);
    for (int r = 0; r < map->rows; r++)
        if (labelled(r, map->rows, row_stride))
            put_line(out, area.x0 - 4, area.y0 + (r + 0.5) * cell_h, area.x0,
                     area.y0 + (r + 0.5) * cell_h);
    double widest_col = 0;
    for (int c = 0; c < map->cols; c++) {
        col_label(map, c, label, sizeof label);
        widest_col = fmax(widest_col, text_width(label, FONT_TICK));
    }
    int col_stride = label_stride(cell_w, widest_col + 10);
    for (int c = 0; c < map->cols; c++)
        if (labelled(c, map->cols, col_stride))
            put_line(out, area.x0 + (c + 0.5) * cell_w, area.y1, area.x0 + (c + 0.5) * cell_w,
                     area.y1 + 4);
    fputs("</g>\n<g font-size=\"11\" fill=\"#333\" text-anchor=\"end\">\n", out);
    for (int r = 0; r < map->rows; r++) {
        if (!labelled(r, map->rows, row_stride)) continue;
        row_label(map, r, label, sizeof label);
        put_text(out, area.x0 - 7, area.y0 + (r + 0.5) * cell_h + FONT_TICK * 0.35, "", label,
                 sizeof label);
    }
    fputs("</g>\n<g font-size=\"11\" fill=\"#333\" text-anchor=\"middle\">\n", out);
    for (int c = 0; c < map->cols; c++) {
        if (!labelled(c, map->cols, col_stride)) continue;
        col_label(map, c, label, sizeof label);
        put_text(out, area.x0 + (c + 0.5) * cell_w, area.y1 + 6 + FONT_TICK, "", label, 40);
    }
    fputs("</g>\n", out);
    draw_titles(out, width, height, map->x_label, map->y_label, area);

    /* The colour bar: a stack of flat steps (a gradient would need an id, and ids clash when
     * several charts share a page). */
    double bar_top = bar.px_hi, bar_bottom = bar.px_lo;
    if (range.any) {
        fputs("<g class=\"colour-bar\" shape-rendering=\"crispEdges\">\n", out);
        for (int i = 0; i < COLOUR_BAR_STEPS; i++) {
            double y0 = bar_bottom - (bar_bottom - bar_top) * (i + 1) / COLOUR_BAR_STEPS;
            double y1 = bar_bottom - (bar_bottom - bar_top) * i / COLOUR_BAR_STEPS;
            fprintf(out, "<rect x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"%s\"/>\n",
                    px(bar_x).s, px(y0).s, px(bar_w).s,
                    px(round(y1 * 10) / 10 - round(y0 * 10) / 10).s,
                    viridis_at((i + 0.5) / COLOUR_BAR_STEPS).s);
        }
        fputs("</g>\n", out);
        draw_frame(out, (box){bar_x, bar_top, bar_x + bar_w, bar_bottom});
        draw_axis(out, &bar, SIDE_RIGHT, bar_x, bar_x + bar_w, false);
    } else {
        put_text(out, bar_x, (bar_top + bar_bottom) / 2, "font-size=\"11\" fill=\"#777\"",
                 "no finite data", 40);
    }
    if (map->value_label && *map->value_label)
        put_vertical_text(out, bar_x + bar_w + 8 + widest_label(&bar, FONT_TICK) + 16,
                          (bar_top + bar_bottom) / 2,
                          "font-size=\"13\" fill=\"#222\"", map->value_label,
                          chars_fitting(map->value_label, bar_bottom - bar_top + 20, FONT_LABEL));
    if (any_grey) {
        fprintf(out, "<rect x=\"%s\" y=\"%s\" width=\"%s\" height=\"11\" fill=\"%s\" "
                "stroke=\"#555\"/>\n", px(bar_x).s, px(area.y1 - 11).s, px(bar_w).s,
                NO_VALUE_GREY);
        put_text(out, bar_x + bar_w + 5, area.y1 - 1.5, "font-size=\"11\" fill=\"#333\"",
                 NO_VALUE_NOTE, 40);
    }
    return svg_close(out);
}
