/*
 * tests/mpi/dist_check.c — the program tests/test_dist.c starts, under `mpirun -np N` (data
 * parallel through tapegrad_dist.h) or alone with --single (no MPI at all: the reference).
 *
 *   dist_check --out PREFIX [--single] [--steps N] [--batch B] [--clip X] [--bucket BYTES]
 *              [--nan-rank R --nan-step S] [--stop-rank R --stop-step S] [--unused-rank R]
 *              [--guard] [--spike-step S] [--freeze PATTERN] [--seed N] [--no-check]
 *              [--timeout SECONDS] [--stall-rank R --stall-step S --stall-seconds T] [--misuse]
 *
 * --unused-rank R: a parameter "extra" (with weight decay on every parameter) that rank R's
 * forward never reaches and the others' reach with a zero gradient: one process on the whole
 * batch reaches it, so it must be decayed on every rank. --guard: a step guard judges the
 * all-reduced loss and gradient norm, the ranks agree on its verdict, non-finite gradients are
 * reduced rather than a stop (tg_dist_config.reduce_nonfinite). --spike-step S: at step S every
 * process multiplies its loss by 1024 (exact in binary, so one process and N ranks still agree):
 * an outlier gradient norm. --freeze PATTERN: a parameter hook (tg_hook_params) zeroes the
 * gradients of the parameters it matches, in place: they must not move, on any rank.
 * --seed N: mixed into the synthetic data. Before training the ranks check that they share
 * --steps, --batch and --seed (tg_dist_check_same), unless --no-check. --timeout: the handle's
 * (tg_dist_set_timeout). --stall-rank R: that rank sleeps T seconds (default 30) before step S
 * (default 2): the others must give up after the timeout, naming it. --misuse: instead of
 * training, wrong calls on some ranks only (tg_dist_set_timeout, tg_dist_check_same,
 * tg_dist_attach), each of which every rank must survive with the expected status and message;
 * prints "rank R: misuse ok" or the first case that went otherwise.
 *
 * Trains a small tanh MLP with SGD + momentum on synthetic global batches that depend only on
 * the step (so every process sees the same ones), each rank on its rows of every batch. Writes
 * the final parameters to PREFIX.rank<R>.bin (raw floats, registration order) and one line
 * per rank to stdout: "rank R: steps S buckets B first_launch_entry E launched_in_backward L
 * entries N clipped C allocations_after_step_1 A skipped K first_skipped F", or "rank R: stopped: MESSAGE" (exit 1) when
 * the step failed, or "rank R: finalize: MESSAGE" (exit 1) when tg_dist_finalize did (its final
 * check failed). A counts what the context's allocator handed out after the first step.
 */
#include <math.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "tapegrad_dist.h"

#define IN 16
#define CLASSES 4
#define MAX_PARAMS 16

/* The context's allocator, counting (tg_alloc_fn: new_size 0 frees). */
static long allocations;

static void *counting_alloc(void *user, void *ptr, size_t old_size, size_t new_size) {
    (void)user;
    (void)old_size;
    if (new_size == 0) {
        free(ptr);
        return NULL;
    }
    allocations++;
    return realloc(ptr, new_size);
}

typedef struct options {
    const char *out;
    bool single;
    int steps;
    int64_t batch;
    double clip;
    size_t bucket;
    int nan_rank, nan_step;
    int stop_rank, stop_step;    /* that rank alone wants to stop after that step */
    int unused_rank;             /* that rank never reaches the parameter "extra" */
    bool guard;
    int spike_step;
    const char *freeze;          /* a hook zeroes these parameters' gradients */
    uint64_t seed;               /* mixed into the data */
    bool no_check;               /* skip tg_dist_check_same */
    bool misuse;                 /* the misuse cases instead of training */
    double timeout;              /* > 0: tg_dist_set_timeout */
    int stall_rank, stall_step;  /* that rank sleeps stall_seconds before that step */
    double stall_seconds;
} options;

