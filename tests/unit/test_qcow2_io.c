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
#include "block/qcow2_int.h"
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
	n = system(cmd);
	if (n)  /* say which command failed, and why */
		fprintf(stderr, "failed (%d): %s\n", n, cmd);
	return n;
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

/* ---- many requests in flight ---- */

/* A deterministic generator (tests must repeat). */
static uint64_t rnd_state = 88172645463325252ull;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

#define NREQ 200

/* One request: its buffer cut into up to 3 segments. */
struct ioreq {
	uint64_t off, len;
	uint8_t *buf;
	struct iovec iov[3];
	int iovcnt;
};

static void cut_iov(struct ioreq *q, uint8_t *buf)
{
	uint64_t a = q->len >= 1024 ? (rnd() % (q->len / 512)) * 512 : q->len;

	q->buf = buf;
	q->iovcnt = 0;
	q->iov[q->iovcnt++] = (struct iovec){ buf, a };
	if (a < q->len) {
		uint64_t b = (q->len - a) / 2 / 512 * 512;

		if (b)
			q->iov[q->iovcnt++] = (struct iovec){ buf + a, b };
		q->iov[q->iovcnt++] = (struct iovec){ buf + a + b, q->len - a - b };
	}
	if (!q->iov[0].iov_len) { /* no empty first segment */
		memmove(q->iov, q->iov + 1, (q->iovcnt - 1) * sizeof(q->iov[0]));
		q->iovcnt--;
	}
}

/* Queue every request (reads or writes), one block_submit, wait for them
 * all; each must succeed. */
static void run_all(struct block_dev *bd, struct ioreq *qs, int n, bool write)
{
	for (int i = 0; i < n; i++)
		assert_int_equal(write ? block_writev(bd, qs[i].off, qs[i].iov, qs[i].iovcnt,
						      done_cb, NULL)
				       : block_readv(bd, qs[i].off, qs[i].iov, qs[i].iovcnt,
						     done_cb, NULL), 0);
	block_submit(bd);
	assert_int_equal(g->nr_done, 0);
	g->result = 0;
	for (int spins = 0; g->nr_done < n; spins++) {
		assert_true(spins < 100000);
		assert_int_equal(g->result, 0);
		evloop_run_once(&g->loop, 100);
	}
	assert_int_equal(g->result, 0);
	g->nr_done = 0;
}

/* NREQ reads at random offsets and lengths (up to 3 clusters of 64k),
 * all in flight together, read what qemu-img reads; returns how many
 * io_uring read SQEs they took. */
static uint64_t check_concurrent_reads(struct block_dev *bd, const uint8_t *want, size_t len)
{
	struct ioreq *qs = calloc(NREQ, sizeof(*qs));
	uint8_t *bufs = malloc((size_t)NREQ * 192 * KiB);
	uint64_t sqes = bd->stats.sqes[BLOCK_OP_READ];

	for (int i = 0; i < NREQ; i++) {
		qs[i].len = 512 * (1 + rnd() % (192 * KiB / 512));
		qs[i].off = (rnd() % ((len - qs[i].len) / 512 + 1)) * 512;
		cut_iov(&qs[i], bufs + (size_t)i * 192 * KiB);
		memset(qs[i].buf, 0xee, qs[i].len);
	}
	run_all(bd, qs, NREQ, false);
	for (int i = 0; i < NREQ; i++)
		assert_memory_equal(qs[i].buf, want + qs[i].off, qs[i].len);
	free(bufs);
	free(qs);
	return bd->stats.sqes[BLOCK_OP_READ] - sqes;
}

/* Allocated, partly allocated, with a backing file, compressed: many
 * concurrent reads give qemu-img's bytes.  Reads of allocated clusters
 * go through io_uring (one SQE or more per request), reads of an empty
 * image through none. */
