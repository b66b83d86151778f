/*
 * test_qcow2_compress.c - compressed clusters (zlib and zstd) against
 * QEMU: images qemu-img compresses must read back through image.h
 * exactly as `qemu-img convert -O raw` reads them; images kvmm compresses
 * must pass `qemu-img check` and compare equal with their source; hostile
 * descriptors give an error, never a crash.  Without qemu-img on the host
 * the tests are skipped.  Everything lives in a fresh directory under
 * $TMPDIR (or /tmp).
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

#include "block/image.h"
#include "block/qcow2.h"
#include "util/log.h"

#define MiB (1024 * 1024)

static char dir[256];
static char cmd[2048]; /* the last command sh() ran */

/* Run a shell command in the test directory; its exit status. */
static int sh(const char *fmt, ...)
{
	int n = snprintf(cmd, sizeof(cmd), "cd '%s' && (", dir);
	va_list ap;

	va_start(ap, fmt);
	n += vsnprintf(cmd + n, sizeof(cmd) - n, fmt, ap);
	va_end(ap);
	snprintf(cmd + n, sizeof(cmd) - n, ") >/dev/null 2>&1");
	return system(cmd);
}

static void must(int status)
{
	if (status)
		fail_msg("status %d: %s", status, cmd);
}

static int setup(void **state)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

	(void)state;
	snprintf(dir, sizeof(dir), "%s/kvmm-test-qcow2c-XXXXXX", tmp);
	assert_non_null(mkdtemp(dir));
	log_max_level = LOG_ERROR;
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];

	(void)state;
	if (getenv("KVMM_TEST_KEEP")) /* for debugging: leave the files */
		return 0;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static bool have_qemu_img(void)
{
	return system("qemu-img --version >/dev/null 2>&1") == 0;
}

#define NEED_QEMU() do { if (!have_qemu_img()) skip(); } while (0)

static void path_of(const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", dir, name);
}

static uint8_t *load_file(const char *name, size_t *len)
{
	char path[512];
	struct stat st;
	uint8_t *buf;
	int fd;

	path_of(name, path, sizeof(path));
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	*len = (size_t)st.st_size;
	buf = malloc(*len ? *len : 1);
	assert_non_null(buf);
	assert_int_equal(pread(fd, buf, *len, 0), (ssize_t)*len);
	close(fd);
	return buf;
}

static void save_file(const char *name, const uint8_t *buf, size_t len)
{
	char path[512];
	int fd;

	path_of(name, path, sizeof(path));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, buf, len, 0), (ssize_t)len);
	close(fd);
}

static void patch(const char *name, uint64_t off, const void *bytes, size_t len)
{
	char path[512];
	int fd;

	path_of(name, path, sizeof(path));
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, bytes, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static struct image *open_img(const char *name, bool writable)
{
	struct image_opts o = { .writable = writable };
	struct image *img;
	char path[512], err[512] = "";
	int r;

	path_of(name, path, sizeof(path));
	o.path = path;
	r = image_open(&o, &img, err, sizeof(err));
	if (r)
		fail_msg("image_open %s: %d %s", name, r, err);
	return img;
}

/* Compressible but not trivially: text-like runs, zero 4 KiB blocks, and
 * every 5th 64 KiB block random (incompressible). */
static void make_source(const char *name, size_t len, unsigned seed)
{
	uint8_t *buf = malloc(len);
	uint32_t x = seed * 2654435761u + 1;

	assert_non_null(buf);
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		if ((i / 65536) % 5 == 4)
			buf[i] = (uint8_t)(x >> 16);
		else if ((i / 4096) % 7 == 3)
			buf[i] = 0;
		else
			buf[i] = (uint8_t)("kvmm qcow2 compressed "[(i + seed) % 22] + (i >> 13) % 3);
	}
	save_file(name, buf, len);
	free(buf);
}

