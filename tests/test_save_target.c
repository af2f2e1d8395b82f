/* tests/test_save_target.c — where tg_save_safetensors writes: never over a device, FIFO or
 * directory (--save onto a device node replaced it with a regular file); through a symlink to
 * its target (the link used to be replaced); temporary files of killed saves cleaned by the next
 * save (25 of them, 519 MB, after 50 kills); none left by a failed save; tg_check_save_path
 * says all this before a training starts; kill -9 at any moment keeps the last checkpoint. */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"

static char dir[64];
static tg_tensor *w;

static void setup(void) {
    fixture_setup();
    temp_dir_make(dir, "tapegrad-save");
    w = tg_set_label(tg_full(ctx, TG_SHAPE(4), 1.5f), "w");
}

static void teardown(void) {
    temp_dir_remove(dir);
    fixture_teardown();
}

TestSuite(save_target, .init = setup, .fini = teardown, .timeout = 60);

static const char *in_dir(const char *name) {
    static char paths[4][256];
    static int next;
    char *p = paths[next++ % 4];
    snprintf(p, 256, "%s/%s", dir, name);
    return p;
}

/* Files in dir whose name starts with prefix. */
static int count_files(const char *prefix) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

static void expect_refused(const char *path, const char *fragment) {
    tg_clear_error(ctx);
    cr_expect_eq(tg_check_save_path(ctx, path), TG_ERR_IO, "check of %s", path);
    expect_errmsg_has(ctx, fragment);
    tg_clear_error(ctx);
    cr_expect_eq(tg_save_safetensors(ctx, path, &w, 1), TG_ERR_IO, "save to %s", path);
    expect_errmsg_has(ctx, fragment);
}

Test(save_target, devices_fifos_and_directories_are_never_replaced) {
    struct stat before, after;
    cr_assert_eq(stat("/dev/null", &before), 0);
    expect_refused("/dev/null", "not a regular file");
    cr_assert_eq(stat("/dev/null", &after), 0);
    cr_expect(S_ISCHR(after.st_mode) && after.st_rdev == before.st_rdev, "/dev/null was replaced");
    cr_assert_eq(mkfifo(in_dir("fifo"), 0600), 0);
    expect_refused(in_dir("fifo"), "not a regular file");
    cr_assert_eq(mkdir(in_dir("sub"), 0700), 0);
    expect_refused(in_dir("sub"), "not a regular file");
    cr_expect_eq(count_files("fifo.tmp-") + count_files("sub.tmp-"), 0);
}

