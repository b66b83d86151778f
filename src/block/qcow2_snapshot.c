/*
 * qcow2_snapshot.c - internal snapshots of a qcow2 image (spec: "Snapshot
 * table").
 *
 * The header's snapshots_offset names a table of nb_snapshots entries,
 * each 8-byte aligned: {u64 l1_table_offset, u32 l1_size, u16 id_str_size,
 * u16 name_size, u32 date_sec, u32 date_nsec, u64 vm_clock_nsec,
 * u32 vm_state_size, u32 extra_data_size, extra data, id, name}.  Version
 * 3 entries carry at least 16 bytes of extra data: vm_state_size_large and
 * disk_size.  A snapshot's l1_table is a frozen copy of the active one; the
 * l2_tables and data clusters they share have refcounts above 1, so the
 * active image copies them before writing (COPIED is clear).
 *
 * The table is untrusted like every other part of the image: sizes are
 * bounded by QEMU's limits, every entry must fit the table, every l1_table
 * must be cluster aligned and inside the file.  The clusters of the table
 * and of the snapshots' l1_tables go into im->snapmeta so that no data
 * write lands on them, whatever a hostile l2 entry says.  Before a tree
 * (an l1_table, its l2_tables, their clusters) has its refcounts changed
 * it is walked once to check every offset, so a bad image is refused
 * with nothing changed.
 *
 * Refcounts.  As qemu-img check counts them, a cluster's refcount is the
 * number of l1_tables (the active one and each snapshot's) that reach it:
 * an l2_table shared by two l1_tables counts 2, and so does every cluster
 * it names (a compressed cluster: each host cluster it spans).
 *
 * Create: (1) add one to everything the active tree reaches; (2) clear
 * COPIED in the active l1_table and l2_tables (the write path then copies
 * shared tables and clusters before writing); (3) write a copy of the
 * active l1_table to new clusters; (4) write a new snapshot table (old
 * entries + the new one) to new clusters; fdatasync; (5) one header write
 * of nb_snapshots and snapshots_offset (bytes 60..71); fdatasync; (6) free
 * the old table.  Apply: (1) add one to everything the snapshot's tree
 * reaches; (2) write its l1_table, COPIED clear, to new clusters;
 * fdatasync; (3) one header write of size, l1_size and l1_table_offset
 * (bytes 24..47); fdatasync; (4) drop one reference from everything the
 * old active tree reached and free the old l1_table.  Delete: (1) write a
 * table without the entry, fdatasync, switch the header, fdatasync, free
 * the old table; (2) drop one reference from everything the snapshot's
 * tree reaches, free its l1_table; (3) set COPIED again where the active
 * image is now the only user (refcount 1), as QEMU does.
 *
 * Why a crash at any instant loses nothing: the only writes that make
 * the image refer to something new are the header writes, each within
 * one sector, and each comes after an fdatasync of everything it names,
 * refcounts included; so before the switch the new objects are leaks,
 * after it the objects given up are (their references are dropped only
 * after the switch).  A reference is never dropped while still used, so
 * a refcount is never lower than the number of users.  COPIED is the one
 * flag that cannot follow the refcount in the same write: in create's
 * steps (1)-(2) and delete's (2)-(3) an active entry may have COPIED set
 * with a refcount of 2, or clear with a refcount of 1.  Both are harmless
 * there: in create the snapshot is not yet named, so the true count is
 * still 1 and writing in place is right; in delete the snapshot is gone,
 * and a clear COPIED only costs a copy.  qemu-img check still reports
 * such an entry as an "OFLAG_COPIED" corruption (QEMU's own snapshot code
 * has the same window); `qemu-img check -r all` repairs it.  The set of
 * cuts where this happens is pinned by tests/unit/test_qcow2_snapshot.c.
 */
#include "block/qcow2_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/log.h"

/* QEMU's QCOW_MAX_SNAPSHOTS, QCOW_MAX_SNAPSHOTS_SIZE and
 * QCOW_MAX_SNAPSHOT_EXTRA_DATA. */
#define MAX_SNAPSHOTS        65536u
#define MAX_SNAPSHOTS_BYTES  (64u << 20)
#define MAX_EXTRA_DATA       1024u
#define ENTRY_FIXED          40

void qcow2_snapshots_free(struct qimg *im)
{
	for (uint32_t i = 0; im->snaps && i < im->nb_snapshots; i++) {
		free(im->snaps[i].id);
		free(im->snaps[i].name);
		free(im->snaps[i].extra);
	}
	free(im->snaps);
	im->snaps = NULL;
}

