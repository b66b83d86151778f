/*
 * test_uart_16550.c - the 16550A UART through the harness: the test plays
 * Linux's 8250 driver (probe, startup, interrupt-driven output, receive)
 * and a hostile guest.
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

#include "core/chardev.h"
#include "harness.h"
#include "hw/pc.h"
#include "hw/uart_16550.h"

#define B PC_COM1_PORT
#define IRQ PC_IRQ_COM1

enum { RBR = 0, THR = 0, DLL = 0, IER = 1, DLM = 1, IIR = 2, FCR = 2,
       LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

struct fixture {
	struct harness *h;
	struct chardev *cd;
	struct uart_16550 *u;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->h = harness_new(1 << 20);
	f->cd = chardev_open_buffer();
	assert_non_null(f->cd);
	assert_int_equal(uart_16550_create(&f->h->vm, B, IRQ, f->cd, &f->u), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	harness_free(f->h);
	chardev_close(f->cd);
	free(f);
	return 0;
}

static const char *output(struct fixture *f)
{
	return chardev_buffer_output(f->cd, NULL);
}

/* Linux's autoconfig() and serial8250_do_startup(), in order. */
static void test_linux_probe_and_startup(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;
	uint8_t iir1, iir2;

	/* IER test: bits 3:0 writable, upper bits read 0. */
	hx_outb(h, B + IER, 0);
	assert_int_equal(hx_inb(h, B + IER) & 0x0f, 0);
	hx_outb(h, B + IER, 0xff);
	assert_int_equal(hx_inb(h, B + IER), 0x0f);
	hx_outb(h, B + IER, 0);

	/* Loopback test: MCR = LOOP|OUT2|RTS must show DCD|CTS in MSR. */
	hx_outb(h, B + MCR, 0x1a);
	assert_int_equal(hx_inb(h, B + MSR) & 0xf0, 0x90);
	hx_outb(h, B + MCR, 0);

	/* FIFO detection: IIR[7:6] = 3 means a 16550A. */
	hx_outb(h, B + FCR, 0x01);
	assert_int_equal(hx_inb(h, B + IIR) >> 6, 3);
	/* EFR probes with LCR = 0x80 and 0xBF must not read 0 at offset 2. */
	hx_outb(h, B + LCR, 0x80);
	assert_int_not_equal(hx_inb(h, B + IIR), 0);
	hx_outb(h, B + LCR, 0xbf);
	assert_int_not_equal(hx_inb(h, B + IIR), 0);
	/* 16750 probe: no 64-byte FIFO bit. */
	hx_outb(h, B + LCR, 0);
	hx_outb(h, B + FCR, 0x21);
	assert_int_equal(hx_inb(h, B + IIR) & 0x20, 0);
	/* XScale UUE bit does not stick. */
	hx_outb(h, B + IER, 0x40);
	assert_int_equal(hx_inb(h, B + IER) & 0x40, 0);
	hx_outb(h, B + IER, 0);

	/* startup: clear and disable FIFOs, clear interrupt sources. */
	hx_outb(h, B + FCR, 0x01);
	hx_outb(h, B + FCR, 0x07);
	hx_outb(h, B + FCR, 0x00);
	hx_inb(h, B + LSR);
	hx_inb(h, B + RBR);
	hx_inb(h, B + IIR);
	hx_inb(h, B + MSR);
	assert_int_not_equal(hx_inb(h, B + LSR), 0xff);

	/* THRE re-assertion test (UART_BUG_THRE otherwise). */
	hx_outb(h, B + IER, 0x02);
	iir1 = hx_inb(h, B + IIR);
	hx_outb(h, B + IER, 0);
	hx_outb(h, B + IER, 0x02);
	iir2 = hx_inb(h, B + IIR);
	hx_outb(h, B + IER, 0);
	assert_int_equal(iir1, 0x02);
	assert_int_equal(iir2, 0x02);

	/* 8N1, OUT2 for interrupts, TX enable test: THRE seen in IIR. */
	hx_outb(h, B + LCR, 0x03);
	hx_outb(h, B + MCR, 0x0b);
	hx_outb(h, B + IER, 0x02);
	assert_int_equal(hx_inb(h, B + LSR) & 0x60, 0x60);
	assert_int_equal(hx_inb(h, B + IIR) & 0x01, 0);
	hx_outb(h, B + IER, 0);
	/* Interrupt line went up once and is down again. */
	assert_int_equal(hx_irq_edges(h, IRQ), 1);
	assert_false(hx_irq_level(h, IRQ));
}

