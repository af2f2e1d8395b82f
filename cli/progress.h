/* cli/progress.h — a progress display shared by worker threads. */
#ifndef TAPEGRAD_PROGRESS_H
#define TAPEGRAD_PROGRESS_H

#include <pthread.h>
#include <stdbool.h>

typedef struct progress {
    pthread_mutex_t lock;
    char what[32];
    long total, done;
    double last_loss, started, last_print;
    bool terminal;
    bool show_rate;              /* show `rate` (a learning rate) after the loss */
    double rate;
} progress;

void progress_start(progress *p, const char *what, long total);
void progress_advance(progress *p, long steps, double loss);
void progress_finish(progress *p);

#endif
