/*
 * test_qcow2.c - the qcow2 driver against images made and checked by QEMU.
 *
 * Images are created with qemu-img and filled with qemu-io; the reference
 * content is `qemu-img convert -O raw` of the same image.  kvmm must read
 * exactly that.  For writes, kvmm writes the image, the test applies the
 * same writes to a raw copy of the expected content, then `qemu-img check`
 * must find no errors or leaks and `qemu-img compare` must find both
 * identical.  Without qemu-img on the host the tests are skipped.
 * Everything lives in a fresh directory under $TMPDIR (or /tmp).
 */
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

struct ctx {
	struct evloop loop;
	char dir[256];
	int nr_done, result;
};

static struct ctx *g;

static void done_cb(void *opaque, int result)
{
	(void)opaque;
	g->result = result;
	g->nr_done++;
}

/* Run a shell command in the test directory; its exit status. */
static int sh(const char *fmt, ...)
{
	char cmd[2048];
	int n = snprintf(cmd, sizeof(cmd), "cd '%s' && (", g->dir);
	va_list ap;

	va_start(ap, fmt);
	n += vsnprintf(cmd + n, sizeof(cmd) - n, fmt, ap);
	va_end(ap);
	snprintf(cmd + n, sizeof(cmd) - n, ") >/dev/null 2>&1");
	return system(cmd);
}

static void must(int status)
{
	assert_int_equal(status, 0);
}

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

	assert_non_null(c);
	snprintf(c->dir, sizeof(c->dir), "%s/kvmm-test-qcow2-XXXXXX", tmp);
	assert_non_null(mkdtemp(c->dir));
	assert_int_equal(evloop_init(&c->loop, NULL), 0);
	g = c;
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
	assert_int_equal(system(cmd), 0);
	evloop_destroy(&c->loop);
	free(c);
	return 0;
}

static bool have_qemu_img(void)
{
	return system("qemu-img --version >/dev/null 2>&1 && qemu-io --version >/dev/null 2>&1") == 0;
}

#define NEED_QEMU() do { if (!have_qemu_img()) skip(); } while (0)

static int try_open(const char *name, const char *format, bool readonly,
		    struct block_dev **bd, char *err, size_t errlen)
{
	char path[512];
	struct block_opts o = { .path = path, .format = format, .readonly = readonly };

	snprintf(path, sizeof(path), "%s/%s", g->dir, name);
	return block_open(&o, &g->loop, bd, err, errlen);
}

static struct block_dev *open_ok(const char *name, const char *format, bool readonly)
{
	struct block_dev *bd;
	char err[512] = "";
	int r = try_open(name, format, readonly, &bd, err, sizeof(err));

	if (r)
		fail_msg("block_open %s: %d %s", name, r, err);
	return bd;
}

static void wait_one(void)
{
	for (int spins = 0; g->nr_done == 0; spins++) {
		assert_true(spins < 10000);
		evloop_run_once(&g->loop, 100);
	}
	g->nr_done = 0;
}

static int do_io(struct block_dev *bd, bool write, uint64_t off, void *buf, size_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	int r = write ? block_writev(bd, off, &iov, 1, done_cb, NULL)
		      : block_readv(bd, off, &iov, 1, done_cb, NULL);

	if (r)
		return r;
	block_submit(bd);
	assert_int_equal(g->nr_done, 0); /* never from inside submit */
	wait_one();
	return g->result;
}

static uint8_t *load_file(const char *name, size_t *len)
{
	char path[512];
	struct stat st;
	uint8_t *buf;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", g->dir, name);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	buf = malloc(st.st_size ? st.st_size : 1);
	assert_int_equal(pread(fd, buf, st.st_size, 0), st.st_size);
	close(fd);
	*len = st.st_size;
	return buf;
}

static void save_file(const char *name, const uint8_t *buf, size_t len)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", g->dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, buf, len, 0), (ssize_t)len);
	close(fd);
}

