/*
 * test_qcow2_check.c - kvmm's qcow2 check and repair (qcow2_check.c),
 * refcount_table growth and dirty images, against qemu-img.
 *
 * qemu-img is the reference: on images it made (cluster sizes 512 B to 2
 * MiB, refcount widths 1 to 64 bits, snapshots, compressed clusters,
 * backing files, version 2) and on images damaged on purpose (a refcount
 * raised or lowered, COPIED flags wrong, an l2 entry past the end of the
 * file, misaligned, or shared with another), kvmm's check must count what
 * `qemu-img check` counts.  A repair by kvmm must leave an image that
 * `qemu-img check` finds exactly as clean as qemu-img's own repair of the
 * same damage, with the same guest content (`qemu-img compare`).
 * Skipped without qemu-img.  Files live in a fresh directory under $TMPDIR.
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
#include <unistd.h>

#include <cmocka.h>

#include "block/image.h"
#include "block/qcow2_check.h"

static char dir[256];

/* Run a shell command in the test directory; its exit status. */
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

static int setup(void **state)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

	(void)state;
	snprintf(dir, sizeof(dir), "%s/kvmm-test-qcow2-check-XXXXXX", tmp);
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(sh("rm -rf '%s'", dir), 0);
	return 0;
}

#define NEED_QEMU() do { \
	if (system("qemu-img --version >/dev/null 2>&1 && qemu-io --version >/dev/null 2>&1")) \
		skip(); \
} while (0)

static void path_of(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", dir, name);
}

static uint64_t peek64(const char *name, uint64_t off)
{
	char p[512];
	uint8_t b[8];
	uint64_t v = 0;
	int fd;

	path_of(p, sizeof(p), name);
	fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, b, 8, off), 8);
	close(fd);
	for (int i = 0; i < 8; i++)
		v = v << 8 | b[i];
	return v;
}

static void poke(const char *name, uint64_t off, uint64_t v, unsigned bytes)
{
	char p[512];
	uint8_t b[8];
	int fd;

	for (int i = (int)bytes - 1; i >= 0; i--, v >>= 8)
		b[i] = (uint8_t)v;
	path_of(p, sizeof(p), name);
	fd = open(p, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, b, bytes, off), (ssize_t)bytes);
	close(fd);
}

/* What a check found, from either tool. */
struct res {
	int status;     /* qemu-img check's exit status */
	uint64_t corruptions, leaks, allocated, fragmented, compressed, end, total;
};

static uint64_t jget(const char *json, const char *key)
{
	char k[64];
	const char *p;

	snprintf(k, sizeof(k), "\"%s\": ", key);
	p = strstr(json, k);
	return p ? strtoull(p + strlen(k), NULL, 10) : 0;
}

/* qemu-img check [-r fix] --output=json name. */
static struct res qemu_check(const char *name, const char *fix)
{
	char json[4096] = "", p[512];
	struct res r = { 0 };
	FILE *f;
	size_t n;

	r.status = sh("qemu-img check %s%s --output=json %s > q.json", fix ? "-r " : "",
		      fix ? fix : "", name);
	path_of(p, sizeof(p), "q.json");
	f = fopen(p, "r");
	assert_non_null(f);
	n = fread(json, 1, sizeof(json) - 1, f);
	json[n] = 0;
	fclose(f);
	r.corruptions = jget(json, "corruptions");
	r.leaks = jget(json, "leaks");
	r.allocated = jget(json, "allocated-clusters");
	r.fragmented = jget(json, "fragmented-clusters");
	r.compressed = jget(json, "compressed-clusters");
	r.end = jget(json, "image-end-offset");
	r.total = jget(json, "total-clusters");
	return r;
}

/* kvmm's check of `name` through image.h, repairing what fix says and
 * then checking again, as kvmm img check does. */
static struct res kvmm_check(const char *name, unsigned fix)
{
	struct image_opts o = { .writable = fix != 0, .check = true };
	struct qcow2_check_result cr;
	struct image *img;
	struct res r = { 0 };
	char p[512], err[512];
	int e;

	path_of(p, sizeof(p), name);
	o.path = p;
	e = image_open(&o, &img, err, sizeof(err));
	if (e)
		fail_msg("image_open %s: %s", name, err);
	e = image_check(img, fix, &cr);
	if (!e && (cr.corruptions_fixed || cr.leaks_fixed))
		e = image_check(img, 0, &cr);
	image_close(img);
	r.status = e || cr.check_errors ? 1 : cr.corruptions ? 2 : cr.leaks ? 3 : 0;
	if (r.status == 1)
		return r;
	r.corruptions = cr.corruptions;
	r.leaks = cr.leaks;
	r.allocated = cr.allocated_clusters;
	r.fragmented = cr.fragmented_clusters;
	r.compressed = cr.compressed_clusters;
	r.end = cr.image_end_offset;
	r.total = cr.total_clusters;
	return r;
}