static void test_concurrent_reads(void **state)
{
	static const struct {
		const char *setup;
		int sqes;               /* 1: every request, 0: none, -1: some */
	} cases[] = {
		{ "qemu-img create -f qcow2 i.qcow2 8M && qemu-io -c 'write -P 0x11 0 8M' i.qcow2", 1 },
		{ "qemu-img create -f qcow2 -o preallocation=metadata i.qcow2 8M && "
		  "qemu-io -c 'write -P 0x12 1M 3M' i.qcow2", 1 },
		{ "qemu-img create -f qcow2 i.qcow2 8M", 0 },
		{ "qemu-img create -f qcow2 i.qcow2 8M && qemu-io -c 'write -P 0x13 0 1M' "
		  "-c 'write -P 0x14 3M 100k' -c 'write -z 5M 1M' -c 'write -P 0x15 7M 4k' i.qcow2", -1 },
		{ "qemu-img create -f qcow2 b.qcow2 8M && qemu-io -c 'write -P 0x21 0 8M' b.qcow2 && "
		  "qemu-img create -f qcow2 -b b.qcow2 -F qcow2 i.qcow2 && "
		  "qemu-io -c 'write -P 0x22 1M 2M' -c 'write -P 0x23 6M 10k' i.qcow2", -1 },
		{ "qemu-img create -f qcow2 b.qcow2 8M && qemu-io -c 'write -P 0x31 0 4M' b.qcow2 && "
		  "qemu-img convert -c -O qcow2 b.qcow2 i.qcow2 && "
		  "qemu-io -c 'write -P 0x32 5M 1M' i.qcow2", -1 },
	};

	(void)state;
	NEED_QEMU();
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct block_dev *bd;
		uint8_t *want;
		size_t len;
		uint64_t sqes;

		must(sh("rm -f i.qcow2 b.qcow2 && %s", cases[i].setup));
		want = qemu_raw("i.qcow2", &len);
		bd = open_ok("i.qcow2", true);
		sqes = check_concurrent_reads(bd, want, len);
		if (cases[i].sqes == 1)
			assert_true(sqes >= NREQ);
		else if (cases[i].sqes == 0)
			assert_int_equal(sqes, 0);
		else
			assert_true(sqes > 0 && sqes < NREQ);
		block_close(bd);
		free(want);
	}
}

/* NREQ writes to disjoint random ranges, all in flight together, on an
 * image partly allocated (in-place and allocating writes mixed), then
 * concurrent reads: kvmm reads what it wrote, QEMU finds the image clean
 * and equal to the expected bytes. */
static void write_concurrently(const char *name, bool direct, bool in_place)
{
	struct ioreq *qs = calloc(NREQ, sizeof(*qs));
	uint8_t *bufs = malloc((size_t)NREQ * 96 * KiB), *want;
	size_t len, slot;
	struct block_dev *bd;
	char err[512];
	uint64_t sqes;

	want = qemu_raw(name, &len);
	slot = len / NREQ / 4096 * 4096;
	assert_true(slot >= 8 * KiB);
	assert_int_equal(try_open(name, false, direct, &bd, err, sizeof(err)), 0);
	sqes = bd->stats.sqes[BLOCK_OP_WRITE];
	for (int i = 0; i < NREQ; i++) {
		/* 4k aligned (cache=none wants the host's block), inside slot i. */
		qs[i].len = 4096 * (1 + rnd() % (slot / 4096 < 24 ? slot / 4096 : 24));
		qs[i].off = i * slot + (rnd() % ((slot - qs[i].len) / 4096 + 1)) * 4096;
		cut_iov(&qs[i], bufs + (size_t)i * 96 * KiB);
		for (uint64_t j = 0; j < qs[i].len; j++)
			qs[i].buf[j] = (uint8_t)(i * 3 + j / 512);
		memcpy(want + qs[i].off, qs[i].buf, qs[i].len);
	}
	run_all(bd, qs, NREQ, true);
	/* Some went in place through io_uring (none can on an image of
	 * compressed clusters). */
	if (in_place)
		assert_true(bd->stats.sqes[BLOCK_OP_WRITE] > sqes);
	else
		assert_int_equal(bd->stats.sqes[BLOCK_OP_WRITE], sqes);
	check_concurrent_reads(bd, want, len);
	block_close(bd);
	check_like(name, want, len);
	free(want);
	free(bufs);
	free(qs);
}

static void test_concurrent_writes(void **state)
{
	(void)state;
	NEED_QEMU();
	must(sh("qemu-img create -f qcow2 w.qcow2 16M && "
		"qemu-io -c 'write -P 0x41 0 6M' -c 'write -z 8M 1M' w.qcow2"));
	write_concurrently("w.qcow2", false, true);
	/* A backing file, compressed clusters, 4k clusters. */
	must(sh("qemu-img create -f qcow2 b.qcow2 16M && qemu-io -c 'write -P 0x51 0 16M' b.qcow2 && "
		"qemu-img convert -c -O qcow2 -o cluster_size=4k b.qcow2 c.qcow2 && "
		"qemu-img create -f qcow2 -o cluster_size=4k -b c.qcow2 -F qcow2 w2.qcow2 && "
		"qemu-io -c 'write -P 0x52 2M 4M' w2.qcow2"));
	write_concurrently("w2.qcow2", false, true);
	write_concurrently("c.qcow2", false, false);
}

/* cache=none: data through O_DIRECT (unaligned memory and unaligned reads
 * bounced), metadata buffered; flush reaches the kernel. */
