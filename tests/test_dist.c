/*
 * tests/test_dist.c — data-parallel training over MPI (mpi/, tapegrad_dist.h).
 *
 * The collective tests start tests/mpi/dist_check.c under `mpirun -np 2` (as root in a
 * container: --allow-run-as-root --oversubscribe) and compare what the ranks wrote with a run
 * of the same program alone (--single: no MPI). Built only with -Dmpi (TG_HAVE_MPI); without
 * it this file holds no test. Under -Dsanitize=true dist_check is built with ASan + UBSan like
 * the suite, and its ranks run with LeakSanitizer off (ASAN_OPTIONS=detect_leaks=0, passed by
 * mpirun -x): Open MPI leaves its own allocations at exit, which would fail every run; the
 * address and undefined-behaviour checks stay on. (The `tapegrad train` run is not sanitized.)
 */
#ifdef TG_HAVE_MPI

#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tapegrad_dist.h"
#include "tests/helpers.h"

/* The dist_check program `test` installs beside the test plugins. */
static const char *dist_check_path(void) {
    static char path[4096];
    const char *dir = getenv("TAPEGRAD_TEST_PLUGINS");
    cr_assert_not_null(dir, "TAPEGRAD_TEST_PLUGINS is not set (run through zig build test)");
    snprintf(path, sizeof path, "%s/dist_check", dir);
    return path;
}

/* mpirun as root in a container, the ranks on shared-memory transport, LeakSanitizer off. */
#define MPIRUN "mpirun --allow-run-as-root --oversubscribe --bind-to none --mca btl self,vader " \
               "-x ASAN_OPTIONS=detect_leaks=0"

/* Runs dist_check with args (under mpirun -np ranks, or alone when ranks is 0), its output to
 * dir/name.txt and its parameters to dir/name.rank<R>.bin; returns the exit status. */