/* kvmm reads `name` (in odd-sized pieces) as qemu-img converts it to raw. */
static void check_reads_like_qemu(const char *name)
{
	struct image *img = open_img(name, false);
	size_t len, chunk = 3 * 4096 + 512;
	uint8_t *want, *got;

	must(sh("qemu-img convert -O raw %s ref.raw", name));
	want = load_file("ref.raw", &len);
	assert_int_equal(image_size(img), len);
	got = malloc(len);
	assert_non_null(got);
	for (size_t off = 0; off < len; off += chunk) {
		size_t n = len - off < chunk ? len - off : chunk;

		assert_int_equal(image_pread(img, got + off, n, off), 0);
	}
	assert_memory_equal(got, want, len);
	image_close(img);
	free(got);
	free(want);
}

static void test_read_qemu_compressed(void **state)
{
	static const char *const sizes[] = { "512", "4k", "64k", "2M" };
	static const char *const types[] = { "zlib", "zstd" };

	(void)state;
	NEED_QEMU();
	/* Not a multiple of any cluster size: the last cluster is partial. */
	make_source("src.raw", 5 * MiB + 3 * 4096 + 512, 7);
	for (unsigned t = 0; t < 2; t++) {
		for (unsigned i = 0; i < 4; i++) {
			must(sh("rm -f c.qcow2 && qemu-img convert -c -O qcow2 "
				"-o cluster_size=%s,compression_type=%s src.raw c.qcow2",
				sizes[i], types[t]));
			check_reads_like_qemu("c.qcow2");
		}
	}
}

/* Write src.raw into `name` (a fresh qcow2 image of cluster size cs)
 * compressed, in batches of `batch` clusters. */
static void write_compressed_image(const char *name, uint64_t cs, uint64_t batch)
{
	struct image *img = open_img(name, true);
	size_t len;
	uint8_t *src = load_file("src.raw", &len), *buf = calloc(1, batch * cs);
	uint64_t size = image_size(img);

	assert_non_null(buf);
	assert_int_equal(size, len);
	for (uint64_t off = 0; off < size; off += batch * cs) {
		uint64_t n = size - off < batch * cs ? size - off : batch * cs;

		/* The last cluster padded with zeros, as convert does. */
		memset(buf, 0, batch * cs);
		memcpy(buf, src + off, n);
		assert_int_equal(image_write_compressed(img, buf, (n + cs - 1) / cs * cs, off), 0);
	}
	assert_int_equal(image_flush(img), 0);
	/* Allocated now; and only whole clusters. */
	assert_int_equal(image_write_compressed(img, buf, cs, 0), -EEXIST);
	assert_int_equal(image_write_compressed(img, buf, cs, cs / 2), -EINVAL);
	assert_int_equal(image_write_compressed(img, buf, cs / 2, 0), -EINVAL);
	image_close(img);
	free(buf);
	free(src);
}

/* qemu-img map's ranges: some stored compressed (data without a host
 * offset in QEMU 7's JSON); with `plain` also some not (make_source's
 * random 64 KiB blocks fill whole clusters up to 64 KiB). */
static void check_map(const char *name, bool plain)
{
	must(sh("qemu-img map --output=json %s > map.json", name));
	must(sh("grep '\"data\": true' map.json | grep -vq '\"offset\"'"));
	if (plain)
		must(sh("grep '\"data\": true' map.json | grep -q '\"offset\"'"));
}

/* kvmm compresses; QEMU finds the image clean and equal to its source,
 * and reads it as kvmm does. */