/* kvmm reads `name` (whole, in odd-sized pieces) exactly as qemu-img
 * converts it to raw. */
static void check_reads_like_qemu(const char *name)
{
	struct block_dev *bd = open_ok(name, NULL, true);
	size_t len, chunk = 3 * 4096 + 512;
	uint8_t *want, *got;

	must(sh("qemu-img convert -O raw %s ref.raw", name));
	want = load_file("ref.raw", &len);
	assert_int_equal(bd->size, len);
	got = malloc(len);
	for (size_t off = 0; off < len; off += chunk) {
		size_t n = len - off < chunk ? len - off : chunk;

		assert_int_equal(do_io(bd, false, off, got + off, n), 0);
	}
	assert_memory_equal(got, want, len);
	block_close(bd);
	free(got);
	free(want);
}

static void test_read_cluster_sizes(void **state)
{
	static const char *const sizes[] = { "512", "4k", "64k", "2M" };

	(void)state;
	NEED_QEMU();
	for (unsigned i = 0; i < 4; i++) {
		must(sh("rm -f a.qcow2 && qemu-img create -f qcow2 -o cluster_size=%s a.qcow2 9M",
			sizes[i]));
		must(sh("qemu-io -c 'write -P 0xab 0 64k' -c 'write -P 0x11 100000 3000' "
			"-c 'write -P 0x22 5M 1M' -c 'write -z 5200k 8k' -c 'write -P 0x33 9215k 1k' "
			"a.qcow2"));
		check_reads_like_qemu("a.qcow2");
	}
	/* Version 2 (compat=0.10) and unusual refcount widths. */
	must(sh("rm -f a.qcow2 && qemu-img create -f qcow2 -o compat=0.10 a.qcow2 4M && "
		"qemu-io -c 'write -P 0x44 4095 5000' a.qcow2"));
	check_reads_like_qemu("a.qcow2");
	must(sh("rm -f a.qcow2 && qemu-img create -f qcow2 -o refcount_bits=1 a.qcow2 4M && "
		"qemu-io -c 'write -P 0x45 1M 70k' a.qcow2"));
	check_reads_like_qemu("a.qcow2");
}

/* A pattern zlib compresses but not to nothing. */
static void make_pattern_raw(const char *name, size_t len, unsigned seed)
{
	uint8_t *buf = malloc(len);

	for (size_t i = 0; i < len; i++)
		buf[i] = (i / 4096) % 3 == 0 ? 0 : (uint8_t)((i * seed) >> 5 ^ (i >> 11));
	save_file(name, buf, len);
	free(buf);
}

static void test_read_compressed(void **state)
{
	(void)state;
	NEED_QEMU();
	make_pattern_raw("p.raw", 3 * MiB + 4096, 7);
	must(sh("qemu-img convert -c -O qcow2 p.raw c.qcow2"));
	check_reads_like_qemu("c.qcow2");
	must(sh("qemu-img convert -c -O qcow2 -o cluster_size=4k p.raw c4.qcow2"));
	check_reads_like_qemu("c4.qcow2");
}

static void test_read_backing_chain(void **state)
{
	(void)state;
	NEED_QEMU();
	make_pattern_raw("base.raw", 4 * MiB, 3);
	must(sh("qemu-img create -f qcow2 -b base.raw -F raw mid.qcow2 && "
		"qemu-io -c 'write -P 0x55 64k 64k' -c 'write -z 1M 4k' mid.qcow2"));
	/* The top is larger than its backing: the rest reads zeros. */
	must(sh("qemu-img create -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 6M && "
		"qemu-io -c 'write -P 0x66 100k 10k' -c 'write -P 0x67 5M 4k' top.qcow2"));
	check_reads_like_qemu("top.qcow2");
}

/* Apply the same writes to kvmm's image and to the expected raw bytes,
 * then let QEMU check the image and compare it. */
struct wr {
	uint64_t off, len;
	uint8_t val;
};

