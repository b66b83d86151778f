/*
 * test_lapic.c - the software CPU's local APICs and APIC bus through the
 * harness: 4 LAPICs on a machine with a fake clock, the test playing both
 * the guest (register accesses) and the CPU (poll / ack / take_*), with
 * kicks and EOIs recorded.  The board's IOAPIC and PIC are wired in where
 * a test needs them.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "accel/emu/lapic.h"
#include "harness.h"
#include "hw/ioapic.h"
#include "hw/pc.h"
#include "hw/pic.h"

#define NCPU 4
#define MAX_EOI 64

struct fixture {
	struct harness *h;
	struct lapic_bus *bus;
	struct lapic *l[NCPU];
	unsigned kicks[NCPU];
	unsigned nr_eoi;
	uint8_t eoi[MAX_EOI];
	struct ioapic *io; /* if set, EOIs go on to it */
	struct pic *pic;   /* if set, ExtINT acks go to it */
	unsigned extint_acks;
};

static void rec_kick(void *opaque, int cpu)
{
	struct fixture *f = opaque;

	assert_true(cpu >= 0 && cpu < NCPU);
	__atomic_fetch_add(&f->kicks[cpu], 1, __ATOMIC_RELAXED);
	/* Called without the LAPIC's lock: this must not deadlock. */
	(void)lapic_pending_vector(f->l[cpu]);
}

static void rec_eoi(void *opaque, uint8_t vector)
{
	struct fixture *f = opaque;
	unsigned n = __atomic_fetch_add(&f->nr_eoi, 1, __ATOMIC_RELAXED);

	if (n < MAX_EOI)
		f->eoi[n] = vector;
	if (f->io)
		ioapic_eoi(f->io, vector);
}

static int rec_extint_ack(void *opaque)
{
	struct fixture *f = opaque;

	f->extint_acks++;
	return f->pic ? pic_intack(f->pic) : 0x99;
}

static const struct lapic_bus_ops rec_ops = {
	.kick = rec_kick,
	.eoi = rec_eoi,
	.extint_ack = rec_extint_ack,
};

static struct fixture *new_fixture(void)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->h = harness_new(1 << 20);
	assert_int_equal(lapic_bus_create(&f->h->vm, NCPU, &rec_ops, f,
					  &f->bus), 0);
	for (int i = 0; i < NCPU; i++) {
		f->l[i] = lapic_bus_get(f->bus, i);
		assert_non_null(f->l[i]);
	}
	return f;
}

static void free_fixture(struct fixture *f)
{
	lapic_bus_destroy(f->bus);
	harness_free(f->h);
	free(f);
}

static int setup(void **state)
{
	*state = new_fixture();
	return 0;
}

static int teardown(void **state)
{
	free_fixture(*state);
	return 0;
}

#define RD(l, reg) lapic_read((l), LAPIC_REG_##reg)
#define WR(l, reg, v) lapic_write((l), LAPIC_REG_##reg, (v))

static bool irr_has(struct lapic *l, unsigned v)
{
	return (lapic_read(l, LAPIC_REG_IRR + 0x10 * (v / 32)) >> (v % 32)) & 1;
}

static bool isr_has(struct lapic *l, unsigned v)
{
	return (lapic_read(l, LAPIC_REG_ISR + 0x10 * (v / 32)) >> (v % 32)) & 1;
}

static bool tmr_has(struct lapic *l, unsigned v)
{
	return (lapic_read(l, LAPIC_REG_TMR + 0x10 * (v / 32)) >> (v % 32)) & 1;
}

static void enable_all(struct fixture *f)
{
	for (int i = 0; i < NCPU; i++)
		WR(f->l[i], SVR, 0x1ff);
}

/* Send an IPI from `l`: ICR high then low. */
static void ipi(struct lapic *l, uint8_t dest, uint32_t lo)
{
	WR(l, ICR_HI, (uint32_t)dest << 24);
	WR(l, ICR_LO, lo);
}

#define SH_SELF   (1u << 18)
#define SH_ALL    (2u << 18)
#define SH_OTHERS (3u << 18)
#define LOGICAL   (1u << 11)
#define ASSERT    (1u << 14)
#define LEVELTRIG (1u << 15)
#define DM(m)     ((uint32_t)(m) << 8)
#define MASKED    (1u << 16)

/* The CPU taking and finishing one fixed interrupt. */
static int take_and_eoi(struct lapic *l)
{
	int v = lapic_ack(l);

	if (v >= 0)
		WR(l, EOI, 0);
	return v;
}

static void test_reset_values(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(lapic_bus_nr_cpus(f->bus), NCPU);
	assert_null(lapic_bus_get(f->bus, NCPU));
	assert_null(lapic_bus_get(f->bus, -1));
	for (int i = 0; i < NCPU; i++) {
		struct lapic *l = f->l[i];

		assert_int_equal(lapic_cpu_index(l), i);
		assert_int_equal(RD(l, ID), (uint32_t)i << 24);
		assert_int_equal(RD(l, VERSION), 0x00050014);
		assert_int_equal(RD(l, SVR), 0xff);
		assert_int_equal(RD(l, DFR), 0xffffffff);
		assert_int_equal(RD(l, LDR), 0);
		assert_int_equal(RD(l, TPR), 0);
		assert_int_equal(RD(l, PPR), 0);
		assert_int_equal(RD(l, APR), 0);
		assert_int_equal(RD(l, ESR), 0);
		assert_int_equal(RD(l, ICR_LO), 0);
		assert_int_equal(RD(l, TIMER_INIT), 0);
		assert_int_equal(RD(l, TIMER_CUR), 0);
		assert_int_equal(RD(l, TIMER_DIV), 0);
		for (uint32_t r = 0; r < 8; r++) {
			assert_int_equal(lapic_read(l, LAPIC_REG_ISR + 16 * r), 0);
			assert_int_equal(lapic_read(l, LAPIC_REG_IRR + 16 * r), 0);
			assert_int_equal(lapic_read(l, LAPIC_REG_TMR + 16 * r), 0);
		}
		for (uint32_t r = LAPIC_REG_LVT_TIMER; r <= LAPIC_REG_LVT_ERROR;
		     r += 16) {
			if (i == 0 && r == LAPIC_REG_LVT_LINT0)
				assert_int_equal(lapic_read(l, r), 0x700);
			else
				assert_int_equal(lapic_read(l, r), MASKED);
		}
		assert_int_equal(RD(l, LVT_CMCI), 0);
		assert_int_equal(lapic_get_base(l),
				 0xfee00800ull | (i == 0 ? 0x100 : 0));
		assert_true(lapic_hw_enabled(l));
		assert_int_equal(lapic_waiting_for_sipi(l), i != 0);
		assert_int_equal(lapic_poll(l), 0);
		assert_int_equal(lapic_pending_vector(l), -1);
		assert_int_equal(lapic_ack(l), -1);
	}
	/* Unaligned and out-of-page offsets read 0; writes are ignored. */
	assert_int_equal(lapic_read(f->l[1], LAPIC_REG_ID + 1), 0);
	assert_int_equal(lapic_read(f->l[1], LAPIC_REG_VERSION + 4), 0);
	assert_int_equal(lapic_read(f->l[1], 0x1000), 0);
	lapic_write(f->l[1], LAPIC_REG_SVR + 4, 0x1ff);
	lapic_write(f->l[1], 0x10f0, 0x1ff);
	assert_int_equal(RD(f->l[1], SVR), 0xff);
	/* Read-only registers. */
	WR(f->l[1], VERSION, 0);
	WR(f->l[1], PPR, 0xff);
	WR(f->l[1], IRR + 0x30, 0xffffffff);
	assert_int_equal(RD(f->l[1], VERSION), 0x00050014);
	assert_int_equal(RD(f->l[1], PPR), 0);
	assert_int_equal(lapic_read(f->l[1], LAPIC_REG_IRR + 0x30), 0);
}

