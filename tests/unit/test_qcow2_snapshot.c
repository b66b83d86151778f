/*
 * test_qcow2_snapshot.c - internal snapshots and resize of qcow2 images
 * (block/qcow2_snapshot.c, block/qcow2_resize.c) through image.h, with
 * QEMU as the judge.
 *
 * The API tests change images with image_snapshot_*() and check what a
 * tool sees: content through image_pread(), the snapshot list, and
 * `qemu-img check` clean after each step.  A hostile snapshot table entry
 * (an l1_table naming a refcount_block as an l2_table) is refused with
 * nothing changed.
 *
 * The power-cut tests record every write and fdatasync an operation makes
 * (struct qcow2_file_hooks), then rebuild the image as a crash after each
 * write could have left it: (a) every write up to the cut reached the
 * disk; (b) only what was synced before it, plus the write itself (a
 * later write overtaking unsynced ones).  Each such image must pass
 * `qemu-img check` with at most leaks (exit 0 or 3), or report only
 * OFLAG_COPIED errors, the window qcow2_snapshot.c's top comment argues is
 * harmless (`qemu-img check -r all` must then repair it to clean); its
 * content must be the image before or after the operation, and a
 * snapshot it lists must hold what it held.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "block/image.h"
#include "block/qcow2_int.h"

static char dir[256];

static int sh(const char *fmt, ...)
{
	char cmd[4096];
	int n = snprintf(cmd, sizeof(cmd), "cd '%s' && (", dir);
	va_list ap;

	va_start(ap, fmt);
	n += vsnprintf(cmd + n, sizeof(cmd) - n, fmt, ap);
	va_end(ap);
	snprintf(cmd + n, sizeof(cmd) - n, ") >/dev/null 2>&1");
	int st = system(cmd);

	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#define must(...) assert_int_equal(sh(__VA_ARGS__), 0)

static int setup(void **state)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

	(void)state;
	snprintf(dir, sizeof(dir), "%s/kvmm-test-qsnap-XXXXXX", tmp);
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

#define NEED_QEMU() do { \
	if (system("qemu-img --version >/dev/null 2>&1 && qemu-io --version >/dev/null 2>&1")) \
		skip(); \
} while (0)

static struct image *open_img(const char *name, bool writable)
{
	char path[512], err[512] = "";
	struct image *img;
	int r;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	r = image_open(&(struct image_opts){ .path = path, .writable = writable }, &img, err,
		       sizeof(err));
	if (r)
		fail_msg("image_open %s: %d %s", name, r, err);
	return img;
}

/* Every byte of [off, off + len) of img is `pat`. */
static void expect_fill(struct image *img, uint64_t off, uint64_t len, uint8_t pat)
{
	uint8_t *b = malloc(len);

	assert_non_null(b);
	assert_int_equal(image_pread(img, b, len, off), 0);
	for (uint64_t i = 0; i < len; i++)
		if (b[i] != pat)
			fail_msg("byte %llu is %u, want %u", (unsigned long long)(off + i), b[i], pat);
	free(b);
}

static void fill(struct image *img, uint64_t off, uint64_t len, uint8_t pat)
{
	uint8_t *b = malloc(len);

	assert_non_null(b);
	memset(b, pat, len);
	assert_int_equal(image_pwrite(img, b, len, off), 0);
	free(b);
}

