/*
 * block.c - the block layer: opening images, locking them against other
 * processes, and the checks every request passes before a driver sees it.
 *
 * Opening.  block_open() opens the file (O_RDONLY or O_RDWR, plus O_DIRECT
 * for cache=none), takes the locks, probes the format and measures the
 * image, then hands the descriptor to the format driver: raw.c or
 * qcow2.c.  Probing knows one signature, the qcow2 magic "QFI\xfb";
 * anything else is raw.  An explicit format=raw opens any file as raw, as
 * in QEMU.  A raw image whose format was probed must not become something
 * else under the guest (QEMU's rule, block/raw-format.c): a write touching
 * its first 512 bytes must cover them from offset 0, and is refused with
 * -EPERM when it would start the file with the qcow2 magic.  qcow2 with
 * cache=none moves data O_DIRECT and metadata buffered (qcow2_io.c).
 *
 * Throw-away overlays (snapshot=on, QEMU's -snapshot for one drive).
 * open_snapshot() learns the image's format (given, or probed as above)
 * and size without opening a driver, creates a qcow2 image in $TMPDIR
 * (default /var/tmp, as QEMU's get_tmp_filename) whose backing file is the
 * image's absolute path with that format recorded (so a probed raw image
 * is never re-probed as anything else), opens it read-write and unlinks
 * it: the qcow2 driver opens the image read-only with the backing-file
 * locks, guest writes land in the overlay's clusters, and the file's
 * blocks are freed when the process ends however it ends.  Only the few
 * milliseconds between mkostemp() and unlink() (qcow2_create's fsync)
 * leave a window in which a SIGKILL leaves the overlay behind.  A probed
 * raw image's sector 0 rule is kept on the overlay (bd->probed_raw), which
 * QEMU does not do (its overlay sits above the raw node) but which keeps
 * the guest's view identical with and without snapshot=on.  The overlay
 * is opened with qcow2_open_throwaway(): it is never fdatasynced, as
 * nothing in it must survive a crash (QEMU: cache=unsafe), which spares
 * every allocating write its syncs.
 *
 * Size and block size.  A regular file's size is st_size, fixed at open; a
 * block device's is BLKGETSIZE64.  logical_block is 512 unless O_DIRECT is
 * used, where it is the smallest unit the kernel accepts: BLKSSZGET for a
 * block device, statx(STATX_DIOALIGN) for a file (stx_dio_offset_align),
 * and 4096 when the file system does not say (safe on every file system
 * that supports O_DIRECT at all).
 *
 * Locking.  kvmm and QEMU must not both write one image, so kvmm takes the
 * very locks QEMU takes (block/file-posix.c, raw_apply_lock_bytes and
 * raw_check_lock_bytes): open-file-description locks (F_OFD_SETLK, which
 * belong to the open file, not the process, and so survive threads and
 * are dropped when the descriptor closes), one byte per permission:
 *
 *   byte 100 + i  shared lock: "I hold permission bit i"
 *   byte 200 + i  shared lock: "I do not let others hold permission bit i"
 *
 * with QEMU's permission bits CONSISTENT_READ 0x1, WRITE 0x2,
 * WRITE_UNCHANGED 0x4, RESIZE 0x8, GRAPH_MOD 0x10.  All locks are shared
 * (F_RDLCK); a conflict is found by testing a byte for an exclusive lock
 * with F_OFD_GETLK, which reports another description's shared lock and
 * ignores our own.  Acquiring: lock our bytes first, then test, so two
 * processes opening at the same instant both see each other (one may fail
 * needlessly, neither wrongly succeeds).  For each bit we hold, byte 200 +
 * bit must be free (nobody refuses to share it); for each bit we do not
 * share, byte 100 + bit must be free (nobody holds it).
 *
 * kvmm's two roles, chosen to match what QEMU does for a guest disk:
 *   read-write:  holds CONSISTENT_READ | WRITE, shares CONSISTENT_READ |
 *                WRITE_UNCHANGED (QEMU's default for a -drive): locks 100,
 *                101, 201, 203, 204.  A second writer (kvmm or QEMU) finds
 *                201 or 101 locked and is refused; `qemu-img info -U`
 *                (shares everything) still works.
 *   read-only:   holds CONSISTENT_READ and shares everything (like QEMU's
 *                force-share): locks 100 only, so it coexists with readers
 *                and with a writer, as the issue asks (a file locked by
 *                another process is refused unless read-only).  A QEMU
 *                reader that does not share WRITE (locks 201) still keeps
 *                a kvmm writer out.
 *   backing:     a backing file of a qcow2 image holds CONSISTENT_READ and
 *                shares all but WRITE and RESIZE (QEMU's rule for a
 *                backing child: its content must not change under the
 *                overlay): locks 100, 201, 203.  Other readers and
 *                overlays coexist; a writer is refused, and keeps it out.
 * A file system without OFD locks (some network file systems) gives
 * EINVAL/ENOLCK/EOPNOTSUPP: the open fails, as QEMU's locking=on does.
 */
