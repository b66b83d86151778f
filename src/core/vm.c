/*
 * vm.c - machine construction, the device list and stop requests (vm.h).
 */
#include "core/vm.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static pthread_mutex_t stop_lock = PTHREAD_MUTEX_INITIALIZER;

int vm_init(struct vm *vm, uint64_t ram_size, int nr_cpus)
{
	int r;

	memset(vm, 0, sizeof(*vm));
	vm->pio.name = "pio";
	vm->mmio.name = "mmio";
	vm->nr_cpus = nr_cpus;
	pthread_mutex_init(&vm->timer_lock, NULL);
	pthread_mutex_init(&vm->irq_shared_lock, NULL);
	vm->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vm->timer_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_efd < 0 || vm->timer_efd < 0) {
		r = -errno;
		goto fail;
	}
	r = gm_init(&vm->mem, ram_size);
	if (r)
		goto fail;
	return 0;
fail:
	if (vm->stop_efd >= 0)
		close(vm->stop_efd);
	if (vm->timer_efd >= 0)
		close(vm->timer_efd);
	return r;
}

void vm_destroy(struct vm *vm)
{
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	for (int i = vm->nr_devices - 1; i >= 0; i--)
		if (vm->devices[i].ops->destroy)
			vm->devices[i].ops->destroy(vm->devices[i].opaque);
	vm->nr_devices = 0;
	gm_destroy(&vm->mem);
	if (vm->stop_efd >= 0)
		close(vm->stop_efd);
	if (vm->timer_efd >= 0)
		close(vm->timer_efd);
	vm->stop_efd = vm->timer_efd = -1;
	pthread_mutex_destroy(&vm->timer_lock);
	pthread_mutex_destroy(&vm->irq_shared_lock);
}

int vm_add_device(struct vm *vm, const struct vm_device_ops *ops,
		  void *opaque)
{
	if (vm->nr_devices == VM_MAX_DEVICES)
		return -ENOSPC;
	vm->devices[vm->nr_devices++] = (struct vm_device){ ops, opaque };
	return 0;
}

void vm_irq_set_shared(struct vm *vm, unsigned gsi, unsigned source,
		       bool level)
{
	uint64_t old, bit = 1ull << (source & 63);

	if (gsi >= IRQ_MAX_GSI)
		return;
	/* The line changes under the lock so that two sources toggling at
	 * once cannot leave it at the wrong level. */
	pthread_mutex_lock(&vm->irq_shared_lock);
	old = vm->irq_shared[gsi];
	vm->irq_shared[gsi] = level ? old | bit : old & ~bit;
	if (!old != !vm->irq_shared[gsi])
		irq_set_level(&vm->irq, gsi, vm->irq_shared[gsi] != 0);
	pthread_mutex_unlock(&vm->irq_shared_lock);
}

int vm_ioeventfd(struct vm *vm, bool pio, uint64_t addr, unsigned len, int fd,
		 bool assign)
{
	if (!vm->ioeventfd)
		return -ENOTSUP;
	return vm->ioeventfd->assign(vm->ioeventfd_opaque, pio, addr, len, fd,
				     assign);
}

void vm_reset_devices(struct vm *vm)
{
	for (int i = 0; i < vm->nr_devices; i++)
		if (vm->devices[i].ops->reset)
			vm->devices[i].ops->reset(vm->devices[i].opaque);
}

void vm_request_stop(struct vm *vm, enum vm_stop_reason reason, int value)
{
	uint64_t one = 1;

	/* The lock orders stop_value before the reason becomes visible. */
	pthread_mutex_lock(&stop_lock);
	if (atomic_load(&vm->stop_reason) == VM_RUNNING) {
		vm->stop_value = value;
		atomic_store_explicit(&vm->stop_reason, reason,
				      memory_order_release);
		if (write(vm->stop_efd, &one, sizeof(one)) < 0) {
			/* Counter overflow is impossible with one write. */
		}
	}
	pthread_mutex_unlock(&stop_lock);
}
