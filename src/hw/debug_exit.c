/*
 * debug_exit.c - the debug-exit port (see debug_exit.h).
 *
 * Why it exists: a test guest has no disk, no network and often no console
 * worth parsing; the cheapest reliable way to report "test 17 failed" is a
 * single port write that ends the VM with an exit status the test runner
 * checks.  QEMU's isa-debug-exit established the convention (iobase 0xf4,
 * iosize 4, status (v << 1) | 1 so that 0 can never be produced by the
 * guest and a clean poweroff stays distinguishable); kvm-unit-tests and many
 * hobby kernels assume it, so we keep it exactly.
 *
 * The value passed to vm_request_stop() is v as written, masked to the
 * access width: QEMU uses the full written value too, and the 8-bit
 * truncation of the exit status happens in the OS.  The device keeps no
 * state at all: the stop request lives in struct vm (first request wins,
 * so a second write cannot change the status), which is why it needs no
 * lock.  save/load carry only a version byte, so a snapshot stream still
 * names every device.
 *
 * Reads return 0 (QEMU's isa-debug-exit reads 0 as well).
 */
#include "hw/debug_exit.h"

#include <errno.h>
#include <stdlib.h>

#include "core/vm.h"

#define DEBUG_EXIT_STATE_VERSION 1

struct debug_exit {
	struct vm *vm;
};

static uint64_t debug_exit_read(void *opaque, uint64_t offset, unsigned size)
{
	return 0;
}

static void debug_exit_write(void *opaque, uint64_t offset, unsigned size,
			     uint64_t value)
{
	struct debug_exit *d = opaque;
	uint64_t mask = size >= 4 ? 0xffffffffull : (1ull << (8 * size)) - 1;

	vm_request_stop(d->vm, VM_STOP_DEBUG_EXIT, (int)(uint32_t)(value & mask));
}

static const struct bus_ops debug_exit_bus_ops = {
	.read = debug_exit_read,
	.write = debug_exit_write,
};

static void debug_exit_save(void *opaque, struct state_buf *b)
{
	state_put_u8(b, DEBUG_EXIT_STATE_VERSION);
}

static int debug_exit_load(void *opaque, struct state_reader *r)
{
	uint8_t version = state_get_u8(r);

	if (r->err || version != DEBUG_EXIT_STATE_VERSION)
		return -EINVAL;
	return 0;
}

static void debug_exit_destroy(void *opaque)
{
	free(opaque);
}

static const struct vm_device_ops debug_exit_device_ops = {
	.name = "debug_exit",
	.save = debug_exit_save,
	.load = debug_exit_load,
	.destroy = debug_exit_destroy,
};

int debug_exit_create(struct vm *vm, uint16_t port, struct debug_exit **out)
{
	struct debug_exit *d = calloc(1, sizeof(*d));
	int r;

	if (!d)
		return -ENOMEM;
	d->vm = vm;
	r = vm_add_device(vm, &debug_exit_device_ops, d);
	if (r) {
		free(d);
		return r;
	}
	r = bus_register(&vm->pio, port, DEBUG_EXIT_NR_PORTS,
			 &debug_exit_bus_ops, d, "debug_exit");
	if (r)
		return r;
	if (out)
		*out = d;
	return 0;
}