static void same(const char *what, struct res k, struct res q)
{
	if (k.status != q.status || k.corruptions != q.corruptions || k.leaks != q.leaks ||
	    (k.status != 1 && (k.allocated != q.allocated || k.fragmented != q.fragmented ||
			       k.compressed != q.compressed || k.end != q.end ||
			       k.total != q.total)))
		fail_msg("%s: kvmm status %d corruptions %" PRIu64 " leaks %" PRIu64
			 " allocated %" PRIu64 " fragmented %" PRIu64 " compressed %" PRIu64
			 " end %" PRIu64 " total %" PRIu64 "; qemu-img status %d corruptions %"
			 PRIu64 " leaks %" PRIu64 " allocated %" PRIu64 " fragmented %" PRIu64
			 " compressed %" PRIu64 " end %" PRIu64 " total %" PRIu64, what,
			 k.status, k.corruptions, k.leaks, k.allocated, k.fragmented, k.compressed,
			 k.end, k.total, q.status, q.corruptions, q.leaks, q.allocated,
			 q.fragmented, q.compressed, q.end, q.total);
}

/* kvmm and qemu-img agree on `name`, and it is clean. */
static void clean_like_qemu(const char *name)
{
	struct res q = qemu_check(name, NULL);

	same(name, kvmm_check(name, 0), q);
	assert_int_equal(q.status, 0);
}

/* ---- images qemu-img made ---- */

static void test_clean_images(void **state)
{
	static const char *const sizes[] = { "512", "4k", "64k", "2M" };
	static const unsigned widths[] = { 1, 2, 4, 8, 16, 32, 64 };

	(void)state;
	NEED_QEMU();
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		must(sh("qemu-img create -f qcow2 -o cluster_size=%s c.qcow2 64M && "
			"qemu-io -c 'write -P 1 0 100k' -c 'write -P 2 5M 3M' "
			"-c 'write -z 20M 1M' -c 'write -P 3 63M 1M' c.qcow2", sizes[i]));
		clean_like_qemu("c.qcow2");
	}
	for (size_t i = 0; i < sizeof(widths) / sizeof(widths[0]); i++) {
		must(sh("qemu-img create -f qcow2 -o cluster_size=4k,refcount_bits=%u w.qcow2 16M && "
			"qemu-io -c 'write -P 1 0 1M' -c 'write -P 2 9M 100k' w.qcow2", widths[i]));
		clean_like_qemu("w.qcow2");
	}
	/* Snapshots: shared l2_tables and data, refcounts of 2 and 3. */
	must(sh("qemu-img create -f qcow2 -o cluster_size=4k s.qcow2 16M && "
		"qemu-io -c 'write -P 1 0 1M' s.qcow2 && qemu-img snapshot -c one s.qcow2 && "
		"qemu-io -c 'write -P 2 64k 64k' s.qcow2 && qemu-img snapshot -c two s.qcow2 && "
		"qemu-io -c 'write -P 3 512k 8k' -c 'write -P 4 8M 4k' s.qcow2"));
	clean_like_qemu("s.qcow2");
	/* Compressed clusters, also shared with a snapshot; 512-byte and
	 * 64 KiB clusters (sector spans crossing host clusters). */
	/* Half random sectors: compressed clusters of ~60 %, whose sector
	 * spans cross host cluster boundaries; 512-byte, 4k and 64k clusters. */
	must(sh("python3 -c \"import random, sys; random.seed(5); "
		"sys.stdout.buffer.write(b''.join(random.randbytes(300) + bytes(212) "
		"for _ in range(8192)))\" > half.raw && truncate -s 16M half.raw && "
		"qemu-img create -f qcow2 -o cluster_size=4k src.qcow2 16M && "
		"qemu-io -c 'write -P 5 0 2M' src.qcow2 && "
		"qemu-img convert -c -f raw -O qcow2 -o cluster_size=512 half.raw z512.qcow2 && "
		"qemu-img convert -c -f raw -O qcow2 -o cluster_size=4k half.raw z4k.qcow2 && "
		"qemu-img convert -c -f raw -O qcow2 half.raw z.qcow2 && qemu-img snapshot -c s z.qcow2 && "
		"qemu-io -c 'write -P 6 100k 8k' z.qcow2"));
	clean_like_qemu("z4k.qcow2");
	clean_like_qemu("z512.qcow2");
	clean_like_qemu("z.qcow2");
	/* An overlay over a qcow2 backing file; a version 2 image. */
	must(sh("qemu-img create -f qcow2 -b src.qcow2 -F qcow2 ov.qcow2 && "
		"qemu-io -c 'write -P 7 1M 100k' ov.qcow2"));
	clean_like_qemu("ov.qcow2");
	must(sh("qemu-img create -f qcow2 -o compat=0.10 v2.qcow2 8M && "
		"qemu-io -c 'write -P 8 0 300k' v2.qcow2 && qemu-img snapshot -c a v2.qcow2"));
	clean_like_qemu("v2.qcow2");
}

