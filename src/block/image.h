/*
 * image.h - synchronous access to a disk image and its backing chain, for
 * tools (`kvmm img`): read and write guest bytes, ask what is allocated
 * where.  Devices use block.h instead (asynchronous, on an I/O thread).
 *
 * An image is raw or qcow2 (QEMU's docs/interop/qcow2.txt); a qcow2
 * image's backing files are opened with it, read-only, with the formats
 * the images record.  Offsets and lengths are in bytes of the virtual
 * disk.  One thread at a time per image.
 */
#ifndef KVMM_BLOCK_IMAGE_H
#define KVMM_BLOCK_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct image;

struct image_opts {
	const char *path;
	const char *format;  /* "raw", "qcow2", or NULL to probe (the
			      * qcow2 magic, else raw) */
	bool writable;
	bool force_share;    /* take no lock (qemu-img -U): for reading an
			      * image another process may be writing */
	bool check;          /* for kvmm img check: a corrupt image may be
			      * opened writable (to be repaired, then its
			      * mark cleared) and a dirty one is not
			      * repaired at open (image_check does it) */
};

/* Open o->path and, for qcow2, its backing chain; lock it as block_open()
 * does unless o->force_share.  Returns 0 with *out, or -errno with a
 * one-line message naming the file and the problem in err: -EAGAIN when
 * another process holds a conflicting lock, -EINVAL for an invalid image,
 * -ENOTSUP for a qcow2 feature kvmm does not implement, -EROFS for a
 * corrupt qcow2 image opened writable (unless o->check), -EIO for a
 * dirty one opened writable whose refcounts could not be repaired (a
 * dirty image opened writable is repaired first, unless o->check). */
int image_open(const struct image_opts *o, struct image **out, char *err,
	       size_t errlen);

/* Close an image and its chain (NULL is a no-op); nothing is synced. */
void image_close(struct image *img);

/* The virtual disk size in bytes. */
uint64_t image_size(const struct image *img);

/* "raw" or "qcow2". */
const char *image_format(const struct image *img);

/* The path the image was opened with (backing files: resolved against
 * their child's directory). */
const char *image_path(const struct image *img);

/* The backing image, owned by img (NULL when there is none). */
struct image *image_backing(struct image *img);

/* Read guest bytes [off, off + len) through the chain (bytes past the
 * virtual size read as zeros).  Returns 0 or -errno (-EIO on corruption,
 * logged). */
int image_pread(struct image *img, void *buf, uint64_t len, uint64_t off);

/* Write guest bytes [off, off + len) (off + len <= image_size()).  For
 * qcow2 with the driver's crash-safe ordering.  Returns 0, -EINVAL past
 * the end, -EROFS for an image not opened writable, or -errno. */
int image_pwrite(struct image *img, const void *buf, uint64_t len, uint64_t off);

/* Write guest bytes [off, off + len) of a qcow2 image compressed, cluster
 * by cluster (deflate or zstd, as the image's compression_type says; a
 * cluster that does not shrink is stored uncompressed, as QEMU does).
 * off and len are whole clusters (the last may reach past the virtual
 * size, padded by the caller: the virtual size rounded up to a cluster is
 * the limit); the clusters must not be allocated in this image yet (a
 * freshly created image: `kvmm img convert -c`).  Returns 0, -EINVAL (not
 * qcow2, not whole clusters, past the end), -EROFS, -EEXIST (a cluster is
 * already allocated), or -errno. */
int image_write_compressed(struct image *img, const void *buf, uint64_t len, uint64_t off);

/* fdatasync.  Returns 0 or -errno. */
int image_flush(struct image *img);

/* What image_block_status() reports of a range (qemu-img map's terms). */
#define IMAGE_ALLOCATED  (1u << 0) /* this layer decides the content
				    * (false: the backing file does) */
#define IMAGE_ZERO       (1u << 1) /* reads as zeros */
#define IMAGE_DATA       (1u << 2) /* stored in a host range (host_off) */
#define IMAGE_COMPRESSED (1u << 3) /* stored compressed (no host_off) */

/* Status of the range starting at `off`, at most `len` bytes: *pnum bytes
 * (> 0 when len > 0) share *flags and, for IMAGE_DATA without
 * IMAGE_COMPRESSED, lie contiguously at file offset *host_off (else
 * *host_off is 0).  Only this layer is looked at: a range not
 * IMAGE_ALLOCATED is the backing file's (or zeros without one).  A raw
 * image is allocated everywhere; its holes (SEEK_HOLE) read as zeros.
 * Returns 0 or -errno (-EINVAL past the end). */
int image_block_status(struct image *img, uint64_t off, uint64_t len,
		       uint64_t *pnum, unsigned *flags, uint64_t *host_off);

/* ---- backing chains: `kvmm img map`, `commit`, `rebase` ---- */

/* image_chain_status() only: *host_off is valid (qemu-img map prints it):
 * data stored uncompressed, zero clusters that keep a host cluster, and
 * every range of a raw file (holes included). */
#define IMAGE_OFFSET_VALID (1u << 4)

