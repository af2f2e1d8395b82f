/* tests/test_threads.c — the context's thread pool: its budget, how it cuts loops, that a
 * training run gives the same bits on 1 and 2 threads, no allocation once running, backing off
 * when its threads share a core, and the flush-to-zero switch. */
#define _GNU_SOURCE /* sched_setaffinity */
#include <sched.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "autograd/internal.h"

Test(threads, budget_is_validated) {
    tg_ctx *ctx = tg_ctx_new();
    cr_assert_not_null(ctx);
    cr_expect_geq(tg_ctx_threads(ctx), 1, "a new context has the cores available");
    cr_expect_eq(tg_ctx_set_threads(ctx, 3), TG_OK);
    cr_expect_eq(tg_ctx_threads(ctx), 3);
    cr_expect_eq(tg_ctx_set_threads(ctx, -1), TG_ERR_INVALID);
    expect_errmsg_has(ctx, "tg_ctx_set_threads", "-1");
    cr_expect_eq(tg_ctx_set_threads(ctx, TG_MAX_THREADS + 1), TG_ERR_INVALID);
    cr_expect_eq(tg_ctx_threads(ctx), 3, "a refused call changes nothing");
    cr_expect_eq(tg_ctx_set_threads(ctx, 0), TG_OK);
    cr_expect_geq(tg_ctx_threads(ctx), 1);
    cr_expect_eq(tg_ctx_set_threads(NULL, 1), TG_ERR_INVALID);
    cr_expect_eq(tg_ctx_threads(NULL), 0);
    tg_ctx_free(ctx);
}

typedef struct marks {
    int *seen;               /* per item: how often it ran */
    tg_ctx *ctx;
} marks;

static void mark_range(void *arg, int64_t begin, int64_t end) {
    marks *m = arg;
    for (int64_t i = begin; i < end; i++) m->seen[i]++;
}

Test(threads, every_item_runs_exactly_once) {
    tg_ctx *ctx = tg_ctx_new();
    const int64_t sizes[] = {1, 2, 3, 7, 64, 1000, 4097};
    const int64_t grains[] = {1, 3, 100, 5000};
    for (int threads = 1; threads <= 4; threads++) {
        cr_assert_eq(tg_ctx_set_threads(ctx, threads), TG_OK);
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
            for (size_t g = 0; g < sizeof grains / sizeof grains[0]; g++) {
                int64_t n = sizes[s];
                int *seen = calloc((size_t)n, sizeof *seen);
                cr_assert_not_null(seen);
                marks m = {seen, ctx};
                tgi_parallel_for(ctx, n, grains[g], mark_range, &m);
                for (int64_t i = 0; i < n; i++)
                    cr_assert_eq(seen[i], 1, "threads %d, n %lld, grain %lld: item %lld ran %d times",
                                 threads, (long long)n, (long long)grains[g], (long long)i, seen[i]);
                free(seen);
            }
    }
    tg_ctx_free(ctx);
}

/* A range that starts a parallel loop of its own: it must run on that thread, whole. */
static void nested_range(void *arg, int64_t begin, int64_t end) {
    marks *m = arg;
    for (int64_t i = begin; i < end; i++) {
        int inner[50] = {0};
        marks inner_marks = {inner, m->ctx};
        tgi_parallel_for(m->ctx, 50, 1, mark_range, &inner_marks);
        int total = 0;
        for (int k = 0; k < 50; k++) total += inner[k];
        m->seen[i] = total;
    }
}

Test(threads, nested_loops_run_serially) {
    tg_ctx *ctx = tg_ctx_new();
    cr_assert_eq(tg_ctx_set_threads(ctx, 2), TG_OK);
    int seen[8] = {0};
    marks m = {seen, ctx};
    tgi_parallel_for(ctx, 8, 1, nested_range, &m);
    for (int i = 0; i < 8; i++) cr_expect_eq(seen[i], 50, "outer item %d saw %d inner items", i, seen[i]);
    tg_ctx_free(ctx);
}

/* A few SGD steps of an MLP wide enough that its products are cut into pieces; the final
 * weights, compared bit for bit. */
