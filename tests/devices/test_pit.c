/*
 * test_pit.c - the 8254 PIT and port 0x61 through the harness: the guest's
 * view (ports 0x40-0x43, 0x61) against the fake clock, IRQ0 edges as the
 * harness records them.
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
#include "hw/pc.h"
#include "hw/pit.h"

#define US 1000ull
#define MS 1000000ull
#define PIT_CH0 0x40
#define PIT_CH2 0x42
#define PIT_CMD 0x43

/* ns after which d pulses have elapsed from a start time (rounded up). */
static uint64_t ticks_ns(uint64_t ticks)
{
	return (ticks * 1000000000ull + PC_PIT_HZ - 1) / PC_PIT_HZ;
}

static struct harness *new_pit(struct pit **out)
{
	struct harness *h = harness_new(1 << 20);
	struct pit *p = NULL;

	assert_int_equal(pit_create(&h->vm, &p), 0);
	assert_non_null(p);
	if (out)
		*out = p;
	return h;
}

static void program(struct harness *h, uint8_t cw, uint16_t port,
		    uint16_t count)
{
	hx_outb(h, PIT_CMD, cw);
	hx_outb(h, port, count & 0xff);
	hx_outb(h, port, count >> 8);
}

static uint16_t read_word(struct harness *h, uint16_t port)
{
	uint16_t lo = hx_inb(h, port);
	return (uint16_t)(lo | hx_inb(h, port) << 8);
}

static uint16_t latch_ch2(struct harness *h)
{
	hx_outb(h, PIT_CMD, 0x80); /* counter latch, channel 2 */
	return read_word(h, PIT_CH2);
}

static bool out2(struct harness *h)
{
	return hx_inb(h, PC_PORT61) & 0x20;
}

static void gate2(struct harness *h, bool on)
{
	uint8_t v = hx_inb(h, PC_PORT61) & 0x0f;
	hx_outb(h, PC_PORT61, (uint8_t)(on ? v | 1 : v & ~1));
}

/* Mode 2 at divisor 1193 (~1 kHz): 10 IRQ0 edges in 10 ms. */
static void test_mode2_periodic_irq0(void **state)
{
	struct harness *h = new_pit(NULL);

	program(h, 0x34, PIT_CH0, 1193); /* ch0, lo/hi, mode 2 */
	hx_irq_clear_edges(h);
	hx_clock_advance(h, 10 * MS);
	unsigned e = hx_irq_edges(h, PC_IRQ_PIT);
	assert_in_range(e, 9, 11);
	/* The line rests low between pulses. */
	assert_false(hx_irq_level(h, PC_IRQ_PIT));
	/* And keeps going at the same rate, also in small steps. */
	for (int i = 0; i < 100; i++)
		hx_clock_advance(h, 100 * US);
	assert_in_range(hx_irq_edges(h, PC_IRQ_PIT), e + 9, e + 11);
	harness_free(h);
}

/* Mode 3 (what BIOSes use) interrupts at the same rate as mode 2. */
static void test_mode3_periodic_irq0(void **state)
{
	struct harness *h = new_pit(NULL);

	program(h, 0x36, PIT_CH0, 11932); /* ~100 Hz */
	hx_irq_clear_edges(h);
	hx_clock_advance(h, 100 * MS);
	assert_in_range(hx_irq_edges(h, PC_IRQ_PIT), 9, 11);
	harness_free(h);
}

/* A reload value of 0 means 65536: ~18.2 Hz, not a divide by zero. */
static void test_reload_zero_is_65536(void **state)
{
	struct harness *h = new_pit(NULL);

	program(h, 0x34, PIT_CH0, 0);
	hx_irq_clear_edges(h);
	hx_clock_advance(h, 54 * MS); /* period is 54.925 ms */
	assert_int_equal(hx_irq_edges(h, PC_IRQ_PIT), 0);
	hx_clock_advance(h, 1 * MS);
	assert_int_equal(hx_irq_edges(h, PC_IRQ_PIT), 1);
	hx_clock_advance(h, 1000 * MS);
	assert_in_range(hx_irq_edges(h, PC_IRQ_PIT), 18, 19);
	harness_free(h);
}

