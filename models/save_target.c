/*
 * models/save_target.c — where a save writes, checked before anything is written.
 *
 * A save replaces a regular file or creates one; it never replaces a device node, a FIFO or a
 * directory (writing over /dev/null by rename would put a regular file where the device was).
 * A symbolic link is followed, as cp does: the file at the end of the chain is replaced
 * atomically and the link stays a link. Temporary files of a save killed midway (kill -9, power
 * loss) are found by name next to the target and removed by the next save of the same target;
 * a save in progress holds a lock on its temporary file, so a concurrent save's file is never
 * taken for a stale one.
 */
#include "models/models.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Links followed at most (the kernel's own limit for a path is 40). */
#define MAX_LINK_HOPS 40

static void free_string(tg_ctx *ctx, char *s) {
    if (s) tgi_free(ctx, s, strlen(s) + 1);
}

/* "dir/" of path (empty for a bare name) joined with name, allocated. */
static char *beside(tg_ctx *ctx, const char *path, const char *name) {
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0, name_len = strlen(name);
    char *joined = tgi_alloc(ctx, dir_len + name_len + 1);
    if (!joined) return NULL;
    memcpy(joined, path, dir_len);
    memcpy(joined + dir_len, name, name_len + 1);
    return joined;
}

/* The target of one symbolic link, relative ones taken from the link's folder; NULL on error. */
static char *follow(tg_ctx *ctx, const char *verb, const char *path, const char *link,
                    const struct stat *st) {
    size_t cap = st->st_size > 0 ? (size_t)st->st_size + 1 : PATH_MAX;
    char *target = tgi_alloc(ctx, cap);
    if (!target) return NULL;
    ssize_t n = readlink(link, target, cap);
    if (n < 0 || (size_t)n >= cap) {
        tgi_error(ctx, TG_ERR_IO, "%s '%s': cannot read the symbolic link '%s': %s", verb, path,
                  link, n < 0 ? strerror(errno) : "it changed while being read");
        tgi_free(ctx, target, cap);
        return NULL;
    }
    target[n] = '\0';
    char *next = target[0] == '/' ? tgi_strdup(ctx, target) : beside(ctx, link, target);
    tgi_free(ctx, target, cap);
    return next;
}

/* path, or the file its chain of symbolic links ends at (which may not exist yet). */
static char *resolve_links(tg_ctx *ctx, const char *verb, const char *path) {
    char *current = tgi_strdup(ctx, path);
    for (int hops = 0; current && hops <= MAX_LINK_HOPS; hops++) {
        struct stat st;
        if (lstat(current, &st) != 0 || !S_ISLNK(st.st_mode)) return current;
        char *next = follow(ctx, verb, path, current, &st);
        free_string(ctx, current);
        current = next;
    }
    if (current)
        tgi_error(ctx, TG_ERR_IO, "%s '%s': more than %d symbolic links", verb, path, MAX_LINK_HOPS);
    else if (tg_errcode(ctx) == TG_OK) /* follow() said why, unless an allocation failed */
        tgi_error(ctx, TG_ERR_NOMEM, "%s '%s': out of memory", verb, path);
    free_string(ctx, current);
    return NULL;
}

