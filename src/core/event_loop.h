/*
 * event_loop.h - an epoll loop for the I/O thread: file descriptors with
 * callbacks, plus the machine's device timers (core/timer.h).
 *
 * One loop runs on one thread; handlers run on it one at a time.  Other
 * threads only add/remove fds (epoll is thread-safe for that) and arm timers
 * (which wakes the loop through vm->timer_efd).
 */
#ifndef KVMM_CORE_EVENT_LOOP_H
#define KVMM_CORE_EVENT_LOOP_H

#include <stdbool.h>
#include <stdint.h>

struct vm;

typedef void (*evloop_fn)(void *opaque, uint32_t events);

#define EVLOOP_MAX_HANDLERS 256 /* a kick eventfd per virtqueue adds up */

struct evloop {
	int epfd;
	struct vm *vm; /* whose timers this loop runs; may be NULL */
	struct evloop_handler {
		int fd;
		evloop_fn fn;
		void *opaque;
	} handlers[EVLOOP_MAX_HANDLERS];
};

/* Create the epoll instance; if vm is non-NULL the loop also runs its timers.
 * Returns 0 or -errno. */
int evloop_init(struct evloop *loop, struct vm *vm);

/* Watch `fd` for `events` (EPOLLIN, ...), level-triggered.  Returns 0,
 * -ENOSPC, or -errno from epoll_ctl (-EPERM for regular files and
 * /dev/null, which epoll cannot watch: the caller handles those itself). */
int evloop_add(struct evloop *loop, int fd, uint32_t events, evloop_fn fn,
	       void *opaque);

/* Change the events watched on `fd` (0 pauses it).  Returns 0 or -errno. */
int evloop_mod(struct evloop *loop, int fd, uint32_t events);

/* Stop watching `fd`. */
void evloop_del(struct evloop *loop, int fd);

/* Wait up to timeout_ms (-1: forever; shortened to the next timer deadline)
 * and dispatch handlers and expired timers once.  Returns the number of fd
 * events dispatched (0 on timeout or EINTR), or -errno. */
int evloop_run_once(struct evloop *loop, int timeout_ms);

/* Close the epoll fd. */
void evloop_destroy(struct evloop *loop);

#endif