/* ---- damaged images ---- */

/* The layout of a small test image made by make_victim(). */
struct victim {
	uint64_t rb;            /* the first refcount_block */
	uint64_t l1, l2;        /* l1_table, the first l2_table */
};

/* 4 KiB clusters, 16-bit refcounts, data in guest clusters 0..4 (host
 * clusters 5..9 in QEMU's layout), a snapshot sharing cluster 0's data
 * when `snap`. */
static struct victim make_victim(const char *name, bool snap)
{
	struct victim v;

	must(sh("rm -f %s && qemu-img create -f qcow2 -o cluster_size=4k %s 10M && "
		"qemu-io -c 'write -P 1 0 20k' %s", name, name, name));
	if (snap)
		must(sh("qemu-img snapshot -c s %s && qemu-io -c 'write -P 2 4k 4k' %s", name, name));
	v.rb = peek64(name, peek64(name, 48));
	v.l1 = peek64(name, 40);
	v.l2 = peek64(name, v.l1) & 0x00fffffffffffe00ull;
	return v;
}

/* Set host cluster idx's 16-bit refcount in the first refcount_block. */
static void set_ref16(const char *name, const struct victim *v, uint64_t idx, uint64_t val)
{
	poke(name, v->rb + 2 * idx, val, 2);
}

/* kvmm and qemu-img count the same problems in `name`; each one's repair
 * (-r leaks, -r all) of a copy leaves the same status, an image that
 * qemu-img check judges the same way, and (when clean) the same guest
 * content. */
static void damaged_like_qemu(const char *name, int want_status)
{
	static const char *const modes[] = { "leaks", "all" };
	struct res q = qemu_check(name, NULL);

	same(name, kvmm_check(name, 0), q);
	assert_int_equal(q.status, want_status);
	for (int m = 0; m < 2; m++) {
		char what[128];
		struct res kr, qr, after_k, after_q;

		must(sh("cp %s k.qcow2 && cp %s q.qcow2", name, name));
		kr = kvmm_check("k.qcow2", m ? QCOW2_FIX_LEAKS | QCOW2_FIX_ERRORS : QCOW2_FIX_LEAKS);
		qr = qemu_check("q.qcow2", modes[m]);
		snprintf(what, sizeof(what), "%s -r %s", name, modes[m]);
		assert_int_equal(kr.status, qr.status);
		after_k = qemu_check("k.qcow2", NULL);
		after_q = qemu_check("q.qcow2", NULL);
		if (after_k.status != after_q.status)
			fail_msg("%s: qemu-img check after kvmm's repair: %d, after its own: %d", what,
				 after_k.status, after_q.status);
		if (!after_q.status)
			must(sh("qemu-img compare k.qcow2 q.qcow2"));
	}
}

