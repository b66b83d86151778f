/*
 * reset_cf9.c - Reset Control Register, port 0xCF9 (see reset_cf9.h).
 *
 * Semantics follow the Intel I/O controller hub datasheets (RST_CNT,
 * "Reset Control Register", I/O 0xCF9):
 *   bit 1 SYS_RST   0: soft reset (INIT), 1: hard reset (PLTRST#)
 *   bit 2 RST_CPU   a 0 -> 1 transition initiates the reset selected by
 *                   SYS_RST
 *   bit 3 FULL_RST  with SYS_RST: full power cycle
 * Both flavours end in VM_STOP_RESET: kvmm resets the whole machine (every
 * device back to power-on state, vCPUs at the reset vector), which is what
 * a hard reset does and a superset of what a soft reset needs.
 *
 * Why a transition and not "any write with bit 2 set" (QEMU's PIIX): Linux's
 * reboot=pci does
 *     v = inb(0xcf9) & ~0x0e;  outb(v | 2, 0xcf9);  udelay(50);
 *     outb(v | 6, 0xcf9);         (or v | 0x0e for a cold reboot)
 * i.e. it selects the reset type first and only then raises RST_CPU, and
 * the datasheet defines the trigger as the edge.  Both readings agree for
 * every sequence a guest uses; the edge also means a second write while the
 * first request is still being handled does nothing new.  After the machine
 * reset our reset op clears the register, so the next reboot sees 0 -> 1
 * again.
 *
 * The register is one byte under a mutex; vm_request_stop() is called after
 * the lock is dropped (it takes the machine's stop lock).
 */
#include "hw/reset_cf9.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "core/vm.h"
#include "hw/pc.h"

#define RST_CNT_SYS_RST  0x02
#define RST_CNT_RST_CPU  0x04
#define RST_CNT_FULL_RST 0x08
#define RST_CNT_MASK     (RST_CNT_SYS_RST | RST_CNT_RST_CPU | RST_CNT_FULL_RST)

#define RESET_CF9_STATE_VERSION 1

struct reset_cf9 {
	struct vm *vm;
	pthread_mutex_t lock;
	uint8_t rst_cnt;
};

void reset_cf9_write(struct reset_cf9 *rc, uint8_t value)
{
	bool reset;

	pthread_mutex_lock(&rc->lock);
	reset = (value & RST_CNT_RST_CPU) && !(rc->rst_cnt & RST_CNT_RST_CPU);
	rc->rst_cnt = value & RST_CNT_MASK;
	pthread_mutex_unlock(&rc->lock);
	if (reset)
		vm_request_stop(rc->vm, VM_STOP_RESET, 0);
}

uint8_t reset_cf9_read(struct reset_cf9 *rc)
{
	uint8_t v;

	pthread_mutex_lock(&rc->lock);
	v = rc->rst_cnt;
	pthread_mutex_unlock(&rc->lock);
	return v;
}

static uint64_t cf9_io_read(void *opaque, uint64_t offset, unsigned size)
{
	return reset_cf9_read(opaque);
}

static void cf9_io_write(void *opaque, uint64_t offset, unsigned size,
			 uint64_t value)
{
	reset_cf9_write(opaque, (uint8_t)value);
}

static const struct bus_ops cf9_bus_ops = {
	.read = cf9_io_read,
	.write = cf9_io_write,
};

static void cf9_reset(void *opaque)
{
	struct reset_cf9 *rc = opaque;

	pthread_mutex_lock(&rc->lock);
	rc->rst_cnt = 0;
	pthread_mutex_unlock(&rc->lock);
}

static void cf9_save(void *opaque, struct state_buf *b)
{
	state_put_u8(b, RESET_CF9_STATE_VERSION);
	state_put_u8(b, reset_cf9_read(opaque));
}

static int cf9_load(void *opaque, struct state_reader *r)
{
	struct reset_cf9 *rc = opaque;
	uint8_t version = state_get_u8(r);
	uint8_t v = state_get_u8(r);

	if (r->err || version != RESET_CF9_STATE_VERSION || (v & ~RST_CNT_MASK))
		return -EINVAL;
	pthread_mutex_lock(&rc->lock);
	rc->rst_cnt = v;
	pthread_mutex_unlock(&rc->lock);
	return 0;
}

static void cf9_destroy(void *opaque)
{
	struct reset_cf9 *rc = opaque;

	pthread_mutex_destroy(&rc->lock);
	free(rc);
}

static const struct vm_device_ops cf9_device_ops = {
	.name = "reset_cf9",
	.reset = cf9_reset,
	.save = cf9_save,
	.load = cf9_load,
	.destroy = cf9_destroy,
};

static int create(struct vm *vm, bool claim, struct reset_cf9 **out)
{
	struct reset_cf9 *rc = calloc(1, sizeof(*rc));
	int r;

	if (!rc)
		return -ENOMEM;
	rc->vm = vm;
	pthread_mutex_init(&rc->lock, NULL);
	r = vm_add_device(vm, &cf9_device_ops, rc);
	if (r) {
		cf9_destroy(rc);
		return r;
	}
	if (claim) {
		r = bus_register(&vm->pio, PC_RESET_PORT, 1, &cf9_bus_ops, rc,
				 "reset_cf9");
		if (r)
			return r;
	}
	if (out)
		*out = rc;
	return 0;
}

int reset_cf9_create(struct vm *vm, struct reset_cf9 **out)
{
	return create(vm, true, out);
}

int reset_cf9_create_unclaimed(struct vm *vm, struct reset_cf9 **out)
{
	return create(vm, false, out);
}