static void test_cache_none(void **state)
{
	struct block_dev *bd;
	char err[512] = "";
	uint8_t *want, *buf;
	size_t len;
	int r;

	(void)state;
	NEED_QEMU();
	must(sh("qemu-img create -f qcow2 n.qcow2 16M && "
		"qemu-io -c 'write -P 0x61 0 8M' n.qcow2"));
	want = qemu_raw("n.qcow2", &len);
	r = try_open("n.qcow2", false, true, &bd, err, sizeof(err));
	if (r == -EINVAL && strstr(err, "O_DIRECT")) {
		printf("skipped: %s\n", err);
		free(want);
		skip();
	}
	if (r)
		fail_msg("block_open cache=none: %d %s", r, err);
	/* Unaligned memory and an unaligned read. */
	buf = malloc(64 * KiB + 1);
	assert_int_equal(do_io(bd, false, 1000, buf + 1, 50000), 0);
	assert_memory_equal(buf + 1, want + 1000, 50000);
	assert_true(bd->stats.bounced >= 1);
	assert_true(bd->stats.sqes[BLOCK_OP_READ] >= 1);
	memset(buf, 0x62, 64 * KiB + 1);
	assert_int_equal(do_io(bd, true, 64 * KiB, buf + 1, 32 * KiB), 0);
	memset(want + 64 * KiB, 0x62, 32 * KiB);
	assert_int_equal(finish_one(bd, block_flush(bd, done_cb, NULL)), 0);
	assert_int_equal(bd->stats.flushes_done, 1);
	block_close(bd);
	check_like("n.qcow2", want, len);
	free(want);
	free(buf);
	write_concurrently("n.qcow2", true, true);
}

/* ---- test hooks: the synchronous path only ---- */

static unsigned hook_writes, hook_syncs;

static int hook_pwrite(void *opaque, int fd, const void *buf, uint64_t len, uint64_t off)
{
	(void)opaque;
	hook_writes++;
	return pwrite(fd, buf, len, (off_t)off) == (ssize_t)len ? 0 : -EIO;
}

static int hook_fdatasync(void *opaque, int fd)
{
	(void)opaque;
	hook_syncs++;
	return fdatasync(fd) ? -errno : 0;
}

/* With hooks set (the power-cut tests' file), every write and sync goes
 * through them and nothing through io_uring, reads included; the image
 * stays clean. */
static void test_hooks_take_sync_path(void **state)
{
	static const struct qcow2_file_hooks hooks = { hook_pwrite, hook_fdatasync, NULL };
	struct block_dev *bd = calloc(1, sizeof(*bd));
	uint8_t *want, buf[8192];
	struct qimg *im;
	bool ro = false;
	char path[700], err[512];
	size_t len;
	int fd;

	(void)state;
	NEED_QEMU();
	must(sh("qemu-img create -f qcow2 h.qcow2 4M && qemu-io -c 'write -P 0x71 0 1M' h.qcow2"));
	want = qemu_raw("h.qcow2", &len);
	snprintf(path, sizeof(path), "%s/h.qcow2", g->dir);
	fd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(qcow2_img_open(fd, path, true, true, &ro, &im, err, sizeof(err)), 0);
	im->hooks = &hooks;
	bd->name = strdup(path);
	bd->loop = &g->loop;
	bd->logical_block = 512;
	assert_int_equal(qcow2_io_attach(bd, im, false, err, sizeof(err)), 0);
	memset(buf, 0x72, sizeof(buf));
	assert_int_equal(do_io(bd, true, 4096, buf, sizeof(buf)), 0);       /* in place */
	assert_int_equal(do_io(bd, true, 2 * MiB, buf, sizeof(buf)), 0);    /* allocating */
	memset(want + 4096, 0x72, sizeof(buf));
	memset(want + 2 * MiB, 0x72, sizeof(buf));
	assert_int_equal(do_io(bd, false, 0, buf, sizeof(buf)), 0);
	assert_memory_equal(buf, want, sizeof(buf));
	assert_int_equal(finish_one(bd, block_flush(bd, done_cb, NULL)), 0);
	assert_int_equal(discard(bd, 512 * KiB, 256 * KiB), 0);
	memset(want + 512 * KiB, 0, 256 * KiB);
	for (int op = 0; op < 5; op++)
		assert_int_equal(bd->stats.sqes[op], 0);
	assert_true(hook_writes >= 3);
	assert_true(hook_syncs >= 2);
	block_close(bd);
	check_like("h.qcow2", want, len);
	free(want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_discard_frees, setup, teardown),
		cmocka_unit_test_setup_teardown(test_discard_backing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_discard_compressed_and_snapshot, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_write_zeroes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_reads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_none, setup_disk, teardown),
		cmocka_unit_test_setup_teardown(test_hooks_take_sync_path, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
