/*
 * test_pic.c - the cascaded 8259A pair and ELCR through the harness: the
 * guest programs them through ports, devices drive lines with
 * pic_set_irq(), the "CPU" runs INTA cycles with pic_intack() and watches
 * the INTR callback.
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
#include "hw/pic.h"

#define M_CMD 0x20
#define M_DATA 0x21
#define S_CMD 0xa0
#define S_DATA 0xa1

struct intr_rec {
	bool level;
	unsigned rises;
};

struct fixture {
	struct harness *h;
	struct pic *pic;
	struct intr_rec rec;
};

static void intr_cb(void *opaque, bool level)
{
	struct intr_rec *r = opaque;

	if (level && !r->level)
		r->rises++;
	r->level = level;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->h = harness_new(1 << 20);
	assert_int_equal(pic_create(&f->h->vm, intr_cb, &f->rec, &f->pic), 0);
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

/* What Linux's init_8259A() writes (auto-EOI off), then unmask all. */
static void linux_init(struct harness *h, uint8_t master_icw4)
{
	hx_outb(h, M_DATA, 0xff);
	hx_outb(h, S_DATA, 0xff);
	hx_outb(h, M_CMD, 0x11);  /* ICW1: edge, cascade, ICW4 needed */
	hx_outb(h, M_DATA, 0x20); /* ICW2: vectors 0x20-0x27 */
	hx_outb(h, M_DATA, 0x04); /* ICW3: slave on IR2 */
	hx_outb(h, M_DATA, master_icw4);
	hx_outb(h, S_CMD, 0x11);
	hx_outb(h, S_DATA, 0x28); /* vectors 0x28-0x2f */
	hx_outb(h, S_DATA, 0x02); /* slave ID 2 */
	hx_outb(h, S_DATA, 0x01);
	hx_outb(h, M_DATA, 0x00);
	hx_outb(h, S_DATA, 0x00);
}

static uint8_t read_isr(struct harness *h, uint16_t port)
{
	hx_outb(h, port, 0x0b);
	uint8_t v = hx_inb(h, port);
	hx_outb(h, port, 0x0a);
	return v;
}

static uint8_t read_irr(struct harness *h, uint16_t port)
{
	hx_outb(h, port, 0x0a);
	return hx_inb(h, port);
}

static void edge(struct pic *pic, unsigned irq)
{
	pic_set_irq(pic, irq, true);
	pic_set_irq(pic, irq, false);
}

static void test_linux_init_and_intack(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	hx_outb(h, M_DATA, 0xff);
	hx_outb(h, M_CMD, 0x11);
	assert_int_equal(hx_inb(h, M_DATA), 0x00); /* ICW1 clears IMR */
	hx_outb(h, M_DATA, 0x20);
	hx_outb(h, M_DATA, 0x04);
	hx_outb(h, M_DATA, 0x01);
	hx_outb(h, M_DATA, 0xfb);
	assert_int_equal(hx_inb(h, M_DATA), 0xfb);
	linux_init(h, 0x01);

	assert_false(pic_intr_pending(f->pic));
	edge(f->pic, 1);
	assert_true(pic_intr_pending(f->pic));
	assert_true(f->rec.level);
	assert_int_equal(read_irr(h, M_CMD), 0x02);
	assert_int_equal(pic_intack(f->pic), 0x21);
	assert_false(f->rec.level);
	assert_int_equal(read_irr(h, M_CMD), 0x00);
	assert_int_equal(read_isr(h, M_CMD), 0x02);
	hx_outb(h, M_CMD, 0x20); /* non-specific EOI */
	assert_int_equal(read_isr(h, M_CMD), 0x00);
	assert_false(pic_intr_pending(f->pic));
	assert_int_equal(f->rec.rises, 1);
}