static void test_write_compressed(void **state)
{
	static const struct { const char *cs, *type; uint64_t bytes, batch; } cases[] = {
		{ "512", "zlib", 512, 7 }, { "4k", "zstd", 4096, 64 },
		{ "64k", "zlib", 65536, 32 }, { "64k", "zstd", 65536, 1 },
		{ "2M", "zstd", 2 * MiB, 2 }, { "2M", "zlib", 2 * MiB, 1 },
	};
	(void)state;
	NEED_QEMU();
	make_source("src.raw", 6 * MiB + 4096 + 512, 5);
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		must(sh("rm -f w.qcow2 && qemu-img create -f qcow2 -o cluster_size=%s,compression_type=%s "
			"w.qcow2 %u", cases[i].cs, cases[i].type, 6 * MiB + 4096 + 512));
		write_compressed_image("w.qcow2", cases[i].bytes, cases[i].batch);
		if (sh("qemu-img check w.qcow2") || sh("qemu-img compare -f raw -F qcow2 src.raw w.qcow2"))
			fail_msg("cluster_size %s %s: qemu-img check or compare failed",
				 cases[i].cs, cases[i].type);
		check_map("w.qcow2", cases[i].bytes <= 65536);
		check_reads_like_qemu("w.qcow2");
	}
	/* 1-bit refcounts: a host cluster cannot be shared, so no packing. */
	must(sh("rm -f w.qcow2 && qemu-img create -f qcow2 -o refcount_bits=1 w.qcow2 %u",
		6 * MiB + 4096 + 512));
	write_compressed_image("w.qcow2", 65536, 16);
	must(sh("qemu-img check w.qcow2 && qemu-img compare -f raw -F qcow2 src.raw w.qcow2"));
}

/* Data that does not compress is stored as plain clusters, which QEMU
 * maps at host offsets; clusters of zeros compress to a few bytes each,
 * all packed into one host cluster after the 5 of metadata. */