static int run_check(const char *dir, const char *name, int ranks, const char *args) {
    char cmd[8192], launcher[256] = "";
    if (ranks > 0) snprintf(launcher, sizeof launcher, MPIRUN " -np %d ", ranks);
    snprintf(cmd, sizeof cmd, "%s'%s' %s --out '%s/%s' %s > '%s/%s.txt' 2>&1", launcher,
             dist_check_path(), ranks > 0 ? "" : "--single", dir, name, args, dir, name);
    int status = system(cmd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The floats of dir/name.rank<rank>.bin into a malloc'd array; *n its length. */
static float *read_params(const char *dir, const char *name, int rank, long *n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.rank%d.bin", dir, name, rank);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "no %s", path);
    fseek(f, 0, SEEK_END);
    *n = ftell(f) / (long)sizeof(float);
    rewind(f);
    float *v = malloc((size_t)*n * sizeof *v);
    cr_assert_not_null(v);
    cr_assert_eq(fread(v, sizeof *v, (size_t)*n, f), (size_t)*n);
    fclose(f);
    return v;
}

/* The line rank `rank` printed (starting "rank R: "), into line. */
static void rank_line(const char *dir, const char *name, int rank, char *line, size_t size) {
    char path[4096], prefix[32];
    snprintf(path, sizeof path, "%s/%s.txt", dir, name);
    snprintf(prefix, sizeof prefix, "rank %d: ", rank);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "no %s", path);
    line[0] = '\0';
    char buf[4096];
    while (fgets(buf, sizeof buf, f))
        if (strncmp(buf, prefix, strlen(prefix)) == 0) snprintf(line, size, "%s", buf);
    fclose(f);
    cr_assert(line[0], "rank %d printed nothing in %s", rank, path);
}

/* Two ranks and one process on the same global batches: the ranks agree bit for bit, and
 * both match the single process to 1e-5 relative to the largest parameter. */
static void expect_data_parallel_matches(const char *args) {
    char dir[64];
    temp_dir_make(dir, "tapegrad-dist");
    cr_assert_eq(run_check(dir, "two", 2, args), 0, "mpirun -np 2 dist_check %s failed (see %s/two.txt)", args, dir);
    cr_assert_eq(run_check(dir, "one", 0, args), 0, "dist_check --single %s failed", args);
    long n0, n1, n;
    float *r0 = read_params(dir, "two", 0, &n0), *r1 = read_params(dir, "two", 1, &n1);
    float *one = read_params(dir, "one", 0, &n);
    cr_assert(n0 == n && n1 == n && n > 1000, "parameter counts %ld %ld %ld", n0, n1, n);
    cr_expect(memcmp(r0, r1, (size_t)n * sizeof *r0) == 0, "the ranks' parameters differ");
    double largest = 0, worst = 0;
    for (long i = 0; i < n; i++) {
        largest = fmax(largest, fabs(one[i]));
        worst = fmax(worst, fabs((double)r0[i] - one[i]));
    }
    cr_expect(worst <= 1e-5 * largest, "max |two - one| = %g, 1e-5 x max |one| = %g", worst, 1e-5 * largest);
    cr_expect(worst > 0 || largest > 0);
    free(r0);
    free(r1);
    free(one);
    temp_dir_remove(dir);
}

Test(dist, two_ranks_match_one_process_after_20_steps, .timeout = 60) {
    expect_data_parallel_matches("--steps 20 --batch 32");
}

Test(dist, two_ranks_match_with_global_norm_clipping, .timeout = 60) {
    char dir[64], line[4096];
    expect_data_parallel_matches("--steps 20 --batch 32 --clip 0.05");
    /* the clipping did act: the norm was over the limit at most steps */
    temp_dir_make(dir, "tapegrad-dist");
    cr_assert_eq(run_check(dir, "clip", 2, "--steps 20 --batch 32 --clip 0.05"), 0);
    int clipped = -1;
    rank_line(dir, "clip", 1, line, sizeof line);
    const char *at = strstr(line, "clipped ");
    cr_assert_not_null(at, "%s", line);
    clipped = atoi(at + 8);
    cr_expect(clipped >= 10, "clipped at %d of 20 steps: %s", clipped, line);
    temp_dir_remove(dir);
}

Test(dist, nan_on_one_rank_stops_both_with_the_same_message, .timeout = 60) {
    char dir[64], line0[4096], line1[4096];
    temp_dir_make(dir, "tapegrad-dist");
    cr_expect_neq(run_check(dir, "nan", 2, "--steps 20 --nan-rank 1 --nan-step 5"), 0);
    rank_line(dir, "nan", 0, line0, sizeof line0);
    rank_line(dir, "nan", 1, line1, sizeof line1);
    cr_expect(strstr(line0, "stopped: rank 1 of 2: non-finite gradient") != NULL, "%s", line0);
    cr_expect(strstr(line0, "at step 5") != NULL, "%s", line0);
    cr_expect_str_eq(line0 + strlen("rank 0: "), line1 + strlen("rank 1: "));
    temp_dir_remove(dir);
}

/* A parameter rank 1's forward never reaches, which rank 0 (and one process on the whole batch)
 * reaches with a zero gradient: with weight decay and momentum every rank must step it, as the
 * one process does. Before the ranks agreed on what was reached, rank 1's optimizer skipped it
 * (unset since zero_grad, a zero mean) and the replicas parted at the first step. */
Test(dist, a_parameter_only_one_rank_reaches_is_stepped_on_every_rank, .timeout = 60) {
    expect_data_parallel_matches("--steps 20 --batch 32 --unused-rank 1");
}

/* The step guard under two ranks: a NaN on rank 0 at step 5 (rank 1's own rows are finite: it
 * sees the NaN only in the reduced mean) and an outlier step at 12 (the loss times 1024) are
 * skipped by both ranks, which agree bit for bit and match one process that skips the same
 * steps. Without reduce_nonfinite the NaN would have stopped both ranks instead. */
Test(dist, the_step_guard_skips_the_same_steps_on_every_rank, .timeout = 60) {
    const char *args = "--steps 20 --batch 32 --guard --nan-rank 0 --nan-step 5 --spike-step 12";
    char dir[64], line[4096];
    expect_data_parallel_matches(args);
    temp_dir_make(dir, "tapegrad-dist");
    cr_assert_eq(run_check(dir, "guard", 2, args), 0, "see %s/guard.txt", dir);
    cr_assert_eq(run_check(dir, "single", 0, args), 0, "see %s/single.txt", dir);
    for (int rank = 0; rank < 3; rank++) {
        long long skipped = -1, first = -1;
        int steps = -1;
        rank_line(dir, rank < 2 ? "guard" : "single", rank < 2 ? rank : 0, line, sizeof line);
        const char *at = strstr(line, "skipped ");
        cr_assert(at && sscanf(at, "skipped %lld first_skipped %lld", &skipped, &first) == 2, "%s", line);
        cr_assert_eq(sscanf(line, "rank %*d: steps %d", &steps), 1, "%s", line);
        cr_expect_eq(steps, 20, "%s", line);
        cr_expect_eq(skipped, 2, "the NaN step and the outlier: %s", line);
        cr_expect_eq(first, 5, "%s", line);
    }
    temp_dir_remove(dir);
}

/* A parameter hook that zeroes the first layer's weight gradient in place (freezing it): one
 * process never moves that weight, and neither may two ranks. Parameter hooks fire after the
 * walk, when the buckets started from it were copied already, so the hook's zeros were not
 * what got reduced: the bucket of a hooked parameter now waits for tg_dist_wait (it started
 * inside the walk before: launched_in_backward was the number of buckets). */
Test(dist, a_parameter_hook_that_changes_a_gradient_is_reduced, .timeout = 60) {
    char dir[64], line[4096];
    expect_data_parallel_matches("--steps 20 --batch 32 --freeze mlp.layer0.weight");
    temp_dir_make(dir, "tapegrad-dist");
    cr_assert_eq(run_check(dir, "freeze", 2, "--steps 3 --freeze mlp.layer0.weight"), 0);
    int buckets = 0, in_backward = 0;
    rank_line(dir, "freeze", 0, line, sizeof line);
    cr_assert_eq(sscanf(line, "rank %*d: steps %*d buckets %d first_launch_entry %*d "
                        "launched_in_backward %d", &buckets, &in_backward), 2, "%s", line);
    cr_expect(in_backward > 0 && in_backward < buckets, "the others still overlap: %s", line);
    temp_dir_remove(dir);
}

/* An early stop that rank 1 alone wants is taken by both ranks after the same step. */
Test(dist, early_stop_is_agreed, .timeout = 60) {
    char dir[64], line[4096];
    temp_dir_make(dir, "tapegrad-dist");
    cr_assert_eq(run_check(dir, "stop", 2, "--steps 20 --stop-rank 1 --stop-step 6"), 0);
    for (int rank = 0; rank < 2; rank++) {
        rank_line(dir, "stop", rank, line, sizeof line);
        cr_expect(strstr(line, ": steps 7 ") != NULL, "%s", line);
    }
    temp_dir_remove(dir);
}

/* The first bucket's all-reduce starts from a backward hook while entries are still to be
 * walked (first_launch_entry > 0), every bucket starts inside the walk, and after the first
 * step the context's allocator is not called again (the buckets are preallocated). */
Test(dist, first_bucket_starts_before_backward_ends, .timeout = 60) {
    char dir[64], line[4096];
    temp_dir_make(dir, "tapegrad-dist");
    cr_assert_eq(run_check(dir, "overlap", 2, "--steps 5 --bucket 4096"), 0);
    for (int rank = 0; rank < 2; rank++) {
        long long first = -1, entries = 0;
        int buckets = 0, in_backward = 0;
        long allocations = -1;
        rank_line(dir, "overlap", rank, line, sizeof line);
        cr_assert_eq(sscanf(line, "rank %*d: steps %*d buckets %d first_launch_entry %lld "
                            "launched_in_backward %d entries %lld clipped %*d allocations_after_step_1 %ld",
                            &buckets, &first, &in_backward, &entries, &allocations), 5, "%s", line);
        cr_expect(buckets >= 4, "%s", line);
        cr_expect(first > 0 && first < entries, "bucket 0 started at entry %lld of %lld", first, entries);
        cr_expect_eq(in_backward, buckets, "%s", line);
        cr_expect_eq(allocations, 0, "%s", line);
    }
    temp_dir_remove(dir);
}

/* `mpirun -np 2 tapegrad train`: rank 0 alone prints the summary, saves and reports; a
 * global batch that does not split over the ranks is refused before any work; `tapegrad study`
 * runs on rank 0 alone. */
Test(dist, mpirun_train_and_study_report_on_rank_0, .timeout = 90) {
    char dir[64], cmd[8192], path[256];
    temp_dir_make(dir, "tapegrad-dist");
    const char *mpirun = MPIRUN " -np 2";
    snprintf(cmd, sizeof cmd, "cd '%s' && %s '%s/tapegrad' train --steps 20 --batch 64 --width 32 "
             "--depth 3 --save w.safetensors --out report > out.txt 2>&1", dir, mpirun,
             getenv("TAPEGRAD_TEST_PLUGINS"));
    if (system(cmd) != 0) {
        char out[4096] = "", out_path[128];
        snprintf(out_path, sizeof out_path, "%s/out.txt", dir);
        FILE *f = fopen(out_path, "r");
        if (f) {
            out[fread(out, 1, sizeof out - 1, f)] = '\0';
            fclose(f);
        }
        cr_assert_fail("%s failed; it printed:\n%s", cmd, out);
    }
    snprintf(cmd, sizeof cmd, "test $(grep -c '^steps 20, final training loss' '%s/out.txt') = 1", dir);
    cr_expect_eq(system(cmd), 0, "the summary is not printed exactly once (see %s/out.txt)", dir);
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    cr_expect_eq(access(path, F_OK), 0, "no %s", path);
    snprintf(path, sizeof path, "%s/report/index.html", dir);
    cr_expect_eq(access(path, F_OK), 0, "no %s", path);
    /* --load: rank 0 reads it and broadcasts */
    snprintf(cmd, sizeof cmd, "cd '%s' && %s '%s/tapegrad' train --steps 2 --batch 64 --width 32 "
             "--depth 3 --load w.safetensors > load.txt 2>&1", dir, mpirun, getenv("TAPEGRAD_TEST_PLUGINS"));
    cr_expect_eq(system(cmd), 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "cd '%s' && %s '%s/tapegrad' train --steps 2 --batch 63 > odd.txt 2>&1; "
             "test $? -ne 0 && grep -q 'must split evenly over the 2 ranks' odd.txt", dir, mpirun,
             getenv("TAPEGRAD_TEST_PLUGINS"));
    cr_expect_eq(system(cmd), 0, "--batch 63 over 2 ranks was not refused (see %s/odd.txt)", dir);
    /* the study runs on rank 0 alone: one report, one summary line */
    snprintf(cmd, sizeof cmd, "cd '%s' && %s '%s/tapegrad' study vanishing --quick --out study > study.txt 2>&1 "
             "&& test $(grep -c '^report: study/index.html' study.txt) = 1", dir, mpirun,
             getenv("TAPEGRAD_TEST_PLUGINS"));
    cr_expect_eq(system(cmd), 0, "mpirun -np 2 tapegrad study (see %s/study.txt)", dir);
    temp_dir_remove(dir);
}

/* The line of dir/file that starts with prefix, into line ("" when there is none). */
static void line_starting(const char *dir, const char *file, const char *prefix, char *line, size_t size) {
    char path[4096], buf[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "r");
    line[0] = '\0';
    while (f && fgets(buf, sizeof buf, f))
        if (strncmp(buf, prefix, strlen(prefix)) == 0) snprintf(line, size, "%s", buf);
    if (f) fclose(f);
}

/* `mpirun -np 2 tapegrad train --guard` on a run that blows up (SGD lr 0.5, 8 ReLU layers): the
 * ranks judge the all-reduced loss and norm and agree on each verdict, so rank 0's report skips
 * exactly the steps one process skips. */
Test(dist, mpirun_train_guard_skips_what_one_process_skips, .timeout = 90) {
    char dir[64], cmd[8192], one[4096], two[4096];
    temp_dir_make(dir, "tapegrad-dist");
    const char *args = "train --depth 8 --activation relu --init he --optimizer sgd --lr 0.5 "
                       "--momentum 0.9 --steps 60 --guard";
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s/tapegrad' %s > one.txt 2>&1 && " MPIRUN " -np 2 '%s/tapegrad' "
             "%s > two.txt 2>&1", dir, getenv("TAPEGRAD_TEST_PLUGINS"), args,
             getenv("TAPEGRAD_TEST_PLUGINS"), args);
    cr_assert_eq(system(cmd), 0, "%s (see %s)", cmd, dir);
    line_starting(dir, "one.txt", "guard: ", one, sizeof one);
    line_starting(dir, "two.txt", "guard: ", two, sizeof two);
    cr_assert(strstr(one, "outliers), the first at step"), "one process skipped nothing: %s", one);
    cr_expect_str_eq(two, one);
    temp_dir_remove(dir);
}

