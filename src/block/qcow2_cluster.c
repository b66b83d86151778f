/*
 * qcow2_cluster.c - guest reads and writes of a qcow2 image: the l2_table
 * cache, lookups through l1_table/l2_table, decompression of compressed
 * clusters, allocating writes with copy-on-write (design and write
 * ordering: the comment at the top of qcow2.c), and discard / write
 * zeroes (qcow2_img_discard).
 *
 * Dropping references.  Whenever an l2 entry stops pointing at a host
 * cluster (a copy-on-write of a compressed, shared or preallocated zero
 * cluster, a discard), the new entry is made durable (fdatasync) before
 * the old cluster's refcount falls: otherwise the refcount write could
 * reach the disk first, and a crash would leave a referenced cluster
 * counted too low.  With the order kept, a crash leaks at most.  Freed
 * clusters are never handed out again (allocation is always at
 * next_free), which is what makes a data write still in flight to a
 * cluster a concurrent discard freed harmless (qcow2_io.c).
 */
#include "block/qcow2_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>
#include <zlib.h>

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

static int decompress(struct qimg *im, uint64_t entry)
{
	unsigned x = 62 - (im->cluster_bits - 8);
	uint64_t coff = entry & ((1ull << x) - 1);
	uint64_t nsec = ((entry & ~L2E_COMPRESSED & ~ENTRY_COPIED) >> x) + 1;
	uint64_t clen = nsec * 512 - (coff & 511);
	z_stream z = { 0 };
	int r;

	if (im->dbuf_key == entry)
		return 0;
	if (coff >= im->file_size)
		return qcow2_corrupt(im, "compressed cluster past the end of the file", coff);
	if (clen > 2 * im->cluster_size)
		clen = 2 * im->cluster_size;
	if (clen > im->file_size - coff)
		clen = im->file_size - coff;
	r = qcow2_pread(im->fd, im->cbuf, clen, coff);
	if (r)
		return r;
	if (inflateInit2(&z, -12) != Z_OK)
		return -ENOMEM;
	z.next_in = im->cbuf;
	z.avail_in = (uInt)clen;
	z.next_out = im->dbuf;
	z.avail_out = (uInt)im->cluster_size;
	r = inflate(&z, Z_FINISH);
	inflateEnd(&z);
	/* The sector count rounds up, so input may remain once the output
	 * is full: a full cluster is success whatever inflate says. */
	if ((r != Z_STREAM_END && r != Z_BUF_ERROR) || z.avail_out) {
		im->dbuf_key = 0;
		return qcow2_corrupt(im, "compressed cluster does not inflate", coff);
	}
	im->dbuf_key = entry;
	return 0;
}

/* Bytes [g, g + n) of one guest cluster, whose l2 entry is `entry`. */
int qcow2_read_mapped(struct qimg *im, uint64_t entry, uint64_t g,
		       uint8_t *buf, uint64_t n)
{
	uint64_t in = g & (im->cluster_size - 1);
	uint64_t host = entry & OFFSET_MASK;
	int r;

	if (entry & L2E_COMPRESSED) {
		r = decompress(im, entry);
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
		/* The l1 entry durable before the shared table loses a
		 * reference (a crash in between leaks it at most). */
		r = qcow2_fdatasync(im);
		if (!r)
			r = qcow2_unref_range(im, old_off, im->cluster_size);
		if (r)
			return r;
	}
	*l2_off = nt;
	return qcow2_l2_load(im, nt, table);
}

/* Forget the cached copy of the l2_table at `l2_off` (after a failed
 * write left the cache ahead of the file). */
static void l2_cache_forget(struct qimg *im, uint64_t l2_off)
{
	for (unsigned i = 0; i < im->l2_slots; i++)
		if (im->l2_cache[i].offset == l2_off)
			im->l2_cache[i].offset = 0;
}

/* Whether an l2 entry names a host cluster (normal or preallocated zero)
 * or compressed sectors, i.e. holds references to drop when the entry is
 * replaced. */
static bool holds_ref(uint64_t entry)
{
	return (entry & L2E_COMPRESSED) || (entry & OFFSET_MASK);
}

/* Whether the host cluster `host`, named by a data entry, may be written
 * or have its reference dropped: aligned, not a table, below next_free
 * (a hostile entry must not make us write metadata, nor decrement its
 * refcount). */
static bool data_cluster_ok(const struct qimg *im, uint64_t host)
{
	return cluster_aligned(im, host) && !qcow2_is_fixed_metadata(im, host) &&
	       !qcow2_oset_has(&im->l2s, host) && !qcow2_oset_has(&im->rbs, host) &&
	       host < im->next_free;
}

