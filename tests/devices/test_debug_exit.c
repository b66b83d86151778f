/*
 * test_debug_exit.c - the debug-exit port and the POST port 0x80.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"
#include "hw/debug_exit.h"
#include "hw/pc.h"
#include "hw/post_port.h"

static void test_byte_write_stops_vm(void **state)
{
	struct harness *h = harness_new(1 << 20);

	assert_int_equal(debug_exit_create(&h->vm, PC_DEBUG_EXIT_PORT, NULL), 0);
	assert_false(vm_stopping(&h->vm));
	assert_int_equal(h->vm.stop_reason, VM_RUNNING);
	hx_outb(h, PC_DEBUG_EXIT_PORT, 0x21);
	assert_true(vm_stopping(&h->vm));
	assert_int_equal(h->vm.stop_reason, VM_STOP_DEBUG_EXIT);
	assert_int_equal(h->vm.stop_value, 0x21);
	/* A second write does not change the first request. */
	hx_outb(h, PC_DEBUG_EXIT_PORT, 0x05);
	hx_outl(h, PC_DEBUG_EXIT_PORT, 0x12345678);
	assert_int_equal(h->vm.stop_reason, VM_STOP_DEBUG_EXIT);
	assert_int_equal(h->vm.stop_value, 0x21);
	harness_free(h);
}

static void test_wide_write_value(void **state)
{
	struct harness *h = harness_new(1 << 20);

	assert_int_equal(debug_exit_create(&h->vm, PC_DEBUG_EXIT_PORT, NULL), 0);
	assert_int_equal(hx_inl(h, PC_DEBUG_EXIT_PORT), 0); /* reads 0 */
	assert_false(vm_stopping(&h->vm));
	hx_outl(h, PC_DEBUG_EXIT_PORT, 0x00000103);
	assert_int_equal(h->vm.stop_reason, VM_STOP_DEBUG_EXIT);
	assert_int_equal(h->vm.stop_value, 0x103);
	harness_free(h);

	/* A 16-bit write at the last word of the range. */
	h = harness_new(1 << 20);
	assert_int_equal(debug_exit_create(&h->vm, PC_DEBUG_EXIT_PORT, NULL), 0);
	hx_outw(h, PC_DEBUG_EXIT_PORT + 2, 0xbeef);
	assert_int_equal(h->vm.stop_value, 0xbeef);
	harness_free(h);
}

static void test_debug_exit_save_load(void **state)
{
	struct harness *h = harness_new(1 << 20);
	struct state_buf b = { 0 };
	uint8_t bad = 7;

	assert_int_equal(debug_exit_create(&h->vm, PC_DEBUG_EXIT_PORT, NULL), 0);
	assert_int_equal(debug_exit_create(&h->vm, PC_DEBUG_EXIT_PORT, NULL),
			 -EBUSY);
	assert_int_equal(hx_save(h, "debug_exit", &b), 0);
	assert_int_equal(hx_load(h, "debug_exit", b.data, b.len), 0);
	assert_int_equal(hx_load(h, "debug_exit", &bad, 1), -EINVAL);
	assert_int_equal(hx_load(h, "debug_exit", b.data, 0), -EINVAL);
	state_buf_free(&b);
	harness_free(h);
}

static void test_post_port(void **state)
{
	struct harness *h = harness_new(1 << 20);
	struct harness *g = harness_new(1 << 20);
	struct post_port *p, *q;
	struct state_buf b = { 0 };

	assert_int_equal(post_port_create(&h->vm, &p), 0);
	assert_int_equal(hx_inb(h, PC_POST_PORT), 0);
	hx_outb(h, PC_POST_PORT, 0x3c);
	assert_int_equal(hx_inb(h, PC_POST_PORT), 0x3c);
	assert_int_equal(post_port_last_code(p), 0x3c);
	/* Linux's I/O delay: many writes, nothing else happens. */
	for (int i = 0; i < 1000; i++)
		hx_outb(h, PC_POST_PORT, (uint8_t)i);
	assert_int_equal(hx_inb(h, PC_POST_PORT), (uint8_t)999);
	assert_false(vm_stopping(&h->vm));
	/* Neighbouring ports are not claimed. */
	assert_int_equal(hx_inb(h, PC_POST_PORT + 1), 0xff);

	/* Save/load round trip. */
	hx_outb(h, PC_POST_PORT, 0xd5);
	hx_save(h, "post_port", &b);
	assert_int_equal(post_port_create(&g->vm, &q), 0);
	assert_int_equal(hx_load(g, "post_port", b.data, b.len), 0);
	assert_int_equal(hx_inb(g, PC_POST_PORT), 0xd5);
	assert_int_equal(hx_load(g, "post_port", b.data, 1), -EINVAL);
	vm_reset_devices(&g->vm);
	assert_int_equal(post_port_last_code(q), 0);

	state_buf_free(&b);
	harness_free(h);
	harness_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_byte_write_stops_vm),
		cmocka_unit_test(test_wide_write_value),
		cmocka_unit_test(test_debug_exit_save_load),
		cmocka_unit_test(test_post_port),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
