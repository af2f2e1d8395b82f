/*
 * tests/test_cli_files.c — the tool and the files it reads and writes (cli_repros.sh): --save
 * and --out problems found before training (exit 2), devices, FIFOs and directories never
 * replaced, symlinks followed, paths never cut, reports whole or not at all and named after the
 * right command, numbers range-checked, a batch larger than the data found at parse time, input
 * files that are not regular refused at once, stdout on /dev/full an error, and a checkpoint
 * with NaN weights reported as such.
 */
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <sys/file.h>
#include <limits.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/files.h"
#include "cli/report.h"
#include "helpers.h"

#include <criterion/redirect.h>

static char dir[64];

static void setup(void) {
    cr_redirect_stdout();
    cr_redirect_stderr();
    temp_dir_make(dir, "tapegrad-cli-files");
}

static void teardown(void) {
    temp_dir_remove(dir);
}

TestSuite(cli_files, .init = setup, .fini = teardown, .timeout = 60);

static const char *in_dir(const char *name) {
    static char paths[4][PATH_MAX + 64];
    static int next;
    char *p = paths[next++ % 4];
    snprintf(p, sizeof paths[0], "%s/%s", dir, name);
    return p;
}

/* tapegrad train with these arguments (a few steps unless given). */
#define TRAIN(...) run_train((int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(char *)), \
                             (char **)(const char *[]){__VA_ARGS__})

/* What the command wrote to stderr so far contains fragment. */
static void expect_stderr_has(const char *fragment) {
    fflush(stderr);
    FILE *f = cr_get_redirected_stderr();
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    cr_expect(strstr(text, fragment) != NULL, "stderr \"%s\" lacks \"%s\"", text, fragment);
}

Test(cli_files, save_targets_are_checked_before_training) {
    cr_assert_eq(mkfifo(in_dir("fifo"), 0600), 0);
    cr_expect_eq(TRAIN("--steps", "2", "--save", in_dir("fifo")), EXIT_USAGE);
    cr_expect_eq(TRAIN("--steps", "2", "--save", "/dev/null"), EXIT_USAGE);
    cr_expect_eq(TRAIN("--steps", "2", "--save", dir), EXIT_USAGE);
    cr_expect_eq(TRAIN("--steps", "2", "--save", in_dir("missing/ck.safetensors")), EXIT_USAGE);
    cr_expect_eq(TRAIN("--steps", "2", "--save", "/proc/self/ck.safetensors"), EXIT_USAGE);
    expect_stderr_has("tapegrad train: --save:");
    struct stat st;
    cr_expect(stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode));
}

Test(cli_files, out_problems_are_found_before_training) {
    FILE *f = fopen(in_dir("a-file"), "w");
    fclose(f);
    cr_expect_eq(TRAIN("--steps", "2", "--out", in_dir("a-file")), EXIT_USAGE);
    cr_expect_eq(TRAIN("--steps", "2", "--out", "/proc/self"), EXIT_USAGE);
    cr_expect_eq(TRAIN("--steps", "2", "--out", in_dir("missing/deeper")), EXIT_USAGE);
    const char *argv[] = {"--out", "/proc/self", "vanishing"};
    cr_expect_eq(run_study(3, (char **)argv), EXIT_USAGE);
    expect_stderr_has("tapegrad study: --out '/proc/self'");
}

Test(cli_files, a_symlinked_save_replaces_the_target_and_keeps_the_link) {
    FILE *f = fopen(in_dir("target"), "w");
    fputs("old", f);
    fclose(f);
    cr_assert_eq(symlink("target", in_dir("link")), 0);
    cr_expect_eq(TRAIN("--steps", "2", "--save", in_dir("link")), 0);
    struct stat st;
    cr_expect(lstat(in_dir("link"), &st) == 0 && S_ISLNK(st.st_mode), "the link was replaced");
    cr_expect(stat(in_dir("target"), &st) == 0 && st.st_size > 1000, "the target was not written");
}

