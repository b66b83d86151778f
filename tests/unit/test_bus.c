/* test_bus.c - range registration and dispatch (core/bus.h). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/bus.h"

struct dev {
	uint64_t last_off, last_val;
	unsigned last_size, reads, writes;
};

static uint64_t dev_read(void *opaque, uint64_t off, unsigned size)
{
	struct dev *d = opaque;
	d->reads++;
	d->last_off = off;
	d->last_size = size;
	return 0x1122334455667788ull;
}

static void dev_write(void *opaque, uint64_t off, unsigned size, uint64_t v)
{
	struct dev *d = opaque;
	d->writes++;
	d->last_off = off;
	d->last_size = size;
	d->last_val = v;
}

static const struct bus_ops ops = { dev_read, dev_write };

static void test_dispatch_with_offsets(void **state)
{
	struct bus bus = { .name = "t" };
	struct dev a = { 0 }, b = { 0 };

	assert_int_equal(bus_register(&bus, 0x3f8, 8, &ops, &a, "a"), 0);
	assert_int_equal(bus_register(&bus, 0x60, 1, &ops, &b, "b"), 0);
	bus_write(&bus, 0x3fb, 1, 0x83);
	assert_int_equal(a.writes, 1);
	assert_int_equal(a.last_off, 3);
	assert_int_equal(a.last_val, 0x83);
	/* Reads are masked to the access size. */
	assert_int_equal(bus_read(&bus, 0x60, 1), 0x88);
	assert_int_equal(bus_read(&bus, 0x3f8, 2), 0x7788);
	assert_int_equal(b.reads, 1);
	bus_destroy(&bus);
}

static void test_unclaimed_reads_ones(void **state)
{
	struct bus bus = { .name = "t" };
	struct dev a = { 0 };

	assert_int_equal(bus_register(&bus, 0x100, 4, &ops, &a, "a"), 0);
	assert_int_equal(bus_read(&bus, 0x200, 1), 0xff);
	assert_int_equal(bus_read(&bus, 0x200, 4), 0xffffffffu);
	assert_true(bus_read(&bus, 0x0, 8) == ~0ull);
	/* An access running past the end of a range is not delivered. */
	assert_int_equal(bus_read(&bus, 0x102, 4), 0xffffffffu);
	bus_write(&bus, 0x103, 2, 1);
	assert_int_equal(a.reads + a.writes, 0);
	bus_destroy(&bus);
}

static void test_overlap_and_bad_ranges_refused(void **state)
{
	struct bus bus = { .name = "t" };
	struct dev a = { 0 };

	assert_int_equal(bus_register(&bus, 0x100, 0x10, &ops, &a, "a"), 0);
	assert_int_equal(bus_register(&bus, 0x10f, 1, &ops, &a, "b"), -EBUSY);
	assert_int_equal(bus_register(&bus, 0xf0, 0x11, &ops, &a, "c"), -EBUSY);
	assert_int_equal(bus_register(&bus, 0x110, 1, &ops, &a, "d"), 0);
	assert_int_equal(bus_register(&bus, 0x200, 0, &ops, &a, "e"), -EINVAL);
	assert_int_equal(bus_register(&bus, UINT64_MAX, 2, &ops, &a, "f"), -EINVAL);
	bus_destroy(&bus);
}

static void test_many_ranges_sorted(void **state)
{
	struct bus bus = { .name = "t" };
	struct dev d[40] = { 0 };

	/* Register out of order; lookups must still find each one. */
	for (int i = 0; i < 40; i++) {
		int k = (i * 17) % 40;
		assert_int_equal(bus_register(&bus, 0x1000 + k * 0x10, 8, &ops,
					      &d[k], "d"), 0);
	}
	for (int k = 0; k < 40; k++) {
		bus_write(&bus, 0x1000 + k * 0x10 + 7, 1, k);
		assert_int_equal(d[k].writes, 1);
		assert_int_equal(d[k].last_val, k);
		assert_null(bus_find(&bus, 0x1000 + k * 0x10 + 8));
	}
	bus_destroy(&bus);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dispatch_with_offsets),
		cmocka_unit_test(test_unclaimed_reads_ones),
		cmocka_unit_test(test_overlap_and_bad_ranges_refused),
		cmocka_unit_test(test_many_ranges_sorted),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