static void test_software_enable(void **state)
{
	struct fixture *f = *state;
	struct lapic *l = f->l[1];

	/* Disabled: fixed interrupts are refused, LVTs stay masked. */
	ipi(l, 0, SH_SELF | 0x41);
	assert_false(irr_has(l, 0x41));
	assert_int_equal(lapic_poll(l), 0);
	WR(l, LVT_LINT1, 0x400);
	assert_int_equal(RD(l, LVT_LINT1), MASKED | 0x400);

	WR(l, SVR, 0xffffffff);
	assert_int_equal(RD(l, SVR), 0x3ff);
	WR(l, SVR, 0x1ff);
	WR(l, LVT_LINT1, 0x400);
	assert_int_equal(RD(l, LVT_LINT1), 0x400);
	WR(l, LVT_TIMER, 0xffffffff); /* writable: vector, mask, mode */
	assert_int_equal(RD(l, LVT_TIMER), 0x700ff);
	WR(l, LVT_LINT0, 0xffffffff); /* no delivery status, remote IRR */
	assert_int_equal(RD(l, LVT_LINT0), 0x1a7ff);
	WR(l, LVT_ERROR, 0xffffffff);
	assert_int_equal(RD(l, LVT_ERROR), 0x100ff);
	WR(l, LVT_ERROR, 0x33);

	ipi(l, 0, SH_SELF | 0x41);
	assert_true(irr_has(l, 0x41));

	/* Software disable masks every LVT again; IRR is kept. */
	WR(l, SVR, 0xff);
	assert_int_equal(RD(l, LVT_LINT1), MASKED | 0x400);
	assert_int_equal(RD(l, LVT_ERROR), MASKED | 0x33);
	assert_true(irr_has(l, 0x41));
	assert_int_equal(lapic_pending_vector(l), 0x41);
}

static void test_self_ipi(void **state)
{
	struct fixture *f = *state;
	struct lapic *l = f->l[0];

	enable_all(f);
	ipi(l, 0, SH_SELF | 0x41);
	assert_int_equal(RD(l, ICR_LO) & (1u << 12), 0); /* delivery status */
	assert_int_equal(f->kicks[0], 1);
	assert_true(lapic_poll(l) & LAPIC_EV_INTR);
	assert_true(irr_has(l, 0x41));
	assert_int_equal(lapic_pending_vector(l), 0x41);
	assert_int_equal(lapic_ack(l), 0x41);
	assert_false(irr_has(l, 0x41));
	assert_true(isr_has(l, 0x41));
	assert_int_equal(RD(l, PPR), 0x40);
	assert_int_equal(lapic_pending_vector(l), -1);
	assert_int_equal(lapic_poll(l), 0);
	WR(l, EOI, 0);
	assert_false(isr_has(l, 0x41));
	assert_int_equal(RD(l, PPR), 0);
	assert_int_equal(f->nr_eoi, 0); /* edge: no EOI to the IOAPIC */
	assert_int_equal(RD(l, EOI), 0);
	/* EOI with nothing in service is harmless. */
	WR(l, EOI, 0);
	/* Other CPUs saw nothing. */
	for (int i = 1; i < NCPU; i++) {
		assert_int_equal(f->kicks[i], 0);
		assert_int_equal(lapic_poll(f->l[i]), 0);
	}
}

static void test_priority(void **state)
{
	struct fixture *f = *state;
	struct lapic *l = f->l[0];

	enable_all(f);
	WR(l, TPR, 0x55);
	assert_int_equal(RD(l, TPR), 0x55);
	assert_int_equal(RD(l, PPR), 0x55);
	assert_int_equal(lapic_get_cr8(l), 5);
	ipi(l, 0, SH_SELF | 0x45); /* class 4 <= TPR class 5: held */
	assert_true(irr_has(l, 0x45));
	assert_int_equal(lapic_pending_vector(l), -1);
	assert_int_equal(lapic_poll(l) & LAPIC_EV_INTR, 0);
	assert_int_equal(lapic_ack(l), -1);
	assert_int_equal(RD(l, APR), 0x55);
	ipi(l, 0, SH_SELF | 0x5f); /* same class as TPR: held */
	assert_int_equal(lapic_pending_vector(l), -1);
	ipi(l, 0, SH_SELF | 0x61);
	assert_int_equal(lapic_pending_vector(l), 0x61);
	assert_int_equal(RD(l, APR), 0x60);
	lapic_set_cr8(l, 7);
	assert_int_equal(RD(l, TPR), 0x70);
	assert_int_equal(lapic_pending_vector(l), -1);
	lapic_set_cr8(l, 0);
	assert_int_equal(lapic_pending_vector(l), 0x61);

	/* 0x61 in service blocks 0x5f and 0x45 but not a higher class. */
	assert_int_equal(lapic_ack(l), 0x61);
	assert_int_equal(RD(l, PPR), 0x60);
	assert_int_equal(lapic_pending_vector(l), -1);
	ipi(l, 0, SH_SELF | 0x62); /* same class: waits */
	assert_int_equal(lapic_pending_vector(l), -1);
	ipi(l, 0, SH_SELF | 0x90);
	assert_int_equal(lapic_ack(l), 0x90); /* nested */
	assert_int_equal(RD(l, PPR), 0x90);
	WR(l, EOI, 0); /* ends 0x90, the highest in service */
	assert_true(isr_has(l, 0x61));
	assert_false(isr_has(l, 0x90));
	WR(l, EOI, 0);
	assert_int_equal(take_and_eoi(l), 0x62);
	assert_int_equal(take_and_eoi(l), 0x5f);
	assert_int_equal(take_and_eoi(l), 0x45);
	assert_int_equal(lapic_ack(l), -1);
	assert_int_equal(RD(l, PPR), 0);
}

