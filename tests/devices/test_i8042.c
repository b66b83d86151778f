/*
 * test_i8042.c - the keyboard controller through the harness, playing
 * Linux's i8042, atkbd and psmouse drivers, boot code and a hostile guest.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "harness.h"
#include "hw/i8042.h"
#include "hw/pc.h"

#define DATA PC_I8042_DATA_PORT
#define CMD  PC_I8042_CMD_PORT

#define OBF  0x01
#define SYS  0x04
#define AUXB 0x20

static int setup(void **state)
{
	struct harness *h = harness_new(1 << 20);

	assert_int_equal(i8042_create(&h->vm, NULL), 0);
	*state = h;
	return 0;
}

static int teardown(void **state)
{
	harness_free(*state);
	return 0;
}

/* i8042_wait_read() + read: the next byte, which must be there now. */
static uint8_t read_byte(struct harness *h)
{
	assert_true(hx_inb(h, CMD) & OBF);
	return hx_inb(h, DATA);
}

static void assert_empty(struct harness *h)
{
	assert_false(hx_inb(h, CMD) & OBF);
}

/* i8042_command(): command, optional parameter, result bytes. */
static uint8_t command(struct harness *h, uint8_t c)
{
	hx_outb(h, CMD, c);
	return read_byte(h);
}

static void write_ccb(struct harness *h, uint8_t v)
{
	hx_outb(h, CMD, 0x60);
	hx_outb(h, DATA, v);
}

static void test_self_test_and_interface_tests(void **state)
{
	struct harness *h = *state;

	assert_empty(h);
	assert_int_equal(command(h, 0xaa), 0x55);
	assert_empty(h);
	assert_true(hx_inb(h, CMD) & SYS);
	assert_int_equal(command(h, 0xab), 0x00);
	assert_int_equal(command(h, 0xa9), 0x00);
	assert_int_equal(command(h, 0xa4), 0xf1);
	assert_int_equal(command(h, 0xe0), 0x00);
	/* Status bit 3: last write was a command; bit 4: not locked. */
	assert_int_equal(hx_inb(h, CMD) & 0x18, 0x18);
	hx_outb(h, DATA, 0xf4); /* a keyboard command */
	assert_int_equal(hx_inb(h, CMD) & 0x08, 0);
	assert_int_equal(read_byte(h), 0xfa);
}

static void test_command_byte(void **state)
{
	struct harness *h = *state;

	assert_int_equal(command(h, 0x20), 0x65); /* power-on value */
	write_ccb(h, 0x47);
	assert_int_equal(command(h, 0x20), 0x47);
	assert_true(hx_inb(h, CMD) & SYS);
	write_ccb(h, 0x43); /* SYS flag follows CCB bit 2 */
	assert_false(hx_inb(h, CMD) & SYS);

	/* Disable/enable keyboard and aux flip CCB bits 4 and 5. */
	hx_outb(h, CMD, 0xad);
	assert_int_equal(command(h, 0x20), 0x53);
	hx_outb(h, CMD, 0xae);
	hx_outb(h, CMD, 0xa7);
	assert_int_equal(command(h, 0x20), 0x63);
	hx_outb(h, CMD, 0xa8);
	assert_int_equal(command(h, 0x20), 0x43);

	/* Internal RAM bytes 1..31. */
	hx_outb(h, CMD, 0x65);
	hx_outb(h, DATA, 0x99);
	assert_int_equal(command(h, 0x25), 0x99);
	assert_int_equal(command(h, 0x20), 0x43);

	/* A new command cancels a pending parameter. */
	hx_outb(h, CMD, 0x60);
	hx_outb(h, CMD, 0xae);
	hx_outb(h, DATA, 0xf4); /* goes to the keyboard, not the CCB */
	assert_int_equal(read_byte(h), 0xfa);
	assert_int_equal(command(h, 0x20), 0x43);
}

static void test_keyboard_interface_gating(void **state)
{
	struct harness *h = *state;

	hx_outb(h, CMD, 0xad);
	hx_outb(h, DATA, 0xf4);
	assert_empty(h); /* held back while the interface is disabled */
	assert_false(hx_irq_level(h, PC_IRQ_KBD));
	hx_outb(h, CMD, 0xae);
	assert_true(hx_irq_level(h, PC_IRQ_KBD));
	assert_int_equal(read_byte(h), 0xfa);
	assert_false(hx_irq_level(h, PC_IRQ_KBD));
}