static void test_thre_interrupt(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	hx_outb(h, B + LCR, 0x03);
	hx_outb(h, B + MCR, 0x08); /* OUT2 */
	assert_false(hx_irq_level(h, IRQ));

	/* Enabling ETBEI with THR empty raises THRE immediately. */
	hx_outb(h, B + IER, 0x02);
	assert_true(hx_irq_level(h, IRQ));
	assert_int_equal(hx_irq_edges(h, IRQ), 1);
	/* Writing IER again with ETBEI already set is no new edge. */
	hx_outb(h, B + IER, 0x02);
	assert_int_equal(hx_irq_edges(h, IRQ), 1);

	/* Reading IIR that reports THRE clears it. */
	assert_int_equal(hx_inb(h, B + IIR), 0x02);
	assert_false(hx_irq_level(h, IRQ));
	assert_int_equal(hx_inb(h, B + IIR), 0x01);

	/* Each THR write makes THR empty again: a new interrupt. */
	hx_outb(h, B + THR, 'a');
	assert_true(hx_irq_level(h, IRQ));
	assert_int_equal(hx_irq_edges(h, IRQ), 2);
	/* Writing THR while THRE is pending keeps it pending. */
	hx_outb(h, B + THR, 'b');
	assert_true(hx_irq_level(h, IRQ));
	assert_int_equal(hx_inb(h, B + IIR), 0x02);
	assert_false(hx_irq_level(h, IRQ));

	/* Disabling ETBEI drops a pending THRE; re-enabling raises it. */
	hx_outb(h, B + THR, 'c');
	assert_true(hx_irq_level(h, IRQ));
	hx_outb(h, B + IER, 0);
	assert_false(hx_irq_level(h, IRQ));
	hx_outb(h, B + IER, 0x02);
	assert_true(hx_irq_level(h, IRQ));
	assert_int_equal(hx_irq_edges(h, IRQ), 4);

	/* With ETBEI clear, output raises nothing. */
	hx_outb(h, B + IER, 0);
	hx_irq_clear_edges(h);
	hx_outb(h, B + THR, 'd');
	assert_int_equal(hx_irq_edges(h, IRQ), 0);
	assert_int_equal(hx_inb(h, B + IIR), 0x01);
	assert_string_equal(output(f), "abcd");
}

/* The 8250 interrupt handler loop: read IIR until NO_INT, filling THR up
 * to 16 bytes per THRE, stopping TX (IER &= ~THRI) when done. */
static void test_interrupt_driven_output(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;
	const char *msg = "Linux version 6.1 (interrupt-driven tty output)\r\n";
	size_t pos = 0, len = strlen(msg);
	int loops = 0;

	hx_outb(h, B + FCR, 0x07);
	hx_outb(h, B + LCR, 0x03);
	hx_outb(h, B + MCR, 0x0b);
	hx_outb(h, B + IER, 0x03); /* start_tx: RX + THRI */
	assert_true(hx_irq_level(h, IRQ));
	while (hx_irq_level(h, IRQ) && loops++ < 100) {
		uint8_t iir = hx_inb(h, B + IIR);
		if (iir & 0x01)
			break;
		assert_int_equal(iir & 0x0f, 0x02);
		assert_true(hx_inb(h, B + LSR) & 0x20);
		for (int n = 0; n < 16 && pos < len; n++)
			hx_outb(h, B + THR, (uint8_t)msg[pos++]);
		if (pos == len)
			hx_outb(h, B + IER, 0x01); /* stop_tx */
	}
	assert_int_equal(pos, len);
	assert_false(hx_irq_level(h, IRQ));
	assert_string_equal(output(f), msg);
}