/* A hostile divisor of 2 (600 kHz) is clamped to one IRQ per 200 us, and
 * reprogramming in a loop does not get around the clamp. */
static void test_tiny_period_clamped(void **state)
{
	struct harness *h = new_pit(NULL);

	program(h, 0x34, PIT_CH0, 2);
	hx_irq_clear_edges(h);
	hx_clock_advance(h, 10 * MS);
	assert_in_range(hx_irq_edges(h, PC_IRQ_PIT), 45,
			10 * MS / PIT_MIN_IRQ_PERIOD_NS + 1);

	hx_irq_clear_edges(h);
	for (int i = 0; i < 1000; i++) {
		program(h, 0x34, PIT_CH0, 2);
		hx_clock_advance(h, 10 * US);
	}
	assert_true(hx_irq_edges(h, PC_IRQ_PIT) <=
		    10 * MS / PIT_MIN_IRQ_PERIOD_NS + 1);
	/* The counter itself still runs at the programmed rate. */
	hx_outb(h, PIT_CMD, 0x00);
	uint16_t v = read_word(h, PIT_CH0);
	assert_in_range(v, 1, 2);
	harness_free(h);
}

/* Mode 0 on channel 0: exactly one IRQ0 edge, at terminal count. */
static void test_mode0_oneshot_irq0(void **state)
{
	struct harness *h = new_pit(NULL);

	program(h, 0x30, PIT_CH0, 1193 * 5); /* ~5 ms */
	hx_irq_clear_edges(h);
	hx_clock_advance(h, 4 * MS);
	assert_int_equal(hx_irq_edges(h, PC_IRQ_PIT), 0);
	hx_clock_advance(h, 2 * MS);
	assert_int_equal(hx_irq_edges(h, PC_IRQ_PIT), 1);
	hx_clock_advance(h, 500 * MS);
	assert_int_equal(hx_irq_edges(h, PC_IRQ_PIT), 1);
	/* Rewriting the count re-arms it. */
	program(h, 0x30, PIT_CH0, 1193);
	hx_clock_advance(h, 2 * MS);
	assert_int_equal(hx_irq_edges(h, PC_IRQ_PIT), 2);
	/* Mode 4 strobes once too. */
	program(h, 0x38, PIT_CH0, 1193);
	hx_clock_advance(h, 5 * MS);
	assert_int_equal(hx_irq_edges(h, PC_IRQ_PIT), 3);
	harness_free(h);
}

/* Linux's TSC calibration: gate 2 high through port 0x61, channel 2 mode 0,
 * spin on OUT2.  OUT2 must rise when the count reaches 0: N+1 PIT clocks
 * after the count write (the CE loads on the first clock). */
static void test_ch2_mode0_out2_exact(void **state)
{
	struct harness *h = new_pit(NULL);
	const uint16_t n = 1193;

	hx_outb(h, PC_PORT61, (hx_inb(h, PC_PORT61) & ~0x02) | 0x01);
	program(h, 0xb0, PIT_CH2, n); /* ch2, lo/hi, mode 0, binary */
	assert_false(out2(h));
	hx_clock_advance(h, ticks_ns(n)); /* N clocks: count is at 1 */
	assert_false(out2(h));
	hx_clock_advance(h, ticks_ns(n + 1) - ticks_ns(n));
	assert_true(out2(h));
	/* OUT2 stays high; the counter keeps wrapping below zero. */
	hx_clock_advance(h, 100 * MS);
	assert_true(out2(h));
	/* No IRQ from channel 2. */
	assert_int_equal(hx_irq_edges(h, PC_IRQ_PIT), 0);

	/* A new count drops OUT2 again. */
	program(h, 0xb0, PIT_CH2, n);
	assert_false(out2(h));
	harness_free(h);
}

/* Mode 0 with gate 2 low: nothing counts until the gate rises; then OUT2
 * rises N clocks later.  Dropping the gate pauses the count. */
