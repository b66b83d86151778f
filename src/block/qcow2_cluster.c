/*
 * qcow2_cluster.c - guest reads and writes of a qcow2 image: the l2_table
 * cache, lookups through l1_table/l2_table (compressed clusters:
 * qcow2_compress.c), and allocating writes with copy-on-write (design and
 * write ordering: the comment at the top of qcow2.c).
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

/* ---- l2 cache ---- */

/* The l2_table at host offset `off` (cluster aligned, checked by the
 * caller), read through the cache. */
int qcow2_l2_load(struct qimg *im, uint64_t off, uint64_t **table)
{
	struct l2_slot *victim = &im->l2_cache[0];

	for (unsigned i = 0; i < im->l2_slots; i++) {
		struct l2_slot *s = &im->l2_cache[i];

		if (s->offset == off) {
			s->used = ++im->lru_clock;
			*table = s->table;
			return 0;
		}
		if (s->used < victim->used)
			victim = s;
	}
	int r = qcow2_pread(im->fd, victim->table, im->cluster_size, off);

	if (r) {
		victim->offset = 0;
		return r;
	}
	victim->offset = off;
	victim->used = ++im->lru_clock;
	*table = victim->table;
	return 0;
}

/* The l2 entry for guest offset `g` (0 when its l1 entry is empty). */
int qcow2_l2_entry(struct qimg *im, uint64_t g, uint64_t *entry)
{
	uint64_t l1_idx = g >> (im->cluster_bits + im->l2_bits);
	uint64_t l2_off, *table;
	int r;

	*entry = 0;
	if (l1_idx >= im->l1_size)
		return qcow2_corrupt(im, "guest offset beyond the l1_table", g);
	l2_off = im->l1[l1_idx] & OFFSET_MASK;
	if (!l2_off)
		return 0;
	r = qcow2_check_table(im, &im->l2s, l2_off, "bad l2_table offset");
	if (r)
		return r;
	r = qcow2_l2_load(im, l2_off, &table);
	if (r)
		return r;
	*entry = be64((uint8_t *)&table[(g >> im->cluster_bits) &
					((1ull << im->l2_bits) - 1)]);
	return 0;
}

/* ---- reads ---- */

/* Bytes [g, g + n) of one guest cluster, whose l2 entry is `entry`. */
int qcow2_read_mapped(struct qimg *im, uint64_t entry, uint64_t g,
		       uint8_t *buf, uint64_t n)
{
	uint64_t in = g & (im->cluster_size - 1);
	uint64_t host = entry & OFFSET_MASK;
	int r;

	if (entry & L2E_COMPRESSED) {
		r = qcow2_decompress(im, entry);
		if (!r)
			memcpy(buf, im->dbuf + in, n);
		return r;
	}
	if (entry & L2E_ZERO) {
		if (im->version < 3)
			return qcow2_corrupt(im, "zero flag in a version 2 l2 entry", entry);
		memset(buf, 0, n);
		return 0;
	}
	if (!host) {
		if (im->backing)
			return qcow2_img_read(im->backing, g, buf, n);
		memset(buf, 0, n);
		return 0;
	}
	if (!cluster_aligned(im, host) || (entry & 0x1fe))
		return qcow2_corrupt(im, "bad data cluster entry", entry);
	return qcow2_pread(im->fd, buf, n, host + in);
}

/* Guest bytes [off, off + len); past the virtual size reads zeros (a
 * backing file smaller than its overlay). */
int qcow2_img_read(struct qimg *im, uint64_t off, uint8_t *buf, uint64_t len)
{
	while (len) {
		uint64_t n, entry;
		int r;

		if (off >= im->size) {
			memset(buf, 0, len);
			return 0;
		}
		if (!im->is_qcow2) {
			n = len < im->size - off ? len : im->size - off;
			r = qcow2_pread(im->fd, buf, n, off);
		} else {
			n = im->cluster_size - (off & (im->cluster_size - 1));
			if (n > len)
				n = len;
			r = qcow2_l2_entry(im, off, &entry);
			if (!r)
				r = qcow2_read_mapped(im, entry, off, buf, n);
		}
		if (r)
			return r;
		off += n;
		buf += n;
		len -= n;
	}
	return 0;
}

