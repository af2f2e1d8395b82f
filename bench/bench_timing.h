/* bench/bench_timing.h — what the benchmark programs share: a monotonic clock and the median
 * (with min and max) of a small sample of rounds. */
#ifndef TAPEGRAD_BENCH_TIMING_H
#define TAPEGRAD_BENCH_TIMING_H

#include <stdlib.h>
#include <time.h>

static inline double bench_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU time of the process: with other processes on the same core, the time this one ran (a
 * one-thread figure that a busy machine disturbs less than the wall clock). */
static inline double bench_cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int bench_compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct bench_timing {
    double median, min, max;
} bench_timing;

/* Sorts values in place. The median, so one descheduling does not decide the figure. */
static inline bench_timing bench_summarize(double *values, int n) {
    qsort(values, (size_t)n, sizeof *values, bench_compare_doubles);
    return (bench_timing){values[n / 2], values[0], values[n - 1]};
}

#endif /* TAPEGRAD_BENCH_TIMING_H */
