/*
 * timer.h - the machine's clock and device timers.
 *
 * vm_clock_ns() is the time base every device uses (PIT, RTC, PM timer,
 * LAPIC timer): host CLOCK_MONOTONIC in nanoseconds, or, in the test harness,
 * a fake clock the test advances, so timer behaviour is deterministic.
 *
 * A vm_timer calls its callback once when the clock passes its deadline.
 * Expired timers run on the thread that calls vm_timers_run() (the I/O
 * thread, or the harness when it advances the fake clock), without any timer
 * lock held, so callbacks may take their device's lock and re-arm.
 */
#ifndef KVMM_CORE_TIMER_H
#define KVMM_CORE_TIMER_H

#include <stdbool.h>
#include <stdint.h>

struct vm;

struct vm_timer {
	struct vm *vm;
	void (*cb)(void *opaque);
	void *opaque;
	uint64_t deadline; /* ns on vm_clock_ns()'s time base */
	bool armed;
	struct vm_timer *next; /* in vm's list, sorted by deadline */
};

/* Current machine time, ns. */
uint64_t vm_clock_ns(struct vm *vm);

/* Prepare a disarmed timer. */
void vm_timer_init(struct vm_timer *t, struct vm *vm, void (*cb)(void *),
		   void *opaque);

/* Arm (or re-arm) to fire at absolute time `deadline_ns`.  Wakes the
 * thread running timers if this is now the earliest deadline. */
void vm_timer_mod(struct vm_timer *t, uint64_t deadline_ns);

/* Disarm; after it returns the callback will not start again (it may be
 * running on the timer thread right now if called from another thread). */
void vm_timer_del(struct vm_timer *t);

/* Run every timer whose deadline is <= now.  Returns the earliest pending
 * deadline in ns, or UINT64_MAX if none is armed. */
uint64_t vm_timers_run(struct vm *vm);

#endif
