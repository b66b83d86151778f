/*
 * event_loop.c - see event_loop.h.  Handlers live in a small fixed table
 * indexed from epoll's data field, so a dispatch is an array access.
 */
#include "core/event_loop.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "core/timer.h"
#include "core/vm.h"

static void timer_efd_ready(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	uint64_t v;

	/* Only the wake-up matters; timers run after every wait anyway. */
	if (read(vm->timer_efd, &v, sizeof(v)) < 0) {
	}
}

int evloop_init(struct evloop *loop, struct vm *vm)
{
	memset(loop, 0, sizeof(*loop));
	for (int i = 0; i < EVLOOP_MAX_HANDLERS; i++)
		loop->handlers[i].fd = -1;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0)
		return -errno;
	loop->vm = vm;
	if (vm)
		return evloop_add(loop, vm->timer_efd, EPOLLIN,
				  timer_efd_ready, vm);
	return 0;
}

int evloop_add(struct evloop *loop, int fd, uint32_t events, evloop_fn fn,
	       void *opaque)
{
	struct epoll_event ev = { .events = events };
	int i;

	for (i = 0; i < EVLOOP_MAX_HANDLERS; i++)
		if (loop->handlers[i].fd < 0)
			break;
	if (i == EVLOOP_MAX_HANDLERS)
		return -ENOSPC;
	ev.data.u32 = i;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	loop->handlers[i] = (struct evloop_handler){ fd, fn, opaque };
	return 0;
}

static int find(struct evloop *loop, int fd)
{
	for (int i = 0; i < EVLOOP_MAX_HANDLERS; i++)
		if (loop->handlers[i].fd == fd)
			return i;
	return -1;
}

int evloop_mod(struct evloop *loop, int fd, uint32_t events)
{
	int i = find(loop, fd);
	struct epoll_event ev = { .events = events };

	if (i < 0)
		return -ENOENT;
	ev.data.u32 = i;
	return epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

void evloop_del(struct evloop *loop, int fd)
{
	int i = find(loop, fd);

	if (i < 0)
		return;
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
	loop->handlers[i].fd = -1;
}

int evloop_run_once(struct evloop *loop, int timeout_ms)
{
	struct epoll_event evs[16];
	struct timespec ts, *tsp = NULL;
	uint64_t wait_ns = timeout_ms < 0 ? UINT64_MAX
					  : (uint64_t)timeout_ms * 1000000;
	int n;

	if (loop->vm) {
		/* Device timers need better than epoll_wait's milliseconds
		 * (the PIT at 1 kHz, the LAPIC timer): epoll_pwait2 takes ns. */
		uint64_t next = vm_timers_run(loop->vm);
		if (next != UINT64_MAX) {
			uint64_t now = vm_clock_ns(loop->vm);
			uint64_t d = next > now ? next - now : 0;
			if (d < wait_ns)
				wait_ns = d;
		}
	}
	if (wait_ns != UINT64_MAX) {
		ts.tv_sec = (time_t)(wait_ns / 1000000000);
		ts.tv_nsec = (long)(wait_ns % 1000000000);
		tsp = &ts;
	}
	n = epoll_pwait2(loop->epfd, evs, 16, tsp, NULL);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int k = 0; k < n; k++) {
		struct evloop_handler *h = &loop->handlers[evs[k].data.u32];
		if (h->fd >= 0)
			h->fn(h->opaque, evs[k].events);
	}
	if (loop->vm)
		vm_timers_run(loop->vm);
	return n;
}

void evloop_destroy(struct evloop *loop)
{
	if (loop->epfd >= 0)
		close(loop->epfd);
	loop->epfd = -1;
}
