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
 * Shrinking is refused: it would have to drop the clusters past the new
 * end from tables that may be shared with snapshots (QEMU discards them);
 * kvmm does not implement that yet.
 */
#include "block/qcow2_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int qcow2_resize(struct qimg *im, uint64_t size, char *err, size_t errlen)
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
	if (size < im->size) {
		snprintf(err, errlen, "%s: shrinking a qcow2 image is not supported", im->path);
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
