/* tests/test_svg.c — the SVG line plots and heatmaps: structure, ticks, gaps, markers, escaping,
 * the colour bar, and the error statuses. */
#include "helpers.h"

TestSuite(svg);

/* A chart written to memory: mem_open, a writer, then mem_close for the text (free() it). */
typedef struct mem_out {
    FILE *out;
    char *text;
    size_t size;
} mem_out;

static FILE *mem_open(mem_out *m) {
    m->text = NULL;
    m->out = open_memstream(&m->text, &m->size);
    cr_assert_not_null(m->out);
    return m->out;
}

static char *mem_close(mem_out *m, tg_status status) {
    cr_assert_eq(status, TG_OK);
    fclose(m->out);
    return m->text;
}

static char *render_line(const tg_line_plot *plot) {
    mem_out m;
    return mem_close(&m, tg_svg_line_plot(mem_open(&m), plot));
}

static char *render_heatmap(const tg_heatmap *map) {
    mem_out m;
    return mem_close(&m, tg_svg_heatmap(mem_open(&m), map));
}

static int count(const char *text, const char *what) {
    int n = 0;
    for (const char *p = strstr(text, what); p; p = strstr(p + 1, what)) n++;
    return n;
}

/* The text contains (or lacks) every one of the given fragments. */
#define expect_has(text, ...) expect_fragments_((text), true, __VA_ARGS__)
#define expect_lacks(text, ...) expect_fragments_((text), false, __VA_ARGS__)
#define expect_fragments_(text, present, ...)                                                   \
    do {                                                                                        \
        const char *fragments_[] = {__VA_ARGS__};                                               \
        for (size_t i_ = 0; i_ < sizeof fragments_ / sizeof fragments_[0]; i_++)                \
            cr_expect((strstr((text), fragments_[i_]) != NULL) == (present), "%s \"%s\"",       \
                      (present) ? "missing" : "unexpected", fragments_[i_]);                    \
    } while (0)

/* One <svg> element and nothing else, so that it can be inlined in HTML. */
static void expect_one_svg(const char *svg) {
    const char *start = "<svg xmlns=\"http://www.w3.org/2000/svg\" ";
    cr_expect(strncmp(svg, start, strlen(start)) == 0, "%.60s", svg);
    size_t n = strlen(svg);
    cr_expect(n >= 7 && strcmp(svg + n - 7, "</svg>\n") == 0);
    cr_expect_eq(count(svg, "<svg"), 1);
    cr_expect_eq(count(svg, "</svg>"), 1);
    cr_expect_null(strstr(svg, "<?xml"));
    for (const char *p = svg; *p; p++)
        if ((unsigned char)*p >= 0x80 || ((unsigned char)*p < 0x20 && *p != '\n')) {
            cr_expect_fail("byte 0x%02x at %td: the output should be plain ASCII",
                           (unsigned char)*p, p - svg);
            break;
        }
}

/* The d attribute of the first path drawn in `colour` (the palette starts #0072B2). */
static char *path_of(const char *svg, const char *colour, char *buf, size_t size) {
    char key[64];
    snprintf(key, sizeof key, "<path stroke=\"%s\"", colour);
    const char *p = strstr(svg, key);
    cr_assert_not_null(p, "no path in %s", colour);
    p = strstr(p, " d=\"");
    cr_assert_not_null(p);
    p += 4;
    size_t n = strcspn(p, "\"");
    cr_assert_lt(n, size);
    memcpy(buf, p, n);
    buf[n] = '\0';
    return buf;
}

Test(svg, line_plot_is_one_svg_element_with_title_labels_and_legend) {
    double y0[4] = {1, 2, 3, 4}, y1[4] = {4, 3, 2, 1};
    tg_plot_series series[2] = {{"rising", NULL, y0, 4, 0}, {"falling", NULL, y1, 4, 0}};
    tg_line_plot plot = {"Loss", "step", "loss", false, false, series, 2, 0, 0};
    char *svg = render_line(&plot);
    expect_one_svg(svg);
    expect_has(svg, "width=\"640\" height=\"360\" viewBox=\"0 0 640 360\"",
               "font-family=\"sans-serif\"", ">Loss</text>", ">step</text>", ">loss</text>",
               ">rising</text>", ">falling</text>", "<path stroke=\"#0072B2\"",
               "<path stroke=\"#D55E00\"");
    /* Linear ticks at 1-2-5 steps: 1 .. 4 by 0.5; index x at whole numbers only. */
    expect_has(svg, ">1.5</text>", ">3.5</text>", ">3</text>");
    cr_expect_null(strstr(svg, ">2.5e0</text>"));
    free(svg);
}

