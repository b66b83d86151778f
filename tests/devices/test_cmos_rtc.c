/*
 * test_cmos_rtc.c - the MC146818 RTC through the harness and its fake
 * clock: reading the time as Linux does, setting it, the periodic, alarm
 * and update interrupts, the CMOS memory bytes, save/load and garbage.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

#include "harness.h"
#include "hw/cmos_rtc.h"
#include "hw/pc.h"

#define IDX  PC_RTC_PORT
#define DAT  (PC_RTC_PORT + 1)
#define IRQ  PC_IRQ_RTC
#define MS   1000000ull
#define SEC  1000000000ull

static int setup(void **state)
{
	struct harness *h = harness_new(1 << 20);

	assert_int_equal(cmos_rtc_create(&h->vm, 1 << 20, NULL), 0);
	*state = h;
	return 0;
}

static int teardown(void **state)
{
	harness_free(*state);
	return 0;
}

static uint8_t rd(struct harness *h, uint8_t reg)
{
	hx_outb(h, IDX, reg);
	return hx_inb(h, DAT);
}

static void wr(struct harness *h, uint8_t reg, uint8_t v)
{
	hx_outb(h, IDX, reg);
	hx_outb(h, DAT, v);
}

static int bcd(uint8_t v)
{
	return (v >> 4) * 10 + (v & 15);
}

static uint8_t to_bcd(int v)
{
	return (uint8_t)((v / 10) << 4 | v % 10);
}

/* mc146818_get_time(): wait for UIP to clear (advancing the fake clock,
 * since it does not move by itself), read, convert with timegm. */
static time_t read_rtc(struct harness *h)
{
	uint8_t b = rd(h, 0x0b);
	int bin = b & 0x04, h24 = b & 0x02;
	struct tm tm = { 0 };
	uint8_t hr;

	for (int i = 0; rd(h, 0x0a) & 0x80; i++) {
		assert_true(i < 10);
		hx_clock_advance(h, 100000); /* 100 us */
	}
#define CV(x) (bin ? (x) : bcd(x))
	tm.tm_sec = CV(rd(h, 0x00));
	tm.tm_min = CV(rd(h, 0x02));
	hr = rd(h, 0x04);
	if (h24)
		tm.tm_hour = CV(hr);
	else
		tm.tm_hour = CV(hr & 0x7f) % 12 + (hr & 0x80 ? 12 : 0);
	tm.tm_mday = CV(rd(h, 0x07));
	tm.tm_mon = CV(rd(h, 0x08)) - 1;
	tm.tm_year = CV(rd(h, 0x09)) + 100 * CV(rd(h, 0x32)) - 1900;
#undef CV
	return timegm(&tm);
}

static void test_time_bcd_matches_host(void **state)
{
	struct harness *h = *state;
	time_t t = read_rtc(h);
	long d = (long)(t - time(NULL));

	assert_int_equal(rd(h, 0x0b), 0x02); /* BCD, 24 h */
	assert_true(d >= -2 && d <= 2);
	/* Day of week: 1 = Sunday. */
	{
		struct tm tm;
		time_t now = t;
		gmtime_r(&now, &tm);
		assert_int_equal(bcd(rd(h, 0x06)), tm.tm_wday + 1);
	}
}

static void test_time_binary_and_12h(void **state)
{
	struct harness *h = *state;
	time_t t;
	long d;
	uint8_t h24, h12;

	wr(h, 0x0b, 0x06); /* binary, 24 h */
	t = read_rtc(h);
	d = (long)(t - time(NULL));
	assert_true(d >= -2 && d <= 2);
	assert_true(rd(h, 0x00) < 60);
	assert_true(rd(h, 0x32) >= 20);

	/* The fake clock stands still: both formats of the same hour. */
	h24 = rd(h, 0x04);
	wr(h, 0x0b, 0x04); /* binary, 12 h */
	h12 = rd(h, 0x04);
	assert_int_equal((h12 & 0x7f) % 12, h24 % 12);
	assert_int_equal(!!(h12 & 0x80), h24 >= 12);
	assert_true((h12 & 0x7f) >= 1 && (h12 & 0x7f) <= 12);
	t = read_rtc(h);
	d = (long)(t - time(NULL));
	assert_true(d >= -2 && d <= 2);
}

