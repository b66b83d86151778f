/*
 * test_qcow2_powercut.c - the qcow2 driver's metadata write ordering,
 * checked by cutting the power after every write.
 *
 * The image's writes and syncs go through file hooks (qcow2_int.h): each
 * write is done for real (the driver goes on reading what it wrote) and
 * recorded; a sync makes the recorded writes durable.  After every write
 * (a cut point) the test builds the files a power cut at that instant
 * could leave: the durable file plus a subset of the writes since the last
 * sync, cut into 512-byte sectors (a disk may persist any of them) - none
 * of them, all of them, and random subsets (seeded: the seed is printed;
 * set KVMM_POWERCUT_SEED to replay one).  Each such file must be one that
 * `qemu-img check` finds free of corruption (exit 0, or 3 for leaks only:
 * never 2), and every guest write the workload completed and flushed
 * before the cut must read back, through kvmm's reader and through
 * qemu-io; and kvmm must be able to go on writing it.
 *
 * Workloads: allocating writes into fresh clusters (and a new l2_table),
 * partial writes copying on write from a backing file, writes into an
 * l2_table shared with a snapshot, overwrites of compressed clusters,
 * writes needing new refcount_blocks,
 * and writes making the refcount_table grow.  Skipped without qemu-img.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "block/image.h"
#include "block/qcow2_check.h"
#include "block/qcow2_int.h"

#define SECTOR 512
#define RANDOM_SUBSETS 2

static char dir[256];
static uint64_t seed, first_seed;  /* the generator's state; the seed given */

static int sh(const char *fmt, ...)
{
	char cmd[4096];
	int n = snprintf(cmd, sizeof(cmd), "cd '%s' && (", dir), st;
	va_list ap;

	va_start(ap, fmt);
	n += vsnprintf(cmd + n, sizeof(cmd) - n, fmt, ap);
	va_end(ap);
	snprintf(cmd + n, sizeof(cmd) - n, ") >/dev/null 2>&1");
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void must(int status)
{
	assert_int_equal(status, 0);
}

/* xorshift64*: the subsets are reproducible from the seed. */
static uint64_t rnd(void)
{
	seed ^= seed >> 12;
	seed ^= seed << 25;
	seed ^= seed >> 27;
	return seed * 2685821657736338717ull;
}

/* ---- the recording file ---- */

struct pending {
	uint64_t off, len;
	uint8_t *data;
};

/* A guest write of the workload: `pattern` over [off, off + len). */
struct gwrite {
	uint64_t off, len;
	uint8_t pattern;
	bool flushed;
};

struct rec {
	uint8_t *durable;           /* the file as of the last sync */
	uint64_t durable_len, cap;
	struct pending *p;          /* writes since */
	size_t np, pcap;
	struct gwrite *gw;          /* the workload's writes so far; the
				     * last one may be in progress */
	size_t ngw;
	uint64_t *seen;             /* hashes of crash files checked */
	size_t nseen, seencap;
	unsigned cuts, files, checks;
	const char *name;
};

static struct rec *R;

static void durable_write(struct rec *r, const uint8_t *buf, uint64_t len, uint64_t off)
{
	if (off + len > r->cap) {
		uint64_t cap = (off + len) * 2;

		r->durable = realloc(r->durable, cap);
		assert_non_null(r->durable);
		memset(r->durable + r->cap, 0, cap - r->cap);
		r->cap = cap;
	}
	memcpy(r->durable + off, buf, len);
	if (off + len > r->durable_len)
		r->durable_len = off + len;
}

static uint64_t fnv(uint64_t h, const uint8_t *p, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

/* Write the crash file: durable plus the sectors `keep` selects of the
 * pending writes (keep(i, sector) for pending write i).  Returns false
 * when that file was checked before. */
static bool build(struct rec *r, const char *path, int mode)
{
	uint8_t *img;
	uint64_t len = r->durable_len, h = 14695981039346656037ull;
	int fd;

	for (size_t i = 0; i < r->np; i++)
		if (r->p[i].off + r->p[i].len > len)
			len = r->p[i].off + r->p[i].len;
	img = calloc(1, len ? len : 1);
	assert_non_null(img);
	memcpy(img, r->durable, r->durable_len);
	if (mode != 0) {
		uint64_t end = r->durable_len;

		for (size_t i = 0; i < r->np; i++) {
			struct pending *p = &r->p[i];

			/* Sectors of the file (a write may start mid-sector:
			 * a sector holds all or none of its bytes). */
			for (uint64_t o = p->off; o < p->off + p->len;) {
				uint64_t n = SECTOR - (o % SECTOR);

				if (n > p->off + p->len - o)
					n = p->off + p->len - o;
				if (mode == 1 || (rnd() & 1)) {
					memcpy(img + o, p->data + (o - p->off), n);
					if (o + n > end)
						end = o + n;
				}
				o += n;
			}
		}
		len = end;
	} else {
		len = r->durable_len;
	}
	h = fnv(h, img, len);
	h = fnv(h, (uint8_t *)&len, sizeof(len));
	for (size_t i = 0; i < r->nseen; i++) {
		if (r->seen[i] == h) {
			free(img);
			return false;
		}
	}
	if (r->nseen == r->seencap) {
		r->seencap = r->seencap ? 2 * r->seencap : 256;
		r->seen = realloc(r->seen, r->seencap * sizeof(*r->seen));
		assert_non_null(r->seen);
	}
	r->seen[r->nseen++] = h;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, img, len, 0), (ssize_t)len);
	close(fd);
	free(img);
	return true;
}