static void test_ch2_gate(void **state)
{
	struct harness *h = new_pit(NULL);

	gate2(h, false);
	program(h, 0xb0, PIT_CH2, 1000);
	hx_clock_advance(h, 5 * MS);
	assert_false(out2(h));
	assert_int_equal(latch_ch2(h), 1000);

	gate2(h, true);
	hx_clock_advance(h, 400 * US); /* ~477 clocks */
	uint16_t a = latch_ch2(h);
	assert_in_range(a, 520, 526);
	gate2(h, false);
	hx_clock_advance(h, 10 * MS);
	assert_int_equal(latch_ch2(h), a); /* paused */
	assert_false(out2(h));
	gate2(h, true);
	hx_clock_advance(h, ticks_ns(a) - 1000);
	assert_false(out2(h));
	hx_clock_advance(h, 2000);
	assert_true(out2(h));
	harness_free(h);
}

/* Mode 2 on channel 2: a gate rising edge reloads the counter; gate low
 * forces OUT high. */
static void test_ch2_mode2_gate_reload(void **state)
{
	struct harness *h = new_pit(NULL);

	gate2(h, true);
	program(h, 0xb4, PIT_CH2, 10000);
	hx_clock_advance(h, 3 * MS); /* ~3580 clocks */
	assert_in_range(latch_ch2(h), 6400, 6440);
	gate2(h, false);
	assert_true(out2(h));
	gate2(h, true);
	hx_clock_advance(h, 10 * US);
	assert_in_range(latch_ch2(h), 9985, 10000);
	harness_free(h);
}

/* Mode 2: OUT2 is high except for the one clock where the count is 1,
 * once per period. */
static void test_ch2_mode2_out_pulse(void **state)
{
	struct harness *h = new_pit(NULL);
	const uint64_t n = 10000;

	gate2(h, true);
	program(h, 0xb4, PIT_CH2, (uint16_t)n);
	/* Count reaches 1 after n-1 decrements, i.e. n clocks after the
	 * write (the first clock loads). */
	hx_clock_advance(h, ticks_ns(n) - 1);
	assert_true(out2(h));
	hx_clock_advance(h, 400);
	assert_false(out2(h));
	hx_clock_advance(h, ticks_ns(n + 1) - ticks_ns(n));
	assert_true(out2(h));
	/* Same one period later. */
	hx_clock_advance(h, ticks_ns(2 * n) - ticks_ns(n + 1) - 200);
	assert_false(out2(h));
	hx_clock_advance(h, 1000);
	assert_true(out2(h));
	harness_free(h);
}

/* Modes 1 and 5 count only after a gate rising edge (the trigger). */
static void test_ch2_gate_triggered_modes(void **state)
{
	struct harness *h = new_pit(NULL);

	/* Mode 1, hardware retriggerable one-shot: OUT low for N clocks. */
	gate2(h, false);
	program(h, 0xb2, PIT_CH2, 100);
	hx_clock_advance(h, 1 * MS);
	assert_true(out2(h)); /* not triggered */
	gate2(h, true);
	hx_clock_advance(h, 10 * US);
	assert_false(out2(h));
	hx_clock_advance(h, ticks_ns(101) - 10 * US);
	assert_true(out2(h));
	/* Retrigger (the gate going low does not stop a one-shot). */
	gate2(h, false);
	gate2(h, true);
	hx_clock_advance(h, 50 * US);
	gate2(h, false);
	assert_false(out2(h));
	hx_clock_advance(h, 100 * US);
	assert_true(out2(h));

	/* Mode 5, hardware strobe: OUT low for the one clock at count 0. */
	program(h, 0xba, PIT_CH2, 100);
	hx_clock_advance(h, 1 * MS);
	assert_true(out2(h));
	gate2(h, true);
	hx_clock_advance(h, ticks_ns(101) - 1);
	assert_true(out2(h));
	hx_clock_advance(h, 400);
	assert_false(out2(h));
	hx_clock_advance(h, 1000);
	assert_true(out2(h));
	harness_free(h);
}

