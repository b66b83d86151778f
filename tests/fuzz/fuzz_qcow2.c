/*
 * fuzz_qcow2.c - the qcow2 driver opening and using a hostile image.
 *
 * The input is the image file, byte for byte (seeds: small images made by
 * qemu-img, see corpus-regress/fuzz_qcow2/).  It is put in a memfd and
 * opened through block_open() by its /proc/self/fd path with format=qcow2,
 * read-only, then read-write: reads of 64 KiB at 16 places spread over the
 * virtual size (the first 16 MiB of it), then 4 KiB writes at 4 places,
 * each read back, and a flush.  The open may fail and any request may fail
 * (corruption is reported, not hidden); what must hold, besides the
 * sanitizers: no crash, hang or leak, and a write that succeeded reads back
 * as written.  Then the tools' paths (image.h): `kvmm img map`'s walk over
 * the first 16 MiB, the snapshot list, `check` without and with repair
 * (-r all, on the same memfd, which is the last step) - a repair must not
 * leave more corruptions than it found.  A backing file the image names is resolved against
 * /proc/self/fd: it mostly does not exist, so the chain itself is tested by
 * test_qcow2.c rather than here.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "block/block.h"
#include "block/image.h"
#include "block/qcow2_check.h"
#include "core/event_loop.h"
#include "fuzz.h"
#include "util/log.h"

#define SPAN    (16u << 20)
#define RD_LEN  (64u << 10)
#define WR_LEN  4096u

static int done_result, done_count;

static void done_cb(void *opaque, int result)
{
	(void)opaque;
	done_result = result;
	done_count++;
}

/* One request, run to completion on the loop; its result. */
static int io(struct evloop *loop, struct block_dev *bd, bool write, uint64_t off,
	      void *buf, size_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	int r;

	done_count = 0;
	r = write ? block_writev(bd, off, &iov, 1, done_cb, NULL)
		  : block_readv(bd, off, &iov, 1, done_cb, NULL);
	if (r)
		return r;
	block_submit(bd);
	if (done_count)
		fuzz_fail("completion from inside submit");
	while (!done_count)
		evloop_run_once(loop, 1000);
	return done_result;
}

static void exercise(struct evloop *loop, const char *path, bool readonly)
{
	static uint8_t buf[RD_LEN], back[WR_LEN];
	struct block_opts o = { .path = path, .format = "qcow2", .readonly = readonly };
	struct block_dev *bd;
	char err[512];
	uint64_t span;

	if (block_open(&o, loop, &bd, err, sizeof(err)))
		return;
	span = bd->size < SPAN ? bd->size : SPAN;
	for (unsigned i = 0; i < 16 && span; i++) {
		uint64_t off = span / 16 * i;
		size_t len = span - off < RD_LEN ? span - off : RD_LEN;

		io(loop, bd, false, off, buf, len);
	}
	for (unsigned i = 0; i < 4 && !bd->readonly && span >= WR_LEN; i++) {
		uint64_t off = ((span - WR_LEN) / 4 * i + i * 1536) & ~511ull;

		if (off + WR_LEN > bd->size)
			continue;
		memset(buf, 0x5a + i, WR_LEN);
		if (io(loop, bd, true, off, buf, WR_LEN))
			continue;
		if (io(loop, bd, false, off, back, WR_LEN) == 0 && memcmp(back, buf, WR_LEN))
			fuzz_fail("a write at %llu did not read back", (unsigned long long)off);
	}
	if (!bd->readonly) {
		done_count = 0;
		if (!block_flush(bd, done_cb, NULL)) {
			block_submit(bd);
			while (!done_count)
				evloop_run_once(loop, 1000);
		}
	}
	block_close(bd);
}

/* The tools' view: map, snapshot list, check, repair. */
static void tools(const char *path)
{
	struct image_opts o = { .path = path, .format = "qcow2", .force_share = true };
	struct qcow2_check_result res;
	struct image_snapshot sn;
	struct image *img;
	char err[512];
	uint64_t off = 0, end, before;

	if (image_open(&o, &img, err, sizeof(err)))
		return;
	end = image_size(img) < SPAN ? image_size(img) : SPAN;
	while (off < end) {
		uint64_t pnum, host;
		unsigned flags, depth;
		struct image *layer;

		if (image_chain_status(img, NULL, off, end - off, &pnum, &flags, &host, &layer,
				       &depth))
			break;
		if (!pnum || pnum > end - off)
			fuzz_fail("map: %llu bytes at %llu of %llu", (unsigned long long)pnum,
				  (unsigned long long)off, (unsigned long long)end);
		off += pnum;
	}
	for (unsigned i = 0; i < image_snapshot_count(img); i++)
		image_snapshot_get(img, i, &sn);
	if (image_check(img, 0, &res) || res.check_errors) {
		image_close(img);
		return;
	}
	before = res.corruptions;
	image_close(img);

	o = (struct image_opts){ .path = path, .format = "qcow2", .writable = true, .check = true };
	if (image_open(&o, &img, err, sizeof(err)))
		return;
	if (!image_check(img, QCOW2_FIX_LEAKS | QCOW2_FIX_ERRORS, &res) && !res.check_errors) {
		/* Some damage is beyond repair (qemu-img leaves it too: a
		 * misaligned l2_table pointer), but a repair never makes an
		 * image worse than the check before it found it. */
		image_close(img);
		o.writable = false;
		if (image_open(&o, &img, err, sizeof(err)))
			return;
		if (!image_check(img, 0, &res) && !res.check_errors && res.corruptions > before)
			fuzz_fail("a repair raised the corruptions from %llu to %llu",
				  (unsigned long long)before, (unsigned long long)res.corruptions);
	}
	image_close(img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct evloop loop;
	char path[64];
	int fd;

	log_max_level = LOG_ERROR;
	fd = memfd_create("fuzz_qcow2", MFD_CLOEXEC);
	if (fd < 0 || evloop_init(&loop, NULL))
		fuzz_fail("memfd or event loop: %s", strerror(errno));
	for (size_t off = 0; off < size;) {
		ssize_t n = pwrite(fd, data + off, size - off, (off_t)off);

		if (n <= 0)
			fuzz_fail("memfd write: %s", strerror(errno));
		off += n;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	exercise(&loop, path, true);
	exercise(&loop, path, false);
	tools(path);
	evloop_destroy(&loop);
	close(fd);
	return 0;
}
