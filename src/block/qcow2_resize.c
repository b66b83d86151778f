/*
 * qcow2_resize.c - changing the virtual size of a qcow2 image (qcow2.txt:
 * "Header", fields size, l1_size, l1_table_offset).
 *
 * Growing only changes the header's size, unless the l1_table is too
 * small for the new size: then a larger copy (exactly the entries the new
 * size needs, as QEMU's resize makes it) is written to new clusters at the
 * end of the file and synced with its refcounts before one header write
 * switches size, l1_size and l1_table_offset together (bytes 24..47, one
 * sector); the old l1_table is freed after a second sync.  A crash at any
 * instant leaves the old image or the new one, plus at most the leaked new
 * or old l1_table.  Snapshots keep their own l1_tables and disk_size.
 *
 * Shrinking (shrink()) works as QEMU's: the whole clusters past the new
 * end are discarded (qcow2_img_discard: their entries become 0, tables
 * shared with snapshots are copied first, references dropped only once
 * the new entries are durable), then the l1 entries past the tables the
 * new size needs are cleared and synced before their l2_tables lose their
 * reference, then the size field is written.  l1_size stays (QEMU keeps
 * it too).  A crash in between leaves the old size with zeros past the new
 * end (the user asked for them to go) and at most leaked clusters.
 *
 * The area a resize adds is written as zeros (zero clusters) after the
 * size changes where something else could show through: the backing
 * file's bytes past the old end (QEMU's truncate zero-fills them too) and
 * the rest of the old last cluster, which a shrink leaves as it was (QEMU
 * shows those bytes again after growing; kvmm does not).
 */
#include "block/qcow2_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int shrink(struct qimg *im, uint64_t size, char *err, size_t errlen)
{
	uint64_t span = 1ull << (im->cluster_bits + im->l2_bits);
	uint64_t from = (size + im->cluster_size - 1) & ~(im->cluster_size - 1);
	uint64_t keep = (size + span - 1) / span, dropped = 0;
	uint8_t h[8] = { 0 };
	int r = 0;

	if (from < im->size)
		r = qcow2_img_discard(im, from, im->size - from, false, false);
	for (uint64_t i = keep; !r && i < im->l1_size; i++) {
		if (!(im->l1[i] & OFFSET_MASK))
			continue;
		r = qcow2_pwrite(im, h, 8, im->l1_offset + i * 8);
		dropped++;
	}
	if (!r && dropped)
		r = qcow2_fdatasync(im);
	for (uint64_t i = keep; !r && i < im->l1_size; i++) {
		uint64_t l2 = im->l1[i] & OFFSET_MASK;

		if (!l2)
			continue;
		im->l1[i] = 0;
		r = qcow2_check_table(im, &im->l2s, l2, "bad l2_table offset");
		if (!r)
			r = qcow2_unref_range(im, l2, im->cluster_size);
	}
	if (!r) {
		put_be64(h, size);
		r = qcow2_pwrite(im, h, 8, 24);
	}
	if (!r)
		r = qcow2_fdatasync(im);
	if (r) {
		snprintf(err, errlen, "%s: cannot shrink: %s", im->path, strerror(-r));
		return r;
	}
	im->size = size;
	return 0;
}

