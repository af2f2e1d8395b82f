/*
 * cli/parallel.c — the data-parallel parts of `tapegrad train` under mpirun (see parallel.h).
 *
 * Every rank builds the same model from the same seed and draws the same global batches from
 * the same seeded batcher; each keeps its rows of each batch (`--batch` is the global batch),
 * so N ranks take the step one process takes on the whole batch, up to the order of the
 * floating-point reduction. Batch-norm statistics are per rank, as in DDP without SyncBatchNorm.
 */
#include "cli/parallel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What the launchers put in the environment: Open MPI's names first, then the PMI ones. */
static int env_int(const char *const *names, int n, int fallback) {
    for (int i = 0; i < n; i++) {
        const char *v = getenv(names[i]);
        char *end;
        long x = v && *v ? strtol(v, &end, 10) : -1;
        if (v && *v && !*end && x >= 0 && x < 1 << 24) return (int)x;
    }
    return fallback;
}

int parallel_env_rank(void) {
    static const char *const names[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"};
    return env_int(names, 3, 0);
}

int parallel_env_size(void) {
    static const char *const names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
    return env_int(names, 2, 1);
}

#ifdef TG_HAVE_MPI

#include "tapegrad_dist.h"

struct parallel {
    tg_dist *dist;
};

/* A collective of this process timed out or failed: the job must be ended (MPI_Abort). */
static bool job_broken;

bool parallel_launched(void) { return parallel_env_size() > 1; }

parallel *parallel_start(tg_ctx *ctx, const run_config *config) {
    parallel *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    int threads = config->threads;
    if (!(p->dist = tg_dist_init(ctx, NULL, NULL)) ||
        (config->dist_timeout > 0 && tg_dist_set_timeout(p->dist, config->dist_timeout) != TG_OK)) {
        tg_dist_finalize(p->dist);
        free(p);
        return NULL;
    }
    if (threads == 0) {
        /* the ranks on this machine share its cores: two ranks of two threads on two cores
         * would each run at half speed and wait for each other at every step */
        static const char *const names[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"};
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        int local = env_int(names, 2, tg_dist_size(p->dist));
        threads = cores > local ? (int)(cores / (local > 0 ? local : 1)) : 1;
    }
    tg_ctx_set_threads(ctx, threads);
    return p;
}

int parallel_rank(const parallel *p) { return p ? tg_dist_rank(p->dist) : 0; }

/* ---- what the ranks must share --------------------------------------------------------- */

/* The digest of values (settings as doubles: every int and float of a run_config is exact). */
static uint64_t digest_values(const double *values, size_t n) {
    return tg_dist_digest(0, values, n * sizeof *values);
}

static uint64_t digest_text(uint64_t h, const char *text) {
    return tg_dist_digest(h, text, text ? strlen(text) + 1 : 0);
}

/* --model and what shapes it: --depth, --width, --activation, --init, --norm, ... */
static uint64_t model_digest(const run_config *c) {
    const tg_init *i = &c->init;
    const double values[] = {c->model, c->depth, (double)c->width, c->activation, i->kind, i->a, i->b,
                             i->gain, i->nonlinearity, i->fan_out, c->norm, c->dropout,
                             (double)c->train_subset, c->skip, c->rnn, (double)c->hidden, c->rnn_layers,
                             c->bidirectional, c->data, c->regression, (double)c->seq_len};
    return digest_text(digest_values(values, sizeof values / sizeof values[0]), c->activation_op);
}

static uint64_t optimizer_digest(const run_config *c) {
    const tg_optimizer_config *o = &c->opt;
    const tg_schedule *s = &c->schedule; /* --schedule: all zero without one */
    const double values[] = {o->kind, o->lr, o->momentum, o->nesterov, o->weight_decay, o->beta1,
                             o->beta2, o->eps, o->alpha, s->kind, (double)s->warmup_steps,
                             (double)s->step_size, s->gamma, (double)s->total_steps, s->min_lr};
    return digest_values(values, sizeof values / sizeof values[0]);
}

/* What else changes the steps or the collectives: clipping, the guard, anomaly mode, --curvature,
 * the hooks (--hook) that write gradients. */
static uint64_t options_digest(const run_config *c) {
    const double values[] = {c->clip_value, c->clip_norm, c->guard, c->guard_z, c->guard_factor,
                             c->guard_floor, c->guard_grow, c->anomaly, c->anomaly_counts,
                             c->curvature_every, c->n_hooks};
    uint64_t h = digest_values(values, sizeof values / sizeof values[0]);
    for (int k = 0; k < c->n_hooks && k < 16; k++) h = digest_text(h, c->hooks[k]);
    return h;
}

/* The data set's bytes as loaded (after the split and --train-subset), with its shapes. */
static uint64_t data_digest(uint64_t h, const tg_dataset *d) {
    if (!d) return tg_dist_digest(h, NULL, 0);
    const double shape[] = {(double)d->count, d->x_ndim, (double)d->x_shape[0], (double)d->x_shape[1],
                            (double)d->x_shape[2], d->y_ndim, (double)d->y_shape[0], (double)d->y_shape[1],
                            (double)d->y_shape[2], (double)d->classes};
    h = tg_dist_digest(h, shape, sizeof shape);
    int64_t x = tg_dataset_x_size(d), y = tg_dataset_y_size(d);
    h = tg_dist_digest(h, d->x, d->x && x > 0 ? (size_t)(d->count * x) * sizeof(float) : 0);
    return tg_dist_digest(h, d->y, d->y && y > 0 ? (size_t)(d->count * y) * sizeof(float) : 0);
}

/* The ranks train alike, or every rank stops naming the first field that differs. */
static tg_status same_training(parallel *p, const run_config *c, const tg_dataset *train,
                               const tg_dataset *test) {
    const tg_dist_field fields[] = {
        {"steps", c->steps, false},
        {"batch", c->batch, false},
        {"seed", (int64_t)c->seed, false},
        {"model options", (int64_t)model_digest(c), true},
        {"optimizer options", (int64_t)optimizer_digest(c), true},
        {"training options", (int64_t)options_digest(c), true},
        {"data", (int64_t)data_digest(data_digest(0, train), test), true},
    };
    return tg_dist_check_same(p->dist, fields, (int)(sizeof fields / sizeof fields[0]));
}

bool parallel_ready(parallel *p, bool ready, const run_config *config, const tg_dataset *train,
                    const tg_dataset *test, tg_tensor **state, int n_state, tg_tensor **params,
                    int n_params, char *why, size_t size) {
    bool failed = false;
    if (tg_dist_agree(p->dist, !ready, &failed) != TG_OK) ready = false;
    if (!ready) return false; /* this rank's own reason is in why already */
    if (failed) {
        snprintf(why, size, "another rank failed to set up (its message says why)");
        return false;
    }
    tg_ctx *ctx = params && n_params ? params[0]->ctx : NULL;
    tg_status status = same_training(p, config, train, test);
    if (status == TG_OK) status = tg_dist_broadcast_params(p->dist, state, n_state);
    tg_dist_config dist_config = {.reduce_nonfinite = config->guard};
    if (status == TG_OK) status = tg_dist_attach(p->dist, params, n_params, &dist_config);
    if (status != TG_OK) snprintf(why, size, "mpi: %s", ctx ? tg_errmsg(ctx) : tg_status_str(status));
    return status == TG_OK;
}

tg_tensor *parallel_shard(const parallel *p, tg_tape *tape, tg_tensor *batch) {
    if (!p || !batch) return batch;
    int64_t rows = batch->shape[0] / tg_dist_size(p->dist), row = batch->size / batch->shape[0];
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, batch->shape, sizeof shape);
    shape[0] = rows;
    return tg_tape_from_data(tape, batch->ndim, shape,
                             batch->data + (int64_t)tg_dist_rank(p->dist) * rows * row);
}

tg_status parallel_step(parallel *p, tg_status local, double *loss) {
    tg_status status = tg_dist_wait(p->dist, local);
    return status == TG_OK ? tg_dist_mean(p->dist, loss, 1) : status;
}

tg_status parallel_verdict(parallel *p, tg_guard_verdict *verdict) {
    if (!p) return TG_OK;
    bool skip = *verdict != TG_GUARD_ACCEPT, nonfinite = *verdict == TG_GUARD_SKIP_NONFINITE;
    tg_status status = tg_dist_agree(p->dist, skip, &skip);
    /* the second collective only on a skip, which every rank now knows alike */
    if (status == TG_OK && skip) status = tg_dist_agree(p->dist, nonfinite, &nonfinite);
    if (status == TG_OK)
        *verdict = !skip ? TG_GUARD_ACCEPT : nonfinite ? TG_GUARD_SKIP_NONFINITE : TG_GUARD_SKIP_OUTLIER;
    return status;
}

void parallel_end(parallel *p) {
    if (!p) return;
    if (tg_dist_finalize(p->dist) != TG_OK) job_broken = true; /* MPI is left as it is */
    free(p);
}

void parallel_abort_if_broken(int code) {
    if (!job_broken) return;
    fprintf(stderr, "tapegrad train (rank %d): ending the job (MPI_Abort): the other ranks cannot "
            "finish without this one\n", parallel_env_rank());
    fflush(NULL);
    MPI_Abort(MPI_COMM_WORLD, code);
}

#else /* built without MPI: never launched, nothing to do */

bool parallel_launched(void) { return false; }
parallel *parallel_start(tg_ctx *ctx, const run_config *config) { (void)ctx; (void)config; return NULL; }
int parallel_rank(const parallel *p) { (void)p; return 0; }
bool parallel_ready(parallel *p, bool ready, const run_config *config, const tg_dataset *train,
                    const tg_dataset *test, tg_tensor **state, int n_state, tg_tensor **params,
                    int n_params, char *why, size_t size) {
    (void)p; (void)config; (void)train; (void)test; (void)state; (void)n_state; (void)params;
    (void)n_params; (void)why; (void)size;
    return ready;
}
tg_tensor *parallel_shard(const parallel *p, tg_tape *tape, tg_tensor *batch) {
    (void)p; (void)tape;
    return batch;
}
tg_status parallel_step(parallel *p, tg_status local, double *loss) {
    (void)p; (void)loss;
    return local;
}
tg_status parallel_verdict(parallel *p, tg_guard_verdict *verdict) {
    (void)p; (void)verdict;
    return TG_OK;
}
void parallel_end(parallel *p) { (void)p; }
void parallel_abort_if_broken(int code) { (void)code; }

#endif
