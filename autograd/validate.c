/*
 * autograd/validate.c — the checks every public entry point shares: tensors of an earlier step
 * of their tape (stale), tensors of another context, and names that must be given.
 *
 * One place for each rule, so a function only says which rule applies and every message reads
 * the same. Input files are opened here too: every reader refuses what is not a regular file.
 */
#include "autograd/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The tape generation kept in the tensor against its tape's current one. A tape tensor's
 * header is a slot that only ever holds headers of its tape (autograd/headers.c), so the fields
 * read here are always a real tape and generation (see tg_tape_zeros in tapegrad.h). */
bool tgi_tensor_stale(const tg_tensor *t) {
    return t->tape && !t->persistent && t->generation != t->tape->generation;
}

/* Nothing of the tensor is named: its label and producer may be another step's data. */
#define STALE_REASON "belongs to an earlier step of its tape (tensors made on a tape are valid " \
                     "until its next tg_tape_reset)"

tg_status tgi_refuse_stale(const tg_tensor *t, const char *what) {
    if (!tgi_tensor_stale(t)) return TG_OK;
    return tgi_error(t->tape->ctx, TG_ERR_STATE, "%s: the tensor " STALE_REASON, what);
}

tg_status tgi_refuse_stale_list(tg_ctx *ctx, tg_tensor *const *list, int n, const char *what) {
    for (int i = 0; i < n; i++)
        if (list[i] && tgi_tensor_stale(list[i]))
            return tgi_error(ctx ? ctx : list[i]->tape->ctx, TG_ERR_STATE,
                             "%s: tensor %d " STALE_REASON, what, i);
    return TG_OK;
}

tg_status tgi_check_name_length(tg_ctx *ctx, const char *what, const char *kind,
                                const char *name, size_t len) {
    if (len < TG_LABEL_MAX) return TG_OK;
    return tgi_error(ctx, TG_ERR_INVALID, "%s: %s '%.40s...' is %zu bytes long; names are at "
                     "most %d bytes (TG_LABEL_MAX - 1)", what, kind, name, len, TG_LABEL_MAX - 1);
}

tg_status tgi_check_name(tg_ctx *ctx, const char *what, const char *name) {
    if (name) return TG_OK;
    return tgi_error(ctx, TG_ERR_INVALID, "%s: the name is NULL (every module and series needs "
                     "one: its parameters and nodes are labelled after it)", what);
}

int tgi_open_input(tg_ctx *ctx, const char *what, const char *path, uint64_t *size) {
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        tgi_error(ctx, TG_ERR_IO, "%s '%s': cannot open: %s", what, path, strerror(errno));
        return -1;
    }
    struct stat st;
    const char *wrong = NULL;
    if (fstat(fd, &st) != 0) wrong = strerror(errno);
    else if (S_ISDIR(st.st_mode)) wrong = "it is a directory, not a regular file";
    else if (!S_ISREG(st.st_mode)) wrong = "not a regular file (a device, FIFO or socket)";
    /* a regular file: reads block as usual from here on */
    if (!wrong && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0)
        wrong = strerror(errno);
    if (wrong) {
        tgi_error(ctx, TG_ERR_IO, "%s '%s': %s", what, path, wrong);
        close(fd);
        return -1;
    }
    *size = (uint64_t)st.st_size;
    return fd;
}