/* Guest writes that must survive: flushed, and not overlapped by a later
 * one (which then decides those bytes; the one in progress may leave
 * them old, new, or a mix). */
static bool must_survive(const struct rec *r, size_t i)
{
	const struct gwrite *w = &r->gw[i];

	if (!w->flushed)
		return false;
	for (size_t j = i + 1; j < r->ngw; j++) {
		const struct gwrite *l = &r->gw[j];

		if (l->off < w->off + w->len && w->off < l->off + l->len)
			return false; /* a later write covers it */
	}
	return true;
}

/* The crash file `crash.qcow2`: qemu-img check never finds corruption,
 * the flushed writes read back through kvmm and qemu-io. */
static void verify(struct rec *r, const char *how)
{
	char path[512], path2[512], err[512], cmd[3000];
	struct image_opts o = { .path = path, .format = "qcow2", .force_share = true };
	struct image *img;
	int st, n = 0;

	snprintf(path, sizeof(path), "%s/crash.qcow2", dir);
	r->files++;
	st = sh("qemu-img check crash.qcow2");
	if (st != 0 && st != 3) {
		sh("cp crash.qcow2 %s-failed-cut%u.qcow2", dir, r->cuts);
		fail_msg("%s: cut %u (%s): qemu-img check exits %d (seed %" PRIu64 "; kept as "
			 "%s-failed-cut%u.qcow2)", r->name, r->cuts, how, st, first_seed, dir, r->cuts);
	}
	if (image_open(&o, &img, err, sizeof(err)))
		fail_msg("%s: cut %u (%s): kvmm cannot open the crash file: %s", r->name, r->cuts,
			 how, err);
	for (size_t i = 0; i < r->ngw; i++) {
		const struct gwrite *w = &r->gw[i];
		uint8_t *buf;

		if (!must_survive(r, i))
			continue;
		buf = malloc(w->len);
		assert_non_null(buf);
		assert_int_equal(image_pread(img, buf, w->len, w->off), 0);
		for (uint64_t k = 0; k < w->len; k++)
			if (buf[k] != w->pattern)
				fail_msg("%s: cut %u (%s): flushed write %zu at %" PRIu64 " lost (byte %"
					 PRIu64 " is %u, want %u; seed %" PRIu64 ")", r->name, r->cuts,
					 how, i, w->off, k, buf[k], w->pattern, first_seed);
		free(buf);
		n += snprintf(cmd + n, sizeof(cmd) - n, " -c 'read -P %u %" PRIu64 " %" PRIu64 "'",
			      w->pattern, w->off, w->len);
		assert_true(n < (int)sizeof(cmd) - 100);
		r->checks++;
	}
	/* kvmm must be able to go on writing it (allocating a cluster past
	 * what a crash may have left half done). */
	{
		struct image_opts w = { .path = path2, .format = "qcow2", .writable = true };
		struct image *wi;
		uint64_t at = image_size(img) - 4096;
		uint8_t b[4096];

		snprintf(path2, sizeof(path2), "%s/crash-w.qcow2", dir);
		must(sh("cp crash.qcow2 crash-w.qcow2"));
		memset(b, 0x5a, sizeof(b));
		if (image_open(&w, &wi, err, sizeof(err)))
			fail_msg("%s: cut %u (%s): kvmm cannot open the crash file writable: %s",
				 r->name, r->cuts, how, err);
		if (image_pwrite(wi, b, sizeof(b), at) || image_flush(wi))
			fail_msg("%s: cut %u (%s): kvmm cannot write the crash file (seed %" PRIu64 ")",
				 r->name, r->cuts, how, first_seed);
		image_close(wi);
	}
	image_close(img);
	if (n && sh("qemu-io -f qcow2 -r -U%s crash.qcow2", cmd))
		fail_msg("%s: cut %u (%s): qemu-io does not read the flushed writes back (seed %"
			 PRIu64 ")", r->name, r->cuts, how, first_seed);
}

