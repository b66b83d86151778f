/*
 * qcow2.h - the qcow2 driver (qcow2.c), used by block_open() in block.c.
 * Not a public interface: devices go through block.h.
 */
#ifndef KVMM_BLOCK_QCOW2_H
#define KVMM_BLOCK_QCOW2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct block_dev;

/* Attach the qcow2 driver to `bd` over the open image file `fd` (owned
 * from now on: closed by the driver's close, or here on error).
 * bd->readonly says how fd was opened; bd->name is the path, against
 * which a relative backing file name is resolved.  Sets bd->size to the
 * virtual disk size in bytes (the header's `size`), and forces
 * bd->readonly when the image is marked corrupt.  Backing files (raw or
 * qcow2, format taken from the image's backing format extension, never
 * probed) are opened read-only, the whole chain at once.
 * Returns 0, or -errno with a one-line message naming the file in err:
 * -EINVAL for an invalid header or a loop in the backing chain,
 * -ENOTSUP for features kvmm does not implement (named in the message),
 * -EIO for read errors or a dirty image opened for writing whose
 * refcounts could not be repaired (a dirty image opened for writing has
 * its refcounts repaired and the dirty bit cleared first). */
int qcow2_open(struct block_dev *bd, int fd, char *err, size_t errlen);

/* Open a throw-away image (snapshot=on's overlay) as qcow2_open() does,
 * but never fdatasync it: nothing in it has to survive a crash, since it
 * is unlinked and gone with the process (QEMU gives its -snapshot
 * overlays cache=unsafe).  Guest flushes still complete and are counted.
 * Same arguments and errors as qcow2_open(). */
int qcow2_open_throwaway(struct block_dev *bd, int fd, char *err, size_t errlen);

/* What `kvmm img info` shows of a qcow2 image. */
struct qcow2_info {
	uint32_t version;           /* 2 or 3 */
	uint64_t size;              /* virtual size, bytes */
	uint64_t cluster_size;      /* bytes */
	uint32_t refcount_bits;
	bool dirty, corrupt, lazy_refcounts;
	char backing[1024];         /* as recorded ("" if none) */
	char backing_fmt[64];       /* "" if not recorded */
	const char *compression_type; /* "zlib" or "zstd" (version 3) */
};

/* Read and validate the header of the qcow2 image open on `fd` (`path`
 * for messages).  Returns 0, or -errno with a message in err, as
 * qcow2_open (an image with a feature kvmm does not implement fails). */
int qcow2_info(int fd, const char *path, struct qcow2_info *info, char *err,
	       size_t errlen);

/* Create (or truncate and overwrite) a version 3 qcow2 image at `path`:
 * virtual size `size` bytes (rounded up to 512), clusters of cluster_size
 * bytes (a power of two, 512 .. 2 MiB), 16-bit refcounts, a
 * refcount_table large enough for the image filled (up to 8 MiB of it:
 * the driver does not grow it), no data clusters.  `backing` (recorded as given; NULL for none) needs
 * `backing_fmt`, recorded in the backing format extension.  The file is
 * fsynced.  Returns 0, or -errno with a message in err (-EINVAL for bad
 * arguments or a size whose l1_table would not fit the layout). */
int qcow2_create(const char *path, uint64_t size, uint32_t cluster_size,
		 const char *backing, const char *backing_fmt, char *err,
		 size_t errlen);

/* What qcow2_create_with() makes (qemu-img create -o names in comments). */
struct qcow2_create_opts {
	uint64_t size;              /* virtual size, bytes (rounded up to 512) */
	uint32_t cluster_size;      /* cluster_size: bytes, 0 = 64 KiB */
	const char *backing;        /* backing_file, recorded as given; NULL */
	const char *backing_fmt;    /* backing_fmt, needed with backing */
	const char *compression_type; /* compression_type: "zlib" (NULL) or "zstd" */
};

/* qcow2_create() with all options: the same image, and for zstd the
 * header's compression_type 1 with incompatible bit 3 set (spec:
 * "Header", "compression type").  Returns 0, or -errno with a message in
 * err (-EINVAL also for an unknown compression_type). */
int qcow2_create_with(const char *path, const struct qcow2_create_opts *o, char *err,
		      size_t errlen);

#endif