#include "block/block.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "block/raw.h"
#include "util/log.h"

/* QEMU's block permission bits (include/block/block-common.h). */
#define PERM_CONSISTENT_READ 0x01
#define PERM_WRITE           0x02
#define PERM_WRITE_UNCHANGED 0x04
#define PERM_RESIZE          0x08
#define PERM_GRAPH_MOD       0x10
#define PERM_ALL             0x1f
#define PERM_BITS            5

/* QEMU's RAW_LOCK_PERM_BASE / RAW_LOCK_SHARED_BASE. */
#define LOCK_PERM_BASE   100
#define LOCK_SHARED_BASE 200

static const char qcow2_magic[4] = { 'Q', 'F', 'I', (char)0xfb };

static int ofd_lock_byte(int fd, off_t off)
{
	struct flock fl = {
		.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = off, .l_len = 1,
	};

	return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/* 1 if another open file description holds a lock on byte `off`. */
static int ofd_byte_taken(int fd, off_t off)
{
	struct flock fl = {
		.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = off, .l_len = 1,
	};

	if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
		return -errno;
	return fl.l_type != F_UNLCK;
}

static int lock_perms(int fd, const char *path, unsigned perm, unsigned shared,
		      char *err, size_t errlen)
{
	bool readonly = !(perm & PERM_WRITE);
	int r;

	for (int i = 0; i < PERM_BITS; i++) {
		if (perm & (1u << i)) {
			r = ofd_lock_byte(fd, LOCK_PERM_BASE + i);
			if (r)
				goto fail;
		}
		if (!(shared & (1u << i))) {
			r = ofd_lock_byte(fd, LOCK_SHARED_BASE + i);
			if (r)
				goto fail;
		}
	}
	for (int i = 0; i < PERM_BITS; i++) {
		if (perm & (1u << i)) {
			r = ofd_byte_taken(fd, LOCK_SHARED_BASE + i);
			if (r)
				goto fail;
		}
		if (!(shared & (1u << i))) {
			r = ofd_byte_taken(fd, LOCK_PERM_BASE + i);
			if (r)
				goto fail;
		}
	}
	return 0;
fail:
	if (r == 1 || r == -EAGAIN || r == -EACCES) {
		snprintf(err, errlen,
			 "%s: locked by another process (another kvmm or QEMU has it open%s)",
			 path, readonly ? " and does not share it" : " for writing");
		return -EAGAIN;
	}
	snprintf(err, errlen, "%s: cannot lock: %s", path, strerror(-r));
	return r;
}

int block_lock_image(int fd, const char *path, bool readonly, char *err,
		     size_t errlen)
{
	return lock_perms(fd, path,
			  readonly ? PERM_CONSISTENT_READ : PERM_CONSISTENT_READ | PERM_WRITE,
			  readonly ? PERM_ALL : PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED,
			  err, errlen);
}

int block_lock_backing(int fd, const char *path, char *err, size_t errlen)
{
	return lock_perms(fd, path, PERM_CONSISTENT_READ,
			  PERM_ALL & ~(PERM_WRITE | PERM_RESIZE), err, errlen);
}

/* Decide the format: o->format if given, else from the first bytes of the
 * image (read through an aligned buffer so that an O_DIRECT descriptor
 * accepts the read; an empty file reads as zeros, which is raw). */
static int probe_format(int fd, const struct block_opts *o, bool *qcow2,
			bool *probed, char *err, size_t errlen)
{
	void *buf = NULL;
	ssize_t n;
	int r = 0;

	*qcow2 = false;
	*probed = false;
	if (o->format) {
		if (!strcmp(o->format, "qcow2"))
			*qcow2 = true;
		else if (strcmp(o->format, "raw")) {
			snprintf(err, errlen, "%s: unknown format \"%s\" (raw or qcow2)",
				 o->path, o->format);
			return -EINVAL;
		}
		return 0;
	}
	if (posix_memalign(&buf, 4096, 4096))
		return -ENOMEM;
	do
		n = pread(fd, buf, 4096, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: cannot read: %s", o->path, strerror(errno));
	} else {
		*qcow2 = n >= 4 && !memcmp(buf, qcow2_magic, 4);
		*probed = true;
	}
	free(buf);
	return r;
}

/* Size and the O_DIRECT alignments (offset: logical_block; memory). */
static int measure(int fd, const struct block_opts *o, struct block_dev *bd,
		   uint32_t *mem_align, char *err, size_t errlen)
{
	struct statx stx;

	if (statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS | STATX_DIOALIGN, &stx) < 0) {
		snprintf(err, errlen, "%s: %s", o->path, strerror(errno));
		return -errno;
	}
	bd->logical_block = 512;
	*mem_align = 512;
	if (S_ISBLK(stx.stx_mode)) {
		uint64_t size;
		int ssz;

		if (ioctl(fd, BLKGETSIZE64, &size) < 0 ||
		    ioctl(fd, BLKSSZGET, &ssz) < 0) {
			snprintf(err, errlen, "%s: cannot size the block device: %s",
				 o->path, strerror(errno));
			return -errno;
		}
		bd->size = size;
		if (o->direct && ssz > 512 && !(ssz & (ssz - 1)))
			bd->logical_block = *mem_align = ssz;
		return 0;
	}
	if (!S_ISREG(stx.stx_mode)) {
		snprintf(err, errlen, "%s: not a regular file or block device", o->path);
		return -EINVAL;
	}
	bd->size = stx.stx_size;
	if (o->direct) {
		if ((stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align) {
			bd->logical_block = stx.stx_dio_offset_align < 512
						    ? 512 : stx.stx_dio_offset_align;
			*mem_align = stx.stx_dio_mem_align < 512
					     ? 512 : stx.stx_dio_mem_align;
		} else {
			bd->logical_block = *mem_align = 4096;
		}
	}
	return 0;
}

static int open_image(const struct block_opts *o, bool throwaway, struct evloop *loop,
		      struct block_dev **out, char *err, size_t errlen)
{
	int flags = (o->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC |
		    (o->direct ? O_DIRECT : 0);
	struct block_dev *bd;
	uint32_t mem_align;
	bool qcow2, probed;
	int fd, r;

	*out = NULL;
	fd = open(o->path, flags);
	if (fd < 0) {
		r = -errno;
		if (r == -EINVAL && o->direct)
			snprintf(err, errlen, "%s: the file system does not support cache=none (O_DIRECT)",
				 o->path);
		else
			snprintf(err, errlen, "%s: %s", o->path, strerror(-r));
		return r;
	}
	bd = calloc(1, sizeof(*bd));
	if (bd)
		bd->name = strdup(o->path);
	if (!bd || !bd->name) {
		r = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory", o->path);
		goto fail;
	}
	bd->readonly = o->readonly;
	bd->can_discard = true;
	bd->loop = loop;
	r = block_lock_image(fd, o->path, o->readonly, err, errlen);
	if (!r)
		r = probe_format(fd, o, &qcow2, &probed, err, errlen);
	if (!r)
		r = measure(fd, o, bd, &mem_align, err, errlen);
	if (r)
		goto fail;
	bd->probed_raw = probed && !qcow2;
	/* The driver owns fd from here, on success and on failure. */
	if (qcow2 && throwaway)
		r = qcow2_open_throwaway(bd, fd, err, errlen);
	else if (qcow2)
		r = qcow2_open(bd, fd, err, errlen);
	else
		r = raw_open(bd, fd, o->direct, mem_align, err, errlen);
	if (r) {
		free(bd->name);
		free(bd);
		return r;
	}
	*out = bd;
	return 0;
fail:
	close(fd);
	if (bd)
		free(bd->name);
	free(bd);
	return r;
}

/* snapshot=on: see the top of the file. */
static int open_snapshot(const struct block_opts *o, struct evloop *loop,
			 struct block_dev **out, char *err, size_t errlen)
{
	struct block_opts bo = { .path = o->path, .format = o->format, .readonly = true };
	const char *dir = getenv("TMPDIR");
	char *base_abs = NULL, *name = NULL, tmp[PATH_MAX];
	struct block_dev probe = { 0 }, *bd = NULL;
	bool qcow2, probed, probed_raw;
	uint32_t mem_align;
	const char *fmt;
	int fd, r;

	*out = NULL;
	/* The format and size, as open_image() finds them.  The image is
	 * validated (and locked as a backing file) when the overlay opens it. */
	fd = open(o->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", o->path, strerror(errno));
		return r;
	}
	r = probe_format(fd, &bo, &qcow2, &probed, err, errlen);
	if (!r)
		r = measure(fd, &bo, &probe, &mem_align, err, errlen);
	if (!r && qcow2) {
		struct qcow2_info info;

		r = qcow2_info(fd, o->path, &info, err, errlen);
		probe.size = info.size;
	}
	close(fd);
	if (r)
		return r;
	fmt = qcow2 ? "qcow2" : "raw";
	probed_raw = probed && !qcow2;

	if (!dir || !*dir)
		dir = "/var/tmp";
	base_abs = realpath(o->path, NULL);
	name = strdup(o->path);
	if (!base_abs || !name) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", o->path, strerror(errno));
		goto out;
	}
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s/kvmm-snapshot-XXXXXX", dir) >= sizeof(tmp)) {
		snprintf(err, errlen, "%s: TMPDIR path too long for the snapshot overlay", o->path);
		r = -ENAMETOOLONG;
		goto out;
	}
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: cannot create the snapshot overlay in %s: %s",
			 o->path, dir, strerror(errno));
		goto out;
	}
	close(fd);
	/* From here to the unlink() the overlay has a name: a crash in
	 * between (milliseconds: qcow2_create's fsync) leaves it in dir. */
	r = qcow2_create(tmp, probe.size, 65536, base_abs, fmt, err, errlen);
	if (!r) {
		bo = (struct block_opts){ .path = tmp, .format = "qcow2", .direct = o->direct };
		r = open_image(&bo, true, loop, &bd, err, errlen);
	}
	unlink(tmp);
	if (r)
		goto out;
	bd->probed_raw = probed_raw;
	free(bd->name);
	bd->name = name;
	name = NULL;
	log_debug("%s: snapshot=on: guest writes go to an unlinked %s overlay in %s",
		  o->path, fmt, dir);
	*out = bd;
