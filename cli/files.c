/*
 * cli/files.c — the files the tool writes, checked before a training starts (a model trained
 * for an hour and then not saved is the failure this prevents), and reports written whole.
 */
#define _DEFAULT_SOURCE /* flock */
#include "cli/files.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/study.h"

#define STAGING_PREFIX ".tapegrad-report-"

static int usage_error(const char *command, const char *flag, const char *path, const char *why) {
    fprintf(stderr, "tapegrad %s: %s '%s': %s\n", command, flag, path, why);
    return EXIT_USAGE;
}

int check_path_arg(const char *command, const char *flag, const char *path) {
    if (strlen(path) < PATH_MAX) return 0;
    fprintf(stderr, "tapegrad %s: %s: a path of %zu bytes (at most %d)\n", command, flag,
            strlen(path), PATH_MAX - 1);
    return EXIT_USAGE;
}

int check_save_arg(const char *command, const char *flag, const char *path) {
    if (check_path_arg(command, flag, path)) return EXIT_USAGE;
    tg_ctx *ctx = tg_ctx_new();
    if (!ctx) return usage_error(command, flag, path, "out of memory");
    int status = 0;
    if (tg_check_save_path(ctx, path) != TG_OK) {
        fprintf(stderr, "tapegrad %s: %s: %s\n", command, flag, tg_errmsg(ctx));
        status = EXIT_USAGE;
    }
    tg_ctx_free(ctx);
    return status;
}

/* "<dir>/<name>", allocated; NULL when out of memory. */
static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = malloc(n);
    if (path) snprintf(path, n, "%s/%s", dir, name);
    return path;
}

int prepare_out_dir(const char *command, const char *dir) {
    if (check_path_arg(command, "--out", dir)) return EXIT_USAGE;
    struct stat st;
    /* under mpirun every rank checks the folder at once: another may make it between our stat
     * and our mkdir, so EEXIST is success (the next stat says whether it is a folder) */
    if (stat(dir, &st) != 0 && (errno != ENOENT || (mkdir(dir, 0777) != 0 && errno != EEXIST)))
        return usage_error(command, "--out", dir, strerror(errno));
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return usage_error(command, "--out", dir, "not a directory");
    /* access() says yes to root on /proc and read-only mounts: make what the report will make */
    char *probe = join(dir, STAGING_PREFIX "XXXXXX");
    if (!probe) return usage_error(command, "--out", dir, "out of memory");
    int status = 0;
    if (!mkdtemp(probe)) status = usage_error(command, "--out", dir, strerror(errno));
    else rmdir(probe);
    free(probe);
    return status;
}

/* ---- staging a report ---------------------------------------------------------------------- */

/* A report write in progress holds an flock on its staging folder; one killed midway (kill -9,
 * power loss) leaves the folder unlocked. The next report into the same folder removes such
 * folders, unless they are younger than this: the lock is taken just after the folder is made,
 * and a folder that new may belong to a writer between the two. */
#define ABANDONED_AFTER_SECONDS 60

static bool is_staging_name(const char *name) {
    size_t prefix = sizeof STAGING_PREFIX - 1;
    return strncmp(name, STAGING_PREFIX, prefix) == 0 && strlen(name + prefix) == 6;
}

/* Removes the files of folder fd (a staging folder holds files only), then the folder. */
static void remove_staging_folder(int dir_fd, const char *name, int fd) {
    DIR *d = fdopendir(fd);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            unlinkat(dirfd(d), e->d_name, 0);
    closedir(d); /* closes fd: the lock goes with it, and the folder is empty */
    unlinkat(dir_fd, name, AT_REMOVEDIR);
}

static void remove_abandoned_staging(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    time_t now = time(NULL);
    for (struct dirent *e; (e = readdir(d));) {
        if (!is_staging_name(e->d_name)) continue;
        int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) continue;
        struct stat st;
        if (fstat(fd, &st) == 0 && now - st.st_mtime > ABANDONED_AFTER_SECONDS &&
            flock(fd, LOCK_EX | LOCK_NB) == 0)
            remove_staging_folder(dirfd(d), e->d_name, fd);
        else
            close(fd);
    }
    closedir(d);
}

static int staging_fail(staging *s, const char *what, const char *path) {
    fprintf(stderr, "tapegrad %s: cannot write the report: %s '%s': %s\n", s->command, what, path,
            strerror(errno));
    return 1;
}

