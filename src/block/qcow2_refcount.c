/*
 * qcow2_refcount.c - refcounts and cluster allocation for qcow2.c.
 *
 * The refcount_table (a host-endian copy in im->reftable) points at
 * refcount_blocks, one cluster each, holding 1 << refcount_order bits per
 * host cluster (big-endian, widths 1..64; below 8 bits the low bits of a
 * byte come first, as QEMU packs them).  New clusters come from the end
 * of the file (next_free).  Refcount writes mark the image
 * refcounts_unsynced; qcow2_sync_refcounts() is the fdatasync that must
 * come before a table points at what they counted (ordering: qcow2.c).
 * A refcount_table with no room for a new refcount_block is replaced by a
 * larger one at the end of the file (grow_reftable(), ordered so that a
 * crash leaves at most leaked clusters).
 */
#include "block/qcow2_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"

static unsigned rb_bits(const struct qimg *im)
{
	return im->cluster_bits + 3 - im->refcount_order;
}

/* Where host cluster `idx`'s refcount lives: the refcount_block's offset
 * (0: none yet) and the entry's bit position in it. */
static int ref_locate(struct qimg *im, uint64_t idx, uint64_t *rb, uint64_t *bit)
{
	uint64_t t = idx >> rb_bits(im);

	*rb = t < im->reftable_entries ? im->reftable[t] & REFT_OFFSET_MASK : 0;
	*bit = (idx & ((1ull << rb_bits(im)) - 1)) << im->refcount_order;
	return *rb ? qcow2_check_table(im, &im->rbs, *rb, "bad refcount_block offset") : 0;
}