static void test_output_order_and_dlab(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;
	size_t n;

	for (const char *p = "hello, "; *p; p++)
		hx_outb(h, B + THR, (uint8_t)*p);
	/* With DLAB set, offset 0 is DLL: nothing is sent. */
	hx_outb(h, B + LCR, 0x83);
	hx_outb(h, B + DLL, 0x01);
	hx_outb(h, B + DLM, 0x02);
	assert_int_equal(hx_inb(h, B + DLL), 0x01);
	assert_int_equal(hx_inb(h, B + DLM), 0x02);
	hx_outb(h, B + LCR, 0x03);
	/* IER was not touched by the DLM write. */
	assert_int_equal(hx_inb(h, B + IER), 0);
	/* A 16-bit write is two byte writes: THR then IER. */
	hx_outw(h, B + THR, 0x0000 | 'w');
	for (const char *p = "orld"; *p; p++)
		hx_outb(h, B + THR, (uint8_t)*p);
	/* 8 bits are sent even with a 5-bit LCR. */
	hx_outb(h, B + LCR, 0x00);
	hx_outb(h, B + THR, 0xff);
	assert_string_equal(output(f), "hello, world\xff");
	chardev_buffer_output(f->cd, &n);
	assert_int_equal(n, 13);
	/* Divisor survives the LCR change. */
	hx_outb(h, B + LCR, 0x80);
	assert_int_equal(hx_inb(h, B + DLL), 0x01);
	assert_int_equal(hx_inb(h, B + DLM), 0x02);
}

static void test_receive_interrupt(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	hx_outb(h, B + MCR, 0x08);
	hx_outb(h, B + IER, 0x01);
	assert_int_equal(hx_inb(h, B + LSR) & 0x01, 0);
	assert_false(hx_irq_level(h, IRQ));

	/* FIFOs off: one byte holding register, the rest waits in the
	 * backend (back pressure). */
	assert_int_equal(chardev_buffer_inject(f->cd, "xyz", 3), 0);
	assert_true(hx_irq_level(h, IRQ));
	assert_int_equal(hx_inb(h, B + LSR) & 0x01, 0x01);
	assert_int_equal(hx_inb(h, B + IIR), 0x04);
	assert_int_equal(hx_inb(h, B + RBR), 'x');
	assert_int_equal(hx_inb(h, B + RBR), 'y');
	assert_int_equal(hx_inb(h, B + RBR), 'z');
	assert_int_equal(hx_inb(h, B + LSR) & 0x03, 0); /* no DR, no OE */
	assert_false(hx_irq_level(h, IRQ));
	assert_int_equal(hx_inb(h, B + IIR), 0x01);
	/* Empty RBR repeats the last byte. */
	assert_int_equal(hx_inb(h, B + RBR), 'z');
}

static void test_fifo_trigger_and_back_pressure(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;
	char in[40];

	hx_outb(h, B + FCR, 0x81); /* FIFO on, trigger 8 */
	hx_outb(h, B + MCR, 0x08);
	hx_outb(h, B + IER, 0x01);

	chardev_buffer_inject(f->cd, "12345", 5);
	assert_true(hx_irq_level(h, IRQ));
	assert_int_equal(hx_inb(h, B + IIR), 0xcc); /* below trigger: timeout */
	chardev_buffer_inject(f->cd, "678", 3);
	assert_int_equal(hx_inb(h, B + IIR), 0xc4); /* at trigger: data */
	assert_int_equal(hx_inb(h, B + RBR), '1');
	assert_int_equal(hx_inb(h, B + IIR), 0xcc);
	/* FCR clear-RX empties the FIFO and the interrupt goes. */
	hx_outb(h, B + FCR, 0x83);
	assert_int_equal(hx_inb(h, B + LSR) & 0x01, 0);
	assert_false(hx_irq_level(h, IRQ));

	/* 40 bytes into a 16-byte FIFO: all arrive, in order, no overrun. */
	for (int i = 0; i < 40; i++)
		in[i] = (char)('A' + i);
	chardev_buffer_inject(f->cd, in, sizeof(in));
	for (int i = 0; i < 40; i++) {
		uint8_t lsr = hx_inb(h, B + LSR);
		assert_int_equal(lsr & 0x03, 0x01);
		assert_int_equal(hx_inb(h, B + RBR), (uint8_t)in[i]);
	}
	assert_int_equal(hx_inb(h, B + LSR) & 0x01, 0);

	/* Trigger 14: 13 bytes are a timeout, 14 are data. */
	hx_outb(h, B + FCR, 0xc1);
	chardev_buffer_inject(f->cd, "abcdefghijklm", 13);
	assert_int_equal(hx_inb(h, B + IIR), 0xcc);
	chardev_buffer_inject(f->cd, "n", 1);
	assert_int_equal(hx_inb(h, B + IIR), 0xc4);
	/* Disabling the FIFO discards it. */
	hx_outb(h, B + FCR, 0x00);
	assert_int_equal(hx_inb(h, B + LSR) & 0x01, 0);
	assert_int_equal(hx_inb(h, B + IIR), 0x01);
}

