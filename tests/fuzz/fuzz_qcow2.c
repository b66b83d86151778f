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
 * as written.  A backing file the image names is resolved against
 * /proc/self/fd: it mostly does not exist, so the chain itself is tested by
 * test_qcow2.c rather than here.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "block/block.h"
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
	evloop_destroy(&loop);
	close(fd);
	return 0;
}
