/*
 * tests/test_cli.c — the tool's commands, driven directly: `study --quick` writes a report whose
 * structure and summary.json are checked; bad arguments exit 2 with nothing written; `train`
 * runs, saves and loads.
 */
#include <dirent.h>
#include <jansson.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/report.h"
#include "helpers.h"

#include <criterion/redirect.h>

static void quiet(void) {
    cr_redirect_stdout();
    cr_redirect_stderr();
}

TestSuite(cli, .init = quiet);

static char *temp_dir(void) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/tapegrad-cli-XXXXXX");
    cr_assert_not_null(mkdtemp(path));
    return path;
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *text = malloc((size_t)n + 1);
    size_t got = fread(text, 1, (size_t)n, f);
    text[got] = '\0';
    fclose(f);
    return text;
}

static int study(int argc, const char **argv) {
    return run_study(argc, (char **)argv);
}

static int train(int argc, const char **argv) {
    return run_train(argc, (char **)argv);
}

/* Every run object has the schema's keys, with numbers or null (never NaN: that would not parse). */
static void check_run(json_t *run, const char *experiment) {
    cr_assert(json_is_object(run));
    cr_expect(json_is_string(json_object_get(run, "config")), "%s: config", experiment);
    const char *arrays[] = {"grad_norm_by_layer", "loss_curve"};
    for (int i = 0; i < 2; i++) {
        json_t *a = json_object_get(run, arrays[i]);
        cr_expect(json_is_array(a), "%s: %s", experiment, arrays[i]);
        size_t k;
        json_t *v;
        json_array_foreach(a, k, v) cr_expect(json_is_number(v) || json_is_null(v));
    }
    cr_expect_gt(json_array_size(json_object_get(run, "loss_curve")), 0);
    const char *scalars[] = {"first_last_ratio", "final_loss", "test_accuracy", "explosion_onset_step",
                             "first_nan_step", "train_loss", "train_accuracy", "weight_norm"};
    for (int i = 0; i < 8; i++) {
        json_t *v = json_object_get(run, scalars[i]);
        cr_expect(v && (json_is_number(v) || json_is_null(v)), "%s: %s", experiment, scalars[i]);
    }
    json_t *t = json_object_get(run, "grad_norm_by_timestep");
    cr_expect(t && (json_is_array(t) || json_is_null(t)));
}

/* The recurrent experiment's stacked LSTMs at T=100: the first layer's |dL/dh[t]| over 100 steps. */
static void expect_deep_lstms(json_t *runs) {
    int deep = 0;
    size_t k;
    json_t *run;
    json_array_foreach(runs, k, run) {
        const char *name = json_string_value(json_object_get(run, "config"));
        if (!strstr(name, "layers, T=100")) continue;
        deep++;
        cr_expect_str_eq(json_string_value(json_object_get(run, "model")), "lstm");
        cr_expect_eq(json_array_size(json_object_get(run, "grad_norm_by_timestep")), 100, "%s", name);
        cr_expect(json_is_number(json_array_get(json_object_get(run, "grad_norm_by_timestep"), 0)), "%s", name);
    }
    cr_expect_eq(deep, 1, "an LSTM of 2 layers");
}

/* none / L2 / dropout / both, each with its fit on the training samples and its weight norm;
 * weight decay leaves the smaller weights. */
static void expect_regularisation(json_t *e) {
    cr_assert_str_eq(json_string_value(json_object_get(e, "name")), "regularisation");
    json_t *runs = json_object_get(e, "runs");
    cr_assert_eq(json_array_size(runs), 4);
    size_t k;
    json_t *run;
    json_array_foreach(runs, k, run) {
        const char *keys[] = {"train_loss", "train_accuracy", "test_accuracy", "final_loss", "weight_norm"};
        for (int i = 0; i < 5; i++)
            cr_expect(json_is_number(json_object_get(run, keys[i])), "run %zu: %s is a number", k, keys[i]);
        double acc = json_number_value(json_object_get(run, "train_accuracy"));
        cr_expect(acc >= 0 && acc <= 1, "run %zu: training accuracy %g", k, acc);
    }
    double none = json_number_value(json_object_get(json_array_get(runs, 0), "weight_norm"));
    double l2 = json_number_value(json_object_get(json_array_get(runs, 1), "weight_norm"));
    cr_expect_lt(l2, none, "weight decay shrinks the weights: %g against %g", l2, none);
}