static void test_damaged_images(void **state)
{
	struct victim v;

	(void)state;
	NEED_QEMU();
	/* A refcount raised: a leak, and the COPIED flag now wrong. */
	v = make_victim("leak.qcow2", false);
	set_ref16("leak.qcow2", &v, 5, 2);
	damaged_like_qemu("leak.qcow2", 2);
	/* A free cluster inside the file counted as used: a leak only. */
	v = make_victim("leak2.qcow2", false);
	must(sh("truncate -s 45056 leak2.qcow2"));
	set_ref16("leak2.qcow2", &v, 10, 1);
	damaged_like_qemu("leak2.qcow2", 3);
	/* A data cluster's refcount lowered to 0, and below 2 where a
	 * snapshot shares it. */
	v = make_victim("zero.qcow2", false);
	set_ref16("zero.qcow2", &v, 6, 0);
	damaged_like_qemu("zero.qcow2", 2);
	v = make_victim("low.qcow2", true);
	set_ref16("low.qcow2", &v, 5, 1);
	damaged_like_qemu("low.qcow2", 2);
	/* COPIED wrong: cleared on a private data cluster, set on a shared
	 * one, cleared on a private l2_table. */
	v = make_victim("cp1.qcow2", false);
	poke("cp1.qcow2", v.l2 + 8, peek64("cp1.qcow2", v.l2 + 8) & ~(1ull << 63), 8);
	damaged_like_qemu("cp1.qcow2", 2);
	v = make_victim("cp2.qcow2", true);
	poke("cp2.qcow2", v.l2 + 16, peek64("cp2.qcow2", v.l2 + 16) | 1ull << 63, 8);
	damaged_like_qemu("cp2.qcow2", 2);
	v = make_victim("cp3.qcow2", false);
	poke("cp3.qcow2", v.l1, v.l2, 8);
	damaged_like_qemu("cp3.qcow2", 2);
	/* An l2 entry past the end of the file; misaligned; two entries
	 * sharing one cluster. */
	v = make_victim("eof.qcow2", false);
	poke("eof.qcow2", v.l2 + 8, 1ull << 63 | 100 * 4096, 8);
	damaged_like_qemu("eof.qcow2", 2);
	v = make_victim("mis.qcow2", false);
	poke("mis.qcow2", v.l2 + 8, peek64("mis.qcow2", v.l2 + 8) | 0x200, 8);
	damaged_like_qemu("mis.qcow2", 2);
	v = make_victim("share.qcow2", false);
	poke("share.qcow2", v.l2 + 8, peek64("share.qcow2", v.l2), 8);
	damaged_like_qemu("share.qcow2", 2);
	/* Reserved bits: in an unallocated l2 entry; an l1 entry of only a
	 * reserved bit (QEMU then reads an "l2_table" at offset 0, the
	 * header); a refcount_block past the end of the file (reads as
	 * zeros: every cluster it counts is then under-counted). */
	v = make_victim("res.qcow2", false);
	poke("res.qcow2", v.l2 + 40 * 8, 0x100, 8);
	damaged_like_qemu("res.qcow2", 2);
	v = make_victim("res1.qcow2", false);
	poke("res1.qcow2", v.l1 + 8, 0x40, 8);
	damaged_like_qemu("res1.qcow2", 2);
	v = make_victim("rbeof.qcow2", false);
	poke("rbeof.qcow2", peek64("rbeof.qcow2", 48), 1ull << 30, 8);
	same("rbeof.qcow2", kvmm_check("rbeof.qcow2", 0), qemu_check("rbeof.qcow2", NULL));
	/* The l1_table's and a refcount_block's own refcounts lowered. */
	v = make_victim("meta.qcow2", false);
	set_ref16("meta.qcow2", &v, v.l1 / 4096, 0);
	set_ref16("meta.qcow2", &v, v.rb / 4096, 2);
	damaged_like_qemu("meta.qcow2", 2);
}

/* ---- dirty and corrupt images ---- */

static int open_rw(const char *name, struct image **img, char *err, size_t len)
{
	struct image_opts o = { .writable = true };
	char p[512];

	path_of(p, sizeof(p), name);
	o.path = p;
	return image_open(&o, img, err, len);
}

static void test_dirty_repaired_at_open(void **state)
{
	struct image *img;
	char err[512];
	uint8_t buf[4096];

	(void)state;
	NEED_QEMU();
	/* qemu-io killed after writes with lazy refcounts: the refcounts
	 * on disk are behind (qemu-img check finds corruptions). */
	must(sh("qemu-img create -f qcow2 -o lazy_refcounts=on,cluster_size=4k d.qcow2 16M"));
	sh("qemu-io -c 'write -P 9 0 256k' -c 'write -P 10 8M 64k' -c 'sigraise 9' d.qcow2");
	must(sh("qemu-img info --output=json d.qcow2 | grep -q '\"dirty-flag\": true'"));
	assert_int_equal(qemu_check("d.qcow2", NULL).status, 2);
	must(sh("cp d.qcow2 ref.qcow2"));
	if (open_rw("d.qcow2", &img, err, sizeof(err)))
		fail_msg("%s", err);
	/* Writable and usable at once. */
	memset(buf, 11, sizeof(buf));
	assert_int_equal(image_pwrite(img, buf, sizeof(buf), 12 << 20), 0);
	assert_int_equal(image_flush(img), 0);
	image_close(img);
	must(sh("qemu-img info --output=json d.qcow2 | grep -q '\"dirty-flag\": false'"));
	assert_int_equal(qemu_check("d.qcow2", NULL).status, 0);
	must(sh("qemu-io -c 'write -P 11 12M 4k' ref.qcow2 && qemu-img compare d.qcow2 ref.qcow2"));
}

