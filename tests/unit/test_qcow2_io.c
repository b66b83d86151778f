/*
 * test_qcow2_io.c - the qcow2 data path through the block layer (qcow2_io.c,
 * qcow2_cluster.c): discard and write zeroes, many requests in flight at
 * once, cache=none.
 *
 * As in test_qcow2.c, images are made with qemu-img/qemu-io and QEMU is the
 * judge: what kvmm reads must equal `qemu-img convert -O raw`; after kvmm
 * writes, `qemu-img check` must find no error and no leak and `qemu-img
 * compare` must find the image equal to the expected raw bytes; after a
 * discard, `qemu-img map` must show the range unallocated (or zero) and
 * `qemu-img check` must count fewer allocated clusters.  Without qemu-img
 * the tests are skipped.  Files live in a fresh directory under $TMPDIR
 * (or /tmp); the cache=none test needs a file system with O_DIRECT
 * (tmpfs has none), so it uses a directory under the current directory
 * (the build directory under meson) and skips when O_DIRECT is refused.
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
#include "core/event_loop.h"

#define KiB 1024
#define MiB (1024 * 1024)

struct ctx {
	struct evloop loop;
	char dir[512];
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
	char cmd[4096];
	int n = snprintf(cmd, sizeof(cmd), "cd '%s' && (", g->dir);
	va_list ap;

	va_start(ap, fmt);
	n += vsnprintf(cmd + n, sizeof(cmd) - n, fmt, ap);
	va_end(ap);
	snprintf(cmd + n, sizeof(cmd) - n, ") >/dev/null 2>&1");
	return system(cmd);
}

/* The first line a shell command prints, in the test directory. */
static void sh_out(char *out, size_t outlen, const char *fmt, ...)
{
	char cmd[4096];
	int n = snprintf(cmd, sizeof(cmd), "cd '%s' && ", g->dir);
	va_list ap;
	FILE *f;

	va_start(ap, fmt);
	vsnprintf(cmd + n, sizeof(cmd) - n, fmt, ap);
	va_end(ap);
	f = popen(cmd, "r");
	assert_non_null(f);
	out[0] = 0;
	if (!fgets(out, (int)outlen, f))
		out[0] = 0;
	pclose(f);
	out[strcspn(out, "\n")] = 0;
}

static void must(int status)
{
	assert_int_equal(status, 0);
}

static int setup_in(void **state, const char *base)
{
	struct ctx *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	snprintf(c->dir, sizeof(c->dir), "%s/kvmm-test-qcow2-io-XXXXXX", base);
	assert_non_null(mkdtemp(c->dir));
	assert_int_equal(evloop_init(&c->loop, NULL), 0);
	g = c;
	*state = c;
	return 0;
}

