/*
 * test_block.c - the block layer and the raw driver on real files.
 *
 * Files live under $TMPDIR (or /tmp).  Every request goes through the
 * io_uring path and completes on a real event loop, which the tests run
 * until the callbacks they wait for have come.
 *
 * How flush is proven real: a buffered write leaves the file's page-cache
 * page dirty (PG_dirty, read through /proc/self/pagemap and
 * /proc/kpageflags on a mapping of the file); only a real fdatasync cleans
 * it within the test's few milliseconds (the kernel's own writeback waits
 * 30 s for dirty pages to expire).  So the test checks dirty -> block_flush
 * -> clean, and also that the driver counted an IORING_OP_FSYNC sent and a
 * successful completion from the kernel.  A no-op flush fails both.  When
 * the kernel hides page flags (no root, no /proc/kpageflags), only the
 * counters are checked.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "block/block.h"
#include "core/event_loop.h"

#define MiB (1024 * 1024)

struct ctx {
	struct evloop loop;
	char path[256];
	int results[4096];
	int nr_done;
};

/* The test being run (callbacks get only their result slot). */
static struct ctx *g;

static void count_cb(void *opaque, int result)
{
	*(int *)opaque = result;
	g->nr_done++;
}

static uint8_t pattern(uint64_t i, uint8_t seed)
{
	return (uint8_t)(i * 7 + seed + (i >> 9));
}

static void make_file(struct ctx *c, uint64_t size, uint8_t seed)
{
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	uint8_t *buf = malloc(size);
	int fd;

	snprintf(c->path, sizeof(c->path), "%s/kvmm-test-block-XXXXXX", dir);
	fd = mkstemp(c->path);
	assert_true(fd >= 0);
	for (uint64_t i = 0; i < size; i++)
		buf[i] = pattern(i, seed);
	assert_int_equal(pwrite(fd, buf, size, 0), (ssize_t)size);
	close(fd);
	free(buf);
}

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));

	assert_int_equal(evloop_init(&c->loop, NULL), 0);
	make_file(c, MiB, 3);
	g = c;
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;

	unlink(c->path);
	evloop_destroy(&c->loop);
	free(c);
	return 0;
}

static struct block_dev *open_ok(struct ctx *c, bool readonly, bool direct)
{
	struct block_opts o = { .path = c->path, .readonly = readonly, .direct = direct };
	struct block_dev *bd;
	char err[256] = "";
	int r = block_open(&o, &c->loop, &bd, err, sizeof(err));

	if (r)
		fail_msg("block_open: %d %s", r, err);
	return bd;
}

/* Run the loop until `n` count_cb completions have come. */
static void wait_done(struct ctx *c, int n)
{
	for (int spins = 0; c->nr_done < n; spins++) {
		assert_true(spins < 10000);
		evloop_run_once(&c->loop, 100);
	}
}

static int file_read(struct ctx *c, void *buf, size_t len, off_t off)
{
	int fd = open(c->path, O_RDONLY);
	ssize_t n = pread(fd, buf, len, off);

	close(fd);
	return n == (ssize_t)len ? 0 : -1;
}

/* Write through several iovecs at several offsets, read back with another
 * split, compare with the file itself. */