Test(svg, log_axis_labels_thinned_decades) {
    double y[15];
    for (int i = 0; i < 15; i++) y[i] = pow(10.0, i - 12);  /* 1e-12 .. 1e2 */
    tg_plot_series series = {"norm", NULL, y, 15, 0};
    tg_line_plot plot = {"Gradient norm", "layer", "norm", false, true, &series, 1, 0, 0};
    char *svg = render_line(&plot);
    expect_one_svg(svg);
    /* 15 decades: every second one labelled, the others keep an unlabelled mark. */
    expect_has(svg, ">1e-12<", ">1e-10<", ">1e-8<", ">1e-6<", ">1e-4<", ">1e-2<", ">1e0<", ">1e2<");
    expect_lacks(svg, ">1e-11<", ">1e1<");
    cr_expect_null(strstr(svg, "e+"), "exponents are written 1e2, not 1e+02");
    free(svg);
}

Test(svg, a_short_log_range_gets_1_2_5_ticks) {
    double y[3] = {0.05, 0.4, 2.3};
    tg_plot_series series = {"loss", NULL, y, 3, 0};
    tg_line_plot plot = {"Loss", "step", "loss", false, true, &series, 1, 0, 0};
    char *svg = render_line(&plot);
    expect_has(svg, ">0.05<", ">0.1<", ">0.2<", ">0.5<", ">1<", ">2<");
    free(svg);
}

Test(svg, numbers_are_compact_and_never_minus_zero) {
    double y[3] = {-1, 0, 1}, tiny[3] = {-1e-4, 0, 1e-4}, big[2] = {1e6, 2e6};
    tg_plot_series series = {"s", NULL, y, 3, 0};
    tg_line_plot plot = {NULL, NULL, NULL, false, false, &series, 1, 0, 0};
    char *svg = render_line(&plot);
    expect_has(svg, ">0<", ">-0.5<");
    cr_expect_null(strstr(svg, ">-0<"));
    free(svg);
    series.y = tiny;
    svg = render_line(&plot);
    cr_expect_not_null(strstr(svg, ">5e-5<"), "small values all in exponent form");
    expect_has(svg, ">-1e-4<", ">0<");
    cr_expect_null(strstr(svg, ">0.0001<"));
    free(svg);
    series.y = big;
    series.n = 2;
    svg = render_line(&plot);
    expect_has(svg, ">1.2e6<", ">2e6<");
    free(svg);
}

Test(svg, a_nan_in_the_middle_splits_the_line) {
    double y[6] = {1, 2, 3, NAN, 2, 1}, y_log[6] = {1, 2, -3, 0, 2, 1};
    tg_plot_series series = {"s", NULL, y, 6, 0};
    tg_line_plot plot = {"t", "x", "y", false, false, &series, 1, 0, 0};
    char *svg = render_line(&plot), d[4096];
    path_of(svg, "#0072B2", d, sizeof d);
    cr_expect_eq(count(d, "M"), 2, "d=\"%s\"", d);
    cr_expect_eq(count(d, "L"), 3, "d=\"%s\"", d);
    cr_expect_null(strstr(svg, "nan-marker"), "the series does not end in NaN");
    cr_expect_null(strstr(svg, "NaN at"));
    free(svg);
    /* On a log axis, values <= 0 break the line too (and do not reach the axis range). */
    series.y = y_log;
    plot.log_y = true;
    svg = render_line(&plot);
    path_of(svg, "#0072B2", d, sizeof d);
    cr_expect_eq(count(d, "M"), 2, "d=\"%s\"", d);
    cr_expect_eq(count(d, "L"), 2, "d=\"%s\"", d);
    free(svg);
}

Test(svg, a_lone_point_between_gaps_is_a_dot) {
    double y[5] = {1, NAN, 2, NAN, 3};
    tg_plot_series series = {"s", NULL, y, 5, 0};
    tg_line_plot plot = {"t", "x", "y", false, false, &series, 1, 0, 0};
    char *svg = render_line(&plot);
    cr_expect_eq(count(svg, "<circle"), 3);
    free(svg);
}