/* Issue 22: the exploding experiment's guarded twin says what the guard did (rescues, final
 * rate), stays finite, and its finding quotes those numbers. */
static void expect_guarded_exploding(json_t *e, const char *html) {
    cr_assert_str_eq(json_string_value(json_object_get(e, "name")), "exploding");
    json_t *runs = json_object_get(e, "runs");
    cr_assert_eq(json_array_size(runs), 2);
    json_t *guarded = json_array_get(runs, 1);
    cr_expect_str_eq(json_string_value(json_object_get(guarded, "config")), "SGD lr 0.5, guarded");
    json_int_t rescues = json_integer_value(json_object_get(guarded, "rescues"));
    cr_expect_gt(rescues, 0);
    cr_expect_lt(json_number_value(json_object_get(guarded, "final_lr")), 0.5);
    cr_expect(json_is_null(json_object_get(guarded, "first_nan_step")), "the guarded run stays finite");
    char said[64];
    snprintf(said, sizeof said, "The guard rescued the run %lld time", (long long)rescues);
    const char *section = strstr(html, "<section id=\"exploding\">");
    cr_expect(section && strstr(section, said), "the finding quotes the rescues: %s", said);
}

/* The clipping runs say how many classes and parameters they have: what judges learning against
 * chance, and what a clip by value bounds one element at a time. */
static void expect_clipping(json_t *e, const char *html) {
    cr_assert_str_eq(json_string_value(json_object_get(e, "name")), "clipping");
    size_t k;
    json_t *run;
    json_array_foreach(json_object_get(e, "runs"), k, run) {
        cr_expect_eq(json_integer_value(json_object_get(run, "classes")), 10, "run %zu: the digits' classes", k);
        cr_expect_gt(json_integer_value(json_object_get(run, "parameters")), 20000, "run %zu", k);
    }
    const char *section = strstr(html, "<section id=\"clipping\">");
    cr_expect(section && strstr(section, "clip by value 0.1 bounds each of the") &&
              strstr(section, "against 10% by chance"), "the clipping finding judges learning against chance");
}

