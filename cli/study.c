/*
 * cli/study.c — `tapegrad study`: runs the experiments (all runs of all experiments share a
 * pool of worker threads, one training per thread: every run has its own context, so nothing
 * is shared), prints a table per experiment as soon as it is complete, writes the report.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/files.h"
#include "cli/isometry.h"
#include "cli/lm_study.h"
#include "cli/sharpness.h"
#include "cli/progress.h"
#include "cli/report.h"
#include "cli/parallel.h"
#include "cli/study.h"

typedef struct job {
    int experiment, run;
} job;

typedef struct pool {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    experiment *experiments;
    job *jobs;
    int n_jobs, next;
    int *remaining;          /* runs still to finish, per experiment */
    progress bar;
} pool;

typedef struct run_progress {
    pool *p;
    int last_step;
    double last_loss;
} run_progress;

static void on_progress(void *user, int step, double loss) {
    run_progress *rp = user;
    progress_advance(&rp->p->bar, step - rp->last_step, loss);
    rp->last_step = step;
    rp->last_loss = loss;
}

static void *worker(void *arg) {
    pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        int k = p->next < p->n_jobs ? p->next++ : -1;
        pthread_mutex_unlock(&p->lock);
        if (k < 0) return NULL;
        experiment *e = &p->experiments[p->jobs[k].experiment];
        int r = p->jobs[k].run;
        run_progress rp = {p, 0, NAN};
        if (e->lm) lm_study_train(e, r, on_progress, &rp);
        else if (e->sharp) sharpness_train(e, r, on_progress, &rp);
        else if (e->iso) {
            run_training(&e->runs[r], &e->results[r], on_progress, &rp);
            isometry_measure(e, r);
        }
        else run_training(&e->runs[r], &e->results[r], on_progress, &rp);
        /* a run stopped early by a NaN still counts its whole budget as done */
        progress_advance(&p->bar, e->runs[r].steps - rp.last_step, rp.last_loss);
        pthread_mutex_lock(&p->lock);
        p->remaining[p->jobs[k].experiment]--;
        pthread_cond_broadcast(&p->changed);
        pthread_mutex_unlock(&p->lock);
    }
}

/* ---- options ------------------------------------------------------------------------------- */

typedef struct study_options {
    const char *names[16];
    int n_names;
    const char *out;
    uint64_t seed;
    bool quick;
    int jobs;
    bool fashion;                /* --data fashion-mnist[:DIR]: the cnn experiment on it */
    const char *fashion_dir;     /* its DIR (NULL: the Debian package's) */
} study_options;

static void study_usage(FILE *f) {
    fprintf(f, "usage: tapegrad study [NAME...] [--out DIR] [--seed N] [--quick] [--jobs N]\n\n"
               "Reproduces the classic findings on vanishing and exploding gradients and writes\n"
               "a report (index.html, summary.json, one CSV per experiment) to DIR\n"
               "(default tapegrad-report/).\n\nexperiments (default: all):");
    for (int i = 0; i < experiment_count; i++) fprintf(f, " %s", experiment_names[i]);
    fprintf(f, "\n\n  --seed N   seed of every run (default 1)\n"
               "  --quick    fewer steps, same code paths (a smoke test, ~6 s on 2 quiet cores)\n"
               "  --jobs N   runs trained at once (default: the number of cores)\n"
               "  --data fashion-mnist[:DIR]   with `cnn` alone: plain and residual nets of 20 and\n"
               "             56 layers on Fashion-MNIST (Debian's dataset-fashion-mnist, or its\n"
               "             files in DIR), a longer run (minutes) than the digits' default\n");
}

static int bad(const char *fmt, const char *arg) {
    fprintf(stderr, "tapegrad study: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    return EXIT_USAGE;
}

static bool parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = s && *s && *s != '-' ? strtoull(s, &end, 10) : 0;
    if (!s || !*s || *s == '-' || *end || errno) return false;
    *out = v;
    return true;
}

