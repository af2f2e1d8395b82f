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
 *
 * Backing off: claiming ranges is not enough on a busy machine. A worker that shares its core
 * with another process may claim a range and be descheduled in the middle of it, and the caller
 * then waits a time slice for it; two of our threads on one core spin against each other. With
 * the other core of a 2-core machine held by a busy loop, the LSTM step took 1.14x longer at two
 * threads than at one. So each parallel region is timed: as a whole by the caller, and range by
 * range by whoever runs them, which says what it would have cost on one thread (see judge).
 * Over a window of a few milliseconds of regions, when the regions took more than
 * KEEP_RATIO of their one-thread estimate, the pool backs off: regions run whole on the caller
 * (the cut never changes the numbers), the workers stop spinning and sleep, and after a while
 * (20 ms, doubling up to 320 ms while the cores stay taken) a window is tried in parallel again.
 * The verdict costs a few clock reads per region (~0.1 us; regions last 5 us and more);
 * tg_ctx_threads_describe reports it.
 *
 * Asking before trying again: a trial on a machine still busy is what two threads lost to one
 * there (a window of slow regions, perhaps a time slice waiting for a descheduled worker, a few
 * times a second: 1.04-1.10x one thread's time). So when a back-off ends, the pool first asks the
 * kernel how much our CPUs idled meanwhile (autograd/cpu_idle.c, /proc/stat): under half a core
 * idle on average means the cores are still taken, and the back-off is renewed, at the same
 * length, without a trial (only a failed trial doubles it).
 * Where the kernel cannot tell, the pool tries as before.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "autograd/internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* Backing off (see the header). A window is at least WINDOW_NS of parallel regions and
 * WINDOW_JOBS of them: long enough that one descheduling among many regions does not decide,
 * short enough that a busy core is noticed within a step, and a retry on a machine still busy
 * costs little. Parallel regions must take less than KEEP_RATIO of their one-thread estimate
 * (ideal: 1 / threads; 0.6 for the LSTM on a quiet 2-core machine); at 0.9 and above the second
 * thread buys too little to risk a time slice. Only a window under GOOD_RATIO shortens the next
 * back-off again: on a busy machine a lucky window now and then must not bring back frequent
 * retries (each may wait out a descheduled worker). Back-offs double from FIRST_BACKOFF_NS to
 * LAST_BACKOFF_NS: under sustained load a retry (~2 ms of regions, perhaps one stall of a time
 * slice) then costs ~1-2% of the time; a core freed is used again within LAST_BACKOFF_NS. */
#define WINDOW_NS 2000000
#define WINDOW_JOBS 8
/* ... or, when regions are long (the MLP's products last milliseconds each), this much of them
 * and at least two: eight 5 ms regions at a bad ratio would cost more than the back-off saves. */
#define LONG_WINDOW_NS 8000000
/* Ranges of a region are timed by the CPU time their thread ran, not the wall clock, when the
 * region before it lasted this long: such ranges are long enough for the OS to slice them (two
 * of our threads sharing a core, or a worker sharing one with another process), and then a
 * range's wall time counts the time it waited too. Pinned to one core, 2 threads of ~3 ms
 * ranges looked like 0.61x one thread's time by wall clock, and the pool kept them. */
#define CPU_TIMED_NS 200000
/* Idle CPU, in cores on average over a back-off, under which a trial is not worth making. */
#define MIN_IDLE_CORES 0.5
#define KEEP_RATIO 0.9
#define GOOD_RATIO 0.75
#define FIRST_BACKOFF_NS 20000000
#define LAST_BACKOFF_NS 320000000

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
    _Atomic int64_t range_ns;         /* the current job's ranges' times (wall, or CPU: time_cpu), summed */
    bool time_cpu;                 /* time the current job's ranges by CPU time (CPU_TIMED_NS) */
    atomic_int sleeping_workers;
    atomic_int caller_sleeping;
    atomic_bool stop;
    /* The current job, written by the caller before the generation moves on. */
    tgi_range_fn fn;
    void *arg;
    int64_t n;
    bool flush_denormals;
    /* The verdict, the caller's alone (tgi_parallel_for runs on the context's thread). */
    bool backed_off;               /* regions run whole on the caller until retry_at */
    int64_t retry_at, backoff;     /* ns (CLOCK_MONOTONIC); the next back-off's length */
    int64_t window_took, window_alone; /* ns: the regions' wall time, their one-thread estimate */
    int window_jobs;
    double ratio;                  /* the last window's took / alone; 0 before the first */
    int64_t verdicts;              /* windows judged */
    int64_t last_took;             /* ns: the last region's wall time */
    bool waking;                   /* the first region of a trial: not judged (futex wake-ups) */
    int64_t idle_ticks, idle_since; /* tgi_idle_ticks() when the back-off began (-1: unknown), and when (ns) */
    double idle_cores;             /* what the kernel said at the last retry: idle cores on average; -1 unknown */
    int64_t trials_skipped;        /* back-offs renewed because the kernel saw no idle core */
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

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The CPU time this thread has run: a system call (~0.1-0.5 us), not a vDSO read like now_ns, so
 * it times only ranges of long regions (see CPU_TIMED_NS). */
static int64_t thread_cpu_ns(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return now_ns();
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Claims and runs ranges of `job` until none is left; returns how many it ran, and in *last
 * whether it finished the job's last. Each range's time (wall, or CPU when
 * time_cpu) is added to range_ns. */
static int run_claimed(struct tgi_pool *pool, unsigned job, bool *last) {
    int ran = 0;
    *last = false;
    for (;;) {
        uint64_t claim = atomic_load_explicit(&pool->claim, memory_order_acquire);
        int n_ranges = (int)(claim >> 16 & 0xffff), r = (int)(claim & 0xffff);
        if ((unsigned)(claim >> 32) != job || r >= n_ranges) return ran;
        if (!atomic_compare_exchange_weak(&pool->claim, &claim, claim + 1)) continue;
        bool cpu = pool->time_cpu;
        int64_t start = cpu ? thread_cpu_ns() : now_ns();
        run_range(pool, n_ranges, r); /* fn, arg and n stay: the job lasts until its ranges end */
        atomic_fetch_add_explicit(&pool->range_ns, (cpu ? thread_cpu_ns() : now_ns()) - start,
                                  memory_order_relaxed);
        ran++;
        *last = atomic_fetch_sub(&pool->unfinished, 1) == 1; /* publishes range_ns too */
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
        bool last;
        run_claimed(pool, gen, &last);
        if (last && atomic_load(&pool->caller_sleeping)) {
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
    pool->backoff = FIRST_BACKOFF_NS;
    pool->idle_ticks = -1;
    pool->idle_cores = -1.0;
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

int tgi_cores_online(void) {
#ifdef _SC_NPROCESSORS_ONLN
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n > 0) return n > TG_MAX_THREADS ? TG_MAX_THREADS : (int)n;
#endif
    return tgi_cores_available();
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

static void start_window(struct tgi_pool *pool) {
    pool->window_took = pool->window_alone = 0;
    pool->window_jobs = 0;
}

/* Regions run whole on the caller until now + the back-off, which doubles for the next time. */
static void back_off(struct tgi_pool *pool, int64_t now) {
    pool->backed_off = true;
    pool->retry_at = now + pool->backoff;
    pool->backoff = pool->backoff * 2 < LAST_BACKOFF_NS ? pool->backoff * 2 : LAST_BACKOFF_NS;
    pool->idle_ticks = tgi_idle_ticks();
    pool->idle_since = now;
}

/* Adds one region to the window: it started at `start`, published its job at `published`, the
 * caller's `mine` of `n_ranges` ranges were done at `own_end`, all of them at `end`.
 * What one thread would have taken is estimated twice, and the smaller taken: the ranges' wall
 * times summed (too high when a range holder was descheduled: a worker holding its range through
 * another process's time slice), and the caller's own ranges scaled to all (too high when the
 * caller was descheduled in its range, e.g. by our own worker on the same core). */
static void judge(struct tgi_pool *pool, int64_t start, int64_t published, int64_t own_end, int64_t end,
                  int mine, int n_ranges) {
    int64_t took = end - start;
    pool->last_took = took;
    if (pool->waking) { /* the workers slept through the back-off: this region paid their wake-up */
        pool->waking = false;
        return;
    }
    int64_t alone = atomic_load_explicit(&pool->range_ns, memory_order_relaxed);
    /* no range of its own (the caller was descheduled right after publishing): the sum alone */
    if (mine > 0 && (own_end - published) * n_ranges / mine < alone)
        alone = (own_end - published) * n_ranges / mine;
    pool->window_took += took;
    pool->window_alone += alone;
    bool full = (++pool->window_jobs >= WINDOW_JOBS && pool->window_took >= WINDOW_NS) ||
                (pool->window_jobs >= 2 && pool->window_took >= LONG_WINDOW_NS);
    if (!full) return;
    pool->ratio = pool->window_alone > 0 ? (double)pool->window_took / (double)pool->window_alone : 1.0;
    pool->verdicts++;
    start_window(pool);
    if (pool->ratio < GOOD_RATIO) pool->backoff = FIRST_BACKOFF_NS;
    if (pool->ratio < KEEP_RATIO || pool->ctx->keep_threads) return;
    back_off(pool, end);
}

/* Whether the threads are worth a trial at `now`, the back-off being over: not when the kernel
 * says our CPUs idled less than MIN_IDLE_CORES on average since it began (then it begins anew). */
static bool worth_a_trial(struct tgi_pool *pool, int64_t now) {
    int64_t idle = tgi_idle_ticks();
    if (idle < 0 || pool->idle_ticks < 0 || now <= pool->idle_since) {
        pool->idle_cores = -1.0;
        return true;
    }
    double seconds = (double)(now - pool->idle_since) * 1e-9;
    pool->idle_cores = (double)(idle - pool->idle_ticks) / ((double)tgi_ticks_per_second() * seconds);
    if (pool->idle_cores >= MIN_IDLE_CORES) return true;
    /* renewed at the same length: only a failed trial doubles it (asking costs ~20 us, not a
     * window of slow regions), so a core freed is used again within a back-off or two */
    pool->trials_skipped++;
    pool->retry_at = now + (pool->retry_at - pool->idle_since); /* the same length again */
    pool->idle_ticks = idle;
    pool->idle_since = now;
    return false;
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
    int64_t start = now_ns();
    if (pool->backed_off) {
        if (start < pool->retry_at || !worth_a_trial(pool, start)) {
            fn(arg, 0, n); /* the workers sleep meanwhile (wait_for_job) */
            return;
        }
        pool->backed_off = false; /* try the threads again, for a window */
        start_window(pool);
        pool->waking = true;
    }
    pool->fn = fn;
    pool->arg = arg;
    pool->n = n;
    pool->flush_denormals = ctx->flush_denormals;
    pool->time_cpu = pool->last_took >= CPU_TIMED_NS;
    unsigned job = atomic_load(&pool->generation) + 1;
    atomic_store(&pool->unfinished, n_ranges);
    atomic_store_explicit(&pool->range_ns, 0, memory_order_relaxed);
    atomic_store_explicit(&pool->claim, (uint64_t)job << 32 | (uint64_t)n_ranges << 16,
                          memory_order_release);
    atomic_store_explicit(&pool->generation, job, memory_order_seq_cst);
    if (atomic_load(&pool->sleeping_workers) > 0) {
        pthread_mutex_lock(&pool->lock);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->lock);
    }
    int64_t published = now_ns();
    inside_region = true;
    bool last;
    int mine = run_claimed(pool, job, &last);
    inside_region = false;
    int64_t own_end = now_ns();
    wait_for_workers(pool);
    judge(pool, start, published, own_end, now_ns(), mine, n_ranges);
}

/* ---- the verdict, on demand ---------------------------------------------------------------- */

/* A probe region's range: a dependent multiply-add chain (~20 us an item on a 3 GHz core), the
 * same work whichever thread runs it, touching no memory to share. */
static void probe_range(void *arg, int64_t begin, int64_t end) {
    float *out = arg;
    for (int64_t i = begin; i < end; i++) {
        float x = (float)i;
        for (int k = 0; k < 16384; k++) x = x * 0.999f + 0.5f;
        out[i] = x;
    }
}

tg_status tg_ctx_threads_calibrate(tg_ctx *ctx) {
    if (!ctx) return TG_ERR_INVALID;
    if (inside_region)
        return tgi_error(ctx, TG_ERR_STATE, "tg_ctx_threads_calibrate: called from inside a "
                         "parallel region");
    if (ctx->threads <= 1) return TG_OK;
    if (!ctx->pool) ctx->pool = pool_start(ctx, ctx->threads);
    if (!ctx->pool)
        return tgi_error(ctx, TG_ERR_NOMEM, "tg_ctx_threads_calibrate: could not start %d threads",
                         ctx->threads);
    struct tgi_pool *pool = ctx->pool;
    pool->backed_off = false; /* judge now, whatever was decided before */
    start_window(pool);
    float out[TG_MAX_THREADS];
    int64_t verdicts = pool->verdicts, give_up = now_ns() + 20 * (int64_t)WINDOW_NS;
    while (pool->verdicts == verdicts && now_ns() < give_up)
        tgi_parallel_for(ctx, ctx->threads, 1, probe_range, out);
    return TG_OK;
}

tg_status tg_ctx_set_threads_backoff(tg_ctx *ctx, bool on) {
    if (!ctx) return TG_ERR_INVALID;
    ctx->keep_threads = !on;
    if (!on && ctx->pool) ctx->pool->backed_off = false;
    return TG_OK;
}

bool tg_ctx_threads_backed_off(const tg_ctx *ctx) {
    return ctx && ctx->pool && ctx->pool->backed_off;
}

int tg_ctx_threads_describe(const tg_ctx *ctx, char *buf, size_t size) {
    if (!ctx) return snprintf(buf, buf ? size : 0, "no context");
    const struct tgi_pool *pool = ctx->pool;
    if (ctx->threads <= 1) return snprintf(buf, buf ? size : 0, "1 (no pool)");
    if (!pool || pool->verdicts == 0)
        return snprintf(buf, buf ? size : 0, "%d (spinning; not judged yet: %s)", ctx->threads,
                        ctx->keep_threads ? "never backs off" : "backs off when the cores are taken");
    if (!pool->backed_off && !ctx->keep_threads && pool->ratio >= KEEP_RATIO)
        return snprintf(buf, buf ? size : 0, "%d (spinning again after backing off, trying the "
                        "cores: the last verdict was %.2fx the one-thread time)", ctx->threads, pool->ratio);
    if (!pool->backed_off)
        return snprintf(buf, buf ? size : 0, "%d (spinning%s: parallel regions took %.2fx their "
                        "one-thread time)", ctx->threads, ctx->keep_threads ? ", never backs off" : "",
                        pool->ratio);
    char idle[96] = "";
    if (pool->idle_cores >= 0.0)
        snprintf(idle, sizeof idle, "; at the last retry the kernel saw %.2f cores idle, %lld trials skipped",
                 pool->idle_cores, (long long)pool->trials_skipped);
    return snprintf(buf, buf ? size : 0, "%d, backed off to 1: the other cores are busy (parallel "
                    "regions took %.2fx their one-thread time; trying again every %d-%d ms when the "
                    "kernel sees an idle core%s)", ctx->threads, pool->ratio,
                    (int)(FIRST_BACKOFF_NS / 1000000), (int)(LAST_BACKOFF_NS / 1000000), idle);
}
