/*
 * cli.h - the kvmm subcommands.  Each takes main's argc/argv shifted so that
 * argv[0] is the subcommand's name, and returns the process exit status.
 */
#ifndef KVMM_CLI_CLI_H
#define KVMM_CLI_CLI_H

/* Exit statuses of `kvmm run` (also in --help and README.md).  Statuses of
 * the debug-exit port, (v << 1) | 1, are odd; kvmm's own are even. */
#define KVMM_EXIT_OK          0 /* guest powered off or reset; or Ctrl-A x / SIGINT / SIGTERM */
#define KVMM_EXIT_ERROR       2 /* kvmm failed: bad flags or files, host error */
#define KVMM_EXIT_GUEST_CRASH 4 /* triple fault, emulation failure, unhandled exit */

/* `kvmm run ...`: boot one VM in the foreground. */
int cli_run(int argc, char **argv);

/* `kvmm img create|info ...`: disk image tools (qemu-img's options).
 * Returns 0 or KVMM_EXIT_ERROR, with a message on stderr. */
int cli_img(int argc, char **argv);

#endif