/* Every cluster of host bytes [off, off + len) into im->snapmeta. */
static int mark(struct qimg *im, uint64_t off, uint64_t len)
{
	for (uint64_t c = off & ~(im->cluster_size - 1); c < off + len; c += im->cluster_size) {
		int r = qcow2_oset_add(&im->snapmeta, c);

		if (r)
			return r;
	}
	return 0;
}

static char *strndup_bytes(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);

	if (s) {
		memcpy(s, p, n);
		s[n] = 0;
	}
	return s;
}

/* Parse the entry at buf[*pos] (the table is len bytes) into sn. */
static int parse_entry(struct qimg *im, const uint8_t *buf, uint64_t len, uint64_t *pos,
		       uint64_t *end, struct qcow2_snapshot *sn, uint32_t n, char *err,
		       size_t errlen)
{
	const uint8_t *e = buf + *pos;
	uint32_t id_len, name_len, extra;
	uint64_t size;

	if (*pos > len || len - *pos < ENTRY_FIXED) {
		snprintf(err, errlen, "%s: snapshot %u runs past the snapshot table", im->path, n);
		return -EINVAL;
	}
	sn->l1_offset = be64(e);
	sn->l1_size = be32(e + 8);
	id_len = (uint32_t)e[12] << 8 | e[13];
	name_len = (uint32_t)e[14] << 8 | e[15];
	sn->date_sec = be32(e + 16);
	sn->date_nsec = be32(e + 20);
	sn->vm_clock_nsec = be64(e + 24);
	sn->vm_state_size = be32(e + 32);
	extra = be32(e + 36);
	sn->disk_size = im->size;
	if (extra > MAX_EXTRA_DATA) {
		snprintf(err, errlen, "%s: snapshot %u: extra data of %u bytes (at most %u)",
			 im->path, n, extra, MAX_EXTRA_DATA);
		return -EINVAL;
	}
	/* The last entry's padding may lie past the end of the file. */
	size = ENTRY_FIXED + (uint64_t)extra + id_len + name_len;
	if (size > len - *pos) {
		snprintf(err, errlen, "%s: snapshot %u runs past the snapshot table", im->path, n);
		return -EINVAL;
	}
	if (im->version >= 3 && extra < 16) {
		snprintf(err, errlen, "%s: snapshot %u: %u bytes of extra data (version 3 needs 16)",
			 im->path, n, extra);
		return -EINVAL;
	}
	if (extra >= 8)
		sn->vm_state_size = be64(e + ENTRY_FIXED);
	if (extra >= 16)
		sn->disk_size = be64(e + ENTRY_FIXED + 8);
	if (!cluster_aligned(im, sn->l1_offset) || !sn->l1_offset ||
	    (uint64_t)sn->l1_size * 8 > MAX_L1_BYTES || sn->l1_offset > im->file_size ||
	    sn->l1_size * 8ull > im->file_size - sn->l1_offset) {
		snprintf(err, errlen, "%s: snapshot %u: l1_table (offset 0x%" PRIx64 ", %u entries) "
			 "not cluster-aligned, too large or past the end of the file",
			 im->path, n, sn->l1_offset, sn->l1_size);
		return -EINVAL;
	}
	sn->extra_size = extra;
	sn->extra = malloc(extra ? extra : 1);
	sn->id = strndup_bytes(e + ENTRY_FIXED + extra, id_len);
	sn->name = strndup_bytes(e + ENTRY_FIXED + extra + id_len, name_len);
	if (!sn->extra || !sn->id || !sn->name)
		return -ENOMEM;
	memcpy(sn->extra, e + ENTRY_FIXED, extra);
	*end = *pos + size;
	*pos += (size + 7) & ~7ull;
	return mark(im, sn->l1_offset, sn->l1_size * 8ull);
}