static void test_roundtrip(void **state)
{
	struct ctx *c = *state;
	struct block_dev *bd = open_ok(c, false, false);
	static const uint64_t offsets[] = { 0, 512, 4096 + 512, 65536, MiB - 3 * 4096 };
	static uint8_t src[3 * 4096], dst[3 * 4096], file[3 * 4096];

	assert_int_equal(bd->size, MiB);
	assert_int_equal(bd->logical_block, 512);
	for (unsigned k = 0; k < sizeof(offsets) / sizeof(offsets[0]); k++) {
		struct iovec wv[3] = {
			{ src, 512 }, { src + 512, 4096 + 1024 }, { src + 5632, sizeof(src) - 5632 },
		};
		struct iovec rv[4] = {
			{ dst, 100 }, { dst + 100, 7000 }, { dst + 7100, 1 },
			{ dst + 7101, sizeof(dst) - 7101 },
		};

		for (size_t i = 0; i < sizeof(src); i++)
			src[i] = (uint8_t)(i * 13 + k);
		memset(dst, 0xee, sizeof(dst));
		c->nr_done = 0;
		assert_int_equal(block_writev(bd, offsets[k], wv, 3, count_cb, &c->results[0]), 0);
		block_submit(bd);
		wait_done(c, 1);
		assert_int_equal(c->results[0], 0);
		assert_int_equal(block_readv(bd, offsets[k], rv, 4, count_cb, &c->results[1]), 0);
		block_submit(bd);
		wait_done(c, 2);
		assert_int_equal(c->results[1], 0);
		assert_memory_equal(src, dst, sizeof(src));
		assert_int_equal(file_read(c, file, sizeof(file), offsets[k]), 0);
		assert_memory_equal(src, file, sizeof(src));
	}
	/* A batch: many small reads queued, one submit. */
	c->nr_done = 0;
	static uint8_t many[64][512];
	struct iovec mv[64];
	for (int i = 0; i < 64; i++) {
		mv[i] = (struct iovec){ many[i], 512 };
		assert_int_equal(block_readv(bd, i * 8192, &mv[i], 1, count_cb, &c->results[i]), 0);
	}
	block_submit(bd);
	wait_done(c, 64);
	for (int i = 0; i < 64; i++) {
		uint8_t ref[512];

		assert_int_equal(c->results[i], 0);
		assert_int_equal(file_read(c, ref, 512, i * 8192), 0);
		assert_memory_equal(ref, many[i], 512);
	}
	block_close(bd);
}

/* More requests than the completion queue holds, all before one submit:
 * none is dropped. */
static void test_more_than_ring(void **state)
{
	struct ctx *c = *state;
	struct block_dev *bd = open_ok(c, false, false);
	static uint8_t bufs[3000][16];
	static struct iovec v[3000];

	c->nr_done = 0;
	for (int i = 0; i < 3000; i++) {
		v[i] = (struct iovec){ bufs[i], 16 };
		assert_int_equal(block_readv(bd, (uint64_t)i * 256, &v[i], 1, count_cb,
					     &c->results[i]), 0);
	}
	block_submit(bd);
	wait_done(c, 3000);
	for (int i = 0; i < 3000; i++) {
		uint8_t ref[16];

		assert_int_equal(c->results[i], 0);
		assert_int_equal(file_read(c, ref, 16, (off_t)i * 256), 0);
		assert_memory_equal(ref, bufs[i], 16);
	}
	assert_true(bd->stats.sqes[BLOCK_OP_READ] >= 3000);
	block_close(bd);
}

static void test_bounds_and_readonly(void **state)
{
	struct ctx *c = *state;
	struct block_dev *bd = open_ok(c, false, false);
	uint8_t buf[1024];
	struct iovec v = { buf, sizeof(buf) };
	struct iovec big[2] = { { buf, sizeof(buf) }, { buf, UINT64_MAX - 100 } };

	assert_int_equal(block_readv(bd, MiB - 512, &v, 1, count_cb, c->results), -EINVAL);
	assert_int_equal(block_writev(bd, MiB, &v, 1, count_cb, c->results), -EINVAL);
	assert_int_equal(block_readv(bd, UINT64_MAX - 10, &v, 1, count_cb, c->results), -EINVAL);
	assert_int_equal(block_readv(bd, 0, big, 2, count_cb, c->results), -EINVAL);
	assert_int_equal(block_discard(bd, MiB - 512, 1024, count_cb, c->results), -EINVAL);
	assert_int_equal(block_write_zeroes(bd, 1, MiB, false, count_cb, c->results), -EINVAL);
	assert_int_equal(block_readv(bd, 0, &v, -1, count_cb, c->results), -EINVAL);
	/* The end exactly is fine. */
	c->nr_done = 0;
	assert_int_equal(block_readv(bd, MiB - 1024, &v, 1, count_cb, c->results), 0);
	block_submit(bd);
	wait_done(c, 1);
	assert_int_equal(c->results[0], 0);
	block_close(bd);

	bd = open_ok(c, true, false);
	assert_true(bd->readonly);
	assert_int_equal(block_writev(bd, 0, &v, 1, count_cb, c->results), -EROFS);
	assert_int_equal(block_discard(bd, 0, 4096, count_cb, c->results), -EROFS);
	assert_int_equal(block_write_zeroes(bd, 0, 4096, true, count_cb, c->results), -EROFS);
	c->nr_done = 0;
	assert_int_equal(block_readv(bd, 0, &v, 1, count_cb, c->results), 0);
	block_submit(bd);
	wait_done(c, 1);
	assert_int_equal(c->results[0], 0);
	block_close(bd);
}

