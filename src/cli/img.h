/*
 * img.h - what the `kvmm img` subcommands (src/cli/img*.c) share.  Each
 * subcommand takes argv with argv[0] its own name and returns the process
 * exit status (qemu-img's: 0 success, 1 error unless the subcommand's
 * comment says otherwise).
 */
#ifndef KVMM_CLI_IMG_H
#define KVMM_CLI_IMG_H

/* Print "kvmm img: error: <message>" on stderr; returns KVMM_EXIT_ERROR. */
int img_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