static void test_incompressible_stored_plain(void **state)
{
	(void)state;
	NEED_QEMU();
	must(sh("head -c 1M /dev/urandom > src.raw && "
		"qemu-img create -f qcow2 w.qcow2 1M"));
	write_compressed_image("w.qcow2", 65536, 16);
	must(sh("qemu-img check w.qcow2 && qemu-img compare -f raw -F qcow2 src.raw w.qcow2"));
	must(sh("qemu-img map --output=json w.qcow2 > map.json && "
		"grep -q '\"start\": 0, \"length\": 1048576, .*\"data\": true, \"offset\"' map.json"));
	must(sh("head -c 1M /dev/zero > src.raw && rm w.qcow2 && "
		"qemu-img create -f qcow2 -o compression_type=zstd w.qcow2 1M"));
	write_compressed_image("w.qcow2", 65536, 16);
	must(sh("qemu-img check w.qcow2 && qemu-img compare -f raw -F qcow2 src.raw w.qcow2 && "
		"test $(stat -c %%s w.qcow2) -le $((6 * 65536))"));
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void set_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/* File offset of the l2 entry of guest cluster 0 of `name`. */
static uint64_t l2_entry0_offset(const char *name)
{
	size_t len;
	uint8_t *f = load_file(name, &len);
	uint64_t l1_off = get_be64(f + 40), l2_off = get_be64(f + l1_off) & 0x00fffffffffffe00ull;

	assert_true(l2_off && l2_off + 8 <= len);
	free(f);
	return l2_off;
}

/* Guest cluster 0 of `name`, its descriptor replaced by `entry`, must
 * fail to read with -EIO; the image still opens and other reads work. */
static void expect_bad_descriptor(const char *name, uint64_t entry)
{
	uint8_t e[8], buf[4096];
	struct image *img;

	set_be64(e, entry);
	must(sh("cp c.qcow2 %s", name));
	patch(name, l2_entry0_offset(name), e, 8);
	img = open_img(name, false);
	assert_int_equal(image_pread(img, buf, sizeof(buf), 0), -EIO);
	assert_int_equal(image_pread(img, buf, sizeof(buf), 1 * MiB), 0);
	image_close(img);
}

/* Descriptors that point past the end of the file, run past it, or name
 * bytes that are no compressed stream (64 KiB clusters: x = 54, the
 * sector count in bits 54..61). */
static void test_hostile_descriptors(void **state)
{
	static const char *const types[] = { "zlib", "zstd" };
	const uint64_t comp = 1ull << 62;
	struct stat st;
	char path[512];

	(void)state;
	NEED_QEMU();
	make_source("src.raw", 2 * MiB, 3);
	path_of("c.qcow2", path, sizeof(path));
	for (unsigned t = 0; t < 2; t++) {
		must(sh("rm -f c.qcow2 && qemu-img convert -c -O qcow2 -o compression_type=%s "
			"src.raw c.qcow2", types[t]));
		assert_int_equal(stat(path, &st), 0);
		expect_bad_descriptor("past.qcow2", comp | ((uint64_t)st.st_size + 4096));
		/* Two sectors from the start of the last one. */
		expect_bad_descriptor("span.qcow2",
				      comp | 1ull << 54 | (((uint64_t)st.st_size - 1) & ~511ull));
		/* The largest sector count, from the header: no stream. */
		expect_bad_descriptor("hdr.qcow2", comp | 255ull << 54 | 8);
	}
}

static void expect_refused(const char *name, const char *msg)
{
	struct image_opts o = { 0 };
	struct image *img;
	char path[512], err[512] = "";
	int r;

	path_of(name, path, sizeof(path));
	o.path = path;
	r = image_open(&o, &img, err, sizeof(err));
	if (r == 0 || !strstr(err, msg) || !strstr(err, name))
		fail_msg("%s: got %d \"%s\", want an error \"%s\"", name, r, err, msg);
	assert_null(img);
}

/* The header's compression_type (byte 104) and incompatible bit 3 (the
 * low byte of the incompatible features at 72 is at 79). */
static void test_header_compression_type(void **state)
{
	uint8_t v;

	(void)state;
	NEED_QEMU();
	must(sh("qemu-img create -f qcow2 -o compression_type=zstd z.qcow2 1M"));
	image_close(open_img("z.qcow2", false));
	must(sh("cp z.qcow2 t2.qcow2"));
	patch("t2.qcow2", 104, "\x02", 1);
	expect_refused("t2.qcow2", "compression type 2 is not supported (zlib or zstd)");
	must(sh("cp z.qcow2 nobit.qcow2"));
	v = 0;
	patch("nobit.qcow2", 79, &v, 1);
	expect_refused("nobit.qcow2", "compression type 1 with incompatible bit 3 clear");
	must(sh("cp z.qcow2 zbit.qcow2"));
	patch("zbit.qcow2", 104, "\x00", 1);
	expect_refused("zbit.qcow2", "compression type 0 with incompatible bit 3 set");
}

/* qcow2_create_with(): QEMU reads the compression type kvmm records, and
 * kvmm's compressed writes into that image are QEMU-clean. */
static void test_create_compression_type(void **state)
{
	struct qcow2_create_opts o = { .size = 3 * MiB, .cluster_size = 4096 };
	char path[512], err[512];

	(void)state;
	NEED_QEMU();
	path_of("k.qcow2", path, sizeof(path));
	o.compression_type = "zstd";
	assert_int_equal(qcow2_create_with(path, &o, err, sizeof(err)), 0);
	must(sh("qemu-img check k.qcow2 && qemu-img info k.qcow2 | grep -q 'compression type: zstd'"));
	make_source("src.raw", 3 * MiB, 9);
	write_compressed_image("k.qcow2", 4096, 100);
	must(sh("qemu-img check k.qcow2 && qemu-img compare -f raw -F qcow2 src.raw k.qcow2"));
	o.compression_type = "zlib";
	assert_int_equal(qcow2_create_with(path, &o, err, sizeof(err)), 0);
	must(sh("qemu-img check k.qcow2 && qemu-img info k.qcow2 | grep -q 'compression type: zlib'"));
	o.compression_type = "lz4";
	assert_int_equal(qcow2_create_with(path, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unknown compression_type lz4"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_read_qemu_compressed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_descriptors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_compressed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_incompressible_stored_plain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_compression_type, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_compression_type, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