/* A cut point: every crash file a power cut now could leave. */
static void cut(struct rec *r)
{
	static const char *const how[] = { "no write since the sync", "every write since",
					   "random sectors" };
	char path[512];

	snprintf(path, sizeof(path), "%s/crash.qcow2", dir);
	r->cuts++;
	for (int m = 0; m < 2 + RANDOM_SUBSETS; m++)
		if (build(r, path, m > 2 ? 2 : m))
			verify(r, how[m > 2 ? 2 : m]);
}

static int hook_pwrite(void *opaque, int fd, const void *buf, uint64_t len, uint64_t off)
{
	struct rec *r = opaque;
	struct pending *p;

	if (pwrite(fd, buf, len, (off_t)off) != (ssize_t)len)
		return -EIO;
	if (r->np == r->pcap) {
		r->pcap = r->pcap ? 2 * r->pcap : 64;
		r->p = realloc(r->p, r->pcap * sizeof(*r->p));
		assert_non_null(r->p);
	}
	p = &r->p[r->np++];
	p->off = off;
	p->len = len;
	p->data = malloc(len);
	assert_non_null(p->data);
	memcpy(p->data, buf, len);
	cut(r);
	return 0;
}

static int hook_fdatasync(void *opaque, int fd)
{
	struct rec *r = opaque;

	(void)fd;
	for (size_t i = 0; i < r->np; i++) {
		durable_write(r, r->p[i].data, r->p[i].len, r->p[i].off);
		free(r->p[i].data);
	}
	r->np = 0;
	return 0;
}

static const struct qcow2_file_hooks hooks = { hook_pwrite, hook_fdatasync, NULL };

/* ---- running a workload ---- */

struct step {
	uint64_t off, len;
};

/* Open `name` writable with the recording hooks, then for each step write
 * a fresh pattern and flush. */