Test(cli_files, long_paths_are_refused_or_used_whole_never_cut) {
    static char path[PATH_MAX + 100];
    int n = snprintf(path, sizeof path, "csv:%s/", dir);
    memset(path + n, 'a', sizeof path - (size_t)n - 1);
    path[sizeof path - 1] = '\0';
    cr_expect_eq(TRAIN("--data", path), EXIT_USAGE);
    expect_stderr_has("a path of");
    /* 600 bytes, the tail naming a file that does not exist: the message names it whole */
    static char shorter[700];
    n = snprintf(shorter, sizeof shorter, "csv:%s/", dir);
    memset(shorter + n, '/', 600 - (size_t)n);
    snprintf(shorter + 600, sizeof shorter - 600, "good.csv_does_not_exist");
    FILE *f = fopen(in_dir("good.csv"), "w");
    fputs("1,2,0\n3,4,1\n5,6,0\n7,8,1\n9,10,0\n11,12,1\n", f);
    fclose(f);
    cr_expect_eq(TRAIN("--steps", "2", "--batch", "2", "--data", shorter), EXIT_USAGE);
    expect_stderr_has("good.csv_does_not_exist': cannot open");
}

Test(cli_files, a_report_that_cannot_be_written_leaves_the_old_one_whole) {
    cr_assert_eq(TRAIN("--steps", "2", "--out", dir), 0);
    char *old_summary = NULL;
    FILE *f = fopen(in_dir("summary.json"), "r");
    cr_assert_not_null(f, "no report written");
    fclose(f);
    old_summary = strdup(in_dir("summary.json"));
    cr_assert_eq(unlink(in_dir("train.csv")), 0);
    cr_assert_eq(mkdir(in_dir("train.csv"), 0700), 0); /* a report file cannot be replaced */
    struct stat before, after;
    cr_assert_eq(stat(old_summary, &before), 0);
    cr_expect_eq(TRAIN("--steps", "3", "--out", dir), 1);
    expect_stderr_has("tapegrad train: cannot write the report");
    cr_assert_eq(stat(old_summary, &after), 0);
    cr_expect(before.st_ino == after.st_ino, "summary.json was replaced although the report failed");
    DIR *d = opendir(dir);
    for (struct dirent *e; (e = readdir(d));)
        cr_expect(strncmp(e->d_name, ".tapegrad-report-", 17) != 0, "staging folder %s left", e->d_name);
    closedir(d);
    free(old_summary);
}

/* A staging folder of a report write killed midway, an hour old, holding one file; fd >= 0: the
 * folder open and flock()ed, as a write in progress holds it. */
static const char *old_staging_folder(const char *name, bool locked, int *fd) {
    const char *path = in_dir(name);
    cr_assert_eq(mkdir(path, 0700), 0);
    char file[PATH_MAX + 80];
    snprintf(file, sizeof file, "%s/index.html", path);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fputs("<html>half a report", f);
    fclose(f);
    struct timespec an_hour_ago[2] = {{.tv_sec = time(NULL) - 3600}, {.tv_sec = time(NULL) - 3600}};
    cr_assert_eq(utimensat(AT_FDCWD, path, an_hour_ago, 0), 0);
    *fd = -1;
    if (locked) {
        *fd = open(path, O_RDONLY | O_DIRECTORY);
        cr_assert_eq(flock(*fd, LOCK_EX | LOCK_NB), 0);
    }
    return path;
}

Test(cli_files, the_next_report_removes_staging_folders_of_killed_writes) {
    int unused, held;
    const char *abandoned = strdup(old_staging_folder(".tapegrad-report-Ab3dEf", false, &unused));
    const char *in_progress = strdup(old_staging_folder(".tapegrad-report-Zz9yXw", true, &held));
    cr_assert_eq(TRAIN("--steps", "2", "--out", dir), 0);
    struct stat st;
    cr_expect_neq(stat(abandoned, &st), 0, "the abandoned staging folder is still there");
    cr_expect_eq(stat(in_progress, &st), 0, "a locked staging folder (a live write) was removed");
    close(held);
    free((void *)abandoned);
    free((void *)in_progress);
}

Test(cli_files, numbers_out_of_range_exit_2) {
    cr_expect_eq(TRAIN("--steps", "99999999999999999999"), EXIT_USAGE);
    cr_expect_eq(TRAIN("--steps", "1e99"), EXIT_USAGE);
    cr_expect_eq(TRAIN("--seed", "-1"), EXIT_USAGE);
    cr_expect_eq(TRAIN("--lr", "nan"), EXIT_USAGE);
    cr_expect_eq(TRAIN("--batch", "12abc"), EXIT_USAGE);
    cr_expect_eq(TRAIN("--depth", ""), EXIT_USAGE);
}

