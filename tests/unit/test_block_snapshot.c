/*
 * test_block_snapshot.c - block_open() with snapshot=on: a throw-away
 * qcow2 overlay over the image (block.c, open_snapshot).
 *
 * Each test runs in its own directory under $TMPDIR (or /tmp), which is
 * also the TMPDIR the overlay is created in, so the test can see that the
 * overlay leaves no name behind: the directory holds only the base image
 * while the overlay is open and after it is closed.  The base image is
 * compared byte for byte with what it held before, after the guest-side
 * writes have completed and been flushed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "block/block.h"
#include "block/qcow2.h"
#include "core/event_loop.h"

#define MiB (1024 * 1024)
#define BASE_SIZE (4 * MiB)

struct ctx {
	struct evloop loop;
	char dir[256], base[300];
	uint8_t *orig;              /* the base's bytes before the test */
	int results[64];
	int nr_done;
	char *old_tmpdir;
};

static struct ctx *g;

static void count_cb(void *opaque, int result)
{
	*(int *)opaque = result;
	g->nr_done++;
}

static void wait_done(struct ctx *c, int n)
{
	for (int spins = 0; c->nr_done < n; spins++) {
		assert_true(spins < 10000);
		evloop_run_once(&c->loop, 100);
	}
}

static void write_base(struct ctx *c)
{
	int fd = open(c->base, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, c->orig, BASE_SIZE, 0), BASE_SIZE);
	close(fd);
}

static int setup(void **state)
{
	const char *t = getenv("TMPDIR");
	struct ctx *c = calloc(1, sizeof(*c));

	if (t)
		c->old_tmpdir = strdup(t);
	snprintf(c->dir, sizeof(c->dir), "%s/kvmm-test-snap-XXXXXX", t ? t : "/tmp");
	assert_non_null(mkdtemp(c->dir));
	snprintf(c->base, sizeof(c->base), "%s/base.img", c->dir);
	c->orig = malloc(BASE_SIZE);
	for (uint64_t i = 0; i < BASE_SIZE; i++)
		c->orig[i] = (uint8_t)(i * 13 + (i >> 12) + 1);
	write_base(c);
	setenv("TMPDIR", c->dir, 1);
	assert_int_equal(evloop_init(&c->loop, NULL), 0);
	g = c;
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	char cmd[600];

	evloop_destroy(&c->loop);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
	assert_int_equal(system(cmd), 0);
	if (c->old_tmpdir)
		setenv("TMPDIR", c->old_tmpdir, 1);
	else
		unsetenv("TMPDIR");
	free(c->old_tmpdir);
	free(c->orig);
	free(c);
	return 0;
}