static void write_and_check(const char *name, const struct wr *w, unsigned n)
{
	struct block_dev *bd;
	uint8_t *want, *buf;
	size_t len;

	must(sh("qemu-img convert -O raw %s want.raw", name));
	want = load_file("want.raw", &len);
	bd = open_ok(name, "qcow2", false);
	assert_int_equal(bd->size, len);
	for (unsigned i = 0; i < n; i++) {
		buf = malloc(w[i].len);
		for (uint64_t j = 0; j < w[i].len; j++)
			buf[j] = (uint8_t)(w[i].val + j / 512);
		assert_int_equal(do_io(bd, true, w[i].off, buf, w[i].len), 0);
		memcpy(want + w[i].off, buf, w[i].len);
		/* Read back through kvmm at once, too. */
		memset(buf, 0xee, w[i].len);
		assert_int_equal(do_io(bd, false, w[i].off, buf, w[i].len), 0);
		assert_memory_equal(buf, want + w[i].off, w[i].len);
		free(buf);
	}
	block_close(bd);
	save_file("want.raw", want, len);
	free(want);
	must(sh("qemu-img check %s", name));
	must(sh("qemu-img compare -f qcow2 -F raw %s want.raw", name));
}

static const struct wr writes[] = {
	{ 0, 65536, 0x10 },             /* a whole 64k cluster */
	{ 70000, 1000, 0x20 },          /* partial, new cluster */
	{ 70000 + 1000, 512, 0x21 },    /* into the cluster just allocated */
	{ 2 * MiB - 4096, 8192, 0x30 }, /* across an l2 boundary at 4k clusters */
	{ 3 * MiB + 512, 200 * 1024, 0x40 },
	{ 6 * MiB, 4096, 0x50 },
};
#define NWRITES (sizeof(writes) / sizeof(writes[0]))

static void test_write_allocating(void **state)
{
	static const char *const sizes[] = { "512", "4k", "64k", "2M" };

	(void)state;
	NEED_QEMU();
	for (unsigned i = 0; i < 4; i++) {
		must(sh("rm -f w.qcow2 && qemu-img create -f qcow2 -o cluster_size=%s w.qcow2 8M && "
			"qemu-io -c 'write -P 0x77 1M 100k' -c 'write -z 3M 64k' w.qcow2", sizes[i]));
		write_and_check("w.qcow2", writes, NWRITES);
		/* kvmm then reads back what it wrote, like QEMU. */
		check_reads_like_qemu("w.qcow2");
	}
	must(sh("rm -f w.qcow2 && qemu-img create -f qcow2 -o compat=0.10 w.qcow2 8M"));
	write_and_check("w.qcow2", writes, NWRITES);
	must(sh("rm -f w.qcow2 && qemu-img create -f qcow2 -o refcount_bits=1,cluster_size=4k "
		"w.qcow2 8M"));
	write_and_check("w.qcow2", writes, NWRITES);
	must(sh("rm -f w.qcow2 && qemu-img create -f qcow2 -o refcount_bits=64 w.qcow2 8M"));
	write_and_check("w.qcow2", writes, NWRITES);
}

static void test_write_over_backing(void **state)
{
	(void)state;
	NEED_QEMU();
	make_pattern_raw("base.raw", 8 * MiB, 5);
	must(sh("qemu-img convert -O qcow2 -o cluster_size=4k base.raw base.qcow2 && "
		"qemu-img create -f qcow2 -b base.qcow2 -F qcow2 ov.qcow2 && "
		"qemu-io -c 'write -P 0x99 3M 10k' ov.qcow2"));
	write_and_check("ov.qcow2", writes, NWRITES);
	/* The backing file was not touched. */
	must(sh("qemu-img compare -f qcow2 -F raw base.qcow2 base.raw"));
}

static void test_write_compressed(void **state)
{
	(void)state;
	NEED_QEMU();
	make_pattern_raw("p.raw", 8 * MiB, 11);
	must(sh("qemu-img convert -c -O qcow2 p.raw c.qcow2"));
	write_and_check("c.qcow2", writes, NWRITES);
}