Test(cli, quick_study_writes_a_complete_report) {
    char *dir = temp_dir();
    /* every experiment but `transformer`, which needs the fortunes package (tests/test_lm_study.c
     * runs it on a text of its own) */
    const char *argv[] = {"vanishing", "init", "batchnorm", "residual", "exploding", "clipping",
                          "recurrent", "cnn", "regularisation", "--quick", "--out", dir, "--seed", "3"};
    cr_assert_eq(study(14, argv), 0);
    char path[256];
    snprintf(path, sizeof path, "%s/summary.json", dir);
    json_error_t error;
    json_t *root = json_load_file(path, 0, &error);
    cr_assert_not_null(root, "summary.json does not parse: %s (line %d)", error.text, error.line);
    cr_expect_eq(json_integer_value(json_object_get(root, "seed")), 3);
    json_t *experiments = json_object_get(root, "experiments");
    const char *names[] = {"vanishing", "init", "batchnorm", "residual", "exploding", "clipping",
                           "recurrent", "cnn", "regularisation"};
    const size_t n_names = sizeof names / sizeof names[0];
    cr_assert_eq(json_array_size(experiments), n_names);
    for (size_t i = 0; i < n_names; i++) {
        json_t *e = json_array_get(experiments, i);
        cr_expect_str_eq(json_string_value(json_object_get(e, "name")), names[i]);
        json_t *runs = json_object_get(e, "runs");
        cr_expect_gt(json_array_size(runs), 0);
        size_t k;
        json_t *run;
        json_array_foreach(runs, k, run) check_run(run, names[i]);
        snprintf(path, sizeof path, "%s/%s.csv", dir, names[i]);
        char *csv = slurp(path);
        cr_assert_not_null(csv, "%s missing", path);
        cr_expect_eq(strncmp(csv, "config,step,series,value\n", 25), 0);
        cr_expect_gt(strlen(csv), 1000);
        free(csv);
    }
    json_t *recurrent = json_array_get(experiments, 6);
    json_t *first = json_array_get(json_object_get(recurrent, "runs"), 0);
    cr_expect_eq(json_array_size(json_object_get(first, "grad_norm_by_timestep")), 20, "T=20: 20 values");
    expect_deep_lstms(json_object_get(recurrent, "runs"));
    expect_regularisation(json_array_get(experiments, 8));

    snprintf(path, sizeof path, "%s/index.html", dir);
    char *html = slurp(path);
    cr_assert_not_null(html);
    expect_clipping(json_array_get(experiments, 5), html);
    expect_guarded_exploding(json_array_get(experiments, 4), html);
    json_decref(root);
    cr_expect_eq(strncmp(html, "<!DOCTYPE html>", 15), 0);
    const char *summary = strstr(html, "<section id=\"summary\">");
    cr_expect(summary && summary < strstr(html, "<section id=\"vanishing\">"), "the summary comes first");
    for (size_t i = 0; i < n_names; i++) {
        char id[64];
        snprintf(id, sizeof id, "<section id=\"%s\">", names[i]);
        cr_expect(strstr(html, id) != NULL, "no section %s", names[i]);
        snprintf(id, sizeof id, "<li><a href=\"#%s\"><b>%s</b></a>: ", names[i], names[i]);
        cr_expect(summary && strstr(summary, id), "the summary does not link %s", names[i]);
        snprintf(id, sizeof id, "<a href=\"%s.csv\">", names[i]);
        cr_expect(strstr(html, id), "the section does not link %s.csv", names[i]);
    }
    /* heatmap rows are the layers' own names, and a recurrent cell keeps its colour over T */
    const char *cnn = strstr(html, "<section id=\"cnn\">");
    cr_expect(cnn && strstr(cnn, ">conv1<"), "the LeNet heatmap's rows are not named after its layers");
    const char *recurrent_html = strstr(html, "<section id=\"recurrent\">");
    cr_assert_not_null(recurrent_html);
    const char *end = strstr(recurrent_html + 1, "<section");
    char colours[16][8];
    int n_colours = 0;
    for (const char *p = recurrent_html; (p = strstr(p, "<path stroke=\"#")) && (!end || p < end); p++) {
        char colour[8];
        snprintf(colour, sizeof colour, "%.7s", p + 14);
        int k = 0;
        while (k < n_colours && strcmp(colours[k], colour) != 0) k++;
        if (k == n_colours && n_colours < 16) snprintf(colours[n_colours++], 8, "%s", colour);
    }
    cr_expect_eq(n_colours, 4, "RNN, LSTM, GRU and the stacked LSTM: one colour each at every T, not %d", n_colours);
    int svgs = 0;
    for (const char *p = html; (p = strstr(p, "<svg")); p++) svgs++;
    cr_expect_geq(svgs, 20, "%d charts", svgs);
    cr_expect(strstr(html, "class=\"finding\"") != NULL);
    const char *regularisation = strstr(html, "<section id=\"regularisation\">");
    cr_expect(regularisation && strstr(regularisation, "<th>gap (accuracy)</th>") &&
              strstr(regularisation, "<th>weight norm</th>"), "the regularisation section has its fit table");
    cr_expect(strstr(html, "the first layer's h[1] at the first step"),
              "the recurrent finding says what depth does to the first layer's h[1]");
    cr_expect_null(strstr(html, "http://www.w3.org/1999/xlink\" href=\"http"), "no external resources");
    cr_expect_null(strstr(html, "<script"), "no scripts");
    cr_expect_null(strstr(html, "src=\""), "no external files");
    free(html);
}