static void test_loopback(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	hx_outb(h, B + FCR, 0x01);
	hx_outb(h, B + IER, 0x01);
	hx_outb(h, B + MCR, 0x1f); /* LOOP + all outputs */
	assert_int_equal(hx_inb(h, B + MSR) & 0xf0, 0xf0);
	hx_outb(h, B + MCR, 0x10);
	assert_int_equal(hx_inb(h, B + MSR) & 0xf0, 0x00);
	hx_outb(h, B + MCR, 0x11); /* DTR -> DSR */
	assert_int_equal(hx_inb(h, B + MSR) & 0xf0, 0x20);
	hx_outb(h, B + MCR, 0x12); /* RTS -> CTS */
	assert_int_equal(hx_inb(h, B + MSR) & 0xf0, 0x10);
	hx_outb(h, B + MCR, 0x14); /* OUT1 -> RI */
	assert_int_equal(hx_inb(h, B + MSR) & 0xf0, 0x40);

	/* Input from the backend waits while looping. */
	chardev_buffer_inject(f->cd, "in", 2);
	assert_int_equal(hx_inb(h, B + LSR) & 0x01, 0);

	hx_outb(h, B + MCR, 0x18); /* LOOP + OUT2 */
	hx_outb(h, B + THR, 'L');
	hx_outb(h, B + THR, 'P');
	assert_string_equal(output(f), ""); /* nothing left the chip */
	assert_int_equal(hx_inb(h, B + LSR) & 0x61, 0x61);
	/* Interrupt pending but the line is gated in loopback. */
	assert_int_equal(hx_inb(h, B + IIR) & 0x0f, 0x04);
	assert_false(hx_irq_level(h, IRQ));
	assert_int_equal(hx_inb(h, B + RBR), 'L');
	assert_int_equal(hx_inb(h, B + RBR), 'P');

	/* Overrun: 17 bytes into the 16-byte FIFO. */
	for (int i = 0; i < 17; i++)
		hx_outb(h, B + THR, (uint8_t)i);
	assert_int_equal(hx_inb(h, B + LSR) & 0x03, 0x03);
	assert_int_equal(hx_inb(h, B + LSR) & 0x02, 0); /* OE read-clears */
	for (int i = 0; i < 16; i++)
		assert_int_equal(hx_inb(h, B + RBR), i);

	/* Leaving loopback: MSR back to connected, held input arrives. */
	hx_outb(h, B + MCR, 0x08);
	assert_int_equal(hx_inb(h, B + MSR) & 0xf0, 0xb0);
	assert_true(hx_irq_level(h, IRQ));
	assert_int_equal(hx_inb(h, B + RBR), 'i');
	assert_int_equal(hx_inb(h, B + RBR), 'n');
	assert_string_equal(output(f), "");
}

static void test_out2_gates_irq(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	hx_outb(h, B + IER, 0x02);
	assert_int_equal(hx_inb(h, B + IIR), 0x02); /* pending, clears */
	hx_outb(h, B + THR, '.');
	assert_false(hx_irq_level(h, IRQ)); /* OUT2 = 0 */
	hx_outb(h, B + MCR, 0x03);          /* DTR|RTS, still no OUT2 */
	assert_false(hx_irq_level(h, IRQ));
	hx_outb(h, B + MCR, 0x0b);
	assert_true(hx_irq_level(h, IRQ));
	hx_outb(h, B + MCR, 0x03);
	assert_false(hx_irq_level(h, IRQ));
	assert_int_equal(hx_irq_edges(h, IRQ), 1);
}