static void test_ipi_destinations(void **state)
{
	struct fixture *f = *state;
	struct lapic **l = f->l;

	enable_all(f);
	/* Physical. */
	ipi(l[0], 2, 0x50);
	assert_true(irr_has(l[2], 0x50));
	assert_int_equal(f->kicks[2], 1);
	for (int i = 0; i < NCPU; i++)
		if (i != 2)
			assert_false(irr_has(l[i], 0x50));
	/* A moved APIC ID is what physical mode matches. */
	WR(l[3], ID, 0x07000000);
	assert_int_equal(RD(l[3], ID), 0x07000000);
	ipi(l[0], 7, 0x51);
	assert_true(irr_has(l[3], 0x51));
	ipi(l[0], 3, 0x52);
	for (int i = 0; i < NCPU; i++)
		assert_false(irr_has(l[i], 0x52));
	/* Physical broadcast. */
	ipi(l[0], 0xff, 0x53);
	for (int i = 0; i < NCPU; i++)
		assert_true(irr_has(l[i], 0x53));

	/* Logical, flat model. */
	WR(l[1], LDR, 0x02ffffff);
	assert_int_equal(RD(l[1], LDR), 0x02000000);
	WR(l[3], LDR, 0x08000000);
	ipi(l[0], 0x0a, LOGICAL | 0x54);
	assert_false(irr_has(l[0], 0x54));
	assert_true(irr_has(l[1], 0x54));
	assert_false(irr_has(l[2], 0x54));
	assert_true(irr_has(l[3], 0x54));

	/* Lowest priority among 1 and 3: CPU 1's TPR is higher. */
	WR(l[1], TPR, 0x80);
	ipi(l[0], 0x0a, LOGICAL | DM(1) | 0x55);
	assert_false(irr_has(l[1], 0x55));
	assert_true(irr_has(l[3], 0x55));
	WR(l[1], TPR, 0);
	WR(l[3], TPR, 0x20);
	ipi(l[0], 0x0a, LOGICAL | DM(1) | 0x56);
	assert_true(irr_has(l[1], 0x56));
	assert_false(irr_has(l[3], 0x56));

	/* Logical, cluster model. */
	for (int i = 0; i < NCPU; i++)
		WR(l[i], DFR, 0x0fffffff);
	assert_int_equal(RD(l[0], DFR), 0x0fffffff);
	WR(l[1], LDR, 0x11000000);
	WR(l[2], LDR, 0x12000000);
	WR(l[3], LDR, 0x21000000);
	ipi(l[0], 0x13, LOGICAL | 0x57);
	assert_true(irr_has(l[1], 0x57));
	assert_true(irr_has(l[2], 0x57));
	assert_false(irr_has(l[3], 0x57));
	ipi(l[0], 0x21, LOGICAL | 0x58);
	assert_false(irr_has(l[1], 0x58));
	assert_true(irr_has(l[3], 0x58));
	ipi(l[0], 0xff, LOGICAL | 0x59);
	for (int i = 0; i < NCPU; i++)
		assert_true(irr_has(l[i], 0x59));

	/* Shorthands. */
	ipi(l[1], 0, SH_OTHERS | 0x5a);
	for (int i = 0; i < NCPU; i++)
		assert_int_equal(irr_has(l[i], 0x5a), i != 1);
	ipi(l[2], 0, SH_ALL | 0x5b);
	for (int i = 0; i < NCPU; i++)
		assert_true(irr_has(l[i], 0x5b));
	ipi(l[2], 0, SH_SELF | 0x5c);
	for (int i = 0; i < NCPU; i++)
		assert_int_equal(irr_has(l[i], 0x5c), i == 2);

	/* Illegal vector: nothing sent, ESR bit 5 after the ESR write. */
	ipi(l[0], 1, 0x0f);
	assert_false(irr_has(l[1], 0x0f));
	assert_int_equal(RD(l[0], ESR), 0);
	WR(l[0], ESR, 0);
	assert_int_equal(RD(l[0], ESR), 0x20);
	WR(l[0], ESR, 0);
	assert_int_equal(RD(l[0], ESR), 0);
	/* Receiving one (an MSI) sets bit 6 and, with the error LVT set
	 * up, raises the error interrupt. */
	WR(l[1], LVT_ERROR, 0xee);
	lapic_bus_deliver_msi(f->bus, 0xfee01000, 0x05);
	WR(l[1], ESR, 0);
	assert_int_equal(RD(l[1], ESR), 0x40);
	assert_true(irr_has(l[1], 0xee));
}