int qcow2_snapshots_load(struct qimg *im, char *err, size_t errlen)
{
	uint64_t len, pos = 0, end = 0;
	uint8_t *buf;
	int r = 0;

	im->snapshots_bytes = 0;
	if (!im->nb_snapshots)
		return 0;
	if (im->nb_snapshots > MAX_SNAPSHOTS) {
		snprintf(err, errlen, "%s: %u snapshots (at most %u)", im->path,
			 im->nb_snapshots, MAX_SNAPSHOTS);
		return -EINVAL;
	}
	/* The entries' lengths are only known while parsing: read what can
	 * hold them, bounded by the limit and the file. */
	len = im->file_size - im->snapshots_offset;
	if (len > MAX_SNAPSHOTS_BYTES)
		len = MAX_SNAPSHOTS_BYTES;
	buf = malloc(len ? len : 1);
	im->snaps = calloc(im->nb_snapshots, sizeof(*im->snaps));
	if (!buf || !im->snaps) {
		free(buf);
		snprintf(err, errlen, "%s: out of memory", im->path);
		return -ENOMEM;
	}
	r = qcow2_pread(im->fd, buf, len, im->snapshots_offset);
	if (r)
		snprintf(err, errlen, "%s: cannot read the snapshot table: %s", im->path,
			 strerror(-r));
	for (uint32_t i = 0; !r && i < im->nb_snapshots; i++) {
		r = parse_entry(im, buf, len, &pos, &end, &im->snaps[i], i, err, errlen);
		if (r == -ENOMEM)
			snprintf(err, errlen, "%s: out of memory", im->path);
	}
	free(buf);
	if (!r) {
		/* QEMU counts the table without the last entry's padding:
		 * so do we, lest a data cluster right after it be taken for
		 * metadata (and freed with the table). */
		im->snapshots_bytes = end;
		r = mark(im, im->snapshots_offset, end);
		if (r)
			snprintf(err, errlen, "%s: out of memory", im->path);
	}
	return r;
}

/* ---- changing snapshots: create, apply, delete ---- */

/* Drop every cluster of host bytes [off, off + len) from im->snapmeta
 * (a table we freed). */
static void unmark(struct qimg *im, uint64_t off, uint64_t len)
{
	struct oset *o = &im->snapmeta;

	for (uint64_t c = off & ~(im->cluster_size - 1); c < off + len; c += im->cluster_size) {
		for (size_t i = 0; i < o->n; i++) {
			if (o->v[i] == c) {
				memmove(o->v + i, o->v + i + 1, (o->n - i - 1) * sizeof(*o->v));
				o->n--;
				break;
			}
		}
	}
}

static uint64_t clusters_for(const struct qimg *im, uint64_t bytes)
{
	uint64_t n = (bytes + im->cluster_size - 1) >> im->cluster_bits;

	return n ? n : 1;
}

int qcow2_alloc_run(struct qimg *im, uint64_t n, uint64_t *host)
{
	uint64_t start = im->next_free, first = start >> im->cluster_bits, v;

	/* Claim the whole run first: a refcount_block that counting it
	 * needs is placed at next_free, after the run. */
	im->next_free += n << im->cluster_bits;
	for (uint64_t i = 0; i < n; i++) {
		int r = qcow2_get_refcount(im, first + i, &v);

		if (!r && v)
			r = qcow2_corrupt(im, "refcount for a cluster past the end of the file",
					  (first + i) << im->cluster_bits);
		if (!r)
			r = qcow2_set_refcount(im, first + i, 1);
		if (r)
			return r;
	}
	*host = start;
	return 0;
}

/* Forget cached copies of the l2_table at `off` (we rewrote it). */
static void l2_cache_drop(struct qimg *im, uint64_t off)
{
	for (unsigned i = 0; i < im->l2_slots; i++)
		if (im->l2_cache[i].offset == off)
			im->l2_cache[i].offset = 0;
	im->dbuf_key = 0;
}

/* Whether `o`, read from an l1_table, can be an l2_table: a whole
 * cluster inside the file, not the header, an l1_table, the
 * refcount_table, a refcount_block or the snapshot table. */
static bool l2_offset_ok(const struct qimg *im, uint64_t o)
{
	return cluster_aligned(im, o) && o < im->file_size &&
	       im->file_size - o >= im->cluster_size && !qcow2_is_fixed_metadata(im, o) &&
	       !qcow2_oset_has(&im->rbs, o);
}

/* The host clusters [*first, *first + *n) l2 entry e holds a reference
 * to (*n = 0: none).  -EINVAL for an entry pointing outside the file. */