/* The folder holding target must exist and be writable and searchable. */
static tg_status check_folder(tg_ctx *ctx, const char *verb, const char *path, const char *target) {
    char *dir = beside(ctx, target, ".");
    if (!dir) return tgi_error(ctx, TG_ERR_NOMEM, "%s '%s': out of memory", verb, path);
    struct stat st;
    tg_status status = TG_OK;
    if (stat(dir, &st) != 0)
        status = tgi_error(ctx, TG_ERR_IO, "%s '%s': its folder cannot be used: %s", verb, path,
                           strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        status = tgi_error(ctx, TG_ERR_IO, "%s '%s': its folder is not a directory", verb, path);
    else if (access(dir, W_OK | X_OK) != 0)
        status = tgi_error(ctx, TG_ERR_IO, "%s '%s': its folder is not writable: %s", verb, path,
                           strerror(errno));
    free_string(ctx, dir);
    return status;
}

char *tgi_save_target(tg_ctx *ctx, const char *verb, const char *path) {
    if (!path) {
        tgi_error(ctx, TG_ERR_INVALID, "%s: path is NULL", verb);
        return NULL;
    }
    char *target = resolve_links(ctx, verb, path);
    if (!target) return NULL;
    struct stat st;
    tg_status status = TG_OK;
    if (stat(target, &st) == 0) {
        if (!S_ISREG(st.st_mode))
            status = tgi_error(ctx, TG_ERR_IO, "%s '%s': '%s' exists and is not a regular file "
                               "(a directory, device or FIFO is never replaced)", verb, path, target);
    } else if (errno != ENOENT) {
        status = tgi_error(ctx, TG_ERR_IO, "%s '%s': %s", verb, path, strerror(errno));
    }
    if (status == TG_OK) status = check_folder(ctx, verb, path, target);
    if (status == TG_OK) return target;
    free_string(ctx, target);
    return NULL;
}

void tgi_free_save_target(tg_ctx *ctx, char *target) {
    free_string(ctx, target);
}

bool tgi_lock_temp(int fd) {
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    return fcntl(fd, F_SETLK, &lock) == 0;
}

/* "<base>.tmp-" and six characters of mkstemp. */
static bool is_temp_of(const char *name, const char *base) {
    size_t base_len = strlen(base), prefix = sizeof TGI_TEMP_SUFFIX - 7; /* ".tmp-" */
    return strncmp(name, base, base_len) == 0 &&
           strncmp(name + base_len, TGI_TEMP_SUFFIX, prefix) == 0 &&
           strlen(name + base_len + prefix) == 6;
}

/* Removes the file when no live save holds its lock: its writer is gone. */
static void remove_if_abandoned(const char *file) {
    int fd = open(file, O_WRONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && tgi_lock_temp(fd)) unlink(file);
    close(fd);
}

void tgi_remove_stale_temps(tg_ctx *ctx, const char *target) {
    const char *slash = strrchr(target, '/'), *base = slash ? slash + 1 : target;
    char *dir = beside(ctx, target, ".");
    DIR *d = dir ? opendir(dir) : NULL;
    for (struct dirent *entry; d && (entry = readdir(d));) {
        if (!is_temp_of(entry->d_name, base)) continue;
        char *file = beside(ctx, target, entry->d_name);
        if (file) remove_if_abandoned(file);
        free_string(ctx, file);
    }
    if (d) closedir(d);
    free_string(ctx, dir);
}

tg_status tg_check_save_path(tg_ctx *ctx, const char *path) {
    if (!ctx) return TG_ERR_INVALID;
    char *target = tgi_save_target(ctx, "save", path);
    if (!target) return tg_errcode(ctx);
    /* access() says yes to root on a read-only or virtual file system (/proc): try for real,
     * with the temporary file a save would make */
    size_t len = strlen(target);
    char *probe = tgi_alloc(ctx, len + sizeof TGI_TEMP_SUFFIX);
    tg_status status = TG_OK;
    if (!probe) {
        status = tgi_error(ctx, TG_ERR_NOMEM, "save '%s': out of memory", path);
    } else {
        memcpy(probe, target, len);
        memcpy(probe + len, TGI_TEMP_SUFFIX, sizeof TGI_TEMP_SUFFIX);
        int fd = mkstemp(probe);
        if (fd < 0) {
            status = tgi_error(ctx, TG_ERR_IO, "save '%s': cannot create a file next to it: %s",
                               path, strerror(errno));
        } else {
            close(fd);
            unlink(probe);
        }
        tgi_free(ctx, probe, len + sizeof TGI_TEMP_SUFFIX);
    }
    free_string(ctx, target);
    return status;
}
