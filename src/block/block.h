/*
 * block.h - the block layer: one asynchronous interface over disk images,
 * whatever their format (raw.c, qcow2.c).
 *
 * Requests are byte-addressed (offset and length in bytes; devices convert
 * from their sectors of 512) and complete through a callback on the I/O
 * thread that owns the block device (the event loop given to block_open).
 * Submission is batched: requests are queued by block_readv() & co and go
 * to the kernel in one io_uring_submit() at block_submit(), which a device
 * calls once it has taken every request a kick gave it.
 *
 * Durability: a write completes when the kernel has it (page cache, or the
 * device with cache=none); only a completed block_flush() makes earlier
 * completed writes durable (fdatasync).  Formats order their metadata
 * writes so that a crash at any instant loses nothing that was flushed.
 *
 * A block_driver may also be supplied by a test (a recording or "power cut"
 * backend) through block_open_driver().
 */
#ifndef KVMM_BLOCK_BLOCK_H
#define KVMM_BLOCK_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct evloop;
struct block_dev;

/* Completion: `result` is 0 on success (the whole length transferred) or
 * -errno.  Runs on the I/O thread, from the event loop: never from inside
 * block_readv() & co or block_submit(), so a caller may hold its own lock
 * around those and take it again in the callback. */
typedef void (*block_done_fn)(void *opaque, int result);

enum block_op {
	BLOCK_OP_READ,
	BLOCK_OP_WRITE,
	BLOCK_OP_FLUSH,        /* fdatasync: earlier completed writes are durable */
	BLOCK_OP_DISCARD,      /* the range may read back as anything (we punch a hole) */
	BLOCK_OP_WRITE_ZEROES, /* the range reads back as zeros */
};

/* One request as a driver sees it. */
struct block_req {
	enum block_op op;
	uint64_t offset, len;     /* bytes (len = sum of iov for READ/WRITE) */
	const struct iovec *iov;  /* READ/WRITE only; valid until completion */
	int iovcnt;
	bool unmap;               /* WRITE_ZEROES: may deallocate */
	block_done_fn done;
	void *opaque;
};

/* A format / backend. */
struct block_driver {
	const char *name;          /* "raw", "qcow2", ... */
	/* Queue one request (the block layer checked bounds and read-only).
	 * Returns 0 (done will be called exactly once, later, from the event
	 * loop) or -errno (done will not be called). */
	int (*submit)(struct block_dev *bd, const struct block_req *req);
	/* Push queued requests to the kernel.  May be NULL. */
	void (*kick)(struct block_dev *bd);
	/* Wait for every request in flight, then free the driver state. */
	void (*close)(struct block_dev *bd);
};

/* What a driver sent to the kernel, for tests and diagnostics: counters
 * prove that an operation really reached the host (a flush that is a
 * no-op would leave flushes_done at 0). */
struct block_stats {
	uint64_t sqes[5];          /* io_uring submissions per enum block_op
				    * (resubmissions of short transfers count) */
	uint64_t flushes_done;     /* fdatasyncs the kernel reported done */
	uint64_t bounced;          /* O_DIRECT requests copied through a bounce buffer */
	uint64_t zero_fallbacks;   /* WRITE_ZEROES written as zeros (fallocate refused) */
};

struct block_dev {
	const struct block_driver *drv;
	void *state;               /* the driver's */
	uint64_t size;             /* bytes the guest sees */
	uint32_t logical_block;    /* bytes: 512, or the host's with O_DIRECT */
	bool readonly;
	bool can_discard;          /* DISCARD / WRITE_ZEROES really free space */
	bool probed_raw;           /* raw by probing, not by format=raw: the
				    * guest may not write a format's magic
				    * into sector 0 (see block_writev) */
	char *name;                /* the file path, for messages */
	struct evloop *loop;
	struct block_stats stats;  /* kept by the driver, I/O thread only */
};

struct block_opts {
	const char *path;
	const char *format;        /* "raw", "qcow2", or NULL to probe */
	bool readonly;
	bool direct;               /* cache=none: O_DIRECT */
	bool snapshot;             /* snapshot=on: writes go to a throw-away
				    * qcow2 overlay (see block_open) */
};