static int entry_clusters(const struct qimg *im, uint64_t e, uint64_t *first, uint64_t *n)
{
	uint64_t host = e & OFFSET_MASK;

	*n = 0;
	if (e & L2E_COMPRESSED) {
		unsigned x = 62 - (im->cluster_bits - 8);
		uint64_t coff = e & ((1ull << x) - 1);
		uint64_t nsec = ((e & ~L2E_COMPRESSED & ~ENTRY_COPIED) >> x) + 1;
		uint64_t bytes = nsec * 512 - (coff & 511);

		if (coff >= im->file_size)
			return -EINVAL;
		*first = coff >> im->cluster_bits;
		*n = ((coff + bytes - 1) >> im->cluster_bits) - *first + 1;
		return 0;
	}
	if (!host)
		return 0;
	if (!cluster_aligned(im, host) || host >= im->file_size)
		return -EINVAL;
	*first = host >> im->cluster_bits;
	*n = 1;
	return 0;
}

/* Add one to the refcount of host clusters [first, first + n). */
static int ref_inc(struct qimg *im, uint64_t first, uint64_t n)
{
	unsigned width = 1u << im->refcount_order;
	uint64_t max = width == 64 ? UINT64_MAX : (1ull << width) - 1, v;

	for (uint64_t i = first; i < first + n; i++) {
		int r = qcow2_get_refcount(im, i, &v);

		if (!r && v == max) {
			log_error("%s: refcount of cluster 0x%" PRIx64 " would overflow %u bits",
				  im->path, i << im->cluster_bits, width);
			r = -ERANGE;
		}
		if (!r)
			r = qcow2_set_refcount(im, i, v + 1);
		if (r)
			return r;
	}
	return 0;
}

enum walk_op { WALK_CHECK, WALK_INC, WALK_DEC };

/* For every l2_table l1 names and every cluster those tables name (what
 * qemu-img check counts for one l1_table): check the offsets only, or
 * add or drop one reference.  A table reached twice counts twice, as
 * QEMU counts it.  `what` names the tree in messages. */
static int walk_tree(struct qimg *im, const uint64_t *l1, uint32_t l1_size, enum walk_op op,
		     const char *what, char *err, size_t errlen)
{
	uint64_t cs = im->cluster_size, first, n;
	uint8_t *l2 = malloc(cs);
	int r = 0;

	if (!l2) {
		snprintf(err, errlen, "%s: out of memory", im->path);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < l1_size && !r; i++) {
		uint64_t o = l1[i] & OFFSET_MASK;

		if (!o)
			continue;
		if (!l2_offset_ok(im, o)) {
			snprintf(err, errlen, "%s: %s: l2_table %u at 0x%" PRIx64 " is not cluster-aligned, "
				 "overlaps metadata or lies past the end of the file", im->path, what, i, o);
			r = -EINVAL;
			break;
		}
		r = qcow2_pread(im->fd, l2, cs, o);
		for (uint64_t j = 0; !r && j < cs / 8; j++) {
			uint64_t e = be64(l2 + j * 8);

			if (entry_clusters(im, e, &first, &n)) {
				snprintf(err, errlen, "%s: %s: l2 entry 0x%" PRIx64 " (table 0x%" PRIx64
					 ", index %" PRIu64 ") points outside the file", im->path, what,
					 e, o, j);
				r = -EINVAL;
			} else if (n && op == WALK_INC) {
				r = ref_inc(im, first, n);
			} else if (n && op == WALK_DEC) {
				r = qcow2_unref_range(im, first << im->cluster_bits, n << im->cluster_bits);
			}
		}
		if (!r && op == WALK_INC)
			r = ref_inc(im, o >> im->cluster_bits, 1);
		else if (!r && op == WALK_DEC)
			r = qcow2_unref_range(im, o, cs);
		if (r && r != -EINVAL)
			snprintf(err, errlen, "%s: %s: cannot update refcounts: %s", im->path, what,
				 strerror(-r));
	}
	free(l2);
	return r;
}

/* Write im->l1 (host-endian) to the active l1_table in place. */
static int l1_write(struct qimg *im)
{
	uint8_t *b = malloc(im->l1_size ? im->l1_size * 8ull : 8);
	int r;

	if (!b)
		return -ENOMEM;
	for (uint32_t i = 0; i < im->l1_size; i++)
		put_be64(b + i * 8ull, im->l1[i]);
	r = qcow2_pwrite(im, b, im->l1_size * 8ull, im->l1_offset);
	free(b);
	return r;
}

/* Set COPIED on every active l1 and l2 entry whose cluster has refcount
 * 1 and clear it on the others (clear_all: clear it everywhere, the
 * snapshot about to be named will share everything).  Tables shared
 * with a snapshot are left alone: what they name is shared too. */