static void run(const char *name, const struct step *steps, size_t nsteps)
{
	struct rec r = { .name = name };
	struct qcow2_file_hooks h = hooks;
	struct image_opts o = { .format = "qcow2", .writable = true };
	struct image *img;
	char path[512], err[512];
	size_t len;
	int fd;
	struct stat st;

	R = &r;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0 && fstat(fd, &st) == 0);
	len = (size_t)st.st_size;
	r.durable = calloc(1, len);
	r.cap = r.durable_len = len;
	assert_int_equal(pread(fd, r.durable, len, 0), (ssize_t)len);
	close(fd);
	r.gw = calloc(nsteps, sizeof(*r.gw));
	o.path = path;
	if (image_open(&o, &img, err, sizeof(err)))
		fail_msg("%s", err);
	h.opaque = &r;
	((struct qimg *)img)->hooks = &h;
	for (size_t i = 0; i < nsteps; i++) {
		uint8_t *buf = malloc(steps[i].len);

		assert_non_null(buf);
		r.gw[i] = (struct gwrite){ steps[i].off, steps[i].len, (uint8_t)(0x40 + i), false };
		r.ngw = i + 1;
		memset(buf, r.gw[i].pattern, steps[i].len);
		assert_int_equal(image_pwrite(img, buf, steps[i].len, steps[i].off), 0);
		assert_int_equal(image_flush(img), 0);
		r.gw[i].flushed = true;
		free(buf);
	}
	image_close(img);
	print_message("%s: %u cut points, %u crash files checked, %u reads verified (seed %" PRIu64 ")\n",
		      name, r.cuts, r.files, r.checks, first_seed);
	assert_true(r.cuts > 0);
	for (size_t i = 0; i < r.np; i++)
		free(r.p[i].data);
	free(r.p);
	free(r.durable);
	free(r.gw);
	free(r.seen);
}

static int setup(void **state)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	const char *s = getenv("KVMM_POWERCUT_SEED");

	(void)state;
	snprintf(dir, sizeof(dir), "%s/kvmm-test-powercut-XXXXXX", tmp);
	assert_non_null(mkdtemp(dir));
	seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) * 2654435761u + (uint64_t)getpid();
	if (!seed)
		seed = 1;
	first_seed = seed;
	print_message("powercut seed %" PRIu64 " (KVMM_POWERCUT_SEED to replay)\n", seed);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	must(sh("rm -rf '%s'", dir));
	return 0;
}

#define NEED_QEMU() do { \
	if (system("qemu-img --version >/dev/null 2>&1 && qemu-io --version >/dev/null 2>&1")) \
		skip(); \
} while (0)

#define K 1024ull
#define M (1024ull * 1024)

/* Fresh clusters: the first write allocates an l2_table too; one far
 * away a second l2_table; a write over two clusters; an overwrite in
 * place. */
static void test_fresh_clusters(void **state)
{
	static const struct step s[] = {
		{ 0, 4 * K }, { 5 * M + 4 * K, 8 * K }, { 9 * K, 3 * K }, { 1 * K, 2 * K },
		{ 13 * M, 4 * K },
	};

	(void)state;
	NEED_QEMU();
	must(sh("qemu-img create -f qcow2 -o cluster_size=4k a.qcow2 16M"));
	run("a.qcow2", s, sizeof(s) / sizeof(s[0]));
}

/* Partial writes copy the rest of the cluster from the backing file. */
static void test_cow_backing(void **state)
{
	static const struct step s[] = {
		{ 1 * K, 1 * K }, { 6 * K + 512, 2 * K }, { 3 * M + 100, 700 }, { 1 * K, 1 * K },
	};

	(void)state;
	NEED_QEMU();
	must(sh("qemu-img create -f raw base.raw 4M && qemu-io -f raw -c 'write -P 7 0 4M' base.raw && "
		"qemu-img create -f qcow2 -o cluster_size=4k -b base.raw -F raw ov.qcow2"));
	run("ov.qcow2", s, sizeof(s) / sizeof(s[0]));
}

/* An l2_table and data shared with snapshots: the l2_table is copied,
 * the data copied on write, the old references dropped. */