static int parse_study_options(int argc, char **argv, study_options *o) {
    *o = (study_options){.out = "tapegrad-report", .seed = 1, .jobs = (int)sysconf(_SC_NPROCESSORS_ONLN)};
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t n;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            study_usage(stdout);
            return -1;
        } else if (strcmp(arg, "--quick") == 0) {
            o->quick = true;
        } else if (strcmp(arg, "--out") == 0) {
            if (!value || !*value) return bad("--out needs a directory", "");
            o->out = argv[++i];
        } else if (strcmp(arg, "--seed") == 0) {
            if (!parse_u64(value, &o->seed)) return bad("--seed needs a whole number >= 0, got '%s'", value ? value : "");
            i++;
        } else if (strcmp(arg, "--data") == 0) {
            if (!fashion_mnist_arg(value, &o->fashion_dir))
                return bad("--data: the study's data are its own; fashion-mnist[:DIR] (for cnn) is the one "
                           "choice, got '%s'", value ? value : "");
            o->fashion = true;
            i++;
        } else if (strcmp(arg, "--jobs") == 0) {
            if (!parse_u64(value, &n) || n < 1 || n > 64) return bad("--jobs needs a number from 1 to 64, got '%s'", value ? value : "");
            o->jobs = (int)n;
            i++;
        } else if (arg[0] == '-') {
            return bad("unknown option '%s' (see tapegrad study --help)", arg);
        } else {
            bool known = false;
            for (int k = 0; k < experiment_count; k++) known |= strcmp(arg, experiment_names[k]) == 0;
            if (!known) return bad("unknown experiment '%s' (see tapegrad study --help)", arg);
            if (o->n_names == 16) return bad("too many experiment names", "");
            o->names[o->n_names++] = arg;
        }
    }
    if (o->jobs < 1) o->jobs = 1;
    if (o->fashion && (o->n_names != 1 || strcmp(o->names[0], "cnn") != 0))
        return bad("--data fashion-mnist is for the cnn experiment alone: tapegrad study cnn --data fashion-mnist%s", "");
    return 0;
}


/* ---- running ------------------------------------------------------------------------------- */

static void print_table(const experiment *e) {
    char a[32], b[32], c[32];
    printf("\n== %s: %s\n", e->name, e->title);
    printf("%-32s %12s %10s %9s %7s %9s %7s\n", "run", "first/last", "held-out", "accuracy", "onset", "first NaN", "time");
    for (int i = 0; i < e->n_runs; i++) {
        const run_result *r = &e->results[i];
        char onset[24], nan_step[24];
        snprintf(onset, sizeof onset, r->explosion_onset_step >= 0 ? "%lld" : "-", (long long)r->explosion_onset_step);
        snprintf(nan_step, sizeof nan_step, r->first_nan_step >= 0 ? "%lld" : "-", (long long)r->first_nan_step);
        printf("%-32s %12s %10s %9s %7s %9s %6.1fs\n", r->config.name, format_number(r->first_last_ratio, a, sizeof a),
               format_number(r->final_loss, b, sizeof b),
               isfinite(r->test_accuracy) ? format_number(100 * r->test_accuracy, c, sizeof c) : "-", onset,
               nan_step, r->seconds);
        if (r->error[0]) printf("    error: %s\n", r->error);
    }
    printf("finding:\n  ");
    for (const char *c = e->finding; *c; c++) fputs(*c == '\n' ? "\n  " : (char[2]){*c, 0}, stdout);
    printf("\n");
    fflush(stdout);
}