/* ---- writes ---- */

/* The l2_table for guest offset `g`, made private (COPIED) and allocated
 * if needed; *l2_off is its host offset. */
static int l2_for_write(struct qimg *im, uint64_t g, uint64_t *l2_off, uint64_t **table)
{
	uint64_t l1_idx = g >> (im->cluster_bits + im->l2_bits);
	uint64_t old = im->l1[l1_idx], old_off = old & OFFSET_MASK, nt;
	uint64_t *src = NULL, *dst;
	uint8_t e[8];
	int r;

	if (old_off) {
		r = qcow2_check_table(im, &im->l2s, old_off, "bad l2_table offset");
		if (r)
			return r;
	}
	if (old_off && (old & ENTRY_COPIED)) {
		*l2_off = old_off;
		return qcow2_l2_load(im, old_off, table);
	}
	if (old_off) {
		r = qcow2_l2_load(im, old_off, &src);
		if (r)
			return r;
	}
	r = qcow2_alloc_cluster(im, &nt);
	if (!r)
		r = qcow2_oset_add(&im->l2s, nt);
	if (r)
		return r;
	/* Load the new table into the cache (reads zeros past the end of
	 * the file), then fill it: a copy of the shared table with COPIED
	 * recomputed, or empty. */
	dst = malloc(im->cluster_size);
	if (!dst)
		return -ENOMEM;
	if (src)
		memcpy(dst, src, im->cluster_size);
	else
		memset(dst, 0, im->cluster_size);
	for (uint64_t i = 0; src && i < (1ull << im->l2_bits); i++) {
		uint64_t ent = be64((uint8_t *)&dst[i]), host = ent & OFFSET_MASK, v;

		if (!(ent & L2E_COMPRESSED) && host) {
			r = qcow2_get_refcount(im, host >> im->cluster_bits, &v);
			if (r)
				break;
			ent = v == 1 ? ent | ENTRY_COPIED : ent & ~ENTRY_COPIED;
			put_be64((uint8_t *)&dst[i], ent);
		}
	}
	if (!r)
		r = qcow2_pwrite(im, dst, im->cluster_size, nt);
	free(dst);
	if (!r)
		r = qcow2_sync_refcounts(im);
	if (r)
		return r;
	put_be64(e, nt | ENTRY_COPIED);
	r = qcow2_pwrite(im, e, 8, im->l1_offset + l1_idx * 8);
	if (r)
		return r;
	im->l1[l1_idx] = nt | ENTRY_COPIED;
	if (old_off) {
		r = qcow2_unref_range(im, old_off, im->cluster_size);
		if (r)
			return r;
	}
	*l2_off = nt;
	return qcow2_l2_load(im, nt, table);
}

/* An l2 entry to point at a newly written cluster, once the refcounts
 * that count it are on disk. */
struct l2_update {
	uint64_t l2_off, idx;   /* the l2_table (host offset), entry index */
	uint64_t entry, old;    /* new and previous l2 entries */
};

/* Guest bytes [g, g + n), within one cluster: written in place (*u_used
 * stays false), or into a new cluster, filled whole with the old contents
 * around the new bytes, whose l2 update is left in *u. */
static int write_part(struct qimg *im, uint64_t g, const uint8_t *buf, uint64_t n,
		      struct l2_update *u, bool *u_used)
{
	uint64_t cs = im->cluster_size, in = g & (cs - 1), cstart = g - in;
	uint64_t idx = (g >> im->cluster_bits) & ((1ull << im->l2_bits) - 1);
	uint64_t l2_off, *table, entry, host, nh;
	uint8_t *cl;
	int r = l2_for_write(im, g, &l2_off, &table);

