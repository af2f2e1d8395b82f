/*
 * cli/progress.c — progress of long work on stderr: a bar with step, loss and ETA redrawn in
 * place on a terminal; plain lines every few seconds otherwise (logs, pipes, CI).
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/progress.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void progress_start(progress *p, const char *what, long total) {
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->lock, NULL);
    snprintf(p->what, sizeof p->what, "%s", what);
    p->total = total > 0 ? total : 1;
    p->terminal = isatty(fileno(stderr));
    p->started = p->last_print = now();
}

static void draw(progress *p, double t) {
    double fraction = (double)p->done / (double)p->total;
    double eta = fraction > 0 ? (t - p->started) * (1 - fraction) / fraction : 0;
    if (p->terminal) {
        char bar[31];
        int filled = (int)(fraction * 30);
        for (int i = 0; i < 30; i++) bar[i] = i < filled ? '=' : (i == filled ? '>' : ' ');
        bar[30] = '\0';
        fprintf(stderr, "\r%-10s [%s] %3.0f%%  step %ld/%ld  loss %-9.4g ", p->what, bar,
                100 * fraction, p->done, p->total, p->last_loss);
        if (p->show_rate) fprintf(stderr, "lr %-9.3g ", p->rate);
        fprintf(stderr, "ETA %3.0fs ", eta);
    } else {
        fprintf(stderr, "%s: %ld/%ld steps (%.0f%%), loss %.4g, ", p->what, p->done, p->total,
                100 * fraction, p->last_loss);
        if (p->show_rate) fprintf(stderr, "lr %.3g, ", p->rate);
        fprintf(stderr, "ETA %.0fs\n", eta);
    }
    fflush(stderr);
    p->last_print = t;
}

void progress_advance(progress *p, long steps, double loss) {
    pthread_mutex_lock(&p->lock);
    p->done += steps;
    p->last_loss = loss;
    double t = now();
    /* a terminal redraws a few times a second; a log gets a line every 5 s */
    if (t - p->last_print >= (p->terminal ? 0.2 : 5.0)) draw(p, t);
    pthread_mutex_unlock(&p->lock);
}

void progress_finish(progress *p) {
    if (p->terminal) fprintf(stderr, "\r%*s\r", 100, "");
    pthread_mutex_destroy(&p->lock);
}
