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
	r = qcow2_img_open(fd, o->path, qcow2, o->writable, &force_ro, &im, err, errlen);
	if (r)
		return r;
	if (force_ro && o->writable) {
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