/* demo --steps 9223372036854775808 was LONG_MAX steps: it ran for ever */
Test(cli_files, whole_numbers_check_errno_and_range) {
    long v = -1;
    cr_expect_eq(parse_whole_arg("demo", "--steps", "9223372036854775808", 0, 100000000, &v), EXIT_USAGE);
    expect_stderr_has("(out of range)");
    cr_expect_eq(parse_whole_arg("demo", "--steps", "100000001", 0, 100000000, &v), EXIT_USAGE);
    cr_expect_eq(parse_whole_arg("demo", "--seed", "-1", 0, LONG_MAX, &v), EXIT_USAGE);
    cr_expect_eq(parse_whole_arg("demo", "--seed", "7x", 0, LONG_MAX, &v), EXIT_USAGE);
    cr_expect_eq(parse_whole_arg("demo", "--seed", "", 0, LONG_MAX, &v), EXIT_USAGE);
    cr_expect_eq(v, -1, "a refused value was stored");
    cr_expect_eq(parse_whole_arg("demo", "--steps", "2000", 0, 100000000, &v), 0);
    cr_expect_eq(v, 2000);
}

Test(cli_files, problems_of_the_data_are_found_at_parse_time) {
    cr_expect_eq(TRAIN("--batch", "5000"), EXIT_USAGE); /* digits: 1438 training samples */
    expect_stderr_has("--batch 5000 is larger than the 1438 training samples");
    cr_expect_eq(TRAIN("--data", "idx:images-without-labels"), EXIT_USAGE);
    cr_expect_eq(TRAIN("--data", "csv:/dev/zero"), EXIT_USAGE);
    cr_assert_eq(mkfifo(in_dir("fifo.csv"), 0600), 0);
    char data[128];
    snprintf(data, sizeof data, "csv:%s", in_dir("fifo.csv"));
    cr_expect_eq(TRAIN("--data", data), EXIT_USAGE); /* the timeout catches a blocking open */
    expect_stderr_has("not a regular file");
}

Test(cli_files, a_closed_stdout_is_found_before_any_work) {
    cr_expect_eq(check_stdout_open(), 0);
    close(STDOUT_FILENO);
    cr_expect_eq(check_stdout_open(), 1);
    expect_stderr_has("standard output is closed");
}

Test(cli_files, output_that_cannot_be_written_is_exit_1) {
    cr_assert_not_null(freopen("/dev/full", "w", stdout));
    printf("a line the tool meant to show\n");
    cr_expect_eq(finish_output(0), 1);
    expect_stderr_has("cannot write to standard output");
}

/* relu(NaN) was 0: training from a NaN checkpoint went on and the report said "no NaN". */
Test(cli_files, a_checkpoint_with_nan_weights_is_reported) {
    const char *ck = in_dir("ck.safetensors");
    cr_assert_eq(TRAIN("--steps", "2", "--save", ck), 0);
    FILE *f = fopen(ck, "r+b");
    uint64_t header;
    cr_assert_eq(fread(&header, sizeof header, 1, f), 1u);
    cr_assert_eq(fseek(f, (long)(8 + header), SEEK_SET), 0);
    const float nans[4] = {NAN, NAN, NAN, NAN};
    cr_assert_eq(fwrite(nans, sizeof nans, 1, f), 1u);
    fclose(f);
    TRAIN("--steps", "5", "--load", ck, "--out", dir);
    json_error_t error;
    json_t *root = json_load_file(in_dir("summary.json"), 0, &error);
    cr_assert_not_null(root, "%s", error.text);
    json_t *run = json_array_get(json_object_get(json_array_get(json_object_get(root, "experiments"), 0), "runs"), 0);
    json_t *first_nan = json_object_get(run, "first_nan_step");
    cr_expect(json_is_integer(first_nan) && json_integer_value(first_nan) == 0,
              "the NaN weights were not reported at step 0");
    json_decref(root);
}