/* PG_dirty of the page cache page at file offset 0: 1, 0, or -1 when the
 * kernel does not tell. */
static int page_dirty(const char *path)
{
	int fd = open(path, O_RDONLY), pm, kf;
	volatile uint8_t *p;
	uint64_t e = 0, flags = 0;

	p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return -1;
	(void)p[0];
	pm = open("/proc/self/pagemap", O_RDONLY);
	kf = open("/proc/kpageflags", O_RDONLY);
	if (pm < 0 || kf < 0 ||
	    pread(pm, &e, 8, ((uintptr_t)p / 4096) * 8) != 8 ||
	    !(e >> 63) || !(e & ((1ull << 55) - 1)) ||
	    pread(kf, &flags, 8, (e & ((1ull << 55) - 1)) * 8) != 8) {
		flags = UINT64_MAX;
	}
	if (pm >= 0)
		close(pm);
	if (kf >= 0)
		close(kf);
	munmap((void *)p, 4096);
	return flags == UINT64_MAX ? -1 : (int)((flags >> 4) & 1); /* KPF_DIRTY */
}

static void test_flush_is_fdatasync(void **state)
{
	struct ctx *c = *state;
	struct block_dev *bd = open_ok(c, false, false);
	uint8_t buf[512];
	struct iovec v = { buf, sizeof(buf) };
	int d;

	/* Start from clean pages. */
	int fd = open(c->path, O_RDONLY);
	fdatasync(fd);
	close(fd);
	memset(buf, 0x5a, sizeof(buf));
	c->nr_done = 0;
	assert_int_equal(block_writev(bd, 0, &v, 1, count_cb, c->results), 0);
	block_submit(bd);
	wait_done(c, 1);
	assert_int_equal(c->results[0], 0);
	d = page_dirty(c->path);
	if (d >= 0)
		assert_int_equal(d, 1);
	assert_int_equal(bd->stats.flushes_done, 0);
	assert_int_equal(block_flush(bd, count_cb, &c->results[1]), 0);
	block_submit(bd);
	wait_done(c, 2);
	assert_int_equal(c->results[1], 0);
	assert_int_equal(bd->stats.sqes[BLOCK_OP_FLUSH], 1);
	assert_int_equal(bd->stats.flushes_done, 1);
	d = page_dirty(c->path);
	if (d >= 0)
		assert_int_equal(d, 0);
	else
		print_message("no /proc/kpageflags: flush checked by counters only\n");
	block_close(bd);
}

static uint64_t blocks_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_blocks;
}

static void read_expect_zero(struct ctx *c, struct block_dev *bd, uint64_t off,
			     uint64_t len, bool zero)
{
	uint8_t *buf = malloc(len), *ref = malloc(len);
	struct iovec v = { buf, len };

	memset(buf, 0x11, len);
	c->nr_done = 0;
	assert_int_equal(block_readv(bd, off, &v, 1, count_cb, c->results), 0);
	block_submit(bd);
	wait_done(c, 1);
	assert_int_equal(c->results[0], 0);
	if (zero)
		memset(ref, 0, len);
	else
		assert_int_equal(file_read(c, ref, len, off), 0);
	assert_memory_equal(ref, buf, len);
	if (!zero) {
		uint64_t nz = 0;
		for (uint64_t i = 0; i < len; i++)
			nz += buf[i] != 0;
		assert_true(nz > len / 2);
	}
	free(buf);
	free(ref);
}