out:
	free(base_abs);
	free(name);
	return r;
}

int block_open(const struct block_opts *o, struct evloop *loop,
	       struct block_dev **out, char *err, size_t errlen)
{
	if (o->snapshot && !o->readonly)
		return open_snapshot(o, loop, out, err, errlen);
	return open_image(o, false, loop, out, err, errlen);
}

int block_open_driver(const struct block_driver *drv, void *state,
		      uint64_t size, bool readonly, struct evloop *loop,
		      struct block_dev **out)
{
	struct block_dev *bd = calloc(1, sizeof(*bd));

	*out = NULL;
	if (!bd || !(bd->name = strdup(drv->name))) {
		free(bd);
		return -ENOMEM;
	}
	bd->drv = drv;
	bd->state = state;
	bd->size = size;
	bd->logical_block = 512;
	bd->readonly = readonly;
	bd->can_discard = true;
	bd->loop = loop;
	*out = bd;
	return 0;
}

static int check_range(const struct block_dev *bd, uint64_t offset,
		       uint64_t len)
{
	return offset > bd->size || len > bd->size - offset ? -EINVAL : 0;
}

static int rw(struct block_dev *bd, enum block_op op, uint64_t offset,
	      const struct iovec *iov, int iovcnt, block_done_fn done,
	      void *opaque)
{
	struct block_req req = {
		.op = op, .offset = offset, .iov = iov, .iovcnt = iovcnt,
		.done = done, .opaque = opaque,
	};

	if (iovcnt < 0 || iovcnt > IOV_MAX)
		return -EINVAL;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > bd->size - req.len)
			return -EINVAL;
		req.len += iov[i].iov_len;
	}
	if (check_range(bd, offset, req.len))
		return -EINVAL;
	if (op != BLOCK_OP_READ && bd->readonly)
		return -EROFS;
	if (op == BLOCK_OP_WRITE && bd->probed_raw && offset < 512 && req.len) {
		uint8_t head[4];
		size_t got = 0;

		if (offset || req.len < 512)
			return -EINVAL;
		for (int i = 0; i < iovcnt && got < sizeof(head); i++) {
			size_t n = iov[i].iov_len < sizeof(head) - got
					   ? iov[i].iov_len : sizeof(head) - got;

			memcpy(head + got, iov[i].iov_base, n);
			got += n;
		}
		if (!memcmp(head, qcow2_magic, sizeof(head)))
			return -EPERM;
	}
	return bd->drv->submit(bd, &req);
}