/* Images kvmm creates: QEMU finds them clean, reads them as kvmm says
 * (an overlay shows its backing file), and kvmm writes them cleanly. */
static void test_create_and_info(void **state)
{
	static const uint32_t sizes[] = { 512, 4096, 65536, 2u << 20 };
	struct qcow2_info qi;
	char path[512], err[512] = "";
	int fd;

	(void)state;
	NEED_QEMU();
	for (unsigned i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s/n.qcow2", g->dir);
		assert_int_equal(qcow2_create(path, 8 * MiB + 100, sizes[i], NULL, NULL,
					      err, sizeof(err)), 0);
		must(sh("qemu-img check n.qcow2"));
		fd = open(path, O_RDONLY);
		assert_int_equal(qcow2_info(fd, path, &qi, err, sizeof(err)), 0);
		close(fd);
		assert_int_equal(qi.version, 3);
		assert_int_equal(qi.size, 8 * MiB + 512);
		assert_int_equal(qi.cluster_size, sizes[i]);
		assert_int_equal(qi.refcount_bits, 16);
		assert_string_equal(qi.backing, "");
		write_and_check("n.qcow2", writes, NWRITES);
	}
	make_pattern_raw("base.raw", 8 * MiB, 13);
	snprintf(path, sizeof(path), "%s/o.qcow2", g->dir);
	assert_int_equal(qcow2_create(path, 8 * MiB, 65536, "base.raw", "raw", err, sizeof(err)), 0);
	must(sh("qemu-img check o.qcow2"));
	must(sh("qemu-img info o.qcow2 | grep -qx 'backing file format: raw'"));
	fd = open(path, O_RDONLY);
	assert_int_equal(qcow2_info(fd, path, &qi, err, sizeof(err)), 0);
	close(fd);
	assert_string_equal(qi.backing, "base.raw");
	assert_string_equal(qi.backing_fmt, "raw");
	check_reads_like_qemu("o.qcow2");
	write_and_check("o.qcow2", writes, NWRITES);
	/* Refusals. */
	assert_int_equal(qcow2_create(path, MiB, 1000, NULL, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "power of two"));
	assert_int_equal(qcow2_create(path, MiB, 65536, "b", NULL, err, sizeof(err)), -EINVAL);
	assert_int_equal(qcow2_create(path, 1ull << 40, 512, NULL, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "too large"));
}

/* With an internal snapshot, l2_tables and data clusters are shared
 * (refcount 2, no COPIED): kvmm must copy them before writing, and the
 * snapshot must keep its old content. */
static void test_write_with_snapshot(void **state)
{
	(void)state;
	NEED_QEMU();
	must(sh("qemu-img create -f qcow2 -o cluster_size=4k s.qcow2 8M && "
		"qemu-io -c 'write -P 0x31 0 3M' -c 'write -P 0x32 6M 100k' s.qcow2 && "
		"qemu-img snapshot -c snap1 s.qcow2 && "
		"qemu-img convert -O raw -l snapshot.name=snap1 s.qcow2 snap1.raw"));
	write_and_check("s.qcow2", writes, NWRITES);
	must(sh("qemu-img convert -O raw -l snapshot.name=snap1 s.qcow2 snap1-after.raw && "
		"cmp snap1.raw snap1-after.raw"));
}

/* A backing file is locked as QEMU locks one: no writer while an overlay
 * reads it, readers and other overlays welcome. */