static void train(tg_ctx *ctx, int steps, float *out, int64_t out_size, long *allocations_after_first,
                  tally *count) {
    const int64_t batch = 64, in = 48, width = 256;
    tg_tensor *w1 = tg_zeros(ctx, TG_SHAPE(width, in)), *b1 = tg_zeros(ctx, TG_SHAPE(width));
    tg_tensor *w2 = tg_zeros(ctx, TG_SHAPE(width, width)), *b2 = tg_zeros(ctx, TG_SHAPE(width));
    tg_tensor *w3 = tg_zeros(ctx, TG_SHAPE(10, width)), *b3 = tg_zeros(ctx, TG_SHAPE(10));
    tg_tensor *params[6] = {w1, b1, w2, b2, w3, b3};
    for (int p = 0; p < 6; p++) {
        cr_assert_not_null(params[p]);
        tg_fill_normal(params[p], 0, 0.1f, (uint64_t)p + 1);
        tg_set_requires_grad(params[p], true);
    }
    tg_tensor *x = tg_zeros(ctx, TG_SHAPE(batch, in)), *y = tg_zeros(ctx, TG_SHAPE(batch));
    tg_fill_normal(x, 0, 1, 42);
    for (int64_t i = 0; i < batch; i++) y->data[i] = (float)(i % 10);
    tg_tape *tape = tg_tape_new(ctx);
    for (int step = 0; step < steps; step++) {
        tg_tape_reset(tape);
        tg_tensor *h = tg_tanh(tape, tg_linear(tape, x, w1, b1));
        h = tg_sigmoid(tape, tg_linear(tape, h, w2, b2));
        tg_tensor *loss = tg_cross_entropy(tape, tg_linear(tape, h, w3, b3), y);
        cr_assert_eq(tg_backward(tape, loss), TG_OK, "%s", tg_errmsg(ctx));
        for (int p = 0; p < 6; p++) {
            for (int64_t i = 0; i < params[p]->size; i++) params[p]->data[i] -= 0.05f * params[p]->grad[i];
            tg_zero_grad(params[p]);
        }
        if (step == 0 && count) *allocations_after_first = count->allocations;
    }
    cr_assert_eq(w2->size, out_size);
    memcpy(out, w2->data, (size_t)out_size * sizeof(float));
    tg_tape_free(tape);
}

Test(threads, training_gives_the_same_bits_on_one_and_two_threads) {
    const int64_t size = 256 * 256;
    float *one = malloc(sizeof(float) * size), *two = malloc(sizeof(float) * size);
    float *start = malloc(sizeof(float) * size);
    cr_assert(one && two && start);
    for (int threads = 1; threads <= 2; threads++) {
        tg_ctx *ctx = tg_ctx_new();
        cr_assert_eq(tg_ctx_set_threads(ctx, threads), TG_OK);
        train(ctx, 0, start, size, NULL, NULL); /* the starting weights */
        train(ctx, 5, threads == 1 ? one : two, size, NULL, NULL);
        tg_ctx_free(ctx);
    }
    cr_expect(memcmp(one, two, sizeof(float) * size) == 0, "weights after 5 steps differ");
    int64_t moved = 0;
    for (int64_t i = 0; i < size; i++) moved += one[i] != start[i];
    cr_expect_gt(moved, size / 2, "training changed only %lld weights: the test would be vacuous",
                 (long long)moved);
    free(one);
    free(two);
    free(start);
}

/* The bits of an 8 x 288 by 288 x 1024 product, on one thread, computed in a child process that
 * first pins itself to CPU 0 when `pinned` (before its first product, so the pin is all it knows
 * of the machine). OpenBLAS's Haswell kernels give other bits at this shape when the product
 * is cut into pieces of fewer columns. */
static void product_bits(bool pinned, float *out) {
    const int64_t m = 8, k = 288, n = 1024;
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(0, &one);
        if (pinned && sched_setaffinity(0, sizeof one, &one) != 0) _exit(2);
        tg_ctx *ctx = tg_ctx_new();
        tg_tape *tape = ctx && tg_ctx_set_threads(ctx, 1) == TG_OK ? tg_tape_new(ctx) : NULL;
        tg_tensor *a = tg_tape_zeros(tape, TG_SHAPE(m, k)), *b = tg_tape_zeros(tape, TG_SHAPE(k, n));
        if (!a || !b) _exit(3);
        tg_fill_normal(a, 0, 1, 11);
        tg_fill_normal(b, 0, 1, 12);
        tg_tensor *c = tg_matmul(tape, a, b);
        size_t bytes = (size_t)(m * n) * sizeof(float);
        _exit(c && write(fds[1], c->data, bytes) == (ssize_t)bytes ? 0 : 4);
    }
    close(fds[1]);
    size_t bytes = (size_t)(m * n) * sizeof(float), got = 0;
    ssize_t r;
    while (got < bytes && (r = read(fds[0], (char *)out + got, bytes - got)) > 0) got += (size_t)r;
    close(fds[0]);
    int status;
    cr_assert_eq(waitpid(child, &status, 0), child);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed (%d)", status);
    cr_assert_eq(got, bytes);
}