static void test_discard_punches_holes(void **state)
{
	struct ctx *c = *state;
	struct block_dev *bd = open_ok(c, false, false);
	uint64_t before, after;
	int fd = open(c->path, O_RDONLY);

	fdatasync(fd);
	close(fd);
	before = blocks_of(c->path);
	assert_true(before >= MiB / 512);
	c->nr_done = 0;
	assert_int_equal(block_discard(bd, 256 * 1024, 512 * 1024, count_cb, c->results), 0);
	block_submit(bd);
	wait_done(c, 1);
	assert_int_equal(c->results[0], 0);
	after = blocks_of(c->path);
	assert_true(after <= before - 512 * 1024 / 512);
	assert_int_equal(bd->stats.sqes[BLOCK_OP_DISCARD], 1);
	read_expect_zero(c, bd, 256 * 1024, 512 * 1024, true);
	read_expect_zero(c, bd, 0, 256 * 1024, false);
	read_expect_zero(c, bd, 768 * 1024, 256 * 1024, false);
	block_close(bd);
}

static void test_write_zeroes(void **state)
{
	struct ctx *c = *state;
	struct block_dev *bd = open_ok(c, false, false);
	uint64_t before = blocks_of(c->path);

	c->nr_done = 0;
	/* ZERO_RANGE (keeps blocks), and an unaligned one. */
	assert_int_equal(block_write_zeroes(bd, 4096, 8192, false, count_cb, &c->results[0]), 0);
	assert_int_equal(block_write_zeroes(bd, 100000 + 3, 1000, false, count_cb, &c->results[1]), 0);
	/* PUNCH_HOLE when unmapping is allowed. */
	assert_int_equal(block_write_zeroes(bd, 512 * 1024, 256 * 1024, true, count_cb, &c->results[2]), 0);
	block_submit(bd);
	wait_done(c, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(c->results[i], 0);
	read_expect_zero(c, bd, 4096, 8192, true);
	read_expect_zero(c, bd, 100003, 1000, true);
	read_expect_zero(c, bd, 512 * 1024, 256 * 1024, true);
	read_expect_zero(c, bd, 768 * 1024, 4096, false);
	read_expect_zero(c, bd, 0, 4096, false);
	{
		uint8_t b;
		int fd = open(c->path, O_RDONLY);

		/* The bytes just around the unaligned range are intact. */
		assert_int_equal(pread(fd, &b, 1, 100002), 1);
		assert_int_equal(b, pattern(100002, 3));
		assert_int_equal(pread(fd, &b, 1, 101003), 1);
		assert_int_equal(b, pattern(101003, 3));
		close(fd);
	}
	assert_true(blocks_of(c->path) < before);
	assert_int_equal(bd->stats.zero_fallbacks, 0);
	block_close(bd);
}

/* A file system without FALLOC_FL_ZERO_RANGE (tmpfs): write zeroes falls
 * back to writing zeros, and says so in the counters. */
static void test_write_zeroes_fallback(void **state)
{
	struct ctx *c = *state;
	struct stat st;
	char saved[256];
	struct block_dev *bd;

	if (stat("/dev/shm", &st) || !S_ISDIR(st.st_mode))
		skip();
	memcpy(saved, c->path, sizeof(saved));
	setenv("TMPDIR", "/dev/shm", 1);
	make_file(c, 2 * MiB, 7);
	unsetenv("TMPDIR");
	bd = open_ok(c, false, false);
	c->nr_done = 0;
	assert_int_equal(block_write_zeroes(bd, 4096, 3 * MiB / 2, false, count_cb, &c->results[0]), 0);
	assert_int_equal(block_write_zeroes(bd, 0, 512, false, count_cb, &c->results[1]), 0);
	block_submit(bd);
	wait_done(c, 2);
	assert_int_equal(c->results[0], 0);
	assert_int_equal(c->results[1], 0);
	if (bd->stats.zero_fallbacks == 0)
		print_message("/dev/shm did ZERO_RANGE itself: fallback not exercised\n");
	else
		assert_true(bd->stats.sqes[BLOCK_OP_WRITE_ZEROES] >= 3); /* refused + 2 chunks */
	read_expect_zero(c, bd, 0, 512, true);
	read_expect_zero(c, bd, 4096, 3 * MiB / 2, true);
	read_expect_zero(c, bd, 3 * MiB / 2 + 4096, 4096, false);
	block_close(bd);
	unlink(c->path);
	memcpy(c->path, saved, sizeof(saved));
}

/* cache=none: O_DIRECT with guest buffers at odd addresses and reads at
 * odd offsets go through bounce buffers; unaligned writes are refused. */
static void test_direct_unaligned(void **state)
{
	struct ctx *c = *state;
	struct block_dev *bd = open_ok(c, false, true);
	uint32_t lb = bd->logical_block;
	uint8_t *raw = malloc(5 * 4096 + 64), *src = raw + 3, *dst;
	uint8_t *aligned_buf = NULL;
	uint8_t ref[2 * 4096];
	struct iovec v[2];

	assert_true(lb >= 512 && !(lb & (lb - 1)));
	for (int i = 0; i < 2 * 4096; i++)
		src[i] = (uint8_t)(i ^ 0xa5);
	/* Unaligned memory, aligned offset: bounced write. */
	v[0] = (struct iovec){ src, 4096 };
	v[1] = (struct iovec){ src + 4096, 4096 };
	c->nr_done = 0;
	assert_int_equal(block_writev(bd, 8192, v, 2, count_cb, c->results), 0);
	block_submit(bd);
	wait_done(c, 1);
	assert_int_equal(c->results[0], 0);
	assert_true(bd->stats.bounced >= 1);
	assert_int_equal(file_read(c, ref, sizeof(ref), 8192), 0);
	assert_memory_equal(ref, src, sizeof(ref));
	/* Unaligned memory and offset: bounced read of the enclosing blocks. */
	dst = raw + 2 * 4096 + 7;
	memset(dst, 0, 1000);
	v[0] = (struct iovec){ dst, 1000 };
	c->nr_done = 0;
	assert_int_equal(block_readv(bd, 8192 + 100, v, 1, count_cb, c->results), 0);
	block_submit(bd);
	wait_done(c, 1);
	assert_int_equal(c->results[0], 0);
	assert_memory_equal(dst, src + 100, 1000);
	/* Aligned everything: no bounce. */
	uint64_t bounced = bd->stats.bounced;
	assert_int_equal(posix_memalign((void **)&aligned_buf, 4096, 4096), 0);
	v[0] = (struct iovec){ aligned_buf, 4096 };
	c->nr_done = 0;
	assert_int_equal(block_readv(bd, 8192, v, 1, count_cb, c->results), 0);
	block_submit(bd);
	wait_done(c, 1);
	assert_int_equal(c->results[0], 0);
	assert_int_equal(bd->stats.bounced, bounced);
	assert_memory_equal(aligned_buf, src, 4096);
	/* An unaligned write offset cannot be done without read-modify-write. */
	if (lb > 1) {
		v[0] = (struct iovec){ aligned_buf, lb };
		assert_int_equal(block_writev(bd, lb / 2, v, 1, count_cb, c->results), -EINVAL);
	}
	free(aligned_buf);
	free(raw);
	block_close(bd);
}

/* The file shrank under us: reads past its new end see zeros. */
static void test_read_after_truncate(void **state)
{
	struct ctx *c = *state;
	struct block_dev *bd = open_ok(c, false, false);
	uint8_t buf[8192];
	struct iovec v = { buf, sizeof(buf) };

	assert_int_equal(truncate(c->path, 512 * 1024 + 4096), 0);
	memset(buf, 0x77, sizeof(buf));
	c->nr_done = 0;
	assert_int_equal(block_readv(bd, 512 * 1024, &v, 1, count_cb, c->results), 0);
	block_submit(bd);
	wait_done(c, 1);
	assert_int_equal(c->results[0], 0);
	for (int i = 4096; i < 8192; i++)
		assert_int_equal(buf[i], 0);
	block_close(bd);
}

static void test_qcow2_magic_not_raw(void **state)
{
	struct ctx *c = *state;
	struct block_opts o = { .path = c->path };
	struct block_dev *bd;
	char err[256] = "";
	int fd = open(c->path, O_WRONLY);

	assert_int_equal(pwrite(fd, "QFI\xfb\0\0\0\3", 8, 0), 8);
	close(fd);
	/* Probed as qcow2, whose header (the rest is raw bytes) is refused:
	 * never exposed as raw.  test_qcow2.c tests real images. */
	assert_int_equal(block_open(&o, &c->loop, &bd, err, sizeof(err)), -EINVAL);
	assert_null(bd);
	assert_non_null(strstr(err, c->path));
	o.format = "qcow2";
	assert_int_equal(block_open(&o, &c->loop, &bd, err, sizeof(err)), -EINVAL);
	o.format = "vmdk";
	assert_int_equal(block_open(&o, &c->loop, &bd, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unknown format"));
	/* An explicit raw opens anything as raw. */
	o.format = "raw";
	assert_int_equal(block_open(&o, &c->loop, &bd, err, sizeof(err)), 0);
	block_close(bd);
	o.path = "/nonexistent/disk.img";
	o.format = NULL;
	assert_int_equal(block_open(&o, &c->loop, &bd, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/disk.img"));
}

static void test_lock_two_writers(void **state)
{
	struct ctx *c = *state;
	struct block_opts o = { .path = c->path };
	struct block_dev *a, *b, *r1, *r2;
	char err[256] = "";

	a = open_ok(c, false, false);
	assert_int_equal(block_open(&o, &c->loop, &b, err, sizeof(err)), -EAGAIN);
	assert_null(b);
	assert_non_null(strstr(err, "locked by another process"));
	assert_non_null(strstr(err, c->path));
	/* Readers share, with each other and with the writer. */
	r1 = open_ok(c, true, false);
	r2 = open_ok(c, true, false);
	block_close(a);
	/* The writer is gone: a new one gets in beside the readers. */
	b = open_ok(c, false, false);
	block_close(b);
	block_close(r1);
	block_close(r2);
}

static bool have(const char *prog)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", prog);
	return system(cmd) == 0;
}

static int run(const char *fmt, const char *path, char *out, size_t outlen)
{
	char cmd[512];
	FILE *p;
	size_t n;

	snprintf(cmd, sizeof(cmd), fmt, path);
	strcat(cmd, " 2>&1");
	p = popen(cmd, "r");
	assert_non_null(p);
	n = fread(out, 1, outlen - 1, p);
	out[n] = 0;
	return pclose(p);
}

/* kvmm and QEMU exclude each other on the same file. */
static void test_lock_qemu_interop(void **state)
{
	struct ctx *c = *state;
	struct block_opts o = { .path = c->path };
	struct block_dev *bd;
	char out[4096], err[256];
	int pipefd[2], st;
	pid_t pid;

	if (!have("qemu-io") || !have("qemu-img"))
		skip();
	bd = open_ok(c, false, false);
	/* QEMU cannot get the write lock while kvmm writes. */
	assert_int_not_equal(run("qemu-io -f raw -c 'write 0 512' %s", c->path, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "lock"));
	/* A reader that shares everything (-U) still looks. */
	assert_int_equal(run("qemu-img info -U %s", c->path, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "file format: raw"));
	block_close(bd);
	/* Once kvmm is gone QEMU writes. */
	assert_int_equal(run("qemu-io -f raw -c 'write 0 512' %s", c->path, out, sizeof(out)), 0);

	/* qemu-io holding the file open for writing keeps kvmm out. */
	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);

		dup2(pipefd[0], 0);
		dup2(devnull, 1);
		dup2(devnull, 2);
		close(pipefd[1]);
		execlp("qemu-io", "qemu-io", "-f", "raw", c->path, (char *)NULL);
		_exit(127);
	}
	close(pipefd[0]);
	/* Wait until it holds byte 101 ("holds WRITE"; qemu-io shares WRITE
	 * itself, so it leaves 201 alone). */
	for (int i = 0;; i++) {
		int fd = open(c->path, O_RDONLY);
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 101, .l_len = 1 };

		assert_int_equal(fcntl(fd, F_OFD_GETLK, &fl), 0);
		close(fd);
		if (fl.l_type != F_UNLCK)
			break;
		assert_true(i < 500);
		usleep(10000);
	}
	assert_int_equal(block_open(&o, &c->loop, &bd, err, sizeof(err)), -EAGAIN);
	assert_non_null(strstr(err, "locked by another process"));
	/* A read-only kvmm shares, so it may look (like qemu-img info -U). */
	o.readonly = true;
	assert_int_equal(block_open(&o, &c->loop, &bd, err, sizeof(err)), 0);
	block_close(bd);
	close(pipefd[1]); /* EOF: qemu-io quits */
	assert_int_equal(waitpid(pid, &st, 0), pid);
	o.readonly = false;
	assert_int_equal(block_open(&o, &c->loop, &bd, err, sizeof(err)), 0);
	block_close(bd);
}

/* A block device (a loop device over a temp file, 4096-byte sectors):
 * size from BLKGETSIZE64, logical block from BLKSSZGET with O_DIRECT, I/O,
 * discard and write zeroes.  Skipped where loop devices cannot be made. */
static void test_block_device(void **state)
{
	struct ctx *c = *state;
	char out[256], dev[64];
	struct block_opts o = { .path = dev, .direct = true };
	struct block_dev *bd;
	uint8_t *buf = NULL, *back = NULL;
	struct iovec v;

	if (!have("losetup") ||
	    run("losetup -f --show --sector-size 4096 %s", c->path, out, sizeof(out)) ||
	    strncmp(out, "/dev/loop", 9))
		skip();
	snprintf(dev, sizeof(dev), "%.*s", (int)strcspn(out, "\n"), out);
	if (block_open(&o, &c->loop, &bd, out, sizeof(out))) {
		run("losetup -d %s", dev, out, sizeof(out));
		fail_msg("block_open %s: %s", dev, out);
	}
	assert_int_equal(bd->size, MiB);
	assert_int_equal(bd->logical_block, 4096);
	assert_int_equal(posix_memalign((void **)&buf, 4096, 8192), 0);
	assert_int_equal(posix_memalign((void **)&back, 4096, 8192), 0);
	for (int i = 0; i < 8192; i++)
		buf[i] = (uint8_t)(i * 3 + 1);
	v = (struct iovec){ buf, 8192 };
	c->nr_done = 0;
	assert_int_equal(block_writev(bd, 65536, &v, 1, count_cb, &c->results[0]), 0);
	assert_int_equal(block_flush(bd, count_cb, &c->results[1]), 0);
	block_submit(bd);
	wait_done(c, 2);
	assert_int_equal(c->results[0], 0);
	assert_int_equal(c->results[1], 0);
	v = (struct iovec){ back, 8192 };
	assert_int_equal(block_readv(bd, 65536, &v, 1, count_cb, &c->results[2]), 0);
	block_submit(bd);
	wait_done(c, 3);
	assert_int_equal(c->results[2], 0);
	assert_memory_equal(buf, back, 8192);
	/* Through the backing file too. */
	assert_int_equal(file_read(c, back, 8192, 65536), 0);
	assert_memory_equal(buf, back, 8192);
	assert_int_equal(block_write_zeroes(bd, 65536, 4096, false, count_cb, &c->results[3]), 0);
	assert_int_equal(block_discard(bd, 0, 65536, count_cb, &c->results[4]), 0);
	block_submit(bd);
	wait_done(c, 5);
	assert_int_equal(c->results[3], 0);
	assert_int_equal(c->results[4], 0);
	v = (struct iovec){ back, 4096 };
	assert_int_equal(block_readv(bd, 65536, &v, 1, count_cb, &c->results[5]), 0);
	block_submit(bd);
	wait_done(c, 6);
	for (int i = 0; i < 4096; i++)
		assert_int_equal(back[i], 0);
	block_close(bd);
	free(buf);
	free(back);
	run("losetup -d %s", dev, out, sizeof(out));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_more_than_ring, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bounds_and_readonly, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flush_is_fdatasync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_discard_punches_holes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_zeroes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_zeroes_fallback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_direct_unaligned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_after_truncate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_qcow2_magic_not_raw, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lock_two_writers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lock_qemu_interop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_block_device, setup, teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
