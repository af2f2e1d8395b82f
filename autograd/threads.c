/*
 * autograd/threads.c — the context's small thread pool.
 *
 * Why a pool of our own: BLAS threads, OpenMP and ad-hoc pthreads each want every core; one
 * budget per context (tg_ctx_set_threads) keeps the machine from being oversubscribed, and the
 * library decides how work is split, so results never depend on the thread count.
 *
 * How work is split: tgi_parallel_for(ctx, n, ...) cuts [0, n) into at most `threads`
 * contiguous ranges; range r goes to worker r (range 0 to the caller). Callers make the result
 * independent of the cut: either every item is computed on its own (elementwise, per row, per
 * sample), or the items are fixed blocks whose partial results are combined afterwards in block
 * order. No work stealing, no atomics on floats.
 *
 * Hand-off: workers spin for a short while on a generation counter (a matrix product of a
 * recurrent step lasts tens of microseconds; a futex wake-up would cost as much), then sleep on a
 * condition variable. The caller spins likewise while the others finish. Threads are started on
 * the first parallel region, so a context that never runs large ops never starts one, and the
 * steady state allocates nothing.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "autograd/internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* About 20-60 us of pause instructions, depending on the CPU. */
#define SPIN_LIMIT 20000

struct tgi_pool {
    tg_ctx *ctx;
    int n_workers;                 /* threads besides the caller */
    pthread_t *workers;
    pthread_mutex_t lock;
    pthread_cond_t wake;           /* a new job, or stop */
    pthread_cond_t finished;       /* the last worker of a job is done */
    atomic_uint generation;        /* incremented per job */
    atomic_int pending;            /* workers still running the current job */
    atomic_int sleeping_workers;
    atomic_int caller_sleeping;
    atomic_bool stop;
    /* The current job, written by the caller before the generation moves on. */
    tgi_range_fn fn;
    void *arg;
    int64_t n;
    int n_ranges;
    bool flush_denormals;
};

/* Whether this thread is running inside a parallel region (nested regions run serially). */
static _Thread_local bool inside_region;

static void set_flush_denormals(bool on) {
#if defined(__SSE__) || defined(__x86_64__)
    unsigned int csr = _mm_getcsr();
    const unsigned int ftz_daz = 0x8040; /* FTZ (bit 15) and DAZ (bit 6) */
    unsigned int want = on ? (csr | ftz_daz) : (csr & ~ftz_daz);
    if (want != csr) _mm_setcsr(want);
#else
    (void)on;
#endif
}

static void range_of(int64_t n, int n_ranges, int r, int64_t *begin, int64_t *end) {
    *begin = n * r / n_ranges;
    *end = n * (r + 1) / n_ranges;
}

static void run_range(struct tgi_pool *pool, int r) {
    int64_t begin, end;
    range_of(pool->n, pool->n_ranges, r, &begin, &end);
    if (begin < end) pool->fn(pool->arg, begin, end);
}

/* Waits for a generation other than `seen`; returns it, or `seen` when told to stop. */
static unsigned wait_for_job(struct tgi_pool *pool, unsigned seen) {
    for (int spins = 0; spins < SPIN_LIMIT; spins++) {
        unsigned gen = atomic_load_explicit(&pool->generation, memory_order_acquire);
        if (gen != seen || atomic_load(&pool->stop)) return gen;
        cpu_relax();
    }
    pthread_mutex_lock(&pool->lock);
    atomic_fetch_add(&pool->sleeping_workers, 1);
    unsigned gen;
    while ((gen = atomic_load(&pool->generation)) == seen && !atomic_load(&pool->stop))
        pthread_cond_wait(&pool->wake, &pool->lock);
    atomic_fetch_sub(&pool->sleeping_workers, 1);
    pthread_mutex_unlock(&pool->lock);
    return gen;
}

typedef struct worker_start {
    struct tgi_pool *pool;
    int index;                     /* 1..n_workers: the range this worker runs */
} worker_start;

static void *worker_main(void *p) {
    struct tgi_pool *pool = ((worker_start *)p)->pool;
    int index = ((worker_start *)p)->index;
    inside_region = true;
    unsigned seen = 0;
    for (;;) {
        unsigned gen = wait_for_job(pool, seen);
        if (atomic_load(&pool->stop)) return NULL;
        seen = gen;
        set_flush_denormals(pool->flush_denormals);
        if (index < pool->n_ranges) run_range(pool, index);
        if (atomic_fetch_sub(&pool->pending, 1) == 1 && atomic_load(&pool->caller_sleeping)) {
            pthread_mutex_lock(&pool->lock);
            pthread_cond_signal(&pool->finished);
            pthread_mutex_unlock(&pool->lock);
        }
    }
}