Test(threads, a_product_gives_the_same_bits_pinned_to_one_cpu_or_not) {
    if (tgi_cores_available() < 2) cr_skip("one CPU: nothing to pin away");
    static float pinned[8 * 1024], free_to_move[8 * 1024];
    product_bits(true, pinned);
    product_bits(false, free_to_move);
    cr_expect(memcmp(pinned, free_to_move, sizeof pinned) == 0,
              "taskset-style pinning changed the product's bits");
}

Test(threads, no_allocation_after_the_first_step_with_two_threads) {
    tally count = {.fail_at = -1};
    tg_ctx *ctx = tg_ctx_new_with_allocator(tally_alloc, &count);
    cr_assert_not_null(ctx);
    cr_assert_eq(tg_ctx_set_threads(ctx, 2), TG_OK);
    float *w = malloc(sizeof(float) * 256 * 256);
    long after_first = 0;
    long before = count.allocations;
    train(ctx, 8, w, 256 * 256, &after_first, &count);
    cr_expect_gt(after_first, before, "nothing counted: vacuous");
    /* the tape's free at the end of train() frees, it does not allocate */
    cr_expect_eq(count.allocations, after_first, "%ld allocations in steps 2..8",
                 count.allocations - after_first);
    free(w);
    tg_ctx_free(ctx);
    cr_expect_eq(count.live_bytes, 0, "%ld bytes not freed", count.live_bytes);
}

/* Pins this test's process (Criterion runs each test in its own) to one CPU: the pool's two
 * threads then share it, the busiest a machine can be, and a second thread can only cost. */
static void pin_to_one_cpu(void) {
    cpu_set_t set;
    cr_assert_eq(sched_getaffinity(0, sizeof set, &set), 0);
    int cpu = 0;
    while (!CPU_ISSET(cpu, &set)) cpu++;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    cr_assert_eq(sched_setaffinity(0, sizeof set, &set), 0);
}

Test(threads, two_threads_on_one_core_back_off_and_still_give_the_same_bits) {
    pin_to_one_cpu();
    tg_ctx *ctx = tg_ctx_new();
    cr_assert_eq(tg_ctx_set_threads(ctx, 2), TG_OK);
    char said[256];
    tg_ctx_threads_describe(ctx, said, sizeof said);
    cr_expect(strstr(said, "not judged yet") != NULL, "before any work: %s", said);
    cr_assert_eq(tg_ctx_threads_calibrate(ctx), TG_OK);
    cr_expect(tg_ctx_threads_backed_off(ctx), "two threads on one core: the pool should back off");
    tg_ctx_threads_describe(ctx, said, sizeof said);
    cr_expect(strstr(said, "backed off to 1") != NULL, "%s", said);
    /* backed off, loops still run every item once */
    for (int64_t n = 1; n <= 4097; n = 3 * n + 1) {
        int *seen = calloc((size_t)n, sizeof *seen);
        marks m = {seen, ctx};
        tgi_parallel_for(ctx, n, 1, mark_range, &m);
        for (int64_t i = 0; i < n; i++) cr_assert_eq(seen[i], 1, "n %lld: item %lld ran %d times",
                                                     (long long)n, (long long)i, seen[i]);
        free(seen);
    }
    /* and training, backed off (with a retry now and then), gives one thread's bits */
    const int64_t size = 256 * 256;
    float *one = malloc(sizeof(float) * size), *two = malloc(sizeof(float) * size);
    cr_assert(one && two);
    train(ctx, 5, two, size, NULL, NULL);
    tg_ctx *single = tg_ctx_new();
    cr_assert_eq(tg_ctx_set_threads(single, 1), TG_OK);
    train(single, 5, one, size, NULL, NULL);
    cr_expect(memcmp(one, two, sizeof(float) * size) == 0, "weights after 5 steps differ");
    free(one);
    free(two);
    tg_ctx_free(single);
    /* told never to back off, it keeps its threads even here */
    cr_assert_eq(tg_ctx_set_threads_backoff(ctx, false), TG_OK);
    cr_assert_eq(tg_ctx_threads_calibrate(ctx), TG_OK);
    cr_expect_not(tg_ctx_threads_backed_off(ctx));
    tg_ctx_threads_describe(ctx, said, sizeof said);
    cr_expect(strstr(said, "never backs off") != NULL, "%s", said);
    tg_ctx_free(ctx);
}

/* Work of a dependent multiply-add chain, `steps` long an item, for test regions. */
typedef struct chain_work {
    volatile float *out;
    int steps;
} chain_work;

static void chain_range(void *arg, int64_t begin, int64_t end) {
    const chain_work *w = arg;
    for (int64_t i = begin; i < end; i++) {
        float x = (float)i;
        for (int k = 0; k < w->steps; k++) x = x * 0.999f + 0.5f;
        w->out[i] = x;
    }
}