/* Issue 22: the sharpness experiment measures lambda_max of every run over training; the run
 * past the edge blows up after lr x lambda_max crossed 2, and the finding quotes that step. The
 * crossing is recomputed here from the measurements the summary holds. */
Test(cli, quick_sharpness_study_measures_lambda_max_against_2_over_lr) {
    char *dir = temp_dir();
    const char *argv[] = {"sharpness", "--quick", "--out", dir};
    cr_assert_eq(study(4, argv), 0);
    char path[256];
    snprintf(path, sizeof path, "%s/summary.json", dir);
    json_error_t error;
    json_t *root = json_load_file(path, 0, &error);
    cr_assert_not_null(root, "%s", error.text);
    json_t *runs = json_object_get(json_array_get(json_object_get(root, "experiments"), 0), "runs");
    cr_assert_eq(json_array_size(runs), 4);
    long long blown_cross = -2;
    size_t k;
    json_t *run;
    json_array_foreach(runs, k, run) {
        double lr = json_number_value(json_object_get(run, "lr"));
        json_t *lambda = json_object_get(run, "sharpness"), *steps = json_object_get(run, "sharpness_steps");
        cr_assert_gt(json_array_size(lambda), 0, "run %zu", k);
        cr_expect_eq(json_array_size(lambda), json_array_size(steps));
        long long cross = -1;
        for (size_t i = 0; i < json_array_size(lambda) && cross < 0; i++)
            if (lr * json_number_value(json_array_get(lambda, i)) >= 2)
                cross = json_integer_value(json_array_get(steps, i));
        json_t *said = json_object_get(run, "lr_sharpness_cross_step");
        cr_expect_eq(json_is_null(said) ? -1 : json_integer_value(said), cross, "run %zu", k);
        if (!json_is_null(json_object_get(run, "first_nan_step"))) blown_cross = cross;
    }
    cr_expect_geq(blown_cross, 0, "a run blows up, after lr x lambda_max crossed 2");
    json_decref(root);
    snprintf(path, sizeof path, "%s/index.html", dir);
    char *html = slurp(path);
    cr_assert_not_null(html);
    char said[96];
    snprintf(said, sizeof said, "lr x sharpness crossed 2 at step %lld", blown_cross);
    cr_expect(strstr(html, said) != NULL, "the finding quotes the crossing: %s", said);
    cr_expect(strstr(html, "Sharpness (largest Hessian eigenvalue) against 2/lr") != NULL, "the chart");
    free(html);
}

/* Issue 22: the isometry experiment measures the Jacobian of each deep net at initialisation; the
 * values are singular values (largest >= smallest > 0, mean square between their squares) and
 * the finding compares the deepest nets. */
Test(cli, quick_isometry_study_measures_the_jacobian_at_initialisation) {
    char *dir = temp_dir();
    const char *argv[] = {"isometry", "--quick", "--out", dir};
    cr_assert_eq(study(4, argv), 0);
    char path[256];
    snprintf(path, sizeof path, "%s/summary.json", dir);
    json_error_t error;
    json_t *root = json_load_file(path, 0, &error);
    cr_assert_not_null(root, "%s", error.text);
    json_t *runs = json_object_get(json_array_get(json_object_get(root, "experiments"), 0), "runs");
    cr_assert_eq(json_array_size(runs), 12);
    size_t k;
    json_t *run;
    json_array_foreach(runs, k, run) {
        double hi = json_number_value(json_object_get(run, "jacobian_largest"));
        double lo = json_number_value(json_object_get(run, "jacobian_smallest"));
        double ms = json_number_value(json_object_get(run, "jacobian_mean_square"));
        cr_expect(lo > 0 && hi >= lo, "run %zu: %g to %g", k, lo, hi);
        cr_expect(ms >= lo * lo * 0.999 && ms <= hi * hi * 1.001, "run %zu: mean square %g in [%g, %g]", k, ms, lo * lo, hi * hi);
    }
    json_decref(root);
    snprintf(path, sizeof path, "%s/index.html", dir);
    char *html = slurp(path);
    cr_assert_not_null(html);
    cr_expect(strstr(html, "At 32 layers the narrowest spread of a tanh net is") != NULL);
    free(html);
}

