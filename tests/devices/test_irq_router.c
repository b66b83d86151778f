/*
 * test_irq_router.c - the software board's interrupt wiring: GSIs raised
 * through vm->irq reach the right PIC and IOAPIC pins; MSIs reach the
 * LAPIC callback.  Also the PIT end to end through the router.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "hw/ioapic.h"
#include "hw/irq_router.h"
#include "hw/pc.h"
#include "hw/pic.h"
#include "hw/pit.h"

#define MAX_MSG 64

struct msgs {
	unsigned n;
	struct { uint64_t addr; uint32_t data; } m[MAX_MSG];
};

struct fixture {
	struct harness *h;
	struct pic *pic;
	struct ioapic *io;
	struct irq_router *router;
	struct msgs ioapic_msgs, msi_msgs;
	bool intr;
};

static void record(void *opaque, uint64_t addr, uint32_t data)
{
	struct msgs *r = opaque;

	if (r->n < MAX_MSG) {
		r->m[r->n].addr = addr;
		r->m[r->n].data = data;
	}
	r->n++;
}

static void intr_cb(void *opaque, bool level)
{
	*(bool *)opaque = level;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct harness *h;

	assert_non_null(f);
	f->h = h = harness_new(1 << 20);
	assert_int_equal(pic_create(&h->vm, intr_cb, &f->intr, &f->pic), 0);
	assert_int_equal(ioapic_create(&h->vm, record, &f->ioapic_msgs, &f->io),
			 0);
	assert_int_equal(irq_router_create(&h->vm, f->pic, f->io, record,
					   &f->msi_msgs, &f->router),
			 0);
	/* Guest: PIC as Linux programs it, all unmasked; IOAPIC entries
	 * 0-23 edge, unmasked, vector 0x30 + pin. */
	hx_outb(h, 0x20, 0x11);
	hx_outb(h, 0x21, 0x20);
	hx_outb(h, 0x21, 0x04);
	hx_outb(h, 0x21, 0x01);
	hx_outb(h, 0xa0, 0x11);
	hx_outb(h, 0xa1, 0x28);
	hx_outb(h, 0xa1, 0x02);
	hx_outb(h, 0xa1, 0x01);
	hx_outb(h, 0x21, 0x00);
	hx_outb(h, 0xa1, 0x00);
	for (unsigned pin = 0; pin < IRQ_MAX_GSI; pin++) {
		hx_mmio_write(h, PC_IOAPIC_BASE, 4, 0x11 + 2 * pin);
		hx_mmio_write(h, PC_IOAPIC_BASE + 0x10, 4, 0);
		hx_mmio_write(h, PC_IOAPIC_BASE, 4, 0x10 + 2 * pin);
		hx_mmio_write(h, PC_IOAPIC_BASE + 0x10, 4, 0x30 + pin);
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	harness_free(f->h);
	free(f);
	return 0;
}

static void test_irq0_to_pin2_and_pic0(void **state)
{
	struct fixture *f = *state;

	irq_pulse(&f->h->vm.irq, PC_IRQ_PIT);
	assert_int_equal(f->ioapic_msgs.n, 1);
	assert_int_equal(f->ioapic_msgs.m[0].data & 0xff, 0x30 + PC_GSI_PIT);
	assert_true(f->intr);
	assert_int_equal(pic_intack(f->pic), 0x20);
	/* The harness's own recorder is no longer in the path. */
	assert_int_equal(hx_irq_edges(f->h, 0), 0);
}

static void test_irq4_to_both_pin4s(void **state)
{
	struct fixture *f = *state;

	irq_set_level(&f->h->vm.irq, PC_IRQ_COM1, true);
	assert_int_equal(f->ioapic_msgs.n, 1);
	assert_int_equal(f->ioapic_msgs.m[0].data & 0xff, 0x34);
	assert_int_equal(pic_intack(f->pic), 0x24);
	irq_set_level(&f->h->vm.irq, PC_IRQ_COM1, false);

	/* Slave IRQs too: the RTC's IRQ 8. */
	irq_pulse(&f->h->vm.irq, PC_IRQ_RTC);
	assert_int_equal(f->ioapic_msgs.n, 2);
	assert_int_equal(f->ioapic_msgs.m[1].data & 0xff, 0x38);
	hx_outb(f->h, 0x20, 0x20);
	assert_int_equal(pic_intack(f->pic), 0x28);
}

static void test_gsi2_and_pci_gsis(void **state)
{
	struct fixture *f = *state;

	/* GSI 2 is the cascade: nothing happens. */
	irq_pulse(&f->h->vm.irq, 2);
	assert_int_equal(f->ioapic_msgs.n, 0);
	assert_false(f->intr);
	/* GSIs 16-23 exist on the IOAPIC only. */
	irq_pulse(&f->h->vm.irq, 20);
	assert_int_equal(f->ioapic_msgs.n, 1);
	assert_int_equal(f->ioapic_msgs.m[0].data & 0xff, 0x30 + 20);
	assert_false(f->intr);
	/* Out of range is ignored. */
	irq_pulse(&f->h->vm.irq, IRQ_MAX_GSI);
	assert_int_equal(f->ioapic_msgs.n, 1);
}

static void test_msi(void **state)
{
	struct fixture *f = *state;

	irq_send_msi(&f->h->vm.irq, 0xfee01000, 0x4041);
	assert_int_equal(f->msi_msgs.n, 1);
	assert_int_equal(f->msi_msgs.m[0].addr, 0xfee01000);
	assert_int_equal(f->msi_msgs.m[0].data, 0x4041);
	assert_int_equal(f->ioapic_msgs.n, 0);
}

/* The PIT's IRQ0 reaches the PIC and IOAPIC pin 2 through the router. */
static void test_pit_through_router(void **state)
{
	struct fixture *f = *state;
	struct pit *pit;

	assert_int_equal(pit_create(&f->h->vm, &pit), 0);
	hx_outb(f->h, 0x43, 0x34);
	hx_outb(f->h, 0x40, 1193 & 0xff);
	hx_outb(f->h, 0x40, 1193 >> 8);
	hx_clock_advance(f->h, 10000000);
	assert_in_range(f->ioapic_msgs.n, 9, 11);
	for (unsigned i = 0; i < f->ioapic_msgs.n && i < MAX_MSG; i++)
		assert_int_equal(f->ioapic_msgs.m[i].data, 0x32);
	assert_true(f->intr);
	assert_int_equal(pic_intack(f->pic), 0x20);
}

/* Without a PIC (or IOAPIC) the other half still works. */
static void test_half_board(void **state)
{
	struct harness *h = harness_new(1 << 20);
	struct msgs m = { 0 };
	struct ioapic *io;
	struct irq_router *r;

	assert_int_equal(ioapic_create(&h->vm, record, &m, &io), 0);
	assert_int_equal(irq_router_create(&h->vm, NULL, io, NULL, NULL, &r),
			 0);
	hx_mmio_write(h, PC_IOAPIC_BASE, 4, 0x18);
	hx_mmio_write(h, PC_IOAPIC_BASE + 0x10, 4, 0x44);
	irq_pulse(&h->vm.irq, 4);
	irq_send_msi(&h->vm.irq, 0xfee00000, 0x40);
	assert_int_equal(m.n, 1);
	harness_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_irq0_to_pin2_and_pic0),
		T(test_irq4_to_both_pin4s),
		T(test_gsi2_and_pci_gsis),
		T(test_msi),
		T(test_pit_through_router),
#undef T
		cmocka_unit_test(test_half_board),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