Test(svg, a_series_ending_in_nan_gets_a_marker_and_a_legend_note) {
    double y[6] = {1, 10, 1e10, 1e30, NAN, NAN}, ok[6] = {1, 1, 1, 1, 1, 1};
    tg_plot_series series[2] = {{"exploding", NULL, y, 6, 0}, {"stable", NULL, ok, 6, 0}};
    tg_line_plot plot = {"Gradient norm", "step", "norm", false, true, series, 2, 0, 0};
    char *svg = render_line(&plot);
    expect_one_svg(svg);
    cr_expect_eq(count(svg, "nan-marker"), 1);
    expect_has(svg, ">exploding (&#8594; NaN at x=4)</text>", ">stable</text>");
    /* The x is that of the data, not the index; Inf is named as such. */
    double x[6] = {0, 10, 20, 30, 40, 50}, inf[3] = {1, 2, INFINITY};
    series[0].x = x;
    series[1] = (tg_plot_series){"overflow", NULL, inf, 3, 0};
    free(svg);
    svg = render_line(&plot);
    expect_has(svg, ">exploding (&#8594; NaN at x=40)</text>",
               ">overflow (&#8594; Inf at x=2)</text>");
    cr_expect_eq(count(svg, "nan-marker"), 2);
    free(svg);
}

Test(svg, text_is_escaped) {
    double y[2] = {1, 2};
    tg_plot_series series = {"\"q\" <w>", NULL, y, 2, 0};
    tg_line_plot plot = {"a<b & c", "x > 0", "y", false, false, &series, 1, 0, 0};
    char *svg = render_line(&plot);
    expect_has(svg, ">a&lt;b &amp; c</text>", "<title>a&lt;b &amp; c</title>", ">x &gt; 0</text>",
               ">&quot;q&quot; &lt;w&gt;</text>");
    cr_expect_null(strstr(svg, "a<b"));
    free(svg);
    /* Non-ASCII names come out as character references. */
    series.name = "\xCE\xB8 (theta)";
    svg = render_line(&plot);
    cr_expect_not_null(strstr(svg, ">&#952; (theta)</text>"));
    expect_one_svg(svg);
    free(svg);
}

Test(svg, empty_plots_say_no_finite_data) {
    double y[3] = {NAN, INFINITY, NAN};
    tg_plot_series series = {"broken", NULL, y, 3, 0};
    tg_line_plot plot = {"Empty", "x", "y", false, false, &series, 1, 0, 0};
    char *svg = render_line(&plot);
    expect_one_svg(svg);
    cr_expect_not_null(strstr(svg, ">no finite data</text>"));
    cr_expect_null(strstr(svg, "<path"));
    free(svg);
    tg_line_plot none = {"Nothing", NULL, NULL, false, true, NULL, 0, 0, 0};
    svg = render_line(&none);
    expect_one_svg(svg);
    cr_expect_not_null(strstr(svg, ">no finite data</text>"));
    free(svg);
}

Test(svg, a_constant_series_gets_a_range) {
    double y[4] = {5, 5, 5, 5};
    tg_plot_series series = {"c", NULL, y, 4, 0};
    tg_line_plot plot = {"c", "x", "y", false, false, &series, 1, 0, 0};
    char *svg = render_line(&plot);
    cr_expect_not_null(strstr(svg, ">5</text>"));
    expect_lacks(svg, "nan", "inf");
    free(svg);
    plot.log_y = true;
    svg = render_line(&plot);
    cr_expect_not_null(strstr(svg, ">5</text>"));
    cr_expect_null(strstr(svg, "nan"));
    free(svg);
}

Test(svg, many_series_get_dashes_and_a_legend_outside) {
    enum { K = 10 };
    double y[K][3];
    char names[K][16];
    tg_plot_series series[K];
    for (int k = 0; k < K; k++) {
        for (int i = 0; i < 3; i++) y[k][i] = k + i;
        snprintf(names[k], sizeof names[k], "s%d", k);
        series[k] = (tg_plot_series){names[k], NULL, y[k], 3, 0};
    }
    tg_line_plot plot = {"many", "x", "y", false, false, series, K, 0, 0};
    char *svg = render_line(&plot);
    /* Series 8 and 9 reuse the first colours, dashed. */
    cr_expect_eq(count(svg, "<path stroke=\"#0072B2\""), 2);
    cr_expect_eq(count(svg, "<path stroke=\"#0072B2\" stroke-dasharray="), 1);
    cr_expect_eq(count(svg, "fill-opacity=\"0.9\""), 1, "one legend box");
    free(svg);
}