/* Linux's mc146818_set_time(): SET, divider reset, write, restore. */
static void set_time_bcd(struct harness *h, int year, int mon, int day,
			 int hr, int min, int sec)
{
	uint8_t b = rd(h, 0x0b), a = rd(h, 0x0a);

	wr(h, 0x0b, b | 0x80);
	wr(h, 0x0a, a | 0x70);
	wr(h, 0x09, to_bcd(year % 100));
	wr(h, 0x32, to_bcd(year / 100));
	wr(h, 0x08, to_bcd(mon));
	wr(h, 0x07, to_bcd(day));
	wr(h, 0x04, to_bcd(hr));
	wr(h, 0x02, to_bcd(min));
	wr(h, 0x00, to_bcd(sec));
	wr(h, 0x0b, b);
	wr(h, 0x0a, a);
}

static void test_set_time_persists(void **state)
{
	struct harness *h = *state, *g;
	struct state_buf b = { 0 };
	struct tm tm = { .tm_year = 101, .tm_mon = 1, .tm_mday = 3,
			 .tm_hour = 4, .tm_min = 5, .tm_sec = 6 };
	time_t want = timegm(&tm);

	set_time_bcd(h, 2001, 2, 3, 4, 5, 6);
	/* Divider release: first update 500 ms later. */
	assert_int_equal(read_rtc(h), want);
	hx_clock_advance(h, 400 * MS);
	assert_int_equal(rd(h, 0x00), 0x06);
	hx_clock_advance(h, 200 * MS);
	assert_int_equal(rd(h, 0x00), 0x07);
	hx_clock_advance(h, 10 * SEC);
	assert_int_equal(read_rtc(h), want + 11);
	hx_clock_advance(h, 3600 * SEC);
	assert_int_equal(read_rtc(h), want + 3611);
	assert_int_equal(rd(h, 0x04), 0x05);
	assert_int_equal(rd(h, 0x06), 0x07); /* 2001-02-03 was a Saturday */

	/* A single field written while running keeps the others. */
	wr(h, 0x09, 0x02);
	assert_int_equal(rd(h, 0x09), 0x02);
	assert_int_equal(rd(h, 0x08), 0x02);
	assert_int_equal(rd(h, 0x04), 0x05);

	/* SET freezes the clock. */
	wr(h, 0x0b, 0x82);
	hx_clock_advance(h, 5 * SEC);
	assert_int_equal(rd(h, 0x09), 0x02);
	assert_int_equal(rd(h, 0x04), 0x05);
	{
		uint8_t s0 = rd(h, 0x00);
		hx_clock_advance(h, 5 * SEC);
		assert_int_equal(rd(h, 0x00), s0);
		assert_int_equal(rd(h, 0x0a) & 0x80, 0); /* no UIP when stopped */
	}
	wr(h, 0x0b, 0x02);

	/* Save/load: the offset from host time comes across. */
	assert_int_equal(hx_save(h, "cmos_rtc", &b), 0);
	g = harness_new(1 << 20);
	assert_int_equal(cmos_rtc_create(&g->vm, 1 << 20, NULL), 0);
	assert_int_equal(hx_load(g, "cmos_rtc", b.data, b.len), 0);
	{
		/* The fake clock ran h's "host time" ahead of real time by
		 * its elapsed time; g's starts at real time again. */
		long ahead = (long)((h->vm.fake_clock_ns - SEC) / SEC);
		long diff = (long)(read_rtc(g) - (read_rtc(h) - ahead));
		assert_true(diff >= -2 && diff <= 2);
		assert_int_equal(rd(g, 0x09), 0x02);
	}
	/* Bad streams: truncated, version, register D, offset. */
	assert_int_equal(hx_load(g, "cmos_rtc", b.data, b.len - 1), -EINVAL);
	b.data[0] = 9;
	assert_int_equal(hx_load(g, "cmos_rtc", b.data, b.len), -EINVAL);
	b.data[0] = 1;
	b.data[1 + 0x0d] = 0;
	assert_int_equal(hx_load(g, "cmos_rtc", b.data, b.len), -EINVAL);
	b.data[1 + 0x0d] = 0x80;
	b.data[1 + 128 + 1 + 7] = 0x7f; /* offset seconds, top byte */
	assert_int_equal(hx_load(g, "cmos_rtc", b.data, b.len), -EINVAL);
	state_buf_free(&b);
	harness_free(g);
}

