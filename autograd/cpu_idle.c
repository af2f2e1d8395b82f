/*
 * autograd/cpu_idle.c — how much the CPUs this process may run on have idled, as the kernel
 * counts it: what the thread pool asks before it tries its workers again after backing off.
 *
 * Why ask the kernel: a trial of the workers on a machine whose cores are still taken costs a
 * window of slow parallel regions and perhaps a time slice spent waiting for a descheduled worker;
 * the kernel already knows whether any of our CPUs idled meanwhile, for the price of reading one
 * small file. Linux only (/proc/stat, in USER_HZ ticks); elsewhere the answer is "unknown" and the
 * pool tries its workers as it did before.
 *
 * No allocation (a training step may run this): the file is read with read(2) into a buffer on
 * the stack, line by line.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_ISSET */
#include "autograd/internal.h"

#include <ctype.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINE_ROOM 512 /* a "cpuN" line has 10 numbers: ~120 characters */

/* The idle and iowait ticks of a "cpuN user nice system idle iowait ..." line, or -1 when it is
 * not a line of one of the CPUs in `mine`. */
static int64_t idle_ticks_of_line(const char *line, const cpu_set_t *mine) {
    if (strncmp(line, "cpu", 3) != 0 || !isdigit((unsigned char)line[3])) return -1;
    char *end;
    long cpu = strtol(line + 3, &end, 10);
    if (cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET((int)cpu, mine)) return -1;
    int64_t field[5] = {0};
    const char *p = end;
    for (int f = 0; f < 5; f++) {
        field[f] = strtoll(p, &end, 10);
        if (end == p) return -1; /* fewer fields than a kernel since 2.5.41 writes */
        p = end;
    }
    return field[3] + field[4]; /* idle, iowait */
}

int64_t tgi_idle_ticks(void) {
#if defined(__linux__) && defined(CPU_ISSET)
    cpu_set_t mine;
    if (sched_getaffinity(0, sizeof mine, &mine) != 0) return -1;
    int fd = open("/proc/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char chunk[2048], line[LINE_ROOM];
    size_t used = 0;
    int64_t idle = 0;
    bool any = false, done = false;
    ssize_t got;
    while (!done && (got = read(fd, chunk, sizeof chunk)) > 0) {
        for (ssize_t i = 0; i < got && !done; i++) {
            if (chunk[i] != '\n') {
                if (used + 1 < sizeof line) line[used++] = chunk[i]; /* a longer line is not ours */
                continue;
            }
            line[used] = '\0';
            used = 0;
            if (strncmp(line, "cpu", 3) != 0) {
                done = true; /* the CPU lines come first; the rest is not needed */
                break;
            }
            int64_t ticks = idle_ticks_of_line(line, &mine);
            if (ticks >= 0) {
                idle += ticks;
                any = true;
            }
        }
    }
    close(fd);
    return any ? idle : -1;
#else
    return -1;
#endif
}

int64_t tgi_ticks_per_second(void) {
#ifdef _SC_CLK_TCK
    long hz = sysconf(_SC_CLK_TCK);
    if (hz > 0) return hz;
#endif
    return 100;
}
