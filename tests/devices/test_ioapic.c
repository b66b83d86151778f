/*
 * test_ioapic.c - the I/O APIC through the harness: the guest programs it
 * over MMIO, devices drive pins with ioapic_set_irq(), the "LAPIC" records
 * delivered messages and sends EOIs.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "hw/ioapic.h"
#include "hw/pc.h"

#define MAX_MSG 64

struct lapic_rec {
	unsigned n;
	struct { uint64_t addr; uint32_t data; } m[MAX_MSG];
	struct ioapic *eoi_from_cb; /* if set, EOI every message at once */
};

struct fixture {
	struct harness *h;
	struct ioapic *io;
	struct lapic_rec rec;
};

static void deliver(void *opaque, uint64_t addr, uint32_t data)
{
	struct lapic_rec *r = opaque;

	if (r->n < MAX_MSG) {
		r->m[r->n].addr = addr;
		r->m[r->n].data = data;
	}
	r->n++;
	/* A LAPIC may call back from here (no lock held by the IOAPIC). */
	if (r->eoi_from_cb && r->n < 10)
		ioapic_eoi(r->eoi_from_cb, (uint8_t)data);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->h = harness_new(1 << 20);
	assert_int_equal(ioapic_create(&f->h->vm, deliver, &f->rec, &f->io), 0);
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

static uint32_t io_read(struct harness *h, uint32_t reg)
{
	hx_mmio_write(h, PC_IOAPIC_BASE, 4, reg);
	return (uint32_t)hx_mmio_read(h, PC_IOAPIC_BASE + 0x10, 4);
}

static void io_write(struct harness *h, uint32_t reg, uint32_t v)
{
	hx_mmio_write(h, PC_IOAPIC_BASE, 4, reg);
	hx_mmio_write(h, PC_IOAPIC_BASE + 0x10, 4, v);
}

static void set_rte(struct harness *h, unsigned pin, uint32_t lo, uint8_t dest)
{
	io_write(h, 0x10 + 2 * pin + 1, (uint32_t)dest << 24);
	io_write(h, 0x10 + 2 * pin, lo);
}

#define LEVEL (1u << 15)
#define MASK (1u << 16)
#define REMOTE_IRR (1u << 14)
#define ACTIVE_LOW (1u << 13)
#define LOGICAL (1u << 11)

static void test_id_version(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	assert_int_equal(io_read(h, 0x01), 0x00170020);
	assert_int_equal(io_read(h, 0x00), (uint32_t)PC_IOAPIC_ID << 24);
	io_write(h, 0x00, 0xff000000);
	assert_int_equal(io_read(h, 0x00), 0x0f000000);
	assert_int_equal(io_read(h, 0x02), 0x0f000000);
	io_write(h, 0x01, 0xffffffff); /* read-only */
	assert_int_equal(io_read(h, 0x01), 0x00170020);
	/* IOREGSEL reads back; unknown / out-of-range registers read 0. */
	hx_mmio_write(h, PC_IOAPIC_BASE, 4, 0x3f);
	assert_int_equal(hx_mmio_read(h, PC_IOAPIC_BASE, 4), 0x3f);
	assert_int_equal(io_read(h, 0x03), 0);
	assert_int_equal(io_read(h, 0x0f), 0);
	assert_int_equal(io_read(h, 0x40), 0);
	assert_int_equal(io_read(h, 0xff), 0);
	io_write(h, 0x40, 0x12345678);
	io_write(h, 0xff, 0x12345678);
	assert_int_equal(io_read(h, 0x40), 0);
	/* Every entry starts masked. */
	for (unsigned i = 0; i < 24; i++) {
		assert_int_equal(io_read(h, 0x10 + 2 * i), MASK);
		assert_int_equal(io_read(h, 0x11 + 2 * i), 0);
	}
	/* Reads of other widths and offsets don't fault. */
	hx_mmio_write(h, PC_IOAPIC_BASE, 4, 0x01);
	assert_int_equal(hx_mmio_read(h, PC_IOAPIC_BASE + 0x10, 1), 0x20);
	assert_int_equal(hx_mmio_read(h, PC_IOAPIC_BASE + 0x12, 1), 0x17);
	assert_int_equal(hx_mmio_read(h, PC_IOAPIC_BASE + 0x800, 4), 0);
}

static void test_edge_delivery(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	set_rte(h, 4, 0x31, 3); /* fixed, physical, edge, high, dest 3 */
	assert_int_equal(io_read(h, 0x18), 0x31);
	assert_int_equal(io_read(h, 0x19), 0x03000000);
	ioapic_set_irq(f->io, 4, true);
	assert_int_equal(f->rec.n, 1);
	assert_int_equal(f->rec.m[0].addr, 0xfee03000);
	assert_int_equal(f->rec.m[0].data, 0x31);
	ioapic_set_irq(f->io, 4, true); /* no edge */
	assert_int_equal(f->rec.n, 1);
	ioapic_set_irq(f->io, 4, false);
	ioapic_set_irq(f->io, 4, true);
	assert_int_equal(f->rec.n, 2);
	ioapic_set_irq(f->io, 4, false);

	/* Logical destination, lowest priority. */
	set_rte(h, 5, 0x41 | 1u << 8 | LOGICAL, 0x0f);
	ioapic_set_irq(f->io, 5, true);
	assert_int_equal(f->rec.n, 3);
	assert_int_equal(f->rec.m[2].addr, 0xfee0f004);
	assert_int_equal(f->rec.m[2].data, 0x141);
	/* NMI delivery mode. */
	set_rte(h, 6, 0x02 | 4u << 8, 0);
	ioapic_set_irq(f->io, 6, true);
	assert_int_equal(f->rec.m[3].data, 0x402);
	/* Pins beyond 23 are ignored. */
	ioapic_set_irq(f->io, 24, true);
	ioapic_set_irq(f->io, 1000, true);
	assert_int_equal(f->rec.n, 4);
}

static void test_masked_edge_is_lost(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	set_rte(h, 4, 0x31 | MASK, 0);
	ioapic_set_irq(f->io, 4, true);
	assert_int_equal(f->rec.n, 0);
	set_rte(h, 4, 0x31, 0);
	assert_int_equal(f->rec.n, 0);
	ioapic_set_irq(f->io, 4, false);
	ioapic_set_irq(f->io, 4, true);
	assert_int_equal(f->rec.n, 1);
}

static void test_level_remote_irr(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	set_rte(h, 9, 0x49 | LEVEL | MASK, 1);
	ioapic_set_irq(f->io, 9, true);
	assert_int_equal(f->rec.n, 0); /* masked */
	set_rte(h, 9, 0x49 | LEVEL, 1);  /* unmask while asserted */
	assert_int_equal(f->rec.n, 1);
	assert_int_equal(f->rec.m[0].addr, 0xfee01000);
	assert_int_equal(f->rec.m[0].data, 0x49 | 1u << 15);
	assert_true(io_read(h, 0x10 + 18) & REMOTE_IRR);

	/* Remote IRR blocks redelivery, even across a new assertion. */
	ioapic_set_irq(f->io, 9, false);
	ioapic_set_irq(f->io, 9, true);
	assert_int_equal(f->rec.n, 1);
	/* EOI of another vector does nothing. */
	ioapic_eoi(f->io, 0x48);
	assert_int_equal(f->rec.n, 1);
	/* EOI while still asserted: delivered again. */
	ioapic_eoi(f->io, 0x49);
	assert_int_equal(f->rec.n, 2);
	assert_true(io_read(h, 0x10 + 18) & REMOTE_IRR);
	/* Deasserted, then EOI: Remote IRR clears, nothing sent. */
	ioapic_set_irq(f->io, 9, false);
	ioapic_eoi(f->io, 0x49);
	assert_int_equal(f->rec.n, 2);
	assert_false(io_read(h, 0x10 + 18) & REMOTE_IRR);

	/* The EOI register (version 0x20) does the same. */
	ioapic_set_irq(f->io, 9, true);
	assert_int_equal(f->rec.n, 3);
	hx_mmio_write(h, PC_IOAPIC_BASE + 0x40, 4, 0x49);
	assert_int_equal(f->rec.n, 4);

	/* Guest writes cannot set Remote IRR or delivery status... */
	ioapic_set_irq(f->io, 9, false);
	hx_mmio_write(h, PC_IOAPIC_BASE + 0x40, 4, 0x49);
	set_rte(h, 9, 0x49 | LEVEL | REMOTE_IRR | 1u << 12 | MASK, 1);
	assert_int_equal(io_read(h, 0x10 + 18), 0x49 | LEVEL | MASK);
	/* ...and switching to edge clears it. */
	set_rte(h, 9, 0x49 | LEVEL, 1);
	ioapic_set_irq(f->io, 9, true);
	assert_true(io_read(h, 0x10 + 18) & REMOTE_IRR);
	set_rte(h, 9, 0x49, 1);
	assert_false(io_read(h, 0x10 + 18) & REMOTE_IRR);
}

/* Levels are logical (KVM_IRQ_LINE semantics): the polarity bit is kept
 * and read back, but a device that asserts its line is asserted whatever
 * the guest programmed - Linux programs PCI GSIs active low. */
static void test_polarity(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	/* Active-low level: a low (idle) pin delivers nothing... */
	set_rte(h, 10, 0x50 | LEVEL | ACTIVE_LOW, 0);
	assert_int_equal(io_read(h, 0x10 + 2 * 10), 0x50 | LEVEL | ACTIVE_LOW);
	ioapic_set_irq(f->io, 10, false);
	assert_int_equal(f->rec.n, 0);
	/* ...an asserted one delivers, once until EOI, again after EOI while
	 * still asserted, and not after it is released. */
	ioapic_set_irq(f->io, 10, true);
	assert_int_equal(f->rec.n, 1);
	assert_int_equal(f->rec.m[0].data & 0xff, 0x50);
	ioapic_set_irq(f->io, 10, true);
	assert_int_equal(f->rec.n, 1);
	ioapic_eoi(f->io, 0x50);
	assert_int_equal(f->rec.n, 2);
	ioapic_set_irq(f->io, 10, false);
	ioapic_eoi(f->io, 0x50);
	assert_int_equal(f->rec.n, 2);
	/* Flipping the polarity of an idle pin does not assert it. */
	set_rte(h, 10, 0x50 | LEVEL, 0);
	set_rte(h, 10, 0x50 | LEVEL | ACTIVE_LOW, 0);
	assert_int_equal(f->rec.n, 2);

	/* Active-low edge: the rising (asserting) edge delivers. */
	set_rte(h, 11, 0x51 | ACTIVE_LOW, 0);
	ioapic_set_irq(f->io, 11, true);
	assert_int_equal(f->rec.n, 3);
	assert_int_equal(f->rec.m[2].data, 0x51);
	ioapic_set_irq(f->io, 11, false);
	assert_int_equal(f->rec.n, 3);
}

/* The deliver callback may EOI at once (no deadlock, bounded). */
static void test_eoi_from_callback(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	f->rec.eoi_from_cb = f->io;
	set_rte(h, 3, 0x33 | LEVEL, 0);
	ioapic_set_irq(f->io, 3, true);
	/* Each EOI redelivers while asserted; the recorder stops at 10. */
	assert_int_equal(f->rec.n, 10);
	f->rec.eoi_from_cb = NULL;
}

static void test_save_load(void **state)
{
	struct fixture *f = *state, g = { 0 };
	struct harness *h = f->h;
	struct state_buf buf = { 0 };

	io_write(h, 0x00, 0x05000000);
	set_rte(h, 2, 0x30, 0);
	set_rte(h, 9, 0x49 | LEVEL, 2);
	ioapic_set_irq(f->io, 9, true); /* in service: Remote IRR */
	set_rte(h, 12, 0x4c | LEVEL | ACTIVE_LOW | MASK, 1);
	ioapic_set_irq(f->io, 12, true); /* masked: waits */
	hx_mmio_write(h, PC_IOAPIC_BASE, 4, 0x14);

	assert_int_equal(hx_save(h, "ioapic", &buf), 0);

	g.h = harness_new(1 << 20);
	assert_int_equal(ioapic_create(&g.h->vm, deliver, &g.rec, &g.io), 0);
	assert_int_equal(hx_load(g.h, "ioapic", buf.data, buf.len), 0);
	assert_int_equal(g.rec.n, 0); /* loading delivers nothing */
	assert_int_equal(hx_mmio_read(g.h, PC_IOAPIC_BASE, 4), 0x14);
	for (uint32_t reg = 0; reg < 0x40; reg++)
		assert_int_equal(io_read(g.h, reg), io_read(h, reg));
	/* Same behaviour afterwards: EOI redelivers pin 9 on both. */
	ioapic_eoi(f->io, 0x49);
	ioapic_eoi(g.io, 0x49);
	assert_int_equal(g.rec.n, 1);
	assert_int_equal(g.rec.m[0].addr, f->rec.m[f->rec.n - 1].addr);
	assert_int_equal(g.rec.m[0].data, f->rec.m[f->rec.n - 1].data);
	/* Pin 12 (active low) is asserted: unmasking delivers. */
	set_rte(g.h, 12, 0x4c | LEVEL | ACTIVE_LOW, 1);
	assert_int_equal(g.rec.n, 2);

	/* Validation. */
	assert_int_equal(hx_load(g.h, "ioapic", buf.data, buf.len - 1), -EINVAL);
	uint8_t *bad = malloc(buf.len);
	assert_non_null(bad);
	memcpy(bad, buf.data, buf.len);
	bad[1] = 0x10; /* ID wider than 4 bits */
	assert_int_equal(hx_load(g.h, "ioapic", bad, buf.len), -EINVAL);
	memcpy(bad, buf.data, buf.len);
	bad[3 + 3] = 0x80; /* line bit 31 */
	assert_int_equal(hx_load(g.h, "ioapic", bad, buf.len), -EINVAL);
	memcpy(bad, buf.data, buf.len);
	bad[11 + 8 * 2 + 4] = 0x01; /* reserved bit 32 of entry 2 */
	assert_int_equal(hx_load(g.h, "ioapic", bad, buf.len), -EINVAL);
	memcpy(bad, buf.data, buf.len);
	bad[7 + 1] ^= 0x02; /* irr bit 9 disagrees with pin 9's line */
	assert_int_equal(hx_load(g.h, "ioapic", bad, buf.len), -EINVAL);
	free(bad);
	state_buf_free(&buf);
	harness_free(g.h);
}

static void test_reset(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	set_rte(h, 9, 0x49 | LEVEL, 2);
	io_write(h, 0x00, 0x05000000);
	vm_reset_devices(&h->vm);
	assert_int_equal(io_read(h, 0x10 + 18), MASK);
	assert_int_equal(io_read(h, 0x00), (uint32_t)PC_IOAPIC_ID << 24);
	ioapic_set_irq(f->io, 9, true);
	assert_int_equal(f->rec.n, 0);
}

static void test_hostile_fuzz(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;
	uint64_t x = 0x2545f4914f6cdd1dull;

	for (int i = 0; i < 200000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint64_t off = (x >> 8) % 0x48;
		unsigned size = 1u << ((x >> 16) % 4);
		switch ((x >> 3) % 4) {
		case 0:
			if (off + size <= IOAPIC_MMIO_SIZE)
				hx_mmio_write(h, PC_IOAPIC_BASE + off, size,
					      x >> 20);
			break;
		case 1:
			(void)hx_mmio_read(h, PC_IOAPIC_BASE + off, size);
			break;
		case 2:
			ioapic_set_irq(f->io, (x >> 8) % 30, (x >> 20) & 1);
			break;
		default:
			ioapic_eoi(f->io, (uint8_t)(x >> 8));
			break;
		}
	}
	/* Every delivered address is an APIC address. */
	for (unsigned i = 0; i < f->rec.n && i < MAX_MSG; i++)
		assert_int_equal(f->rec.m[i].addr & 0xfff00ff3, 0xfee00000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_id_version),
		T(test_edge_delivery),
		T(test_masked_edge_is_lost),
		T(test_level_remote_irr),
		T(test_polarity),
		T(test_eoi_from_callback),
		T(test_save_load),
		T(test_reset),
		T(test_hostile_fuzz),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