static void test_api(void **state)
{
	char err[512];
	struct image *img;
	struct image_snapshot s;

	(void)state;
	NEED_QEMU();
	must("qemu-img create -f qcow2 a.qcow2 4M && qemu-io -c 'write -P 1 0 1M' a.qcow2");
	img = open_img("a.qcow2", true);
	assert_int_equal(image_snapshot_create(img, "one", err, sizeof(err)), 0);
	fill(img, 64 * 1024, 4096, 2);        /* a shared cluster: copied */
	expect_fill(img, 64 * 1024, 4096, 2);
	assert_int_equal(image_snapshot_create(img, "two", err, sizeof(err)), 0);
	assert_int_equal(image_snapshot_count(img), 2);
	image_snapshot_get(img, 1, &s);
	assert_string_equal(s.id, "2");
	assert_string_equal(s.name, "two");
	assert_int_equal(s.disk_size, 4 << 20);
	assert_true(s.has_icount);
	/* -a looks up ids first, -d names first. */
	assert_int_equal(image_snapshot_find(img, "1", false), 0);
	assert_int_equal(image_snapshot_find(img, "two", false), 1);
	assert_int_equal(image_snapshot_find(img, "nope", true), -ENOENT);
	image_close(img);
	must("qemu-img check a.qcow2");

	img = open_img("a.qcow2", true);
	assert_int_equal(image_snapshot_apply(img, 0, err, sizeof(err)), 0);
	expect_fill(img, 64 * 1024, 4096, 1);
	fill(img, 0, 4096, 3);
	assert_int_equal(image_snapshot_apply(img, 1, err, sizeof(err)), 0);
	expect_fill(img, 0, 4096, 1);
	expect_fill(img, 64 * 1024, 4096, 2);
	assert_int_equal(image_snapshot_delete(img, 0, err, sizeof(err)), 0);
	assert_int_equal(image_snapshot_count(img), 1);
	assert_string_equal((image_snapshot_get(img, 0, &s), s.name), "two");
	expect_fill(img, 64 * 1024, 4096, 2);
	image_close(img);
	must("qemu-img check a.qcow2");
	must("qemu-img snapshot -l a.qcow2 | grep -q '^2 *two '");

	/* Resize: grow across the l1_table, content kept, zeros after. */
	img = open_img("a.qcow2", true);
	assert_int_equal(image_resize(img, 3ull << 30, err, sizeof(err)), 0);
	assert_int_equal(image_size(img), 3ull << 30);
	fill(img, (3ull << 30) - 4096, 4096, 5);
	expect_fill(img, 0, 4096, 1);
	expect_fill(img, 2ull << 30, 4096, 0);
	assert_int_equal(image_resize(img, (3ull << 30) + 1, err, sizeof(err)), -EINVAL);
	image_close(img);
	must("qemu-img check a.qcow2");
	must("qemu-img info a.qcow2 | grep -q '(3221225472 bytes)'");

	/* Shrink: what lies past the new end goes; the snapshot keeps its
	 * own size and clusters; growing again shows zeros. */
	img = open_img("a.qcow2", true);
	assert_int_equal(image_resize(img, 48 * 1024, err, sizeof(err)), 0);
	assert_int_equal(image_size(img), 48 * 1024);
	expect_fill(img, 0, 4096, 1);
	assert_int_equal(image_resize(img, 4 << 20, err, sizeof(err)), 0);
	expect_fill(img, 64 * 1024, 4096, 0);
	assert_int_equal(image_snapshot_apply(img, 0, err, sizeof(err)), 0);
	expect_fill(img, 64 * 1024, 4096, 2);
	image_close(img);
	must("qemu-img check a.qcow2");

	/* Raw images have no snapshots. */
	must("qemu-img create -f raw r.raw 1M");
	img = open_img("r.raw", true);
	assert_int_equal(image_snapshot_count(img), 0);
	assert_int_equal(image_snapshot_create(img, "x", err, sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, "r.raw"));
	image_close(img);
}

/* A snapshot whose l1_table names the refcount_block as an l2_table:
 * applying or deleting it is refused, the image is left as it was. */