int staging_begin(staging *s, const char *command, const char *dir) {
    *s = (staging){.command = command, .dir = dir, .lock_fd = -1};
    remove_abandoned_staging(dir);
    s->temp = join(dir, STAGING_PREFIX "XXXXXX");
    if (s->temp && mkdtemp(s->temp)) {
        /* held until the folder is gone; a failure only leaves it to look abandoned */
        s->lock_fd = open(s->temp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->lock_fd >= 0) flock(s->lock_fd, LOCK_EX | LOCK_NB);
        return 0;
    }
    int status = staging_fail(s, "cannot make a folder in", dir);
    free(s->temp);
    s->temp = NULL;
    return status;
}

const char *staging_path(staging *s, const char *name) {
    free(s->last_path);
    s->last_path = NULL;
    if (s->n_names == STAGING_MAX_FILES) {
        fprintf(stderr, "tapegrad %s: more than %d report files\n", s->command, STAGING_MAX_FILES);
        return NULL;
    }
    char *copy = strdup(name);
    s->last_path = join(s->temp, name);
    if (!copy || !s->last_path) {
        free(copy);
        fprintf(stderr, "tapegrad %s: out of memory\n", s->command);
        return NULL;
    }
    s->names[s->n_names++] = copy;
    return s->last_path;
}

/* Forgets the names and the folder (whose contents are gone or moved). */
static void staging_release(staging *s) {
    if (s->temp) rmdir(s->temp);
    if (s->lock_fd >= 0) close(s->lock_fd);
    for (int i = 0; i < s->n_names; i++) free(s->names[i]);
    free(s->temp);
    free(s->last_path);
    *s = (staging){.lock_fd = -1};
}

void staging_abort(staging *s) {
    for (int i = 0; s->temp && i < s->n_names; i++) {
        char *path = join(s->temp, s->names[i]);
        if (path) unlink(path);
        free(path);
    }
    staging_release(s);
}

int staging_commit(staging *s) {
    /* rename never puts a file over a directory: find that before anything moves */
    for (int i = 0; i < s->n_names; i++) {
        char *final = join(s->dir, s->names[i]);
        struct stat st;
        bool blocked = final && lstat(final, &st) == 0 && S_ISDIR(st.st_mode);
        if (blocked) {
            errno = EISDIR;
            staging_fail(s, "a directory is in the way:", final);
        }
        free(final);
        if (blocked || !final) {
            staging_abort(s);
            return 1;
        }
    }
    int status = 0;
    for (int i = 0; i < s->n_names && !status; i++) {
        char *from = join(s->temp, s->names[i]), *to = join(s->dir, s->names[i]);
        if (!from || !to || rename(from, to) != 0) status = staging_fail(s, "cannot move", to ? to : "");
        free(from);
        free(to);
    }
    if (status) staging_abort(s);
    else staging_release(s);
    return status;
}

/* ---- standard output --------------------------------------------------------------------- */

int check_stdout_open(void) {
    if (fcntl(STDOUT_FILENO, F_GETFD) != -1) return 0;
    fprintf(stderr, "tapegrad: standard output is closed: nothing would be shown\n");
    return 1;
}

int finish_output(int status) {
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "tapegrad: cannot write to standard output: %s\n", strerror(errno));
        return 1;
    }
    return fflush(stderr) != 0 || ferror(stderr) ? 1 : status; /* its messages were lost */
}

/* ---- standard input as a data file (--data csv:-) ------------------------------------------ */

static char stdin_copy[64];

static void remove_stdin_copy(void) {
    if (stdin_copy[0]) unlink(stdin_copy);
}

const char *stdin_to_file(const char *command) {
    if (stdin_copy[0]) return stdin_copy; /* read once: the data set is read more than once */
    snprintf(stdin_copy, sizeof stdin_copy, "/tmp/tapegrad-stdin-XXXXXX");
    int fd = mkstemp(stdin_copy);
    if (fd < 0) {
        fprintf(stderr, "tapegrad %s: --data csv:-: cannot make a temporary copy of standard input: %s\n",
                command, strerror(errno));
        stdin_copy[0] = '\0';
        return NULL;
    }
    atexit(remove_stdin_copy);
    char buf[1 << 16];
    size_t n;
    bool failed = false;
    while (!failed && (n = fread(buf, 1, sizeof buf, stdin)) > 0)
        for (size_t done = 0; done < n && !failed;) {
            ssize_t wrote = write(fd, buf + done, n - done);
            failed = wrote <= 0;
            done += wrote > 0 ? (size_t)wrote : 0;
        }
    failed |= ferror(stdin) != 0;
    if (close(fd) != 0 || failed) {
        fprintf(stderr, "tapegrad %s: --data csv:-: cannot copy standard input to '%s': %s\n", command,
                stdin_copy, strerror(errno ? errno : EIO));
        return NULL;
    }
    return stdin_copy;
}