static void test_reset_line(void **state)
{
	struct harness *h = *state;

	hx_outb(h, CMD, 0xff); /* pulse nothing */
	hx_outb(h, CMD, 0xf1); /* pulse bits 1-3 only */
	hx_outb(h, CMD, 0xd1);
	hx_outb(h, DATA, 0xdf); /* A20 on, reset bit 1: nothing */
	assert_false(vm_stopping(&h->vm));
	assert_int_equal(h->vm.stop_reason, VM_RUNNING);
	hx_outb(h, CMD, 0xfe);
	assert_true(vm_stopping(&h->vm));
	assert_int_equal(h->vm.stop_reason, VM_STOP_RESET);
	assert_int_equal(h->vm.stop_value, 0);
}

static void test_reset_through_output_port(void **state)
{
	struct harness *h = *state;

	/* Read-modify-write of the output port with bit 0 cleared. */
	uint8_t out = command(h, 0xd0);
	assert_int_equal(out & 0x03, 0x03);
	hx_outb(h, CMD, 0xdd); /* A20 off */
	assert_int_equal(command(h, 0xd0) & 0x02, 0);
	hx_outb(h, CMD, 0xdf);
	assert_int_equal(command(h, 0xd0) & 0x02, 0x02);
	assert_false(vm_stopping(&h->vm));
	hx_outb(h, CMD, 0xd1);
	hx_outb(h, DATA, out & ~0x01);
	assert_int_equal(h->vm.stop_reason, VM_STOP_RESET);
}

static void test_keyboard_reset_and_irq(void **state)
{
	struct harness *h = *state;

	assert_int_equal(hx_irq_edges(h, PC_IRQ_KBD), 0);
	hx_outb(h, DATA, 0xff);
	assert_true(hx_irq_level(h, PC_IRQ_KBD));
	assert_int_equal(hx_irq_edges(h, PC_IRQ_KBD), 1);
	assert_int_equal(hx_inb(h, CMD) & (OBF | AUXB), OBF);
	assert_int_equal(hx_inb(h, DATA), 0xfa);
	/* The next byte is loaded at once, with a new edge. */
	assert_int_equal(hx_irq_edges(h, PC_IRQ_KBD), 2);
	assert_int_equal(read_byte(h), 0xaa);
	assert_false(hx_irq_level(h, PC_IRQ_KBD));
	assert_empty(h);
	/* Reading an empty buffer returns the last byte, raises nothing. */
	assert_int_equal(hx_inb(h, DATA), 0xaa);
	assert_int_equal(hx_irq_edges(h, PC_IRQ_KBD), 2);

	/* With CCB bit 0 clear the byte arrives without an interrupt. */
	write_ccb(h, 0x64);
	hx_outb(h, DATA, 0xee);
	assert_false(hx_irq_level(h, PC_IRQ_KBD));
	assert_int_equal(read_byte(h), 0xee);
	assert_int_equal(hx_irq_edges(h, PC_IRQ_KBD), 2);
	assert_false(hx_irq_level(h, PC_IRQ_MOUSE));
}

/* atkbd_probe() + atkbd_activate(). */
static void test_keyboard_commands(void **state)
{
	struct harness *h = *state;

	/* Translated (CCB bit 6): identify answers 0xAB 0x41. */
	hx_outb(h, DATA, 0xf2);
	assert_int_equal(read_byte(h), 0xfa);
	assert_int_equal(read_byte(h), 0xab);
	assert_int_equal(read_byte(h), 0x41);
	assert_empty(h);
	hx_outb(h, DATA, 0xf0);
	hx_outb(h, DATA, 0x00);
	assert_int_equal(read_byte(h), 0xfa);
	assert_int_equal(read_byte(h), 0xfa);
	assert_int_equal(read_byte(h), 0x41); /* set 2, translated */

	/* Untranslated: 0xAB 0x83, set numbers as they are. */
	write_ccb(h, 0x25);
	hx_outb(h, DATA, 0xf2);
	assert_int_equal(read_byte(h), 0xfa);
	assert_int_equal(read_byte(h), 0xab);
	assert_int_equal(read_byte(h), 0x83);
	hx_outb(h, DATA, 0xf0);
	hx_outb(h, DATA, 0x03);
	assert_int_equal(read_byte(h), 0xfa);
	assert_int_equal(read_byte(h), 0xfa);
	hx_outb(h, DATA, 0xf0);
	hx_outb(h, DATA, 0x00);
	assert_int_equal(read_byte(h), 0xfa);
	assert_int_equal(read_byte(h), 0xfa);
	assert_int_equal(read_byte(h), 0x03);
	hx_outb(h, DATA, 0xf0);
	hx_outb(h, DATA, 0x07); /* no such set */
	assert_int_equal(read_byte(h), 0xfa);
	assert_int_equal(read_byte(h), 0xfe);

	/* LEDs, typematic, disable, enable, echo. */
	hx_outb(h, DATA, 0xed);
	hx_outb(h, DATA, 0x07);
	assert_int_equal(read_byte(h), 0xfa);
	assert_int_equal(read_byte(h), 0xfa);
	hx_outb(h, DATA, 0xf3);
	hx_outb(h, DATA, 0x20);
	assert_int_equal(read_byte(h), 0xfa);
	assert_int_equal(read_byte(h), 0xfa);
	hx_outb(h, DATA, 0xf5);
	assert_int_equal(read_byte(h), 0xfa);
	hx_outb(h, DATA, 0xf4);
	assert_int_equal(read_byte(h), 0xfa);
	hx_outb(h, DATA, 0xee);
	assert_int_equal(read_byte(h), 0xee);
	/* Resend repeats the last byte; unknown commands get 0xFE. */
	hx_outb(h, DATA, 0xfe);
	assert_int_equal(read_byte(h), 0xee);
	hx_outb(h, DATA, 0xe8);
	assert_int_equal(read_byte(h), 0xfe);
	assert_empty(h);
}