static void test_init_sipi(void **state)
{
	struct fixture *f = *state;
	struct lapic **l = f->l;

	enable_all(f);
	WR(l[1], TPR, 0x30);
	WR(l[1], LDR, 0x04000000);
	WR(l[1], ID, 0x09000000);
	ipi(l[0], 9, 0x77); /* something in IRR */
	assert_true(irr_has(l[1], 0x77));

	/* AP 1 waits for a SIPI since power-on: the first one counts. */
	ipi(l[0], 9, DM(6) | ASSERT | 0x12);
	assert_true(lapic_poll(l[1]) & LAPIC_EV_SIPI);
	assert_false(lapic_take_init(l[1]));
	assert_int_equal(lapic_take_sipi(l[1]), 0x12);
	assert_false(lapic_waiting_for_sipi(l[1]));
	/* A SIPI to a running CPU is dropped. */
	ipi(l[0], 9, DM(6) | ASSERT | 0x13);
	assert_int_equal(lapic_take_sipi(l[1]), -1);

	/* INIT, then INIT de-assert (ignored), then SIPI. */
	f->kicks[1] = 0;
	ipi(l[0], 9, DM(5) | ASSERT | LEVELTRIG);
	assert_int_equal(f->kicks[1], 1);
	assert_true(lapic_poll(l[1]) & LAPIC_EV_INIT);
	assert_true(lapic_take_init(l[1]));
	assert_false(lapic_take_init(l[1]));
	assert_true(lapic_waiting_for_sipi(l[1]));
	/* INIT state: ID and base kept, the rest as at power-on. */
	assert_int_equal(RD(l[1], ID), 0x09000000);
	assert_int_equal(RD(l[1], TPR), 0);
	assert_int_equal(RD(l[1], LDR), 0);
	assert_int_equal(RD(l[1], SVR), 0xff);
	assert_false(irr_has(l[1], 0x77));
	assert_int_equal(lapic_get_base(l[1]), 0xfee00800);
	ipi(l[0], 9, DM(5) | LEVELTRIG); /* de-assert */
	assert_int_equal(lapic_poll(l[1]), 0);
	ipi(l[0], 9, DM(6) | ASSERT | 0x9a);
	assert_true(lapic_poll(l[1]) & LAPIC_EV_SIPI);
	assert_int_equal(lapic_take_sipi(l[1]), 0x9a);
	assert_int_equal(lapic_take_sipi(l[1]), -1);
	assert_int_equal(lapic_poll(l[1]), 0);

	/* INIT-SIPI-SIPI to all others, as Linux's wakeup does. */
	ipi(l[0], 0, SH_OTHERS | DM(5) | ASSERT);
	ipi(l[0], 0, SH_OTHERS | DM(6) | ASSERT | 0x10);
	ipi(l[0], 0, SH_OTHERS | DM(6) | ASSERT | 0x10);
	assert_int_equal(lapic_poll(l[0]), 0);
	for (int i = 1; i < NCPU; i++) {
		assert_true(lapic_take_init(l[i]));
		assert_int_equal(lapic_take_sipi(l[i]), 0x10);
	}

	/* INIT to the BSP: reset, but no wait for SIPI. */
	ipi(l[1], 0, DM(5) | ASSERT);
	assert_true(lapic_take_init(l[0]));
	assert_false(lapic_waiting_for_sipi(l[0]));
	assert_int_equal(RD(l[0], LVT_LINT0), 0x700);
}

static void test_nmi(void **state)
{
	struct fixture *f = *state;
	struct lapic **l = f->l;

	enable_all(f);
	ipi(l[0], 2, DM(4) | ASSERT);
	assert_int_equal(f->kicks[2], 1);
	assert_true(lapic_poll(l[2]) & LAPIC_EV_NMI);
	assert_int_equal(lapic_pending_vector(l[2]), -1); /* not maskable */
	assert_true(lapic_take_nmi(l[2]));
	assert_false(lapic_take_nmi(l[2]));
	assert_int_equal(lapic_poll(l[2]), 0);

	/* NMI message (an IOAPIC entry in NMI mode). */
	lapic_bus_deliver_msi(f->bus, 0xfee03000, 0x400);
	assert_true(lapic_take_nmi(l[3]));

	/* LINT1 in NMI mode, edge. */
	lapic_set_lint1(l[0], true);
	assert_false(lapic_take_nmi(l[0])); /* masked */
	lapic_set_lint1(l[0], false);
	WR(l[0], LVT_LINT1, 0x400);
	lapic_set_lint1(l[0], true);
	assert_true(lapic_take_nmi(l[0]));
	lapic_set_lint1(l[0], true);
	assert_false(lapic_take_nmi(l[0]));

	/* SMI is ignored. */
	ipi(l[0], 2, DM(2) | ASSERT);
	assert_int_equal(lapic_poll(l[2]), 0);
}

static void test_timer_oneshot(void **state)
{
	struct fixture *f = *state;
	struct lapic *l = f->l[0];

	enable_all(f);
	WR(l, TIMER_DIV, 0x3); /* divide by 16 */
	assert_int_equal(RD(l, TIMER_DIV), 3);
	WR(l, LVT_TIMER, 0x30);
	WR(l, TIMER_INIT, 1000); /* 16000 ns at 1 GHz / 16 */
	assert_int_equal(RD(l, TIMER_INIT), 1000);
	assert_int_equal(RD(l, TIMER_CUR), 1000);
	hx_clock_advance(f->h, 8000);
	assert_int_equal(RD(l, TIMER_CUR), 500);
	hx_clock_advance(f->h, 7999);
	assert_int_equal(RD(l, TIMER_CUR), 1);
	assert_false(irr_has(l, 0x30));
	assert_int_equal(f->kicks[0], 0);
	hx_clock_advance(f->h, 1);
	assert_true(irr_has(l, 0x30));
	assert_int_equal(f->kicks[0], 1);
	assert_int_equal(RD(l, TIMER_CUR), 0);
	assert_int_equal(take_and_eoi(l), 0x30);
	hx_clock_advance(f->h, 1000000);
	assert_false(irr_has(l, 0x30));
	assert_int_equal(f->kicks[0], 1);

	/* Rewriting the initial count restarts; 0 stops. */
	WR(l, TIMER_INIT, 100);
	hx_clock_advance(f->h, 800);
	WR(l, TIMER_INIT, 100);
	hx_clock_advance(f->h, 800);
	assert_false(irr_has(l, 0x30));
	WR(l, TIMER_INIT, 0);
	hx_clock_advance(f->h, 10000);
	assert_false(irr_has(l, 0x30));
	assert_int_equal(RD(l, TIMER_CUR), 0);

	/* Divide change mid-count keeps the count, changes the rate. */
	WR(l, TIMER_DIV, 0xb); /* divide by 1 */
	WR(l, TIMER_INIT, 1000);
	hx_clock_advance(f->h, 400);
	assert_int_equal(RD(l, TIMER_CUR), 600);
	WR(l, TIMER_DIV, 0x0); /* divide by 2: 600 left = 1200 ns */
	assert_int_equal(RD(l, TIMER_CUR), 600);
	hx_clock_advance(f->h, 1199);
	assert_false(irr_has(l, 0x30));
	hx_clock_advance(f->h, 1);
	assert_true(irr_has(l, 0x30));
	assert_int_equal(take_and_eoi(l), 0x30);

	/* A masked timer counts but delivers nothing. */
	WR(l, LVT_TIMER, 0x30 | MASKED);
	WR(l, TIMER_INIT, 10);
	hx_clock_advance(f->h, 100);
	assert_false(irr_has(l, 0x30));
	assert_int_equal(RD(l, TIMER_CUR), 0);
}