/* Open the image at o->path (a regular file or a block device) on the I/O
 * thread of `loop` and lock it with OFD locks on the bytes QEMU uses
 * (block/file-posix.c: byte 100 + bit for each permission held, 200 + bit
 * for each permission not shared, BLK_PERM_* bits): a writer holds
 * CONSISTENT_READ|WRITE and shares only CONSISTENT_READ|WRITE_UNCHANGED, so
 * it excludes other writers, kvmm's or QEMU's; a read-only open holds
 * CONSISTENT_READ and shares everything, so it coexists with readers and
 * writers.  format NULL probes: a file starting with the qcow2 magic is
 * qcow2, anything else raw (bd->probed_raw).  A qcow2 image marked corrupt
 * opens read-only (bd->readonly set); its backing chain is opened
 * read-only with the formats the images record.  With o->direct the file is opened
 * O_DIRECT and logical_block is the host's (BLKSSZGET, statx
 * STATX_DIOALIGN, else 4096).  Returns 0 with *out set, or -errno with a
 * one-line message naming the file and the problem in err (-EAGAIN when
 * another process holds the lock, -EINVAL for a format we cannot open or
 * an invalid image, -ENOTSUP for a qcow2 feature not implemented, -EIO
 * for a dirty qcow2 image opened for writing whose refcounts could not be
 * repaired: a dirty image is repaired at a writable open).
 *
 * o->snapshot (QEMU's -snapshot for one drive): the image is opened
 * read-only first to learn its format (o->format, or probed) and size,
 * then a qcow2 overlay of that size is created in $TMPDIR (default
 * /var/tmp) with the image's absolute path as backing file and that
 * format recorded as backing format, opened read-write, and unlinked at
 * once: the image itself is only read (locked as a backing file, so that
 * nobody writes it meanwhile), guest writes land in the overlay and
 * vanish with the process, even on SIGKILL.  The overlay keeps a probed
 * raw image's sector 0 rule (bd->probed_raw), so the guest sees the
 * same disk with or without snapshot; bd->name stays o->path.  With
 * o->readonly nothing can be written and no overlay is made (QEMU's
 * -snapshot accepts read-only drives too).  The overlay is never
 * fdatasynced (nothing in it outlives the process; QEMU's overlays are
 * cache=unsafe); with o->direct its data moves O_DIRECT. */
int block_open(const struct block_opts *o, struct evloop *loop,
	       struct block_dev **out, char *err, size_t errlen);

/* Lock the image open on `fd` as block_open() does (the top image: a
 * writer excludes other writers; a reader shares everything).  For tools
 * (image.c).  Returns 0, -EAGAIN when another process holds a conflicting
 * lock (a message naming `path` in err), or -errno. */
int block_lock_image(int fd, const char *path, bool readonly, char *err,
		     size_t errlen);

/* For format drivers (qcow2.c): lock a backing file open on `fd` as QEMU
 * locks a backing child: hold CONSISTENT_READ, share all but WRITE and
 * RESIZE, so nobody writes it while an overlay reads it (the OFD locks
 * go with fd's close).  Returns 0, -EAGAIN when another open file writes
 * it (a message naming `path` in err), or -errno. */
int block_lock_backing(int fd, const char *path, char *err, size_t errlen);

/* Wrap a driver supplied by the caller (tests). `state` is the driver's
 * (freed by its close).  logical_block is 512.  Returns 0 or -ENOMEM. */
int block_open_driver(const struct block_driver *drv, void *state,
		      uint64_t size, bool readonly, struct evloop *loop,
		      struct block_dev **out);

/* Queue a request.  Bounds are checked here: a range past the end (or
 * more than IOV_MAX segments) gives -EINVAL, a write, discard or write
 * zeroes on a read-only device -EROFS (done is not called on error).
 * With O_DIRECT, a write whose offset or length is not a multiple of
 * logical_block gives -EINVAL; unaligned memory and unaligned reads are
 * bounced.  On a probed raw image (probed_raw), a write touching bytes
 * 0..511 must start at 0 and cover them (-EINVAL otherwise) and may not
 * start with the qcow2 magic (-EPERM).  Returns 0 when queued (sent at
 * the next block_submit()). */
int block_readv(struct block_dev *bd, uint64_t offset, const struct iovec *iov,
		int iovcnt, block_done_fn done, void *opaque);
int block_writev(struct block_dev *bd, uint64_t offset, const struct iovec *iov,
		 int iovcnt, block_done_fn done, void *opaque);
int block_flush(struct block_dev *bd, block_done_fn done, void *opaque);
int block_discard(struct block_dev *bd, uint64_t offset, uint64_t len,
		  block_done_fn done, void *opaque);
int block_write_zeroes(struct block_dev *bd, uint64_t offset, uint64_t len,
		       bool unmap, block_done_fn done, void *opaque);

/* Send every queued request to the kernel (io_uring_submit). */
void block_submit(struct block_dev *bd);

/* Wait for requests in flight (their callbacks run, from here), unlock and
 * close.  NULL is a no-op. */
void block_close(struct block_dev *bd);

#endif