static void test_hostile(void **state)
{
	char err[512];
	struct image *img;

	(void)state;
	NEED_QEMU();
	must("qemu-img create -f qcow2 h.qcow2 1M && qemu-io -c 'write -P 1 0 64k' h.qcow2 && "
	     "qemu-img snapshot -c s h.qcow2");
	/* The snapshot's l1_table: entry 0 := 0x20000 (the refcount_block
	 * of a fresh 64k-cluster image). */
	must("python3 -c \"import struct; f=open('h.qcow2','r+b'); d=f.read(); "
	     "so=struct.unpack('>Q',d[64:72])[0]; l1=struct.unpack('>Q',d[so:so+8])[0]; "
	     "f.seek(l1); f.write(struct.pack('>Q',0x20000))\" && cp h.qcow2 h0.qcow2");
	img = open_img("h.qcow2", true);
	err[0] = 0;
	assert_int_equal(image_snapshot_apply(img, 0, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "h.qcow2"));
	assert_non_null(strstr(err, "l2_table"));
	assert_int_equal(image_snapshot_delete(img, 0, err, sizeof(err)), -EINVAL);
	image_close(img);
	must("cmp h.qcow2 h0.qcow2");
}

/* ---- power cuts ---- */

struct rec {
	uint8_t *buf;     /* NULL: an fdatasync */
	uint64_t len, off;
};

static struct rec *recs;
static size_t nrecs;

static int rec_pwrite(void *opaque, int fd, const void *buf, uint64_t len, uint64_t off)
{
	(void)opaque;
	recs = realloc(recs, (nrecs + 1) * sizeof(*recs));
	assert_non_null(recs);
	recs[nrecs].buf = malloc(len ? len : 1);
	assert_non_null(recs[nrecs].buf);
	memcpy(recs[nrecs].buf, buf, len);
	recs[nrecs].len = len;
	recs[nrecs].off = off;
	nrecs++;
	return pwrite(fd, buf, len, (off_t)off) == (ssize_t)len ? 0 : -EIO;
}

static int rec_sync(void *opaque, int fd)
{
	(void)opaque;
	(void)fd;
	recs = realloc(recs, (nrecs + 1) * sizeof(*recs));
	assert_non_null(recs);
	recs[nrecs++] = (struct rec){ 0 };
	return 0;
}

static const struct qcow2_file_hooks rec_hooks = { rec_pwrite, rec_sync, NULL };

static void recs_free(void)
{
	for (size_t i = 0; i < nrecs; i++)
		free(recs[i].buf);
	free(recs);
	recs = NULL;
	nrecs = 0;
}

static uint8_t *pre_img;
static size_t pre_len;

/* cut.qcow2 := pre.qcow2 plus the records [0, upto) except those in
 * [skip_from, skip_to). */
static void build_cut(size_t upto, size_t skip_from, size_t skip_to)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/cut.qcow2", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, pre_img, pre_len), (ssize_t)pre_len);
	for (size_t i = 0; i < upto; i++)
		if (recs[i].buf && (i < skip_from || i >= skip_to))
			assert_int_equal(pwrite(fd, recs[i].buf, recs[i].len, (off_t)recs[i].off),
					 (ssize_t)recs[i].len);
	close(fd);
}

static void load_pre(void)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/pre.qcow2", dir);
	f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	pre_len = (size_t)ftell(f);
	rewind(f);
	free(pre_img);
	pre_img = malloc(pre_len);
	assert_non_null(pre_img);
	assert_int_equal(fread(pre_img, 1, pre_len, f), pre_len);
	fclose(f);
}

/* One shell per cut image (process start-up dominates): 0 clean or leaks
 * only, 1 the same after repairing stale COPIED flags only; 10 other
 * corruption, 11 not repaired, 12 content neither before nor after, 13
 * the new snapshot ("new", taken of pre) does not hold pre's content. */
static const char judge[] =
	"w=0; qemu-img check cut.qcow2 2>err.txt; st=$?; "
	"case $st in 0|3) ;; "
	"2) grep -v '^ERROR OFLAG_COPIED' err.txt | grep -q ERROR && exit 10; "
	"   qemu-img check -r all cut.qcow2; qemu-img check cut.qcow2 || exit 11; w=1 ;; "
	"*) exit $((20 + st)) ;; esac; "
	"qemu-img convert -O raw cut.qcow2 cut.raw || exit 14; "
	"cmp -s cut.raw pre.raw || cmp -s cut.raw post.raw || exit 12; "
	"if qemu-img snapshot -l cut.qcow2 | grep -q ' new '; then "
	"  qemu-img snapshot -a new cut.qcow2 && qemu-img convert -O raw cut.qcow2 cut.raw && "
	"  cmp -s cut.raw pre.raw || exit 13; fi; exit $w";