static void test_uip_window(void **state)
{
	struct harness *h = *state;

	set_time_bcd(h, 2020, 1, 1, 0, 0, 0);
	/* Released divider: 500 ms to the first update. */
	hx_clock_advance(h, 500 * MS - 300000);
	assert_int_equal(rd(h, 0x0a) & 0x80, 0);
	assert_int_equal(rd(h, 0x00), 0x00);
	hx_clock_advance(h, 100000); /* 200 us before the update */
	assert_int_equal(rd(h, 0x0a) & 0x80, 0x80);
	assert_int_equal(rd(h, 0x00), 0x00);
	hx_clock_advance(h, 200000);
	assert_int_equal(rd(h, 0x0a), 0x26);
	assert_int_equal(rd(h, 0x00), 0x01);
}

static void test_periodic_interrupt(void **state)
{
	struct harness *h = *state;
	unsigned n = 0;

	assert_int_equal(rd(h, 0x0a) & 0x7f, 0x26);
	rd(h, 0x0c);
	wr(h, 0x0b, 0x42); /* PIE */
	assert_false(hx_irq_level(h, IRQ));
	/* 1024 Hz for one second, handler reading C each time. */
	for (int step = 0; step < 10000; step++) {
		hx_clock_advance(h, 100000);
		if (hx_irq_level(h, IRQ)) {
			uint8_t c = rd(h, 0x0c);
			assert_int_equal(c & 0xc0, 0xc0);
			assert_false(hx_irq_level(h, IRQ));
			n++;
		}
	}
	assert_true(n >= 1023 && n <= 1025);
	assert_int_equal(hx_irq_edges(h, IRQ), n);

	/* Without reading C the line stays up: one edge only. */
	hx_irq_clear_edges(h);
	hx_clock_advance(h, 10 * MS);
	assert_true(hx_irq_level(h, IRQ));
	hx_clock_advance(h, 10 * MS);
	assert_int_equal(hx_irq_edges(h, IRQ), 1);
	assert_int_equal(rd(h, 0x0c) & 0xc0, 0xc0);
	assert_int_equal(rd(h, 0x0c) & 0x40, 0); /* read-and-clear */

	/* RS = 15: 2 Hz.  RS = 0: off. */
	wr(h, 0x0a, 0x2f);
	rd(h, 0x0c);
	hx_irq_clear_edges(h);
	n = 0;
	for (int step = 0; step < 100; step++) {
		hx_clock_advance(h, 20 * MS);
		if (hx_irq_level(h, IRQ)) {
			rd(h, 0x0c);
			n++;
		}
	}
	assert_int_equal(n, 4);
	wr(h, 0x0a, 0x20);
	rd(h, 0x0c);
	hx_irq_clear_edges(h);
	hx_clock_advance(h, 2 * SEC);
	assert_int_equal(hx_irq_edges(h, IRQ), 0);
	/* PIE off: PF still set, no interrupt. */
	wr(h, 0x0a, 0x26);
	wr(h, 0x0b, 0x02);
	rd(h, 0x0c);
	hx_clock_advance(h, 10 * MS);
	assert_false(hx_irq_level(h, IRQ));
	assert_int_equal(rd(h, 0x0c) & 0xc0, 0x40);
}

