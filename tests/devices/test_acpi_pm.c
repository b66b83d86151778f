/*
 * test_acpi_pm.c - the ACPI PM block through the harness: PM1 registers,
 * the PM timer against the fake clock, sleep requests, the SCI level as
 * the harness records it.
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
#include "hw/acpi_pm.h"
#include "hw/pc.h"

#define MS 1000000ull
#define STS PC_ACPI_PM1A_EVT
#define EN (PC_ACPI_PM1A_EVT + 2)
#define CNT PC_ACPI_PM1A_CNT
#define TMR PC_ACPI_PM_TMR
#define GPE_STS PC_ACPI_GPE0_BLK
#define GPE_EN (PC_ACPI_GPE0_BLK + 2)

struct fixture {
	struct harness *h;
	struct acpi_pm *pm;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->h = harness_new(1 << 20);
	assert_int_equal(acpi_pm_create(&f->h->vm, &f->pm), 0);
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

/* ns for `ticks` PM timer ticks, rounded up. */
static uint64_t tmr_ns(uint64_t ticks)
{
	return (ticks * 1000000000ull + PC_PM_TMR_HZ - 1) / PC_PM_TMR_HZ;
}

static uint32_t tmr_delta(uint32_t a, uint32_t b)
{
	return (b - a) & 0xffffff;
}

static void test_timer_rate(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	uint32_t t0 = hx_inl(h, TMR);
	assert_int_equal(t0 & 0xff000000, 0);
	hx_clock_advance(h, 1 * MS);
	uint32_t t1 = hx_inl(h, TMR);
	assert_in_range(tmr_delta(t0, t1), 3579, 3580);
	hx_clock_advance(h, 1000 * MS);
	uint32_t t2 = hx_inl(h, TMR);
	assert_int_equal(tmr_delta(t1, t2), PC_PM_TMR_HZ);
	/* Read-only: writes change nothing. */
	hx_outl(h, TMR, 0);
	assert_int_equal(hx_inl(h, TMR), t2);
	/* Byte and word reads see the same counter. */
	assert_int_equal(hx_inb(h, TMR), t2 & 0xff);
	assert_int_equal(hx_inw(h, TMR + 1), (t2 >> 8) & 0xffff);
	assert_int_equal(hx_inb(h, TMR + 3), 0);
}

static void test_timer_wraps_and_tmr_sts(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;
	uint32_t prev = hx_inl(h, TMR), seen_max = 0;
	int wraps = 0;

	/* Go to just before the next bit-23 change. */
	uint32_t to_toggle = 0x800000 - (prev & 0x7fffff);
	hx_clock_advance(h, tmr_ns(to_toggle) - 1000);
	assert_false(hx_inw(h, STS) & ACPI_PM1_TMR);
	hx_clock_advance(h, 2000);
	assert_true(hx_inw(h, STS) & ACPI_PM1_TMR);
	/* Not enabled: no SCI. */
	assert_false(hx_irq_level(h, PC_IRQ_SCI));
	hx_outw(h, STS, ACPI_PM1_TMR);
	assert_false(hx_inw(h, STS) & ACPI_PM1_TMR);

	/* Over 10 s the 24-bit counter wraps twice (2^24 ticks = 4.69 s). */
	prev = hx_inl(h, TMR);
	for (int i = 0; i < 100; i++) {
		hx_clock_advance(h, 100 * MS);
		uint32_t t = hx_inl(h, TMR);
		assert_true(t <= 0xffffff);
		if (t < prev)
			wraps++;
		if (t > seen_max)
			seen_max = t;
		assert_in_range(tmr_delta(prev, t), 357954, 357955);
		prev = t;
	}
	assert_int_equal(wraps, 2);
	assert_true(seen_max > 0xf00000);
}

static void test_tmr_sci(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	hx_outw(h, EN, ACPI_PM1_TMR);
	assert_int_equal(hx_inw(h, EN), ACPI_PM1_TMR);
	hx_clock_advance(h, 2400 * MS); /* > 2^23 ticks: at least one toggle */
	/* The timer raised the SCI without any guest access. */
	assert_true(hx_irq_level(h, PC_IRQ_SCI));
	assert_int_equal(hx_irq_edges(h, PC_IRQ_SCI), 1);
	assert_true(hx_inw(h, STS) & ACPI_PM1_TMR);
	hx_outw(h, STS, ACPI_PM1_TMR);
	assert_false(hx_irq_level(h, PC_IRQ_SCI));
	/* Next toggle 2.34 s later, not sooner. */
	hx_clock_advance(h, 1000 * MS);
	assert_false(hx_irq_level(h, PC_IRQ_SCI));
	hx_clock_advance(h, 1400 * MS);
	assert_true(hx_irq_level(h, PC_IRQ_SCI));
	assert_int_equal(hx_irq_edges(h, PC_IRQ_SCI), 2);
	/* Disabling TMR_EN drops the SCI; status stays. */
	hx_outw(h, EN, 0);
	assert_false(hx_irq_level(h, PC_IRQ_SCI));
	assert_true(hx_inw(h, STS) & ACPI_PM1_TMR);
}

