/* test_memory.c - guest RAM layout and bounds checks (core/memory.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <string.h>
#include <cmocka.h>

#include "core/memory.h"

static void test_small_guest_is_one_region(void **state)
{
	struct guest_mem gm;

	assert_int_equal(gm_init(&gm, 128ull << 20), 0);
	assert_int_equal(gm.nr_regions, 1);
	assert_int_equal(gm_low_end(&gm), 128ull << 20);
	assert_non_null(gm_ptr(&gm, 0, 128ull << 20));
	assert_null(gm_ptr(&gm, 0, (128ull << 20) + 1));
	assert_null(gm_ptr(&gm, 128ull << 20, 1));
	gm_destroy(&gm);
}

static void test_large_guest_splits_around_hole(void **state)
{
	struct guest_mem gm;
	uint64_t ram = 5ull << 30;

	assert_int_equal(gm_init(&gm, ram), 0);
	assert_int_equal(gm.nr_regions, 2);
	assert_int_equal(gm_low_end(&gm), GM_HOLE_START);
	assert_int_equal(gm.regions[1].gpa, GM_HIGH_START);
	assert_int_equal(gm.regions[1].size, ram - GM_HOLE_START);
	/* The hole is not RAM; high RAM ends where it should. */
	assert_null(gm_ptr(&gm, GM_HOLE_START, 1));
	assert_null(gm_ptr(&gm, 0xfee00000, 4));
	assert_non_null(gm_ptr(&gm, GM_HIGH_START + ram - GM_HOLE_START - 8, 8));
	assert_null(gm_ptr(&gm, GM_HIGH_START + ram - GM_HOLE_START - 8, 9));
	/* A range may not straddle the hole. */
	assert_null(gm_ptr(&gm, GM_HOLE_START - 4, 8));
	gm_destroy(&gm);
}

static void test_hostile_ranges_rejected(void **state)
{
	struct guest_mem gm;
	uint8_t buf[16] = { 1, 2, 3 };

	assert_int_equal(gm_init(&gm, 1ull << 20), 0);
	assert_null(gm_ptr(&gm, UINT64_MAX, 2));
	assert_null(gm_ptr(&gm, 16, UINT64_MAX));
	assert_null(gm_ptr(&gm, UINT64_MAX - 4, 8));
	assert_int_equal(gm_write(&gm, (1 << 20) - 8, buf, 16), -EFAULT);
	assert_int_equal(gm_write(&gm, 0x1000, buf, 16), 0);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(gm_read(&gm, 0x1000, buf, 16), 0);
	assert_int_equal(buf[2], 3);
	gm_destroy(&gm);
}

static void test_bad_sizes(void **state)
{
	struct guest_mem gm;

	assert_int_equal(gm_init(&gm, 0), -EINVAL);
	assert_int_equal(gm_init(&gm, 4097), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_small_guest_is_one_region),
		cmocka_unit_test(test_large_guest_splits_around_hole),
		cmocka_unit_test(test_hostile_ranges_rejected),
		cmocka_unit_test(test_bad_sizes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