static void test_line_and_modem_status_interrupts(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	hx_outb(h, B + FCR, 0x01);
	/* Modem status: entering loopback changes DSR/CTS/DCD. */
	hx_outb(h, B + IER, 0x08);
	hx_outb(h, B + MCR, 0x08);
	assert_false(hx_irq_level(h, IRQ));
	hx_outb(h, B + MCR, 0x18);
	assert_int_equal(hx_inb(h, B + IIR), 0xc0);
	hx_outb(h, B + MCR, 0x08); /* back: deltas again, line ungated */
	assert_true(hx_irq_level(h, IRQ));
	assert_int_equal(hx_inb(h, B + MSR), 0xb3); /* CTS,DSR,DCD; DCTS|DDSR */
	assert_false(hx_irq_level(h, IRQ));
	assert_int_equal(hx_inb(h, B + IIR), 0xc1);

	/* Line status beats received data. */
	hx_outb(h, B + IER, 0x05);
	hx_outb(h, B + MCR, 0x18);
	for (int i = 0; i < 17; i++)
		hx_outb(h, B + THR, 'o');
	assert_int_equal(hx_inb(h, B + IIR), 0xc6);
	assert_int_equal(hx_inb(h, B + LSR) & 0x03, 0x03);
	assert_int_equal(hx_inb(h, B + IIR), 0xc4); /* 16 >= trigger 1 */
}

static void test_save_load_round_trip(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;
	struct state_buf b = { 0 };
	struct fixture g;

	hx_outb(h, B + FCR, 0x41); /* trigger 4 */
	hx_outb(h, B + LCR, 0x80);
	hx_outb(h, B + DLL, 0x03);
	hx_outb(h, B + DLM, 0x01);
	hx_outb(h, B + LCR, 0x1b);
	hx_outb(h, B + SCR, 0x5a);
	hx_outb(h, B + MCR, 0x0b);
	hx_outb(h, B + IER, 0x03);
	chardev_buffer_inject(f->cd, "abc", 3);
	assert_true(hx_irq_level(h, IRQ));

	assert_int_equal(hx_save(h, "uart_16550", &b), 0);

	g.h = harness_new(1 << 20);
	g.cd = chardev_open_buffer();
	assert_int_equal(uart_16550_create(&g.h->vm, B, IRQ, g.cd, &g.u), 0);
	assert_int_equal(hx_load(g.h, "uart_16550", b.data, b.len), 0);

	/* The interrupt line follows the loaded state. */
	assert_true(hx_irq_level(g.h, IRQ));
	assert_int_equal(hx_inb(g.h, B + LCR), 0x1b);
	assert_int_equal(hx_inb(g.h, B + SCR), 0x5a);
	assert_int_equal(hx_inb(g.h, B + MCR), 0x0b);
	assert_int_equal(hx_inb(g.h, B + IER), 0x03);
	assert_int_equal(hx_inb(g.h, B + IIR), 0xcc); /* 3 < trigger 4 */
	assert_int_equal(hx_inb(g.h, B + RBR), 'a');
	assert_int_equal(hx_inb(g.h, B + RBR), 'b');
	assert_int_equal(hx_inb(g.h, B + RBR), 'c');
	assert_int_equal(hx_inb(g.h, B + IIR), 0xc2); /* THRE was pending */
	hx_outb(g.h, B + LCR, 0x9b);
	assert_int_equal(hx_inb(g.h, B + DLL), 0x03);
	assert_int_equal(hx_inb(g.h, B + DLM), 0x01);

	/* Bad streams are refused. */
	assert_int_equal(hx_load(g.h, "uart_16550", b.data, b.len - 1), -EINVAL);
	b.data[0] = 99; /* version */
	assert_int_equal(hx_load(g.h, "uart_16550", b.data, b.len), -EINVAL);
	b.data[0] = 1;
	b.data[12] = 17; /* FIFO count */
	assert_int_equal(hx_load(g.h, "uart_16550", b.data, b.len), -EINVAL);
	b.data[12] = 3;
	b.data[3] = 0xff; /* IER reserved bits */
	assert_int_equal(hx_load(g.h, "uart_16550", b.data, b.len), -EINVAL);
	/* A refused load left the device as it was. */
	assert_int_equal(hx_inb(g.h, B + SCR), 0x5a);

	state_buf_free(&b);
	harness_free(g.h);
	chardev_close(g.cd);
}