static void test_backing_locked(void **state)
{
	struct block_dev *ov, *ov2, *base;
	char err[512] = "";

	(void)state;
	NEED_QEMU();
	make_pattern_raw("base.raw", MiB, 2);
	must(sh("qemu-img create -f qcow2 -b base.raw -F raw o1.qcow2 && "
		"qemu-img create -f qcow2 -b base.raw -F raw o2.qcow2"));
	ov = open_ok("o1.qcow2", NULL, false);
	ov2 = open_ok("o2.qcow2", NULL, false);
	assert_int_equal(try_open("base.raw", "raw", false, &base, err, sizeof(err)), -EAGAIN);
	assert_non_null(strstr(err, "locked"));
	base = open_ok("base.raw", "raw", true);
	block_close(base);
	assert_int_not_equal(sh("qemu-io -f raw -c 'write 0 512' base.raw"), 0);
	block_close(ov2);
	block_close(ov);
	/* A writer keeps overlays out. */
	base = open_ok("base.raw", "raw", false);
	assert_int_equal(try_open("o1.qcow2", NULL, true, &ov, err, sizeof(err)), -EAGAIN);
	assert_non_null(strstr(err, "base.raw"));
	block_close(base);
}

/* ---- bad images ---- */

static void patch(const char *name, uint64_t off, const void *bytes, size_t len)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", g->dir, name);
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, bytes, len, off), (ssize_t)len);
	close(fd);
}

static void expect_refused(const char *name, bool readonly, int want_r, const char *msg)
{
	struct block_dev *bd;
	char err[512] = "";
	int r = try_open(name, NULL, readonly, &bd, err, sizeof(err));

	if (r != want_r || !strstr(err, msg))
		fail_msg("%s: got %d \"%s\", want %d \"%s\"", name, r, err, want_r, msg);
	assert_null(bd);
	assert_non_null(strstr(err, name));
}

static void test_bad_headers(void **state)
{
	uint8_t be30[4] = { 0, 0, 0, 30 }, far[8] = { 0, 0, 0, 1, 0, 0, 0, 0 };
	uint8_t bit9[8] = { 0, 0, 0, 0, 0, 0, 2, 0 }, bit4[8] = { 0, 0, 0, 0, 0, 0, 0, 0x10 };

	(void)state;
	NEED_QEMU();
	must(sh("qemu-img create -f qcow2 ok.qcow2 1M"));
	must(sh("head -c 40 ok.qcow2 > trunc.qcow2"));
	expect_refused("trunc.qcow2", true, -EINVAL, "truncated qcow2 header");
	must(sh("cp ok.qcow2 cb.qcow2"));
	patch("cb.qcow2", 20, be30, 4);
	expect_refused("cb.qcow2", true, -EINVAL, "cluster_bits 30 out of range");
	must(sh("cp ok.qcow2 l1.qcow2"));
	patch("l1.qcow2", 40, far, 8);
	expect_refused("l1.qcow2", true, -EINVAL, "l1_table_offset");
	must(sh("cp ok.qcow2 rt.qcow2"));
	patch("rt.qcow2", 48, far, 8);
	expect_refused("rt.qcow2", true, -EINVAL, "refcount_table_offset");
	must(sh("cp ok.qcow2 inc.qcow2"));
	patch("inc.qcow2", 72, bit9, 8);
	expect_refused("inc.qcow2", true, -ENOTSUP, "incompatible bit 9");
	must(sh("cp ok.qcow2 ext.qcow2"));
	patch("ext.qcow2", 72, bit4, 8);
	expect_refused("ext.qcow2", true, -ENOTSUP, "extended L2 entries");
	/* A backing file name longer than a 512-byte cluster, far into a
	 * file larger than the 2 MiB read for the header. */
	must(sh("qemu-img create -f qcow2 -o cluster_size=512 bn.qcow2 1M && truncate -s 4M bn.qcow2"));
	patch("bn.qcow2", 8, (uint8_t[]){ 0, 0, 0, 0, 0, 0x30, 0, 0, 0, 0, 0x03, 0xff }, 12);
	expect_refused("bn.qcow2", true, -EINVAL, "backing file name");
	/* A dirty image opens read-only as it is; opened writable, its
	 * refcounts are repaired and the bit cleared (test_qcow2_check.c
	 * tests the repair). */
	must(sh("cp ok.qcow2 dirty.qcow2"));
	patch("dirty.qcow2", 79, "\x01", 1);
	block_close(open_ok("dirty.qcow2", NULL, true));
	must(sh("qemu-img info --output=json dirty.qcow2 | grep -q '\"dirty-flag\": true'"));
	block_close(open_ok("dirty.qcow2", NULL, false));
	must(sh("qemu-img info --output=json dirty.qcow2 | grep -q '\"dirty-flag\": false'"));
	must(sh("qemu-img check dirty.qcow2"));
}