/* ---- ranks that disagree or stall --------------------------------------------------------- */

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* `mpirun APPS` (one app, or an MPMD line "-np 1 A : -np 1 B") in dir, its output into
 * dir/name.txt; the exit status, and in *seconds how long it ran. */
static int run_mpirun(const char *dir, const char *name, const char *apps, double *seconds) {
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "cd '%s' && " MPIRUN " %s > '%s.txt' 2>&1", dir, apps, name);
    double start = now_seconds();
    int status = system(cmd);
    *seconds = now_seconds() - start;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Whether dir/name.txt holds text (a line printed by any rank, or by mpirun). */
static bool output_has(const char *dir, const char *name, const char *text) {
    char path[4096], buf[65536];
    snprintf(path, sizeof path, "%s/%s.txt", dir, name);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, text) != NULL;
}

/* Runs `mpirun APPS` as name, which must fail and end well within 30 s: the stalled ranks of
 * these tests sleep 60 s, so a job that waited for one would take longer. */
static void expect_job_ends(const char *dir, const char *name, const char *apps) {
    double seconds;
    cr_expect_neq(run_mpirun(dir, name, apps, &seconds), 0, "%s (see %s/%s.txt)", apps, dir, name);
    cr_expect(seconds < 30, "%s took %.1f s", apps, seconds);
}