/* i8042_check_aux() and psmouse's first steps. */
static void test_linux_aux_probe(void **state)
{
	struct harness *h = *state;
	uint8_t ctr;

	/* AUX_LOOP: the byte comes back flagged as aux data, no IRQ 12 while
	 * the aux interrupt is off. */
	hx_outb(h, CMD, 0xd3);
	hx_outb(h, DATA, 0x5a);
	assert_int_equal(hx_inb(h, CMD) & (OBF | AUXB), OBF | AUXB);
	assert_int_equal(hx_inb(h, DATA), 0x5a);
	assert_false(hx_irq_level(h, PC_IRQ_MOUSE));
	assert_int_equal(hx_irq_edges(h, PC_IRQ_MOUSE), 0);
	assert_int_equal(hx_irq_edges(h, PC_IRQ_KBD), 0);

	/* i8042_toggle_aux(): CTR bit 5 writable and read back. */
	ctr = command(h, 0x20);
	write_ccb(h, ctr | 0x20);
	assert_int_equal(command(h, 0x20) & 0x20, 0x20);
	write_ccb(h, ctr & ~0x20);
	assert_int_equal(command(h, 0x20) & 0x20, 0);

	/* IRQ delivery test: aux enabled with its interrupt, AUX_LOOP 0xA5. */
	ctr = command(h, 0x20);
	write_ccb(h, (ctr & ~0x20) | 0x02);
	hx_outb(h, CMD, 0xd3);
	hx_outb(h, DATA, 0xa5);
	assert_true(hx_irq_level(h, PC_IRQ_MOUSE));
	assert_int_equal(hx_irq_edges(h, PC_IRQ_MOUSE), 1);
	assert_false(hx_irq_level(h, PC_IRQ_KBD));
	assert_int_equal(hx_inb(h, CMD) & AUXB, AUXB);
	assert_int_equal(hx_inb(h, DATA), 0xa5);
	assert_false(hx_irq_level(h, PC_IRQ_MOUSE));

	/* psmouse: reset, get ID, status request, sample rate. */
	hx_outb(h, CMD, 0xd4);
	hx_outb(h, DATA, 0xff);
	assert_int_equal(hx_irq_edges(h, PC_IRQ_MOUSE), 2);
	assert_int_equal(read_byte(h), 0xfa);
	assert_int_equal(read_byte(h), 0xaa);
	assert_int_equal(read_byte(h), 0x00);
	assert_int_equal(hx_irq_edges(h, PC_IRQ_MOUSE), 4);
	hx_outb(h, CMD, 0xd4);
	hx_outb(h, DATA, 0xf2);
	assert_int_equal(read_byte(h), 0xfa);
	assert_int_equal(hx_inb(h, CMD) & AUXB, AUXB);
	assert_int_equal(read_byte(h), 0x00);
	hx_outb(h, CMD, 0xd4);
	hx_outb(h, DATA, 0xf3);
	assert_int_equal(read_byte(h), 0xfa);
	hx_outb(h, CMD, 0xd4);
	hx_outb(h, DATA, 200);
	assert_int_equal(read_byte(h), 0xfa);
	hx_outb(h, CMD, 0xd4);
	hx_outb(h, DATA, 0xe9);
	assert_int_equal(read_byte(h), 0xfa);
	assert_int_equal(read_byte(h), 0x00); /* stream, disabled, 1:1 */
	assert_int_equal(read_byte(h), 2);    /* resolution */
	assert_int_equal(read_byte(h), 200);  /* rate */
	/* Extensions a plain mouse does not know are refused at once. */
	hx_outb(h, CMD, 0xd4);
	hx_outb(h, DATA, 0xe1);
	assert_int_equal(read_byte(h), 0xfe);
	/* Wrap mode echoes until reset-wrap. */
	hx_outb(h, CMD, 0xd4);
	hx_outb(h, DATA, 0xee);
	assert_int_equal(read_byte(h), 0xfa);
	hx_outb(h, CMD, 0xd4);
	hx_outb(h, DATA, 0x33);
	assert_int_equal(read_byte(h), 0x33);
	hx_outb(h, CMD, 0xd4);
	hx_outb(h, DATA, 0xec);
	assert_int_equal(read_byte(h), 0xfa);
	hx_outb(h, CMD, 0xd4);
	hx_outb(h, DATA, 0xf4);
	assert_int_equal(read_byte(h), 0xfa);
	assert_empty(h);

	/* Mouse bytes wait while the aux interface is disabled. */
	hx_outb(h, CMD, 0xa7);
	hx_outb(h, CMD, 0xd4);
	hx_outb(h, DATA, 0xf5);
	assert_empty(h);
	hx_outb(h, CMD, 0xa8);
	assert_int_equal(read_byte(h), 0xfa);
}

