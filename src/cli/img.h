/*
 * img.h - what the `kvmm img` subcommands (src/cli/img*.c) share.  Each
 * subcommand takes argv with argv[0] its own name and returns the process
 * exit status: 0 on success, KVMM_EXIT_ERROR (img_fail) on error, except
 * `check`, whose statuses are qemu-img check's (1 error, 2 corruption,
 * 3 leaks only).
 */
#ifndef KVMM_CLI_IMG_H
#define KVMM_CLI_IMG_H

/* Print "kvmm img: error: <message>" on stderr; returns KVMM_EXIT_ERROR. */
int img_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print s as a JSON string on stdout (quotes, backslashes and control
 * characters escaped), as qemu-img's --output=json does. */
void img_json_string(const char *s);

/* The subcommands in their own files (img_<name>.c); argv[0] is the
 * subcommand's name. */
int img_convert(int argc, char **argv);
int img_map(int argc, char **argv);
int img_commit(int argc, char **argv);
int img_rebase(int argc, char **argv);
int img_check(int argc, char **argv);
int img_snapshot(int argc, char **argv);
int img_resize(int argc, char **argv);

/* Print img's internal snapshots as qemu-img does ("Snapshot list:", its
 * columns, dates in local time); nothing when it has none.  For
 * `snapshot -l` and `info` (img_snapshot.c). */
struct image;
void img_snapshot_table(struct image *img);

#endif
