/*
 * timer.c - device timers on one sorted list per machine (timer.h).  A board
 * has a handful of timers, so a list beats a heap.
 */
#include "core/timer.h"

#include <time.h>
#include <unistd.h>

#include "core/vm.h"

uint64_t vm_clock_ns(struct vm *vm)
{
	struct timespec ts;

	if (vm->fake_clock)
		return __atomic_load_n(&vm->fake_clock_ns, __ATOMIC_ACQUIRE);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void vm_timer_init(struct vm_timer *t, struct vm *vm, void (*cb)(void *),
		   void *opaque)
{
	*t = (struct vm_timer){ .vm = vm, .cb = cb, .opaque = opaque };
}

static void unlink_locked(struct vm_timer *t)
{
	struct vm_timer **pp = &t->vm->timers;

	while (*pp && *pp != t)
		pp = &(*pp)->next;
	if (*pp)
		*pp = t->next;
	t->next = NULL;
	t->armed = false;
}

void vm_timer_mod(struct vm_timer *t, uint64_t deadline_ns)
{
	struct vm *vm = t->vm;
	struct vm_timer **pp;
	uint64_t one = 1;
	bool first;

	pthread_mutex_lock(&vm->timer_lock);
	if (t->armed)
		unlink_locked(t);
	t->deadline = deadline_ns;
	t->armed = true;
	pp = &vm->timers;
	while (*pp && (*pp)->deadline <= deadline_ns)
		pp = &(*pp)->next;
	t->next = *pp;
	*pp = t;
	first = vm->timers == t;
	pthread_mutex_unlock(&vm->timer_lock);
	if (first && write(vm->timer_efd, &one, sizeof(one)) < 0) {
		/* Already signalled: the counter is non-zero. */
	}
}

void vm_timer_del(struct vm_timer *t)
{
	pthread_mutex_lock(&t->vm->timer_lock);
	if (t->armed)
		unlink_locked(t);
	pthread_mutex_unlock(&t->vm->timer_lock);
}

uint64_t vm_timers_run(struct vm *vm)
{
	uint64_t next;

	for (;;) {
		uint64_t now = vm_clock_ns(vm);
		struct vm_timer *t;

		pthread_mutex_lock(&vm->timer_lock);
		t = vm->timers;
		if (!t || t->deadline > now) {
			next = t ? t->deadline : UINT64_MAX;
			pthread_mutex_unlock(&vm->timer_lock);
			return next;
		}
		unlink_locked(t);
		pthread_mutex_unlock(&vm->timer_lock);
		t->cb(t->opaque);
	}
}
