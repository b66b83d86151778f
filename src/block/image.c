/*
 * image.c - synchronous image access for tools (image.h).
 *
 * An image handle is the qcow2 driver's own chain (struct qimg, which
 * also represents raw files in a chain): `kvmm img` and the device path
 * share one reader and one writer, so what a tool writes follows the same
 * crash-safe ordering as a guest's writes.
 */
#include "block/image.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/block.h"
#include "block/qcow2_int.h"

/* struct image is never defined: a handle is a struct qimg. */
static struct qimg *Q(const struct image *img)
{
	return (struct qimg *)img;
}

int image_open(const struct image_opts *o, struct image **out, char *err,
	       size_t errlen)
{
	int fd = open(o->path, (o->writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	bool qcow2 = false, force_ro = false;
	struct qimg *im;
	int r;

	*out = NULL;
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", o->path, strerror(-r));
		return r;
	}
	if (!o->force_share) {
		r = block_lock_image(fd, o->path, !o->writable, err, errlen);
		if (r) {
			close(fd);
			return r;
		}
	}
	if (o->format) {
		if (!strcmp(o->format, "qcow2")) {
			qcow2 = true;
		} else if (strcmp(o->format, "raw")) {
			snprintf(err, errlen, "%s: unknown format \"%s\" (raw or qcow2)",
				 o->path, o->format);
			close(fd);
			return -EINVAL;
		}
	} else {
		uint8_t magic[4];

		r = qcow2_pread(fd, magic, sizeof(magic), 0);
		if (r) {
			snprintf(err, errlen, "%s: cannot read: %s", o->path, strerror(-r));
			close(fd);
			return r;
		}
		qcow2 = be32(magic) == QCOW2_MAGIC;
	}
	r = (o->check ? qcow2_img_open_check : qcow2_img_open)(fd, o->path, qcow2, o->writable,
							      &force_ro, &im, err, errlen);
	if (r)
		return r;
	if (force_ro && o->writable && !o->check) {
		snprintf(err, errlen, "%s: the image is marked corrupt: it can only be opened read-only",
			 o->path);
		qcow2_img_free(im);
		return -EROFS;
	}
	*out = (struct image *)im;
	return 0;
}

void image_close(struct image *img)
{
	qcow2_img_free(Q(img));
}

uint64_t image_size(const struct image *img)
{
	return Q(img)->size;
}

const char *image_format(const struct image *img)
{
	return Q(img)->is_qcow2 ? "qcow2" : "raw";
}

const char *image_path(const struct image *img)
{
	return Q(img)->path;
}

struct image *image_backing(struct image *img)
{
	return (struct image *)Q(img)->backing;
}

int image_pread(struct image *img, void *buf, uint64_t len, uint64_t off)
{
	return qcow2_img_read(Q(img), off, buf, len);
}

int image_pwrite(struct image *img, const void *buf, uint64_t len, uint64_t off)
{
	struct qimg *im = Q(img);

	if (!im->writable)
		return -EROFS;
	if (off > im->size || len > im->size - off)
		return -EINVAL;
	if (!im->is_qcow2)
		return qcow2_pwrite(im, buf, len, off);
	return qcow2_img_write(im, off, buf, len);
}

int image_write_compressed(struct image *img, const void *buf, uint64_t len, uint64_t off)
{
	struct qimg *im = Q(img);

	if (!im->is_qcow2 || len % im->cluster_size)
		return -EINVAL;
	return qcow2_write_compressed_n(im, off, buf, len / im->cluster_size);
}

int image_flush(struct image *img)
{
	return qcow2_fdatasync(Q(img));
}

static int raw_status(struct qimg *im, uint64_t off, uint64_t len, uint64_t *pnum,
		      unsigned *flags, uint64_t *host_off)
{
	off_t data = lseek(im->fd, (off_t)off, SEEK_DATA), end;

	*flags = IMAGE_ALLOCATED | IMAGE_DATA;
	*host_off = off;
	*pnum = len;
	if (data < 0 && errno != ENXIO)
		return 0; /* no SEEK_DATA (a block device): all data */
	if (data < 0 || (uint64_t)data > off) {
		/* A hole up to `data` (ENXIO: up to the end). */
		uint64_t hole_end = data < 0 ? im->size : (uint64_t)data;

		*flags = IMAGE_ALLOCATED | IMAGE_ZERO;
		*host_off = 0;
		if (hole_end - off < len)
			*pnum = hole_end - off;
		return 0;
	}
	end = lseek(im->fd, (off_t)off, SEEK_HOLE);
	if (end > 0 && (uint64_t)end - off < len)
		*pnum = (uint64_t)end - off;
	return 0;
}

/* Flags and host offset of one cluster's l2 entry. */
static void entry_status(const struct qimg *im, uint64_t entry, unsigned *flags,
			 uint64_t *host)
{
	*host = 0;
	if (entry & L2E_COMPRESSED) {
		*flags = IMAGE_ALLOCATED | IMAGE_DATA | IMAGE_COMPRESSED;
	} else if (entry & L2E_ZERO) {
		*flags = IMAGE_ALLOCATED | IMAGE_ZERO;
	} else if (entry & OFFSET_MASK) {
		*flags = IMAGE_ALLOCATED | IMAGE_DATA;
		*host = entry & OFFSET_MASK;
	} else {
		*flags = im->backing ? 0 : IMAGE_ZERO;
	}
}

int image_block_status(struct image *img, uint64_t off, uint64_t len,
		       uint64_t *pnum, unsigned *flags, uint64_t *host_off)
{
	struct qimg *im = Q(img);
	uint64_t cs = im->cluster_size, done = 0, entry, host;
	unsigned f;
	int r;

	*pnum = 0;
	if (off >= im->size || len > im->size - off)
		return -EINVAL;
	if (!im->is_qcow2)
		return raw_status(im, off, len, pnum, flags, host_off);
	/* Extend over following clusters while the status, and for data
	 * the host contiguity, stay the same. */
	while (done < len) {
		uint64_t g = off + done, n = cs - (g & (cs - 1));

		r = qcow2_l2_entry(im, g, &entry);
		if (r)
			return r;
		entry_status(im, entry, &f, &host);
		if (host)
			host += g & (cs - 1);
		if (!done) {
			*flags = f;
			*host_off = host;
		} else if (f != *flags || (host && host != *host_off + done)) {
			break;
		}
		done += n < len - done ? n : len - done;
	}
	*pnum = done;
	return 0;
}

/* ---- backing chains (map, commit, rebase) ---- */

/* QEMU's qcow2_detect_metadata_preallocation(): more clusters have a
 * refcount than the file has allocated blocks for (a ninth more, or 2).
 * Then block status looks into the file for holes in data clusters. */
static int detect_prealloc(struct qimg *im)
{
	struct stat st;
	uint64_t real, threshold, count = 0, end;

	if (im->map_prealloc)
		return 0;
	if (fstat(im->fd, &st) < 0)
		return -errno;
	real = (uint64_t)st.st_blocks * 512 / im->cluster_size;
	threshold = real * 10 / 9 > real + 2 ? real * 10 / 9 : real + 2;
	end = ((uint64_t)st.st_size + im->cluster_size - 1) >> im->cluster_bits;
	for (uint64_t i = 0; i < end && count < threshold; i++) {
		uint64_t v;
		int r = qcow2_get_refcount(im, i, &v);

		if (r)
			return r;
		count += v != 0;
	}
	im->map_prealloc = count >= threshold ? 2 : 1;
	return 0;
}

/* QEMU's block status of a data range [host, host + *pnum) of a
 * preallocated image in its file: a hole there reads as zeros (*zero,
 * *pnum cut to the hole or the data); at or past the end of the file
 * everything does (*pnum kept). */
static void file_zero_status(struct qimg *im, uint64_t host, uint64_t *pnum, bool *zero)
{
	off_t fend = lseek(im->fd, 0, SEEK_END);
	uint64_t fsize = fend < 0 ? 0 : (uint64_t)fend, n = *pnum, fpnum, fhost;
	unsigned f;

	*zero = false;
	if (fend < 0)
		return; /* no information: data */
	if (host >= fsize) {
		*zero = true;
		return;
	}
	if (n > fsize - host)
		n = fsize - host;
	/* raw_status over the file itself (sizes in file bytes). */
	{
		uint64_t size = im->size;

		im->size = fsize;
		raw_status(im, host, n, &fpnum, &f, &fhost);
		im->size = size;
	}
	if (host + fpnum == fsize && (f & IMAGE_ZERO)) {
		*zero = true;
		return;
	}
	*pnum = fpnum;
	*zero = f & IMAGE_ZERO;
}

/* One layer's status as qemu-img map sees it: image_block_status() plus
 * the host offsets of zero clusters that keep one and of raw holes
 * (IMAGE_OFFSET_VALID). */
static int map_status(struct qimg *im, uint64_t off, uint64_t len, uint64_t *pnum,
		      unsigned *flags, uint64_t *host_off)
{
	uint64_t cs = im->cluster_size, done = 0, entry, host;
	unsigned f;
	int r;

	if (!im->is_qcow2) {
		r = raw_status(im, off, len, pnum, flags, host_off);
		*host_off = off;
		*flags |= IMAGE_OFFSET_VALID;
		return r;
	}
	while (done < len) {
		uint64_t g = off + done, n = cs - (g & (cs - 1));

		r = qcow2_l2_entry(im, g, &entry);
		if (r)
			return r;
		entry_status(im, entry, &f, &host);
		if ((entry & L2E_ZERO) && !(entry & L2E_COMPRESSED))
			host = entry & OFFSET_MASK;
		if (host) {
			f |= IMAGE_OFFSET_VALID;
			host += g & (cs - 1);
		}
		if (!done) {
			*flags = f;
			*host_off = host;
		} else if (f != *flags || (host && host != *host_off + done)) {
			break;
		}
		done += n < len - done ? n : len - done;
	}
	*pnum = done;
	if ((*flags & (IMAGE_DATA | IMAGE_OFFSET_VALID)) == (IMAGE_DATA | IMAGE_OFFSET_VALID)) {
		bool zero;

		r = detect_prealloc(im);
		if (r)
			return r;
		if (im->map_prealloc == 2) {
			file_zero_status(im, *host_off, pnum, &zero);
			if (zero)
				*flags |= IMAGE_ZERO;
		}
	}
	return 0;
}

int image_chain_status(struct image *img, struct image *base, uint64_t off,
		       uint64_t len, uint64_t *pnum, unsigned *flags,
		       uint64_t *host_off, struct image **layer, unsigned *depth)
{
	struct qimg *im = Q(img);
	unsigned d = 0;
	int r;

	*pnum = 0;
	if (off >= im->size || len > im->size - off)
		return -EINVAL;
	for (;;) {
		r = map_status(im, off, len, pnum, flags, host_off);
		if (r)
			return r;
		len = *pnum;
		if (*flags & (IMAGE_ALLOCATED | IMAGE_ZERO | IMAGE_DATA) || !im->backing)
			break;
		if (im->backing == Q(base)) {
			*flags = 0;
			im = im->backing;
			d++;
			break;
		}
		/* QEMU: an unallocated range past the end of the backing file
		 * reads as zeros, decided by this layer. */
		if (off >= im->backing->size) {
			*flags = IMAGE_ZERO;
			break;
		}
		if (len > im->backing->size - off)
			len = im->backing->size - off;
		im = im->backing;
		d++;
	}
	*layer = (struct image *)im;
	*depth = d;
	return 0;
}

int image_reopen_writable(struct image *top, struct image **layer, char *err,
			  size_t errlen)
{
	struct qimg *old = Q(*layer), *parent = old->child, *im;
	bool qcow2 = old->is_qcow2, force_ro = false;
	char *path = strdup(old->path);
	int fd, r;

	for (im = Q(top)->backing; im && im != old; im = im->backing)
		;
	if (!im) {
		snprintf(err, errlen, "%s: not a backing file of %s", old->path, Q(top)->path);
		free(path);
		return -EINVAL;
	}
	if (!path) {
		snprintf(err, errlen, "%s: out of memory", old->path);
		return -ENOMEM;
	}
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: cannot open for writing: %s", path, strerror(-r));
		free(path);
		return r;
	}
	/* Our own read lock (another open file description) would conflict
	 * with the writer's: drop the layer and its chain first. */
	parent->backing = NULL;
	qcow2_img_free(old);
	*layer = NULL;
	r = block_lock_image(fd, path, false, err, errlen);
	if (r) {
		close(fd);
		free(path);
		return r;
	}
	r = qcow2_img_open(fd, path, qcow2, true, &force_ro, &im, err, errlen);
	if (!r && force_ro) {
		snprintf(err, errlen, "%s: the image is marked corrupt: it can only be opened read-only",
			 path);
		qcow2_img_free(im);
		r = -EROFS;
	}
	free(path);
	if (r)
		return r;
	parent->backing = im;
	im->child = parent;
	*layer = (struct image *)im;
	return 0;
}