static void test_save_load(void **state)
{
	struct harness *h = *state, *g;
	struct state_buf b = { 0 };

	write_ccb(h, 0x47);
	hx_outb(h, DATA, 0xff); /* keyboard: FA AA queued */
	assert_int_equal(read_byte(h), 0xfa);
	hx_outb(h, CMD, 0xd4);
	hx_outb(h, DATA, 0xf2); /* mouse: FA 00 queued behind */
	hx_outb(h, CMD, 0x60);  /* parameter pending */
	assert_int_equal(hx_save(h, "i8042", &b), 0);

	g = harness_new(1 << 20);
	assert_int_equal(i8042_create(&g->vm, NULL), 0);
	assert_int_equal(hx_load(g, "i8042", b.data, b.len), 0);
	assert_true(hx_irq_level(g, PC_IRQ_KBD)); /* 0xAA in the buffer */
	assert_int_equal(read_byte(g), 0xaa);
	assert_int_equal(read_byte(g), 0xfa);
	assert_int_equal(hx_inb(g, CMD) & AUXB, AUXB);
	assert_int_equal(read_byte(g), 0x00);
	hx_outb(g, DATA, 0x46); /* completes the pending 0x60 */
	assert_int_equal(command(g, 0x20), 0x46);

	/* Bad streams. */
	assert_int_equal(hx_load(g, "i8042", b.data, b.len - 1), -EINVAL);
	b.data[0] = 2;
	assert_int_equal(hx_load(g, "i8042", b.data, b.len), -EINVAL);
	b.data[0] = 1;
	b.data[1 + 32 + 7] = 17; /* ctrl queue count */
	assert_int_equal(hx_load(g, "i8042", b.data, b.len), -EINVAL);
	assert_int_equal(command(g, 0x20), 0x46);

	state_buf_free(&b);
	harness_free(g);
}

static void test_hostile(void **state)
{
	struct harness *h = *state;
	uint32_t s = 12345;

	for (int i = 0; i < 100000; i++) {
		s = s * 1103515245u + 12345u;
		uint8_t v = (uint8_t)(s >> 16);
		switch ((s >> 8) & 3) {
		case 0:
			/* never reset: keep 0xF0-0xFF pulses off bit 0 */
			hx_outb(h, CMD, v >= 0xf0 ? (uint8_t)(v | 1) : v);
			break;
		case 1:
			hx_outb(h, DATA, v);
			break;
		default:
			hx_inb(h, (s >> 24) & 1 ? DATA : CMD);
			break;
		}
		if (h->vm.stop_reason != VM_RUNNING)
			break; /* 0xD1 with bit 0 clear: allowed */
	}
	vm_reset_devices(&h->vm);
	while (hx_inb(h, CMD) & OBF)
		hx_inb(h, DATA);
	assert_int_equal(command(h, 0xaa), 0x55);
	assert_int_equal(command(h, 0x20), 0x65);
	hx_outw(h, DATA, 0xffff); /* two-byte access: not decoded */
	assert_int_equal(hx_inw(h, CMD), 0xffff);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_self_test_and_interface_tests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_command_byte, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keyboard_interface_gating, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_through_output_port, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keyboard_reset_and_irq, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keyboard_commands, setup, teardown),
		cmocka_unit_test_setup_teardown(test_linux_aux_probe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