static void test_timer_periodic(void **state)
{
	struct fixture *f = *state;
	struct lapic *l = f->l[1];

	enable_all(f);
	WR(l, TIMER_DIV, 0xb);
	WR(l, LVT_TIMER, 0x20031);
	WR(l, TIMER_INIT, 1000000); /* 1 ms */
	for (int i = 0; i < 5; i++) {
		hx_clock_advance(f->h, 250000);
		assert_int_equal(RD(l, TIMER_CUR), 750000);
		hx_clock_advance(f->h, 749999);
		assert_false(irr_has(l, 0x31));
		hx_clock_advance(f->h, 1);
		assert_true(irr_has(l, 0x31));
		assert_int_equal(RD(l, TIMER_CUR), 1000000);
		assert_int_equal(take_and_eoi(l), 0x31);
	}
	assert_int_equal(f->kicks[1], 5);

	/* Minimum period: count 1 at divide 1 fires every 200 us, not
	 * every ns. */
	f->kicks[1] = 0;
	WR(l, TIMER_INIT, 1);
	hx_clock_advance(f->h, LAPIC_MIN_PERIOD_NS - 1);
	assert_false(irr_has(l, 0x31));
	assert_int_equal(RD(l, TIMER_CUR), 1);
	hx_clock_advance(f->h, 1);
	assert_true(irr_has(l, 0x31));
	assert_int_equal(take_and_eoi(l), 0x31);
	hx_clock_advance(f->h, 10 * 1000 * 1000); /* 10 ms */
	assert_int_equal(f->kicks[1], 1 + 50);

	/* A timer thread that fell behind fires once, not per missed
	 * period, and the next deadline is in the future. */
	f->kicks[1] = 0;
	f->h->vm.fake_clock_ns += 50 * LAPIC_MIN_PERIOD_NS + 123;
	uint64_t next = vm_timers_run(&f->h->vm);
	assert_int_equal(f->kicks[1], 1);
	assert_true(next > f->h->vm.fake_clock_ns);
	assert_true(next <= f->h->vm.fake_clock_ns + LAPIC_MIN_PERIOD_NS);

	/* Periodic -> one-shot: the next expiry is the last. */
	WR(l, TIMER_INIT, 1000);
	WR(l, LVT_TIMER, 0x31);
	f->kicks[1] = 0;
	hx_clock_advance(f->h, 1000000);
	assert_int_equal(f->kicks[1], 1);
}

static void test_timer_tsc_deadline(void **state)
{
	struct fixture *f = *state;
	struct lapic *l = f->l[2];
	uint64_t now;

	enable_all(f);
	/* Not in TSC-deadline mode: the MSR is ignored. */
	lapic_set_tsc_deadline(l, vm_clock_ns(&f->h->vm) + 100);
	assert_int_equal(lapic_get_tsc_deadline(l), 0);

	/* Switching to TSC-deadline stops a running one-shot timer. */
	WR(l, TIMER_DIV, 0xb);
	WR(l, LVT_TIMER, 0x32);
	WR(l, TIMER_INIT, 500);
	WR(l, LVT_TIMER, 0x40032);
	assert_int_equal(RD(l, TIMER_INIT), 0);
	hx_clock_advance(f->h, 1000);
	assert_false(irr_has(l, 0x32));
	WR(l, TIMER_INIT, 500); /* ignored in this mode */
	assert_int_equal(RD(l, TIMER_INIT), 0);
	assert_int_equal(RD(l, TIMER_CUR), 0);

	now = vm_clock_ns(&f->h->vm);
	lapic_set_tsc_deadline(l, now + 5000);
	assert_int_equal(lapic_get_tsc_deadline(l), now + 5000);
	hx_clock_advance(f->h, 4999);
	assert_false(irr_has(l, 0x32));
	hx_clock_advance(f->h, 1);
	assert_true(irr_has(l, 0x32));
	assert_int_equal(f->kicks[2], 1);
	assert_int_equal(lapic_get_tsc_deadline(l), 0); /* cleared on fire */
	assert_int_equal(take_and_eoi(l), 0x32);

	/* Re-arm, then disarm with 0. */
	now = vm_clock_ns(&f->h->vm);
	lapic_set_tsc_deadline(l, now + 100);
	lapic_set_tsc_deadline(l, 0);
	hx_clock_advance(f->h, 1000);
	assert_false(irr_has(l, 0x32));

	/* A deadline in the past fires at once. */
	lapic_set_tsc_deadline(l, 1);
	assert_true(irr_has(l, 0x32));
	assert_int_equal(take_and_eoi(l), 0x32);

	/* Leaving TSC-deadline mode disarms. */
	now = vm_clock_ns(&f->h->vm);
	lapic_set_tsc_deadline(l, now + 100);
	WR(l, LVT_TIMER, 0x32);
	hx_clock_advance(f->h, 1000);
	assert_false(irr_has(l, 0x32));
}

static void test_level_eoi(void **state)
{
	struct fixture *f = *state;
	struct lapic *l = f->l[0];

	enable_all(f);
	/* Level-triggered MSI (as the IOAPIC sends them): TMR set. */
	lapic_bus_deliver_msi(f->bus, 0xfee00000, 0x8060);
	assert_true(irr_has(l, 0x60));
	assert_true(tmr_has(l, 0x60));
	lapic_bus_deliver_msi(f->bus, 0xfee00000, 0x0050); /* edge */
	assert_false(tmr_has(l, 0x50));
	assert_int_equal(lapic_ack(l), 0x60);
	WR(l, EOI, 0);
	assert_int_equal(f->nr_eoi, 1);
	assert_int_equal(f->eoi[0], 0x60);
	assert_int_equal(take_and_eoi(l), 0x50);
	assert_int_equal(f->nr_eoi, 1);

	/* Bad MSI addresses are dropped. */
	lapic_bus_deliver_msi(f->bus, 0xfed00000, 0x0051);
	lapic_bus_deliver_msi(f->bus, 0x1fee00000ull, 0x0051);
	assert_false(irr_has(l, 0x51));
	/* Logical-mode MSI, lowest priority. */
	WR(f->l[2], LDR, 0x04000000);
	lapic_bus_deliver_msi(f->bus, 0xfee04000 | 1u << 2 | 1u << 3, 0x0152);
	assert_true(irr_has(f->l[2], 0x52));
}