static void test_s5_powers_off(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	assert_int_equal(atomic_load(&h->vm.stop_reason), VM_RUNNING);
	/* SLP_TYP without SLP_EN does nothing. */
	hx_outw(h, CNT, PC_ACPI_SLP_TYP_S5 << ACPI_PM1_SLP_TYP_SHIFT);
	assert_int_equal(atomic_load(&h->vm.stop_reason), VM_RUNNING);
	hx_outw(h, CNT, PC_ACPI_SLP_TYP_S5 << ACPI_PM1_SLP_TYP_SHIFT |
				ACPI_PM1_SLP_EN);
	assert_int_equal(atomic_load(&h->vm.stop_reason), VM_STOP_POWEROFF);
	assert_true(vm_stopping(&h->vm));
}

static void test_s5_byte_write(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	/* SLP_TYP and SLP_EN share the high byte. */
	hx_outb(h, CNT + 1, (uint8_t)((PC_ACPI_SLP_TYP_S5 << 2) | 0x20));
	assert_int_equal(atomic_load(&h->vm.stop_reason), VM_STOP_POWEROFF);
}

static void test_other_sleep_ignored(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	for (unsigned typ = 0; typ < 8; typ++) {
		if (typ == PC_ACPI_SLP_TYP_S5)
			continue;
		hx_outw(h, CNT, (uint16_t)(typ << ACPI_PM1_SLP_TYP_SHIFT |
					   ACPI_PM1_SLP_EN));
		assert_int_equal(atomic_load(&h->vm.stop_reason), VM_RUNNING);
		/* The guest is woken at once rather than left spinning. */
		assert_true(hx_inw(h, STS) & ACPI_PM1_WAK_STS);
		hx_outw(h, STS, ACPI_PM1_WAK_STS);
		assert_false(hx_inw(h, STS) & ACPI_PM1_WAK_STS);
	}
}

static void test_pm1_cnt_bits(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	assert_int_equal(hx_inw(h, CNT), ACPI_PM1_SCI_EN);
	hx_outw(h, CNT, 0); /* cannot leave ACPI mode */
	assert_int_equal(hx_inw(h, CNT), ACPI_PM1_SCI_EN);
	hx_outw(h, CNT, 3u << ACPI_PM1_SLP_TYP_SHIFT | ACPI_PM1_BM_RLD |
				ACPI_PM1_GBL_RLS);
	/* SLP_TYP and BM_RLD stick; GBL_RLS and SLP_EN read 0. */
	assert_int_equal(hx_inw(h, CNT), 3u << ACPI_PM1_SLP_TYP_SHIFT |
						 ACPI_PM1_BM_RLD |
						 ACPI_PM1_SCI_EN);
	assert_int_equal(hx_inw(h, CNT + 2), 0); /* unused bytes */
	/* Undefined enable bits are dropped. */
	hx_outw(h, EN, 0xffff);
	assert_int_equal(hx_inw(h, EN), ACPI_PM1_TMR | ACPI_PM1_GBL |
						ACPI_PM1_PWRBTN |
						ACPI_PM1_SLPBTN | ACPI_PM1_RTC);
	/* A 32-bit access covers STS and EN. */
	hx_outl(h, STS, 0);
	assert_int_equal(hx_inw(h, EN), 0);
}

static void test_power_button_and_w1c(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	acpi_pm_power_button(f->pm);
	assert_true(hx_inw(h, STS) & ACPI_PM1_PWRBTN);
	assert_false(hx_irq_level(h, PC_IRQ_SCI)); /* not enabled */
	hx_outw(h, EN, ACPI_PM1_PWRBTN);
	assert_true(hx_irq_level(h, PC_IRQ_SCI));
	/* Writing 0s, or 1s to other bits, does not clear it. */
	hx_outw(h, STS, 0);
	hx_outw(h, STS, (uint16_t)~ACPI_PM1_PWRBTN);
	assert_true(hx_inw(h, STS) & ACPI_PM1_PWRBTN);
	assert_true(hx_irq_level(h, PC_IRQ_SCI));
	/* Writing 1 clears it, also as a byte write of the high half. */
	hx_outb(h, STS + 1, ACPI_PM1_PWRBTN >> 8);
	assert_false(hx_inw(h, STS) & ACPI_PM1_PWRBTN);
	assert_false(hx_irq_level(h, PC_IRQ_SCI));
	/* Enabled first, then pressed: the SCI rises at the press. */
	acpi_pm_power_button(f->pm);
	assert_true(hx_irq_level(h, PC_IRQ_SCI));
	assert_int_equal(hx_irq_edges(h, PC_IRQ_SCI), 2);
	assert_int_equal(atomic_load(&h->vm.stop_reason), VM_RUNNING);
}