int image_write_zeroes(struct image *img, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[ZERO_CHUNK];
	struct qimg *im = Q(img);
	int r = 0;

	if (im->is_qcow2) {
		if (!im->writable)
			return -EROFS;
		return qcow2_img_discard(im, off, len, true, true);
	}
	while (len && !r) {
		uint64_t n = len < ZERO_CHUNK ? len : ZERO_CHUNK;

		r = image_pwrite(img, zeros, n, off);
		off += n;
		len -= n;
	}
	return r;
}

int image_discard(struct image *img, uint64_t off, uint64_t len)
{
	struct qimg *im = Q(img);

	if (!im->is_qcow2 || !im->writable)
		return -EROFS;
	return qcow2_img_discard(im, off, len, false, true);
}

static const char *backing_fmt_check(const char *backing, const char *fmt)
{
	if (!backing || !*backing)
		return NULL;
	if (!fmt)
		return "a backing format (raw or qcow2) is needed";
	if (strcmp(fmt, "raw") && strcmp(fmt, "qcow2"))
		return "the backing format must be raw or qcow2";
	return NULL;
}

int image_set_backing(struct image *img, const char *backing, const char *fmt,
		      char *err, size_t errlen)
{
	struct qimg *im = Q(img);
	const char *bad = backing_fmt_check(backing, fmt);

	if (bad) {
		snprintf(err, errlen, "%s: %s", im->path, bad);
		return -EINVAL;
	}
	if (!im->is_qcow2) {
		snprintf(err, errlen, "%s: not a qcow2 image: only qcow2 images have a backing file",
			 im->path);
		return -ENOTSUP;
	}
	return qcow2_set_backing(im, backing, fmt, err, errlen);
}