static void test_ioapic_msi(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;
	struct lapic *l = f->l[1];

	assert_int_equal(ioapic_create(&h->vm, lapic_bus_msi_handler, f->bus,
				       &f->io), 0);
	enable_all(f);
	/* Pin 5: vector 0x55, level, physical destination 1. */
	hx_mmio_write(h, PC_IOAPIC_BASE, 4, 0x10 + 2 * 5 + 1);
	hx_mmio_write(h, PC_IOAPIC_BASE + 0x10, 4, 1u << 24);
	hx_mmio_write(h, PC_IOAPIC_BASE, 4, 0x10 + 2 * 5);
	hx_mmio_write(h, PC_IOAPIC_BASE + 0x10, 4, 0x55 | 1u << 15);
	ioapic_set_irq(f->io, 5, true);
	assert_true(irr_has(l, 0x55));
	assert_true(tmr_has(l, 0x55));
	assert_int_equal(f->kicks[1], 1);
	assert_false(irr_has(f->l[0], 0x55));
	/* EOI while the pin is still high: delivered again. */
	assert_int_equal(take_and_eoi(l), 0x55);
	assert_int_equal(f->nr_eoi, 1);
	assert_true(irr_has(l, 0x55));
	/* Lowered, then EOI: done. */
	ioapic_set_irq(f->io, 5, false);
	assert_int_equal(take_and_eoi(l), 0x55);
	assert_false(irr_has(l, 0x55));
	assert_int_equal(lapic_ack(l), -1);

	/* Edge pin 6, logical flat destination to CPUs 2 and 3. */
	WR(f->l[2], LDR, 0x01000000);
	WR(f->l[3], LDR, 0x02000000);
	hx_mmio_write(h, PC_IOAPIC_BASE, 4, 0x10 + 2 * 6 + 1);
	hx_mmio_write(h, PC_IOAPIC_BASE + 0x10, 4, 3u << 24);
	hx_mmio_write(h, PC_IOAPIC_BASE, 4, 0x10 + 2 * 6);
	hx_mmio_write(h, PC_IOAPIC_BASE + 0x10, 4, 0x66 | 1u << 11);
	ioapic_set_irq(f->io, 6, true);
	assert_true(irr_has(f->l[2], 0x66));
	assert_true(irr_has(f->l[3], 0x66));
	assert_false(tmr_has(f->l[2], 0x66));
	assert_false(irr_has(f->l[1], 0x66));
}

static void pic_init(struct harness *h)
{
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
}

static void test_extint_pic(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;
	struct lapic **l = f->l;

	assert_int_equal(pic_create(&h->vm, lapic_bus_pic_intr_handler,
				    f->bus, &f->pic), 0);
	pic_init(h);
	/* The BSP's LINT0 is ExtINT from reset (virtual wire), even with
	 * the APIC software-disabled; APs' LINT0 is masked. */
	pic_set_irq(f->pic, 1, true);
	assert_int_equal(f->kicks[0], 1);
	assert_true(lapic_poll(l[0]) & LAPIC_EV_INTR);
	assert_int_equal(lapic_pending_vector(l[0]), LAPIC_EXTINT);
	assert_int_equal(lapic_pending_vector(l[1]), -1);
	assert_int_equal(f->kicks[1], 0);
	/* ExtINT ignores the TPR. */
	WR(l[0], TPR, 0xff);
	assert_int_equal(lapic_ack(l[0]), 0x21);
	assert_int_equal(f->extint_acks, 1);
	/* The INTA dropped INTR (edge IRQ1 in service). */
	assert_int_equal(lapic_pending_vector(l[0]), -1);
	assert_int_equal(lapic_poll(l[0]) & LAPIC_EV_INTR, 0);
	hx_outb(h, 0x20, 0x20); /* EOI to the PIC */
	pic_set_irq(f->pic, 1, false);

	/* Masking LVT LINT0 stops it. */
	WR(l[0], SVR, 0x1ff);
	WR(l[0], LVT_LINT0, 0x700 | MASKED);
	pic_set_irq(f->pic, 3, true);
	assert_int_equal(lapic_pending_vector(l[0]), -1);
	/* Unmasking while INTR is high: it is level-sensitive. */
	WR(l[0], LVT_LINT0, 0x700);
	assert_int_equal(lapic_pending_vector(l[0]), LAPIC_EXTINT);
	assert_int_equal(lapic_ack(l[0]), 0x23);
	hx_outb(h, 0x20, 0x20);
	pic_set_irq(f->pic, 3, false);

	/* A globally disabled APIC takes INTR directly (no APIC). */
	assert_int_equal(lapic_set_base(l[1], 0xfee00000), 0);
	assert_false(lapic_hw_enabled(l[1]));
	pic_set_irq(f->pic, 4, true);
	assert_int_equal(lapic_pending_vector(l[1]), LAPIC_EXTINT);
	assert_int_equal(lapic_pending_vector(l[2]), -1);
	assert_int_equal(lapic_ack(l[1]), 0x24);

	/* An ExtINT message (IOAPIC pin in ExtINT mode) asks the PIC too. */
	hx_outb(h, 0x20, 0x20);
	pic_set_irq(f->pic, 4, false);
	lapic_bus_deliver_msi(f->bus, 0xfee02000, 0x700);
	assert_int_equal(lapic_pending_vector(l[2]), LAPIC_EXTINT);
	assert_int_equal(lapic_ack(l[2]), 0x27); /* nothing: spurious IRQ7 */
	assert_int_equal(lapic_pending_vector(l[2]), -1);
}

static void test_apic_base(void **state)
{
	struct fixture *f = *state;
	struct lapic *l = f->l[2];

	enable_all(f);
	assert_int_equal(lapic_set_base(l, 0xfee00801), -EINVAL);
	assert_int_equal(lapic_set_base(l, 0xfee00a00), -EINVAL);
	assert_int_equal(lapic_set_base(l, 0xfee00c00), -EINVAL); /* x2APIC */
	assert_int_equal(lapic_set_base(l, 1ull << 52 | 0xfee00800), -EINVAL);
	assert_int_equal(lapic_get_base(l), 0xfee00800);
	/* Relocate. */
	assert_int_equal(lapic_set_base(l, 0xfed00800), 0);
	assert_int_equal(lapic_get_base(l), 0xfed00800);
	assert_int_equal(RD(l, SVR), 0x1ff);

	/* Disable: invisible on the bus, state back to power-on. */
	WR(l, TPR, 0x20);
	WR(l, ID, 0x0e000000);
	assert_int_equal(lapic_set_base(l, 0xfee00000), 0);
	assert_false(lapic_hw_enabled(l));
	ipi(f->l[0], 2, 0x70);
	ipi(f->l[0], 0xff, 0x71);
	ipi(f->l[0], 2, DM(4) | ASSERT);
	ipi(f->l[0], 0, SH_OTHERS | 0x72);
	assert_int_equal(lapic_poll(l), 0);
	assert_true(irr_has(f->l[1], 0x71));
	assert_true(irr_has(f->l[1], 0x72));
	/* Re-enable: initial ID, software-disabled. */
	assert_int_equal(lapic_set_base(l, 0xfee00800), 0);
	assert_int_equal(RD(l, ID), 0x02000000);
	assert_int_equal(RD(l, TPR), 0);
	assert_int_equal(RD(l, SVR), 0xff);
	assert_int_equal(lapic_poll(l), 0);
}

