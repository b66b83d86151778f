/*
 * gdbstub.h - a GDB remote serial protocol server for the guest
 * (`kvmm run --gdb tcp:HOST:PORT [--gdb-wait]`).  Design at the top of
 * gdbstub.c.
 */
#ifndef KVMM_DEBUG_GDBSTUB_H
#define KVMM_DEBUG_GDBSTUB_H

#include <stdbool.h>

struct vm;
struct accel_ops;
struct gdbstub;

/* Listen on `spec` ("tcp:HOST:PORT") and start the stub's thread.  With
 * `wait`, every machine attached later starts paused until the debugger
 * resumes it.  Returns 0 or -errno after logging one line. */
int gdbstub_create(const char *spec, bool wait, struct gdbstub **out);

/* A machine was built (before accel->start()): debug it through
 * accel->debug.  Returns 0, or -ENOTSUP after logging when the
 * accelerator has no debugger interface. */
int gdbstub_attach(struct gdbstub *gs, struct vm *vm,
		   const struct accel_ops *accel, void *accel_state);

/* The machine stopped (after accel->stop(), before accel->destroy()) with
 * kvmm's exit status `status`: the client gets an exit packet (W) and the
 * connection is closed. */
void gdbstub_detach(struct gdbstub *gs, int status);

/* Stop the thread and close the listening socket.  NULL is fine. */
void gdbstub_destroy(struct gdbstub *gs);

#endif