static void test_snapshot_shared(void **state)
{
	static const struct step s[] = {
		{ 8 * K, 4 * K }, { 30 * K, 1 * K }, { 8 * K, 2 * K }, { 2 * M + 4 * K, 4 * K },
	};

	(void)state;
	NEED_QEMU();
	must(sh("qemu-img create -f qcow2 -o cluster_size=4k s.qcow2 4M && "
		"qemu-io -c 'write -P 1 0 64k' -c 'write -P 2 2M 64k' s.qcow2 && "
		"qemu-img snapshot -c one s.qcow2 && qemu-io -c 'write -P 3 16k 4k' s.qcow2 && "
		"qemu-img snapshot -c two s.qcow2"));
	run("s.qcow2", s, sizeof(s) / sizeof(s[0]));
}

/* Compressed clusters (several share a host cluster): overwriting one
 * copies it out and drops its references to the host clusters its
 * sectors span. */
static void test_compressed(void **state)
{
	static const struct step s[] = {
		{ 4 * K + 100, 1 * K }, { 16 * K, 4 * K }, { 40 * K, 12 * K },
	};

	(void)state;
	NEED_QEMU();
	must(sh("qemu-img create -f qcow2 -o cluster_size=4k src.qcow2 1M && "
		"qemu-io -c 'write -P 9 0 64k' -c 'write -P 10 32k 4k' src.qcow2 && "
		"qemu-img convert -c -O qcow2 -o cluster_size=4k src.qcow2 c.qcow2"));
	run("c.qcow2", s, sizeof(s) / sizeof(s[0]));
}

/* 512-byte clusters, 16-bit refcounts: a refcount_block covers 128 KiB
 * of file; filled by qemu-io to 120 KiB, the first write needs a new
 * refcount_block (and an l2_table), so does the second's l2_table. */
static void test_new_refblocks(void **state)
{
	static const struct step s[] = {
		{ 200 * K, 12 * K }, { 1 * M, 2 * K },
	};

	(void)state;
	NEED_QEMU();
	must(sh("qemu-img create -f qcow2 -o cluster_size=512 r.qcow2 4M && "
		"qemu-io -c 'write -P 1 0 115k' r.qcow2"));
	run("r.qcow2", s, sizeof(s) / sizeof(s[0]));
	/* It did need one: refcount_table entry 1 is set. */
	must(sh("rt=$(od -An -tu8 --endian=big -j48 -N8 r.qcow2) && "
		"test $(od -An -tu8 --endian=big -j$((rt + 8)) -N8 r.qcow2) -gt 0"));
}

/* 512-byte clusters, 64-bit refcounts: the refcount_table's one cluster
 * covers 2 MiB of file; filled by qemu-io to 13 KiB short of that, the
 * first write makes the table grow. */
static void test_reftable_growth(void **state)
{
	static const struct step s[] = {
		{ 3 * M, 16 * K }, { 3 * M + 512 * K, 2 * K },
	};
	char p[512];
	uint8_t b[4];
	int fd;

	(void)state;
	NEED_QEMU();
	must(sh("qemu-img create -f qcow2 -o cluster_size=512,refcount_bits=64 g.qcow2 4M && "
		"qemu-io -c 'write -P 1 0 1970k' g.qcow2"));
	run("g.qcow2", s, sizeof(s) / sizeof(s[0]));
	/* It did grow: refcount_table_clusters (header bytes 56..59) > 1. */
	snprintf(p, sizeof(p), "%s/g.qcow2", dir);
	fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, b, 4, 56), 4);
	close(fd);
	assert_true(((uint32_t)b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3]) > 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fresh_clusters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cow_backing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_shared, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compressed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_refblocks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reftable_growth, setup, teardown),
	};

	/* KVMM_TEST_FILTER=test_cow_backing runs one workload. */
	if (getenv("KVMM_TEST_FILTER"))
		cmocka_set_test_filter(getenv("KVMM_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