static void test_hostile(void **state)
{
	struct fixture *f = *state;
	uint64_t x = 0x9e3779b97f4a7c15ull;

	/* Every offset, a few nasty values, on every LAPIC. */
	static const uint32_t vals[] = { 0, 1, 0xffffffff, 0x80000000,
					 0x000c4f01, 0x00020000, 0x7fffffff };
	for (int c = 0; c < NCPU; c++)
		for (uint32_t off = 0; off < 0x1004; off++)
			for (unsigned i = 0; i < sizeof(vals) / sizeof(vals[0]);
			     i++) {
				lapic_write(f->l[c], off, vals[i]);
				(void)lapic_read(f->l[c], off);
			}
	/* Random mix of everything, with the clock moving. */
	for (int i = 0; i < 200000; i++) {
		struct lapic *l;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		l = f->l[(x >> 40) % NCPU];
		switch ((x >> 3) % 12) {
		case 0:
		case 1:
		case 2:
			lapic_write(l, (uint32_t)(x >> 20) & 0x3f0,
				    (uint32_t)(x >> 24));
			break;
		case 3:
			(void)lapic_read(l, (uint32_t)(x >> 20) & 0xfff);
			break;
		case 4:
			lapic_bus_deliver_msi(f->bus, 0xfee00000 |
					      ((x >> 8) & 0xffffc),
					      (uint32_t)(x >> 32));
			break;
		case 5:
			lapic_set_lint0(l, (x >> 9) & 1);
			lapic_set_lint1(l, (x >> 10) & 1);
			break;
		case 6:
			if (lapic_ack(l) >= 0)
				lapic_write(l, LAPIC_REG_EOI, 0);
			break;
		case 7:
			(void)lapic_take_nmi(l);
			(void)lapic_take_init(l);
			(void)lapic_take_sipi(l);
			break;
		case 8:
			hx_clock_advance(f->h, (x >> 16) % 300000);
			break;
		case 9:
			lapic_set_tsc_deadline(l, vm_clock_ns(&f->h->vm) +
						  ((x >> 12) % 100000) - 50000);
			break;
		case 10:
			(void)lapic_set_base(l, (x >> 5) & 0xfffff0d00ull);
			lapic_set_cr8(l, (uint8_t)(x >> 50));
			break;
		default:
			(void)lapic_pending_vector(l);
			(void)lapic_poll(l);
			break;
		}
	}
	/* Whatever state that left: a periodic timer at its most hostile
	 * setting still costs at most one expiry per 200 us per CPU. */
	for (int c = 0; c < NCPU; c++) {
		struct lapic *l = f->l[c];

		(void)lapic_set_base(l, 0xfee00800 | (c == 0 ? 0x100 : 0));
		WR(l, SVR, 0x1ff);
		WR(l, TIMER_DIV, 0xb);
		WR(l, LVT_TIMER, 0x20040);
		WR(l, TIMER_INIT, 1);
		f->kicks[c] = 0;
	}
	hx_clock_advance(f->h, 10 * 1000 * 1000);
	for (int c = 0; c < NCPU; c++)
		assert_true(f->kicks[c] <= 51);
}

/* Concurrency: two vCPUs IPI each other and take their interrupts while
 * a third thread runs timers and MSIs arrive (run under TSan to check the
 * locking; here it checks nothing is lost for good or deadlocks). */
struct thr {
	struct fixture *f;
	int cpu;
	unsigned taken;
};

static void *vcpu_thread(void *opaque)
{
	struct thr *t = opaque;
	struct lapic *l = t->f->l[t->cpu];

	for (int i = 0; i < 20000; i++) {
		ipi(l, (uint8_t)(t->cpu ^ 1), 0x40 + (i & 0x3f));
		if (i % 7 == 0)
			ipi(l, 0, SH_SELF | 0x90);
		if (lapic_poll(l) & LAPIC_EV_INTR) {
			int v = lapic_ack(l);

			if (v >= 0) {
				t->taken++;
				WR(l, EOI, 0);
			}
		}
		if (i % 13 == 0)
			WR(l, TPR, (uint32_t)(i & 0x70));
	}
	WR(l, TPR, 0);
	return NULL;
}

static void *io_thread(void *opaque)
{
	struct fixture *f = opaque;

	for (int i = 0; i < 20000; i++) {
		hx_clock_advance(f->h, 50000);
		lapic_bus_deliver_msi(f->bus, 0xfee00000 | (i & 1) << 12,
				      0x8000 | 0xa0);
	}
	return NULL;
}

static void test_threads(void **state)
{
	struct fixture *f = *state;
	struct thr t[2] = { { f, 0, 0 }, { f, 1, 0 } };
	pthread_t th[3];

	enable_all(f);
	for (int c = 0; c < 2; c++) {
		WR(f->l[c], TIMER_DIV, 0xb);
		WR(f->l[c], LVT_TIMER, 0x20030);
		WR(f->l[c], TIMER_INIT, 1);
	}
	for (int c = 0; c < 2; c++)
		assert_int_equal(pthread_create(&th[c], NULL, vcpu_thread,
						&t[c]), 0);
	assert_int_equal(pthread_create(&th[2], NULL, io_thread, f), 0);
	for (int c = 0; c < 3; c++)
		pthread_join(th[c], NULL);
	for (int c = 0; c < 2; c++) {
		WR(f->l[c], TIMER_INIT, 0);
		assert_true(t[c].taken > 0);
		/* Whatever is left is deliverable and drains. */
		for (int n = 0; n < 300 && take_and_eoi(f->l[c]) >= 0; n++)
			;
		assert_int_equal(lapic_ack(f->l[c]), -1);
		for (uint32_t r = 0; r < 8; r++) {
			assert_int_equal(lapic_read(f->l[c], LAPIC_REG_IRR + 16 * r), 0);
			assert_int_equal(lapic_read(f->l[c], LAPIC_REG_ISR + 16 * r), 0);
		}
	}
}