/* A value in [-1, 1) from (step, row, column): the same on every rank, for any world size. */
static float sample(uint64_t seed, int step, int64_t row, int col) {
    uint64_t h = seed * 0xA24BAED4963EE407ull ^ (uint64_t)step * 0x9E3779B97F4A7C15ull ^ (uint64_t)row * 0xBF58476D1CE4E5B9ull ^
                 (uint64_t)(col + 1) * 0x94D049BB133111EBull;
    h ^= h >> 31;
    h *= 0xD6E8FEB86659FD93ull;
    h ^= h >> 29;
    return (float)((double)(h >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* Rows [first, first + rows) of global batch `step`; the label is a function of the inputs. */
static void fill_batch(uint64_t seed, int step, int64_t first, int64_t rows, float *x, float *y) {
    for (int64_t r = 0; r < rows; r++) {
        float a = 0, b = 0;
        for (int c = 0; c < IN; c++) {
            x[r * IN + c] = sample(seed, step, first + r, c);
            *(c % 2 ? &a : &b) += x[r * IN + c];
        }
        y[r] = (float)((a > 0) * 2 + (b > 0));
    }
}

static int parse(int argc, char **argv, options *o) {
    *o = (options){.steps = 20, .batch = 32, .bucket = 8192, .nan_rank = -1, .nan_step = -1,
                 .stop_rank = -1, .stop_step = -1, .unused_rank = -1, .spike_step = -1,
                 .stall_rank = -1, .stall_step = 2, .stall_seconds = 30};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--single") == 0) { o->single = true; continue; }
        if (strcmp(a, "--guard") == 0) { o->guard = true; continue; }
        if (strcmp(a, "--no-check") == 0) { o->no_check = true; continue; }
        if (strcmp(a, "--misuse") == 0) { o->misuse = true; continue; }
        if (!v) return -1;
        i++;
        if (strcmp(a, "--out") == 0) o->out = v;
        else if (strcmp(a, "--steps") == 0) o->steps = atoi(v);
        else if (strcmp(a, "--batch") == 0) o->batch = atoll(v);
        else if (strcmp(a, "--clip") == 0) o->clip = atof(v);
        else if (strcmp(a, "--bucket") == 0) o->bucket = (size_t)atoll(v);
        else if (strcmp(a, "--nan-rank") == 0) o->nan_rank = atoi(v);
        else if (strcmp(a, "--nan-step") == 0) o->nan_step = atoi(v);
        else if (strcmp(a, "--stop-rank") == 0) o->stop_rank = atoi(v);
        else if (strcmp(a, "--stop-step") == 0) o->stop_step = atoi(v);
        else if (strcmp(a, "--unused-rank") == 0) o->unused_rank = atoi(v);
        else if (strcmp(a, "--spike-step") == 0) o->spike_step = atoi(v);
        else if (strcmp(a, "--freeze") == 0) o->freeze = v;
        else if (strcmp(a, "--seed") == 0) o->seed = strtoull(v, NULL, 10);
        else if (strcmp(a, "--timeout") == 0) o->timeout = atof(v);
        else if (strcmp(a, "--stall-rank") == 0) o->stall_rank = atoi(v);
        else if (strcmp(a, "--stall-step") == 0) o->stall_step = atoi(v);
        else if (strcmp(a, "--stall-seconds") == 0) o->stall_seconds = atof(v);
        else return -1;
    }
    return o->out && o->steps > 0 && o->batch > 0 ? 0 : -1;
}

static int save(const options *o, int rank, tg_tensor **params, int n) {
    char path[4096];
    snprintf(path, sizeof path, "%s.rank%d.bin", o->out, rank);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    for (int i = 0; i < n; i++) fwrite(params[i]->data, sizeof(float), (size_t)params[i]->size, f);
    return fclose(f) == 0 ? 0 : -1;
}

/* One step on this rank's rows; the status of forward and backward, the local loss in *loss.
 * extra (NULL: none) is added to the logits times 0 except on o->unused_rank: reached, with a
 * zero gradient, on the other ranks and by a single process. */
static tg_status step_once(const options *o, tg_tape *tape, tg_module *mlp, tg_tensor *extra,
                           int step, int rank, int size, float *x, float *y, double *loss) {
    int64_t rows = o->batch / size;
    fill_batch(o->seed, step, rank * rows, rows, x, y);
    if (rank == o->nan_rank && step == o->nan_step) x[0] = NAN;
    tg_tape_reset(tape);
    tg_tensor *xt = tg_tape_from_data(tape, TG_SHAPE(rows, IN), x);
    tg_tensor *yt = tg_tape_from_data(tape, TG_SHAPE(rows), y);
    tg_tensor *logits = tg_module_forward(mlp, tape, xt);
    if (extra && rank != o->unused_rank) logits = tg_add(tape, logits, tg_scale(tape, extra, 0.0f));
    tg_tensor *out = tg_cross_entropy(tape, logits, yt);
    if (step == o->spike_step) out = tg_scale(tape, out, 1024.0f);
    *loss = out ? out->data[0] : NAN;
    return out ? tg_backward(tape, out) : tg_errcode(tg_tape_ctx(tape));
}

static tg_status zero_gradient(tg_ctx *ctx, const tg_hook_event *event, void *user) {
    (void)ctx, (void)user;
    memset(event->values, 0, (size_t)event->size * sizeof *event->values);
    return TG_OK;
}

static double grad_norm(tg_tensor **params, int n) {
    double sum = 0;
    for (int i = 0; i < n; i++)
        for (int64_t k = 0; params[i]->grad && k < params[i]->size; k++)
            sum += (double)params[i]->grad[k] * params[i]->grad[k];
    return sqrt(sum);
}

/* The guard's verdict on the step, the same on every rank: judged on the all-reduced loss and
 * norm, agreed (skip when any rank would), committed. */
static tg_status guard_step(tg_guard *guard, tg_dist *dist, int step, double loss, double norm,
                            bool *skip) {
    tg_guard_verdict verdict = tg_guard_judge(guard, loss, norm);
    *skip = verdict != TG_GUARD_ACCEPT;
    if (dist && tg_dist_agree(dist, *skip, skip) != TG_OK) return TG_ERR_STATE;
    if (*skip && verdict == TG_GUARD_ACCEPT) verdict = TG_GUARD_SKIP_OUTLIER;
    return tg_guard_commit(guard, step, loss, norm, verdict);
}

/* ---- --misuse ------------------------------------------------------------------------------ */

/* Whether status and the context's message are what this rank expects; else says so. */
static bool expect(tg_ctx *ctx, int rank, const char *name, tg_status status, tg_status want,
                   const char *words) {
    bool ok = status == want && (!words || strstr(tg_errmsg(ctx), words));
    if (!ok) printf("rank %d: misuse: %s: %s (want %s with '%s'): %s\n", rank, name, tg_status_str(status),
                    tg_status_str(want), words ? words : "", tg_errmsg(ctx));
    tg_clear_error(ctx);
    return ok;
}

/* Wrong calls on some ranks only: every rank comes back with the verdict it should, none waits. */
static bool misuse(tg_ctx *ctx, tg_dist *dist, int rank, tg_tensor **params, int n) {
    char long_name[TG_DIST_FIELD_NAME_MAX + 1];
    memset(long_name, 'n', TG_DIST_FIELD_NAME_MAX);
    long_name[TG_DIST_FIELD_NAME_MAX] = '\0';
    tg_dist_field one[2] = {{"a", 1, false}, {"b", rank, false}};
    tg_dist_field named[1] = {{rank ? "b" : "a", 1, false}};
    tg_dist_field hashed[1] = {{"data", rank ? 0x1234 : 0x5678, true}};
    tg_dist_field too_long[1] = {{rank ? "a" : long_name, 1, false}};
    tg_dist_config bad_timeout = {.bucket_bytes = 8192, .timeout_seconds = rank == 1 ? -1 : 0};
    tg_dist_config other_buckets = {.bucket_bytes = rank == 1 ? 4096 : 8192};
    bool ok = expect(ctx, rank, "timeout -1", tg_dist_set_timeout(dist, -1), TG_ERR_INVALID, "> 0") &&
        expect(ctx, rank, "timeout NaN", tg_dist_set_timeout(dist, NAN), TG_ERR_INVALID, NULL) &&
        expect(ctx, rank, "timeout inf", tg_dist_set_timeout(dist, INFINITY), TG_OK, NULL) &&
        expect(ctx, rank, "timeout 10", tg_dist_set_timeout(dist, 10), TG_OK, NULL) &&
        expect(ctx, rank, "same", tg_dist_check_same(dist, one, 1), TG_OK, NULL) &&
        expect(ctx, rank, "NULL fields", tg_dist_check_same(dist, rank == 1 ? NULL : one, 1),
               rank == 1 ? TG_ERR_INVALID : TG_ERR_STATE, rank == 1 ? "1 fields at" : "rank 1 failed before the check") &&
        expect(ctx, rank, "long name", tg_dist_check_same(dist, too_long, 1),
               rank == 0 ? TG_ERR_INVALID : TG_ERR_STATE, rank == 0 ? "too long" : "rank 0 failed before") &&
        expect(ctx, rank, "counts", tg_dist_check_same(dist, one, rank ? 1 : 2), TG_ERR_STATE,
               "different numbers of fields: rank 0 passes 2, rank 1 passes 1") &&
        expect(ctx, rank, "names", tg_dist_check_same(dist, named, 1), TG_ERR_STATE,
               "field 0 is 'a' on rank 0 but 'b' on rank 1") &&
        expect(ctx, rank, "values", tg_dist_check_same(dist, one, 2), TG_ERR_STATE,
               "the ranks disagree on b: rank 1's b = 1, rank 0's = 0") &&
        expect(ctx, rank, "digest", tg_dist_check_same(dist, hashed, 1), TG_ERR_STATE,
               "rank 1's data = 0x0000000000001234, rank 0's = 0x0000000000005678") &&
        expect(ctx, rank, "attach timeout", tg_dist_attach(dist, params, n, &bad_timeout),
               rank == 1 ? TG_ERR_INVALID : TG_ERR_STATE, rank == 1 ? "timeout_seconds is -1" : "rank 1 failed") &&
        expect(ctx, rank, "attach buckets", tg_dist_attach(dist, params, n, &other_buckets), TG_ERR_SHAPE,
               "the ranks disagree on bucket_bytes: rank 1's bucket_bytes = 4096, rank 0's = 8192") &&
        expect(ctx, rank, "attach shapes", tg_dist_attach(dist, params, rank ? n - 1 : n, NULL), TG_ERR_SHAPE,
               "the ranks disagree on parameter count") &&
        expect(ctx, rank, "attach", tg_dist_attach(dist, params, n, NULL), TG_OK, NULL);
    if (ok) printf("rank %d: misuse ok\n", rank);
    return ok;
}

int main(int argc, char **argv) {
    options o;
    if (parse(argc, argv, &o) != 0) {
        fprintf(stderr, "usage: dist_check --out PREFIX [--single] [--steps N] [--batch B] "
                        "[--clip X] [--bucket BYTES] [--nan-rank R --nan-step S] [--stop-rank R "
                        "--stop-step S] [--unused-rank R] [--guard] [--spike-step S] [--freeze PATTERN] "
                        "[--seed N] [--no-check] [--timeout SECONDS] [--stall-rank R --stall-step S "
                        "--stall-seconds T] [--misuse]\n");
        return 2;
    }
    tg_ctx *ctx = tg_ctx_new_with_allocator(counting_alloc, NULL);
    tg_ctx_set_threads(ctx, 1); /* two ranks on two cores: one thread each */
    tg_dist *dist = o.single ? NULL : tg_dist_init(ctx, &argc, &argv);
    if (!o.single && !dist) {
        fprintf(stderr, "dist_init: %s\n", tg_errmsg(ctx));
        return 1;
    }
    int rank = tg_dist_rank(dist), size = tg_dist_size(dist);
    tg_mlp_config config = {.in = IN, .out = CLASSES, .width = 48, .depth = 4,
                            .activation = TG_ACT_TANH, .seed = 11};
    tg_module *mlp = tg_mlp_new(ctx, "mlp", &config);
    tg_tensor *params[MAX_PARAMS];
    int n = tg_module_params(mlp, params, MAX_PARAMS - 1);
    tg_tensor *extra = NULL;
    if (o.unused_rank >= 0) {
        extra = tg_set_label(tg_full(ctx, TG_SHAPE(CLASSES), 1.0f), "extra");
        if (extra) tg_set_requires_grad(extra, true);
        params[n++] = extra;
    }
    tg_optimizer_config sgd = {.kind = TG_OPT_SGD, .lr = 0.1f, .momentum = 0.9f,
                               .weight_decay = extra ? 0.05f : 0.0f};
    tg_optimizer *opt = tg_optimizer_new(ctx, params, n, &sgd);
    tg_guard *guard = o.guard ? tg_guard_new(ctx, NULL) : NULL;
    tg_tape *tape = tg_tape_new(ctx);
    float *x = malloc((size_t)o.batch * IN * sizeof *x), *y = malloc((size_t)o.batch * sizeof *y);
    tg_status status = mlp && opt && tape && x && y && (!o.guard || guard) && (o.unused_rank < 0 || extra)
        ? TG_OK : TG_ERR_NOMEM;
    if (o.freeze && status == TG_OK && tg_hook_params(ctx, o.freeze, zero_gradient, NULL) < 0)
        status = tg_errcode(ctx);
    if (dist && o.timeout > 0 && status == TG_OK) status = tg_dist_set_timeout(dist, o.timeout);
    if (dist && o.misuse && status == TG_OK) {
        status = misuse(ctx, dist, rank, params, n) ? TG_OK : TG_ERR_STATE;
        o.steps = 0;
    }
    /* what the ranks must share before they train together (a failure above takes part too) */
    tg_dist_field fields[] = {{"steps", o.steps, false}, {"batch", o.batch, false},
                              {"seed", (int64_t)o.seed, false}};
    if (dist && !o.no_check && !o.misuse) {
        tg_status same = tg_dist_check_same(dist, status == TG_OK ? fields : NULL, status == TG_OK ? 3 : -1);
        if (status == TG_OK) status = same;
    }
    if (dist && status == TG_OK && !o.misuse) status = tg_dist_broadcast_params(dist, params, n);
    tg_dist_config dist_config = {.bucket_bytes = o.bucket, .reduce_nonfinite = o.guard};
    if (dist && status == TG_OK && !o.misuse)
        status = extra ? tg_dist_attach(dist, params, n, &dist_config)
                       : tg_dist_attach_module(dist, mlp, &dist_config);
    int clipped = 0, steps = 0;
    long after_first_step = 0;
    for (int step = 0; status == TG_OK && step < o.steps; step++, steps++) {
        double loss = NAN;
        if (rank == o.stall_rank && step == o.stall_step) {
            struct timespec nap = {(time_t)o.stall_seconds, (long)(fmod(o.stall_seconds, 1.0) * 1e9)};
            nanosleep(&nap, NULL);
        }
        status = step_once(&o, tape, mlp, extra, step, rank, size, x, y, &loss);
        if (dist) status = tg_dist_wait(dist, status);
        if (dist && status == TG_OK) status = tg_dist_mean(dist, &loss, 1);
        if (status != TG_OK) break;
        bool skip = false;
        if (guard && (status = guard_step(guard, dist, step, loss, grad_norm(params, n), &skip)) != TG_OK) break;
        if (skip) {
            tg_optimizer_zero_grad(opt);
            continue;
        }
        double norm = 0;
        if (o.clip > 0) tg_clip_grad_norm(params, n, o.clip, 2.0, false, &norm);
        clipped += norm > o.clip;
        tg_optimizer_step(opt);
        tg_optimizer_zero_grad(opt);
        if (step == 0) after_first_step = allocations;
        /* an early stop one rank wants: every rank stops after the same step */
        bool stop = rank == o.stop_rank && step == o.stop_step;
        if (dist && tg_dist_agree(dist, stop, &stop) != TG_OK) status = tg_errcode(ctx);
        if (stop) {
            steps++;
            break;
        }
    }
    tg_guard_stats guarded = {.first_skipped_step = -1};
    tg_guard_get_stats(guard, &guarded);
    tg_dist_stats stats = {.first_launch_entry = -1};
    tg_dist_get_stats(dist, &stats);
    if (status != TG_OK) printf("rank %d: stopped: %s\n", rank, tg_errmsg(ctx));
    else if (save(&o, rank, params, n) != 0) status = TG_ERR_IO;
    else
        printf("rank %d: steps %d buckets %d first_launch_entry %lld launched_in_backward %d "
               "entries %lld clipped %d allocations_after_step_1 %ld skipped %lld first_skipped %lld\n",
               rank, steps, stats.buckets, (long long)stats.first_launch_entry,
               stats.launched_in_backward, (long long)tg_tape_entries(tape), clipped,
               allocations - after_first_step, (long long)guarded.skipped,
               (long long)guarded.first_skipped_step);
    fflush(stdout);
    free(x);
    free(y);
    tg_tape_free(tape);
    tg_optimizer_free(opt);
    tg_guard_free(guard);
    tg_module_free(mlp);
    tg_clear_error(ctx);
    tg_status finalized = tg_dist_finalize(dist);
    if (status == TG_OK && finalized != TG_OK) { /* its final check failed */
        printf("rank %d: finalize: %s\n", rank, tg_errmsg(ctx));
        status = finalized;
    }
    tg_ctx_free(ctx);
    return status == TG_OK ? 0 : 1;
}