/* Mode 3: OUT2 is a square wave, high for the first half period. */
static void test_ch2_mode3_square(void **state)
{
	struct harness *h = new_pit(NULL);
	int highs = 0, lows = 0, changes = 0;
	bool last;

	gate2(h, true);
	program(h, 0xb6, PIT_CH2, 1000); /* 838 us period */
	hx_clock_advance(h, 200 * US);
	assert_true(out2(h));
	hx_clock_advance(h, 500 * US);
	assert_false(out2(h));
	last = out2(h);
	for (int i = 0; i < 838; i++) {
		bool o;
		hx_clock_advance(h, 10 * US);
		o = out2(h);
		highs += o;
		lows += !o;
		changes += o != last;
		last = o;
	}
	assert_in_range(highs, 410, 428);
	assert_in_range(lows, 410, 428);
	assert_in_range(changes, 19, 21);
	/* The counter decrements by two. */
	uint16_t a = latch_ch2(h);
	hx_clock_advance(h, ticks_ns(100));
	uint16_t b = latch_ch2(h);
	assert_true(a % 2 == 0 && b % 2 == 0);
	assert_in_range((a - b + 1000) % 1000, 198, 202);
	harness_free(h);
}

/* Counter latch and read-back: latched values hold still, live values
 * decrease with time at 1.193182 MHz. */
static void test_latch_and_readback(void **state)
{
	struct harness *h = new_pit(NULL);

	gate2(h, true);
	program(h, 0xb0, PIT_CH2, 50000);
	hx_clock_advance(h, 100 * US);

	hx_outb(h, PIT_CMD, 0x80);          /* latch ch2 */
	hx_clock_advance(h, 1 * MS);
	hx_outb(h, PIT_CMD, 0x80);          /* ignored: already latched */
	uint16_t v1 = read_word(h, PIT_CH2); /* value at the first latch */
	assert_in_range(v1, 50000 - 121, 50000 - 117);
	uint16_t v2 = latch_ch2(h);
	assert_in_range(v1 - v2, 1192, 1194);

	/* Read-back, count only (0xd8: COUNT=0, STATUS=1, CNT2). */
	hx_clock_advance(h, 1 * MS);
	hx_outb(h, PIT_CMD, 0xd8);
	hx_clock_advance(h, 1 * MS);
	uint16_t v3 = read_word(h, PIT_CH2);
	assert_in_range(v2 - v3, 1192, 1194);

	/* Read-back of status only (0xe8). */
	hx_outb(h, PIT_CMD, 0xe8);
	assert_int_equal(hx_inb(h, PIT_CH2), 0x30); /* OUT 0, count valid */

	/* Both: status first, then the count. */
	hx_outb(h, PIT_CMD, 0xc8);
	hx_clock_advance(h, 1 * MS);
	assert_int_equal(hx_inb(h, PIT_CH2), 0x30);
	uint16_t v4 = read_word(h, PIT_CH2);
	assert_in_range(v3 - v4, 1192, 1194);

	/* Live (unlatched) reads decrease too. */
	uint16_t l1 = read_word(h, PIT_CH2);
	hx_clock_advance(h, 1 * MS);
	uint16_t l2 = read_word(h, PIT_CH2);
	assert_in_range(l1 - l2, 1192, 1194);
	harness_free(h);
}

/* Status byte: mode bits exactly as written, NULL COUNT until the count is
 * loaded, OUT. */