static int setup(void **state)
{
	return setup_in(state, getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
}

/* On a real disk: the current directory (meson runs tests in the build
 * directory). */
static int setup_disk(void **state)
{
	char cwd[256];

	assert_non_null(getcwd(cwd, sizeof(cwd)));
	return setup_in(state, cwd);
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	char cmd[600];

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

static int try_open(const char *name, bool readonly, bool direct, struct block_dev **bd,
		    char *err, size_t errlen)
{
	char path[700];
	struct block_opts o = { .path = path, .format = "qcow2", .readonly = readonly,
				.direct = direct };

	snprintf(path, sizeof(path), "%s/%s", g->dir, name);
	return block_open(&o, &g->loop, bd, err, errlen);
}

static struct block_dev *open_ok(const char *name, bool readonly)
{
	struct block_dev *bd;
	char err[512] = "";
	int r = try_open(name, readonly, false, &bd, err, sizeof(err));

	if (r)
		fail_msg("block_open %s: %d %s", name, r, err);
	return bd;
}

/* Wait until `n` callbacks have come. */
static void wait_n(int n)
{
	for (int spins = 0; g->nr_done < n; spins++) {
		assert_true(spins < 100000);
		evloop_run_once(&g->loop, 100);
	}
	g->nr_done = 0;
}

/* Submit (queued by `queue`, already called) and wait for one callback;
 * its result. */
static int finish_one(struct block_dev *bd, int r)
{
	if (r)
		return r;
	block_submit(bd);
	assert_int_equal(g->nr_done, 0); /* never from inside submit */
	wait_n(1);
	return g->result;
}

static int do_io(struct block_dev *bd, bool write, uint64_t off, void *buf, size_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };

	return finish_one(bd, write ? block_writev(bd, off, &iov, 1, done_cb, NULL)
				    : block_readv(bd, off, &iov, 1, done_cb, NULL));
}

static uint8_t *load_file(const char *name, size_t *len)
{
	char path[700];
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
	char path[700];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", g->dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, buf, len, 0), (ssize_t)len);
	close(fd);
}

/* `qemu-img check`'s count of allocated clusters. */
static long allocated_clusters(const char *name)
{
	char out[256];

	sh_out(out, sizeof(out),
	       "qemu-img check --output=json %s | sed -n 's/.*\"allocated-clusters\": *\\([0-9]*\\).*/\\1/p'",
	       name);
	assert_true(out[0] != 0);
	return atol(out);
}

/* Whether `qemu-img map` shows guest bytes [off, off + len) without data
 * of this image (unallocated, or zero clusters).  1 yes, 0 no. */
static int map_has_no_data(const char *name, uint64_t off, uint64_t len)
{
	char out[64];

	/* Each line of the json map is one extent; keep those with data
	 * overlapping the range and count them. */
	sh_out(out, sizeof(out),
	       "qemu-img map --output=json %s | tr -d ' ' | "
	       "sed -n 's/.*\"start\":\\([0-9]*\\),\"length\":\\([0-9]*\\),.*\"depth\":0,.*\"data\":true.*/\\1 \\2/p' | "
	       "awk '$1 < %llu && $1 + $2 > %llu' | wc -l",
	       name, (unsigned long long)(off + len), (unsigned long long)off);
	return atoi(out) == 0;
}

/* The expected raw bytes, then kvmm's operation on the image, then QEMU
 * checks: no error or leak, same bytes. */
static void check_like(const char *name, const uint8_t *want, size_t len)
{
	save_file("want.raw", want, len);
	must(sh("qemu-img check %s", name));
	must(sh("qemu-img compare -f qcow2 -F raw %s want.raw", name));
}

static uint8_t *qemu_raw(const char *name, size_t *len)
{
	must(sh("rm -f ref.raw && qemu-img convert -O raw %s ref.raw", name));
	return load_file("ref.raw", len);
}

/* ---- discard ---- */

static int discard(struct block_dev *bd, uint64_t off, uint64_t len)
{
	return finish_one(bd, block_discard(bd, off, len, done_cb, NULL));
}

static int write_zeroes(struct block_dev *bd, uint64_t off, uint64_t len, bool unmap)
{
	return finish_one(bd, block_write_zeroes(bd, off, len, unmap, done_cb, NULL));
}

/* Discard frees whole clusters, leaves partial ones, and reads back zeros
 * without a backing file. */
static void test_discard_frees(void **state)
{
	struct block_dev *bd;
	uint8_t *want;
	size_t len;
	long before, after;

	(void)state;
	NEED_QEMU();
	must(sh("qemu-img create -f qcow2 d.qcow2 4M && qemu-io -c 'write -P 0x11 0 4M' d.qcow2"));
	before = allocated_clusters("d.qcow2");
	want = qemu_raw("d.qcow2", &len);
	bd = open_ok("d.qcow2", false);
	assert_true(bd->can_discard);
	/* [64k + 512, 1M + 64k + 100): whole clusters 128k .. 1M + 64k. */
	assert_int_equal(discard(bd, 64 * KiB + 512, 1 * MiB + 100 - 512), 0);
	memset(want + 128 * KiB, 0, 1 * MiB + 64 * KiB - 128 * KiB);
	/* The last cluster up to the end of the disk counts as whole. */
	assert_int_equal(discard(bd, 4 * MiB - 64 * KiB, 64 * KiB), 0);
	memset(want + 4 * MiB - 64 * KiB, 0, 64 * KiB);
	block_close(bd);
	check_like("d.qcow2", want, len);
	after = allocated_clusters("d.qcow2");
	assert_int_equal(before - after, 15 + 1);
	assert_true(map_has_no_data("d.qcow2", 128 * KiB, 1 * MiB - 64 * KiB));
	assert_false(map_has_no_data("d.qcow2", 64 * KiB, 64 * KiB)); /* partial: kept */
	free(want);
}

/* Version 3 with a backing file: discarded clusters read zeros (zero
 * flag), not the backing file's bytes.  Version 2: discard is advisory,
 * the backing file shows through, and nothing leaks. */
static void test_discard_backing(void **state)
{
	struct block_dev *bd;
	uint8_t *want;
	size_t len;

	(void)state;
	NEED_QEMU();
	must(sh("qemu-img create -f qcow2 b.qcow2 2M && qemu-io -c 'write -P 0x22 0 2M' b.qcow2 && "
		"qemu-img create -f qcow2 -b b.qcow2 -F qcow2 o.qcow2 && "
		"qemu-io -c 'write -P 0x33 0 1M' o.qcow2"));
	want = qemu_raw("o.qcow2", &len);
	bd = open_ok("o.qcow2", false);
	assert_int_equal(discard(bd, 256 * KiB, 1 * MiB), 0);
	memset(want + 256 * KiB, 0, 1 * MiB);
	block_close(bd);
	check_like("o.qcow2", want, len);
	assert_true(map_has_no_data("o.qcow2", 256 * KiB, 1 * MiB));
	free(want);

	must(sh("qemu-img create -f qcow2 -o compat=0.10 -b b.qcow2 -F qcow2 o2.qcow2 && "
		"qemu-io -c 'write -P 0x33 0 1M' o2.qcow2"));
	want = qemu_raw("o2.qcow2", &len);
	bd = open_ok("o2.qcow2", false);
	assert_int_equal(discard(bd, 0, 512 * KiB), 0);
	memset(want, 0x22, 512 * KiB);
	block_close(bd);
	check_like("o2.qcow2", want, len);
	free(want);
}

/* Compressed clusters lose their sectors' references; l2_tables shared
 * with a snapshot are copied first; QEMU finds no leak and no error. */
static void test_discard_compressed_and_snapshot(void **state)
{
	struct block_dev *bd;
	uint8_t *want, *buf = malloc(3 * MiB);
	size_t len;
	long before;

	(void)state;
	NEED_QEMU();
	for (size_t i = 0; i < 3 * MiB; i++)
		buf[i] = (uint8_t)((i >> 9) * 7 + (i >> 13));
	save_file("p.raw", buf, 3 * MiB);
	free(buf);
	must(sh("qemu-img convert -c -O qcow2 -o cluster_size=4k p.raw c.qcow2"));
	before = allocated_clusters("c.qcow2");
	want = qemu_raw("c.qcow2", &len);
	bd = open_ok("c.qcow2", false);
	assert_int_equal(discard(bd, 100 * KiB, 2 * MiB), 0);
	memset(want + 100 * KiB, 0, 2 * MiB);
	block_close(bd);
	check_like("c.qcow2", want, len);
	assert_true(allocated_clusters("c.qcow2") < before);
	assert_true(map_has_no_data("c.qcow2", 100 * KiB, 2 * MiB));
	free(want);

	must(sh("qemu-img create -f qcow2 s.qcow2 2M && qemu-io -c 'write -P 0x44 0 2M' s.qcow2 && "
		"qemu-img snapshot -c snap s.qcow2"));
	want = qemu_raw("s.qcow2", &len);
	bd = open_ok("s.qcow2", false);
	assert_int_equal(discard(bd, 0, 1 * MiB), 0);
	memset(want, 0, 1 * MiB);
	block_close(bd);
	check_like("s.qcow2", want, len);
	/* The snapshot still holds the old bytes. */
	must(sh("qemu-img convert -l snapshot.name=snap -O raw s.qcow2 snap.raw && "
		"cmp snap.raw ref.raw"));
	free(want);
}

/* Write zeroes: partial clusters written, whole ones zero-flagged (freed
 * with unmap, kept allocated without), version 2 with a backing file
 * written as zeros; everything reads back zeros through kvmm and QEMU. */
static void test_write_zeroes(void **state)
{
	static const char *const setups[] = {
		"qemu-img create -f qcow2 z.qcow2 4M && qemu-io -c 'write -P 0x55 0 4M' z.qcow2",
		"qemu-img create -f qcow2 -o compat=0.10 z.qcow2 4M && "
		"qemu-io -c 'write -P 0x55 0 3M' z.qcow2",
		"qemu-img create -f qcow2 bz.qcow2 4M && qemu-io -c 'write -P 0x66 0 4M' bz.qcow2 && "
		"qemu-img create -f qcow2 -o compat=0.10 -b bz.qcow2 -F qcow2 z.qcow2 && "
		"qemu-io -c 'write -P 0x55 1M 1M' z.qcow2",
		"qemu-img create -f qcow2 bz.qcow2 4M && qemu-io -c 'write -P 0x66 0 4M' bz.qcow2 && "
		"qemu-img create -f qcow2 -b bz.qcow2 -F qcow2 z.qcow2 && "
		"qemu-io -c 'write -P 0x55 1M 1M' z.qcow2",
	};

	(void)state;
	NEED_QEMU();
	for (unsigned i = 0; i < sizeof(setups) / sizeof(setups[0]); i++) {
		for (int unmap = 0; unmap < 2; unmap++) {
			struct block_dev *bd;
			uint8_t *want, *got;
			size_t len;
			long before;

			must(sh("rm -f z.qcow2 bz.qcow2 && %s", setups[i]));
			before = allocated_clusters("z.qcow2");
			want = qemu_raw("z.qcow2", &len);
			bd = open_ok("z.qcow2", false);
			assert_int_equal(write_zeroes(bd, 1000, 5000, unmap), 0);
			assert_int_equal(write_zeroes(bd, 600 * KiB + 512, 2 * MiB, unmap), 0);
			memset(want + 1000, 0, 5000);
			memset(want + 600 * KiB + 512, 0, 2 * MiB);
			got = malloc(len);
			assert_int_equal(do_io(bd, false, 0, got, len), 0);
			assert_memory_equal(got, want, len);
			block_close(bd);
			check_like("z.qcow2", want, len);
			if (i == 0 && unmap)
				assert_true(allocated_clusters("z.qcow2") < before);
			if (i == 0 && !unmap)
				assert_int_equal(allocated_clusters("z.qcow2"), before);
			free(got);
			free(want);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_discard_frees, setup, teardown),
		cmocka_unit_test_setup_teardown(test_discard_backing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_discard_compressed_and_snapshot, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_write_zeroes, setup, teardown),
	};

	(void)setup_disk;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