static void test_mask_unmask(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	linux_init(h, 0x01);
	hx_outb(h, M_DATA, 0x08);
	edge(f->pic, 3);
	assert_false(pic_intr_pending(f->pic));
	assert_int_equal(read_irr(h, M_CMD), 0x08); /* latched while masked */
	hx_outb(h, M_DATA, 0x00);
	assert_true(pic_intr_pending(f->pic));
	assert_int_equal(pic_intack(f->pic), 0x23);

	/* Masking the slave's line, and the cascade input on the master. */
	hx_outb(h, M_CMD, 0x20);
	hx_outb(h, S_DATA, 0x01);
	edge(f->pic, 8);
	assert_false(pic_intr_pending(f->pic));
	hx_outb(h, S_DATA, 0x00);
	assert_true(pic_intr_pending(f->pic));
	hx_outb(h, M_DATA, 0x04);
	assert_false(pic_intr_pending(f->pic));
	hx_outb(h, M_DATA, 0x00);
	assert_int_equal(pic_intack(f->pic), 0x28);
}

static void test_priorities(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	linux_init(h, 0x01);
	edge(f->pic, 5);
	edge(f->pic, 3);
	assert_int_equal(pic_intack(f->pic), 0x23);
	/* 5 is lower than the in-service 3: INTR stays low. */
	assert_false(pic_intr_pending(f->pic));
	hx_outb(h, M_CMD, 0x20);
	assert_true(pic_intr_pending(f->pic));
	assert_int_equal(pic_intack(f->pic), 0x25);
	/* A higher level nests over a lower one in service. */
	edge(f->pic, 4);
	assert_true(pic_intr_pending(f->pic));
	assert_int_equal(pic_intack(f->pic), 0x24);
	assert_int_equal(read_isr(h, M_CMD), 0x30);
	/* Non-specific EOI retires the highest (4), then 5. */
	hx_outb(h, M_CMD, 0x20);
	assert_int_equal(read_isr(h, M_CMD), 0x20);
	hx_outb(h, M_CMD, 0x65); /* specific EOI, level 5 */
	assert_int_equal(read_isr(h, M_CMD), 0x00);
	/* Slave requests rank at IR2: above 3, below 1. */
	edge(f->pic, 3);
	edge(f->pic, 8);
	edge(f->pic, 1);
	assert_int_equal(pic_intack(f->pic), 0x21);
	hx_outb(h, M_CMD, 0x20);
	assert_int_equal(pic_intack(f->pic), 0x28);
	hx_outb(h, S_CMD, 0x20);
	hx_outb(h, M_CMD, 0x20);
	assert_int_equal(pic_intack(f->pic), 0x23);
}

static void test_cascade(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	linux_init(h, 0x01);
	edge(f->pic, 10);
	assert_true(pic_intr_pending(f->pic));
	assert_int_equal(pic_intack(f->pic), 0x2a);
	assert_int_equal(read_isr(h, M_CMD), 0x04);
	assert_int_equal(read_isr(h, S_CMD), 0x04);
	/* Linux: specific EOI to the slave, then to master IR2. */
	hx_outb(h, S_CMD, 0x62);
	hx_outb(h, M_CMD, 0x62);
	assert_int_equal(read_isr(h, M_CMD), 0x00);
	assert_int_equal(read_isr(h, S_CMD), 0x00);

	/* Slave priorities. */
	edge(f->pic, 12);
	edge(f->pic, 9);
	assert_int_equal(pic_intack(f->pic), 0x29);
	assert_false(pic_intr_pending(f->pic)); /* IR2 in service */
	hx_outb(h, S_CMD, 0x20);
	hx_outb(h, M_CMD, 0x20);
	assert_true(pic_intr_pending(f->pic));
	assert_int_equal(pic_intack(f->pic), 0x2c);
}