static void test_reset(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	hx_outb(h, B + MCR, 0x0b);
	hx_outb(h, B + IER, 0x02);
	assert_true(hx_irq_level(h, IRQ));
	vm_reset_devices(&h->vm);
	assert_false(hx_irq_level(h, IRQ));
	assert_int_equal(hx_inb(h, B + IER), 0);
	assert_int_equal(hx_inb(h, B + MCR), 0);
	assert_int_equal(hx_inb(h, B + IIR), 0x01);
	assert_int_equal(hx_inb(h, B + LSR), 0x60);
	assert_int_equal(hx_inb(h, B + MSR), 0xb0);
}

static void test_hostile_writes(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;

	chardev_buffer_inject(f->cd, "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", 30);
	for (int lcr = 0; lcr < 2; lcr++) {
		for (unsigned off = 0; off < 8; off++) {
			for (unsigned v = 0; v < 256; v++) {
				hx_outb(h, B + LCR, lcr ? 0x80 : 0x03);
				hx_outb(h, B + off, (uint8_t)v);
				for (unsigned o = 0; o < 8; o++)
					hx_inb(h, B + o);
			}
		}
	}
	for (unsigned off = 0; off < 8; off++) {
		hx_outl(h, B + off, 0xffffffff);
		hx_outw(h, B + off, 0xa5a5);
		hx_inl(h, B + off);
		hx_inw(h, B + off);
	}
	/* Still a working UART afterwards. */
	vm_reset_devices(&h->vm);
	hx_outb(h, B + SCR, 0x42);
	assert_int_equal(hx_inb(h, B + SCR), 0x42);
	hx_outb(h, B + LCR, 0x03);
	hx_outb(h, B + MCR, 0x0b);
	hx_outb(h, B + IER, 0x02);
	assert_true(hx_irq_level(h, IRQ));
	/* Past-the-end accesses never reach the device. */
	assert_int_equal(hx_inl(h, B + 6), 0xffffffff);
}

/* Two vCPU threads printing at once: every byte arrives, each thread's
 * bytes in its own order. */
struct writer {
	struct harness *h;
	char c;
};

static void *writer_thread(void *opaque)
{
	struct writer *w = opaque;

	for (int i = 0; i < 5000; i++)
		hx_outb(w->h, B + THR, (uint8_t)(w->c + i % 10));
	return NULL;
}

static void test_concurrent_output(void **state)
{
	struct fixture *f = *state;
	struct writer w[2] = { { f->h, 'a' }, { f->h, 'A' } };
	pthread_t t[2];
	const char *out;
	size_t n;
	int next[2] = { 0, 0 };

	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, writer_thread,
						&w[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	out = chardev_buffer_output(f->cd, &n);
	assert_int_equal(n, 10000);
	for (size_t i = 0; i < n; i++) {
		int k = out[i] >= 'a' ? 0 : 1;
		assert_int_equal(out[i], w[k].c + next[k] % 10);
		next[k]++;
	}
	assert_int_equal(next[0], 5000);
	assert_int_equal(next[1], 5000);
}

static void test_no_chardev(void **state)
{
	struct harness *h = harness_new(1 << 20);

	(void)state;
	assert_int_equal(uart_16550_create(&h->vm, 0x2f8, 3, NULL, NULL), 0);
	hx_outb(h, 0x2f8, 'x');
	assert_int_equal(hx_inb(h, 0x2f8 + LSR), 0x60);
	/* Same ports twice: refused. */
	assert_int_equal(uart_16550_create(&h->vm, 0x2f8, 3, NULL, NULL),
			 -EBUSY);
	assert_int_equal(uart_16550_create(&h->vm, 0x3e8, IRQ_MAX_GSI, NULL,
					   NULL), -EINVAL);
	harness_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_linux_probe_and_startup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_thre_interrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interrupt_driven_output, setup, teardown),
		cmocka_unit_test_setup_teardown(test_output_order_and_dlab, setup, teardown),
		cmocka_unit_test_setup_teardown(test_receive_interrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fifo_trigger_and_back_pressure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loopback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out2_gates_irq, setup, teardown),
		cmocka_unit_test_setup_teardown(test_line_and_modem_status_interrupts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_load_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_output, setup, teardown),
		cmocka_unit_test(test_no_chardev),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