int block_readv(struct block_dev *bd, uint64_t offset, const struct iovec *iov,
		int iovcnt, block_done_fn done, void *opaque)
{
	return rw(bd, BLOCK_OP_READ, offset, iov, iovcnt, done, opaque);
}

int block_writev(struct block_dev *bd, uint64_t offset, const struct iovec *iov,
		 int iovcnt, block_done_fn done, void *opaque)
{
	return rw(bd, BLOCK_OP_WRITE, offset, iov, iovcnt, done, opaque);
}

int block_flush(struct block_dev *bd, block_done_fn done, void *opaque)
{
	struct block_req req = { .op = BLOCK_OP_FLUSH, .done = done, .opaque = opaque };

	return bd->drv->submit(bd, &req);
}

static int zap(struct block_dev *bd, enum block_op op, uint64_t offset,
	       uint64_t len, bool unmap, block_done_fn done, void *opaque)
{
	struct block_req req = {
		.op = op, .offset = offset, .len = len, .unmap = unmap,
		.done = done, .opaque = opaque,
	};

	if (check_range(bd, offset, len))
		return -EINVAL;
	if (bd->readonly)
		return -EROFS;
	return bd->drv->submit(bd, &req);
}

int block_discard(struct block_dev *bd, uint64_t offset, uint64_t len,
		  block_done_fn done, void *opaque)
{
	return zap(bd, BLOCK_OP_DISCARD, offset, len, false, done, opaque);
}