static void test_status_byte(void **state)
{
	struct harness *h = new_pit(NULL);

	gate2(h, true);
	hx_outb(h, PIT_CMD, 0xbd); /* ch2, lo/hi, mode "6" (= 2 in 8254 terms, bits kept), BCD */
	hx_outb(h, PIT_CMD, 0xe8);
	assert_int_equal(hx_inb(h, PIT_CH2), 0x80 | 0x40 | 0x3d);

	hx_outb(h, PIT_CMD, 0xb0);
	hx_outb(h, PIT_CMD, 0xe8);
	assert_int_equal(hx_inb(h, PIT_CH2), 0x40 | 0x30); /* mode 0: OUT low */
	hx_outb(h, PIT_CH2, 10);
	hx_outb(h, PIT_CH2, 0);
	hx_outb(h, PIT_CMD, 0xe8);
	assert_int_equal(hx_inb(h, PIT_CH2), 0x40 | 0x30); /* not loaded yet */
	hx_clock_advance(h, 1 * US);
	hx_outb(h, PIT_CMD, 0xe8);
	assert_int_equal(hx_inb(h, PIT_CH2), 0x30);
	hx_clock_advance(h, 20 * US);
	hx_outb(h, PIT_CMD, 0xe8);
	assert_int_equal(hx_inb(h, PIT_CH2), 0x80 | 0x30);
	/* A second status latch before reading is ignored. */
	hx_outb(h, PIT_CMD, 0xb0);
	hx_outb(h, PIT_CMD, 0xe8);
	hx_outb(h, PIT_CH2, 10);
	hx_outb(h, PIT_CH2, 0);
	hx_outb(h, PIT_CMD, 0xe8);
	assert_int_equal(hx_inb(h, PIT_CH2), 0x40 | 0x30);
	harness_free(h);
}

/* Access modes: LSB only, MSB only, LSB then MSB; the control word resets
 * the byte flip-flops. */
static void test_lobyte_hibyte(void **state)
{
	struct harness *h = new_pit(NULL);

	gate2(h, false); /* frozen counter: reads are exact */

	hx_outb(h, PIT_CMD, 0x90); /* ch2, LSB only, mode 0 */
	hx_outb(h, PIT_CH2, 0x34);
	assert_int_equal(hx_inb(h, PIT_CH2), 0x34);
	assert_int_equal(hx_inb(h, PIT_CH2), 0x34);

	hx_outb(h, PIT_CMD, 0xa0); /* ch2, MSB only */
	hx_outb(h, PIT_CH2, 0x12);
	assert_int_equal(hx_inb(h, PIT_CH2), 0x12);
	hx_outb(h, PIT_CMD, 0x90);
	hx_outb(h, PIT_CH2, 0x77);
	hx_outb(h, PIT_CMD, 0xa0);
	hx_outb(h, PIT_CH2, 0x12);
	hx_outb(h, PIT_CMD, 0x80);
	hx_outb(h, PIT_CMD, 0x90); /* reprogramming drops the latch */
	hx_outb(h, PIT_CH2, 0x99);
	assert_int_equal(hx_inb(h, PIT_CH2), 0x99);

	hx_outb(h, PIT_CMD, 0xb0); /* LSB then MSB */
	hx_outb(h, PIT_CH2, 0x78);
	hx_outb(h, PIT_CH2, 0x56);
	assert_int_equal(hx_inb(h, PIT_CH2), 0x78);
	assert_int_equal(hx_inb(h, PIT_CH2), 0x56);
	assert_int_equal(hx_inb(h, PIT_CH2), 0x78);
	assert_int_equal(hx_inb(h, PIT_CH2), 0x56);

	/* A half-written word is forgotten by a new control word. */
	hx_outb(h, PIT_CMD, 0xb0);
	hx_outb(h, PIT_CH2, 0xaa);
	hx_outb(h, PIT_CMD, 0xb0);
	hx_outb(h, PIT_CH2, 0x11);
	hx_outb(h, PIT_CH2, 0x22);
	assert_int_equal(read_word(h, PIT_CH2), 0x2211);

	/* Mode 0: the first byte of a new count drops OUT at once. */
	gate2(h, true);
	program(h, 0xb0, PIT_CH2, 2);
	hx_clock_advance(h, 10 * US);
	assert_true(out2(h));
	hx_outb(h, PIT_CH2, 0x00);
	assert_false(out2(h));
	hx_outb(h, PIT_CH2, 0x10);
	hx_clock_advance(h, 3 * MS);
	assert_false(out2(h));
	hx_clock_advance(h, 1 * MS);
	assert_true(out2(h));

	/* Count 0 in word mode is 65536: reads 0 while frozen. */
	gate2(h, false);
	program(h, 0xb0, PIT_CH2, 0);
	assert_int_equal(latch_ch2(h), 0);
	gate2(h, true);
	hx_clock_advance(h, 10 * US);
	assert_in_range(latch_ch2(h), 65536 - 13, 65535);
	harness_free(h);
}