/* Entries in the test directory other than . and .. */
static int dir_entries(struct ctx *c)
{
	DIR *d = opendir(c->dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void base_unchanged(struct ctx *c)
{
	uint8_t *now = malloc(BASE_SIZE);
	int fd = open(c->base, O_RDONLY);
	struct stat st;

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, BASE_SIZE);
	assert_int_equal(pread(fd, now, BASE_SIZE, 0), BASE_SIZE);
	close(fd);
	assert_memory_equal(now, c->orig, BASE_SIZE);
	free(now);
}

static struct block_dev *open_snap(struct ctx *c, const char *format)
{
	struct block_opts o = { .path = c->base, .format = format, .snapshot = true };
	struct block_dev *bd;
	char err[256] = "";
	int r = block_open(&o, &c->loop, &bd, err, sizeof(err));

	if (r)
		fail_msg("block_open snapshot=on: %d %s", r, err);
	return bd;
}

static int io(struct ctx *c, struct block_dev *bd, bool write, uint64_t off,
	      void *buf, size_t len)
{
	struct iovec v = { buf, len };
	int r;

	c->nr_done = 0;
	r = write ? block_writev(bd, off, &v, 1, count_cb, c->results)
		  : block_readv(bd, off, &v, 1, count_cb, c->results);
	if (r)
		return r;
	block_submit(bd);
	wait_done(c, 1);
	return c->results[0];
}

static int flush(struct ctx *c, struct block_dev *bd)
{
	c->nr_done = 0;
	assert_int_equal(block_flush(bd, count_cb, c->results), 0);
	block_submit(bd);
	wait_done(c, 1);
	return c->results[0];
}

/* Writes at several offsets and lengths (sub-cluster, across clusters)
 * read back as written, the rest reads as the base, the base file does not
 * change, and the overlay never has a name in TMPDIR. */
static void check_writes(struct ctx *c, struct block_dev *bd)
{
	static const struct { uint64_t off; size_t len; } w[] = {
		{ 0, 512 }, { 4096 + 512, 1024 }, { 65536 - 512, 8192 },
		{ MiB + 12345, 200 * 1024 }, { BASE_SIZE - 4096, 4096 },
	};
	uint8_t *expect = malloc(BASE_SIZE), *got = malloc(BASE_SIZE);

	memcpy(expect, c->orig, BASE_SIZE);
	assert_int_equal(bd->size, BASE_SIZE);
	assert_false(bd->readonly);
	assert_int_equal(dir_entries(c), 1);
	for (unsigned k = 0; k < sizeof(w) / sizeof(w[0]); k++) {
		uint8_t *buf = malloc(w[k].len);

		for (size_t i = 0; i < w[k].len; i++)
			buf[i] = (uint8_t)(0xa5 ^ (i * 7 + k));
		/* Sector 0 of a probed raw base: QEMU's rule, kept. */
		if (w[k].off == 0)
			buf[0] = 'X';
		assert_int_equal(io(c, bd, true, w[k].off, buf, w[k].len), 0);
		memcpy(expect + w[k].off, buf, w[k].len);
		free(buf);
	}
	assert_int_equal(flush(c, bd), 0);
	assert_int_equal(io(c, bd, false, 0, got, BASE_SIZE), 0);
	assert_memory_equal(got, expect, BASE_SIZE);
	base_unchanged(c);
	assert_int_equal(dir_entries(c), 1);
	block_close(bd);
	base_unchanged(c);
	assert_int_equal(dir_entries(c), 1);
	free(expect);
	free(got);
}

static void test_raw_probed(void **state)
{
	struct ctx *c = *state;
	struct block_dev *bd = open_snap(c, NULL);
	uint8_t sec[512];

	/* The probed raw base's sector 0 rule holds on the overlay. */
	assert_true(bd->probed_raw);
	memset(sec, 0, sizeof(sec));
	assert_int_equal(io(c, bd, true, 256, sec, 256), -EINVAL);
	memcpy(sec, "QFI\xfb", 4);
	assert_int_equal(io(c, bd, true, 0, sec, 512), -EPERM);
	/* Messages and statistics name the disk, not the overlay. */
	assert_string_equal(bd->name, c->base);
	check_writes(c, bd);
}

static void test_raw_given(void **state)
{
	struct ctx *c = *state;
	struct block_dev *bd;
	uint8_t sec[512] = "QFI\xfb";

	/* A base starting with the qcow2 magic, opened as format=raw: the
	 * overlay records raw, so its bytes are served as they are. */
	memcpy(c->orig, "QFI\xfb", 4);
	write_base(c);
	bd = open_snap(c, "raw");
	assert_false(bd->probed_raw);
	assert_int_equal(io(c, bd, false, 0, sec, 512), 0);
	assert_memory_equal(sec, c->orig, 512);
	assert_int_equal(io(c, bd, true, 0, sec, 512), 0);
	check_writes(c, bd);
}

static uint8_t *file_bytes(const char *path, off_t *size)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	uint8_t *buf;

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	buf = malloc(st.st_size);
	assert_int_equal(pread(fd, buf, st.st_size, 0), st.st_size);
	close(fd);
	*size = st.st_size;
	return buf;
}

/* A qcow2 base (small clusters): the overlay records qcow2, reads come
 * through the base's own mapping, and the base file keeps every byte. */
static void test_qcow2_base(void **state)
{
	struct ctx *c = *state;
	static const uint64_t offs[] = { 100, MiB + 4096 * 3 + 17, BASE_SIZE - 9000 };
	struct block_opts o = { .path = c->base };
	uint8_t *before, *after, *expect = malloc(BASE_SIZE), *got = malloc(BASE_SIZE);
	struct block_dev *bd;
	off_t n1, n2;
	char err[256] = "";

	assert_int_equal(qcow2_create(c->base, BASE_SIZE, 4096, NULL, NULL, err, sizeof(err)), 0);
	assert_int_equal(block_open(&o, &c->loop, &bd, err, sizeof(err)), 0);
	assert_int_equal(io(c, bd, true, 0, c->orig, BASE_SIZE), 0);
	assert_int_equal(flush(c, bd), 0);
	block_close(bd);
	before = file_bytes(c->base, &n1);

	bd = open_snap(c, NULL);
	assert_false(bd->probed_raw);
	assert_int_equal(bd->size, BASE_SIZE);
	memcpy(expect, c->orig, BASE_SIZE);
	for (unsigned k = 0; k < sizeof(offs) / sizeof(offs[0]); k++) {
		uint8_t buf[9000];

		memset(buf, 0x5a + k, sizeof(buf));
		assert_int_equal(io(c, bd, true, offs[k], buf, sizeof(buf)), 0);
		memcpy(expect + offs[k], buf, sizeof(buf));
	}
	assert_int_equal(flush(c, bd), 0);
	assert_int_equal(io(c, bd, false, 0, got, BASE_SIZE), 0);
	assert_memory_equal(got, expect, BASE_SIZE);
	assert_int_equal(dir_entries(c), 1);
	block_close(bd);

	after = file_bytes(c->base, &n2);
	assert_int_equal(n1, n2);
	assert_memory_equal(before, after, n1);
	assert_int_equal(block_open(&o, &c->loop, &bd, err, sizeof(err)), 0);
	assert_int_equal(io(c, bd, false, 0, got, BASE_SIZE), 0);
	assert_memory_equal(got, c->orig, BASE_SIZE);
	block_close(bd);
	assert_int_equal(dir_entries(c), 1);
	free(before);
	free(after);
	free(expect);
	free(got);
}