static void test_alarm_interrupt(void **state)
{
	struct harness *h = *state;

	set_time_bcd(h, 2024, 6, 30, 11, 59, 58);
	hx_clock_advance(h, 500 * MS); /* to 11:59:59.000 */
	wr(h, 0x01, 0x05);
	wr(h, 0x03, 0x00);
	wr(h, 0x05, 0x12);
	rd(h, 0x0c);
	wr(h, 0x0b, 0x22); /* AIE */
	hx_clock_advance(h, 5 * SEC + 500 * MS); /* 12:00:04.5 */
	assert_false(hx_irq_level(h, IRQ));
	assert_int_equal(hx_irq_edges(h, IRQ), 0);
	hx_clock_advance(h, 500 * MS); /* 12:00:05 */
	assert_true(hx_irq_level(h, IRQ));
	/* IRQF | AF | UF (PF runs at 1024 Hz, unenabled, too) */
	assert_int_equal(rd(h, 0x0c) & 0xb0, 0xb0);
	assert_false(hx_irq_level(h, IRQ));
	hx_clock_advance(h, 3 * SEC);
	assert_false(hx_irq_level(h, IRQ));

	/* Don't-care bytes: every second. */
	wr(h, 0x01, 0xff);
	wr(h, 0x03, 0xc0);
	wr(h, 0x05, 0xc0);
	rd(h, 0x0c);
	hx_irq_clear_edges(h);
	for (int i = 0; i < 5; i++) {
		hx_clock_advance(h, SEC);
		assert_true(hx_irq_level(h, IRQ));
		assert_int_equal(rd(h, 0x0c) & 0xa0, 0xa0);
	}
	assert_int_equal(hx_irq_edges(h, IRQ), 5);

	/* 12-hour alarm: 1 PM, every minute and second. */
	wr(h, 0x0b, 0x20); /* AIE, 12 h, BCD */
	wr(h, 0x01, 0xc0);
	wr(h, 0x03, 0xc0);
	wr(h, 0x05, 0x81); /* 1 PM */
	rd(h, 0x0c);
	hx_irq_clear_edges(h);
	hx_clock_advance(h, 3600 * SEC); /* into 13:00 */
	assert_true(hx_irq_level(h, IRQ));
	assert_int_equal(rd(h, 0x04), 0x81);
}

static void test_update_interrupt(void **state)
{
	struct harness *h = *state;

	rd(h, 0x0c);
	wr(h, 0x0b, 0x12); /* UIE */
	for (int i = 0; i < 3; i++) {
		hx_clock_advance(h, SEC);
		assert_true(hx_irq_level(h, IRQ));
		assert_int_equal(rd(h, 0x0c) & 0x90, 0x90);
	}
	assert_int_equal(hx_irq_edges(h, IRQ), 3);
	/* SET clears UIE. */
	wr(h, 0x0b, 0x92);
	assert_int_equal(rd(h, 0x0b), 0x82);
	wr(h, 0x0b, 0x02);
	hx_clock_advance(h, 2 * SEC);
	assert_int_equal(hx_irq_edges(h, IRQ), 3);

	/* Machine reset clears the enables and flags, keeps the time. */
	wr(h, 0x0b, 0x72);
	hx_clock_advance(h, 2 * SEC);
	assert_true(hx_irq_level(h, IRQ));
	vm_reset_devices(&h->vm);
	assert_false(hx_irq_level(h, IRQ));
	assert_int_equal(rd(h, 0x0b), 0x02);
	assert_int_equal(rd(h, 0x0c), 0x00);
}

static void test_registers_and_index(void **state)
{
	struct harness *h = *state;

	assert_int_equal(rd(h, 0x0d), 0x80);
	wr(h, 0x0d, 0x00);
	assert_int_equal(rd(h, 0x0d), 0x80);
	/* NMI-disable bit of the index port is ignored. */
	hx_outb(h, IDX, 0x80 | 0x0d);
	assert_int_equal(hx_inb(h, DAT), 0x80);
	assert_int_equal(hx_inb(h, IDX), 0xff);
	/* Plain CMOS RAM. */
	wr(h, 0x40, 0x5a);
	assert_int_equal(rd(h, 0x40), 0x5a);
	hx_outb(h, IDX, 0xc0); /* = 0x40 */
	assert_int_equal(hx_inb(h, DAT), 0x5a);
	/* UIP is read-only. */
	wr(h, 0x0a, 0xa6);
	assert_int_equal(rd(h, 0x0a) & 0x7f, 0x26);
}

