/*
 * post_port.c - the POST code port 0x80 (see post_port.h).
 *
 * Why so small: Linux uses "outb %al, $0x80" as an I/O delay (the default
 * io_delay type on x86), sometimes thousands of times while probing legacy
 * devices, and under KVM every one of them is a VM exit that lands here.
 * So the write path is a single relaxed atomic store: no lock, no
 * allocation, no logging.  The last code is still kept and readable
 * (through the port, as on boards with a POST display that latches it, and
 * through post_port_last_code()) because "which POST code was last" is the
 * first question when firmware hangs.
 *
 * The byte is guest-visible (reads return it), so it is saved and loaded;
 * any value is valid.
 */
#include "hw/post_port.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "core/vm.h"
#include "hw/pc.h"

#define POST_STATE_VERSION 1

struct post_port {
	_Atomic uint8_t code;
};

static uint64_t post_read(void *opaque, uint64_t offset, unsigned size)
{
	struct post_port *p = opaque;

	return atomic_load_explicit(&p->code, memory_order_relaxed);
}

static void post_write(void *opaque, uint64_t offset, unsigned size,
		       uint64_t value)
{
	struct post_port *p = opaque;

	atomic_store_explicit(&p->code, (uint8_t)value, memory_order_relaxed);
}

static const struct bus_ops post_bus_ops = {
	.read = post_read,
	.write = post_write,
};

uint8_t post_port_last_code(struct post_port *p)
{
	return atomic_load_explicit(&p->code, memory_order_relaxed);
}

static void post_reset(void *opaque)
{
	struct post_port *p = opaque;

	atomic_store(&p->code, 0);
}

static void post_save(void *opaque, struct state_buf *b)
{
	struct post_port *p = opaque;

	state_put_u8(b, POST_STATE_VERSION);
	state_put_u8(b, atomic_load(&p->code));
}

static int post_load(void *opaque, struct state_reader *r)
{
	struct post_port *p = opaque;
	uint8_t version = state_get_u8(r);
	uint8_t code = state_get_u8(r);

	if (r->err || version != POST_STATE_VERSION)
		return -EINVAL;
	atomic_store(&p->code, code);
	return 0;
}

static void post_destroy(void *opaque)
{
	free(opaque);
}

static const struct vm_device_ops post_device_ops = {
	.name = "post_port",
	.reset = post_reset,
	.save = post_save,
	.load = post_load,
	.destroy = post_destroy,
};

int post_port_create(struct vm *vm, struct post_port **out)
{
	struct post_port *p = calloc(1, sizeof(*p));
	int r;

	if (!p)
		return -ENOMEM;
	r = vm_add_device(vm, &post_device_ops, p);
	if (r) {
		free(p);
		return r;
	}
	r = bus_register(&vm->pio, PC_POST_PORT, 1, &post_bus_ops, p,
			 "post_port");
	if (r)
		return r;
	if (out)
		*out = p;
	return 0;
}