/* The base is held like a backing file: readers welcome, writers not;
 * and the overlay does not outlive its session. */
static void test_locks_and_sessions(void **state)
{
	struct ctx *c = *state;
	struct block_opts w = { .path = c->base }, r = { .path = c->base, .readonly = true };
	struct block_dev *bd, *other, *second;
	uint8_t buf[4096], got[4096];
	char err[256] = "";

	bd = open_snap(c, NULL);
	assert_int_equal(block_open(&w, &c->loop, &other, err, sizeof(err)), -EAGAIN);
	assert_non_null(strstr(err, "locked by another process"));
	assert_int_equal(block_open(&r, &c->loop, &other, err, sizeof(err)), 0);
	block_close(other);
	/* Two snapshot sessions of one base are independent. */
	second = open_snap(c, NULL);
	memset(buf, 0x11, sizeof(buf));
	assert_int_equal(io(c, bd, true, 8192, buf, sizeof(buf)), 0);
	assert_int_equal(io(c, second, false, 8192, got, sizeof(got)), 0);
	assert_memory_equal(got, c->orig + 8192, sizeof(got));
	block_close(second);
	block_close(bd);
	/* A new session starts from the base again. */
	bd = open_snap(c, NULL);
	assert_int_equal(io(c, bd, false, 8192, got, sizeof(got)), 0);
	assert_memory_equal(got, c->orig + 8192, sizeof(got));
	block_close(bd);
	/* Gone: a writer gets the base now. */
	assert_int_equal(block_open(&w, &c->loop, &other, err, sizeof(err)), 0);
	block_close(other);
	base_unchanged(c);
	assert_int_equal(dir_entries(c), 1);
}

static void test_bad_combinations(void **state)
{
	struct ctx *c = *state;
	struct block_opts o = { .path = c->base, .snapshot = true, .direct = true };
	struct block_dev *bd;
	uint8_t buf[512] = { 0 };
	char err[256] = "";

	/* cache=none: the overlay's data moves O_DIRECT; the base stays as
	 * it was. */
	assert_int_equal(block_open(&o, &c->loop, &bd, err, sizeof(err)), 0);
	memset(buf, 0x77, sizeof(buf));
	assert_int_equal(io(c, bd, true, 4096, buf, 512), 0);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(io(c, bd, false, 4096, buf, 512), 0);
	assert_int_equal(buf[0], 0x77);
	assert_int_equal(buf[511], 0x77);
	block_close(bd);
	base_unchanged(c);
	memset(buf, 0, sizeof(buf));
	/* readonly=on: accepted (as QEMU), read-only, no overlay. */
	o = (struct block_opts){ .path = c->base, .snapshot = true, .readonly = true };
	assert_int_equal(block_open(&o, &c->loop, &bd, err, sizeof(err)), 0);
	assert_true(bd->readonly);
	assert_int_equal(io(c, bd, true, 4096, buf, 512), -EROFS);
	block_close(bd);
	/* A TMPDIR that does not exist: the message names it. */
	setenv("TMPDIR", "/nonexistent-kvmm-dir", 1);
	o = (struct block_opts){ .path = c->base, .snapshot = true };
	assert_int_equal(block_open(&o, &c->loop, &bd, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent-kvmm-dir"));
	setenv("TMPDIR", c->dir, 1);
	/* A missing base, and an unknown format. */
	o.path = "/nonexistent/base.img";
	assert_int_equal(block_open(&o, &c->loop, &bd, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/base.img"));
	o.path = c->base;
	o.format = "vmdk";
	assert_int_equal(block_open(&o, &c->loop, &bd, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unknown format"));
	base_unchanged(c);
	assert_int_equal(dir_entries(c), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_raw_probed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_raw_given, setup, teardown),
		cmocka_unit_test_setup_teardown(test_qcow2_base, setup, teardown),
		cmocka_unit_test_setup_teardown(test_locks_and_sessions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_combinations, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
