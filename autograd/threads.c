/*
 * autograd/threads.c — the context's small thread pool.
 *
 * Why a pool of our own: BLAS threads, OpenMP and ad-hoc pthreads each want every core; one
 * budget per context (tg_ctx_set_threads) keeps the machine from being oversubscribed, and the
 * library decides how work is split, so results never depend on the thread count.
 *
 * How work is split: tgi_parallel_for(ctx, n, ...) cuts [0, n) into at most `threads`
 * contiguous ranges. Callers make the result independent of the cut: either every item is
 * computed on its own (elementwise, per row, per sample), or the items are fixed blocks whose
 * partial results are combined afterwards in block order. No atomics on floats.
 *
 * Who runs which range: the caller and the workers claim ranges one at a time from a shared
 * counter until none is left. The ranges are the same whoever runs them, so the numbers are
 * too; but a worker that the OS has not scheduled yet (a busy machine) no longer holds the
 * caller up: the caller runs its range too, and the step costs what one thread's would.
 *
 * Hand-off: workers spin for a short while on a generation counter (a matrix product of a
 * recurrent step lasts tens of microseconds; a futex wake-up would cost as much), then yield the
 * core a few times, then sleep on a condition variable. The caller waits likewise while the
 * others finish. Threads are started on
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

/* Pause instructions before yielding. A pause costs from a few ns (Zen on bare metal) to tens
 * (Skylake; 27 ns measured on this project's Zen 1 VM, where 4000 of them last ~110 us): long
 * enough to cover the gap between the products of a recurrent step without a futex wake-up. */
#define SPIN_LIMIT 4000
/* sched_yield calls before sleeping. When the machine has more runnable threads than cores, the
 * thread we wait for may be waiting for our core: spinning on would only delay it (two threads
 * pinned to one core ran an LSTM step 3.4x slower than one thread did). */
#define YIELD_LIMIT 16

struct tgi_pool {
    tg_ctx *ctx;
    int n_workers;                 /* threads besides the caller */
    pthread_t *workers;
    pthread_mutex_t lock;
    pthread_cond_t wake;           /* a new job, or stop */
    pthread_cond_t finished;       /* the last worker of a job is done */
    atomic_uint generation;        /* incremented per job */
    /* job << 32 | ranges << 16 | the next range to claim, in one word: a claim names its job, so
     * a late worker can never claim a range of a newer job by mistake (its compare-and-swap
     * fails), and never reads a newer job's range count */
    _Atomic uint64_t claim;
    atomic_int unfinished;         /* ranges of the current job not finished yet */
    atomic_int sleeping_workers;
    atomic_int caller_sleeping;
    atomic_bool stop;
    /* The current job, written by the caller before the generation moves on. */
    tgi_range_fn fn;
    void *arg;
    int64_t n;
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

static void run_range(struct tgi_pool *pool, int n_ranges, int r) {
    int64_t begin, end;
    range_of(pool->n, n_ranges, r, &begin, &end);
    if (begin < end) pool->fn(pool->arg, begin, end);
}

/* Claims and runs ranges of `job` until none is left; returns whether it finished the job's last. */
static bool run_claimed(struct tgi_pool *pool, unsigned job) {
    bool last = false;
    for (;;) {
        uint64_t claim = atomic_load_explicit(&pool->claim, memory_order_acquire);
        int n_ranges = (int)(claim >> 16 & 0xffff), r = (int)(claim & 0xffff);
        if ((unsigned)(claim >> 32) != job || r >= n_ranges) return last;
        if (!atomic_compare_exchange_weak(&pool->claim, &claim, claim + 1)) continue;
        run_range(pool, n_ranges, r); /* fn, arg and n stay: the job lasts until its ranges end */
        last = atomic_fetch_sub(&pool->unfinished, 1) == 1;
    }
}

static bool job_ready(struct tgi_pool *pool, unsigned seen) {
    return atomic_load_explicit(&pool->generation, memory_order_acquire) != seen ||
           atomic_load(&pool->stop);
}

static bool job_done(struct tgi_pool *pool, unsigned unused) {
    (void)unused;
    return atomic_load_explicit(&pool->unfinished, memory_order_acquire) == 0;
}

/* Spins, then yields, while !ready(pool, seen); false when the budget ran out first. */
static bool spin_until(struct tgi_pool *pool, unsigned seen,
                       bool (*ready)(struct tgi_pool *, unsigned)) {
    for (int spins = 0; spins < SPIN_LIMIT; spins++) {
        if (ready(pool, seen)) return true;
        cpu_relax();
    }
    for (int yields = 0; yields < YIELD_LIMIT; yields++) {
        if (ready(pool, seen)) return true;
        sched_yield();
    }
    return ready(pool, seen);
}

/* Waits for a generation other than `seen`; returns it, or `seen` when told to stop. */
static unsigned wait_for_job(struct tgi_pool *pool, unsigned seen) {
    if (spin_until(pool, seen, job_ready)) return atomic_load(&pool->generation);
    pthread_mutex_lock(&pool->lock);
    atomic_fetch_add(&pool->sleeping_workers, 1);
    unsigned gen;
    while ((gen = atomic_load(&pool->generation)) == seen && !atomic_load(&pool->stop))
        pthread_cond_wait(&pool->wake, &pool->lock);
    atomic_fetch_sub(&pool->sleeping_workers, 1);
    pthread_mutex_unlock(&pool->lock);
    return gen;
}

static void *worker_main(void *p) {
    struct tgi_pool *pool = p;
    inside_region = true;
    unsigned seen = 0;
    for (;;) {
        unsigned gen = wait_for_job(pool, seen);
        if (atomic_load(&pool->stop)) return NULL;
        seen = gen;
        set_flush_denormals(pool->flush_denormals);
        if (run_claimed(pool, gen) && atomic_load(&pool->caller_sleeping)) {
            pthread_mutex_lock(&pool->lock);
            pthread_cond_signal(&pool->finished);
            pthread_mutex_unlock(&pool->lock);
        }
    }
}

static void wait_for_workers(struct tgi_pool *pool) {
    if (spin_until(pool, 0, job_done)) return;
    pthread_mutex_lock(&pool->lock);
    atomic_store(&pool->caller_sleeping, 1);
    while (atomic_load(&pool->unfinished) != 0) pthread_cond_wait(&pool->finished, &pool->lock);
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
    return sizeof(struct tgi_pool) + (size_t)n_workers * sizeof(pthread_t);
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
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->finished, NULL);
    for (int i = 0; i < n_workers; i++) {
        if (pthread_create(&pool->workers[i], NULL, worker_main, pool) != 0) {
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
    pool->flush_denormals = ctx->flush_denormals;
    unsigned job = atomic_load(&pool->generation) + 1;
    atomic_store(&pool->unfinished, n_ranges);
    atomic_store_explicit(&pool->claim, (uint64_t)job << 32 | (uint64_t)n_ranges << 16,
                          memory_order_release);
    atomic_store_explicit(&pool->generation, job, memory_order_seq_cst);
    if (atomic_load(&pool->sleeping_workers) > 0) {
        pthread_mutex_lock(&pool->lock);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->lock);
    }
    inside_region = true;
    run_claimed(pool, job);
    inside_region = false;
    wait_for_workers(pool);
}