static void test_corrupt_repair_clears_mark(void **state)
{
	struct image *img;
	char err[512];
	struct victim v;

	(void)state;
	NEED_QEMU();
	v = make_victim("cor.qcow2", false);
	set_ref16("cor.qcow2", &v, 5, 0);
	poke("cor.qcow2", 79, 2, 1);
	/* Other writable opens are refused... */
	assert_int_equal(open_rw("cor.qcow2", &img, err, sizeof(err)), -EROFS);
	assert_non_null(strstr(err, "corrupt"));
	/* ... the check's repair opens it, fixes it and clears the mark. */
	assert_int_equal(kvmm_check("cor.qcow2", QCOW2_FIX_LEAKS | QCOW2_FIX_ERRORS).status, 0);
	must(sh("qemu-img info --output=json cor.qcow2 | grep -q '\"corrupt\": false'"));
	assert_int_equal(open_rw("cor.qcow2", &img, err, sizeof(err)), 0);
	image_close(img);
	/* A read-only check of a raw image: not supported, like qemu-img. */
	{
		struct image_opts o = { 0 };
		struct qcow2_check_result cr;
		char p[512];

		must(sh("truncate -s 1M r.raw"));
		path_of(p, sizeof(p), "r.raw");
		o.path = p;
		assert_int_equal(image_open(&o, &img, err, sizeof(err)), 0);
		assert_int_equal(image_check(img, 0, &cr), -ENOTSUP);
		image_close(img);
		assert_int_equal(sh("qemu-img check r.raw"), 63);
	}
}

/* ---- refcount_table growth ---- */

/* Write `total` bytes of a pattern from guest offset 0 through kvmm (in
 * 64 KiB pieces) into `name`, and the same into the raw file `ref`. */
static void fill(const char *name, const char *ref, uint64_t total)
{
	struct image *img;
	char err[512], p[512];
	uint8_t *buf = malloc(65536);
	int fd;

	assert_non_null(buf);
	if (open_rw(name, &img, err, sizeof(err)))
		fail_msg("%s", err);
	path_of(p, sizeof(p), ref);
	fd = open(p, O_WRONLY);
	assert_true(fd >= 0);
	for (uint64_t off = 0; off < total; off += 65536) {
		for (int i = 0; i < 65536; i++)
			buf[i] = (uint8_t)((off >> 16) * 7 + i / 512 + 1);
		assert_int_equal(image_pwrite(img, buf, 65536, off), 0);
		assert_int_equal(pwrite(fd, buf, 65536, off), 65536);
	}
	close(fd);
	assert_int_equal(image_flush(img), 0);
	image_close(img);
	free(buf);
}

static void test_reftable_growth(void **state)
{
	uint64_t rt0, rt1;

	(void)state;
	NEED_QEMU();
	/* 512-byte clusters, 16-bit refcounts: one refcount_table cluster
	 * (64 refcount_blocks of 256 clusters) covers 8 MiB of file. */
	must(sh("qemu-img create -f qcow2 -o cluster_size=512 g.qcow2 64M && truncate -s 64M g.raw"));
	rt0 = peek64("g.qcow2", 48);
	fill("g.qcow2", "g.raw", 12 << 20);
	rt1 = peek64("g.qcow2", 48);
	assert_int_not_equal(rt0, rt1);
	assert_true(peek64("g.qcow2", 56) >> 32 > 1);
	clean_like_qemu("g.qcow2");
	must(sh("qemu-img compare -f qcow2 -F raw g.qcow2 g.raw"));
	/* 64-bit refcounts: 2 MiB per table cluster, several growths. */
	must(sh("qemu-img create -f qcow2 -o cluster_size=512,refcount_bits=64 h.qcow2 16M && "
		"truncate -s 16M h.raw"));
	fill("h.qcow2", "h.raw", 9 << 20);
	clean_like_qemu("h.qcow2");
	must(sh("qemu-img compare -f qcow2 -F raw h.qcow2 h.raw"));
	/* QEMU keeps writing it. */
	must(sh("qemu-io -c 'write -P 77 15M 1M' h.qcow2 && qemu-img check h.qcow2"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_clean_images, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_images, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dirty_repaired_at_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_repair_clears_mark, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reftable_growth, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
