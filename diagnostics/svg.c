/*
 * diagnostics/svg.c — the pieces of the SVG charts (see svg.h): text and numbers, the document,
 * axes and their ticks, and the titles and frame both charts draw.
 */
#include "diagnostics/svg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FONT_TITLE 15.0
/* Advance of a character outside ASCII per pixel of font size (ASCII: see ascii_widths). */
#define GLYPH_WIDTH 0.6

/* ---- text and numbers ---------------------------------------------------------------------- */

/* A coordinate rounded to 0.1 px, written without the locale (LC_NUMERIC could turn the point
 * into a comma) and without a trailing ".0". Clamped so that no value can produce "inf". */
num_text tgi_px(double v) {
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

num_text tgi_fmt_g(double v, int precision) {
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
void tgi_shorten_middle(const char *s, size_t max_chars, char *buf, size_t size) {
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

double tgi_text_width(const char *s, double font) {
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
void tgi_put_text(FILE *out, double x, double y, const char *attrs, const char *s,
                     size_t max_chars) {
    fprintf(out, "<text x=\"%s\" y=\"%s\"%s%s>", tgi_px(x).s, tgi_px(y).s, *attrs ? " " : "", attrs);
    put_escaped(out, s, max_chars);
    fputs("</text>\n", out);
}

/* Text turned to read bottom to top, centred on (x, y). */
void tgi_put_vertical_text(FILE *out, double x, double y, const char *attrs, const char *s,
                              size_t max_chars) {
    fprintf(out, "<text transform=\"translate(%s %s) rotate(-90)\" text-anchor=\"middle\" %s>",
            tgi_px(x).s, tgi_px(y).s, attrs);
    put_escaped(out, s, max_chars);
    fputs("</text>\n", out);
}

void tgi_put_line(FILE *out, double x0, double y0, double x1, double y1) {
    fprintf(out, "<line x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>\n", tgi_px(x0).s, tgi_px(y0).s,
            tgi_px(x1).s, tgi_px(y1).s);
}

/* How many characters of s fit in `pixels` at font-size `font`, the ellipsis of a cut included
 * (at least a few, so that something recognisable is left of a long label on a tiny chart). */
size_t tgi_chars_fitting(const char *s, double pixels, double font) {
    if (tgi_text_width(s, font) <= pixels) return text_chars(s);
    double ellipsis = glyph_width(0x2026, font), used = 0;
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; n++) {
        used += glyph_width(utf8_next(&p), font);
        if (used + ellipsis > pixels) break;
    }
    return n < 4 ? 4 : n + 1;
}

void tgi_svg_open(FILE *out, int width, int height, const char *title) {
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
        tgi_put_text(out, width / 2.0, 22,
                 "text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\" fill=\"#222\"",
                 title, tgi_chars_fitting(title, width - 16, FONT_TITLE * 1.08));
}

/* fflush as well as ferror: a stream in full buffering (fmemopen, files) only fails when the
 * buffer is written. */
tg_status tgi_svg_close(FILE *out) {
    fputs("</svg>\n", out);
    return fflush(out) != 0 || ferror(out) ? TG_ERR_IO : TG_OK;
}

/* ---- axes ---------------------------------------------------------------------------------- */

void tgi_span_add(span *s, double v) {
    if (!s->any || v < s->lo) s->lo = v;
    if (!s->any || v > s->hi) s->hi = v;
    s->any = true;
}

/* A linear range is kept within +-1e300 so that hi - lo and the padding stay finite. */
double tgi_to_axis(double v, bool log) {
    if (log) return log10(v);
    return v > 1e300 ? 1e300 : v < -1e300 ? -1e300 : v;
}

double tgi_axis_px(const plot_axis *a, double at) {
    return a->px_lo + (at - a->lo) / (a->hi - a->lo) * (a->px_hi - a->px_lo);
}

/* The axis range: the data's extent with `pad` of it added at both ends. A constant gets a range
 * around it (half a decade either side on a log axis, 10 % of its size on a linear one). */
void tgi_axis_set_range(plot_axis *a, span s, double pad) {
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
                    add_tick(a, at, tgi_fmt_g(mantissas[m] * pow(10.0, e), 3).s);
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
        double at = tgi_axis_px(a, a->ticks[i].at);
        double half = vertical ? font * 0.6 : tgi_text_width(a->ticks[i].label, font) / 2;
        if (have_prev && fabs(at - prev) < prev_half + half + (vertical ? 4 : 10)) return false;
        prev = at;
        prev_half = half;
        have_prev = true;
    }
    return true;
}

/* The most ticks (up to about one per `spacing` pixels, at most 8 on a log axis) whose labels
 * do not collide. */
void tgi_fit_ticks(plot_axis *a, bool vertical, double spacing) {
    int max_n = (int)(fabs(a->px_hi - a->px_lo) / spacing);
    if (max_n < 2) max_n = 2;
    if (max_n > (a->log ? 8 : 12)) max_n = a->log ? 8 : 12;
    for (; max_n >= 2; max_n--) {
        make_ticks(a, max_n);
        if (labels_fit(a, vertical, FONT_TICK)) return;
    }
    make_ticks(a, 1);
}

double tgi_widest_label(const plot_axis *a, double font) {
    double w = 0;
    for (int i = 0; i < a->n_ticks; i++) w = fmax(w, tgi_text_width(a->ticks[i].label, font));
    return w;
}

/* Tick marks and labels on one side of the box [lo, hi] across the axis (the plot area, or the
 * colour bar), and grid lines through the box for the labelled ticks. */
void tgi_draw_axis(FILE *out, const plot_axis *a, axis_side side, double lo, double hi,
                      bool grid) {
    if (grid) {
        fputs("<g stroke=\"#e6e6e6\" stroke-width=\"1\">\n", out);
        for (int i = 0; i < a->n_ticks; i++) {
            if (!a->ticks[i].label[0]) continue;
            double p = tgi_axis_px(a, a->ticks[i].at);
            if (side == SIDE_BOTTOM)
                tgi_put_line(out, p, lo, p, hi);
            else
                tgi_put_line(out, lo, p, hi, p);
        }
        fputs("</g>\n", out);
    }
    fputs("<g stroke=\"#555\" stroke-width=\"1\">\n", out);
    for (int i = 0; i < a->n_ticks; i++) {
        double p = tgi_axis_px(a, a->ticks[i].at), len = a->ticks[i].label[0] ? 5 : 3;
        if (side == SIDE_BOTTOM)
            tgi_put_line(out, p, hi, p, hi + len);
        else if (side == SIDE_LEFT)
            tgi_put_line(out, lo - len, p, lo, p);
        else
            tgi_put_line(out, hi, p, hi + len, p);
    }
    static const char *const anchors[] = {"middle", "end", "start"};
    fprintf(out, "</g>\n<g font-size=\"11\" fill=\"#333\" text-anchor=\"%s\">\n",
            anchors[side]);
    for (int i = 0; i < a->n_ticks; i++) {
        if (!a->ticks[i].label[0]) continue;
        double p = tgi_axis_px(a, a->ticks[i].at);
        if (side == SIDE_BOTTOM)
            tgi_put_text(out, p, hi + 7 + FONT_TICK, "", a->ticks[i].label, 40);
        else if (side == SIDE_LEFT)
            tgi_put_text(out, lo - 8, p + FONT_TICK * 0.35, "", a->ticks[i].label, 40);
        else
            tgi_put_text(out, hi + 8, p + FONT_TICK * 0.35, "", a->ticks[i].label, 40);
    }
    fputs("</g>\n", out);
}


/* ---- pieces both charts draw ---------------------------------------------------------------- */

void tgi_draw_titles(FILE *out, int width, int height, const char *x_label,
                        const char *y_label, box area) {
    const char *attrs = "font-size=\"13\" fill=\"#222\"";
    if (x_label && *x_label) {
        char a[80];
        snprintf(a, sizeof a, "text-anchor=\"middle\" %s", attrs);
        tgi_put_text(out, (area.x0 + area.x1) / 2, height - 9, a, x_label,
                 tgi_chars_fitting(x_label, width - 8, FONT_LABEL));
    }
    if (y_label && *y_label)
        tgi_put_vertical_text(out, 15, (area.y0 + area.y1) / 2, attrs, y_label,
                          tgi_chars_fitting(y_label, area.y1 - area.y0 + 20, FONT_LABEL));
}

void tgi_draw_frame(FILE *out, box area) {
    fprintf(out, "<rect x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"none\" "
            "stroke=\"#555\"/>\n", tgi_px(area.x0).s, tgi_px(area.y0).s, tgi_px(area.x1 - area.x0).s,
            tgi_px(area.y1 - area.y0).s);
}