static int set_copied(struct qimg *im, bool clear_all, char *err, size_t errlen)
{
	uint64_t cs = im->cluster_size, v;
	uint8_t *l2 = malloc(cs);
	bool l1_changed = false;
	int r = 0;

	if (!l2)
		return -ENOMEM;
	for (uint32_t i = 0; i < im->l1_size && !r; i++) {
		uint64_t o = im->l1[i] & OFFSET_MASK, ne;
		bool changed = false;

		if (!o)
			continue;
		v = 0;
		if (!clear_all)
			r = qcow2_get_refcount(im, o >> im->cluster_bits, &v);
		ne = v == 1 ? im->l1[i] | ENTRY_COPIED : im->l1[i] & ~ENTRY_COPIED;
		l1_changed |= ne != im->l1[i];
		im->l1[i] = ne;
		if (r || (v > 1 && !clear_all))
			continue;
		r = qcow2_pread(im->fd, l2, cs, o);
		for (uint64_t j = 0; !r && j < cs / 8; j++) {
			uint64_t e = be64(l2 + j * 8), host = e & OFFSET_MASK;

			if ((e & L2E_COMPRESSED) || !host)
				continue;
			v = 0;
			if (!clear_all)
				r = qcow2_get_refcount(im, host >> im->cluster_bits, &v);
			ne = v == 1 ? e | ENTRY_COPIED : e & ~ENTRY_COPIED;
			if (ne != e) {
				put_be64(l2 + j * 8, ne);
				changed = true;
			}
		}
		if (!r && changed) {
			r = qcow2_pwrite(im, l2, cs, o);
			l2_cache_drop(im, o);
		}
	}
	free(l2);
	if (!r && l1_changed)
		r = l1_write(im);
	if (r)
		snprintf(err, errlen, "%s: cannot update COPIED flags: %s", im->path, strerror(-r));
	return r;
}

static uint64_t entry_bytes(const struct qcow2_snapshot *sn)
{
	return ENTRY_FIXED + (uint64_t)sn->extra_size + strlen(sn->id) + strlen(sn->name);
}

/* Write a snapshot table of the n entries `s` to new clusters, sync,
 * point the header at it (nb_snapshots and snapshots_offset, bytes
 * 60..71, one write), sync, then free the old table.  im->snaps is not
 * touched (the caller swaps it in). */
static int table_write(struct qimg *im, const struct qcow2_snapshot *s, uint32_t n,
		       char *err, size_t errlen)
{
	uint64_t len = 0, pos = 0, off = 0, old_off = im->snapshots_offset;
	uint64_t old_len = im->snapshots_bytes;
	uint8_t *buf, h[12];
	int r = 0;

	for (uint32_t i = 0; i < n; i++)
		len = ((len + 7) & ~7ull) + entry_bytes(&s[i]);
	if (len > MAX_SNAPSHOTS_BYTES) {
		snprintf(err, errlen, "%s: the snapshot table would exceed %u bytes", im->path,
			 MAX_SNAPSHOTS_BYTES);
		return -EFBIG;
	}
	buf = calloc(1, len ? len : 1);
	if (!buf)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		uint8_t *e = buf + ((pos + 7) & ~7ull);
		size_t il = strlen(s[i].id), nl = strlen(s[i].name);

		put_be64(e, s[i].l1_offset);
		put_be32(e + 8, s[i].l1_size);
		e[12] = (uint8_t)(il >> 8);
		e[13] = (uint8_t)il;
		e[14] = (uint8_t)(nl >> 8);
		e[15] = (uint8_t)nl;
		put_be32(e + 16, s[i].date_sec);
		put_be32(e + 20, s[i].date_nsec);
		put_be64(e + 24, s[i].vm_clock_nsec);
		put_be32(e + 32, (uint32_t)s[i].vm_state_size); /* as QEMU: low bits */
		put_be32(e + 36, s[i].extra_size);
		memcpy(e + ENTRY_FIXED, s[i].extra, s[i].extra_size);
		memcpy(e + ENTRY_FIXED + s[i].extra_size, s[i].id, il);
		memcpy(e + ENTRY_FIXED + s[i].extra_size + il, s[i].name, nl);
		pos = ((pos + 7) & ~7ull) + entry_bytes(&s[i]);
	}
	if (n)
		r = qcow2_alloc_run(im, clusters_for(im, len), &off);
	if (!r && n)
		r = qcow2_pwrite(im, buf, len, off);
	free(buf);
	/* The table, its refcounts and everything the caller wrote before
	 * (l1_tables, refcounts, COPIED flags) reach the disk before the
	 * header names the table. */
	if (!r)
		r = qcow2_fdatasync(im);
	if (r) {
		snprintf(err, errlen, "%s: cannot write the snapshot table: %s", im->path,
			 strerror(-r));
		return r;
	}
	put_be32(h, n);
	put_be64(h + 4, off);
	r = qcow2_pwrite(im, h, sizeof(h), 60);
	if (!r)
		r = qcow2_fdatasync(im);
	if (r) {
		snprintf(err, errlen, "%s: cannot update the header: %s", im->path, strerror(-r));
		return r;
	}
	im->refcounts_unsynced = false;
	im->nb_snapshots = n;
	im->snapshots_offset = off;
	im->snapshots_bytes = len;
	if (n && (r = mark(im, off, len)))
		return r;
	/* The old table is unreferenced now: a crash before this leaks it. */
	if (old_len) {
		unmark(im, old_off, old_len);
		r = qcow2_unref_range(im, old_off, old_len);
		if (r)
			snprintf(err, errlen, "%s: cannot free the old snapshot table: %s", im->path,
				 strerror(-r));
	}
	return r;
}

