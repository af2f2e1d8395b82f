/*
 * cli/files.h — what the tool checks about the files it reads and writes before any training
 * runs, and how it writes a report: into a staging folder, moved into place once complete.
 */
#ifndef TAPEGRAD_CLI_FILES_H
#define TAPEGRAD_CLI_FILES_H

#include <stdbool.h>

/* A path from the command line: 0, or EXIT_USAGE after "tapegrad <command>: <flag>: ..." when it
 * is longer than the system takes (PATH_MAX) — refused, never cut. */
int check_path_arg(const char *command, const char *flag, const char *path);
/* --save: the file can be written now (tg_check_save_path); 0 or EXIT_USAGE with the reason. */
int check_save_arg(const char *command, const char *flag, const char *path);
/* --out: the folder exists (made when missing) and a file can be made in it; 0 or EXIT_USAGE. */
int prepare_out_dir(const char *command, const char *dir);

/* A report being written: files go to a hidden folder inside dir and are renamed into dir once
 * all are written, so a failure leaves the old report (or nothing), never half of a new one.
 * staging_begin first removes staging folders that a killed write left (unlocked, over a
 * minute old). */
#define STAGING_MAX_FILES 64
typedef struct staging {
    const char *command;
    const char *dir;
    char *temp;                            /* "<dir>/.tapegrad-report-XXXXXX" */
    char *names[STAGING_MAX_FILES];        /* files written so far */
    int n_names;
    char *last_path;                       /* the path staging_path gave last */
    int lock_fd;                           /* the folder, flock()ed while the write lasts */
} staging;

/* 0, or 1 after printing why. */
int staging_begin(staging *s, const char *command, const char *dir);
/* Where to write `name` (inside the staging folder); NULL after printing why. Valid until the
 * next call. */
const char *staging_path(staging *s, const char *name);
/* Moves every file into dir (after checking none would replace a directory); 0, or 1 after
 * printing why, with nothing moved. The staging folder is gone afterwards either way. */
int staging_commit(staging *s);
/* Removes the staging folder and what it holds (after a failed write). */
void staging_abort(staging *s);

/* Fails early when standard output is closed (a file opened later would take its descriptor
 * and receive the output); 0, or 1 after saying so on stderr. */
int check_stdout_open(void);
/* --data csv:-: standard input copied once to a temporary file (removed at exit), whose path is
 * returned; NULL after printing why. */
const char *stdin_to_file(const char *command);
/* At exit: output that could not be written (stdout or stderr on /dev/full) is exit status 1,
 * with a message on stderr when stdout failed, not a silent 0. Returns the status to exit with. */
int finish_output(int status);

#endif