static int grow(struct qimg *im, uint64_t size, char *err, size_t errlen)
{
	uint64_t span = 1ull << (im->cluster_bits + im->l2_bits), need, off, ncl;
	uint64_t old_off = im->l1_offset, old_size = im->l1_size, *nl1;
	uint8_t *b, h[24];
	int r;

	if (!im->is_qcow2 || !im->writable) {
		snprintf(err, errlen, "%s: not a qcow2 image open for writing", im->path);
		return -EINVAL;
	}
	if (size % 512) {
		snprintf(err, errlen, "%s: the new size %" PRIu64 " is not a multiple of 512",
			 im->path, size);
		return -EINVAL;
	}
	/* A version 2 snapshot does not record its disk size: it would
	 * take the new one (QEMU refuses too). */
	if (im->nb_snapshots && im->version < 3) {
		snprintf(err, errlen, "%s: cannot resize a version 2 image that has snapshots",
			 im->path);
		return -ENOTSUP;
	}
	need = (size + span - 1) / span;
	if (size > (1ull << 61) || need * 8 > MAX_L1_BYTES) {
		snprintf(err, errlen, "%s: size %" PRIu64 " too large for %" PRIu64 "-byte clusters",
			 im->path, size, im->cluster_size);
		return -EFBIG;
	}
	if (need <= im->l1_size) {
		put_be64(h, size);
		r = qcow2_pwrite(im, h, 8, 24);
		if (!r)
			r = qcow2_fdatasync(im);
		if (r) {
			snprintf(err, errlen, "%s: cannot update the header: %s", im->path, strerror(-r));
			return r;
		}
		im->size = size;
		return 0;
	}
	ncl = (need * 8 + im->cluster_size - 1) >> im->cluster_bits;
	nl1 = calloc(need, 8);
	b = calloc(ncl, im->cluster_size);
	if (!nl1 || !b) {
		free(nl1);
		free(b);
		snprintf(err, errlen, "%s: out of memory", im->path);
		return -ENOMEM;
	}
	memcpy(nl1, im->l1, im->l1_size * 8ull);
	for (uint64_t i = 0; i < need; i++)
		put_be64(b + i * 8, nl1[i]);
	r = qcow2_alloc_run(im, ncl, &off);
	if (!r)
		r = qcow2_pwrite(im, b, need * 8, off);
	free(b);
	if (!r)
		r = qcow2_fdatasync(im);
	if (r) {
		free(nl1);
		snprintf(err, errlen, "%s: cannot write the new l1_table: %s", im->path, strerror(-r));
		return r;
	}
	im->refcounts_unsynced = false;
	put_be64(h, size);
	put_be32(h + 8, 0);           /* crypt_method: encrypted images are refused */
	put_be32(h + 12, (uint32_t)need);
	put_be64(h + 16, off);
	r = qcow2_pwrite(im, h, sizeof(h), 24);
	if (!r)
		r = qcow2_fdatasync(im);
	if (r) {
		free(nl1);
		snprintf(err, errlen, "%s: cannot update the header: %s", im->path, strerror(-r));
		return r;
	}
	free(im->l1);
	im->l1 = nl1;
	im->l1_size = (uint32_t)need;
	im->l1_offset = off;
	im->size = size;
	/* The old l1_table is unreferenced: a crash before this leaks it. */
	if (old_size)
		r = qcow2_unref_range(im, old_off, old_size * 8);
	if (!r)
		r = qcow2_sync_refcounts(im);
	if (r)
		snprintf(err, errlen, "%s: cannot free the old l1_table: %s", im->path, strerror(-r));
	return r;
}

int qcow2_resize(struct qimg *im, uint64_t size, char *err, size_t errlen)
{
	uint64_t old = im->size, end;
	int r;

	if (im->is_qcow2 && im->writable && size % 512 == 0 && size < old &&
	    !(im->nb_snapshots && im->version < 3))
		return shrink(im, size, err, errlen);
	r = grow(im, size, err, errlen);
	if (r || size <= old)
		return r;
	/* The new area must read as zeros: not as the backing file's bytes
	 * past the old end (QEMU zero-fills those too), nor as what a shrink
	 * left in the old last cluster past the old end (QEMU shows that). */
	end = (old + im->cluster_size - 1) & ~(im->cluster_size - 1);
	if (im->backing && im->backing->size > end)
		end = im->backing->size;
	if (end > size)
		end = size;
	if (end <= old)
		return 0;
	r = qcow2_img_discard(im, old, end - old, true, true);
	if (r)
		snprintf(err, errlen, "%s: cannot hide the backing file past the old size: %s",
			 im->path, strerror(-r));
	return r;
}