static uint64_t ref_from(const uint8_t *p, unsigned width, uint64_t bit)
{
	uint64_t v = 0;

	if (width < 8)
		return (p[0] >> (bit & 7)) & ((1u << width) - 1);
	for (unsigned i = 0; i < width / 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void ref_into(uint8_t *p, unsigned width, uint64_t bit, uint64_t v)
{
	if (width < 8) {
		unsigned mask = ((1u << width) - 1) << (bit & 7);

		p[0] = (uint8_t)((p[0] & ~mask) | ((v << (bit & 7)) & mask));
		return;
	}
	for (int i = (int)width / 8 - 1; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

uint64_t qcow2_refblock_get(const struct qimg *im, const uint8_t *block, uint64_t i)
{
	uint64_t bit = i << im->refcount_order;

	return ref_from(block + bit / 8, 1u << im->refcount_order, bit);
}

int qcow2_get_refcount(struct qimg *im, uint64_t idx, uint64_t *val)
{
	unsigned width = 1u << im->refcount_order;
	uint64_t rb, bit;
	uint8_t b[8];
	int r = ref_locate(im, idx, &rb, &bit);

	*val = 0;
	if (r || !rb)
		return r;
	r = qcow2_pread(im->fd, b, width < 8 ? 1 : width / 8, rb + bit / 8);
	if (!r)
		*val = ref_from(b, width, bit);
	return r;
}

/* Whether refcount_table entry i has no refcount_block yet (in the
 * current table, or past its end). */
static bool rt_missing(const struct qimg *im, uint64_t i)
{
	return i >= im->reftable_entries || !(im->reftable[i] & REFT_OFFSET_MASK);
}

/* Replace a refcount_table too small for entry `t` by a larger one (half
 * as large again, at least t + 1 entries), as QEMU does.  At next_free go
 * the refcount_blocks the new clusters need (the ones counting them are
 * among them), then the new table; those are written and synced, then
 * the header's refcount_table_offset and refcount_table_clusters (bytes
 * 48..59) switch to the new table in one write, synced, then the old
 * table's clusters are freed.  A crash anywhere leaves the old or the new
 * table complete, with at most the new or old clusters leaked. */
static int grow_reftable(struct qimg *im, uint64_t t)
{
	uint64_t cs = im->cluster_size, E = im->next_free, old_n = im->reftable_entries;
	uint64_t old_off = im->reftable_offset, old_bytes = im->reftable_bytes;
	uint64_t k = 0, nt = 0, first, last, want, *table = NULL;
	unsigned cb = im->cluster_bits, rbb = rb_bits(im), width = 1u << im->refcount_order;
	uint8_t *blocks = NULL, *raw = NULL, hdr[12];
	int r = 0;

	/* k refcount_blocks then nt table clusters at E: enough blocks for
	 * the entries [first, last] covering them that have none, and a
	 * table with room for those entries and for t.  Grows monotonically
	 * to a fixed point. */
	for (;;) {
		uint64_t end = E + (k + nt) * cs, k2 = 0, nt2;

		first = (E >> cb) >> rbb;
		last = ((end - 1) >> cb) >> rbb;
		want = old_n + old_n / 2;
		if (want < t + 1)
			want = t + 1;
		if (want < last + 1)
			want = last + 1;
		nt2 = (want * 8 + cs - 1) / cs;
		if (nt2 * cs > MAX_REFTABLE_BYTES) {
			log_error("%s: the refcount_table would exceed %u MiB: the image is full",
				  im->path, MAX_REFTABLE_BYTES >> 20);
			return -ENOSPC;
		}
		for (uint64_t i = first; i <= last; i++)
			k2 += rt_missing(im, i);
		if (nt2 <= nt && k2 <= k)
			break;
		nt = nt2 > nt ? nt2 : nt;
		k = k2 > k ? k2 : k;
	}
	blocks = calloc(k ? k : 1, cs);
	table = calloc(nt * cs / 8, 8);
	raw = calloc(nt, cs);
	if (!blocks || !table || !raw) {
		r = -ENOMEM;
		goto out;
	}
	memcpy(table, im->reftable, old_n * 8);
	for (uint64_t i = first, j = 0; i <= last; i++)
		if (rt_missing(im, i))
			table[i] = E + j++ * cs;
	/* Count every new cluster: in the new blocks, or in the block that
	 * already covers it. */
	for (uint64_t c = E >> cb; c < (E >> cb) + k + nt; c++) {
		uint64_t i = c >> rbb, bit = (c & ((1ull << rbb) - 1)) << im->refcount_order;

		if (rt_missing(im, i))
			ref_into(blocks + (table[i] - E) + bit / 8, width, bit, 1);
		else if ((r = qcow2_set_refcount(im, c, 1)))
			goto out;
	}
	for (uint64_t i = 0; i < nt * cs / 8; i++)
		put_be64(raw + i * 8, table[i]);
	if (k)
		r = qcow2_pwrite(im, blocks, k * cs, E);
	if (!r)
		r = qcow2_pwrite(im, raw, nt * cs, E + k * cs);
	if (!r)
		r = qcow2_fdatasync(im);
	if (r)
		goto out;
	im->next_free = E + (k + nt) * cs;
	for (uint64_t j = 0; j < k; j++)
		if ((r = qcow2_oset_add(&im->rbs, E + j * cs)))
			goto out;
	put_be64(hdr, E + k * cs);
	put_be32(hdr + 8, (uint32_t)nt);
	r = qcow2_pwrite(im, hdr, sizeof(hdr), 48);
	if (!r)
		r = qcow2_fdatasync(im);
	if (r)
		goto out;
	free(im->reftable);
	im->reftable = table;
	table = NULL;
	im->reftable_offset = E + k * cs;
	im->reftable_bytes = nt * cs;
	im->reftable_entries = nt * cs / 8;
	im->refcounts_unsynced = false;
	/* Nothing points at the old table any more. */
	r = qcow2_unref_range(im, old_off, old_bytes);
out:
	free(blocks);
	free(table);
	free(raw);
	return r;
}

/* A new, zeroed refcount_block for refcount_table entry `t`, placed at
 * next_free and counting itself; the table grows first if too small. */
static int alloc_refblock(struct qimg *im, uint64_t t)
{
	uint64_t nb, nb_idx;
	uint8_t *buf, e[8];
	int r;

	if (t >= im->reftable_entries) {
		r = grow_reftable(im, t);
		/* The new blocks may include the one for t. */
		if (r || !rt_missing(im, t))
			return r;
	}
	nb = im->next_free;
	nb_idx = nb >> im->cluster_bits;
	buf = calloc(1, im->cluster_size);
	if (!buf)
		return -ENOMEM;
	im->next_free += im->cluster_size;
	if (nb_idx >> rb_bits(im) == t) {
		uint64_t bit = (nb_idx & ((1ull << rb_bits(im)) - 1)) << im->refcount_order;

		ref_into(buf + bit / 8, 1u << im->refcount_order, bit, 1);
		r = 0;
	} else {
		r = qcow2_set_refcount(im, nb_idx, 1);
	}
	if (!r)
		r = qcow2_pwrite(im, buf, im->cluster_size, nb);
	free(buf);
	/* The block must be on disk before the table points at it. */
	if (!r)
		r = qcow2_fdatasync(im);
	if (r)
		return r;
	r = qcow2_oset_add(&im->rbs, nb);
	if (r)
		return r;
	put_be64(e, nb);
	r = qcow2_pwrite(im, e, 8, im->reftable_offset + t * 8);
	if (!r)
		im->reftable[t] = nb;
	return r;
}

int qcow2_set_refcount(struct qimg *im, uint64_t idx, uint64_t val)
{
	unsigned width = 1u << im->refcount_order;
	uint64_t rb, bit;
	uint8_t b[8];
	int r = ref_locate(im, idx, &rb, &bit);

	if (!r && !rb) {
		r = alloc_refblock(im, idx >> rb_bits(im));
		if (!r)
			r = ref_locate(im, idx, &rb, &bit);
	}
	if (r)
		return r;
	if (width < 8) {
		r = qcow2_pread(im->fd, b, 1, rb + bit / 8);
		if (r)
			return r;
	}
	ref_into(b, width, bit, val);
	im->refcounts_unsynced = true;
	im->writing_refcount = true;
	r = qcow2_pwrite(im, b, width < 8 ? 1 : width / 8, rb + bit / 8);
	im->writing_refcount = false;
	return r;
}

/* Drop one reference to each host cluster of [off, off + len).  The
 * table write that removed the reference must be on disk first: writes
 * since a sync reach the disk in any order, and a refcount lowered while
 * the old pointer survives a crash would count a used cluster free (the
 * power-cut test found this).  Hence the fdatasync before the first
 * refcount write, when anything but refcounts was written since the last
 * one (pointers_unsynced: a caller that already synced pays nothing); callers dropping many references should do their table
 * writes first, then the drops. */
int qcow2_unref_range(struct qimg *im, uint64_t off, uint64_t len)
{
	uint64_t first = off >> im->cluster_bits;
	uint64_t last = (off + len - 1) >> im->cluster_bits;
	int r = im->pointers_unsynced ? qcow2_fdatasync(im) : 0;

	if (r)
		return r;
	/* Freed space may be reused: forget what was decompressed. */
	im->dbuf_key = 0;
	for (uint64_t i = first; i <= last; i++) {
		uint64_t v;

		r = qcow2_get_refcount(im, i, &v);
		if (r)
			return r;
		if (!v)
			return qcow2_corrupt(im, "dropping a reference to a free cluster",
				       i << im->cluster_bits);
		r = qcow2_set_refcount(im, i, v - 1);
		if (r)
			return r;
	}
	return 0;
}

/* Clusters the header, the l1_table, the refcount_table, the snapshot
 * table and the snapshots' l1_tables occupy: never written as data. */
bool qcow2_is_fixed_metadata(const struct qimg *im, uint64_t host)
{
	uint64_t end = host + im->cluster_size;

	return host < im->cluster_size || qcow2_oset_has(&im->snapmeta, host) ||
	       (host < im->l1_offset + im->l1_size * 8ull && end > im->l1_offset) ||
	       (host < im->reftable_offset + im->reftable_bytes &&
		end > im->reftable_offset);
}

/* Clusters past the end of the file that may carry a refcount: a crash
 * between a cluster's refcount write and its first data write leaves one
 * per cluster a request allocated (nothing references them: leaks). */
#define MAX_STALE_CLUSTERS 65536u

/* A free host cluster at the end of the file, its refcount set to 1.
 * Clusters past the end with a refcount (left by a crash, see above) are
 * skipped, leaked; more than MAX_STALE_CLUSTERS of them is corruption,
 * refused rather than walked (a hostile refcount_table could claim a
 * very long run). */
int qcow2_alloc_cluster(struct qimg *im, uint64_t *host)
{
	uint64_t off, v;

	for (unsigned skipped = 0;; skipped++) {
		int r;

		off = im->next_free;
		r = qcow2_get_refcount(im, off >> im->cluster_bits, &v);
		if (r)
			return r;
		if (!v)
			break;
		if (skipped == MAX_STALE_CLUSTERS)
			return qcow2_corrupt(im, "too many refcounts for clusters past the end of the file",
					     off);
		im->next_free += im->cluster_size;
	}
	im->next_free += im->cluster_size;
	*host = off;
	return qcow2_set_refcount(im, off >> im->cluster_bits, 1);
}

/* Before a table entry starts referencing newly counted clusters. */
int qcow2_sync_refcounts(struct qimg *im)
{
	if (!im->refcounts_unsynced)
		return 0;
	int r = qcow2_fdatasync(im);

	if (!r)
		im->refcounts_unsynced = false;
	return r;
}
