/*
 * test_reset.c - the reset control register at 0xCF9.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"
#include "hw/pc.h"
#include "hw/reset_cf9.h"

/* Linux's reboot=pci sequence. */
static void test_linux_sequence_resets(void **state)
{
	struct harness *h = harness_new(1 << 20);
	uint8_t v;

	assert_int_equal(reset_cf9_create(&h->vm, NULL), 0);
	v = hx_inb(h, PC_RESET_PORT) & ~0x0e;
	assert_int_equal(v, 0);
	hx_outb(h, PC_RESET_PORT, v | 0x02);
	assert_false(vm_stopping(&h->vm));
	assert_int_equal(hx_inb(h, PC_RESET_PORT), 0x02);
	hx_outb(h, PC_RESET_PORT, v | 0x06);
	assert_true(vm_stopping(&h->vm));
	assert_int_equal(h->vm.stop_reason, VM_STOP_RESET);
	assert_int_equal(h->vm.stop_value, 0);
	assert_int_equal(hx_inb(h, PC_RESET_PORT), 0x06);
	harness_free(h);
}

static void test_sys_rst_alone_does_not_reset(void **state)
{
	struct harness *h = harness_new(1 << 20);

	assert_int_equal(reset_cf9_create(&h->vm, NULL), 0);
	hx_outb(h, PC_RESET_PORT, 0x02);
	hx_outb(h, PC_RESET_PORT, 0x0a);
	hx_outb(h, PC_RESET_PORT, 0xf1); /* reserved bits, RST_CPU clear */
	assert_false(vm_stopping(&h->vm));
	assert_int_equal(h->vm.stop_reason, VM_RUNNING);
	assert_int_equal(hx_inb(h, PC_RESET_PORT), 0x00);
	hx_outb(h, PC_RESET_PORT, 0x0a);
	assert_int_equal(hx_inb(h, PC_RESET_PORT), 0x0a);
	harness_free(h);
}

static void test_direct_write_and_reset_op(void **state)
{
	struct harness *h = harness_new(1 << 20);

	assert_int_equal(reset_cf9_create(&h->vm, NULL), 0);
	/* A single 0x0e write (cold reboot) is a 0 -> 1 edge too. */
	hx_outb(h, PC_RESET_PORT, 0x0e);
	assert_int_equal(h->vm.stop_reason, VM_STOP_RESET);
	/* Machine reset clears the register for the next reboot. */
	vm_reset_devices(&h->vm);
	assert_int_equal(hx_inb(h, PC_RESET_PORT), 0);
	harness_free(h);
}

static void test_unclaimed_forwarding(void **state)
{
	struct harness *h = harness_new(1 << 20);
	struct reset_cf9 *rc;

	assert_int_equal(reset_cf9_create_unclaimed(&h->vm, &rc), 0);
	assert_int_equal(hx_inb(h, PC_RESET_PORT), 0xff); /* nobody decodes */
	reset_cf9_write(rc, 0x02);
	assert_int_equal(reset_cf9_read(rc), 0x02);
	assert_false(vm_stopping(&h->vm));
	reset_cf9_write(rc, 0x06);
	assert_int_equal(h->vm.stop_reason, VM_STOP_RESET);
	harness_free(h);
}

static void test_save_load(void **state)
{
	struct harness *h = harness_new(1 << 20);
	struct harness *g = harness_new(1 << 20);
	struct state_buf b = { 0 };

	assert_int_equal(reset_cf9_create(&h->vm, NULL), 0);
	assert_int_equal(reset_cf9_create(&g->vm, NULL), 0);
	hx_outb(h, PC_RESET_PORT, 0x0a);
	assert_int_equal(hx_save(h, "reset_cf9", &b), 0);
	assert_int_equal(hx_load(g, "reset_cf9", b.data, b.len), 0);
	assert_int_equal(hx_inb(g, PC_RESET_PORT), 0x0a);
	/* SYS_RST came across: raising RST_CPU now resets. */
	hx_outb(g, PC_RESET_PORT, 0x0e);
	assert_int_equal(g->vm.stop_reason, VM_STOP_RESET);

	/* Bad streams: truncated, wrong version, reserved bits. */
	assert_int_equal(hx_load(g, "reset_cf9", b.data, 1), -EINVAL);
	b.data[0] = 2;
	assert_int_equal(hx_load(g, "reset_cf9", b.data, b.len), -EINVAL);
	b.data[0] = 1;
	b.data[1] = 0x81;
	assert_int_equal(hx_load(g, "reset_cf9", b.data, b.len), -EINVAL);
	assert_int_equal(hx_inb(g, PC_RESET_PORT), 0x0e);

	state_buf_free(&b);
	harness_free(h);
	harness_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_linux_sequence_resets),
		cmocka_unit_test(test_sys_rst_alone_does_not_reset),
		cmocka_unit_test(test_direct_write_and_reset_op),
		cmocka_unit_test(test_unclaimed_forwarding),
		cmocka_unit_test(test_save_load),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