/* The compressed sectors [*coff, *coff + *clen) an entry names. */
static void compressed_range(const struct qimg *im, uint64_t entry, uint64_t *coff,
			     uint64_t *clen)
{
	unsigned x = 62 - (im->cluster_bits - 8);
	uint64_t nsec = ((entry & ~L2E_COMPRESSED & ~ENTRY_COPIED) >> x) + 1;

	*coff = entry & ((1ull << x) - 1);
	*clen = nsec * 512 - (*coff & 511);
}

/* Check that the references an entry holds may be dropped (see
 * data_cluster_ok): 0, or qcow2_corrupt(). */
static int check_droppable(const struct qimg *im, uint64_t entry)
{
	uint64_t coff, clen, cs = im->cluster_size;

	if (entry & L2E_COMPRESSED) {
		compressed_range(im, entry, &coff, &clen);
		for (uint64_t c = coff & ~(cs - 1); c < coff + clen; c += cs)
			if (!data_cluster_ok(im, c))
				return qcow2_corrupt(im, "bad compressed cluster entry", entry);
		return 0;
	}
	if ((entry & 0x1fe) || !data_cluster_ok(im, entry & OFFSET_MASK))
		return qcow2_corrupt(im, "bad data cluster entry", entry);
	return 0;
}

/* Drop the references an l2 entry that no longer points there held: its
 * host cluster (normal, shared, or preallocated with the zero flag) or
 * its compressed sectors.  The caller has made the replacing entry
 * durable first. */
static int drop_ref(struct qimg *im, uint64_t entry)
{
	uint64_t coff, clen;

	if (entry & L2E_COMPRESSED) {
		compressed_range(im, entry, &coff, &clen);
		return qcow2_unref_range(im, coff, clen);
	}
	if (entry & OFFSET_MASK)
		return qcow2_unref_range(im, entry & OFFSET_MASK, im->cluster_size);
	return 0;
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
		if (!data_cluster_ok(im, host))
			return qcow2_corrupt(im, "bad data cluster entry", entry);
		return qcow2_pwrite(im, buf, n, host + in);
	}
	/* The old entry's references are dropped after the l2 update:
	 * refuse now what we could not drop then. */
	if (holds_ref(entry) && (r = check_droppable(im, entry)))
		return r;
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

/* Point the l2_table at the new cluster.  The old cluster's reference is
 * dropped by the caller once every such entry is durable. */
static int apply_update(struct qimg *im, const struct l2_update *u)
{
	uint64_t *table;
	uint8_t e[8];
	int r = qcow2_l2_load(im, u->l2_off, &table);

	if (r)
		return r;
	put_be64(e, u->entry);
	memcpy(&table[u->idx], e, 8);
	r = qcow2_pwrite(im, e, 8, u->l2_off + u->idx * 8);
	if (r)
		l2_cache_forget(im, u->l2_off);
	return r;
}

/* One request's clusters: data and refcounts of all new clusters first,
 * one fdatasync, then every l2 update (not a sync per cluster); then, if
 * some old entries held references (compressed, shared with a snapshot,
 * preallocated zero), one more fdatasync and those references dropped:
 * without it the refcount write could reach the disk before the l2 write
 * and a crash would leave a referenced cluster counted too low. */
int qcow2_img_write(struct qimg *im, uint64_t off, const uint8_t *buf, uint64_t len)
{
	uint64_t cs = im->cluster_size;
	size_t max = (size_t)(len / cs + 2), nr = 0;
	struct l2_update *ups = malloc(max * sizeof(*ups));
	bool drops = false;
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
	for (size_t i = 0; i < nr && !r; i++) {
		r = apply_update(im, &ups[i]);
		drops |= holds_ref(ups[i].old);
	}
	if (!r && drops)
		r = qcow2_fdatasync(im);
	for (size_t i = 0; i < nr && !r; i++)
		r = drop_ref(im, ups[i].old);
	free(ups);
	return r;
}

/* ---- discard and write zeroes ---- */

/* What a whole cluster's l2 entry becomes (qcow2_img_discard): the same
 * entry when nothing changes. */
static uint64_t discarded_entry(const struct qimg *im, uint64_t e, bool zero, bool unmap)
{
	if (!zero)
		return 0;
	if (im->version < 3)        /* only without a backing file (caller) */
		return 0;
	if (!im->backing && !e)     /* reads zeros already */
		return e;
	/* Without unmap, a cluster of ours stays allocated under the zero
	 * flag (QEMU's preallocated zero cluster): a later write needs no
	 * allocation of the file's space. */
	if (!unmap && (e & ENTRY_COPIED) && !(e & L2E_COMPRESSED) && (e & OFFSET_MASK))
		return (e & (OFFSET_MASK | ENTRY_COPIED)) | L2E_ZERO;
	return L2E_ZERO;
}

/* Give the file's space of a host cluster whose refcount fell to 0 back
 * to the file system (advisory: errors are ignored).  Freed clusters are
 * never allocated again (allocation is at next_free, qcow2_refcount.c),
 * so a write still in flight to it (qcow2_io.c) lands in unused space. */