static void wait_for_workers(struct tgi_pool *pool) {
    for (int spins = 0; spins < SPIN_LIMIT; spins++) {
        if (atomic_load_explicit(&pool->pending, memory_order_acquire) == 0) return;
        cpu_relax();
    }
    pthread_mutex_lock(&pool->lock);
    atomic_store(&pool->caller_sleeping, 1);
    while (atomic_load(&pool->pending) != 0) pthread_cond_wait(&pool->finished, &pool->lock);
    atomic_store(&pool->caller_sleeping, 0);
    pthread_mutex_unlock(&pool->lock);
}

static void stop_workers(struct tgi_pool *pool, int started) {
    pthread_mutex_lock(&pool->lock);
    atomic_store(&pool->stop, true);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 0; i < started; i++) pthread_join(pool->workers[i], NULL);
}

static size_t pool_bytes(int n_workers) {
    return sizeof(struct tgi_pool) + (size_t)n_workers * (sizeof(pthread_t) + sizeof(worker_start));
}

static void pool_free(struct tgi_pool *pool) {
    tg_ctx *ctx = pool->ctx;
    int n_workers = pool->n_workers;
    pthread_cond_destroy(&pool->finished);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->lock);
    tgi_free(ctx, pool, pool_bytes(n_workers));
}

/* Starts threads - 1 workers; NULL when threads cannot be had (the caller then runs serially). */
static struct tgi_pool *pool_start(tg_ctx *ctx, int threads) {
    int n_workers = threads - 1;
    struct tgi_pool *pool = tgi_alloc(ctx, pool_bytes(n_workers));
    if (!pool) return NULL;
    memset(pool, 0, sizeof *pool);
    pool->ctx = ctx;
    pool->n_workers = n_workers;
    pool->workers = (pthread_t *)(pool + 1);
    worker_start *starts = (worker_start *)(pool->workers + n_workers);
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->finished, NULL);
    for (int i = 0; i < n_workers; i++) {
        starts[i] = (worker_start){pool, i + 1};
        if (pthread_create(&pool->workers[i], NULL, worker_main, &starts[i]) != 0) {
            stop_workers(pool, i);
            pool_free(pool);
            return NULL;
        }
    }
    return pool;
}

void tgi_pool_release(tg_ctx *ctx) {
    if (!ctx->pool) return;
    stop_workers(ctx->pool, ctx->pool->n_workers);
    pool_free(ctx->pool);
    ctx->pool = NULL;
}

int tgi_cores_available(void) {
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
#endif
    return 1;
}

tg_status tg_ctx_set_threads(tg_ctx *ctx, int n) {
    if (!ctx) return TG_ERR_INVALID;
    if (n < 0 || n > TG_MAX_THREADS)
        return tgi_error(ctx, TG_ERR_INVALID, "tg_ctx_set_threads: %d threads asked for; give 0 "
                         "(the cores available) or 1 to %d", n, TG_MAX_THREADS);
    if (inside_region)
        return tgi_error(ctx, TG_ERR_STATE, "tg_ctx_set_threads: called from inside a parallel "
                         "region (a hook or op running on a worker thread)");
    int threads = n == 0 ? tgi_cores_available() : n;
    if (threads > TG_MAX_THREADS) threads = TG_MAX_THREADS;
    if (threads != ctx->threads) tgi_pool_release(ctx); /* restarted with the new size on demand */
    ctx->threads = threads;
    return TG_OK;
}

int tg_ctx_threads(const tg_ctx *ctx) {
    return ctx ? ctx->threads : 0;
}

tg_status tg_ctx_set_flush_denormals(tg_ctx *ctx, bool on) {
    if (!ctx) return TG_ERR_INVALID;
    ctx->flush_denormals = on;
    if (ctx->pool) ctx->pool->flush_denormals = on;
    set_flush_denormals(on);
    return TG_OK;
}

bool tg_ctx_flush_denormals(const tg_ctx *ctx) {
    return ctx && ctx->flush_denormals;
}

void tgi_parallel_for(tg_ctx *ctx, int64_t n, int64_t grain, tgi_range_fn fn, void *arg) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int64_t most_ranges = n / grain;
    int n_ranges = ctx ? ctx->threads : 1;
    if (most_ranges < n_ranges) n_ranges = (int)(most_ranges > 0 ? most_ranges : 1);
    if (n_ranges > 1 && !inside_region && !ctx->pool) ctx->pool = pool_start(ctx, ctx->threads);
    if (n_ranges <= 1 || inside_region || !ctx->pool) {
        fn(arg, 0, n);
        return;
    }
    struct tgi_pool *pool = ctx->pool;
    pool->fn = fn;
    pool->arg = arg;
    pool->n = n;
    pool->n_ranges = n_ranges;
    pool->flush_denormals = ctx->flush_denormals;
    atomic_store(&pool->pending, pool->n_workers);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_seq_cst);
    if (atomic_load(&pool->sleeping_workers) > 0) {
        pthread_mutex_lock(&pool->lock);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->lock);
    }
    inside_region = true;
    run_range(pool, 0);
    inside_region = false;
    wait_for_workers(pool);
}