	*u_used = false;
	if (r)
		return r;
	entry = be64((uint8_t *)&table[idx]);
	host = entry & OFFSET_MASK;
	if ((entry & ENTRY_COPIED) && !(entry & L2E_COMPRESSED) && host &&
	    !(entry & L2E_ZERO)) {
		/* Never through a data entry onto metadata, nor past the
		 * end of the file where the allocator hands out clusters. */
		if (!cluster_aligned(im, host) || qcow2_is_fixed_metadata(im, host) ||
		    qcow2_oset_has(&im->l2s, host) || qcow2_oset_has(&im->rbs, host) ||
		    host >= im->next_free)
			return qcow2_corrupt(im, "bad data cluster entry", entry);
		return qcow2_pwrite(im, buf, n, host + in);
	}
	cl = malloc(cs);
	if (!cl)
		return -ENOMEM;
	if (n < cs) {
		uint64_t avail = im->size - cstart < cs ? im->size - cstart : cs;

		memset(cl, 0, cs);
		r = qcow2_read_mapped(im, entry, cstart, cl, avail);
	}
	if (!r) {
		memcpy(cl + in, buf, n);
		r = qcow2_alloc_cluster(im, &nh);
	}
	if (!r)
		r = qcow2_pwrite(im, cl, cs, nh);
	free(cl);
	if (r)
		return r;
	*u = (struct l2_update){ l2_off, idx, nh | ENTRY_COPIED, entry };
	*u_used = true;
	return 0;
}

/* Point the l2_table at the new cluster, then drop the old cluster's
 * reference: a crash in between leaks, never frees what is in use. */
static int apply_update(struct qimg *im, const struct l2_update *u)
{
	uint64_t *table, host = u->old & OFFSET_MASK;
	uint8_t e[8];
	int r = qcow2_l2_load(im, u->l2_off, &table);

	if (r)
		return r;
	put_be64(e, u->entry);
	memcpy(&table[u->idx], e, 8);
	r = qcow2_pwrite(im, e, 8, u->l2_off + u->idx * 8);
	if (r)
		return r;
	if (u->old & L2E_COMPRESSED) {
		unsigned x = 62 - (im->cluster_bits - 8);
		uint64_t coff = u->old & ((1ull << x) - 1);
		uint64_t nsec = ((u->old & ~L2E_COMPRESSED & ~ENTRY_COPIED) >> x) + 1;

		return qcow2_unref_range(im, coff, nsec * 512 - (coff & 511));
	}
	/* Not written in place: a host cluster it had (shared, or
	 * preallocated with the zero flag) loses this reference. */
	if (host)
		return qcow2_unref_range(im, host, im->cluster_size);
	return 0;
}

/* One request's clusters: data and refcounts of all new clusters first,
 * one fdatasync, then every l2 update (not a sync per cluster). */
int qcow2_img_write(struct qimg *im, uint64_t off, const uint8_t *buf, uint64_t len)
{
	uint64_t cs = im->cluster_size;
	size_t max = (size_t)(len / cs + 2), nr = 0;
	struct l2_update *ups = malloc(max * sizeof(*ups));
	int r = 0;

	if (!ups)
		return -ENOMEM;
	while (len && !r) {
		uint64_t n = cs - (off & (cs - 1));
		bool used;

		if (n > len)
			n = len;
		r = write_part(im, off, buf, n, &ups[nr], &used);
		nr += used;
		off += n;
		buf += n;
		len -= n;
	}
	/* On failure the new clusters stay unreferenced: leaked, as a crash
	 * would leave them. */
	if (!r && nr)
		r = qcow2_sync_refcounts(im);
	for (size_t i = 0; i < nr && !r; i++)
		r = apply_update(im, &ups[i]);
	free(ups);
	return r;
}

/* For qcow2_compress.c, which writes its own l2 entries. */
int qcow2_l2_for_write(struct qimg *im, uint64_t g, uint64_t *l2_off, uint64_t **table)
{
	return l2_for_write(im, g, l2_off, table);
}