int image_set_backing_path(const char *path, const char *backing, const char *fmt,
			   char *err, size_t errlen)
{
	struct qimg im = { .path = (char *)path, .is_qcow2 = true, .writable = true };
	uint8_t magic[4];
	int r;

	im.fd = open(path, O_RDWR | O_CLOEXEC);
	if (im.fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
		return r;
	}
	r = block_lock_image(im.fd, path, false, err, errlen);
	if (!r) {
		r = qcow2_pread(im.fd, magic, sizeof(magic), 0);
		if (r)
			snprintf(err, errlen, "%s: cannot read: %s", path, strerror(-r));
	}
	if (!r && be32(magic) != QCOW2_MAGIC) {
		snprintf(err, errlen, "%s: not a qcow2 image: only qcow2 images have a backing file",
			 path);
		r = -ENOTSUP;
	}
	if (!r)
		r = image_set_backing((struct image *)&im, backing, fmt, err, errlen);
	close(im.fd);
	return r;
}

/* ---- internal snapshots and resize (qcow2_snapshot.c, qcow2_resize.c) ---- */

unsigned image_snapshot_count(const struct image *img)
{
	return Q(img)->is_qcow2 ? Q(img)->nb_snapshots : 0;
}

void image_snapshot_get(const struct image *img, unsigned i, struct image_snapshot *out)
{
	const struct qcow2_snapshot *sn = &Q(img)->snaps[i];

	*out = (struct image_snapshot){
		.id = sn->id, .name = sn->name,
		.date_sec = sn->date_sec, .date_nsec = sn->date_nsec,
		.vm_clock_nsec = sn->vm_clock_nsec, .vm_state_size = sn->vm_state_size,
		.disk_size = sn->disk_size,
		.has_icount = sn->extra_size >= 24,
		.icount = sn->extra_size >= 24 ? be64(sn->extra + 16) : 0,
	};
}