/* Two ranks started with other --steps, or another --seed: before any step, each stops with the
 * same message naming the field, the rank that differs and both values (before: with other steps
 * the rank that finished first left the other waiting forever; with another seed both trained
 * apart and exited 0). */
Test(dist, ranks_started_with_other_steps_or_seed_stop_naming_them, .timeout = 60) {
    static const char *const cases[][3] = {
        {"--steps 30", "--steps 60", "stopped: dist_check_same: the ranks disagree on steps: rank 1's steps = 60, rank 0's = 30"},
        {"--seed 1", "--seed 2", "stopped: dist_check_same: the ranks disagree on seed: rank 1's seed = 2, rank 0's = 1"},
    };
    char dir[64], apps[8192], line[4096];
    temp_dir_make(dir, "tapegrad-dist");
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        snprintf(apps, sizeof apps, "-np 1 '%s' --out apart %s : -np 1 '%s' --out apart %s", dist_check_path(),
                 cases[k][0], dist_check_path(), cases[k][1]);
        expect_job_ends(dir, "apart", apps);
        for (int rank = 0; rank < 2; rank++) {
            rank_line(dir, "apart", rank, line, sizeof line);
            cr_expect(strstr(line, cases[k][2]) != NULL, "%s", line);
        }
    }
    temp_dir_remove(dir);
}