Test(svg, long_series_are_downsampled_and_keep_their_spikes) {
    enum { N = 100000 };
    double *y = malloc(N * sizeof *y);
    cr_assert_not_null(y);
    for (int i = 0; i < N; i++) y[i] = i == 54321 ? 100.0 : 1.0 + (i % 2) * 0.01;
    tg_plot_series series = {"long", NULL, y, N, 0};
    tg_line_plot plot = {"t", "x", "y", false, false, &series, 1, 0, 0};
    char *svg = render_line(&plot);
    cr_expect_lt(strlen(svg), 60000);
    const char *d = strstr(strstr(svg, "<path stroke=\"#0072B2\""), " d=\"");
    /* The spike is the highest point: the path reaches near the top of the plot area. */
    double min_y = 1e9;
    for (const char *p = d + 4; *p && *p != '"';) {
        double px, py;
        int used = 0;
        if (sscanf(p + 1, "%lf %lf%n", &px, &py, &used) == 2) {
            if (py < min_y) min_y = py;
            p += 1 + used;
        } else {
            p++;
        }
    }
    cr_expect_lt(min_y, 60, "top of the drawn line at y=%g", min_y);
    free(svg);
    free(y);
}

Test(svg, heatmap_cells_colour_bar_and_grey_cells) {
    enum { R = 3, C = 4 };
    double v[R * C];
    for (int i = 0; i < R * C; i++) v[i] = pow(10.0, -6 + i * 6.0 / (R * C - 1));
    v[5] = NAN;
    v[6] = 0;   /* no log */
    const char *rows[R] = {"first <layer>", "middle", "last"};
    double cols[C] = {0, 100, 200, 300};
    tg_heatmap map = {"Gradient norm", "step", "layer", "norm", v, R, C, rows, cols, true, 0, 0};
    char *svg = render_heatmap(&map);
    expect_one_svg(svg);
    const char *cells = strstr(svg, "<g class=\"cells\"");
    cr_assert_not_null(cells);
    const char *end = strstr(cells, "</g>");
    int rects = 0, grey = 0;
    for (const char *p = strstr(cells, "<rect"); p && p < end; p = strstr(p + 1, "<rect")) {
        rects++;
        const char *close = strchr(p, '>');
        const char *fill = strstr(p, "fill=\"#bdbdbd\"");
        grey += fill && fill < close;
    }
    cr_expect_eq(rects, R * C);
    cr_expect_eq(grey, 2, "the NaN and the 0 (on a log scale)");
    cr_expect_not_null(strstr(svg, ">grey: no value/NaN</text>"));
    cr_expect_not_null(strstr(svg, "fill=\"#440154\""), "the smallest value, viridis' start");
    cr_expect_not_null(strstr(svg, "fill=\"#fde725\""), "the largest value, viridis' end");
    expect_has(svg, ">1e-6<", ">1e-3<", ">1e0<", ">first &lt;layer&gt;<", ">last<", ">0<", ">300<",
               ">Gradient norm<", ">step<", ">layer<", ">norm<");
    /* Rows top to bottom in the order given. */
    cr_expect_lt(strstr(svg, ">first &lt;layer&gt;<"), strstr(svg, ">middle<"));
    double y_first = 0, y_last = 0;
    const char *t = strstr(svg, ">first &lt;layer&gt;<");
    while (t > svg && strncmp(t, " y=\"", 4) != 0) t--;
    sscanf(t + 4, "%lf", &y_first);
    t = strstr(svg, ">last<");
    while (t > svg && strncmp(t, " y=\"", 4) != 0) t--;
    sscanf(t + 4, "%lf", &y_last);
    cr_expect_lt(y_first, y_last);
    free(svg);
}

Test(svg, heatmap_without_grey_cells_or_names) {
    double v[6] = {-1, 0, 1, 2, 3, 4};
    tg_heatmap map = {NULL, NULL, NULL, NULL, v, 2, 3, NULL, NULL, false, 300, 200};
    char *svg = render_heatmap(&map);
    expect_one_svg(svg);
    cr_expect_not_null(strstr(svg, "width=\"300\" height=\"200\""));
    cr_expect_null(strstr(svg, "grey: no value"));
    cr_expect_not_null(strstr(svg, ">0</text>"), "row and column numbers");
    cr_expect_not_null(strstr(svg, ">2</text>"));
    free(svg);
}

Test(svg, heatmap_thins_out_row_and_column_labels) {
    enum { R = 100, C = 300 };
    double *v = malloc(R * C * sizeof *v);
    cr_assert_not_null(v);
    for (int i = 0; i < R * C; i++) v[i] = i;
    tg_heatmap map = {"big", "column", "row", "v", v, R, C, NULL, NULL, false, 0, 0};
    char *svg = render_heatmap(&map);
    cr_expect_not_null(strstr(svg, ">0</text>"));
    cr_expect_not_null(strstr(svg, ">99</text>"), "the last row is labelled");
    cr_expect_not_null(strstr(svg, ">299</text>"), "the last column is labelled");
    cr_expect_null(strstr(svg, ">1</text>"));
    cr_expect_lt(count(svg, "<text"), 60);
    free(svg);
    free(v);
}