static void test_corrupt_opens_readonly(void **state)
{
	struct block_dev *bd;
	uint8_t buf[512] = { 0 };

	(void)state;
	NEED_QEMU();
	must(sh("qemu-img create -f qcow2 bad.qcow2 1M"));
	patch("bad.qcow2", 79, "\x02", 1);
	bd = open_ok("bad.qcow2", NULL, false);
	assert_true(bd->readonly);
	assert_int_equal(do_io(bd, false, 0, buf, sizeof(buf)), 0);
	assert_int_equal(do_io(bd, true, 0, buf, sizeof(buf)), -EROFS);
	block_close(bd);
}

static void test_backing_rules(void **state)
{
	uint8_t *img, *ext;
	size_t len;

	(void)state;
	NEED_QEMU();
	/* A loop: a -> b -> a. */
	must(sh("qemu-img create -f qcow2 b.qcow2 1M && "
		"qemu-img create -f qcow2 -b b.qcow2 -F qcow2 a.qcow2 && "
		"qemu-img rebase -u -b a.qcow2 -F qcow2 b.qcow2"));
	expect_refused("a.qcow2", true, -EINVAL, "loop");
	/* No backing format recorded (qemu-img no longer makes such images:
	 * turn the extension into an unknown one, which readers skip). */
	must(sh("qemu-img create -f raw r.raw 1M && qemu-img create -f qcow2 -b r.raw -F raw n.qcow2"));
	img = load_file("n.qcow2", &len);
	ext = memmem(img, len < 65536 ? len : 65536, "\xe2\x79\x2a\xca", 4);
	assert_non_null(ext);
	patch("n.qcow2", ext - img, "\x12\x34\x56\x78", 4);
	free(img);
	expect_refused("n.qcow2", true, -EINVAL, "no format recorded");
	/* A missing backing file. */
	must(sh("qemu-img create -f qcow2 -u -b gone.raw -F raw m.qcow2 1M"));
	expect_refused("m.qcow2", true, -ENOENT, "gone.raw");
}

/* A file probed as raw may not be turned into a qcow2 image by its guest;
 * format=raw allows it, as QEMU does. */
static void test_probed_raw_sector0(void **state)
{
	uint8_t sec[512] = { 'Q', 'F', 'I', 0xfb };
	struct block_dev *bd;

	(void)state;
	make_pattern_raw("d.raw", MiB, 1);
	bd = open_ok("d.raw", NULL, false);
	assert_true(bd->probed_raw);
	assert_int_equal(do_io(bd, true, 0, sec, sizeof(sec)), -EPERM);
	assert_int_equal(do_io(bd, true, 0, sec, 4), -EINVAL);
	assert_int_equal(do_io(bd, true, 512, sec, sizeof(sec)), 0);
	sec[0] = 0;
	assert_int_equal(do_io(bd, true, 0, sec, sizeof(sec)), 0);
	block_close(bd);
	bd = open_ok("d.raw", "raw", false);
	assert_false(bd->probed_raw);
	sec[0] = 'Q';
	assert_int_equal(do_io(bd, true, 0, sec, sizeof(sec)), 0);
	block_close(bd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_read_cluster_sizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_compressed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_backing_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_allocating, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_over_backing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_compressed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_with_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backing_locked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_and_info, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_headers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_opens_readonly, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backing_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_probed_raw_sector0, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