/* Rank 1 sleeps 60 s before step 2; with a timeout of 2 s rank 0 gives up, naming the reduction,
 * the step and rank 1, and the job ends long before rank 1 would wake (about 4 s). */
Test(dist, a_stalled_rank_ends_the_job_after_the_timeout, .timeout = 60) {
    char dir[64], apps[8192], line[4096];
    temp_dir_make(dir, "tapegrad-dist");
    snprintf(apps, sizeof apps, "-np 2 '%s' --out stall --timeout 2 --stall-rank 1 --stall-seconds 60",
             dist_check_path());
    expect_job_ends(dir, "stall", apps);
    rank_line(dir, "stall", 0, line, sizeof line);
    cr_expect(strstr(line, "stopped: dist: all-reduce of bucket 0 at step 2: no progress from rank 1 for 2 s "
                           "(it does not answer") != NULL, "%s", line);
    temp_dir_remove(dir);
}

/* Three ranks, rank 2 stalls: ranks 0 and 1 wait in the same reduction and answer each other's
 * census, so the message names rank 2 alone. */
Test(dist, the_timeout_names_only_the_rank_that_does_not_answer, .timeout = 60) {
    char dir[64], apps[8192];
    temp_dir_make(dir, "tapegrad-dist");
    snprintf(apps, sizeof apps, "-np 3 '%s' --out census --batch 48 --timeout 2 --stall-rank 2 --stall-seconds 60",
             dist_check_path());
    expect_job_ends(dir, "census", apps);
    cr_expect(output_has(dir, "census", "no progress from rank 2 for 2 s"), "see %s/census.txt", dir);
    cr_expect(!output_has(dir, "census", "no progress from ranks"), "see %s/census.txt", dir);
    temp_dir_remove(dir);
}