static void test_edge_vs_level(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	linux_init(h, 0x01);
	/* IRQ 0, 1, 2, 8 and 13 cannot be level-triggered. */
	hx_outb(h, PC_ELCR_PORT, 0xff);
	hx_outb(h, PC_ELCR_PORT + 1, 0xff);
	assert_int_equal(hx_inb(h, PC_ELCR_PORT), 0xf8);
	assert_int_equal(hx_inb(h, PC_ELCR_PORT + 1), 0xde);
	hx_outw(h, PC_ELCR_PORT, 0);
	assert_int_equal(hx_inw(h, PC_ELCR_PORT), 0);

	/* Edge: one interrupt per rising edge, held line or not. */
	pic_set_irq(f->pic, 5, true);
	assert_int_equal(pic_intack(f->pic), 0x25);
	hx_outb(h, M_CMD, 0x20);
	assert_false(pic_intr_pending(f->pic));
	pic_set_irq(f->pic, 5, true); /* no edge */
	assert_false(pic_intr_pending(f->pic));
	pic_set_irq(f->pic, 5, false);
	pic_set_irq(f->pic, 5, true);
	assert_true(pic_intr_pending(f->pic));
	assert_int_equal(pic_intack(f->pic), 0x25);
	hx_outb(h, M_CMD, 0x20);
	pic_set_irq(f->pic, 5, false);
	/* An edge stays latched after the line drops. */
	edge(f->pic, 6);
	assert_true(pic_intr_pending(f->pic));
	assert_int_equal(pic_intack(f->pic), 0x26);
	hx_outb(h, M_CMD, 0x20);

	/* Level: requests again after EOI while the line is high. */
	hx_outb(h, PC_ELCR_PORT, 0x20);
	pic_set_irq(f->pic, 5, true);
	assert_int_equal(pic_intack(f->pic), 0x25);
	assert_false(pic_intr_pending(f->pic));
	hx_outb(h, M_CMD, 0x20);
	assert_true(pic_intr_pending(f->pic));
	assert_int_equal(pic_intack(f->pic), 0x25);
	pic_set_irq(f->pic, 5, false);
	hx_outb(h, M_CMD, 0x20);
	assert_false(pic_intr_pending(f->pic));
	/* Switching a high line to level makes it request. */
	hx_outb(h, PC_ELCR_PORT, 0x00);
	pic_set_irq(f->pic, 7, true);
	assert_int_equal(pic_intack(f->pic), 0x27);
	hx_outb(h, M_CMD, 0x20);
	assert_false(pic_intr_pending(f->pic));
	hx_outb(h, PC_ELCR_PORT, 0x80);
	assert_true(pic_intr_pending(f->pic));
	/* ICW1 LTIM makes every input level-triggered. */
	hx_outb(h, PC_ELCR_PORT, 0x00);
	pic_set_irq(f->pic, 7, false);
	hx_outb(h, M_CMD, 0x19);
	hx_outb(h, M_DATA, 0x20);
	hx_outb(h, M_DATA, 0x04);
	hx_outb(h, M_DATA, 0x01);
	pic_set_irq(f->pic, 3, true);
	assert_int_equal(pic_intack(f->pic), 0x23);
	hx_outb(h, M_CMD, 0x20);
	assert_true(pic_intr_pending(f->pic));
}

static void test_spurious_irq7(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	linux_init(h, 0x01);
	assert_int_equal(pic_intack(f->pic), 0x27);
	assert_int_equal(read_isr(h, M_CMD), 0x00); /* no ISR bit for it */

	/* A level request withdrawn before INTA. */
	hx_outb(h, PC_ELCR_PORT, 0x20);
	pic_set_irq(f->pic, 5, true);
	assert_true(f->rec.level);
	pic_set_irq(f->pic, 5, false);
	assert_false(f->rec.level);
	assert_int_equal(pic_intack(f->pic), 0x27);
	assert_int_equal(read_isr(h, M_CMD), 0x00);
}

static void test_spurious_irq15(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	linux_init(h, 0x01);
	hx_outb(h, PC_ELCR_PORT + 1, 0x04); /* IRQ 10 level */
	pic_set_irq(f->pic, 10, true);
	pic_set_irq(f->pic, 10, false);
	/* The master latched IR2; the slave has nothing any more. */
	assert_int_equal(pic_intack(f->pic), 0x2f);
	assert_int_equal(read_isr(h, M_CMD), 0x04);
	assert_int_equal(read_isr(h, S_CMD), 0x00);
	hx_outb(h, M_CMD, 0x20);
	assert_int_equal(read_isr(h, M_CMD), 0x00);
}

