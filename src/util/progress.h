/*
 * progress.h - the progress bar of long `kvmm img` operations (-p).
 */
#ifndef KVMM_UTIL_PROGRESS_H
#define KVMM_UTIL_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

struct progress {
	bool on;          /* -p given */
	bool tty;         /* stdout is a terminal: draw a bar */
	int shown;        /* hundredths of a percent last printed, -1 none */
};

/* Start reporting (nothing is printed unless `enabled`).  On a terminal a
 * bar is redrawn in place; otherwise qemu-img's "    (NN.NN/100%)" is
 * printed, ending in a carriage return, so scripts and logs see the same
 * text as with qemu-img -p. */
void progress_init(struct progress *p, bool enabled);

/* `done` of `total` units (any unit: bytes, clusters); printed when the
 * shown value changes by at least 0.01 %; total 0 counts as complete. */
void progress_update(struct progress *p, uint64_t done, uint64_t total);

/* Print 100 % and end the line. */
void progress_end(struct progress *p);

#endif