/* Without the check at start, ranks with other --steps run different collectives: the one that
 * ends first fails its final check instead of waiting in MPI_Finalize (or the other times out),
 * and the job ends. */
Test(dist, unchecked_ranks_with_other_steps_end_the_job, .timeout = 60) {
    char dir[64], apps[8192];
    temp_dir_make(dir, "tapegrad-dist");
    snprintf(apps, sizeof apps, "-np 1 '%s' --out ends --no-check --timeout 2 --steps 3 : "
             "-np 1 '%s' --out ends --no-check --timeout 2 --steps 6", dist_check_path(), dist_check_path());
    expect_job_ends(dir, "ends", apps);
    cr_expect(output_has(dir, "ends", "rank 0: finalize: dist") || output_has(dir, "ends", "rank 1: stopped: dist: "),
              "see %s/ends.txt", dir);
    temp_dir_remove(dir);
}

/* Wrong calls on one rank only: every rank gets its verdict, none waits (dist_check --misuse). */
Test(dist, misuse_on_one_rank_never_leaves_the_other_waiting, .timeout = 60) {
    char dir[64];
    temp_dir_make(dir, "tapegrad-dist");
    cr_expect_eq(run_check(dir, "misuse", 2, "--misuse --timeout 20"), 0, "see %s/misuse.txt", dir);
    cr_expect(output_has(dir, "misuse", "rank 0: misuse ok"), "see %s/misuse.txt", dir);
    cr_expect(output_has(dir, "misuse", "rank 1: misuse ok"), "see %s/misuse.txt", dir);
    temp_dir_remove(dir);
}

/* `tapegrad train` on ranks started apart: other --steps, --seed or data file each stop every
 * rank before training with "mpi: ..." naming the field and rank 1. */