Test(save_target, missing_or_unusable_folders_are_found_before_writing) {
    expect_refused(in_dir("missing/ck.safetensors"), "folder");
    expect_refused("/proc/self/ck.safetensors", "");
    char file_as_dir[256];
    snprintf(file_as_dir, sizeof file_as_dir, "%s/plain/ck.safetensors", dir);
    FILE *f = fopen(in_dir("plain"), "w");
    fclose(f);
    expect_refused(file_as_dir, "");
    cr_expect_eq(tg_check_save_path(ctx, in_dir("ok.safetensors")), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(count_files("ok.safetensors"), 0, "the check left a file");
}

Test(save_target, a_symlink_is_followed_and_its_target_replaced) {
    FILE *f = fopen(in_dir("target"), "w");
    fputs("old", f);
    fclose(f);
    cr_assert_eq(symlink("target", in_dir("link")), 0);
    cr_assert_eq(tg_save_safetensors(ctx, in_dir("link"), &w, 1), TG_OK, "%s", tg_errmsg(ctx));
    struct stat st;
    cr_assert_eq(lstat(in_dir("link"), &st), 0);
    cr_expect(S_ISLNK(st.st_mode), "the link was replaced by a file");
    tg_fill(w, 0.0f);
    cr_assert_eq(tg_load_safetensors(ctx, in_dir("target"), &w, 1), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(w->data[0], 1.5f, "the target does not hold the checkpoint");
    /* a dangling link: its target is created */
    cr_assert_eq(symlink("new-target", in_dir("dangling")), 0);
    cr_expect_eq(tg_save_safetensors(ctx, in_dir("dangling"), &w, 1), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(stat(in_dir("new-target"), &st), 0);
    cr_assert_eq(symlink("loop", in_dir("loop")), 0);
    expect_refused(in_dir("loop"), "symbolic link");
}

Test(save_target, temporary_files_of_dead_saves_are_removed_by_the_next_save) {
    for (int i = 0; i < 3; i++) {
        char name[64];
        snprintf(name, sizeof name, "ck.safetensors.tmp-dead%02d", i);
        FILE *f = fopen(in_dir(name), "w");
        fputs("half a checkpoint", f);
        fclose(f);
    }
    FILE *other = fopen(in_dir("other.safetensors.tmp-keepme"), "w"); /* another target's */
    fclose(other);
    cr_assert_eq(tg_save_safetensors(ctx, in_dir("ck.safetensors"), &w, 1), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(count_files("ck.safetensors.tmp-"), 0, "stale temporary files remain");
    cr_expect_eq(count_files("other.safetensors.tmp-"), 1, "another target's file was removed");
}

Test(save_target, a_live_save_keeps_its_temporary_file) {
    const char *temp = in_dir("ck.safetensors.tmp-live01");
    int ready[2];
    cr_assert_eq(pipe(ready), 0);
    pid_t child = fork();
    if (child == 0) { /* a save in progress elsewhere: it holds the lock on its file */
        int fd = open(temp, O_RDWR | O_CREAT, 0600);
        struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        if (fd < 0 || fcntl(fd, F_SETLK, &lock) != 0) _exit(1);
        if (write(ready[1], "x", 1) != 1) _exit(1);
        pause();
        _exit(0);
    }
    char c;
    cr_assert_eq(read(ready[0], &c, 1), 1);
    tg_status status = tg_save_safetensors(ctx, in_dir("ck.safetensors"), &w, 1);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    cr_expect_eq(status, TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(access(temp, F_OK), 0, "a live save's temporary file was removed");
}

Test(save_target, a_failed_save_leaves_no_temporary_file_and_the_old_checkpoint) {
    cr_assert_eq(tg_save_safetensors(ctx, in_dir("ck.safetensors"), &w, 1), TG_OK);
    tg_tensor *big = tg_set_label(tg_zeros(ctx, TG_SHAPE(1 << 16)), "w");
    signal(SIGXFSZ, SIG_IGN); /* a write past the limit then fails with EFBIG */
    struct rlimit limit = {4096, 4096};
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &limit), 0);
    cr_expect_eq(tg_save_safetensors(ctx, in_dir("ck.safetensors"), &big, 1), TG_ERR_IO);
    cr_expect_eq(count_files("ck.safetensors.tmp-"), 0, "the failed save left its file");
    tg_fill(w, 0.0f);
    cr_expect_eq(tg_load_safetensors(ctx, in_dir("ck.safetensors"), &w, 1), TG_OK, "%s", tg_errmsg(ctx));
    cr_expect_eq(w->data[0], 1.5f);
}

/* A child saves a 4 MB checkpoint over and over (each save's values all equal its number) and is
 * killed at random moments; every time, the checkpoint loads whole (one save's values), and the
 * next save leaves no temporary file behind. */
Test(save_target, kill_9_during_saves_never_loses_the_checkpoint) {
    const char *path = in_dir("ck.safetensors");
    tg_tensor *big = tg_set_label(tg_zeros(ctx, TG_SHAPE(1 << 20)), "w");
    cr_assert_eq(tg_save_safetensors(ctx, path, &big, 1), TG_OK);
    srand((unsigned)time(NULL));
    for (int round = 0; round < 12; round++) {
        pid_t child = fork();
        if (child == 0) {
            for (int k = 1;; k++) {
                tg_fill(big, (float)k);
                tg_save_safetensors(ctx, path, &big, 1);
            }
        }
        struct timespec pause = {0, 1000000L * (rand() % 40)};
        nanosleep(&pause, NULL);
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        tg_fill(big, -1.0f);
        cr_assert_eq(tg_load_safetensors(ctx, path, &big, 1), TG_OK, "round %d: %s", round, tg_errmsg(ctx));
        for (int64_t i = 1; i < big->size; i++)
            if (big->data[i] != big->data[0]) cr_assert_fail("round %d: a mixed checkpoint", round);
    }
    cr_assert_eq(tg_save_safetensors(ctx, path, &big, 1), TG_OK);
    cr_expect_eq(count_files("ck.safetensors.tmp-"), 0, "temporary files survive the next save");
}