static void test_auto_eoi_and_rotation(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	linux_init(h, 0x03); /* master auto-EOI */
	edge(f->pic, 1);
	assert_int_equal(pic_intack(f->pic), 0x21);
	assert_int_equal(read_isr(h, M_CMD), 0x00);
	edge(f->pic, 3);
	assert_int_equal(pic_intack(f->pic), 0x23); /* nothing blocks it */

	/* Rotate in auto-EOI mode: a served level becomes the lowest. */
	hx_outb(h, M_CMD, 0x80);
	edge(f->pic, 1);
	assert_int_equal(pic_intack(f->pic), 0x21);
	edge(f->pic, 1);
	edge(f->pic, 4);
	assert_int_equal(pic_intack(f->pic), 0x24);
	hx_outb(h, M_CMD, 0x00);

	linux_init(h, 0x01);
	/* Set priority: IR3 lowest, so IR4 highest. */
	hx_outb(h, M_CMD, 0xc3);
	edge(f->pic, 1);
	edge(f->pic, 5);
	assert_int_equal(pic_intack(f->pic), 0x25);
	/* Rotate on non-specific EOI: 5 becomes lowest, 6 highest. */
	hx_outb(h, M_CMD, 0xa0);
	edge(f->pic, 5);
	assert_int_equal(pic_intack(f->pic), 0x21);
	hx_outb(h, M_CMD, 0x20);
	assert_int_equal(pic_intack(f->pic), 0x25);
	/* Rotate on specific EOI. */
	hx_outb(h, M_CMD, 0xe5);
	assert_int_equal(read_isr(h, M_CMD), 0x00);
}

static void test_poll_mode(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	linux_init(h, 0x01);
	hx_outb(h, M_CMD, 0x0c);
	assert_int_equal(hx_inb(h, M_CMD), 0x00); /* nothing pending */
	edge(f->pic, 4);
	hx_outb(h, M_CMD, 0x0c);
	assert_int_equal(hx_inb(h, M_CMD), 0x84);
	assert_int_equal(read_isr(h, M_CMD), 0x10);
	assert_false(pic_intr_pending(f->pic));
	/* The poll is one-shot: the next read is IRR again. */
	edge(f->pic, 6);
	hx_outb(h, M_CMD, 0x0a);
	hx_outb(h, M_CMD, 0x0c);
	assert_int_equal(hx_inb(h, M_CMD), 0x00); /* 6 is below 4 */
	assert_int_equal(hx_inb(h, M_CMD), 0x40);
}

static void test_special_mask_mode(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	linux_init(h, 0x01);
	edge(f->pic, 1);
	assert_int_equal(pic_intack(f->pic), 0x21);
	edge(f->pic, 5);
	assert_false(pic_intr_pending(f->pic));
	hx_outb(h, M_CMD, 0x68);  /* set special mask mode */
	hx_outb(h, M_DATA, 0x02); /* mask the level in service */
	assert_true(pic_intr_pending(f->pic));
	assert_int_equal(pic_intack(f->pic), 0x25);
	hx_outb(h, M_CMD, 0x48); /* reset special mask mode */
	hx_outb(h, M_DATA, 0x00);
	hx_outb(h, M_CMD, 0x65);
	hx_outb(h, M_CMD, 0x61);
	assert_int_equal(read_isr(h, M_CMD), 0x00);
}

/* After ICW1 an input that is already high must go low, then high. */
static void test_icw1_edge_sense_reset(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	linux_init(h, 0x01);
	hx_outb(h, M_DATA, 0xff);
	pic_set_irq(f->pic, 4, true);
	assert_int_equal(read_irr(h, M_CMD), 0x10);
	linux_init(h, 0x01);
	assert_int_equal(read_irr(h, M_CMD), 0x00);
	pic_set_irq(f->pic, 4, true);
	assert_false(pic_intr_pending(f->pic));
	pic_set_irq(f->pic, 4, false);
	pic_set_irq(f->pic, 4, true);
	assert_int_equal(pic_intack(f->pic), 0x24);
}