static int check_writable(const struct qimg *im, char *err, size_t errlen)
{
	if (!im->is_qcow2) {
		snprintf(err, errlen, "%s: only qcow2 images have internal snapshots", im->path);
		return -ENOTSUP;
	}
	if (!im->writable) {
		snprintf(err, errlen, "%s: the image is not open for writing", im->path);
		return -EROFS;
	}
	return 0;
}

int qcow2_snapshot_find(const struct qimg *im, const char *key, bool prefer_name)
{
	for (int pass = 0; pass < 2; pass++) {
		bool by_name = (pass == 0) == prefer_name;

		for (uint32_t i = 0; i < im->nb_snapshots; i++)
			if (!strcmp(by_name ? im->snaps[i].name : im->snaps[i].id, key))
				return (int)i;
	}
	return -ENOENT;
}

int qcow2_snapshot_create(struct qimg *im, const char *name, char *err, size_t errlen)
{
	uint32_t n = im->nb_snapshots;
	unsigned long id_max = 0;
	struct qcow2_snapshot *ns, *sn;
	struct timespec ts;
	uint64_t l1_off = 0;
	uint8_t *b;
	char id[24];
	int r = check_writable(im, err, errlen);

	if (r)
		return r;
	err[0] = 0; /* set: a message was written */
	if (n >= MAX_SNAPSHOTS) {
		snprintf(err, errlen, "%s: too many snapshots (at most %u)", im->path, MAX_SNAPSHOTS);
		return -EFBIG;
	}
	if (strlen(name) > UINT16_MAX) {
		snprintf(err, errlen, "%s: snapshot name longer than %u bytes", im->path, UINT16_MAX);
		return -EINVAL;
	}
	/* QEMU's find_new_snapshot_id(): one past the largest number. */
	for (uint32_t i = 0; i < n; i++) {
		unsigned long v = strtoul(im->snaps[i].id, NULL, 10);

		if (v > id_max)
			id_max = v;
	}
	snprintf(id, sizeof(id), "%lu", id_max + 1);

	/* 1. Everything the active tree reaches gains the snapshot's
	 *    reference (checked first: a bad tree changes nothing). */
	r = walk_tree(im, im->l1, im->l1_size, WALK_CHECK, "active l1_table", err, errlen);
	if (!r)
		r = walk_tree(im, im->l1, im->l1_size, WALK_INC, "active l1_table", err, errlen);
	/* 2. Shared now: the active image must copy before writing. */
	if (!r)
		r = set_copied(im, true, err, errlen);
	if (r)
		return r;
	/* 3. The snapshot's l1_table, a copy of the active one. */
	b = calloc(clusters_for(im, im->l1_size * 8ull), im->cluster_size);
	if (!b)
		return -ENOMEM;
	for (uint32_t i = 0; i < im->l1_size; i++)
		put_be64(b + i * 8ull, im->l1[i]);
	r = qcow2_alloc_run(im, clusters_for(im, im->l1_size * 8ull), &l1_off);
	if (!r)
		r = qcow2_pwrite(im, b, im->l1_size * 8ull, l1_off);
	free(b);
	if (r) {
		snprintf(err, errlen, "%s: cannot write the snapshot's l1_table: %s", im->path,
			 strerror(-r));
		return r;
	}
	/* 4. The new table names it; the header names the new table. */
	ns = realloc(im->snaps, (n + 1) * sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	im->snaps = ns;
	sn = &ns[n];
	memset(sn, 0, sizeof(*sn));
	clock_gettime(CLOCK_REALTIME, &ts);
	sn->l1_offset = l1_off;
	sn->l1_size = im->l1_size;
	sn->id = strdup(id);
	sn->name = strdup(name);
	/* QEMU's date precision: microseconds. */
	sn->date_sec = (uint32_t)ts.tv_sec;
	sn->date_nsec = (uint32_t)(ts.tv_nsec / 1000 * 1000);
	sn->disk_size = im->size;
	/* vm_state_size_large, disk_size, icount (QEMU writes 0). */
	sn->extra_size = 24;
	sn->extra = calloc(1, 24);
	if (!sn->id || !sn->name || !sn->extra) {
		free(sn->id);
		free(sn->name);
		free(sn->extra);
		return -ENOMEM;
	}
	put_be64(sn->extra + 8, im->size);
	r = table_write(im, ns, n + 1, err, errlen);
	if (r) {
		free(sn->id);
		free(sn->name);
		free(sn->extra);
		return r;
	}
	return mark(im, l1_off, im->l1_size * 8ull);
}

/* The l1_table of snapshot sn, host-endian, n >= sn->l1_size entries
 * (the rest zero). */
static int snap_l1_read(struct qimg *im, const struct qcow2_snapshot *sn, uint32_t n,
			uint64_t **out, char *err, size_t errlen)
{
	uint64_t *l1 = calloc(n ? n : 1, 8);
	int r;

	if (!l1)
		return -ENOMEM;
	r = qcow2_pread(im->fd, l1, sn->l1_size * 8ull, sn->l1_offset);
	if (r) {
		free(l1);
		snprintf(err, errlen, "%s: cannot read the l1_table of snapshot %s: %s", im->path,
			 sn->id, strerror(-r));
		return r;
	}
	for (uint32_t i = 0; i < sn->l1_size; i++)
		l1[i] = be64((uint8_t *)&l1[i]);
	*out = l1;
	return 0;
}

int qcow2_snapshot_apply(struct qimg *im, uint32_t idx, char *err, size_t errlen)
{
	const struct qcow2_snapshot *sn = &im->snaps[idx];
	uint64_t span = 1ull << (im->cluster_bits + im->l2_bits), need, off = 0, v;
	uint64_t *nl1 = NULL, *ol1, ol1_off = im->l1_offset, ol1_size = im->l1_size;
	uint8_t *b, h[24];
	uint32_t n;
	char what[64];
	int r = check_writable(im, err, errlen);

	if (r)
		return r;
	err[0] = 0; /* set: a message was written */
	need = (sn->disk_size + span - 1) / span;
	n = sn->l1_size > need ? sn->l1_size : (uint32_t)need;
	if (sn->disk_size > (1ull << 61) || sn->disk_size % 512 || n * 8ull > MAX_L1_BYTES) {
		snprintf(err, errlen, "%s: snapshot %s: bad disk size %" PRIu64, im->path, sn->id,
			 sn->disk_size);
		return -EINVAL;
	}
	snprintf(what, sizeof(what), "snapshot %s", sn->id);
	r = snap_l1_read(im, sn, n, &nl1, err, errlen);
	if (r)
		return r;
	/* 1. Check both trees; the snapshot's gains the new active
	 *    image's reference, synced before anything names it. */
	r = walk_tree(im, im->l1, im->l1_size, WALK_CHECK, "active l1_table", err, errlen);
	if (!r)
		r = walk_tree(im, nl1, n, WALK_CHECK, what, err, errlen);
	if (!r)
		r = walk_tree(im, nl1, n, WALK_INC, what, err, errlen);
	/* 2. The new active l1_table, COPIED where the count is 1 (never,
	 *    unless the snapshot's own tables say otherwise). */
	for (uint32_t i = 0; !r && i < n; i++) {
		uint64_t o = nl1[i] & OFFSET_MASK;

		nl1[i] = o;
		if (o && !(r = qcow2_get_refcount(im, o >> im->cluster_bits, &v)) && v == 1)
			nl1[i] |= ENTRY_COPIED;
	}
	b = r ? NULL : calloc(clusters_for(im, n * 8ull), im->cluster_size);
	if (!r && !b)
		r = -ENOMEM;
	if (!r) {
		for (uint32_t i = 0; i < n; i++)
			put_be64(b + i * 8ull, nl1[i]);
		r = qcow2_alloc_run(im, clusters_for(im, n * 8ull), &off);
		if (!r)
			r = qcow2_pwrite(im, b, n * 8ull, off);
		if (!r)
			r = qcow2_fdatasync(im);
		free(b);
		if (r)
			snprintf(err, errlen, "%s: cannot write the new l1_table: %s", im->path,
				 strerror(-r));
	}
	/* 3. One header write switches size, l1_size and l1_table_offset
	 *    (bytes 24..47; crypt_method in between is 0). */
	if (!r) {
		put_be64(h, sn->disk_size);
		put_be32(h + 8, 0);
		put_be32(h + 12, n);
		put_be64(h + 16, off);
		r = qcow2_pwrite(im, h, sizeof(h), 24);
		if (!r)
			r = qcow2_fdatasync(im);
		if (r)
			snprintf(err, errlen, "%s: cannot update the header: %s", im->path,
				 strerror(-r));
	}
	if (r) {
		free(nl1);
		return r;
	}
	im->refcounts_unsynced = false;
	ol1 = im->l1;
	im->l1 = nl1;
	im->l1_size = n;
	im->l1_offset = off;
	im->size = sn->disk_size;
	for (unsigned i = 0; i < im->l2_slots; i++)
		im->l2_cache[i].offset = 0;
	im->dbuf_key = 0;
	for (uint32_t i = 0; i < n && !r; i++)
		if (nl1[i] & OFFSET_MASK)
			r = qcow2_oset_add(&im->l2s, nl1[i] & OFFSET_MASK);
	/* 4. The old active tree and l1_table lose their reference: a
	 *    crash before this point leaks them. */
	if (!r)
		r = walk_tree(im, ol1, (uint32_t)ol1_size, WALK_DEC, "old l1_table", err, errlen);
	if (!r && ol1_size)
		r = qcow2_unref_range(im, ol1_off, ol1_size * 8);
	free(ol1);
	if (!r)
		r = qcow2_sync_refcounts(im);
	if (r && !err[0])
		snprintf(err, errlen, "%s: cannot free the old l1_table: %s", im->path, strerror(-r));
	return r;
}

int qcow2_snapshot_delete(struct qimg *im, uint32_t idx, char *err, size_t errlen)
{
	struct qcow2_snapshot gone = im->snaps[idx], *rest;
	uint32_t n = im->nb_snapshots;
	uint64_t *sl1 = NULL;
	char what[64];
	int r = check_writable(im, err, errlen);

	if (r)
		return r;
	err[0] = 0; /* set: a message was written */
	snprintf(what, sizeof(what), "snapshot %s", gone.id);
	r = snap_l1_read(im, &gone, gone.l1_size, &sl1, err, errlen);
	if (r)
		return r;
	r = walk_tree(im, sl1, gone.l1_size, WALK_CHECK, what, err, errlen);
	rest = r ? NULL : malloc((n ? n : 1) * sizeof(*rest));
	if (!r && !rest)
		r = -ENOMEM;
	if (r) {
		free(sl1);
		return r;
	}
	/* 1. A table without the entry; the header switches to it. */
	memcpy(rest, im->snaps, idx * sizeof(*rest));
	memcpy(rest + idx, im->snaps + idx + 1, (n - idx - 1) * sizeof(*rest));
	r = table_write(im, rest, n - 1, err, errlen);
	if (im->nb_snapshots != n) {
		/* The header no longer names it (even if freeing the old
		 * table failed). */
		free(im->snaps);
		im->snaps = rest;
		free(gone.id);
		free(gone.name);
		free(gone.extra);
	} else {
		free(rest);
	}
	/* 2. What it reached loses its reference; its l1_table is freed. */
	if (!r)
		r = walk_tree(im, sl1, gone.l1_size, WALK_DEC, what, err, errlen);
	free(sl1);
	if (!r && gone.l1_size) {
		unmark(im, gone.l1_offset, gone.l1_size * 8ull);
		r = qcow2_unref_range(im, gone.l1_offset, gone.l1_size * 8ull);
	}
	/* 3. Clusters the active image alone uses again: COPIED, so that
	 *    it writes them in place (QEMU does the same). */
	if (!r)
		r = qcow2_sync_refcounts(im);
	if (!r)
		r = set_copied(im, false, err, errlen);
	if (!r)
		r = qcow2_fdatasync(im);
	if (r && !err[0])
		snprintf(err, errlen, "%s: cannot delete snapshot: %s", im->path, strerror(-r));
	return r;
}