Test(threads, backed_off_on_a_taken_core_the_kernel_is_asked_before_a_trial) {
#ifdef __linux__
    pin_to_one_cpu(); /* our only CPU is the one the caller keeps busy: it never idles */
    cr_assert_gt(tgi_idle_ticks(), 0, "this test needs /proc/stat");
    tg_ctx *ctx = tg_ctx_new();
    cr_assert_eq(tg_ctx_set_threads(ctx, 2), TG_OK);
    cr_assert_eq(tg_ctx_threads_calibrate(ctx), TG_OK);
    cr_assert(tg_ctx_threads_backed_off(ctx), "two threads on one core: the pool should back off");
    /* 100 ms of regions: the first back-off (20 ms) ends several times over */
    float out[2];
    chain_work work = {out, 16384}; /* ~20 us an item */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        tgi_parallel_for(ctx, 2, 1, chain_range, &work);
        clock_gettime(CLOCK_MONOTONIC, &t1);
    } while ((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) < 100000000L);
    cr_expect(tg_ctx_threads_backed_off(ctx));
    char said[512];
    tg_ctx_threads_describe(ctx, said, sizeof said);
    const char *skipped = strstr(said, "cores idle, ");
    cr_assert(skipped != NULL, "the kernel was not asked: %s", said);
    double idle = -1;
    cr_assert_eq(sscanf(strstr(said, "kernel saw ") + strlen("kernel saw "), "%lf", &idle), 1, "%s", said);
    cr_expect_lt(idle, 0.5, "%s", said);
    cr_expect_gt(atoi(skipped + strlen("cores idle, ")), 0, "no trial skipped: %s", said);
    tg_ctx_free(ctx);
#endif
}

Test(threads, two_threads_sharing_a_core_in_long_regions_back_off) {
    pin_to_one_cpu();
    tg_ctx *ctx = tg_ctx_new();
    cr_assert_eq(tg_ctx_set_threads(ctx, 2), TG_OK);
    float out[2];
    /* ~3 ms an item: long enough that two threads sharing a core are time-sliced inside a
     * range, which makes each range's wall time twice its work */
    chain_work work = {out, 2500000};
    for (int region = 0; region < 12 && !tg_ctx_threads_backed_off(ctx); region++)
        tgi_parallel_for(ctx, 2, 1, chain_range, &work);
    char said[512];
    tg_ctx_threads_describe(ctx, said, sizeof said);
    cr_expect(tg_ctx_threads_backed_off(ctx), "one core, two threads, ~3 ms ranges: %s", said);
    tg_ctx_free(ctx);
}

Test(threads, verdict_api_on_null_and_one_thread) {
    char said[64];
    cr_expect_eq(tg_ctx_threads_calibrate(NULL), TG_ERR_INVALID);
    cr_expect_not(tg_ctx_threads_backed_off(NULL));
    cr_expect_eq(tg_ctx_set_threads_backoff(NULL, false), TG_ERR_INVALID);
    cr_expect_gt(tg_ctx_threads_describe(NULL, said, sizeof said), 0);
    cr_expect_str_eq(said, "no context");
    tg_ctx *ctx = tg_ctx_new();
    cr_assert_eq(tg_ctx_set_threads(ctx, 1), TG_OK);
    cr_expect_eq(tg_ctx_threads_calibrate(ctx), TG_OK);
    cr_expect_not(tg_ctx_threads_backed_off(ctx));
    cr_expect_gt(tg_ctx_threads_describe(ctx, NULL, 0), 0, "asks for its length like snprintf");
    tg_ctx_threads_describe(ctx, said, sizeof said);
    cr_expect_str_eq(said, "1 (no pool)");
    tg_ctx_free(ctx);
}

Test(threads, flush_denormals_switch) {
    tg_ctx *ctx = tg_ctx_new();
    cr_expect_eq(tg_ctx_flush_denormals(ctx), false, "off by default");
    volatile float tiny = 1e-39f; /* a denormal */
    volatile float one = 1.0f;
    cr_expect_neq(tiny * one, 0.0f, "denormals survive by default");
    cr_expect_eq(tg_ctx_set_flush_denormals(ctx, true), TG_OK);
    cr_expect(tg_ctx_flush_denormals(ctx));
#if defined(__x86_64__)
    cr_expect_eq(tiny * one, 0.0f, "flushed on the calling thread");
#endif
    cr_expect_eq(tg_ctx_set_flush_denormals(ctx, false), TG_OK);
    cr_expect_neq(tiny * one, 0.0f, "and back");
    cr_expect_eq(tg_ctx_set_flush_denormals(NULL, true), TG_ERR_INVALID);
    cr_expect_eq(tg_ctx_flush_denormals(NULL), false);
    tg_ctx_free(ctx);
}