int image_snapshot_find(const struct image *img, const char *key, bool by_name_first)
{
	if (!Q(img)->is_qcow2)
		return -ENOENT;
	return qcow2_snapshot_find(Q(img), key, by_name_first);
}

int image_snapshot_create(struct image *img, const char *name, char *err, size_t errlen)
{
	return qcow2_snapshot_create(Q(img), name, err, errlen);
}

int image_snapshot_apply(struct image *img, unsigned i, char *err, size_t errlen)
{
	return qcow2_snapshot_apply(Q(img), i, err, errlen);
}

int image_snapshot_delete(struct image *img, unsigned i, char *err, size_t errlen)
{
	return qcow2_snapshot_delete(Q(img), i, err, errlen);
}

int image_resize(struct image *img, uint64_t size, char *err, size_t errlen)
{
	struct qimg *im = Q(img);

	if (!im->writable) {
		snprintf(err, errlen, "%s: the image is not open for writing", im->path);
		return -EROFS;
	}
	if (im->is_qcow2)
		return qcow2_resize(im, size, err, errlen);
	if (size > INT64_MAX) {
		snprintf(err, errlen, "%s: size %" PRIu64 " too large", im->path, size);
		return -EFBIG;
	}
	if (ftruncate(im->fd, (off_t)size) || fdatasync(im->fd)) {
		int r = -errno;

		snprintf(err, errlen, "%s: cannot resize: %s", im->path, strerror(-r));
		return r;
	}
	im->size = im->file_size = size;
	return 0;
}