Test(dist, mpirun_train_refuses_ranks_started_apart, .timeout = 90) {
    char dir[64], apps[8192], path[4096];
    const char *tool = getenv("TAPEGRAD_TEST_PLUGINS");
    temp_dir_make(dir, "tapegrad-dist");
    for (int k = 0; k < 2; k++) { /* two data sets of 8 rows that differ in the last label */
        snprintf(path, sizeof path, "%s/%c.csv", dir, 'a' + k);
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        for (int row = 0; row < 8; row++) fprintf(f, "%d,%d,%d\n", row, 8 - row, row == 7 ? k : row % 2);
        fclose(f);
    }
    static const char *const cases[][3] = {
        {"--steps 30", "--steps 60", "mpi: dist_check_same: the ranks disagree on steps: rank 1's steps = 60, rank 0's = 30"},
        {"--seed 1", "--seed 2", "mpi: dist_check_same: the ranks disagree on seed: rank 1's seed = 2, rank 0's = 1"},
        {"--data csv:a.csv", "--data csv:b.csv", "mpi: dist_check_same: the ranks disagree on data: rank 1's data = 0x"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const char *common = "train --steps 5 --batch 2 --width 8 --depth 2 --data csv:a.csv";
        snprintf(apps, sizeof apps, "-np 1 '%s/tapegrad' %s %s : -np 1 '%s/tapegrad' %s %s", tool, common,
                 cases[k][0], tool, common, cases[k][1]);
        expect_job_ends(dir, "train", apps);
        for (int rank = 0; rank < 2; rank++) {
            char words[512];
            snprintf(words, sizeof words, "tapegrad train (rank %d): %s", rank, cases[k][2]);
            cr_expect(output_has(dir, "train", words), "no '%s' in %s/train.txt", words, dir);
        }
    }
    temp_dir_remove(dir);
}

/* `tapegrad train --dist-timeout 2` with rank 1 asleep for 60 s in a hook at step 2 (the test
 * plugin libstall.so): rank 0 names the stall and rank 1, and ends the job (MPI_Abort). */
Test(dist, mpirun_train_ends_a_stalled_job, .timeout = 90) {
    char dir[64], apps[8192];
    const char *tool = getenv("TAPEGRAD_TEST_PLUGINS");
    temp_dir_make(dir, "tapegrad-dist");
    snprintf(apps, sizeof apps, "-np 2 -x TAPEGRAD_TEST_STALL=1:60 '%s/tapegrad' train --steps 20 --width 8 "
             "--depth 2 --dist-timeout 2 --plugin '%s/libstall.so' --hook '*:stall'", tool, tool);
    expect_job_ends(dir, "stall", apps);
    cr_expect(output_has(dir, "stall", "tapegrad train (rank 0): step: dist: "), "see %s/stall.txt", dir);
    cr_expect(output_has(dir, "stall", "at step 2: no progress from rank 1 for 2 s"), "see %s/stall.txt", dir);
    cr_expect(output_has(dir, "stall", "ending the job (MPI_Abort)"), "see %s/stall.txt", dir);
    temp_dir_remove(dir);
}

Test(dist, digests_tell_inputs_apart) {
    const char a[] = "tapegrad", b[] = "tapegrae";
    uint64_t da = tg_dist_digest(0, a, sizeof a), db = tg_dist_digest(0, b, sizeof b);
    cr_expect_neq(da, db);
    cr_expect_eq(da, tg_dist_digest(0, a, sizeof a), "deterministic");
    cr_expect_neq(tg_dist_digest(1, a, sizeof a), da, "the seed counts");
    cr_expect_neq(tg_dist_digest(0, a, 3), tg_dist_digest(0, a, 4), "the size counts");
    cr_expect_eq(tg_dist_digest(0, NULL, 5), tg_dist_digest(0, NULL, 0), "NULL is no bytes");
    /* chained: the digest of a then b differs from b then a */
    cr_expect_neq(tg_dist_digest(da, b, sizeof b), tg_dist_digest(db, a, sizeof a));
}

Test(dist, null_handles_are_safe) {
    tg_dist_stats stats;
    bool any = true;
    double v = 1;
    cr_expect_eq(tg_dist_rank(NULL), 0);
    cr_expect_eq(tg_dist_size(NULL), 1);
    cr_expect_eq(tg_dist_broadcast_params(NULL, NULL, 0), TG_ERR_INVALID);
    cr_expect_eq(tg_dist_attach(NULL, NULL, 0, NULL), TG_ERR_INVALID);
    cr_expect_eq(tg_dist_attach_module(NULL, NULL, NULL), TG_ERR_INVALID);
    cr_expect_eq(tg_dist_wait(NULL, TG_OK), TG_ERR_INVALID);
    cr_expect_eq(tg_dist_agree(NULL, true, &any), TG_ERR_INVALID);
    cr_expect_eq(tg_dist_mean(NULL, &v, 1), TG_ERR_INVALID);
    cr_expect_eq(tg_dist_get_stats(NULL, &stats), TG_ERR_INVALID);
    cr_expect_null(tg_dist_init(NULL, NULL, NULL));
    cr_expect_null(tg_dist_init_comm(NULL, MPI_COMM_WORLD));
    tg_dist_field field = {"steps", 1, false};
    cr_expect_eq(tg_dist_check_same(NULL, &field, 1), TG_ERR_INVALID);
    cr_expect_eq(tg_dist_set_timeout(NULL, 1.0), TG_ERR_INVALID);
    cr_expect_eq(tg_dist_finalize(NULL), TG_OK);
}

#endif