static void test_gpe(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	assert_int_equal(hx_inl(h, GPE_STS), 0);
	acpi_pm_gpe_raise(f->pm, 3);
	acpi_pm_gpe_raise(f->pm, 99); /* ignored */
	assert_int_equal(hx_inw(h, GPE_STS), 0x0008);
	assert_false(hx_irq_level(h, PC_IRQ_SCI));
	hx_outw(h, GPE_EN, 0x0008);
	assert_int_equal(hx_inw(h, GPE_EN), 0x0008);
	assert_true(hx_irq_level(h, PC_IRQ_SCI));
	hx_outb(h, GPE_STS, 0x08);
	assert_false(hx_irq_level(h, PC_IRQ_SCI));
	assert_int_equal(hx_inl(h, GPE_STS), 0x00080000);
}

static void test_save_load(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h, *g;
	struct state_buf buf = { 0 };
	struct acpi_pm *pm2;

	hx_outw(h, EN, ACPI_PM1_PWRBTN | ACPI_PM1_TMR);
	acpi_pm_power_button(f->pm);
	hx_outw(h, CNT, 5u << ACPI_PM1_SLP_TYP_SHIFT);
	hx_outw(h, GPE_EN, 0x0101);
	hx_clock_advance(h, 123 * MS);
	uint32_t t = hx_inl(h, TMR);

	assert_int_equal(hx_save(h, "acpi-pm", &buf), 0);

	g = harness_new(1 << 20);
	hx_clock_advance(g, 5555 * MS); /* a different clock */
	assert_int_equal(acpi_pm_create(&g->vm, &pm2), 0);
	assert_int_equal(hx_load(g, "acpi-pm", buf.data, buf.len), 0);
	assert_int_equal(hx_inl(g, TMR), t); /* the timer continues */
	assert_int_equal(hx_inw(g, STS), hx_inw(h, STS));
	assert_int_equal(hx_inw(g, EN), hx_inw(h, EN));
	assert_int_equal(hx_inw(g, CNT), hx_inw(h, CNT));
	assert_int_equal(hx_inl(g, GPE_STS), hx_inl(h, GPE_STS));
	assert_true(hx_irq_level(g, PC_IRQ_SCI));
	hx_clock_advance(h, 10 * MS);
	hx_clock_advance(g, 10 * MS);
	assert_int_equal(hx_inl(g, TMR), hx_inl(h, TMR));

	/* Validation. */
	assert_int_equal(hx_load(g, "acpi-pm", buf.data, buf.len - 1), -EINVAL);
	uint8_t *bad = malloc(buf.len);
	assert_non_null(bad);
	memcpy(bad, buf.data, buf.len);
	bad[11 + 3] = 1; /* timer wider than 24 bits */
	assert_int_equal(hx_load(g, "acpi-pm", bad, buf.len), -EINVAL);
	memcpy(bad, buf.data, buf.len);
	bad[3] = 0x80; /* undefined PM1_EN bit 7 */
	assert_int_equal(hx_load(g, "acpi-pm", bad, buf.len), -EINVAL);
	memcpy(bad, buf.data, buf.len);
	bad[0] = 2;
	assert_int_equal(hx_load(g, "acpi-pm", bad, buf.len), -EINVAL);
	free(bad);
	state_buf_free(&buf);
	harness_free(g);
}

static void test_reset(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	hx_outw(h, EN, ACPI_PM1_PWRBTN);
	acpi_pm_power_button(f->pm);
	assert_true(hx_irq_level(h, PC_IRQ_SCI));
	uint32_t t = hx_inl(h, TMR);
	vm_reset_devices(&h->vm);
	assert_false(hx_irq_level(h, PC_IRQ_SCI));
	assert_int_equal(hx_inw(h, STS), 0);
	assert_int_equal(hx_inw(h, EN), 0);
	assert_int_equal(hx_inl(h, TMR), t);
}

static void test_hostile_fuzz(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;
	uint64_t x = 0x853c49e6748fea9bull;

	for (int i = 0; i < 100000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint16_t port = (x >> 8) & 1 ? PC_ACPI_GPE0_BLK + (x >> 9) % 4
					     : PC_ACPI_PM_BASE + (x >> 9) % 12;
		unsigned size = 1u << ((x >> 16) % 3);
		if (x & 1) {
			uint64_t v = x >> 24;
			/* Keep the machine running: never SLP_EN. */
			if (port <= CNT + 1 && port + size > CNT + 1)
				v &= ~((uint64_t)0x20 << (8 * (CNT + 1 - port)));
			bus_write(&h->vm.pio, port, size, v);
		} else {
			(void)bus_read(&h->vm.pio, port, size);
		}
		if (x % 64 == 0)
			hx_clock_advance(h, (x >> 32) % (3000 * MS));
	}
	assert_int_equal(atomic_load(&h->vm.stop_reason), VM_RUNNING);
	assert_true(hx_inl(h, TMR) <= 0xffffff);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_timer_rate),
		T(test_timer_wraps_and_tmr_sts),
		T(test_tmr_sci),
		T(test_s5_powers_off),
		T(test_s5_byte_write),
		T(test_other_sleep_ignored),
		T(test_pm1_cnt_bits),
		T(test_power_button_and_w1c),
		T(test_gpe),
		T(test_save_load),
		T(test_reset),
		T(test_hostile_fuzz),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