Test(cli, study_argument_errors_exit_2_and_write_nothing) {
    char *dir = temp_dir();
    const char *cases[][4] = {
        {"nosuch", "--out", dir, NULL}, {"--seed", "abc", "--out", dir}, {"--jobs", "0", "--out", dir},
        {"--bogus", "--out", dir, NULL}, {"--seed", "-1", "--out", dir}, {"--out", NULL, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int argc = 0;
        while (argc < 4 && cases[i][argc]) argc++;
        cr_expect_eq(study(argc, cases[i]), EXIT_USAGE, "case %zu", i);
    }
    cr_expect_eq(count_entries(dir), 0, "nothing written");
    char file[128];
    snprintf(file, sizeof file, "%s/plain-file", dir);
    fclose(fopen(file, "w"));
    const char *not_a_dir[] = {"exploding", "--quick", "--out", file};
    cr_expect_eq(study(4, not_a_dir), EXIT_USAGE);
}

Test(cli, train_argument_errors_exit_2) {
    const char *cases[][2] = {{"--model", "transformer"}, {"--data", "adding:1"}, {"--lr", "-1"},
                              {"--steps", "0"}, {"--steps", "1.5"}, {"--model", "lstm"},
                              {"--activation", "swishy"}, {"--init", "normal:x"}, {"--data", "csv:"},
                              {"--norm", "group"}, {"--optimizer", "lbfgs"}, {"--batch", NULL},
                              {"--bogus", "1"}, {"--layers", "0"}, {"--layers", "2"}, {"--bidirectional", NULL},
                              {"--layers", "17"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_expect_eq(train(cases[i][1] ? 2 : 1, cases[i]), EXIT_USAGE, "case %zu (%s)", i, cases[i][0]);
}

Test(cli, train_runs_saves_and_loads) {
    char *dir = temp_dir();
    char weights[128];
    snprintf(weights, sizeof weights, "%s/w.safetensors", dir);
    const char *first[] = {"--depth", "3", "--width", "16", "--steps", "30", "--save", weights, "--out", dir};
    cr_assert_eq(train(10, first), 0);
    struct stat st;
    cr_expect_eq(stat(weights, &st), 0, "weights saved");
    char path[160];
    snprintf(path, sizeof path, "%s/index.html", dir);
    cr_expect_eq(stat(path, &st), 0, "report written");
    const char *again[] = {"--depth", "3", "--width", "16", "--steps", "5", "--load", weights};
    cr_expect_eq(train(8, again), 0, "the saved weights load into the same model");
    const char *wrong[] = {"--depth", "3", "--width", "8", "--steps", "5", "--load", weights};
    cr_expect_eq(train(8, wrong), 1, "a different shape is refused");
    const char *lstm[] = {"--model", "gru", "--data", "adding:10", "--hidden", "8", "--steps", "10"};
    cr_expect_eq(train(8, lstm), 0);
    snprintf(weights, sizeof weights, "%s/stack.safetensors", dir);
    const char *stacked[] = {"--model", "lstm", "--layers", "2", "--bidirectional", "--data", "adding:8",
                             "--hidden", "6", "--steps", "5", "--save", weights};
    cr_expect_eq(train(13, stacked), 0, "a stacked bidirectional LSTM trains and saves");
    stacked[12] = weights;
    stacked[11] = "--load";
    cr_expect_eq(train(13, stacked), 0, "and loads into the same model");
    stacked[3] = "3";
    cr_expect_eq(train(13, stacked), 1, "a third layer is not in the file");
}