/* BCD: the count is decimal, and so is what reads back. */
static void test_bcd(void **state)
{
	struct harness *h = new_pit(NULL);

	gate2(h, false);
	program(h, 0xb1, PIT_CH2, 0x1000); /* 1000 decimal */
	assert_int_equal(latch_ch2(h), 0x1000);
	gate2(h, true);
	hx_clock_advance(h, 100 * US); /* ~119 clocks */
	uint16_t v = latch_ch2(h);
	assert_in_range(v, 0x0880, 0x0882);
	unsigned dec = (v >> 8 & 0xf) * 100 + (v >> 4 & 0xf) * 10 + (v & 0xf);
	hx_clock_advance(h, ticks_ns(dec) - 1000);
	assert_false(out2(h));
	hx_clock_advance(h, 2000);
	assert_true(out2(h));
	/* 0 is 10000 in BCD; garbage digits do not break it. */
	program(h, 0xb1, PIT_CH2, 0xffff);
	hx_clock_advance(h, 1 * MS);
	v = latch_ch2(h);
	for (int i = 0; i < 16; i += 4)
		assert_true(((v >> i) & 0xf) <= 9);
	harness_free(h);
}

/* Port 0x61: gate and speaker bits read back, refresh toggles, bits 6-7
 * read 0. */
static void test_port61(void **state)
{
	struct harness *h = new_pit(NULL);
	int ones = 0, zeros = 0;

	hx_outb(h, PC_PORT61, 0xff);
	assert_int_equal(hx_inb(h, PC_PORT61) & 0xcf, 0x0f);
	hx_outb(h, PC_PORT61, 0x02);
	assert_int_equal(hx_inb(h, PC_PORT61) & 0xcf, 0x02);
	for (int i = 0; i < 100; i++) {
		if (hx_inb(h, PC_PORT61) & 0x10)
			ones++;
		else
			zeros++;
		hx_clock_advance(h, 3 * US);
	}
	assert_true(ones > 20 && zeros > 20);
	harness_free(h);
}

static void test_save_load(void **state)
{
	struct harness *a = new_pit(NULL), *b = new_pit(NULL);
	struct state_buf buf = { 0 };

	program(a, 0x34, PIT_CH0, 1193);
	gate2(a, true);
	hx_outb(a, PC_PORT61, hx_inb(a, PC_PORT61) | 0x02);
	program(a, 0xb0, PIT_CH2, 30000);
	program(a, 0x74, 0x41, 18); /* ch1: refresh rate, mode 2 */
	hx_clock_advance(a, 7 * US);
	hx_outb(a, PIT_CMD, 0x40); /* ch1 latched but not read */
	hx_clock_advance(a, 5300 * US);
	hx_irq_clear_edges(a);

	assert_int_equal(hx_save(a, "pit", &buf), 0);
	/* Restore into a machine whose clock is 7 s later. */
	hx_clock_advance(b, 7000 * MS);
	assert_int_equal(hx_load(b, "pit", buf.data, buf.len), 0);

	assert_int_equal(hx_inb(b, PC_PORT61) & 0x2f,
			 hx_inb(a, PC_PORT61) & 0x2f);
	int d = latch_ch2(a) - latch_ch2(b);
	assert_in_range(d + 1, 0, 2);
	hx_clock_advance(a, 10 * MS);
	hx_clock_advance(b, 10 * MS);
	d = latch_ch2(a) - latch_ch2(b);
	assert_in_range(d + 1, 0, 2);
	assert_in_range(hx_irq_edges(b, PC_IRQ_PIT), 9, 11);
	assert_int_equal(hx_irq_edges(b, PC_IRQ_PIT),
			 hx_irq_edges(a, PC_IRQ_PIT));
	assert_int_equal(read_word(b, 0x41), read_word(a, 0x41));
	/* OUT2 rises at the same moment on both. */
	hx_clock_advance(a, 10 * MS);
	hx_clock_advance(b, 10 * MS);
	assert_true(out2(a) && out2(b));

	/* Truncated, wrong version and invalid fields are refused. */
	assert_int_equal(hx_load(b, "pit", buf.data, buf.len - 1), -EINVAL);
	uint8_t *bad = malloc(buf.len);
	assert_non_null(bad);
	memcpy(bad, buf.data, buf.len);
	bad[0] = 99;
	assert_int_equal(hx_load(b, "pit", bad, buf.len), -EINVAL);
	memcpy(bad, buf.data, buf.len);
	memset(bad + 4, 0, 4); /* channel 0 count register = 0 */
	assert_int_equal(hx_load(b, "pit", bad, buf.len), -EINVAL);
	memcpy(bad, buf.data, buf.len);
	bad[1] = 0x00; /* channel 0 control with access mode "latch" */
	assert_int_equal(hx_load(b, "pit", bad, buf.len), -EINVAL);
	free(bad);
	/* The device still works after refused loads. */
	assert_int_equal(hx_load(b, "pit", buf.data, buf.len), 0);
	state_buf_free(&buf);
	harness_free(a);
	harness_free(b);
}