/* The status of [off, off + len) of img's guest view as qemu-img map
 * (QEMU 7.2) works it out: walk down from img to the first layer that
 * decides the range (allocated there; or the bottom of the chain; or past
 * the end of the layer's backing file, which reads as zeros: IMAGE_ZERO
 * without IMAGE_ALLOCATED), but no further than above `base` (a layer of
 * img's chain, or NULL for the whole chain): a range that no layer above
 * base decides gets *flags 0 and *layer base.  *pnum bytes
 * (> 0) share *flags, *layer (the deciding image, owned by the chain),
 * *depth (its index: 0 is img) and, with IMAGE_OFFSET_VALID, lie
 * contiguously at *host_off of *layer's file.  Returns 0, -EINVAL when
 * off + len is past img's size, or -errno. */
int image_chain_status(struct image *img, struct image *base, uint64_t off,
		       uint64_t len, uint64_t *pnum, unsigned *flags,
		       uint64_t *host_off, struct image **layer, unsigned *depth);

/* Reopen *layer, a backing file in top's chain, writable and locked as a
 * writer locks an image (block_lock_image), with its own backing chain;
 * *layer is replaced by the new handle (the old one is freed).  The read
 * lock the chain held on it is dropped first, so another process could
 * take the file in between: the writer lock then fails.  Returns 0, or
 * -errno with a message in err (-EAGAIN: another process uses the file;
 * -EROFS: marked corrupt or dirty); on error top's chain ends above the
 * layer: close top. */
int image_reopen_writable(struct image *top, struct image **layer, char *err,
			  size_t errlen);

/* Make guest bytes [off, off + len) of a writable image read as zeros:
 * qcow2 whole clusters get the zero flag, their host clusters freed
 * (qcow2_img_discard with zero and unmap), the rest is written with
 * zeros.  Returns 0, -EROFS, -EINVAL past the end, or -errno. */
int image_write_zeroes(struct image *img, uint64_t off, uint64_t len);

/* Discard guest bytes [off, off + len) of a writable qcow2 image: whole
 * clusters become unallocated (the backing file shows through again;
 * what emptying an overlay after a commit wants) and their host clusters
 * lose a reference; partial clusters at the ends are left as they are.
 * Crash-safe (qcow2_img_discard: the l2 entries are durable before a
 * refcount falls).  Returns 0, -EROFS (read-only or raw), -EINVAL past
 * the end, -EIO on corruption, or -errno. */
int image_discard(struct image *img, uint64_t off, uint64_t len);

/* Make a writable qcow2 image name `backing` (stored as given; relative
 * to the image's directory) of format `fmt` ("raw" or "qcow2") as its
 * backing file, or none when backing is NULL or "": rewrites the header
 * cluster after an fdatasync of what was written before, then syncs it
 * (qcow2_set_backing).  The chain img holds is stale afterwards: close
 * it.  Returns 0, or -errno with a one-line message in err (-ENOTSUP for
 * a raw image, -ENOSPC when the name does not fit the header cluster). */
int image_set_backing(struct image *img, const char *backing, const char *fmt,
		      char *err, size_t errlen);

/* The same on the qcow2 image at `path`, without opening its backing
 * chain (qemu-img rebase -u: the old backing file may be gone): opened
 * writable and locked as a writer.  Returns 0 or -errno with a message. */
int image_set_backing_path(const char *path, const char *backing, const char *fmt,
			   char *err, size_t errlen);
/* ---- internal snapshots (qcow2 only; qcow2.txt "Snapshot table") ---- */

/* One snapshot, as `qemu-img snapshot -l` lists it.  Strings are owned by
 * the image and valid until the next snapshot change or image_close(). */
struct image_snapshot {
	const char *id, *name;
	uint32_t date_sec, date_nsec;  /* wall clock when taken */
	uint64_t vm_clock_nsec;        /* guest clock (0 for disk-only) */
	uint64_t vm_state_size;        /* bytes of saved VM state */
	uint64_t disk_size;            /* virtual size when taken, bytes */
	bool has_icount;               /* icount recorded (QEMU 5.0+) */
	uint64_t icount;
};

/* Number of internal snapshots (0 for raw). */
unsigned image_snapshot_count(const struct image *img);

/* Snapshot i (< image_snapshot_count()) into *out. */
void image_snapshot_get(const struct image *img, unsigned i, struct image_snapshot *out);

/* Index of the snapshot whose id or name is `key`: ids first unless
 * by_name_first (qemu-img snapshot -a looks up ids first, -d names).
 * Returns the index or -ENOENT. */
int image_snapshot_find(const struct image *img, const char *key, bool by_name_first);

/* Create, apply (the image's content and size become the snapshot's) or
 * delete an internal snapshot of an image opened writable, crash-safely
 * (block/qcow2_snapshot.c).  Return 0, or -errno with a one-line message
 * naming the image in err (-ENOTSUP for raw); after an error the image
 * should be closed. */
int image_snapshot_create(struct image *img, const char *name, char *err, size_t errlen);
int image_snapshot_apply(struct image *img, unsigned i, char *err, size_t errlen);
int image_snapshot_delete(struct image *img, unsigned i, char *err, size_t errlen);

/* Set the virtual size of an image opened writable to `size` bytes: raw
 * files are truncated (sparse growth); qcow2 grows or shrinks (a multiple
 * of 512; clusters past a smaller size are freed; the added area reads as
 * zeros even over a longer backing file).  Returns 0, or -errno with a one-line message
 * naming the image in err. */
int image_resize(struct image *img, uint64_t size, char *err, size_t errlen);

#endif