static void set_some_state(struct fixture *f)
{
	struct lapic **l = f->l;

	enable_all(f);
	WR(l[0], TPR, 0x20);
	WR(l[0], LDR, 0x01000000);
	WR(l[1], LDR, 0x02000000);
	WR(l[1], DFR, 0x0fffffff);
	WR(l[2], ID, 0x0a000000);
	WR(l[0], LVT_LINT1, 0x400);
	WR(l[0], LVT_ERROR, 0xfe);
	WR(l[3], ICR_HI, 0x05000000);
	ipi(l[0], 0, SH_SELF | 0x81);
	lapic_bus_deliver_msi(f->bus, 0xfee00000, 0x8091);
	assert_int_equal(lapic_ack(l[0]), 0x91); /* in service, level */
	ipi(l[0], 0, SH_SELF | 0x0e);            /* ESR pending */
	ipi(l[0], 1, DM(4) | ASSERT);            /* NMI pending on 1 */
	ipi(l[0], 3, DM(5) | ASSERT);            /* INIT pending on 3 */
	/* Timers: one-shot on 0, periodic on 1, TSC deadline on 2. */
	WR(l[0], TIMER_DIV, 0x2);
	WR(l[0], LVT_TIMER, 0x40);
	WR(l[0], TIMER_INIT, 1000); /* 8000 ns */
	WR(l[1], TIMER_DIV, 0xb);
	WR(l[1], LVT_TIMER, 0x20041);
	WR(l[1], TIMER_INIT, 300000);
	WR(l[2], LVT_TIMER, 0x40042);
	lapic_set_tsc_deadline(l[2], vm_clock_ns(&f->h->vm) + 50000);
	hx_clock_advance(f->h, 2000);
}

static void compare_regs(struct lapic *a, struct lapic *b)
{
	for (uint32_t off = 0; off < 0x400; off += 16)
		assert_int_equal(lapic_read(a, off), lapic_read(b, off));
	assert_int_equal(lapic_get_base(a), lapic_get_base(b));
	assert_int_equal(lapic_poll(a), lapic_poll(b));
	assert_int_equal(lapic_waiting_for_sipi(a), lapic_waiting_for_sipi(b));
	assert_int_equal(lapic_pending_vector(a), lapic_pending_vector(b));
}

static void test_save_load(void **state)
{
	struct fixture *f = *state, *g;
	struct state_buf buf = { 0 };
	struct state_reader r;
	uint8_t *bad;

	set_some_state(f);
	lapic_bus_save(f->bus, &buf);
	assert_int_equal(buf.err, 0);

	g = new_fixture();
	hx_clock_advance(g->h, 123456789); /* another host's clock */
	r = (struct state_reader){ .data = buf.data, .len = buf.len };
	assert_int_equal(lapic_bus_load(g->bus, &r), 0);
	for (int i = 0; i < NCPU; i++)
		compare_regs(f->l[i], g->l[i]);
	assert_true(lapic_poll(g->l[1]) & LAPIC_EV_NMI);
	assert_true(lapic_poll(g->l[3]) & LAPIC_EV_INIT);

	/* Timers continue where they were. */
	hx_clock_advance(f->h, 5999);
	hx_clock_advance(g->h, 5999);
	assert_false(irr_has(g->l[0], 0x40));
	hx_clock_advance(f->h, 1);
	hx_clock_advance(g->h, 1);
	assert_true(irr_has(f->l[0], 0x40));
	assert_true(irr_has(g->l[0], 0x40));
	hx_clock_advance(f->h, 48000);
	hx_clock_advance(g->h, 48000);
	assert_true(irr_has(g->l[2], 0x42));
	assert_int_equal(lapic_get_tsc_deadline(g->l[2]), 0);
	hx_clock_advance(f->h, 300000);
	hx_clock_advance(g->h, 300000);
	for (int i = 0; i < NCPU; i++)
		compare_regs(f->l[i], g->l[i]);
	/* The level vector in service still EOIs to the IOAPIC. */
	g->nr_eoi = 0;
	while (lapic_read(g->l[0], LAPIC_REG_ISR + 0x40))
		WR(g->l[0], EOI, 0);
	WR(f->l[0], EOI, 0);
	assert_int_equal(g->nr_eoi, 1);
	assert_int_equal(g->eoi[0], 0x91);

	/* Validation: truncation, count, reserved bits.  The CPU 0 image
	 * starts at byte 5 (bus version + count): version, base (6), ID
	 * (14), TPR (18), LDR (22), DFR (26), SVR (30), ISR (34), TMR (66),
	 * IRR (98). */
	r = (struct state_reader){ .data = buf.data, .len = buf.len - 1 };
	assert_int_equal(lapic_bus_load(g->bus, &r), -EINVAL);
	bad = malloc(buf.len);
	assert_non_null(bad);
#define TRY(off, val) do { \
		memcpy(bad, buf.data, buf.len); \
		bad[off] = (val); \
		r = (struct state_reader){ .data = bad, .len = buf.len }; \
		assert_int_equal(lapic_bus_load(g->bus, &r), -EINVAL); \
	} while (0)
	TRY(0, 9);                 /* bus version */
	TRY(1, NCPU + 1);          /* CPU count */
	TRY(5, 7);           /* LAPIC version */
	TRY(6, 0x01);        /* base bit 0 */
	TRY(7, 0x04);        /* base bit 10: x2APIC */
	TRY(14, 0x01);       /* ID low bits */
	TRY(19, 0x01);       /* TPR bit 8 */
	TRY(22, 0x01);       /* LDR low bits */
	TRY(26, 0x00);       /* DFR low bits must be ones */
	TRY(31, 0x04);       /* SVR bit 10 */
	TRY(34, 0x01);       /* ISR vector 0 */
	TRY(66 + 1, 0x01);   /* TMR vector 8 */
	TRY(99, 0x80);       /* IRR vector 15 */
	/* Nothing was applied by the failed loads. */
	for (int i = 0; i < NCPU; i++)
		compare_regs(f->l[i], g->l[i]);
#undef TRY
	free(bad);
	state_buf_free(&buf);

	/* A single LAPIC round trip, and reset. */
	memset(&buf, 0, sizeof(buf));
	lapic_save(f->l[0], &buf);
	r = (struct state_reader){ .data = buf.data, .len = buf.len };
	assert_int_equal(lapic_load(g->l[3], &r), 0);
	assert_int_equal(RD(g->l[3], TPR), 0x20);
	state_buf_free(&buf);
	lapic_bus_reset(g->bus);
	assert_int_equal(RD(g->l[3], TPR), 0);
	assert_int_equal(RD(g->l[3], ID), 0x03000000);
	assert_int_equal(lapic_poll(g->l[3]), 0);
	free_fixture(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_reset_values),
		T(test_software_enable),
		T(test_self_ipi),
		T(test_priority),
		T(test_ipi_destinations),
		T(test_init_sipi),
		T(test_nmi),
		T(test_timer_oneshot),
		T(test_timer_periodic),
		T(test_timer_tsc_deadline),
		T(test_level_eoi),
		T(test_ioapic_msi),
		T(test_extint_pic),
		T(test_apic_base),
		T(test_hostile),
		T(test_threads),
		T(test_save_load),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