Test(svg, invalid_arguments) {
    double y[2] = {1, 2};
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    tg_plot_series ok = {"s", NULL, y, 2, 0}, no_y = {"s", NULL, NULL, 2, 0}, neg = {"s", NULL, y, -1, 0};
    tg_line_plot plot = {"t", NULL, NULL, false, false, &ok, 1, 0, 0};
    cr_expect_eq(tg_svg_line_plot(NULL, &plot), TG_ERR_INVALID);
    cr_expect_eq(tg_svg_line_plot(out, NULL), TG_ERR_INVALID);
    plot.series = &no_y;
    cr_expect_eq(tg_svg_line_plot(out, &plot), TG_ERR_INVALID);
    plot.series = &neg;
    cr_expect_eq(tg_svg_line_plot(out, &plot), TG_ERR_INVALID);
    plot.series = NULL;
    cr_expect_eq(tg_svg_line_plot(out, &plot), TG_ERR_INVALID);
    plot = (tg_line_plot){"t", NULL, NULL, false, false, &ok, -1, 0, 0};
    cr_expect_eq(tg_svg_line_plot(out, &plot), TG_ERR_INVALID);
    plot = (tg_line_plot){"t", NULL, NULL, false, false, &ok, 1, -5, 0};
    cr_expect_eq(tg_svg_line_plot(out, &plot), TG_ERR_INVALID);

    double v[4] = {1, 2, 3, 4};
    tg_heatmap map = {"t", NULL, NULL, NULL, v, 2, 2, NULL, NULL, false, 0, 0};
    cr_expect_eq(tg_svg_heatmap(NULL, &map), TG_ERR_INVALID);
    cr_expect_eq(tg_svg_heatmap(out, NULL), TG_ERR_INVALID);
    map.rows = 0;
    cr_expect_eq(tg_svg_heatmap(out, &map), TG_ERR_INVALID);
    map.rows = 2;
    map.cols = -1;
    cr_expect_eq(tg_svg_heatmap(out, &map), TG_ERR_INVALID);
    map.cols = 2;
    map.values = NULL;
    cr_expect_eq(tg_svg_heatmap(out, &map), TG_ERR_INVALID);
    fclose(out);
    cr_expect_eq(size, 0, "nothing written for a refused call");
    free(text);
}

Test(svg, a_full_stream_is_an_io_error) {
    double y[3] = {1, 2, 3};
    tg_plot_series series = {"s", NULL, y, 3, 0};
    tg_line_plot plot = {"t", "x", "y", false, false, &series, 1, 0, 0};
    char buf[64];
    FILE *out = fmemopen(buf, sizeof buf, "w");
    cr_assert_not_null(out);
    cr_expect_eq(tg_svg_line_plot(out, &plot), TG_ERR_IO);
    fclose(out);
    tg_heatmap map = {"t", NULL, NULL, NULL, y, 1, 3, NULL, NULL, false, 0, 0};
    out = fmemopen(buf, sizeof buf, "w");
    cr_assert_not_null(out);
    cr_expect_eq(tg_svg_heatmap(out, &map), TG_ERR_IO);
    fclose(out);
}

Test(svg, a_series_style_picks_its_palette_entry_whatever_its_position) {
    const double y[3] = {1, 2, 3};
    /* the second palette colour (#D55E00) for the first series, the first (#0072B2) for the
     * second, and the ninth (the first colour, dashed) for the third */
    tg_plot_series series[3] = {{"b", NULL, y, 3, 2}, {"a", NULL, y, 3, 1}, {"c", NULL, y, 3, 9}};
    tg_line_plot plot = {"styles", "x", "y", false, false, series, 3, 0, 0};
    char *svg = render_line(&plot);
    const char *first_path = strstr(svg, "<path stroke=\"#");
    cr_assert_not_null(first_path);
    cr_expect(strncmp(first_path, "<path stroke=\"#D55E00\"", 22) == 0, "%.40s", first_path);
    const char *second_path = strstr(first_path + 1, "<path stroke=\"#");
    cr_assert_not_null(second_path);
    cr_expect(strncmp(second_path, "<path stroke=\"#0072B2\" d=", 25) == 0, "%.40s", second_path);
    const char *third_path = strstr(second_path + 1, "<path stroke=\"#");
    cr_assert_not_null(third_path);
    cr_expect(strncmp(third_path, "<path stroke=\"#0072B2\" stroke-dasharray=", 40) == 0, "%.60s", third_path);
    /* the legend follows the lines */
    cr_expect_eq(count(svg, "stroke=\"#D55E00\""), 2, "%s", svg);
    free(svg);
}
