/* test_size.c - --mem style size parsing (util/size.h). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/size.h"

#define MiB (1ull << 20)

static void test_suffixes(void **state)
{
	uint64_t v;

	assert_int_equal(size_parse("512", MiB, &v), 0);
	assert_true(v == 512 * MiB);
	assert_int_equal(size_parse("2G", MiB, &v), 0);
	assert_true(v == 2048 * MiB);
	assert_int_equal(size_parse("1536k", MiB, &v), 0);
	assert_true(v == 1536 * 1024);
	assert_int_equal(size_parse("1T", MiB, &v), 0);
	assert_true(v == 1ull << 40);
	assert_int_equal(size_parse("64MiB", MiB, &v), 0);
	assert_true(v == 64 * MiB);
	assert_int_equal(size_parse("4gb", MiB, &v), 0);
	assert_true(v == 4096 * MiB);
	assert_int_equal(size_parse("4096B", MiB, &v), 0);
	assert_true(v == 4096);
}

static void test_rejects(void **state)
{
	uint64_t v = 7;

	assert_int_equal(size_parse("", MiB, &v), -EINVAL);
	assert_int_equal(size_parse("-1", MiB, &v), -EINVAL);
	assert_int_equal(size_parse("12Q", MiB, &v), -EINVAL);
	assert_int_equal(size_parse("12MM", MiB, &v), -EINVAL);
	assert_int_equal(size_parse("M", MiB, &v), -EINVAL);
	assert_int_equal(size_parse("1 G", MiB, &v), -EINVAL);
	assert_int_equal(size_parse("99999999999999999999", MiB, &v), -ERANGE);
	assert_int_equal(size_parse("99999999G", MiB, &v), 0); /* fits: caller bounds it */
	assert_int_equal(size_parse("9999999999999T", MiB, &v), -ERANGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_suffixes),
		cmocka_unit_test(test_rejects),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