/* Reset returns to the power-on state: no IRQ0, OUT2 low, gate 2 low. */
static void test_reset(void **state)
{
	struct harness *h = new_pit(NULL);

	program(h, 0x34, PIT_CH0, 1193);
	gate2(h, true);
	vm_reset_devices(&h->vm);
	hx_irq_clear_edges(h);
	hx_clock_advance(h, 10 * MS);
	assert_int_equal(hx_irq_edges(h, PC_IRQ_PIT), 0);
	assert_int_equal(hx_inb(h, PC_PORT61) & 0x2f, 0);
	harness_free(h);
}

/* A hostile guest writing random values to every port, with random time
 * steps, gets a broken timer but never a crash, a hang or an IRQ flood. */
static void test_hostile_fuzz(void **state)
{
	struct harness *h = new_pit(NULL);
	uint64_t x = 0x9e3779b97f4a7c15ull, total = 0;
	unsigned writes = 0;

	for (int i = 0; i < 200000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		unsigned port = (x >> 8) % 5;
		uint16_t p = port == 4 ? PC_PORT61 : (uint16_t)(PIT_CH0 + port);
		if (x & 1) {
			hx_outb(h, p, (uint8_t)(x >> 16));
			writes += port == 0 || port == 3;
		} else {
			(void)hx_inb(h, p);
		}
		if ((x >> 32) % 16 == 0) {
			uint64_t step = (x >> 40) % (2 * MS);
			hx_clock_advance(h, step);
			total += step;
		}
	}
	assert_true(hx_irq_edges(h, PC_IRQ_PIT) <=
		    total / PIT_MIN_IRQ_PERIOD_NS + writes + 1);
	/* Wide accesses are split into bytes; nothing breaks. */
	hx_outl(h, PIT_CH0, 0xffffffff);
	(void)hx_inl(h, PIT_CH0);
	hx_clock_advance(h, 100 * MS);
	harness_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mode2_periodic_irq0),
		cmocka_unit_test(test_mode3_periodic_irq0),
		cmocka_unit_test(test_reload_zero_is_65536),
		cmocka_unit_test(test_tiny_period_clamped),
		cmocka_unit_test(test_mode0_oneshot_irq0),
		cmocka_unit_test(test_ch2_mode0_out2_exact),
		cmocka_unit_test(test_ch2_gate),
		cmocka_unit_test(test_ch2_mode2_gate_reload),
		cmocka_unit_test(test_ch2_mode2_out_pulse),
		cmocka_unit_test(test_ch2_gate_triggered_modes),
		cmocka_unit_test(test_ch2_mode3_square),
		cmocka_unit_test(test_latch_and_readback),
		cmocka_unit_test(test_status_byte),
		cmocka_unit_test(test_lobyte_hibyte),
		cmocka_unit_test(test_bcd),
		cmocka_unit_test(test_port61),
		cmocka_unit_test(test_save_load),
		cmocka_unit_test(test_reset),
		cmocka_unit_test(test_hostile_fuzz),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