static void punch_if_free(struct qimg *im, uint64_t entry)
{
	uint64_t host = entry & OFFSET_MASK, v;

	if (im->hooks || (entry & L2E_COMPRESSED) || !host)
		return;
	if (qcow2_get_refcount(im, host >> im->cluster_bits, &v) || v)
		return;
	(void)fallocate(im->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)host,
			(off_t)im->cluster_size);
}

/* Whole clusters [g, g + n * cluster_size), all in one l2_table: write
 * their new entries (one write), make them durable, then drop the old
 * references.  Nothing is written when no entry changes (an unallocated
 * range does not get an l2_table). */
static int discard_in_l2(struct qimg *im, uint64_t g, uint64_t n, bool zero, bool unmap)
{
	uint64_t cs = im->cluster_size, idx0 = (g >> im->cluster_bits) & ((1ull << im->l2_bits) - 1);
	uint64_t l2_off, *table, *olds, nold = 0;
	bool change = false;
	int r = 0;

	for (uint64_t i = 0; i < n && !change && !r; i++) {
		uint64_t e;

		r = qcow2_l2_entry(im, g + i * cs, &e);
		change = !r && discarded_entry(im, e, zero, unmap) != e;
	}
	if (r || !change)
		return r;
	/* Private (COPIED) first: a table shared with a snapshot is copied. */
	r = l2_for_write(im, g, &l2_off, &table);
	if (r)
		return r;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t e = be64((uint8_t *)&table[idx0 + i]);
		uint64_t ne = discarded_entry(im, e, zero, unmap);

		if (ne != e && holds_ref(e) && (ne & OFFSET_MASK) != (e & OFFSET_MASK) &&
		    (r = check_droppable(im, e)))
			return r;
	}
	olds = malloc(n * sizeof(*olds));
	if (!olds)
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t e = be64((uint8_t *)&table[idx0 + i]);
		uint64_t ne = discarded_entry(im, e, zero, unmap);

		if (ne == e)
			continue;
		if (holds_ref(e) && (ne & OFFSET_MASK) != (e & OFFSET_MASK))
			olds[nold++] = e;
		put_be64((uint8_t *)&table[idx0 + i], ne);
	}
	r = qcow2_pwrite(im, &table[idx0], n * 8, l2_off + idx0 * 8);
	if (r)
		l2_cache_forget(im, l2_off);
	/* The new entries durable before any refcount falls: a crash in
	 * between leaks the clusters, never frees one still referenced. */
	if (!r && nold)
		r = qcow2_fdatasync(im);
	for (uint64_t i = 0; i < nold && !r; i++) {
		r = drop_ref(im, olds[i]);
		if (!r)
			punch_if_free(im, olds[i]);
	}
	free(olds);
	return r;
}

/* Zeros written as data over guest bytes [off, off + len). */
static int write_zeros(struct qimg *im, uint64_t off, uint64_t len)
{
	uint8_t *z;
	int r = 0;

	if (!len)
		return 0;
	z = calloc(1, len < ZERO_CHUNK ? len : ZERO_CHUNK);
	if (!z)
		return -ENOMEM;
	while (len && !r) {
		uint64_t n = len < ZERO_CHUNK ? len : ZERO_CHUNK;

		r = qcow2_img_write(im, off, z, n);
		off += n;
		len -= n;
	}
	free(z);
	return r;
}

int qcow2_img_discard(struct qimg *im, uint64_t off, uint64_t len, bool zero, bool unmap)
{
	uint64_t cs = im->cluster_size, end = off + len, start, stop;
	uint64_t l2_span = cs << im->l2_bits;
	int r = 0;

	if (!im->is_qcow2 || !im->writable)
		return -EROFS;
	if (off > im->size || len > im->size - off)
		return -EINVAL;
	/* Version 2 has no zero flag: with a backing file, only written
	 * zeros hide its bytes. */
	if (zero && im->version < 3 && im->backing)
		return write_zeros(im, off, len);
	/* Whole clusters; the last cluster of the disk counts as whole
	 * when the range reaches the end of the disk. */
	start = (off + cs - 1) & ~(cs - 1);
	stop = end == im->size ? (end + cs - 1) & ~(cs - 1) : end & ~(cs - 1);
	if (start >= stop)
		return zero ? write_zeros(im, off, len) : 0;
	if (zero && (r = write_zeros(im, off, start - off)))
		return r;
	for (uint64_t g = start; g < stop && !r;) {
		uint64_t next = (g | (l2_span - 1)) + 1;

		if (next > stop)
			next = stop;
		r = discard_in_l2(im, g, (next - g) >> im->cluster_bits, zero, unmap);
		g = next;
	}
	if (!r && zero && stop < end)
		r = write_zeros(im, stop, end - stop);
	return r;
}