enum op { OP_CREATE, OP_APPLY, OP_DELETE, OP_RESIZE };

static int run_op(struct image *img, enum op op)
{
	char err[512];

	switch (op) {
	case OP_CREATE: return image_snapshot_create(img, "new", err, sizeof(err));
	case OP_APPLY: return image_snapshot_apply(img, 0, err, sizeof(err));
	case OP_DELETE: return image_snapshot_delete(img, 0, err, sizeof(err));
	case OP_RESIZE: return image_resize(img, 2ull << 30, err, sizeof(err)); /* l1: 2 clusters */
	}
	return -EINVAL;
}

/* Record op on pre.qcow2 (into post.qcow2), then judge every cut. */
static void powercut(enum op op, int *copied_window)
{
	struct image *img;
	size_t nw = 0, ncut = 0;
	int st;

	must("cp pre.qcow2 post.qcow2 && qemu-img convert -O raw pre.qcow2 pre.raw");
	load_pre();
	img = open_img("post.qcow2", true);
	((struct qimg *)img)->hooks = &rec_hooks;
	assert_int_equal(run_op(img, op), 0);
	image_close(img);
	must("qemu-img check post.qcow2 && qemu-img convert -O raw post.qcow2 post.raw");
	for (size_t k = 0; k < nrecs; k++) {
		size_t last_sync = 0;

		if (!recs[k].buf)
			continue;
		nw++;
		for (size_t i = 0; i < k; i++)
			if (!recs[i].buf)
				last_sync = i;
		for (int variant = 0; variant < 2; variant++) {
			/* (b) is (a) when nothing unsynced precedes k. */
			if (variant == 1 && last_sync + 1 >= k)
				continue;
			if (variant == 0)
				build_cut(k + 1, 0, 0);
			else
				build_cut(k + 1, last_sync, k);
			ncut++;
			st = sh("%s", judge);
			if (st == 1)
				(*copied_window)++;
			else if (st)
				fail_msg("op %d, cut after write %zu (variant %d): judge says %d",
					 op, k, variant, st);
		}
	}
	print_message("op %d: %zu writes, %zu cut images, %d with only OFLAG_COPIED errors\n",
		      op, nw, ncut, *copied_window);
	assert_true(nw > 3);
	recs_free();
}

static void test_powercut(void **state)
{
	int window[4] = { 0 };

	(void)state;
	NEED_QEMU();
	/* 4 KiB clusters so that the trees span several l2_tables, with a
	 * compressed and a zero cluster, and a snapshot "s" of an older
	 * content. */
	must("qemu-img create -f qcow2 -o cluster_size=4k pre.qcow2 8M && "
	     "qemu-io -c 'write -P 1 0 12k' -c 'write -c -P 2 4M 4k' -c 'write -z 5M 4k' pre.qcow2 && "
	     "qemu-img snapshot -c s pre.qcow2 && "
	     "qemu-io -c 'write -P 3 4k 4k' -c 'write -P 4 2M 4k' pre.qcow2 && cp pre.qcow2 base.qcow2");
	powercut(OP_CREATE, &window[OP_CREATE]);
	must("cp base.qcow2 pre.qcow2");
	powercut(OP_APPLY, &window[OP_APPLY]);
	must("cp base.qcow2 pre.qcow2");
	powercut(OP_DELETE, &window[OP_DELETE]);
	/* Resize switches in one header write: never a COPIED window. */
	must("cp base.qcow2 pre.qcow2");
	powercut(OP_RESIZE, &window[OP_RESIZE]);
	free(pre_img);
	pre_img = NULL;
	assert_int_equal(window[OP_APPLY], 0);
	assert_int_equal(window[OP_RESIZE], 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_api, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_powercut, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