static void test_memory_bytes(void **state)
{
	struct harness *h = harness_new(256u << 20);
	struct cmos_rtc *rtc;
	uint8_t v;

	(void)state;
	assert_int_equal(cmos_rtc_create(&h->vm, 256u << 20, &rtc), 0);
	assert_int_equal(rd(h, 0x15) | rd(h, 0x16) << 8, 640);
	assert_int_equal(rd(h, 0x17) | rd(h, 0x18) << 8, 0xffff);
	assert_int_equal(rd(h, 0x30) | rd(h, 0x31) << 8, 0xffff);
	assert_int_equal(rd(h, 0x34) | rd(h, 0x35) << 8, (256 - 16) * 16);
	assert_int_equal(rd(h, 0x5b) | rd(h, 0x5c) | rd(h, 0x5d), 0);
	assert_int_equal(rd(h, 0x5f), 0); /* 1 CPU */
	assert_int_equal(cmos_rtc_set_byte(rtc, 0x3d, 0x21), 0);
	assert_int_equal(rd(h, 0x3d), 0x21);
	assert_int_equal(cmos_rtc_get_byte(rtc, 0x34, &v), 0);
	assert_int_equal(v, 0x00);
	assert_int_equal(cmos_rtc_set_byte(rtc, 0x0b, 0), -EINVAL);
	assert_int_equal(cmos_rtc_set_byte(rtc, 0x80, 0), -EINVAL);
	harness_free(h);

	h = harness_new(8u << 20);
	assert_int_equal(cmos_rtc_create(&h->vm, 8u << 20, NULL), 0);
	assert_int_equal(rd(h, 0x17) | rd(h, 0x18) << 8, 7 * 1024);
	assert_int_equal(rd(h, 0x34) | rd(h, 0x35) << 8, 0);
	harness_free(h);

	/* 3 GiB below the hole, 64 MiB above 4 GiB. */
	h = harness_new(GM_HOLE_START + (64u << 20));
	assert_int_equal(cmos_rtc_create(&h->vm, GM_HOLE_START + (64u << 20),
					 NULL), 0);
	assert_int_equal(rd(h, 0x34) | rd(h, 0x35) << 8,
			 (int)((GM_HOLE_START - (16u << 20)) >> 16));
	assert_int_equal(rd(h, 0x5b) | rd(h, 0x5c) << 8 | rd(h, 0x5d) << 16,
			 1024);
	harness_free(h);
}

static void test_hostile(void **state)
{
	struct harness *h = *state;
	uint32_t s = 777;

	for (unsigned reg = 0; reg < 128; reg++)
		for (unsigned v = 0; v < 256; v += 7) {
			wr(h, (uint8_t)reg, (uint8_t)v);
			rd(h, (uint8_t)reg);
			rd(h, 0x0c);
		}
	for (int i = 0; i < 20000; i++) {
		s = s * 1103515245u + 12345u;
		uint8_t reg = (uint8_t)((s >> 8) % 0x34);
		wr(h, reg, (uint8_t)(s >> 20));
		if (i % 16 == 0)
			hx_clock_advance(h, (s >> 4) % (3 * SEC));
		for (uint8_t r = 0; r < 0x0e; r++)
			rd(h, r);
	}
	/* Garbage BCD time, far future century, both formats. */
	wr(h, 0x0b, 0x82);
	for (uint8_t r = 0; r < 10; r++)
		wr(h, r, 0xff);
	wr(h, 0x32, 0xff);
	wr(h, 0x0b, 0x02);
	hx_clock_advance(h, 5 * SEC);
	for (uint8_t r = 0; r < 0x0e; r++)
		rd(h, r);
	wr(h, 0x0b, 0x06);
	hx_clock_advance(h, 5 * SEC);
	for (uint8_t r = 0; r < 0x0e; r++)
		rd(h, r);
	/* Still a working clock. */
	vm_reset_devices(&h->vm);
	wr(h, 0x0b, 0x02);
	wr(h, 0x0a, 0x26);
	set_time_bcd(h, 1999, 12, 31, 23, 59, 59);
	hx_clock_advance(h, 600 * MS);
	assert_int_equal(rd(h, 0x09), 0x00);
	assert_int_equal(rd(h, 0x32), 0x20);
	assert_int_equal(rd(h, 0x08), 0x01);
	assert_int_equal(rd(h, 0x07), 0x01);
	assert_int_equal(rd(h, 0x04), 0x00);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_time_bcd_matches_host, setup, teardown),
		cmocka_unit_test_setup_teardown(test_time_binary_and_12h, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_time_persists, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uip_window, setup, teardown),
		cmocka_unit_test_setup_teardown(test_periodic_interrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alarm_interrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_interrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_registers_and_index, setup, teardown),
		cmocka_unit_test(test_memory_bytes),
		cmocka_unit_test_setup_teardown(test_hostile, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