static void test_save_load(void **state)
{
	struct fixture *f = *state, g = { 0 };
	struct harness *h = f->h;
	struct state_buf buf = { 0 };

	linux_init(h, 0x01);
	hx_outb(h, PC_ELCR_PORT + 1, 0x02); /* IRQ 9 level */
	hx_outb(h, M_CMD, 0xc4);            /* IR5 highest */
	pic_set_irq(f->pic, 9, true);
	edge(f->pic, 6);
	edge(f->pic, 3);
	assert_int_equal(pic_intack(f->pic), 0x26);
	hx_outb(h, M_DATA, 0x08);
	hx_outb(h, S_DATA, 0x40);

	assert_int_equal(hx_save(h, "pic", &buf), 0);

	g.h = harness_new(1 << 20);
	assert_int_equal(pic_create(&g.h->vm, intr_cb, &g.rec, &g.pic), 0);
	assert_int_equal(hx_load(g.h, "pic", buf.data, buf.len), 0);
	assert_int_equal(g.rec.level, f->rec.level);
	uint16_t ports[] = { M_CMD, S_CMD };
	for (int i = 0; i < 2; i++) {
		assert_int_equal(read_isr(g.h, ports[i]), read_isr(h, ports[i]));
		assert_int_equal(read_irr(g.h, ports[i]), read_irr(h, ports[i]));
		assert_int_equal(hx_inb(g.h, ports[i] + 1),
				 hx_inb(h, ports[i] + 1));
	}
	assert_int_equal(hx_inw(g.h, PC_ELCR_PORT), 0x0200);
	/* Same future behaviour: the level line 9 (cascade) comes next,
	 * then, with 3 unmasked, 3. */
	for (int i = 0; i < 3; i++) {
		hx_outb(h, M_CMD, 0x20);
		hx_outb(g.h, M_CMD, 0x20);
		hx_outb(h, M_DATA, 0x00);
		hx_outb(g.h, M_DATA, 0x00);
		int v = pic_intack(f->pic);
		assert_int_equal(pic_intack(g.pic), v);
		hx_outb(h, S_CMD, 0x20);
		hx_outb(g.h, S_CMD, 0x20);
	}

	/* Validation. */
	assert_int_equal(hx_load(g.h, "pic", buf.data, buf.len - 1), -EINVAL);
	uint8_t *bad = malloc(buf.len);
	assert_non_null(bad);
	memcpy(bad, buf.data, buf.len);
	bad[1 + 9] = 7; /* master init_state */
	assert_int_equal(hx_load(g.h, "pic", bad, buf.len), -EINVAL);
	memcpy(bad, buf.data, buf.len);
	bad[1 + 4] = 0x01; /* master ELCR bit for IRQ 0 */
	assert_int_equal(hx_load(g.h, "pic", bad, buf.len), -EINVAL);
	memcpy(bad, buf.data, buf.len);
	bad[0] = 0;
	assert_int_equal(hx_load(g.h, "pic", bad, buf.len), -EINVAL);
	free(bad);
	state_buf_free(&buf);
	harness_free(g.h);
}

static void test_reset(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	linux_init(h, 0x01);
	hx_outb(h, PC_ELCR_PORT, 0x20);
	pic_set_irq(f->pic, 5, true);
	assert_true(pic_intr_pending(f->pic));
	vm_reset_devices(&h->vm);
	assert_false(pic_intr_pending(f->pic));
	assert_false(f->rec.level);
	assert_int_equal(hx_inb(h, PC_ELCR_PORT), 0);
	assert_int_equal(read_irr(h, M_CMD), 0);
}

static void test_hostile_fuzz(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;
	static const uint16_t ports[] = { M_CMD, M_DATA, S_CMD, S_DATA,
					  PC_ELCR_PORT, PC_ELCR_PORT + 1 };
	uint64_t x = 88172645463325252ull;

	for (int i = 0; i < 200000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		switch ((x >> 3) % 4) {
		case 0:
			hx_outb(h, ports[(x >> 8) % 6], (uint8_t)(x >> 16));
			break;
		case 1:
			(void)hx_inb(h, ports[(x >> 8) % 6]);
			break;
		case 2:
			pic_set_irq(f->pic, (x >> 8) % 20, (x >> 16) & 1);
			break;
		default: {
			int v = pic_intack(f->pic);
			assert_in_range(v, 0, 255);
			break;
		}
		}
		assert_int_equal(f->rec.level, pic_intr_pending(f->pic));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_linux_init_and_intack),
		T(test_mask_unmask),
		T(test_priorities),
		T(test_cascade),
		T(test_edge_vs_level),
		T(test_spurious_irq7),
		T(test_spurious_irq15),
		T(test_auto_eoi_and_rotation),
		T(test_poll_mode),
		T(test_special_mask_mode),
		T(test_icw1_edge_sense_reset),
		T(test_save_load),
		T(test_reset),
		T(test_hostile_fuzz),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