static void run_all(experiment *experiments, int n, int jobs) {
    pool p = {.experiments = experiments};
    pthread_mutex_init(&p.lock, NULL);
    pthread_cond_init(&p.changed, NULL);
    long total_steps = 0;
    for (int i = 0; i < n; i++) p.n_jobs += experiments[i].n_runs;
    p.jobs = calloc((size_t)p.n_jobs, sizeof *p.jobs);
    p.remaining = calloc((size_t)n, sizeof *p.remaining);
    int k = 0;
    /* the most expensive runs first, so the pool does not end waiting on one long run */
    for (int i = n - 1; i >= 0; i--)
        for (int r = experiments[i].n_runs - 1; r >= 0; r--) {
            p.jobs[k++] = (job){i, r};
            total_steps += experiments[i].runs[r].steps;
        }
    for (int i = 0; i < n; i++) p.remaining[i] = experiments[i].n_runs;
    /* the cores are shared between the runs trained at once, never oversubscribed */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int threads_per_run = jobs >= cores ? 1 : (int)(cores / jobs);
    for (int i = 0; i < n; i++)
        for (int r = 0; r < experiments[i].n_runs; r++) experiments[i].runs[r].threads = threads_per_run;
    progress_start(&p.bar, "study", total_steps);
    pthread_t threads[64];
    int started = 0;
    for (; started < jobs && started < p.n_jobs; started++)
        if (pthread_create(&threads[started], NULL, worker, &p) != 0) break;
    if (started == 0) worker(&p); /* no threads to be had: do the work here */
    /* print each experiment's table, in report order, as soon as its runs are done */
    pthread_mutex_lock(&p.lock);
    for (int i = 0; i < n; i++) {
        while (p.remaining[i] > 0) pthread_cond_wait(&p.changed, &p.lock);
        pthread_mutex_unlock(&p.lock);
        experiment_conclude(&experiments[i]);
        if (p.bar.terminal) fprintf(stderr, "\r%*s\r", 100, "");
        print_table(&experiments[i]);
        pthread_mutex_lock(&p.lock);
    }
    pthread_mutex_unlock(&p.lock);
    for (int t = 0; t < started; t++) pthread_join(threads[t], NULL);
    progress_finish(&p.bar);
    free(p.jobs);
    free(p.remaining);
    pthread_cond_destroy(&p.changed);
    pthread_mutex_destroy(&p.lock);
}

int run_study(int argc, char **argv) {
    study_options o;
    int status = parse_study_options(argc, argv, &o);
    if (status) return status < 0 ? 0 : status;
    /* under mpirun the study runs on rank 0 alone: its runs are small and already spread over
     * threads (--jobs), and their results would have to be gathered for the one report */
    if (parallel_env_rank() > 0) return 0;
    if (o.fashion) { /* the data first: a missing package is one message, not one per run */
        tg_ctx *ctx = tg_ctx_new();
        tg_dataset *test = ctx ? tg_dataset_fashion_mnist(ctx, o.fashion_dir, false) : NULL;
        if (!test) fprintf(stderr, "tapegrad study: --data fashion-mnist: %s\n", ctx ? tg_errmsg(ctx) : "out of memory");
        tg_dataset_free(test);
        tg_ctx_free(ctx);
        if (!test) return 1;
    }
    if ((status = prepare_out_dir("study", o.out))) return status;
    int n = o.n_names ? o.n_names : experiment_count;
    experiment *experiments = calloc((size_t)n, sizeof *experiments);
    if (!experiments) return 1;
    for (int i = 0; i < n; i++)
        if (o.fashion) experiment_setup_cnn_fashion(&experiments[i], o.seed, o.quick, o.fashion_dir);
        else experiment_setup(&experiments[i], o.n_names ? o.names[i] : experiment_names[i], o.seed, o.quick);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run_all(experiments, n, o.jobs);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    status = write_report("study", o.out, experiments, n, o.seed, o.quick, seconds);
    if (status == 0) printf("\nreport: %s/index.html (summary.json and one CSV per experiment beside it); %.1f s\n", o.out, seconds);
    /* the transformer experiment's corpus missing fails the study, the other sections written */
    for (int i = 0; i < n; i++)
        if (experiments[i].lm && experiments[i].n_runs && experiments[i].results[0].error[0]) {
            fprintf(stderr, "tapegrad study: %s: %s\n", experiments[i].name, experiments[i].results[0].error);
            status = 1;
        }
    for (int i = 0; i < n; i++) {
        for (int r = 0; r < experiments[i].n_runs; r++) run_result_free(&experiments[i].results[r]);
        lm_study_free(&experiments[i]);
        sharpness_free(&experiments[i]);
        isometry_free(&experiments[i]);
    }
    free(experiments);
    return status;
}