int block_write_zeroes(struct block_dev *bd, uint64_t offset, uint64_t len,
		       bool unmap, block_done_fn done, void *opaque)
{
	return zap(bd, BLOCK_OP_WRITE_ZEROES, offset, len, unmap, done, opaque);
}

void block_submit(struct block_dev *bd)
{
	if (bd->drv->kick)
		bd->drv->kick(bd);
}

void block_close(struct block_dev *bd)
{
	if (!bd)
		return;
	/* The driver closes the descriptor, which drops the OFD locks. */
	bd->drv->close(bd);
	/* What reached the kernel, for `kvmm run -v` and the end-to-end
	 * tests (a guest's fsync must show up as an fdatasync here). */
	log_info("%s: %llu reads, %llu writes, %llu flushes (%llu fdatasyncs done), "
		 "%llu discards, %llu write-zeroes submitted", bd->name,
		 (unsigned long long)bd->stats.sqes[BLOCK_OP_READ],
		 (unsigned long long)bd->stats.sqes[BLOCK_OP_WRITE],
		 (unsigned long long)bd->stats.sqes[BLOCK_OP_FLUSH],
		 (unsigned long long)bd->stats.flushes_done,
		 (unsigned long long)bd->stats.sqes[BLOCK_OP_DISCARD],
		 (unsigned long long)bd->stats.sqes[BLOCK_OP_WRITE_ZEROES]);
	free(bd->name);
	free(bd);
}
